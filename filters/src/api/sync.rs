//! Synchrony math for group filters: Pearson correlation that ignores missing values, windowed
//! lagged cross-correlation on a [`Window`](crate::group::Window)'s grid, and peak picking.
//!
//! Conventions, shared by every group filter that uses them:
//!
//! * Missing values are `NaN` (as in a window): a pair `(x[t], y[t])` with either side `NaN` is
//!   left out, and a correlation needs at least `min_pairs` complete pairs and some variance on
//!   both sides, else it is `None` (`NaN` in a function of lags).
//! * A series covers `lead` grid points of history and then the window proper (what a window
//!   hands out). The correlation at `lag` pairs `x[t]` with `y[t + lag]`: `lag > 0` means `y`
//!   follows `x` (`x` leads) by `lag` grid points. Every lag uses the same number of pairs, the
//!   window's length: the later series of the two covers the window proper and the earlier one
//!   reaches back into the lead (so `lead` must be at least the largest lag; data after the
//!   window's end does not exist yet).
//! * Peak picking follows Boker, Xu, Rotondo and King (2002): within the lag range, the local
//!   maximum of the cross-correlation nearest lag 0 (a local maximum = not below any value within
//!   `span` lags on either side, and not at the edge of the range, where the real peak may lie
//!   beyond it); a tie in distance goes to the larger r.
//!
//! Nothing here allocates except [`cross_correlation`]'s output buffer, which the caller keeps
//! and reuses.

use super::params::ParamError;

/// The peak-picking span both shipped synchrony filters use (ms on either side): with smaller
/// spans, noise bumps on the flank of the real peak are picked instead of it.
pub const PEAK_SPAN_MS: f64 = 1000.0;

/// The parameter rule of a lagged measure: `max_lag_ms` at most half of `window_ms` (beyond
/// that, most of what is correlated at the largest lags is not the same moment any more).
pub fn check_max_lag(window_ms: f64, max_lag_ms: f64) -> Result<(), ParamError> {
    if max_lag_ms * 2.0 > window_ms {
        return Err(ParamError::Invalid {
            param: "max_lag_ms".to_owned(),
            reason: format!("{max_lag_ms} is more than half the window ({window_ms} ms)"),
        });
    }
    Ok(())
}

/// Running sums of complete pairs, in `f64`.
#[derive(Default)]
struct Sums {
    n: usize,
    x: f64,
    y: f64,
    xx: f64,
    yy: f64,
    xy: f64,
}

impl Sums {
    fn add(&mut self, x: f32, y: f32) {
        if x.is_nan() || y.is_nan() {
            return;
        }
        let (x, y) = (x as f64, y as f64);
        self.n += 1;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.yy += y * y;
        self.xy += x * y;
    }

    fn r(&self, min_pairs: usize) -> Option<f64> {
        if self.n < min_pairs.max(2) {
            return None;
        }
        let n = self.n as f64;
        let vx = self.xx - self.x * self.x / n;
        let vy = self.yy - self.y * self.y / n;
        let cov = self.xy - self.x * self.y / n;
        // A (numerically) constant side has no correlation to speak of.
        let eps = 1e-12 * n;
        if vx <= eps || vy <= eps {
            return None;
        }
        Some((cov / (vx * vy).sqrt()).clamp(-1.0, 1.0))
    }
}

/// Pearson's r of `x` and `y` over the pairs where both are present (the shorter length counts).
/// `None` with fewer than `min_pairs` (at least 2) complete pairs, or when either side is
/// constant over them.
pub fn pearson(x: &[f32], y: &[f32], min_pairs: usize) -> Option<f64> {
    let mut s = Sums::default();
    for (a, b) in x.iter().zip(y) {
        s.add(*a, *b);
    }
    s.r(min_pairs)
}

/// Pearson's r of `x[t]` and `y[t + lag]` over one window: series of equal length whose first
/// `lead` points precede the window proper (see the module doc). `None` as [`pearson`], or when
/// `|lag|` exceeds `lead` or the series differ in length.
pub fn lagged_pearson(x: &[f32], y: &[f32], lead: usize, lag: isize, min_pairs: usize) -> Option<f64> {
    if x.len() != y.len() || lag.unsigned_abs() > lead || lead > x.len() {
        return None;
    }
    let (from, to) = (lead as isize, x.len() as isize);
    let mut s = Sums::default();
    if lag >= 0 {
        // y over the window proper, x `lag` points earlier.
        for t in from..to {
            s.add(x[(t - lag) as usize], y[t as usize]);
        }
    } else {
        for t in from..to {
            s.add(x[t as usize], y[(t + lag) as usize]);
        }
    }
    s.r(min_pairs)
}

/// The cross-correlation function over lags `-max_lag..=max_lag`: `out[k]` is the
/// [`lagged_pearson`] at lag `k - max_lag`, `NaN` where undefined. `out` is cleared and
/// refilled (keep it between calls: no allocation once it has grown).
pub fn cross_correlation(x: &[f32], y: &[f32], lead: usize, max_lag: usize, min_pairs: usize, out: &mut Vec<f64>) {
    out.clear();
    let m = max_lag as isize;
    out.extend((-m..=m).map(|lag| lagged_pearson(x, y, lead, lag, min_pairs).unwrap_or(f64::NAN)));
}

/// A picked peak: its correlation and lag (in grid points; `> 0`: the second series follows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub r: f64,
    pub lag: isize,
}

/// Boker et al.'s peak picking on a cross-correlation function `rs` over lags
/// `-max_lag..=max_lag` (as [`cross_correlation`] fills it): the local maximum nearest lag 0,
/// where a local maximum is a defined value not below any defined value within `span` (≥ 1)
/// lags on either side, not on the first or last lag. `None` when there is none (e.g. r rises
/// all the way to the edge of the range, or too little data).
pub fn pick_peak(rs: &[f64], span: usize) -> Option<Peak> {
    let n = rs.len();
    if n < 3 {
        return None;
    }
    let max_lag = (n / 2) as isize;
    let span = span.max(1);
    let is_peak = |k: usize| {
        let r = rs[k];
        !r.is_nan()
            && k > 0
            && k + 1 < n
            && (k.saturating_sub(span)..=(k + span).min(n - 1)).all(|j| rs[j].is_nan() || rs[j] <= r)
    };
    let mut best: Option<Peak> = None;
    for k in (0..n).filter(|&k| is_peak(k)) {
        let p = Peak { r: rs[k], lag: k as isize - max_lag };
        best = match best {
            Some(b) if b.lag.abs() < p.lag.abs() || (b.lag.abs() == p.lag.abs() && b.r >= p.r) => Some(b),
            _ => Some(p),
        };
    }
    best
}

/// The largest defined value of `rs` (over lags `-max_lag..=max_lag`) and its lag: the global
/// maximum, for when the nearest local peak is not what you want (edges included).
pub fn max_peak(rs: &[f64]) -> Option<Peak> {
    let max_lag = (rs.len() / 2) as isize;
    rs.iter().enumerate().filter(|(_, r)| !r.is_nan()).fold(None, |best: Option<Peak>, (k, &r)| match best {
        Some(b) if b.r >= r => Some(b),
        _ => Some(Peak { r, lag: k as isize - max_lag }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f32 = f32::NAN;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn pearson_matches_hand_computed_values() {
        // x = 1,2,3,4; y = 2,1,4,3: means 2.5; cov sum = (-1.5)(-0.5)+(-0.5)(-1.5)+(0.5)(1.5)+(1.5)(0.5)
        // = 3; var sums 5 and 5 → r = 3/5.
        assert!(close(pearson(&[1., 2., 3., 4.], &[2., 1., 4., 3.], 2), 0.6));
        assert!(close(pearson(&[1., 2., 3.], &[3., 2., 1.], 2), -1.0));
        assert!(close(pearson(&[0.1, 0.7, 0.3], &[0.1, 0.7, 0.3], 2), 1.0));
        // NaN pairs are left out: the same as the complete pairs alone.
        assert!(close(pearson(&[1., NAN, 2., 3., 4., 9.], &[2., 5., 1., 4., 3., NAN], 2), 0.6));
        assert_eq!(pearson(&[1., NAN, 2., 3., 4.], &[2., 5., 1., 4., 3.], 5), None, "4 pairs < 5");
        assert_eq!(pearson(&[1., 1., 1.], &[1., 2., 3.], 2), None, "constant x");
        assert_eq!(pearson(&[], &[], 0), None);
    }

    #[test]
    fn lags_pair_x_now_with_y_later() {
        // y is x delayed by 2 points: y[t] = x[t - 2].
        let x = [0., 5., 1., 4., 2., 8., 3., 7., 6., 0., 9.];
        let mut y = [0.0f32; 11];
        y[2..].copy_from_slice(&x[..9]);
        let lead = 3;
        assert!(close(lagged_pearson(&x, &y, lead, 2, 2), 1.0), "x[t] = y[t + 2]");
        assert!(lagged_pearson(&x, &y, lead, -2, 2).unwrap() < 0.9);
        // lag 1 by hand: y[3..11] vs x[2..10].
        let want = pearson(&x[2..10], &y[3..11], 2).unwrap();
        assert!(close(lagged_pearson(&x, &y, lead, 1, 2), want));
        // lag -3: x[3..11] vs y[0..8].
        let want = pearson(&x[3..11], &y[0..8], 2).unwrap();
        assert!(close(lagged_pearson(&x, &y, lead, -3, 2), want));
        assert_eq!(lagged_pearson(&x, &y, lead, 4, 2), None, "beyond the lead");
        assert_eq!(lagged_pearson(&x, &y[1..], lead, 0, 2), None, "lengths differ");

        let mut rs = Vec::new();
        cross_correlation(&x, &y, lead, 3, 2, &mut rs);
        assert_eq!(rs.len(), 7);
        assert!((rs[5] - 1.0).abs() < 1e-9, "index 5 = lag +2");
        assert_eq!(max_peak(&rs).map(|p| p.lag), Some(2));
        // A small local maximum at lag 0 is nearer than the true peak...
        assert_eq!(pick_peak(&rs, 1).map(|p| p.lag), Some(0), "{rs:?}");
        // ...but not the largest within ±3 lags, which the true peak is.
        assert_eq!(pick_peak(&rs, 3), Some(Peak { r: rs[5], lag: 2 }));
    }

    #[test]
    fn the_peak_nearest_lag_zero_wins_and_edges_are_not_peaks() {
        // Lags -3..=3. Local maxima at -2 (0.5) and +2 (0.9): equally near, the larger wins;
        // one at -1 would be nearer.
        let rs = [0.0, 0.5, 0.1, 0.0, 0.2, 0.9, 0.3];
        assert_eq!(pick_peak(&rs, 1), Some(Peak { r: 0.9, lag: 2 }));
        let rs = [0.0, 0.1, 0.6, 0.0, 0.2, 0.9, 0.3];
        assert_eq!(pick_peak(&rs, 1), Some(Peak { r: 0.6, lag: -1 }));
        // Span 2: within ±2 lags of -1 (lags -3..=1) everything is lower, so it still wins.
        assert_eq!(pick_peak(&rs, 2), Some(Peak { r: 0.6, lag: -1 }));
        assert_eq!(pick_peak(&rs, 3).map(|p| p.lag), Some(2), "within ±3 of -1 lies 0.9 at +2");
        // Rising to the edge: no peak, though the maximum is there.
        let rs = [0.0, 0.1, 0.2, 0.3, 0.4];
        assert_eq!(pick_peak(&rs, 1), None);
        assert_eq!(max_peak(&rs), Some(Peak { r: 0.4, lag: 2 }));
        // Undefined values are skipped.
        let rs = [f64::NAN, 0.3, f64::NAN, 0.1, 0.0];
        assert_eq!(pick_peak(&rs, 1), Some(Peak { r: 0.3, lag: -1 }));
        assert_eq!(pick_peak(&[f64::NAN; 5], 1), None);
        assert_eq!(max_peak(&[]), None);
    }
}
