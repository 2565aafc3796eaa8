//! The provider's side of the market (ARCHITECTURE.md steps 2 to 9): follow
//! the chain's announcements (a WebSocket subscription) that fit the free capacity and pay at least
//! the reserve, dial the publisher, negotiate ([`session`]), start the
//! container once the channel is in a block, then meter and get paid
//! ([`pay`]). Contracts and vouchers live in the agent's redb store; on
//! start, every contract a previous run left open is settled with its best
//! stored voucher.

mod pay;
mod session;

use crate::containers::Engine;
use crate::store::{ContractState, Store};
use anyhow::Context;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zennet_net::rpc::Chain;
use zennet_protocol::tx::Announcement;
use zennet_net::Node;
use zennet_protocol::keys::SecretKey;
use zennet_protocol::negotiate::{default_rates, hourly_cost, scale};
use zennet_protocol::spec::Capacity;
use zennet_protocol::tx::Hash32;
use zennet_protocol::{Amount, CalibrationSummary, Rates};

/// The provider's market settings (each a `zennet-agent run` option).
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// The chain node's JSON-RPC URL.
    pub rpc: String,
    /// Price of the whole machine per second, base units (used when there
    /// is no calibration record; a record carries its own).
    pub price_per_second: Amount,
    /// Lowest counter accepted, percent of the asking rates.
    pub reserve_pct: u64,
    /// Largest exposure bound accepted in a contract.
    pub max_exposure: Amount,
    /// Most containers (contracts) at once, offered or running.
    pub max_contracts: u32,
    /// Shortest metering interval accepted in a contract, milliseconds.
    pub min_interval_ms: u32,
    /// Intervals a container stays frozen for non-payment before it is killed.
    pub grace_intervals: u32,
    /// Wait before reopening a lost subscription to the chain.
    pub poll: Duration,
    /// Fee paid on the agent's own txs (`ChannelClose`).
    pub fee: Amount,
    /// Where containers' SSH host keys are kept.
    pub host_keys_dir: std::path::PathBuf,
    /// Publishers whose unpaid history is above this (base units), or who
    /// ever stopped paying, are not answered.
    pub max_unpaid_history: Amount,
    /// Run-time switches, price and limits (the control API), and where
    /// the market's events go.
    pub control: Arc<crate::api::Control>,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            rpc: "http://127.0.0.1:8645".into(),
            price_per_second: Amount(1_000),
            reserve_pct: 80,
            max_exposure: Amount(100 * Amount::BASE_PER_XEN),
            max_contracts: 64,
            min_interval_ms: zennet_protocol::market::INTERVAL_MS_RANGE.0,
            grace_intervals: 3,
            poll: Duration::from_secs(1),
            fee: Amount(1_000),
            host_keys_dir: "/var/lib/zennet/hostkeys".into(),
            max_unpaid_history: Amount(Amount::BASE_PER_XEN / 100),
            control: Arc::new(crate::api::Control::default()),
        }
    }
}

/// Capacity promised to sessions and contracts.
#[derive(Debug, Default, Clone, Copy)]
struct Used {
    containers: u32,
    memory_bytes: u64,
    cpu_millicores: u64,
    disk_bytes: u64,
}

/// Everything a session needs, shared.
pub struct Market {
    key: SecretKey,
    chain: Arc<Chain>,
    engine: Arc<Engine>,
    store: Arc<Store>,
    node: Node,
    cfg: MarketConfig,
    capacity: Capacity,
    used: Mutex<Used>,
    /// The asking rates while the machine is uncalibrated, at `cfg.price_per_second`.
    uncalibrated: Rates,
    /// The containers' SSH server (tunnels arrive over `node`).
    ssh: Arc<crate::ssh::SshServer>,
}

impl Market {
    /// Connects the pieces. The asking rates come from the calibration the
    /// control holds (replaced by a run-time Recalibrate), else from the price.
    pub async fn new(key: SecretKey, engine: Arc<Engine>, store: Arc<Store>, capacity: Capacity, cfg: MarketConfig) -> anyhow::Result<Arc<Market>> {
        let node = Node::start(&key, None).await.context("start the libp2p node")?;
        let uncalibrated = default_rates(cfg.price_per_second, &capacity);
        let chain = Arc::new(Chain::new(&cfg.rpc));
        let ssh = crate::ssh::SshServer::new(engine.clone());
        tokio::spawn(ssh.clone().serve_tunnels(node.tunnels()?));
        Ok(Arc::new(Market { key, chain, engine, store, node, cfg, capacity, used: Mutex::new(Used::default()), uncalibrated, ssh }))
    }

    /// The asking rates for new offers: the calibration's (or the
    /// uncalibrated ones), scaled to the asking price in force (SetPrice's,
    /// else the configured price).
    fn asking(&self) -> Rates {
        let (ask, ask_price) = match self.cfg.control.calibration() {
            Some(c) => (c.rates, c.price_per_second),
            None => (self.uncalibrated, self.cfg.price_per_second.0),
        };
        match self.cfg.control.effective_price() {
            p if p != ask_price && ask_price > 0 => scale(&ask, p, ask_price),
            _ => ask,
        }
    }

    /// The calibration summary new offers carry.
    fn calibration(&self) -> Option<CalibrationSummary> {
        self.cfg.control.calibration().map(|c| c.summary)
    }

    fn reserve(&self) -> Rates {
        scale(&self.asking(), self.cfg.reserve_pct, 100)
    }

    /// How many containers of `ann` fit the free capacity (0 if none), and
    /// reserves them. [`Market::release`] gives them back.
    fn take(&self, ann: &Announcement) -> u32 {
        let r = &ann.requirements;
        let lim = self.cfg.control.limits();
        let mut u = self.used.lock().unwrap();
        let free = |cap: u64, used: u64, each: u64| cap.saturating_sub(used).checked_div(each).unwrap_or(u64::MAX);
        let n = free(self.capacity.memory_bytes.min(lim.memory_bytes), u.memory_bytes, r.memory_bytes)
            .min(free((self.capacity.cpu_millicores as u64).min(lim.cpu_millicores), u.cpu_millicores, r.cpu_millicores as u64))
            .min(free(self.capacity.disk_bytes.min(lim.disk_bytes), u.disk_bytes, r.disk_bytes))
            .min(r.count as u64)
            .min(self.cfg.max_contracts.saturating_sub(u.containers) as u64) as u32;
        u.containers += n;
        self.cfg.control.reserve(n);
        u.memory_bytes += r.memory_bytes * n as u64;
        u.cpu_millicores += r.cpu_millicores as u64 * n as u64;
        u.disk_bytes += r.disk_bytes * n as u64;
        n
    }

    fn release(&self, ann: &Announcement, n: u32) {
        let r = &ann.requirements;
        let mut u = self.used.lock().unwrap();
        u.containers = u.containers.saturating_sub(n);
        self.cfg.control.unreserve(n);
        u.memory_bytes = u.memory_bytes.saturating_sub(r.memory_bytes * n as u64);
        u.cpu_millicores = u.cpu_millicores.saturating_sub(r.cpu_millicores as u64 * n as u64);
        u.disk_bytes = u.disk_bytes.saturating_sub(r.disk_bytes * n as u64);
    }

    /// Runs until the process ends: settles what a previous run left open,
    /// then answers every fitting announcement: those active now (one RPC
    /// call), then each new one as the node's subscription delivers it. A
    /// lost subscription is reopened after `poll`, catching up the same way.
    pub async fn run(self: Arc<Self>) {
        self.clone().recover().await;
        let mut seen: HashSet<Hash32> = HashSet::new();
        let mut warned = false;
        loop {
            let filter = json!({
                "max_memory_bytes": self.capacity.memory_bytes,
                "max_cpu_millicores": self.capacity.cpu_millicores,
                "max_disk_bytes": self.capacity.disk_bytes,
            });
            let r: anyhow::Result<()> = async {
                let mut sub = zennet_net::subscribe::announcements(&self.cfg.rpc, filter.clone()).await?;
                let chain = self.chain.clone();
                let now = tokio::task::spawn_blocking(move || chain.announcements(filter)).await??;
                warned = false;
                for ann in now {
                    if seen.insert(ann.id) {
                        self.clone().consider(ann);
                    }
                }
                loop {
                    let ann = sub.next().await?;
                    if seen.insert(ann.id) {
                        self.clone().consider(ann);
                    }
                }
            }
            .await;
            if let Err(e) = r {
                if !warned {
                    tracing::warn!("following the chain at {}: {e:#}", self.cfg.rpc);
                    warned = true;
                }
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Answers one announcement if it pays at least the reserve and fits.
    fn consider(self: Arc<Self>, ann: Announcement) {
        if ann.publisher == self.key.address() {
            return;
        }
        if let Some(why) = self.cfg.control.declines() {
            tracing::info!("declining announcement {}: {why}", ann.id);
            eprintln!("zennet-agent: declined announcement {}: {why}", ann.id);
            return;
        }
        match self.store.reputation(&ann.publisher.to_string()) {
            Ok(rep) if rep.disputes > 0 || rep.unpaid > self.cfg.max_unpaid_history.0 => {
                tracing::warn!("not answering announcement {}: publisher {} has unpaid history ({rep:?})", ann.id, ann.publisher);
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("reading the reputation of {}: {e}", ann.publisher),
        }
        let spec_probe = session::spec_of(&ann.requirements, "probe");
        let reserve_h = hourly_cost(&self.reserve(), &spec_probe);
        if ann.price_ceiling < reserve_h {
            tracing::info!("announcement {} pays at most {} per hour, below the reserve {reserve_h}", ann.id, ann.price_ceiling);
            return;
        }
        let n = self.take(&ann);
        if n == 0 {
            tracing::info!("announcement {} does not fit the free capacity", ann.id);
            return;
        }
        // A Recalibrate that started meanwhile wins (see Control::reserve).
        if let Some(why) = self.cfg.control.declines() {
            self.release(&ann, n);
            tracing::info!("declining announcement {}: {why}", ann.id);
            return;
        }
        tokio::spawn(async move {
            let r = session::provide(self.clone(), &ann, n).await;
            self.release(&ann, n);
            match r {
                Ok(()) => tracing::info!("session for {} ended", ann.id),
                Err(e) => tracing::warn!("session for {} failed: {e:#}", ann.id),
            }
        });
    }

    /// Settles every contract a previous run left open, with its best voucher.
    async fn recover(self: Arc<Self>) {
        let recs = match self.store.contracts() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("reading contracts: {e}");
                return;
            }
        };
        for mut rec in recs.into_iter().filter(|r| r.state != ContractState::Settled) {
            tracing::info!("settling contract {} left open by a previous run", rec.id());
            pay::settle(&self, &mut rec, "agent restarted").await;
        }
    }
}
