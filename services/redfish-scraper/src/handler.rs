//! The responder: `machine.bmc.located` or `machine.rescan.requested` in;
//! `machine.hardware.scraped` (plus `machine.hardware.changed` when a rescan finds other
//! hardware) or `machine.scrape.failed` out. `machine.profile.assigned` (with `power`) and
//! `machine.power.requested` in; one `machine.power.done` or `machine.power.failed` per step
//! out. `machine.retire.requested` without a wipe, and `machine.wipe.completed`, in: the
//! power-off (`machine.power.done`/`.failed` with the retirement's id), then
//! `machine.retired`. [`plan`], [`decide`] and [`decide_power`] are pure (time is passed in);
//! [`ScrapeHandler`] does the I/O between them: the scrape, storing the raw bundle, reading
//! the previous inventory, the power steps.

use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream::Stream;
use metal_core::config::{BmcAccess, RedfishConfig};
use metal_core::envelope::{Decoded, Envelope};
use metal_core::events::{
    BmcLocated, HardwareChanged, HardwareScraped, InventoryRef, PowerDone, PowerFailed,
    PowerRequested, PowerStep, ProfileAssigned, RawBundleRef, RescanRequested, RetireRequested,
    Retired, ScrapeFailed, ScrapeFailureKind, WipeCompleted,
};
use metal_core::inventory::diff::diff;
use metal_core::inventory::Inventory;
use metal_core::raw::{object_key, RawBundle};
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::{subjects, Mac};
use time::OffsetDateTime;

use crate::error::RedfishError;
use crate::http::{explain_missing_credentials, BmcClient, HttpSettings, Scraper, Target};
use crate::power::{self, PowerIntent, ResetChoice};
use crate::walk::{Walked, SERVICE_ROOT};

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
    /// Talk to the BMC's boot and power settings.
    Power {
        cause: Envelope,
        redfish_url: String,
        access: BmcAccess,
        request: PowerRequest,
    },
    /// Answer at once with `machine.power.failed` at the request's first step.
    PowerFail {
        cause: Envelope,
        request: PowerRequest,
        reason: String,
    },
}

/// What a power input asks for, and what the events answering it carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerRequest {
    pub intent: PowerIntent,
    /// The `ProfileAssigned.provision_id`, or a retirement's id (its
    /// `machine.retire.requested` event id); `None` for an operator's request.
    pub provision_id: Option<uuid::Uuid>,
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
        subjects::PROFILE_ASSIGNED | subjects::POWER_REQUESTED => {
            return plan_power(cause, access_for)
        }
        subjects::RETIRE_REQUESTED | subjects::WIPE_COMPLETED => {
            return plan_retire(cause, access_for)
        }
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

/// [`plan`] for `machine.profile.assigned` and `machine.power.requested`. An assignment
/// without `power` or without a Redfish URL (the `--no-power` path) is not ours.
fn plan_power(cause: &Envelope, access_for: impl Fn(&Mac) -> BmcAccess) -> Plan {
    let fail = |request, reason| Plan::PowerFail {
        cause: cause.clone(),
        request,
        reason,
    };
    let (request, redfish_url) = if cause.event_type == subjects::PROFILE_ASSIGNED {
        let assigned = match cause.data_as::<ProfileAssigned>() {
            Ok(assigned) => assigned,
            // Unreadable: answer only if it plainly asked for power, or a --no-power
            // assignment would be reported as a power failure.
            Err(error) if cause.data.get("power") == Some(&serde_json::Value::Bool(true)) => {
                let request = PowerRequest {
                    intent: PowerIntent::Provision,
                    provision_id: None,
                };
                return fail(request, metal_core::error_chain(&error));
            }
            Err(error) => {
                tracing::warn!(event_id = %cause.event_id, error = %metal_core::error_chain(&error), "unreadable profile assignment ignored");
                return Plan::Ignore;
            }
        };
        let request = PowerRequest {
            intent: PowerIntent::Provision,
            provision_id: Some(assigned.provision_id),
        };
        match assigned.redfish_url {
            Some(url) if assigned.power => (request, url),
            _ => return Plan::Ignore,
        }
    } else {
        match cause.data_as::<PowerRequested>() {
            Ok(requested) => (
                PowerRequest {
                    intent: PowerIntent::Operator(requested.action),
                    provision_id: None,
                },
                requested.redfish_url,
            ),
            Err(error) => {
                let request = PowerRequest {
                    intent: PowerIntent::Operator(metal_core::events::PowerAction::Cycle),
                    provision_id: None,
                };
                return fail(request, metal_core::error_chain(&error));
            }
        }
    };
    let Some(bmc_mac) = cause.bmc_mac else {
        return fail(
            request,
            "event names no BMC MAC to look credentials up by".to_string(),
        );
    };
    Plan::Power {
        cause: cause.clone(),
        redfish_url,
        access: access_for(&bmc_mac),
        request,
    }
}

/// [`plan`] for a retirement's power-off: `machine.retire.requested` without a wipe (with
/// one, boot-api arms the wipe first), or `machine.wipe.completed` (the wipe phoned home).
fn plan_retire(cause: &Envelope, access_for: impl Fn(&Mac) -> BmcAccess) -> Plan {
    let (retire_id, wiped, redfish_url) = if cause.event_type == subjects::RETIRE_REQUESTED {
        match cause.data_as::<RetireRequested>() {
            Ok(requested) if requested.wipe => return Plan::Ignore,
            Ok(requested) => (cause.event_id, false, Ok(requested.redfish_url)),
            Err(error) => (cause.event_id, false, Err(metal_core::error_chain(&error))),
        }
    } else {
        match cause.data_as::<WipeCompleted>() {
            Ok(wiped) => (wiped.provision_id, true, Ok(wiped.redfish_url)),
            Err(error) => {
                tracing::warn!(event_id = %cause.event_id, error = %metal_core::error_chain(&error), "unreadable wipe completion ignored");
                return Plan::Ignore;
            }
        }
    };
    let request = PowerRequest {
        intent: PowerIntent::Retire { wiped },
        provision_id: Some(retire_id),
    };
    let fail = |reason: String| Plan::PowerFail {
        cause: cause.clone(),
        request,
        reason,
    };
    let redfish_url = match redfish_url {
        Ok(Some(url)) => url,
        Ok(None) => {
            return fail(
                "no Redfish URL is known for the BMC, so the machine cannot be powered off; power it off by hand"
                    .to_string(),
            )
        }
        Err(reason) => return fail(reason),
    };
    let Some(bmc_mac) = cause.bmc_mac else {
        return fail("event names no BMC MAC to look credentials up by".to_string());
    };
    Plan::Power {
        cause: cause.clone(),
        redfish_url,
        access: access_for(&bmc_mac),
        request,
    }
}

/// Power requests older than this are never acted on: a durable consumer created afresh
/// reads the whole log, and resetting machines from history would be a disaster. Retries
/// of a live request end long before.
pub const MAX_POWER_REQUEST_AGE: Duration = Duration::from_secs(15 * 60);

/// Whether `cause` is too old to touch a BMC for (see [`MAX_POWER_REQUEST_AGE`]).
pub fn power_request_is_stale(cause: &Envelope, now: OffsetDateTime) -> bool {
    now - cause.time > MAX_POWER_REQUEST_AGE
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

/// A step the BMC accepted (or that needed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    /// What was asked (`Pxe Once UEFI`, `ForceRestart`, `already On`, `On`).
    pub detail: String,
    /// `PowerState` read before the step.
    pub power_state: Option<String>,
}

/// What talking to the BMC about power came to: the steps that ended, in order, and the
/// error that stopped the run, if one did.
#[derive(Debug, Default)]
pub struct PowerRun {
    /// The system acted on, once known.
    pub system: Option<String>,
    /// Each finished step: done, or refused before anything was sent (with the reason).
    /// A refused step is the last.
    pub steps: Vec<(PowerStep, Result<StepDone, String>)>,
    /// The error that stopped the run and the step it stopped at.
    pub error: Option<(PowerStep, RedfishError)>,
}

/// Turns a power run into the outcome: one `machine.power.done` or `machine.power.failed`
/// per step, in order, or a retry when a transient error stopped it before the last delivery
/// (the whole run is repeated then, from reading the system again).
pub fn decide_power(
    input: &Input,
    cause: &Envelope,
    request: PowerRequest,
    run: PowerRun,
    now: OffsetDateTime,
) -> Outcome {
    if let Some((_, error)) = &run.error {
        if error.is_transient() && !input.is_last_attempt() {
            return Outcome::Retry {
                reason: metal_core::error_chain(error),
                delay: retry_delay(input.delivery_attempt),
            };
        }
    }
    let system = run.system;
    let failures = run
        .error
        .map(|(step, error)| (step, Err(metal_core::error_chain(&error))));
    let all_done = failures.is_none()
        && !run.steps.is_empty()
        && run.steps.iter().all(|(_, result)| result.is_ok());
    let mut events: Vec<Envelope> = run
        .steps
        .into_iter()
        .chain(failures)
        .filter_map(|(step, result)| power_event(cause, request, step, system.clone(), result, now))
        .collect();
    // A retirement's power-off done: the machine is out of service.
    if let (PowerIntent::Retire { wiped }, Some(retire_id), true) =
        (request.intent, request.provision_id, all_done)
    {
        events.extend(answer(
            cause,
            subjects::RETIRED,
            &Retired { retire_id, wiped },
            now,
        ));
    }
    Outcome::Publish(events)
}

/// `machine.power.failed` at the request's first step, when nothing could be tried.
pub fn power_failed(
    cause: &Envelope,
    request: PowerRequest,
    reason: String,
    now: OffsetDateTime,
) -> Outcome {
    Outcome::Publish(
        power_event(
            cause,
            request,
            request.intent.first_step(),
            None,
            Err(reason),
            now,
        )
        .into_iter()
        .collect(),
    )
}

/// The event of one step, its id derived from (input, outcome type, step), so each step of
/// each input is stored once however often the input is delivered.
fn power_event(
    cause: &Envelope,
    request: PowerRequest,
    step: PowerStep,
    system: Option<String>,
    result: Result<StepDone, String>,
    now: OffsetDateTime,
) -> Option<Envelope> {
    let provision_id = request.provision_id;
    let (event_type, event) = match result {
        Ok(done) => (
            subjects::POWER_DONE,
            answer(
                cause,
                subjects::POWER_DONE,
                &PowerDone {
                    step,
                    provision_id,
                    system: system.unwrap_or_default(),
                    detail: done.detail,
                    power_state: done.power_state,
                },
                now,
            ),
        ),
        Err(reason) => (
            subjects::POWER_FAILED,
            answer(
                cause,
                subjects::POWER_FAILED,
                &PowerFailed {
                    step,
                    provision_id,
                    system,
                    reason,
                },
                now,
            ),
        ),
    };
    event.map(|mut event| {
        event.event_id = power_event_id(cause.event_id, event_type, step);
        event
    })
}

/// The id of the `event_type` (`machine.power.done` or `.failed`) answering `input_event_id`
/// at `step`.
pub fn power_event_id(input_event_id: uuid::Uuid, event_type: &str, step: PowerStep) -> uuid::Uuid {
    metal_core::ids::derived_event_id(input_event_id, &format!("{event_type}/{}", step.as_str()))
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

impl ScrapeHandler {
    /// Logs in, finds the system, takes the request's steps and logs out, within the scrape
    /// deadline (the logout gets one request timeout of its own).
    async fn power(&self, redfish_url: &str, access: &BmcAccess, intent: PowerIntent) -> PowerRun {
        let (credentials, no_credentials_reason) = match &access.credentials {
            Ok(credentials) => (Some(credentials), None),
            Err(reason) => (None, Some(reason.as_str())),
        };
        let target = Target {
            base_url: redfish_url,
            credentials,
            no_credentials_reason,
            insecure_tls: access.insecure_tls,
        };
        let deadline = self.scraper.settings().scrape_deadline;
        let deadline_error = || RedfishError::Deadline {
            deadline_ms: deadline.as_millis(),
        };
        let started = tokio::time::Instant::now();
        let mut run = PowerRun::default();
        let client = match tokio::time::timeout(deadline, self.scraper.connect(target)).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                run.error = Some((intent.first_step(), error));
                return run;
            }
            Err(_) => {
                run.error = Some((intent.first_step(), deadline_error()));
                return run;
            }
        };
        let mut at = intent.first_step();
        let remaining = deadline.saturating_sub(started.elapsed());
        let steps = power_steps(&client, intent, &mut run, &mut at);
        let result = match tokio::time::timeout(remaining, steps).await {
            Ok(result) => result,
            Err(_) => Err(deadline_error()),
        };
        client.logout().await;
        if let Err(error) = result {
            run.error = Some((at, explain_missing_credentials(error, target)));
        }
        run
    }

    async fn handle_power(
        &self,
        input: &Input,
        cause: Envelope,
        redfish_url: &str,
        access: &BmcAccess,
        request: PowerRequest,
    ) -> Outcome {
        tracing::info!(%redfish_url, attempt = input.delivery_attempt, intent = ?request.intent, "power request");
        let run = self.power(redfish_url, access, request.intent).await;
        for (step, result) in &run.steps {
            match result {
                Ok(done) => {
                    tracing::info!(%redfish_url, system = ?run.system, step = step.as_str(), detail = %done.detail, "power step done")
                }
                Err(reason) => {
                    tracing::warn!(%redfish_url, system = ?run.system, step = step.as_str(), %reason, "power step refused")
                }
            }
        }
        if let Some((step, error)) = &run.error {
            tracing::warn!(
                %redfish_url,
                step = step.as_str(),
                transient = error.is_transient(),
                error = %metal_core::error_chain(error),
                "power step failed"
            );
        }
        decide_power(input, &cause, request, run, OffsetDateTime::now_utc())
    }
}

/// The steps of `intent` against a logged-in client: find the system, then boot override
/// and reset (or a status read), each decided by [`power`] from the system document. `at`
/// is the step an error belongs to.
async fn power_steps(
    client: &BmcClient,
    intent: PowerIntent,
    run: &mut PowerRun,
    at: &mut PowerStep,
) -> Result<(), RedfishError> {
    let root = client.get_json(SERVICE_ROOT).await?;
    let systems_path = power::systems_path(root.as_ref());
    let Some(systems) = client.get_json(&systems_path).await? else {
        run.steps.push((
            *at,
            Err(format!(
                "the BMC has no Systems collection at {systems_path}"
            )),
        ));
        return Ok(());
    };
    let Some(system_path) = power::first_member(&systems).map(str::to_string) else {
        run.steps.push((
            *at,
            Err(format!("the BMC lists no system in {systems_path}")),
        ));
        return Ok(());
    };
    run.system = Some(system_path.clone());
    let Some(system) = client.get_json(&system_path).await? else {
        run.steps
            .push((*at, Err(format!("system {system_path} answers 404"))));
        return Ok(());
    };
    let power_state = power::power_state(&system).map(str::to_string);
    for &step in intent.steps() {
        *at = step;
        let outcome = match step {
            PowerStep::BootOverride => match power::boot_override(&system) {
                Ok(decided) => {
                    client.patch_json(&system_path, &decided.patch).await?;
                    Ok(decided.detail)
                }
                Err(reason) => Err(reason),
            },
            PowerStep::Reset => {
                reset(
                    client,
                    intent,
                    &system,
                    &system_path,
                    power_state.as_deref(),
                )
                .await?
            }
            PowerStep::Status => Ok(power_state.clone().unwrap_or_else(|| "unknown".to_string())),
        };
        let refused = outcome.is_err();
        run.steps.push((
            step,
            outcome.map(|detail| StepDone {
                detail,
                power_state: power_state.clone(),
            }),
        ));
        if refused {
            break;
        }
    }
    Ok(())
}

/// The reset step: the allowed values (inline, else the ActionInfo), the choice, the POST.
/// `Ok(Err(reason))`: refused before sending anything.
async fn reset(
    client: &BmcClient,
    intent: PowerIntent,
    system: &serde_json::Value,
    system_path: &str,
    power_state: Option<&str>,
) -> Result<Result<String, String>, RedfishError> {
    let Some(goal) = intent.goal() else {
        return Ok(Err("nothing to reset for a status request".to_string()));
    };
    let action = power::reset_action(system, system_path);
    let allowed = match (action.allowed, &action.action_info) {
        (Some(allowed), _) => Some(allowed),
        (None, Some(info)) => client
            .get_json(info)
            .await?
            .as_ref()
            .and_then(power::action_info_reset_types),
        (None, None) => None,
    };
    match power::choose_reset(goal, power_state, allowed.as_deref()) {
        Ok(ResetChoice::Already(detail)) => Ok(Ok(detail)),
        Ok(ResetChoice::Send(reset_type)) => {
            client
                .post_json(&action.target, &power::reset_body(reset_type))
                .await?;
            Ok(Ok(reset_type.to_string()))
        }
        Err(reason) => Ok(Err(reason)),
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
        let (cause, redfish_url, access, previous) = match plan(&input, |mac| {
            self.config.access_for(mac)
        }) {
            Plan::Ignore => return Outcome::Publish(Vec::new()),
            Plan::PowerFail {
                cause,
                request,
                reason,
            } => {
                tracing::warn!(event_id = %cause.event_id, %reason, "power request not attempted");
                return power_failed(&cause, request, reason, OffsetDateTime::now_utc());
            }
            Plan::Power { cause, .. }
                if power_request_is_stale(&cause, OffsetDateTime::now_utc()) =>
            {
                tracing::warn!(event_id = %cause.event_id, event_type = %cause.event_type, time = %cause.time, "power request too old to act on (a new consumer reading history?); acked without touching the BMC");
                return Outcome::Publish(Vec::new());
            }
            Plan::Power {
                cause,
                redfish_url,
                access,
                request,
            } => {
                return self
                    .handle_power(&input, cause, &redfish_url, &access, request)
                    .await
            }
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

    fn power_input(event_type: &str, data: serde_json::Value, bmc_mac: Option<Mac>) -> Envelope {
        let mut event = located(bmc_mac);
        event.event_id = uuid::Uuid::from_u128(0x5eed);
        event.event_type = event_type.to_string();
        event.data = data;
        event
    }

    fn assigned(power: bool, redfish_url: Option<&str>) -> serde_json::Value {
        serde_json::to_value(ProfileAssigned {
            provision_id: uuid::Uuid::from_u128(7),
            profile: "G1".into(),
            chosen_by: "operator".into(),
            kernel: "http://boot/vmlinuz".into(),
            initrd: vec!["http://boot/initrd".into()],
            cmdline: "console=ttyS0".into(),
            power,
            redfish_url: redfish_url.map(str::to_string),
            purpose: Default::default(),
        })
        .unwrap()
    }

    #[test]
    fn power_plans() {
        let plan_of = |event_type: &str, data, mac| {
            plan(&input(power_input(event_type, data, mac), 1), creds)
        };
        match plan_of(
            subjects::PROFILE_ASSIGNED,
            assigned(true, Some("http://bmc")),
            Some(mac()),
        ) {
            Plan::Power {
                redfish_url,
                request,
                ..
            } => {
                assert_eq!(redfish_url, "http://bmc");
                assert_eq!(request.intent, PowerIntent::Provision);
                assert_eq!(request.provision_id, Some(uuid::Uuid::from_u128(7)));
            }
            other => panic!("{other:?}"),
        }
        // Requests from history (a fresh consumer) never touch a BMC.
        let cause = power_input(
            subjects::PROFILE_ASSIGNED,
            assigned(true, Some("http://bmc")),
            Some(mac()),
        );
        assert!(!power_request_is_stale(
            &cause,
            cause.time + MAX_POWER_REQUEST_AGE
        ));
        assert!(power_request_is_stale(
            &cause,
            cause.time + MAX_POWER_REQUEST_AGE + time::Duration::seconds(1)
        ));
        // --no-power, or nowhere to send it: not ours.
        for data in [assigned(false, Some("http://bmc")), assigned(true, None)] {
            assert!(matches!(
                plan_of(subjects::PROFILE_ASSIGNED, data, Some(mac())),
                Plan::Ignore
            ));
        }
        let requested = |action: &str| serde_json::json!({"action": action, "redfish_url": "http://bmc", "requested_by": "ops"});
        match plan_of(subjects::POWER_REQUESTED, requested("off"), Some(mac())) {
            Plan::Power { request, .. } => {
                assert_eq!(
                    request.intent,
                    PowerIntent::Operator(metal_core::events::PowerAction::Off)
                );
                assert_eq!(request.provision_id, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_of(subjects::POWER_REQUESTED, requested("on"), None),
            Plan::PowerFail { .. }
        ));
        assert!(matches!(
            plan_of(subjects::POWER_REQUESTED, requested("explode"), Some(mac())),
            Plan::PowerFail { .. }
        ));
        // Unreadable assignments are answered only when they plainly asked for power.
        assert!(matches!(
            plan_of(
                subjects::PROFILE_ASSIGNED,
                serde_json::json!({"power": true}),
                Some(mac())
            ),
            Plan::PowerFail { .. }
        ));
        assert!(matches!(
            plan_of(
                subjects::PROFILE_ASSIGNED,
                serde_json::json!({"power": false}),
                Some(mac())
            ),
            Plan::Ignore
        ));
    }

    #[test]
    fn power_decisions() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cause = power_input(
            subjects::PROFILE_ASSIGNED,
            assigned(true, Some("http://bmc")),
            Some(mac()),
        );
        let request = PowerRequest {
            intent: PowerIntent::Provision,
            provision_id: Some(uuid::Uuid::from_u128(7)),
        };
        let done = |detail: &str| {
            Ok(StepDone {
                detail: detail.into(),
                power_state: Some("On".into()),
            })
        };
        let timeout = || RedfishError::Timeout { url: "u".into() };
        let run = |steps: Vec<(PowerStep, Result<StepDone, String>)>, error| PowerRun {
            system: Some("/redfish/v1/Systems/1".into()),
            steps,
            error,
        };
        let events = |outcome: Outcome| match outcome {
            Outcome::Publish(events) => events,
            Outcome::Retry { .. } => panic!("expected a publish"),
        };

        // Both steps done: two power.done, in order, with deterministic ids.
        let published = events(decide_power(
            &input(cause.clone(), 1),
            &cause,
            request,
            run(
                vec![
                    (PowerStep::BootOverride, done("Pxe Once UEFI")),
                    (PowerStep::Reset, done("ForceRestart")),
                ],
                None,
            ),
            now,
        ));
        assert_eq!(published.len(), 2);
        let first: PowerDone = published[0].data_as().unwrap();
        assert_eq!(first.step, PowerStep::BootOverride);
        assert_eq!(first.provision_id, Some(uuid::Uuid::from_u128(7)));
        assert_eq!(first.system, "/redfish/v1/Systems/1");
        assert_eq!(
            published[0].event_id,
            metal_core::ids::derived_event_id(cause.event_id, "machine.power.done/boot_override")
        );
        assert_eq!(
            published[1].event_id,
            power_event_id(cause.event_id, subjects::POWER_DONE, PowerStep::Reset)
        );
        assert_ne!(published[0].event_id, published[1].event_id);
        assert_eq!(published[1].causation_id, Some(cause.event_id));
        assert_eq!(published[1].correlation_id, cause.correlation_id);

        // A transient error: retried before the last delivery, reported at its step after.
        let stopped = || {
            run(
                vec![(PowerStep::BootOverride, done("Pxe Once"))],
                Some((PowerStep::Reset, timeout())),
            )
        };
        assert!(matches!(
            decide_power(&input(cause.clone(), 1), &cause, request, stopped(), now),
            Outcome::Retry { .. }
        ));
        let published = events(decide_power(
            &input(cause.clone(), 3),
            &cause,
            request,
            stopped(),
            now,
        ));
        assert_eq!(
            published
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
            vec![subjects::POWER_DONE, subjects::POWER_FAILED]
        );
        let failed: PowerFailed = published[1].data_as().unwrap();
        assert_eq!(failed.step, PowerStep::Reset);
        assert!(failed.reason.contains("timed out"), "{}", failed.reason);
        assert_eq!(
            published[1].event_id,
            power_event_id(cause.event_id, subjects::POWER_FAILED, PowerStep::Reset)
        );

        // A refusal is not retried.
        let refused = run(vec![(PowerStep::BootOverride, Err("no Pxe".into()))], None);
        let published = events(decide_power(
            &input(cause.clone(), 1),
            &cause,
            request,
            refused,
            now,
        ));
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].event_type, subjects::POWER_FAILED);

        // Nothing could be tried: failed at the first step, without a system.
        let published = events(power_failed(&cause, request, "no MAC".into(), now));
        let failed: PowerFailed = published[0].data_as().unwrap();
        assert_eq!(failed.step, PowerStep::BootOverride);
        assert_eq!(failed.system, None);
    }

    #[test]
    fn retirements_plan_a_power_off_then_retired() {
        let plan_of = |event_type: &str, data: serde_json::Value, mac| {
            plan(&input(power_input(event_type, data, mac), 1), creds)
        };
        let retire = |wipe: bool, url: Option<&str>| {
            serde_json::to_value(RetireRequested {
                wipe,
                redfish_url: url.map(str::to_string),
                requested_by: Some("ops".into()),
            })
            .unwrap()
        };
        let wipe_done = |url: Option<&str>| {
            serde_json::to_value(WipeCompleted {
                provision_id: uuid::Uuid::from_u128(0xa1),
                profile: "WIPE".into(),
                redfish_url: url.map(str::to_string),
            })
            .unwrap()
        };
        // Without a wipe: powered off at once, under the request's own id.
        match plan_of(
            subjects::RETIRE_REQUESTED,
            retire(false, Some("http://bmc")),
            Some(mac()),
        ) {
            Plan::Power {
                redfish_url,
                request,
                ..
            } => {
                assert_eq!(redfish_url, "http://bmc");
                assert_eq!(request.intent, PowerIntent::Retire { wiped: false });
                assert_eq!(request.provision_id, Some(uuid::Uuid::from_u128(0x5eed)));
            }
            other => panic!("{other:?}"),
        }
        // With a wipe: boot-api's first; the power-off follows the wipe's phone-home.
        assert!(matches!(
            plan_of(
                subjects::RETIRE_REQUESTED,
                retire(true, Some("http://bmc")),
                Some(mac())
            ),
            Plan::Ignore
        ));
        match plan_of(
            subjects::WIPE_COMPLETED,
            wipe_done(Some("http://bmc")),
            Some(mac()),
        ) {
            Plan::Power { request, .. } => {
                assert_eq!(request.intent, PowerIntent::Retire { wiped: true });
                assert_eq!(request.provision_id, Some(uuid::Uuid::from_u128(0xa1)));
            }
            other => panic!("{other:?}"),
        }
        // Nowhere to send it: power.failed with the retirement's id and a clear reason.
        for (event_type, data) in [
            (subjects::RETIRE_REQUESTED, retire(false, None)),
            (subjects::WIPE_COMPLETED, wipe_done(None)),
        ] {
            match plan_of(event_type, data, Some(mac())) {
                Plan::PowerFail {
                    cause,
                    request,
                    reason,
                } => {
                    assert!(reason.contains("no Redfish URL"), "{reason}");
                    let published =
                        match power_failed(&cause, request, reason, OffsetDateTime::UNIX_EPOCH) {
                            Outcome::Publish(events) => events,
                            Outcome::Retry { .. } => panic!("expected a publish"),
                        };
                    assert_eq!(published.len(), 1, "no retired without a power-off");
                    let failed: PowerFailed = published[0].data_as().unwrap();
                    assert_eq!(failed.step, PowerStep::Reset);
                    assert!(failed.provision_id.is_some());
                }
                other => panic!("{other:?}"),
            }
        }

        // The power-off done (or already off): power.done, then retired.
        let now = OffsetDateTime::UNIX_EPOCH;
        let cause = power_input(
            subjects::WIPE_COMPLETED,
            wipe_done(Some("http://bmc")),
            Some(mac()),
        );
        let request = PowerRequest {
            intent: PowerIntent::Retire { wiped: true },
            provision_id: Some(uuid::Uuid::from_u128(0xa1)),
        };
        let run = |result: Result<StepDone, String>| PowerRun {
            system: Some("/redfish/v1/Systems/1".into()),
            steps: vec![(PowerStep::Reset, result)],
            error: None,
        };
        for detail in ["ForceOff", "already Off"] {
            let outcome = decide_power(
                &input(cause.clone(), 1),
                &cause,
                request,
                run(Ok(StepDone {
                    detail: detail.into(),
                    power_state: Some("On".into()),
                })),
                now,
            );
            let Outcome::Publish(published) = outcome else {
                panic!("expected a publish")
            };
            assert_eq!(
                published
                    .iter()
                    .map(|e| e.event_type.as_str())
                    .collect::<Vec<_>>(),
                vec![subjects::POWER_DONE, subjects::RETIRED]
            );
            let done: PowerDone = published[0].data_as().unwrap();
            assert_eq!(done.provision_id, Some(uuid::Uuid::from_u128(0xa1)));
            let retired: Retired = published[1].data_as().unwrap();
            assert_eq!(
                retired,
                Retired {
                    retire_id: uuid::Uuid::from_u128(0xa1),
                    wiped: true
                }
            );
            assert_eq!(
                published[1].event_id,
                metal_core::ids::derived_event_id(cause.event_id, subjects::RETIRED)
            );
        }
        // Refused: power.failed, and no retired.
        let outcome = decide_power(
            &input(cause.clone(), 1),
            &cause,
            request,
            run(Err("no ResetType fit".into())),
            now,
        );
        let Outcome::Publish(published) = outcome else {
            panic!("expected a publish")
        };
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].event_type, subjects::POWER_FAILED);
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
