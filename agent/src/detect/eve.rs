//! eve.json alert lines in Suricata's format, so that tools reading Suricata's output
//! (SIEM pipelines, `jq` one-liners, our own eve sensor) read ours unchanged.

use serde::Serialize;

use super::alert::RuleRef;
use super::engine::{Detection, proto_name};

#[derive(Serialize)]
struct EveAlert<'a> {
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<u64>,
    event_type: &'static str,
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    alert: AlertBody<'a>,
}

#[derive(Serialize)]
struct AlertBody<'a> {
    /// `allowed` or `blocked`: what Suricata reports; drop and reject rules are what the
    /// agent blocks on.
    action: &'static str,
    gid: u32,
    signature_id: u32,
    rev: u32,
    signature: &'a str,
    category: &'a str,
    severity: u32,
}

/// Suricata's timestamp: microseconds and a numeric UTC offset.
pub fn timestamp(time: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_micros(time).to_string();
    match text.strip_suffix('Z') {
        Some(base) => format!("{base}+0000"),
        None => text,
    }
}

/// One eve.json line (without the newline) for a detection.
pub fn alert_line(detection: &Detection) -> String {
    let alert = &detection.alert;
    let (gid, sid, rev, msg) = match &alert.rule {
        RuleRef::Packet {
            gid, sid, rev, msg, ..
        } => (*gid, *sid, *rev, msg.as_str()),
        RuleRef::Scenario { name } => (0, 0, 0, name.as_str()),
        RuleRef::Sinkhole { domain } => (0, 0, 0, domain.as_str()),
    };
    let line = EveAlert {
        timestamp: timestamp(alert.time),
        flow_id: detection.flow_id,
        event_type: "alert",
        src_ip: alert.src.map(|a| a.to_string()).unwrap_or_default(),
        src_port: alert.src_port,
        dest_ip: alert.dst.map(|a| a.to_string()).unwrap_or_default(),
        dest_port: alert.dst_port,
        proto: proto_name(detection.ip_proto),
        icmp_type: detection.icmp.map(|(t, _)| t),
        icmp_code: detection.icmp.map(|(_, c)| c),
        alert: AlertBody {
            action: if alert.action.blocks() {
                "blocked"
            } else {
                "allowed"
            },
            gid,
            signature_id: sid,
            rev,
            signature: msg,
            category: &detection.category,
            severity: detection.priority,
        },
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use expect_test::expect;

    use super::*;
    use crate::detect::alert::{Action, Alert, Evidence, Severity};

    #[test]
    fn alert_line_matches_suricata_shape() {
        let detection = Detection {
            alert: Alert {
                rule: RuleRef::Packet {
                    gid: 1,
                    sid: 9000101,
                    rev: 2,
                    msg: "SWARMGUARD SCAN TCP NULL scan".to_owned(),
                    classtype: Some("attempted-recon".to_owned()),
                },
                action: Action::Alert,
                severity: Severity::Medium,
                src: Some("192.0.2.7".parse().unwrap()),
                src_port: Some(41234),
                dst: Some("10.0.0.5".parse().unwrap()),
                dst_port: Some(22),
                time: UNIX_EPOCH + Duration::from_micros(1_763_764_800_123_456),
                evidence: Evidence::Packet {
                    summary: String::new(),
                },
            },
            flow_id: Some(1234567890),
            ip_proto: 6,
            icmp: None,
            category: "Attempted Information Leak".to_owned(),
            priority: 2,
        };
        expect![[r#"{"timestamp":"2025-11-21T22:40:00.123456+0000","flow_id":1234567890,"event_type":"alert","src_ip":"192.0.2.7","src_port":41234,"dest_ip":"10.0.0.5","dest_port":22,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":9000101,"rev":2,"signature":"SWARMGUARD SCAN TCP NULL scan","category":"Attempted Information Leak","severity":2}}"#]]
        .assert_eq(&alert_line(&detection));
    }
}
