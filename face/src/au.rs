//! AU06 (cheek raiser) and AU12 (lip-corner puller) intensity estimates from the 68 landmarks,
//! on OpenFace's 0–5 scale.
//!
//! OpenFace predicts AU intensities with support vector regressors over appearance (HOG) and
//! shape features, with a person-specific normalisation (the median of each feature over the
//! video is taken as that person's neutral face). exphub has landmarks only, so it measures
//! the geometric changes that define the two action units (FACS):
//!
//! - **AU12** pulls the lip corners up and outwards: the mouth gets wider and its corners rise
//!   above the line through the inner-lip centre. Features: mouth width (corner to corner) and
//!   corner lift (inner-lip centre's height minus the corners' mean height), both in a face
//!   frame where the eyes are level and the eye-centre distance is 1.
//! - **AU06** raises the cheeks and narrows the eyes from below (the Duchenne marker): the eye
//!   aperture (lid-to-lid height over eye width, both eyes) falls.
//!
//! Each feature is compared with the person's neutral value ([`Baseline`]): a robust running
//! estimate (the 25th percentile of width and lift, the median of aperture, over the last
//! [`Baseline::WINDOW`] analysed frames; population values from neutral faces until
//! [`Baseline::MIN_SAMPLES`] frames are in). Offline, the whole recording's percentiles are used,
//! as OpenFace does offline. The gains map a broad smile (mouth +0.2, corners +0.08, aperture
//! −0.1 in eye-distance units) to about 4; values are clamped to 0–5, and an AU counts as present
//! (`AU06_c`, `AU12_c`) at intensity ≥ 1.
//!
//! These are **estimates**: they follow AU12/AU06 as far as the landmarks do (validated on
//! landmark-controlled and warped real faces, see the tests), but they are not trained
//! regressors, a blink also narrows the eyes (AU06 rises briefly), and absolute values depend on
//! the baseline being a neutral face.

use crate::landmarks::{
    centroid, Landmarks, EYE_LEFT, EYE_RIGHT, INNER_LIP_BOTTOM, INNER_LIP_TOP, MOUTH_LEFT, MOUTH_RIGHT,
};
use std::collections::VecDeque;

/// The shape measures the estimates are built from (face frame: eyes level, eye-centre
/// distance 1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Features {
    /// Lip corner to lip corner.
    pub mouth_width: f32,
    /// Height of the lip corners above the inner-lip centre (positive: corners higher).
    pub corner_lift: f32,
    /// Mean eye opening (lid to lid) over eye width, both eyes.
    pub eye_aperture: f32,
}

impl Features {
    /// The measures of a shape; `None` if the eyes coincide (no face frame).
    pub fn of(lm: &Landmarks) -> Option<Features> {
        let le = centroid(lm, EYE_LEFT);
        let re = centroid(lm, EYE_RIGHT);
        let (dx, dy) = (re[0] - le[0], re[1] - le[1]);
        let iod = (dx * dx + dy * dy).sqrt();
        if !iod.is_finite() || iod < 1.0 {
            return None;
        }
        // Rotate so the eyes are level, scale so they are 1 apart (y stays "down").
        let (c, s) = (dx / iod, dy / iod);
        let to_face = |p: [f32; 2]| -> [f32; 2] {
            let (x, y) = (p[0] - le[0], p[1] - le[1]);
            [(c * x + s * y) / iod, (-s * x + c * y) / iod]
        };
        let l = to_face(lm[MOUTH_LEFT]);
        let r = to_face(lm[MOUTH_RIGHT]);
        let top = to_face(lm[INNER_LIP_TOP]);
        let bottom = to_face(lm[INNER_LIP_BOTTOM]);
        let centre_y = (top[1] + bottom[1]) / 2.0;
        let aperture = |eye: std::ops::RangeInclusive<usize>| -> f32 {
            let i = *eye.start();
            let p = |k: usize| to_face(lm[i + k]);
            let width = (p(3)[0] - p(0)[0]).abs().max(1e-3);
            let height = ((p(5)[1] - p(1)[1]) + (p(4)[1] - p(2)[1])) / 2.0;
            height / width
        };
        let f = Features {
            mouth_width: r[0] - l[0],
            corner_lift: centre_y - (l[1] + r[1]) / 2.0,
            eye_aperture: (aperture(EYE_LEFT) + aperture(EYE_RIGHT)) / 2.0,
        };
        [f.mouth_width, f.corner_lift, f.eye_aperture].iter().all(|v| v.is_finite()).then_some(f)
    }
}

/// AU intensities (0–5) and presence, as OpenFace names them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ActionUnits {
    pub au06_r: f32,
    pub au12_r: f32,
    pub au06_c: bool,
    pub au12_c: bool,
}

/// Gains from feature change (eye-distance units) to intensity.
const GAIN_WIDTH: f32 = 10.0;
const GAIN_LIFT: f32 = 25.0;
const GAIN_APERTURE: f32 = 40.0;
/// Intensity at which an AU counts as present.
pub const PRESENT: f32 = 1.0;

/// Population neutral values: the mean of the neutral annotated faces the tests use (iBUG
/// layout, frontal); replaced by the person's own as soon as enough frames are seen.
pub const POPULATION_NEUTRAL: Features = Features { mouth_width: 0.80, corner_lift: -0.02, eye_aperture: 0.30 };

/// The intensities of `f` against the neutral face `neutral`.
pub fn estimate(f: &Features, neutral: &Features) -> ActionUnits {
    let au12 = GAIN_WIDTH * (f.mouth_width - neutral.mouth_width) + GAIN_LIFT * (f.corner_lift - neutral.corner_lift);
    let au06 = GAIN_APERTURE * (neutral.eye_aperture - f.eye_aperture);
    let au06_r = au06.clamp(0.0, 5.0);
    let au12_r = au12.clamp(0.0, 5.0);
    ActionUnits { au06_r, au12_r, au06_c: au06_r >= PRESENT, au12_c: au12_r >= PRESENT }
}

/// A person's neutral face, estimated from the frames seen so far (robust percentiles over a
/// sliding window).
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    recent: VecDeque<Features>,
}

impl Baseline {
    /// Frames kept (at a 10 Hz analysis rate: the last minute).
    pub const WINDOW: usize = 600;
    /// Frames needed before the person's own values replace the population's.
    pub const MIN_SAMPLES: usize = 30;

    pub fn add(&mut self, f: Features) {
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(f);
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// The neutral face: the person's own once enough frames are in, else the population's.
    pub fn neutral(&self) -> Features {
        if self.recent.len() < Self::MIN_SAMPLES {
            return POPULATION_NEUTRAL;
        }
        neutral_of(self.recent.iter().copied())
    }
}

/// The neutral face of a set of frames: 25th percentile of mouth width and corner lift (a smile
/// raises both, so the lower quarter is the resting mouth), median of the eye aperture.
pub fn neutral_of(frames: impl Iterator<Item = Features>) -> Features {
    let (mut w, mut l, mut a) = (Vec::new(), Vec::new(), Vec::new());
    for f in frames {
        w.push(f.mouth_width);
        l.push(f.corner_lift);
        a.push(f.eye_aperture);
    }
    if w.is_empty() {
        return POPULATION_NEUTRAL;
    }
    Features {
        mouth_width: percentile(&mut w, 0.25),
        corner_lift: percentile(&mut l, 0.25),
        eye_aperture: percentile(&mut a, 0.5),
    }
}

fn percentile(v: &mut [f32], q: f32) -> f32 {
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f32 * q).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frontal face in the iBUG layout with the mouth and eyes set by hand: eyes 60 px apart.
    pub(crate) fn face(mouth_half_width: f32, corner_lift: f32, eye_open: f32) -> Landmarks {
        let mut lm = [[0.0f32; 2]; 68];
        for (start, cx) in [(36usize, 100.0f32), (42, 160.0)] {
            let w = 15.0;
            let h = eye_open * w * 2.0 / 2.0;
            lm[start] = [cx - w, 100.0];
            lm[start + 1] = [cx - w / 3.0, 100.0 - h];
            lm[start + 2] = [cx + w / 3.0, 100.0 - h];
            lm[start + 3] = [cx + w, 100.0];
            lm[start + 4] = [cx + w / 3.0, 100.0 + h];
            lm[start + 5] = [cx - w / 3.0, 100.0 + h];
        }
        let cy = 190.0;
        lm[MOUTH_LEFT] = [130.0 - mouth_half_width, cy - corner_lift];
        lm[MOUTH_RIGHT] = [130.0 + mouth_half_width, cy - corner_lift];
        lm[INNER_LIP_TOP] = [130.0, cy - 3.0];
        lm[INNER_LIP_BOTTOM] = [130.0, cy + 3.0];
        lm
    }

    #[test]
    fn the_features_of_a_hand_made_face() {
        let f = Features::of(&face(24.0, 1.2, 0.3)).unwrap();
        assert!((f.mouth_width - 0.8).abs() < 1e-5, "{f:?}");
        assert!((f.corner_lift - 0.02).abs() < 1e-5, "{f:?}");
        assert!((f.eye_aperture - 0.3).abs() < 1e-5, "{f:?}");
    }

    #[test]
    fn a_smile_raises_au12_and_a_squint_au06_and_a_neutral_face_gives_zero() {
        let neutral = Features::of(&face(24.0, -1.2, 0.3)).unwrap();
        let still = estimate(&neutral, &neutral);
        assert_eq!((still.au06_r, still.au12_r, still.au06_c, still.au12_c), (0.0, 0.0, false, false));
        let mut last = 0.0;
        for k in 1..=5 {
            // Corners out by 2 px and up by 1 px per step.
            let f = Features::of(&face(24.0 + 2.0 * k as f32, -1.2 + k as f32, 0.3)).unwrap();
            let au = estimate(&f, &neutral);
            assert!(au.au12_r > last, "step {k}: {au:?}");
            assert_eq!(au.au06_r, 0.0);
            last = au.au12_r;
        }
        let squint = estimate(&Features::of(&face(36.0, 4.0, 0.2)).unwrap(), &neutral);
        assert!(squint.au06_r >= 3.0 && squint.au06_c && squint.au12_c, "{squint:?}");
    }

    #[test]
    fn the_estimates_do_not_depend_on_where_the_face_is_its_size_or_its_roll() {
        let lm = face(34.0, 3.0, 0.22);
        let base = Features::of(&lm).unwrap();
        let (s, c) = 0.4f32.sin_cos();
        let moved: Landmarks = std::array::from_fn(|i| {
            let [x, y] = lm[i];
            [2.5 * (c * x - s * y) + 40.0, 2.5 * (s * x + c * y) - 15.0]
        });
        let f = Features::of(&moved).unwrap();
        assert!((f.mouth_width - base.mouth_width).abs() < 1e-4);
        assert!((f.corner_lift - base.corner_lift).abs() < 1e-4);
        assert!((f.eye_aperture - base.eye_aperture).abs() < 1e-4);
    }

    #[test]
    fn the_baseline_is_the_population_until_enough_frames_then_the_persons_resting_face() {
        let mut b = Baseline::default();
        let resting = Features { mouth_width: 0.9, corner_lift: 0.0, eye_aperture: 0.35 };
        let smiling = Features { mouth_width: 1.1, corner_lift: 0.08, eye_aperture: 0.25 };
        for _ in 0..Baseline::MIN_SAMPLES - 1 {
            b.add(resting);
        }
        assert_eq!(b.neutral(), POPULATION_NEUTRAL);
        b.add(resting);
        // Smiling a third of the time does not move the resting face.
        for _ in 0..(Baseline::MIN_SAMPLES / 2) {
            b.add(smiling);
        }
        assert_eq!(b.neutral(), resting);
        assert!(estimate(&smiling, &b.neutral()).au12_r > 3.0);
        // The window forgets.
        for _ in 0..Baseline::WINDOW {
            b.add(smiling);
        }
        assert_eq!(b.len(), Baseline::WINDOW);
        assert_eq!(b.neutral(), smiling);
    }

    #[test]
    fn degenerate_shapes_have_no_features() {
        assert_eq!(Features::of(&[[5.0; 2]; 68]), None);
        let mut lm = face(24.0, 0.0, 0.3);
        lm[MOUTH_LEFT] = [f32::NAN, 1.0];
        assert_eq!(Features::of(&lm), None);
    }
}
