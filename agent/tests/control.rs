//! The control API from outside, as a provider uses it: the real
//! `zennet-agent run` (no chain), its thin clients as separate processes
//! (as `nobody`, and as a member of group `zennet`), the console screen,
//! a run-time Recalibrate, the introspection against
//! `agent/dbus/org.zennet.Agent1.xml`, the metrics endpoint through a
//! Prometheus text parser, settings and address across restarts, a corrupt
//! configuration, one key through every configuration layer and a database
//! from a newer agent. Needs root.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const PARENT: &str = "zt-control";

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zennet-agent"))
}

/// A running agent; SIGTERM and reap on drop.
struct Agent {
    child: Child,
    ready: String,
    stdout: BufReader<std::process::ChildStdout>,
    err: PathBuf,
}

impl Agent {
    fn start(state: &Path, extra: &[&str]) -> Result<Agent, String> {
        Agent::start_in(PARENT, state, extra)
    }

    /// An agent whose engine lives under cgroup `parent` (one per test: tests run in parallel).
    fn start_in(parent: &str, state: &Path, extra: &[&str]) -> Result<Agent, String> {
        let err = state.with_extension("err");
        let mut child = Command::new(exe())
            .args(["run", "--no-network", "--cgroup-parent", parent, "--metrics-listen", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .args(extra)
            .env("ZENNET_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        if !ready.starts_with("zennet-agent ready") {
            let _ = child.wait();
            return Err(std::fs::read_to_string(&err).unwrap_or_default());
        }
        Ok(Agent { child, ready, stdout, err })
    }

    fn field(&self, name: &str) -> String {
        self.ready.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("{name} in {}", self.ready)).to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let st = self.child.wait().unwrap();
        assert!(st.success(), "agent exit {st:?}: {}", self.log());
        self.log()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes an engine's groups (cgroup parent `.0`) however the test ends.
struct Groups(&'static str);

impl Drop for Groups {
    fn drop(&mut self) {
        let parent = self.0;
        for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for name in [format!("{parent}.zygote"), parent.to_string()] {
                let _ = std::fs::remove_dir(ctl.path().join(name));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(parent));
    }
}

/// `zennet-agent ARGS --state-dir STATE`, as root or (with `nobody`) as uid/gid 65534 without groups.
fn client(state: &Path, args: &[&str], nobody: bool) -> Output {
    if nobody {
        client_as(state, args, &["--reuid=65534", "--regid=65534", "--clear-groups"])
    } else {
        client_as(state, args, &[])
    }
}

/// The client under `setpriv CREDS` (none: as root).
fn client_as(state: &Path, args: &[&str], creds: &[&str]) -> Output {
    let mut c = if creds.is_empty() {
        Command::new(exe())
    } else {
        let mut c = Command::new("setpriv");
        c.args(creds).arg(exe());
        c
    };
    c.args(args).arg("--state-dir").arg(state).env("RUST_BACKTRACE", "0").output().unwrap()
}

/// Group `zennet` for the test's life: made with groupadd if missing (and then removed by groupdel).
struct ZennetGroup {
    gid: u32,
    made: bool,
}

impl ZennetGroup {
    fn get() -> ZennetGroup {
        let find = || nix::unistd::Group::from_name("zennet").unwrap().map(|g| g.gid.as_raw());
        if let Some(gid) = find() {
            return ZennetGroup { gid, made: false };
        }
        let st = Command::new("groupadd").args(["--system", "zennet"]).status().unwrap();
        assert!(st.success() || find().is_some(), "groupadd zennet: {st:?}");
        ZennetGroup { gid: find().expect("group zennet after groupadd"), made: true }
    }
}

impl Drop for ZennetGroup {
    fn drop(&mut self) {
        if self.made {
            let _ = Command::new("groupdel").arg("zennet").status();
        }
    }
}

/// Polls `status --json` until `done` holds (at most `secs` seconds).
fn wait_status(state: &Path, secs: u64, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let st = status(state);
        if done(&st) {
            return st;
        }
        assert!(std::time::Instant::now() < until, "status never settled: {st}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "client failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn status(state: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&client(state, &["status", "--json"], false))).unwrap()
}

/// The `<interface name="org.zennet.Agent1">` element of an introspection,
/// without comments, one tag per line.
fn agent_interface(xml: &str) -> Vec<String> {
    let start = xml.find("<interface name=\"org.zennet.Agent1\">").expect("the interface in the introspection");
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let mut rest = &xml[start..end];
    let mut bare = String::new();
    while let Some(i) = rest.find("<!--") {
        bare += &rest[..i];
        rest = rest[i..].find("-->").map_or("", |j| &rest[i + j + 3..]);
    }
    bare += rest;
    bare.replace('>', ">\n").lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// The served introspection, over the private socket.
fn served_introspection(sock: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        let conn = zbus::connection::Builder::unix_stream(s).p2p().build().await.unwrap();
        let p = zbus::fdo::IntrospectableProxy::builder(&conn).destination("org.zennet.Agent1").path("/org/zennet/Agent1").build().await.unwrap();
        p.introspect().await.unwrap()
    })
}

/// A scrape of `GET /metrics`, parsed.
fn scrape(addr: &str) -> prometheus_parse::Scrape {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap_or_else(|e| panic!("unparsable metrics: {e}\n{body}"))
}

fn metric(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    let m = s.samples.iter().find(|m| m.metric == name).unwrap_or_else(|| panic!("no {name}"));
    match m.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn control_api_drives_the_agent_and_survives_restarts() {
    assert!(nix::unistd::geteuid().is_root(), "agent tests need root");
    let _groups = Groups(PARENT);
    let dir = tempfile::Builder::new().prefix("zt-ctl-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");

    // The console screen before the agent is up says so, and exits 0 (init's loop goes on).
    let o = client(&state, &["console", "--once"], false);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("agent: starting…"), "{o:?}");

    // The quickest calibration the code allows (one run of 0.5 s) for Recalibrate.
    let agent = Agent::start(&state, &["--calibrate-quick", "--calibration-runs", "1", "--calibration-seconds", "0.5"]).unwrap();
    let address = agent.field("address");
    assert_eq!(agent.field("control"), state.join("agent.bus").display().to_string());
    let st = status(&state);
    assert_eq!((st["address"].as_str().unwrap(), st["state"].as_str().unwrap()), (address.as_str(), "accepting"), "{st}");
    assert_eq!(st["active_contracts"], 0);

    // The served interface is the one kept in the repository.
    let kept = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dbus/org.zennet.Agent1.xml")).unwrap();
    let served = served_introspection(&state.join("agent.bus"));
    if std::env::var_os("ZENNET_WRITE_DBUS_XML").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/dbus/org.zennet.Agent1.xml"), &served).unwrap();
    }
    assert_eq!(agent_interface(&served), agent_interface(&kept), "agent/dbus/org.zennet.Agent1.xml is out of date (regenerate: ZENNET_WRITE_DBUS_XML=1 cargo test --release -p zennet-agent --test control); served:\n{served}");

    // Metrics parse; the market's state is among them.
    let metrics_at = agent.field("metrics");
    let m = scrape(&metrics_at);
    assert_eq!(metric(&m, "zennet_market_state"), 0.0);
    assert_eq!(metric(&m, "zennet_contracts_active"), 0.0);
    assert_eq!(metric(&m, "zennet_earnings_base_units_total"), 0.0);
    assert_eq!(metric(&m, "zennet_calibration_age_seconds"), -1.0);
    assert!(m.samples.iter().filter(|s| s.metric == "zennet_usage_total").count() >= 10, "usage per component");

    // A caller that is neither root nor in group zennet reads, but changes nothing.
    let o = client(&state, &["pause"], true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("Pause refused") && err.contains("uid 65534"), "{err}");
    let o = client(&state, &["set-price", "5"], true);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("SetPrice refused"));
    let o = client(&state, &["recalibrate"], true);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Recalibrate refused"));
    let nobody_status: serde_json::Value = serde_json::from_str(&ok(&client(&state, &["status", "--json"], true))).unwrap();
    assert_eq!(nobody_status["state"], "accepting");

    // The console screen (as nobody: anyone reads) shows what the API says.
    let screen = ok(&client(&state, &["console", "--once"], true));
    for want in [format!("address      {address}"), "state        accepting".into(), "contracts    0 active, 0 in all".into(), "earnings     0 base units (0.00000000 XEN)".into(), "calibrated   never".into(), "price        1000 base units".into()] {
        assert!(screen.contains(&want), "{want:?} on the console screen:\n{screen}");
    }

    // Recalibrate runs now (a child calibration), and the summary changes;
    // a second one replaces the first record.
    assert_eq!(st["calibration"], serde_json::Value::Null);
    assert!(ok(&client(&state, &["recalibrate"], false)).contains("calibration started"));
    let cal = wait_status(&state, 180, |s| s["state"] != "calibrating" && !s["calibration"].is_null())["calibration"].clone();
    assert_eq!((cal["runs"].as_u64(), cal["price_per_second"].as_u64()), (Some(1), Some(1000)), "{cal}\n{}", agent.log());
    assert!(agent.log().contains("calibrated in"), "{}", agent.log());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(ok(&client(&state, &["recalibrate"], false)).contains("calibration started"));
    let again = wait_status(&state, 180, |s| s["state"] != "calibrating" && s["calibration"]["time_unix_s"] != cal["time_unix_s"])["calibration"].clone();
    assert!(again["time_unix_s"].as_u64() > cal["time_unix_s"].as_u64(), "{again}");
    assert!(ok(&client(&state, &["console", "--once"], false)).contains("calibrated   20"), "the screen shows the calibration");

    // Root pauses, sets the price and limits; bad values are refused by name.
    ok(&client(&state, &["pause"], false));
    assert_eq!(status(&state)["state"], "paused");
    assert_eq!(metric(&scrape(&metrics_at), "zennet_market_state"), 1.0);
    assert!(agent.log().contains("market paused"), "{}", agent.log());
    ok(&client(&state, &["set-price", "2500"], false));
    let o = client(&state, &["set-price", "0"], false);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("price_per_second = 0"));
    ok(&client(&state, &["set-limits", "--memory-mib", "1024", "--cpu-millicores", "500", "--disk-mib", "2048"], false));
    let o = client(&state, &["set-limits", "--memory-mib", "999999999", "--cpu-millicores", "500", "--disk-mib", "2048"], false);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("memory_bytes"), "{}", String::from_utf8_lossy(&o.stderr));
    let free = &status(&state)["capacity_free"];
    assert_eq!((free["memory_bytes"].as_u64(), free["cpu_millicores"].as_u64(), free["disk_bytes"].as_u64()), (Some(1 << 30), Some(500), Some(2 << 30)));
    assert_eq!(ok(&client(&state, &["contracts", "--json"], false)).trim(), "[]");
    assert!(ok(&client(&state, &["console", "--once"], false)).contains("state        paused"));
    ok(&client(&state, &["drain"], false));
    assert_eq!(status(&state)["state"], "drained", "no contract runs: the drain is done");
    ok(&client(&state, &["pause"], false));
    let log = agent.stop();
    let key = std::fs::read_to_string(state.join("identity.key")).unwrap();
    assert!(!log.contains(key.trim()), "the secret was logged");

    // Restarted: same address, still paused, price and limits kept (no
    // calibration is pending: the Recalibrates finished).
    {
        let store = zennet_agent::store::Store::open(&zennet_agent::store::Store::path_in(&state)).unwrap();
        let s = store.control_settings().unwrap();
        assert!(!s.recalibrate && s.paused && s.price_per_second == Some(2500), "{s:?}");
    }
    let agent = Agent::start(&state, &[]).unwrap();
    assert_eq!(agent.field("address"), address, "restart changed the address");
    let st = status(&state);
    assert_eq!(st["state"], "paused", "{st}");
    assert_eq!(st["capacity_free"]["cpu_millicores"], 500);
    ok(&client(&state, &["resume"], false));
    assert_eq!(status(&state)["state"], "accepting");
    agent.stop();

    // A corrupt configuration is refused naming the key; the agent serves on.
    let cfg = dir.path().join("zennet.toml");
    std::fs::write(&cfg, "[market]\nprice_per_second = \"cheap\"\n").unwrap();
    let agent = Agent::start(&state, &["--config", cfg.to_str().unwrap()]).unwrap();
    assert_eq!(agent.field("address"), address);
    let log = agent.stop();
    assert!(log.contains("configuration refused") && log.contains("market.price_per_second") && log.contains("cheap"), "{log}");

    // A valid configuration: it starts paused (`market.accept_work`) and
    // logs to a capped file as well as the console.
    let log_file = dir.path().join("logs/agent.log");
    std::fs::write(&cfg, format!("[agent]\nstate_dir = \"{}\"\nlog_level = \"info\"\nlog_file = \"{}\"\nlog_max_bytes = 4096\n[market]\naccept_work = false\n[chain]\nrpc = \"\"\n[calibration]\nmax_age_hours = 0\n", state.display(), log_file.display())).unwrap();
    let agent = Agent::start(&state, &["--config", cfg.to_str().unwrap()]).unwrap();
    assert_eq!(status(&state)["state"], "paused");
    for _ in 0..40 {
        assert!(!client(&state, &["resume"], true).status.success());
    }
    let console = agent.stop();
    let file = std::fs::read_to_string(&log_file).unwrap();
    assert!(file.contains("Resume refused: caller uid 65534") && console.contains("Resume refused"), "{file}");
    assert!(file.len() <= 4096 && std::fs::metadata(dir.path().join("logs/agent.log.1")).is_ok_and(|m| m.len() <= 4096), "the log file is capped and rotated");

    // A database written by a newer agent is refused, naming both versions.
    {
        let store = zennet_agent::store::Store::open(&zennet_agent::store::Store::path_in(&state)).unwrap();
        store.force_schema_version(zennet_agent::store::SCHEMA_VERSION + 7).unwrap();
    }
    let err = Agent::start(&state, &[]).err().expect("a newer database is refused");
    let (newer, ours) = (zennet_agent::store::SCHEMA_VERSION + 7, zennet_agent::store::SCHEMA_VERSION);
    assert!(err.contains(&format!("schema version {newer}")) && err.contains(&format!("this agent's {ours}")) && err.contains("agent.redb"), "{err}");
    assert!(!state.join("agent.bus").exists() || std::os::unix::net::UnixStream::connect(state.join("agent.bus")).is_err());
}

/// `market.price_per_second` through every layer: the file, the kernel
/// command line over it, SetPrice over both (and still after a restart);
/// and a member of group `zennet` may change the agent.
#[test]
fn configuration_layers_and_the_zennet_group() {
    const PARENT2: &str = "zt-control2";
    assert!(nix::unistd::geteuid().is_root(), "agent tests need root");
    let _groups = Groups(PARENT2);
    let group = ZennetGroup::get();
    let dir = tempfile::Builder::new().prefix("zt-ctl2-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let (cfg, cmdline) = (dir.path().join("zennet.toml"), dir.path().join("cmdline"));
    std::fs::write(&cfg, format!("[agent]\nstate_dir = \"{}\"\n[market]\nprice_per_second = 1500\n[chain]\nrpc = \"\"\n[calibration]\nmax_age_hours = 0\n[limits]\nmax_cpu_millicores = 700\n", state.display())).unwrap();
    std::fs::write(&cmdline, "quiet console=ttyS0\n").unwrap();
    let args = ["--config", cfg.to_str().unwrap(), "--kernel-cmdline", cmdline.to_str().unwrap()];
    let price = |state: &Path| status(state)["price_per_second"].as_u64();

    let agent = Agent::start_in(PARENT2, &state, &args).unwrap();
    assert_eq!(price(&state), Some(1500), "the file");
    assert_eq!(status(&state)["capacity_free"]["cpu_millicores"], 700, "limits.max_cpu_millicores caps what is sold");
    agent.stop();
    std::fs::write(&cmdline, "quiet zennet.market.price_per_second=2000 console=ttyS0\n").unwrap();
    let agent = Agent::start_in(PARENT2, &state, &args).unwrap();
    assert_eq!(price(&state), Some(2000), "the kernel command line over the file");

    // Group zennet, as the primary or a supplementary group, may change the agent; nobody may not.
    let (primary, supplementary) = (format!("--regid={}", group.gid), format!("--groups={}", group.gid));
    ok(&client_as(&state, &["set-price", "2500"], &["--reuid=65534", primary.as_str(), "--clear-groups"]));
    assert_eq!(price(&state), Some(2500), "D-Bus over the kernel command line");
    ok(&client_as(&state, &["pause"], &["--reuid=65534", "--regid=65534", supplementary.as_str()]));
    assert_eq!(status(&state)["state"], "paused");
    let o = client(&state, &["resume"], true);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Resume refused"));
    ok(&client_as(&state, &["resume"], &["--reuid=65534", "--regid=65534", supplementary.as_str()]));
    assert_eq!(status(&state)["state"], "accepting");
    agent.stop();

    // SetPrice persisted: it stays in force over the file and the command line.
    let agent = Agent::start_in(PARENT2, &state, &args).unwrap();
    assert_eq!(price(&state), Some(2500), "the persisted D-Bus setting after a restart");
    agent.stop();
}
