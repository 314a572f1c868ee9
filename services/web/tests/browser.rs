//! The pages in a real browser: headless Chromium (Debian's `chromium-headless-shell`,
//! found through `METAL_CHROMIUM` from scripts/install-deps) driven over the DevTools
//! protocol against `web::run` on a real nats-server. A machine onboarded while the fleet
//! page is open appears in its table without a reload; its page's timeline shows the
//! reason its scrape failed. Screenshots land in `target/test-artifacts/`.

use std::time::{Duration, Instant};

use metal_projection::fixtures::{self, inventory};
use serde_json::json;
use test_harness::browser::{Browser, Page, POLL};

mod common;
use common::{publish, RunningWeb};

const FIRST_BMC: &str = "aa:bb:cc:00:00:01";
const SECOND_BMC: &str = "aa:bb:cc:00:00:02";
const REASON: &str = "Redfish said 401 Unauthorized to metal-browser-test";
/// How long a condition in the page is polled for.
const PATIENCE: Duration = Duration::from_secs(15);

fn id(bmc: &str) -> String {
    metal_core::MachineId::from_bmc_mac(&fixtures::mac(bmc)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sees_a_new_machine_live_and_its_failure_reason() {
    let browser = Browser::start();
    let web = RunningWeb::start(&fixtures::onboarding(
        1,
        FIRST_BMC,
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:12:34:56"]),
    ))
    .await;
    let (base, js) = (web.base.clone(), web.js.clone());

    // The fleet page with the first machine, its event stream connected.
    let (first, second) = (id(FIRST_BMC), id(SECOND_BMC));
    let mut page = Page::open(&browser).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        page.navigate(&format!("{base}/")).await;
        let shown = page
            .evaluate(&format!("!!document.getElementById('m-{first}')"))
            .await
            .unwrap();
        if shown == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the first machine never showed");
        tokio::time::sleep(POLL).await;
    }
    page.wait_for(
        "document.getElementById('live-status').textContent === 'live'",
        "the page's event stream connecting",
        PATIENCE,
    )
    .await;
    page.mark_document().await;

    // A second machine onboards, then a rescan of it fails to scrape (its state stays
    // inventoried: the failure shows in its timeline).
    let mut messages = fixtures::onboarding(
        4,
        SECOND_BMC,
        inventory("R640", "AMD EPYC 7302", &["52:54:00:00:00:02"]),
    );
    let rescan = fixtures::rescan(7, SECOND_BMC, Some(6));
    messages.push(fixtures::stored(7, &rescan));
    messages.push(fixtures::stored(
        8,
        &fixtures::scrape_failed(&rescan, REASON),
    ));
    publish(&js, &messages).await;

    page.wait_for(
        &format!(
            "(function(){{var row=document.getElementById('m-{second}');\
             return !!row && row.textContent.indexOf('R640') >= 0;}})()"
        ),
        "the new machine's row in the open fleet table",
        PATIENCE,
    )
    .await;
    page.assert_not_reloaded().await;
    assert_eq!(
        page.evaluate("document.querySelectorAll('#live tbody tr').length")
            .await
            .unwrap(),
        json!(2)
    );
    let fleet = page.screenshot("web-fleet.png").await;

    // Its link leads to its page, whose timeline shows why the scrape failed.
    page.evaluate(&format!("document.querySelector('#m-{second} a').click()"))
        .await
        .unwrap();
    page.wait_for(
        &format!(
            "location.pathname === '/machines/{second}' && document.readyState === 'complete' \
             && Array.prototype.some.call(document.querySelectorAll('tr.fail .reason'), \
             function(e){{return e.textContent.indexOf({reason}) >= 0;}})",
            reason = json!(REASON)
        ),
        "the machine page's timeline showing the failure reason",
        PATIENCE,
    )
    .await;
    let machine = page.screenshot("web-machine.png").await;

    // At a phone's width the fleet page still renders its table.
    page.viewport(390, 844, true).await;
    page.navigate(&format!("{base}/")).await;
    assert_eq!(
        page.evaluate("document.querySelectorAll('#live tbody tr').length")
            .await
            .unwrap(),
        json!(2)
    );
    let phone = page.screenshot("web-fleet-phone.png").await;
    eprintln!(
        "screenshots: {}, {}, {}",
        fleet.display(),
        machine.display(),
        phone.display()
    );

    drop(page);
    drop(browser);
    web.stop("after the browser left").await;
}
