//! # xencoin
//!
//! The XenCoin chain: the ledger and its transaction rules, delegated proof
//! of stake, the mempool, redb storage, libp2p networking and JSON-RPC.
//! Clients reach it only through `zennet-protocol` types and the RPC wire.
