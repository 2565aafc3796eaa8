//! # zennet-agent
//!
//! The provider's agent. Each step of the seed's flow lives in one module
//! named after it:
//! - [`containers`]: the container engine (youki's libcontainer in a
//!   single-threaded zygote, cgroup limits, overlay root with a disk quota,
//!   network isolation, usage counters, crash recovery).
//!
//! Later issues add `calibrate`, `meter`, `market`, `pay`, `ssh`, `store`
//! and `api` beside it. `main.rs` only wires these together.

pub mod cli;
pub mod containers;
