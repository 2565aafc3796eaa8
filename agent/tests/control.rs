//! The control API from outside, as a provider uses it: the real
//! `zennet-agent run` (no chain), its thin clients as separate processes
//! (one as `nobody`), the introspection against
//! `agent/dbus/org.zennet.Agent1.xml`, the metrics endpoint through a
//! Prometheus text parser, settings and address across restarts, a corrupt
//! configuration and a database from a newer agent. Needs root.

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
        let err = state.with_extension("err");
        let mut child = Command::new(exe())
            .args(["run", "--no-network", "--cgroup-parent", PARENT, "--metrics-listen", "127.0.0.1:0", "--state-dir"])
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

/// Removes the engine's groups however the test ends.
struct Groups;

impl Drop for Groups {
    fn drop(&mut self) {
        for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for name in [format!("{PARENT}.zygote"), PARENT.to_string()] {
                let _ = std::fs::remove_dir(ctl.path().join(name));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(PARENT));
    }
}

/// `zennet-agent ARGS --state-dir STATE`, as root or (with `nobody`) as uid/gid 65534 without groups.
fn client(state: &Path, args: &[&str], nobody: bool) -> Output {
    let mut c = if nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(exe());
        c
    } else {
        Command::new(exe())
    };
    c.args(args).arg("--state-dir").arg(state).env("RUST_BACKTRACE", "0").output().unwrap()
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
    let _groups = Groups;
    let dir = tempfile::Builder::new().prefix("zt-ctl-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");

    let agent = Agent::start(&state, &[]).unwrap();
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
    let nobody_status: serde_json::Value = serde_json::from_str(&ok(&client(&state, &["status", "--json"], true))).unwrap();
    assert_eq!(nobody_status["state"], "accepting");

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
    // Recalibrate with no contract running is scheduled for the next start.
    assert!(ok(&client(&state, &["recalibrate"], false)).contains("next start"));
    ok(&client(&state, &["drain"], false));
    assert_eq!(status(&state)["state"], "drained", "no contract runs: the drain is done");
    ok(&client(&state, &["pause"], false));
    let log = agent.stop();
    let key = std::fs::read_to_string(state.join("identity.key")).unwrap();
    assert!(!log.contains(key.trim()), "the secret was logged");

    // Restarted (without the calibration it asked for: clear the request
    // first, a full calibration takes a minute): same address, still
    // paused, price and limits kept.
    {
        let store = zennet_agent::store::Store::open(&zennet_agent::store::Store::path_in(&state)).unwrap();
        let mut s = store.control_settings().unwrap();
        assert!(s.recalibrate && s.paused && s.price_per_second == Some(2500));
        s.recalibrate = false;
        store.put_control_settings(&s).unwrap();
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
    std::fs::write(&cfg, format!("[agent]\nlog_level = \"info\"\nlog_file = \"{}\"\nlog_max_bytes = 4096\n[market]\naccept_work = false\n", log_file.display())).unwrap();
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
