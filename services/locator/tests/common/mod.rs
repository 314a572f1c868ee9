//! What the locator's NATS tests share: running the real `locator::run` in-process.

#![allow(dead_code)]

use metal_core::config::Config;
use tokio::sync::oneshot;

/// Runs the locator until the returned sender is used or dropped.
pub fn spawn_locator(config: Config, client: async_nats::Client) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        locator::run(&config, client, async {
            let _ = stopped.await;
        })
        .await
        .expect("locator run");
    });
    stop
}
