//! sushy-tools' fake driver (no libvirt) behind required HTTP basic auth, as the harness starts it.
//!
//! Facts verified against sushy-tools 2.2.0 (and asserted below, so an upgrade that changes them
//! fails here):
//!
//! - Basic auth (`SUSHY_EMULATOR_AUTH_FILE`, bcrypt digests only) covers everything except `/`,
//!   `/redfish` and `/redfish/v1`: the service root answers 200 without credentials, anything
//!   else 401 with `WWW-Authenticate: Basic realm="Baremetal API"` and a Redfish error body.
//! - There is no SessionService: the root has no link to it and `/redfish/v1/SessionService`
//!   is 404 (a client must fall back to basic auth). The root links Systems, Managers, Chassis,
//!   Registries, CertificateService and UpdateService.
//! - A fake system (`ComputerSystem.v1_13_0`) has `Name`, `UUID`, `PowerState`, `Boot` (with
//!   `"HttpBootUri": "None"`, a string), `ProcessorSummary` and `MemorySummary` holding only a
//!   `Status` (no `Count`, no `TotalSystemMemoryGiB`), and links to `EthernetInterfaces`,
//!   `Storage`, `Memory`, `SecureBoot` and `VirtualMedia`; no `Processors`, `SimpleStorage` or
//!   `Bios` link. Its `Id` and member URLs use the UUID; `/Systems/<name>` is a 307 to the UUID.
//! - `Processors`, `SimpleStorage` and `BIOS` answer 501 "Not implemented"; `Memory` is linked but
//!   has no route at all: 404.
//! - `EthernetInterfaces` lists one member per configured MAC, whose `Id` is the MAC itself
//!   (`.../EthernetInterfaces/52:54:00:aa:00:01`), with `MACAddress` and `PermanentMACAddress`
//!   and the name `VNIC <mac>`.
//! - `Storage` answers 500 ("Error finding storage collection by UUID") for a system missing from
//!   `SUSHY_EMULATOR_STORAGE`, which is why the harness gives every system an entry (an empty
//!   collection when it has no drives). There is no `Storage/<id>/Drives` collection (404): the
//!   drives are only the `Drives` links of `Storage/<id>`. `Storage/<id>/Volumes` is a 500 for fake
//!   systems.
//! - `Storage/1` as the harness configures it:
//!   ```json
//!   {"@odata.type": "##Storage.v1_4_0.Storage", "Id": "1", "Name": "Local Storage Controller",
//!    "Status": {"@odata.type": "#Resource.Status", "State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
//!    "StorageControllers": [{"@odata.id": "/redfish/v1/Systems/<uuid>/Storage/1#/StorageControllers/0",
//!      "@odata.type": "#Storage.v1_3_0.StorageController", "MemberId": "0", "Name": "Integrated RAID",
//!      "Status": {...}, "Manufacturer": "Contoso", "Model": "12Gbs Integrated RAID",
//!      "SerialNumber": "2M220100SL", "PartNumber": "CT18754", "SpeedGbps": 12, "FirmwareVersion": "1.0.0.7",
//!      "SupportedControllerProtocols": ["PCIe"], "SupportedDeviceProtocols": ["SAS", "SATA"]}],
//!    "Drives": [{"@odata.id": "/redfish/v1/Systems/<uuid>/Storage/1/Drives/<drive id>"}, ...],
//!    "Volumes": {"@odata.id": "/redfish/v1/Systems/<uuid>/Storage/1/Volumes"},
//!    "@odata.context": "/redfish/v1/$metadata#Storage.Storage", "@odata.id": "/redfish/v1/Systems/<uuid>/Storage/1"}
//!   ```
//!   (`"##Storage..."` with two hashes is sushy's typo.)
//! - A Drive renders only `Id`, `Name`, `CapacityBytes` and `Protocol` from the config; all else is
//!   fixed, so every drive has the same serial number:
//!   ```json
//!   {"@odata.type": "#Drive.v1_4_0.Drive", "Id": "nvme0", "Name": "Drive nvme0", "IndicatorLED": "Lit",
//!    "Model": "C123", "Revision": "100A", "Status": {"@odata.type": "#Resource.Status", "State": "Enabled", "Health": "OK"},
//!    "CapacityBytes": 1920383410176, "FailurePredicted": false, "Protocol": "NVMe", "MediaType": "HDD",
//!    "Manufacturer": "Contoso", "SerialNumber": "1234570", "PartNumber": "C123-1111", "HotspareType": "Global",
//!    "EncryptionAbility": "SelfEncryptingDrive", "EncryptionStatus": "Unlocked", "RotationSpeedRPM": 15000,
//!    "BlockSizeBytes": 512, "CapableSpeedGbs": 12, "NegotiatedSpeedGbs": 12,
//!    "@odata.context": "/redfish/v1/$metadata#Drive.Drive",
//!    "@odata.id": "/redfish/v1/Systems/<uuid>/Storage/1/Drives/nvme0", "@Redfish.Copyright": "..."}
//!   ```

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use test_harness::sushy::{SushyDrive, SushyEmulator, SushyFakeSystem};

const USER: &str = "admin";
const PASSWORD: &str = "s3cret:with colon";

const UUID_A: &str = "8c2a3d1e-5b4f-4a11-9c3e-0a1b2c3d4e01";
/// Given in upper case: the harness hands sushy the canonical form, which sushy serves.
const UUID_B_INPUT: &str = "8C2A3D1E-5B4F-4A11-9C3E-0A1B2C3D4E02";
const UUID_B: &str = "8c2a3d1e-5b4f-4a11-9c3e-0a1b2c3d4e02";

/// The serial number sushy 2.2 gives every drive (its template hard-codes it).
const SUSHY_DRIVE_SERIAL: &str = "1234570";

fn drive(id: &str, capacity_bytes: u64, protocol: &str) -> SushyDrive {
    SushyDrive {
        id: id.to_owned(),
        capacity_bytes,
        protocol: protocol.to_owned(),
    }
}

fn system_a() -> SushyFakeSystem {
    SushyFakeSystem {
        name: "node-a".to_owned(),
        uuid: UUID_A.to_owned(),
        power_state: "On".to_owned(),
        nic_macs: vec![
            "52:54:00:aa:00:01".to_owned(),
            "52:54:00:aa:00:02".to_owned(),
        ],
        drives: vec![
            drive("sata0", 480_103_981_056, "SATA"),
            drive("nvme0", 1_920_383_410_176, "NVMe"),
        ],
    }
}

fn system_b() -> SushyFakeSystem {
    SushyFakeSystem {
        name: "node-b".to_owned(),
        uuid: UUID_B_INPUT.to_owned(),
        power_state: "Off".to_owned(),
        nic_macs: vec!["52:54:00:bb:00:01".to_owned()],
        drives: vec![drive("sas0", 1_200_243_695_616, "SAS")],
    }
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GETs `path` (with the credentials when `auth`), answering the status and the JSON body
/// (`Null` when the body is not JSON).
async fn get(emulator: &SushyEmulator, path: &str, auth: bool) -> (StatusCode, Value) {
    let mut request = client().get(format!("{}{path}", emulator.base_url()));
    if auth {
        request = request.basic_auth(USER, Some(PASSWORD));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// GETs `path` with credentials, expecting 200.
async fn get_ok(emulator: &SushyEmulator, path: &str) -> Value {
    let (status, body) = get(emulator, path, true).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "GET {path}: {body}\nlog:\n{}",
        emulator.log()
    );
    body
}

fn member_ids(collection: &Value) -> Vec<String> {
    collection["Members"]
        .as_array()
        .unwrap_or_else(|| panic!("no Members in {collection}"))
        .iter()
        .map(|m| m["@odata.id"].as_str().unwrap().to_owned())
        .collect()
}

/// The drives of `Storage/1` of system `uuid`, by following its `Drives` links.
async fn drives_of(emulator: &SushyEmulator, uuid: &str) -> Vec<Value> {
    let storage = get_ok(emulator, &format!("/redfish/v1/Systems/{uuid}/Storage")).await;
    assert_eq!(
        member_ids(&storage),
        [format!("/redfish/v1/Systems/{uuid}/Storage/1")]
    );
    let controller = get_ok(emulator, &format!("/redfish/v1/Systems/{uuid}/Storage/1")).await;
    assert_eq!(controller["Id"], "1");
    assert_eq!(controller["Name"], "Local Storage Controller");
    assert_eq!(
        controller["StorageControllers"][0]["Name"],
        "Integrated RAID"
    );
    assert_eq!(controller["StorageControllers"][0]["SpeedGbps"], 12);
    let mut drives = Vec::new();
    for link in controller["Drives"].as_array().unwrap() {
        let path = link["@odata.id"].as_str().unwrap();
        drives.push(get_ok(emulator, path).await);
    }
    drives
}

fn assert_drive(drive: &Value, uuid: &str, expected: &SushyDrive) {
    assert_eq!(drive["Id"], expected.id.as_str(), "{drive}");
    assert_eq!(drive["Name"], format!("Drive {}", expected.id), "{drive}");
    assert_eq!(drive["CapacityBytes"], expected.capacity_bytes, "{drive}");
    assert_eq!(drive["Protocol"], expected.protocol.as_str(), "{drive}");
    assert_eq!(drive["SerialNumber"], SUSHY_DRIVE_SERIAL, "{drive}");
    assert_eq!(drive["MediaType"], "HDD", "{drive}");
    assert_eq!(drive["Manufacturer"], "Contoso", "{drive}");
    assert_eq!(drive["Model"], "C123", "{drive}");
    assert_eq!(
        drive["@odata.id"],
        format!(
            "/redfish/v1/Systems/{uuid}/Storage/1/Drives/{}",
            expected.id
        )
    );
}

#[tokio::test]
async fn basic_auth_is_required_and_both_systems_are_listed() {
    let emulator = SushyEmulator::start_fake(&[system_a(), system_b()], Some((USER, PASSWORD)));

    let (status, root) = get(&emulator, "/redfish/v1", false).await;
    assert_eq!(status, StatusCode::OK, "the service root is open: {root}");
    assert!(root.get("SessionService").is_none(), "{root}");
    assert_eq!(root["Systems"]["@odata.id"], "/redfish/v1/Systems");

    let response = client()
        .get(format!("{}/redfish/v1/Systems", emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"Baremetal API\""
    );
    let wrong = client()
        .get(format!("{}/redfish/v1/Systems", emulator.base_url()))
        .basic_auth(USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = get(&emulator, "/redfish/v1/SessionService", true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "sushy has no SessionService");

    let systems = get_ok(&emulator, "/redfish/v1/Systems").await;
    assert_eq!(systems["Members@odata.count"], 2);
    let mut members = member_ids(&systems);
    members.sort();
    assert_eq!(
        members,
        [
            format!("/redfish/v1/Systems/{UUID_A}"),
            format!("/redfish/v1/Systems/{UUID_B}")
        ]
    );
    for (uuid, expected) in [(UUID_A, system_a()), (UUID_B, system_b())] {
        let system = get_ok(&emulator, &format!("/redfish/v1/Systems/{uuid}")).await;
        assert_eq!(system["Id"], uuid);
        assert_eq!(system["UUID"], uuid);
        assert_eq!(system["Name"], expected.name.as_str());
        assert_eq!(system["PowerState"], expected.power_state.as_str());
    }
    let (status, _) = get(&emulator, "/redfish/v1/Systems/node-a", true).await;
    assert_eq!(
        status,
        StatusCode::TEMPORARY_REDIRECT,
        "a name redirects to the UUID"
    );
}

#[tokio::test]
async fn each_system_serves_its_nics_and_drives_and_nothing_else() {
    let emulator = SushyEmulator::start_fake(&[system_a(), system_b()], Some((USER, PASSWORD)));

    for (uuid, expected) in [(UUID_A, system_a()), (UUID_B, system_b())] {
        let base = format!("/redfish/v1/Systems/{uuid}");
        let system = get_ok(&emulator, &base).await;
        for present in [
            "EthernetInterfaces",
            "Storage",
            "Memory",
            "SecureBoot",
            "VirtualMedia",
        ] {
            assert_eq!(
                system[present]["@odata.id"],
                format!("{base}/{present}"),
                "{present} in {system}"
            );
        }
        for absent in ["Processors", "SimpleStorage", "Bios"] {
            assert!(system.get(absent).is_none(), "{absent} in {system}");
        }
        assert!(system["ProcessorSummary"].get("Count").is_none());
        assert!(system["MemorySummary"]
            .get("TotalSystemMemoryGiB")
            .is_none());
        for (part, code) in [
            ("Processors", StatusCode::NOT_IMPLEMENTED),
            ("SimpleStorage", StatusCode::NOT_IMPLEMENTED),
            ("BIOS", StatusCode::NOT_IMPLEMENTED),
            ("Memory", StatusCode::NOT_FOUND),
            ("Storage/1/Drives", StatusCode::NOT_FOUND),
        ] {
            let (status, body) = get(&emulator, &format!("{base}/{part}"), true).await;
            assert_eq!(status, code, "{part}: {body}");
        }

        let nics = get_ok(&emulator, &format!("{base}/EthernetInterfaces")).await;
        let expected_nics: Vec<String> = expected
            .nic_macs
            .iter()
            .map(|mac| format!("{base}/EthernetInterfaces/{mac}"))
            .collect();
        assert_eq!(member_ids(&nics), expected_nics);
        for (path, mac) in expected_nics.iter().zip(&expected.nic_macs) {
            let nic = get_ok(&emulator, path).await;
            assert_eq!(nic["Id"], mac.as_str());
            assert_eq!(nic["MACAddress"], mac.as_str());
            assert_eq!(nic["PermanentMACAddress"], mac.as_str());
        }

        let drives = drives_of(&emulator, uuid).await;
        assert_eq!(drives.len(), expected.drives.len());
        for (drive, expected) in drives.iter().zip(&expected.drives) {
            assert_drive(drive, uuid, expected);
        }
    }
}

#[tokio::test]
async fn restart_with_one_more_drive_serves_it_at_the_same_url() {
    let mut bare_b = system_b();
    bare_b.drives.clear();
    let mut emulator = SushyEmulator::start_fake(&[system_a(), bare_b], Some((USER, PASSWORD)));
    let base_url = emulator.base_url();

    let storage = get_ok(&emulator, &format!("/redfish/v1/Systems/{UUID_B}/Storage")).await;
    assert_eq!(
        storage["Members@odata.count"], 0,
        "a system without drives has an empty Storage collection, not sushy's 500"
    );

    let mut grown_a = system_a();
    grown_a
        .drives
        .push(drive("nvme1", 3_840_755_982_336, "NVMe"));
    emulator.restart_with(&[grown_a.clone(), system_b()]);
    assert_eq!(emulator.base_url(), base_url);

    let (status, _) = get(&emulator, "/redfish/v1/Systems", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "still requires auth");
    let drives = drives_of(&emulator, UUID_A).await;
    assert_eq!(drives.len(), 3);
    for (drive, expected) in drives.iter().zip(&grown_a.drives) {
        assert_drive(drive, UUID_A, expected);
    }
    let new = get_ok(
        &emulator,
        &format!("/redfish/v1/Systems/{UUID_A}/Storage/1/Drives/nvme1"),
    )
    .await;
    assert_eq!(new["Id"], "nvme1");
    assert_eq!(new["SerialNumber"], SUSHY_DRIVE_SERIAL);
    let drives_b = drives_of(&emulator, UUID_B).await;
    assert_eq!(drives_b.len(), 1);
    assert_drive(&drives_b[0], UUID_B, &system_b().drives[0]);
}

#[test]
fn start_failure_names_the_problem() {
    let mut bad = system_a();
    bad.uuid = "not-a-uuid".to_owned();
    let error = SushyEmulator::try_start_fake(&[bad], None)
        .err()
        .expect("a system with a bad UUID cannot start");
    assert!(format!("{error:#}").contains("not-a-uuid"), "{error:#}");
}
