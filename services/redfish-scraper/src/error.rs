//! The one error type of the Redfish boundary.

use metal_core::events::ScrapeFailureKind;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why talking to a BMC failed. URLs in messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: BoxError,
    },
    #[error("request to {url} timed out")]
    Timeout { url: String },
    #[error("scrape did not finish within its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u128 },
    #[error("{url} answered HTTP {status}")]
    ServerError { url: String, status: u16 },
    #[error("{url} refused the credentials (HTTP {status})")]
    Auth { url: String, status: u16 },
    /// A PATCH or POST the BMC answered with an error status; `message` is what its Redfish
    /// error body says (printable, bounded), or a note that it said nothing.
    #[error("{url} refused the request with HTTP {status}: {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },
    #[error("response from {url} is not valid JSON")]
    InvalidJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("response from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("scrape needs more than {limit} resources (the cap was reached reading {at})")]
    TooManyResources { limit: usize, at: String },
    #[error("no credentials: {reason}")]
    NoCredentials { reason: String },
    /// Refused before dialling: the BMC's address is outside `redfish.allowed_networks`.
    #[error("{url} not dialled: {reason}")]
    NotAllowed { url: String, reason: String },
    #[error("cannot keep the scrape: {reason}")]
    Storage { reason: String },
    #[error("cannot build the HTTP client")]
    Client {
        #[source]
        source: BoxError,
    },
    #[error("cannot read mockup file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RedfishError {
    /// The failure kind reported in `machine.scrape.failed`.
    pub fn kind(&self) -> ScrapeFailureKind {
        match self {
            RedfishError::Unreachable { .. } | RedfishError::ServerError { .. } => {
                ScrapeFailureKind::Unreachable
            }
            RedfishError::Timeout { .. } | RedfishError::Deadline { .. } => {
                ScrapeFailureKind::Timeout
            }
            RedfishError::Auth { .. } => ScrapeFailureKind::Auth,
            RedfishError::Rejected { status, .. } if is_busy(*status) => {
                ScrapeFailureKind::Unreachable
            }
            RedfishError::Rejected { .. } => ScrapeFailureKind::Protocol,
            RedfishError::InvalidJson { .. }
            | RedfishError::Protocol { .. }
            | RedfishError::Client { .. }
            | RedfishError::Storage { .. }
            | RedfishError::File { .. } => ScrapeFailureKind::Protocol,
            RedfishError::TooLarge { .. } | RedfishError::TooManyResources { .. } => {
                ScrapeFailureKind::TooLarge
            }
            RedfishError::NoCredentials { .. } => ScrapeFailureKind::NoCredentials,
            RedfishError::NotAllowed { .. } => ScrapeFailureKind::NotAllowed,
        }
    }

    /// Whether trying again later could succeed (a busy, rebooting or unreachable BMC),
    /// as opposed to an answer that will be the same next time.
    pub fn is_transient(&self) -> bool {
        match self {
            RedfishError::Rejected { status, .. } => is_busy(*status),
            _ => matches!(
                self,
                RedfishError::Unreachable { .. }
                    | RedfishError::Timeout { .. }
                    | RedfishError::Deadline { .. }
                    | RedfishError::ServerError { .. }
                    | RedfishError::Storage { .. }
            ),
        }
    }
}

/// A 5xx other than 501: the BMC could not do it now, not "never".
fn is_busy(status: u16) -> bool {
    (500..600).contains(&status) && status != 501
}

/// Text from a BMC made fit for an event or a log line: control characters (and Unicode
/// line separators and direction overrides) escaped (`\\n`, `\\u{1b}`), so it cannot forge
/// lines, and at most `max_chars` characters of the result kept, then `…`.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut length = 0;
    for c in text.trim().chars() {
        let escape = c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        let piece: String = if escape {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let width = piece.chars().count();
        if length + width > max_chars {
            out.push('…');
            break;
        }
        length += width;
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_bounds() {
        assert_eq!(printable("  ok  ", 10), "ok");
        assert_eq!(printable("a\nb\u{1b}[31m", 20), "a\\nb\\u{1b}[31m");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("\u{202e}gnp.exe", 20), "\\u{202e}gnp.exe");
    }

    #[test]
    fn rejections_are_transient_only_when_the_bmc_is_busy() {
        let rejected = |status| RedfishError::Rejected {
            url: "u".into(),
            status,
            message: "m".into(),
        };
        assert!(!rejected(400).is_transient());
        assert!(!rejected(501).is_transient());
        assert!(rejected(503).is_transient());
        assert_eq!(
            rejected(400).to_string(),
            "u refused the request with HTTP 400: m"
        );
    }
}
