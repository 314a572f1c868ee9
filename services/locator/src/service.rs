//! `metal.locator.locate` (NATS micro service `metal-locator`): asks every source about a
//! MAC right now and answers what each said and what an onboarding would choose. It
//! publishes nothing on the stream.

use std::sync::Arc;

use async_nats::service::{endpoint::Endpoint, Request, Service, ServiceExt};
use futures::StreamExt;
use metal_core::locate::{
    AnswerKind, LocateReply, LocateRequest, LocatedNow, SightingNow, SourceAnswer,
};
use metal_core::{subjects, Mac};

use crate::decide::sighting_data;
use crate::sources::{choose, source_name, Answer, Report};
use crate::Locator;

/// The started service, ready to [`LocateService::serve`].
pub struct LocateService {
    service: Service,
    endpoint: Endpoint,
}

/// Registers the service with NATS (so a failure shows at start-up, not later).
pub async fn start(client: &async_nats::Client) -> Result<LocateService, async_nats::Error> {
    let service = client
        .service_builder()
        .description("what every locator source says about a BMC MAC right now")
        .start(subjects::LOCATE_SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await?;
    let endpoint = service
        .endpoint_builder()
        .name("locate")
        .add(subjects::LOCATE)
        .await?;
    Ok(LocateService { service, endpoint })
}

impl LocateService {
    /// Answers requests, each in its own task, until `stop` resolves.
    pub async fn serve(
        mut self,
        locator: Arc<Locator>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), async_nats::Error> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                next = self.endpoint.next() => {
                    let Some(request) = next else { break };
                    tokio::spawn(handle(locator.clone(), request));
                }
            }
        }
        self.service.stop().await?;
        Ok(())
    }
}

async fn handle(locator: Arc<Locator>, request: Request) {
    let result = match requested(&request.message.payload) {
        Ok(mac) => {
            let reports = locator.ask(mac).await;
            serde_json::to_vec(&reply(&locator, mac, &reports)).map_err(|error| {
                async_nats::service::error::Error {
                    status: error.to_string(),
                    code: 500,
                }
            })
        }
        Err(reason) => Err(async_nats::service::error::Error {
            status: reason,
            code: 400,
        }),
    };
    if let Err(error) = request.respond(result.map(Into::into)).await {
        tracing::warn!(error = %metal_core::error_chain(&error), "cannot send locate reply");
    }
}

/// A JSON `{"bmc_mac": ...}` or a bare MAC, as `nats req` sends it.
pub fn requested(payload: &[u8]) -> Result<Mac, String> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| "the request is not UTF-8".to_string())?
        .trim();
    let mac_text = match serde_json::from_str::<LocateRequest>(text) {
        Ok(request) => request.bmc_mac,
        Err(_) if text.starts_with('{') => {
            return Err("the request is not {\"bmc_mac\": \"...\"}".to_string())
        }
        Err(_) => text.to_string(),
    };
    let excerpt: String = mac_text.chars().take(40).collect();
    Mac::parse_device(&mac_text).map_err(|error| format!("cannot locate {excerpt:?}: {error}"))
}

/// The reply for `mac` from the sources' reports.
pub fn reply(locator: &Locator, mac: Mac, reports: &[Report]) -> LocateReply {
    let choice = choose(reports);
    let located = choice.chosen.as_ref().and_then(|chosen| {
        locator
            .policy()
            .redfish_url(chosen)
            .map(|redfish_url| LocatedNow {
                redfish_url,
                sighting: sighting_data(chosen),
            })
    });
    let sources = reports
        .iter()
        .map(|report| {
            let (answer, permanent, sightings) = match &report.answer {
                Answer::Seen(sightings) => (
                    AnswerKind::Seen,
                    false,
                    sightings
                        .iter()
                        .map(|s| SightingNow {
                            address: s.address(),
                            last_seen: s.last_seen,
                            current: s.current,
                            detail: s.detail.clone(),
                        })
                        .collect(),
                ),
                Answer::NotSeen(_) => (AnswerKind::NotSeen, false, Vec::new()),
                Answer::Failed { permanent, .. } => (AnswerKind::Failed, *permanent, Vec::new()),
            };
            SourceAnswer {
                source: report.kind.as_str().to_string(),
                source_name: source_name(&report.name),
                answer,
                said: report.said(),
                permanent,
                sightings,
            }
        })
        .collect();
    LocateReply {
        bmc_mac: mac,
        located,
        sources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_json_or_a_bare_mac() {
        let mac = Mac::parse_any("52:54:00:aa:00:01").unwrap();
        assert_eq!(requested(br#"{"bmc_mac":"52-54-00-AA-00-01"}"#), Ok(mac));
        assert_eq!(requested(b" 5254.00aa.0001\n"), Ok(mac));
        assert!(requested(br#"{"mac":"x"}"#)
            .unwrap_err()
            .contains("bmc_mac"));
        assert!(requested(b"01:00:5e:00:00:01")
            .unwrap_err()
            .contains("multicast"));
        assert!(requested(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        let long = "x".repeat(10_000);
        assert!(requested(long.as_bytes()).unwrap_err().len() < 200);
    }
}
