//! Pure decisions of the locator: a request plus what the sources said → the events to
//! publish, or when to look again. No I/O, no clock (time is passed in).

use std::time::Duration;

use metal_core::events::{BmcLocated, BmcSighting, LocateFailed, SourceSaid};
use metal_core::responder::{Input, Outcome};
use metal_core::{subjects, Decoded, Envelope, Mac};
use time::OffsetDateTime;

use crate::sources::static_map::url_for_host;
use crate::sources::{all_failed_for_good, choose, source_name, Answer, Located, Report};

/// The first wait before looking for a BMC again; each next wait doubles, up to
/// [`Policy::longest_wait`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// At most this many sightings are kept in `also_seen`.
pub const MAX_ALSO_SEEN: usize = 16;

/// How long and how often to look, and how a bare IP becomes a Redfish URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// From the request's time in the stream.
    pub deadline: Duration,
    pub longest_wait: Duration,
    pub redfish_scheme: String,
    pub redfish_port: Option<u16>,
}

impl Policy {
    /// The wait after the `attempt`-th lookup (1-based).
    pub fn wait_after(&self, attempt: u64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20) as u32;
        FIRST_RETRY
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.longest_wait.max(FIRST_RETRY))
    }

    /// The Redfish base URL of a sighting.
    pub fn redfish_url(&self, located: &Located) -> Option<String> {
        located.sighting.redfish_url.clone().or_else(|| {
            located
                .sighting
                .ip
                .map(|ip| url_for_host(&ip.to_string(), &self.redfish_scheme, self.redfish_port))
        })
    }
}

/// The BMC MAC to look up, when the input is a valid onboarding request.
pub fn requested_mac(decoded: &Decoded) -> Option<Mac> {
    match decoded {
        Decoded::Event(event) if event.event_type == subjects::ONBOARD_REQUESTED => event.bmc_mac,
        _ => None,
    }
}

/// A sighting as events and replies carry it.
pub fn sighting_data(located: &Located) -> BmcSighting {
    BmcSighting {
        source: located.kind.as_str().to_string(),
        source_name: source_name(&located.name),
        address: located.sighting.address(),
        last_seen: located.sighting.last_seen,
        detail: located.sighting.detail.clone(),
    }
}

fn said(reports: &[Report]) -> Vec<SourceSaid> {
    reports
        .iter()
        .map(|report| SourceSaid {
            source: report.label(),
            said: report.said(),
        })
        .collect()
}

fn failed(
    event: &Envelope,
    reason: String,
    reports: &[Report],
    now: OffsetDateTime,
) -> Result<Envelope, metal_core::envelope::EnvelopeError> {
    Envelope::answering(
        event,
        subjects::LOCATE_FAILED,
        &LocateFailed {
            reason,
            sources_tried: reports.iter().map(Report::label).collect(),
            sources_said: said(reports),
        },
        now,
    )
}

/// `reports` is `None` when the input carries no MAC to look up.
pub fn decide(
    input: &Input,
    reports: Option<&[Report]>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Outcome {
    let event = match &input.decoded {
        Decoded::RejectedRequest { rejection, .. } => {
            return Outcome::Publish(vec![rejection.clone()])
        }
        Decoded::Event(event) if event.event_type == subjects::ONBOARD_REQUESTED => event,
        // The consumer only sees the entry point; anything else is acked and left alone.
        _ => return Outcome::Publish(Vec::new()),
    };
    let Some(reports) = reports else {
        return publish_or_retry(failed(
            event,
            "onboarding request carries no BMC MAC".into(),
            &[],
            now,
        ));
    };
    let choice = choose(reports);
    if let Some(chosen) = &choice.chosen {
        let Some(redfish_url) = policy.redfish_url(chosen) else {
            return publish_or_retry(failed(
                event,
                format!("{} gave no address", chosen.kind),
                reports,
                now,
            ));
        };
        let answer = Envelope::answering(
            event,
            subjects::BMC_LOCATED,
            &BmcLocated {
                bmc_ip: chosen.sighting.ip.map(|ip| ip.to_string()),
                redfish_url,
                source: chosen.kind.as_str().to_string(),
                source_name: source_name(&chosen.name),
                last_seen: chosen.sighting.last_seen,
                detail: chosen.sighting.detail.clone(),
                also_seen: choice
                    .others
                    .iter()
                    .take(MAX_ALSO_SEEN)
                    .map(sighting_data)
                    .collect(),
            },
            now,
        );
        return publish_or_retry(answer);
    }
    let mac = event.bmc_mac.map(|m| m.to_string()).unwrap_or_default();
    let what_each_said = reports
        .iter()
        .map(|r| format!("{}: {}", r.label(), r.said()))
        .collect::<Vec<_>>()
        .join("; ");
    let what_each_said = if reports.is_empty() {
        "no locator source is configured".to_string()
    } else {
        what_each_said
    };
    if all_failed_for_good(reports) {
        return publish_or_retry(failed(
            event,
            format!("BMC {mac} cannot be looked for until an operator fixes every source: {what_each_said}"),
            reports,
            now,
        ));
    }
    let waited = Duration::try_from(now - event.time).unwrap_or(Duration::ZERO);
    if waited >= policy.deadline || input.is_last_attempt() {
        return publish_or_retry(failed(
            event,
            format!(
                "BMC {mac} not found within {} s ({} lookups): {what_each_said}",
                policy.deadline.as_secs(),
                input.delivery_attempt
            ),
            reports,
            now,
        ));
    }
    let remaining = policy.deadline - waited;
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| matches!(r.answer, Answer::Failed { .. }))
        .map(|r| format!("{}: {}", r.label(), r.said()))
        .collect();
    Outcome::Retry {
        reason: if failures.is_empty() {
            "BMC not found yet".into()
        } else {
            format!("BMC not found yet ({})", failures.join("; "))
        },
        delay: policy
            .wait_after(input.delivery_attempt)
            .min(remaining)
            .max(Duration::from_millis(100)),
    }
}

fn publish_or_retry(answer: Result<Envelope, metal_core::envelope::EnvelopeError>) -> Outcome {
    match answer {
        Ok(answer) => Outcome::Publish(vec![answer]),
        Err(error) => Outcome::Retry {
            reason: metal_core::error_chain(&error),
            delay: FIRST_RETRY,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{Sighting, SourceKind};
    use metal_core::envelope::{decode, StreamPosition};

    const REQUESTED: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn policy() -> Policy {
        Policy {
            deadline: Duration::from_secs(600),
            longest_wait: Duration::from_secs(10),
            redfish_scheme: "https".into(),
            redfish_port: Some(8443),
        }
    }

    fn input(payload: &[u8], attempt: u64) -> Input {
        Input {
            decoded: decode(
                subjects::ONBOARD_REQUESTED,
                None,
                payload,
                StreamPosition {
                    stream: "MACHINES",
                    sequence: 9,
                    published: REQUESTED,
                },
            ),
            sequence: 9,
            delivery_attempt: attempt,
            max_deliver: 1000,
        }
    }

    fn after(secs: i64) -> OffsetDateTime {
        REQUESTED + time::Duration::seconds(secs)
    }

    fn published(outcome: Outcome) -> Vec<Envelope> {
        match outcome {
            Outcome::Publish(events) => events,
            Outcome::Retry { reason, .. } => panic!("unexpected retry: {reason}"),
        }
    }

    fn seen(kind: SourceKind, name: &str, ip: &str, last_seen: Option<i64>) -> Report {
        Report {
            kind,
            name: name.into(),
            answer: Answer::Seen(vec![Sighting {
                ip: Some(ip.parse().unwrap()),
                redfish_url: None,
                last_seen: last_seen.map(after),
                current: true,
                detail: "active client of site default".into(),
            }]),
        }
    }

    fn not_seen(kind: SourceKind) -> Report {
        Report {
            kind,
            name: String::new(),
            answer: Answer::NotSeen("not among 3 entries".into()),
        }
    }

    #[test]
    fn located_says_which_source_when_it_last_saw_and_what_else_was_seen() {
        let reports = vec![
            seen(SourceKind::Unifi, "core", "127.0.0.1", Some(50)),
            seen(
                SourceKind::Kea,
                "/var/lib/kea/leases.csv",
                "127.0.0.2",
                Some(10),
            ),
        ];
        let input = input(b"52:54:00:00:00:01", 1);
        let events = published(decide(&input, Some(&reports), &policy(), after(60)));
        assert_eq!(events[0].event_type, subjects::BMC_LOCATED);
        let data: BmcLocated = events[0].data_as().unwrap();
        assert_eq!(data.source, "unifi");
        assert_eq!(data.source_name.as_deref(), Some("core"));
        assert_eq!(data.last_seen, Some(after(50)));
        assert_eq!(data.redfish_url, "https://127.0.0.1:8443");
        assert_eq!(data.also_seen.len(), 1);
        assert_eq!(data.also_seen[0].address, "127.0.0.2");
        assert_eq!(data.also_seen[0].source, "kea");
        let Decoded::Event(request) = &input.decoded else {
            panic!()
        };
        assert_eq!(events[0].causation_id, Some(request.event_id));
        // Redelivery yields the same event id, so JetStream dedupes it.
        let again = published(decide(&input, Some(&reports), &policy(), after(70)));
        assert_eq!(again[0].event_id, events[0].event_id);
    }

    #[test]
    fn a_bmc_not_seen_yet_is_looked_for_with_backoff_until_the_deadline() {
        let reports = vec![not_seen(SourceKind::Static)];
        let mut delays = Vec::new();
        for attempt in 1..=6 {
            match decide(
                &input(b"52:54:00:00:00:01", attempt),
                Some(&reports),
                &policy(),
                after(30),
            ) {
                Outcome::Retry { delay, .. } => delays.push(delay.as_secs()),
                Outcome::Publish(events) => panic!("gave up early: {events:?}"),
            }
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        // Never waits past the deadline.
        let Outcome::Retry { delay, .. } = decide(
            &input(b"52:54:00:00:00:01", 9),
            Some(&reports),
            &policy(),
            after(597),
        ) else {
            panic!("gave up before the deadline");
        };
        assert_eq!(delay, Duration::from_secs(3));
        let events = published(decide(
            &input(b"52:54:00:00:00:01", 70),
            Some(&reports),
            &policy(),
            after(600),
        ));
        assert_eq!(events[0].event_type, subjects::LOCATE_FAILED);
        let data: LocateFailed = events[0].data_as().unwrap();
        assert!(
            data.reason.contains("not found within 600 s (70 lookups)"),
            "{}",
            data.reason
        );
        assert!(
            data.reason.contains("static: not among 3 entries"),
            "{}",
            data.reason
        );
        assert_eq!(data.sources_said[0].source, "static");
    }

    #[test]
    fn every_source_failing_for_good_fails_at_once_naming_each() {
        let reports = vec![Report {
            kind: SourceKind::Unifi,
            name: "core".into(),
            answer: Answer::Failed {
                error: "wrong user name or password".into(),
                permanent: true,
            },
        }];
        let events = published(decide(
            &input(b"52:54:00:00:00:01", 1),
            Some(&reports),
            &policy(),
            after(1),
        ));
        let data: LocateFailed = events[0].data_as().unwrap();
        assert!(
            data.reason
                .contains("unifi core: error: wrong user name or password"),
            "{}",
            data.reason
        );
        // A failure that may pass is waited out like an absent BMC.
        let transient = vec![Report {
            kind: SourceKind::Unifi,
            name: "core".into(),
            answer: Answer::Failed {
                error: "HTTP 503".into(),
                permanent: false,
            },
        }];
        assert!(matches!(
            decide(
                &input(b"52:54:00:00:00:01", 1),
                Some(&transient),
                &policy(),
                after(1)
            ),
            Outcome::Retry { ref reason, .. } if reason.contains("HTTP 503")
        ));
    }

    #[test]
    fn rejected_requests_are_published_at_once() {
        let events = published(decide(&input(b"not a mac", 1), None, &policy(), REQUESTED));
        assert_eq!(events[0].event_type, subjects::ONBOARD_REJECTED);
        assert!(events[0].machine_id.is_none());
    }
}
