//! One function per subcommand. Each prints to stdout (results) and stderr (progress,
//! errors) and returns the process exit code: 0 success, 1 failure, 2 bad usage.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use metal_core::events::{HardwareInvalid, SpecAssigned};
use metal_core::ids::derived_event_id;
use metal_core::locate::{LocateReply, LocateRequest};
use metal_core::query::{History, MachineList, MachineRef, MachineState, ReplayReport, Status};
use metal_core::{subjects, Decoded, Envelope, Mac, MachineId};
use uuid::Uuid;

use crate::client::{self, CliError};
use crate::render;

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A lookup may wait on a slow source (each has 20 s at most).
const LOCATE_TIMEOUT: Duration = Duration::from_secs(30);
/// After this long without an answer, `onboard` says once what might be missing.
const QUIET_HINT_AFTER: Duration = Duration::from_secs(10);

pub struct OnboardOptions {
    /// A hardware spec to assign with the request (`machine.spec.assigned`).
    pub expect: Option<String>,
    pub no_wait: bool,
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// A MAC given on the command line; bad usage (exit 2) with the reason otherwise.
pub fn device_mac(verb: &str, text: &str) -> Result<Mac, ExitCode> {
    Mac::parse_device(text).map_err(|error| {
        eprintln!("metal-cli: cannot {verb} {text:?}: {error}");
        ExitCode::from(2)
    })
}

/// Prints `value` as JSON, or as `render` formats it for people.
fn print_as<T: serde::Serialize>(value: &T, json: bool, render: fn(&T) -> String) {
    if json {
        print_json(value);
    } else {
        println!("{}", render(value));
    }
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("metal-cli: cannot encode JSON: {error}"),
    }
}

/// Publishes an onboarding request and, unless `no_wait`, follows it until the
/// machine is inventoried (exit 0) or the request failed (exit 1).
pub async fn onboard(
    client: &async_nats::Client,
    mac_text: &str,
    options: OnboardOptions,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("onboard", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let machine_id = MachineId::from_bmc_mac(&mac);
    // NATS may be away for a while: storing the request waits for it, within the timeout.
    let deadline = tokio::time::Instant::now() + options.timeout;
    let (request_id, ack) = request_onboarding(client, mac, &options, deadline).await?;
    if options.json {
        print_json(&serde_json::json!({
            "request_id": request_id, "machine_id": machine_id, "bmc_mac": mac, "sequence": ack.sequence
        }));
    } else {
        eprintln!("onboarding {mac} as machine {machine_id} (request {request_id})");
    }
    if options.no_wait {
        if !options.json {
            println!("{request_id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    match tokio::time::timeout_at(
        deadline,
        follow(
            client,
            &client::jetstream(client),
            ack.sequence,
            request_id,
            mac,
            options.json,
            options.expect.is_some(),
        ),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => {
            let validator = if options.expect.is_some() {
                " (with --expect it also waits for the validator's verdict: is the validator running?)"
            } else {
                ""
            };
            eprintln!(
                "metal-cli: {mac} was not inventoried within {:?}{validator}; `metal-cli history {mac}` shows how far it got",
                options.timeout
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Publishes the onboarding request of `mac` (and its spec assignment with `--expect`),
/// waiting for NATS until `deadline`; the request id and where the stream stored it.
pub(crate) async fn request_onboarding(
    client: &async_nats::Client,
    mac: Mac,
    options: &OnboardOptions,
    deadline: tokio::time::Instant,
) -> Result<(Uuid, async_nats::jetstream::publish::PublishAck), CliError> {
    let machine_id = MachineId::from_bmc_mac(&mac);
    let request_id = Uuid::new_v4();
    let request = serde_json::json!({
        "bmc_mac": mac.to_string(),
        "request_id": request_id,
        "requested_by": options.requested_by,
    });
    let ack = client::publish_until_stored(
        client,
        subjects::ONBOARD_REQUESTED,
        &request_id.to_string(),
        request.to_string().into(),
        deadline,
    )
    .await?;
    if let Some(spec) = &options.expect {
        // Published after the request, so the projection has the machine when it applies
        // the assignment, and before the scrape, so the validator sees it with the inventory.
        let assignment = Envelope {
            event_id: derived_event_id(request_id, subjects::SPEC_ASSIGNED),
            event_type: subjects::SPEC_ASSIGNED.to_string(),
            machine_id: Some(machine_id),
            bmc_mac: Some(mac),
            time: time::OffsetDateTime::now_utc(),
            correlation_id: request_id,
            causation_id: Some(request_id),
            data: serde_json::to_value(SpecAssigned {
                spec: spec.clone(),
                requested_by: options.requested_by.clone(),
            })
            .map_err(|e| CliError::Other(format!("cannot encode the spec assignment: {e}")))?,
        };
        client::publish_until_stored(
            client,
            subjects::SPEC_ASSIGNED,
            &assignment.event_id.to_string(),
            assignment.to_json_bytes().into(),
            deadline,
        )
        .await?;
    }
    Ok((request_id, ack))
}

async fn follow(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    from_sequence: u64,
    request_id: Uuid,
    mac: Mac,
    json: bool,
    expect: bool,
) -> Result<ExitCode, CliError> {
    let machine_id = MachineId::from_bmc_mac(&mac);
    let mut invalid = None;
    let stream = js
        .get_stream(subjects::STREAM)
        .await
        .map_err(|e| CliError::Other(format!("cannot open the MACHINES stream: {e}")))?;
    let messages = metal_core::jetstream::follow_stream(&stream, from_sequence).await?;
    let mut messages = std::pin::pin!(messages);
    let mut heard_or_hinted = false;
    loop {
        let item = if heard_or_hinted || json {
            messages.next().await
        } else {
            match tokio::time::timeout(QUIET_HINT_AFTER, messages.next()).await {
                Ok(item) => item,
                Err(_) => {
                    eprintln!(
                        "waiting    nothing has answered the request for {QUIET_HINT_AFTER:?}: no locator source may see the BMC yet (`metal-cli locate {mac}` shows what each says; the locator keeps looking until its deadline), or the locator is not running against this NATS server"
                    );
                    heard_or_hinted = true;
                    continue;
                }
            }
        };
        let Some(item) = item else { break };
        let message = item?;
        let event = match message.decode() {
            Decoded::Event(event) if event.correlation_id == request_id => event,
            _ => continue,
        };
        if event.event_type == subjects::ONBOARD_REQUESTED {
            continue;
        }
        heard_or_hinted = true;
        if json {
            print_json(&event);
        } else {
            eprintln!("{}", render::progress(&event));
        }
        match event.event_type.as_str() {
            subjects::HARDWARE_SCRAPED if !expect => break,
            subjects::HARDWARE_VALIDATED => break,
            subjects::HARDWARE_INVALID => {
                invalid = event.data_as::<HardwareInvalid>().ok();
                break;
            }
            subjects::LOCATE_FAILED | subjects::SCRAPE_FAILED | subjects::ONBOARD_REJECTED => {
                return Ok(ExitCode::FAILURE)
            }
            _ => {}
        }
    }
    // The scrape is in the log; success means the projection has folded it in.
    let detail = client::poll_machine(client, &machine_id.to_string(), |detail| {
        (detail.machine.correlation_id == request_id
            && (detail.machine.state == MachineState::Inventoried
                || detail.machine.state.is_failed()))
        .then_some(detail)
    })
    .await?;
    if detail.machine.state.is_failed() {
        eprintln!(
            "metal-cli: {}: {}",
            detail.machine.state.as_str(),
            detail.machine.state_reason.unwrap_or_default()
        );
        return Ok(ExitCode::FAILURE);
    }
    if json {
        print_json(&detail);
    } else {
        eprintln!("inventoried");
        println!("{}", render::machine_detail(&detail));
    }
    if let Some(invalid) = invalid {
        if !json {
            eprintln!(
                "metal-cli: the hardware breaks spec {}:\n{}",
                invalid.spec,
                crate::expect::failure_lines(&invalid)
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What every locator source says about a MAC now: exit 0 when some source sees it.
pub async fn locate(
    client: &async_nats::Client,
    mac_text: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("locate", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let reply: LocateReply = client::query(
        client,
        subjects::LOCATE,
        &LocateRequest {
            bmc_mac: mac.to_string(),
        },
        LOCATE_TIMEOUT,
    )
    .await?;
    print_as(&reply, json, render::locate);
    Ok(if reply.located.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `metal-cli machines`: every machine, retired ones only with `all`.
pub async fn machines(
    client: &async_nats::Client,
    json: bool,
    all: bool,
) -> Result<ExitCode, CliError> {
    let mut list: MachineList = client::query(
        client,
        subjects::QUERY_MACHINES,
        &serde_json::json!({}),
        QUERY_TIMEOUT,
    )
    .await?;
    let hidden = if all { 0 } else { hide_retired(&mut list) };
    print_as(&list, json, render::machine_table);
    note_if_behind(client).await;
    if hidden > 0 {
        eprintln!("{hidden} retired machine(s) hidden (metal-cli machines --all shows them)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes retired machines out of `list`; how many.
pub fn hide_retired(list: &mut MachineList) -> usize {
    let before = list.machines.len();
    list.machines
        .retain(|row| row.state != metal_core::query::MachineState::Retired);
    before - list.machines.len()
}

fn reference(text: &str) -> MachineRef {
    MachineRef {
        machine: text.trim().to_string(),
    }
}

pub async fn show(
    client: &async_nats::Client,
    machine: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let detail = client::machine(client, machine).await?;
    print_as(&detail, json, render::machine_detail);
    note_if_behind(client).await;
    Ok(ExitCode::SUCCESS)
}

pub async fn history(
    client: &async_nats::Client,
    machine: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let history: History = client::query(
        client,
        subjects::QUERY_HISTORY,
        &reference(machine),
        QUERY_TIMEOUT,
    )
    .await?;
    print_as(&history, json, render::history);
    note_if_behind(client).await;
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr when the inventory answering was behind the stream: what was printed may
/// be missing the newest events. Silent when it was not, or cannot tell.
async fn note_if_behind(client: &async_nats::Client) {
    let status: Result<Status, _> = client::query(
        client,
        subjects::QUERY_STATUS,
        &serde_json::json!({}),
        QUERY_TIMEOUT,
    )
    .await;
    if let Some(note) = status.ok().as_ref().and_then(behind_note) {
        eprintln!("{note}");
    }
}

/// The note for a projection that has not applied the whole stream, if it has not.
pub fn behind_note(status: &Status) -> Option<String> {
    let behind = status.behind().filter(|behind| *behind > 0)?;
    Some(format!(
        "metal-cli: note: the inventory is {behind} event(s) behind the stream (applied {} of {}); \
         the newest may be missing above",
        status.last_sequence,
        status.last_sequence + behind
    ))
}

pub async fn replay(
    client: &async_nats::Client,
    json: bool,
    timeout: Duration,
) -> Result<ExitCode, CliError> {
    let progress = crate::many::bar(0, "replaying ");
    // The projector reports how far the rebuild has got in its status meanwhile.
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let status: Result<Status, _> = client::query(
                client,
                subjects::QUERY_STATUS,
                &serde_json::json!({}),
                Duration::from_secs(2),
            )
            .await;
            if let Some(replay) = status.ok().and_then(|s| s.replay) {
                progress.set_length(replay.target_sequence);
                progress.set_position(replay.applied.min(replay.target_sequence));
            }
        }
    };
    let request = serde_json::json!({});
    let replayed = client::query(client, subjects::QUERY_REPLAY, &request, timeout);
    let report: Result<ReplayReport, CliError> = tokio::select! {
        report = replayed => report,
        never = watch => never,
    };
    progress.finish_and_clear();
    let report = report?;
    print_as(&report, json, render::replay);
    Ok(if report.identical || report.repaired_damage.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn export(
    client: &async_nats::Client,
    output: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_message("exporting");
    let export = client::export(client, Duration::from_secs(30), |bytes| {
        progress.set_message(format!(
            "exporting: {} received",
            indicatif::HumanBytes(bytes as u64)
        ));
        progress.tick();
    })
    .await;
    progress.finish_and_clear();
    let export = export?;
    // `-` is stdout, as for most tools, not a file named "-".
    match output.filter(|path| *path != Path::new("-")) {
        Some(path) => std::fs::write(path, &export.bytes)
            .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&export.bytes)
                .and_then(|_| stdout.flush())
                .map_err(|e| CliError::Other(format!("cannot write the export: {e}")))?;
        }
    }
    eprintln!(
        "export: {} bytes at stream sequence {}, {}",
        export.bytes.len(),
        export.sequence,
        export.digest
    );
    Ok(ExitCode::SUCCESS)
}
