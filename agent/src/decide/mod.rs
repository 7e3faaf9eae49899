//! Decisions: Alerts and Signals in, what this host enforces out.
//!
//! - [`Decision`]: what this host enforces; the store, the enforcement backends, the admin
//!   API and the policy share it.
//! - [`quorum`]: counts distinct origins signalling a subject within a window, each origin
//!   once, so that no single member can reach a quorum alone.
//! - [`policy`]: the rules that turn alerts, signals and operator decisions into
//!   decisions (block on drop/reject or severity, quorum, operators, allowlist, escalating
//!   ban time). Sans-IO; the daemon's decision stage (`crate::stage`) wraps it.

mod decision;
pub mod policy;
pub mod quorum;

pub use decision::{Action, Decision, DecodeError, Origin, UnknownAction};
pub use policy::{
    Allowlist, BanTime, OperatorDecision, Outcome, Policy, PolicyConfig, Proposal, Publish, Refusal,
};
