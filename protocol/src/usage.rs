//! The usage vector: cumulative resource use of one container, with a version
//! and a fixed component order. A provider reports it; a publisher prices the
//! difference between two reports; calibration fits rates per component.
//!
//! Order and units are part of the protocol: adding a component is a new
//! [`UsageVector::VERSION`].

use serde::{Deserialize, Serialize};

/// One component of the usage vector, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageComponent {
    /// CPU time in user mode, nanoseconds.
    CpuUserNs,
    /// CPU time in kernel mode, nanoseconds.
    CpuSystemNs,
    /// Integral of memory in use over time, byte-seconds.
    MemByteSeconds,
    /// Bytes read from block devices.
    IoReadBytes,
    /// Bytes written to block devices.
    IoWriteBytes,
    /// Read operations on block devices.
    IoReadOps,
    /// Write operations on block devices.
    IoWriteOps,
    /// Bytes received on the container's network interfaces.
    NetRxBytes,
    /// Bytes sent on the container's network interfaces.
    NetTxBytes,
    /// Wall-clock time the container has existed, nanoseconds.
    WallNs,
}

impl UsageComponent {
    /// Every component, in wire order.
    pub const ALL: [UsageComponent; UsageVector::LEN] = [
        Self::CpuUserNs,
        Self::CpuSystemNs,
        Self::MemByteSeconds,
        Self::IoReadBytes,
        Self::IoWriteBytes,
        Self::IoReadOps,
        Self::IoWriteOps,
        Self::NetRxBytes,
        Self::NetTxBytes,
        Self::WallNs,
    ];

    /// Stable name used in tables, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuUserNs => "cpu_user_ns",
            Self::CpuSystemNs => "cpu_system_ns",
            Self::MemByteSeconds => "mem_byte_seconds",
            Self::IoReadBytes => "io_read_bytes",
            Self::IoWriteBytes => "io_write_bytes",
            Self::IoReadOps => "io_read_ops",
            Self::IoWriteOps => "io_write_ops",
            Self::NetRxBytes => "net_rx_bytes",
            Self::NetTxBytes => "net_tx_bytes",
            Self::WallNs => "wall_ns",
        }
    }

    /// The unit one count of this component stands for.
    pub fn unit(self) -> &'static str {
        match self {
            Self::CpuUserNs | Self::CpuSystemNs | Self::WallNs => "ns",
            Self::MemByteSeconds => "B*s",
            Self::IoReadBytes | Self::IoWriteBytes | Self::NetRxBytes | Self::NetTxBytes => "B",
            Self::IoReadOps | Self::IoWriteOps => "op",
        }
    }
}

/// Cumulative usage of one container since it was created.
///
/// Every counter only grows; a report whose counters went down is invalid
/// (see [`UsageVector::is_monotonic_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageVector {
    /// Layout version; [`UsageVector::VERSION`] for this crate.
    pub version: u16,
    /// Counters in [`UsageComponent::ALL`] order.
    pub counters: [u64; UsageVector::LEN],
}

impl UsageVector {
    /// Current layout version.
    pub const VERSION: u16 = 1;
    /// Number of components.
    pub const LEN: usize = 10;

    /// A zero vector of the current version.
    pub fn zero() -> Self {
        Self { version: Self::VERSION, counters: [0; Self::LEN] }
    }

    /// The counter for one component.
    pub fn get(&self, c: UsageComponent) -> u64 {
        self.counters[c as usize]
    }

    /// Sets the counter for one component.
    pub fn set(&mut self, c: UsageComponent, v: u64) {
        self.counters[c as usize] = v;
    }

    /// Component-wise `self - earlier`, or `None` if any counter went down
    /// or the versions differ.
    pub fn delta_since(&self, earlier: &UsageVector) -> Option<UsageVector> {
        if self.version != earlier.version {
            return None;
        }
        let mut out = UsageVector { version: self.version, counters: [0; Self::LEN] };
        for i in 0..Self::LEN {
            out.counters[i] = self.counters[i].checked_sub(earlier.counters[i])?;
        }
        Some(out)
    }

    /// True when no counter is below its value in `earlier`.
    pub fn is_monotonic_after(&self, earlier: &UsageVector) -> bool {
        self.delta_since(earlier).is_some()
    }

    /// `(name, value)` pairs in wire order, for tables and metrics.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        UsageComponent::ALL.iter().map(move |c| (c.name(), self.get(*c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_fixed() {
        for (i, c) in UsageComponent::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        assert_eq!(UsageComponent::ALL[0].name(), "cpu_user_ns");
        assert_eq!(UsageComponent::ALL[UsageVector::LEN - 1].name(), "wall_ns");
    }

    #[test]
    fn delta_refuses_decrease_and_version_mismatch() {
        let mut a = UsageVector::zero();
        let mut b = UsageVector::zero();
        a.set(UsageComponent::CpuUserNs, 10);
        b.set(UsageComponent::CpuUserNs, 25);
        assert_eq!(b.delta_since(&a).unwrap().get(UsageComponent::CpuUserNs), 15);
        assert!(a.delta_since(&b).is_none());
        b.version = 2;
        assert!(b.delta_since(&a).is_none());
    }

    #[test]
    fn json_round_trip() {
        let mut a = UsageVector::zero();
        a.set(UsageComponent::NetTxBytes, 7);
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<UsageVector>(&s).unwrap(), a);
    }
}
