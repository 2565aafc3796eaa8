//! OpenSSH public keys in contracts: the publisher's authorized keys (the
//! only keys a container's SSH server accepts) and the container's host
//! key, whose `SHA256:` fingerprint the signed terms carry. Parsing is
//! `openssh-keys`'; every line is bounded before it is parsed.

use crate::market::MAX_SPEC_STR;

/// Key types a container's SSH server accepts from publishers.
pub const ACCEPTED_TYPES: &[&str] = &["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"];

/// What was wrong with a key line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshKeyError {
    #[error("ssh key line of {0} bytes is above the {MAX_SPEC_STR}-byte limit")]
    TooLong(usize),
    #[error("not an OpenSSH public key line ({0})")]
    Malformed(String),
    #[error("ssh key type {0} is not accepted (use one of {ACCEPTED_TYPES:?})")]
    Type(String),
}

/// A parsed public key: its type, its wire blob and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, ...
    pub key_type: String,
    /// The key in SSH wire format (what a client presents).
    pub blob: Vec<u8>,
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `TYPE BASE64` without the comment.
    pub line: String,
}

/// Parses one `TYPE BASE64 [COMMENT]` line of an accepted type.
pub fn parse(line: &str) -> Result<SshPublicKey, SshKeyError> {
    if line.len() > MAX_SPEC_STR {
        return Err(SshKeyError::TooLong(line.len()));
    }
    let k = openssh_keys::PublicKey::parse(line.trim()).map_err(|e| SshKeyError::Malformed(e.to_string()))?;
    let key_type = k.keytype().to_string();
    if !ACCEPTED_TYPES.contains(&key_type.as_str()) {
        return Err(SshKeyError::Type(key_type));
    }
    let mut bare = k.clone();
    bare.set_comment("");
    Ok(SshPublicKey { blob: k.data(), fingerprint: format!("SHA256:{}", k.fingerprint()), line: bare.to_key_format().trim().to_string(), key_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519` output and its `ssh-keygen -lf` fingerprint.
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdjhDkSzo1T9YHtBRSd2jQv9Se44yk0exnI5fhaD6Vh me@host";

    #[test]
    fn parses_an_ed25519_line_and_its_fingerprint() {
        let k = parse(ED).unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.fingerprint, "SHA256:97tAFgD/+etBGQaDgpmPzQ6d51P5bnnueP7QnAzgyHg");
        assert_eq!(k.line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdjhDkSzo1T9YHtBRSd2jQv9Se44yk0exnI5fhaD6Vh");
        assert_eq!(&k.blob[4..15], b"ssh-ed25519");
    }

    #[test]
    fn refuses_garbage_long_lines_and_other_types() {
        assert!(matches!(parse("ssh-ed25519 not-base64"), Err(SshKeyError::Malformed(_))));
        assert!(matches!(parse(""), Err(SshKeyError::Malformed(_))));
        assert!(matches!(parse(&"x".repeat(MAX_SPEC_STR + 1)), Err(SshKeyError::TooLong(_))));
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCnPFymbakyXLOTm3K4bEourrLUxlVQXkV7RyJtN8aIWTxBaJ3gwiuqoj8zzZF0ZbnBq/2m3j9CKWJcg1IYh+O1RDXI2ZBcbDXS0LHV/yCwzqV8hh21qMkbA9Zan7Bc/yWLOc98xF9i9K25KxEL+7Z5XU7TRjiRbNraFnoI/S0a3Q==";
        assert!(matches!(parse(rsa), Err(SshKeyError::Type(t)) if t == "ssh-rsa"));
    }
}
