//! Proves the media pipeline end to end over real WebRTC on loopback: a participant publishes
//! synthetic VP8 pictures (a white marker square and the frame number drawn as bit blocks),
//! another participant decodes what the server sends and checks pixels: filters change the
//! picture (EDGE_OUTLINE, MIRROR), a live parameter change shows within 5 frames, DELAY of
//! 300 ms is measured at the receiver within one frame interval, muting keeps the resolution,
//! and removing the filters returns to plain forwarding.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::camera::*;
use common::*;
use exphub::media::codec::VideoDecoder;
use exphub::media::rtp::{Format, FrameAssembler, RtpIn};
use exphub::media::Kind;
use exphub::peer::VideoCodec;
use exphub_client::{Client, ClientOptions};
use filters::VideoFrame;
use serde_json::{json, Value};

fn read_number(f: &Decoded) -> u32 {
    (0..16).map(|bit| if f.y(bit * 20 + 8, 212) > 128 { 1 << bit } else { 0 }).sum()
}

/// A decoded picture as a viewer got it.
struct Decoded {
    at: Instant,
    w: usize,
    h: usize,
    luma: Vec<u8>,
}

impl Decoded {
    fn y(&self, x: usize, y: usize) -> u8 {
        self.luma[y * self.w + x]
    }
    fn mean(&self, x0: usize, y0: usize, w: usize, h: usize) -> f64 {
        let mut s = 0u64;
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                s += self.y(x, y) as u64;
            }
        }
        s as f64 / (w * h) as f64
    }
}

type Pictures = Arc<Mutex<HashMap<String, Vec<Decoded>>>>;
/// Per origin: the viewer's assembler, decoder and last picture.
type Decoders = Arc<Mutex<HashMap<String, (FrameAssembler, VideoDecoder, VideoFrame)>>>;

/// Client options that decode every video stream a viewer receives.
fn decoding_viewer() -> (Pictures, ClientOptions) {
    decoding_viewer_for(Format::Vp8)
}

/// A viewer that decodes `format` (the publishers' codec).
fn decoding_viewer_for(format: Format) -> (Pictures, ClientOptions) {
    let pictures: Pictures = Arc::default();
    let decoders: Decoders = Arc::default();
    let out = pictures.clone();
    let opts = ClientOptions {
        on_rtp: Some(Arc::new(move |origin, kind, p, at| {
            if kind != Kind::Video {
                return;
            }
            let name = origin_name(origin);
            let mut d = decoders.lock().unwrap();
            let (asm, dec, pic) = d.entry(name.clone()).or_insert_with(|| {
                (FrameAssembler::new(format), VideoDecoder::new(format).unwrap(), VideoFrame::new(2, 2))
            });
            let rtp = RtpIn {
                seq: p.header.sequence_number,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                payload: p.payload.clone(),
                arrival: at,
            };
            for frame in asm.push(rtp) {
                if let Ok(true) = dec.decode(&frame.data, pic) {
                    let mut luma = Vec::with_capacity(pic.width() * pic.height());
                    for y in 0..pic.height() {
                        luma.extend_from_slice(&pic.row(0, y)[..pic.width()]);
                    }
                    out.lock().unwrap().entry(name.clone()).or_default().push(Decoded {
                        at: frame.arrival,
                        w: pic.width(),
                        h: pic.height(),
                        luma,
                    });
                }
            }
        })),
        ..Default::default()
    };
    (pictures, opts)
}

fn count_pictures(pics: &Pictures, from: &str) -> usize {
    pics.lock().unwrap().get(from).map_or(0, |v| v.len())
}

/// Waits for a picture from `from` (after index `after`) satisfying `pred`; returns how many
/// pictures came before it (after `after`).
async fn wait_picture(pics: &Pictures, from: &str, after: usize, pred: impl Fn(&Decoded) -> bool) -> Option<usize> {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if let Some(v) = pics.lock().unwrap().get(from) {
            if let Some(i) = v.iter().skip(after).position(&pred) {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn filter(name: &str, id: &str, config: Value) -> Value {
    json!({"name": name, "id": id, "channel": "video", "groupFilter": false, "config": config})
}

async fn set_video_filters(exp: &mut Client, pid: &str, filters: Value) {
    let ok = request(
        exp,
        "SET_FILTERS",
        json!({"participant_id": pid, "audio_filters": [], "video_filters": filters}),
        "SUCCESS",
    )
    .await;
    assert_success(&ok, "SET_FILTERS");
}

struct Setup {
    srv: TestServer,
    exp: Client,
    publisher: Arc<Client>,
    viewer: Client,
    pics: Pictures,
    camera: tokio::task::JoinHandle<()>,
    sent: Arc<Mutex<HashMap<u32, Instant>>>,
}

async fn setup() -> Setup {
    setup_with(Format::Vp8).await
}

/// The publisher sends `format` (VP8 or H.264); the viewer decodes it.
async fn setup_with(format: Format) -> Setup {
    let srv = TestServer::start().await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let codec = if format == Format::H264 { VideoCodec::H264 } else { VideoCodec::Vp8 };
    let publishing = ClientOptions { video_codec: codec, ..Default::default() };
    let publisher = Arc::new(participant(&srv.base, PARTICIPANTS[0], publishing).await);
    let (pics, opts) = decoding_viewer_for(format);
    let viewer = participant(&srv.base, PARTICIPANTS[1], opts).await;
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let (camera, sent) = start_camera_with(publisher.clone(), format);
    assert!(wait_picture(&pics, PARTICIPANTS[0], 0, |_| true).await.is_some(), "the viewer decodes the publisher");
    Setup { srv, exp, publisher, viewer, pics, camera, sent }
}

impl Setup {
    async fn end(self) {
        self.camera.abort();
        self.viewer.close().await;
        if let Ok(p) = Arc::try_unwrap(self.publisher) {
            p.close().await;
        }
        self.exp.close().await;
        self.srv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_change_what_the_others_see_and_can_be_removed() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    // Forwarded as sent: a bright marker on grey.
    let plain = |d: &Decoded| {
        d.mean(MX + 8, MY + 8, MS - 16, MS - 16) > 200.0 && (d.mean(150, 100, 40, 40) - 128.0).abs() < 15.0
    };
    assert!(wait_picture(&s.pics, p0, 0, plain).await.is_some(), "unfiltered picture arrives");

    // EDGE_OUTLINE: white edges on black; the marker's inside goes dark, its border bright.
    set_video_filters(&mut s.exp, p0, json!([filter("EDGE_OUTLINE", "e1", json!({}))])).await;
    let n = count_pictures(&s.pics, p0);
    let outlined = |d: &Decoded| {
        d.mean(MX + 8, MY + 8, MS - 16, MS - 16) < 60.0
            && d.mean(150, 100, 40, 40) < 60.0
            && (MY + 8..MY + MS - 8).map(|y| d.y(MX, y).max(d.y(MX - 1, y)).max(d.y(MX + 1, y))).all(|v| v > 150)
    };
    assert!(wait_picture(&s.pics, p0, n, outlined).await.is_some(), "EDGE_OUTLINE reaches the viewer");
    let size = s.pics.lock().unwrap()[p0].last().map(|d| (d.w, d.h));
    assert_eq!(size, Some((W, H)), "filters keep the picture size");

    // MIRROR: the marker moves to the other side.
    set_video_filters(&mut s.exp, p0, json!([filter("MIRROR", "m1", json!({}))])).await;
    let n = count_pictures(&s.pics, p0);
    let mirrored = |d: &Decoded| {
        d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16) > 200.0 && d.mean(MX + 8, MY + 8, MS - 16, MS - 16) < 150.0
    };
    assert!(wait_picture(&s.pics, p0, n, mirrored).await.is_some(), "MIRROR reaches the viewer");

    // No filters: back to forwarding the publisher's own frames.
    set_video_filters(&mut s.exp, p0, json!([])).await;
    let n = count_pictures(&s.pics, p0);
    assert!(wait_picture(&s.pics, p0, n, plain).await.is_some(), "unfiltered again");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_turns_the_picture_the_others_see() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    // Half a turn per second: the corners go black at once, and every two seconds the picture
    // is upside down (within 3°, a frame being 6°): the marker is point-reflected.
    set_video_filters(
        &mut s.exp,
        p0,
        json!([filter("ROTATION", "r1", json!({"direction": "anti-clockwise", "angle": 180}))]),
    )
    .await;
    let n = count_pictures(&s.pics, p0);
    let turned = |d: &Decoded| d.mean(0, 0, 6, 6) < 40.0 && d.mean(W - 6, H - 6, 6, 6) < 40.0;
    assert!(wait_picture(&s.pics, p0, n, turned).await.is_some(), "ROTATION reaches the viewer");
    let (rx, ry) = (W - MX - MS, H - MY - MS);
    let upside_down = |d: &Decoded| {
        d.mean(rx + 8, ry + 8, MS - 16, MS - 16) > 200.0 && d.mean(MX + 8, MY + 8, MS - 16, MS - 16) < 150.0
    };
    assert!(wait_picture(&s.pics, p0, n, upside_down).await.is_some(), "half a turn: the marker point-reflected");
    let size = s.pics.lock().unwrap()[p0].last().map(|d| (d.w, d.h));
    assert_eq!(size, Some((W, H)), "ROTATION keeps the picture size");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_publisher_is_forwarded_and_filtered_in_h264() {
    // The publisher offers H.264 only: the server forwards it, and transcodes it (decode,
    // filter, encode with x264) when it has a filter.
    let mut s = setup_with(Format::H264).await;
    let p0 = PARTICIPANTS[0];
    let plain = |d: &Decoded| d.mean(MX + 8, MY + 8, MS - 16, MS - 16) > 200.0;
    assert!(wait_picture(&s.pics, p0, 0, plain).await.is_some(), "forwarded H.264 decodes at the viewer");
    set_video_filters(&mut s.exp, p0, json!([filter("MIRROR", "m1", json!({}))])).await;
    let n = count_pictures(&s.pics, p0);
    let mirrored = |d: &Decoded| {
        d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16) > 200.0 && d.mean(MX + 8, MY + 8, MS - 16, MS - 16) < 150.0
    };
    assert!(wait_picture(&s.pics, p0, n, mirrored).await.is_some(), "MIRROR on H.264 reaches the viewer");
    // The processed stream keeps going: a second later, newer pictures are still mirrored.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pics = s.pics.lock().unwrap()[p0].iter().skip(n).filter(|d| mirrored(d)).count();
    assert!(pics >= 20, "{pics} mirrored H.264 pictures in a second");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_parameter_change_shows_within_five_frames() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    // Just right of the marker: grey without blur, lighter when the marker's white bleeds in.
    let (px, py) = (MX + MS + 3, MY + MS / 2);
    set_video_filters(&mut s.exp, p0, json!([filter("BLUR", "b1", json!({"strength": 0}))])).await;
    let n = count_pictures(&s.pics, p0);
    let sharp = |d: &Decoded| (d.y(px, py) as i32 - 128).abs() < 12 && d.mean(MX + 8, MY + 8, MS - 16, MS - 16) > 200.0;
    assert!(wait_picture(&s.pics, p0, n, sharp).await.is_some(), "BLUR 0 leaves the edge sharp");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Same id and name: the instance is kept and gets the new strength from the next frame.
    set_video_filters(&mut s.exp, p0, json!([filter("BLUR", "b1", json!({"strength": 20}))])).await;
    let n = count_pictures(&s.pics, p0);
    let blurred = |d: &Decoded| d.y(px, py) as i32 > 150;
    let waited = wait_picture(&s.pics, p0, n, blurred).await.expect("the new strength shows");
    assert!(waited <= 5, "the change showed {waited} frames after the reply");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_of_300_ms_is_measured_at_the_receiver() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    // The latency of one picture: send by the camera to decode by the viewer.
    let latency = |s: &Setup, from: usize| -> Vec<f64> {
        let pics = s.pics.lock().unwrap();
        let sent = s.sent.lock().unwrap();
        pics[p0][from..]
            .iter()
            .filter_map(|d| {
                sent.get(&read_number(d)).map(|t| d.at.saturating_duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    // Baseline through the same pipeline: DELAY with nothing to delay.
    set_video_filters(&mut s.exp, p0, json!([filter("DELAY", "d1", json!({"size": 0, "delay_ms": 0}))])).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let n = count_pictures(&s.pics, p0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let base = median(latency(&s, n));

    set_video_filters(&mut s.exp, p0, json!([filter("DELAY", "d1", json!({"size": 0, "delay_ms": 300}))])).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let n = count_pictures(&s.pics, p0);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let samples = latency(&s, n);
    assert!(samples.len() > 30, "pictures keep coming while delayed ({})", samples.len());
    let delayed = median(samples);
    let added = delayed - base;
    assert!(
        (added - 300.0).abs() <= 1000.0 / FPS as f64,
        "DELAY 300 ms added {added:.1} ms (base {base:.1}, delayed {delayed:.1})"
    );

    // The achieved delay is reported through GET_FILTERS_DATA.
    let m = request(
        &mut s.exp,
        "GET_FILTERS_DATA",
        json!({"filter_id": "d1", "filter_name": "DELAY", "filter_channel": "video"}),
        "FILTERS_DATA",
    )
    .await;
    let reported = &m["data"][p0]["video"][0];
    assert_eq!(reported["id"], "d1", "{m}");
    let ms = reported["data"]["delay_ms"].as_f64().unwrap_or(-1.0);
    assert!((ms - 300.0).abs() <= 34.0, "reported achieved delay {ms} ({m})");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_keeps_the_resolution_and_unmute_brings_the_picture_back() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    let ok =
        request(&mut s.exp, "MUTE", json!({"participant_id": p0, "mute_video": true, "mute_audio": true}), "SUCCESS")
            .await;
    assert_success(&ok, "MUTE");
    let n = count_pictures(&s.pics, p0);
    let black = |d: &Decoded| d.w == W && d.h == H && d.mean(0, 0, W, H) < 25.0;
    assert!(wait_picture(&s.pics, p0, n, black).await.is_some(), "muted video is black at the source's size");
    request(&mut s.exp, "MUTE", json!({"participant_id": p0, "mute_video": false, "mute_audio": false}), "SUCCESS")
        .await;
    let n = count_pictures(&s.pics, p0);
    let back = |d: &Decoded| d.mean(MX + 8, MY + 8, MS - 16, MS - 16) > 200.0;
    assert!(wait_picture(&s.pics, p0, n, back).await.is_some(), "unmuted picture returns");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_filter_is_bypassed_and_reported_while_the_stream_goes_on() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    // FAULT_TEST panics on its 10th frame; MIRROR after it must keep working.
    set_video_filters(
        &mut s.exp,
        p0,
        json!([filter("FAULT_TEST", "boom", json!({"after": 10})), filter("MIRROR", "m1", json!({}))]),
    )
    .await;
    let (err, _) = s.exp.recv_type("ERROR", T).await.expect("the experimenters are told");
    assert_eq!(err["data"]["code"], 500);
    let text = err["data"]["description"].as_str().unwrap();
    assert!(
        text.contains("FAULT_TEST") && text.contains("boom") && text.contains(p0) && text.contains("bypassed"),
        "{text}"
    );
    // The stream goes on, still mirrored.
    let n = count_pictures(&s.pics, p0);
    let mirrored = |d: &Decoded| d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16) > 200.0;
    assert!(wait_picture(&s.pics, p0, n + 30, mirrored).await.is_some(), "30 more mirrored pictures after the panic");
    // And GET_FILTERS_DATA says what happened to it.
    let m = request(
        &mut s.exp,
        "GET_FILTERS_DATA",
        json!({"filter_id": "boom", "filter_name": "FAULT_TEST", "filter_channel": "video"}),
        "FILTERS_DATA",
    )
    .await;
    let data = &m["data"][p0]["video"][0]["data"]["error"];
    assert!(data.as_str().is_some_and(|e| e.contains("deliberate failure")), "{m}");
    let metrics = String::from_utf8(exphub_client::get(&s.srv.base, "/metrics").await.unwrap().1).unwrap();
    assert!(metrics.contains("exphub_filter_panics_total 1"), "{metrics}");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_filters_change_only_what_that_viewer_sees() {
    // P1 sees P0 mirrored (a viewer-side list for P0's asymmetric id); P2 sees P0 as it is.
    let dir = TempDir::new("asym");
    let mut session = session_json(SESSION);
    session["participants"][1]["asymmetric_filters"] = json!([{
        "id": "asym-0", "participant_name": "P0", "audio_filters": [],
        "video_filters": [filter("MIRROR", "m-for-p1", json!({}))]
    }]);
    write_session(dir.path(), &session);
    let srv = TestServer::start_in(dir).await;
    let (epics, eopts) = decoding_viewer();
    let mut exp = experimenter_with(&srv.base, eopts).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let p0 = Arc::new(participant(&srv.base, PARTICIPANTS[0], Default::default()).await);
    let (pics1, o1) = decoding_viewer();
    let v1 = participant(&srv.base, PARTICIPANTS[1], o1).await;
    let (pics2, o2) = decoding_viewer();
    let v2 = participant(&srv.base, PARTICIPANTS[2], o2).await;
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let (camera, _) = start_camera(p0.clone());

    let plain = |d: &Decoded| {
        d.mean(MX + 8, MY + 8, MS - 16, MS - 16) > 200.0 && d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16) < 150.0
    };
    let mirrored = |d: &Decoded| {
        d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16) > 200.0 && d.mean(MX + 8, MY + 8, MS - 16, MS - 16) < 150.0
    };
    let from = PARTICIPANTS[0];
    let seen = wait_picture(&pics1, from, 0, mirrored).await;
    if seen.is_none() {
        let g = pics1.lock().unwrap();
        let v = g.get(from).map(|v| v.len()).unwrap_or(0);
        let last = g
            .get(from)
            .and_then(|v| v.last())
            .map(|d| (d.mean(MX + 8, MY + 8, MS - 16, MS - 16), d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16)));
        panic!(
            "P1 sees P0 mirrored: {v} pictures, last marker means {last:?}; keys {:?}",
            g.keys().collect::<Vec<_>>()
        );
    }
    assert!(wait_picture(&pics2, from, 0, plain).await.is_some(), "P2 sees P0 as it is");
    assert!(wait_picture(&epics, from, 0, plain).await.is_some(), "the experimenter sees P0's own stream");
    // Every picture after the first ones stays on its side.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tail = |p: &Pictures, f: &dyn Fn(&Decoded) -> bool| p.lock().unwrap()[from].iter().rev().take(10).all(f);
    assert!(tail(&pics1, &mirrored) && tail(&pics2, &plain), "branches stay separate");

    // P0's own filter (EDGE_OUTLINE) reaches P2 and the experimenter; P1 keeps its own list.
    set_video_filters(&mut exp, from, json!([filter("EDGE_OUTLINE", "e1", json!({}))])).await;
    let n2 = count_pictures(&pics2, from);
    let outlined = |d: &Decoded| d.mean(MX + 8, MY + 8, MS - 16, MS - 16) < 60.0 && d.mean(150, 100, 40, 40) < 60.0;
    assert!(wait_picture(&pics2, from, n2, outlined).await.is_some(), "P2 sees P0's own filter");
    assert!(tail(&pics1, &mirrored), "P1 still sees its viewer-side list");

    camera.abort();
    v1.close().await;
    v2.close().await;
    if let Ok(p) = Arc::try_unwrap(p0) {
        p.close().await;
    }
    exp.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_participant_who_rejoins_is_seen_again_at_once() {
    let mut s = setup().await;
    let p0 = PARTICIPANTS[0];
    set_video_filters(&mut s.exp, p0, json!([filter("MIRROR", "m1", json!({}))])).await;
    let mirrored = |d: &Decoded| d.mean(W - MX - MS + 8, MY + 8, MS - 16, MS - 16) > 200.0;
    let n = count_pictures(&s.pics, p0);
    assert!(wait_picture(&s.pics, p0, n, mirrored).await.is_some());
    // Let the old stream's sequence numbers run well past where the new one will start.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // A page refresh: a new connection for the same seat, its camera starting afresh.
    let again = Arc::new(participant(&s.srv.base, p0, Default::default()).await);
    s.camera.abort();
    let (camera, _) = start_camera(again.clone());
    let rejoined = Instant::now();
    let n = count_pictures(&s.pics, p0);
    assert!(wait_picture(&s.pics, p0, n + 5, mirrored).await.is_some(), "filtered pictures after the rejoin");
    let took = rejoined.elapsed();
    assert!(took < Duration::from_millis(1500), "the viewer saw the rejoined participant after {took:?}");
    camera.abort();
    if let Ok(p) = Arc::try_unwrap(again) {
        p.close().await;
    }
    s.end().await;
}
