//! Helpers of the network integration tests: a Network under test, stand-in
//! containers, test netns "hosts", web servers, all removed on drop.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use zennet_agent::containers::network::{default_blocked, NetConfig, Network};

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

pub fn quiet(cmd: &str) {
    let _ = sh(&format!("{{ {cmd}; }} >/dev/null 2>&1"));
}

pub fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}

/// A Network under test with its own names; torn down (and brute-force
/// cleaned) on drop.
pub struct Env {
    n: u8,
    pub cfg: NetConfig,
    pub net: Option<Network>,
    _dir: tempfile::TempDir,
}

impl Env {
    pub fn new(n: u8, dns_allow: Vec<Ipv4Addr>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NetConfig {
            bridge: format!("znt{n}"),
            subnet: format!("100.{}.0.0/24", 90 + n).parse().unwrap(),
            nft_table: format!("znt{n}"),
            state_dir: dir.path().join("net"),
            blocked: default_blocked(),
            dns_allow,
        };
        // Leftovers of an earlier, killed run.
        quiet(&format!(
            "ip link del znt{n}; nft delete table ip znt{n}; nft delete table bridge znt{n}"
        ));
        let net = Network::setup(cfg.clone()).expect("setup");
        Env {
            n,
            cfg,
            net: Some(net),
            _dir: dir,
        }
    }

    pub fn net(&self) -> &Network {
        self.net.as_ref().unwrap()
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.cfg.gateway()
    }

    /// `nft list set` output of one of the agent's sets.
    pub fn set(&self, family: &str, set: &str) -> String {
        let out = sh(&format!(
            "nft list set {family} {} {set}",
            self.cfg.nft_table
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            if let Err(e) = net.teardown() {
                eprintln!("teardown failed: {e}");
            }
        }
        let n = self.n;
        quiet(&format!(
            "ip link del znt{n}; nft delete table ip znt{n}; nft delete table bridge znt{n}"
        ));
        for ns in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = ns.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("zn-t{n}-")) {
                quiet(&format!("ip netns del {name}"));
            }
        }
    }
}

/// A stand-in container: a process in a new user + net namespace.
pub struct StandIn {
    child: Child,
}

impl StandIn {
    pub fn new() -> StandIn {
        let child = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--net",
                "--fork",
                "--kill-child",
                "sleep",
                "600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let s = StandIn { child };
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let theirs = std::fs::read_link(format!("/proc/{}/ns/net", s.pid()));
            let mapped =
                std::fs::read_to_string(format!("/proc/{}/uid_map", s.pid())).unwrap_or_default();
            if matches!(&theirs, Ok(t) if *t != ours) && !mapped.trim().is_empty() {
                return s;
            }
            assert!(Instant::now() < deadline, "stand-in never unshared");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `cmd` run inside the stand-in's user and net namespaces.
    pub fn cmd(&self, cmd: &str) -> String {
        format!(
            "nsenter -t {} -n -U --preserve-credentials {cmd}",
            self.pid()
        )
    }

    pub fn sh(&self, cmd: &str) -> Output {
        sh(&self.cmd(cmd))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A background process, killed on drop.
pub struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A web server answering "ok" on /ok.txt, started behind `prefix` (e.g. a
/// netns entry command); its verbose log (client addresses) goes to `log`.
pub fn httpd(prefix: &str, ip: Ipv4Addr, port: u16, dir: &Path, log: &Path) -> Bg {
    std::fs::write(dir.join("ok.txt"), "ok\n").unwrap();
    let cmd = format!(
        "exec {prefix} busybox httpd -f -vv -p {ip}:{port} -h {} 2>>{}",
        dir.display(),
        log.display()
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    Bg(child)
}

pub fn fetch_cmd(ip: Ipv4Addr, port: u16) -> String {
    format!("timeout 2 busybox wget -q -O - http://{ip}:{port}/ok.txt")
}

pub fn got_ok(out: &Output) -> bool {
    out.status.success() && out.stdout == b"ok\n"
}

/// A test netns "host" behind its own veth from the host: host side
/// `host_ip/24`, netns side `peer_ip/24` on eth0, no default route.
pub struct Peer {
    ns: String,
    veth: String,
}

impl Peer {
    pub fn new(ns: &str, veth: &str, host_ip: Ipv4Addr, peer_ip: Ipv4Addr) -> Peer {
        quiet(&format!("ip netns del {ns}; ip link del {veth}"));
        let p = Peer {
            ns: ns.into(),
            veth: veth.into(),
        };
        let out = sh(&format!(
            "ip netns add {ns} && ip link add {veth} type veth peer name eth0 netns {ns} && \
             ip link set {veth} addrgenmode none && ip addr add {host_ip}/24 dev {veth} && ip link set {veth} up && \
             ip -n {ns} link set lo up && ip -n {ns} link set eth0 addrgenmode none && \
             ip -n {ns} addr add {peer_ip}/24 dev eth0 && ip -n {ns} link set eth0 up"
        ));
        assert!(
            out.status.success(),
            "peer {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    }

    pub fn prefix(&self) -> String {
        format!("ip netns exec {}", self.ns)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        quiet(&format!(
            "ip netns del {}; ip link del {}",
            self.ns, self.veth
        ));
    }
}
