//! The schemathesis CLI (PyPI): found through `METAL_SCHEMATHESIS` or `PATH`, run with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `METAL_SCHEMATHESIS` (printed by scripts/install-deps), else `st` or `schemathesis` on
/// PATH; a missing binary fails the test, never skips it.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("METAL_SCHEMATHESIS") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "METAL_SCHEMATHESIS={} is not a file: run `eval \"$(scripts/install-deps)\"` \
             (it installs schemathesis from PyPI) or point it at the `st` binary",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("st"), dir.join("schemathesis")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "schemathesis not found: run `eval \"$(scripts/install-deps)\"` (it installs \
                 schemathesis from PyPI and sets METAL_SCHEMATHESIS), or point \
                 METAL_SCHEMATHESIS at the `st` binary"
            )
        })
}

/// Runs [`binary`] with `args` in `dir`, killing it (and failing) after `deadline`;
/// (success, stdout and stderr). Blocks: call it from `spawn_blocking` in async tests.
pub fn run(dir: &Path, args: &[String], deadline: Duration) -> (bool, String) {
    let binary = binary();
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("output");
    let out = std::fs::File::create(&out_path).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = Command::new(&binary)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let started = Instant::now();
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(&out_path).unwrap_or_default();
            panic!("schemathesis ran longer than {deadline:?}; output so far:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        success,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
    )
}
