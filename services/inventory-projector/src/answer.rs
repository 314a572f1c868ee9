//! Pure answers of the query service: request subject and payload in, JSON reply or a
//! micro-service error code out. No NATS here, so tests drive it with an in-memory projection.

use metal_core::query::MachineRef;
use metal_core::subjects;
use metal_projection::{Projection, ProjectionError};
use serde::Serialize;

/// An error reply: `code` goes to `Nats-Service-Error-Code`, `message` to `Nats-Service-Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: usize,
    pub message: String,
}

impl QueryError {
    pub fn bad_request(message: impl Into<String>) -> QueryError {
        QueryError {
            code: 400,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> QueryError {
        QueryError {
            code: 404,
            message: message.into(),
        }
    }

    /// The service cannot answer now, for the reason given.
    pub fn unavailable(message: impl Into<String>) -> QueryError {
        QueryError {
            code: 503,
            message: message.into(),
        }
    }

    pub fn internal(error: &(dyn std::error::Error + 'static)) -> QueryError {
        QueryError {
            code: 500,
            message: metal_core::error_chain(error),
        }
    }
}

impl From<QueryError> for async_nats::service::error::Error {
    fn from(error: QueryError) -> Self {
        // It travels in a header: a line break in it would make async-nats panic.
        async_nats::service::error::Error {
            status: metal_core::one_line(&error.message),
            code: error.code,
        }
    }
}

/// The machine reference of a request: a `MachineRef` JSON object, or (for people typing
/// `nats req`) the bare reference text.
pub fn machine_ref(payload: &[u8]) -> Result<String, QueryError> {
    if let Ok(request) = serde_json::from_slice::<MachineRef>(payload) {
        return Ok(request.machine);
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| {
            QueryError::bad_request("request is neither a MachineRef nor a machine reference")
        })?
        .trim();
    if text.is_empty() || text.starts_with('{') {
        return Err(QueryError::bad_request(
            "request must be {\"machine\": \"<BMC MAC, host MAC or machine id>\"}",
        ));
    }
    Ok(text.to_string())
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, QueryError> {
    serde_json::to_vec(value).map_err(|e| QueryError::internal(&e))
}

fn from_projection(error: ProjectionError) -> QueryError {
    match error {
        ProjectionError::BadReference(_) => QueryError::bad_request(error.to_string()),
        other => QueryError::internal(&other),
    }
}

/// Answers one of the read-only queries (machines, machine, history, status, unknown,
/// drift).
pub fn answer(
    projection: &Projection,
    subject: &str,
    payload: &[u8],
) -> Result<Vec<u8>, QueryError> {
    match subject {
        subjects::QUERY_MACHINES => json(&projection.machines().map_err(from_projection)?),
        subjects::QUERY_STATUS => json(&projection.status().map_err(from_projection)?),
        // MACs that asked boot-api to netboot and that no machine has as a host NIC.
        subjects::QUERY_UNKNOWN => json(&projection.unknown_macs().map_err(from_projection)?),
        // Machines whose firmware differs from the most common version of their model.
        subjects::QUERY_DRIFT => json(&projection.firmware_drift().map_err(from_projection)?),
        subjects::QUERY_MACHINE => {
            let reference = machine_ref(payload)?;
            match projection.machine(&reference).map_err(from_projection)? {
                Some(detail) => json(&detail),
                None => Err(QueryError::not_found(format!("no machine {reference}"))),
            }
        }
        subjects::QUERY_HISTORY => {
            let reference = machine_ref(payload)?;
            match projection.history(&reference).map_err(from_projection)? {
                Some(history) => json(&history),
                None => Err(QueryError::not_found(format!("no machine {reference}"))),
            }
        }
        other => Err(QueryError::bad_request(format!(
            "{other} is not a read query"
        ))),
    }
}
