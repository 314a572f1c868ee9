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

/// The operator's step for a cluster: the MACHINES stream, as nats/ configures it, at
/// `replicas` replicas; tried again for up to a minute while a new cluster elects its meta
/// leader.
pub async fn create_replicated(
    js: &async_nats::jetstream::Context,
    replicas: usize,
) -> async_nats::jetstream::stream::Stream {
    let mut machines = metal_core::jetstream::stream_config().expect("nats/ stream config");
    machines.num_replicas = replicas;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match js.create_stream(machines.clone()).await {
            Ok(stream) => return stream,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster never took the stream: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every message stored now, in order (stops at the stream's current last sequence);
/// panics naming why when they cannot all be read.
pub async fn read_all(client: &async_nats::Client) -> Vec<StoredMessage> {
    try_read_all(client).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`read_all`], or why the stream cannot be read right now (a cluster electing its
/// stream's leader, say): never a shorter list.
pub async fn try_read_all(client: &async_nats::Client) -> Result<Vec<StoredMessage>, String> {
    match read_to_end(client, 1).await? {
        (messages, None) => Ok(messages),
        (_, Some(why)) => Err(why),
    }
}

/// The messages stored now from sequence `from` on, in order, as many as could be read
/// (perhaps not all: a follower calls it again from after the last message it got); or
/// why the stream cannot be read right now.
pub async fn try_read_from(
    client: &async_nats::Client,
    from: u64,
) -> Result<Vec<StoredMessage>, String> {
    Ok(read_to_end(client, from).await?.0)
}

/// How long a read may take, all stalls and re-reads included, before it is given up.
const READ_DEADLINE: Duration = Duration::from_secs(60);
/// How long one subscription may go without a message before it is read again from where
/// it stopped: an ordered consumer can stall while a cluster moves the stream's leader.
const STALL: Duration = Duration::from_secs(10);

/// The messages from `from` to the stream's last sequence now, in order, and why the read
/// stopped short of it, if it did. A read that stalls or fails part way is taken up again
/// after the last message it got, until [`READ_DEADLINE`].
async fn read_to_end(
    client: &async_nats::Client,
    from: u64,
) -> Result<(Vec<StoredMessage>, Option<String>), String> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = metal_core::jetstream::ensure_stream(&js)
        .await
        .map_err(|e| format!("cannot ensure stream: {}", metal_core::error_chain(&e)))?;
    let last = metal_core::jetstream::last_sequence(&mut stream)
        .await
        .map_err(|e| format!("cannot read stream info: {e}"))?;
    let mut out: Vec<StoredMessage> = Vec::new();
    let deadline = tokio::time::Instant::now() + READ_DEADLINE;
    let mut next = from.max(1);
    while next <= last {
        let why = match follow_stream(&stream, next).await {
            Err(e) => format!("cannot read stream: {e}"),
            Ok(messages) => {
                let mut messages = std::pin::pin!(messages);
                loop {
                    match tokio::time::timeout(STALL, messages.next()).await {
                        Ok(Some(Ok(message))) => {
                            next = message.sequence + 1;
                            out.push(message);
                            if next > last {
                                return Ok((out, None));
                            }
                        }
                        Ok(Some(Err(e))) => break format!("stream read failed: {e}"),
                        Ok(None) => break "the subscription ended".to_string(),
                        Err(_) => break format!("no message for {STALL:?}"),
                    }
                }
            }
        };
        if tokio::time::Instant::now() >= deadline {
            let why = format!(
                "the stream's messages up to {last} were not all read in {READ_DEADLINE:?}: \
                 stopped before {next} ({why})"
            );
            return Ok((out, Some(why)));
        }
        eprintln!("reading the stream again from {next} (of {last}): {why}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((out, None))
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
