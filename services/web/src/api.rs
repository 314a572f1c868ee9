//! The read-only JSON routes under `/api/v1` and their OpenAPI 3.1 document ([`ApiDoc`]),
//! answering from a [`LiveProjection`]; pure enough to test with `oneshot`.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metal_core::events::Purpose;
use metal_core::profiles::{Profile, Profiles, Selectors};
use metal_core::query::{MachineDetail, MachineRow, MachineState, TimelineEntry, UnknownMac};
use metal_core::MachineId;
use metal_projection::{LiveProjection, Projection, ProjectionError};
use serde::Serialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Where every route lives.
pub const PREFIX: &str = "/api/v1";
/// Machines per page unless `limit` says otherwise, and the most a page holds.
pub const MACHINES_DEFAULT_LIMIT: usize = 50;
pub const MACHINES_MAX_LIMIT: usize = 500;
/// Timeline entries per page unless `limit` says otherwise, and the most a page holds.
pub const TIMELINE_DEFAULT_LIMIT: usize = 100;
pub const TIMELINE_MAX_LIMIT: usize = 1000;
/// Unknown MACs per answer unless `limit` says otherwise, and the most an answer holds.
pub const UNKNOWN_DEFAULT_LIMIT: usize = 100;
pub const UNKNOWN_MAX_LIMIT: usize = 1000;
/// Most boot profiles `GET /profiles` lists: the file is the operator's, so its size is
/// not ours to trust.
pub const PROFILES_MAX: usize = 1000;
/// Longest `GET /status` waits for NATS to say the stream's last sequence.
pub const STREAM_INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest text search and tag filter accepted: longer ones cannot match anything useful
/// and only cost work.
const MAX_FILTER_CHARS: usize = 256;
/// Most `tag` filters in one request.
const MAX_TAG_FILTERS: usize = 16;

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the parameter when a parameter is at fault.
    pub error: String,
}

/// Why a request failed; each becomes a status and an [`ErrorBody`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Logged with its cause; the answer says only that it was internal, so no file path or
    /// SQL reaches a client.
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

fn internal(error: impl std::error::Error + 'static) -> ApiError {
    ApiError::Internal(metal_core::error_chain(&error))
}

/// A page of machines, ordered by machine id.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct MachinesPage {
    pub machines: Vec<MachineRow>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The stream sequence the projection had applied when answering.
    pub last_sequence: u64,
}

/// A page of one machine's timeline, oldest first within the page; pages go back in time.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct TimelinePage {
    #[schema(value_type = String, format = Uuid)]
    pub machine_id: MachineId,
    pub events: Vec<TimelineEntry>,
    /// Pass as `cursor` for the older entries; `null` when there are none.
    pub next_cursor: Option<String>,
    pub last_sequence: u64,
}

/// MACs that asked to netboot and that no machine has now, most recently seen first.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct UnknownMacsPage {
    pub macs: Vec<UnknownMac>,
    /// Unknown MACs in all: more than `macs` holds when the answer was cut at `limit`.
    pub total: u64,
    pub last_sequence: u64,
}

/// How far the projection has followed the stream.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct StatusBody {
    /// The last stream sequence applied.
    pub last_sequence: u64,
    /// Machines known.
    pub machines: u64,
    /// The last sequence in the MACHINES stream; `null` when NATS did not answer in time.
    #[schema(required = true)]
    pub stream_last_sequence: Option<u64>,
    /// Messages in the stream the projection has not applied yet
    /// (`stream_last_sequence - last_sequence`, at least 0); `null` when NATS did not
    /// answer in time.
    #[schema(required = true)]
    pub behind: Option<u64>,
}

/// The boot profiles boot-api arms machines with (its `boot_api.profiles` file), in file
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ProfilesBody {
    pub profiles: Vec<ProfileBody>,
    /// Profiles in the file: more than `profiles` holds when the file has more than 1000.
    pub total: u64,
}

/// One boot profile as written in its file; the cmdline is the template, never rendered
/// (no token).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ProfileBody {
    pub name: String,
    /// Higher wins among the install profiles that match; equal priorities go by file order.
    pub priority: i64,
    /// `install` (chosen by selectors or by name) or `wipe` (netbooted by a retirement
    /// with wipe, never chosen for an install).
    pub purpose: Purpose,
    pub kernel: String,
    pub initrd: Vec<String>,
    /// The cmdline template with its `{placeholders}`.
    pub cmdline: String,
    pub selectors: ProfileSelectors,
    /// The line of the profile's `[[profile]]` table in its file.
    pub line: u64,
}

/// A profile's selectors (`[profile.match]`): only the ones given; all must hold.
/// Patterns are case-insensitive globs (`*` any text, `?` one character).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ProfileSelectors {
    /// `intel`, `amd` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_vendor: Option<String>,
    /// Every present CPU's model matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpus: Option<u64>,
    /// Cores of all present CPUs together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cores: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cores: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_gib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_gib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_host_nics: Option<u64>,
    /// At least one host NIC (or adapter port) this fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_nic_speed_mbps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_drives: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drives: Option<u64>,
    /// The largest drive holds at least this much (decimal GB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_drive_gb: Option<u64>,
    /// At least one drive of this media (`SSD`, `HDD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_media: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_gpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// The system model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Substring of the system model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_model_contains: Option<String>,
    /// Operator tags; each must be set to this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl From<&Selectors> for ProfileSelectors {
    fn from(selectors: &Selectors) -> Self {
        // No `..`: a selector added to the profiles format fails to compile here until it
        // is shown.
        let Selectors {
            cpu_vendor,
            cpu_model,
            min_cpus,
            min_cores,
            max_cores,
            min_memory_mib,
            min_memory_gib,
            max_memory_gib,
            min_host_nics,
            min_nic_speed_mbps,
            min_drives,
            max_drives,
            min_drive_gb,
            drive_media,
            min_gpus,
            max_gpus,
            manufacturer,
            model,
            system_model_contains,
            tags,
        } = selectors.clone();
        ProfileSelectors {
            cpu_vendor: cpu_vendor.map(|vendor| {
                match vendor {
                    metal_core::inventory::CpuVendor::Intel => "intel",
                    metal_core::inventory::CpuVendor::Amd => "amd",
                    metal_core::inventory::CpuVendor::Other => "other",
                }
                .to_string()
            }),
            cpu_model,
            min_cpus,
            min_cores,
            max_cores,
            min_memory_mib,
            min_memory_gib,
            max_memory_gib,
            min_host_nics,
            min_nic_speed_mbps,
            min_drives,
            max_drives,
            min_drive_gb,
            drive_media,
            min_gpus,
            max_gpus,
            manufacturer,
            model,
            system_model_contains,
            tags,
        }
    }
}

impl From<&Profile> for ProfileBody {
    fn from(profile: &Profile) -> Self {
        ProfileBody {
            name: profile.name.clone(),
            priority: profile.priority,
            purpose: profile.purpose,
            kernel: scrubbed_text_url(&profile.kernel),
            initrd: profile
                .initrd
                .iter()
                .map(|u| scrubbed_text_url(u))
                .collect(),
            cmdline: profile.cmdline.clone(),
            selectors: ProfileSelectors::from(&profile.selectors),
            line: profile.line as u64,
        }
    }
}

/// The answer of `GET /profiles`: at most [`PROFILES_MAX`] of `profiles`, in file order.
pub fn profiles_body(profiles: Option<&Profiles>) -> ProfilesBody {
    let all = profiles.map(Profiles::profiles).unwrap_or_default();
    ProfilesBody {
        profiles: all
            .iter()
            .take(PROFILES_MAX)
            .map(ProfileBody::from)
            .collect(),
        total: all.len() as u64,
    }
}

/// What the routes read: the projection, NATS for the stream's side of `/status` (`None`:
/// not asked, its fields are `null`), and the boot profiles' answer, built once.
#[derive(Clone)]
pub struct ApiState {
    pub live: LiveProjection,
    pub js: Option<async_nats::jetstream::Context>,
    pub profiles: std::sync::Arc<ProfilesBody>,
}

impl ApiState {
    pub fn new(
        live: LiveProjection,
        js: Option<async_nats::jetstream::Context>,
        profiles: Option<&Profiles>,
    ) -> ApiState {
        ApiState {
            live,
            js,
            profiles: std::sync::Arc::new(profiles_body(profiles)),
        }
    }
}

impl FromRef<ApiState> for LiveProjection {
    fn from_ref(state: &ApiState) -> LiveProjection {
        state.live.clone()
    }
}

/// Query parameters of `GET /api/v1/machines` (documentation; parsing is [`MachineFilter::parse`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct MachinesParams {
    /// Only machines in this state.
    state: Option<MachineState>,
    /// Only machines whose current or last provisioning used this profile.
    #[param(max_length = 256)]
    profile: Option<String>,
    /// `key=value`: only machines with this operator tag; `key`: with this tag at any
    /// value. Repeat to require several.
    #[param(max_items = 16, value_type = Option<Vec<TagFilter>>, inline)]
    tag: Option<Vec<String>>,
    /// Case-insensitive text in the system model or a system serial number, or a MAC (any
    /// notation) of the BMC or of any NIC the inventory reports.
    #[param(max_length = 256)]
    q: Option<String>,
    /// Machines per page.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: continue after it.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// One `tag` filter: `key=value` or `key`.
#[derive(Debug, ToSchema)]
#[schema(pattern = "^[^=]")]
#[allow(dead_code)]
struct TagFilter(String);

/// Query parameters of `GET /api/v1/machines/{reference}/timeline`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TimelineParams {
    /// Entries per page: the newest ones before `cursor`.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: entries stored before this sequence.
    #[param(pattern = "^[0-9]{1,19}$")]
    cursor: Option<String>,
}

/// Query parameters of `GET /api/v1/unknown-macs`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct UnknownParams {
    /// Most MACs in the answer, the most recently seen.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
}

/// The OpenAPI 3.1 document of this API; docs/openapi.json is its pretty-printed copy.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "metal read-only API",
        description = "Read-only view of the machines projection of the MACHINES stream: machines, their inventory and timeline, unknown MACs, the boot profiles, and how far the projection has followed the stream. Every answer is bounded by the limits its parameters document."
    ),
    paths(
        list_machines,
        get_machine,
        get_timeline,
        get_unknown_macs,
        get_profiles,
        get_status,
        healthz,
        openapi_json
    ),
    components(schemas(
        ErrorBody,
        MachinesPage,
        TimelinePage,
        UnknownMacsPage,
        ProfilesBody,
        StatusBody
    ))
)]
pub struct ApiDoc;

/// The document as served and checked in: pretty JSON with a trailing newline.
pub fn openapi_json_text() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.push('\n');
    text
}

/// Every route, with a JSON 404 for anything else, without NATS (`/status` has `null` for
/// the stream's side) and without boot profiles (`/profiles` lists none).
pub fn router(live: LiveProjection) -> Router {
    router_with(ApiState::new(live, None, None))
}

/// Every route over `state`, with a JSON 404 for anything else.
pub fn router_with(state: ApiState) -> Router {
    let document = std::sync::Arc::new(openapi_json_text());
    Router::new()
        .route(&format!("{PREFIX}/machines"), get(list_machines))
        .route(
            &format!("{PREFIX}/machines/{{reference}}"),
            get(get_machine),
        )
        .route(
            &format!("{PREFIX}/machines/{{reference}}/timeline"),
            get(get_timeline),
        )
        .route(&format!("{PREFIX}/unknown-macs"), get(get_unknown_macs))
        .route(&format!("{PREFIX}/profiles"), get(get_profiles))
        .route(&format!("{PREFIX}/status"), get(get_status))
        .route(&format!("{PREFIX}/healthz"), get(healthz))
        .route(
            &format!("{PREFIX}/openapi.json"),
            get(move || openapi_json(std::sync::Arc::clone(&document))),
        )
        // Where boot-api has it too, for probes that expect it at the root.
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::NotFound("no such route".to_string()) })
        .with_state(state)
}

/// Query parameters, each given at most once unless `repeatable`; unknown ones are refused
/// so a misspelt filter never silently widens an answer.
fn parameters(
    raw: Option<&str>,
    known: &[&str],
    repeatable: &[&str],
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {} (known: {})",
                quoted(&name),
                known.join(", ")
            )));
        }
        let values = out.entry(name.to_string()).or_default();
        if !values.is_empty() && !repeatable.contains(&name.as_ref()) {
            return Err(ApiError::BadRequest(format!(
                "{name}: given more than once"
            )));
        }
        values.push(value.into_owned());
    }
    Ok(out)
}

fn single<'a>(params: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(|values| values.first())
        .map(String::as_str)
}

fn limit(
    params: &HashMap<String, Vec<String>>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(text) = single(params, "limit") else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "limit: {} is not a whole number from 1 to {max}",
            quoted(text)
        ))),
    }
}

/// Input echoed in an error, cut short so a long one never makes a long answer.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn bounded<'a>(name: &str, text: &'a str) -> Result<&'a str, ApiError> {
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(ApiError::BadRequest(format!(
            "{name}: at most {MAX_FILTER_CHARS} characters"
        )));
    }
    Ok(text)
}

/// The filters of `GET /machines`, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineFilter {
    pub state: Option<MachineState>,
    pub profile: Option<String>,
    /// Key, and the value it must have (`None`: any value).
    pub tags: Vec<(String, Option<String>)>,
    /// Lower-cased text, and the MAC it spells if it is one.
    pub text: Option<(String, Option<metal_core::Mac>)>,
    pub limit: usize,
    pub after: Option<MachineId>,
}

impl MachineFilter {
    /// Parses the raw query string; the error names the parameter at fault.
    pub fn parse(raw: Option<&str>) -> Result<MachineFilter, ApiError> {
        let params = parameters(
            raw,
            &["state", "profile", "tag", "q", "limit", "cursor"],
            &["tag"],
        )?;
        let state = single(&params, "state")
            .map(|text| {
                MachineState::parse(text.trim()).ok_or_else(|| {
                    let known: Vec<&str> = MachineState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::BadRequest(format!(
                        "state: {} is not one of {}",
                        quoted(text),
                        known.join(", ")
                    ))
                })
            })
            .transpose()?;
        let profile = single(&params, "profile")
            .map(|text| bounded("profile", text).map(str::to_string))
            .transpose()?;
        let tag_texts = params.get("tag").map(Vec::as_slice).unwrap_or_default();
        if tag_texts.len() > MAX_TAG_FILTERS {
            return Err(ApiError::BadRequest(format!(
                "tag: at most {MAX_TAG_FILTERS} tag filters"
            )));
        }
        let tags = tag_texts
            .iter()
            .map(|text| {
                let (key, value) = match text.split_once('=') {
                    Some((key, value)) => (key, Some(value.to_string())),
                    None => (text.as_str(), None),
                };
                if key.is_empty() {
                    return Err(ApiError::BadRequest(format!(
                        "tag: {} has no key (key=value or key)",
                        quoted(text)
                    )));
                }
                Ok((key.to_string(), value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = single(&params, "q")
            .map(|text| bounded("q", text))
            .transpose()?
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(|text| (text.to_lowercase(), metal_core::Mac::parse_any(text).ok()));
        let after = single(&params, "cursor")
            .map(|text| {
                uuid::Uuid::parse_str(text.trim())
                    .map(MachineId)
                    .map_err(|_| {
                        ApiError::BadRequest(format!(
                            "cursor: {} is not a cursor this API gave",
                            quoted(text)
                        ))
                    })
            })
            .transpose()?;
        Ok(MachineFilter {
            state,
            profile,
            tags,
            text,
            limit: limit(&params, MACHINES_DEFAULT_LIMIT, MACHINES_MAX_LIMIT)?,
            after,
        })
    }
}

/// One page of machines matching `filter`.
///
/// The filters and the page cut run in SQL ([`Projection::machines_page`]), so the first
/// page of a large fleet reads a page of rows. A text search with non-ASCII characters
/// takes [`machines_page_scan`] instead: SQLite lower-cases ASCII only, and Rust's
/// lower-casing is what `q` has always meant.
pub fn machines_page(
    projection: &Projection,
    filter: &MachineFilter,
) -> Result<MachinesPage, ProjectionError> {
    if filter
        .text
        .as_ref()
        .is_some_and(|(text, _)| !text.is_ascii())
    {
        return machines_page_scan(projection, filter);
    }
    let page = projection.machines_page(&metal_projection::MachinesQuery {
        state: filter.state,
        profile: filter.profile.clone(),
        tags: filter.tags.clone(),
        text: filter.text.clone(),
        after: filter.after,
        limit: filter.limit,
    })?;
    let machines: Vec<MachineRow> = page.machines.into_iter().map(scrubbed).collect();
    let next_cursor = if page.more {
        machines.last().map(|row| row.machine_id.to_string())
    } else {
        None
    };
    Ok(MachinesPage {
        machines,
        next_cursor,
        last_sequence: page.last_sequence,
    })
}

/// [`machines_page`] in Rust over [`Projection::machines`], cheapest test first, stopping
/// once the page is full; the serial and inventory-MAC search reads each candidate's
/// inventory, so over a large fleet this is a scan. Only non-ASCII text searches take it.
fn machines_page_scan(
    projection: &Projection,
    filter: &MachineFilter,
) -> Result<MachinesPage, ProjectionError> {
    let list = projection.machines()?;
    let needs_targets = filter.profile.is_some() || filter.text.is_some();
    let targets: BTreeMap<MachineId, metal_projection::BootTarget> = if needs_targets {
        projection
            .boot_targets(None)?
            .into_iter()
            .map(|target| (target.machine_id, target))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut machines = Vec::new();
    let mut more = false;
    for row in list.machines {
        if filter.after.is_some_and(|after| row.machine_id <= after) {
            continue;
        }
        if filter.state.is_some_and(|state| row.state != state) {
            continue;
        }
        let target = targets.get(&row.machine_id);
        if let Some(profile) = &filter.profile {
            let matches = target
                .and_then(|t| t.provisioning.as_ref())
                .is_some_and(|p| *p.profile == **profile);
            if !matches {
                continue;
            }
        }
        if !filter.tags.is_empty() {
            let tags = projection.tags(row.machine_id)?;
            let matches = filter.tags.iter().all(|(key, value)| match value {
                Some(value) => tags.get(key) == Some(value),
                None => tags.contains_key(key),
            });
            if !matches {
                continue;
            }
        }
        if let Some((text, mac)) = &filter.text {
            if !text_matches(projection, &row, target, text, mac.as_ref())? {
                continue;
            }
        }
        if machines.len() == filter.limit {
            more = true;
            break;
        }
        machines.push(scrubbed(row));
    }
    let next_cursor = if more {
        machines.last().map(|row| row.machine_id.to_string())
    } else {
        None
    };
    Ok(MachinesPage {
        machines,
        next_cursor,
        last_sequence: list.last_sequence,
    })
}

/// Model, BMC MAC and boot MACs first (in hand); serials and the inventory's other MACs
/// only when those miss. A MAC matches when `text` spells it in any notation, or is part
/// of its `aa:bb:cc:dd:ee:ff` form (`52:54:00` finds a vendor's NICs).
fn text_matches(
    projection: &Projection,
    row: &MachineRow,
    target: Option<&metal_projection::BootTarget>,
    text: &str,
    mac: Option<&metal_core::Mac>,
) -> Result<bool, ProjectionError> {
    let contains = |value: &Option<String>| {
        value
            .as_deref()
            .is_some_and(|v| v.to_lowercase().contains(text))
    };
    let mac_matches = |candidate: &metal_core::Mac| {
        mac == Some(candidate) || candidate.to_string().contains(text)
    };
    if contains(&row.system_model)
        || mac_matches(&row.bmc_mac)
        || target.is_some_and(|t| t.macs.iter().any(mac_matches))
    {
        return Ok(true);
    }
    let Some(detail) = projection.machine(&row.machine_id.to_string())? else {
        return Ok(false);
    };
    let Some(inventory) = &detail.inventory else {
        return Ok(false);
    };
    let serial = inventory.systems.iter().any(|s| contains(&s.serial));
    let nics = inventory
        .systems
        .iter()
        .flat_map(|s| &s.ethernet_interfaces)
        .chain(
            inventory
                .managers
                .iter()
                .flat_map(|m| &m.ethernet_interfaces),
        )
        .flat_map(|nic| [nic.mac, nic.permanent_mac])
        .flatten();
    let ports = inventory
        .chassis
        .iter()
        .flat_map(|c| &c.network_adapters)
        .flat_map(|a| &a.ports)
        .flat_map(|p| p.macs.iter().copied());
    Ok(serial || nics.chain(ports).any(|m| mac_matches(&m)))
}

/// A Redfish URL written with credentials (`https://user:pass@host`) keeps them out of
/// every answer.
fn scrub_url(url: &mut Option<String>) {
    let Some(text) = url.as_deref() else {
        return;
    };
    let Ok(mut parsed) = url::Url::parse(text) else {
        return;
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return;
    }
    // Both calls only fail for URLs that cannot have credentials, which this one has.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    *url = Some(parsed.to_string());
}

/// Free text (a timeline summary quotes the Redfish URL) without the credentials of any
/// URL in it.
fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == ')' || c == ',')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => rest = &tail[userinfo_end + 1..],
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

fn scrubbed_text_url(text: &str) -> String {
    let mut url = Some(text.to_string());
    scrub_url(&mut url);
    url.unwrap_or_default()
}

fn scrubbed(mut row: MachineRow) -> MachineRow {
    scrub_url(&mut row.redfish_url);
    row
}

async fn read<T, F>(live: &LiveProjection, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Projection) -> Result<T, ProjectionError> + Send + 'static,
{
    live.with(work)
        .await
        .map_err(internal)?
        .map_err(|error| match error {
            ProjectionError::BadReference(reference) => ApiError::BadRequest(format!(
                "reference: {} is neither a machine id nor a MAC address",
                quoted(&reference)
            )),
            other => internal(other),
        })
}

fn reference(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(reference) =
        path.map_err(|rejection| ApiError::BadRequest(format!("reference: {rejection}")))?;
    bounded("reference", &reference)?;
    Ok(reference)
}

/// Machines, filtered and paged.
#[utoipa::path(
    get,
    path = "/api/v1/machines",
    params(MachinesParams),
    responses(
        (status = 200, description = "A page of machines ordered by machine id", body = MachinesPage),
        (status = 400, description = "A query parameter is not valid; the error names it", body = ErrorBody),
    )
)]
async fn list_machines(
    State(live): State<LiveProjection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MachinesPage>, ApiError> {
    let filter = MachineFilter::parse(raw.as_deref())?;
    let page = read(&live, move |p| machines_page(p, &filter)).await?;
    Ok(Json(page))
}

/// One machine with its inventory, summary, tags, provisioning, validation and BMC health.
#[utoipa::path(
    get,
    path = "/api/v1/machines/{reference}",
    params(("reference" = String, Path, pattern = r"^\s*([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{1,2}(-[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12})\s*$", description = "A machine id, the BMC MAC or a host NIC MAC (any notation)")),
    responses(
        (status = 200, description = "The machine", body = MachineDetail),
        (status = 400, description = "The reference is neither a machine id nor a MAC", body = ErrorBody),
        (status = 404, description = "No machine matches the reference", body = ErrorBody),
    )
)]
async fn get_machine(
    State(live): State<LiveProjection>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MachineDetail>, ApiError> {
    let reference = reference(path)?;
    parameters(raw.as_deref(), &[], &[])?;
    let shown = reference.clone();
    let detail = read(&live, move |p| p.machine(&reference)).await?;
    let mut detail = detail.ok_or_else(|| no_machine(&shown))?;
    detail.machine = scrubbed(detail.machine);
    Ok(Json(detail))
}

fn no_machine(reference: &str) -> ApiError {
    ApiError::NotFound(format!("no machine matches {}", quoted(reference)))
}

/// The machine's timeline: the newest `limit` entries before `cursor`, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/machines/{reference}/timeline",
    params(
        ("reference" = String, Path, pattern = r"^\s*([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{1,2}(-[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12})\s*$", description = "A machine id, the BMC MAC or a host NIC MAC (any notation)"),
        TimelineParams
    ),
    responses(
        (status = 200, description = "A page of the machine's timeline", body = TimelinePage),
        (status = 400, description = "The reference or a query parameter is not valid; the error names it", body = ErrorBody),
        (status = 404, description = "No machine matches the reference", body = ErrorBody),
    )
)]
async fn get_timeline(
    State(live): State<LiveProjection>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TimelinePage>, ApiError> {
    let reference = reference(path)?;
    let params = parameters(raw.as_deref(), &["limit", "cursor"], &[])?;
    let limit = limit(&params, TIMELINE_DEFAULT_LIMIT, TIMELINE_MAX_LIMIT)?;
    let before = single(&params, "cursor")
        .map(|text| {
            text.trim().parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "cursor: {} is not a cursor this API gave",
                    quoted(text)
                ))
            })
        })
        .transpose()?;
    let shown = reference.clone();
    let read_back = read(&live, move |p| {
        Ok(p.history(&reference)?
            .map(|history| (history, p.last_sequence())))
    })
    .await?;
    let Some((history, last_sequence)) = read_back else {
        return Err(no_machine(&shown));
    };
    let last_sequence = last_sequence.map_err(internal)?;
    Ok(Json(timeline_page(
        history.machine_id,
        history.events,
        limit,
        before,
        last_sequence,
    )))
}

/// The newest `limit` of `events` (in stream order) stored before `before`.
pub fn timeline_page(
    machine_id: MachineId,
    mut events: Vec<TimelineEntry>,
    limit: usize,
    before: Option<u64>,
    last_sequence: u64,
) -> TimelinePage {
    if let Some(before) = before {
        events.retain(|entry| entry.sequence < before);
    }
    let start = events.len().saturating_sub(limit);
    let events: Vec<TimelineEntry> = events.split_off(start);
    let next_cursor = if start > 0 {
        events.first().map(|entry| entry.sequence.to_string())
    } else {
        None
    };
    let events = events
        .into_iter()
        .map(|entry| TimelineEntry {
            summary: scrub_text(&entry.summary),
            ..entry
        })
        .collect();
    TimelinePage {
        machine_id,
        events,
        next_cursor,
        last_sequence,
    }
}

/// MACs that asked to netboot and that no machine has now.
#[utoipa::path(
    get,
    path = "/api/v1/unknown-macs",
    params(UnknownParams),
    responses(
        (status = 200, description = "Unknown MACs, most recently seen first", body = UnknownMacsPage),
        (status = 400, description = "A query parameter is not valid; the error names it", body = ErrorBody),
    )
)]
async fn get_unknown_macs(
    State(live): State<LiveProjection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UnknownMacsPage>, ApiError> {
    let params = parameters(raw.as_deref(), &["limit"], &[])?;
    let limit = limit(&params, UNKNOWN_DEFAULT_LIMIT, UNKNOWN_MAX_LIMIT)?;
    let unknown = read(&live, |p| p.unknown_macs()).await?;
    let total = unknown.macs.len() as u64;
    let mut macs = unknown.macs;
    macs.truncate(limit);
    Ok(Json(UnknownMacsPage {
        macs,
        total,
        last_sequence: unknown.last_sequence,
    }))
}

/// The boot profiles boot-api arms machines with, in file order.
#[utoipa::path(
    get,
    path = "/api/v1/profiles",
    responses(
        (status = 200, description = "The boot profiles (at most 1000), cmdlines as templates", body = ProfilesBody),
        (status = 400, description = "A query parameter was given; there are none", body = ErrorBody),
    )
)]
async fn get_profiles(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ProfilesBody>, ApiError> {
    parameters(raw.as_deref(), &[], &[])?;
    Ok(Json(ProfilesBody::clone(&state.profiles)))
}

/// How far the projection has followed the stream, and how far the stream is.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    responses(
        (status = 200, description = "The projection's last applied sequence and machine count, and the stream's last sequence (null when NATS does not answer)", body = StatusBody),
        (status = 400, description = "A query parameter was given; there are none", body = ErrorBody),
    )
)]
async fn get_status(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<StatusBody>, ApiError> {
    parameters(raw.as_deref(), &[], &[])?;
    let status = read(&state.live, |p| p.status()).await?;
    let stream_last_sequence = match &state.js {
        Some(js) => stream_last_sequence(js).await,
        None => None,
    };
    // `status.database` is a file path: not for clients.
    Ok(Json(StatusBody {
        last_sequence: status.last_sequence,
        machines: status.machines,
        stream_last_sequence,
        behind: stream_last_sequence.map(|last| last.saturating_sub(status.last_sequence)),
    }))
}

/// The MACHINES stream's last sequence, or `None` (logged) when NATS does not say within
/// [`STREAM_INFO_TIMEOUT`].
async fn stream_last_sequence(js: &async_nats::jetstream::Context) -> Option<u64> {
    // `get_stream` asks for the stream's info: one round trip.
    let asked = async {
        js.get_stream(metal_core::subjects::STREAM)
            .await
            .map(|stream| stream.cached_info().state.last_sequence)
            .map_err(|e| metal_core::error_chain(&e))
    };
    match tokio::time::timeout(STREAM_INFO_TIMEOUT, asked).await {
        Ok(Ok(last)) => Some(last),
        Ok(Err(cause)) => {
            tracing::warn!(%cause, "cannot read the stream's last sequence");
            None
        }
        Err(_) => {
            tracing::warn!(timeout = ?STREAM_INFO_TIMEOUT, "NATS did not say the stream's last sequence in time");
            None
        }
    }
}

/// Liveness: `ok` while the process serves.
#[utoipa::path(
    get,
    path = "/api/v1/healthz",
    responses((status = 200, description = "Serving", body = String, content_type = "text/plain"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
async fn openapi_json(document: std::sync::Arc<String>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document.as_str().to_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod scrub_tests {
    use super::*;

    #[test]
    fn credentials_leave_urls_and_text() {
        let mut url = Some("https://admin:hunter2@10.0.0.9:8443/redfish".to_string());
        scrub_url(&mut url);
        assert_eq!(url.as_deref(), Some("https://10.0.0.9:8443/redfish"));
        let mut plain = Some("https://10.0.0.9".to_string());
        scrub_url(&mut plain);
        assert_eq!(plain.as_deref(), Some("https://10.0.0.9"));
        assert_eq!(
            scrub_text("BMC at 10.0.0.9 (https://admin:p@ss@10.0.0.9) via static, http://h/x@y"),
            "BMC at 10.0.0.9 (https://10.0.0.9) via static, http://h/x@y"
        );
        assert_eq!(scrub_text("no url: a@b"), "no url: a@b");
    }
}

#[cfg(test)]
mod machines_page_tests {
    use super::*;
    use metal_projection::fixtures::{inventory, onboarding};

    fn projection() -> Projection {
        let mut messages = onboarding(
            1,
            "aa:bb:cc:00:00:01",
            inventory("SÜPERSERVER X1", "Intel Xeon", &["52:54:00:00:00:01"]),
        );
        messages.extend(onboarding(
            4,
            "aa:bb:cc:00:00:02",
            inventory("R640", "Intel Xeon", &["52:54:00:00:00:02"]),
        ));
        let mut projection = Projection::open_in_memory().unwrap();
        projection.apply_batch(&messages).unwrap();
        projection
    }

    fn models(projection: &Projection, raw: &str) -> Vec<Option<String>> {
        let filter = MachineFilter::parse(Some(raw)).unwrap();
        machines_page(projection, &filter)
            .unwrap()
            .machines
            .into_iter()
            .map(|row| row.system_model)
            .collect()
    }

    /// SQLite lower-cases ASCII only: a non-ASCII search takes the Rust path and still
    /// finds upper-case text; ASCII searches (SQL) ignore case too.
    #[test]
    fn text_search_ignores_case_in_sql_and_beyond_ascii() {
        let projection = projection();
        let found = vec![Some("SÜPERSERVER X1".to_string())];
        assert_eq!(models(&projection, "q=s%C3%BCperserver"), found);
        assert_eq!(models(&projection, "q=x1"), found);
        assert_eq!(
            models(&projection, "q=sn-r640"),
            vec![Some("R640".to_string())]
        );
        assert!(models(&projection, "q=%C3%BC%C3%BC").is_empty());
    }
}
