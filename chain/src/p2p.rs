//! Networking (rust-libp2p): TCP + noise + yamux; gossipsub carries new
//! blocks and txs, request-response serves catch-up (`/xen/sync/1`: blocks
//! from a height), identify tells peers who we are. The node key is the
//! delegate key: libp2p's secp256k1 key is built from the same 32 bytes, so
//! the PeerId and the chain address belong to one secret.
//!
//! Peers come from an address list and are redialled while disconnected.
//! Every message is size-bounded by the transport config and fully
//! validated by the node before use.

use crate::block::Block;
use crate::daemon::now_ms;
use crate::node::{Event, Imported, NodeError};
use crate::rpc::SharedNode;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;
use zennet_protocol::keys::SecretKey;
use zennet_protocol::tx::SignedTx;

/// Largest gossip message: a full block (5000 txs of at most ~1.5 KB of JSON each).
pub const MAX_GOSSIP_BYTES: usize = 8 << 20;
/// Most blocks in one sync response.
pub const MAX_SYNC_BLOCKS: u32 = 64;
/// Largest sync request.
pub const MAX_SYNC_REQUEST_BYTES: u64 = 1024;
/// Largest sync response.
pub const MAX_SYNC_RESPONSE_BYTES: u64 = 24 << 20;

/// What failed in networking.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("node key cannot serve as a libp2p key: {0}")]
    Key(String),
    #[error("building the libp2p transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// Catch-up request: up to `max` blocks from height `from`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    pub from: u64,
    pub max: u32,
}

/// Catch-up response: consecutive blocks, and the responder's head height.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncResponse {
    pub blocks: Vec<Block>,
    pub head: u64,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossip: gossipsub::Behaviour,
    sync: request_response::json::Behaviour<SyncRequest, SyncResponse>,
    identify: identify::Behaviour,
}

/// The libp2p keypair of a chain key (same secret).
pub fn libp2p_keypair(key: &SecretKey) -> Result<identity::Keypair, P2pError> {
    let sk = identity::secp256k1::SecretKey::try_from_bytes(key.to_bytes())
        .map_err(|e| P2pError::Key(e.to_string()))?;
    Ok(identity::Keypair::from(identity::secp256k1::Keypair::from(
        sk,
    )))
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    pub listen: Multiaddr,
    pub peers: Vec<Multiaddr>,
    pub chain_id: String,
}

fn build_swarm(key: &SecretKey) -> Result<Swarm<Behaviour>, P2pError> {
    let kp = libp2p_keypair(key)?;
    let t = |e: &dyn std::fmt::Display| P2pError::Transport(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(kp)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| t(&e))?
        .with_behaviour(|kp| {
            let gcfg = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Strict)
                .max_transmit_size(MAX_GOSSIP_BYTES)
                .heartbeat_interval(Duration::from_millis(500))
                .build()
                .map_err(|e| e.to_string())?;
            let gossip = gossipsub::Behaviour::new(MessageAuthenticity::Signed(kp.clone()), gcfg)?;
            let codec = request_response::json::codec::Codec::default()
                .set_request_size_maximum(MAX_SYNC_REQUEST_BYTES)
                .set_response_size_maximum(MAX_SYNC_RESPONSE_BYTES);
            let sync = request_response::Behaviour::with_codec(
                codec,
                [(StreamProtocol::new("/xen/sync/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            let identify =
                identify::Behaviour::new(identify::Config::new("/xen/1".into(), kp.public()));
            Ok(Behaviour {
                gossip,
                sync,
                identify,
            })
        })
        .map_err(|e| t(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// Runs networking for `node` until the task is dropped or a fatal node error.
pub async fn run(node: SharedNode, key: SecretKey, cfg: P2pConfig) -> anyhow::Result<()> {
    let mut swarm = build_swarm(&key)?;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| P2pError::Listen {
            addr: cfg.listen.clone(),
            reason: e.to_string(),
        })?;
    let blocks = IdentTopic::new(format!("xen/{}/blocks", cfg.chain_id));
    let txs = IdentTopic::new(format!("xen/{}/txs", cfg.chain_id));
    swarm.behaviour_mut().gossip.subscribe(&blocks)?;
    swarm.behaviour_mut().gossip.subscribe(&txs)?;
    let mut events = node
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .events
        .subscribe();
    let mut connected: HashSet<PeerId> = HashSet::new();
    let mut sync_in_flight = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut redial = tokio::time::interval(Duration::from_secs(1));
    if !cfg.peers.is_empty() {
        node.lock().unwrap_or_else(|p| p.into_inner()).synced = false;
    }
    loop {
        tokio::select! {
            _ = redial.tick() => {
                if connected.is_empty() {
                    for a in &cfg.peers {
                        let _ = swarm.dial(a.clone());
                    }
                }
            }
            _ = tick.tick() => {
                // Pull-based catch-up: ask one peer for what follows our head.
                if !sync_in_flight {
                    if let Some(p) = connected.iter().nth((now_ms() / 250) as usize % connected.len().max(1)).copied() {
                        let from = node.lock().unwrap_or_else(|p| p.into_inner()).tip.height + 1;
                        swarm.behaviour_mut().sync.send_request(&p, SyncRequest { from, max: MAX_SYNC_BLOCKS });
                        sync_in_flight = true;
                    }
                }
            }
            ev = events.recv() => {
                let payload = match ev {
                    Ok(Event::Produced(b)) => Some((&blocks, serde_json::to_vec(&b))),
                    Ok(Event::Submitted(t)) => Some((&txs, serde_json::to_vec(&t))),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(_) => return Ok(()),
                };
                if let Some((topic, Ok(bytes))) = payload {
                    if let Err(e) = swarm.behaviour_mut().gossip.publish(topic.clone(), bytes) {
                        tracing::debug!(error = %e, "gossip publish");
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => { connected.insert(peer_id); }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => { connected.remove(&peer_id); }
                SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, peer = %swarm.local_peer_id(), "p2p listening"),
                SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message { message, .. })) => {
                    if message.topic == blocks.hash() {
                        match serde_json::from_slice::<Block>(&message.data) {
                            Ok(b) => import(&node, vec![b]).await?,
                            Err(e) => tracing::debug!(error = %e, "undecodable gossip block"),
                        }
                    } else if message.topic == txs.hash() {
                        if let Ok(t) = serde_json::from_slice::<SignedTx>(&message.data) {
                            let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
                            let n = &mut *n;
                            let _ = n.mempool.admit(&n.ledger, t);
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { message, .. })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let resp = {
                            let n = node.lock().unwrap_or_else(|p| p.into_inner());
                            let mut out = Vec::new();
                            let mut bytes = 0usize;
                            let max = request.max.min(MAX_SYNC_BLOCKS) as u64;
                            for h in request.from..request.from.saturating_add(max) {
                                match n.store.block(h) {
                                    Ok(Some(b)) => {
                                        // stay under the response bound (a block is at most MAX_GOSSIP_BYTES)
                                        bytes += serde_json::to_vec(&b).map(|v| v.len()).unwrap_or(usize::MAX / 2);
                                        if bytes > MAX_SYNC_RESPONSE_BYTES as usize - MAX_GOSSIP_BYTES && !out.is_empty() {
                                            break;
                                        }
                                        out.push(b);
                                    }
                                    _ => break,
                                }
                            }
                            SyncResponse { blocks: out, head: n.tip.height }
                        };
                        let _ = swarm.behaviour_mut().sync.send_response(channel, resp);
                    }
                    request_response::Message::Response { response, .. } => {
                        sync_in_flight = false;
                        let caught_up = response.blocks.last().is_none_or(|b| b.header.height >= response.head);
                        import(&node, response.blocks).await?;
                        let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
                        if caught_up && n.tip.height >= response.head && !n.synced {
                            tracing::info!(height = n.tip.height, "caught up with peers");
                            n.synced = true;
                        }
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure { .. })) => {
                    sync_in_flight = false;
                }
                _ => {}
            }
        }
    }
}

/// Imports blocks in order on a blocking thread. Invalid or forked blocks are
/// logged and dropped; storage failures are fatal.
async fn import(node: &SharedNode, blocks: Vec<Block>) -> anyhow::Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    let node = node.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
        for b in blocks {
            match n.import_block(&b, now_ms()) {
                Ok(Imported::Applied) => {
                    tracing::debug!(height = b.header.height, "imported block")
                }
                Ok(Imported::Known) => {}
                Ok(Imported::NeedSync(_)) => break,
                Err(NodeError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "refused block");
                    break;
                }
            }
        }
        Ok(())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_secret_is_both_chain_key_and_peer_id() {
        let k = SecretKey::from_seed("xencoin-dev-0");
        let kp = libp2p_keypair(&k).unwrap();
        let pk = kp.public().try_into_secp256k1().unwrap();
        assert_eq!(pk.to_bytes(), k.public().to_bytes());
        // and a chain signature verifies under the libp2p public key (same ECDSA over SHA-256)
        let sig = k.sign(b"challenge");
        let der = k256::ecdsa::Signature::from_slice(&sig.0).unwrap().to_der();
        assert!(pk.verify(b"challenge", der.as_bytes()));
    }
}
