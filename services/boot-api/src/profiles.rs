//! Boot profiles: an ordered list in a TOML file, matched against a machine's boot facts
//! (first match wins), rendered into a Pixiecore boot spec.

use std::path::{Path, PathBuf};

use metal_core::inventory::CpuVendor;
use metal_projection::BootFacts;
use serde::{Deserialize, Serialize};

/// The placeholders a cmdline may use, and nothing else in braces.
pub const PLACEHOLDERS: &[&str] = &["{machine_id}", "{bmc_mac}", "{mac}"];

#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    #[error("cannot read boot profiles file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("boot profiles file {path} is not valid TOML for profiles")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("boot profiles file {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// The profiles file: `[[profile]]` tables, tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profile: Vec<Profile>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub kernel: String,
    #[serde(default)]
    pub initrd: Vec<String>,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default, rename = "match")]
    pub matches: Match,
}

/// Conditions on the machine; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub cpu_vendor: Option<CpuVendor>,
    pub system_model_contains: Option<String>,
    pub min_memory_mib: Option<u64>,
    pub min_cpus: Option<u64>,
    pub min_host_nics: Option<u64>,
    pub min_drives: Option<u64>,
}

/// The body of a 200 answer to Pixiecore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootSpec {
    pub kernel: String,
    pub initrd: Vec<String>,
    pub cmdline: String,
    pub message: String,
}

/// The validated, ordered profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    profiles: Vec<Profile>,
}

impl Profiles {
    /// Reads and validates the profiles file; errors name the file and the problem.
    pub fn load(path: &Path) -> Result<Profiles, ProfilesError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfilesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profiles::parse(&text, path)
    }

    /// Parses and validates profiles text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Profiles, ProfilesError> {
        let file: ProfilesFile = toml::from_str(text).map_err(|source| ProfilesError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |problem: String| ProfilesError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if file.profile.is_empty() {
            return Err(invalid("no [[profile]] defined".to_string()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, profile) in file.profile.iter().enumerate() {
            let label = if profile.name.trim().is_empty() {
                format!("profile #{}", index + 1)
            } else {
                format!("profile {:?}", profile.name)
            };
            validate(profile).map_err(|problem| invalid(format!("{label}: {problem}")))?;
            if !names.insert(profile.name.clone()) {
                return Err(invalid(format!("{label} is defined twice")));
            }
        }
        Ok(Profiles {
            profiles: file.profile,
        })
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The first profile that matches the machine.
    pub fn choose(&self, facts: &BootFacts) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.matches.fits(facts))
    }
}

impl Match {
    pub fn fits(&self, facts: &BootFacts) -> bool {
        let at_least = |min: Option<u64>, have: u64| min.is_none_or(|min| have >= min);
        self.cpu_vendor
            .is_none_or(|vendor| facts.cpu_vendor == Some(vendor))
            && self.system_model_contains.as_deref().is_none_or(|wanted| {
                facts
                    .system_model
                    .as_deref()
                    .is_some_and(|model| model.to_lowercase().contains(&wanted.to_lowercase()))
            })
            && at_least(self.min_memory_mib, facts.memory_mib)
            && at_least(self.min_cpus, facts.cpu_count)
            && at_least(self.min_host_nics, facts.host_nic_count)
            && at_least(self.min_drives, facts.drive_count)
    }
}

impl Profile {
    /// The boot spec for this machine. Substituted values are UUIDs and MACs, so the result
    /// keeps the guarantees `validate` checked (one line, no template braces).
    pub fn render(&self, facts: &BootFacts) -> BootSpec {
        let cmdline = self
            .cmdline
            .replace("{machine_id}", &facts.machine_id.to_string())
            .replace("{bmc_mac}", &facts.bmc_mac.to_string())
            .replace("{mac}", &facts.mac.to_string());
        BootSpec {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline,
            message: format!(
                "metal boot profile {} for machine {}",
                self.name, facts.machine_id
            ),
        }
    }
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
    check_cmdline(&profile.cmdline)
}

/// Pixiecore resolves relative URLs against the API and reads `file://` from its own disk:
/// only absolute http(s) URLs are allowed.
fn check_url(field: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{field} {url:?} is not an absolute http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{field} {url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control())
        || url.contains("{{")
        || url.contains("}}")
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
