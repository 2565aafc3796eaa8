//! JSON-RPC over HTTP and WebSocket (jsonrpsee): the only way clients reach
//! the node. Every method is documented in `chain/README.md`. Request bodies
//! are bounded ([`MAX_REQUEST_BYTES`]) and every parameter is parsed into a
//! typed value (addresses and hashes checked) before use.

use crate::ledger::Announcement;
use crate::node::{Event, Node};
use jsonrpsee::server::{RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage};
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use zennet_protocol::keys::Address;
use zennet_protocol::tx::{Hash32, SignedTx};
use zennet_protocol::Amount;

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: u32 = 256 * 1024;
/// Largest response body sent.
pub const MAX_RESPONSE_BYTES: u32 = 16 * 1024 * 1024;
/// Most concurrent connections.
pub const MAX_CONNECTIONS: u32 = 256;
/// Most announcements one `xen_getAnnouncements` call returns.
pub const MAX_ANNOUNCEMENTS: usize = 1000;

/// What failed starting the RPC server.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("registering method {0}")]
    Register(String),
}

/// Shared by the RPC server and the producer loop.
pub type SharedNode = Arc<Mutex<Node>>;

/// Filter for `xen_getAnnouncements`: an announcement passes if it fits a
/// provider with this much per container, and pays at least this much.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnFilter {
    pub max_memory_bytes: Option<u64>,
    pub max_cpu_millicores: Option<u32>,
    pub max_disk_bytes: Option<u64>,
    pub max_count: Option<u32>,
    pub image: Option<String>,
    pub min_price_ceiling: Option<Amount>,
    pub publisher: Option<Address>,
}

impl AnnFilter {
    /// Whether `a` passes.
    pub fn matches(&self, a: &Announcement) -> bool {
        let r = &a.requirements;
        self.max_memory_bytes.is_none_or(|m| r.memory_bytes <= m)
            && self
                .max_cpu_millicores
                .is_none_or(|m| r.cpu_millicores <= m)
            && self.max_disk_bytes.is_none_or(|m| r.disk_bytes <= m)
            && self.max_count.is_none_or(|m| r.count <= m)
            && self.image.as_ref().is_none_or(|i| *i == r.image)
            && self.min_price_ceiling.is_none_or(|p| a.price_ceiling >= p)
            && self.publisher.is_none_or(|p| a.publisher == p)
    }
}

fn err(code: i32, msg: impl ToString) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.to_string(), None::<()>)
}

/// Tx refused by the mempool.
pub const CODE_TX_REJECTED: i32 = -32001;
/// Internal failure (storage).
pub const CODE_INTERNAL: i32 = -32002;

fn lock(n: &SharedNode) -> std::sync::MutexGuard<'_, Node> {
    n.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds the module with every method.
pub fn module(node: SharedNode) -> Result<RpcModule<SharedNode>, RpcError> {
    let events = lock(&node).events.clone();
    let mut m = RpcModule::new(node);
    let reg = |e: jsonrpsee::core::RegisterMethodError| RpcError::Register(e.to_string());
    m.register_method("xen_chainId", |_, n, _| {
        Ok::<_, ErrorObjectOwned>(lock(n).ledger.params.chain_id.clone())
    })
    .map_err(reg)?;
    m.register_method("xen_head", |_, n, _| {
        Ok::<_, ErrorObjectOwned>(lock(n).head())
    })
    .map_err(reg)?;
    m.register_method("xen_submitTx", |p, n, _| {
        let stx: SignedTx = p.one()?;
        let mut node = lock(n);
        let node = &mut *node;
        let h = node
            .mempool
            .admit(&node.ledger, stx.clone())
            .map_err(|e| err(CODE_TX_REJECTED, e))?;
        let _ = node.events.send(Event::Submitted(stx));
        Ok::<_, ErrorObjectOwned>(h.to_string())
    })
    .map_err(reg)?;
    m.register_method("xen_getReceipt", |p, n, _| {
        let h: Hash32 = p.one()?;
        lock(n).store.receipt(&h).map_err(|e| err(CODE_INTERNAL, e))
    })
    .map_err(reg)?;
    m.register_method(
        "xen_getTx",
        |p, n, _| -> Result<serde_json::Value, ErrorObjectOwned> {
            let h: Hash32 = p.one()?;
            let node = lock(n);
            if let Some(t) = node.mempool.get(&h) {
                return Ok(serde_json::json!({ "status": "pending", "tx": t, "receipt": null }));
            }
            let Some(r) = node.store.receipt(&h).map_err(|e| err(CODE_INTERNAL, e))? else {
                return Ok(serde_json::Value::Null);
            };
            let block = node
                .store
                .block(r.height)
                .map_err(|e| err(CODE_INTERNAL, e))?;
            let tx = block.and_then(|b| b.txs.get(r.index as usize).cloned());
            let status = if r.height <= node.tip.irreversible {
                "irreversible"
            } else {
                "included"
            };
            Ok(serde_json::json!({ "status": status, "tx": tx, "receipt": r }))
        },
    )
    .map_err(reg)?;
    m.register_method("xen_getAccount", |p, n, _| {
        let a: Address = p.one()?;
        Ok::<_, ErrorObjectOwned>(lock(n).ledger.account(&a))
    })
    .map_err(reg)?;
    m.register_method("xen_getChannel", |p, n, _| {
        let id: Hash32 = p.one()?;
        Ok::<_, ErrorObjectOwned>(lock(n).ledger.channels.get(&id).cloned())
    })
    .map_err(reg)?;
    m.register_method("xen_getAnnouncements", |p, n, _| {
        let mut seq = p.sequence();
        let f: Option<AnnFilter> = seq.optional_next()?;
        let f = f.unwrap_or_default();
        let node = lock(n);
        let v: Vec<Announcement> = node
            .ledger
            .anns
            .values()
            .filter(|a| f.matches(a))
            .take(MAX_ANNOUNCEMENTS)
            .cloned()
            .collect();
        Ok::<_, ErrorObjectOwned>(v)
    })
    .map_err(reg)?;
    m.register_method("xen_getBlock", |p, n, _| {
        let h: u64 = p.one()?;
        lock(n).store.block(h).map_err(|e| err(CODE_INTERNAL, e))
    })
    .map_err(reg)?;
    m.register_method("xen_getDelegates", |_, n, _| {
        let node = lock(n);
        let tally: Vec<(Address, String)> = node
            .ledger
            .tally()
            .into_iter()
            .map(|(a, w)| (a, w.to_string()))
            .collect();
        Ok::<_, ErrorObjectOwned>(
            serde_json::json!({ "schedule": crate::dpos::schedule(&node.ledger), "votes": tally }),
        )
    })
    .map_err(reg)?;
    let ev = events.clone();
    m.register_subscription(
        "xen_subscribeNewHeads",
        "xen_newHead",
        "xen_unsubscribeNewHeads",
        move |_, pending, _, _| {
            let rx = ev.subscribe();
            async move { forward(pending, rx, None, |e| matches!(e, Event::Head(_))).await }
        },
    )
    .map_err(reg)?;
    let ev = events;
    m.register_subscription(
        "xen_subscribeAnnouncements",
        "xen_announcement",
        "xen_unsubscribeAnnouncements",
        move |p, pending, _, _| {
            let rx = ev.subscribe();
            let f: Result<Option<AnnFilter>, _> = p.sequence().optional_next();
            async move {
                let f = match f {
                    Ok(f) => f.unwrap_or_default(),
                    Err(e) => {
                        pending.reject(e).await;
                        return;
                    }
                };
                forward(pending, rx, Some(f), |e| {
                    matches!(e, Event::Announcement(_))
                })
                .await
            }
        },
    )
    .map_err(reg)?;
    Ok(m)
}

async fn forward(
    pending: jsonrpsee::PendingSubscriptionSink,
    mut rx: broadcast::Receiver<Event>,
    filter: Option<AnnFilter>,
    want: fn(&Event) -> bool,
) {
    let Ok(sink) = pending.accept().await else {
        return;
    };
    loop {
        let ev = tokio::select! {
            _ = sink.closed() => return,
            ev = rx.recv() => ev,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if !want(&ev) {
            continue;
        }
        let raw = match &ev {
            Event::Produced(_) | Event::Submitted(_) => continue,
            Event::Head(h) => serde_json::value::to_raw_value(h),
            Event::Announcement(a) => {
                if filter.as_ref().is_some_and(|f| !f.matches(a)) {
                    continue;
                }
                serde_json::value::to_raw_value(a)
            }
        };
        let Ok(raw) = raw else { return };
        if sink.send(SubscriptionMessage::from(raw)).await.is_err() {
            return;
        }
    }
}

/// Starts the server on `addr` (HTTP and WebSocket on the same port).
pub async fn serve(
    addr: SocketAddr,
    node: SharedNode,
) -> Result<(ServerHandle, SocketAddr), RpcError> {
    let cfg = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(MAX_CONNECTIONS)
        .build();
    let server = Server::builder()
        .set_config(cfg)
        .build(addr)
        .await
        .map_err(|e| RpcError::Bind { addr, source: e })?;
    let local = server
        .local_addr()
        .map_err(|e| RpcError::Bind { addr, source: e })?;
    Ok((server.start(module(node)?), local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{dev_genesis, dev_key, HeadInfo, DEV_CHAIN_ID};
    use jsonrpsee::core::EmptyServerParams;
    use zennet_protocol::tx::{Requirements, Tx, TxBody};

    fn announce(nonce: u64, memory: u64) -> SignedTx {
        let k = dev_key(2);
        Tx {
            chain_id: DEV_CHAIN_ID.into(),
            from: k.public(),
            nonce,
            fee: Amount(1000),
            body: TxBody::Announce {
                job_id: format!("job-{nonce}"),
                requirements: Requirements {
                    count: 1,
                    memory_bytes: memory,
                    cpu_millicores: 500,
                    disk_bytes: 1 << 30,
                    image: "debian".into(),
                },
                endpoint: "/ip4/127.0.0.1/tcp/1".into(),
                price_ceiling: Amount(10),
                expiry_height: 100,
            },
        }
        .sign(&k)
    }

    #[tokio::test]
    async fn subscriptions_and_announcement_filters() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Mutex::new(
            Node::open(dir.path(), dev_genesis(1, 1000), Some(dev_key(0))).unwrap(),
        ));
        let m = module(node.clone()).unwrap();
        let mut heads = m
            .subscribe_unbounded("xen_subscribeNewHeads", EmptyServerParams::new())
            .await
            .unwrap();
        let mut anns = m
            .subscribe_unbounded(
                "xen_subscribeAnnouncements",
                [AnnFilter {
                    max_memory_bytes: Some(1 << 30),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        let small: String = m
            .call("xen_submitTx", [announce(0, 512 << 20)])
            .await
            .unwrap();
        let _: String = m
            .call("xen_submitTx", [announce(1, 4 << 30)])
            .await
            .unwrap();
        node.lock().unwrap().maybe_produce(10_000).unwrap().unwrap();
        let (h, _) = heads.next::<HeadInfo>().await.unwrap().unwrap();
        assert_eq!((h.height, h.txs), (1, 2));
        let (a, _) = anns.next::<Announcement>().await.unwrap().unwrap();
        assert_eq!(
            a.id.to_string(),
            small,
            "only the announcement that fits the filter"
        );
        let all: Vec<Announcement> = m
            .call("xen_getAnnouncements", EmptyServerParams::new())
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        let fit: Vec<Announcement> = m
            .call(
                "xen_getAnnouncements",
                [AnnFilter {
                    max_memory_bytes: Some(1 << 30),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        assert_eq!(fit.len(), 1);
        let bad: Result<Vec<Announcement>, _> = m
            .call("xen_getAnnouncements", [serde_json::json!({"nonsense": 1})])
            .await;
        assert!(bad.is_err(), "unknown filter fields are refused");
    }
}
