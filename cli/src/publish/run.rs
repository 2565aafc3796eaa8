//! A job's life, shared by the foreground `zennet rent --foreground` and the
//! background daemon: [`start`] checks what can be checked before any money
//! moves (chain reachable, the container asked for, the balance for every
//! deposit), announces the job and accepts providers' sessions; [`Running::hire`]
//! waits for the containers with progress; [`Running::finish`] stops every
//! session, settles every channel and records the providers' history.

use super::job::{Job, State};
use super::{record, session, settle, ssh, xen, RentArgs};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use zennet_net::rpc::Chain;
use zennet_net::Node;
use zennet_protocol::keys::SecretKey;
use zennet_protocol::negotiate::{full_load_usage, hourly_cost};
use zennet_protocol::spec::ContainerSpec;
use zennet_protocol::tx::{Hash32, Requirements, TxBody};
use zennet_protocol::{cost, Amount, UsageComponent};

/// A job that was announced and is hiring or running.
pub struct Running {
    pub args: RentArgs,
    pub job: Arc<Job>,
    pub job_id: String,
    /// Held for the job's life: dropping it stops the libp2p node.
    pub _node: Arc<Node>,
    pub files: ssh::Files,
    pub identity: PathBuf,
    pub t0: Instant,
    hire_ms: AtomicU64,
    tunnels: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Where hiring is, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub want: u32,
    pub providers: u32,
    pub offers: u32,
    pub contracts: u32,
    /// Contracts whose deposit (`ChannelOpen`) a block holds.
    pub deposits: u32,
    pub ready: u32,
    pub elapsed_ms: u64,
}

impl Progress {
    /// One line, with a bar of the ready share.
    pub fn line(&self) -> String {
        let w = 20usize;
        let filled = (self.ready as usize * w).checked_div(self.want as usize).unwrap_or(0).min(w);
        format!(
            "[{}{}] announced, {} providers, {} offers, {} contracts, {} deposits in block, {}/{} ready ({:.1} s)",
            "#".repeat(filled),
            "-".repeat(w - filled),
            self.providers,
            self.offers,
            self.contracts,
            self.deposits,
            self.ready,
            self.want,
            self.elapsed_ms as f64 / 1000.0
        )
    }
}

/// Marks the contracts whose `ChannelOpen` a block now holds (one receipt
/// query per contract still opening), then waits a little: the progress
/// line's "deposits in block" while hiring.
async fn mark_deposits_in_block(job: Arc<Job>) {
    let pending: Vec<(Hash32, Hash32)> = job.snapshot().iter().filter(|c| c.state == State::Opening && !c.deposit_in_block).map(|c| (c.contract.terms.id(), c.open_tx)).collect();
    if !pending.is_empty() {
        let chain = job.chain.clone();
        let included = tokio::task::spawn_blocking(move || pending.into_iter().filter(|(_, tx)| matches!(chain.included_at(tx), Ok(Some(_)))).map(|(id, _)| id).collect::<Vec<_>>()).await.unwrap_or_default();
        for id in included {
            job.update(&id, |c| c.deposit_in_block = true);
        }
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
}

/// Checks, announces, and starts taking providers' sessions.
pub async fn start(args: RentArgs, key: SecretKey, rpc: &str, records: record::Records) -> anyhow::Result<Arc<Running>> {
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
        .with_context(|| format!("no chain node reachable at {rpc} (start one with `xencoind --dev`, or pass --rpc)"))?;
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
    let budget = args.budget.as_deref().map(|b| xen(b, "--budget")).transpose()?;
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
    let listening = node.listen_addrs().await.into_iter().next().context("the libp2p node has no listen address")?;
    let endpoint = match &args.external_addr {
        Some(a) => external_endpoint(a, &listening)?,
        None => listening,
    };
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
    let announced = format!("{} x {} MiB, {} cpus, {} MiB disk, image {}, ceiling {ceiling} per hour", args.count, spec.memory_bytes >> 20, args.cpus, spec.disk_bytes >> 20, spec.base);
    eprintln!("zennet: announced job {job_id} ({ann}): {announced}");

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
        budget,
        stop_reason: Mutex::new(None),
        sessions: Default::default(),
        offers: Default::default(),
        announced,
        refusals: Mutex::new(Vec::new()),
        stop,
    });
    let j2 = job.clone();
    tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        let mut stop = j2.stop.subscribe();
        loop {
            tokio::select! {
                s = incoming.next() => {
                    let Some(s) = s else { break };
                    let (j, peer) = (j2.clone(), s.peer_key.address());
                    set.spawn(async move {
                        if let Err(e) = session::serve(j.clone(), s).await {
                            eprintln!("zennet: provider {peer}: {e:#}");
                            j.note_refusal(format!("{e:#}"));
                        }
                    });
                }
                _ = stop.changed() => break,
            }
        }
        // Sessions end themselves on stop; wait for them.
        while set.join_next().await.is_some() {}
    });
    let files = ssh::Files::in_dir(&state_dir);
    let tunnels = tokio::spawn(tunnels(job.clone(), node.clone(), files.clone(), user_key.private.clone()));
    Ok(Arc::new(Running { args, job, job_id, _node: node, files, identity: user_key.private, t0, hire_ms: AtomicU64::new(0), tunnels: Mutex::new(Some(tunnels)) }))
}

impl Running {
    pub fn progress(&self) -> Progress {
        let cs = self.job.snapshot();
        Progress {
            want: self.args.count,
            providers: self.job.sessions.load(Ordering::Relaxed),
            offers: self.job.offers.load(Ordering::Relaxed),
            contracts: cs.len() as u32,
            deposits: cs.iter().filter(|c| c.deposit_in_block || c.state == State::Ready).count() as u32,
            ready: cs.iter().filter(|c| c.reachable()).count() as u32,
            elapsed_ms: self.t0.elapsed().as_millis() as u64,
        }
    }

    /// Waits until every container is ready with its port, or the timeout;
    /// calls `on` whenever progress changes. Returns how many are ready.
    pub async fn hire(&self, mut on: impl FnMut(&Progress)) -> usize {
        let deadline = self.t0 + Duration::from_secs(self.args.timeout);
        let mut last: Option<Progress> = None;
        let mut stop = self.job.stop.subscribe();
        let mut deposits: Option<tokio::task::JoinHandle<()>> = None;
        while self.job.reachable() < self.args.count as usize && Instant::now() < deadline && !*stop.borrow_and_update() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if deposits.as_ref().is_none_or(|d| d.is_finished()) {
                deposits = Some(tokio::spawn(mark_deposits_in_block(self.job.clone())));
            }
            let p = self.progress();
            if last.map(|l| (l.providers, l.offers, l.contracts, l.deposits, l.ready)) != Some((p.providers, p.offers, p.contracts, p.deposits, p.ready)) || p.elapsed_ms / 1000 != last.map_or(0, |l| l.elapsed_ms / 1000) {
                on(&p);
                last = Some(p);
            }
        }
        self.hire_ms.store(self.t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.job.reachable()
    }

    pub fn hire_ms(&self) -> u64 {
        self.hire_ms.load(Ordering::Relaxed)
    }

    /// One `ready` object per reachable container.
    pub fn ready_lines(&self) -> Vec<Value> {
        self.job
            .snapshot()
            .iter()
            .filter(|c| c.reachable())
            .map(|c| {
                let t = &c.contract.terms;
                json!({"event": "ready", "job": self.job_id, "index": t.index, "host": c.host_name(), "port": c.port.unwrap_or_default(), "contract": t.id().to_string(), "ssh_config": self.files.config, "identity": self.identity, "known_hosts": self.files.known_hosts, "provider": t.provider.address().to_string(), "channel": c.channel.to_string(), "cpus": t.spec.cpu_millicores as f64 / 1000.0, "memory_mib": t.spec.memory_bytes >> 20, "price_per_hour": hourly_cost(&t.rates, &t.spec).0, "hire_ms": self.hire_ms()})
            })
            .collect()
    }

    /// Runs until `--duration` passes, the job stops itself (budget), or
    /// `interrupt` resolves; ranks for `--keep-best` on the way.
    pub async fn run(&self, interrupt: impl std::future::Future<Output = ()>) {
        let until = async {
            match self.args.duration {
                Some(d) => tokio::time::sleep_until((self.t0 + Duration::from_secs(d)).into()).await,
                None => std::future::pending().await,
            }
        };
        let keep_best = async {
            match self.args.keep_best {
                Some(k) => {
                    tokio::time::sleep(Duration::from_secs(self.args.after)).await;
                    k
                }
                None => std::future::pending().await,
            }
        };
        let mut stop = self.job.stop.subscribe();
        tokio::pin!(until, keep_best, interrupt);
        let mut ranked = false;
        loop {
            tokio::select! {
                _ = &mut until => break,
                _ = &mut interrupt => break,
                _ = stop.changed() => break,
                k = &mut keep_best, if !ranked => {
                    ranked = true;
                    let n = self.job.keep_best(k as usize);
                    eprintln!("zennet: keeping the {k} most efficient containers, closing {n}");
                }
            }
        }
    }

    /// Stops every session, settles every channel, records the providers'
    /// history; returns the `done` object.
    pub async fn finish(&self) -> Value {
        self.job.request_stop("stopped");
        let t = self.tunnels.lock().unwrap().take();
        if let Some(t) = t {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let outcome = settle::settle_all(&self.job).await;
        if let Err(e) = self.job.records.add(&self.job.record_rows(&outcome)) {
            eprintln!("zennet: recording the providers' history: {e:#}");
        }
        self.done(&outcome)
    }

    fn done(&self, outcome: &BTreeMap<Hash32, settle::Outcome>) -> Value {
        let job = &self.job;
        let mut rows = Vec::new();
        for c in job.snapshot() {
            let t = &c.contract.terms;
            let o = outcome.get(&c.contract.terms.id());
            let usage = c.last_report.as_ref().map(|r| r.usage);
            let owed = usage.as_ref().and_then(|u| cost(&t.rates, u).ok()).unwrap_or(Amount::ZERO);
            rows.push(json!({
                "index": t.index,
                "host": c.host_name(),
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
        }
        let why = job.stop_reason.lock().unwrap().clone();
        json!({"event": "done", "job": job.ann.to_string(), "job_id": self.job_id, "stop_reason": why, "hire_ms": self.hire_ms(), "paid": job.paid_total().0, "budget": job.budget.map(|b| b.0), "full_load_hour": full_load_usage(&job.spec, 3600).counters, "contracts": rows})
    }

    /// `zennet ls` rows: state, usage, spent and rate of every contract.
    pub fn ls_rows(&self) -> Vec<Value> {
        self.job
            .snapshot()
            .iter()
            .map(|c| {
                let t = &c.contract.terms;
                let u = c.last_report.as_ref().map(|r| r.usage);
                let secs = c.last_report.as_ref().map_or(0, |r| r.elapsed_ms / 1000);
                let cpu_ns = u.map_or(0, |u| u.get(UsageComponent::CpuUserNs).saturating_add(u.get(UsageComponent::CpuSystemNs)));
                json!({
                    "job": self.job_id, "host": c.host_name(), "contract": t.id().to_string(), "state": c.state, "port": c.port,
                    "provider": t.provider.address().to_string(), "elapsed_s": secs, "cpu_s": cpu_ns as f64 / 1e9,
                    "memory_mib": t.spec.memory_bytes >> 20, "spent": c.paid().0,
                    "rate_per_hour": if secs > 0 { (c.paid().0 as u128 * 3600 / secs as u128) as u64 } else { 0 },
                    "price_per_hour": hourly_cost(&t.rates, &t.spec).0, "reason": c.reason,
                })
            })
            .collect()
    }

    /// `zennet bill` rows: what each contract owes per usage component.
    pub fn bill_rows(&self) -> Vec<Value> {
        self.job
            .snapshot()
            .iter()
            .map(|c| {
                let t = &c.contract.terms;
                let mut parts = serde_json::Map::new();
                if let Some(r) = &c.last_report {
                    for comp in UsageComponent::ALL {
                        let mut one = zennet_protocol::UsageVector::zero();
                        one.set(comp, r.usage.get(comp));
                        let owed = cost(&t.rates, &one).map_or(0, |a| a.0);
                        parts.insert(comp.name().to_string(), json!({"amount": r.usage.get(comp), "owed": owed}));
                    }
                }
                json!({"job": self.job_id, "host": c.host_name(), "contract": t.id().to_string(), "provider": t.provider.address().to_string(), "paid": c.paid().0, "components": parts})
            })
            .collect()
    }

    /// Marks `host`s (zn-N or contract id prefixes) to be closed; returns how many.
    pub fn drop_hosts(&self, names: &[String]) -> usize {
        let mut n = 0;
        let mut cs = self.job.contracts.lock().unwrap();
        for c in cs.values_mut().filter(|c| c.state == State::Ready) {
            let id = c.contract.terms.id().to_string();
            if names.iter().any(|x| *x == c.host_name() || (x.len() >= 8 && id.starts_with(x.as_str()))) {
                c.drop_reason = Some("dropped by the publisher".into());
                n += 1;
            }
        }
        n
    }
}

/// The endpoint announced for `--external-addr`: that address, its port 0
/// replaced by the port `listening` got, with `listening`'s peer id.
fn external_endpoint(external: &str, listening: &zennet_net::Multiaddr) -> anyhow::Result<zennet_net::Multiaddr> {
    let ext: zennet_net::Multiaddr = external.parse().with_context(|| format!("--external-addr {external:?}"))?;
    let (ext, listening) = (ext.to_string(), listening.to_string());
    if ext.contains("/p2p/") {
        bail!("--external-addr {external:?}: leave out /p2p (it is this key's peer id)");
    }
    // Canonical text form: /ip4/A/tcp/P/p2p/ID.
    let after = |s: &str, proto: &str| s.split('/').skip_while(|p| *p != proto).nth(1).map(str::to_string);
    let port = after(&listening, "tcp").context("the listen address has no tcp port")?;
    let mut out = match ext.strip_suffix("/tcp/0") {
        Some(head) => format!("{head}/tcp/{port}"),
        None => ext,
    };
    if let Some(id) = after(&listening, "p2p") {
        out.push_str(&format!("/p2p/{id}"));
    }
    out.parse().with_context(|| format!("--external-addr {external:?} became {out:?}"))
}

#[cfg(test)]
mod external_tests {
    use super::external_endpoint;

    #[test]
    fn port_zero_takes_the_listen_port_and_the_peer_id_is_kept() {
        let id = zennet_net::session::peer_id_of(&zennet_protocol::keys::SecretKey::generate().unwrap().public()).to_string();
        let listening = format!("/ip4/127.0.0.1/tcp/40123/p2p/{id}").parse().unwrap();
        assert_eq!(external_endpoint("/ip4/10.0.2.2/tcp/0", &listening).unwrap().to_string(), format!("/ip4/10.0.2.2/tcp/40123/p2p/{id}"));
        assert_eq!(external_endpoint("/ip4/192.0.2.7/tcp/9000", &listening).unwrap().to_string(), format!("/ip4/192.0.2.7/tcp/9000/p2p/{id}"));
        assert!(external_endpoint(&format!("/ip4/10.0.2.2/tcp/1/p2p/{id}"), &listening).is_err());
        assert!(external_endpoint("10.0.2.2:80", &listening).is_err());
    }
}

/// Keeps a local port open for every ready contract (closing it when the
/// contract ends) and the ssh files in step with them, until the job stops.
async fn tunnels(job: Arc<Job>, node: Arc<Node>, files: ssh::Files, identity: PathBuf) {
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
                .filter_map(|c| Some(ssh::Host { name: c.host_name(), port: c.port?, alias: format!("zennet-{}", &c.contract.terms.id().to_string()[..16]), host_key: c.host_key.clone(), slots: c.contract.terms.spec.cpu_millicores.div_ceil(1000).max(1) }))
                .collect();
            if let Err(e) = files.write(&hosts, &identity) {
                eprintln!("zennet: writing the ssh files: {e:#}");
            }
        }
    }
    for (_, t) in open {
        t.abort();
    }
    // The fleet is gone: no file names a port that nothing serves.
    if let Err(e) = files.write(&[], &identity) {
        eprintln!("zennet: writing the ssh files: {e:#}");
    }
}
