//! The responder: `machine.bmc.located` in, `machine.hardware.scraped` or
//! `machine.scrape.failed` out. [`plan`] and [`decide`] are pure (time is passed in);
//! [`ScrapeHandler`] does the scrape between them.

use std::sync::Arc;
use std::time::Duration;

use metal_core::config::{Credentials, RedfishConfig};
use metal_core::envelope::{Decoded, Envelope};
use metal_core::events::{BmcLocated, HardwareScraped, ScrapeFailed, ScrapeFailureKind};
use metal_core::inventory::Inventory;
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::{subjects, Mac};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::error::RedfishError;
use crate::http::{scrape, HttpSettings};

/// What to do with one input, before any I/O.
#[derive(Debug)]
pub enum Plan {
    /// Not ours (another type, a malformed message): ack and move on.
    Ignore,
    /// Answer at once with `machine.scrape.failed`, no scrape.
    Fail {
        cause: Envelope,
        redfish_url: String,
        kind: ScrapeFailureKind,
        reason: String,
    },
    Scrape {
        cause: Envelope,
        redfish_url: String,
        credentials: Credentials,
    },
}

/// Reads the input and finds the BMC's credentials.
pub fn plan(input: &Input, credentials_for: impl Fn(&Mac) -> Result<Credentials, String>) -> Plan {
    let Decoded::Event(cause) = &input.decoded else {
        return Plan::Ignore;
    };
    if cause.event_type != subjects::BMC_LOCATED {
        return Plan::Ignore;
    }
    let located: BmcLocated = match cause.data_as() {
        Ok(located) => located,
        Err(error) => {
            return Plan::Fail {
                cause: cause.clone(),
                redfish_url: String::new(),
                kind: ScrapeFailureKind::Protocol,
                reason: metal_core::error_chain(&error),
            }
        }
    };
    let Some(bmc_mac) = cause.bmc_mac else {
        return Plan::Fail {
            cause: cause.clone(),
            redfish_url: located.redfish_url,
            kind: ScrapeFailureKind::NoCredentials,
            reason: "event names no BMC MAC to look credentials up by".to_string(),
        };
    };
    match credentials_for(&bmc_mac) {
        Ok(credentials) => Plan::Scrape {
            cause: cause.clone(),
            redfish_url: located.redfish_url,
            credentials,
        },
        Err(reason) => Plan::Fail {
            cause: cause.clone(),
            redfish_url: located.redfish_url,
            kind: ScrapeFailureKind::NoCredentials,
            reason,
        },
    }
}

/// Turns a scrape result into the outcome: the inventory, a retry (transient failure, not
/// the last delivery) or `machine.scrape.failed`.
pub fn decide(
    input: &Input,
    cause: &Envelope,
    redfish_url: &str,
    result: Result<Inventory, RedfishError>,
    now: OffsetDateTime,
) -> Outcome {
    match result {
        Ok(inventory) => publish(
            cause,
            subjects::HARDWARE_SCRAPED,
            &HardwareScraped {
                redfish_url: redfish_url.to_string(),
                inventory,
            },
            now,
        ),
        Err(error) if error.is_transient() && !input.is_last_attempt() => Outcome::Retry {
            reason: metal_core::error_chain(&error),
            delay: retry_delay(input.delivery_attempt),
        },
        Err(error) => failed(
            input,
            cause,
            redfish_url,
            error.kind(),
            metal_core::error_chain(&error),
            now,
        ),
    }
}

/// `machine.scrape.failed` for this input.
pub fn failed(
    input: &Input,
    cause: &Envelope,
    redfish_url: &str,
    kind: ScrapeFailureKind,
    reason: String,
    now: OffsetDateTime,
) -> Outcome {
    publish(
        cause,
        subjects::SCRAPE_FAILED,
        &ScrapeFailed {
            redfish_url: redfish_url.to_string(),
            kind,
            reason,
            attempts: u32::try_from(input.delivery_attempt).unwrap_or(u32::MAX),
        },
        now,
    )
}

/// Redelivery delay after the given (1-based) attempt: 5 s, 10 s, 20 s, ... at most 60 s.
pub fn retry_delay(delivery_attempt: u64) -> Duration {
    let exponent = delivery_attempt.saturating_sub(1).min(4) as u32;
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(60))
}

fn publish<D: serde::Serialize>(
    cause: &Envelope,
    event_type: &str,
    data: &D,
    now: OffsetDateTime,
) -> Outcome {
    match Envelope::answering(cause, event_type, data, now) {
        Ok(event) => Outcome::Publish(vec![event]),
        Err(error) => {
            // Encoding our own types cannot fail in practice; do not loop on it.
            tracing::error!(error = %metal_core::error_chain(&error), "cannot build {event_type} event");
            Outcome::Publish(Vec::new())
        }
    }
}

/// The scraper's [`Handler`]: at most `global_concurrency` scrapes at once.
pub struct ScrapeHandler {
    config: RedfishConfig,
    settings: HttpSettings,
    scrapes: Arc<Semaphore>,
}

impl ScrapeHandler {
    pub fn new(config: RedfishConfig) -> ScrapeHandler {
        let settings = HttpSettings::from_config(&config);
        ScrapeHandler::with_settings(config, settings)
    }

    /// With explicit HTTP settings (tests use short timeouts and backoff).
    pub fn with_settings(config: RedfishConfig, settings: HttpSettings) -> ScrapeHandler {
        let scrapes = Arc::new(Semaphore::new(config.global_concurrency.max(1)));
        ScrapeHandler {
            config,
            settings,
            scrapes,
        }
    }
}

impl Handler for ScrapeHandler {
    async fn handle(&self, input: Input) -> Outcome {
        let (cause, redfish_url, credentials) =
            match plan(&input, |mac| self.config.credentials_for(mac)) {
                Plan::Ignore => return Outcome::Publish(Vec::new()),
                Plan::Fail {
                    cause,
                    redfish_url,
                    kind,
                    reason,
                } => {
                    tracing::warn!(%redfish_url, ?kind, %reason, "scrape not attempted");
                    return failed(
                        &input,
                        &cause,
                        &redfish_url,
                        kind,
                        reason,
                        OffsetDateTime::now_utc(),
                    );
                }
                Plan::Scrape {
                    cause,
                    redfish_url,
                    credentials,
                } => (cause, redfish_url, credentials),
            };
        let result = {
            let _permit = self.scrapes.acquire().await;
            tracing::info!(%redfish_url, attempt = input.delivery_attempt, "scraping BMC");
            scrape(&redfish_url, &credentials, &self.settings).await
        };
        match &result {
            Ok(inventory) => tracing::info!(
                %redfish_url,
                systems = inventory.systems.len(),
                firmware = inventory.firmware.len(),
                "scraped BMC"
            ),
            Err(error) => tracing::warn!(
                %redfish_url,
                kind = ?error.kind(),
                transient = error.is_transient(),
                error = %metal_core::error_chain(error),
                "scrape failed"
            ),
        }
        decide(
            &input,
            &cause,
            &redfish_url,
            result,
            OffsetDateTime::now_utc(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metal_core::config::Secret;
    use metal_core::MachineId;

    fn located(bmc_mac: Option<Mac>) -> Envelope {
        Envelope {
            event_id: uuid::Uuid::nil(),
            event_type: subjects::BMC_LOCATED.to_string(),
            machine_id: bmc_mac.as_ref().map(MachineId::from_bmc_mac),
            bmc_mac,
            time: OffsetDateTime::UNIX_EPOCH,
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            data: serde_json::to_value(BmcLocated {
                bmc_ip: None,
                redfish_url: "http://127.0.0.1:1".to_string(),
                source: "static".to_string(),
                ..Default::default()
            })
            .unwrap(),
        }
    }

    fn input(event: Envelope, delivery_attempt: u64) -> Input {
        Input {
            decoded: Decoded::Event(event),
            sequence: 1,
            delivery_attempt,
            max_deliver: 3,
        }
    }

    fn mac() -> Mac {
        Mac::parse_any("aa:bb:cc:dd:ee:01").unwrap()
    }

    fn creds(_: &Mac) -> Result<Credentials, String> {
        Ok(Credentials {
            username: "root".into(),
            password: Secret::new("pw".into()),
        })
    }

    fn published_type(outcome: &Outcome) -> Vec<String> {
        match outcome {
            Outcome::Publish(events) => events.iter().map(|e| e.event_type.clone()).collect(),
            Outcome::Retry { .. } => vec!["retry".to_string()],
        }
    }

    #[test]
    fn plans() {
        assert!(matches!(
            plan(&input(located(Some(mac())), 1), creds),
            Plan::Scrape { .. }
        ));
        assert!(matches!(
            plan(&input(located(Some(mac())), 1), |_| Err(
                "no password".to_string()
            )),
            Plan::Fail {
                kind: ScrapeFailureKind::NoCredentials,
                ..
            }
        ));
        assert!(matches!(
            plan(&input(located(None), 1), creds),
            Plan::Fail {
                kind: ScrapeFailureKind::NoCredentials,
                ..
            }
        ));
        let mut other = located(Some(mac()));
        other.event_type = subjects::HARDWARE_SCRAPED.to_string();
        assert!(matches!(plan(&input(other, 1), creds), Plan::Ignore));
        let malformed = Input {
            decoded: Decoded::Malformed {
                subject: "machine.x".into(),
                reason: "bad".into(),
            },
            sequence: 1,
            delivery_attempt: 1,
            max_deliver: 3,
        };
        assert!(matches!(plan(&malformed, creds), Plan::Ignore));
        let mut bad_data = located(Some(mac()));
        bad_data.data = serde_json::json!({"nope": 1});
        assert!(matches!(
            plan(&input(bad_data, 1), creds),
            Plan::Fail {
                kind: ScrapeFailureKind::Protocol,
                ..
            }
        ));
    }

    #[test]
    fn decisions() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cause = located(Some(mac()));
        let timeout = || RedfishError::Timeout { url: "u".into() };
        let auth = || RedfishError::Auth {
            url: "u".into(),
            status: 401,
        };
        let check = |attempt: u64, result: Result<Inventory, RedfishError>, expected: &str| {
            let input = input(cause.clone(), attempt);
            let outcome = decide(&input, &cause, "http://bmc", result, now);
            assert_eq!(
                published_type(&outcome),
                vec![expected.to_string()],
                "attempt {attempt}"
            );
        };
        check(1, Ok(Inventory::default()), subjects::HARDWARE_SCRAPED);
        check(1, Err(timeout()), "retry");
        check(3, Err(timeout()), subjects::SCRAPE_FAILED);
        check(1, Err(auth()), subjects::SCRAPE_FAILED);

        let outcome = decide(
            &input(cause.clone(), 1),
            &cause,
            "http://bmc",
            Err(auth()),
            now,
        );
        let Outcome::Publish(events) = outcome else {
            panic!("expected a publish")
        };
        let data: ScrapeFailed = events[0].data_as().unwrap();
        assert_eq!(data.kind, ScrapeFailureKind::Auth);
        assert_eq!(events[0].causation_id, Some(cause.event_id));
    }
}
