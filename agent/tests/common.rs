//! Test fixture for the container engine: a private state dir, a busybox
//! base, a cgroup parent of its own, and a leak check. Needs root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use zennet_agent::containers::{network::NetConfig, rootfs, Engine, EngineConfig};
use zennet_protocol::spec::Capacity;

/// Container tests measure cpu and memory: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zennet-agent"))
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cfg: EngineConfig,
}

impl Fixture {
    /// A fixture named `name` (used for the cgroup parent), without networking.
    pub fn new(name: &str) -> Fixture {
        Self::with_network(name, None)
    }

    pub fn with_network(name: &str, network: Option<NetConfig>) -> Fixture {
        assert!(nix::unistd::geteuid().is_root(), "container tests need root");
        let dir = tempfile::Builder::new().prefix("zt-").tempdir_in("/var/tmp").unwrap();
        let bases = dir.path().join("bases");
        std::fs::create_dir_all(&bases).unwrap();
        rootfs::make_busybox_base(&bases.join("busybox"), Path::new("/bin/busybox")).unwrap();
        let cfg = EngineConfig {
            state_dir: dir.path().join("engine"),
            bases_dir: bases,
            cgroup_parent: format!("zt-{name}"),
            capacity: Capacity { memory_bytes: 1 << 30, cpu_millicores: 2000, pids_max: 1024, disk_bytes: 1 << 30 },
            network,
            keep_containers_on_exit: false,
        };
        Fixture { dir, cfg }
    }

    pub fn engine(&self) -> Engine {
        Engine::spawn(&exe(), &self.cfg).expect("start engine")
    }

    /// Everything the engine could leave behind, by kind; empty when clean.
    pub fn leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in [self.cfg.containers_dir(), self.cfg.youki_root()] {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    out.push(format!("state dir {}", e.path().display()));
                }
            }
        }
        let mode = zennet_agent::containers::cgroups::detect_mode();
        for id in zennet_agent::containers::cgroups::list_ids(mode, &self.cfg.cgroup_parent) {
            out.push(format!("cgroup {}/{id}", self.cfg.cgroup_parent));
        }
        let root = self.dir.path().to_string_lossy().to_string();
        for m in rootfs::mount_points() {
            if m.to_string_lossy().starts_with(&root) {
                out.push(format!("mount {}", m.display()));
            }
        }
        if let Some(net) = &self.cfg.network {
            let ports = std::path::Path::new("/sys/class/net").join(&net.bridge).join("brif");
            for e in std::fs::read_dir(&ports).into_iter().flatten().flatten() {
                out.push(format!("veth {} on {}", e.file_name().to_string_lossy(), net.bridge));
            }
            for e in std::fs::read_dir(&net.state_dir).into_iter().flatten().flatten() {
                out.push(format!("network record {}", e.path().display()));
            }
        }
        for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("zn-") && self.cfg.network.is_some() {
                out.push(format!("netns name {name}"));
            }
        }
        if let Ok(rd) = std::fs::read_dir("/sys/block") {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                    if b.trim().starts_with(&root) {
                        out.push(format!("loop device {} -> {}", e.file_name().to_string_lossy(), b.trim()));
                    }
                }
            }
        }
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Engines are dropped before the fixture; make sure nothing stays mounted
        // under the temp dir so it can be removed.
        for m in rootfs::mount_points() {
            if m.starts_with(self.dir.path()) {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let mode = zennet_agent::containers::cgroups::detect_mode();
        for id in zennet_agent::containers::cgroups::list_ids(mode, &self.cfg.cgroup_parent) {
            let _ = zennet_agent::containers::cgroups::remove(&zennet_agent::containers::cgroups::CgroupPaths::new(mode, &self.cfg.cgroup_parent, &id));
        }
        for c in zennet_agent::containers::cgroups::V1_CONTROLLERS {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(&self.cfg.cgroup_parent));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cfg.cgroup_parent));
        let _ = std::fs::remove_dir(zennet_agent::containers::cgroups::zygote_group(mode, &self.cfg.cgroup_parent));
    }
}

/// A container network of a test's own (bridge, subnet, nft table, records
/// under `dir`), so it never meets a real agent's or another test's.
pub fn test_net(dir: &Path, bridge: &str, subnet: &str, table: &str) -> NetConfig {
    NetConfig {
        bridge: bridge.into(),
        subnet: subnet.parse().unwrap(),
        nft_table: table.into(),
        state_dir: dir.join("net"),
        blocked: zennet_agent::containers::network::default_blocked(),
        dns_allow: vec![],
    }
}

/// Runs `sh -c script` in container `id`; returns (code, stdout, stderr).
pub fn sh(e: &Engine, id: &str, script: &str) -> (i32, String, String) {
    let o = e.exec_output(id, &["/bin/sh", "-c", script], b"", std::time::Duration::from_secs(60)).expect("exec");
    (o.code, String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}
