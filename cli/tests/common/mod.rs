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
pub fn remove_cgroup_parent(parent: &str) {
    for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        for name in [format!("{parent}.zygote"), parent.to_string()] {
            let _ = std::fs::remove_dir(ctl.path().join(name));
        }
    }
}

/// A running `zennet-agent run --rpc`; SIGTERM and reap on drop.
pub struct Agent {
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
    pub cgroup_parent: String,
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
        Agent { child, address, log, cgroup_parent, _stdout: out }
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
