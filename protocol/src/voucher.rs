//! The payment-channel voucher: the publisher's signed promise that the
//! provider may take `cumulative` base units from channel `channel`.
//! Vouchers are cumulative, so only the latest (highest nonce) matters.
//!
//! Signed bytes (version 1): `"XEN-VOUCHER" || 0x01 || chain_id (u16 len ||
//! utf8) || channel (32 bytes) || cumulative (u64 BE) || nonce (u64 BE)`.

use crate::keys::{KeyError, PublicKey, SecretKey, Signature};
use crate::tx::{ChannelId, Enc};
use crate::Amount;
use serde::{Deserialize, Serialize};

/// Encoding version of [`Voucher::signing_bytes`].
pub const VOUCHER_VERSION: u8 = 1;

/// The unsigned voucher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// The network the voucher is for (no replay across networks).
    pub chain_id: String,
    /// The channel it draws on.
    pub channel: ChannelId,
    /// Total owed to the provider so far (not an increment).
    pub cumulative: Amount,
    /// Increases with each voucher the publisher signs.
    pub nonce: u64,
}

impl Voucher {
    /// The canonical bytes the publisher signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(b"XEN-VOUCHER", VOUCHER_VERSION);
        e.str(&self.chain_id);
        e.bytes(&self.channel.0);
        e.u64(self.cumulative.0);
        e.u64(self.nonce);
        e.finish()
    }

    /// Signs with the publisher's key.
    pub fn sign(self, key: &SecretKey) -> SignedVoucher {
        let sig = key.sign(&self.signing_bytes());
        SignedVoucher {
            voucher: self,
            publisher: key.public(),
            sig,
        }
    }
}

/// A voucher with the publisher's public key and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVoucher {
    /// What is promised.
    pub voucher: Voucher,
    /// The signer; the chain checks that its address is the channel's publisher.
    pub publisher: PublicKey,
    /// Signature over [`Voucher::signing_bytes`].
    pub sig: Signature,
}

impl SignedVoucher {
    /// Checks the signature (not the channel rules; those live in the ledger).
    pub fn verify(&self) -> Result<(), KeyError> {
        self.publisher
            .verify(&self.voucher.signing_bytes(), &self.sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::Hash32;

    #[test]
    fn voucher_signature_covers_every_field() {
        let k = SecretKey::from_seed("pub");
        let v = Voucher {
            chain_id: "xen-dev".into(),
            channel: Hash32([7; 32]),
            cumulative: Amount(5),
            nonce: 1,
        };
        let sv = v.clone().sign(&k);
        sv.verify().unwrap();
        for m in 0..4 {
            let mut t = sv.clone();
            match m {
                0 => t.voucher.chain_id = "xen-main".into(),
                1 => t.voucher.channel = Hash32([8; 32]),
                2 => t.voucher.cumulative = Amount(6),
                _ => t.voucher.nonce = 2,
            }
            assert!(t.verify().is_err(), "field {m} not covered");
        }
    }
}
