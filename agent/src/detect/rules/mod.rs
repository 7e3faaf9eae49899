//! Suricata-format packet rules: the parsed, precompiled [`Rule`] and the [`RuleLoader`]
//! that turns rule files (text plus a label; the caller reads them) into rules and
//! `FILE:LINE:COL` errors.
//!
//! **Invariant**: parsing never fails as a whole. A rule that cannot be used is reported
//! (unsupported or invalid) and the rest of its file still loads.

mod address;
mod classification;
mod options;
mod parse;
mod vars;

use std::fmt;

pub use address::{AddrSet, PortSet};
pub use classification::{BUILTIN as BUILTIN_CLASSIFICATION, Class, Classification};
pub use options::{
    ByteExtract, ByteJump, ByteTest, ByteTestOp, Check, Content, Endian, FlagsMatch, FlagsMode,
    FlowOpts, FlowbitCmd, FlowbitOp, IpOpt, IsDataAt, NumCmp, NumOp, NumberFormat, PayloadOp, Pcre,
    StreamSide, Threshold, ThresholdKind, Track, UniqueOn, Value, tcp_flag,
};
pub use vars::Vars;

use super::alert::{Action, Severity};

/// The Suricata `gid` of rules that do not set one.
pub const DEFAULT_GID: u32 = 1;
/// The priority of rules without `priority` or a known `classtype`, as in Suricata.
pub const DEFAULT_PRIORITY: u32 = 3;

/// Which packets a rule's protocol field selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `ip`, `pkthdr`, `any`: every IP packet.
    Ip,
    /// `tcp`: TCP packets (our matching is per packet, so like `tcp-pkt` plus stream data).
    Tcp,
    /// `tcp-pkt`: TCP packets, never reassembled data.
    TcpPkt,
    /// `tcp-stream`: only payload that belongs to an established stream.
    TcpStream,
    Udp,
    /// `icmp`: ICMPv4 and ICMPv6, as in Suricata.
    Icmp,
    Icmpv6,
}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

/// One parsed, precompiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub action: Action,
    pub proto: Proto,
    pub src: AddrSet,
    pub src_ports: PortSet,
    pub dst: AddrSet,
    pub dst_ports: PortSet,
    /// `<>`: the header matches in either direction.
    pub bidirectional: bool,
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    pub msg: String,
    pub classtype: Option<String>,
    /// The classtype's description, eve.json's `alert.category` (empty without classtype).
    pub category: String,
    /// The rule's `priority`, else its classtype's, else [`DEFAULT_PRIORITY`].
    pub priority: u32,
    pub severity: Severity,
    /// `reference`, `metadata` and `target` are kept to be reported, not matched.
    pub references: Vec<String>,
    pub metadata: Vec<String>,
    pub target: Option<String>,
    /// Payload keywords in rule order; relative ones refer to the one before.
    pub payload: Vec<PayloadOp>,
    /// Index into `payload` of the content the prefilter looks for.
    pub fast_pattern: Option<usize>,
    /// Keywords on headers and sizes: cheap, checked before the payload.
    pub checks: Vec<Check>,
    pub flow: FlowOpts,
    pub flowbits: Vec<FlowbitOp>,
    /// `noalert` or `flowbits:noalert`: the rule runs (sets flowbits) but raises nothing.
    pub noalert: bool,
    /// `threshold` and `detection_filter`.
    pub thresholds: Vec<Threshold>,
    /// How many `byte_extract` variables the payload program uses.
    pub variables: usize,
    pub location: Location,
}

impl Rule {
    /// Whether the rule looks only at addresses and the protocol, which Suricata evaluates
    /// once per flow and direction (its "IP-only" rules).
    pub fn is_ip_only(&self) -> bool {
        self.payload.is_empty()
            && self.checks.is_empty()
            && self.flow == FlowOpts::default()
            && self.src_ports.is_any()
            && self.dst_ports.is_any()
            && self.flowbits.iter().all(|op| !op.cmd.reads())
            && !matches!(self.proto, Proto::TcpStream)
    }
}

/// Whether a rejected rule used something we do not support, or was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unsupported,
    Invalid,
}

/// A rule that could not be loaded, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for RuleError {}

/// How a load went, as `swarmd replay` and `swarmctl rules test` print it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub loaded: usize,
    pub unsupported: usize,
    pub invalid: usize,
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} loaded, {} unsupported, {} invalid",
            self.loaded, self.unsupported, self.invalid
        )
    }
}

/// Accumulates rule files into one set of rules.
#[derive(Debug)]
pub struct RuleLoader {
    vars: Vars,
    classes: Classification,
    rules: Vec<Rule>,
    errors: Vec<RuleError>,
    /// `(gid, sid)` of every loaded rule, to reject duplicates as Suricata does.
    seen: std::collections::HashSet<(u32, u32)>,
}

/// The result of loading: the rules that load, and why the others did not.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub errors: Vec<RuleError>,
    pub summary: LoadSummary,
}

impl RuleLoader {
    pub fn new(vars: Vars, classes: Classification) -> RuleLoader {
        RuleLoader {
            vars,
            classes,
            rules: Vec::new(),
            errors: Vec::new(),
            seen: Default::default(),
        }
    }

    /// Parses one file's text; `file` labels its errors.
    pub fn add_text(&mut self, file: &str, text: &str) {
        for logical in parse::logical_lines(text) {
            match parse::parse_rule(&logical, file, &self.vars, &self.classes) {
                Ok(rule) => {
                    if self.seen.insert((rule.gid, rule.sid)) {
                        self.rules.push(rule);
                    } else {
                        self.errors.push(RuleError {
                            file: file.to_owned(),
                            line: logical.line,
                            col: 1,
                            kind: ErrorKind::Invalid,
                            message: format!("duplicate sid {}:{}", rule.gid, rule.sid),
                        });
                    }
                }
                Err(err) => self.errors.push(err),
            }
        }
    }

    /// Reports a rule path that could not be read, counted as invalid.
    pub fn add_error(&mut self, error: RuleError) {
        self.errors.push(error);
    }

    pub fn finish(self) -> RuleSet {
        let unsupported = self
            .errors
            .iter()
            .filter(|e| e.kind == ErrorKind::Unsupported)
            .count();
        RuleSet {
            summary: LoadSummary {
                loaded: self.rules.len(),
                unsupported,
                invalid: self.errors.len() - unsupported,
            },
            rules: self.rules,
            errors: self.errors,
        }
    }
}

/// Parses one file with Suricata's default variables and our classification: handy for
/// tests and for tools.
pub fn parse_text(file: &str, text: &str) -> RuleSet {
    let mut loader = RuleLoader::new(Vars::default(), Classification::builtin());
    loader.add_text(file, text);
    loader.finish()
}
