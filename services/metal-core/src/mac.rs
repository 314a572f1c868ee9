//! MAC addresses: parsed once at the edge from any common notation, stored normalised.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A unicast, non-zero 48-bit MAC address, displayed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("MAC address is empty")]
    Empty,
    #[error("a MAC address is at most 32 characters, not {0} bytes")]
    TooLong(usize),
    #[error("{0:?} is not a MAC address: expected 12 hex digits as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff")]
    Malformed(String),
    #[error("{0} is a multicast MAC address, not a device")]
    Multicast(String),
    #[error("{0} is the all-zero MAC address")]
    Zero(String),
}

impl Mac {
    pub const fn from_bytes(bytes: [u8; 6]) -> Self {
        Mac(bytes)
    }

    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }

    /// Parses a MAC in any common notation without the unicast/non-zero checks,
    /// for reading MACs that a BMC reports (which may legitimately be odd).
    pub fn parse_any(input: &str) -> Result<Mac, MacError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(MacError::Empty);
        }
        if trimmed.len() > 32 {
            return Err(MacError::TooLong(trimmed.len()));
        }
        let malformed = || MacError::Malformed(trimmed.to_string());
        let digits: Vec<u8> = if trimmed.contains(':') || trimmed.contains('-') {
            let separator = if trimmed.contains(':') { ':' } else { '-' };
            let groups: Vec<&str> = trimmed.split(separator).collect();
            if groups.len() != 6 || groups.iter().any(|g| g.is_empty() || g.len() > 2) {
                return Err(malformed());
            }
            let mut out = Vec::with_capacity(12);
            for group in groups {
                // A one-digit group ("a:b:c:d:e:f", as some tools print) is zero-padded.
                if group.len() == 1 {
                    out.push(b'0');
                }
                out.extend_from_slice(group.as_bytes());
            }
            out
        } else if trimmed.contains('.') {
            let groups: Vec<&str> = trimmed.split('.').collect();
            if groups.len() != 3 || groups.iter().any(|g| g.len() != 4) {
                return Err(malformed());
            }
            groups.concat().into_bytes()
        } else {
            trimmed.as_bytes().to_vec()
        };
        if digits.len() != 12 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(malformed());
        }
        let mut bytes = [0u8; 6];
        for (index, pair) in digits.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| malformed())?;
            bytes[index] = u8::from_str_radix(text, 16).map_err(|_| malformed())?;
        }
        Ok(Mac(bytes))
    }

    /// Parses a MAC that names a device: unicast and not all zeros.
    pub fn parse_device(input: &str) -> Result<Mac, MacError> {
        let mac = Mac::parse_any(input)?;
        if mac.0 == [0; 6] {
            return Err(MacError::Zero(mac.to_string()));
        }
        if mac.0[0] & 1 == 1 {
            return Err(MacError::Multicast(mac.to_string()));
        }
        Ok(mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mac::parse_device(s)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Mac::parse_any(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, ()>) {
        let got = Mac::parse_device(input)
            .map(|m| m.to_string())
            .map_err(|_| ());
        assert_eq!(got.as_deref().map_err(|_| ()), expected, "input {input:?}");
    }

    #[test]
    fn notations() {
        let ok = Ok("aa:bb:cc:dd:ee:0f");
        check("aa:bb:cc:dd:ee:0f", ok);
        check("AA:BB:CC:DD:EE:0F", ok);
        check("AA-BB-CC-DD-EE-0F", ok);
        check("aabb.ccdd.ee0f", ok);
        check("aabbccddee0f", ok);
        check("  aabbccddee0f\n", ok);
        check("aa:bb:cc:dd:ee:f", Ok("aa:bb:cc:dd:ee:0f"));
        check("", Err(()));
        check("aa:bb:cc:dd:ee", Err(()));
        check("aa:bb:cc:dd:ee:ff:00", Err(()));
        check("aa:bb-cc:dd:ee:ff", Err(()));
        check("gg:bb:cc:dd:ee:ff", Err(()));
        check("aabbccddeef", Err(()));
        check("01:00:5e:00:00:01", Err(()));
        check("ff:ff:ff:ff:ff:ff", Err(()));
        check("00:00:00:00:00:00", Err(()));
        check("+a:bb:cc:dd:ee:ff", Err(()));
        check("ááá", Err(()));
    }

    #[test]
    fn bmc_reported_macs_may_be_odd() {
        assert!(Mac::parse_any("23:11:8A:33:CF:EA").is_ok());
        assert!(Mac::parse_device("23:11:8A:33:CF:EA").is_err());
    }
}
