//! Wiring for `xencoind`: loads genesis and key, opens the node, starts
//! JSON-RPC and the slot loop, and stops cleanly on SIGINT or SIGTERM.

use crate::node::{dev_genesis, dev_key, Genesis, Node};
use crate::rpc;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use zennet_protocol::keys::SecretKey;

/// Everything `xencoind` is told on its command line.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub dev: bool,
    pub validators: usize,
    pub dev_key: usize,
    pub genesis: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub rpc_addr: SocketAddr,
    pub slot_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Reads a hex secret key file.
pub fn read_key_file(path: &PathBuf) -> anyhow::Result<SecretKey> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    let b = hex::decode(s.trim()).with_context(|| format!("key file {} is not hex", path.display()))?;
    let arr: [u8; 32] = b.try_into().map_err(|_| anyhow::anyhow!("key file {} must hold 32 bytes", path.display()))?;
    SecretKey::from_bytes(&arr).with_context(|| format!("key file {}", path.display()))
}

/// Runs the node until SIGINT/SIGTERM.
pub async fn run(cfg: DaemonConfig) -> anyhow::Result<()> {
    let (genesis, key): (Genesis, Option<SecretKey>) = if cfg.dev {
        if cfg.validators > 1 {
            anyhow::bail!("--validators {}: multi-node dev networks need the p2p layer, which is not built yet; run --dev alone", cfg.validators);
        }
        (dev_genesis(cfg.validators, cfg.slot_ms), Some(dev_key(cfg.dev_key)))
    } else {
        let path = cfg.genesis.clone().context("give --dev, or --genesis FILE (and --key-file FILE to produce)")?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading genesis {}", path.display()))?;
        let g: Genesis = serde_json::from_str(&text).with_context(|| format!("parsing genesis {}", path.display()))?;
        let key = cfg.key_file.as_ref().map(read_key_file).transpose()?;
        (g, key)
    };
    let data_dir = cfg.data_dir.clone();
    let node = tokio::task::spawn_blocking(move || Node::open(&data_dir, genesis, key)).await??;
    tracing::info!(height = node.tip.height, irreversible = node.tip.irreversible, chain = %node.ledger.params.chain_id, "state loaded");
    let slot_ms = node.ledger.params.slot_ms.max(1);
    let genesis_ms = node.tip.genesis_ms;
    let shared = Arc::new(Mutex::new(node));
    let (handle, addr) = rpc::serve(cfg.rpc_addr, shared.clone()).await?;
    println!("xencoind: rpc listening on http://{addr}");
    let producer = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let now = now_ms();
                let next = genesis_ms + ((now.saturating_sub(genesis_ms)) / slot_ms + 1) * slot_ms;
                tokio::time::sleep(std::time::Duration::from_millis(next.saturating_sub(now))).await;
                let s = shared.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let mut n = s.lock().unwrap_or_else(|p| p.into_inner());
                    n.maybe_produce(now_ms())
                })
                .await;
                match r {
                    Ok(Ok(Some(b))) => tracing::info!(height = b.header.height, slot = b.header.slot, txs = b.txs.len(), "produced block"),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => return Err(anyhow::anyhow!("producing a block: {e}")),
                    Err(e) => return Err(anyhow::anyhow!("producer task: {e}")),
                }
            }
        })
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        r = producer => r.map_err(anyhow::Error::from).and_then(|r| r),
    };
    let _ = handle.stop();
    tracing::info!("stopped");
    res
}
