//! The responder: `machine.bmc.located` or `machine.rescan.requested` in;
//! `machine.hardware.scraped` (plus `machine.hardware.changed` when a rescan finds other
//! hardware) or `machine.scrape.failed` out. [`plan`] and [`decide`] are pure (time is
//! passed in); [`ScrapeHandler`] does the I/O between them: the scrape, storing the raw
//! bundle, reading the previous inventory.

use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream::Stream;
use metal_core::config::{BmcAccess, RedfishConfig};
use metal_core::envelope::{Decoded, Envelope};
use metal_core::events::{
    BmcLocated, HardwareChanged, HardwareScraped, InventoryRef, RawBundleRef, RescanRequested,
    ScrapeFailed, ScrapeFailureKind,
};
use metal_core::inventory::diff::diff;
use metal_core::inventory::Inventory;
use metal_core::raw::{object_key, RawBundle};
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::{subjects, Mac};
use time::OffsetDateTime;

use crate::error::RedfishError;
use crate::http::{HttpSettings, Scraper, Target};
use crate::walk::Walked;

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
        access: BmcAccess,
        /// For a rescan: the inventory to compare the new one with.
        previous: Option<InventoryRef>,
    },
}

/// Reads the input and finds how to talk to the BMC.
pub fn plan(input: &Input, access_for: impl Fn(&Mac) -> BmcAccess) -> Plan {
    let Decoded::Event(cause) = &input.decoded else {
        return Plan::Ignore;
    };
    let fail = |redfish_url: String, kind, reason: String| Plan::Fail {
        cause: cause.clone(),
        redfish_url,
        kind,
        reason,
    };
    let (redfish_url, previous) = match cause.event_type.as_str() {
        subjects::BMC_LOCATED => match cause.data_as::<BmcLocated>() {
            Ok(located) => (located.redfish_url, None),
            Err(error) => {
                return fail(
                    String::new(),
                    ScrapeFailureKind::Protocol,
                    metal_core::error_chain(&error),
                )
            }
        },
        subjects::RESCAN_REQUESTED => match cause.data_as::<RescanRequested>() {
            Ok(rescan) => (rescan.redfish_url, rescan.previous),
            Err(error) => {
                return fail(
                    String::new(),
                    ScrapeFailureKind::Protocol,
                    metal_core::error_chain(&error),
                )
            }
        },
        _ => return Plan::Ignore,
    };
    let Some(bmc_mac) = cause.bmc_mac else {
        return fail(
            redfish_url,
            ScrapeFailureKind::NoCredentials,
            "event names no BMC MAC to look credentials up by".to_string(),
        );
    };
    Plan::Scrape {
        cause: cause.clone(),
        redfish_url,
        access: access_for(&bmc_mac),
        previous,
    }
}

/// A successful scrape, with what the handler stored and read around it.
#[derive(Debug, Clone)]
pub struct Scraped {
    pub inventory: Inventory,
    pub raw: Option<RawBundleRef>,
    /// The inventory a rescan compares with, when it could be read.
    pub previous: Option<(InventoryRef, Inventory)>,
}

/// Turns a scrape result into the outcome: the inventory (and, for a rescan that found
/// other hardware, what changed), a retry (transient failure, not the last delivery) or
/// `machine.scrape.failed`.
pub fn decide(
    input: &Input,
    cause: &Envelope,
    redfish_url: &str,
    result: Result<Scraped, RedfishError>,
    now: OffsetDateTime,
) -> Outcome {
    match result {
        Ok(scraped) => {
            let changes = scraped
                .previous
                .as_ref()
                .map(|(reference, before)| (*reference, diff(before, &scraped.inventory)));
            // What changed goes first, so the rescan's inventory is its last word: a
            // follower can stop at `hardware.scraped` having seen everything.
            let mut events = Vec::new();
            if let Some((previous, changes)) = changes.filter(|(_, c)| !c.is_empty()) {
                events.extend(answer(
                    cause,
                    subjects::HARDWARE_CHANGED,
                    &HardwareChanged { previous, changes },
                    now,
                ));
            }
            events.extend(answer(
                cause,
                subjects::HARDWARE_SCRAPED,
                &HardwareScraped {
                    redfish_url: redfish_url.to_string(),
                    inventory: scraped.inventory,
                    raw: scraped.raw,
                },
                now,
            ));
            Outcome::Publish(events)
        }
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
    Outcome::Publish(
        answer(
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
        .into_iter()
        .collect(),
    )
}

/// Redelivery delay after the given (1-based) attempt: 5 s, 10 s, 20 s, ... at most 60 s.
pub fn retry_delay(delivery_attempt: u64) -> Duration {
    let exponent = delivery_attempt.saturating_sub(1).min(4) as u32;
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(60))
}

fn answer<D: serde::Serialize>(
    cause: &Envelope,
    event_type: &str,
    data: &D,
    now: OffsetDateTime,
) -> Option<Envelope> {
    match Envelope::answering(cause, event_type, data, now) {
        Ok(event) => Some(event),
        Err(error) => {
            // Encoding our own types cannot fail in practice; do not loop on it.
            tracing::error!(error = %metal_core::error_chain(&error), "cannot build {event_type} event");
            None
        }
    }
}

/// Where the handler keeps raw bundles and reads earlier inventories.
#[derive(Clone)]
pub struct Storage {
    pub raw: ObjectStore,
    pub stream: Stream,
}

/// The scraper's [`Handler`]. Requests in flight are capped per BMC and in total by the
/// shared [`Scraper`]; how many scrapes run at once is the consumer loop's concurrency.
pub struct ScrapeHandler {
    config: RedfishConfig,
    scraper: Scraper,
    storage: Option<Storage>,
}

impl ScrapeHandler {
    pub fn new(config: RedfishConfig) -> Result<ScrapeHandler, RedfishError> {
        let settings = HttpSettings::from_config(&config);
        ScrapeHandler::with_settings(config, settings)
    }

    /// With explicit HTTP settings (tests use short timeouts and backoff).
    pub fn with_settings(
        config: RedfishConfig,
        settings: HttpSettings,
    ) -> Result<ScrapeHandler, RedfishError> {
        Ok(ScrapeHandler {
            config,
            scraper: Scraper::new(settings)?,
            storage: None,
        })
    }

    /// Stores raw bundles and reads earlier inventories through JetStream.
    pub fn with_storage(mut self, storage: Storage) -> ScrapeHandler {
        self.storage = Some(storage);
        self
    }

    /// Scrapes, stores the bundle and reads the previous inventory. A bundle that cannot
    /// be stored is a transient failure (the inventory must not go out without it).
    async fn scrape(
        &self,
        cause: &Envelope,
        redfish_url: &str,
        access: &BmcAccess,
        previous: Option<InventoryRef>,
    ) -> Result<Scraped, RedfishError> {
        let (credentials, no_credentials_reason) = match &access.credentials {
            Ok(credentials) => (Some(credentials), None),
            Err(reason) => (None, Some(reason.as_str())),
        };
        let walked = self
            .scraper
            .scrape(Target {
                base_url: redfish_url,
                credentials,
                no_credentials_reason,
                insecure_tls: access.insecure_tls,
            })
            .await?;
        let Walked {
            inventory,
            documents,
            expand,
        } = walked;
        let raw = match (&self.storage, cause.machine_id) {
            (Some(storage), Some(machine_id)) => {
                let bundle = RawBundle::new(redfish_url.to_string(), expand, documents);
                Some(store_bundle(&storage.raw, &machine_id, &bundle).await?)
            }
            _ => None,
        };
        let previous = match (&self.storage, previous) {
            (Some(storage), Some(reference)) => {
                read_previous(&storage.stream, cause, reference).await
            }
            _ => None,
        };
        Ok(Scraped {
            inventory,
            raw,
            previous,
        })
    }
}

async fn store_bundle(
    store: &ObjectStore,
    machine_id: &metal_core::MachineId,
    bundle: &RawBundle,
) -> Result<RawBundleRef, RedfishError> {
    let encoded = bundle.encode().map_err(|error| RedfishError::Storage {
        reason: metal_core::error_chain(&error),
    })?;
    let key = object_key(machine_id, &encoded.sha256);
    // Content-addressed: an object already there under this key holds these very bytes.
    if store.info(&key).await.is_err() {
        store
            .put(key.as_str(), &mut encoded.gzip.as_slice())
            .await
            .map_err(|error| RedfishError::Storage {
                reason: format!(
                    "cannot store raw bundle {key}: {}",
                    metal_core::error_chain(&error)
                ),
            })?;
    }
    Ok(RawBundleRef {
        bucket: subjects::RAW_BUCKET.to_string(),
        key,
        sha256: encoded.sha256,
        bytes: encoded.gzip.len() as u64,
        documents: bundle.documents.len() as u64,
    })
}

/// The inventory of the `machine.hardware.scraped` a rescan names, if it is that and of
/// this machine; otherwise the rescan reports no changes (and says why in the log).
async fn read_previous(
    stream: &Stream,
    cause: &Envelope,
    reference: InventoryRef,
) -> Option<(InventoryRef, Inventory)> {
    let message = match metal_core::jetstream::read_message(stream, reference.sequence).await {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(sequence = reference.sequence, error = %metal_core::error_chain(&error), "cannot read the previous inventory; no hardware.changed");
            return None;
        }
    };
    let Decoded::Event(event) = message.decode() else {
        return None;
    };
    let usable = event.event_id == reference.event_id
        && event.event_type == subjects::HARDWARE_SCRAPED
        && event.machine_id == cause.machine_id;
    if !usable {
        tracing::warn!(
            sequence = reference.sequence,
            "rescan names a sequence that is not this machine's inventory; no hardware.changed"
        );
        return None;
    }
    match event.data_as::<HardwareScraped>() {
        Ok(data) => Some((reference, data.inventory)),
        Err(error) => {
            tracing::warn!(error = %metal_core::error_chain(&error), "previous inventory unreadable; no hardware.changed");
            None
        }
    }
}

impl Handler for ScrapeHandler {
    async fn handle(&self, input: Input) -> Outcome {
        let (cause, redfish_url, access, previous) =
            match plan(&input, |mac| self.config.access_for(mac)) {
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
                    access,
                    previous,
                } => (cause, redfish_url, access, previous),
            };
        tracing::info!(%redfish_url, attempt = input.delivery_attempt, rescan = cause.event_type == subjects::RESCAN_REQUESTED, "scraping BMC");
        let result = self.scrape(&cause, &redfish_url, &access, previous).await;
        match &result {
            Ok(scraped) => tracing::info!(
                %redfish_url,
                systems = scraped.inventory.systems.len(),
                firmware = scraped.inventory.firmware.len(),
                raw = scraped.raw.as_ref().map(|r| r.key.as_str()).unwrap_or("not stored"),
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
    use metal_core::config::{Credentials, Secret};
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

    fn creds(_: &Mac) -> BmcAccess {
        BmcAccess {
            credentials: Ok(Credentials {
                username: "root".into(),
                password: Secret::new("pw".into()),
            }),
            insecure_tls: false,
        }
    }

    fn scraped(inventory: Inventory) -> Scraped {
        Scraped {
            inventory,
            raw: None,
            previous: None,
        }
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
        // Without credentials the BMC is still scraped (anonymously).
        assert!(matches!(
            plan(&input(located(Some(mac())), 1), |_| BmcAccess {
                credentials: Err("no password".to_string()),
                insecure_tls: false,
            }),
            Plan::Scrape { .. }
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
        let check = |attempt: u64, result: Result<Scraped, RedfishError>, expected: &str| {
            let input = input(cause.clone(), attempt);
            let outcome = decide(&input, &cause, "http://bmc", result, now);
            assert_eq!(
                published_type(&outcome),
                vec![expected.to_string()],
                "attempt {attempt}"
            );
        };
        check(
            1,
            Ok(scraped(Inventory::default())),
            subjects::HARDWARE_SCRAPED,
        );
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

    #[test]
    fn a_rescan_that_finds_other_hardware_says_what_changed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cause = located(Some(mac()));
        let before = Inventory {
            firmware: vec![metal_core::inventory::FirmwareItem {
                id: "BMC".into(),
                name: None,
                version: Some("1.0".into()),
            }],
            ..Inventory::default()
        };
        let mut after = before.clone();
        after.firmware[0].version = Some("1.1".into());
        let reference = InventoryRef {
            event_id: uuid::Uuid::nil(),
            sequence: 7,
        };
        let outcome = |now_inventory: Inventory| {
            decide(
                &input(cause.clone(), 1),
                &cause,
                "http://bmc",
                Ok(Scraped {
                    inventory: now_inventory,
                    raw: None,
                    previous: Some((reference, before.clone())),
                }),
                now,
            )
        };
        assert_eq!(
            published_type(&outcome(after)),
            vec![subjects::HARDWARE_CHANGED, subjects::HARDWARE_SCRAPED]
        );
        assert_eq!(
            published_type(&outcome(before.clone())),
            vec![subjects::HARDWARE_SCRAPED],
            "no changes, no hardware.changed"
        );
    }
}
