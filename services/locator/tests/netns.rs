//! The lease-file and neighbour-table sources against a real dnsmasq serving a BMC in a
//! network namespace (root only; see `test_harness::netns`), then the locator itself
//! locating that BMC from a request on a real nats-server.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use locator::sources::leases::{LeaseFile, LeaseFormat};
use locator::sources::neighbour::NeighbourTable;
use locator::sources::{Answer, Source};
use metal_core::config::Config;
use metal_core::{subjects, Mac};
use test_harness::nats::NatsServer;
use test_harness::netns::Lan;
use time::OffsetDateTime;

/// Asks `source` until it sees `mac` or `within` passes: dnsmasq writes its lease file
/// just after answering the client, so the first look may come a moment early.
async fn seen(source: &dyn Source, mac: Mac, within: Duration) -> Answer {
    let deadline = Instant::now() + within;
    loop {
        let answer = source.lookup(mac, OffsetDateTime::now_utc()).await;
        if matches!(answer, Answer::Seen(_)) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_leased_by_dnsmasq_is_found_in_its_lease_file_and_neighbour_table() {
    let lan = Lan::start();
    let bmc = Mac::parse_device("02:00:5e:10:00:42").unwrap();
    let stranger = Mac::parse_device("02:00:5e:10:00:99").unwrap();
    let leased = IpAddr::V4(tokio::task::block_in_place(|| lan.take_lease(bmc)));

    let leases = LeaseFile::new(LeaseFormat::Dnsmasq, lan.lease_file());
    let answer = seen(&leases, bmc, Duration::from_secs(5)).await;
    let Answer::Seen(sightings) = &answer else {
        panic!(
            "the lease file does not show {bmc}: {answer:?}\nlease file:\n{}\ndnsmasq log:\n{}",
            std::fs::read_to_string(lan.lease_file()).unwrap_or_default(),
            lan.dnsmasq_log()
        );
    };
    assert_eq!(sightings.len(), 1, "{sightings:?}");
    assert_eq!(sightings[0].ip, Some(leased));
    assert!(sightings[0].current);
    assert!(
        sightings[0].detail.starts_with("lease until "),
        "a 1 h lease: {}",
        sightings[0].detail
    );
    assert_eq!(
        leases.lookup(stranger, OffsetDateTime::now_utc()).await,
        Answer::NotSeen("no lease among 1 unexpired leases".into())
    );

    tokio::task::block_in_place(|| lan.ping_server());
    let neighbours = NeighbourTable::new(lan.neighbour_table());
    let answer = seen(&neighbours, bmc, Duration::from_secs(5)).await;
    let Answer::Seen(sightings) = &answer else {
        panic!(
            "{} does not show {bmc}: {answer:?}\n{}",
            lan.neighbour_table().display(),
            std::fs::read_to_string(lan.neighbour_table()).unwrap_or_default()
        );
    };
    assert_eq!(sightings.len(), 1, "{sightings:?}");
    assert_eq!(sightings[0].ip, Some(leased));
    assert_eq!(
        sightings[0].detail,
        format!("neighbour entry on {}", lan.namespaces().0)
    );
    assert!(matches!(
        neighbours.lookup(stranger, OffsetDateTime::now_utc()).await,
        Answer::NotSeen(_)
    ));

    // The locator, configured with both, answers an onboarding request for the BMC.
    let server = NatsServer::start();
    let client = server.connect().await;
    let mut config = Config {
        nats_url: server.url(),
        ..Config::default()
    };
    config.locator.sources = Some(vec!["dnsmasq".into(), "neighbour".into()]);
    config.locator.dnsmasq_leases = vec![lan.lease_file()];
    config.locator.neighbour = true;
    config.locator.neighbour_table = lan.neighbour_table();
    let _stop = common::spawn_locator(config, server.connect().await);
    metal_core::jetstream::ensure_stream(&async_nats::jetstream::new(client.clone()))
        .await
        .unwrap();
    client
        .publish(subjects::ONBOARD_REQUESTED, bmc.to_string().into())
        .await
        .unwrap();
    let events = test_harness::stream::wait_for_events(
        &client,
        Duration::from_secs(30),
        "the BMC located",
        |events| events.iter().any(|e| e.event_type == subjects::BMC_LOCATED),
    )
    .await;
    let located = events
        .iter()
        .find(|e| e.event_type == subjects::BMC_LOCATED)
        .unwrap();
    assert_eq!(located.data["bmc_ip"], leased.to_string());
    assert_eq!(
        located.data["source"], "dnsmasq",
        "first in locator.sources"
    );
    assert_eq!(
        located.data["source_name"],
        lan.lease_file().display().to_string()
    );
    assert_eq!(located.data["also_seen"][0]["source"], "neighbour");
    assert_eq!(located.data["also_seen"][0]["address"], leased.to_string());
}
