//! `lo` for containers without networking: a new network namespace starts
//! with its loopback down, so nothing inside could even listen on
//! 127.0.0.1 (what `ssh -L` to a service in the container needs).

use nix::sched::{setns, CloneFlags};
use nix::unistd::{fork, ForkResult};

/// Brings `lo` up in the network namespace of `pid`, from a child of the
/// (single-threaded) zygote that joins it and exits.
pub fn up(pid: i32) -> Result<(), String> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: the zygote is single-threaded; the child makes syscalls and exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let ok = setns(&ns, CloneFlags::CLONE_NEWNET).is_ok() && set_up();
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(format!("bringing up lo in the netns of {pid}: {other:?}")),
        },
    }
}

fn set_up() -> bool {
    // SAFETY: an AF_INET datagram socket for interface ioctls; ifreq is
    // zeroed and named "lo"; the socket is closed before returning.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return false;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let ok = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) == 0 && {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) == 0
        };
        libc::close(s);
        ok
    }
}
