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
            RedfishError::InvalidJson { .. }
            | RedfishError::Protocol { .. }
            | RedfishError::Client { .. }
            | RedfishError::Storage { .. }
            | RedfishError::File { .. } => ScrapeFailureKind::Protocol,
            RedfishError::TooLarge { .. } | RedfishError::TooManyResources { .. } => {
                ScrapeFailureKind::TooLarge
            }
            RedfishError::NoCredentials { .. } => ScrapeFailureKind::NoCredentials,
        }
    }

    /// Whether trying again later could succeed (a busy, rebooting or unreachable BMC),
    /// as opposed to an answer that will be the same next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RedfishError::Unreachable { .. }
                | RedfishError::Timeout { .. }
                | RedfishError::Deadline { .. }
                | RedfishError::ServerError { .. }
                | RedfishError::Storage { .. }
        )
    }
}
