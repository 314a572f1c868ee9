//! The log lines of everything running in a test's process, at debug level, for tests that
//! search them (secrets) or parse them (correlation ids). It installs the process's tracing
//! subscriber, so a test binary using it holds one test.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// What was logged so far, shared with the subscriber's writer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs the global subscriber at debug level, text (no colours) or JSON with the
    /// current span (as `--log-format json` logs), writing here; panics if one exists.
    pub fn install(json: bool) -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let installed = if json {
            tracing::subscriber::set_global_default(builder.json().with_current_span(true).finish())
        } else {
            tracing::subscriber::set_global_default(builder.finish())
        };
        installed.expect("one log capture per test binary, and no other subscriber");
        captured
    }

    /// Everything logged so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
