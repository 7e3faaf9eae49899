//! From rule text to [`Rule`]: joins continuation lines, splits the header and the
//! options, and hands each keyword to its parser in `options`. Every error carries the
//! file, line and column of what was wrong.

use super::options::{self, Check, NumCmp, PayloadOp};
use super::{
    AddrSet, Classification, DEFAULT_GID, DEFAULT_PRIORITY, ErrorKind, Location, PortSet, Proto,
    Rule, RuleError, Vars,
};
use crate::detect::alert::{Action, Severity};

/// One rule's text, possibly joined from lines ending in `\`, with a map back to the
/// lines and columns it came from.
#[derive(Debug)]
pub(super) struct LogicalLine {
    pub line: u32,
    text: String,
    /// `(offset in text, line number, column of that offset)` for each joined piece.
    pieces: Vec<(usize, u32, u32)>,
}

impl LogicalLine {
    /// The 1-based line and column of byte `offset` of the joined text.
    fn position(&self, offset: usize) -> (u32, u32) {
        let piece = self
            .pieces
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= offset)
            .copied()
            .unwrap_or((0, self.line, 1));
        let extra = u32::try_from(offset - piece.0).unwrap_or(u32::MAX);
        (piece.1, piece.2.saturating_add(extra))
    }
}

/// Splits a file into rules: skips blanks and comments, joins `\` continuations.
pub(super) fn logical_lines(text: &str) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut current: Option<LogicalLine> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let trimmed_start = raw.trim_start();
        let indent = raw.len() - trimmed_start.len();
        let body = trimmed_start.trim_end();
        if current.is_none() && (body.is_empty() || body.starts_with('#')) {
            continue;
        }
        let (body, continues) = match body.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (body, false),
        };
        let logical = current.get_or_insert_with(|| LogicalLine {
            line: number,
            text: String::new(),
            pieces: Vec::new(),
        });
        logical.pieces.push((
            logical.text.len(),
            number,
            u32::try_from(indent + 1).unwrap_or(u32::MAX),
        ));
        logical.text.push_str(body);
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// An error before it knows its file: where (byte offset in the logical line) and what.
struct At {
    offset: usize,
    kind: ErrorKind,
    message: String,
}

fn invalid(offset: usize, message: impl Into<String>) -> At {
    At {
        offset,
        kind: ErrorKind::Invalid,
        message: message.into(),
    }
}

fn unsupported(offset: usize, keyword: &str) -> At {
    At {
        offset,
        kind: ErrorKind::Unsupported,
        message: format!("unsupported keyword \"{keyword}\""),
    }
}

/// Parses one logical line into a rule.
pub(super) fn parse_rule(
    logical: &LogicalLine,
    file: &str,
    vars: &Vars,
    classes: &Classification,
) -> Result<Rule, RuleError> {
    parse_at(logical, file, vars, classes).map_err(|at| {
        let (line, col) = logical.position(at.offset);
        RuleError {
            file: file.to_owned(),
            line,
            col,
            kind: at.kind,
            message: at.message,
        }
    })
}

/// Header tokens, split at whitespace outside brackets, with their offsets.
fn header_tokens(text: &str) -> Result<Vec<(usize, &str)>, At> {
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(invalid(i, "unbalanced ']' in rule header"));
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(s) = start.take() {
                tokens.push((s, &text[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if depth != 0 {
        return Err(invalid(text.len(), "unbalanced '[' in rule header"));
    }
    if let Some(s) = start {
        tokens.push((s, &text[s..]));
    }
    Ok(tokens)
}

/// Splits the options text at `;` that are not escaped, with each option's offset.
fn split_options(text: &str, base: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b';' => {
                out.push((base + start, &text[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if !text[start..].trim().is_empty() {
        out.push((base + start, &text[start..]));
    }
    out
}

/// Keywords that only need to be accepted: they tune Suricata's engine, not what matches.
const IGNORED: &[&str] = &["prefilter", "rawbytes"];

fn parse_at(
    logical: &LogicalLine,
    file: &str,
    vars: &Vars,
    classes: &Classification,
) -> Result<Rule, At> {
    let text = logical.text.as_str();
    let open = text
        .find('(')
        .ok_or_else(|| invalid(text.len(), "expected '(' and rule options"))?;
    let close = text.rfind(')').filter(|close| *close > open);
    let Some(close) = close else {
        return Err(invalid(text.len(), "expected ')' at the end of the rule"));
    };
    if !text[close + 1..].trim().is_empty() {
        return Err(invalid(close + 1, "unexpected text after ')'"));
    }
    let tokens = header_tokens(&text[..open])?;
    if tokens.len() != 7 {
        let at = tokens.get(7).map_or(open, |t| t.0);
        return Err(invalid(
            at,
            format!(
                "expected \"action proto src_addr src_port direction dst_addr dst_port\", found {} fields",
                tokens.len()
            ),
        ));
    }
    let action = match tokens[0].1 {
        "alert" => Action::Alert,
        "drop" => Action::Drop,
        "reject" | "rejectsrc" | "rejectdst" | "rejectboth" => Action::Reject,
        "pass" => Action::Pass,
        other => return Err(invalid(tokens[0].0, format!("unknown action \"{other}\""))),
    };
    let proto = match tokens[1].1.to_ascii_lowercase().as_str() {
        "ip" | "pkthdr" | "any" | "ipv4" | "ipv6" => Proto::Ip,
        "tcp" => Proto::Tcp,
        "tcp-pkt" => Proto::TcpPkt,
        "tcp-stream" => Proto::TcpStream,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv6" => Proto::Icmpv6,
        other => {
            return Err(At {
                offset: tokens[1].0,
                kind: ErrorKind::Unsupported,
                message: format!("unsupported protocol \"{other}\""),
            });
        }
    };
    let addr = |(offset, text): (usize, &str)| {
        AddrSet::parse(text, vars).map_err(|message| invalid(offset, message))
    };
    let port = |(offset, text): (usize, &str)| {
        PortSet::parse(text, vars).map_err(|message| invalid(offset, message))
    };
    let src = addr(tokens[2])?;
    let src_ports = port(tokens[3])?;
    let bidirectional = match tokens[4].1 {
        "->" => false,
        "<>" => true,
        other => {
            return Err(invalid(
                tokens[4].0,
                format!("expected \"->\" or \"<>\", found \"{other}\""),
            ));
        }
    };
    let dst = addr(tokens[5])?;
    let dst_ports = port(tokens[6])?;

    let mut rule = Rule {
        action,
        proto,
        src,
        src_ports,
        dst,
        dst_ports,
        bidirectional,
        gid: DEFAULT_GID,
        sid: 0,
        rev: 0,
        msg: String::new(),
        classtype: None,
        category: String::new(),
        priority: DEFAULT_PRIORITY,
        severity: Severity::from_priority(DEFAULT_PRIORITY),
        references: Vec::new(),
        metadata: Vec::new(),
        target: None,
        payload: Vec::new(),
        fast_pattern: None,
        checks: Vec::new(),
        flow: Default::default(),
        flowbits: Vec::new(),
        noalert: false,
        thresholds: Vec::new(),
        variables: 0,
        location: Location {
            file: file.to_owned(),
            line: logical.line,
        },
    };
    let mut sid_seen = false;
    let mut explicit_priority = None;
    let mut var_names: Vec<String> = Vec::new();
    // The content the modifiers that follow apply to.
    let mut last_content: Option<usize> = None;

    for (offset, option) in split_options(&text[open + 1..close], open + 1) {
        let lead = option.len() - option.trim_start().len();
        let offset = offset + lead;
        let option = option.trim();
        if option.is_empty() {
            continue;
        }
        let (name, value) = match option.split_once(':') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (option, None),
        };
        let need = |keyword: &str| -> Result<&str, At> {
            value.ok_or_else(|| invalid(offset, format!("{keyword} needs a value")))
        };
        let fail = |message: String| -> At {
            if message.starts_with("unsupported keyword") {
                At {
                    offset,
                    kind: ErrorKind::Unsupported,
                    message,
                }
            } else {
                invalid(offset, message)
            }
        };
        match name {
            "msg" => rule.msg = options::parse_string(need(name)?).map_err(fail)?,
            "sid" => {
                rule.sid = need(name)?
                    .parse()
                    .map_err(|_| invalid(offset, "sid must be a positive number"))?;
                if rule.sid == 0 {
                    return Err(invalid(offset, "sid must be a positive number"));
                }
                sid_seen = true;
            }
            "rev" => {
                rule.rev = need(name)?
                    .parse()
                    .map_err(|_| invalid(offset, "rev must be a number"))?
            }
            "gid" => {
                rule.gid = need(name)?
                    .parse()
                    .map_err(|_| invalid(offset, "gid must be a number"))?
            }
            "classtype" => {
                let class = need(name)?;
                let known = classes
                    .get(class)
                    .ok_or_else(|| invalid(offset, format!("unknown classtype \"{class}\"")))?;
                rule.category = known.description.clone();
                rule.priority = known.priority;
                rule.classtype = Some(class.to_owned());
            }
            "priority" => {
                let value: u32 = need(name)?
                    .parse()
                    .map_err(|_| invalid(offset, "priority must be a number"))?;
                explicit_priority = Some(value);
            }
            "reference" => rule.references.push(need(name)?.to_owned()),
            "metadata" => rule.metadata.push(need(name)?.to_owned()),
            "target" => match need(name)? {
                "src_ip" | "dest_ip" => rule.target = value.map(str::to_owned),
                other => return Err(invalid(offset, format!("target: unknown \"{other}\""))),
            },
            "content" => {
                let mut content = options::parse_content(need(name)?).map_err(fail)?;
                // Compiled now with default modifiers; recompiled when `nocase` follows.
                content.compile().map_err(fail)?;
                rule.payload.push(PayloadOp::Content(Box::new(content)));
                last_content = Some(rule.payload.len() - 1);
            }
            "nocase" | "startswith" | "endswith" | "fast_pattern" | "offset" | "depth"
            | "distance" | "within" => {
                let Some(PayloadOp::Content(content)) =
                    last_content.and_then(|i| rule.payload.get_mut(i))
                else {
                    return Err(invalid(offset, format!("{name} needs a preceding content")));
                };
                match name {
                    "nocase" => {
                        content.nocase = true;
                        content.finder = None;
                        content.compile().map_err(fail)?;
                    }
                    "startswith" => content.startswith = true,
                    "endswith" => content.endswith = true,
                    "fast_pattern" => {
                        content.fast_pattern = true;
                        if let Some(arg) = value
                            && arg != "only"
                        {
                            let (a, b) = arg.split_once(',').ok_or_else(|| {
                                invalid(offset, "fast_pattern: expected only or N,M")
                            })?;
                            let parse = |s: &str| {
                                s.trim().parse::<usize>().map_err(|_| {
                                    invalid(offset, "fast_pattern: expected only or N,M")
                                })
                            };
                            content.fast_pattern_chop = Some((parse(a)?, parse(b)?));
                        }
                    }
                    _ => {
                        let v = options::value(need(name)?, &var_names).map_err(fail)?;
                        let slot = match name {
                            "offset" => &mut content.offset,
                            "depth" => &mut content.depth,
                            "distance" => &mut content.distance,
                            _ => &mut content.within,
                        };
                        *slot = Some(v);
                    }
                }
            }
            "pcre" => {
                let pcre = options::parse_pcre(need(name)?).map_err(fail)?;
                rule.payload.push(PayloadOp::Pcre(pcre));
                last_content = None;
            }
            "byte_test" => {
                let test = options::parse_byte_test(need(name)?, &var_names).map_err(fail)?;
                rule.payload.push(PayloadOp::ByteTest(test));
                last_content = None;
            }
            "byte_jump" => {
                let jump = options::parse_byte_jump(need(name)?, &var_names).map_err(fail)?;
                rule.payload.push(PayloadOp::ByteJump(jump));
                last_content = None;
            }
            "byte_extract" => {
                let (mut extract, var) = options::parse_byte_extract(need(name)?).map_err(fail)?;
                extract.slot = match var_names.iter().position(|n| *n == var) {
                    Some(slot) => slot,
                    None => {
                        var_names.push(var);
                        var_names.len() - 1
                    }
                };
                rule.payload.push(PayloadOp::ByteExtract(extract));
                last_content = None;
            }
            "isdataat" => {
                let isdataat = options::parse_isdataat(need(name)?, &var_names).map_err(fail)?;
                rule.payload.push(PayloadOp::IsDataAt(isdataat));
            }
            "dsize" => rule
                .checks
                .push(Check::Dsize(num(need(name)?, 65535, offset)?)),
            "flags" | "tcp.flags" => rule.checks.push(Check::Flags(
                options::parse_flags(need(name)?).map_err(fail)?,
            )),
            "ttl" => rule.checks.push(Check::Ttl(num(need(name)?, 255, offset)?)),
            "itype" => rule
                .checks
                .push(Check::Itype(num(need(name)?, 255, offset)?)),
            "icode" => rule
                .checks
                .push(Check::Icode(num(need(name)?, 255, offset)?)),
            "icmp_id" => rule
                .checks
                .push(Check::IcmpId(num(need(name)?, 65535, offset)?)),
            "icmp_seq" => rule
                .checks
                .push(Check::IcmpSeq(num(need(name)?, 65535, offset)?)),
            "ipopts" => rule.checks.push(Check::IpOpts(
                options::IpOpt::parse(need(name)?).map_err(fail)?,
            )),
            "tcp.mss" => rule
                .checks
                .push(Check::TcpMss(num(need(name)?, 65535, offset)?)),
            "stream_size" => rule
                .checks
                .push(options::parse_stream_size(need(name)?).map_err(fail)?),
            "flow" => options::parse_flow(need(name)?, &mut rule.flow).map_err(fail)?,
            "flowbits" => match options::parse_flowbits(need(name)?).map_err(fail)? {
                Some(op) => rule.flowbits.push(op),
                None => rule.noalert = true,
            },
            "noalert" => rule.noalert = true,
            "threshold" | "detection_filter" => {
                if !rule.thresholds.is_empty() {
                    return Err(invalid(
                        offset,
                        "only one threshold or detection_filter per rule",
                    ));
                }
                rule.thresholds.push(
                    options::parse_threshold(need(name)?, name == "detection_filter")
                        .map_err(fail)?,
                );
            }
            name if IGNORED.contains(&name) => {}
            other => return Err(unsupported(offset, other)),
        }
    }
    if !sid_seen {
        return Err(invalid(open, "rule has no sid"));
    }
    if let Some(priority) = explicit_priority {
        rule.priority = priority;
    }
    rule.severity = Severity::from_priority(rule.priority);
    rule.variables = var_names.len();
    check_relative(&rule).map_err(|message| invalid(open, message))?;
    rule.fast_pattern = choose_fast_pattern(&rule.payload);
    Ok(rule)
}

fn num(text: &str, max: u64, offset: usize) -> Result<NumCmp, At> {
    NumCmp::parse(text, max).map_err(|message| invalid(offset, message))
}

/// Rejects combinations Suricata rejects: absolute and relative positions on one content.
fn check_relative(rule: &Rule) -> Result<(), String> {
    for op in &rule.payload {
        if let PayloadOp::Content(c) = op {
            if (c.offset.is_some() || c.depth.is_some())
                && (c.distance.is_some() || c.within.is_some())
            {
                return Err("content cannot mix offset/depth with distance/within".to_owned());
            }
            if c.startswith && (c.offset.is_some() || c.distance.is_some()) {
                return Err("startswith cannot be combined with offset or distance".to_owned());
            }
        }
    }
    Ok(())
}

/// The content the prefilter looks for: an explicit `fast_pattern`, else the longest
/// positive content (as Suricata picks it).
fn choose_fast_pattern(payload: &[PayloadOp]) -> Option<usize> {
    let positive = || {
        payload.iter().enumerate().filter_map(|(i, op)| match op {
            PayloadOp::Content(c) if !c.negated => Some((i, c)),
            _ => None,
        })
    };
    if let Some((i, _)) = positive().find(|(_, c)| c.fast_pattern) {
        return Some(i);
    }
    positive()
        .max_by(|(ia, a), (ib, b)| a.pattern.len().cmp(&b.pattern.len()).then(ib.cmp(ia)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::{ErrorKind, parse_text};
    use super::*;

    #[test]
    fn a_full_rule_parses() {
        let set = parse_text(
            "t.rules",
            r#"alert tcp $EXTERNAL_NET any -> $HOME_NET [22,2222] (msg:"SSH \"brute\""; flow:to_server,established; flags:S,12; content:"SSH-"; nocase; depth:4; content:"|0d 0a|"; distance:0; within:200; threshold: type both, track by_src, count 5, seconds 60; classtype:attempted-admin; reference:url,example.org; metadata:created 2026; sid:9000001; rev:2;)"#,
        );
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        let rule = &set.rules[0];
        assert_eq!(rule.sid, 9000001);
        assert_eq!(rule.rev, 2);
        assert_eq!(rule.msg, "SSH \"brute\"");
        assert_eq!(rule.priority, 1);
        assert_eq!(rule.severity, Severity::High);
        assert_eq!(rule.category, "Attempted Administrator Privilege Gain");
        assert_eq!(rule.payload.len(), 2);
        assert_eq!(rule.fast_pattern, Some(0));
        assert_eq!(rule.flow.to_server, Some(true));
        assert_eq!(rule.thresholds.len(), 1);
        assert!(rule.dst_ports.contains(2222) && !rule.dst_ports.contains(23));
    }

    #[test]
    fn unsupported_keywords_name_file_line_and_column() {
        let text = "alert tcp any any -> any any (msg:\"ok\"; sid:1;)\n\n\
                    alert http any any -> any any (msg:\"x\"; sid:2;)\n\
                    alert tcp any any -> any any (msg:\"x\"; http.uri; content:\"a\"; sid:3;)\n\
                    alert tcp any any -> any any (msg:\"x\" sid:4;)\n\
                    alert tcp any any -> any any (msg:\"x\"; content:\"a\"; sid:5;)\n";
        let set = parse_text("local.rules", text);
        assert_eq!(set.summary.loaded, 2);
        assert_eq!(set.summary.unsupported, 2);
        assert_eq!(set.summary.invalid, 1);
        let messages: Vec<String> = set.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "local.rules:3:7: unsupported protocol \"http\"",
                "local.rules:4:40: unsupported keyword \"http.uri\"",
                "local.rules:5:30: rule has no sid",
            ]
        );
        assert_eq!(set.errors[1].kind, ErrorKind::Unsupported);
    }

    #[test]
    fn continuation_lines_and_comments() {
        let text = "# a comment\n#alert ip any any -> any any (sid:9;)\nalert ip any any -> any any \\\n  (msg:\"two lines\"; \\\n  bogus; sid:1;)\n";
        let set = parse_text("c.rules", text);
        assert_eq!(set.summary.unsupported, 1);
        assert_eq!(
            set.errors[0].to_string(),
            "c.rules:5:3: unsupported keyword \"bogus\""
        );
    }

    #[test]
    fn duplicate_sids_and_bad_values_are_invalid() {
        let text = "alert ip any any -> any any (sid:1;)\nalert ip any any -> any any (sid:1;)\nalert ip any any -> any any (ttl:300; sid:2;)\nalert ip any any -> any any (content:\"a\"; distance:x; sid:3;)\nalert tcp any any -> any any (nocase; sid:4;)\n";
        let set = parse_text("d.rules", text);
        assert_eq!(set.summary.loaded, 1);
        assert_eq!(set.summary.invalid, 4, "{:?}", set.errors);
    }

    #[test]
    fn byte_extract_variables_resolve_in_later_keywords() {
        let set = parse_text(
            "b.rules",
            "alert tcp any any -> any any (byte_extract:1,0,len,string,dec; content:\"a\"; offset:len; depth:len; sid:1;)",
        );
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        assert_eq!(set.rules[0].variables, 1);
    }
}
