//! Query answers against an in-memory projection, through one `check` helper.

use metal_core::query::{History, MachineDetail, MachineList, Status};
use metal_core::subjects;
use metal_projection::fixtures::{inventory, onboarding};
use metal_projection::Projection;

use crate::answer::{answer, machine_ref};

const BMC: &str = "aa:bb:cc:00:00:01";
const HOST: &str = "52:54:00:12:34:56";

fn projection() -> Projection {
    let mut projection = Projection::open_in_memory().unwrap();
    projection
        .apply_batch(&onboarding(
            1,
            BMC,
            inventory("DL360", "Intel Xeon", &[HOST]),
        ))
        .unwrap();
    projection
}

/// Answers `payload` on `subject`; `Ok` is the JSON reply, `Err` the error code.
fn check(subject: &str, payload: &str) -> Result<serde_json::Value, usize> {
    answer(&projection(), subject, payload.as_bytes())
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .map_err(|e| e.code)
}

#[test]
fn queries() {
    let list: MachineList =
        serde_json::from_value(check(subjects::QUERY_MACHINES, "").unwrap()).unwrap();
    assert_eq!((list.machines.len(), list.last_sequence), (1, 3));

    let status: Status =
        serde_json::from_value(check(subjects::QUERY_STATUS, "").unwrap()).unwrap();
    assert_eq!((status.machines, status.last_sequence), (1, 3));

    for payload in [
        r#"{"machine":"AA-BB-CC-00-00-01"}"#,
        r#"{"machine":"52:54:00:12:34:56"}"#,
        " aabbcc000001\n",
    ] {
        let detail: MachineDetail =
            serde_json::from_value(check(subjects::QUERY_MACHINE, payload).unwrap()).unwrap();
        assert_eq!(detail.machine.bmc_mac.to_string(), BMC, "{payload}");
        assert_eq!(detail.summary.unwrap().systems[0].processors.count, 2);
    }
    let history: History = serde_json::from_value(
        check(
            subjects::QUERY_HISTORY,
            r#"{"machine":"aa:bb:cc:00:00:01"}"#,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(history.events.len(), 3);

    assert_eq!(
        check(
            subjects::QUERY_MACHINE,
            r#"{"machine":"aa:bb:cc:00:00:09"}"#
        ),
        Err(404)
    );
    assert_eq!(
        check(
            subjects::QUERY_HISTORY,
            r#"{"machine":"aa:bb:cc:00:00:09"}"#
        ),
        Err(404)
    );
    assert_eq!(
        check(subjects::QUERY_MACHINE, r#"{"machine":"nonsense"}"#),
        Err(400)
    );
    assert_eq!(
        check(subjects::QUERY_MACHINE, r#"{"machin":"x"}"#),
        Err(400)
    );
    assert_eq!(check(subjects::QUERY_MACHINE, ""), Err(400));
    assert_eq!(check(subjects::QUERY_EXPORT, ""), Err(400));
}

#[test]
fn machine_refs() {
    assert_eq!(machine_ref(br#"{"machine":"x"}"#), Ok("x".to_string()));
    assert!(machine_ref(b"\xff\xfe").is_err());
}

#[test]
fn fresh_path_is_next_to_live() {
    let path = crate::replay::fresh_path(std::path::Path::new("/var/lib/metal/inventory.db"));
    assert_eq!(
        path,
        std::path::Path::new("/var/lib/metal/inventory.db.replay")
    );
}
