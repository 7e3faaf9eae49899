//! The seam between the running swarm node and the rest of the daemon: [`SwarmLink`] is
//! what the decision stage holds. The node (QUIC transport, admission, the protocol core)
//! owns the other ends of its channels; the decision stage never sees a socket.
//!
//! Without a membership credential there is no node and no link: the agent runs
//! standalone.

use std::net::SocketAddr;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};

use super::peer::PeerId;
use super::protocol::Event;
use super::signal::SignalBody;

/// How many local decisions may wait to be published; the decision stage drops (and
/// counts) past it rather than block detection.
pub const PUBLISH_QUEUE: usize = 1024;
/// How many swarm events may wait for the decision stage.
pub const EVENT_QUEUE: usize = 4096;

/// The decision stage's handle on the swarm.
#[derive(Debug)]
pub struct SwarmLink {
    /// Local decisions to sign and gossip as signals.
    pub publish: mpsc::Sender<SignalBody>,
    /// Signals received (each `(origin, seq)` once), membership changes, withdrawals.
    pub events: mpsc::Receiver<Event>,
    /// What `swarmctl status` and `swarmctl peers` show, and the allowlist of members.
    pub view: watch::Receiver<SwarmView>,
}

/// A snapshot of this member and the members it knows, refreshed by the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmView {
    /// This agent's identity, once its key is loaded.
    pub me: Option<PeerId>,
    /// When this agent's membership credential expires.
    pub credential_expires: Option<SystemTime>,
    /// The role this agent's credential grants (`sensor`, `sentinel`, `operator`): an
    /// operator's agent may publish swarm-wide decisions (`swarmctl decisions add --swarm`).
    pub role: Option<String>,
    pub members: Vec<MemberView>,
}

/// One member as `swarmctl peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub peer: PeerId,
    pub addr: SocketAddr,
    pub state: MemberState,
    /// The role its credential grants (`sensor`, `sentinel`, `operator`).
    pub role: String,
    /// When this agent last heard from it.
    pub last_seen: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}
