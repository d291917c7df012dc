//! Face analysis end to end over real WebRTC on loopback: a participant's camera shows a real
//! face (the annotated photo of `make face-data`) whose lip corners are pulled into a smile
//! and back by a pixel warp; `OPENFACE_AU` in the server's pipeline must find the face and see
//! the smile come and go, reported through `GET_FILTERS_DATA` as SynthARium's filter reports it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::camera::*;
use common::*;
use exphub::media::rtp::Format;
use serde_json::{json, Value};

/// Smiles for the last 2 s of every 6 s (180 pictures at 30 fps).
fn smiling(n: u32) -> bool {
    n % 180 >= 120
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openface_au_sees_a_real_face_smile_and_rest() {
    let dir = TempDir::new("face");
    let mut s = session_json(SESSION);
    let p0 = PARTICIPANTS[0];
    s["participants"][0]["video_filters"] =
        json!([{"name": "OPENFACE_AU", "id": "of", "channel": "video", "groupFilter": false, "config": {}}]);
    write_session(dir.path(), &s);
    let srv = TestServer::start_in(dir).await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let a = Arc::new(participant(&srv.base, p0, Default::default()).await);
    let (cam, _) = start_camera_showing(a.clone(), Format::Vp8, |n| face_picture(if smiling(n) { 1.0 } else { 0.0 }));
    let started = Instant::now();

    // Poll the reported data; note every report with a face, and whether the camera was
    // smiling when it was taken (the report lags the picture by a frame or two: only reports
    // well inside a phase count).
    let get = json!({"filter_id": "of", "filter_name": "OPENFACE_AU", "filter_channel": "video"});
    let (mut smiles, mut rests, mut faces) = (Vec::new(), Vec::new(), 0);
    let deadline = started + Duration::from_secs(45);
    while Instant::now() < deadline && (smiles.len() < 5 || rests.len() < 5) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let m = request(&mut exp, "GET_FILTERS_DATA", get.clone(), "FILTERS_DATA").await;
        let d: &Value = &m["data"][p0]["video"][0]["data"]["data"];
        if d["success"] != true {
            continue;
        }
        faces += 1;
        // The face sits in the middle of the 640x480 picture (the photo at twice its size).
        let roi = &d["roi"];
        let (x, y) = (roi["x"].as_i64().unwrap(), roi["y"].as_i64().unwrap());
        let (w, h) = (roi["width"].as_i64().unwrap(), roi["height"].as_i64().unwrap());
        assert!(x > 170 && x + w < 470 && y > 15 && y + h < 465 && w > 80, "roi {roi}");
        assert!(d["pose"]["Ry"].as_f64().unwrap().abs() < 0.4, "{d}");
        // The camera's phase now (30 fps since start): skip 0.5 s after each change and the
        // first 6 s (the person's neutral face is learnt from 3 s of frames).
        let n = (started.elapsed().as_secs_f64() * 30.0) as u32;
        let phase = n % 180;
        if n < 180 || (120..135).contains(&phase) || phase < 15 {
            continue;
        }
        let au12 = d["intensity"]["AU12"].as_f64().unwrap();
        if smiling(n) {
            smiles.push(au12);
        } else {
            rests.push(au12);
        }
    }
    cam.abort();
    let _ = cam.await;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (smile, rest) = (median(smiles.clone()), median(rests.clone()));
    eprintln!("OPENFACE_AU: {faces} reports with a face; AU12 median smiling {smile:.2}, resting {rest:.2}");
    assert!(smiles.len() >= 5 && rests.len() >= 5, "smiling {smiles:?}, resting {rests:?}");
    assert!(smile >= 1.0 && rest < 1.0 && smile > rest + 0.5, "smiling {smiles:?}, resting {rests:?}");
    drop(exp);
    drop(a);
    srv.stop().await;
}
