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

/// A field of /proc/<pid>/status in KiB (`VmHWM`: peak resident set; `VmRSS`: now).
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    use std::io::BufRead;
    let status = std::fs::File::open(format!("/proc/{pid}/status"))?;
    for line in std::io::BufReader::new(status).lines() {
        let line = line?;
        if let Some(rest) = line
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            return Ok(rest.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    anyhow::bail!("no {field} in /proc/{pid}/status")
}

/// Asks the projector's query service `subject` with `payload`, waiting up to `timeout`
/// (the client's own request timeout, 10 s, is shorter than a replay); a service error is
/// an error naming its code and text.
pub async fn ask(
    client: &async_nats::Client,
    subject: &str,
    payload: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<bytes::Bytes> {
    use anyhow::Context;
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::copy_from_slice(payload.as_bytes()))
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.to_string(), request)
        .await
        .with_context(|| format!("{subject} failed or timed out after {timeout:?}"))?;
    if let Some(code) = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
    {
        anyhow::bail!(
            "{subject} answered error {code}: {}",
            String::from_utf8_lossy(&reply.payload)
        );
    }
    Ok(reply.payload)
}
