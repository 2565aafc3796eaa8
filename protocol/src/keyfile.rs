//! Key files: one secp256k1 secret as 64 hex digits in a file of mode 0600,
//! created once and never overwritten, refused when group or others can read
//! it. Shared by the wallet, the publisher and the provider's agent. Errors
//! name the file and never show its contents.

use crate::keys::SecretKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What went wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {0} does not exist")]
    Missing(PathBuf),
    #[error("key file {0} is readable by group or others; chmod 600 it")]
    Exposed(PathBuf),
    #[error("key file {0} does not hold one secp256k1 secret as 64 hex digits")]
    Malformed(PathBuf),
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.into(), source }
}

/// Writes a new key file (mode 0600, parent directories created); never
/// overwrites an existing file.
pub fn write_new(path: &Path, k: &SecretKey) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    writeln!(f, "{}", hex::encode(k.to_bytes())).and_then(|_| f.sync_all()).map_err(io(path))
}

/// Reads a key file.
pub fn read(path: &Path) -> Result<SecretKey, KeyFileError> {
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyFileError::Missing(path.into())),
        r => r.map_err(io(path))?,
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyFileError::Exposed(path.into()));
    }
    if meta.len() > 1024 {
        return Err(KeyFileError::Malformed(path.into()));
    }
    let s = std::fs::read_to_string(path).map_err(|_| KeyFileError::Malformed(path.into()))?;
    parse_hex(&s).ok_or_else(|| KeyFileError::Malformed(path.into()))
}

/// A secret from 64 hex digits (surrounding whitespace ignored).
pub fn parse_hex(s: &str) -> Option<SecretKey> {
    let b: [u8; 32] = hex::decode(s.trim()).ok()?.try_into().ok()?;
    SecretKey::from_bytes(&b).ok()
}

/// Reads the key at `path`, creating it from fresh randomness on first use.
/// Returns the key and whether it was created now.
pub fn load_or_create(path: &Path) -> Result<(SecretKey, bool), KeyFileError> {
    match read(path) {
        Ok(k) => Ok((k, false)),
        Err(KeyFileError::Missing(_)) => {
            let k = SecretKey::generate().map_err(|e| KeyFileError::Io { path: path.into(), source: std::io::Error::other(e.to_string()) })?;
            write_new(path, &k)?;
            Ok((k, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_0600_reread_and_guarded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/identity.key");
        let (k, created) = load_or_create(&p).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let (k2, created) = load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(k.address(), k2.address());
        assert!(matches!(write_new(&p, &SecretKey::from_seed("x")), Err(KeyFileError::Io { .. })));
        assert_eq!(read(&p).unwrap().address(), k.address(), "never overwritten");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read(&p).unwrap_err();
        assert!(matches!(e, KeyFileError::Exposed(_)));
        assert!(!e.to_string().contains(&hex::encode(k.to_bytes())));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "zz").unwrap();
        assert!(matches!(read(&p), Err(KeyFileError::Malformed(_))));
        assert!(matches!(load_or_create(&p), Err(KeyFileError::Malformed(_))), "a damaged key is never replaced");
    }
}
