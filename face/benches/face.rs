//! Criterion benchmarks of face analysis on one 640x480 grey frame (wall time, one thread):
//!
//! - `landmarks 640x480`: the 68-point shape model on the detected face, dlib's predictor
//!   (`dlib`, through the C ABI) against the Rust one (`ert`);
//! - `detect 640x480`: dlib's HOG detector on the whole frame and on a crop twice the face's
//!   size around it (what tracking between detections would search);
//! - `load`: reading the 100 MB model file, dlib's reader against the Rust one.
//!
//! The frame: the annotated face of tests/fixtures/faces/breakingbad.jpg in a 4:3 crop of 1.5x
//! the frame's size, scaled down to 640x480 (a face of about 170 pixels, as in a video call).
//! Needs `make models` and `make face-data`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use face::ert::ShapeModel;
use face::ffi::{Detector, Predictor};
use face::Gray;

const W: usize = 640;
const H: usize = 480;

/// The benchmark frame (640x480, stride 640) and dlib's box of the face in it.
fn frame() -> (Vec<u8>, [i64; 4]) {
    let name = "breakingbad.jpg";
    let pts = common::annotation(name).expect("breakingbad.pts");
    let (cx, cy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0] / 68.0, y + p[1] / 68.0));
    let img = image::open(common::root().join("tests/fixtures/faces").join(name)).expect("the photo").to_luma8();
    let (cw, ch) = (W as u32 * 3 / 2, H as u32 * 3 / 2);
    let x0 = (cx as u32).saturating_sub(cw / 2).min(img.width() - cw);
    let y0 = (cy as u32).saturating_sub(ch / 2).min(img.height() - ch);
    let crop = image::imageops::crop_imm(&img, x0, y0, cw, ch).to_image();
    let pixels = image::imageops::resize(&crop, W as u32, H as u32, image::imageops::FilterType::Triangle).into_raw();
    let gray = Gray::new(&pixels, W, H, W).expect("a whole frame");
    let faces = Detector::new().expect("dlib's detector").detect(gray, 0.0);
    let f = faces.first().expect("a face in the benchmark frame");
    let b = [f.left, f.top, f.right, f.bottom];
    (pixels, b)
}

fn benches(c: &mut Criterion) {
    let path = common::model_path();
    let (pixels, b) = frame();
    let gray = Gray::new(&pixels, W, H, W).expect("a whole frame");
    eprintln!(
        "face box {b:?} ({}x{} px) in the {W}x{H} frame; dlib variant: {}",
        b[2] - b[0],
        b[3] - b[1],
        face::ffi::variant()
    );

    let dlib = Predictor::load(&path).expect("dlib loads the model");
    let ours = ShapeModel::load(&path).expect("ert loads the model");
    let mut g = c.benchmark_group("landmarks 640x480");
    let mut out = vec![0f32; 2 * dlib.parts()];
    g.bench_function("dlib", |bn| bn.iter(|| dlib.predict(black_box(gray), b, &mut out)));
    let rect = face::ffi::Detection { left: b[0], top: b[1], right: b[2], bottom: b[3], score: 0.0 }.rect();
    let mut pts = Vec::new();
    g.bench_function("ert", |bn| bn.iter(|| ours.predict_into(black_box(gray), rect, &mut pts)));
    g.finish();

    let mut detector = Detector::new().expect("dlib's detector");
    let mut g = c.benchmark_group("detect 640x480");
    g.bench_function("dlib full frame", |bn| bn.iter(|| detector.detect(black_box(gray), 0.0)));
    // Twice the face's width and height, centred on it, clipped to the frame.
    let (w, h) = (b[2] - b[0] + 1, b[3] - b[1] + 1);
    let x0 = (b[0] - w / 2).clamp(0, W as i64) as usize;
    let y0 = (b[1] - h / 2).clamp(0, H as i64) as usize;
    let (cw, ch) = ((2 * w as usize).min(W - x0), (2 * h as usize).min(H - y0));
    let crop = Gray::new(&pixels[y0 * W + x0..], cw, ch, W).expect("a crop inside the frame");
    assert!(!detector.detect(crop, 0.0).is_empty(), "the face is found in its crop");
    g.bench_function("dlib crop 2x face", |bn| bn.iter(|| detector.detect(black_box(crop), 0.0)));
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("dlib", |bn| bn.iter(|| Predictor::load(black_box(&path)).expect("loads")));
    g.bench_function("ert", |bn| bn.iter(|| ShapeModel::load(black_box(&path)).expect("loads")));
    g.finish();
}

criterion_group!(face_benches, benches);
criterion_main!(face_benches);
