//! The Rust shape model against dlib's own predictor on the test photos, and what it says about
//! files that are not a model. Needs `make models` and `make face-data`.

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use common::{annotation, model_path, photo, Picture, PHOTOS};
use face::ert::{ModelError, Rect, ShapeModel};
use face::ffi::{Detector, Predictor};

/// dlib's predictor and ours, loaded once from the same file.
fn models() -> &'static (Predictor, ShapeModel) {
    static MODELS: OnceLock<(Predictor, ShapeModel)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let path = model_path();
        let dlib = Predictor::load(&path).expect("dlib loads the model");
        let t = Instant::now();
        let ours = ShapeModel::load(&path).expect("the Rust reader loads the model");
        eprintln!("ShapeModel::load: {:.0} ms (this build's profile)", t.elapsed().as_secs_f64() * 1e3);
        (dlib, ours)
    })
}

/// The largest distance between dlib's landmarks and ours for the face in `b` (dlib's inclusive
/// pixel box: left, top, right, bottom), and how many of ours do not round to dlib's.
fn compare(pic: &Picture, b: [i64; 4]) -> (f32, usize) {
    let (dlib, ours) = models();
    let mut theirs = vec![0f32; 2 * dlib.parts()];
    assert!(dlib.predict(pic.gray(), b, &mut theirs), "dlib predicts in {}", pic.name);
    let rect = Rect { left: b[0] as f32, top: b[1] as f32, right: b[2] as f32, bottom: b[3] as f32 };
    let mine = ours.predict(pic.gray(), rect);
    assert_eq!(mine.len(), dlib.parts());
    let worst = mine.iter().zip(theirs.chunks(2)).map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1])).fold(0.0, f32::max);
    let round = |v: f32| (v + 0.5).floor();
    let off = mine.iter().zip(theirs.chunks(2)).filter(|(p, q)| round(p[0]) != q[0] || round(p[1]) != q[1]).count();
    (worst, off)
}

/// Boxes around a face box: itself, moved, shrunk and grown, and pushed half out of the image.
fn variants(b: [i64; 4], pic: &Picture) -> Vec<[i64; 4]> {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let mut out = vec![b];
    for (dx, dy) in [(7, 5), (-6, 3), (4, -8)] {
        out.push([b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy]);
    }
    for (num, den) in [(9, 10), (23, 20)] {
        let (gw, gh) = ((w * num / den - w) / 2, (h * num / den - h) / 2);
        out.push([b[0] - gw, b[1] - gh, b[2] + gw, b[3] + gh]);
    }
    // Half over the left edge, and past the bottom-right corner.
    out.push([-w / 2, b[1], w / 2, b[3]]);
    let (x, y) = (pic.width as i64 - w / 3, pic.height as i64 - h / 3);
    out.push([x, y, x + w, y + h]);
    out
}

#[test]
fn ert_places_the_landmarks_where_dlib_does() {
    let mut detector = Detector::new().expect("dlib's detector");
    let (mut boxes_checked, mut worst, mut off_by_rounding) = (0, 0f32, 0);
    for name in PHOTOS {
        let pic = photo(name);
        let mut faces: Vec<[i64; 4]> =
            detector.detect(pic.gray(), 0.0).iter().map(|d| [d.left, d.top, d.right, d.bottom]).collect();
        // The annotated face's own box too, in case the detector misses it.
        if let Some(pts) = annotation(name) {
            let (xs, ys) = (pts.iter().map(|p| p[0]), pts.iter().map(|p| p[1]));
            let min = |it: &mut dyn Iterator<Item = f32>| it.fold(f32::MAX, f32::min) as i64;
            let max = |it: &mut dyn Iterator<Item = f32>| it.fold(f32::MIN, f32::max) as i64;
            faces.push([min(&mut xs.clone()), min(&mut ys.clone()), max(&mut xs.clone()), max(&mut ys.clone())]);
        }
        assert!(!faces.is_empty(), "no face box in {name}");
        for face in faces {
            for b in variants(face, &pic) {
                let (d, off) = compare(&pic, b);
                assert!(d <= 0.75, "{name}, box {b:?}: a landmark {d:.3} px from dlib's");
                worst = worst.max(d);
                off_by_rounding += off;
                boxes_checked += 1;
            }
        }
    }
    eprintln!(
        "{boxes_checked} boxes, every landmark within {worst:.3} px of dlib's (which rounds to pixels); \
         {off_by_rounding} of {} do not round to dlib's",
        boxes_checked * 68
    );
}

#[test]
fn a_crop_with_the_frame_s_stride_gives_the_same_landmarks() {
    let (_, ours) = models();
    let pic = photo("lenna.png");
    let rect = Rect { left: 210.0, top: 200.0, right: 390.0, bottom: 380.0 };
    let whole = ours.predict(pic.gray(), rect);
    // The crop starts at (100, 50) and keeps the photo's rows: a view, not a copy.
    let (x0, y0) = (100, 50);
    let crop = face::Gray::new(&pic.pixels[y0 * pic.width + x0..], 400, 400, pic.width).expect("inside");
    let moved = Rect {
        left: rect.left - x0 as f32,
        top: rect.top - y0 as f32,
        right: rect.right - x0 as f32,
        bottom: rect.bottom - y0 as f32,
    };
    let cropped = ours.predict(crop, moved);
    for (p, q) in whole.iter().zip(&cropped) {
        assert!((p[0] - (q[0] + x0 as f32)).abs() < 1e-3 && (p[1] - (q[1] + y0 as f32)).abs() < 1e-3, "{p:?} vs {q:?}");
    }
}

#[test]
fn the_model_is_shared_between_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<ShapeModel>();
    let (_, ours) = models();
    assert_eq!(ours.num_parts(), 68);
    let pic = photo("lenna.png");
    let rect = Rect { left: 200.0, top: 200.0, right: 380.0, bottom: 380.0 };
    let alone = ours.predict(pic.gray(), rect);
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| ours.predict(pic.gray(), rect))).collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    assert!(together.iter().all(|p| *p == alone));
}

#[test]
fn files_that_are_not_a_model_are_typed_errors() {
    let bytes = std::fs::read(model_path()).expect("the model file");
    let missing = ShapeModel::load(&common::root().join("models/no-such-model.dat"));
    assert!(matches!(missing, Err(ModelError::Io(ref e)) if e.kind() == std::io::ErrorKind::NotFound), "{missing:?}");
    for cut in [1, 1000, bytes.len() / 2, bytes.len() - 1] {
        let r = ShapeModel::from_bytes(&bytes[..cut]);
        assert!(matches!(r, Err(ModelError::Truncated { .. })), "cut at {cut}: {r:?}");
    }
    // The version is the first integer: control byte 1, then the value 1.
    assert_eq!(&bytes[..2], [1, 1]);
    let mut v2 = bytes[..4096].to_vec();
    v2[1] = 2;
    let r = ShapeModel::from_bytes(&v2);
    assert!(matches!(r, Err(ModelError::Version(2))), "{r:?}");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let random: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let r = ShapeModel::from_bytes(&random);
    assert!(
        matches!(r, Err(ModelError::Version(_) | ModelError::Encoding { .. } | ModelError::Truncated { .. })),
        "{r:?}"
    );
    // A valid start followed by random bytes.
    let mut tail = bytes[..200_000].to_vec();
    tail.extend(&random);
    assert!(ShapeModel::from_bytes(&tail).is_err());
}

/// The mean landmark error against the photos' annotations, over the distance between the outer
/// eye corners (points 37 and 46 of the iBUG layout), as 300-W reports it: the model's accuracy,
/// which ert keeps (it must not be worse than dlib's own, rounded, landmarks).
#[test]
fn ert_is_as_near_the_annotations_as_dlib() {
    let (dlib, ours) = models();
    let mut detector = Detector::new().expect("dlib's detector");
    let mut checked = 0;
    for name in PHOTOS {
        let Some(truth) = annotation(name) else { continue };
        assert_eq!(truth.len(), 68, "{name}.pts");
        let pic = photo(name);
        let (cx, cy) = truth.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0] / 68.0, y + p[1] / 68.0));
        // The detection around the annotated face (the detector's boxes are what the model was
        // trained on), with a low threshold: one of the faces is turned away.
        let faces = detector.detect(pic.gray(), -1.0);
        let face = faces
            .iter()
            .find(|d| (d.left as f32..=d.right as f32).contains(&cx) && (d.top as f32..=d.bottom as f32).contains(&cy))
            .unwrap_or_else(|| panic!("the annotated face of {name} is detected"));
        let ocular = face::landmarks::inter_ocular(&truth);
        let error = |pts: &[[f32; 2]]| {
            pts.iter().zip(&truth).map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1])).sum::<f32>() / 68.0 / ocular
        };
        let mine = error(&ours.predict(pic.gray(), face.rect()));
        let mut flat = vec![0f32; 136];
        assert!(dlib.predict(pic.gray(), [face.left, face.top, face.right, face.bottom], &mut flat));
        let theirs = error(&flat.chunks(2).map(|p| [p[0], p[1]]).collect::<Vec<_>>());
        eprintln!("{name}: mean error / inter-ocular distance ({ocular:.0} px): ert {mine:.4}, dlib {theirs:.4}");
        assert!(mine <= theirs + 0.002, "{name}: ert {mine:.4}, dlib {theirs:.4}");
        assert!(mine < 0.12, "{name}: mean error {mine:.3} of the inter-ocular distance");
        checked += 1;
    }
    assert_eq!(checked, 3, "three annotated photos");
}
