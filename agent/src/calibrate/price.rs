//! What each calibration run costs (`s`): its segments' benchmark prices for
//! the machine-seconds they took. A throughput benchmark takes the machine
//! for its wall seconds (or the share of them other processes left free,
//! [`PriceBasis::Work`]); a capacity benchmark takes the share of the
//! machine's memory or network capacity it held plus the share of its cpu
//! it used, from its own measured usage. With one price `t` on an idle
//! machine a run of throughput benchmarks costs `t` per second (the seed's
//! `s = t 1`).

use super::bench::{self, Kind};
use super::{RunRecord, SegmentRecord};
use serde::{Deserialize, Serialize};
use zennet_protocol::{Amount, UsageComponent};

/// How a throughput benchmark's seconds are counted when it is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PriceBasis {
    /// Seconds of the machine the run had: wall seconds times the share of
    /// the machine's cpu that other processes' user time left free during
    /// the segment. On an idle machine this is wall time;
    /// on a busy one a run is not charged for the part someone else held.
    #[default]
    Work,
    /// Wall-clock seconds: `s = t T` literally.
    Wall,
}

/// The machine's capacities a capacity benchmark's share is taken of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Cores.
    pub cores: u32,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Network capacity, bytes per second (each direction).
    pub network_bytes_per_s: u64,
}

/// Machine-seconds a segment took: what its benchmark's price per second is
/// paid for.
pub fn machine_seconds(s: &SegmentRecord, basis: PriceBasis, cap: &Capacity) -> f64 {
    let kind = bench::by_name(&s.plan.benchmark).map_or(Kind::Throughput, |b| b.kind);
    match (kind, &s.usage) {
        (Kind::HoldsMemory | Kind::PacedNetwork, Some(u)) if cap.cores > 0 && cap.memory_bytes > 0 && cap.network_bytes_per_s > 0 => {
            let cpu = (u.get(UsageComponent::CpuUserNs) + u.get(UsageComponent::CpuSystemNs)) as f64 / (cap.cores as f64 * 1e9);
            let held = match kind {
                Kind::HoldsMemory => u.get(UsageComponent::MemByteSeconds) as f64 / cap.memory_bytes as f64,
                _ => u.get(UsageComponent::NetRxBytes).max(u.get(UsageComponent::NetTxBytes)) as f64 / cap.network_bytes_per_s as f64,
            };
            cpu + held
        }
        _ => match basis {
            PriceBasis::Work => s.actual_seconds * s.available_share.unwrap_or(1.0),
            PriceBasis::Wall => s.actual_seconds,
        },
    }
}

impl RunRecord {
    /// The run's price per second (base units): each segment at its
    /// benchmark's price for its [`machine_seconds`], the gaps between
    /// segments at `t` on the wall basis and free on the work basis, over
    /// the run's length.
    pub fn price(&self, t: Amount, price_of: &dyn Fn(&str) -> Amount, basis: PriceBasis, cap: &Capacity) -> f64 {
        let total = self.seconds().max(1e-9);
        let priced: f64 = self.segments.iter().map(|s| price_of(&s.plan.benchmark).0 as f64 * machine_seconds(s, basis, cap)).sum();
        let gaps = match basis {
            PriceBasis::Wall => t.0 as f64 * (total - self.segments.iter().map(|s| s.actual_seconds).sum::<f64>()).max(0.0),
            PriceBasis::Work => 0.0,
        };
        (priced + gaps) / total
    }
}

/// Prices per second of every run of `runs` (`s`).
pub fn prices(runs: &[RunRecord], t: Amount, price_of: &dyn Fn(&str) -> Amount, basis: PriceBasis, cap: &Capacity) -> Vec<f64> {
    runs.iter().map(|r| r.price(t, price_of, basis, cap)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zennet_protocol::UsageVector;

    const CAP: Capacity = Capacity { cores: 2, memory_bytes: 8 << 30, network_bytes_per_s: 125_000_000 };

    fn seg(b: &str, secs: f64, share: f64) -> SegmentRecord {
        SegmentRecord { plan: bench::Segment { benchmark: b.into(), seconds: secs, workers: 2 }, actual_seconds: secs, score: Some(1.0), available_share: Some(share), usage: None }
    }

    fn run(segments: Vec<SegmentRecord>, secs: u64) -> RunRecord {
        let mut usage = UsageVector::zero();
        usage.set(UsageComponent::WallNs, secs * 1_000_000_000);
        RunRecord { segments, usage, samples: 3 }
    }

    #[test]
    fn run_prices_follow_the_basis_and_the_table() {
        let r = run(vec![seg("cpu-int", 1.0, 1.0), seg("disk-seq", 2.0, 0.5)], 4);
        let t = Amount(100);
        let flat = |_: &str| t;
        // Wall: 3 s of segments at t plus a 1 s gap at t, over 4 s: t.
        assert!((r.price(t, &flat, PriceBasis::Wall, &CAP) - 100.0).abs() < 1e-9);
        // Work: 1 s + 2 s * 0.5 of the machine, gaps free: 2 machine-seconds over 4 s.
        assert!((r.price(t, &flat, PriceBasis::Work, &CAP) - 50.0).abs() < 1e-9);
        let table = |b: &str| if b == "disk-seq" { Amount(200) } else { t };
        assert!((r.price(t, &table, PriceBasis::Wall, &CAP) - (100.0 + 400.0 + 100.0) / 4.0).abs() < 1e-9);
    }

    #[test]
    fn capacity_benchmarks_pay_for_the_share_they_held_plus_their_cpu() {
        // 2 s holding a quarter of memory, using half a core for 1 s in all.
        let mut u = UsageVector::zero();
        u.set(UsageComponent::MemByteSeconds, 2 * (2u64 << 30));
        u.set(UsageComponent::CpuSystemNs, 1_000_000_000);
        let mut m = seg("mem-hold", 2.0, 0.3);
        m.usage = Some(u);
        // 0.5 machine-seconds of memory + 0.5 of cpu (1 core-second of 2), on both bases.
        for basis in [PriceBasis::Work, PriceBasis::Wall] {
            assert!((machine_seconds(&m, basis, &CAP) - 1.0).abs() < 1e-9);
        }
        // The network: the busier direction against the capacity.
        let mut u = UsageVector::zero();
        u.set(UsageComponent::NetTxBytes, 250_000_000);
        u.set(UsageComponent::NetRxBytes, 125_000_000);
        let mut n = seg("net-loopback", 2.0, 1.0);
        n.usage = Some(u);
        assert!((machine_seconds(&n, PriceBasis::Work, &CAP) - 2.0).abs() < 1e-9);
        // A record without the segment's usage (older layout) counts seconds.
        assert!((machine_seconds(&seg("mem-hold", 2.0, 0.5), PriceBasis::Work, &CAP) - 1.0).abs() < 1e-9);
        let r = run(vec![m], 2);
        assert!((r.price(Amount(100), &|_| Amount(100), PriceBasis::Work, &CAP) - 50.0).abs() < 1e-9);
    }
}
