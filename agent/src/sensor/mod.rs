//! Sensors: where the agent's input comes from. Each turns the outside world into values
//! the detection stage takes (frames with their capture time and pcap link type, log
//! lines), runs on its own thread or task, hands its output over through a bounded queue,
//! and does the I/O that `detect` must not.
//!
//! - [`capture`]: live packets from network interfaces through libpcap, one thread per
//!   interface, into a bounded queue of [`capture::Frame`]s.
//! - [`pcap_file`]: frames from a pcap or pcapng file, for `swarmd replay` and tests.
//! - [`log`]: follows log files like `tail -F` (rotation, truncation, late files, partial
//!   lines) and, optionally, the systemd journal.
//! - [`eve`]: follows a Suricata `eve.json` file and turns its alerts into [`Alert`]s, so
//!   hosts that already run Suricata join the swarm without changing their IDS.
//!
//! [`Alert`]: crate::detect::Alert

pub mod capture;
pub mod eve;
pub mod log;
pub mod pcap_file;
