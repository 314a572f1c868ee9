//! The pages in a real browser: headless Chromium (Debian's `chromium-headless-shell`,
//! found through `METAL_CHROMIUM` from scripts/install-deps) driven over the DevTools
//! protocol against `web::run` on a real nats-server. A machine onboarded while the fleet
//! page is open appears in its table without a reload; its page's timeline shows the
//! reason its scrape failed. Screenshots land in `target/test-artifacts/`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use metal_projection::fixtures::{self, inventory};
use serde_json::{json, Value};

mod common;
use common::{publish, RunningWeb};
use tokio_tungstenite::tungstenite::Message;

const FIRST_BMC: &str = "aa:bb:cc:00:00:01";
const SECOND_BMC: &str = "aa:bb:cc:00:00:02";
const REASON: &str = "Redfish said 401 Unauthorized to metal-browser-test";
/// How often and how long a condition in the page is polled for.
const POLL: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(15);

/// The browser binary: `METAL_CHROMIUM`, else `chromium-headless-shell` on `PATH`.
fn chromium() -> PathBuf {
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
struct Browser {
    child: Child,
    websocket: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
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
struct Page {
    socket: Socket,
    session: String,
    next_id: u64,
}

impl Page {
    async fn open(browser: &Browser) -> Page {
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
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
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
    async fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
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

    /// Polls `expression` until it is `true`; a navigation in between (a destroyed context)
    /// only means "not yet".
    async fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
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
        panic!("{what}: not within {PATIENCE:?} (last: {last}); page:\n{html}");
    }

    async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}))
            .await
            .unwrap();
        self.wait_for(
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                json!(url)
            ),
            &format!("loading {url}"),
        )
        .await;
    }

    async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await
        .unwrap();
    }

    /// A PNG of the whole page (beyond the viewport, down to the end of its content) into
    /// `target/test-artifacts/`.
    async fn screenshot(&mut self, name: &str) -> PathBuf {
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
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn id(bmc: &str) -> String {
    metal_core::MachineId::from_bmc_mac(&fixtures::mac(bmc)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sees_a_new_machine_live_and_its_failure_reason() {
    let browser = Browser::start();
    let web = RunningWeb::start(&fixtures::onboarding(
        1,
        FIRST_BMC,
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:12:34:56"]),
    ))
    .await;
    let (base, js) = (web.base.clone(), web.js.clone());

    // The fleet page with the first machine, its event stream connected.
    let (first, second) = (id(FIRST_BMC), id(SECOND_BMC));
    let mut page = Page::open(&browser).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        page.navigate(&format!("{base}/")).await;
        let shown = page
            .evaluate(&format!("!!document.getElementById('m-{first}')"))
            .await
            .unwrap();
        if shown == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the first machine never showed");
        tokio::time::sleep(POLL).await;
    }
    page.wait_for(
        "document.getElementById('live-status').textContent === 'live'",
        "the page's event stream connecting",
    )
    .await;
    page.evaluate("window.__noReload = 1").await.unwrap();

    // A second machine onboards, then a rescan of it fails to scrape (its state stays
    // inventoried: the failure shows in its timeline).
    let mut messages = fixtures::onboarding(
        4,
        SECOND_BMC,
        inventory("R640", "AMD EPYC 7302", &["52:54:00:00:00:02"]),
    );
    let rescan = fixtures::rescan(7, SECOND_BMC, Some(6));
    messages.push(fixtures::stored(7, &rescan));
    messages.push(fixtures::stored(
        8,
        &fixtures::scrape_failed(&rescan, REASON),
    ));
    publish(&js, &messages).await;

    page.wait_for(
        &format!(
            "(function(){{var row=document.getElementById('m-{second}');\
             return !!row && row.textContent.indexOf('R640') >= 0;}})()"
        ),
        "the new machine's row in the open fleet table",
    )
    .await;
    assert_eq!(
        page.evaluate("window.__noReload === 1").await.unwrap(),
        json!(true),
        "the fleet page reloaded instead of swapping its table in"
    );
    assert_eq!(
        page.evaluate("document.querySelectorAll('#live tbody tr').length")
            .await
            .unwrap(),
        json!(2)
    );
    let fleet = page.screenshot("web-fleet.png").await;

    // Its link leads to its page, whose timeline shows why the scrape failed.
    page.evaluate(&format!("document.querySelector('#m-{second} a').click()"))
        .await
        .unwrap();
    page.wait_for(
        &format!(
            "location.pathname === '/machines/{second}' && document.readyState === 'complete' \
             && Array.prototype.some.call(document.querySelectorAll('tr.fail .reason'), \
             function(e){{return e.textContent.indexOf({reason}) >= 0;}})",
            reason = json!(REASON)
        ),
        "the machine page's timeline showing the failure reason",
    )
    .await;
    let machine = page.screenshot("web-machine.png").await;

    // At a phone's width the fleet page still renders its table.
    page.viewport(390, 844, true).await;
    page.navigate(&format!("{base}/")).await;
    assert_eq!(
        page.evaluate("document.querySelectorAll('#live tbody tr').length")
            .await
            .unwrap(),
        json!(2)
    );
    let phone = page.screenshot("web-fleet-phone.png").await;
    eprintln!(
        "screenshots: {}, {}, {}",
        fleet.display(),
        machine.display(),
        phone.display()
    );

    drop(page);
    drop(browser);
    web.stop("after the browser left").await;
}
