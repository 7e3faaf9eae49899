//! Sensors: where the agent's input comes from. Each turns the outside world into values
//! the detection stage takes (frames with their capture time and pcap link type, log
//! lines), and does the I/O that `detect` must not.
//!
//! - [`capture`]: live packets from network interfaces through libpcap, one thread per
//!   interface, into a bounded queue of [`capture::Frame`]s.
//! - [`pcap_file`]: frames from a pcap or pcapng file, for `swarmd replay` and tests.

pub mod capture;
pub mod pcap_file;
