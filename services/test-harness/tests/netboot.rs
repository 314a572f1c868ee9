//! The netboot harness on its own, with no boot-api: a QEMU guest (TCG) takes a lease from
//! the lab's dnsmasq, and its iPXE ROM chains `/boot.ipxe` from an in-process axum server
//! bound inside the lab's namespace. That script chains a per-MAC script by
//! `${net0/mac:hexhyp}`, which names the lab's file server for the Debian kernel and the
//! busybox initramfs (served with Content-Length). Linux boots, the initramfs takes its own
//! lease and POSTs its MAC with the token from the kernel command line to `/home`, then
//! powers off, so QEMU exits 0. A second guest, in a lab of its own at the same time, gets a
//! script that `exit`s: SeaBIOS finds nothing else to boot and QEMU is stopped at
//! "No bootable device." Needs root, QEMU and the kernel that scripts/install-deps fetches.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use test_harness::netboot::{
    NetbootAssets, NetbootLab, QemuEnd, INIT_FAILED, NO_BOOTABLE_DEVICE, PHONED_HOME,
};

const MAC: &str = "52:54:00:12:34:56";
/// What `${net0/mac:hexhyp}` makes of [`MAC`].
const MAC_HEXHYP: &str = "52-54-00-12-34-56";
const TOKEN: &str = "abc";
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);

/// What the test's boot server saw.
#[derive(Default)]
struct Seen {
    /// Paths of the GETs, in order.
    gets: Vec<String>,
    phone_homes: Vec<PhoneHome>,
}

struct PhoneHome {
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
    at: Instant,
}

#[derive(Clone)]
struct Boot {
    /// `http://<bridge>:<port>` of this server.
    base: String,
    /// `http://<bridge>:<port>` of the lab's file server.
    files: String,
    /// Whether `/boot.ipxe` boots Linux or `exit`s.
    boot_linux: bool,
    seen: Arc<Mutex<Seen>>,
}

async fn boot_ipxe(State(boot): State<Boot>) -> String {
    boot.seen
        .lock()
        .unwrap()
        .gets
        .push("/boot.ipxe".to_string());
    if boot.boot_linux {
        format!(
            "#!ipxe\necho netboot test: ${{net0/mac}} as ${{ip}}\nchain {}/script/${{net0/mac:hexhyp}}\n",
            boot.base
        )
    } else {
        "#!ipxe\necho netboot test: nothing to boot here\nexit\n".to_string()
    }
}

async fn script(State(boot): State<Boot>, Path(mac): Path<String>) -> (StatusCode, String) {
    boot.seen
        .lock()
        .unwrap()
        .gets
        .push(format!("/script/{mac}"));
    if mac != MAC_HEXHYP {
        return (StatusCode::NOT_FOUND, format!("no script for {mac}\n"));
    }
    let Boot { base, files, .. } = &boot;
    (
        StatusCode::OK,
        format!(
            "#!ipxe\nkernel {files}/vmlinuz console=ttyS0 panic=-1 phonehome={base}/home token={TOKEN}\ninitrd {files}/initrd.gz\nboot\n"
        ),
    )
}

async fn home(State(boot): State<Boot>, headers: HeaderMap, body: String) -> &'static str {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    boot.seen.lock().unwrap().phone_homes.push(PhoneHome {
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
        at: Instant::now(),
    });
    "welcome home\n"
}

/// Starts the test's boot server inside the lab's namespace, on `runtime`, and dnsmasq
/// pointing iPXE at its `/boot.ipxe`.
fn start_boot_server(
    lab: &mut NetbootLab,
    runtime: &tokio::runtime::Runtime,
    files: SocketAddr,
    boot_linux: bool,
) -> Arc<Mutex<Seen>> {
    let listener = lab.bind(0);
    let addr = listener.local_addr().expect("the boot server's address");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = Boot {
        base: format!("http://{addr}"),
        files: format!("http://{files}"),
        boot_linux,
        seen: seen.clone(),
    };
    let app = Router::new()
        .route("/boot.ipxe", get(boot_ipxe))
        .route("/script/{mac}", get(script))
        .route("/home", post(home))
        .with_state(state);
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).expect("a tokio listener")
    };
    runtime.spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the boot server failed");
    });
    lab.start_dhcp(&format!("http://{addr}/boot.ipxe"));
    seen
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn a_guest_netboots_through_ipxe_and_phones_home_with_its_token() {
    let assets = NetbootAssets::get();
    let mut lab = NetbootLab::start();
    let files = lab.serve_files(
        0,
        vec![
            ("/vmlinuz".to_string(), assets.kernel.clone()),
            ("/initrd.gz".to_string(), assets.initrd.clone()),
        ],
    );
    // The file server sends Content-Length (Pixiecore forwards it; without it a boot is slow).
    let headers = lab
        .command("busybox")
        .args(["wget", "-S", "-q"])
        .args(["-O", "/dev/null", &format!("http://{files}/initrd.gz")])
        .output()
        .expect("busybox wget in the lab's namespace");
    let initrd_len = std::fs::metadata(&assets.initrd)
        .expect("the initramfs")
        .len();
    let headers = String::from_utf8_lossy(&headers.stderr).to_ascii_lowercase();
    assert!(
        headers.contains(&format!("content-length: {initrd_len}")),
        "the file server sent no Content-Length of {initrd_len}: {headers}"
    );
    let runtime = runtime();
    let seen = start_boot_server(&mut lab, &runtime, files, true);

    let run = lab.boot_qemu(MAC, BOOT_TIMEOUT);
    eprintln!(
        "netboot: QEMU ran {:.1} s ({:?})",
        run.elapsed.as_secs_f64(),
        run.end
    );

    let seen = seen.lock().unwrap();
    assert!(
        run.exited_ok(),
        "the guest did not power off: {run}\nboot server GETs: {:?}\ndnsmasq log:\n{}",
        seen.gets,
        lab.dnsmasq_log()
    );
    assert!(run.serial.contains(PHONED_HOME), "{run}");
    assert!(!run.serial.contains(INIT_FAILED), "{run}");
    assert_eq!(
        seen.gets,
        vec!["/boot.ipxe".to_string(), format!("/script/{MAC_HEXHYP}")],
        "iPXE chains the per-MAC script by ${{net0/mac:hexhyp}}"
    );
    assert_eq!(seen.phone_homes.len(), 1, "{run}");
    let phone_home = &seen.phone_homes[0];
    assert_eq!(
        phone_home.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(phone_home.content_type.as_deref(), Some("application/json"));
    let body: serde_json::Value =
        serde_json::from_str(&phone_home.body).expect("the phone-home body is JSON");
    assert_eq!(body["mac"], MAC, "{body}");
    assert!(body["uptime"].as_f64().is_some_and(|s| s > 0.0), "{body}");

    let requests = lab.file_requests();
    let fetched: Vec<(&str, u16)> = requests
        .iter()
        .skip(1) // the Content-Length check above
        .map(|r| (r.path.as_str(), r.status))
        .collect();
    assert_eq!(fetched, vec![("/vmlinuz", 200), ("/initrd.gz", 200)]);
    let kernel_len = std::fs::metadata(&assets.kernel).expect("the kernel").len();
    assert_eq!(requests[1].bytes, kernel_len);
    assert_eq!(requests[2].bytes, initrd_len);
    assert!(requests[1..].iter().all(|r| r.peer != lab.bridge_ip()));
    eprintln!(
        "netboot: kernel fetched {:.1} s after QEMU started, phone-home {:.1} s after",
        (requests[1].at - run.started).as_secs_f64(),
        (phone_home.at - run.started).as_secs_f64()
    );
}

#[test]
fn a_script_that_exits_ends_at_no_bootable_device() {
    let mut lab = NetbootLab::start();
    let runtime = runtime();
    let files = lab.serve_files(0, Vec::new());
    let seen = start_boot_server(&mut lab, &runtime, files, false);

    let run = lab.boot_qemu_until(MAC, BOOT_TIMEOUT, |serial| {
        serial.contains(NO_BOOTABLE_DEVICE)
    });
    eprintln!(
        "netboot: QEMU stopped after {:.1} s ({:?})",
        run.elapsed.as_secs_f64(),
        run.end
    );

    assert_eq!(run.end, QemuEnd::UntilHeld, "{run}");
    assert!(
        run.serial.contains("nothing to boot here"),
        "iPXE ran the script: {run}"
    );
    assert_eq!(seen.lock().unwrap().gets, vec!["/boot.ipxe".to_string()]);
    assert!(lab.file_requests().is_empty());
}
