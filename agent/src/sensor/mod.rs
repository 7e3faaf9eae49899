//! Sensors: turn the outside world into things `detect` can match. Each sensor runs on its
//! own thread or task and hands its output to detection through a bounded channel.
//!
//! - [`log`]: follows log files like `tail -F` (rotation, truncation, late files, partial
//!   lines) and, optionally, the systemd journal.
//! - [`eve`]: follows a Suricata `eve.json` file and turns its alerts into [`Alert`]s, so
//!   hosts that already run Suricata join the swarm without changing their IDS.
//!
//! [`Alert`]: crate::detect::Alert

pub mod eve;
pub mod log;
