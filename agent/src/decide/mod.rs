//! Decisions: Alerts and Signals in, what this host enforces out.
//!
//! - [`Decision`]: what this host enforces; the store, the enforcement backends, the admin
//!   API and the policy share it.
//! - [`quorum`]: counts distinct origins signalling a subject within a window, each origin
//!   once, so that no single member can reach a quorum alone.
//!
//! The policy that turns alerts and quorums into decisions lands here with its issue.

mod decision;
pub mod quorum;

pub use decision::{Action, Decision, DecodeError, Origin, UnknownAction};
