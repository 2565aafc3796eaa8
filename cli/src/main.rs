//! `zennet`: the publisher's command. Parses arguments and calls the
//! publisher library; knows nothing else.

mod daemon;
mod fleet;
mod publish;
mod wallet;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Hire containers on the Zennet market and reach them by plain ssh.
///
/// `zennet -n 100 -m 512M [rent options]` is `zennet rent -n 100 -m 512M ...`:
/// it returns once the containers are ready and prints one line per host
/// (port, provider, cpus, memory, price per hour); `ssh -F <state>/ssh_config
/// zn-1` reaches the first. `zennet ls`, `top`, `bill`, `drop`, `stop` manage
/// the fleet; `zennet hosts --format mpi|parallel|ansible` feeds other tools.
#[derive(Parser, Debug)]
#[command(name = "zennet", version)]
struct Args {
    /// Key file (hex secret, mode 0600). Default: ~/.zennet/wallet.key.
    #[arg(long, env = "ZENNET_WALLET", global = true)]
    wallet: Option<PathBuf>,
    /// Chain node JSON-RPC URL.
    #[arg(long, env = "ZENNET_RPC", default_value = "http://127.0.0.1:8645", global = true)]
    rpc: String,
    #[command(flatten)]
    fleet: fleet::Where,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A small XenCoin wallet (talks JSON-RPC to xencoind).
    Wallet {
        #[command(subcommand)]
        cmd: wallet::WalletCmd,
    },
    /// Hire containers: announce, negotiate, open channels, pay per
    /// interval; the background daemon holds the fleet until `zennet stop`.
    Rent(publish::RentArgs),
    #[command(flatten)]
    Fleet(fleet::FleetCmd),
    /// Internal: the background daemon holding a fleet (started by `rent`).
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        state_dir: PathBuf,
    },
}

/// Subcommand names: an argument list naming none of them is the seed's
/// bare form, `zennet -n N -m SIZE ...`, and means `zennet rent ...`.
const SUBCOMMANDS: &[&str] = &["wallet", "rent", "ls", "top", "drop", "stop", "bill", "hosts", "run", "daemon", "help"];

fn main() -> anyhow::Result<()> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let names_one = argv.iter().skip(1).any(|a| a.to_str().is_some_and(|a| SUBCOMMANDS.contains(&a)));
    let asks_for_hosts = argv.iter().skip(1).any(|a| a.to_str().is_some_and(|a| a == "-n" || a == "--count" || a.starts_with("--count=") || (a.starts_with("-n") && a.len() > 2 && !a.starts_with("--"))));
    if !names_one && asks_for_hosts {
        argv.insert(1, "rent".into());
    }
    let args = Args::parse_from(argv);
    let key_path = args.wallet.clone().unwrap_or_else(wallet::default_key_path);
    let with_globals = |mut r: publish::RentArgs| {
        r.json = args.fleet.json;
        r.state_dir = args.fleet.state_dir.clone();
        r
    };
    match args.cmd {
        Some(Cmd::Wallet { cmd }) => wallet::run(cmd, &key_path, &args.rpc, args.fleet.json),
        Some(Cmd::Rent(r)) => publish::rent(with_globals(r), &key_path, &args.rpc),
        Some(Cmd::Fleet(f)) => fleet::run(f, args.fleet, &key_path),
        Some(Cmd::Daemon { state_dir }) => daemon::serve(&key_path, &args.rpc, &state_dir),
        None => anyhow::bail!("say how many containers and how much memory each: zennet -n 4 -m 512M (see --help)"),
    }
}
