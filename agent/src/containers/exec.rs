//! Processes started inside a running container (what ssh sessions use).
//!
//! libcontainer 0.7's tenant path does not join the container's user
//! namespace (its list of namespaces to join leaves `user` out), so an
//! exec'd process would run as real host root. This module does the join
//! itself, from a child of the single-threaded zygote, the way runc's
//! nsexec does: join the container's cgroups, `setns` into its user
//! namespace first and then ipc, uts, net, cgroup, pid and mount; fork so
//! the process is inside the pid namespace; become root *of the container*;
//! set `no_new_privs`, drop to the container's capabilities, load its
//! seccomp filter (both via libcontainer), and exec (or run agent code, the
//! SFTP server, in place of a program). A pty is allocated from the
//! container's own devpts and its master handed back.

use libcontainer::syscall::linux::LinuxSyscall;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::signal::SigSet;
use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// What a process inside a container is made of.
pub struct ExecPlan {
    /// Host pid of the container's init (whose namespaces are joined).
    pub init_pid: i32,
    /// `cgroup.procs` files to join (one per v1 hierarchy, or the v2 one).
    pub cgroup_procs: Vec<PathBuf>,
    /// Capabilities to keep.
    pub caps: Option<LinuxCapabilities>,
    /// Seccomp filter to load last.
    pub seccomp: Option<LinuxSeccomp>,
    /// argv.
    pub args: Vec<String>,
    /// Full environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Allocate a pty from the container's devpts.
    pub tty: bool,
    /// Agent code to run in place of `args[0]`.
    pub builtin: Option<super::proto::Builtin>,
}

#[derive(Serialize, Deserialize)]
enum Report {
    Pid(i32),
    Master,
    Failed(String),
}

/// Namespaces joined, user first (it grants the capabilities for the rest),
/// mount last (it changes root and cwd).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Starts the process. Returns its host pid and the caller's descriptors:
/// `[pty master]` or `[stdin writer, stdout reader, stderr reader]`.
/// The zygote (subreaper) reaps it and reports its exit.
pub fn spawn(plan: &ExecPlan) -> Result<(i32, Vec<OwnedFd>), String> {
    if plan.args.is_empty() {
        return Err("exec args are empty".into());
    }
    let mut ns_files = Vec::new();
    for (name, flag) in NAMESPACES {
        let p = format!("/proc/{}/ns/{name}", plan.init_pid);
        ns_files.push((File::open(&p).map_err(|e| format!("open {p}: {e}"))?, *flag));
    }
    let argv: Vec<CString> = plan.args.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(|_| "exec args contain a NUL byte")?;
    let envp: Vec<CString> = plan.env.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(|_| "exec env contains a NUL byte")?;
    let path_var = plan.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin").to_string();
    let (report_r, report_w) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(|e| format!("socketpair: {e}"))?;
    let pipes = if plan.tty {
        None
    } else {
        let p = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        Some((p()?, p()?, p()?))
    };
    // SAFETY: the zygote is single-threaded; the child only makes syscalls
    // and exits or execs.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(report_r);
            let stdio = pipes.as_ref().map(|(i, o, e)| (i.0.as_raw_fd(), o.1.as_raw_fd(), e.1.as_raw_fd()));
            let err = intermediate(plan, &ns_files, &argv, &envp, &path_var, report_w.as_raw_fd(), stdio);
            let _ = super::proto::send(report_w.as_raw_fd(), &Report::Failed(err), &[]);
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            drop(ns_files);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut buf = Vec::new();
            let mut pid = None;
            let mut master = None;
            loop {
                match super::proto::recv::<Report>(report_r.as_raw_fd(), &mut buf) {
                    Ok(Some((Report::Pid(p), _))) => pid = Some(p),
                    Ok(Some((Report::Master, mut fds))) if !fds.is_empty() => master = Some(fds.remove(0)),
                    Ok(Some((Report::Failed(e), _))) => return Err(format!("exec {:?}: {e}", plan.args[0])),
                    Ok(Some(_)) => return Err("exec: malformed report".into()),
                    Ok(None) => break,
                    Err(e) => return Err(format!("exec report: {e}")),
                }
            }
            let pid = pid.ok_or("exec: the process did not start")?;
            match pipes {
                None => Ok((pid, vec![master.ok_or("exec: no pty master came back")?])),
                Some((i, o, e)) => Ok((pid, vec![i.1, o.0, e.0])),
            }
        }
    }
}

/// Runs in the intermediate child. Returns only on failure.
fn intermediate(plan: &ExecPlan, ns: &[(File, CloneFlags)], argv: &[CString], envp: &[CString], path_var: &str, report: RawFd, stdio: Option<(RawFd, RawFd, RawFd)>) -> String {
    for p in &plan.cgroup_procs {
        if let Err(e) = std::fs::write(p, "0") {
            return format!("join cgroup {}: {e}", p.display());
        }
    }
    for (f, flag) in ns {
        if let Err(e) = setns(f.as_fd(), *flag) {
            return format!("setns {flag:?}: {e}");
        }
    }
    // SAFETY: single-threaded child of the zygote.
    match unsafe { fork() } {
        Err(e) => format!("fork into pid namespace: {e}"),
        Ok(ForkResult::Parent { child }) => {
            let _ = super::proto::send(report, &Report::Pid(child.as_raw()), &[]);
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => final_process(plan, argv, envp, path_var, report, stdio),
    }
}

/// Runs in the process that becomes the command. Returns only on failure.
fn final_process(plan: &ExecPlan, argv: &[CString], envp: &[CString], path_var: &str, report: RawFd, stdio: Option<(RawFd, RawFd, RawFd)>) -> String {
    if let Err(e) = nix::unistd::setsid() {
        return format!("setsid: {e}");
    }
    reset_signals();
    match stdio {
        Some((i, o, e)) => {
            for (from, to) in [(i, 0), (o, 1), (e, 2)] {
                if let Err(err) = nix::unistd::dup2(from, to) {
                    return format!("dup2: {err}");
                }
            }
        }
        None => {
            let (master, slave) = match open_container_pty() {
                Ok(x) => x,
                Err(e) => return e,
            };
            if let Err(e) = super::proto::send(report, &Report::Master, &[master.as_raw_fd()]) {
                return format!("send pty master: {e}");
            }
            drop(master);
            // SAFETY: TIOCSCTTY on a pty slave we own; no memory is passed.
            if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
                return format!("TIOCSCTTY: {}", std::io::Error::last_os_error());
            }
            for to in 0..3 {
                if let Err(err) = nix::unistd::dup2(slave.as_raw_fd(), to) {
                    return format!("dup2: {err}");
                }
            }
        }
    }
    // `~` is root's home, or `/` where the image has none.
    let cwd = if plan.cwd == "~" { if std::path::Path::new("/root").is_dir() { "/root" } else { "/" } } else { plan.cwd.as_str() };
    if let Err(e) = nix::unistd::chdir(cwd) {
        return format!("chdir {cwd}: {e}");
    }
    if let Err(e) = nix::unistd::setgroups(&[]) {
        return format!("setgroups: {e}");
    }
    if let Err(e) = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)) {
        return format!("setresgid: {e}");
    }
    if let Err(e) = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)) {
        return format!("setresuid: {e}");
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return "PR_SET_NO_NEW_PRIVS failed".into();
    }
    if let Some(caps) = &plan.caps {
        if let Err(e) = libcontainer::capabilities::drop_privileges(caps, &LinuxSyscall) {
            return format!("drop capabilities: {e}");
        }
    }
    // Close everything but stdio before running untrusted code.
    // SAFETY: close_range on descriptors this process owns.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if let Some(sc) = &plan.seccomp {
        if let Err(e) = libcontainer::seccomp::initialize_seccomp(sc) {
            // The report socket is closed now; stderr is the only channel.
            eprintln!("zennet exec: seccomp: {e}");
            // SAFETY: leaving without running destructors.
            unsafe { libc::_exit(126) }
        }
    }
    if let Some(super::proto::Builtin::Sftp) = plan.builtin {
        let code = crate::ssh::sftp::serve_stdio();
        // SAFETY: leaving the forked child without running destructors.
        unsafe { libc::_exit(code) }
    }
    let prog = &plan.args[0];
    let candidates: Vec<String> = if prog.contains('/') { vec![prog.clone()] } else { path_var.split(':').map(|d| format!("{d}/{prog}")).collect() };
    for c in candidates {
        if let Ok(cpath) = CString::new(c) {
            let _ = nix::unistd::execve(&cpath, argv, envp);
        }
    }
    eprintln!("zennet exec: {prog}: not found");
    // SAFETY: leaving without running destructors.
    unsafe { libc::_exit(127) }
}

/// Gives the command the signal state a fresh process has: nothing blocked,
/// every disposition default. The mask and ignored signals survive `execve`,
/// and the zygote blocks SIGCHLD and SIGPIPE (its signalfd) while the agent's
/// runtime ignores SIGPIPE: left so, a command never sees its children exit
/// (GNU parallel's remote wrapper waits for SIGCHLD forever) nor dies of a
/// closed pipe.
pub(crate) fn reset_signals() {
    // Every number the kernel knows, the two glibc keeps for itself (32, 33:
    // its `signal` refuses them) and the real-time ones included; SIGKILL and
    // SIGSTOP just refuse. The kernel's own sigaction layout, all zero: SIG_DFL.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    for sig in 1..=64 {
        // SAFETY: installs SIG_DFL from a struct that outlives the call; this process execs next.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, std::ptr::null_mut::<KernelSigaction>(), 8usize) };
    }
    let _ = SigSet::empty().thread_set_mask();
}

/// libcontainer's default workload executor, after [`reset_signals`]: a
/// container's init would otherwise inherit the zygote's blocked SIGCHLD and
/// never reap the orphans its sessions leave.
#[derive(Clone)]
pub(crate) struct CleanSignals;

impl libcontainer::workload::Executor for CleanSignals {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        reset_signals();
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

/// Opens a pty pair from the container's devpts (mount namespace already joined).
fn open_container_pty() -> Result<(OwnedFd, OwnedFd), String> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(|e| format!("open /dev/ptmx: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    // SAFETY: ptsname_r is the reentrant form; the zygote child is single-threaded anyway.
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty()).map_err(|e| format!("open {name}: {e}"))?;
    // SAFETY: posix_openpt returned an owned descriptor; open() too.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master, slave))
}
