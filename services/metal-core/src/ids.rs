//! Deterministic identifiers: machine ids from BMC MACs, event ids (which are also
//! the `Nats-Msg-Id`) from the input event and the output type.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::mac::Mac;

/// The namespace of every UUID v5 this system derives. Changing it changes every id.
pub const METAL_NAMESPACE: Uuid = Uuid::from_bytes([
    0x6d, 0x65, 0x74, 0x61, 0x6c, 0x2d, 0x5f, 0x8a, 0x9b, 0x1e, 0x2c, 0x4d, 0x61, 0x63, 0x68, 0x6e,
]);

/// A machine's id: UUID v5 of its normalised BMC MAC, so every service derives it without a lookup.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MachineId(pub Uuid);

impl MachineId {
    pub fn from_bmc_mac(mac: &Mac) -> Self {
        MachineId(Uuid::new_v5(
            &METAL_NAMESPACE,
            format!("bmc-mac:{mac}").as_bytes(),
        ))
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineId({})", self.0)
    }
}

/// The id of an event produced in answer to `input_event_id`. It doubles as the
/// `Nats-Msg-Id`, so a redelivered input can never yield a second stored event.
pub fn derived_event_id(input_event_id: Uuid, output_type: &str) -> Uuid {
    Uuid::new_v5(
        &METAL_NAMESPACE,
        format!("event:{input_event_id}:{output_type}").as_bytes(),
    )
}

/// The id of a raw onboarding request that carried none of its own (a bare `nats pub`):
/// derived from its place in the stream, which never changes.
pub fn raw_request_event_id(stream: &str, sequence: u64) -> Uuid {
    Uuid::new_v5(
        &METAL_NAMESPACE,
        format!("raw:{stream}:{sequence}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_is_stable_across_notations() {
        let a = Mac::parse_device("AA-BB-CC-DD-EE-00").unwrap();
        let b = Mac::parse_device("aabb.ccdd.ee00").unwrap();
        assert_eq!(MachineId::from_bmc_mac(&a), MachineId::from_bmc_mac(&b));
        assert_eq!(
            MachineId::from_bmc_mac(&a).to_string(),
            MachineId::from_bmc_mac(&a).0.hyphenated().to_string()
        );
    }

    #[test]
    fn derived_ids_depend_on_input_and_type() {
        let input = Uuid::from_u128(7);
        assert_eq!(
            derived_event_id(input, "machine.bmc.located"),
            derived_event_id(input, "machine.bmc.located")
        );
        assert_ne!(
            derived_event_id(input, "machine.bmc.located"),
            derived_event_id(input, "machine.locate.failed")
        );
    }
}
