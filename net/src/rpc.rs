//! A blocking JSON-RPC client for `xencoind` (HTTP/1.1, one connection per
//! call, responses bounded), with typed views of the records the market
//! reads. Async callers run it on `spawn_blocking`; on loopback a call takes
//! well under a millisecond.

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zennet_protocol::keys::{Address, SecretKey};
use zennet_protocol::tx::{Announcement, Channel, ChannelId, Hash32, Tx, TxBody};
use zennet_protocol::Amount;

/// Largest response read.
pub const MAX_RESPONSE_BYTES: u64 = 4 << 20;

/// One JSON-RPC call over HTTP/1.1 to `url` (`http://host:port`).
pub fn call(url: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let hostport = url.strip_prefix("http://").context("rpc url must start with http://")?.trim_end_matches('/');
    let addr = hostport.to_socket_addrs()?.next().with_context(|| format!("cannot resolve {hostport}"))?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connecting to the chain node at {url}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "POST / HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    let mut resp = Vec::new();
    s.take(MAX_RESPONSE_BYTES).read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp);
    let json = resp.split_once("\r\n\r\n").map(|x| x.1).context("malformed HTTP response")?;
    let v: Value = serde_json::from_str(json).with_context(|| format!("malformed JSON-RPC response to {method}"))?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {}", e["message"].as_str().unwrap_or("error"));
    }
    Ok(v["result"].clone())
}

/// The chain's head.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    pub height: u64,
    pub irreversible_height: u64,
    pub timestamp_ms: u64,
}

/// A chain node at `url`, plus the sender nonces this process has used (so
/// several txs from one key can be in the mempool at once).
pub struct Chain {
    pub url: String,
    chain_id: Mutex<Option<String>>,
    next_nonce: Mutex<Option<(Address, u64)>>,
}

impl Chain {
    pub fn new(url: &str) -> Chain {
        Chain { url: url.to_string(), chain_id: Mutex::new(None), next_nonce: Mutex::new(None) }
    }

    pub fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        call(&self.url, method, params)
    }

    fn typed<T: serde::de::DeserializeOwned>(&self, method: &str, params: Value) -> anyhow::Result<T> {
        let v = self.call(method, params)?;
        serde_json::from_value(v).with_context(|| format!("unexpected reply to {method}"))
    }

    /// The network's id (cached).
    pub fn chain_id(&self) -> anyhow::Result<String> {
        let mut c = self.chain_id.lock().unwrap();
        if c.is_none() {
            *c = Some(self.typed("xen_chainId", json!([]))?);
        }
        Ok(c.clone().unwrap())
    }

    pub fn head(&self) -> anyhow::Result<Head> {
        self.typed("xen_head", json!([]))
    }

    /// Balance and next nonce of `a`.
    pub fn account(&self, a: &Address) -> anyhow::Result<(Amount, u64)> {
        let v = self.call("xen_getAccount", json!([a.to_string()]))?;
        Ok((Amount(v["balance"].as_u64().context("node returned no balance")?), v["nonce"].as_u64().context("node returned no nonce")?))
    }

    pub fn channel(&self, id: &ChannelId) -> anyhow::Result<Option<Channel>> {
        self.typed("xen_getChannel", json!([id]))
    }

    /// Active announcements passing `filter` (see `chain/README.md`).
    pub fn announcements(&self, filter: Value) -> anyhow::Result<Vec<Announcement>> {
        self.typed("xen_getAnnouncements", json!([filter]))
    }

    /// The height of the block that included `tx`, if any yet.
    pub fn included_at(&self, tx: &Hash32) -> anyhow::Result<Option<u64>> {
        Ok(self.call("xen_getReceipt", json!([tx]))?["height"].as_u64())
    }

    /// Waits until a block includes `tx`; returns its height.
    pub fn wait_included(&self, tx: &Hash32, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(h) = self.included_at(tx)? {
                return Ok(h);
            }
            if Instant::now() >= deadline {
                bail!("tx {tx} was admitted but no block included it within {}s (see `xen_getTx`)", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Signs `body` with `key` at this process's next nonce for it and submits
    /// it. Returns the tx hash and the nonce used.
    pub fn submit(&self, key: &SecretKey, fee: Amount, body: TxBody) -> anyhow::Result<(Hash32, u64)> {
        let chain_id = self.chain_id()?;
        let me = key.address();
        let mut guard = self.next_nonce.lock().unwrap();
        let nonce = match *guard {
            Some((a, n)) if a == me => n,
            _ => self.account(&me)?.1,
        };
        let tx = Tx { chain_id, from: key.public(), nonce, fee, body }.sign(key);
        match self.call("xen_submitTx", json!([tx])) {
            Ok(h) => {
                *guard = Some((me, nonce + 1));
                let h: Hash32 = serde_json::from_value(h).context("node returned no tx hash")?;
                Ok((h, nonce))
            }
            Err(e) => {
                // Re-read the nonce next time: another process may have used it.
                *guard = None;
                Err(e)
            }
        }
    }
}
