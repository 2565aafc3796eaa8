//! Keys, addresses and signatures: secp256k1 (`k256`, the version
//! libp2p-identity 0.3 uses, so one 32-byte secret is both the chain key and
//! the libp2p node key). Signing and key generation use `k256`; verification,
//! the hot path (every tx, every voucher), uses libsecp256k1 through the
//! `secp256k1` crate, about twice as fast here (`make bench-chain`).
//! Both implement the same ECDSA over the same curve, so signatures agree.
//!
//! * A [`SecretKey`] is 32 bytes; its `Debug` is redacted and it is never
//!   displayed.
//! * A [`PublicKey`] is the 33-byte SEC1 compressed point.
//! * An [`Address`] is the first 20 bytes of `SHA-256(compressed public key)`,
//!   written as bech32 (BIP-173 checksum) with the human-readable prefix `xen`,
//!   e.g. `xen1...` (42 characters). Parsing checks prefix and checksum.
//! * A [`Signature`] is 64 bytes `r || s` with low `s` (ECDSA over the
//!   SHA-256 digest of the message). High-`s` signatures are rejected, so a
//!   signature is not malleable.

use k256::ecdsa::SigningKey;
use secp256k1::global::SECP256K1;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The human-readable prefix of every XenCoin address.
pub const ADDRESS_HRP: &str = "xen";

/// What went wrong with a key, address or signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The 32 bytes are not a valid secp256k1 scalar (zero or >= n).
    #[error("secret key is not a valid secp256k1 scalar")]
    BadSecret,
    /// The bytes are not a compressed secp256k1 point.
    #[error("public key {0} is not a compressed secp256k1 point")]
    BadPublicKey(String),
    /// The string is not a bech32 `xen1...` address.
    #[error("address {addr:?} is invalid: {reason}")]
    BadAddress { addr: String, reason: String },
    /// The signature bytes are malformed (wrong length, zero, high s).
    #[error("signature is malformed")]
    BadSignatureEncoding,
    /// The signature does not verify under the public key.
    #[error("signature does not verify")]
    BadSignature,
    /// The operating system refused to give randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// Hex decoding failed.
    #[error("invalid hex: {0}")]
    Hex(String),
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(data));
    out
}

/// A secp256k1 secret key. Never printed: `Debug` shows `SecretKey(<redacted>)`.
/// (k256 for generation and encoding; libsecp256k1 signs, about twice as fast.)
#[derive(Clone)]
pub struct SecretKey(SigningKey, PublicKey, secp256k1::SecretKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<SecretKey, KeyError> {
        loop {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(|e| KeyError::Random(e.to_string()))?;
            if let Ok(k) = SecretKey::from_bytes(&b) {
                return Ok(k);
            }
        }
    }

    /// The key whose scalar is these 32 big-endian bytes.
    pub fn from_bytes(b: &[u8; 32]) -> Result<SecretKey, KeyError> {
        let sk = SigningKey::from_slice(b).map_err(|_| KeyError::BadSecret)?;
        let pk = PublicKey::from_bytes(&sk.verifying_key().to_sec1_bytes())
            .expect("k256 encodes a valid compressed point");
        let fast = secp256k1::SecretKey::from_byte_array(*b).map_err(|_| KeyError::BadSecret)?;
        Ok(SecretKey(sk, pk, fast))
    }

    /// A deterministic key from a seed phrase: `SHA-256(seed)`. For dev keys and tests only.
    pub fn from_seed(seed: &str) -> SecretKey {
        let mut h = sha256(seed.as_bytes());
        loop {
            if let Ok(k) = SecretKey::from_bytes(&h) {
                return k;
            }
            h = sha256(&h);
        }
    }

    /// The 32 secret bytes (for writing a key file; handle with care).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.0.to_bytes());
        out
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        self.1
    }

    /// The address of the matching public key.
    pub fn address(&self) -> Address {
        self.public().address()
    }

    /// Signs `SHA-256(msg)` deterministically (RFC 6979), low-s.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let digest = secp256k1::Message::from_digest(sha256(msg));
        Signature(SECP256K1.sign_ecdsa(digest, &self.2).serialize_compact())
    }

    /// The same signature computed by k256 (tests compare the two).
    #[cfg(test)]
    fn sign_k256(&self, msg: &[u8]) -> Signature {
        let (sig, _) = self.0.sign_prehash_recoverable(&sha256(msg));
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.normalize_s().to_bytes());
        Signature(out)
    }
}

/// A secp256k1 public key (33-byte compressed SEC1 on the wire, hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(secp256k1::PublicKey);

impl PublicKey {
    /// Parses a 33-byte compressed point.
    pub fn from_bytes(b: &[u8]) -> Result<PublicKey, KeyError> {
        if b.len() != 33 || !matches!(b[0], 2 | 3) {
            return Err(KeyError::BadPublicKey(hex::encode(b)));
        }
        secp256k1::PublicKey::from_slice(b)
            .map(PublicKey)
            .map_err(|_| KeyError::BadPublicKey(hex::encode(b)))
    }

    /// The 33-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 33] {
        self.0.serialize()
    }

    /// The address this key controls.
    pub fn address(&self) -> Address {
        let h = sha256(&self.to_bytes());
        let mut a = [0u8; 20];
        a.copy_from_slice(&h[..20]);
        Address(a)
    }

    /// Checks `sig` over `SHA-256(msg)`; rejects high-s signatures.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        let s = secp256k1::ecdsa::Signature::from_compact(&sig.0)
            .map_err(|_| KeyError::BadSignatureEncoding)?;
        let mut low = s;
        low.normalize_s();
        if low != s || sig.0[..32] == [0; 32] || sig.0[32..] == [0; 32] {
            return Err(KeyError::BadSignatureEncoding);
        }
        let digest = secp256k1::Message::from_digest(sha256(msg));
        SECP256K1
            .verify_ecdsa(digest, &s, &self.0)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.to_bytes()))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_bytes()))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(&s).map_err(serde::de::Error::custom)?;
        PublicKey::from_bytes(&b).map_err(serde::de::Error::custom)
    }
}

/// A 64-byte compact ECDSA signature `r || s` (hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(&s).map_err(serde::de::Error::custom)?;
        let arr: [u8; 64] = b
            .try_into()
            .map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))?;
        Ok(Signature(arr))
    }
}

/// An account address: 20 bytes, bech32 `xen1...` in text and JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = bech32::Hrp::parse(ADDRESS_HRP).expect("static hrp is valid");
        let s = bech32::encode::<bech32::Bech32>(hrp, &self.0).expect("20 bytes always encode");
        f.write_str(&s)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Address, KeyError> {
        let bad = |reason: &str| KeyError::BadAddress {
            addr: s.chars().take(100).collect(),
            reason: reason.into(),
        };
        let checked = bech32::primitives::decode::CheckedHrpstring::new::<bech32::Bech32>(s)
            .map_err(|e| bad(&e.to_string()))?;
        if checked.hrp().as_str() != ADDRESS_HRP {
            return Err(bad("prefix is not xen"));
        }
        let data: Vec<u8> = checked.byte_iter().collect();
        let arr: [u8; 20] = data
            .try_into()
            .map_err(|_| bad("payload is not 20 bytes"))?;
        Ok(Address(arr))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libsecp256k1_signs_exactly_as_k256_rfc6979() {
        for i in 0..20 {
            let k = SecretKey::from_seed(&format!("k{i}"));
            let m = format!("message {i}");
            assert_eq!(k.sign(m.as_bytes()), k.sign_k256(m.as_bytes()));
            k.public().verify(m.as_bytes(), &k.sign(m.as_bytes())).unwrap();
        }
    }

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let k = SecretKey::from_seed("alice");
        let sig = k.sign(b"hello");
        k.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            k.public().verify(b"hellp", &sig),
            Err(KeyError::BadSignature)
        );
        let other = SecretKey::from_seed("bob");
        assert_eq!(
            other.public().verify(b"hello", &sig),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn address_text_roundtrip_and_checksum() {
        let a = SecretKey::from_seed("alice").address();
        let s = a.to_string();
        assert!(s.starts_with("xen1"), "{s}");
        assert_eq!(s.parse::<Address>().unwrap(), a);
        // flip one character: checksum fails
        let mut chars: Vec<char> = s.chars().collect();
        let i = 10;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let bad: String = chars.into_iter().collect();
        assert!(bad.parse::<Address>().is_err());
        // wrong prefix
        let hrp = bech32::Hrp::parse("btc").unwrap();
        let other = bech32::encode::<bech32::Bech32>(hrp, &a.0).unwrap();
        assert!(other.parse::<Address>().is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let k = SecretKey::from_seed("alice");
        let d = format!("{k:?}");
        assert!(!d.contains(&hex::encode(k.to_bytes())));
        assert!(d.contains("redacted"));
    }

    #[test]
    fn high_s_is_rejected() {
        let k = SecretKey::from_seed("alice");
        let sig = k.sign(b"m");
        let s = k256::ecdsa::Signature::from_slice(&sig.0).unwrap();
        // negate s: (r, n - s) is also a valid ECDSA signature but high-s
        let (r, sv) = s.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*sv).to_bytes()).unwrap();
        let mut b = [0u8; 64];
        b.copy_from_slice(&high.to_bytes());
        assert_eq!(
            k.public().verify(b"m", &Signature(b)),
            Err(KeyError::BadSignatureEncoding)
        );
    }

    #[test]
    fn zero_scalars_and_bad_points_are_malformed() {
        let k = SecretKey::from_seed("alice");
        let mut sig = k.sign(b"m");
        sig.0[..32].fill(0);
        assert_eq!(k.public().verify(b"m", &sig), Err(KeyError::BadSignatureEncoding));
        let mut pk = k.public().to_bytes();
        pk[0] = 4;
        assert!(matches!(PublicKey::from_bytes(&pk), Err(KeyError::BadPublicKey(_))));
        assert!(matches!(PublicKey::from_bytes(&pk[..32]), Err(KeyError::BadPublicKey(_))));
    }

    #[test]
    fn same_secret_is_json_stable() {
        let k = SecretKey::from_seed("x");
        let j = serde_json::to_string(&k.public()).unwrap();
        let p: PublicKey = serde_json::from_str(&j).unwrap();
        assert_eq!(p, k.public());
    }
}
