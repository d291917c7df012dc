//! SynthARium's simple glasses detection, on our landmarks: the strip of the nose bridge
//! between the eyes (x from the leftmost to the rightmost of landmarks 20, 28–31 and 33–35, y
//! from landmark 20, an eyebrow point, to 30, the nose tip) is blurred (3x3 Gaussian), run
//! through Canny (thresholds 100 and 200, L1 gradient, as OpenCV's default), and an edge pixel
//! anywhere in the strip's centre column means glasses: a frame's bridge crosses it
//! horizontally, while a bare nose bridge has vertical edges at most.
//!
//! The image is the luma plane, stretched from video range (16–235) to 0–255 so the thresholds
//! mean what they mean on an 8-bit picture; SynthARium runs Canny on the colour crop, where
//! OpenCV takes the strongest channel's gradient, so a frame that differs from the skin only in
//! colour may be missed here.

use crate::landmarks::Landmarks;
use crate::Gray;

/// The landmarks that bound the strip horizontally.
const STRIP_X: [usize; 8] = [20, 28, 29, 30, 31, 33, 34, 35];
const STRIP_TOP: usize = 20;
const STRIP_BOTTOM: usize = 30;
pub const CANNY_LOW: i32 = 100;
pub const CANNY_HIGH: i32 = 200;

/// Whether the face with these landmarks wears glasses; `None` if the strip is empty or
/// outside the image.
pub fn detect(img: Gray<'_>, lm: &Landmarks) -> Option<bool> {
    let xs = STRIP_X.map(|i| lm[i][0]);
    let x0 = xs.iter().copied().fold(f32::MAX, f32::min).max(0.0) as usize;
    let x1 = (xs.iter().copied().fold(f32::MIN, f32::max) as usize).min(img.width());
    let y0 = lm[STRIP_TOP][1].max(0.0) as usize;
    let y1 = (lm[STRIP_BOTTOM][1] as usize).min(img.height());
    if x1 < x0 + 3 || y1 < y0 + 3 {
        return None;
    }
    let (w, h) = (x1 - x0, y1 - y0);
    let crop: Vec<i32> = (y0..y1)
        .flat_map(|y| img.data()[y * img.stride() + x0..y * img.stride() + x1].iter())
        .map(|&v| ((v as i32 - 16) * 255 / 219).clamp(0, 255))
        .collect();
    let edges = canny(&blur3(&crop, w, h), w, h, CANNY_LOW, CANNY_HIGH);
    let centre = w / 2;
    Some((0..h).any(|y| edges[y * w + centre]))
}

/// 3x3 Gaussian (OpenCV's kernel for size 3: 1-2-1), borders reflected (OpenCV's
/// BORDER_REFLECT_101).
fn blur3(src: &[i32], w: usize, h: usize) -> Vec<i32> {
    let at = |x: isize, y: isize| -> i32 {
        let rx = reflect(x, w);
        let ry = reflect(y, h);
        src[ry * w + rx]
    };
    let mut out = vec![0; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let mut s = 0;
            for (dy, ky) in [(-1, 1), (0, 2), (1, 1)] {
                for (dx, kx) in [(-1, 1), (0, 2), (1, 1)] {
                    s += ky * kx * at(x + dx, y + dy);
                }
            }
            out[y as usize * w + x as usize] = (s + 8) >> 4;
        }
    }
    out
}

fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let mut i = i;
    if i < 0 {
        i = -i;
    }
    if i >= n {
        i = 2 * n - 2 - i;
    }
    i.clamp(0, n - 1) as usize
}

/// Canny edges: 3x3 Sobel, L1 magnitude, non-maximum suppression along the gradient's
/// quantised direction, hysteresis between `low` and `high` (8-connected).
pub fn canny(src: &[i32], w: usize, h: usize, low: i32, high: i32) -> Vec<bool> {
    let at = |x: isize, y: isize| src[reflect(y, h) * w + reflect(x, w)];
    let mut mag = vec![0i32; w * h];
    let mut dir = vec![0u8; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2 * at(x - 1, y)
                - at(x - 1, y + 1);
            let gy = at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2 * at(x, y - 1)
                - at(x + 1, y - 1);
            let i = y as usize * w + x as usize;
            mag[i] = gx.abs() + gy.abs();
            // 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135° (tan 22.5° ≈ 0.4142).
            let (ax, ay) = (gx.abs() as f32, gy.abs() as f32);
            dir[i] = if ay <= ax * 0.4142 {
                0
            } else if ay >= ax * 2.4142 {
                2
            } else if (gx > 0) == (gy > 0) {
                1
            } else {
                3
            };
        }
    }
    let m = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            mag[y as usize * w + x as usize]
        }
    };
    // 0 none, 1 weak, 2 strong.
    let mut class = vec![0u8; w * h];
    let mut stack = Vec::new();
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            let v = mag[i];
            if v <= low {
                continue;
            }
            let (a, b) = match dir[i] {
                0 => (m(x - 1, y), m(x + 1, y)),
                2 => (m(x, y - 1), m(x, y + 1)),
                1 => (m(x - 1, y - 1), m(x + 1, y + 1)),
                _ => (m(x + 1, y - 1), m(x - 1, y + 1)),
            };
            if v > a && v >= b {
                class[i] = if v > high { 2 } else { 1 };
                if v > high {
                    stack.push(i);
                }
            }
        }
    }
    let mut edge = vec![false; w * h];
    while let Some(i) = stack.pop() {
        if edge[i] {
            continue;
        }
        edge[i] = true;
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (nx, ny) = (x + dx, y + dy);
                if nx >= 0 && ny >= 0 && nx < w as isize && ny < h as isize {
                    let j = ny as usize * w + nx as usize;
                    if class[j] >= 1 && !edge[j] {
                        stack.push(j);
                    }
                }
            }
        }
    }
    edge
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canny_finds_a_step_once_and_nothing_on_a_flat_image() {
        let (w, h) = (20, 10);
        let step: Vec<i32> = (0..w * h).map(|i| if i % w < 10 { 20 } else { 220 }).collect();
        let e = canny(&step, w, h, CANNY_LOW, CANNY_HIGH);
        for y in 0..h {
            let row: Vec<usize> = (0..w).filter(|&x| e[y * w + x]).collect();
            assert!(!row.is_empty() && row.iter().all(|&x| x == 9 || x == 10), "row {y}: {row:?}");
            assert!(row.len() <= 2);
        }
        let flat = vec![128; w * h];
        assert!(canny(&flat, w, h, CANNY_LOW, CANNY_HIGH).iter().all(|&b| !b));
    }

    #[test]
    fn a_bar_across_the_strip_is_glasses_and_a_plain_strip_is_not() {
        // A synthetic face: landmarks placing the strip at x 40..60, y 20..60.
        let mut lm = [[0.0f32; 2]; 68];
        for i in STRIP_X {
            lm[i] = [50.0, 40.0];
        }
        lm[31] = [40.0, 55.0];
        lm[35] = [60.0, 55.0];
        lm[STRIP_TOP] = [45.0, 20.0];
        lm[STRIP_BOTTOM] = [50.0, 60.0];
        let (w, h) = (100, 80);
        let skin = vec![150u8; w * h];
        let img = Gray::new(&skin, w, h, w).expect("the buffer holds the picture");
        assert_eq!(detect(img, &lm), Some(false));
        let mut framed = skin.clone();
        for y in 34..38 {
            for x in 0..w {
                framed[y * w + x] = 30;
            }
        }
        assert_eq!(detect(Gray::new(&framed, w, h, w).expect("the buffer holds the picture"), &lm), Some(true));
        // A strip outside the image gives no answer.
        let mut off = lm;
        off[STRIP_TOP] = [45.0, 200.0];
        off[STRIP_BOTTOM] = [45.0, 260.0];
        assert_eq!(detect(img, &off), None);
    }
}
