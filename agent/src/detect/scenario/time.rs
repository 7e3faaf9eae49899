//! Timestamps read from log lines, so that a replayed log fills its buckets as it did live.
//!
//! Recognised at the start of a line (after an RFC 5424 `<PRI>1 ` header): ISO 8601 /
//! RFC 3339 (`2015-04-16T18:02:50.321974+00:00`, with or without zone), nginx's error log
//! (`2021/09/30 09:23:53`), classic syslog without a year (`Feb  7 16:01:07`) and Apache's
//! error log (`[Sun Jul 10 16:24:28.123456 2016]`); anywhere in the first 256 bytes, the
//! common log format of access logs (`[30/Sep/2021:09:58:05 +0200]`). Times without a zone
//! are local time. A syslog time gets the year of `now`, or the year before when that would
//! put it more than a day in the future (a December line read in January).
//!
//! Hand-written rather than `chrono`'s `strptime`-style parsing: it runs on every matched
//! line, and trying a list of format strings in turn is several times slower.

use std::time::SystemTime;

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// The time a log line was written, when the line says; `None` when it does not.
pub fn parse_line_time(line: &str, now: SystemTime) -> Option<SystemTime> {
    let (naive, zone) = parse_naive(line, now)?;
    let time = match zone {
        Some(offset) => offset.from_local_datetime(&naive).single()?.to_utc(),
        None => Local.from_local_datetime(&naive).earliest()?.to_utc(),
    };
    Some(time.into())
}

/// The date and time as written in the line, with its UTC offset when it has one. Public
/// for tests that compare with a log's own annotations.
pub fn parse_naive(line: &str, now: SystemTime) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let bytes = line.as_bytes();
    let mut at = 0;
    // RFC 5424: "<38>1 2019-07-08T17:40:16.954167-04:00 host app ..."; RFC 3164: "<38>Feb ..."
    if bytes.first() == Some(&b'<') {
        let close = bytes.iter().take(6).position(|&b| b == b'>')?;
        at = close + 1;
        if bytes.get(at) == Some(&b'1') && bytes.get(at + 1) == Some(&b' ') {
            at += 2;
        }
    }
    let rest = &bytes[at..];
    if let Some(found) = iso(rest) {
        return Some(found);
    }
    if let Some(found) = syslog(rest, now) {
        return Some((found, None));
    }
    if let Some(found) = apache_error(rest) {
        return Some((found, None));
    }
    clf(bytes)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.bytes.get(self.at..self.at + n)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.at += n;
        Some(value)
    }

    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.bytes.get(self.at) == Some(&expected)).then(|| self.at += 1)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn one_of(&mut self, set: &[u8]) -> Option<u8> {
        let b = self.peek().filter(|b| set.contains(b))?;
        self.at += 1;
        Some(b)
    }

    fn month(&mut self) -> Option<u32> {
        let name = self.bytes.get(self.at..self.at + 3)?;
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
        self.at += 3;
        Some(index as u32 + 1)
    }

    /// `HH:MM:SS` with an optional fraction; returns (h, m, s, nanos).
    fn clock(&mut self) -> Option<(u32, u32, u32, u32)> {
        let h = self.digits(2)?;
        self.byte(b':')?;
        let m = self.digits(2)?;
        self.byte(b':')?;
        let s = self.digits(2)?;
        let mut nanos = 0;
        if self.one_of(b".,").is_some() {
            let mut scale = 100_000_000;
            let mut any = false;
            while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
                nanos += u32::from(b - b'0') * scale;
                scale /= 10;
                self.at += 1;
                any = true;
            }
            if !any {
                return None;
            }
        }
        Some((h, m, s, nanos))
    }

    /// `Z`, `±HH:MM` or `±HHMM`.
    fn zone(&mut self) -> Option<FixedOffset> {
        if self.byte(b'Z').is_some() {
            return FixedOffset::east_opt(0);
        }
        let sign = self.one_of(b"+-")?;
        let h = self.digits(2)?;
        let _ = self.byte(b':');
        let m = self.digits(2)?;
        let seconds = (h * 3600 + m * 60) as i32;
        FixedOffset::east_opt(if sign == b'-' { -seconds } else { seconds })
    }
}

fn datetime(
    y: i32,
    mo: u32,
    d: u32,
    (h, mi, s, nanos): (u32, u32, u32, u32),
) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_nano_opt(h, mi, s, nanos)
}

/// `2015-04-16T18:02:50.321974+00:00`, `2015-04-16 18:02:50`, `2021/09/30 09:23:53`.
fn iso(bytes: &[u8]) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let mut c = Cursor::new(bytes);
    let y = c.digits(4)?;
    let sep = c.one_of(b"-/")?;
    let mo = c.digits(2)?;
    c.byte(sep)?;
    let d = c.digits(2)?;
    c.one_of(b"T ")?;
    let clock = c.clock()?;
    let zone = c.zone();
    Some((datetime(y as i32, mo, d, clock)?, zone))
}

/// `Feb  7 16:01:07`, `Jul 05 18:22:44`, `Feb 7 16:01:07`: no year.
fn syslog(bytes: &[u8], now: SystemTime) -> Option<NaiveDateTime> {
    let mut c = Cursor::new(bytes);
    let mo = c.month()?;
    c.byte(b' ')?;
    let _ = c.byte(b' ');
    let d = match c.digits(2) {
        Some(d) => d,
        None => c.digits(1)?,
    };
    c.byte(b' ')?;
    let clock = c.clock()?;
    let now_local: DateTime<Local> = now.into();
    let year = now_local.year();
    let this_year = datetime(year, mo, d, clock)?;
    let limit = now_local.naive_local() + chrono::Duration::days(1);
    if this_year > limit {
        datetime(year - 1, mo, d, clock)
    } else {
        Some(this_year)
    }
}

/// `[Sun Jul 10 16:24:28.123456 2016]` (Apache 2.4) or `[Sun Jul 10 16:24:28 2016]`.
fn apache_error(bytes: &[u8]) -> Option<NaiveDateTime> {
    let mut c = Cursor::new(bytes);
    c.byte(b'[')?;
    c.at += 3; // weekday
    c.byte(b' ')?;
    let mo = c.month()?;
    c.byte(b' ')?;
    let _ = c.byte(b' ');
    let d = match c.digits(2) {
        Some(d) => d,
        None => c.digits(1)?,
    };
    c.byte(b' ')?;
    let clock = c.clock()?;
    c.byte(b' ')?;
    let y = c.digits(4)?;
    c.byte(b']')?;
    datetime(y as i32, mo, d, clock)
}

/// `[30/Sep/2021:09:58:05 +0200]`, anywhere in the first 256 bytes.
fn clf(bytes: &[u8]) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let head = &bytes[..bytes.len().min(256)];
    let mut from = 0;
    while let Some(open) = head[from..].iter().position(|&b| b == b'[') {
        let start = from + open + 1;
        let mut c = Cursor::new(&head[start..]);
        let parsed = (|| {
            let d = c.digits(2)?;
            c.byte(b'/')?;
            let mo = c.month()?;
            c.byte(b'/')?;
            let y = c.digits(4)?;
            c.byte(b':')?;
            let clock = c.clock()?;
            c.byte(b' ')?;
            let zone = c.zone()?;
            Some((datetime(y as i32, mo, d, clock)?, Some(zone)))
        })();
        if parsed.is_some() {
            return parsed;
        }
        from = start;
    }
    None
}

/// Seconds since the epoch, for display.
pub fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn now() -> SystemTime {
        // 2026-11-21T12:00:00Z
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_262_400)
    }

    fn naive(line: &str) -> (String, Option<i32>) {
        let (dt, zone) = parse_naive(line, now()).unwrap_or_else(|| panic!("no time in {line:?}"));
        (
            dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            zone.map(|z| z.local_minus_utc()),
        )
    }

    #[test]
    fn formats_of_the_logs_we_read() {
        let cases = [
            (
                "Feb  7 16:01:07 host sshd[1]: x",
                "2026-02-07T16:01:07",
                None,
            ),
            (
                "Jul 05 18:22:44 mercury sshd[4669]: x",
                "2026-07-05T18:22:44",
                None,
            ),
            (
                "Feb 7 16:01:07 linux sshd[5106]: x",
                "2026-02-07T16:01:07",
                None,
            ),
            (
                "2015-04-16T18:02:50.321974+00:00 host sshd[2716]: x",
                "2015-04-16T18:02:50.321974",
                Some(0),
            ),
            (
                "<38>1 2019-07-08T17:40:16.954167-04:00 h sshd 57915 - - x",
                "2019-07-08T17:40:16.954167",
                Some(-4 * 3600),
            ),
            (
                "2021/09/30 09:23:53 [error] 1#1: x",
                "2021-09-30T09:23:53",
                None,
            ),
            (
                "[Sun Jul 10 16:24:28.123456 2016] [auth_basic:error] x",
                "2016-07-10T16:24:28.123456",
                None,
            ),
            (
                "127.0.0.1 - - [30/Sep/2021:09:58:05 +0200] \"GET / HTTP/1.1\" 404",
                "2021-09-30T09:58:05",
                Some(7200),
            ),
        ];
        for (line, expected, zone) in cases {
            assert_eq!(naive(line), (expected.to_owned(), zone), "{line}");
        }
    }

    #[test]
    fn a_december_line_read_in_january_is_last_year() {
        let january = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_268_800); // 2026-01-01T12:00Z
        let (dt, _) = parse_naive("Dec 31 23:59:00 host x", january).unwrap();
        assert_eq!(dt.year(), 2025);
        assert_eq!(dt.hour(), 23);
    }

    #[test]
    fn zones_are_applied() {
        let time = parse_line_time("2015-04-16T18:02:50+02:00 x", now()).unwrap();
        assert_eq!(rfc3339(time), "2015-04-16T16:02:50Z");
    }

    #[test]
    fn lines_without_time() {
        assert!(parse_naive("no time here", now()).is_none());
        assert!(parse_naive("Feb 30 10:00:00 impossible date", now()).is_none());
        assert!(parse_naive("", now()).is_none());
    }
}
