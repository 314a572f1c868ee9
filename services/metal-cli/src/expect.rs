//! `expect`: assign the hardware spec a machine must meet (`machine.spec.assigned`) and
//! show the validator's verdict on its inventory.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use metal_core::events::{HardwareInvalid, SpecAssigned};
use metal_core::subjects;

use crate::client::CliError;
use crate::commands::{device_mac, print_json};
use crate::provision::{answers, known_machine, publish, request};

pub struct ExpectOptions {
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// A spec name as given on the command line.
pub fn spec_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err("the spec needs a name (as in the validator's specs file)".to_string());
    }
    Ok(name.to_string())
}

/// The failed rules of a verdict, one per line.
pub fn failure_lines(invalid: &HardwareInvalid) -> String {
    invalid
        .failures
        .iter()
        .map(|f| format!("  {}: wanted {}, found {}", f.rule, f.wanted, f.found))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Publishes the assignment and waits for the validator's verdict: exit 0 when the
/// hardware meets the spec (or there is no inventory to check yet), 1 when it breaks it.
pub async fn expect(
    client: &async_nats::Client,
    mac_text: &str,
    spec: &str,
    options: ExpectOptions,
) -> Result<ExitCode, CliError> {
    let mac = match device_mac("expect", mac_text) {
        Ok(mac) => mac,
        Err(code) => return Ok(code),
    };
    let spec = match spec_name(spec) {
        Ok(spec) => spec,
        Err(problem) => {
            eprintln!("metal-cli: cannot expect {mac} to meet {spec:?}: {problem}");
            return Ok(ExitCode::from(2));
        }
    };
    let detail = match known_machine(client, "expect", mac).await? {
        Ok(detail) => detail,
        Err(code) => return Ok(code),
    };
    let event = request(
        subjects::SPEC_ASSIGNED,
        &detail,
        SpecAssigned {
            spec: spec.clone(),
            requested_by: options.requested_by,
        },
    )?;
    let (stream, sequence) = publish(client, &event).await?;
    if options.json {
        print_json(&event);
    } else {
        eprintln!(
            "expecting machine {} to meet spec {spec} (request {})",
            detail.machine.machine_id, event.event_id
        );
    }
    if detail.inventory.is_none() {
        if !options.json {
            eprintln!(
                "note       the machine has no inventory yet; the validator checks it once it is scraped"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let verdict = async {
        let answers = answers(&stream, sequence, &event).await?;
        let mut answers = std::pin::pin!(answers);
        while let Some(answer) = answers.next().await {
            let answer = answer?;
            if answer.event_type == subjects::HARDWARE_VALIDATED
                || answer.event_type == subjects::HARDWARE_INVALID
            {
                return Ok(Some(answer));
            }
        }
        Ok::<_, CliError>(None)
    };
    let answer = match tokio::time::timeout(options.timeout, verdict).await {
        Ok(Ok(Some(answer))) => answer,
        Ok(Ok(None)) => return Err(CliError::Other("the stream ended".to_string())),
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            eprintln!(
                "metal-cli: the spec is recorded (stream sequence {sequence}) but no verdict came within {:?}; is the validator running?",
                options.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if options.json {
        print_json(&answer);
    }
    if answer.event_type == subjects::HARDWARE_VALIDATED {
        if !options.json {
            println!("{mac}: hardware meets spec {spec}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    match answer.data_as::<HardwareInvalid>() {
        Ok(invalid) if !options.json => {
            println!(
                "{mac}: hardware breaks spec {spec}:\n{}",
                failure_lines(&invalid)
            );
            eprintln!(
                "metal-cli: provisioning refuses it unless --force; fix the hardware and rescan"
            );
        }
        Ok(_) => {}
        Err(error) => {
            eprintln!("metal-cli: the validator's answer does not decode: {error}");
        }
    }
    Ok(ExitCode::FAILURE)
}
