//! The web UI in headless Chromium while machines onboard through the real pipeline:
//! `metal-cli onboard` against a recorded mockup BMC makes its row appear, inventoried, in
//! the open fleet page without a reload; a BMC on a closed port ends `scrape_failed`, and
//! its page's timeline names why. Screenshots land in `target/test-artifacts/`.

mod common;

use std::time::Duration;

use common::{printed, System};
use metal_core::{Mac, MachineId};
use serde_json::json;
use test_harness::browser::{Browser, Page};
use test_harness::mockup::serve_mockup;

/// How long the page may take to show what the pipeline did.
const PATIENCE: Duration = Duration::from_secs(20);

/// A JS expression: the state cell of machine `id`'s fleet row reads `state`.
fn row_state_is(id: &MachineId, state: &str) -> String {
    format!(
        "(function(){{var row=document.getElementById('m-{id}');\
         return !!row && !!row.cells[1] && row.cells[1].textContent === {state};}})()",
        state = json!(state)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_follows_a_real_onboarding_and_shows_why_a_scrape_failed() {
    let folders = test_harness::paths::mockup_folders();
    let folder = folders.first().expect("no Redfish mockups found");
    let mockup = serve_mockup(folder).await;
    // A loopback port nothing listens on: the scrape of this BMC is refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let good = Mac::parse_any("02:4d:00:0e:00:01").unwrap();
    let bad = Mac::parse_any("02:4d:00:0e:00:02").unwrap();
    let system = System::start(vec![
        (good, mockup.base_url()),
        (bad, format!("http://127.0.0.1:{closed}")),
    ])
    .await;
    let (good_id, bad_id) = (
        MachineId::from_bmc_mac(&good),
        MachineId::from_bmc_mac(&bad),
    );

    let browser = Browser::start();
    let mut page = Page::open(&browser).await;
    page.navigate(&format!("{}/", system.web_url)).await;
    page.wait_for(
        "document.getElementById('live-status').textContent === 'live'",
        "the fleet page's event stream connecting",
        PATIENCE,
    )
    .await;
    page.mark_document().await;

    // The good BMC onboards; its row appears in the open page, inventoried.
    let onboard = system
        .cli_async(&["onboard", &good.to_string(), "--timeout", "30"])
        .await;
    assert!(onboard.status.success(), "{}", printed(&onboard));
    page.wait_for(
        &row_state_is(&good_id, "inventoried"),
        "the onboarded machine's row, inventoried, in the open fleet table",
        PATIENCE,
    )
    .await;
    page.assert_not_reloaded().await;

    // The bad one: metal-cli reports the failure, the page shows the state.
    let onboard = system
        .cli_async(&["onboard", &bad.to_string(), "--timeout", "30"])
        .await;
    assert!(
        !onboard.status.success(),
        "onboarding a BMC on a closed port succeeded: {}",
        printed(&onboard)
    );
    page.wait_for(
        &row_state_is(&bad_id, "scrape_failed"),
        "the failed machine's row, scrape_failed, in the open fleet table",
        PATIENCE,
    )
    .await;
    page.assert_not_reloaded().await;
    let fleet = page.screenshot("web-onboarding-fleet.png").await;

    // Its link leads to its page, whose timeline has the failure with its reason.
    page.evaluate(&format!("document.querySelector('#m-{bad_id} a').click()"))
        .await
        .unwrap();
    page.wait_for(
        &format!(
            "location.pathname === '/machines/{bad_id}' && document.readyState === 'complete' \
             && !!document.querySelector('tr.fail .reason')"
        ),
        "the failed machine's timeline with a failure row",
        PATIENCE,
    )
    .await;
    let reason = page
        .evaluate("document.querySelector('tr.fail .reason').textContent")
        .await
        .unwrap();
    let reason = reason.as_str().unwrap_or_default().to_string();
    let address = format!("127.0.0.1:{closed}");
    assert!(
        !reason.trim().is_empty() && reason.contains(&address),
        "the failure row's reason should name the unreachable BMC {address}: {reason:?}"
    );
    let failure = page.screenshot("web-onboarding-failure.png").await;
    eprintln!(
        "failure reason: {reason}\nscreenshots: {}, {}",
        fleet.display(),
        failure.display()
    );

    drop(page);
    drop(browser);
    system.stop().await;
}
