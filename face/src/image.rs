//! Grey-image helpers: the crop-and-scale the analyser feeds the detector.

use crate::Gray;

/// Scales the region `[x0, y0, x1, y1)` of `src` to `w` x `h` into `out` (bilinear; for
/// shrinking by more than 2x the source is averaged over 2x2 first, so detail does not alias).
pub fn resize(src: Gray<'_>, region: [usize; 4], w: usize, h: usize, out: &mut Vec<u8>) {
    let [x0, y0, x1, y1] = region;
    let (rw, rh) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
    out.clear();
    out.resize(w * h, 0);
    if w == 0 || h == 0 {
        return;
    }
    let px =
        |x: usize, y: usize| -> f32 { src.data()[(y0 + y.min(rh - 1)) * src.stride() + x0 + x.min(rw - 1)] as f32 };
    let sx = rw as f32 / w as f32;
    let sy = rh as f32 / h as f32;
    let average = sx > 2.0 || sy > 2.0;
    for oy in 0..h {
        let fy = ((oy as f32 + 0.5) * sy - 0.5).max(0.0);
        let iy = fy as usize;
        let ty = fy - iy as f32;
        for ox in 0..w {
            let fx = ((ox as f32 + 0.5) * sx - 0.5).max(0.0);
            let ix = fx as usize;
            let tx = fx - ix as f32;
            let v = if average {
                (px(ix, iy) + px(ix + 1, iy) + px(ix, iy + 1) + px(ix + 1, iy + 1)) / 4.0
            } else {
                let top = px(ix, iy) * (1.0 - tx) + px(ix + 1, iy) * tx;
                let bottom = px(ix, iy + 1) * (1.0 - tx) + px(ix + 1, iy + 1) * tx;
                top * (1.0 - ty) + bottom * ty
            };
            out[oy * w + ox] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_keeps_a_flat_image_flat_and_a_gradient_ordered() {
        let data: Vec<u8> = (0..64 * 48).map(|i| ((i % 64) * 4) as u8).collect();
        let img = Gray::new(&data, 64, 48, 64).expect("the buffer holds the picture");
        let mut out = Vec::new();
        resize(img, [0, 0, 64, 48], 16, 12, &mut out);
        assert_eq!(out.len(), 16 * 12);
        assert!(out.windows(2).take(15).all(|w| w[0] <= w[1]), "{:?}", &out[..16]);
        let flat = vec![77u8; 100 * 100];
        resize(
            Gray::new(&flat, 100, 100, 100).expect("the buffer holds the picture"),
            [10, 10, 90, 90],
            33,
            17,
            &mut out,
        );
        assert!(out.iter().all(|&v| v == 77));
    }
}
