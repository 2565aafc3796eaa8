//! Turns a [`ContainerSpec`] into the OCI runtime spec (`config.json`) that
//! libcontainer runs: every namespace (user included, container root mapped
//! to an unprivileged host range), runc's default capabilities, masked and
//! read-only paths, `no_new_privs`, the default seccomp profile, cgroup
//! limits, and an overlay root over the shared read-only base.

use super::seccomp;
use serde_json::{json, Value};
use std::path::Path;
use zennet_protocol::ContainerSpec;

/// First host uid/gid that container uid/gid 0 maps to.
pub const HOST_ID_BASE: u32 = 100_000;
/// How many ids the container sees (0..65536).
pub const ID_RANGE: u32 = 65_536;

/// runc's default capability set, the only capabilities a container process gets.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// runc's masked paths: hidden from the container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone)]
pub struct RootLayers<'a> {
    /// The shared read-only base (overlay lowerdir).
    pub base: &'a Path,
    /// The container's writable layer on its quota-capped disk.
    pub upper: &'a Path,
    /// Overlay's work dir, on the same disk as `upper`.
    pub work: &'a Path,
    /// The (empty) directory the overlay is mounted on.
    pub mountpoint: &'a Path,
}

/// Which cgroup hierarchy the host runs; decides which limits can be expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v1 or hybrid (v1 controllers).
    V1,
    /// Pure cgroup v2.
    V2,
}

/// Everything needed to write one container's `config.json`.
#[derive(Debug, Clone)]
pub struct OciInput<'a> {
    /// Container id (also its hostname).
    pub id: &'a str,
    /// What the contract asks for.
    pub spec: &'a ContainerSpec,
    /// The init process's argv.
    pub args: &'a [String],
    /// Root filesystem layers.
    pub layers: RootLayers<'a>,
    /// cgroup path relative to each hierarchy's root, e.g. `/zennet/<id>`.
    pub cgroup_path: &'a str,
    /// The host's cgroup mode: on v2 the container sees its own cgroup
    /// (limits and counters) at /sys/fs/cgroup; v1 hierarchies cannot be
    /// mounted from inside a user namespace, so there it sees none.
    pub cgroup_mode: CgroupMode,
}

/// Builds the OCI runtime spec as JSON.
pub fn runtime_spec(input: &OciInput<'_>) -> Value {
    let spec = input.spec;
    let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(), "HOME=/root".to_string(), "TERM=xterm".to_string()];
    env.extend(spec.env.iter().cloned());
    // One option per element: libcontainer hands each to fsconfig(2) as is.
    let overlay = [
        format!("lowerdir={}", input.layers.base.display()),
        format!("upperdir={}", input.layers.upper.display()),
        format!("workdir={}", input.layers.work.display()),
        "userxattr".to_string(),
    ];
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let mut mounts = vec![
        // First: the overlay root, mounted by libcontainer inside the user
        // namespace (hence `userxattr`), on top of the bind-mounted rootfs.
        json!({ "destination": "/", "type": "overlay", "source": "overlay", "options": overlay }),
        json!({ "destination": "/proc", "type": "proc", "source": "proc" }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }),
        json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", "size=65536k"] }),
    ];
    if input.cgroup_mode == CgroupMode::V2 {
        mounts.push(json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": input.args,
            "env": env,
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": true
        },
        "root": { "path": input.layers.mountpoint, "readonly": false },
        "hostname": input.id,
        "mounts": mounts,
        "linux": {
            "uidMappings": [ { "containerID": 0, "hostID": HOST_ID_BASE, "size": ID_RANGE } ],
            "gidMappings": [ { "containerID": 0, "hostID": HOST_ID_BASE, "size": ID_RANGE } ],
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }, { "type": "user" }
            ],
            "cgroupsPath": input.cgroup_path,
            "resources": {
                "devices": [ { "allow": false, "access": "rwm" } ],
                "memory": { "limit": spec.memory_bytes, "swap": spec.memory_bytes },
                "cpu": { "quota": spec.cpu_quota_us(), "period": ContainerSpec::CPU_PERIOD_US },
                "pids": { "limit": spec.pids_max }
            },
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp::default_profile()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn spec_parses_as_oci_and_carries_limits() {
        let spec = ContainerSpec::small("tenant");
        let (b, u, w, m) = (PathBuf::from("/b"), PathBuf::from("/u"), PathBuf::from("/w"), PathBuf::from("/m"));
        let args = vec!["sleep".to_string(), "1".to_string()];
        let v = runtime_spec(&OciInput {
            id: "c1",
            spec: &spec,
            args: &args,
            layers: RootLayers { base: &b, upper: &u, work: &w, mountpoint: &m },
            cgroup_path: "/zennet/c1",
            cgroup_mode: CgroupMode::V1,
        });
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(v).expect("valid OCI spec");
        let linux = parsed.linux().as_ref().unwrap();
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 128);
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(100_000));
        let ns: Vec<String> = linux.namespaces().as_ref().unwrap().iter().map(|n| format!("{:?}", n.typ())).collect();
        for want in ["Pid", "Network", "Ipc", "Uts", "Mount", "Cgroup", "User"] {
            assert!(ns.iter().any(|n| n == want), "missing namespace {want}: {ns:?}");
        }
        assert_eq!(parsed.process().as_ref().unwrap().no_new_privileges(), Some(true));
        assert!(linux.seccomp().is_some());
        assert_eq!(parsed.mounts().as_ref().unwrap()[0].options().as_ref().unwrap()[3], "userxattr");
    }
}
