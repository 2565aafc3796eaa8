//! cgroup paths and counters of the engine's containers, in both modes:
//! v1/hybrid (this host) and pure v2 (the appliance). libcontainer creates
//! and limits the cgroups; this module reads them fast (a few small files per
//! container) and removes any the engine owns but no longer knows.

use super::oci::CgroupMode;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Root of the cgroup filesystem.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers whose hierarchies hold a per-container directory.
pub const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "blkio", "freezer", "devices", "cpuset", "net_cls", "net_prio", "hugetlb", "perf_event", "systemd"];

/// Detects the host's mode: v2 when the unified hierarchy is mounted at the root.
pub fn detect_mode() -> CgroupMode {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        CgroupMode::V2
    } else {
        CgroupMode::V1
    }
}

/// Counters read from a container's cgroup in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupCounters {
    /// User cpu time, ns.
    pub cpu_user_ns: u64,
    /// System cpu time, ns.
    pub cpu_system_ns: u64,
    /// Memory in use now, bytes.
    pub memory_bytes: u64,
}

/// Block io of one device, from `/sys/block/<dev>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations completed.
    pub read_ops: u64,
    /// Write operations completed.
    pub write_ops: u64,
}

/// Reads a block device's counters. A container's writable layer has a loop
/// device of its own, so its statistics are exactly the container's disk io
/// in both cgroup modes (v1 cannot attribute buffered writeback at all).
pub fn read_disk(dev: &str) -> io::Result<DiskCounters> {
    let s = fs::read_to_string(Path::new("/sys/block").join(dev).join("stat"))?;
    let f: Vec<u64> = s.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    if f.len() < 7 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("/sys/block/{dev}/stat has {} fields", f.len())));
    }
    Ok(DiskCounters { read_ops: f[0], read_bytes: f[2] * 512, write_ops: f[4], write_bytes: f[6] * 512 })
}

/// The cgroups of one container, by group name `zennet/<id>` under a parent.
#[derive(Debug, Clone)]
pub struct CgroupPaths {
    mode: CgroupMode,
    rel: String,
}

impl CgroupPaths {
    /// The cgroups at an OCI `cgroupsPath` such as `/zennet/<id>`.
    pub fn from_oci_path(mode: CgroupMode, oci_path: &str) -> Self {
        Self { mode, rel: oci_path.trim_start_matches('/').to_string() }
    }

    /// The cgroups of container `id` under parent group `parent` (e.g. `zennet`).
    pub fn new(mode: CgroupMode, parent: &str, id: &str) -> Self {
        Self { mode, rel: format!("{parent}/{id}") }
    }

    /// `cgroupsPath` for the OCI spec.
    pub fn oci_path(&self) -> String {
        format!("/{}", self.rel)
    }

    /// Directory of a v1 controller (ignored on v2).
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self.mode {
            CgroupMode::V2 => Path::new(CGROUP_ROOT).join(&self.rel),
            CgroupMode::V1 => Path::new(CGROUP_ROOT).join(controller).join(&self.rel),
        }
    }

    /// Every directory the container has, one per hierarchy.
    pub fn all_dirs(&self) -> Vec<PathBuf> {
        match self.mode {
            CgroupMode::V2 => vec![self.dir("")],
            CgroupMode::V1 => V1_CONTROLLERS.iter().map(|c| self.dir(c)).collect(),
        }
    }

    /// True when any of the container's cgroup directories exists.
    pub fn exists(&self) -> bool {
        match self.mode {
            CgroupMode::V2 => self.dir("").exists(),
            CgroupMode::V1 => V1_CONTROLLERS.iter().any(|c| self.dir(c).exists()),
        }
    }

    /// `cgroup.procs` of every hierarchy the container has a group in
    /// (writing a pid there moves that process into the container's cgroups).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self.mode {
            CgroupMode::V2 => vec![self.dir("").join("cgroup.procs")],
            CgroupMode::V1 => V1_CONTROLLERS.iter().map(|c| self.dir(c).join("cgroup.procs")).filter(|p| p.exists()).collect(),
        }
    }

    /// Reads cpu and memory counters.
    pub fn read(&self) -> io::Result<CgroupCounters> {
        let mut c = CgroupCounters::default();
        match self.mode {
            CgroupMode::V1 => {
                let acct = self.dir("cpuacct");
                c.cpu_user_ns = read_u64(&acct.join("cpuacct.usage_user"))?;
                c.cpu_system_ns = read_u64(&acct.join("cpuacct.usage_sys"))?;
                c.memory_bytes = read_u64(&self.dir("memory").join("memory.usage_in_bytes"))?;
            }
            CgroupMode::V2 => {
                let dir = self.dir("");
                let cpu = fs::read_to_string(dir.join("cpu.stat"))?;
                for l in cpu.lines() {
                    let mut it = l.split_whitespace();
                    match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
                        (Some("user_usec"), Some(v)) => c.cpu_user_ns = v * 1000,
                        (Some("system_usec"), Some(v)) => c.cpu_system_ns = v * 1000,
                        _ => {}
                    }
                }
                c.memory_bytes = read_u64(&dir.join("memory.current"))?;
            }
        }
        Ok(c)
    }

    /// Sets the io weight (1..=10000, v2 scale) where the kernel offers one
    /// (BFQ on v1, io.weight or io.bfq.weight on v2). Returns whether it applied.
    pub fn set_io_weight(&self, weight: u16) -> bool {
        let candidates: Vec<(PathBuf, u64)> = match self.mode {
            CgroupMode::V1 => {
                let v1 = (weight as u64 * 1000 / 10000).clamp(10, 1000);
                vec![(self.dir("blkio").join("blkio.bfq.weight"), v1.min(1000)), (self.dir("blkio").join("blkio.weight"), v1)]
            }
            CgroupMode::V2 => vec![(self.dir("").join("io.weight"), weight as u64), (self.dir("").join("io.bfq.weight"), (weight as u64).min(1000))],
        };
        candidates.into_iter().any(|(p, v)| p.exists() && fs::write(&p, v.to_string()).is_ok())
    }
}

fn read_u64(p: &Path) -> io::Result<u64> {
    let s = fs::read_to_string(p)?;
    s.trim().parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))
}

/// The group that holds the zygote and, through it, every process it
/// clones before that process has a container cgroup of its own (libcontainer's
/// intermediate and init processes while a create is in flight). A new zygote
/// kills whatever a dead one left in it: a create cut short by SIGKILL leaves
/// an intermediate process that would otherwise wait forever.
pub fn zygote_group(mode: CgroupMode, parent: &str) -> PathBuf {
    match mode {
        CgroupMode::V2 => Path::new(CGROUP_ROOT).join(format!("{parent}.zygote")),
        CgroupMode::V1 => Path::new(CGROUP_ROOT).join("pids").join(format!("{parent}.zygote")),
    }
}

/// Pays the kernel's cgroup-migration grace period ahead of a create.
///
/// Moving a task between cgroups takes `cgroup_threadgroup_rwsem` for
/// writing; when no migration happened in the last grace period, the writer
/// first waits a full RCU grace period (measured here: about 8 ms, most of a
/// container's create). Every writer that arrives while one is waiting shares
/// that same grace period. So, when a create is requested, a thread of the
/// agent re-writes the zygote's pid into the zygote's own group (a no-op
/// move) while the zygote parses the spec and forks; by the time
/// libcontainer's intermediate process joins the container's cgroups, the
/// grace period is over or nearly so.
pub struct Primer {
    tx: std::sync::mpsc::Sender<()>,
}

impl Primer {
    /// Starts the priming thread for the zygote `pid` in group `parent.zygote`.
    pub fn start(mode: CgroupMode, parent: &str, pid: i32) -> Option<Primer> {
        let procs = zygote_group(mode, parent).join("cgroup.procs");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("cgroup-primer".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    // Only while the zygote is still in its group (its pid
                    // cannot have been reused by a process outside it).
                    let member = fs::read_to_string(&procs).is_ok_and(|p| p.lines().any(|l| l.trim() == pid.to_string()));
                    if member {
                        let _ = fs::write(&procs, pid.to_string());
                    }
                }
            })
            .ok()?;
        Some(Primer { tx })
    }

    /// Asks for a grace period now (returns at once).
    pub fn prime(&self) {
        let _ = self.tx.send(());
    }
}

/// Kills every process but this one in the zygote group, then joins it.
/// Returns how many stale processes were killed.
pub fn claim_zygote_group(mode: CgroupMode, parent: &str) -> io::Result<usize> {
    let dir = zygote_group(mode, parent);
    fs::create_dir_all(&dir)?;
    let me = std::process::id() as i32;
    let mut killed = 0;
    for _ in 0..50 {
        let pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))?.lines().filter_map(|p| p.trim().parse().ok()).filter(|p| *p != me).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid read from our own group.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fs::write(dir.join("cgroup.procs"), me.to_string())?;
    Ok(killed)
}

/// Ids of every container cgroup under `parent` in any hierarchy.
pub fn list_ids(mode: CgroupMode, parent: &str) -> Vec<String> {
    let dirs: Vec<PathBuf> = match mode {
        CgroupMode::V2 => vec![Path::new(CGROUP_ROOT).join(parent)],
        CgroupMode::V1 => V1_CONTROLLERS.iter().map(|c| Path::new(CGROUP_ROOT).join(c).join(parent)).collect(),
    };
    let mut ids: Vec<String> = dirs
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Kills every process in the container's cgroups (thawing them first, or
/// frozen tasks could not die). Idempotent.
pub fn kill_all(paths: &CgroupPaths) {
    // Only the files this mode has: each failed open costs a path walk.
    match paths.mode {
        CgroupMode::V1 => {
            let _ = fs::write(paths.dir("freezer").join("freezer.state"), "THAWED");
        }
        CgroupMode::V2 => {
            let d = paths.dir("");
            let _ = fs::write(d.join("cgroup.freeze"), "0");
            if fs::write(d.join("cgroup.kill"), "1").is_ok() {
                return;
            }
        }
    }
    // v1 (or v2 before 5.14): signal every task of every hierarchy; a task
    // stranded mid-create may have joined only some of them.
    for d in paths.all_dirs() {
        if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with a pid read from the cgroup; no memory is touched.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Kills every process in the container's cgroups and removes them
/// (children first). Idempotent.
pub fn remove(paths: &CgroupPaths) -> io::Result<()> {
    kill_all(paths);
    for d in &paths.all_dirs() {
        rmdir_tree(d)?;
    }
    Ok(())
}

fn rmdir_tree(d: &Path) -> io::Result<()> {
    // The common case is a leaf group: try rmdir first, and list the
    // directory (d_type only, no stat per file) only when it refuses.
    match fs::remove_dir(d) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    // A cgroup whose last task is still exiting refuses rmdir for a moment:
    // retry in short steps (up to about a second).
    let mut last = Ok(());
    for i in 0..1000u32 {
        last = fs::remove_dir(d);
        match &last {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => std::thread::sleep(std::time::Duration::from_micros(if i < 50 { 100 } else { 2000 })),
        }
    }
    last
}

