//! # zennet-protocol
//!
//! The vocabulary that every Zennet crate shares and nothing else: money
//! ([`money::Amount`], integer base units, never floats), the cumulative
//! [`usage::UsageVector`] a provider meters and a publisher pays for, the
//! [`spec::ContainerSpec`] a contract asks a provider to run.
//!
//! Crates meet only through these types and the wire; the agent, the
//! publisher's command and the chain never import each other's internals.

pub mod money;
pub mod spec;
pub mod usage;

pub use money::Amount;
pub use spec::{ContainerSpec, SpecError};
pub use usage::{UsageComponent, UsageVector};
