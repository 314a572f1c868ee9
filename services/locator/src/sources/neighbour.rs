//! The kernel's IPv4 neighbour (ARP) table, read from `/proc/net/arp`, for BMCs on a
//! network the locator's host is directly attached to.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use metal_core::Mac;
use time::OffsetDateTime;

use super::leases::Skipped;
use super::{Answer, Sighting, Source, SourceKind};

/// The usual path of the table.
pub const PROC_NET_ARP: &str = "/proc/net/arp";

/// `ATF_COM` of `<linux/if_arp.h>`: the entry has a link-layer address.
pub const ATF_COM: u32 = 0x2;

/// `ARPHRD_ETHER`: the only hardware type whose addresses are MACs.
const ARPHRD_ETHER: u32 = 0x1;

/// Bigger than any real table (the kernel's default limit is 1024 entries, ~80 bytes each).
const MAX_TABLE_BYTES: u64 = 16 * 1024 * 1024;

/// A complete entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: Mac,
    pub device: String,
}

/// What [`parse_proc_net_arp`] made of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Neighbours {
    pub entries: Vec<Neighbour>,
    pub skipped: Vec<Skipped>,
}

/// Parses `/proc/net/arp` (`IP address  HW type  Flags  HW address  Mask  Device`).
/// Only complete Ethernet entries count; incomplete ones (no `ATF_COM`) and all-zero
/// addresses are passed over, malformed lines skipped.
pub fn parse_proc_net_arp(text: &str) -> Neighbours {
    let mut parsed = Neighbours::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if number == 1 && line.trim_start().starts_with("IP address") {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [ip, hw_type, flags, hw_address, _mask, device] = fields.as_slice() else {
            if !fields.is_empty() {
                parsed.skipped.push(Skipped {
                    line: number,
                    reason: format!("expected 6 fields, got {}", fields.len()),
                });
            }
            continue;
        };
        match neighbour(ip, hw_type, flags, hw_address, device) {
            Ok(Some(entry)) => parsed.entries.push(entry),
            Ok(None) => {}
            Err(reason) => parsed.skipped.push(Skipped {
                line: number,
                reason,
            }),
        }
    }
    parsed
}

fn hex(field: &str) -> Option<u32> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))?;
    u32::from_str_radix(digits, 16).ok()
}

fn neighbour(
    ip: &str,
    hw_type: &str,
    flags: &str,
    hw_address: &str,
    device: &str,
) -> Result<Option<Neighbour>, String> {
    let ip = ip
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let hw_type = hex(hw_type).ok_or_else(|| format!("HW type {hw_type:?} is not hex"))?;
    let flags = hex(flags).ok_or_else(|| format!("flags {flags:?} are not hex"))?;
    if hw_type != ARPHRD_ETHER || flags & ATF_COM == 0 {
        return Ok(None);
    }
    let mac = Mac::parse_any(hw_address).map_err(|e| format!("bad HW address: {e}"))?;
    if mac.bytes() == [0; 6] {
        return Ok(None);
    }
    Ok(Some(Neighbour {
        ip: IpAddr::V4(ip),
        mac,
        device: device.to_string(),
    }))
}

/// The kernel's neighbour table as a source.
pub struct NeighbourTable {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// The skipped lines last logged: the table is read on every lookup, and one odd line
    /// should be one warning, not one per lookup.
    logged: Mutex<Vec<Skipped>>,
}

impl NeighbourTable {
    /// The table at `path`: [`PROC_NET_ARP`], or `/proc/<pid>/net/arp` for the table of
    /// the network namespace that process is in.
    pub fn new(path: PathBuf) -> NeighbourTable {
        NeighbourTable {
            shared: Arc::new(Shared {
                path,
                logged: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl Shared {
    /// Reads and parses the table (small and always changing, so never cached). Blocking.
    fn read(&self) -> std::io::Result<Vec<Neighbour>> {
        // /proc files report size 0, so read to the end, but bounded.
        let mut bytes = Vec::new();
        std::fs::File::open(&self.path)?
            .take(MAX_TABLE_BYTES)
            .read_to_end(&mut bytes)?;
        let parsed = parse_proc_net_arp(&String::from_utf8_lossy(&bytes));
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if *logged != parsed.skipped {
            for skip in &parsed.skipped {
                tracing::warn!(file = %self.path.display(), line = skip.line, reason = %skip.reason, "skipped a line of the neighbour table");
            }
            *logged = parsed.skipped;
        }
        Ok(parsed.entries)
    }
}

/// What the table says about `mac`.
fn answer(entries: &[Neighbour], mac: Mac) -> Answer {
    let sightings: Vec<Sighting> = entries
        .iter()
        .filter(|entry| entry.mac == mac)
        .map(|entry| Sighting {
            ip: Some(entry.ip),
            redfish_url: None,
            last_seen: None,
            current: true,
            detail: format!("neighbour entry on {}", entry.device),
        })
        .collect();
    if sightings.is_empty() {
        Answer::NotSeen(format!("not among {} complete entries", entries.len()))
    } else {
        Answer::Seen(sightings)
    }
}

impl Source for NeighbourTable {
    fn kind(&self) -> SourceKind {
        SourceKind::Neighbour
    }

    fn name(&self) -> String {
        String::new()
    }

    fn lookup(&self, mac: Mac, _now: OffsetDateTime) -> BoxFuture<'_, Answer> {
        let shared = Arc::clone(&self.shared);
        // The label is only "neighbour", so errors name the table read.
        Box::pin(super::answer_from_blocking_read(
            format!("{}: ", shared.path.display()),
            move || shared.read(),
            move |entries| answer(&entries, mac),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "IP address       HW type     Flags       HW address            Mask     Device\n";

    fn mac(text: &str) -> Mac {
        Mac::parse_any(text).unwrap()
    }

    #[test]
    fn proc_net_arp_tables() {
        // (case, table, complete entries as (ip, mac, device), skipped lines)
        type Case<'a> = (
            &'a str,
            String,
            Vec<(&'a str, &'a str, &'a str)>,
            Vec<usize>,
        );
        let cases: Vec<Case> = vec![
            ("header only", HEADER.to_string(), vec![], vec![]),
            ("empty", String::new(), vec![], vec![]),
            (
                "complete, permanent, incomplete, zero and non-Ethernet entries",
                format!(
                    "{HEADER}\
10.98.0.100      0x1         0x2         02:00:5e:10:00:42     *        veth0
10.98.0.101      0x1         0x0         00:00:00:00:00:00     *        veth0
10.98.0.102      0x1         0x6         52:54:00:12:34:56     *        eth1
10.98.0.103      0x1         0x2         00:00:00:00:00:00     *        eth1
10.98.0.104      0x20        0x2         80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:de     *        ib0
10.98.0.105      0x1         0x0         52:54:00:12:34:57     *        eth1
10.98.0.106      0x1         0xc         52:54:00:12:34:58     *        eth1
"
                ),
                vec![
                    ("10.98.0.100", "02:00:5e:10:00:42", "veth0"),
                    ("10.98.0.102", "52:54:00:12:34:56", "eth1"),
                ],
                vec![],
            ),
            (
                "garbage",
                format!(
                    "{HEADER}\
garbage
10.98.0.200      0x1         0x2         02:00:5e:10:00:43     *
10.98.0.300      0x1         0x2         02:00:5e:10:00:44     *        eth0
10.98.0.201      one         0x2         02:00:5e:10:00:45     *        eth0
10.98.0.202      0x1         2           02:00:5e:10:00:46     *        eth0
10.98.0.203      0x1         0x2         02:00:5e:10:00        *        eth0

10.98.0.204      0x1         0x2         02:00:5e:10:00:47     *        eth0
"
                ),
                vec![("10.98.0.204", "02:00:5e:10:00:47", "eth0")],
                vec![2, 3, 4, 5, 6, 7],
            ),
            (
                "no header",
                "10.98.0.1 0x1 0x2 02:00:5e:10:00:48 * lan\n".to_string(),
                vec![("10.98.0.1", "02:00:5e:10:00:48", "lan")],
                vec![],
            ),
        ];
        for (name, table, entries, skipped) in cases {
            let parsed = parse_proc_net_arp(&table);
            let expected: Vec<Neighbour> = entries
                .into_iter()
                .map(|(ip, m, device)| Neighbour {
                    ip: ip.parse().unwrap(),
                    mac: mac(m),
                    device: device.into(),
                })
                .collect();
            assert_eq!(parsed.entries, expected, "case {name:?}");
            let lines: Vec<usize> = parsed.skipped.iter().map(|s| s.line).collect();
            assert_eq!(lines, skipped, "case {name:?}: {:#?}", parsed.skipped);
        }
    }

    #[test]
    fn answers_name_the_device() {
        let entries = parse_proc_net_arp(&format!(
            "{HEADER}\
10.98.0.100      0x1         0x2         02:00:5e:10:00:42     *        veth0
10.98.1.100      0x1         0x2         02:00:5e:10:00:42     *        veth1
10.98.0.101      0x1         0x2         02:00:5e:10:00:43     *        veth0
"
        ))
        .entries;
        let Answer::Seen(sightings) = answer(&entries, mac("02:00:5e:10:00:42")) else {
            panic!("expected Seen");
        };
        assert_eq!(
            sightings,
            vec![
                Sighting {
                    ip: Some("10.98.0.100".parse().unwrap()),
                    redfish_url: None,
                    last_seen: None,
                    current: true,
                    detail: "neighbour entry on veth0".into(),
                },
                Sighting {
                    ip: Some("10.98.1.100".parse().unwrap()),
                    redfish_url: None,
                    last_seen: None,
                    current: true,
                    detail: "neighbour entry on veth1".into(),
                },
            ]
        );
        assert_eq!(
            answer(&entries, mac("02:00:5e:10:00:99")),
            Answer::NotSeen("not among 3 complete entries".into())
        );
    }

    #[test]
    fn parsing_never_panics_on_garbage() {
        let mut table = String::from(HEADER);
        for i in 0..300u32 {
            let line: String = (0..(i % 90))
                .map(|j| char::from(b"0x1.2: *abcdefz\t"[((i * 31 + j * 7) % 16) as usize]))
                .collect();
            table.push_str(&line);
            table.push('\n');
        }
        let parsed = parse_proc_net_arp(&table);
        assert!(parsed.skipped.len() <= 300);
    }

    #[tokio::test]
    async fn the_source_reads_its_path_on_every_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arp");
        let table = NeighbourTable::new(path.clone());
        let bmc = mac("02:00:5e:10:00:42");
        let now = OffsetDateTime::now_utc();
        let Answer::Failed { error, permanent } = table.lookup(bmc, now).await else {
            panic!("expected Failed");
        };
        assert!(!permanent);
        assert!(
            error.starts_with(&format!("{}: ", path.display())),
            "{error}"
        );
        std::fs::write(
            &path,
            format!("{HEADER}10.98.0.100      0x1         0x0         02:00:5e:10:00:42     *        veth0\n"),
        )
        .unwrap();
        assert_eq!(
            table.lookup(bmc, now).await,
            Answer::NotSeen("not among 0 complete entries".into())
        );
        std::fs::write(
            &path,
            format!("{HEADER}10.98.0.100      0x1         0x2         02:00:5e:10:00:42     *        veth0\n"),
        )
        .unwrap();
        let answer = table.lookup(bmc, now).await;
        assert!(
            matches!(&answer, Answer::Seen(s) if s.len() == 1 && s[0].ip == Some("10.98.0.100".parse().unwrap())),
            "{answer:?}"
        );
        // The host's own table reads and parses (whatever is in it).
        let host = NeighbourTable::new(PROC_NET_ARP.into());
        let answer = host.lookup(bmc, now).await;
        assert!(!matches!(answer, Answer::Failed { .. }), "{answer:?}");
    }
}
