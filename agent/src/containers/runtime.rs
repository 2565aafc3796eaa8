//! The operations the zygote performs, one container at a time: create
//! (disk, overlay root, libcontainer, network), start, exec (with or without
//! a pty), signal, freeze/thaw, delete (which tears down everything the
//! container owns), usage, and recovery of what a crashed agent left.
//!
//! Every resource a container owns is named after its id, so teardown is
//! idempotent and recovery can find everything from the id alone.

use super::cgroups::{self, CgroupPaths};
use super::network::{Attachment, Network};
use super::oci::{self, CgroupMode, OciInput, RootLayers};
use super::proto::{ContainerInfo, ExecRequest, Status};
use super::rootfs::{self, Disk};
use super::EngineConfig;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zennet_protocol::{UsageComponent, UsageVector};

/// What the engine persists about a container, beside libcontainer's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Container id.
    pub id: String,
    /// Who rents it.
    pub tenant: String,
    /// The spec it was made from.
    pub spec: zennet_protocol::ContainerSpec,
    /// Creating until every resource exists; then Created/Running.
    pub status: Status,
    /// Creation time, ns since the epoch.
    pub created_ns: u64,
    /// Host pid of init.
    pub pid: Option<i32>,
    /// Network attachment, when networking is on.
    pub net: Option<Attachment>,
    /// Loop device of the writable layer (e.g. `loop3`): its block
    /// statistics are the container's disk io.
    #[serde(default)]
    pub loop_dev: Option<String>,
    /// The loop device's counters when the container became ready: setting
    /// up the filesystem is not the container's io.
    #[serde(default)]
    pub io_base: [u64; 4],
}

struct Tracked {
    meta: Meta,
    exit_code: Option<i32>,
    /// Memory integral: (last sample time ns, last bytes, byte-ns so far).
    mem: (u64, u64, u128),
}

/// The zygote's view of every container it owns.
pub struct Runtime {
    cfg: EngineConfig,
    mode: CgroupMode,
    net: Option<Network>,
    containers: HashMap<String, Tracked>,
    execs: HashSet<i32>,
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Checks a container id: 1 to 48 characters of `[a-z0-9-]`, not starting with `-`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 48 || id.starts_with('-') || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("container id {id:?} is invalid: use 1 to 48 characters of [a-z0-9-], not starting with '-'"));
    }
    Ok(())
}

impl Runtime {
    /// Opens the engine's state, sets up networking, and recovers: adopts
    /// every complete, live container and removes everything else it owns.
    /// Returns the runtime and (adopted, removed) ids.
    pub fn open(cfg: EngineConfig) -> Result<(Runtime, Vec<String>, Vec<String>), String> {
        for d in [cfg.containers_dir(), cfg.youki_root()] {
            fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        // The container's root (an unprivileged host uid) must reach the base
        // and its writable layer through every parent directory.
        for d in [cfg.bases_dir.clone(), cfg.containers_dir()] {
            for a in d.ancestors() {
                if let Ok(md) = fs::metadata(a) {
                    use std::os::unix::fs::PermissionsExt;
                    if md.permissions().mode() & 0o001 == 0 {
                        return Err(format!(
                            "{} (mode {:o}) is not searchable by the containers' unprivileged uids, so {} cannot be used: give it o+x or choose another directory",
                            a.display(), md.permissions().mode() & 0o7777, d.display()
                        ));
                    }
                }
            }
        }
        let mode = cgroups::detect_mode();
        match cgroups::claim_zygote_group(mode, &cfg.cgroup_parent) {
            Ok(0) => {}
            Ok(n) => tracing::warn!("killed {n} processes a previous engine left mid-create"),
            Err(e) => return Err(format!("zygote cgroup for {}: {e}", cfg.cgroup_parent)),
        }
        let net = match &cfg.network {
            Some(nc) => Some(Network::setup(nc.clone()).map_err(|e| format!("network setup: {e}"))?),
            None => None,
        };
        let mut rt = Runtime { cfg, mode, net, containers: HashMap::new(), execs: HashSet::new() };
        let (adopted, removed) = rt.recover();
        Ok((rt, adopted, removed))
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.containers_dir().join(id)
    }

    fn cgroup(&self, id: &str) -> CgroupPaths {
        CgroupPaths::new(self.mode, &self.cfg.cgroup_parent, id)
    }

    fn save_meta(&self, meta: &Meta) -> Result<(), String> {
        let dir = self.dir(&meta.id);
        let tmp = dir.join("meta.json.tmp");
        let body = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
        fs::write(&tmp, body).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, dir.join("meta.json")).map_err(|e| format!("rename meta of {}: {e}", meta.id))
    }

    fn load_container(&self, id: &str) -> Result<Container, String> {
        Container::load(self.cfg.youki_root().join(id)).map_err(|e| format!("container {id}: {e}"))
    }

    /// Creates container `id` from `spec`; its init will run `args`.
    pub fn create(&mut self, id: &str, spec: zennet_protocol::ContainerSpec, args: Vec<String>) -> Result<ContainerInfo, String> {
        validate_id(id)?;
        spec.validate(&self.cfg.capacity).map_err(|e| e.to_string())?;
        if args.is_empty() {
            return Err("init args are empty: give the program to run".into());
        }
        let base = rootfs::base_path(&self.cfg.bases_dir, &spec.base).map_err(|e| e.to_string())?;
        let dir = self.dir(id);
        if self.containers.contains_key(id) || dir.exists() {
            return Err(format!("container {id} already exists"));
        }
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let meta = Meta { id: id.into(), tenant: spec.tenant.clone(), spec: spec.clone(), status: Status::Creating, created_ns: now_ns(), pid: None, net: None, loop_dev: None, io_base: [0; 4] };
        if let Err(e) = self.save_meta(&meta) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        match self.build(meta, &base, &args) {
            Ok(info) => Ok(info),
            Err(e) => {
                self.teardown(id);
                Err(format!("create {id}: {e}"))
            }
        }
    }

    fn build(&mut self, mut meta: Meta, base: &Path, args: &[String]) -> Result<ContainerInfo, String> {
        let id = meta.id.clone();
        let dir = self.dir(&id);
        let disk = Disk::at(&dir);
        meta.loop_dev = Some(disk.create(meta.spec.disk_bytes).map_err(|e| e.to_string())?);
        if let Some(net) = &self.net {
            let resolv: String = net.config().dns_allow.iter().map(|ip| format!("nameserver {ip}\n")).collect();
            let etc = disk.upper().join("etc");
            fs::create_dir_all(&etc).map_err(|e| format!("mkdir {}: {e}", etc.display()))?;
            fs::write(etc.join("resolv.conf"), resolv).map_err(|e| format!("write resolv.conf: {e}"))?;
            rootfs::shift_ownership(&etc).map_err(|e| e.to_string())?;
        }
        let mountpoint = dir.join("rootfs");
        let bundle = dir.join("bundle");
        for d in [&mountpoint, &bundle] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        let cg = self.cgroup(&id);
        let spec_json = oci::runtime_spec(&OciInput {
            id: &id,
            spec: &meta.spec,
            args,
            layers: RootLayers { base, upper: &disk.upper(), work: &disk.work(), mountpoint: &mountpoint },
            cgroup_path: &cg.oci_path(),
            cgroup_mode: self.mode,
        });
        fs::write(bundle.join("config.json"), serde_json::to_vec(&spec_json).map_err(|e| e.to_string())?)
            .map_err(|e| format!("write config.json: {e}"))?;
        let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("init.log")).map_err(|e| format!("open init.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let null = fs::File::open("/dev/null").map_err(|e| e.to_string())?;
        let container = ContainerBuilder::new(id.clone(), SyscallType::Linux)
            .with_root_path(self.cfg.youki_root())
            .map_err(|e| e.to_string())?
            .with_stdin(OwnedFd::from(null))
            .with_stdout(OwnedFd::from(log))
            .with_stderr(OwnedFd::from(log2))
            .validate_id()
            .map_err(|e| e.to_string())?
            .with_executor(super::exec::CleanSignals)
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| format!("libcontainer create: {e}"))?;
        let pid = container.pid().map(|p| p.as_raw()).ok_or("libcontainer gave no init pid")?;
        meta.pid = Some(pid);
        cg.set_io_weight(meta.spec.io_weight);
        if let Some(net) = &self.net {
            meta.net = Some(net.attach(&id, &meta.tenant, pid).map_err(|e| e.to_string())?);
        } else {
            super::loopback::up(pid)?;
        }
        if let Some(d) = meta.loop_dev.as_deref().and_then(|d| cgroups::read_disk(d).ok()) {
            meta.io_base = [d.read_bytes, d.write_bytes, d.read_ops, d.write_ops];
        }
        meta.status = Status::Created;
        self.save_meta(&meta)?;
        let info = self.info_of(&meta, None);
        self.containers.insert(id, Tracked { meta, exit_code: None, mem: (now_ns(), 0, 0) });
        Ok(info)
    }

    fn tracked(&mut self, id: &str) -> Result<&mut Tracked, String> {
        self.containers.get_mut(id).ok_or_else(|| format!("no container {id}"))
    }

    /// Starts a created container.
    pub fn start(&mut self, id: &str) -> Result<(), String> {
        self.tracked(id)?;
        let mut c = self.load_container(id)?;
        c.start().map_err(|e| format!("start {id}: {e}"))?;
        let t = self.tracked(id)?;
        t.meta.status = Status::Running;
        let meta = t.meta.clone();
        self.save_meta(&meta)
    }

    /// Starts a process inside a running container. Returns its host pid and
    /// the descriptors to hand to the caller.
    pub fn exec(&mut self, req: ExecRequest) -> Result<(i32, Vec<OwnedFd>), String> {
        let id = req.id.clone();
        let t = self.tracked(&id)?;
        if t.meta.status != Status::Running {
            return Err(format!("container {id} is {:?}, not running", t.meta.status));
        }
        if req.args.is_empty() {
            return Err("exec args are empty".into());
        }
        let pid = t.meta.pid.ok_or_else(|| format!("container {id} has no init pid"))?;
        let tenant_env = t.meta.spec.env.clone();
        let config = oci_spec::runtime::Spec::load(self.dir(&id).join("bundle/config.json")).map_err(|e| format!("container {id} config: {e}"))?;
        let proc_ = config.process().as_ref();
        let linux = config.linux().as_ref();
        let mut env = proc_.and_then(|p| p.env().clone()).unwrap_or_default();
        env.extend(tenant_env);
        for kv in &req.env {
            if !kv.contains('=') || kv.starts_with('=') {
                return Err(format!("exec env entry {kv:?} is not KEY=VALUE"));
            }
            env.push(kv.clone());
        }
        let plan = super::exec::ExecPlan {
            init_pid: pid,
            cgroup_procs: self.cgroup(&id).procs_files(),
            caps: proc_.and_then(|p| p.capabilities().clone()),
            seccomp: linux.and_then(|l| l.seccomp().clone()),
            args: req.args,
            env,
            cwd: req.cwd.unwrap_or_else(|| "/".into()),
            tty: req.tty,
            builtin: req.builtin,
        };
        let (xpid, fds) = super::exec::spawn(&plan).map_err(|e| format!("exec in {id}: {e}"))?;
        self.execs.insert(xpid);
        Ok((xpid, fds))
    }

    /// Sends `signal` to every process of the container.
    pub fn signal(&mut self, id: &str, signal: i32) -> Result<(), String> {
        self.tracked(id)?;
        let sig = nix::sys::signal::Signal::try_from(signal).map_err(|_| format!("signal {signal} is not a signal"))?;
        let mut c = self.load_container(id)?;
        c.kill(sig, true).map_err(|e| format!("signal {id}: {e}"))
    }

    /// Freezes (`true`) or thaws every process of the container.
    pub fn freeze(&mut self, id: &str, freeze: bool) -> Result<(), String> {
        self.tracked(id)?;
        let mut c = self.load_container(id)?;
        if freeze { c.pause() } else { c.resume() }.map_err(|e| format!("{} {id}: {e}", if freeze { "freeze" } else { "thaw" }))?;
        let t = self.tracked(id)?;
        t.meta.status = if freeze { Status::Paused } else { Status::Running };
        let meta = t.meta.clone();
        self.save_meta(&meta)
    }

    /// Kills and removes a container and everything it owns.
    pub fn delete(&mut self, id: &str) -> Result<(), String> {
        validate_id(id)?;
        if !self.containers.contains_key(id) && !self.dir(id).exists() {
            return Err(format!("no container {id}"));
        }
        self.teardown(id);
        Ok(())
    }

    /// Removes every trace of container `id`, whatever state it is in.
    /// Idempotent; never fails half-way (each step is attempted).
    pub fn teardown(&mut self, id: &str) {
        let pid = self.containers.get(id).and_then(|t| t.meta.pid);
        // Kill through the cgroup first: it also reaches a libcontainer
        // intermediate process whose pid no state file records.
        let cg = self.cgroup(id);
        cgroups::kill_all(&cg);
        let youki_dir = self.cfg.youki_root().join(id);
        if youki_dir.exists() {
            if let Ok(c) = self.load_container(id) {
                if let Some(p) = c.pid() {
                    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                    reap(p.as_raw(), Duration::from_secs(5));
                }
            }
            // Not libcontainer's delete: it would rebuild a cgroup manager
            // (hundreds of procfs syscalls) to remove the cgroups the engine
            // removes below, and run hooks we never set.
            let _ = fs::remove_dir_all(&youki_dir);
        }
        if let Some(p) = pid {
            reap(p, Duration::from_secs(5));
        }
        let _ = cgroups::remove(&cg);
        if let Some(net) = &self.net {
            if let Err(e) = net.detach(id) {
                tracing::warn!(id, "network detach: {e}");
            }
        }
        let dir = self.dir(id);
        if let Err(e) = Disk::at(&dir).destroy() {
            tracing::warn!(id, "disk: {e}");
        }
        let _ = fs::remove_dir_all(&dir);
        self.containers.remove(id);
    }

    fn info_of(&self, meta: &Meta, exit_code: Option<i32>) -> ContainerInfo {
        ContainerInfo {
            id: meta.id.clone(),
            tenant: meta.tenant.clone(),
            status: meta.status,
            pid: meta.pid,
            ip: meta.net.as_ref().map(|n| n.ip),
            exit_code,
            created_ns: meta.created_ns,
        }
    }

    /// One container's state.
    pub fn state(&self, id: &str) -> Result<ContainerInfo, String> {
        let t = self.containers.get(id).ok_or_else(|| format!("no container {id}"))?;
        Ok(self.info_of(&t.meta, t.exit_code))
    }

    /// Every container's state, sorted by id.
    pub fn list(&self) -> Vec<ContainerInfo> {
        let mut v: Vec<ContainerInfo> = self.containers.values().map(|t| self.info_of(&t.meta, t.exit_code)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Cumulative usage of `ids` (every container when empty), in one pass.
    pub fn usage(&mut self, ids: &[String]) -> Result<Vec<(String, UsageVector)>, String> {
        let ids: Vec<String> = if ids.is_empty() { let mut v: Vec<String> = self.containers.keys().cloned().collect(); v.sort(); v } else { ids.to_vec() };
        let mut out = Vec::with_capacity(ids.len());
        let now = now_ns();
        for id in ids {
            let cg = self.cgroup(&id);
            let t = self.containers.get_mut(&id).ok_or_else(|| format!("no container {id}"))?;
            let c = cg.read().unwrap_or_default();
            let (last_t, last_b, acc) = t.mem;
            let dt = now.saturating_sub(last_t) as u128;
            // Trapezoid rule between samples.
            let acc = acc + (last_b as u128 + c.memory_bytes as u128) * dt / 2;
            t.mem = (now, c.memory_bytes, acc);
            let mut u = UsageVector::zero();
            u.set(UsageComponent::CpuUserNs, c.cpu_user_ns);
            u.set(UsageComponent::CpuSystemNs, c.cpu_system_ns);
            u.set(UsageComponent::MemByteSeconds, (acc / 1_000_000_000) as u64);
            if let Some(d) = t.meta.loop_dev.as_deref().and_then(|d| cgroups::read_disk(d).ok()) {
                let b = t.meta.io_base;
                u.set(UsageComponent::IoReadBytes, d.read_bytes.saturating_sub(b[0]));
                u.set(UsageComponent::IoWriteBytes, d.write_bytes.saturating_sub(b[1]));
                u.set(UsageComponent::IoReadOps, d.read_ops.saturating_sub(b[2]));
                u.set(UsageComponent::IoWriteOps, d.write_ops.saturating_sub(b[3]));
            }
            if let (Some(net), Some(att)) = (&self.net, &t.meta.net) {
                if let Ok((rx, tx)) = net.counters(att) {
                    u.set(UsageComponent::NetRxBytes, rx);
                    u.set(UsageComponent::NetTxBytes, tx);
                }
            }
            u.set(UsageComponent::WallNs, now.saturating_sub(t.meta.created_ns));
            out.push((id, u));
        }
        Ok(out)
    }

    /// Records a reaped child. Returns the event to report, if it was ours.
    pub fn on_exit(&mut self, pid: i32, code: i32) -> Option<super::proto::Event> {
        if self.execs.remove(&pid) {
            return Some(super::proto::Event::ExecExited { pid, code });
        }
        let t = self.containers.values_mut().find(|t| t.meta.pid == Some(pid))?;
        t.exit_code = Some(code);
        t.meta.status = Status::Stopped;
        Some(super::proto::Event::ContainerExited { id: t.meta.id.clone(), code: Some(code) })
    }

    /// Adopts complete, live containers; removes everything else the engine
    /// owns (state dirs, libcontainer dirs, cgroups, mounts, network).
    fn recover(&mut self) -> (Vec<String>, Vec<String>) {
        let (mut adopted, mut removed) = (Vec::new(), Vec::new());
        let mut ids: Vec<String> = fs::read_dir(self.cfg.containers_dir()).into_iter().flatten().flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        ids.sort();
        for id in ids {
            let meta: Option<Meta> = fs::read(self.dir(&id).join("meta.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let live = meta.as_ref().is_some_and(|m| {
                m.status != Status::Creating
                    && m.pid.is_some_and(pid_alive)
                    && self.load_container(&id).is_ok()
                    && Disk::at(&self.dir(&id)).is_mounted()
            });
            match meta {
                Some(meta) if live => {
                    self.containers.insert(id.clone(), Tracked { meta, exit_code: None, mem: (now_ns(), 0, 0) });
                    adopted.push(id);
                }
                _ => {
                    self.teardown(&id);
                    removed.push(id);
                }
            }
        }
        // Anything owned by id but without a state dir: a crash before meta.json.
        let mut orphans: HashSet<String> = fs::read_dir(self.cfg.youki_root()).into_iter().flatten().flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        orphans.extend(cgroups::list_ids(self.mode, &self.cfg.cgroup_parent));
        for id in orphans {
            if !self.containers.contains_key(&id) && validate_id(&id).is_ok() {
                self.teardown(&id);
                if !removed.contains(&id) {
                    removed.push(id);
                }
            }
        }
        if let Some(net) = &self.net {
            let keep: Vec<String> = self.containers.keys().cloned().collect();
            match net.reconcile(&keep) {
                Ok(ids) => {
                    for id in ids {
                        if !removed.contains(&id) {
                            removed.push(id);
                        }
                    }
                }
                Err(e) => tracing::warn!("network reconcile: {e}"),
            }
        }
        (adopted, removed)
    }

    /// Runs a ready bundle to completion (create, start, wait, delete), as
    /// `runc run` does; used to compare runtimes on the same bundle.
    pub fn run_bundle(&mut self, id: &str, bundle: &Path) -> Result<i32, String> {
        validate_id(id)?;
        let null = || fs::OpenOptions::new().read(true).write(true).open("/dev/null").map(OwnedFd::from).map_err(|e| e.to_string());
        let mut c = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(self.cfg.youki_root())
            .map_err(|e| e.to_string())?
            .with_stdin(null()?)
            .with_stdout(null()?)
            .with_stderr(null()?)
            .with_executor(super::exec::CleanSignals)
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| format!("libcontainer create: {e}"))?;
        let pid = c.pid().ok_or("no init pid")?;
        let started = c.start().map_err(|e| format!("start {id}: {e}"));
        let code = match waitpid(pid, None) {
            Ok(ws) => exit_code(ws).map(|(_, c)| c).unwrap_or(-1),
            Err(_) => -1,
        };
        // The engine removes the cgroups (short retries; libcontainer's own
        // removal sleeps 10 ms whenever the exiting task still pins a group)
        // and the state directory itself, as `teardown` does.
        if let Ok(yc) = c.spec() {
            let _ = cgroups::remove(&CgroupPaths::from_oci_path(self.mode, &yc.cgroup_path.to_string_lossy()));
        }
        let _ = fs::remove_dir_all(self.cfg.youki_root().join(id));
        started.map(|_| code)
    }

    /// Removes every container (agent shutdown with `--remove-on-exit`, tests).
    pub fn remove_all(&mut self) {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            self.teardown(&id);
        }
    }

    /// Tears down the network (bridge and firewall tables) too.
    pub fn shutdown(mut self) {
        self.remove_all();
        if let Some(net) = self.net.take() {
            if let Err(e) = net.teardown() {
                tracing::warn!("network teardown: {e}");
            }
        }
    }
}

/// True when `pid` exists and is not a zombie.
fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// Waits for `pid` to die: reaps it if it is our child, else polls /proc.
fn reap(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return,
            Err(_) => {
                if !pid_alive(pid) {
                    return;
                }
            }
        }
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Maps a wait status to a shell-style exit code.
pub fn exit_code(ws: WaitStatus) -> Option<(i32, i32)> {
    match ws {
        WaitStatus::Exited(p, c) => Some((p.as_raw(), c)),
        WaitStatus::Signaled(p, s, _) => Some((p.as_raw(), 128 + s as i32)),
        _ => None,
    }
}
