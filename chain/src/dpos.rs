//! Delegated proof of stake: who produces in which slot, when a block becomes
//! irreversible, and which fork to follow.
//!
//! * Schedule: the top `max_producers` registered delegates by stake-weighted
//!   votes (ties broken by address), in address order. A delegate nobody
//!   backs (zero votes) is never scheduled, so registering alone cannot
//!   stall the chain with empty slots. Slot `s` belongs to
//!   `schedule[s % len]`; a producer that misses its slot is simply skipped:
//!   the next slot's producer builds on the head it has.
//! * Irreversibility (the Graphene/EOSIO rule): a block is irreversible once
//!   more than 2/3 of the scheduled producers have produced it or a
//!   descendant of it.
//! * Fork choice: the longest chain that contains the last irreversible
//!   block; a block at or below the irreversible height that is not the
//!   irreversible chain's block is rejected.

use crate::ledger::Ledger;
use std::collections::{BTreeSet, HashMap};
use zennet_protocol::keys::Address;
use zennet_protocol::tx::Hash32;

/// Why a block was refused by fork choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DposError {
    #[error("block {hash} at height {height} conflicts with irreversible height {lib}")]
    BelowIrreversible { hash: Hash32, height: u64, lib: u64 },
    #[error("block {hash} has unknown parent {parent}")]
    UnknownParent { hash: Hash32, parent: Hash32 },
    #[error("block {hash} at slot {slot} is not by the slot's producer {expected}")]
    WrongProducer {
        hash: Hash32,
        slot: u64,
        expected: Address,
    },
    #[error("block {hash} at slot {slot} is not after its parent's slot {parent_slot}")]
    SlotNotAfterParent {
        hash: Hash32,
        slot: u64,
        parent_slot: u64,
    },
    #[error("the schedule is empty: no registered delegates")]
    EmptySchedule,
}

/// The producer schedule computed from the ledger.
pub fn schedule(ledger: &Ledger) -> Vec<Address> {
    let mut ranked: Vec<(u128, Address)> = ledger
        .tally()
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .map(|(a, w)| (w, a))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut top: Vec<Address> = ranked
        .into_iter()
        .take(ledger.params.max_producers)
        .map(|(_, a)| a)
        .collect();
    top.sort();
    top
}

/// The producer of `slot` under `schedule`.
pub fn producer_of(schedule: &[Address], slot: u64) -> Result<Address, DposError> {
    if schedule.is_empty() {
        return Err(DposError::EmptySchedule);
    }
    Ok(schedule[(slot % schedule.len() as u64) as usize])
}

/// Slot number at `now_ms` for a chain that started at `genesis_ms`.
pub fn slot_at(genesis_ms: u64, slot_ms: u64, now_ms: u64) -> u64 {
    now_ms.saturating_sub(genesis_ms) / slot_ms.max(1)
}

/// Number of distinct producers needed for irreversibility: more than 2/3 of `n`.
pub fn quorum(n: usize) -> usize {
    n * 2 / 3 + 1
}

/// Given the producers of a chain's blocks from some irreversible height `base`
/// upwards (`producers[i]` produced height `base + 1 + i`), the new
/// irreversible height (at least `base`).
pub fn irreversible_height(base: u64, producers: &[Address], schedule_len: usize) -> u64 {
    let need = quorum(schedule_len);
    let mut seen = BTreeSet::new();
    for (i, p) in producers.iter().enumerate().rev() {
        seen.insert(*p);
        if seen.len() >= need {
            return base + 1 + i as u64;
        }
    }
    base
}

/// A block as fork choice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub hash: Hash32,
    pub parent: Hash32,
    pub height: u64,
    pub slot: u64,
    pub producer: Address,
}

/// The tree of blocks above the last irreversible block.
#[derive(Debug)]
pub struct ForkTree {
    lib: BlockRef,
    blocks: HashMap<Hash32, BlockRef>,
    schedule_len: usize,
}

impl ForkTree {
    /// Starts from an irreversible block.
    pub fn new(lib: BlockRef, schedule_len: usize) -> ForkTree {
        ForkTree {
            lib,
            blocks: HashMap::new(),
            schedule_len,
        }
    }

    /// The last irreversible block.
    pub fn lib(&self) -> &BlockRef {
        &self.lib
    }

    fn get(&self, h: &Hash32) -> Option<&BlockRef> {
        if *h == self.lib.hash {
            Some(&self.lib)
        } else {
            self.blocks.get(h)
        }
    }

    /// Adds a block, checking its producer against `schedule`. Refuses blocks
    /// that conflict with the irreversible chain.
    pub fn insert(&mut self, b: BlockRef, schedule: &[Address]) -> Result<(), DposError> {
        if b.height <= self.lib.height {
            return Err(DposError::BelowIrreversible {
                hash: b.hash,
                height: b.height,
                lib: self.lib.height,
            });
        }
        let parent = self.get(&b.parent).ok_or(DposError::UnknownParent {
            hash: b.hash,
            parent: b.parent,
        })?;
        if b.slot <= parent.slot && parent.height > 0 {
            return Err(DposError::SlotNotAfterParent {
                hash: b.hash,
                slot: b.slot,
                parent_slot: parent.slot,
            });
        }
        let expected = producer_of(schedule, b.slot)?;
        if expected != b.producer {
            return Err(DposError::WrongProducer {
                hash: b.hash,
                slot: b.slot,
                expected,
            });
        }
        self.blocks.insert(b.hash, b);
        Ok(())
    }

    /// The chain from just above the irreversible block to `tip`, oldest first.
    pub fn chain_to(&self, tip: &Hash32) -> Vec<BlockRef> {
        let mut out = Vec::new();
        let mut cur = *tip;
        while let Some(b) = self.blocks.get(&cur) {
            out.push(b.clone());
            cur = b.parent;
        }
        out.reverse();
        out
    }

    /// The head by fork choice: the highest block (ties: lowest hash).
    pub fn head(&self) -> BlockRef {
        self.blocks
            .values()
            .max_by(|a, b| a.height.cmp(&b.height).then(b.hash.cmp(&a.hash)))
            .cloned()
            .unwrap_or_else(|| self.lib.clone())
    }

    /// Advances irreversibility along the head chain and prunes blocks that
    /// no longer descend from it. Returns the newly irreversible blocks.
    pub fn advance(&mut self) -> Vec<BlockRef> {
        let head = self.head();
        let chain = self.chain_to(&head.hash);
        let producers: Vec<Address> = chain.iter().map(|b| b.producer).collect();
        let new_lib = irreversible_height(self.lib.height, &producers, self.schedule_len);
        if new_lib == self.lib.height {
            return Vec::new();
        }
        let done: Vec<BlockRef> = chain
            .iter()
            .filter(|b| b.height <= new_lib)
            .cloned()
            .collect();
        self.lib = done.last().expect("new_lib > lib").clone();
        // Keep only descendants of the new irreversible block.
        let keep: BTreeSet<Hash32> = self
            .blocks
            .values()
            .filter(|b| b.height > new_lib && self.descends_from(b, &self.lib.hash))
            .map(|b| b.hash)
            .collect();
        self.blocks.retain(|h, _| keep.contains(h));
        done
    }

    fn descends_from(&self, b: &BlockRef, anc: &Hash32) -> bool {
        let mut cur = b.clone();
        loop {
            if cur.parent == *anc {
                return true;
            }
            match self.blocks.get(&cur.parent) {
                Some(p) => cur = p.clone(),
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zennet_protocol::keys::SecretKey;

    fn addrs(n: usize) -> Vec<Address> {
        let mut v: Vec<Address> = (0..n)
            .map(|i| SecretKey::from_seed(&format!("d{i}")).address())
            .collect();
        v.sort();
        v
    }

    fn h(n: u64) -> Hash32 {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        Hash32(b)
    }

    fn genesis() -> BlockRef {
        BlockRef {
            hash: h(0),
            parent: Hash32::default(),
            height: 0,
            slot: 0,
            producer: addrs(1)[0],
        }
    }

    #[test]
    fn quorum_is_more_than_two_thirds() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(3), 3);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(21), 15);
    }

    #[test]
    fn four_producers_in_turn_finalise_with_three() {
        let s = addrs(4);
        let mut t = ForkTree::new(genesis(), 4);
        for (i, slot) in (1..=3u64).enumerate() {
            t.insert(
                BlockRef {
                    hash: h(slot),
                    parent: h(slot - 1),
                    height: i as u64 + 1,
                    slot,
                    producer: producer_of(&s, slot).unwrap(),
                },
                &s,
            )
            .unwrap();
        }
        let done = t.advance();
        assert_eq!(done.len(), 1);
        assert_eq!(t.lib().height, 1);
    }

    #[test]
    fn skipped_producer_does_not_stop_finality() {
        // producer of slot 2 is down: blocks at slots 1,3,4,5,7,8
        let s = addrs(4);
        let mut t = ForkTree::new(genesis(), 4);
        let mut parent = h(0);
        for (i, slot) in [1u64, 3, 4, 5, 7, 8].into_iter().enumerate() {
            let height = i as u64 + 1;
            t.insert(
                BlockRef {
                    hash: h(slot),
                    parent,
                    height,
                    slot,
                    producer: producer_of(&s, slot).unwrap(),
                },
                &s,
            )
            .unwrap();
            parent = h(slot);
        }
        t.advance();
        assert!(t.lib().height >= 3, "lib {}", t.lib().height);
    }

    #[test]
    fn partitioned_minority_cannot_finalise() {
        // only producers of slots 1 and 2 (2 of 4) keep building
        let s = addrs(4);
        let mut t = ForkTree::new(genesis(), 4);
        let mut parent = h(0);
        for (i, slot) in [1u64, 2, 5, 6, 9, 10, 13, 14].iter().enumerate() {
            t.insert(
                BlockRef {
                    hash: h(*slot),
                    parent,
                    height: i as u64 + 1,
                    slot: *slot,
                    producer: producer_of(&s, *slot).unwrap(),
                },
                &s,
            )
            .unwrap();
            parent = h(*slot);
        }
        assert!(t.advance().is_empty());
        assert_eq!(t.lib().height, 0);
    }

    #[test]
    fn conflicting_block_below_irreversible_is_rejected() {
        let s = addrs(4);
        let mut t = ForkTree::new(genesis(), 4);
        for slot in 1..=4u64 {
            t.insert(
                BlockRef {
                    hash: h(slot),
                    parent: h(slot - 1),
                    height: slot,
                    slot,
                    producer: producer_of(&s, slot).unwrap(),
                },
                &s,
            )
            .unwrap();
        }
        t.advance();
        assert_eq!(t.lib().height, 2);
        // a competing block at height 2 on top of height 1
        let rival = BlockRef {
            hash: h(99),
            parent: h(1),
            height: 2,
            slot: 5,
            producer: producer_of(&s, 5).unwrap(),
        };
        assert!(matches!(
            t.insert(rival, &s),
            Err(DposError::BelowIrreversible { .. })
        ));
        // fork choice picks the longer chain above lib
        let alt = BlockRef {
            hash: h(100),
            parent: h(2),
            height: 3,
            slot: 5,
            producer: producer_of(&s, 5).unwrap(),
        };
        t.insert(alt.clone(), &s).unwrap();
        assert_eq!(t.head().height, 4);
        let alt2 = BlockRef {
            hash: h(101),
            parent: h(100),
            height: 4,
            slot: 6,
            producer: producer_of(&s, 6).unwrap(),
        };
        let alt3 = BlockRef {
            hash: h(102),
            parent: h(101),
            height: 5,
            slot: 7,
            producer: producer_of(&s, 7).unwrap(),
        };
        t.insert(alt2, &s).unwrap();
        t.insert(alt3, &s).unwrap();
        assert_eq!(t.head().hash, h(102));
    }

    #[test]
    fn schedule_is_by_stake_and_skips_unbacked_delegates() {
        use crate::ledger::{ChainParams, Ledger};
        use zennet_protocol::tx::{Tx, TxBody};
        use zennet_protocol::Amount;
        let p = ChainParams {
            chain_id: "t".into(),
            initial_block_reward: Amount(0),
            halving_interval: 100,
            producer_fee_share_bps: 0,
            min_fee: Amount(1),
            max_producers: 2,
            slot_ms: 1000,
        };
        let k = |i: u32| SecretKey::from_seed(&format!("s{i}"));
        let bal: Vec<_> = (0..4)
            .map(|i| (k(i).address(), Amount(100 * (i as u64 + 1))))
            .collect();
        let mut l = Ledger::genesis(p, &bal, &[k(0).address(), k(1).address()]);
        let mut expect = vec![k(0).address(), k(1).address()];
        expect.sort();
        assert_eq!(schedule(&l), expect, "genesis delegates back themselves");
        // k2 registers but nobody votes for it: not scheduled
        let reg = Tx {
            chain_id: "t".into(),
            from: k(2).public(),
            nonce: 0,
            fee: Amount(1),
            body: TxBody::RegisterDelegate,
        }
        .sign(&k(2));
        l.apply_tx(&reg).unwrap();
        assert_eq!(schedule(&l), expect);
        // k3 (stake 400) votes for k2: k2 outranks k0 (stake 100) in a schedule of 2
        let vote = Tx {
            chain_id: "t".into(),
            from: k(3).public(),
            nonce: 0,
            fee: Amount(1),
            body: TxBody::Vote {
                delegate: k(2).address(),
            },
        }
        .sign(&k(3));
        l.apply_tx(&vote).unwrap();
        let mut expect = vec![k(1).address(), k(2).address()];
        expect.sort();
        assert_eq!(schedule(&l), expect);
    }

    #[test]
    fn wrong_producer_is_rejected() {
        let s = addrs(4);
        let mut t = ForkTree::new(genesis(), 4);
        let b = BlockRef {
            hash: h(1),
            parent: h(0),
            height: 1,
            slot: 1,
            producer: producer_of(&s, 2).unwrap(),
        };
        assert!(matches!(
            t.insert(b, &s),
            Err(DposError::WrongProducer { .. })
        ));
    }
}
