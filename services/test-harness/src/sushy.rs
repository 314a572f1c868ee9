//! The sushy-tools Redfish emulator (PyPI `sushy-tools`) serving systems described
//! here, through libvirt's `test:///` driver (PyPI `libvirt-python`): no hypervisor,
//! but real domain XML that sushy renders into Redfish as it would for a real VM.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

#[derive(Debug, Clone)]
pub struct SushyDrive {
    pub id: String,
    pub capacity_bytes: u64,
    pub protocol: String,
}

pub struct SushyEmulator {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
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
        let ids: Vec<String> = system
            .drives
            .iter()
            .map(|d| format!("{:?}", d.id))
            .collect();
        let _ = writeln!(
            storage,
            "  {:?}: [{{'Id': '1', 'Name': 'Local Storage Controller', 'StorageControllers': [{{'MemberId': '0', 'Name': 'Integrated RAID', 'SpeedGbps': 12}}], 'Drives': [{}]}}],",
            system.uuid,
            ids.join(", ")
        );
        let entries: Vec<String> = system
            .drives
            .iter()
            .map(|d| {
                format!(
                    "{{'Id': {:?}, 'Name': 'Drive {}', 'CapacityBytes': {}, 'Protocol': {:?}}}",
                    d.id, d.id, d.capacity_bytes, d.protocol
                )
            })
            .collect();
        let _ = writeln!(
            drives,
            "  ({:?}, '1'): [{}],",
            system.uuid,
            entries.join(", ")
        );
    }
    storage.push_str("}\n");
    drives.push_str("}\n");
    format!("{storage}{drives}SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n")
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
        std::fs::write(&config, sushy_config(systems))
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
        let emulator = SushyEmulator {
            child: Some(child),
            port,
            dir,
        };
        emulator.wait_ready(Duration::from_secs(60));
        emulator
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if http_status(self.port, "/redfish/v1/Systems") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "sushy-emulator did not answer on 127.0.0.1:{} within {timeout:?}; log:\n{}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("sushy.log")).unwrap_or_default()
        );
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sushy.log")).unwrap_or_default()
    }
}

impl Drop for SushyEmulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The status code of a plain HTTP/1.0 GET to 127.0.0.1:`port`, or `None` on any failure.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
