//! Sensors: where the agent's input comes from. Each turns the outside world into values
//! the detection stage takes, and does the I/O that `detect` must not.
//!
//! - [`capture`]: live packets from network interfaces through libpcap, one thread per
//!   interface, into a bounded queue of [`capture::Frame`]s.

pub mod capture;
