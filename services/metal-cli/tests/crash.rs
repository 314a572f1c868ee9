//! Crash anywhere: the real service binaries (locator, redfish-scraper, inventory-projector,
//! validator, boot-api), each its own process, onboard and provision a fleet of fake BMCs
//! (1,000 unless `METAL_CRASH_MACHINES` says otherwise) while a chaos thread kills one of
//! them, or nats-server itself, with SIGKILL every second or two and starts it again,
//! until every machine has netbooted and phoned home and every one was killed at least
//! [`MIN_KILLS`] times. The test plays the operator (requests published straight to
//! JetStream, with ids, as metal-cli does), Pixiecore (`GET /v1/boot/<mac>`) and the
//! installer (the phone-home with the token boot-api rendered).
//!
//! At the end: every machine inventoried, validated, armed, power-cycled and installed
//! exactly once; no event twice for one cause; no failure, rejection or dead letter; the
//! projector's file and boot-api's equal a fresh projection of the log. It prints how long
//! each kind of process took to be at work again after a restart.
//!
//! The binaries are those `cargo test --workspace` builds (`test_harness::service::
//! workspace_binary`): run alone, build them first (`cargo build --workspace --bins`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use bytes::Bytes;
use metal_core::events::{PowerDone, PowerStep};
use metal_core::ids::METAL_NAMESPACE;
use metal_core::jetstream::{publish_encoded_patiently, publish_event_patiently, StoredMessage};
use metal_core::{subjects, Decoded, Envelope, Mac, MachineId};
use metal_projection::{BootRecords, Projection};
use test_harness::fake_bmc::{self, FakeBmcSpec, FakeFleet, PowerSpec, ResetTypes};
use test_harness::nats::{free_port, NatsServer};
use test_harness::service::Service;
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

mod common;

const SERVICES: [&str; 5] = [
    "locator",
    "redfish-scraper",
    "inventory-projector",
    "validator",
    "boot-api",
];
/// Every process the chaos thread kills: the services and the NATS server.
const NATS: &str = "nats-server";
/// Each victim is killed at least this often.
const MIN_KILLS: u32 = 3;
const PROFILE: &str = common::PROCESS_PROFILE;
/// Every BMC answers each request after this long, so scrapes overlap the kills.
const BMC_LATENCY: Duration = Duration::from_millis(20);
/// How long the operator's requests wait for NATS to store them (it may be restarting).
const PATIENCE: Duration = Duration::from_secs(120);
/// The whole run, chaos included, must be over by then.
const RUN_DEADLINE: Duration = Duration::from_secs(900);

fn fleet_size() -> usize {
    std::env::var("METAL_CRASH_MACHINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

fn bmc_mac(index: usize) -> Mac {
    Mac::parse_any(&fake_bmc::synthetic_bmc_mac(index)).expect("synthetic MAC")
}

fn host_mac(index: usize) -> String {
    fake_bmc::synthetic_host_macs(index)[0].clone()
}

/// One process the chaos thread killed, and when it was running again.
#[derive(Debug, Clone)]
struct Kill {
    victim: &'static str,
    killed: SystemTime,
    restarted: SystemTime,
}

/// What the test has read of the stream so far, per machine.
#[derive(Debug, Default)]
struct Seen {
    next: u64,
    messages: Vec<StoredMessage>,
    scraped: HashSet<MachineId>,
    validated: HashSet<MachineId>,
    reset: HashSet<MachineId>,
    installed: HashSet<MachineId>,
}

impl Seen {
    fn take(&mut self, message: StoredMessage) {
        self.next = message.sequence + 1;
        if let Decoded::Event(event) = message.decode() {
            if let Some(machine) = event.machine_id {
                match event.event_type.as_str() {
                    subjects::HARDWARE_SCRAPED => {
                        self.scraped.insert(machine);
                    }
                    subjects::HARDWARE_VALIDATED => {
                        self.validated.insert(machine);
                    }
                    subjects::POWER_DONE
                        if event
                            .data_as::<PowerDone>()
                            .is_ok_and(|d| d.step == PowerStep::Reset) =>
                    {
                        self.reset.insert(machine);
                    }
                    subjects::INSTALL_COMPLETED => {
                        self.installed.insert(machine);
                    }
                    _ => {}
                }
            }
        }
        self.messages.push(message);
    }
}

/// Kills a victim at a random moment every 0.5 to 2 s and starts it again 0 to 1 s later,
/// going round every victim in a fresh random order, until `stop` is set and each was
/// killed [`MIN_KILLS`] times. Leaves everything running.
fn chaos(
    services: &mut [Service],
    nats: &mut NatsServer,
    stop: &AtomicBool,
    seed: u64,
) -> Vec<Kill> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = Vec::new();
    let mut round = 0;
    loop {
        let mut order: Vec<usize> = (0..=services.len()).collect();
        rng.shuffle(&mut order);
        for victim in order {
            std::thread::sleep(Duration::from_millis(rng.u64(500..2000)));
            let killed = SystemTime::now();
            let name = if victim == services.len() {
                nats.kill();
                std::thread::sleep(Duration::from_millis(rng.u64(0..1000)));
                nats.start_again();
                NATS
            } else {
                let service = &mut services[victim];
                service.kill();
                std::thread::sleep(Duration::from_millis(rng.u64(0..1000)));
                service
                    .start()
                    .unwrap_or_else(|e| panic!("cannot restart {}: {e}", service.name()));
                SERVICES[victim]
            };
            kills.push(Kill {
                victim: name,
                killed,
                restarted: SystemTime::now(),
            });
        }
        round += 1;
        if round >= MIN_KILLS && stop.load(Ordering::SeqCst) {
            return kills;
        }
    }
}

/// The types each service produces, to tell when it was at work again.
fn producer(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        subjects::BMC_LOCATED | subjects::LOCATE_FAILED | subjects::ONBOARD_REJECTED => "locator",
        subjects::HARDWARE_SCRAPED
        | subjects::SCRAPE_FAILED
        | subjects::POWER_DONE
        | subjects::POWER_FAILED => "redfish-scraper",
        subjects::HARDWARE_VALIDATED | subjects::HARDWARE_INVALID => "validator",
        subjects::PROFILE_ASSIGNED
        | subjects::PROVISION_FAILED
        | subjects::BOOT_SERVED
        | subjects::INSTALL_COMPLETED => "boot-api",
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_process_killed_at_random_loses_and_doubles_nothing() {
    let machines = fleet_size();
    fake_bmc::raise_open_file_limit().expect("open file limit");
    let mut nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());

    let power =
        PowerSpec::default().reset_types(ResetTypes::inline(&["On", "ForceOff", "ForceRestart"]));
    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic()
            .latency(BMC_LATENCY)
            .power(power);
        machines
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let boot = format!("127.0.0.1:{}", free_port());
    let boot_url = format!("http://{boot}");
    let config = common::write_process_config(&nats.url(), &fleet, dir.path(), &boot, "");
    let mut services: Vec<Service> = SERVICES
        .iter()
        .map(|name| common::spawn_service(name, &config, &[]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream(subjects::STREAM).await.is_err() {
        for service in &mut services {
            service.check_running().unwrap();
        }
        assert!(Instant::now() < deadline, "no service created the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let seed = std::env::var("METAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test: {machines} machines, chaos seed {seed} (METAL_CRASH_SEED repeats it)");
    let stop_chaos = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let chaos_thread = {
        let stop = stop_chaos.clone();
        std::thread::spawn(move || {
            let kills = chaos(&mut services, &mut nats, &stop, seed);
            (services, nats, kills)
        })
    };

    // The stream, followed by the test as it grows.
    let seen = Arc::new(Mutex::new(Seen {
        next: 1,
        ..Seen::default()
    }));
    let follow_stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (client, seen, stop) = (client.clone(), seen.clone(), follow_stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let from = seen.lock().unwrap().next;
                if let Ok(messages) = test_harness::stream::try_read_from(&client, from).await {
                    let mut seen = seen.lock().unwrap();
                    for message in messages {
                        seen.take(message);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // The operator onboards the whole fleet at once, as `metal-cli onboard --file` would.
    for index in 0..machines {
        let mac = bmc_mac(index);
        let id = Uuid::new_v5(&METAL_NAMESPACE, format!("crash-onboard:{mac}").as_bytes());
        let payload = serde_json::json!({
            "bmc_mac": mac,
            "request_id": id,
            "requested_by": "crash-test",
        });
        publish_encoded_patiently(
            &js,
            subjects::ONBOARD_REQUESTED,
            id,
            Bytes::from(payload.to_string()),
            PATIENCE,
        )
        .await
        .unwrap_or_else(|e| panic!("cannot request {mac}: {}", metal_core::error_chain(&e)));
    }

    // Then provisions each machine once it is validated, and netboots it once its BMC reset
    // it, a few dozen at a time.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut provisioned = vec![false; machines];
    let mut netbooting = vec![false; machines];
    let mut netboots = tokio::task::JoinSet::new();
    let mut uncertain_boots = BTreeMap::new();
    loop {
        let (validated, reset, installed): (Vec<usize>, Vec<usize>, usize) = {
            let seen = seen.lock().unwrap();
            let id = |i: usize| MachineId::from_bmc_mac(&bmc_mac(i));
            (
                (0..machines)
                    .filter(|i| !provisioned[*i] && seen.validated.contains(&id(*i)))
                    .collect(),
                (0..machines)
                    .filter(|i| !netbooting[*i] && seen.reset.contains(&id(*i)))
                    .collect(),
                seen.installed.len(),
            )
        };
        if installed == machines {
            break;
        }
        for index in validated {
            let event = common::provision_request(bmc_mac(index), PROFILE, "crash-test");
            publish_event_patiently(&js, &event, PATIENCE)
                .await
                .unwrap_or_else(|e| panic!("cannot request provisioning: {e}"));
            provisioned[index] = true;
        }
        for index in reset {
            if netboots.len() >= 48 {
                break;
            }
            netbooting[index] = true;
            let (http, boot_url, seen) = (http.clone(), boot_url.clone(), seen.clone());
            let machine = MachineId::from_bmc_mac(&bmc_mac(index));
            netboots.spawn(async move {
                let recorded = || seen.lock().unwrap().installed.contains(&machine);
                (
                    index,
                    common::netboot(&http, &boot_url, &host_mac(index), recorded).await,
                )
            });
        }
        while let Some(done) = netboots.try_join_next() {
            let (index, result) = done.expect("netboot task");
            let report = result.unwrap_or_else(|e| panic!("{e}"));
            if report.uncertain_boots > 0 {
                uncertain_boots.insert(index, report.uncertain_boots);
            }
        }
        if started.elapsed() > RUN_DEADLINE {
            let seen = seen.lock().unwrap();
            panic!(
                "after {RUN_DEADLINE:?}: {} scraped, {} validated, {} provisioned, {} reset, {} installed of {machines}",
                seen.scraped.len(),
                seen.validated.len(),
                provisioned.iter().filter(|p| **p).count(),
                seen.reset.len(),
                seen.installed.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pipeline = started.elapsed();
    stop_chaos.store(true, Ordering::SeqCst);
    let (mut services, _nats, kills) =
        tokio::task::spawn_blocking(move || chaos_thread.join().expect("chaos thread"))
            .await
            .unwrap();
    eprintln!(
        "every machine installed after {pipeline:?}; chaos stopped after {:?} and {} kills",
        started.elapsed(),
        kills.len()
    );

    // Everything runs again: nothing more may come (a redelivery would come within one ack
    // wait), and the projector catches up with the end of the stream.
    let mut stream = js.get_stream(subjects::STREAM).await.unwrap();
    let mut last = 0;
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while quiet_since.elapsed() < Duration::from_secs(12) {
        assert!(Instant::now() < deadline, "the stream never went quiet");
        let now = metal_core::jetstream::last_sequence(&mut stream)
            .await
            .unwrap_or(last);
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .request(subjects::QUERY_STATUS, "{}".into())
            .await
            .ok()
            .and_then(|r| serde_json::from_slice::<metal_core::query::Status>(&r.payload).ok());
        if status.as_ref().map(|s| s.last_sequence) == Some(last) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projector is at {status:?}, the stream at {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for service in &mut services {
        service.check_running().unwrap();
        let status = service.stop(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly ({status:?}); its log: {}",
            service.name(),
            service.log().display()
        );
    }
    follow_stop.store(true, Ordering::SeqCst);
    follower.await.unwrap();
    // The chaos thread kills one process at a time, so every service saw NATS go: the
    // projections say so when they follow again.
    for service in services
        .iter()
        .filter(|s| ["inventory-projector", "boot-api", "validator"].contains(&s.name()))
    {
        let log = std::fs::read_to_string(service.log()).unwrap_or_default();
        assert!(
            log.contains("NATS connection regained: following the stream again"),
            "{} never logged that it followed the stream again after a NATS restart: {}",
            service.name(),
            service.log().display()
        );
    }

    let messages = test_harness::stream::read_all(&client).await;
    assert_eq!(messages.last().map(|m| m.sequence), Some(last));
    let events: Vec<Envelope> = messages
        .iter()
        .filter_map(|m| match m.decode() {
            Decoded::Event(event) => Some(event),
            _ => None,
        })
        .collect();

    // Nothing failed, nothing was given up on.
    let failures: Vec<String> = events
        .iter()
        .filter(|e| {
            [
                subjects::ONBOARD_REJECTED,
                subjects::LOCATE_FAILED,
                subjects::SCRAPE_FAILED,
                subjects::HARDWARE_INVALID,
                subjects::PROVISION_FAILED,
                subjects::POWER_FAILED,
                subjects::INSTALL_FAILED,
                subjects::INSTALL_REJECTED,
                subjects::INPUT_ABANDONED,
                subjects::BOOT_UNKNOWN,
            ]
            .contains(&e.event_type.as_str())
        })
        .map(|e| format!("{} {}", e.event_type, e.data))
        .collect();
    assert!(failures.is_empty(), "failures: {failures:#?}");

    // One answer per cause: no type twice for one causing event (a power step is its own).
    let mut answers: BTreeMap<(Uuid, String, String), usize> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| !subjects::is_boot_record(&e.event_type))
    {
        if let Some(cause) = event.causation_id {
            let step = event.data["step"].as_str().unwrap_or_default().to_string();
            *answers
                .entry((cause, event.event_type.clone(), step))
                .or_default() += 1;
        }
    }
    let doubled: Vec<_> = answers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "answered twice: {doubled:?}");

    // Each machine went through each step exactly once.
    let mut per_machine: HashMap<(MachineId, String), usize> = HashMap::new();
    for event in &events {
        if let Some(machine) = event.machine_id {
            let step = event.data["step"].as_str().unwrap_or_default();
            let kind = if step.is_empty() {
                event.event_type.clone()
            } else {
                format!("{} {step}", event.event_type)
            };
            *per_machine.entry((machine, kind)).or_default() += 1;
        }
    }
    let mut missing_boot_records = 0;
    for index in 0..machines {
        let machine = MachineId::from_bmc_mac(&bmc_mac(index));
        for kind in [
            subjects::ONBOARD_REQUESTED,
            subjects::BMC_LOCATED,
            subjects::HARDWARE_SCRAPED,
            subjects::HARDWARE_VALIDATED,
            subjects::PROVISION_REQUESTED,
            subjects::PROFILE_ASSIGNED,
            "machine.power.done boot_override",
            "machine.power.done reset",
            subjects::INSTALL_COMPLETED,
        ] {
            assert_eq!(
                per_machine.get(&(machine, kind.to_string())),
                Some(&1),
                "{kind} of machine {index}"
            );
        }
        // A boot record is published after the answer: a boot-api killed before it could
        // (NATS away, or the instant in between) loses it (docs/decisions.md). At most one
        // per boot request that reached boot-api.
        let served = per_machine
            .get(&(machine, subjects::BOOT_SERVED.to_string()))
            .copied()
            .unwrap_or(0);
        let requests = 1 + uncertain_boots.get(&index).copied().unwrap_or(0) as usize;
        assert!(
            served <= requests,
            "machine {index}: {served} boot records for {requests} boot requests"
        );
        missing_boot_records += usize::from(served == 0);
    }

    // Both projections equal a fresh one of the log (boot-api's skips the boot records).
    let mut fresh = Projection::open_in_memory().unwrap();
    let mut fresh_boot = Projection::open_in_memory()
        .unwrap()
        .with_boot_records(BootRecords::Skipped);
    for message in &messages {
        fresh.apply(message).unwrap();
        // boot-api's consumer leaves its own boot records on the server (docs/decisions.md).
        if !subjects::is_boot_record(&message.subject) {
            fresh_boot.apply(message).unwrap();
        }
    }
    let projector = Projection::open(&dir.path().join("inventory.db")).unwrap();
    assert!(
        projector.canonical_export().unwrap() == fresh.canonical_export().unwrap(),
        "the projector's file differs from a fresh projection of the log"
    );
    assert_eq!(projector.machines().unwrap().machines.len(), machines);
    let boot_api = Projection::open(&dir.path().join("boot-api.db"))
        .unwrap()
        .with_boot_records(BootRecords::Skipped);
    assert!(
        boot_api.canonical_export().unwrap() == fresh_boot.canonical_export().unwrap(),
        "boot-api's file differs from a fresh projection of the log"
    );

    // How long each was away: from its kill to its first event after the restart (the
    // restart itself comes 0 to 1 s after the kill).
    let mut recoveries: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for kill in kills.iter().filter(|k| k.victim != NATS) {
        let restarted = OffsetDateTime::from(kill.restarted);
        let back = events
            .iter()
            .filter(|e| producer(&e.event_type) == Some(kill.victim) && e.time >= restarted)
            .map(|e| e.time)
            .min();
        if let Some(back) = back {
            recoveries
                .entry(kill.victim)
                .or_default()
                .push((back - OffsetDateTime::from(kill.killed)).as_seconds_f64());
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for kill in &kills {
        *counts.entry(kill.victim).or_default() += 1;
    }
    eprintln!("kills: {counts:?}");
    for (victim, mut seconds) in recoveries {
        seconds.sort_by(f64::total_cmp);
        eprintln!(
            "{victim}: answering again {:.2} s after a kill (median), {:.2} s at most ({} kills with work after them)",
            seconds[seconds.len() / 2],
            seconds[seconds.len() - 1],
            seconds.len()
        );
    }
    eprintln!(
        "{} events; {missing_boot_records} of {machines} netboots left no boot record (boot-api was killed before it could publish them)",
        events.len()
    );
}
