//! Every parser of outside input as one function of arbitrary bytes: MAC notations,
//! onboarding payloads and stored events (decoded and applied to a projection), Redfish
//! documents (walked and parsed, and read for power control), lease files and the
//! neighbour table, UniFi answers, boot-api's HTTP surface, and profile and spec files.
//!
//! Each function must return for any input, without a panic, in bounded time and memory;
//! where a result can be checked against another (a MAC's text parses back to the same
//! MAC; bad input applied to a projection is recorded, never an error; replay's typed
//! decoding of an inventory agrees with the tree every service decodes), it asserts so.
//! The cargo-fuzz targets in services/fuzz call them; tests/corpus.rs runs the committed
//! corpus (services/fuzz/corpus/<target>/) through them on stable, so every crash a fuzz
//! run found, once added there, stays a test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metal_core::envelope::StreamPosition;
use metal_core::events::HardwareScraped;
use metal_core::jetstream::StoredMessage;
use metal_core::{subjects, Mac};
use serde_json::Value;
use time::OffsetDateTime;

/// A target: its name (the corpus folder and the cargo-fuzz binary) and its function.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("mac", mac),
    ("onboard_request", onboard_request),
    ("event", event),
    ("redfish", redfish),
    ("leases", leases),
    ("unifi", unifi),
    ("boot_api", boot_api),
    ("profiles", profiles),
    ("specs", specs),
];

/// The longest input a target reads; a fuzzer's longer inputs are cut, as services bound
/// what they read.
pub const MAX_INPUT: usize = 64 * 1024;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(MAX_INPUT)]).into_owned()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Any MAC notation: what parses prints as text that parses back to the same MAC, and a
/// device MAC is a MAC.
pub fn mac(data: &[u8]) {
    let text = text(data);
    let any = Mac::parse_any(&text);
    if let Ok(parsed) = &any {
        assert_eq!(Mac::parse_any(&parsed.to_string()).ok(), Some(*parsed));
    }
    if let Ok(device) = Mac::parse_device(&text) {
        assert_eq!(any.ok(), Some(device), "{text:?}");
    }
}

/// An onboarding request as `nats pub` or metal-cli sends it, parsed and decoded as the
/// locator does.
pub fn onboard_request(data: &[u8]) {
    let _ = metal_core::intake::parse_onboard_request(data);
    event_on(subjects::ONBOARD_REQUESTED, data);
}

/// A stored message on any event subject (the first byte picks it): decoded, then applied
/// to a projection, which must record or skip it, never fail.
pub fn event(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let subject = subjects::EVENT_SUBJECTS[pick as usize % subjects::EVENT_SUBJECTS.len()];
    event_on(subject, payload);
}

fn event_on(subject: &str, payload: &[u8]) {
    let published = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let message = StoredMessage {
        sequence: 1,
        subject: subject.to_string(),
        msg_id: None,
        payload: bytes::Bytes::copy_from_slice(payload),
        published,
    };
    let decoded = metal_core::envelope::decode(
        subject,
        None,
        payload,
        StreamPosition {
            stream: subjects::STREAM,
            sequence: 1,
            published,
        },
    );
    // Replay decodes scraped inventories typed, without the tree: where it accepts a
    // message, the tree must decode it to the same header and data.
    if let Some((header, data)) =
        metal_core::envelope::decode_event_as::<HardwareScraped>(subject, payload)
    {
        let metal_core::Decoded::Event(envelope) = decoded else {
            panic!("typed decoding accepted what the tree calls {decoded:?}");
        };
        assert_eq!(
            envelope.data_as::<HardwareScraped>().ok().as_ref(),
            Some(&data)
        );
        let tree_header = metal_core::Envelope {
            data: Value::Null,
            ..envelope
        };
        assert_eq!(tree_header, header);
    }
    let mut projection =
        metal_projection::Projection::open_in_memory().expect("an in-memory projection");
    if let Err(error) = projection.apply(&message) {
        panic!(
            "bad input on {subject} is an error, not a record: {}",
            metal_core::error_chain(&error)
        );
    }
    assert_eq!(projection.last_sequence().ok(), Some(1));
}

/// Redfish documents as a BMC serves them: a JSON object of paths to documents (or one
/// document, served as the service root), walked from the service root and parsed into an
/// inventory; the system document is also read as power control reads it.
pub fn redfish(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(&data[..data.len().min(MAX_INPUT)]) else {
        return;
    };
    let documents: HashMap<String, Value> = match value {
        Value::Object(map) if !map.is_empty() && map.keys().all(|k| k.starts_with('/')) => map
            .into_iter()
            .map(|(path, doc)| (redfish_scraper::source::normalise_path(&path), doc))
            .collect(),
        other => HashMap::from([("/redfish/v1".to_string(), other)]),
    };
    let source = Documents(documents);
    let limits = redfish_scraper::walk::WalkLimits {
        max_resources: 300,
        concurrency: 4,
        use_expand: true,
    };
    let _ = runtime().block_on(redfish_scraper::walk::walk(&source, limits));
    for doc in source.0.values() {
        let _ = redfish_scraper::power::boot_override(doc);
        let _ = redfish_scraper::power::power_state(doc);
        let _ = redfish_scraper::power::reset_action(doc, "/redfish/v1/Systems/1");
        let _ = redfish_scraper::power::action_info_reset_types(doc);
    }
    let _ = redfish_scraper::power::systems_path(source.0.get("/redfish/v1"));
}

/// A BMC whose every document is in memory.
struct Documents(HashMap<String, Value>);

impl redfish_scraper::RedfishSource for Documents {
    async fn get(&self, path: &str) -> Result<Option<Value>, redfish_scraper::RedfishError> {
        Ok(self
            .0
            .get(&redfish_scraper::source::normalise_path(path))
            .cloned())
    }
}

/// A lease file of each format, and the neighbour table.
pub fn leases(data: &[u8]) {
    use locator::sources::leases;
    let text = text(data);
    let _ = leases::parse_dnsmasq(&text);
    let _ = leases::parse_isc_dhcpd(&text);
    let _ = leases::parse_kea(&text);
    let _ = locator::sources::neighbour::parse_proc_net_arp(&text);
}

/// A UniFi controller's answer to each call, of each API flavour, and its headers.
pub fn unifi(data: &[u8]) {
    use locator::sources::unifi::api;
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let (status, body) = match data.split_first() {
        Some((&pick, body)) => ([200, 401, 403, 429, 500][pick as usize % 5], body),
        None => (200, data),
    };
    let reply = api::Reply {
        status,
        content_type: "application/json".to_string(),
        retry_after: None,
        body: body[..body.len().min(MAX_INPUT)].to_vec(),
    };
    let _ = api::legacy_list(&reply, "default", now);
    let _ = api::integration_clients(&reply, "default", now);
    let _ = api::integration_sites(&reply, now);
    let _ = api::login(&reply, "operator", now);
    let header = text(body);
    let _ = api::set_cookie(&header);
    let _ = api::csrf_from_jwt(&header);
    let _ = api::retry_after(Some(&header), now);
}

/// boot-api's HTTP surface as Pixiecore, iPXE and installers reach it: the first byte picks
/// the method, the first line is the path, the rest the body. A server error is a bug.
pub fn boot_api(data: &[u8]) {
    use tower::ServiceExt;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let method = if pick % 2 == 0 { "GET" } else { "POST" };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(request) = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    let (state, queue) = boot_state();
    let status = runtime().block_on(async {
        let response = boot_api::router(state.clone()).oneshot(request).await;
        match response {
            Ok(response) => response.status(),
            Err(never) => match never {},
        }
    });
    // What the requests recorded is dropped, so the queue never fills.
    if let Ok(mut queue) = queue.lock() {
        while queue.try_recv().is_ok() {}
    }
    assert!(
        !status.is_server_error() || status == axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "{method} {path:?} answered {status}"
    );
}

type BootQueue = Mutex<tokio::sync::mpsc::Receiver<boot_api::boot_events::QueuedEvent>>;

/// boot-api's state over an empty projection, made once.
fn boot_state() -> &'static (boot_api::AppState, BootQueue) {
    static STATE: OnceLock<(boot_api::AppState, BootQueue)> = OnceLock::new();
    STATE.get_or_init(|| {
        let projection =
            metal_projection::Projection::open_in_memory().expect("an in-memory projection");
        let (live, index) = boot_api::indexed(projection, Vec::new()).expect("an empty index");
        let (events, queue) = boot_api::BootEvents::new(Duration::from_secs(300));
        let key =
            boot_api::TokenKey::new("FUZZ_KEY", b"a fuzzing key of thirty-two bytes".to_vec())
                .expect("a token key");
        let state = boot_api::AppState {
            live,
            index,
            events: std::sync::Arc::new(events),
            key,
            public_url: "http://boot.test:8081".to_string(),
            event_window: Duration::from_secs(300),
            js: None,
        };
        (state, Mutex::new(queue))
    })
}

/// A boot profiles file.
pub fn profiles(data: &[u8]) {
    let _ = metal_core::profiles::Profiles::parse(&text(data), Path::new("fuzz.toml"));
}

/// A hardware specs file.
pub fn specs(data: &[u8]) {
    let _ = metal_core::specs::Specs::parse(&text(data), Path::new("fuzz.toml"));
}
