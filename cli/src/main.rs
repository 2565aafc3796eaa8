//! `zennet`: the publisher's command. Parses arguments and calls the
//! publisher library; knows nothing else.

use clap::Parser;

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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "zennet: hiring is not built yet (asked for {:?} containers of {:?})",
        args.count,
        args.memory
    )
}
