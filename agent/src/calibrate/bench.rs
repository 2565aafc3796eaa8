//! The canonical benchmarks (the seed's program `P` and its functions): what
//! each runs through `stress-ng`, how a run's random parameters are drawn
//! from a recorded seed, and how a benchmark's throughput is read back.
//!
//! Every segment of a run loads the whole machine (one worker per core, as
//! Algorithm 1 asks: maximal hardware load); the randomness is in the mix:
//! which benchmarks a run holds, in which order, for how long each. Each
//! benchmark's own knobs are fixed, so its throughput is comparable across
//! repeats (Phoronix-style scores).

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// One canonical benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Benchmark {
    /// Name in tables and records.
    pub name: &'static str,
    /// The stress-ng stressor it runs (also its metrics' key).
    pub stressor: &'static str,
    /// Extra stress-ng options.
    pub opts: &'static [&'static str],
    /// True when it works on files in the scratch directory.
    pub uses_disk: bool,
}

/// The canonical benchmarks, in table order.
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark { name: "cpu-int", stressor: "cpu", opts: &["--cpu-method", "int64"], uses_disk: false },
    Benchmark { name: "cpu-float", stressor: "matrix", opts: &["--matrix-method", "mult", "--matrix-size", "128"], uses_disk: false },
    Benchmark { name: "mem-bandwidth", stressor: "stream", opts: &["--stream-l3-size", "16M"], uses_disk: false },
    Benchmark { name: "mem-latency", stressor: "randlist", opts: &["--randlist-items", "1000000", "--randlist-size", "64"], uses_disk: false },
    Benchmark { name: "cache", stressor: "cache", opts: &[], uses_disk: false },
    Benchmark { name: "disk-seq", stressor: "hdd", opts: &["--hdd-opts", "direct,wr-seq,rd-seq", "--hdd-bytes", "32M", "--hdd-write-size", "1M"], uses_disk: true },
    Benchmark { name: "disk-rand", stressor: "hdd", opts: &["--hdd-opts", "direct,wr-rnd,rd-rnd", "--hdd-bytes", "16M", "--hdd-write-size", "4K"], uses_disk: true },
    Benchmark { name: "ctx-switch", stressor: "switch", opts: &[], uses_disk: false },
    Benchmark { name: "fork", stressor: "fork", opts: &[], uses_disk: false },
    Benchmark { name: "net-loopback", stressor: "sock", opts: &["--sock-port", "23000"], uses_disk: false },
];

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
/// with random shares of the run's `seconds`.
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
    pub fn next_run(&mut self, seconds: f64, pool: &[&'static str]) -> Vec<Segment> {
        let max_segments = ((seconds / self.min_segment_s).floor() as usize).clamp(1, 3);
        let k = 1 + self.rng.below(max_segments);
        let mut names = Vec::with_capacity(k);
        while names.len() < k.min(pool.len()) {
            match self.deck.iter().rposition(|d| !names.contains(d)) {
                Some(i) => names.push(self.deck.remove(i)),
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

/// The stress-ng command of one segment: runs until interrupted (SIGINT,
/// after which it writes its metrics to `yaml`), with a safety timeout.
pub fn command(b: &Benchmark, workers: u32, scratch: &Path, yaml: &Path) -> Command {
    let mut c = Command::new("stress-ng");
    c.arg(format!("--{}", b.stressor)).arg(workers.to_string()).args(b.opts);
    c.args(["--timeout", "120", "--metrics-brief", "--yaml"]).arg(yaml);
    c.arg("--temp-path").arg(scratch);
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
            (0..8).map(|_| p.next_run(4.0, &pool)).collect::<Vec<_>>()
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
