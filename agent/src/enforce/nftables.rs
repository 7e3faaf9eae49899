//! The nftables backend: the table `inet swarmguard`, kept in step with the decisions.
//!
//! ```text
//! table inet swarmguard {
//!     set v4_addrs { type ipv4_addr; flags timeout; }
//!     set v4_nets  { type ipv4_addr; flags interval,timeout; }
//!     set v6_addrs { type ipv6_addr; flags timeout; }
//!     set v6_nets  { type ipv6_addr; flags interval,timeout; }
//!     chain input   { type filter hook input priority -10; policy accept;
//!                     ip saddr @v4_addrs counter drop
//!                     ip saddr @v4_nets counter drop
//!                     ip6 saddr @v6_addrs counter drop
//!                     ip6 saddr @v6_nets counter drop }
//!     chain forward { ... the same, when `enforce.forward` is on ... }
//! }
//! ```
//!
//! Single addresses and networks live in separate sets per family. Networks need an interval
//! set, but nft checks every batch added to an interval set against all of its elements:
//! measured here, a batch of 10,000 took 0.4 s on an empty interval set and 8.8 s once it
//! held 90,000, while a plain (hash) set stayed at 0.3 s. Addresses are nearly all decisions,
//! so they go to the hash sets, and the interval sets hold the (few) networks.
//!
//! The backend keeps a model of the set contents (addresses, and for networks the disjoint
//! pieces of [`super::pieces`], each with its `until`), so that a batch becomes the
//! difference between two models, sent as one `nft -j -f -` transaction. Elements carry a
//! kernel timeout and expire by themselves.
//!
//! Removing an element that the kernel has already expired would fail the whole
//! transaction ("No such file or directory"). So an element that lapses within [`LAPSING`]
//! is not deleted but left to expire, unless a new network overlaps it (then it must go
//! now). The `add`-then-`delete` idiom that would tolerate a missing element cannot be used:
//! the kernel then still counts the element when checking new ones for overlaps. If a batch
//! fails anyway (someone edited the table by hand), the backend re-reads the table and
//! reconciles once before giving up.
//!
//! `nft` is run by this module rather than through the `nftables` crate's helpers: those
//! leave `nft`'s stderr unread (the reason for a failure would be lost) and put `-j` right
//! after the program name, which breaks a command prefix such as `ip netns exec NS nft`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use nftables::expr::{Elem, Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{
    Chain, Element, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag, SetType,
    SetTypeValue, Table,
};
use nftables::stmt::{AnonymousCounter, Counter, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::Value;

use super::{Applied, Backend, Change, EnforceError, EnforceMetrics, blocked_net, pieces};
use crate::api::Metrics;
use crate::decide::Decision;

/// The table's name (family `inet`).
pub const TABLE: &str = "swarmguard";
/// `(name, type, interval)` of the four sets.
const SETS: [(&str, SetType, bool); 4] = [
    ("v4_addrs", SetType::Ipv4Addr, false),
    ("v4_nets", SetType::Ipv4Addr, true),
    ("v6_addrs", SetType::Ipv6Addr, false),
    ("v6_nets", SetType::Ipv6Addr, true),
];
/// Ahead of the usual `filter` priority (0), so that the block applies before other
/// chains' accepts are even evaluated.
const PRIORITY: i32 = -10;
/// How much earlier than its decision's `until` a kernel element may expire and still count
/// as the same: the kernel reports whole seconds, and a listing takes a moment.
const EARLY: Duration = Duration::from_secs(2);
/// How much later: the kernel starts an element's timeout when the transaction is applied,
/// which for a large reconcile is seconds after the timeout was computed. A block that
/// lasts a little longer than decided is left alone; one that would end early is not.
const LATE: Duration = Duration::from_secs(60);
/// An element this close to its expiry may be gone by the time a transaction reaches the
/// kernel; it is left to lapse rather than deleted (see the module documentation).
const LAPSING: Duration = Duration::from_secs(3);

/// How `nft` is invoked: the program and the arguments before nft's own, e.g. `["nft"]`,
/// or `["ip", "netns", "exec", "lab", "nft"]` to act on another network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftCommand {
    argv: Vec<String>,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand {
            argv: vec!["nft".to_owned()],
        }
    }
}

impl NftCommand {
    /// `None` when `argv` is empty.
    pub fn new(argv: Vec<String>) -> Option<NftCommand> {
        (!argv.is_empty()).then_some(NftCommand { argv })
    }

    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Runs nft with `args`, feeding it `input`; returns its stdout.
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String, EnforceError> {
        let shown = || format!("{} {}", self.argv.join(" "), args.join(" "));
        let (program, prefix) = self
            .argv
            .split_first()
            .expect("NftCommand::new refuses an empty argv");
        let mut child = Command::new(program)
            .args(prefix)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| EnforceError::Spawn {
                program: program.clone(),
                source,
            })?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A write error means nft exited early; its status and stderr say why.
            let _ = stdin.write_all(input.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|source| EnforceError::Spawn {
                program: program.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(EnforceError::Nft {
                command: shown(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The nftables backend's settings (`[enforce]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftConfig {
    pub command: NftCommand,
    /// Also drop blocked sources in the forward hook (routers, hosts with containers).
    pub forward: bool,
}

/// The nftables backend; see the module documentation.
#[derive(Debug)]
pub struct NftBackend {
    config: NftConfig,
    /// What the decisions block: each network and until when.
    desired: BTreeMap<IpNet, SystemTime>,
    /// What the sets hold, as far as this backend knows: disjoint pieces and their until.
    kernel: BTreeMap<IpNet, SystemTime>,
    /// Whether the table is known to be in place.
    loaded: bool,
    metrics: EnforceMetrics,
}

impl NftBackend {
    pub fn new(config: NftConfig, metrics: &Metrics) -> NftBackend {
        let metrics = EnforceMetrics::new(metrics);
        metrics.loaded.with_label_values(&["nftables"]).set(0);
        NftBackend {
            config,
            desired: BTreeMap::new(),
            kernel: BTreeMap::new(),
            loaded: false,
            metrics,
        }
    }

    /// The table as `nft -j list table inet swarmguard` prints it (`None` when absent).
    pub fn list_table(&self) -> Result<Option<String>, EnforceError> {
        let listed = self
            .config
            .command
            .run(&["-j", "list", "table", "inet", TABLE], None);
        self.metrics.operations.with_label_values(&["list"]).inc();
        match listed {
            Ok(text) => Ok(Some(text)),
            Err(EnforceError::Nft { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(err) => {
                self.metrics.errors.with_label_values(&["list"]).inc();
                Err(err)
            }
        }
    }

    /// Reads the table and brings it to `desired` (see [`Backend::reconcile`]).
    fn sync(&mut self, now: SystemTime) -> Result<Applied, EnforceError> {
        self.desired.retain(|_, until| *until > now);
        let target = target(&self.desired);
        let listing = self.list_table()?;
        // The kernel reports the seconds each element has left as of the listing, which can
        // take a while for a big table: count from when it ended, not from `now`.
        let listed_at = now.max(SystemTime::now());
        let mut commands = Vec::new();
        let mut applied = Applied::default();
        match listing.as_deref().map(Listing::parse) {
            Some(Some(listing)) if listing.structure == self.structure() => {
                let current: BTreeMap<IpNet, SystemTime> = listing
                    .elements
                    .iter()
                    .map(|(net, expires)| (*net, expires.map_or(far_future(), |e| listed_at + e)))
                    .collect();
                let removed: Vec<(IpNet, SystemTime)> = current
                    .iter()
                    .filter(|(net, _)| !target.contains_key(net))
                    .map(|(net, until)| (*net, *until))
                    .collect();
                let mut added = Vec::new();
                for (net, until) in &target {
                    match current.get(net) {
                        None => {
                            applied.added += 1;
                            added.push((*net, *until));
                        }
                        Some(now_until) if !close(*now_until, *until) => {
                            applied.updated += 1;
                            added.push((*net, *until));
                        }
                        Some(_) => {}
                    }
                }
                applied.removed = removed.len();
                push_removals(&mut commands, &removed, &target, now);
                push_additions(&mut commands, &added, now);
            }
            existing => {
                if existing.is_some() {
                    tracing::warn!(
                        table = TABLE,
                        "the nftables table is not as this agent makes it; recreating it"
                    );
                    // `add` first, so that the `delete` cannot fail.
                    commands.push(NfObject::CmdObject(NfCmd::Add(
                        NfListObject::Table(table()),
                    )));
                    commands.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
                        table(),
                    ))));
                }
                commands.extend(self.structure_commands());
                let added: Vec<(IpNet, SystemTime)> =
                    target.iter().map(|(n, u)| (*n, *u)).collect();
                applied.added = added.len();
                push_additions(&mut commands, &added, now);
            }
        }
        if !commands.is_empty() {
            self.transact("reconcile", commands)?;
        }
        self.kernel = target;
        self.set_loaded(true);
        Ok(applied)
    }

    /// Sends `commands` as one transaction.
    fn transact(&self, op: &str, commands: Vec<NfObject<'_>>) -> Result<(), EnforceError> {
        let document = Nftables {
            objects: commands.into(),
        };
        let json = serde_json::to_string(&document).map_err(|err| EnforceError::Output {
            command: "nft -j -f -".to_owned(),
            reason: err.to_string(),
        })?;
        self.metrics.operations.with_label_values(&[op]).inc();
        self.config
            .command
            .run(&["-j", "-f", "-"], Some(&json))
            .map(drop)
            .inspect_err(|_| self.metrics.errors.with_label_values(&[op]).inc())
    }

    fn set_loaded(&mut self, loaded: bool) {
        self.loaded = loaded;
        self.metrics
            .loaded
            .with_label_values(&["nftables"])
            .set(loaded.into());
        self.metrics.set_elements("nftables", self.kernel.keys());
    }

    fn failed(&mut self, what: &str, err: &EnforceError) {
        self.set_loaded(false);
        tracing::error!(
            backend = "nftables",
            error = %err,
            "{what} failed: the kernel may not block what the decisions say; detection \
             goes on, and the next batch tries again"
        );
    }

    fn chains(&self) -> Vec<(&'static str, NfHook)> {
        let mut chains = vec![("input", NfHook::Input)];
        if self.config.forward {
            chains.push(("forward", NfHook::Forward));
        }
        chains
    }

    /// What a correct table contains, apart from set elements, in [`Listing`]'s terms.
    fn structure(&self) -> Structure {
        let mut structure = Structure::default();
        for (name, set_type, interval) in SETS {
            let set_type = if set_type == SetType::Ipv4Addr {
                "ipv4_addr"
            } else {
                "ipv6_addr"
            };
            let flags = if interval {
                "interval,timeout"
            } else {
                "timeout"
            };
            structure
                .sets
                .push((name.to_owned(), set_type.to_owned(), flags.to_owned()));
        }
        for (chain, hook) in self.chains() {
            structure
                .chains
                .push((chain.to_owned(), hook_name(hook).to_owned()));
            for (_, _, comment) in DROP_RULES {
                structure.rules.push((chain.to_owned(), comment.to_owned()));
            }
        }
        structure.sort();
        structure
    }

    /// The commands that create the table, sets, chains and rules (on an absent table).
    fn structure_commands(&self) -> Vec<NfObject<'static>> {
        let add = |object| NfObject::CmdObject(NfCmd::Add(object));
        let mut commands = vec![add(NfListObject::Table(table()))];
        for (name, set_type, interval) in SETS {
            let flags = if interval {
                HashSet::from([SetFlag::Interval, SetFlag::Timeout])
            } else {
                HashSet::from([SetFlag::Timeout])
            };
            commands.push(add(NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: name.into(),
                set_type: SetTypeValue::Single(set_type),
                flags: Some(flags),
                ..Set::default()
            }))));
        }
        for (chain, hook) in self.chains() {
            commands.push(add(NfListObject::Chain(Chain {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: chain.into(),
                _type: Some(NfChainType::Filter),
                hook: Some(hook),
                prio: Some(PRIORITY),
                policy: Some(NfChainPolicy::Accept),
                ..Chain::default()
            })));
            for (protocol, set, comment) in DROP_RULES {
                commands.push(add(NfListObject::Rule(Rule {
                    family: NfFamily::INet,
                    table: TABLE.into(),
                    chain: chain.into(),
                    expr: vec![
                        Statement::Match(Match {
                            left: Expression::Named(NamedExpression::Payload(
                                Payload::PayloadField(PayloadField {
                                    protocol: protocol.into(),
                                    field: "saddr".into(),
                                }),
                            )),
                            right: Expression::String(format!("@{set}").into()),
                            op: Operator::EQ,
                        }),
                        Statement::Counter(Counter::Anonymous(Some(AnonymousCounter::default()))),
                        Statement::Drop(None),
                    ]
                    .into(),
                    comment: Some(comment.into()),
                    ..Rule::default()
                })));
            }
        }
        commands
    }
}

/// `(protocol, set, comment)` of the drop rules in each chain. The comment identifies the
/// rule when the table is read back.
const DROP_RULES: [(&str, &str, &str); 4] = [
    ("ip", "v4_addrs", "swarmguard: drop blocked IPv4 addresses"),
    ("ip", "v4_nets", "swarmguard: drop blocked IPv4 networks"),
    ("ip6", "v6_addrs", "swarmguard: drop blocked IPv6 addresses"),
    ("ip6", "v6_nets", "swarmguard: drop blocked IPv6 networks"),
];

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn reconcile(&mut self, active: &[Decision], now: SystemTime) -> Result<Applied, EnforceError> {
        self.desired.clear();
        let mut skipped = 0;
        for decision in active {
            match Change::for_decision(decision)
                .as_ref()
                .and_then(|c| blocked_net(c.subject()))
            {
                Some(net) => {
                    let until = self.desired.entry(net).or_insert(decision.until);
                    *until = (*until).max(decision.until);
                }
                None => skipped += 1,
            }
        }
        match self.sync(now) {
            Ok(applied) => {
                tracing::info!(
                    added = applied.added,
                    updated = applied.updated,
                    removed = applied.removed,
                    elements = self.kernel.len(),
                    "nftables table reconciled"
                );
                Ok(Applied { skipped, ..applied })
            }
            Err(err) => {
                self.failed("loading the nftables table", &err);
                Err(err)
            }
        }
    }

    fn apply(&mut self, changes: &[Change], now: SystemTime) -> Result<Applied, EnforceError> {
        let mut skipped = 0;
        for change in changes {
            let Some(net) = blocked_net(change.subject()) else {
                skipped += 1;
                continue;
            };
            match change {
                Change::Block { until, .. } => {
                    self.desired.insert(net, *until);
                }
                Change::Unblock { .. } => {
                    self.desired.remove(&net);
                }
            }
        }
        self.metrics.count_changes("nftables", changes);
        let result = if self.loaded {
            self.apply_difference(now).or_else(|err| {
                tracing::warn!(error = %err, "nftables batch failed; re-reading the table");
                self.sync(now)
            })
        } else {
            self.sync(now)
        };
        match result {
            Ok(applied) => {
                self.set_loaded(true);
                Ok(Applied { skipped, ..applied })
            }
            Err(err) => {
                self.failed("applying a batch of decisions", &err);
                Err(err)
            }
        }
    }

    fn cleanup(&mut self) -> Result<(), EnforceError> {
        // `add` first, so that deleting an absent table is not an error.
        let commands = vec![
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table()))),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table()))),
        ];
        self.transact("cleanup", commands)?;
        self.kernel.clear();
        self.set_loaded(false);
        Ok(())
    }
}

impl NftBackend {
    /// Sends the difference between the kernel model and the desired pieces.
    fn apply_difference(&mut self, now: SystemTime) -> Result<Applied, EnforceError> {
        self.desired.retain(|_, until| *until > now);
        // Lapsed pieces are gone from the kernel by their own timeout.
        self.kernel.retain(|_, until| *until > now);
        let target = target(&self.desired);
        let removed: Vec<(IpNet, SystemTime)> = self
            .kernel
            .iter()
            .filter(|(net, _)| !target.contains_key(net))
            .map(|(net, until)| (*net, *until))
            .collect();
        let mut applied = Applied {
            removed: removed.len(),
            ..Applied::default()
        };
        let mut added = Vec::new();
        for (net, until) in &target {
            match self.kernel.get(net) {
                None => applied.added += 1,
                Some(old) if old != until => applied.updated += 1,
                Some(_) => continue,
            }
            added.push((*net, *until));
        }
        let mut commands = Vec::new();
        push_removals(&mut commands, &removed, &target, now);
        push_additions(&mut commands, &added, now);
        if !commands.is_empty() {
            self.transact("apply", commands)?;
        }
        self.kernel = target;
        Ok(applied)
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn hook_name(hook: NfHook) -> &'static str {
    match hook {
        NfHook::Forward => "forward",
        _ => "input",
    }
}

/// Whether `net` is a single address (it goes to an address set).
fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

fn set_of(net: &IpNet) -> &'static str {
    match (net, is_host(net)) {
        (IpNet::V4(_), true) => "v4_addrs",
        (IpNet::V4(_), false) => "v4_nets",
        (IpNet::V6(_), true) => "v6_addrs",
        (IpNet::V6(_), false) => "v6_nets",
    }
}

/// What the sets must hold for `desired`: every address as it is, and the networks cut
/// into disjoint pieces (addresses and networks are in different sets, so they may
/// overlap each other).
fn target(desired: &BTreeMap<IpNet, SystemTime>) -> BTreeMap<IpNet, SystemTime> {
    let nets: BTreeMap<IpNet, SystemTime> = desired
        .iter()
        .filter(|(net, _)| !is_host(net))
        .map(|(net, until)| (*net, *until))
        .collect();
    let mut target = pieces::disjoint(&nets);
    for (host, until) in desired.iter().filter(|(net, _)| is_host(net)) {
        let entry = target.entry(*host).or_insert(*until);
        *entry = (*entry).max(*until);
    }
    target
}

/// The element value: a bare address for a host, a prefix otherwise.
fn element_value(net: &IpNet) -> Expression<'static> {
    let addr = Expression::String(net.addr().to_string().into());
    if net.prefix_len() == net.max_prefix_len() {
        addr
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr),
            len: net.prefix_len().into(),
        }))
    }
}

fn element(net: &IpNet, timeout: Option<u32>) -> Expression<'static> {
    Expression::Named(NamedExpression::Elem(Elem {
        val: Box::new(element_value(net)),
        timeout,
        ..Elem::default()
    }))
}

/// One `add element` (or `delete element`) command per set, for the nets of that set.
fn push_elements(
    commands: &mut Vec<NfObject<'static>>,
    items: impl Iterator<Item = (IpNet, Option<u32>)>,
    delete: bool,
) {
    let mut by_set: BTreeMap<&'static str, Vec<Expression<'static>>> = BTreeMap::new();
    for (net, timeout) in items {
        by_set.entry(set_of(&net)).or_default().push(if delete {
            element_value(&net)
        } else {
            element(&net, timeout)
        });
    }
    for (set, elem) in by_set {
        let object = NfListObject::Element(Element {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: set.into(),
            elem: elem.into(),
        });
        commands.push(NfObject::CmdObject(if delete {
            NfCmd::Delete(object)
        } else {
            NfCmd::Add(object)
        }));
    }
}

/// Deletes the `removed` elements, except those about to lapse by themselves that no
/// element of `target` overlaps (deleting them could fail the transaction).
fn push_removals(
    commands: &mut Vec<NfObject<'static>>,
    removed: &[(IpNet, SystemTime)],
    target: &BTreeMap<IpNet, SystemTime>,
    now: SystemTime,
) {
    let deleted = removed
        .iter()
        .filter(|(net, until)| {
            *until > now + LAPSING || (!is_host(net) && overlaps_any(net, target))
        })
        .map(|(net, _)| (*net, None));
    push_elements(commands, deleted, true);
}

/// Whether any network (not address: those are in other sets) in `nets` overlaps `net`:
/// contains it, or lies inside it.
fn overlaps_any(net: &IpNet, nets: &BTreeMap<IpNet, SystemTime>) -> bool {
    // Inside it: every network whose address lies in `net`'s range.
    let low = IpNet::new(net.network(), 0).unwrap_or(*net);
    let high = IpNet::new(net.broadcast(), net.max_prefix_len()).unwrap_or(*net);
    if nets.range(low..=high).any(|(inner, _)| !is_host(inner)) {
        return true;
    }
    // Around it: its supernets, at most 128 lookups.
    let mut around = net.supernet();
    while let Some(supernet) = around {
        if nets.contains_key(&supernet) {
            return true;
        }
        around = supernet.supernet();
    }
    false
}

fn push_additions(
    commands: &mut Vec<NfObject<'static>>,
    added: &[(IpNet, SystemTime)],
    now: SystemTime,
) {
    push_elements(
        commands,
        added
            .iter()
            .map(|(net, until)| (*net, Some(timeout_secs(*until, now)))),
        false,
    );
}

/// The kernel timeout for `until`: whole seconds, rounded up so that the kernel never lifts
/// a block early, at least 1.
fn timeout_secs(until: SystemTime, now: SystemTime) -> u32 {
    let left = until.duration_since(now).unwrap_or(Duration::ZERO);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs.clamp(1, u64::from(u32::MAX)) as u32
}

/// Whether a kernel element expiring at `kernel` carries out a decision until `until`.
fn close(kernel: SystemTime, until: SystemTime) -> bool {
    kernel + EARLY >= until && kernel <= until + LATE
}

/// An element without a timeout never lapses; it compares as far beyond any decision.
fn far_future() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 8)
}

/// The parts of a table listing that must match for the table to be kept as it is.
#[derive(Debug, Default, PartialEq, Eq)]
struct Structure {
    /// `(name, type, flags)` of sets, flags sorted and joined with commas.
    sets: Vec<(String, String, String)>,
    /// `(name, hook)` of filter base chains at this backend's priority, policy accept.
    chains: Vec<(String, String)>,
    /// `(chain, comment)` of rules.
    rules: Vec<(String, String)>,
}

impl Structure {
    fn sort(&mut self) {
        self.sets.sort();
        self.chains.sort();
        self.rules.sort();
    }
}

/// A parsed `nft -j list table`.
#[derive(Debug, Default)]
struct Listing {
    structure: Structure,
    /// Elements and the time they have left (`None`: no timeout).
    elements: Vec<(IpNet, Option<Duration>)>,
}

impl Listing {
    /// `None` when the table holds something this backend does not make (a range, a set of
    /// another type, unknown objects): then it is rebuilt.
    fn parse(text: &str) -> Option<Listing> {
        let document: Value = serde_json::from_str(text).ok()?;
        let mut listing = Listing::default();
        for object in document.get("nftables")?.as_array()? {
            let object = object.as_object()?;
            let (kind, body) = object.iter().next()?;
            match kind.as_str() {
                "metainfo" | "table" => {}
                "set" => {
                    let name = body.get("name")?.as_str()?;
                    let set_type = body.get("type")?.as_str()?;
                    let mut flags: Vec<&str> = body
                        .get("flags")?
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    flags.sort_unstable();
                    listing.structure.sets.push((
                        name.to_owned(),
                        set_type.to_owned(),
                        flags.join(","),
                    ));
                    for elem in body
                        .get("elem")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        listing.elements.push(parse_element(elem)?);
                    }
                }
                "chain" => {
                    let ok = body.get("type")?.as_str()? == "filter"
                        && body.get("prio")?.as_i64()? == i64::from(PRIORITY)
                        && body.get("policy")?.as_str()? == "accept";
                    if !ok {
                        return None;
                    }
                    listing.structure.chains.push((
                        body.get("name")?.as_str()?.to_owned(),
                        body.get("hook")?.as_str()?.to_owned(),
                    ));
                }
                "rule" => listing.structure.rules.push((
                    body.get("chain")?.as_str()?.to_owned(),
                    body.get("comment")?.as_str()?.to_owned(),
                )),
                _ => return None,
            }
        }
        listing.structure.sort();
        Some(listing)
    }
}

/// One set element: `"10.0.0.5"`, `{"prefix": …}`, or either inside `{"elem": {"val": …,
/// "expires": …}}`.
fn parse_element(value: &Value) -> Option<(IpNet, Option<Duration>)> {
    if let Some(elem) = value.get("elem") {
        let net = parse_value(elem.get("val")?)?;
        let expires = match elem.get("expires") {
            Some(expires) => Some(Duration::try_from_secs_f64(expires.as_f64()?).ok()?),
            None => elem
                .get("timeout")
                .and_then(Value::as_f64)
                .and_then(|t| Duration::try_from_secs_f64(t).ok()),
        };
        return Some((net, expires));
    }
    Some((parse_value(value)?, None))
}

fn parse_value(value: &Value) -> Option<IpNet> {
    if let Some(text) = value.as_str() {
        return text.parse::<IpAddr>().ok().map(IpNet::from);
    }
    let prefix = value.get("prefix")?;
    let addr: IpAddr = prefix.get("addr")?.as_str()?.parse().ok()?;
    let len = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
    IpNet::new(addr, len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_of_elements_is_read_back() {
        let text = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "swarmguard", "handle": 1}},
            {"set": {"family": "inet", "name": "blocked_v4", "table": "swarmguard",
              "type": "ipv4_addr", "handle": 1, "flags": ["interval", "timeout"],
              "elem": [{"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 24}},
                        "timeout": 7200, "expires": 7199}},
                       {"elem": {"val": "192.0.2.7", "timeout": 60, "expires": 59}},
                       "192.0.2.9"]}}]}"#;
        let listing = Listing::parse(text).unwrap();
        assert_eq!(
            listing.elements,
            [
                (
                    "10.0.0.0/24".parse().unwrap(),
                    Some(Duration::from_secs(7199))
                ),
                (
                    "192.0.2.7/32".parse().unwrap(),
                    Some(Duration::from_secs(59))
                ),
                ("192.0.2.9/32".parse().unwrap(), None),
            ]
        );
    }

    #[test]
    fn a_range_element_makes_the_table_foreign() {
        let text = r#"{"nftables": [{"set": {"name": "blocked_v4", "type": "ipv4_addr",
            "flags": ["interval", "timeout"], "elem": [{"range": ["10.0.0.1", "10.0.0.5"]}]}}]}"#;
        assert!(Listing::parse(text).is_none());
    }

    #[test]
    fn a_lapsing_element_is_deleted_only_when_something_new_overlaps_it() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let lapsing: IpNet = "10.0.0.0/24".parse().unwrap();
        let removed = [(lapsing, now + Duration::from_secs(1))];
        for (target, deleted) in [
            (vec![], false),
            (vec!["10.0.1.0/24"], false),
            // An address is in another set: no overlap.
            (vec!["10.0.0.7/32"], false),
            (vec!["10.0.0.4/30"], true),
            (vec!["10.0.0.0/16"], true),
            (vec!["10.0.0.128/25"], true),
        ] {
            let target: BTreeMap<IpNet, SystemTime> =
                target.iter().map(|n| (n.parse().unwrap(), now)).collect();
            let mut commands = Vec::new();
            push_removals(&mut commands, &removed, &target, now);
            assert_eq!(!commands.is_empty(), deleted, "{target:?}");
        }
    }

    #[test]
    fn addresses_stay_whole_and_only_networks_are_cut() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let desired: BTreeMap<IpNet, SystemTime> = [
            ("10.0.0.0/22", 100),
            ("10.0.1.0/24", 500),
            ("10.0.0.9/32", 900),
            ("10.0.0.10/32", 50),
        ]
        .iter()
        .map(|(net, until)| (net.parse().unwrap(), at(*until)))
        .collect();
        let expected: BTreeMap<IpNet, SystemTime> = [
            ("10.0.0.0/24", 100),
            ("10.0.0.9/32", 900),
            ("10.0.0.10/32", 50),
            ("10.0.1.0/24", 500),
            ("10.0.2.0/23", 100),
        ]
        .iter()
        .map(|(net, until)| (net.parse().unwrap(), at(*until)))
        .collect();
        assert_eq!(target(&desired), expected);
        assert_eq!(set_of(&"10.0.0.9/32".parse().unwrap()), "v4_addrs");
        assert_eq!(set_of(&"10.0.2.0/23".parse().unwrap()), "v4_nets");
        assert_eq!(set_of(&"fd00::/8".parse().unwrap()), "v6_nets");
    }

    #[test]
    fn a_kernel_expiry_a_little_late_is_the_same_but_early_is_not() {
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert!(close(until, until));
        assert!(close(until - Duration::from_secs(1), until));
        assert!(close(until + Duration::from_secs(30), until));
        assert!(!close(until - Duration::from_secs(5), until));
        assert!(!close(until + Duration::from_secs(600), until));
    }

    #[test]
    fn timeouts_round_up_and_never_reach_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(timeout_secs(now + Duration::from_millis(1500), now), 2);
        assert_eq!(timeout_secs(now + Duration::from_secs(3600), now), 3600);
        assert_eq!(timeout_secs(now, now), 1);
    }

    #[test]
    fn transaction_json_has_the_documented_shape() {
        let mut commands = Vec::new();
        let now = SystemTime::UNIX_EPOCH;
        let removed = [
            (
                "2001:db8::/32".parse().unwrap(),
                now + Duration::from_secs(600),
            ),
            // About to lapse, and nothing new overlaps it: left to expire.
            (
                "192.0.2.0/24".parse().unwrap(),
                now + Duration::from_secs(1),
            ),
        ];
        push_removals(&mut commands, &removed, &BTreeMap::new(), now);
        push_additions(
            &mut commands,
            &[(
                "192.0.2.7/32".parse().unwrap(),
                now + Duration::from_secs(60),
            )],
            now,
        );
        let json: Value = serde_json::to_value(Nftables {
            objects: commands.into(),
        })
        .unwrap();
        let elem = |value: Value, timeout: Value| {
            serde_json::json!({"elem": {"val": value, "timeout": timeout, "expires": null,
                                "comment": null, "counter": null}})
        };
        let v6 = serde_json::json!({"prefix": {"addr": "2001:db8::", "len": 32}});
        assert_eq!(
            json,
            serde_json::json!({"nftables": [
                {"delete": {"element": {"family": "inet", "table": "swarmguard", "name": "v6_nets",
                    "elem": [v6]}}},
                {"add": {"element": {"family": "inet", "table": "swarmguard", "name": "v4_addrs",
                    "elem": [elem("192.0.2.7".into(), 60.into())]}}},
            ]})
        );
    }
}
