//! `SPEAKING_TIME` (SynthARium main: `AUDIO_SPEAKING_TIME`, an alias): counts the seconds the
//! participant speaks and reports `{"time": seconds}`.
//!
//! Same rule as SynthARium: a frame counts as speech when the mean absolute sample is above
//! 125/32768 (its threshold on `int16` samples); the frame's duration is then added. Audio passes
//! through unchanged. `DISPLAY_SPEAKING_TIME` reads the report.

use serde_json::json;

use crate::{audio, AudioFilter, AudioFrame, Channel, FilterContext, FilterInfo, Listing, ParamError, Params};

pub const INFO: FilterInfo = FilterInfo {
    name: "SPEAKING_TIME",
    listing: Listing::Session,
    channel: Channel::Audio,
    group: None,
    description: "Counts the seconds the participant speaks.",
    params: &[],
    video: None,
    audio: Some(audio::<SpeakingTime>),
};

/// Mean `|sample|` above which a frame is speech: SynthARium's 125 on the `int16` scale.
pub const THRESHOLD: f32 = 125.0 / 32768.0;

pub struct SpeakingTime {
    /// Speech counted in samples (per channel) at `rate`, exact; `earlier` holds seconds counted
    /// at a previous rate (never, in practice: WebRTC audio is 48 kHz).
    samples: u64,
    rate: u32,
    earlier: f64,
}

impl SpeakingTime {
    /// Seconds of speech so far.
    pub fn seconds(&self) -> f64 {
        self.earlier + if self.rate == 0 { 0.0 } else { self.samples as f64 / self.rate as f64 }
    }
}

impl AudioFilter for SpeakingTime {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(SpeakingTime { samples: 0, rate: 0, earlier: 0.0 })
    }

    fn process(&mut self, frame: &mut AudioFrame, ctx: &mut FilterContext) {
        let s = frame.samples();
        if s.is_empty() {
            return;
        }
        let mean = s.iter().map(|v| v.abs()).sum::<f32>() / s.len() as f32;
        if mean > THRESHOLD {
            if frame.sample_rate() != self.rate {
                self.earlier = self.seconds();
                self.samples = 0;
                self.rate = frame.sample_rate();
            }
            self.samples += frame.frames() as u64;
        }
        ctx.report(json!({ "time": self.seconds() }));
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, silence_frames, sine_frames};

    #[test]
    fn counts_only_frames_above_the_threshold() {
        let mut f = SpeakingTime::new(&INFO.default_params()).unwrap();
        let mut frames = sine_frames(200.0, 0.3, 2, 50); // 1 s of "speech"
        frames.extend(silence_frames(2, 25)); // 0.5 s of silence
                                              // A quiet hum: mean |x| = 0.637 * 0.005 = 0.0032 < 0.0038 -> not speech.
        frames.extend(sine_frames(200.0, 0.005, 2, 25));
        frames.extend(sine_frames(200.0, 0.3, 1, 10)); // 0.2 s mono speech
        let before: Vec<Vec<f32>> = frames.iter().map(|f| f.samples().to_vec()).collect();
        let run = testing::run(&mut f, frames);
        let t = run.last_report().unwrap()["time"].as_f64().unwrap();
        assert_eq!(t, 1.2);
        // The first report came after the first frame (20 ms).
        assert_eq!(run.reports()[0], &json!({"time": 0.02}));
        for (a, b) in run.frames.iter().zip(before) {
            assert_eq!(a.samples(), &b[..], "audio passes through");
        }
    }
}
