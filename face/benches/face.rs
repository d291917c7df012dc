//! Criterion benchmarks of face analysis on one 640x480 grey frame, one thread:
//!
//! - `landmarks 640x480`: the 68-point shape model on the detected face, dlib's predictor
//!   (`dlib`, through the C ABI) against the Rust one (`ert`);
//! - `detect 640x480`: dlib's HOG detector on the whole frame and on a crop twice the face's
//!   size around it (what tracking between detections would search);
//! - `load`: reading the 100 MB model file, dlib's reader against the Rust one;
//! - `analyzer 640x480`: what one analysed frame costs the server's analyser (search,
//!   following, checks, landmarks, pose, AUs; per frame, averaged over its schedule): `face
//!   moving`, the frame shifted along a smooth path (up to ±12 px, a new position every frame);
//!   `no face`, a grey frame with noise (the whole-frame search on its idle schedule).
//!
//! The frame: the annotated face of tests/fixtures/faces/breakingbad.jpg in a 4:3 crop of 1.5x
//! the frame's size, scaled down to 640x480 (the detector's box is 215 pixels wide).
//! Needs `make models` and `make face-data`.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), as in the media
//! benchmarks: what a frame costs one core, robust against the other load of a shared machine
//! (time waiting for memory counts; time the thread is not scheduled does not).
//! `EXPHUB_BENCH_CLOCK=wall` measures wall time instead.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::Criterion;
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

/// The calling thread's CPU time as a criterion measurement, shown in wall time's units.
struct ThreadCpu;

impl ThreadCpu {
    fn now() -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts is a valid timespec to write; the clock exists on Linux.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        Self::now()
    }
    fn end(&self, since: Duration) -> Duration {
        Self::now().saturating_sub(since)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, d: &Duration) -> f64 {
        d.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn main() {
    if std::env::var("EXPHUB_BENCH_CLOCK").is_ok_and(|v| v == "wall") {
        let mut c = Criterion::default().configure_from_args();
        benches(&mut c, "wall");
        c.final_summary();
    } else {
        let mut c = Criterion::default().with_measurement(ThreadCpu).configure_from_args();
        benches(&mut c, "cpu");
        c.final_summary();
    }
}

fn benches<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
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
    let mut g = c.benchmark_group(format!("landmarks 640x480 {clock}"));
    let mut out = vec![0f32; 2 * dlib.parts()];
    g.bench_function("dlib", |bn| bn.iter(|| dlib.predict(black_box(gray), b, &mut out)));
    let rect = face::ffi::Detection { left: b[0], top: b[1], right: b[2], bottom: b[3], score: 0.0 }.rect();
    let mut pts = Vec::new();
    g.bench_function("ert", |bn| bn.iter(|| ours.predict_into(black_box(gray), rect, &mut pts)));
    g.finish();

    let mut detector = Detector::new().expect("dlib's detector");
    let mut g = c.benchmark_group(format!("detect 640x480 {clock}"));
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

    let models = face::Models::load(&common::root().join("models")).expect("the models");
    let mut g = c.benchmark_group(format!("analyzer 640x480 {clock}"));
    let moving: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let t = i as f64 * 0.25;
            let (dx, dy) = ((12.0 * t.sin()).round() as i64, (6.0 * (0.7 * t).sin()).round() as i64);
            let mut f = vec![60u8; W * H];
            for y in 0..H as i64 {
                for x in 0..W as i64 {
                    let (sx, sy) = (x - dx, y - dy);
                    if (0..W as i64).contains(&sx) && (0..H as i64).contains(&sy) {
                        f[(y as usize) * W + x as usize] = pixels[sy as usize * W + sx as usize];
                    }
                }
            }
            f
        })
        .collect();
    let mut analyzer = face::Analyzer::new(models.clone()).expect("an analyser");
    let mut i = 0;
    let mut found = 0u64;
    g.bench_function("face moving", |bn| {
        bn.iter(|| {
            i = (i + 1) % moving.len();
            let f = analyzer.analyze(Gray::new(&moving[i], W, H, W).expect("a frame"));
            found += u64::from(f.success);
        })
    });
    assert!(found > 0, "the analyser follows the face");
    let mut seed = 1u32;
    let noise: Vec<u8> = (0..W * H)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            100 + (seed >> 28) as u8
        })
        .collect();
    let mut empty = face::Analyzer::new(models).expect("an analyser");
    g.bench_function("no face", |bn| bn.iter(|| empty.analyze(Gray::new(&noise, W, H, W).expect("a frame"))));
    g.finish();

    let mut g = c.benchmark_group(format!("load {clock}"));
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("dlib", |bn| bn.iter(|| Predictor::load(black_box(&path)).expect("loads")));
    g.bench_function("ert", |bn| bn.iter(|| ShapeModel::load(black_box(&path)).expect("loads")));
    g.finish();
}
