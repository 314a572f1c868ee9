//! The HTTP API: Pixiecore's `GET /v1/boot/{mac}`, the same decision as an iPXE script
//! (`GET /v1/ipxe/{mac}`, chained from `GET /boot.ipxe`), and the installer's phone-home
//! (`POST /v1/machines/{id}/installed|failed`), and the wipe's phone-home before a
//! retirement (`POST /v1/machines/{id}/wiped`). Boot answers are pure reads of the index;
//! only phone-home publishes and waits.
//!
//! Pixiecore's repeated `GET /v1/boot/{mac}` (the hot path of a boot storm) clones no
//! state, and renders its answer once per NIC and provisioning: the JSON is kept in the
//! index's slot of the NIC ([`crate::index::NicSlot`]) under this router's id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metal_core::envelope::Envelope;
use metal_core::events::{
    BootPath, InstallCompleted, InstallFailed, InstallRejected, Purpose, WipeCompleted,
};
use metal_core::ids::{derived_event_id, METAL_NAMESPACE};
use metal_core::profiles::{render_cmdline, CmdlineValues};
use metal_core::{subjects, Mac, MachineId};
use metal_projection::BootTarget;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::index::{BootDecision, Lookup};
use crate::AppState;

/// Largest phone-home body read.
const PHONE_HOME_BODY_BYTES: usize = 16 * 1024;

/// How long a phone-home waits for this replica's projection to show its event, so the
/// next boot request already gets a 404.
const APPLIED_WAIT: Duration = Duration::from_secs(5);

/// The body of a 200 answer to Pixiecore (`pixiecore/booters.go`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootSpec {
    pub kernel: String,
    pub initrd: Vec<String>,
    pub cmdline: String,
    pub message: String,
}

/// What the routes share: the state, and an id no other router has, under which answers
/// rendered with this state's key and public URL are kept in the index.
#[derive(Debug)]
struct Shared {
    app: AppState,
    renderer: u64,
}

type SharedState = State<Arc<Shared>>;

pub fn router(state: AppState) -> Router {
    static RENDERERS: AtomicU64 = AtomicU64::new(1);
    let shared = Arc::new(Shared {
        app: state,
        renderer: RENDERERS.fetch_add(1, Ordering::Relaxed),
    });
    Router::new()
        .route("/v1/boot/{mac}", get(pixiecore))
        .route("/v1/ipxe/{mac}", get(ipxe))
        .route("/boot.ipxe", get(chain))
        .route("/v1/machines/{id}/installed", post(installed))
        .route("/v1/machines/{id}/failed", post(failed))
        .route("/v1/machines/{id}/wiped", post(wiped))
        .route("/healthz", get(healthz))
        .with_state(shared)
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn not_found(reason: &'static str) -> Response {
    (StatusCode::NOT_FOUND, reason).into_response()
}

/// The decision for a path's MAC (raw or percent-encoded, any case), recorded as an event,
/// with the answer slot of a machine's NIC. A path that is not UTF-8 or not a MAC is `Err`.
fn decide(
    state: &AppState,
    text: Result<Path<String>, PathRejection>,
    path: BootPath,
) -> Result<(Mac, Lookup), ()> {
    let Ok(Path(text)) = text else {
        return Err(());
    };
    let Ok(mac) = Mac::parse_device(&text) else {
        tracing::debug!(mac = %text.escape_debug(), "boot request for a malformed MAC");
        return Err(());
    };
    let lookup = state.index.lookup(&mac);
    state.events.record(mac, path, &lookup);
    let outcome = match &lookup.decision {
        BootDecision::Serve(_) => "served",
        BootDecision::Ignore(_) => "ignored",
        BootDecision::Unknown { .. } => "unknown",
    };
    let path = match path {
        BootPath::Pixiecore => "pixiecore",
        BootPath::Ipxe => "ipxe",
    };
    metrics::counter!(metal_core::metrics::BOOT_REQUESTS, "path" => path, "outcome" => outcome)
        .increment(1);
    Ok((mac, lookup))
}

/// The boot spec of an armed machine for its NIC `mac`, with this provisioning's token.
fn spec(state: &AppState, target: &BootTarget, mac: Mac) -> Option<BootSpec> {
    let provisioning = target.provisioning.as_ref()?;
    let token = state
        .key
        .token(target.machine_id, provisioning.provision_id);
    let phone_home_url = phone_home_url(&state.public_url, target.machine_id, provisioning.purpose);
    let cmdline = render_cmdline(
        &provisioning.cmdline,
        &CmdlineValues {
            machine_id: target.machine_id,
            bmc_mac: target.bmc_mac,
            mac,
            profile: &provisioning.profile,
            token: &token,
            phone_home_url: &phone_home_url,
        },
    );
    Some(BootSpec {
        kernel: provisioning.kernel.to_string(),
        initrd: provisioning.initrd.to_vec(),
        cmdline,
        message: format!(
            "metal: {} profile {} on machine {}",
            match provisioning.purpose {
                Purpose::Install => "installing",
                Purpose::Wipe => "wiping with",
            },
            provisioning.profile,
            target.machine_id
        ),
    })
}

/// Where the netbooted system phones home: `/installed` for an install, `/wiped` for the
/// wipe before a retirement.
pub fn phone_home_url(public_url: &str, machine_id: MachineId, purpose: Purpose) -> String {
    let outcome = match purpose {
        Purpose::Install => "installed",
        Purpose::Wipe => "wiped",
    };
    format!("{public_url}/v1/machines/{machine_id}/{outcome}")
}

/// Pixiecore's `GET /v1/boot/<mac>`: 200 with a boot spec for an armed machine, else 404.
async fn pixiecore(
    State(shared): SharedState,
    text: Result<Path<String>, PathRejection>,
) -> Response {
    let state = &shared.app;
    let Ok((mac, lookup)) = decide(state, text, BootPath::Pixiecore) else {
        return not_found("malformed MAC\n");
    };
    match &lookup.decision {
        BootDecision::Serve(target) => {
            // What `Json(spec)` answers (serialising four strings cannot fail). The kept
            // copy is exactly as long as the answer: the serialiser's buffer grows by
            // doubling, and every kept answer would carry its unused capacity.
            let render = || {
                let spec = spec(state, target, mac)?;
                let json = serde_json::to_vec(&spec).ok()?;
                Some(Bytes::from(json.into_boxed_slice()))
            };
            let json = match &lookup.nic {
                Some(slot) => slot.get_or_render(shared.renderer, render),
                None => render(),
            };
            match json {
                Some(json) => (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    json,
                )
                    .into_response(),
                None => not_found("machine is not armed\n"),
            }
        }
        BootDecision::Ignore(_) => not_found("machine is not armed for provisioning\n"),
        BootDecision::Unknown { .. } => not_found("unknown MAC\n"),
    }
}

fn ipxe_script(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// An iPXE script that leaves netbooting, so the firmware tries its next boot device.
fn ipxe_exit(why: &str) -> Response {
    ipxe_script(format!("#!ipxe\necho metal: {why}, not netbooting\nexit\n"))
}

/// `GET /v1/ipxe/<mac>`: the same decision as Pixiecore gets, as an iPXE script.
async fn ipxe(State(shared): SharedState, text: Result<Path<String>, PathRejection>) -> Response {
    let state = &shared.app;
    let Ok((mac, lookup)) = decide(state, text, BootPath::Ipxe) else {
        return ipxe_exit("malformed MAC");
    };
    match lookup.decision {
        BootDecision::Serve(target) => match spec(state, &target, mac) {
            Some(spec) => {
                let mut script = format!("#!ipxe\necho {}\nkernel {}", spec.message, spec.kernel);
                if !spec.cmdline.is_empty() {
                    script.push(' ');
                    script.push_str(&spec.cmdline);
                }
                script.push('\n');
                for url in &spec.initrd {
                    script.push_str(&format!("initrd {url}\n"));
                }
                script.push_str("boot\n");
                ipxe_script(script)
            }
            None => ipxe_exit("machine is not armed"),
        },
        BootDecision::Ignore(target) => ipxe_exit(&format!(
            "machine {} is {}",
            target.machine_id,
            target.state.as_str()
        )),
        BootDecision::Unknown { .. } => ipxe_exit("unknown MAC"),
    }
}

/// `GET /boot.ipxe`: what a site's DHCP hands iPXE; chains to this machine's own script.
async fn chain(State(shared): SharedState) -> Response {
    ipxe_script(format!(
        "#!ipxe\nchain {}/v1/ipxe/${{net0/mac:hexhyp}} || exit\n",
        shared.app.public_url
    ))
}

/// What a phone-home says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `/installed`: the install is done (never for a wipe).
    Installed,
    /// `/failed`: the install or the wipe failed.
    Failed,
    /// `/wiped`: the wipe before a retirement is done (only for a wipe).
    Wiped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Installed => "installed",
            Outcome::Failed => "failed",
            Outcome::Wiped => "wiped",
        }
    }
}

/// Whether a phone-home for `target` with `token` is the current provisioning's: armed,
/// the token of its provisioning, and an outcome that fits its purpose (`/installed` for
/// an install, `/wiped` for a wipe, `/failed` for either). The reason otherwise.
pub fn check_phone_home(
    key: &crate::TokenKey,
    machine_id: MachineId,
    target: Option<&BootTarget>,
    token: Option<&str>,
    outcome: Outcome,
) -> Result<(), String> {
    let Some(target) = target else {
        return Err("no such machine".to_string());
    };
    let Some(token) = token else {
        return Err("no token (Authorization: Bearer or {\"token\": ...})".to_string());
    };
    let provisioning = match (&target.provisioning, target.state.is_armed()) {
        (Some(p), true) => p,
        _ => {
            return Err(format!(
                "machine is {}, not being provisioned",
                target.state.as_str()
            ))
        }
    };
    if !key.verify(machine_id, provisioning.provision_id, token) {
        return Err("token does not match the current provisioning".to_string());
    }
    match (outcome, provisioning.purpose) {
        (Outcome::Installed, Purpose::Wipe) => {
            Err("machine is wiping before its retirement, not installing: the wipe phones home to /wiped".to_string())
        }
        (Outcome::Wiped, Purpose::Install) => Err(format!(
            "machine is {}, not wiping: an installer phones home to /installed",
            target.state.as_str()
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize)]
struct PhoneHomeBody {
    token: Option<String>,
    reason: Option<String>,
}

async fn installed(
    State(shared): SharedState,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    phone_home(shared.app.clone(), &id, Outcome::Installed, request).await
}

async fn failed(State(shared): SharedState, Path(id): Path<String>, request: Request) -> Response {
    phone_home(shared.app.clone(), &id, Outcome::Failed, request).await
}

async fn wiped(State(shared): SharedState, Path(id): Path<String>, request: Request) -> Response {
    phone_home(shared.app.clone(), &id, Outcome::Wiped, request).await
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// One line, bounded, for an event.
fn clean(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

async fn phone_home(state: AppState, id: &str, outcome: Outcome, request: Request) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, PHONE_HOME_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "phone-home body too large\n").into_response()
        }
    };
    let parsed: PhoneHomeBody = if body.iter().all(u8::is_ascii_whitespace) {
        PhoneHomeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(parsed) => parsed,
            Err(error) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!(
                    "phone-home body is not JSON {{\"token\": ..., \"reason\": ...}}: {error}\n"
                ),
                )
                    .into_response()
            }
        }
    };
    let token = bearer(&parts.headers).or(parsed.token);
    let Ok(uuid) = Uuid::parse_str(id.trim()) else {
        return not_found("no such machine\n");
    };
    let machine_id = MachineId(uuid);
    let target = state.index.machine(&machine_id);
    let check = check_phone_home(
        &state.key,
        machine_id,
        target.as_deref(),
        token.as_deref(),
        outcome,
    );
    let outcome_name = outcome.as_str();
    let (target, provisioning) = match (check, target) {
        (Ok(()), Some(target)) => match target.provisioning.clone() {
            Some(p) => (target, p),
            None => return (StatusCode::UNAUTHORIZED, "not being provisioned\n").into_response(),
        },
        (Err(reason), target) => {
            metrics::counter!(metal_core::metrics::PHONE_HOMES, "outcome" => "rejected")
                .increment(1);
            reject(
                &state,
                machine_id,
                target.as_deref(),
                outcome_name,
                &reason,
                remote,
            )
            .await;
            return (StatusCode::UNAUTHORIZED, format!("{reason}\n")).into_response();
        }
        (Ok(()), None) => return not_found("no such machine\n"),
    };
    let provision_id = provisioning.provision_id;
    let (event_type, data) = match outcome {
        Outcome::Installed => (
            subjects::INSTALL_COMPLETED,
            serde_json::to_value(InstallCompleted {
                provision_id,
                profile: provisioning.profile.to_string(),
            }),
        ),
        Outcome::Wiped => {
            // The power-off needs the BMC's address, which the index does not keep.
            let reference = machine_id.to_string();
            let detail = state
                .live
                .with(move |projection| projection.machine(&reference))
                .await;
            let detail = match detail {
                Ok(read) => read.map_err(|error| metal_core::error_chain(&error)),
                Err(error) => Err(metal_core::error_chain(&error)),
            };
            let redfish_url = match detail {
                Ok(detail) => detail.and_then(|d| d.machine.redfish_url),
                Err(error) => {
                    tracing::warn!(%machine_id, %error, "cannot read the machine for its wipe");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot read the machine now; try again\n",
                    )
                        .into_response();
                }
            };
            (
                subjects::WIPE_COMPLETED,
                serde_json::to_value(WipeCompleted {
                    provision_id,
                    profile: provisioning.profile.to_string(),
                    redfish_url,
                }),
            )
        }
        Outcome::Failed => (
            subjects::INSTALL_FAILED,
            serde_json::to_value(InstallFailed {
                provision_id,
                profile: provisioning.profile.to_string(),
                reason: parsed
                    .reason
                    .as_deref()
                    .map(|r| format!("installer reported: {}", clean(r, 512)))
                    .unwrap_or_else(|| "installer reported failure".to_string()),
            }),
        ),
    };
    let Ok(data) = data else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode event\n").into_response();
    };
    let event = Envelope {
        event_id: derived_event_id(provision_id, event_type),
        event_type: event_type.to_string(),
        machine_id: Some(machine_id),
        bmc_mac: Some(target.bmc_mac),
        time: OffsetDateTime::now_utc(),
        correlation_id: provision_id,
        causation_id: Some(provision_id),
        data,
    };
    let Some(js) = &state.js else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no event log\n").into_response();
    };
    let ack = match metal_core::jetstream::publish_event(js, &event).await {
        Ok(ack) => ack,
        Err(error) => {
            tracing::warn!(%machine_id, error = %metal_core::error_chain(&error), "phone-home not recorded");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the phone-home now; try again\n",
            )
                .into_response();
        }
    };
    let mut applied = state.live.subscribe();
    let caught_up = tokio::time::timeout(
        APPLIED_WAIT,
        applied.wait_for(|sequence| *sequence >= ack.sequence),
    )
    .await;
    if caught_up.is_err() {
        tracing::warn!(%machine_id, sequence = ack.sequence, "phone-home recorded; projection has not caught up yet");
    }
    tracing::info!(%machine_id, outcome = outcome_name, profile = %provisioning.profile, "phone-home");
    metrics::counter!(metal_core::metrics::PHONE_HOMES, "outcome" => outcome_name).increment(1);
    Json(serde_json::json!({
        "machine_id": machine_id,
        "provision_id": provision_id,
        "recorded": event_type,
    }))
    .into_response()
}

/// `machine.install.rejected` for a machine boot-api knows, at most one per machine,
/// outcome and reason per window (the id is derived from them), published before
/// answering. Phone-homes naming no known machine are only logged: their ids are the
/// caller's to choose, and each would be a new event.
async fn reject(
    state: &AppState,
    machine_id: MachineId,
    target: Option<&BootTarget>,
    outcome: &str,
    reason: &str,
    remote: Option<String>,
) {
    tracing::warn!(%machine_id, outcome, reason, "phone-home rejected");
    let (Some(js), Some(target)) = (&state.js, target) else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    let window = (now.unix_timestamp().max(0) as u64) / state.event_window.as_secs().max(1);
    let event_id = Uuid::new_v5(
        &METAL_NAMESPACE,
        format!("phone-home-rejected:{machine_id}:{outcome}:{reason}:{window}").as_bytes(),
    );
    let data = InstallRejected {
        outcome: outcome.to_string(),
        reason: reason.to_string(),
        remote,
    };
    let Ok(data) = serde_json::to_value(data) else {
        return;
    };
    let event = Envelope {
        event_id,
        event_type: subjects::INSTALL_REJECTED.to_string(),
        machine_id: Some(target.machine_id),
        bmc_mac: Some(target.bmc_mac),
        time: now,
        correlation_id: event_id,
        causation_id: None,
        data,
    };
    if let Err(error) = metal_core::jetstream::publish_event(js, &event).await {
        tracing::warn!(error = %metal_core::error_chain(&error), "rejection not recorded");
    }
}
