//! `zennet`: the publisher's command. Parses arguments and calls the
//! publisher library; knows nothing else.

mod publish;
mod wallet;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Hire containers on the Zennet market and reach them by plain ssh.
///
/// `zennet -n 100 -m 512M` is `zennet rent -n 100 -m 512M`.
#[derive(Parser, Debug)]
#[command(name = "zennet", version, about)]
struct Args {
    /// Number of containers to hire.
    #[arg(short = 'n', long = "count")]
    count: Option<u32>,
    /// Memory per container, e.g. 512M.
    #[arg(short = 'm', long = "memory", value_parser = publish::parse_size)]
    memory: Option<u64>,
    /// Key file (hex secret, mode 0600). Default: ~/.zennet/wallet.key.
    #[arg(long, env = "ZENNET_WALLET", global = true)]
    wallet: Option<PathBuf>,
    /// Chain node JSON-RPC URL.
    #[arg(long, env = "ZENNET_RPC", default_value = "http://127.0.0.1:8645", global = true)]
    rpc: String,
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
    /// interval, and settle every channel when stopped.
    Rent(publish::RentArgs),
}

/// `rent`'s defaults, for the bare `zennet -n N -m SIZE` form.
#[derive(Parser)]
struct RentOnly {
    #[command(flatten)]
    rent: publish::RentArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key_path = args.wallet.clone().unwrap_or_else(wallet::default_key_path);
    match args.cmd {
        Some(Cmd::Wallet { cmd }) => wallet::run(cmd, &key_path, &args.rpc),
        Some(Cmd::Rent(r)) => publish::rent(r, &key_path, &args.rpc),
        None => {
            let (Some(count), Some(memory)) = (args.count, args.memory) else {
                anyhow::bail!("say how many containers and how much memory each: zennet -n 4 -m 512M (see --help)");
            };
            let r = RentOnly::parse_from(["rent", "-n", &count.to_string(), "-m", &memory.to_string()]);
            publish::rent(r.rent, &key_path, &args.rpc)
        }
    }
}
