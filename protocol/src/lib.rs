//! # zennet-protocol
//!
//! The vocabulary that every Zennet crate shares and nothing else: money
//! ([`money::Amount`], integer base units, never floats), the cumulative
//! [`usage::UsageVector`] a provider meters and a publisher pays for, the
//! [`pricing`] (per-component rates, the integer cost of usage, the
//! calibration summary in an offer), the [`spec::ContainerSpec`] a contract asks a provider to run, and XenCoin's
//! [`keys`] (secp256k1, `xen1...` addresses), [`tx`] (transactions and their
//! canonical signed encoding) and [`voucher`] (payment-channel vouchers),
//! the [`market`] protocol between a provider and a publisher, and the
//! [`sshkey`]s a contract names (the publisher's keys, the host key's fingerprint).
//!
//! Crates meet only through these types and the wire; the agent, the
//! publisher's command and the chain never import each other's internals.

pub mod keyfile;
pub mod keys;
pub mod market;
pub mod money;
pub mod negotiate;
pub mod pricing;
pub mod spec;
pub mod sshkey;
pub mod tx;
pub mod usage;
pub mod voucher;

pub use money::Amount;
pub use pricing::{cost, CalibrationSummary, Rates};
pub use spec::{ContainerSpec, SpecError};
pub use usage::{UsageComponent, UsageVector};
