//! `zennet-agent calibrate` (progress, then the benchmark table and rates,
//! or the whole record as JSON; stored in the agent's redb) and
//! `zennet-agent bench-calibration` (one line per figure for `make bench`).

use crate::calibrate::{self, bench, fit, CalibrationRecord, Config, Progress};
use crate::store::Store;
use anyhow::{bail, Context, Result};
use clap::Args;
use ndarray::{Array1, Array2};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use zennet_protocol::{Amount, UsageComponent};

/// Options of `calibrate`.
#[derive(Args, Debug, Clone)]
pub struct CalibrateArgs {
    /// Quick mode: fewer, shorter runs (under 20 s).
    #[arg(long)]
    pub quick: bool,
    /// Length of each run, seconds (T).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Number of runs (N).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Price of the whole machine per second, XEN (t).
    #[arg(long, default_value = "0.001")]
    pub price_per_second: String,
    /// A benchmark's own price per second, XEN: NAME=PRICE (repeatable).
    #[arg(long = "benchmark-price", value_name = "NAME=XEN")]
    pub benchmark_prices: Vec<String>,
    /// How run seconds are priced: full-load work (default) or wall time.
    #[arg(long, value_enum, default_value_t = calibrate::PriceBasis::Work)]
    pub price_basis: calibrate::PriceBasis,
    /// Seed of the random run parameters (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// This machine's network capacity, Mbit/s: the pace of the
    /// net-loopback benchmark, whose seconds cost `t` when it fills it
    /// (default: the default route's interface speed, else 1000).
    #[arg(long, value_name = "MBPS")]
    pub network_mbps: Option<u64>,
    /// Print the whole record as JSON instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Agent state directory (scratch space; the store's default home).
    #[arg(long, default_value = "/var/lib/zennet")]
    pub state_dir: PathBuf,
    /// redb store to write the record to (default: STATE_DIR/agent.redb).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Do not store the record.
    #[arg(long)]
    pub no_store: bool,
}

impl CalibrateArgs {
    /// The calibration configuration these options describe.
    pub fn config(&self) -> Result<Config> {
        let mut c = if self.quick { Config::quick() } else { Config::full() };
        if let Some(s) = self.seconds {
            c.seconds = s;
        }
        if let Some(n) = self.runs {
            c.runs = n;
            c.max_runs = if self.quick { n } else { n + n / 4 };
        }
        c.price_per_second = Amount::parse_xen(&self.price_per_second).map_err(|e| anyhow::anyhow!("--price-per-second: {e}"))?;
        for bp in &self.benchmark_prices {
            let (n, p) = bp.split_once('=').with_context(|| format!("--benchmark-price {bp:?}: expected NAME=XEN"))?;
            let p = Amount::parse_xen(p).map_err(|e| anyhow::anyhow!("--benchmark-price {n}: {e}"))?;
            c.benchmark_prices.insert(n.to_string(), p);
        }
        c.price_basis = self.price_basis;
        c.network_mbps = self.network_mbps;
        c.seed = self.seed.unwrap_or_else(clock_seed);
        c.work_dir = self.state_dir.join(format!("calibrate-{}", std::process::id()));
        c.validate()?;
        Ok(c)
    }
}

/// A seed from the clock and the pid (recorded, so a run can be repeated).
pub fn clock_seed() -> u64 {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    n ^ ((std::process::id() as u64) << 32)
}

/// A progress bar on stderr.
pub fn progress_bar(label: &str) -> impl FnMut(Progress) + '_ {
    let start = Instant::now();
    move |p: Progress| {
        let width = 30;
        let done = (p.run - 1).min(p.of) * width / p.of.max(1);
        eprint!("\r{label} [{}{}] run {}/{} {:<14} {:>5.1}s", "#".repeat(done), ".".repeat(width - done), p.run, p.of, p.benchmark, start.elapsed().as_secs_f64());
        let _ = std::io::stderr().flush();
    }
}

/// Base units per unit, shown per a readable quantity.
fn rate_line(c: UsageComponent, base_per_unit: f64) -> (String, String) {
    let (per, scale) = match c {
        UsageComponent::CpuUserNs | UsageComponent::CpuSystemNs => ("cpu-second", 1e9),
        UsageComponent::WallNs => ("second", 1e9),
        UsageComponent::MemByteSeconds => ("GiB-hour", (1u64 << 30) as f64 * 3600.0),
        UsageComponent::IoReadBytes | UsageComponent::IoWriteBytes | UsageComponent::NetRxBytes | UsageComponent::NetTxBytes => ("GiB", (1u64 << 30) as f64),
        UsageComponent::IoReadOps | UsageComponent::IoWriteOps => ("million ops", 1e6),
    };
    let xen = base_per_unit * scale / Amount::BASE_PER_XEN as f64;
    (format!("{xen:.8} XEN/{per}"), format!("{} {}/{}", c.name(), "base", c.unit()))
}

/// Prints the benchmark table and the rates.
pub fn print_tables(rec: &CalibrationRecord) {
    println!("calibration: {} runs of {:.1} s, seed {}, {:.1} s in all, price {}/s ({:?} basis)", rec.runs.len(), rec.seconds, rec.seed, rec.elapsed_s, rec.price_per_second, rec.price_basis);
    println!();
    println!("{:<14} {:>7} {:>14} {:>14} {:>14} {:>10} {:>6}", "benchmark", "repeats", "min", "avg", "max", "std dev", "rsd%");
    for s in &rec.scores {
        println!("{:<14} {:>7} {:>14.1} {:>14.1} {:>14.1} {:>10.1} {:>6.2}  {}", s.benchmark, s.repeats, s.min, s.avg, s.max, s.std_dev, 100.0 * s.std_dev / s.avg.max(1e-12), s.unit);
    }
    println!();
    println!("{:<18} {:>28} {:>16}  unit", "component", "rate", "fixed point");
    for c in UsageComponent::ALL {
        let r = rec.rates.base_per_unit(c);
        let (readable, _) = rate_line(c, r);
        let note = if calibrate::NOT_FITTED.contains(&c) {
            "  (not fitted: resources are priced, not time)"
        } else if rec.fit.unmoved.contains(&(c as usize)) {
            "  (did not move)"
        } else if rec.clamped.iter().any(|n| n == c.name()) {
            "  (fitted negative, fixed at 0)"
        } else {
            ""
        };
        println!("{:<18} {:>28} {:>16}  pico-base/{}{note}", c.name(), readable, rec.rates.pico_per_unit[c as usize], c.unit());
    }
    println!();
    let sv: Vec<String> = rec.fit.singular_values.iter().map(|x| format!("{x:.3e}")).collect();
    println!("rank {} of {} (singular values {})", rec.fit.rank, rec.fit.singular_values.len(), sv.join(" "));
    println!("residual {:.4}  leave-one-out median error {:.4}", rec.fit.residual, rec.fit.loo_median());
}

/// `zennet-agent calibrate`.
pub fn calibrate(args: CalibrateArgs) -> Result<()> {
    let cfg = args.config()?;
    let mut bar = progress_bar("calibrating");
    let rec = calibrate::calibrate(&cfg, &mut bar)?;
    eprintln!();
    if !args.no_store {
        let path = args.store.clone().unwrap_or_else(|| Store::path_in(&args.state_dir));
        let store = Store::open(&path)?;
        store.put_calibration(&rec)?;
        eprintln!("stored in {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        print_tables(&rec);
    }
    Ok(())
}

/// Options of `bench-calibration`.
#[derive(Args, Debug, Clone)]
pub struct BenchCalibrationArgs {
    /// Scratch directory for the runs.
    #[arg(long, default_value = "/var/tmp/zennet-bench-calibration")]
    pub dir: PathBuf,
    /// Full calibrations for the rates' spread.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Keep the calibration records (quick.json, full-N.json) in this
    /// directory; records already there are refitted instead of re-run.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Relative singular value threshold of the fits.
    #[arg(long)]
    pub threshold: Option<f64>,
}

/// Runs a calibration, or loads its record from `records/name.json`, refitted
/// at `threshold`; saves what it ran.
fn run_or_load(cfg: &Config, records: Option<&PathBuf>, name: &str) -> Result<CalibrationRecord> {
    let file = records.map(|d| d.join(format!("{name}.json")));
    if let Some(f) = file.as_ref().filter(|f| f.exists()) {
        let mut rec: CalibrationRecord = serde_json::from_slice(&std::fs::read(f)?).with_context(|| format!("read {}", f.display()))?;
        calibrate::refit(&mut rec, cfg.threshold)?;
        return Ok(rec);
    }
    let mut noop = |_: Progress| {};
    let rec = calibrate::calibrate(cfg, &mut noop)?;
    if let Some(f) = file {
        std::fs::create_dir_all(f.parent().unwrap_or(&f))?;
        std::fs::write(&f, serde_json::to_vec(&rec)?)?;
    }
    Ok(rec)
}

/// The price table the hold-out figures use: per benchmark, a multiple of `t`.
/// Benchmarks the usage vector cannot tell apart share a price: memory
/// bandwidth and latency are cpu time to procfs (no counter sees memory
/// traffic), so they cost what cpu work costs; holding memory, disk io and
/// the network cost more.
pub const BENCH_PRICE_MULTIPLES: &[(&str, u64)] = &[
    ("cpu-int", 10),
    ("cpu-float", 10),
    ("cache", 10),
    ("mem-bandwidth", 10),
    ("mem-latency", 10),
    ("disk-seq", 20),
    ("disk-rand", 20),
    ("ctx-switch", 12),
    ("fork", 12),
    ("mem-hold", 15),
    ("net-loopback", 15),
];

fn priced(rec: &CalibrationRecord, t: Amount) -> Vec<f64> {
    let table: BTreeMap<&str, u64> = BENCH_PRICE_MULTIPLES.iter().copied().collect();
    let price_of = |b: &str| Amount(t.0 * table.get(b).copied().unwrap_or(10) / 10);
    calibrate::prices(&rec.runs, t, &price_of, rec.price_basis, &rec.capacity())
}

/// Relative errors of a fit on the training runs predicting held-out runs.
fn holdout(train_v: &Array2<f64>, train_s: &[f64], test_v: &Array2<f64>, test_s: &[f64], skip: &[usize], threshold: f64) -> Result<Vec<f64>> {
    let (f, _) = calibrate::fit_nonneg(train_v, &Array1::from(train_s.to_vec()), threshold, skip)?;
    Ok(test_v.rows().into_iter().zip(test_s).map(|(row, s)| (f.predict(row) - s).abs() / s).collect())
}

/// The Golem-style baseline's columns: cpu seconds (user + system) and duration.
fn baseline_v(v: &Array2<f64>) -> Array2<f64> {
    let mut b = Array2::zeros((v.nrows(), 2));
    for (i, row) in v.rows().into_iter().enumerate() {
        b[[i, 0]] = row[UsageComponent::CpuUserNs as usize] + row[UsageComponent::CpuSystemNs as usize];
        b[[i, 1]] = row[UsageComponent::WallNs as usize];
    }
    b
}

/// Coefficient of variation (sample std dev over mean; 0 for a zero mean).
fn cv(xs: &[f64]) -> f64 {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    if mean <= 0.0 || xs.len() < 2 {
        return 0.0;
    }
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt() / mean
}

/// Coefficient of variation of each component's rate over calibrations
/// (printed on stderr); returns the largest and its component.
fn rate_spread(rates: &[Vec<f64>], label: &str) -> (f64, &'static str) {
    let mut worst = (0.0f64, "");
    for c in UsageComponent::ALL {
        let xs: Vec<f64> = rates.iter().map(|r| r[c as usize].max(0.0)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        if mean <= 0.0 {
            continue;
        }
        let v = cv(&xs);
        eprintln!("rate spread{label} {:<18} cv {v:.4}  (mean {mean:.4e} base/{})", c.name(), c.unit());
        if v > worst.0 {
            worst = (v, c.name());
        }
    }
    worst
}

/// `zennet-agent bench-calibration`: one line per figure.
pub fn bench_calibration(args: BenchCalibrationArgs) -> Result<()> {
    if args.repeats < 2 {
        bail!("--repeats {} too small: the spread needs at least 2 calibrations", args.repeats);
    }
    let threshold = args.threshold.unwrap_or(Config::full().threshold);
    let mut quick = Config::quick();
    quick.seed = clock_seed();
    quick.threshold = threshold;
    quick.work_dir = args.dir.join("quick");
    let quick_s = run_or_load(&quick, args.records.as_ref(), "quick")?.elapsed_s;
    let mut fulls = Vec::new();
    let mut full_s = Vec::new();
    for i in 0..args.repeats {
        let mut c = Config::full();
        c.seed = clock_seed() ^ i as u64;
        c.threshold = threshold;
        c.work_dir = args.dir.join(format!("full-{i}"));
        let rec = run_or_load(&c, args.records.as_ref(), &format!("full-{i}"))?;
        full_s.push(rec.elapsed_s);
        eprintln!("full {i}: {} runs, rank {}, loo {:.4}, clamped {:?}", rec.runs.len(), rec.fit.rank, rec.fit.loo_median(), rec.clamped);
        fulls.push(rec);
    }
    let _ = std::fs::remove_dir(&args.dir);
    println!("calibration quick_s={quick_s:.1} full_s={:.1}", full_s.iter().sum::<f64>() / full_s.len() as f64);
    // Spread of each rate over the full calibrations (default prices); on
    // stderr also the spread under the per-benchmark price table.
    let (cv_max, worst) = rate_spread(&fulls.iter().map(|r| r.rates.base_per_unit_all()).collect::<Vec<_>>(), "");
    eprintln!("largest rate spread: {worst}");
    println!("calibration rate_cv_max={cv_max:.4}");
    // A rate is a price over a speed: no steadier than the hardware's speed.
    // The disks' speed (each disk benchmark's mean score per calibration)
    // spread over the same calibrations, for comparison with the io rates.
    let disk_cv = bench::BENCHMARKS
        .iter()
        .filter(|b| b.uses_disk)
        .filter_map(|b| {
            let means: Vec<f64> = fulls.iter().filter_map(|r| r.scores.iter().find(|s| s.benchmark == b.name).map(|s| s.avg)).collect();
            (means.len() == fulls.len()).then(|| cv(&means))
        })
        .fold(0.0f64, f64::max);
    println!("calibration disk_speed_cv={disk_cv:.4}");
    let t = Config::full().price_per_second;
    let skip: Vec<usize> = calibrate::NOT_FITTED.iter().map(|c| *c as usize).collect();
    let mut table_rates = Vec::new();
    for r in &fulls {
        let (f, _) = calibrate::fit_nonneg(&r.v(), &Array1::from(priced(r, t)), threshold, &skip)?;
        table_rates.push(f.rates);
    }
    let (cv_table, worst_table) = rate_spread(&table_rates, " (price table)");
    eprintln!("largest rate spread under the price table: {worst_table} cv {cv_table:.4}");
    // Hold-out: per-benchmark prices; fit on one calibration's runs, predict
    // every other calibration's runs; same for the baseline.
    let (mut errs, mut base_errs) = (Vec::new(), Vec::new());
    for (i, train) in fulls.iter().enumerate() {
        let (tv, ts) = (train.v(), priced(train, t));
        for (j, test) in fulls.iter().enumerate() {
            if i == j {
                continue;
            }
            let (xv, xs) = (test.v(), priced(test, t));
            let e = holdout(&tv, &ts, &xv, &xs, &skip, threshold)?;
            let be = holdout(&baseline_v(&tv), &ts, &baseline_v(&xv), &xs, &[], threshold)?;
            eprintln!("hold-out fit on full {i}, priced full {j}: median error {:.4}, baseline {:.4}", fit::median(&e), fit::median(&be));
            errs.extend(e);
            base_errs.extend(be);
        }
    }
    println!("calibration holdout_err={:.4}", fit::median(&errs));
    println!("calibration baseline_holdout_err={:.4}", fit::median(&base_errs));
    Ok(())
}
