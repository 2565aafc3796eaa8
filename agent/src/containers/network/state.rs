//! Persistence of IP allocations: one small JSON file per attachment under
//! the configured state directory, written atomically (temp file + rename),
//! so the allocations survive an agent crash and `reconcile` can find them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Attachment, NetError};

/// Version of the on-disk record; bump when [`Record`] changes shape.
const STATE_VERSION: u32 = 1;

/// The on-disk record of one attachment.
#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    attachment: Attachment,
}

/// Path of the record for `id`.
pub(super) fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> NetError {
    NetError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` if needed and loads every record in it, keyed by id.
/// Leftover temp files from an interrupted write are removed.
pub(super) fn load_all(dir: &Path) -> Result<BTreeMap<String, Attachment>, NetError> {
    fs::create_dir_all(dir).map_err(|e| io_err("create state dir", dir, e))?;
    let mut out = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(|e| io_err("read state dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("read state dir", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json.tmp") {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(|e| io_err("read allocation", &path, e))?;
        let rec: Record = serde_json::from_slice(&bytes).map_err(|source| NetError::State {
            path: path.clone(),
            source,
        })?;
        if rec.version != STATE_VERSION {
            return Err(NetError::StateVersion {
                path,
                version: rec.version,
            });
        }
        out.insert(rec.attachment.id.clone(), rec.attachment);
    }
    Ok(out)
}

/// Writes the record of `att` atomically. No fsync: the records only need to
/// survive an agent crash, and a machine crash takes the veths with it.
pub(super) fn save(dir: &Path, att: &Attachment) -> Result<(), NetError> {
    let path = record_path(dir, &att.id);
    let tmp = dir.join(format!("{}.json.tmp", att.id));
    let rec = Record {
        version: STATE_VERSION,
        attachment: att.clone(),
    };
    let bytes = serde_json::to_vec(&rec).expect("attachment serializes");
    let mut f = fs::File::create(&tmp).map_err(|e| io_err("write allocation", &tmp, e))?;
    f.write_all(&bytes)
        .map_err(|e| io_err("write allocation", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err("rename allocation", &path, e))
}

/// Removes the record of `id`; a missing record is not an error.
pub(super) fn remove(dir: &Path, id: &str) -> Result<(), NetError> {
    let path = record_path(dir, id);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove allocation", &path, e)),
    }
}
