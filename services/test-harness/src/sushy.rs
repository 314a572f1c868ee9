//! The sushy-tools Redfish emulator (PyPI `sushy-tools`) serving systems described here,
//! with one of two of its drivers:
//!
//! - [`SushyEmulator::start`]: libvirt's `test:///` driver (PyPI `libvirt-python`): no
//!   hypervisor, but real domain XML that sushy renders into Redfish as it would for a real VM
//!   (processors, memory, NICs).
//! - [`SushyEmulator::start_fake`]: sushy's own fake driver (`SUSHY_EMULATOR_FAKE_DRIVER`, no
//!   libvirt at all), optionally behind HTTP basic auth (`SUSHY_EMULATOR_AUTH_FILE`, an
//!   htpasswd file of bcrypt digests, the only format sushy-tools accepts). A fake system has a
//!   name, UUID, power state and NICs, and no processors or memory. Restartable on the same port
//!   with other systems ([`SushyEmulator::restart_with`]).
//!
//! Both give each system with drives one storage controller `Storage/1`
//! (`SUSHY_EMULATOR_STORAGE`) whose drives come from `SUSHY_EMULATOR_DRIVES`; sushy renders a drive's `Id`, `Name`,
//! `CapacityBytes` and `Protocol` from it and hard-codes everything else (its `SerialNumber` is
//! always `"1234570"`, `MediaType` `"HDD"`, `Model` `"C123"`, `Manufacturer` `"Contoso"`).
//! See tests/sushy_fake.rs for what sushy 2.2 serves for a fake system.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::nats::{find_on_path, free_port};

/// One emulated system.
#[derive(Debug, Clone)]
pub struct SushySystem {
    pub name: String,
    pub uuid: String,
    pub cpu_vendor: String,
    pub cpu_model: String,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    pub memory_gib: u32,
    pub nic_macs: Vec<String>,
    pub drives: Vec<SushyDrive>,
}

/// One drive of a system's storage controller `Storage/1`. Sushy renders it at
/// `Storage/1/Drives/<id>` named `Drive <id>`; it has no field for a serial number.
#[derive(Debug, Clone)]
pub struct SushyDrive {
    pub id: String,
    pub capacity_bytes: u64,
    pub protocol: String,
}

/// One system of sushy's fake driver: no processors or memory, only what is here.
#[derive(Debug, Clone)]
pub struct SushyFakeSystem {
    pub name: String,
    /// Any UUID notation; sushy is given (and serves) the lowercase hyphenated form.
    pub uuid: String,
    /// `PowerState` as sushy serves it until a reset action changes it: `"On"` or `"Off"`.
    pub power_state: String,
    pub nic_macs: Vec<String>,
    pub drives: Vec<SushyDrive>,
}

pub struct SushyEmulator {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// The `user:password` the readiness probe sends, when sushy requires basic auth.
    probe_auth: Option<String>,
    /// How many times it was started: each start gets its own state directory.
    starts: u32,
}

/// Finds `sushy-emulator`: `METAL_SUSHY_EMULATOR`, else on `PATH`.
pub fn sushy_binary() -> PathBuf {
    if let Ok(path) = std::env::var("METAL_SUSHY_EMULATOR") {
        return PathBuf::from(path);
    }
    find_on_path("sushy-emulator").unwrap_or_else(|| {
        panic!(
            "sushy-emulator not found: install it with `pip install sushy-tools libvirt-python` \
             (libvirt-python needs Debian's libvirt-dev and pkg-config), or point METAL_SUSHY_EMULATOR at it"
        )
    })
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The libvirt test-driver node description of `systems`.
pub fn libvirt_node_xml(systems: &[SushySystem]) -> String {
    let mut xml = String::from("<node>\n");
    for system in systems {
        let vcpus = system.sockets * system.cores * system.threads;
        let _ = write!(
            xml,
            "  <domain type='test'>\n    <name>{}</name>\n    <uuid>{}</uuid>\n    <memory unit='GiB'>{}</memory>\n    <vcpu>{vcpus}</vcpu>\n    <cpu mode='custom' match='exact'>\n      <model>{}</model>\n      <vendor>{}</vendor>\n      <topology sockets='{}' cores='{}' threads='{}'/>\n    </cpu>\n    <os><type arch='x86_64'>hvm</type><boot dev='network'/></os>\n    <devices>\n",
            escape_xml(&system.name),
            escape_xml(&system.uuid),
            system.memory_gib,
            escape_xml(&system.cpu_model),
            escape_xml(&system.cpu_vendor),
            system.sockets,
            system.cores,
            system.threads,
        );
        for mac in &system.nic_macs {
            let _ = writeln!(
                xml,
                "      <interface type='network'><mac address='{}'/><source network='default'/></interface>",
                escape_xml(mac)
            );
        }
        xml.push_str("    </devices>\n  </domain>\n");
    }
    xml.push_str("</node>\n");
    xml
}

/// The sushy-emulator config (Python) giving each system one storage controller with its drives.
pub fn sushy_config(systems: &[SushySystem]) -> String {
    let mut storage = String::from("SUSHY_EMULATOR_STORAGE = {\n");
    let mut drives = String::from("SUSHY_EMULATOR_DRIVES = {\n");
    for system in systems.iter().filter(|s| !s.drives.is_empty()) {
        storage_entries(&mut storage, &mut drives, &system.uuid, &system.drives);
    }
    storage.push_str("}\n");
    drives.push_str("}\n");
    format!("{storage}{drives}SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n")
}

/// One system's lines of `SUSHY_EMULATOR_STORAGE` (one controller, `Storage/1`, listing the
/// drives) and of `SUSHY_EMULATOR_DRIVES`.
fn storage_entries(storage: &mut String, drives: &mut String, uuid: &str, disks: &[SushyDrive]) {
    let ids: Vec<String> = disks.iter().map(|d| py_str(&d.id)).collect();
    let _ = writeln!(
        storage,
        "  {}: [{{'Id': '1', 'Name': 'Local Storage Controller', 'StorageControllers': [{{'MemberId': '0', 'Name': 'Integrated RAID', 'SpeedGbps': 12}}], 'Drives': [{}]}}],",
        py_str(uuid),
        ids.join(", ")
    );
    let entries: Vec<String> = disks
        .iter()
        .map(|d| {
            format!(
                "{{'Id': {}, 'Name': {}, 'CapacityBytes': {}, 'Protocol': {}}}",
                py_str(&d.id),
                py_str(&format!("Drive {}", d.id)),
                d.capacity_bytes,
                py_str(&d.protocol)
            )
        })
        .collect();
    let _ = writeln!(
        drives,
        "  ({}, '1'): [{}],",
        py_str(uuid),
        entries.join(", ")
    );
}

/// `text` as a Python string literal: a JSON string is one (its escapes are Python's too).
fn py_str(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The canonical (lowercase, hyphenated) form of `uuid`, which is how sushy looks up storage.
fn canonical_uuid(system: &SushyFakeSystem) -> anyhow::Result<String> {
    uuid::Uuid::parse_str(&system.uuid)
        .map(|u| u.hyphenated().to_string())
        .map_err(|e| {
            anyhow::anyhow!(
                "fake system {:?}: {:?} is not a UUID: {e}",
                system.name,
                system.uuid
            )
        })
}

/// The sushy-emulator config (Python) for its fake driver serving `systems`.
///
/// Every system gets a `SUSHY_EMULATOR_STORAGE` entry, so its `Storage` collection answers 200
/// (empty when it has no drives: sushy answers 500 for a system missing from that map); one with
/// drives has the single controller `Storage/1` listing them. `state_dir` keeps sushy's
/// persisted state (power states, indicator LEDs) away from other emulators; `auth_file` is an
/// htpasswd file ([`htpasswd_line`]) that makes basic auth required everywhere but the service
/// root.
pub fn sushy_fake_config(
    systems: &[SushyFakeSystem],
    state_dir: &Path,
    auth_file: Option<&Path>,
) -> anyhow::Result<String> {
    let mut fake = String::from("SUSHY_EMULATOR_FAKE_SYSTEMS = [\n");
    let mut storage = String::from("SUSHY_EMULATOR_STORAGE = {\n");
    let mut drives = String::from("SUSHY_EMULATOR_DRIVES = {\n");
    for system in systems {
        let uuid = canonical_uuid(system)?;
        let nics: Vec<String> = system
            .nic_macs
            .iter()
            .map(|mac| format!("{{'mac': {}}}", py_str(mac)))
            .collect();
        let _ = writeln!(
            fake,
            "  {{'uuid': {}, 'name': {}, 'power_state': {}, 'external_notifier': False, 'nics': [{}]}},",
            py_str(&uuid),
            py_str(&system.name),
            py_str(&system.power_state),
            nics.join(", ")
        );
        if system.drives.is_empty() {
            let _ = writeln!(storage, "  {}: [],", py_str(&uuid));
            continue;
        }
        storage_entries(&mut storage, &mut drives, &uuid, &system.drives);
    }
    fake.push_str("]\n");
    storage.push_str("}\n");
    drives.push_str("}\n");
    let state_dir = state_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("state dir {} is not UTF-8", state_dir.display()))?;
    let mut config = format!(
        "SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = {}\n{fake}{storage}{drives}SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n",
        py_str(state_dir)
    );
    if let Some(auth_file) = auth_file {
        let auth_file = auth_file
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("auth file {} is not UTF-8", auth_file.display()))?;
        let _ = writeln!(config, "SUSHY_EMULATOR_AUTH_FILE = {}", py_str(auth_file));
    }
    Ok(config)
}

/// One htpasswd line `user:<bcrypt digest>` as sushy's `SUSHY_EMULATOR_AUTH_FILE` wants it:
/// sushy-tools checks passwords with Python's `bcrypt` and refuses any other digest (`$2y$`,
/// `$2a$` and `$2b$` only; this writes `$2b$` at the lowest cost, 4, to keep requests fast).
pub fn htpasswd_line(user: &str, password: &str) -> anyhow::Result<String> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        anyhow::bail!("basic-auth user {user:?} must be non-empty, without ':' or line breaks");
    }
    if password.contains('\0') {
        anyhow::bail!("a bcrypt password cannot contain NUL");
    }
    // Python's bcrypt 5 refuses passwords over 72 bytes rather than truncating them.
    let digest = bcrypt::non_truncating_hash(password, 4)
        .map_err(|e| anyhow::anyhow!("cannot bcrypt the password for {user:?}: {e}"))?;
    Ok(format!("{user}:{digest}\n"))
}

impl SushyEmulator {
    /// Starts sushy's fake driver serving `systems` on a free loopback port, requiring HTTP basic
    /// auth with `auth` (user, password) when given, and waits until `/redfish/v1/Systems`
    /// answers 200 (with those credentials). Panics with sushy's log if it does not.
    pub fn start_fake(systems: &[SushyFakeSystem], auth: Option<(&str, &str)>) -> SushyEmulator {
        Self::try_start_fake(systems, auth).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`SushyEmulator::start_fake`], with failures (sushy's log included) as errors.
    pub fn try_start_fake(
        systems: &[SushyFakeSystem],
        auth: Option<(&str, &str)>,
    ) -> anyhow::Result<SushyEmulator> {
        let dir =
            tempfile::tempdir().map_err(|e| anyhow::anyhow!("cannot create temp dir: {e}"))?;
        let probe_auth = match auth {
            Some((user, password)) => {
                let line = htpasswd_line(user, password)?;
                std::fs::write(dir.path().join("htpasswd"), line)
                    .map_err(|e| anyhow::anyhow!("cannot write htpasswd: {e}"))?;
                Some(format!("{user}:{password}"))
            }
            None => None,
        };
        let mut emulator = SushyEmulator {
            child: None,
            port: free_port(),
            dir,
            probe_auth,
            starts: 0,
        };
        emulator.spawn_fake(systems)?;
        Ok(emulator)
    }

    /// Stops the emulator and starts it again on the same port (same base URL, same
    /// credentials) serving `systems` instead, with fresh state; waits until it answers.
    /// Panics with sushy's log if it does not. Only for emulators from `start_fake`.
    pub fn restart_with(&mut self, systems: &[SushyFakeSystem]) {
        self.try_restart_with(systems)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`SushyEmulator::restart_with`], with failures (sushy's log included) as errors.
    pub fn try_restart_with(&mut self, systems: &[SushyFakeSystem]) -> anyhow::Result<()> {
        if self.starts == 0 {
            anyhow::bail!("restart_with is for emulators started with start_fake");
        }
        self.stop();
        self.spawn_fake(systems)
    }

    /// Kills the emulator (also done on drop); `restart_with` starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn_fake(&mut self, systems: &[SushyFakeSystem]) -> anyhow::Result<()> {
        self.starts += 1;
        let state_dir = self.dir.path().join(format!("state-{}", self.starts));
        let auth_file = self
            .probe_auth
            .as_ref()
            .map(|_| self.dir.path().join("htpasswd"));
        let config_text = sushy_fake_config(systems, &state_dir, auth_file.as_deref())?;
        let config = self.dir.path().join("sushy.conf");
        std::fs::write(&config, config_text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", config.display()))?;
        let binary = sushy_binary();
        let log = self.open_log()?;
        let log_err = log
            .try_clone()
            .map_err(|e| anyhow::anyhow!("cannot clone the sushy log: {e}"))?;
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .arg("--interface")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        self.child = Some(child);
        self.try_wait_ready(Duration::from_secs(60))
    }

    /// The log, appended to across restarts.
    fn open_log(&self) -> anyhow::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sushy.log"))
            .map_err(|e| anyhow::anyhow!("cannot open the sushy log: {e}"))
    }
}

impl SushyEmulator {
    /// Starts the emulator on a free loopback port and waits until `/redfish/v1` answers.
    pub fn start(systems: &[SushySystem]) -> SushyEmulator {
        let binary = sushy_binary();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let node = dir.path().join("node.xml");
        let config = dir.path().join("sushy.conf");
        std::fs::write(&node, libvirt_node_xml(systems))
            .unwrap_or_else(|e| panic!("cannot write node.xml: {e}"));
        // Sushy keeps indicator LEDs, virtual media and volumes in SQLite files under its state
        // dir, by default one shared /tmp/sushy-emulator: give each emulator its own.
        let state = format!(
            "SUSHY_EMULATOR_STATE_DIR = {}\n",
            py_str(&dir.path().join("state").to_string_lossy())
        );
        std::fs::write(&config, sushy_config(systems) + &state)
            .unwrap_or_else(|e| panic!("cannot write sushy.conf: {e}"));
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("sushy.log"))
            .unwrap_or_else(|e| panic!("cannot create sushy log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log: {e}"));
        let child = Command::new(&binary)
            .arg("--libvirt-uri")
            .arg(format!("test://{}", node.display()))
            .arg("--config")
            .arg(&config)
            .arg("--interface")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut emulator = SushyEmulator {
            child: Some(child),
            port,
            dir,
            probe_auth: None,
            starts: 0,
        };
        emulator
            .try_wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e:#}"));
        emulator
    }

    /// Waits until `/redfish/v1/Systems` answers 200 (sent with the credentials, if any); fails
    /// at once if the process exits, and with the log in the message either way.
    fn try_wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    anyhow::bail!(
                        "sushy-emulator on 127.0.0.1:{} exited ({status}) before answering; log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            last = http_status(self.port, "/redfish/v1/Systems", self.probe_auth.as_deref());
            if last == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let answer = last.map_or_else(
            || "no answer".to_owned(),
            |code| format!("last status {code}"),
        );
        self.stop();
        anyhow::bail!(
            "sushy-emulator did not answer 200 for /redfish/v1/Systems on 127.0.0.1:{} within {timeout:?} ({answer}); log:\n{}",
            self.port,
            self.log()
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sushy.log")).unwrap_or_default()
    }

    /// GETs one of the emulator's resources (with its basic-auth credentials, if any), as
    /// a test checks what the BMC now says; panics on anything but a 2xx JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base_url());
        let mut request = reqwest::Client::new().get(&url);
        if let Some((user, password)) = self.probe_auth.as_deref().and_then(|a| a.split_once(':')) {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }
}

impl Drop for SushyEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The status code of a plain HTTP/1.0 GET to 127.0.0.1:`port`, with basic auth for
/// `user:password` when given, or `None` on any failure.
fn http_status(port: u16, path: &str, basic_auth: Option<&str>) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let authorization = basic_auth.map_or_else(String::new, |pair| {
        format!("Authorization: Basic {}\r\n", BASE64.encode(pair))
    });
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{authorization}\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
