//! `zennet-agent`: parses arguments and wires the library's modules
//! together; nothing more. The container engine's zygote is forked here,
//! before any thread exists.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use zennet_agent::cli;

/// The Zennet provider agent: sells this machine's spare capacity as containers.
#[derive(Parser, Debug)]
#[command(name = "zennet-agent", version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the agent (the default): start the container engine and serve.
    Run(cli::RunArgs),
    /// Build a base root filesystem for containers (`busybox` or `debian`).
    MakeBase {
        /// Which base: `busybox` (from this host's static busybox) or `debian` (debootstrap minbase).
        name: String,
        /// Directory of bases; the base lands in DIR/NAME.
        #[arg(long, default_value = "/var/lib/zennet/bases")]
        bases_dir: PathBuf,
        /// The static busybox to copy (busybox base).
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Debian suite (debian base).
        #[arg(long, default_value = "bookworm")]
        suite: String,
    },
    /// Create a container, run a command in it, print its usage, remove it.
    Demo(cli::RunArgs),
    /// Measure the container engine against runc and crun (one line per figure).
    BenchContainers(cli::BenchArgs),
    /// Benchmark this machine and fit per-component rates from its price.
    Calibrate(cli::CalibrateArgs),
    /// Measure calibration: durations, rate spread, hold-out error (one line per figure).
    #[command(hide = true)]
    BenchCalibration(cli::BenchCalibrationArgs),
    /// Measure the control API: D-Bus round trip, durable voucher commit (one line per figure).
    #[command(hide = true)]
    BenchControl(cli::BenchControlArgs),
    #[command(flatten)]
    Control(zennet_agent::api::client::Command),
    /// Internal: a built-in calibration kernel (run by `calibrate` in a run's cgroup).
    #[command(hide = true)]
    CalibrateKernel {
        /// Which kernel: `net-paced`.
        name: String,
        /// Pace, bytes per second.
        #[arg(long)]
        bytes_per_second: u64,
        /// Stop after this many seconds even without SIGINT.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Where to write the metrics (stress-ng's --yaml layout).
        #[arg(long)]
        yaml: PathBuf,
    },
    /// Internal: the container engine's zygote (spawned by the agent).
    #[command(hide = true)]
    Zygote,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (level, file) = match &args.cmd {
        Some(Cmd::Run(a)) => a.log_settings(),
        _ => ("warn".to_string(), None),
    };
    zennet_agent::logs::init(&level, file.as_ref().map(|(p, max)| (p.as_path(), *max)));
    match args.cmd.unwrap_or(Cmd::Run(cli::RunArgs::default())) {
        Cmd::Zygote => zennet_agent::containers::zygote_main(),
        Cmd::MakeBase { name, bases_dir, busybox, suite } => {
            std::fs::create_dir_all(&bases_dir).with_context(|| format!("create {}", bases_dir.display()))?;
            let dest = bases_dir.join(&name);
            match name.as_str() {
                "busybox" => zennet_agent::containers::rootfs::make_busybox_base(&dest, &busybox)?,
                "debian" => zennet_agent::containers::rootfs::make_debian_base(&dest, &suite, None)?,
                other => anyhow::bail!("unknown base {other:?}: choose busybox or debian"),
            }
            println!("base {name} ready at {}", dest.display());
            Ok(())
        }
        Cmd::CalibrateKernel { name, bytes_per_second, timeout, yaml } => match name.as_str() {
            "net-paced" => zennet_agent::calibrate::kernels::net_paced(bytes_per_second, std::time::Duration::from_secs(timeout), &yaml),
            other => anyhow::bail!("unknown calibration kernel {other:?}: the built-in one is net-paced"),
        },
        Cmd::Run(a) => cli::run(a),
        Cmd::Demo(a) => cli::demo(a),
        Cmd::BenchContainers(a) => cli::bench_containers(a),
        Cmd::Calibrate(a) => cli::calibrate(a),
        Cmd::BenchCalibration(a) => cli::bench_calibration(a),
        Cmd::BenchControl(a) => cli::bench_control(a),
        Cmd::Control(c) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            println!("{}", rt.block_on(zennet_agent::api::client::run(c))?);
            Ok(())
        }
    }
}
