//! The market's wire protocol between a provider's agent and a publisher:
//! the messages of ARCHITECTURE.md's flow (steps 2 to 9), their canonical
//! signed encodings, and the checks both sides run on what they receive.
//! The order of messages is documented in `protocol/README.md`.
//!
//! Every frame is one JSON [`Msg`] of at most [`MAX_FRAME_BYTES`]; [`decode`]
//! refuses anything larger, malformed or out of bounds before it is used.
//! Signed bodies are signed over a domain-tagged, versioned binary encoding
//! (the same [`Enc`] as transactions), never over JSON.

use crate::keys::{KeyError, PublicKey, SecretKey, Signature};
use crate::pricing::{cost, CalibrationSummary, PricingError, Rates};
use crate::spec::ContainerSpec;
use crate::tx::{ChannelId, Enc, Hash32};
use crate::usage::{UsageComponent, UsageVector};
use crate::voucher::SignedVoucher;
use crate::Amount;
use serde::{Deserialize, Serialize};

/// The libp2p protocol name of a market session (one stream per session).
pub const MARKET_PROTOCOL: &str = "/zennet/market/1";
/// The libp2p protocol of an SSH tunnel: the publisher opens one stream per
/// TCP connection a user makes to a contract's local port. The stream starts
/// with the contract id (32 bytes); the provider answers one byte,
/// [`SSH_ACCEPTED`] or [`SSH_REFUSED`], and after an accept the stream
/// carries the SSH connection to that contract's container.
pub const SSH_PROTOCOL: &str = "/zennet/ssh/1";
/// The provider serves SSH for the named contract on this stream.
pub const SSH_ACCEPTED: u8 = 0;
/// No running contract of this publisher has that id.
pub const SSH_REFUSED: u8 = 1;
/// Version carried in [`Hello`]; a peer speaking another one is refused.
pub const MARKET_VERSION: u16 = 1;
/// Largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
/// Most offer/counter rounds before a session gives up.
pub const MAX_ROUNDS: u32 = 8;
/// Default metering interval.
pub const DEFAULT_INTERVAL_MS: u32 = 2_000;
/// Shortest and longest metering intervals a contract may carry.
pub const INTERVAL_MS_RANGE: (u32, u32) = (500, 60_000);
/// Longest free-text reason (reject, close).
pub const MAX_REASON: usize = 512;
/// Longest string field (chain id, fingerprints).
pub const MAX_STR: usize = 256;
/// Longest environment entry or SSH key line in a contract's spec (the
/// signed encoding carries strings of at most 65,535 bytes; this keeps every
/// string well inside it, so no two terms share signing bytes).
pub const MAX_SPEC_STR: usize = 8 * 1024;
/// Slack a usage report may exceed its limits by (clock skew, counter
/// granularity): 10 % plus 50 ms of the limited resource.
pub const REPORT_SLACK_PCT: u64 = 10;
/// Absolute slack, nanoseconds.
pub const REPORT_SLACK_NS: u64 = 50_000_000;

/// What was wrong with a message or a step of the protocol.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MarketError {
    #[error("frame of {0} bytes is above the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("field `{field}` is invalid: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("signature of the {who} does not verify: {source}")]
    BadSignature { who: &'static str, source: KeyError },
    #[error("usage report refused: {0}")]
    BadReport(String),
    #[error("voucher refused: {0}")]
    BadVoucher(String),
    #[error(transparent)]
    Pricing(#[from] PricingError),
}

fn invalid(field: &'static str, why: impl Into<String>) -> MarketError {
    MarketError::Invalid { field, why: why.into() }
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), MarketError> {
    if s.len() > max {
        return Err(invalid(field, format!("{} bytes, at most {max}", s.len())));
    }
    Ok(())
}

/// Step 3, first half: each side says who it is and brings a fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub chain_id: String,
    /// The announcement being answered (its id on chain).
    pub job: Hash32,
    /// The sender's chain key (also its libp2p identity key).
    pub key: PublicKey,
    /// 32 random bytes, fresh per session.
    pub nonce: Hash32,
}

/// The bytes both sides sign to bind the session to their chain keys.
pub fn session_transcript(provider: &Hello, publisher: &Hello) -> Vec<u8> {
    let mut e = Enc::new(b"XEN-MARKET-SESSION", 1);
    e.str(&provider.chain_id);
    e.bytes(&provider.job.0);
    e.bytes(&provider.key.to_bytes());
    e.bytes(&provider.nonce.0);
    e.bytes(&publisher.key.to_bytes());
    e.bytes(&publisher.nonce.0);
    e.finish()
}

/// Checks the two hellos agree (version, chain, job, distinct nonces).
pub fn check_hellos(provider: &Hello, publisher: &Hello) -> Result<(), MarketError> {
    for h in [provider, publisher] {
        if h.version != MARKET_VERSION {
            return Err(invalid("version", format!("{} (this side speaks {MARKET_VERSION})", h.version)));
        }
    }
    if provider.chain_id != publisher.chain_id {
        return Err(invalid("chain_id", format!("{:?} vs {:?}", provider.chain_id, publisher.chain_id)));
    }
    if provider.job != publisher.job {
        return Err(invalid("job", "the two sides name different announcements"));
    }
    if provider.nonce == publisher.nonce {
        return Err(invalid("nonce", "both sides sent the same nonce"));
    }
    Ok(())
}

/// Step 4: the provider's offer (and each later round of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub round: u32,
    /// How many of the announced containers this provider takes.
    pub count: u32,
    /// Asked rates per usage component.
    pub rates: Rates,
    /// The provider's latest calibration (none before its first one; the
    /// rates are then [`crate::negotiate::default_rates`]).
    pub calibration: Option<CalibrationSummary>,
}

/// Step 5: the contract's terms, as the publisher proposes them (with an
/// empty `host_key_fingerprint`) and the provider completes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub chain_id: String,
    pub job: Hash32,
    /// Which of the job's containers (0-based) this contract is.
    pub index: u32,
    pub provider: PublicKey,
    pub publisher: PublicKey,
    pub spec: ContainerSpec,
    pub rates: Rates,
    pub interval_ms: u32,
    /// Most unpaid value the provider carries before freezing the container.
    pub exposure_bound: Amount,
    /// What the publisher locks in the channel.
    pub deposit: Amount,
    /// Chain height after which the channel can be refunded.
    pub expiry_height: u64,
    /// `SHA256:<base64>` of the container's SSH host key (OpenSSH format).
    pub host_key_fingerprint: String,
}

impl Terms {
    /// Canonical signed encoding, version 1.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(b"XEN-CONTRACT", 1);
        e.str(&self.chain_id);
        e.bytes(&self.job.0);
        e.u64(self.index as u64);
        e.bytes(&self.provider.to_bytes());
        e.bytes(&self.publisher.to_bytes());
        let s = &self.spec;
        for x in [s.memory_bytes, s.cpu_millicores as u64, s.pids_max as u64, s.disk_bytes, s.io_weight as u64] {
            e.u64(x);
        }
        e.u64(s.env.len() as u64);
        s.env.iter().for_each(|v| e.str(v));
        e.u64(s.ssh_authorized_keys.len() as u64);
        s.ssh_authorized_keys.iter().for_each(|v| e.str(v));
        e.str(&s.base);
        e.str(&s.tenant);
        e.u64(self.rates.version as u64);
        self.rates.pico_per_unit.iter().for_each(|r| e.u64(*r));
        e.u64(self.interval_ms as u64);
        e.u64(self.exposure_bound.0);
        e.u64(self.deposit.0);
        e.u64(self.expiry_height);
        e.str(&self.host_key_fingerprint);
        e.finish()
    }

    /// The contract id: SHA-256 of the signing bytes.
    pub fn id(&self) -> Hash32 {
        Hash32(crate::keys::sha256(&self.signing_bytes()))
    }

    /// Bounds every field; `complete` also requires the host-key fingerprint.
    pub fn validate(&self, complete: bool) -> Result<(), MarketError> {
        check_len("chain_id", &self.chain_id, MAX_STR)?;
        check_len("host_key_fingerprint", &self.host_key_fingerprint, MAX_STR)?;
        let (lo, hi) = INTERVAL_MS_RANGE;
        if !(lo..=hi).contains(&self.interval_ms) {
            return Err(invalid("interval_ms", format!("{} ms, must be {lo}..={hi}", self.interval_ms)));
        }
        if self.rates.version != UsageVector::VERSION {
            return Err(invalid("rates.version", format!("{} (usage vector version is {})", self.rates.version, UsageVector::VERSION)));
        }
        if self.deposit == Amount::ZERO {
            return Err(invalid("deposit", "zero"));
        }
        if self.exposure_bound == Amount::ZERO || self.exposure_bound > self.deposit {
            return Err(invalid("exposure_bound", format!("{} must be above zero and at most the deposit {}", self.exposure_bound, self.deposit)));
        }
        if self.provider == self.publisher {
            return Err(invalid("provider", "provider and publisher are the same key"));
        }
        if self.spec.tenant != self.publisher.address().to_string() {
            return Err(invalid("spec.tenant", "must be the publisher's address"));
        }
        // The spec's shape (minimums, counts, names); capacity is the provider's own check.
        let unbounded = crate::spec::Capacity { memory_bytes: u64::MAX, cpu_millicores: u32::MAX, pids_max: u32::MAX, disk_bytes: u64::MAX };
        self.spec.validate(&unbounded).map_err(|e| invalid("spec", e.to_string()))?;
        if let Some(long) = self.spec.env.iter().chain(&self.spec.ssh_authorized_keys).find(|v| v.len() > MAX_SPEC_STR) {
            return Err(invalid("spec", format!("an env entry or ssh key of {} bytes, at most {MAX_SPEC_STR}", long.len())));
        }
        for line in &self.spec.ssh_authorized_keys {
            crate::sshkey::parse(line).map_err(|e| invalid("spec.ssh_authorized_keys", e.to_string()))?;
        }
        let fp = &self.host_key_fingerprint;
        if complete && !(fp.starts_with("SHA256:") && fp.len() == 50) {
            return Err(invalid("host_key_fingerprint", format!("{fp:?} is not an OpenSSH SHA256 fingerprint")));
        }
        Ok(())
    }

    /// Total owed for cumulative `usage` under these terms' rates.
    pub fn owed(&self, usage: &UsageVector) -> Result<Amount, MarketError> {
        Ok(cost(&self.rates, usage)?)
    }
}

/// Terms signed by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub terms: Terms,
    pub provider_sig: Signature,
    pub publisher_sig: Signature,
}

impl Contract {
    /// Checks the terms are complete and both signatures are the named keys'.
    pub fn verify(&self) -> Result<(), MarketError> {
        self.terms.validate(true)?;
        let b = self.terms.signing_bytes();
        self.terms.provider.verify(&b, &self.provider_sig).map_err(|source| MarketError::BadSignature { who: "provider", source })?;
        self.terms.publisher.verify(&b, &self.publisher_sig).map_err(|source| MarketError::BadSignature { who: "publisher", source })
    }
}

/// Step 8: what the agent metered, cumulative since the contract started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub contract: Hash32,
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// Milliseconds since the container started, by the provider's clock.
    pub elapsed_ms: u64,
    pub usage: UsageVector,
}

impl UsageReport {
    /// Canonical signed encoding, version 1.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(b"XEN-USAGE", 1);
        e.bytes(&self.contract.0);
        e.u64(self.seq);
        e.u64(self.elapsed_ms);
        e.u64(self.usage.version as u64);
        self.usage.counters.iter().for_each(|x| e.u64(*x));
        e.finish()
    }

    /// Signs with the provider's key.
    pub fn sign(self, key: &SecretKey) -> SignedUsageReport {
        let sig = key.sign(&self.signing_bytes());
        SignedUsageReport { report: self, sig }
    }
}

/// A usage report with the provider's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedUsageReport {
    pub report: UsageReport,
    pub sig: Signature,
}

/// The publisher's check of a report against the contract and the previous
/// report: the provider's signature, sequence, monotonic counters, and
/// resources no higher than the limits allow over the elapsed time (plus
/// [`REPORT_SLACK_PCT`] and [`REPORT_SLACK_NS`]). Returns the new total owed.
pub fn check_report(c: &Contract, prev: Option<&UsageReport>, next: &SignedUsageReport) -> Result<Amount, MarketError> {
    let t = &c.terms;
    let r = &next.report;
    let bad = |m: String| MarketError::BadReport(m);
    if r.contract != t.id() {
        return Err(bad("report is for another contract".into()));
    }
    t.provider.verify(&r.signing_bytes(), &next.sig).map_err(|source| MarketError::BadSignature { who: "provider", source })?;
    let zero = UsageReport { contract: r.contract, seq: 0, elapsed_ms: 0, usage: UsageVector::zero() };
    let p = prev.unwrap_or(&zero);
    if r.seq != p.seq + 1 {
        return Err(bad(format!("sequence {} after {}", r.seq, p.seq)));
    }
    if r.elapsed_ms <= p.elapsed_ms {
        return Err(bad(format!("time went from {} ms to {} ms", p.elapsed_ms, r.elapsed_ms)));
    }
    let d = r.usage.delta_since(&p.usage).ok_or_else(|| bad("a cumulative counter decreased".into()))?;
    let dt_ns = (r.elapsed_ms - p.elapsed_ms) as u128 * 1_000_000;
    let allow = |limit_ns: u128| limit_ns * (100 + REPORT_SLACK_PCT as u128) / 100 + REPORT_SLACK_NS as u128;
    let cpu = d.get(UsageComponent::CpuUserNs) as u128 + d.get(UsageComponent::CpuSystemNs) as u128;
    let cpu_max = allow(dt_ns * t.spec.cpu_millicores as u128 / 1000);
    if cpu > cpu_max {
        return Err(bad(format!("{cpu} ns of cpu in {} ms is above the {} millicore limit", dt_ns / 1_000_000, t.spec.cpu_millicores)));
    }
    let wall = d.get(UsageComponent::WallNs) as u128;
    if wall > allow(dt_ns) {
        return Err(bad(format!("{wall} ns of wall time in {} ms", dt_ns / 1_000_000)));
    }
    // byte-seconds: memory limit x seconds (ns / 1e9)
    let mem = d.get(UsageComponent::MemByteSeconds) as u128;
    let mem_max = allow(dt_ns) * t.spec.memory_bytes as u128 / 1_000_000_000;
    if mem > mem_max {
        return Err(bad(format!("{mem} byte-seconds of memory in {} ms is above the {}-byte limit", dt_ns / 1_000_000, t.spec.memory_bytes)));
    }
    t.owed(&r.usage)
}

/// The provider's check of a voucher: the contract's publisher signed it,
/// for this chain and channel, newer and not smaller than the best so far,
/// and within the deposit.
pub fn check_voucher(c: &Contract, channel: &ChannelId, best: Option<&SignedVoucher>, v: &SignedVoucher) -> Result<(), MarketError> {
    let bad = |m: String| MarketError::BadVoucher(m);
    if v.publisher != c.terms.publisher {
        return Err(bad("signed by a key other than the contract's publisher".into()));
    }
    v.verify().map_err(|source| MarketError::BadSignature { who: "publisher", source })?;
    if v.voucher.chain_id != c.terms.chain_id {
        return Err(bad(format!("for chain {:?}, not {:?}", v.voucher.chain_id, c.terms.chain_id)));
    }
    if v.voucher.channel != *channel {
        return Err(bad(format!("for channel {}, not {channel}", v.voucher.channel)));
    }
    if v.voucher.cumulative > c.terms.deposit {
        return Err(bad(format!("{} is above the deposit {}", v.voucher.cumulative, c.terms.deposit)));
    }
    if let Some(b) = best {
        if v.voucher.nonce <= b.voucher.nonce {
            return Err(bad(format!("nonce {} is not after {}", v.voucher.nonce, b.voucher.nonce)));
        }
        if v.voucher.cumulative < b.voucher.cumulative {
            return Err(bad(format!("cumulative {} is below the {} already promised", v.voucher.cumulative, b.voucher.cumulative)));
        }
    }
    Ok(())
}

/// Every message of a session. JSON: `{"type": "<snake_case>", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    Hello(Hello),
    /// Signature over [`session_transcript`].
    Auth { sig: Signature },
    Offer(Offer),
    /// The publisher asks for these rates in the next round.
    Counter { round: u32, rates: Rates },
    /// The publisher accepts the offer of `round`; terms follow.
    Accept { round: u32 },
    /// Either side ends the negotiation.
    Reject { reason: String },
    /// Publisher: terms for container `index` (empty host-key fingerprint).
    Propose(Terms),
    /// Provider: the terms completed with the host-key fingerprint, signed,
    /// and the host key itself (an OpenSSH public key line whose fingerprint
    /// is the one in the terms), for the publisher's `known_hosts`.
    Sign { terms: Terms, sig: Signature, host_key: String },
    /// Publisher: its signature over the completed terms.
    Countersign { contract: Hash32, sig: Signature },
    /// Publisher: the channel-open tx was submitted.
    ChannelOpened { contract: Hash32, channel: ChannelId, tx: Hash32 },
    /// Provider: the container runs; ssh streams may open.
    Ready { contract: Hash32 },
    Usage(SignedUsageReport),
    Voucher { contract: Hash32, voucher: SignedVoucher },
    /// Provider: the voucher with this nonce is stored durably.
    VoucherAck { contract: Hash32, nonce: u64 },
    /// Either side ends a contract (or, with no contract, the session).
    Close { contract: Option<Hash32>, reason: String },
}

impl Msg {
    /// Bounds what serde cannot: string lengths, rounds, nested validations.
    pub fn validate(&self) -> Result<(), MarketError> {
        match self {
            Msg::Hello(h) => check_len("chain_id", &h.chain_id, MAX_STR),
            Msg::Offer(o) => {
                if o.round >= MAX_ROUNDS {
                    return Err(invalid("round", format!("{} (at most {})", o.round, MAX_ROUNDS - 1)));
                }
                if o.count == 0 {
                    return Err(invalid("count", "zero containers offered"));
                }
                if let Some(c) = &o.calibration {
                    c.validate()?;
                }
                Ok(())
            }
            Msg::Counter { round, .. } | Msg::Accept { round } if *round >= MAX_ROUNDS => Err(invalid("round", format!("{round} (at most {})", MAX_ROUNDS - 1))),
            Msg::Reject { reason } | Msg::Close { reason, .. } => check_len("reason", reason, MAX_REASON),
            Msg::Propose(t) => t.validate(false),
            Msg::Sign { terms, host_key, .. } => {
                terms.validate(true)?;
                let k = crate::sshkey::parse(host_key).map_err(|e| invalid("host_key", e.to_string()))?;
                if k.fingerprint != terms.host_key_fingerprint {
                    return Err(invalid("host_key", format!("fingerprint {} is not the contract's {}", k.fingerprint, terms.host_key_fingerprint)));
                }
                Ok(())
            }
            Msg::Voucher { voucher, .. } => check_len("voucher.chain_id", &voucher.voucher.chain_id, MAX_STR),
            _ => Ok(()),
        }
    }
}

/// One frame's bytes.
pub fn encode(m: &Msg) -> Vec<u8> {
    serde_json::to_vec(m).expect("market messages always serialize")
}

/// Parses and validates one frame; refuses oversized or malformed input.
pub fn decode(b: &[u8]) -> Result<Msg, MarketError> {
    if b.len() > MAX_FRAME_BYTES {
        return Err(MarketError::TooLarge(b.len()));
    }
    let m: Msg = serde_json::from_slice(b).map_err(|e| MarketError::Malformed(e.to_string()))?;
    m.validate()?;
    Ok(m)
}

#[cfg(test)]
#[path = "market_tests.rs"]
mod tests;
