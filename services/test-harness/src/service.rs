//! A service binary run as its own process by a test or a benchmark: its log in a work
//! directory, an environment in which only its config counts, killable with SIGKILL and
//! startable again with the same command, and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// What a [`Service`] adds to its command before each start (its own environment).
type Prepare = Box<dyn Fn(&mut Command) + Send + Sync>;

pub struct Service {
    name: String,
    binary: PathBuf,
    args: Vec<String>,
    work: PathBuf,
    prepare: Prepare,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Service {
    /// Starts `binary` with `args` in `work`, logging to `<work>/<name>.log` (appended to
    /// across restarts). The repository's `.env`, `NATS_URL`, `METAL_CONFIG` and `METAL__*`
    /// overrides are kept away, `RUST_LOG` is `warn` unless set; `prepare` adds what this
    /// service needs, at every start. `build` says how to build a missing binary.
    pub fn spawn(
        name: &str,
        binary: &Path,
        build: &str,
        args: &[&str],
        work: &Path,
        prepare: impl Fn(&mut Command) + Send + Sync + 'static,
    ) -> anyhow::Result<Service> {
        anyhow::ensure!(
            binary.is_file(),
            "{} not found: build it with `{build}` (or pass --bin-dir)",
            binary.display()
        );
        let mut service = Service {
            name: name.to_string(),
            binary: binary.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            work: work.to_path_buf(),
            prepare: Box::new(prepare),
            child: None,
            log: work.join(format!("{name}.log")),
            starts: 0,
        };
        service.start()?;
        Ok(service)
    }

    /// Starts the service again after [`Service::kill`]; nothing when it runs.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .current_dir(&self.work)
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
        (self.prepare)(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush, whatever it held in memory is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for it to exit (SIGKILL after `grace`); its exit status.
    pub fn stop(&mut self, grace: std::time::Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the pid of a child this value owns and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Its process id; 0 when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// An error with the end of its log if it has exited (or was killed and not started).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is not running", self.name);
        };
        if let Some(status) = child.try_wait()? {
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
        self.kill();
    }
}

/// Where the service binaries are: `given` (`--bin-dir`), else beside the running binary.
pub fn bin_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf()),
    }
}

/// A workspace binary for a test in another package (Cargo gives a test only its own
/// package's binaries): `METAL_BIN_DIR/<name>`, else `target/<profile>/<name>` beside the
/// test's `deps/` directory, where `cargo test --workspace` builds every binary.
pub fn workspace_binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("METAL_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .map(|dir| match dir.file_name() {
                Some(last) if last == "deps" => dir.parent().map_or(dir.clone(), Path::to_path_buf),
                _ => dir,
            })
            .unwrap_or_default(),
    };
    let binary = dir.join(name);
    assert!(
        binary.is_file(),
        "{} not found: build the workspace's binaries first (`cargo build --workspace --bins`; \
         `cargo test --workspace` does) or point METAL_BIN_DIR at them",
        binary.display()
    );
    binary
}

/// The last `lines` lines of a file (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
