//! What the demo shows at its end: per agent, what it detected, heard and blocked. The
//! JSON form (`swarmd demo --json`) is a contract scripts and the demo's test read; the
//! table is for people.

use std::fmt::Write as _;

use serde::Serialize;

/// The demo's outcome, printed as one JSON object with `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Sources that must end up blocked on every agent: seen by at least `quorum` agents.
    pub attackers: Vec<String>,
    /// Sources seen by one agent only: blocked there, not swarm-wide.
    pub single_reports: Vec<String>,
    /// Whether every agent refused the impostor (no valid membership credential).
    pub impostor_refused: bool,
    /// The quorum the demo swarm ran with.
    pub quorum: usize,
    /// Whether every attacker ended up blocked on every agent before the demo gave up.
    pub settled: bool,
    pub agents: Vec<AgentSummary>,
}

/// One agent of the demo swarm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentSummary {
    pub name: String,
    pub did: String,
    /// Its admin socket, for `swarmctl --socket`.
    pub socket: String,
    /// Its Prometheus endpoint.
    pub metrics: String,
    /// Local detections.
    pub alerts: u64,
    /// Valid signals received from the swarm.
    pub signals_received: u64,
    /// Subjects it blocks (active decisions), sorted.
    pub blocked: Vec<String>,
    /// From the first alert anywhere in the swarm to this agent's first block decision
    /// on an attacker; `None` when it blocked none.
    pub time_to_block_ms: Option<u64>,
}

impl Summary {
    /// The table people read at the end of the demo.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<8} {:>6} {:>8} {:>14}  blocked",
            "agent", "alerts", "signals", "first alert→"
        );
        let _ = writeln!(
            out,
            "{:<8} {:>6} {:>8} {:>14}",
            "", "", "received", "block (ms)"
        );
        for agent in &self.agents {
            let time = agent
                .time_to_block_ms
                .map_or_else(|| "-".to_owned(), |ms| ms.to_string());
            let blocked = if agent.blocked.is_empty() {
                "-".to_owned()
            } else {
                agent.blocked.join(", ")
            };
            let _ = writeln!(
                out,
                "{:<8} {:>6} {:>8} {:>14}  {blocked}",
                agent.name, agent.alerts, agent.signals_received, time
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, blocked: &[&str], time: Option<u64>) -> AgentSummary {
        AgentSummary {
            name: name.into(),
            did: format!("did:key:z{name}"),
            socket: format!("/tmp/{name}.sock"),
            metrics: "http://127.0.0.1:1/metrics".into(),
            alerts: 2,
            signals_received: 3,
            blocked: blocked.iter().map(|s| s.to_string()).collect(),
            time_to_block_ms: time,
        }
    }

    #[test]
    fn json_has_the_fields_scripts_read() {
        let summary = Summary {
            attackers: vec!["203.0.113.66".into()],
            single_reports: vec!["198.51.100.23".into()],
            impostor_refused: true,
            quorum: 2,
            settled: true,
            agents: vec![agent("agent-1", &["203.0.113.66"], Some(120))],
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["attackers"][0], "203.0.113.66");
        assert_eq!(json["single_reports"][0], "198.51.100.23");
        assert_eq!(json["impostor_refused"], true);
        for field in [
            "name",
            "did",
            "socket",
            "alerts",
            "signals_received",
            "blocked",
            "time_to_block_ms",
        ] {
            assert!(json["agents"][0].get(field).is_some(), "{field}: {json}");
        }
        assert_eq!(json["agents"][0]["time_to_block_ms"], 120);
    }

    #[test]
    fn the_table_has_a_row_per_agent_and_dashes_for_nothing() {
        let summary = Summary {
            agents: vec![
                agent("agent-1", &["203.0.113.66"], Some(120)),
                agent("agent-2", &[], None),
            ],
            ..Summary::default()
        };
        let table = summary.table();
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(rows[0].starts_with("agent-1") && rows[0].ends_with("203.0.113.66"));
        assert!(rows[1].ends_with("-  -"), "{table}");
    }
}
