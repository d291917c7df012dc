//! `EDGE_OUTLINE`: white edges on black.
//!
//! SynthARium runs `cv2.Canny(bgr, 100, 200)`. Here: a 3x3 Sobel on the luma plane, L1 magnitude
//! `|gx| + |gy|` against one threshold (between Canny's two, scaled to limited-range luma), edges
//! Y 235, the rest Y 16, chroma 128. No RGB conversion, no hysteresis or thinning: edges are 1-2
//! px wide.
//!
//! Implementation: Sobel is separable, so per output row two `i16` column passes do the work:
//! `v = r0 + 2 r1 + r2` and `d = r2 - r0` over the rows around it, then `gx = v[x+1] - v[x-1]`,
//! `gy = d[x-1] + 2 d[x] + d[x+1]`. Both are plain loops over equal-length slices that the
//! compiler vectorises (16 or 32 lanes when the AVX2 or AVX-512 copy is chosen at run time).
//! The sums of a row are taken before the row above it is written (two rows of sums,
//! double-buffered), so the luma plane is never copied. Integer throughout; the output is
//! exactly the 3x3 Sobel's. ~0.026 ms at 640x480 with AVX-512 (0.033 with AVX2).

use crate::{
    video, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, VideoFilter, VideoFrame, BLACK_Y,
    NEUTRAL_UV, U, V, WHITE_Y, Y,
};

pub const INFO: FilterInfo = FilterInfo {
    name: "EDGE_OUTLINE",
    listing: Listing::Session,
    channel: Channel::Video,
    group: None,
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
    /// Column sums `r0 + 2 r1 + r2` for two consecutive output rows (by row parity). Reused.
    v: [Vec<i16>; 2],
    /// Column differences `r2 - r0`, likewise.
    d: [Vec<i16>; 2],
}

impl VideoFilter for EdgeOutline {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(EdgeOutline { v: Default::default(), d: Default::default() })
    }

    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        if !ctx.chroma_discarded() {
            frame.plane_mut(U).fill(NEUTRAL_UV);
            frame.plane_mut(V).fill(NEUTRAL_UV);
        }
        outline(frame, &mut self.v, &mut self.d, Kernel::best());
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }

    /// Chroma is always set to 128: a filter before this one need not compute its own.
    fn overwrites_chroma(&self) -> bool {
        true
    }
}

/// How [`outline`] is compiled: the same code, for the target's baseline (SSE2 on x86-64),
/// AVX2 (16 lanes) or AVX-512 BW (32 lanes).
pub use crate::api::simd::Kernel;

/// Replaces the luma plane of `frame` by its edges (`WHITE_Y` on `BLACK_Y`; the outermost rows
/// and columns are black). `v` and `d` are scratch. Panics if `kernel` is not
/// [`supported`](Kernel::supported).
pub fn outline(frame: &mut VideoFrame, v: &mut [Vec<i16>; 2], d: &mut [Vec<i16>; 2], kernel: Kernel) {
    let (w, h, stride) = (frame.width(), frame.height(), frame.stride(Y));
    let plane = frame.plane_mut(Y);
    if w < 3 || h < 3 {
        plane.fill(BLACK_Y);
        return;
    }
    for b in v.iter_mut().chain(d.iter_mut()) {
        b.resize(w, 0);
    }
    assert!(kernel.supported(), "{kernel:?} kernel not supported here");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: just checked that the CPU has AVX2.
        Kernel::Avx2 => unsafe { outline_avx2(plane, stride, w, h, v, d) },
        #[cfg(all(target_arch = "x86_64", filters_avx512))]
        // SAFETY: just checked that the CPU has AVX-512 F and BW.
        Kernel::Avx512 => unsafe { outline_avx512(plane, stride, w, h, v, d) },
        _ => outline_plane(plane, stride, w, h, v, d),
    }
}

#[cfg(all(target_arch = "x86_64", filters_avx512))]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn outline_avx512(
    plane: &mut [u8],
    stride: usize,
    w: usize,
    h: usize,
    v: &mut [Vec<i16>; 2],
    d: &mut [Vec<i16>; 2],
) {
    outline_plane(plane, stride, w, h, v, d)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn outline_avx2(
    plane: &mut [u8],
    stride: usize,
    w: usize,
    h: usize,
    v: &mut [Vec<i16>; 2],
    d: &mut [Vec<i16>; 2],
) {
    outline_plane(plane, stride, w, h, v, d)
}

/// [`outline`] on a plane (`w, h >= 3`), with `v` and `d` `w` long. Inlined into its callers so
/// that each compiles it for its own instruction set.
#[inline(always)]
fn outline_plane(plane: &mut [u8], stride: usize, w: usize, h: usize, v: &mut [Vec<i16>; 2], d: &mut [Vec<i16>; 2]) {
    for r in 1..h - 1 {
        // Sums of row r from the original rows r - 1, r, r + 1 (row r - 1 is written just after).
        {
            let (r0, r1, r2) =
                (&plane[(r - 1) * stride..][..w], &plane[r * stride..][..w], &plane[(r + 1) * stride..][..w]);
            sums(r0, r1, r2, &mut v[r % 2], &mut d[r % 2]);
        }
        if r > 1 {
            edges(&v[(r - 1) % 2], &d[(r - 1) % 2], &mut plane[(r - 1) * stride..][..w]);
        }
    }
    edges(&v[(h - 2) % 2], &d[(h - 2) % 2], &mut plane[(h - 2) * stride..][..w]);
    plane[..w].fill(BLACK_Y);
    plane[(h - 1) * stride..][..w].fill(BLACK_Y);
}

/// Vertical passes of one output row: `v = r0 + 2 r1 + r2`, `d = r2 - r0`.
#[inline(always)]
fn sums(r0: &[u8], r1: &[u8], r2: &[u8], v: &mut [i16], d: &mut [i16]) {
    let n = v.len();
    let (r0, r1, r2, d) = (&r0[..n], &r1[..n], &r2[..n], &mut d[..n]);
    for i in 0..n {
        let (a, b, c) = (r0[i] as i16, r1[i] as i16, r2[i] as i16);
        v[i] = a + 2 * b + c;
        d[i] = c - a;
    }
}

/// Horizontal pass: `gx = v[x+1] - v[x-1]`, `gy = d[x-1] + 2 d[x] + d[x+1]`, threshold on
/// `|gx| + |gy|`. The first and last columns are black.
#[inline(always)]
fn edges(v: &[i16], d: &[i16], out: &mut [u8]) {
    let n = out.len();
    out[0] = BLACK_Y;
    out[n - 1] = BLACK_Y;
    let m = n - 2;
    let (vl, vr) = (&v[..m], &v[2..n]);
    let (dl, dc, dr) = (&d[..m], &d[1..n - 1], &d[2..n]);
    let out = &mut out[1..n - 1];
    for i in 0..m {
        let gx = vr[i] - vl[i];
        let gy = dl[i] + 2 * dc[i] + dr[i];
        out[i] = if gx.abs() + gy.abs() >= THRESHOLD { WHITE_Y } else { BLACK_Y };
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

    /// The 3x3 Sobel written out directly, as the filter was first written.
    fn reference(src: &VideoFrame) -> Vec<u8> {
        let (w, h) = (src.width(), src.height());
        let mut out = vec![BLACK_Y; w * h];
        for y in 1..h.saturating_sub(1) {
            for x in 1..w - 1 {
                let p = |dx: usize, dy: usize| src.at(Y, x + dx - 1, y + dy - 1) as i32;
                let gx = (p(2, 0) + 2 * p(2, 1) + p(2, 2)) - (p(0, 0) + 2 * p(0, 1) + p(0, 2));
                let gy = (p(0, 2) + 2 * p(1, 2) + p(2, 2)) - (p(0, 0) + 2 * p(1, 0) + p(2, 0));
                if gx.abs() + gy.abs() >= THRESHOLD as i32 {
                    out[y * w + x] = WHITE_Y;
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_gives_exactly_the_direct_sobel() {
        let kernels: Vec<_> =
            [Kernel::Portable, Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| k.supported()).collect();
        let mut seed = 12345u32;
        for (w, h) in [(640, 480), (35, 21), (3, 3), (4, 7), (67, 3)] {
            // Noise at a few contrasts, so that both sides of the threshold occur.
            let mut src = VideoFrame::with_strides(w, h, [w + 13, w.div_ceil(2), w.div_ceil(2)]);
            for r in 0..h {
                for (x, px) in src.row_mut(Y, r).iter_mut().enumerate() {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let amp = [8, 40, 255][(x / 8 + r / 8) % 3];
                    *px = (100 + (seed >> 24) % amp) as u8;
                }
            }
            let want = reference(&src);
            for &k in &kernels {
                let mut f = src.clone();
                outline(&mut f, &mut Default::default(), &mut Default::default(), k);
                for r in 0..h {
                    assert_eq!(f.row(Y, r), &want[r * w..(r + 1) * w], "{k:?} {w}x{h} row {r}");
                }
            }
        }
    }

    #[test]
    fn declares_that_it_overwrites_chroma_and_skips_it_when_a_later_filter_does_too() {
        let mut e = EdgeOutline::new(&INFO.default_params()).unwrap();
        assert!(e.overwrites_chroma());
        let src = gradient(64, 48);
        let mut h = testing::Harness::new();
        h.ctx.set_chroma_discarded(true);
        let out = h.run(&mut e, [src.clone()]).frames.remove(0);
        assert_eq!(out.plane(U), src.plane(U));
        assert_eq!(out.plane(Y), edges(src).plane(Y));
    }

    #[test]
    fn tiny_frames_do_not_panic() {
        for (w, h) in [(1, 1), (2, 2), (3, 2), (3, 3)] {
            let out = edges(gradient(w, h));
            assert!(out.row(Y, 0).iter().all(|&v| v == BLACK_Y));
        }
    }
}
