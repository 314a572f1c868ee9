//! NATS side of metal-cli: requests to the inventory query service and the stream.

use std::time::Duration;

use async_nats::jetstream;
use metal_core::config::NatsConfig;
use metal_core::query::{EXPORT_DIGEST_HEADER, EXPORT_SEQUENCE_HEADER};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "no {} is answering on {subject} (is it running and connected to this NATS server?)",
        responder_of(subject)
    )]
    NoResponders { subject: String },
    #[error(
        "the {} did not answer {subject} within {timeout:?}",
        responder_of(subject)
    )]
    Timeout { subject: String, timeout: Duration },
    #[error("request to {subject} failed")]
    Request {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("{message}")]
    Service { code: u16, message: String },
    #[error("reply from {subject} is not what metal-cli expects")]
    Reply {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("JetStream")]
    JetStream(#[from] metal_core::jetstream::JetStreamError),
    #[error("cannot set up the NATS connection")]
    NatsSetup(#[from] metal_core::jetstream::NatsSetupError),
    #[error("{0}")]
    Other(String),
}

/// Which service answers a query subject, for error messages.
fn responder_of(subject: &str) -> &'static str {
    if subject.starts_with(metal_core::subjects::LOCATE) {
        "locator"
    } else {
        "inventory-projector"
    }
}

/// Connects without retrying: an operator wants to hear at once that NATS is not there.
pub async fn connect(url: &str, nats: &NatsConfig) -> Result<async_nats::Client, CliError> {
    connect_with(url, nats, |options| options).await
}

/// Connects, and keeps trying in the background while NATS is away, for a command that
/// waits for NATS instead of failing (`onboard`: [`publish_until_stored`]).
pub async fn connect_waiting(url: &str, nats: &NatsConfig) -> Result<async_nats::Client, CliError> {
    connect_with(url, nats, |options| {
        options.retry_on_initial_connect().max_reconnects(None)
    })
    .await
}

/// Connects as `[nats]` configures (identity, trust, metal-cli's own inbox prefix), with
/// `adjust` applied to the options.
async fn connect_with(
    url: &str,
    nats: &NatsConfig,
    adjust: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
) -> Result<async_nats::Client, CliError> {
    let options = metal_core::jetstream::connect_options(nats, "metal-cli").await?;
    adjust(options)
        .name("metal-cli")
        .connection_timeout(Duration::from_secs(5))
        .connect(metal_core::jetstream::server_urls(url))
        .await
        .map_err(|source| CliError::Connect {
            url: url.to_string(),
            source,
        })
}

/// Publishes `payload` on `subject` with `message_id` as its `Nats-Msg-Id` until JetStream
/// stores it or `deadline` passes, saying once on stderr what it waits for. Every try
/// carries the same id, so a try that was stored but whose ack was lost is not stored twice.
pub async fn publish_until_stored(
    client: &async_nats::Client,
    subject: &str,
    message_id: &str,
    payload: bytes::Bytes,
    deadline: tokio::time::Instant,
) -> Result<jetstream::publish::PublishAck, CliError> {
    let js = jetstream(client);
    // A client connecting in the background needs a moment before its first try.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    let mut told = false;
    loop {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let error = if connected {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
            let published = match js
                .publish_with_headers(subject.to_string(), headers, payload.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            match published {
                Ok(ack) => return Ok(ack),
                // NATS is there but the stream is not: waiting would not help.
                Err(error)
                    if error.kind() == jetstream::context::PublishErrorKind::StreamNotFound =>
                {
                    return Err(CliError::Other(format!(
                        "the request {message_id} was not stored: no stream takes {subject}. \
                         The services create the MACHINES stream at start-up, or: \
                         nats stream add --config nats/stream-MACHINES.json"
                    )));
                }
                Err(error) => error.to_string(),
            }
        } else {
            "not connected".to_string()
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Other(format!(
                "the request {message_id} was not stored on {subject} ({error}); is NATS up?"
            )));
        }
        if !told {
            eprintln!(
                "metal-cli: waiting for NATS to store the request {message_id} ({error}); \
                 retrying with the same id, so it is stored once"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One request/reply to the query service, with micro-service errors made plain.
pub async fn query<Q: Serialize, R: DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    request: &Q,
    timeout: Duration,
) -> Result<R, CliError> {
    let payload = serde_json::to_vec(request).map_err(|source| CliError::Reply {
        subject: subject.to_string(),
        source,
    })?;
    let reply = tokio::time::timeout(timeout, client.request(subject.to_string(), payload.into()))
        .await
        .map_err(|_| CliError::Timeout {
            subject: subject.to_string(),
            timeout,
        })?
        .map_err(|source| match source.kind() {
            async_nats::RequestErrorKind::NoResponders => CliError::NoResponders {
                subject: subject.to_string(),
            },
            async_nats::RequestErrorKind::TimedOut => CliError::Timeout {
                subject: subject.to_string(),
                timeout,
            },
            _ => CliError::Request {
                subject: subject.to_string(),
                source,
            },
        })?;
    if let Some(headers) = &reply.headers {
        if let Some(code) = headers.get("Nats-Service-Error-Code") {
            let message = headers
                .get("Nats-Service-Error")
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| "the inventory service reported an error".into());
            return Err(CliError::Service {
                code: code.as_str().parse().unwrap_or(500),
                message,
            });
        }
    }
    serde_json::from_slice(&reply.payload).map_err(|source| CliError::Reply {
        subject: subject.to_string(),
        source,
    })
}

/// The canonical export, reassembled from its chunks, with its digest and sequence.
pub struct Export {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub sequence: u64,
}

/// `received` is told the bytes received so far after each chunk.
pub async fn export(
    client: &async_nats::Client,
    timeout: Duration,
    mut received: impl FnMut(usize),
) -> Result<Export, CliError> {
    use futures::StreamExt;
    let subject = metal_core::subjects::QUERY_EXPORT;
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| CliError::Other(format!("cannot subscribe to the export inbox: {e}")))?;
    client
        .publish_with_reply(subject, inbox, "{}".into())
        .await
        .map_err(|e| CliError::Other(format!("cannot send the export request: {e}")))?;
    let mut bytes = Vec::new();
    loop {
        let message = match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(CliError::Other("export subscription closed".into())),
            Err(_) if bytes.is_empty() => {
                return Err(CliError::NoResponders {
                    subject: subject.into(),
                })
            }
            Err(_) => {
                return Err(CliError::Timeout {
                    subject: subject.into(),
                    timeout,
                })
            }
        };
        if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(CliError::NoResponders {
                subject: subject.into(),
            });
        }
        if let Some(headers) = &message.headers {
            if let Some(code) = headers.get("Nats-Service-Error-Code") {
                return Err(CliError::Service {
                    code: code.as_str().parse().unwrap_or(500),
                    message: headers
                        .get("Nats-Service-Error")
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default(),
                });
            }
            if let Some(digest) = headers.get(EXPORT_DIGEST_HEADER) {
                let sequence = headers
                    .get(EXPORT_SEQUENCE_HEADER)
                    .and_then(|v| v.as_str().parse().ok())
                    .unwrap_or(0);
                return Ok(Export {
                    bytes,
                    digest: digest.as_str().to_string(),
                    sequence,
                });
            }
        }
        bytes.extend_from_slice(&message.payload);
        received(bytes.len());
    }
}

/// One machine from the inventory service, by machine id, BMC MAC or host NIC MAC.
pub async fn machine(
    client: &async_nats::Client,
    reference: &str,
) -> Result<metal_core::query::MachineDetail, CliError> {
    query(
        client,
        metal_core::subjects::QUERY_MACHINE,
        &metal_core::query::MachineRef {
            machine: reference.trim().to_string(),
        },
        Duration::from_secs(10),
    )
    .await
}

/// Asks the inventory service about `machine` every 100 ms until `done` accepts what it
/// says. A projector that is starting (no responders, a timeout) or has not seen the
/// machine yet (404) is asked again: the caller bounds the wait.
pub async fn poll_machine<T>(
    client: &async_nats::Client,
    reference: &str,
    mut done: impl FnMut(metal_core::query::MachineDetail) -> Option<T>,
) -> Result<T, CliError> {
    loop {
        match machine(client, reference).await {
            Ok(detail) => {
                if let Some(value) = done(detail) {
                    return Ok(value);
                }
            }
            Err(CliError::Service { code: 404, .. })
            | Err(CliError::NoResponders { .. })
            | Err(CliError::Timeout { .. }) => {}
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn jetstream(client: &async_nats::Client) -> jetstream::Context {
    jetstream::new(client.clone())
}
