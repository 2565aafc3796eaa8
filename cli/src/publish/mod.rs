//! The publisher's side of the market: `zennet rent` announces a job,
//! listens for providers on libp2p, negotiates and pays each of them
//! ([`session`]), and when the job stops makes sure every channel ends
//! settled: closed by its provider, or refunded after expiry ([`settle`]).
//! It runs in the foreground until `--duration` passes or it is
//! interrupted; the background daemon of `zennet -n N` builds on it.

mod job;
mod record;
pub mod run;
mod session;
mod settle;
pub mod ssh;

use anyhow::bail;
use clap::Args;
use zennet_protocol::keys::SecretKey;
use zennet_protocol::market::DEFAULT_INTERVAL_MS;
use zennet_protocol::Amount;
pub use job::{Job, PubContract, State};

/// `zennet rent`: hire containers and pay for them as they run.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// Address announced for providers to dial, when they reach this
    /// machine at another address than it listens on (a NAT or port
    /// forward; a QEMU guest reaches the host at `/ip4/10.0.2.2/tcp/0`).
    /// Port 0 means the port `--listen` got. Default: the listen address.
    #[arg(long, value_name = "MULTIADDR")]
    #[serde(default)]
    pub external_addr: Option<String>,
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
    /// Print JSON (from the global `--json`).
    #[arg(skip)]
    pub json: bool,
    /// Most the job may pay in all, XEN: vouchers stop at it, and the whole
    /// fleet is stopped and settled once it is reached.
    #[arg(long, value_name = "XEN")]
    pub budget: Option<String>,
    /// Hold the job in this process (until --duration, Ctrl-C or SIGTERM)
    /// instead of handing it to the background daemon.
    #[arg(long)]
    pub foreground: bool,
    /// Where the publisher keeps its ssh key, `ssh_config` and `known_hosts`
    /// (from the global `--state-dir`; default: the wallet's directory).
    #[arg(skip)]
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

/// The record of providers, next to the wallet.
pub fn record_store(key_path: &std::path::Path) -> anyhow::Result<record::Records> {
    record::Records::open(key_path.parent().unwrap_or(std::path::Path::new(".")))
}

/// `zennet rent`.
pub fn rent(mut args: RentArgs, key_path: &std::path::Path, rpc: &str) -> anyhow::Result<()> {
    let key = crate::wallet::read_key(key_path)?;
    // The record of providers lives next to the wallet, and by default so do the ssh files.
    let wallet_dir = key_path.parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
    if args.state_dir.is_none() {
        args.state_dir = Some(wallet_dir.clone());
    }
    if !args.foreground {
        // The daemon opens the record (one process at a time holds it).
        return crate::daemon::rent(args, key_path, rpc);
    }
    let records = record::Records::open(&wallet_dir)?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(foreground(args, key, rpc, records))
}

pub(crate) fn xen(s: &str, what: &str) -> anyhow::Result<Amount> {
    Amount::parse_xen(s).map_err(|e| anyhow::anyhow!("{what} {s:?}: {e}"))
}

/// `zennet rent --foreground`: the job lives in this process.
async fn foreground(args: RentArgs, key: SecretKey, rpc: &str, records: record::Records) -> anyhow::Result<()> {
    let json_out = args.json;
    let r = run::start(args, key, rpc, records).await?;
    let ready = r
        .hire(|p| {
            if !json_out {
                eprint!("\rzennet: {}", p.line());
            }
        })
        .await;
    if !json_out {
        eprintln!();
    }
    let want = r.args.count as usize;
    if ready < want {
        eprintln!("zennet: within {} s: {}", r.args.timeout, r.job.shortfall());
    }
    for line in r.ready_lines() {
        print_ready(&line, json_out);
    }
    if ready > 0 && !json_out {
        eprintln!("zennet: reach them with `ssh -F {} zn-1` (or `ssh -p PORT root@127.0.0.1`)", r.files.config.display());
    }
    if ready > 0 {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        r.run(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => eprintln!("zennet: interrupted, stopping"),
                _ = term.recv() => eprintln!("zennet: terminated, stopping"),
            }
        })
        .await;
    }
    let shortfall = (ready < want).then(|| r.job.shortfall());
    let done = r.finish().await;
    print_done(&done, json_out);
    if let Some(why) = shortfall {
        bail!("within {} s: {why}", r.args.timeout);
    }
    Ok(())
}

/// One ready host: a JSON object, or `zn-N port=P provider=... cpus memory price/h`.
pub fn print_ready(line: &serde_json::Value, json_out: bool) {
    if json_out {
        println!("{line}");
    } else {
        println!(
            "{} port={} provider={} cpus={} memory={}MiB price/h={}",
            line["host"].as_str().unwrap_or(""),
            line["port"],
            line["provider"].as_str().unwrap_or(""),
            line["cpus"],
            line["memory_mib"],
            Amount(line["price_per_hour"].as_u64().unwrap_or(0))
        );
    }
}

/// The outcome of a stopped job.
pub fn print_done(done: &serde_json::Value, json_out: bool) {
    if json_out {
        println!("{done}");
        return;
    }
    for c in done["contracts"].as_array().into_iter().flatten() {
        eprintln!(
            "zennet: {} {} paid {} of deposit {} ({})",
            c["host"].as_str().unwrap_or(""),
            c["state"].as_str().unwrap_or(""),
            Amount(c["voucher"].as_u64().unwrap_or(0)),
            Amount(c["deposit"].as_u64().unwrap_or(0)),
            c["settled_by"].as_str().unwrap_or("unsettled")
        );
    }
}
