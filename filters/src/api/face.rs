//! Face analysis for filters: [`FaceStream`] runs the `face` crate's analyser on a stream's
//! frames at a fixed rate and keeps the latest result; everything else (the analyser, the
//! landmark layout, pose, AU estimates) is the `face` crate, re-exported here so a filter needs
//! no other dependency. No model code lives in a filter.
//!
//! The models are loaded once per process (≈100 MB, shared by every stream); a filter that
//! needs them fails to build, with the reason, when they are not installed (`make models`).

pub use face::landmarks::{self, Landmarks};
pub use face::{
    au, glasses, models_dir, pose, set_models_dir, ActionUnits, Analyzer, Face, FaceError, Features, Gray, Models,
    Pose, Settings,
};

use crate::{ParamError, VideoFrame, Y};
use std::time::Duration;

/// The luma plane of `frame` as the grey image the analyser reads (no copy).
pub fn gray(frame: &VideoFrame) -> Gray<'_> {
    Gray::new(frame.plane(Y), frame.width(), frame.height(), frame.stride(Y)).expect("the buffer holds the picture")
}

/// An analyser with these settings over the shared models; a [`ParamError::Invalid`] naming
/// the missing or unreadable model otherwise (what a face filter's constructor returns).
pub fn analyzer(settings: Settings) -> Result<Analyzer, ParamError> {
    Models::shared()
        .and_then(|m| Analyzer::with_settings(m, settings))
        .map_err(|e: FaceError| ParamError::Invalid { param: "face models".into(), reason: e.to_string() })
}

/// The analysis of one stream at a fixed rate: a frame is analysed when at least `interval` of
/// presentation time has passed since the last analysed one, so the cost does not grow with the
/// frame rate (10 Hz: one frame in three at 30 fps).
pub struct FaceStream {
    analyzer: Analyzer,
    interval: Duration,
    last: Option<Duration>,
    latest: Option<Face>,
}

/// The analysis rate of the shipped face filters.
pub const DEFAULT_RATE_HZ: f64 = 10.0;

impl FaceStream {
    /// A stream analysed at `rate_hz` (at most every frame), with the shared models; a
    /// [`ParamError::Invalid`] naming the missing or unreadable model otherwise.
    pub fn new(rate_hz: f64) -> Result<Self, ParamError> {
        let analyzer = analyzer(Settings::default())?;
        let interval = if rate_hz > 0.0 { Duration::from_secs_f64(1.0 / rate_hz) } else { Duration::ZERO };
        Ok(FaceStream { analyzer, interval, last: None, latest: None })
    }

    /// Analyses `frame` if it is due; returns the new result if it was analysed.
    pub fn update(&mut self, frame: &VideoFrame) -> Option<&Face> {
        // A little slack so 30 fps timestamps (33.3 ms) give exactly 10 Hz, not 7.5 Hz.
        let due = self
            .last
            .is_none_or(|t| frame.pts < t || frame.pts.saturating_sub(t) + Duration::from_millis(5) >= self.interval);
        if !due {
            return None;
        }
        self.last = Some(frame.pts);
        self.latest = Some(self.analyzer.analyze(gray(frame)));
        self.latest.as_ref()
    }

    /// The last result (of this or an earlier frame).
    pub fn latest(&self) -> Option<&Face> {
        self.latest.as_ref()
    }
}
