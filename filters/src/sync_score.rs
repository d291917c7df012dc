//! `SYNC_SCORE_GF`: SynthARium's group filter of smile synchrony, per pair of participants: the
//! OASIS score ([`oasis`](crate::oasis)) of their Duchenne smiles over the last
//! [`SAMPLES`] analysis times.
//!
//! **Individual step** ([`Smile`]), at [`RATE_HZ`]: a participant's smile, SynthARium's way
//! ([`smile`]): the AU12 (lip-corner puller) intensity, 0 to 5, when AU06 (cheek raiser) is
//! present, else 0; no value when no face is found. The face analysis is the SDK's
//! ([`FaceSmile`], on every frame the group's decimator admits); tests paint their action units
//! into frames through another [`SmileSource`].
//!
//! **Aggregator** ([`SyncScore`]), per pair (`Scope::Pairs`), at every analysis time: both
//! members' values on the common grid of the last [`SAMPLES`] analysis times (15 = 2·8 − 1, the
//! fewest OASIS scores with windows of 8), each member's samples interpolated linearly onto it,
//! then [`sync_score`]: the two series min-max normalised, symbolised, OASIS in both
//! directions, the mean. The result: `{"score": 0..1}` (1: the same smile at the same time; less
//! the later the other smiles alike, OASIS weighing an offset of `j` analysis times by
//! `1 - j/8`; 0: no smile in either's first 8 values).
//!
//! SynthARium aligns each member's last 15 values on 15 points spread over the intersection of
//! their two time ranges, however short; here the grid is the last 15 analysis times, which
//! both members' values must cover: a window in which either member has no value (no face, a
//! gap longer than [`MAX_GAP_SAMPLES`] analysis times) gives no result. The analysis rate is
//! ours: SynthARium analyses every frame its pipeline gets to; [`RATE_HZ`] makes a window 1 s
//! and an offset 67 ms.
//!
//! The configuration is SynthARium's: none (`{}`).

use serde_json::{json, Value};

use crate::face::FaceStream;
use crate::group::{
    aggregator, video_step, Aggregator, GroupFilter, MakeVideoStep, Sample, Scope, VideoStep, Window, Windowing,
};
use crate::oasis::{sync_score, OasisParams};
use crate::{Channel, FilterInfo, Listing, ParamError, Params, VideoFrame};

/// Analysis times per second.
pub const RATE_HZ: f64 = 15.0;
/// Values per member in one score (SynthARium's `2 * 8 - 1`).
pub const SAMPLES: usize = 15;
/// Two values further apart than this many analysis times are not interpolated between.
pub const MAX_GAP_SAMPLES: f64 = 3.5;

pub const INFO: FilterInfo = info(video_step::<Smile<FaceSmile>>);

/// The declaration of `SYNC_SCORE_GF` with the individual step `step` ([`INFO`]: a [`Smile`] over
/// the SDK's face analysis).
pub const fn info(step: MakeVideoStep) -> FilterInfo {
    FilterInfo {
        name: "SYNC_SCORE_GF",
        listing: Listing::Session,
        channel: Channel::Video,
        group: Some(GroupFilter { video_step: Some(step), audio_step: None, aggregator: aggregator::<SyncScore> }),
        description: "Smile synchrony per pair (SynthARium's OASIS score of AU12 while AU06 is present).",
        params: &[],
        video: None,
        audio: None,
    }
}

/// SynthARium's smile value: AU12's intensity when AU06 is present, else 0.
pub fn smile(au06_present: bool, au12: f64) -> f64 {
    if au06_present {
        au12
    } else {
        0.0
    }
}

/// The face analysis of one member's frames, as the step needs it.
pub trait SmileSource: Send + Sized {
    /// One per member; `Err` keeps the instance from starting (e.g. no face model).
    fn new() -> Result<Self, ParamError>;
    /// Whether AU06 is present and AU12's intensity (0 to 5) in this frame; `None` when no face
    /// is found.
    fn action_units(&mut self, frame: &VideoFrame) -> Option<(bool, f64)>;
}

/// The SDK's face analysis ([`crate::face`]) of every frame it is given.
pub struct FaceSmile(FaceStream);

impl SmileSource for FaceSmile {
    fn new() -> Result<Self, ParamError> {
        // No rate of its own: the group's decimator picks the frames.
        FaceStream::new(f64::INFINITY).map(FaceSmile)
    }

    fn action_units(&mut self, frame: &VideoFrame) -> Option<(bool, f64)> {
        let face = self.0.update(frame)?;
        face.success.then_some((face.au.au06_c, face.au.au12_r as f64))
    }
}

/// The individual step: a member's [`smile`] per analysed frame, none without a face.
pub struct Smile<S>(S);

impl<S: SmileSource> VideoStep for Smile<S> {
    fn new(_: &Params) -> Result<Self, ParamError> {
        S::new().map(Smile)
    }

    fn step(&mut self, frame: &VideoFrame) -> Option<Sample> {
        let (au06, au12) = self.0.action_units(frame)?;
        Some(Sample::scalar(smile(au06, au12) as f32))
    }
}

/// The aggregator: OASIS over the last [`SAMPLES`] analysis times, per pair.
pub struct SyncScore {
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Aggregator for SyncScore {
    fn new(_: &Params) -> Result<Self, ParamError> {
        debug_assert_eq!(SAMPLES, OasisParams::default().min_len());
        Ok(SyncScore { a: Vec::with_capacity(SAMPLES), b: Vec::with_capacity(SAMPLES) })
    }

    fn windowing(&self) -> Windowing {
        let dt = 1000.0 / RATE_HZ;
        Windowing {
            rate_hz: RATE_HZ,
            window_ms: SAMPLES as f64 * dt,
            step_ms: dt,
            lead_ms: 0.0,
            max_gap_ms: MAX_GAP_SAMPLES * dt,
            scope: Scope::Pairs,
        }
    }

    fn aggregate(&mut self, w: &Window<'_>) -> Option<Value> {
        let complete = |s: &[f32], out: &mut Vec<f64>| {
            out.clear();
            out.extend(s[w.lead.min(s.len())..].iter().map(|&v| v as f64));
            out.len() == SAMPLES && out.iter().all(|v| v.is_finite())
        };
        if !complete(w.series(0, 0), &mut self.a) || !complete(w.series(1, 0), &mut self.b) {
            return None;
        }
        let score = sync_score(&self.a, &self.b);
        score.is_finite().then(|| json!({ "score": score }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{capture_times, run_group, GroupRun, Rng};
    use crate::{U, Y};

    /// A stand-in for the face analysis: a test frame carries its member's action units in its
    /// first pixel (AU12 = (Y - 16) / 40, AU06 present when U > 128); a frame whose Y is 0 has
    /// no face.
    struct Painted;

    impl SmileSource for Painted {
        fn new() -> Result<Self, ParamError> {
            Ok(Painted)
        }
        fn action_units(&mut self, frame: &VideoFrame) -> Option<(bool, f64)> {
            let y = frame.at(Y, 0, 0);
            (y != 0).then(|| (frame.at(U, 0, 0) > 128, (y as f64 - 16.0) / 40.0))
        }
    }

    const PAINTED: FilterInfo = info(video_step::<Smile<Painted>>);

    /// A frame showing `au12` (quantised to 1/40) with AU06 present or not; `None`: no face.
    fn frame(face: Option<(bool, f64)>) -> VideoFrame {
        let mut f = VideoFrame::new(8, 8);
        match face {
            Some((au06, au12)) => {
                f.fill((16.0 + au12 * 40.0).round().clamp(16.0, 235.0) as u8, 128 + 50 * au06 as u8, 128)
            }
            None => f.fill(0, 128, 128),
        }
        f
    }

    /// A smile track at 30 fps: bursts of 0.3 to 0.8 s, 2.5 to 4.5 high, at irregular times
    /// (pauses up to 0.15 s, so that every window has a smile in its first half).
    fn smiles(seed: u64, frames: usize) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(frames);
        while out.len() < frames {
            let (len, height) = ((rng.range(0.3, 0.8) * 30.0) as usize, rng.range(2.5, 4.5));
            out.extend((0..len).map(|k| height * (std::f64::consts::PI * k as f64 / len as f64).sin()));
            out.extend(std::iter::repeat_n(0.0, (rng.range(0.0, 0.15) * 30.0) as usize));
        }
        out.truncate(frames);
        out
    }

    fn delayed(track: &[f64], frames: usize) -> Vec<f64> {
        let mut d = vec![0.0; frames];
        d.extend_from_slice(&track[..track.len() - frames]);
        d
    }

    /// Runs the filter over members given as smile tracks at 30 fps (captured 5 ms after each
    /// analysis time, so the grid interpolates); `face(m, t)` false: no face.
    fn run(tracks: &[Vec<f64>], names: &[&str], face: impl Fn(usize, f64) -> bool) -> GroupRun {
        let times = capture_times(tracks[0].len(), 30.0, 5.0);
        run_group(&PAINTED, &PAINTED.default_params(), names, &times, |m, k| {
            Some(frame(face(m, times[k]).then_some((true, tracks[m][k]))))
        })
        .unwrap()
    }

    fn scores(run: &GroupRun, a: &str, b: &str) -> Vec<f64> {
        run.pair(a, b).iter().map(|r| r.value["score"].as_f64().expect("a score")).collect()
    }

    /// The score of each result, computed again from the members' values at its window's 15
    /// analysis times, each interpolated linearly between the analysed frames around it.
    fn recomputed(run: &GroupRun, a: usize, b: usize, names: &[&str]) -> Vec<f64> {
        let dt = 1000.0 / RATE_HZ;
        let at = |m: usize, g: f64| {
            let s = &run.series[m];
            let i = s.iter().position(|(t, _)| *t >= g)?;
            let ((ta, a), (tb, b)) = (s[i.checked_sub(1)?], s[i]);
            let (a, b, w) = (a?.get(0), b?.get(0), ((g - ta) / (tb - ta)) as f32);
            Some((a + (b - a) * w) as f64)
        };
        run.pair(names[a], names[b])
            .iter()
            .map(|r| {
                let grid =
                    |m| (0..SAMPLES).map(move |i| at(m, r.window_end_ms - (SAMPLES - 1 - i) as f64 * dt).unwrap());
                sync_score(&grid(a).collect::<Vec<_>>(), &grid(b).collect::<Vec<_>>())
            })
            .collect()
    }

    #[test]
    fn smile_is_au12_while_au06_is_present() {
        assert_eq!(smile(true, 2.3), 2.3);
        assert_eq!(smile(false, 2.3), 0.0);
        let mut s = Smile::<Painted>::new(&Params::defaults(&[])).unwrap();
        assert_eq!(s.step(&frame(Some((true, 2.5)))), Some(Sample::scalar(2.5)));
        assert_eq!(s.step(&frame(Some((false, 2.5)))), Some(Sample::scalar(0.0)));
        assert_eq!(s.step(&frame(None)), None);
    }

    /// SynthARium's catalogue entry: a video group filter without configuration.
    #[test]
    fn catalogue_entry_is_synthariums() {
        let e = PAINTED.catalogue_entry();
        assert_eq!(
            (&e["name"], &e["channel"], &e["groupFilter"], &e["config"]),
            (&json!("SYNC_SCORE_GF"), &json!("video"), &json!(true), &json!({}))
        );
        let w = SyncScore::new(&PAINTED.default_params()).unwrap().windowing();
        assert!(w.check().is_ok());
        assert_eq!(((w.window_ms + w.lead_ms) / w.dt_ms()).round() as usize, SAMPLES);
    }

    /// Identical members score 1 in every window, a member smiling the same 4 analysis times
    /// (267 ms) later scores lower, and every result is the score of the two members' values at
    /// its 15 analysis times, pair by pair.
    #[test]
    fn identical_members_score_one_and_a_lagged_one_less() {
        let a = smiles(3, 30 * 30);
        let names = ["a", "same", "lagged"];
        let out = run(&[a.clone(), a.clone(), delayed(&a, 8)], &names, |_, _| true);
        let same = scores(&out, "a", "same");
        // One result per analysis time once 15 are in: 15 per second for 29 s.
        assert!(same.len() >= 14 * 29, "{} results", same.len());
        assert!(same.iter().all(|&s| s == 1.0), "{same:?}");
        let lagged = scores(&out, "a", "lagged");
        assert_eq!(lagged.len(), same.len());
        assert_eq!(lagged, recomputed(&out, 0, 2, &names));
        let mean = lagged.iter().sum::<f64>() / lagged.len() as f64;
        assert!(mean < 0.9 && lagged.iter().all(|&s| (0.0..=1.0).contains(&s)), "mean {mean}");
        assert!(lagged.iter().filter(|&&s| s < 1.0).count() > lagged.len() * 3 / 4, "{lagged:?}");
        assert_eq!(scores(&out, "same", "lagged"), lagged, "same values, same scores");
    }

    /// A member without a face gives no result with anyone; a member whose face is lost for
    /// 2 s gives none for the windows that touch the loss and scores again after it.
    #[test]
    fn no_face_no_result() {
        let a = smiles(5, 20 * 30);
        let names = ["a", "b", "noface", "lost"];
        let lost = |t: f64| (8_000.0..10_000.0).contains(&t);
        let out = run(&[a.clone(), a.clone(), a.clone(), a.clone()], &names, |m, t| match m {
            2 => false,
            3 => !lost(t),
            _ => true,
        });
        assert!(scores(&out, "a", "b").len() > 250);
        assert!(out.pair("a", "noface").is_empty() && out.pair("noface", "lost").is_empty());
        let with_lost = out.pair("a", "lost");
        assert!(
            with_lost.iter().any(|r| r.window_end_ms < 8_000.0) && with_lost.iter().any(|r| r.window_end_ms > 11_000.0)
        );
        for r in with_lost {
            let start = r.window_end_ms - (SAMPLES - 1) as f64 * 1000.0 / RATE_HZ;
            assert!(r.window_end_ms < 8_000.0 || start >= 10_000.0 - 1e-6, "window ending {}", r.window_end_ms);
            assert_eq!(r.value["score"], 1.0);
        }
    }

    /// The annotated photo `tests/fixtures/faces/takeo.ppm` (`make face-data`) as a frame's
    /// luma, at twice its size in the middle of a 640x480 grey picture.
    fn photo() -> VideoFrame {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faces/takeo.ppm");
        let ppm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make face-data`)", path.display()));
        // "P6 <w> <h> 255" and RGB bytes.
        let header: Vec<&[u8]> = ppm.splitn(5, |b| b.is_ascii_whitespace()).collect();
        let num = |i: usize| std::str::from_utf8(header[i]).unwrap().parse::<usize>().unwrap();
        let (w, h) = (num(1), num(2));
        let rgb = &ppm[ppm.len() - w * h * 3..];
        let mut f = VideoFrame::new(640, 480);
        f.fill(60, 128, 128);
        let (ox, oy) = ((640 - 2 * w) / 2, (480 - 2 * h) / 2);
        for y in 0..2 * h {
            for (x, px) in f.row_mut(Y, oy + y)[ox..ox + 2 * w].iter_mut().enumerate() {
                let p = &rgb[((y / 2) * w + x / 2) * 3..][..3];
                *px = (16.0 + 0.257 * p[0] as f32 + 0.504 * p[1] as f32 + 0.098 * p[2] as f32).round() as u8;
            }
        }
        f
    }

    /// The registered step runs the SDK's face analysis (models: `make models`): a value for a
    /// real face, none for a picture without one, and results only for the pair with faces.
    #[test]
    fn the_registered_step_reads_real_faces() {
        let (face, grey) = (photo(), VideoFrame::new(640, 480));
        let mut step = (INFO.group.unwrap().video_step.unwrap())(&INFO.default_params()).unwrap();
        let v = step.step(&face).expect("a face is found").get(0);
        assert!((0.0..=5.0).contains(&v), "{v}");
        // The analyser follows a face it has found and checks it with the detector every few
        // frames: a face that vanishes is gone after a few frames, not necessarily at once.
        let seen: Vec<bool> = (0..8).map(|_| step.step(&grey).is_some()).collect();
        assert!(!seen[7], "{seen:?}");
        let mut fresh = (INFO.group.unwrap().video_step.unwrap())(&INFO.default_params()).unwrap();
        assert_eq!(fresh.step(&grey), None, "no face");
        let times = capture_times(3 * 30, 30.0, 5.0);
        let out = run_group(&INFO, &INFO.default_params(), &["a", "b", "nobody"], &times, |m, _| {
            Some(if m == 2 { grey.clone() } else { face.clone() })
        })
        .unwrap();
        assert!(out.series[0].iter().all(|(_, v)| v.is_some()), "{:?}", out.series[0]);
        assert!(!out.pair("a", "b").is_empty() && out.pair("a", "nobody").is_empty());
    }

    /// AU06 absent: the smile is 0 all along, nothing to compare, score 0.
    #[test]
    fn without_au06_there_is_no_smile_to_compare() {
        let a = smiles(9, 5 * 30);
        let times = capture_times(a.len(), 30.0, 5.0);
        let out = run_group(&PAINTED, &PAINTED.default_params(), &["a", "b"], &times, |m, k| {
            Some(frame(Some((m == 0, a[k]))))
        })
        .unwrap();
        let s = scores(&out, "a", "b");
        assert!(!s.is_empty() && s.iter().all(|&s| s == 0.0), "{s:?}");
    }
}
