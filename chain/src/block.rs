//! Blocks: a header signed by its producer and the txs it includes.
//!
//! Header signed bytes (version 1): `"XEN-BLOCK" || 0x01 || chain_id ||
//! height || parent || slot || timestamp_ms || producer (33) || tx_root`;
//! the block hash is `SHA-256` of those bytes. `tx_root` is `SHA-256` of
//! the concatenated tx hashes.

use serde::{Deserialize, Serialize};
use zennet_protocol::keys::{sha256, PublicKey, SecretKey, Signature};
use zennet_protocol::tx::{Enc, Hash32, SignedTx};

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub chain_id: String,
    pub height: u64,
    pub parent: Hash32,
    pub slot: u64,
    pub timestamp_ms: u64,
    pub producer: PublicKey,
    pub tx_root: Hash32,
}

impl BlockHeader {
    /// Canonical signed bytes.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(b"XEN-BLOCK", 1);
        e.str(&self.chain_id);
        e.u64(self.height);
        e.bytes(&self.parent.0);
        e.u64(self.slot);
        e.u64(self.timestamp_ms);
        e.bytes(&self.producer.to_bytes());
        e.bytes(&self.tx_root.0);
        e.finish()
    }

    /// The block hash.
    pub fn hash(&self) -> Hash32 {
        Hash32(sha256(&self.signing_bytes()))
    }
}

/// A signed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub sig: Signature,
    pub txs: Vec<SignedTx>,
}

/// `SHA-256` over the concatenated tx hashes.
pub fn tx_root(txs: &[SignedTx]) -> Hash32 {
    let mut b = Vec::with_capacity(txs.len() * 32);
    for t in txs {
        b.extend_from_slice(&t.hash().0);
    }
    Hash32(sha256(&b))
}

impl Block {
    /// Builds and signs a block.
    pub fn seal(mut header: BlockHeader, txs: Vec<SignedTx>, key: &SecretKey) -> Block {
        header.tx_root = tx_root(&txs);
        header.producer = key.public();
        let sig = key.sign(&header.signing_bytes());
        Block { header, sig, txs }
    }

    /// Checks the producer's signature and the tx root.
    pub fn verify(&self) -> bool {
        self.header
            .producer
            .verify(&self.header.signing_bytes(), &self.sig)
            .is_ok()
            && tx_root(&self.txs) == self.header.tx_root
    }
}
