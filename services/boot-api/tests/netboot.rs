//! A real netboot through boot-api: in a network namespace of its own, dnsmasq hands QEMU's
//! iPXE ROM (TCG, e1000) the URL of boot-api's `/boot.ipxe`, which chains
//! `/v1/ipxe/${net0/mac:hexhyp}`. boot-api runs in this process on a socket bound inside
//! the namespace and follows a real nats-server on loopback. The armed machine gets a
//! Debian kernel and a busybox initramfs whose init POSTs the cmdline's `token=` to the
//! cmdline's `phonehome=` URL; the machine ends `installed`, and a second boot of the same
//! MAC gets a script that `exit`s, so SeaBIOS finds nothing to boot and no kernel is
//! fetched. Needs root, QEMU and the kernel scripts/install-deps fetches.

use std::time::Duration;

use metal_core::envelope::Envelope;
use metal_core::events::{BootIgnored, BootPath, BootServed, ProvisionRequested};
use metal_core::query::MachineState;
use metal_core::{subjects, MachineId};
use metal_projection::{fixtures, BootRecords, Projection};
use test_harness::nats::NatsServer;
use test_harness::netboot::{NetbootAssets, NetbootLab, QemuEnd, NO_BOOTABLE_DEVICE, PHONED_HOME};
use test_harness::stream::{read_all, wait_for_events};

const BMC: &str = "aa:bb:cc:00:00:51";
const MAC: &str = "52:54:00:12:34:56";
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);

/// Publishes stored fixture messages as they would have arrived.
async fn publish(client: &async_nats::Client, messages: &[metal_core::jetstream::StoredMessage]) {
    let js = async_nats::jetstream::new(client.clone());
    metal_core::jetstream::ensure_stream(&js)
        .await
        .expect("stream");
    for message in messages {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = &message.msg_id {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .expect("publish")
            .await
            .expect("puback");
    }
}

async fn publish_event(client: &async_nats::Client, event: &Envelope) {
    let js = async_nats::jetstream::new(client.clone());
    metal_core::jetstream::publish_event(&js, event)
        .await
        .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_armed_machine_netboots_phones_home_and_then_boots_no_more() {
    let assets = NetbootAssets::get();
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mut lab = NetbootLab::start();
    let files = lab.serve_files(
        0,
        vec![
            ("vmlinuz".to_string(), assets.kernel.clone()),
            ("initrd.gz".to_string(), assets.initrd.clone()),
        ],
    );
    let listener = lab.bind(0);
    let boot_addr = listener.local_addr().expect("address");
    let public_url = format!("http://{boot_addr}");

    let dir = tempfile::tempdir().expect("temp dir");
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        format!(
            "[[profile]]\nname = \"lab\"\nkernel = \"http://{files}/vmlinuz\"\ninitrd = [\"http://{files}/initrd.gz\"]\n\
             cmdline = \"console=ttyS0 panic=-1 quiet metal.profile={{profile}} phonehome={{phone_home_url}} token={{token}}\"\n"
        ),
    )
    .expect("profiles");
    let mut config = metal_core::config::BootApiConfig {
        database: dir.path().join("boot-api.db"),
        profiles,
        public_url: public_url.clone(),
        ..Default::default()
    };
    config.listen = boot_addr.to_string();
    let key =
        boot_api::TokenKey::new("test", b"netboot test key, 32 bytes long".to_vec()).expect("key");
    let checked = boot_api::Checked::with_key(&config, key).expect("checked");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let client = nats.connect().await;
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let config = config.clone();
        tokio::spawn(async move {
            boot_api::run(&config, checked, client, listener, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    lab.start_dhcp(&format!("{public_url}/boot.ipxe"));

    // The machine, inventoried with the guest's NIC, then armed (no BMC here: --no-power).
    publish(
        &client,
        &fixtures::onboarding(1, BMC, fixtures::inventory("QEMU", "Intel Xeon", &[MAC])),
    )
    .await;
    let machine_id = MachineId::from_bmc_mac(&fixtures::mac(BMC));
    let request_id = uuid::Uuid::new_v4();
    let request = Envelope {
        event_id: request_id,
        event_type: subjects::PROVISION_REQUESTED.to_string(),
        machine_id: Some(machine_id),
        bmc_mac: Some(fixtures::mac(BMC)),
        time: time::OffsetDateTime::now_utc(),
        correlation_id: request_id,
        causation_id: None,
        data: serde_json::to_value(ProvisionRequested {
            profile: None,
            power: false,
            requested_by: Some("netboot test".to_string()),
            force: false,
        })
        .expect("data"),
    };
    publish_event(&client, &request).await;
    wait_for_events(
        &client,
        Duration::from_secs(20),
        "profile.assigned",
        |events| {
            events
                .iter()
                .any(|e| e.event_type == subjects::PROFILE_ASSIGNED)
        },
    )
    .await;

    // First boot: netboots, installs (the initramfs phones home), powers off.
    let first = {
        let lab = &lab;
        tokio::task::block_in_place(|| lab.boot_qemu(MAC, BOOT_TIMEOUT))
    };
    assert!(
        first.exited_ok(),
        "first boot did not end in a power-off: {first}"
    );
    assert!(first.serial.contains(PHONED_HOME), "{first}");
    let events = wait_for_events(
        &client,
        Duration::from_secs(20),
        "install.completed",
        |events| {
            events
                .iter()
                .any(|e| e.event_type == subjects::INSTALL_COMPLETED)
        },
    )
    .await;
    let served: Vec<BootServed> = events
        .iter()
        .filter(|e| e.event_type == subjects::BOOT_SERVED)
        .map(|e| e.data_as().expect("boot.served"))
        .collect();
    assert_eq!(served.len(), 1, "one boot, one event: {served:?}");
    assert_eq!(served[0].path, BootPath::Ipxe);
    assert_eq!(served[0].provision_id, request_id);
    assert!(
        !events
            .iter()
            .any(|e| e.event_type == subjects::INSTALL_REJECTED),
        "the guest's token was refused"
    );
    let kernel_fetches = |lab: &NetbootLab| {
        lab.file_requests()
            .iter()
            .filter(|r| r.path.ends_with("vmlinuz"))
            .count()
    };
    assert_eq!(kernel_fetches(&lab), 1);

    // Second boot of the same MAC: not netbooted.
    let second = {
        let lab = &lab;
        tokio::task::block_in_place(|| {
            lab.boot_qemu_until(MAC, BOOT_TIMEOUT, |serial| {
                serial.contains(NO_BOOTABLE_DEVICE)
            })
        })
    };
    assert!(matches!(second.end, QemuEnd::UntilHeld), "{second}");
    assert!(!second.serial.contains(PHONED_HOME), "{second}");
    assert_eq!(
        kernel_fetches(&lab),
        1,
        "the installed machine fetched a kernel again"
    );
    let events = wait_for_events(&client, Duration::from_secs(20), "boot.ignored", |events| {
        events
            .iter()
            .any(|e| e.event_type == subjects::BOOT_IGNORED)
    })
    .await;
    let ignored: BootIgnored = events
        .iter()
        .find(|e| e.event_type == subjects::BOOT_IGNORED)
        .expect("ignored")
        .data_as()
        .expect("boot.ignored");
    assert_eq!(ignored.state, "installed");

    // The log alone says installed, and boot-api's own projection agrees with a replay by
    // its rules (boot records neither read nor applied).
    let log = read_all(&client).await;
    let mut full = Projection::open_in_memory().expect("projection");
    full.apply_batch(&log).expect("apply");
    let detail = full.machine(BMC).expect("read").expect("machine");
    assert_eq!(detail.machine.state, MachineState::Installed);
    let mut replayed = Projection::open_in_memory()
        .expect("projection")
        .with_boot_records(BootRecords::Skipped);
    let followed: Vec<_> = log
        .iter()
        .filter(|message| !subjects::is_boot_record(&message.subject))
        .cloned()
        .collect();
    replayed.apply_batch(&followed).expect("apply");
    let _ = stop.send(());
    server.await.expect("join").expect("boot-api");
    let own = Projection::open(&config.database).expect("boot-api's file");
    assert_eq!(
        own.last_sequence().expect("sequence"),
        replayed.last_sequence().expect("sequence")
    );
    assert_eq!(
        own.canonical_export().expect("export"),
        replayed.canonical_export().expect("export"),
        "boot-api's projection differs from a replay of the log"
    );
}
