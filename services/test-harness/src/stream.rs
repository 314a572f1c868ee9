//! Reading the MACHINES stream in tests: every stored message decoded, with a deadline.

use std::time::Duration;

use futures::StreamExt;
use metal_core::jetstream::{follow_stream, StoredMessage};
use metal_core::{Decoded, Envelope};

/// Publishes a stored message (a fixture) as it was, with its `Nats-Msg-Id`; returns the
/// sequence the stream gave it.
pub async fn publish_stored(js: &async_nats::jetstream::Context, message: &StoredMessage) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = &message.msg_id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    }
    js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
        .await
        .unwrap_or_else(|e| panic!("cannot publish {}: {e}", message.subject))
        .await
        .unwrap_or_else(|e| panic!("{} not stored: {e}", message.subject))
        .sequence
}

/// Every message stored now, in order (stops at the stream's current last sequence).
pub async fn read_all(client: &async_nats::Client) -> Vec<StoredMessage> {
    try_read_all(client).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`read_all`], or why the stream cannot be read right now (a cluster electing its
/// stream's leader, say).
pub async fn try_read_all(client: &async_nats::Client) -> Result<Vec<StoredMessage>, String> {
    try_read_from(client, 1).await
}

/// The messages stored now from sequence `from` on, in order; or why the stream cannot be
/// read right now. A follower calls it again from after the last message it got.
pub async fn try_read_from(
    client: &async_nats::Client,
    from: u64,
) -> Result<Vec<StoredMessage>, String> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = metal_core::jetstream::ensure_stream(&js)
        .await
        .map_err(|e| format!("cannot ensure stream: {}", metal_core::error_chain(&e)))?;
    let last = metal_core::jetstream::last_sequence(&mut stream)
        .await
        .map_err(|e| format!("cannot read stream info: {e}"))?;
    let mut out = Vec::new();
    if last < from.max(1) {
        return Ok(out);
    }
    let messages = follow_stream(&stream, from.max(1))
        .await
        .map_err(|e| format!("cannot read stream: {e}"))?;
    let mut messages = std::pin::pin!(messages);
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await
    {
        let message = item.map_err(|e| format!("stream read failed: {e}"))?;
        let sequence = message.sequence;
        out.push(message);
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

/// The envelopes stored now (synthesised for raw requests), each validated against schemas/.
pub async fn read_events(client: &async_nats::Client) -> Vec<Envelope> {
    read_all(client)
        .await
        .iter()
        .filter_map(|m| match m.decode() {
            Decoded::Event(event) => Some(event),
            _ => None,
        })
        .inspect(crate::schemas::validate_event)
        .collect()
}

/// Polls `read_events` until `done` holds, or panics after `timeout` with what was seen.
pub async fn wait_for_events(
    client: &async_nats::Client,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Envelope]) -> bool,
) -> Vec<Envelope> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let events = read_events(client).await;
        if done(&events) {
            return events;
        }
        if tokio::time::Instant::now() > deadline {
            let types: Vec<String> = events
                .iter()
                .map(|e| format!("{} {}", e.event_type, e.data))
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}; events so far:\n{}",
                types.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
