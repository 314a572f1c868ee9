//! Query answers against an in-memory projection, through one `check` helper.

use metal_core::events::{BootPath, BootUnknown};
use metal_core::query::{History, MachineDetail, MachineList, Status, UnknownMacs};
use metal_core::{subjects, Envelope};
use metal_projection::fixtures::{at, inventory, mac, onboarding, stored};
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

/// boot-api's record of a netboot request from a MAC no machine has.
fn boot_unknown(sequence: u64, text: &str) -> Envelope {
    let id = metal_core::ids::derived_event_id(metal_core::ids::METAL_NAMESPACE, text);
    Envelope {
        event_id: id,
        event_type: subjects::BOOT_UNKNOWN.to_string(),
        machine_id: None,
        bmc_mac: None,
        time: at(sequence as i64),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(BootUnknown {
            mac: mac(text),
            path: BootPath::Pixiecore,
            reason: "no machine has this MAC".to_string(),
        })
        .unwrap(),
    }
}

#[test]
fn unknown_macs_are_those_no_machine_has() {
    let mut projection = projection();
    assert_eq!(
        serde_json::from_slice::<UnknownMacs>(
            &answer(&projection, subjects::QUERY_UNKNOWN, b"{}").unwrap()
        )
        .unwrap()
        .macs,
        Vec::new()
    );
    // One stranger; and the machine's own host NIC, which asked before it was onboarded.
    projection
        .apply(&stored(4, &boot_unknown(4, "02:00:00:00:00:99")))
        .unwrap();
    projection
        .apply(&stored(5, &boot_unknown(5, HOST)))
        .unwrap();
    let reply: UnknownMacs =
        serde_json::from_slice(&answer(&projection, subjects::QUERY_UNKNOWN, b"{}").unwrap())
            .unwrap();
    assert_eq!(reply.last_sequence, 5);
    let macs: Vec<String> = reply.macs.iter().map(|m| m.mac.to_string()).collect();
    assert_eq!(macs, ["02:00:00:00:00:99"]);
    assert_eq!(reply.macs[0].events, 1);
    assert_eq!(reply.macs[0].last_reason, "no machine has this MAC");
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

#[test]
fn firmware_drift_is_what_differs_from_the_models_most_common_version() {
    use metal_core::query::FirmwareDrift;
    use metal_projection::fixtures::with_firmware;

    let mut projection = projection();
    let reply: FirmwareDrift =
        serde_json::from_slice(&answer(&projection, subjects::QUERY_DRIFT, b"{}").unwrap())
            .unwrap();
    assert_eq!((reply.drift.len(), reply.total, reply.machines), (0, 0, 1));
    // Two more DL360s: one like the first (System ROM U30 v2.72), one with an older ROM.
    projection
        .apply_batch(&onboarding(
            4,
            "aa:bb:cc:00:00:02",
            inventory("DL360", "Intel Xeon", &["52:54:00:12:34:57"]),
        ))
        .unwrap();
    let older = with_firmware(
        inventory("DL360", "Intel Xeon", &["52:54:00:12:34:58"]),
        &[("BIOS", Some("System ROM"), Some("U30 v2.60"))],
    );
    projection
        .apply_batch(&onboarding(7, "aa:bb:cc:00:00:03", older))
        .unwrap();
    let reply: FirmwareDrift =
        serde_json::from_slice(&answer(&projection, subjects::QUERY_DRIFT, b"").unwrap()).unwrap();
    assert_eq!(
        (reply.total, reply.machines, reply.last_sequence),
        (1, 3, 9)
    );
    let row = &reply.drift[0];
    assert_eq!(row.bmc_mac.to_string(), "aa:bb:cc:00:00:03");
    assert_eq!(
        (
            row.model.as_str(),
            row.component.as_str(),
            row.version.as_str(),
            row.fleet_version.as_str()
        ),
        ("DL360", "System ROM", "U30 v2.60", "U30 v2.72")
    );
    assert_eq!((row.fleet_machines, row.component_machines), (2, 3));
}

#[test]
fn an_error_with_line_breaks_travels_as_one_header_line() {
    // quick_check findings and SQLite messages may hold line breaks; async-nats panics on
    // a header value with one.
    let error = crate::answer::QueryError::unavailable("page 5:\nbad\r\ncell");
    let sent: async_nats::service::error::Error = error.into();
    assert_eq!(sent.status, "page 5: bad  cell");
    assert_eq!(sent.code, 503);
}
