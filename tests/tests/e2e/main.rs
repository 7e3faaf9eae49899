//! End-to-end tests: each one starts the real `swarmd`, `swarmctl` or `identityd`.

mod blocking;
mod cli;
mod daemons;
mod demo;
mod readme;
mod swarm;
