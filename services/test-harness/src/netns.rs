//! A real DHCP network in two network namespaces joined by a veth pair: dnsmasq serves
//! the "lan" side, a busybox DHCP client plays a BMC on the other. Needs root.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use metal_core::Mac;

use crate::nats::find_on_path;

/// Numbers the LANs of this process, for unique namespace names and subnets.
static NEXT_LAN: AtomicU32 = AtomicU32::new(0);

/// Longest a plain `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The tools a [`Lan`] runs, found once.
struct Tools {
    ip: PathBuf,
    dnsmasq: PathBuf,
    busybox: PathBuf,
}

impl Tools {
    /// Finds every tool, or panics naming all that are missing and their packages.
    fn find() -> Tools {
        let [ip, dnsmasq, busybox] = require_tools(
            "the network namespace tests",
            [
                ("ip", "iproute2"),
                ("dnsmasq", "dnsmasq-base"),
                ("busybox", "busybox-static"),
            ],
        );
        Tools {
            ip,
            dnsmasq,
            busybox,
        }
    }
}

/// Finds each `(tool, Debian package)`, or panics naming every missing tool and its
/// package, saying that `what` needs them.
pub(crate) fn require_tools<const N: usize>(what: &str, tools: [(&str, &str); N]) -> [PathBuf; N] {
    let found = tools.map(|(name, _)| find_tool(name));
    let missing: Vec<(&str, &str)> = tools
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(tool, _)| *tool)
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
        let packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
        panic!(
            "{what} need {} (not on PATH, nor in /usr/sbin or /sbin): run scripts/install-deps, \
             or `apt-get install --no-install-recommends {}`",
            names.join(", "),
            packages.join(" ")
        );
    }
    found.map(|path| path.unwrap_or_default())
}

/// `name` on PATH, or in the sbin directories a non-login PATH may lack.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    find_on_path(name).or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
    })
}

/// Panics unless the effective user is root: namespaces and veths need CAP_NET_ADMIN.
pub(crate) fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok());
    if euid != Some(0) {
        panic!(
            "the network namespace tests must run as root (they create namespaces and veth \
             pairs), as CI does; effective uid is {}",
            euid.map_or("unknown".to_string(), |id| id.to_string())
        );
    }
}

/// Runs a command to its end within `timeout`, killing it past that.
pub(crate) fn run(what: &str, command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
            Err(e) => panic!("cannot wait for {what}: {e}"),
        }
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot collect the output of {what}: {e}"));
    if timed_out {
        panic!(
            "{what} did not finish within {} s; it printed:\n{}{}",
            timeout.as_secs(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Two network namespaces, "lan" (dnsmasq on `10.98.<n>.1/24`) and "bmc", joined by a
/// veth pair whose ends are named as their namespaces. Everything is removed on drop,
/// also when the test panics.
pub struct Lan {
    tools: Tools,
    lan: String,
    bmc: String,
    subnet: u8,
    dir: tempfile::TempDir,
    dnsmasq: Option<Child>,
    /// Namespaces created so far, for the cleanup of a half-built LAN.
    namespaces: Vec<String>,
}

impl Lan {
    /// Builds the namespaces and the veth pair and starts dnsmasq, waiting until it serves.
    pub fn start() -> Lan {
        let tools = Tools::find();
        require_root();
        let n = NEXT_LAN.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let lan = format!("mt{pid}l{n}");
        let bmc = format!("mt{pid}b{n}");
        // Interface names are at most 15 bytes (IFNAMSIZ - 1).
        assert!(bmc.len() <= 15, "interface name {bmc} is too long");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let mut this = Lan {
            tools,
            lan,
            bmc,
            subnet: (n % 256) as u8,
            dir,
            dnsmasq: None,
            namespaces: Vec::new(),
        };
        for ns in [this.lan.clone(), this.bmc.clone()] {
            // One of these names can only be left over from a killed run with the same pid.
            let _ = Command::new(&this.tools.ip)
                .args(["netns", "del", &ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            this.ip(&["netns", "add", &ns]);
            this.namespaces.push(ns.clone());
            this.ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let (lan, bmc) = (this.lan.clone(), this.bmc.clone());
        this.ip(&[
            "-n", &lan, "link", "add", &lan, "type", "veth", "peer", "name", &bmc, "netns", &bmc,
        ]);
        let address = format!("{}/24", this.server_address());
        this.ip(&["-n", &lan, "addr", "add", &address, "dev", &lan]);
        this.ip(&["-n", &lan, "link", "set", &lan, "up"]);
        this.start_dnsmasq();
        this
    }

    fn ip(&self, args: &[&str]) -> Output {
        let what = format!("ip {}", args.join(" "));
        let output = run(&what, Command::new(&self.tools.ip).args(args), IP_TIMEOUT);
        if !output.status.success() {
            panic!(
                "`{what}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        output
    }

    fn start_dnsmasq(&mut self) {
        let log = std::fs::File::create(self.log_path())
            .unwrap_or_else(|e| panic!("cannot create the dnsmasq log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the dnsmasq log handle: {e}"));
        let s = self.subnet;
        let child = Command::new(&self.tools.ip)
            .args(["netns", "exec", &self.lan])
            .arg(&self.tools.dnsmasq)
            .args([
                "--no-daemon",
                // A host's /etc/dnsmasq.conf must not change what this one serves.
                "--conf-file=/dev/null",
                "--port=0",
                &format!("--interface={}", self.lan),
                "--bind-interfaces",
                "--except-interface=lo",
                &format!("--dhcp-range=10.98.{s}.100,10.98.{s}.150,255.255.255.0,1h"),
                // Without it dnsmasq pings an address before offering it, and the client's
                // first DISCOVER goes unanswered for 3 s.
                "--no-ping",
                "--log-dhcp",
            ])
            .arg(format!("--dhcp-leasefile={}", self.lease_file().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("dnsmasq.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.tools.dnsmasq.display()));
        self.dnsmasq = Some(child);
        let log = self.log_path();
        if let Some(child) = self.dnsmasq.as_mut() {
            wait_for_dhcp(child, &log);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    /// The lan side's address, dnsmasq's: `10.98.<n>.1`.
    pub fn server_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 98, self.subnet, 1)
    }

    /// The lease file dnsmasq keeps.
    pub fn lease_file(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.leases")
    }

    /// dnsmasq's pid (`ip netns exec` execs it, so it is the child's).
    pub fn dnsmasq_pid(&self) -> u32 {
        self.dnsmasq
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("dnsmasq is not running"))
    }

    /// The lan namespace's neighbour table, as seen through dnsmasq's `/proc` entry.
    pub fn neighbour_table(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/net/arp", self.dnsmasq_pid()))
    }

    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The names of the lan and bmc namespaces (also their veth ends' names).
    pub fn namespaces(&self) -> (&str, &str) {
        (&self.lan, &self.bmc)
    }

    /// Gives the BMC side the MAC `mac` and has it take a DHCP lease from dnsmasq with
    /// busybox udhcpc; returns the address it got (and configured on its interface).
    pub fn take_lease(&self, mac: Mac) -> Ipv4Addr {
        let bmc = self.bmc.as_str();
        let got = self.dir.path().join("bmc.ip");
        let _ = std::fs::remove_file(&got);
        let script = self.dir.path().join("udhcpc.sh");
        // udhcpc only reports the lease to this script, which must configure it.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n  bound|renew) {} addr add \"$ip/${{mask:-24}}\" dev \"$interface\" && echo \"$ip\" > {} ;;\nesac\n",
                self.tools.ip.display(),
                got.display()
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write the udhcpc script: {e}"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot make the udhcpc script executable: {e}"));
        self.ip(&["-n", bmc, "addr", "flush", "dev", bmc]);
        self.ip(&["-n", bmc, "link", "set", bmc, "down"]);
        self.ip(&[
            "-n",
            bmc,
            "link",
            "set",
            "dev",
            bmc,
            "address",
            &mac.to_string(),
        ]);
        self.ip(&["-n", bmc, "link", "set", bmc, "up"]);
        let output = run(
            "udhcpc",
            Command::new(&self.tools.ip)
                .args(["netns", "exec", bmc])
                .arg(&self.tools.busybox)
                .args(["udhcpc", "-i", bmc, "-n", "-q", "-t", "5", "-s"])
                .arg(&script),
            Duration::from_secs(30),
        );
        let address = std::fs::read_to_string(&got)
            .ok()
            .and_then(|text| text.trim().parse::<Ipv4Addr>().ok());
        match (output.status.success(), address) {
            (true, Some(address)) => address,
            _ => panic!(
                "the BMC ({mac}) took no lease ({}):\n{}{}\ndnsmasq log:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.dnsmasq_log()
            ),
        }
    }

    /// Sends one ping from the BMC side to dnsmasq's address, so the lan side's
    /// neighbour table learns the BMC; panics if no reply comes.
    pub fn ping_server(&self) {
        let output = run(
            "ping",
            Command::new(&self.tools.ip)
                .args(["netns", "exec", &self.bmc])
                .arg(&self.tools.busybox)
                .args(["ping", "-c", "1", "-W", "2"])
                .arg(self.server_address().to_string()),
            Duration::from_secs(10),
        );
        if !output.status.success() {
            panic!(
                "the BMC could not ping {} ({}):\n{}{}",
                self.server_address(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace destroys the veth end in it, and with it the pair.
        for ns in self.namespaces.drain(..).rev() {
            let deleted = Command::new(&self.tools.ip)
                .args(["netns", "del", &ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !deleted {
                eprintln!(
                    "netns: could not delete network namespace {ns}: run `ip netns del {ns}`"
                );
            }
        }
    }
}

/// Waits until the dnsmasq `child`, logging to `log`, serves DHCP; panics with its log if it
/// exits or takes more than 10 s.
pub(crate) fn wait_for_dhcp(child: &mut std::process::Child, log: &std::path::Path) {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dnsmasq exited ({status}); log:\n{}", read());
        }
        if read().contains("DHCP, IP range") {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "dnsmasq did not start serving DHCP within 10 s; log:\n{}",
                read()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
