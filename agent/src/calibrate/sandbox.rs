//! Where calibration runs execute and how their usage is read: the same
//! counters, components and order as a container's usage vector.
//!
//! - A cgroup per run, `zennet-calib/<run>` (v1/hybrid: cpuacct, memory and
//!   pids hierarchies; v2: one directory): cpu user/system time and memory
//!   in use. A process joins it in `pre_exec`, before it does any work.
//! - A scratch ext4 image on a loop device of its own (as a container's
//!   writable layer): its block statistics are the runs' disk io, exact in
//!   both cgroup modes (v1 attributes neither writeback nor loop io to the
//!   writer's blkio group).
//! - A private network namespace with only `lo`, held by a file descriptor:
//!   every benchmark process joins it in `pre_exec`, and its `lo` counters
//!   are the runs' network bytes (loopback traffic standing in for network
//!   traffic; a container's is counted on its veth).
//!
//! Everything created is removed by [`Sandbox::close`] (and by `Drop`):
//! processes killed, cgroups removed, the image unmounted and deleted, the
//! namespace released with its last process.

use crate::containers::cgroups::{self, CgroupPaths};
use crate::containers::oci::CgroupMode;
use crate::containers::rootfs::Disk;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;
use zennet_protocol::{UsageComponent, UsageVector};

/// The cgroup parent of calibration runs.
pub const CGROUP_PARENT: &str = "zennet-calib";
/// v1 hierarchies a run's cgroup is made in.
const V1_USED: &[&str] = &["cpuacct", "memory", "pids"];
/// Size of the scratch disk (sparse).
const DISK_BYTES: u64 = 1 << 30;

/// Sandbox errors, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file or system call on a named path failed.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// The scratch disk could not be made.
    #[error("scratch disk at {path}: {reason}")]
    Disk { path: PathBuf, reason: String },
    /// The network namespace could not be made.
    #[error("network namespace: {0}")]
    Netns(io::Error),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SandboxError + 'a {
    move |source| SandboxError::Io { what, path: path.to_path_buf(), source }
}

/// Raw cumulative counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Raw {
    at: Option<Instant>,
    cpu_user_ns: u64,
    cpu_system_ns: u64,
    memory_bytes: u64,
    disk: [u64; 4],
    net: [u64; 2],
    /// User cpu time of the whole machine (every process), ns.
    machine_user_ns: u64,
}

/// User cpu time (user + nice) of the whole machine from /proc/stat, ns.
/// User time only: kernel threads working for a run (loop device io,
/// network softirqs) are system time and must not count as someone else's.
fn machine_user_ns() -> u64 {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(l) = s.lines().next() else { return 0 };
    let f: Vec<u64> = l.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    if f.len() < 8 {
        return 0;
    }
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (f[0] + f[1]) * (1_000_000_000 / hz)
}

/// The scratch disk, the network namespace and the cgroup parent shared by
/// one calibration's runs.
pub struct Sandbox {
    mode: CgroupMode,
    dir: PathBuf,
    disk: Disk,
    loop_dev: String,
    netns: OwnedFd,
    own_netns: OwnedFd,
    runs: u32,
    closed: bool,
}

impl Sandbox {
    /// Makes the scratch disk under `dir` (created, and removed by close),
    /// the network namespace and the cgroup parent.
    pub fn create(dir: &Path) -> Result<Sandbox, SandboxError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let mode = cgroups::detect_mode();
        remove_stale(mode);
        let disk = Disk { image: dir.join("scratch.img"), mountpoint: dir.join("scratch") };
        // A calibration killed outright in this directory left its disk mounted.
        let _ = disk.destroy();
        let loop_dev = disk.create(DISK_BYTES).map_err(|e| SandboxError::Disk { path: disk.image.clone(), reason: e.to_string() })?;
        let (own_netns, netns) = match make_netns() {
            Ok(v) => v,
            Err(e) => {
                let _ = disk.destroy();
                return Err(SandboxError::Netns(e));
            }
        };
        let sb = Sandbox { mode, dir: dir.to_path_buf(), disk, loop_dev, netns, own_netns, runs: 0, closed: false };
        if mode == CgroupMode::V2 {
            // memory.current needs the memory controller delegated down to the run.
            for d in [PathBuf::from(cgroups::CGROUP_ROOT), Path::new(cgroups::CGROUP_ROOT).join(CGROUP_PARENT)] {
                let _ = fs::create_dir_all(&d);
                let _ = fs::write(d.join("cgroup.subtree_control"), "+memory +pids");
            }
        }
        Ok(sb)
    }

    /// Directory benchmarks write their files in (on the scratch disk).
    pub fn scratch(&self) -> PathBuf {
        self.disk.upper()
    }

    /// Starts a run: a fresh cgroup its processes will join.
    pub fn start_run(&mut self) -> Result<Run, SandboxError> {
        self.runs += 1;
        let id = format!("run-{}-{}", std::process::id(), self.runs);
        let paths = CgroupPaths::new(self.mode, CGROUP_PARENT, &id);
        let dirs: Vec<PathBuf> = match self.mode {
            CgroupMode::V2 => vec![paths.dir("")],
            CgroupMode::V1 => V1_USED.iter().map(|c| paths.dir(c)).collect(),
        };
        let mut procs = Vec::new();
        for d in &dirs {
            fs::create_dir_all(d).map_err(io_err("create cgroup", d))?;
            let p = d.join("cgroup.procs");
            procs.push(OpenOptions::new().write(true).open(&p).map_err(io_err("open", &p))?);
        }
        let mut run = Run { paths, procs, netns: self.netns.try_clone().map_err(SandboxError::Netns)?, own_netns: self.own_netns.try_clone().map_err(SandboxError::Netns)?, loop_dev: self.loop_dev.clone(), first: Raw::default(), last: Raw::default(), mem_acc: 0, samples: 0 };
        run.first = run.read();
        run.last = run.first;
        Ok(run)
    }

    /// Removes everything the sandbox made. Idempotent.
    pub fn close(&mut self) -> Result<(), SandboxError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mut first_err = None;
        for id in cgroups::list_ids(self.mode, CGROUP_PARENT) {
            if let Err(e) = cgroups::remove(&CgroupPaths::new(self.mode, CGROUP_PARENT, &id)) {
                first_err.get_or_insert(SandboxError::Io { what: "remove cgroup", path: PathBuf::from(&id), source: e });
            }
        }
        remove_parent(self.mode);
        if let Err(e) = self.disk.destroy() {
            first_err.get_or_insert(SandboxError::Disk { path: self.disk.image.clone(), reason: e.to_string() });
        }
        let _ = fs::remove_dir(&self.disk.mountpoint);
        let _ = fs::remove_dir(&self.dir);
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Removes the run cgroups of calibrations whose process is gone (killed
/// outright: SIGKILL leaves no chance to clean up). Their stress-ng
/// processes died with them (parent-death signal).
fn remove_stale(mode: CgroupMode) {
    for id in cgroups::list_ids(mode, CGROUP_PARENT) {
        let pid: Option<i32> = id.strip_prefix("run-").and_then(|r| r.split('-').next()).and_then(|p| p.parse().ok());
        // SAFETY: kill(2) with signal 0 only checks that the pid exists.
        let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH));
        if !alive {
            let _ = cgroups::remove(&CgroupPaths::new(mode, CGROUP_PARENT, &id));
        }
    }
}

/// Removes the (empty) calibration parent group in every hierarchy.
fn remove_parent(mode: CgroupMode) {
    let dirs: Vec<PathBuf> = match mode {
        CgroupMode::V2 => vec![Path::new(cgroups::CGROUP_ROOT).join(CGROUP_PARENT)],
        CgroupMode::V1 => cgroups::V1_CONTROLLERS.iter().map(|c| Path::new(cgroups::CGROUP_ROOT).join(c).join(CGROUP_PARENT)).collect(),
    };
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// True when any calibration cgroup exists (the leak check of tests).
pub fn leftover_cgroups() -> Vec<PathBuf> {
    let mode = cgroups::detect_mode();
    let dirs: Vec<PathBuf> = match mode {
        CgroupMode::V2 => vec![Path::new(cgroups::CGROUP_ROOT).join(CGROUP_PARENT)],
        CgroupMode::V1 => cgroups::V1_CONTROLLERS.iter().map(|c| Path::new(cgroups::CGROUP_ROOT).join(c).join(CGROUP_PARENT)).collect(),
    };
    dirs.into_iter().filter(|d| d.exists()).collect()
}

/// Creates a network namespace with `lo` up, without moving this process:
/// returns (this thread's namespace, the new one).
fn make_netns() -> io::Result<(OwnedFd, OwnedFd)> {
    let own: OwnedFd = File::open("/proc/thread-self/ns/net")?.into();
    // SAFETY: unshare(2) of the network namespace affects only this thread;
    // it is undone by setns below on every path.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let made = File::open("/proc/thread-self/ns/net").map(OwnedFd::from);
    let up = if made.is_ok() { lo_up() } else { Ok(()) };
    // SAFETY: setns(2) back to the namespace we came from, by a valid fd.
    let back = unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) };
    if back != 0 {
        return Err(io::Error::last_os_error());
    }
    up?;
    Ok((own, made?))
}

/// Sets `lo` up in the current thread's network namespace.
fn lo_up() -> io::Result<()> {
    // SAFETY: a plain socket and SIOC[GS]IFFLAGS ioctls on a zeroed ifreq we own.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        let e = io::Error::last_os_error();
        libc::close(s);
        if rc != 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// `lo` rx and tx bytes of the namespace `ns`, read by entering it briefly
/// on this thread.
fn netns_lo_bytes(ns: &OwnedFd, own: &OwnedFd) -> [u64; 2] {
    // SAFETY: setns(2) on valid namespace fds; we return to `own` before leaving.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return [0, 0];
    }
    let s = fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
    // SAFETY: as above.
    unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) };
    for l in s.lines() {
        let Some((name, rest)) = l.split_once(':') else { continue };
        if name.trim() == "lo" {
            let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
            if f.len() >= 9 {
                return [f[0], f[8]];
            }
        }
    }
    [0, 0]
}

/// One run's cgroup and counters.
pub struct Run {
    paths: CgroupPaths,
    procs: Vec<File>,
    netns: OwnedFd,
    own_netns: OwnedFd,
    loop_dev: String,
    first: Raw,
    last: Raw,
    /// Integral of memory in use, byte-nanoseconds.
    mem_acc: u128,
    samples: u32,
}

impl Run {
    fn read(&self) -> Raw {
        let c = self.paths.read().unwrap_or_default();
        let d = cgroups::read_disk(&self.loop_dev).unwrap_or_default();
        Raw {
            at: Some(Instant::now()),
            cpu_user_ns: c.cpu_user_ns,
            cpu_system_ns: c.cpu_system_ns,
            memory_bytes: c.memory_bytes,
            disk: [d.read_bytes, d.write_bytes, d.read_ops, d.write_ops],
            net: netns_lo_bytes(&self.netns, &self.own_netns),
            machine_user_ns: machine_user_ns(),
        }
    }

    /// Spawns `cmd` so that it joins this run's cgroup and the sandbox's
    /// network namespace before it executes, and dies with its parent.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child, SandboxError> {
        let fds: Vec<i32> = self.procs.iter().map(|f| f.as_raw_fd()).collect();
        let ns = self.netns.as_raw_fd();
        // SAFETY: the closure calls only async-signal-safe functions (write,
        // setns, prctl) on descriptors opened before the fork; no allocation.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn().map_err(|e| SandboxError::Io { what: "spawn", path: PathBuf::from(cmd.get_program()), source: e })
    }

    /// Takes one sample: the memory integral advances by the trapezoid rule.
    pub fn sample(&mut self) {
        let now = self.read();
        let dt = match (self.last.at, now.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_nanos(),
            _ => 0,
        };
        self.mem_acc += (self.last.memory_bytes as u128 + now.memory_bytes as u128) * dt / 2;
        self.last = now;
        self.samples += 1;
    }

    /// Cpu time (user + system) of the run at the latest sample, ns.
    pub fn cpu_ns(&self) -> u64 {
        self.last.cpu_user_ns + self.last.cpu_system_ns
    }

    /// Memory in use by the run at the latest sample, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.last.memory_bytes
    }

    /// Starts the run's counters again from now: what ran so far (a memory
    /// holder filling its memory) is not part of the run's usage.
    pub fn rebase(&mut self) {
        self.first = self.read();
        self.last = self.first;
        self.mem_acc = 0;
    }

    /// At the latest sample: (instant, user cpu ns of the whole machine,
    /// user cpu ns of this run), to tell how much other processes took.
    pub fn cpu_mark(&self) -> (Instant, u64, u64) {
        (self.last.at.unwrap_or_else(Instant::now), self.last.machine_user_ns, self.last.cpu_user_ns)
    }

    /// Samples taken so far.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The usage since the run started, as a usage vector (same components
    /// and units as a container's).
    pub fn usage(&self) -> UsageVector {
        let (a, b) = (&self.first, &self.last);
        let mut u = UsageVector::zero();
        u.set(UsageComponent::CpuUserNs, b.cpu_user_ns.saturating_sub(a.cpu_user_ns));
        u.set(UsageComponent::CpuSystemNs, b.cpu_system_ns.saturating_sub(a.cpu_system_ns));
        u.set(UsageComponent::MemByteSeconds, (self.mem_acc / 1_000_000_000) as u64);
        u.set(UsageComponent::IoReadBytes, b.disk[0].saturating_sub(a.disk[0]));
        u.set(UsageComponent::IoWriteBytes, b.disk[1].saturating_sub(a.disk[1]));
        u.set(UsageComponent::IoReadOps, b.disk[2].saturating_sub(a.disk[2]));
        u.set(UsageComponent::IoWriteOps, b.disk[3].saturating_sub(a.disk[3]));
        u.set(UsageComponent::NetRxBytes, b.net[0].saturating_sub(a.net[0]));
        u.set(UsageComponent::NetTxBytes, b.net[1].saturating_sub(a.net[1]));
        let wall = match (a.at, b.at) {
            (Some(x), Some(y)) => y.duration_since(x).as_nanos() as u64,
            _ => 0,
        };
        u.set(UsageComponent::WallNs, wall);
        u
    }

    /// Kills whatever is left in the run's cgroup and removes it.
    pub fn finish(self) -> Result<(), SandboxError> {
        cgroups::remove(&self.paths).map_err(|e| SandboxError::Io { what: "remove cgroup", path: self.paths.dir("memory"), source: e })
    }
}
