//! Server-rendered HTML over the same projection as [`crate::api`]: the fleet table (`/`),
//! one machine with its inventory and timeline (`/machines/{reference}`), and `/events`,
//! the server-sent events that keep both pages live without polling or reloading.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metal_core::query::{MachineDetail, MachineRow, MachineState, TimelineEntry};
use metal_core::{subjects, Shutdown};
use metal_projection::read::LastEvent;
use metal_projection::{LiveProjection, ProjectionError};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::api::{self, ApiError, MachineFilter, MachinesPage, TimelinePage};

/// Newest timeline entries a machine page shows; the JSON API pages further back.
pub const PAGE_TIMELINE_ENTRIES: usize = 100;
/// Most `/events` streams open at once; more get a 503 rather than a share of memory.
pub const MAX_LIVE_CLIENTS: usize = 256;
/// Least time between two messages to one client: a burst of batches becomes one refresh.
pub const LIVE_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Longest query string the fleet page reads; the API's own bounds apply after it.
const MAX_QUERY_BYTES: usize = 8 * 1024;

#[derive(Clone)]
struct Pages {
    live: LiveProjection,
    shutdown: Shutdown,
    clients: Arc<Semaphore>,
}

/// The HTML routes and `/events`; `shutdown` ends every open event stream so a graceful
/// shutdown does not wait on them.
pub fn router(live: LiveProjection, shutdown: Shutdown) -> Router {
    let state = Pages {
        live,
        shutdown,
        clients: Arc::new(Semaphore::new(MAX_LIVE_CLIENTS)),
    };
    Router::new()
        .route("/", get(fleet))
        .route("/machines/{reference}", get(machine))
        .route("/events", get(events))
        .with_state(state)
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn opt(value: &Option<String>) -> String {
    value.as_deref().map(escape).unwrap_or_else(|| "–".into())
}

/// How long ago `then` was, in one short unit ("42s", "5m", "3h", "12d").
pub fn age(now: OffsetDateTime, then: OffsetDateTime) -> String {
    let seconds = (now - then).whole_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A step's length between two entries ("0.4s", "12s", "3m 5s").
fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1}s")
    } else if seconds < 120.0 {
        format!("{seconds:.0}s")
    } else {
        let whole = seconds as u64;
        format!("{}m {}s", whole / 60, whole % 60)
    }
}

/// Each value once, in first-seen order: a two-socket machine lists its model once.
fn distinct(values: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for value in values {
        if !out.contains(&value.as_str()) {
            out.push(value);
        }
    }
    out
}

fn timestamp(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

fn mib(total: u64) -> String {
    if total >= 1024 && total.is_multiple_of(1024) {
        format!("{} GiB", total / 1024)
    } else {
        format!("{total} MiB")
    }
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0 auto;padding:.5rem;max-width:80rem;line-height:1.35}
h1{font-size:1.2rem;margin:.3rem 0}h2{font-size:1.05rem;margin:1rem 0 .3rem}
a{color:#0645ad}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.9rem}
th,td{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
td{white-space:nowrap}td.wrap{white-space:normal;min-width:16rem}
tr.fail td{background:#fde8e8}.fail .reason{color:#a00;font-weight:600}
form{display:flex;flex-wrap:wrap;gap:.4rem;align-items:end;margin:.5rem 0}
label{display:flex;flex-direction:column;font-size:.8rem}
input,select,button{font-size:.95rem;max-width:14rem}
code{font-size:.85rem;word-break:break-all}
#live-status{font-size:.8rem;color:#666}
.muted{color:#666}
";

/// On a pushed `applied` event newer than the page, fetches this same page once and swaps
/// its `#live` part in: no polling, no reload, one renderer.
const SCRIPT: &str = r#"
(function(){
  var status=document.getElementById('live-status');
  if(!window.EventSource||!window.fetch||!window.DOMParser){return;}
  var seen=Number(document.body.getAttribute('data-sequence')||0),busy=false,again=false;
  function refresh(){
    if(busy){again=true;return;}
    busy=true;
    fetch(location.href,{headers:{'Accept':'text/html'}})
      .then(function(r){return r.ok?r.text():null;})
      .then(function(text){
        if(!text){return;}
        var fresh=new DOMParser().parseFromString(text,'text/html').getElementById('live');
        var old=document.getElementById('live');
        if(fresh&&old){old.replaceWith(fresh);}
      })
      .catch(function(){})
      .then(function(){busy=false;if(again){again=false;refresh();}});
  }
  var source=new EventSource('/events');
  source.onopen=function(){if(status){status.textContent='live';}};
  source.onerror=function(){if(status){status.textContent='reconnecting…';}};
  source.addEventListener('applied',function(e){
    var s;try{s=JSON.parse(e.data).last_sequence;}catch(_){return;}
    if(typeof s==='number'&&s>seen){seen=s;refresh();}
  });
})();
"#;

fn document(title: &str, last_sequence: u64, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body data-sequence=\"{last_sequence}\">\
         <p><a href=\"/\">fleet</a> · <a href=\"/api/v1/openapi.json\">API</a> · \
         <span id=\"live-status\">static</span></p>\n{body}\n<script>{SCRIPT}</script></body></html>\n",
        title = escape(title),
    )
}

/// An error as a page with the API's status and message (internal causes are logged only).
fn error_page(error: ApiError) -> Response {
    let status = match &error {
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Internal(cause) => {
            tracing::error!(%cause, "page failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let body = format!(
        "<h1>{}</h1><p>{}</p>",
        status.as_u16(),
        escape(&error.to_string())
    );
    (status, Html(document("error", 0, &body))).into_response()
}

fn internal(error: impl std::error::Error + 'static) -> ApiError {
    ApiError::Internal(metal_core::error_chain(&error))
}

/// The query without empty fields: a plain GET form sends `state=` for "any state", which
/// the API would rightly refuse.
fn non_empty_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "query: at most {MAX_QUERY_BYTES} bytes"
        )));
    }
    Ok(url::form_urlencoded::parse(raw.as_bytes())
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect())
}

fn encode<'a>(pairs: impl IntoIterator<Item = &'a (String, String)>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// A fleet row with what the page adds to the API's: the profile of its provisioning and
/// the machine's newest timeline entry.
struct FleetRow {
    row: MachineRow,
    profile: Option<String>,
    last_event: Option<LastEvent>,
}

/// An event type without the `machine.` every type starts with.
fn short_type(event_type: &str) -> &str {
    event_type.strip_prefix("machine.").unwrap_or(event_type)
}

async fn fleet(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> Response {
    match fleet_page(&pages, raw.as_deref()).await {
        Ok(html) => Html(html).into_response(),
        Err(error) => error_page(error),
    }
}

async fn fleet_page(pages: &Pages, raw: Option<&str>) -> Result<String, ApiError> {
    let pairs = non_empty_pairs(raw)?;
    let cleaned = encode(&pairs);
    let filter = MachineFilter::parse(Some(&cleaned))?;
    let (page, rows) = pages
        .live
        .with(move |p| {
            let page = api::machines_page(p, &filter)?;
            let ids: Vec<_> = page.machines.iter().map(|row| row.machine_id).collect();
            let mut last = p.last_events(&ids)?;
            let rows = page
                .machines
                .iter()
                .map(|row| {
                    Ok(FleetRow {
                        row: row.clone(),
                        profile: p
                            .provisioning(row.machine_id)?
                            .map(|x| x.profile.to_string()),
                        last_event: last.remove(&row.machine_id),
                    })
                })
                .collect::<Result<Vec<_>, ProjectionError>>()?;
            Ok::<_, ProjectionError>((page, rows))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(render_fleet(
        &pairs,
        &page,
        &rows,
        OffsetDateTime::now_utc(),
    ))
}

fn render_fleet(
    pairs: &[(String, String)],
    page: &MachinesPage,
    rows: &[FleetRow],
    now: OffsetDateTime,
) -> String {
    let given: HashMap<&str, Vec<&str>> = pairs.iter().fold(HashMap::new(), |mut map, (n, v)| {
        map.entry(n.as_str()).or_default().push(v.as_str());
        map
    });
    let first = |name: &str| {
        given
            .get(name)
            .and_then(|values| values.first().copied())
            .unwrap_or("")
    };
    let mut body = String::new();
    body.push_str("<h1>Fleet</h1>\n<form method=\"get\" action=\"/\">");
    body.push_str("<label>state<select name=\"state\"><option value=\"\">any</option>");
    for state in MachineState::ALL {
        let selected = if first("state") == state.as_str() {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option{selected}>{}</option>",
            escape(state.as_str())
        );
    }
    body.push_str("</select></label>");
    let _ = write!(
        body,
        "<label>profile<input name=\"profile\" value=\"{}\" size=\"8\"></label>",
        escape(first("profile"))
    );
    // One input per tag filter given, and one more to add a filter.
    let tags = given.get("tag").cloned().unwrap_or_default();
    for tag in tags.iter().chain(std::iter::once(&"")) {
        let _ = write!(
            body,
            "<label>tag<input name=\"tag\" value=\"{}\" placeholder=\"key=value\" size=\"10\"></label>",
            escape(tag)
        );
    }
    let _ = write!(
        body,
        "<label>search<input name=\"q\" value=\"{}\" placeholder=\"model, serial, MAC\" size=\"14\"></label>",
        escape(first("q"))
    );
    if !first("limit").is_empty() {
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"limit\" value=\"{}\">",
            escape(first("limit"))
        );
    }
    body.push_str("<button>filter</button> <a href=\"/\">clear</a></form>\n");

    body.push_str("<div id=\"live\">");
    let _ = write!(
        body,
        "<p class=\"muted\">{} machine(s) on this page · stream sequence {}</p>",
        page.machines.len(),
        page.last_sequence
    );
    body.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>machine</th><th>state</th>\
         <th>profile</th><th>BMC MAC</th><th>BMC IP</th><th>CPU / memory / NICs</th>\
         <th>last event</th></tr></thead><tbody>",
    );
    for FleetRow {
        row,
        profile,
        last_event,
    } in rows
    {
        let id = row.machine_id.to_string();
        let name = row
            .system_model
            .clone()
            .unwrap_or_else(|| row.bmc_mac.to_string());
        let reason = row
            .state_reason
            .as_deref()
            .map(|r| format!(" title=\"{}\"", escape(r)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr id=\"m-{id}\"><td><a href=\"/machines/{id}\">{name}</a></td>\
             <td{reason}>{state}</td><td>{profile}</td><td><code>{mac}</code></td>\
             <td>{ip}</td><td>{cpus} CPU · {memory} · {nics} NIC</td>\
             {last}</tr>",
            id = escape(&id),
            name = escape(&name),
            state = escape(row.state.as_str()),
            profile = opt(profile),
            mac = escape(&row.bmc_mac.to_string()),
            ip = opt(&row.bmc_ip),
            cpus = row.cpu_count,
            memory = mib(row.memory_mib),
            nics = row.host_nic_count,
            last = match last_event {
                Some(last) => format!(
                    "<td class=\"last\" title=\"{} at {}\">{} · {} ago</td>",
                    escape(&last.event_type),
                    escape(&timestamp(last.time)),
                    escape(short_type(&last.event_type)),
                    age(now, last.time),
                ),
                None => "<td class=\"last\">–</td>".to_string(),
            },
        );
    }
    body.push_str("</tbody></table></div>");
    if let Some(cursor) = &page.next_cursor {
        let mut next: Vec<(String, String)> = pairs
            .iter()
            .filter(|(name, _)| name != "cursor")
            .cloned()
            .collect();
        next.push(("cursor".to_string(), cursor.clone()));
        let _ = write!(
            body,
            "<p><a rel=\"next\" href=\"/?{}\">next page</a></p>",
            escape(&encode(&next))
        );
    }
    body.push_str("</div>");
    document("Fleet", page.last_sequence, &body)
}

async fn machine(
    State(pages): State<Pages>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match machine_page(&pages, path).await {
        Ok(html) => Html(html).into_response(),
        Err(error) => error_page(error),
    }
}

async fn machine_page(
    pages: &Pages,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(reference) =
        path.map_err(|rejection| ApiError::BadRequest(format!("reference: {rejection}")))?;
    if reference.chars().count() > 256 {
        return Err(ApiError::BadRequest(
            "reference: at most 256 characters".to_string(),
        ));
    }
    let shown = reference.clone();
    let read = pages
        .live
        .with(move |p| {
            let Some(detail) = p.machine(&reference)? else {
                return Ok(None);
            };
            let history = p.history(&detail.machine.machine_id.to_string())?;
            Ok(Some((detail, history, p.last_sequence()?)))
        })
        .await
        .map_err(internal)?
        .map_err(|error| match error {
            ProjectionError::BadReference(_) => ApiError::BadRequest(format!(
                "reference: {:?} is neither a machine id nor a MAC address",
                shown.chars().take(64).collect::<String>()
            )),
            other => internal(other),
        })?;
    let Some((detail, history, last_sequence)) = read else {
        return Err(ApiError::NotFound(format!(
            "no machine matches {:?}",
            shown.chars().take(64).collect::<String>()
        )));
    };
    let events = history.map(|h| h.events).unwrap_or_default();
    // The API's own paging scrubs credentials out of every summary.
    let timeline = api::timeline_page(
        detail.machine.machine_id,
        events,
        PAGE_TIMELINE_ENTRIES,
        None,
        last_sequence,
    );
    Ok(render_machine(
        &detail,
        &timeline,
        OffsetDateTime::now_utc(),
    ))
}

/// The Redfish endpoint as scheme, host and port only: a URL written with credentials
/// never reaches a page.
fn redfish_host(url: &Option<String>) -> String {
    let Some(parsed) = url.as_deref().and_then(|u| url::Url::parse(u).ok()) else {
        return "–".to_string();
    };
    let host = parsed.host_str().unwrap_or("");
    match parsed.port() {
        Some(port) => escape(&format!("{}://{host}:{port}", parsed.scheme())),
        None => escape(&format!("{}://{host}", parsed.scheme())),
    }
}

/// Failure-like events: shown highlighted with their summary as the reason.
fn is_failure(event_type: &str) -> bool {
    [".failed", ".rejected", ".invalid", ".lost", ".refused"]
        .iter()
        .any(|suffix| event_type.ends_with(suffix))
}

fn render_machine(detail: &MachineDetail, timeline: &TimelinePage, now: OffsetDateTime) -> String {
    let m = &detail.machine;
    let title = m
        .system_model
        .clone()
        .unwrap_or_else(|| m.bmc_mac.to_string());
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1><div id=\"live\">", escape(&title));
    body.push_str("<div class=\"scroll\"><table>");
    let mut fact = |name: &str, value: String| {
        let _ = write!(
            body,
            "<tr><th>{name}</th><td class=\"wrap\">{value}</td></tr>"
        );
    };
    fact("machine id", format!("<code>{}</code>", m.machine_id));
    let state = match &m.state_reason {
        Some(reason) => format!("{} — {}", escape(m.state.as_str()), escape(reason)),
        None => escape(m.state.as_str()),
    };
    fact("state", state);
    fact(
        "BMC MAC",
        format!("<code>{}</code>", escape(&m.bmc_mac.to_string())),
    );
    fact("BMC IP", opt(&m.bmc_ip));
    fact("Redfish", redfish_host(&m.redfish_url));
    fact(
        "CPU / memory / NICs",
        format!(
            "{} CPU · {} · {} host NIC",
            m.cpu_count,
            mib(m.memory_mib),
            m.host_nic_count
        ),
    );
    fact(
        "changed",
        format!(
            "{} ({} ago)",
            escape(&timestamp(m.updated_at)),
            age(now, m.updated_at)
        ),
    );
    fact("created", escape(&timestamp(m.created_at)));
    if let Some(spec) = &detail.expected_spec {
        fact("expected spec", escape(spec));
    }
    if let Some(validation) = &detail.validation {
        fact(
            "validation",
            format!(
                "{} against {} ({} rule(s) broken)",
                if validation.valid { "valid" } else { "invalid" },
                escape(&validation.spec),
                validation.failures.len()
            ),
        );
    }
    let health = &detail.bmc_health;
    let bmc = if health.lost {
        "lost".to_string()
    } else if let Some(since) = health.failing_since {
        format!("failing since {}", escape(&timestamp(since)))
    } else if let Some(seen) = health.last_seen {
        format!("answering (last {} ago)", age(now, seen))
    } else {
        "–".to_string()
    };
    fact("BMC health", bmc);
    body.push_str("</table></div>");

    body.push_str("<h2>Inventory</h2>");
    match &detail.summary {
        None => body.push_str("<p class=\"muted\">no inventory yet</p>"),
        Some(summary) => {
            for system in &summary.systems {
                body.push_str("<div class=\"scroll\"><table>");
                let mut row = |name: &str, value: String| {
                    let _ = write!(
                        body,
                        "<tr><th>{name}</th><td class=\"wrap\">{value}</td></tr>"
                    );
                };
                row("system", escape(&system.id));
                row(
                    "model",
                    format!("{} {}", opt(&system.manufacturer), opt(&system.model)),
                );
                row("serial", opt(&system.serial));
                row("BIOS", opt(&system.bios_version));
                row(
                    "CPU",
                    format!(
                        "{} × {} ({} cores)",
                        system.processors.count,
                        escape(&distinct(&system.processors.models).join(", ")),
                        system.processors.total_cores
                    ),
                );
                row(
                    "memory",
                    format!(
                        "{} in {} DIMM(s)",
                        mib(system.memory.total_mib),
                        system.memory.dimm_count
                    ),
                );
                let drives: Vec<String> = system
                    .drives
                    .iter()
                    .map(|d| {
                        let size = d
                            .capacity_bytes
                            .map(|b| format!("{} GB", b / 1_000_000_000))
                            .unwrap_or_else(|| "?".to_string());
                        format!("{} {} ({})", opt(&d.model), escape(&size), opt(&d.serial))
                    })
                    .collect();
                row(
                    "drives",
                    if drives.is_empty() {
                        "–".to_string()
                    } else {
                        drives.join("<br>")
                    },
                );
                let nics: Vec<String> = system
                    .host_nic_macs
                    .iter()
                    .map(|mac| format!("<code>{}</code>", escape(&mac.to_string())))
                    .collect();
                row("host NICs", nics.join(" "));
                body.push_str("</table></div>");
            }
            let _ = write!(
                body,
                "<p class=\"muted\">{} firmware item(s); the whole inventory is at \
                 <a href=\"/api/v1/machines/{id}\">/api/v1/machines/{id}</a></p>",
                summary.firmware_count,
                id = m.machine_id
            );
        }
    }

    body.push_str("<h2>Tags</h2>");
    if detail.tags.is_empty() {
        body.push_str("<p class=\"muted\">none</p>");
    } else {
        body.push_str("<p>");
        for (key, value) in &detail.tags {
            let _ = write!(body, "<code>{}={}</code> ", escape(key), escape(value));
        }
        body.push_str("</p>");
    }

    body.push_str("<h2>Provisioning</h2>");
    match &detail.provisioning {
        None => body.push_str("<p class=\"muted\">never provisioned</p>"),
        Some(p) => {
            // The cmdline is the template as stored: boot-api alone renders the token.
            let _ = write!(
                body,
                "<div class=\"scroll\"><table><tr><th>profile</th><td>{}</td></tr>\
                 <tr><th>purpose</th><td>{}</td></tr><tr><th>assigned</th><td>{}</td></tr>\
                 <tr><th>kernel</th><td class=\"wrap\"><code>{}</code></td></tr>\
                 <tr><th>initrd</th><td class=\"wrap\"><code>{}</code></td></tr>\
                 <tr><th>cmdline template</th><td class=\"wrap\"><code>{}</code></td></tr>\
                 </table></div>",
                escape(&p.profile),
                p.purpose.as_str(),
                escape(&timestamp(p.assigned_at)),
                escape(&p.kernel),
                escape(&p.initrd.join(" ")),
                escape(&p.cmdline),
            );
        }
    }

    render_timeline(&mut body, timeline, now);
    body.push_str("</div>");
    document(&title, timeline.last_sequence, &body)
}

/// Who asked for a request, as its summary says: the projection records a request's
/// `requested_by` only in the summary line (" requested by X", or a trailing " by X" for
/// tags and specs), not in a column of its own.
fn requester<'a>(event_type: &str, summary: &'a str) -> Option<&'a str> {
    if subjects::responder(event_type) != Some("metal-cli") {
        return None;
    }
    let who = if event_type.ends_with(".requested") {
        let (_, who) = summary.split_once(" requested by ")?;
        if event_type == subjects::PROVISION_REQUESTED {
            who.rsplit_once(" (").map_or(who, |(who, _)| who)
        } else {
            who
        }
    } else {
        summary.rsplit_once(" by ")?.1
    };
    Some(who.trim()).filter(|who| !who.is_empty())
}

/// Who an entry came from: the requester of a request when its summary names one,
/// otherwise the service that publishes that type.
fn author(entry: &TimelineEntry) -> &str {
    requester(&entry.event_type, &entry.summary)
        .or_else(|| subjects::responder(&entry.event_type))
        .unwrap_or("?")
}

/// Newest first; each entry's step is the time since the previous entry of its
/// correlation, "by" is who published it (or who asked, for a request), and "request"
/// names the event that opened that correlation and who asked for it.
fn render_timeline(body: &mut String, timeline: &TimelinePage, now: OffsetDateTime) {
    let _ = write!(
        body,
        "<h2>Timeline</h2><p class=\"muted\">newest {} entries · stream sequence {}{}</p>",
        timeline.events.len(),
        timeline.last_sequence,
        if timeline.next_cursor.is_some() {
            " · older ones through the JSON API"
        } else {
            ""
        }
    );
    let mut previous: HashMap<uuid::Uuid, &TimelineEntry> = HashMap::new();
    let mut opened: HashMap<uuid::Uuid, &TimelineEntry> = HashMap::new();
    let mut rows = Vec::with_capacity(timeline.events.len());
    for entry in &timeline.events {
        let step = previous
            .get(&entry.correlation_id)
            .map(|before| duration((entry.time - before.time).as_seconds_f64().max(0.0)))
            .unwrap_or_default();
        let opener = *opened.entry(entry.correlation_id).or_insert(entry);
        // A correlation a service opened itself (a lost BMC) was asked for by nobody.
        let asked = if subjects::responder(&opener.event_type) == Some("metal-cli") {
            "asked by"
        } else {
            "from"
        };
        let request = format!(
            "{} · {asked} {}",
            short_type(&opener.event_type),
            author(opener)
        );
        previous.insert(entry.correlation_id, entry);
        let failed = is_failure(&entry.event_type);
        let summary = if failed {
            format!("<span class=\"reason\">{}</span>", escape(&entry.summary))
        } else {
            escape(&entry.summary)
        };
        rows.push(format!(
            "<tr id=\"e-{seq}\"{class}><td title=\"{time}\">{age} ago</td><td>{step}</td>\
             <td>{event_type}</td><td class=\"by\">{by}</td><td class=\"wrap\">{summary}</td>\
             <td>{request}</td><td>{seq}</td></tr>",
            seq = entry.sequence,
            class = if failed { " class=\"fail\"" } else { "" },
            time = escape(&timestamp(entry.time)),
            age = age(now, entry.time),
            event_type = escape(&entry.event_type),
            by = escape(author(entry)),
            request = escape(&request),
        ));
    }
    body.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>when</th><th>step</th><th>event</th>\
         <th>by</th><th>summary / reason</th><th>request</th><th>seq</th></tr></thead><tbody>",
    );
    for row in rows.iter().rev() {
        body.push_str(row);
    }
    body.push_str("</tbody></table></div>");
}

/// `applied` events carrying `{"last_sequence": N}`: the current sequence at once, then one
/// per change. The watch keeps only the newest value, so a slow client is never buffered
/// for: it skips straight to the latest sequence when it reads again.
async fn events(State(pages): State<Pages>) -> Response {
    let Ok(permit) = Arc::clone(&pages.clients).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many live clients",
        )
            .into_response();
    };
    let applied = pages.live.subscribe();
    let shutdown = pages.shutdown.clone();
    let stream = futures::stream::unfold(
        (applied, permit, true),
        move |(mut applied, permit, first)| {
            let stop = shutdown.wait();
            async move {
                if !first {
                    let next = async {
                        tokio::time::sleep(LIVE_MIN_INTERVAL).await;
                        applied.changed().await
                    };
                    tokio::select! {
                        changed = next => changed.ok()?,
                        () = stop => return None,
                    }
                }
                let sequence = *applied.borrow_and_update();
                let event = Event::default()
                    .event("applied")
                    .data(format!("{{\"last_sequence\":{sequence}}}"));
                Some((Ok::<_, Infallible>(event), (applied, permit, false)))
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
