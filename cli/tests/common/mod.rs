//! What the end-to-end tests share: a one-node devnet (`xencoind --dev`)
//! and the binaries next to `zennet` in the target directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `xencoind --dev`; killed and reaped on drop.
pub struct Devnet {
    pub child: Child,
    pub rpc: String,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `xencoind` sits next to `zennet` in the target directory (`make test`
/// builds every binary first).
pub fn xencoind() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_zennet")).with_file_name("xencoind");
    assert!(p.exists(), "{} missing: build the workspace's binaries first (`cargo build --bins`)", p.display());
    p
}

pub fn devnet(data: &Path) -> Devnet {
    let mut child = Command::new(xencoind())
        .args(["--dev", "--rpc-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn xencoind");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let rpc = format!("http://{}", line.trim().rsplit("http://").next().unwrap());
    Devnet { child, rpc }
}

/// A binary of the workspace next to `zennet`.
pub fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_zennet")).with_file_name(name);
    assert!(p.exists(), "{} missing: build the workspace's binaries first (`cargo build --bins`)", p.display());
    p
}

/// The dev network's keys: (secret hex, address), by index.
pub fn dev_keys() -> Vec<(String, String)> {
    let out = Command::new(xencoind()).arg("dev-keys").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// Writes a key file (hex secret, mode 0600).
pub fn write_key(path: &Path, secret_hex: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    writeln!(f, "{secret_hex}").unwrap();
}

/// Whether this process runs as root (the agents' containers need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Removes the (empty) cgroup parents an agent's engine made under `parent`
/// in every hierarchy, and its zygote's group.
/// An agent that exits with contracts it could not settle keeps their
/// containers for adoption on its next start; a test has no next start, so
/// whatever still runs under the parent is killed and every group removed.
pub fn remove_cgroup_parent(parent: &str) {
    fn groups(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                groups(&e.path(), out);
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut all = Vec::new();
    for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        for name in [format!("{parent}.zygote"), parent.to_string()] {
            let d = ctl.path().join(name);
            if d.is_dir() {
                groups(&d, &mut all);
            }
        }
    }
    for _ in 0..50 {
        let mut busy = false;
        for g in &all {
            for pid in std::fs::read_to_string(g.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
                busy = true;
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        if !busy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Deepest first: `groups` lists children before their parent.
    for g in &all {
        let _ = std::fs::remove_dir(g);
    }
}

/// A running `zennet-agent run --rpc`; SIGTERM and reap on drop.
pub struct Agent {
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
    pub cgroup_parent: String,
    pub state: PathBuf,
    /// Kept open: the agent prints a line when it stops.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Agent {
    pub fn start(dir: &Path, i: usize, secret: &str, rpc: &str, extra: &[&str]) -> Agent {
        let state = dir.join(format!("agent{i}"));
        std::fs::create_dir_all(&state).unwrap();
        let key = state.join("identity.key");
        if !key.exists() {
            write_key(&key, secret);
        }
        let log = dir.join(format!("agent{i}.log"));
        // Unique per test (its temp dir), the same across an agent's restarts.
        let tag: String = dir.file_name().unwrap().to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let cgroup_parent = format!("zennet-mkt-{tag}-{i}");
        let mut child = Command::new(bin("zennet-agent"))
            .arg("run")
            .arg("--state-dir")
            .arg(&state)
            .args(["--no-network", "--max-memory-mib", "64", "--cgroup-parent", &cgroup_parent])
            .args(["--rpc", rpc])
            .args(extra)
            .env("ZENNET_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("zennet-agent ready") && line.contains("market=on"), "agent {i}: {line:?} {}", std::fs::read_to_string(&log).unwrap_or_default());
        let address = line.trim().rsplit("address=").next().unwrap().to_string();
        Agent { child, address, log, cgroup_parent, state, _stdout: out }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Agent {
    /// Stops the agent and removes the (empty) cgroup parents its engine made.
    fn drop(&mut self) {
        self.stop();
        remove_cgroup_parent(&self.cgroup_parent);
        unmount_under(&self.state);
    }
}


/// A devnet in `d/chain`, the publisher's wallet (dev key 1) at
/// `d/publisher.key`, and `n` agents (dev keys 2, 3, ...).
pub fn devnet_wallet_agents(d: &Path, n: usize) -> (Devnet, PathBuf, Vec<Agent>) {
    let net = devnet(&d.join("chain"));
    let keys = dev_keys();
    let wallet = d.join("publisher.key");
    write_key(&wallet, &keys[1].0);
    let agents = (0..n).map(|i| Agent::start(d, i, &keys[2 + i].0, &net.rpc, &[])).collect();
    (net, wallet, agents)
}

/// Unmounts everything mounted below `dir` (deepest first): the disks of
/// containers an agent kept for adoption (their loop devices clear themselves).
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| Path::new(m).starts_with(dir)).collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = Command::new("umount").arg(m).status();
    }
}

/// `zennet` with this test's wallet, chain, HOME and publisher state dir
/// (the daemon lingers only 2 s without a fleet).
pub fn zennet(net: &Devnet, wallet: &Path, home: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("zennet")).arg("--wallet").arg(wallet).args(["--rpc", &net.rpc, "--state-dir"]).arg(state).args(args).env("HOME", home).env("ZENNET_DAEMON_IDLE_SECS", "2").output().unwrap()
}

/// Bytes as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
