//! A fleet of fake Redfish BMCs, each on its own loopback port, for load and fault-injection
//! tests: a synthetic or recorded tree, latency, basic or session auth, one [`Fault`] per BMC,
//! and, with a [`PowerSpec`], a synthetic system whose boot override and power state are live
//! (PATCH of `Boot`, POST of `ComputerSystem.Reset`), every PATCH and POST recorded.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The service root, the one resource readable without credentials.
pub const SERVICE_ROOT: &str = "/redfish/v1";
/// Where sessions are opened (`POST`) and listed.
pub const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
/// The synthetic system, the one whose settings a [`PowerSpec`] makes live.
pub const SYSTEM: &str = "/redfish/v1/Systems/1";
/// Its reset action.
pub const RESET_ACTION: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";
/// Its reset ActionInfo, served with [`ResetTypes::ActionInfo`].
pub const RESET_ACTION_INFO: &str = "/redfish/v1/Systems/1/ResetActionInfo";
/// The size of a [`Fault::Huge`] or [`Fault::HugeWithLength`] body.
pub const HUGE_BYTES: u64 = 1 << 30;
/// How deep the arrays of a [`Fault::DeepNesting`] body go.
pub const DEEP_NESTING: usize = 100_000;

/// Every path of the synthetic tree ([`synthetic_resource`] answers each of them).
pub const SYNTHETIC_PATHS: &[&str] = &[
    "/redfish/v1",
    "/redfish/v1/Systems",
    "/redfish/v1/Systems/1",
    "/redfish/v1/Systems/1/Processors",
    "/redfish/v1/Systems/1/Processors/CPU1",
    "/redfish/v1/Systems/1/Processors/CPU2",
    "/redfish/v1/Systems/1/Memory",
    "/redfish/v1/Systems/1/Memory/DIMM1",
    "/redfish/v1/Systems/1/Memory/DIMM2",
    "/redfish/v1/Systems/1/Memory/DIMM3",
    "/redfish/v1/Systems/1/Memory/DIMM4",
    "/redfish/v1/Systems/1/EthernetInterfaces",
    "/redfish/v1/Systems/1/EthernetInterfaces/NIC1",
    "/redfish/v1/Systems/1/EthernetInterfaces/NIC2",
    "/redfish/v1/Systems/1/Storage",
    "/redfish/v1/Systems/1/Storage/1",
    "/redfish/v1/Systems/1/Storage/1/Drives/Disk1",
    "/redfish/v1/Systems/1/Storage/1/Drives/Disk2",
    "/redfish/v1/Chassis",
    "/redfish/v1/Chassis/1",
    "/redfish/v1/Managers",
    "/redfish/v1/Managers/BMC",
    "/redfish/v1/Managers/BMC/EthernetInterfaces",
    "/redfish/v1/Managers/BMC/EthernetInterfaces/eth0",
    "/redfish/v1/UpdateService",
    "/redfish/v1/UpdateService/FirmwareInventory",
    "/redfish/v1/UpdateService/FirmwareInventory/BMC",
    "/redfish/v1/UpdateService/FirmwareInventory/BIOS",
    "/redfish/v1/SessionService",
    SESSIONS,
];

/// What a BMC serves.
#[derive(Clone, Debug, Default)]
pub enum Tree {
    /// A small server generated from the BMC's index: see [`synthetic_resource`].
    #[default]
    Synthetic,
    /// A mockup folder loaded once by [`Tree::mockup`]; clones share the documents.
    Mockup(Arc<MockupTree>),
}

impl Tree {
    /// Loads `<dir>/redfish/v1/**/index.json` into memory.
    pub fn mockup(dir: &Path) -> io::Result<Tree> {
        MockupTree::load(dir).map(|tree| Tree::Mockup(Arc::new(tree)))
    }
}

/// The documents of a mockup folder (DMTF layout), by normalised path.
pub struct MockupTree {
    dir: std::path::PathBuf,
    documents: HashMap<String, Bytes>,
}

impl MockupTree {
    pub fn load(dir: &Path) -> io::Result<MockupTree> {
        if !dir.join("redfish/v1/index.json").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} has no redfish/v1/index.json", dir.display()),
            ));
        }
        let mut documents = HashMap::new();
        let mut pending = vec![dir.join("redfish")];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(&folder)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    pending.push(path);
                } else if entry.file_name() == "index.json" {
                    let relative = folder.strip_prefix(dir).unwrap_or(&folder);
                    let key = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .fold(String::new(), |key, segment| key + "/" + &segment);
                    documents.insert(normalise(&key), Bytes::from(std::fs::read(&path)?));
                }
            }
        }
        Ok(MockupTree {
            dir: dir.to_path_buf(),
            documents,
        })
    }

    /// The document at `path` (normalised first).
    pub fn get(&self, path: &str) -> Option<&Bytes> {
        self.documents.get(&normalise(path))
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }
}

impl fmt::Debug for MockupTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockupTree")
            .field("dir", &self.dir)
            .field("documents", &self.documents.len())
            .finish()
    }
}

/// How a BMC checks credentials.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// Anything goes; session logins succeed with any credentials.
    #[default]
    None,
    /// Basic auth on everything but the service root (401 with `WWW-Authenticate` otherwise);
    /// session logins answer 405, so a client must fall back to basic auth.
    Basic { user: String, password: String },
    /// `X-Auth-Token` from `POST` [`SESSIONS`] on everything but the service root, or basic
    /// auth when `allow_basic`. A token answers 401 once it has served
    /// `expire_after_requests` authenticated requests, so a client must log in again.
    Sessions {
        user: String,
        password: String,
        expire_after_requests: Option<u32>,
        allow_basic: bool,
    },
}

/// What goes wrong on a BMC; applies to every request unless the variant says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Always this status, with a Redfish error body.
    Status(u16),
    /// The first n requests of each path answer 500, the later ones normally.
    ServerErrorsThenOk(u32),
    /// Never answers (the connection stays open).
    Hang,
    /// 200 with a valid JSON body sent one byte per second, without Content-Length.
    Trickle,
    /// 200 with a body of [`HUGE_BYTES`] streamed without Content-Length.
    Huge,
    /// As [`Fault::Huge`], announced by `Content-Length: 1073741824`.
    HugeWithLength,
    /// Every request answers 302 to another path of the same BMC that redirects again.
    RedirectLoop,
    /// Every request answers 302 to `http://127.0.0.2:<same port>/redfish/v1`.
    RedirectOtherHost,
    /// 200 with `{"Members": [` and nothing more.
    InvalidJson,
    /// The Systems subtree never ends: `/redfish/v1/Systems/<s>/Processors/<n>` is a processor
    /// that is also a collection of `.../Processors/<n+1>` and links to `/redfish/v1/Systems/<s+1>`.
    /// Everything else is served from the tree.
    LinkLoop,
    /// 200 with [`DEEP_NESTING`] nested `[` and as many `]`.
    DeepNesting,
    /// The Systems collection is paged forever: `?$skip=n` has one new member and a
    /// `Members@odata.nextLink` to `?$skip=n+1`. Everything else is served from the tree.
    EndlessNextLink,
    /// `fault` on requests for `path` (normalised: trailing slashes ignored) only.
    FaultOnPath { path: String, fault: Box<Fault> },
}

static NO_FAULT: Fault = Fault::None;

impl Fault {
    /// The fault that applies to a request for `path`.
    fn on(&self, path: &str) -> &Fault {
        match self {
            Fault::FaultOnPath { path: only, fault } if normalise(only) == path => fault.on(path),
            Fault::FaultOnPath { .. } => &NO_FAULT,
            fault => fault,
        }
    }
}

/// Where the synthetic system advertises the `ResetType` values it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetTypes {
    /// `ResetType@Redfish.AllowableValues` on the action (most BMCs, sushy).
    Inline(Vec<String>),
    /// `@Redfish.ActionInfo` naming [`RESET_ACTION_INFO`], whose `Parameters` list them
    /// (OpenBMC, DMTF mockups).
    ActionInfo(Vec<String>),
    /// Neither; every `ResetType` is taken.
    Unadvertised,
}

/// An error answer a BMC gives instead of acting: the status and the `Message` of its one
/// `@Message.ExtendedInfo` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

/// Makes the synthetic system's boot override and power state live. Its `Boot` takes a
/// PATCH of `BootSourceOverrideTarget`, `BootSourceOverrideEnabled` and (when it has one)
/// `BootSourceOverrideMode`, checked against the allowable values below (400 with
/// `PropertyValueNotInList` otherwise); [`RESET_ACTION`] takes a POST of a `ResetType`:
/// `On`, `ForceOn` power on; `ForceOff`, `GracefulShutdown` power off; `ForceRestart`,
/// `GracefulRestart`, `PowerCycle` (re)start; `PushPowerButton` toggles; `Nmi` changes
/// nothing. Each start boots once from the override target when one is enabled (`Once`
/// then goes back to `Disabled`), else from `BootOrder`; [`FakeFleet::boots`] lists them.
/// [`PowerSpec::default`] serves what the plain synthetic system serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PowerSpec {
    /// `PowerState` until a reset changes it.
    pub power_state: String,
    /// `BootSourceOverrideTarget@Redfish.AllowableValues`; `None`: not served, anything taken.
    pub boot_targets: Option<Vec<String>>,
    /// `BootSourceOverrideEnabled@Redfish.AllowableValues`; `None`: not served.
    pub boot_enabled: Option<Vec<String>>,
    /// `BootSourceOverrideMode`; `None`: the system has no such property (and a PATCH
    /// naming it is refused as `PropertyUnknown`).
    pub boot_mode: Option<String>,
    /// `BootSourceOverrideMode@Redfish.AllowableValues`; `None`: not served.
    pub boot_modes: Option<Vec<String>>,
    pub reset_types: ResetTypes,
    /// Every reset answers this instead of acting.
    pub refuse_reset: Option<Refusal>,
    /// The system answers with an `ETag` (weak, `W/"<version>"`, as HPE iLO sends them)
    /// and a PATCH must carry it in `If-Match`: 428 without, 412 with another.
    pub etag: bool,
}

impl Default for PowerSpec {
    fn default() -> Self {
        PowerSpec {
            power_state: "On".to_string(),
            boot_targets: Some(strings(&["None", "Pxe", "Hdd", "Cd", "BiosSetup"])),
            boot_enabled: None,
            boot_mode: None,
            boot_modes: None,
            reset_types: ResetTypes::Inline(strings(&["On", "ForceOff", "GracefulRestart"])),
            refuse_reset: None,
            etag: false,
        }
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl PowerSpec {
    pub fn power_state(mut self, state: &str) -> Self {
        self.power_state = state.to_string();
        self
    }

    /// `None` leaves the allowable values out.
    pub fn boot_targets(mut self, targets: Option<&[&str]>) -> Self {
        self.boot_targets = targets.map(strings);
        self
    }

    pub fn boot_enabled(mut self, enabled: Option<&[&str]>) -> Self {
        self.boot_enabled = enabled.map(strings);
        self
    }

    /// The current mode and its allowable values (`None`: not served).
    pub fn boot_mode(mut self, mode: &str, allowed: Option<&[&str]>) -> Self {
        self.boot_mode = Some(mode.to_string());
        self.boot_modes = allowed.map(strings);
        self
    }

    pub fn reset_types(mut self, reset_types: ResetTypes) -> Self {
        self.reset_types = reset_types;
        self
    }

    pub fn refuse_reset(mut self, status: u16, message: &str) -> Self {
        self.refuse_reset = Some(Refusal {
            status,
            message: message.to_string(),
        });
        self
    }

    pub fn etag(mut self, etag: bool) -> Self {
        self.etag = etag;
        self
    }
}

impl ResetTypes {
    pub fn inline(values: &[&str]) -> Self {
        ResetTypes::Inline(strings(values))
    }

    pub fn action_info(values: &[&str]) -> Self {
        ResetTypes::ActionInfo(strings(values))
    }

    fn allowed(&self) -> Option<&[String]> {
        match self {
            ResetTypes::Inline(values) | ResetTypes::ActionInfo(values) => Some(values),
            ResetTypes::Unadvertised => None,
        }
    }
}

/// One PATCH or POST a BMC received (session logins excepted: they carry passwords).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedWrite {
    pub method: String,
    /// Normalised.
    pub path: String,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    pub if_match: Option<String>,
    /// The status the BMC answered.
    pub status: u16,
}

/// One BMC of a fleet. Start from [`FakeBmcSpec::synthetic`] or [`FakeBmcSpec::new`].
#[derive(Clone, Debug, Default)]
pub struct FakeBmcSpec {
    pub tree: Tree,
    /// Waited before answering each request.
    pub latency: Duration,
    pub auth: Auth,
    pub fault: Fault,
    /// Live boot and power settings of the synthetic system (ignored for a mockup tree).
    pub power: Option<PowerSpec>,
}

impl FakeBmcSpec {
    pub fn new(tree: Tree) -> Self {
        FakeBmcSpec {
            tree,
            ..FakeBmcSpec::default()
        }
    }

    pub fn synthetic() -> Self {
        FakeBmcSpec::default()
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    pub fn power(mut self, power: PowerSpec) -> Self {
        self.power = Some(power);
        self
    }
}

/// Counters of one BMC at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BmcStats {
    pub requests: u64,
    pub in_flight: u64,
    pub peak_in_flight: u64,
    /// Sessions opened.
    pub logins: u64,
    /// Session logins refused for wrong credentials.
    pub failed_logins: u64,
    /// Sessions closed by `DELETE`.
    pub session_deletions: u64,
    /// Sessions that ended by reaching `expire_after_requests`.
    pub sessions_expired: u64,
    /// 401 answers of any cause.
    pub unauthorized: u64,
    pub sessions_open: usize,
}

/// A running fleet. Dropping it stops every server and closes every connection.
pub struct FakeFleet {
    bmcs: Vec<Arc<Bmc>>,
    counters: Arc<InFlightCounter>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeFleet {
    /// Starts one server per spec on `127.0.0.1:<free port>`, in order. Panics if a port
    /// cannot be had. Must run inside a Tokio runtime; servers stay on it.
    pub async fn start(specs: Vec<FakeBmcSpec>) -> FakeFleet {
        let count = specs.len();
        FakeFleet::try_start(specs).await.unwrap_or_else(|error| {
            panic!("cannot start a fleet of {count} fake BMCs on loopback ports: {error}")
        })
    }

    /// As [`FakeFleet::start`], reporting a port that cannot be bound.
    pub async fn try_start(specs: Vec<FakeBmcSpec>) -> io::Result<FakeFleet> {
        if let Err(error) = raise_open_file_limit() {
            tracing::warn!(%error, "cannot raise the open file limit for a fake BMC fleet");
        }
        let counters = Arc::new(InFlightCounter::default());
        let mut fleet = FakeFleet {
            bmcs: Vec::with_capacity(specs.len()),
            counters: counters.clone(),
            tasks: Vec::with_capacity(specs.len()),
        };
        for (index, spec) in specs.into_iter().enumerate() {
            let listener = bind_loopback()?;
            let addr = listener.local_addr()?;
            let bmc = Arc::new(Bmc::new(index, addr, spec, counters.clone()));
            fleet
                .tasks
                .push(tokio::spawn(accept_loop(listener, bmc.clone())));
            fleet.bmcs.push(bmc);
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.bmcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bmcs.is_empty()
    }

    /// `http://127.0.0.1:PORT` of BMC `i`. Like every per-BMC accessor, panics if `i >= len()`.
    pub fn base_url(&self, i: usize) -> String {
        format!("http://{}", self.bmcs[i].addr)
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.bmcs[i].addr
    }

    /// Requests BMC `i` received (including ones still being answered).
    pub fn requests(&self, i: usize) -> u64 {
        self.bmcs[i].requests.load(Ordering::SeqCst)
    }

    /// Requests BMC `i` received for `path` (normalised: query and trailing slashes ignored).
    pub fn path_requests(&self, i: usize, path: &str) -> u64 {
        lock(&self.bmcs[i].paths)
            .get(&normalise(path))
            .copied()
            .unwrap_or(0)
    }

    /// Requests BMC `i` received, by normalised path.
    pub fn requests_by_path(&self, i: usize) -> BTreeMap<String, u64> {
        lock(&self.bmcs[i].paths)
            .iter()
            .map(|(path, count)| (path.clone(), *count))
            .collect()
    }

    pub fn requests_total(&self) -> u64 {
        self.bmcs
            .iter()
            .map(|bmc| bmc.requests.load(Ordering::SeqCst))
            .sum()
    }

    /// Requests BMC `i` is answering now (a response counts until its body is sent or dropped).
    pub fn in_flight(&self, i: usize) -> u64 {
        self.bmcs[i].in_flight.current.load(Ordering::SeqCst)
    }

    /// The most requests BMC `i` was answering at once.
    pub fn peak_in_flight(&self, i: usize) -> u64 {
        self.bmcs[i].in_flight.peak.load(Ordering::SeqCst)
    }

    pub fn in_flight_total(&self) -> u64 {
        self.counters.current.load(Ordering::SeqCst)
    }

    /// The most requests the whole fleet was answering at once.
    pub fn peak_in_flight_total(&self) -> u64 {
        self.counters.peak.load(Ordering::SeqCst)
    }

    /// Sets every peak back to the number in flight now, e.g. between benchmark rounds.
    pub fn reset_peaks(&self) {
        self.counters.reset_peak();
        for bmc in &self.bmcs {
            bmc.in_flight.reset_peak();
        }
    }

    /// Every PATCH and POST BMC `i` received, in order (session logins excepted).
    pub fn writes(&self, i: usize) -> Vec<RecordedWrite> {
        lock(&self.bmcs[i].writes).clone()
    }

    /// The `PowerState` of BMC `i`'s live system, if it has a [`PowerSpec`].
    pub fn power_state(&self, i: usize) -> Option<String> {
        lock(&self.bmcs[i].power)
            .as_ref()
            .map(|live| live.power_state.clone())
    }

    /// What BMC `i`'s live system booted from at each start, in order: the override target
    /// (`Pxe`), or `BootOrder` when no override was enabled.
    pub fn boots(&self, i: usize) -> Vec<String> {
        lock(&self.bmcs[i].power)
            .as_ref()
            .map(|live| live.boots.clone())
            .unwrap_or_default()
    }

    /// A config's `[locator]` section that finds every BMC of the fleet: the static source
    /// mapping each synthetic BMC MAC to its loopback address, over plain HTTP.
    pub fn locator_toml(&self) -> String {
        let mut text = "[locator]\nsources = [\"static\"]\nredfish_scheme = \"http\"\nstatic = [\n"
            .to_string();
        for index in 0..self.len() {
            text.push_str(&format!(
                "  {{ bmc_mac = \"{}\", address = \"{}\" }},\n",
                synthetic_bmc_mac(index),
                self.base_url(index)
            ));
        }
        text.push_str("]\n");
        text
    }

    /// When BMC `i` got its first request and sent its last answer (bodies included);
    /// `None` before any.
    pub fn busy_window(&self, i: usize) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
        let bmc = &self.bmcs[i];
        let at = |ns: u64| std::time::UNIX_EPOCH + Duration::from_nanos(ns);
        match (
            bmc.first_request_ns.load(Ordering::SeqCst),
            bmc.last_answer_ns.load(Ordering::SeqCst),
        ) {
            (0, _) | (_, 0) => None,
            (first, last) => Some((at(first), at(last))),
        }
    }

    pub fn stats(&self, i: usize) -> BmcStats {
        let bmc = &self.bmcs[i];
        BmcStats {
            requests: bmc.requests.load(Ordering::SeqCst),
            in_flight: bmc.in_flight.current.load(Ordering::SeqCst),
            peak_in_flight: bmc.in_flight.peak.load(Ordering::SeqCst),
            logins: bmc.logins.load(Ordering::SeqCst),
            failed_logins: bmc.failed_logins.load(Ordering::SeqCst),
            session_deletions: bmc.session_deletions.load(Ordering::SeqCst),
            sessions_expired: bmc.sessions_expired.load(Ordering::SeqCst),
            unauthorized: bmc.unauthorized.load(Ordering::SeqCst),
            sessions_open: lock(&bmc.sessions).len(),
        }
    }
}

impl Drop for FakeFleet {
    fn drop(&mut self) {
        // Aborting an accept loop drops its JoinSet, which aborts that BMC's connections.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Raises the soft limit of open files to the hard limit, and both to the kernel's `nr_open`
/// when privileged (a fleet needs a descriptor per listener and two per local connection);
/// returns the soft limit now in force.
pub fn raise_open_file_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Linux refuses more than nr_open (RLIM_INFINITY included).
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(1 << 20);
    let set = |cur: libc::rlim_t, max: libc::rlim_t| {
        let wanted = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 }
    };
    if limit.rlim_max < ceiling && set(ceiling, ceiling) {
        return Ok(ceiling);
    }
    let wanted = limit.rlim_max.min(ceiling);
    if limit.rlim_cur < wanted {
        if !set(wanted, limit.rlim_max) {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = wanted;
    }
    Ok(limit.rlim_cur)
}

/// BMC ports are taken from here, below Linux's ephemeral range: letting the kernel pick
/// (port 0) slows to a millisecond a bind as the range fills, and BMCs there would compete
/// with the clients' own ports.
const PORTS: std::ops::RangeInclusive<u16> = 10_000..=32_767;

/// Binds `127.0.0.1` on the next free port of [`PORTS`], else on any port. The cursor is
/// shared so fleets of one process do not try the same ports; its start differs per process.
fn bind_loopback() -> io::Result<TcpListener> {
    static CURSOR: OnceLock<AtomicU64> = OnceLock::new();
    let cursor = CURSOR.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
        AtomicU64::new(nanos ^ u64::from(std::process::id()).wrapping_mul(7919))
    });
    let first = u64::from(*PORTS.start());
    let span = u64::from(*PORTS.end()) - first + 1;
    for _ in 0..span {
        let offset = cursor.fetch_add(1, Ordering::Relaxed) % span;
        let Ok(port) = u16::try_from(first + offset) else {
            continue;
        };
        if let Ok(listener) = listen_on(port) {
            return Ok(listener);
        }
    }
    listen_on(0)
}

fn listen_on(port: u16) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // As std and tokio do for listeners: a port left in TIME_WAIT by an earlier fleet is free.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

#[derive(Default)]
struct InFlightCounter {
    current: AtomicU64,
    peak: AtomicU64,
}

impl InFlightCounter {
    fn enter(&self) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.current.fetch_sub(1, Ordering::SeqCst);
    }

    fn reset_peak(&self) {
        self.peak
            .store(self.current.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Counts a request as in flight until dropped: with the handler when it never answers or
/// its connection drops, else with the response body once that is sent.
struct InFlight(Arc<Bmc>);

impl InFlight {
    fn enter(bmc: Arc<Bmc>) -> InFlight {
        bmc.in_flight.enter();
        bmc.fleet.enter();
        let _ = bmc.first_request_ns.compare_exchange(
            0,
            unix_nanos(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        InFlight(bmc)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.leave();
        self.0.fleet.leave();
        self.0
            .last_answer_ns
            .fetch_max(unix_nanos(), Ordering::SeqCst);
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Session {
    id: u64,
    used: u32,
    user: String,
}

struct Bmc {
    index: usize,
    addr: SocketAddr,
    spec: FakeBmcSpec,
    fleet: Arc<InFlightCounter>,
    in_flight: InFlightCounter,
    requests: AtomicU64,
    paths: Mutex<HashMap<String, u64>>,
    /// Token → session.
    sessions: Mutex<HashMap<String, Session>>,
    next_session: AtomicU64,
    logins: AtomicU64,
    failed_logins: AtomicU64,
    session_deletions: AtomicU64,
    sessions_expired: AtomicU64,
    unauthorized: AtomicU64,
    writes: Mutex<Vec<RecordedWrite>>,
    /// The live system, with a [`PowerSpec`] and a synthetic tree.
    power: Mutex<Option<LivePower>>,
    /// When its first request came and its last answer went, in Unix nanoseconds (0: none).
    first_request_ns: AtomicU64,
    last_answer_ns: AtomicU64,
}

/// The synthetic system's settings as PATCHes and resets left them.
struct LivePower {
    spec: PowerSpec,
    power_state: String,
    target: String,
    enabled: String,
    mode: Option<String>,
    /// Bumped by every accepted PATCH: the ETag.
    version: u64,
    boots: Vec<String>,
}

impl LivePower {
    fn new(spec: PowerSpec) -> LivePower {
        LivePower {
            power_state: spec.power_state.clone(),
            target: "None".to_string(),
            enabled: "Disabled".to_string(),
            mode: spec.boot_mode.clone(),
            version: 1,
            boots: Vec::new(),
            spec,
        }
    }

    fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    /// The synthetic system document with the live settings laid over it.
    fn overlay(&self, system: &mut Value) {
        let spec = &self.spec;
        let mut boot = serde_json::Map::new();
        boot.insert("BootSourceOverrideTarget".into(), json!(self.target));
        boot.insert("BootSourceOverrideEnabled".into(), json!(self.enabled));
        if let Some(targets) = &spec.boot_targets {
            boot.insert(
                "BootSourceOverrideTarget@Redfish.AllowableValues".into(),
                json!(targets),
            );
        }
        if let Some(enabled) = &spec.boot_enabled {
            boot.insert(
                "BootSourceOverrideEnabled@Redfish.AllowableValues".into(),
                json!(enabled),
            );
        }
        if let Some(mode) = &self.mode {
            boot.insert("BootSourceOverrideMode".into(), json!(mode));
        }
        if let Some(modes) = &spec.boot_modes {
            boot.insert(
                "BootSourceOverrideMode@Redfish.AllowableValues".into(),
                json!(modes),
            );
        }
        let mut reset = serde_json::Map::new();
        reset.insert("target".into(), json!(RESET_ACTION));
        match &spec.reset_types {
            ResetTypes::Inline(values) => {
                reset.insert("ResetType@Redfish.AllowableValues".into(), json!(values));
            }
            ResetTypes::ActionInfo(_) => {
                reset.insert("@Redfish.ActionInfo".into(), json!(RESET_ACTION_INFO));
            }
            ResetTypes::Unadvertised => {}
        }
        system["PowerState"] = json!(self.power_state);
        system["Boot"] = Value::Object(boot);
        system["Actions"] = json!({"#ComputerSystem.Reset": reset});
        if spec.etag {
            system["@odata.etag"] = json!(self.etag());
        }
    }

    fn action_info(&self) -> Option<Value> {
        let ResetTypes::ActionInfo(values) = &self.spec.reset_types else {
            return None;
        };
        Some(json!({
            "@odata.id": RESET_ACTION_INFO,
            "@odata.type": "#ActionInfo.v1_1_2.ActionInfo",
            "Id": "ResetActionInfo",
            "Name": "Reset Action Info",
            "Parameters": [{
                "AllowableValues": values,
                "DataType": "String",
                "Name": "ResetType",
                "Required": true,
            }],
        }))
    }

    /// A PATCH of the system: only `Boot`, only allowed values.
    fn patch(&mut self, body: &Value, if_match: Option<&str>) -> Response<Body> {
        if self.spec.etag {
            match if_match {
                None => {
                    return redfish_refusal(
                        StatusCode::PRECONDITION_REQUIRED,
                        "Base.1.8.PreconditionRequired",
                        "A precondition header or annotation is required to change this resource.",
                    )
                }
                Some(tag) if tag != self.etag() => return redfish_refusal(
                    StatusCode::PRECONDITION_FAILED,
                    "Base.1.8.PreconditionFailed",
                    "The ETag supplied did not match the ETag required to change this resource.",
                ),
                Some(_) => {}
            }
        }
        let Some(object) = body.as_object() else {
            return redfish_refusal(
                StatusCode::BAD_REQUEST,
                "Base.1.8.MalformedJSON",
                "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
            );
        };
        if let Some(other) = object.keys().find(|k| k.as_str() != "Boot") {
            return redfish_refusal(
                StatusCode::BAD_REQUEST,
                "Base.1.8.PropertyNotWritable",
                &format!(
                    "The property {other} is a read only property and cannot be assigned a value."
                ),
            );
        }
        let Some(boot) = object.get("Boot").and_then(Value::as_object) else {
            return redfish_refusal(
                StatusCode::BAD_REQUEST,
                "Base.1.8.PropertyValueTypeError",
                "The value for the property Boot is of a different type than the property can accept.",
            );
        };
        let spec = &self.spec;
        let fields: [(&str, Option<&Vec<String>>); 3] = [
            ("BootSourceOverrideTarget", spec.boot_targets.as_ref()),
            ("BootSourceOverrideEnabled", spec.boot_enabled.as_ref()),
            ("BootSourceOverrideMode", spec.boot_modes.as_ref()),
        ];
        for (property, value) in boot {
            let Some((_, allowed)) = fields.iter().find(|(name, _)| name == property) else {
                return redfish_refusal(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyUnknown",
                    &format!("The property {property} is not in the list of valid properties for the resource."),
                );
            };
            if property == "BootSourceOverrideMode" && self.mode.is_none() {
                return redfish_refusal(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyUnknown",
                    "The property BootSourceOverrideMode is not in the list of valid properties for the resource.",
                );
            }
            let Some(text) = value.as_str() else {
                return redfish_refusal(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyValueTypeError",
                    &format!("The value for the property {property} is of a different type than the property can accept."),
                );
            };
            if allowed.is_some_and(|allowed| !allowed.iter().any(|v| v == text)) {
                return redfish_refusal(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyValueNotInList",
                    &format!("The value {text} for the property {property} is not in the list of acceptable values."),
                );
            }
        }
        for (property, value) in boot {
            let text = value.as_str().unwrap_or_default().to_string();
            match property.as_str() {
                "BootSourceOverrideTarget" => self.target = text,
                "BootSourceOverrideEnabled" => self.enabled = text,
                _ => self.mode = Some(text),
            }
        }
        self.version += 1;
        empty_response(StatusCode::NO_CONTENT)
    }

    /// A POST of the reset action.
    fn reset(&mut self, body: &Value) -> Response<Body> {
        if let Some(refusal) = &self.spec.refuse_reset {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
            return redfish_refusal(status, "Base.1.8.GeneralError", &refusal.message);
        }
        let Some(reset_type) = body.get("ResetType").and_then(Value::as_str) else {
            return redfish_refusal(
                StatusCode::BAD_REQUEST,
                "Base.1.8.ActionParameterMissing",
                "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.",
            );
        };
        if self
            .spec
            .reset_types
            .allowed()
            .is_some_and(|allowed| !allowed.iter().any(|v| v == reset_type))
        {
            return redfish_refusal(
                StatusCode::BAD_REQUEST,
                "Base.1.8.ActionParameterValueNotInList",
                &format!("The value {reset_type} for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values."),
            );
        }
        let on = self.power_state == "On";
        match reset_type {
            "On" | "ForceOn" if !on => self.start(),
            "On" | "ForceOn" => {}
            "ForceOff" | "GracefulShutdown" => self.power_state = "Off".to_string(),
            "ForceRestart" | "GracefulRestart" | "PowerCycle" => self.start(),
            "PushPowerButton" if on => self.power_state = "Off".to_string(),
            "PushPowerButton" => self.start(),
            "Nmi" => {}
            other => {
                return redfish_refusal(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.ActionParameterValueNotInList",
                    &format!("The value {other} for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values."),
                )
            }
        }
        empty_response(StatusCode::NO_CONTENT)
    }

    /// Powers on (again) and boots once.
    fn start(&mut self) {
        self.power_state = "On".to_string();
        let from = match self.enabled.as_str() {
            "Once" | "Continuous" if self.target != "None" => self.target.clone(),
            _ => "BootOrder".to_string(),
        };
        if self.enabled == "Once" {
            self.enabled = "Disabled".to_string();
        }
        self.boots.push(from);
    }
}

/// A poisoned lock only means a test panicked elsewhere; the counters are still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bmc {
    fn new(index: usize, addr: SocketAddr, spec: FakeBmcSpec, fleet: Arc<InFlightCounter>) -> Bmc {
        let power = match (&spec.power, &spec.tree) {
            (Some(power), Tree::Synthetic) => Some(LivePower::new(power.clone())),
            _ => None,
        };
        Bmc {
            index,
            addr,
            fleet,
            in_flight: InFlightCounter::default(),
            requests: AtomicU64::new(0),
            paths: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            failed_logins: AtomicU64::new(0),
            session_deletions: AtomicU64::new(0),
            sessions_expired: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            writes: Mutex::new(Vec::new()),
            power: Mutex::new(power),
            first_request_ns: AtomicU64::new(0),
            last_answer_ns: AtomicU64::new(0),
            spec,
        }
    }

    /// A PATCH or POST other than a login: the live system's, or 405. Recorded either way.
    async fn write(
        &self,
        method: &Method,
        path: &str,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let if_match = request
            .headers()
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(Body::new(request.into_body()), 64 * 1024)
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let response = {
            let mut power = lock(&self.power);
            match (power.as_mut(), method.as_str(), path) {
                (Some(live), "PATCH", SYSTEM) => live.patch(&body, if_match.as_deref()),
                (Some(live), "POST", RESET_ACTION) => live.reset(&body),
                _ => redfish_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed on a fake BMC",
                ),
            }
        };
        lock(&self.writes).push(RecordedWrite {
            method: method.to_string(),
            path: path.to_string(),
            body,
            if_match,
            status: response.status().as_u16(),
        });
        response
    }

    /// The live system's `ETag`, for a GET of it.
    fn etag(&self, path: &str) -> Option<String> {
        if path != SYSTEM {
            return None;
        }
        lock(&self.power)
            .as_ref()
            .filter(|live| live.spec.etag)
            .map(LivePower::etag)
    }

    /// Counts a request; returns how many requests `path` has had, this one included.
    fn record(&self, path: &str) -> u64 {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut paths = lock(&self.paths);
        let count = paths.entry(path.to_string()).or_insert(0);
        *count += 1;
        *count
    }

    fn basic_ok(headers: &HeaderMap, user: &str, password: &str) -> bool {
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
    }

    /// Whether the request may go on; a valid token is used up by one request.
    fn authenticate(&self, headers: &HeaderMap) -> bool {
        let (user, password, expire_after, allow_basic) = match &self.spec.auth {
            Auth::None => return true,
            Auth::Basic { user, password } => return Bmc::basic_ok(headers, user, password),
            Auth::Sessions {
                user,
                password,
                expire_after_requests,
                allow_basic,
            } => (user, password, *expire_after_requests, *allow_basic),
        };
        if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
            let mut sessions = lock(&self.sessions);
            if let Some(session) = sessions.get_mut(token) {
                if expire_after.is_some_and(|limit| session.used >= limit) {
                    sessions.remove(token);
                    self.sessions_expired.fetch_add(1, Ordering::SeqCst);
                } else {
                    session.used += 1;
                    return true;
                }
            }
        }
        allow_basic && Bmc::basic_ok(headers, user, password)
    }

    fn unauthorized(&self) -> Response<Body> {
        let mut response = redfish_error(StatusCode::UNAUTHORIZED, "authentication required");
        let basic = match &self.spec.auth {
            Auth::None => false,
            Auth::Basic { .. } => true,
            Auth::Sessions { allow_basic, .. } => *allow_basic,
        };
        if basic {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fake-bmc\""),
            );
        }
        response
    }

    async fn login(&self, body: Incoming) -> Response<Body> {
        let (want_user, want_password) = match &self.spec.auth {
            Auth::None => (None, None),
            Auth::Basic { .. } => {
                return redfish_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "sessions are not supported: use basic authentication",
                )
            }
            Auth::Sessions { user, password, .. } => (Some(user), Some(password)),
        };
        let body = axum::body::to_bytes(Body::new(body), 64 * 1024)
            .await
            .unwrap_or_default();
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let user = request.get("UserName").and_then(Value::as_str);
        let password = request.get("Password").and_then(Value::as_str);
        let accepted = match (want_user, want_password) {
            (Some(want_user), Some(want_password)) => {
                user == Some(want_user.as_str()) && password == Some(want_password.as_str())
            }
            _ => true,
        };
        if !accepted {
            self.failed_logins.fetch_add(1, Ordering::SeqCst);
            return redfish_error(StatusCode::UNAUTHORIZED, "invalid credentials");
        }
        let id = self.next_session.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!(
            "fake-{}-{id}-{:016x}",
            self.addr.port(),
            (u64::from(self.addr.port()) << 32 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let user = user.unwrap_or_default().to_string();
        let location = format!("{SESSIONS}/{id}");
        let body = session_document(id, &user);
        lock(&self.sessions).insert(token.clone(), Session { id, used: 0, user });
        self.logins.fetch_add(1, Ordering::SeqCst);
        let mut response = json_response(StatusCode::CREATED, Bytes::from(body.to_string()));
        insert_header(
            &mut response,
            HeaderName::from_static("x-auth-token"),
            &token,
        );
        insert_header(&mut response, header::LOCATION, &location);
        response
    }

    fn delete_session(&self, id: u64) -> Response<Body> {
        let mut sessions = lock(&self.sessions);
        let before = sessions.len();
        sessions.retain(|_, session| session.id != id);
        if sessions.len() < before {
            self.session_deletions.fetch_add(1, Ordering::SeqCst);
            empty_response(StatusCode::NO_CONTENT)
        } else {
            redfish_error(StatusCode::NOT_FOUND, "no such session")
        }
    }

    fn document(&self, path: &str, query: Option<&str>, fault: &Fault) -> Option<Bytes> {
        if path == SESSIONS {
            let mut ids: Vec<u64> = lock(&self.sessions).values().map(|s| s.id).collect();
            ids.sort_unstable();
            let members: Vec<String> = ids.iter().map(|id| format!("{SESSIONS}/{id}")).collect();
            let doc = collection(
                SESSIONS,
                "#SessionCollection.SessionCollection",
                "Session Collection",
                &members,
            );
            return Some(Bytes::from(doc.to_string()));
        }
        if let Some(id) = session_id(path) {
            let sessions = lock(&self.sessions);
            if let Some(session) = sessions.values().find(|s| s.id == id) {
                return Some(Bytes::from(session_document(id, &session.user).to_string()));
            }
        }
        let faulty = match fault {
            Fault::LinkLoop => link_loop(path),
            Fault::EndlessNextLink => endless_next_link(path, query),
            _ => None,
        };
        if let Some(doc) = faulty {
            return Some(Bytes::from(doc.to_string()));
        }
        match &self.spec.tree {
            Tree::Synthetic => {
                let power = lock(&self.power);
                if let Some(live) = power.as_ref() {
                    if path == RESET_ACTION_INFO {
                        return live.action_info().map(|doc| Bytes::from(doc.to_string()));
                    }
                }
                let mut doc = synthetic_resource(self.index, path)?;
                if let (Some(live), SYSTEM) = (power.as_ref(), path) {
                    live.overlay(&mut doc);
                }
                Some(Bytes::from(doc.to_string()))
            }
            Tree::Mockup(tree) => tree.documents.get(path).cloned(),
        }
    }
}

fn session_id(path: &str) -> Option<u64> {
    path.strip_prefix(SESSIONS)?
        .strip_prefix('/')?
        .parse::<u64>()
        .ok()
}

fn session_document(id: u64, user: &str) -> Value {
    json!({
        "@odata.id": format!("{SESSIONS}/{id}"),
        "@odata.type": "#Session.v1_0_0.Session",
        "Id": id.to_string(),
        "Name": "User Session",
        "UserName": user,
    })
}

async fn accept_loop(listener: TcpListener, bmc: Arc<Bmc>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, bmc.clone()));
                }
                // Out of descriptors under load: wait for connections to close, not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, bmc: Arc<Bmc>) {
    // Small responses must not wait for delayed ACKs, or latency figures are Nagle's.
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| handle(bmc.clone(), request));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(bmc: Arc<Bmc>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let guard = InFlight::enter(bmc.clone());
    let path = normalise(request.uri().path());
    let seen = bmc.record(&path);
    if !bmc.spec.latency.is_zero() {
        tokio::time::sleep(bmc.spec.latency).await;
    }
    let response = respond(&bmc, request, &path, seen).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        bmc.unauthorized.fetch_add(1, Ordering::SeqCst);
    }
    Ok(response.map(|inner| {
        Body::new(Guarded {
            inner,
            _guard: guard,
        })
    }))
}

async fn respond(bmc: &Bmc, request: Request<Incoming>, path: &str, seen: u64) -> Response<Body> {
    let fault = bmc.spec.fault.on(path);
    match fault {
        Fault::None | Fault::LinkLoop | Fault::EndlessNextLink | Fault::FaultOnPath { .. } => {}
        Fault::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = redfish_error(status, "injected fault");
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"fake-bmc\""),
                );
            }
            return response;
        }
        Fault::ServerErrorsThenOk(n) => {
            if seen <= u64::from(*n) {
                return redfish_error(StatusCode::INTERNAL_SERVER_ERROR, "injected fault");
            }
        }
        Fault::Hang => return std::future::pending().await,
        Fault::Trickle => return trickle(),
        Fault::Huge => return huge(false),
        Fault::HugeWithLength => return huge(true),
        Fault::RedirectLoop => return redirect(&redirect_loop_next(path)),
        Fault::RedirectOtherHost => {
            return redirect(&format!("http://127.0.0.2:{}/redfish/v1", bmc.addr.port()))
        }
        Fault::InvalidJson => {
            return json_response(StatusCode::OK, Bytes::from_static(b"{\"Members\": ["))
        }
        Fault::DeepNesting => return json_response(StatusCode::OK, deep_nesting()),
    }
    let method = request.method().clone();
    if method == Method::POST && path == SESSIONS {
        return bmc.login(request.into_body()).await;
    }
    let reading = method == Method::GET || method == Method::HEAD;
    let open = reading && (path == SERVICE_ROOT || path == "/redfish");
    if !open && !bmc.authenticate(request.headers()) {
        return bmc.unauthorized();
    }
    if method == Method::DELETE {
        if let Some(id) = session_id(path) {
            return bmc.delete_session(id);
        }
    }
    if method == Method::PATCH || method == Method::POST {
        return bmc.write(&method, path, request).await;
    }
    if !reading {
        return redfish_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on a fake BMC",
        );
    }
    match bmc.document(path, request.uri().query(), fault) {
        Some(body) => {
            let mut response = json_response(StatusCode::OK, body);
            if let Some(etag) = bmc.etag(path) {
                insert_header(&mut response, header::ETAG, &etag);
            }
            response
        }
        None => redfish_error(StatusCode::NOT_FOUND, &format!("resource {path} not found")),
    }
}

/// `/` plus the non-empty segments, percent-decoded: query, fragment, doubled and trailing
/// slashes do not make a different resource.
pub fn normalise(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        match crate::mockup::percent_decode(segment) {
            Some(decoded) => out.push_str(&decoded),
            None => out.push_str(segment),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn insert_header(response: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn redfish_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({
        "error": {
            "code": "Base.1.8.GeneralError",
            "message": message,
            "@Message.ExtendedInfo": [],
        }
    });
    json_response(status, body.to_string())
}

/// A Redfish error whose one `@Message.ExtendedInfo` entry carries `message`, as BMCs
/// answer a refused PATCH or action.
fn redfish_refusal(status: StatusCode, message_id: &str, message: &str) -> Response<Body> {
    let body = json!({
        "error": {
            "code": message_id,
            "message": "A general error has occurred. See ExtendedInfo for more information.",
            "@Message.ExtendedInfo": [{
                "@odata.type": "#Message.v1_1_1.Message",
                "MessageId": message_id,
                "Message": message,
                "Severity": "Warning",
                "Resolution": "Correct the request body and resubmit the request if the operation failed.",
            }],
        }
    });
    json_response(status, body.to_string())
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = empty_response(StatusCode::FOUND);
    insert_header(&mut response, header::LOCATION, location);
    response
}

const REDIRECT_LOOP: &str = "/redfish/v1/RedirectLoop/";

fn redirect_loop_next(path: &str) -> String {
    let hop = path
        .strip_prefix(REDIRECT_LOOP)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{REDIRECT_LOOP}{}", hop.saturating_add(1))
}

const TRICKLE_BODY: &[u8] =
    br#"{"@odata.id": "/redfish/v1", "Id": "RootService", "Name": "Trickle", "RedfishVersion": "1.6.0"}"#;

fn trickle() -> Response<Body> {
    let bytes = futures::stream::unfold(0usize, |sent| async move {
        let byte = TRICKLE_BODY.get(sent..sent + 1)?;
        if sent > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Some((Ok::<_, Infallible>(Bytes::from_static(byte)), sent + 1))
    });
    json_response(StatusCode::OK, Body::from_stream(bytes))
}

const HUGE_PREFIX: &[u8] = br#"{"Name": "Huge", "Members": ["#;
/// Whitespace, so the body stays a valid JSON prefix however much of it is read.
static FILLER: [u8; 64 * 1024] = [b' '; 64 * 1024];

fn huge(with_length: bool) -> Response<Body> {
    let chunks = futures::stream::unfold(0u64, |sent| async move {
        if sent >= HUGE_BYTES {
            return None;
        }
        let chunk = if sent == 0 {
            Bytes::from_static(HUGE_PREFIX)
        } else {
            let left = usize::try_from(HUGE_BYTES - sent).unwrap_or(usize::MAX);
            Bytes::from_static(&FILLER[..left.min(FILLER.len())])
        };
        let next = sent + chunk.len() as u64;
        Some((Ok::<_, Infallible>(chunk), next))
    });
    let mut response = json_response(StatusCode::OK, Body::from_stream(chunks));
    if with_length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(HUGE_BYTES));
    }
    response
}

fn deep_nesting() -> Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut body = vec![b'['; DEEP_NESTING];
        body.resize(2 * DEEP_NESTING, b']');
        Bytes::from(body)
    })
    .clone()
}

fn link_loop(path: &str) -> Option<Value> {
    let systems = "/redfish/v1/Systems";
    if path == systems {
        return Some(collection(
            systems,
            "#ComputerSystemCollection.ComputerSystemCollection",
            "Computer System Collection",
            &[format!("{systems}/1")],
        ));
    }
    let rest: Vec<&str> = path.strip_prefix(systems)?.split('/').skip(1).collect();
    let system: u64 = rest.first()?.parse().ok()?;
    let processors = format!("{systems}/{system}/Processors");
    match rest[1..] {
        [] => Some(json!({
            "@odata.id": format!("{systems}/{system}"),
            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "Id": system.to_string(),
            "Name": format!("Looping system {system}"),
            "Manufacturer": "Fake",
            "SerialNumber": format!("LOOP{system}"),
            "Processors": {"@odata.id": processors},
        })),
        ["Processors"] => Some(collection(
            &processors,
            "#ProcessorCollection.ProcessorCollection",
            "Processors Collection",
            &[format!("{processors}/1")],
        )),
        ["Processors", n] => {
            let n: u64 = n.parse().ok()?;
            Some(json!({
                "@odata.id": format!("{processors}/{n}"),
                "@odata.type": "#Processor.v1_7_0.Processor",
                "Id": n.to_string(),
                "Name": format!("Processor {n}"),
                "ProcessorType": "CPU",
                "Members": [{"@odata.id": format!("{processors}/{}", n.saturating_add(1))}],
                "Members@odata.count": 1,
                "Oem": {"Fake": {"NextSystem": {
                    "@odata.id": format!("{systems}/{}", system.saturating_add(1)),
                }}},
            }))
        }
        _ => None,
    }
}

const ENDLESS_MEMBER: &str = "/redfish/v1/Systems/Endless";

fn endless_next_link(path: &str, query: Option<&str>) -> Option<Value> {
    let systems = "/redfish/v1/Systems";
    if path == systems {
        let page: u64 = crate::mockup::query_param(query, "$skip")
            .and_then(|skip| skip.parse().ok())
            .unwrap_or(0);
        let mut doc = collection(
            systems,
            "#ComputerSystemCollection.ComputerSystemCollection",
            "Computer System Collection",
            &[format!("{ENDLESS_MEMBER}{page}")],
        );
        if let Some(object) = doc.as_object_mut() {
            object.remove("Members@odata.count");
            object.insert(
                "Members@odata.nextLink".to_string(),
                json!(format!("{systems}?$skip={}", page.saturating_add(1))),
            );
        }
        return Some(doc);
    }
    let page: u64 = path.strip_prefix(ENDLESS_MEMBER)?.parse().ok()?;
    Some(json!({
        "@odata.id": path,
        "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
        "Id": format!("Endless{page}"),
        "Name": format!("Endless system {page}"),
        "Manufacturer": "Fake",
        "SerialNumber": format!("ENDLESS{page}"),
    }))
}

fn collection(path: &str, odata_type: &str, name: &str, members: &[String]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"@odata.id": m})).collect();
    json!({
        "@odata.id": path,
        "@odata.type": odata_type,
        "Name": name,
        "Members@odata.count": members.len(),
        "Members": members,
    })
}

fn index_bytes(index: usize) -> [u8; 3] {
    let [.., a, b, c] = (index as u64).to_be_bytes();
    [a, b, c]
}

/// The BMC NIC's MAC of fleet member `index`: locally administered, `02:bb:` then the low
/// 24 bits of the index, then `:01`. Unique for indexes below 2^24.
pub fn synthetic_bmc_mac(index: usize) -> String {
    let [a, b, c] = index_bytes(index);
    format!("02:bb:{a:02x}:{b:02x}:{c:02x}:01")
}

/// The two host NIC MACs of fleet member `index`: `02:fa:` then the low 24 bits of the index,
/// then `:01` and `:02`.
pub fn synthetic_host_macs(index: usize) -> [String; 2] {
    let [a, b, c] = index_bytes(index);
    [1, 2].map(|n| format!("02:fa:{a:02x}:{b:02x}:{c:02x}:{n:02x}"))
}

/// The serial number of the synthetic system of fleet member `index`.
pub fn synthetic_serial(index: usize) -> String {
    format!("FAKE{index:06}")
}

/// The UUID of the synthetic system of fleet member `index`.
pub fn synthetic_system_uuid(index: usize) -> String {
    format!(
        "fa4eb0c0-0000-4000-8000-{:012x}",
        index as u64 & 0xffff_ffff_ffff
    )
}

/// The document at `path` (normalised first) of the synthetic tree of fleet member `index`,
/// or `None` outside [`SYNTHETIC_PATHS`]. The session collection it gives is always empty:
/// a running BMC lists its open sessions instead.
pub fn synthetic_resource(index: usize, path: &str) -> Option<Value> {
    let path = normalise(path);
    let system = "/redfish/v1/Systems/1";
    let manager = "/redfish/v1/Managers/BMC";
    let firmware = "/redfish/v1/UpdateService/FirmwareInventory";
    let serial = synthetic_serial(index);
    let [a, b, c] = index_bytes(index);
    let ok = json!({"State": "Enabled", "Health": "OK"});
    let doc = match path.as_str() {
        "/redfish/v1" => json!({
            "@odata.id": "/redfish/v1",
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "Id": "RootService",
            "Name": "Fake Root Service",
            "RedfishVersion": "1.6.0",
            "UUID": format!("fa4eb0c0-0000-4000-8001-{:012x}", index as u64 & 0xffff_ffff_ffff),
            "Vendor": "Fake",
            "Product": "FakeServer 1000",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
            "Managers": {"@odata.id": "/redfish/v1/Managers"},
            "UpdateService": {"@odata.id": "/redfish/v1/UpdateService"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": SESSIONS}},
        }),
        "/redfish/v1/Systems" => collection(
            "/redfish/v1/Systems",
            "#ComputerSystemCollection.ComputerSystemCollection",
            "Computer System Collection",
            &[system.to_string()],
        ),
        "/redfish/v1/Systems/1" => json!({
            "@odata.id": system,
            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "Id": "1",
            "Name": format!("Fake server {index}"),
            "SystemType": "Physical",
            "Manufacturer": "Fake",
            "Model": "FakeServer 1000",
            "SerialNumber": serial,
            "UUID": synthetic_system_uuid(index),
            "BiosVersion": "FAKE-BIOS-1.0.0",
            "PowerState": "On",
            "Status": ok,
            "Boot": {
                "BootSourceOverrideEnabled": "Disabled",
                "BootSourceOverrideTarget": "None",
                "BootSourceOverrideTarget@Redfish.AllowableValues":
                    ["None", "Pxe", "Hdd", "Cd", "BiosSetup"],
            },
            "ProcessorSummary": {"Count": 2, "Model": "Fake CPU 16C"},
            "MemorySummary": {"TotalSystemMemoryGiB": 64},
            "Processors": {"@odata.id": format!("{system}/Processors")},
            "Memory": {"@odata.id": format!("{system}/Memory")},
            "EthernetInterfaces": {"@odata.id": format!("{system}/EthernetInterfaces")},
            "Storage": {"@odata.id": format!("{system}/Storage")},
            "Links": {
                "Chassis": [{"@odata.id": "/redfish/v1/Chassis/1"}],
                "ManagedBy": [{"@odata.id": manager}],
            },
            "Actions": {"#ComputerSystem.Reset": {
                "target": format!("{system}/Actions/ComputerSystem.Reset"),
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulRestart"],
            }},
        }),
        "/redfish/v1/Systems/1/Processors" => collection(
            &path,
            "#ProcessorCollection.ProcessorCollection",
            "Processors Collection",
            &[format!("{path}/CPU1"), format!("{path}/CPU2")],
        ),
        "/redfish/v1/Systems/1/Memory" => collection(
            &path,
            "#MemoryCollection.MemoryCollection",
            "Memory Module Collection",
            &(1..=4)
                .map(|n| format!("{path}/DIMM{n}"))
                .collect::<Vec<_>>(),
        ),
        "/redfish/v1/Systems/1/EthernetInterfaces" => collection(
            &path,
            "#EthernetInterfaceCollection.EthernetInterfaceCollection",
            "Ethernet Interface Collection",
            &[format!("{path}/NIC1"), format!("{path}/NIC2")],
        ),
        "/redfish/v1/Systems/1/Storage" => collection(
            &path,
            "#StorageCollection.StorageCollection",
            "Storage Collection",
            &[format!("{path}/1")],
        ),
        "/redfish/v1/Systems/1/Storage/1" => json!({
            "@odata.id": path,
            "@odata.type": "#Storage.v1_8_0.Storage",
            "Id": "1",
            "Name": "Fake Storage",
            "Status": ok,
            "StorageControllers": [{
                "@odata.id": format!("{path}#/StorageControllers/0"),
                "MemberId": "0",
                "Name": "Fake RAID Controller",
                "Manufacturer": "Fake",
                "Model": "Fake RAID 9000",
                "SerialNumber": format!("{serial}-R"),
                "SupportedControllerProtocols": ["PCIe"],
                "SupportedDeviceProtocols": ["SATA", "SAS"],
                "Status": ok,
            }],
            "Drives": [
                {"@odata.id": format!("{path}/Drives/Disk1")},
                {"@odata.id": format!("{path}/Drives/Disk2")},
            ],
            "Drives@odata.count": 2,
        }),
        "/redfish/v1/Chassis" => collection(
            &path,
            "#ChassisCollection.ChassisCollection",
            "Chassis Collection",
            &[format!("{path}/1")],
        ),
        "/redfish/v1/Chassis/1" => json!({
            "@odata.id": path,
            "@odata.type": "#Chassis.v1_10_0.Chassis",
            "Id": "1",
            "Name": "Fake Chassis",
            "ChassisType": "RackMount",
            "Manufacturer": "Fake",
            "Model": "FakeServer 1000",
            "SerialNumber": format!("{serial}-C"),
            "PowerState": "On",
            "Status": ok,
            "Links": {
                "ComputerSystems": [{"@odata.id": system}],
                "ManagedBy": [{"@odata.id": manager}],
            },
        }),
        "/redfish/v1/Managers" => collection(
            &path,
            "#ManagerCollection.ManagerCollection",
            "Manager Collection",
            &[manager.to_string()],
        ),
        "/redfish/v1/Managers/BMC" => json!({
            "@odata.id": manager,
            "@odata.type": "#Manager.v1_5_0.Manager",
            "Id": "BMC",
            "Name": "Fake BMC",
            "ManagerType": "BMC",
            "Model": "FakeBMC",
            "FirmwareVersion": "1.0.0",
            "UUID": format!("fa4eb0c0-0000-4000-8002-{:012x}", index as u64 & 0xffff_ffff_ffff),
            "PowerState": "On",
            "Status": ok,
            "EthernetInterfaces": {"@odata.id": format!("{manager}/EthernetInterfaces")},
            "Links": {"ManagerForServers": [{"@odata.id": system}]},
        }),
        "/redfish/v1/Managers/BMC/EthernetInterfaces" => collection(
            &path,
            "#EthernetInterfaceCollection.EthernetInterfaceCollection",
            "Ethernet Interface Collection",
            &[format!("{path}/eth0")],
        ),
        "/redfish/v1/Managers/BMC/EthernetInterfaces/eth0" => {
            let mac = synthetic_bmc_mac(index);
            json!({
                "@odata.id": path,
                "@odata.type": "#EthernetInterface.v1_4_0.EthernetInterface",
                "Id": "eth0",
                "Name": "Manager Ethernet Interface",
                "InterfaceEnabled": true,
                "MACAddress": mac,
                "PermanentMACAddress": mac,
                "SpeedMbps": 1000,
                "IPv4Addresses": [{
                    "Address": format!("10.{a}.{b}.{c}"),
                    "SubnetMask": "255.0.0.0",
                    "AddressOrigin": "DHCP",
                }],
                "Status": ok,
            })
        }
        "/redfish/v1/UpdateService" => json!({
            "@odata.id": path,
            "@odata.type": "#UpdateService.v1_5_0.UpdateService",
            "Id": "UpdateService",
            "Name": "Update Service",
            "ServiceEnabled": true,
            "FirmwareInventory": {"@odata.id": firmware},
        }),
        "/redfish/v1/UpdateService/FirmwareInventory" => collection(
            firmware,
            "#SoftwareInventoryCollection.SoftwareInventoryCollection",
            "Firmware Inventory Collection",
            &[format!("{firmware}/BMC"), format!("{firmware}/BIOS")],
        ),
        "/redfish/v1/SessionService" => json!({
            "@odata.id": path,
            "@odata.type": "#SessionService.v1_1_6.SessionService",
            "Id": "SessionService",
            "Name": "Session Service",
            "ServiceEnabled": true,
            "SessionTimeout": 1800,
            "Sessions": {"@odata.id": SESSIONS},
        }),
        SESSIONS => collection(
            SESSIONS,
            "#SessionCollection.SessionCollection",
            "Session Collection",
            &[],
        ),
        other => return synthetic_member(index, other),
    };
    Some(doc)
}

/// The members of the synthetic collections, numbered from 1.
fn synthetic_member(index: usize, path: &str) -> Option<Value> {
    let ok = json!({"State": "Enabled", "Health": "OK"});
    let (parent, id) = path.rsplit_once('/')?;
    let number = |prefix: &str| -> Option<usize> {
        id.strip_prefix(prefix)?
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
    };
    let doc = match parent {
        "/redfish/v1/Systems/1/Processors" => {
            let n = number("CPU").filter(|n| *n <= 2)?;
            json!({
                "@odata.id": path,
                "@odata.type": "#Processor.v1_7_0.Processor",
                "Id": id,
                "Name": format!("Processor {n}"),
                "Socket": format!("CPU{n}"),
                "ProcessorType": "CPU",
                "ProcessorArchitecture": "x86",
                "InstructionSet": "x86-64",
                "Manufacturer": "Fake",
                "Model": "Fake CPU 16C",
                "MaxSpeedMHz": 3000,
                "TotalCores": 16,
                "TotalThreads": 32,
                "Status": ok,
            })
        }
        "/redfish/v1/Systems/1/Memory" => {
            let n = number("DIMM").filter(|n| *n <= 4)?;
            json!({
                "@odata.id": path,
                "@odata.type": "#Memory.v1_7_0.Memory",
                "Id": id,
                "Name": format!("DIMM {n}"),
                "MemoryDeviceType": "DDR4",
                "CapacityMiB": 16384,
                "OperatingSpeedMhz": 3200,
                "Manufacturer": "Fake",
                "SerialNumber": format!("{}-M{n}", synthetic_serial(index)),
                "DeviceLocator": format!("DIMM{n}"),
                "Status": ok,
            })
        }
        "/redfish/v1/Systems/1/EthernetInterfaces" => {
            let n = number("NIC").filter(|n| *n <= 2)?;
            let [first, second] = synthetic_host_macs(index);
            let mac = if n == 1 { first } else { second };
            json!({
                "@odata.id": path,
                "@odata.type": "#EthernetInterface.v1_4_0.EthernetInterface",
                "Id": id,
                "Name": format!("Host NIC {n}"),
                "InterfaceEnabled": true,
                "LinkStatus": "LinkUp",
                "MACAddress": mac,
                "PermanentMACAddress": mac,
                "SpeedMbps": 25000,
                "Status": ok,
            })
        }
        "/redfish/v1/Systems/1/Storage/1/Drives" => {
            let n = number("Disk").filter(|n| *n <= 2)?;
            json!({
                "@odata.id": path,
                "@odata.type": "#Drive.v1_9_0.Drive",
                "Id": id,
                "Name": format!("Disk {n}"),
                "Manufacturer": "Fake",
                "Model": "Fake SSD 960",
                "SerialNumber": format!("{}-D{n}", synthetic_serial(index)),
                "CapacityBytes": 960_197_124_096_u64,
                "MediaType": "SSD",
                "Protocol": "SATA",
                "Status": ok,
            })
        }
        "/redfish/v1/UpdateService/FirmwareInventory" => {
            let (name, version) = match id {
                "BMC" => ("BMC Firmware", "1.0.0"),
                "BIOS" => ("BIOS", "FAKE-BIOS-1.0.0"),
                _ => return None,
            };
            json!({
                "@odata.id": path,
                "@odata.type": "#SoftwareInventory.v1_2_0.SoftwareInventory",
                "Id": id,
                "Name": name,
                "Version": version,
                "Updateable": true,
                "Status": ok,
            })
        }
        _ => return None,
    };
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_synthetic_path_is_served_and_links_stay_inside_the_tree() {
        for path in SYNTHETIC_PATHS {
            let doc = synthetic_resource(7, path).unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!(doc["@odata.id"], json!(path), "{path}");
            let mut links = Vec::new();
            collect_links(&doc, &mut links);
            for link in links {
                let link = link.split('#').next().unwrap_or_default();
                assert!(
                    link.contains("/Actions/") || SYNTHETIC_PATHS.contains(&link),
                    "{path} links to {link}, which is not served"
                );
            }
        }
        assert_eq!(
            synthetic_resource(7, "/redfish/v1/Systems/1/Memory/DIMM5"),
            None
        );
        assert_eq!(
            synthetic_resource(7, "/redfish/v1/Systems/1/Memory/DIMM0"),
            None
        );
    }

    fn collect_links(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("@odata.id", Value::String(link)) => out.push(link.clone()),
                        ("target", Value::String(link)) => out.push(link.clone()),
                        _ => collect_links(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_links(item, out)),
            _ => {}
        }
    }

    #[test]
    fn macs_differ_between_indexes() {
        assert_eq!(synthetic_bmc_mac(0x01_02_03), "02:bb:01:02:03:01");
        assert_eq!(
            synthetic_host_macs(5),
            [
                "02:fa:00:00:05:01".to_string(),
                "02:fa:00:00:05:02".to_string()
            ]
        );
        assert_ne!(synthetic_bmc_mac(1), synthetic_bmc_mac(256));
    }

    #[test]
    fn normalise_ignores_query_and_slashes() {
        assert_eq!(
            normalise("//redfish/v1/Systems/1/?$expand=."),
            "/redfish/v1/Systems/1"
        );
        assert_eq!(normalise("/"), "/");
        assert_eq!(normalise(""), "/");
    }

    #[test]
    fn fault_on_path_applies_to_that_path_only() {
        let fault = Fault::FaultOnPath {
            path: "/redfish/v1/Systems/".to_string(),
            fault: Box::new(Fault::Hang),
        };
        assert_eq!(fault.on("/redfish/v1/Systems"), &Fault::Hang);
        assert_eq!(fault.on("/redfish/v1"), &Fault::None);
    }

    #[test]
    fn link_loop_never_ends() {
        let mut path = "/redfish/v1/Systems/1/Processors/1".to_string();
        for _ in 0..100 {
            let doc = link_loop(&path).unwrap();
            path = doc["Members"][0]["@odata.id"].as_str().unwrap().to_string();
        }
        assert_eq!(path, "/redfish/v1/Systems/1/Processors/101");
    }
}
