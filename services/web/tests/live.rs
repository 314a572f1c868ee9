//! `/events` over a real nats-server: `web::run` follows the stream, a browser-like client
//! holds `/events` open, a new onboarding is published, and the client is told its
//! sequence within seconds; the pages show the new machine, and shutdown is not held up
//! by the open stream.

use std::time::{Duration, Instant};

use metal_projection::fixtures::{self, inventory};

mod common;
use common::{publish, RunningWeb};

/// Reads `response` until an `applied` event names `sequence` (or a later one).
async fn until_sequence(response: &mut reqwest::Response, sequence: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(chunk) = tokio::time::timeout(left, response.chunk()).await else {
            break;
        };
        let chunk = chunk.unwrap().expect("the event stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        let reached = seen
            .split("\"last_sequence\":")
            .skip(1)
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .any(|n| n >= sequence);
        if reached {
            return seen;
        }
    }
    panic!("no event named sequence {sequence} within 10 s; got:\n{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_a_newly_published_sequence_within_seconds() {
    let web = RunningWeb::start(&fixtures::onboarding(
        1,
        "aa:bb:cc:00:00:01",
        inventory("DL360 Gen10", "Intel Xeon", &["52:54:00:12:34:56"]),
    ))
    .await;
    let (base, js) = (web.base.clone(), web.js.clone());

    let http = reqwest::Client::new();
    let mut events = http
        .get(format!("{base}/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), reqwest::StatusCode::OK);
    until_sequence(&mut events, 3).await;

    let started = Instant::now();
    publish(
        &js,
        &fixtures::onboarding(
            4,
            "aa:bb:cc:00:00:02",
            inventory("R640", "Intel Xeon", &["52:54:00:00:00:02"]),
        ),
    )
    .await;
    let seen = until_sequence(&mut events, 6).await;
    assert!(seen.contains("event: applied"), "{seen}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // What the page's script fetches on that event shows the new machine.
    let fleet = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        fleet.contains("R640") && fleet.contains("aa:bb:cc:00:00:02"),
        "{fleet}"
    );

    // The open event stream does not hold up a graceful shutdown.
    web.stop("with an event stream open").await;
    drop(events);
}
