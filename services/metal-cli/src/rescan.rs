//! `metal-cli rescan` (walk a known machine's BMC again and say what changed) and
//! `metal-cli raw` (write a scrape's raw bundle out as a Redfish mockup folder).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use metal_core::events::{HardwareChanged, HardwareScraped, InventoryRef, RescanRequested};
use metal_core::raw::RawBundle;
use metal_core::{subjects, Decoded, Envelope};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use crate::client::{self, CliError};
use crate::render;

/// Largest raw bundle `raw` downloads.
const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

pub struct RescanOptions {
    pub json: bool,
    pub timeout: Duration,
    pub requested_by: Option<String>,
}

/// Publishes `machine.rescan.requested` for a known machine and follows it: exit 0 with
/// the changes (or none) once the projection holds the new inventory, 1 when the rescan
/// failed (the machine keeps its last inventory).
pub async fn rescan(
    client: &async_nats::Client,
    reference: &str,
    options: RescanOptions,
) -> Result<ExitCode, CliError> {
    let detail = client::machine(client, reference).await?;
    let Some(redfish_url) = detail.machine.redfish_url.clone() else {
        eprintln!(
            "metal-cli: machine {} has no Redfish URL yet (state {}); onboard it first",
            detail.machine.machine_id,
            detail.machine.state.as_str()
        );
        return Ok(ExitCode::FAILURE);
    };
    let request_id = Uuid::new_v4();
    let request = Envelope {
        event_id: request_id,
        event_type: subjects::RESCAN_REQUESTED.to_string(),
        machine_id: Some(detail.machine.machine_id),
        bmc_mac: Some(detail.machine.bmc_mac),
        time: OffsetDateTime::now_utc(),
        correlation_id: request_id,
        causation_id: None,
        data: serde_json::to_value(RescanRequested {
            redfish_url: redfish_url.clone(),
            previous: detail.inventory_event,
            requested_by: options.requested_by,
        })
        .map_err(|e| CliError::Other(format!("cannot encode the rescan request: {e}")))?,
    };
    let js = client::jetstream(client);
    let stream = js
        .get_stream(subjects::STREAM)
        .await
        .map_err(|e| CliError::Other(format!("cannot open the MACHINES stream: {e}")))?;
    let ack = metal_core::jetstream::publish_event(&js, &request).await?;
    if options.json {
        crate::commands::print_json(&request);
    } else {
        eprintln!(
            "rescanning {} at {redfish_url} (request {request_id})",
            detail.machine.bmc_mac
        );
    }
    let followed = tokio::time::timeout(
        options.timeout,
        follow_rescan(client, &stream, ack.sequence, request_id, options.json),
    )
    .await;
    match followed {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "metal-cli: the rescan did not finish within {:?}; `metal-cli history {}` shows how far it got",
                options.timeout, detail.machine.bmc_mac
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn follow_rescan(
    client: &async_nats::Client,
    stream: &async_nats::jetstream::stream::Stream,
    from_sequence: u64,
    request_id: Uuid,
    json: bool,
) -> Result<ExitCode, CliError> {
    let messages = metal_core::jetstream::follow_stream(stream, from_sequence).await?;
    let mut messages = std::pin::pin!(messages);
    let mut changes: Option<HardwareChanged> = None;
    let mut scraped: Option<Envelope> = None;
    while let Some(item) = messages.next().await {
        let event = match item?.decode() {
            Decoded::Event(event)
                if event.correlation_id == request_id
                    && event.event_type != subjects::RESCAN_REQUESTED =>
            {
                event
            }
            _ => continue,
        };
        if json {
            crate::commands::print_json(&event);
        }
        match event.event_type.as_str() {
            subjects::HARDWARE_CHANGED => changes = event.data_as().ok(),
            subjects::HARDWARE_SCRAPED => {
                scraped = Some(event);
                break;
            }
            subjects::SCRAPE_FAILED => {
                if !json {
                    eprintln!("{}", render::progress(&event));
                    eprintln!("the machine keeps its last inventory");
                }
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
    }
    let Some(scraped) = scraped else {
        return Err(CliError::Other(
            "the stream ended before the rescan was answered".to_string(),
        ));
    };
    // Success means the projection holds the new inventory.
    let machine_id = scraped
        .machine_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    client::poll_machine(client, &machine_id, |detail| {
        detail
            .inventory_event
            .is_some_and(|r| r.event_id == scraped.event_id)
            .then_some(())
    })
    .await?;
    if !json {
        eprintln!("{}", render::progress(&scraped));
        println!("{}", render::hardware_changes(changes.as_ref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the raw bundle of a machine's scrape (its latest, or the `machine.hardware.scraped`
/// at `sequence`) as a mockup folder at `output` (default `raw-<mac>-<sequence>`).
pub async fn raw(
    client: &async_nats::Client,
    reference: &str,
    sequence: Option<u64>,
    output: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let detail = client::machine(client, reference).await?;
    let mac = detail.machine.bmc_mac;
    let sequence = match (sequence, detail.inventory_event) {
        (Some(sequence), _) => sequence,
        (None, Some(InventoryRef { sequence, .. })) => sequence,
        (None, None) => {
            eprintln!("metal-cli: machine {mac} has no inventory yet, so no raw bundle");
            return Ok(ExitCode::FAILURE);
        }
    };
    let js = client::jetstream(client);
    let stream = js
        .get_stream(subjects::STREAM)
        .await
        .map_err(|e| CliError::Other(format!("cannot open the MACHINES stream: {e}")))?;
    let message = metal_core::jetstream::read_message(&stream, sequence)
        .await
        .map_err(|e| {
            CliError::Other(format!(
                "cannot read stream sequence {sequence}: {}",
                metal_core::error_chain(&e)
            ))
        })?;
    let event = match message.decode() {
        Decoded::Event(event)
            if event.event_type == subjects::HARDWARE_SCRAPED
                && event.machine_id == Some(detail.machine.machine_id) =>
        {
            event
        }
        _ => {
            eprintln!(
                "metal-cli: sequence {sequence} is a {} message, not a machine.hardware.scraped of {mac}; `metal-cli history {mac}` lists its scrapes",
                message.subject
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let data: HardwareScraped = event
        .data_as()
        .map_err(|e| CliError::Other(format!("sequence {sequence}: {e}")))?;
    let Some(raw) = data.raw else {
        eprintln!(
            "metal-cli: the scrape at sequence {sequence} kept no raw bundle (it predates raw bundles)"
        );
        return Ok(ExitCode::FAILURE);
    };
    let store = js
        .get_object_store(&raw.bucket)
        .await
        .map_err(|e| CliError::Other(format!("cannot open object store {}: {e}", raw.bucket)))?;
    let mut object = store
        .get(&raw.key)
        .await
        .map_err(|e| CliError::Other(format!("cannot read raw bundle {}: {e}", raw.key)))?;
    let mut gzip = Vec::new();
    (&mut object)
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut gzip)
        .await
        .map_err(|e| CliError::Other(format!("cannot read raw bundle {}: {e}", raw.key)))?;
    if gzip.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(CliError::Other(format!(
            "raw bundle {} is larger than {MAX_BUNDLE_BYTES} bytes",
            raw.key
        )));
    }
    let sha256 = metal_core::raw::sha256_hex(&gzip);
    if sha256 != raw.sha256 {
        return Err(CliError::Other(format!(
            "raw bundle {} does not match its event (SHA-256 {sha256}, event says {})",
            raw.key, raw.sha256
        )));
    }
    let bundle = RawBundle::decode(&gzip).map_err(|e| {
        CliError::Other(format!(
            "raw bundle {}: {}",
            raw.key,
            metal_core::error_chain(&e)
        ))
    })?;
    let dir = output.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from(format!(
            "raw-{}-{sequence}",
            mac.to_string().replace(':', "")
        ))
    });
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        eprintln!(
            "metal-cli: {} exists and is not empty; give another --output",
            dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    let written = bundle
        .write_mockup(&dir)
        .map_err(|e| CliError::Other(metal_core::error_chain(&e)))?;
    eprintln!(
        "wrote {written} Redfish documents of {} (sequence {sequence}) to {}; serve them with: redfish-mockup-server --dir {}",
        bundle.redfish_url,
        dir.display(),
        dir.display()
    );
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}
