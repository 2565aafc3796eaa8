//! One market session with a publisher, the provider's side of
//! `protocol/README.md`: hello and auth, offer and counter rounds, then one
//! contract per proposed container (sign, countersign, channel, container,
//! ready) and the metering loop of [`super::pay`] until the session ends.
//! Whatever way it ends, every contract it made is settled.

use super::pay::{self, Live};
use super::Market;
use crate::store::{ContractRecord, ContractState};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zennet_protocol::tx::Announcement;
use zennet_protocol::market::{check_hellos, session_transcript, Contract, Hello, Msg, Offer, Terms, MARKET_VERSION};
use zennet_protocol::negotiate::provider_accepts;
use zennet_protocol::spec::ContainerSpec;
use zennet_protocol::tx::{ChannelId, Hash32, Requirements};

/// How long the provider waits for each step of the handshake.
const STEP: Duration = Duration::from_secs(15);
/// Attempts at opening a session after the first.
const OPEN_ATTEMPTS: u32 = 4;
/// How long the channel may take to reach a block.
const CHANNEL_WAIT: Duration = Duration::from_secs(30);

/// The container spec an announcement asks for (what the provider checks
/// the proposed terms against).
pub fn spec_of(r: &Requirements, tenant: &str) -> ContainerSpec {
    ContainerSpec {
        memory_bytes: r.memory_bytes,
        cpu_millicores: r.cpu_millicores,
        pids_max: 256,
        disk_bytes: r.disk_bytes,
        io_weight: 100,
        env: Vec::new(),
        ssh_authorized_keys: Vec::new(),
        base: r.image.clone(),
        tenant: tenant.to_string(),
    }
}

/// A channel confirmed and its container started (or why not).
struct Started {
    contract: Hash32,
    channel: ChannelId,
    result: anyhow::Result<Instant>,
}

/// Dials the announcer and serves the session to its end. The opening
/// (dial, hellos, auth) is retried a few times with backoff: a publisher
/// hiring many providers at once may drop a stream it could not accept yet.
pub async fn provide(m: Arc<Market>, ann: &Announcement, n: u32) -> anyhow::Result<()> {
    let mut attempt = 0;
    let s = loop {
        match open(&m, ann).await {
            Ok(s) => break s,
            Err(e) if attempt < OPEN_ATTEMPTS => {
                attempt += 1;
                let wait = Duration::from_millis(100 << attempt) + Duration::from_millis(Hash32::random().0[0] as u64);
                tracing::info!("announcement {}: opening the session failed ({e:#}), retrying in {wait:?}", ann.id);
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    };
    serve(m, ann, n, s).await
}

/// Dial, hellos and auth.
async fn open(m: &Arc<Market>, ann: &Announcement) -> anyhow::Result<zennet_net::Session> {
    let addr: libp2p::Multiaddr = ann.endpoint.parse().with_context(|| format!("announcement endpoint {:?}", ann.endpoint))?;
    let mut s = m.node.connect(&addr).await?;
    if s.peer_key.address() != ann.publisher {
        bail!("the endpoint's key is {}, not the announcer {}", s.peer_key.address(), ann.publisher);
    }
    let chain = m.chain.clone();
    let chain_id = tokio::task::spawn_blocking(move || chain.chain_id()).await??;
    let mine = Hello { version: MARKET_VERSION, chain_id, job: ann.id, key: m.key.public(), nonce: Hash32::random() };
    s.send(&Msg::Hello(mine.clone())).await?;
    let Msg::Hello(theirs) = s.recv_within(STEP).await? else { bail!("expected the publisher's hello") };
    if theirs.key != s.peer_key {
        bail!("the publisher's hello names a key other than its peer id's");
    }
    check_hellos(&mine, &theirs)?;
    let transcript = session_transcript(&mine, &theirs);
    s.send(&Msg::Auth { sig: m.key.sign(&transcript) }).await?;
    let Msg::Auth { sig } = s.recv_within(STEP).await? else { bail!("expected the publisher's auth") };
    s.peer_key.verify(&transcript, &sig).context("the publisher's session signature")?;
    Ok(s)
}

/// Negotiation, contracts and metering over an open session.
async fn serve(m: Arc<Market>, ann: &Announcement, n: u32, mut s: zennet_net::Session) -> anyhow::Result<()> {
    // Offer and counter rounds.
    let spec = spec_of(&ann.requirements, &ann.publisher.to_string());
    let reserve = m.reserve();
    let mut offer = Offer { round: 0, count: n, rates: m.asking(), calibration: m.calibration() };
    s.send(&Msg::Offer(offer.clone())).await?;
    loop {
        match s.recv_within(STEP).await? {
            Msg::Accept { round } if round == offer.round => break,
            Msg::Counter { round, rates } if round == offer.round + 1 => {
                if let Err(why) = provider_accepts(&rates, &reserve, &spec) {
                    s.send(&Msg::Reject { reason: why.clone() }).await?;
                    bail!("{why}");
                }
                offer = Offer { round, rates, ..offer };
                s.send(&Msg::Offer(offer.clone())).await?;
            }
            Msg::Reject { reason } => bail!("the publisher rejected the offer: {reason}"),
            other => bail!("unexpected message during negotiation: {}", kind(&other)),
        }
    }
    let agreed = offer.rates;

    // Contracts, channels, containers, metering.
    let (mut rx, mut tx) = s.split();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Started>();
    // Containers being created: awaited before settling, so that none is
    // created after its contract was settled.
    let mut starting = tokio::task::JoinSet::new();
    let mut pending: HashMap<Hash32, Terms> = HashMap::new();
    let mut lives: HashMap<Hash32, Live> = HashMap::new();
    let mut signed = 0u32;
    // Contracts of this session already settled (a late voucher is ignored).
    let mut ended: std::collections::HashSet<Hash32> = std::collections::HashSet::new();
    let mut tick: Option<tokio::time::Interval> = None;
    let end: anyhow::Result<String> = loop {
        let tick_fut = async {
            match tick.as_mut() {
                Some(t) => t.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) => break Err(anyhow::Error::new(e).context("the publisher's session")),
                };
                match msg {
                    Msg::Propose(terms) => {
                        if signed >= n {
                            break Err(anyhow::anyhow!("the publisher proposed more than the {n} containers offered"));
                        }
                        if let Err(e) = check_terms(&m, ann, &spec, &agreed, &terms, &lives) {
                            let _ = tx.send(&Msg::Reject { reason: format!("{e:#}") }).await;
                            break Err(e);
                        }
                        let mut terms = terms;
                        let host_key = match host_key(&m, &container_id(&terms)) {
                            Ok((fp, line)) => {
                                terms.host_key_fingerprint = fp;
                                line
                            }
                            Err(e) => break Err(e),
                        };
                        let sig = m.key.sign(&terms.signing_bytes());
                        signed += 1;
                        tracing::info!("signed terms for container {} of {}", terms.index, ann.id);
                        pending.insert(terms.id(), terms.clone());
                        tx.send(&Msg::Sign { terms, sig, host_key }).await?;
                    }
                    Msg::Countersign { contract, sig } => {
                        let Some(terms) = pending.remove(&contract) else { break Err(anyhow::anyhow!("countersign for unknown terms {contract}")) };
                        let c = Contract { provider_sig: m.key.sign(&terms.signing_bytes()), publisher_sig: sig, terms };
                        if let Err(e) = c.verify() {
                            break Err(anyhow::Error::new(e).context("the countersigned contract"));
                        }
                        let rec = ContractRecord { container: container_id(&c.terms), contract: c, channel: None, state: ContractState::Signed, best_voucher: None, last_usage: None, settle_tx: None, end_reason: None };
                        pay::persist(&m, &rec).await?;
                        lives.insert(contract, Live::new(rec));
                    }
                    Msg::ChannelOpened { contract, channel, tx: txh } => {
                        let Some(live) = lives.get(&contract).filter(|l| l.rec.state == ContractState::Signed && l.rec.channel.is_none()) else {
                            break Err(anyhow::anyhow!("channel_opened for unknown or started contract {contract}"));
                        };
                        let (m2, terms, container, ev) = (m.clone(), live.rec.contract.terms.clone(), live.rec.container.clone(), ev_tx.clone());
                        starting.spawn(async move {
                            let result = start(&m2, &terms, &channel, &txh, &container).await;
                            let _ = ev.send(Started { contract, channel, result });
                        });
                    }
                    Msg::Voucher { contract, voucher } => {
                        let Some(live) = lives.get_mut(&contract) else {
                            if ended.contains(&contract) {
                                tracing::debug!("contract {contract}: voucher after settlement ignored");
                                continue;
                            }
                            break Err(anyhow::anyhow!("voucher for unknown contract {contract}"));
                        };
                        match pay::accept_voucher(&m, live, voucher).await {
                            Ok(nonce) => tx.send(&Msg::VoucherAck { contract, nonce }).await?,
                            Err(e) => tracing::warn!("contract {contract}: voucher refused: {e:#}"),
                        }
                    }
                    Msg::Close { contract: Some(id), reason } => {
                        ended.insert(id);
                        if let Some(mut live) = lives.remove(&id) {
                            pay::settle(&m, &mut live.rec, &format!("publisher closed: {reason}")).await;
                        }
                    }
                    Msg::Close { contract: None, reason } | Msg::Reject { reason } => break Ok(format!("publisher ended the session: {reason}")),
                    other => break Err(anyhow::anyhow!("unexpected message: {}", kind(&other))),
                }
            }
            Some(ev) = ev_rx.recv() => {
                let Some(live) = lives.get_mut(&ev.contract) else { continue };
                match ev.result {
                    Ok(started) => {
                        live.rec.channel = Some(ev.channel);
                        live.rec.state = ContractState::Active;
                        live.started = Some(started);
                        pay::persist(&m, &live.rec).await?;
                        let t = &live.rec.contract.terms;
                        match crate::ssh::Target::new(&live.rec.container, t.publisher, &m.cfg.host_keys_dir.join(&live.rec.container), &t.spec.ssh_authorized_keys) {
                            Ok(target) => m.ssh.add(ev.contract, target),
                            Err(e) => tracing::warn!("contract {}: no ssh: {e:#}", ev.contract),
                        }
                        if tick.is_none() {
                            let iv = Duration::from_millis(live.rec.contract.terms.interval_ms as u64);
                            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + iv, iv);
                            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            tick = Some(t);
                        }
                        tx.send(&Msg::Ready { contract: ev.contract }).await?;
                        m.cfg.control.emit(crate::api::Event::Started { contract: ev.contract.to_string(), publisher: t.publisher.address().to_string() });
                    }
                    Err(e) => {
                        let reason = format!("{e:#}");
                        tracing::warn!("contract {}: {reason}", ev.contract);
                        let _ = tx.send(&Msg::Close { contract: Some(ev.contract), reason: reason.clone() }).await;
                        ended.insert(ev.contract);
                        if let Some(mut live) = lives.remove(&ev.contract) {
                            pay::settle(&m, &mut live.rec, &reason).await;
                        }
                    }
                }
            }
            _ = tick_fut => {
                for (id, reason) in pay::meter(&m, &mut lives, &mut tx).await? {
                    let _ = tx.send(&Msg::Close { contract: Some(id), reason: reason.clone() }).await;
                    ended.insert(id);
                    if let Some(mut live) = lives.remove(&id) {
                        pay::settle(&m, &mut live.rec, &reason).await;
                    }
                }
            }
        }
    };
    let reason = match &end {
        Ok(r) => r.clone(),
        Err(e) => format!("{e:#}"),
    };
    tx.close().await;
    while starting.join_next().await.is_some() {}
    for (_, mut live) in lives {
        pay::settle(&m, &mut live.rec, &reason).await;
    }
    end.map(|_| ())
}

/// The engine's id for a contract's container.
fn container_id(t: &Terms) -> String {
    format!("zn-{}-{}", &hex::encode(t.job.0)[..12], t.index)
}

/// The provider's checks of proposed terms: they name both parties, the
/// agreed rates, the announced job and spec, and bounds it accepts.
fn check_terms(m: &Market, ann: &Announcement, spec: &ContainerSpec, agreed: &zennet_protocol::Rates, t: &Terms, lives: &HashMap<Hash32, Live>) -> anyhow::Result<()> {
    t.validate(false)?;
    if t.provider != m.key.public() || t.publisher.address() != ann.publisher {
        bail!("terms name other parties");
    }
    if t.job != ann.id || t.index >= ann.requirements.count {
        bail!("terms for job {} index {} do not match the announcement", t.job, t.index);
    }
    if t.rates != *agreed {
        bail!("terms carry rates other than the agreed ones");
    }
    let s = &t.spec;
    if (s.memory_bytes, s.cpu_millicores, s.disk_bytes, &s.base) != (spec.memory_bytes, spec.cpu_millicores, spec.disk_bytes, &spec.base) {
        bail!("the spec differs from the announced requirements");
    }
    s.validate(&m.capacity).context("the spec")?;
    if t.interval_ms < m.cfg.min_interval_ms {
        bail!("metering interval {} ms is below this provider's shortest {} ms", t.interval_ms, m.cfg.min_interval_ms);
    }
    if t.exposure_bound > m.cfg.max_exposure {
        bail!("exposure bound {} is above this provider's maximum {}", t.exposure_bound, m.cfg.max_exposure);
    }
    if let Some(other) = lives.values().next() {
        if other.rec.contract.terms.interval_ms != t.interval_ms {
            bail!("every contract of a session must share one metering interval");
        }
    }
    if lives.values().any(|l| l.rec.contract.terms.index == t.index) {
        bail!("container {} was already proposed", t.index);
    }
    Ok(())
}

/// Waits until `channel` is in a block with the contract's parties, at
/// least its deposit and expiry, then creates the container. Returns when
/// it started (the origin of the usage reports' clock).
async fn start(m: &Arc<Market>, t: &Terms, channel: &ChannelId, txh: &Hash32, container: &str) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + CHANNEL_WAIT;
    loop {
        let (chain, id) = (m.chain.clone(), *channel);
        let ch = tokio::task::spawn_blocking(move || chain.channel(&id)).await??;
        if let Some(ch) = ch {
            if ch.publisher != t.publisher.address() || ch.provider != m.key.address() {
                bail!("channel {channel} is between other parties");
            }
            if ch.deposit < t.deposit || ch.expiry_height < t.expiry_height || ch.settled {
                bail!("channel {channel} holds {} until height {}, the contract needs {} until {}", ch.deposit, ch.expiry_height, t.deposit, t.expiry_height);
            }
            tracing::info!("channel {channel} confirmed, creating {container}");
            break;
        }
        if Instant::now() > deadline {
            bail!("channel {channel} (tx {txh}) was not in a block within {}s", CHANNEL_WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (engine, id, spec) = (m.engine.clone(), container.to_string(), t.spec.clone());
    let started = Instant::now();
    tokio::task::spawn_blocking(move || engine.run_idle(&id, &spec)).await?.context("create the container")?;
    tracing::info!("{container} running after {:?}", started.elapsed());
    Ok(started)
}

/// Creates the container's SSH host key (ed25519, mode 0600) and returns
/// its OpenSSH SHA256 fingerprint, which the contract carries, and its
/// public key line, which the publisher's `known_hosts` gets.
fn host_key(m: &Market, container: &str) -> anyhow::Result<(String, String)> {
    use ssh_key::{rand_core::OsRng, Algorithm, HashAlg, LineEnding, PrivateKey};
    let k = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).context("generate a host key")?;
    std::fs::create_dir_all(&m.cfg.host_keys_dir).with_context(|| format!("create {}", m.cfg.host_keys_dir.display()))?;
    let path = m.cfg.host_keys_dir.join(container);
    if path.exists() {
        // A key of an earlier session for the same job and index.
        std::fs::remove_file(&path).with_context(|| format!("replace host key {}", path.display()))?;
    }
    k.write_openssh_file(&path, LineEnding::LF).with_context(|| format!("write host key {}", path.display()))?;
    let line = k.public_key().to_openssh().context("encode the host key")?;
    Ok((k.public_key().fingerprint(HashAlg::Sha256).to_string(), line))
}

/// A message's type name, for errors.
pub fn kind(m: &Msg) -> String {
    serde_json::to_value(m).ok().and_then(|v| v["type"].as_str().map(String::from)).unwrap_or_default()
}
