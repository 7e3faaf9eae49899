//! Detection: matches what the sensors saw against packet rules (Suricata format) and log
//! scenarios, and emits [`Alert`]s for the decision stage.
//!
//! - [`scenario`]: log scenarios (regexes, sessions, leaky buckets).
//!
//! **Invariant**: nothing in `detect` does I/O. Time comes in with the packet or log line;
//! files are read by the caller and handed in as text.

mod alert;
pub mod scenario;

pub use alert::{Action, Alert, Evidence, RuleRef, Severity};
