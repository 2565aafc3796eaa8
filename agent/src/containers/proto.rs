//! The typed messages between the agent and its zygote, and their framing:
//! one JSON message per `SOCK_SEQPACKET` packet (bounded by [`MAX_MSG`]),
//! file descriptors (exec stdio, pty masters) passed beside it as
//! `SCM_RIGHTS`.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use zennet_protocol::{ContainerSpec, UsageVector};

/// Largest message either side accepts.
pub const MAX_MSG: usize = 1 << 20;
/// Most descriptors one message carries.
pub const MAX_FDS: usize = 4;

/// What the agent asks the zygote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Liveness check; answered with [`Response::Hello`].
    Ping,
    /// Create (not start) a container whose init runs `args`.
    Create { id: String, spec: ContainerSpec, args: Vec<String> },
    /// Start a created container's init.
    Start { id: String },
    /// Run a process inside a running container.
    Exec(ExecRequest),
    /// Send a signal to every process of the container.
    Signal { id: String, signal: i32 },
    /// Freeze every process (cgroup freezer).
    Freeze { id: String },
    /// Thaw a frozen container.
    Thaw { id: String },
    /// Kill and remove the container and everything it owns.
    Delete { id: String },
    /// One container's state.
    State { id: String },
    /// Every container's state.
    List,
    /// Cumulative usage of the named containers (all when empty).
    Usage { ids: Vec<String> },
    /// Benchmarks only: create, start, wait for and delete a container from
    /// a ready OCI bundle (no disk, no network), as `runc run` does.
    RunBundle { id: String, bundle: std::path::PathBuf },
}

/// A process to start inside a container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ExecRequest {
    /// Container id.
    pub id: String,
    /// argv.
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Give the process a terminal (the pty master comes back as the one fd).
    pub tty: bool,
    /// Working directory (default `/`).
    pub cwd: Option<String>,
    /// Run agent code inside the container instead of exec'ing `args[0]`.
    #[serde(default)]
    pub builtin: Option<Builtin>,
}

/// Agent code an exec can run inside the container (after joining its
/// namespaces and cgroup and dropping to its privileges), for services the
/// image need not ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// The SFTP server on stdin/stdout (`crate::ssh::sftp`).
    Sftp,
}

/// Lifecycle of a container as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being built; a crash here means it is removed on restart.
    Creating,
    /// Created, init waiting to start.
    Created,
    /// Init running.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// Init exited.
    Stopped,
}

/// A container's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Container id.
    pub id: String,
    /// Who rents it.
    pub tenant: String,
    /// Lifecycle state.
    pub status: Status,
    /// Host pid of the container's init.
    pub pid: Option<i32>,
    /// Address on the agent's bridge.
    pub ip: Option<Ipv4Addr>,
    /// Init's exit code once stopped (128+signal when killed).
    pub exit_code: Option<i32>,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: u64,
}

/// What the zygote answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Answer to Ping: what recovery found when the zygote started.
    Hello { adopted: Vec<String>, removed: Vec<String> },
    /// Done.
    Ok,
    /// One container.
    Info(ContainerInfo),
    /// All containers.
    List(Vec<ContainerInfo>),
    /// Exec started: host pid; fds are `[pty master]` or `[stdin, stdout, stderr]`.
    Exec { pid: i32 },
    /// Usage per container.
    Usage(Vec<(String, UsageVector)>),
    /// A bundle ran to completion with this exit code.
    Exited { code: i32 },
    /// The request failed; the text names what and why.
    Err(String),
}

/// Something that happened without being asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// An exec'd process exited.
    ExecExited { pid: i32, code: i32 },
    /// A container's init exited.
    ContainerExited { id: String, code: Option<i32> },
}

/// A message from the zygote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromZygote {
    /// Answer to request `id`.
    Reply { id: u64, body: Response },
    /// An event.
    Event(Event),
}

/// A message to the zygote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToZygote {
    /// Correlates the reply.
    pub id: u64,
    /// What is asked.
    pub body: Request,
}

/// Sends `msg` with `fds` as one packet.
pub fn send<T: Serialize>(sock: RawFd, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_MSG {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("message of {} bytes exceeds {MAX_MSG}", bytes.len())));
    }
    let iov = [IoSlice::new(&bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one packet. `Ok(None)` on orderly close.
pub fn recv<T: DeserializeOwned>(sock: RawFd, buf: &mut Vec<u8>) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    buf.resize(MAX_MSG + 1, 0);
    let mut cbuf = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(sock, &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => {
                let mut fds = Vec::new();
                for c in m.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        // SAFETY: SCM_RIGHTS hands us new descriptors we now own.
                        fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                break (m.bytes, fds, m.flags.contains(MsgFlags::MSG_TRUNC) || m.flags.contains(MsgFlags::MSG_CTRUNC));
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    if truncated || n > MAX_MSG {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message over {MAX_MSG} bytes or too many descriptors")));
    }
    let msg = serde_json::from_slice(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed zygote message: {e}")))?;
    Ok(Some((msg, fds)))
}

/// Raw fds of owned descriptors, for [`send`].
pub fn raw(fds: &[OwnedFd]) -> Vec<RawFd> {
    fds.iter().map(|f| f.as_raw_fd()).collect()
}
