//! Decisions: what this host enforces, and (as the policy lands) how alerts and swarm
//! signals become them. For now this holds only the [`Decision`] type, which the store,
//! the enforcement backends, the admin API and the policy share.

mod decision;

pub use decision::{Action, Decision, DecodeError, Origin, UnknownAction};
