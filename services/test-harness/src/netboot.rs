//! A real netboot lab (root only): a QEMU guest netboots through its iPXE NIC ROM from
//! servers that run in this process.
//!
//! [`NetbootLab::start`] makes a network namespace with a bridge (`10.97.<n>.1/24` plus an IPv6
//! ULA, so dnsmasq can send router advertisements and iPXE does not wait ~15 s per stage for
//! IPv6 autoconfiguration) and a tap on it. [`NetbootLab::bind`] gives a TCP listener inside
//! that namespace, created from this process, so an in-process axum server (boot-api, a
//! file server) is reachable from the guest while the same process still talks to services
//! on the host's loopback. [`NetbootLab::start_dhcp`] starts dnsmasq (DHCP only) handing iPXE
//! clients a boot URL; [`NetbootLab::serve_files`] serves kernel and initramfs and logs each
//! request; [`NetbootLab::boot_qemu`] boots a guest (QEMU with TCG) and returns its serial log.
//! [`NetbootAssets::get`] is a Debian kernel (from `scripts/install-deps`) and a busybox
//! initramfs whose `/init` phones home to `phonehome=<url>` with `token=<token>` and powers
//! off. Recipe and timings: `shared/netboot/README.md`, section 2.
//!
//! Everything is removed on drop, also when the test panics: QEMU, dnsmasq, the file
//! servers and the namespace. A lab left behind by a killed process (its PID is in the
//! namespace name) is removed by the next [`NetbootLab::start`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use metal_core::Mac;
use sha2::{Digest, Sha256};

use crate::netns::{find_tool, require_root, require_tools, run};

/// What the initramfs's `/init` prints on the serial console once its phone-home POST got a
/// 2xx answer (it then powers off).
pub const PHONED_HOME: &str = "NETBOOT-PHONED-HOME";
/// What `/init` prints, followed by the reason, when a step fails (it then powers off).
pub const INIT_FAILED: &str = "NETBOOT-FAILED";
/// What SeaBIOS prints, after trying floppy, CD and disk, once iPXE gave up or `exit`ed;
/// then it waits forever. Stop there with [`NetbootLab::boot_qemu_until`].
pub const NO_BOOTABLE_DEVICE: &str = "No bootable device.";

/// Namespace names are `mtnb<pid>-<n>`: the creating process and its lab counter.
const PREFIX: &str = "mtnb";
/// Where `ip netns add` mounts the namespaces.
const NETNS_DIR: &str = "/var/run/netns";
const BRIDGE: &str = "br0";
const TAP: &str = "tap0";
/// Numbers the labs of this process.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);
/// The first lab of a process removes stale labs; the others wait for it.
static STALE_LABS_REMOVED: Once = Once::new();
/// Longest a plain `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The tools a [`NetbootLab`] runs, found once.
struct LabTools {
    ip: PathBuf,
    dnsmasq: PathBuf,
    qemu: PathBuf,
}

impl LabTools {
    /// Finds every tool, or panics naming all that are missing and their packages.
    fn find() -> LabTools {
        let [ip, dnsmasq, qemu] = require_tools(
            "the netboot tests",
            [
                ("ip", "iproute2"),
                ("dnsmasq", "dnsmasq-base"),
                ("qemu-system-x86_64", "qemu-system-x86 ipxe-qemu"),
            ],
        );
        LabTools { ip, dnsmasq, qemu }
    }
}

/// One HTTP request a [`NetbootLab::serve_files`] server answered.
#[derive(Clone, Debug)]
pub struct FileRequest {
    pub method: String,
    /// The request target: path and query, as sent.
    pub path: String,
    pub status: u16,
    /// Body bytes sent (the file's length for a 200 to GET).
    pub bytes: u64,
    /// The client, the guest's address.
    pub peer: IpAddr,
    /// When the answer was ready.
    pub at: Instant,
}

/// A file server thread of a lab: its own tokio runtime, stopped on drop of the lab.
struct FileServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct FileServerState {
    /// URL path to file.
    files: HashMap<String, PathBuf>,
    requests: Arc<Mutex<Vec<FileRequest>>>,
}

/// A network namespace with a bridge and a tap for QEMU, dnsmasq and servers. See the module
/// docs. Needs root.
pub struct NetbootLab {
    tools: LabTools,
    name: String,
    subnet: u8,
    ipv6: bool,
    dir: tempfile::TempDir,
    created: bool,
    dnsmasq: Option<Child>,
    boot_url: Option<String>,
    servers: Vec<FileServer>,
    file_requests: Arc<Mutex<Vec<FileRequest>>>,
    /// QEMUs running now, killed on drop.
    qemu_pids: Arc<Mutex<HashSet<u32>>>,
    /// The tap takes one QEMU at a time.
    tap: Mutex<()>,
    boots: AtomicU32,
}

impl NetbootLab {
    /// Makes the namespace (lo up; `br0` with `10.97.<n>.1/24` and `fd97:<n>::1/64`; `tap0`
    /// on it), after removing labs left by dead processes. Start dnsmasq with
    /// [`NetbootLab::start_dhcp`] once the boot URL is known.
    pub fn start() -> NetbootLab {
        let tools = LabTools::find();
        require_root();
        STALE_LABS_REMOVED.call_once(|| remove_stale_labs(&tools.ip));
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("netboot-lab-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the netboot lab's temp dir: {e}"));
        let mut lab = NetbootLab {
            tools,
            name: format!("{PREFIX}{pid}-{n}"),
            // Each lab has its own namespace, so subnets cannot clash; varying them only
            // keeps logs of parallel labs apart.
            subnet: (pid.wrapping_mul(31).wrapping_add(n) % 254 + 1) as u8,
            ipv6: true,
            dir,
            created: false,
            dnsmasq: None,
            boot_url: None,
            servers: Vec::new(),
            file_requests: Arc::new(Mutex::new(Vec::new())),
            qemu_pids: Arc::new(Mutex::new(HashSet::new())),
            tap: Mutex::new(()),
            boots: AtomicU32::new(0),
        };
        let name = lab.name.clone();
        // The name can only be left over from a killed run with the same pid.
        let _ = Command::new(&lab.tools.ip)
            .args(["netns", "del", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        lab.ip(&["netns", "add", &name]);
        lab.created = true;
        lab.ip(&["-n", &name, "link", "set", "lo", "up"]);
        lab.ip(&["-n", &name, "link", "add", BRIDGE, "type", "bridge"]);
        let v4 = format!("{}/24", lab.bridge_ip());
        lab.ip(&["-n", &name, "addr", "add", &v4, "dev", BRIDGE]);
        // `nodad`: the address is usable at once, so dnsmasq sends router advertisements
        // from the first DHCP on.
        let v6 = format!("{}/64", lab.bridge_ipv6());
        let added = lab.ip_output(&["-n", &name, "addr", "add", &v6, "dev", BRIDGE, "nodad"]);
        if !added.status.success() {
            lab.ipv6 = false;
            eprintln!(
                "netboot: no IPv6 on the lab's bridge ({}); without router advertisements \
                 iPXE waits for IPv6 autoconfiguration and each boot takes ~15 s longer",
                String::from_utf8_lossy(&added.stderr).trim()
            );
        }
        lab.ip(&["-n", &name, "link", "set", BRIDGE, "up"]);
        lab.ip(&["-n", &name, "tuntap", "add", "dev", TAP, "mode", "tap"]);
        lab.ip(&["-n", &name, "link", "set", TAP, "master", BRIDGE]);
        lab.ip(&["-n", &name, "link", "set", TAP, "up"]);
        lab
    }

    fn ip_output(&self, args: &[&str]) -> Output {
        let what = format!("ip {}", args.join(" "));
        run(&what, Command::new(&self.tools.ip).args(args), IP_TIMEOUT)
    }

    fn ip(&self, args: &[&str]) -> Output {
        let output = self.ip_output(args);
        if !output.status.success() {
            panic!(
                "`ip {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        output
    }

    /// The namespace's name, for `ip netns exec <name> ...` by hand.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(&self.tools.ip);
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// The bridge's address, where dnsmasq and [`NetbootLab::bind`] listen: `10.97.<n>.1`.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 97, self.subnet, 1)
    }

    fn bridge_ipv6(&self) -> String {
        format!("fd97:{:x}::1", self.subnet)
    }

    /// The lab's temporary directory (dnsmasq's log and leases, QEMU's serial logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts dnsmasq in the namespace, DHCP only (`--port=0`), handing iPXE clients (DHCP
    /// option 175) `boot_url` as their boot file; other clients get a lease and nothing to
    /// boot (the netbooted kernel's own DHCP client needs the lease). With IPv6 on the
    /// bridge it also sends router advertisements (`--enable-ra`, SLAAC only). Waits until
    /// dnsmasq serves. Called again, it restarts dnsmasq with the new URL.
    pub fn start_dhcp(&mut self, boot_url: &str) {
        if boot_url.contains(',') || boot_url.chars().any(char::is_whitespace) {
            panic!("dnsmasq cannot hand out a boot URL with a comma or a space: {boot_url:?}");
        }
        self.stop_dnsmasq();
        let log = File::create(self.dnsmasq_log_path())
            .unwrap_or_else(|e| panic!("cannot create the dnsmasq log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the dnsmasq log handle: {e}"));
        let s = self.subnet;
        let mut command = Command::new(&self.tools.ip);
        command
            .args(["netns", "exec", &self.name])
            .arg(&self.tools.dnsmasq)
            .args([
                "--no-daemon",
                // A host's /etc/dnsmasq.conf must not change what this one serves.
                "--conf-file=/dev/null",
                "--port=0",
                &format!("--interface={BRIDGE}"),
                "--bind-interfaces",
                "--except-interface=lo",
                &format!("--dhcp-range=10.97.{s}.100,10.97.{s}.150,255.255.255.0,1h"),
                // Without it dnsmasq pings an address before offering it: 3 s per lease.
                "--no-ping",
                "--dhcp-match=set:ipxe,175",
                &format!("--dhcp-boot=tag:ipxe,{boot_url}"),
                "--log-dhcp",
            ])
            .arg(format!(
                "--dhcp-leasefile={}",
                self.dir().join("dnsmasq.leases").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir().join("dnsmasq.pid").display()
            ));
        if self.ipv6 {
            command.args([
                "--enable-ra",
                &format!("--dhcp-range=::,constructor:{BRIDGE},ra-only"),
            ]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.tools.dnsmasq.display()));
        self.dnsmasq = Some(child);
        self.boot_url = Some(boot_url.to_string());
        let log = self.dnsmasq_log_path();
        if let Some(child) = self.dnsmasq.as_mut() {
            crate::netns::wait_for_dhcp(child, &log);
        }
    }

    /// The URL dnsmasq hands iPXE, once [`NetbootLab::start_dhcp`] ran.
    pub fn boot_url(&self) -> Option<&str> {
        self.boot_url.as_deref()
    }

    fn dnsmasq_log_path(&self) -> PathBuf {
        self.dir().join("dnsmasq.log")
    }

    /// What dnsmasq logged (every DHCP exchange, with `--log-dhcp`).
    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dnsmasq_log_path()).unwrap_or_default()
    }

    fn stop_dnsmasq(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A TCP listener on `<bridge ip>:port` (0 for any free port) inside the namespace,
    /// non-blocking, ready for `tokio::net::TcpListener::from_std`. A short-lived thread
    /// enters the namespace and binds; the socket stays in the namespace it was made in,
    /// while the rest of this process stays in the host's.
    pub fn bind(&self, port: u16) -> std::net::TcpListener {
        let netns = Path::new(NETNS_DIR).join(&self.name);
        let addr = SocketAddr::from((self.bridge_ip(), port));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("netboot-bind".to_string())
            .spawn(move || {
                let _ = tx.send(bind_in_namespace(&netns, addr));
            })
            .unwrap_or_else(|e| panic!("cannot start a thread to bind {addr}: {e}"));
        let result = rx
            .recv()
            .unwrap_or_else(|e| panic!("the thread binding {addr} died: {e}"));
        let _ = thread.join();
        result.unwrap_or_else(|message| panic!("{message}"))
    }

    /// Serves `files` (URL path such as `/vmlinuz`, file on disk) over HTTP on
    /// `<bridge ip>:port` (0 for any free port) inside the namespace, from a thread of its
    /// own, until the lab is dropped. GET and HEAD answer with Content-Length; anything else
    /// is a 404 (unknown path) or 405. Each request is logged, see
    /// [`NetbootLab::file_requests`]. Files are read at each request. Returns the address.
    pub fn serve_files(&mut self, port: u16, files: Vec<(String, PathBuf)>) -> SocketAddr {
        let mut table = HashMap::new();
        for (path, file) in files {
            if !file.is_file() {
                panic!("cannot serve {}: no such file", file.display());
            }
            let path = if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            };
            table.insert(path, file);
        }
        let listener = self.bind(port);
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the file server's address: {e}"));
        let state = Arc::new(FileServerState {
            files: table,
            requests: self.file_requests.clone(),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("netboot-files".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot build the file server's tokio runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("cannot hand the file server's listener to tokio");
                    let app = Router::new().fallback(serve_file).with_state(state);
                    let serve = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    );
                    // No graceful shutdown: a killed guest's connection would hold it up.
                    // Dropping the runtime drops the connections.
                    tokio::select! {
                        result = serve => {
                            if let Err(e) = result {
                                eprintln!("netboot: the file server on {addr} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .unwrap_or_else(|e| panic!("cannot start the file server thread: {e}"));
        self.servers.push(FileServer {
            shutdown: Some(shutdown),
            thread: Some(thread),
        });
        addr
    }

    /// Every request the file servers answered so far, in order.
    pub fn file_requests(&self) -> Vec<FileRequest> {
        lock(&self.file_requests).clone()
    }

    /// Boots a QEMU guest (TCG, 512 MiB, one e1000 NIC with `mac` on the lab's tap, network
    /// boot through its iPXE ROM, `-no-reboot`) until it exits or `timeout` passes, when it
    /// is killed. Blocks: run the servers it talks to on other threads (their own runtime, or
    /// call this from `spawn_blocking`). One guest at a time per lab; a second call waits.
    pub fn boot_qemu(&self, mac: &str, timeout: Duration) -> QemuRun {
        self.boot_qemu_until(mac, timeout, |_| false)
    }

    /// [`NetbootLab::boot_qemu`], also stopping (killing) QEMU as soon as `until` holds for
    /// the serial log so far, such as `|serial| serial.contains(NO_BOOTABLE_DEVICE)`.
    pub fn boot_qemu_until(
        &self,
        mac: &str,
        timeout: Duration,
        mut until: impl FnMut(&str) -> bool,
    ) -> QemuRun {
        let mac = Mac::parse_device(mac)
            .unwrap_or_else(|e| panic!("boot_qemu needs a device MAC address: {e}"));
        if self.dnsmasq.is_none() {
            panic!("boot_qemu: start dnsmasq first with NetbootLab::start_dhcp(boot_url)");
        }
        let _tap = self
            .tap
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let boot = self.boots.fetch_add(1, Ordering::Relaxed);
        let serial_path = self.dir().join(format!("qemu-{boot}.log"));
        let log = File::create(&serial_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", serial_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the QEMU log handle: {e}"));
        let started = Instant::now();
        // `ip netns exec` execs QEMU, so the child's pid is QEMU's.
        let child = Command::new(&self.tools.ip)
            .args(["netns", "exec", &self.name])
            .arg(&self.tools.qemu)
            .args(["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot"])
            .args(["-boot", "n"])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={TAP},script=no,downscript=no"),
            ])
            .args(["-device", &format!("e1000,netdev=n0,mac={mac}")])
            .args(["-serial", "mon:stdio"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.tools.qemu.display()));
        let mut guard = QemuGuard {
            pid: child.id(),
            child,
            running: self.qemu_pids.clone(),
        };
        lock(&self.qemu_pids).insert(guard.pid);
        let read_serial = || {
            std::fs::read(&serial_path)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default()
        };
        let end = loop {
            match guard.child.try_wait() {
                Ok(Some(status)) => break QemuEnd::Exited(status),
                Ok(None) => {}
                Err(e) => panic!("cannot wait for QEMU: {e}"),
            }
            if until(&read_serial()) {
                break QemuEnd::UntilHeld;
            }
            if started.elapsed() > timeout {
                break QemuEnd::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let elapsed = started.elapsed();
        // Kills QEMU unless it exited by itself.
        drop(guard);
        QemuRun {
            end,
            serial: read_serial(),
            serial_path,
            started,
            elapsed,
            timeout,
        }
    }
}

impl Drop for NetbootLab {
    fn drop(&mut self) {
        for pid in lock(&self.qemu_pids).drain() {
            // SAFETY: kill(2) on a pid this lab started and has not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        for server in &mut self.servers {
            server.stop();
        }
        self.stop_dnsmasq();
        if self.created {
            let deleted = Command::new(&self.tools.ip)
                .args(["netns", "del", &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !deleted {
                eprintln!(
                    "netboot: could not delete network namespace {0}: run `ip netns del {0}`",
                    self.name
                );
            }
        }
    }
}

/// Locks a mutex, also one a panicking thread left poisoned (the data is plain records).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs on a thread of its own, which it moves into the namespace for good.
fn bind_in_namespace(netns: &Path, addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let file = File::open(netns)
        .map_err(|e| format!("cannot open the namespace {}: {e}", netns.display()))?;
    // SAFETY: setns(2) with a namespace fd we hold open; it moves only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "cannot enter the namespace {}: {}",
            netns.display(),
            std::io::Error::last_os_error()
        ));
    }
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot bind {addr} in {}: {e}", netns.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the listener on {addr} non-blocking: {e}"))?;
    Ok(listener)
}

async fn serve_file(
    State(state): State<Arc<FileServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
) -> Response {
    let (status, content) = if method != Method::GET && method != Method::HEAD {
        (StatusCode::METHOD_NOT_ALLOWED, None)
    } else {
        match state.files.get(uri.path()) {
            None => (StatusCode::NOT_FOUND, None),
            Some(file) => match tokio::fs::read(file).await {
                Ok(bytes) => (StatusCode::OK, Some(bytes)),
                Err(e) => {
                    eprintln!("netboot: cannot read {}: {e}", file.display());
                    (StatusCode::INTERNAL_SERVER_ERROR, None)
                }
            },
        }
    };
    let length = content.as_ref().map_or(0, Vec::len);
    let sent = if method == Method::HEAD { 0 } else { length };
    lock(&state.requests).push(FileRequest {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
        status: status.as_u16(),
        bytes: sent as u64,
        peer: peer.ip(),
        at: Instant::now(),
    });
    let body = match content {
        Some(bytes) if method == Method::GET => Body::from(bytes),
        _ => Body::empty(),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .expect("a response from a status and two valid headers")
}

/// Kills QEMU (by pid) unless it exited, also when the boot panics.
struct QemuGuard {
    pid: u32,
    child: Child,
    running: Arc<Mutex<HashSet<u32>>>,
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        lock(&self.running).remove(&self.pid);
    }
}

/// How a QEMU boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuEnd {
    /// QEMU exited by itself: 0 when the guest powered off (or reset, with `-no-reboot`).
    Exited(ExitStatus),
    /// The `until` predicate of [`NetbootLab::boot_qemu_until`] held; QEMU was killed.
    UntilHeld,
    /// The timeout passed; QEMU was killed.
    TimedOut,
}

/// One QEMU boot: how it ended, the serial console, how long it took.
#[derive(Clone, Debug)]
pub struct QemuRun {
    pub end: QemuEnd,
    /// Everything QEMU wrote: the serial console (SeaBIOS, iPXE, the kernel, `/init`) and
    /// QEMU's own messages.
    pub serial: String,
    /// Where that log is, until the lab is dropped.
    pub serial_path: PathBuf,
    /// When QEMU was started.
    pub started: Instant,
    /// From start to exit or kill.
    pub elapsed: Duration,
    pub timeout: Duration,
}

impl QemuRun {
    /// QEMU exited by itself with status 0 (the guest powered off).
    pub fn exited_ok(&self) -> bool {
        matches!(self.end, QemuEnd::Exited(status) if status.success())
    }

    /// The serial log without terminal escapes, carriage returns and backspaces.
    pub fn readable_serial(&self) -> String {
        readable(&self.serial)
    }
}

/// For assertion messages: how it ended and the readable serial log.
impl fmt::Display for QemuRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = match self.end {
            QemuEnd::Exited(status) => format!("QEMU exited ({status})"),
            QemuEnd::UntilHeld => "stopped once the awaited output appeared".to_string(),
            QemuEnd::TimedOut => format!("killed after the {:?} timeout", self.timeout),
        };
        write!(
            f,
            "{end} after {:.1} s; serial log ({}):\n{}",
            self.elapsed.as_secs_f64(),
            self.serial_path.display(),
            self.readable_serial()
        )
    }
}

/// Drops ANSI escape sequences, `\r` and backspaces (iPXE's countdown) from console text.
fn readable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters final-byte; other escapes: ESC + one char.
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\u{8}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Removes labs whose creating process is dead: kills what still runs in their namespace
/// (a QEMU or dnsmasq of a killed test) and deletes the namespace.
fn remove_stale_labs(ip: &Path) {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("netboot: removing network namespace {name}, left by dead process {pid}");
        kill_processes_in(&entry.path());
        let _ = Command::new(ip)
            .args(["netns", "del", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Kills (by pid) every process whose network namespace is the one mounted at `netns`.
fn kill_processes_in(netns: &Path) {
    let (Ok(target), Ok(own)) = (
        std::fs::metadata(netns),
        std::fs::metadata("/proc/self/ns/net"),
    ) else {
        return;
    };
    // Only a mounted namespace (on nsfs, like our own) names processes.
    if target.dev() != own.dev() {
        return;
    }
    let wanted = format!("net:[{}]", target.ino());
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let in_namespace = std::fs::read_link(process.path().join("ns/net"))
            .is_ok_and(|link| link.as_os_str() == wanted.as_str());
        if in_namespace {
            eprintln!("netboot: killing process {pid}, left in the stale namespace");
            // SAFETY: kill(2) of a process in a namespace only this harness makes.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The guest's `/init`: network up, phone home, power off. See [`NetbootAssets`].
const INIT: &str = r#"#!/bin/busybox sh
# test_harness::netboot: loads e1000.ko, takes a DHCP lease, POSTs {"mac","uptime"} to the
# phonehome= URL of the kernel command line (with "Authorization: Bearer <token=>"), then
# powers off. Markers on the console: NETBOOT-PHONED-HOME, or NETBOOT-FAILED: <why>.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "NETBOOT-INIT-STARTED"
fail() {
    echo "NETBOOT-FAILED: $*"
    poweroff -f
}
URL=
TOKEN=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        phonehome=*) URL="${arg#phonehome=}" ;;
        token=*) TOKEN="${arg#token=}" ;;
    esac
done
[ -n "$URL" ] || fail "no phonehome= on the kernel command line"
insmod /e1000.ko || fail "insmod /e1000.ko"
n=0
while [ ! -e /sys/class/net/eth0 ]; do
    n=$((n + 1))
    [ "$n" -le 100 ] || fail "no eth0 10 s after loading e1000.ko"
    sleep 0.1
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -f -n -q -t 10 -T 1 -s /bin/udhcpc.sh || fail "no DHCP lease on eth0"
MAC=$(cat /sys/class/net/eth0/address)
echo "NETBOOT-NETWORK-UP mac=$MAC ip=$(cat /tmp/ip)"
BODY="{\"mac\":\"$MAC\",\"uptime\":$(cut -d' ' -f1 /proc/uptime)}"
if [ -n "$TOKEN" ]; then
    wget -q -O /tmp/reply --header "Authorization: Bearer $TOKEN" \
        --header "Content-Type: application/json" --post-data "$BODY" "$URL" \
        || fail "POST $URL"
else
    wget -q -O /tmp/reply --header "Content-Type: application/json" \
        --post-data "$BODY" "$URL" || fail "POST $URL"
fi
echo "NETBOOT-PHONED-HOME"
poweroff -f
"#;

/// udhcpc only reports a lease to this script, which configures it.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
    bound|renew)
        ip addr add "$ip/${mask:-24}" dev "$interface"
        echo "$ip" > /tmp/ip
        ;;
esac
"#;

/// A Debian kernel and a busybox initramfs for a netbooted guest.
///
/// The initramfs's `/init` loads `e1000.ko`, brings `eth0` up, takes a DHCP lease, and POSTs
/// `{"mac":"<eth0's MAC>","uptime":<seconds>}` (`Content-Type: application/json`) to the
/// `phonehome=<url>` of the kernel command line, with `Authorization: Bearer <token>` when
/// there is a `token=<token>`. It prints [`PHONED_HOME`] after a 2xx answer, or
/// [`INIT_FAILED`] and the reason, on the console, then powers off. Boot it with
/// `console=ttyS0 phonehome=... token=...` (and `panic=-1`, so a broken boot ends QEMU).
#[derive(Clone, Debug)]
pub struct NetbootAssets {
    /// `vmlinuz`, from `$METAL_NETBOOT_KERNEL_DIR`.
    pub kernel: PathBuf,
    /// A gzip newc initramfs, built into a cache dir when missing or out of date.
    pub initrd: PathBuf,
}

impl NetbootAssets {
    /// Finds the kernel and builds (or reuses) the initramfs. Panics naming
    /// scripts/install-deps when the kernel or a static busybox is missing.
    pub fn get() -> NetbootAssets {
        let kernel_dir = kernel_dir();
        let kernel = kernel_dir.join("vmlinuz");
        let module = kernel_dir.join("e1000.ko");
        if !kernel.is_file() || !module.is_file() {
            panic!(
                "the netboot tests need a Debian kernel: {} and the matching {} are missing; \
                 run scripts/install-deps (it downloads them once and prints `export \
                 METAL_NETBOOT_KERNEL_DIR=...`), or set METAL_NETBOOT_KERNEL_DIR",
                kernel.display(),
                module.display()
            );
        }
        let busybox = find_tool("busybox").unwrap_or_else(|| {
            panic!(
                "the netboot tests need a static busybox for the guest's initramfs: run \
                 scripts/install-deps, or `apt-get install busybox-static`"
            )
        });
        let busybox_bytes = read_file(&busybox);
        if is_dynamic_elf(&busybox_bytes) {
            panic!(
                "{} is dynamically linked, so it cannot run alone in the guest's initramfs: \
                 `apt-get install busybox-static`",
                busybox.display()
            );
        }
        let module_bytes = read_file(&module);
        let mut hash = Sha256::new();
        for part in [
            INIT.as_bytes(),
            UDHCPC_SCRIPT.as_bytes(),
            &busybox_bytes,
            &module_bytes,
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        let digest: String = hash
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let cache = cache_root().join("initrd");
        let initrd = cache.join(format!("initrd-{digest}.gz"));
        if !initrd.is_file() {
            build_initrd(&cache, &initrd, &busybox, &busybox_bytes, &module_bytes);
        }
        NetbootAssets { kernel, initrd }
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/metal/netboot`, where scripts/install-deps puts the
/// kernel.
fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("metal").join("netboot")
}

/// `$METAL_NETBOOT_KERNEL_DIR`, else where scripts/install-deps puts it by default.
fn kernel_dir() -> PathBuf {
    std::env::var_os("METAL_NETBOOT_KERNEL_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_root().join("kernel"))
}

fn read_file(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bytes
}

/// Whether an ELF64 file asks for a program interpreter (PT_INTERP): dynamically linked.
fn is_dynamic_elf(bytes: &[u8]) -> bool {
    let field = |offset: usize, len: usize| -> Option<u64> {
        let slice = bytes.get(offset..offset + len)?;
        Some(
            slice
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (field(0x20, 8), field(0x36, 2), field(0x38, 2))
    else {
        return false;
    };
    (0..phnum).any(|i| {
        usize::try_from(phoff + i * phentsize)
            .ok()
            .and_then(|at| field(at, 4))
            == Some(3)
    })
}

/// Writes the initramfs tree and packs it with `busybox cpio -o -H newc | busybox gzip`
/// (cpio itself is often not installed), into a temp file renamed over `initrd`, so
/// parallel builders never see half a file.
fn build_initrd(cache: &Path, initrd: &Path, busybox: &Path, busybox_bytes: &[u8], module: &[u8]) {
    std::fs::create_dir_all(cache)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let work = tempfile::Builder::new()
        .prefix(".initrd-build-")
        .tempdir_in(cache)
        .unwrap_or_else(|e| panic!("cannot create a build dir in {}: {e}", cache.display()));
    let root = work.path().join("root");
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(dir))
            .unwrap_or_else(|e| panic!("cannot create the initramfs tree: {e}"));
    }
    let files: [(&str, &[u8], u32); 4] = [
        ("init", INIT.as_bytes(), 0o755),
        ("bin/udhcpc.sh", UDHCPC_SCRIPT.as_bytes(), 0o755),
        ("bin/busybox", busybox_bytes, 0o755),
        ("e1000.ko", module, 0o644),
    ];
    for (path, content, mode) in files {
        let path = root.join(path);
        std::fs::write(&path, content)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let packed = work.path().join("initrd.gz");
    let output = run(
        "busybox cpio | busybox gzip",
        Command::new("/bin/sh")
            .arg("-c")
            .arg(
                r#"set -e; cd "$1"; "$2" find . | "$2" cpio -o -H newc > ../initrd.cpio; "$2" gzip -c ../initrd.cpio > "$3""#,
            )
            .arg("sh")
            .arg(&root)
            .arg(busybox)
            .arg(&packed),
        Duration::from_secs(60),
    );
    if !output.status.success() {
        panic!(
            "packing the initramfs failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let size = std::fs::metadata(&packed).map_or(0, |m| m.len());
    // README pitfall: a cpio that found no files still makes a tiny valid archive.
    if size < (busybox_bytes.len() as u64) / 4 {
        panic!(
            "the packed initramfs {} is only {size} bytes: the cpio missed its files",
            packed.display()
        );
    }
    std::fs::rename(&packed, initrd)
        .unwrap_or_else(|e| panic!("cannot move the initramfs to {}: {e}", initrd.display()));
}
