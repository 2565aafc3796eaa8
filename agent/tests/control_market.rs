//! The control API against the market: a devnet (`xencoind --dev`), one
//! agent, `zennet rent` as the publisher. Paused, the agent declines the
//! announcement; resumed, it is hired, and the D-Bus signals, the earnings
//! and the metrics move with the contract; while one runs the console
//! screen shows it and Recalibrate is refused; draining, it declines new
//! work and is `drained` once the running contract settles. Needs root and the
//! workspace's binaries (`cargo build --release --bins`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary next to `zennet-agent`.
fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_zennet-agent")).with_file_name(name);
    assert!(p.exists(), "{} missing: build the workspace's binaries first (`cargo build --release --bins`)", p.display());
    p
}

/// A child killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_key(path: &Path, secret_hex: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    writeln!(f, "{secret_hex}").unwrap();
}

fn ctl(state: &Path, args: &[&str]) -> String {
    let o = Command::new(bin("zennet-agent")).args(args).arg("--state-dir").arg(state).env("RUST_BACKTRACE", "0").output().unwrap();
    assert!(o.status.success(), "zennet-agent {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn status(state: &Path) -> serde_json::Value {
    serde_json::from_str(&ctl(state, &["status", "--json"])).unwrap()
}

fn scrape(addr: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn sample(body: &str, name: &str) -> f64 {
    let s = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    match s.samples.iter().find(|m| m.metric == name).unwrap_or_else(|| panic!("no {name} in {body}")).value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref o => panic!("{o:?}"),
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The signals seen by a client that listens for them in the background.
fn listen_signals(sock: PathBuf) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            use futures_util::StreamExt;
            let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            let conn = zbus::connection::Builder::unix_stream(s).p2p().build().await.unwrap();
            let mut msgs = zbus::MessageStream::from(&conn);
            while let Some(Ok(m)) = msgs.next().await {
                let h = m.header();
                if h.message_type() == zbus::message::Type::Signal && tx.send(h.member().map(|m| m.to_string()).unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
    });
    rx
}

/// However the test ends (after the agent is killed): kills what is left
/// in the engine's groups (containers of a contract still running when a
/// check failed), removes the groups, unmounts what is under the test's dir.
struct Cleanup {
    parent: String,
    dir: PathBuf,
}

/// Every directory under `d`, deepest first.
fn dirs_depth_first(d: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            dirs_depth_first(&e.path(), out);
        }
    }
    out.push(d.to_path_buf());
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut groups = Vec::new();
        for c in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for name in [format!("{}.zygote", self.parent), self.parent.clone()] {
                if c.path().join(&name).is_dir() {
                    dirs_depth_first(&c.path().join(name), &mut groups);
                }
            }
        }
        for g in &groups {
            for pid in std::fs::read_to_string(g.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let under: Vec<&str> = mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&*self.dir.to_string_lossy())).collect();
        for m in under.iter().rev() {
            let _ = nix::mount::umount2(*m, nix::mount::MntFlags::MNT_DETACH);
        }
        for g in &groups {
            let _ = std::fs::remove_dir(g);
        }
    }
}

#[test]
fn pause_declines_resume_hires_drain_settles() {
    assert!(nix::unistd::geteuid().is_root(), "agent tests need root");
    let dir = tempfile::Builder::new().prefix("zt-ctlm-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let parent = format!("zt-ctlm-{}", std::process::id());
    let _cleanup = Cleanup { parent: parent.clone(), dir: dir.path().into() };

    // The devnet and its dev keys: 1 pays, 2 is the provider.
    let mut node = Command::new(bin("xencoind")).args(["--dev", "--rpc-addr", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("chain")).env("RUST_LOG", "warn").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _node = Reaped(node);
    let rpc = format!("http://{}", line.trim().rsplit("http://").next().unwrap());
    let keys: Vec<Vec<String>> = String::from_utf8(Command::new(bin("xencoind")).arg("dev-keys").output().unwrap().stdout).unwrap().lines().skip(1).map(|l| l.split_whitespace().map(String::from).collect()).collect();
    let wallet = dir.path().join("publisher.key");
    write_key(&wallet, &keys[1][1]);
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state).unwrap();
    write_key(&state.join("identity.key"), &keys[2][1]);

    let log = dir.path().join("agent.log");
    let mut agent = Command::new(bin("zennet-agent"))
        .args(["run", "--no-network", "--max-memory-mib", "64", "--cgroup-parent", &parent, "--metrics-listen", "127.0.0.1:0", "--rpc", &rpc, "--state-dir"])
        .arg(&state)
        .env("ZENNET_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(agent.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    let _agent = Reaped(agent);
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ready.contains("market=on"), "{ready} {}", agent_log());
    let metrics_at = ready.split_whitespace().find_map(|w| w.strip_prefix("metrics=")).unwrap().to_string();
    let rent = |args: &[&str]| {
        let mut c = Command::new(bin("zennet"));
        c.args(["rent", "--foreground"]).arg("--wallet").arg(&wallet).args(["--rpc", &rpc, "--json", "--interval-ms", "1000", "-n", "1", "-m", "64M"]).args(args);
        c
    };

    // Paused: the announcement is declined, nobody serves the publisher.
    ctl(&state, &["pause"]);
    let o = rent(&["--timeout", "4"]).output().unwrap();
    assert!(!o.status.success(), "hired while paused: {}", String::from_utf8_lossy(&o.stdout));
    assert!(agent_log().contains("declined announcement") && agent_log().contains("paused"), "{}", agent_log());

    // Resumed: hired; signals, earnings and metrics move with the contract.
    ctl(&state, &["resume"]);
    let signals = listen_signals(state.join("agent.bus"));
    std::thread::sleep(Duration::from_millis(300));
    let o = rent(&["--duration", "4"]).output().unwrap();
    assert!(o.status.success(), "rent after resume: {}\n{}", String::from_utf8_lossy(&o.stderr), agent_log());
    wait_for("the contract to settle", Duration::from_secs(30), || status(&state)["active_contracts"] == 0 && ctl(&state, &["contracts", "--json"]).contains("settled"));
    let seen: Vec<String> = signals.try_iter().collect();
    for s in ["ContractStarted", "Payment", "ContractEnded"] {
        assert!(seen.iter().any(|x| x == s), "no {s} signal in {seen:?}");
    }
    let earned = status(&state)["earnings"].as_u64().unwrap();
    assert!(earned > 0, "no earnings after a paid contract");
    let body = scrape(&metrics_at);
    assert_eq!(sample(&body, "zennet_earnings_base_units_total") as u64, earned);
    assert_eq!(sample(&body, "zennet_contracts"), 1.0);
    assert!(body.contains("zennet_usage_total{component=\"cpu_user_ns\"}"), "{body}");
    assert!(sample(&body, "zennet_chain_head_lag_milliseconds") >= 0.0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&ctl(&state, &["contracts", "--json"])).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["paid"].as_u64(), Some(earned));

    // SetPrice applies to new offers: priced far above the publisher's
    // ceiling, the agent's reserve is not met and it does not answer.
    ctl(&state, &["set-price", "1000000000000"]);
    let o = rent(&["--timeout", "4"]).output().unwrap();
    assert!(!o.status.success(), "hired above the ceiling");
    wait_for("the announcement below the new reserve", Duration::from_secs(5), || agent_log().contains("below the reserve"));
    ctl(&state, &["set-price", "1000"]);

    // Draining with a contract running: it runs to its end and settles;
    // meanwhile a new announcement is declined.
    let long_err = dir.path().join("rent.err");
    let mut long = Reaped(rent(&["--duration", "6"]).stdout(Stdio::piped()).stderr(std::fs::File::create(&long_err).unwrap()).spawn().unwrap());
    // Kept open to the end: the publisher prints its done line there.
    let mut long_out = BufReader::new(long.0.stdout.take().unwrap());
    let mut first = String::new();
    long_out.read_line(&mut first).unwrap();
    assert!(first.contains("ready"), "{first} {}", agent_log());
    // The metrics move with the running contract.
    wait_for("the running contract in the metrics", Duration::from_secs(10), || {
        let b = scrape(&metrics_at);
        sample(&b, "zennet_contracts_active") == 1.0 && sample(&b, "zennet_containers") == 1.0
    });
    let before = sample(&scrape(&metrics_at), "zennet_earnings_base_units_total");
    wait_for("earnings to grow while it runs", Duration::from_secs(10), || sample(&scrape(&metrics_at), "zennet_earnings_base_units_total") > before);
    // The console screen shows the running contract and the earnings, as the API has them.
    let open: Vec<serde_json::Value> = serde_json::from_str(&ctl(&state, &["contracts", "--json"])).unwrap();
    let id = open.iter().find(|c| c["state"] == "active").expect("an active contract")["id"].as_str().unwrap().to_string();
    let screen = ctl(&state, &["console", "--once"]);
    let shown: u64 = screen.lines().find_map(|l| l.strip_prefix("earnings")).and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(screen.contains("contracts    1 active, 2 in all") && screen.contains(&format!("{} active", &id[..16])) && shown > earned, "{screen}");
    // Recalibrate is refused while it runs (benchmarks would take its cpu).
    let o = Command::new(bin("zennet-agent")).args(["recalibrate", "--state-dir"]).arg(&state).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("refused while contracts are open"), "{o:?}");
    ctl(&state, &["drain"]);
    assert_eq!(status(&state)["state"], "draining");
    // (Another publisher in a directory of its own: one wallet and its
    // record cannot serve two processes.)
    std::fs::create_dir_all(dir.path().join("p2")).unwrap();
    let wallet2 = dir.path().join("p2/publisher.key");
    write_key(&wallet2, &keys[3][1]);
    let o = Command::new(bin("zennet")).args(["rent", "--foreground"]).arg("--wallet").arg(&wallet2).args(["--rpc", &rpc, "--json", "-n", "1", "-m", "64M", "--timeout", "4"]).output().unwrap();
    assert!(!o.status.success(), "hired while draining");
    let why = format!("the announcement declined while draining (rent: {})", String::from_utf8_lossy(&o.stderr));
    wait_for(&why, Duration::from_secs(5), || agent_log().contains("the provider is draining"));
    let mut rest = String::new();
    long_out.read_to_string(&mut rest).unwrap();
    assert!(long.0.wait().unwrap().success(), "the running contract did not finish cleanly: {}", std::fs::read_to_string(&long_err).unwrap_or_default());
    wait_for("drained", Duration::from_secs(30), || status(&state)["state"] == "drained");
    assert!(status(&state)["earnings"].as_u64().unwrap() > earned);
}
