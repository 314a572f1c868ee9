//! Parsing of the public onboarding entry point: a bare MAC in any notation, a JSON
//! string, or a JSON object. Anything else is a rejection with a reason, never an error.

use serde::Deserialize;
use uuid::Uuid;

use crate::mac::Mac;

/// Larger payloads are rejected unread: a request is a MAC or a tiny JSON object.
pub const MAX_REQUEST_BYTES: usize = 4096;
const EXCERPT_CHARS: usize = 64;
/// Longest excerpt in bytes (escapes such as `\\u{1f600}` make characters long).
pub const MAX_EXCERPT_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct OnboardRequest {
    pub bmc_mac: Mac,
    pub request_id: Option<Uuid>,
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestRejection {
    pub reason: String,
    pub excerpt: String,
    /// A request id, when the payload was JSON that carried one.
    pub request_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParsedRequest {
    Valid(OnboardRequest),
    Invalid(RequestRejection),
}

/// The JSON form of an onboarding request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(alias = "mac")]
    bmc_mac: String,
    #[serde(default)]
    request_id: Option<Uuid>,
    #[serde(default)]
    requested_by: Option<String>,
}

pub fn parse_onboard_request(payload: &[u8]) -> ParsedRequest {
    let reject = |reason: String, request_id: Option<Uuid>| {
        ParsedRequest::Invalid(RequestRejection {
            reason,
            excerpt: excerpt(payload),
            request_id,
        })
    };
    if payload.len() > MAX_REQUEST_BYTES {
        return reject(
            format!(
                "payload is {} bytes; an onboarding request is at most {MAX_REQUEST_BYTES} bytes",
                payload.len()
            ),
            None,
        );
    }
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text.trim(),
        Err(error) => {
            return reject(
                format!(
                    "payload is not valid UTF-8 (at byte {})",
                    error.valid_up_to()
                ),
                None,
            )
        }
    };
    if text.is_empty() {
        return reject(
            "payload is empty: expected a BMC MAC address or a JSON object with \"bmc_mac\"".into(),
            None,
        );
    }
    if text.starts_with('{') {
        let request: JsonRequest = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(error) => {
                let request_id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|value| value.get("request_id")?.as_str()?.parse().ok());
                return reject(
                    format!("JSON request is not of the form {{\"bmc_mac\": \"aa:bb:cc:dd:ee:ff\", \"request_id\"?: uuid, \"requested_by\"?: string}}: {error}"),
                    request_id,
                );
            }
        };
        return match Mac::parse_device(&request.bmc_mac) {
            Ok(bmc_mac) => ParsedRequest::Valid(OnboardRequest {
                bmc_mac,
                request_id: request.request_id,
                requested_by: request.requested_by,
            }),
            Err(error) => reject(format!("bmc_mac: {error}"), request.request_id),
        };
    }
    let mac_text = if text.starts_with('"') {
        match serde_json::from_str::<String>(text) {
            Ok(inner) => inner,
            Err(error) => {
                return reject(format!("payload is not a valid JSON string: {error}"), None)
            }
        }
    } else {
        text.to_string()
    };
    match Mac::parse_device(&mac_text) {
        Ok(bmc_mac) => ParsedRequest::Valid(OnboardRequest {
            bmc_mac,
            request_id: None,
            requested_by: None,
        }),
        Err(error) => reject(error.to_string(), None),
    }
}

/// The start of a payload, printable and bounded, for a rejection event: at most
/// [`EXCERPT_CHARS`] characters of it, escaped, and never more than [`MAX_EXCERPT_LEN`] bytes.
pub fn excerpt(payload: &[u8]) -> String {
    let head = &payload[..payload.len().min(EXCERPT_CHARS * 4)];
    let lossy = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut truncated = head.len() < payload.len();
    for (index, c) in lossy.chars().enumerate() {
        let escaped: String = c.escape_default().collect();
        if index >= EXCERPT_CHARS || out.len() + escaped.len() > MAX_EXCERPT_LEN - '…'.len_utf8()
        {
            truncated = true;
            break;
        }
        out.push_str(&escaped);
    }
    if truncated {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &[u8], expect_valid_mac: Option<&str>, reason_contains: &str) {
        match parse_onboard_request(payload) {
            ParsedRequest::Valid(request) => {
                assert_eq!(Some(request.bmc_mac.to_string().as_str()), expect_valid_mac)
            }
            ParsedRequest::Invalid(rejection) => {
                assert!(
                    expect_valid_mac.is_none(),
                    "unexpected rejection: {}",
                    rejection.reason
                );
                assert!(
                    rejection.reason.contains(reason_contains),
                    "reason {:?} lacks {reason_contains:?}",
                    rejection.reason
                );
                assert!(rejection.excerpt.len() <= MAX_EXCERPT_LEN);
            }
        }
    }

    #[test]
    fn table() {
        let mac = Some("aa:bb:cc:dd:ee:ff");
        check(b"aa:bb:cc:dd:ee:ff", mac, "");
        check(b"AA-BB-CC-DD-EE-FF\n", mac, "");
        check(b"aabb.ccdd.eeff", mac, "");
        check(b"aabbccddeeff", mac, "");
        check(b"\"aabbccddeeff\"", mac, "");
        check(br#"{"bmc_mac":"aabbccddeeff"}"#, mac, "");
        check(
            br#"{"mac":"AA:BB:CC:DD:EE:FF","requested_by":"ops"}"#,
            mac,
            "",
        );
        check(b"", None, "empty");
        check(b"   \n", None, "empty");
        check(b"aa:bb:cc:dd:ee", None, "not a MAC");
        check(b"01:00:5e:00:00:fb", None, "multicast");
        check(&[0xff, 0xfe, 0x41], None, "UTF-8");
        check(&vec![b'a'; 10 * 1024 * 1024], None, "at most");
        check(br#"{"bmc":"aa:bb:cc:dd:ee:ff"}"#, None, "JSON request");
        check(br#"{"bmc_mac": 7}"#, None, "JSON request");
        check(br#"["aa:bb:cc:dd:ee:ff"]"#, None, "not a MAC");
        check(br#"{"bmc_mac":"zz"}"#, None, "bmc_mac");
        check(b"{not json", None, "JSON request");
    }

    #[test]
    fn rejected_json_keeps_its_request_id() {
        let id = "7d1b4a3e-9b59-4a8e-8b16-6a8a2b0d1f00";
        let payload = format!(r#"{{"bmc_mac":"nope","request_id":"{id}"}}"#);
        let ParsedRequest::Invalid(rejection) = parse_onboard_request(payload.as_bytes()) else {
            panic!("expected a rejection");
        };
        assert_eq!(rejection.request_id, Some(id.parse().unwrap()));
    }

    #[test]
    fn excerpt_is_bounded_and_printable() {
        let text = excerpt(&[0u8, 0x1b, b'a', 0xff]);
        assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        assert!(excerpt(&vec![b'x'; 1000]).ends_with('…'));
        let hostile = "😀\u{7}".repeat(100);
        let text = excerpt(hostile.as_bytes());
        assert!(text.len() <= MAX_EXCERPT_LEN, "{} bytes", text.len());
        assert!(text.ends_with('…'));
    }
}
