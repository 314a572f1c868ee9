//! A service binary run by a benchmark: its log in the work directory, an environment in
//! which only its config counts, and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `binary` with `args` in `work`, logging to `<work>/<name>.log`. The repository's
    /// `.env`, `NATS_URL`, `METAL_CONFIG` and `METAL__*` overrides are kept away, `RUST_LOG`
    /// is `warn` unless set; `prepare` adds what this service needs. `build` says how to
    /// build a missing binary.
    pub fn spawn(
        name: &str,
        binary: &Path,
        build: &str,
        args: &[&str],
        work: &Path,
        prepare: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Service> {
        anyhow::ensure!(
            binary.is_file(),
            "{} not found: build it with `{build}` (or pass --bin-dir)",
            binary.display()
        );
        let log = work.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .current_dir(work)
            .env_remove("NATS_URL")
            .env_remove("METAL_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (key, _) in std::env::vars() {
            if key.starts_with("METAL__") {
                command.env_remove(key);
            }
        }
        prepare(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Service {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the end of its log if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the service binaries are: `given` (`--bin-dir`), else beside the running benchmark.
pub fn bin_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf()),
    }
}

/// The last `lines` lines of a file (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
