//! Test harness for filters, usable without a server: synthetic frames, a [`run`] helper that
//! feeds frames through a filter with a real [`FilterContext`] and collects what it reported or
//! sent, and a few measurements (tone power, dominant frequency, frame difference).
//!
//! ```
//! use filters::testing::{self, gradient};
//! use filters::{mirror::Mirror, VideoFilter, Y};
//!
//! let mut f = Mirror::new(&filters::mirror::INFO.default_params()).unwrap();
//! let run = testing::run(&mut f, testing::video_frames(2, |_| gradient(64, 48)));
//! // The gradient rises left to right; mirrored, it falls.
//! assert!(run.frames[0].at(Y, 0, 10) > run.frames[0].at(Y, 63, 10));
//! ```

use std::f64::consts::PI;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::api::context::{FilterContext, PingRequest, Target};
use crate::api::filter::{AudioFilter, FilterInfo, VideoFilter};
use crate::api::frame::{AudioFrame, VideoFrame, SAMPLE_RATE, U, V, Y};
use crate::api::group::{Aggregation, AudioStep, Decimator, GroupResult, Sample, VideoStep};
use crate::api::params::{ParamError, Params};
use crate::chain::{drain_requests, ChainEvent};

// ----- synthetic video ------------------------------------------------------------------------

/// Luma rises left to right from 16 to 235; U rises top to bottom; V is constant 160.
pub fn gradient(width: usize, height: usize) -> VideoFrame {
    let mut f = VideoFrame::new(width, height);
    for r in 0..height {
        for (x, px) in f.row_mut(Y, r).iter_mut().enumerate() {
            *px = (16 + x * 219 / width.max(2).saturating_sub(1).max(1)).min(235) as u8;
        }
    }
    let (ch, cw) = (f.plane_height(U), f.plane_width(U));
    for r in 0..ch {
        f.row_mut(U, r).fill((64 + r * 128 / ch.max(1)) as u8);
        f.row_mut(V, r)[..cw].fill(160);
    }
    f
}

/// Squares of `cell` pixels alternating black (16) and white (235), neutral chroma.
pub fn checkerboard(width: usize, height: usize, cell: usize) -> VideoFrame {
    let mut f = VideoFrame::new(width, height);
    for r in 0..height {
        for (x, px) in f.row_mut(Y, r).iter_mut().enumerate() {
            *px = if (x / cell + r / cell) % 2 == 0 { 16 } else { 235 };
        }
    }
    f
}

/// Frame `i` of a white box (an eighth of the frame per side) moving 4 px per frame to the right
/// (wrapping) over a dark grey background (Y 64); the box is reddish (V 200) so that chroma
/// handling shows.
pub fn moving_box(width: usize, height: usize, i: usize) -> VideoFrame {
    let mut f = VideoFrame::new(width, height);
    f.fill(64, 128, 128);
    let (bw, bh) = ((width / 8).max(2), (height / 8).max(2));
    let x0 = (i * 4) % width.saturating_sub(bw).max(1);
    let y0 = (height - bh) / 2;
    crate::api::draw::fill_rect(&mut f, x0 as isize, y0 as isize, bw, bh, 235, 128, 200);
    f
}

/// `n` frames made by `make(i)`, stamped at 30 fps from pts 0.
pub fn video_frames(n: usize, make: impl Fn(usize) -> VideoFrame) -> Vec<VideoFrame> {
    (0..n)
        .map(|i| {
            let mut f = make(i);
            f.pts = frame_time(i, 30.0);
            f
        })
        .collect()
}

/// The pts of frame `i` at `fps`.
pub fn frame_time(i: usize, fps: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / fps)
}

/// Mean absolute difference of two frames' luma (0 = identical).
pub fn luma_diff(a: &VideoFrame, b: &VideoFrame) -> f64 {
    assert!(a.same_size(b), "frames differ in size");
    let mut sum = 0u64;
    for r in 0..a.height() {
        sum += a.row(Y, r).iter().zip(b.row(Y, r)).map(|(x, y)| x.abs_diff(*y) as u64).sum::<u64>();
    }
    sum as f64 / (a.width() * a.height()).max(1) as f64
}

// ----- synthetic audio ------------------------------------------------------------------------

/// `count` consecutive 20 ms frames (960 samples per channel at 48 kHz) of a sine of `freq` Hz
/// and `amplitude` (0..1), same on every channel, with continuous phase and pts.
pub fn sine_frames(freq: f64, amplitude: f32, channels: usize, count: usize) -> Vec<AudioFrame> {
    let n = SAMPLE_RATE as usize / 50;
    (0..count)
        .map(|k| {
            let mut s = Vec::with_capacity(n * channels);
            for i in 0..n {
                let t = (k * n + i) as f64 / SAMPLE_RATE as f64;
                let v = amplitude * (2.0 * PI * freq * t).sin() as f32;
                s.extend(std::iter::repeat_n(v, channels));
            }
            let mut f = AudioFrame::from_samples(channels, SAMPLE_RATE, s);
            f.pts = Duration::from_millis(20 * k as u64);
            f
        })
        .collect()
}

/// `count` 20 ms frames of silence.
pub fn silence_frames(channels: usize, count: usize) -> Vec<AudioFrame> {
    sine_frames(0.0, 0.0, channels, count)
}

/// One channel of a list of frames, concatenated.
pub fn channel(frames: &[AudioFrame], ch: usize) -> Vec<f32> {
    frames.iter().flat_map(|f| f.samples().iter().skip(ch).step_by(f.channels()).copied()).collect()
}

/// Power of `freq` in `samples` (Goertzel; a single DFT bin), normalised so that a full-scale
/// sine of exactly that frequency gives about 0.25.
pub fn tone_power(samples: &[f32], freq: f64, sample_rate: u32) -> f64 {
    let w = 2.0 * PI * freq / sample_rate as f64;
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (i, s) in samples.iter().enumerate() {
        re += *s as f64 * (w * i as f64).cos();
        im -= *s as f64 * (w * i as f64).sin();
    }
    let n = samples.len().max(1) as f64;
    (re * re + im * im) / (n * n)
}

/// Frequency estimate from upward zero crossings: cycles between the first and the last
/// crossing (interpolated between samples) divided by the time between them.
pub fn zero_crossing_frequency(samples: &[f32], sample_rate: u32) -> f64 {
    let ups: Vec<f64> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + (-w[0] / (w[1] - w[0])) as f64)
        .collect();
    match (ups.first(), ups.last()) {
        (Some(a), Some(b)) if b > a => (ups.len() - 1) as f64 * sample_rate as f64 / (b - a),
        _ => 0.0,
    }
}

/// Root mean square of the samples.
pub fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

// ----- running filters ------------------------------------------------------------------------

/// A filter the harness can run on frames of type `Fr`: every [`VideoFilter`] on
/// [`VideoFrame`]s, every [`AudioFilter`] on [`AudioFrame`]s.
pub trait Processes<Fr> {
    fn process_frame(&mut self, frame: &mut Fr, ctx: &mut FilterContext);
}

impl<T: VideoFilter + ?Sized> Processes<VideoFrame> for T {
    fn process_frame(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        self.process(frame, ctx)
    }
}

impl<T: AudioFilter + ?Sized> Processes<AudioFrame> for T {
    fn process_frame(&mut self, frame: &mut AudioFrame, ctx: &mut FilterContext) {
        self.process(frame, ctx)
    }
}

/// What a filter did over a [`run`].
#[derive(Debug)]
pub struct Run<Fr> {
    /// The frames after processing, in order.
    pub frames: Vec<Fr>,
    /// Everything the filter asked of the context, as the chain would report it.
    pub events: Vec<ChainEvent>,
}

impl<Fr> Run<Fr> {
    /// Data of every (changed) report, in order.
    pub fn reports(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter_map(|e| if let ChainEvent::Report { data, .. } = e { Some(data) } else { None })
            .collect()
    }

    /// The last report, if any.
    pub fn last_report(&self) -> Option<&Value> {
        self.reports().last().copied()
    }

    /// Every message sent, in order.
    pub fn sent(&self) -> Vec<(&Target, &Value)> {
        self.events
            .iter()
            .filter_map(|e| if let ChainEvent::Send { to, data, .. } = e { Some((to, data)) } else { None })
            .collect()
    }

    /// Every ping request (or withdrawal), in order.
    pub fn pings(&self) -> Vec<Option<PingRequest>> {
        self.events
            .iter()
            .filter_map(|e| if let ChainEvent::Ping { request, .. } = e { Some(*request) } else { None })
            .collect()
    }
}

/// A context plus the bookkeeping a chain does, for driving one filter frame by frame. Use
/// [`ctx`](Self::ctx) to set inputs (ping, other filters' reports) between frames.
pub struct Harness {
    pub ctx: FilterContext,
    pub events: Vec<ChainEvent>,
    id: Arc<str>,
    name: &'static str,
    pinging: bool,
    frames: u64,
    /// Wall clock reported to filters (fixed, so tests are reproducible).
    pub wall_clock: SystemTime,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A harness whose filter instance is called `"test"` (filter name `"TEST"`).
    pub fn new() -> Self {
        Harness::named("test", "TEST")
    }

    /// A harness for an instance `id` of filter `name` (matters for filters that find each
    /// other's reports).
    pub fn named(id: &str, name: &'static str) -> Self {
        Harness {
            ctx: FilterContext::default(),
            events: Vec::new(),
            id: Arc::from(id),
            name,
            pinging: false,
            frames: 0,
            wall_clock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    /// Processes one frame, collecting what the filter asked of the context into `events`.
    pub fn process<Fr, F: Processes<Fr> + ?Sized>(&mut self, filter: &mut F, frame: &mut Fr) {
        self.ctx.begin_frame(self.frames, self.wall_clock);
        self.frames += 1;
        filter.process_frame(frame, &mut self.ctx);
        drain_requests(&mut self.ctx, &self.id, self.name, &mut self.pinging, &mut self.events);
    }

    /// Processes every frame and returns them with the events of this run.
    pub fn run<Fr, F: Processes<Fr> + ?Sized>(
        &mut self,
        filter: &mut F,
        frames: impl IntoIterator<Item = Fr>,
    ) -> Run<Fr> {
        let start = self.events.len();
        let mut out = Vec::new();
        for mut f in frames {
            self.process(filter, &mut f);
            out.push(f);
        }
        Run { frames: out, events: self.events.split_off(start) }
    }
}

/// Runs `frames` through `filter` with a fresh [`Harness`].
pub fn run<Fr, F: Processes<Fr> + ?Sized>(filter: &mut F, frames: impl IntoIterator<Item = Fr>) -> Run<Fr> {
    Harness::new().run(filter, frames)
}

// ----- running group filters ------------------------------------------------------------------

/// A fixed-seed pseudo-random generator (xorshift64*) for synthetic members: the same seed gives
/// the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
}

/// What a group filter did over a [`GroupHarness`] run.
#[derive(Debug, Default)]
pub struct GroupRun {
    /// Every result, in the order the aggregation produced them.
    pub results: Vec<GroupResult>,
    /// Each member's individual series as the step emitted it: `(capture time, value)`.
    pub series: Vec<Vec<(f64, Option<Sample>)>>,
}

impl GroupRun {
    /// The results about `a` and `b` (a pair), in window order.
    pub fn pair(&self, a: &str, b: &str) -> Vec<&GroupResult> {
        self.results.iter().filter(|r| r.members.len() == 2 && r.members[0] == a && r.members[1] == b).collect()
    }
}

enum Step {
    Video(Box<dyn VideoStep>),
    Audio(Box<dyn AudioStep>),
}

/// Runs a group filter without a server, as the server does: per member a [`Decimator`] at the
/// filter's analysis rate and an individual step, their values pushed with the frames' capture
/// times into one [`Aggregation`], advanced as time passes. Feed frames with
/// [`video`](Self::video)/[`audio`](Self::audio) (members in any order, each member's in time
/// order), call [`advance`](Self::advance) with a time up to which every member's frames are in,
/// and read [`run`](Self::run). [`run_group`] does it all on a clock.
pub struct GroupHarness {
    pub aggregation: Aggregation,
    names: Vec<String>,
    steps: Vec<Step>,
    decimators: Vec<Decimator>,
    pub run: GroupRun,
}

impl GroupHarness {
    /// The group filter `info` with `params` over `members` (in this order). `Err` when the
    /// filter is no group filter of a kind that has the needed step, or the parameters fail.
    pub fn new(info: &FilterInfo, params: &Params, members: &[&str]) -> Result<Self, ParamError> {
        let not_group = || ParamError::Invalid { param: info.name.to_owned(), reason: "not a group filter".to_owned() };
        let group = info.group.ok_or_else(not_group)?;
        let mut aggregation = Aggregation::new(&group, params)?;
        let names: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        aggregation.set_members(&names);
        let rate = aggregation.windowing().rate_hz;
        let steps = members
            .iter()
            .map(|_| match (group.video_step, group.audio_step) {
                (Some(v), _) => v(params).map(Step::Video),
                (None, Some(a)) => a(params).map(Step::Audio),
                (None, None) => Err(not_group()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GroupHarness {
            aggregation,
            names,
            decimators: members.iter().map(|_| Decimator::new(rate)).collect(),
            steps,
            run: GroupRun { results: Vec::new(), series: members.iter().map(|_| Vec::new()).collect() },
        })
    }

    /// Whether member `m`'s frame captured at `t_ms` would be analysed (then make the frame and
    /// call [`video`](Self::video)/[`audio`](Self::audio); frames it refuses need not exist).
    pub fn admits(&mut self, m: usize, t_ms: f64) -> bool {
        self.decimators.get_mut(m).is_some_and(|d| d.admit(t_ms))
    }

    /// Member `m`'s video frame captured at `t_ms`, already admitted: step and push.
    pub fn video(&mut self, m: usize, t_ms: f64, frame: &VideoFrame) {
        if let Some(Step::Video(s)) = self.steps.get_mut(m) {
            let v = s.step(frame);
            self.push(m, t_ms, v);
        }
    }

    /// Member `m`'s audio block captured at `t_ms`, already admitted: step and push.
    pub fn audio(&mut self, m: usize, t_ms: f64, frame: &AudioFrame) {
        if let Some(Step::Audio(s)) = self.steps.get_mut(m) {
            let v = s.step(frame);
            self.push(m, t_ms, v);
        }
    }

    fn push(&mut self, m: usize, t_ms: f64, v: Option<Sample>) {
        self.run.series[m].push((t_ms, v));
        self.aggregation.push(&self.names[m], t_ms, v);
    }

    /// Evaluates the windows complete at `t_ms`.
    pub fn advance(&mut self, t_ms: f64) {
        self.aggregation.advance(t_ms, &mut self.run.results);
    }
}

/// A frame a [`GroupHarness`] can feed to a member's individual step.
pub trait GroupFrame {
    fn feed(&self, harness: &mut GroupHarness, member: usize, t_ms: f64);
}

impl GroupFrame for VideoFrame {
    fn feed(&self, harness: &mut GroupHarness, member: usize, t_ms: f64) {
        harness.video(member, t_ms, self)
    }
}

impl GroupFrame for AudioFrame {
    fn feed(&self, harness: &mut GroupHarness, member: usize, t_ms: f64) {
        harness.audio(member, t_ms, self)
    }
}

/// Runs a group filter over synthetic members on a common clock: at each capture time of
/// `times` (ms, rising), `frame(m, k)` is member `m`'s frame (video) or block (audio) `k`
/// (`None`: nothing then, a gap), asked for only when the member's decimator admits it; the
/// aggregation advances after every tick.
pub fn run_group<Fr: GroupFrame>(
    info: &FilterInfo,
    params: &Params,
    members: &[&str],
    times: &[f64],
    mut frame: impl FnMut(usize, usize) -> Option<Fr>,
) -> Result<GroupRun, ParamError> {
    let mut h = GroupHarness::new(info, params, members)?;
    for (k, &t) in times.iter().enumerate() {
        for m in 0..members.len() {
            if h.admits(m, t) {
                if let Some(f) = frame(m, k) {
                    f.feed(&mut h, m, t);
                }
            }
        }
        h.advance(t);
    }
    Ok(h.run)
}

/// Capture times of `n` frames at `fps` from `start_ms`.
pub fn capture_times(n: usize, fps: f64, start_ms: f64) -> Vec<f64> {
    (0..n).map(|k| start_ms + k as f64 * 1000.0 / fps).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_make_what_they_say() {
        let g = gradient(64, 48);
        assert_eq!(g.at(Y, 0, 5), 16);
        assert_eq!(g.at(Y, 63, 5), 235);
        let c = checkerboard(16, 16, 4);
        assert_eq!((c.at(Y, 0, 0), c.at(Y, 4, 0), c.at(Y, 4, 4)), (16, 235, 16));
        let b0 = moving_box(64, 64, 0);
        let b1 = moving_box(64, 64, 1);
        assert_eq!(b0.at(Y, 0, 32), 235);
        assert_eq!(b1.at(Y, 0, 32), 64, "moved right");
        assert_eq!(b1.at(Y, 4, 32), 235);
        let s = sine_frames(440.0, 0.5, 2, 10);
        let left = channel(&s, 0);
        assert_eq!(left.len(), 9600);
        assert!((zero_crossing_frequency(&left, SAMPLE_RATE) - 440.0).abs() < 0.5);
        assert!(tone_power(&left, 440.0, SAMPLE_RATE) > 20.0 * tone_power(&left, 880.0, SAMPLE_RATE));
        assert!((rms(&left) - 0.5 / 2f64.sqrt()).abs() < 0.01);
    }
}
