//! Boot profiles: a TOML file of profiles with selectors over a machine's inventory and
//! tags, a priority, and the kernel, initrd and cmdline template to netboot. Pure: boot-api
//! assigns with it, metal-cli dry-runs it (`metal-cli profiles check`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wildmatch::WildMatchPattern;

use crate::events::Purpose;
use crate::inventory::{CpuVendor, Inventory};
use crate::{Mac, MachineId};

/// The placeholders a cmdline may use, and nothing else in braces.
pub const PLACEHOLDERS: &[&str] = &[
    "{machine_id}",
    "{bmc_mac}",
    "{mac}",
    "{profile}",
    "{token}",
    "{phone_home_url}",
];

#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    #[error("cannot read boot profiles file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// toml's message names the line and column.
    #[error("boot profiles file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("boot profiles file {path}, line {line}: {problem}")]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("boot profiles file {path}: no [[profile]] defined")]
    Empty { path: PathBuf },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profile: Vec<toml::Spanned<Profile>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// Higher wins among the profiles that match; equal priorities go by file order.
    #[serde(default)]
    pub priority: i64,
    pub kernel: String,
    #[serde(default)]
    pub initrd: Vec<String>,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default, rename = "match")]
    pub selectors: Selectors,
    /// `install` (the default: chosen by selectors or by name) or `wipe`: the one profile
    /// `metal-cli retire --wipe` netboots, never chosen for an install.
    #[serde(default)]
    pub purpose: Purpose,
    /// The line of the profile's `[[profile]]` table in its file.
    #[serde(skip)]
    pub line: usize,
}

/// Conditions on the machine; all given ones must hold. Patterns are case-insensitive
/// globs (`*` any text, `?` one character).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selectors {
    pub cpu_vendor: Option<CpuVendor>,
    /// Every present CPU's model matches.
    pub cpu_model: Option<String>,
    pub min_cpus: Option<u64>,
    /// Cores of all present CPUs together.
    pub min_cores: Option<u64>,
    pub max_cores: Option<u64>,
    pub min_memory_mib: Option<u64>,
    pub min_memory_gib: Option<u64>,
    pub max_memory_gib: Option<u64>,
    pub min_host_nics: Option<u64>,
    /// At least one host NIC (or adapter port) this fast.
    pub min_nic_speed_mbps: Option<u64>,
    pub min_drives: Option<u64>,
    pub max_drives: Option<u64>,
    /// The largest drive holds at least this much (decimal GB, as drives are sold).
    pub min_drive_gb: Option<u64>,
    /// At least one drive of this media (`SSD`, `HDD`).
    pub drive_media: Option<String>,
    pub min_gpus: Option<u64>,
    pub max_gpus: Option<u64>,
    pub manufacturer: Option<String>,
    /// The system model.
    pub model: Option<String>,
    /// Substring of the system model (kept from the first profiles format).
    pub system_model_contains: Option<String>,
    /// Operator tags (`metal-cli tag`); each must be set to this value.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// What selectors look at, derived once from a machine's inventory and tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MachineFacts {
    pub cpu_vendor: Option<CpuVendor>,
    pub cpu_models: Vec<String>,
    pub cpus: u64,
    pub cores: u64,
    pub memory_mib: u64,
    pub host_nics: u64,
    pub max_nic_speed_mbps: Option<u64>,
    pub drives: u64,
    pub max_drive_bytes: Option<u64>,
    pub drive_media: Vec<String>,
    pub gpus: u64,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl MachineFacts {
    pub fn of(inventory: &Inventory, tags: &BTreeMap<String, String>) -> MachineFacts {
        let cpus: Vec<_> = inventory.systems.iter().flat_map(|s| s.cpus()).collect();
        let mut cpu_models: Vec<String> = cpus.iter().filter_map(|p| p.model.clone()).collect();
        cpu_models.sort();
        cpu_models.dedup();
        let drives: Vec<_> = inventory.systems.iter().flat_map(|s| &s.drives).collect();
        let mut drive_media: Vec<String> =
            drives.iter().filter_map(|d| d.media_type.clone()).collect();
        drive_media.sort();
        drive_media.dedup();
        let nic_speeds = inventory
            .systems
            .iter()
            .flat_map(|s| &s.ethernet_interfaces)
            .filter_map(|n| n.speed_mbps)
            .chain(
                inventory
                    .chassis
                    .iter()
                    .flat_map(|c| &c.network_adapters)
                    .flat_map(|a| &a.ports)
                    .filter_map(|p| p.speed_mbps),
            );
        let gpu_processors = inventory
            .systems
            .iter()
            .flat_map(|s| &s.processors)
            .filter(|p| p.processor_type.as_deref() == Some("GPU"))
            .filter(|p| p.state.as_deref() != Some("Absent"))
            .count() as u64;
        let gpu_devices = inventory
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
            .count() as u64;
        let system = inventory.systems.first();
        MachineFacts {
            cpu_vendor: inventory.cpu_vendor(),
            cpu_models,
            cpus: cpus.len() as u64,
            cores: cpus.iter().filter_map(|p| p.total_cores).sum(),
            memory_mib: inventory.memory_mib(),
            host_nics: inventory.host_nic_macs().len() as u64,
            max_nic_speed_mbps: nic_speeds.max(),
            drives: drives.len() as u64,
            max_drive_bytes: drives.iter().filter_map(|d| d.capacity_bytes).max(),
            drive_media,
            // A GPU the BMC lists both as a processor and as a PCIe device counts once.
            gpus: gpu_processors.max(gpu_devices),
            manufacturer: system.and_then(|s| s.manufacturer.clone()),
            model: system.and_then(|s| s.model.clone()),
            tags: tags.clone(),
        }
    }
}

/// Case-insensitive glob (`*`, `?`), as profile and spec files write patterns.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    WildMatchPattern::<'*', '?'>::new_case_insensitive(pattern).matches(text)
}

impl Selectors {
    pub fn fits(&self, facts: &MachineFacts) -> bool {
        let at_least = |min: Option<u64>, have: u64| min.is_none_or(|min| have >= min);
        let at_most = |max: Option<u64>, have: u64| max.is_none_or(|max| have <= max);
        let pattern = |pattern: &Option<String>, have: &Option<String>| {
            pattern
                .as_deref()
                .is_none_or(|p| have.as_deref().is_some_and(|h| glob(p, h)))
        };
        const GIB: u64 = 1024;
        self.cpu_vendor
            .is_none_or(|vendor| facts.cpu_vendor == Some(vendor))
            && self.cpu_model.as_deref().is_none_or(|p| {
                !facts.cpu_models.is_empty() && facts.cpu_models.iter().all(|m| glob(p, m))
            })
            && at_least(self.min_cpus, facts.cpus)
            && at_least(self.min_cores, facts.cores)
            && at_most(self.max_cores, facts.cores)
            && at_least(self.min_memory_mib, facts.memory_mib)
            && at_least(self.min_memory_gib.map(|g| g * GIB), facts.memory_mib)
            && self
                .max_memory_gib
                .is_none_or(|g| facts.memory_mib <= g * GIB)
            && at_least(self.min_host_nics, facts.host_nics)
            && self
                .min_nic_speed_mbps
                .is_none_or(|min| facts.max_nic_speed_mbps.is_some_and(|s| s >= min))
            && at_least(self.min_drives, facts.drives)
            && at_most(self.max_drives, facts.drives)
            && self.min_drive_gb.is_none_or(|gb| {
                facts
                    .max_drive_bytes
                    .is_some_and(|b| b >= gb.saturating_mul(1_000_000_000))
            })
            && self.drive_media.as_deref().is_none_or(|wanted| {
                facts
                    .drive_media
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(wanted))
            })
            && at_least(self.min_gpus, facts.gpus)
            && at_most(self.max_gpus, facts.gpus)
            && pattern(&self.manufacturer, &facts.manufacturer)
            && pattern(&self.model, &facts.model)
            && self.system_model_contains.as_deref().is_none_or(|wanted| {
                facts
                    .model
                    .as_deref()
                    .is_some_and(|m| m.to_lowercase().contains(&wanted.to_lowercase()))
            })
            && self
                .tags
                .iter()
                .all(|(key, value)| facts.tags.get(key) == Some(value))
    }
}

/// The validated profiles, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    profiles: Vec<Profile>,
}

impl Profiles {
    /// Reads and validates the profiles file; errors name the file, the line and the problem.
    pub fn load(path: &Path) -> Result<Profiles, ProfilesError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfilesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profiles::parse(&text, path)
    }

    /// Parses and validates profiles text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Profiles, ProfilesError> {
        let file: ProfilesFile = toml::from_str(text).map_err(|error| ProfilesError::Parse {
            path: path.to_path_buf(),
            message: toml_message(&error),
        })?;
        if file.profile.is_empty() {
            return Err(ProfilesError::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut names = BTreeMap::new();
        let mut wipe_line: Option<usize> = None;
        let mut profiles = Vec::with_capacity(file.profile.len());
        for spanned in file.profile {
            let line = line_of(text, spanned.span().start);
            let mut profile = spanned.into_inner();
            profile.line = line;
            let invalid = |problem: String| ProfilesError::Invalid {
                path: path.to_path_buf(),
                line,
                problem,
            };
            let label = if profile.name.trim().is_empty() {
                "profile".to_string()
            } else {
                format!("profile {:?}", profile.name)
            };
            validate(&profile).map_err(|problem| invalid(format!("{label}: {problem}")))?;
            if let Some(first) = names.insert(profile.name.clone(), line) {
                return Err(invalid(format!(
                    "{label} is defined twice (first on line {first})"
                )));
            }
            if profile.purpose == Purpose::Wipe {
                if let Some(first) = wipe_line {
                    return Err(invalid(format!(
                        "{label} is a second wipe profile (the first is on line {first}); only one profile may have purpose = \"wipe\""
                    )));
                }
                wipe_line = Some(line);
            }
            profiles.push(profile);
        }
        Ok(Profiles { profiles })
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The profile of this name, install or wipe.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The install profiles, in file order: what selectors and `--profile` choose from.
    pub fn install(&self) -> impl Iterator<Item = &Profile> {
        self.profiles
            .iter()
            .filter(|p| p.purpose == Purpose::Install)
    }

    /// The wipe profile (`purpose = "wipe"`), if the file has one: at most one is allowed.
    pub fn wipe(&self) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.purpose == Purpose::Wipe)
    }

    /// The highest-priority install profile that fits (the earliest on a tie); the wipe
    /// profile is never chosen.
    pub fn choose(&self, facts: &MachineFacts) -> Option<&Profile> {
        self.install().filter(|p| p.selectors.fits(facts)).fold(
            None,
            |best: Option<&Profile>, p| match best {
                Some(b) if b.priority >= p.priority => Some(b),
                _ => Some(p),
            },
        )
    }
}

/// 1-based line of a byte offset.
/// toml's message (it names the line and column) on one line.
pub(crate) fn toml_message(error: &toml::de::Error) -> String {
    error.to_string().trim_end().replace('\n', " ")
}

/// The 1-based line of a byte offset in a TOML file, for errors that name the line.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|head| head.matches('\n').count() + 1)
        .unwrap_or(1)
}

/// The values a cmdline template's placeholders take for one boot.
#[derive(Debug, Clone)]
pub struct CmdlineValues<'a> {
    pub machine_id: MachineId,
    pub bmc_mac: Mac,
    /// The booting NIC.
    pub mac: Mac,
    pub profile: &'a str,
    pub token: &'a str,
    pub phone_home_url: &'a str,
}

/// Fills a validated template. Values are UUIDs, MACs, profile names, hex tokens and a URL
/// checked like kernel URLs, so the result keeps one line and no template braces.
pub fn render_cmdline(template: &str, values: &CmdlineValues<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let value: Option<(usize, std::borrow::Cow<'_, str>)> =
            PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)).map(|p| {
                let value: std::borrow::Cow<'_, str> = match *p {
                    "{machine_id}" => values.machine_id.to_string().into(),
                    "{bmc_mac}" => values.bmc_mac.to_string().into(),
                    "{mac}" => values.mac.to_string().into(),
                    "{profile}" => values.profile.into(),
                    "{token}" => values.token.into(),
                    _ => values.phone_home_url.into(),
                };
                (p.len(), value)
            });
        match value {
            Some((len, value)) => {
                out.push_str(&value);
                rest = &tail[len..];
            }
            // Validation refuses other braces; drop a stray one rather than pass a template.
            None => rest = &tail[1..],
        }
    }
    out.push_str(rest);
    out
}

fn validate(profile: &Profile) -> Result<(), String> {
    let name = profile.name.trim();
    if name.is_empty() {
        return Err("name is empty".to_string());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("name may only use letters, digits, '-', '_' and '.'".to_string());
    }
    check_url("kernel", &profile.kernel)?;
    for (index, url) in profile.initrd.iter().enumerate() {
        check_url(&format!("initrd[{index}]"), url)?;
    }
    check_cmdline(&profile.cmdline)?;
    for (key, value) in &profile.selectors.tags {
        check_tag(key, value)?;
    }
    if profile.purpose == Purpose::Wipe {
        if profile.selectors != Selectors::default() {
            return Err(
                "a wipe profile has no [profile.match]: it is never chosen by selectors, only by metal-cli retire --wipe"
                    .to_string(),
            );
        }
        if profile.priority != 0 {
            return Err(
                "a wipe profile has no priority: it is never chosen by selectors".to_string(),
            );
        }
    }
    Ok(())
}

/// Pixiecore resolves relative URLs against the API and reads `file://` from its own disk:
/// only absolute http(s) URLs are allowed.
pub fn check_url(field: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{field} {url:?} is not an absolute http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{field} {url:?} has no host"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(format!(
            "{field} {url:?} contains whitespace or template braces"
        ));
    }
    Ok(())
}

fn check_cmdline(cmdline: &str) -> Result<(), String> {
    if cmdline.chars().any(|c| c.is_control()) {
        return Err("cmdline contains a newline or another control character".to_string());
    }
    let mut rest = cmdline;
    while let Some(start) = rest.find(['{', '}']) {
        let tail = &rest[start..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
            Some(placeholder) => rest = &tail[placeholder.len()..],
            None => {
                return Err(format!(
                    "cmdline has braces other than the placeholders {} (Pixiecore reads it as a Go template) at {:?}",
                    PLACEHOLDERS.join(", "),
                    tail.chars().take(20).collect::<String>()
                ))
            }
        }
    }
    Ok(())
}

/// Tag keys are identifiers; values are one printable line. Shared with `metal-cli tag`.
pub fn check_tag(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !key_ok {
        return Err(format!(
            "tag key {key:?} must be 1 to 64 letters, digits, '-', '_', '.' or '/'"
        ));
    }
    if value.len() > 256 || value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "tag {key}: value must be at most 256 characters on one line"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
