//! Prometheus metrics: a binary serves `/metrics` on its own listener (`[metrics]` of the
//! config, or `--metrics-listen`) through `metrics-exporter-prometheus`; the names and
//! labels of the metrics several services record are here, each described once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Inputs a responder finished, by `consumer`, input `subject` and `outcome` (`answered`,
/// `retry`, `abandoned`, `handed_back`).
pub const INPUTS: &str = "metal_inputs_total";
/// Seconds a responder spent on one input, answers stored included, by `consumer`.
pub const INPUT_SECONDS: &str = "metal_input_seconds";
/// Events a responder stored (or found stored already), by `type`.
pub const EVENTS_PUBLISHED: &str = "metal_events_published_total";
/// A durable consumer's inputs not yet delivered, by `consumer` (read every few seconds).
pub const CONSUMER_PENDING: &str = "metal_consumer_pending";
/// A durable consumer's inputs delivered and not yet acked, by `consumer`.
pub const CONSUMER_ACK_PENDING: &str = "metal_consumer_ack_pending";
/// A durable consumer's inputs delivered more than once and not yet acked, by `consumer`.
pub const CONSUMER_REDELIVERED: &str = "metal_consumer_redelivered";
/// Stream messages this process's projection applied while following the stream (one
/// projection a process, so no label).
pub const PROJECTION_APPLIED: &str = "metal_projection_applied_total";
/// The last stream sequence this process's projection applied.
pub const PROJECTION_SEQUENCE: &str = "metal_projection_last_sequence";
/// Messages a running replay has applied so far, and the sequence it runs to.
pub const REPLAY_APPLIED: &str = "metal_replay_applied";
pub const REPLAY_TARGET: &str = "metal_replay_target_sequence";
/// Seconds each Redfish request took, by `outcome` (`ok`, an HTTP status class such as
/// `4xx`, `timeout`, `unreachable`, `too_large`, `error`).
pub const REDFISH_SECONDS: &str = "metal_redfish_request_seconds";
/// Requests to UniFi controllers, by `controller`, `request` (`login`, `read`) and
/// `outcome` (`ok`, `4xx`, `5xx`, `unreachable`, `error`).
pub const UNIFI_REQUESTS: &str = "metal_unifi_requests_total";
/// Boot requests answered, by `path` (`pixiecore`, `ipxe`) and `outcome` (`served`,
/// `ignored`, `unknown`).
pub const BOOT_REQUESTS: &str = "metal_boot_requests_total";
/// Phone-homes answered, by `outcome` (`installed`, `failed`, `wiped`, `rejected`).
pub const PHONE_HOMES: &str = "metal_phone_homes_total";
/// Boot records dropped (queue or memory full, or JetStream away too long).
pub const BOOT_EVENTS_DROPPED: &str = "metal_boot_events_dropped_total";

/// Buckets of the latency histograms, in seconds: from a fast loopback answer to a BMC
/// near its timeout.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "the metrics listen address {0:?} is not an address and port (such as 127.0.0.1:9181)"
    )]
    Address(String),
    #[error("cannot serve metrics on {address}: {reason}")]
    Serve { address: SocketAddr, reason: String },
}

/// Set once [`serve`] has installed the recorder.
static SERVING: AtomicBool = AtomicBool::new(false);

/// Whether this process serves metrics: work done only to feed them (reading a consumer's
/// counts from the server) is skipped otherwise.
pub fn serving() -> bool {
    SERVING.load(Ordering::Relaxed)
}

/// Installs the Prometheus recorder and serves `GET /metrics` on `listen` from the current
/// Tokio runtime, for the rest of the process; the address it listens on.
pub fn serve(listen: &str) -> Result<SocketAddr, MetricsError> {
    let address: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| MetricsError::Address(listen.to_string()))?;
    let serve_error = |reason: String| MetricsError::Serve { address, reason };
    // Bound here first, so a port in use is an error at start-up, not a log line later.
    std::net::TcpListener::bind(address).map_err(|e| serve_error(e.to_string()))?;
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), SECONDS_BUCKETS)
        .map_err(|e| serve_error(e.to_string()))?
        .install()
        .map_err(|e| serve_error(e.to_string()))?;
    SERVING.store(true, Ordering::Relaxed);
    describe();
    tracing::info!(%address, "serving Prometheus metrics at /metrics");
    Ok(address)
}

fn describe() {
    describe_counter!(
        INPUTS,
        "Inputs a responder finished, by consumer, subject and outcome"
    );
    describe_histogram!(
        INPUT_SECONDS,
        Unit::Seconds,
        "Time a responder spent on one input, answers stored included"
    );
    describe_counter!(EVENTS_PUBLISHED, "Events a responder stored, by type");
    describe_gauge!(
        CONSUMER_PENDING,
        "Inputs of a durable consumer not yet delivered"
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        "Inputs of a durable consumer delivered and not yet acked"
    );
    describe_gauge!(
        CONSUMER_REDELIVERED,
        "Inputs of a durable consumer delivered more than once and not yet acked"
    );
    describe_counter!(PROJECTION_APPLIED, "Stream messages a projection applied");
    describe_gauge!(
        PROJECTION_SEQUENCE,
        "The last stream sequence a projection applied"
    );
    describe_gauge!(REPLAY_APPLIED, "Messages the running replay has applied");
    describe_gauge!(
        REPLAY_TARGET,
        "The stream sequence the running replay runs to"
    );
    describe_histogram!(
        REDFISH_SECONDS,
        Unit::Seconds,
        "Time each Redfish request took, by outcome"
    );
    describe_counter!(
        UNIFI_REQUESTS,
        "Requests to UniFi controllers, by controller, request and outcome"
    );
    describe_counter!(BOOT_REQUESTS, "Boot requests answered, by path and outcome");
    describe_counter!(PHONE_HOMES, "Phone-homes answered, by outcome");
    describe_counter!(BOOT_EVENTS_DROPPED, "Boot records dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_address_must_be_an_address_and_port() {
        for bad in ["", "localhost", "127.0.0.1", ":9181", "127.0.0.1:port"] {
            assert!(
                matches!(serve(bad), Err(MetricsError::Address(_))),
                "{bad:?} was taken"
            );
        }
    }
}
