//! identityd's integration tests: the service driven in-process through
//! [`swarmguard_identity::server::run`] on `127.0.0.1:0`, the `identityd` binary as a real
//! process, and the W3C/IETF conformance material under `../shared/conformance/did/`.

mod api;
mod cli;
mod common;
mod conformance;
mod health;
mod membership;
mod persistence;
mod tls;
