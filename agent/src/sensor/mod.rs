//! Sensors: where packets and log lines come from. Each sensor does the I/O and hands
//! frames (with their capture time and pcap link type) or lines to `detect`.
//!
//! - [`pcap_file`]: frames from a pcap or pcapng file, for `swarmd replay` and tests.

pub mod pcap_file;
