//! # zennet-protocol
//!
//! The vocabulary that every Zennet crate shares and nothing else: money
//! ([`money::Amount`], integer base units, never floats), the cumulative
//! [`usage::UsageVector`] a provider meters and a publisher pays for, the
//! [`spec::ContainerSpec`] a contract asks a provider to run, and XenCoin's
//! [`keys`] (secp256k1, `xen1...` addresses), [`tx`] (transactions and their
//! canonical signed encoding) and [`voucher`] (payment-channel vouchers).
//!
//! Crates meet only through these types and the wire; the agent, the
//! publisher's command and the chain never import each other's internals.

pub mod keys;
pub mod money;
pub mod spec;
pub mod tx;
pub mod usage;
pub mod voucher;

pub use money::Amount;
pub use spec::{ContainerSpec, SpecError};
pub use usage::{UsageComponent, UsageVector};
