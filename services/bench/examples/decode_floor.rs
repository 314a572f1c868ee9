use metal_core::events::{BmcLocated, HardwareScraped};
use metal_core::{subjects, Envelope, Mac, MachineId};
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mockup = test_harness::paths::redfish_mockups_dir().join("dmtf-public-rackmount1");
    let inventory = redfish_scraper::walk::walk(
        &redfish_scraper::source::MockupDirSource::new(&mockup),
        redfish_scraper::walk::WalkLimits::default(),
    )
    .await?
    .inventory;
    let now = time::OffsetDateTime::now_utc();
    let bmc = Mac::from_bytes([2, 0x4d, 0, 0, 0, 1]);
    let id = uuid::Uuid::new_v4();
    let request = Envelope {
        event_id: id,
        event_type: subjects::ONBOARD_REQUESTED.into(),
        machine_id: Some(MachineId::from_bmc_mac(&bmc)),
        bmc_mac: Some(bmc),
        time: now,
        correlation_id: id,
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
            redfish_url: "x".into(),
            inventory,
            raw: None,
        },
        now,
    )?;
    let bytes = scraped.to_json_bytes();
    println!("scraped payload {} bytes", bytes.len());
    let n = 20000;
    let t = Instant::now();
    for _ in 0..n {
        let v: serde_json::Value = serde_json::from_slice(&bytes)?;
        std::hint::black_box(v);
    }
    println!(
        "Value tree: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let v: Envelope = serde_json::from_slice(&bytes)?;
        let d: HardwareScraped = v.data_as()?;
        std::hint::black_box(d);
    }
    println!(
        "Envelope + data_as: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    #[derive(serde::Deserialize)]
    struct Typed {
        #[allow(dead_code)]
        data: HardwareScraped,
    }
    let t = Instant::now();
    for _ in 0..n {
        let v: Typed = serde_json::from_slice(&bytes)?;
        std::hint::black_box(v);
    }
    println!(
        "typed direct: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let v: serde::de::IgnoredAny = serde_json::from_slice(&bytes)?;
        std::hint::black_box(v);
    }
    println!(
        "IgnoredAny skip: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let typed: HardwareScraped = scraped.data_as()?;
    let t = Instant::now();
    for _ in 0..n {
        let s = serde_json::to_string(&typed.inventory)?;
        std::hint::black_box(s);
    }
    println!(
        "re-encode inventory: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}
