//! The zygote: a single-threaded process, forked (or spawned) before any
//! runtime threads exist, that alone calls libcontainer (whose clone paths
//! are unsafe from a multi-threaded process). It is the subreaper of every
//! container and exec'd process, reaps them through a signalfd, and serves
//! typed requests from the agent over one `SOCK_SEQPACKET` socket.

use super::proto::{self, FromZygote, Request, Response, ToZygote};
use super::runtime::{exit_code, Runtime};
use super::EngineConfig;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Runs the zygote on `sock` until the agent closes it. Never returns
/// normally to a caller that expects to continue: it exits the process.
pub fn serve(sock: OwnedFd, cfg: EngineConfig) -> ! {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    let _ = nix::unistd::setsid();
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGPIPE);
    let _ = mask.thread_block();
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zygote: signalfd: {e}");
            std::process::exit(1);
        }
    };
    // Containers and exec'd processes must not inherit the agent's line.
    let _ = nix::fcntl::fcntl(sock.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let keep_on_exit = cfg.keep_containers_on_exit;
    let fd = sock.as_raw_fd();
    let (mut rt, adopted, removed) = match Runtime::open(cfg) {
        Ok(x) => x,
        Err(e) => {
            // Answer every request with the reason, so the agent can say it.
            serve_broken(fd, &e);
        }
    };
    let hello = Response::Hello { adopted, removed };
    let mut hello = Some(hello);
    let mut buf = Vec::new();
    loop {
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN), PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => break,
        }
        let sock_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let sig_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        if sig_ready {
            while let Ok(Some(_)) = sfd.read_signal() {}
            reap_all(&mut rt, fd);
        }
        if sock_ready {
            let msg: ToZygote = match proto::recv(fd, &mut buf) {
                Ok(Some((m, _fds))) => m,
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!("zygote: {e}");
                    continue;
                }
                Err(_) => break,
            };
            let (body, out_fds) = handle(&mut rt, msg.body, &mut hello);
            let raw = proto::raw(&out_fds);
            if proto::send(fd, &FromZygote::Reply { id: msg.id, body }, &raw).is_err() {
                break;
            }
            drop(out_fds);
            // Exits that happened while serving are reported promptly.
            reap_all(&mut rt, fd);
        }
    }
    if !keep_on_exit {
        rt.shutdown();
    }
    std::process::exit(0);
}

fn handle(rt: &mut Runtime, req: Request, hello: &mut Option<Response>) -> (Response, Vec<OwnedFd>) {
    let ok = |r: Result<(), String>| match r {
        Ok(()) => Response::Ok,
        Err(e) => Response::Err(e),
    };
    match req {
        Request::Ping => (hello.take().unwrap_or(Response::Hello { adopted: vec![], removed: vec![] }), vec![]),
        Request::Create { id, spec, args } => (rt.create(&id, spec, args).map(Response::Info).unwrap_or_else(Response::Err), vec![]),
        Request::Start { id } => (ok(rt.start(&id)), vec![]),
        Request::Exec(e) => match rt.exec(e) {
            Ok((pid, fds)) => (Response::Exec { pid }, fds),
            Err(e) => (Response::Err(e), vec![]),
        },
        Request::Signal { id, signal } => (ok(rt.signal(&id, signal)), vec![]),
        Request::Freeze { id } => (ok(rt.freeze(&id, true)), vec![]),
        Request::Thaw { id } => (ok(rt.freeze(&id, false)), vec![]),
        Request::Delete { id } => (ok(rt.delete(&id)), vec![]),
        Request::State { id } => (rt.state(&id).map(Response::Info).unwrap_or_else(Response::Err), vec![]),
        Request::List => (Response::List(rt.list()), vec![]),
        Request::Usage { ids } => (rt.usage(&ids).map(Response::Usage).unwrap_or_else(Response::Err), vec![]),
        Request::RunBundle { id, bundle } => (rt.run_bundle(&id, &bundle).map(|code| Response::Exited { code }).unwrap_or_else(Response::Err), vec![]),
    }
}

fn reap_all(rt: &mut Runtime, fd: i32) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(ws) => {
                if let Some((pid, code)) = exit_code(ws) {
                    if let Some(ev) = rt.on_exit(pid, code) {
                        let _ = proto::send(fd, &FromZygote::Event(ev), &[]);
                    }
                }
            }
        }
    }
}

fn serve_broken(fd: i32, why: &str) -> ! {
    let mut buf = Vec::new();
    while let Ok(Some((msg, _))) = proto::recv::<ToZygote>(fd, &mut buf) {
        let _ = proto::send(fd, &FromZygote::Reply { id: msg.id, body: Response::Err(format!("container engine failed to start: {why}")) }, &[]);
    }
    std::process::exit(1);
}
