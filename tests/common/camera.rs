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
