//! The control API on a system bus, as in the appliance: a private
//! `dbus-daemon` with the stock system policy plus
//! `agent/dbus/org.zennet.Agent1.conf`, the agent on it (`--dbus system`),
//! the clients as root and as two other users. The bus lets anyone read and
//! refuses uid 1 (`daemon`) the mutating methods; `nobody` (65534), let through by
//! an extra bus policy as a misconfigured bus would, is refused by the agent
//! itself (from `GetConnectionCredentials`). Needs root and Debian's dbus-daemon.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const PARENT: &str = "zt-ctlbus";

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zennet-agent"))
}

/// Children stopped with SIGTERM (then reaped), and the engine's groups removed.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
        for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for name in [format!("{PARENT}.zygote"), PARENT.to_string()] {
                let _ = std::fs::remove_dir(ctl.path().join(name));
            }
        }
    }
}

/// The stock system bus policy (as /usr/share/dbus-1/system.conf) listening on `sock`, plus ours.
fn bus_config(sock: &Path) -> String {
    let ours = concat!(env!("CARGO_MANIFEST_DIR"), "/dbus/org.zennet.Agent1.conf");
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{ours}</include>
  <policy user="nobody">
    <allow send_destination="org.zennet.Agent1"/>
  </policy>
</busconfig>
"#,
        sock.display()
    )
}

/// The client as root (`uid` None) or as `uid` with the same gid and no groups.
fn client(addr: &str, args: &[&str], uid: Option<u32>) -> Output {
    let mut c = if let Some(u) = uid {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={u}")).arg(format!("--regid={u}")).arg("--clear-groups").arg(exe());
        c
    } else {
        Command::new(exe())
    };
    c.args(args).args(["--dbus", "system"]).env("DBUS_SYSTEM_BUS_ADDRESS", addr).env("RUST_BACKTRACE", "0").output().unwrap()
}

fn stdout_ok(o: &Output) -> String {
    assert!(o.status.success(), "client failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn system_bus_policy_lets_anyone_read_and_only_root_change() {
    assert!(nix::unistd::geteuid().is_root(), "agent tests need root");
    assert!(Path::new("/usr/bin/dbus-daemon").exists(), "dbus-daemon missing: apt-get install dbus-daemon");
    let dir = tempfile::Builder::new().prefix("zt-bus-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.path().join("bus.conf");
    std::fs::write(&conf, bus_config(&dir.path().join("bus"))).unwrap();
    let mut procs = Procs(Vec::new());
    let mut bus = Command::new("dbus-daemon").arg(format!("--config-file={}", conf.display())).args(["--nofork", "--print-address"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut addr = String::new();
    BufReader::new(bus.stdout.take().unwrap()).read_line(&mut addr).unwrap();
    procs.0.push(bus);
    let addr = addr.trim().to_string();
    assert!(addr.starts_with("unix:"), "dbus-daemon: {addr:?}");

    let state = dir.path().join("state");
    let err = dir.path().join("agent.err");
    let mut agent = Command::new(exe())
        .args(["run", "--no-network", "--cgroup-parent", PARENT, "--dbus", "system", "--state-dir"])
        .arg(&state)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &addr)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut agent_out = BufReader::new(agent.stdout.take().unwrap());
    agent_out.read_line(&mut ready).unwrap();
    procs.0.push(agent);
    assert!(ready.contains("control=system"), "{ready} {}", std::fs::read_to_string(&err).unwrap_or_default());
    let address = ready.trim().rsplit("address=").next().unwrap();

    let st: serde_json::Value = serde_json::from_str(&stdout_ok(&client(&addr, &["status", "--json"], Some(1)))).unwrap();
    assert_eq!((st["address"].as_str(), st["state"].as_str()), (Some(address), Some("accepting")), "anyone reads the status");
    assert!(stdout_ok(&client(&addr, &["contracts", "--json"], Some(1))).trim() == "[]");
    for args in [&["pause"][..], &["set-price", "9"], &["drain"]] {
        let o = client(&addr, args, Some(1));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("AccessDenied"), "uid 1 {args:?}: {e}");
        // Let through by the bus, refused by the agent.
        let o = client(&addr, args, Some(65534));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("refused: caller uid 65534"), "nobody {args:?}: {e}");
    }
    stdout_ok(&client(&addr, &["pause"], None));
    let st: serde_json::Value = serde_json::from_str(&stdout_ok(&client(&addr, &["status", "--json"], None))).unwrap();
    assert_eq!(st["state"], "paused");
}
