//! Where BMCs are seen: one [`Source`] per backend (static map, UniFi controllers, DHCP
//! lease files, the neighbour table), asked together, and the pure choice between what
//! they say ([`choose`]).

pub mod leases;
pub mod neighbour;
pub mod static_map;
pub mod unifi;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use metal_core::Mac;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest a single source may take to answer one lookup; a slower one counts as failed
/// for this attempt, so one hung controller never holds up the others.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(20);

/// The kinds of source, named as in `locator.sources` and in `machine.bmc.located`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Static,
    Unifi,
    Dnsmasq,
    IscDhcpd,
    Kea,
    Neighbour,
}

impl SourceKind {
    /// Every kind, in the default order of `locator.sources`.
    pub const ALL: [SourceKind; 6] = [
        SourceKind::Static,
        SourceKind::Unifi,
        SourceKind::Dnsmasq,
        SourceKind::IscDhcpd,
        SourceKind::Kea,
        SourceKind::Neighbour,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Static => "static",
            SourceKind::Unifi => "unifi",
            SourceKind::Dnsmasq => "dnsmasq",
            SourceKind::IscDhcpd => "isc-dhcpd",
            SourceKind::Kea => "kea",
            SourceKind::Neighbour => "neighbour",
        }
    }

    pub fn parse(name: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source's sighting of a MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The address seen, when the source gives one (a static entry may name a host).
    pub ip: Option<IpAddr>,
    /// A full Redfish base URL, when the source gives one (static entries); otherwise
    /// it is built from `ip` with `redfish_scheme` and `redfish_port`.
    pub redfish_url: Option<String>,
    /// When the source last saw the MAC, if it keeps that.
    pub last_seen: Option<OffsetDateTime>,
    /// Seen now (an active client, a lease not yet ended, a complete neighbour entry), as
    /// opposed to remembered (a known but offline client's fixed or last IP).
    pub current: bool,
    /// What the source said, for people: "active client of site default", "lease until ...".
    pub detail: String,
}

impl Sighting {
    /// The IP seen, or the Redfish URL of a static entry naming a host.
    pub fn address(&self) -> String {
        self.ip
            .map(|ip| ip.to_string())
            .or_else(|| self.redfish_url.clone())
            .unwrap_or_default()
    }
}

/// What one source said about one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every sighting of the MAC (several when it has several addresses).
    Seen(Vec<Sighting>),
    /// The source works and does not know the MAC; the text says what was searched.
    NotSeen(String),
    /// The source could not be asked. `permanent` when asking again cannot help without
    /// an operator (wrong password, MFA, unknown site), so the locator need not wait.
    Failed { error: String, permanent: bool },
}

/// One source's answer, labelled with the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: SourceKind,
    /// Which instance: a controller's name, a lease file's path; empty for singletons.
    pub name: String,
    pub answer: Answer,
}

impl Report {
    /// `unifi core`, `dnsmasq /var/lib/misc/dnsmasq.leases`, `static`.
    pub fn label(&self) -> String {
        label(self.kind, &self.name)
    }

    /// What this source said, in a line.
    pub fn said(&self) -> String {
        match &self.answer {
            Answer::Seen(sightings) => sightings
                .iter()
                .map(|s| format!("{} ({})", s.address(), s.detail))
                .collect::<Vec<_>>()
                .join(", "),
            Answer::NotSeen(text) => text.clone(),
            Answer::Failed { error, .. } => format!("error: {error}"),
        }
    }
}

/// A source's instance name as events carry it: `None` for singletons (static, neighbour).
pub fn source_name(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_string())
}

pub fn label(kind: SourceKind, name: &str) -> String {
    if name.is_empty() {
        kind.as_str().to_string()
    } else {
        format!("{} {name}", kind.as_str())
    }
}

/// A backend the locator asks where a MAC is.
pub trait Source: Send + Sync {
    fn kind(&self) -> SourceKind;
    /// The instance name for reports and logs (see [`Report::name`]).
    fn name(&self) -> String;
    /// What this source knows of `mac` now. Never panics on what it reads; a problem is
    /// an [`Answer::Failed`].
    fn lookup(&self, mac: Mac, now: OffsetDateTime) -> BoxFuture<'_, Answer>;
}

/// Answers from a file-backed source: `read` runs on the blocking pool, and a read that
/// fails or stops is a temporary failure (the file may be fixed or appear later), its
/// message led by `prefix`.
pub(crate) async fn answer_from_blocking_read<T, E>(
    prefix: String,
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
    answer: impl FnOnce(T) -> Answer,
) -> Answer
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let failed = |error: String| Answer::Failed {
        error: format!("{prefix}{error}"),
        permanent: false,
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => answer(value),
        Ok(Err(error)) => failed(error.to_string()),
        Err(error) => failed(format!("reading stopped: {error}")),
    }
}

/// The sources of one locator, in the configured order.
#[derive(Clone)]
pub struct Sources {
    sources: Vec<Arc<dyn Source>>,
}

impl Sources {
    pub fn new(sources: Vec<Arc<dyn Source>>) -> Sources {
        Sources { sources }
    }

    pub fn labels(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| label(s.kind(), &s.name()))
            .collect()
    }

    /// Asks every source at once; reports come back in the configured order.
    pub async fn ask(&self, mac: Mac, now: OffsetDateTime) -> Vec<Report> {
        let asks = self.sources.iter().map(|source| async move {
            let answer = match tokio::time::timeout(SOURCE_TIMEOUT, source.lookup(mac, now)).await {
                Ok(answer) => answer,
                Err(_) => Answer::Failed {
                    error: format!("no answer within {} s", SOURCE_TIMEOUT.as_secs()),
                    permanent: false,
                },
            };
            Report {
                kind: source.kind(),
                name: source.name(),
                answer,
            }
        });
        futures::future::join_all(asks).await
    }
}

/// A sighting with the source that made it, ready for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub kind: SourceKind,
    pub name: String,
    pub sighting: Sighting,
}

/// The outcome of one lookup: the chosen sighting and every other one, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub chosen: Option<Located>,
    /// Every other sighting, best first.
    pub others: Vec<Located>,
}

/// Picks where the BMC is from every source's reports (given in the configured order).
///
/// An operator's static entry wins outright. Otherwise a current sighting beats a
/// remembered one, then the most recently seen wins (a sighting whose source keeps no
/// time comes after those that do), then the configured order breaks ties.
pub fn choose(reports: &[Report]) -> Choice {
    let mut all: Vec<(usize, Located)> = Vec::new();
    for report in reports {
        if let Answer::Seen(sightings) = &report.answer {
            for sighting in sightings {
                all.push((
                    all.len(),
                    Located {
                        kind: report.kind,
                        name: report.name.clone(),
                        sighting: sighting.clone(),
                    },
                ));
            }
        }
    }
    all.sort_by(|(a_order, a), (b_order, b)| {
        let tier = |l: &Located| match (l.kind, l.sighting.current) {
            (SourceKind::Static, _) => 0,
            (_, true) => 1,
            (_, false) => 2,
        };
        tier(a)
            .cmp(&tier(b))
            // Newest first; `None` sorts before `Some` in Option's order, hence reversed.
            .then_with(|| b.sighting.last_seen.cmp(&a.sighting.last_seen))
            .then_with(|| a_order.cmp(b_order))
    });
    let mut located = all.into_iter().map(|(_, l)| l);
    Choice {
        chosen: located.next(),
        others: located.collect(),
    }
}

/// True when every source failed for good, so waiting for the BMC cannot help.
pub fn all_failed_for_good(reports: &[Report]) -> bool {
    !reports.is_empty()
        && reports.iter().all(|r| {
            matches!(
                r.answer,
                Answer::Failed {
                    permanent: true,
                    ..
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(ip: &str, last_seen: Option<i64>, current: bool) -> Sighting {
        Sighting {
            ip: Some(ip.parse().unwrap()),
            redfish_url: None,
            last_seen: last_seen.map(|t| OffsetDateTime::from_unix_timestamp(t).unwrap()),
            current,
            detail: String::new(),
        }
    }

    fn report(kind: SourceKind, sightings: Vec<Sighting>) -> Report {
        Report {
            kind,
            name: String::new(),
            answer: if sightings.is_empty() {
                Answer::NotSeen("no".into())
            } else {
                Answer::Seen(sightings)
            },
        }
    }

    fn chosen_ip(reports: &[Report]) -> String {
        choose(reports)
            .chosen
            .and_then(|l| l.sighting.ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_freshest_sighting_wins_and_the_others_are_kept() {
        let reports = vec![
            report(SourceKind::Unifi, vec![seen("127.0.0.1", Some(100), true)]),
            report(
                SourceKind::IscDhcpd,
                vec![seen("127.0.0.2", Some(200), true)],
            ),
        ];
        assert_eq!(chosen_ip(&reports), "127.0.0.2");
        let choice = choose(&reports);
        assert_eq!(choice.others.len(), 1);
        assert_eq!(choice.others[0].kind, SourceKind::Unifi);
    }

    #[test]
    fn static_wins_then_current_beats_remembered_then_order() {
        let stale_newer = seen("127.0.0.3", Some(900), false);
        let current_older = seen("127.0.0.4", Some(100), true);
        let reports = vec![
            report(SourceKind::Unifi, vec![stale_newer.clone()]),
            report(SourceKind::Kea, vec![current_older.clone()]),
        ];
        assert_eq!(chosen_ip(&reports), "127.0.0.4");
        let mut with_static = reports.clone();
        with_static.push(report(
            SourceKind::Static,
            vec![seen("127.0.0.5", None, true)],
        ));
        assert_eq!(chosen_ip(&with_static), "127.0.0.5");
        // No times at all: the configured order decides.
        let untimed = vec![
            report(SourceKind::Dnsmasq, vec![seen("127.0.0.6", None, true)]),
            report(SourceKind::Neighbour, vec![seen("127.0.0.7", None, true)]),
        ];
        assert_eq!(chosen_ip(&untimed), "127.0.0.6");
        // A timed sighting beats an untimed one.
        let mixed = vec![
            report(SourceKind::Dnsmasq, vec![seen("127.0.0.6", None, true)]),
            report(SourceKind::Kea, vec![seen("127.0.0.8", Some(5), true)]),
        ];
        assert_eq!(chosen_ip(&mixed), "127.0.0.8");
    }

    #[test]
    fn nothing_seen_is_no_choice() {
        let reports = vec![report(SourceKind::Static, vec![])];
        assert!(choose(&reports).chosen.is_none());
        assert!(!all_failed_for_good(&reports));
        let failed = vec![Report {
            kind: SourceKind::Unifi,
            name: "core".into(),
            answer: Answer::Failed {
                error: "wrong password".into(),
                permanent: true,
            },
        }];
        assert!(all_failed_for_good(&failed));
        assert_eq!(failed[0].label(), "unifi core");
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SourceKind::parse("dhcp"), None);
    }
}
