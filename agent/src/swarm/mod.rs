//! The swarm: agents tell each other what they saw, in signed [`Signal`]s, and trust only
//! members that admission let in.
//!
//! This module is the sans-IO protocol core ([`Swarm`]): SWIM membership and failure
//! detection through foca, signal checks (signature, membership, expiry, duplicates,
//! per-origin rate) and dissemination (push to `fanout` random members on first receipt,
//! plus one anti-entropy exchange of compact digests per round). The QUIC transport and
//! credential admission wrap it: the transport calls [`Swarm::handle_message`] with the
//! authenticated sender and sends each [`Transmit`]; admission calls [`Swarm::admit`] and
//! [`Swarm::expel`]. `docs/protocol.md` specifies the bytes.
//!
//! - [`peer`]: [`PeerId`] (`did:key`), [`Peer`], [`MemberId`] (foca's identity).
//! - [`signal`]: [`Signal`], its encoding, signing and verification.
//! - [`protocol`]: [`Swarm`], its configuration, events and transmits.
//! - [`sim`]: an in-memory network for tests and the `swarm_sim` example.
//! - [`link`]: [`SwarmLink`], what the decision stage holds of the running node.
//! - [`discovery`]: the seed list from static configuration or DNS SRV records (the
//!   one part of this module that does I/O, for the transport to read).
//! - [`metrics`]: the `swarmguard_swarm_*` Prometheus metrics, fed from [`Stats`].
//! - [`node`]: the running node (tokio): QUIC endpoint, connections, the core's driver;
//!   [`node::start`] is what the daemon calls.
//! - [`tls`]: self-signed Ed25519 certificates and the verifiers of mutual TLS.
//! - [`admission`]: credential checks after the handshake, status lists, expulsion.
//! - [`credential`]: the agent's key and credential files.
//!
//! **Invariant**: nothing is trusted before its signature and membership are checked, and
//! nothing in the core
//! (`protocol`, `signal`, `wire`, `live`, `rate`) does I/O or reads a clock; `node`,
//! `admission`, `credential` and `discovery` (which asks DNS where the seeds are and hands
//! the node addresses, nothing trusted) are the I/O around it.

pub mod admission;
pub mod credential;
pub mod discovery;
pub mod link;
mod live;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod protocol;
mod rate;
pub mod signal;
pub mod sim;
mod stats;
pub mod tls;
mod wire;

pub use link::{MemberState, MemberView, SwarmLink, SwarmView};
pub use peer::{InvalidDidKey, MemberId, Peer, PeerId};
pub use protocol::{Channel, Event, PublishError, Swarm, SwarmConfig, Transmit};
pub use rate::RateLimit;
pub use signal::{
    KeyError, MAX_SIGNAL_LEN, Reason, Signal, SignalBody, SignalError, SignalId, SigningKey,
};
pub use stats::{DropReason, Stats};
pub use wire::signals_message;
