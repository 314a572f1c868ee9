//! Headless Chromium (`METAL_CHROMIUM`, else `chromium-headless-shell`) in its own process group, driven over the DevTools protocol.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// How often a condition in the page is polled for.
pub const POLL: Duration = Duration::from_millis(100);
/// How long [`Page::navigate`] waits for a page to load.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The browser binary: `METAL_CHROMIUM`, else `chromium-headless-shell` on `PATH`.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("METAL_CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "METAL_CHROMIUM={} is not a file; run `eval \"$(scripts/install-deps)\"`",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium-headless-shell"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no headless Chromium: run `eval \"$(scripts/install-deps)\"` (it installs \
                 Debian's chromium-headless-shell and exports METAL_CHROMIUM)"
            )
        })
}

/// A headless Chromium child in its own process group; the group is killed and the child
/// waited for on drop, pass or fail.
pub struct Browser {
    child: Child,
    websocket: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        let binary = chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: Debian's /usr/bin one is a shell wrapper, and the
            // browser forks helpers; Drop ends them all.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = std::sync::mpsc::channel();
        // Reads stderr to its end, so the browser never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(found) = found.take() {
                        let _ = found.send(url.trim().to_string());
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            websocket: String::new(),
            _profile: profile,
        };
        browser.websocket = listening
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| {
                panic!(
                    "{} printed no `DevTools listening on` within 15 s",
                    binary.display()
                )
            });
        assert!(
            browser.websocket.starts_with("ws://127.0.0.1:"),
            "{}",
            browser.websocket
        );
        browser
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is the child's pid (`process_group(0)`); the child is not reaped
        // yet, so the id still names this group.
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid only signals; it touches no memory.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools connection with one page attached (flat session): commands are sent one
/// at a time and their answer awaited; events in between are skipped.
pub struct Page {
    socket: Socket,
    session: String,
    next_id: u64,
}

impl Page {
    pub async fn open(browser: &Browser) -> Page {
        let (socket, _) = tokio_tungstenite::connect_async(browser.websocket.as_str())
            .await
            .unwrap();
        let mut page = Page {
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = page
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await
            .unwrap();
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await
            .unwrap();
        page.session = attached["sessionId"].as_str().unwrap().to_string();
        page.call("Page.enable", json!({})).await.unwrap();
        page.viewport(1280, 720, false).await;
        page
    }

    /// Sends `method` (to the page once attached) and returns its result, or its error.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = self.socket.next().await {
                let Message::Text(text) = message.unwrap() else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["id"].as_u64() == Some(id) {
                    return value;
                }
            }
            panic!("DevTools connection closed while waiting for {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer within 10 s"));
        match answer.get("error") {
            Some(error) => Err(format!("{method}: {error}")),
            None => Ok(answer["result"].clone()),
        }
    }

    /// The value of `expression` in the page; an exception is an error.
    pub async fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Marks the loaded document, so [`Page::assert_not_reloaded`] can tell a page that
    /// swapped its content in place from one that reloaded.
    pub async fn mark_document(&mut self) {
        self.evaluate("window.__noReload = 1").await.unwrap();
    }

    /// Fails unless the document marked by [`Page::mark_document`] is still the one shown.
    pub async fn assert_not_reloaded(&mut self) {
        assert_eq!(
            self.evaluate("window.__noReload === 1").await.unwrap(),
            Value::Bool(true),
            "the page reloaded instead of swapping its content in"
        );
    }

    /// Polls `expression` every [`POLL`] until it is `true`, failing after `patience`; a
    /// navigation in between (a destroyed context) only means "not yet".
    pub async fn wait_for(&mut self, expression: &str, what: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.evaluate(expression).await {
                Ok(Value::Bool(true)) => return,
                Ok(value) => last = value,
                Err(error) => last = Value::String(error),
            }
            tokio::time::sleep(POLL).await;
        }
        let html = self
            .evaluate("document.documentElement.outerHTML")
            .await
            .unwrap_or_default();
        panic!("{what}: not within {patience:?} (last: {last}); page:\n{html}");
    }

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}))
            .await
            .unwrap();
        self.wait_for(
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                json!(url)
            ),
            &format!("loading {url}"),
            PATIENCE,
        )
        .await;
    }

    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await
        .unwrap();
    }

    /// A PNG of the whole page (beyond the viewport, down to the end of its content) into
    /// `target/test-artifacts/` of the workspace.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let size = self
            .evaluate(
                "[document.documentElement.scrollWidth, \
                 Math.ceil(document.body.getBoundingClientRect().bottom) + 8]",
            )
            .await
            .unwrap();
        let (width, height) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap());
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                }),
            )
            .await
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is no PNG");
        let dir = crate::paths::workspace_root().join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}
