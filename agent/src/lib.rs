//! # zennet-agent
//!
//! The provider's agent. Each step of the seed's flow lives in one module
//! named after it:
//! - [`containers`]: the container engine (youki's libcontainer in a
//!   single-threaded zygote, cgroup limits, overlay root with a disk quota,
//!   network isolation, usage counters, crash recovery).
//! - [`calibrate`]: canonical benchmarks in cgroups of their own and the
//!   seed's pseudoinverse fit of per-component rates.
//! - [`store`]: the agent's redb database (calibration records).
//! - [`config`]: `zennet.toml`, kernel command line overrides, last-valid fallback.
//! - [`logs`]: console and size-capped file logging.
//! - [`market`]: announcements, negotiation, contracts, metering and pay.
//! - [`ssh`]: the containers' SSH server, reached through libp2p tunnels.
//!
//! - [`api`]: the provider's local control: D-Bus (`org.zennet.Agent1`),
//!   its thin clients, Prometheus metrics.
//!
//! `main.rs` only wires these together.

pub mod api;
pub mod calibrate;
pub mod cli;
pub mod config;
pub mod containers;
pub mod logs;
pub mod market;
pub mod ssh;
pub mod store;
