//! SSH tunnels over the market's libp2p connection (the provider dialled the
//! publisher, so this works behind NAT): the publisher opens one stream on
//! [`SSH_PROTOCOL`] per TCP connection a user makes to a contract's local
//! port; the stream begins with the 32-byte contract id, the provider answers
//! one byte ([`SSH_ACCEPTED`] or [`SSH_REFUSED`]), and then it carries the
//! SSH connection to that contract's container.
//!
//! libp2p-stream hands incoming streams to the acceptor through a channel
//! with no spare room, so a stream arriving while the previous one is being
//! taken can be dropped: [`open`] waits for the provider's answer and
//! retries a dropped opening with backoff.

use crate::session::{peer_id_of, peer_key, NetError, Node};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use libp2p::StreamProtocol;
use std::time::Duration;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};
use zennet_protocol::keys::PublicKey;
use zennet_protocol::market::{SSH_ACCEPTED, SSH_PROTOCOL, SSH_REFUSED};
use zennet_protocol::tx::Hash32;

/// An SSH tunnel stream as tokio I/O.
pub type TunnelStream = Compat<libp2p::Stream>;

/// How long a provider waits for the contract id, and a publisher for the answer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Openings tried before [`open`] gives up.
pub const OPEN_ATTEMPTS: u32 = 8;

fn proto() -> StreamProtocol {
    StreamProtocol::new(SSH_PROTOCOL)
}

/// Incoming tunnel streams (the provider's side).
pub struct TunnelIncoming(libp2p_stream::IncomingStreams);

impl Node {
    /// Accepts SSH tunnel streams (call once).
    pub fn tunnels(&self) -> Result<TunnelIncoming, NetError> {
        Ok(TunnelIncoming(self.control().accept(proto()).map_err(|_| NetError::Stopped)?))
    }
}

impl TunnelIncoming {
    /// The next stream and the chain key of the peer that opened it (peers
    /// without a secp256k1 identity are dropped), or `None` once the node stops.
    pub async fn next(&mut self) -> Option<(PublicKey, libp2p::Stream)> {
        loop {
            let (peer, stream) = self.0.next().await?;
            match peer_key(&peer) {
                Ok(key) => return Some((key, stream)),
                Err(e) => tracing::warn!("dropping a tunnel stream: {e}"),
            }
        }
    }
}

/// Provider: reads the contract id a tunnel stream starts with.
pub async fn read_contract(stream: &mut libp2p::Stream) -> Result<Hash32, NetError> {
    let mut id = [0u8; 32];
    tokio::time::timeout(HEADER_TIMEOUT, stream.read_exact(&mut id)).await.map_err(|_| NetError::Timeout(HEADER_TIMEOUT))??;
    Ok(Hash32(id))
}

/// Provider: answers the opening; after `true` the stream is the SSH connection.
pub async fn answer(mut stream: libp2p::Stream, accepted: bool) -> Result<TunnelStream, NetError> {
    stream.write_all(&[if accepted { SSH_ACCEPTED } else { SSH_REFUSED }]).await?;
    stream.flush().await?;
    if !accepted {
        let _ = stream.close().await;
    }
    Ok(stream.compat())
}

/// Publisher: opens a tunnel to `provider` (connected already, since it
/// dialled this node) for `contract`, retrying openings the provider's
/// acceptor dropped. A refusal is final.
pub async fn open(node: &Node, provider: &PublicKey, contract: &Hash32) -> Result<TunnelStream, NetError> {
    let peer = peer_id_of(provider);
    let mut last = String::new();
    for attempt in 0..OPEN_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
        }
        let mut s = match node.control().open_stream(peer, proto()).await {
            Ok(s) => s,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let r = async {
            s.write_all(&contract.0).await?;
            s.flush().await?;
            let mut a = [0u8; 1];
            s.read_exact(&mut a).await?;
            Ok::<u8, std::io::Error>(a[0])
        };
        match tokio::time::timeout(HEADER_TIMEOUT, r).await {
            Ok(Ok(SSH_ACCEPTED)) => return Ok(s.compat()),
            Ok(Ok(_)) => return Err(NetError::Open { peer, why: format!("the provider refused a tunnel for contract {contract}") }),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {HEADER_TIMEOUT:?}"),
        }
    }
    Err(NetError::Open { peer, why: format!("tunnel for contract {contract}: {last} (after {OPEN_ATTEMPTS} attempts)") })
}
