//! Locator sources: a static map from config and dnsmasq lease files. Lease files are
//! read at each lookup (dnsmasq rewrites them in place), and bounded in size.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use metal_core::config::LocatorConfig;
use metal_core::Mac;

/// Lease files larger than this are refused rather than read.
const MAX_LEASE_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("static BMC {mac}: address {address:?} is not an IP, host:port or http(s):// URL")]
    BadStaticAddress { mac: Mac, address: String },
    #[error("redfish_scheme must be http or https, not {0:?}")]
    BadScheme(String),
}

/// Where a BMC was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub bmc_ip: Option<String>,
    pub redfish_url: String,
    pub source: &'static str,
}

/// The answer of all sources for one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Found),
    NotFound {
        sources_tried: Vec<String>,
        /// Problems reading sources (a missing lease file), for the failure reason.
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Sources {
    static_map: HashMap<Mac, Found>,
    lease_files: Vec<PathBuf>,
    scheme: String,
    port: Option<u16>,
}

impl Sources {
    pub fn from_config(config: &LocatorConfig) -> Result<Sources, SourceError> {
        if config.redfish_scheme != "http" && config.redfish_scheme != "https" {
            return Err(SourceError::BadScheme(config.redfish_scheme.clone()));
        }
        let mut static_map = HashMap::new();
        for entry in &config.static_bmcs {
            let found = static_address(&entry.address, &config.redfish_scheme, config.redfish_port)
                .ok_or_else(|| SourceError::BadStaticAddress {
                    mac: entry.bmc_mac,
                    address: entry.address.clone(),
                })?;
            static_map.insert(entry.bmc_mac, found);
        }
        Ok(Sources {
            static_map,
            lease_files: config.dnsmasq_leases.clone(),
            scheme: config.redfish_scheme.clone(),
            port: config.redfish_port,
        })
    }

    /// Static map first (an operator's explicit word), then lease files in order.
    pub fn lookup(&self, mac: &Mac) -> Lookup {
        let mut sources_tried = vec!["static".to_string()];
        if let Some(found) = self.static_map.get(mac) {
            return Lookup::Found(found.clone());
        }
        let mut problems = Vec::new();
        for path in &self.lease_files {
            sources_tried.push(format!("dnsmasq:{}", path.display()));
            match read_bounded(path) {
                Ok(text) => {
                    if let Some(ip) = parse_dnsmasq_leases(&text).remove(mac) {
                        return Lookup::Found(Found {
                            redfish_url: url_for_host(&ip, &self.scheme, self.port),
                            bmc_ip: Some(ip),
                            source: "dnsmasq",
                        });
                    }
                }
                Err(problem) => problems.push(format!("{}: {problem}", path.display())),
            }
        }
        Lookup::NotFound {
            sources_tried,
            problems,
        }
    }
}

fn read_bounded(path: &PathBuf) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    let read = file
        .take(MAX_LEASE_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if read as u64 > MAX_LEASE_FILE_BYTES {
        return Err(format!("larger than {MAX_LEASE_FILE_BYTES} bytes"));
    }
    Ok(text)
}

/// Parses a dnsmasq lease file (`<expiry> <mac> <ip> <hostname> <client-id>` per line)
/// into MAC → IPv4. Malformed lines and DHCPv6 entries are skipped; with several
/// leases for one MAC the latest expiry wins (0 means infinite).
pub fn parse_dnsmasq_leases(text: &str) -> HashMap<Mac, String> {
    let mut best: HashMap<Mac, (u64, String)> = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [expiry, mac, ip, ..] = fields.as_slice() else {
            continue;
        };
        let Ok(expiry) = expiry.parse::<u64>() else {
            continue;
        };
        let Ok(mac) = Mac::parse_any(mac) else {
            continue;
        };
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            continue;
        }
        let rank = if expiry == 0 { u64::MAX } else { expiry };
        match best.get(&mac) {
            Some((existing, _)) if *existing >= rank => {}
            _ => {
                best.insert(mac, (rank, ip.to_string()));
            }
        }
    }
    best.into_iter().map(|(mac, (_, ip))| (mac, ip)).collect()
}

fn url_for_host(host: &str, scheme: &str, port: Option<u16>) -> String {
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

/// A static address: an IP, `host:port`, or a full `http(s)://` base URL.
fn static_address(address: &str, scheme: &str, port: Option<u16>) -> Option<Found> {
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
        let host = host_of(authority);
        return Some(Found {
            bmc_ip: host
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| ip.to_string()),
            redfish_url: address.trim_end_matches('/').to_string(),
            source: "static",
        });
    }
    if address.contains("://") || address.contains('/') {
        return None;
    }
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        return Some(Found {
            bmc_ip: Some(ip.to_string()),
            redfish_url: url_for_host(&ip.to_string(), scheme, port),
            source: "static",
        });
    }
    let (host, explicit_port) = match address.rsplit_once(':') {
        Some((host, port_text)) => (host, Some(port_text.parse::<u16>().ok()?)),
        None => (address, None),
    };
    if host.is_empty() {
        return None;
    }
    Some(Found {
        bmc_ip: host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string()),
        redfish_url: url_for_host(host, scheme, explicit_port.or(port)),
        source: "static",
    })
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
        let got = static_address(address, "https", None).map(|f| (f.redfish_url, f.bmc_ip));
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

    #[test]
    fn dnsmasq_leases() {
        let text = "\
1732500000 52:54:00:aa:00:01 10.0.0.10 bmc1 01:52:54:00:aa:00:01
1732600000 52:54:00:AA:00:01 10.0.0.11 bmc1 *
0 52-54-00-aa-00-02 10.0.0.12 * *
duid 00:01:00:01:2c:aa:bb:cc:dd:ee:ff:00
1732500000 2001:db8::1 fd00::5 host *
garbage
1732500000 zz:zz 10.0.0.13 x *
";
        let leases = parse_dnsmasq_leases(text);
        assert_eq!(leases.len(), 2);
        assert_eq!(
            leases[&Mac::parse_any("52:54:00:aa:00:01").unwrap()],
            "10.0.0.11"
        );
        assert_eq!(
            leases[&Mac::parse_any("52:54:00:aa:00:02").unwrap()],
            "10.0.0.12"
        );
    }

    #[test]
    fn lookup_order_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join("leases");
        std::fs::write(&leases, "0 52:54:00:aa:00:09 127.0.0.9 bmc9 *\n").unwrap();
        let config = LocatorConfig {
            static_bmcs: vec![metal_core::config::StaticBmc {
                bmc_mac: Mac::parse_any("52:54:00:aa:00:01").unwrap(),
                address: "http://127.0.0.1:8000".into(),
            }],
            dnsmasq_leases: vec![dir.path().join("missing"), leases],
            redfish_scheme: "http".into(),
            redfish_port: Some(8443),
            ..LocatorConfig::default()
        };
        let sources = Sources::from_config(&config).unwrap();
        let Lookup::Found(found) = sources.lookup(&Mac::parse_any("52:54:00:aa:00:09").unwrap())
        else {
            panic!("expected the lease");
        };
        assert_eq!(found.redfish_url, "http://127.0.0.9:8443");
        assert_eq!(found.source, "dnsmasq");
        let Lookup::NotFound {
            sources_tried,
            problems,
        } = sources.lookup(&Mac::parse_any("52:54:00:aa:00:07").unwrap())
        else {
            panic!("expected not found");
        };
        assert_eq!(sources_tried.len(), 3);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
