//! What the swarm core counts: messages and bytes in and out, and every dropped input under
//! its reason. Plain numbers, so the core stays free of the metrics registry; the daemon
//! exports them as `swarmguard_swarm_*`.

use std::fmt;

/// Why the core dropped a message, a signal or an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A message over `max_message_size`, or a signal over [`super::MAX_SIGNAL_LEN`].
    TooLarge,
    /// Bytes that do not decode: wrong version, unknown type, truncated, non-canonical,
    /// impossible times (observed in the future, living longer than `max_ttl`).
    Malformed,
    /// A message from, or a signal by, a peer that admission has not admitted.
    UnknownMember,
    /// A message from, or a signal by, a peer that admission expelled.
    RevokedMember,
    /// A SWIM packet whose sender field names someone else than the authenticated peer.
    Spoofed,
    /// A signal whose signature is not its origin's.
    BadSignature,
    /// A signal past its `expires_at`.
    Expired,
    /// A signal already held (gossip brings most signals several times; this is normal).
    Duplicate,
    /// A signal the member already held and forgot for room: taking it again would
    /// report it twice.
    Replayed,
    /// A signal beyond its origin's token bucket.
    RateLimited,
    /// A signal that would exceed `max_live_signals`.
    StoreFull,
    /// An outgoing message dropped because the outbox held `max_outbox` already.
    OutboxFull,
    /// An event dropped because the event queue held `max_events` already.
    EventsFull,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::UnknownMember,
        DropReason::RevokedMember,
        DropReason::Spoofed,
        DropReason::BadSignature,
        DropReason::Expired,
        DropReason::Duplicate,
        DropReason::Replayed,
        DropReason::RateLimited,
        DropReason::StoreFull,
        DropReason::OutboxFull,
        DropReason::EventsFull,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooLarge => "too_large",
            DropReason::Malformed => "malformed",
            DropReason::UnknownMember => "unknown_member",
            DropReason::RevokedMember => "revoked_member",
            DropReason::Spoofed => "spoofed",
            DropReason::BadSignature => "bad_signature",
            DropReason::Expired => "expired",
            DropReason::Duplicate => "duplicate",
            DropReason::Replayed => "replayed",
            DropReason::RateLimited => "rate_limited",
            DropReason::StoreFull => "store_full",
            DropReason::OutboxFull => "outbox_full",
            DropReason::EventsFull => "events_full",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters since the core started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    /// Signals accepted from the network (each counted once).
    pub signals_received: u64,
    /// Signals this member published.
    pub signals_published: u64,
    /// Signals forgotten because they expired.
    pub signals_expired: u64,
    /// Signals pushed out by a newer one of the same origin (`max_signals_per_origin`).
    pub signals_evicted: u64,
    /// Members SWIM suspected (this member's probe failed).
    pub suspicions: u64,
    dropped: [u64; DropReason::ALL.len()],
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// Every reason with its count, in [`DropReason::ALL`] order.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|reason| (*reason, self.dropped(*reason)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_counter() {
        let mut stats = Stats::default();
        for (index, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
            for _ in 0..=index {
                stats.drop(*reason);
            }
        }
        for (index, (_, count)) in stats.drops().enumerate() {
            assert_eq!(count, index as u64 + 1);
        }
    }
}
