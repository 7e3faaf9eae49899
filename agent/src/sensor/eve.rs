//! The Suricata `eve.json` sensor: follows eve files with the log follower and turns their
//! `event_type: "alert"` lines into [`Alert`]s, so that hosts already running Suricata join
//! the swarm without changing their IDS.
//!
//! Mapping: `alert.{gid, signature_id, rev, signature}` make the [`RuleRef::Packet`] (its
//! `classtype` holds eve's `alert.category`, the classtype's description, since eve does
//! not carry the short name); `alert.action` `allowed` is [`Action::Alert`] and `blocked`
//! is [`Action::Drop`]; `alert.severity` is a Suricata priority, mapped by
//! [`Severity::from_priority`]; `timestamp` is the packet's time. Other event types are
//! skipped and counted; lines that are not eve JSON, or alerts missing a required field,
//! are counted as malformed and dropped.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::log::{self, LogLine, LogSensor, LogSensorOptions};
use crate::detect::{Action, Alert, Evidence, RuleRef, Severity};

/// Why an eve line was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EveError {
    /// Not JSON, or not an object of eve's shape.
    #[error("not an eve.json record: {0}")]
    Malformed(String),
    /// An alert record without a field the alert needs.
    #[error("alert record without {0}")]
    Missing(&'static str),
    /// A timestamp that is not Suricata's ISO 8601 form.
    #[error("bad timestamp \"{0}\"")]
    Timestamp(String),
}

#[derive(Debug, Deserialize)]
struct Record {
    event_type: Option<String>,
    timestamp: Option<String>,
    src_ip: Option<String>,
    src_port: Option<u16>,
    dest_ip: Option<String>,
    dest_port: Option<u16>,
    proto: Option<serde_json::Value>,
    alert: Option<RecordAlert>,
}

#[derive(Debug, Deserialize)]
struct RecordAlert {
    action: Option<String>,
    gid: Option<u32>,
    signature_id: Option<u32>,
    rev: Option<u32>,
    signature: Option<String>,
    category: Option<String>,
    severity: Option<u32>,
}

/// Parses one eve line: `Ok(Some(alert))` for an alert record, `Ok(None)` for another
/// event type.
pub fn parse_line(line: &str) -> Result<Option<Alert>, EveError> {
    let record: Record =
        serde_json::from_str(line).map_err(|err| EveError::Malformed(err.to_string()))?;
    if record.event_type.as_deref() != Some("alert") {
        return Ok(None);
    }
    let alert = record.alert.ok_or(EveError::Missing("alert"))?;
    let timestamp = record.timestamp.ok_or(EveError::Missing("timestamp"))?;
    let time: SystemTime = chrono::DateTime::parse_from_str(&timestamp, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&timestamp))
        .map_err(|_| EveError::Timestamp(timestamp.clone()))?
        .into();
    let ip = |text: Option<String>| text.and_then(|t| t.parse::<IpAddr>().ok());
    let src = ip(record.src_ip);
    let dst = ip(record.dest_ip);
    let proto = match record.proto {
        Some(serde_json::Value::String(name)) => name,
        Some(other) => other.to_string(),
        None => "IP".to_owned(),
    };
    let endpoint = |ip: Option<IpAddr>, port: Option<u16>| match (ip, port) {
        (Some(IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        (None, _) => "?".to_owned(),
    };
    let summary = format!(
        "{proto} {} -> {} (Suricata eve)",
        endpoint(src, record.src_port),
        endpoint(dst, record.dest_port)
    );
    Ok(Some(Alert {
        rule: RuleRef::Packet {
            gid: alert.gid.unwrap_or(1),
            sid: alert
                .signature_id
                .ok_or(EveError::Missing("alert.signature_id"))?,
            rev: alert.rev.unwrap_or(0),
            msg: alert.signature.unwrap_or_default(),
            classtype: alert.category.filter(|c| !c.is_empty()),
        },
        action: match alert.action.as_deref() {
            Some("blocked") => Action::Drop,
            _ => Action::Alert,
        },
        severity: Severity::from_priority(alert.severity.unwrap_or(3)),
        src,
        src_port: record.src_port,
        dst,
        dst_port: record.dest_port,
        time,
        evidence: Evidence::Packet { summary },
    }))
}

/// Counters of the eve sensor, for metrics.
#[derive(Debug, Default)]
pub struct EveCounters {
    pub alerts: AtomicU64,
    /// Records of other event types (flow, dns, stats...), skipped.
    pub other: AtomicU64,
    pub malformed: AtomicU64,
    /// Alerts dropped because detection's queue was closed.
    pub dropped: AtomicU64,
}

/// The running eve sensor.
#[derive(Debug)]
pub struct EveSensor {
    follower: LogSensor,
    counters: Arc<EveCounters>,
}

impl EveSensor {
    pub fn counters(&self) -> &Arc<EveCounters> {
        &self.counters
    }

    /// Stops following; the parsing task ends when the follower's channel closes.
    pub fn stop(self) {
        self.follower.stop();
    }
}

/// Follows `paths` (eve files or globs) and sends their alerts to `alerts`. Must be called
/// inside a tokio runtime: parsing runs as a task.
pub fn spawn(
    paths: Vec<String>,
    options: LogSensorOptions,
    alerts: mpsc::Sender<Alert>,
) -> std::io::Result<EveSensor> {
    let (tx, mut rx) = mpsc::channel::<LogLine>(1024);
    let follower = log::spawn(paths, options, tx)?;
    let counters = Arc::new(EveCounters::default());
    let task_counters = counters.clone();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if line.truncated {
                // A cut JSON record cannot parse; count it rather than try.
                task_counters.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match parse_line(&line.text) {
                Ok(Some(alert)) => {
                    task_counters.alerts.fetch_add(1, Ordering::Relaxed);
                    if alerts.send(alert).await.is_err() {
                        task_counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => {
                    task_counters.other.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    tracing::debug!(source = %line.source, error = %err, "eve line dropped");
                    task_counters.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(EveSensor { follower, counters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// Lines as Suricata 7 writes them (an alert with its flow, a blocked alert over IPv6,
    /// and a flow record).
    const ALERT: &str = r#"{"timestamp":"2024-03-05T10:15:42.123456+0100","flow_id":1473920129385744,"in_iface":"eth0","event_type":"alert","src_ip":"203.0.113.9","src_port":51514,"dest_ip":"192.168.1.10","dest_port":22,"proto":"TCP","pkt_src":"wire/pcap","alert":{"action":"allowed","gid":1,"signature_id":2001219,"rev":20,"signature":"ET SCAN Potential SSH Scan","category":"Attempted Information Leak","severity":2,"metadata":{"created_at":["2010_07_30"]}},"flow":{"pkts_toserver":1,"pkts_toclient":0,"bytes_toserver":74,"bytes_toclient":0,"start":"2024-03-05T10:15:42.123456+0100"}}"#;
    const BLOCKED: &str = r#"{"timestamp":"2024-03-05T10:15:43.000001+0000","flow_id":99,"event_type":"alert","src_ip":"2001:db8::66","src_port":4444,"dest_ip":"2001:db8::1","dest_port":80,"proto":"TCP","alert":{"action":"blocked","gid":1,"signature_id":9000001,"rev":1,"signature":"LOCAL exploit","category":"Attempted Administrator Privilege Gain","severity":1}}"#;
    const FLOW: &str = r#"{"timestamp":"2024-03-05T10:15:44.000000+0000","flow_id":5,"event_type":"flow","src_ip":"192.0.2.1","src_port":1,"dest_ip":"192.0.2.2","dest_port":2,"proto":"UDP","flow":{"pkts_toserver":1}}"#;

    #[test]
    fn an_alert_record_becomes_an_alert() {
        let alert = parse_line(ALERT).unwrap().unwrap();
        assert_eq!(
            alert.rule,
            RuleRef::Packet {
                gid: 1,
                sid: 2001219,
                rev: 20,
                msg: "ET SCAN Potential SSH Scan".into(),
                classtype: Some("Attempted Information Leak".into()),
            }
        );
        assert_eq!(alert.action, Action::Alert);
        assert_eq!(alert.severity, Severity::Medium);
        assert_eq!(alert.src, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(alert.dst_port, Some(22));
        assert_eq!(
            crate::detect::scenario::time::rfc3339(alert.time),
            "2024-03-05T09:15:42Z"
        );
        assert_eq!(
            alert.evidence,
            Evidence::Packet {
                summary: "TCP 203.0.113.9:51514 -> 192.168.1.10:22 (Suricata eve)".into()
            }
        );
    }

    #[test]
    fn blocked_is_drop_and_other_events_are_skipped() {
        let alert = parse_line(BLOCKED).unwrap().unwrap();
        assert_eq!(alert.action, Action::Drop);
        assert_eq!(alert.severity, Severity::High);
        assert_eq!(alert.src, Some("2001:db8::66".parse().unwrap()));
        assert_eq!(parse_line(FLOW), Ok(None));
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for line in [
            "",
            "not json",
            "{\"event_type\":\"alert\"",
            r#"{"event_type":"alert","timestamp":"2024-03-05T10:15:44+0000"}"#,
            r#"{"event_type":"alert","timestamp":"yesterday","alert":{"signature_id":1}}"#,
            r#"{"event_type":"alert","timestamp":"2024-03-05T10:15:44.1+0000","alert":{"gid":1}}"#,
            r#"{"event_type":"alert","src_port":70000}"#,
        ] {
            assert!(parse_line(line).is_err(), "{line:?} was accepted");
        }
    }

    #[tokio::test]
    async fn follows_an_eve_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        std::fs::write(&path, format!("{ALERT}\n")).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let options = LogSensorOptions {
            poll_interval: Duration::from_millis(20),
            ..LogSensorOptions::default()
        };
        let sensor = spawn(vec![path.to_string_lossy().into_owned()], options, tx).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(file, "{FLOW}\ngarbage\n{BLOCKED}\n").unwrap();
        let alert = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("no alert arrived")
            .unwrap();
        // The alert already in the file when following began is not replayed.
        assert_eq!(alert.rule.id(), "1:9000001");
        let counters = sensor.counters().clone();
        sensor.stop();
        assert_eq!(counters.malformed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.other.load(Ordering::Relaxed), 1);
    }
}
