//! XenCoin transactions: the [`TxBody`] kinds, their canonical versioned
//! encoding and signing. Validation against state lives in the chain's ledger.
//!
//! Signed bytes (version [`TX_VERSION`]): `"XEN-TX" || version || chain_id ||
//! sender public key (33) || nonce || fee || kind tag || fields`, integers as
//! u64 big-endian, strings and byte strings as u16 big-endian length then
//! bytes. The chain id inside the signed bytes means a tx signed for one
//! network never verifies on another. The tx hash is `SHA-256(signed bytes ||
//! signature)`.

use crate::keys::{sha256, Address, KeyError, PublicKey, SecretKey, Signature};
use crate::voucher::SignedVoucher;
use crate::Amount;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Encoding version of [`Tx::signing_bytes`].
pub const TX_VERSION: u8 = 1;
/// Longest string field (job id, endpoint, image) in a tx, in bytes.
pub const MAX_TX_STRING: usize = 256;

/// Canonical binary writer shared by txs, vouchers and block headers.
pub struct Enc(Vec<u8>);

impl Enc {
    /// Starts with a domain tag and a version byte.
    pub fn new(domain: &[u8], version: u8) -> Enc {
        let mut v = Vec::with_capacity(192);
        v.extend_from_slice(domain);
        v.push(version);
        Enc(v)
    }
    /// Appends a u64, big-endian.
    pub fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_be_bytes());
    }
    /// Appends one byte.
    pub fn u8(&mut self, x: u8) {
        self.0.push(x);
    }
    /// Appends raw bytes of fixed length.
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// Appends a u16 length then the bytes (strings longer than 65535 are cut;
    /// validation rejects anything above [`MAX_TX_STRING`] first).
    pub fn str(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// A 32-byte id (hex in JSON): channel ids, announcement ids, tx and block hashes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

/// A payment channel's id: `SHA-256("XEN-CHANNEL" || publisher address || open tx nonce)`.
pub type ChannelId = Hash32;

impl Hash32 {
    /// 32 bytes from the operating system's randomness (session nonces).
    pub fn random() -> Hash32 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the OS random source");
        Hash32(b)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Hash32, KeyError> {
        let b = hex::decode(s).map_err(|e| KeyError::Hex(e.to_string()))?;
        b.try_into()
            .map(Hash32)
            .map_err(|_| KeyError::Hex("expected 32 bytes".into()))
    }
    /// The channel id of the channel `publisher` opens with the tx of `nonce`.
    pub fn channel_id(publisher: &Address, nonce: u64) -> ChannelId {
        let mut e = Enc::new(b"XEN-CHANNEL", 1);
        e.bytes(&publisher.0);
        e.u64(nonce);
        Hash32(sha256(&e.finish()))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}
impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}
impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash32::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// What a job asks of each provider; announcements are filtered by these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Requirements {
    /// Containers wanted.
    pub count: u32,
    /// Memory per container, bytes.
    pub memory_bytes: u64,
    /// CPU per container, millicores.
    pub cpu_millicores: u32,
    /// Disk per container, bytes.
    pub disk_bytes: u64,
    /// Base image name.
    pub image: String,
}

/// A payment channel as the ledger keeps it (and `xen_getChannel` returns it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    pub publisher: Address,
    pub provider: Address,
    /// Locked amount still in the channel (0 once closed or refunded).
    pub deposit: Amount,
    /// Last height at which the provider may close.
    pub expiry_height: u64,
    /// Closed by the provider or refunded: no further close or refund.
    pub settled: bool,
    /// What the provider was paid on close.
    pub paid: Amount,
}

/// An active job announcement as the ledger keeps it (`xen_getAnnouncements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// `SHA-256` of the announcing tx.
    pub id: Hash32,
    pub publisher: Address,
    pub job_id: String,
    pub requirements: Requirements,
    pub endpoint: String,
    pub price_ceiling: Amount,
    pub expiry_height: u64,
    /// Height of the block that included it.
    pub height: u64,
}

/// The kinds of transaction. The sender is always the signer of the [`Tx`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxBody {
    /// Move `amount` to `to`.
    Transfer { to: Address, amount: Amount },
    /// Announce a job; dropped from state after `expiry_height`.
    Announce {
        job_id: String,
        requirements: Requirements,
        /// Where providers dial (libp2p multiaddr with peer id).
        endpoint: String,
        /// Highest cost of one container per hour at full load of its limits
        /// that the publisher accepts (see `negotiate::hourly_cost`).
        price_ceiling: Amount,
        expiry_height: u64,
    },
    /// Open a channel from the sender (publisher) to `provider`, locking `deposit`.
    ChannelOpen {
        provider: Address,
        deposit: Amount,
        expiry_height: u64,
    },
    /// Add `amount` to the deposit of a channel the sender published.
    ChannelTopUp { channel: ChannelId, amount: Amount },
    /// The provider closes with the publisher's voucher.
    ChannelClose { voucher: SignedVoucher },
    /// The publisher takes its deposit back after expiry, if never closed.
    ChannelRefund { channel: ChannelId },
    /// Make the sender a block-producer candidate.
    RegisterDelegate,
    /// Put the sender's stake behind `delegate` (replaces any earlier vote).
    Vote { delegate: Address },
}

impl TxBody {
    fn encode(&self, e: &mut Enc) {
        match self {
            TxBody::Transfer { to, amount } => {
                e.u8(1);
                e.bytes(&to.0);
                e.u64(amount.0);
            }
            TxBody::Announce {
                job_id,
                requirements: r,
                endpoint,
                price_ceiling,
                expiry_height,
            } => {
                e.u8(2);
                e.str(job_id);
                e.u64(r.count as u64);
                e.u64(r.memory_bytes);
                e.u64(r.cpu_millicores as u64);
                e.u64(r.disk_bytes);
                e.str(&r.image);
                e.str(endpoint);
                e.u64(price_ceiling.0);
                e.u64(*expiry_height);
            }
            TxBody::ChannelOpen {
                provider,
                deposit,
                expiry_height,
            } => {
                e.u8(3);
                e.bytes(&provider.0);
                e.u64(deposit.0);
                e.u64(*expiry_height);
            }
            TxBody::ChannelTopUp { channel, amount } => {
                e.u8(4);
                e.bytes(&channel.0);
                e.u64(amount.0);
            }
            TxBody::ChannelClose { voucher } => {
                e.u8(5);
                e.bytes(&voucher.voucher.signing_bytes());
                e.bytes(&voucher.publisher.to_bytes());
                e.bytes(&voucher.sig.0);
            }
            TxBody::ChannelRefund { channel } => {
                e.u8(6);
                e.bytes(&channel.0);
            }
            TxBody::RegisterDelegate => e.u8(7),
            TxBody::Vote { delegate } => {
                e.u8(8);
                e.bytes(&delegate.0);
            }
        }
    }

    /// Every string field within [`MAX_TX_STRING`].
    pub fn strings_bounded(&self) -> bool {
        match self {
            TxBody::Announce {
                job_id,
                requirements,
                endpoint,
                ..
            } => [job_id, &requirements.image, endpoint]
                .iter()
                .all(|s| s.len() <= MAX_TX_STRING),
            TxBody::ChannelClose { voucher } => voucher.voucher.chain_id.len() <= MAX_TX_STRING,
            _ => true,
        }
    }
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    /// The network this tx is for.
    pub chain_id: String,
    /// The sender's public key; the sender's address derives from it.
    pub from: PublicKey,
    /// Must equal the sender account's nonce (starts at 0, +1 per tx).
    pub nonce: u64,
    /// Paid by the sender whether or not the body succeeds.
    pub fee: Amount,
    /// What the tx does.
    pub body: TxBody,
}

impl Tx {
    /// The canonical bytes that are signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(b"XEN-TX", TX_VERSION);
        e.str(&self.chain_id);
        e.bytes(&self.from.to_bytes());
        e.u64(self.nonce);
        e.u64(self.fee.0);
        self.body.encode(&mut e);
        e.finish()
    }

    /// Signs; `key` must be the key of `self.from`.
    pub fn sign(self, key: &SecretKey) -> SignedTx {
        let sig = key.sign(&self.signing_bytes());
        SignedTx { tx: self, sig }
    }

    /// The sender's address.
    pub fn sender(&self) -> Address {
        self.from.address()
    }
}

/// A transaction with its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Tx,
    /// Signature by `tx.from` over [`Tx::signing_bytes`].
    pub sig: Signature,
}

impl SignedTx {
    /// Checks the signature only.
    pub fn verify(&self) -> Result<(), KeyError> {
        self.tx.from.verify(&self.tx.signing_bytes(), &self.sig)
    }

    /// The tx hash: `SHA-256(signing bytes || signature)`.
    pub fn hash(&self) -> Hash32 {
        let mut b = self.tx.signing_bytes();
        b.extend_from_slice(&self.sig.0);
        Hash32(sha256(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(chain: &str) -> Tx {
        let k = SecretKey::from_seed("a");
        Tx {
            chain_id: chain.into(),
            from: k.public(),
            nonce: 3,
            fee: Amount(10),
            body: TxBody::Transfer {
                to: SecretKey::from_seed("b").address(),
                amount: Amount(5),
            },
        }
    }

    #[test]
    fn chain_id_is_signed() {
        let k = SecretKey::from_seed("a");
        let mut s = tx("xen-dev").sign(&k);
        s.verify().unwrap();
        s.tx.chain_id = "xen-main".into();
        assert!(s.verify().is_err());
    }

    #[test]
    fn json_roundtrip_keeps_hash() {
        let k = SecretKey::from_seed("a");
        let s = tx("xen-dev").sign(&k);
        let j = serde_json::to_string(&s).unwrap();
        let back: SignedTx = serde_json::from_str(&j).unwrap();
        assert_eq!(back.hash(), s.hash());
        back.verify().unwrap();
    }

    #[test]
    fn encoding_is_stable() {
        // The canonical encoding is part of the protocol: pin its prefix and length.
        let b = tx("xen-dev").signing_bytes();
        assert_eq!(&b[..7], b"XEN-TX\x01");
        assert_eq!(b.len(), 7 + 2 + 7 + 33 + 8 + 8 + 1 + 20 + 8);
    }
}
