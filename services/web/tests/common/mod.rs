//! What the web integration tests share: a private nats-server with fixture messages on
//! the stream, and `web::run` (with the shipped boot profiles) on a free loopback port until
//! the test stops it.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::time::Duration;

use metal_core::jetstream::StoredMessage;
use test_harness::nats::NatsServer;

/// Publishes stored fixture messages as the pipeline would, each with its `Nats-Msg-Id`.
pub async fn publish(js: &async_nats::jetstream::Context, messages: &[StoredMessage]) {
    for message in messages {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = &message.msg_id {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// `web::run` over its own nats-server, serving at `base`.
pub struct RunningWeb {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub js: async_nats::jetstream::Context,
    /// Holds web's projection file; tests may put their own files here too.
    pub dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    service: tokio::task::JoinHandle<Result<(), web::WebError>>,
    _nats: NatsServer,
}

impl RunningWeb {
    /// Starts nats-server, puts `messages` on the stream, then runs web on a free port.
    pub async fn start(messages: &[StoredMessage]) -> RunningWeb {
        let nats = NatsServer::start();
        let client = nats.connect().await;
        let js = async_nats::jetstream::new(client.clone());
        metal_core::jetstream::ensure_stream(&js).await.unwrap();
        publish(&js, messages).await;

        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = metal_core::config::WebConfig {
            listen: listener.local_addr().unwrap().to_string(),
            database: dir.path().join("web.db"),
        };
        // The profiles boot-api ships with, as a deployment's `boot_api.profiles` names them.
        let profiles = metal_core::profiles::Profiles::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../profiles/boot-profiles.toml"),
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = tokio::spawn(async move {
            web::run(&config, &profiles, client, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        RunningWeb {
            base,
            js,
            dir,
            stop,
            service,
            _nats: nats,
        }
    }

    /// Shuts web down; fails unless it stops cleanly within 10 s (`when` says what was
    /// still open).
    pub async fn stop(self, when: &str) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.service)
            .await
            .unwrap_or_else(|_| panic!("web did not stop on shutdown {when}"))
            .unwrap()
            .unwrap();
    }
}
