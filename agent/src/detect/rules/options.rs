//! The rule keywords we match, as typed values, and the parsers of their arguments. Each
//! parser takes the text after `keyword:` and returns the value or a message; the caller
//! adds `FILE:LINE:COL`.

use memchr::memmem;

/// A number in a rule or a `byte_extract` variable's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Lit(i64),
    Var(usize),
}

/// Suricata's numeric comparisons: `N`, `<N`, `>N`, `<=N`, `>=N`, `!N`, `N<>M`, `N-M`
/// (both ranges exclusive, as in Suricata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumCmp {
    pub op: NumOp,
    pub a: u64,
    pub b: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Range,
}

impl NumCmp {
    pub fn matches(&self, value: u64) -> bool {
        match self.op {
            NumOp::Eq => value == self.a,
            NumOp::Ne => value != self.a,
            NumOp::Lt => value < self.a,
            NumOp::Le => value <= self.a,
            NumOp::Gt => value > self.a,
            NumOp::Ge => value >= self.a,
            NumOp::Range => self.a < value && value < self.b,
        }
    }

    /// Parses the forms above; `max` bounds the operands (255 for `ttl`, ...).
    pub fn parse(text: &str, max: u64) -> Result<NumCmp, String> {
        let text = text.trim();
        let num = |s: &str| -> Result<u64, String> {
            let s = s.trim();
            let value = parse_u64(s).ok_or_else(|| format!("invalid number \"{s}\""))?;
            if value > max {
                return Err(format!("{value} is out of range (max {max})"));
            }
            Ok(value)
        };
        let one = |op: NumOp, s: &str| -> Result<NumCmp, String> {
            Ok(NumCmp {
                op,
                a: num(s)?,
                b: 0,
            })
        };
        if let Some((a, b)) = text.split_once("<>") {
            let (a, b) = (num(a)?, num(b)?);
            if a >= b {
                return Err(format!("invalid range \"{text}\""));
            }
            return Ok(NumCmp {
                op: NumOp::Range,
                a,
                b,
            });
        }
        if let Some(rest) = text.strip_prefix("<=") {
            return one(NumOp::Le, rest);
        }
        if let Some(rest) = text.strip_prefix(">=") {
            return one(NumOp::Ge, rest);
        }
        if let Some(rest) = text.strip_prefix('<') {
            return one(NumOp::Lt, rest);
        }
        if let Some(rest) = text.strip_prefix('>') {
            return one(NumOp::Gt, rest);
        }
        if let Some(rest) = text.strip_prefix("!=") {
            return one(NumOp::Ne, rest);
        }
        if let Some(rest) = text.strip_prefix('!') {
            return one(NumOp::Ne, rest);
        }
        if let Some(rest) = text.strip_prefix('=') {
            return one(NumOp::Eq, rest);
        }
        if let Some((a, b)) = text.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a >= b {
                return Err(format!("invalid range \"{text}\""));
            }
            return Ok(NumCmp {
                op: NumOp::Range,
                a,
                b,
            });
        }
        one(NumOp::Eq, text)
    }
}

/// Decimal, or hex with `0x`.
pub(super) fn parse_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        text.parse().ok()
    }
}

fn parse_i64(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('-') {
        parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v)
    } else {
        parse_u64(text).and_then(|v| i64::try_from(v).ok())
    }
}

/// One step of a rule's payload program.
#[derive(Debug, Clone)]
pub enum PayloadOp {
    /// Boxed: a content with its searchers is ten times the size of the other steps.
    Content(Box<Content>),
    Pcre(Pcre),
    ByteTest(ByteTest),
    ByteJump(ByteJump),
    ByteExtract(ByteExtract),
    IsDataAt(IsDataAt),
}

impl PayloadOp {
    /// Whether this step starts from where the previous one ended.
    pub fn is_relative(&self) -> bool {
        match self {
            PayloadOp::Content(c) => c.distance.is_some() || c.within.is_some(),
            PayloadOp::Pcre(p) => p.relative,
            PayloadOp::ByteTest(b) => b.relative,
            PayloadOp::ByteJump(b) => b.relative,
            PayloadOp::ByteExtract(b) => b.relative,
            PayloadOp::IsDataAt(i) => i.relative,
        }
    }
}

/// `content` and its modifiers.
#[derive(Debug, Clone)]
pub struct Content {
    /// The bytes to find (lowercased when `nocase`, as the searcher compares so).
    pub pattern: Vec<u8>,
    pub negated: bool,
    pub nocase: bool,
    pub offset: Option<Value>,
    pub depth: Option<Value>,
    pub distance: Option<Value>,
    pub within: Option<Value>,
    pub startswith: bool,
    pub endswith: bool,
    /// `fast_pattern` was given (optionally with a `N,M` chop).
    pub fast_pattern: bool,
    pub fast_pattern_chop: Option<(usize, usize)>,
    /// Precompiled exact searcher (case-sensitive contents).
    pub finder: Option<memmem::Finder<'static>>,
    /// Precompiled caseless searcher (`nocase` contents).
    pub caseless: Option<aho_corasick::AhoCorasick>,
}

impl Content {
    fn new(pattern: Vec<u8>, negated: bool) -> Content {
        Content {
            pattern,
            negated,
            nocase: false,
            offset: None,
            depth: None,
            distance: None,
            within: None,
            startswith: false,
            endswith: false,
            fast_pattern: false,
            fast_pattern_chop: None,
            finder: None,
            caseless: None,
        }
    }

    /// Builds the searcher once modifiers are known.
    pub fn compile(&mut self) -> Result<(), String> {
        if self.nocase {
            self.pattern.make_ascii_lowercase();
            let searcher = aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build([&self.pattern])
                .map_err(|err| format!("content: {err}"))?;
            self.caseless = Some(searcher);
        } else {
            self.finder = Some(memmem::Finder::new(&self.pattern).into_owned());
        }
        Ok(())
    }

    /// The bytes the prefilter looks for.
    pub fn fast_bytes(&self) -> &[u8] {
        match self.fast_pattern_chop {
            Some((offset, len)) if offset + len <= self.pattern.len() => {
                &self.pattern[offset..offset + len]
            }
            _ => &self.pattern,
        }
    }

    /// The first occurrence in `haystack`, as an offset into it.
    pub fn find(&self, haystack: &[u8]) -> Option<usize> {
        if let Some(finder) = &self.finder {
            finder.find(haystack)
        } else if let Some(caseless) = &self.caseless {
            caseless.find(haystack).map(|m| m.start())
        } else {
            None
        }
    }

    /// Whether the pattern sits exactly at the start of `haystack`.
    pub fn is_at(&self, haystack: &[u8]) -> bool {
        haystack.len() >= self.pattern.len()
            && if self.nocase {
                haystack[..self.pattern.len()].eq_ignore_ascii_case(&self.pattern)
            } else {
                haystack[..self.pattern.len()] == self.pattern[..]
            }
    }
}

/// Parses a content string: quotes, `\"`-style escapes and `|hex|` blocks.
pub(super) fn parse_content(text: &str) -> Result<Content, String> {
    let text = text.trim();
    let (negated, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    let inner = unquote(text).ok_or_else(|| "content must be in double quotes".to_owned())?;
    let bytes = unescape_content(inner)?;
    if bytes.is_empty() {
        return Err("content is empty".to_owned());
    }
    Ok(Content::new(bytes, negated))
}

fn unquote(text: &str) -> Option<&str> {
    text.strip_prefix('"')?.strip_suffix('"')
}

fn unescape_content(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut in_hex = false;
    let mut hex_digits: Vec<u8> = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        if in_hex {
            match b {
                b'|' => {
                    if !hex_digits.len().is_multiple_of(2) {
                        return Err("odd number of hex digits in content".to_owned());
                    }
                    for pair in hex_digits.chunks(2) {
                        let digits = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
                        out.push(
                            u8::from_str_radix(digits, 16)
                                .map_err(|_| format!("invalid hex \"{digits}\" in content"))?,
                        );
                    }
                    hex_digits.clear();
                    in_hex = false;
                }
                b' ' | b'\t' => {}
                b if b.is_ascii_hexdigit() => hex_digits.push(b),
                other => {
                    return Err(format!(
                        "invalid character '{}' in hex block of content",
                        other as char
                    ));
                }
            }
            i += 1;
            continue;
        }
        match b {
            b'|' => in_hex = true,
            b'\\' => {
                let next = *bytes
                    .get(i + 1)
                    .ok_or_else(|| "content ends with a backslash".to_owned())?;
                match next {
                    b'"' | b';' | b'\\' | b':' | b'|' => out.push(next),
                    other => {
                        return Err(format!("invalid escape '\\{}' in content", other as char));
                    }
                }
                i += 1;
            }
            b'"' => return Err("unescaped double quote in content".to_owned()),
            b';' => return Err("unescaped ';' in content".to_owned()),
            other => out.push(other),
        }
        i += 1;
    }
    if in_hex {
        return Err("unterminated hex block in content".to_owned());
    }
    Ok(out)
}

/// Parses a quoted string option (`msg`), undoing `\"`, `\;`, `\\` escapes.
pub(super) fn parse_string(text: &str) -> Result<String, String> {
    let text = text.trim();
    let inner = unquote(text).unwrap_or(text);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `pcre:"/re/flags"`, compiled.
#[derive(Debug, Clone)]
pub struct Pcre {
    pub regex: pcre2::bytes::Regex,
    pub negated: bool,
    pub relative: bool,
}

/// Compiles a pcre option with JIT when the platform allows it and the interpreter when
/// it does not (systemd's `MemoryDenyWriteExecute` forbids JIT pages).
pub(super) fn parse_pcre(text: &str) -> Result<Pcre, String> {
    let text = text.trim();
    let (negated, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    let inner = unquote(text).ok_or_else(|| "pcre must be in double quotes".to_owned())?;
    let inner = inner
        .strip_prefix('/')
        .ok_or_else(|| "pcre must start with '/'".to_owned())?;
    let end = inner
        .rfind('/')
        .ok_or_else(|| "pcre must end with '/' and flags".to_owned())?;
    let (mut pattern, flags) = (inner[..end].to_owned(), &inner[end + 1..]);
    let mut builder = pcre2::bytes::RegexBuilder::new();
    builder.jit_if_available(true);
    let mut relative = false;
    let mut anchored = false;
    let mut ungreedy = false;
    for flag in flags.chars() {
        match flag {
            'i' => {
                builder.caseless(true);
            }
            's' => {
                builder.dotall(true);
            }
            'm' => {
                builder.multi_line(true);
            }
            'x' => {
                builder.extended(true);
            }
            'R' => relative = true,
            'A' => anchored = true,
            'G' => ungreedy = true,
            // Dollar-end-only and match-limit overrides change nothing we rely on.
            'E' | 'O' => {}
            'U' | 'H' | 'P' | 'C' | 'I' | 'S' | 'Y' | 'B' | 'M' | 'D' | 'V' | 'W' | 'Q' | 'K' => {
                return Err(format!(
                    "unsupported keyword \"pcre\" flag '{flag}' (an HTTP buffer)"
                ));
            }
            other => return Err(format!("invalid pcre flag '{other}'")),
        }
    }
    // The pcre2 crate exposes neither PCRE2_ANCHORED nor PCRE2_UNGREEDY as builder options,
    // so they are spelled inline; `\G` anchors where the search starts, like ANCHORED.
    if anchored {
        pattern = format!("\\G(?:{pattern})");
    }
    if ungreedy {
        pattern = format!("(?U){pattern}");
    }
    let regex = builder
        .build(&pattern)
        .map_err(|err| format!("invalid pcre: {err}"))?;
    Ok(Pcre {
        regex,
        negated,
        relative,
    })
}

/// Byte order of `byte_*` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Big,
    Little,
}

/// How `byte_*` keywords read their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberFormat {
    pub bytes: usize,
    pub endian: Endian,
    /// `string` with its base (`dec` 10, `hex` 16, `oct` 8); `None` for binary.
    pub string_base: Option<u32>,
}

impl NumberFormat {
    /// Reads the number at `data[..bytes]`, or `None` when it is not there or not a number.
    pub fn read(&self, data: &[u8]) -> Option<u64> {
        let raw = data.get(..self.bytes)?;
        match self.string_base {
            Some(base) => {
                let text = std::str::from_utf8(raw).ok()?;
                u64::from_str_radix(text.trim(), base).ok()
            }
            None => Some(match self.endian {
                Endian::Big => raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                Endian::Little => raw
                    .iter()
                    .rev()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteTestOp {
    Lt,
    Gt,
    Eq,
    Le,
    Ge,
    And,
    Or,
}

/// `byte_test`.
#[derive(Debug, Clone)]
pub struct ByteTest {
    pub format: NumberFormat,
    pub negated: bool,
    pub op: ByteTestOp,
    pub value: Value,
    pub offset: Value,
    pub relative: bool,
    pub bitmask: Option<u64>,
}

/// `byte_jump`.
#[derive(Debug, Clone)]
pub struct ByteJump {
    pub format: NumberFormat,
    pub offset: Value,
    pub relative: bool,
    pub multiplier: u64,
    pub align: bool,
    pub from_beginning: bool,
    pub from_end: bool,
    pub post_offset: i64,
    pub bitmask: Option<u64>,
}

/// `byte_extract`, which stores into variable `slot`.
#[derive(Debug, Clone)]
pub struct ByteExtract {
    pub format: NumberFormat,
    pub offset: i64,
    pub relative: bool,
    pub multiplier: u64,
    pub align: u64,
    pub slot: usize,
    pub bitmask: Option<u64>,
}

/// `isdataat`.
#[derive(Debug, Clone, Copy)]
pub struct IsDataAt {
    pub negated: bool,
    pub offset: Value,
    pub relative: bool,
}

/// Options common to the `byte_*` keywords, after the positional ones.
struct ByteOpts {
    relative: bool,
    endian: Endian,
    string_base: Option<u32>,
    multiplier: u64,
    align: u64,
    from_beginning: bool,
    from_end: bool,
    post_offset: i64,
    bitmask: Option<u64>,
}

fn byte_opts(items: &[&str], keyword: &str) -> Result<ByteOpts, String> {
    let mut opts = ByteOpts {
        relative: false,
        endian: Endian::Big,
        string_base: None,
        multiplier: 1,
        align: 0,
        from_beginning: false,
        from_end: false,
        post_offset: 0,
        bitmask: None,
    };
    let mut string = false;
    let mut base = None;
    for item in items {
        let item = item.trim();
        let (name, arg) = match item.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, Some(arg.trim())),
            None => (item, None),
        };
        let number = |arg: Option<&str>| -> Result<u64, String> {
            arg.and_then(parse_u64)
                .ok_or_else(|| format!("{keyword}: \"{name}\" needs a number"))
        };
        match name {
            "relative" => opts.relative = true,
            "big" => opts.endian = Endian::Big,
            "little" => opts.endian = Endian::Little,
            "string" => string = true,
            "dec" => base = Some(10),
            "hex" => base = Some(16),
            "oct" => base = Some(8),
            "align" => opts.align = arg.and_then(parse_u64).unwrap_or(4),
            "multiplier" => opts.multiplier = number(arg)?,
            "from_beginning" => opts.from_beginning = true,
            "from_end" => opts.from_end = true,
            "post_offset" => {
                opts.post_offset = arg
                    .and_then(parse_i64)
                    .ok_or_else(|| format!("{keyword}: post_offset needs a number"))?
            }
            "bitmask" => opts.bitmask = Some(number(arg)?),
            "dce" => return Err(format!("unsupported keyword \"{keyword}\" option \"dce\"")),
            other => return Err(format!("{keyword}: unknown option \"{other}\"")),
        }
    }
    if string {
        opts.string_base = Some(base.unwrap_or(10));
    } else if base.is_some() {
        return Err(format!("{keyword}: dec/hex/oct need \"string\""));
    }
    Ok(opts)
}

fn byte_count(text: &str, keyword: &str, string: bool, allow_zero: bool) -> Result<usize, String> {
    let bytes = parse_u64(text)
        .ok_or_else(|| format!("{keyword}: invalid byte count \"{}\"", text.trim()))?;
    let max = if string { 10 } else { 8 };
    if bytes > max || (bytes == 0 && !allow_zero) {
        return Err(format!(
            "{keyword}: byte count {bytes} is out of range (1..={max})"
        ));
    }
    Ok(bytes as usize)
}

/// Resolves a number or a `byte_extract` variable name.
pub(super) fn value(text: &str, vars: &[String]) -> Result<Value, String> {
    let text = text.trim();
    if let Some(v) = parse_i64(text) {
        return Ok(Value::Lit(v));
    }
    vars.iter()
        .position(|name| name == text)
        .map(Value::Var)
        .ok_or_else(|| format!("\"{text}\" is neither a number nor a byte_extract variable"))
}

pub(super) fn parse_byte_test(text: &str, vars: &[String]) -> Result<ByteTest, String> {
    let items: Vec<&str> = text.split(',').collect();
    if items.len() < 4 {
        return Err("byte_test needs bytes, operator, value, offset".to_owned());
    }
    let opts = byte_opts(&items[4..], "byte_test")?;
    let mut op_text = items[1].trim();
    let negated = op_text.starts_with('!') && op_text != "!=";
    if negated {
        op_text = &op_text[1..];
    }
    let (op, negated) = match op_text {
        "<" => (ByteTestOp::Lt, negated),
        ">" => (ByteTestOp::Gt, negated),
        "=" => (ByteTestOp::Eq, negated),
        "!=" | "" => (ByteTestOp::Eq, true),
        "<=" => (ByteTestOp::Le, negated),
        ">=" => (ByteTestOp::Ge, negated),
        "&" => (ByteTestOp::And, negated),
        "^" => (ByteTestOp::Or, negated),
        other => return Err(format!("byte_test: unknown operator \"{other}\"")),
    };
    Ok(ByteTest {
        format: NumberFormat {
            bytes: byte_count(items[0], "byte_test", opts.string_base.is_some(), false)?,
            endian: opts.endian,
            string_base: opts.string_base,
        },
        negated,
        op,
        value: value(items[2], vars)?,
        offset: value(items[3], vars)?,
        relative: opts.relative,
        bitmask: opts.bitmask,
    })
}

pub(super) fn parse_byte_jump(text: &str, vars: &[String]) -> Result<ByteJump, String> {
    let items: Vec<&str> = text.split(',').collect();
    if items.len() < 2 {
        return Err("byte_jump needs bytes, offset".to_owned());
    }
    let opts = byte_opts(&items[2..], "byte_jump")?;
    Ok(ByteJump {
        format: NumberFormat {
            bytes: byte_count(items[0], "byte_jump", opts.string_base.is_some(), true)?,
            endian: opts.endian,
            string_base: opts.string_base,
        },
        offset: value(items[1], vars)?,
        relative: opts.relative,
        multiplier: opts.multiplier,
        align: opts.align != 0,
        from_beginning: opts.from_beginning,
        from_end: opts.from_end,
        post_offset: opts.post_offset,
        bitmask: opts.bitmask,
    })
}

/// Parses `byte_extract`; returns the variable's name, which the caller assigns a slot.
pub(super) fn parse_byte_extract(text: &str) -> Result<(ByteExtract, String), String> {
    let items: Vec<&str> = text.split(',').collect();
    if items.len() < 3 {
        return Err("byte_extract needs bytes, offset, name".to_owned());
    }
    let opts = byte_opts(&items[3..], "byte_extract")?;
    let name = items[2].trim();
    if name.is_empty() || parse_i64(name).is_some() {
        return Err(format!("byte_extract: invalid variable name \"{name}\""));
    }
    Ok((
        ByteExtract {
            format: NumberFormat {
                bytes: byte_count(items[0], "byte_extract", opts.string_base.is_some(), false)?,
                endian: opts.endian,
                string_base: opts.string_base,
            },
            offset: parse_i64(items[1])
                .ok_or_else(|| format!("byte_extract: invalid offset \"{}\"", items[1].trim()))?,
            relative: opts.relative,
            multiplier: opts.multiplier,
            align: opts.align,
            slot: 0,
            bitmask: opts.bitmask,
        },
        name.to_owned(),
    ))
}

pub(super) fn parse_isdataat(text: &str, vars: &[String]) -> Result<IsDataAt, String> {
    let mut items = text.split(',');
    let first = items.next().unwrap_or("").trim();
    let (negated, first) = match first.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, first),
    };
    let mut relative = false;
    for item in items {
        match item.trim() {
            "relative" => relative = true,
            "rawbytes" => {}
            other => return Err(format!("isdataat: unknown option \"{other}\"")),
        }
    }
    Ok(IsDataAt {
        negated,
        offset: value(first, vars)?,
        relative,
    })
}

/// Keywords on headers and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Dsize(NumCmp),
    Flags(FlagsMatch),
    Ttl(NumCmp),
    Itype(NumCmp),
    Icode(NumCmp),
    IcmpId(NumCmp),
    IcmpSeq(NumCmp),
    IpOpts(IpOpt),
    TcpMss(NumCmp),
    StreamSize(StreamSide, NumCmp),
}

/// TCP flag bits as they sit in the header's 13th byte.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsMode {
    /// No modifier: exactly these flags (outside the ignored ones).
    Exact,
    /// `+`: these and possibly others.
    All,
    /// `*`: any of these.
    Any,
    /// `!`: none of these.
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagsMatch {
    pub mode: FlagsMode,
    pub flags: u8,
    /// Bits that do not take part in the comparison (`flags:S,12`).
    pub ignore: u8,
}

impl FlagsMatch {
    pub fn matches(&self, flags: u8) -> bool {
        let flags = flags & !self.ignore;
        match self.mode {
            FlagsMode::Exact => flags == self.flags,
            FlagsMode::All => flags & self.flags == self.flags,
            FlagsMode::Any => flags & self.flags != 0,
            FlagsMode::Not => flags & self.flags == 0,
        }
    }
}

fn flag_bits(text: &str) -> Result<u8, String> {
    let mut bits = 0;
    for c in text.chars() {
        bits |= match c.to_ascii_uppercase() {
            'F' => tcp_flag::FIN,
            'S' => tcp_flag::SYN,
            'R' => tcp_flag::RST,
            'P' => tcp_flag::PSH,
            'A' => tcp_flag::ACK,
            'U' => tcp_flag::URG,
            'E' | '2' => tcp_flag::ECE,
            'C' | '1' => tcp_flag::CWR,
            '0' => 0,
            other => return Err(format!("flags: unknown flag '{other}'")),
        };
    }
    Ok(bits)
}

pub(super) fn parse_flags(text: &str) -> Result<FlagsMatch, String> {
    let (main, ignore) = match text.split_once(',') {
        Some((main, ignore)) => (main.trim(), flag_bits(ignore.trim())?),
        None => (text.trim(), 0),
    };
    let mut mode = FlagsMode::Exact;
    let mut letters = String::new();
    for c in main.chars() {
        match c {
            '+' => mode = FlagsMode::All,
            '*' => mode = FlagsMode::Any,
            '!' => mode = FlagsMode::Not,
            c if c.is_whitespace() => {}
            c => letters.push(c),
        }
    }
    if letters.is_empty() {
        return Err("flags: no flags given".to_owned());
    }
    Ok(FlagsMatch {
        mode,
        flags: flag_bits(&letters)?,
        ignore,
    })
}

/// IPv4 options `ipopts` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpOpt {
    Rr,
    Eol,
    Nop,
    Ts,
    Sec,
    Esec,
    Lsrr,
    Ssrr,
    Satid,
    Any,
}

impl IpOpt {
    pub fn parse(text: &str) -> Result<IpOpt, String> {
        Ok(match text.trim() {
            "rr" => IpOpt::Rr,
            "eol" => IpOpt::Eol,
            "nop" => IpOpt::Nop,
            "ts" => IpOpt::Ts,
            "sec" => IpOpt::Sec,
            "esec" => IpOpt::Esec,
            "lsrr" => IpOpt::Lsrr,
            "ssrr" => IpOpt::Ssrr,
            "satid" => IpOpt::Satid,
            "any" => IpOpt::Any,
            other => return Err(format!("ipopts: unknown option \"{other}\"")),
        })
    }

    /// The option type byte(s) on the wire.
    pub fn code(self) -> Option<u8> {
        Some(match self {
            IpOpt::Eol => 0,
            IpOpt::Nop => 1,
            IpOpt::Rr => 7,
            IpOpt::Ts => 68,
            IpOpt::Sec => 130,
            IpOpt::Esec => 133,
            IpOpt::Lsrr => 131,
            IpOpt::Ssrr => 137,
            IpOpt::Satid => 136,
            IpOpt::Any => return None,
        })
    }
}

/// `stream_size`'s side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSide {
    Server,
    Client,
    Both,
    Either,
}

pub(super) fn parse_stream_size(text: &str) -> Result<Check, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    let [side, op, value] = items.as_slice() else {
        return Err("stream_size needs side, operator, value".to_owned());
    };
    let side = match *side {
        "server" => StreamSide::Server,
        "client" => StreamSide::Client,
        "both" => StreamSide::Both,
        "either" => StreamSide::Either,
        other => return Err(format!("stream_size: unknown side \"{other}\"")),
    };
    let op = match *op {
        "=" => "",
        "!=" => "!",
        other => other,
    };
    Ok(Check::StreamSize(
        side,
        NumCmp::parse(&format!("{op}{value}"), u64::from(u32::MAX))?,
    ))
}

/// `flow` options, as Suricata spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowOpts {
    /// `Some(true)` for `established`, `Some(false)` for `not_established`.
    pub established: Option<bool>,
    /// `Some(true)` for `to_server`/`from_client`, `Some(false)` for the other way.
    pub to_server: Option<bool>,
    pub stateless: bool,
    pub only_stream: bool,
    pub no_stream: bool,
    pub only_frag: bool,
    pub no_frag: bool,
}

pub(super) fn parse_flow(text: &str, flow: &mut FlowOpts) -> Result<(), String> {
    for item in text.split(',') {
        match item.trim() {
            "established" => flow.established = Some(true),
            "not_established" => flow.established = Some(false),
            "stateless" => flow.stateless = true,
            "to_server" | "from_client" => flow.to_server = Some(true),
            "to_client" | "from_server" => flow.to_server = Some(false),
            "only_stream" => flow.only_stream = true,
            "no_stream" => flow.no_stream = true,
            "only_frag" => flow.only_frag = true,
            "no_frag" => flow.no_frag = true,
            other => return Err(format!("flow: unknown option \"{other}\"")),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowbitCmd {
    Set,
    Unset,
    Toggle,
    IsSet,
    IsNotSet,
}

impl FlowbitCmd {
    pub fn reads(self) -> bool {
        matches!(self, FlowbitCmd::IsSet | FlowbitCmd::IsNotSet)
    }
}

/// One `flowbits` command; `bits` are interned names, several for `a|b` (any of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowbitOp {
    pub cmd: FlowbitCmd,
    pub names: Vec<String>,
}

/// Parses `flowbits`; `Ok(None)` is `flowbits:noalert`.
pub(super) fn parse_flowbits(text: &str) -> Result<Option<FlowbitOp>, String> {
    let (cmd, names) = match text.split_once(',') {
        Some((cmd, names)) => (cmd.trim(), Some(names.trim())),
        None => (text.trim(), None),
    };
    let cmd = match cmd {
        "noalert" => return Ok(None),
        "set" => FlowbitCmd::Set,
        "unset" => FlowbitCmd::Unset,
        "toggle" => FlowbitCmd::Toggle,
        "isset" => FlowbitCmd::IsSet,
        "isnotset" => FlowbitCmd::IsNotSet,
        other => return Err(format!("flowbits: unknown command \"{other}\"")),
    };
    let names: Vec<String> = names
        .ok_or_else(|| "flowbits: missing flowbit name".to_owned())?
        .split(['|', '&'])
        .map(|name| name.trim().to_owned())
        .collect();
    if names
        .iter()
        .any(|name| name.is_empty() || name.contains(' '))
    {
        return Err("flowbits: invalid flowbit name".to_owned());
    }
    Ok(Some(FlowbitOp { cmd, names }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    Limit,
    Threshold,
    Both,
    DetectionFilter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    BySrc,
    ByDst,
    ByRule,
    ByBoth,
    ByFlow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueOn {
    SrcPort,
    DstPort,
}

/// `threshold` or `detection_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub kind: ThresholdKind,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
    pub unique_on: Option<UniqueOn>,
}

pub(super) fn parse_threshold(text: &str, detection_filter: bool) -> Result<Threshold, String> {
    let keyword = if detection_filter {
        "detection_filter"
    } else {
        "threshold"
    };
    let mut kind = detection_filter.then_some(ThresholdKind::DetectionFilter);
    let (mut track, mut count, mut seconds, mut unique_on) = (None, None, None, None);
    for item in text.split(',') {
        let item = item.trim();
        let (name, arg) = item
            .split_once(char::is_whitespace)
            .map(|(n, a)| (n, a.trim()))
            .ok_or_else(|| format!("{keyword}: \"{item}\" needs a value"))?;
        match name {
            "type" if !detection_filter => {
                kind = Some(match arg {
                    "limit" => ThresholdKind::Limit,
                    "threshold" => ThresholdKind::Threshold,
                    "both" => ThresholdKind::Both,
                    other => return Err(format!("threshold: unknown type \"{other}\"")),
                })
            }
            "track" => {
                track = Some(match arg {
                    "by_src" => Track::BySrc,
                    "by_dst" => Track::ByDst,
                    "by_rule" => Track::ByRule,
                    "by_both" => Track::ByBoth,
                    "by_flow" => Track::ByFlow,
                    other => return Err(format!("{keyword}: unknown track \"{other}\"")),
                })
            }
            "count" => {
                count = Some(
                    arg.parse::<u32>()
                        .map_err(|_| format!("{keyword}: invalid count \"{arg}\""))?,
                )
            }
            "seconds" => {
                seconds = Some(
                    arg.parse::<u32>()
                        .map_err(|_| format!("{keyword}: invalid seconds \"{arg}\""))?,
                )
            }
            "unique_on" => {
                unique_on = Some(match arg {
                    "src_port" => UniqueOn::SrcPort,
                    "dst_port" => UniqueOn::DstPort,
                    other => return Err(format!("{keyword}: unknown unique_on \"{other}\"")),
                })
            }
            other => return Err(format!("{keyword}: unknown option \"{other}\"")),
        }
    }
    Ok(Threshold {
        kind: kind.ok_or_else(|| format!("{keyword}: missing type"))?,
        track: track.ok_or_else(|| format!("{keyword}: missing track"))?,
        count: count.ok_or_else(|| format!("{keyword}: missing count"))?,
        seconds: seconds.ok_or_else(|| format!("{keyword}: missing seconds"))?,
        unique_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_forms_follow_suricata() {
        let cases = [
            ("5", 5, true),
            ("<5", 4, true),
            ("<5", 5, false),
            (">=5", 5, true),
            ("!5", 5, false),
            ("3<>6", 3, false),
            ("3<>6", 4, true),
            ("3-6", 6, false),
        ];
        for (text, value, expected) in cases {
            assert_eq!(
                NumCmp::parse(text, 255).unwrap().matches(value),
                expected,
                "{text} {value}"
            );
        }
        assert!(NumCmp::parse("300", 255).is_err());
        assert!(NumCmp::parse("6<>3", 255).is_err());
    }

    #[test]
    fn content_escapes_and_hex_blocks() {
        let content = parse_content(r#""a|3a 3B|b\"c\;""#).unwrap();
        assert_eq!(content.pattern, b"a:;b\"c;");
        assert!(parse_content("!\"x\"").unwrap().negated);
        assert!(parse_content("\"|3|\"").is_err());
        assert!(parse_content("\"a;b\"").is_err());
        assert!(parse_content("abc").is_err());
    }

    #[test]
    fn flags_modes() {
        let exact = parse_flags("S").unwrap();
        assert!(exact.matches(tcp_flag::SYN) && !exact.matches(tcp_flag::SYN | tcp_flag::ACK));
        let ignoring = parse_flags("S,12").unwrap();
        assert!(ignoring.matches(tcp_flag::SYN | tcp_flag::ECE | tcp_flag::CWR));
        let plus = parse_flags("+SA").unwrap();
        assert!(plus.matches(tcp_flag::SYN | tcp_flag::ACK | tcp_flag::PSH));
        let not = parse_flags("!A").unwrap();
        assert!(!not.matches(tcp_flag::ACK) && not.matches(tcp_flag::SYN));
        let null = parse_flags("0").unwrap();
        assert!(null.matches(0) && !null.matches(tcp_flag::FIN));
    }

    #[test]
    fn pcre_flags_and_relative() {
        let pcre = parse_pcre(r#""/^abc/Ri""#).unwrap();
        assert!(pcre.relative);
        assert!(pcre.regex.is_match(b"ABCd").unwrap());
        assert!(
            parse_pcre(r#""/abc/U""#)
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            parse_pcre(r#""/(abc/""#)
                .unwrap_err()
                .contains("invalid pcre")
        );
    }

    #[test]
    fn thresholds_parse() {
        let t = parse_threshold("type limit, track by_src, count 1, seconds 60", false).unwrap();
        assert_eq!(t.kind, ThresholdKind::Limit);
        assert_eq!(t.track, Track::BySrc);
        let df = parse_threshold(
            "track by_dst, count 1, seconds 60, unique_on dst_port",
            true,
        )
        .unwrap();
        assert_eq!(df.kind, ThresholdKind::DetectionFilter);
        assert_eq!(df.unique_on, Some(UniqueOn::DstPort));
        assert!(parse_threshold("type limit, count 1, seconds 60", false).is_err());
    }
}
