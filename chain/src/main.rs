//! `xencoind`: the XenCoin node. Parses arguments and runs the library.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use xencoin::daemon::{self, DaemonConfig};

/// The XenCoin chain node.
#[derive(Parser, Debug)]
#[command(name = "xencoind", version, about)]
struct Args {
    /// Run the dev network: fixed dev genesis, prefunded dev keys (see chain/README.md).
    #[arg(long)]
    dev: bool,
    /// With --dev: number of delegates in the dev genesis.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// With --dev: which dev key (0-based) this node produces with. Without it,
    /// `--validators N` (N > 1) runs all N nodes in this process on loopback.
    #[arg(long)]
    dev_key: Option<usize>,
    /// p2p listen address, e.g. /ip4/127.0.0.1/tcp/30333 (with --validators N
    /// and no --dev-key: node i listens on this port + i; default 30333).
    #[arg(long)]
    p2p_listen: Option<libp2p::Multiaddr>,
    /// A peer to dial, e.g. /ip4/127.0.0.1/tcp/30334 (repeatable).
    #[arg(long = "peer")]
    peers: Vec<libp2p::Multiaddr>,
    /// Genesis file (JSON) for a non-dev network.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// File holding this node's 32-byte secret key in hex (mode 0600) for a non-dev network.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Directory for the database.
    #[arg(long, default_value = "xencoind-data")]
    data_dir: PathBuf,
    /// JSON-RPC listen address (HTTP and WebSocket). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8645")]
    rpc_addr: SocketAddr,
    /// Slot length in milliseconds (dev only; part of genesis otherwise).
    #[arg(long, default_value_t = 1000)]
    slot_ms: u64,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the dev network's keys (index, secret hex, address). Dev only: these are public.
    DevKeys,
    /// Measure throughput and latency; prints `chain <figure>=<value>` lines.
    #[command(hide = true)]
    Bench,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match args.cmd {
        Some(Cmd::Bench) => return xencoin::bench::run(),
        Some(Cmd::DevKeys) => {
            for i in 0..xencoin::node::DEV_KEYS {
                let k = xencoin::node::dev_key(i);
                println!("{i} {} {}", hex::encode(k.to_bytes()), k.address());
            }
            return Ok(());
        }
        None => {}
    }
    let cfg = DaemonConfig {
        dev: args.dev,
        validators: args.validators,
        dev_key: args.dev_key,
        genesis: args.genesis,
        key_file: args.key_file,
        data_dir: args.data_dir,
        rpc_addr: args.rpc_addr,
        slot_ms: args.slot_ms,
        p2p_listen: args.p2p_listen,
        peers: args.peers,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(daemon::run(cfg))
}
