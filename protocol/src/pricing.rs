//! Pricing: per-component [`Rates`], the integer [`cost`] of a usage delta
//! under them, and the [`CalibrationSummary`] a provider puts in its offer.
//!
//! Money never passes through a float here. A rate is an integer count of
//! pico base units (10^-12 base units) per unit of its usage component; a
//! cost is the exact `u128` sum of `rate * amount`, then converted to base
//! units once, rounding down (see [`cost`]). Floats appear only in the
//! calibration statistics (residual, errors, scores), which never move money.

use crate::money::Amount;
use crate::usage::{UsageComponent, UsageVector};
use serde::{Deserialize, Serialize};

/// Pico base units in one base unit: the rates' fixed-point scale.
pub const PICO_PER_BASE: u128 = 1_000_000_000_000;

/// Why a rate, a cost or a summary was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PricingError {
    /// A rate given as a float was NaN, infinite or negative.
    #[error("rate for {component} is {value}: rates must be finite and >= 0 base units per unit")]
    BadRate { component: &'static str, value: f64 },
    /// A rate does not fit the fixed-point representation.
    #[error("rate for {component} is {value} base units per unit, above the largest representable {max}")]
    RateTooLarge { component: &'static str, value: f64, max: f64 },
    /// The usage vector's layout is not the one the rates were made for.
    #[error("usage vector version {got} does not match the rates' version {want}")]
    VersionMismatch { got: u16, want: u16 },
    /// The cost does not fit an [`Amount`] (or the intermediate sum overflowed).
    #[error("cost overflows: usage too large for these rates")]
    Overflow,
    /// A calibration summary failed validation.
    #[error("calibration summary invalid: {0}")]
    BadSummary(String),
}

/// One rate per usage component, in [`UsageComponent::ALL`] order, each an
/// integer count of pico base units per unit of the component (per ns of cpu,
/// per byte-second of memory, per byte, per op, per ns of wall time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// The usage vector layout these rates price ([`UsageVector::VERSION`]).
    pub version: u16,
    /// Pico base units per unit, per component.
    pub pico_per_unit: [u64; UsageVector::LEN],
}

impl Rates {
    /// All-zero rates for the current usage layout.
    pub fn zero() -> Rates {
        Rates { version: UsageVector::VERSION, pico_per_unit: [0; UsageVector::LEN] }
    }

    /// Converts fitted rates in base units per unit (floats, from the fit) to
    /// the fixed-point form, rounding each to the nearest pico base unit.
    /// Refuses NaN, infinities, negative values and values too large.
    pub fn from_base_per_unit(r: &[f64; UsageVector::LEN]) -> Result<Rates, PricingError> {
        let max = u64::MAX as f64 / PICO_PER_BASE as f64;
        let mut out = Rates::zero();
        for (i, c) in UsageComponent::ALL.iter().enumerate() {
            let v = r[i];
            if !v.is_finite() || v < 0.0 {
                return Err(PricingError::BadRate { component: c.name(), value: v });
            }
            if v >= max {
                return Err(PricingError::RateTooLarge { component: c.name(), value: v, max });
            }
            out.pico_per_unit[i] = (v * PICO_PER_BASE as f64).round() as u64;
        }
        Ok(out)
    }

    /// Every rate in base units per unit, in component order.
    pub fn base_per_unit_all(&self) -> Vec<f64> {
        UsageComponent::ALL.iter().map(|c| self.base_per_unit(*c)).collect()
    }

    /// The rate of one component in base units per unit (for display and fits).
    pub fn base_per_unit(&self, c: UsageComponent) -> f64 {
        self.pico_per_unit[c as usize] as f64 / PICO_PER_BASE as f64
    }
}

/// The price of a usage delta under `rates`, in base units.
///
/// Rounding rule: `sum_i rate_i * delta_i` is computed exactly in pico base
/// units (`u128`, checked), then divided by 10^12 once, rounding **down**:
/// a publisher never pays for less than a whole base unit it used. To keep
/// that rounding from accumulating over a contract, price the cumulative
/// usage and pay the difference (`cost(u_now) - cost(u_before)`), which is
/// what vouchers carry. Errors on overflow (of the sum or of `u64`) and on a
/// layout mismatch; never wraps or saturates.
pub fn cost(rates: &Rates, delta: &UsageVector) -> Result<Amount, PricingError> {
    if delta.version != rates.version {
        return Err(PricingError::VersionMismatch { got: delta.version, want: rates.version });
    }
    let mut pico: u128 = 0;
    for i in 0..UsageVector::LEN {
        let term = (rates.pico_per_unit[i] as u128)
            .checked_mul(delta.counters[i] as u128)
            .ok_or(PricingError::Overflow)?;
        pico = pico.checked_add(term).ok_or(PricingError::Overflow)?;
    }
    u64::try_from(pico / PICO_PER_BASE).map(Amount).map_err(|_| PricingError::Overflow)
}

/// What identifies the hardware a calibration was made on; a change means
/// the rates no longer apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical cpus the agent may use.
    pub cores: u32,
    /// Physical memory, bytes (MemTotal).
    pub memory_bytes: u64,
    /// Block devices (`name:size_bytes`, sorted), no partitions or loops.
    pub disks: Vec<String>,
}

/// One benchmark's throughput over its repeats (Phoronix-style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    /// Benchmark name, e.g. `cpu-int`.
    pub benchmark: String,
    /// Unit of the figures, e.g. `bogo-ops/s`.
    pub unit: String,
    /// Repeats measured.
    pub repeats: u32,
    /// Smallest, mean, largest, standard deviation.
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub std_dev: f64,
}

/// The part of a calibration a provider shows a publisher in its offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SummaryUnchecked")]
pub struct CalibrationSummary {
    /// Hardware the rates were measured on.
    pub fingerprint: Fingerprint,
    /// When, seconds since the Unix epoch.
    pub time_unix_s: u64,
    /// The provider's price for the whole machine per second.
    pub price_per_second: Amount,
    /// The fitted rates.
    pub rates: Rates,
    /// Singular values kept by the fit.
    pub rank: u32,
    /// Relative residual of the fit, `|V r - s| / |s|`.
    pub residual: f64,
    /// Median relative leave-one-out error of predicted run prices.
    pub holdout_error: f64,
    /// Runs fitted.
    pub runs: u32,
    /// Benchmark throughputs.
    pub scores: Vec<ScoreSummary>,
}

/// Bounds checked when a summary is decoded.
impl CalibrationSummary {
    /// Largest encoded summary accepted by [`CalibrationSummary::from_json`].
    pub const MAX_JSON_BYTES: usize = 64 * 1024;
    /// Most benchmarks in a summary.
    pub const MAX_SCORES: usize = 64;
    /// Most disks in a fingerprint.
    pub const MAX_DISKS: usize = 64;
    /// Longest string field.
    pub const MAX_STR: usize = 256;

    /// Decodes and validates a JSON summary of at most [`Self::MAX_JSON_BYTES`].
    pub fn from_json(bytes: &[u8]) -> Result<CalibrationSummary, PricingError> {
        if bytes.len() > Self::MAX_JSON_BYTES {
            return Err(PricingError::BadSummary(format!("{} bytes, limit {}", bytes.len(), Self::MAX_JSON_BYTES)));
        }
        serde_json::from_slice(bytes).map_err(|e| PricingError::BadSummary(e.to_string()))
    }

    /// Checks every bound and that every statistic is finite and >= 0.
    pub fn validate(&self) -> Result<(), PricingError> {
        let bad = |m: String| Err(PricingError::BadSummary(m));
        let f = &self.fingerprint;
        if f.cpu_model.len() > Self::MAX_STR || f.disks.len() > Self::MAX_DISKS || f.disks.iter().any(|d| d.len() > Self::MAX_STR) {
            return bad("fingerprint exceeds its bounds".into());
        }
        if f.cores == 0 || f.memory_bytes == 0 {
            return bad("fingerprint has zero cores or memory".into());
        }
        if self.rates.version != UsageVector::VERSION {
            return bad(format!("rates version {} unknown", self.rates.version));
        }
        if self.rank as usize > UsageVector::LEN || self.rank == 0 {
            return bad(format!("rank {} outside 1..={}", self.rank, UsageVector::LEN));
        }
        for (n, v) in [("residual", self.residual), ("holdout_error", self.holdout_error)] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{n} is {v}"));
            }
        }
        if self.scores.len() > Self::MAX_SCORES {
            return bad(format!("{} scores, limit {}", self.scores.len(), Self::MAX_SCORES));
        }
        for s in &self.scores {
            if s.benchmark.len() > Self::MAX_STR || s.unit.len() > Self::MAX_STR {
                return bad("score name or unit too long".into());
            }
            for v in [s.min, s.avg, s.max, s.std_dev] {
                if !v.is_finite() || v < 0.0 {
                    return bad(format!("score {} has {v}", s.benchmark));
                }
            }
            if !(s.min <= s.avg && s.avg <= s.max) {
                return bad(format!("score {}: min <= avg <= max does not hold", s.benchmark));
            }
        }
        Ok(())
    }
}

/// Wire form, validated into [`CalibrationSummary`] on decode.
#[derive(Deserialize)]
struct SummaryUnchecked {
    fingerprint: Fingerprint,
    time_unix_s: u64,
    price_per_second: Amount,
    rates: Rates,
    rank: u32,
    residual: f64,
    holdout_error: f64,
    runs: u32,
    scores: Vec<ScoreSummary>,
}

impl TryFrom<SummaryUnchecked> for CalibrationSummary {
    type Error = PricingError;
    fn try_from(u: SummaryUnchecked) -> Result<Self, PricingError> {
        let s = CalibrationSummary {
            fingerprint: u.fingerprint,
            time_unix_s: u.time_unix_s,
            price_per_second: u.price_per_second,
            rates: u.rates,
            rank: u.rank,
            residual: u.residual,
            holdout_error: u.holdout_error,
            runs: u.runs,
            scores: u.scores,
        };
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(v: [u64; UsageVector::LEN]) -> UsageVector {
        UsageVector { version: UsageVector::VERSION, counters: v }
    }

    #[test]
    fn cost_is_exact_and_rounds_down_once() {
        let mut r = Rates::zero();
        // 0.4 base units per ns of user cpu, 0.3 per wall ns.
        r.pico_per_unit[0] = 400_000_000_000;
        r.pico_per_unit[9] = 300_000_000_000;
        let mut u = [0; UsageVector::LEN];
        u[0] = 1;
        u[9] = 1;
        // 0.7 rounds down to 0: rounding happens once, on the sum.
        assert_eq!(cost(&r, &usage(u)).unwrap(), Amount(0));
        u[0] = 2;
        u[9] = 2; // 0.8 + 0.6 = 1.4 -> 1 (per-term rounding would give 0 or 2)
        assert_eq!(cost(&r, &usage(u)).unwrap(), Amount(1));
        u[0] = 10;
        u[9] = 0;
        assert_eq!(cost(&r, &usage(u)).unwrap(), Amount(4));
        assert_eq!(cost(&r, &UsageVector::zero()).unwrap(), Amount(0));
    }

    #[test]
    fn cost_refuses_overflow_and_version_mismatch() {
        let mut r = Rates::zero();
        r.pico_per_unit = [u64::MAX; UsageVector::LEN];
        let big = usage([u64::MAX; UsageVector::LEN]);
        assert_eq!(cost(&r, &big), Err(PricingError::Overflow));
        // The sum fits u128 but the result does not fit u64 base units.
        let mut one = Rates::zero();
        one.pico_per_unit[0] = u64::MAX;
        let mut u = [0; UsageVector::LEN];
        u[0] = u64::MAX;
        assert_eq!(cost(&one, &usage(u)), Err(PricingError::Overflow));
        // The largest cost that fits: exactly u64::MAX base units.
        one.pico_per_unit[0] = PICO_PER_BASE as u64;
        assert_eq!(cost(&one, &usage(u)), Ok(Amount(u64::MAX)));
        let mut v2 = usage([0; UsageVector::LEN]);
        v2.version = 2;
        assert!(matches!(cost(&one, &v2), Err(PricingError::VersionMismatch { .. })));
    }

    #[test]
    fn rates_from_floats_are_validated() {
        let mut f = [0.0; UsageVector::LEN];
        f[0] = 1.5e-5;
        let r = Rates::from_base_per_unit(&f).unwrap();
        assert_eq!(r.pico_per_unit[0], 15_000_000);
        assert!((r.base_per_unit(UsageComponent::CpuUserNs) - 1.5e-5).abs() < 1e-18);
        for bad in [f64::NAN, f64::INFINITY, -1e-9] {
            f[3] = bad;
            assert!(matches!(Rates::from_base_per_unit(&f), Err(PricingError::BadRate { component: "io_read_bytes", .. })));
        }
        f[3] = 1e8;
        assert!(matches!(Rates::from_base_per_unit(&f), Err(PricingError::RateTooLarge { .. })));
    }

    fn summary() -> CalibrationSummary {
        CalibrationSummary {
            fingerprint: Fingerprint { cpu_model: "cpu".into(), cores: 2, memory_bytes: 1 << 30, disks: vec!["vda:1000".into()] },
            time_unix_s: 1,
            price_per_second: Amount(1000),
            rates: Rates::zero(),
            rank: 3,
            residual: 0.01,
            holdout_error: 0.02,
            runs: 8,
            scores: vec![ScoreSummary { benchmark: "cpu-int".into(), unit: "bogo-ops/s".into(), repeats: 2, min: 1.0, avg: 2.0, max: 3.0, std_dev: 1.0 }],
        }
    }

    #[test]
    fn summary_round_trips_and_is_validated_on_decode() {
        let s = summary();
        let j = serde_json::to_vec(&s).unwrap();
        assert_eq!(CalibrationSummary::from_json(&j).unwrap(), s);
        let mut bad = s.clone();
        bad.rank = 11;
        assert!(CalibrationSummary::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());
        let mut bad = s.clone();
        bad.scores[0].min = 5.0;
        assert!(CalibrationSummary::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());
        let mut bad = s.clone();
        bad.fingerprint.cpu_model = "x".repeat(300);
        assert!(CalibrationSummary::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());
        // Non-finite statistics cannot even be written as JSON numbers; a
        // negative one is refused.
        let mut bad = s;
        bad.residual = -1.0;
        let e = CalibrationSummary::from_json(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
        assert!(e.to_string().contains("residual"), "{e}");
        assert!(CalibrationSummary::from_json(&vec![b' '; CalibrationSummary::MAX_JSON_BYTES + 1]).is_err());
    }
}
