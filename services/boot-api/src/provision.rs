//! Arming: `machine.provision.requested` in, `machine.profile.assigned` (the whole profile,
//! chosen by name or by selectors) or `machine.provision.failed` out; and
//! `machine.retire.requested` with `wipe` in, `machine.profile.assigned` of the wipe profile
//! (purpose `wipe`, provisioning id = the retirement's id) or `machine.provision.failed`
//! out (a retirement without a wipe is redfish-scraper's alone). [`assign`] and
//! [`assign_wipe`] are pure; [`ProvisionHandler`] waits for the projection to reach the
//! request and reads the machine. Also the install deadline (wipes included): armed
//! machines that never phoned home fail.

use std::sync::Arc;
use std::time::Duration;

use metal_core::envelope::{Decoded, Envelope};
use metal_core::events::{
    InstallFailed, ProfileAssigned, ProvisionFailed, ProvisionRequested, Purpose, RetireRequested,
};
use metal_core::ids::derived_event_id;
use metal_core::profiles::{MachineFacts, Profiles};
use metal_core::query::MachineDetail;
use metal_core::responder::{Handler, Input, Outcome};
use metal_core::subjects;
use metal_projection::LiveProjection;
use time::OffsetDateTime;

use crate::index::BootIndex;

/// How long a request waits for this replica's projection to reach it before retrying.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Provision requests older than this arm nothing: a durable consumer created afresh reads
/// the whole log, and re-arming machines from history would reinstall them.
pub const MAX_REQUEST_AGE: Duration = Duration::from_secs(15 * 60);

/// Why a request is too old to arm anything, if it is.
pub fn stale(requested: OffsetDateTime, now: OffsetDateTime) -> Option<String> {
    let age = now - requested;
    (age > MAX_REQUEST_AGE).then(|| {
        format!(
            "stale: requested {} min ago, and boot-api arms nothing from requests older than {} min (boot-api was down, or a new consumer is reading history); provision again",
            age.whole_minutes(),
            MAX_REQUEST_AGE.as_secs() / 60
        )
    })
}

/// The answer to a provision request for a machine as the projection knows it.
pub fn assign(
    request: &ProvisionRequested,
    machine: Option<&MachineDetail>,
    profiles: &Profiles,
) -> Result<ProfileAssigned, String> {
    let Some(machine) = machine else {
        return Err("no such machine: onboard it first".to_string());
    };
    let state = machine.machine.state;
    let inventory = match (&machine.inventory, state.has_inventory()) {
        (Some(inventory), true) => inventory,
        _ => {
            return Err(format!(
                "machine is {}, without an inventory: onboard it first",
                state.as_str()
            ))
        }
    };
    if state.is_retiring() {
        return Err(format!(
            "machine is {}: onboard it anew before provisioning it",
            state.as_str()
        ));
    }
    if let Some(validation) = machine.validation.as_ref().filter(|v| !v.valid) {
        if !request.force {
            let failures: Vec<String> = validation
                .failures
                .iter()
                .map(|f| format!("{}: wanted {}, found {}", f.rule, f.wanted, f.found))
                .collect();
            return Err(format!(
                "hardware breaks spec {} ({}); provision --force to arm it anyway",
                validation.spec,
                failures.join("; ")
            ));
        }
    }
    let facts = MachineFacts::of(inventory, &machine.tags);
    let (profile, chosen_by) = match &request.profile {
        Some(name) => match profiles.get(name) {
            Some(profile) if profile.purpose == Purpose::Wipe => {
                return Err(format!(
                    "profile {name:?} is the wipe profile: only metal-cli retire --wipe netboots it"
                ))
            }
            Some(profile) => (profile, "operator"),
            None => {
                let known: Vec<&str> = profiles.install().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "unknown profile {name:?} (profiles: {})",
                    known.join(", ")
                ));
            }
        },
        None => match profiles.choose(&facts) {
            Some(profile) => (profile, "selectors"),
            None => {
                return Err(format!(
                    "no profile matches this machine ({} CPU(s) {}, {} cores, {} MiB, {} host NIC(s), {} drive(s), {} GPU(s), model {})",
                    facts.cpus,
                    facts.cpu_models.join(" / "),
                    facts.cores,
                    facts.memory_mib,
                    facts.host_nics,
                    facts.drives,
                    facts.gpus,
                    facts.model.as_deref().unwrap_or("unknown"),
                ))
            }
        },
    };
    if request.power && machine.machine.redfish_url.is_none() {
        return Err("no Redfish URL is known for the BMC; provision with --no-power and power the machine on by hand".to_string());
    }
    Ok(ProfileAssigned {
        provision_id: uuid::Uuid::nil(),
        profile: profile.name.clone(),
        chosen_by: chosen_by.to_string(),
        kernel: profile.kernel.clone(),
        initrd: profile.initrd.clone(),
        cmdline: profile.cmdline.clone(),
        power: request.power,
        redfish_url: machine.machine.redfish_url.clone(),
        purpose: Purpose::Install,
    })
}

/// The answer to a retirement with a wipe: the wipe profile, powered through the BMC.
/// `Ok(None)`: a retirement without a wipe, which boot-api leaves to redfish-scraper.
pub fn assign_wipe(
    request: &RetireRequested,
    machine: Option<&MachineDetail>,
    profiles: &Profiles,
) -> Result<Option<ProfileAssigned>, String> {
    if !request.wipe {
        return Ok(None);
    }
    let Some(machine) = machine else {
        return Err("no such machine: nothing to wipe".to_string());
    };
    let state = machine.machine.state;
    if state == metal_core::query::MachineState::Retired {
        return Err("machine is retired already: nothing to wipe".to_string());
    }
    let Some(profile) = profiles.wipe() else {
        return Err("the boot profiles file has no wipe profile (a [[profile]] with purpose = \"wipe\"); retire without --wipe, or add one".to_string());
    };
    let Some(redfish_url) = machine
        .machine
        .redfish_url
        .clone()
        .or_else(|| request.redfish_url.clone())
    else {
        return Err("no Redfish URL is known for the BMC: the wipe needs it to PXE-boot the machine; retire without --wipe".to_string());
    };
    Ok(Some(ProfileAssigned {
        provision_id: uuid::Uuid::nil(),
        profile: profile.name.clone(),
        chosen_by: "retire".to_string(),
        kernel: profile.kernel.clone(),
        initrd: profile.initrd.clone(),
        cmdline: profile.cmdline.clone(),
        power: true,
        redfish_url: Some(redfish_url),
        purpose: Purpose::Wipe,
    }))
}

/// What a boot-api input asks for.
enum Request {
    Provision(ProvisionRequested),
    Retire(RetireRequested),
}

#[derive(Debug)]
pub struct ProvisionHandler {
    pub live: LiveProjection,
    pub profiles: Arc<Profiles>,
}

impl Handler for ProvisionHandler {
    async fn handle(&self, input: Input) -> Outcome {
        let Decoded::Event(cause) = &input.decoded else {
            return Outcome::Publish(Vec::new());
        };
        if cause.event_type != subjects::PROVISION_REQUESTED
            && cause.event_type != subjects::RETIRE_REQUESTED
        {
            return Outcome::Publish(Vec::new());
        }
        let failed = |reason: String| {
            answer(
                cause,
                subjects::PROVISION_FAILED,
                &ProvisionFailed {
                    provision_id: cause.event_id,
                    reason,
                },
            )
        };
        let request = if cause.event_type == subjects::RETIRE_REQUESTED {
            match cause.data_as::<RetireRequested>() {
                // A retirement without a wipe is redfish-scraper's power-off alone.
                Ok(request) if !request.wipe => return Outcome::Publish(Vec::new()),
                Ok(request) => Request::Retire(request),
                Err(error) => return failed(metal_core::error_chain(&error)),
            }
        } else {
            match cause.data_as::<ProvisionRequested>() {
                Ok(request) => Request::Provision(request),
                Err(error) => return failed(metal_core::error_chain(&error)),
            }
        };
        let Some(machine_id) = cause.machine_id else {
            return failed("the request names no machine".to_string());
        };
        if let Some(reason) = stale(cause.time, OffsetDateTime::now_utc()) {
            tracing::warn!(%machine_id, event_id = %cause.event_id, "old provision request not acted on");
            return failed(reason);
        }
        let mut applied = self.live.subscribe();
        let sequence = input.sequence;
        if tokio::time::timeout(CATCH_UP, applied.wait_for(|s| *s >= sequence))
            .await
            .is_err()
        {
            return Outcome::Retry {
                reason: format!("projection has not reached sequence {sequence} yet"),
                delay: Duration::from_secs(2),
            };
        }
        let reference = machine_id.to_string();
        let machine = self
            .live
            .with(move |projection| projection.machine(&reference))
            .await;
        let machine = match machine {
            Ok(Ok(machine)) => machine,
            Ok(Err(error)) => {
                return Outcome::Retry {
                    reason: metal_core::error_chain(&error),
                    delay: Duration::from_secs(2),
                }
            }
            Err(error) => {
                return Outcome::Retry {
                    reason: metal_core::error_chain(&error),
                    delay: Duration::from_secs(2),
                }
            }
        };
        let assigned = match &request {
            Request::Provision(request) => assign(request, machine.as_ref(), &self.profiles),
            Request::Retire(request) => {
                match assign_wipe(request, machine.as_ref(), &self.profiles) {
                    Ok(Some(assigned)) => Ok(assigned),
                    Ok(None) => return Outcome::Publish(Vec::new()),
                    Err(reason) => Err(reason),
                }
            }
        };
        match assigned {
            Ok(mut assigned) => {
                assigned.provision_id = cause.event_id;
                tracing::info!(%machine_id, profile = %assigned.profile, purpose = assigned.purpose.as_str(), "armed");
                answer(cause, subjects::PROFILE_ASSIGNED, &assigned)
            }
            Err(reason) => {
                tracing::info!(%machine_id, %reason, "provisioning not started");
                failed(reason)
            }
        }
    }
}

/// Publish `data` as the answer to `cause`.
fn answer<D: serde::Serialize>(cause: &Envelope, event_type: &str, data: &D) -> Outcome {
    match Envelope::answering(cause, event_type, data, OffsetDateTime::now_utc()) {
        Ok(event) => Outcome::Publish(vec![event]),
        Err(error) => {
            tracing::error!(error = %metal_core::error_chain(&error), "cannot encode answer");
            Outcome::Publish(Vec::new())
        }
    }
}

/// `machine.install.failed` for every armed machine whose deadline has passed at `now`.
pub fn overdue(index: &BootIndex, deadline: Duration, now: OffsetDateTime) -> Vec<Envelope> {
    let limit = time::Duration::try_from(deadline).unwrap_or(time::Duration::MAX);
    let Some(cutoff) = now.checked_sub(limit) else {
        return Vec::new();
    };
    index
        .armed_at_or_before(cutoff)
        .into_iter()
        .filter_map(|(target, p)| {
            let data = InstallFailed {
                provision_id: p.provision_id,
                profile: p.profile.to_string(),
                reason: format!(
                    "timeout: no phone-home within {} s of arming",
                    deadline.as_secs()
                ),
            };
            Some(Envelope {
                event_id: derived_event_id(p.provision_id, subjects::INSTALL_FAILED),
                event_type: subjects::INSTALL_FAILED.to_string(),
                machine_id: Some(target.machine_id),
                bmc_mac: Some(target.bmc_mac),
                time: now,
                correlation_id: p.provision_id,
                causation_id: Some(p.provision_id),
                data: serde_json::to_value(data).ok()?,
            })
        })
        .collect()
}

/// Checks the deadline every `period` until `stop`; replicas publish the same event ids.
pub async fn watch_deadlines(
    js: async_nats::jetstream::Context,
    index: Arc<BootIndex>,
    deadline: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let period = (deadline / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(period) => {}
        }
        // Off the runtime's workers: a scan of the whole fleet would hold up the boot
        // requests queued behind it.
        let scanned = {
            let index = Arc::clone(&index);
            tokio::task::spawn_blocking(move || {
                overdue(&index, deadline, OffsetDateTime::now_utc())
            })
            .await
        };
        let Ok(overdue) = scanned else {
            continue;
        };
        for event in overdue {
            match metal_core::jetstream::publish_event(&js, &event).await {
                Ok(ack) if !ack.duplicate => {
                    tracing::info!(machine_id = ?event.machine_id, "install deadline passed")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %metal_core::error_chain(&error), "deadline event not published")
                }
            }
        }
    }
}
