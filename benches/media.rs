//! Criterion benchmarks of the media pipeline's pieces at 640x480, per frame:
//!
//! - `codec 640x480`: VP8 (the server's default `VideoSettings`), H.264 (x264) decode and
//!   encode, Opus 20 ms decode and encode;
//! - `pipeline VP8 640x480`: what the worker does per frame, built from the public pieces:
//!   - `codec: dec+enc`: decode + encode of the assembled frame (the codec's own cost);
//!   - `no filters: rtp+dec+enc+rtp`: `FrameAssembler` → `VideoDecoder` → `VideoEncoder` →
//!     `Packetizer` (frame handling without filters);
//!   - `handling: rtp in+out`: `FrameAssembler` → `Packetizer` of the same frame, no codec:
//!     frame handling measured alone (the difference of the two rows above is within their
//!     run-to-run noise);
//!   - `full: rtp+dec+rot+edge+enc+rtp`: the same with a `VideoChain` of ROTATION (45°/s) +
//!     EDGE_OUTLINE between decode and encode: the worker's loop;
//!   - `chain: rot+edge`: the chain alone on the decoded pictures (plus one frame copy);
//!   - `decode-only: rtp+dec+MOTION_SYNC step`: a group filter member whose stream is forwarded
//!     unprocessed: assembly, decode and MOTION_SYNC's individual step at 15 Hz, no encode (the
//!     analysis branch's whole cost per frame);
//!   - `copy: chain input`: that frame copy alone (the worker does not make it for one output:
//!     subtract it from `chain: rot+edge` for the chain's own cost);
//! - `worker VP8 640x480 (wall)`: the real `Pipeline` worker thread with ROTATION+EDGE_OUTLINE,
//!   fed at 30 fps: a frame's packets in → its packets out, wall time per frame (what
//!   `exphub_pipeline_latency_seconds` sees on an idle machine, minus the forwarder's hops).
//!
//! Two sources, both 640x480 at 30 fps, 120 frames looped:
//! - `clip`: tests/fixtures/clip-640x480-vp8.ivf (ffmpeg's `testsrc`: colour bars with a few
//!   moving elements, i.e. mostly static — cheap to encode), as a browser would send it
//!   (packetized by the webrtc crate's VP8 payloader, like the load tool);
//! - `camera`: a synthetic camera-like scene: a room (smooth wall, a bookshelf of sharp-edged
//!   bars) panning 1 px/frame, a person-sized ellipse swaying in front of it, a small object
//!   crossing fast, ±3 sensor noise on every sample; encoded once with the server's own VP8
//!   settings to make the incoming stream (what a browser would send).
//!
//! `EXPHUB_BENCH_DUMP=/some/dir` also writes both sources, as decoded and after the filters, as
//! Y4M files (to look at them, or to compare encoder settings with `ffmpeg -lavfi psnr`).
//!
//! Time is **thread CPU time** (`CLOCK_THREAD_CPUTIME_ID`) of the benchmark thread by default:
//! every codec here runs on the calling thread (one slice thread), so this is the CPU a frame
//! costs, and it is robust against other load on this shared machine. Set
//! `EXPHUB_BENCH_CLOCK=wall` for wall time. The real-worker group is always wall time.
//!
//! ```text
//! cargo bench --bench media                                  # everything, ~4 min
//! cargo bench --bench media -- --warm-up-time 1 --measurement-time 3 pipeline
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use exphub::media::codec::{AudioDecoder, AudioEncoder, Encoded, VideoDecoder, VideoEncoder, VideoSettings};
use exphub::media::pipeline::{Pipeline, PipelineConfig, ToForwarder};
use exphub::media::rtp::{Format, FrameAssembler, Packetizer, RtpIn, RtpOut};
use exphub::media::ToHub;
use exphub_client::Media;
use filters::{AudioFrame, Budget, Decimator, FilterSpec, VideoChain, VideoFrame};
use serde_json::json;

const W: usize = 640;
const H: usize = 480;
const FRAMES: usize = 120;
const TS_STEP: u32 = 3000; // 90 kHz / 30 fps
const MTU: usize = 1200;

// ---------------------------------------------------------------------------------------------
// Thread CPU time as a criterion measurement.

struct ThreadCpu;

/// The chain's input: a decoded picture copied into the frame the chain works on.
fn copy_picture(frame: &mut VideoFrame, src: &VideoFrame) {
    frame.copy_from_planes(
        src.width(),
        src.height(),
        [src.plane(0), src.plane(1), src.plane(2)],
        [src.stride(0), src.stride(1), src.stride(2)],
    );
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match ns {
            n if n < 1e3 => (1.0, "ns cpu"),
            n if n < 1e6 => (1e3, "µs cpu"),
            n if n < 1e9 => (1e6, "ms cpu"),
            _ => (1e9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => *n as f64,
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/s cpu"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

// ---------------------------------------------------------------------------------------------
// Sources.

/// One encoded stream: its frames and the RTP packets of each frame.
struct Stream {
    frames: Vec<Bytes>,
    /// Per frame: (marker, payload) of each packet.
    packets: Vec<Vec<(bool, Bytes)>>,
}

struct Source {
    name: &'static str,
    /// The decoded/raw pictures, pts at 30 fps.
    pictures: Vec<VideoFrame>,
    /// The same pictures after ROTATION(45°/s)+EDGE_OUTLINE, as the pipeline encodes them.
    filtered: Vec<VideoFrame>,
    vp8: Stream,
    h264: Stream,
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn specs() -> Vec<FilterSpec> {
    vec![FilterSpec::new("rot", "ROTATION", json!({"angle": 45})), FilterSpec::new("edge", "EDGE_OUTLINE", json!({}))]
}

fn chain() -> VideoChain {
    let mut c = VideoChain::new(Budget::VIDEO);
    c.apply(&specs()).expect("valid filter list");
    c
}

fn pts(i: usize) -> Duration {
    Duration::from_nanos(i as u64 * 1_000_000_000 / 30)
}

/// Frames out of RTP packets, through the server's own assembler.
fn assemble(format: Format, packets: &[Vec<(bool, Bytes)>]) -> Vec<Bytes> {
    let mut a = FrameAssembler::new(format);
    let mut seq = 1000u16;
    a.push(RtpIn { seq, timestamp: u32::MAX, marker: true, payload: Bytes::new(), arrival: Instant::now() });
    let mut out = vec![];
    for (i, frame) in packets.iter().enumerate() {
        for (marker, payload) in frame {
            seq = seq.wrapping_add(1);
            let p = RtpIn {
                seq,
                timestamp: i as u32 * TS_STEP,
                marker: *marker,
                payload: payload.clone(),
                arrival: Instant::now(),
            };
            out.extend(a.push(p).into_iter().map(|f| f.data));
        }
    }
    assert_eq!(out.len(), packets.len(), "every frame assembles");
    out
}

/// Encodes `pictures` with the server's settings and packetizes them with its packetizer.
fn encode_stream(format: Format, pictures: &[VideoFrame]) -> Stream {
    let mut enc = VideoEncoder::new(format, VideoSettings::default()).expect("encoder");
    let mut pk = Packetizer::new(format, MTU);
    let mut frames = vec![];
    let mut packets = vec![];
    for (i, p) in pictures.iter().enumerate() {
        let mut e = vec![];
        enc.encode(p, i == 0, &mut e).expect("encode");
        assert_eq!(e.len(), 1);
        let mut out = vec![];
        pk.packetize(&e[0].data, 0, &mut out);
        packets.push(out.into_iter().map(|o: RtpOut| (o.marker, o.payload)).collect());
        frames.push(e[0].data.clone());
    }
    Stream { frames, packets }
}

fn decode_all(format: Format, frames: &[Bytes]) -> Vec<VideoFrame> {
    let mut dec = VideoDecoder::new(format).expect("decoder");
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut out = VideoFrame::new(2, 2);
            assert!(dec.decode(f, &mut out).expect("decode"), "frame {i} decodes");
            out.pts = pts(i);
            out
        })
        .collect()
}

fn filter_all(pictures: &[VideoFrame]) -> Vec<VideoFrame> {
    let mut c = chain();
    pictures
        .iter()
        .map(|p| {
            let mut f = p.clone();
            c.process(&mut f);
            c.drain_events().for_each(drop);
            f
        })
        .collect()
}

fn clip_source() -> Source {
    let media = Media::load(&fixtures().join("clip-640x480-vp8.ivf"), &fixtures().join("clip-opus.ogg"))
        .expect("fixtures load");
    let packets: Vec<Vec<(bool, Bytes)>> =
        media.video.iter().map(|f| f.iter().map(|p| (p.header.marker, p.payload.clone())).collect()).collect();
    let frames = assemble(Format::Vp8, &packets);
    let pictures = decode_all(Format::Vp8, &frames);
    assert_eq!((pictures[0].width(), pictures[0].height()), (W, H));
    let filtered = filter_all(&pictures);
    let h264 = encode_stream(Format::H264, &pictures);
    Source { name: "clip", pictures, filtered, vp8: Stream { frames, packets }, h264 }
}

/// Frame `t` of a camera-like scene: a room (smooth shading, a bookshelf of sharp-edged bars)
/// panning 1 px per frame, a person-sized ellipse swaying in front of it, a small object
/// crossing quickly, and ±3 sensor noise on every sample.
fn camera_picture(t: usize, seed: &mut u64) -> VideoFrame {
    let mut f = VideoFrame::new(W, H);
    let mut rnd = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let pan = t as f32;
    // The person: an ellipse swaying left and right (±40 px over 4 s), with a soft shading.
    let (px0, py0) = (320.0 + 40.0 * (t as f32 * std::f32::consts::TAU / 120.0).sin(), 300.0);
    let (ox, oy) = ((t * 9) % (W + 60), 90usize);
    let luma = |x: usize, y: usize| -> f32 {
        let (xf, yf) = (x as f32, y as f32);
        let (dx, dy) = ((xf - px0) / 130.0, (yf - py0) / 190.0);
        let r2 = dx * dx + dy * dy;
        if r2 < 1.0 {
            return 150.0 + 40.0 * (1.0 - r2) - 25.0 * dx; // lit from the left
        }
        if x + 60 >= ox && x < ox && (oy..oy + 40).contains(&y) {
            return 220.0;
        }
        // Room coordinates.
        let sx = xf + pan;
        // Bookshelf on the left third: bars 14-30 px wide with their own brightness.
        if (60.0..260.0).contains(&(sx % 900.0)) && (80.0..380.0).contains(&yf) {
            let bar = (sx % 900.0 - 60.0) as usize / 18;
            let shelf = (yf as usize - 80) / 100;
            let h = ((bar * 2654435761 + shelf * 40503) >> 7) % 90;
            return 50.0 + h as f32;
        }
        // Wall: smooth light gradient and a soft shadow.
        95.0 + 30.0 * (sx / 210.0).sin() + 20.0 * (yf / 150.0 + sx / 400.0).cos()
    };
    for y in 0..H {
        let row = f.row_mut(0, y);
        for (x, px) in row.iter_mut().take(W).enumerate() {
            let noise = (rnd() % 7) as i32 - 3;
            *px = (luma(x, y) as i32 + noise).clamp(16, 235) as u8;
        }
    }
    for p in 1..3 {
        for y in 0..H / 2 {
            let row = f.row_mut(p, y);
            for (x, px) in row.iter_mut().take(W / 2).enumerate() {
                let (dx, dy) = ((2.0 * x as f32 - px0) / 130.0, (2.0 * y as f32 - py0) / 190.0);
                let skin = dx * dx + dy * dy < 1.0;
                let base = match (p, skin) {
                    (1, true) => 110,
                    (2, true) => 150,
                    (1, false) => 124 + ((2.0 * x as f32 + pan) / 60.0).sin() as i32 * 6,
                    _ => 132,
                };
                let noise = (rnd() % 3) as i32 - 1;
                *px = (base + noise).clamp(16, 240) as u8;
            }
        }
    }
    f.pts = pts(t);
    f
}

/// Writes pictures as a Y4M file (for a look, or for `ffmpeg -lavfi psnr`).
fn write_y4m(path: &Path, pictures: &[VideoFrame]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg")?;
    for f in pictures {
        out.write_all(b"FRAME\n")?;
        for p in 0..3 {
            for r in 0..f.plane_height(p) {
                out.write_all(&f.row(p, r)[..f.plane_width(p)])?;
            }
        }
    }
    Ok(())
}

fn camera_source() -> Source {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let raw: Vec<VideoFrame> = (0..FRAMES).map(|t| camera_picture(t, &mut seed)).collect();
    // The server receives what a browser's encoder made; ours at the server's settings stands
    // in for it, and the pipeline decodes that.
    let vp8 = encode_stream(Format::Vp8, &raw);
    let pictures = decode_all(Format::Vp8, &vp8.frames);
    let filtered = filter_all(&pictures);
    let h264 = encode_stream(Format::H264, &pictures);
    Source { name: "camera", pictures, filtered, vp8, h264 }
}

// ---------------------------------------------------------------------------------------------
// Codec benchmarks.

/// A decoder that walks a looped stream (every stream starts with a keyframe).
fn bench_decode<M: Measurement>(
    g: &mut criterion::BenchmarkGroup<'_, M>,
    id: BenchmarkId,
    format: Format,
    frames: &[Bytes],
) {
    let mut dec = VideoDecoder::new(format).expect("decoder");
    let mut out = VideoFrame::new(2, 2);
    let mut i = 0usize;
    g.bench_function(id, |b| {
        b.iter(|| {
            let got = dec.decode(&frames[i % frames.len()], &mut out).expect("decode");
            i += 1;
            black_box(got)
        })
    });
}

fn bench_encode<M: Measurement>(
    g: &mut criterion::BenchmarkGroup<'_, M>,
    id: BenchmarkId,
    format: Format,
    pictures: &[VideoFrame],
) {
    let mut enc = VideoEncoder::new(format, VideoSettings::default()).expect("encoder");
    let mut out: Vec<Encoded> = Vec::with_capacity(2);
    let mut i = 0usize;
    let mut bytes = 0usize;
    g.bench_function(id, |b| {
        b.iter(|| {
            out.clear();
            enc.encode(&pictures[i % pictures.len()], i == 0, &mut out).expect("encode");
            bytes += out.iter().map(|e| e.data.len()).sum::<usize>();
            i += 1;
        })
    });
    if i > 0 {
        eprintln!(
            "    ({} frames encoded, mean {:.0} kbit/s at 30 fps)",
            i,
            bytes as f64 * 8.0 * 30.0 / i as f64 / 1000.0
        );
    }
}

fn codecs<M: Measurement>(c: &mut Criterion<M>, sources: &[Source], clock: &str) {
    let mut g = c.benchmark_group(format!("codec 640x480 ({clock})"));
    for s in sources {
        bench_decode(&mut g, BenchmarkId::new("vp8 decode", s.name), Format::Vp8, &s.vp8.frames);
    }
    for s in sources {
        bench_encode(&mut g, BenchmarkId::new("vp8 encode", s.name), Format::Vp8, &s.pictures);
        bench_encode(&mut g, BenchmarkId::new("vp8 encode", format!("{}+rot+edge", s.name)), Format::Vp8, &s.filtered);
    }
    for s in sources {
        bench_decode(&mut g, BenchmarkId::new("h264 decode", s.name), Format::H264, &s.h264.frames);
        bench_encode(&mut g, BenchmarkId::new("h264 encode", s.name), Format::H264, &s.pictures);
    }

    // Opus, 20 ms stereo 48 kHz: the fixture's packets, and its decoded samples re-encoded.
    let media = Media::load(&fixtures().join("clip-640x480-vp8.ivf"), &fixtures().join("clip-opus.ogg"))
        .expect("fixtures load");
    let opus: Vec<Bytes> = media.audio.iter().map(|p| p.payload.clone()).collect();
    let mut adec = AudioDecoder::new().expect("opus decoder");
    let pcm: Vec<AudioFrame> = opus
        .iter()
        .filter_map(|p| {
            let mut f = AudioFrame::new(2, 960, 48_000);
            adec.decode(p, &mut f).ok()?.then_some(f)
        })
        .collect();
    let mut adec = AudioDecoder::new().expect("opus decoder");
    let mut out = AudioFrame::new(2, 960, 48_000);
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("opus decode 20ms", "clip"), |b| {
        b.iter(|| {
            let got = adec.decode(&opus[i % opus.len()], &mut out).expect("decode");
            i += 1;
            black_box(got)
        })
    });
    let mut aenc = AudioEncoder::new(2, 64_000).expect("opus encoder");
    let mut packets = Vec::with_capacity(2);
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("opus encode 20ms", "clip"), |b| {
        b.iter(|| {
            packets.clear();
            aenc.encode(&pcm[i % pcm.len()], &mut packets).expect("encode");
            i += 1;
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// The pipeline's per-frame work, piece by piece.

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// decode + encode of the assembled frame: the codec's own cost.
    CodecOnly,
    /// assemble + decode + encode + packetize: frame handling, no filters.
    NoFilters,
    /// assemble + packetize (the incoming frame as the output): frame handling alone.
    Handling,
    /// assemble + decode + ROTATION + EDGE_OUTLINE + encode + packetize: the worker's loop.
    Full,
}

/// The worker's state (as in `media::pipeline::run` for video), driven one source frame at a time.
struct Rig<'a> {
    stream: &'a Stream,
    variant: Variant,
    assembler: FrameAssembler,
    decoder: VideoDecoder,
    chain: Option<VideoChain>,
    encoder: VideoEncoder,
    packetizer: Packetizer,
    picture: VideoFrame,
    encoded: Vec<Encoded>,
    i: usize,
    seq: u16,
    epoch: Instant,
    force_key: bool,
    /// Frames in / packets out, to check the rig does what it claims.
    frames_out: usize,
    packets_out: usize,
}

impl<'a> Rig<'a> {
    fn new(stream: &'a Stream, variant: Variant) -> Self {
        let mut assembler = FrameAssembler::new(Format::Vp8);
        // A previous frame's marker, so the first packet starts a frame (as mid-stream).
        assembler.push(RtpIn {
            seq: 999,
            timestamp: u32::MAX,
            marker: true,
            payload: Bytes::new(),
            arrival: Instant::now(),
        });
        Rig {
            stream,
            variant,
            assembler,
            decoder: VideoDecoder::new(Format::Vp8).expect("decoder"),
            chain: (variant == Variant::Full).then(chain),
            encoder: VideoEncoder::new(Format::Vp8, VideoSettings::default()).expect("encoder"),
            packetizer: Packetizer::new(Format::Vp8, MTU),
            picture: VideoFrame::new(2, 2),
            encoded: Vec::with_capacity(2),
            i: 0,
            seq: 999,
            epoch: Instant::now(),
            force_key: true,
            frames_out: 0,
            packets_out: 0,
        }
    }

    fn encode_and_send(&mut self, timestamp: u32) {
        self.encoded.clear();
        self.encoder.encode(&self.picture, std::mem::take(&mut self.force_key), &mut self.encoded).expect("encode");
        if self.variant == Variant::CodecOnly {
            self.frames_out += self.encoded.len();
            return;
        }
        let mut packets = Vec::new();
        for e in &self.encoded {
            self.packetizer.packetize(&e.data, timestamp, &mut packets);
        }
        self.sent(packets);
    }

    /// One frame's packets, as the worker hands them to the forwarder.
    fn sent(&mut self, packets: Vec<RtpOut>) {
        self.frames_out += 1;
        self.packets_out += packets.len();
        black_box(packets);
    }

    /// One source frame through the rig.
    fn step(&mut self) {
        let k = self.i % self.stream.frames.len();
        let timestamp = (self.i as u32).wrapping_mul(TS_STEP);
        self.i += 1;
        if self.variant == Variant::CodecOnly {
            let got = self.decoder.decode(&self.stream.frames[k], &mut self.picture).expect("decode");
            assert!(got);
            self.encode_and_send(timestamp);
            return;
        }
        for (marker, payload) in &self.stream.packets[k] {
            self.seq = self.seq.wrapping_add(1);
            let p =
                RtpIn { seq: self.seq, timestamp, marker: *marker, payload: payload.clone(), arrival: Instant::now() };
            for frame in self.assembler.push(p) {
                assert!(!frame.after_loss, "no loss in the rig");
                if self.variant == Variant::Handling {
                    let mut packets = Vec::new();
                    self.packetizer.packetize(&frame.data, frame.timestamp, &mut packets);
                    self.sent(packets);
                    continue;
                }
                if !self.decoder.decode(&frame.data, &mut self.picture).expect("decode") {
                    continue;
                }
                black_box(frame.arrival.elapsed());
                // The worker stamps arrival time; frames here come back to back, so stamp the
                // 30 fps they would arrive at (ROTATION turns by 1.5° per frame, as live).
                black_box(frame.arrival.duration_since(self.epoch));
                self.picture.pts = pts(self.i);
                if let Some(c) = &mut self.chain {
                    c.process(&mut self.picture);
                    c.drain_events().for_each(drop);
                }
                self.encode_and_send(frame.timestamp);
            }
        }
    }
}

fn pipeline<M: Measurement>(c: &mut Criterion<M>, sources: &[Source], clock: &str) {
    let mut g = c.benchmark_group(format!("pipeline VP8 640x480 ({clock})"));
    for s in sources {
        for (name, variant) in [
            ("codec: dec+enc", Variant::CodecOnly),
            ("no filters: rtp+dec+enc+rtp", Variant::NoFilters),
            ("handling: rtp in+out", Variant::Handling),
            ("full: rtp+dec+rot+edge+enc+rtp", Variant::Full),
        ] {
            let mut rig = Rig::new(&s.vp8, variant);
            g.bench_function(BenchmarkId::new(name, s.name), |b| b.iter(|| rig.step()));
            assert!(rig.frames_out + 2 >= rig.i, "{name}: {} frames out of {}", rig.frames_out, rig.i);
        }
        // A group filter member whose stream is forwarded: the decode-only analysis branch
        // (frame assembly, decode, MOTION_SYNC's individual step at its 15 Hz).
        let info = filters::find("MOTION_SYNC").expect("MOTION_SYNC");
        let make = info.group.and_then(|g| g.video_step).expect("a video step");
        let mut step = make(&info.default_params()).expect("default parameters");
        let mut decimator = Decimator::new(15.0);
        let mut assembler = FrameAssembler::new(Format::Vp8);
        let mut decoder = VideoDecoder::new(Format::Vp8).expect("decoder");
        let mut picture = VideoFrame::new(2, 2);
        let (mut i, mut seq) = (0usize, 0u16);
        g.bench_function(BenchmarkId::new("decode-only: rtp+dec+MOTION_SYNC step", s.name), |b| {
            b.iter(|| {
                let k = i % s.vp8.frames.len();
                let timestamp = (i as u32).wrapping_mul(TS_STEP);
                let t_ms = i as f64 * 1000.0 / 30.0;
                i += 1;
                for (marker, payload) in &s.vp8.packets[k] {
                    seq = seq.wrapping_add(1);
                    let p =
                        RtpIn { seq, timestamp, marker: *marker, payload: payload.clone(), arrival: Instant::now() };
                    for frame in assembler.push(p) {
                        if decoder.decode(&frame.data, &mut picture).expect("decode") && decimator.admit(t_ms) {
                            black_box(step.step(&picture));
                        }
                    }
                }
            })
        });
        // The chain alone on the decoded pictures (pts advancing at 30 fps).
        let mut ch = chain();
        let mut frame = VideoFrame::new(W, H);
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("chain: rot+edge", s.name), |b| {
            b.iter(|| {
                copy_picture(&mut frame, &s.pictures[i % s.pictures.len()]);
                frame.pts = pts(i);
                i += 1;
                ch.process(&mut frame);
                ch.drain_events().for_each(drop);
            })
        });
        // The same copy without the chain.
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("copy: chain input", s.name), |b| {
            b.iter(|| {
                copy_picture(&mut frame, &s.pictures[i % s.pictures.len()]);
                i += 1;
                black_box(&frame);
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// The real worker thread (wall time: packets in on this thread, packets out from the worker).

/// CPU time (ns) of this process's thread named `name` (`/proc/self/task/*/schedstat`).
fn named_thread_cpu_ns(name: &str) -> Option<u64> {
    let want: String = name.chars().take(15).collect(); // the kernel keeps 15 bytes
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == want {
            let s = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
            return s.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

fn worker(c: &mut Criterion<WallTime>, sources: &[Source]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let mut g = c.benchmark_group("worker VP8 640x480 (wall)");
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    for s in sources {
        let (to_fwd, mut from_worker) = tokio::sync::mpsc::unbounded_channel::<ToForwarder>();
        let (to_hub, _hub_rx) = tokio::sync::mpsc::unbounded_channel::<ToHub>();
        let config = PipelineConfig { main: specs(), ..Default::default() };
        let name = format!("bench-{}", s.name);
        let pipe = Pipeline::spawn(Format::Vp8, config, to_fwd, to_hub, name.clone()).expect("spawn");
        let mut seq = 999u16;
        pipe.push(RtpIn { seq, timestamp: u32::MAX, marker: true, payload: Bytes::new(), arrival: Instant::now() });
        let mut i = 0usize;
        let mut one_frame = |i: &mut usize| -> bool {
            let k = *i % s.vp8.packets.len();
            let timestamp = (*i as u32).wrapping_mul(TS_STEP);
            *i += 1;
            for (marker, payload) in &s.vp8.packets[k] {
                seq = seq.wrapping_add(1);
                pipe.push(RtpIn { seq, timestamp, marker: *marker, payload: payload.clone(), arrival: Instant::now() });
            }
            rt.block_on(async {
                loop {
                    match tokio::time::timeout(Duration::from_secs(2), from_worker.recv()).await {
                        Ok(Some(ToForwarder::Packets(_, p))) => return !p.is_empty(),
                        Ok(Some(ToForwarder::NeedKeyframe)) => continue,
                        Ok(None) | Err(_) => return false,
                    }
                }
            })
        };
        // The first frame is a keyframe: output flows from the first frame on.
        assert!(one_frame(&mut i), "the worker produces a frame");
        // Paced at 30 fps like a live stream (the worker sleeps between frames, and ROTATION's
        // angle follows arrival time); only push → receive is timed.
        let mut next = Instant::now();
        let (cpu0, i0) = (named_thread_cpu_ns(&format!("media-{name}")), i);
        g.bench_function(BenchmarkId::new("30fps rtp in→out, rot+edge", s.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    next += Duration::from_nanos(1_000_000_000 / 30);
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                    let t = Instant::now();
                    assert!(one_frame(&mut i), "the worker produces a frame");
                    total += t.elapsed();
                }
                total
            })
        });
        // The worker thread's own CPU per frame at this pace (vs the hot loops above).
        if let (Some(a), Some(b), true) = (cpu0, named_thread_cpu_ns(&format!("media-{name}")), i > i0) {
            let frames = (i - i0) as f64;
            let ms = (b - a) as f64 / 1e6 / frames;
            eprintln!(
                "    (worker thread CPU: {ms:.2} ms/frame over {frames} frames = {:.1}% of a core at 30 fps)",
                ms * 3.0
            );
        }
        drop(pipe);
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let t = Instant::now();
    let sources = [clip_source(), camera_source()];
    eprintln!("sources ready in {:.1} s", t.elapsed().as_secs_f64());
    if let Ok(dir) = std::env::var("EXPHUB_BENCH_DUMP") {
        // The sources as the pipeline decodes them, and after the filters.
        for s in &sources {
            for (tag, pics) in [("", &s.pictures), ("-rot-edge", &s.filtered)] {
                let path = Path::new(&dir).join(format!("{}{tag}.y4m", s.name));
                write_y4m(&path, pics).expect("write y4m");
                eprintln!("wrote {}", path.display());
            }
        }
    }
    let wall_everywhere = std::env::var("EXPHUB_BENCH_CLOCK").is_ok_and(|v| v == "wall");
    if wall_everywhere {
        let mut c = Criterion::default().configure_from_args();
        codecs(&mut c, &sources, "wall");
        pipeline(&mut c, &sources, "wall");
        worker(&mut c, &sources);
        c.final_summary();
    } else {
        let mut c = Criterion::default().with_measurement(ThreadCpu).configure_from_args();
        codecs(&mut c, &sources, "thread CPU");
        pipeline(&mut c, &sources, "thread CPU");
        c.final_summary();
        let mut w = Criterion::default().configure_from_args();
        worker(&mut w, &sources);
        w.final_summary();
    }
}
