//! Calibration: the seed's Algorithm 1 on this machine. Runs the canonical
//! benchmarks ([`bench`]) with seeded random mixes, each run in its own
//! cgroup ([`sandbox`]) for `T` seconds, samples the usage vector, and fits
//! per-component rates `r = s V+` ([`fit`]) over one row per segment, each
//! priced as its program ([`price`]). Owns the [`CalibrationRecord`]
//! (everything measured: `V`, `s`, `r`, singular values, residual,
//! leave-one-out errors, scores) and the hardware [`fingerprint`].

pub mod bench;
pub mod fit;
pub mod kernels;
pub mod price;
pub mod sandbox;
mod segment;

pub use price::{prices, Capacity, PriceBasis};

use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use zennet_protocol::pricing::{Fingerprint, ScoreSummary};
use zennet_protocol::{Amount, CalibrationSummary, Rates, UsageComponent, UsageVector};

/// How to calibrate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Length of one run, seconds (`T`).
    pub seconds: f64,
    /// Runs always made (`N`).
    pub runs: usize,
    /// Cap on runs when scores are still noisy.
    pub max_runs: usize,
    /// Scores are repeated until their relative std dev is below this.
    pub rsd_target: f64,
    /// The provider's price for the whole machine per second (`t`).
    pub price_per_second: Amount,
    /// Per-benchmark prices per second, replacing `t` for those benchmarks.
    pub benchmark_prices: BTreeMap<String, Amount>,
    /// What a second of a benchmark is: wall time, or full-load work.
    pub price_basis: PriceBasis,
    /// Seed of the random run parameters (recorded).
    pub seed: u64,
    /// Relative singular value threshold of the fit.
    pub threshold: f64,
    /// Shortest segment of a run, seconds.
    pub min_segment_s: f64,
    /// Scratch directory (created and removed).
    pub work_dir: PathBuf,
    /// The machine's network capacity, Mbit/s (None: the default route's
    /// interface speed, else 1000).
    pub network_mbps: Option<u64>,
    /// The program holding the built-in kernels (None: this one).
    pub kernel_exe: Option<PathBuf>,
    /// Most memory `mem-hold` takes per worker, bytes: the more it holds,
    /// the less other rows' memory blurs the memory rate, and the longer
    /// it takes to fill.
    pub mem_hold_per_worker: u64,
}

impl Config {
    /// Quick mode: 10 runs of 1.4 s (under 20 s on a 2-core machine): one
    /// more run than fitted components, so leave-one-out still means something.
    pub fn quick() -> Config {
        Config { seconds: 1.4, runs: 10, max_runs: 10, mem_hold_per_worker: 512 << 20, ..Config::full() }
    }

    /// Full mode: 20 runs of 3 s, up to 24 while scores are noisy (under 90 s).
    pub fn full() -> Config {
        Config {
            seconds: 3.0,
            runs: 20,
            max_runs: 24,
            rsd_target: 0.035,
            price_per_second: Amount(100_000),
            benchmark_prices: BTreeMap::new(),
            price_basis: PriceBasis::Work,
            seed: 0,
            threshold: 0.05,
            min_segment_s: 0.5,
            work_dir: PathBuf::from("/var/lib/zennet/calibrate"),
            network_mbps: None,
            kernel_exe: None,
            mem_hold_per_worker: 1 << 30,
        }
    }

    /// Checks every option, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if !(self.seconds.is_finite() && (0.5..=600.0).contains(&self.seconds)) {
            bail!("--seconds {} out of range: a run lasts 0.5..=600 s", self.seconds);
        }
        if self.runs == 0 || self.runs > 1000 {
            bail!("--runs {} out of range: 1..=1000", self.runs);
        }
        if self.max_runs < self.runs || self.max_runs > 1000 {
            bail!("run cap {} must be between --runs ({}) and 1000", self.max_runs, self.runs);
        }
        if self.price_per_second == Amount::ZERO {
            bail!("--price-per-second must be above zero");
        }
        for (b, p) in &self.benchmark_prices {
            if bench::by_name(b).is_none() {
                bail!("unknown benchmark {b:?} in a per-benchmark price; known: {}", bench::BENCHMARKS.iter().map(|b| b.name).collect::<Vec<_>>().join(", "));
            }
            if *p == Amount::ZERO {
                bail!("price of benchmark {b} must be above zero");
            }
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            bail!("singular value threshold {} must be in (0, 1)", self.threshold);
        }
        if let Some(m) = self.network_mbps {
            if m == 0 || m.saturating_mul(125_000) > kernels::MAX_BYTES_PER_S {
                bail!("--network-mbps {m} out of range: 1..={}", kernels::MAX_BYTES_PER_S / 125_000);
            }
        }
        Ok(())
    }

    /// The network capacity `net-loopback` is paced at, bytes per second.
    pub fn network_bytes_per_s(&self) -> u64 {
        self.network_mbps.unwrap_or_else(|| default_route_mbps().unwrap_or(DEFAULT_NETWORK_MBPS)).saturating_mul(125_000).min(kernels::MAX_BYTES_PER_S)
    }

    /// Price per second of one benchmark, base units.
    pub fn price_of(&self, benchmark: &str) -> Amount {
        self.benchmark_prices.get(benchmark).copied().unwrap_or(self.price_per_second)
    }
}

/// A segment as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// The planned parameters.
    #[serde(flatten)]
    pub plan: bench::Segment,
    /// Measured length, from spawn to exit, seconds.
    pub actual_seconds: f64,
    /// Throughput, bogo ops per second (none if stress-ng reported nothing).
    pub score: Option<f64>,
    /// Share of the machine's cpu not taken by other processes, 0..=1.
    #[serde(default)]
    pub available_share: Option<f64>,
    /// Usage over the segment (what a capacity benchmark is priced by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageVector>,
}

/// One run: its parameters, usage and price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The segments, in order.
    pub segments: Vec<SegmentRecord>,
    /// Usage over the run (same components and units as a container's).
    pub usage: UsageVector,
    /// Samples taken.
    pub samples: u32,
}

impl RunRecord {
    /// Measured length, seconds.
    pub fn seconds(&self) -> f64 {
        self.usage.get(UsageComponent::WallNs) as f64 / 1e9
    }

    /// The run's usage per second (its row of `V` in older records).
    pub fn row(&self) -> [f64; UsageVector::LEN] {
        price::per_second(&self.usage)
    }
}

/// Everything a calibration measured and fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// Record layout version.
    pub version: u16,
    /// Hardware measured.
    pub fingerprint: Fingerprint,
    /// When, seconds since the Unix epoch.
    pub time_unix_s: u64,
    /// Seed of the run parameters.
    pub seed: u64,
    /// Run length asked for, seconds.
    pub seconds: f64,
    /// `t`, base units per second.
    pub price_per_second: Amount,
    /// Per-benchmark prices, base units per second.
    pub benchmark_prices: BTreeMap<String, Amount>,
    /// How run seconds were counted.
    #[serde(default)]
    pub price_basis: PriceBasis,
    /// The runs; each segment's usage per second is a row of `V`.
    pub runs: Vec<RunRecord>,
    /// `s`: price per second of each row of `V`, base units.
    pub s: Vec<f64>,
    /// The fit (rates in base units per unit, singular values, rank,
    /// residual, leave-one-out errors).
    pub fit: fit::Fit,
    /// Components whose unconstrained rate came out negative and were fixed
    /// at zero (a rate must not pay the publisher for using a resource).
    pub clamped: Vec<String>,
    /// The rates in fixed point: what offers and costs use.
    pub rates: Rates,
    /// Benchmark throughputs over their repeats.
    pub scores: Vec<ScoreSummary>,
    /// Wall time of the whole calibration, seconds.
    pub elapsed_s: f64,
    /// Network capacity `net-loopback` was paced at, bytes per second.
    #[serde(default)]
    pub network_bytes_per_s: u64,
    /// Bytes `mem-hold` held.
    #[serde(default)]
    pub mem_hold_bytes: u64,
}

impl CalibrationRecord {
    /// Current layout.
    pub const VERSION: u16 = 1;

    /// The capacities capacity benchmarks' shares are taken of.
    pub fn capacity(&self) -> Capacity {
        Capacity { cores: self.fingerprint.cores, memory_bytes: self.fingerprint.memory_bytes, network_bytes_per_s: self.network_bytes_per_s }
    }

    /// `V`, one row per segment (per run for older records), see
    /// [`price::rows`].
    pub fn v(&self) -> Array2<f64> {
        let t = self.price_per_second;
        price::matrix(&price::rows(&self.runs, t, &|_| t, self.price_basis, &self.capacity()).0)
    }

    /// The summary that goes into an offer.
    pub fn summary(&self) -> CalibrationSummary {
        CalibrationSummary {
            fingerprint: self.fingerprint.clone(),
            time_unix_s: self.time_unix_s,
            price_per_second: self.price_per_second,
            rates: self.rates,
            rank: self.fit.rank.max(1) as u32,
            residual: self.fit.residual,
            holdout_error: self.fit.loo_median(),
            runs: self.runs.len() as u32,
            scores: self.scores.clone(),
        }
    }
}

/// Progress of a calibration, for a progress bar.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Run being made (1-based) and the planned count.
    pub run: usize,
    pub of: usize,
    /// Benchmark now running.
    pub benchmark: &'a str,
}

/// Network capacity assumed when the default route's interface does not
/// tell its speed (virtual NICs say -1), Mbit/s.
pub const DEFAULT_NETWORK_MBPS: u64 = 1000;

/// Speed of the interface of the default IPv4 route, Mbit/s, if it tells.
pub fn default_route_mbps() -> Option<u64> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.len() > 2 && f[1] == "00000000")?.first()?.to_string();
    let speed: i64 = std::fs::read_to_string(format!("/sys/class/net/{iface}/speed")).ok()?.trim().parse().ok()?;
    u64::try_from(speed).ok().filter(|s| *s > 0)
}

/// Memory available now (`MemAvailable`), bytes.
pub fn mem_available() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).map_or(256 << 20, |kib| kib * 1024)
}

/// This machine's fingerprint: cpu model, cores, memory, disks.
pub fn fingerprint() -> Fingerprint {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024);
    let mut disks: Vec<String> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !["loop", "ram", "zram", "dm-", "sr", "nbd"].iter().any(|p| n.starts_with(p)))
        .map(|n| {
            let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{n}/size")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            format!("{n}:{}", sectors * 512)
        })
        .collect();
    disks.sort();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    Fingerprint { cpu_model: cpu_model.chars().take(CalibrationSummary::MAX_STR).collect(), cores, memory_bytes, disks }
}

/// Score statistics per benchmark from the runs so far.
pub fn scores(runs: &[RunRecord]) -> Vec<ScoreSummary> {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in runs.iter().flat_map(|r| &r.segments) {
        if let Some(x) = s.score {
            by.entry(s.plan.benchmark.as_str()).or_default().push(x);
        }
    }
    bench::BENCHMARKS
        .iter()
        .filter_map(|b| by.get(b.name).map(|v| (b, v)))
        .map(|(b, v)| {
            let n = v.len() as f64;
            let avg = v.iter().sum::<f64>() / n;
            let var = if v.len() > 1 { v.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
            ScoreSummary {
                benchmark: b.name.to_string(),
                unit: b.unit.into(),
                repeats: v.len() as u32,
                min: v.iter().copied().fold(f64::INFINITY, f64::min),
                avg,
                max: v.iter().copied().fold(0.0, f64::max),
                std_dev: var.sqrt(),
            }
        })
        .collect()
}

/// Components the fit leaves out by default: wall time. With the seed's
/// default prices (`s = t 1`, every run at full load) duration alone
/// explains every price exactly, and the fit would collapse into the
/// Golem-style "price per second" the seed sets out to replace; the seed
/// prices what the hardware does (procfs counters), so a container that
/// holds memory pays through `mem_byte_seconds`, not through being alive.
pub const NOT_FITTED: &[UsageComponent] = &[UsageComponent::WallNs];

/// Fits `V`, `s` with non-negative rates, leaving the columns in `skip` at
/// zero: an unconstrained rate below zero fixes that component at zero and
/// the rest are refitted (an active set, one component at a time). Returns
/// the fit (its `unmoved` names only columns that are zero in `v`) and the
/// components fixed at zero.
///
/// Each row with a price is divided by it first (`V_i / s_i` against `1`,
/// the seed's `s 1 = U r` with every program's price as its unit), so the
/// fit weighs relative errors alike: a mem-hold row costing a tenth of a
/// cpu row counts as much, instead of its memory rate being left to the
/// few-percent residuals of the big rows. The fit's residual and
/// leave-one-out errors are then relative errors of the prices.
pub fn fit_nonneg(v: &Array2<f64>, s: &Array1<f64>, threshold: f64, skip: &[usize]) -> Result<(fit::Fit, Vec<String>), fit::FitError> {
    let mut vm = v.clone();
    let mut sm = s.clone();
    for (i, si) in s.iter().enumerate() {
        if *si > 0.0 && si.is_finite() {
            vm.row_mut(i).mapv_inplace(|x| x / si);
            sm[i] = 1.0;
        }
    }
    for &j in skip {
        vm.column_mut(j).fill(0.0);
    }
    let mut clamped = Vec::new();
    loop {
        let mut f = fit::fit(vm.view(), sm.view(), fit::FitOptions { threshold, leave_one_out: true })?;
        let worst = f.rates.iter().enumerate().filter(|(_, r)| **r < 0.0).min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        match worst {
            Some(i) => {
                vm.column_mut(i).fill(0.0);
                clamped.push(UsageComponent::ALL[i].name().to_string());
            }
            None => {
                f.unmoved = (0..v.ncols()).filter(|&j| v.column(j).iter().all(|x| *x == 0.0)).collect();
                return Ok((f, clamped));
            }
        }
    }
}

/// (Re)computes a record's prices `s`, fit, clamped components and fixed-point rates
/// from its runs and prices, at relative singular value `threshold`.
pub fn refit(rec: &mut CalibrationRecord, threshold: f64) -> Result<()> {
    let table = rec.benchmark_prices.clone();
    let t = rec.price_per_second;
    let (rows, s) = price::rows(&rec.runs, t, &|b| table.get(b).copied().unwrap_or(t), rec.price_basis, &rec.capacity());
    rec.s = s;
    let skip: Vec<usize> = NOT_FITTED.iter().map(|c| *c as usize).collect();
    let (f, clamped) = fit_nonneg(&price::matrix(&rows), &Array1::from(rec.s.clone()), threshold, &skip).context("fit rates")?;
    let mut r = [0.0; UsageVector::LEN];
    for (i, x) in f.rates.iter().enumerate() {
        r[i] = x.max(0.0);
    }
    rec.rates = Rates::from_base_per_unit(&r).context("fitted rates")?;
    rec.fit = f;
    rec.clamped = clamped;
    Ok(())
}

/// Calibrates this machine. `progress` is called as each segment starts.
/// Every cgroup, process, file and namespace made is gone when it returns.
pub fn calibrate(cfg: &Config, progress: &mut dyn FnMut(Progress)) -> Result<CalibrationRecord> {
    cfg.validate()?;
    let _signals = segment::SignalGuard::install();
    let started = Instant::now();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let pool: Vec<&'static str> = bench::BENCHMARKS.iter().map(|b| b.name).collect();
    let sizes = bench::Sizes {
        mem_hold_bytes: bench::Sizes::mem_hold_for(mem_available(), workers, cfg.mem_hold_per_worker),
        network_bytes_per_s: cfg.network_bytes_per_s(),
        kernel_exe: cfg.kernel_exe.clone().map_or_else(std::env::current_exe, Ok).context("find this program (it holds the built-in kernels)")?,
    };
    let mut planner = bench::Planner::new(cfg.seed, workers, cfg.min_segment_s);
    let mut sb = sandbox::Sandbox::create(&cfg.work_dir).with_context(|| format!("calibration sandbox in {}", cfg.work_dir.display()))?;
    let yaml = cfg.work_dir.join("metrics.yaml");
    let mut runs: Vec<RunRecord> = Vec::new();
    let result = (|| -> Result<()> {
        while runs.len() < cfg.max_runs {
            let pool_now: Vec<&'static str> = if runs.len() < cfg.runs {
                pool.clone()
            } else {
                // Extra runs only for throughput benchmarks whose scores
                // are still noisy (a capacity benchmark's score is its pace
                // or what it held, not a measurement of the hardware).
                let sc = scores(&runs);
                let noisy: Vec<&'static str> = pool
                    .iter()
                    .copied()
                    .filter(|b| bench::by_name(b).is_some_and(|b| b.kind == bench::Kind::Throughput))
                    .filter(|b| sc.iter().find(|s| s.benchmark == *b).is_none_or(|s| s.repeats < 2 || s.std_dev > cfg.rsd_target * s.avg))
                    .collect();
                if noisy.is_empty() {
                    break;
                }
                noisy
            };
            let runs_left = if runs.len() < cfg.runs { cfg.runs - runs.len() } else { usize::MAX };
            let plan = planner.next_run(cfg.seconds, &pool_now, runs_left);
            let mut run = sb.start_run()?;
            let mut segs = Vec::new();
            for seg in &plan {
                progress(Progress { run: runs.len() + 1, of: cfg.runs, benchmark: &seg.benchmark });
                match segment::run(&mut run, seg, &sb.scratch(), &yaml, &sizes) {
                    Ok(s) => segs.push(s),
                    Err(e) => {
                        let _ = run.finish();
                        return Err(e);
                    }
                }
            }
            let usage = run.usage();
            let samples = run.samples();
            run.finish()?;
            runs.push(RunRecord { segments: segs, usage, samples });
        }
        Ok(())
    })();
    let closed = sb.close();
    result?;
    closed?;
    let mut rec = CalibrationRecord {
        version: CalibrationRecord::VERSION,
        fingerprint: fingerprint(),
        time_unix_s: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        seed: cfg.seed,
        seconds: cfg.seconds,
        price_per_second: cfg.price_per_second,
        benchmark_prices: cfg.benchmark_prices.clone(),
        price_basis: cfg.price_basis,
        runs,
        s: vec![],
        fit: fit::Fit { rates: vec![], singular_values: vec![], rank: 0, unmoved: vec![], residual: 0.0, loo_errors: vec![] },
        clamped: vec![],
        rates: Rates::zero(),
        scores: vec![],
        elapsed_s: 0.0,
        network_bytes_per_s: sizes.network_bytes_per_s,
        mem_hold_bytes: sizes.mem_hold_bytes,
    };
    refit(&mut rec, cfg.threshold)?;
    rec.scores = scores(&rec.runs);
    rec.elapsed_s = started.elapsed().as_secs_f64();
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonneg_fit_fixes_negative_rates_at_zero_and_skips_wall() {
        // Price = 2 * col0; col1 anti-correlated noise would get a negative rate.
        let v = ndarray::array![[1.0, 0.0, 1.0], [2.0, 0.5, 1.0], [3.0, 0.2, 1.0], [4.0, 0.9, 1.0]];
        let s = Array1::from(vec![2.0, 3.9, 6.0, 7.8]);
        let (f, clamped) = fit_nonneg(&v, &s, 1e-9, &[2]).unwrap();
        assert_eq!(f.rates[2], 0.0, "skipped column");
        assert!(f.rates.iter().all(|r| *r >= 0.0), "{:?}", f.rates);
        assert_eq!(clamped, vec![UsageComponent::ALL[1].name().to_string()]);
        assert!(f.unmoved.is_empty(), "a clamped or skipped column still moved");
    }
}
