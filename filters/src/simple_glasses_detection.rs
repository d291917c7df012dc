//! `SIMPLE_GLASSES_DETECTION` (a TEST filter, as in SynthARium): on every 30th frame of the first
//! 900 (about the first 30 s), finds the face, fits its landmarks and applies SynthARium's test
//! for glasses (`face::glasses`: Canny edges across the nose bridge). The verdict is drawn at
//! the bottom left in green (`Processing ...` until the first face, then `Glasses detected` or
//! `No glasses detected`) and reported as `{"Glasses Detected": bool}`.
//!
//! Meant for a clear frontal face: a turned head or a grainy picture can read as glasses.

use crate::draw::{draw_text, text_size, TextStyle};
use crate::face::{self, Analyzer, Settings};
use crate::{video, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, VideoFilter, VideoFrame};
use serde_json::json;

pub const INFO: FilterInfo = FilterInfo {
    name: "SIMPLE_GLASSES_DETECTION",
    listing: Listing::Test,
    channel: Channel::Video,
    group: None,
    description: "Tells whether the participant wears glasses (checked once a second for the first 30 s).",
    params: &[],
    video: Some(video::<SimpleGlassesDetection>),
    audio: None,
};

/// Checked on one frame in this many…
pub const EVERY: u64 = 30;
/// …up to this frame.
pub const UNTIL: u64 = 900;

pub struct SimpleGlassesDetection {
    analyzer: Analyzer,
    frames: u64,
    text: &'static str,
}

impl VideoFilter for SimpleGlassesDetection {
    fn new(_: &Params) -> Result<Self, ParamError> {
        // Every check looks afresh: search the whole frame each time, no following.
        let settings = Settings { search_every: 1, confirm_every: 1, ..Settings::default() };
        let analyzer = face::analyzer(settings)?;
        Ok(SimpleGlassesDetection { analyzer, frames: 0, text: "Processing ..." })
    }

    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        if self.frames % EVERY == 0 && self.frames <= UNTIL {
            self.analyzer.reset();
            let f = self.analyzer.analyze(face::gray(frame));
            if let Some(glasses) = f.success.then(|| face::glasses::detect(face::gray(frame), &f.landmarks)).flatten() {
                self.text = if glasses { "Glasses detected" } else { "No glasses detected" };
                ctx.report(json!({ "Glasses Detected": glasses }));
            }
        }
        self.frames += 1;
        let style = TextStyle::green((TextStyle::scale_for(frame.height()) / 2).max(1));
        let (_, h) = text_size(self.text, style.scale);
        draw_text(frame, 10, frame.height() as isize - 10 - h as isize, self.text, style);
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}
