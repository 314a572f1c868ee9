//! The HTML pages and `/events` through `web::app(live).oneshot(request)` over an in-memory
//! projection: the fleet table and its filters, escaping, the machine page's timeline and
//! failures, no secrets, 404s, and one pushed event per applied change.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use metal_core::events::TagsChanged;
use metal_core::subjects;
use metal_projection::fixtures::{
    about_provisioning, assigned, inventory, onboarding, provision, request, scrape_failed, stored,
};
use metal_projection::{LiveProjection, Projection};
use tower::ServiceExt;

const PROVISIONED_BMC: &str = "aa:bb:cc:00:00:01";
const HOSTILE_BMC: &str = "aa:bb:cc:00:00:02";
const PLAIN_BMC: &str = "aa:bb:cc:00:00:03";
const FAILED_BMC: &str = "aa:bb:cc:00:00:04";
const SCRAPE_REASON: &str = "Redfish said 401 Unauthorized";
const HOSTILE_REQUESTER: &str = "<i>eve</i>";

/// Four machines: one provisioned with G1 (its cmdline template carries `{token}`), one
/// whose model, tag values and tagger are HTML, one plain, and one whose scrape failed.
fn fixture() -> LiveProjection {
    let mut messages = onboarding(
        1,
        PROVISIONED_BMC,
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:12:34:56"]),
    );
    messages.extend(onboarding(
        4,
        HOSTILE_BMC,
        inventory(
            "<script>alert(1)</script>",
            "AMD EPYC 7302",
            &["52:54:00:ab:cd:ef"],
        ),
    ));
    messages.extend(onboarding(
        7,
        PLAIN_BMC,
        inventory("R640", "Intel Xeon", &["52:54:00:00:00:03"]),
    ));
    let (failing, envelope) = request(10, FAILED_BMC);
    let found = metal_projection::fixtures::located(&envelope, "10.0.0.4");
    messages.extend([
        failing,
        stored(11, &found),
        stored(12, &scrape_failed(&found, SCRAPE_REASON)),
    ]);
    let p = provision(20, PROVISIONED_BMC, None);
    messages.extend([stored(20, &p), stored(21, &assigned(&p, "G1"))]);
    let tagging = provision(22, HOSTILE_BMC, None);
    let tags = about_provisioning(
        &tagging,
        subjects::TAGS_CHANGED,
        &TagsChanged {
            set: [
                ("rack".to_string(), "<b>a1</b>".to_string()),
                ("row".to_string(), "<script>x()</script>".to_string()),
            ]
            .into(),
            removed: Vec::new(),
            requested_by: Some(HOSTILE_REQUESTER.to_string()),
        },
        1,
    );
    messages.push(stored(23, &tags));
    let mut projection = Projection::open_in_memory().unwrap();
    projection.apply_batch(&messages).unwrap();
    LiveProjection::new(projection).unwrap()
}

fn app(live: &LiveProjection) -> axum::Router {
    web::app(
        live.clone(),
        metal_core::Shutdown::spawn_from(std::future::pending()),
    )
}

async fn get(live: &LiveProjection, uri: &str) -> (StatusCode, String) {
    let response = app(live)
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn page(live: &LiveProjection, uri: &str) -> String {
    let (status, body) = get(live, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    assert!(body.starts_with("<!doctype html>"), "{uri}: {body}");
    assert!(body.contains("name=\"viewport\""), "{uri}: no viewport");
    body
}

fn id(bmc: &str) -> String {
    metal_core::MachineId::from_bmc_mac(&metal_projection::fixtures::mac(bmc)).to_string()
}

fn rows(body: &str) -> usize {
    body.matches("<tr id=\"m-").count()
}

#[tokio::test]
async fn fleet_lists_every_machine_with_state_profile_and_link() {
    let live = fixture();
    let body = page(&live, "/").await;
    assert_eq!(rows(&body), 4, "{body}");
    for bmc in [PROVISIONED_BMC, HOSTILE_BMC, PLAIN_BMC, FAILED_BMC] {
        assert!(
            body.contains(&format!("href=\"/machines/{}\"", id(bmc))),
            "{bmc}"
        );
        assert!(body.contains(bmc), "{bmc}");
    }
    let provisioned = body
        .split("<tr id=\"m-")
        .find(|row| row.starts_with(&id(PROVISIONED_BMC)))
        .unwrap();
    assert!(provisioned.contains(">provisioning<"), "{provisioned}");
    assert!(provisioned.contains(">G1<"), "{provisioned}");
    assert!(provisioned.contains("2 CPU"), "{provisioned}");
    assert!(body.contains(">scrape_failed<"), "{body}");
    assert!(body.contains("new EventSource('/events')"));
}

#[tokio::test]
async fn fleet_filters_narrow_it_and_empty_form_fields_mean_any() {
    let live = fixture();
    let one = |body: &str, bmc: &str| {
        assert_eq!(rows(body), 1, "{body}");
        assert!(body.contains(&id(bmc)), "{bmc}: {body}");
    };
    one(
        &page(&live, "/?state=provisioning&profile=&tag=&q=").await,
        PROVISIONED_BMC,
    );
    one(&page(&live, "/?profile=G1").await, PROVISIONED_BMC);
    one(&page(&live, "/?tag=rack").await, HOSTILE_BMC);
    one(&page(&live, "/?q=r640").await, PLAIN_BMC);
    one(&page(&live, "/?state=scrape_failed").await, FAILED_BMC);
    assert_eq!(rows(&page(&live, "/?profile=G2").await), 0);
    // The form shows what is filtered.
    let body = page(&live, "/?state=provisioning").await;
    assert!(
        body.contains("<option selected>provisioning</option>"),
        "{body}"
    );

    // Pages follow the cursor, keeping the filters.
    let first = page(&live, "/?limit=3").await;
    assert_eq!(rows(&first), 3);
    let next = first
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page link")
        .replace("&amp;", "&");
    assert!(
        next.contains("limit=3") && next.contains("cursor="),
        "{next}"
    );
    assert_eq!(rows(&page(&live, &next).await), 1);

    let (status, body) = get(&live, "/?state=broken").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("state:"), "{body}");
    let (status, body) = get(&live, "/?q=%3Cscript%3E&stat=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        !body.contains("<script>alert") && body.contains("stat"),
        "{body}"
    );
}

#[tokio::test]
async fn html_from_the_projection_and_the_query_is_escaped() {
    let live = fixture();
    let fleet = page(&live, "/?q=%3Cscript%3Ealert").await;
    assert_eq!(rows(&fleet), 1, "{fleet}");
    assert!(
        fleet.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{fleet}"
    );
    assert!(!fleet.contains("<script>alert"), "{fleet}");
    assert!(fleet.contains("value=\"&lt;script&gt;alert\""), "{fleet}");

    let machine = page(&live, &format!("/machines/{HOSTILE_BMC}")).await;
    assert!(machine.contains("rack=&lt;b&gt;a1&lt;/b&gt;"), "{machine}");
    assert!(machine.contains("row=&lt;script&gt;x()&lt;/script&gt;"));
    assert!(!machine.contains("<script>x()") && !machine.contains("<b>a1"));
    assert!(!machine.contains("<script>alert"));
}

#[tokio::test]
async fn machine_page_shows_inventory_timeline_and_failure_reasons() {
    let live = fixture();
    let body = page(&live, &format!("/machines/{}", id(PROVISIONED_BMC))).await;
    assert!(body.contains("<h1>DL360 Gen10</h1>"), "{body}");
    for text in [
        "2 × Intel Xeon (",
        "52:54:00:12:34:56",
        "Inventory",
        "drives",
        "machine.onboard.requested",
        "machine.hardware.scraped",
        "machine.profile.assigned",
        "id=\"e-21\"",
    ] {
        assert!(body.contains(text), "{text}: {body}");
    }
    // Newest first; the located step took one second after its request.
    let newest = body.find("id=\"e-21\"").unwrap();
    let oldest = body.find("id=\"e-1\"").unwrap();
    assert!(newest < oldest);
    assert!(body.contains("<td>1.0s</td>"), "{body}");

    // By any MAC too; a failure is highlighted with its reason.
    let failed = page(&live, &format!("/machines/{FAILED_BMC}")).await;
    assert!(failed.contains("class=\"fail\""), "{failed}");
    assert!(
        failed.contains("<span class=\"reason\">") && failed.contains(SCRAPE_REASON),
        "{failed}"
    );
    assert!(failed.contains("no inventory yet"));
}

#[tokio::test]
async fn no_page_shows_a_token_and_unknown_machines_are_404s() {
    let live = fixture();
    let body = page(&live, &format!("/machines/{PROVISIONED_BMC}")).await;
    // The template, never a rendered token.
    assert!(body.contains("token={token}"), "{body}");
    assert!(body.contains("cmdline template"));
    let fleet = page(&live, "/").await;
    assert!(!fleet.contains("token="));

    let (status, body) = get(&live, "/machines/aa:bb:cc:00:00:99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("aa:bb:cc:00:00:99") && body.starts_with("<!doctype html>"));
    let (status, _) = get(&live, "/machines/not-a-mac").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = get(&live, &format!("/machines/{}", "a".repeat(300))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.len() < 16 * 1024);
    // The JSON API is still served next to the pages.
    let (status, _) = get(&live, "/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn events_push_the_current_sequence_then_each_change() {
    let live = fixture();
    let response = app(&live)
        .oneshot(Request::get("/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let mut frames = response.into_body().into_data_stream();
    let first = next_frame(&mut frames).await;
    assert!(
        first.contains("event: applied") && first.contains("{\"last_sequence\":23}"),
        "{first}"
    );
    // Several announcements while the client is not reading become one message.
    live.announce(30);
    live.announce(31);
    let second = next_frame(&mut frames).await;
    assert!(second.contains("{\"last_sequence\":31}"), "{second}");
}

async fn next_frame(frames: &mut axum::body::BodyDataStream) -> String {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), frames.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream stays open")
        .unwrap();
    String::from_utf8(frame.to_vec()).unwrap()
}

fn row_of<'a>(body: &'a str, bmc: &str) -> &'a str {
    let start = body
        .find(&format!("<tr id=\"m-{}\"", id(bmc)))
        .unwrap_or_else(|| panic!("{bmc}: {body}"));
    let rest = &body[start..];
    &rest[..rest.find("</tr>").unwrap()]
}

#[tokio::test]
async fn fleet_shows_each_machines_last_event_and_its_age() {
    let live = fixture();
    let body = page(&live, "/").await;
    assert!(body.contains("<th>last event</th>"), "{body}");
    for (bmc, last) in [
        (PROVISIONED_BMC, "profile.assigned"),
        (HOSTILE_BMC, "tags.changed"),
        (PLAIN_BMC, "hardware.scraped"),
        (FAILED_BMC, "scrape.failed"),
    ] {
        let row = row_of(&body, bmc);
        assert!(
            row.contains(&format!(">{last} · ")) && row.contains(" ago</td>"),
            "{bmc}: {row}"
        );
        assert!(
            row.contains(&format!("title=\"machine.{last} at ")),
            "{row}"
        );
    }
}

#[tokio::test]
async fn timeline_names_who_answered_who_asked_and_each_step() {
    let live = fixture();
    let body = page(&live, &format!("/machines/{}", id(PROVISIONED_BMC))).await;
    assert!(body.contains("<th>by</th>"), "{body}");
    let entry = |sequence: u64| {
        let start = body
            .find(&format!("<tr id=\"e-{sequence}\""))
            .unwrap_or_else(|| panic!("e-{sequence}: {body}"));
        let rest = &body[start..];
        &rest[..rest.find("</tr>").unwrap()]
    };
    for (sequence, by) in [(2, "locator"), (3, "redfish-scraper"), (21, "boot-api")] {
        assert!(
            entry(sequence).contains(&format!("<td class=\"by\">{by}</td>")),
            "e-{sequence}: {}",
            entry(sequence)
        );
    }
    // The located answer came one second after the request it answers.
    assert!(entry(2).contains("<td>1.0s</td>"), "{}", entry(2));
    // A bare `nats pub` request names nobody: the operator's tool is assumed.
    assert!(
        entry(3).contains("onboard.requested · asked by metal-cli"),
        "{}",
        entry(3)
    );
    // A provisioning request names its requester on its own row and on its answer's.
    assert!(
        entry(20).contains("<td class=\"by\">test</td>"),
        "{}",
        entry(20)
    );
    assert!(
        entry(21).contains("provision.requested · asked by test"),
        "{}",
        entry(21)
    );

    let failed = page(&live, &format!("/machines/{FAILED_BMC}")).await;
    let start = failed.find("<tr id=\"e-12\"").unwrap();
    let row = &failed[start..start + failed[start..].find("</tr>").unwrap()];
    assert!(
        row.contains("class=\"fail\"")
            && row.contains("<td class=\"by\">redfish-scraper</td>")
            && row.contains(SCRAPE_REASON),
        "{row}"
    );
}

#[tokio::test]
async fn new_columns_are_escaped_too() {
    let live = fixture();
    let body = page(&live, &format!("/machines/{HOSTILE_BMC}")).await;
    // The tag change's summary carries the HTML tag values; its row stays escaped.
    assert!(
        body.contains("<td class=\"by\">&lt;i&gt;eve&lt;/i&gt;</td>"),
        "{body}"
    );
    assert!(
        body.contains("tags.changed · asked by &lt;i&gt;eve&lt;/i&gt;"),
        "{body}"
    );
    assert!(!body.contains(HOSTILE_REQUESTER), "{body}");
    assert!(
        !body.contains("<b>a1") && !body.contains("<script>x()"),
        "{body}"
    );
    let fleet = page(&live, "/").await;
    assert!(!fleet.contains("<script>alert"), "{fleet}");
}
