//! The running node: genesis, block production in the node's own slots,
//! irreversibility tracking, and the events RPC subscribers receive. All
//! state sits behind one lock held for a whole block, so readers never see a
//! half-applied block; the store commits each block atomically before it is
//! announced.

use crate::block::{Block, BlockHeader};
use crate::dpos;
use crate::ledger::TxEffect;
use crate::ledger::{Announcement, ChainParams, Ledger};
use crate::mempool::{Mempool, MempoolConfig};
use crate::store::{Receipt, Store, StoreError, Tip};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokio::sync::broadcast;
use zennet_protocol::keys::{Address, SecretKey};
use zennet_protocol::tx::{Hash32, SignedTx};
use zennet_protocol::Amount;

/// The chain's starting point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub params: ChainParams,
    /// Start of slot 0, milliseconds since the Unix epoch.
    pub genesis_ms: u64,
    pub balances: Vec<(Address, Amount)>,
    pub delegates: Vec<Address>,
}

/// The chain id of the dev network.
pub const DEV_CHAIN_ID: &str = "xen-dev-1";
/// Each dev key is `SHA-256("xencoin-dev-<i>")`; keys 0..=9 are prefunded.
pub const DEV_KEYS: usize = 10;

/// Dev key `i`: `SecretKey::from_seed("xencoin-dev-<i>")`. Public knowledge: dev only.
pub fn dev_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("xencoin-dev-{i}"))
}

/// The fixed dev genesis: dev keys 0..10 hold 1,000,000 XEN each; dev keys
/// `0..validators` are the delegates. Slot 0 starts at the Unix epoch.
pub fn dev_genesis(validators: usize, slot_ms: u64) -> Genesis {
    Genesis {
        params: ChainParams {
            chain_id: DEV_CHAIN_ID.into(),
            initial_block_reward: Amount::xen(1),
            halving_interval: 10_000_000,
            producer_fee_share_bps: 2_500,
            min_fee: Amount(1_000),
            max_producers: 21,
            slot_ms,
        },
        genesis_ms: 0,
        balances: (0..DEV_KEYS)
            .map(|i| (dev_key(i).address(), Amount::xen(1_000_000)))
            .collect(),
        delegates: (0..validators.max(1))
            .map(|i| dev_key(i).address())
            .collect(),
    }
}

/// What a subscriber is told.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Head(HeadInfo),
    Announcement(Announcement),
    /// A block this node produced (for gossip; not sent to RPC subscribers).
    #[serde(skip)]
    Produced(Block),
    /// A tx admitted through RPC (for gossip; not sent to RPC subscribers).
    #[serde(skip)]
    Submitted(SignedTx),
}

/// What became of a block received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Applied and committed: the new head.
    Applied,
    /// Already on our chain.
    Known,
    /// Higher than our head + 1: catch up from this height first.
    NeedSync(u64),
}

/// Why a block from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("block {hash} at height {height} conflicts with irreversible height {lib}")]
    BelowIrreversible { hash: Hash32, height: u64, lib: u64 },
    #[error("block {hash} at height {height} is on another fork (parent {parent}); reorganisation above the irreversible height is not built")]
    Fork {
        hash: Hash32,
        height: u64,
        parent: Hash32,
    },
    #[error("block {hash}: {reason}")]
    Invalid { hash: Hash32, reason: String },
}

/// The chain head as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadInfo {
    pub height: u64,
    pub hash: Hash32,
    pub slot: u64,
    pub timestamp_ms: u64,
    pub irreversible_height: u64,
    pub txs: usize,
}

/// What failed in the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database holds chain {found:?} but genesis is for {expected:?}")]
    WrongChain { found: String, expected: String },
    #[error(transparent)]
    Dpos(#[from] dpos::DposError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// The node.
pub struct Node {
    pub ledger: Ledger,
    pub store: Store,
    pub mempool: Mempool,
    pub tip: Tip,
    pub genesis: Genesis,
    key: Option<SecretKey>,
    /// Producers of the blocks above the irreversible height, oldest first.
    recent: Vec<Address>,
    pub events: broadcast::Sender<Event>,
    /// Most txs per block (keeps a block under the gossip bound).
    pub max_block_txs: usize,
    /// False while catching up from peers: a node that is behind must not
    /// produce on a stale head. Nodes without peers are always synced.
    pub synced: bool,
    /// The state at `base` (the irreversible block, or the tip loaded at
    /// start if higher), to rewind to when a longer branch wins.
    base_state: Ledger,
    base: Tip,
    /// Our blocks above `base`, oldest first.
    above: std::collections::VecDeque<Block>,
    /// Timestamp and tx count of the head block (0 until one is made or imported here).
    head_meta: (u64, usize),
}

impl Node {
    /// Opens the database in `dir` (creating it from `genesis` if new).
    /// `key` is the producer key, if this node is a delegate.
    pub fn open(dir: &Path, genesis: Genesis, key: Option<SecretKey>) -> Result<Node, NodeError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt {
            path: dir.into(),
            table: "-",
            reason: e.to_string(),
        })?;
        let store = Store::open(&dir.join("chain.redb"))?;
        let (ledger, tip) = match store.load()? {
            Some((l, t)) => {
                if l.params.chain_id != genesis.params.chain_id {
                    return Err(NodeError::WrongChain {
                        found: l.params.chain_id,
                        expected: genesis.params.chain_id,
                    });
                }
                (l, t)
            }
            None => {
                let mut l = Ledger::genesis(
                    genesis.params.clone(),
                    &genesis.balances,
                    &genesis.delegates,
                );
                let tip = Tip {
                    height: 0,
                    hash: Hash32::default(),
                    slot: 0,
                    irreversible: 0,
                    genesis_ms: genesis.genesis_ms,
                };
                store.commit(&mut l, None, &[], &tip)?;
                (l, tip)
            }
        };
        // Our blocks above the irreversible height, read once: their
        // producers count towards irreversibility, and they are the rewind log.
        let above = (tip.irreversible + 1..=tip.height)
            .filter_map(|h| store.block(h).transpose())
            .collect::<Result<std::collections::VecDeque<Block>, _>>()?;
        let recent = above.iter().map(|b| b.header.producer.address()).collect();
        let (events, _) = broadcast::channel(1024);
        let (base_state, base, above) = Self::rewind_base(&store, &ledger, &tip, above)?;
        Ok(Node {
            base_state,
            base,
            above,
            head_meta: (0, 0),
            ledger,
            store,
            mempool: Mempool::new(MempoolConfig::default()),
            tip,
            genesis,
            key,
            recent,
            events,
            max_block_txs: 5_000,
            synced: true,
        })
    }

    /// The rewind base after a (re)start: the irreversible state rebuilt from
    /// the undo records, with `above` (our blocks above it). Falls back to the
    /// loaded tip (no rewind below it) when the records are missing.
    fn rewind_base(
        store: &Store,
        ledger: &Ledger,
        tip: &Tip,
        above: std::collections::VecDeque<Block>,
    ) -> Result<(Ledger, Tip, std::collections::VecDeque<Block>), NodeError> {
        let Some(state) = store.irreversible_state(ledger, tip)? else {
            tracing::warn!(height = tip.height, "no undo records: cannot rewind below the loaded tip");
            return Ok((ledger.clone(), tip.clone(), Default::default()));
        };
        let lib = tip.irreversible;
        if above.len() as u64 != tip.height - lib {
            return Err(StoreError::Corrupt {
                path: store.path().into(),
                table: "blocks",
                reason: format!("{} of the blocks {}..={} are missing", tip.height - lib - above.len() as u64, lib + 1, tip.height),
            }
            .into());
        }
        let (hash, slot) = match store.block(lib)? {
            Some(b) if lib > 0 => (b.header.hash(), b.header.slot),
            _ => (Hash32::default(), 0),
        };
        let base = Tip { height: lib, hash, slot, irreversible: lib, genesis_ms: tip.genesis_ms };
        Ok((state, base, above))
    }

    /// The head as clients see it.
    pub fn head(&self) -> HeadInfo {
        let (timestamp_ms, txs) = self.head_meta;
        HeadInfo {
            height: self.tip.height,
            hash: self.tip.hash,
            slot: self.tip.slot,
            timestamp_ms,
            irreversible_height: self.tip.irreversible,
            txs,
        }
    }

    /// The slot at `now_ms`.
    pub fn slot_at(&self, now_ms: u64) -> u64 {
        dpos::slot_at(self.tip.genesis_ms, self.ledger.params.slot_ms, now_ms)
    }

    /// Produces a block if `now_ms` is in one of this node's slots and no block
    /// was made in that slot yet.
    pub fn maybe_produce(&mut self, now_ms: u64) -> Result<Option<Block>, NodeError> {
        let Some(key) = self.key.clone() else {
            return Ok(None);
        };
        if !self.synced {
            return Ok(None);
        }
        let slot = self.slot_at(now_ms);
        if slot <= self.tip.slot && self.tip.height > 0 {
            return Ok(None);
        }
        let schedule = dpos::schedule(&self.ledger);
        if dpos::producer_of(&schedule, slot)? != key.address() {
            return Ok(None);
        }
        Ok(Some(self.produce(&key, slot, now_ms, schedule.len())?))
    }

    fn produce(
        &mut self,
        key: &SecretKey,
        slot: u64,
        now_ms: u64,
        schedule_len: usize,
    ) -> Result<Block, NodeError> {
        let mut txs = Vec::new();
        let mut effects = Vec::new();
        for stx in self.mempool.candidates(self.max_block_txs) {
            match self.ledger.apply_verified(&stx) {
                Ok((effect, fee)) => {
                    effects.push((effect, fee));
                    txs.push(stx);
                }
                Err(e) => {
                    tracing::debug!(tx = %stx.hash(), error = %e, "dropping tx that no longer applies");
                    self.mempool.remove(&stx.hash());
                }
            }
        }
        self.ledger.finish_block(key.address());
        let header = BlockHeader {
            chain_id: self.ledger.params.chain_id.clone(),
            height: self.tip.height + 1,
            parent: self.tip.hash,
            slot,
            timestamp_ms: now_ms,
            producer: key.public(),
            tx_root: Hash32::default(),
        };
        let block = Block::seal(header, txs, key);
        self.commit_applied(&block, effects, schedule_len)?;
        let _ = self.events.send(Event::Produced(block.clone()));
        Ok(block)
    }

    /// Records a block whose txs and rewards are already applied to the ledger:
    /// irreversibility, storage (atomic), mempool cleanup, events.
    fn commit_applied(
        &mut self,
        block: &Block,
        effects: Vec<(TxEffect, Amount)>,
        schedule_len: usize,
    ) -> Result<(), NodeError> {
        let hash = block.header.hash();
        let receipts: Vec<Receipt> = block
            .txs
            .iter()
            .zip(effects)
            .enumerate()
            .map(|(i, (t, (effect, fee)))| Receipt {
                tx: t.hash(),
                block: hash,
                height: block.header.height,
                index: i as u32,
                fee,
                effect,
            })
            .collect();
        self.recent.push(block.header.producer.address());
        let lib = dpos::irreversible_height(self.tip.irreversible, &self.recent, schedule_len);
        self.recent.drain(..(lib - self.tip.irreversible) as usize);
        self.tip = Tip {
            height: block.header.height,
            hash,
            slot: block.header.slot,
            irreversible: lib,
            genesis_ms: self.tip.genesis_ms,
        };
        self.store
            .commit(&mut self.ledger, Some(block), &receipts, &self.tip)?;
        self.above.push_back(block.clone());
        self.advance_base(lib);
        for r in &receipts {
            self.mempool.remove(&r.tx);
        }
        self.mempool.prune(&self.ledger);
        self.head_meta = (block.header.timestamp_ms, block.txs.len());
        let _ = self.events.send(Event::Head(self.head()));
        for r in &receipts {
            if let Some(id) = r.effect.announcement {
                if let Some(a) = self.ledger.anns.get(&id) {
                    let _ = self.events.send(Event::Announcement(a.clone()));
                }
            }
        }
        Ok(())
    }

    /// Moves the rewind base up to the irreversible height.
    fn advance_base(&mut self, lib: u64) {
        while self.above.front().is_some_and(|b| b.header.height <= lib) {
            let b = self.above.pop_front().expect("checked");
            if b.header.height <= self.base.height {
                continue;
            }
            for t in &b.txs {
                if let Err(e) = self.base_state.apply_verified(t) {
                    // Cannot happen: the same block applied to the head state.
                    tracing::error!(error = %e, "rewind base diverged; rewinding disabled until restart");
                    self.base.height = u64::MAX;
                    return;
                }
            }
            self.base_state.finish_block(b.header.producer.address());
            self.base_state.take_dirty();
            self.base = Tip {
                height: b.header.height,
                hash: b.header.hash(),
                slot: b.header.slot,
                irreversible: b.header.height,
                genesis_ms: self.base.genesis_ms,
            };
        }
    }

    /// Drops our blocks above the base (never below the irreversible height):
    /// state, blocks and receipts go back atomically; their txs return to the
    /// mempool where still valid; production pauses until caught up.
    pub fn rewind(&mut self) -> Result<(), NodeError> {
        if self.base.height == u64::MAX || self.base.height < self.tip.irreversible {
            return Ok(());
        }
        let dropped: Vec<Block> = self.above.drain(..).collect();
        let dropped_txs: Vec<Hash32> = dropped
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.hash()))
            .collect();
        let mut state = self.base_state.clone();
        state.mark_all_dirty(&self.ledger);
        self.ledger = state;
        let keep = self.base.height;
        self.recent
            .truncate(keep.saturating_sub(self.tip.irreversible) as usize);
        self.tip = Tip {
            height: keep,
            hash: self.base.hash,
            slot: self.base.slot,
            irreversible: self.tip.irreversible,
            genesis_ms: self.tip.genesis_ms,
        };
        self.head_meta = (0, 0);
        self.store
            .commit_rewind(&mut self.ledger, keep, &dropped_txs, &self.tip)?;
        tracing::warn!(
            to = keep,
            dropped = dropped.len(),
            "rewound to follow a longer branch"
        );
        for t in dropped.into_iter().flat_map(|b| b.txs) {
            let _ = self.mempool.admit(&self.ledger, t);
        }
        self.synced = false;
        Ok(())
    }

    /// Validates and applies a block from a peer: chain id, height and parent,
    /// slot (after the parent's, not in the future), the slot's scheduled
    /// producer, its signature, and every tx (signature included). A block
    /// conflicting with the irreversible chain is refused.
    pub fn import_block(&mut self, b: &Block, now_ms: u64) -> Result<Imported, NodeError> {
        let hash = b.header.hash();
        let h = b.header.height;
        let invalid = |reason: String| NodeError::Import(ImportError::Invalid { hash, reason });
        if b.header.chain_id != self.ledger.params.chain_id {
            return Err(invalid(format!("chain id {:?}", b.header.chain_id)));
        }
        if h <= self.tip.height {
            let ours = self.store.block(h)?.map(|o| o.header.hash());
            if ours == Some(hash) {
                return Ok(Imported::Known);
            }
            if h <= self.tip.irreversible {
                return Err(NodeError::Import(ImportError::BelowIrreversible {
                    hash,
                    height: h,
                    lib: self.tip.irreversible,
                }));
            }
            return Err(NodeError::Import(ImportError::Fork {
                hash,
                height: h,
                parent: b.header.parent,
            }));
        }
        if h > self.tip.height + 1 {
            return Ok(Imported::NeedSync(self.tip.height + 1));
        }
        if b.header.parent != self.tip.hash {
            // A longer branch than ours: rewind to the base and catch up on it.
            if self.base.height < self.tip.height {
                self.rewind()?;
                return Ok(Imported::NeedSync(self.tip.height + 1));
            }
            return Err(NodeError::Import(ImportError::Fork {
                hash,
                height: h,
                parent: b.header.parent,
            }));
        }
        if b.header.slot <= self.tip.slot && self.tip.height > 0 {
            return Err(invalid(format!(
                "slot {} not after parent slot {}",
                b.header.slot, self.tip.slot
            )));
        }
        if b.header.slot > self.slot_at(now_ms) + 1 {
            return Err(invalid(format!("slot {} is in the future", b.header.slot)));
        }
        let schedule = dpos::schedule(&self.ledger);
        let expected = dpos::producer_of(&schedule, b.header.slot)?;
        if expected != b.header.producer.address() {
            return Err(invalid(format!(
                "slot {} belongs to {expected}",
                b.header.slot
            )));
        }
        if !b.verify() {
            return Err(invalid("bad producer signature or tx root".into()));
        }
        let mut next = self.ledger.clone();
        let mut effects = Vec::with_capacity(b.txs.len());
        for (i, t) in b.txs.iter().enumerate() {
            let r = next
                .apply_tx(t)
                .map_err(|e| invalid(format!("tx {i}: {e}")))?;
            effects.push(r);
        }
        next.finish_block(b.header.producer.address());
        self.ledger = next;
        self.commit_applied(b, effects, schedule.len())?;
        Ok(Imported::Applied)
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
