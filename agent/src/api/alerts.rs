//! [`AlertLog`]: the recent alerts `swarmctl alerts` shows, in a bounded ring, and a
//! broadcast of new ones for `swarmctl alerts --follow`. A follower that falls behind
//! loses the alerts it missed (counted in its stream as a `lagged` line), never the agent.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::detect::Alert;

/// How many new alerts may wait for a slow follower before it starts missing some.
const FOLLOW_QUEUE: usize = 1024;

/// One alert as `swarmctl alerts` shows it, with what the decision stage made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// When it happened (the packet's or log line's time), RFC 3339.
    pub time: String,
    /// `1:9000007` or a scenario name.
    pub rule: String,
    /// The rule's message or the scenario's name.
    pub message: String,
    /// The rule's action (`alert`, `drop`, ...).
    pub action: String,
    pub severity: String,
    pub src: Option<String>,
    pub dst: Option<String>,
    /// What the decision stage did: `blocked`, `already-blocked`, `refused: REASON`, or
    /// `none` (below the policy's level).
    pub outcome: String,
}

impl AlertRecord {
    pub fn new(alert: &Alert, outcome: String) -> AlertRecord {
        let addr = |ip: Option<std::net::IpAddr>, port: Option<u16>| {
            ip.map(|ip| match (ip, port) {
                (std::net::IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
                (ip, Some(port)) => format!("{ip}:{port}"),
                (ip, None) => ip.to_string(),
            })
        };
        let message = match &alert.rule {
            crate::detect::RuleRef::Packet { msg, .. } => msg.clone(),
            crate::detect::RuleRef::Scenario { name } => name.clone(),
            crate::detect::RuleRef::Sinkhole { domain } => {
                format!("DNS query for sinkholed {domain}")
            }
        };
        AlertRecord {
            time: format_time(alert.time),
            rule: alert.rule.id(),
            message,
            action: alert.action.as_str().to_owned(),
            severity: alert.severity.as_str().to_owned(),
            src: addr(alert.src, alert.src_port),
            dst: addr(alert.dst, alert.dst_port),
            outcome,
        }
    }
}

fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time.max(SystemTime::UNIX_EPOCH)).to_string()
}

/// The recent alerts and the stream of new ones.
#[derive(Debug)]
pub struct AlertLog {
    capacity: usize,
    recent: Mutex<VecDeque<AlertRecord>>,
    new: broadcast::Sender<AlertRecord>,
}

impl AlertLog {
    pub fn new(capacity: usize) -> AlertLog {
        AlertLog {
            capacity: capacity.max(1),
            recent: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            new: broadcast::channel(FOLLOW_QUEUE).0,
        }
    }

    /// Records an alert; the oldest goes when the ring is full.
    pub fn push(&self, record: AlertRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        // Sent under the lock, so that `follow` sees each record once. No follower is not
        // an error.
        let _ = self.new.send(record);
    }

    /// The recent alerts, oldest first.
    pub fn recent(&self) -> Vec<AlertRecord> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    /// The recent alerts and a receiver of the ones that follow, with none lost or doubled
    /// in between (subscribing happens under the same lock as pushing reads).
    pub fn follow(&self) -> (Vec<AlertRecord>, broadcast::Receiver<AlertRecord>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.new.subscribe();
        (recent.iter().cloned().collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> AlertRecord {
        AlertRecord {
            time: "2026-01-01T00:00:00.000Z".to_owned(),
            rule: format!("1:{n}"),
            message: String::new(),
            action: "alert".to_owned(),
            severity: "high".to_owned(),
            src: None,
            dst: None,
            outcome: "none".to_owned(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_followers_see_what_comes_next() {
        let log = AlertLog::new(2);
        for n in 0..3 {
            log.push(record(n));
        }
        let rules: Vec<String> = log.recent().into_iter().map(|r| r.rule).collect();
        assert_eq!(rules, ["1:1", "1:2"]);
        let (recent, mut rx) = log.follow();
        assert_eq!(recent.len(), 2);
        log.push(record(3));
        assert_eq!(rx.try_recv().unwrap().rule, "1:3");
    }
}
