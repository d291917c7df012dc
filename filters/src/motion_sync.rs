//! `MOTION_SYNC`: interpersonal synchrony of body movement, per pair of participants (motion
//! energy analysis with windowed lagged cross-correlation and peak picking: Boker et al. 2002;
//! Paxton and Dale 2013).
//!
//! **Individual step** ([`MotionEnergy`]), at `rate_hz` (default 15 Hz): the share (0..1) of luma
//! samples whose absolute difference to the previous *analysed* frame exceeds `threshold` luma
//! levels (the camera's and the codec's noise). It samples a regular subgrid: every 2nd row,
//! every column (half the pixels; the previous frame's sampled rows are kept in one reused
//! buffer). No value for the first frame and for the first frame after a size change (nothing
//! to compare with).
//!
//! **Aggregator** ([`MotionSync`]), per pair of members (`Scope::Pairs`), one result per
//! `step_ms` over the last `window_ms`: the cross-correlation of the two motion-energy series at
//! lags `-max_lag_ms..=max_lag_ms` on the analysis grid (`1000 / rate_hz` ms), each lag over the
//! whole window (see [`sync`](crate::sync)), and Boker et al.'s peak picking (the local maximum
//! nearest lag 0 that is the largest r within ±1 s of itself, so that
//! small bumps on the flank of a strong peak do not count). The result:
//!
//! `{"r": peak r, "lag_ms": lag at the peak, "r0": r at lag 0}`
//!
//! **Sign convention:** `lag_ms > 0` means the second member of `members` follows the first by
//! that much (the first leads); `< 0`, the second leads. `r` and `lag_ms` are `null` when the
//! function has no peak inside the lag range (e.g. it rises to the edge), `r0` is `null` when
//! either member did not move at all in the window. A window where fewer than half the grid
//! points have a value from both members gives no result. The usual summary of a session is the
//! mean of `r` over the windows (and the distribution of `lag_ms`); mind that the result depends
//! on the parameters (recorded with every result).
//!
//! Defaults follow the literature on conversations: windows of 10 s every 1 s, lags ±3 s.

use serde_json::{json, Value};

use crate::group::{aggregator, video_step, Aggregator, GroupFilter, Sample, Scope, VideoStep, Window, Windowing};
use crate::sync::{check_max_lag, cross_correlation, pick_peak, PEAK_SPAN_MS};
use crate::{Channel, FilterInfo, Listing, Param, ParamError, Params, VideoFrame, Y};

pub const INFO: FilterInfo = FilterInfo {
    name: "MOTION_SYNC",
    listing: Listing::Session,
    channel: Channel::Video,
    group: Some(GroupFilter {
        video_step: Some(video_step::<MotionEnergy>),
        audio_step: None,
        aggregator: aggregator::<MotionSync>,
    }),
    description: "Movement synchrony per pair: motion energy, windowed lagged cross-correlation, peak r and lag.",
    params: &[
        Param::Number { name: "window_ms", min: 2000.0, max: 60000.0, step: 500.0, default: 10000.0 },
        Param::Number { name: "step_ms", min: 200.0, max: 10000.0, step: 100.0, default: 1000.0 },
        Param::Number { name: "max_lag_ms", min: 100.0, max: 10000.0, step: 100.0, default: 3000.0 },
        Param::Number { name: "threshold", min: 1.0, max: 100.0, step: 1.0, default: 10.0 },
        Param::Number { name: "rate_hz", min: 5.0, max: 30.0, step: 1.0, default: 15.0 },
    ],
    video: None,
    audio: None,
};

/// Rows sampled: every `ROW_STEP`th.
const ROW_STEP: usize = 2;

/// The individual step: motion energy of one member's video.
pub struct MotionEnergy {
    threshold: u8,
    /// The sampled luma rows of the previous analysed frame, `width` each.
    prev: Vec<u8>,
    /// The size `prev` was taken at (`(0, 0)`: none yet).
    size: (usize, usize),
}

impl VideoStep for MotionEnergy {
    fn new(p: &Params) -> Result<Self, ParamError> {
        Ok(MotionEnergy { threshold: p.int("threshold").clamp(0, 255) as u8, prev: Vec::new(), size: (0, 0) })
    }

    fn step(&mut self, frame: &VideoFrame) -> Option<Sample> {
        let (w, h) = (frame.plane_width(Y), frame.plane_height(Y));
        if w == 0 || h == 0 {
            self.size = (0, 0);
            return None;
        }
        let rows = h.div_ceil(ROW_STEP);
        let fresh = self.size != (w, h);
        if fresh {
            self.prev.clear();
            self.prev.resize(w * rows, 0);
            self.size = (w, h);
        }
        let mut changed = 0u64;
        for (prev, r) in self.prev.chunks_exact_mut(w).zip((0..h).step_by(ROW_STEP)) {
            changed += count_changed(frame.row(Y, r), prev, self.threshold);
        }
        (!fresh).then(|| Sample::scalar(changed as f32 / (w * rows) as f32))
    }
}

/// How many of `cur` differ from `prev` by more than `threshold`; `prev` becomes `cur`. In
/// blocks with a narrow counter, which the compiler turns into SIMD compares and adds.
fn count_changed(cur: &[u8], prev: &mut [u8], threshold: u8) -> u64 {
    let mut n = 0u64;
    for (c, p) in cur.chunks(240).zip(prev.chunks_mut(240)) {
        let mut k = 0u8;
        for (c, p) in c.iter().zip(p.iter_mut()) {
            // |c - p| as two saturating subtractions (one SIMD instruction each).
            let d = c.saturating_sub(*p) | p.saturating_sub(*c);
            k += (d > threshold) as u8;
            *p = *c;
        }
        n += k as u64;
    }
    n
}

/// The aggregator: windowed lagged cross-correlation with peak picking, per pair.
pub struct MotionSync {
    windowing: Windowing,
    /// The cross-correlation function (reused).
    rs: Vec<f64>,
}

impl Aggregator for MotionSync {
    fn new(p: &Params) -> Result<Self, ParamError> {
        let (window_ms, max_lag_ms) = (p.number("window_ms"), p.number("max_lag_ms"));
        check_max_lag(window_ms, max_lag_ms)?;
        let rate_hz = p.number("rate_hz");
        Ok(MotionSync {
            windowing: Windowing {
                rate_hz,
                window_ms,
                step_ms: p.number("step_ms"),
                lead_ms: max_lag_ms,
                // One or two lost analysed frames are bridged; longer gaps are missing.
                max_gap_ms: 3.5 * 1000.0 / rate_hz,
                scope: Scope::Pairs,
            },
            rs: Vec::new(),
        })
    }

    fn windowing(&self) -> Windowing {
        self.windowing
    }

    fn aggregate(&mut self, w: &Window<'_>) -> Option<Value> {
        let (x, y) = (w.series(0, 0), w.series(1, 0));
        let min_pairs = (w.points() - w.lead).div_ceil(2).max(3);
        if w.n_samples() < min_pairs {
            return None;
        }
        cross_correlation(x, y, w.lead, w.lead, min_pairs, &mut self.rs);
        let span = (PEAK_SPAN_MS / w.dt_ms).round().max(1.0) as usize;
        let peak = pick_peak(&self.rs, span);
        let ms = |lag: isize| (lag as f64 * w.dt_ms * 10.0).round() / 10.0;
        let finite = |r: f64| (!r.is_nan()).then_some(r);
        Some(json!({
            "r": peak.map(|p| p.r),
            "lag_ms": peak.map(|p| ms(p.lag)),
            "r0": finite(self.rs[w.lead]),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::draw::fill_rect;
    use crate::testing::{capture_times, run_group, GroupRun, Rng};

    const FPS: f64 = 30.0;
    const W: usize = 160;
    const H: usize = 120;

    /// A member's movement: the x position of a box per frame at 30 fps. Bursts of movement
    /// (0.2 to 1.5 s, 2 to 8 px per frame, either direction) start at irregular times (pauses
    /// of 0.1 to 2 s), all from `seed`.
    fn motion(seed: u64, frames: usize) -> Vec<i32> {
        let mut rng = Rng::new(seed);
        let mut xs = Vec::with_capacity(frames);
        let (mut x, mut v, mut left) = (60.0f64, 0.0f64, 0usize);
        while xs.len() < frames {
            if left == 0 {
                if v == 0.0 {
                    v = rng.range(2.0, 8.0) * if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                    left = (rng.range(0.2, 1.5) * FPS) as usize;
                } else {
                    v = 0.0;
                    left = (rng.range(0.1, 2.0) * FPS) as usize;
                }
                left = left.max(1);
            }
            x += v;
            // Bounce within the frame.
            if !(0.0..=(W - 20) as f64).contains(&x) {
                v = -v;
                x = x.clamp(0.0, (W - 20) as f64);
            }
            xs.push(x.round() as i32);
            left -= 1;
        }
        xs
    }

    fn draw(x: i32) -> VideoFrame {
        let mut f = VideoFrame::new(W, H);
        f.fill(64, 128, 128);
        fill_rect(&mut f, x as isize, 40, 20, 40, 220, 128, 128);
        f
    }

    /// Runs MOTION_SYNC (defaults) over members given as box positions per frame.
    fn run(tracks: &[Vec<i32>], names: &[&str], gap: impl Fn(usize, f64) -> bool) -> GroupRun {
        let n = tracks[0].len();
        let times = capture_times(n, FPS, 5.0);
        let p = INFO.default_params();
        run_group(&INFO, &p, names, &times, |m, k| (!gap(m, times[k])).then(|| draw(tracks[m][k]))).unwrap()
    }

    fn delayed(track: &[i32], frames: usize) -> Vec<i32> {
        let mut d = vec![track[0]; frames];
        d.extend_from_slice(&track[..track.len() - frames]);
        d
    }

    fn field(v: &Value, k: &str) -> f64 {
        v[k].as_f64().unwrap_or(f64::NAN)
    }

    fn mean(xs: impl Iterator<Item = f64>) -> f64 {
        let v: Vec<f64> = xs.filter(|x| !x.is_nan()).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    #[test]
    fn motion_energy_is_the_share_of_changed_samples() {
        let p = INFO.default_params();
        let mut s = MotionEnergy::new(&p).unwrap();
        let a = draw(10);
        assert_eq!(s.step(&a), None, "nothing to compare the first frame with");
        assert_eq!(s.step(&a), Some(Sample::scalar(0.0)));
        // Moved 4 px: on the 40 box rows (20 sampled rows of 60), 8 columns changed (4 uncovered,
        // 4 covered).
        let got = s.step(&draw(14)).unwrap().get(0);
        assert!((got - (20.0 * 8.0) / (60.0 * 160.0)).abs() < 1e-6, "{got}");
        // Noise below the threshold does not count.
        let mut noisy = draw(14);
        for r in 0..H {
            for px in noisy.row_mut(Y, r) {
                *px += 5;
            }
        }
        assert_eq!(s.step(&noisy), Some(Sample::scalar(0.0)));
        // A new size: no value, then values again.
        assert_eq!(s.step(&VideoFrame::new(64, 48)), None);
        assert_eq!(s.step(&VideoFrame::new(64, 48)), Some(Sample::scalar(0.0)));
        assert_eq!(s.step(&VideoFrame::new(0, 0)), None);
    }

    #[test]
    fn parameters_validate() {
        let bad = INFO.parse_config(&json!({"window_ms": 4000, "max_lag_ms": 3000})).unwrap();
        let err = aggregator::<MotionSync>(&bad).err().unwrap();
        assert_eq!(err.to_string(), "max_lag_ms: 3000 is more than half the window (4000 ms)");
        assert!(INFO.parse_config(&json!({"rate_hz": 0})).is_err());
        assert!(INFO.parse_config(&json!({"window_ms": 10001})).is_err());
    }

    /// B moves as A did 400 ms earlier: every window's peak is at +400 ms (± one grid interval,
    /// 66.7 ms) with a high r; identical members peak at lag 0 with r = 1.
    #[test]
    fn a_400_ms_delay_is_found_in_every_window_and_identical_inputs_give_one() {
        let a = motion(1, 60 * 30);
        let b = delayed(&a, 12); // 12 frames at 30 fps = 400 ms
        let out = run(&[a.clone(), b, a], &["a", "b", "same"], |_, _| false);
        let lagged = out.pair("a", "b");
        assert!(lagged.len() >= 45, "{} windows", lagged.len());
        for r in &lagged {
            let lag = field(&r.value, "lag_ms");
            assert!((lag - 400.0).abs() <= 66.7 + 1e-6, "window {}: {}", r.window_end_ms, r.value);
            assert!(field(&r.value, "r") > 0.8, "window {}: {}", r.window_end_ms, r.value);
        }
        let same = out.pair("a", "same");
        assert_eq!(same.len(), lagged.len());
        for r in &same {
            assert!((field(&r.value, "r") - 1.0).abs() < 1e-6, "{}", r.value);
            assert_eq!(field(&r.value, "lag_ms"), 0.0);
            assert!((field(&r.value, "r0") - 1.0).abs() < 1e-6);
        }
        // The other member of the pair leads: (b, same) sees `same` (= a) 400 ms ahead.
        for r in out.pair("b", "same") {
            assert!((field(&r.value, "lag_ms") + 400.0).abs() <= 66.7 + 1e-6, "{}", r.value);
        }
    }

    /// Independent members score at chance: the mean peak r of A with an independent member lies
    /// within the distribution of A with many other independent members (surrogates), and
    /// clearly below the lagged and the identical pair.
    #[test]
    fn independent_inputs_score_at_chance_level_calibrated_by_surrogates() {
        let frames = 60 * 30;
        let a = motion(1, frames);
        let mut tracks = vec![a.clone(), delayed(&a, 12), motion(2, frames)];
        let mut names = vec!["a".to_owned(), "lagged".to_owned(), "indep".to_owned()];
        for s in 0..12 {
            tracks.push(motion(100 + s, frames));
            names.push(format!("s{s}"));
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = run(&tracks, &refs, |_, _| false);
        let mean_r = |b: &str| mean(out.pair("a", b).iter().map(|r| field(&r.value, "r")));
        let surrogates: Vec<f64> = (0..12).map(|s| mean_r(&format!("s{s}"))).collect();
        let (lo, hi) = surrogates.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        let sm = mean(surrogates.iter().copied());
        let sd = (surrogates.iter().map(|x| (x - sm).powi(2)).sum::<f64>() / 11.0).sqrt();
        let (indep, lagged) = (mean_r("indep"), mean_r("lagged"));
        assert!(
            (sm - 3.0 * sd..=sm + 3.0 * sd).contains(&indep),
            "independent {indep:.3} vs surrogates {sm:.3} ± {sd:.3} ({lo:.3}..{hi:.3})"
        );
        assert!(lagged > hi + 0.3 && lagged > 0.8, "lagged {lagged:.3} vs surrogates up to {hi:.3}");
        assert!(hi < 0.7, "chance level stays well below synchrony: {hi:.3}");
    }

    /// A member without values for 20 s: no window without enough data from both gives a
    /// result, and the windows that have enough still find the delay.
    #[test]
    fn missing_data_gives_no_bogus_results() {
        let a = motion(7, 60 * 30);
        let b = delayed(&a, 12);
        let out = run(&[a, b], &["a", "b"], |m, t| m == 1 && (20_000.0..40_000.0).contains(&t));
        let res = out.pair("a", "b");
        assert!(!res.is_empty());
        for r in &res {
            let missing_from = (r.window_end_ms - 10_000.0).max(20_000.0);
            let missing_to = r.window_end_ms.min(40_000.0);
            let missing = (missing_to - missing_from).max(0.0);
            assert!(missing <= 5_000.0 + 100.0, "window {} lacks {missing} ms of b", r.window_end_ms);
            assert!(r.n_samples >= 75, "{}", r.n_samples);
            assert!((field(&r.value, "lag_ms") - 400.0).abs() <= 66.7 + 1e-6, "{}", r.value);
        }
        assert!(res.iter().any(|r| r.window_end_ms < 20_000.0) && res.iter().any(|r| r.window_end_ms > 45_000.0));
    }
}
