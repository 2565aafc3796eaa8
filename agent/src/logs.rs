//! The agent's logs: `tracing` to the console (stderr) and, when
//! `agent.log_file` is set, to that file too, capped in size: above
//! `agent.log_max_bytes` it is renamed to `<file>.1` (replacing the previous
//! one) and a new file is started, so the data partition never holds more
//! than twice the cap. The level is `ZENNET_LOG` if set, else the
//! configuration's `agent.log_level`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A log file that rotates to `<path>.1` above `max_bytes`.
pub struct CappedFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
}

impl CappedFile {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<CappedFile> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CappedFile { path: path.into(), max_bytes: max_bytes.max(1024), file: Some(file), size })
    }

    /// The rotated file's path.
    pub fn rotated(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        p.into()
    }

    /// Appends `buf`, rotating first if it would pass the cap. A write
    /// error drops the file (the console keeps the logs).
    pub fn append(&mut self, buf: &[u8]) {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.file = None;
            let _ = std::fs::rename(&self.path, Self::rotated(&self.path));
            self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
            self.size = 0;
        }
        if let Some(f) = &mut self.file {
            match f.write_all(buf) {
                Ok(()) => self.size += buf.len() as u64,
                Err(_) => self.file = None,
            }
        }
    }
}

/// One event's writer: stderr, and the capped file if any.
struct Tee(Option<Arc<Mutex<CappedFile>>>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &self.0 {
            f.lock().unwrap_or_else(|e| e.into_inner()).append(buf);
        }
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Starts logging at `level` (`ZENNET_LOG` wins), to stderr and `file` (capped at `max_bytes`).
pub fn init(level: &str, file: Option<(&Path, u64)>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZENNET_LOG").unwrap_or_else(|_| level.into());
    let capped = file.and_then(|(p, max)| match CappedFile::open(p, max) {
        Ok(f) => Some(Arc::new(Mutex::new(f))),
        Err(e) => {
            eprintln!("zennet-agent: log file {}: {e}; logging to the console only", p.display());
            None
        }
    });
    let ansi = capped.is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(move || Tee(capped.clone())).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_at_its_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("agent.log");
        let mut f = CappedFile::open(&p, 4096).unwrap();
        let line = [b'x'; 100];
        for _ in 0..100 {
            f.append(&line);
        }
        let (now, old) = (std::fs::metadata(&p).unwrap().len(), std::fs::metadata(CappedFile::rotated(&p)).unwrap().len());
        assert!(now <= 4096 && old <= 4096 && old > 3000, "{now} {old}");
        // Reopened, it appends and keeps counting.
        drop(f);
        let mut f = CappedFile::open(&p, 4096).unwrap();
        f.append(&line);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), now + 100);
    }
}
