//! Decisions: Alerts and Signals in, what this host enforces out.
//!
//! - [`quorum`]: counts distinct origins signalling a subject within a window.

pub mod quorum;
