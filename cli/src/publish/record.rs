//! The publisher's record of providers: one redb database next to the
//! wallet (`publisher.redb`), one JSON row per provider address, updated in
//! one commit per finished job. A provider that was once dropped for usage
//! beyond its limits is refused; one whose contracts failed (vanished) waits
//! [`FAILED_WAIT`] before it is given containers, so providers with a clean
//! history are served first.

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PROVIDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("providers");
/// How long a provider with failed contracts waits for its share.
pub const FAILED_WAIT: Duration = Duration::from_secs(1);

/// What this publisher saw of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub contracts: u64,
    /// Paid on chain, base units.
    pub paid: u64,
    /// Contracts that failed (the provider vanished or stopped reporting).
    pub failed: u64,
    /// Contracts dropped for a usage report beyond the limits.
    pub dropped: u64,
    /// Cpu time delivered, nanoseconds.
    pub cpu_ns: u64,
}

/// The database (cheap to clone: one handle shared).
#[derive(Clone)]
pub struct Records {
    db: std::sync::Arc<Database>,
    path: PathBuf,
}

impl Records {
    /// Opens (or creates) `publisher.redb` in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Records> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("create {}: {e}", dir.display()))?;
        let path = dir.join("publisher.redb");
        let db = Database::create(&path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        Ok(Records { db: std::sync::Arc::new(db), path })
    }

    /// A provider's record (default when none).
    pub fn get(&self, provider: &str) -> anyhow::Result<ProviderRecord> {
        let r = self.db.begin_read()?;
        let t = match r.open_table(PROVIDERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(ProviderRecord::default()),
            Err(e) => return Err(e.into()),
        };
        match t.get(provider)? {
            None => Ok(ProviderRecord::default()),
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| anyhow::anyhow!("{}: record of {provider} is corrupt: {e}", self.path.display())),
        }
    }

    /// Adds one finished job's contracts, `(provider, change)` each, in one commit.
    pub fn add(&self, rows: &[(String, ProviderRecord)]) -> anyhow::Result<()> {
        let mut merged: Vec<(String, ProviderRecord)> = Vec::new();
        for (p, d) in rows {
            let mut r = match merged.iter().position(|(q, _)| q == p) {
                Some(i) => merged.remove(i).1,
                None => self.get(p)?,
            };
            r.contracts += d.contracts;
            r.paid = r.paid.saturating_add(d.paid);
            r.failed += d.failed;
            r.dropped += d.dropped;
            r.cpu_ns = r.cpu_ns.saturating_add(d.cpu_ns);
            merged.push((p.clone(), r));
        }
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(PROVIDERS)?;
            for (p, r) in &merged {
                t.insert(p.as_str(), serde_json::to_vec(r)?.as_slice())?;
            }
        }
        w.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up_across_jobs_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(r.get("xen1a").unwrap(), ProviderRecord::default());
        let one = ProviderRecord { contracts: 1, paid: 5, failed: 0, dropped: 0, cpu_ns: 7 };
        r.add(&[("xen1a".into(), one.clone()), ("xen1a".into(), one.clone()), ("xen1b".into(), ProviderRecord { dropped: 1, ..one.clone() })]).unwrap();
        drop(r);
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(r.get("xen1a").unwrap(), ProviderRecord { contracts: 2, paid: 10, failed: 0, dropped: 0, cpu_ns: 14 });
        assert_eq!(r.get("xen1b").unwrap().dropped, 1);
    }
}
