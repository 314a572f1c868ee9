//! The consumer loop every responder shares: fetch, decode, handle, publish with a
//! deterministic id, wait for PubAck, then ack. Each service only supplies `handle`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;

use crate::envelope::{Decoded, Envelope};
use crate::jetstream::{publish_event, StoredMessage};

/// What a responder got: the decoded input and how often it has been delivered.
#[derive(Debug, Clone)]
pub struct Input {
    pub decoded: Decoded,
    pub sequence: u64,
    /// 1 on first delivery.
    pub delivery_attempt: u64,
    /// The consumer's `max_deliver` (-1 unbounded), so a handler knows its last try.
    pub max_deliver: i64,
}

impl Input {
    pub fn is_last_attempt(&self) -> bool {
        self.max_deliver > 0 && self.delivery_attempt >= self.max_deliver as u64
    }
}

/// The answer to one input.
#[derive(Debug)]
pub enum Outcome {
    /// Publish these (possibly none), then ack the input.
    Publish(Vec<Envelope>),
    /// Could not do it now; ask for redelivery after this delay.
    Retry { reason: String, delay: Duration },
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, input: Input) -> impl Future<Output = Outcome> + Send;
}

/// Runs the loop until `shutdown` resolves, with at most `concurrency` inputs in flight.
/// Messages being handled when shutdown comes are finished (and acked) first.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    consumer: consumer::Consumer<consumer::pull::Config>,
    handler: Arc<H>,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send,
) {
    let max_deliver = consumer.cached_info().config.max_deliver;
    let name = consumer.cached_info().name.clone();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(consumer = %name, error = %crate::error_chain(&error), "cannot pull messages, retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let work = messages
            .filter_map(|item| {
                let name = name.clone();
                async move {
                    match item {
                        Ok(message) => Some(message),
                        Err(error) => {
                            tracing::warn!(consumer = %name, error = %crate::error_chain(&error), "pull error");
                            None
                        }
                    }
                }
            })
            .for_each_concurrent(concurrency.max(1), |message| {
                let js = js.clone();
                let handler = handler.clone();
                async move { process(&js, &*handler, message, max_deliver).await }
            });
        tokio::select! {
            _ = &mut shutdown => return,
            _ = work => {
                tracing::warn!(consumer = %name, "message stream ended, pulling again");
            }
        }
    }
}

async fn process<H: Handler>(
    js: &jetstream::Context,
    handler: &H,
    message: jetstream::Message,
    max_deliver: i64,
) {
    let stored = match StoredMessage::from_jetstream(&message) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(subject = %message.subject, error = %error, "message without JetStream info; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let delivery_attempt = message.info().map(|i| i.delivered as u64).unwrap_or(1);
    let input = Input {
        decoded: stored.decode(),
        sequence: stored.sequence,
        delivery_attempt,
        max_deliver,
    };
    match handler.handle(input).await {
        Outcome::Publish(events) => {
            for event in &events {
                match publish_event(js, event).await {
                    Ok(ack) => {
                        tracing::debug!(event_type = %event.event_type, sequence = ack.sequence, duplicate = ack.duplicate, "published")
                    }
                    Err(error) => {
                        // Not acked: the input comes back and the same ids dedupe what did land.
                        tracing::warn!(error = %crate::error_chain(&error), "publish failed; input will be redelivered");
                        let _ = message
                            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                            .await;
                        return;
                    }
                }
            }
            if let Err(error) = message.double_ack().await {
                tracing::warn!(sequence = stored.sequence, error = %error, "ack not confirmed; a redelivery will be deduplicated");
            }
        }
        Outcome::Retry { reason, delay } => {
            tracing::info!(sequence = stored.sequence, attempt = delivery_attempt, %reason, "will retry");
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
        }
    }
}
