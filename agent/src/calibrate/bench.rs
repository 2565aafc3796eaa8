//! The canonical benchmarks (the seed's program `P` and its functions): what
//! each runs through `stress-ng`, how a run's random parameters are drawn
//! from a recorded seed, and how a benchmark's throughput is read back.
//!
//! Two kinds of benchmark. A throughput benchmark loads the whole machine's
//! cpu (one worker per core, as Algorithm 1 asks: maximal hardware load)
//! through one function (integer, float, memory, cache, disk, syscalls,
//! process creation). A capacity benchmark takes a share of a resource that
//! cpu load alone never prices: `mem-hold` holds a quarter of the available
//! memory while idle, `net-loopback` sends over loopback paced at the
//! machine's network capacity (a built-in kernel, [`super::kernels`]:
//! stress-ng cannot pace). Without them every run pays through its cpu time
//! and memory and network fit to rates of about zero.
//!
//! The randomness is in the mix: which benchmarks a run holds, in which
//! order, for how long each. Each benchmark's own knobs are fixed, so its
//! score is comparable across repeats (Phoronix-style).

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// What a benchmark loads, and so how its seconds are priced
/// ([`super::price`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Loads every core through one function: a second of it is a second
    /// of the machine.
    Throughput,
    /// Holds memory while idle: priced by the share of the machine's memory
    /// held plus the share of its cpu used.
    HoldsMemory,
    /// Sends at the machine's network capacity: priced by the share of that
    /// capacity used plus the share of cpu used.
    PacedNetwork,
}

/// One canonical benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Benchmark {
    /// Name in tables and records.
    pub name: &'static str,
    /// The stress-ng stressor it runs, or the built-in kernel's name (also
    /// its metrics' key).
    pub stressor: &'static str,
    /// Extra stress-ng options.
    pub opts: &'static [&'static str],
    /// True when it works on files in the scratch directory.
    pub uses_disk: bool,
    /// What it loads.
    pub kind: Kind,
    /// Unit of its score.
    pub unit: &'static str,
}

const fn tp(name: &'static str, stressor: &'static str, opts: &'static [&'static str], uses_disk: bool) -> Benchmark {
    Benchmark { name, stressor, opts, uses_disk, kind: Kind::Throughput, unit: SCORE_UNIT }
}

/// The canonical benchmarks, in table order.
pub const BENCHMARKS: &[Benchmark] = &[
    tp("cpu-int", "cpu", &["--cpu-method", "int64"], false),
    tp("cpu-float", "matrix", &["--matrix-method", "mult", "--matrix-size", "128"], false),
    tp("mem-bandwidth", "stream", &["--stream-l3-size", "16M"], false),
    tp("mem-latency", "randlist", &["--randlist-items", "1000000", "--randlist-size", "64"], false),
    // Without --cache-no-affinity the workers hop between cpus at random and
    // often share one: the machine is half loaded at a full machine's price.
    tp("cache", "cache", &["--cache-no-affinity"], false),
    tp("disk-seq", "hdd", &["--hdd-opts", "direct,wr-seq,rd-seq", "--hdd-bytes", "32M", "--hdd-write-size", "1M"], true),
    tp("disk-rand", "hdd", &["--hdd-opts", "direct,wr-rnd,rd-rnd", "--hdd-bytes", "16M", "--hdd-write-size", "4K"], true),
    tp("ctx-switch", "switch", &[], false),
    tp("fork", "fork", &[], false),
    Benchmark { name: "mem-hold", stressor: "vm", opts: &["--vm-hang", "0", "--vm-keep", "--vm-populate", "--vm-method", "write64"], uses_disk: false, kind: Kind::HoldsMemory, unit: "B held" },
    Benchmark { name: "net-loopback", stressor: "net-paced", opts: &[], uses_disk: false, kind: Kind::PacedNetwork, unit: "B/s" },
];

/// What the capacity benchmarks are sized by.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Bytes `mem-hold` holds (over all its workers).
    pub mem_hold_bytes: u64,
    /// Pace of `net-loopback`, bytes per second.
    pub network_bytes_per_s: u64,
    /// The program holding the built-in kernel (this agent).
    pub kernel_exe: std::path::PathBuf,
}

impl Sizes {
    /// `mem-hold` holds a quarter of the memory available now, at most
    /// `per_worker` bytes per worker (filling it costs about a cpu-second per
    /// GiB here) and at least 64 MiB.
    pub fn mem_hold_for(available_bytes: u64, workers: u32, per_worker: u64) -> u64 {
        (available_bytes / 4).min(per_worker.saturating_mul(workers.max(1) as u64)).max(64 << 20)
    }
}

/// The benchmark called `name`.
pub fn by_name(name: &str) -> Option<&'static Benchmark> {
    BENCHMARKS.iter().find(|b| b.name == name)
}

/// Unit of every score.
pub const SCORE_UNIT: &str = "bogo-ops/s";

/// SplitMix64: small, seedable, reproducible; enough to draw parameters.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// One benchmark for part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Benchmark name.
    pub benchmark: String,
    /// Planned length, seconds.
    pub seconds: f64,
    /// stress-ng workers.
    pub workers: u32,
}

/// Draws run plans so that every benchmark of `pool` appears before any
/// repeats (a shuffled deck), each run holding 1..=`max_segments` of them
/// with random shares of the run's `seconds`; `mem-hold` always has a run
/// to itself.
#[derive(Debug, Clone)]
pub struct Planner {
    rng: Rng,
    deck: Vec<&'static str>,
    workers: u32,
    min_segment_s: f64,
}

impl Planner {
    /// A planner drawing from `seed`, `workers` workers per segment.
    pub fn new(seed: u64, workers: u32, min_segment_s: f64) -> Planner {
        Planner { rng: Rng::new(seed), deck: Vec::new(), workers, min_segment_s }
    }

    /// The next run of `seconds`, drawing from `pool` (benchmark names).
    /// `runs_left` (this one included) is how many runs remain planned: a run
    /// holds enough segments for the rest of the deck to fit in them, so
    /// every benchmark runs at least once when the runs allow it.
    pub fn next_run(&mut self, seconds: f64, pool: &[&'static str], runs_left: usize) -> Vec<Segment> {
        let max_segments = ((seconds / self.min_segment_s).floor() as usize).clamp(1, 3);
        let pending = if self.deck.is_empty() { pool.len() } else { self.deck.len() };
        let k = (1 + self.rng.below(max_segments)).max(pending.div_ceil(runs_left.max(1))).min(max_segments);
        // A memory holder runs alone: its run is priced by what it holds.
        let solo = |d: &str| by_name(d).is_some_and(|b| b.kind == Kind::HoldsMemory);
        let others = pool.iter().filter(|d| !solo(d)).count();
        let mut names: Vec<&'static str> = Vec::with_capacity(k);
        loop {
            let want = if names.is_empty() { 1 } else { k.min(others) };
            if names.len() >= want {
                break;
            }
            match self.deck.iter().rposition(|d| !names.contains(d) && (names.is_empty() || !solo(d))) {
                Some(i) => {
                    let n = self.deck.remove(i);
                    names.push(n);
                    if solo(n) {
                        break;
                    }
                }
                None => {
                    // A fresh shuffled deck goes under what is left of the old one.
                    let mut more = pool.to_vec();
                    self.rng.shuffle(&mut more);
                    more.append(&mut self.deck);
                    self.deck = more;
                }
            }
        }
        // Shares in [0.5, 1.5), normalised, each at least the minimum segment.
        let w: Vec<f64> = names.iter().map(|_| 0.5 + self.rng.unit()).collect();
        let sum: f64 = w.iter().sum();
        let spare = seconds - self.min_segment_s * names.len() as f64;
        names
            .iter()
            .zip(&w)
            .map(|(n, wi)| Segment { benchmark: n.to_string(), seconds: self.min_segment_s + spare.max(0.0) * wi / sum, workers: self.workers })
            .collect()
    }
}

/// The command of one segment: runs until interrupted (SIGINT, after which
/// it writes its metrics to `yaml`), with a safety timeout.
pub fn command(b: &Benchmark, workers: u32, scratch: &Path, yaml: &Path, sizes: &Sizes) -> Command {
    let mut c;
    if b.kind == Kind::PacedNetwork {
        c = Command::new(&sizes.kernel_exe);
        c.args(["calibrate-kernel", "net-paced", "--bytes-per-second", &sizes.network_bytes_per_s.to_string(), "--timeout", "120", "--yaml"]).arg(yaml);
    } else {
        c = Command::new("stress-ng");
        c.arg(format!("--{}", b.stressor)).arg(workers.to_string()).args(b.opts);
        if b.kind == Kind::HoldsMemory {
            c.args(["--vm-bytes", &format!("{}b", sizes.mem_hold_bytes)]);
        }
        c.args(["--timeout", "120", "--metrics-brief", "--yaml"]).arg(yaml);
        c.arg("--temp-path").arg(scratch);
    }
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    c
}

/// Reads a stressor's total bogo ops and wall-clock seconds from
/// stress-ng's `--yaml` output.
pub fn parse_metrics(yaml: &str, stressor: &str) -> Option<(f64, f64)> {
    let mut in_it = false;
    let (mut ops, mut wall) = (None, None);
    for l in yaml.lines() {
        let t = l.trim().trim_start_matches("- ");
        if let Some(v) = t.strip_prefix("stressor:") {
            if in_it {
                break;
            }
            in_it = v.trim() == stressor;
            continue;
        }
        if !in_it {
            continue;
        }
        if let Some(v) = t.strip_prefix("bogo-ops:") {
            ops = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("wall-clock-time:") {
            wall = v.trim().parse().ok();
        }
    }
    match (ops, wall) {
        (Some(o), Some(w)) if w > 0.0 => Some((o, w)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_and_cover_the_pool() {
        let pool: Vec<&'static str> = BENCHMARKS.iter().map(|b| b.name).collect();
        let plan = |seed| {
            let mut p = Planner::new(seed, 2, 0.5);
            (0..8).map(|i| p.next_run(4.0, &pool, 8 - i)).collect::<Vec<_>>()
        };
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
        let runs = plan(7);
        for r in &runs {
            let total: f64 = r.iter().map(|s| s.seconds).sum();
            assert!((total - 4.0).abs() < 1e-9, "{total}");
            assert!(r.iter().all(|s| s.seconds >= 0.5));
        }
        let seen: std::collections::BTreeSet<&str> = runs.iter().flatten().map(|s| s.benchmark.as_str()).collect();
        assert_eq!(seen.len(), pool.len(), "every benchmark appears in 8 runs of up to 3");
        for r in &runs {
            assert!(r.len() == 1 || r.iter().all(|s| s.benchmark != "mem-hold"), "mem-hold runs alone: {r:?}");
        }
        // Quick mode's shape: 10 runs of at most 2 segments hold all 11, for any seed.
        for seed in 0..200 {
            let mut p = Planner::new(seed, 2, 0.5);
            let seen: std::collections::BTreeSet<String> = (0..10).flat_map(|i| p.next_run(1.4, &pool, 10 - i)).map(|s| s.benchmark).collect();
            assert_eq!(seen.len(), pool.len(), "seed {seed}: {seen:?}");
        }
    }

    #[test]
    fn metrics_are_read_from_yaml() {
        let y = "---\nmetrics:\n    - stressor: cpu\n      bogo-ops: 1033\n      wall-clock-time: 1.006884\n    - stressor: hdd\n      bogo-ops: 5\n      wall-clock-time: 2.0\n...\n";
        assert_eq!(parse_metrics(y, "cpu"), Some((1033.0, 1.006884)));
        assert_eq!(parse_metrics(y, "hdd"), Some((5.0, 2.0)));
        assert_eq!(parse_metrics(y, "sock"), None);
        assert_eq!(parse_metrics("metrics:\n - stressor: cpu\n   bogo-ops: 3\n", "cpu"), None);
    }
}
