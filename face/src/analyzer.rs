//! Per-stream face analysis: find the face, follow it, fit the 68 landmarks, and derive head
//! pose and AU estimates.
//!
//! Finding a face costs tens of milliseconds (dlib's HOG detector over the whole frame, ~30 ms at
//! 640x360), fitting the landmarks 1.5 ms. So the detector runs on the whole frame only while no
//! face is known (and then at most every [`Settings::search_every`] analysed frames, every
//! [`Settings::idle_search_every`] once several searches found nothing); once a face
//! is found it is *followed*: each frame's landmarks give the next frame's face box (the box the
//! detector drew, carried along by the landmarks' movement and size), and every
//! [`Settings::confirm_every`] frames the detector re-checks a crop around the face (twice its
//! size, scaled so the face is about 90 px: ~4 ms). Two failed checks in a row, or landmarks that
//! collapse or leave the frame, drop the face and the full search resumes.

use crate::au::{self, ActionUnits, Baseline, Features};
use crate::ffi::Detector;
use crate::landmarks::{self, Landmarks};
use crate::pose::{self, Camera, Pose};
use crate::Gray;
use crate::{FaceError, Models};
use std::sync::Arc;

/// How often the expensive steps run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// While no face is known, the whole-frame search runs on one analysed frame in this many…
    pub search_every: u32,
    /// …and after [`Settings::searches_before_idle`] failed searches in a row, on one in this
    /// many (an empty picture should not cost a whole-frame search three times a second).
    pub idle_search_every: u32,
    pub searches_before_idle: u32,
    /// While a face is followed, the detector re-checks it on one analysed frame in this many.
    pub confirm_every: u32,
    /// Frames wider than this are scaled down for the whole-frame search (the detector finds
    /// faces from 80 px, so 640 finds faces from 1/8 of the frame width).
    pub search_width: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            search_every: 3,
            idle_search_every: 10,
            searches_before_idle: 5,
            confirm_every: 5,
            search_width: 640,
        }
    }
}

/// What one analysed frame showed.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// A face was found (or followed) and its landmarks fitted.
    pub success: bool,
    /// 0–1: how sure the detector was of this face at its last look (logistic of its score).
    pub confidence: f32,
    /// The detector looked at this frame (a search or a check), rather than only following.
    pub detected: bool,
    /// The face box `[x, y, width, height]` in pixels (the detector's convention).
    pub bbox: [f32; 4],
    pub landmarks: Landmarks,
    pub pose: Pose,
    pub features: Features,
    pub au: ActionUnits,
}

impl Face {
    fn none(detected: bool) -> Face {
        Face {
            success: false,
            confidence: 0.0,
            detected,
            bbox: [0.0; 4],
            landmarks: [[0.0; 2]; 68],
            pose: Pose::default(),
            features: Features::default(),
            au: ActionUnits::default(),
        }
    }
}

/// The face being followed: the detector's box relative to the landmarks' bounds, so the box
/// can be carried along by the landmarks.
#[derive(Clone, Copy, Debug)]
struct Track {
    /// Box centre minus landmark-bounds centre, over the bounds' width / height.
    offset: [f32; 2],
    /// Box size over the landmark bounds' size.
    scale: [f32; 2],
    /// The box for the next frame, `[left, top, right, bottom]`.
    next: [f32; 4],
    confidence: f32,
    misses: u32,
}

/// One stream's analyser: owns a detector and the stream's tracking and baseline state; the
/// landmark model is shared ([`Models`]).
pub struct Analyzer {
    models: Arc<Models>,
    detector: Detector,
    settings: Settings,
    track: Option<Track>,
    frames: u64,
    /// Whole-frame searches that found nothing since the last face, and the frame of the last.
    failed_searches: u32,
    last_search: u64,
    baseline: Baseline,
    scratch: Vec<u8>,
}

fn confidence_of(score: f64) -> f32 {
    (1.0 / (1.0 + (-2.0 * (score + 0.5)).exp())) as f32
}

impl Analyzer {
    pub fn new(models: Arc<Models>) -> Result<Self, FaceError> {
        Self::with_settings(models, Settings::default())
    }

    pub fn with_settings(models: Arc<Models>, settings: Settings) -> Result<Self, FaceError> {
        let detector = Detector::new().map_err(FaceError::Detector)?;
        Ok(Analyzer {
            models,
            detector,
            settings,
            track: None,
            frames: 0,
            failed_searches: 0,
            last_search: 0,
            baseline: Baseline::default(),
            scratch: Vec::new(),
        })
    }

    /// Forgets the face and the person's baseline (a new person, a new stream).
    pub fn reset(&mut self) {
        self.track = None;
        self.frames = 0;
        self.failed_searches = 0;
        self.last_search = 0;
        self.baseline = Baseline::default();
    }

    /// The person's neutral face as estimated so far.
    pub fn neutral(&self) -> Features {
        self.baseline.neutral()
    }

    /// Analyses one frame (its luma plane).
    pub fn analyze(&mut self, img: Gray<'_>) -> Face {
        self.frames += 1;
        let n = self.frames;
        if img.width() < 16 || img.height() < 16 {
            self.track = None;
            return Face::none(false);
        }
        // Where the face box comes from this frame, and whether the detector drew it.
        let (bbox, confidence, detected, fresh, misses) = match self.track {
            Some(t) if t.misses == 0 && n % self.settings.confirm_every.max(1) as u64 != 0 => {
                (t.next, t.confidence, false, false, 0)
            }
            Some(t) => match self.check(img, t.next) {
                Some((b, score)) => (b, confidence_of(score), true, true, 0),
                // One miss is forgiven (motion blur, a hand): keep following, check again next frame.
                None if t.misses == 0 => (t.next, t.confidence * 0.5, true, false, 1),
                None => {
                    self.track = None;
                    return Face::none(true);
                }
            },
            None => {
                let every = if self.failed_searches >= self.settings.searches_before_idle {
                    self.settings.idle_search_every
                } else {
                    self.settings.search_every
                };
                if self.last_search != 0 && n - self.last_search < every.max(1) as u64 {
                    return Face::none(false);
                }
                self.last_search = n;
                match self.search(img) {
                    Some((b, score)) => {
                        self.failed_searches = 0;
                        (b, confidence_of(score), true, true, 0)
                    }
                    None => {
                        self.failed_searches = self.failed_searches.saturating_add(1);
                        return Face::none(true);
                    }
                }
            }
        };
        let Some(lm) = self.models.landmarks(img, bbox) else {
            self.track = None;
            return Face::none(detected);
        };
        let lb = landmarks::bounds(&lm);
        let (lw, lh) = (lb[2] - lb[0], lb[3] - lb[1]);
        let inside = lm
            .iter()
            .filter(|p| p[0] >= 0.0 && p[1] >= 0.0 && p[0] < img.width() as f32 && p[1] < img.height() as f32)
            .count();
        if lw < 8.0 || lh < 8.0 || inside < 50 {
            self.track = None;
            return Face::none(detected);
        }
        // Carry the box along: when the detector drew it, remember where it sits on the
        // landmarks; otherwise keep the relation found at the last detection.
        let lc = [(lb[0] + lb[2]) / 2.0, (lb[1] + lb[3]) / 2.0];
        let (offset, scale) = match self.track {
            Some(t) if !fresh => (t.offset, t.scale),
            _ => {
                let bc = [(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0];
                ([(bc[0] - lc[0]) / lw, (bc[1] - lc[1]) / lh], [(bbox[2] - bbox[0]) / lw, (bbox[3] - bbox[1]) / lh])
            }
        };
        let (bw, bh) = (scale[0] * lw, scale[1] * lh);
        let (cx, cy) = (lc[0] + offset[0] * lw, lc[1] + offset[1] * lh);
        self.track = Some(Track {
            offset,
            scale,
            next: [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
            confidence,
            misses,
        });
        let pose = pose::estimate(&lm, &Camera::default_for(img.width(), img.height())).unwrap_or_default();
        let features = Features::of(&lm).unwrap_or_default();
        self.baseline.add(features);
        let au = au::estimate(&features, &self.baseline.neutral());
        Face {
            success: true,
            confidence,
            detected,
            bbox: [bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]],
            landmarks: lm,
            pose,
            features,
            au,
        }
    }

    /// The whole-frame search: the best face, `[l, t, r, b]` in frame pixels, and its score.
    fn search(&mut self, img: Gray<'_>) -> Option<([f32; 4], f64)> {
        let scale = (self.settings.search_width as f32 / img.width() as f32).min(1.0);
        self.detect_in(img, [0, 0, img.width(), img.height()], scale, 0.0).into_iter().next()
    }

    /// The check: the detector on a crop twice the face's size around `around`, scaled so the
    /// face is about 90 px; the detection closest to the expected place.
    fn check(&mut self, img: Gray<'_>, around: [f32; 4]) -> Option<([f32; 4], f64)> {
        let (w, h) = (around[2] - around[0], around[3] - around[1]);
        let (cx, cy) = ((around[0] + around[2]) / 2.0, (around[1] + around[3]) / 2.0);
        let side = w.max(h) * 2.0;
        let x0 = (cx - side / 2.0).max(0.0) as usize;
        let y0 = (cy - side / 2.0).max(0.0) as usize;
        let x1 = ((cx + side / 2.0) as usize).min(img.width());
        let y1 = ((cy + side / 2.0) as usize).min(img.height());
        if x1 <= x0 + 16 || y1 <= y0 + 16 {
            return None;
        }
        // Scale so the face is ~90 px (the detector's window is 80); never above 2x.
        let scale = (90.0 / w.max(1.0)).min(2.0);
        if (((x1 - x0) as f32) * scale) < 80.0 || (((y1 - y0) as f32) * scale) < 80.0 {
            return None;
        }
        let dist = |b: &[f32; 4]| ((b[0] + b[2]) / 2.0 - cx).powi(2) + ((b[1] + b[3]) / 2.0 - cy).powi(2);
        self.detect_in(img, [x0, y0, x1, y1], scale, -0.5).into_iter().min_by(|a, b| dist(&a.0).total_cmp(&dist(&b.0)))
    }

    /// The detector on the region `[x0, y0, x1, y1)` of `img` scaled by `scale` (the picture
    /// itself when that is the whole of it at scale 1): each face as `[l, t, r, b]` in `img`'s
    /// pixels, with its score, best first.
    fn detect_in(&mut self, img: Gray<'_>, region: [usize; 4], scale: f32, adjust: f64) -> Vec<([f32; 4], f64)> {
        let [x0, y0, x1, y1] = region;
        let found = if scale == 1.0 && region == [0, 0, img.width(), img.height()] {
            self.detector.detect(img, adjust)
        } else {
            let (w, h) = ((((x1 - x0) as f32) * scale) as usize, (((y1 - y0) as f32) * scale) as usize);
            crate::image::resize(img, region, w, h, &mut self.scratch);
            self.detector.detect(Gray::new(&self.scratch, w, h, w).expect("the buffer holds the picture"), adjust)
        };
        let s = 1.0 / scale;
        let (ox, oy) = (x0 as f32, y0 as f32);
        found
            .iter()
            .map(|d| {
                let b = [
                    ox + d.left as f32 * s,
                    oy + d.top as f32 * s,
                    ox + (d.right + 1) as f32 * s,
                    oy + (d.bottom + 1) as f32 * s,
                ];
                (b, d.score)
            })
            .collect()
    }
}
