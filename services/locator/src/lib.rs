//! locator: answers `machine.onboard.requested` with where the BMC is.
//!
//! # Layout
//! - [`sources`]: the [`sources::Source`] trait and its backends (static map, UniFi
//!   controllers, dnsmasq / ISC dhcpd / Kea lease files, the neighbour table), and the
//!   pure choice between what they say.
//! - [`decide`]: pure: a request plus the sources' reports → the events to publish, or
//!   when to look again (backoff until `locate_deadline_secs`).
//! - [`service`]: `metal.locator.locate`, what every source says about a MAC right now.
//! - [`run`]: the wiring (durable consumer `locator`, shared by replicas, and the service).
//!
//! Malformed requests become `machine.onboard.rejected` here: the locator is the
//! consumer of the public entry point.

pub mod decide;
pub mod service;
pub mod sources;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metal_core::config::{Config, LocatorConfig};
use metal_core::jetstream::{consumer_with_retry, DurableConsumer};
use metal_core::responder::{self, Handler, Input, Outcome};
use metal_core::Mac;
use time::OffsetDateTime;

use crate::sources::leases::{LeaseFile, LeaseFormat};
use crate::sources::neighbour::NeighbourTable;
use crate::sources::static_map::StaticMap;
use crate::sources::unifi::Controller;
use crate::sources::{Answer, Report, Source, SourceKind, Sources};

/// The consumer's `max_deliver` bounds the lookups of one request; the deadline must
/// fit in fewer lookups than that, or the consumer would give up first.
const MAX_LOOKUPS: u64 = 900;

/// A configuration the locator cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum LocatorError {
    #[error("locator.sources: {0}")]
    Sources(String),
    #[error("locator: {0}")]
    Invalid(String),
    #[error(transparent)]
    Static(#[from] sources::static_map::StaticError),
    #[error(transparent)]
    Unifi(#[from] sources::unifi::UnifiError),
}

/// The responder: looks each request up in the configured sources.
pub struct Locator {
    sources: Sources,
    policy: decide::Policy,
}

impl Locator {
    pub fn new(config: &LocatorConfig) -> Result<Locator, LocatorError> {
        if config.redfish_scheme != "http" && config.redfish_scheme != "https" {
            return Err(LocatorError::Invalid(format!(
                "redfish_scheme must be http or https, not {:?}",
                config.redfish_scheme
            )));
        }
        if config.retry_secs == 0 {
            return Err(LocatorError::Invalid(
                "retry_secs must be at least 1".into(),
            ));
        }
        let policy = decide::Policy {
            deadline: Duration::from_secs(config.locate_deadline_secs),
            longest_wait: Duration::from_secs(config.retry_secs),
            redfish_scheme: config.redfish_scheme.clone(),
            redfish_port: config.redfish_port,
        };
        let lookups = config.locate_deadline_secs / config.retry_secs + 1;
        if lookups > MAX_LOOKUPS {
            return Err(LocatorError::Invalid(format!(
                "locate_deadline_secs {} with retry_secs {} means about {lookups} lookups of one BMC; at most {MAX_LOOKUPS} fit in the consumer's max_deliver: raise retry_secs",
                config.locate_deadline_secs, config.retry_secs
            )));
        }
        Ok(Locator {
            sources: build_sources(config)?,
            policy,
        })
    }

    /// What every source says about `mac` now.
    pub async fn ask(&self, mac: Mac) -> Vec<Report> {
        self.sources.ask(mac, OffsetDateTime::now_utc()).await
    }

    pub fn policy(&self) -> &decide::Policy {
        &self.policy
    }

    pub fn source_labels(&self) -> Vec<String> {
        self.sources.labels()
    }
}

impl Handler for Locator {
    async fn handle(&self, input: Input) -> Outcome {
        let reports = match decide::requested_mac(&input.decoded) {
            Some(mac) => Some(self.ask(mac).await),
            None => None,
        };
        let outcome = decide::decide(
            &input,
            reports.as_deref(),
            &self.policy,
            OffsetDateTime::now_utc(),
        );
        if let (Outcome::Publish(_), Some(reports)) = (&outcome, &reports) {
            for report in reports {
                if let Answer::Failed { error, .. } = &report.answer {
                    tracing::warn!(source = %report.label(), %error, "locator source failed");
                }
            }
        }
        outcome
    }
}

/// The sources in the configured order (`locator.sources`), or every configured source
/// in the default order.
pub fn build_sources(config: &LocatorConfig) -> Result<Sources, LocatorError> {
    let configured = |kind: SourceKind| match kind {
        SourceKind::Static => !config.static_bmcs.is_empty(),
        SourceKind::Unifi => !config.unifi.is_empty(),
        SourceKind::Dnsmasq => !config.dnsmasq_leases.is_empty(),
        SourceKind::IscDhcpd => !config.isc_dhcpd_leases.is_empty(),
        SourceKind::Kea => !config.kea_leases.is_empty(),
        SourceKind::Neighbour => config.neighbour,
    };
    let order: Vec<SourceKind> = match &config.sources {
        None => SourceKind::ALL
            .into_iter()
            .filter(|k| configured(*k))
            .collect(),
        Some(names) => {
            let mut order = Vec::new();
            for name in names {
                let kind = SourceKind::parse(name.trim()).ok_or_else(|| {
                    LocatorError::Sources(format!(
                        "unknown source {name:?}; the sources are {}",
                        SourceKind::ALL.map(|k| k.as_str()).join(", ")
                    ))
                })?;
                if order.contains(&kind) {
                    return Err(LocatorError::Sources(format!("{name:?} is listed twice")));
                }
                if kind != SourceKind::Static && !configured(kind) {
                    let key = match kind {
                        SourceKind::Unifi => "no [[locator.unifi]] controller is configured",
                        SourceKind::Dnsmasq => "locator.dnsmasq_leases is empty",
                        SourceKind::IscDhcpd => "locator.isc_dhcpd_leases is empty",
                        SourceKind::Kea => "locator.kea_leases is empty",
                        _ => "locator.neighbour is false",
                    };
                    return Err(LocatorError::Sources(format!("lists {name:?} but {key}")));
                }
                order.push(kind);
            }
            for kind in SourceKind::ALL {
                if configured(kind) && !order.contains(&kind) {
                    tracing::warn!(
                        source = kind.as_str(),
                        "configured but not in locator.sources; it is not asked"
                    );
                }
            }
            order
        }
    };
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for kind in order {
        match kind {
            SourceKind::Static => sources.push(Arc::new(StaticMap::new(
                &config.static_bmcs,
                &config.redfish_scheme,
                config.redfish_port,
            )?)),
            SourceKind::Unifi => {
                for controller in &config.unifi {
                    if !names.insert(controller.name.trim().to_string()) {
                        return Err(LocatorError::Invalid(format!(
                            "two UniFi controllers are named {:?}",
                            controller.name
                        )));
                    }
                    sources.push(Arc::new(Controller::new(controller)?));
                }
            }
            SourceKind::Dnsmasq | SourceKind::IscDhcpd | SourceKind::Kea => {
                let (format, paths) = match kind {
                    SourceKind::Dnsmasq => (LeaseFormat::Dnsmasq, &config.dnsmasq_leases),
                    SourceKind::IscDhcpd => (LeaseFormat::IscDhcpd, &config.isc_dhcpd_leases),
                    _ => (LeaseFormat::Kea, &config.kea_leases),
                };
                for path in paths {
                    sources.push(Arc::new(LeaseFile::new(format, path.clone())));
                }
            }
            SourceKind::Neighbour => sources.push(Arc::new(NeighbourTable::new(
                config.neighbour_table.clone(),
            ))),
        }
    }
    Ok(Sources::new(sources))
}

/// Runs the locator until `shutdown` resolves: the responder on `machine.onboard.requested`
/// and the `metal.locator.locate` service.
pub async fn run(
    config: &Config,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let locator = Arc::new(Locator::new(&config.locator)?);
    let labels = locator.source_labels();
    if labels.is_empty() {
        tracing::warn!("no locator source is configured; every onboarding will fail to locate its BMC (see docs/configuration.md)");
    }
    let js = async_nats::jetstream::new(client.clone());
    // A service started before NATS, or with a cluster still electing leaders, waits.
    tokio::pin!(shutdown);
    let Some((_, consumer)) =
        consumer_with_retry(&js, DurableConsumer::Locator, &mut shutdown).await
    else {
        return Ok(());
    };
    let locate_service = service::start(&client).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot start the {} service: {error}",
            metal_core::subjects::LOCATE
        )
    })?;
    let (stop_service, service_stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(locate_service.serve(locator.clone(), async {
        let _ = service_stopped.await;
    }));
    tracing::info!(
        sources = %labels.join(", "),
        deadline_secs = config.locator.locate_deadline_secs,
        "locator running"
    );
    responder::run(js, consumer, locator, config.locator.concurrency, shutdown).await;
    let _ = stop_service.send(());
    match service.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(anyhow::anyhow!("locate service: {error}")),
        Err(error) => Err(anyhow::anyhow!("locate service task: {error}")),
    }
}
