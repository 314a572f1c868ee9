//! JetStream plumbing: the stream and consumer configs from nats/, ensured idempotently;
//! publish-and-wait with a deterministic `Nats-Msg-Id`; reading the stream from a sequence.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::config::NatsConfig;
use crate::envelope::{decode, Decoded, Envelope, StreamPosition};
use crate::subjects;

/// The stream config, the very file `nats stream add --config` takes.
pub const STREAM_CONFIG_JSON: &str = include_str!("../../../nats/stream-MACHINES.json");
pub const LOCATOR_CONSUMER_JSON: &str = include_str!("../../../nats/consumers/locator.json");
pub const BOOT_API_CONSUMER_JSON: &str = include_str!("../../../nats/consumers/boot-api.json");
pub const VALIDATOR_CONSUMER_JSON: &str = include_str!("../../../nats/consumers/validator.json");
pub const SCRAPER_CONSUMER_JSON: &str =
    include_str!("../../../nats/consumers/redfish-scraper.json");
pub const RAW_STORE_CONFIG_JSON: &str = include_str!("../../../nats/object-store-machine-raw.json");

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("config file nats/{file} is not valid")]
    Config {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not ensure stream {name}")]
    EnsureStream {
        name: String,
        #[source]
        source: BoxError,
    },
    #[error("could not ensure consumer {name}")]
    EnsureConsumer {
        name: String,
        #[source]
        source: BoxError,
    },
    #[error("could not publish {event_type} {event_id}")]
    Publish {
        event_type: String,
        event_id: uuid::Uuid,
        #[source]
        source: BoxError,
    },
    #[error("could not read stream {name}")]
    Read {
        name: String,
        #[source]
        source: BoxError,
    },
}

impl JetStreamError {
    /// Whether trying again later may succeed: a publish JetStream could not take now (no
    /// answer in time, no stream leader during an election, a lost connection), not one it
    /// refused for what it is (too large, a wrong expected sequence).
    pub fn is_transient(&self) -> bool {
        use async_nats::jetstream::context::{PublishError, PublishErrorKind};
        match self {
            JetStreamError::Publish { source, .. } => {
                source.downcast_ref::<PublishError>().is_some_and(|error| {
                    !matches!(
                        error.kind(),
                        PublishErrorKind::MaxPayloadExceeded
                            | PublishErrorKind::WrongLastMessageId
                            | PublishErrorKind::WrongLastSequence
                    )
                })
            }
            _ => false,
        }
    }
}

pub fn stream_config() -> Result<stream::Config, JetStreamError> {
    serde_json::from_str(STREAM_CONFIG_JSON).map_err(|source| JetStreamError::Config {
        file: "stream-MACHINES.json",
        source,
    })
}

/// The durable consumers defined in nats/consumers/.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableConsumer {
    Locator,
    RedfishScraper,
    BootApi,
    Validator,
}

impl DurableConsumer {
    pub fn config(self) -> Result<consumer::pull::Config, JetStreamError> {
        let (file, text) = match self {
            DurableConsumer::Locator => ("consumers/locator.json", LOCATOR_CONSUMER_JSON),
            DurableConsumer::RedfishScraper => {
                ("consumers/redfish-scraper.json", SCRAPER_CONSUMER_JSON)
            }
            DurableConsumer::BootApi => ("consumers/boot-api.json", BOOT_API_CONSUMER_JSON),
            DurableConsumer::Validator => ("consumers/validator.json", VALIDATOR_CONSUMER_JSON),
        };
        serde_json::from_str(text).map_err(|source| JetStreamError::Config { file, source })
    }
}

/// Creates the MACHINES stream, or updates it where it differs from nats/. Safe to
/// call from every replica at every start. Its replicas are the operator's: a stream made
/// for a cluster (`--replicas 3`) keeps them, whatever nats/ says for a single server.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, JetStreamError> {
    let mut wanted = stream_config()?;
    let name = wanted.name.clone();
    let wrap = |source: BoxError| JetStreamError::EnsureStream {
        name: name.clone(),
        source,
    };
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    let info = stream.info().await.map_err(|e| wrap(Box::new(e)))?;
    if !stream_config_matches(&info.config, &wanted) {
        tracing::info!(stream = %name, "stream config differs from nats/, updating");
        wanted.num_replicas = info.config.num_replicas;
        js.update_stream(wanted)
            .await
            .map_err(|e| wrap(Box::new(e)))?;
        stream = js.get_stream(&name).await.map_err(|e| wrap(Box::new(e)))?;
    }
    Ok(stream)
}

fn stream_config_matches(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects == want.subjects
        && have.retention == want.retention
        && have.storage == want.storage
        && have.max_age == want.max_age
        && have.duplicate_window == want.duplicate_window
        && have.discard == want.discard
        && have.allow_direct == want.allow_direct
        && have.deny_delete == want.deny_delete
        && have.deny_purge == want.deny_purge
}

/// Creates the durable consumer, or updates it where it differs from nats/.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    which: DurableConsumer,
) -> Result<consumer::Consumer<consumer::pull::Config>, JetStreamError> {
    let wanted = which.config()?;
    let name = wanted.durable_name.clone().unwrap_or_default();
    let wrap = |source: BoxError| JetStreamError::EnsureConsumer {
        name: name.clone(),
        source,
    };
    let consumer = stream
        .get_or_create_consumer(&name, wanted.clone())
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    let have = &consumer.cached_info().config;
    let same = have.filter_subject == wanted.filter_subject
        && have.filter_subjects == wanted.filter_subjects
        && have.ack_wait == wanted.ack_wait
        && have.max_deliver == wanted.max_deliver
        && have.max_ack_pending == wanted.max_ack_pending
        && have.deliver_policy == wanted.deliver_policy;
    if same {
        return Ok(consumer);
    }
    tracing::info!(consumer = %name, "consumer config differs from nats/, updating");
    stream
        .update_consumer(wanted)
        .await
        .map_err(|e| wrap(Box::new(e)))
}

/// Runs `attempt` until it succeeds, again a second after each failure (NATS away, a
/// cluster still electing its leaders), logging `cannot {what}, retrying`; `None` once
/// `stop` resolves first, even mid-attempt.
pub async fn retry_until_stopped<T, A>(
    what: &str,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    mut attempt: impl FnMut() -> A,
) -> Option<T>
where
    A: std::future::Future<Output = Result<T, JetStreamError>>,
{
    loop {
        tokio::select! {
            _ = stop.as_mut() => return None,
            result = attempt() => match result {
                Ok(value) => return Some(value),
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain(&error), "cannot {what}, retrying");
                }
            }
        }
        tokio::select! {
            _ = stop.as_mut() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Ensures the stream, retrying every second while NATS is away; `None` once `stop`
/// resolves first. For services that must keep serving while NATS is down.
pub async fn stream_with_retry(
    js: &jetstream::Context,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<stream::Stream> {
    retry_until_stopped("ensure stream", stop, || ensure_stream(js)).await
}

/// Ensures the stream and the durable consumer, retrying every second while NATS is away;
/// `None` once `stop` resolves first.
pub async fn consumer_with_retry(
    js: &jetstream::Context,
    which: DurableConsumer,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<(stream::Stream, consumer::Consumer<consumer::pull::Config>)> {
    retry_until_stopped("ensure stream and consumer", stop, || async {
        let stream = ensure_stream(js).await?;
        let consumer = ensure_consumer(&stream, which).await?;
        Ok((stream, consumer))
    })
    .await
}

/// Publishes an event with its id as `Nats-Msg-Id` and waits for the PubAck, so the
/// caller may ack its input afterwards. Returns the stored sequence and whether the
/// server recognised it as a duplicate.
pub async fn publish_event(
    js: &jetstream::Context,
    event: &Envelope,
) -> Result<jetstream::publish::PublishAck, JetStreamError> {
    let payload = Bytes::from(event.to_json_bytes());
    publish_encoded(js, &event.event_type, event.event_id, payload).await
}

/// [`publish_event`] for an event already encoded (`payload` is its envelope's JSON, e.g.
/// from [`crate::envelope::EnvelopeOf`]), on the subject of its type.
pub async fn publish_encoded(
    js: &jetstream::Context,
    event_type: &str,
    event_id: uuid::Uuid,
    payload: Bytes,
) -> Result<jetstream::publish::PublishAck, JetStreamError> {
    let mut headers = HeaderMap::new();
    let mut id = uuid::Uuid::encode_buffer();
    headers.insert(
        NATS_MESSAGE_ID,
        &*event_id.hyphenated().encode_lower(&mut id),
    );
    let wrap = |source: BoxError| JetStreamError::Publish {
        event_type: event_type.to_string(),
        event_id,
        source,
    };
    let ack_future = js
        .publish_with_headers(event_type.to_string(), headers, payload)
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    ack_future.await.map_err(|e| wrap(Box::new(e)))
}

/// [`publish_encoded`], trying again for up to `patience` while JetStream cannot take it
/// for now (a stream leader being elected, a server restarting), waiting 0.2 s, then twice
/// as long each time up to 5 s; the same message id makes every try one stored event.
pub async fn publish_encoded_patiently(
    js: &jetstream::Context,
    event_type: &str,
    event_id: uuid::Uuid,
    payload: Bytes,
    patience: Duration,
) -> Result<jetstream::publish::PublishAck, JetStreamError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(200);
    loop {
        match publish_encoded(js, event_type, event_id, payload.clone()).await {
            Err(error) if error.is_transient() && tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(event_type, error = %crate::error_chain(&error), retry_in_ms = wait.as_millis() as u64, "cannot store the event yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            done => return done,
        }
    }
}

/// [`publish_event`], trying again for up to `patience` as
/// [`publish_encoded_patiently`] does.
pub async fn publish_event_patiently(
    js: &jetstream::Context,
    event: &Envelope,
    patience: Duration,
) -> Result<jetstream::publish::PublishAck, JetStreamError> {
    let payload = Bytes::from(event.to_json_bytes());
    publish_encoded_patiently(js, &event.event_type, event.event_id, payload, patience).await
}

/// nats/object-store-machine-raw.json: the raw bundle bucket.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectStoreFile {
    bucket: String,
    description: String,
    storage: stream::StorageType,
    max_bytes: i64,
    compression: bool,
}

/// Creates the `machine-raw` object store bucket if it is missing (safe from every replica).
pub async fn ensure_raw_store(
    js: &jetstream::Context,
) -> Result<jetstream::object_store::ObjectStore, JetStreamError> {
    let file: ObjectStoreFile =
        serde_json::from_str(RAW_STORE_CONFIG_JSON).map_err(|source| JetStreamError::Config {
            file: "object-store-machine-raw.json",
            source,
        })?;
    let wrap = |source: BoxError| JetStreamError::EnsureStream {
        name: format!("object store {}", file.bucket),
        source,
    };
    if let Ok(store) = js.get_object_store(&file.bucket).await {
        return Ok(store);
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: file.bucket.clone(),
        description: Some(file.description.clone()),
        storage: file.storage,
        max_bytes: file.max_bytes,
        compression: file.compression,
        ..Default::default()
    })
    .await
    .map_err(|e| wrap(Box::new(e)))
}

/// The stored message at `sequence` (a direct read, not a consumer).
pub async fn read_message(
    stream: &stream::Stream,
    sequence: u64,
) -> Result<StoredMessage, JetStreamError> {
    let wrap = |source: BoxError| JetStreamError::Read {
        name: subjects::STREAM.to_string(),
        source,
    };
    let message = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    Ok(StoredMessage {
        sequence: message.sequence,
        subject: message.subject.to_string(),
        msg_id: message
            .headers
            .get(NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string()),
        payload: message.payload.clone(),
        published: message.time,
    })
}

/// One stored message, with what decoding needs.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub sequence: u64,
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: Bytes,
    pub published: OffsetDateTime,
}

impl StoredMessage {
    pub fn from_jetstream(message: &jetstream::Message) -> Result<StoredMessage, BoxError> {
        let info = message.info()?;
        Ok(StoredMessage {
            sequence: info.stream_sequence,
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .as_ref()
                .and_then(|h| h.get(NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_string()),
            payload: message.payload.clone(),
            published: info.published,
        })
    }

    pub fn decode(&self) -> Decoded {
        decode(
            &self.subject,
            self.msg_id.as_deref(),
            &self.payload,
            StreamPosition {
                stream: subjects::STREAM,
                sequence: self.sequence,
                published: self.published,
            },
        )
    }
}

/// Reads the stream in order from `start_sequence` (1 for everything) and keeps following
/// it. Ordered consumers are ephemeral and recreated by the client on gaps and restarts.
pub async fn follow_stream(
    stream: &stream::Stream,
    start_sequence: u64,
) -> Result<impl Stream<Item = Result<StoredMessage, JetStreamError>>, JetStreamError> {
    follow_subjects(stream, start_sequence, &[]).await
}

/// The same, reading only the messages on `only` (every event subject when empty); the
/// server skips the rest.
pub async fn follow_subjects(
    stream: &stream::Stream,
    start_sequence: u64,
    only: &[String],
) -> Result<impl Stream<Item = Result<StoredMessage, JetStreamError>>, JetStreamError> {
    let wrap = |source: BoxError| JetStreamError::Read {
        name: subjects::STREAM.to_string(),
        source,
    };
    let (filter_subject, filter_subjects) = match only {
        [] => (subjects::ALL_EVENTS.to_string(), Vec::new()),
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start_sequence.max(1),
            },
            filter_subject,
            filter_subjects,
            ..Default::default()
        })
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    let messages = consumer.messages().await.map_err(|e| wrap(Box::new(e)))?;
    Ok(messages.map(move |item| {
        let message = item.map_err(|e| JetStreamError::Read {
            name: subjects::STREAM.to_string(),
            source: Box::new(e),
        })?;
        StoredMessage::from_jetstream(&message).map_err(|source| JetStreamError::Read {
            name: subjects::STREAM.to_string(),
            source,
        })
    }))
}

/// The last sequence currently in the stream (0 when empty).
pub async fn last_sequence(stream: &mut stream::Stream) -> Result<u64, JetStreamError> {
    let info = stream.info().await.map_err(|e| JetStreamError::Read {
        name: subjects::STREAM.to_string(),
        source: Box::new(e),
    })?;
    Ok(info.state.last_sequence)
}

/// Counts the connections (first and later) of the clients [`connect`] made in this process.
fn connections() -> &'static tokio::sync::watch::Sender<u64> {
    static CONNECTIONS: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> =
        std::sync::OnceLock::new();
    CONNECTIONS.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Changes each time a client made by [`connect`] in this process (re)gains its connection.
/// A follow loop re-subscribes then at once: the server may have restarted and lost its
/// ephemeral consumers, which the client would otherwise notice only after its heartbeats
/// went missing for several seconds.
pub fn reconnections() -> tokio::sync::watch::Receiver<u64> {
    connections().subscribe()
}

/// Connects to NATS with the options every binary uses: a name, unbounded reconnects, and
/// the connection's losses and returns logged and told to [`reconnections`]; no
/// authentication ([`connect_as`] for a configured identity and trust).
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let options = async_nats::ConnectOptions::new().custom_inbox_prefix(inbox_prefix(name));
    connect_with_options(url, name, options).await
}

/// [`connect`] as the identity, and with the trust, that `[nats]` configures.
pub async fn connect_as(
    url: &str,
    name: &str,
    nats: &NatsConfig,
) -> Result<async_nats::Client, NatsSetupError> {
    let options = connect_options(nats, name).await?;
    connect_with_options(url, name, options)
        .await
        .map_err(|source| NatsSetupError::Connect {
            url: url.to_string(),
            source,
        })
}

/// The servers a `nats_url` names: one URL, or several separated by commas (the nodes of
/// a cluster; the client picks one and moves to another when it is lost).
pub fn server_urls(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .collect()
}

async fn connect_with_options(
    url: &str,
    name: &str,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => {
                    tracing::info!("connected to NATS");
                    connections().send_modify(|count| *count += 1);
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the connection to NATS; reconnecting")
                }
                other => tracing::debug!(event = %other, "NATS client event"),
            }
        })
        .connect(server_urls(url))
        .await
}

/// A NATS connection that cannot even be attempted: `[nats]` is inconsistent or names
/// something missing. Secrets never appear in these messages.
#[derive(Debug, thiserror::Error)]
pub enum NatsSetupError {
    #[error("[nats] names more than one identity: choose one of user, nkey_seed_file and credentials_file")]
    TooManyIdentities,
    #[error("[nats] user is {user:?}, but the environment variable {variable} (nats.password_env) that holds its password is not set")]
    NoPassword { user: String, variable: String },
    #[error("cannot read the NATS nkey seed file {path}")]
    Seed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the NATS nkey seed file {path} holds no seed")]
    EmptySeed { path: PathBuf },
    #[error("cannot read the NATS credentials file {path}")]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the NATS {what} file {path}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("[nats] client_cert_file and client_key_file go together: set both or neither")]
    HalfClientCertificate,
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// The prefix of `name`'s reply subjects, `_INBOX.<name>`: what nats/auth.conf lets each
/// service subscribe to.
fn inbox_prefix(name: &str) -> String {
    format!("_INBOX.{name}")
}

/// The options every connection of `name` starts from: the identity and trust `[nats]`
/// configures, and replies on the service's own inbox prefix (`_INBOX.<name>.`), so a
/// server's permissions can keep one service from reading another's replies
/// (nats/auth.conf).
pub async fn connect_options(
    nats: &NatsConfig,
    name: &str,
) -> Result<async_nats::ConnectOptions, NatsSetupError> {
    let options = match (&nats.user, &nats.nkey_seed_file, &nats.credentials_file) {
        (None, None, None) => async_nats::ConnectOptions::new(),
        (Some(user), None, None) => {
            let password =
                std::env::var(&nats.password_env).map_err(|_| NatsSetupError::NoPassword {
                    user: user.clone(),
                    variable: nats.password_env.clone(),
                })?;
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password)
        }
        (None, Some(path), None) => {
            let seed = std::fs::read_to_string(path).map_err(|source| NatsSetupError::Seed {
                path: path.clone(),
                source,
            })?;
            let seed = seed.trim();
            if seed.is_empty() {
                return Err(NatsSetupError::EmptySeed { path: path.clone() });
            }
            async_nats::ConnectOptions::with_nkey(seed.to_string())
        }
        (None, None, Some(path)) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| NatsSetupError::Credentials {
                path: path.clone(),
                source,
            })?,
        _ => return Err(NatsSetupError::TooManyIdentities),
    };
    let readable = |what: &'static str, path: &PathBuf| {
        std::fs::metadata(path)
            .map(|_| ())
            .map_err(|source| NatsSetupError::TlsFile {
                what,
                path: path.clone(),
                source,
            })
    };
    let mut options = options.custom_inbox_prefix(inbox_prefix(name));
    if let Some(ca) = &nats.ca_file {
        readable("CA", ca)?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    match (&nats.client_cert_file, &nats.client_key_file) {
        (Some(cert), Some(key)) => {
            readable("client certificate", cert)?;
            readable("client key", key)?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => return Err(NatsSetupError::HalfClientCertificate),
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refusal(nats: NatsConfig) -> String {
        match connect_options(&nats, "test").await {
            Ok(_) => panic!("{nats:?} was accepted"),
            Err(error) => crate::error_chain(&error),
        }
    }

    #[tokio::test]
    async fn a_nats_setup_that_cannot_work_is_refused_naming_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty_seed = dir.path().join("empty.nk");
        std::fs::write(&empty_seed, "\n").unwrap();
        let user = |name: &str| NatsConfig {
            user: Some(name.to_string()),
            password_env: "METAL_TEST_UNSET_NATS_PASSWORD_4F2".to_string(),
            ..NatsConfig::default()
        };
        let message = refusal(user("locator")).await;
        assert!(
            message.contains("\"locator\"")
                && message.contains("METAL_TEST_UNSET_NATS_PASSWORD_4F2"),
            "{message}"
        );
        let both = NatsConfig {
            nkey_seed_file: Some(empty_seed.clone()),
            ..user("locator")
        };
        assert!(refusal(both).await.contains("more than one identity"));
        let seed = NatsConfig {
            nkey_seed_file: Some(empty_seed.clone()),
            ..NatsConfig::default()
        };
        assert!(refusal(seed).await.contains("holds no seed"));
        let ca = NatsConfig {
            ca_file: Some(missing.clone()),
            ..NatsConfig::default()
        };
        let message = refusal(ca).await;
        assert!(
            message.contains("CA file") && message.contains("missing.pem"),
            "{message}"
        );
        let half = NatsConfig {
            client_cert_file: Some(missing),
            ..NatsConfig::default()
        };
        assert!(refusal(half).await.contains("go together"));
    }

    #[tokio::test]
    async fn no_setup_needs_no_file_and_no_variable() {
        assert!(connect_options(&NatsConfig::default(), "locator")
            .await
            .is_ok());
    }
}
