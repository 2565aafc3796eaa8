//! The default seccomp profile: every syscall is allowed except the ones
//! Docker's default profile denies to unprivileged containers (kernel
//! modules, kexec, reboot, swap, clock and keyring changes, namespace and
//! mount manipulation, BPF and perf, ptrace-like cross-process access,
//! obsolete and dangerous calls). They fail with EPERM.
//!
//! A deny list is simpler than Docker's allow list and stays correct as new
//! harmless syscalls appear; the capability set and the user namespace are
//! the second and third walls behind it.

use serde_json::{json, Value};

/// Syscalls a container may never make.
pub const DENIED: &[&str] = &[
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind",
    "mount", "mount_setattr", "move_mount", "move_pages", "name_to_handle_at",
    "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
    "personality", "pivot_root", "process_vm_readv", "process_vm_writev",
    "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl", "syslog",
    "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old",
];

/// The profile as an OCI `linux.seccomp` object.
pub fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            { "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
        ]
    })
}
