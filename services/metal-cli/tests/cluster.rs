//! A three-node NATS cluster (three nats-server processes on loopback, routed to each
//! other) with the MACHINES stream and the machine-raw bucket at three replicas, as an
//! operator sets them up. The locator, the scraper and the projector, given all three
//! URLs, onboard a fleet of fake BMCs; midway the stream's leader is killed, and started
//! again later. Nothing is restarted by hand: every machine ends inventoried, with one
//! `bmc.located` and one `hardware.scraped` per request, and the projection equals a fresh
//! projection of the log.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use metal_core::config::{Config, StaticBmc};
use metal_core::jetstream::stream_config;
use metal_core::{subjects, Mac};
use metal_projection::Projection;
use test_harness::fake_bmc::{FakeBmcSpec, FakeFleet};
use test_harness::nats::NatsCluster;
use tokio::time::Instant;

const MACHINES: usize = 30;

fn bmc_mac(index: usize) -> Mac {
    Mac::parse_any(&format!("02:c1:00:00:00:{index:02x}")).unwrap()
}

/// Publishes an onboarding request for `mac` (its MAC as the message id, so a retry is
/// stored once), retrying while the cluster elects a leader.
async fn request(js: &jetstream::Context, mac: Mac) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            mac.to_string().as_str(),
        );
        let stored = match js
            .publish_with_headers(subjects::ONBOARD_REQUESTED, headers, mac.to_string().into())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match stored {
            Ok(()) => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot request {mac}: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// How many events of each subject the stream holds, per machine; `None` when the stream
/// cannot be read right now (its leader is being elected).
async fn try_counts(client: &async_nats::Client) -> Option<BTreeMap<(String, String), usize>> {
    let mut counts = BTreeMap::new();
    for message in test_harness::stream::try_read_all(client).await.ok()? {
        if let metal_core::envelope::Decoded::Event(event) = message.decode() {
            let machine = event.machine_id.map(|m| m.to_string()).unwrap_or_default();
            *counts.entry((event.event_type, machine)).or_default() += 1;
        }
    }
    Some(counts)
}

/// [`try_counts`], retried for up to a minute.
async fn counts(client: &async_nats::Client) -> BTreeMap<(String, String), usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(counts) = try_counts(client).await {
            return counts;
        }
        assert!(Instant::now() < deadline, "the stream cannot be read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn scraped(counts: &BTreeMap<(String, String), usize>) -> usize {
    counts
        .keys()
        .filter(|(subject, _)| subject == subjects::HARDWARE_SCRAPED)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_leader_dies_mid_onboarding_and_the_services_carry_on() {
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let client = metal_core::jetstream::connect(&urls, "test").await.unwrap();
    let js = jetstream::new(client.clone());

    // The operator's step for a cluster: the stream and the bucket at three replicas.
    let mut machines = stream_config().unwrap();
    machines.num_replicas = 3;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = js.create_stream(machines.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the cluster never took the stream: {error}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: subjects::RAW_BUCKET.to_string(),
        storage: jetstream::stream::StorageType::File,
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();

    let fleet = FakeFleet::start(vec![
        FakeBmcSpec::synthetic()
            .latency(Duration::from_millis(100));
        MACHINES
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        nats_url: urls.clone(),
        ..Config::default()
    };
    config.locator.static_bmcs = (0..MACHINES)
        .map(|i| StaticBmc {
            bmc_mac: bmc_mac(i),
            address: fleet.base_url(i),
        })
        .collect();
    config.redfish.request_timeout_secs = 5;
    config.projector.database = dir.path().join("inventory.db");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let connect = |name: &'static str| {
        let urls = urls.clone();
        async move { metal_core::jetstream::connect(&urls, name).await.unwrap() }
    };
    let mut services = Vec::new();
    {
        let (config, client, shutdown) = (config.clone(), connect("locator").await, shutdown());
        services.push(tokio::spawn(async move {
            locator::run(&config, client, shutdown)
                .await
                .expect("locator");
        }));
    }
    {
        let (config, client, shutdown) =
            (config.clone(), connect("redfish-scraper").await, shutdown());
        services.push(tokio::spawn(async move {
            redfish_scraper::run(config, client, shutdown)
                .await
                .expect("redfish-scraper");
        }));
    }
    {
        let (config, client, shutdown) = (
            config.clone(),
            connect("inventory-projector").await,
            shutdown(),
        );
        services.push(tokio::spawn(async move {
            inventory_projector::run(&config.projector, client, shutdown)
                .await
                .expect("inventory-projector");
        }));
    }

    // Half the fleet, then the stream's leader dies while they are being scraped.
    for i in 0..MACHINES / 2 {
        request(&js, bmc_mac(i)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while scraped(&counts(&client).await) < 3 {
        assert!(Instant::now() < deadline, "nothing was scraped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stream = js.get_stream(subjects::STREAM).await.unwrap();
    let leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|cluster| cluster.leader)
        .expect("the stream has a leader");
    cluster.node(&leader).kill();
    let killed = Instant::now();

    // The other half while it is away; it comes back before the end.
    for i in MACHINES / 2..MACHINES {
        request(&js, bmc_mac(i)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut restarted = false;
    loop {
        if !restarted && killed.elapsed() > Duration::from_secs(5) {
            cluster.node(&leader).start_again();
            restarted = true;
        }
        let now = counts(&client).await;
        let done = scraped(&now);
        if done == MACHINES && restarted {
            eprintln!(
                "every machine scraped {:?} after the stream leader {leader} was killed",
                killed.elapsed()
            );
            break;
        }
        if Instant::now() >= deadline {
            let mut consumers = Vec::new();
            for name in ["locator", "redfish-scraper"] {
                consumers.push(format!(
                    "{:?}",
                    stream.consumer_info(name).await.map(|i| (
                        i.num_pending,
                        i.num_ack_pending,
                        i.num_redelivered,
                        i.num_waiting,
                        i.delivered.stream_sequence,
                        i.ack_floor.stream_sequence,
                        i.cluster.and_then(|c| c.leader),
                    ))
                ));
            }
            let unscraped: Vec<_> = (0..MACHINES)
                .filter(|i| {
                    let machine = metal_core::MachineId::from_bmc_mac(&bmc_mac(*i)).to_string();
                    !now.contains_key(&(subjects::HARDWARE_SCRAPED.to_string(), machine))
                })
                .map(|i| {
                    let machine = metal_core::MachineId::from_bmc_mac(&bmc_mac(i)).to_string();
                    let events: Vec<_> = now.iter().filter(|((_, m), _)| *m == machine).collect();
                    format!("machine {i}: {events:?}")
                })
                .collect();
            panic!(
                "{done} of {MACHINES} machines scraped after the leader {leader} died; \
                 unscraped: {unscraped:?}; consumers (pending, ack pending, redelivered, \
                 waiting, delivered, ack floor, leader): {consumers:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The projector follows to the end of the stream on its own.
    let end = stream.info().await.unwrap().state.last_sequence;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .request(subjects::QUERY_STATUS, "{}".into())
            .await
            .ok()
            .and_then(|reply| {
                serde_json::from_slice::<metal_core::query::Status>(&reply.payload).ok()
            });
        if status.as_ref().map(|s| s.last_sequence) == Some(end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projector is at {status:?}, the stream at {end}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(true);
    for service in services {
        tokio::time::timeout(Duration::from_secs(30), service)
            .await
            .expect("a service stops")
            .expect("a service task");
    }

    let counts = counts(&client).await;
    for i in 0..MACHINES {
        let machine = metal_core::MachineId::from_bmc_mac(&bmc_mac(i)).to_string();
        for subject in [
            subjects::ONBOARD_REQUESTED,
            subjects::BMC_LOCATED,
            subjects::HARDWARE_SCRAPED,
        ] {
            assert_eq!(
                counts.get(&(subject.to_string(), machine.clone())),
                Some(&1),
                "{subject} of machine {i}"
            );
        }
    }
    let failures: Vec<_> = counts
        .keys()
        .filter(|(subject, _)| {
            subject == subjects::SCRAPE_FAILED
                || subject == subjects::LOCATE_FAILED
                || subject == subjects::INPUT_ABANDONED
        })
        .collect();
    assert!(failures.is_empty(), "failures: {failures:?}");

    let mut fresh = Projection::open_in_memory().unwrap();
    for message in test_harness::stream::read_all(&client).await {
        fresh.apply(&message).unwrap();
    }
    let live = Projection::open(&config.projector.database).unwrap();
    assert!(
        live.canonical_export().unwrap() == fresh.canonical_export().unwrap(),
        "the projection differs from a fresh projection of the log"
    );
    assert_eq!(live.machines().unwrap().machines.len(), MACHINES);
}
