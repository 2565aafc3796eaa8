//! The publisher's side of the market: `zennet rent` announces a job,
//! listens for providers on libp2p, negotiates and pays each of them
//! ([`session`]), and when the job stops makes sure every channel ends
//! settled: closed by its provider, or refunded after expiry ([`settle`]).
//! It runs in the foreground until `--duration` passes or it is
//! interrupted; the background daemon of `zennet -n N` builds on it.

mod record;
mod session;
mod settle;
mod ssh;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use zennet_net::rpc::Chain;
use zennet_net::Node;
use zennet_protocol::keys::{PublicKey, SecretKey};
use zennet_protocol::market::{Contract, UsageReport, DEFAULT_INTERVAL_MS};
use zennet_protocol::negotiate::{full_load_usage, hourly_cost};
use zennet_protocol::spec::ContainerSpec;
use zennet_protocol::tx::{ChannelId, Hash32, Requirements, TxBody};
use zennet_protocol::voucher::SignedVoucher;
use zennet_protocol::{cost, Amount};

/// `zennet rent`: hire containers and pay for them as they run.
#[derive(Args, Debug, Clone)]
pub struct RentArgs {
    /// Containers to hire.
    #[arg(short = 'n', long = "count", default_value_t = 1)]
    pub count: u32,
    /// Memory per container, e.g. 64M, 512M, 2G.
    #[arg(short = 'm', long = "memory", default_value = "512M", value_parser = parse_size)]
    pub memory: u64,
    /// CPUs per container (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 1.0)]
    pub cpus: f64,
    /// Disk per container, e.g. 256M.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub disk: u64,
    /// Base image the provider offers.
    #[arg(long, default_value = "busybox")]
    pub image: String,
    /// Most a container may cost per hour at full load, XEN.
    #[arg(long, default_value = "0.1")]
    pub max_price: String,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Metering interval, milliseconds.
    #[arg(long, default_value_t = DEFAULT_INTERVAL_MS)]
    pub interval_ms: u32,
    /// Deposit per container, XEN (default: the full-load cost of the
    /// duration, or of one hour, at the ceiling).
    #[arg(long)]
    pub deposit: Option<String>,
    /// Chain blocks until the channels may be refunded.
    #[arg(long, default_value_t = 3600)]
    pub expiry_blocks: u64,
    /// Seconds to wait for all containers to be ready.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// libp2p listen address providers dial.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    pub listen: String,
    /// Fee per transaction, base units (the dev network's minimum is 1000).
    #[arg(long, default_value_t = 1000)]
    pub fee: u64,
    /// Most unpaid value a provider carries before freezing, XEN per
    /// container (default: five intervals at full load at the ceiling).
    #[arg(long)]
    pub exposure: Option<String>,
    /// Keep only the K most efficient containers (cpu time delivered per
    /// base unit paid) once they have run for `--after` seconds; the others
    /// are closed and settled (the seed's "hire 10K, drop the least
    /// efficient 5K after 15 seconds").
    #[arg(long, value_name = "K")]
    pub keep_best: Option<u32>,
    /// Seconds of running before `--keep-best` ranks.
    #[arg(long, value_name = "S", default_value_t = 15, requires = "keep_best")]
    pub after: u64,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where the publisher keeps its ssh key, `ssh_config` and `known_hosts`
    /// (default: the wallet's directory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
}

/// Parses `512M`, `2G`, `65536` (bytes), `64K`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512M, 2G)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Where a contract is, as the publisher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Opening,
    Ready,
    Ended,
    Failed,
}

/// One contract as the publisher keeps it.
#[derive(Debug, Clone)]
pub struct PubContract {
    pub contract: Contract,
    pub channel: ChannelId,
    pub state: State,
    pub reason: Option<String>,
    pub last_report: Option<UsageReport>,
    pub voucher: Option<SignedVoucher>,
    pub acked: u64,
    /// Cumulative amount of the newest voucher the provider acknowledged.
    pub acked_amount: Amount,
    pub last_seen: Instant,
    /// When the channel was opened: no report may claim more time than has
    /// passed since (plus [`session::CLOCK_SLACK_MS`]).
    pub opened_at: Instant,
    /// Set when the publisher decided to end it (the session closes it).
    pub drop_reason: Option<String>,
    /// The container's SSH host key line (its fingerprint is in the terms).
    pub host_key: String,
    /// The local port tunnelled to the container's SSH server, once listening.
    pub port: Option<u16>,
}

impl PubContract {
    fn new(contract: Contract, channel: ChannelId, host_key: String) -> Self {
        PubContract { contract, channel, state: State::Opening, reason: None, last_report: None, voucher: None, acked: 0, acked_amount: Amount::ZERO, last_seen: Instant::now(), opened_at: Instant::now(), drop_reason: None, host_key, port: None }
    }
    /// `zn-1`, `zn-2`, ...: the host name in the ssh config.
    pub fn host_name(&self) -> String {
        format!("zn-{}", self.contract.terms.index + 1)
    }
    fn end(&mut self, why: &str) {
        if matches!(self.state, State::Opening | State::Ready) {
            self.state = State::Ended;
            self.reason = Some(why.into());
        }
    }
    fn fail(&mut self, why: &str) {
        if matches!(self.state, State::Opening | State::Ready) {
            self.state = State::Failed;
            self.reason = Some(why.into());
        }
    }
    fn paid(&self) -> Amount {
        self.voucher.as_ref().map_or(Amount::ZERO, |v| v.voucher.cumulative)
    }
}

/// The job being hired for, shared by every session.
pub struct Job {
    pub key: SecretKey,
    pub chain: Arc<Chain>,
    pub chain_id: String,
    pub ann: Hash32,
    pub spec: ContainerSpec,
    pub ceiling: Amount,
    pub deposit: Amount,
    pub exposure: Amount,
    pub interval_ms: u32,
    pub expiry_height: u64,
    pub fee: Amount,
    pub want: u32,
    pub records: record::Records,
    next_index: Mutex<u32>,
    contracts: Mutex<BTreeMap<Hash32, PubContract>>,
    pub stop: watch::Sender<bool>,
}

impl Job {
    /// Hands out up to `n` container indices not yet given to anyone.
    fn assign(&self, n: u32) -> Vec<u32> {
        let mut next = self.next_index.lock().unwrap();
        let k = n.min(self.want - *next);
        let v = (*next..*next + k).collect();
        *next += k;
        v
    }
    fn add(&self, c: PubContract) {
        self.contracts.lock().unwrap().insert(c.contract.terms.id(), c);
    }
    fn get(&self, id: &Hash32) -> Option<PubContract> {
        self.contracts.lock().unwrap().get(id).cloned()
    }
    fn update(&self, id: &Hash32, f: impl FnOnce(&mut PubContract)) {
        if let Some(c) = self.contracts.lock().unwrap().get_mut(id) {
            f(c)
        }
    }
    fn for_provider(&self, p: &PublicKey, mut f: impl FnMut(&mut PubContract)) {
        self.contracts.lock().unwrap().values_mut().filter(|c| c.contract.terms.provider == *p).for_each(&mut f)
    }
    fn provider_done(&self, p: &PublicKey) -> bool {
        self.contracts.lock().unwrap().values().filter(|c| c.contract.terms.provider == *p).all(|c| matches!(c.state, State::Ended | State::Failed))
    }
    /// A session failed: its contracts failed; indices never contracted go back.
    fn fail_session(&self, indices: &[u32], why: &str) {
        let mut cs = self.contracts.lock().unwrap();
        for c in cs.values_mut().filter(|c| indices.contains(&c.contract.terms.index)) {
            c.fail(why);
        }
    }
    /// Marks every ready contract but the `k` with the most cpu time per
    /// base unit owed (from their last reports) to be closed. Returns how many.
    fn keep_best(&self, k: usize) -> usize {
        let mut cs = self.contracts.lock().unwrap();
        let mut ranked: Vec<(u128, Hash32)> = cs
            .values()
            .filter(|c| c.state == State::Ready)
            .map(|c| {
                let eff = c.last_report.as_ref().map_or(0, |r| {
                    let cpu = r.usage.get(zennet_protocol::UsageComponent::CpuUserNs) as u128 + r.usage.get(zennet_protocol::UsageComponent::CpuSystemNs) as u128;
                    let owed = c.contract.terms.owed(&r.usage).map_or(0, |a| a.0) as u128;
                    cpu * 1_000_000 / owed.max(1)
                });
                (eff, c.contract.terms.id())
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.0.cmp(&b.1.0)));
        let dropped: Vec<Hash32> = ranked.iter().skip(k).map(|x| x.1).collect();
        for id in &dropped {
            if let Some(c) = cs.get_mut(id) {
                c.drop_reason = Some(format!("not among the {k} most efficient"));
            }
        }
        dropped.len()
    }
    /// One row per contract for the providers' record.
    fn record_rows(&self, outcome: &BTreeMap<Hash32, settle::Outcome>) -> Vec<(String, record::ProviderRecord)> {
        self.snapshot()
            .iter()
            .map(|c| {
                let dropped = c.reason.as_deref().is_some_and(|r| r.starts_with("dropped"));
                let cpu = c.last_report.as_ref().map_or(0, |r| r.usage.get(zennet_protocol::UsageComponent::CpuUserNs).saturating_add(r.usage.get(zennet_protocol::UsageComponent::CpuSystemNs)));
                let row = record::ProviderRecord {
                    contracts: 1,
                    paid: outcome.get(&c.contract.terms.id()).map_or(0, |o| o.paid.0),
                    failed: (c.state == State::Failed && !dropped) as u64,
                    dropped: dropped as u64,
                    cpu_ns: cpu,
                };
                (c.contract.terms.provider.address().to_string(), row)
            })
            .collect()
    }
    /// Ready contracts whose local ssh port is listening.
    fn reachable(&self) -> usize {
        self.contracts.lock().unwrap().values().filter(|c| c.state == State::Ready && c.port.is_some()).count()
    }
    fn snapshot(&self) -> Vec<PubContract> {
        self.contracts.lock().unwrap().values().cloned().collect()
    }
}

/// `zennet rent`.
pub fn rent(mut args: RentArgs, key_path: &std::path::Path, rpc: &str) -> anyhow::Result<()> {
    let key = crate::wallet::read_key(key_path)?;
    // The record of providers lives next to the wallet, and by default so do the ssh files.
    let wallet_dir = key_path.parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
    let records = record::Records::open(&wallet_dir)?;
    if args.state_dir.is_none() {
        args.state_dir = Some(wallet_dir);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(rent_async(args, key, rpc, records))
}

fn xen(s: &str, what: &str) -> anyhow::Result<Amount> {
    Amount::parse_xen(s).map_err(|e| anyhow::anyhow!("{what} {s:?}: {e}"))
}

async fn rent_async(args: RentArgs, key: SecretKey, rpc: &str, records: record::Records) -> anyhow::Result<()> {
    // Hire time counts from the command's start.
    let t0 = Instant::now();
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if !(args.cpus > 0.0 && args.cpus <= 1024.0) {
        bail!("--cpus {} must be above 0", args.cpus);
    }
    let chain = Arc::new(Chain::new(rpc));
    let c2 = chain.clone();
    let (chain_id, head) = tokio::task::spawn_blocking(move || anyhow::Ok((c2.chain_id()?, c2.head()?)))
        .await?
        .with_context(|| format!("no chain node reachable at {rpc}"))?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&state_dir).with_context(|| format!("create {}", state_dir.display()))?;
    let user_key = ssh::user_key(&state_dir)?;
    let spec = ContainerSpec {
        memory_bytes: args.memory,
        cpu_millicores: (args.cpus * 1000.0).round() as u32,
        pids_max: 256,
        disk_bytes: args.disk,
        io_weight: 100,
        env: Vec::new(),
        ssh_authorized_keys: vec![user_key.public.clone()],
        base: args.image.clone(),
        tenant: key.address().to_string(),
    };
    let unbounded = zennet_protocol::spec::Capacity { memory_bytes: u64::MAX, cpu_millicores: u32::MAX, pids_max: u32::MAX, disk_bytes: u64::MAX };
    spec.validate(&unbounded).context("the container asked for")?;
    let ceiling = xen(&args.max_price, "--max-price")?;
    let hours_ppm = args.duration.map_or(1_000_000, |d| (d * 1_000_000 / 3600).max(1));
    let deposit = match &args.deposit {
        Some(d) => xen(d, "--deposit")?,
        None => Amount(((ceiling.0 as u128 * hours_ppm as u128 / 1_000_000) as u64).max(1).saturating_add(ceiling.0 / 10)),
    };
    // Exposure: five intervals at full load at the ceiling.
    let per_interval = ceiling.0 as u128 * args.interval_ms as u128 / 3_600_000;
    let exposure = match &args.exposure {
        Some(e) => xen(e, "--exposure")?,
        None => Amount(((per_interval * 5) as u64).clamp(1, deposit.0)),
    };
    if exposure == Amount::ZERO || exposure > deposit {
        bail!("--exposure {exposure} must be above zero and at most the deposit {deposit}");
    }
    let fee = Amount(args.fee);
    let need = Amount(deposit.0.saturating_add(fee.0).saturating_mul(args.count as u64).saturating_add(fee.0));
    let (c2, me) = (chain.clone(), key.address());
    let (balance, _) = tokio::task::spawn_blocking(move || c2.account(&me)).await??;
    if balance < need {
        bail!("not enough balance for the deposits: {me} has {balance}, {} containers need {need} ({deposit} deposit + {fee} fee each, and the announcement's fee)", args.count);
    }

    let node = Arc::new(Node::start(&key, Some(args.listen.parse().with_context(|| format!("--listen {:?}", args.listen))?)).await?);
    let endpoint = node.listen_addrs().await.into_iter().next().context("the libp2p node has no listen address")?;
    let mut incoming = node.incoming()?;
    let job_id = hex::encode(&Hash32::random().0[..8]);
    let requirements = Requirements { count: args.count, memory_bytes: spec.memory_bytes, cpu_millicores: spec.cpu_millicores, disk_bytes: spec.disk_bytes, image: spec.base.clone() };
    let ann_expiry = head.height + args.timeout + 30;
    let body = TxBody::Announce { job_id: job_id.clone(), requirements, endpoint: endpoint.to_string(), price_ceiling: ceiling, expiry_height: ann_expiry };
    let (c2, k2) = (chain.clone(), key.clone());
    let ann = tokio::task::spawn_blocking(move || -> anyhow::Result<Hash32> {
        let (h, _) = c2.submit(&k2, fee, body)?;
        c2.wait_included(&h, Duration::from_secs(30))?;
        Ok(h)
    })
    .await?
    .context("announce the job")?;
    eprintln!("zennet: announced job {job_id} ({ann}): {} x {} MiB, {} cpus, ceiling {ceiling} per hour", args.count, spec.memory_bytes >> 20, args.cpus);

    let (stop, _) = watch::channel(false);
    let job = Arc::new(Job {
        key,
        chain: chain.clone(),
        chain_id,
        ann,
        spec,
        ceiling,
        deposit,
        exposure,
        interval_ms: args.interval_ms,
        expiry_height: head.height + args.expiry_blocks,
        fee,
        want: args.count,
        records,
        next_index: Mutex::new(0),
        contracts: Mutex::new(BTreeMap::new()),
        stop,
    });
    let mut sessions = tokio::task::JoinSet::new();
    let j2 = job.clone();
    let acceptor = tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        while let Some(s) = incoming.next().await {
            let (j, peer) = (j2.clone(), s.peer_key.address());
            set.spawn(async move {
                if let Err(e) = session::serve(j, s).await {
                    eprintln!("zennet: provider {peer}: {e:#}");
                }
            });
        }
    });
    sessions.spawn(async move {
        let _ = acceptor.await;
    });
    let files = ssh::Files::in_dir(&state_dir);
    let tunnels = tokio::spawn(tunnels(job.clone(), node.clone(), ssh::Files::in_dir(&state_dir), user_key.private.clone()));

    // Hire.
    let deadline = t0 + Duration::from_secs(args.timeout);
    let mut shown = 0;
    while job.reachable() < args.count as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = job.reachable();
        if r != shown && !args.json {
            eprintln!("zennet: {r}/{} containers ready ({:.1} s)", args.count, t0.elapsed().as_secs_f64());
            shown = r;
        }
    }
    let hire_ms = t0.elapsed().as_millis() as u64;
    let ready = job.reachable();
    if ready < args.count as usize {
        eprintln!("zennet: only {ready} of {} containers ready within {} s", args.count, args.timeout);
    }
    for c in job.snapshot().iter().filter(|c| c.state == State::Ready && c.port.is_some()) {
        let t = &c.contract.terms;
        let port = c.port.unwrap_or_default();
        let line = json!({"event": "ready", "index": t.index, "host": c.host_name(), "port": port, "ssh_config": files.config, "identity": user_key.private, "known_hosts": files.known_hosts, "provider": t.provider.address().to_string(), "channel": c.channel.to_string(), "price_per_hour": hourly_cost(&t.rates, &t.spec).0, "hire_ms": hire_ms});
        if args.json {
            println!("{line}");
        } else {
            println!("{} port={port} provider={} cpus={} memory={}MiB price/h={}", c.host_name(), t.provider.address(), t.spec.cpu_millicores as f64 / 1000.0, t.spec.memory_bytes >> 20, hourly_cost(&t.rates, &t.spec));
        }
    }
    if ready > 0 && !args.json {
        eprintln!("zennet: reach them with `ssh -F {} zn-1` (or `ssh -p PORT root@127.0.0.1`)", files.config.display());
    }

    // Run until the duration passes or an interrupt.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let until = async {
        match args.duration {
            Some(d) => tokio::time::sleep_until((t0 + Duration::from_secs(d)).into()).await,
            None => std::future::pending().await,
        }
    };
    let keep_best = async {
        match args.keep_best {
            Some(k) => {
                tokio::time::sleep(Duration::from_secs(args.after)).await;
                k
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until, keep_best);
    let mut ranked = false;
    // Run (if anything is ready) until the duration passes or an interrupt.
    if ready > 0 {
        loop {
            tokio::select! {
                _ = &mut until => break,
                _ = tokio::signal::ctrl_c() => { eprintln!("zennet: interrupted, stopping"); break }
                _ = term.recv() => { eprintln!("zennet: terminated, stopping"); break }
                k = &mut keep_best, if !ranked => {
                    ranked = true;
                    let n = job.keep_best(k as usize);
                    eprintln!("zennet: keeping the {k} most efficient containers, closing {n}");
                }
            }
        }
    }
    let _ = job.stop.send(true);
    let _ = tunnels.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = settle::settle_all(&job).await;
    drop(node);
    if let Err(e) = job.records.add(&job.record_rows(&outcome)) {
        eprintln!("zennet: recording the providers' history: {e:#}");
    }
    print_outcome(&job, &outcome, hire_ms, args.json);
    if ready < args.count as usize {
        bail!("{ready} of {} containers were ready within {} s", args.count, args.timeout);
    }
    Ok(())
}

/// Keeps a local port open for every ready contract (closing it when the
/// contract ends) and the ssh files in step with them, until the job stops.
async fn tunnels(job: Arc<Job>, node: Arc<Node>, files: ssh::Files, identity: std::path::PathBuf) {
    let mut open: BTreeMap<Hash32, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut stop = job.stop.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let mut changed = false;
        for c in job.snapshot() {
            let id = c.contract.terms.id();
            match (c.state, open.contains_key(&id)) {
                (State::Ready, false) => match ssh::listen(node.clone(), c.contract.terms.provider, id, 0).await {
                    Ok((port, task)) => {
                        open.insert(id, task);
                        job.update(&id, |c| c.port = Some(port));
                        changed = true;
                    }
                    Err(e) => eprintln!("zennet: {}: {e:#}", c.host_name()),
                },
                (State::Ended | State::Failed, true) => {
                    if let Some(t) = open.remove(&id) {
                        t.abort();
                    }
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            let hosts: Vec<ssh::Host> = job
                .snapshot()
                .into_iter()
                .filter(|c| c.state == State::Ready && open.contains_key(&c.contract.terms.id()))
                .filter_map(|c| Some(ssh::Host { name: c.host_name(), port: c.port?, alias: format!("zennet-{}", &c.contract.terms.id().to_string()[..16]), host_key: c.host_key.clone() }))
                .collect();
            if let Err(e) = files.write(&hosts, &identity) {
                eprintln!("zennet: writing the ssh files: {e:#}");
            }
        }
    }
    for (_, t) in open {
        t.abort();
    }
}

fn print_outcome(job: &Job, outcome: &BTreeMap<Hash32, settle::Outcome>, hire_ms: u64, json_out: bool) {
    let mut rows = Vec::new();
    for c in job.snapshot() {
        let t = &c.contract.terms;
        let o = outcome.get(&c.contract.terms.id());
        let usage = c.last_report.as_ref().map(|r| r.usage);
        let owed = usage.as_ref().and_then(|u| cost(&t.rates, u).ok()).unwrap_or(Amount::ZERO);
        rows.push(json!({
            "index": t.index,
            "contract": t.id().to_string(),
            "provider": t.provider.address().to_string(),
            "channel": c.channel.to_string(),
            "state": c.state,
            "reason": c.reason,
            "deposit": t.deposit.0,
            "rates": t.rates,
            "voucher": c.paid().0,
            "acked_voucher": c.acked_amount.0,
            "owed_by_last_report": owed.0,
            "reports": c.last_report.as_ref().map_or(0, |r| r.seq),
            "usage": usage.map(|u| u.counters),
            "settled_by": o.map(|o| o.how),
            "paid_on_chain": o.map(|o| o.paid.0),
            "refunded": o.map(|o| o.refunded.0),
        }));
        if !json_out {
            eprintln!("zennet: zn-{} {:?} paid {} of deposit {} ({})", t.index + 1, c.state, c.paid(), t.deposit, o.map_or("unsettled", |o| o.how));
        }
    }
    if json_out {
        println!("{}", json!({"event": "done", "job": job.ann.to_string(), "hire_ms": hire_ms, "full_load_hour": full_load_usage(&job.spec, 3600).counters, "contracts": rows}));
    }
}
