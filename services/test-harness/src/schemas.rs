//! Validation of events against the JSON Schemas in schemas/: every test that observes
//! an event calls [`validate_event`], so an event that drifts from its schema fails.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::paths::workspace_root;

fn load(relative: &str) -> Value {
    let path = workspace_root().join("schemas").join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read schema {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("schema {} is not JSON: {e}", path.display()))
}

fn compile(schema: &Value, name: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"))
}

struct Validators {
    envelope: jsonschema::Validator,
    onboard_request: jsonschema::Validator,
    data: HashMap<String, jsonschema::Validator>,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let mut data = HashMap::new();
        for subject in metal_core::subjects::EVENT_SUBJECTS {
            let name = format!("events/{subject}.schema.json");
            data.insert(subject.to_string(), compile(&load(&name), &name));
        }
        Validators {
            envelope: compile(&load("envelope.schema.json"), "envelope.schema.json"),
            onboard_request: compile(
                &load("onboard-request.schema.json"),
                "onboard-request.schema.json",
            ),
            data,
        }
    })
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Validates an envelope and its `data` against schemas/. Returns every violation.
pub fn check_event(event: &Value) -> Result<(), Vec<String>> {
    let validators = validators();
    let mut problems = errors(&validators.envelope, event);
    let event_type = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match validators.data.get(event_type) {
        Some(validator) => {
            problems.extend(errors(validator, event.get("data").unwrap_or(&Value::Null)))
        }
        None => problems.push(format!("no schema for event type {event_type:?}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Panics with every violation when `event` does not match its schema.
pub fn validate_event(event: &metal_core::Envelope) {
    let value =
        serde_json::to_value(event).unwrap_or_else(|e| panic!("event does not serialise: {e}"));
    if let Err(problems) = check_event(&value) {
        panic!(
            "event {} violates its schema:\n  {}\n{value:#}",
            event.event_type,
            problems.join("\n  ")
        );
    }
}

/// Validates the JSON form of an onboarding request.
pub fn check_onboard_request(request: &Value) -> Result<(), Vec<String>> {
    let problems = errors(&validators().onboard_request, request);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
