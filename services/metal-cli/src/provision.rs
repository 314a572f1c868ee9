//! Requests about one known machine that metal-cli publishes and follows: `tag` (operator
//! tags for profile selectors), `provision` (arm it with a boot profile and, unless
//! `--no-power`, have its BMC PXE-boot it), `power` (on, off, cycle, status) and `retire`
//! (optionally wipe it, then power it off for good).
//!
//! Each asks the inventory service about the machine first (nothing is published for an
//! unknown or unsuitable machine), publishes an envelope whose event id is its correlation
//! id, and follows the stream from the request's sequence for the events that answer it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::stream::Stream as JsStream;
use futures::{Stream, StreamExt};
use metal_core::events::{
    PowerAction, PowerDone, PowerFailed, PowerRequested, PowerStep, ProfileAssigned,
    ProvisionFailed, ProvisionRequested, TagsChanged,
};
use metal_core::profiles::check_tag;
use metal_core::query::MachineDetail;
use metal_core::{subjects, Decoded, Envelope, Mac};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::client::{self, CliError};
use crate::commands::{device_mac, print_json};
use crate::render;

/// After this long without an answer, a follower says once what might be missing.
const QUIET_HINT_AFTER: Duration = Duration::from_secs(10);

/// The changes `metal-cli tag` asks for, checked before anything touches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagChange {
    pub set: BTreeMap<String, String>,
    pub removed: Vec<String>,
}

/// Parses `KEY=VALUE` words and `--remove KEY`s; the problem in words otherwise.
pub fn tag_change(pairs: &[String], removed: &[String]) -> Result<TagChange, String> {
    let mut set = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "{pair:?} is not KEY=VALUE (use --remove {pair} to remove a tag)"
            ));
        };
        check_tag(key, value)?;
        if let Some(earlier) = set.insert(key.to_string(), value.to_string()) {
            if earlier != value {
                return Err(format!(
                    "tag {key} is given twice, as {earlier:?} and {value:?}"
                ));
            }
        }
    }
    let mut removals = Vec::new();
    for key in removed {
        check_tag(key, "")?;
        if set.contains_key(key) {
            return Err(format!("tag {key} is both set and removed"));
        }
        if !removals.contains(key) {
            removals.push(key.clone());
        }
    }
    if set.is_empty() && removals.is_empty() {
        return Err("give at least one KEY=VALUE to set or --remove KEY".to_string());
    }
    Ok(TagChange {
        set,
        removed: removals,
    })
}

/// A provision profile name given with `--profile`; names are never empty.
pub fn profile_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("--profile needs a profile name".to_string());
    }
    Ok(name.to_string())
}

/// The machine a MAC names (its BMC's or a host NIC's). `Err(code)` when the inventory has
/// no such machine, after saying so.
pub(crate) async fn known_machine(
    client: &async_nats::Client,
    verb: &str,
    mac: Mac,
) -> Result<Result<MachineDetail, ExitCode>, CliError> {
    match client::machine(client, &mac.to_string()).await {
        Ok(detail) => Ok(Ok(detail)),
        Err(CliError::Service { code: 404, .. }) => {
            eprintln!(
                "metal-cli: cannot {verb} {mac}: no machine has this MAC (BMC or host NIC); onboard it first: metal-cli onboard <BMC MAC>"
            );
            Ok(Err(ExitCode::FAILURE))
        }
        Err(error) => Err(error),
    }
}

/// A new request about `detail`'s machine: a fresh event id that is also its correlation id.
pub(crate) fn request(
    event_type: &str,
    detail: &MachineDetail,
    data: impl serde::Serialize,
) -> Result<Envelope, CliError> {
    let id = Uuid::new_v4();
    Ok(Envelope {
        event_id: id,
        event_type: event_type.to_string(),
        machine_id: Some(detail.machine.machine_id),
        bmc_mac: Some(detail.machine.bmc_mac),
        time: OffsetDateTime::now_utc(),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(data)
            .map_err(|e| CliError::Other(format!("cannot encode the {event_type} request: {e}")))?,
    })
}

/// Publishes `request` and waits for the PubAck; the stream (to follow) and its sequence.
pub(crate) async fn publish(
    client: &async_nats::Client,
    request: &Envelope,
) -> Result<(JsStream, u64), CliError> {
    let js = client::jetstream(client);
    let stream = js.get_stream(subjects::STREAM).await.map_err(|e| {
        CliError::Other(format!(
            "cannot open the MACHINES stream ({e}); the services create it at start-up, or: nats stream add --config nats/stream-MACHINES.json"
        ))
    })?;
    let ack = metal_core::jetstream::publish_event(&js, request).await?;
    Ok((stream, ack.sequence))
}

/// The events answering `request` (same correlation id, not the request itself), in stream
/// order from `from_sequence`.
pub(crate) async fn answers(
    stream: &JsStream,
    from_sequence: u64,
    request: &Envelope,
) -> Result<impl Stream<Item = Result<Envelope, CliError>>, CliError> {
    let correlation_id = request.correlation_id;
    let request_id = request.event_id;
    let messages = metal_core::jetstream::follow_stream(stream, from_sequence).await?;
    Ok(messages.filter_map(move |item| {
        futures::future::ready(match item {
            Err(error) => Some(Err(CliError::from(error))),
            Ok(message) => match message.decode() {
                Decoded::Event(event)
                    if event.correlation_id == correlation_id && event.event_id != request_id =>
                {
                    Some(Ok(event))
                }
                _ => None,
            },
        })
    }))
}

/// The next answer; prints `hint` to stderr once if none comes for a while.
async fn next_answer(
    answers: &mut (impl Stream<Item = Result<Envelope, CliError>> + Unpin),
    hint: &mut Option<String>,
) -> Result<Envelope, CliError> {
    loop {
        let item = match hint.as_deref() {
            None => answers.next().await,
            Some(text) => match tokio::time::timeout(QUIET_HINT_AFTER, answers.next()).await {
                Ok(item) => item,
                Err(_) => {
                    eprintln!("waiting    {text}");
                    *hint = None;
                    continue;
                }
            },
        };
        return match item {
            Some(result) => result,
            None => Err(CliError::Other(
                "the stream ended before the request was answered".to_string(),
            )),
        };
    }
}

fn data<D: for<'de> serde::Deserialize<'de>>(event: &Envelope) -> Result<D, CliError> {
    event
        .data_as()
        .map_err(|e| CliError::Other(metal_core::error_chain(&e)))
}

pub struct TagOptions {
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// `metal-cli tag`: publishes `machine.tags.changed` for a known machine and prints its tags
/// once the projection shows the change.
pub async fn tag(
    client: &async_nats::Client,
    mac_text: &str,
    pairs: &[String],
    removed: &[String],
    options: TagOptions,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("tag", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let change = match tag_change(pairs, removed) {
        Ok(change) => change,
        Err(problem) => {
            eprintln!("metal-cli: cannot tag {mac}: {problem}");
            return Ok(ExitCode::from(2));
        }
    };
    let detail = match known_machine(client, "tag", mac).await? {
        Ok(detail) => detail,
        Err(code) => return Ok(code),
    };
    let event = request(
        subjects::TAGS_CHANGED,
        &detail,
        TagsChanged {
            set: change.set.clone(),
            removed: change.removed.clone(),
            requested_by: options.requested_by,
        },
    )?;
    let (_, sequence) = publish(client, &event).await?;
    let machine_id = detail.machine.machine_id.to_string();
    // The projection has applied the event once its sequence reaches the request's.
    let shown = tokio::time::timeout(
        options.timeout,
        client::poll_machine(client, &machine_id, |detail| {
            (detail.last_sequence >= sequence).then_some(detail)
        }),
    )
    .await;
    let shown = match shown {
        Ok(shown) => shown?,
        Err(_) => {
            eprintln!(
                "metal-cli: the tags are published (stream sequence {sequence}) but the inventory did not show them within {:?}; is inventory-projector running?",
                options.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let applied = change
        .set
        .iter()
        .all(|(key, value)| shown.tags.get(key) == Some(value))
        && change
            .removed
            .iter()
            .all(|key| !shown.tags.contains_key(key));
    if !applied {
        eprintln!(
            "metal-cli: the inventory shows other tags than asked for (changed again since?): {}; `metal-cli history {}` shows every change",
            render::tags(&shown.tags),
            shown.machine.bmc_mac
        );
        return Ok(ExitCode::FAILURE);
    }
    if options.json {
        print_json(&serde_json::json!({
            "machine_id": shown.machine.machine_id,
            "bmc_mac": shown.machine.bmc_mac,
            "tags": shown.tags,
            "sequence": sequence,
        }));
    } else {
        println!(
            "{} (machine {}) tags: {}",
            shown.machine.bmc_mac,
            shown.machine.machine_id,
            render::tags(&shown.tags)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub struct ProvisionOptions {
    pub profile: Option<String>,
    pub power: bool,
    /// Arm even a machine whose hardware failed its spec.
    pub force: bool,
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// `metal-cli provision`: arms an inventoried machine with a boot profile (boot-api answers
/// with `machine.profile.assigned` or `machine.provision.failed`) and, with power, follows
/// the BMC's boot override and reset. Exit 0 once it is armed (and reset).
pub async fn provision(
    client: &async_nats::Client,
    mac_text: &str,
    options: ProvisionOptions,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("provision", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let profile = match options.profile.as_deref().map(profile_name).transpose() {
        Ok(profile) => profile,
        Err(problem) => {
            eprintln!("metal-cli: cannot provision {mac}: {problem}");
            return Ok(ExitCode::from(2));
        }
    };
    let detail = match known_machine(client, "provision", mac).await? {
        Ok(detail) => detail,
        Err(code) => return Ok(code),
    };
    let state = detail.machine.state;
    if !state.has_inventory() || detail.inventory.is_none() {
        let reason = detail
            .machine
            .state_reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        eprintln!(
            "metal-cli: cannot provision {mac}: machine {} is {}{reason}, without an inventory; onboard it first (metal-cli onboard {})",
            detail.machine.machine_id,
            state.as_str(),
            detail.machine.bmc_mac
        );
        return Ok(ExitCode::FAILURE);
    }
    if options.power && detail.machine.redfish_url.is_none() {
        eprintln!(
            "metal-cli: cannot provision {mac} with power: no Redfish URL is known for its BMC; use --no-power and power it on by hand"
        );
        return Ok(ExitCode::FAILURE);
    }
    if state.is_retiring() {
        eprintln!(
            "metal-cli: cannot provision {mac}: machine {} is {}; onboard it anew first (metal-cli onboard {})",
            detail.machine.machine_id,
            state.as_str(),
            detail.machine.bmc_mac
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(validation) = detail.validation.as_ref().filter(|v| !v.valid) {
        if !options.force {
            eprintln!(
                "metal-cli: cannot provision {mac}: its hardware breaks spec {} ({}); fix the hardware and rescan, or provision --force",
                validation.spec,
                failed_rules(validation)
            );
            return Ok(ExitCode::FAILURE);
        }
        eprintln!(
            "note       hardware breaks spec {} ({}); arming anyway (--force)",
            validation.spec,
            failed_rules(validation)
        );
    }
    if state.is_armed() {
        eprintln!(
            "note       machine is {} already; this provisioning replaces the current one",
            state.as_str()
        );
    } else if state == metal_core::query::MachineState::Installed {
        eprintln!(
            "note       machine is installed; this provisioning reinstalls it with a fresh token (the old one stops working)"
        );
    }
    let event = request(
        subjects::PROVISION_REQUESTED,
        &detail,
        ProvisionRequested {
            profile,
            power: options.power,
            requested_by: options.requested_by,
            force: options.force,
        },
    )?;
    let (stream, sequence) = publish(client, &event).await?;
    if options.json {
        print_json(&event);
    } else {
        eprintln!(
            "provisioning {} as machine {} (request {})",
            detail.machine.bmc_mac, detail.machine.machine_id, event.event_id
        );
    }
    let followed = tokio::time::timeout(
        options.timeout,
        follow_provision(
            client,
            &stream,
            sequence,
            &event,
            &detail,
            options.power,
            options.json,
        ),
    )
    .await;
    match followed {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "metal-cli: the provisioning did not finish within {:?}; `metal-cli history {}` shows how far it got",
                options.timeout, detail.machine.bmc_mac
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn follow_provision(
    client: &async_nats::Client,
    stream: &JsStream,
    from_sequence: u64,
    event: &Envelope,
    detail: &MachineDetail,
    power: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let request_id = event.event_id;
    let mac = detail.machine.bmc_mac;
    let answers = answers(stream, from_sequence, event).await?;
    let mut answers = std::pin::pin!(answers);
    let mut hint = (!json).then(|| {
        format!("nothing has answered the request for {QUIET_HINT_AFTER:?}: is boot-api running against this NATS server?")
    });
    let mut assigned: Option<ProfileAssigned> = None;
    loop {
        let answer = next_answer(&mut answers, &mut hint).await?;
        if json {
            print_json(&answer);
        }
        match answer.event_type.as_str() {
            subjects::PROFILE_ASSIGNED => {
                let data: ProfileAssigned = data(&answer)?;
                if !json {
                    println!("{}", render::profile_assigned(&data));
                }
                assigned = Some(data);
                if !power {
                    break;
                }
                hint = (!json).then(|| {
                    format!("no word from the BMC for {QUIET_HINT_AFTER:?}: redfish-scraper may be retrying it (up to 3 attempts), or not be running against this NATS server")
                });
            }
            subjects::PROVISION_FAILED => {
                let data: ProvisionFailed = data(&answer)?;
                eprintln!(
                    "metal-cli: provisioning {mac} not started: {}; nothing is armed",
                    data.reason
                );
                return Ok(ExitCode::FAILURE);
            }
            subjects::POWER_DONE => {
                let data: PowerDone = data(&answer)?;
                if data.provision_id != Some(request_id) {
                    continue;
                }
                if !json {
                    println!("{}", render::power_done(&data));
                }
                if data.step == PowerStep::Reset {
                    break;
                }
            }
            subjects::POWER_FAILED => {
                let data: PowerFailed = data(&answer)?;
                if data.provision_id != Some(request_id) {
                    continue;
                }
                eprintln!("{}", render::power_failed(&data));
                eprintln!(
                    "metal-cli: the machine is disarmed (provision_failed); fix what the BMC said and provision again, or use --no-power and PXE-boot it by hand"
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
    }
    // Armed in the log; success means the inventory shows this provisioning.
    let shown = client::poll_machine(client, &detail.machine.machine_id.to_string(), |d| {
        d.provisioning
            .as_ref()
            .is_some_and(|p| p.provision_id == request_id)
            .then_some(d)
    })
    .await?;
    if json {
        print_json(&shown);
        return Ok(ExitCode::SUCCESS);
    }
    let profile = assigned.map(|a| a.profile).unwrap_or_default();
    if power {
        println!(
            "next       {mac} is PXE-booting: boot-api will netboot it with profile {profile}; it phones home when installed (metal-cli show {mac})"
        );
    } else {
        println!(
            "next       power {mac} on or PXE-boot it yourself (or: metal-cli power {mac} cycle): boot-api will netboot it with profile {profile}; it phones home when installed (metal-cli show {mac})"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub struct PowerOptions {
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// `metal-cli power`: publishes `machine.power.requested` and prints redfish-scraper's
/// answer. Exit 0 when the BMC did it (or, for status, said the power state).
pub async fn power(
    client: &async_nats::Client,
    mac_text: &str,
    action: PowerAction,
    options: PowerOptions,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("power", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let detail = match known_machine(client, "power", mac).await? {
        Ok(detail) => detail,
        Err(code) => return Ok(code),
    };
    let Some(redfish_url) = detail.machine.redfish_url.clone() else {
        eprintln!(
            "metal-cli: cannot power {} {mac}: machine {} has no Redfish URL yet (state {}); onboard it first",
            action.as_str(),
            detail.machine.machine_id,
            detail.machine.state.as_str()
        );
        return Ok(ExitCode::FAILURE);
    };
    let event = request(
        subjects::POWER_REQUESTED,
        &detail,
        PowerRequested {
            action,
            redfish_url: redfish_url.clone(),
            requested_by: options.requested_by,
        },
    )?;
    let (stream, sequence) = publish(client, &event).await?;
    if options.json {
        print_json(&event);
    } else {
        eprintln!(
            "power {} of {} at {redfish_url} (request {})",
            action.as_str(),
            detail.machine.bmc_mac,
            event.event_id
        );
    }
    let followed = tokio::time::timeout(options.timeout, async {
        let answers = answers(&stream, sequence, &event).await?;
        let mut answers = std::pin::pin!(answers);
        let mut hint = (!options.json).then(|| {
            format!("no word from the BMC for {QUIET_HINT_AFTER:?}: redfish-scraper may be retrying it (up to 3 attempts), or not be running against this NATS server")
        });
        loop {
            let answer = next_answer(&mut answers, &mut hint).await?;
            match answer.event_type.as_str() {
                subjects::POWER_DONE | subjects::POWER_FAILED => {
                    return Ok::<Envelope, CliError>(answer)
                }
                _ => continue,
            }
        }
    })
    .await;
    let answer = match followed {
        Ok(answer) => answer?,
        Err(_) => {
            eprintln!(
                "metal-cli: no answer from the BMC within {:?}; `metal-cli history {}` shows how far it got",
                options.timeout, detail.machine.bmc_mac
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if options.json {
        print_json(&answer);
    }
    let mac = detail.machine.bmc_mac;
    if answer.event_type == subjects::POWER_FAILED {
        let failed: PowerFailed = data(&answer)?;
        eprintln!(
            "metal-cli: power {} of {mac} failed: {}",
            action.as_str(),
            render::power_failure(&failed)
        );
        return Ok(ExitCode::FAILURE);
    }
    let done: PowerDone = data(&answer)?;
    if !options.json {
        println!("{}", render::power_answer(&mac, action.as_str(), &done));
    }
    Ok(ExitCode::SUCCESS)
}

/// `rule: wanted W, found F; ...` of a failed validation.
pub fn failed_rules(validation: &metal_core::query::Validation) -> String {
    validation
        .failures
        .iter()
        .map(|f| format!("{}: wanted {}, found {}", f.rule, f.wanted, f.found))
        .collect::<Vec<_>>()
        .join("; ")
}

pub struct RetireOptions {
    /// Netboot the wipe profile once before powering off.
    pub wipe: bool,
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// `metal-cli retire`: publishes `machine.retire.requested` for a known machine and follows
/// it: with `--wipe`, boot-api arms the wipe profile and redfish-scraper PXE-boots it, the
/// wipe phones home (`machine.wipe.completed`); then redfish-scraper powers the machine off
/// and says `machine.retired`. Exit 0 once retired; 1 with the reason when a step failed.
pub async fn retire(
    client: &async_nats::Client,
    mac_text: &str,
    options: RetireOptions,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("retire", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let detail = match known_machine(client, "retire", mac).await? {
        Ok(detail) => detail,
        Err(code) => return Ok(code),
    };
    let state = detail.machine.state;
    if state == metal_core::query::MachineState::Retired {
        eprintln!(
            "metal-cli: machine {} ({}) is retired already; onboard it anew to use it again (metal-cli onboard {})",
            detail.machine.machine_id, detail.machine.bmc_mac, detail.machine.bmc_mac
        );
        return Ok(ExitCode::FAILURE);
    }
    let Some(redfish_url) = detail.machine.redfish_url.clone() else {
        eprintln!(
            "metal-cli: cannot retire {mac}: machine {} has no Redfish URL (state {}), so it cannot be powered off (nor PXE-booted for a wipe)",
            detail.machine.machine_id,
            state.as_str()
        );
        return Ok(ExitCode::FAILURE);
    };
    if state.is_armed() && !state.is_retiring() {
        eprintln!(
            "note       machine is {}; retiring it ends that provisioning (its token stops working)",
            state.as_str()
        );
    }
    let event = request(
        subjects::RETIRE_REQUESTED,
        &detail,
        metal_core::events::RetireRequested {
            wipe: options.wipe,
            redfish_url: Some(redfish_url.clone()),
            requested_by: options.requested_by,
        },
    )?;
    let (stream, sequence) = publish(client, &event).await?;
    if options.json {
        print_json(&event);
    } else {
        eprintln!(
            "retiring {} as machine {}{} (request {})",
            detail.machine.bmc_mac,
            detail.machine.machine_id,
            if options.wipe {
                ", wiping it first"
            } else {
                ""
            },
            event.event_id
        );
    }
    let followed = tokio::time::timeout(
        options.timeout,
        follow_retire(
            &stream,
            sequence,
            &event,
            &detail,
            options.wipe,
            options.json,
        ),
    )
    .await;
    match followed {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "metal-cli: the retirement did not finish within {:?}; it goes on without metal-cli (`metal-cli history {}` shows how far it got)",
                options.timeout, detail.machine.bmc_mac
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn follow_retire(
    stream: &JsStream,
    from_sequence: u64,
    event: &Envelope,
    detail: &MachineDetail,
    wipe: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    use metal_core::events::{InstallFailed, Retired, WipeCompleted};
    let retire_id = event.event_id;
    let mac = detail.machine.bmc_mac;
    let answers = answers(stream, from_sequence, event).await?;
    let mut answers = std::pin::pin!(answers);
    let mut hint = (!json).then(|| {
        if wipe {
            format!("nothing has answered the retirement for {QUIET_HINT_AFTER:?}: are boot-api and redfish-scraper running against this NATS server?")
        } else {
            format!("no word from the BMC for {QUIET_HINT_AFTER:?}: redfish-scraper may be retrying it (up to 3 attempts), or not be running against this NATS server")
        }
    });
    let mut powered_on = false;
    loop {
        let answer = next_answer(&mut answers, &mut hint).await?;
        if json {
            print_json(&answer);
        }
        match answer.event_type.as_str() {
            subjects::PROFILE_ASSIGNED => {
                let data: ProfileAssigned = data(&answer)?;
                if data.provision_id != retire_id {
                    continue;
                }
                if !json {
                    println!(
                        "assigned   wipe profile {}, kernel {}",
                        data.profile, data.kernel
                    );
                }
            }
            subjects::PROVISION_FAILED => {
                let data: ProvisionFailed = data(&answer)?;
                eprintln!(
                    "metal-cli: the wipe of {mac} was not started: {}; the machine is still on (retire again, or without --wipe)",
                    data.reason
                );
                return Ok(ExitCode::FAILURE);
            }
            subjects::POWER_DONE => {
                let data: PowerDone = data(&answer)?;
                if data.provision_id != Some(retire_id) {
                    continue;
                }
                if !json {
                    println!("{}", render::power_done(&data));
                }
                if wipe && !powered_on && data.step == PowerStep::Reset {
                    powered_on = true;
                    if !json {
                        println!(
                            "waiting    for the wipe to phone home (boot-api netboots {mac} with the wipe profile)"
                        );
                    }
                    hint = None;
                }
            }
            subjects::POWER_FAILED => {
                let data: PowerFailed = data(&answer)?;
                if data.provision_id != Some(retire_id) {
                    continue;
                }
                eprintln!("{}", render::power_failed(&data));
                eprintln!(
                    "metal-cli: the retirement of {mac} failed (retire_failed); fix what the BMC said and retire again"
                );
                return Ok(ExitCode::FAILURE);
            }
            subjects::WIPE_COMPLETED => {
                let data: WipeCompleted = data(&answer)?;
                if !json {
                    println!("wiped      with profile {}: phoned home", data.profile);
                }
                hint = (!json).then(|| {
                    format!("no word from the BMC for {QUIET_HINT_AFTER:?}: redfish-scraper may be retrying the power-off")
                });
            }
            subjects::INSTALL_FAILED => {
                let data: InstallFailed = data(&answer)?;
                if data.provision_id != retire_id {
                    continue;
                }
                eprintln!(
                    "metal-cli: the wipe of {mac} failed: {} (retire_failed); retire again",
                    data.reason
                );
                return Ok(ExitCode::FAILURE);
            }
            subjects::RETIRED => {
                let data: Retired = data(&answer)?;
                if data.retire_id != retire_id {
                    continue;
                }
                if !json {
                    println!(
                        "retired    {mac} (machine {}) is powered off{}; boot-api never netboots it again until it is onboarded anew (metal-cli onboard {mac})",
                        detail.machine.machine_id,
                        if data.wiped { " and wiped" } else { "" }
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tag_changes_are_checked_before_anything_is_sent() {
        let change = tag_change(
            &words(&["role=storage", "rack=r 12", "empty="]),
            &words(&["old"]),
        )
        .unwrap();
        assert_eq!(change.set["role"], "storage");
        assert_eq!(change.set["rack"], "r 12");
        assert_eq!(change.set["empty"], "");
        assert_eq!(change.removed, ["old"]);
        // Values may hold '='.
        assert_eq!(tag_change(&words(&["k=a=b"]), &[]).unwrap().set["k"], "a=b");
        for (pairs, removed, problem) in [
            (vec![], vec![], "at least one"),
            (vec!["role"], vec![], "not KEY=VALUE"),
            (vec!["=x"], vec![], "tag key"),
            (vec!["bad key=x"], vec![], "tag key"),
            (vec!["k=line\nbreak"], vec![], "one line"),
            (vec!["k=a", "k=b"], vec![], "given twice"),
            (vec!["k=a"], vec!["k"], "both set and removed"),
            (vec![], vec!["no spaces"], "tag key"),
        ] {
            let error = tag_change(&words(&pairs), &words(&removed)).unwrap_err();
            assert!(error.contains(problem), "{pairs:?} {removed:?}: {error}");
        }
    }

    #[test]
    fn profile_names_are_not_empty() {
        assert_eq!(profile_name(" G1 ").unwrap(), "G1");
        assert!(profile_name("  ").is_err());
    }
}
