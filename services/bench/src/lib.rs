//! What the benchmark binaries share: the one summary row each adds to the table
//! `scripts/bench` prints at the end.

/// Appends `| bench | size | figure | goal | verdict |` to the file `METAL_BENCH_SUMMARY`
/// names, when it is set (by `scripts/bench`); nothing otherwise. With `METAL_BENCH_QUICK`
/// set (`scripts/bench quick`) the verdict is left out.
pub fn summary_row(bench: &str, size: &str, figure: &str, goal: &str, verdict: &str) {
    let Ok(path) = std::env::var("METAL_BENCH_SUMMARY") else {
        return;
    };
    // A quick run's toy sizes and debug build judge nothing.
    let verdict = if std::env::var_os("METAL_BENCH_QUICK").is_some() {
        "not judged (quick)"
    } else {
        verdict
    };
    let row = format!("| {bench} | {size} | {figure} | {goal} | {verdict} |\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, row.as_bytes()));
    if let Err(error) = written {
        eprintln!("cannot add the summary row to {path}: {error}");
    }
}

/// `met` or `NOT met`.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}
