//! The agent's persistent state: one redb database in its state directory
//! (`<state_dir>/agent.redb`): calibration records, keyed by time so the
//! latest is the last key, and contract records (the signed contract, its
//! channel, state and best voucher), keyed by contract id. Every write is a
//! durable redb commit before the caller acts on it (a voucher is
//! acknowledged only after its commit returns).
//!
//! The layout is versioned: table `meta` holds `schema_version`
//! ([`SCHEMA_VERSION`]). A database without it is version 1 (the layout
//! before versioning) and is migrated on open; a newer one is refused,
//! naming both versions. Table `settings` keeps what the control API
//! changed ([`ControlSettings`]), so it outlives a restart.

use crate::calibrate::CalibrationRecord;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use zennet_protocol::market::Contract;
use zennet_protocol::pricing::Fingerprint;
use zennet_protocol::tx::{ChannelId, Hash32};
use zennet_protocol::voucher::SignedVoucher;
use zennet_protocol::{Amount, UsageVector};

/// Calibration records, JSON, keyed by (unix seconds << 16 | sequence).
const CALIBRATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("calibrations");
/// Contract records, JSON, keyed by contract id.
const CONTRACTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("contracts");
/// Reputation of publishers, JSON, keyed by address text.
const REPUTATION: TableDefinition<&str, &[u8]> = TableDefinition::new("reputation");
/// Layout metadata: `schema_version` (u64, little-endian).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Settings changed at run time (the control API), JSON, keyed by name.
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// The layout this code reads and writes. 1: calibrations, contracts and
/// reputation without `meta`; 2: adds `meta` and `settings`.
pub const SCHEMA_VERSION: u64 = 2;
/// Largest record accepted when reading back.
const MAX_RECORD_BYTES: usize = 16 << 20;

/// Store errors, naming the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("store {path}: {source}")]
    Db { path: PathBuf, source: redb::Error },
    /// A stored record does not decode.
    #[error("store {path}: calibration record {key} is corrupt: {reason}")]
    Corrupt { path: PathBuf, key: u64, reason: String },
    /// A record could not be encoded.
    #[error("encode record: {0}")]
    Encode(serde_json::Error),
    /// A stored contract record does not decode.
    #[error("store {path}: contract record {id} is corrupt: {reason}")]
    CorruptContract { path: PathBuf, id: String, reason: String },
    /// The database was written by a newer agent.
    #[error("store {path}: schema version {found} is newer than this agent's {supported}; run a newer zennet-agent or move the file away")]
    TooNew { path: PathBuf, found: u64, supported: u64 },
    /// The `meta` table holds something that is not a version.
    #[error("store {path}: schema version record is corrupt ({len} bytes)")]
    CorruptMeta { path: PathBuf, len: usize },
}

/// The agent's database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// The database file in a state directory.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("agent.redb")
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(p) = path.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let db = Database::create(path).map_err(|e| StoreError::Db { path: path.into(), source: e.into() })?;
        let store = Store { db, path: path.into() };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version on disk: 1 when there is no `meta` table, 0 for
    /// a database with no tables at all (just created).
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                let empty = r.list_tables().map_err(|e| self.err(e))?.next().is_none();
                return Ok(if empty { 0 } else { 1 });
            }
            Err(e) => return Err(self.err(e)),
        };
        match t.get("schema_version").map_err(|e| self.err(e))? {
            None => Ok(1),
            Some(v) => {
                let b = v.value();
                let a: [u8; 8] = b.try_into().map_err(|_| StoreError::CorruptMeta { path: self.path.clone(), len: b.len() })?;
                Ok(u64::from_le_bytes(a))
            }
        }
    }

    /// Brings an older layout up to [`SCHEMA_VERSION`] in one commit;
    /// refuses a newer one. 1 -> 2 adds `meta` and `settings` (records are
    /// unchanged).
    fn migrate(&self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: self.path.clone(), found, supported: SCHEMA_VERSION });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        w.open_table(SETTINGS).map_err(|e| self.err(e))?;
        w.open_table(META).map_err(|e| self.err(e))?.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))?;
        if found > 0 {
            tracing::info!(path = %self.path.display(), "store migrated from schema version {found} to {SCHEMA_VERSION}");
        }
        Ok(())
    }

    /// Writes the schema version as is (tests of migration and refusal).
    #[doc(hidden)]
    pub fn force_schema_version(&self, v: u64) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        w.open_table(META).map_err(|e| self.err(e))?.insert("schema_version", v.to_le_bytes().as_slice()).map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))
    }

    /// The control settings (defaults when none were saved).
    pub fn control_settings(&self) -> Result<ControlSettings, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(SETTINGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(ControlSettings::default()),
            Err(e) => return Err(self.err(e)),
        };
        match t.get("control").map_err(|e| self.err(e))? {
            None => Ok(ControlSettings::default()),
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::CorruptContract { path: self.path.clone(), id: "settings/control".into(), reason: e.to_string() }),
        }
    }

    /// Saves the control settings; durable when it returns.
    pub fn put_control_settings(&self, s: &ControlSettings) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(s).map_err(StoreError::Encode)?;
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        w.open_table(SETTINGS).map_err(|e| self.err(e))?.insert("control", bytes.as_slice()).map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db { path: self.path.clone(), source: e.into() }
    }

    /// Appends a calibration record; returns its key.
    pub fn put_calibration(&self, rec: &CalibrationRecord) -> Result<u64, StoreError> {
        let bytes = serde_json::to_vec(rec).map_err(StoreError::Encode)?;
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        let key;
        {
            let mut t = w.open_table(CALIBRATIONS).map_err(|e| self.err(e))?;
            let last = t.last().map_err(|e| self.err(e))?.map(|(k, _)| k.value());
            key = (rec.time_unix_s << 16).max(last.map_or(0, |k| k + 1));
            t.insert(key, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))?;
        Ok(key)
    }

    /// The most recent calibration record, if any.
    pub fn latest_calibration(&self) -> Result<Option<CalibrationRecord>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(CALIBRATIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let Some((k, v)) = t.last().map_err(|e| self.err(e))? else { return Ok(None) };
        let key = k.value();
        let b = v.value();
        if b.len() > MAX_RECORD_BYTES {
            return Err(StoreError::Corrupt { path: self.path.clone(), key, reason: format!("{} bytes, limit {MAX_RECORD_BYTES}", b.len()) });
        }
        serde_json::from_slice(b).map(Some).map_err(|e| StoreError::Corrupt { path: self.path.clone(), key, reason: e.to_string() })
    }
}

/// What the control API changed, kept across restarts (table `settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlSettings {
    /// Not answering announcements (Pause; a Drain is kept as a pause).
    pub paused: bool,
    /// Asking price of the whole machine per second, base units (SetPrice).
    pub price_per_second: Option<u64>,
    /// Most capacity sold at once (SetLimits).
    pub limits: Option<SellLimits>,
    /// Calibrate at the next start (Recalibrate).
    pub recalibrate: bool,
}

/// The most capacity sold at once, over all contracts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellLimits {
    pub memory_bytes: u64,
    pub cpu_millicores: u64,
    pub disk_bytes: u64,
}

/// Where a contract is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    /// Both signed; waiting for the channel.
    Signed,
    /// The container runs and is metered.
    Active,
    /// Ended; `ChannelClose` with the best voucher is being submitted.
    Settling,
    /// Done: closed on chain (or nothing was owed).
    Settled,
}

/// One contract as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractRecord {
    pub contract: Contract,
    /// The engine's container id.
    pub container: String,
    pub channel: Option<ChannelId>,
    pub state: ContractState,
    /// The highest voucher received and checked.
    pub best_voucher: Option<SignedVoucher>,
    /// Cumulative usage in the last report sent.
    pub last_usage: Option<UsageVector>,
    /// The `ChannelClose` tx, once submitted.
    pub settle_tx: Option<Hash32>,
    /// Why it ended.
    pub end_reason: Option<String>,
}

impl ContractRecord {
    pub fn id(&self) -> Hash32 {
        self.contract.terms.id()
    }

    /// What the best voucher promises.
    pub fn paid(&self) -> Amount {
        self.best_voucher.as_ref().map_or(Amount::ZERO, |v| v.voucher.cumulative)
    }
}

impl Store {
    /// Writes (or replaces) a contract record; durable when it returns.
    pub fn put_contract(&self, rec: &ContractRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(rec).map_err(StoreError::Encode)?;
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        w.open_table(CONTRACTS).map_err(|e| self.err(e))?.insert(&rec.id().0, bytes.as_slice()).map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))
    }

    /// Every contract record, in id order.
    pub fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(CONTRACTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = hex::encode(k.value());
            let b = v.value();
            if b.len() > MAX_RECORD_BYTES {
                return Err(StoreError::CorruptContract { path: self.path.clone(), id, reason: format!("{} bytes", b.len()) });
            }
            out.push(serde_json::from_slice(b).map_err(|e| StoreError::CorruptContract { path: self.path.clone(), id, reason: e.to_string() })?);
        }
        Ok(out)
    }
}

/// What this provider saw of one publisher, over every contract with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    pub contracts: u64,
    /// Paid by vouchers, base units.
    pub paid: u64,
    /// Owed for reported usage but never covered by a voucher, base units.
    pub unpaid: u64,
    /// Contracts ended because the publisher stopped paying.
    pub disputes: u64,
}

impl Store {
    /// A publisher's record (default when none).
    pub fn reputation(&self, publisher: &str) -> Result<Reputation, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(REPUTATION) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Reputation::default()),
            Err(e) => return Err(self.err(e)),
        };
        match t.get(publisher).map_err(|e| self.err(e))? {
            None => Ok(Reputation::default()),
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::CorruptContract { path: self.path.clone(), id: publisher.to_string(), reason: e.to_string() }),
        }
    }

    /// Adds a settled contract to its publisher's record: read and written
    /// in one write transaction.
    pub fn record_settled(&self, publisher: &str, paid: u64, unpaid: u64, dispute: bool) -> Result<Reputation, StoreError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        let rep = {
            let mut t = w.open_table(REPUTATION).map_err(|e| self.err(e))?;
            let mut rep: Reputation = match t.get(publisher).map_err(|e| self.err(e))? {
                None => Reputation::default(),
                Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::CorruptContract { path: self.path.clone(), id: publisher.to_string(), reason: e.to_string() })?,
            };
            rep.contracts += 1;
            rep.paid = rep.paid.saturating_add(paid);
            rep.unpaid = rep.unpaid.saturating_add(unpaid);
            rep.disputes += dispute as u64;
            let bytes = serde_json::to_vec(&rep).map_err(StoreError::Encode)?;
            t.insert(publisher, bytes.as_slice()).map_err(|e| self.err(e))?;
            rep
        };
        w.commit().map_err(|e| self.err(e))?;
        Ok(rep)
    }
}

/// Why the machine must be calibrated (again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalibrationNeed {
    /// No record yet (first boot).
    NoRecord,
    /// The hardware changed since the latest record.
    FingerprintChanged,
    /// The latest record is older than the allowed age (its age).
    TooOld(Duration),
    /// The latest record cannot be read (the reason).
    Unreadable(String),
}

/// Whether to calibrate: `None` when the latest record in `store` was made
/// on hardware with `fingerprint` at most `max_age` before `now_unix_s`.
pub fn needs_calibration_at(store: &Store, fingerprint: &Fingerprint, max_age: Duration, now_unix_s: u64) -> Option<CalibrationNeed> {
    let rec = match store.latest_calibration() {
        Ok(Some(r)) => r,
        Ok(None) => return Some(CalibrationNeed::NoRecord),
        Err(e) => return Some(CalibrationNeed::Unreadable(e.to_string())),
    };
    if rec.fingerprint != *fingerprint {
        return Some(CalibrationNeed::FingerprintChanged);
    }
    let age = Duration::from_secs(now_unix_s.saturating_sub(rec.time_unix_s));
    (age > max_age).then_some(CalibrationNeed::TooOld(age))
}

/// [`needs_calibration_at`] now.
pub fn needs_calibration(store: &Store, fingerprint: &Fingerprint, max_age: Duration) -> Option<CalibrationNeed> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    needs_calibration_at(store, fingerprint, max_age, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{fit::Fit, CalibrationRecord};
    use zennet_protocol::{Amount, Rates};

    fn record(time: u64, fp: &Fingerprint) -> CalibrationRecord {
        CalibrationRecord {
            version: CalibrationRecord::VERSION,
            fingerprint: fp.clone(),
            time_unix_s: time,
            seed: 1,
            seconds: 2.0,
            price_per_second: Amount(1),
            benchmark_prices: Default::default(),
            price_basis: Default::default(),
            runs: vec![],
            s: vec![],
            fit: Fit { rates: vec![1.0; 10], singular_values: vec![1.0], rank: 1, unmoved: vec![], residual: 0.0, loo_errors: vec![] },
            clamped: vec![],
            rates: Rates::zero(),
            scores: vec![],
            elapsed_s: 1.0,
            network_bytes_per_s: 125_000_000,
            mem_hold_bytes: 1 << 30,
        }
    }

    fn fp(cores: u32) -> Fingerprint {
        Fingerprint { cpu_model: "test cpu".into(), cores, memory_bytes: 1 << 30, disks: vec!["vda:100".into()] }
    }

    #[test]
    fn needs_calibration_follows_records_fingerprint_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::path_in(dir.path())).unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(needs_calibration_at(&store, &fp(2), day, 1_000_000), Some(CalibrationNeed::NoRecord));
        store.put_calibration(&record(1_000_000, &fp(2))).unwrap();
        assert_eq!(needs_calibration_at(&store, &fp(2), day, 1_000_100), None);
        assert_eq!(needs_calibration_at(&store, &fp(4), day, 1_000_100), Some(CalibrationNeed::FingerprintChanged));
        assert_eq!(needs_calibration_at(&store, &fp(2), day, 1_000_000 + 86_401), Some(CalibrationNeed::TooOld(Duration::from_secs(86_401))));
        // The latest record wins, even one written in the same second.
        store.put_calibration(&record(1_000_000, &fp(4))).unwrap();
        assert_eq!(needs_calibration_at(&store, &fp(4), day, 1_000_100), None);
        assert_eq!(store.latest_calibration().unwrap().unwrap().fingerprint, fp(4));
        // Reopened, the record is still there.
        drop(store);
        let store = Store::open(&Store::path_in(dir.path())).unwrap();
        assert_eq!(store.latest_calibration().unwrap().unwrap().fingerprint.cores, 4);
    }

    #[test]
    fn schema_version_is_migrated_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = Store::path_in(dir.path());
        // A version-1 database: records, no `meta`.
        {
            let db = Database::create(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(REPUTATION).unwrap().insert("xen1old", br#"{"contracts":3,"paid":9,"unpaid":0,"disputes":0}"#.as_slice()).unwrap();
            w.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.reputation("xen1old").unwrap().contracts, 3, "migration kept the records");
        let s = ControlSettings { paused: true, price_per_second: Some(7), ..Default::default() };
        store.put_control_settings(&s).unwrap();
        store.force_schema_version(SCHEMA_VERSION + 1).unwrap();
        drop(store);
        let e = Store::open(&path).err().expect("a newer database is refused").to_string();
        assert!(e.contains(&format!("schema version {}", SCHEMA_VERSION + 1)) && e.contains(&format!("this agent's {SCHEMA_VERSION}")), "{e}");
        // Nothing was changed by the refusal.
        let db = Database::open(&path).unwrap();
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table(META).unwrap().get("schema_version").unwrap().unwrap().value(), (SCHEMA_VERSION + 1).to_le_bytes().as_slice());
    }

    #[test]
    fn a_corrupt_record_means_recalibrate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::path_in(dir.path())).unwrap();
        let w = store.db.begin_write().unwrap();
        w.open_table(CALIBRATIONS).unwrap().insert(5u64, b"{not json".as_slice()).unwrap();
        w.commit().unwrap();
        let need = needs_calibration_at(&store, &fp(2), Duration::from_secs(10), 0);
        assert!(matches!(need, Some(CalibrationNeed::Unreadable(ref m)) if m.contains("corrupt")), "{need:?}");
    }
}
