//! Tidy checks: docs, schemas, nats/ files and examples agree with the code.

use std::time::Duration;

use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
use metal_core::jetstream::{stream_config, DurableConsumer};
use metal_core::subjects;
use test_harness::paths::workspace_root;

fn read(relative: &str) -> String {
    std::fs::read_to_string(workspace_root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

#[test]
fn every_event_subject_is_documented_and_has_a_schema() {
    let catalog = read("docs/events.md");
    for subject in subjects::EVENT_SUBJECTS {
        assert!(
            catalog.contains(subject),
            "docs/events.md does not mention {subject}"
        );
        let schema = workspace_root().join(format!("schemas/events/{subject}.schema.json"));
        assert!(
            schema.is_file(),
            "no schema for {subject} at {}",
            schema.display()
        );
    }
    for subject in [
        subjects::QUERY_MACHINES,
        subjects::QUERY_MACHINE,
        subjects::QUERY_HISTORY,
        subjects::QUERY_EXPORT,
        subjects::QUERY_REPLAY,
        subjects::QUERY_STATUS,
        subjects::QUERY_UNKNOWN,
        subjects::QUERY_DRIFT,
    ] {
        assert!(
            catalog.contains(subject),
            "docs/events.md does not mention {subject}"
        );
        assert!(
            !subject.starts_with("machine."),
            "{subject} would be captured by the stream"
        );
    }
}

#[test]
fn architecture_doc_names_every_crate() {
    let map = read("docs/ARCHITECTURE.md");
    for entry in std::fs::read_dir(workspace_root().join("services")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            map.contains(&format!("services/{name}")),
            "docs/ARCHITECTURE.md has no section for services/{name}"
        );
    }
}

#[test]
fn nats_files_are_what_the_services_load() {
    let stream = stream_config().unwrap();
    assert_eq!(stream.name, subjects::STREAM);
    assert_eq!(stream.subjects, vec![subjects::ALL_EVENTS.to_string()]);
    assert_eq!(stream.retention, RetentionPolicy::Limits);
    assert_eq!(stream.storage, StorageType::File);
    assert_eq!(
        stream.max_age,
        Duration::ZERO,
        "the system of record keeps events forever"
    );
    assert_eq!(stream.duplicate_window, Duration::from_secs(7 * 24 * 3600));
    let locator = DurableConsumer::Locator.config().unwrap();
    assert_eq!(locator.durable_name.as_deref(), Some("locator"));
    assert_eq!(locator.filter_subject, subjects::ONBOARD_REQUESTED);
    // A BMC not found yet goes back to the consumer once per lookup until the deadline:
    // the locator allows at most 900 lookups, and late BMCs must never block new requests.
    assert!(locator.max_deliver > 900);
    assert!(locator.max_ack_pending >= 10_000);
    let scraper = DurableConsumer::RedfishScraper.config().unwrap();
    assert_eq!(scraper.durable_name.as_deref(), Some("redfish-scraper"));
    assert_eq!(
        scraper.filter_subjects,
        vec![
            subjects::BMC_LOCATED.to_string(),
            subjects::RESCAN_REQUESTED.to_string(),
            subjects::PROFILE_ASSIGNED.to_string(),
            subjects::POWER_REQUESTED.to_string(),
            subjects::RETIRE_REQUESTED.to_string(),
            subjects::WIPE_COMPLETED.to_string(),
        ]
    );
    let boot = DurableConsumer::BootApi.config().unwrap();
    assert_eq!(boot.durable_name.as_deref(), Some("boot-api"));
    assert_eq!(
        boot.filter_subjects,
        vec![
            subjects::PROVISION_REQUESTED.to_string(),
            subjects::RETIRE_REQUESTED.to_string(),
        ]
    );
    // Short ack waits: an input in the hands of a dead responder comes back within seconds,
    // while progress acks (every third of the wait) keep slow ones (tests/in_hand.rs).
    for consumer in [
        DurableConsumer::Locator,
        DurableConsumer::RedfishScraper,
        DurableConsumer::BootApi,
        DurableConsumer::Validator,
    ] {
        let ack_wait = consumer.config().unwrap().ack_wait;
        assert!(
            (Duration::from_secs(3)..=Duration::from_secs(10)).contains(&ack_wait),
            "{consumer:?}: ack wait {ack_wait:?}"
        );
    }
}

#[test]
fn example_config_parses() {
    let text = read("metal.example.toml");
    let config = metal_core::config::Config::from_parts(&text, None, &[]).unwrap();
    assert!(!config.locator.static_bmcs.is_empty());
    assert!(!config.locator.unifi.is_empty());
    assert_eq!(
        config.locator.sources.as_ref().map(Vec::len),
        Some(6),
        "the example lists every source"
    );
    let doc = read("docs/configuration.md");
    for key in [
        "nats_url",
        "redfish_scheme",
        "redfish_port",
        "dnsmasq_leases",
        "sources",
        "isc_dhcpd_leases",
        "kea_leases",
        "neighbour",
        "neighbour_table",
        "locate_deadline_secs",
        "retry_secs",
        "flavour",
        "sites",
        "username",
        "api_key_env",
        "ca_file",
        "cert_sha256",
        "cache_secs",
        "password_env",
        "insecure_tls",
        "request_timeout_secs",
        "scrape_deadline_secs",
        "per_bmc_concurrency",
        "global_concurrency",
        "max_response_bytes",
        "max_resources",
        "database",
        "listen",
        "profiles",
    ] {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/configuration.md does not document {key}"
        );
    }
}

#[test]
fn schemas_accept_a_json_onboarding_request_and_refuse_garbage() {
    use test_harness::schemas::check_onboard_request;
    assert!(check_onboard_request(&serde_json::json!({"bmc_mac": "aa:bb:cc:dd:ee:ff"})).is_ok());
    assert!(check_onboard_request(&serde_json::json!({"host": "x"})).is_err());
}

#[test]
fn readme_commands_are_what_ci_runs() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    assert!(readme.contains("scripts/test") && ci.contains("scripts/test"));
    assert!(readme.contains("scripts/demo"));
}
