//! `TEMPLATE`: the starting point for a new filter. The README ("write a filter in 15 minutes")
//! walks through this file. It brightens (or darkens) the picture by `amount`, writes
//! "Hello World" at the `position` chosen, and reports the picture's mean brightness once a
//! second.
//!
//! To make your own: copy this file to `src/my_filter.rs`, rename `Template`/`"TEMPLATE"`,
//! declare your parameters in `INFO.params`, write `process`, add `pub mod my_filter;` and
//! `my_filter::INFO,` to the registry in `lib.rs`, and run `cargo test -p filters my_filter`.
//!
//! Listed under `TEST` in the catalogue (SynthARium's frontend offers TEST filters on its test
//! pages, not in the session designer): a developer can try a copy end to end without the
//! template cluttering the designer.

use serde_json::json;

use crate::draw::{draw_text, text_size, TextStyle};
use crate::{
    video, Channel, FilterContext, FilterInfo, Listing, Param, ParamError, Params, VideoFilter, VideoFrame, Y,
};

// 1. The declaration: everything the server needs to list, validate and build the filter.
//    The catalogue entry (FILTERS_CONFIG) and the validation of stored configs are derived
//    from `params`; the chain calls `video` to build an instance.
pub const INFO: FilterInfo = FilterInfo {
    name: "TEMPLATE",        // unique; what sessions store
    listing: Listing::Test,  // Session = in the designer, Test = test pages, Hidden = neither
    channel: Channel::Video, // shown in the catalogue; `video`/`audio` decide where it runs
    group: None,
    description: "Template filter: brightens the picture and writes Hello World.",
    params: &[
        // A number: min, max, step (1.0 = integers) and default.
        Param::Number { name: "amount", min: -100.0, max: 100.0, step: 1.0, default: 20.0 },
        // A choice among fixed options.
        Param::Choice { name: "position", options: &["top", "bottom"], default: "top", requires_other_filter: false },
    ],
    video: Some(video::<Template>), // `audio: Some(audio::<T>)` for an AudioFilter
    audio: None,
};

// 2. The state of one instance. Everything `process` needs per frame lives here, including
//    buffers it reuses, so that processing a frame allocates nothing.
pub struct Template {
    /// Output luma for every input luma: computed when the parameters change, so the per-pixel
    /// work is one table lookup.
    table: [u8; 256],
    at_top: bool,
    frames: u64,
}

impl Template {
    /// Reads the validated parameters. `Params` getters take the names declared above.
    fn configure(&mut self, p: &Params) {
        let amount = p.int("amount") as i32;
        for (i, v) in self.table.iter_mut().enumerate() {
            // Limited range: keep luma within 16..=235.
            *v = (i as i32 + amount).clamp(16, 235) as u8;
        }
        self.at_top = p.choice("position") == "top";
    }
}

impl VideoFilter for Template {
    // 3. Build an instance. Parameters are already validated against `INFO.params`; return
    //    `Err(ParamError::Invalid { .. })` only for rules the schema cannot express.
    fn new(p: &Params) -> Result<Self, ParamError> {
        let mut t = Template { table: [0; 256], at_top: true, frames: 0 };
        t.configure(p);
        Ok(t)
    }

    // 4. Process one frame in place. I420: plane Y is full resolution, U and V are half width
    //    and half height. Always go row by row: rows are `stride` bytes apart, which can be
    //    more than the width.
    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        let mut sum = 0u64;
        for r in 0..frame.height() {
            for px in frame.row_mut(Y, r) {
                *px = self.table[*px as usize];
                sum += *px as u64;
            }
        }

        // Draw text with the built-in font (white with a dark outline, scaled to the frame).
        let style = TextStyle::white(TextStyle::scale_for(frame.height()));
        let (_, h) = text_size("Hello World", style.scale);
        let y = if self.at_top { 10 } else { frame.height() as isize - 10 - h as isize };
        draw_text(frame, 10, y, "Hello World", style);

        // Report data for GET_FILTERS_DATA (and for other filters: `ctx.reported(id)`). Here once
        // a second at 30 fps; reporting every frame is fine too (unchanged values are dropped).
        if self.frames % 30 == 0 {
            let mean = sum as f64 / (frame.width() * frame.height()).max(1) as f64;
            ctx.report(json!({ "mean_luma": mean.round() }));
        }
        self.frames += 1;
    }

    // 5. Live parameter changes (the experimenter edits the filter during the experiment): apply
    //    from the next frame on and keep the state (here the frame counter).
    fn update(&mut self, p: &Params) -> Result<(), ParamError> {
        self.configure(p);
        Ok(())
    }
}

// 6. Cleanup: if the filter held something outside itself (a file, a thread), implement `Drop`.
//    The chain drops an instance when it is removed from the list.

// 7. Tests on synthetic frames: check pixels, not just that it runs.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, gradient, Harness};
    use crate::{BLACK_Y, WHITE_Y};

    fn params(amount: i32, position: &str) -> Params {
        INFO.default_params().with("amount", amount).with("position", position)
    }

    #[test]
    fn brightens_by_amount_within_limited_range() {
        let src = gradient(320, 240);
        let mut f = Template::new(&params(30, "top")).unwrap();
        let out = testing::run(&mut f, [src.clone()]).frames.remove(0);
        // Row 120 is far from the text (top, ~27 px tall at 240 lines).
        for x in 0..320 {
            let want = (src.at(Y, x, 120) as i32 + 30).min(235) as u8;
            assert_eq!(out.at(Y, x, 120), want, "x = {x}");
        }
    }

    #[test]
    fn writes_hello_world_where_asked() {
        let mut f = Template::new(&params(0, "bottom")).unwrap();
        let mut grey = VideoFrame::new(320, 240);
        grey.fill(100, 128, 128);
        let out = testing::run(&mut f, [grey]).frames.remove(0);
        let has = |rows: std::ops::Range<usize>, v: u8| rows.into_iter().any(|r| out.row(Y, r)[..200].contains(&v));
        assert!(has(200..232, WHITE_Y) && has(200..232, BLACK_Y), "text at the bottom");
        assert!(!has(0..100, WHITE_Y), "nothing at the top");
    }

    #[test]
    fn reports_once_a_second_and_updates_live() {
        let mut f = Template::new(&params(0, "top")).unwrap();
        let mut h = Harness::new();
        let mut flat = VideoFrame::new(64, 48);
        flat.fill(100, 128, 128);
        let run = h.run(&mut f, testing::video_frames(31, |_| flat.clone()));
        // Frames 0 and 30 reported; the same mean twice is one event (unchanged values drop).
        assert_eq!(run.reports().len(), 1);
        f.update(&params(-50, "top")).unwrap();
        let out = h.run(&mut f, [flat.clone()]).frames.remove(0);
        assert_eq!(out.at(Y, 60, 40), 50, "the new amount applies from the next frame");
    }
}
