//! `DELAY`: delays audio and video.
//!
//! Two ways to say how much, kept from SynthARium and added:
//! * `size` (SynthARium's): a delay of `size - 1` **frames** (SynthARium's FIFO returns the
//!   oldest of `size` queued frames). Unlike SynthARium, `size` 0 means no delay (SynthARium's
//!   unbounded queue froze the picture forever).
//! * `delay_ms` (new): a delay in milliseconds, measured on the frames' `pts`; when above 0 it
//!   takes precedence over `size`. Video shows the newest frame at least `delay_ms` old, audio is
//!   delayed sample-exactly.
//!
//! Both report the achieved delay as `{"delay_ms": ms}` (rounded to 1 ms).
//!
//! Until enough history exists, video shows the first frame (as SynthARium) and audio plays
//! silence (SynthARium repeated the first 20 ms, a buzz). A live change of the delay keeps the
//! buffer: a longer delay holds the oldest picture / inserts silence until it is reached, a
//! shorter one skips ahead. Delayed frames carry the current `pts` (the encoder's clock moves on).
//! A resolution or channel change restarts the delay.
//!
//! Memory: video keeps copies of up to `delay` worth of frames in a ring that recycles its
//! buffers (no allocation once warm; swapping frames in and out instead of copying where
//! possible): 4 s of 640x480 is ~55 MB, so `delay_ms` is capped at 4000.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::json;

use crate::{
    audio, video, AudioFilter, AudioFrame, Channel, FilterContext, FilterInfo, Listing, Param, ParamError, Params,
    VideoFilter, VideoFrame, VideoFramePool,
};

pub const INFO: FilterInfo = FilterInfo {
    name: "DELAY",
    listing: Listing::Session,
    channel: Channel::Both,
    group: None,
    description: "Delays the stream by size - 1 frames, or by delay_ms milliseconds if that is above 0.",
    params: &[
        Param::Number { name: "size", min: 0.0, max: 120.0, step: 1.0, default: 60.0 },
        Param::Number { name: "delay_ms", min: 0.0, max: 4000.0, step: 1.0, default: 0.0 },
    ],
    video: Some(video::<VideoDelay>),
    audio: Some(audio::<AudioDelay>),
};

/// Never keep more frames than this (4 s at 60 fps plus slack), whatever the timestamps do.
const MAX_FRAMES: usize = 300;

/// How much to delay.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Amount {
    /// This many frames.
    Frames(usize),
    /// This long, on the pts clock.
    Time(Duration),
}

fn amount(p: &Params) -> Amount {
    let ms = p.int("delay_ms");
    if ms > 0 {
        Amount::Time(Duration::from_millis(ms as u64))
    } else {
        Amount::Frames((p.int("size") as usize).saturating_sub(1))
    }
}

fn report(ctx: &mut FilterContext, achieved: Duration) {
    ctx.report(json!({ "delay_ms": (achieved.as_secs_f64() * 1000.0).round() }));
}

/// The video half: a ring of frame copies.
pub struct VideoDelay {
    amount: Amount,
    /// Oldest first; the last one is the newest input.
    ring: VecDeque<VideoFrame>,
    pool: VideoFramePool,
    /// Frame buffers allocated so far (for tests: it must stop growing once warm).
    allocated: usize,
}

impl VideoDelay {
    /// Frame buffers allocated so far.
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    fn recycle_all(&mut self) {
        while let Some(f) = self.ring.pop_front() {
            self.pool.put(f);
        }
    }

    /// Moves `frame`'s content into the ring, leaving `frame` holding a spare buffer of the
    /// same size (contents unspecified): no copy.
    fn push(&mut self, frame: &mut VideoFrame) {
        if self.pool.is_empty() {
            self.allocated += 1;
        }
        let mut slot = self.pool.get(frame.width(), frame.height());
        std::mem::swap(frame, &mut slot);
        self.ring.push_back(slot);
    }
}

impl VideoFilter for VideoDelay {
    fn new(p: &Params) -> Result<Self, ParamError> {
        Ok(VideoDelay { amount: amount(p), ring: VecDeque::new(), pool: VideoFramePool::new(), allocated: 0 })
    }

    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        let now = frame.pts;
        if self.ring.front().is_some_and(|f| !f.same_size(frame)) {
            self.recycle_all();
            self.pool.clear(); // wrong size now
        }
        match self.amount {
            Amount::Frames(0) => {
                self.recycle_all();
                report(ctx, Duration::ZERO);
                return;
            }
            Amount::Frames(n) => {
                self.push(frame);
                while self.ring.len() > n + 1 {
                    let old = self.ring.pop_front().expect("len > n + 1 >= 1");
                    self.pool.put(old);
                }
                if self.ring.len() == n + 1 {
                    // The oldest is n frames old: hand it out without copying.
                    let mut old = self.ring.pop_front().expect("len == n + 1 >= 1");
                    std::mem::swap(frame, &mut old);
                    self.pool.put(old);
                } else {
                    // Warming up: keep showing the oldest (first) frame.
                    frame.clone_from(&self.ring[0]);
                }
            }
            Amount::Time(d) => {
                self.push(frame);
                let target = now.checked_sub(d);
                // Drop frames that a newer frame has replaced as "the newest at least d old".
                while self.ring.len() >= 2
                    && (target.is_some_and(|t| self.ring[1].pts <= t) || self.ring.len() > MAX_FRAMES)
                {
                    let old = self.ring.pop_front().expect("len >= 2");
                    self.pool.put(old);
                }
                // The oldest is the one to show (or, while warming up, the first frame). It may be
                // needed again next frame (if no newer one is old enough yet), so copy it.
                frame.clone_from(&self.ring[0]);
            }
        }
        let achieved = now.saturating_sub(frame.pts);
        frame.pts = now;
        report(ctx, achieved);
    }

    fn update(&mut self, p: &Params) -> Result<(), ParamError> {
        self.amount = amount(p);
        Ok(())
    }
}

/// The audio half: a FIFO of interleaved samples, delayed sample-exactly.
pub struct AudioDelay {
    amount: Amount,
    channels: usize,
    /// Samples waiting to be played, oldest first (interleaved).
    fifo: VecDeque<f32>,
}

impl AudioFilter for AudioDelay {
    fn new(p: &Params) -> Result<Self, ParamError> {
        Ok(AudioDelay { amount: amount(p), channels: 0, fifo: VecDeque::new() })
    }

    fn process(&mut self, frame: &mut AudioFrame, ctx: &mut FilterContext) {
        if frame.channels() != self.channels {
            self.channels = frame.channels();
            self.fifo.clear();
        }
        let per_channel = match self.amount {
            Amount::Frames(n) => n * frame.frames(),
            Amount::Time(d) => (d.as_secs_f64() * frame.sample_rate() as f64).round() as usize,
        };
        let want = per_channel * self.channels;
        // Make the FIFO hold exactly `want` samples before this frame: pad with silence at the
        // old end (start-up or a longer delay) or skip the oldest (a shorter delay).
        while self.fifo.len() < want {
            self.fifo.push_front(0.0);
        }
        if self.fifo.len() > want {
            self.fifo.drain(..self.fifo.len() - want);
        }
        if want > 0 {
            self.fifo.extend(frame.samples().iter().copied());
            for s in frame.samples_mut() {
                *s = self.fifo.pop_front().expect("the FIFO holds want + frame samples");
            }
        }
        report(ctx, Duration::from_secs_f64(per_channel as f64 / frame.sample_rate() as f64));
    }

    fn update(&mut self, p: &Params) -> Result<(), ParamError> {
        self.amount = amount(p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, moving_box};
    use crate::SAMPLE_RATE;

    fn boxes(n: usize) -> Vec<VideoFrame> {
        testing::video_frames(n, |i| moving_box(64, 48, i))
    }

    fn video(p: Params) -> VideoDelay {
        VideoDelay::new(&p).unwrap()
    }

    #[test]
    fn size_n_delays_n_minus_1_frames_freezing_on_the_first_meanwhile() {
        let src = boxes(10);
        let mut d = video(INFO.default_params().with("size", 3));
        let run = testing::run(&mut d, src.clone());
        for (i, out) in run.frames.iter().enumerate() {
            let want = &src[i.saturating_sub(2)];
            assert_eq!(testing::luma_diff(out, want), 0.0, "frame {i}");
            assert_eq!(out.pts, src[i].pts, "carries the current pts");
        }
        assert_eq!(run.last_report(), Some(&json!({"delay_ms": 67.0})));
        assert!(d.allocated() <= 4, "ring recycles: {}", d.allocated());
    }

    #[test]
    fn size_0_and_1_pass_through() {
        for size in [0, 1] {
            let src = boxes(4);
            let mut d = video(INFO.default_params().with("size", size));
            let run = testing::run(&mut d, src.clone());
            for (out, want) in run.frames.iter().zip(&src) {
                assert_eq!(testing::luma_diff(out, want), 0.0, "size {size}");
            }
            assert_eq!(run.last_report(), Some(&json!({"delay_ms": 0.0})));
        }
    }

    #[test]
    fn delay_ms_shows_the_newest_frame_at_least_that_old() {
        let src = boxes(40);
        let mut d = video(INFO.default_params().with("delay_ms", 110));
        let run = testing::run(&mut d, src.clone());
        // 110 ms at 30 fps: frame i shows frame i - 4 (133 ms old); i - 3 is only 100 ms old.
        for i in 4..40 {
            assert_eq!(testing::luma_diff(&run.frames[i], &src[i - 4]), 0.0, "frame {i}");
        }
        assert_eq!(testing::luma_diff(&run.frames[2], &src[0]), 0.0, "warming up: first frame");
        assert_eq!(run.last_report(), Some(&json!({"delay_ms": 133.0})));
        assert!(d.allocated() <= 7, "{}", d.allocated());
    }

    #[test]
    fn a_live_change_keeps_the_buffer() {
        let src = boxes(30);
        let mut d = video(INFO.default_params().with("size", 5)); // 4 frames
        let mut h = testing::Harness::new();
        h.run(&mut d, src[..10].to_vec());
        d.update(&INFO.default_params().with("size", 2)).unwrap(); // 1 frame
        let out = h.run(&mut d, src[10..12].to_vec());
        // Straight away one frame behind: the buffered frames were skipped, not restarted.
        assert_eq!(testing::luma_diff(&out.frames[0], &src[9]), 0.0);
        assert_eq!(testing::luma_diff(&out.frames[1], &src[10]), 0.0);
    }

    #[test]
    fn a_resolution_change_restarts_the_delay() {
        let mut d = video(INFO.default_params().with("size", 3));
        let mut h = testing::Harness::new();
        h.run(&mut d, boxes(5));
        let big = testing::video_frames(3, |i| moving_box(80, 60, i));
        let out = h.run(&mut d, big.clone());
        assert_eq!((out.frames[0].width(), out.frames[0].height()), (80, 60));
        assert_eq!(testing::luma_diff(&out.frames[1], &big[0]), 0.0);
    }

    /// Frames whose every sample is its index in the stream (a ramp), to see shifts exactly.
    fn ramp(channels: usize, count: usize) -> Vec<AudioFrame> {
        (0..count)
            .map(|k| {
                let s: Vec<f32> = (0..960 * channels).map(|i| (k * 960 + i / channels + 1) as f32 / 1e5).collect();
                let mut f = AudioFrame::from_samples(channels, SAMPLE_RATE, s);
                f.pts = Duration::from_millis(20 * k as u64);
                f
            })
            .collect()
    }

    #[test]
    fn audio_is_delayed_sample_exactly_with_silence_first() {
        for (p, shift) in
            [(INFO.default_params().with("size", 3), 1920), (INFO.default_params().with("delay_ms", 30), 1440)]
        {
            let mut d = AudioDelay::new(&p).unwrap();
            let input = ramp(2, 6);
            let run = testing::run(&mut d, input.clone());
            let (a, b) = (testing::channel(&input, 1), testing::channel(&run.frames, 1));
            for i in 0..a.len() {
                let want = if i < shift { 0.0 } else { a[i - shift] };
                assert_eq!(b[i], want, "sample {i}, shift {shift}");
            }
            let ms = shift as f64 / 48.0;
            assert_eq!(run.last_report(), Some(&json!({"delay_ms": ms.round()})));
        }
    }
}
