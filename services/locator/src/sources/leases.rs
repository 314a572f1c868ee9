//! DHCP lease files as sources (dnsmasq, ISC dhcpd, Kea memfile): pure parsers, a reader
//! that copes with the server rewriting the file, and a cache keyed by the file's version.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use metal_core::Mac;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::{Answer, Sighting, Source, SourceKind};

/// The largest lease file read; a bigger one is refused rather than held in memory.
pub const MAX_LEASE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The lease file formats the locator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseFormat {
    Dnsmasq,
    IscDhcpd,
    Kea,
}

impl LeaseFormat {
    pub fn kind(self) -> SourceKind {
        match self {
            LeaseFormat::Dnsmasq => SourceKind::Dnsmasq,
            LeaseFormat::IscDhcpd => SourceKind::IscDhcpd,
            LeaseFormat::Kea => SourceKind::Kea,
        }
    }

    /// Parses a whole lease file of this format.
    pub fn parse(self, text: &str) -> Parsed {
        match self {
            LeaseFormat::Dnsmasq => parse_dnsmasq(text),
            LeaseFormat::IscDhcpd => parse_isc_dhcpd(text),
            LeaseFormat::Kea => parse_kea(text),
        }
    }
}

/// One lease that counts: bound to a client and not known to be over, as the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: IpAddr,
    /// When the server last heard from the client, if the format records it.
    pub seen: Option<OffsetDateTime>,
    /// When the lease ends; `None` for a lease without end.
    pub expires: Option<OffsetDateTime>,
}

/// A line or block that could not be read, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
}

/// What a parser made of a lease file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The leases that count, one per address.
    pub leases: Vec<Lease>,
    pub skipped: Vec<Skipped>,
}

/// The leases of a file by address: lease files are journals, so a later entry for an
/// address replaces an earlier one, and an entry that ends a binding removes it.
#[derive(Default)]
struct Journal {
    slots: Vec<Option<Lease>>,
    by_ip: HashMap<IpAddr, usize>,
}

impl Journal {
    fn record(&mut self, ip: IpAddr, lease: Option<Lease>) {
        if let Some(old) = self.by_ip.remove(&ip) {
            if let Some(slot) = self.slots.get_mut(old) {
                *slot = None;
            }
        }
        if let Some(lease) = lease {
            self.by_ip.insert(ip, self.slots.len());
            self.slots.push(Some(lease));
        }
    }

    fn into_leases(self) -> Vec<Lease> {
        self.slots.into_iter().flatten().collect()
    }
}

/// A field as quoted in a reason: garbage can be long, and reasons end up in logs.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    if text.chars().count() <= MAX_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head:?}...")
    }
}

fn from_epoch(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

/// Parses a dnsmasq lease file: `<expiry> <mac> <ip> <hostname> <client-id>` per line,
/// expiry 0 meaning a lease without end. The `duid` line and the DHCPv6 leases after it
/// are not IPv4 client leases and are passed over silently. dnsmasq keeps no time of
/// last contact, so `seen` is always `None`.
pub fn parse_dnsmasq(text: &str) -> Parsed {
    let mut journal = Journal::default();
    let mut skipped = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (expiry, mac, ip) = match fields.as_slice() {
            [] => continue,
            ["duid", ..] => continue,
            [expiry, mac, ip, ..] => (*expiry, *mac, *ip),
            _ => {
                skipped.push(Skipped {
                    line: number,
                    reason: format!(
                        "expected `<expiry> <mac> <ip> <hostname> <client-id>`, got {} field(s)",
                        fields.len()
                    ),
                });
                continue;
            }
        };
        // A DHCPv6 lease has an IAID where the MAC would be; its address tells it apart
        // wherever it appears.
        if ip.parse::<Ipv6Addr>().is_ok() {
            continue;
        }
        match dnsmasq_lease(expiry, mac, ip) {
            Ok(lease) => journal.record(lease.ip, Some(lease)),
            Err(reason) => skipped.push(Skipped {
                line: number,
                reason,
            }),
        }
    }
    Parsed {
        leases: journal.into_leases(),
        skipped,
    }
}

fn dnsmasq_lease(expiry: &str, mac: &str, ip: &str) -> Result<Lease, String> {
    let expires = match expiry.parse::<i64>() {
        Ok(0) => None,
        Ok(seconds) if seconds > 0 => {
            Some(from_epoch(seconds).ok_or_else(|| format!("expiry {seconds} is out of range"))?)
        }
        _ => return Err(format!("expiry {} is not a time in seconds", shown(expiry))),
    };
    let mac = Mac::parse_any(mac).map_err(|e| format!("bad MAC: {e}"))?;
    let ip = ip
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("{} is not an IPv4 address", shown(ip)))?;
    Ok(Lease {
        mac,
        ip: IpAddr::V4(ip),
        seen: None,
        expires,
    })
}

/// A token of the dhcpd.conf(5) syntax that lease files are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    /// A quoted string; no value the locator needs is ever quoted.
    Quoted,
    Semi,
    Open,
    Close,
}

/// Splits dhcpd.leases text into tokens with their line numbers. Quoted strings may hold
/// `;`, braces, `#` and escaped quotes; `#` starts a comment only where a token starts.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    pushed_back: Vec<(Tok<'a>, usize)>,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            text,
            pos: 0,
            line: 1,
            pushed_back: Vec::new(),
        }
    }

    fn push_back(&mut self, token: (Tok<'a>, usize)) {
        self.pushed_back.push(token);
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    fn next(&mut self) -> Option<(Tok<'a>, usize)> {
        if let Some(token) = self.pushed_back.pop() {
            return Some(token);
        }
        loop {
            let byte = self.byte(self.pos)?;
            let line = self.line;
            match byte {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b if b.is_ascii_whitespace() => self.pos += 1,
                b'#' => {
                    while self.byte(self.pos).is_some_and(|b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                b';' | b'{' | b'}' => {
                    self.pos += 1;
                    let tok = match byte {
                        b';' => Tok::Semi,
                        b'{' => Tok::Open,
                        _ => Tok::Close,
                    };
                    return Some((tok, line));
                }
                b'"' => {
                    self.pos += 1;
                    // An unterminated string runs to the end of the file, which leaves its
                    // block unclosed: the caller then drops the block.
                    while let Some(b) = self.byte(self.pos) {
                        self.pos += 1;
                        match b {
                            b'"' => break,
                            b'\\' => {
                                if self.byte(self.pos) == Some(b'\n') {
                                    self.line += 1;
                                }
                                self.pos += 1;
                            }
                            b'\n' => self.line += 1,
                            _ => {}
                        }
                    }
                    return Some((Tok::Quoted, line));
                }
                _ => {
                    let start = self.pos;
                    while self.byte(self.pos).is_some_and(|b| {
                        !b.is_ascii_whitespace() && !matches!(b, b';' | b'{' | b'}' | b'"')
                    }) {
                        self.pos += 1;
                    }
                    // Token ends are ASCII bytes, so always char boundaries; `get` keeps
                    // that a non-issue even so.
                    let word = self.text.get(start..self.pos).unwrap_or("");
                    return Some((Tok::Word(word), line));
                }
            }
        }
    }

    /// True when the next tokens open a lease declaration (`lease <address>`), which can
    /// only start at the top level: seen inside a block, the block lacks its `}`.
    fn lease_follows(&mut self, first: (Tok<'a>, usize)) -> bool {
        if first.0 != Tok::Word("lease") {
            return false;
        }
        let second = self.next();
        let is_lease = matches!(second, Some((Tok::Word(w), _)) if w.parse::<IpAddr>().is_ok());
        if let Some(second) = second {
            self.push_back(second);
        }
        is_lease
    }
}

/// How a block's body ended.
enum BlockEnd {
    Closed,
    /// The file ended first: the block is still being written.
    EndOfFile,
    /// A lease declaration started inside it (on the given line): the `}` is missing.
    LeaseInside(usize),
}

/// The `;`-terminated statements of a lease block, each as its tokens; nested blocks
/// (`on expiry { ... }`) are passed over.
fn lease_body<'a>(lexer: &mut Lexer<'a>) -> (Vec<Vec<(Tok<'a>, usize)>>, BlockEnd) {
    let mut statements = Vec::new();
    let mut words = Vec::new();
    loop {
        let Some(token) = lexer.next() else {
            return (statements, BlockEnd::EndOfFile);
        };
        match token.0 {
            Tok::Close => {
                if !words.is_empty() {
                    statements.push(words);
                }
                return (statements, BlockEnd::Closed);
            }
            Tok::Semi => statements.push(std::mem::take(&mut words)),
            Tok::Open => {
                words.clear();
                match skip_block(lexer) {
                    BlockEnd::Closed => {}
                    end => return (statements, end),
                }
            }
            _ if words.is_empty() && lexer.lease_follows(token) => {
                lexer.push_back(token);
                return (statements, BlockEnd::LeaseInside(token.1));
            }
            _ => words.push(token),
        }
    }
}

/// Passes over the rest of a block whose `{` was just read, nested blocks included.
fn skip_block(lexer: &mut Lexer<'_>) -> BlockEnd {
    let mut depth = 1usize;
    let mut at_statement_start = true;
    loop {
        let Some(token) = lexer.next() else {
            return BlockEnd::EndOfFile;
        };
        match token.0 {
            Tok::Open => {
                depth += 1;
                at_statement_start = true;
            }
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return BlockEnd::Closed;
                }
                at_statement_start = true;
            }
            Tok::Semi => at_statement_start = true,
            _ if at_statement_start && lexer.lease_follows(token) => {
                lexer.push_back(token);
                return BlockEnd::LeaseInside(token.1);
            }
            _ => at_statement_start = false,
        }
    }
}

/// Parses an ISC dhcpd.leases file (dhcpd.leases(5)). The file is a journal: the last
/// declaration of an address is its current state, and only `binding state active` (or,
/// with no binding state at all, any lease whose `ends` is still ahead) counts. Host,
/// failover, class and DHCPv6 declarations are passed over. A lease block still open at
/// the end of the file (being appended) is dropped; a malformed one is skipped and, as it
/// was newer, still ends the binding an earlier declaration of its address described.
pub fn parse_isc_dhcpd(text: &str) -> Parsed {
    let mut lexer = Lexer::new(text);
    let mut journal = Journal::default();
    let mut skipped = Vec::new();
    'statements: loop {
        let mut head: Vec<(Tok<'_>, usize)> = Vec::new();
        let opened = loop {
            match lexer.next() {
                None => break 'statements,
                Some((Tok::Semi, _)) => break false,
                Some((Tok::Open, _)) => break true,
                Some((Tok::Close, line)) => {
                    skipped.push(Skipped {
                        line,
                        reason: "`}` without a matching `{`".into(),
                    });
                    continue 'statements;
                }
                Some(token) if !head.is_empty() && lexer.lease_follows(token) => {
                    // Whatever came before never ended in `;` or a block: junk.
                    skipped.push(Skipped {
                        line: head.first().map_or(token.1, |&(_, line)| line),
                        reason: "text that is no statement, before a lease".into(),
                    });
                    head.clear();
                    head.push(token);
                }
                Some(token) => head.push(token),
            }
        };
        if !opened {
            // server-duid, authoring-byte-order, lease-id-format and the like.
            continue;
        }
        let Some(&(Tok::Word("lease"), line)) = head.first() else {
            // host, failover peer, group, class, ia-na and other declarations.
            match skip_block(&mut lexer) {
                BlockEnd::Closed | BlockEnd::LeaseInside(_) => continue,
                BlockEnd::EndOfFile => break,
            }
        };
        let (statements, end) = lease_body(&mut lexer);
        let ip = match head.as_slice() {
            [_, (Tok::Word(ip), _)] => ip.parse::<IpAddr>().ok(),
            _ => None,
        };
        let lease = match end {
            BlockEnd::EndOfFile => {
                skipped.push(Skipped {
                    line,
                    reason: "lease block not closed by the end of the file (still being written?)"
                        .into(),
                });
                break;
            }
            BlockEnd::LeaseInside(next) => Err(Skipped {
                line,
                reason: format!("lease block not closed before the lease on line {next}"),
            }),
            BlockEnd::Closed => match ip {
                Some(ip) => isc_lease(ip, line, &statements),
                None => Err(Skipped {
                    line,
                    reason: "expected `lease <address> {`".into(),
                }),
            },
        };
        match (lease, ip) {
            (Ok(lease), Some(ip)) => journal.record(ip, lease),
            (Ok(_), None) => {}
            (Err(skip), ip) => {
                skipped.push(skip);
                // The newest declaration of the address is unreadable, so whatever an
                // older one said is no longer known to hold.
                if let Some(ip) = ip {
                    journal.record(ip, None);
                }
            }
        }
    }
    Parsed {
        leases: journal.into_leases(),
        skipped,
    }
}

/// One closed lease block: `Ok(None)` when it binds nothing the locator can use.
fn isc_lease(
    ip: IpAddr,
    line: usize,
    statements: &[Vec<(Tok<'_>, usize)>],
) -> Result<Option<Lease>, Skipped> {
    let mut starts = None;
    let mut ends = None;
    let mut cltt = None;
    let mut binding: Option<&str> = None;
    let mut mac = None;
    for statement in statements {
        let Some(&(_, at)) = statement.first() else {
            continue;
        };
        let words: Vec<Option<&str>> = statement
            .iter()
            .map(|(tok, _)| match tok {
                Tok::Word(word) => Some(*word),
                _ => None,
            })
            .collect();
        let skip = |reason: String| Skipped { line: at, reason };
        match words.as_slice() {
            [Some("starts"), time @ ..] => {
                starts = Some(isc_time(time).map_err(|e| skip(format!("starts: {e}")))?)
            }
            [Some("ends"), time @ ..] => {
                ends = Some(isc_time(time).map_err(|e| skip(format!("ends: {e}")))?)
            }
            [Some("cltt"), time @ ..] => {
                cltt = Some(isc_time(time).map_err(|e| skip(format!("cltt: {e}")))?)
            }
            [Some("binding"), Some("state"), Some(state)] => binding = Some(*state),
            [Some("binding"), ..] => return Err(skip("expected `binding state <state>`".into())),
            [Some("hardware"), Some("ethernet"), Some(address)] => {
                mac = Some(Mac::parse_any(address).map_err(|e| skip(format!("bad MAC: {e}")))?)
            }
            [Some("hardware"), Some("ethernet"), ..] => {
                return Err(skip("expected `hardware ethernet <mac>`".into()))
            }
            // Other hardware types, next/rewind binding state, uid, client-hostname, set,
            // tstp/tsfp/atsfp, options: nothing the locator uses.
            _ => {}
        }
    }
    if binding.is_some_and(|state| state != "active") {
        return Ok(None);
    }
    let Some(mac) = mac else {
        return Ok(None);
    };
    let Some(expires) = ends else {
        return Err(Skipped {
            line,
            reason: "lease without an `ends` time".into(),
        });
    };
    Ok(Some(Lease {
        mac,
        ip,
        seen: cltt.flatten().or(starts.flatten()),
        expires,
    }))
}

/// A dhcpd.leases time: `<weekday> YYYY/MM/DD HH:MM:SS` in UTC, `epoch <seconds>`
/// (db-time-format local) or `never` (`Ok(None)`).
fn isc_time(words: &[Option<&str>]) -> Result<Option<OffsetDateTime>, String> {
    const EXPECTED: &str = "expected `<weekday> YYYY/MM/DD HH:MM:SS`, `epoch <seconds>` or `never`";
    match words {
        [Some("never")] => Ok(None),
        [Some("epoch"), Some(seconds)] => seconds
            .parse::<i64>()
            .ok()
            .and_then(from_epoch)
            .map(Some)
            .ok_or_else(|| format!("{} is not a time in seconds", shown(seconds))),
        [Some(weekday), Some(date), Some(clock)]
            if weekday.len() == 1 && weekday.bytes().all(|b| (b'0'..=b'6').contains(&b)) =>
        {
            isc_date_time(date, clock)
                .map(Some)
                .ok_or_else(|| format!("{} {} is not a date and time", shown(date), shown(clock)))
        }
        _ => Err(EXPECTED.into()),
    }
}

fn isc_date_time(date: &str, clock: &str) -> Option<OffsetDateTime> {
    let mut ymd = date.split('/');
    let year = ymd.next()?.parse::<i32>().ok()?;
    let month = Month::try_from(ymd.next()?.parse::<u8>().ok()?).ok()?;
    let day = ymd.next()?.parse::<u8>().ok()?;
    let mut hms = clock.split(':');
    let hour = hms.next()?.parse::<u8>().ok()?;
    let minute = hms.next()?.parse::<u8>().ok()?;
    let second = hms.next()?.parse::<u8>().ok()?;
    if ymd.next().is_some() || hms.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Kea's valid_lifetime for a lease without end.
const KEA_INFINITE: u32 = u32::MAX;

/// Parses a Kea DHCPv4 memfile (kea-leases4.csv), finding columns by the header's names.
/// The file is appended to, so a later row for an address replaces an earlier one; only
/// state 0 (default) binds, and a row without a hardware address matches no MAC.
pub fn parse_kea(text: &str) -> Parsed {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let Some((header_line, header)) = lines.by_ref().find(|(_, line)| !line.trim().is_empty())
    else {
        return Parsed::default();
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let column = |name: &str| names.iter().position(|n| *n == name);
    let (Some(address), Some(hwaddr), Some(lifetime), Some(expire)) = (
        column("address"),
        column("hwaddr"),
        column("valid_lifetime"),
        column("expire"),
    ) else {
        return Parsed {
            leases: Vec::new(),
            skipped: vec![Skipped {
                line: header_line,
                reason: format!(
                    "header {} lacks one of address, hwaddr, valid_lifetime, expire",
                    shown(header)
                ),
            }],
        };
    };
    let columns = KeaColumns {
        hwaddr,
        lifetime,
        expire,
        state: column("state"),
    };
    let mut journal = Journal::default();
    let mut skipped = Vec::new();
    for (line, row) in lines {
        if row.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split(',').collect();
        // Kea escapes commas inside fields, so a short or long row is a torn or foreign one.
        if fields.len() != names.len() {
            skipped.push(Skipped {
                line,
                reason: format!(
                    "{} field(s) where the header names {}",
                    fields.len(),
                    names.len()
                ),
            });
            continue;
        }
        let text = kea_field(&fields, address);
        let Ok(ip) = text.trim().parse::<IpAddr>() else {
            skipped.push(Skipped {
                line,
                reason: format!("{} is not an IP address", shown(&text)),
            });
            continue;
        };
        match kea_lease(ip, &fields, &columns) {
            Ok(lease) => journal.record(ip, lease),
            Err(reason) => {
                skipped.push(Skipped { line, reason });
                // As for dhcpd: a newer unreadable row leaves the older one unknown.
                journal.record(ip, None);
            }
        }
    }
    Parsed {
        leases: journal.into_leases(),
        skipped,
    }
}

struct KeaColumns {
    hwaddr: usize,
    lifetime: usize,
    expire: usize,
    state: Option<usize>,
}

/// A field with Kea's `&#xHH` escapes (commas, mostly) undone.
fn kea_field<'a>(fields: &[&'a str], index: usize) -> Cow<'a, str> {
    let field = fields.get(index).copied().unwrap_or("");
    if !field.contains("&#x") {
        return Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some((before, after)) = rest.split_once("&#x") {
        out.push_str(before);
        let escaped = after
            .get(..2)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(u8::is_ascii);
        match (escaped, after.get(2..)) {
            (Some(byte), Some(tail)) => {
                out.push(char::from(byte));
                rest = tail;
            }
            _ => {
                out.push_str("&#x");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn kea_lease(ip: IpAddr, fields: &[&str], columns: &KeaColumns) -> Result<Option<Lease>, String> {
    if let Some(state) = columns.state {
        let state = kea_field(fields, state);
        match state.trim().parse::<u32>() {
            Ok(0) => {}
            // 1 declined, 2 expired-reclaimed, 3 released: no binding.
            Ok(_) => return Ok(None),
            Err(_) => return Err(format!("state {} is not a number", shown(&state))),
        }
    }
    let hwaddr = kea_field(fields, columns.hwaddr);
    if hwaddr.trim().is_empty() {
        return Ok(None);
    }
    let mac = Mac::parse_any(&hwaddr).map_err(|e| format!("bad MAC: {e}"))?;
    let lifetime = kea_field(fields, columns.lifetime);
    let lifetime = lifetime
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("valid_lifetime {} is not a number", shown(&lifetime)))?;
    let expire = kea_field(fields, columns.expire);
    let expire = expire
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("expire {} is not a time in seconds", shown(&expire)))?;
    let out_of_range = || format!("expire {expire} is out of range");
    // Kea stores expire = cltt + valid_lifetime, for leases without end too.
    let seen = expire
        .checked_sub(i64::from(lifetime))
        .and_then(from_epoch)
        .ok_or_else(out_of_range)?;
    let expires = if lifetime == KEA_INFINITE {
        None
    } else {
        Some(from_epoch(expire).ok_or_else(out_of_range)?)
    };
    Ok(Some(Lease {
        mac,
        ip,
        seen: Some(seen),
        expires,
    }))
}

/// What tells versions of a file apart without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl FileVersion {
    pub fn of(metadata: &fs::Metadata) -> FileVersion {
        FileVersion {
            dev: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        }
    }
}

/// A file's content as one complete version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The content, lossily UTF-8: parsers see every byte as some character.
    pub text: String,
    pub version: FileVersion,
    /// The version was no longer fresh when read (see [`read_stable`]): any later write
    /// changes it, so an equal version later means equal content.
    pub settled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("{size} bytes, more than the {max} bytes a lease file may have")]
    TooBig { size: u64, max: u64 },
    #[error("kept changing while being read ({attempts} attempts)")]
    KeptChanging { attempts: u32 },
}

/// Reads per call before giving up on a file that keeps changing; with [`READ_PAUSE`]
/// they span more than [`FRESH_FOR`], so a file that stopped changing is always read.
const READ_ATTEMPTS: u32 = 8;
/// Pause between reads, for a writer to go on.
const READ_PAUSE: Duration = Duration::from_millis(8);
/// How long after its modification time a version is fresh. Modification times come
/// from a coarse clock (a jiffy, up to 10 ms), so a rewrite within the same tick keeps
/// the version; the margin also covers a writer briefly stalled mid-rewrite.
const FRESH_FOR: Duration = Duration::from_millis(50);
/// The same on filesystems that keep whole seconds only (ext3, FAT, some NFS).
const FRESH_FOR_WHOLE_SECONDS: Duration = Duration::from_secs(2);

/// Reads a file another process may be rewriting (in place or by rename) as one complete
/// version: never a mix of two versions, never a half-written last line. Blocking.
///
/// A read counts when the file's version (device, inode, size, modification time) is the
/// same before and after it. A fresh version (see [`FRESH_FOR`]) must in addition be
/// read twice, a pause apart, with the same bytes; and a fresh empty file or fresh
/// half line is a rewrite in progress, waited for. A half line that is no longer fresh
/// is dropped on the last attempt.
pub fn read_stable(path: &Path, max_bytes: u64) -> Result<Snapshot, LeaseReadError> {
    read_stable_with(path, max_bytes, |_| {})
}

/// [`read_stable`] with `between(attempt)` called after each read and before the check that
/// the file did not change, so tests can change it exactly there.
fn read_stable_with(
    path: &Path,
    max_bytes: u64,
    mut between: impl FnMut(u32),
) -> Result<Snapshot, LeaseReadError> {
    let mut previous: Option<(FileVersion, Vec<u8>)> = None;
    let mut missing = None;
    for attempt in 0..READ_ATTEMPTS {
        let last = attempt + 1 == READ_ATTEMPTS;
        let read = match read_once(path, max_bytes, attempt, &mut between) {
            Ok(read) => read,
            // dhcpd renames the old file away before renaming the new one into place.
            Err(LeaseReadError::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
                missing = Some(error);
                std::thread::sleep(READ_PAUSE);
                continue;
            }
            Err(error) => return Err(error),
        };
        missing = None;
        let Some(GoodRead {
            version,
            mut bytes,
            fresh,
        }) = read
        else {
            std::thread::sleep(READ_PAUSE);
            continue;
        };
        let confirmed = !fresh
            || previous
                .as_ref()
                .is_some_and(|(v, b)| *v == version && *b == bytes);
        let complete = match bytes.last() {
            None => !fresh,
            Some(&end) => end == b'\n',
        };
        if confirmed && complete || last && !fresh {
            if !complete {
                let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                bytes.truncate(keep);
            }
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            return Ok(Snapshot {
                text,
                version,
                settled: !fresh,
            });
        }
        previous = Some((version, bytes));
        std::thread::sleep(READ_PAUSE);
    }
    match missing {
        Some(error) => Err(LeaseReadError::Io(error)),
        None => Err(LeaseReadError::KeptChanging {
            attempts: READ_ATTEMPTS,
        }),
    }
}

/// One read of a file that did not change during it.
struct GoodRead {
    version: FileVersion,
    bytes: Vec<u8>,
    /// Modified too recently for the version to vouch for the content (see [`FRESH_FOR`]).
    fresh: bool,
}

/// One read; `None` when the file changed under it.
fn read_once(
    path: &Path,
    max_bytes: u64,
    attempt: u32,
    between: &mut impl FnMut(u32),
) -> Result<Option<GoodRead>, LeaseReadError> {
    // Opening a FIFO would block until a writer came; refuse anything but a file first.
    if !fs::metadata(path)?.is_file() {
        return Err(LeaseReadError::NotAFile);
    }
    let clock_before = SystemTime::now();
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    let version = FileVersion::of(&metadata);
    if version.size > max_bytes {
        return Err(LeaseReadError::TooBig {
            size: version.size,
            max: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(version.size).unwrap_or(0));
    (&mut file)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > max_bytes {
        return Err(LeaseReadError::TooBig {
            size: read,
            max: max_bytes,
        });
    }
    between(attempt);
    let after = match fs::metadata(path) {
        Ok(metadata) => FileVersion::of(&metadata),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if after != version || read != version.size {
        return Ok(None);
    }
    // A whole-second time almost surely comes from a filesystem that keeps no finer one.
    let fresh_for = if version.mtime_nsec == 0 {
        FRESH_FOR_WHOLE_SECONDS
    } else {
        FRESH_FOR
    };
    // A time ahead of the clock (skew) leaves the version fresh for good: never trusted.
    let fresh = metadata
        .modified()
        .ok()
        .and_then(|mtime| mtime.checked_add(fresh_for))
        .is_none_or(|stale_from| stale_from >= clock_before);
    Ok(Some(GoodRead {
        version,
        bytes,
        fresh,
    }))
}

/// How many skipped lines of one version of a file are logged one by one.
const LOGGED_SKIPS: usize = 10;

/// One lease file as a source.
pub struct LeaseFile {
    shared: Arc<Shared>,
}

struct Shared {
    format: LeaseFormat,
    path: PathBuf,
    cache: Mutex<Option<Cached>>,
    /// Times the file was read and parsed, for tests of the cache.
    reads: AtomicU64,
}

struct Cached {
    version: FileVersion,
    settled: bool,
    leases: Arc<[Lease]>,
}

impl LeaseFile {
    pub fn new(format: LeaseFormat, path: PathBuf) -> LeaseFile {
        LeaseFile {
            shared: Arc::new(Shared {
                format,
                path,
                cache: Mutex::new(None),
                reads: AtomicU64::new(0),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl Shared {
    /// The leases of the file as it is now, parsed again only if it changed. Blocking.
    fn current(&self) -> Result<Arc<[Lease]>, LeaseReadError> {
        // Held while reading, so a burst of lookups after a change parses the file once.
        // It runs on the blocking pool and is never held across an await.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(cached), Ok(metadata)) = (cache.as_ref(), fs::metadata(&self.path)) {
            if cached.settled && cached.version == FileVersion::of(&metadata) {
                return Ok(Arc::clone(&cached.leases));
            }
        }
        let snapshot = read_stable(&self.path, MAX_LEASE_FILE_BYTES)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let parsed = self.format.parse(&snapshot.text);
        let logged_before = cache
            .as_ref()
            .is_some_and(|cached| cached.version == snapshot.version);
        if !logged_before {
            self.log_skipped(&parsed.skipped);
        }
        let leases: Arc<[Lease]> = parsed.leases.into();
        *cache = Some(Cached {
            version: snapshot.version,
            settled: snapshot.settled,
            leases: Arc::clone(&leases),
        });
        Ok(leases)
    }

    fn log_skipped(&self, skipped: &[Skipped]) {
        let file = self.path.display();
        for skip in skipped.iter().take(LOGGED_SKIPS) {
            tracing::warn!(%file, line = skip.line, reason = %skip.reason, "skipped part of a lease file");
        }
        if skipped.len() > LOGGED_SKIPS {
            tracing::warn!(
                %file,
                more = skipped.len() - LOGGED_SKIPS,
                "skipped more parts of the lease file"
            );
        }
    }
}

/// What the leases say about `mac` at `now`.
fn answer(leases: &[Lease], mac: Mac, now: OffsetDateTime) -> Answer {
    let unexpired: Vec<&Lease> = leases
        .iter()
        .filter(|lease| lease.expires.is_none_or(|end| end > now))
        .collect();
    let sightings: Vec<Sighting> = unexpired
        .iter()
        .filter(|lease| lease.mac == mac)
        .map(|lease| Sighting {
            ip: Some(lease.ip),
            redfish_url: None,
            last_seen: lease.seen,
            current: true,
            detail: match lease.expires {
                Some(end) => format!(
                    "lease until {}",
                    end.format(&Rfc3339)
                        .unwrap_or_else(|_| end.unix_timestamp().to_string())
                ),
                None => "lease without end".into(),
            },
        })
        .collect();
    if sightings.is_empty() {
        Answer::NotSeen(format!(
            "no lease among {} unexpired leases",
            unexpired.len()
        ))
    } else {
        Answer::Seen(sightings)
    }
}

impl Source for LeaseFile {
    fn kind(&self) -> SourceKind {
        self.shared.format.kind()
    }

    fn name(&self) -> String {
        self.shared.path.display().to_string()
    }

    fn lookup(&self, mac: Mac, now: OffsetDateTime) -> BoxFuture<'_, Answer> {
        let shared = Arc::clone(&self.shared);
        // The report's label already names the file, so errors do not repeat the path.
        Box::pin(super::answer_from_blocking_read(
            String::new(),
            move || shared.current(),
            move |leases| answer(&leases, mac, now),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};
    use std::sync::atomic::AtomicBool;

    use time::macros::datetime;

    use super::*;

    fn mac(text: &str) -> Mac {
        Mac::parse_any(text).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    /// (mac, ip, seen, expires) of each lease, in order, for compact expectations.
    type Expected<'a> = Vec<(&'a str, &'a str, Option<i64>, Option<i64>)>;

    fn check(format: LeaseFormat, name: &str, text: &str, leases: Expected, skipped: &[usize]) {
        let parsed = format.parse(text);
        let expected: Vec<Lease> = leases
            .into_iter()
            .map(|(m, i, seen, expires)| Lease {
                mac: mac(m),
                ip: ip(i),
                seen: seen.map(at),
                expires: expires.map(at),
            })
            .collect();
        assert_eq!(parsed.leases, expected, "{format:?} case {name:?}: leases");
        let lines: Vec<usize> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(
            lines, skipped,
            "{format:?} case {name:?}: skipped lines {:#?}",
            parsed.skipped
        );
    }

    #[test]
    fn dnsmasq_files() {
        let cases: Vec<(&str, &str, Expected, Vec<usize>)> = vec![
            ("empty", "", vec![], vec![]),
            (
                "mixed, with IPv6, garbage and a superseding line",
                "\
1795687200 52:54:00:aa:00:01 10.0.0.10 bmc1 01:52:54:00:aa:00:01
1795690800 52:54:00:AA:00:01 10.0.0.11 bmc1 *
0 52-54-00-aa-00-02 10.0.0.12 * *
duid 00:01:00:01:2c:aa:bb:cc:dd:ee:ff:00
1795687200 2001:db8::1 fd00::5 host *
1795687200 1234567 fd00::6 host 00:01:00:01:2c:aa:bb:cc
garbage
1795687200 zz:zz 10.0.0.13 x *
1795687200 52:54:00:aa:00:03 10.0.0.300 x *
soon 52:54:00:aa:00:03 10.0.0.14 x *
-5 52:54:00:aa:00:03 10.0.0.15 x *
1795690800 52:54:00:aa:00:04 10.0.0.10 later *

",
                vec![
                    ("52:54:00:aa:00:01", "10.0.0.11", None, Some(1795690800)),
                    ("52:54:00:aa:00:02", "10.0.0.12", None, None),
                    ("52:54:00:aa:00:04", "10.0.0.10", None, Some(1795690800)),
                ],
                vec![7, 8, 9, 10, 11],
            ),
            (
                "CRLF line ends",
                "1795687200 52:54:00:aa:00:05 10.0.0.20 h *\r\n",
                vec![("52:54:00:aa:00:05", "10.0.0.20", None, Some(1795687200))],
                vec![],
            ),
        ];
        for (name, text, leases, skipped) in cases {
            check(LeaseFormat::Dnsmasq, name, text, leases, &skipped);
        }
    }

    const ISC_FULL: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1
# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;
server-duid "\000\001\000\001%>\347\000\000\026>\336\233\260";

failover peer "dhcp-failover" state {
  my state normal at 4 2026/11/26 08:00:00;
  partner state normal at 4 2026/11/26 08:00:00;
}

host bmc-fixed {
  dynamic;
  hardware ethernet 52:54:00:bb:00:09;
  fixed-address 10.1.0.99;
}

lease 10.1.0.10 {
  starts 4 2026/11/26 09:00:00;
  ends 4 2026/11/26 10:00:00;
  cltt 4 2026/11/26 09:30:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 52:54:00:bb:00:01;
  uid "\001RT\000\273\000\001";
  set vendor-class-identifier = "iDRAC; {x} \"quoted\" } # not a comment";
  client-hostname "bmc;one{}";
}
lease 10.1.0.11 {
  starts 4 2026/11/26 09:00:00;
  ends never;
  binding state active;
  hardware ethernet 52:54:00:bb:00:02;
}
lease 10.1.0.12 {
  starts 4 2026/11/26 09:00:00;
  ends 4 2026/11/26 10:00:00;
  binding state free;
  hardware ethernet 52:54:00:bb:00:03;
}
lease 10.1.0.13 {
  starts epoch 1795683600; # Thu Nov 26 10:00:00 2026
  ends epoch 1795687200; # Thu Nov 26 11:00:00 2026
  cltt epoch 1795685400; # Thu Nov 26 10:30:00 2026
  binding state active;
  hardware ethernet 52:54:00:bb:00:04;
  on expiry { set gone = "yes; }"; }
}
lease 10.1.0.14 {
  starts 1 2020/01/06 00:00:00;
  ends 1 2020/01/06 01:00:00;
  hardware ethernet 52:54:00:bb:00:05;
}
lease 10.1.0.15 {
  starts 4 2026/11/26 09:00:00;
  ends 4 2026/11/26 10:00:00;
  binding state active;
  hardware token-ring 00:00:00:00:00:01;
}
ia-na "\001\000\000\000\000\001" {
  cltt 4 2026/11/26 09:00:00;
  iaaddr 2001:db8::5 {
    binding state active;
    ends 4 2026/11/26 10:00:00;
  }
}
"#;

    #[test]
    fn isc_dhcpd_files() {
        let cases: Vec<(&str, &str, Expected, Vec<usize>)> = vec![
            ("empty", "", vec![], vec![]),
            (
                "a full file: comments, failover, host, quoted strings, epoch times",
                ISC_FULL,
                vec![
                    (
                        "52:54:00:bb:00:01",
                        "10.1.0.10",
                        Some(1795685400),
                        Some(1795687200),
                    ),
                    ("52:54:00:bb:00:02", "10.1.0.11", Some(1795683600), None),
                    (
                        "52:54:00:bb:00:04",
                        "10.1.0.13",
                        Some(1795685400),
                        Some(1795687200),
                    ),
                    // No binding state: kept with its end; lookups drop it once ended.
                    ("52:54:00:bb:00:05", "10.1.0.14", Some(1578268800), Some(1578272400)),
                ],
                vec![],
            ),
            (
                "the newest binding wins",
                "\
lease 10.1.0.20 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:20; }
lease 10.1.0.21 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:21; }
lease 10.1.0.22 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:22; }
lease 10.1.0.23 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:23; }
lease 10.1.0.24 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:24; }
lease 10.1.0.20 { starts 4 2026/11/26 09:30:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:2a; }
lease 10.1.0.21 { starts 4 2026/11/26 09:30:00; ends 4 2026/11/26 09:30:00; binding state released; hardware ethernet 52:54:00:bb:00:21; }
lease 10.1.0.22 { starts 4 2026/11/26 09:30:00; ends 4 2026/11/26 09:30:00; binding state expired; hardware ethernet 52:54:00:bb:00:22; }
lease 10.1.0.23 { starts 4 2026/11/26 09:30:00; ends 4 2026/11/26 09:30:00; binding state abandoned; }
lease 10.1.0.24 { starts 4 2026/11/26 09:30:00; ends never; binding state backup; hardware ethernet 52:54:00:bb:00:24; }
",
                vec![("52:54:00:bb:00:2a", "10.1.0.20", Some(1795685400), None)],
                vec![],
            ),
            (
                "malformed blocks are skipped and parsing goes on",
                "\
lease 10.1.0.30 {
  starts 4 2026/13/26 09:00:00;
  ends never;
  binding state active;
  hardware ethernet 52:54:00:bb:00:30;
}
lease 10.1.0.31 { starts 4 2026/11/26 09:00:00; ends never; hardware ethernet zz:zz; }
lease 10.1.0.x { starts 4 2026/11/26 09:00:00; ends never; hardware ethernet 52:54:00:bb:00:32; }
lease 10.1.0.33 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:33; }
lease 10.1.0.34 { starts 4 2026/11/26 09:00:00; ends 4 2026/11/26 25:00:00; hardware ethernet 52:54:00:bb:00:34; }
lease 10.1.0.35 { starts 4 2026/11/26 09:00:00; binding state active; hardware ethernet 52:54:00:bb:00:35; }
lease 10.1.0.36 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:36; }
lease 10.1.0.36 { starts 4 2026/11/26 09:00:00; ends sometime; binding state active; hardware ethernet 52:54:00:bb:00:37; }
lease 10.1.0.38 {
  starts 4 2026/11/26 09:00:00;
  binding state active;
lease 10.1.0.39 { starts 4 2026/11/26 09:00:00; ends never; hardware ethernet 52:54:00:bb:00:39; }
}
%%% garbage here
lease 10.1.0.40 { starts 4 2026/11/26 09:00:00; ends epoch 1795687200; hardware ethernet 52:54:00:bb:00:40; }
lease 10.1.0.41 { starts 4 2026/11/26 09:00:00; ends never; binding; hardware ethernet 52:54:00:bb:00:41; }
",
                vec![
                    ("52:54:00:bb:00:33", "10.1.0.33", Some(1795683600), None),
                    ("52:54:00:bb:00:39", "10.1.0.39", Some(1795683600), None),
                    (
                        "52:54:00:bb:00:40",
                        "10.1.0.40",
                        Some(1795683600),
                        Some(1795687200),
                    ),
                ],
                vec![2, 7, 8, 10, 11, 13, 14, 18, 19, 21],
            ),
            (
                "a block still being appended is dropped, the older one kept",
                "\
lease 10.1.0.50 { starts 4 2026/11/26 09:00:00; ends never; binding state active; hardware ethernet 52:54:00:bb:00:50; }
lease 10.1.0.50 {
  starts 4 2026/11/26 09:30:00;
  ends never;
  binding state free;
  hardware ethernet 52:54",
                vec![("52:54:00:bb:00:50", "10.1.0.50", Some(1795683600), None)],
                vec![2],
            ),
            (
                "an unterminated string leaves its block unclosed",
                "\
lease 10.1.0.51 { starts 4 2026/11/26 09:00:00; ends never; hardware ethernet 52:54:00:bb:00:51; }
lease 10.1.0.52 { starts 4 2026/11/26 09:00:00; ends never; hardware ethernet 52:54:00:bb:00:52; client-hostname \"half \\\" } ;
",
                vec![("52:54:00:bb:00:51", "10.1.0.51", Some(1795683600), None)],
                vec![2],
            ),
            (
                "garbage only",
                "}}} {{{ ;;; \"\n\u{0}\u{fffd} lease",
                vec![],
                vec![1, 1, 1],
            ),
        ];
        for (name, text, leases, skipped) in cases {
            check(LeaseFormat::IscDhcpd, name, text, leases, &skipped);
        }
    }

    #[test]
    fn isc_dhcpd_reasons_name_the_problem() {
        let parsed = parse_isc_dhcpd(
            "lease 10.1.0.30 {\n  starts 4 2026/13/26 09:00:00;\n}\nlease 10.1.0.31 {\n",
        );
        let reasons: Vec<(usize, &str)> = parsed
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    2,
                    "starts: \"2026/13/26\" \"09:00:00\" is not a date and time"
                ),
                (
                    4,
                    "lease block not closed by the end of the file (still being written?)"
                ),
            ]
        );
    }

    const KEA_HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n";

    #[test]
    fn kea_files() {
        let full = format!(
            "{KEA_HEADER}\
10.2.0.10,52:54:00:cc:00:01,01:52:54:00:cc:00:01,3600,1795687200,1,0,0,bmc1,0,,0
10.2.0.11,52:54:00:cc:00:02,,4294967295,6090650895,1,0,0,bmc&#x2c two,0,{{ \"a\": 1&#x2c \"b\": 2 }},0
10.2.0.12,52:54:00:cc:00:03,,3600,1795687200,1,0,0,,1,,0
10.2.0.13,52:54:00:cc:00:04,,3600,1795687200,1,0,0,,2,,0
10.2.0.14,,,3600,1795687200,1,0,0,,0,,0
10.2.0.10,52:54:00:cc:00:05,,3600,1795690800,1,0,0,,0,,0
garbage
10.2.0.15,zz,,3600,1795687200,1,0,0,,0,,0
10.2.0.16,52:54:00:cc:00:06,,soon,1795687200,1,0,0,,0,,0
10.2.0.17,52:54:00:cc:00:07,,3600,x,1,0,0,,0,,0
10.2.0.300,52:54:00:cc:00:08,,3600,1795687200,1,0,0,,0,,0
10.2.0.18,52:54:00:cc:00:08,,3600,1795687200,1,0,0,a,b,0,,0
10.2.0.19,52:54:00:cc:00:09,,3600,1795687200,1,0,0,,0,,0
10.2.0.19,52:54:00:cc:00:09,,3600,1795687200,1,0,0,,3,,0
10.2.0.20,52:54:00:cc:00:0a,,3600,1795687200,1,0,0,,0,,0
10.2.0.20,52:54:00:cc:00:0b,,3600,1795687200,1,0,0,,x,,0

10.2.0.21,52:54:00:cc:00:0c,,0,1795683600,1,0,0,,0,,0
10.2.0.22,52:54:00:cc:00:0d,,3600,9999999999999,1,0,0,,0,,0
"
        );
        let cases: Vec<(&str, String, Expected, Vec<usize>)> = vec![
            ("empty", String::new(), vec![], vec![]),
            ("header only", KEA_HEADER.to_string(), vec![], vec![]),
            (
                "states, escapes, superseding rows and garbage",
                full,
                vec![
                    (
                        "52:54:00:cc:00:02",
                        "10.2.0.11",
                        Some(1795683600),
                        None,
                    ),
                    (
                        "52:54:00:cc:00:05",
                        "10.2.0.10",
                        Some(1795687200),
                        Some(1795690800),
                    ),
                    // A deleted lease (valid_lifetime 0): over as soon as it is written.
                    (
                        "52:54:00:cc:00:0c",
                        "10.2.0.21",
                        Some(1795683600),
                        Some(1795683600),
                    ),
                ],
                vec![8, 9, 10, 11, 12, 13, 17, 20],
            ),
            (
                "columns found by name, as an older Kea wrote them",
                "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n\
10.2.0.30,52:54:00:cc:00:30,,3600,1795687200,1,0,0,h,0\n"
                    .to_string(),
                vec![(
                    "52:54:00:cc:00:30",
                    "10.2.0.30",
                    Some(1795683600),
                    Some(1795687200),
                )],
                vec![],
            ),
            (
                "a header without the needed columns",
                "ip,mac\n10.2.0.31,52:54:00:cc:00:31\n".to_string(),
                vec![],
                vec![1],
            ),
            (
                "a torn last row",
                format!("{KEA_HEADER}10.2.0.32,52:54:00:cc:00:32,,3600,17956"),
                vec![],
                vec![2],
            ),
        ];
        for (name, text, leases, skipped) in cases {
            check(LeaseFormat::Kea, name, &text, leases, &skipped);
        }
    }

    #[test]
    fn kea_escapes_are_undone() {
        assert_eq!(kea_field(&["a&#x2cb&#x2c"], 0), "a,b,");
        assert_eq!(kea_field(&["&#x"], 0), "&#x");
        assert_eq!(kea_field(&["&#xzz&#x2C"], 0), "&#xzz,");
        assert_eq!(kea_field(&["&#xé"], 0), "&#xé");
        assert_eq!(kea_field(&["&#x+2"], 0), "&#x+2");
        assert_eq!(kea_field(&[], 3), "");
    }

    /// A deterministic stream of bytes biased towards the characters the parsers care about.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"0123456789abcdef:.,;{}\"\\# \n\rleasedhcp&x/-";
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pick = (state >> 33) as usize;
                if pick.is_multiple_of(5) {
                    (pick >> 8) as u8
                } else {
                    ALPHABET[pick % ALPHABET.len()]
                }
            })
            .collect()
    }

    #[test]
    fn parsing_never_panics_whatever_the_bytes() {
        let samples = [
            ISC_FULL.as_bytes().to_vec(),
            KEA_HEADER.as_bytes().to_vec(),
            b"1795687200 52:54:00:aa:00:01 10.0.0.10 bmc1 *\n".to_vec(),
        ];
        for seed in 0..400u64 {
            let mut bytes = noise(seed, (seed as usize * 7) % 600);
            // Also garble real files: cut them anywhere and splice noise in.
            let sample = &samples[seed as usize % samples.len()];
            let cut = (seed as usize * 13) % (sample.len() + 1);
            bytes.splice(0..0, sample[..cut].iter().copied());
            let text = String::from_utf8_lossy(&bytes);
            for format in [
                LeaseFormat::Dnsmasq,
                LeaseFormat::IscDhcpd,
                LeaseFormat::Kea,
            ] {
                let parsed = format.parse(&text);
                let lines = text.lines().count().max(1);
                assert!(parsed
                    .skipped
                    .iter()
                    .all(|s| s.line >= 1 && s.line <= lines));
            }
        }
    }

    #[test]
    fn answers_filter_by_now_and_give_every_address_of_the_mac() {
        let bmc = mac("52:54:00:dd:00:01");
        let leases = vec![
            Lease {
                mac: bmc,
                ip: ip("10.3.0.1"),
                seen: Some(at(1795683600)),
                expires: Some(datetime!(2026-11-26 10:00 UTC)),
            },
            Lease {
                mac: bmc,
                ip: ip("10.3.0.2"),
                seen: None,
                expires: None,
            },
            Lease {
                mac: bmc,
                ip: ip("10.3.0.3"),
                seen: None,
                expires: Some(datetime!(2026-11-26 09:00 UTC)),
            },
            Lease {
                mac: mac("52:54:00:dd:00:02"),
                ip: ip("10.3.0.4"),
                seen: None,
                expires: Some(datetime!(2026-11-26 11:00 UTC)),
            },
        ];
        let now = datetime!(2026-11-26 09:30 UTC);
        let Answer::Seen(sightings) = answer(&leases, bmc, now) else {
            panic!("expected Seen");
        };
        assert_eq!(
            sightings,
            vec![
                Sighting {
                    ip: Some(ip("10.3.0.1")),
                    redfish_url: None,
                    last_seen: Some(at(1795683600)),
                    current: true,
                    detail: "lease until 2026-11-26T10:00:00Z".into(),
                },
                Sighting {
                    ip: Some(ip("10.3.0.2")),
                    redfish_url: None,
                    last_seen: None,
                    current: true,
                    detail: "lease without end".into(),
                },
            ]
        );
        // Ends are exclusive: at 10:00 the first lease is over.
        let Answer::Seen(later) = answer(&leases, bmc, datetime!(2026-11-26 10:00 UTC)) else {
            panic!("expected Seen");
        };
        assert_eq!(later.len(), 1);
        assert_eq!(
            answer(&leases, mac("52:54:00:dd:00:09"), now),
            Answer::NotSeen("no lease among 3 unexpired leases".into())
        );
        assert_eq!(
            answer(
                &leases,
                mac("52:54:00:dd:00:02"),
                datetime!(2026-11-26 12:00 UTC)
            ),
            Answer::NotSeen("no lease among 1 unexpired leases".into())
        );
    }

    fn write(path: &Path, content: &str) {
        fs::write(path, content).unwrap();
    }

    /// Rewrites in place, as dnsmasq does (truncate, then write on the same inode).
    fn rewrite_in_place(path: &Path, content: &str) {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.write_all(content.as_bytes()).unwrap();
    }

    fn replace_by_rename(path: &Path, content: &str) {
        let temporary = path.with_extension("new");
        write(&temporary, content);
        fs::rename(&temporary, path).unwrap();
    }

    fn age(path: &Path, seconds_ago: u64) {
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
            .unwrap();
    }

    #[test]
    fn a_file_rewritten_in_place_during_the_read_gives_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        // Same size, so within one clock tick nothing in the metadata changes: only the
        // confirming read can tell; and a different size, which the metadata shows.
        for new in ["new version 2\n", "a longer new version 2\n"] {
            write(&path, "old version 1\n");
            let mut calls = Vec::new();
            let snapshot = read_stable_with(&path, 1024, |attempt| {
                calls.push(attempt);
                if attempt == 0 {
                    rewrite_in_place(&path, new);
                }
            })
            .unwrap();
            assert_eq!(snapshot.text, new);
            assert!(calls.len() >= 2, "read again after the rewrite: {calls:?}");
        }
        // Old enough that the version vouches for the content: one read and settled.
        write(&path, "settled\n");
        age(&path, 60);
        let mut calls = 0;
        let snapshot = read_stable_with(&path, 1024, |_| calls += 1).unwrap();
        assert_eq!(
            (snapshot.text.as_str(), snapshot.settled, calls),
            ("settled\n", true, 1)
        );
        // Rewritten during that read, though, it is read again.
        let snapshot = read_stable_with(&path, 1024, |attempt| {
            if attempt == 0 {
                rewrite_in_place(&path, "changed\n");
            }
        })
        .unwrap();
        assert_eq!(snapshot.text, "changed\n");
        assert!(!snapshot.settled, "a fresh version is not settled");
    }

    #[test]
    fn a_file_renamed_over_during_the_read_gives_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dhcpd.leases");
        write(&path, "lease one\n");
        age(&path, 60);
        let old_inode = fs::metadata(&path).unwrap().ino();
        let snapshot = read_stable_with(&path, 1024, |attempt| {
            if attempt == 0 {
                replace_by_rename(&path, "lease two\n");
            }
        })
        .unwrap();
        assert_eq!(snapshot.text, "lease two\n");
        assert_ne!(snapshot.version.inode, old_inode);
        assert_eq!(snapshot.version.inode, fs::metadata(&path).unwrap().ino());
    }

    #[test]
    fn a_trailing_half_line_is_waited_for_then_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        write(&path, "line 1\nline 2\nhalf a li");
        let mut calls = 0;
        let snapshot = read_stable_with(&path, 1024, |_| calls += 1).unwrap();
        assert_eq!(snapshot.text, "line 1\nline 2\n");
        assert_eq!(
            calls, READ_ATTEMPTS,
            "it read again before giving up on the tail"
        );
        // Completed by the writer meanwhile: the whole line.
        write(&path, "line 1\nhalf a li");
        let snapshot = read_stable_with(&path, 1024, |attempt| {
            if attempt == 0 {
                let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
                file.write_all(b"ne\n").unwrap();
            }
        })
        .unwrap();
        assert_eq!(snapshot.text, "line 1\nhalf a line\n");
        // Nothing but a half line: nothing.
        write(&path, "no newline");
        assert_eq!(read_stable(&path, 1024).unwrap().text, "");
    }

    #[test]
    fn reading_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        let missing = read_stable(&path, 1024).unwrap_err();
        assert!(
            matches!(&missing, LeaseReadError::Io(e) if e.kind() == io::ErrorKind::NotFound),
            "{missing}"
        );
        assert!(matches!(
            read_stable(dir.path(), 1024),
            Err(LeaseReadError::NotAFile)
        ));
        write(&path, "0123456789\n");
        let error = read_stable(&path, 10).unwrap_err();
        assert!(matches!(
            error,
            LeaseReadError::TooBig { size: 11, max: 10 }
        ));
        assert_eq!(
            error.to_string(),
            "11 bytes, more than the 10 bytes a lease file may have"
        );
        // Changed on every attempt: it gives up rather than return a mix.
        let mut flip = false;
        let error = read_stable_with(&path, 1024, |_| {
            flip = !flip;
            rewrite_in_place(&path, if flip { "aaaa\n" } else { "bbbbbbbb\n" });
        })
        .unwrap_err();
        assert!(
            matches!(
                error,
                LeaseReadError::KeptChanging {
                    attempts: READ_ATTEMPTS
                }
            ),
            "{error}"
        );
    }

    /// Version `n` of the stress test's file: every version the same size, each line
    /// carrying the version number, so a mix of two is never a valid version.
    fn stress_version(n: u32) -> String {
        (0..200)
            .map(|i| {
                format!(
                    "{:010} 52:54:00:ee:{:02x}:{:02x} 10.4.{}.{} v{n:08} *\n",
                    1795687200 + i64::from(n),
                    i / 256,
                    i % 256,
                    i / 200,
                    i % 200
                )
            })
            .collect()
    }

    /// The contract of [`read_stable`] holds for writers that finish a rewrite within
    /// [`FRESH_FOR`]. The writer here times each of its rewrites: a read that is not one
    /// complete version fails the test unless some rewrite stalled past that bound (a
    /// loaded machine can deschedule the writer between truncating and writing, and no
    /// reader can tell a stalled truncation from a finished file).
    #[test]
    fn a_reader_never_sees_a_mix_while_a_writer_rewrites_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.leases");
        write(&path, &stress_version(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let path = path.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 1;
                let mut slowest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let content = stress_version(n);
                    // Cut mid-line, as a stdio buffer flush cuts.
                    let (first, second) = content.as_bytes().split_at(content.len() / 3 + 7);
                    let began = std::time::Instant::now();
                    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
                    file.set_len(0).unwrap();
                    file.rewind().unwrap();
                    file.write_all(first).unwrap();
                    std::thread::yield_now();
                    file.write_all(second).unwrap();
                    drop(file);
                    slowest = slowest.max(began.elapsed());
                    n += 1;
                    // Bursts of rewrites with quiet spells between, as a busy server's come.
                    let pause = if n.is_multiple_of(10) { 25 } else { n % 3 };
                    std::thread::sleep(Duration::from_millis(u64::from(pause)));
                }
                (n, slowest)
            })
        };
        let mut good = 0;
        let mut bad = Vec::new();
        let mut gave_up = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(1500) && good < 400 {
            match read_stable(&path, MAX_LEASE_FILE_BYTES) {
                Ok(snapshot) => {
                    let version = snapshot
                        .text
                        .split_whitespace()
                        .nth(3)
                        .and_then(|v| v.strip_prefix('v'))
                        .and_then(|v| v.parse::<u32>().ok());
                    match version {
                        Some(version) if snapshot.text == stress_version(version) => {
                            let parsed = parse_dnsmasq(&snapshot.text);
                            assert_eq!((parsed.leases.len(), parsed.skipped.len()), (200, 0));
                            good += 1;
                        }
                        // Not the text itself: a 10 KB diff would bury the point.
                        _ => bad.push(format!(
                            "{} bytes that are no complete version, starting {:?}",
                            snapshot.text.len(),
                            snapshot.text.lines().next()
                        )),
                    }
                }
                Err(LeaseReadError::KeptChanging { .. }) => gave_up += 1,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let (versions, slowest) = writer.join().unwrap();
        assert!(
            bad.is_empty() || slowest > FRESH_FOR,
            "read {} mixed or partial versions although every rewrite took at most {slowest:?}: {bad:?}",
            bad.len()
        );
        assert!(
            good >= 10,
            "only {good} good reads ({gave_up} gave up, {} bad) over {versions} versions",
            bad.len()
        );
        assert!(versions > 20, "the writer wrote only {versions} versions");
    }

    fn lease_line(mac: &str, ip: &str) -> String {
        format!("0 {mac} {ip} bmc *\n")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_lookups_parses_an_unchanged_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.leases");
        let mut text: String = (0..5000)
            .map(|i| {
                lease_line(
                    &format!("52:54:00:ff:{:02x}:{:02x}", i / 256, i % 256),
                    &format!("10.5.{}.{}", i / 250, i % 250),
                )
            })
            .collect();
        text.push_str(&lease_line("02:00:5e:10:00:42", "10.5.99.1"));
        write(&path, &text);
        age(&path, 60);
        let source = LeaseFile::new(LeaseFormat::Dnsmasq, path.clone());
        let bmc = mac("02:00:5e:10:00:42");
        let now = OffsetDateTime::now_utc();
        let answers = futures::future::join_all((0..1000).map(|_| source.lookup(bmc, now))).await;
        for answer in &answers {
            let Answer::Seen(sightings) = answer else {
                panic!("expected Seen, got {answer:?}");
            };
            assert_eq!(sightings[0].ip, Some(ip("10.5.99.1")));
        }
        assert_eq!(source.shared.reads.load(Ordering::Relaxed), 1);
        // Changed (same size, but another time): read again, once.
        write(&path, &text.replace("10.5.99.1", "10.5.99.2"));
        age(&path, 30);
        for _ in 0..10 {
            let Answer::Seen(sightings) = source.lookup(bmc, now).await else {
                panic!("expected Seen");
            };
            assert_eq!(sightings[0].ip, Some(ip("10.5.99.2")));
        }
        assert_eq!(source.shared.reads.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_version_too_fresh_to_vouch_for_its_content_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.leases");
        write(&path, &lease_line("02:00:5e:10:00:42", "10.5.0.1"));
        // A modification time ahead of the clock (skew, or a write this very tick).
        let file = File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let source = LeaseFile::new(LeaseFormat::Dnsmasq, path.clone());
        for _ in 0..3 {
            let answer = source
                .lookup(mac("02:00:5e:10:00:42"), OffsetDateTime::now_utc())
                .await;
            assert!(matches!(answer, Answer::Seen(_)), "{answer:?}");
        }
        assert_eq!(source.shared.reads.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn lookups_filter_expired_leases_by_the_given_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kea-leases4.csv");
        write(
            &path,
            &format!(
                "{KEA_HEADER}\
10.6.0.1,02:00:5e:10:00:42,,3600,1795687200,1,0,0,bmc,0,,0
10.6.0.2,02:00:5e:10:00:43,,3600,1795690800,1,0,0,other,0,,0
"
            ),
        );
        let source = LeaseFile::new(LeaseFormat::Kea, path.clone());
        assert_eq!(source.kind(), SourceKind::Kea);
        assert_eq!(source.name(), path.display().to_string());
        let bmc = mac("02:00:5e:10:00:42");
        let answer = source.lookup(bmc, datetime!(2026-11-26 09:59:59 UTC)).await;
        assert_eq!(
            answer,
            Answer::Seen(vec![Sighting {
                ip: Some(ip("10.6.0.1")),
                redfish_url: None,
                last_seen: Some(datetime!(2026-11-26 09:00 UTC)),
                current: true,
                detail: "lease until 2026-11-26T10:00:00Z".into(),
            }])
        );
        let answer = source.lookup(bmc, datetime!(2026-11-26 10:30 UTC)).await;
        assert_eq!(
            answer,
            Answer::NotSeen("no lease among 1 unexpired leases".into())
        );
    }

    #[tokio::test]
    async fn a_missing_or_oversized_file_fails_for_now_and_may_appear_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dhcpd.leases");
        let source = LeaseFile::new(LeaseFormat::IscDhcpd, path.clone());
        let bmc = mac("02:00:5e:10:00:42");
        let now = datetime!(2026-11-26 09:30 UTC);
        let Answer::Failed { error, permanent } = source.lookup(bmc, now).await else {
            panic!("expected Failed");
        };
        assert!(!permanent);
        assert!(
            error.contains("No such file") && !error.contains("dhcpd.leases"),
            "{error}"
        );
        write(
            &path,
            "lease 10.7.0.1 {\n  starts 4 2026/11/26 09:00:00;\n  ends never;\n  binding state active;\n  hardware ethernet 02:00:5e:10:00:42;\n}\n",
        );
        let answer = source.lookup(bmc, now).await;
        let Answer::Seen(sightings) = answer else {
            panic!("expected Seen, got {answer:?}");
        };
        assert_eq!(sightings[0].ip, Some(ip("10.7.0.1")));
        assert_eq!(
            sightings[0].last_seen,
            Some(datetime!(2026-11-26 09:00 UTC))
        );
        assert_eq!(sightings[0].detail, "lease without end");
        // Grown past the limit (sparse, so cheap): refused, not read.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(MAX_LEASE_FILE_BYTES + 1)
            .unwrap();
        let Answer::Failed { error, permanent } = source.lookup(bmc, now).await else {
            panic!("expected Failed");
        };
        assert!(!permanent);
        assert!(error.contains("more than the 67108864 bytes"), "{error}");
    }
}
