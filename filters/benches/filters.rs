//! Criterion benchmarks: every registered video filter at 640x480 and 1280x720, every audio
//! filter on 20 ms stereo frames, and ROTATION + EDGE_OUTLINE together (the target: under 2 ms
//! at 640x480), both directly and through a `VideoChain` (which adds timing and panic guards).
//!
//! `ROTATION luma 30°` compares ROTATION's portable, AVX2 and AVX-512 kernels.
//!
//! Group filters: `group step` times each group filter's individual step (per 640x480 frame or
//! 20 ms block); `group aggregation 8 members` times one step of `Aggregation` (pushing every
//! member's values for one step interval, then `advance`) for 8 members (28 pairs) with full
//! windows at the default parameters (SYNC_SCORE_GF: one OASIS score per pair every 66.7 ms). Share of a core = time per step / the step interval.
//!
//! Run briefly with `cargo bench -p filters -- --warm-up-time 1 --measurement-time 2`.
//! Each iteration processes a fresh copy of a gradient frame (the copy is not timed), with
//! `pts` advancing at 30 fps so time-based filters (ROTATION, DELAY) do real work.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use filters::testing::Rng;
use filters::testing::{self, Harness};
use filters::{AudioChain, Budget, FilterSpec, Sample, VideoChain, VideoFrame};
use serde_json::json;

fn video_filters(c: &mut Criterion) {
    for (w, h) in [(640, 480), (1280, 720)] {
        let mut g = c.benchmark_group(format!("video {w}x{h}"));
        let src = testing::gradient(w, h);
        // FAULT_TEST panics on purpose after a few frames: nothing to measure, and it would
        // abort the whole run.
        for info in filters::catalogue().iter().filter(|f| f.video.is_some() && f.name != "FAULT_TEST") {
            let make = info.video.expect("filtered on video");
            let mut f = make(&info.default_params()).expect("defaults build");
            let mut harness = Harness::new();
            let mut i = 0u64;
            g.bench_function(BenchmarkId::from_parameter(info.name), |b| {
                b.iter_batched_ref(
                    || {
                        let mut fr = src.clone();
                        i += 1;
                        fr.pts = Duration::from_micros(i * 33_333);
                        fr
                    },
                    |fr| {
                        harness.process(&mut *f, fr);
                        harness.events.clear();
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }
}

fn audio_filters(c: &mut Criterion) {
    let mut g = c.benchmark_group("audio 20 ms stereo");
    let src = testing::sine_frames(220.0, 0.3, 2, 1).remove(0);
    for info in filters::catalogue().iter().filter(|f| f.audio.is_some()) {
        let make = info.audio.expect("filtered on audio");
        let mut f = make(&info.default_params()).expect("defaults build");
        // AUDIO_PITCH at its default (0 semitones) skips the search: bench a real shift.
        if info.name == "AUDIO_PITCH" {
            f = make(&info.default_params().with("semitones", 5)).expect("valid");
        }
        let mut harness = Harness::new();
        let mut i = 0u64;
        g.bench_function(BenchmarkId::from_parameter(info.name), |b| {
            b.iter_batched_ref(
                || {
                    let mut fr = src.clone();
                    i += 1;
                    fr.pts = Duration::from_millis(i * 20);
                    fr
                },
                |fr| {
                    harness.process(&mut *f, fr);
                    harness.events.clear();
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn rotation_plus_edges(c: &mut Criterion) {
    let mut g = c.benchmark_group("ROTATION+EDGE_OUTLINE 640x480");
    let src = testing::gradient(640, 480);
    let next = |i: &mut u64| {
        let mut fr: VideoFrame = src.clone();
        *i += 1;
        fr.pts = Duration::from_micros(*i * 33_333);
        fr
    };

    let rot = filters::find("ROTATION").unwrap();
    let edge = filters::find("EDGE_OUTLINE").unwrap();
    let mut r = (rot.video.unwrap())(&rot.default_params()).unwrap();
    let mut e = (edge.video.unwrap())(&edge.default_params()).unwrap();
    let mut harness = Harness::new();
    let mut i = 0u64;
    g.bench_function("direct", |b| {
        b.iter_batched_ref(
            || next(&mut i),
            |fr| {
                // As in a chain: ROTATION is told that EDGE_OUTLINE overwrites chroma.
                harness.ctx.set_chroma_discarded(true);
                harness.process(&mut *r, fr);
                harness.ctx.set_chroma_discarded(false);
                harness.process(&mut *e, fr);
                harness.events.clear();
            },
            BatchSize::LargeInput,
        )
    });

    let mut chain = VideoChain::new(Budget::VIDEO);
    chain
        .apply(&[
            FilterSpec::new("r", "ROTATION", json!({"angle": 45})),
            FilterSpec::new("e", "EDGE_OUTLINE", json!({})),
        ])
        .expect("valid list");
    let mut i = 0u64;
    g.bench_function("VideoChain", |b| {
        b.iter_batched_ref(
            || next(&mut i),
            |fr| {
                chain.process(fr);
                chain.drain_events().for_each(drop);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("AudioChain 20 ms stereo");
    let mut chain = AudioChain::new(Budget::AUDIO);
    chain
        .apply(&[
            FilterSpec::new("st", "SPEAKING_TIME", json!({})),
            FilterSpec::new("p", "AUDIO_PITCH", json!({"semitones": -4})),
            FilterSpec::new("d", "DELAY", json!({"delay_ms": 200})),
        ])
        .expect("valid list");
    let src = testing::sine_frames(220.0, 0.3, 2, 1).remove(0);
    g.bench_function("SPEAKING_TIME+AUDIO_PITCH+DELAY", |b| {
        b.iter_batched_ref(
            || src.clone(),
            |fr| {
                chain.process(fr);
                chain.drain_events().for_each(drop);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// ROTATION's kernels on the luma plane at a fixed 30° (those this CPU and build run).
fn rotation_kernels(c: &mut Criterion) {
    use filters::rotation::{rotate, Kernel, Scratch};
    let mut g = c.benchmark_group("ROTATION luma 30° 640x480");
    let src = testing::gradient(640, 480);
    let kernels = [("portable", Kernel::Portable), ("avx2", Kernel::Avx2), ("avx512", Kernel::Avx512)];
    for (name, kernel) in kernels.into_iter().filter(|(_, k)| k.supported()) {
        let mut scratch = Scratch::default();
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || src.clone(),
                |fr| rotate(fr, 30.0, &[filters::Y], &mut scratch, kernel),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// Each group filter's individual step: video on 640x480 frames of a moving box (so that the
/// motion is real), audio on 20 ms stereo blocks.
fn group_steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("group step");
    let frames = [testing::moving_box(640, 480, 0), testing::moving_box(640, 480, 3)];
    let block = testing::sine_frames(220.0, 0.3, 2, 1).remove(0);
    for info in filters::catalogue().iter().filter(|f| f.is_group()) {
        let group = info.group.expect("filtered on group");
        let p = info.default_params();
        if let Some(make) = group.video_step {
            let mut step = make(&p).expect("defaults build");
            let mut i = 0;
            g.bench_function(BenchmarkId::new(info.name, "640x480"), |b| {
                b.iter(|| {
                    i += 1;
                    step.step(&frames[i % 2])
                })
            });
        }
        if let Some(make) = group.audio_step {
            let mut step = make(&p).expect("defaults build");
            g.bench_function(BenchmarkId::new(info.name, "20 ms stereo"), |b| b.iter(|| step.step(&block)));
        }
    }
    g.finish();
}

/// One step of the aggregation of 8 members (28 pairs), windows full, default parameters:
/// push one step interval of every member's values (random, at the analysis rate, with
/// capture-time jitter), then advance.
fn group_aggregation(c: &mut Criterion) {
    let mut g = c.benchmark_group("group aggregation 8 members");
    for name in ["MOTION_SYNC", "SPEECH_SYNC", "SYNC_SCORE_GF"] {
        let info = filters::find(name).expect("registered");
        let mut agg = filters::Aggregation::new(&info.group.expect("a group filter"), &info.default_params())
            .expect("defaults build");
        let members: Vec<String> = (0..8).map(|m| format!("m{m}")).collect();
        agg.set_members(&members);
        let w = *agg.windowing();
        let dt = w.dt_ms();
        let mut rng = Rng::new(1);
        let mut t = 0.0f64;
        let mut out = Vec::new();
        let push_until = |agg: &mut filters::Aggregation, until: f64, t: &mut f64, rng: &mut Rng| {
            while *t < until {
                for m in &members {
                    let v = [(rng.uniform() < 0.3) as u8 as f32, rng.range(-60.0, -10.0) as f32];
                    let v = match name {
                        "MOTION_SYNC" => Sample::scalar(rng.uniform() as f32),
                        "SYNC_SCORE_GF" => Sample::scalar(rng.range(0.0, 5.0) as f32),
                        _ => Sample::new(&v),
                    };
                    agg.push(m, *t + rng.range(0.0, 2.0), Some(v));
                }
                *t += dt;
            }
        };
        // Fill the first windows, then time one step at a time.
        let mut end = ((w.window_ms + w.lead_ms) / w.step_ms).ceil() * w.step_ms + w.step_ms;
        push_until(&mut agg, end, &mut t, &mut rng);
        agg.advance(end - w.step_ms, &mut out);
        out.clear();
        g.bench_function(BenchmarkId::new(name, format!("step {} ms", (w.step_ms * 10.0).round() / 10.0)), |b| {
            b.iter(|| {
                push_until(&mut agg, end + w.step_ms, &mut t, &mut rng);
                agg.advance(end, &mut out);
                end += w.step_ms;
                assert_eq!(out.len(), 28, "one result per pair and step");
                out.clear();
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    video_filters,
    audio_filters,
    rotation_plus_edges,
    rotation_kernels,
    group_steps,
    group_aggregation
);
criterion_main!(benches);
