//! A strict fake UniFi controller (classic, UniFi OS, Integration API) over TLS on a loopback port,
//! driven by the shared fixtures in `shared/unifi/fixtures` so it answers with the real shapes.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The user name of the default account.
pub const USERNAME: &str = "locator";
/// The password of the default account.
pub const PASSWORD: &str = "fake-unifi-password";
/// The default Integration API key.
pub const API_KEY: &str = "fake-unifi-api-key";
/// The site every controller has unless told otherwise; the fixture clients live there.
pub const DEFAULT_SITE: &str = "default";

/// Names for [`FakeUnifi::list_calls`].
pub const STAT_STA: &str = "stat/sta";
pub const REST_USER: &str = "rest/user";
pub const STAT_DEVICE: &str = "stat/device";
pub const INTEGRATION_INFO: &str = "integration/info";
pub const INTEGRATION_SITES: &str = "integration/sites";
pub const INTEGRATION_CLIENTS: &str = "integration/clients";

/// The MAC of the fixture entry every added active client is cloned from (wired Supermicro BMC).
const ACTIVE_TEMPLATE_MAC: &str = "02:00:5e:10:00:02";
/// The `rest/user` fixture entry known clients are cloned from (the offline Supermicro BMC):
/// the active template's object has `ip` and uplink fields a known-client object lacks.
const KNOWN_TEMPLATE_MAC: &str = "02:00:5e:10:00:05";
/// `GET /v1/info` as the README quotes it; no fixture file holds it.
const INTEGRATION_INFO_BODY: &str = r#"{"applicationVersion":"9.1.0"}"#;
/// Not confirmed by the README: the shape several public UniFi OS clients and test doubles
/// expect, mirroring the confirmed 429 body (`code` + `message`).
const OS_INVALID_LOGIN_BODY: &str = r#"{"code":"AUTHENTICATION_FAILED_INVALID_CREDENTIALS","message":"Invalid username or password","level":"debug"}"#;
const INTEGRATION_CONTENT_TYPE: &str = "application/json";
const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
const MAX_INTEGRATION_LIMIT: usize = 200;
const DEFAULT_INTEGRATION_LIMIT: usize = 25;

/// Which controller the fake is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Self-hosted Network Application: `GET /` → 302 `/manage`, `/api/login`, `/api/s/...`.
    Classic,
    /// A UniFi OS console without the Integration API: `GET /` → 200, `/api/auth/login`,
    /// `/proxy/network/api/s/...` with the `TOKEN` cookie and `X-CSRF-Token`.
    UnifiOs,
    /// A UniFi OS console running Network 9.x+: everything [`Flavour::UnifiOs`] serves, plus
    /// `/proxy/network/integration/v1/...` with `X-API-KEY`.
    Integration,
}

/// A local account of the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub password: String,
    /// With the right password, classic answers `api.err.Ubic2faTokenRequired` and UniFi OS
    /// answers HTTP 499 (SSO MFA); no session is ever made.
    pub second_factor: bool,
}

/// After `max_failures` failed logins within `window`, every login answers 429 for `retry_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginLimit {
    pub max_failures: u32,
    pub window: Duration,
    pub retry_after: Duration,
}

/// What the fake is and how strict it is; start from [`UnifiOptions::classic`],
/// [`UnifiOptions::unifi_os`] or [`UnifiOptions::integration`] and adjust.
#[derive(Clone, Debug)]
pub struct UnifiOptions {
    pub flavour: Flavour,
    /// Legacy site names (`internalReference` on the Integration API); default `["default"]`.
    pub sites: Vec<String>,
    /// Default: [`USERNAME`] / [`PASSWORD`] without a second factor.
    pub accounts: Vec<Account>,
    /// The one valid `X-API-KEY` ([`Flavour::Integration`] only); default [`API_KEY`].
    pub api_key: String,
    /// Sessions end this long after login; default one hour.
    pub session_ttl: Duration,
    /// UniFi OS: every authenticated Network response carries `X-Updated-CSRF-Token` and the
    /// token sent with that request stops working.
    pub rotate_csrf: bool,
    /// Default: 3 failures within 60 s lock logins for 30 s. `None` never limits.
    pub login_limit: Option<LoginLimit>,
    /// UniFi OS status for a wrong password: 401 by default. Some public reports show 403.
    pub os_invalid_login_status: StatusCode,
    /// Load the fixture clients and devices into site `default` (when it is configured).
    pub fixture_clients: bool,
    /// Integration `filter=macAddress.eq('…')`: false compares exactly against the stored
    /// lowercase value, so an uppercase MAC finds nothing (whether real consoles ignore case
    /// is unconfirmed, and the stricter answer catches clients that don't normalise).
    pub filter_ignores_case: bool,
    /// Default: [`crate::paths::unifi_fixtures_dir`].
    pub fixtures_dir: PathBuf,
}

impl UnifiOptions {
    pub fn new(flavour: Flavour) -> Self {
        UnifiOptions {
            flavour,
            sites: vec![DEFAULT_SITE.to_string()],
            accounts: vec![Account {
                username: USERNAME.to_string(),
                password: PASSWORD.to_string(),
                second_factor: false,
            }],
            api_key: API_KEY.to_string(),
            session_ttl: Duration::from_secs(3600),
            rotate_csrf: false,
            login_limit: Some(LoginLimit {
                max_failures: 3,
                window: Duration::from_secs(60),
                retry_after: Duration::from_secs(30),
            }),
            os_invalid_login_status: StatusCode::UNAUTHORIZED,
            fixture_clients: true,
            filter_ignores_case: false,
            fixtures_dir: crate::paths::unifi_fixtures_dir(),
        }
    }

    pub fn classic() -> Self {
        Self::new(Flavour::Classic)
    }

    pub fn unifi_os() -> Self {
        Self::new(Flavour::UnifiOs)
    }

    pub fn integration() -> Self {
        Self::new(Flavour::Integration)
    }

    /// Adds a site (no-op if present).
    pub fn site(mut self, name: &str) -> Self {
        if !self.sites.iter().any(|s| s == name) {
            self.sites.push(name.to_string());
        }
        self
    }

    /// Replaces the site list.
    pub fn sites(mut self, names: &[&str]) -> Self {
        self.sites = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds an account without a second factor.
    pub fn account(mut self, username: &str, password: &str) -> Self {
        self.accounts.push(Account {
            username: username.to_string(),
            password: password.to_string(),
            second_factor: false,
        });
        self
    }

    /// Adds an account with 2FA (classic) / SSO MFA (UniFi OS).
    pub fn account_with_second_factor(mut self, username: &str, password: &str) -> Self {
        self.accounts.push(Account {
            username: username.to_string(),
            password: password.to_string(),
            second_factor: true,
        });
        self
    }

    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = key.to_string();
        self
    }

    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    pub fn rotate_csrf(mut self, rotate: bool) -> Self {
        self.rotate_csrf = rotate;
        self
    }

    pub fn login_limit(
        mut self,
        max_failures: u32,
        window: Duration,
        retry_after: Duration,
    ) -> Self {
        self.login_limit = Some(LoginLimit {
            max_failures,
            window,
            retry_after,
        });
        self
    }

    pub fn no_login_limit(mut self) -> Self {
        self.login_limit = None;
        self
    }

    pub fn os_invalid_login_status(mut self, status: StatusCode) -> Self {
        self.os_invalid_login_status = status;
        self
    }

    /// Starts every site empty (no fixture clients or devices).
    pub fn without_fixture_clients(mut self) -> Self {
        self.fixture_clients = false;
        self
    }

    pub fn filter_ignores_case(mut self, ignore: bool) -> Self {
        self.filter_ignores_case = ignore;
        self
    }

    pub fn fixtures_dir(mut self, dir: &Path) -> Self {
        self.fixtures_dir = dir.to_path_buf();
        self
    }
}

/// A misbehaviour switched on at runtime with [`FakeUnifi::set_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 200 `text/html` to every request but the `GET /` probe (a console still starting up,
    /// or a captive portal).
    Html,
    /// After authentication succeeds, every list call answers this status with
    /// `{"meta":{"rc":"error","msg":<msg>},"data":[]}` (Integration: its error shape, `code` = msg).
    ErrorEnvelope { status: StatusCode, msg: String },
    /// After authentication succeeds, list calls stream one valid envelope of at least this many
    /// bytes, generated on the fly (no `Content-Length`). On the Integration API `count` then
    /// exceeds `limit`, as a misbehaving server's would.
    HugeList { bytes: usize },
    /// Every request waits this long, then answers normally.
    Delay(Duration),
    /// HTTP 503 with an HTML body to every request, the probe included.
    Unavailable,
}

/// Where a [`FakeUnifi::add_known_client`] entry gets its address from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownIp {
    /// A DHCP reservation: `use_fixedip: true`, `fixed_ip`.
    Fixed(Ipv4Addr),
    /// Only the address last seen: `last_ip`.
    Last(Ipv4Addr),
}

/// A running fake controller. Dropping it shuts the server down.
pub struct FakeUnifi {
    addr: SocketAddr,
    cert_pem: String,
    cert_der: Vec<u8>,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for FakeUnifi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeUnifi")
            .field("url", &self.url())
            .field("flavour", &self.shared.options.flavour)
            .finish()
    }
}

impl FakeUnifi {
    /// Reads the fixtures, makes a fresh certificate and serves on `127.0.0.1:<free port>`.
    /// Panics when the fixtures are missing or the port cannot be bound.
    pub async fn start(options: UnifiOptions) -> FakeUnifi {
        let fixtures = Fixtures::load(&options.fixtures_dir);
        let sites = build_sites(&options, &fixtures);
        let (cert_pem, cert_der, key_der) = self_signed_certificate();
        let tls = crate::tls::http_server_config(cert_der.clone(), key_der, "fake UniFi");
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|error| panic!("fake UniFi: cannot bind a loopback port: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("fake UniFi: no local address: {error}"));
        let shared = Arc::new(Shared {
            options,
            fixtures,
            sites: Mutex::new(sites),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Limiter::default()),
            fault: Mutex::new(None),
            counters: Counters::default(),
            next_id: AtomicU64::new(1),
        });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            app,
            shared.clone(),
            shutdown_rx,
        ));
        FakeUnifi {
            addr,
            cert_pem,
            cert_der,
            shared,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn flavour(&self) -> Flavour {
        self.shared.options.flavour
    }

    /// The self-signed certificate (it is its own CA) in PEM.
    pub fn ca_pem(&self) -> String {
        self.cert_pem.clone()
    }

    pub fn cert_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// SHA-256 of the certificate's DER as `openssl x509 -fingerprint -sha256` prints it
    /// after `=`: uppercase hex pairs joined by colons.
    pub fn cert_sha256(&self) -> String {
        Sha256::digest(&self.cert_der)
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The Integration API id (UUID) of a legacy site name.
    pub fn site_id(&self, site: &str) -> Option<String> {
        lock(&self.shared.sites)
            .iter()
            .find(|s| s.name == site)
            .map(|s| s.id.clone())
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.shared.fault) = fault;
    }

    /// An active client (in `stat/sta` and the Integration clients) seen now, replacing any
    /// active entry with the same MAC in that site. Panics on an unknown site or a malformed MAC.
    pub fn add_client(&self, site: &str, mac: &str, ip: Ipv4Addr) {
        self.add_client_seen_at(site, mac, ip, unix_now());
    }

    /// [`FakeUnifi::add_client`] with a given `last_seen` (unix seconds).
    pub fn add_client_seen_at(&self, site: &str, mac: &str, ip: Ipv4Addr, last_seen: u64) {
        let mac = checked_mac(mac);
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let fixtures = &self.shared.fixtures;
        let mut active = fixtures.active_template.clone();
        active.set("_id", Value::from(object_id(n)));
        active.set("user_id", Value::from(object_id(n)));
        active.set("mac", Value::from(mac.clone()));
        active.set("ip", Value::from(ip.to_string()));
        active.set("last_seen", Value::from(last_seen));
        let mut connected = fixtures.integration_template.clone();
        connected.set("id", Value::from(uuid::Uuid::new_v4().to_string()));
        connected.set("ipAddress", Value::from(ip.to_string()));
        connected.set("macAddress", Value::from(mac.clone()));
        self.with_site(site, |s| {
            s.active.upsert(mac.clone(), active);
            s.connected.upsert(mac, connected);
        });
    }

    /// A known, offline client (only in `rest/user`), replacing any known entry with that MAC.
    pub fn add_known_client(&self, site: &str, mac: &str, ip: KnownIp, last_seen: u64) {
        let mac = checked_mac(mac);
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut known = self.shared.fixtures.known_template.clone();
        known.set("_id", Value::from(object_id(n)));
        known.set("mac", Value::from(mac.clone()));
        known.set("last_seen", Value::from(last_seen));
        match ip {
            KnownIp::Fixed(ip) => {
                known.remove("last_ip");
                known.set("use_fixedip", Value::Bool(true));
                known.set("fixed_ip", Value::from(ip.to_string()));
            }
            KnownIp::Last(ip) => {
                known.remove("fixed_ip");
                known.set("use_fixedip", Value::Bool(false));
                known.set("last_ip", Value::from(ip.to_string()));
            }
        }
        self.with_site(site, |s| s.known.upsert(mac, known));
    }

    /// Removes the MAC from every list of the site.
    pub fn remove_client(&self, site: &str, mac: &str) {
        let mac = checked_mac(mac);
        self.with_site(site, |s| {
            s.active.remove(&mac);
            s.known.remove(&mac);
            s.connected.remove(&mac);
        });
    }

    /// Empties every client list of the site (devices stay).
    pub fn clear_clients(&self, site: &str) {
        self.with_site(site, |s| {
            s.active.clear();
            s.known.clear();
            s.connected.clear();
        });
    }

    /// Ends every current session at once; the next request with one answers 401.
    pub fn expire_sessions(&self) {
        lock(&self.shared.sessions).clear();
    }

    /// Sessions made and not yet ended or expired.
    pub fn sessions_open(&self) -> usize {
        let now = Instant::now();
        lock(&self.shared.sessions)
            .values()
            .filter(|s| s.expires_at > now)
            .count()
    }

    /// Successful logins.
    pub fn logins(&self) -> u64 {
        self.shared.counters.logins.load(Ordering::SeqCst)
    }

    /// Logins refused for wrong credentials or a malformed body (not 429s, not 2FA challenges).
    pub fn failed_logins(&self) -> u64 {
        self.shared.counters.failed_logins.load(Ordering::SeqCst)
    }

    /// Logins answered 429.
    pub fn rate_limited(&self) -> u64 {
        self.shared.counters.rate_limited.load(Ordering::SeqCst)
    }

    /// Logins with the right password for an account with a second factor.
    pub fn second_factor_challenges(&self) -> u64 {
        self.shared.counters.second_factor.load(Ordering::SeqCst)
    }

    /// `GET /` (and `HEAD /`) requests.
    pub fn probes(&self) -> u64 {
        self.shared.counters.probes.load(Ordering::SeqCst)
    }

    /// Requests to one list endpoint ([`STAT_STA`], [`REST_USER`], [`STAT_DEVICE`],
    /// [`INTEGRATION_INFO`], [`INTEGRATION_SITES`], [`INTEGRATION_CLIENTS`]), refused ones included.
    pub fn list_calls(&self, endpoint: &str) -> u64 {
        lock(&self.shared.counters.list_calls)
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Every HTTP request that reached the router.
    pub fn requests(&self) -> u64 {
        self.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed (a client refusing the certificate, for instance).
    pub fn handshake_failures(&self) -> u64 {
        self.shared
            .counters
            .handshake_failures
            .load(Ordering::SeqCst)
    }

    fn with_site<T>(&self, site: &str, change: impl FnOnce(&mut SiteData) -> T) -> T {
        let mut sites = lock(&self.shared.sites);
        let Some(data) = sites.iter_mut().find(|s| s.name == site) else {
            panic!(
                "the fake UniFi controller has no site {site:?}; add it with UnifiOptions::site"
            );
        };
        change(data)
    }
}

impl Drop for FakeUnifi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

struct Shared {
    options: UnifiOptions,
    fixtures: Fixtures,
    sites: Mutex<Vec<SiteData>>,
    /// Session token (`unifises` value or `TOKEN` JWT) → session.
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<Limiter>,
    fault: Mutex<Option<Fault>>,
    counters: Counters,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    logins: AtomicU64,
    failed_logins: AtomicU64,
    rate_limited: AtomicU64,
    second_factor: AtomicU64,
    probes: AtomicU64,
    handshake_failures: AtomicU64,
    list_calls: Mutex<HashMap<&'static str, u64>>,
}

struct Session {
    expires_at: Instant,
    csrf: String,
}

#[derive(Default)]
struct Limiter {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

struct SiteData {
    name: String,
    id: String,
    /// The Integration API site object.
    overview: Obj,
    /// `stat/sta`, keyed by MAC.
    active: Keyed,
    /// `rest/user`, keyed by MAC.
    known: Keyed,
    /// Integration clients, keyed by MAC.
    connected: Keyed,
    devices: Vec<Obj>,
}

/// Insertion-ordered objects with a MAC index, so adding thousands of clients stays cheap.
#[derive(Default)]
struct Keyed {
    entries: Vec<(String, Obj)>,
    index: HashMap<String, usize>,
}

impl Keyed {
    fn upsert(&mut self, key: String, value: Obj) {
        match self.index.get(&key) {
            Some(&at) => self.entries[at].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(at) = self.index.remove(key) {
            self.entries.remove(at);
            for (position, (key, _)) in self.entries.iter().enumerate().skip(at) {
                self.index.insert(key.clone(), position);
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    fn values(&self) -> impl Iterator<Item = &Obj> {
        self.entries.iter().map(|(_, value)| value)
    }
}

/// A JSON object that keeps its field order, so served objects read like the fixtures
/// (serde_json's own map sorts keys unless `preserve_order`, which would change every crate).
#[derive(Clone, Debug, Default, PartialEq)]
struct Obj(Vec<(String, Value)>);

impl Obj {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    fn to_json(&self) -> Vec<u8> {
        // Serialising strings and serde_json values into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Obj {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Obj {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor;
        impl<'de> Visitor<'de> for ObjVisitor {
            type Value = Obj;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    fields.push((key, value));
                }
                Ok(Obj(fields))
            }
        }
        deserializer.deserialize_map(ObjVisitor)
    }
}

#[derive(Deserialize)]
struct DataList {
    data: Vec<Obj>,
}

/// A fixture response header; `Set-Cookie` and `X-CSRF-Token` values are replaced per login.
struct FixtureHeader {
    name: HeaderName,
    value: String,
}

struct Fixtures {
    classic_login_ok: Bytes,
    classic_login_headers: Vec<FixtureHeader>,
    classic_content_type: String,
    classic_login_invalid: Bytes,
    classic_login_2fa: Bytes,
    classic_login_required: Bytes,
    classic_no_site_context: Bytes,
    os_login_ok: Bytes,
    os_login_headers: Vec<FixtureHeader>,
    os_content_type: String,
    os_rate_limited: Bytes,
    os_sso_mfa: Bytes,
    os_401: Bytes,
    stat_sta: Vec<Obj>,
    rest_user: Vec<Obj>,
    stat_device: Vec<Obj>,
    integration_sites: Vec<Obj>,
    integration_clients: Vec<Obj>,
    integration_401: Obj,
    integration_404: Obj,
    active_template: Obj,
    known_template: Obj,
    integration_template: Obj,
}

impl Fixtures {
    fn load(dir: &Path) -> Fixtures {
        let bytes = |name: &str| -> Bytes {
            let path = dir.join(name);
            std::fs::read(&path)
                .map(Bytes::from)
                .unwrap_or_else(|error| {
                    panic!(
                    "fake UniFi: cannot read the fixture {} ({error}); set METAL_UNIFI_FIXTURES \
                     or put shared/ (with unifi/fixtures) beside the checkout",
                    path.display()
                )
                })
        };
        let parse = |name: &str| -> (Bytes, Value) {
            let raw = bytes(name);
            let value = serde_json::from_slice(&raw)
                .unwrap_or_else(|error| panic!("fake UniFi: fixture {name} is not JSON: {error}"));
            (raw, value)
        };
        let list = |name: &str| -> Vec<Obj> {
            serde_json::from_slice::<DataList>(&bytes(name))
                .unwrap_or_else(|error| {
                    panic!("fake UniFi: fixture {name} has no data list of objects: {error}")
                })
                .data
        };
        let object = |name: &str| -> Obj {
            serde_json::from_slice(&bytes(name)).unwrap_or_else(|error| {
                panic!("fake UniFi: fixture {name} is not an object: {error}")
            })
        };
        let headers = |name: &str| -> (String, Vec<FixtureHeader>) {
            let text = String::from_utf8(bytes(name).to_vec())
                .unwrap_or_else(|_| panic!("fake UniFi: fixture {name} is not UTF-8"));
            parse_headers(name, &text)
        };
        let find = |list: &[Obj], key: &str, mac: &str, name: &str| -> Obj {
            list.iter()
                .find(|o| o.get_str(key) == Some(mac))
                .cloned()
                .unwrap_or_else(|| {
                    panic!("fake UniFi: fixture {name} has no entry with {key} {mac}")
                })
        };
        let (classic_content_type, classic_login_headers) = headers("classic-login-ok.headers.txt");
        let (os_content_type, os_login_headers) = headers("unifios-login-ok.headers.txt");
        require_cookie(
            &classic_login_headers,
            "unifises",
            "classic-login-ok.headers.txt",
        );
        require_cookie(&os_login_headers, "TOKEN", "unifios-login-ok.headers.txt");
        let stat_sta = list("classic-stat-sta.json");
        let rest_user = list("classic-rest-user.json");
        let mut integration_clients = list("integration-clients-page1.json");
        integration_clients.extend(list("integration-clients-page2.json"));
        // Read for completeness of the contract: these are answers the fake must reproduce.
        for name in [
            "classic-stat-sta-empty.json",
            "unifios-stat-sta.json",
            "integration-clients-filtered.json",
            "integration-clients-empty.json",
        ] {
            parse(name);
        }
        Fixtures {
            classic_login_ok: parse("classic-login-ok.json").0,
            classic_login_headers,
            classic_content_type,
            classic_login_invalid: parse("classic-login-invalid.json").0,
            classic_login_2fa: parse("classic-login-2fa-required.json").0,
            classic_login_required: parse("classic-login-required.json").0,
            classic_no_site_context: parse("classic-no-site-context.json").0,
            os_login_ok: parse("unifios-login-ok.json").0,
            os_login_headers,
            os_content_type,
            os_rate_limited: parse("unifios-login-rate-limited.json").0,
            os_sso_mfa: parse("unifios-login-sso-mfa-499.json").0,
            os_401: parse("unifios-401.json").0,
            active_template: find(
                &stat_sta,
                "mac",
                ACTIVE_TEMPLATE_MAC,
                "classic-stat-sta.json",
            ),
            known_template: find(
                &rest_user,
                "mac",
                KNOWN_TEMPLATE_MAC,
                "classic-rest-user.json",
            ),
            integration_template: find(
                &integration_clients,
                "macAddress",
                ACTIVE_TEMPLATE_MAC,
                "integration-clients-page1.json",
            ),
            stat_sta,
            rest_user,
            stat_device: list("classic-stat-device.json"),
            integration_sites: list("integration-sites.json"),
            integration_clients,
            integration_401: object("integration-error-401.json"),
            integration_404: object("integration-error-404.json"),
        }
    }
}

/// The header block of a `.headers.txt` fixture: its Content-Type and the other headers.
fn parse_headers(name: &str, text: &str) -> (String, Vec<FixtureHeader>) {
    let mut content_type = None;
    let mut headers = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with("HTTP/") {
            continue;
        }
        if line.is_empty() {
            break;
        }
        let Some((header_name, value)) = line.split_once(':') else {
            panic!("fake UniFi: fixture {name} has a header line without a colon: {line:?}");
        };
        let value = value.trim().to_string();
        let header_name = HeaderName::from_bytes(header_name.trim().as_bytes())
            .unwrap_or_else(|_| panic!("fake UniFi: fixture {name} has a bad header name"));
        if HeaderValue::from_str(&value).is_err() {
            panic!("fake UniFi: fixture {name} has a bad value for {header_name}");
        }
        if header_name == header::CONTENT_TYPE {
            content_type = Some(value);
        } else {
            headers.push(FixtureHeader {
                name: header_name,
                value,
            });
        }
    }
    let content_type =
        content_type.unwrap_or_else(|| panic!("fake UniFi: fixture {name} has no Content-Type"));
    (content_type, headers)
}

fn require_cookie(headers: &[FixtureHeader], cookie: &str, name: &str) {
    let prefix = format!("{cookie}=");
    if !headers
        .iter()
        .any(|h| h.name == header::SET_COOKIE && h.value.starts_with(&prefix))
    {
        panic!("fake UniFi: fixture {name} sets no {cookie} cookie");
    }
}

/// `name=old; attrs` → `name=new; attrs`.
fn replace_cookie_value(set_cookie: &str, value: &str) -> String {
    let (pair, attributes) = match set_cookie.split_once(';') {
        Some((pair, rest)) => (pair, Some(rest)),
        None => (set_cookie, None),
    };
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    match attributes {
        Some(rest) => format!("{name}={value};{rest}"),
        None => format!("{name}={value}"),
    }
}

fn cookie_name(set_cookie: &str) -> &str {
    set_cookie
        .split_once('=')
        .map_or("", |(name, _)| name.trim())
}

fn build_sites(options: &UnifiOptions, fixtures: &Fixtures) -> Vec<SiteData> {
    options
        .sites
        .iter()
        .map(|name| {
            let fixture_site = fixtures
                .integration_sites
                .iter()
                .find(|s| s.get_str("internalReference") == Some(name.as_str()));
            let overview = match fixture_site {
                Some(site) => site.clone(),
                None => {
                    let id = uuid::Uuid::new_v5(
                        &uuid::Uuid::NAMESPACE_URL,
                        format!("fake-unifi-site:{name}").as_bytes(),
                    );
                    Obj(vec![
                        ("id".to_string(), Value::from(id.to_string())),
                        ("internalReference".to_string(), Value::from(name.clone())),
                        ("name".to_string(), Value::from(name.clone())),
                    ])
                }
            };
            let id = overview.get_str("id").unwrap_or_default().to_string();
            let mut site = SiteData {
                name: name.clone(),
                id,
                overview,
                active: Keyed::default(),
                known: Keyed::default(),
                connected: Keyed::default(),
                devices: Vec::new(),
            };
            if options.fixture_clients && name == DEFAULT_SITE {
                for (list, key, objects) in [
                    (&mut site.active, "mac", &fixtures.stat_sta),
                    (&mut site.known, "mac", &fixtures.rest_user),
                    (
                        &mut site.connected,
                        "macAddress",
                        &fixtures.integration_clients,
                    ),
                ] {
                    for object in objects {
                        let mac = object.get_str(key).unwrap_or_default().to_lowercase();
                        list.upsert(mac, object.clone());
                    }
                }
                site.devices = fixtures.stat_device.clone();
            }
            site
        })
        .collect()
}

/// A self-signed certificate like a console's: CA:TRUE, CN "UniFi", the loopback IP as the only
/// subject alternative name. Returns (PEM, DER, PKCS#8 key DER).
fn self_signed_certificate() -> (String, Vec<u8>, Vec<u8>) {
    let fail =
        |error: rcgen::Error| -> ! { panic!("fake UniFi: cannot generate a certificate: {error}") };
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| fail(e));
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::OrganizationName, "Ubiquiti Inc.");
    name.push(rcgen::DnType::OrganizationalUnitName, "UniFi");
    name.push(rcgen::DnType::CommonName, "UniFi");
    params.distinguished_name = name;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).unwrap_or_else(|e| fail(e));
    (cert.pem(), cert.der().to_vec(), key.serialize_der())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    // Connections live in the set so that ending this task (on drop) ends them too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(error) => {
                        tracing::warn!(%error, "fake UniFi: accept failed");
                        // Out of descriptors and the like: don't spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                let shared = shared.clone();
                connections.spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(error) => {
                            shared.counters.handshake_failures.fetch_add(1, Ordering::SeqCst);
                            tracing::debug!(%error, "fake UniFi: TLS handshake failed");
                            return;
                        }
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "fake UniFi: connection ended with an error");
                    }
                });
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegacyList {
    Sta,
    User,
    Device,
}

impl LegacyList {
    fn endpoint(self) -> &'static str {
        match self {
            LegacyList::Sta => STAT_STA,
            LegacyList::User => REST_USER,
            LegacyList::Device => STAT_DEVICE,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Probe,
    ManagePage,
    ClassicLogin,
    ClassicLogout,
    OsLogin,
    OsLogout,
    Legacy { site: &'a str, list: LegacyList },
    LegacyUnknown,
    IntegrationInfo,
    IntegrationSites,
    IntegrationClients { site_id: &'a str },
    IntegrationUnknown,
    NotFound,
}

/// Each flavour serves only its own paths: a client that guessed the flavour wrong gets 404s.
fn route(flavour: Flavour, path: &str) -> Route<'_> {
    if path == "/" {
        return Route::Probe;
    }
    let path = path.trim_end_matches('/');
    match flavour {
        Flavour::Classic => match path {
            "/manage" => Route::ManagePage,
            "/api/login" => Route::ClassicLogin,
            "/api/logout" => Route::ClassicLogout,
            _ => path
                .strip_prefix("/api/s/")
                .map_or(Route::NotFound, legacy_route),
        },
        Flavour::UnifiOs | Flavour::Integration => match path {
            "/api/auth/login" => Route::OsLogin,
            "/api/auth/logout" => Route::OsLogout,
            _ => {
                if let Some(rest) = path.strip_prefix("/proxy/network/api/s/") {
                    legacy_route(rest)
                } else if let Some(rest) = path.strip_prefix("/proxy/network/integration/v1") {
                    if flavour == Flavour::Integration {
                        integration_route(rest)
                    } else {
                        Route::NotFound
                    }
                } else {
                    Route::NotFound
                }
            }
        },
    }
}

fn legacy_route(rest: &str) -> Route<'_> {
    let Some((site, tail)) = rest.split_once('/') else {
        return Route::LegacyUnknown;
    };
    let list = match tail {
        "stat/sta" => LegacyList::Sta,
        "rest/user" => LegacyList::User,
        "stat/device" => LegacyList::Device,
        _ => return Route::LegacyUnknown,
    };
    Route::Legacy { site, list }
}

fn integration_route(rest: &str) -> Route<'_> {
    match rest {
        "/info" => Route::IntegrationInfo,
        "/sites" => Route::IntegrationSites,
        _ => rest
            .strip_prefix("/sites/")
            .and_then(|r| r.strip_suffix("/clients"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map_or(Route::IntegrationUnknown, |site_id| {
                Route::IntegrationClients { site_id }
            }),
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.counters.requests.fetch_add(1, Ordering::SeqCst);
    let fault = lock(&shared.fault).clone();
    if let Some(Fault::Delay(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    if fault == Some(Fault::Unavailable) {
        return html(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    let flavour = shared.options.flavour;
    let route = route(flavour, uri.path());
    if route == Route::Probe {
        if method != Method::GET && method != Method::HEAD {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        shared.counters.probes.fetch_add(1, Ordering::SeqCst);
        return match flavour {
            // A classic controller sends the browser to its UI; UniFi OS serves its login page.
            Flavour::Classic => {
                (StatusCode::FOUND, [(header::LOCATION, "/manage")]).into_response()
            }
            Flavour::UnifiOs | Flavour::Integration => html(StatusCode::OK, "UniFi OS"),
        };
    }
    if fault == Some(Fault::Html) {
        return html(StatusCode::OK, "UniFi");
    }
    let post_only = |handler: &dyn Fn() -> Response| {
        if method == Method::POST {
            handler()
        } else {
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        }
    };
    match route {
        Route::Probe => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Route::ManagePage => html(StatusCode::OK, "UniFi Network"),
        Route::ClassicLogin => post_only(&|| login(&shared, &body)),
        Route::OsLogin => post_only(&|| login(&shared, &body)),
        Route::ClassicLogout => post_only(&|| classic_logout(&shared, &headers)),
        Route::OsLogout => post_only(&|| os_logout(&shared, &headers)),
        Route::Legacy { site, list } => {
            count_list(&shared, list.endpoint());
            if method != Method::GET {
                return StatusCode::METHOD_NOT_ALLOWED.into_response();
            }
            legacy_list(&shared, &headers, site, list, fault.as_ref())
        }
        Route::LegacyUnknown => match authorise(&shared, &headers) {
            // Unconfirmed: what a controller answers for a path it doesn't serve.
            Ok(_) => legacy_json(
                &shared,
                StatusCode::NOT_FOUND,
                error_envelope("api.err.NotFound"),
            ),
            Err(Unauthorised) => unauthorised(&shared),
        },
        Route::IntegrationInfo
        | Route::IntegrationSites
        | Route::IntegrationClients { .. }
        | Route::IntegrationUnknown => {
            integration(&shared, &method, &uri, &headers, route, fault.as_ref())
        }
        Route::NotFound => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Not Found",
        )
            .into_response(),
    }
}

fn count_list(shared: &Shared, endpoint: &'static str) {
    *lock(&shared.counters.list_calls)
        .entry(endpoint)
        .or_insert(0) += 1;
}

fn html(status: StatusCode, title: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><div id=\"root\"></div><script src=\"/app.js\"></script></body></html>"
    );
    (status, [(header::CONTENT_TYPE, HTML_CONTENT_TYPE)], page).into_response()
}

fn with_content_type(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A legacy (classic or UniFi OS Network) JSON answer with the flavour's Content-Type.
fn legacy_json(shared: &Shared, status: StatusCode, body: impl Into<Body>) -> Response {
    let content_type = match shared.options.flavour {
        Flavour::Classic => &shared.fixtures.classic_content_type,
        Flavour::UnifiOs | Flavour::Integration => &shared.fixtures.os_content_type,
    };
    with_content_type(status, content_type, body)
}

fn error_envelope(msg: &str) -> String {
    format!(
        r#"{{"meta":{{"rc":"error","msg":{}}},"data":[]}}"#,
        Value::from(msg)
    )
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

fn login(shared: &Shared, body: &[u8]) -> Response {
    let fixtures = &shared.fixtures;
    let classic = shared.options.flavour == Flavour::Classic;
    let now = Instant::now();
    if let Some(remaining) = lock(&shared.limiter).locked_for(now) {
        shared.counters.rate_limited.fetch_add(1, Ordering::SeqCst);
        // The header carries whole seconds; round up so a client never retries too early.
        let seconds = remaining.as_millis().div_ceil(1000).max(1);
        let mut response = with_content_type(
            StatusCode::TOO_MANY_REQUESTS,
            &fixtures.os_content_type,
            fixtures.os_rate_limited.clone(),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
        return response;
    }
    let account = serde_json::from_slice::<Credentials>(body)
        .ok()
        .and_then(|creds| {
            shared
                .options
                .accounts
                .iter()
                .find(|a| a.username == creds.username && a.password == creds.password)
                .cloned()
        });
    let Some(account) = account else {
        shared.counters.failed_logins.fetch_add(1, Ordering::SeqCst);
        if let Some(limit) = &shared.options.login_limit {
            lock(&shared.limiter).record_failure(now, limit);
        }
        return if classic {
            // api.err.Invalid with 400, as the README calls typical.
            legacy_json(
                shared,
                StatusCode::BAD_REQUEST,
                fixtures.classic_login_invalid.clone(),
            )
        } else {
            with_content_type(
                shared.options.os_invalid_login_status,
                &fixtures.os_content_type,
                OS_INVALID_LOGIN_BODY,
            )
        };
    };
    if account.second_factor {
        shared.counters.second_factor.fetch_add(1, Ordering::SeqCst);
        return if classic {
            // 400, not 401: clients treat a 401 as "login required" before reading the body
            // (aiounifi raises LoginRequired on any 401), yet they act on this msg.
            legacy_json(
                shared,
                StatusCode::BAD_REQUEST,
                fixtures.classic_login_2fa.clone(),
            )
        } else {
            with_content_type(
                StatusCode::from_u16(499).unwrap_or(StatusCode::UNAUTHORIZED),
                &fixtures.os_content_type,
                fixtures.os_sso_mfa.clone(),
            )
        };
    }
    shared.counters.logins.fetch_add(1, Ordering::SeqCst);
    let csrf = uuid::Uuid::new_v4().to_string();
    let token = if classic {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        jwt(&csrf, shared.options.session_ttl)
    };
    lock(&shared.sessions).insert(
        token.clone(),
        Session {
            expires_at: now + shared.options.session_ttl,
            csrf: csrf.clone(),
        },
    );
    let (headers, content_type, body) = if classic {
        (
            &fixtures.classic_login_headers,
            &fixtures.classic_content_type,
            fixtures.classic_login_ok.clone(),
        )
    } else {
        (
            &fixtures.os_login_headers,
            &fixtures.os_content_type,
            fixtures.os_login_ok.clone(),
        )
    };
    let mut response = with_content_type(StatusCode::OK, content_type, body);
    for fixture in headers {
        let value = if fixture.name == header::SET_COOKIE {
            match cookie_name(&fixture.value) {
                "unifises" | "TOKEN" => replace_cookie_value(&fixture.value, &token),
                // Classic's csrf_token cookie: fresh per login too, though nothing checks it.
                "csrf_token" => replace_cookie_value(&fixture.value, &csrf),
                _ => fixture.value.clone(),
            }
        } else if fixture.name.as_str() == "x-csrf-token" {
            csrf.clone()
        } else {
            fixture.value.clone()
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(fixture.name.clone(), value);
        }
    }
    response
}

/// A JWT-shaped `TOKEN` whose payload carries `csrfToken`, as UniFi OS's does; the signature is
/// random because nothing verifies it.
fn jwt(csrf: &str, ttl: Duration) -> String {
    let iat = unix_now();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = format!(
        r#"{{"userId":"00000000-0000-4000-8000-000000000001","passwordRevision":1700000000,"isRemembered":true,"csrfToken":"{csrf}","iat":{iat},"exp":{},"jti":"{}"}}"#,
        iat + ttl.as_secs(),
        uuid::Uuid::new_v4()
    );
    let signature = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(payload))
}

fn classic_logout(shared: &Shared, headers: &HeaderMap) -> Response {
    if let Some(token) = cookie(headers, "unifises") {
        lock(&shared.sessions).remove(token);
    }
    legacy_json(
        shared,
        StatusCode::OK,
        shared.fixtures.classic_login_ok.clone(),
    )
}

/// Like any other UniFi OS call, logout needs the session and its CSRF token; the success body
/// is unconfirmed, so it is empty.
fn os_logout(shared: &Shared, headers: &HeaderMap) -> Response {
    if authorise(shared, headers).is_err() {
        return unauthorised(shared);
    }
    if let Some(token) = cookie(headers, "TOKEN") {
        lock(&shared.sessions).remove(token);
    }
    StatusCode::OK.into_response()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A missing, unknown or expired session, or (UniFi OS) a missing or stale CSRF token.
struct Unauthorised;

/// 401 with the flavour's `api.err.LoginRequired` envelope.
fn unauthorised(shared: &Shared) -> Response {
    let body = match shared.options.flavour {
        Flavour::Classic => shared.fixtures.classic_login_required.clone(),
        Flavour::UnifiOs | Flavour::Integration => shared.fixtures.os_401.clone(),
    };
    legacy_json(shared, StatusCode::UNAUTHORIZED, body)
}

/// Checks the session (and on UniFi OS the CSRF token); on success returns the rotated CSRF
/// token to send back, if rotation is on.
fn authorise(shared: &Shared, headers: &HeaderMap) -> Result<Option<String>, Unauthorised> {
    let classic = shared.options.flavour == Flavour::Classic;
    let token = cookie(headers, if classic { "unifises" } else { "TOKEN" }).ok_or(Unauthorised)?;
    let mut sessions = lock(&shared.sessions);
    let session = sessions.get_mut(token).ok_or(Unauthorised)?;
    if session.expires_at <= Instant::now() {
        sessions.remove(token);
        return Err(Unauthorised);
    }
    if classic {
        return Ok(None);
    }
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if sent != Some(session.csrf.as_str()) {
        return Err(Unauthorised);
    }
    if !shared.options.rotate_csrf {
        return Ok(None);
    }
    session.csrf = uuid::Uuid::new_v4().to_string();
    Ok(Some(session.csrf.clone()))
}

fn legacy_list(
    shared: &Shared,
    headers: &HeaderMap,
    site: &str,
    list: LegacyList,
    fault: Option<&Fault>,
) -> Response {
    let Ok(rotated) = authorise(shared, headers) else {
        return unauthorised(shared);
    };
    let mut response = legacy_list_body(shared, site, list, fault);
    if let Some(csrf) = rotated.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-updated-csrf-token"), csrf);
    }
    response
}

fn legacy_list_body(
    shared: &Shared,
    site: &str,
    list: LegacyList,
    fault: Option<&Fault>,
) -> Response {
    let sites = lock(&shared.sites);
    let Some(data) = sites.iter().find(|s| s.name == site) else {
        // The README leaves the status open (400 or 404); 400 goes with api.err.NoSiteContext.
        return legacy_json(
            shared,
            StatusCode::BAD_REQUEST,
            shared.fixtures.classic_no_site_context.clone(),
        );
    };
    match fault {
        Some(Fault::ErrorEnvelope { status, msg }) => {
            return legacy_json(shared, *status, error_envelope(msg));
        }
        Some(Fault::HugeList { bytes }) => {
            drop(sites);
            let stream = huge_stream(
                shared.fixtures.active_template.clone(),
                HugeShape::Legacy,
                *bytes,
            );
            return legacy_json(shared, StatusCode::OK, Body::from_stream(stream));
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(br#"{"meta":{"rc":"ok"},"data":["#);
    let mut first = true;
    let mut push = |object: &Obj| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&object.to_json());
    };
    match list {
        LegacyList::Sta => data.active.values().for_each(&mut push),
        LegacyList::User => data.known.values().for_each(&mut push),
        LegacyList::Device => data.devices.iter().for_each(&mut push),
    }
    out.extend_from_slice(b"]}");
    drop(sites);
    legacy_json(shared, StatusCode::OK, out)
}

#[derive(Clone, Copy)]
enum HugeShape {
    Legacy,
    Integration { limit: usize },
}

/// One valid envelope of at least `bytes` bytes, produced chunk by chunk: every synthetic object
/// has the same length (fixed-width MAC, IP and ids), so the count is known before the first byte.
fn huge_stream(
    template: Obj,
    shape: HugeShape,
    bytes: usize,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    const PER_CHUNK: u64 = 256;
    let object_len = synthetic(&template, shape, 0).to_json().len() as u64;
    let count = (bytes as u64).div_ceil(object_len + 1).max(1);
    let chunks = count.div_ceil(PER_CHUNK);
    futures::stream::iter((0..chunks).map(move |chunk| {
        let mut out = Vec::with_capacity(((object_len + 1) * PER_CHUNK) as usize + 128);
        if chunk == 0 {
            match shape {
                HugeShape::Legacy => out.extend_from_slice(br#"{"meta":{"rc":"ok"},"data":["#),
                HugeShape::Integration { limit } => out.extend_from_slice(
                    format!(
                        r#"{{"offset":0,"limit":{limit},"count":{count},"totalCount":{count},"data":["#
                    )
                    .as_bytes(),
                ),
            }
        }
        let start = chunk * PER_CHUNK;
        for n in start..(start + PER_CHUNK).min(count) {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&synthetic(&template, shape, n).to_json());
        }
        if chunk + 1 == chunks {
            out.extend_from_slice(b"]}");
        }
        Ok(Bytes::from(out))
    }))
}

fn synthetic(template: &Obj, shape: HugeShape, n: u64) -> Obj {
    let mac = format!(
        "02:00:5e:{:02x}:{:02x}:{:02x}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    );
    // Three-digit octets keep every object the same length.
    let ip = format!(
        "10.{}.{}.{}",
        100 + (n / (156 * 156)) % 156,
        100 + (n / 156) % 156,
        100 + n % 156
    );
    let mut object = template.clone();
    match shape {
        HugeShape::Legacy => {
            object.set("_id", Value::from(object_id(n)));
            object.set("user_id", Value::from(object_id(n)));
            object.set("mac", Value::from(mac));
            object.set("ip", Value::from(ip));
        }
        HugeShape::Integration { .. } => {
            object.set(
                "id",
                Value::from(format!("0a1b2c3d-0000-4000-8000-{n:012x}")),
            );
            object.set("ipAddress", Value::from(ip));
            object.set("macAddress", Value::from(mac));
        }
    }
    object
}

struct PageQuery {
    offset: usize,
    limit: usize,
    filter: Option<(String, String)>,
}

/// `offset`, `limit` (default 25, at most 200) and a `field.eq('value')` filter on an allowed field.
fn page_query(query: Option<&str>, filterable: &[&str]) -> Result<PageQuery, String> {
    let mut page = PageQuery {
        offset: 0,
        limit: DEFAULT_INTEGRATION_LIMIT,
        filter: None,
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "offset" => {
                page.offset = value
                    .parse()
                    .map_err(|_| format!("offset must be a non-negative integer, got {value:?}"))?;
            }
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| *limit <= MAX_INTEGRATION_LIMIT)
                    .ok_or_else(|| {
                        format!(
                            "limit must be between 0 and {MAX_INTEGRATION_LIMIT}, got {value:?}"
                        )
                    })?;
            }
            "filter" => {
                let parsed = value
                    .split_once(".eq('")
                    .and_then(|(field, rest)| Some((field, rest.strip_suffix("')")?)))
                    .filter(|(field, _)| filterable.contains(field))
                    .ok_or_else(|| {
                        format!(
                            "unsupported filter {value:?}: the fake knows only {}.eq('…')",
                            filterable.join("|")
                        )
                    })?;
                page.filter = Some((parsed.0.to_string(), parsed.1.to_string()));
            }
            _ => {}
        }
    }
    Ok(page)
}

fn integration(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    route: Route<'_>,
    fault: Option<&Fault>,
) -> Response {
    let endpoint = match route {
        Route::IntegrationInfo => Some(INTEGRATION_INFO),
        Route::IntegrationSites => Some(INTEGRATION_SITES),
        Route::IntegrationClients { .. } => Some(INTEGRATION_CLIENTS),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        count_list(shared, endpoint);
    }
    let request_path = uri
        .path()
        .strip_prefix("/proxy/network")
        .unwrap_or(uri.path());
    let fixtures = &shared.fixtures;
    // HeaderMap names are case-insensitive, so X-API-KEY, X-API-Key and x-api-key all count.
    let key_ok = headers
        .get_all("x-api-key")
        .iter()
        .any(|value| value.as_bytes() == shared.options.api_key.as_bytes());
    if !key_ok {
        // The code for a wrong (not missing) key is unconfirmed; both get the fixture's.
        return integration_error(
            &fixtures.integration_401,
            StatusCode::UNAUTHORIZED,
            None,
            request_path,
        );
    }
    if *method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if let Some(Fault::ErrorEnvelope { status, msg }) = fault {
        let template = &fixtures.integration_401;
        return integration_error(template, *status, Some((msg, msg)), request_path);
    }
    let bad_request = |message: &str| {
        // Code unconfirmed: the docs' example codes follow api.<area>.<reason>.
        integration_error(
            &fixtures.integration_401,
            StatusCode::BAD_REQUEST,
            Some(("api.request.argument-validation-error", message)),
            request_path,
        )
    };
    let not_found = || {
        integration_error(
            &fixtures.integration_404,
            StatusCode::NOT_FOUND,
            None,
            request_path,
        )
    };
    match route {
        Route::IntegrationInfo => with_content_type(
            StatusCode::OK,
            INTEGRATION_CONTENT_TYPE,
            INTEGRATION_INFO_BODY,
        ),
        Route::IntegrationSites => {
            let page = match page_query(uri.query(), &["id", "internalReference", "name"]) {
                Ok(page) => page,
                Err(message) => return bad_request(&message),
            };
            let sites = lock(&shared.sites);
            let body = page_body(
                sites.iter().map(|s| &s.overview),
                &page,
                shared.options.filter_ignores_case,
            );
            drop(sites);
            with_content_type(StatusCode::OK, INTEGRATION_CONTENT_TYPE, body)
        }
        Route::IntegrationClients { site_id } => {
            let sites = lock(&shared.sites);
            let Some(site) = sites.iter().find(|s| s.id == site_id) else {
                return not_found();
            };
            let page = match page_query(uri.query(), &["macAddress", "ipAddress"]) {
                Ok(page) => page,
                Err(message) => return bad_request(&message),
            };
            if let Some(Fault::HugeList { bytes }) = fault {
                drop(sites);
                let stream = huge_stream(
                    fixtures.integration_template.clone(),
                    HugeShape::Integration { limit: page.limit },
                    *bytes,
                );
                return with_content_type(
                    StatusCode::OK,
                    INTEGRATION_CONTENT_TYPE,
                    Body::from_stream(stream),
                );
            }
            let body = page_body(
                site.connected.values(),
                &page,
                shared.options.filter_ignores_case,
            );
            drop(sites);
            with_content_type(StatusCode::OK, INTEGRATION_CONTENT_TYPE, body)
        }
        _ => not_found(),
    }
}

/// The page envelope `{offset,limit,count,totalCount,data}` in the documented field order.
fn page_body<'a>(
    objects: impl Iterator<Item = &'a Obj>,
    page: &PageQuery,
    ignore_case: bool,
) -> Vec<u8> {
    let matching: Vec<&Obj> = objects
        .filter(|object| match &page.filter {
            None => true,
            Some((field, wanted)) => object.get_str(field).is_some_and(|value| {
                if ignore_case {
                    value.eq_ignore_ascii_case(wanted)
                } else {
                    value == wanted
                }
            }),
        })
        .collect();
    let data: Vec<&Obj> = matching
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .copied()
        .collect();
    let mut out = format!(
        r#"{{"offset":{},"limit":{},"count":{},"totalCount":{},"data":["#,
        page.offset,
        page.limit,
        data.len(),
        matching.len()
    )
    .into_bytes();
    for (position, object) in data.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&object.to_json());
    }
    out.extend_from_slice(b"]}");
    out
}

/// The documented error shape from a fixture, with this request's path, a fresh id and time,
/// and optionally another code and message.
fn integration_error(
    template: &Obj,
    status: StatusCode,
    code_and_message: Option<(&str, &str)>,
    request_path: &str,
) -> Response {
    let mut body = template.clone();
    body.set("statusCode", Value::from(status.as_u16()));
    let status_name = status
        .canonical_reason()
        .unwrap_or("ERROR")
        .to_uppercase()
        .replace([' ', '-'], "_");
    // The fixture pairs 401 with UNAUTHORIZED; keep fixture names for fixture statuses.
    if body.get("statusCode") != template.get("statusCode") {
        body.set("statusName", Value::from(status_name));
    }
    if let Some((code, message)) = code_and_message {
        body.set("code", Value::from(code));
        body.set("message", Value::from(message));
    }
    body.set("timestamp", Value::from(timestamp_now()));
    body.set("requestPath", Value::from(request_path));
    body.set("requestId", Value::from(uuid::Uuid::new_v4().to_string()));
    with_content_type(status, INTEGRATION_CONTENT_TYPE, body.to_json())
}

impl Limiter {
    fn locked_for(&mut self, now: Instant) -> Option<Duration> {
        let until = self.locked_until?;
        if now < until {
            return Some(until - now);
        }
        self.locked_until = None;
        None
    }

    fn record_failure(&mut self, now: Instant, limit: &LoginLimit) {
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > limit.window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() as u64 >= u64::from(limit.max_failures) {
            self.failures.clear();
            self.locked_until = Some(now + limit.retry_after);
        }
    }
}

/// Lowercase and colon-separated, as controllers show MACs; a malformed one is a test bug.
fn checked_mac(mac: &str) -> String {
    let lower = mac.to_ascii_lowercase();
    let well_formed = lower.len() == 17
        && lower.split(':').count() == 6
        && lower
            .split(':')
            .all(|part| part.len() == 2 && part.chars().all(|c| c.is_ascii_hexdigit()));
    if !well_formed {
        panic!("fake UniFi: {mac:?} is not a colon-separated MAC");
    }
    lower
}

/// 24 hex digits, the shape of the controller's MongoDB ids.
fn object_id(n: u64) -> String {
    format!("fa4e{n:020x}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn timestamp_now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_per_flavour() {
        assert_eq!(route(Flavour::Classic, "/"), Route::Probe);
        assert_eq!(
            route(Flavour::Classic, "/api/s/default/stat/sta/"),
            Route::Legacy {
                site: "default",
                list: LegacyList::Sta
            }
        );
        assert_eq!(
            route(Flavour::Classic, "/proxy/network/api/s/default/stat/sta"),
            Route::NotFound
        );
        assert_eq!(route(Flavour::Classic, "/api/auth/login"), Route::NotFound);
        assert_eq!(route(Flavour::UnifiOs, "/api/login"), Route::NotFound);
        assert_eq!(
            route(Flavour::UnifiOs, "/api/s/default/stat/sta"),
            Route::NotFound
        );
        assert_eq!(
            route(Flavour::UnifiOs, "/proxy/network/integration/v1/sites"),
            Route::NotFound
        );
        assert_eq!(
            route(
                Flavour::Integration,
                "/proxy/network/integration/v1/sites/abc/clients"
            ),
            Route::IntegrationClients { site_id: "abc" }
        );
        assert_eq!(
            route(
                Flavour::Integration,
                "/proxy/network/integration/v1/sites/a/b/clients"
            ),
            Route::IntegrationUnknown
        );
    }

    #[test]
    fn cookie_values_are_replaced_but_attributes_kept() {
        assert_eq!(
            replace_cookie_value("unifises=old; Path=/; Secure; HttpOnly", "new"),
            "unifises=new; Path=/; Secure; HttpOnly"
        );
        assert_eq!(replace_cookie_value("TOKEN=a.b.c", "x"), "TOKEN=x");
    }

    #[test]
    fn synthetic_objects_have_one_length() {
        let template = Obj(vec![
            ("mac".into(), Value::from("x")),
            ("ip".into(), Value::from("y")),
        ]);
        let lengths: Vec<usize> = [0, 1, 155, 156, 24_335, 3_000_000]
            .iter()
            .map(|n| synthetic(&template, HugeShape::Legacy, *n).to_json().len())
            .collect();
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{lengths:?}");
    }

    #[test]
    fn page_query_is_strict() {
        assert!(page_query(Some("limit=201"), &[]).is_err());
        assert!(page_query(Some("offset=-1"), &[]).is_err());
        assert!(page_query(Some("filter=name.eq('x')"), &["macAddress"]).is_err());
        let page = page_query(
            Some("limit=2&offset=4&filter=macAddress.eq(%2702%3A00%3A5e%3A10%3A00%3A02%27)"),
            &["macAddress"],
        )
        .unwrap();
        assert_eq!((page.offset, page.limit), (4, 2));
        assert_eq!(
            page.filter,
            Some(("macAddress".to_string(), "02:00:5e:10:00:02".to_string()))
        );
    }
}
