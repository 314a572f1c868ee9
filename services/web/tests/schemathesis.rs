//! The API against its own OpenAPI document: a real nats-server with a few fixture
//! machines, `web::run` on a loopback port, and schemathesis (PyPI) generating requests from
//! the served document; fails on any 5xx or any answer that breaks its schema.

use std::time::{Duration, Instant};

use metal_core::events::{BootPath, BootUnknown, TagsChanged};
use metal_core::subjects;
use metal_projection::fixtures::{self, about_provisioning, assigned, inventory, provision};

mod common;
use common::RunningWeb;

const PROVISIONED_BMC: &str = "aa:bb:cc:00:00:01";
const TAGGED_BMC: &str = "aa:bb:cc:00:00:02";

/// Longest the schemathesis run may take before the test kills it and fails.
const SCHEMATHESIS_DEADLINE: Duration = Duration::from_secs(110);

/// Onboarded machines (one provisioned, one tagged, one plain), and an unknown MAC.
fn fixture_messages() -> Vec<metal_core::jetstream::StoredMessage> {
    let mut messages = fixtures::onboarding(
        1,
        PROVISIONED_BMC,
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:12:34:56"]),
    );
    messages.extend(fixtures::onboarding(
        4,
        TAGGED_BMC,
        inventory("DL385 Gen10", "AMD EPYC 7302", &["52:54:00:ab:cd:ef"]),
    ));
    messages.extend(fixtures::onboarding(
        7,
        "aa:bb:cc:00:00:03",
        inventory("R640", "Intel Xeon", &["52:54:00:00:00:03"]),
    ));
    let p = provision(10, PROVISIONED_BMC, None);
    let tagging = provision(12, TAGGED_BMC, None);
    let tags = about_provisioning(
        &tagging,
        subjects::TAGS_CHANGED,
        &TagsChanged {
            set: [("rack".to_string(), "a1".to_string())].into(),
            removed: Vec::new(),
            requested_by: None,
        },
        1,
    );
    let unknown = metal_core::Envelope {
        machine_id: None,
        bmc_mac: None,
        ..about_provisioning(
            &p,
            subjects::BOOT_UNKNOWN,
            &BootUnknown {
                mac: fixtures::mac("52:54:00:00:00:77"),
                path: BootPath::Ipxe,
                reason: "no machine has this MAC".to_string(),
            },
            3,
        )
    };
    messages.extend([
        fixtures::stored(10, &p),
        fixtures::stored(11, &assigned(&p, "G1")),
        fixtures::stored(12, &tags),
        fixtures::stored(13, &unknown),
    ]);
    messages
}

async fn wait_for_sequence(base: &str, sequence: u64) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/api/v1/status")).send().await {
            last = response.text().await.unwrap_or_default();
            let status: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
            if status["last_sequence"].as_u64() >= Some(sequence) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("web did not reach sequence {sequence} within 30 s; last status: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_schema() {
    test_harness::schemathesis::binary();
    let messages = fixture_messages();
    let web = RunningWeb::start(&messages).await;
    let base = web.base.clone();
    let dir = web.dir.path();
    wait_for_sequence(&base, messages.len() as u64).await;

    // The stream's side of the status, from NATS: the projection has every message.
    let status: serde_json::Value = reqwest::get(format!("{base}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["stream_last_sequence"].as_u64(),
        Some(messages.len() as u64),
        "{status}"
    );
    assert_eq!(status["behind"].as_u64(), Some(0), "{status}");
    // And the boot profiles of the shipped file.
    let profiles: serde_json::Value = reqwest::get(format!("{base}/api/v1/profiles"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(profiles["profiles"][0]["name"], "G1", "{profiles}");

    // Half the references name fixture machines, so the detail and timeline answers are
    // checked against their schemas too, not only the 404s of random MACs.
    let machine_id = metal_core::MachineId::from_bmc_mac(&fixtures::mac(TAGGED_BMC));
    let config_file = dir.join("schemathesis.toml");
    std::fs::write(
        &config_file,
        format!(
            "[dictionaries.references]\nvalues = [\"{PROVISIONED_BMC}\", \"52:54:00:ab:cd:ef\", \"{machine_id}\"]\n\n\
             [parameters]\n\"path.reference\" = {{ dictionary = \"references\", probability = 0.5 }}\n"
        ),
    )
    .unwrap();
    let url = format!("{base}/api/v1/openapi.json");
    let args: Vec<String> = [
        "--config-file",
        config_file.to_str().unwrap(),
        "run",
        &url,
        "--url",
        &base,
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance,\
         status_code_conformance,negative_data_rejection,positive_data_acceptance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "30",
        "--workers",
        "2",
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let run_dir = dir.to_path_buf();
    let started = Instant::now();
    let (success, output) = tokio::task::spawn_blocking(move || {
        test_harness::schemathesis::run(&run_dir, &args, SCHEMATHESIS_DEADLINE)
    })
    .await
    .unwrap();
    eprintln!(
        "schemathesis took {:.1} s:\n{output}",
        started.elapsed().as_secs_f64()
    );
    assert!(success, "schemathesis reported failures:\n{output}");

    web.stop("after schemathesis").await;
}
