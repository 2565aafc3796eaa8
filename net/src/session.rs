//! A libp2p node (TCP, noise, yamux) whose identity key is the chain key,
//! and the market sessions it carries: one stream per session on
//! [`MARKET_PROTOCOL`], each frame a 4-byte big-endian length and one JSON
//! [`Msg`] of at most [`MAX_FRAME_BYTES`].
//!
//! Noise authenticates the remote peer id; for secp256k1 identities the
//! peer id embeds the public key, so [`Session::peer_key`] is the remote's
//! chain key and needs no further lookup. The market's `Auth` step then binds
//! the session explicitly (see `protocol/README.md`).

use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use zennet_protocol::keys::{PublicKey, SecretKey};
use zennet_protocol::market::{decode, encode, MarketError, Msg, MARKET_PROTOCOL, MAX_FRAME_BYTES};

/// What went wrong on the transport.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the chain key is not a valid libp2p secp256k1 key")]
    Key,
    #[error("listening on {addr}: {why}")]
    Listen { addr: Multiaddr, why: String },
    #[error("address {0} does not end in /p2p/<peer id>")]
    NoPeerId(Multiaddr),
    #[error("peer id {0} does not carry a secp256k1 key (not a Zennet peer)")]
    NotSecp256k1(PeerId),
    #[error("opening a market stream to {peer}: {why}")]
    Open { peer: PeerId, why: String },
    #[error("the libp2p node stopped")]
    Stopped,
    #[error("peer closed the session")]
    Closed,
    #[error("i/o on the session: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is above the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Market(#[from] MarketError),
}

/// Longest wait for a session's orderly close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

enum Cmd {
    Dial(PeerId, Multiaddr, oneshot::Sender<Result<(), String>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
}

/// A running libp2p node. Dropping it stops the swarm task.
pub struct Node {
    peer_id: PeerId,
    control: libp2p_stream::Control,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The libp2p identity of a chain key.
pub fn keypair(key: &SecretKey) -> Result<identity::Keypair, NetError> {
    let sk = identity::secp256k1::SecretKey::try_from_bytes(key.to_bytes()).map_err(|_| NetError::Key)?;
    Ok(identity::Keypair::from(identity::secp256k1::Keypair::from(sk)))
}

/// The chain key inside a secp256k1 peer id.
pub fn peer_key(peer: &PeerId) -> Result<PublicKey, NetError> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return Err(NetError::NotSecp256k1(*peer));
    }
    let pk = identity::PublicKey::try_decode_protobuf(mh.digest()).map_err(|_| NetError::NotSecp256k1(*peer))?;
    let pk = pk.try_into_secp256k1().map_err(|_| NetError::NotSecp256k1(*peer))?;
    PublicKey::from_bytes(&pk.to_bytes()).map_err(|_| NetError::NotSecp256k1(*peer))
}

/// The peer id a chain key has on libp2p.
pub fn peer_id_of(key: &PublicKey) -> PeerId {
    let pk = identity::secp256k1::PublicKey::try_from_bytes(&key.to_bytes()).expect("a valid compressed secp256k1 key");
    identity::PublicKey::from(pk).to_peer_id()
}

fn proto() -> StreamProtocol {
    StreamProtocol::new(MARKET_PROTOCOL)
}

impl Node {
    /// Starts a node with the chain key as identity, listening on `listen`
    /// if given (a publisher listens; a provider only dials).
    pub async fn start(key: &SecretKey, listen: Option<Multiaddr>) -> Result<Node, NetError> {
        let kp = keypair(key)?;
        let peer_id = kp.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(kp)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|_| NetError::Key)?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .map_err(|_| NetError::Key)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
            .build();
        let control = swarm.behaviour().new_control();
        if let Some(addr) = listen {
            swarm.listen_on(addr.clone()).map_err(|e| NetError::Listen { addr: addr.clone(), why: e.to_string() })?;
            // Wait for the bound address (port 0 becomes a real port).
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { .. } => break,
                    SwarmEvent::ListenerError { error, .. } | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                        return Err(NetError::Listen { addr, why: error.to_string() });
                    }
                    _ => {}
                }
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let task = tokio::spawn(async move {
            let mut pending: Vec<(PeerId, oneshot::Sender<Result<(), String>>)> = Vec::new();
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        None => return,
                        Some(Cmd::Dial(peer, addr, done)) => {
                            if swarm.is_connected(&peer) {
                                let _ = done.send(Ok(()));
                                continue;
                            }
                            swarm.add_peer_address(peer, addr.clone());
                            match swarm.dial(addr) {
                                Ok(()) => pending.push((peer, done)),
                                Err(e) => { let _ = done.send(Err(e.to_string())); }
                            }
                        }
                        Some(Cmd::ListenAddrs(done)) => {
                            let _ = done.send(swarm.listeners().cloned().collect());
                        }
                    },
                    ev = swarm.select_next_some() => match ev {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            for (_, done) in extract(&mut pending, |p| *p == peer_id) {
                                let _ = done.send(Ok(()));
                            }
                        }
                        SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), error, .. } => {
                            for (_, done) in extract(&mut pending, |p| *p == peer_id) {
                                let _ = done.send(Err(error.to_string()));
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        Ok(Node { peer_id, control, cmd: tx, task })
    }

    /// A handle for opening and accepting streams.
    pub(crate) fn control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Addresses this node listens on, each ending in `/p2p/<peer id>`.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::ListenAddrs(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default().into_iter().map(|a| a.with(libp2p::multiaddr::Protocol::P2p(self.peer_id))).collect()
    }

    /// Accepts market sessions (call once).
    pub fn incoming(&self) -> Result<Incoming, NetError> {
        let s = self.control.clone().accept(proto()).map_err(|_| NetError::Stopped)?;
        Ok(Incoming(s))
    }

    /// Dials `addr` (which names the peer with `/p2p/<id>`) and opens a session.
    pub async fn connect(&self, addr: &Multiaddr) -> Result<Session, NetError> {
        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(NetError::NoPeerId(addr.clone()));
        };
        let key = peer_key(&peer)?;
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Dial(peer, addr.clone(), tx)).map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?.map_err(|why| NetError::Open { peer, why })?;
        let stream = self.control.clone().open_stream(peer, proto()).await.map_err(|e| NetError::Open { peer, why: e.to_string() })?;
        Ok(Session::new(peer, key, stream))
    }
}

fn extract<T>(v: &mut Vec<(PeerId, T)>, f: impl Fn(&PeerId) -> bool) -> Vec<(PeerId, T)> {
    let (out, keep): (Vec<_>, Vec<_>) = std::mem::take(v).into_iter().partition(|(p, _)| f(p));
    *v = keep;
    out
}

/// Incoming market sessions.
pub struct Incoming(libp2p_stream::IncomingStreams);

impl Incoming {
    /// The next session from a peer with a secp256k1 identity (others are
    /// dropped), or `None` once the node stops.
    pub async fn next(&mut self) -> Option<Session> {
        loop {
            let (peer, stream) = self.0.next().await?;
            match peer_key(&peer) {
                Ok(key) => return Some(Session::new(peer, key, stream)),
                Err(e) => tracing::warn!("dropping a session: {e}"),
            }
        }
    }
}

/// One market session: framed messages over one stream.
pub struct Session {
    pub peer: PeerId,
    /// The remote's chain key, as authenticated by noise.
    pub peer_key: PublicKey,
    rx: Reader,
    tx: Writer,
}

impl Session {
    fn new(peer: PeerId, peer_key: PublicKey, stream: libp2p::Stream) -> Session {
        let (r, w) = stream.split();
        Session { peer, peer_key, rx: Reader { r, buf: Vec::new() }, tx: Writer(w) }
    }

    /// Sends one message.
    pub async fn send(&mut self, m: &Msg) -> Result<(), NetError> {
        self.tx.send(m).await
    }

    /// Receives one message, validated.
    pub async fn recv(&mut self) -> Result<Msg, NetError> {
        self.rx.recv().await
    }

    /// Receives one message within `t`.
    pub async fn recv_within(&mut self, t: Duration) -> Result<Msg, NetError> {
        tokio::time::timeout(t, self.rx.recv()).await.map_err(|_| NetError::Timeout(t))?
    }

    /// Separate halves, for a loop that sends on a timer while receiving.
    pub fn split(self) -> (Reader, Writer) {
        (self.rx, self.tx)
    }
}

/// The receiving half of a session. Bytes read but not yet a whole frame
/// stay in its buffer, so [`Reader::recv`] is cancel-safe: a `select!` may
/// drop it between frames or mid-frame without losing a byte.
pub struct Reader {
    r: ReadHalf<libp2p::Stream>,
    buf: Vec<u8>,
}
/// The sending half of a session.
pub struct Writer(WriteHalf<libp2p::Stream>);

impl Reader {
    /// Receives one frame and decodes it; an oversized length is refused
    /// before the body is read.
    pub async fn recv(&mut self) -> Result<Msg, NetError> {
        loop {
            if self.buf.len() >= 4 {
                let n = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
                if n > MAX_FRAME_BYTES {
                    return Err(NetError::TooLarge(n));
                }
                if self.buf.len() >= 4 + n {
                    let frame: Vec<u8> = self.buf.drain(..4 + n).skip(4).collect();
                    return Ok(decode(&frame)?);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let k = self.r.read(&mut chunk).await?;
            if k == 0 {
                return Err(NetError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..k]);
        }
    }
}

impl Writer {
    /// Sends one message as a frame.
    pub async fn send(&mut self, m: &Msg) -> Result<(), NetError> {
        self.send_raw(&encode(m)).await
    }

    /// Sends arbitrary bytes as a frame (tests use it to send garbage).
    pub async fn send_raw(&mut self, body: &[u8]) -> Result<(), NetError> {
        let mut f = Vec::with_capacity(4 + body.len());
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(body);
        self.0.write_all(&f).await?;
        self.0.flush().await?;
        Ok(())
    }

    /// Closes the sending side (giving up after [`CLOSE_TIMEOUT`]: a peer
    /// that vanished never acknowledges).
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.0.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zennet_protocol::market::MarketError;

    #[tokio::test]
    async fn sessions_carry_frames_and_name_the_peer_by_its_chain_key() {
        let a = SecretKey::from_seed("a");
        let b = SecretKey::from_seed("b");
        let na = Node::start(&a, Some("/ip4/127.0.0.1/tcp/0".parse().unwrap())).await.unwrap();
        let nb = Node::start(&b, None).await.unwrap();
        let addr = na.listen_addrs().await.remove(0);
        assert_eq!(peer_key(&na.peer_id()).unwrap(), a.public());
        assert_eq!(peer_id_of(&a.public()), na.peer_id());
        let mut inc = na.incoming().unwrap();
        let mut s = nb.connect(&addr).await.unwrap();
        assert_eq!(s.peer_key, a.public());
        let msg = Msg::Reject { reason: "hello".into() };
        s.send(&msg).await.unwrap();
        let mut r = inc.next().await.unwrap();
        assert_eq!(r.peer_key, b.public());
        assert_eq!(r.recv().await.unwrap(), msg);
        // Garbage and oversized frames are refused, naming what was wrong.
        let (_, mut w) = s.split();
        w.send_raw(b"{\"type\":\"nope\"}").await.unwrap();
        assert!(matches!(r.recv().await, Err(NetError::Market(MarketError::Malformed(_)))));
        w.0.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
        w.0.flush().await.unwrap();
        assert!(matches!(r.recv().await, Err(NetError::TooLarge(_))));
    }

    #[tokio::test]
    async fn a_frame_split_across_writes_survives_a_cancelled_recv() {
        let a = SecretKey::from_seed("d");
        let na = Node::start(&a, Some("/ip4/127.0.0.1/tcp/0".parse().unwrap())).await.unwrap();
        let nb = Node::start(&SecretKey::from_seed("e"), None).await.unwrap();
        let mut inc = na.incoming().unwrap();
        let s = nb.connect(&na.listen_addrs().await.remove(0)).await.unwrap();
        let (_, mut w) = s.split();
        let msg = Msg::Reject { reason: "x".repeat(400) };
        let body = zennet_protocol::market::encode(&msg);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        // Half a frame, then a recv that is cancelled by a timeout.
        w.0.write_all(&frame[..200]).await.unwrap();
        w.0.flush().await.unwrap();
        let mut r = inc.next().await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(200), r.recv()).await.is_err());
        w.0.write_all(&frame[200..]).await.unwrap();
        w.0.flush().await.unwrap();
        assert_eq!(r.recv().await.unwrap(), msg);
    }

    #[tokio::test]
    async fn dialing_an_address_without_a_peer_id_is_refused() {
        let n = Node::start(&SecretKey::from_seed("c"), None).await.unwrap();
        let e = n.connect(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()).await.err().unwrap();
        assert!(matches!(e, NetError::NoPeerId(_)), "{e}");
    }
}
