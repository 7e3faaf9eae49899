//! Payload inspection: runs a rule's payload program (`content`, `pcre`, `byte_*`,
//! `isdataat`) over one buffer, with the cursor and bounded backtracking that Suricata's
//! content inspection has, so that relative keywords find the same matches.

use super::rules::{ByteTestOp, NumberFormat, PayloadOp, Value};

/// Inspection steps allowed per rule and packet, like Suricata's recursion limit: a
/// crafted payload cannot make a rule with many relative contents take quadratic time.
const STEP_BUDGET: u32 = 3_000;

/// Runs `ops` over `buffer`; `vars` holds the rule's `byte_extract` values.
pub(super) fn inspect(ops: &[PayloadOp], buffer: &[u8], vars: &mut [i64]) -> bool {
    let mut budget = STEP_BUDGET;
    step(ops, 0, buffer, 0, vars, &mut budget)
}

fn resolve(value: Value, vars: &[i64]) -> i64 {
    match value {
        Value::Lit(v) => v,
        Value::Var(slot) => vars.get(slot).copied().unwrap_or(0),
    }
}

/// Whether the step after `i` starts from the cursor `i` leaves, so that another
/// occurrence at `i` could still make the rule match.
fn next_is_relative(ops: &[PayloadOp], i: usize) -> bool {
    ops.get(i + 1).is_some_and(PayloadOp::is_relative)
}

fn read_number(format: &NumberFormat, buffer: &[u8], at: i64, bitmask: Option<u64>) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let end = at.checked_add(format.bytes)?;
    if end > buffer.len() {
        return None;
    }
    let mut value = format.read(&buffer[at..end])?;
    if let Some(mask) = bitmask {
        value &= mask;
        if mask != 0 {
            value >>= mask.trailing_zeros();
        }
    }
    Some(value)
}

fn step(
    ops: &[PayloadOp],
    i: usize,
    buffer: &[u8],
    cursor: usize,
    vars: &mut [i64],
    budget: &mut u32,
) -> bool {
    let Some(op) = ops.get(i) else {
        return true;
    };
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let len = buffer.len() as i64;
    match op {
        PayloadOp::Content(content) => {
            let pattern_len = content.pattern.len() as i64;
            let relative = content.distance.is_some() || content.within.is_some();
            let (mut start, mut end) = if relative {
                let distance = content.distance.map_or(0, |d| resolve(d, vars));
                let start = cursor as i64 + distance;
                let end = content
                    .within
                    .map_or(len, |w| cursor as i64 + distance + resolve(w, vars));
                (start, end)
            } else {
                let offset = content.offset.map_or(0, |o| resolve(o, vars));
                let end = content.depth.map_or(len, |d| offset + resolve(d, vars));
                (offset, end)
            };
            if content.startswith {
                start = 0;
                end = end.min(pattern_len);
            }
            start = start.max(0);
            end = end.min(len);
            if content.endswith {
                start = start.max(len - pattern_len);
            }
            let mut found = None;
            let mut from = start;
            loop {
                if from < 0 || end - from < pattern_len {
                    break;
                }
                let window = &buffer[from as usize..end as usize];
                let hit = if content.endswith {
                    content
                        .is_at(&window[window.len() - pattern_len as usize..])
                        .then(|| window.len() - pattern_len as usize)
                } else {
                    content.find(window)
                };
                let Some(hit) = hit else {
                    break;
                };
                let at = from as usize + hit;
                if content.negated {
                    found = Some(at);
                    break;
                }
                let after = at + pattern_len as usize;
                if step(ops, i + 1, buffer, after, vars, budget) {
                    return true;
                }
                if !next_is_relative(ops, i) || content.endswith || *budget == 0 {
                    return false;
                }
                from = at as i64 + 1;
                found = Some(at);
            }
            if content.negated {
                found.is_none() && step(ops, i + 1, buffer, cursor, vars, budget)
            } else {
                false
            }
        }
        PayloadOp::Pcre(pcre) => {
            let base = if pcre.relative {
                cursor.min(buffer.len())
            } else {
                0
            };
            let subject = &buffer[base..];
            let mut from = 0;
            loop {
                // A match-limit error counts as no match, as in Suricata.
                let found = pcre.regex.find_at(subject, from).unwrap_or_default();
                match found {
                    Some(m) if !pcre.negated => {
                        if step(ops, i + 1, buffer, base + m.end(), vars, budget) {
                            return true;
                        }
                        if !next_is_relative(ops, i) || *budget == 0 || m.start() >= subject.len() {
                            return false;
                        }
                        *budget -= 1;
                        from = m.start() + 1;
                    }
                    Some(_) => return false,
                    None if pcre.negated => return step(ops, i + 1, buffer, cursor, vars, budget),
                    None => return false,
                }
            }
        }
        PayloadOp::ByteTest(test) => {
            let offset = resolve(test.offset, vars);
            let at = if test.relative {
                cursor as i64 + offset
            } else {
                offset
            };
            let Some(value) = read_number(&test.format, buffer, at, test.bitmask) else {
                return false;
            };
            let wanted = resolve(test.value, vars) as u64;
            let result = match test.op {
                ByteTestOp::Lt => value < wanted,
                ByteTestOp::Gt => value > wanted,
                ByteTestOp::Eq => value == wanted,
                ByteTestOp::Le => value <= wanted,
                ByteTestOp::Ge => value >= wanted,
                ByteTestOp::And => value & wanted != 0,
                ByteTestOp::Or => value ^ wanted != 0,
            };
            result != test.negated && step(ops, i + 1, buffer, cursor, vars, budget)
        }
        PayloadOp::ByteJump(jump) => {
            let offset = resolve(jump.offset, vars);
            let at = if jump.relative {
                cursor as i64 + offset
            } else {
                offset
            };
            let Some(value) = read_number(&jump.format, buffer, at, jump.bitmask) else {
                return false;
            };
            let mut value = value.saturating_mul(jump.multiplier) as i64;
            if jump.align && value % 4 != 0 {
                value += 4 - value % 4;
            }
            let target = if jump.from_beginning {
                value
            } else if jump.from_end {
                len + value
            } else {
                at + jump.format.bytes as i64 + value
            } + jump.post_offset;
            if target < 0 || target > len {
                return false;
            }
            step(ops, i + 1, buffer, target as usize, vars, budget)
        }
        PayloadOp::ByteExtract(extract) => {
            let at = if extract.relative {
                cursor as i64 + extract.offset
            } else {
                extract.offset
            };
            let Some(value) = read_number(&extract.format, buffer, at, extract.bitmask) else {
                return false;
            };
            let mut value = value.saturating_mul(extract.multiplier) as i64;
            if extract.align > 1 && value % extract.align as i64 != 0 {
                value += extract.align as i64 - value % extract.align as i64;
            }
            if let Some(slot) = vars.get_mut(extract.slot) {
                *slot = value;
            }
            step(
                ops,
                i + 1,
                buffer,
                (at as usize) + extract.format.bytes,
                vars,
                budget,
            )
        }
        PayloadOp::IsDataAt(isdataat) => {
            let offset = resolve(isdataat.offset, vars);
            let present = if isdataat.relative {
                cursor as i64 + offset <= len
            } else {
                offset < len
            };
            present != isdataat.negated && step(ops, i + 1, buffer, cursor, vars, budget)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::parse_text;

    fn check(options: &str, payload: &[u8]) -> bool {
        let set = parse_text(
            "t",
            &format!("alert tcp any any -> any any ({options} sid:1;)"),
        );
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        let rule = &set.rules[0];
        let mut vars = vec![0; rule.variables];
        inspect(&rule.payload, payload, &mut vars)
    }

    #[test]
    fn relative_contents_backtrack_to_a_later_occurrence() {
        assert!(check(
            r#"content:"a"; content:"b"; distance:0; within:1;"#,
            b"axxab"
        ));
        assert!(!check(
            r#"content:"a"; content:"b"; distance:0; within:1;"#,
            b"axxaxb"
        ));
    }

    #[test]
    fn offset_depth_startswith_endswith_and_nocase() {
        assert!(check(r#"content:"bc"; offset:1; depth:2;"#, b"abcd"));
        assert!(!check(r#"content:"bc"; offset:2;"#, b"abcd"));
        assert!(check(r#"content:"AB"; nocase; startswith;"#, b"abcd"));
        assert!(!check(r#"content:"bc"; startswith;"#, b"abcd"));
        assert!(check(r#"content:"cd"; endswith;"#, b"abcdcd"));
        assert!(!check(r#"content:"bc"; endswith;"#, b"abcd"));
    }

    #[test]
    fn negated_content_and_pcre() {
        assert!(check(r#"content:"a"; content:!"z"; distance:0;"#, b"abc"));
        assert!(!check(r#"content:"a"; content:!"c"; distance:0;"#, b"abc"));
        assert!(check(
            r#"content:"user"; pcre:"/^\s+root/R";"#,
            b"user  root"
        ));
        assert!(!check(r#"pcre:!"/root/";"#, b"user root"));
    }

    #[test]
    fn byte_keywords_and_isdataat() {
        // Length-prefixed: 2 bytes big-endian length, then that many bytes, then "END".
        let payload = b"\x00\x03abcEND";
        assert!(check(r#"byte_jump:2,0; content:"END"; within:3;"#, payload));
        assert!(check(r#"byte_test:2,=,3,0;"#, payload));
        assert!(check(r#"byte_test:2,>,2,0; byte_test:2,!=,4,0;"#, payload));
        assert!(check(
            r#"byte_extract:2,0,len; content:"END"; offset:len; depth:5;"#,
            payload
        ));
        assert!(check("isdataat:7; isdataat:!8;", payload));
        assert!(check(
            r#"content:"abc"; isdataat:3,relative; isdataat:!4,relative;"#,
            payload
        ));
    }
}
