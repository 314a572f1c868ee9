//! Prometheus metrics of every service binary, each its own process with its own
//! `/metrics` listener (five from `[metrics]` of the config, web from `--metrics-listen`):
//! scraped before, during and after the onboarding, provisioning and netboot of a few
//! fake BMCs, the counters of what each did have moved, and the consumers' gauges are
//! there. A listen address that is not one stops a binary at start, naming it.

use std::collections::HashSet;
use std::time::Duration;

use metal_core::{subjects, Decoded, Mac};
use test_harness::fake_bmc::{self, FakeBmcSpec, FakeFleet, PowerSpec, ResetTypes};
use test_harness::nats::{free_ports, NatsServer};
use tokio::time::Instant;
use uuid::Uuid;

mod common;

const MACHINES: usize = 4;

/// The sum of every series of `name` whose labels include all of `labels` (0 when none).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, number) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\""))))
            .then(|| number.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// Whether `text` has a series of `name` at all.
fn has(text: &str, name: &str) -> bool {
    text.lines()
        .any(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
}

async fn scrape(http: &reqwest::Client, address: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(format!("http://{address}/metrics")).send().await {
            if response.status() == 200 {
                return response.text().await.unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing serves http://{address}/metrics"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bmc_mac(index: usize) -> Mac {
    Mac::parse_any(&fake_bmc::synthetic_bmc_mac(index)).unwrap()
}

/// The machines whose stream holds an event of `event_type` (for power, of that step).
async fn machines_with(client: &async_nats::Client, event_type: &str, step: Option<&str>) -> usize {
    let mut machines = HashSet::new();
    for message in test_harness::stream::read_all(client).await {
        if let Decoded::Event(event) = message.decode() {
            if event.event_type == event_type
                && step.is_none_or(|step| event.data["step"].as_str() == Some(step))
            {
                machines.extend(event.machine_id);
            }
        }
    }
    machines.len()
}

async fn wait_for(client: &async_nats::Client, event_type: &str, step: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while machines_with(client, event_type, step).await < MACHINES {
        assert!(
            Instant::now() < deadline,
            "not every machine has {event_type} {step:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_counts_what_it_did_at_its_metrics_listener() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let power =
        PowerSpec::default().reset_types(ResetTypes::inline(&["On", "ForceOff", "ForceRestart"]));
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic()
            .latency(Duration::from_millis(20))
            .power(power);
        MACHINES
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Seven distinct ports at once: boot-api's, then one metrics listener per service.
    let ports = free_ports(7);
    let boot = format!("127.0.0.1:{}", ports[0]);
    let services = [
        "locator",
        "redfish-scraper",
        "inventory-projector",
        "validator",
        "boot-api",
        "web",
    ];
    let listen: Vec<String> = ports[1..]
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let mut section = "[metrics]\n".to_string();
    for (service, address) in services.iter().zip(&listen).take(5) {
        section.push_str(&format!("{} = \"{address}\"\n", service.replace('-', "_")));
    }
    let config = common::write_process_config(&nats.url(), &fleet, dir.path(), &boot, &section);
    let mut running: Vec<_> = services
        .iter()
        .zip(&listen)
        .map(|(service, address)| {
            let flag = ["--metrics-listen", address.as_str()];
            let args: &[&str] = if *service == "web" { &flag } else { &[] };
            common::spawn_service(service, &config, args)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream(subjects::STREAM).await.is_err() {
        assert!(Instant::now() < deadline, "no service created the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    let metrics = |i: usize| scrape(&http, &listen[i]);
    let before = metrics(0).await;
    assert_eq!(
        value(&before, "metal_inputs_total", &[("consumer", "locator")]),
        0.0,
        "the locator counted inputs before any:\n{before}"
    );

    // Onboarding, scraped midway and at the end.
    for index in 0..MACHINES {
        let mac = bmc_mac(index);
        let id = Uuid::new_v4();
        let payload = serde_json::json!({"bmc_mac": mac, "request_id": id});
        metal_core::jetstream::publish_encoded(
            &js,
            subjects::ONBOARD_REQUESTED,
            id,
            payload.to_string().into(),
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while machines_with(&client, subjects::BMC_LOCATED, None).await == 0 {
        assert!(Instant::now() < deadline, "nothing was located");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let midway = metrics(0).await;
    assert!(
        value(
            &midway,
            "metal_inputs_total",
            &[("consumer", "locator"), ("outcome", "answered")]
        ) >= 1.0,
        "the locator counted no answered input midway:\n{midway}"
    );
    wait_for(&client, subjects::HARDWARE_VALIDATED, None).await;

    // Provisioning and netboot.
    for index in 0..MACHINES {
        let event =
            common::provision_request(bmc_mac(index), common::PROCESS_PROFILE, "metrics-test");
        metal_core::jetstream::publish_event(&js, &event)
            .await
            .unwrap();
    }
    wait_for(&client, subjects::POWER_DONE, Some("reset")).await;
    let boot_url = format!("http://{boot}");
    for index in 0..MACHINES {
        let host_mac = fake_bmc::synthetic_host_macs(index)[0].clone();
        common::netboot(&http, &boot_url, &host_mac, || false)
            .await
            .unwrap();
    }
    wait_for(&client, subjects::INSTALL_COMPLETED, None).await;
    let machines = MACHINES as f64;

    // The projections count what they applied once they have followed the stream.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let [locator, scraper, projector, validator, boot_api, web] = [0, 1, 2, 3, 4, 5].map(metrics);
    let (locator, scraper, projector, validator, boot_api, web) = (
        locator.await,
        scraper.await,
        projector.await,
        validator.await,
        boot_api.await,
        web.await,
    );
    let answered = |text: &str, consumer: &str| {
        value(
            text,
            "metal_inputs_total",
            &[("consumer", consumer), ("outcome", "answered")],
        )
    };
    assert!(
        answered(&locator, "locator") >= machines,
        "locator:\n{locator}"
    );
    assert!(
        value(
            &locator,
            "metal_events_published_total",
            &[("type", subjects::BMC_LOCATED)]
        ) >= machines,
        "locator:\n{locator}"
    );
    assert!(
        answered(&scraper, "redfish-scraper") >= 2.0 * machines,
        "scraper (a scrape and a power-on each):\n{scraper}"
    );
    assert!(
        value(
            &scraper,
            "metal_redfish_request_seconds_count",
            &[("outcome", "ok")]
        ) >= 10.0 * machines,
        "scraper's Redfish latency histogram:\n{scraper}"
    );
    assert!(
        has(&scraper, "metal_redfish_request_seconds_bucket"),
        "no histogram buckets:\n{scraper}"
    );
    assert!(
        answered(&validator, "validator") >= machines,
        "validator:\n{validator}"
    );
    assert!(
        answered(&boot_api, "boot-api") >= machines,
        "boot-api's provision answers:\n{boot_api}"
    );
    assert!(
        value(
            &boot_api,
            "metal_boot_requests_total",
            &[("path", "pixiecore"), ("outcome", "served")]
        ) >= machines,
        "boot-api's boot requests:\n{boot_api}"
    );
    assert_eq!(
        value(
            &boot_api,
            "metal_phone_homes_total",
            &[("outcome", "installed")]
        ),
        machines,
        "boot-api's phone-homes:\n{boot_api}"
    );
    for (name, text) in [
        ("locator", &locator),
        ("redfish-scraper", &scraper),
        ("validator", &validator),
        ("boot-api", &boot_api),
    ] {
        assert!(
            has(text, "metal_consumer_pending") && has(text, "metal_consumer_redelivered"),
            "{name} reports no consumer gauges:\n{text}"
        );
        assert!(
            has(text, "metal_input_seconds_bucket"),
            "{name} has no input latency histogram:\n{text}"
        );
    }
    let stream_end = {
        let mut stream = js.get_stream(subjects::STREAM).await.unwrap();
        metal_core::jetstream::last_sequence(&mut stream)
            .await
            .unwrap() as f64
    };
    for (name, text) in [
        ("inventory-projector", &projector),
        ("validator", &validator),
        ("web", &web),
    ] {
        assert!(
            value(text, "metal_projection_applied_total", &[]) >= 6.0 * machines,
            "{name} counted too little applied:\n{text}"
        );
        assert_eq!(
            value(text, "metal_projection_last_sequence", &[]),
            stream_end,
            "{name}'s projection is not at the stream's end:\n{text}"
        );
    }
    for service in &mut running {
        service.check_running().unwrap();
    }
}

#[test]
fn a_metrics_address_that_is_not_one_stops_the_binary_naming_it() {
    for binary in ["locator", "redfish-scraper", "web"] {
        let output = std::process::Command::new(test_harness::service::workspace_binary(binary))
            .args(["--metrics-listen", "localhost"])
            .env_remove("METAL_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary} started: {stderr}");
        assert!(
            stderr.contains("\"localhost\" is not an address and port"),
            "{binary}: {stderr}"
        );
    }
}
