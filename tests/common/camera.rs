//! The test camera: synthetic VP8 pictures with a white marker square and the picture number
//! drawn as 16 bit blocks, published at 30 fps over a real client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exphub::media::codec::{VideoEncoder, VideoSettings};
use exphub::media::rtp::Format;
use exphub_client::Client;
use filters::VideoFrame;

pub const W: usize = 320;
pub const H: usize = 240;
/// The marker square: top-left corner and size.
pub const MX: usize = 40;
pub const MY: usize = 40;
pub const MS: usize = 48;
pub const FPS: u32 = 30;

/// The test camera's picture number `n`: mid-grey, a white square, and `n` in 16 blocks.
pub fn picture(n: u32) -> VideoFrame {
    let mut f = VideoFrame::new(W, H);
    f.fill(128, 128, 128);
    for y in MY..MY + MS {
        f.row_mut(0, y)[MX..MX + MS].fill(235);
    }
    for bit in 0..16 {
        let v = if n >> bit & 1 == 1 { 235 } else { 16 };
        for y in 200..224 {
            f.row_mut(0, y)[bit * 20..bit * 20 + 16].fill(v);
        }
    }
    f
}

/// The picture number in a decoded luma plane of width `w` (`mirrored`: flipped left-right).
pub fn read_number_in(luma: &[u8], w: usize, mirrored: bool) -> u32 {
    (0..16)
        .map(|bit| {
            let x = bit * 20 + 8;
            let x = if mirrored { w - 1 - x } else { x };
            if luma[212 * w + x] > 128 {
                1 << bit
            } else {
                0
            }
        })
        .sum()
}

/// Publishes the test camera at 30 fps; returns the send time of each picture number.
pub fn start_camera(client: Arc<Client>) -> (tokio::task::JoinHandle<()>, Arc<Mutex<HashMap<u32, Instant>>>) {
    start_camera_with(client, Format::Vp8)
}

/// [`start_camera`] encoding with `format` (the client must publish that codec).
pub fn start_camera_with(
    client: Arc<Client>,
    format: Format,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<HashMap<u32, Instant>>>) {
    start_camera_showing(client, format, picture)
}

/// Publishes picture `show(n)` as picture number `n`, at 30 fps.
pub fn start_camera_showing(
    client: Arc<Client>,
    format: Format,
    show: impl Fn(u32) -> VideoFrame + Send + 'static,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<HashMap<u32, Instant>>>) {
    let sent: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let s = sent.clone();
    let task = tokio::spawn(async move {
        let mut enc =
            VideoEncoder::new(format, VideoSettings { bitrate: 600_000, vp8_cpu_used: 16, fps: FPS }).unwrap();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FPS as u64));
        let mut packets = Vec::new();
        for n in 0u32.. {
            tick.tick().await;
            packets.clear();
            // A keyframe every second, like a browser after a PLI storm; the server asks too.
            enc.encode(&show(n), n % 30 == 0, &mut packets).unwrap();
            s.lock().unwrap().insert(n, Instant::now());
            for p in &packets {
                if client.send_video_frame(&p.data, n * (90_000 / FPS)).await.is_err() {
                    return;
                }
            }
        }
    });
    (task, sent)
}

/// The face camera's picture size.
pub const FACE_W: usize = 640;
pub const FACE_H: usize = 480;

/// The face camera: a real, annotated face (`tests/fixtures/faces/takeo.ppm`, from `make
/// face-data`) at twice its size in a 640x480 frame, grey; `smile` (0–1) pulls the lip corners
/// out and up by up to 8 % and 5 % of the eye distance, moving the pixels (a warp around the
/// annotated corners), so an analyser sees a smile it must find by itself.
pub fn face_picture(smile: f32) -> VideoFrame {
    use filters::face::landmarks;
    use std::sync::OnceLock;
    struct Base {
        luma: Vec<u8>,
        lm: landmarks::Landmarks,
    }
    static BASE: OnceLock<Base> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces");
        let ppm = std::fs::read(dir.join("takeo.ppm")).expect("tests/fixtures/faces/takeo.ppm: run `make face-data`");
        // P6 150 225 255\n + RGB bytes.
        let header: Vec<&[u8]> = ppm.splitn(5, |b| b.is_ascii_whitespace()).collect();
        let num = |i: usize| std::str::from_utf8(header[i]).unwrap().parse::<usize>().unwrap();
        let (w, h) = (num(1), num(2));
        let rgb = &ppm[ppm.len() - w * h * 3..];
        let (ox, oy) = ((FACE_W - 2 * w) / 2, (FACE_H - 2 * h) / 2);
        let mut luma = vec![60u8; FACE_W * FACE_H];
        for y in 0..2 * h {
            for x in 0..2 * w {
                let p = &rgb[((y / 2) * w + x / 2) * 3..][..3];
                let v = 16.0 + 0.257 * p[0] as f32 + 0.504 * p[1] as f32 + 0.098 * p[2] as f32;
                luma[(oy + y) * FACE_W + ox + x] = v.round() as u8;
            }
        }
        let pts = std::fs::read_to_string(dir.join("takeo.pts")).expect("takeo.pts");
        let mut lm = landmarks::parse_pts(&pts).expect("takeo.pts parses");
        for p in lm.iter_mut() {
            *p = [p[0] * 2.0 + ox as f32, p[1] * 2.0 + oy as f32];
        }
        Base { luma, lm }
    });
    let mut f = VideoFrame::new(FACE_W, FACE_H);
    f.fill(60, 128, 128);
    // Ten smile levels, each warped once.
    let level = (smile.clamp(0.0, 1.0) * 10.0).round() as usize;
    static LEVELS: OnceLock<Mutex<HashMap<usize, Arc<Vec<u8>>>>> = OnceLock::new();
    let cached = LEVELS.get_or_init(Default::default).lock().unwrap().get(&level).cloned();
    let luma = cached.unwrap_or_else(|| {
        let l = Arc::new(warp_smile(&base.luma, &base.lm, level as f32 / 10.0));
        LEVELS.get().unwrap().lock().unwrap().insert(level, l.clone());
        l
    });
    for y in 0..FACE_H {
        f.row_mut(0, y)[..FACE_W].copy_from_slice(&luma[y * FACE_W..(y + 1) * FACE_W]);
    }
    f
}

/// The face camera's luma with the lip corners pulled by `smile` (see [`face_picture`]).
fn warp_smile(luma: &[u8], lm: &filters::face::Landmarks, smile: f32) -> Vec<u8> {
    use filters::face::landmarks;
    let mut out = luma.to_vec();
    let iod = landmarks::inter_pupil(lm);
    let (l, r) = (lm[landmarks::MOUTH_LEFT], lm[landmarks::MOUTH_RIGHT]);
    let d = landmarks::distance(l, r);
    let (ux, uy) = ((r[0] - l[0]) / d, (r[1] - l[1]) / d);
    let (pull, up) = (0.08 * iod * smile, 0.05 * iod * smile);
    let shifts = [(l, [-ux * pull + uy * up, -uy * pull - ux * up]), (r, [ux * pull + uy * up, uy * pull - ux * up])];
    let sigma2 = 2.0 * (0.12 * iod).powi(2);
    // Only around the mouth: the warp is nil beyond 4 sigma.
    let reach = 4.0 * 0.12 * iod + pull.max(up);
    let (x0, x1) = (((l[0].min(r[0]) - reach).max(0.0)) as usize, ((l[0].max(r[0]) + reach) as usize).min(FACE_W));
    let (y0, y1) = (((l[1].min(r[1]) - reach).max(0.0)) as usize, ((l[1].max(r[1]) + reach) as usize).min(FACE_H));
    if smile == 0.0 {
        return out;
    }
    for y in y0..y1 {
        for x in x0..x1 {
            let (mut dx, mut dy) = (0.0, 0.0);
            for (p, s) in &shifts {
                let k = (-((x as f32 - p[0] - s[0]).powi(2) + (y as f32 - p[1] - s[1]).powi(2)) / sigma2).exp();
                dx += s[0] * k;
                dy += s[1] * k;
            }
            let sx = (x as f32 - dx).round().clamp(0.0, (FACE_W - 1) as f32) as usize;
            let sy = (y as f32 - dy).round().clamp(0.0, (FACE_H - 1) as f32) as usize;
            out[y * FACE_W + x] = luma[sy * FACE_W + sx];
        }
    }
    out
}

/// Records `seconds` of the face camera (smiling every other 2 s) as the recorder would, into
/// `dir/name` (640x480 VP8 at 30 fps, WebM), and returns its manifest entry: `participant`'s
/// raw video of run 1, starting at START.
pub fn record_face_clip(
    dir: &std::path::Path,
    name: &str,
    participant: &str,
    seconds: u32,
) -> exphub::record::FileEntry {
    use exphub::media::mux::{Muxer, TrackInfo};
    let frames = seconds * FPS;
    let info = TrackInfo { format: Format::Vp8, width: FACE_W as u32, height: FACE_H as u32, extradata: vec![] };
    let mut muxer = Muxer::create(&dir.join(name), &info).unwrap();
    let mut enc =
        VideoEncoder::new(Format::Vp8, VideoSettings { bitrate: 600_000, vp8_cpu_used: 16, fps: FPS }).unwrap();
    let mut packets = Vec::new();
    for n in 0..frames {
        packets.clear();
        enc.encode(&face_picture(if n % 120 >= 60 { 1.0 } else { 0.0 }), n % FPS == 0, &mut packets).unwrap();
        let ms = (n as u64 * 1000 / FPS as u64) as i64;
        for p in &packets {
            muxer.write(&p.data, ms, p.keyframe, 1000 / FPS as i64).unwrap();
        }
    }
    muxer.finish().unwrap();
    exphub::record::FileEntry {
        file: name.into(),
        run: 1,
        participant_id: participant.into(),
        kind: "raw".into(),
        media: "video".into(),
        codec: "VP8".into(),
        container: "webm".into(),
        segment: 1,
        start_ms: 0.0,
        width: Some(info.width),
        height: Some(info.height),
        viewers: None,
        filters: None,
        duration_ms: Some(seconds as f64 * 1000.0),
        frames: Some(frames as u64),
        bytes: std::fs::metadata(dir.join(name)).ok().map(|m| m.len()),
        sha256: None,
        complete: true,
        recovered: false,
        error: None,
    }
}
