//! UniFi controllers as a source: classic, UniFi OS and the Integration API.
//!
//! Each controller keeps one session ([`session`]) and one cached client list per site
//! and kind (active, known) for `cache_secs`, fetched by one lookup while the others wait
//! for it, so a burst of lookups costs a handful of controller calls. What the
//! controller answers is read by the pure [`api`]; certificates are trusted per [`tls`].

pub mod api;
pub mod session;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use metal_core::config::{secret_from_env, UnifiConfig, UnifiFlavour};
use metal_core::Mac;
use time::OffsetDateTime;
use tokio::time::Instant;

use self::api::{ClientEntry, ClientList, Failure, Site};
use self::session::{Api, ControllerHttp, Credentials};
use self::tls::Trust;
use super::{Answer, Sighting, Source, SourceKind};

/// Integration API page size: its documented maximum.
const INTEGRATION_PAGE: u64 = 200;
/// Pages read at most from one list, so a controller that pages forever is cut off.
const MAX_PAGES: u64 = 500;

/// A controller that cannot be used as configured; reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum UnifiError {
    #[error("UniFi controller {name:?}: url {url:?} {reason}")]
    Url {
        name: String,
        url: String,
        reason: String,
    },
    #[error("UniFi controller {name:?}: {reason}")]
    Config { name: String, reason: String },
    #[error("UniFi controller {name:?}")]
    Tls {
        name: String,
        #[source]
        source: tls::TlsError,
    },
}

/// Which list of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ListKind {
    /// Connected clients (`stat/sta`, Integration clients).
    Active,
    /// Every known client, offline ones too (`rest/user`).
    Known,
}

impl ListKind {
    fn legacy_path(self) -> &'static str {
        match self {
            ListKind::Active => "stat/sta",
            ListKind::Known => "rest/user",
        }
    }
}

#[derive(Clone)]
struct Cached {
    at: Instant,
    result: Result<Arc<ClientList>, Failure>,
}

/// One UniFi controller.
pub struct Controller {
    name: String,
    sites: Vec<String>,
    cache_for: Duration,
    http: ControllerHttp,
    lists: HashMap<(String, ListKind), tokio::sync::Mutex<Option<Cached>>>,
    integration_sites: tokio::sync::Mutex<Option<Vec<Site>>>,
}

impl Controller {
    /// Checks the configuration and reads the credentials from the environment; nothing
    /// is sent to the controller yet.
    pub fn new(config: &UnifiConfig) -> Result<Controller, UnifiError> {
        let name = config.name.trim();
        let invalid = |reason: String| UnifiError::Config {
            name: config.name.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("name must not be empty".into()));
        }
        let sites: Vec<String> = config
            .sites
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if sites.is_empty() {
            return Err(invalid("sites must name at least one site".into()));
        }
        let credentials = if config.flavour == UnifiFlavour::Integration {
            let variable = config
                .api_key_env
                .as_deref()
                .ok_or_else(|| invalid("flavour \"integration\" needs api_key_env".into()))?;
            Credentials::ApiKey(secret_from_env(variable).map_err(invalid)?)
        } else {
            let flavour = config.flavour.as_str();
            let username = config
                .username
                .clone()
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "flavour {flavour:?} needs username and password_env (or flavour = \"integration\" with api_key_env)"
                    ))
                })?;
            let variable = config
                .password_env
                .as_deref()
                .ok_or_else(|| invalid(format!("flavour {flavour:?} needs password_env")))?;
            Credentials::Account {
                username,
                password: secret_from_env(variable).map_err(invalid)?,
            }
        };
        let trust = Trust::from_config(
            config.ca_file.as_deref(),
            config.cert_sha256.as_deref(),
            config.insecure_tls,
        )
        .map_err(|source| UnifiError::Tls {
            name: name.to_string(),
            source,
        })?;
        let http = ControllerHttp::new(name, &config.url, config.flavour, credentials, &trust)?;
        if trust == Trust::Insecure {
            tracing::warn!(controller = %name, url = %http.base_url(), "insecure_tls = true: the UniFi controller's certificate is not checked; prefer ca_file or cert_sha256");
        }
        if http.base_url().scheme() == "http" {
            tracing::warn!(controller = %name, url = %http.base_url(), "UniFi controller over plain http: its credentials travel unencrypted");
        }
        let mut lists = HashMap::new();
        for site in &sites {
            for kind in [ListKind::Active, ListKind::Known] {
                lists.insert((site.clone(), kind), tokio::sync::Mutex::new(None));
            }
        }
        Ok(Controller {
            name: name.to_string(),
            sites,
            cache_for: Duration::from_secs(config.cache_secs),
            http,
            lists,
            integration_sites: tokio::sync::Mutex::new(None),
        })
    }

    /// Logins made so far.
    pub fn logins(&self) -> u64 {
        self.http.logins()
    }

    /// The list, from the cache while it is fresh; otherwise this caller fetches it while
    /// every other caller for the same list waits and then shares the answer. Failures are
    /// cached too (a 429 for as long as it asks), so a broken controller is not hammered.
    async fn list(&self, site: &str, kind: ListKind) -> Result<Arc<ClientList>, Failure> {
        let Some(slot) = self.lists.get(&(site.to_string(), kind)) else {
            return Err(Failure::UnknownSite {
                site: site.to_string(),
                detail: "not configured".into(),
            });
        };
        let mut slot = slot.lock().await;
        if let Some(cached) = slot.as_ref() {
            let keep_for = match &cached.result {
                Err(Failure::RateLimited { retry_after, .. }) => (*retry_after).max(self.cache_for),
                _ => self.cache_for,
            };
            if cached.at.elapsed() < keep_for {
                return cached.result.clone();
            }
        }
        let result = self.fetch(site, kind).await.map(Arc::new);
        if let Err(failure) = &result {
            tracing::warn!(controller = %self.name, site, list = kind.legacy_path(), error = %failure, "UniFi list failed");
        }
        *slot = Some(Cached {
            at: Instant::now(),
            result: result.clone(),
        });
        result
    }

    async fn fetch(&self, site: &str, kind: ListKind) -> Result<ClientList, Failure> {
        let api = self.http.api().await?;
        if api == Api::Integration {
            return match kind {
                ListKind::Active => self.integration_clients(site).await,
                ListKind::Known => Ok(ClientList::default()),
            };
        }
        let path = format!(
            "/api/s/{}/{}",
            url::form_urlencoded::byte_serialize(site.as_bytes()).collect::<String>(),
            kind.legacy_path()
        );
        let reply = self.http.get(&path).await?;
        api::legacy_list(&reply, site, OffsetDateTime::now_utc())
    }

    async fn integration_site_id(&self, wanted: &str) -> Result<String, Failure> {
        let mut sites = self.integration_sites.lock().await;
        if sites.is_none() {
            let mut all = Vec::new();
            let mut offset = 0;
            for _ in 0..MAX_PAGES {
                let reply = self
                    .http
                    .get(&format!(
                        "/integration/v1/sites?offset={offset}&limit={INTEGRATION_PAGE}"
                    ))
                    .await?;
                let page = api::integration_sites(&reply, OffsetDateTime::now_utc())?;
                let next = page.next_offset();
                all.extend(page.items);
                match next {
                    Some(next) => offset = next,
                    None => break,
                }
            }
            *sites = Some(all);
        }
        let known = sites.as_deref().unwrap_or_default();
        match known.iter().find(|s| s.matches(wanted)) {
            Some(site) => Ok(site.id.clone()),
            None => Err(Failure::UnknownSite {
                site: wanted.to_string(),
                detail: format!(
                    "the controller has {}",
                    known
                        .iter()
                        .map(|s| format!("{} ({})", s.internal_reference, s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    async fn integration_clients(&self, site: &str) -> Result<ClientList, Failure> {
        let id = self.integration_site_id(site).await?;
        let mut list = ClientList::default();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let reply = self
                .http
                .get(&format!(
                    "/integration/v1/sites/{id}/clients?offset={offset}&limit={INTEGRATION_PAGE}"
                ))
                .await?;
            let page = match api::integration_clients(&reply, site, OffsetDateTime::now_utc()) {
                Ok(page) => page,
                Err(failure @ Failure::UnknownSite { .. }) => {
                    // The site may have been re-created under a new id: ask again next time.
                    *self.integration_sites.lock().await = None;
                    return Err(failure);
                }
                Err(failure) => return Err(failure),
            };
            let next = page.next_offset();
            list.extend(page.items);
            match next {
                Some(next) => offset = next,
                None => return Ok(list),
            }
        }
        Err(Failure::Api {
            status: 200,
            message: format!("more than {MAX_PAGES} pages of clients"),
        })
    }

    /// Active clients first; known clients (fixed IP, last IP) only when no site has the
    /// MAC active.
    async fn find(&self, mac: Mac) -> Answer {
        let mut sightings = Vec::new();
        let mut failures: Vec<(String, Failure)> = Vec::new();
        let mut counts = Vec::new();
        for site in &self.sites {
            match self.list(site, ListKind::Active).await {
                Ok(list) => {
                    counts.push(format!("{} active clients of site {site}", list.clients));
                    sightings.extend(
                        list.get(&mac)
                            .iter()
                            .filter_map(|entry| active_sighting(entry, site)),
                    );
                }
                Err(failure) => failures.push((site.clone(), failure)),
            }
        }
        if sightings.is_empty() {
            for site in &self.sites {
                if failures.iter().any(|(s, _)| s == site) {
                    continue;
                }
                match self.list(site, ListKind::Known).await {
                    Ok(list) => {
                        if list.clients > 0 {
                            counts.push(format!("{} known clients of site {site}", list.clients));
                        }
                        sightings.extend(
                            list.get(&mac)
                                .iter()
                                .filter_map(|entry| known_sighting(entry, site)),
                        );
                    }
                    Err(failure) => failures.push((site.clone(), failure)),
                }
            }
        }
        if !sightings.is_empty() {
            // A failed site was already logged when its list was fetched (once per
            // cache_secs, not once per lookup).
            return Answer::Seen(sightings);
        }
        if failures.is_empty() {
            return Answer::NotSeen(format!("not among {}", counts.join(" and ")));
        }
        let permanent = failures.len() == self.sites.len()
            && failures.iter().all(|(_, failure)| failure.is_permanent());
        let mut error = failures
            .iter()
            .map(|(site, failure)| format!("site {site}: {failure}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !counts.is_empty() {
            error.push_str(&format!(" (not among {})", counts.join(" and ")));
        }
        Answer::Failed { error, permanent }
    }
}

fn active_sighting(entry: &ClientEntry, site: &str) -> Option<Sighting> {
    let sighting = |ip, current, detail: String| Sighting {
        ip: Some(ip),
        redfish_url: None,
        last_seen: entry.last_seen,
        current,
        detail,
    };
    if let Some(ip) = entry.ip {
        return Some(sighting(ip, true, format!("active client of site {site}")));
    }
    if let Some(ip) = entry.fixed_ip {
        return Some(sighting(
            ip,
            true,
            format!("active client of site {site} without an IP; its fixed IP"),
        ));
    }
    entry.last_ip.map(|ip| {
        sighting(
            ip,
            false,
            format!("active client of site {site} without an IP; its last IP"),
        )
    })
}

fn known_sighting(entry: &ClientEntry, site: &str) -> Option<Sighting> {
    let (ip, detail) = match (entry.fixed_ip, entry.last_ip.or(entry.ip)) {
        (Some(ip), _) => (
            ip,
            format!("fixed IP of known client of site {site}, offline"),
        ),
        (None, Some(ip)) => (
            ip,
            format!("last IP of known client of site {site}, offline"),
        ),
        (None, None) => return None,
    };
    Some(Sighting {
        ip: Some(ip),
        redfish_url: None,
        last_seen: entry.last_seen,
        current: false,
        detail,
    })
}

impl Source for Controller {
    fn kind(&self) -> SourceKind {
        SourceKind::Unifi
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn lookup(&self, mac: Mac, _now: OffsetDateTime) -> BoxFuture<'_, Answer> {
        Box::pin(self.find(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> UnifiConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn configuration_errors_name_the_controller_and_never_a_secret() {
        std::env::set_var("METAL_TEST_UNIFI_SECRET", "s3cr3t-value");
        let cases = [
            (
                r#"name = "core"
                   url = "https://127.0.0.1:8443"
                   flavour = "classic"
                   password_env = "METAL_TEST_UNIFI_SECRET""#,
                "needs username",
            ),
            (
                r#"name = "core"
                   url = "https://127.0.0.1:8443"
                   flavour = "integration""#,
                "needs api_key_env",
            ),
            (
                r#"name = "core"
                   url = "https://127.0.0.1:8443"
                   username = "metal"
                   password_env = "METAL_TEST_UNIFI_UNSET_VARIABLE""#,
                "METAL_TEST_UNIFI_UNSET_VARIABLE is not set",
            ),
            (
                r#"name = "core"
                   url = "https://127.0.0.1:8443"
                   username = "metal"
                   password_env = "METAL_TEST_UNIFI_SECRET"
                   insecure_tls = true
                   cert_sha256 = "00""#,
                "exclude each other",
            ),
            (
                r#"name = "core"
                   url = "ftp://127.0.0.1"
                   username = "metal"
                   password_env = "METAL_TEST_UNIFI_SECRET""#,
                "https://host",
            ),
            (
                r#"name = "core"
                   url = "https://127.0.0.1"
                   sites = []
                   username = "metal"
                   password_env = "METAL_TEST_UNIFI_SECRET""#,
                "at least one site",
            ),
        ];
        for (text, expected) in cases {
            let error = Controller::new(&config(text)).err().expect(expected);
            let message = metal_core::error_chain(&error);
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("core"), "{message}");
            assert!(!message.contains("s3cr3t-value"), "{message}");
        }
    }

    #[test]
    fn ip_rules_for_active_and_known_clients() {
        let mac = Mac::parse_any("02:00:5e:10:00:02").unwrap();
        let entry = |ip: Option<&str>, fixed: Option<&str>, last: Option<&str>| ClientEntry {
            mac,
            ip: ip.map(|i| i.parse().unwrap()),
            fixed_ip: fixed.map(|i| i.parse().unwrap()),
            last_ip: last.map(|i| i.parse().unwrap()),
            last_seen: None,
        };
        let active =
            active_sighting(&entry(Some("127.0.0.1"), Some("127.0.0.2"), None), "s").unwrap();
        assert_eq!(active.ip.unwrap().to_string(), "127.0.0.1");
        assert!(active.current);
        let fixed =
            active_sighting(&entry(None, Some("127.0.0.2"), Some("127.0.0.3")), "s").unwrap();
        assert_eq!(fixed.ip.unwrap().to_string(), "127.0.0.2");
        let last = active_sighting(&entry(None, None, Some("127.0.0.3")), "s").unwrap();
        assert!(!last.current, "a last IP is remembered, not seen");
        assert!(active_sighting(&entry(None, None, None), "s").is_none());
        let known =
            known_sighting(&entry(None, Some("127.0.0.2"), Some("127.0.0.3")), "s").unwrap();
        assert_eq!(known.ip.unwrap().to_string(), "127.0.0.2");
        assert!(!known.current);
    }
}
