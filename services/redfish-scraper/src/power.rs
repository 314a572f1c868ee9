//! What to ask a BMC to make a machine netboot once, or to change its power: from the
//! ComputerSystem document alone, this decides the `Boot` PATCH body (PXE, once, UEFI where
//! offered), the `ComputerSystem.Reset` target and `ResetType`, and the reasons to refuse
//! before anything is sent. Pure, so every choice is tested without a network; the handler
//! does the requests.
//!
//! Like sushy (Ironic's Redfish library), an `@Redfish.AllowableValues` that is absent or empty
//! allows everything; a present one is obeyed, and the refusal names what it allows.

use metal_core::events::{PowerAction, PowerStep};
use serde_json::{json, Map, Value};

use crate::error::printable;

pub const PXE: &str = "Pxe";
pub const ONCE: &str = "Once";
pub const UEFI: &str = "UEFI";
/// The standard reset action's path below the system, when the system names no target.
pub const RESET_ACTION_SUFFIX: &str = "/Actions/ComputerSystem.Reset";
/// The longest list of allowed values quoted in a reason, in characters.
const MAX_QUOTED_CHARS: usize = 300;

/// What a power input asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerIntent {
    /// `machine.profile.assigned` with `power`: PXE once, then (re)start.
    Provision,
    /// `machine.power.requested`.
    Operator(PowerAction),
    /// A retirement's power-off (`machine.retire.requested` without a wipe, or
    /// `machine.wipe.completed`), followed by `machine.retired`.
    Retire {
        /// Whether the machine was wiped first.
        wiped: bool,
    },
}

impl PowerIntent {
    /// The steps taken, in order; a failed step ends the run.
    pub fn steps(self) -> &'static [PowerStep] {
        match self {
            PowerIntent::Provision => &[PowerStep::BootOverride, PowerStep::Reset],
            PowerIntent::Operator(PowerAction::Status) => &[PowerStep::Status],
            PowerIntent::Operator(_) | PowerIntent::Retire { .. } => &[PowerStep::Reset],
        }
    }

    /// The first step, which a failure before any step is reported at.
    pub fn first_step(self) -> PowerStep {
        self.steps()[0]
    }

    /// What the reset step is for (`None` for a status read).
    pub fn goal(self) -> Option<Goal> {
        match self {
            PowerIntent::Provision | PowerIntent::Operator(PowerAction::Cycle) => {
                Some(Goal::Restart)
            }
            PowerIntent::Operator(PowerAction::On) => Some(Goal::On),
            PowerIntent::Operator(PowerAction::Off) | PowerIntent::Retire { .. } => Some(Goal::Off),
            PowerIntent::Operator(PowerAction::Status) => None,
        }
    }
}

/// The one-time PXE boot override to PATCH onto the system.
#[derive(Debug, Clone, PartialEq)]
pub struct BootOverride {
    /// `{"Boot": {...}}`.
    pub patch: Value,
    /// What was asked, in the BMC's words: `Pxe Once UEFI` or `Pxe Once`.
    pub detail: String,
}

/// The PATCH body that makes the system boot from the network once, or why the BMC cannot.
///
/// Target `Pxe` and enabled `Once` always; mode `UEFI` only when the system has a
/// `BootSourceOverrideMode` and UEFI is allowed (a system that only allows Legacy keeps it).
pub fn boot_override(system: &Value) -> Result<BootOverride, String> {
    let Some(boot) = system.get("Boot").and_then(Value::as_object) else {
        return Err(
            "the system has no Boot settings, so it cannot be told to boot from PXE".into(),
        );
    };
    if let Some(allowed) = allowable(boot, "BootSourceOverrideTarget") {
        if !allowed.iter().any(|v| v == PXE) {
            return Err(format!(
                "the BMC offers no PXE boot override: BootSourceOverrideTarget allows only {}",
                quote(&allowed)
            ));
        }
    }
    if let Some(allowed) = allowable(boot, "BootSourceOverrideEnabled") {
        if !allowed.iter().any(|v| v == ONCE) {
            return Err(format!(
                "the BMC offers no one-time boot override: BootSourceOverrideEnabled allows only {}",
                quote(&allowed)
            ));
        }
    }
    let mut fields = Map::new();
    fields.insert("BootSourceOverrideTarget".into(), json!(PXE));
    fields.insert("BootSourceOverrideEnabled".into(), json!(ONCE));
    let mut detail = format!("{PXE} {ONCE}");
    let has_mode = boot.contains_key("BootSourceOverrideMode");
    let uefi_allowed = allowable(boot, "BootSourceOverrideMode")
        .is_none_or(|allowed| allowed.iter().any(|v| v == UEFI));
    if has_mode && uefi_allowed {
        fields.insert("BootSourceOverrideMode".into(), json!(UEFI));
        detail.push(' ');
        detail.push_str(UEFI);
    }
    Ok(BootOverride {
        patch: json!({ "Boot": fields }),
        detail,
    })
}

/// `PowerState` as the system says it, if it does.
pub fn power_state(system: &Value) -> Option<&str> {
    system.get("PowerState").and_then(Value::as_str)
}

/// Whether a power state counts as off (`Off`, `PoweringOff`); anything else, unknown
/// included, counts as on.
fn is_off(power_state: Option<&str>) -> bool {
    matches!(power_state, Some("Off" | "PoweringOff"))
}

/// Whether a power state counts as on for "power on": `On` or `PoweringOn`.
fn is_on(power_state: Option<&str>) -> bool {
    matches!(power_state, Some("On" | "PoweringOn"))
}

/// Where the system's reset action is and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetAction {
    /// The action's `target`, else `<system>/Actions/ComputerSystem.Reset`.
    pub target: String,
    /// `ResetType@Redfish.AllowableValues` written on the action (`None`: absent or empty).
    pub allowed: Option<Vec<String>>,
    /// `@Redfish.ActionInfo`: a resource whose `Parameters` list the allowed values (DMTF
    /// mockups, OpenBMC). Only worth reading when `allowed` is `None`.
    pub action_info: Option<String>,
}

/// The reset action of the system at `system_path`.
pub fn reset_action(system: &Value, system_path: &str) -> ResetAction {
    let action = system
        .get("Actions")
        .and_then(|actions| actions.get("#ComputerSystem.Reset"))
        .and_then(Value::as_object);
    let target = action
        .and_then(|a| a.get("target"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}{RESET_ACTION_SUFFIX}", system_path.trim_end_matches('/')));
    ResetAction {
        target,
        allowed: action.and_then(|a| allowable(a, "ResetType")),
        action_info: action
            .and_then(|a| a.get("@Redfish.ActionInfo"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    }
}

/// The `AllowableValues` of the `ResetType` parameter of an ActionInfo resource.
pub fn action_info_reset_types(action_info: &Value) -> Option<Vec<String>> {
    action_info
        .get("Parameters")?
        .as_array()?
        .iter()
        .find(|p| p.get("Name").and_then(Value::as_str) == Some("ResetType"))
        .and_then(|p| p.get("AllowableValues"))
        .and_then(strings)
}

/// What a reset is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Start the machine afresh (provisioning, `cycle`): on if off, restart if on.
    Restart,
    On,
    Off,
}

/// The reset decided for a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetChoice {
    /// Nothing to send: the system is already there (`already On`).
    Already(String),
    /// POST this `ResetType`.
    Send(&'static str),
}

/// The `ResetType` for `goal` given the power state and what the BMC allows (`None`:
/// anything), in order of preference:
///
/// - restart: Off → `On`, `ForceOn`, `PowerCycle`; On or unknown → `ForceRestart`,
///   `PowerCycle`, `GracefulRestart`;
/// - on: nothing when already On, else as restarting from Off;
/// - off: nothing when already Off, else `ForceOff`, `GracefulShutdown`.
pub fn choose_reset(
    goal: Goal,
    power_state: Option<&str>,
    allowed: Option<&[String]>,
) -> Result<ResetChoice, String> {
    const FROM_OFF: &[&str] = &["On", "ForceOn", "PowerCycle"];
    const FROM_ON: &[&str] = &["ForceRestart", "PowerCycle", "GracefulRestart"];
    const TO_OFF: &[&str] = &["ForceOff", "GracefulShutdown"];
    let (preferences, purpose) = match goal {
        Goal::On if is_on(power_state) => {
            return Ok(ResetChoice::Already(format!(
                "already {}",
                power_state.unwrap_or("On")
            )))
        }
        Goal::Off if is_off(power_state) => {
            return Ok(ResetChoice::Already(format!(
                "already {}",
                power_state.unwrap_or("Off")
            )))
        }
        Goal::Restart if !is_off(power_state) => (FROM_ON, "restart a system that is on"),
        Goal::Restart | Goal::On => (FROM_OFF, "power on a system that is off"),
        Goal::Off => (TO_OFF, "power off a system that is on"),
    };
    let fits = |candidate: &&&str| allowed.is_none_or(|a| a.iter().any(|v| v == **candidate));
    match preferences.iter().find(fits) {
        Some(choice) => Ok(ResetChoice::Send(choice)),
        None => Err(format!(
            "no ResetType fit to {purpose} (wanted one of {}): the BMC allows only {}",
            preferences.join(", "),
            quote(allowed.unwrap_or_default())
        )),
    }
}

/// The reset action's POST body.
pub fn reset_body(reset_type: &str) -> Value {
    json!({ "ResetType": reset_type })
}

/// The service root's link to the Systems collection, else the standard path.
pub fn systems_path(root: Option<&Value>) -> String {
    root.and_then(|r| r.get("Systems"))
        .and_then(|s| s.get("@odata.id"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or("/redfish/v1/Systems")
        .to_string()
}

/// The first member of a collection, as written.
pub fn first_member(collection: &Value) -> Option<&str> {
    collection
        .get("Members")?
        .as_array()?
        .iter()
        .find_map(|m| m.get("@odata.id").and_then(Value::as_str))
        .filter(|p| !p.is_empty())
}

/// `<property>@Redfish.AllowableValues` of `object` as strings; `None` when absent or empty.
fn allowable(object: &Map<String, Value>, property: &str) -> Option<Vec<String>> {
    object
        .get(&format!("{property}@Redfish.AllowableValues"))
        .and_then(strings)
}

/// The strings of a JSON array; `None` when it is no array or holds no string.
fn strings(value: &Value) -> Option<Vec<String>> {
    let values: Vec<String> = value
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    (!values.is_empty()).then_some(values)
}

/// Values from a BMC, quoted in an event: printable and bounded.
fn quote(values: &[String]) -> String {
    if values.is_empty() {
        return "nothing".to_string();
    }
    printable(&values.join(", "), MAX_QUOTED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(boot: Value, actions: Value, power: Option<&str>) -> Value {
        let mut system = json!({
            "@odata.id": "/redfish/v1/Systems/1",
            "Boot": boot,
            "Actions": actions,
        });
        if let Some(power) = power {
            system["PowerState"] = json!(power);
        }
        system
    }

    fn strings_of(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn boot_override_asks_for_pxe_once_and_uefi_where_offered() {
        // DMTF public rackmount: a mode without allowable values.
        let dmtf = system(
            json!({"BootSourceOverrideMode": "UEFI",
                   "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd"]}),
            json!({}),
            Some("On"),
        );
        let decided = boot_override(&dmtf).unwrap();
        assert_eq!(
            decided.patch,
            json!({"Boot": {"BootSourceOverrideTarget": "Pxe",
                            "BootSourceOverrideEnabled": "Once",
                            "BootSourceOverrideMode": "UEFI"}})
        );
        assert_eq!(decided.detail, "Pxe Once UEFI");

        // OpenBMC: both modes allowed, currently Legacy: UEFI is asked for.
        let openbmc = system(
            json!({"BootSourceOverrideMode": "Legacy",
                   "BootSourceOverrideMode@Redfish.AllowableValues": ["Legacy", "UEFI"]}),
            json!({}),
            None,
        );
        assert_eq!(boot_override(&openbmc).unwrap().detail, "Pxe Once UEFI");

        // No mode property at all (the synthetic fake, older BMCs): no mode sent.
        let no_mode = system(json!({"BootSourceOverrideTarget": "None"}), json!({}), None);
        let decided = boot_override(&no_mode).unwrap();
        assert_eq!(decided.detail, "Pxe Once");
        assert!(decided.patch["Boot"]
            .get("BootSourceOverrideMode")
            .is_none());

        // Legacy only: Legacy stays, nothing about the mode is sent.
        let legacy = system(
            json!({"BootSourceOverrideMode": "Legacy",
                   "BootSourceOverrideMode@Redfish.AllowableValues": ["Legacy"]}),
            json!({}),
            None,
        );
        let decided = boot_override(&legacy).unwrap();
        assert_eq!(decided.detail, "Pxe Once");
        assert!(decided.patch["Boot"]
            .get("BootSourceOverrideMode")
            .is_none());

        // An empty list allows anything (as sushy reads it).
        let empty = system(
            json!({"BootSourceOverrideTarget@Redfish.AllowableValues": []}),
            json!({}),
            None,
        );
        assert!(boot_override(&empty).is_ok());
    }

    #[test]
    fn boot_override_refuses_what_the_bmc_does_not_allow() {
        let no_pxe = system(
            json!({"BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Hdd", "Cd"]}),
            json!({}),
            None,
        );
        let reason = boot_override(&no_pxe).unwrap_err();
        assert!(reason.contains("None, Hdd, Cd"), "{reason}");
        assert!(reason.contains("BootSourceOverrideTarget"), "{reason}");

        let no_once = system(
            json!({"BootSourceOverrideEnabled@Redfish.AllowableValues": ["Disabled", "Continuous"]}),
            json!({}),
            None,
        );
        let reason = boot_override(&no_once).unwrap_err();
        assert!(reason.contains("Disabled, Continuous"), "{reason}");

        let no_boot = json!({"@odata.id": "/redfish/v1/Systems/1"});
        assert!(boot_override(&no_boot).unwrap_err().contains("no Boot"));

        // A hostile list is quoted printable and bounded.
        let hostile = system(
            json!({"BootSourceOverrideTarget@Redfish.AllowableValues":
                   ["Hdd\n2024-01-01 INFO forged log line", "x".repeat(5000)]}),
            json!({}),
            None,
        );
        let reason = boot_override(&hostile).unwrap_err();
        assert!(!reason.contains('\n'), "{reason}");
        assert!(reason.chars().count() < 600, "{}", reason.len());
    }

    #[test]
    fn reset_action_reads_the_target_inline_values_and_action_info() {
        let inline = system(
            json!({}),
            json!({"#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/1/Actions/Reset.Custom",
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff"]}}),
            None,
        );
        assert_eq!(
            reset_action(&inline, "/redfish/v1/Systems/1"),
            ResetAction {
                target: "/redfish/v1/Systems/1/Actions/Reset.Custom".into(),
                allowed: Some(strings_of(&["On", "ForceOff"])),
                action_info: None,
            }
        );
        let info = system(
            json!({}),
            json!({"#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/system/Actions/ComputerSystem.Reset",
                "@Redfish.ActionInfo": "/redfish/v1/Systems/system/ResetActionInfo"}}),
            None,
        );
        let action = reset_action(&info, "/redfish/v1/Systems/system");
        assert_eq!(action.allowed, None);
        assert_eq!(
            action.action_info.as_deref(),
            Some("/redfish/v1/Systems/system/ResetActionInfo")
        );
        let none = json!({});
        assert_eq!(
            reset_action(&none, "/redfish/v1/Systems/7/").target,
            "/redfish/v1/Systems/7/Actions/ComputerSystem.Reset"
        );
        // OpenBMC's ResetActionInfo, as recorded.
        let action_info = json!({"Parameters": [
            {"Name": "Other", "AllowableValues": ["X"]},
            {"AllowableValues": ["On", "ForceOff", "PowerCycle"], "DataType": "String",
             "Name": "ResetType", "Required": true}]});
        assert_eq!(
            action_info_reset_types(&action_info),
            Some(strings_of(&["On", "ForceOff", "PowerCycle"]))
        );
        assert_eq!(action_info_reset_types(&json!({"Parameters": []})), None);
    }

    #[test]
    fn resets_follow_the_power_state_and_the_allowed_values() {
        let all = None;
        let only = |values: &[&str]| Some(strings_of(values));
        let send = |t: &'static str| Ok(ResetChoice::Send(t));
        let check = |goal, state: Option<&str>, allowed: Option<Vec<String>>, expected| {
            assert_eq!(
                choose_reset(goal, state, allowed.as_deref()),
                expected,
                "{goal:?} from {state:?} with {allowed:?}"
            );
        };
        check(Goal::Restart, Some("On"), all.clone(), send("ForceRestart"));
        check(Goal::Restart, Some("Off"), all.clone(), send("On"));
        check(Goal::Restart, None, all.clone(), send("ForceRestart"));
        check(
            Goal::Restart,
            Some("Paused"),
            all.clone(),
            send("ForceRestart"),
        );
        check(Goal::Restart, Some("PoweringOff"), all.clone(), send("On"));
        check(
            Goal::Restart,
            Some("On"),
            only(&["On", "ForceOff", "PowerCycle"]),
            send("PowerCycle"),
        );
        check(
            Goal::Restart,
            Some("On"),
            only(&["On", "GracefulRestart"]),
            send("GracefulRestart"),
        );
        check(
            Goal::Restart,
            Some("Off"),
            only(&["ForceOn", "ForceOff"]),
            send("ForceOn"),
        );
        check(
            Goal::Restart,
            Some("Off"),
            only(&["PowerCycle"]),
            send("PowerCycle"),
        );
        check(
            Goal::On,
            Some("On"),
            all.clone(),
            Ok(ResetChoice::Already("already On".into())),
        );
        check(Goal::On, Some("Off"), all.clone(), send("On"));
        check(Goal::On, None, all.clone(), send("On"));
        check(
            Goal::Off,
            Some("Off"),
            all.clone(),
            Ok(ResetChoice::Already("already Off".into())),
        );
        check(Goal::Off, Some("On"), all.clone(), send("ForceOff"));
        check(
            Goal::Off,
            Some("On"),
            only(&["On", "GracefulShutdown"]),
            send("GracefulShutdown"),
        );

        let reason =
            choose_reset(Goal::Restart, Some("On"), Some(&strings_of(&["Nmi", "On"]))).unwrap_err();
        assert!(reason.contains("allows only Nmi, On"), "{reason}");
        assert!(
            reason.contains("ForceRestart, PowerCycle, GracefulRestart"),
            "{reason}"
        );
        let reason = choose_reset(Goal::Off, Some("On"), Some(&strings_of(&["On"]))).unwrap_err();
        assert!(reason.contains("power off"), "{reason}");
    }

    #[test]
    fn intents_have_their_steps() {
        assert_eq!(
            PowerIntent::Provision.steps(),
            &[PowerStep::BootOverride, PowerStep::Reset]
        );
        assert_eq!(
            PowerIntent::Operator(PowerAction::Status).steps(),
            &[PowerStep::Status]
        );
        assert_eq!(
            PowerIntent::Operator(PowerAction::Off).first_step(),
            PowerStep::Reset
        );
        assert_eq!(
            PowerIntent::Operator(PowerAction::Cycle).goal(),
            Some(Goal::Restart)
        );
        assert_eq!(PowerIntent::Operator(PowerAction::Status).goal(), None);
        // A retirement powers off only: one reset step towards Off, skipped when Off.
        let retire = PowerIntent::Retire { wiped: true };
        assert_eq!(retire.steps(), &[PowerStep::Reset]);
        assert_eq!(retire.goal(), Some(Goal::Off));
        assert_eq!(
            choose_reset(Goal::Off, Some("Off"), None),
            Ok(ResetChoice::Already("already Off".into()))
        );
    }

    #[test]
    fn systems_are_found_from_the_root() {
        assert_eq!(
            systems_path(Some(&json!({"Systems": {"@odata.id": "/redfish/v1/Sys"}}))),
            "/redfish/v1/Sys"
        );
        assert_eq!(systems_path(None), "/redfish/v1/Systems");
        assert_eq!(
            first_member(&json!({"Members": [{"x": 1}, {"@odata.id": "/redfish/v1/Systems/a"}]})),
            Some("/redfish/v1/Systems/a")
        );
        assert_eq!(first_member(&json!({"Members": []})), None);
        assert_eq!(first_member(&json!({})), None);
    }
}
