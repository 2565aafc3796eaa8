//! The SSH server of rented containers (the seed's "ssh without a password").
//!
//! Each running contract registers a [`Target`]: its container, the
//! publisher who may open tunnels to it, the container's own host key (made
//! at signing time; its fingerprint is in the signed contract) and the
//! publisher's keys from the contract, the only keys accepted (password and
//! keyboard-interactive are not offered). Connections arrive as libp2p
//! tunnel streams (`zennet_net::tunnel`) over the connection the agent
//! dialled to the publisher; [`SshServer::serve`] runs one SSH connection
//! (russh) on any byte stream. Sessions run inside the container through the
//! engine's exec path ([`session`]): shell and exec with or without a pty,
//! `env`, window changes, signals, exit codes, the `sftp` subsystem
//! ([`sftp`], served inside the container's mount namespace), and
//! `direct-tcpip` (`ssh -L`) to addresses in the container's network
//! namespace.

mod session;
pub mod fdio;
pub mod sftp;

use crate::containers::Engine;
use anyhow::Context;
use russh::server::{Auth, Config, Handler, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use zennet_net::tunnel::{self, TunnelIncoming};
use zennet_protocol::keys::PublicKey;
use zennet_protocol::sshkey::{self, SshPublicKey};
use zennet_protocol::tx::Hash32;

/// Most SSH connections served at once, over all containers.
pub const MAX_CONNECTIONS: usize = 1024;

/// One contract's container as its SSH server sees it.
#[derive(Clone)]
pub struct Target {
    /// The engine's container id.
    pub container: String,
    /// The only peer that may open tunnels to it.
    pub publisher: PublicKey,
    /// The keys the publisher put in the contract.
    pub authorized: Vec<SshPublicKey>,
    config: Arc<Config>,
}

impl Target {
    /// Loads the container's host key and parses the contract's keys.
    pub fn new(container: &str, publisher: PublicKey, host_key: &Path, authorized: &[String]) -> anyhow::Result<Target> {
        let key = russh::keys::load_secret_key(host_key, None).with_context(|| format!("load host key {}", host_key.display()))?;
        let authorized = authorized.iter().map(|l| sshkey::parse(l)).collect::<Result<Vec<_>, _>>().context("the contract's ssh keys")?;
        let config = Config {
            server_id: russh::SshId::Standard("SSH-2.0-zennet".into()),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(500),
            // OpenSSH probes with "none" first: answer that at once.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![key],
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            window_size: 8 << 20,
            channel_buffer_size: 256,
            ..Default::default()
        };
        Ok(Target { container: container.to_string(), publisher, authorized, config: Arc::new(config) })
    }

    fn allows(&self, key: &russh::keys::PublicKey) -> bool {
        let Ok(line) = key.to_openssh() else { return false };
        let bare: Vec<&str> = line.split_whitespace().take(2).collect();
        self.authorized.iter().any(|a| a.line.split_whitespace().eq(bare.iter().copied()))
    }
}

/// The agent's SSH server: the registry of contracts with running containers.
pub struct SshServer {
    engine: Arc<Engine>,
    targets: Mutex<HashMap<Hash32, Target>>,
    open: Arc<tokio::sync::Semaphore>,
}

impl SshServer {
    /// A server whose sessions run through `engine`.
    pub fn new(engine: Arc<Engine>) -> Arc<SshServer> {
        Arc::new(SshServer { engine, targets: Mutex::default(), open: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)) })
    }

    /// Serves `contract` from now on.
    pub fn add(&self, contract: Hash32, t: Target) {
        self.targets.lock().unwrap().insert(contract, t);
    }

    /// Stops taking connections for `contract` (open ones end with the container).
    pub fn remove(&self, contract: &Hash32) {
        self.targets.lock().unwrap().remove(contract);
    }

    /// Serves every tunnel stream the node accepts, until it stops.
    pub async fn serve_tunnels(self: Arc<Self>, mut incoming: TunnelIncoming) {
        while let Some((peer, mut stream)) = incoming.next().await {
            let me = self.clone();
            tokio::spawn(async move {
                let contract = match tunnel::read_contract(&mut stream).await {
                    Ok(c) => c,
                    Err(e) => return tracing::info!("tunnel from {}: {e}", peer.address()),
                };
                let target = me.targets.lock().unwrap().get(&contract).cloned().filter(|t| t.publisher == peer);
                let Ok(stream) = tunnel::answer(stream, target.is_some()).await else { return };
                let Some(target) = target else {
                    return tracing::info!("tunnel from {} for contract {contract} refused: no running contract of theirs", peer.address());
                };
                if let Err(e) = me.serve(stream, target).await {
                    tracing::info!("ssh for contract {contract}: {e:#}");
                }
            });
        }
    }

    /// Runs one SSH connection to `target`'s container on `stream`.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self: Arc<Self>, stream: S, target: Target) -> anyhow::Result<()> {
        let Ok(_permit) = self.open.clone().try_acquire_owned() else { anyhow::bail!("{MAX_CONNECTIONS} ssh connections are open already") };
        let conn = Conn { engine: self.engine.clone(), target: target.clone() };
        russh::server::run_stream(target.config.clone(), stream, conn).await?.await?;
        Ok(())
    }
}

/// One SSH connection.
struct Conn {
    engine: Arc<Engine>,
    target: Target,
}

impl Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: russh::server::PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(if self.target.allows(offer.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, _user: &str, key: russh::server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(if self.target.allows(key.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(&mut self, channel: Channel<Msg>, reply: russh::server::ChannelOpenHandle, _: &mut Session) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(session::run(channel, self.engine.clone(), self.target.container.clone()));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _from: &str,
        _from_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        match session::connect_inside(&self.engine, &self.target.container, host, port).await {
            Ok(tcp) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut ch = channel.into_stream();
                    let mut tcp = tcp;
                    let _ = tokio::io::copy_bidirectional(&mut ch, &mut tcp).await;
                });
            }
            Err(e) => {
                tracing::info!("direct-tcpip to {host}:{port} in {}: {e:#}", self.target.container);
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn pty_request(&mut self, channel: ChannelId, _: &str, _: u32, _: u32, _: u32, _: u32, _: &[(russh::Pty, u32)], s: &mut Session) -> Result<(), Self::Error> {
        s.channel_success(channel)
    }

    async fn env_request(&mut self, channel: ChannelId, _: &str, _: &str, s: &mut Session) -> Result<(), Self::Error> {
        s.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, s: &mut Session) -> Result<(), Self::Error> {
        s.channel_success(channel)
    }

    async fn exec_request(&mut self, channel: ChannelId, _: &[u8], s: &mut Session) -> Result<(), Self::Error> {
        s.channel_success(channel)
    }

    async fn subsystem_request(&mut self, channel: ChannelId, name: &str, s: &mut Session) -> Result<(), Self::Error> {
        if name == "sftp" {
            s.channel_success(channel)
        } else {
            s.channel_failure(channel)
        }
    }
}
