//! The boot index: every machine's host NIC MACs, state and provisioning, in memory, so a
//! boot request is a hash lookup that never waits for SQLite or the follow loop. The
//! follow loop updates it after each batch, under the projection's lock.
//!
//! Each machine entry also keeps the answers rendered for its NICs so far ([`AnswerSlot`]),
//! so a repeated boot request costs no token, cmdline or JSON work; replacing the entry
//! when the machine changes drops them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

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

/// One version of a machine, with one answer slot per NIC of `target.macs`.
#[derive(Debug)]
struct Entry {
    target: Arc<BootTarget>,
    answers: Box<[OnceLock<(u64, Bytes)>]>,
}

impl Entry {
    fn new(target: BootTarget) -> Entry {
        Entry {
            answers: target.macs.iter().map(|_| OnceLock::new()).collect(),
            target: Arc::new(target),
        }
    }
}

/// Where the rendered answer for one NIC of one version of a machine is kept.
#[derive(Debug, Clone)]
pub struct AnswerSlot {
    entry: Arc<Entry>,
    nic: usize,
}

impl AnswerSlot {
    /// The answer `renderer` (an id that names everything besides the machine and the NIC
    /// that the answer depends on) keeps here, or `render()`'s, which is kept when the slot
    /// is still free. Only the first renderer's answers are kept.
    pub fn get_or_render(
        &self,
        renderer: u64,
        render: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let slot = &self.entry.answers[self.nic];
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

/// A decision and, for a machine, where answers for this NIC are kept.
#[derive(Debug)]
pub struct Lookup {
    pub decision: BootDecision,
    pub answer: Option<AnswerSlot>,
}

#[derive(Debug, Default)]
struct Inner {
    by_mac: HashMap<Mac, Vec<MachineId>>,
    machines: HashMap<MachineId, Arc<Entry>>,
}

#[derive(Debug, Default)]
pub struct BootIndex {
    inner: RwLock<Inner>,
}

impl BootIndex {
    pub fn new(targets: Vec<BootTarget>) -> BootIndex {
        let index = BootIndex::default();
        index.update(targets);
        index
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Updates never leave the maps half-written across a panic that matters: a machine
        // is replaced whole.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces these machines' entries.
    pub fn update(&self, targets: Vec<BootTarget>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for target in targets {
            let id = target.machine_id;
            if let Some(old) = inner.machines.remove(&id) {
                for mac in &old.target.macs {
                    if let Some(ids) = inner.by_mac.get_mut(mac) {
                        ids.retain(|other| *other != id);
                        if ids.is_empty() {
                            inner.by_mac.remove(mac);
                        }
                    }
                }
            }
            for mac in &target.macs {
                inner.by_mac.entry(*mac).or_default().push(id);
            }
            inner.machines.insert(id, Arc::new(Entry::new(target)));
        }
    }

    pub fn decide(&self, mac: &Mac) -> BootDecision {
        self.lookup(mac).decision
    }

    /// [`BootIndex::decide`], with the answer slot of a machine's NIC.
    pub fn lookup(&self, mac: &Mac) -> Lookup {
        let unknown = |reason: String| Lookup {
            decision: BootDecision::Unknown { reason },
            answer: None,
        };
        let inner = self.read();
        match inner.by_mac.get(mac).map(Vec::as_slice) {
            None | Some([]) => unknown("no machine has this MAC".to_string()),
            Some([id]) => match inner.machines.get(id) {
                Some(entry) => {
                    let target = Arc::clone(&entry.target);
                    let decision = if target.state.is_armed() && target.provisioning.is_some() {
                        BootDecision::Serve(target)
                    } else {
                        BootDecision::Ignore(target)
                    };
                    let answer = entry
                        .target
                        .macs
                        .binary_search(mac)
                        .ok()
                        .map(|nic| AnswerSlot {
                            entry: Arc::clone(entry),
                            nic,
                        });
                    Lookup { decision, answer }
                }
                None => unknown("no machine has this MAC".to_string()),
            },
            Some(ids) => unknown(format!("MAC shared by {} machines", ids.len())),
        }
    }

    pub fn machine(&self, machine_id: &MachineId) -> Option<Arc<BootTarget>> {
        self.read()
            .machines
            .get(machine_id)
            .map(|entry| Arc::clone(&entry.target))
    }

    /// Every armed machine and its provisioning, for the deadline check.
    pub fn armed(&self) -> Vec<(Arc<BootTarget>, Provisioning)> {
        self.read()
            .machines
            .values()
            .map(|entry| &entry.target)
            .filter(|t| t.state.is_armed())
            .filter_map(|t| t.provisioning.clone().map(|p| (Arc::clone(t), p)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().machines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
