//! The rows of `V` and what each costs (`s`): a row is one segment (one
//! benchmark, measured start to end), priced at its benchmark's price for
//! the machine-seconds of what it saturates plus `t` for the cpu it used on
//! the way ([`parts`]). A cpu-bound benchmark takes the machine for its
//! seconds (or the share of them other processes left free,
//! [`PriceBasis::Work`]); a disk benchmark the disk for its seconds; a
//! capacity benchmark the share of the machine's memory or network capacity
//! it held. With one price `t`, a second of every core, of the disk, of all
//! the memory or of the full link each cost `t` (the seed's `s = t 1` for
//! cpu-bound programs).

use super::bench::{self, Kind};
use super::{RunRecord, SegmentRecord};
use serde::{Deserialize, Serialize};
use zennet_protocol::{Amount, UsageComponent, UsageVector};

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

/// What a segment took, in machine-seconds: `(cpu, own)`. `own` is paid at
/// its benchmark's price, `cpu` (the cpu a benchmark that saturates
/// something else used on the way) at the machine price `t`:
/// - cpu-bound throughput benchmarks: `own` is their seconds (times the
///   share of the cpu others left free on the work basis), `cpu` is 0;
/// - disk benchmarks: `own` is their seconds (the disk was theirs), `cpu`
///   the share of the machine's cores they used;
/// - mem-hold: `own` is the share of the machine's memory held, times
///   seconds; net-loopback: the share of the network capacity used (the
///   busier direction); `cpu` as for disks.
///
/// A segment without its own usage (an older record) counts as cpu-bound.
pub fn parts(s: &SegmentRecord, basis: PriceBasis, cap: &Capacity) -> (f64, f64) {
    let b = bench::by_name(&s.plan.benchmark);
    let kind = b.map_or(Kind::Throughput, |b| b.kind);
    let disk = b.is_some_and(|b| b.uses_disk);
    let usable = cap.cores > 0 && cap.memory_bytes > 0 && cap.network_bytes_per_s > 0;
    match &s.usage {
        Some(u) if usable && (disk || kind != Kind::Throughput) => {
            let cpu = (u.get(UsageComponent::CpuUserNs) + u.get(UsageComponent::CpuSystemNs)) as f64 / (cap.cores as f64 * 1e9);
            let own = match kind {
                Kind::HoldsMemory => u.get(UsageComponent::MemByteSeconds) as f64 / cap.memory_bytes as f64,
                Kind::PacedNetwork => u.get(UsageComponent::NetRxBytes).max(u.get(UsageComponent::NetTxBytes)) as f64 / cap.network_bytes_per_s as f64,
                Kind::Throughput => s.actual_seconds,
            };
            (cpu, own)
        }
        _ => match basis {
            PriceBasis::Work => (0.0, s.actual_seconds * s.available_share.unwrap_or(1.0)),
            PriceBasis::Wall => (0.0, s.actual_seconds),
        },
    }
}

/// What a segment costs, base units: `t` per cpu machine-second, its
/// benchmark's price per own machine-second.
pub fn segment_cost(s: &SegmentRecord, t: Amount, price_of: &dyn Fn(&str) -> Amount, basis: PriceBasis, cap: &Capacity) -> f64 {
    let (cpu, own) = parts(s, basis, cap);
    t.0 as f64 * cpu + price_of(&s.plan.benchmark).0 as f64 * own
}

impl RunRecord {
    /// The run's price per second (base units): its segments' costs, the
    /// gaps between segments at `t` on the wall basis and free on the work
    /// basis, over the run's length.
    pub fn price(&self, t: Amount, price_of: &dyn Fn(&str) -> Amount, basis: PriceBasis, cap: &Capacity) -> f64 {
        let total = self.seconds().max(1e-9);
        let priced: f64 = self.segments.iter().map(|s| segment_cost(s, t, price_of, basis, cap)).sum();
        let gaps = match basis {
            PriceBasis::Wall => t.0 as f64 * (total - self.segments.iter().map(|s| s.actual_seconds).sum::<f64>()).max(0.0),
            PriceBasis::Work => 0.0,
        };
        (priced + gaps) / total
    }
}

/// The rows of `V` (usage per second) and their prices per second (`s`).
/// A row is a segment: one benchmark, measured from its start to its end
/// (the seed's "several measurements can be taken during a single running"),
/// priced as that program. Whole runs are the rows of records that lack
/// segment usage (older layouts).
pub fn rows(runs: &[RunRecord], t: Amount, price_of: &dyn Fn(&str) -> Amount, basis: PriceBasis, cap: &Capacity) -> (Vec<[f64; UsageVector::LEN]>, Vec<f64>) {
    let segments_measured = runs.iter().flat_map(|r| &r.segments).all(|s| s.usage.is_some());
    if segments_measured {
        runs.iter()
            .flat_map(|r| &r.segments)
            .map(|s| {
                let u = s.usage.as_ref().expect("checked above");
                let secs = u.get(UsageComponent::WallNs) as f64 / 1e9;
                (per_second(u), segment_cost(s, t, price_of, basis, cap) / secs.max(1e-9))
            })
            .unzip()
    } else {
        runs.iter().map(|r| (r.row(), r.price(t, price_of, basis, cap))).unzip()
    }
}

/// Usage per second over the usage's own wall time: a row of `V`.
pub fn per_second(u: &UsageVector) -> [f64; UsageVector::LEN] {
    let secs = (u.get(UsageComponent::WallNs) as f64 / 1e9).max(1e-9);
    let mut r = [0.0; UsageVector::LEN];
    for (i, v) in u.counters.iter().enumerate() {
        r[i] = *v as f64 / secs;
    }
    r
}

/// `V` from its rows.
pub fn matrix(rows: &[[f64; UsageVector::LEN]]) -> ndarray::Array2<f64> {
    ndarray::Array2::from_shape_fn((rows.len(), UsageVector::LEN), |(i, j)| rows[i][j])
}

/// Prices per second of every row of `V` (`s`), see [`rows`].
pub fn prices(runs: &[RunRecord], t: Amount, price_of: &dyn Fn(&str) -> Amount, basis: PriceBasis, cap: &Capacity) -> Vec<f64> {
    rows(runs, t, price_of, basis, cap).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parts of a segment's machine-seconds.
    fn machine_seconds(s: &SegmentRecord, basis: PriceBasis, cap: &Capacity) -> f64 {
        let (cpu, own) = parts(s, basis, cap);
        cpu + own
    }

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

    #[test]
    fn disks_pay_their_seconds_at_their_price_and_their_cpu_at_t() {
        // 2 s of disk-seq using one core of two: 2 own seconds, 1 cpu machine-second.
        let mut u = UsageVector::zero();
        u.set(UsageComponent::CpuUserNs, 2_000_000_000);
        u.set(UsageComponent::WallNs, 2_000_000_000);
        let mut d = seg("disk-seq", 2.0, 0.2);
        d.usage = Some(u);
        assert_eq!(parts(&d, PriceBasis::Work, &CAP), (1.0, 2.0));
        let table = |b: &str| if b == "disk-seq" { Amount(200) } else { Amount(100) };
        assert!((segment_cost(&d, Amount(100), &table, PriceBasis::Work, &CAP) - (100.0 + 400.0)).abs() < 1e-9);
        // Rows are segments when every segment has its usage, priced per second.
        let mut c = seg("cpu-int", 1.0, 1.0);
        let mut cu = UsageVector::zero();
        cu.set(UsageComponent::CpuUserNs, 2_000_000_000);
        cu.set(UsageComponent::WallNs, 1_000_000_000);
        c.usage = Some(cu);
        let r = run(vec![d.clone(), c], 3);
        let (v, s) = rows(std::slice::from_ref(&r), Amount(100), &table, PriceBasis::Work, &CAP);
        assert_eq!(v.len(), 2);
        assert!((s[0] - 250.0).abs() < 1e-9 && (s[1] - 100.0).abs() < 1e-9, "{s:?}");
        assert!((v[1][UsageComponent::CpuUserNs as usize] - 2e9).abs() < 1e-3);
        // A record without segment usage has one row per run.
        let old = run(vec![seg("cpu-int", 3.0, 1.0)], 3);
        assert_eq!(rows(&[old], Amount(100), &table, PriceBasis::Work, &CAP).0.len(), 1);
    }
}
