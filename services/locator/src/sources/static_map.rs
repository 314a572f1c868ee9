//! The static map: BMC addresses an operator wrote into the config (`locator.static`),
//! and how a bare IP becomes a Redfish base URL.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::future::BoxFuture;
use metal_core::config::StaticBmc;
use metal_core::Mac;
use time::OffsetDateTime;

use super::{Answer, Sighting, Source, SourceKind};

#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    #[error("static BMC {mac}: address {address:?} is not an IP, host:port or http(s):// URL")]
    BadAddress { mac: Mac, address: String },
}

/// `locator.static` as a source.
#[derive(Debug, Clone)]
pub struct StaticMap {
    entries: HashMap<Mac, Sighting>,
}

impl StaticMap {
    pub fn new(
        entries: &[StaticBmc],
        scheme: &str,
        port: Option<u16>,
    ) -> Result<StaticMap, StaticError> {
        let mut map = HashMap::new();
        for entry in entries {
            let sighting = static_address(&entry.address, scheme, port).ok_or_else(|| {
                StaticError::BadAddress {
                    mac: entry.bmc_mac,
                    address: entry.address.clone(),
                }
            })?;
            map.insert(entry.bmc_mac, sighting);
        }
        Ok(StaticMap { entries: map })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Source for StaticMap {
    fn kind(&self) -> SourceKind {
        SourceKind::Static
    }

    fn name(&self) -> String {
        String::new()
    }

    fn lookup(&self, mac: Mac, _now: OffsetDateTime) -> BoxFuture<'_, Answer> {
        let answer = match self.entries.get(&mac) {
            Some(sighting) => Answer::Seen(vec![sighting.clone()]),
            None => Answer::NotSeen(format!("not among {} entries", self.entries.len())),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// The Redfish base URL of a host: `scheme://host[:port]`, IPv6 in brackets.
pub fn url_for_host(host: &str, scheme: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

fn sighting(ip: Option<IpAddr>, redfish_url: String) -> Sighting {
    Sighting {
        ip,
        redfish_url: Some(redfish_url),
        last_seen: None,
        current: true,
        detail: "static entry".into(),
    }
}

/// A static address: an IP, `host:port`, or a full `http(s)://` base URL.
fn static_address(address: &str, scheme: &str, port: Option<u16>) -> Option<Sighting> {
    let address = address.trim();
    if address.is_empty() || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if let Some(rest) = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
    {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return None;
        }
        return Some(sighting(
            host_of(authority).parse::<IpAddr>().ok(),
            address.trim_end_matches('/').to_string(),
        ));
    }
    if address.contains("://") || address.contains('/') {
        return None;
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Some(sighting(
            Some(ip),
            url_for_host(&ip.to_string(), scheme, port),
        ));
    }
    let (host, explicit_port) = match address.rsplit_once(':') {
        Some((host, port_text)) => (host, Some(port_text.parse::<u16>().ok()?)),
        None => (address, None),
    };
    if host.is_empty() {
        return None;
    }
    Some(sighting(
        host.parse::<IpAddr>().ok(),
        url_for_host(host, scheme, explicit_port.or(port)),
    ))
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_static(address: &str, expected: Option<(&str, Option<&str>)>) {
        let got = static_address(address, "https", None)
            .map(|s| (s.redfish_url.unwrap(), s.ip.map(|ip| ip.to_string())));
        let expected = expected.map(|(u, ip)| (u.to_string(), ip.map(str::to_string)));
        assert_eq!(got, expected, "address {address:?}");
    }

    #[test]
    fn static_addresses() {
        check_static("10.0.0.5", Some(("https://10.0.0.5", Some("10.0.0.5"))));
        check_static(
            "127.0.0.1:8000",
            Some(("https://127.0.0.1:8000", Some("127.0.0.1"))),
        );
        check_static(
            "http://127.0.0.1:8000/",
            Some(("http://127.0.0.1:8000", Some("127.0.0.1"))),
        );
        check_static(
            "https://bmc-7.rack:443",
            Some(("https://bmc-7.rack:443", None)),
        );
        check_static("fe80::1", Some(("https://[fe80::1]", Some("fe80::1"))));
        check_static("bmc:notaport", None);
        check_static("ftp://x", None);
        check_static("", None);
        check_static("a b", None);
    }

    #[tokio::test]
    async fn answers_only_for_its_entries() {
        let entries = vec![StaticBmc {
            bmc_mac: Mac::parse_any("52:54:00:aa:00:01").unwrap(),
            address: "http://127.0.0.1:8000".into(),
        }];
        let map = StaticMap::new(&entries, "https", None).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        let Answer::Seen(seen) = map.lookup(entries[0].bmc_mac, now).await else {
            panic!("expected the entry");
        };
        assert_eq!(
            seen[0].redfish_url.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        let other = Mac::parse_any("52:54:00:aa:00:02").unwrap();
        assert!(matches!(map.lookup(other, now).await, Answer::NotSeen(_)));
        let bad = vec![StaticBmc {
            bmc_mac: other,
            address: "ftp://x".into(),
        }];
        assert!(StaticMap::new(&bad, "https", None).is_err());
    }
}
