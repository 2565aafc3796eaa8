//! The container engine.
//!
//! The agent holds an [`Engine`]: a client of the zygote process that alone
//! calls youki's libcontainer (see [`zygote`]). Each concern has its module:
//! - [`oci`]: a [`ContainerSpec`] becomes an OCI runtime spec; [`seccomp`]: the default profile;
//! - [`rootfs`] and [`loopdev`]: shared bases and the quota-capped writable layer;
//! - [`cgroups`]: counters in v1/hybrid and v2 modes, orphan removal;
//! - [`network`]: veth, bridge, NAT and isolation rules; [`loopback`]: `lo` without them;
//! - [`runtime`]: the operations, teardown and crash recovery;
//! - [`proto`]: the typed messages between agent and zygote.

pub mod cgroups;
pub mod exec;
pub mod loopback;
pub mod loopdev;
pub mod network;
pub mod oci;
pub mod proto;
pub mod rootfs;
pub mod runtime;
pub mod seccomp;
pub mod zygote;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use proto::{ContainerInfo, Event, ExecRequest, FromZygote, Request, Response, ToZygote};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use zennet_protocol::spec::Capacity;
use zennet_protocol::{ContainerSpec, UsageVector};

/// Environment variable naming the zygote's socket fd in a spawned zygote.
pub const ZYGOTE_FD_ENV: &str = "ZENNET_ZYGOTE_FD";
/// Environment variable carrying the engine config (JSON) to a spawned zygote.
pub const ZYGOTE_CFG_ENV: &str = "ZENNET_ZYGOTE_CONFIG";

/// Where the engine keeps its state and what it may sell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Engine state: `containers/<id>/` and libcontainer's `youki/`.
    pub state_dir: PathBuf,
    /// Directory of base root filesystems, one subdirectory per base name.
    pub bases_dir: PathBuf,
    /// Parent cgroup name under each hierarchy (e.g. `zennet`).
    pub cgroup_parent: String,
    /// Largest container the provider sells.
    pub capacity: Capacity,
    /// Networking; `None` gives containers a network namespace with loopback only.
    pub network: Option<network::NetConfig>,
    /// Leave containers running when the agent exits (they are adopted on restart).
    pub keep_containers_on_exit: bool,
}

/// The init of an idle container (every base offered has `/bin/sh`: busybox
/// ash and Debian's dash both reap any child while `wait` blocks).
pub const IDLE_INIT: &[&str] = &["/bin/sh", "-c", "while :; do sleep 2147483647 & wait $!; done"];

impl EngineConfig {
    /// Per-container state directories.
    pub fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }

    /// libcontainer's root directory.
    pub fn youki_root(&self) -> PathBuf {
        self.state_dir.join("youki")
    }
}

/// Engine errors, as the agent sees them.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The zygote refused or failed the request; the text says why.
    #[error("{0}")]
    Refused(String),
    /// Talking to the zygote failed (it died, or the socket broke).
    #[error("container engine unavailable: {0}")]
    Transport(String),
    /// The zygote answered something that does not fit the request.
    #[error("container engine answered {0:?} unexpectedly")]
    Unexpected(String),
    /// Waiting for something took too long.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// An exec'd process's stdio as the caller gets it.
#[derive(Debug)]
pub enum ExecIo {
    /// The pty master (stdin and output both go through it).
    Pty(OwnedFd),
    /// Separate pipes.
    Pipes { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
}

/// A started process inside a container.
#[derive(Debug)]
pub struct ExecHandle {
    /// Host pid.
    pub pid: i32,
    /// Its stdio.
    pub io: ExecIo,
}

/// Output of a finished exec.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code (128+signal when killed).
    pub code: i32,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    pending: HashMap<u64, mpsc::Sender<(Response, Vec<OwnedFd>)>>,
    exec_exits: HashMap<i32, i32>,
    container_exits: HashMap<String, Option<i32>>,
    closed: bool,
}

/// The agent's handle on the container engine. Cheap to share (`Arc`).
pub struct Engine {
    sock: OwnedFd,
    next_id: Mutex<u64>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    zygote_pid: i32,
    primer: Option<cgroups::Primer>,
    /// What recovery found when the zygote started: (adopted, removed).
    pub recovered: (Vec<String>, Vec<String>),
}

impl Engine {
    /// Forks the zygote from this process. Call it before any thread exists
    /// (before the tokio runtime), as `main` does.
    pub fn fork(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let (parent, child) = pair()?;
        // SAFETY: called while the process is single-threaded; the child only
        // runs the zygote and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| EngineError::Transport(format!("fork: {e}")))? {
            nix::unistd::ForkResult::Child => {
                drop(parent);
                zygote::serve(child, cfg)
            }
            nix::unistd::ForkResult::Parent { child: pid } => {
                drop(child);
                Engine::connect(parent, pid.as_raw(), &cfg)
            }
        }
    }

    /// Spawns `exe zygote` (the agent binary) as the zygote. Safe from a
    /// multi-threaded process (fork+exec), so tests and tools use it.
    pub fn spawn(exe: &Path, cfg: &EngineConfig) -> Result<Engine, EngineError> {
        let (parent, child) = pair()?;
        let cfg_json = serde_json::to_string(cfg).map_err(|e| EngineError::Transport(e.to_string()))?;
        let child_raw = child.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("zygote").env(ZYGOTE_FD_ENV, "3").env(ZYGOTE_CFG_ENV, cfg_json);
        // SAFETY: only async-signal-safe calls (dup2, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(child_raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let proc = cmd.spawn().map_err(|e| EngineError::Transport(format!("spawn {} zygote: {e}", exe.display())))?;
        drop(child);
        Engine::connect(parent, proc.id() as i32, cfg)
    }

    fn connect(sock: OwnedFd, zygote_pid: i32, cfg: &EngineConfig) -> Result<Engine, EngineError> {
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        // Close-on-exec, or every process spawned later would hold the
        // connection open and the zygote would never see end-of-file.
        let reader_fd = nix::fcntl::fcntl(sock.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| EngineError::Transport(e.to_string()))?;
        // SAFETY: fcntl gave us a new descriptor we own.
        let reader_fd = unsafe { OwnedFd::from_raw_fd(reader_fd) };
        // The zygote's processes (libcontainer clones it) can hold its end of
        // the socket open after it dies, so its death is watched directly.
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, zygote_pid, 0) };
        if pidfd < 0 {
            return Err(EngineError::Transport(format!("pidfd_open({zygote_pid}): {}", std::io::Error::last_os_error())));
        }
        // SAFETY: a new descriptor we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("zygote-reader".into())
            .spawn(move || reader(reader_fd, pidfd, sh))
            .map_err(|e| EngineError::Transport(e.to_string()))?;
        let mut eng = Engine { sock, next_id: Mutex::new(1), shared, zygote_pid, primer: None, recovered: (vec![], vec![]) };
        match eng.call(Request::Ping)?.0 {
            Response::Hello { adopted, removed } => eng.recovered = (adopted, removed),
            other => return Err(EngineError::Unexpected(format!("{other:?}"))),
        }
        // After the Hello: the zygote has claimed its group by now.
        eng.primer = cgroups::Primer::start(cgroups::detect_mode(), &cfg.cgroup_parent, zygote_pid);
        Ok(eng)
    }

    /// Starts the cgroup-migration grace period for a create about to be sent.
    fn prime(&self) {
        if let Some(p) = &self.primer {
            p.prime();
        }
    }

    /// The zygote's pid.
    pub fn zygote_pid(&self) -> i32 {
        self.zygote_pid
    }

    fn call(&self, req: Request) -> Result<(Response, Vec<OwnedFd>), EngineError> {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let (tx, rx) = mpsc::channel();
        {
            let mut s = self.shared.0.lock().unwrap();
            if s.closed {
                return Err(EngineError::Transport("zygote exited".into()));
            }
            s.pending.insert(id, tx);
        }
        proto::send(self.sock.as_raw_fd(), &ToZygote { id, body: req }, &[]).map_err(|e| EngineError::Transport(e.to_string()))?;
        let (resp, fds) = rx.recv().map_err(|_| EngineError::Transport("zygote exited".into()))?;
        match resp {
            Response::Err(e) => Err(EngineError::Refused(e)),
            r => Ok((r, fds)),
        }
    }

    fn call_ok(&self, req: Request) -> Result<(), EngineError> {
        match self.call(req)?.0 {
            Response::Ok => Ok(()),
            other => Err(EngineError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Creates a container (not started) whose init runs `args`.
    pub fn create(&self, id: &str, spec: &ContainerSpec, args: &[&str]) -> Result<ContainerInfo, EngineError> {
        let req = Request::Create { id: id.into(), spec: spec.clone(), args: args.iter().map(|s| s.to_string()).collect() };
        self.prime();
        match self.call(req)?.0 {
            Response::Info(i) => Ok(i),
            other => Err(EngineError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Starts a created container.
    pub fn start(&self, id: &str) -> Result<(), EngineError> {
        self.call_ok(Request::Start { id: id.into() })
    }

    /// Creates and starts a container whose init idles, ready for execs.
    /// The init is [`IDLE_INIT`]: a shell waiting on a sleep, so that it
    /// reaps the orphans the container's sessions leave (`nohup x &`, then
    /// the session ends); a bare `sleep` as pid 1 would keep them as zombies,
    /// each holding a slot of the container's pids limit.
    pub fn run_idle(&self, id: &str, spec: &ContainerSpec) -> Result<ContainerInfo, EngineError> {
        self.create(id, spec, IDLE_INIT)?;
        if let Err(e) = self.start(id) {
            let _ = self.delete(id);
            return Err(e);
        }
        self.state(id)
    }

    /// Starts a process inside a running container.
    pub fn exec(&self, req: ExecRequest) -> Result<ExecHandle, EngineError> {
        let tty = req.tty;
        let (resp, mut fds) = self.call(Request::Exec(req))?;
        let Response::Exec { pid } = resp else { return Err(EngineError::Unexpected(format!("{resp:?}"))) };
        let io = match (tty, fds.len()) {
            (true, 1) => ExecIo::Pty(fds.remove(0)),
            (false, 3) => {
                let stderr = fds.pop().unwrap();
                let stdout = fds.pop().unwrap();
                let stdin = fds.pop().unwrap();
                ExecIo::Pipes { stdin, stdout, stderr }
            }
            (_, n) => return Err(EngineError::Unexpected(format!("exec returned {n} descriptors"))),
        };
        Ok(ExecHandle { pid, io })
    }

    /// Waits for an exec'd process to exit; returns its exit code.
    pub fn wait_exec(&self, pid: i32, timeout: Duration) -> Result<i32, EngineError> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap();
        loop {
            if let Some(code) = s.exec_exits.remove(&pid) {
                return Ok(code);
            }
            if s.closed {
                return Err(EngineError::Transport("zygote exited".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::Timeout(timeout, format!("exec pid {pid}")));
            }
            s = cv.wait_timeout(s, left).unwrap().0;
        }
    }

    /// Waits for a container's init to exit; returns its exit code if known.
    pub fn wait_container(&self, id: &str, timeout: Duration) -> Result<Option<i32>, EngineError> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap();
        loop {
            if let Some(code) = s.container_exits.remove(id) {
                return Ok(code);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.closed {
                return Err(EngineError::Timeout(timeout, format!("container {id} to exit")));
            }
            s = cv.wait_timeout(s, left).unwrap().0;
        }
    }

    /// Runs `args` in the container without a terminal, feeding `stdin`, and
    /// collects its output and exit code.
    pub fn exec_output(&self, id: &str, args: &[&str], stdin: &[u8], timeout: Duration) -> Result<ExecOutput, EngineError> {
        let h = self.exec(ExecRequest { id: id.into(), args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() })?;
        let ExecIo::Pipes { stdin: sin, stdout, stderr } = h.io else { unreachable!("no tty asked") };
        let input = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(sin);
            let _ = std::io::Write::write_all(&mut f, &input);
        });
        let read_all = |fd: OwnedFd| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = std::fs::File::from(fd).read_to_end(&mut v);
                v
            })
        };
        let (o, e) = (read_all(stdout), read_all(stderr));
        let code = self.wait_exec(h.pid, timeout)?;
        let _ = writer.join();
        Ok(ExecOutput { code, stdout: o.join().unwrap_or_default(), stderr: e.join().unwrap_or_default() })
    }

    /// Sends a signal to every process of the container.
    pub fn signal(&self, id: &str, signal: i32) -> Result<(), EngineError> {
        self.call_ok(Request::Signal { id: id.into(), signal })
    }

    /// Freezes every process of the container.
    pub fn freeze(&self, id: &str) -> Result<(), EngineError> {
        self.call_ok(Request::Freeze { id: id.into() })
    }

    /// Thaws a frozen container.
    pub fn thaw(&self, id: &str) -> Result<(), EngineError> {
        self.call_ok(Request::Thaw { id: id.into() })
    }

    /// Kills and removes the container and everything it owns.
    pub fn delete(&self, id: &str) -> Result<(), EngineError> {
        self.call_ok(Request::Delete { id: id.into() })
    }

    /// One container's state.
    pub fn state(&self, id: &str) -> Result<ContainerInfo, EngineError> {
        match self.call(Request::State { id: id.into() })?.0 {
            Response::Info(i) => Ok(i),
            other => Err(EngineError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Every container.
    pub fn list(&self) -> Result<Vec<ContainerInfo>, EngineError> {
        match self.call(Request::List)?.0 {
            Response::List(v) => Ok(v),
            other => Err(EngineError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Cumulative usage of the named containers (all when `ids` is empty).
    pub fn usage(&self, ids: &[&str]) -> Result<Vec<(String, UsageVector)>, EngineError> {
        match self.call(Request::Usage { ids: ids.iter().map(|s| s.to_string()).collect() })?.0 {
            Response::Usage(v) => Ok(v),
            other => Err(EngineError::Unexpected(format!("{other:?}"))),
        }
    }
}

impl Engine {
    /// Benchmarks only: runs a ready OCI bundle to completion; returns its exit code.
    pub fn run_bundle(&self, id: &str, bundle: &Path) -> Result<i32, EngineError> {
        self.prime();
        match self.call(Request::RunBundle { id: id.into(), bundle: bundle.to_path_buf() })?.0 {
            Response::Exited { code } => Ok(code),
            other => Err(EngineError::Unexpected(format!("{other:?}"))),
        }
    }
}

impl Drop for Engine {
    /// Closes the connection (waking the reader thread too), so the zygote
    /// sees end-of-file and exits, then reaps it. The zygote removes its
    /// containers unless configured to keep them for adoption.
    fn drop(&mut self) {
        let _ = nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.zygote_pid), None);
    }
}

fn pair() -> Result<(OwnedFd, OwnedFd), EngineError> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(|e| EngineError::Transport(format!("socketpair: {e}")))
}

fn reader(fd: OwnedFd, pidfd: OwnedFd, shared: Arc<(Mutex<Shared>, Condvar)>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut buf = Vec::new();
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(_) => return mark_closed(&shared),
            Ok(_) => {}
        }
        let sock_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let zygote_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        if !sock_ready {
            if zygote_gone {
                return mark_closed(&shared);
            }
            continue;
        }
        let msg = proto::recv::<FromZygote>(fd.as_raw_fd(), &mut buf);
        let (m, cv) = &*shared;
        match msg {
            Ok(Some((FromZygote::Reply { id, body }, fds))) => {
                let tx = m.lock().unwrap().pending.remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send((body, fds));
                }
            }
            Ok(Some((FromZygote::Event(ev), _))) => {
                let mut s = m.lock().unwrap();
                match ev {
                    Event::ExecExited { pid, code } => {
                        s.exec_exits.insert(pid, code);
                    }
                    Event::ContainerExited { id, code } => {
                        s.container_exits.insert(id, code);
                    }
                }
                // Bound what nobody waits for.
                if s.exec_exits.len() > 4096 {
                    s.exec_exits.clear();
                }
                cv.notify_all();
            }
            Ok(None) | Err(_) => return mark_closed(&shared),
        }
    }
}

fn mark_closed(shared: &Arc<(Mutex<Shared>, Condvar)>) {
    let (m, cv) = &**shared;
    let mut s = m.lock().unwrap();
    s.closed = true;
    s.pending.clear();
    cv.notify_all();
}

/// Entry point of `zennet-agent zygote`: takes the socket and config from
/// the environment set by [`Engine::spawn`].
pub fn zygote_main() -> ! {
    let fd: RawFd = std::env::var(ZYGOTE_FD_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        eprintln!("zennet-agent zygote: {ZYGOTE_FD_ENV} is not set; this subcommand is internal");
        std::process::exit(2)
    });
    let cfg: EngineConfig = std::env::var(ZYGOTE_CFG_ENV).ok().and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_else(|| {
        eprintln!("zennet-agent zygote: {ZYGOTE_CFG_ENV} is missing or malformed");
        std::process::exit(2)
    });
    // SAFETY: the fd was placed at `fd` by our parent for us to own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    zygote::serve(sock, cfg)
}
