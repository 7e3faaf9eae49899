//! Live capture on a real veth interface inside a test network namespace.

use std::time::Duration;

use swarmguard_agent::api::Metrics;
use swarmguard_agent::sensor::capture::{Capture, CaptureConfig, Frame};
use tokio::sync::mpsc;

use crate::netlab::{A4, A6, Lab};

/// Waits (polling the metrics, with a safety limit) until `line` appears in them.
fn wait_for_metric(metrics: &Metrics, line: &str) {
    for _ in 0..600 {
        if metrics.render().lines().any(|l| l == line) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("metric line {line:?} never appeared:\n{}", metrics.render());
}

fn next_frame(rx: &mut mpsc::Receiver<Frame>) -> Frame {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), rx.recv()).await })
        .expect("a frame within the safety timeout")
        .expect("the capture is running")
}

fn start(lab: &Lab, config: CaptureConfig, metrics: &Metrics) -> (Capture, mpsc::Receiver<Frame>) {
    // The capture threads inherit the namespace of the thread that starts them.
    let started = lab.a.run(|| Capture::start(&config, metrics));
    wait_for_metric(metrics, "swarmguard_capture_up{interface=\"sg0\"} 1");
    started
}

fn config(bpf: &str, queue: usize) -> CaptureConfig {
    CaptureConfig {
        interfaces: vec!["sg0".to_owned()],
        bpf: Some(bpf.to_owned()),
        queue,
        ..CaptureConfig::default()
    }
}

#[test]
fn udp_frames_arrive_with_their_addresses_and_the_link_type() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let (capture, mut rx) = start(&lab, config("udp port 9999", 64), &metrics);

    lab.send("10.77.0.2", A4, 9999, b"swarmguard-capture-v4");
    let frame = next_frame(&mut rx);
    assert_eq!(frame.linktype, 1, "Ethernet");
    assert_eq!(&*frame.interface, "sg0");
    let data = &frame.data;
    assert_eq!(&data[12..14], &[0x08, 0x00], "IPv4 ethertype");
    assert_eq!(&data[26..30], &[10, 77, 0, 2], "source address");
    assert_eq!(&data[30..34], &[10, 77, 0, 1], "destination address");
    assert_eq!(
        u16::from_be_bytes([data[36], data[37]]),
        9999,
        "destination port"
    );
    assert!(data.ends_with(b"swarmguard-capture-v4"));
    let age = std::time::SystemTime::now()
        .duration_since(frame.ts)
        .unwrap();
    assert!(
        age < Duration::from_secs(3600),
        "the timestamp is the capture time"
    );

    lab.send("fd77::2", A6, 9999, b"swarmguard-capture-v6");
    let frame = next_frame(&mut rx);
    let data = &frame.data;
    assert_eq!(&data[12..14], &[0x86, 0xdd], "IPv6 ethertype");
    assert_eq!(
        &data[22..38],
        &"fd77::2".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(
        &data[38..54],
        &A6.parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert!(data.ends_with(b"swarmguard-capture-v6"));

    assert!(
        metrics
            .render()
            .contains("swarmguard_capture_packets_total{interface=\"sg0\"} 2")
    );
    capture.stop();
    // Stopping drops every sender: the queue ends.
    assert!(rx.blocking_recv().is_none());
}

#[test]
fn the_bpf_filter_leaves_out_other_traffic() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let (capture, mut rx) = start(&lab, config("udp port 9999", 64), &metrics);
    lab.send("10.77.0.2", A4, 8888, b"filtered out");
    lab.send("10.77.0.2", A4, 9999, b"let through");
    let frame = next_frame(&mut rx);
    assert!(
        frame.data.ends_with(b"let through"),
        "the port 8888 datagram was captured"
    );
    capture.stop();
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let (capture, mut rx) = start(&lab, config("udp port 9999", 2), &metrics);
    for i in 0..10u8 {
        lab.send("10.77.0.2", A4, 9999, &[b'q', i]);
    }
    wait_for_metric(
        &metrics,
        "swarmguard_capture_packets_total{interface=\"sg0\"} 10",
    );
    wait_for_metric(
        &metrics,
        "swarmguard_capture_dropped_total{interface=\"sg0\",reason=\"queue\"} 8",
    );
    // The two that fitted are the first two, intact.
    assert!(next_frame(&mut rx).data.ends_with(&[b'q', 0]));
    assert!(next_frame(&mut rx).data.ends_with(&[b'q', 1]));
    capture.stop();
}

#[test]
fn a_missing_interface_is_picked_up_once_it_appears() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let config = CaptureConfig {
        interfaces: vec!["sg1".to_owned(), "sg0".to_owned()],
        bpf: Some("udp port 9999".to_owned()),
        ..CaptureConfig::default()
    };
    let (capture, mut rx) = lab.a.run(|| Capture::start(&config, &metrics));
    // sg0 captures while sg1 does not exist yet.
    wait_for_metric(&metrics, "swarmguard_capture_up{interface=\"sg0\"} 1");
    assert!(
        !metrics
            .render()
            .contains("swarmguard_capture_up{interface=\"sg1\"} 1")
    );

    lab.link("sg1");
    lab.a
        .exec(&["ip", "addr", "add", "10.78.0.1/24", "dev", "sg1"]);
    lab.b
        .exec(&["ip", "addr", "add", "10.78.0.2/24", "dev", "sg1"]);
    lab.up("sg1");
    wait_for_metric(&metrics, "swarmguard_capture_up{interface=\"sg1\"} 1");
    lab.send("10.78.0.2", "10.78.0.1", 9999, b"late interface");
    let frame = next_frame(&mut rx);
    assert_eq!(&*frame.interface, "sg1");
    assert!(frame.data.ends_with(b"late interface"));
    capture.stop();
}

#[test]
fn capture_on_any_gives_linux_cooked_frames() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let config = CaptureConfig {
        interfaces: vec!["any".to_owned()],
        bpf: Some("udp port 9999".to_owned()),
        ..CaptureConfig::default()
    };
    let (capture, mut rx) = lab.a.run(|| Capture::start(&config, &metrics));
    wait_for_metric(&metrics, "swarmguard_capture_up{interface=\"any\"} 1");
    lab.send("10.77.0.2", A4, 9999, b"cooked");
    let frame = next_frame(&mut rx);
    assert_eq!(frame.linktype, 113, "DLT_LINUX_SLL");
    // A 16-byte cooked header whose protocol field says IPv4, then the IP header.
    assert_eq!(&frame.data[14..16], &[0x08, 0x00]);
    assert_eq!(&frame.data[28..32], &[10, 77, 0, 2]);
    assert_eq!(&frame.data[32..36], &[10, 77, 0, 1]);
    assert!(frame.data.ends_with(b"cooked"));
    capture.stop();
}
