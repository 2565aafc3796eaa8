//! What a contract asks a provider to run: a [`ContainerSpec`], and the check
//! that refuses an impossible one with an error naming the field.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The resources and identity of one rented container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Memory limit in bytes (cgroup memory.max / memory.limit_in_bytes).
    pub memory_bytes: u64,
    /// CPU share in thousandths of a core (1000 = one core), enforced as a
    /// CFS quota over [`ContainerSpec::CPU_PERIOD_US`].
    pub cpu_millicores: u32,
    /// Most processes and threads the container may have at once.
    pub pids_max: u32,
    /// Disk quota for the container's writable layer, bytes.
    pub disk_bytes: u64,
    /// Relative io weight, 1..=10000 (cgroup v2 scale; mapped to v1's 10..=1000).
    pub io_weight: u16,
    /// Environment variables for processes in the container, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The publisher's SSH public keys, OpenSSH `authorized_keys` lines.
    pub ssh_authorized_keys: Vec<String>,
    /// Name of the base root filesystem the provider offers (e.g. `busybox`).
    pub base: String,
    /// Who rents it (the publisher's address): containers of different
    /// tenants never reach each other.
    pub tenant: String,
}

/// What a provider sells at most, for one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Largest memory limit the provider sells, bytes.
    pub memory_bytes: u64,
    /// Largest cpu share, thousandths of a core.
    pub cpu_millicores: u32,
    /// Largest pids limit.
    pub pids_max: u32,
    /// Largest disk quota, bytes.
    pub disk_bytes: u64,
}

/// Why a [`ContainerSpec`] cannot be run. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// A field is zero or otherwise below what can work.
    #[error("spec field `{field}` is {value}: {why}")]
    TooSmall { field: &'static str, value: u64, why: &'static str },
    /// A field asks for more than the provider sells.
    #[error("spec field `{field}` asks for {value}, above the provider's maximum of {max}")]
    AboveCapacity { field: &'static str, value: u64, max: u64 },
    /// A field's value is malformed.
    #[error("spec field `{field}` is invalid: {why}")]
    Invalid { field: &'static str, why: String },
}

impl ContainerSpec {
    /// CFS period the cpu share is expressed over, microseconds.
    pub const CPU_PERIOD_US: u64 = 100_000;
    /// Smallest memory limit that lets a shell start, bytes.
    pub const MIN_MEMORY_BYTES: u64 = 4 << 20;
    /// Smallest disk quota (an ext4 upper layer needs some room), bytes.
    pub const MIN_DISK_BYTES: u64 = 8 << 20;
    /// Most environment entries accepted.
    pub const MAX_ENV: usize = 256;
    /// Most SSH keys accepted.
    pub const MAX_KEYS: usize = 32;

    /// A small default spec for tests and examples: 64 MiB, one core,
    /// 128 pids, 64 MiB disk, busybox base.
    pub fn small(tenant: &str) -> Self {
        Self {
            memory_bytes: 64 << 20,
            cpu_millicores: 1000,
            pids_max: 128,
            disk_bytes: 64 << 20,
            io_weight: 100,
            env: Vec::new(),
            ssh_authorized_keys: Vec::new(),
            base: "busybox".into(),
            tenant: tenant.into(),
        }
    }

    /// CFS quota in microseconds per [`Self::CPU_PERIOD_US`].
    pub fn cpu_quota_us(&self) -> u64 {
        self.cpu_millicores as u64 * Self::CPU_PERIOD_US / 1000
    }

    /// Checks the spec on its own and against what the provider sells.
    pub fn validate(&self, cap: &Capacity) -> Result<(), SpecError> {
        fn at_least(field: &'static str, value: u64, min: u64, why: &'static str) -> Result<(), SpecError> {
            if value < min { Err(SpecError::TooSmall { field, value, why }) } else { Ok(()) }
        }
        fn at_most(field: &'static str, value: u64, max: u64) -> Result<(), SpecError> {
            if value > max { Err(SpecError::AboveCapacity { field, value, max }) } else { Ok(()) }
        }
        at_least("memory_bytes", self.memory_bytes, Self::MIN_MEMORY_BYTES, "at least 4 MiB is needed")?;
        at_most("memory_bytes", self.memory_bytes, cap.memory_bytes)?;
        at_least("cpu_millicores", self.cpu_millicores as u64, 10, "at least 10 millicores is needed")?;
        at_most("cpu_millicores", self.cpu_millicores as u64, cap.cpu_millicores as u64)?;
        at_least("pids_max", self.pids_max as u64, 2, "at least 2 processes are needed")?;
        at_most("pids_max", self.pids_max as u64, cap.pids_max as u64)?;
        at_least("disk_bytes", self.disk_bytes, Self::MIN_DISK_BYTES, "at least 8 MiB is needed")?;
        at_most("disk_bytes", self.disk_bytes, cap.disk_bytes)?;
        if !(1..=10000).contains(&self.io_weight) {
            return Err(SpecError::Invalid { field: "io_weight", why: format!("{} is outside 1..=10000", self.io_weight) });
        }
        if self.env.len() > Self::MAX_ENV {
            return Err(SpecError::Invalid { field: "env", why: format!("{} entries, at most {}", self.env.len(), Self::MAX_ENV) });
        }
        if let Some(bad) = self.env.iter().find(|e| !e.contains('=') || e.starts_with('=') || e.contains('\0')) {
            return Err(SpecError::Invalid { field: "env", why: format!("entry {bad:?} is not KEY=VALUE") });
        }
        if self.ssh_authorized_keys.len() > Self::MAX_KEYS {
            return Err(SpecError::Invalid { field: "ssh_authorized_keys", why: format!("at most {} keys", Self::MAX_KEYS) });
        }
        if self.base.is_empty() || !self.base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SpecError::Invalid { field: "base", why: format!("{:?} is not a base name ([A-Za-z0-9_-]+)", self.base) });
        }
        if self.tenant.is_empty() || self.tenant.len() > 128 {
            return Err(SpecError::Invalid { field: "tenant", why: "must be 1 to 128 characters".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capacity {
        Capacity { memory_bytes: 1 << 30, cpu_millicores: 2000, pids_max: 1024, disk_bytes: 1 << 30 }
    }

    #[test]
    fn small_is_valid() {
        ContainerSpec::small("t").validate(&cap()).unwrap();
        assert_eq!(ContainerSpec::small("t").cpu_quota_us(), 100_000);
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = ContainerSpec::small("t");
        s.memory_bytes = 0;
        let e = s.validate(&cap()).unwrap_err().to_string();
        assert!(e.contains("memory_bytes"), "{e}");
        let mut s = ContainerSpec::small("t");
        s.memory_bytes = 2 << 30;
        let e = s.validate(&cap()).unwrap_err();
        assert!(matches!(e, SpecError::AboveCapacity { field: "memory_bytes", .. }), "{e}");
        let mut s = ContainerSpec::small("t");
        s.base = "../etc".into();
        assert!(s.validate(&cap()).unwrap_err().to_string().contains("base"));
        let mut s = ContainerSpec::small("t");
        s.env = vec!["NOEQUALS".into()];
        assert!(s.validate(&cap()).unwrap_err().to_string().contains("env"));
    }
}
