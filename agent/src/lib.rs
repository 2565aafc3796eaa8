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
//!
//! Later issues add `meter`, `market`, `pay`, `ssh` and `api` beside them.
//! `main.rs` only wires these together.

pub mod calibrate;
pub mod cli;
pub mod config;
pub mod containers;
pub mod market;
pub mod store;
