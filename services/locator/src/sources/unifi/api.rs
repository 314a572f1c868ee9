//! Pure reading of what UniFi controllers answer: the legacy `{meta, data}` envelope,
//! Integration API pages and errors, client objects, `Retry-After`, cookies and the
//! CSRF token in a UniFi OS TOKEN. No I/O, so every shape is table-tested.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use metal_core::Mac;
use serde_json::Value;
use time::OffsetDateTime;

/// `Retry-After` when a 429 carries none, and the bounds a given one is clamped to
/// (what unpoller does).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Why a controller call did not give an answer. Messages are for operators and never
/// contain a password, an API key or a session token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("the session is missing or expired (HTTP {status})")]
    LoginRequired { status: u16 },
    #[error("wrong user name or password for account {username:?} ({detail})")]
    WrongCredentials { username: String, detail: String },
    #[error("the API key was refused (HTTP {status}{code})")]
    KeyRefused { status: u16, code: String },
    #[error("the account {username:?} needs two-factor authentication ({detail}); use a local account without 2FA/MFA, or an API key with flavour = \"integration\"")]
    TwoFactor { username: String, detail: String },
    #[error("rate-limited by the controller ({detail}); not asking again for {} s", retry_after.as_secs())]
    RateLimited {
        retry_after: Duration,
        detail: String,
    },
    #[error("the account may not read this ({detail})")]
    NoPermission { detail: String },
    #[error("unknown site {site:?} ({detail})")]
    UnknownSite { site: String, detail: String },
    #[error("answered {content_type} instead of JSON (HTTP {status}): not a UniFi API, or the controller is still starting up")]
    NotJson { status: u16, content_type: String },
    #[error("answered an error (HTTP {status}): {message}")]
    Api { status: u16, message: String },
    #[error("is unavailable (HTTP {status})")]
    Unavailable { status: u16 },
    #[error("sent a body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Transport(String),
}

impl Failure {
    /// Asking again cannot help until an operator acts.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Failure::WrongCredentials { .. }
                | Failure::KeyRefused { .. }
                | Failure::TwoFactor { .. }
                | Failure::NoPermission { .. }
                | Failure::UnknownSite { .. }
                | Failure::Tls(_)
        )
    }
}

/// One client as a controller lists it, reduced to what locating needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    pub mac: Mac,
    /// The current address (`ip`, `ipAddress`); absent for some clients.
    pub ip: Option<IpAddr>,
    /// The DHCP reservation, only when `use_fixedip` is true.
    pub fixed_ip: Option<IpAddr>,
    /// The last address seen (known clients, some offline active entries).
    pub last_ip: Option<IpAddr>,
    pub last_seen: Option<OffsetDateTime>,
}

/// A parsed client list: entries by MAC, and how many objects were unusable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientList {
    pub by_mac: HashMap<Mac, Vec<ClientEntry>>,
    pub clients: usize,
    pub unusable: usize,
}

impl ClientList {
    fn push(&mut self, entry: ClientEntry) {
        self.clients += 1;
        self.by_mac.entry(entry.mac).or_default().push(entry);
    }

    pub fn extend(&mut self, other: ClientList) {
        self.clients += other.clients;
        self.unusable += other.unusable;
        for (mac, entries) in other.by_mac {
            self.by_mac.entry(mac).or_default().extend(entries);
        }
    }

    pub fn get(&self, mac: &Mac) -> &[ClientEntry] {
        self.by_mac.get(mac).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A response as read off the wire (body already capped).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|_| Failure::NotJson {
            status: self.status,
            content_type: if self.content_type.is_empty() {
                "a body that is not JSON".to_string()
            } else {
                self.content_type.clone()
            },
        })
    }
}

/// The legacy envelope's error message (`meta.msg`) when `meta.rc` is not `ok`.
fn envelope_error(value: &Value) -> Option<String> {
    let meta = value.get("meta")?;
    match meta.get("rc").and_then(Value::as_str) {
        Some("ok") => None,
        _ => Some(
            meta.get("msg")
                .and_then(Value::as_str)
                .unwrap_or("rc is not ok")
                .to_string(),
        ),
    }
}

/// Maps a legacy `api.err.*` message (with its HTTP status) to a failure.
fn legacy_failure(status: u16, msg: &str, site: &str) -> Failure {
    match msg {
        "api.err.LoginRequired" => Failure::LoginRequired { status },
        "api.err.NoPermission" => Failure::NoPermission {
            detail: msg.to_string(),
        },
        "api.err.NoSiteContext" | "api.err.InvalidSite" => Failure::UnknownSite {
            site: site.to_string(),
            detail: msg.to_string(),
        },
        _ => Failure::Api {
            status,
            message: msg.chars().take(200).collect(),
        },
    }
}

/// Status codes every call treats alike, before looking at the body.
fn status_failure(reply: &Reply, now: OffsetDateTime) -> Option<Failure> {
    match reply.status {
        429 => Some(Failure::RateLimited {
            retry_after: retry_after(reply.retry_after.as_deref(), now),
            detail: reply_detail(reply),
        }),
        502..=504 => Some(Failure::Unavailable {
            status: reply.status,
        }),
        _ => None,
    }
}

/// A short, safe description of an error body: its code/message fields, never the raw bytes.
fn reply_detail(reply: &Reply) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(&reply.body) else {
        return format!("HTTP {}", reply.status);
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    let detail = field("code")
        .or_else(|| field("message"))
        .or_else(|| envelope_error(&value))
        .unwrap_or_default();
    let detail: String = detail.chars().take(200).collect();
    if detail.is_empty() {
        format!("HTTP {}", reply.status)
    } else {
        format!("HTTP {}, {detail}", reply.status)
    }
}

/// Reads a legacy list answer (`stat/sta`, `rest/user`).
pub fn legacy_list(reply: &Reply, site: &str, now: OffsetDateTime) -> Result<ClientList, Failure> {
    if let Some(failure) = status_failure(reply, now) {
        return Err(failure);
    }
    let value = reply.json()?;
    if let Some(msg) = envelope_error(&value) {
        return Err(legacy_failure(reply.status, &msg, site));
    }
    match reply.status {
        200 => {}
        401 => return Err(Failure::LoginRequired { status: 401 }),
        403 => {
            return Err(Failure::NoPermission {
                detail: reply_detail(reply),
            })
        }
        404 => {
            return Err(Failure::UnknownSite {
                site: site.to_string(),
                detail: reply_detail(reply),
            })
        }
        500..=599 => {
            return Err(Failure::Unavailable {
                status: reply.status,
            })
        }
        status => {
            return Err(Failure::Api {
                status,
                message: reply_detail(reply),
            })
        }
    }
    let Some(items) = value.get("data").and_then(Value::as_array) else {
        return Err(Failure::Api {
            status: reply.status,
            message: "the answer has no data list".into(),
        });
    };
    let mut list = ClientList::default();
    for item in items {
        match legacy_client(item) {
            Some(entry) => list.push(entry),
            None => list.unusable += 1,
        }
    }
    Ok(list)
}

fn ip_field(item: &Value, name: &str) -> Option<IpAddr> {
    item.get(name)?.as_str()?.trim().parse().ok()
}

fn legacy_client(item: &Value) -> Option<ClientEntry> {
    let mac = Mac::parse_any(item.get("mac")?.as_str()?).ok()?;
    let use_fixed = item
        .get("use_fixedip")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(ClientEntry {
        mac,
        ip: ip_field(item, "ip"),
        fixed_ip: use_fixed.then(|| ip_field(item, "fixed_ip")).flatten(),
        last_ip: ip_field(item, "last_ip"),
        last_seen: item
            .get("last_seen")
            .and_then(Value::as_i64)
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
    })
}

/// One Integration API page of clients or sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: T,
    pub offset: u64,
    pub count: u64,
    pub total: u64,
}

impl<T> Page<T> {
    /// The offset of the next page, if there is one.
    pub fn next_offset(&self) -> Option<u64> {
        let next = self.offset.saturating_add(self.count);
        (self.count > 0 && next < self.total).then_some(next)
    }
}

/// An Integration API site: its id and the names it may be configured by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub internal_reference: String,
}

impl Site {
    /// A configured site matches by id, legacy name (`internalReference`) or name.
    pub fn matches(&self, wanted: &str) -> bool {
        self.id.eq_ignore_ascii_case(wanted)
            || self.internal_reference == wanted
            || self.name == wanted
    }
}

/// Status handling shared by Integration calls (errors keyed off the HTTP status, as
/// the API documents, not off the body).
fn integration_status(reply: &Reply, site: &str, now: OffsetDateTime) -> Result<Value, Failure> {
    if let Some(failure) = status_failure(reply, now) {
        return Err(failure);
    }
    let code = || {
        serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string))
            .map(|c| format!(", {}", c.chars().take(100).collect::<String>()))
            .unwrap_or_default()
    };
    match reply.status {
        200 => reply.json(),
        401 => Err(Failure::KeyRefused {
            status: 401,
            code: code(),
        }),
        403 => Err(Failure::NoPermission {
            detail: reply_detail(reply),
        }),
        404 => Err(Failure::UnknownSite {
            site: site.to_string(),
            detail: reply_detail(reply),
        }),
        500..=599 => Err(Failure::Unavailable {
            status: reply.status,
        }),
        status => {
            // A body that is not JSON at all says more than its status.
            reply.json()?;
            Err(Failure::Api {
                status,
                message: reply_detail(reply),
            })
        }
    }
}

fn page_numbers(value: &Value) -> Result<(u64, u64, u64, &Vec<Value>), Failure> {
    let number = |name: &str| value.get(name).and_then(Value::as_u64);
    let data = value.get("data").and_then(Value::as_array);
    match (
        number("offset"),
        number("count"),
        number("totalCount"),
        data,
    ) {
        (Some(offset), Some(count), Some(total), Some(data)) => Ok((offset, count, total, data)),
        _ => Err(Failure::Api {
            status: 200,
            message: "the answer is not a page (offset, count, totalCount, data)".into(),
        }),
    }
}

/// Reads an Integration `GET /v1/sites/{id}/clients` page. Connected clients only; they are
/// seen as of `now` (the API gives when they connected, not when they were last seen).
pub fn integration_clients(
    reply: &Reply,
    site: &str,
    now: OffsetDateTime,
) -> Result<Page<ClientList>, Failure> {
    let value = integration_status(reply, site, now)?;
    let (offset, count, total, data) = page_numbers(&value)?;
    let mut list = ClientList::default();
    for item in data {
        let mac = item
            .get("macAddress")
            .and_then(Value::as_str)
            .and_then(|m| Mac::parse_any(m).ok());
        match mac {
            Some(mac) => list.push(ClientEntry {
                mac,
                ip: ip_field(item, "ipAddress"),
                fixed_ip: None,
                last_ip: None,
                last_seen: Some(now),
            }),
            None => list.unusable += 1,
        }
    }
    Ok(Page {
        items: list,
        offset,
        count,
        total,
    })
}

/// Reads an Integration `GET /v1/sites` page.
pub fn integration_sites(reply: &Reply, now: OffsetDateTime) -> Result<Page<Vec<Site>>, Failure> {
    let value = integration_status(reply, "", now)?;
    let (offset, count, total, data) = page_numbers(&value)?;
    let text = |item: &Value, name: &str| {
        item.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let sites = data
        .iter()
        .filter(|item| item.get("id").and_then(Value::as_str).is_some())
        .map(|item| Site {
            id: text(item, "id"),
            name: text(item, "name"),
            internal_reference: text(item, "internalReference"),
        })
        .collect();
    Ok(Page {
        items: sites,
        offset,
        count,
        total,
    })
}

/// What a login answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Accepted,
    Refused(Failure),
}

/// Reads a login answer (classic `/api/login`, UniFi OS `/api/auth/login`).
pub fn login(reply: &Reply, username: &str, now: OffsetDateTime) -> LoginOutcome {
    if let Some(failure) = status_failure(reply, now) {
        return LoginOutcome::Refused(failure);
    }
    let two_factor = |detail: String| Failure::TwoFactor {
        username: username.to_string(),
        detail,
    };
    if reply.status == 499 {
        return LoginOutcome::Refused(two_factor("HTTP 499, MFA required".into()));
    }
    let value = match reply.json() {
        Ok(value) => value,
        Err(failure) => return LoginOutcome::Refused(failure),
    };
    let message = envelope_error(&value)
        .or_else(|| {
            value
                .get("code")
                .or_else(|| value.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let lowered = message.to_ascii_lowercase();
    if lowered.contains("2fa") || lowered.contains("mfa") || lowered.contains("twofactor") {
        return LoginOutcome::Refused(two_factor(message));
    }
    match reply.status {
        200..=299 if envelope_error(&value).is_none() => LoginOutcome::Accepted,
        400 | 401 | 403 | 200..=299 => LoginOutcome::Refused(Failure::WrongCredentials {
            username: username.to_string(),
            detail: if message.is_empty() {
                format!("HTTP {}", reply.status)
            } else {
                format!(
                    "HTTP {}, {}",
                    reply.status,
                    message.chars().take(100).collect::<String>()
                )
            },
        }),
        500..=599 => LoginOutcome::Refused(Failure::Unavailable {
            status: reply.status,
        }),
        status => LoginOutcome::Refused(Failure::Api {
            status,
            message: reply_detail(reply),
        }),
    }
}

/// `Retry-After` as seconds or an HTTP date, clamped to 1 s – 5 min; 60 s when absent
/// or unreadable.
pub fn retry_after(header: Option<&str>, now: OffsetDateTime) -> Duration {
    let Some(text) = header.map(str::trim) else {
        return DEFAULT_RETRY_AFTER;
    };
    let wait = if let Ok(seconds) = text.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(date) =
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822)
    {
        Duration::try_from(date - now).unwrap_or(Duration::ZERO)
    } else {
        return DEFAULT_RETRY_AFTER;
    };
    wait.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// The `name=value` of one `Set-Cookie` header; `None` for a cookie being deleted.
pub fn set_cookie(header: &str) -> Option<(String, Option<String>)> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let value = value.trim().trim_matches('"');
    let deleted = value.is_empty()
        || parts.any(|attribute| {
            let attribute = attribute.trim().to_ascii_lowercase();
            attribute == "max-age=0" || attribute.starts_with("max-age=-")
        });
    Some((name.to_string(), (!deleted).then(|| value.to_string())))
}

/// The `csrfToken` claim of a UniFi OS TOKEN (a JWT), used when the login answer carries
/// no `X-CSRF-Token` header (what Art-of-WiFi's client does).
pub fn csrf_from_jwt(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value
        .get("csrfToken")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = test_harness::paths::shared_dir()
            .join("unifi/fixtures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn reply(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            content_type: "application/json".into(),
            retry_after: None,
            body: body.to_vec(),
        }
    }

    fn mac(text: &str) -> Mac {
        Mac::parse_any(text).unwrap()
    }

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    #[test]
    fn classic_active_clients_with_every_ip_rule() {
        let list = legacy_list(
            &reply(200, &fixture("classic-stat-sta.json")),
            "default",
            NOW,
        )
        .unwrap();
        assert_eq!(list.clients, 4);
        let bmc = &list.get(&mac("02:00:5e:10:00:02"))[0];
        assert_eq!(bmc.ip, Some("198.51.100.17".parse().unwrap()));
        assert_eq!(bmc.fixed_ip, None);
        assert_eq!(bmc.last_seen.unwrap().unix_timestamp(), 1717000010);
        let idrac = &list.get(&mac("02:00:5e:10:00:03"))[0];
        assert_eq!(idrac.fixed_ip, Some("198.51.100.30".parse().unwrap()));
        let no_ip = &list.get(&mac("02:00:5e:10:00:04"))[0];
        assert_eq!(no_ip.ip, None);
        assert_eq!(no_ip.last_ip, Some("192.0.2.44".parse().unwrap()));
    }

    #[test]
    fn classic_known_clients() {
        let list = legacy_list(
            &reply(200, &fixture("classic-rest-user.json")),
            "default",
            NOW,
        )
        .unwrap();
        let idrac = &list.get(&mac("02:00:5e:10:00:03"))[0];
        assert_eq!(idrac.fixed_ip, Some("198.51.100.30".parse().unwrap()));
        assert_eq!(idrac.ip, None);
        let offline = &list.get(&mac("02:00:5e:10:00:05"))[0];
        assert_eq!(offline.fixed_ip, None, "use_fixedip is false");
        assert_eq!(offline.last_ip, Some("198.51.100.19".parse().unwrap()));
    }

    #[test]
    fn legacy_errors() {
        let empty = legacy_list(
            &reply(200, &fixture("classic-stat-sta-empty.json")),
            "x",
            NOW,
        )
        .unwrap();
        assert_eq!(empty.clients, 0);
        assert_eq!(
            legacy_list(
                &reply(401, &fixture("classic-login-required.json")),
                "x",
                NOW
            ),
            Err(Failure::LoginRequired { status: 401 })
        );
        assert_eq!(
            legacy_list(&reply(401, b""), "x", NOW)
                .unwrap_err()
                .to_string(),
            Failure::NotJson {
                status: 401,
                content_type: "application/json".into()
            }
            .to_string()
        );
        let unknown = legacy_list(
            &reply(400, &fixture("classic-no-site-context.json")),
            "lab",
            NOW,
        )
        .unwrap_err();
        assert!(matches!(unknown, Failure::UnknownSite { ref site, .. } if site == "lab"));
        assert!(unknown.is_permanent());
        let no_permission = legacy_list(
            &reply(
                200,
                br#"{"meta":{"rc":"error","msg":"api.err.NoPermission"},"data":[]}"#,
            ),
            "x",
            NOW,
        )
        .unwrap_err();
        assert!(matches!(no_permission, Failure::NoPermission { .. }));
        let html = Reply {
            content_type: "text/html".into(),
            ..reply(200, b"<html>starting</html>")
        };
        assert!(matches!(
            legacy_list(&html, "x", NOW),
            Err(Failure::NotJson { status: 200, .. })
        ));
        let limited = Reply {
            retry_after: Some("7".into()),
            ..reply(429, b"{}")
        };
        assert!(matches!(
            legacy_list(&limited, "x", NOW),
            Err(Failure::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(7)
        ));
        assert!(matches!(
            legacy_list(&reply(503, b"<html/>"), "x", NOW),
            Err(Failure::Unavailable { status: 503 })
        ));
        // Items that are not client objects are counted, not fatal.
        let odd = legacy_list(
            &reply(200, br#"{"meta":{"rc":"ok"},"data":[1,{"mac":"zz"},{"mac":"02:00:5e:10:00:09","ip":"not an ip"}]}"#),
            "x",
            NOW,
        )
        .unwrap();
        assert_eq!((odd.clients, odd.unusable), (1, 2));
        assert_eq!(odd.get(&mac("02:00:5e:10:00:09"))[0].ip, None);
    }

    #[test]
    fn logins() {
        assert_eq!(
            login(&reply(200, &fixture("classic-login-ok.json")), "metal", NOW),
            LoginOutcome::Accepted
        );
        assert_eq!(
            login(&reply(200, &fixture("unifios-login-ok.json")), "metal", NOW),
            LoginOutcome::Accepted
        );
        let LoginOutcome::Refused(wrong) = login(
            &reply(400, &fixture("classic-login-invalid.json")),
            "metal",
            NOW,
        ) else {
            panic!("accepted a wrong password");
        };
        assert!(matches!(wrong, Failure::WrongCredentials { .. }));
        assert!(wrong.to_string().contains("api.err.Invalid"));
        for (status, name) in [
            (400, "classic-login-2fa-required.json"),
            (499, "unifios-login-sso-mfa-499.json"),
        ] {
            let LoginOutcome::Refused(failure) =
                login(&reply(status, &fixture(name)), "metal", NOW)
            else {
                panic!("{name} accepted");
            };
            assert!(
                matches!(failure, Failure::TwoFactor { .. }),
                "{name}: {failure:?}"
            );
            assert!(failure.to_string().contains("API key"), "{failure}");
        }
        let limited = Reply {
            retry_after: Some("120".into()),
            ..reply(429, &fixture("unifios-login-rate-limited.json"))
        };
        let LoginOutcome::Refused(failure) = login(&limited, "metal", NOW) else {
            panic!("429 accepted");
        };
        assert_eq!(
            failure,
            Failure::RateLimited {
                retry_after: Duration::from_secs(120),
                detail: "HTTP 429, AUTHENTICATION_FAILED_LIMIT_REACHED".into()
            }
        );
        let html = Reply {
            content_type: "text/html".into(),
            ..reply(200, b"<!doctype html>")
        };
        assert!(matches!(
            login(&html, "metal", NOW),
            LoginOutcome::Refused(Failure::NotJson { .. })
        ));
    }

    #[test]
    fn integration_pages_and_errors() {
        let first = integration_clients(
            &reply(200, &fixture("integration-clients-page1.json")),
            "s",
            NOW,
        )
        .unwrap();
        assert_eq!(first.next_offset(), Some(2));
        assert_eq!(first.items.clients, 2);
        let second = integration_clients(
            &reply(200, &fixture("integration-clients-page2.json")),
            "s",
            NOW,
        )
        .unwrap();
        assert_eq!(second.next_offset(), None);
        let no_ip = &second.items.get(&mac("02:00:5e:10:00:04"))[0];
        assert_eq!(no_ip.ip, None);
        assert_eq!(no_ip.last_seen, Some(NOW));
        let empty = integration_clients(
            &reply(200, &fixture("integration-clients-empty.json")),
            "s",
            NOW,
        )
        .unwrap();
        assert_eq!(empty.next_offset(), None);
        let refused = integration_clients(
            &reply(401, &fixture("integration-error-401.json")),
            "s",
            NOW,
        )
        .unwrap_err();
        assert!(refused.is_permanent());
        assert!(refused.to_string().contains("missing-credentials"));
        assert!(matches!(
            integration_clients(
                &reply(404, &fixture("integration-error-404.json")),
                "s",
                NOW
            ),
            Err(Failure::UnknownSite { .. })
        ));
        let sites =
            integration_sites(&reply(200, &fixture("integration-sites.json")), NOW).unwrap();
        assert!(sites.items[0].matches("default"));
        assert!(sites.items[0].matches("Default"));
        assert!(sites.items[0].matches("5F1C2D3E-0000-4000-8000-0000000051E1"));
        assert!(!sites.items[0].matches("lab"));
        assert!(integration_sites(&reply(200, b"{\"data\":[]}"), NOW).is_err());
    }

    #[test]
    fn retry_after_forms() {
        let now = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap(); // 1994-11-06 08:49:37
        assert_eq!(retry_after(None, now), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(Some("0"), now), Duration::from_secs(1));
        assert_eq!(retry_after(Some("86400"), now), Duration::from_secs(300));
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Duration::from_secs(30)
        );
        assert_eq!(retry_after(Some("soon"), now), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn cookies_and_csrf() {
        assert_eq!(
            set_cookie("unifises=abc; Path=/; Secure; HttpOnly"),
            Some(("unifises".into(), Some("abc".into())))
        );
        assert_eq!(
            set_cookie("TOKEN=; Max-Age=0; path=/"),
            Some(("TOKEN".into(), None))
        );
        assert_eq!(set_cookie("garbage"), None);
        let headers = String::from_utf8(fixture("unifios-login-ok.headers.txt")).unwrap();
        let token = headers
            .lines()
            .find_map(|l| l.strip_prefix("Set-Cookie: TOKEN="))
            .and_then(|v| v.split(';').next())
            .unwrap();
        assert_eq!(
            csrf_from_jwt(token).as_deref(),
            Some("3f1b2c4d-0000-4000-8000-000000000c5f")
        );
        assert_eq!(csrf_from_jwt("not.a-jwt"), None);
    }
}
