//! The lease-file and neighbour-table sources against a real dnsmasq serving a BMC in a
//! network namespace (root only; see `test_harness::netns`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use locator::sources::leases::{LeaseFile, LeaseFormat};
use locator::sources::neighbour::NeighbourTable;
use locator::sources::{Answer, Source};
use metal_core::Mac;
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
}
