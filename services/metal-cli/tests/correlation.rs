//! One onboarding's correlation id on every log line it causes, across services: with
//! every responder in this process logging JSON at debug level, the lines the locator and
//! the redfish-scraper log while handling an onboarding all carry its correlation id (and
//! its machine), in the `input` span of the shared consumer loop.
//!
//! One test in this binary: it installs the process's tracing subscriber.

mod common;

use common::{printed, System};
use metal_core::{subjects, Mac, MachineId};
use serde_json::Value;
use test_harness::mockup::serve_mockup;

const BMC: &str = "02:00:5e:10:00:91";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_onboardings_log_lines_in_every_responder_carry_its_correlation_id() {
    let logs = test_harness::logs::Captured::install(true);

    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .next()
        .expect("a Redfish mockup");
    let bmc = serve_mockup(&folder).await;
    let mac = Mac::parse_device(BMC).unwrap();
    let system = System::start(vec![(mac, bmc.base_url())]).await;
    let output = system.cli_async(&["onboard", BMC, "--timeout", "90"]).await;
    assert!(output.status.success(), "{}", printed(&output));

    let request = test_harness::stream::read_events(&system.client)
        .await
        .into_iter()
        .find(|e| e.event_type == subjects::ONBOARD_REQUESTED)
        .expect("the onboarding request");
    let correlation = request.correlation_id.to_string();
    let machine = MachineId::from_bmc_mac(&mac).to_string();
    system.stop().await;

    let captured = logs.bytes();
    let lines: Vec<Value> = String::from_utf8_lossy(&captured)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for consumer in ["locator", "redfish-scraper"] {
        // Every line logged while this consumer handled one of this machine's inputs.
        let handling: Vec<&Value> = lines
            .iter()
            .filter(|line| {
                line["span"]["name"] == "input"
                    && line["span"]["consumer"] == consumer
                    && line["span"]["machine_id"] == machine.as_str()
            })
            .collect();
        assert!(
            !handling.is_empty(),
            "{consumer} logged nothing for the onboarding"
        );
        for line in &handling {
            assert_eq!(
                line["span"]["correlation_id"],
                correlation.as_str(),
                "{consumer}: {line}"
            );
        }
        // Its answer was published inside the span: the loop's own line is among them.
        assert!(
            handling
                .iter()
                .any(|line| line["fields"]["message"] == "published"),
            "{consumer}: {handling:?}"
        );
    }
    // Lines about this machine logged outside an input's span would miss the correlation.
    let outside: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            let text = line["fields"].to_string();
            (text.contains(&machine) || text.contains(BMC)) && line["span"].is_null()
        })
        .collect();
    assert!(outside.is_empty(), "{outside:#?}");
    // Lines of the same services outside any input (start-up, the consumer's setup) have
    // no correlation to carry; none claims another one.
    let claimed: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["span"]["correlation_id"]
                .as_str()
                .is_some_and(|id| id != correlation)
        })
        .collect();
    assert!(claimed.is_empty(), "{claimed:?}");
}
