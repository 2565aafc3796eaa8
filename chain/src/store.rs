//! Storage: blocks, receipts and the ledger state in one redb file. Each
//! block is committed in one write transaction together with the state it
//! produced, so a crash (even SIGKILL) leaves either the state before the
//! block or after it, never a mix. On open, the state is reloaded and
//! audited (the money invariant) before the node serves anything.
//!
//! Each block also stores, in the same transaction, an undo record: the
//! values its state changes replaced. Undo records are kept only above the
//! irreversible height, so a restarted node can rebuild the irreversible
//! state ([`Store::irreversible_state`]) and still rewind a losing branch.

use crate::block::Block;
use crate::ledger::{Account, Announcement, ChainParams, Channel, Ledger, Totals, TxEffect};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zennet_protocol::keys::Address;
use zennet_protocol::tx::Hash32;
use zennet_protocol::Amount;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const CHANNELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("channels");
const ANNS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("announcements");
const DELEGATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("delegates");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const UNDO: TableDefinition<u64, &[u8]> = TableDefinition::new("undo");

/// What one block replaced: for each changed key, its value before the
/// block (JSON text as stored; `None` = absent), and the totals and height before it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Undo {
    accounts: Vec<(Address, Option<String>)>,
    channels: Vec<(Hash32, Option<String>)>,
    anns: Vec<(Hash32, Option<String>)>,
    delegates: Vec<(Address, bool)>,
    totals: Totals,
    height: u64,
}

fn old_text(v: Option<redb::AccessGuard<'_, &[u8]>>) -> Option<String> {
    v.map(|g| String::from_utf8_lossy(g.value()).into_owned())
}

/// What failed in storage, and on which file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Db { path: PathBuf, source: redb::Error },
    #[error("database {path}: corrupt record in {table}: {reason}")]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        reason: String,
    },
    #[error("database {path}: state fails the money audit: {0}", path = .1.display())]
    Audit(String, PathBuf),
    #[error("database {path} belongs to chain {found:?}, not {expected:?}")]
    WrongChain {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Where and how a tx was included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx: Hash32,
    pub block: Hash32,
    pub height: u64,
    pub index: u32,
    pub fee: Amount,
    pub effect: TxEffect,
}

/// The chain tip as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    pub height: u64,
    pub hash: Hash32,
    pub slot: u64,
    pub irreversible: u64,
    pub genesis_ms: u64,
}

/// The redb database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("state types always serialize")
}

impl Store {
    /// Opens or creates the database file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Db {
            path: path.into(),
            source: e.into(),
        })?;
        Ok(Store {
            db,
            path: path.into(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn dec<T: DeserializeOwned>(&self, table: &'static str, b: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            table,
            reason: e.to_string(),
        })
    }

    /// Writes the state changed since the last commit, `block` (if any) with
    /// its receipts, and the tip, in one atomic transaction.
    pub fn commit(
        &self,
        ledger: &mut Ledger,
        block: Option<&Block>,
        receipts: &[Receipt],
        tip: &Tip,
    ) -> Result<(), StoreError> {
        self.commit_inner(ledger, block, receipts, None, tip)
    }

    /// Rewinds: drops the blocks above `keep_height` and the receipts of
    /// `dropped_txs`, and writes the rewound state and tip, in one atomic transaction.
    pub fn commit_rewind(
        &self,
        ledger: &mut Ledger,
        keep_height: u64,
        dropped_txs: &[Hash32],
        tip: &Tip,
    ) -> Result<(), StoreError> {
        self.commit_inner(ledger, None, &[], Some((keep_height, dropped_txs)), tip)
    }

    fn commit_inner(
        &self,
        ledger: &mut Ledger,
        block: Option<&Block>,
        receipts: &[Receipt],
        rewind: Option<(u64, &[Hash32])>,
        tip: &Tip,
    ) -> Result<(), StoreError> {
        let dirty = ledger.take_dirty();
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut undo = Undo::default();
            let mut t = w.open_table(ACCOUNTS).map_err(|e| self.err(e))?;
            for a in &dirty.accounts {
                undo.accounts.push((*a, self.put(&mut t, &a.0, ledger.accounts.get(a))?));
            }
            let mut t = w.open_table(CHANNELS).map_err(|e| self.err(e))?;
            for id in &dirty.channels {
                undo.channels.push((*id, self.put(&mut t, &id.0, ledger.channels.get(id))?));
            }
            let mut t = w.open_table(ANNS).map_err(|e| self.err(e))?;
            for id in &dirty.anns {
                undo.anns.push((*id, self.put(&mut t, &id.0, ledger.anns.get(id))?));
            }
            let mut t = w.open_table(DELEGATES).map_err(|e| self.err(e))?;
            for d in &dirty.delegates {
                undo.delegates.push((*d, t.get(&d.0[..]).map_err(|e| self.err(e))?.is_some()));
                let r = if ledger.delegates.contains(d) {
                    t.insert(&d.0[..], &[][..]).map(|_| ())
                } else {
                    t.remove(&d.0[..]).map(|_| ())
                };
                r.map_err(|e| self.err(e))?;
            }
            let meta = w.open_table(META).map_err(|e| self.err(e))?;
            if let Some(v) = meta.get("totals").map_err(|e| self.err(e))? {
                undo.totals = self.dec("meta", v.value())?;
            }
            if let Some(v) = meta.get("height").map_err(|e| self.err(e))? {
                undo.height = self.dec("meta", v.value())?;
            }
            drop(meta);
            let mut u = w.open_table(UNDO).map_err(|e| self.err(e))?;
            if let Some((keep, _)) = rewind {
                u.retain_in((keep + 1).., |_, _| false)
                    .map_err(|e| self.err(e))?;
            }
            if let Some(b) = block {
                u.insert(b.header.height, &enc(&undo)[..])
                    .map_err(|e| self.err(e))?;
            }
            u.retain_in(..=tip.irreversible, |_, _| false)
                .map_err(|e| self.err(e))?;
            drop(u);
            if let Some((keep, dropped)) = rewind {
                let mut t = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
                t.retain_in((keep + 1).., |_, _| false)
                    .map_err(|e| self.err(e))?;
                let mut t = w.open_table(RECEIPTS).map_err(|e| self.err(e))?;
                for h in dropped {
                    t.remove(&h.0[..]).map_err(|e| self.err(e))?;
                }
            }
            if let Some(b) = block {
                let mut t = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
                t.insert(b.header.height, &enc(b)[..])
                    .map_err(|e| self.err(e))?;
                let mut t = w.open_table(RECEIPTS).map_err(|e| self.err(e))?;
                for r in receipts {
                    t.insert(&r.tx.0[..], &enc(r)[..])
                        .map_err(|e| self.err(e))?;
                }
            }
            let mut t = w.open_table(META).map_err(|e| self.err(e))?;
            t.insert("params", &enc(&ledger.params)[..])
                .map_err(|e| self.err(e))?;
            t.insert("totals", &enc(&ledger.totals)[..])
                .map_err(|e| self.err(e))?;
            t.insert("height", &enc(&ledger.height)[..])
                .map_err(|e| self.err(e))?;
            t.insert("tip", &enc(tip)[..]).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// Loads the state and tip, or `None` for a fresh database. Audits the state.
    pub fn load(&self) -> Result<Option<(Ledger, Tip)>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = match r.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let get = |k: &str| -> Result<Vec<u8>, StoreError> {
            let v = meta.get(k).map_err(|e| self.err(e))?;
            v.map(|g| g.value().to_vec()).ok_or(StoreError::Corrupt {
                path: self.path.clone(),
                table: "meta",
                reason: format!("missing {k}"),
            })
        };
        let params: ChainParams = self.dec("meta", &get("params")?)?;
        let totals: Totals = self.dec("meta", &get("totals")?)?;
        let height: u64 = self.dec("meta", &get("height")?)?;
        let tip: Tip = self.dec("meta", &get("tip")?)?;
        let mut l = Ledger::genesis(params, &[], &[]);
        l.totals = totals;
        l.height = height;
        for item in r
            .open_table(ACCOUNTS)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let a: [u8; 20] = k.value().try_into().map_err(|_| StoreError::Corrupt {
                path: self.path.clone(),
                table: "accounts",
                reason: "key not 20 bytes".into(),
            })?;
            let acc: Account = self.dec("accounts", v.value())?;
            l.accounts.insert(Address(a), acc);
        }
        for item in r
            .open_table(CHANNELS)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let c: Channel = self.dec("channels", v.value())?;
            l.channels.insert(c.id, c);
        }
        for item in r
            .open_table(ANNS)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let a: Announcement = self.dec("announcements", v.value())?;
            l.anns.insert(a.id, a);
        }
        for item in r
            .open_table(DELEGATES)
            .map_err(|e| self.err(e))?
            .iter()
            .map_err(|e| self.err(e))?
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let a: [u8; 20] = k.value().try_into().map_err(|_| StoreError::Corrupt {
                path: self.path.clone(),
                table: "delegates",
                reason: "key not 20 bytes".into(),
            })?;
            l.delegates.insert(Address(a));
        }
        l.audit()
            .map_err(|e| StoreError::Audit(e, self.path.clone()))?;
        l.take_dirty();
        Ok(Some((l, tip)))
    }

    /// The state at the irreversible height, rebuilt from `head` (the state
    /// at `tip`) by undoing the blocks above it, newest first. `None` when an
    /// undo record is missing (a database written before undo records).
    pub fn irreversible_state(&self, head: &Ledger, tip: &Tip) -> Result<Option<Ledger>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(UNDO) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok((tip.height == tip.irreversible).then(|| head.clone()))
            }
            Err(e) => return Err(self.err(e)),
        };
        let mut l = head.clone();
        for h in (tip.irreversible + 1..=tip.height).rev() {
            let Some(v) = t.get(h).map_err(|e| self.err(e))? else {
                return Ok(None);
            };
            let u: Undo = self.dec("undo", v.value())?;
            self.undo_into(&mut l.accounts, u.accounts)?;
            self.undo_into(&mut l.channels, u.channels)?;
            self.undo_into(&mut l.anns, u.anns)?;
            for (d, present) in u.delegates {
                if present {
                    l.delegates.insert(d);
                } else {
                    l.delegates.remove(&d);
                }
            }
            l.totals = u.totals;
            l.height = u.height;
        }
        l.audit()
            .map_err(|e| StoreError::Audit(e, self.path.clone()))?;
        l.take_dirty();
        Ok(Some(l))
    }

    /// Writes `value` at `key` (or removes the key); returns the value it
    /// replaced, as stored, for the block's undo record.
    fn put<V: Serialize>(
        &self,
        t: &mut redb::Table<&[u8], &[u8]>,
        key: &[u8],
        value: Option<&V>,
    ) -> Result<Option<String>, StoreError> {
        let old = old_text(t.get(key).map_err(|e| self.err(e))?);
        match value {
            Some(v) => t.insert(key, &enc(v)[..]).map(|_| ()),
            None => t.remove(key).map(|_| ()),
        }
        .map_err(|e| self.err(e))?;
        Ok(old)
    }

    /// Puts back each key's value from before a block (or removes the key).
    fn undo_into<K: Ord, V: DeserializeOwned>(
        &self,
        map: &mut std::collections::BTreeMap<K, V>,
        entries: Vec<(K, Option<String>)>,
    ) -> Result<(), StoreError> {
        for (k, old) in entries {
            match old {
                Some(j) => map.insert(k, self.dec("undo", j.as_bytes())?),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    /// The block at `height`, if stored.
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(BLOCKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match t.get(height).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.dec("blocks", v.value())?)),
            None => Ok(None),
        }
    }

    /// The receipt of tx `hash`, if included.
    pub fn receipt(&self, hash: &Hash32) -> Result<Option<Receipt>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(RECEIPTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match t.get(&hash.0[..]).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.dec("receipts", v.value())?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ChainParams;
    use zennet_protocol::keys::SecretKey;

    #[test]
    fn state_roundtrips_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let p = ChainParams {
            chain_id: "t".into(),
            initial_block_reward: Amount(10),
            halving_interval: 100,
            producer_fee_share_bps: 5000,
            min_fee: Amount(1),
            max_producers: 3,
            slot_ms: 1000,
        };
        let a = SecretKey::from_seed("a").address();
        let mut l = Ledger::genesis(p, &[(a, Amount(100))], &[a]);
        let tip = Tip {
            height: 0,
            hash: Hash32::default(),
            slot: 0,
            irreversible: 0,
            genesis_ms: 1,
        };
        let s = Store::open(&dir.path().join("db")).unwrap();
        assert!(s.load().unwrap().is_none());
        s.commit(&mut l, None, &[], &tip).unwrap();
        l.finish_block(a);
        s.commit(
            &mut l,
            None,
            &[],
            &Tip {
                height: 1,
                ..tip.clone()
            },
        )
        .unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("db")).unwrap();
        let (l2, tip2) = s.load().unwrap().unwrap();
        assert_eq!(l2.accounts, l.accounts);
        assert_eq!(l2.delegates, l.delegates);
        assert_eq!(l2.height, 1);
        assert_eq!(tip2.height, 1);
    }
}
