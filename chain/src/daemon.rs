//! Wiring for `xencoind`: loads genesis and key, opens the node(s), starts
//! JSON-RPC, p2p and the slot loop, and stops cleanly on SIGINT or SIGTERM.

use crate::node::{dev_genesis, dev_key, Genesis, Node};
use crate::p2p::P2pConfig;
use crate::rpc;
use anyhow::Context;
use libp2p::Multiaddr;
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
    pub dev_key: Option<usize>,
    pub genesis: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub rpc_addr: SocketAddr,
    pub slot_ms: u64,
    pub p2p_listen: Option<Multiaddr>,
    pub peers: Vec<Multiaddr>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads a hex secret key file.
pub fn read_key_file(path: &PathBuf) -> anyhow::Result<SecretKey> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let b =
        hex::decode(s.trim()).with_context(|| format!("key file {} is not hex", path.display()))?;
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| anyhow::anyhow!("key file {} must hold 32 bytes", path.display()))?;
    SecretKey::from_bytes(&arr).with_context(|| format!("key file {}", path.display()))
}

/// One node to run: its genesis, key, database, RPC and p2p settings.
struct NodeSpec {
    genesis: Genesis,
    key: Option<SecretKey>,
    data_dir: PathBuf,
    rpc_addr: SocketAddr,
    p2p_listen: Option<Multiaddr>,
    peers: Vec<Multiaddr>,
}

/// Runs the node(s) until SIGINT/SIGTERM.
pub async fn run(cfg: DaemonConfig) -> anyhow::Result<()> {
    let mut specs = Vec::new();
    if cfg.dev {
        let genesis = dev_genesis(cfg.validators, cfg.slot_ms);
        match (cfg.validators, cfg.dev_key) {
            (n, None) if n > 1 => {
                // A whole local network in this process: node i uses dev key i,
                // data_dir/node-i, RPC port + i and p2p port + i on loopback.
                let base = p2p_port(&cfg.p2p_listen).unwrap_or(30333);
                for i in 0..n {
                    let addr = |j: usize| -> Multiaddr {
                        format!("/ip4/127.0.0.1/tcp/{}", base + j as u16)
                            .parse()
                            .expect("valid multiaddr")
                    };
                    specs.push(NodeSpec {
                        genesis: genesis.clone(),
                        key: Some(dev_key(i)),
                        data_dir: cfg.data_dir.join(format!("node-{i}")),
                        rpc_addr: SocketAddr::new(
                            cfg.rpc_addr.ip(),
                            if cfg.rpc_addr.port() == 0 {
                                0
                            } else {
                                cfg.rpc_addr.port() + i as u16
                            },
                        ),
                        p2p_listen: Some(addr(i)),
                        peers: (0..n).filter(|j| *j != i).map(addr).collect(),
                    });
                }
            }
            (_, key) => specs.push(NodeSpec {
                genesis,
                key: Some(dev_key(key.unwrap_or(0))),
                data_dir: cfg.data_dir.clone(),
                rpc_addr: cfg.rpc_addr,
                p2p_listen: cfg.p2p_listen.clone(),
                peers: cfg.peers.clone(),
            }),
        }
    } else {
        let path = cfg
            .genesis
            .clone()
            .context("give --dev, or --genesis FILE (and --key-file FILE to produce)")?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading genesis {}", path.display()))?;
        let genesis: Genesis = serde_json::from_str(&text)
            .with_context(|| format!("parsing genesis {}", path.display()))?;
        let key = cfg.key_file.as_ref().map(read_key_file).transpose()?;
        specs.push(NodeSpec {
            genesis,
            key,
            data_dir: cfg.data_dir.clone(),
            rpc_addr: cfg.rpc_addr,
            p2p_listen: cfg.p2p_listen.clone(),
            peers: cfg.peers.clone(),
        });
    }
    let mut nodes = tokio::task::JoinSet::new();
    for spec in specs {
        nodes.spawn(run_node(spec));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        r = nodes.join_next() => match r {
            Some(Ok(r)) => r,
            Some(Err(e)) => Err(e.into()),
            None => Ok(()),
        },
    };
    nodes.abort_all();
    tracing::info!("stopped");
    res
}

fn p2p_port(a: &Option<Multiaddr>) -> Option<u16> {
    a.as_ref()?.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

async fn run_node(spec: NodeSpec) -> anyhow::Result<()> {
    let data_dir = spec.data_dir.clone();
    let key = spec.key.clone();
    let genesis = spec.genesis.clone();
    let node = tokio::task::spawn_blocking(move || Node::open(&data_dir, genesis, key)).await??;
    tracing::info!(height = node.tip.height, irreversible = node.tip.irreversible, chain = %node.ledger.params.chain_id, "state loaded");
    let slot_ms = node.ledger.params.slot_ms.max(1);
    let genesis_ms = node.tip.genesis_ms;
    let chain_id = node.ledger.params.chain_id.clone();
    let shared = Arc::new(Mutex::new(node));
    let (handle, addr) = rpc::serve(spec.rpc_addr, shared.clone()).await?;
    println!("xencoind: rpc listening on http://{addr}");
    let p2p = match (&spec.p2p_listen, &spec.key) {
        (Some(listen), Some(key)) => {
            let cfg = P2pConfig {
                listen: listen.clone(),
                peers: spec.peers.clone(),
                chain_id,
            };
            Some(tokio::spawn(crate::p2p::run(
                shared.clone(),
                key.clone(),
                cfg,
            )))
        }
        (None, _) if !spec.peers.is_empty() => anyhow::bail!("--peer needs --p2p-listen"),
        _ => None,
    };
    let producer = async {
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
                Ok(Ok(Some(b))) => tracing::info!(
                    height = b.header.height,
                    slot = b.header.slot,
                    txs = b.txs.len(),
                    "produced block"
                ),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(anyhow::anyhow!("producing a block: {e}")),
                Err(e) => return Err(anyhow::anyhow!("producer task: {e}")),
            }
        }
    };
    let res = match p2p {
        Some(p2p) => tokio::select! {
            r = producer => r,
            r = p2p => r.map_err(anyhow::Error::from).and_then(|r| r),
        },
        None => producer.await,
    };
    let _ = handle.stop();
    res
}
