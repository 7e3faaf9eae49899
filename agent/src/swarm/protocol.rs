//! [`Swarm`], the sans-IO protocol core: membership and failure detection (SWIM, through
//! foca), signed signals checked and disseminated by push and anti-entropy. Like
//! quinn-proto, it owns no socket and no clock: the caller feeds it `now` and the bytes an
//! authenticated peer sent ([`Swarm::handle_message`]), wakes it when
//! [`Swarm::poll_timeout`] says ([`Swarm::handle_timeout`]), and drains what it wants sent
//! ([`Swarm::poll_transmit`]) and what happened ([`Swarm::poll_event`]). The daemon's QUIC
//! glue and the 1,000-agent simulation run this same code.
//!
//! Trust comes from outside: the admission layer verifies a peer's membership credential
//! and calls [`Swarm::admit`] (or [`Swarm::expel`] when it is revoked). The core accepts
//! messages only from admitted peers, and signals only by admitted origins with a valid
//! signature.
//!
//! Time is wall-clock (`SystemTime`), because signals carry wall-clock expiry that every
//! member must read alike. The daemon should pass a clock that does not step (its start
//! time plus a monotonic elapsed time), since timers are deadlines on that clock too.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{
    AccumulatingRuntime, Codec, Foca, Member, NoCustomBroadcast, OwnedNotification, PostcardCodec,
    Timer,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::live::{Insert, LiveSignals};
use super::peer::{MemberId, Peer, PeerId};
use super::rate::{RateLimit, TokenBucket};
use super::signal::{self, Signal, SignalBody, SignalError, SigningKey};
use super::stats::{DropReason, Stats};
use super::wire::{self, Message};

/// The core's settings. The defaults suit a LAN swarm of about a thousand members.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// How many random members a new signal is pushed to, and SWIM gossips to per round.
    pub fanout: usize,
    /// The gossip round: SWIM's periodic gossip and one anti-entropy exchange each.
    pub interval: Duration,
    /// The swarm size SWIM's timeouts are sized for (how long a suspect has to refute,
    /// how often an update is retransmitted); both grow with its logarithm.
    pub expected_members: u32,
    /// How many members are asked to probe a member that did not answer a direct probe
    /// before it is suspected (SWIM's k). More make false suspicions on lossy networks
    /// rarer, at a cost only when a direct probe fails.
    pub indirect_probes: usize,
    /// The largest message accepted or sent (signal batches, anti-entropy).
    pub max_message_size: usize,
    /// The largest SWIM message, which travels as one datagram.
    pub max_datagram_size: usize,
    /// How many live signals are held, in all.
    pub max_live_signals: usize,
    /// How many live signals one origin may have held at once; its oldest go first.
    pub max_signals_per_origin: usize,
    /// The longest lifetime (`expires_at - observed_at`) a signal may claim.
    pub max_ttl: Duration,
    /// How far in the future `observed_at` may be, for clocks that disagree.
    pub max_clock_skew: Duration,
    /// What each origin may say: new signals accepted per second, and in one burst.
    pub rate_limit: RateLimit,
    /// How many hashes an anti-entropy answer lists at most.
    pub max_have_hashes: usize,
    /// How many messages wait to be sent at most.
    pub max_outbox: usize,
    /// How many events wait to be read at most.
    pub max_events: usize,
    /// How many peers may be admitted (and expelled) at once; bounds all per-peer state.
    pub max_members: usize,
    /// How long a refused signal (rate-limited, unknown origin, …) is not pulled again
    /// when anti-entropy offers it.
    pub retry_refused_after: Duration,
    /// How often to announce to the seeds again while no member is known.
    pub rejoin_interval: Duration,
    /// How often members declared down are sent an announce, so that the two sides of a
    /// healed partition find each other again (memberlist's LAN profile: 65 s).
    pub announce_to_down_every: Duration,
    /// Seeds the RNG (member choice, SWIM), so that simulations repeat exactly.
    pub seed: u64,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            fanout: 3,
            interval: Duration::from_millis(200),
            expected_members: 1000,
            // memberlist uses 3; on a network losing 10% of packets 5 cut false
            // suspicions (and the gossip they cause) by ~9x in swarm_sim.
            indirect_probes: 5,
            max_message_size: 64 * 1024,
            max_datagram_size: 1400,
            max_live_signals: 65_536,
            max_signals_per_origin: 1024,
            max_ttl: Duration::from_secs(24 * 3600),
            max_clock_skew: Duration::from_secs(300),
            rate_limit: RateLimit {
                per_second: 1.0,
                burst: 30,
            },
            max_have_hashes: 512,
            max_outbox: 4096,
            max_events: 65_536,
            max_members: 65_536,
            retry_refused_after: Duration::from_secs(5),
            rejoin_interval: Duration::from_secs(5),
            announce_to_down_every: Duration::from_secs(65),
            seed: 0,
        }
    }
}

/// Which kind of delivery a message wants. SWIM tolerates loss and is small: datagrams.
/// Signals and anti-entropy are larger and worth delivering: a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Datagram,
    Stream,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    /// Who must be at `to`: the transport sends nothing before the peer there proved it
    /// holds this key and a valid membership credential. `None` only for the first
    /// announce to a seed, whose key is not known yet (the transport still admits it
    /// before sending).
    pub peer: Option<PeerId>,
    pub channel: Channel,
    pub bytes: Vec<u8>,
}

/// What happened, for the decision stage, the store and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new, valid signal from the swarm (each `(origin, seq)` once).
    SignalReceived(Signal),
    /// A member is alive: new, back, or restarted under a new incarnation.
    MemberUp(MemberId),
    /// The swarm declared a member failed (or it left).
    MemberDown(MemberId),
    /// This member's probe of a member failed; SWIM now suspects it and gives it time to
    /// refute before declaring it down.
    MemberSuspect(MemberId),
    /// This member is known to the swarm (joined, or rejoined under a new identity).
    Joined(MemberId),
    /// Every member this one knew is down or gone.
    Isolated,
    /// Signals by an origin that admission has not admitted arrived: admission may want
    /// to fetch its credential (then anti-entropy brings the signals again). Once per
    /// origin until the bounded memory of asked origins fills.
    UnknownOrigin(PeerId),
    /// An expelled member's signals were forgotten; decisions must stop counting them.
    SignalsWithdrawn { origin: PeerId, count: usize },
}

/// Why [`Swarm::publish`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("cannot sign the signal: {0}")]
    Signal(#[from] SignalError),
    /// `expires_at` is not after `now`, or more than `max_ttl` after `observed_at`.
    #[error("the signal's lifetime is empty or longer than the maximum")]
    Lifetime,
    /// Faster than peers accept: they would drop it.
    #[error("publishing faster than the per-origin rate limit")]
    RateLimited,
    #[error("the live-signal store is full")]
    StoreFull,
}

type Swim = Foca<MemberId, PostcardCodec, StdRng, NoCustomBroadcast>;

/// A foca timer and when it is due; ordered by due time, then by submission.
#[derive(Debug)]
struct Scheduled {
    at: SystemTime,
    order: u64,
    timer: Timer<MemberId>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// The active members, in a vector for O(1) random choice.
#[derive(Debug, Default)]
struct ActiveMembers {
    list: Vec<MemberId>,
    index: HashMap<SocketAddr, usize>,
}

impl ActiveMembers {
    fn up(&mut self, member: MemberId) {
        match self.index.get(&member.addr) {
            Some(&at) => self.list[at] = member,
            None => {
                self.index.insert(member.addr, self.list.len());
                self.list.push(member);
            }
        }
    }

    fn down(&mut self, member: &MemberId) {
        if let Some(&at) = self.index.get(&member.addr)
            && self.list[at] == *member
        {
            self.index.remove(&member.addr);
            self.list.swap_remove(at);
            if let Some(moved) = self.list.get(at) {
                self.index.insert(moved.addr, at);
            }
        }
    }

    /// Whether `before` was active (and so `after` now is).
    fn rename(&mut self, before: &MemberId, after: MemberId) -> bool {
        if let Some(&at) = self.index.get(&before.addr)
            && self.list[at] == *before
        {
            self.list[at] = after;
            return true;
        }
        false
    }
}

/// One member's view of the swarm. See the module documentation.
pub struct Swarm {
    config: SwarmConfig,
    key: SigningKey,
    swim: Swim,
    /// What foca asked for during the last call: sends, timers, notifications.
    runtime: AccumulatingRuntime<MemberId>,
    timers: BinaryHeap<Reverse<Scheduled>>,
    timer_order: u64,
    next_round: SystemTime,
    next_rejoin: SystemTime,
    seeds: Vec<SocketAddr>,
    /// For choices of our own (push targets, anti-entropy partner); foca has its own.
    rng: StdRng,
    active: ActiveMembers,
    admitted: HashSet<PeerId>,
    expelled: HashSet<PeerId>,
    live: LiveSignals,
    /// One token bucket per admitted origin.
    buckets: HashMap<PeerId, TokenBucket>,
    own_bucket: TokenBucket,
    /// Hashes of signals refused lately, and until when not to pull them again.
    refused: HashMap<u64, SystemTime>,
    /// Origins we raised [`Event::UnknownOrigin`] for, so we ask once each.
    asked: HashSet<PeerId>,
    last_seq: u64,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("identity", &self.identity())
            .field("members", &self.active.list.len())
            .field("live_signals", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl Swarm {
    /// A member with `key`, reachable at `addr`, started at `now`.
    pub fn new(config: SwarmConfig, key: SigningKey, addr: SocketAddr, now: SystemTime) -> Swarm {
        let start_second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let identity = MemberId {
            peer: key.peer_id(),
            addr,
            // Seconds since 1970 modulo 2^32: a restart gets a later value than the
            // previous start, which is what foca's conflict rule needs.
            bump: start_second as u32,
        };
        let swim = Foca::new(
            identity,
            swim_config(&config),
            StdRng::seed_from_u64(config.seed ^ 0x5357_494d),
            PostcardCodec,
        );
        let live = LiveSignals::new(config.max_live_signals, config.max_signals_per_origin);
        let own_bucket = TokenBucket::new(config.rate_limit, now);
        Swarm {
            rng: StdRng::seed_from_u64(config.seed),
            key,
            swim,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            timer_order: 0,
            next_round: now + config.interval,
            next_rejoin: now + config.rejoin_interval,
            seeds: Vec::new(),
            active: ActiveMembers::default(),
            admitted: HashSet::new(),
            expelled: HashSet::new(),
            live,
            buckets: HashMap::new(),
            own_bucket,
            refused: HashMap::new(),
            asked: HashSet::new(),
            last_seq: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Who this member is in SWIM (it changes when it rejoins after being declared down).
    pub fn identity(&self) -> MemberId {
        *self.swim.identity()
    }

    pub fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// Joins through `seeds` (addresses; their keys are learnt from their answers), and
    /// keeps announcing to them every `rejoin_interval` while no member is known.
    pub fn join(&mut self, now: SystemTime, seeds: &[SocketAddr]) {
        let own = self.identity().addr;
        self.seeds = seeds.iter().copied().filter(|seed| *seed != own).collect();
        self.announce_to_seeds(now);
    }

    fn announce_to_seeds(&mut self, now: SystemTime) {
        for seed in self.seeds.clone() {
            let placeholder = MemberId {
                peer: PeerId::UNKNOWN,
                addr: seed,
                bump: 0,
            };
            // Errors here are encoding errors of our own identity, which cannot happen
            // with postcard and a fixed-size type; nothing to recover.
            let _ = self.swim.announce(placeholder, &mut self.runtime);
        }
        self.next_rejoin = now + self.config.rejoin_interval;
        self.flush_swim(now);
    }

    /// Leaves the swarm gracefully (members learn it at once instead of by probing).
    pub fn leave(&mut self, now: SystemTime) {
        let _ = self.swim.leave_cluster(&mut self.runtime);
        self.flush_swim(now);
    }

    /// Admission verified `peer`'s membership credential. Returns false if `max_members`
    /// are admitted already.
    pub fn admit(&mut self, peer: PeerId) -> bool {
        if peer.is_unknown() {
            return false;
        }
        if !self.admitted.contains(&peer) && self.admitted.len() >= self.config.max_members {
            return false;
        }
        self.expelled.remove(&peer);
        self.asked.remove(&peer);
        self.admitted.insert(peer);
        true
    }

    /// Admission found `peer`'s credential revoked (or expired): refuse its messages and
    /// signals from now on, forget the signals it made, and stop talking to it.
    pub fn expel(&mut self, now: SystemTime, peer: PeerId) {
        self.admitted.remove(&peer);
        self.buckets.remove(&peer);
        if self.expelled.len() < self.config.max_members {
            self.expelled.insert(peer);
        }
        let count = self.live.remove_origin(&peer);
        self.emit(Event::SignalsWithdrawn {
            origin: peer,
            count,
        });
        let members: Vec<MemberId> = self
            .active
            .list
            .iter()
            .filter(|member| member.peer == peer)
            .copied()
            .collect();
        // Declared down here only: our view of revocation is ours, and the others check
        // the status list themselves.
        let _ = self.swim.apply_many(
            members.into_iter().map(Member::down),
            false,
            &mut self.runtime,
        );
        self.flush_swim(now);
    }

    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        self.admitted.contains(peer)
    }

    /// Signs `body` with the next sequence number, keeps it and pushes it to `fanout`
    /// members. The sequence number is the publishing time in milliseconds (or one more
    /// than the last, if that is later), so it keeps growing across restarts without
    /// being stored.
    pub fn publish(&mut self, now: SystemTime, body: SignalBody) -> Result<Signal, PublishError> {
        if body.expires_at <= now
            || body.expires_at <= body.observed_at
            || body
                .expires_at
                .duration_since(body.observed_at)
                .map_or(true, |ttl| ttl > self.config.max_ttl)
        {
            return Err(PublishError::Lifetime);
        }
        if !self.own_bucket.try_take(self.config.rate_limit, now) {
            return Err(PublishError::RateLimited);
        }
        let millis = signal::to_millis(now)?;
        let seq = millis.max(self.last_seq.saturating_add(1));
        let signal = Signal::sign(&self.key, seq, body)?;
        match self.live.insert(signal.clone()) {
            Insert::Added { evicted } => {
                if evicted.is_some() {
                    self.stats.signals_evicted += 1;
                }
            }
            Insert::Full => return Err(PublishError::StoreFull),
            // A fresh seq from our own key cannot be held or under our floor.
            Insert::Duplicate | Insert::Replayed => return Err(PublishError::StoreFull),
        }
        self.last_seq = seq;
        self.stats.signals_published += 1;
        self.push(&signal, &[]);
        Ok(signal)
    }

    /// Loads signals kept across a restart (from the store). Each is checked again
    /// (signature, expiry, bounds) but not against admission, which has not run yet at
    /// start: they were admitted when received, and [`Swarm::expel`] withdraws them if
    /// their origin has been revoked since. Emits no events. Returns how many were kept.
    pub fn restore(&mut self, now: SystemTime, signals: impl IntoIterator<Item = Signal>) -> usize {
        let mut kept = 0;
        for signal in signals {
            if !signal.is_live(now) || !signal.verify() {
                continue;
            }
            if signal.origin() == self.peer_id() {
                self.last_seq = self.last_seq.max(signal.seq());
            }
            if matches!(self.live.insert(signal), Insert::Added { .. }) {
                kept += 1;
            }
        }
        kept
    }

    /// The live signals, e.g. for the store to persist.
    pub fn live_signals(&self) -> impl Iterator<Item = &Signal> {
        self.live.iter()
    }

    pub fn live_signal_count(&self) -> usize {
        self.live.len()
    }

    /// The members SWIM considers alive (not this one).
    pub fn members(&self) -> &[MemberId] {
        &self.active.list
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts an input the transport dropped before it reached the core (an oversized
    /// stream, a full queue), so that every drop shows under one metric.
    pub fn record_drop(&mut self, reason: DropReason) {
        self.stats.drop(reason);
    }

    /// Bytes that `from` sent, which the transport authenticated as that peer.
    pub fn handle_message(&mut self, now: SystemTime, from: Peer, bytes: &[u8]) {
        self.stats.messages_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if bytes.len() > self.config.max_message_size {
            self.stats.drop(DropReason::TooLarge);
            return;
        }
        if self.expelled.contains(&from.id) {
            self.stats.drop(DropReason::RevokedMember);
            return;
        }
        if !self.admitted.contains(&from.id) {
            self.stats.drop(DropReason::UnknownMember);
            return;
        }
        let message = match wire::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(peer = %from.id, %error, "dropped a malformed message");
                self.stats.drop(DropReason::Malformed);
                return;
            }
        };
        match message {
            Message::Swim(packet) => self.handle_swim(now, from, packet),
            Message::Signals(signals) => {
                for bytes in signals {
                    self.handle_signal(now, from, bytes);
                }
            }
            Message::Digest(digest) => {
                let differing = self.live.digest().differing(&digest);
                if differing != 0 {
                    let start = self.rng.random::<u32>() as usize;
                    let (hashes, complete) =
                        self.live
                            .hashes_in(differing, self.config.max_have_hashes, start);
                    let bytes = wire::encode_have(differing, complete, &hashes);
                    self.send(from.addr, Some(from.id), Channel::Stream, bytes);
                }
            }
            Message::Have {
                buckets,
                complete,
                hashes,
            } => self.handle_have(now, from, buckets, complete, &hashes),
            Message::Pull(hashes) => {
                let signals: Vec<Signal> = hashes
                    .iter()
                    .take(self.config.max_have_hashes)
                    .filter_map(|hash| self.live.get_by_hash(*hash).cloned())
                    .collect();
                self.send_signals(from, &signals);
            }
        }
    }

    fn handle_swim(&mut self, now: SystemTime, from: Peer, packet: &[u8]) {
        // The envelope's two bytes count towards the datagram.
        if packet.len() + 2 > self.config.max_datagram_size {
            self.stats.drop(DropReason::TooLarge);
            return;
        }
        // foca trusts the sender field of the header; we check it against the peer the
        // transport authenticated, so a member cannot speak for another.
        let mut header_bytes = packet;
        match Codec::<MemberId>::decode_header(&mut PostcardCodec, &mut header_bytes) {
            Ok(header) if header.src.peer == from.id => {}
            Ok(_) => {
                self.stats.drop(DropReason::Spoofed);
                return;
            }
            Err(_) => {
                self.stats.drop(DropReason::Malformed);
                return;
            }
        }
        if let Err(error) = self.swim.handle_data(packet, &mut self.runtime) {
            tracing::debug!(peer = %from.id, %error, "SWIM refused a packet");
            self.stats.drop(DropReason::Malformed);
        }
        self.flush_swim(now);
    }

    fn handle_signal(&mut self, now: SystemTime, from: Peer, bytes: &[u8]) {
        if bytes.len() > signal::MAX_SIGNAL_LEN {
            self.stats.drop(DropReason::TooLarge);
            return;
        }
        let signal = match Signal::decode(bytes) {
            Ok(signal) => signal,
            Err(_) => {
                self.stats.drop(DropReason::Malformed);
                return;
            }
        };
        let id = signal.id();
        match self.check_signal(now, from, signal) {
            Ok(signal) => {
                self.stats.signals_received += 1;
                self.push(&signal, &[from.id, id.origin]);
                self.emit(Event::SignalReceived(signal));
            }
            Err(DropReason::Duplicate) => self.stats.drop(DropReason::Duplicate),
            Err(reason) => {
                self.stats.drop(reason);
                // Anti-entropy would offer it again next round; don't pull it for a while.
                self.refuse(now, id.hash64());
            }
        }
    }

    /// Every check a signal must pass, cheap ones first; the signature (tens of µs) only
    /// for what could be kept. Takes the signal in if it passes.
    fn check_signal(
        &mut self,
        now: SystemTime,
        from: Peer,
        signal: Signal,
    ) -> Result<Signal, DropReason> {
        let origin = signal.origin();
        if self.expelled.contains(&origin) {
            return Err(DropReason::RevokedMember);
        }
        if !self.admitted.contains(&origin) && origin != self.peer_id() {
            if self.asked.len() < self.config.max_members && self.asked.insert(origin) {
                self.emit(Event::UnknownOrigin(origin));
            }
            return Err(DropReason::UnknownMember);
        }
        match self.live.check(&signal.id()) {
            Some(Insert::Duplicate) => return Err(DropReason::Duplicate),
            Some(_) => return Err(DropReason::Replayed),
            None => {}
        }
        if !signal.is_live(now) {
            return Err(DropReason::Expired);
        }
        let observed = signal.observed_at();
        let lifetime_ok = signal
            .expires_at()
            .duration_since(observed)
            .is_ok_and(|ttl| ttl <= self.config.max_ttl);
        let from_future = observed
            .duration_since(now)
            .is_ok_and(|ahead| ahead > self.config.max_clock_skew);
        if !lifetime_ok || from_future {
            return Err(DropReason::Malformed);
        }
        if origin == self.peer_id() {
            // Our own signal coming back, and we no longer hold it (restarted without
            // the store). Keep the sequence moving past it; there is nothing to report.
            self.last_seq = self.last_seq.max(signal.seq());
            return Err(DropReason::Duplicate);
        }
        // An origin out of tokens is refused without paying for its signature; but a
        // token is only spent once the signature verifies, so that forgeries cannot
        // exhaust an honest member's rate.
        let limit = self.config.rate_limit;
        let bucket = self
            .buckets
            .entry(origin)
            .or_insert_with(|| TokenBucket::new(limit, now));
        if !bucket.has_token(limit, now) {
            return Err(DropReason::RateLimited);
        }
        if !signal.verify() {
            tracing::debug!(peer = %from.id, %origin, "dropped a signal with a bad signature");
            return Err(DropReason::BadSignature);
        }
        if !bucket.try_take(limit, now) {
            return Err(DropReason::RateLimited);
        }
        match self.live.insert(signal.clone()) {
            Insert::Added { evicted } => {
                if evicted.is_some() {
                    self.stats.signals_evicted += 1;
                }
                Ok(signal)
            }
            Insert::Full => Err(DropReason::StoreFull),
            Insert::Duplicate => Err(DropReason::Duplicate),
            Insert::Replayed => Err(DropReason::Replayed),
        }
    }

    /// Remembers that the signal with `hash` was refused, so that anti-entropy does not
    /// pull it again before `retry_refused_after`. Bounded: when the memory is full of
    /// current entries, the signal may simply be pulled (and refused) again.
    fn refuse(&mut self, now: SystemTime, hash: u64) {
        let limit = self.config.max_have_hashes.saturating_mul(8).max(1);
        if self.refused.len() >= limit {
            self.refused.retain(|_, until| *until > now);
        }
        if self.refused.len() < limit {
            self.refused
                .insert(hash, now + self.config.retry_refused_after);
        }
    }

    fn handle_have(
        &mut self,
        now: SystemTime,
        from: Peer,
        buckets: u32,
        complete: bool,
        hashes: &[u64],
    ) {
        let wanted: Vec<u64> = hashes
            .iter()
            .take(self.config.max_have_hashes)
            .copied()
            .filter(|hash| !self.live.contains_hash(*hash))
            .filter(|hash| self.refused.get(hash).is_none_or(|until| *until <= now))
            .collect();
        if !wanted.is_empty() {
            let bytes = wire::encode_pull(&wanted);
            self.send(from.addr, Some(from.id), Channel::Stream, bytes);
        }
        if complete {
            // They listed all they hold in those buckets: whatever else we hold there,
            // they lack.
            let theirs: HashSet<u64> = hashes.iter().copied().collect();
            let start = self.rng.random::<u32>() as usize;
            let (ours, _) = self
                .live
                .hashes_in(buckets, self.config.max_have_hashes, start);
            let missing: Vec<Signal> = ours
                .into_iter()
                .filter(|hash| !theirs.contains(hash))
                .filter_map(|hash| self.live.get_by_hash(hash).cloned())
                .collect();
            self.send_signals(from, &missing);
        }
    }

    /// When the core next wants [`Swarm::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let timer = self.timers.peek().map(|Reverse(next)| next.at);
        Some(timer.map_or(self.next_round, |at| at.min(self.next_round)))
    }

    pub fn handle_timeout(&mut self, now: SystemTime) {
        while let Some(Reverse(next)) = self.timers.peek() {
            if next.at > now {
                break;
            }
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            // A timer error is foca refusing a stale timer; it reschedules what it needs.
            let _ = self.swim.handle_timer(due.timer, &mut self.runtime);
            self.flush_swim(now);
        }
        if now >= self.next_round {
            self.round(now);
            self.next_round = (self.next_round + self.config.interval).max(now);
            if self.next_round <= now {
                self.next_round = now + self.config.interval;
            }
        }
    }

    /// One gossip round: forget what expired, exchange digests with one random member,
    /// and knock on the seeds again if we are alone.
    fn round(&mut self, now: SystemTime) {
        self.stats.signals_expired += self.live.expire(now) as u64;
        if let Some(partner) = self.choose(1, &[]).into_iter().next() {
            let bytes = wire::encode_digest(self.live.digest());
            self.send(partner.addr, Some(partner.peer), Channel::Stream, bytes);
        }
        if self.active.list.is_empty() && !self.seeds.is_empty() && now >= self.next_rejoin {
            self.announce_to_seeds(now);
        }
    }

    /// Up to `count` random active, admitted members, none of whose key is in `exclude`.
    fn choose(&mut self, count: usize, exclude: &[PeerId]) -> Vec<MemberId> {
        let len = self.active.list.len();
        if len == 0 || count == 0 {
            return Vec::new();
        }
        let want = (count + exclude.len()).min(len);
        let picks = rand::seq::index::sample(&mut self.rng, len, want);
        picks
            .into_iter()
            .map(|at| self.active.list[at])
            .filter(|member| {
                !exclude.contains(&member.peer) && self.admitted.contains(&member.peer)
            })
            .take(count)
            .collect()
    }

    fn push(&mut self, signal: &Signal, exclude: &[PeerId]) {
        for member in self.choose(self.config.fanout, exclude) {
            let peer = Peer {
                id: member.peer,
                addr: member.addr,
            };
            self.send_signals(peer, std::slice::from_ref(signal));
        }
    }

    fn send_signals(&mut self, to: Peer, signals: &[Signal]) {
        let messages = wire::encode_signals(
            signals.iter().map(Signal::as_bytes),
            self.config.max_message_size,
        );
        for bytes in messages {
            self.send(to.addr, Some(to.id), Channel::Stream, bytes);
        }
    }

    fn send(&mut self, to: SocketAddr, peer: Option<PeerId>, channel: Channel, bytes: Vec<u8>) {
        if peer.is_some_and(|peer| self.expelled.contains(&peer)) {
            return;
        }
        if self.outbox.len() >= self.config.max_outbox {
            self.stats.drop(DropReason::OutboxFull);
            return;
        }
        self.stats.messages_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.outbox.push_back(Transmit {
            to,
            peer,
            channel,
            bytes,
        });
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.drop(DropReason::EventsFull);
            return;
        }
        self.events.push_back(event);
    }

    /// Turns what foca asked for into transmits, timers, member-list changes and events.
    fn flush_swim(&mut self, now: SystemTime) {
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_order += 1;
            self.timers.push(Reverse(Scheduled {
                at: now + after,
                order: self.timer_order,
                timer,
            }));
        }
        while let Some((to, packet)) = self.runtime.to_send() {
            let peer = if !to.peer.is_unknown() {
                Some(to.peer)
            } else if self.seeds.contains(&to.addr) {
                None
            } else {
                // A keyless identity that is not a seed of ours came from gossip: a
                // member trying to make us send to an address of its choosing.
                continue;
            };
            self.send(to.addr, peer, Channel::Datagram, wire::encode_swim(&packet));
        }
        let mut down_again = Vec::new();
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                // An expelled member, rejoining under a new incarnation through members
                // that have not expelled it (yet): it stays down here.
                OwnedNotification::MemberUp(member) if self.expelled.contains(&member.peer) => {
                    down_again.push(member);
                }
                OwnedNotification::MemberUp(member) => {
                    self.active.up(member);
                    self.emit(Event::MemberUp(member));
                }
                OwnedNotification::MemberDown(member) => {
                    self.active.down(&member);
                    self.emit(Event::MemberDown(member));
                }
                // A member restarted before anyone noticed it was gone: foca reports no
                // liveness change, but the transport must learn the new incarnation.
                OwnedNotification::Rename(before, after) if self.active.rename(&before, after) => {
                    self.emit(Event::MemberUp(after));
                }
                OwnedNotification::Active => self.emit(Event::Joined(self.identity())),
                OwnedNotification::Rejoin(identity) => self.emit(Event::Joined(identity)),
                OwnedNotification::Idle => self.emit(Event::Isolated),
                OwnedNotification::ProbeFailed(_, member) => {
                    self.stats.suspicions += 1;
                    self.emit(Event::MemberSuspect(member));
                }
                // Defunct cannot happen: our identity renews itself. Data notifications
                // are not interesting here.
                _ => {}
            }
        }
        if !down_again.is_empty() {
            let _ = self.swim.apply_many(
                down_again.into_iter().map(Member::down),
                false,
                &mut self.runtime,
            );
            self.flush_swim(now);
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// foca's settings from ours: memberlist's LAN profile sized for `expected_members`,
/// with our round and fanout for its periodic gossip.
fn swim_config(config: &SwarmConfig) -> foca::Config {
    let size = NonZeroU32::new(config.expected_members.max(1)).unwrap_or(NonZeroU32::MIN);
    let mut swim = foca::Config::new_lan(size);
    swim.num_indirect_probes =
        NonZeroUsize::new(config.indirect_probes.max(1)).unwrap_or(NonZeroUsize::MIN);
    swim.periodic_gossip = Some(foca::PeriodicParams {
        frequency: config.interval,
        num_members: NonZeroUsize::new(config.fanout.max(1)).unwrap_or(NonZeroUsize::MIN),
    });
    swim.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: config.announce_to_down_every,
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    // Two bytes of envelope go around each SWIM packet.
    swim.max_packet_size = NonZeroUsize::new(config.max_datagram_size.saturating_sub(2).max(512))
        .unwrap_or(NonZeroUsize::MIN);
    swim
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;
    use crate::swarm::signal::Reason;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
    }

    fn signal(key: &SigningKey, seq: u64, now: SystemTime) -> Signal {
        let body = SignalBody {
            subject: "203.0.113.5".parse().unwrap(),
            reason: Reason {
                rule: "r".to_owned(),
                class: String::new(),
            },
            severity: Severity::Low,
            observed_at: now,
            expires_at: now + Duration::from_secs(600),
        };
        Signal::sign(key, seq, body).unwrap()
    }

    fn pulls(swarm: &mut Swarm) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        while let Some(transmit) = swarm.poll_transmit() {
            if let Ok(Message::Pull(hashes)) = wire::decode(&transmit.bytes) {
                out.push(hashes);
            }
        }
        out
    }

    #[test]
    fn refused_signals_are_not_pulled_again_until_the_retry_delay() {
        let config = SwarmConfig {
            rate_limit: RateLimit {
                per_second: 0.001,
                burst: 1,
            },
            ..SwarmConfig::default()
        };
        let member = SigningKey::from_seed(&[2; 32]).unwrap();
        let peer = Peer {
            id: member.peer_id(),
            addr: "127.0.0.1:7301".parse().unwrap(),
        };
        let mut swarm = Swarm::new(
            config,
            SigningKey::from_seed(&[1; 32]).unwrap(),
            "127.0.0.1:7300".parse().unwrap(),
            at(0),
        );
        swarm.admit(member.peer_id());
        let first = signal(&member, 1, at(0));
        let second = signal(&member, 2, at(0));
        let batch = wire::signals_message([first.as_bytes(), second.as_bytes()]);
        swarm.handle_message(at(0), peer, &batch);
        assert_eq!(swarm.stats().dropped(DropReason::RateLimited), 1);
        let offer = wire::encode_have(u32::MAX, false, &[second.id().hash64()]);
        pulls(&mut swarm);
        swarm.handle_message(at(1), peer, &offer);
        assert!(
            pulls(&mut swarm).is_empty(),
            "pulled a refused signal at once"
        );
        swarm.handle_message(at(6), peer, &offer);
        assert_eq!(pulls(&mut swarm), vec![vec![second.id().hash64()]]);
    }

    #[test]
    fn digests_are_answered_with_what_differs_and_pulls_with_signals() {
        let member = SigningKey::from_seed(&[2; 32]).unwrap();
        let peer = Peer {
            id: member.peer_id(),
            addr: "127.0.0.1:7301".parse().unwrap(),
        };
        let mut swarm = Swarm::new(
            SwarmConfig::default(),
            SigningKey::from_seed(&[1; 32]).unwrap(),
            "127.0.0.1:7300".parse().unwrap(),
            at(0),
        );
        swarm.admit(member.peer_id());
        let held = signal(&member, 1, at(0));
        swarm.handle_message(at(0), peer, &wire::signals_message([held.as_bytes()]));
        while swarm.poll_transmit().is_some() {}
        // An empty digest: we answer with the one hash we hold, listed completely.
        swarm.handle_message(at(1), peer, &wire::encode_digest(&wire::Digest::default()));
        let have = swarm.poll_transmit().unwrap();
        assert_eq!(have.peer, Some(member.peer_id()));
        let Ok(Message::Have {
            complete, hashes, ..
        }) = wire::decode(&have.bytes)
        else {
            panic!("not a have")
        };
        assert!(complete);
        assert_eq!(hashes, vec![held.id().hash64()]);
        swarm.handle_message(at(1), peer, &wire::encode_pull(&hashes));
        let answer = swarm.poll_transmit().unwrap();
        assert_eq!(
            wire::decode(&answer.bytes),
            Ok(Message::Signals(vec![held.as_bytes()]))
        );
    }
}
