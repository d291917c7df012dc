//! Group filters: measures computed from several participants' media together (interpersonal
//! synchrony, turn-taking).
//!
//! A group filter has two halves, both written against this SDK:
//!
//! * the **individual step** ([`VideoStep`] / [`AudioStep`]) runs on each member's decoded media,
//!   on that member's media thread, at the group's analysis rate ([`Windowing::rate_hz`]), and
//!   emits a [`Sample`] (a scalar or a small vector) or nothing (no value at that time);
//! * the **aggregator** ([`Aggregator`]) sees the members' series resampled onto one timeline, one
//!   [`Window`] at a time, per pair of members or for the whole group ([`Scope`]), and returns the
//!   result as JSON.
//!
//! Everything between the halves is [`Aggregation`], the same code live (the server's aggregator
//! thread) and offline (recomputation from recorded files): time-stamped series per member,
//! windows that end at multiples of [`Windowing::step_ms`] on the experiment clock, linear
//! resampling onto a grid of `1000 / rate_hz` ms with no interpolation across gaps longer than
//! [`Windowing::max_gap_ms`] (missing values are `NaN` in the window), and the combinations.
//! [`Decimator`] picks which frames the individual step sees, by capture time, so the live and
//! the offline run analyse the same frames.
//!
//! Times are milliseconds on the experiment clock (since START): a frame's capture time derived
//! from its RTP timestamp, never the time it was processed.
//!
//! Parameters are declared once, like any filter's ([`FilterInfo::params`](crate::FilterInfo)),
//! and both halves get the same validated [`Params`]. A parameter change restarts the series
//! (windows that mix parameters would mean nothing).

use std::collections::VecDeque;

use serde_json::Value;

use super::frame::{AudioFrame, VideoFrame};
use super::params::{ParamError, Params};

/// Group filter results reach a member's chains as peer reports with ids starting with this
/// (then the instance id), data `{"value": <the result's value>, "with": <the other member, or
/// "group">, "window_end_ms"}`: what `GROUP_DISPLAY` draws.
pub const GROUP_REPORT_PREFIX: &str = "group:";

/// Most components a [`Sample`] holds.
pub const MAX_COMPONENTS: usize = 4;

/// What an individual step emits for one analysed frame: 1 to [`MAX_COMPONENTS`] numbers.
/// Plain data (`Copy`): emitting one allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    len: u8,
    values: [f32; MAX_COMPONENTS],
}

impl Sample {
    /// One number.
    pub fn scalar(x: f32) -> Self {
        Self::new(&[x])
    }

    /// Up to [`MAX_COMPONENTS`] numbers (the rest are ignored; at least one: an empty slice
    /// gives a single `NaN`).
    pub fn new(values: &[f32]) -> Self {
        let mut v = [f32::NAN; MAX_COMPONENTS];
        let len = values.len().clamp(1, MAX_COMPONENTS);
        for (d, s) in v.iter_mut().zip(values) {
            *d = *s;
        }
        Self { len: len as u8, values: v }
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.values[..self.len as usize]
    }

    /// Component `i` (`NaN` beyond the sample's length).
    pub fn get(&self, i: usize) -> f32 {
        if i < self.len as usize {
            self.values[i]
        } else {
            f32::NAN
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl PartialEq for Sample {
    /// Equal components (the unused slots do not count).
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// The individual step of a video group filter. Built from validated parameters; `step` is
/// called with each analysed frame (decoded, before the member's own filters) on the member's
/// media thread. Keep it cheap and allocation-free: it runs for every member.
pub trait VideoStep: Send {
    fn new(params: &Params) -> Result<Self, ParamError>
    where
        Self: Sized;
    /// The value at this frame's capture time, or `None` (no value: missing in the series).
    fn step(&mut self, frame: &VideoFrame) -> Option<Sample>;
}

/// The individual step of an audio group filter: as [`VideoStep`], per decoded audio block
/// (20 ms of Opus at 48 kHz) that the [`Decimator`] admits.
pub trait AudioStep: Send {
    fn new(params: &Params) -> Result<Self, ParamError>
    where
        Self: Sized;
    fn step(&mut self, frame: &AudioFrame) -> Option<Sample>;
}

/// Which members one evaluation sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every pair of members (in membership order: `(a, b)` with `a` before `b`).
    Pairs,
    /// All members at once.
    Group,
}

/// How the aggregator wants its data: the grid, the windows and who is in one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Windowing {
    /// Analysis rate: how often the individual step runs, and the grid of the windows.
    pub rate_hz: f64,
    /// Length of a window.
    pub window_ms: f64,
    /// Windows end at every multiple of this on the experiment clock.
    pub step_ms: f64,
    /// History before each window that the aggregator also gets (e.g. the largest lag of a
    /// cross-correlation), so that lagged values inside the window are defined.
    pub lead_ms: f64,
    /// Two samples further apart than this are not interpolated between: the grid points in
    /// between are missing (`NaN`).
    pub max_gap_ms: f64,
    pub scope: Scope,
}

impl Windowing {
    /// Milliseconds between grid points.
    pub fn dt_ms(&self) -> f64 {
        1000.0 / self.rate_hz
    }

    /// Whether an aggregation can run on this: finite, positive rate, window and step, a lead
    /// and gap not negative, and at most a million grid points per window. (A step of 0 would
    /// evaluate the same window forever.)
    pub fn check(&self) -> Result<(), ParamError> {
        let bad = |what: &str, v: f64| ParamError::Invalid {
            param: "windowing".to_owned(),
            reason: format!("{what} must be a positive finite number, got {v}"),
        };
        for (what, v) in [("rate_hz", self.rate_hz), ("window_ms", self.window_ms), ("step_ms", self.step_ms)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(what, v));
            }
        }
        for (what, v) in [("lead_ms", self.lead_ms), ("max_gap_ms", self.max_gap_ms)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(what, v));
            }
        }
        if (self.window_ms + self.lead_ms) / self.dt_ms() > 1e6 {
            return Err(ParamError::Invalid {
                param: "windowing".to_owned(),
                reason: "more than a million grid points per window".to_owned(),
            });
        }
        Ok(())
    }
}

/// One window of one combination of members, resampled onto the common grid.
#[derive(Debug)]
pub struct Window<'a> {
    /// The window's end on the experiment clock (ms since START).
    pub end_ms: f64,
    /// Grid period (ms).
    pub dt_ms: f64,
    /// Grid points before the window proper ([`Windowing::lead_ms`] / `dt_ms`); the window is
    /// `series(..)[lead..]`.
    pub lead: usize,
    /// Indices into the aggregation's members of the members in this window, in order.
    pub members: &'a [usize],
    /// Component-major per member: `data[m][c]` is member `m`'s component `c`, one value per grid
    /// point, `NaN` where missing.
    data: &'a [Vec<Vec<f32>>],
}

impl Window<'_> {
    /// How many members this window holds.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Member `m`'s (index in this window) component `c` over lead + window; `NaN` = missing.
    pub fn series(&self, m: usize, c: usize) -> &[f32] {
        self.data.get(m).and_then(|d| d.get(c)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Grid points per series (lead + window).
    pub fn points(&self) -> usize {
        self.data.first().and_then(|d| d.first()).map_or(0, Vec::len)
    }

    /// Grid points of the window proper where every member's component 0 is present.
    pub fn n_samples(&self) -> usize {
        (self.lead..self.points())
            .filter(|&j| self.data.iter().all(|d| d.first().is_some_and(|s| !s[j].is_nan())))
            .count()
    }
}

/// The aggregator of a group filter: one instance per group filter instance per experiment,
/// on the experiment's aggregator thread.
pub trait Aggregator: Send {
    fn new(params: &Params) -> Result<Self, ParamError>
    where
        Self: Sized;
    /// The windowing these parameters ask for (asked once, when the instance is built).
    fn windowing(&self) -> Windowing;
    /// Evaluates one window; `None` when there is nothing to report (too little data). The
    /// result is the filter's own JSON object (e.g. `{"r": 0.81, "lag_ms": 400}`).
    fn aggregate(&mut self, window: &Window<'_>) -> Option<Value>;
}

pub type MakeVideoStep = fn(&Params) -> Result<Box<dyn VideoStep>, ParamError>;
pub type MakeAudioStep = fn(&Params) -> Result<Box<dyn AudioStep>, ParamError>;
pub type MakeAggregator = fn(&Params) -> Result<Box<dyn Aggregator>, ParamError>;

/// The [`MakeVideoStep`] of a type: `video_step: Some(filters::video_step::<MotionEnergy>)`.
pub fn video_step<S: VideoStep + 'static>(params: &Params) -> Result<Box<dyn VideoStep>, ParamError> {
    Ok(Box::new(S::new(params)?))
}

/// The [`MakeAudioStep`] of a type.
pub fn audio_step<S: AudioStep + 'static>(params: &Params) -> Result<Box<dyn AudioStep>, ParamError> {
    Ok(Box::new(S::new(params)?))
}

/// The [`MakeAggregator`] of a type.
pub fn aggregator<A: Aggregator + 'static>(params: &Params) -> Result<Box<dyn Aggregator>, ParamError> {
    Ok(Box::new(A::new(params)?))
}

/// The group half of a [`FilterInfo`](crate::FilterInfo): its constructors. A video group
/// filter has `video_step`, an audio one `audio_step`.
#[derive(Debug, Clone, Copy)]
pub struct GroupFilter {
    pub video_step: Option<MakeVideoStep>,
    pub audio_step: Option<MakeAudioStep>,
    pub aggregator: MakeAggregator,
}

/// Which frames the individual step sees: the first frame in each grid slot
/// (`floor(t_ms / period)`) of the capture-time axis. Deterministic in the capture times, so a
/// live run and an offline run over the recorded frames pick the same frames.
#[derive(Debug, Clone)]
pub struct Decimator {
    period_ms: f64,
    last_slot: Option<i64>,
}

impl Decimator {
    pub fn new(rate_hz: f64) -> Self {
        Self { period_ms: 1000.0 / rate_hz.max(0.001), last_slot: None }
    }

    /// Whether the frame captured at `t_ms` is analysed.
    pub fn admit(&mut self, t_ms: f64) -> bool {
        let slot = (t_ms / self.period_ms).floor() as i64;
        if self.last_slot.is_some_and(|l| slot <= l) {
            return false;
        }
        self.last_slot = Some(slot);
        true
    }

    /// Starts over (a new clock: START, a new source).
    pub fn reset(&mut self) {
        self.last_slot = None;
    }
}

/// One result of an [`Aggregation`]: the members it is about, the window and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    pub members: Vec<String>,
    pub window_end_ms: f64,
    pub value: Value,
    /// Grid points in the window where every member had a value.
    pub n_samples: usize,
}

/// One member's time-stamped values, oldest first.
#[derive(Debug, Default)]
struct Series {
    points: VecDeque<(f64, Option<Sample>)>,
}

impl Series {
    fn push(&mut self, t: f64, v: Option<Sample>) {
        // Kept in time order; an out-of-order value (rare: a reordered frame) is inserted.
        let at = self.points.iter().rposition(|(u, _)| *u <= t).map_or(0, |i| i + 1);
        self.points.insert(at, (t, v));
    }

    fn prune_before(&mut self, t: f64) {
        // Keep one point before `t`: the left neighbour for interpolation.
        while self.points.len() > 1 && self.points[1].0 < t {
            self.points.pop_front();
        }
    }

    /// Component `c` on the grid `first + j * dt` (`j < n`) into `out`: at each grid point the
    /// sample at that time (within 1 µs either side), or linear interpolation between its neighbours when both are
    /// present and at most `max_gap` apart; else `NaN`. One walk through the points (the grid
    /// rises), so a window costs its points plus the series' length.
    fn resample(&self, c: usize, first: f64, dt: f64, n: usize, max_gap: f64, out: &mut Vec<f32>) {
        out.clear();
        let mut i = self.points.partition_point(|(t, _)| *t < first);
        for j in 0..n {
            let g = first + j as f64 * dt;
            while self.points.get(i).is_some_and(|(t, _)| *t < g) {
                i += 1;
            }
            let (left, right) = (i.checked_sub(1).and_then(|l| self.points.get(l)), self.points.get(i));
            // A sample within a microsecond of the grid point, on either side, is its value.
            let near = |p: &&(f64, Option<Sample>)| (p.0 - g).abs() < 1e-6;
            let v = match (right.filter(near).or(left.filter(near)), left, right) {
                (Some((_, v)), _, _) => v.map_or(f32::NAN, |s| s.get(c)),
                (None, Some((ta, Some(a))), Some((tb, Some(b)))) if tb - ta <= max_gap => {
                    let w = ((g - ta) / (tb - ta)) as f32;
                    a.get(c) + (b.get(c) - a.get(c)) * w
                }
                _ => f32::NAN,
            };
            out.push(v);
        }
    }

    fn components(&self) -> usize {
        self.points.iter().find_map(|(_, v)| v.map(|s| s.len())).unwrap_or(1)
    }
}

/// One group filter instance's aggregation: the members' series, the windows, the aggregator.
/// The same code runs live and offline: push values with their capture times (any order across
/// members), then [`advance`](Self::advance) to a time up to which the data is complete.
pub struct Aggregation {
    aggregator: Box<dyn Aggregator>,
    windowing: Windowing,
    members: Vec<(String, Series)>,
    /// The end of the next window to evaluate; set by the first value.
    next_end: Option<f64>,
    /// Values that arrived for a time whose windows were already evaluated.
    late: u64,
    /// Each member resampled onto the current window's grid, per component (reused).
    resampled: Vec<Vec<Vec<f32>>>,
    /// One combination's members' data, handed to the aggregator (reused).
    scratch: Vec<Vec<Vec<f32>>>,
}

impl Aggregation {
    /// Builds the aggregator of `group` with validated `params`.
    pub fn new(group: &GroupFilter, params: &Params) -> Result<Self, ParamError> {
        let aggregator = (group.aggregator)(params)?;
        let windowing = aggregator.windowing();
        windowing.check()?;
        Ok(Self {
            aggregator,
            windowing,
            members: Vec::new(),
            next_end: None,
            late: 0,
            resampled: Vec::new(),
            scratch: Vec::new(),
        })
    }

    pub fn windowing(&self) -> &Windowing {
        &self.windowing
    }

    /// The members, in order. Members that stay keep their series; new ones start empty.
    pub fn set_members(&mut self, ids: &[String]) {
        let mut old = std::mem::take(&mut self.members);
        for id in ids {
            let series = old.iter().position(|(m, _)| m == id).map(|i| old.swap_remove(i).1).unwrap_or_default();
            self.members.push((id.clone(), series));
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(m, _)| m.as_str())
    }

    /// Member `member`'s value at capture time `t_ms` (`None`: no value then). False if
    /// `member` is not a member or `t_ms` is not finite (dropped: one such time would stall the
    /// windows for good).
    pub fn push(&mut self, member: &str, t_ms: f64, value: Option<Sample>) -> bool {
        if !t_ms.is_finite() {
            return false;
        }
        let Some((_, series)) = self.members.iter_mut().find(|(m, _)| m == member) else { return false };
        if self.next_end.is_some_and(|e| t_ms < e - self.windowing.step_ms) {
            self.late += 1;
        }
        series.push(t_ms, value);
        if self.next_end.is_none() {
            let w = &self.windowing;
            self.next_end = Some(((t_ms + w.window_ms) / w.step_ms).ceil() * w.step_ms);
        }
        true
    }

    /// Values that came after their windows had been evaluated.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Evaluates every window that ends at or before `complete_until_ms` (the data up to then
    /// is complete) and appends the results to `out`.
    pub fn advance(&mut self, complete_until_ms: f64, out: &mut Vec<GroupResult>) {
        let w = self.windowing;
        let dt = w.dt_ms();
        let points = ((w.lead_ms + w.window_ms) / dt).round().max(1.0) as usize;
        let lead = (w.lead_ms / dt).round() as usize;
        let combos: Vec<Vec<usize>> = match w.scope {
            Scope::Pairs => {
                (0..self.members.len()).flat_map(|a| (a + 1..self.members.len()).map(move |b| vec![a, b])).collect()
            }
            Scope::Group if self.members.len() >= 2 => vec![(0..self.members.len()).collect()],
            Scope::Group => Vec::new(),
        };
        while let Some(end) = self.next_end.filter(|e| *e <= complete_until_ms) {
            // Every member once onto this window's grid, then each combination copies its own.
            let first = end - (points - 1) as f64 * dt;
            self.resampled.resize_with(self.members.len(), Vec::new);
            for ((_, series), comps) in self.members.iter().zip(&mut self.resampled) {
                comps.resize_with(series.components(), Vec::new);
                for (c, v) in comps.iter_mut().enumerate() {
                    series.resample(c, first, dt, points, w.max_gap_ms, v);
                }
            }
            for combo in &combos {
                self.scratch.resize_with(combo.len(), Vec::new);
                for (slot, &m) in self.scratch.iter_mut().zip(combo) {
                    slot.clone_from(&self.resampled[m]);
                }
                let window =
                    Window { end_ms: end, dt_ms: dt, lead, members: combo, data: &self.scratch[..combo.len()] };
                let n = window.n_samples();
                if n < 2 {
                    continue;
                }
                if let Some(value) = self.aggregator.aggregate(&window) {
                    let members = combo.iter().map(|&m| self.members[m].0.clone()).collect();
                    out.push(GroupResult { members, window_end_ms: end, value, n_samples: n });
                }
            }
            self.next_end = Some(end + w.step_ms);
            let keep_from = end + w.step_ms - w.window_ms - w.lead_ms - w.max_gap_ms;
            for (_, s) in &mut self.members {
                s.prune_before(keep_from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Reports the mean of member 0's component 0 over the window proper, and the window.
    struct Mean;
    impl Aggregator for Mean {
        fn new(_: &Params) -> Result<Self, ParamError> {
            Ok(Mean)
        }
        fn windowing(&self) -> Windowing {
            Windowing {
                rate_hz: 10.0,
                window_ms: 1000.0,
                step_ms: 500.0,
                lead_ms: 200.0,
                max_gap_ms: 250.0,
                scope: Scope::Pairs,
            }
        }
        fn aggregate(&mut self, w: &Window<'_>) -> Option<Value> {
            let s = &w.series(0, 0)[w.lead..];
            let valid: Vec<f32> = s.iter().copied().filter(|v| !v.is_nan()).collect();
            Some(
                json!({"mean": valid.iter().sum::<f32>() / valid.len() as f32, "points": w.points(), "members": w.members}),
            )
        }
    }

    fn mean_group() -> GroupFilter {
        GroupFilter { video_step: None, audio_step: None, aggregator: aggregator::<Mean> }
    }

    fn params() -> Params {
        Params::defaults(&[])
    }

    #[test]
    fn windows_end_on_the_step_grid_and_cover_lead_plus_window() {
        let mut a = Aggregation::new(&mean_group(), &params()).unwrap();
        a.set_members(&["a".into(), "b".into()]);
        for k in 0..40 {
            let t = k as f64 * 100.0;
            a.push("a", t, Some(Sample::scalar(t as f32)));
            a.push("b", t + 30.0, Some(Sample::scalar(1.0)));
        }
        let mut out = Vec::new();
        a.advance(2000.0, &mut out);
        let ends: Vec<f64> = out.iter().map(|r| r.window_end_ms).collect();
        assert_eq!(ends, vec![1000.0, 1500.0, 2000.0]);
        assert_eq!(out[0].members, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(out[0].value["points"], 12, "(200 + 1000) / 100");
        // Window (1000-1000, 1000]: grid 100..=1000 → mean 550; the value is interpolated exactly.
        assert_eq!(out[0].value["mean"], 550.0);
        // Nothing is evaluated twice.
        a.advance(2000.0, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn gaps_longer_than_max_gap_are_missing_not_interpolated() {
        let mut a = Aggregation::new(&mean_group(), &params()).unwrap();
        a.set_members(&["a".into(), "b".into()]);
        for k in 0..=30 {
            let t = k as f64 * 100.0;
            // A hole from 1100 to 1900 (a's camera froze), and a `None` at 2500.
            if !(1100.0..=1900.0).contains(&t) {
                a.push("a", t, if t == 2500.0 { None } else { Some(Sample::scalar(1.0)) });
            }
            a.push("b", t, Some(Sample::scalar(1.0)));
        }
        let mut out = Vec::new();
        a.advance(3000.0, &mut out);
        let at = |end: f64| out.iter().find(|r| r.window_end_ms == end).map(|r| r.n_samples);
        assert_eq!(at(1000.0), Some(10));
        // Only 2000 itself: 1100..=1900 lie in a 1000 ms gap, so the window has too few points.
        assert_eq!(at(2000.0), None);
        assert_eq!(at(3000.0), Some(9), "2500 is missing: no interpolation across a None");
    }

    /// Grid times are sums of floating-point steps, so a grid point can lie a hair after the
    /// sample taken at that time: it is that sample, whether or not a later one is in yet (a
    /// window evaluated right at its end, a face lost just after).
    #[test]
    fn a_sample_a_hair_before_a_grid_point_is_its_value() {
        let mut a = Aggregation::new(&mean_group(), &params()).unwrap();
        a.set_members(&["a".into(), "b".into()]);
        for k in 0..=10 {
            let t = k as f64 * 100.0 - 1e-9;
            a.push("a", t, Some(Sample::scalar(1.0)));
            a.push("b", t, Some(Sample::scalar(1.0)));
        }
        a.push("b", 1100.0, None);
        let mut out = Vec::new();
        a.advance(1000.0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].n_samples, 10, "grid 100..=1000, every point a sample");
    }

    /// An aggregator whose windowing comes from its parameters (here: a step of 0 ms).
    struct ZeroStep;
    impl Aggregator for ZeroStep {
        fn new(_: &Params) -> Result<Self, ParamError> {
            Ok(ZeroStep)
        }
        fn windowing(&self) -> Windowing {
            Windowing { step_ms: 0.0, ..Mean.windowing() }
        }
        fn aggregate(&mut self, _: &Window<'_>) -> Option<Value> {
            Some(json!({}))
        }
    }

    #[test]
    fn unusable_windowing_is_an_error_not_an_endless_loop() {
        let g = GroupFilter { video_step: None, audio_step: None, aggregator: aggregator::<ZeroStep> };
        let err = Aggregation::new(&g, &params()).err().expect("a zero step is refused");
        assert_eq!(err.to_string(), "windowing: step_ms must be a positive finite number, got 0");
        let w = Mean.windowing();
        assert!(Windowing { rate_hz: f64::NAN, ..w }.check().is_err());
        assert!(Windowing { lead_ms: -1.0, ..w }.check().is_err());
        assert!(Windowing { rate_hz: 1e9, ..w }.check().is_err(), "a billion points per window");
        assert!(w.check().is_ok());
    }

    #[test]
    fn a_non_finite_time_is_refused_and_does_not_stall_the_windows() {
        let mut a = Aggregation::new(&mean_group(), &params()).unwrap();
        a.set_members(&["a".into(), "b".into()]);
        assert!(!a.push("a", f64::NAN, Some(Sample::scalar(1.0))));
        assert!(!a.push("a", f64::INFINITY, Some(Sample::scalar(1.0))));
        for k in 0..=20 {
            a.push("a", k as f64 * 100.0, Some(Sample::scalar(1.0)));
            a.push("b", k as f64 * 100.0, Some(Sample::scalar(1.0)));
        }
        let mut out = Vec::new();
        a.advance(2000.0, &mut out);
        assert_eq!(out.len(), 3, "windows at 1000, 1500, 2000");
    }

    #[test]
    fn membership_changes_keep_the_series_of_members_who_stay() {
        let mut a = Aggregation::new(&mean_group(), &params()).unwrap();
        a.set_members(&["a".into(), "b".into()]);
        a.push("a", 0.0, Some(Sample::scalar(1.0)));
        a.set_members(&["c".into(), "a".into()]);
        assert_eq!(a.members().collect::<Vec<_>>(), ["c", "a"]);
        assert!(!a.push("b", 100.0, Some(Sample::scalar(1.0))), "b is no longer a member");
        assert_eq!(a.members[1].1.points.len(), 1);
    }

    #[test]
    fn the_decimator_takes_the_first_frame_of_each_slot() {
        let mut d = Decimator::new(15.0); // 66.7 ms slots
                                          // 30 fps, with a little jitter.
        let times: Vec<f64> = (0..8).map(|k| k as f64 * 1000.0 / 30.0 + if k % 2 == 1 { -1.0 } else { 1.0 }).collect();
        let taken: Vec<usize> = (0..8).filter(|&k| d.admit(times[k])).collect();
        assert_eq!(taken, vec![0, 2, 4, 6]);
        assert!(!d.admit(150.0), "never backwards");
        d.reset();
        assert!(d.admit(0.0));
    }

    #[test]
    fn samples_hold_up_to_four_components() {
        let s = Sample::new(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(s.as_slice(), &[1.0, 2.0, 3.0, 4.0]);
        assert!(s.get(4).is_nan());
        assert_eq!(Sample::scalar(0.5).len(), 1);
        // Equality is by the components held, not the unused (NaN) slots.
        assert_eq!(Sample::scalar(0.5), Sample::scalar(0.5));
        assert_ne!(Sample::scalar(0.5), Sample::new(&[0.5, 1.0]));
    }
}
