//! `zennet-agent bench-control`: the control API's round trip (a property
//! get from a client over the private socket, the path `zennet-agent
//! status` takes) and one voucher committed durably through the store's
//! contract path (what the agent does before acknowledging a voucher).
//! Prints `control dbus_call_us_p50=<x>` and `control state_commit_us_p50=<x>`.

use crate::api::{client, dbus, Control};
use crate::store::{ContractRecord, ContractState, Store};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zennet_protocol::keys::SecretKey;
use zennet_protocol::market::{Contract, Terms, DEFAULT_INTERVAL_MS};
use zennet_protocol::spec::Capacity;
use zennet_protocol::tx::Hash32;
use zennet_protocol::voucher::Voucher;
use zennet_protocol::{Amount, ContainerSpec, Rates};

/// Options of `bench-control`.
#[derive(Args, Debug, Clone)]
pub struct BenchControlArgs {
    /// D-Bus calls timed (the median is printed).
    #[arg(long, default_value_t = 2000)]
    pub calls: usize,
    /// Voucher commits timed (the median is printed).
    #[arg(long, default_value_t = 300)]
    pub commits: usize,
    /// Where the scratch database and socket go (a directory on the disk
    /// to measure; removed at the end).
    #[arg(long, default_value = "/var/tmp")]
    pub dir: PathBuf,
}

fn p50_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// A contract record with a signed voucher, as the market stores it.
fn record(nonce: u64) -> ContractRecord {
    let (p, u) = (SecretKey::from_seed("bench provider"), SecretKey::from_seed("bench publisher"));
    let terms = Terms {
        chain_id: "xen-dev-1".into(),
        job: Hash32([7; 32]),
        index: 0,
        provider: p.public(),
        publisher: u.public(),
        spec: ContainerSpec::small(&u.address().to_string()),
        rates: Rates::zero(),
        interval_ms: DEFAULT_INTERVAL_MS,
        exposure_bound: Amount(10_000),
        deposit: Amount(1_000_000),
        expiry_height: 1000,
        host_key_fingerprint: "SHA256:97tAFgD/+etBGQaDgpmPzQ6d51P5bnnueP7QnAzgyHg".into(),
    };
    let b = terms.signing_bytes();
    let contract = Contract { provider_sig: p.sign(&b), publisher_sig: u.sign(&b), terms };
    let voucher = Voucher { chain_id: "xen-dev-1".into(), channel: Hash32([9; 32]), cumulative: Amount(nonce * 1000), nonce }.sign(&u);
    ContractRecord { container: "bench-0".into(), channel: Some(Hash32([9; 32])), state: ContractState::Active, best_voucher: Some(voucher), last_usage: None, settle_tx: None, end_reason: None, contract }
}

/// Runs the benchmark.
pub fn bench_control(a: BenchControlArgs) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("zennet-bench-control-").tempdir_in(&a.dir).with_context(|| format!("scratch dir in {}", a.dir.display()))?;
    let store = Arc::new(Store::open(&Store::path_in(dir.path()))?);
    let cap = Capacity { memory_bytes: 1 << 30, cpu_millicores: 1000, pids_max: 64, disk_bytes: 1 << 30 };
    let ctl = Arc::new(Control::load(store.clone(), cap, "xen1bench".into())?);
    let sock = dbus::socket_in(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let calls = rt.block_on(async {
        dbus::serve_socket(ctl, &sock).await?;
        let t = client::Target { state_dir: dir.path().into(), control_socket: Some(sock.clone()), dbus: "socket".into(), json: false };
        let conn = client::connect(&t).await?;
        let p = client::proxy(&conn).await?;
        for _ in 0..50 {
            p.address().await?;
        }
        let mut v = Vec::with_capacity(a.calls);
        for _ in 0..a.calls.max(1) {
            let t = Instant::now();
            p.address().await?;
            v.push(t.elapsed());
        }
        anyhow::Ok(v)
    })?;
    let mut commits = Vec::with_capacity(a.commits);
    for i in 0..a.commits.max(1) as u64 {
        let rec = record(i + 1);
        let t = Instant::now();
        store.put_contract(&rec)?;
        commits.push(t.elapsed());
    }
    println!("control dbus_call_us_p50={:.1}", p50_us(calls));
    println!("control state_commit_us_p50={:.1}", p50_us(commits));
    Ok(())
}
