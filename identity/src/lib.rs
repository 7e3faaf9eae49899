//! Swarmguard's identity half: the library behind `identityd`, and the pieces of it that
//! `swarmd` links to verify membership credentials.
//!
//! # Layout
//!
//! - [`config`]: `identity.toml`, read in two stages (raw serde, then validated).
//! - [`cli_docs`]: man pages and shell completions from the clap definitions.
//! - [`daemon`]: what both daemons share at their edges: logging, shutdown, config errors.
//! - `server` (feature `server`): the HTTP service, started by [`server::run`].

#[cfg(feature = "server")]
pub mod cli;
pub mod cli_docs;
pub mod config;
pub mod daemon;
#[cfg(feature = "server")]
pub mod server;
