//! # xencoin
//!
//! The XenCoin chain: the ledger and its transaction rules ([`ledger`]),
//! blocks ([`block`]), delegated proof of stake ([`dpos`]), the [`mempool`],
//! redb storage ([`store`]), the running node ([`node`]) and JSON-RPC
//! ([`rpc`]). Clients reach it only through `zennet-protocol` types and the
//! RPC wire.

pub mod bench;
pub mod block;
pub mod daemon;
pub mod dpos;
pub mod ledger;
pub mod mempool;
pub mod node;
pub mod p2p;
pub mod rpc;
pub mod store;
