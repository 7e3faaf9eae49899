//! The Swarmguard agent: the library behind `swarmd` and `swarmctl`.
//!
//! # Layout
//!
//! Data flows one way, `sensor -> detect -> decide -> enforce`, with `swarm` feeding
//! `decide` and `decide` publishing local decisions back into `swarm`. Each stage is a
//! module of its own and arrives with its issue; what exists today:
//!
//! - [`config`]: `agent.toml`, read in two stages (raw serde, then validated).
//! - [`api`]: the Prometheus `/metrics` endpoint and the admin API on a unix socket.
//! - [`sensor`]: where input comes from: live capture through libpcap into a bounded
//!   queue ([`sensor::capture`]), capture files ([`sensor::pcap_file`]), log files and the
//!   journal (`tail -F`, [`sensor::log`]), Suricata `eve.json` ([`sensor::eve`]).
//! - [`detect`]: Suricata-format packet rules and the engine that matches them, and log
//!   scenarios; the [`detect::Alert`] every detection produces.
//! - [`replay`]: `swarmd replay`, rule files and a capture in, eve.json out.
//! - [`logs`]: log detection as the daemon runs it (sensors -> scenarios -> alerts).
//! - [`packets`]: packet detection as the daemon runs it (capture -> rules -> alerts).
//! - [`scenario_test`]: `swarmctl scenarios test`, log scenarios over a file, explained.
//! - [`decide`]: the [`decide::Decision`] this host enforces, and the sans-IO
//!   [`decide::Policy`] that makes them.
//! - [`decisions`]: the decision stage as the daemon runs it (policy -> store -> enforce,
//!   publish to the swarm), and the operator commands.
//! - [`enforce`]: the nftables and dry-run backends; the only code that touches the kernel's
//!   packet filter.
//! - [`store`]: the sled database: decisions, ban history, signals, peers.
//! - [`subject`]: [`subject::Subject`], the address, network or domain that signals report
//!   and decisions act on.
//! - [`swarm`]: the sans-IO swarm protocol core: signed [`swarm::Signal`]s, SWIM
//!   membership, dissemination by push and anti-entropy.
//! - [`decide`]: [`decide::quorum`], counting distinct origins per subject.
//! - [`demo`]: `swarmd demo`, identityd and a swarm on loopback, attacked and shown live.
//! - [`daemon`]: [`daemon::run`] wires the stages together for `swarmd run`.
//! - [`cli`]: the command lines of `swarmd` and `swarmctl`, one table for both
//!   `--help` and the man pages.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod decisions;
pub mod demo;
pub mod detect;
pub mod enforce;
pub mod logs;
pub mod packets;
pub mod replay;
pub mod scenario_test;
pub mod sensor;
pub mod store;
pub mod subject;
pub mod swarm;
