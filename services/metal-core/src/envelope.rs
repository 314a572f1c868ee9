//! The common event envelope and decoding of stream messages into it.
//!
//! Every event on `machine.>` is an [`Envelope`] except `machine.onboard.requested`,
//! which is the public entry point and arrives raw (a bare MAC or a small JSON object,
//! exactly what `nats pub` sends). [`decode`] turns either into an envelope, so that
//! every consumer sees the same value for the same stream message.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::{OnboardRejected, OnboardRequested};
use crate::ids::{derived_event_id, raw_request_event_id, MachineId};
use crate::intake::{parse_onboard_request, ParsedRequest};
use crate::mac::Mac;
use crate::subjects;

/// One event as stored on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub machine_id: Option<MachineId>,
    pub bmc_mac: Option<Mac>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event data of type {event_type} could not be encoded")]
    Encode {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("payload on {subject} is not a valid event envelope")]
    Decode {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("payload on {subject} has type {event_type}, which does not match its subject")]
    SubjectMismatch { subject: String, event_type: String },
    #[error("data of {event_type} event does not have the expected shape")]
    Data {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Builds the event that answers `cause`, with the deterministic id derived from
    /// the cause and the output type (also its `Nats-Msg-Id`).
    pub fn answering<D: Serialize>(
        cause: &Envelope,
        event_type: &str,
        data: &D,
        now: OffsetDateTime,
    ) -> Result<Envelope, EnvelopeError> {
        Ok(Envelope {
            event_id: derived_event_id(cause.event_id, event_type),
            event_type: event_type.to_string(),
            machine_id: cause.machine_id,
            bmc_mac: cause.bmc_mac,
            time: now,
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.event_id),
            data: serde_json::to_value(data).map_err(|source| EnvelopeError::Encode {
                event_type: event_type.to_string(),
                source,
            })?,
        })
    }

    /// Reads `data` as the typed payload of this event type (from the value in place: a
    /// scraped inventory's tree is not copied first).
    pub fn data_as<D: for<'de> Deserialize<'de>>(&self) -> Result<D, EnvelopeError> {
        D::deserialize(&self.data).map_err(|source| EnvelopeError::Data {
            event_type: self.event_type.clone(),
            source,
        })
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, uuids and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An envelope whose `data` is serialised straight from its typed payload, without an
/// intermediate `serde_json::Value`: for events published in bulk (a boot storm's). Its
/// JSON decodes to the same [`Envelope`] as one built with `serde_json::to_value(data)`.
#[derive(Debug, Serialize)]
pub struct EnvelopeOf<'a, D: Serialize> {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub machine_id: Option<MachineId>,
    pub bmc_mac: Option<Mac>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub data: &'a D,
}

impl<D: Serialize> EnvelopeOf<'_, D> {
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        serde_json::to_vec(self).map_err(|source| EnvelopeError::Encode {
            event_type: self.event_type.to_string(),
            source,
        })
    }
}

impl EnvelopeOf<'_, ()> {
    /// This envelope's JSON with `data` as its data.
    pub fn with_data<E: Serialize>(&self, data: &E) -> Result<Vec<u8>, EnvelopeError> {
        EnvelopeOf {
            event_id: self.event_id,
            event_type: self.event_type,
            machine_id: self.machine_id,
            bmc_mac: self.bmc_mac,
            time: self.time,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            data,
        }
        .to_json_bytes()
    }
}

/// An envelope read with its `data` typed straight from the JSON text, skipping the
/// `serde_json::Value` tree [`decode`] builds: for the large events replay decodes in bulk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedEnvelope<D> {
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    machine_id: Option<MachineId>,
    bmc_mac: Option<Mac>,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    data: D,
}

/// Decodes an event of type `D` without the intermediate tree. `Some((header, data))` only
/// where [`decode`] gives `Decoded::Event(envelope)` whose header equals `header` (whose
/// `data` is null) and `envelope.data_as::<D>()` gives `data`; `None` otherwise, and then
/// [`decode`] says what the message is. Duplicate keys, which the tree keeps the last of
/// and typed decoding rejects, are such a `None`.
pub fn decode_event_as<D: for<'de> Deserialize<'de>>(
    subject: &str,
    payload: &[u8],
) -> Option<(Envelope, D)> {
    if subject == subjects::ONBOARD_REQUESTED {
        return None;
    }
    let typed: TypedEnvelope<D> = serde_json::from_slice(payload).ok()?;
    if typed.event_type != subject {
        return None;
    }
    let header = Envelope {
        event_id: typed.event_id,
        event_type: typed.event_type,
        machine_id: typed.machine_id,
        bmc_mac: typed.bmc_mac,
        time: typed.time,
        correlation_id: typed.correlation_id,
        causation_id: typed.causation_id,
        data: serde_json::Value::Null,
    };
    Some((header, typed.data))
}

/// Where a message sits in the stream; raw requests derive their identity from it.
#[derive(Debug, Clone, Copy)]
pub struct StreamPosition<'a> {
    pub stream: &'a str,
    pub sequence: u64,
    pub published: OffsetDateTime,
}

/// What a stream message means.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A well-formed envelope (for `onboard.requested`, one synthesised from the raw request).
    Event(Envelope),
    /// An onboarding request that must be answered with `machine.onboard.rejected`.
    /// `rejection` is that answer, ready to publish.
    RejectedRequest {
        request_event_id: Uuid,
        rejection: Envelope,
    },
    /// A message on some other subject that is not an envelope. Kept in the log, never fatal.
    Malformed { subject: String, reason: String },
}

/// Decodes one stream message. Pure: the same message always decodes the same way.
pub fn decode(
    subject: &str,
    msg_id_header: Option<&str>,
    payload: &[u8],
    position: StreamPosition<'_>,
) -> Decoded {
    if subject == subjects::ONBOARD_REQUESTED {
        return decode_onboard_request(msg_id_header, payload, position);
    }
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(envelope) if envelope.event_type == subject => Decoded::Event(envelope),
        Ok(envelope) => Decoded::Malformed {
            subject: subject.to_string(),
            reason: EnvelopeError::SubjectMismatch {
                subject: subject.to_string(),
                event_type: envelope.event_type,
            }
            .to_string(),
        },
        Err(source) => Decoded::Malformed {
            subject: subject.to_string(),
            reason: crate::error_chain(&EnvelopeError::Decode {
                subject: subject.to_string(),
                source,
            }),
        },
    }
}

fn decode_onboard_request(
    msg_id_header: Option<&str>,
    payload: &[u8],
    position: StreamPosition<'_>,
) -> Decoded {
    let header_id = msg_id_header.and_then(|text| Uuid::parse_str(text.trim()).ok());
    let fallback_id =
        header_id.unwrap_or_else(|| raw_request_event_id(position.stream, position.sequence));
    match parse_onboard_request(payload) {
        ParsedRequest::Valid(request) => {
            let event_id = request.request_id.unwrap_or(fallback_id);
            let data = OnboardRequested {
                bmc_mac: request.bmc_mac,
                requested_by: request.requested_by,
                stream_sequence: position.sequence,
            };
            Decoded::Event(Envelope {
                event_id,
                event_type: subjects::ONBOARD_REQUESTED.to_string(),
                machine_id: Some(MachineId::from_bmc_mac(&request.bmc_mac)),
                bmc_mac: Some(request.bmc_mac),
                time: position.published,
                correlation_id: event_id,
                causation_id: None,
                data: serde_json::to_value(&data).unwrap_or_default(),
            })
        }
        ParsedRequest::Invalid(rejection) => {
            let request_event_id = rejection.request_id.unwrap_or(fallback_id);
            let data = OnboardRejected {
                reason: rejection.reason,
                payload_bytes: payload.len() as u64,
                payload_excerpt: rejection.excerpt,
                stream_sequence: position.sequence,
            };
            Decoded::RejectedRequest {
                request_event_id,
                rejection: Envelope {
                    event_id: derived_event_id(request_event_id, subjects::ONBOARD_REJECTED),
                    event_type: subjects::ONBOARD_REJECTED.to_string(),
                    machine_id: None,
                    bmc_mac: None,
                    time: position.published,
                    correlation_id: request_event_id,
                    causation_id: Some(request_event_id),
                    data: serde_json::to_value(&data).unwrap_or_default(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BmcLocated, BootPath, BootServed};

    fn position() -> StreamPosition<'static> {
        StreamPosition {
            stream: subjects::STREAM,
            sequence: 9,
            published: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// What `decode` and `data_as` make of a payload, in `decode_event_as`'s terms.
    fn through_the_tree(subject: &str, payload: &[u8]) -> Option<(Envelope, BmcLocated)> {
        match decode(subject, None, payload, position()) {
            Decoded::Event(envelope) => {
                let data = envelope.data_as::<BmcLocated>().ok()?;
                Some((
                    Envelope {
                        data: serde_json::Value::Null,
                        ..envelope
                    },
                    data,
                ))
            }
            _ => None,
        }
    }

    #[test]
    fn typed_decoding_agrees_with_the_tree_or_declines() {
        let cause = Envelope {
            event_id: Uuid::from_u128(1),
            event_type: subjects::ONBOARD_REQUESTED.into(),
            machine_id: Some(MachineId(Uuid::from_u128(2))),
            bmc_mac: Some(Mac::from_bytes([2, 0, 0, 0, 0, 1])),
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            correlation_id: Uuid::from_u128(1),
            causation_id: None,
            data: serde_json::Value::Null,
        };
        let located = BmcLocated {
            bmc_ip: Some("192.0.2.7".into()),
            redfish_url: "https://192.0.2.7".into(),
            source: "static".into(),
            ..Default::default()
        };
        let event =
            Envelope::answering(&cause, subjects::BMC_LOCATED, &located, cause.time).unwrap();
        let good = event.to_json_bytes();
        let typed = decode_event_as::<BmcLocated>(subjects::BMC_LOCATED, &good);
        assert!(typed.is_some(), "a well-formed event decodes");
        assert_eq!(typed, through_the_tree(subjects::BMC_LOCATED, &good));
        assert_eq!(typed.map(|(_, data)| data), Some(located));

        let text = String::from_utf8(good).unwrap();
        let declined = [
            // The tree keeps the last of duplicate keys; typed decoding refuses them.
            (
                subjects::BMC_LOCATED,
                text.replace("\"source\":", "\"source\":\"unifi\",\"source\":"),
                true,
            ),
            (subjects::BOOT_SERVED, text.clone(), false),
            (
                subjects::BMC_LOCATED,
                text.replace("\"source\":", "\"surprise\":1,\"source\":"),
                false,
            ),
            (
                subjects::BMC_LOCATED,
                text.replace("\"causation_id\":", "\"extra\":1,\"causation_id\":"),
                false,
            ),
            (
                subjects::BMC_LOCATED,
                text[..text.len() - 1].to_string(),
                false,
            ),
            (subjects::ONBOARD_REQUESTED, text.clone(), false),
        ];
        for (subject, payload, tree_accepts) in declined {
            assert_eq!(
                decode_event_as::<BmcLocated>(subject, payload.as_bytes()),
                None,
                "{subject}: {payload}"
            );
            assert_eq!(
                through_the_tree(subject, payload.as_bytes()).is_some(),
                tree_accepts,
                "{subject}: {payload}"
            );
        }
    }

    #[test]
    fn an_envelope_encoded_from_typed_data_decodes_like_one_built_with_a_value() {
        let data = BootServed {
            mac: Mac::from_bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            path: BootPath::Pixiecore,
            provision_id: Uuid::from_u128(7),
            profile: "G1 \"quoted\"".to_string(),
        };
        let head = EnvelopeOf {
            event_id: Uuid::from_u128(1),
            event_type: subjects::BOOT_SERVED,
            machine_id: Some(MachineId(Uuid::from_u128(2))),
            bmc_mac: Some(Mac::from_bytes([2, 0, 0, 0, 0, 1])),
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            correlation_id: Uuid::from_u128(7),
            causation_id: None,
            data: &(),
        };
        let built = Envelope {
            event_id: head.event_id,
            event_type: head.event_type.to_string(),
            machine_id: head.machine_id,
            bmc_mac: head.bmc_mac,
            time: head.time,
            correlation_id: head.correlation_id,
            causation_id: head.causation_id,
            data: serde_json::to_value(&data).unwrap(),
        };
        let encoded = head.with_data(&data).unwrap();
        let decoded: Envelope = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(decoded, built);
        let as_value: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
        let built_value: serde_json::Value =
            serde_json::from_slice(&built.to_json_bytes()).unwrap();
        assert_eq!(as_value, built_value, "the same JSON, key order aside");
        match decode(
            subjects::BOOT_SERVED,
            Some(&head.event_id.to_string()),
            &encoded,
            StreamPosition {
                stream: subjects::STREAM,
                sequence: 1,
                published: head.time,
            },
        ) {
            Decoded::Event(envelope) => assert_eq!(envelope, built),
            other => panic!("{other:?}"),
        }
    }
}
