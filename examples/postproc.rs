//! Post-processing speed: how much faster than real time the face analysis of a recording runs
//! (`POST_PROCESSING_VIDEO`, `exphub analyze --faces`: `record::faces::analyze`).
//!
//! ```text
//! cargo run --release --example postproc -- [--seconds 30]
//! ```
//!
//! It records a clip as the server would (`tests/common/camera.rs`'s `record_face_clip`): the
//! test face camera (a real annotated photo at 640x480, smiling every other 2 s by a warp of its
//! lip corners), encoded at 30 fps with the test camera's VP8 settings and written with the
//! recorder's muxer into a temporary directory, listed as a participant's raw video. Then it times, on this
//! thread:
//!
//! - decoding alone (every frame, the same decoder), and
//! - the whole post-processing: decode, face analysis of every frame, the neutral face, the
//!   AU estimates, the CSV (written and hashed),
//!
//! and prints frames per second (wall and this thread's CPU time) and the real-time factor
//! (recorded seconds per second of processing). The machine may be shared: the CPU-time
//! figures are the robust ones, the wall-time figures say what a user waits.

#[path = "../tests/common/camera.rs"]
#[allow(dead_code)]
mod camera;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use exphub::media::codec::VideoDecoder;
use exphub::media::mux;
use exphub::media::rtp::Format;
use exphub::record::{faces, Manifest};

use camera::FPS;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let mut seconds = 30u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("exphub-postproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let frames = seconds * FPS;

    // The recording.
    let name = "p_raw_video_1-1.webm";
    let mut m = Manifest::new("s");
    m.files.push(camera::record_face_clip(&dir, name, "p", seconds));
    let bytes = m.files[0].bytes.unwrap_or(0);
    println!("clip: {seconds} s, {frames} frames of 640x480 VP8 at {FPS} fps, {} kB", bytes / 1000);

    // Decoding alone.
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let mut dec = VideoDecoder::new(Format::Vp8).unwrap();
    let mut pic = filters::VideoFrame::new(2, 2);
    let mut decoded = 0u32;
    mux::read_packets(&dir.join(name), |_, data| {
        if let Ok(true) = dec.decode(data, &mut pic) {
            decoded += 1;
        }
    })
    .unwrap();
    report("decode only", decoded, seconds, wall.elapsed(), thread_cpu() - cpu);

    // The whole post-processing (the models are loaded before the clock starts).
    filters::face::Models::shared().expect("the face models (make models)");
    let targets = faces::targets(&m, None);
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let report_ = faces::analyze(&dir, &targets, &mut |_, _| ControlFlow::Continue(())).unwrap();
    let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
    let a = &report_.written[0];
    report("post-processing", a.frames as u32, seconds, wall, cpu);
    println!(
        "  {} rows, {} with a face, CSV {} kB ({})",
        a.frames,
        a.faces_found,
        a.bytes / 1000,
        Path::new(&a.file).display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(what: &str, frames: u32, seconds: u32, wall: Duration, cpu: Duration) {
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / frames.max(1) as f64;
    println!(
        "{what:>16}: {frames} frames in {:.2} s wall ({:.0} fps, {:.2} ms/frame, {:.1}x real time); \
         CPU {:.2} s ({:.0} fps, {:.2} ms/frame, {:.1}x real time)",
        wall.as_secs_f64(),
        frames as f64 / wall.as_secs_f64(),
        per(wall),
        seconds as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        frames as f64 / cpu.as_secs_f64(),
        per(cpu),
        seconds as f64 / cpu.as_secs_f64(),
    );
}
