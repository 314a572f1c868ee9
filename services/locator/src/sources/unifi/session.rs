//! One controller's HTTP side: telling classic from UniFi OS, one shared login (cookies,
//! CSRF token kept current from every answer), log in again once on a 401, never a login
//! while a 429 or a refused login is being backed off, the API key for the Integration API,
//! bounded bodies and timeouts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use metal_core::config::{Secret, UnifiFlavour};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

use super::api::{self, Failure, LoginOutcome, Reply};
use super::tls::Trust;
use super::UnifiError;

/// Timeout of one request to a controller.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest body read from a controller: a client list this big is refused with a reason
/// rather than held in memory.
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// After a refused login (wrong password, 2FA), no login is tried for this long, so a
/// burst of lookups never hammers the controller's login (and its lockout).
pub const LOGIN_FAILURE_BACKOFF: Duration = Duration::from_secs(60);

/// The API a controller speaks, once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Classic,
    UnifiOs,
    Integration,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Classic => "classic",
            Api::UnifiOs => "unifios",
            Api::Integration => "integration",
        }
    }

    /// Where the Network application's legacy paths start.
    fn legacy_prefix(self) -> &'static str {
        match self {
            Api::UnifiOs | Api::Integration => "/proxy/network",
            Api::Classic => "",
        }
    }
}

/// How the locator proves who it is.
pub enum Credentials {
    Account { username: String, password: Secret },
    ApiKey(Secret),
}

#[derive(Debug, Clone)]
struct Session {
    generation: u64,
    cookies: BTreeMap<String, String>,
    csrf: Option<String>,
}

#[derive(Default)]
struct LoginGate {
    generation: u64,
    /// No login before this instant, and the failure that said so.
    blocked: Option<(Instant, Failure)>,
}

/// The HTTP side of one controller, shared by every lookup.
pub struct ControllerHttp {
    name: String,
    base: Url,
    configured: UnifiFlavour,
    client: reqwest::Client,
    credentials: Credentials,
    /// Settled once: by the config, or by one probe that every first lookup waits for.
    api: tokio::sync::OnceCell<Api>,
    session: Mutex<Option<Session>>,
    login_gate: tokio::sync::Mutex<LoginGate>,
    logins: std::sync::atomic::AtomicU64,
}

impl ControllerHttp {
    pub fn new(
        name: &str,
        url: &str,
        configured: UnifiFlavour,
        credentials: Credentials,
        trust: &Trust,
    ) -> Result<ControllerHttp, UnifiError> {
        let bad_url = |reason: String| UnifiError::Url {
            name: name.to_string(),
            url: redact_userinfo(url),
            reason,
        };
        let mut base = Url::parse(url.trim()).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad_url("must be https://host[:port]".into()));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad_url(
                "must not hold credentials; use username and password_env".into(),
            ));
        }
        base.set_path("");
        base.set_query(None);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("metal-locator/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = trust.client_config().map_err(|source| UnifiError::Tls {
            name: name.to_string(),
            source,
        })? {
            builder = builder.use_preconfigured_tls(tls);
        }
        let client = builder.build().map_err(|e| UnifiError::Tls {
            name: name.to_string(),
            source: super::tls::TlsError::Setup(e.to_string()),
        })?;
        let api = match configured {
            UnifiFlavour::Auto => None,
            UnifiFlavour::Classic => Some(Api::Classic),
            UnifiFlavour::Unifios => Some(Api::UnifiOs),
            UnifiFlavour::Integration => Some(Api::Integration),
        };
        Ok(ControllerHttp {
            name: name.to_string(),
            base,
            configured,
            client,
            credentials,
            api: tokio::sync::OnceCell::new_with(api),
            session: Mutex::new(None),
            login_gate: tokio::sync::Mutex::new(LoginGate::default()),
            logins: Default::default(),
        })
    }

    /// Logins made so far (for logs and tests).
    pub fn logins(&self) -> u64 {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The API this controller speaks; `auto` is settled by one probe of `GET /`.
    pub async fn api(&self) -> Result<Api, Failure> {
        self.api.get_or_try_init(|| self.probe()).await.copied()
    }

    async fn probe(&self) -> Result<Api, Failure> {
        let reply = self.send(self.client.get(self.url("/")?)).await?;
        let api = match reply.status {
            200 => Api::UnifiOs,
            300..=399 => Api::Classic,
            status @ 500..=599 => return Err(Failure::Unavailable { status }),
            status => {
                return Err(Failure::Api {
                    status,
                    message: "cannot tell a classic controller from UniFi OS (GET / answers neither 200 nor a redirect); set flavour".into(),
                })
            }
        };
        tracing::info!(controller = %self.name, configured = self.configured.as_str(), api = api.as_str(), "UniFi flavour probed");
        Ok(api)
    }

    /// GET of a Network application path (`/api/s/...`, `/integration/v1/...`): the
    /// prefix, authentication and one re-login on a 401 are taken care of.
    pub async fn get(&self, path: &str) -> Result<Reply, Failure> {
        let api = self.api().await?;
        let url = self.url(&format!("{}{path}", api.legacy_prefix()))?;
        if let Credentials::ApiKey(key) = &self.credentials {
            return self
                .send(self.client.get(url).header("X-API-KEY", key.expose()))
                .await;
        }
        let session = self.session(api).await?;
        let reply = self.send_in(&session, url.clone()).await?;
        if !needs_login(&reply) {
            return Ok(reply);
        }
        tracing::info!(controller = %self.name, "UniFi session expired; logging in again");
        self.invalidate(session.generation);
        let session = self.session(api).await?;
        self.send_in(&session, url).await
    }

    fn url(&self, path: &str) -> Result<Url, Failure> {
        self.base
            .join(path)
            .map_err(|e| Failure::Transport(format!("cannot build a URL for {path}: {e}")))
    }

    fn current(&self) -> Option<Session> {
        lock(&self.session).clone()
    }

    fn invalidate(&self, generation: u64) {
        let mut session = lock(&self.session);
        if session.as_ref().is_some_and(|s| s.generation == generation) {
            *session = None;
        }
    }

    /// The shared session, logging in when there is none: one login at a time, and none
    /// while a rate limit or a refused login is being backed off.
    async fn session(&self, api: Api) -> Result<Session, Failure> {
        if let Some(session) = self.current() {
            return Ok(session);
        }
        let mut gate = self.login_gate.lock().await;
        if let Some(session) = self.current() {
            return Ok(session);
        }
        if let Some((until, failure)) = &gate.blocked {
            if Instant::now() < *until {
                return Err(failure.clone());
            }
            gate.blocked = None;
        }
        match self.login(api).await {
            Ok((cookies, csrf)) => {
                gate.generation += 1;
                let session = Session {
                    generation: gate.generation,
                    cookies,
                    csrf,
                };
                *lock(&self.session) = Some(session.clone());
                self.logins
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(controller = %self.name, api = api.as_str(), "logged in to UniFi");
                Ok(session)
            }
            Err(failure) => {
                let backoff = match &failure {
                    Failure::RateLimited { retry_after, .. } => Some(*retry_after),
                    failure if failure.is_permanent() => Some(LOGIN_FAILURE_BACKOFF),
                    _ => None,
                };
                if let Some(backoff) = backoff {
                    gate.blocked = Some((Instant::now() + backoff, failure.clone()));
                }
                tracing::warn!(controller = %self.name, error = %failure, "UniFi login failed");
                Err(failure)
            }
        }
    }

    async fn login(&self, api: Api) -> Result<(BTreeMap<String, String>, Option<String>), Failure> {
        let Credentials::Account { username, password } = &self.credentials else {
            return Err(Failure::Transport("no account to log in with".into()));
        };
        let path = match api {
            Api::Classic => "/api/login",
            Api::UnifiOs | Api::Integration => "/api/auth/login",
        };
        let body = serde_json::json!({
            "username": username,
            "password": password.expose(),
            "rememberMe": true,
        });
        let response = self
            .client
            .post(self.url(path)?)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let headers = response.headers().clone();
        let reply = self.counted("login", read(response).await)?;
        match api::login(&reply, username, OffsetDateTime::now_utc()) {
            LoginOutcome::Accepted => {}
            LoginOutcome::Refused(failure) => return Err(failure),
        }
        let mut cookies = BTreeMap::new();
        absorb_cookies(&mut cookies, &headers);
        let csrf = csrf_header(&headers)
            .or_else(|| cookies.get("TOKEN").and_then(|t| api::csrf_from_jwt(t)));
        let wanted = match api {
            Api::Classic => "unifises",
            _ => "TOKEN",
        };
        if !cookies.contains_key(wanted) {
            return Err(Failure::Api {
                status: reply.status,
                message: format!("the login was accepted but set no {wanted} cookie"),
            });
        }
        if api == Api::UnifiOs && csrf.is_none() {
            return Err(Failure::Api {
                status: reply.status,
                message: "the login was accepted but gave no CSRF token".into(),
            });
        }
        Ok((cookies, csrf))
    }

    /// Sends with the session's cookies and CSRF token, and keeps both current from the
    /// answer (UniFi OS rotates the token).
    async fn send_in(&self, session: &Session, url: Url) -> Result<Reply, Failure> {
        let mut request = self.client.get(url);
        if !session.cookies.is_empty() {
            let cookie = session
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(COOKIE, cookie);
        }
        let csrf = session
            .csrf
            .clone()
            .or_else(|| session.cookies.get("csrf_token").cloned());
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        let response = match request.send().await.map_err(transport) {
            Ok(response) => response,
            Err(failure) => return self.counted("read", Err(failure)),
        };
        {
            let mut stored = lock(&self.session);
            if let Some(stored) = stored.as_mut() {
                if stored.generation == session.generation {
                    absorb_cookies(&mut stored.cookies, response.headers());
                    if let Some(token) = csrf_header(response.headers()) {
                        stored.csrf = Some(token);
                    }
                }
            }
        }
        self.counted("read", read(response).await)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply, Failure> {
        let reply = match request.send().await.map_err(transport) {
            Ok(response) => read(response).await,
            Err(failure) => Err(failure),
        };
        self.counted("read", reply)
    }

    /// Counts a request to this controller by what it was for and how it ended.
    fn counted(
        &self,
        request: &'static str,
        reply: Result<Reply, Failure>,
    ) -> Result<Reply, Failure> {
        let outcome = match &reply {
            Ok(reply) if (200..300).contains(&reply.status) => "ok",
            Ok(reply) if reply.status < 500 => "4xx",
            Ok(_) => "5xx",
            Err(Failure::Transport(_)) => "unreachable",
            Err(_) => "error",
        };
        metrics::counter!(
            metal_core::metrics::UNIFI_REQUESTS,
            "controller" => self.name.clone(),
            "request" => request,
            "outcome" => outcome
        )
        .increment(1);
        reply
    }
}

/// A URL as it may be shown: anything between `://` and `@` is someone's credentials.
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}***{}", &url[..start + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A 401, or a legacy envelope that says the login is required.
fn needs_login(reply: &Reply) -> bool {
    reply.status == 401
        || (reply.body.len() < 512
            && String::from_utf8_lossy(&reply.body).contains("api.err.LoginRequired"))
}

fn csrf_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-updated-csrf-token")
        .or_else(|| headers.get("x-csrf-token"))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn absorb_cookies(cookies: &mut BTreeMap<String, String>, headers: &HeaderMap) {
    for header in headers.get_all(SET_COOKIE) {
        let Some((name, value)) = header.to_str().ok().and_then(api::set_cookie) else {
            continue;
        };
        match value {
            Some(value) => {
                cookies.insert(name, value);
            }
            None => {
                cookies.remove(&name);
            }
        }
    }
}

/// Reads an answer, refusing bodies over [`MAX_BODY_BYTES`] as they stream in.
async fn read(mut response: reqwest::Response) -> Result<Reply, Failure> {
    let too_large = Failure::TooLarge {
        limit: MAX_BODY_BYTES,
    };
    if response.content_length().unwrap_or(0) > MAX_BODY_BYTES {
        return Err(too_large);
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let retry_after = header(RETRY_AFTER);
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() as u64 + chunk.len() as u64 > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        content_type: content_type.chars().take(100).collect(),
        retry_after,
        body,
    })
}

/// A transport error in words, with TLS problems told apart (they need an operator).
fn transport(error: reqwest::Error) -> Failure {
    let chain = metal_core::error_chain(&error);
    // The rustls error may sit behind connector layers that hide it from `source()`;
    // its own words ("invalid peer certificate") are then what is left to go by.
    if is_tls(&error) || chain.contains("peer certificate") {
        return Failure::Tls(chain);
    }
    if error.is_timeout() {
        return Failure::Transport(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()));
    }
    Failure::Transport(chain)
}

fn is_tls(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_required_is_told_by_status_or_envelope() {
        let reply = |status, body: &[u8]| Reply {
            status,
            content_type: String::new(),
            retry_after: None,
            body: body.to_vec(),
        };
        assert!(needs_login(&reply(401, b"")));
        assert!(needs_login(&reply(
            200,
            br#"{"meta":{"rc":"error","msg":"api.err.LoginRequired"},"data":[]}"#
        )));
        assert!(!needs_login(&reply(
            200,
            br#"{"meta":{"rc":"ok"},"data":[]}"#
        )));
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        let error = ControllerHttp::new(
            "core",
            "https://admin:hunter2@127.0.0.1:8443",
            UnifiFlavour::Classic,
            Credentials::ApiKey(Secret::new("k".into())),
            &Trust::Insecure,
        )
        .err()
        .unwrap();
        let text = error.to_string();
        assert!(text.contains("must not hold credentials"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
