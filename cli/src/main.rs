//! `zennet`: the publisher's command. Parses arguments and calls the
//! publisher library; knows nothing else.

mod wallet;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Hire containers on the Zennet market and reach them by plain ssh.
#[derive(Parser, Debug)]
#[command(name = "zennet", version, about)]
struct Args {
    /// Number of containers to hire.
    #[arg(short = 'n', long = "count")]
    count: Option<u32>,
    /// Memory per container, e.g. 512M.
    #[arg(short = 'm', long = "memory")]
    memory: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A small XenCoin wallet (talks JSON-RPC to xencoind).
    Wallet {
        /// Key file (hex secret, mode 0600). Default: ~/.zennet/wallet.key.
        #[arg(long, env = "ZENNET_WALLET")]
        wallet: Option<PathBuf>,
        /// Chain node JSON-RPC URL.
        #[arg(long, env = "ZENNET_RPC", default_value = "http://127.0.0.1:8645")]
        rpc: String,
        #[command(subcommand)]
        cmd: wallet::WalletCmd,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Cmd::Wallet {
        wallet: path,
        rpc,
        cmd,
    }) = args.cmd
    {
        let path = path.unwrap_or_else(wallet::default_key_path);
        return wallet::run(cmd, &path, &rpc);
    }
    anyhow::bail!(
        "zennet: hiring is not built yet (asked for {:?} containers of {:?})",
        args.count,
        args.memory
    )
}
