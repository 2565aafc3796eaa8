//! The error type of the container network module.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::Ipv4Net;

/// Everything that can fail in this module. Each variant names the step, id,
/// device or command that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An `ip` or `nft` invocation exited non-zero.
    #[error("{what}: `{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The step, e.g. "attach c1".
        what: String,
        /// The command line.
        cmd: String,
        /// The exit status.
        status: String,
        /// What the command printed on stderr.
        stderr: String,
        /// The script it was given on stdin.
        script: String,
    },
    /// An `ip` or `nft` process could not be started or waited for.
    #[error("{what}: cannot run `{cmd}`: {source}")]
    Spawn {
        /// The step.
        what: String,
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file operation (state record, sysfs, procfs) failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step.
        what: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A state record could not be parsed.
    #[error("corrupt allocation record {}: {source}", path.display())]
    State {
        /// The record.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A state record has a version this code does not know.
    #[error("allocation record {} has unknown version {version}", path.display())]
    StateVersion {
        /// The record.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// A container id or tenant is unusable in device, file and netns names.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidName {
        /// "id", "tenant", "bridge" or "nft table".
        kind: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The configuration cannot work (e.g. subnet too small).
    #[error("invalid network config: {0}")]
    Config(String),
    /// `attach` was called for an id that is already attached.
    #[error("container {id} is already attached (ip {ip})")]
    AlreadyAttached {
        /// The container id.
        id: String,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// Every address of the subnet is allocated.
    #[error("no free address in {subnet} for container {id}")]
    SubnetExhausted {
        /// The container id.
        id: String,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// Two ids hash to the same veth name.
    #[error("veth name {veth} of container {id} is already used by container {other}")]
    VethCollision {
        /// The new container id.
        id: String,
        /// The attached container that holds the name.
        other: String,
        /// The name.
        veth: String,
    },
    /// The pid given to `attach` lives in the agent's own netns: attaching
    /// would reconfigure the host's network.
    #[error("attach {id}: process {pid} shares the agent's network namespace")]
    SameNetns {
        /// The container id.
        id: String,
        /// The pid.
        pid: i32,
    },
    /// The pid given to `attach` is not a live process.
    #[error("attach {id}: no process {pid}")]
    NoProcess {
        /// The container id.
        id: String,
        /// The pid.
        pid: i32,
    },
}
