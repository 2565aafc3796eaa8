//! The agent's subcommands that are more than wiring: `run`, `demo`,
//! `bench-containers`, `calibrate`, `bench-calibration` and `bench-control`. Each builds an [`EngineConfig`] from its arguments.

use crate::containers::{network::NetConfig, EngineConfig, Engine};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use zennet_protocol::spec::Capacity;

mod bench;
mod bench_control;
mod calibrate;
mod layers;
pub use bench::{bench_containers, BenchArgs};
pub use bench_control::{bench_control, BenchControlArgs};
pub use calibrate::{bench_calibration, calibrate, BenchCalibrationArgs, CalibrateArgs};

/// Options shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Agent state directory (identity, engine state, bases).
    #[arg(long, default_value = "/var/lib/zennet")]
    pub state_dir: PathBuf,
    /// Directory of container base root filesystems (default: STATE_DIR/bases).
    #[arg(long)]
    pub bases_dir: Option<PathBuf>,
    /// Give containers loopback only (no bridge, NAT or firewall rules).
    #[arg(long)]
    pub no_network: bool,
    /// Largest container sold, memory in MiB [default: `limits.max_memory_mib`, 4096].
    #[arg(long)]
    pub max_memory_mib: Option<u64>,
    /// Largest container sold, disk in MiB [default: `limits.max_disk_mib`, 8192].
    #[arg(long)]
    pub max_disk_mib: Option<u64>,
    /// Most cpu sold, thousandths of a core [default: `limits.max_cpu_millicores`, all cores].
    #[arg(long)]
    pub max_cpu_millicores: Option<u32>,
    /// Calibrate before serving when there is no calibration record, the
    /// hardware changed, or the latest record is older than this many
    /// seconds [default: `calibration.max_age_hours`; without --config: never].
    #[arg(long, value_name = "SECONDS")]
    pub calibrate_max_age: Option<u64>,
    /// Calibrate in quick mode (at start and on Recalibrate) [default: `calibration.quick`].
    #[arg(long)]
    pub calibrate_quick: bool,
    /// Calibration runs instead of the mode's (tests, slow machines).
    #[arg(long, hide = true)]
    pub calibration_runs: Option<usize>,
    /// Calibration run length in seconds instead of the mode's.
    #[arg(long, hide = true)]
    pub calibration_seconds: Option<f64>,
    /// This machine's network capacity for calibration, Mbit/s [default:
    /// `calibration.network_mbps`, else the default route's interface speed, else 1000].
    #[arg(long, value_name = "MBPS")]
    pub calibration_network_mbps: Option<u64>,
    /// Cgroup (v2) or per-controller group (v1) under which containers live;
    /// two agents on one host need two.
    #[arg(long, default_value = "zennet")]
    pub cgroup_parent: String,
    /// The chain node's JSON-RPC URL. With it the agent sells on the
    /// market: it answers announcements, runs contracts and gets paid
    /// [default: `chain.rpc` with --config; without: off].
    #[arg(long, value_name = "URL")]
    pub rpc: Option<String>,
    /// Price of the whole machine per second, base units: the calibration
    /// turns it into rates (SetPrice overrides it and persists)
    /// [default: `market.price_per_second`, 1000].
    #[arg(long)]
    pub price_per_second: Option<u64>,
    /// Most contracts at once [default: `market.max_contracts`, 64].
    #[arg(long)]
    pub max_contracts: Option<u32>,
    /// Shortest metering interval accepted, ms [default: `market.min_interval_ms`, 500].
    #[arg(long)]
    pub min_interval_ms: Option<u32>,
    /// Lowest counter-offer accepted, percent of the asking rates.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub reserve_pct: u64,
    /// Largest exposure bound (unpaid value carried) accepted in a contract,
    /// base units [default: `market.exposure_bound`, 100 XEN].
    #[arg(long)]
    pub max_exposure: Option<u64>,
    /// Metering intervals a container stays frozen for non-payment before it is killed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub grace_intervals: u32,
    /// Fee on the agent's own transactions (`ChannelClose`), base units.
    #[arg(long, default_value_t = 1000)]
    pub fee: u64,
    /// Where the control API (D-Bus) is served: `socket` (peer-to-peer on
    /// the control socket), `system` (the system bus, the appliance) or `off`.
    #[arg(long, default_value = "socket", value_parser = ["socket", "system", "off"])]
    pub dbus: String,
    /// The control socket (default: STATE_DIR/agent.bus).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this ip:port (port 0 picks one; default: off).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// zennet.toml (with `zennet.*=` options from the kernel command line
    /// over it): every key applies where its flag is not given. A refusal
    /// is printed naming the key, and the last valid configuration stays in force.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Where the kernel command line is read from (tests).
    #[arg(long, hide = true, default_value = "/proc/cmdline")]
    pub kernel_cmdline: PathBuf,
}

impl Default for RunArgs {
    fn default() -> Self {
        Self {
            state_dir: "/var/lib/zennet".into(),
            bases_dir: None,
            no_network: false,
            max_memory_mib: None,
            max_disk_mib: None,
            max_cpu_millicores: None,
            calibrate_max_age: None,
            calibrate_quick: false,
            calibration_runs: None,
            calibration_seconds: None,
            calibration_network_mbps: None,
            cgroup_parent: "zennet".into(),
            rpc: None,
            price_per_second: None,
            max_contracts: None,
            min_interval_ms: None,
            reserve_pct: 80,
            max_exposure: None,
            grace_intervals: 3,
            fee: 1000,
            dbus: "socket".into(),
            control_socket: None,
            metrics_listen: None,
            config: None,
            kernel_cmdline: "/proc/cmdline".into(),
        }
    }
}

impl RunArgs {
    /// The engine configuration these options describe.
    pub fn engine_config(&self) -> EngineConfig {
        let engine_dir = self.state_dir.join("engine");
        EngineConfig {
            bases_dir: self.bases_dir.clone().unwrap_or_else(|| self.state_dir.join("bases")),
            cgroup_parent: self.cgroup_parent.clone(),
            capacity: Capacity {
                memory_bytes: self.max_memory_mib.unwrap_or(4096) << 20,
                cpu_millicores: self.max_cpu_millicores.unwrap_or(u32::MAX).min((std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) * 1000) as u32),
                pids_max: 4096,
                disk_bytes: self.max_disk_mib.unwrap_or(8192) << 20,
            },
            network: (!self.no_network).then(|| NetConfig::default_for(engine_dir.join("net"))),
            keep_containers_on_exit: true,
            state_dir: engine_dir,
        }
    }

    /// The log level and capped log file: `agent.log_level`, `agent.log_file`
    /// and `agent.log_max_bytes` of `--config` (the last valid one if it is
    /// refused); without it `warn`, console only.
    pub fn log_settings(&self) -> (String, Option<(PathBuf, u64)>) {
        let Some(p) = &self.config else { return ("warn".into(), None) };
        let cmdline = std::fs::read_to_string(&self.kernel_cmdline).unwrap_or_default();
        let a = crate::config::load(p, &cmdline, &crate::config::last_good_path(&self.state_dir)).config.agent;
        (a.log_level, (!a.log_file.is_empty()).then(|| (PathBuf::from(a.log_file), a.log_max_bytes)))
    }

    /// Builds the busybox base if it is missing and a static busybox exists.
    pub fn ensure_busybox_base(&self) -> Result<()> {
        let cfg = self.engine_config();
        let dest = cfg.bases_dir.join("busybox");
        if !dest.join("bin/busybox").exists() && std::path::Path::new("/bin/busybox").exists() {
            std::fs::create_dir_all(&cfg.bases_dir).with_context(|| format!("create {}", cfg.bases_dir.display()))?;
            crate::containers::rootfs::make_busybox_base(&dest, std::path::Path::new("/bin/busybox"))?;
        }
        Ok(())
    }
}

/// Calibrates if `--calibrate-max-age` (or `calibration.max_age_hours`)
/// says the store's record is missing, stale or of other hardware, or a
/// Recalibrate was interrupted by a restart. Quick or full as configured, at
/// the asking price in force. Runs before the zygote fork: no thread is
/// started. A failed calibration is reported and the agent serves on.
fn calibrate_if_needed(args: &RunArgs) -> Result<()> {
    let store = crate::store::Store::open(&crate::store::Store::path_in(&args.state_dir))?;
    let mut settings = store.control_settings()?;
    let why = if settings.recalibrate {
        "a Recalibrate over the control API did not finish".to_string()
    } else {
        let Some(age) = args.calibrate_max_age else { return Ok(()) };
        let fp = crate::calibrate::fingerprint();
        let Some(why) = crate::store::needs_calibration(&store, &fp, std::time::Duration::from_secs(age)) else { return Ok(()) };
        format!("{why:?}")
    };
    if settings.recalibrate {
        settings.recalibrate = false;
        store.put_control_settings(&settings)?;
    }
    eprintln!("zennet-agent: calibrating this machine ({why})");
    let mut cfg = if args.calibrate_quick { crate::calibrate::Config::quick() } else { crate::calibrate::Config::full() };
    if let Some(n) = args.calibration_runs {
        (cfg.runs, cfg.max_runs) = (n, n);
    }
    if let Some(t) = args.calibration_seconds {
        cfg.seconds = t;
    }
    cfg.network_mbps = args.calibration_network_mbps;
    cfg.price_per_second = zennet_protocol::Amount(settings.price_per_second.unwrap_or(args.price()));
    cfg.seed = calibrate::clock_seed();
    cfg.work_dir = args.state_dir.join("calibrate");
    match crate::calibrate::calibrate(&cfg, &mut |_| {}) {
        Ok(rec) => {
            store.put_calibration(&rec)?;
            eprintln!("zennet-agent: calibrated in {:.1} s, rank {}", rec.elapsed_s, rec.fit.rank);
        }
        Err(e) => eprintln!("zennet-agent: calibration failed, serving without rates: {e:#}"),
    }
    Ok(())
}

/// `zennet-agent run`: forks the engine's zygote, then serves until SIGTERM/SIGINT.
pub fn run(mut args: RunArgs) -> Result<()> {
    // The provider's identity: its chain key, also its libp2p key. Created
    // on first start (mode 0600), the same on every start after.
    let key_path = args.state_dir.join("identity.key");
    let (key, created) = zennet_protocol::keyfile::load_or_create(&key_path).context("the agent's identity")?;
    if created {
        eprintln!("zennet-agent: new identity {} in {}", key.address(), key_path.display());
    }
    let config = args.load_config();
    args.ensure_busybox_base()?;
    calibrate_if_needed(&args)?;
    let cfg = args.engine_config();
    let capacity = cfg.capacity.clone();
    let networked = cfg.network.is_some();
    let (engine, network) = match Engine::fork(cfg.clone()) {
        Ok(e) => (e, if networked { "on".to_string() } else { "off".to_string() }),
        // Keep selling loopback-only containers rather than crash-looping,
        // and say why on the console. (spawn, not fork: a thread exists now.)
        Err(e) if networked && e.to_string().contains("network setup") => {
            eprintln!("zennet-agent: container network unavailable, containers get loopback only: {e}");
            let exe = std::env::current_exe().context("locate the agent binary")?;
            let e2 = Engine::spawn(&exe, &EngineConfig { network: None, ..cfg }).context("start the container engine")?;
            (e2, "unavailable".to_string())
        }
        Err(e) => return Err(anyhow::Error::new(e).context("start the container engine")),
    };
    let engine = std::sync::Arc::new(engine);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let (adopted, removed) = &engine.recovered;
        let (adopted, removed) = (adopted.len(), removed.len());
        let store = std::sync::Arc::new(crate::store::Store::open(&crate::store::Store::path_in(&args.state_dir))?);
        let control = crate::api::Control::load(store.clone(), capacity.clone(), key.address().to_string())?.with_base_price(args.price()).with_recalibration(args.recalibration()?);
        let control = std::sync::Arc::new(control);
        if config.as_ref().is_some_and(|c| !c.market.accept_work) {
            control.start_paused();
        }
        let control_at = serve_control(&args, &control).await;
        let metrics_addr = args.metrics_listen.clone().filter(|a| !a.is_empty());
        let metrics_at = match metrics_addr {
            Some(addr) => {
                let m = std::sync::Arc::new(crate::api::metrics::Metrics::new(control.clone(), Some(engine.clone()), args.rpc.as_deref()));
                crate::api::metrics::serve(m, &addr).await?.to_string()
            }
            None => "off".to_string(),
        };
        let market = match &args.rpc {
            Some(rpc) => {
                let mcfg = crate::market::MarketConfig {
                    rpc: rpc.clone(),
                    price_per_second: zennet_protocol::Amount(args.price()),
                    max_contracts: args.max_contracts.unwrap_or(64),
                    min_interval_ms: args.min_interval_ms.unwrap_or(zennet_protocol::market::INTERVAL_MS_RANGE.0),
                    reserve_pct: args.reserve_pct,
                    max_exposure: zennet_protocol::Amount(args.max_exposure.unwrap_or(100 * zennet_protocol::Amount::BASE_PER_XEN)),
                    grace_intervals: args.grace_intervals,
                    fee: zennet_protocol::Amount(args.fee),
                    host_keys_dir: args.state_dir.join("hostkeys"),
                    control: control.clone(),
                    ..Default::default()
                };
                let m = crate::market::Market::new(key.clone(), engine.clone(), store, capacity, mcfg).await?;
                Some(tokio::spawn(m.run()))
            }
            None => None,
        };
        // Handlers first: a SIGTERM right after the ready line must stop cleanly.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let market_state = if market.is_some() { "on" } else { "off" };
        println!("zennet-agent ready engine=libcontainer network={network} adopted={adopted} removed={removed} market={market_state} control={control_at} metrics={metrics_at} address={}", key.address());
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        // Whoever read the ready line may be gone: no panic on a closed stdout.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), b"zennet-agent stopping\n");
        if control_at.starts_with('/') {
            let _ = std::fs::remove_file(&control_at);
        }
        anyhow::Ok(())
    })
}

/// Serves the control API as `--dbus` says; returns where (the socket's
/// path, `system`, `off`, or `unavailable` when it could not be served:
/// the agent sells on without it and says why).
async fn serve_control(args: &RunArgs, control: &std::sync::Arc<crate::api::Control>) -> String {
    let r = match args.dbus.as_str() {
        "off" => return "off".into(),
        // The connection lives on in its signal task.
        "system" => crate::api::dbus::serve_system_bus(control.clone()).await.map(|_| "system".to_string()),
        _ => {
            let path = args.control_socket.clone().unwrap_or_else(|| crate::api::dbus::socket_in(&args.state_dir));
            crate::api::dbus::serve_socket(control.clone(), &path).await.map(|_| path.display().to_string())
        }
    };
    r.unwrap_or_else(|e| {
        eprintln!("zennet-agent: control API unavailable: {e}");
        "unavailable".into()
    })
}

/// `zennet-agent demo`: one container, one command, its usage, then removal.
pub fn demo(args: RunArgs) -> Result<()> {
    args.ensure_busybox_base()?;
    let mut cfg = args.engine_config();
    cfg.keep_containers_on_exit = false;
    // Its own cgroup parent: a running agent's engine owns `zennet`.
    cfg.cgroup_parent = "zennet-demo".into();
    let engine = Engine::fork(cfg).context("start the container engine")?;
    let spec = zennet_protocol::ContainerSpec::small("demo");
    let id = format!("demo-{}", std::process::id());
    let info = engine.run_idle(&id, &spec)?;
    println!("container {id} running: pid {:?}, ip {:?}, memory {} MiB", info.pid, info.ip, spec.memory_bytes >> 20);
    let out = engine.exec_output(&id, &["/bin/sh", "-c", "echo \"inside: $(uname -sr), uid map $(cat /proc/self/uid_map | tr -s ' ')\"; head -c 8388608 /dev/zero | tail -c 8388608 > /dev/null; dd if=/dev/zero of=/f bs=1M count=4 oflag=direct 2>/dev/null; echo \"wrote 4 MiB\"; echo \"memory.max $(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo n/a)\""], b"", std::time::Duration::from_secs(30))?;
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for (cid, u) in engine.usage(&[&id])? {
        println!("usage of {cid}:");
        for (name, v) in u.named() {
            println!("  {name:<18} {v}");
        }
    }
    engine.delete(&id)?;
    drop(engine);
    remove_cgroup_parent_dirs("zennet-demo");
    println!("container {id} removed");
    Ok(())
}

/// Removes the (empty) cgroup parent `name` and its zygote's group from
/// every hierarchy, waiting up to a second for the engine to let go.
fn remove_cgroup_parent_dirs(name: &str) {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    for n in [format!("{name}.zygote"), name.to_string()] {
        dirs.push(root.join(&n));
        if let Ok(rd) = std::fs::read_dir(root) {
            dirs.extend(rd.flatten().map(|e| e.path().join(&n)));
        }
    }
    for _ in 0..20 {
        dirs.retain(|d| d.exists() && std::fs::remove_dir(d).is_err());
        if dirs.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
