//! Following the chain: a JSON-RPC subscription over WebSocket (`soketto`,
//! the same implementation the node's server uses) to new announcements,
//! `xen_subscribeAnnouncements` with an optional filter. Every notification
//! is bounded in size and decoded before it is returned.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use soketto::handshake::{Client, ServerResponse};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use zennet_protocol::tx::Announcement;

/// Largest notification accepted.
pub const MAX_NOTIFICATION_BYTES: usize = 1 << 20;

/// New announcements as blocks include them.
pub struct Announcements {
    // Kept so the connection stays open.
    _tx: soketto::connection::Sender<Compat<TcpStream>>,
    rx: soketto::connection::Receiver<Compat<TcpStream>>,
}

/// Subscribes at the node `url` (`http://host:port`; the node serves
/// WebSocket on the same port) to announcements passing `filter`.
pub async fn announcements(url: &str, filter: Value) -> anyhow::Result<Announcements> {
    let hostport = url.strip_prefix("http://").context("rpc url must start with http://")?.trim_end_matches('/');
    let tcp = TcpStream::connect(hostport).await.with_context(|| format!("connecting to the chain node at {url}"))?;
    tcp.set_nodelay(true)?;
    let mut client = Client::new(tcp.compat(), hostport, "/");
    match client.handshake().await.context("WebSocket handshake with the chain node")? {
        ServerResponse::Accepted { .. } => {}
        other => bail!("the chain node refused the WebSocket upgrade: {other:?}"),
    }
    let mut b = client.into_builder();
    b.set_max_message_size(MAX_NOTIFICATION_BYTES);
    let (mut tx, mut rx) = b.finish();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "xen_subscribeAnnouncements", "params": [filter]});
    tx.send_text(req.to_string()).await?;
    tx.flush().await?;
    let mut buf = Vec::new();
    rx.receive_data(&mut buf).await.context("the subscription's answer")?;
    let v: Value = serde_json::from_slice(&buf).context("malformed subscription answer")?;
    if let Some(e) = v.get("error") {
        bail!("xen_subscribeAnnouncements: {}", e["message"].as_str().unwrap_or("error"));
    }
    Ok(Announcements { _tx: tx, rx })
}

impl Announcements {
    /// The next announcement; an error when the connection ends or a
    /// notification is malformed.
    pub async fn next(&mut self) -> anyhow::Result<Announcement> {
        let mut buf = Vec::new();
        self.rx.receive_data(&mut buf).await.context("the chain node's subscription")?;
        let v: Value = serde_json::from_slice(&buf).context("malformed notification")?;
        serde_json::from_value(v["params"]["result"].clone()).context("malformed announcement in a notification")
    }
}
