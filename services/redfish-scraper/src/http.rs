//! The HTTP client for one BMC: Redfish session auth (basic auth where sessions are not
//! offered, nothing where the BMC asks for nothing), one re-login when a session expires
//! mid-walk, a per-request timeout, retries with exponential backoff on 5xx, timeouts and
//! connection errors, a response-size cap read as a stream, same-host links and redirects
//! only, and caps on requests in flight to one BMC and to all BMCs together.
//! [`Scraper::scrape`] adds the per-scrape deadline and logout; [`Scraper::connect`] logs in
//! for other work (power), where [`BmcClient::patch_json`] and [`BmcClient::post_json`]
//! change things and say why the BMC refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use metal_core::config::{Credentials, Network, RedfishConfig, Secret};
use reqwest::header::{HeaderMap, HeaderValue, ETAG, IF_MATCH, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use crate::error::{printable, RedfishError};
use crate::source::RedfishSource;
use crate::walk::{walk, WalkLimits, Walked, SERVICE_ROOT};

/// The standard session collection, used when the service root does not link one.
pub const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";

/// Hard upper bound of requests in flight to one BMC, whatever the config says.
pub const MAX_PER_BMC_CONCURRENCY: usize = 4;

/// Logins after the first in one scrape: a session that expires mid-walk is renewed once.
const MAX_RELOGINS: u32 = 1;

/// How much of an error answer's body is read (for its Redfish message); the rest is dropped.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// The longest BMC error message kept in a [`RedfishError::Rejected`], in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// How scrapes talk to BMCs.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub scrape_deadline: Duration,
    /// Retries of one request after a 5xx, a timeout or a connection error.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one (at most 10 s).
    pub backoff: Duration,
    pub max_response_bytes: u64,
    pub per_bmc_concurrency: usize,
    /// Requests in flight across every BMC this scraper talks to.
    pub global_concurrency: usize,
    pub max_resources: usize,
    /// Accept any certificate from every BMC.
    pub insecure_tls: bool,
    /// Extra trusted certificates (PEM), besides the public roots.
    pub ca_file: Option<PathBuf>,
    pub max_redirects: usize,
    /// Use `$expand` where the service root offers it.
    pub use_expand: bool,
    /// Where BMCs may be dialled (`redfish.allowed_networks`); empty: anywhere.
    pub allowed_networks: Vec<Network>,
}

impl HttpSettings {
    pub fn from_config(config: &RedfishConfig) -> HttpSettings {
        HttpSettings {
            request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
            scrape_deadline: Duration::from_secs(config.scrape_deadline_secs.max(1)),
            retries: config.retries,
            backoff: Duration::from_millis(500),
            max_response_bytes: config.max_response_bytes,
            per_bmc_concurrency: config.per_bmc_concurrency,
            global_concurrency: config.global_concurrency,
            max_resources: config.max_resources,
            insecure_tls: config.insecure_tls,
            ca_file: config.ca_file.clone(),
            max_redirects: 3,
            use_expand: true,
            allowed_networks: config.allowed_networks.clone(),
        }
    }

    fn concurrency(&self) -> usize {
        self.per_bmc_concurrency.clamp(1, MAX_PER_BMC_CONCURRENCY)
    }
}

/// One BMC to scrape.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub base_url: &'a str,
    /// `None`: read anonymously (a BMC that asks for credentials then fails with
    /// [`RedfishError::NoCredentials`]).
    pub credentials: Option<&'a Credentials>,
    /// Why there are no credentials, for that error.
    pub no_credentials_reason: Option<&'a str>,
    pub insecure_tls: bool,
}

/// Scrapes BMCs: two shared HTTP clients (verifying, and accepting any certificate for
/// BMCs configured so) and the global cap on requests in flight.
#[derive(Clone)]
pub struct Scraper {
    settings: HttpSettings,
    verifying: reqwest::Client,
    accepting: reqwest::Client,
    global: Arc<Semaphore>,
}

impl Scraper {
    pub fn new(settings: HttpSettings) -> Result<Scraper, RedfishError> {
        let mut roots = Vec::new();
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|source| RedfishError::File {
                path: path.display().to_string(),
                source,
            })?;
            roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                RedfishError::Client {
                    source: format!("{}: {}", path.display(), metal_core::error_chain(&source))
                        .into(),
                }
            })?;
            if roots.is_empty() {
                return Err(RedfishError::Client {
                    source: format!("{} holds no PEM certificate", path.display()).into(),
                });
            }
        }
        Ok(Scraper {
            verifying: http_client(&settings, settings.insecure_tls, &roots)?,
            accepting: http_client(&settings, true, &roots)?,
            global: Arc::new(Semaphore::new(settings.global_concurrency.max(1))),
            settings,
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// A logged-in client for one BMC, sharing this scraper's HTTP clients and global cap
    /// (no deadline of its own: callers bound it). [`BmcClient::logout`] when done.
    pub async fn connect(&self, target: Target<'_>) -> Result<BmcClient, RedfishError> {
        if let Some(reason) = refusal(target.base_url, &self.settings.allowed_networks) {
            return Err(RedfishError::NotAllowed {
                url: target.base_url.to_string(),
                reason,
            });
        }
        let http = if target.insecure_tls {
            self.accepting.clone()
        } else {
            self.verifying.clone()
        };
        let client = BmcClient::new(
            target.base_url,
            self.settings.clone(),
            http,
            Some(self.global.clone()),
        )?;
        client
            .login(target.credentials.cloned())
            .await
            .map_err(|error| explain_missing_credentials(error, target))
    }

    /// Logs in, walks the inventory and logs out, all within the scrape deadline (the
    /// logout gets one request timeout of its own, so a session is not left behind).
    pub async fn scrape(&self, target: Target<'_>) -> Result<Walked, RedfishError> {
        let settings = &self.settings;
        let started = Instant::now();
        let deadline_error = || RedfishError::Deadline {
            deadline_ms: settings.scrape_deadline.as_millis(),
        };
        let client = tokio::time::timeout(settings.scrape_deadline, self.connect(target))
            .await
            .map_err(|_| deadline_error())??;
        let remaining = settings.scrape_deadline.saturating_sub(started.elapsed());
        let limits = WalkLimits {
            max_resources: settings.max_resources,
            concurrency: settings.concurrency(),
            use_expand: settings.use_expand,
        };
        let result = match tokio::time::timeout(remaining, walk(&client, limits)).await {
            Ok(result) => result,
            Err(_) => Err(deadline_error()),
        };
        client.logout().await;
        result.map_err(|error| explain_missing_credentials(error, target))
    }
}

/// Why a BMC at `base_url` may not be dialled with these allowed networks (empty: anywhere),
/// or `None`. Only the host counts: redirects stay on the host (see [`http_client`]).
pub fn refusal(base_url: &str, allowed: &[Network]) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    let url = match Url::parse(base_url) {
        Ok(url) => url,
        Err(error) => return Some(format!("not a URL ({error})")),
    };
    let address = match url.host() {
        Some(url::Host::Ipv4(address)) => std::net::IpAddr::V4(address),
        Some(url::Host::Ipv6(address)) => std::net::IpAddr::V6(address),
        Some(url::Host::Domain(name)) => {
            return Some(format!(
                "{name:?} is a host name; with redfish.allowed_networks set, BMCs are dialled by IP address only"
            ))
        }
        None => return Some("the URL names no host".to_string()),
    };
    if allowed.iter().any(|network| network.contains(address)) {
        return None;
    }
    let listed: Vec<String> = allowed.iter().map(Network::to_string).collect();
    Some(format!(
        "{address} is outside redfish.allowed_networks ({})",
        listed.join(", ")
    ))
}

/// An authentication failure of a target without credentials is
/// [`RedfishError::NoCredentials`], saying why there are none; other errors pass as they are.
pub fn explain_missing_credentials(error: RedfishError, target: Target<'_>) -> RedfishError {
    match (error, target.credentials) {
        (RedfishError::Auth { status, .. }, None) => RedfishError::NoCredentials {
            reason: format!(
                "the BMC asks for credentials (HTTP {status}) and none are configured: {}",
                target
                    .no_credentials_reason
                    .unwrap_or("no password is configured for it")
            ),
        },
        (error, _) => error,
    }
}

/// Logs in with `credentials`, walks and logs out: [`Scraper::scrape`] for one BMC.
pub async fn scrape(
    base_url: &str,
    credentials: &Credentials,
    settings: &HttpSettings,
) -> Result<Walked, RedfishError> {
    Scraper::new(settings.clone())?
        .scrape(Target {
            base_url,
            credentials: Some(credentials),
            no_credentials_reason: None,
            insecure_tls: settings.insecure_tls,
        })
        .await
}

fn http_client(
    settings: &HttpSettings,
    accept_any_certificate: bool,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, RedfishError> {
    let max_redirects = settings.max_redirects;
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        let same_host = attempt.url().host_str() == first.host_str()
            && attempt.url().port_or_known_default() == first.port_or_known_default();
        if attempt.previous().len() > max_redirects {
            attempt.error(format!("more than {max_redirects} redirects"))
        } else if !same_host {
            let target = attempt.url().clone();
            attempt.error(format!(
                "redirect to another host refused ({})",
                target.host_str().unwrap_or("no host")
            ))
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .redirect(redirect)
        .danger_accept_invalid_certs(accept_any_certificate)
        .connect_timeout(settings.request_timeout)
        // A walk reuses its connections back to back; idle ones are closed soon after, so a
        // fleet of scraped BMCs does not hold four sockets each for long.
        .pool_idle_timeout(Duration::from_secs(2))
        .user_agent(concat!("metal-redfish-scraper/", env!("CARGO_PKG_VERSION")));
    for root in roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder.build().map_err(|source| RedfishError::Client {
        source: Box::new(source),
    })
}

/// How requests are authenticated.
enum Auth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    Session {
        token: Secret,
        location: Option<Url>,
    },
}

/// The current authentication and how many logins produced it.
struct AuthState {
    auth: Auth,
    generation: u64,
}

/// A client for one BMC. Implements [`RedfishSource`].
pub struct BmcClient {
    http: reqwest::Client,
    base: Url,
    settings: HttpSettings,
    auth: RwLock<AuthState>,
    credentials: Option<Credentials>,
    relogin: tokio::sync::Mutex<()>,
    relogins: AtomicU32,
    permits: Semaphore,
    global: Option<Arc<Semaphore>>,
    /// The ETag of each resource read that had one (header, else `@odata.etag`), by URL: a
    /// PATCH sends it as `If-Match`.
    etags: Mutex<HashMap<String, String>>,
}

/// A response whose body was read within the size cap (of an error answer, its first
/// [`ERROR_BODY_BYTES`]).
struct Reply {
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl BmcClient {
    /// A client without credentials yet; [`BmcClient::login`] is the usual way in.
    pub fn new(
        base_url: &str,
        settings: HttpSettings,
        http: reqwest::Client,
        global: Option<Arc<Semaphore>>,
    ) -> Result<BmcClient, RedfishError> {
        let mut base = Url::parse(base_url).map_err(|error| RedfishError::Protocol {
            url: base_url
                .split('@')
                .next_back()
                .unwrap_or_default()
                .to_string(),
            reason: format!("not a valid Redfish base URL: {error}"),
        })?;
        // Credentials never travel in the URL (and so never into an error message).
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(RedfishError::Protocol {
                url: base.to_string(),
                reason: "Redfish base URL must be http(s)://host[:port]".to_string(),
            });
        }
        let permits = Semaphore::new(settings.concurrency());
        Ok(BmcClient {
            http,
            base,
            settings,
            auth: RwLock::new(AuthState {
                auth: Auth::None,
                generation: 0,
            }),
            credentials: None,
            relogin: tokio::sync::Mutex::new(()),
            relogins: AtomicU32::new(0),
            permits,
            global,
            etags: Mutex::new(HashMap::new()),
        })
    }

    /// A client with its own HTTP client and no global cap (tests, tools).
    pub fn standalone(base_url: &str, settings: HttpSettings) -> Result<BmcClient, RedfishError> {
        let http = http_client(&settings, settings.insecure_tls, &[])?;
        BmcClient::new(base_url, settings, http, None)
    }

    /// Opens a Redfish session (the service root's `Links.Sessions`, else the standard
    /// path); falls back to basic auth when the service offers no sessions, and to no
    /// authentication at all without credentials.
    pub async fn login(
        mut self,
        credentials: Option<Credentials>,
    ) -> Result<BmcClient, RedfishError> {
        let Some(credentials) = credentials else {
            tracing::debug!(bmc = %self.base, "no credentials: reading anonymously");
            return Ok(self);
        };
        self.credentials = Some(credentials.clone());
        let auth = self.authenticate(&credentials).await?;
        self.set_auth(auth);
        Ok(self)
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Auth, RedfishError> {
        // The service root is readable without credentials on a conforming service.
        let sessions_path = match self.get_json_once(SERVICE_ROOT, false).await {
            Ok(Some(root)) => root
                .get("Links")
                .and_then(|links| links.get("Sessions"))
                .and_then(|s| s.get("@odata.id"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    root.get("SessionService")
                        .map(|_| SESSIONS_PATH.to_string())
                }),
            Ok(None) => {
                return Err(RedfishError::Protocol {
                    url: self.base.to_string(),
                    reason: "no Redfish service root".to_string(),
                })
            }
            Err(RedfishError::Auth { .. }) => Some(SESSIONS_PATH.to_string()),
            Err(error) => return Err(error),
        };
        if let Some(path) = sessions_path {
            if let Some(session) = self.create_session(&path, credentials).await? {
                tracing::debug!(bmc = %self.base, "redfish session opened");
                return Ok(session);
            }
        }
        tracing::debug!(bmc = %self.base, "no redfish sessions offered, using basic auth");
        Ok(Auth::Basic {
            username: credentials.username.clone(),
            password: credentials.password.clone(),
        })
    }

    fn set_auth(&self, auth: Auth) {
        let mut state = self.auth.write().unwrap_or_else(|e| e.into_inner());
        state.auth = auth;
        state.generation += 1;
    }

    fn generation(&self) -> u64 {
        self.auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// `"session"`, `"basic"` or `"none"`.
    pub fn auth_method(&self) -> &'static str {
        match self.auth.read().unwrap_or_else(|e| e.into_inner()).auth {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Session { .. } => "session",
        }
    }

    /// Logins after the first.
    pub fn relogins(&self) -> u32 {
        self.relogins.load(Ordering::SeqCst)
    }

    /// Deletes the session, if there is one. Best effort: one try, bounded by the request timeout.
    pub async fn logout(self) {
        let location = match &self.auth.read().unwrap_or_else(|e| e.into_inner()).auth {
            Auth::Session {
                location: Some(location),
                ..
            } => location.clone(),
            _ => return,
        };
        // Through the caps like every other request: a fleet finishing at once must not
        // burst its logouts past them.
        let request = self.authorise(self.http.request(Method::DELETE, location.clone()));
        match self.send_once(&location, request).await {
            Ok(reply) => {
                tracing::debug!(bmc = %self.base, status = %reply.status, "redfish session closed")
            }
            Err(error) => {
                tracing::debug!(bmc = %self.base, error = %metal_core::error_chain(&error), "session logout failed")
            }
        }
    }

    async fn create_session(
        &self,
        path: &str,
        credentials: &Credentials,
    ) -> Result<Option<Auth>, RedfishError> {
        let url = self.url_for(path)?;
        let body = serde_json::json!({
            "UserName": credentials.username,
            "Password": credentials.password.expose(),
        });
        let reply = self
            .send_with_retries(&url, || {
                self.http.request(Method::POST, url.clone()).json(&body)
            })
            .await?;
        match reply.status {
            status if status.is_success() => {
                let Some(token) = reply
                    .headers
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
                else {
                    return Ok(None);
                };
                let location = reply
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| {
                        serde_json::from_slice::<Value>(&reply.body)
                            .ok()
                            .and_then(|b| {
                                b.get("@odata.id")
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                    })
                    .and_then(|l| reply.url.join(&l).ok())
                    .filter(|l| self.same_host(l));
                Ok(Some(Auth::Session {
                    token: Secret::new(token.to_string()),
                    location,
                }))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RedfishError::Auth {
                url: url.to_string(),
                status: reply.status.as_u16(),
            }),
            status if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED => {
                Err(RedfishError::ServerError {
                    url: url.to_string(),
                    status: status.as_u16(),
                })
            }
            // 404, 405, 501 and friends: this service does not offer sessions here.
            _ => Ok(None),
        }
    }

    /// GETs a resource as JSON: `None` for 404 (and 405/410/501), errors otherwise. A
    /// session the BMC stops accepting (401) is renewed once per scrape and the GET
    /// tried again.
    pub async fn get_json(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        let generation = self.generation();
        match self.get_json_once(path, true).await {
            Err(RedfishError::Auth { status: 401, .. }) if self.credentials.is_some() => {
                self.renew_session(generation).await?;
                self.get_json_once(path, true).await
            }
            result => result,
        }
    }

    /// Logs in again after a 401 seen with auth `generation`, unless another request
    /// already did; at most [`MAX_RELOGINS`] times.
    async fn renew_session(&self, generation: u64) -> Result<(), RedfishError> {
        let _one_at_a_time = self.relogin.lock().await;
        if self.generation() != generation {
            return Ok(());
        }
        let is_session = matches!(
            self.auth.read().unwrap_or_else(|e| e.into_inner()).auth,
            Auth::Session { .. }
        );
        let Some(credentials) = self.credentials.as_ref().filter(|_| is_session) else {
            return Ok(());
        };
        if self.relogins.fetch_add(1, Ordering::SeqCst) >= MAX_RELOGINS {
            return Ok(());
        }
        tracing::debug!(bmc = %self.base, "redfish session expired, logging in again");
        let auth = self.authenticate(credentials).await?;
        self.set_auth(auth);
        Ok(())
    }

    /// PATCHes `body` onto a resource, with `If-Match` when reading it gave an ETag; a
    /// precondition failure (412, 428) reads the resource again for a fresh ETag and tries
    /// once more. Retried like a GET (a PATCH is idempotent). Returns the answer's JSON body,
    /// if it has one.
    pub async fn patch_json(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<Option<Value>, RedfishError> {
        self.write_json(Method::PATCH, path, body).await
    }

    /// POSTs `body` (an action). Sent once: an answer lost to a timeout may have been acted
    /// on, so only the caller, having read the state again, may decide to repeat it. Returns
    /// the answer's JSON body, if it has one.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Option<Value>, RedfishError> {
        self.write_json(Method::POST, path, body).await
    }

    /// A PATCH or POST with the same authentication as a GET and one re-login on 401. A
    /// non-2xx answer is [`RedfishError::Rejected`] with the BMC's message (401 stays
    /// [`RedfishError::Auth`]).
    async fn write_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Option<Value>, RedfishError> {
        let url = self.url_for(path)?;
        let patch = method == Method::PATCH;
        let mut relogged = false;
        let mut refreshed = false;
        loop {
            let generation = self.generation();
            let make = || {
                let mut request = self
                    .authorise(self.http.request(method.clone(), url.clone()))
                    .json(body);
                if let Some(etag) = patch.then(|| self.etag_for(&url)).flatten() {
                    request = request.header(IF_MATCH, etag);
                }
                request
            };
            let reply = if patch {
                self.send_with_retries(&url, make).await?
            } else {
                self.send_once(&url, make()).await?
            };
            let status = reply.status;
            tracing::debug!(bmc = %self.base, %method, url = %url, %status, "redfish write answered");
            if status.is_success() {
                if patch {
                    // The resource changed: its old ETag is stale.
                    self.remember_etag(&url, etag_of(&reply.headers, None));
                }
                return Ok(serde_json::from_slice(&reply.body).ok());
            }
            match status {
                StatusCode::UNAUTHORIZED if self.credentials.is_some() && !relogged => {
                    relogged = true;
                    self.renew_session(generation).await?;
                }
                StatusCode::PRECONDITION_FAILED | StatusCode::PRECONDITION_REQUIRED
                    if patch && !refreshed =>
                {
                    refreshed = true;
                    tracing::debug!(bmc = %self.base, url = %url, %status, "ETag refused, reading the resource again");
                    self.get_json(path).await?;
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(RedfishError::Auth {
                        url: reply.url.to_string(),
                        status: status.as_u16(),
                    })
                }
                _ => {
                    return Err(RedfishError::Rejected {
                        url: reply.url.to_string(),
                        status: status.as_u16(),
                        message: redfish_error_message(&reply.body)
                            .unwrap_or_else(|| "the BMC gave no error message".to_string()),
                    })
                }
            }
        }
    }

    fn remember_etag(&self, url: &Url, etag: Option<String>) {
        let mut etags = self.etags.lock().unwrap_or_else(|e| e.into_inner());
        match etag {
            Some(etag) => {
                etags.insert(url.to_string(), etag);
            }
            None => {
                etags.remove(url.as_str());
            }
        }
    }

    fn etag_for(&self, url: &Url) -> Option<HeaderValue> {
        let etags = self.etags.lock().unwrap_or_else(|e| e.into_inner());
        etags
            .get(url.as_str())
            .and_then(|etag| HeaderValue::from_str(etag).ok())
    }

    async fn get_json_once(
        &self,
        path: &str,
        authorised: bool,
    ) -> Result<Option<Value>, RedfishError> {
        let url = self.url_for(path)?;
        let reply = self
            .send_with_retries(&url, || {
                let request = self.http.request(Method::GET, url.clone());
                if authorised {
                    self.authorise(request)
                } else {
                    request
                }
            })
            .await?;
        let status = reply.status;
        let url_text = || reply.url.to_string();
        if status.is_success() {
            let value: Value = serde_json::from_slice(&reply.body).map_err(|source| {
                RedfishError::InvalidJson {
                    url: url_text(),
                    source,
                }
            })?;
            self.remember_etag(&url, etag_of(&reply.headers, Some(&value)));
            return Ok(Some(value));
        }
        match status {
            StatusCode::NOT_FOUND
            | StatusCode::GONE
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RedfishError::Auth {
                url: url_text(),
                status: status.as_u16(),
            }),
            status if status.is_server_error() => Err(RedfishError::ServerError {
                url: url_text(),
                status: status.as_u16(),
            }),
            status => Err(RedfishError::Protocol {
                url: url_text(),
                reason: format!("unexpected HTTP {status}"),
            }),
        }
    }

    fn authorise(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth.read().unwrap_or_else(|e| e.into_inner()).auth {
            Auth::None => request,
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            Auth::Session { token, .. } => match HeaderValue::from_str(token.expose()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request.header("X-Auth-Token", value)
                }
                Err(_) => request,
            },
        }
    }

    fn same_host(&self, url: &Url) -> bool {
        url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Resolves an `@odata.id` as written against the BMC; links to other hosts are refused.
    fn url_for(&self, path: &str) -> Result<Url, RedfishError> {
        let url = self
            .base
            .join(path)
            .map_err(|error| RedfishError::Protocol {
                url: self.base.to_string(),
                reason: format!("link {path:?} is not a valid path: {error}"),
            })?;
        if !self.same_host(&url) {
            return Err(RedfishError::Protocol {
                url: url.to_string(),
                reason: "link points to another host".to_string(),
            });
        }
        Ok(url)
    }

    /// Sends a request, retrying 5xx answers, timeouts and connection errors with backoff.
    async fn send_with_retries(
        &self,
        url: &Url,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, RedfishError> {
        let mut attempt: u32 = 0;
        loop {
            let result = self.send_once(url, make()).await;
            let retryable = match &result {
                Ok(reply) => {
                    reply.status.is_server_error() && reply.status != StatusCode::NOT_IMPLEMENTED
                }
                Err(error) => error.is_transient(),
            };
            if !retryable || attempt >= self.settings.retries {
                return result;
            }
            let delay = self
                .settings
                .backoff
                .saturating_mul(1u32 << attempt.min(10))
                .min(Duration::from_secs(10));
            tracing::debug!(url = %url, attempt, ?delay, "retrying redfish request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One request within the request timeout, holding one of the BMC's permits.
    async fn send_once(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, RedfishError> {
        let closed = || RedfishError::Protocol {
            url: url.to_string(),
            reason: "client is shutting down".to_string(),
        };
        // The BMC's own permit first, so a BMC at its cap holds no global permit waiting.
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let _global = match &self.global {
            Some(global) => Some(global.acquire().await.map_err(|_| closed())?),
            None => None,
        };
        let started = std::time::Instant::now();
        let result =
            match tokio::time::timeout(self.settings.request_timeout, self.exchange(url, request))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(RedfishError::Timeout {
                    url: url.to_string(),
                }),
            };
        let outcome = match &result {
            Ok(reply) if reply.status.is_success() => "ok",
            Ok(reply) if reply.status.is_redirection() => "3xx",
            Ok(reply) if reply.status.is_client_error() => "4xx",
            Ok(_) => "5xx",
            Err(RedfishError::Timeout { .. }) => "timeout",
            Err(RedfishError::Unreachable { .. }) => "unreachable",
            Err(RedfishError::TooLarge { .. }) => "too_large",
            Err(_) => "error",
        };
        metrics::histogram!(metal_core::metrics::REDFISH_SECONDS, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn exchange(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, RedfishError> {
        let mut response = request
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|error| classify(url, error))?;
        let status = response.status();
        let final_url = response.url().clone();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        if !status.is_success() {
            // Enough of an error answer for its message; a BMC cannot make us read more.
            let limit = ERROR_BODY_BYTES.min(self.settings.max_response_bytes);
            while let Ok(Some(chunk)) = response.chunk().await {
                let room = usize::try_from(limit).unwrap_or(usize::MAX) - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() as u64 >= limit {
                    break;
                }
            }
        } else {
            let limit = self.settings.max_response_bytes;
            let too_large = || RedfishError::TooLarge {
                url: final_url.to_string(),
                limit,
            };
            if response
                .content_length()
                .is_some_and(|length| length > limit)
            {
                return Err(too_large());
            }
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|error| classify(url, error))?
            {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
        }
        Ok(Reply {
            url: final_url,
            status,
            headers,
            body,
        })
    }
}

/// A resource's ETag: the header, else the body's `@odata.etag`.
fn etag_of(headers: &HeaderMap, body: Option<&Value>) -> Option<String> {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            body.and_then(|b| b.get("@odata.etag"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|etag| !etag.is_empty())
}

/// What a Redfish error body says: the `Message` of each `error.@Message.ExtendedInfo[]`,
/// else `error.message`, else a non-JSON body's text (sushy-tools answers in plain text);
/// printable and bounded.
pub fn redfish_error_message(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let error = value.get("error");
            let extended: Vec<&str> = error
                .and_then(|e| e.get("@Message.ExtendedInfo"))
                .and_then(Value::as_array)
                .map(|infos| {
                    infos
                        .iter()
                        .filter_map(|info| info.get("Message").and_then(Value::as_str))
                        .filter(|m| !m.trim().is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if extended.is_empty() {
                error
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)?
                    .to_string()
            } else {
                extended.join("; ")
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = printable(&text, MAX_MESSAGE_CHARS);
    (!text.is_empty()).then_some(text)
}

fn classify(url: &Url, error: reqwest::Error) -> RedfishError {
    let url = url.to_string();
    if error.is_timeout() {
        RedfishError::Timeout { url }
    } else if error.is_redirect() {
        RedfishError::Protocol {
            url,
            reason: format!("redirect refused: {}", metal_core::error_chain(&error)),
        }
    } else if error.is_builder() {
        RedfishError::Protocol {
            url,
            reason: format!("cannot build request: {}", metal_core::error_chain(&error)),
        }
    } else {
        RedfishError::Unreachable {
            url,
            source: Box::new(error),
        }
    }
}

impl RedfishSource for BmcClient {
    async fn get(&self, path: &str) -> Result<Option<Value>, RedfishError> {
        self.get_json(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ip_addresses_inside_the_allowed_networks_are_dialled() {
        let allowed: Vec<Network> = ["10.20.0.0/16", "fd00::/8"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(
            refusal("https://192.0.2.1", &[]),
            None,
            "none listed: anywhere"
        );
        assert_eq!(refusal("https://10.20.3.4:8443", &allowed), None);
        assert_eq!(refusal("https://[fd00::5]", &allowed), None);
        assert_eq!(
            refusal("https://127.0.0.1:8000", &allowed).as_deref(),
            Some("127.0.0.1 is outside redfish.allowed_networks (10.20.0.0/16, fd00::/8)")
        );
        // The URL parser's reading of the host is what would be dialled.
        assert!(refusal("http://0x7f.1/", &allowed)
            .unwrap()
            .starts_with("127.0.0.1 is outside"));
        assert!(
            refusal("https://[::ffff:10.20.0.1]", &allowed).is_none(),
            "IPv4-mapped"
        );
        assert!(refusal("https://bmc-7.example", &allowed)
            .unwrap()
            .contains("is a host name"));
        assert!(refusal("not a url", &allowed)
            .unwrap()
            .starts_with("not a URL"));
    }

    #[test]
    fn redfish_error_messages() {
        let body = serde_json::json!({"error": {
        "code": "Base.1.8.GeneralError",
        "message": "A general error has occurred. See ExtendedInfo for more information.",
        "@Message.ExtendedInfo": [
            {"MessageId": "Base.1.8.PropertyValueNotInList",
             "Message": "The value Pxe for the property BootSourceOverrideTarget is not in the list of acceptable values."},
            {"MessageId": "Base.1.8.Other", "Message": " "},
            {"MessageId": "Base.1.8.Success", "Message": "Second."}
        ]}});
        assert_eq!(
            redfish_error_message(body.to_string().as_bytes()).as_deref(),
            Some("The value Pxe for the property BootSourceOverrideTarget is not in the list of acceptable values.; Second.")
        );
        let plain = serde_json::json!({"error": {"code": "X", "message": "Busy"}});
        assert_eq!(
            redfish_error_message(plain.to_string().as_bytes()).as_deref(),
            Some("Busy")
        );
        // sushy-tools answers in plain text.
        assert_eq!(
            redfish_error_message(b"PATCH only works for Boot and IndicatorLED elements")
                .as_deref(),
            Some("PATCH only works for Boot and IndicatorLED elements")
        );
        assert_eq!(redfish_error_message(b""), None);
        assert_eq!(redfish_error_message(b"{\"other\": 1}"), None);
        let hostile = format!("line one\nINFO forged{}", "x".repeat(10_000));
        let message = redfish_error_message(hostile.as_bytes()).unwrap();
        assert!(!message.contains('\n'));
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn etags_come_from_the_header_else_the_body() {
        let mut headers = HeaderMap::new();
        let body = serde_json::json!({"@odata.etag": "W/\"body\""});
        assert_eq!(
            etag_of(&headers, Some(&body)).as_deref(),
            Some("W/\"body\"")
        );
        headers.insert(ETAG, HeaderValue::from_static("\"header\""));
        assert_eq!(
            etag_of(&headers, Some(&body)).as_deref(),
            Some("\"header\"")
        );
        assert_eq!(etag_of(&HeaderMap::new(), None), None);
    }
}
