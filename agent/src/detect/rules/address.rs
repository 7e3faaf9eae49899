//! Address and port sets of a rule header: `any`, CIDRs, ranges `a-b`, lists `[..]`,
//! negation `!` and `$VARIABLES`, resolved once at load time into sorted interval lists so
//! that matching a packet is a binary search, not a walk over the rule's text.

use std::net::IpAddr;

use super::vars::Vars;

/// How deep `$VAR` references may nest before we call it a loop.
const MAX_VAR_DEPTH: usize = 16;

/// Sorted, disjoint, inclusive intervals over one integer domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Intervals<T> {
    ranges: Vec<(T, T)>,
}

/// The integer domains address and port sets live in.
pub(super) trait Domain: Copy + Ord + std::fmt::Debug {
    const MIN: Self;
    const MAX: Self;
    fn pred(self) -> Self;
    fn succ(self) -> Self;
}

macro_rules! domain {
    ($t:ty) => {
        impl Domain for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            fn pred(self) -> Self {
                self - 1
            }
            fn succ(self) -> Self {
                self + 1
            }
        }
    };
}
domain!(u16);
domain!(u32);
domain!(u128);

impl<T: Domain> Intervals<T> {
    pub(super) fn empty() -> Self {
        Intervals { ranges: Vec::new() }
    }

    pub(super) fn full() -> Self {
        Intervals {
            ranges: vec![(T::MIN, T::MAX)],
        }
    }

    pub(super) fn single(lo: T, hi: T) -> Self {
        Intervals {
            ranges: vec![(lo.min(hi), lo.max(hi))],
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.ranges == [(T::MIN, T::MAX)]
    }

    pub(super) fn contains(&self, value: T) -> bool {
        // The common cases are one range or a handful; binary search covers the rest.
        match self.ranges.as_slice() {
            [] => false,
            [(lo, hi)] => *lo <= value && value <= *hi,
            ranges => {
                let index = ranges.partition_point(|(lo, _)| *lo <= value);
                index > 0 && value <= ranges[index - 1].1
            }
        }
    }

    pub(super) fn union(&self, other: &Self) -> Self {
        let mut all: Vec<(T, T)> = self.ranges.iter().chain(&other.ranges).copied().collect();
        all.sort();
        let mut ranges: Vec<(T, T)> = Vec::with_capacity(all.len());
        for (lo, hi) in all {
            match ranges.last_mut() {
                Some(last) if last.1 == T::MAX || lo <= last.1.succ() => last.1 = last.1.max(hi),
                _ => ranges.push((lo, hi)),
            }
        }
        Intervals { ranges }
    }

    pub(super) fn complement(&self) -> Self {
        let mut ranges = Vec::new();
        let mut next = Some(T::MIN);
        for &(lo, hi) in &self.ranges {
            if let Some(start) = next
                && lo > start
            {
                ranges.push((start, lo.pred()));
            }
            next = if hi == T::MAX { None } else { Some(hi.succ()) };
        }
        if let Some(start) = next {
            ranges.push((start, T::MAX));
        }
        Intervals { ranges }
    }

    pub(super) fn minus(&self, other: &Self) -> Self {
        self.intersect(&other.complement())
    }

    pub(super) fn intersect(&self, other: &Self) -> Self {
        let mut ranges = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a_lo, a_hi) = self.ranges[i];
            let (b_lo, b_hi) = other.ranges[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                ranges.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Intervals { ranges }
    }
}

/// A set of IPv4 and IPv6 addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    v4: Intervals<u32>,
    v6: Intervals<u128>,
}

impl AddrSet {
    pub fn any() -> Self {
        AddrSet {
            v4: Intervals::full(),
            v6: Intervals::full(),
        }
    }

    fn empty() -> Self {
        AddrSet {
            v4: Intervals::empty(),
            v6: Intervals::empty(),
        }
    }

    pub fn is_any(&self) -> bool {
        self.v4.is_full() && self.v6.is_full()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    fn union(&self, other: &Self) -> Self {
        AddrSet {
            v4: self.v4.union(&other.v4),
            v6: self.v6.union(&other.v6),
        }
    }

    fn minus(&self, other: &Self) -> Self {
        AddrSet {
            v4: self.v4.minus(&other.v4),
            v6: self.v6.minus(&other.v6),
        }
    }

    fn complement(&self) -> Self {
        AddrSet {
            v4: self.v4.complement(),
            v6: self.v6.complement(),
        }
    }

    /// Parses a header address field such as `[$HOME_NET,!10.0.0.1]`.
    pub fn parse(text: &str, vars: &Vars) -> Result<AddrSet, String> {
        let set = parse_set(text, vars, 0, &|item, vars, depth| {
            parse_addr_item(item, vars, depth)
        })?;
        if set.is_empty() {
            return Err(format!("address \"{text}\" matches nothing"));
        }
        Ok(set)
    }
}

/// A set of TCP/UDP ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet(Intervals<u16>);

impl PortSet {
    pub fn any() -> Self {
        PortSet(Intervals::full())
    }

    pub fn is_any(&self) -> bool {
        self.0.is_full()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ports, when there are fewer than `limit` of them (for indexing rules by port).
    pub fn ports_if_fewer_than(&self, limit: usize) -> Option<Vec<u16>> {
        let mut ports = Vec::new();
        for &(lo, hi) in &self.0.ranges {
            if usize::from(hi - lo) + 1 + ports.len() >= limit {
                return None;
            }
            ports.extend(lo..=hi);
        }
        Some(ports)
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.contains(port)
    }

    /// Parses a header port field such as `[1024:,!8080]` or `$HTTP_PORTS`.
    pub fn parse(text: &str, vars: &Vars) -> Result<PortSet, String> {
        let set = parse_set(text, vars, 0, &|item, vars, depth| {
            parse_port_item(item, vars, depth)
        })?;
        if set.is_empty() {
            return Err(format!("port \"{text}\" matches nothing"));
        }
        Ok(set)
    }
}

/// The set operations both kinds of header field need.
trait SetOps: Sized {
    fn everything() -> Self;
    fn nothing() -> Self;
    fn or(&self, other: &Self) -> Self;
    fn but(&self, other: &Self) -> Self;
    fn not(&self) -> Self;
}

impl SetOps for AddrSet {
    fn everything() -> Self {
        AddrSet::any()
    }
    fn nothing() -> Self {
        AddrSet::empty()
    }
    fn or(&self, other: &Self) -> Self {
        self.union(other)
    }
    fn but(&self, other: &Self) -> Self {
        self.minus(other)
    }
    fn not(&self) -> Self {
        self.complement()
    }
}

impl SetOps for PortSet {
    fn everything() -> Self {
        PortSet::any()
    }
    fn nothing() -> Self {
        PortSet(Intervals::empty())
    }
    fn or(&self, other: &Self) -> Self {
        PortSet(self.0.union(&other.0))
    }
    fn but(&self, other: &Self) -> Self {
        PortSet(self.0.minus(&other.0))
    }
    fn not(&self) -> Self {
        PortSet(self.0.complement())
    }
}

type ItemParser<S> = dyn Fn(&str, &Vars, usize) -> Result<S, String>;

/// Suricata's list semantics: the union of the positive members minus the union of the
/// negated ones; a list of only negations means "everything but".
fn parse_set<S: SetOps>(
    text: &str,
    vars: &Vars,
    depth: usize,
    item: &ItemParser<S>,
) -> Result<S, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty address or port".to_owned());
    }
    if let Some(rest) = text.strip_prefix('!') {
        return Ok(parse_set(rest, vars, depth, item)?.not());
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unbalanced brackets in \"{text}\""))?;
        let mut positive: Option<S> = None;
        let mut negative = S::nothing();
        for member in split_top_level(inner)? {
            let member = member.trim();
            if let Some(negated) = member.strip_prefix('!') {
                negative = negative.or(&parse_set(negated, vars, depth, item)?);
            } else {
                let set = parse_set(member, vars, depth, item)?;
                positive = Some(match positive {
                    Some(acc) => acc.or(&set),
                    None => set,
                });
            }
        }
        return Ok(positive.unwrap_or_else(S::everything).but(&negative));
    }
    item(text, vars, depth)
}

/// Splits `a,[b,c],d` at the commas outside brackets.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced brackets in \"{text}\""))?
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced brackets in \"{text}\""));
    }
    parts.push(&text[start..]);
    if parts.iter().any(|part| part.trim().is_empty()) {
        return Err(format!("empty member in list \"[{text}]\""));
    }
    Ok(parts)
}

fn parse_addr_item(item: &str, vars: &Vars, depth: usize) -> Result<AddrSet, String> {
    if item.eq_ignore_ascii_case("any") {
        return Ok(AddrSet::any());
    }
    if let Some(name) = item.strip_prefix('$') {
        if depth >= MAX_VAR_DEPTH {
            return Err(format!("variable ${name} refers to itself"));
        }
        let value = vars
            .address(name)
            .ok_or_else(|| format!("undefined address variable ${name}"))?;
        return parse_set(value, vars, depth + 1, &|item, vars, depth| {
            parse_addr_item(item, vars, depth)
        });
    }
    if let Some((lo, hi)) = item.split_once('-') {
        let lo: IpAddr = lo
            .trim()
            .parse()
            .map_err(|_| format!("invalid address \"{item}\""))?;
        let hi: IpAddr = hi
            .trim()
            .parse()
            .map_err(|_| format!("invalid address \"{item}\""))?;
        return match (lo, hi) {
            (IpAddr::V4(lo), IpAddr::V4(hi)) => Ok(AddrSet {
                v4: Intervals::single(u32::from(lo), u32::from(hi)),
                v6: Intervals::empty(),
            }),
            (IpAddr::V6(lo), IpAddr::V6(hi)) => Ok(AddrSet {
                v4: Intervals::empty(),
                v6: Intervals::single(u128::from(lo), u128::from(hi)),
            }),
            _ => Err(format!("address range \"{item}\" mixes IPv4 and IPv6")),
        };
    }
    let (addr, prefix) = match item.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (item, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("invalid address \"{item}\""))?;
    match addr {
        IpAddr::V4(v4) => {
            let bits = prefix_len(prefix, 32, item)?;
            let value = u32::from(v4);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Ok(AddrSet {
                v4: Intervals::single(value & mask, (value & mask) | !mask),
                v6: Intervals::empty(),
            })
        }
        IpAddr::V6(v6) => {
            let bits = prefix_len(prefix, 128, item)?;
            let value = u128::from(v6);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            Ok(AddrSet {
                v4: Intervals::empty(),
                v6: Intervals::single(value & mask, (value & mask) | !mask),
            })
        }
    }
}

/// A prefix length, or a dotted netmask for IPv4 (`10.0.0.0/255.0.0.0`).
fn prefix_len(prefix: Option<&str>, max: u32, item: &str) -> Result<u32, String> {
    let Some(prefix) = prefix else {
        return Ok(max);
    };
    if let Ok(bits) = prefix.parse::<u32>()
        && bits <= max
    {
        return Ok(bits);
    }
    if max == 32
        && let Ok(mask) = prefix.parse::<std::net::Ipv4Addr>()
    {
        let mask = u32::from(mask);
        if mask.leading_ones() + mask.trailing_zeros() == 32 {
            return Ok(mask.leading_ones());
        }
    }
    Err(format!("invalid prefix in \"{item}\""))
}

fn parse_port_item(item: &str, vars: &Vars, depth: usize) -> Result<PortSet, String> {
    if item.eq_ignore_ascii_case("any") {
        return Ok(PortSet::any());
    }
    if let Some(name) = item.strip_prefix('$') {
        if depth >= MAX_VAR_DEPTH {
            return Err(format!("variable ${name} refers to itself"));
        }
        let value = vars
            .port(name)
            .ok_or_else(|| format!("undefined port variable ${name}"))?;
        return parse_set(value, vars, depth + 1, &|item, vars, depth| {
            parse_port_item(item, vars, depth)
        });
    }
    let port = |text: &str, default: u16| -> Result<u16, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(default);
        }
        text.parse().map_err(|_| format!("invalid port \"{item}\""))
    };
    match item.split_once(':') {
        Some((lo, hi)) => {
            let lo = port(lo, 0)?;
            let hi = port(hi, u16::MAX)?;
            if lo > hi {
                return Err(format!("invalid port range \"{item}\""));
            }
            Ok(PortSet(Intervals::single(lo, hi)))
        }
        None => {
            let value = port(item, 0)?;
            if item.trim().is_empty() {
                return Err("empty port".to_owned());
            }
            Ok(PortSet(Intervals::single(value, value)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> AddrSet {
        AddrSet::parse(text, &Vars::default()).unwrap()
    }

    #[test]
    fn home_net_and_external_net_are_complements() {
        let home = addr("$HOME_NET");
        let external = addr("$EXTERNAL_NET");
        for ip in ["10.1.2.3", "192.168.1.1", "172.16.0.1"] {
            assert!(home.contains(ip.parse().unwrap()));
            assert!(!external.contains(ip.parse().unwrap()));
        }
        assert!(external.contains("8.8.8.8".parse().unwrap()));
        assert!(external.contains("::1".parse().unwrap()));
    }

    #[test]
    fn lists_subtract_negated_members_and_ranges_work() {
        let set = addr("[10.0.0.0/8,!10.1.1.1,2001:db8::/32]");
        assert!(set.contains("10.1.1.2".parse().unwrap()));
        assert!(!set.contains("10.1.1.1".parse().unwrap()));
        assert!(set.contains("2001:db8::5".parse().unwrap()));
        let range = addr("1.1.1.1-1.1.1.3");
        assert!(range.contains("1.1.1.2".parse().unwrap()));
        assert!(!range.contains("1.1.1.4".parse().unwrap()));
        assert!(AddrSet::parse("!any", &Vars::default()).is_err());
    }

    #[test]
    fn port_ranges_lists_and_variables() {
        let vars = Vars::default();
        let ports = PortSet::parse("[1024:,!8080]", &vars).unwrap();
        assert!(ports.contains(1024) && ports.contains(65535) && !ports.contains(8080));
        assert!(!ports.contains(80));
        let shellcode = PortSet::parse("$SHELLCODE_PORTS", &vars).unwrap();
        assert!(!shellcode.contains(80) && shellcode.contains(81));
        let file_data = PortSet::parse("$FILE_DATA_PORTS", &vars).unwrap();
        assert!(file_data.contains(80) && file_data.contains(143) && !file_data.contains(81));
        assert!(PortSet::parse("[80,", &vars).is_err());
    }
}
