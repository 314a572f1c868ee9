//! The one configuration file of every binary (`--config` / `METAL_CONFIG`), with
//! environment overrides and secrets from the environment or `.env`.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, `NATS_URL`, then
//! `METAL__<SECTION>__<KEY>=value` variables (e.g. `METAL__BOOT_API__LISTEN=0.0.0.0:8081`).
//! Secrets are never in the file: it names the environment variable that holds them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::mac::Mac;

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS server URL.
    pub nats_url: String,
    pub nats: NatsConfig,
    pub locator: LocatorConfig,
    pub redfish: RedfishConfig,
    pub projector: ProjectorConfig,
    pub boot_api: BootApiConfig,
    pub validator: ValidatorConfig,
    pub web: WebConfig,
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: DEFAULT_NATS_URL.to_string(),
            nats: NatsConfig::default(),
            locator: LocatorConfig::default(),
            redfish: RedfishConfig::default(),
            projector: ProjectorConfig::default(),
            boot_api: BootApiConfig::default(),
            validator: ValidatorConfig::default(),
            web: WebConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// How every binary connects to NATS besides its URL (`[nats]`): who it is (a user with a
/// password from the environment, an nkey seed file, or a credentials file; at most one)
/// and whom it trusts (a CA file, which also makes TLS required; a client certificate for
/// a server that asks for one). All unset: no authentication, TLS only if the URL says so.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// A NATS user; its password is read from the variable `password_env` names.
    pub user: Option<String>,
    /// The environment variable holding `user`'s password.
    pub password_env: String,
    /// A file holding an nkey seed (`SU...`), instead of a user and password.
    pub nkey_seed_file: Option<PathBuf>,
    /// A credentials file (a user JWT and its nkey seed, `.creds`), instead of either.
    pub credentials_file: Option<PathBuf>,
    /// PEM CA certificate(s) the server's certificate must chain to; TLS is then required.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, with `client_key_file`, for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            user: None,
            password_env: "NATS_PASSWORD".to_string(),
            nkey_seed_file: None,
            credentials_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocatorConfig {
    /// The sources asked, in order (`static`, `unifi`, `dnsmasq`, `isc-dhcpd`, `kea`,
    /// `neighbour`). Unset: every configured source, in that order.
    pub sources: Option<Vec<String>>,
    /// BMCs whose address is known up front. `address` is an IP, `host:port`, or a full
    /// Redfish base URL such as `http://127.0.0.1:8000`.
    #[serde(rename = "static")]
    pub static_bmcs: Vec<StaticBmc>,
    /// dnsmasq lease files to look BMC MACs up in, read at each lookup.
    #[serde(deserialize_with = "one_or_many")]
    pub dnsmasq_leases: Vec<PathBuf>,
    /// ISC dhcpd lease files (`dhcpd.leases`).
    #[serde(deserialize_with = "one_or_many")]
    pub isc_dhcpd_leases: Vec<PathBuf>,
    /// Kea DHCPv4 memfile lease files (CSV).
    #[serde(deserialize_with = "one_or_many")]
    pub kea_leases: Vec<PathBuf>,
    /// Ask the neighbour (ARP) table of the locator's host.
    pub neighbour: bool,
    /// Where the neighbour table is read from.
    pub neighbour_table: PathBuf,
    /// UniFi controllers to ask.
    pub unifi: Vec<UnifiConfig>,
    /// How long a BMC no source knows is looked for again, from the request's time.
    pub locate_deadline_secs: u64,
    /// Longest wait between two lookups of a BMC not found yet (the first waits 1 s,
    /// each next one twice as long, up to this).
    pub retry_secs: u64,
    /// Scheme of the Redfish URL built from a bare IP.
    pub redfish_scheme: String,
    /// Port of the Redfish URL built from a bare IP (the scheme's default when unset).
    pub redfish_port: Option<u16>,
    /// Inputs handled at once by one locator.
    pub concurrency: usize,
}

impl Default for LocatorConfig {
    fn default() -> Self {
        LocatorConfig {
            sources: None,
            static_bmcs: Vec::new(),
            dnsmasq_leases: Vec::new(),
            isc_dhcpd_leases: Vec::new(),
            kea_leases: Vec::new(),
            neighbour: false,
            neighbour_table: PathBuf::from("/proc/net/arp"),
            unifi: Vec::new(),
            locate_deadline_secs: 600,
            retry_secs: 10,
            redfish_scheme: "https".to_string(),
            redfish_port: None,
            concurrency: 16,
        }
    }
}

/// One UniFi controller (`[[locator.unifi]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiConfig {
    /// Free text, shown in logs and reasons.
    pub name: String,
    /// Base URL of the controller or console, e.g. `https://192.168.1.1` or `https://host:8443`.
    pub url: String,
    #[serde(default)]
    pub flavour: UnifiFlavour,
    /// Site names (classic, UniFi OS), or names, legacy names or ids (integration).
    #[serde(default = "default_unifi_sites")]
    pub sites: Vec<String>,
    /// Local account (classic, UniFi OS).
    pub username: Option<String>,
    /// Environment variable holding that account's password.
    pub password_env: Option<String>,
    /// Environment variable holding the Integration API key.
    pub api_key_env: Option<String>,
    /// PEM file of the CA, or of the controller's own self-signed certificate.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the controller's certificate, any case, colons optional.
    pub cert_sha256: Option<String>,
    /// Accept any certificate (logs a warning at start-up).
    #[serde(default)]
    pub insecure_tls: bool,
    /// One client list serves every lookup for this long.
    #[serde(default = "default_unifi_cache_secs")]
    pub cache_secs: u64,
}

fn default_unifi_sites() -> Vec<String> {
    vec!["default".to_string()]
}

fn default_unifi_cache_secs() -> u64 {
    5
}

/// Which UniFi API a controller speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnifiFlavour {
    /// Classic or UniFi OS, told apart by probing `GET /`.
    #[default]
    Auto,
    /// Self-hosted Network Application: `/api/login`, `/api/s/{site}/...`.
    Classic,
    /// UniFi OS console: `/api/auth/login`, CSRF token, `/proxy/network` prefix.
    Unifios,
    /// The official Integration API with an API key.
    Integration,
}

impl UnifiFlavour {
    pub fn as_str(self) -> &'static str {
        match self {
            UnifiFlavour::Auto => "auto",
            UnifiFlavour::Classic => "classic",
            UnifiFlavour::Unifios => "unifios",
            UnifiFlavour::Integration => "integration",
        }
    }
}

/// A path or a list of paths.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(path) => vec![path],
        OneOrMany::Many(paths) => paths,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBmc {
    pub bmc_mac: Mac,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedfishConfig {
    /// Default BMC user name.
    pub username: String,
    /// Environment variable holding the default BMC password.
    pub password_env: String,
    /// Per-BMC credentials, overriding the default.
    pub credentials: Vec<BmcCredentials>,
    /// Accept any BMC certificate, for every BMC (prefer a per-BMC `insecure_tls`).
    pub insecure_tls: bool,
    /// PEM file of the CAs (or self-signed certificates) BMC certificates are verified
    /// against, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one HTTP request to a BMC, in seconds.
    pub request_timeout_secs: u64,
    /// Deadline of a whole scrape of one BMC, in seconds.
    pub scrape_deadline_secs: u64,
    /// Retries of one failed GET (5xx, timeout, connection error), with backoff.
    pub retries: u32,
    /// Requests in flight to one BMC at once (at most 4 by design).
    pub per_bmc_concurrency: usize,
    /// Requests in flight at once across all BMCs.
    pub global_concurrency: usize,
    /// Largest response body accepted from a BMC, in bytes.
    pub max_response_bytes: u64,
    /// Largest number of resources fetched in one scrape.
    pub max_resources: usize,
    /// Networks BMCs may be dialled in, for scrapes and power alike: CIDRs such as
    /// `10.20.0.0/16`, or single addresses. Empty (the default): any address. When set, a
    /// BMC is dialled only by an IP address inside one of them (loopback only when listed),
    /// never by a host name, whose address could change after the check.
    pub allowed_networks: Vec<Network>,
}

/// A network in `redfish.allowed_networks`: a CIDR (`10.20.0.0/16`, `fd00::/8`) or one
/// address (`10.20.0.5`, a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(ipnet::IpNet);

impl Network {
    /// Whether `address` is inside; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        self.0.contains(&address.to_canonical())
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let network = match text.parse::<ipnet::IpNet>() {
            Ok(network) => network,
            Err(_) => match text.parse::<std::net::IpAddr>() {
                Ok(address) => ipnet::IpNet::from(address),
                Err(_) => {
                    return Err(format!(
                    "{text:?} is not a network: write a CIDR such as 10.20.0.0/16, or one address"
                ))
                }
            },
        };
        // `10.20.1.7/16` names a network by one of its hosts: keep the network it means.
        Ok(Network(network.trunc()))
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Network, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for RedfishConfig {
    fn default() -> Self {
        RedfishConfig {
            username: "root".to_string(),
            password_env: "METAL_REDFISH_PASSWORD".to_string(),
            credentials: Vec::new(),
            insecure_tls: false,
            ca_file: None,
            request_timeout_secs: 15,
            scrape_deadline_secs: 120,
            retries: 2,
            per_bmc_concurrency: 4,
            global_concurrency: 64,
            max_response_bytes: 16 * 1024 * 1024,
            max_resources: 2000,
            allowed_networks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcCredentials {
    pub bmc_mac: Mac,
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding this BMC's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Accept any certificate from this BMC (a self-signed one, say).
    #[serde(default)]
    pub insecure_tls: bool,
}

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A user name and the password from the environment.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// How to talk to one BMC.
#[derive(Debug, Clone)]
pub struct BmcAccess {
    /// The credentials, or why there are none (the BMC is then read anonymously, and a
    /// BMC that asks for credentials fails with this reason).
    pub credentials: Result<Credentials, String>,
    pub insecure_tls: bool,
}

impl RedfishConfig {
    /// The credentials for a BMC: its own entry, else the default. `Err` says why there
    /// are none (the named password variable is unset).
    pub fn credentials_for(&self, bmc_mac: &Mac) -> Result<Credentials, String> {
        let entry = self.credentials.iter().find(|c| &c.bmc_mac == bmc_mac);
        let username = entry
            .and_then(|e| e.username.clone())
            .unwrap_or_else(|| self.username.clone());
        let variable = entry
            .and_then(|e| e.password_env.clone())
            .unwrap_or_else(|| self.password_env.clone());
        match std::env::var(&variable) {
            Ok(password) => Ok(Credentials {
                username,
                password: Secret::new(password),
            }),
            Err(_) => Err(format!(
                "no password for BMC {bmc_mac}: environment variable {variable} is not set"
            )),
        }
    }

    /// Credentials and TLS trust for one BMC.
    pub fn access_for(&self, bmc_mac: &Mac) -> BmcAccess {
        let entry = self.credentials.iter().find(|c| &c.bmc_mac == bmc_mac);
        BmcAccess {
            credentials: self.credentials_for(bmc_mac),
            insecure_tls: self.insecure_tls || entry.is_some_and(|e| e.insecure_tls),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// The SQLite projection file.
    pub database: PathBuf,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            database: PathBuf::from("var/inventory.db"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootApiConfig {
    /// Address the Pixiecore API listens on.
    pub listen: String,
    /// boot-api's own SQLite projection file.
    pub database: PathBuf,
    /// The boot profiles file.
    pub profiles: PathBuf,
    /// The URL machines reach boot-api at; the phone-home URL and the iPXE chain are
    /// built from it.
    pub public_url: String,
    /// A provisioning that has not phoned home this long after arming fails.
    pub install_deadline_secs: u64,
    /// The environment variable holding the install-token key.
    pub token_key_env: String,
    /// One `machine.boot.*` event per MAC and outcome in this window, however often a
    /// machine asks.
    pub boot_event_window_secs: u64,
}

impl Default for BootApiConfig {
    fn default() -> Self {
        BootApiConfig {
            listen: "127.0.0.1:8081".to_string(),
            database: PathBuf::from("var/boot-api.db"),
            profiles: PathBuf::from("profiles/boot-profiles.toml"),
            public_url: "http://127.0.0.1:8081".to_string(),
            install_deadline_secs: 3600,
            token_key_env: "METAL_BOOT_TOKEN_KEY".to_string(),
            boot_event_window_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    /// validator's own SQLite projection file.
    pub database: PathBuf,
    /// The hardware specs file (docs/hardware-specs.md).
    pub specs: PathBuf,
    /// Seconds between periodic rescans, by machine state (`inventoried`, `installed`,
    /// ...); a state not listed is never rescanned periodically. Each machine rescans at
    /// its own phase within the interval, so a fleet never rescans at once.
    pub rescan_interval_secs: std::collections::BTreeMap<String, u64>,
    /// Seconds between rescans of a BMC that stopped answering (shorter, to see it back).
    pub failing_rescan_interval_secs: u64,
    /// A BMC silent for longer than this is `machine.bmc.lost`.
    pub bmc_lost_after_secs: u64,
    /// How often the validator looks for machines due a rescan.
    pub tick_secs: u64,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            database: PathBuf::from("var/validator.db"),
            specs: PathBuf::from("profiles/hardware-specs.toml"),
            rescan_interval_secs: [
                ("inventoried".to_string(), 6 * 3600),
                ("installed".to_string(), 24 * 3600),
                ("scrape_failed".to_string(), 3600),
                ("install_failed".to_string(), 6 * 3600),
                ("provision_failed".to_string(), 6 * 3600),
            ]
            .into_iter()
            .collect(),
            failing_rescan_interval_secs: 300,
            bmc_lost_after_secs: 900,
            tick_secs: 10,
        }
    }
}

/// The read-only HTTP API over the projection (`web`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// web's own SQLite projection file.
    pub database: PathBuf,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8090".to_string(),
            database: PathBuf::from("var/web.db"),
        }
    }
}

/// Where each binary serves Prometheus `GET /metrics` (`[metrics]`): an address and port
/// per service, each its own listener; a service not given one serves no metrics. A
/// binary's `--metrics-listen` overrides its entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub locator: Option<String>,
    pub redfish_scraper: Option<String>,
    pub inventory_projector: Option<String>,
    pub validator: Option<String>,
    pub boot_api: Option<String>,
    pub web: Option<String>,
}

impl MetricsConfig {
    /// The listen address configured for the binary named `service` (`redfish-scraper`, ...).
    pub fn listen_for(&self, service: &str) -> Option<&str> {
        match service {
            "locator" => self.locator.as_deref(),
            "redfish-scraper" => self.redfish_scraper.as_deref(),
            "inventory-projector" => self.inventory_projector.as_deref(),
            "validator" => self.validator.as_deref(),
            "boot-api" => self.boot_api.as_deref(),
            "web" => self.web.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("environment variable {variable} does not name a config key: {reason}")]
    Override { variable: String, reason: String },
    #[error("configuration is not valid")]
    Invalid {
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot read .env file")]
    DotEnv {
        #[source]
        source: dotenvy::Error,
    },
}

impl Config {
    /// Loads `.env` (if present), the file at `path` (if given), and environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(error) if error.not_found() => {}
            Err(source) => return Err(ConfigError::DotEnv { source }),
        }
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Config::from_parts(&text, path, &vars)
    }

    /// Pure core of [`Config::load`]: file text plus environment variables.
    pub fn from_parts(
        text: &str,
        path: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            source,
        })?;
        if let Some(dir) = path.and_then(Path::parent) {
            resolve_relative_paths(&mut table, dir);
        }
        if let Some((_, url)) = vars.iter().find(|(k, _)| k == "NATS_URL") {
            table.insert("nats_url".into(), toml::Value::String(url.clone()));
        }
        for (variable, value) in vars {
            let Some(rest) = variable.strip_prefix("METAL__") else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
            set_path(&mut table, &keys, parse_override(value)).map_err(|reason| {
                ConfigError::Override {
                    variable: variable.clone(),
                    reason,
                }
            })?;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|source| ConfigError::Invalid { source })
    }
}

/// The keys holding file paths: `*` stands for every element of an array of tables.
const PATH_KEYS: &[&[&str]] = &[
    &["nats", "nkey_seed_file"],
    &["nats", "credentials_file"],
    &["nats", "ca_file"],
    &["nats", "client_cert_file"],
    &["nats", "client_key_file"],
    &["projector", "database"],
    &["boot_api", "database"],
    &["boot_api", "profiles"],
    &["validator", "database"],
    &["validator", "specs"],
    &["web", "database"],
    &["locator", "dnsmasq_leases"],
    &["locator", "isc_dhcpd_leases"],
    &["locator", "kea_leases"],
    &["locator", "neighbour_table"],
    &["locator", "unifi", "*", "ca_file"],
    &["redfish", "ca_file"],
];

/// Relative paths written in a config file mean "beside this file", wherever the
/// binary runs from. Paths from flags and environment overrides keep the working directory.
fn resolve_relative_paths(table: &mut toml::Table, dir: &Path) {
    for keys in PATH_KEYS {
        resolve_at(table, keys, dir);
    }
}

fn resolve_at(table: &mut toml::Table, keys: &[&str], dir: &Path) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    let Some(value) = table.get_mut(*first) else {
        return;
    };
    match (value, rest) {
        (value, []) => resolve_value(value, dir),
        (toml::Value::Table(inner), rest) => resolve_at(inner, rest, dir),
        (toml::Value::Array(items), ["*", rest @ ..]) => {
            for item in items {
                if let toml::Value::Table(inner) = item {
                    resolve_at(inner, rest, dir);
                }
            }
        }
        _ => {}
    }
}

fn resolve_value(value: &mut toml::Value, dir: &Path) {
    match value {
        toml::Value::String(text) => {
            let path = Path::new(text.as_str());
            if path.is_relative() && !text.is_empty() {
                *text = dir.join(path).to_string_lossy().into_owned();
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|v| resolve_value(v, dir)),
        _ => {}
    }
}

/// Reads a secret from the named environment variable (`.env` is loaded into the
/// environment first). The error names the variable, never a value.
pub fn secret_from_env(variable: &str) -> Result<Secret, String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
        Ok(_) => Err(format!("environment variable {variable} is empty")),
        Err(_) => Err(format!("environment variable {variable} is not set")),
    }
}

fn parse_override(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    match keys {
        [] => Err("empty key".into()),
        [last] if !last.is_empty() => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] if !first.is_empty() => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("{first} is not a section")),
            }
        }
        _ => Err("empty key segment".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_networks_are_cidrs_or_addresses_and_a_wrong_one_is_named() {
        let text =
            "[redfish]\nallowed_networks = [\"10.20.1.7/16\", \"192.0.2.9\", \"fd00::/8\"]\n";
        let config = Config::from_parts(text, None, &[]).unwrap();
        let listed: Vec<String> = config
            .redfish
            .allowed_networks
            .iter()
            .map(Network::to_string)
            .collect();
        assert_eq!(listed, ["10.20.0.0/16", "192.0.2.9/32", "fd00::/8"]);
        let inside = |text: &str| {
            let address: std::net::IpAddr = text.parse().unwrap();
            config
                .redfish
                .allowed_networks
                .iter()
                .any(|n| n.contains(address))
        };
        assert!(inside("10.20.255.1"));
        assert!(inside("::ffff:10.20.0.3"), "IPv4-mapped counts as IPv4");
        assert!(inside("fd12::1"));
        assert!(!inside("10.21.0.1"));
        assert!(!inside("192.0.2.10"));
        assert!(!inside("127.0.0.1"), "loopback only when listed");

        let vars = vec![(
            "METAL__REDFISH__ALLOWED_NETWORKS".to_string(),
            "[\"10.0.0.0/33\"]".to_string(),
        )];
        let error = Config::from_parts("", None, &vars).unwrap_err();
        let message = crate::error_chain(&error);
        assert!(
            message.contains("\"10.0.0.0/33\" is not a network")
                && message.contains("allowed_networks"),
            "{message}"
        );
    }

    #[test]
    fn defaults_run_on_one_machine() {
        let config = Config::from_parts("", None, &[]).unwrap();
        assert_eq!(config.nats_url, DEFAULT_NATS_URL);
        assert_eq!(config.redfish.per_bmc_concurrency, 4);
    }

    #[test]
    fn file_then_env_overrides() {
        let text = r#"
            nats_url = "nats://file:4222"
            [locator]
            static = [{ bmc_mac = "AA-BB-CC-DD-EE-01", address = "http://127.0.0.1:8000" }]
            [boot_api]
            listen = "127.0.0.1:1"
        "#;
        let vars = vec![
            ("NATS_URL".to_string(), "nats://env:4222".to_string()),
            (
                "METAL__BOOT_API__LISTEN".to_string(),
                "0.0.0.0:8081".to_string(),
            ),
            ("METAL__REDFISH__RETRIES".to_string(), "5".to_string()),
        ];
        let config = Config::from_parts(text, None, &vars).unwrap();
        assert_eq!(config.nats_url, "nats://env:4222");
        assert_eq!(config.boot_api.listen, "0.0.0.0:8081");
        assert_eq!(config.redfish.retries, 5);
        assert_eq!(
            config.locator.static_bmcs[0].bmc_mac.to_string(),
            "aa:bb:cc:dd:ee:01"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::from_parts("nats_ulr = \"x\"", None, &[]).is_err());
        let vars = vec![("METAL__NOPE".to_string(), "1".to_string())];
        assert!(Config::from_parts("", None, &vars).is_err());
    }

    #[test]
    fn relative_paths_resolve_beside_the_config_file() {
        let text = r#"
            [projector]
            database = "var/inventory.db"
            [boot_api]
            profiles = "/etc/metal/profiles.toml"
            [locator]
            dnsmasq_leases = "leases/dnsmasq.leases"
            kea_leases = ["kea.csv", "/var/lib/kea/kea-leases4.csv"]
            [[locator.unifi]]
            name = "core"
            url = "https://127.0.0.1:8443"
            ca_file = "unifi-ca.pem"
        "#;
        let vars = vec![(
            "METAL__BOOT_API__DATABASE".to_string(),
            "\"boot.db\"".to_string(),
        )];
        let config =
            Config::from_parts(text, Some(Path::new("/etc/metal/metal.toml")), &vars).unwrap();
        assert_eq!(
            config.projector.database,
            Path::new("/etc/metal/var/inventory.db")
        );
        assert_eq!(
            config.boot_api.profiles,
            Path::new("/etc/metal/profiles.toml")
        );
        // An environment override is the operator's word at the shell: the working directory.
        assert_eq!(config.boot_api.database, Path::new("boot.db"));
        assert_eq!(
            config.locator.dnsmasq_leases,
            vec![PathBuf::from("/etc/metal/leases/dnsmasq.leases")]
        );
        assert_eq!(
            config.locator.kea_leases,
            vec![
                PathBuf::from("/etc/metal/kea.csv"),
                PathBuf::from("/var/lib/kea/kea-leases4.csv")
            ]
        );
        assert_eq!(
            config.locator.unifi[0].ca_file.as_deref(),
            Some(Path::new("/etc/metal/unifi-ca.pem"))
        );
        assert_eq!(config.locator.unifi[0].sites, vec!["default".to_string()]);
        assert_eq!(config.locator.unifi[0].cache_secs, 5);
        assert_eq!(config.locator.unifi[0].flavour, UnifiFlavour::Auto);
        // Defaults not written in the file stay as they are.
        assert_eq!(config.locator.neighbour_table, Path::new("/proc/net/arp"));
    }

    #[test]
    fn web_section_has_defaults_and_resolves_its_database() {
        let config = Config::from_parts("", None, &[]).unwrap();
        assert_eq!(config.web.listen, "127.0.0.1:8090");
        assert_eq!(config.web.database, Path::new("var/web.db"));
        let text = r#"
            [web]
            listen = "127.0.0.1:9000"
            database = "web.db"
        "#;
        let config =
            Config::from_parts(text, Some(Path::new("/etc/metal/metal.toml")), &[]).unwrap();
        assert_eq!(config.web.listen, "127.0.0.1:9000");
        assert_eq!(config.web.database, Path::new("/etc/metal/web.db"));
        assert!(Config::from_parts("[web]\nlisten_on = \"x\"", None, &[]).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
    }
}
