//! `--log-format json`: every line the projector binary writes to stderr is one JSON object
//! that a log collector can parse, with its level, target, message and fields. And the
//! default text, written to a pipe, keeps `key=value` whole (no colour escape codes).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use metal_core::jetstream::ensure_stream;
use test_harness::nats::NatsServer;

/// The projector's stderr after it has applied 30 onboardings, run with `format_args`.
async fn logs_of_a_catch_up(format_args: &[&str]) -> (String, std::path::PathBuf, u64) {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await.unwrap();
    let events = common::onboardings(30, 0x02, "PowerEdge R650", "Intel(R) Xeon(R) Gold 6338");
    let total = events.len() as u64;
    common::publish(js, events).await;

    let projector = Command::new(env!("CARGO_BIN_EXE_inventory-projector"))
        .args(format_args)
        .args(["--nats-url", &server.url(), "--database"])
        .arg(&database)
        .env_remove("METAL_CONFIG")
        .env_remove("METAL_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info,metal_projection=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start inventory-projector");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while common::status(&client)
        .await
        .is_none_or(|s| s.last_sequence < total)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "projector never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) with the pid of a child this test started and has not reaped.
    unsafe { libc::kill(projector.id() as i32, libc::SIGTERM) };
    let output = projector.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).expect("logs are UTF-8");
    (stderr, database, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_their_fields() {
    let (stderr, database, total) = logs_of_a_catch_up(&["--log-format", "json"]).await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let opened = lines
        .iter()
        .find(|l| l["fields"]["message"] == "projection opened")
        .unwrap_or_else(|| panic!("no `projection opened` line: {stderr}"));
    assert_eq!(opened["level"], "INFO");
    assert_eq!(opened["fields"]["last_sequence"], 0);
    assert_eq!(
        opened["fields"]["database"].as_str(),
        Some(database.display().to_string().as_str())
    );
    let applied = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "applied")
        .filter_map(|l| l["fields"]["last_sequence"].as_u64())
        .max();
    assert_eq!(applied, Some(total), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_in_a_pipe_have_no_escape_codes() {
    let (stderr, _, total) = logs_of_a_catch_up(&[]).await;
    assert!(!stderr.contains('\u{1b}'), "escape codes in: {stderr}");
    assert!(stderr.contains("projection opened"), "{stderr}");
    assert!(
        stderr.contains(&format!("last_sequence={total}")),
        "no whole `last_sequence={total}` in: {stderr}"
    );
}
