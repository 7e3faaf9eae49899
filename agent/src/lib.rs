//! The Swarmguard agent: the library behind `swarmd` and `swarmctl`.
//!
//! # Layout
//!
//! Data flows one way, `sensor -> detect -> decide -> enforce`, with `swarm` feeding
//! `decide` and `decide` publishing local decisions back into `swarm`. Each stage is a
//! module of its own and arrives with its issue; what exists today:
//!
//! - [`config`]: `agent.toml`, read in two stages (raw serde, then validated).
//! - [`api`]: the Prometheus `/metrics` endpoint.
//! - [`detect`]: the [`detect::Alert`] every detection produces (rules and scenarios land here).
//! - [`subject`]: [`subject::Subject`], the address, network or domain that signals report
//!   and decisions act on.
//! - [`swarm`]: the sans-IO swarm protocol core: signed [`swarm::Signal`]s, SWIM
//!   membership, dissemination by push and anti-entropy.
//! - [`decide`]: [`decide::quorum`], counting distinct origins per subject.
//! - [`daemon`]: [`daemon::run`] wires the stages together for `swarmd run`.
//! - [`cli`]: the command lines of `swarmd` and `swarmctl`, one table for both
//!   `--help` and the man pages.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod detect;
pub mod subject;
pub mod swarm;
