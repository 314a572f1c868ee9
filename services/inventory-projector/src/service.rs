//! The query service (NATS micro, `metal-inventory`): one endpoint per query subject, each
//! request handled in its own task, SQLite work on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream::stream::Stream;
use async_nats::service::{Request, ServiceExt};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use metal_core::query::{EXPORT_CHUNK_BYTES, EXPORT_DIGEST_HEADER, EXPORT_SEQUENCE_HEADER};
use metal_core::subjects;
use metal_projection::{export, LiveProjection};

use crate::answer::{answer, QueryError};
use crate::replay::replay;

/// What request handlers share.
#[derive(Debug, Clone)]
pub struct QueryContext {
    pub client: async_nats::Client,
    pub stream: Stream,
    pub live: LiveProjection,
    pub database: PathBuf,
    /// One replay at a time; a second request waits for the first.
    pub replay_lock: Arc<tokio::sync::Mutex<()>>,
    /// How far the running replay has got, for the status.
    pub replay_meter: Arc<crate::replay::ReplayMeter>,
}

/// The endpoints: (name, subject).
const ENDPOINTS: &[(&str, &str)] = &[
    ("machines", subjects::QUERY_MACHINES),
    ("machine", subjects::QUERY_MACHINE),
    ("history", subjects::QUERY_HISTORY),
    ("export", subjects::QUERY_EXPORT),
    ("replay", subjects::QUERY_REPLAY),
    ("status", subjects::QUERY_STATUS),
    ("unknown", subjects::QUERY_UNKNOWN),
    ("drift", subjects::QUERY_DRIFT),
];

/// Serves the query service until `stop` resolves.
pub async fn serve(
    context: QueryContext,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), async_nats::Error> {
    let service = context
        .client
        .service_builder()
        .description("metal inventory projection queries")
        .start(subjects::QUERY_SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await?;
    let mut endpoints = Vec::new();
    for (name, subject) in ENDPOINTS {
        let endpoint = service.endpoint_builder().name(name).add(*subject).await?;
        endpoints.push(endpoint.map(move |request| (*subject, request)));
    }
    let mut requests = futures::stream::select_all(endpoints);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            next = requests.next() => {
                let Some((subject, request)) = next else { break };
                tokio::spawn(handle(context.clone(), subject, request));
            }
        }
    }
    service.stop().await?;
    Ok(())
}

async fn handle(context: QueryContext, subject: &'static str, request: Request) {
    if subject != subjects::QUERY_REPLAY {
        if let Some(why) = context.live.damage() {
            let refusal = QueryError::unavailable(format!(
                "the inventory projection {} is damaged ({why}); it answers nothing until `metal-cli replay` rebuilds it from the stream",
                context.database.display()
            ));
            return respond(&request, subject, Err(refusal)).await;
        }
    }
    let result = match subject {
        subjects::QUERY_EXPORT => return send_export(&context, &request).await,
        subjects::QUERY_REPLAY => run_replay(&context).await,
        subjects::QUERY_STATUS => status(&context).await,
        _ => {
            let payload = request.message.payload.clone();
            context
                .live
                .with(move |projection| answer(projection, subject, &payload))
                .await
                .unwrap_or_else(|error| Err(QueryError::internal(&error)))
        }
    };
    respond(&request, subject, result.map(Bytes::from)).await;
}

async fn respond(request: &Request, subject: &str, result: Result<Bytes, QueryError>) {
    if let Err(error) = &result {
        // A damaged projection's refusals (503) were explained once, when it was found.
        if error.code >= 500 && error.code != 503 {
            tracing::error!(subject, error = %error.message, "query failed");
        } else {
            tracing::debug!(subject, code = error.code, error = %error.message, "query refused");
        }
    }
    if let Err(error) = request.respond(result.map_err(Into::into)).await {
        tracing::warn!(subject, error = %metal_core::error_chain(&error), "cannot send reply");
    }
}

/// The projection's status beside the stream's last sequence, so a reader can tell how far
/// behind the answers are.
async fn status(context: &QueryContext) -> Result<Vec<u8>, QueryError> {
    let mut status = context
        .live
        .with(|projection| projection.status())
        .await
        .map_err(|error| QueryError::internal(&error))?
        .map_err(|error| QueryError::internal(&error))?;
    status.replay = context.replay_meter.progress();
    match metal_core::jetstream::last_sequence(&mut context.stream.clone()).await {
        Ok(end) => status.stream_last_sequence = Some(end),
        Err(error) => {
            tracing::warn!(error = %metal_core::error_chain(&error), "status without the stream's end")
        }
    }
    serde_json::to_vec(&status).map_err(|error| QueryError::internal(&error))
}

async fn run_replay(context: &QueryContext) -> Result<Vec<u8>, QueryError> {
    let _one_at_a_time = context.replay_lock.lock().await;
    let report = replay(
        &context.stream,
        &context.live,
        &context.database,
        &context.replay_meter,
    )
    .await
    .map_err(|error| QueryError::internal(&error))?;
    serde_json::to_vec(&report).map_err(|error| QueryError::internal(&error))
}

/// Streams the canonical export to the reply subject in chunks as it is written (at
/// 100,000 machines it is about a gigabyte, never held whole), then an empty message with
/// the digest and sequence headers; an error midway is answered as an error message.
async fn send_export(context: &QueryContext, request: &Request) {
    let Some(reply) = request.message.reply.clone() else {
        return;
    };
    let (chunks_in, mut chunks_out) = tokio::sync::mpsc::channel::<Bytes>(4);
    let exported = context.live.with(
        move |projection| -> Result<(String, u64), metal_projection::ProjectionError> {
            let sequence = projection.last_sequence()?;
            let mut out = export::Digesting::new(ChunkWriter {
                chunks: chunks_in,
                buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES),
            });
            projection.write_canonical_export(&mut out)?;
            let (mut chunks, digest) = out.finish();
            chunks
                .send_buffer()
                .map_err(metal_projection::ProjectionError::Export)?;
            Ok((digest, sequence))
        },
    );
    let forward = async {
        while let Some(chunk) = chunks_out.recv().await {
            if let Err(error) = context.client.publish(reply.clone(), chunk).await {
                tracing::warn!(error = %metal_core::error_chain(&error), "cannot send export chunk");
                // Dropping the receiver stops the export at its next chunk.
                return;
            }
        }
    };
    let (exported, ()) = tokio::join!(exported, forward);
    let (digest, sequence) = match exported {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => {
            return respond(
                request,
                subjects::QUERY_EXPORT,
                Err(QueryError::internal(&error)),
            )
            .await
        }
        Err(error) => {
            return respond(
                request,
                subjects::QUERY_EXPORT,
                Err(QueryError::internal(&error)),
            )
            .await
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(EXPORT_DIGEST_HEADER, digest.as_str());
    headers.insert(EXPORT_SEQUENCE_HEADER, sequence.to_string().as_str());
    if let Err(error) = context
        .client
        .publish_with_headers(reply, headers, Bytes::new())
        .await
    {
        tracing::warn!(error = %metal_core::error_chain(&error), "cannot send export trailer");
    }
    let _ = context.client.flush().await;
}

/// Cuts what is written into `EXPORT_CHUNK_BYTES` messages and hands each to the task that
/// publishes them, waiting while it is behind.
struct ChunkWriter {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(EXPORT_CHUNK_BYTES));
        self.chunks.blocking_send(Bytes::from(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the export's reply is no longer being sent",
            )
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = EXPORT_CHUNK_BYTES - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() >= EXPORT_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod chunk_tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn an_export_is_cut_into_whole_chunks_that_add_up_to_it() {
        let (chunks_in, mut chunks_out) = tokio::sync::mpsc::channel::<Bytes>(1);
        let written: Vec<u8> = (0..EXPORT_CHUNK_BYTES * 5 / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        let expected = written.clone();
        let writer = std::thread::spawn(move || {
            let mut out = export::Digesting::new(ChunkWriter {
                chunks: chunks_in,
                buffer: Vec::new(),
            });
            for piece in written.chunks(7919) {
                out.write_all(piece).unwrap();
            }
            let (mut chunks, digest) = out.finish();
            chunks.send_buffer().unwrap();
            digest
        });
        let mut received = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = chunks_out.blocking_recv() {
            sizes.push(chunk.len());
            received.extend_from_slice(&chunk);
        }
        let digest = writer.join().unwrap();
        assert_eq!(
            sizes,
            [
                EXPORT_CHUNK_BYTES,
                EXPORT_CHUNK_BYTES,
                EXPORT_CHUNK_BYTES / 2
            ]
        );
        assert!(
            received == expected,
            "the chunks add up to what was written"
        );
        assert_eq!(digest, export::digest(&expected));
    }
}
