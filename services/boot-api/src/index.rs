//! The boot index: every machine's host NIC MACs, state and provisioning, in memory, so a
//! boot request is a hash lookup that never waits for SQLite or the follow loop. The
//! follow loop updates it after each batch, under the projection's lock.
//!
//! Each machine entry also keeps, per NIC ([`NicSlot`]), the answer rendered for it so far
//! and when its boot was last recorded as an event, so a repeated boot request costs no
//! token, cmdline or JSON work and no lookup besides this one; replacing the entry when the
//! machine changes drops both.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::body::Bytes;
use metal_core::query::Provisioning;
use metal_core::{Mac, MachineId};
use metal_projection::BootTarget;

/// What a booting MAC gets.
#[derive(Debug, Clone, PartialEq)]
pub enum BootDecision {
    /// Armed: netboot this profile.
    Serve(Arc<BootTarget>),
    /// A known machine that is not armed.
    Ignore(Arc<BootTarget>),
    /// No machine has the MAC, or more than one does (never boot the wrong machine).
    Unknown { reason: String },
}

/// One version of a machine, with what is kept per NIC of `target.macs`.
#[derive(Debug)]
struct Entry {
    target: Arc<BootTarget>,
    nics: Box<[Nic]>,
}

/// What one NIC of one version of a machine keeps: the answer rendered for it, by whom,
/// and when its boot was last recorded (0: never).
#[derive(Debug, Default)]
struct Nic {
    answer: OnceLock<(u64, Bytes)>,
    recorded_at: AtomicU64,
}

impl Entry {
    fn new(target: BootTarget) -> Entry {
        Entry {
            nics: target.macs.iter().map(|_| Nic::default()).collect(),
            target: Arc::new(target),
        }
    }
}

/// One NIC of one version of a machine: where its rendered answer is kept, and when its
/// boot was last recorded.
#[derive(Debug, Clone)]
pub struct NicSlot {
    entry: Arc<Entry>,
    nic: usize,
}

impl NicSlot {
    /// Claims the recording of this NIC's boot at `now` (ticks of the caller's clock, never
    /// 0) unless it was claimed less than `window` ticks before. A version of a machine has
    /// one decision, so this is "one event per MAC and outcome per window" without a second
    /// lookup; of requests racing for one NIC, one wins.
    pub fn claim_recording(&self, now: u64, window: u64) -> bool {
        let recorded_at = &self.entry.nics[self.nic].recorded_at;
        let mut last = recorded_at.load(Ordering::Relaxed);
        loop {
            if last != 0 && now.saturating_sub(last) < window {
                return false;
            }
            match recorded_at.compare_exchange_weak(last, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => last = actual,
            }
        }
    }

    /// The answer `renderer` (an id that names everything besides the machine and the NIC
    /// that the answer depends on) keeps here, or `render()`'s, which is kept when the slot
    /// is still free. Only the first renderer's answers are kept.
    pub fn get_or_render(
        &self,
        renderer: u64,
        render: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let slot = &self.entry.nics[self.nic].answer;
        if let Some((owner, answer)) = slot.get() {
            if *owner == renderer {
                return Some(answer.clone());
            }
        }
        let answer = render()?;
        let _ = slot.set((renderer, answer.clone()));
        Some(answer)
    }
}

/// A decision and, for a machine, what is kept for this NIC.
#[derive(Debug)]
pub struct Lookup {
    pub decision: BootDecision,
    pub nic: Option<NicSlot>,
}

/// The machines listing a MAC: one (the common case, found with a single hash probe), or
/// several ids, repeats included (never booted).
#[derive(Debug)]
enum Holders {
    One { entry: Arc<Entry>, nic: usize },
    Many(Vec<MachineId>),
}

// foldhash, seeded per process: a boot request's hashing is a few nanoseconds instead of
// SipHash's, and MACs chosen by a hostile host still cannot aim at one bucket.
type ByMac = HashMap<Mac, Holders, foldhash::fast::RandomState>;
type Machines = HashMap<MachineId, Arc<Entry>, foldhash::fast::RandomState>;

/// Takes every listing of `mac` by machine `id` away.
fn forget(by_mac: &mut ByMac, machines: &Machines, mac: &Mac, id: MachineId) {
    let remaining = match by_mac.get_mut(mac) {
        None => return,
        Some(Holders::One { entry, .. }) => {
            if entry.target.machine_id == id {
                by_mac.remove(mac);
            }
            return;
        }
        Some(Holders::Many(ids)) => {
            ids.retain(|other| *other != id);
            match ids.as_slice() {
                [] => None,
                [other] => Some(*other),
                _ => return,
            }
        }
    };
    let holders = remaining.and_then(|other| {
        let entry = machines.get(&other)?;
        let nic = entry.target.macs.iter().position(|m| m == mac)?;
        Some(Holders::One {
            entry: Arc::clone(entry),
            nic,
        })
    });
    match holders {
        Some(holders) => {
            by_mac.insert(*mac, holders);
        }
        None => {
            by_mac.remove(mac);
        }
    }
}

/// Lists `entry`'s NIC `nic` under its MAC.
fn add(by_mac: &mut ByMac, entry: &Arc<Entry>, nic: usize) {
    let mac = entry.target.macs[nic];
    let id = entry.target.machine_id;
    let Some(holders) = by_mac.get_mut(&mac) else {
        by_mac.insert(
            mac,
            Holders::One {
                entry: Arc::clone(entry),
                nic,
            },
        );
        return;
    };
    match holders {
        Holders::Many(ids) => ids.push(id),
        Holders::One { entry: first, .. } => {
            let first = first.target.machine_id;
            *holders = Holders::Many(vec![first, id]);
        }
    }
}

/// Two maps under two locks: boot requests read only `by_mac`, so a scan of `machines`
/// (the install deadline's, every 30 s) never holds them up. Updates take `machines`,
/// then `by_mac`.
#[derive(Debug, Default)]
pub struct BootIndex {
    by_mac: RwLock<ByMac>,
    machines: RwLock<Machines>,
    shared: Mutex<SharedTexts>,
}

/// Most distinct profile texts [`SharedTexts`] keeps; past it, it starts afresh (sharing
/// is only a saving, never needed for an answer).
const MAX_SHARED_TEXTS: usize = 4096;

/// One copy of each profile text (name, kernel, initrd list, cmdline template) for all
/// the machines whose provisioning has it: every armed machine of a profile repeats them.
#[derive(Debug, Default)]
struct SharedTexts {
    texts: HashSet<Arc<str>>,
    lists: HashSet<Arc<[String]>>,
}

/// Points `value` at the copy `kept` has of it, or keeps it there as the first.
fn share_one<T: ?Sized + Eq + std::hash::Hash>(kept: &mut HashSet<Arc<T>>, value: &mut Arc<T>) {
    match kept.get(value) {
        Some(first) => *value = Arc::clone(first),
        None => {
            if kept.len() >= MAX_SHARED_TEXTS {
                kept.clear();
            }
            kept.insert(Arc::clone(value));
        }
    }
}

impl SharedTexts {
    fn share(&mut self, target: &mut BootTarget) {
        if let Some(provisioning) = &mut target.provisioning {
            share_one(&mut self.texts, &mut provisioning.profile);
            share_one(&mut self.texts, &mut provisioning.kernel);
            share_one(&mut self.texts, &mut provisioning.cmdline);
            share_one(&mut self.lists, &mut provisioning.initrd);
        }
    }
}

// Updates never leave a map half-written across a panic that matters: a machine is
// replaced whole. So a poisoned lock is used as it is.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl BootIndex {
    pub fn new(targets: Vec<BootTarget>) -> BootIndex {
        let index = BootIndex::default();
        index.update(targets);
        index
    }

    /// Replaces these machines' entries. Boot requests wait only while the maps change:
    /// new entries are built before, old ones (and their answers) freed after.
    pub fn update(&self, targets: Vec<BootTarget>) {
        let entries: Vec<Arc<Entry>> = {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            targets
                .into_iter()
                .map(|mut target| {
                    shared.share(&mut target);
                    Arc::new(Entry::new(target))
                })
                .collect()
        };
        let mut replaced = Vec::with_capacity(entries.len());
        let mut machines = write(&self.machines);
        let mut by_mac = write(&self.by_mac);
        for entry in entries {
            let id = entry.target.machine_id;
            if let Some(old) = machines.remove(&id) {
                for mac in &old.target.macs {
                    forget(&mut by_mac, &machines, mac, id);
                }
                replaced.push(old);
            }
            for nic in 0..entry.target.macs.len() {
                add(&mut by_mac, &entry, nic);
            }
            machines.insert(id, entry);
        }
        drop(by_mac);
        drop(machines);
        drop(replaced);
    }

    pub fn decide(&self, mac: &Mac) -> BootDecision {
        self.lookup(mac).decision
    }

    /// [`BootIndex::decide`], with the slot of a machine's NIC.
    pub fn lookup(&self, mac: &Mac) -> Lookup {
        let unknown = |reason: String| Lookup {
            decision: BootDecision::Unknown { reason },
            nic: None,
        };
        let by_mac = read(&self.by_mac);
        match by_mac.get(mac) {
            None => unknown("no machine has this MAC".to_string()),
            Some(Holders::One { entry, nic }) => {
                let target = Arc::clone(&entry.target);
                let decision = if target.state.is_armed() && target.provisioning.is_some() {
                    BootDecision::Serve(target)
                } else {
                    BootDecision::Ignore(target)
                };
                let nic = Some(NicSlot {
                    entry: Arc::clone(entry),
                    nic: *nic,
                });
                Lookup { decision, nic }
            }
            Some(Holders::Many(ids)) => unknown(format!("MAC shared by {} machines", ids.len())),
        }
    }

    pub fn machine(&self, machine_id: &MachineId) -> Option<Arc<BootTarget>> {
        read(&self.machines)
            .get(machine_id)
            .map(|entry| Arc::clone(&entry.target))
    }

    /// Armed machines whose provisioning was assigned at or before `cutoff`, for the install
    /// deadline. Only those provisionings are copied: the check runs every few seconds over
    /// the whole fleet, beside a boot storm.
    pub fn armed_at_or_before(
        &self,
        cutoff: time::OffsetDateTime,
    ) -> Vec<(Arc<BootTarget>, Provisioning)> {
        let overdue: Vec<Arc<BootTarget>> = read(&self.machines)
            .values()
            .filter(|entry| {
                entry.target.state.is_armed()
                    && entry
                        .target
                        .provisioning
                        .as_ref()
                        .is_some_and(|p| p.assigned_at <= cutoff)
            })
            .map(|entry| Arc::clone(&entry.target))
            .collect();
        overdue
            .into_iter()
            .filter_map(|t| t.provisioning.clone().map(|p| (t, p)))
            .collect()
    }

    pub fn len(&self) -> usize {
        read(&self.machines).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metal_core::query::MachineState;

    fn mac(last: u8) -> Mac {
        Mac::from_bytes([0x52, 0x54, 0, 0, 0, last])
    }

    fn target(id: u128, state: MachineState, macs: &[Mac]) -> BootTarget {
        BootTarget {
            machine_id: MachineId(uuid::Uuid::from_u128(id)),
            bmc_mac: Mac::from_bytes([0x02, 0, 0, 0, 0, id as u8]),
            state,
            macs: macs.to_vec(),
            provisioning: Some(Provisioning {
                provision_id: uuid::Uuid::from_u128(100 + id),
                profile: "G1".into(),
                kernel: "http://images/vmlinuz".into(),
                initrd: Vec::new().into(),
                cmdline: "console=ttyS0".into(),
                assigned_at: time::OffsetDateTime::UNIX_EPOCH,
                purpose: Default::default(),
            }),
        }
    }

    fn served(index: &BootIndex, mac: &Mac) -> Option<u128> {
        match index.decide(mac) {
            BootDecision::Serve(target) => Some(target.machine_id.0.as_u128()),
            _ => None,
        }
    }

    fn reason(index: &BootIndex, mac: &Mac) -> String {
        match index.decide(mac) {
            BootDecision::Unknown { reason } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shared_macs_serve_nobody_until_one_machine_lets_go() {
        let armed = MachineState::Provisioning;
        let index = BootIndex::new(vec![
            target(1, armed, &[mac(1), mac(9)]),
            target(2, armed, &[mac(2), mac(9)]),
            target(3, armed, &[mac(3), mac(9)]),
        ]);
        assert_eq!(served(&index, &mac(1)), Some(1));
        assert_eq!(reason(&index, &mac(9)), "MAC shared by 3 machines");
        assert_eq!(reason(&index, &mac(7)), "no machine has this MAC");
        index.update(vec![target(2, armed, &[mac(2)])]);
        assert_eq!(reason(&index, &mac(9)), "MAC shared by 2 machines");
        index.update(vec![target(1, armed, &[mac(1)])]);
        assert_eq!(served(&index, &mac(9)), Some(3), "the last holder boots");
        index.update(vec![target(1, armed, &[mac(1), mac(9)])]);
        assert_eq!(reason(&index, &mac(9)), "MAC shared by 2 machines");
        index.update(vec![
            target(1, armed, &[mac(1)]),
            target(3, armed, &[mac(3)]),
        ]);
        assert_eq!(reason(&index, &mac(9)), "no machine has this MAC");
        // A machine listing one MAC twice shares it with itself, as before.
        index.update(vec![target(4, armed, &[mac(4), mac(4)])]);
        assert_eq!(reason(&index, &mac(4)), "MAC shared by 2 machines");
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn machines_of_one_profile_share_its_texts() {
        // Each target's texts are separate allocations, as read from the projection.
        let index = BootIndex::new(vec![
            target(1, MachineState::Provisioning, &[mac(1)]),
            target(2, MachineState::Provisioning, &[mac(2)]),
        ]);
        index.update(vec![target(3, MachineState::Provisioning, &[mac(3)])]);
        let provisioning = |id: u128| {
            index
                .machine(&MachineId(uuid::Uuid::from_u128(id)))
                .and_then(|t| t.provisioning.clone())
                .expect("provisioned")
        };
        let (one, two, three) = (provisioning(1), provisioning(2), provisioning(3));
        for other in [&two, &three] {
            assert!(Arc::ptr_eq(&one.cmdline, &other.cmdline));
            assert!(Arc::ptr_eq(&one.kernel, &other.kernel));
            assert!(Arc::ptr_eq(&one.profile, &other.profile));
            assert!(Arc::ptr_eq(&one.initrd, &other.initrd));
        }
        assert_eq!(&*three.cmdline, "console=ttyS0");
        assert_ne!(
            one.provision_id, two.provision_id,
            "only the texts are shared"
        );
    }

    #[test]
    fn answers_are_kept_per_renderer_until_the_machine_changes() {
        let index = BootIndex::new(vec![target(
            1,
            MachineState::Provisioning,
            &[mac(1), mac(2)],
        )]);
        let answer = |renderer: u64, nic: u8, text: &'static str| {
            index
                .lookup(&mac(nic))
                .nic
                .unwrap()
                .get_or_render(renderer, || Some(Bytes::from_static(text.as_bytes())))
        };
        assert_eq!(answer(1, 1, "first").unwrap(), "first");
        assert_eq!(answer(1, 1, "again").unwrap(), "first", "kept");
        assert_eq!(answer(1, 2, "second").unwrap(), "second", "per NIC");
        assert_eq!(answer(2, 1, "other").unwrap(), "other", "another renderer");
        assert_eq!(answer(1, 1, "again").unwrap(), "first");
        index.update(vec![target(1, MachineState::Booting, &[mac(1), mac(2)])]);
        assert_eq!(
            answer(1, 1, "new").unwrap(),
            "new",
            "dropped with the old entry"
        );
        index.update(vec![target(1, MachineState::Installed, &[mac(1)])]);
        assert!(matches!(index.decide(&mac(1)), BootDecision::Ignore(_)));
        assert!(index.lookup(&mac(2)).nic.is_none());
    }

    #[test]
    fn a_nics_recording_is_claimed_once_per_window_and_per_version_of_its_machine() {
        let index = BootIndex::new(vec![target(
            1,
            MachineState::Provisioning,
            &[mac(1), mac(2)],
        )]);
        let claim = |nic: u8, now: u64| {
            index
                .lookup(&mac(nic))
                .nic
                .unwrap()
                .claim_recording(now, 10)
        };
        assert!(claim(1, 1));
        assert!(!claim(1, 1), "claimed already");
        assert!(!claim(1, 10), "still within the window");
        assert!(claim(2, 10), "another NIC");
        assert!(claim(1, 11), "the next window");
        assert!(!claim(1, 5), "a clock behind the claim counts as within it");
        index.update(vec![target(1, MachineState::Installed, &[mac(1), mac(2)])]);
        assert!(
            claim(1, 12),
            "a new version of the machine: a new decision to record"
        );
    }
}
