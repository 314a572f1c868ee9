//! Pure decisions of the locator: no I/O, no clock (time is passed in).

use std::time::Duration;

use metal_core::events::{BmcLocated, LocateFailed};
use metal_core::responder::{Input, Outcome};
use metal_core::{subjects, Decoded, Envelope, Mac};
use time::OffsetDateTime;

use crate::sources::Lookup;

/// A BMC that is not found yet may still be getting its DHCP lease: ask again after this.
pub const NOT_FOUND_RETRY_DELAY: Duration = Duration::from_secs(2);

/// The BMC MAC to look up, when the input is a valid onboarding request.
pub fn requested_mac(decoded: &Decoded) -> Option<Mac> {
    match decoded {
        Decoded::Event(event) if event.event_type == subjects::ONBOARD_REQUESTED => event.bmc_mac,
        _ => None,
    }
}

pub fn decide(input: &Input, lookup: Option<Lookup>, now: OffsetDateTime) -> Outcome {
    let event = match &input.decoded {
        Decoded::RejectedRequest { rejection, .. } => {
            return Outcome::Publish(vec![rejection.clone()])
        }
        Decoded::Event(event) if event.event_type == subjects::ONBOARD_REQUESTED => event,
        // The consumer only sees the entry point; anything else is acked and left alone.
        _ => return Outcome::Publish(Vec::new()),
    };
    let answer = match lookup {
        Some(Lookup::Found(found)) => Envelope::answering(
            event,
            subjects::BMC_LOCATED,
            &BmcLocated {
                bmc_ip: found.bmc_ip,
                redfish_url: found.redfish_url,
                source: found.source.to_string(),
            },
            now,
        ),
        Some(Lookup::NotFound { .. }) | None if !input.is_last_attempt() => {
            return Outcome::Retry {
                reason: "BMC not found yet".into(),
                delay: NOT_FOUND_RETRY_DELAY,
            }
        }
        Some(Lookup::NotFound {
            sources_tried,
            problems,
        }) => {
            let mac = event.bmc_mac.map(|m| m.to_string()).unwrap_or_default();
            let mut reason = format!(
                "BMC {mac} not found after {} attempts in: {}",
                input.delivery_attempt,
                sources_tried.join(", ")
            );
            if !problems.is_empty() {
                reason.push_str(&format!(" (unreadable: {})", problems.join("; ")));
            }
            Envelope::answering(
                event,
                subjects::LOCATE_FAILED,
                &LocateFailed {
                    reason,
                    sources_tried,
                },
                now,
            )
        }
        None => Envelope::answering(
            event,
            subjects::LOCATE_FAILED,
            &LocateFailed {
                reason: "onboarding request carries no BMC MAC".into(),
                sources_tried: Vec::new(),
            },
            now,
        ),
    };
    match answer {
        Ok(answer) => Outcome::Publish(vec![answer]),
        Err(error) => Outcome::Retry {
            reason: metal_core::error_chain(&error),
            delay: NOT_FOUND_RETRY_DELAY,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Found;
    use metal_core::envelope::{decode, StreamPosition};

    fn input(payload: &[u8], attempt: u64) -> Input {
        Input {
            decoded: decode(
                subjects::ONBOARD_REQUESTED,
                None,
                payload,
                StreamPosition {
                    stream: "MACHINES",
                    sequence: 9,
                    published: OffsetDateTime::UNIX_EPOCH,
                },
            ),
            sequence: 9,
            delivery_attempt: attempt,
            max_deliver: 5,
        }
    }

    fn published(outcome: Outcome) -> Vec<Envelope> {
        match outcome {
            Outcome::Publish(events) => events,
            Outcome::Retry { reason, .. } => panic!("unexpected retry: {reason}"),
        }
    }

    #[test]
    fn located() {
        let found = Lookup::Found(Found {
            bmc_ip: Some("127.0.0.1".into()),
            redfish_url: "http://127.0.0.1:8000".into(),
            source: "static",
        });
        let input = input(b"52:54:00:00:00:01", 1);
        let events = published(decide(
            &input,
            Some(found.clone()),
            OffsetDateTime::UNIX_EPOCH,
        ));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, subjects::BMC_LOCATED);
        let Decoded::Event(request) = &input.decoded else {
            panic!()
        };
        assert_eq!(events[0].causation_id, Some(request.event_id));
        assert_eq!(events[0].correlation_id, request.event_id);
        // Redelivery yields the same event id, so JetStream dedupes it.
        let again = published(decide(&input, Some(found), OffsetDateTime::now_utc()));
        assert_eq!(again[0].event_id, events[0].event_id);
    }

    #[test]
    fn not_found_retries_then_fails() {
        let not_found = || Lookup::NotFound {
            sources_tried: vec!["static".into()],
            problems: vec![],
        };
        assert!(matches!(
            decide(
                &input(b"52:54:00:00:00:01", 1),
                Some(not_found()),
                OffsetDateTime::UNIX_EPOCH
            ),
            Outcome::Retry { .. }
        ));
        let events = published(decide(
            &input(b"52:54:00:00:00:01", 5),
            Some(not_found()),
            OffsetDateTime::UNIX_EPOCH,
        ));
        assert_eq!(events[0].event_type, subjects::LOCATE_FAILED);
        assert!(events[0].data["reason"]
            .as_str()
            .unwrap()
            .contains("not found"));
    }

    #[test]
    fn rejected_requests_are_published_at_once() {
        let events = published(decide(
            &input(b"not a mac", 1),
            None,
            OffsetDateTime::UNIX_EPOCH,
        ));
        assert_eq!(events[0].event_type, subjects::ONBOARD_REJECTED);
        assert!(events[0].machine_id.is_none());
    }
}
