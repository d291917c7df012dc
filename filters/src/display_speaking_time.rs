//! `DISPLAY_SPEAKING_TIME`: draws the participant's speaking time (from a `SPEAKING_TIME`
//! instance, usually in the audio chain) at the bottom left of the picture, e.g. `12.3 s`, white
//! with a dark outline, in the built-in bitmap font.
//!
//! `filterId` holds the `SPEAKING_TIME` instance's id (`requiresOtherFilter`: the UI adds that
//! filter to the audio list and stores its id here). If the id is empty or unknown, the first
//! `SPEAKING_TIME` instance of the participant is used, so the filter also works when configured
//! by hand. Before any report it shows `0.0 s`.

use crate::draw::{draw_text, text_size, TextStyle};
use crate::{video, Channel, FilterContext, FilterInfo, Listing, Param, ParamError, Params, VideoFilter, VideoFrame};

pub const INFO: FilterInfo = FilterInfo {
    name: "DISPLAY_SPEAKING_TIME",
    listing: Listing::Session,
    channel: Channel::Video,
    group: None,
    description: "Shows the participant's speaking time (from a SPEAKING_TIME filter) on the picture.",
    params: &[Param::Choice {
        name: "filterId",
        options: &["SPEAKING_TIME"],
        default: "",
        requires_other_filter: true,
    }],
    video: Some(video::<DisplaySpeakingTime>),
    audio: None,
};

pub struct DisplaySpeakingTime {
    filter_id: String,
    /// The text buffer, reused across frames.
    text: String,
}

impl DisplaySpeakingTime {
    /// The seconds to show: the configured instance's report, else any SPEAKING_TIME's.
    fn seconds(&self, ctx: &FilterContext) -> f64 {
        let report = if self.filter_id.is_empty() { None } else { ctx.reported(&self.filter_id) };
        report.or_else(|| ctx.reported_by("SPEAKING_TIME")).and_then(|r| r["time"].as_f64()).unwrap_or(0.0)
    }
}

impl VideoFilter for DisplaySpeakingTime {
    fn new(p: &Params) -> Result<Self, ParamError> {
        Ok(DisplaySpeakingTime { filter_id: p.choice("filterId").to_owned(), text: String::new() })
    }

    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        use std::fmt::Write;
        let secs = self.seconds(ctx);
        self.text.clear();
        let _ = write!(self.text, "{secs:.1} s");
        let style = TextStyle::white(TextStyle::scale_for(frame.height()));
        let (_, h) = text_size(&self.text, style.scale);
        // SynthARium puts the text's baseline at (10, h - 10); our box includes descenders.
        let y = frame.height() as isize - 10 - h as isize;
        draw_text(frame, 10, y, &self.text, style);
    }

    fn update(&mut self, p: &Params) -> Result<(), ParamError> {
        self.filter_id = p.choice("filterId").to_owned();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::{ADVANCE, CELL_H};
    use crate::testing::{self, Harness};
    use crate::{BLACK_Y, WHITE_Y, Y};
    use serde_json::json;

    /// Reads the text back: renders each candidate string the same way and compares.
    fn shows(frame: &VideoFrame, text: &str) -> bool {
        let mut want = VideoFrame::new(frame.width(), frame.height());
        want.fill(60, 128, 128);
        let style = TextStyle::white(TextStyle::scale_for(frame.height()));
        let y = frame.height() as isize - 10 - (CELL_H * style.scale) as isize;
        draw_text(&mut want, 10, y, text, style);
        testing::luma_diff(frame, &want) == 0.0
    }

    fn grey(n: usize) -> Vec<VideoFrame> {
        testing::video_frames(n, |_| {
            let mut f = VideoFrame::new(320, 240);
            f.fill(60, 128, 128);
            f
        })
    }

    #[test]
    fn draws_the_configured_instances_seconds() {
        let p = INFO.default_params().with("filterId", "st-1");
        let mut f = DisplaySpeakingTime::new(&p).unwrap();
        let mut h = Harness::new();
        h.ctx.set_peer_report("other", "SPEAKING_TIME", Some(json!({"time": 99.0})));
        h.ctx.set_peer_report("st-1", "SPEAKING_TIME", Some(json!({"time": 12.345})));
        let out = h.run(&mut f, grey(1)).frames.remove(0);
        assert!(shows(&out, "12.3 s"));
        assert!(!shows(&out, "99.0 s"));
        // Something white and something dark near the bottom left, nothing at the top right.
        let scale = TextStyle::scale_for(240);
        let rows = (240 - 10 - CELL_H * scale)..(240 - 10);
        let cols = 10..10 + 6 * ADVANCE * scale;
        let region: Vec<u8> = rows.flat_map(|r| out.row(Y, r)[cols.clone()].to_vec()).collect();
        assert!(region.contains(&WHITE_Y) && region.contains(&BLACK_Y));
        assert!(out.row(Y, 5).iter().all(|&v| v == 60));
    }

    #[test]
    fn falls_back_to_any_speaking_time_and_to_zero() {
        let mut f = DisplaySpeakingTime::new(&INFO.default_params()).unwrap();
        let mut h = Harness::new();
        let out = h.run(&mut f, grey(1)).frames.remove(0);
        assert!(shows(&out, "0.0 s"));
        h.ctx.set_peer_report("abc", "SPEAKING_TIME", Some(json!({"time": 3.0})));
        let out = h.run(&mut f, grey(1)).frames.remove(0);
        assert!(shows(&out, "3.0 s"));
    }
}
