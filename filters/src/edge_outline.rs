//! `EDGE_OUTLINE`: white edges on black.
//!
//! SynthARium runs `cv2.Canny(bgr, 100, 200)`. Here: a 3x3 Sobel on the luma plane, L1 magnitude
//! `|gx| + |gy|` against one threshold (between Canny's two, scaled to limited-range luma), edges
//! Y 235, the rest Y 16, chroma 128. No RGB conversion, no hysteresis or thinning: edges are 1-2
//! px wide. ~0.09 ms at 640x480.

use crate::{
    video, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, VideoFilter, VideoFrame, BLACK_Y,
    NEUTRAL_UV, U, V, WHITE_Y, Y,
};

pub const INFO: FilterInfo = FilterInfo {
    name: "EDGE_OUTLINE",
    listing: Listing::Session,
    channel: Channel::Video,
    group: false,
    description: "White edges on black.",
    params: &[],
    video: Some(video::<EdgeOutline>),
    audio: None,
};

/// `|gx| + |gy|` at or above this is an edge. A luma step of 30 (about 35 in RGB) makes
/// `|gx| = 120`: Canny(100, 200) keeps steps between 25 and 50 only where connected to strong
/// ones, so this is the middle ground without hysteresis.
pub const THRESHOLD: i16 = 120;

pub struct EdgeOutline {
    /// A copy of the luma plane (packed, `width` per row): Sobel reads the original while writing
    /// in place. Reused across frames.
    src: Vec<u8>,
}

impl VideoFilter for EdgeOutline {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(EdgeOutline { src: Vec::new() })
    }

    fn process(&mut self, frame: &mut VideoFrame, _: &mut FilterContext) {
        let (w, h) = (frame.width(), frame.height());
        frame.plane_mut(U).fill(NEUTRAL_UV);
        frame.plane_mut(V).fill(NEUTRAL_UV);
        if w < 3 || h < 3 {
            frame.plane_mut(Y).fill(BLACK_Y);
            return;
        }
        self.src.clear();
        for r in 0..h {
            self.src.extend_from_slice(frame.row(Y, r));
        }
        frame.row_mut(Y, 0).fill(BLACK_Y);
        frame.row_mut(Y, h - 1).fill(BLACK_Y);
        for r in 1..h - 1 {
            let rows = &self.src[(r - 1) * w..(r + 2) * w];
            let (r0, rest) = rows.split_at(w);
            let (r1, r2) = rest.split_at(w);
            sobel_row(r0, r1, r2, frame.row_mut(Y, r));
        }
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

/// One output row from the three input rows around it (all `out.len()` long). Written over
/// equal-length slices so that the compiler drops the bounds checks and vectorises.
fn sobel_row(r0: &[u8], r1: &[u8], r2: &[u8], out: &mut [u8]) {
    let n = out.len();
    let (r0, r1, r2) = (&r0[..n], &r1[..n], &r2[..n]);
    out[0] = BLACK_Y;
    out[n - 1] = BLACK_Y;
    for x in 1..n - 1 {
        let (a, b, c) = (r0[x - 1] as i16, r0[x] as i16, r0[x + 1] as i16);
        let (d, f) = (r1[x - 1] as i16, r1[x + 1] as i16);
        let (g, hh, i) = (r2[x - 1] as i16, r2[x] as i16, r2[x + 1] as i16);
        let gx = (c + 2 * f + i) - (a + 2 * d + g);
        let gy = (g + 2 * hh + i) - (a + 2 * b + c);
        out[x] = if gx.abs() + gy.abs() >= THRESHOLD { WHITE_Y } else { BLACK_Y };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, checkerboard, gradient};

    fn edges(f: VideoFrame) -> VideoFrame {
        let mut e = EdgeOutline::new(&INFO.default_params()).unwrap();
        testing::run(&mut e, [f]).frames.remove(0)
    }

    #[test]
    fn a_vertical_step_becomes_a_white_line_on_black() {
        let mut f = VideoFrame::new(40, 30);
        for r in 0..30 {
            f.row_mut(Y, r)[20..].fill(200); // step 16 -> 200 between x = 19 and 20
        }
        f.plane_mut(U).fill(50);
        let out = edges(f);
        for r in 1..29 {
            assert_eq!(out.at(Y, 19, r), WHITE_Y, "row {r}");
            assert_eq!(out.at(Y, 20, r), WHITE_Y, "row {r}");
            for x in (1..18).chain(22..39) {
                assert_eq!(out.at(Y, x, r), BLACK_Y, "({x},{r})");
            }
        }
        assert!(out.plane(U).iter().all(|&v| v == NEUTRAL_UV), "colour removed");
    }

    #[test]
    fn smooth_gradients_are_not_edges_and_checkerboards_are_all_edges() {
        let flat = edges(gradient(64, 48));
        assert!(flat.row(Y, 10).iter().all(|&v| v == BLACK_Y));
        let cb = edges(checkerboard(32, 32, 8));
        assert_eq!(cb.at(Y, 7, 3), WHITE_Y);
        assert_eq!(cb.at(Y, 8, 3), WHITE_Y);
        assert_eq!(cb.at(Y, 3, 3), BLACK_Y, "inside a square");
    }

    #[test]
    fn tiny_frames_do_not_panic() {
        for (w, h) in [(1, 1), (2, 2), (3, 2), (3, 3)] {
            let out = edges(gradient(w, h));
            assert!(out.row(Y, 0).iter().all(|&v| v == BLACK_Y));
        }
    }
}
