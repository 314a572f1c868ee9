//! Periodic rescans and BMC health: which machines are due a rescan, spread over the
//! interval, and which BMCs have been silent long enough to be lost.
//!
//! [`plan`] is pure: given the time and the projection's [`RescanCandidate`]s (every
//! machine with a Redfish URL) it returns the events due; [`watch`] calls it every tick and
//! publishes them. Nothing is remembered between ticks: what was done is read back from the
//! projection (`bmc_last_tried` is the time of the last scrape outcome), and what is
//! published twice carries the same event id, which JetStream deduplicates.
//!
//! # Which interval
//!
//! - A machine in one of [`NEVER_RESCANNED`] is never rescanned: `requested` and `located`
//!   have a scrape in flight already, `provisioning` and `booting` are armed (a rescan during
//!   a netboot would fight the installer), `wiping`, `retiring` and `retired` are being or
//!   have been taken out of service. [`Policy::from_config`] refuses an interval for them.
//! - Any other state is rescanned every `rescan_interval_secs[state]`; a state absent from
//!   the map is not rescanned periodically.
//! - A machine whose BMC is failing (`failing_since` set: its last scrape went unanswered)
//!   uses `failing_rescan_interval_secs` instead, to see it come back soon — but only if its
//!   state is rescanned at all. A failing machine in a state without an interval is not
//!   rescanned (it is still declared lost, below).
//!
//! # Spreading
//!
//! Each machine has a phase within its interval: its machine id (a UUID, as a 128-bit
//! number) modulo the interval in seconds. Time is cut into periods of the interval
//! starting at the phase: the period index of an instant `t` is
//! `floor((t - phase) / interval)` (Unix seconds). A machine is due once per period, at its
//! phase: when the period index of `now` is greater than that of `last_tried`. So a fleet
//! onboarded at once rescans evenly over the interval from then on, and a restart of the
//! validator rescans nobody early: the projection knows when each machine was last tried.
//!
//! A machine that is more than one period behind (never tried, or last tried before a long
//! outage of the validator or the scraper, or back from a long netboot) would make a fleet
//! rescan at once, so it catches up at its phase instead: it is due only in the first
//! `window` seconds of its current period (`window` is the tick, [`Policy::from_config`]
//! takes `tick_secs`, and [`watch`] widens it to its own tick so no phase falls between two
//! ticks). A machine never tried is in that case: it is due when its first phase comes round.
//!
//! # BMC lost
//!
//! A BMC whose `failing_since` is more than `bmc_lost_after_secs` before `now`, and that is
//! not lost yet, gets `machine.bmc.lost` (with its `failing_since`, `last_seen` and the last
//! error as the reason), whatever the machine's state except `retired`. `machine.bmc.found`
//! is someone else's.
//!
//! # Event ids
//!
//! Deterministic, through [`metal_core::ids::derived_event_id`] of the machine id: a rescan's
//! from (interval, period index), so two validator replicas, or one restarted, publish the
//! same id in one period and JetStream keeps one; `machine.bmc.lost`'s from `failing_since`,
//! so it is published once per outage. Each is its own correlation (`correlation_id` = the
//! event id, no causation), like `metal-cli rescan`'s requests; a rescan names the machine's
//! last `machine.hardware.scraped` as `previous`.

use std::future::Future;
use std::time::Duration;

use metal_core::config::ValidatorConfig;
use metal_core::events::{BmcLost, RescanRequested};
use metal_core::ids::derived_event_id;
use metal_core::query::MachineState;
use metal_core::{subjects, Envelope};
use metal_projection::{LiveProjection, RescanCandidate};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

/// `requested_by` of the periodic rescan requests.
pub const REQUESTED_BY: &str = "validator (periodic rescan)";

/// States never rescanned periodically, whatever the configuration.
pub const NEVER_RESCANNED: [MachineState; 7] = [
    MachineState::Requested,
    MachineState::Located,
    MachineState::Provisioning,
    MachineState::Booting,
    MachineState::Wiping,
    MachineState::Retiring,
    MachineState::Retired,
];

/// The shortest tick [`watch`] runs at.
const MIN_TICK: Duration = Duration::from_millis(10);

/// When machines are rescanned and BMCs declared lost (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Seconds between rescans per state; states absent are not rescanned. Never zero.
    intervals: Vec<(MachineState, u64)>,
    /// Seconds between rescans of a failing BMC. Never zero.
    failing_interval: u64,
    /// Seconds a BMC may stay silent before it is lost. Never zero.
    lost_after: u64,
    /// Seconds at the start of its period in which a machine more than one period behind
    /// catches up. Never zero.
    window: u64,
}

impl Policy {
    /// The policy of the `[validator]` section: refuses unknown state names, states that are
    /// never rescanned, and zero intervals, naming the key.
    pub fn from_config(c: &ValidatorConfig) -> Result<Policy, String> {
        let mut intervals = Vec::with_capacity(c.rescan_interval_secs.len());
        for (name, &secs) in &c.rescan_interval_secs {
            let key = format!("validator.rescan_interval_secs.{name}");
            let Some(state) = MachineState::parse(name) else {
                let known: Vec<&str> = MachineState::ALL
                    .iter()
                    .filter(|s| !NEVER_RESCANNED.contains(s))
                    .map(|s| s.as_str())
                    .collect();
                return Err(format!(
                    "{key}: unknown machine state {name:?} (one of {})",
                    known.join(", ")
                ));
            };
            if NEVER_RESCANNED.contains(&state) {
                return Err(format!(
                    "{key}: machines in state {name} are never rescanned periodically \
                     (a scrape or a netboot is in flight, or the machine is leaving service); \
                     remove the key"
                ));
            }
            intervals.push((state, positive(&key, secs)?));
        }
        Ok(Policy {
            intervals,
            failing_interval: positive(
                "validator.failing_rescan_interval_secs",
                c.failing_rescan_interval_secs,
            )?,
            lost_after: positive("validator.bmc_lost_after_secs", c.bmc_lost_after_secs)?,
            window: positive("validator.tick_secs", c.tick_secs)?,
        })
    }

    /// The interval of machines in `state` whose BMC answers; `None`: not rescanned.
    pub fn interval(&self, state: MachineState) -> Option<Duration> {
        self.interval_secs(state).map(Duration::from_secs)
    }

    /// The interval of machines whose BMC is failing.
    pub fn failing_interval(&self) -> Duration {
        Duration::from_secs(self.failing_interval)
    }

    /// How long a BMC may stay silent before it is lost.
    pub fn lost_after(&self) -> Duration {
        Duration::from_secs(self.lost_after)
    }

    /// How long a machine more than one period behind stays due at the start of its period.
    pub fn catch_up_window(&self) -> Duration {
        Duration::from_secs(self.window)
    }

    fn interval_secs(&self, state: MachineState) -> Option<u64> {
        if NEVER_RESCANNED.contains(&state) {
            return None;
        }
        self.intervals
            .iter()
            .find(|(s, _)| *s == state)
            .map(|&(_, secs)| secs)
    }

    /// The same policy with a catch-up window of at least `tick` (rounded up to seconds).
    fn widened_to(mut self, tick: Duration) -> Policy {
        let tick_secs = tick.as_secs() + u64::from(tick.subsec_nanos() > 0);
        self.window = self.window.max(tick_secs).max(1);
        self
    }
}

/// `secs`, refused when zero.
fn positive(key: &str, secs: u64) -> Result<u64, String> {
    if secs == 0 {
        Err(format!("{key} must be at least 1 (seconds), not 0"))
    } else {
        Ok(secs)
    }
}

/// The events due at `now`: `machine.rescan.requested` for machines due a rescan,
/// `machine.bmc.lost` for BMCs silent longer than `lost_after` that are not lost yet. In the
/// candidates' order, a machine's `bmc.lost` before its rescan.
pub fn plan(now: OffsetDateTime, candidates: &[RescanCandidate], policy: &Policy) -> Vec<Envelope> {
    let mut events = Vec::new();
    for candidate in candidates {
        if let Some(lost) = lost_due(now, candidate, policy) {
            events.extend(bmc_lost_event(now, candidate, &lost));
        }
        if let Some(due) = rescan_due(now, candidate, policy) {
            events.extend(rescan_event(now, candidate, due));
        }
    }
    events
}

/// Which period of which interval a due rescan belongs to: its id is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    interval: u64,
    period: i128,
}

/// The machine's phase within `interval`: its id as a number, modulo the interval. Stable,
/// and even over a fleet (machine ids are UUID v5, i.e. SHA-1 bits).
fn phase(candidate: &RescanCandidate, interval: u64) -> i128 {
    let id = u128::from_be_bytes(*candidate.machine_id.0.as_bytes());
    // interval > 0, so the remainder fits and is below it.
    (id % u128::from(interval.max(1))) as i128
}

/// floor((t - phase) / interval) and the seconds since that period began.
fn period_of(t: OffsetDateTime, phase: i128, interval: u64) -> (i128, i128) {
    let since_phase = i128::from(t.unix_timestamp()) - phase;
    let interval = i128::from(interval.max(1));
    (
        since_phase.div_euclid(interval),
        since_phase.rem_euclid(interval),
    )
}

fn rescan_due(now: OffsetDateTime, candidate: &RescanCandidate, policy: &Policy) -> Option<Due> {
    let state_interval = policy.interval_secs(candidate.state)?;
    let interval = if candidate.failing_since.is_some() {
        policy.failing_interval
    } else {
        state_interval
    };
    let phase = phase(candidate, interval);
    let (period, into_period) = period_of(now, phase, interval);
    let on_time = match candidate.last_tried {
        Some(tried) => {
            let (tried_period, _) = period_of(tried, phase, interval);
            if period <= tried_period {
                return None;
            }
            period == tried_period + 1
        }
        None => false,
    };
    (on_time || into_period < i128::from(policy.window)).then_some(Due { interval, period })
}

fn lost_due(now: OffsetDateTime, candidate: &RescanCandidate, policy: &Policy) -> Option<BmcLost> {
    if candidate.lost || candidate.state == MachineState::Retired {
        return None;
    }
    let failing_since = candidate.failing_since?;
    let silent = now - failing_since;
    let threshold = time::Duration::seconds(i64::try_from(policy.lost_after).unwrap_or(i64::MAX));
    if silent <= threshold {
        return None;
    }
    Some(BmcLost {
        failing_since,
        last_seen: candidate.last_seen,
        reason: candidate
            .last_error
            .clone()
            .unwrap_or_else(|| "no answer from the BMC".to_string()),
    })
}

/// The id of the periodic rescan of `candidate` in `due`'s period.
pub(crate) fn rescan_event_id(
    candidate: &RescanCandidate,
    interval: u64,
    period: i128,
) -> uuid::Uuid {
    derived_event_id(
        candidate.machine_id.0,
        &format!(
            "{}/periodic/{interval}s/{period}",
            subjects::RESCAN_REQUESTED
        ),
    )
}

/// The id of the `machine.bmc.lost` of the outage that began at `failing_since`.
pub(crate) fn bmc_lost_event_id(
    candidate: &RescanCandidate,
    failing_since: OffsetDateTime,
) -> uuid::Uuid {
    derived_event_id(
        candidate.machine_id.0,
        &format!(
            "{}/{}",
            subjects::BMC_LOST,
            failing_since.unix_timestamp_nanos()
        ),
    )
}

/// A fresh event about `candidate`: its own correlation, no causation.
fn fresh<D: serde::Serialize>(
    now: OffsetDateTime,
    candidate: &RescanCandidate,
    event_id: uuid::Uuid,
    event_type: &str,
    data: &D,
) -> Option<Envelope> {
    let data = match serde_json::to_value(data) {
        Ok(data) => data,
        Err(error) => {
            warn!(machine_id = %candidate.machine_id, event_type, %error, "cannot encode event");
            return None;
        }
    };
    Some(Envelope {
        event_id,
        event_type: event_type.to_string(),
        machine_id: Some(candidate.machine_id),
        bmc_mac: Some(candidate.bmc_mac),
        time: now,
        correlation_id: event_id,
        causation_id: None,
        data,
    })
}

fn rescan_event(now: OffsetDateTime, candidate: &RescanCandidate, due: Due) -> Option<Envelope> {
    fresh(
        now,
        candidate,
        rescan_event_id(candidate, due.interval, due.period),
        subjects::RESCAN_REQUESTED,
        &RescanRequested {
            redfish_url: candidate.redfish_url.clone(),
            previous: candidate.inventory,
            requested_by: Some(REQUESTED_BY.to_string()),
        },
    )
}

fn bmc_lost_event(
    now: OffsetDateTime,
    candidate: &RescanCandidate,
    lost: &BmcLost,
) -> Option<Envelope> {
    fresh(
        now,
        candidate,
        bmc_lost_event_id(candidate, lost.failing_since),
        subjects::BMC_LOST,
        lost,
    )
}

/// Every `tick` (at least 10 ms), reads the candidates from `live`, [`plan`]s and publishes
/// each event (waiting for its PubAck), until `stop` completes. Errors are logged as
/// warnings and the work retried at the next tick: what was not published is planned again,
/// with the same ids. The policy's catch-up window is widened to the tick.
pub async fn watch(
    js: async_nats::jetstream::Context,
    live: LiveProjection,
    policy: Policy,
    tick: Duration,
    stop: impl Future<Output = ()>,
) {
    let tick = tick.max(MIN_TICK);
    let policy = policy.widened_to(tick);
    let mut stop = std::pin::pin!(stop);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(?tick, ?policy, "periodic rescans started");
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let candidates = match live.with(|p| p.rescan_candidates()).await {
            Ok(Ok(candidates)) => candidates,
            Ok(Err(error)) => {
                warn!(error = %error_chain(&error), "cannot read rescan candidates; retrying next tick");
                continue;
            }
            Err(error) => {
                warn!(error = %error_chain(&error), "cannot read rescan candidates; retrying next tick");
                continue;
            }
        };
        let events = plan(OffsetDateTime::now_utc(), &candidates, &policy);
        if events.is_empty() {
            continue;
        }
        let (mut published, mut duplicates, mut failed) = (0usize, 0usize, 0usize);
        for event in &events {
            let outcome = tokio::select! {
                biased;
                () = &mut stop => {
                    info!("periodic rescans stopped while publishing");
                    return;
                }
                outcome = metal_core::jetstream::publish_event(&js, event) => outcome,
            };
            match outcome {
                Ok(ack) if ack.duplicate => {
                    duplicates += 1;
                    debug!(event_type = %event.event_type, event_id = %event.event_id,
                        machine_id = ?event.machine_id, "already published");
                }
                Ok(ack) => {
                    published += 1;
                    info!(event_type = %event.event_type, event_id = %event.event_id,
                        machine_id = ?event.machine_id, sequence = ack.sequence, "published");
                }
                Err(error) => {
                    failed += 1;
                    warn!(event_type = %event.event_type, event_id = %event.event_id,
                        machine_id = ?event.machine_id, error = %error_chain(&error),
                        "cannot publish; retrying next tick");
                }
            }
        }
        debug!(
            candidates = candidates.len(),
            due = events.len(),
            published,
            duplicates,
            failed,
            "periodic rescan tick"
        );
    }
    info!("periodic rescans stopped");
}

/// An error and its sources, for one log line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use metal_core::events::InventoryRef;
    use metal_core::{Mac, MachineId};
    use uuid::Uuid;

    use super::*;

    /// 2025-01-01T00:00:00Z plus `seconds`.
    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_735_689_600 + seconds)
    }

    fn config(intervals: &[(&str, u64)]) -> ValidatorConfig {
        ValidatorConfig {
            rescan_interval_secs: intervals
                .iter()
                .map(|(name, secs)| (name.to_string(), *secs))
                .collect(),
            failing_rescan_interval_secs: 300,
            bmc_lost_after_secs: 900,
            tick_secs: 10,
            ..ValidatorConfig::default()
        }
    }

    fn policy(intervals: &[(&str, u64)]) -> Policy {
        Policy::from_config(&config(intervals)).expect("valid policy")
    }

    fn machine(index: u32, state: MachineState) -> RescanCandidate {
        let bytes = index.to_be_bytes();
        let bmc_mac = Mac::parse_any(&format!(
            "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ))
        .expect("test MAC");
        RescanCandidate {
            machine_id: MachineId::from_bmc_mac(&bmc_mac),
            bmc_mac,
            state,
            redfish_url: format!("https://10.1.{}.{}", bytes[2], bytes[3]),
            last_tried: Some(at(0)),
            last_seen: Some(at(0)),
            failing_since: None,
            last_error: None,
            lost: false,
            inventory: Some(InventoryRef {
                event_id: Uuid::from_u128(u128::from(index) + 1),
                sequence: u64::from(index) + 1,
            }),
        }
    }

    fn fleet(size: u32, state: MachineState) -> Vec<RescanCandidate> {
        (0..size).map(|i| machine(i, state)).collect()
    }

    /// Runs ticks from `from` to `to` (inclusive) every `tick` seconds, recording every
    /// event and marking each rescanned machine tried at that instant, as its scrape would.
    fn simulate(
        candidates: &mut [RescanCandidate],
        policy: &Policy,
        from: i64,
        to: i64,
        tick: i64,
    ) -> Vec<(i64, Envelope)> {
        let mut seen = Vec::new();
        let mut now = from;
        while now <= to {
            let events = plan(at(now), candidates, policy);
            for event in events {
                if event.event_type == subjects::RESCAN_REQUESTED {
                    let target = candidates
                        .iter_mut()
                        .find(|c| Some(c.machine_id) == event.machine_id)
                        .expect("a rescan names a candidate");
                    target.last_tried = Some(at(now));
                }
                seen.push((now, event));
            }
            now += tick;
        }
        seen
    }

    #[test]
    fn rescans_spread_evenly_over_the_interval() {
        // 1000 machines all onboarded (tried) at once, 1 h interval, 10 s ticks, 3 hours.
        const INTERVAL: i64 = 3600;
        const TICK: i64 = 10;
        let policy = policy(&[("inventoried", INTERVAL as u64)]);
        let mut candidates = fleet(1000, MachineState::Inventoried);
        let seen = simulate(&mut candidates, &policy, TICK, 3 * INTERVAL, TICK);

        let share = 1000.0 * TICK as f64 / INTERVAL as f64; // 2.8 per tick
        let mut per_tick: BTreeMap<i64, usize> = BTreeMap::new();
        let mut per_machine: HashMap<MachineId, Vec<i64>> = HashMap::new();
        for (now, event) in &seen {
            assert_eq!(event.event_type, subjects::RESCAN_REQUESTED);
            *per_tick.entry(*now).or_default() += 1;
            per_machine
                .entry(event.machine_id.expect("machine id"))
                .or_default()
                .push(*now);
        }
        let busiest = per_tick.values().copied().max().unwrap_or(0);
        assert!(
            (busiest as f64) < 6.0 * share,
            "{busiest} rescans in one tick, even share {share:.1}"
        );
        // Every 10 minutes carries close to its even share (1000 / 6).
        for bucket in 0..18 {
            let count: usize = per_tick
                .range(bucket * 600 + 1..=(bucket + 1) * 600)
                .map(|(_, n)| n)
                .sum();
            assert!(
                (110..=225).contains(&count),
                "{count} rescans in 10-minute bucket {bucket}, even share 167"
            );
        }
        // Each machine exactly once per period: three times in three intervals, an
        // interval apart.
        assert_eq!(per_machine.len(), 1000);
        for (machine, times) in &per_machine {
            assert_eq!(times.len(), 3, "{machine} rescanned at {times:?}");
            for pair in times.windows(2) {
                assert_eq!(
                    pair[1] - pair[0],
                    INTERVAL,
                    "{machine} rescanned at {times:?}"
                );
            }
        }
        // And each of those is a distinct event.
        let mut ids: Vec<Uuid> = seen.iter().map(|(_, e)| e.event_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3000);
    }

    #[test]
    fn a_restart_rescans_nobody_early() {
        let policy = policy(&[("inventoried", 3600)]);
        let mut candidates = fleet(1000, MachineState::Inventoried);
        let seen = simulate(&mut candidates, &policy, 10, 5000, 10);
        assert!((1300..=1500).contains(&seen.len()), "{}", seen.len());
        // A validator restarted at 5000 (no memory, the projection only) finds nothing due
        // that was done, and at its next tick only the machines whose phase came round.
        assert!(plan(at(5000), &candidates, &policy).is_empty());
        let next = plan(at(5010), &candidates, &policy);
        assert!(
            next.len() <= 15,
            "{} rescans right after a restart",
            next.len()
        );
        // Two replicas planning the same instant: the same events, same ids.
        let first = plan(at(5400), &candidates, &policy);
        let second = plan(at(5400), &candidates, &policy);
        assert!(!first.is_empty());
        assert_eq!(first, second);
    }

    #[test]
    fn machines_never_tried_wait_for_their_first_phase() {
        let policy = policy(&[("inventoried", 3600)]);
        let mut candidates = fleet(1000, MachineState::Inventoried);
        for candidate in &mut candidates {
            candidate.last_tried = None;
            candidate.last_seen = None;
        }
        let first = plan(at(0), &candidates, &policy);
        assert!(
            first.len() <= 15,
            "{} of 1000 never-tried machines at the first tick",
            first.len()
        );
        let seen = simulate(&mut candidates, &policy, 0, 3600 - 10, 10);
        let mut machines: Vec<MachineId> = seen.iter().filter_map(|(_, e)| e.machine_id).collect();
        machines.sort();
        machines.dedup();
        assert_eq!(seen.len(), 1000, "each once within the first interval");
        assert_eq!(machines.len(), 1000);
    }

    #[test]
    fn machines_overdue_by_periods_catch_up_at_their_phase() {
        // Tried days ago (validator down, or a long netboot): not all at once either.
        let policy = policy(&[("installed", 3600)]);
        let mut candidates = fleet(1000, MachineState::Installed);
        for candidate in &mut candidates {
            candidate.last_tried = Some(at(-5 * 86_400));
        }
        assert!(plan(at(0), &candidates, &policy).len() <= 15);
        let seen = simulate(&mut candidates, &policy, 0, 3600 - 10, 10);
        assert_eq!(seen.len(), 1000);
        // One period behind is simply due: last tried in the previous period.
        let mut late = machine(7, MachineState::Installed);
        late.last_tried = Some(at(0));
        let due_at = (1..=3600)
            .find(|&s| !plan(at(s), std::slice::from_ref(&late), &policy).is_empty())
            .expect("due within the interval");
        for later in [due_at, due_at + 600, due_at + 3000] {
            assert_eq!(
                plan(at(later), std::slice::from_ref(&late), &policy).len(),
                1,
                "still due at {later} (a tick may be late)"
            );
        }
    }

    #[test]
    fn a_failing_bmc_uses_the_failing_interval() {
        let policy = policy(&[("inventoried", 6 * 3600), ("scrape_failed", 3600)]);
        let mut failing = fleet(200, MachineState::Inventoried);
        for candidate in &mut failing {
            candidate.failing_since = Some(at(0));
            candidate.last_error = Some("unreachable".to_string());
        }
        let seen = simulate(&mut failing, &policy, 10, 600, 10);
        let rescans = seen
            .iter()
            .filter(|(_, e)| e.event_type == subjects::RESCAN_REQUESTED)
            .count();
        // Two failing periods of 300 s in 600 s: each machine twice.
        assert_eq!(rescans, 400);

        // Its healthy twin waits for its 6 h period.
        let mut healthy = fleet(200, MachineState::Inventoried);
        let seen = simulate(&mut healthy, &policy, 10, 600, 10);
        assert!(
            seen.len() < 20,
            "{} healthy rescans in 10 minutes",
            seen.len()
        );

        // A failing machine in a state without an interval is not rescanned.
        let mut unlisted = fleet(50, MachineState::InstallFailed);
        for candidate in &mut unlisted {
            candidate.failing_since = Some(at(0));
        }
        let seen = simulate(&mut unlisted, &policy, 10, 3600, 10);
        assert!(seen
            .iter()
            .all(|(_, e)| e.event_type != subjects::RESCAN_REQUESTED));
    }

    #[test]
    fn a_bmc_is_lost_once_per_outage() {
        let policy = policy(&[("inventoried", 3600)]);
        let mut candidate = machine(1, MachineState::Inventoried);
        candidate.last_seen = Some(at(-100));
        candidate.failing_since = Some(at(0));
        candidate.last_tried = Some(at(0));
        candidate.last_error = Some("unreachable: connection refused (after 3 attempt(s))".into());
        let lost_at = |now: i64, c: &RescanCandidate| {
            plan(at(now), std::slice::from_ref(c), &policy)
                .into_iter()
                .filter(|e| e.event_type == subjects::BMC_LOST)
                .collect::<Vec<_>>()
        };
        assert!(lost_at(899, &candidate).is_empty());
        assert!(lost_at(900, &candidate).is_empty(), "silent exactly 900 s");
        let first = lost_at(901, &candidate);
        assert_eq!(first.len(), 1);
        let event = &first[0];
        let data: BmcLost = event.data_as().expect("bmc.lost data");
        assert_eq!(
            data,
            BmcLost {
                failing_since: at(0),
                last_seen: Some(at(-100)),
                reason: "unreachable: connection refused (after 3 attempt(s))".to_string(),
            }
        );
        assert_eq!(event.machine_id, Some(candidate.machine_id));
        assert_eq!(event.bmc_mac, Some(candidate.bmc_mac));
        assert_eq!(event.correlation_id, event.event_id);
        assert_eq!(event.causation_id, None);
        assert_eq!(event.time, at(901));
        // Until the projection has it, every tick repeats the same id (JetStream dedupes).
        let later = lost_at(5000, &candidate);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].event_id, event.event_id);
        // Once lost, nothing more.
        candidate.lost = true;
        assert!(lost_at(9000, &candidate).is_empty());
        // Found, then silent again: a new outage, a new event.
        candidate.lost = false;
        candidate.failing_since = Some(at(20_000));
        assert!(lost_at(20_500, &candidate).is_empty());
        let second = lost_at(21_000, &candidate);
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].event_id, event.event_id);
        // A BMC that answers is never lost; nor a retired machine's.
        candidate.failing_since = None;
        assert!(lost_at(50_000, &candidate).is_empty());
        candidate.failing_since = Some(at(0));
        candidate.state = MachineState::Retired;
        assert!(lost_at(50_000, &candidate).is_empty());
        // Any other state, rescanned or not, is told.
        candidate.state = MachineState::Booting;
        assert_eq!(lost_at(50_000, &candidate).len(), 1);
    }

    #[test]
    fn excluded_and_unlisted_states_are_never_rescanned() {
        let config_all: Vec<(&str, u64)> = MachineState::ALL
            .iter()
            .filter(|s| !NEVER_RESCANNED.contains(s))
            .map(|s| (s.as_str(), 600))
            .collect();
        let policy = policy(&config_all);
        for state in NEVER_RESCANNED {
            let mut candidates = fleet(100, state);
            for (i, candidate) in candidates.iter_mut().enumerate() {
                if i % 2 == 0 {
                    candidate.last_tried = None;
                }
                if i % 3 == 0 {
                    candidate.failing_since = Some(at(1_000_000));
                }
            }
            let seen = simulate(&mut candidates, &policy, 0, 1200, 10);
            assert!(seen.is_empty(), "{} rescanned", state.as_str());
            assert_eq!(policy.interval(state), None);
        }
        // Every other listed state is rescanned.
        for state in MachineState::ALL
            .into_iter()
            .filter(|s| !NEVER_RESCANNED.contains(s))
        {
            let mut candidates = fleet(20, state);
            let seen = simulate(&mut candidates, &policy, 0, 600, 10);
            assert_eq!(seen.len(), 20, "{}", state.as_str());
        }
        // A state absent from the map is not.
        let only_installed = self::policy(&[("installed", 600)]);
        let mut candidates = fleet(20, MachineState::Inventoried);
        assert!(simulate(&mut candidates, &only_installed, 0, 1200, 10).is_empty());
    }

    #[test]
    fn rescan_requests_look_like_metal_cli_rescan() {
        let policy = policy(&[("inventoried", 3600)]);
        let candidate = machine(3, MachineState::Inventoried);
        let due_at = (1..=3600)
            .find(|&s| !plan(at(s), std::slice::from_ref(&candidate), &policy).is_empty())
            .expect("due within the interval");
        let events = plan(at(due_at), std::slice::from_ref(&candidate), &policy);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.event_type, subjects::RESCAN_REQUESTED);
        assert_eq!(event.machine_id, Some(candidate.machine_id));
        assert_eq!(event.bmc_mac, Some(candidate.bmc_mac));
        assert_eq!(event.time, at(due_at));
        assert_eq!(event.correlation_id, event.event_id);
        assert_eq!(event.causation_id, None);
        let data: RescanRequested = event.data_as().expect("rescan data");
        assert_eq!(
            data,
            RescanRequested {
                redfish_url: candidate.redfish_url.clone(),
                previous: candidate.inventory,
                requested_by: Some(REQUESTED_BY.to_string()),
            }
        );
        // Deterministic: later in the same period, the same id; the next period, another.
        let again = plan(at(due_at + 1200), std::slice::from_ref(&candidate), &policy);
        assert_eq!(again[0].event_id, event.event_id);
        let next = plan(at(due_at + 3600), std::slice::from_ref(&candidate), &policy);
        assert_ne!(next[0].event_id, event.event_id);
        let (period, _) = period_of(at(due_at), phase(&candidate, 3600), 3600);
        assert_eq!(event.event_id, rescan_event_id(&candidate, 3600, period));
    }

    #[test]
    fn phases_are_stable_and_spread() {
        let candidates = fleet(3600, MachineState::Inventoried);
        let mut per_minute = [0u32; 60];
        for candidate in &candidates {
            let p = phase(candidate, 3600);
            assert_eq!(p, phase(candidate, 3600));
            assert!((0..3600).contains(&p));
            per_minute[(p / 60) as usize] += 1;
        }
        // 60 per minute on average.
        assert!(
            per_minute.iter().all(|&n| (30..=95).contains(&n)),
            "{per_minute:?}"
        );
    }

    #[test]
    fn from_config_refuses_bad_settings_naming_the_key() {
        assert!(Policy::from_config(&ValidatorConfig::default()).is_ok());
        let defaults = Policy::from_config(&ValidatorConfig::default()).expect("defaults");
        assert_eq!(
            defaults.interval(MachineState::Inventoried),
            Some(Duration::from_secs(6 * 3600))
        );
        assert_eq!(defaults.interval(MachineState::Wiping), None);
        assert_eq!(defaults.failing_interval(), Duration::from_secs(300));
        assert_eq!(defaults.lost_after(), Duration::from_secs(900));
        assert_eq!(defaults.catch_up_window(), Duration::from_secs(10));

        let error = Policy::from_config(&config(&[("inventoryed", 60)])).unwrap_err();
        assert!(
            error.contains("validator.rescan_interval_secs.inventoryed")
                && error.contains("unknown machine state"),
            "{error}"
        );
        let error = Policy::from_config(&config(&[("installed", 0)])).unwrap_err();
        assert!(
            error.contains("validator.rescan_interval_secs.installed") && error.contains("0"),
            "{error}"
        );
        let error = Policy::from_config(&config(&[("booting", 60)])).unwrap_err();
        assert!(
            error.contains("validator.rescan_interval_secs.booting")
                && error.contains("never rescanned"),
            "{error}"
        );
        for (key, change) in [
            (
                "validator.failing_rescan_interval_secs",
                (|c: &mut ValidatorConfig| c.failing_rescan_interval_secs = 0)
                    as fn(&mut ValidatorConfig),
            ),
            ("validator.bmc_lost_after_secs", |c| {
                c.bmc_lost_after_secs = 0
            }),
            ("validator.tick_secs", |c| c.tick_secs = 0),
        ] {
            let mut bad = config(&[("inventoried", 60)]);
            change(&mut bad);
            let error = Policy::from_config(&bad).unwrap_err();
            assert!(error.contains(key), "{error}");
        }
    }

    /// Every message on the stream: (subject, msg id).
    async fn stream_messages(js: &async_nats::jetstream::Context) -> Vec<(String, String)> {
        use futures::StreamExt;
        let mut stream = js.get_stream(subjects::STREAM).await.expect("stream");
        let last = stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        if last == 0 {
            return Vec::new();
        }
        let messages = metal_core::jetstream::follow_stream(&stream, 1)
            .await
            .expect("follow");
        let messages: Vec<_> = tokio::time::timeout(
            Duration::from_secs(10),
            messages.take(last as usize).collect::<Vec<_>>(),
        )
        .await
        .expect("read the stream in time");
        messages
            .into_iter()
            .map(|m| {
                let m = m.expect("stored message");
                (m.subject, m.msg_id.unwrap_or_default())
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_publishes_what_is_due_once_per_period_and_lost_once() {
        use metal_core::events::ScrapeFailureKind;
        use metal_projection::fixtures;

        let nats = test_harness::nats::NatsServer::start();
        let js = async_nats::jetstream::new(nats.connect().await);
        metal_core::jetstream::ensure_stream(&js)
            .await
            .expect("stream");

        let answering = "aa:bb:cc:00:20:01";
        let silent = "aa:bb:cc:00:20:02";
        let mut messages =
            fixtures::onboarding(1, answering, fixtures::inventory("DL360", "Xeon", &[]));
        let (requested, envelope) = fixtures::request(10, silent);
        let found = fixtures::located(&envelope, "10.0.0.2");
        let failed =
            fixtures::scrape_failed_kind(&found, ScrapeFailureKind::Unreachable, "no route");
        messages.extend([
            requested,
            fixtures::stored(11, &found),
            fixtures::stored(12, &failed),
        ]);
        let mut projection = metal_projection::Projection::open_in_memory().expect("projection");
        projection.apply_batch(&messages).expect("apply");
        let live = LiveProjection::new(projection).expect("live");

        let mut config = config(&[("inventoried", 1), ("scrape_failed", 1)]);
        config.failing_rescan_interval_secs = 1;
        config.bmc_lost_after_secs = 60;
        config.tick_secs = 1;
        let policy = Policy::from_config(&config).expect("policy");

        let run = |pause: u64| {
            watch(
                js.clone(),
                live.clone(),
                policy.clone(),
                Duration::from_millis(100),
                tokio::time::sleep(Duration::from_millis(pause)),
            )
        };
        tokio::time::timeout(Duration::from_secs(10), run(1500))
            .await
            .expect("watch stops when told");
        let first = stream_messages(&js).await;
        let count = |messages: &[(String, String)], subject: &str| {
            messages.iter().filter(|(s, _)| s == subject).count()
        };
        // ~15 ticks, but one rescan per machine per 1 s period, and one bmc.lost.
        let rescans = count(&first, subjects::RESCAN_REQUESTED);
        assert!((2..=6).contains(&rescans), "{rescans} rescans: {first:?}");
        assert_eq!(count(&first, subjects::BMC_LOST), 1, "{first:?}");
        let mut ids: Vec<&String> = first.iter().map(|(_, id)| id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), first.len(), "every stored event is distinct");

        // A restart (the projection never saw the loss): the loss is not stored again.
        tokio::time::timeout(Duration::from_secs(10), run(500))
            .await
            .expect("watch stops when told");
        let second = stream_messages(&js).await;
        assert_eq!(count(&second, subjects::BMC_LOST), 1, "{second:?}");
        assert!(count(&second, subjects::RESCAN_REQUESTED) <= rescans + 4);
    }

    #[test]
    fn watch_widens_the_window_to_its_tick() {
        let policy = policy(&[("inventoried", 3600)]);
        assert_eq!(
            policy
                .clone()
                .widened_to(Duration::from_millis(30_500))
                .catch_up_window(),
            Duration::from_secs(31)
        );
        assert_eq!(
            policy.widened_to(Duration::from_secs(1)).catch_up_window(),
            Duration::from_secs(10)
        );
    }
}
