//! What the benchmark binaries share: the one summary row each adds to the table
//! `scripts/bench` prints at the end, and the stream messages of a realistic onboarding.

pub mod floor;

/// Appends `| bench | size | figure | goal | verdict |` to the file `METAL_BENCH_SUMMARY`
/// names, when it is set (by `scripts/bench`); nothing otherwise. With `METAL_BENCH_QUICK`
/// set (`scripts/bench quick`) the verdict is left out.
pub fn summary_row(bench: &str, size: &str, figure: &str, goal: &str, verdict: &str) {
    let Ok(path) = std::env::var("METAL_BENCH_SUMMARY") else {
        return;
    };
    // A quick run's toy sizes and debug build judge nothing.
    let verdict = if std::env::var_os("METAL_BENCH_QUICK").is_some() {
        "not judged (quick)"
    } else {
        verdict
    };
    let row = format!("| {bench} | {size} | {figure} | {goal} | {verdict} |\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, row.as_bytes()));
    if let Err(error) = written {
        eprintln!("cannot add the summary row to {path}: {error}");
    }
}

/// `met` or `NOT met`.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// A field of /proc/<pid>/status in KiB (`VmHWM`: peak resident set; `VmRSS`: now).
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    use std::io::BufRead;
    let status = std::fs::File::open(format!("/proc/{pid}/status"))?;
    for line in std::io::BufReader::new(status).lines() {
        let line = line?;
        if let Some(rest) = line
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            return Ok(rest.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    anyhow::bail!("no {field} in /proc/{pid}/status")
}

/// Asks the projector's query service `subject` with `payload`, waiting up to `timeout`
/// (the client's own request timeout, 10 s, is shorter than a replay); a service error is
/// an error naming its code and text.
pub async fn ask(
    client: &async_nats::Client,
    subject: &str,
    payload: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<bytes::Bytes> {
    use anyhow::Context;
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::copy_from_slice(payload.as_bytes()))
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.to_string(), request)
        .await
        .with_context(|| format!("{subject} failed or timed out after {timeout:?}"))?;
    if let Some(code) = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
    {
        anyhow::bail!(
            "{subject} answered error {code}: {}",
            String::from_utf8_lossy(&reply.payload)
        );
    }
    Ok(reply.payload)
}

/// The three stream messages (subject, payload) of the onboarding of machine `index`, as the
/// pipeline stores them: the raw JSON request (with a request id from `index`),
/// `machine.bmc.located` and `machine.hardware.scraped` carrying `inventory`.
pub fn onboarding_messages(
    index: u64,
    inventory: metal_core::inventory::Inventory,
    now: time::OffsetDateTime,
) -> anyhow::Result<[(String, bytes::Bytes); 3]> {
    use metal_core::events::{BmcLocated, HardwareScraped};
    use metal_core::{subjects, Envelope, Mac, MachineId};
    let bytes = index.to_be_bytes();
    let bmc = Mac::from_bytes([0x02, 0x4d, bytes[4], bytes[5], bytes[6], bytes[7]]);
    let request_id = uuid::Uuid::from_u64_pair(0x6265_6e63_6800_0000, index);
    let request = Envelope {
        event_id: request_id,
        event_type: subjects::ONBOARD_REQUESTED.into(),
        machine_id: Some(MachineId::from_bmc_mac(&bmc)),
        bmc_mac: Some(bmc),
        time: now,
        correlation_id: request_id,
        causation_id: None,
        data: serde_json::Value::Null,
    };
    let located = Envelope::answering(
        &request,
        subjects::BMC_LOCATED,
        &BmcLocated {
            bmc_ip: Some("127.0.0.1".into()),
            redfish_url: "http://127.0.0.1:8000".into(),
            source: "static".into(),
            ..Default::default()
        },
        now,
    )?;
    let scraped = Envelope::answering(
        &located,
        subjects::HARDWARE_SCRAPED,
        &HardwareScraped {
            redfish_url: "http://127.0.0.1:8000".into(),
            inventory,
            raw: None,
        },
        now,
    )?;
    let raw = serde_json::json!({"bmc_mac": bmc.to_string(), "request_id": request_id});
    Ok([
        (subjects::ONBOARD_REQUESTED.into(), raw.to_string().into()),
        (located.event_type.clone(), located.to_json_bytes().into()),
        (scraped.event_type.clone(), scraped.to_json_bytes().into()),
    ])
}

/// The inventory the scraper walks from the DMTF `public-rackmount1` mockup (in
/// `shared/redfish-mockups`): a realistic rack server's, about 4 KB of JSON.
pub async fn mockup_inventory() -> anyhow::Result<metal_core::inventory::Inventory> {
    use anyhow::Context;
    let mockup = test_harness::paths::redfish_mockups_dir().join("dmtf-public-rackmount1");
    Ok(redfish_scraper::walk::walk(
        &redfish_scraper::source::MockupDirSource::new(&mockup),
        redfish_scraper::walk::WalkLimits::default(),
    )
    .await
    .with_context(|| format!("walking {}", mockup.display()))?
    .inventory)
}
