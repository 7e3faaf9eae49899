//! Detection: matches what the sensors saw against packet rules (Suricata format) and log
//! scenarios, and emits [`Alert`]s for the decision stage.
//!
//! - [`scenario`]: log scenarios (regexes, sessions, leaky buckets).
//!
//! **Invariant**: nothing in `detect` does I/O. Time comes in with the packet or log line;
//! files are read by the caller and handed in as text.
//!
//! The packet path, in the order a frame takes:
//! - [`rules`]: Suricata rule text to precompiled [`rules::Rule`]s, with `FILE:LINE:COL`
//!   errors for what cannot load.
//! - [`decode`]: frame + pcap link type to a borrowed [`decode::Packet`].
//! - [`flow`]: the bounded flow table (TCP state, directions, flowbits).
//! - [`engine`]: prefilter and rule evaluation; [`engine::Engine::process`] is the entry.
//! - `inspect`, `threshold`: payload programs and threshold counters, used by the engine.
//! - [`eve`]: Suricata-compatible eve.json alert lines.
//! - [`metrics`]: the engine's counters as `swarmguard_*` Prometheus metrics.

mod alert;
pub mod decode;
pub mod engine;
pub mod eve;
pub mod flow;
mod inspect;
pub mod metrics;
pub mod rules;
pub mod scenario;
mod threshold;

pub use alert::{Action, Alert, Evidence, RuleRef, SINKHOLE_RULE_ID, Severity};
pub use engine::{ChecksumMode, Detection, Engine, EngineConfig, EngineStats};
