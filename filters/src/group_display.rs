//! `GROUP_DISPLAY`: draws the latest results of the group filters the participant is a member of
//! on its picture, one line per group filter instance at the top left, e.g.
//! `MOTION_SYNC r 0.62 lag_ms 400`: the filter's name and up to three of its numbers.
//!
//! Showing a synchrony measure to participants is a manipulation, so it is never implicit: it
//! happens only where a design puts this filter, in a participant's own `video_filters`
//! (everyone who sees that participant sees it) or in a viewer's asymmetric filters (that viewer
//! alone), and like every filter it is logged in the event log's `media_config`. Before any
//! result it draws nothing.

use std::fmt::Write;

use crate::draw::{draw_text, text_size, TextStyle};
use crate::group::GROUP_REPORT_PREFIX;
use crate::{video, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, VideoFilter, VideoFrame};

pub const INFO: FilterInfo = FilterInfo {
    name: "GROUP_DISPLAY",
    listing: Listing::Session,
    channel: Channel::Video,
    group: None,
    description: "Shows the latest results of the participant's group filters (e.g. MOTION_SYNC) on the picture.",
    params: &[],
    video: Some(video::<GroupDisplay>),
    audio: None,
};

/// Numbers shown per line.
const KEYS: usize = 3;

pub struct GroupDisplay {
    /// The lines, rebuilt each frame into reused buffers (sorted by instance id: stable order).
    lines: Vec<(String, String)>,
}

impl VideoFilter for GroupDisplay {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(GroupDisplay { lines: Vec::new() })
    }

    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        let mut n = 0;
        for (id, r) in ctx.peer_reports().filter(|(id, _)| id.starts_with(GROUP_REPORT_PREFIX)) {
            if n == self.lines.len() {
                self.lines.push((String::new(), String::new()));
            }
            let (key, text) = &mut self.lines[n];
            key.clear();
            key.push_str(id);
            text.clear();
            let _ = write!(text, "{}", r.name);
            if let Some(value) = r.data.get("value").and_then(|v| v.as_object()) {
                for (k, v) in value.iter().filter_map(|(k, v)| v.as_f64().map(|v| (k, v))).take(KEYS) {
                    if v.fract() == 0.0 && v.abs() < 1e6 {
                        let _ = write!(text, " {k} {v:.0}");
                    } else {
                        let _ = write!(text, " {k} {v:.2}");
                    }
                }
            }
            n += 1;
        }
        self.lines[..n].sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let style = TextStyle::white(TextStyle::scale_for(frame.height()).saturating_sub(1).max(1));
        let mut y = 10isize;
        for (_, text) in &self.lines[..n] {
            draw_text(frame, 10, y, text, style);
            y += text_size(text, style.scale).1 as isize + 4;
        }
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Harness};
    use crate::Y;
    use serde_json::json;

    fn grey() -> Vec<VideoFrame> {
        testing::video_frames(1, |_| {
            let mut f = VideoFrame::new(320, 240);
            f.fill(60, 128, 128);
            f
        })
    }

    #[test]
    fn draws_nothing_before_a_result_and_a_line_per_instance_after() {
        let mut f = GroupDisplay::new(&INFO.default_params()).unwrap();
        let mut h = Harness::new();
        h.ctx.set_peer_report("SPEAKING_TIME-1", "SPEAKING_TIME", Some(json!({"time": 3.0})));
        let out = h.run(&mut f, grey()).frames.remove(0);
        assert!(out.plane(Y).iter().all(|&v| v == 60), "other reports are not group results");
        h.ctx.set_peer_report(
            "group:ms",
            "MOTION_SYNC",
            Some(json!({"value": {"r": 0.62, "lag_ms": 400.0, "r0": 0.1}, "with": "x", "window_end_ms": 5000.0})),
        );
        h.ctx.set_peer_report("group:sp", "SPEECH_SYNC", Some(json!({"value": {"turns": 4.0}, "with": "x"})));
        let out = h.run(&mut f, grey()).frames.remove(0);
        let rows_with_text = (0..240).filter(|&r| out.row(Y, r).iter().any(|&v| v != 60)).count();
        assert!(rows_with_text > 0);
        // Two lines: text in two separate bands at the top, nothing in the lower half.
        let first = (0..240).find(|&r| out.row(Y, r).iter().any(|&v| v != 60)).unwrap();
        let gap = (first..240).find(|&r| out.row(Y, r).iter().all(|&v| v == 60)).unwrap();
        assert!((gap..120).any(|r| out.row(Y, r).iter().any(|&v| v != 60)), "a second line");
        assert!((120..240).all(|r| out.row(Y, r).iter().all(|&v| v == 60)));
        // The result going away (instance removed) removes its line.
        h.ctx.set_peer_report("group:sp", "SPEECH_SYNC", None);
        h.ctx.set_peer_report("group:ms", "MOTION_SYNC", None);
        let out = h.run(&mut f, grey()).frames.remove(0);
        assert!(out.plane(Y).iter().all(|&v| v == 60));
    }
}
