//! The systemd journal, read as `journalctl -f -o json` in a child process. No maintained
//! pure-Rust journal reader exists (the `systemd` crate binds libsystemd through FFI, which
//! the workspace forbids outside one small module), and `journalctl` is present wherever
//! the journal is.
//!
//! Each entry becomes a [`LogLine`] whose text reads like a syslog line,
//! `IDENTIFIER[PID]: MESSAGE`, so that the same scenario regexes match a daemon's lines
//! whether they come from a file or from the journal; its time is the entry's
//! `__REALTIME_TIMESTAMP` (microseconds since the epoch).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::mpsc;

use super::LogLine;

/// The command that streams the journal: every new entry of `units` (all units when empty)
/// as one JSON object per line.
pub fn journalctl_command(units: &[String]) -> Command {
    let mut command = Command::new("journalctl");
    command.args(["--follow", "--output=json", "--lines=0", "--quiet"]);
    for unit in units {
        command.arg(format!("--unit={unit}"));
    }
    command
}

/// Turns one line of `journalctl -o json` into a [`LogLine`]; `None` for a line that is not
/// a journal entry with a message.
pub fn parse_entry(json: &str) -> Option<LogLine> {
    let entry: Value = serde_json::from_str(json).ok()?;
    let message = match entry.get("MESSAGE")? {
        Value::String(text) => text.clone(),
        // Messages that are not valid UTF-8 come as an array of bytes.
        Value::Array(bytes) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => return None,
    };
    let field = |name: &str| entry.get(name).and_then(Value::as_str);
    let time = field("__REALTIME_TIMESTAMP")
        .and_then(|micros| micros.parse::<u64>().ok())
        .map(|micros| UNIX_EPOCH + Duration::from_micros(micros));
    let identifier = field("SYSLOG_IDENTIFIER").or(field("_COMM")).unwrap_or("-");
    let text = match field("SYSLOG_PID").or(field("_PID")) {
        Some(pid) => format!("{identifier}[{pid}]: {message}"),
        None => format!("{identifier}: {message}"),
    };
    let unit = field("_SYSTEMD_UNIT").unwrap_or(identifier);
    Some(LogLine {
        source: format!("journal:{unit}").into(),
        text,
        time,
        truncated: false,
    })
}

/// Counters of the journal reader.
#[derive(Debug, Default)]
pub struct JournalCounters {
    pub entries: AtomicU64,
    pub malformed: AtomicU64,
    pub truncated: AtomicU64,
}

/// Runs `command` (normally [`journalctl_command`]) and forwards its entries to `tx` until
/// the child exits or `tx` is closed. Blocking: run it on a thread of its own. Lines
/// longer than `max_line` are not journal entries we can use: they are skipped and counted.
pub fn run(
    mut command: Command,
    max_line: usize,
    tx: &mpsc::Sender<LogLine>,
    counters: &Arc<JournalCounters>,
) -> std::io::Result<()> {
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("child has no stdout"))?;
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && buf.len() > max_line {
            counters.truncated.fetch_add(1, Ordering::Relaxed);
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = reader
                    .by_ref()
                    .take(64 * 1024)
                    .read_until(b'\n', &mut rest)?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        match parse_entry(text.trim_end()) {
            Some(line) => {
                counters.entries.fetch_add(1, Ordering::Relaxed);
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
            None => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","__MONOTONIC_TIMESTAMP":"5","_BOOT_ID":"b","PRIORITY":"6","SYSLOG_FACILITY":"4","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","_COMM":"sshd","_SYSTEMD_UNIT":"ssh.service","MESSAGE":"Invalid user admin from 192.0.2.9 port 4711"}"#;

    #[test]
    fn an_entry_reads_like_a_syslog_line_with_its_own_time() {
        let line = parse_entry(ENTRY).unwrap();
        assert_eq!(&*line.source, "journal:ssh.service");
        assert_eq!(
            line.text,
            "sshd[4242]: Invalid user admin from 192.0.2.9 port 4711"
        );
        assert_eq!(
            line.time,
            Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456))
        );
    }

    #[test]
    fn binary_messages_and_garbage() {
        let binary =
            r#"{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"x","MESSAGE":[104,105,255]}"#;
        assert_eq!(parse_entry(binary).unwrap().text, "x: hi\u{fffd}");
        assert_eq!(parse_entry("not json"), None);
        assert_eq!(parse_entry(r#"{"SYSLOG_IDENTIFIER":"x"}"#), None);
    }

    #[test]
    fn a_child_process_streams_entries() {
        // A real child process speaking journalctl's output format.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("printf '%s\\n' '{ENTRY}' 'garbage' '{ENTRY}'"));
        let (tx, mut rx) = mpsc::channel(8);
        let counters = Arc::new(JournalCounters::default());
        run(command, 4096, &tx, &counters).unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Ok(line) = rx.try_recv() {
            got.push(line);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(counters.malformed.load(Ordering::Relaxed), 1);
    }
}
