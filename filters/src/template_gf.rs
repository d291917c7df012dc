//! `TEMPLATE_GF`: the starting point for a new group filter (a measure computed from several
//! participants together). The README ("Writing a group filter") walks through this file.
//! Individual step: each participant's picture brightness (mean luma). Aggregator: per pair,
//! how alike the two brightness curves move (Pearson r over the window) and how far apart they
//! are (mean absolute difference).
//!
//! To make your own: copy this file to `src/my_gf.rs`, rename `"TEMPLATE_GF"` and the types,
//! write the step (what one participant's media says, as one to four numbers) and `aggregate`
//! (what the series of two, or all, participants say together), add `pub mod my_gf;` and
//! `my_gf::INFO,` to the registry in `lib.rs`, and run `cargo test -p filters my_gf`.
//! `MOTION_SYNC` and `SPEECH_SYNC` are full examples.
//!
//! Hidden from the catalogue (SynthARium lists its template group filter nowhere either); set
//! `listing: Listing::Session` to offer yours in the session designer.

use serde_json::{json, Value};

use crate::group::{aggregator, video_step, Aggregator, GroupFilter, Sample, Scope, VideoStep, Window, Windowing};
use crate::sync::pearson;
use crate::{Channel, FilterInfo, Listing, Param, ParamError, Params, VideoFrame, Y};

// 1. The declaration. `group` holds the two halves; `video`/`audio` stay `None` (a group filter
//    never runs in a participant's chain). The parameters reach both halves, validated, and
//    the catalogue entry gets `groupFilter: true`.
pub const INFO: FilterInfo = FilterInfo {
    name: "TEMPLATE_GF",
    listing: Listing::Hidden,
    channel: Channel::Video, // a video group filter: `video_step`; an audio one: `audio_step`
    group: Some(GroupFilter {
        video_step: Some(video_step::<MeanLuma>),
        audio_step: None,
        aggregator: aggregator::<BrightnessSync>,
    }),
    description: "Template group filter: per pair, how alike the participants' brightness moves.",
    params: &[
        // Windows in milliseconds on the experiment clock; the rate at which the step runs.
        Param::Number { name: "window_ms", min: 1000.0, max: 60000.0, step: 500.0, default: 4000.0 },
        Param::Number { name: "rate_hz", min: 1.0, max: 30.0, step: 1.0, default: 5.0 },
    ],
    video: None,
    audio: None,
};

// 2. The individual step: one instance per participant, on that participant's media thread,
//    called with each frame the decimator admits (`rate_hz` per second, picked by capture
//    time). Cheap and allocation-free: it runs for every member. Return `None` when there is no
//    meaningful value (the aggregator then sees a gap, never a made-up number).
pub struct MeanLuma;

impl VideoStep for MeanLuma {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(MeanLuma)
    }

    fn step(&mut self, frame: &VideoFrame) -> Option<Sample> {
        let (w, h) = (frame.plane_width(Y), frame.plane_height(Y));
        if w * h == 0 {
            return None;
        }
        // Every 4th row is plenty for a mean, and 4 times cheaper.
        let rows = (0..h).step_by(4);
        let n = rows.len() * w;
        let sum: u64 = rows.map(|r| frame.row(Y, r).iter().map(|&v| v as u64).sum::<u64>()).sum();
        // Up to four numbers: `Sample::new(&[a, b])`; component 0 decides "present" in a window.
        Some(Sample::scalar(sum as f32 / n as f32))
    }
}

// 3. The aggregator: one instance per group filter instance per experiment, on the experiment's
//    aggregator thread. It says how it wants the data (`windowing`) and evaluates one window of
//    one pair (or the whole group) at a time.
pub struct BrightnessSync {
    windowing: Windowing,
}

impl Aggregator for BrightnessSync {
    fn new(p: &Params) -> Result<Self, ParamError> {
        let rate_hz = p.number("rate_hz");
        Ok(BrightnessSync {
            windowing: Windowing {
                // The grid: one point per 1000 / rate_hz ms.
                rate_hz,
                window_ms: p.number("window_ms"),
                // A result every second (windows end on its multiples).
                step_ms: 1000.0,
                // History before the window (a lagged measure's largest lag).
                lead_ms: 0.0,
                // No interpolation across longer gaps: those grid points are NaN.
                max_gap_ms: 2.5 * 1000.0 / rate_hz,
                // Every pair; `Scope::Group` = all members at once.
                scope: Scope::Pairs,
            },
        })
    }

    fn windowing(&self) -> Windowing {
        self.windowing
    }

    // 4. One window: `series(m, c)` is member m's component c on the grid, `NaN` where missing
    //    (lead first, then the window proper from `w.lead`). Return `None` when there is too
    //    little to say; the JSON is yours (record what a reader needs, nothing more).
    fn aggregate(&mut self, w: &Window<'_>) -> Option<Value> {
        let (a, b) = (&w.series(0, 0)[w.lead..], &w.series(1, 0)[w.lead..]);
        // Ask for half the window's points from both, else no result.
        let min = a.len().div_ceil(2).max(2);
        if w.n_samples() < min {
            return None;
        }
        let (sum, n) = a
            .iter()
            .zip(b)
            .filter(|(x, y)| !x.is_nan() && !y.is_nan())
            .fold((0.0f64, 0usize), |(s, n), (x, y)| (s + (x - y).abs() as f64, n + 1));
        Some(json!({
            // `filters::sync` has correlation with missing values, lags and peak picking.
            "r": pearson(a, b, min),
            "difference": sum / n as f64,
        }))
    }
}

// 5. Tests with ground truth, through the harness (`testing::run_group`): synthetic members
//    whose answer you know, frames stamped with capture times, the same Decimator, step and
//    Aggregation as the server.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{capture_times, run_group};

    fn flat(luma: u8) -> VideoFrame {
        let mut f = VideoFrame::new(64, 48);
        f.fill(luma, 128, 128);
        f
    }

    #[test]
    fn brightness_that_moves_together_correlates() {
        // 10 s at 30 fps: a brightens and darkens in a 2 s cycle; b does the same 20 levels
        // darker; c the opposite.
        let times = capture_times(300, 30.0, 0.0);
        let wave = |k: usize| 100.0 + 50.0 * (k as f64 * std::f64::consts::PI / 30.0).sin();
        let out = run_group(&INFO, &INFO.default_params(), &["a", "b", "c"], &times, |m, k| {
            Some(flat(match m {
                0 => wave(k),
                1 => wave(k) - 20.0,
                _ => 200.0 - wave(k),
            } as u8))
        })
        .unwrap();
        let ab = out.pair("a", "b");
        assert_eq!(ab.len(), 6, "windows ending at 4..=9 s");
        for r in ab {
            assert!(r.value["r"].as_f64().unwrap() > 0.99, "{}", r.value);
            assert!((r.value["difference"].as_f64().unwrap() - 20.0).abs() < 1.0, "{}", r.value);
        }
        for r in out.pair("a", "c") {
            assert!(r.value["r"].as_f64().unwrap() < -0.99, "{}", r.value);
        }
        // The individual series are there too (what the server logs per member).
        assert_eq!(out.series[0].len(), 50, "5 Hz over 10 s");
    }

    #[test]
    fn a_member_without_frames_gives_no_results() {
        let times = capture_times(300, 30.0, 0.0);
        let out =
            run_group(&INFO, &INFO.default_params(), &["a", "b"], &times, |m, _| (m == 0).then(|| flat(90))).unwrap();
        assert!(out.results.is_empty());
    }
}
