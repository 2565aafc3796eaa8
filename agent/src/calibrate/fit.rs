//! The fit of the seed's pricing algorithm: rates `r = s V+` by a singular
//! value decomposition, truncating singular values below a relative
//! threshold, with the rank used, the residual and leave-one-out errors.
//!
//! `V` is small (runs x 10), so the SVD is a one-sided Jacobi (Hestenes)
//! rotation in pure Rust over `ndarray`: accurate to rounding, no BLAS, no
//! threads (see README's dependency table for why not `ndarray-linalg`).
//! Columns are scaled to unit maximum before the SVD so that the threshold
//! compares like with like (ns of cpu against bytes of io); a column that
//! never moved gets rate 0 and does not count towards the rank.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Why a fit was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// No runs, or no columns.
    #[error("nothing to fit: V is {rows}x{cols} (need at least one run and one usage component)")]
    Empty { rows: usize, cols: usize },
    /// `s` does not have one price per run.
    #[error("{prices} prices for {rows} runs: need one price per run")]
    Shape { rows: usize, prices: usize },
    /// A NaN or infinity in `V`.
    #[error("V[{row}][{col}] is {value}: usage rows must be finite")]
    NonFiniteUsage { row: usize, col: usize, value: f64 },
    /// A NaN, infinity or negative price.
    #[error("price of run {row} is {value}: prices must be finite and >= 0")]
    BadPrice { row: usize, value: f64 },
    /// Every column of `V` is zero: nothing moved.
    #[error("every usage component is zero in every run: nothing to fit")]
    NothingMoved,
    /// The relative threshold is not in (0, 1).
    #[error("singular value threshold {0} must be in (0, 1)")]
    BadThreshold(f64),
}

/// A thin SVD `A = U diag(sigma) W^T`, singular values in decreasing order.
#[derive(Debug, Clone)]
pub struct Svd {
    /// Left singular vectors (rows x k).
    pub u: Array2<f64>,
    /// Singular values, decreasing.
    pub sigma: Array1<f64>,
    /// Right singular vectors (cols x k).
    pub w: Array2<f64>,
}

/// One-sided Jacobi SVD of `a` (any shape). Converges quadratically; for the
/// runs x 10 matrices here a handful of sweeps.
pub fn svd(a: ArrayView2<f64>) -> Svd {
    let (n, k) = a.dim();
    let mut b = a.to_owned();
    let mut w = Array2::<f64>::eye(k);
    for _sweep in 0..80 {
        let mut rotated = false;
        for p in 0..k {
            for q in p + 1..k {
                let (bp, bq) = (b.column(p), b.column(q));
                let alpha = bp.dot(&bp);
                let beta = bq.dot(&bq);
                let gamma = bp.dot(&bq);
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for m in [&mut b, &mut w] {
                    for i in 0..m.nrows() {
                        let (x, y) = (m[[i, p]], m[[i, q]]);
                        m[[i, p]] = c * x - s * y;
                        m[[i, q]] = s * x + c * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..k).map(|j| b.column(j).dot(&b.column(j)).sqrt()).collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
    let mut u = Array2::<f64>::zeros((n, k));
    let mut wo = Array2::<f64>::zeros((k, k));
    let mut sigma = Array1::<f64>::zeros(k);
    for (dst, &src) in order.iter().enumerate() {
        sigma[dst] = norms[src];
        if norms[src] > 0.0 {
            u.column_mut(dst).assign(&(&b.column(src) / norms[src]));
        }
        wo.column_mut(dst).assign(&w.column(src));
    }
    Svd { u, sigma, w: wo }
}

/// Options of [`fit`].
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Singular values below `threshold * largest` are dropped.
    pub threshold: f64,
    /// Compute leave-one-out errors (one extra fit per run).
    pub leave_one_out: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self { threshold: 0.05, leave_one_out: true }
    }
}

/// The outcome of [`fit`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fit {
    /// Rates per column of `V`, in price units per unit of the column.
    pub rates: Vec<f64>,
    /// Singular values of the column-scaled `V`, decreasing.
    pub singular_values: Vec<f64>,
    /// How many singular values were kept.
    pub rank: usize,
    /// Columns that were zero in every run (rate 0).
    pub unmoved: Vec<usize>,
    /// `|V r - s| / |s|` (0 when `s` is zero).
    pub residual: f64,
    /// Per run: `|v_i . r_(-i) - s_i| / s_i`, the relative error of run i's
    /// price predicted by a fit on the other runs (empty when not computed
    /// or fewer than two runs).
    pub loo_errors: Vec<f64>,
}

impl Fit {
    /// Median of the leave-one-out errors (0 when there are none).
    pub fn loo_median(&self) -> f64 {
        median(&self.loo_errors)
    }

    /// The fitted price of one usage row.
    pub fn predict(&self, row: ArrayView1<f64>) -> f64 {
        row.iter().zip(&self.rates).map(|(v, r)| v * r).sum()
    }
}

/// Median of a slice (0 for an empty one).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn validate(v: ArrayView2<f64>, s: ArrayView1<f64>, o: &FitOptions) -> Result<(), FitError> {
    let (rows, cols) = v.dim();
    if rows == 0 || cols == 0 {
        return Err(FitError::Empty { rows, cols });
    }
    if s.len() != rows {
        return Err(FitError::Shape { rows, prices: s.len() });
    }
    if let Some(((row, col), &value)) = v.indexed_iter().find(|(_, x)| !x.is_finite()) {
        return Err(FitError::NonFiniteUsage { row, col, value });
    }
    if let Some((row, &value)) = s.indexed_iter().find(|(_, x)| !x.is_finite() || **x < 0.0) {
        return Err(FitError::BadPrice { row, value });
    }
    if !(o.threshold > 0.0 && o.threshold < 1.0) {
        return Err(FitError::BadThreshold(o.threshold));
    }
    Ok(())
}

/// Rates, singular values, rank and unmoved columns of one solve.
type Solution = (Vec<f64>, Vec<f64>, usize, Vec<usize>);

/// Minimum-norm least squares `r` with `V r ~ s` on column-scaled `V`.
fn solve(v: ArrayView2<f64>, s: ArrayView1<f64>, threshold: f64) -> Result<Solution, FitError> {
    let cols = v.ncols();
    let scale: Vec<f64> = (0..cols).map(|j| v.column(j).iter().fold(0.0f64, |m, x| m.max(x.abs()))).collect();
    let moved: Vec<usize> = (0..cols).filter(|&j| scale[j] > 0.0).collect();
    if moved.is_empty() {
        return Err(FitError::NothingMoved);
    }
    let mut a = Array2::<f64>::zeros((v.nrows(), moved.len()));
    for (k, &j) in moved.iter().enumerate() {
        a.column_mut(k).assign(&(&v.column(j) / scale[j]));
    }
    let d = svd(a.view());
    let top = d.sigma[0];
    let rank = d.sigma.iter().filter(|&&x| x > threshold * top).count();
    let mut rs = Array1::<f64>::zeros(moved.len());
    for i in 0..rank {
        let coef = d.u.column(i).dot(&s) / d.sigma[i];
        rs.scaled_add(coef, &d.w.column(i));
    }
    let mut rates = vec![0.0; cols];
    for (k, &j) in moved.iter().enumerate() {
        rates[j] = rs[k] / scale[j];
    }
    let unmoved = (0..cols).filter(|j| !moved.contains(j)).collect();
    Ok((rates, d.sigma.to_vec(), rank, unmoved))
}

/// Fits rates `r` with `V r = s` in the least-squares, minimum-norm sense:
/// `r = V+ s` through the SVD, singular values below
/// `threshold * largest` treated as zero. Refuses empty, mis-shaped or
/// non-finite input with an error naming the offending entry.
pub fn fit(v: ArrayView2<f64>, s: ArrayView1<f64>, o: FitOptions) -> Result<Fit, FitError> {
    validate(v, s, &o)?;
    let (rates, singular_values, rank, unmoved) = solve(v, s, o.threshold)?;
    let r = Array1::from(rates.clone());
    let pred = v.dot(&r);
    let sn = s.dot(&s).sqrt();
    let diff = &pred - &s;
    let residual = if sn > 0.0 { diff.dot(&diff).sqrt() / sn } else { diff.dot(&diff).sqrt() };
    let mut loo_errors = Vec::new();
    if o.leave_one_out && v.nrows() >= 2 {
        for i in 0..v.nrows() {
            let keep: Vec<usize> = (0..v.nrows()).filter(|&k| k != i).collect();
            let vi = v.select(Axis(0), &keep);
            let si = s.select(Axis(0), &keep);
            let Ok((ri, ..)) = solve(vi.view(), si.view(), o.threshold) else {
                loo_errors.push(1.0);
                continue;
            };
            let p: f64 = v.row(i).iter().zip(&ri).map(|(a, b)| a * b).sum();
            loo_errors.push(if s[i] > 0.0 { (p - s[i]).abs() / s[i] } else { p.abs() });
        }
    }
    Ok(Fit { rates, singular_values, rank, unmoved, residual, loo_errors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// A deterministic pseudo-random matrix (xorshift), entries in [0, 1).
    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut x = seed | 1;
        Array2::from_shape_fn((rows, cols), |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    #[test]
    fn svd_reconstructs() {
        let a = random(7, 4, 3);
        let d = svd(a.view());
        let back = d.u.dot(&Array2::from_diag(&d.sigma)).dot(&d.w.t());
        assert!((&back - &a).iter().all(|x| x.abs() < 1e-12));
        assert!(d.sigma.windows(2).into_iter().all(|w| w[0] >= w[1]));
    }

    #[test]
    fn full_rank_recovers_rates_exactly() {
        // Columns on very different scales, as real usage rows are.
        let mut v = random(20, 10, 7);
        let scales = [2e9, 1e8, 5e8, 1e7, 3e7, 1e3, 4e3, 1e6, 1e6, 1e9];
        for (j, sc) in scales.iter().enumerate() {
            v.column_mut(j).mapv_inplace(|x| x * sc);
        }
        let truth: Vec<f64> = (0..10).map(|j| (j as f64 + 1.0) / scales[j]).collect();
        let s = v.dot(&Array1::from(truth.clone()));
        let f = fit(v.view(), s.view(), FitOptions { threshold: 1e-9, leave_one_out: true }).unwrap();
        assert_eq!(f.rank, 10);
        assert!(close(&f.rates, &truth, 1e-9), "{:?} vs {truth:?}", f.rates);
        assert!(f.residual < 1e-12);
        assert!(f.loo_median() < 1e-9);
    }

    #[test]
    fn rank_deficient_reports_rank_and_fits_exactly() {
        // 10 columns spanned by 4 independent ones; one column never moves.
        let base = random(12, 4, 11);
        let mix = random(4, 10, 5);
        let mut v = base.dot(&mix);
        v.column_mut(6).fill(0.0);
        let truth = Array1::from((0..10).map(|j| if j == 6 { 0.0 } else { 1.0 + j as f64 }).collect::<Vec<_>>());
        let s = v.dot(&truth);
        let f = fit(v.view(), s.view(), FitOptions { threshold: 1e-9, leave_one_out: false }).unwrap();
        assert_eq!(f.rank, 4);
        assert_eq!(f.unmoved, vec![6]);
        assert_eq!(f.rates[6], 0.0);
        // Any rates in the solution set price every run exactly.
        let pred = v.dot(&Array1::from(f.rates.clone()));
        assert!(close(pred.as_slice().unwrap(), s.as_slice().unwrap(), 1e-9));
        // And they are the minimum-norm one (in scaled coordinates): applying
        // the fit to the fitted prices gives the same rates back.
        let g = fit(v.view(), pred.view(), FitOptions { threshold: 1e-9, leave_one_out: false }).unwrap();
        assert!(close(&g.rates, &f.rates, 1e-9));
    }

    #[test]
    fn noisy_prices_give_the_least_squares_rates() {
        let v = random(15, 10, 23);
        let truth = Array1::from((0..10).map(|j| 0.5 + j as f64).collect::<Vec<_>>());
        // Noise orthogonal to V's column space: the least-squares solution is
        // still exactly `truth`, and the residual is exactly the noise's size.
        let d = svd(v.view());
        let mut noise = random(15, 1, 99).column(0).to_owned() - 0.5;
        for i in 0..10 {
            let c = d.u.column(i).dot(&noise);
            noise.scaled_add(-c, &d.u.column(i));
        }
        let clean = v.dot(&truth);
        let s = &clean + &noise;
        let f = fit(v.view(), s.view(), FitOptions { threshold: 1e-9, leave_one_out: true }).unwrap();
        assert!(close(&f.rates, truth.as_slice().unwrap(), 1e-9), "{:?}", f.rates);
        let want = noise.dot(&noise).sqrt() / s.dot(&s).sqrt();
        assert!((f.residual - want).abs() < 1e-9, "{} vs {want}", f.residual);
        assert!(f.loo_median() > 0.0);
    }

    #[test]
    fn truncation_drops_tiny_singular_values() {
        // Column 2 = column 0 + 1e-12 noise: kept at 1e-15, dropped at 1e-6.
        let mut v = random(8, 3, 4);
        let c0 = v.column(0).to_owned();
        let tiny = random(8, 1, 8).column(0).to_owned() * 1e-12;
        v.column_mut(2).assign(&(&c0 + &tiny));
        let s = Array1::from(vec![1.0; 8]);
        let f = fit(v.view(), s.view(), FitOptions { threshold: 1e-6, leave_one_out: false }).unwrap();
        assert_eq!(f.rank, 2);
        assert!(f.rates.iter().all(|r| r.abs() < 1e3), "truncated fit stays small: {:?}", f.rates);
    }

    #[test]
    fn refuses_bad_input_clearly() {
        let v = array![[1.0, 2.0], [3.0, 4.0]];
        let s = array![1.0, 1.0];
        let e = fit(Array2::<f64>::zeros((0, 10)).view(), Array1::zeros(0).view(), FitOptions::default()).unwrap_err();
        assert_eq!(e, FitError::Empty { rows: 0, cols: 10 });
        let mut bad = v.clone();
        bad[[1, 0]] = f64::NAN;
        let e = fit(bad.view(), s.view(), FitOptions::default()).unwrap_err();
        assert!(matches!(e, FitError::NonFiniteUsage { row: 1, col: 0, .. }), "{e}");
        assert!(e.to_string().contains("V[1][0]"));
        bad[[1, 0]] = f64::INFINITY;
        assert!(fit(bad.view(), s.view(), FitOptions::default()).is_err());
        let e = fit(v.view(), array![1.0, f64::NAN].view(), FitOptions::default()).unwrap_err();
        assert!(matches!(e, FitError::BadPrice { row: 1, .. }));
        assert!(matches!(fit(v.view(), array![1.0].view(), FitOptions::default()), Err(FitError::Shape { .. })));
        assert_eq!(fit(Array2::zeros((3, 2)).view(), array![1.0, 1.0, 1.0].view(), FitOptions::default()), Err(FitError::NothingMoved));
        assert!(matches!(fit(v.view(), s.view(), FitOptions { threshold: 0.0, leave_one_out: false }), Err(FitError::BadThreshold(_))));
    }
}
