//! The mempool: txs waiting for a block. A tx is admitted only after its
//! chain id, signature, nonce, fee and the sender's balance (net of the
//! sender's txs already waiting) check out. The pool is bounded; when full,
//! a tx must pay more than the cheapest waiting tx, which is evicted.
//! Duplicates and replays are refused with a reason.

use crate::ledger::{spend_of, Ledger, TxError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use zennet_protocol::keys::Address;
use zennet_protocol::tx::{Hash32, SignedTx};
use zennet_protocol::Amount;

/// Bounds of the pool.
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    /// Most txs held.
    pub max_txs: usize,
    /// How far ahead of the account nonce a tx may be.
    pub max_nonce_ahead: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 50_000,
            max_nonce_ahead: 64,
        }
    }
}

/// Why a tx was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("tx {0} is already in the mempool")]
    Duplicate(Hash32),
    #[error("sender already has tx {existing} waiting with nonce {nonce}")]
    NonceTaken { nonce: u64, existing: Hash32 },
    #[error("nonce {got} is more than {max} ahead of the account nonce {expected}")]
    NonceTooFar { expected: u64, got: u64, max: u64 },
    #[error("mempool is full: fee must exceed {min_fee}")]
    Full { min_fee: Amount },
    #[error(transparent)]
    Invalid(#[from] TxError),
}

/// The pool.
#[derive(Debug, Default)]
pub struct Mempool {
    cfg: MempoolConfig,
    txs: HashMap<Hash32, SignedTx>,
    by_sender: BTreeMap<(Address, u64), Hash32>,
    by_fee: BTreeSet<(Amount, Hash32)>,
}

impl Mempool {
    /// An empty pool.
    pub fn new(cfg: MempoolConfig) -> Mempool {
        Mempool {
            cfg,
            ..Default::default()
        }
    }

    /// Number of waiting txs.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// A waiting tx by hash.
    pub fn get(&self, h: &Hash32) -> Option<&SignedTx> {
        self.txs.get(h)
    }

    /// Validates and admits a tx; returns its hash.
    pub fn admit(&mut self, ledger: &Ledger, stx: SignedTx) -> Result<Hash32, MempoolError> {
        let hash = stx.hash();
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::Duplicate(hash));
        }
        ledger.check_stateless(&stx)?;
        let sender = stx.tx.sender();
        let acc = ledger.account(&sender);
        let nonce = stx.tx.nonce;
        if nonce < acc.nonce {
            return Err(TxError::NonceReplay {
                expected: acc.nonce,
                got: nonce,
            }
            .into());
        }
        if nonce > acc.nonce + self.cfg.max_nonce_ahead {
            return Err(MempoolError::NonceTooFar {
                expected: acc.nonce,
                got: nonce,
                max: self.cfg.max_nonce_ahead,
            });
        }
        if let Some(existing) = self.by_sender.get(&(sender, nonce)) {
            return Err(MempoolError::NonceTaken {
                nonce,
                existing: *existing,
            });
        }
        let mut committed = Amount::ZERO;
        for (_, h) in self.by_sender.range((sender, 0)..=(sender, u64::MAX)) {
            let t = &self.txs[h];
            committed = committed
                .saturating_add(t.tx.fee)
                .saturating_add(spend_of(&t.tx.body));
        }
        ledger.check_funds(&stx, acc.balance.saturating_sub(committed))?;
        if self.txs.len() >= self.cfg.max_txs {
            let (min_fee, cheapest) = *self.by_fee.iter().next().expect("full pool is not empty");
            if stx.tx.fee <= min_fee {
                return Err(MempoolError::Full { min_fee });
            }
            self.remove(&cheapest);
        }
        self.by_sender.insert((sender, nonce), hash);
        self.by_fee.insert((stx.tx.fee, hash));
        self.txs.insert(hash, stx);
        Ok(hash)
    }

    /// Removes a tx.
    pub fn remove(&mut self, h: &Hash32) -> Option<SignedTx> {
        let t = self.txs.remove(h)?;
        self.by_sender.remove(&(t.tx.sender(), t.tx.nonce));
        self.by_fee.remove(&(t.tx.fee, *h));
        Some(t)
    }

    /// Up to `max` txs in an order that applies (per sender by nonce),
    /// senders with the highest-paying txs first.
    pub fn candidates(&self, max: usize) -> Vec<SignedTx> {
        let mut best: HashMap<Address, Amount> = HashMap::new();
        for t in self.txs.values() {
            let e = best.entry(t.tx.sender()).or_default();
            *e = (*e).max(t.tx.fee);
        }
        let mut senders: Vec<(Amount, Address)> = best.into_iter().map(|(a, f)| (f, a)).collect();
        senders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out = Vec::new();
        for (_, s) in senders {
            for (_, h) in self.by_sender.range((s, 0)..=(s, u64::MAX)) {
                if out.len() >= max {
                    return out;
                }
                out.push(self.txs[h].clone());
            }
        }
        out
    }

    /// Drops txs that can no longer apply (nonce already used).
    pub fn prune(&mut self, ledger: &Ledger) {
        let stale: Vec<Hash32> = self
            .by_sender
            .iter()
            .filter(|((a, n), _)| *n < ledger.account(a).nonce)
            .map(|(_, h)| *h)
            .collect();
        for h in stale {
            self.remove(&h);
        }
    }
}

trait SatAdd {
    fn saturating_add(self, o: Amount) -> Amount;
}
impl SatAdd for Amount {
    fn saturating_add(self, o: Amount) -> Amount {
        Amount(self.0.saturating_add(o.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ChainParams;
    use zennet_protocol::keys::SecretKey;
    use zennet_protocol::tx::{Tx, TxBody};

    fn ledger() -> Ledger {
        let p = ChainParams {
            chain_id: "t".into(),
            initial_block_reward: Amount(0),
            halving_interval: 100,
            producer_fee_share_bps: 5000,
            min_fee: Amount(1),
            max_producers: 3,
            slot_ms: 1000,
        };
        let bal: Vec<_> = (0..4)
            .map(|i| {
                (
                    SecretKey::from_seed(&format!("k{i}")).address(),
                    Amount(100),
                )
            })
            .collect();
        Ledger::genesis(p, &bal, &[])
    }

    fn t(k: u32, nonce: u64, fee: u64, amount: u64) -> SignedTx {
        let key = SecretKey::from_seed(&format!("k{k}"));
        Tx {
            chain_id: "t".into(),
            from: key.public(),
            nonce,
            fee: Amount(fee),
            body: TxBody::Transfer {
                to: key.address(),
                amount: Amount(amount),
            },
        }
        .sign(&key)
    }

    #[test]
    fn rejects_duplicate_replay_and_taken_nonce() {
        let mut l = ledger();
        let mut m = Mempool::new(MempoolConfig::default());
        let h = m.admit(&l, t(0, 0, 1, 1)).unwrap();
        assert_eq!(m.admit(&l, t(0, 0, 1, 1)), Err(MempoolError::Duplicate(h)));
        assert!(matches!(
            m.admit(&l, t(0, 0, 2, 1)),
            Err(MempoolError::NonceTaken { nonce: 0, .. })
        ));
        let tx = m.remove(&h).unwrap();
        l.apply_tx(&tx).unwrap();
        assert_eq!(
            m.admit(&l, tx),
            Err(MempoolError::Invalid(TxError::NonceReplay {
                expected: 1,
                got: 0
            }))
        );
        assert!(matches!(
            m.admit(&l, t(0, 99, 1, 1)),
            Err(MempoolError::NonceTooFar { .. })
        ));
    }

    #[test]
    fn rejects_bad_signature_and_overspend_across_pending() {
        let l = ledger();
        let mut m = Mempool::new(MempoolConfig::default());
        let mut bad = t(0, 0, 1, 1);
        bad.tx.fee = Amount(2);
        assert!(matches!(
            m.admit(&l, bad),
            Err(MempoolError::Invalid(TxError::BadSignature(_)))
        ));
        m.admit(&l, t(0, 0, 10, 50)).unwrap();
        // 60 committed, 40 left: 41 + fee 1 is too much
        assert!(matches!(
            m.admit(&l, t(0, 1, 1, 40)),
            Err(MempoolError::Invalid(TxError::InsufficientBalance { .. }))
        ));
        m.admit(&l, t(0, 1, 1, 39)).unwrap();
    }

    #[test]
    fn full_pool_evicts_lowest_fee() {
        let l = ledger();
        let mut m = Mempool::new(MempoolConfig {
            max_txs: 2,
            max_nonce_ahead: 8,
        });
        let cheap = m.admit(&l, t(0, 0, 1, 1)).unwrap();
        m.admit(&l, t(1, 0, 5, 1)).unwrap();
        assert_eq!(
            m.admit(&l, t(2, 0, 1, 1)),
            Err(MempoolError::Full { min_fee: Amount(1) })
        );
        m.admit(&l, t(3, 0, 2, 1)).unwrap();
        assert!(m.get(&cheap).is_none());
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn candidates_apply_in_nonce_order() {
        let mut l = ledger();
        let mut m = Mempool::new(MempoolConfig::default());
        m.admit(&l, t(0, 1, 1, 1)).unwrap();
        m.admit(&l, t(0, 0, 1, 1)).unwrap();
        m.admit(&l, t(1, 0, 9, 1)).unwrap();
        let c = m.candidates(10);
        assert_eq!(c[0].tx.fee, Amount(9));
        for tx in &c {
            l.apply_tx(tx).unwrap();
        }
        m.prune(&l);
        assert!(m.is_empty());
    }
}
