//! Expected hardware specs: what an operator ordered, as a TOML file of named specs and
//! [[map]] rules, and the check of a scraped inventory against one. Pure; the format is in
//! docs/hardware-specs.md.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::inventory::{Inventory, SystemInventory};
use crate::profiles::{glob, line_of, toml_message};

/// The drive media a `[[spec.drives]]` entry may ask for (Redfish `MediaType`).
pub const DRIVE_MEDIA: &[&str] = &["SSD", "HDD", "SMR"];

#[derive(Debug, thiserror::Error)]
pub enum SpecsError {
    #[error("cannot read hardware specs file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// toml's message names the line and column.
    #[error("hardware specs file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("hardware specs file {path}, line {line}: {problem}")]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("hardware specs file {path}: no [[spec]] defined")]
    Empty { path: PathBuf },
}

/// One rule an inventory breaks: `rule` is a stable short name (`cpu_count`,
/// `firmware:BMC*`, ...), `wanted` and `found` are for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFailure {
    pub rule: String,
    pub wanted: String,
    pub found: String,
}

impl fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: wanted {}, found {}",
            self.rule, self.wanted, self.found
        )
    }
}

/// One spec: every rule is optional, at least one is given. Checked in this field order.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    /// The line of the spec's `[[spec]]` table in its file.
    pub line: usize,
    /// Glob every system's manufacturer matches.
    pub manufacturer: Option<String>,
    /// Glob every system's model matches.
    pub model: Option<String>,
    /// Glob every present CPU's model matches.
    pub cpu_model: Option<String>,
    /// Present CPUs, exactly.
    pub cpu_count: Option<u64>,
    /// Cores of all present CPUs together, exactly.
    pub cores: Option<u64>,
    /// Cores of all present CPUs together, at least.
    pub min_cores: Option<u64>,
    /// Installed memory in GiB, exactly after rounding to the nearest GiB.
    pub memory_gib: Option<u64>,
    /// Installed memory in GiB, at least (after the same rounding).
    pub min_memory_gib: Option<u64>,
    /// Installed DIMMs, exactly.
    pub dimm_count: Option<u64>,
    /// Every installed DIMM's size in GiB (rounded to the nearest GiB).
    pub dimm_gib: Option<u64>,
    pub drives: Vec<DriveRule>,
    pub nics: Vec<NicRule>,
    pub gpus: Option<GpuRule>,
    /// Minimum firmware versions, in file order.
    pub firmware: Vec<FirmwareRule>,
}

/// At least `count` drives of this media (when given) and at least `min_gb` (when given).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveRule {
    /// `SSD`, `HDD` or `SMR` (upper-cased when loaded); matched case-insensitively.
    pub media: Option<String>,
    /// Decimal gigabytes (10^9 bytes), as drives are sold.
    pub min_gb: Option<u64>,
    pub count: u64,
    #[serde(skip)]
    pub line: usize,
}

/// At least `count` host NIC ports at least this fast (when given).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicRule {
    pub min_speed_mbps: Option<u64>,
    pub count: u64,
    #[serde(skip)]
    pub line: usize,
}

/// At least `count` GPUs whose model (or name) matches `model` (when given).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRule {
    pub model: Option<String>,
    pub count: u64,
    #[serde(skip)]
    pub line: usize,
}

/// Every firmware component whose id or name matches `component` (a glob) is at least
/// `min_version`; no such component at all is a failure too.
#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareRule {
    pub component: String,
    pub min_version: String,
    pub line: usize,
}

/// A `[[map]]` rule: a machine whose every system matches the given globs gets `spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecMap {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub spec: String,
    pub line: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecsFile {
    #[serde(default)]
    spec: Vec<Spanned<RawSpec>>,
    #[serde(default)]
    map: Vec<Spanned<RawMap>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    manufacturer: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    cpu_model: Option<Spanned<String>>,
    cpu_count: Option<u64>,
    cores: Option<u64>,
    min_cores: Option<u64>,
    memory_gib: Option<u64>,
    min_memory_gib: Option<u64>,
    dimm_count: Option<u64>,
    dimm_gib: Option<u64>,
    #[serde(default)]
    drives: Vec<Spanned<DriveRule>>,
    #[serde(default)]
    nics: Vec<Spanned<NicRule>>,
    gpus: Option<Spanned<GpuRule>>,
    #[serde(default)]
    firmware: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    manufacturer: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    spec: String,
}

/// The validated specs and map rules, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Specs {
    specs: Vec<Spec>,
    maps: Vec<SpecMap>,
}

impl Specs {
    /// Reads and validates a specs file; errors name the file, the line and the problem.
    pub fn load(path: &Path) -> Result<Specs, SpecsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Specs::parse(&text, path)
    }

    /// Parses and validates specs text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Specs, SpecsError> {
        let file: SpecsFile = toml::from_str(text).map_err(|error| SpecsError::Parse {
            path: path.to_path_buf(),
            message: toml_message(&error),
        })?;
        if file.spec.is_empty() {
            return Err(SpecsError::Empty {
                path: path.to_path_buf(),
            });
        }
        let invalid = |line: usize, problem: String| SpecsError::Invalid {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut specs = Vec::with_capacity(file.spec.len());
        for spanned in file.spec {
            let line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let label = if raw.name.trim().is_empty() {
                "spec".to_string()
            } else {
                format!("spec {:?}", raw.name)
            };
            let spec = build_spec(raw, line, text)
                .map_err(|(line, problem)| invalid(line, format!("{label}: {problem}")))?;
            if let Some(first) = names.insert(spec.name.clone(), line) {
                return Err(invalid(
                    line,
                    format!("{label} is defined twice (first on line {first})"),
                ));
            }
            specs.push(spec);
        }
        let mut maps = Vec::with_capacity(file.map.len());
        for spanned in file.map {
            let line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let map = build_map(raw, line, text, &names)
                .map_err(|(line, problem)| invalid(line, format!("[[map]]: {problem}")))?;
            maps.push(map);
        }
        Ok(Specs { specs, maps })
    }

    pub fn get(&self, name: &str) -> Option<&Spec> {
        self.specs.iter().find(|s| s.name == name)
    }

    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    pub fn maps(&self) -> &[SpecMap] {
        &self.maps
    }

    /// The spec the file's [[map]] rules give this inventory (first matching rule), if any.
    pub fn spec_for(&self, inventory: &Inventory) -> Option<&Spec> {
        self.maps
            .iter()
            .find(|map| map.matches(inventory))
            .and_then(|map| self.get(&map.spec))
    }
}

impl SpecMap {
    /// Every system of the inventory (and there is one) matches each given glob.
    pub fn matches(&self, inventory: &Inventory) -> bool {
        let fits = |pattern: &Option<String>, field: fn(&SystemInventory) -> Option<&String>| {
            pattern.as_deref().is_none_or(|p| {
                all_systems_match(inventory, |s| field(s).is_some_and(|v| glob(p, v.trim())))
            })
        };
        !inventory.systems.is_empty()
            && fits(&self.manufacturer, |s| s.manufacturer.as_ref())
            && fits(&self.model, |s| s.model.as_ref())
    }
}

fn all_systems_match(inventory: &Inventory, check: impl Fn(&SystemInventory) -> bool) -> bool {
    !inventory.systems.is_empty() && inventory.systems.iter().all(check)
}

/// A problem and the line it is on.
type Problem = (usize, String);

/// Globs are case-insensitive with `*` and `?`; anything else is literal, so brackets (which
/// would look like a character class) and empty or control-character patterns are refused.
fn check_glob(field: &str, pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err(format!("{field} is an empty pattern"));
    }
    if pattern.chars().any(char::is_control) {
        return Err(format!("{field} {pattern:?} contains a control character"));
    }
    if pattern.contains(['[', ']']) {
        return Err(format!(
            "{field} {pattern:?}: only '*' and '?' are wildcards; '[' and ']' are not supported"
        ));
    }
    Ok(())
}

fn spanned_glob(
    field: &str,
    value: Option<Spanned<String>>,
    text: &str,
) -> Result<Option<String>, Problem> {
    match value {
        None => Ok(None),
        Some(spanned) => {
            let line = line_of(text, spanned.span().start);
            let pattern = spanned.into_inner();
            check_glob(field, &pattern).map_err(|problem| (line, problem))?;
            Ok(Some(pattern))
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("name is empty".to_string());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("name may only use letters, digits, '-', '_' and '.'".to_string());
    }
    Ok(())
}

fn build_spec(raw: RawSpec, line: usize, text: &str) -> Result<Spec, Problem> {
    let at = |problem: String| (line, problem);
    check_name(&raw.name).map_err(at)?;
    let positive = |field: &str, value: Option<u64>| match value {
        Some(0) => Err(at(format!("{field} must be at least 1"))),
        _ => Ok(()),
    };
    if raw.cores.is_some() && raw.min_cores.is_some() {
        return Err(at("give cores or min_cores, not both".to_string()));
    }
    if raw.memory_gib.is_some() && raw.min_memory_gib.is_some() {
        return Err(at("give memory_gib or min_memory_gib, not both".to_string()));
    }
    positive("memory_gib", raw.memory_gib)?;
    positive("min_memory_gib", raw.min_memory_gib)?;
    positive("dimm_gib", raw.dimm_gib)?;

    let mut drives = Vec::with_capacity(raw.drives.len());
    for spanned in raw.drives {
        let line = line_of(text, spanned.span().start);
        let mut rule = spanned.into_inner();
        rule.line = line;
        if rule.count == 0 {
            return Err((line, "drives: count must be at least 1".to_string()));
        }
        if rule.min_gb == Some(0) {
            return Err((line, "drives: min_gb must be at least 1".to_string()));
        }
        if let Some(media) = &rule.media {
            let upper = media.trim().to_ascii_uppercase();
            if !DRIVE_MEDIA.contains(&upper.as_str()) {
                return Err((
                    line,
                    format!(
                        "drives: media {media:?} is not one of {}",
                        DRIVE_MEDIA.join(", ")
                    ),
                ));
            }
            rule.media = Some(upper);
        }
        drives.push(rule);
    }

    let mut nics = Vec::with_capacity(raw.nics.len());
    for spanned in raw.nics {
        let line = line_of(text, spanned.span().start);
        let mut rule = spanned.into_inner();
        rule.line = line;
        if rule.count == 0 {
            return Err((line, "nics: count must be at least 1".to_string()));
        }
        if rule.min_speed_mbps == Some(0) {
            return Err((line, "nics: min_speed_mbps must be at least 1".to_string()));
        }
        nics.push(rule);
    }

    let gpus = match raw.gpus {
        None => None,
        Some(spanned) => {
            let line = line_of(text, spanned.span().start);
            let mut rule = spanned.into_inner();
            rule.line = line;
            if rule.count == 0 {
                return Err((line, "gpus: count must be at least 1".to_string()));
            }
            if let Some(model) = &rule.model {
                check_glob("gpus.model", model).map_err(|problem| (line, problem))?;
            }
            Some(rule)
        }
    };

    let mut firmware: Vec<FirmwareRule> = raw
        .firmware
        .into_iter()
        .map(|(component, spanned)| FirmwareRule {
            component,
            line: line_of(text, spanned.span().start),
            min_version: spanned.into_inner(),
        })
        .collect();
    // The table comes back sorted by key; the file order is the order of the values.
    firmware.sort_by_key(|rule| rule.line);
    for rule in &firmware {
        check_glob(&format!("firmware {:?}", rule.component), &rule.component)
            .map_err(|problem| (rule.line, problem))?;
        if Version::parse(&rule.min_version).is_none() {
            return Err((
                rule.line,
                format!(
                    "firmware {:?}: minimum version {:?} has no number in it",
                    rule.component, rule.min_version
                ),
            ));
        }
    }

    let spec = Spec {
        manufacturer: spanned_glob("manufacturer", raw.manufacturer, text)?,
        model: spanned_glob("model", raw.model, text)?,
        cpu_model: spanned_glob("cpu_model", raw.cpu_model, text)?,
        name: raw.name,
        line,
        cpu_count: raw.cpu_count,
        cores: raw.cores,
        min_cores: raw.min_cores,
        memory_gib: raw.memory_gib,
        min_memory_gib: raw.min_memory_gib,
        dimm_count: raw.dimm_count,
        dimm_gib: raw.dimm_gib,
        drives,
        nics,
        gpus,
        firmware,
    };
    if spec.has_no_rules() {
        return Err(at("has no rules".to_string()));
    }
    Ok(spec)
}

fn build_map(
    raw: RawMap,
    line: usize,
    text: &str,
    names: &BTreeMap<String, usize>,
) -> Result<SpecMap, Problem> {
    if raw.manufacturer.is_none() && raw.model.is_none() {
        return Err((
            line,
            "give manufacturer or model (or both); `model = \"*\"` matches any model".to_string(),
        ));
    }
    if !names.contains_key(&raw.spec) {
        return Err((line, format!("spec {:?} is not defined", raw.spec)));
    }
    Ok(SpecMap {
        manufacturer: spanned_glob("manufacturer", raw.manufacturer, text)?,
        model: spanned_glob("model", raw.model, text)?,
        spec: raw.spec,
        line,
    })
}

/// A firmware version as compared: the numbers found in its text. The first dotted run of
/// digits (`2.72` in `U46 v2.72 (03/11/2022)`), else the first number (`0x0D` is hex);
/// components compare as integers (`1.10` > `1.9`), missing ones count as 0 (`1.5` = `1.5.0`).
#[derive(Debug, Clone)]
pub struct Version(Vec<u128>);

impl Version {
    /// `None` when the text has no digits: an unknown version.
    pub fn parse(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        let mut first: Option<Vec<u128>> = None;
        let mut i = 0;
        while i < bytes.len() {
            let before_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
            let is_hex = before_ok
                && bytes[i] == b'0'
                && matches!(bytes.get(i + 1), Some(b'x' | b'X'))
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if is_hex {
                let start = i + 2;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
                    end += 1;
                }
                let value = bytes[start..end].iter().fold(0u128, |acc, b| {
                    let digit = (*b as char).to_digit(16).unwrap_or(0) as u128;
                    acc.saturating_mul(16).saturating_add(digit)
                });
                first.get_or_insert_with(|| vec![value]);
                i = end;
                continue;
            }
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let mut components = Vec::new();
            loop {
                let mut value: u128 = 0;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    value = value
                        .saturating_mul(10)
                        .saturating_add(u128::from(bytes[i] - b'0'));
                    i += 1;
                }
                components.push(value);
                if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                    i += 1;
                } else {
                    break;
                }
            }
            if components.len() > 1 {
                return Some(Version(components));
            }
            first.get_or_insert(components);
        }
        first.map(Version)
    }

    pub fn components(&self) -> &[u128] {
        &self.0
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        let len = self.0.len().max(other.0.len());
        (0..len)
            .map(|i| {
                let a = self.0.get(i).copied().unwrap_or(0);
                let b = other.0.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

// ---------------------------------------------------------------------------------------------
// Checking

const GIB: u64 = 1024;
const GB: u64 = 1_000_000_000;

/// MiB rounded to the nearest GiB (halves up).
fn round_gib(mib: u64) -> u64 {
    mib.saturating_add(GIB / 2) / GIB
}

/// MiB as GiB for people: `256`, `383.5`.
fn gib_text(mib: u64) -> String {
    if mib.is_multiple_of(GIB) {
        (mib / GIB).to_string()
    } else {
        let text = format!("{:.2}", mib as f64 / GIB as f64);
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Text from the BMC with control characters escaped, trimmed.
fn printable(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `2 × a, 1 × b`: equal labels counted, in order of first appearance.
fn tally(labels: impl IntoIterator<Item = String>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for label in labels {
        match counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => counts.push((label, 1)),
        }
    }
    counts
        .iter()
        .map(|(label, n)| format!("{n} × {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Distinct values in order of first appearance, joined.
fn distinct(values: impl IntoIterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out.join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

struct DriveFact {
    bytes: Option<u64>,
    media: Option<String>,
}

/// The systems' Storage drives; when there are none, the present SimpleStorage devices.
fn drives_of(inventory: &Inventory) -> Vec<DriveFact> {
    let drives: Vec<DriveFact> = inventory
        .systems
        .iter()
        .flat_map(|s| &s.drives)
        .map(|d| DriveFact {
            bytes: d.capacity_bytes,
            media: d
                .media_type
                .as_deref()
                .map(|m| m.trim().to_ascii_uppercase()),
        })
        .collect();
    if !drives.is_empty() {
        return drives;
    }
    inventory
        .systems
        .iter()
        .flat_map(|s| &s.simple_storage)
        .filter(|d| d.state.as_deref() != Some("Absent"))
        .map(|d| DriveFact {
            bytes: d.capacity_bytes,
            media: None,
        })
        .collect()
}

/// Host NIC ports with their speed. The chassis' NetworkAdapters ports when the BMC lists
/// any (speed: the port's own, else the fastest system interface sharing one of its MACs);
/// otherwise the systems' EthernetInterfaces, one port per distinct MAC (the fastest speed).
fn port_speeds_of(inventory: &Inventory) -> Vec<Option<u64>> {
    let interfaces: Vec<_> = inventory
        .systems
        .iter()
        .flat_map(|s| &s.ethernet_interfaces)
        .collect();
    let adapter_ports: Vec<_> = inventory
        .chassis
        .iter()
        .flat_map(|c| &c.network_adapters)
        .flat_map(|a| &a.ports)
        .collect();
    if !adapter_ports.is_empty() {
        return adapter_ports
            .iter()
            .map(|port| {
                port.speed_mbps.or_else(|| {
                    interfaces
                        .iter()
                        .filter(|nic| nic.mac.is_some_and(|mac| port.macs.contains(&mac)))
                        .filter_map(|nic| nic.speed_mbps)
                        .max()
                })
            })
            .collect();
    }
    let mut ports: Vec<(crate::Mac, Option<u64>)> = Vec::new();
    for nic in interfaces {
        let Some(mac) = nic.mac else { continue };
        match ports.iter_mut().find(|(m, _)| *m == mac) {
            Some((_, speed)) => *speed = (*speed).max(nic.speed_mbps),
            None => ports.push((mac, nic.speed_mbps)),
        }
    }
    ports.into_iter().map(|(_, speed)| speed).collect()
}

struct GpuFact {
    label: String,
    names: Vec<String>,
}

/// GPUs as processors (`ProcessorType` GPU, not absent) and as PCIe devices with a display
/// or accelerator function. A BMC may list a GPU both ways, so each list is read alone.
fn gpus_of(inventory: &Inventory) -> (Vec<GpuFact>, Vec<GpuFact>) {
    let non_empty = |text: &Option<String>| {
        text.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let processors = inventory
        .systems
        .iter()
        .flat_map(|s| &s.processors)
        .filter(|p| p.processor_type.as_deref() == Some("GPU"))
        .filter(|p| p.state.as_deref() != Some("Absent"))
        .map(|p| {
            let model = non_empty(&p.model);
            GpuFact {
                label: printable(model.as_deref().unwrap_or(&p.id)),
                names: model.into_iter().collect(),
            }
        })
        .collect();
    let devices = inventory
        .chassis
        .iter()
        .flat_map(|c| &c.pcie_devices)
        .filter(|d| {
            d.functions.iter().any(|f| {
                matches!(
                    f.device_class.as_deref(),
                    Some("DisplayController") | Some("ProcessingAccelerators")
                )
            })
        })
        .map(|d| {
            let names: Vec<String> = [non_empty(&d.model), non_empty(&d.name)]
                .into_iter()
                .flatten()
                .collect();
            GpuFact {
                label: printable(names.first().map(String::as_str).unwrap_or(&d.id)),
                names,
            }
        })
        .collect();
    (processors, devices)
}

impl Spec {
    fn has_no_rules(&self) -> bool {
        self.manufacturer.is_none()
            && self.model.is_none()
            && self.cpu_model.is_none()
            && self.cpu_count.is_none()
            && self.cores.is_none()
            && self.min_cores.is_none()
            && self.memory_gib.is_none()
            && self.min_memory_gib.is_none()
            && self.dimm_count.is_none()
            && self.dimm_gib.is_none()
            && self.drives.is_empty()
            && self.nics.is_empty()
            && self.gpus.is_none()
            && self.firmware.is_empty()
    }

    /// Every rule of the spec that the inventory breaks, in the spec's rule order; empty = fits.
    pub fn check(&self, inventory: &Inventory) -> Vec<RuleFailure> {
        let mut failures = Vec::new();
        let mut fail = |rule: &str, wanted: String, found: String| {
            failures.push(RuleFailure {
                rule: rule.to_string(),
                wanted,
                found,
            })
        };

        for (rule, pattern, field) in [
            (
                "manufacturer",
                &self.manufacturer,
                (|s| s.manufacturer.as_ref()) as fn(&SystemInventory) -> Option<&String>,
            ),
            ("model", &self.model, |s| s.model.as_ref()),
        ] {
            let Some(pattern) = pattern else { continue };
            let fits = all_systems_match(inventory, |s| {
                field(s).is_some_and(|v| glob(pattern, v.trim()))
            });
            if !fits {
                let found = if inventory.systems.is_empty() {
                    "no system".to_string()
                } else {
                    distinct(inventory.systems.iter().map(|s| {
                        field(s)
                            .map(|v| printable(v))
                            .unwrap_or_else(|| "unknown".to_string())
                    }))
                };
                fail(rule, pattern.clone(), found);
            }
        }

        let cpus: Vec<_> = inventory.systems.iter().flat_map(|s| s.cpus()).collect();
        if let Some(pattern) = &self.cpu_model {
            let fits = !cpus.is_empty()
                && cpus
                    .iter()
                    .all(|p| p.model.as_deref().is_some_and(|m| glob(pattern, m.trim())));
            if !fits {
                let found = if cpus.is_empty() {
                    "no CPUs".to_string()
                } else {
                    distinct(cpus.iter().map(|p| {
                        p.model
                            .as_deref()
                            .map(printable)
                            .unwrap_or_else(|| "unknown".to_string())
                    }))
                };
                fail("cpu_model", pattern.clone(), found);
            }
        }
        let cpu_count = cpus.len() as u64;
        if let Some(want) = self.cpu_count {
            if cpu_count != want {
                fail("cpu_count", want.to_string(), cpu_count.to_string());
            }
        }
        let cores: u64 = cpus.iter().filter_map(|p| p.total_cores).sum();
        if let Some(want) = self.cores {
            if cores != want {
                fail("cores", want.to_string(), cores.to_string());
            }
        }
        if let Some(min) = self.min_cores {
            if cores < min {
                fail("cores", format!("≥ {min}"), cores.to_string());
            }
        }

        let memory_mib = inventory.memory_mib();
        if let Some(want) = self.memory_gib {
            if round_gib(memory_mib) != want {
                fail("memory_gib", want.to_string(), gib_text(memory_mib));
            }
        }
        if let Some(min) = self.min_memory_gib {
            if round_gib(memory_mib) < min {
                fail("memory_gib", format!("≥ {min}"), gib_text(memory_mib));
            }
        }
        let dimms: Vec<_> = inventory
            .systems
            .iter()
            .flat_map(|s| &s.memory)
            .filter(|m| m.is_installed())
            .collect();
        if let Some(want) = self.dimm_count {
            if dimms.len() as u64 != want {
                fail("dimm_count", want.to_string(), dimms.len().to_string());
            }
        }
        if let Some(want) = self.dimm_gib {
            let fits = !dimms.is_empty()
                && dimms
                    .iter()
                    .all(|m| m.capacity_mib.is_some_and(|mib| round_gib(mib) == want));
            if !fits {
                let found = if dimms.is_empty() {
                    "no DIMMs listed".to_string()
                } else {
                    tally(dimms.iter().map(|m| match m.capacity_mib {
                        Some(mib) => format!("{} GiB", gib_text(mib)),
                        None => "unknown size".to_string(),
                    }))
                };
                fail("dimm_gib", format!("{want} GiB each"), found);
            }
        }

        if !self.drives.is_empty() {
            let drives = drives_of(inventory);
            let listing = if drives.is_empty() {
                "no drives listed".to_string()
            } else {
                format!(
                    "drives: {}",
                    tally(drives.iter().map(|d| {
                        let size = match d.bytes {
                            Some(bytes) => format!("{} GB", (bytes.saturating_add(GB / 2)) / GB),
                            None => "unknown size".to_string(),
                        };
                        match &d.media {
                            Some(media) => format!("{size} {}", printable(media)),
                            None => size,
                        }
                    }))
                )
            };
            for rule in &self.drives {
                let min_bytes = rule.min_gb.map(|gb| gb.saturating_mul(GB));
                let have = drives
                    .iter()
                    .filter(|d| {
                        rule.media
                            .as_deref()
                            .is_none_or(|m| d.media.as_deref() == Some(m))
                    })
                    .filter(|d| min_bytes.is_none_or(|min| d.bytes.is_some_and(|b| b >= min)))
                    .count();
                if (have as u64) < rule.count {
                    let what = |n: usize| {
                        let noun = match &rule.media {
                            Some(media) => format!("{n} {media}"),
                            None => plural(n, "drive", "drives"),
                        };
                        match rule.min_gb {
                            Some(gb) => format!("{noun} of ≥ {gb} GB"),
                            None => noun,
                        }
                    };
                    let wanted = format!("≥ {}", what(rule.count as usize));
                    fail("drives", wanted, format!("{} ({listing})", what(have)));
                }
            }
        }

        if !self.nics.is_empty() {
            let speeds = port_speeds_of(inventory);
            let listing = if speeds.is_empty() {
                "no ports listed".to_string()
            } else {
                format!(
                    "ports: {}",
                    tally(speeds.iter().map(|s| match s {
                        Some(mbps) => format!("{mbps} Mb/s"),
                        None => "unknown speed".to_string(),
                    }))
                )
            };
            for rule in &self.nics {
                let have = speeds
                    .iter()
                    .filter(|s| {
                        rule.min_speed_mbps
                            .is_none_or(|min| s.is_some_and(|s| s >= min))
                    })
                    .count();
                if (have as u64) < rule.count {
                    let what = |n: usize| {
                        let noun = plural(n, "port", "ports");
                        match rule.min_speed_mbps {
                            Some(mbps) => format!("{noun} at ≥ {mbps} Mb/s"),
                            None => noun,
                        }
                    };
                    let wanted = format!("≥ {}", what(rule.count as usize));
                    fail("nics", wanted, format!("{} ({listing})", what(have)));
                }
            }
        }

        if let Some(rule) = &self.gpus {
            let (processors, devices) = gpus_of(inventory);
            let matching = |gpus: &[GpuFact]| {
                gpus.iter()
                    .filter(|g| {
                        rule.model
                            .as_deref()
                            .is_none_or(|p| g.names.iter().any(|n| glob(p, n)))
                    })
                    .count()
            };
            let have = matching(&processors).max(matching(&devices));
            if (have as u64) < rule.count {
                let what = |n: usize| {
                    let noun = plural(n, "GPU", "GPUs");
                    match &rule.model {
                        Some(model) => format!("{noun} matching {model}"),
                        None => noun,
                    }
                };
                let listed = if processors.len() >= devices.len() {
                    &processors
                } else {
                    &devices
                };
                let listing = if listed.is_empty() {
                    "no GPUs listed".to_string()
                } else {
                    format!("GPUs: {}", tally(listed.iter().map(|g| g.label.clone())))
                };
                let wanted = format!("≥ {}", what(rule.count as usize));
                fail("gpus", wanted, format!("{} ({listing})", what(have)));
            }
        }

        for rule in &self.firmware {
            let name = format!("firmware:{}", rule.component);
            let wanted = format!("≥ {}", rule.min_version);
            let Some(minimum) = Version::parse(&rule.min_version) else {
                // Validation refuses such a minimum; a spec built by hand cannot be met.
                fail(&name, wanted, "unknown minimum".to_string());
                continue;
            };
            let items: Vec<_> = inventory
                .firmware
                .iter()
                .filter(|item| {
                    glob(&rule.component, &item.id)
                        || item
                            .name
                            .as_deref()
                            .is_some_and(|n| glob(&rule.component, n.trim()))
                })
                .collect();
            if items.is_empty() {
                fail(&name, wanted, "absent".to_string());
                continue;
            }
            let short: Vec<String> = items
                .iter()
                .filter_map(|item| match item.version.as_deref() {
                    None => Some("unknown (no version)".to_string()),
                    Some(raw) => match Version::parse(raw) {
                        None if raw.trim().is_empty() => Some("unknown (empty)".to_string()),
                        None => Some(format!("unknown ({})", printable(raw))),
                        Some(version) if version < minimum => Some(printable(raw)),
                        Some(_) => None,
                    },
                })
                .collect();
            if !short.is_empty() {
                fail(&name, wanted, distinct(short));
            }
        }

        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{
        AdapterPort, ChassisInventory, Drive, FirmwareItem, MemoryModule, NetworkAdapter,
        NetworkInterface, PcieDevice, PcieFunction, Processor, SimpleStorageDevice,
    };
    use crate::Mac;

    const SHIPPED: &str = include_str!("../../../profiles/hardware-specs.toml");

    fn parse(text: &str) -> Result<Specs, String> {
        Specs::parse(text, Path::new("test-specs.toml")).map_err(|e| crate::error_chain(&e))
    }

    fn spec(body: &str) -> Spec {
        let text = format!("[[spec]]\nname = \"s\"\n{body}");
        match parse(&text) {
            Ok(specs) => specs.specs()[0].clone(),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn failure(rule: &str, wanted: &str, found: &str) -> RuleFailure {
        RuleFailure {
            rule: rule.to_string(),
            wanted: wanted.to_string(),
            found: found.to_string(),
        }
    }

    fn mac(n: u8) -> Mac {
        Mac::parse_device(&format!("52:54:00:00:00:{n:02x}")).unwrap()
    }

    /// A Dell R640: 2 × Xeon Gold 6130 (16 cores), 12 × 32 GiB, 2 × 480 GB SSD + 1 × 4 TB HDD,
    /// two 25G and two 1G interfaces, BMC 2.44 and BIOS 1.5.0.
    fn r640() -> Inventory {
        let drive = |i: usize, bytes: u64, media: &str| Drive {
            path: format!("/redfish/v1/Systems/1/Storage/1/Drives/{i}"),
            capacity_bytes: Some(bytes),
            media_type: Some(media.to_string()),
            ..Drive::default()
        };
        Inventory {
            systems: vec![SystemInventory {
                id: "System.Embedded.1".to_string(),
                manufacturer: Some("Dell Inc.".to_string()),
                model: Some("PowerEdge R640 ".to_string()),
                processors: (1..=2)
                    .map(|i| Processor {
                        id: format!("CPU.Socket.{i}"),
                        processor_type: Some("CPU".to_string()),
                        state: Some("Enabled".to_string()),
                        model: Some("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz".to_string()),
                        total_cores: Some(16),
                        ..Processor::default()
                    })
                    .collect(),
                memory: (1..=12)
                    .map(|i| MemoryModule {
                        id: format!("DIMM.{i}"),
                        state: Some("Enabled".to_string()),
                        capacity_mib: Some(32 * 1024),
                        ..MemoryModule::default()
                    })
                    .chain(std::iter::once(MemoryModule {
                        id: "DIMM.13".to_string(),
                        state: Some("Absent".to_string()),
                        ..MemoryModule::default()
                    }))
                    .collect(),
                ethernet_interfaces: [(1, Some(25_000)), (2, Some(25_000)), (3, Some(1000))]
                    .into_iter()
                    .map(|(n, speed)| NetworkInterface {
                        id: format!("NIC.{n}"),
                        mac: Some(mac(n)),
                        speed_mbps: speed,
                        ..NetworkInterface::default()
                    })
                    .chain(std::iter::once(NetworkInterface {
                        id: "NIC.4".to_string(),
                        mac: Some(mac(4)),
                        ..NetworkInterface::default()
                    }))
                    .collect(),
                drives: vec![
                    drive(0, 480_103_981_056, "SSD"),
                    drive(1, 480_103_981_056, "SSD"),
                    drive(2, 4_000_787_030_016, "HDD"),
                ],
                ..SystemInventory::default()
            }],
            firmware: vec![
                FirmwareItem {
                    id: "Installed-25227-2.44.44.44".to_string(),
                    name: Some("Integrated Dell Remote Access Controller".to_string()),
                    version: Some("2.44".to_string()),
                },
                FirmwareItem {
                    id: "Installed-159-1.5.0".to_string(),
                    name: Some("BIOS".to_string()),
                    version: Some("1.5.0".to_string()),
                },
                FirmwareItem {
                    id: "Installed-0-CPLD".to_string(),
                    name: Some("System CPLD".to_string()),
                    version: Some("N/A".to_string()),
                },
            ],
            ..Inventory::default()
        }
    }

    #[test]
    fn shipped_example_parses_and_maps() {
        let specs = parse(SHIPPED).unwrap();
        assert!(!specs.specs().is_empty());
        assert!(!specs.maps().is_empty());
        for map in specs.maps() {
            assert!(specs.get(&map.spec).is_some(), "{map:?}");
        }
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_problem() {
        let ok = "[[spec]]\nname = \"ok\"\ncpu_count = 2\n\n";
        let cases: Vec<(String, &str, &str)> = vec![
            ("".to_string(), "test-specs.toml", "no [[spec]]"),
            (format!("{ok}[[spec]]\nname = \"b\"\nbogus = 1\n"), "line 7", "bogus"),
            (format!("{ok}[[spec]]\nname = \"b\"\ncpu_count = -1\n"), "line 7", "-1"),
            (format!("{ok}[[spec]]\nname = \"b\"\n"), "line 5", "spec \"b\": has no rules"),
            (
                format!("{ok}[[spec]]\nname = \"ok\"\ncores = 4\n"),
                "line 5",
                "spec \"ok\" is defined twice (first on line 1)",
            ),
            (
                format!("{ok}[[map]]\nmodel = \"*R640*\"\nspec = \"nope\"\n"),
                "line 5",
                "[[map]]: spec \"nope\" is not defined",
            ),
            (
                format!("{ok}[[map]]\nspec = \"ok\"\n"),
                "line 5",
                "give manufacturer or model",
            ),
            (
                format!("{ok}[[map]]\nmodel = \"*R640*\"\nspec = \"ok\"\nextra = 1\n"),
                "line 8",
                "extra",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n\ncpu_model = \"[Xx]eon\"\n"),
                "line 8",
                "'[' and ']' are not supported",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\nmodel = \" \"\n"),
                "line 7",
                "model is an empty pattern",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\ncores = 4\nmin_cores = 2\n"),
                "line 5",
                "cores or min_cores",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\nmemory_gib = 0\n"),
                "line 5",
                "memory_gib must be at least 1",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n[[spec.drives]]\ncount = 0\n"),
                "line 7",
                "drives: count must be at least 1",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n[[spec.drives]]\nmedia = \"NVMe\"\ncount = 1\n"),
                "line 7",
                "media \"NVMe\" is not one of SSD, HDD, SMR",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n[[spec.nics]]\ncount = 2\nspeed = 1\n"),
                "line 9",
                "speed",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n[spec.gpus]\nmodel = \"\"\ncount = 1\n"),
                "line 7",
                "gpus.model is an empty pattern",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n[spec.firmware]\n\"BMC*\" = \"2.50\"\n\"BIOS*\" = \"latest\"\n"),
                "line 9",
                "firmware \"BIOS*\": minimum version \"latest\" has no number",
            ),
            (
                format!("{ok}[[spec]]\nname = \"b\"\n[spec.firmware]\n\"BMC*\" = 2.50\n"),
                "line 8",
                "string",
            ),
            (
                format!("{ok}[[spec]]\nname = \"a b\"\ncores = 1\n"),
                "line 5",
                "name may only use",
            ),
        ];
        for (text, line, fragment) in cases {
            let message = match parse(&text) {
                Ok(_) => panic!("{text:?} was accepted"),
                Err(message) => message,
            };
            assert!(message.contains("test-specs.toml"), "{message}");
            assert!(message.contains(line), "{message:?} lacks {line:?}");
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
        let missing = Specs::load(Path::new("/nonexistent/hardware-specs.toml")).unwrap_err();
        assert!(crate::error_chain(&missing).contains("/nonexistent/hardware-specs.toml"));
    }

    #[test]
    fn entries_keep_their_lines_and_file_order() {
        let text = "# head\n[[spec]]\nname = \"a\"\n[[spec.drives]]\ncount = 1\n[[spec.nics]]\ncount = 2\n[spec.gpus]\ncount = 1\n[spec.firmware]\n\"z*\" = \"1\"\n\"a*\" = \"2\"\n\n[[spec]]\nname = \"b\"\ncores = 1\n[[map]]\nmodel = \"*\"\nspec = \"b\"\n";
        let specs = parse(text).unwrap();
        let a = specs.get("a").unwrap();
        assert_eq!(a.line, 2);
        assert_eq!(a.drives[0].line, 4);
        assert_eq!(a.nics[0].line, 6);
        assert_eq!(a.gpus.as_ref().map(|g| g.line), Some(8));
        let firmware: Vec<_> = a
            .firmware
            .iter()
            .map(|f| (f.component.as_str(), f.min_version.as_str(), f.line))
            .collect();
        assert_eq!(firmware, [("z*", "1", 11), ("a*", "2", 12)]);
        assert_eq!(specs.get("b").map(|b| b.line), Some(14));
        assert_eq!(specs.maps()[0].line, 17);
        let names: Vec<_> = specs.specs().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(specs.get("c").is_none());
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        let v = |text: &str| Version::parse(text).unwrap_or_else(|| panic!("{text:?}"));
        let components = |text: &str| v(text).components().to_vec();
        assert_eq!(components("2.72"), [2, 72]);
        assert_eq!(components("U46 v2.72 (03/11/2022)"), [2, 72]);
        assert_eq!(components("A43 v2.52 (10/29/2021)"), [2, 52]);
        assert_eq!(components("2.46 May 11 2021"), [2, 46]);
        assert_eq!(components("1.45.455b66-rev4"), [1, 45, 455]);
        assert_eq!(components("9.1.0 Build 36"), [9, 1, 0]);
        assert_eq!(components("2.15.0-dev-686-g100c36de90"), [2, 15, 0]);
        assert_eq!(components("08.50.78"), [8, 50, 78]);
        assert_eq!(components("HPG1"), [1]);
        assert_eq!(components("0x0D"), [13]);
        assert_eq!(components("0\u{14}"), [0]);
        assert_eq!(
            components("99999999999999999999999999999999999999999.1")[1],
            1
        );
        for unknown in ["", "N/A", "latest", "v."] {
            assert!(Version::parse(unknown).is_none(), "{unknown:?}");
        }
        assert!(v("1.10.2") > v("1.9"));
        assert!(v("1.10.2") > v("1.10"));
        assert!(v("2.50") > v("2.5"), "components are integers");
        assert_eq!(v("1.5"), v("1.5.0"));
        assert_eq!(v("v2.72"), v("2.72 (03/11/2022)"));
        assert!(v("2.44") < v("2.50"));
        assert!(v("0x0D") < v("0x0F"));
        assert!(v("U46 v2.72 (03/11/2022)") >= v("2.72"));
    }

    #[test]
    fn a_fitting_inventory_breaks_no_rule() {
        let fits = spec(
            r#"manufacturer = "Dell*"
model = "PowerEdge R640"
cpu_model = "*xeon*gold 6130*"
cpu_count = 2
cores = 32
memory_gib = 384
dimm_count = 12
dimm_gib = 32
[[spec.drives]]
media = "ssd"
min_gb = 480
count = 2
[[spec.drives]]
count = 3
[[spec.nics]]
min_speed_mbps = 25000
count = 2
[[spec.nics]]
count = 4
[spec.firmware]
"Integrated Dell*" = "2.44"
"BIOS" = "1.5"
"#,
        );
        assert_eq!(fits.drives[0].media.as_deref(), Some("SSD"));
        assert_eq!(fits.check(&r640()), []);
        assert_eq!(
            spec("min_cores = 32\nmin_memory_gib = 384").check(&r640()),
            []
        );
    }

    #[test]
    fn every_rule_fails_with_what_was_wanted_and_found() {
        let misfits = spec(
            r#"manufacturer = "HPE"
model = "*R650*"
cpu_model = "*AMD*"
cpu_count = 1
min_cores = 48
memory_gib = 512
dimm_count = 16
dimm_gib = 64
[[spec.drives]]
media = "SSD"
min_gb = 400
count = 3
[[spec.drives]]
min_gb = 8000
count = 1
[[spec.nics]]
min_speed_mbps = 10000
count = 4
[spec.gpus]
model = "*A100*"
count = 4
[spec.firmware]
"Integrated Dell*" = "2.50"
"BIOS" = "1.5.1"
"*CPLD*" = "1"
"Backplane*" = "1.0"
"#,
        );
        let drives = "drives: 2 × 480 GB SSD, 1 × 4001 GB HDD";
        assert_eq!(
            misfits.check(&r640()),
            [
                failure("manufacturer", "HPE", "Dell Inc."),
                failure("model", "*R650*", "PowerEdge R640"),
                failure("cpu_model", "*AMD*", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"),
                failure("cpu_count", "1", "2"),
                failure("cores", "≥ 48", "32"),
                failure("memory_gib", "512", "384"),
                failure("dimm_count", "16", "12"),
                failure("dimm_gib", "64 GiB each", "12 × 32 GiB"),
                failure(
                    "drives",
                    "≥ 3 SSD of ≥ 400 GB",
                    &format!("2 SSD of ≥ 400 GB ({drives})")
                ),
                failure(
                    "drives",
                    "≥ 1 drive of ≥ 8000 GB",
                    &format!("0 drives of ≥ 8000 GB ({drives})")
                ),
                failure(
                    "nics",
                    "≥ 4 ports at ≥ 10000 Mb/s",
                    "2 ports at ≥ 10000 Mb/s (ports: 2 × 25000 Mb/s, 1 × 1000 Mb/s, 1 × unknown speed)"
                ),
                failure("gpus", "≥ 4 GPUs matching *A100*", "0 GPUs matching *A100* (no GPUs listed)"),
                failure("firmware:Integrated Dell*", "≥ 2.50", "2.44"),
                failure("firmware:BIOS", "≥ 1.5.1", "1.5.0"),
                failure("firmware:*CPLD*", "≥ 1", "unknown (N/A)"),
                failure("firmware:Backplane*", "≥ 1.0", "absent"),
            ]
        );
    }

    #[test]
    fn exact_rules_fail_both_ways_and_rounding_is_to_the_nearest_gib() {
        let mut inventory = r640();
        let exact = spec("cores = 16\nmemory_gib = 384\ndimm_gib = 32");
        assert_eq!(exact.check(&inventory), [failure("cores", "16", "32")]);
        // 383.6 GiB rounds to 384; a 31.75 GiB DIMM rounds to 32.
        let system = &mut inventory.systems[0];
        system.memory[0].capacity_mib = Some(32 * 1024 - 256);
        assert_eq!(inventory.memory_mib(), 384 * 1024 - 256);
        assert_eq!(exact.check(&inventory), [failure("cores", "16", "32")]);
        let system = &mut inventory.systems[0];
        system.memory[0].capacity_mib = Some(16 * 1024);
        system.memory[1].capacity_mib = None;
        assert_eq!(
            exact.check(&inventory),
            [
                failure("cores", "16", "32"),
                failure("memory_gib", "384", "336"),
                failure(
                    "dimm_gib",
                    "32 GiB each",
                    "1 × 16 GiB, 1 × unknown size, 10 × 32 GiB"
                ),
            ]
        );
        inventory.systems[0].memory[0].capacity_mib = Some(16 * 1024 + 512);
        assert_eq!(
            spec("min_memory_gib = 400").check(&inventory),
            [failure("memory_gib", "≥ 400", "336.5")]
        );
    }

    #[test]
    fn nothing_listed_is_said_so() {
        let empty = Inventory {
            systems: vec![SystemInventory {
                id: "system".to_string(),
                ..SystemInventory::default()
            }],
            ..Inventory::default()
        };
        let everything = spec(
            r#"model = "*"
cpu_model = "*"
cpu_count = 2
dimm_gib = 32
[[spec.drives]]
count = 1
[[spec.nics]]
count = 1
[spec.gpus]
count = 1
"#,
        );
        assert_eq!(
            everything.check(&empty),
            [
                failure("model", "*", "unknown"),
                failure("cpu_model", "*", "no CPUs"),
                failure("cpu_count", "2", "0"),
                failure("dimm_gib", "32 GiB each", "no DIMMs listed"),
                failure("drives", "≥ 1 drive", "0 drives (no drives listed)"),
                failure("nics", "≥ 1 port", "0 ports (no ports listed)"),
                failure("gpus", "≥ 1 GPU", "0 GPUs (no GPUs listed)"),
            ]
        );
        assert_eq!(
            spec("manufacturer = \"*\"").check(&Inventory::default()),
            [failure("manufacturer", "*", "no system")]
        );
    }

    #[test]
    fn simple_storage_stands_in_for_missing_drives() {
        let mut inventory = r640();
        let system = &mut inventory.systems[0];
        system.drives.clear();
        system.simple_storage = [(Some(8_000_000_000_000), "Enabled"), (None, "Absent")]
            .into_iter()
            .map(|(bytes, state)| SimpleStorageDevice {
                controller: "1".to_string(),
                capacity_bytes: bytes,
                state: Some(state.to_string()),
                ..SimpleStorageDevice::default()
            })
            .collect();
        assert_eq!(
            spec("[[spec.drives]]\nmin_gb = 8000\ncount = 1").check(&inventory),
            []
        );
        assert_eq!(
            spec("[[spec.drives]]\nmedia = \"HDD\"\ncount = 1").check(&inventory),
            [failure("drives", "≥ 1 HDD", "0 HDD (drives: 1 × 8000 GB)")]
        );
    }

    #[test]
    fn adapter_ports_are_the_ports_when_listed() {
        let mut inventory = r640();
        inventory.chassis = vec![ChassisInventory {
            id: "System.Embedded.1".to_string(),
            network_adapters: vec![NetworkAdapter {
                id: "NIC.Slot.1".to_string(),
                ports: vec![
                    AdapterPort {
                        id: "1".to_string(),
                        macs: vec![mac(1)],
                        speed_mbps: Some(100_000),
                        ..AdapterPort::default()
                    },
                    // No speed of its own: the interface with its MAC says 25 G.
                    AdapterPort {
                        id: "2".to_string(),
                        macs: vec![mac(2)],
                        ..AdapterPort::default()
                    },
                ],
                ..NetworkAdapter::default()
            }],
            ..ChassisInventory::default()
        }];
        assert_eq!(
            spec("[[spec.nics]]\nmin_speed_mbps = 100000\ncount = 1\n[[spec.nics]]\ncount = 3")
                .check(&inventory),
            [failure(
                "nics",
                "≥ 3 ports",
                "2 ports (ports: 1 × 100000 Mb/s, 1 × 25000 Mb/s)"
            )]
        );
    }

    #[test]
    fn interfaces_count_once_per_mac_at_their_best_speed() {
        let mut inventory = r640();
        inventory.systems[0]
            .ethernet_interfaces
            .push(NetworkInterface {
                id: "NIC.4.VLAN".to_string(),
                mac: Some(mac(4)),
                speed_mbps: Some(10_000),
                ..NetworkInterface::default()
            });
        inventory.systems[0]
            .ethernet_interfaces
            .push(NetworkInterface {
                id: "NoMac".to_string(),
                speed_mbps: Some(10_000),
                ..NetworkInterface::default()
            });
        assert_eq!(
            spec("[[spec.nics]]\nmin_speed_mbps = 10000\ncount = 4").check(&inventory),
            [failure(
                "nics",
                "≥ 4 ports at ≥ 10000 Mb/s",
                "3 ports at ≥ 10000 Mb/s (ports: 2 × 25000 Mb/s, 1 × 1000 Mb/s, 1 × 10000 Mb/s)"
            )]
        );
    }

    #[test]
    fn gpus_count_as_processors_or_pcie_devices_not_both() {
        let mut inventory = r640();
        inventory.systems[0]
            .processors
            .extend((0..2).map(|i| Processor {
                id: format!("GPU{i}"),
                processor_type: Some("GPU".to_string()),
                model: Some("NVIDIA A100-SXM4-40GB".to_string()),
                ..Processor::default()
            }));
        let device = |id: &str, name: &str, model: &str, class: &str| PcieDevice {
            id: id.to_string(),
            name: Some(name.to_string()),
            model: Some(model.to_string()),
            functions: vec![PcieFunction {
                id: "0".to_string(),
                device_class: Some(class.to_string()),
                ..PcieFunction::default()
            }],
            ..PcieDevice::default()
        };
        inventory.chassis = vec![ChassisInventory {
            id: "1".to_string(),
            pcie_devices: vec![
                device("3", "GPU 0", "A100-SXM4-40GB", "ProcessingAccelerators"),
                device("4", "GPU 1", "", "ProcessingAccelerators"),
                device("5", "Embedded Video Controller", "", "DisplayController"),
                device("6", "NIC", "X710", "NetworkController"),
            ],
            ..ChassisInventory::default()
        }];
        assert_eq!(
            spec("[spec.gpus]\nmodel = \"*a100*\"\ncount = 2").check(&inventory),
            []
        );
        assert_eq!(spec("[spec.gpus]\ncount = 3").check(&inventory), []);
        assert_eq!(
            spec("[spec.gpus]\nmodel = \"GPU*\"\ncount = 3").check(&inventory),
            [failure(
                "gpus",
                "≥ 3 GPUs matching GPU*",
                "2 GPUs matching GPU* (GPUs: 1 × A100-SXM4-40GB, 1 × GPU 1, 1 × Embedded Video Controller)"
            )]
        );
        assert_eq!(
            spec("[spec.gpus]\ncount = 4").check(&inventory),
            [failure(
                "gpus",
                "≥ 4 GPUs",
                "3 GPUs (GPUs: 1 × A100-SXM4-40GB, 1 × GPU 1, 1 × Embedded Video Controller)"
            )]
        );
    }

    #[test]
    fn firmware_minimums_hold_for_every_matching_component() {
        let mut inventory = r640();
        inventory.firmware.extend(
            [("PSU.1", "00.1B.53"), ("PSU.2", "00.1D.7D"), ("PSU.3", "")]
                .into_iter()
                .map(|(id, version)| FirmwareItem {
                    id: id.to_string(),
                    name: Some("Power Supply".to_string()),
                    version: Some(version.to_string()),
                }),
        );
        inventory.firmware.push(FirmwareItem {
            id: "Disk.1".to_string(),
            name: None,
            version: None,
        });
        inventory.firmware.push(FirmwareItem {
            id: "Ctl".to_string(),
            name: Some("Odd".to_string()),
            version: Some("0\u{14}".to_string()),
        });
        assert_eq!(
            spec("[spec.firmware]\n\"Installed-25227-*\" = \"2.44\"\n\"bios\" = \"1.5\"")
                .check(&inventory),
            [],
            "ids match as well as names, case-insensitively"
        );
        assert_eq!(
            spec(
                "[spec.firmware]\n\"Power Supply\" = \"0.1\"\n\"Disk.*\" = \"1\"\n\"odd\" = \"1\""
            )
            .check(&inventory),
            [
                failure("firmware:Power Supply", "≥ 0.1", "unknown (empty)"),
                failure("firmware:Disk.*", "≥ 1", "unknown (no version)"),
                failure("firmware:odd", "≥ 1", "0\\u{14}"),
            ]
        );
        assert_eq!(
            spec("[spec.firmware]\n\"Power*\" = \"0.2\"").check(&inventory),
            [failure(
                "firmware:Power*",
                "≥ 0.2",
                "00.1B.53, 00.1D.7D, unknown (empty)"
            )]
        );
    }

    #[test]
    fn map_rules_choose_the_first_match() {
        let text = r#"
[[spec]]
name = "r640-gold"
cpu_model = "*Gold 6130*"

[[spec]]
name = "dell-any"
manufacturer = "Dell*"

[[spec]]
name = "hpe"
manufacturer = "HPE"

[[map]]
manufacturer = "dell*"
model = "*R640*"
spec = "r640-gold"

[[map]]
manufacturer = "Dell*"
spec = "dell-any"

[[map]]
model = "*ProLiant*"
spec = "hpe"
"#;
        let specs = parse(text).unwrap();
        let name = |inventory: &Inventory| specs.spec_for(inventory).map(|s| s.name.clone());
        let mut inventory = r640();
        assert_eq!(name(&inventory).as_deref(), Some("r640-gold"));
        inventory.systems[0].model = Some("PowerEdge R750".to_string());
        assert_eq!(name(&inventory).as_deref(), Some("dell-any"));
        inventory.systems[0].manufacturer = Some("HPE".to_string());
        assert_eq!(name(&inventory), None);
        inventory.systems[0].model = Some("ProLiant DL325 Gen10 Plus  ".to_string());
        assert_eq!(name(&inventory).as_deref(), Some("hpe"));
        inventory.systems[0].model = None;
        assert_eq!(name(&inventory), None);
        assert_eq!(name(&Inventory::default()), None);
        assert_eq!(specs.maps()[0].line, 14);
    }
}
