//! Swarmguard's identity half: the library behind `identityd`, and the pieces of it that
//! `swarmd` links to verify membership credentials.
//!
//! # Layout
//!
//! Light (always built; what `swarmd` links with `default-features = false`):
//! - [`did`]: the `Did` type and `did:key` Ed25519 encoding.
//! - [`membership`]: `SwarmMemberCredential`, and its verifier (VC-JWT with ring, status
//!   lists from a cache the caller drives) — no `ssi`.
//! - [`config`]: `identity.toml`, read in two stages (raw serde, then validated).
//! - [`cli_docs`]: man pages and shell completions from the clap definitions.
//! - [`daemon`]: what both daemons share at their edges: logging, shutdown, config errors.
//!
//! With feature `ssi`: [`vc`], issuing and verifying any W3C credential with SpruceID's
//! `ssi` (Data Integrity `eddsa-rdfc-2022`, VC-JWT, DID resolution).
//!
//! With feature `server` (default): [`keys`] (issuer key, admin token), [`store`] (sled),
//! [`service`] (issue/verify/status logic), [`metrics`], [`server`] (HTTP, started by
//! [`server::run`]) and [`cli`].

#[cfg(feature = "server")]
pub mod cli;
pub mod cli_docs;
pub mod config;
pub mod daemon;
pub mod did;
#[cfg(feature = "server")]
pub mod keys;
pub mod membership;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "ssi")]
pub mod vc;
