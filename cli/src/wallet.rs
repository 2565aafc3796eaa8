//! `zennet wallet`: a small XenCoin wallet. The key is a secp256k1 secret in
//! hex in a file created with mode 0600 (refused if group or others can read
//! it). It talks to a chain node only by JSON-RPC over HTTP and builds txs
//! from `zennet-protocol` types.

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zennet_net::rpc::call;
use zennet_protocol::keyfile;
use zennet_protocol::keys::{Address, SecretKey};
use zennet_protocol::tx::TxBody;
use zennet_protocol::Amount;

/// Wallet commands.
#[derive(Subcommand, Debug)]
pub enum WalletCmd {
    /// Create a new key file (refuses to overwrite one).
    New,
    /// Create the key file from a hex secret read on stdin (e.g. a devnet key
    /// from `xencoind dev-keys`); never from the command line, where `ps` would show it.
    Import,
    /// Print the wallet's address.
    Address,
    /// Print the balance and nonce of the wallet (or of ADDRESS).
    /// (`--json`: `{"address", "balance" (base units), "nonce"}`.)
    Balance { address: Option<String> },
    /// Send AMOUNT XEN (e.g. 1.5) to ADDRESS and wait until a block includes it
    /// (`--json`: `{"tx", "height"}`, height null with --no-wait).
    Send {
        to: String,
        amount: String,
        /// Fee in base units.
        #[arg(long, default_value_t = 1000)]
        fee: u64,
        /// Return once the node has admitted the tx, without waiting for a block.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for inclusion.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// Where the key file lives unless told: `$HOME/.zennet/wallet.key`.
pub fn default_key_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".zennet").join("wallet.key")
}

/// Runs a wallet command.
pub fn run(cmd: WalletCmd, key_path: &Path, rpc_url: &str, json: bool) -> anyhow::Result<()> {
    match cmd {
        WalletCmd::New => {
            let k = SecretKey::generate()?;
            write_key(key_path, &k)?;
            println!("{}", k.address());
        }
        WalletCmd::Import => {
            let mut hexkey = String::new();
            std::io::stdin()
                .take(1024)
                .read_to_string(&mut hexkey)
                .context("reading the secret from stdin")?;
            let k = parse_secret(&hexkey).context("stdin")?;
            write_key(key_path, &k)?;
            println!("{}", k.address());
        }
        WalletCmd::Address => println!("{}", read_key(key_path)?.address()),
        WalletCmd::Balance { address } => {
            let a: Address = match address {
                Some(s) => s.parse()?,
                None => read_key(key_path)?.address(),
            };
            let acc = call(rpc_url, "xen_getAccount", json!([a.to_string()]))?;
            let bal = Amount(
                acc["balance"]
                    .as_u64()
                    .context("node returned no balance")?,
            );
            if json {
                println!("{}", json!({"address": a.to_string(), "balance": bal.0, "nonce": acc["nonce"]}));
            } else {
                println!("{a} {bal} nonce={}", acc["nonce"]);
            }
        }
        WalletCmd::Send { to, amount, fee, no_wait, timeout } => {
            let k = read_key(key_path)?;
            let to: Address = to.parse()?;
            let amount = Amount::parse_xen(&amount).map_err(anyhow::Error::msg)?;
            let chain = zennet_net::rpc::Chain::new(rpc_url);
            let (hash, _) = chain.submit(&k, Amount(fee), TxBody::Transfer { to, amount })?;
            let height = if no_wait {
                None
            } else {
                Some(chain.wait_included(&hash, Duration::from_secs(timeout))?)
            };
            match (json, height) {
                (true, h) => println!("{}", json!({"tx": hash, "height": h})),
                (false, Some(h)) => println!("{hash} included at height {h}"),
                (false, None) => println!("{hash}"),
            }
        }
    }
    Ok(())
}

/// Parses a hex secret (whitespace around it ignored); the error never shows the input.
fn parse_secret(s: &str) -> anyhow::Result<SecretKey> {
    keyfile::parse_hex(s).ok_or_else(|| anyhow::anyhow!("the secret is not hex: 64 hex digits expected"))
}

/// Writes a new key file with mode 0600; never overwrites.
pub fn write_key(path: &Path, k: &SecretKey) -> anyhow::Result<()> {
    keyfile::write_new(path, k).map_err(|e| match e {
        keyfile::KeyFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("creating key file {}: it must not exist yet", path.display())
        }
        e => e.into(),
    })
}

/// Reads a key file, refusing one that others can read.
pub fn read_key(path: &Path) -> anyhow::Result<SecretKey> {
    keyfile::read(path).map_err(|e| match e {
        keyfile::KeyFileError::Missing(_) => anyhow::anyhow!("no wallet at {}; run `zennet wallet new`", path.display()),
        e => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_0600_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("wallet.key");
        let k = SecretKey::from_seed("w");
        write_key(&p, &k).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_key(&p).unwrap().address(), k.address());
        assert!(write_key(&p, &SecretKey::from_seed("other")).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key(&p).is_err());
    }
}
