//! Group filters end to end over real WebRTC on loopback: instances come from the session's
//! design, run from CREATE_EXPERIMENT, keep being fed across a late join and a rejoin, reach
//! subscribed experimenters as pushes, and land in the event log with their parameters; the
//! offline recomputation from the recorded files (`exphub analyze`) gives the live results again.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::camera::*;
use common::*;
use exphub::media::rtp::Format;
use exphub_client::Client;
use filters::VideoFrame;
use serde_json::{json, Value};

/// The test session, recorded, with `filter` in every participant's `video_group_filters`.
fn group_session(filter: Value) -> Value {
    let mut s = session_json(SESSION);
    s["record"] = json!(true);
    for p in s["participants"].as_array_mut().unwrap() {
        p["video_group_filters"] = json!([filter.clone()]);
    }
    s
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(SESSION).join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `exphub analyze` of the test session in `dir`: its result lines.
fn analyze(dir: &Path) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exphub"))
        .args(["analyze", SESSION, "--out", "-", "--sessions-dir"])
        .arg(dir)
        .output()
        .expect("exphub analyze runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Waits for a `GROUP_FILTERS_DATA` push with a result that `want` accepts; returns it.
async fn wait_result(c: &mut Client, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching group filter result in {timeout:?}");
        let Ok((m, _)) = c.recv_type("GROUP_FILTERS_DATA", left).await else { continue };
        for f in m["data"]["filters"].as_array().into_iter().flatten() {
            for r in f["results"].as_array().into_iter().flatten() {
                if want(r) {
                    return r.clone();
                }
            }
        }
    }
}

fn camera(c: &Arc<Client>, show: impl Fn(u32) -> VideoFrame + Send + 'static) -> tokio::task::JoinHandle<()> {
    start_camera_showing(c.clone(), Format::Vp8, show).0
}

/// A flat picture of luma `y` (TEMPLATE_GF compares brightness).
fn flat(y: u8) -> impl Fn(u32) -> VideoFrame {
    move |_| {
        let mut f = VideoFrame::new(W, H);
        f.fill(y, 128, 128);
        f
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_filters_run_from_the_design_through_a_late_join_and_a_rejoin() {
    let dir = TempDir::new("group");
    let tgf = json!({"name": "TEMPLATE_GF", "id": "tgf", "channel": "video", "groupFilter": true, "config": {}});
    write_session(dir.path(), &group_session(tgf));
    let srv = TestServer::start_in(dir).await;
    let (p0, p1) = (PARTICIPANTS[0], PARTICIPANTS[1]);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;

    // The instance exists from CREATE, over every participant holding it, before anyone joined.
    let reply = request(&mut exp, "GET_GROUP_FILTERS_DATA", json!({"subscribe": true}), "GROUP_FILTERS_DATA").await;
    let f = &reply["data"]["filters"][0];
    assert_eq!(
        (&f["id"], &f["name"], &f["channel"]),
        (&json!("tgf"), &json!("TEMPLATE_GF"), &json!("video")),
        "{reply}"
    );
    assert_eq!(f["members"], json!(PARTICIPANTS), "{reply}");
    assert_eq!(reply["data"]["push"], false);

    // Participant 0 joins and publishes (bright), the experiment starts, participant 1 joins
    // late (dark): the pair's brightness difference (235 - 40 = 195) comes as a push.
    let a = Arc::new(participant(&srv.base, p0, Default::default()).await);
    let cam_a = camera(&a, flat(235));
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let b = Arc::new(participant(&srv.base, p1, Default::default()).await);
    let cam_b = camera(&b, flat(40));
    let pair = json!([p0, p1]);
    let r = wait_result(&mut exp, 4 * T, |r| r["members"] == pair).await;
    let d = r["value"]["difference"].as_f64().unwrap();
    assert!((d - 195.0).abs() < 8.0, "brightness difference {d}: {r}");
    assert!(r["n_samples"].as_u64().unwrap() >= 2, "{r}");

    // Participant 0 leaves and rejoins, now dark too: the same instance keeps running and
    // sees it (the difference falls to about 0).
    cam_a.abort();
    let _ = cam_a.await;
    Arc::try_unwrap(a).ok().expect("the camera let go").close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = Arc::new(participant(&srv.base, p0, Default::default()).await);
    let cam_a = camera(&a, flat(40));
    let r =
        wait_result(&mut exp, 4 * T, |r| r["members"] == pair && r["value"]["difference"].as_f64() < Some(8.0)).await;
    assert!(r["window_end_ms"].as_f64().unwrap() > 0.0, "{r}");

    // GET_FILTERS_DATA knows group filters too: each member's latest value and its latest
    // result with each other member; a participant sees the others under its aliases.
    let get = json!({"filter_id": "tgf", "filter_name": "TEMPLATE_GF", "filter_channel": "video"});
    let data = request(&mut exp, "GET_FILTERS_DATA", get.clone(), "FILTERS_DATA").await;
    let mine = &data["data"][p0]["video"][0];
    assert_eq!(mine["id"], "tgf", "{data}");
    assert!((mine["data"]["value"][0].as_f64().unwrap() - 40.0).abs() < 8.0, "{data}");
    assert!(mine["data"]["results"][p1]["difference"].is_number(), "{data}");
    cam_b.abort();
    let _ = cam_b.await;
    let mut b = Arc::try_unwrap(b).ok().expect("the camera let go");
    b.send("GET_FILTERS_DATA", get).await.unwrap();
    let (own, _) = b.recv_type("FILTERS_DATA", T).await.unwrap();
    let results = own["data"][p1]["video"][0]["data"]["results"].as_object().unwrap().clone();
    assert_eq!(results.len(), 1, "{own}");
    assert!(!results.contains_key(p0), "the other member's real id is not shown: {own}");

    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    cam_a.abort();
    // Written by the recording's writer thread: poll until the last kinds are there.
    let deadline = Instant::now() + T;
    let log = loop {
        let log = events(srv.dir.path());
        let has = |k: &str| log.iter().any(|e| e["type"] == k);
        if has("group_filter_config") && has("group_filter_series") && has("group_filter_result") {
            break log;
        }
        assert!(Instant::now() < deadline, "group filter events missing: {log:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let config = log.iter().find(|e| e["type"] == "group_filter_config").unwrap();
    let inst = &config["instances"][0];
    assert_eq!((&inst["filter_id"], &inst["filter_name"]), (&json!("tgf"), &json!("TEMPLATE_GF")), "{config}");
    assert_eq!(inst["members"], json!(PARTICIPANTS), "{config}");
    assert_eq!(inst["windowing"]["step_ms"], 1000.0, "the parameters are logged with it: {config}");
    for pid in [p0, p1] {
        let series: Vec<&Value> =
            log.iter().filter(|e| e["type"] == "group_filter_series" && e["participant_id"] == pid).collect();
        assert!(!series.is_empty(), "no series of {pid}");
        let s = series[0];
        assert_eq!(s["t_ms"].as_array().unwrap().len(), s["values"].as_array().unwrap().len(), "{s}");
    }
    let results: Vec<&Value> = log.iter().filter(|e| e["type"] == "group_filter_result").collect();
    assert!(results.iter().all(|r| r["members"] == pair && r["filter_id"] == "tgf"), "{results:?}");
    // Only what was computed while running is logged, on the recording's clock.
    assert!(results.iter().all(|r| r["window_end_ms"].as_f64().unwrap() > 0.0), "{results:?}");
    exp.close().await;
    drop((a, b));
    let dir = srv.stop().await;

    // Offline: the same instance recomputed from the recorded raw files gives the live
    // results again (same frames, same code; the pictures are flat, so a frame more or less
    // in a window changes nothing).
    let offline = analyze(dir.path());
    let mut compared = 0;
    for live in &results {
        let end = live["window_end_ms"].as_f64().unwrap();
        let Some(off) = offline.iter().find(|o| o["window_end_ms"].as_f64() == Some(end)) else { continue };
        assert_eq!((&off["filter_id"], &off["members"], off["run"].as_u64()), (&json!("tgf"), &pair, Some(1)), "{off}");
        let (l, o) = (live["value"]["difference"].as_f64().unwrap(), off["value"]["difference"].as_f64().unwrap());
        // Windows at the very start and around the rejoin can hold a frame more or less.
        if live["n_samples"] == off["n_samples"] {
            assert!((l - o).abs() < 1.0, "window {end}: live {l}, offline {o}");
            compared += 1;
        }
    }
    assert!(compared >= 2, "live {results:?}\noffline {offline:?}");
}

/// Whether the scripted mover moves during picture `k` (bursts of 3 frames, at irregular times
/// from a fixed-seed generator; still before its first picture).
fn moves(k: i64) -> bool {
    if k < 0 {
        return false;
    }
    let mut x = (k as u64 / 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    x % 5 < 2
}

/// Picture `n` of a participant who makes the scripted movements `delay` pictures late: a white
/// box on grey that moves 12 pixels a picture while moving.
fn mover(delay: u32) -> impl Fn(u32) -> VideoFrame {
    move |n| {
        let k = n as i64 - delay as i64;
        let steps = (0..k.max(0)).filter(|&j| moves(j)).count();
        let x = (steps * 12) % (W - MS);
        let mut f = VideoFrame::new(W, H);
        f.fill(128, 128, 128);
        for y in MY..MY + MS {
            f.row_mut(0, y)[x..x + MS].fill(235);
        }
        f
    }
}

/// Ground truth over real WebRTC: participant 1 makes participant 0's movements 400 ms later
/// (12 pictures at 30 fps), so MOTION_SYNC's peak lag is +400 ms (the second member follows)
/// within one analysis interval (67 ms at 15 Hz), live and recomputed offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn motion_sync_finds_who_follows_whom_live_and_offline() {
    let dir = TempDir::new("motion");
    let config = json!({"window_ms": 4000, "step_ms": 500, "max_lag_ms": 1000, "threshold": 10, "rate_hz": 15});
    let ms = json!({"name": "MOTION_SYNC", "id": "ms", "channel": "video", "groupFilter": true, "config": config});
    write_session(dir.path(), &group_session(ms));
    let srv = TestServer::start_in(dir).await;
    let (p0, p1) = (PARTICIPANTS[0], PARTICIPANTS[1]);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    request(&mut exp, "GET_GROUP_FILTERS_DATA", json!({"subscribe": true}), "GROUP_FILTERS_DATA").await;
    let a = Arc::new(participant(&srv.base, p0, Default::default()).await);
    let b = Arc::new(participant(&srv.base, p1, Default::default()).await);
    let (cam_a, cam_b) = (camera(&a, mover(0)), camera(&b, mover(12)));
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let pair = json!([p0, p1]);
    // Windows wholly after START with (almost) every grid point filled.
    let mut live = vec![];
    while live.len() < 6 {
        let r = wait_result(&mut exp, 6 * T, |r| r["members"] == pair && r["n_samples"].as_u64() >= Some(50)).await;
        live.push(r);
    }
    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    cam_a.abort();
    cam_b.abort();
    let lags: Vec<f64> = live.iter().filter_map(|r| r["value"]["lag_ms"].as_f64()).collect();
    assert!(lags.len() >= 5, "{live:?}");
    for r in &live {
        if let (Some(lag), Some(peak)) = (r["value"]["lag_ms"].as_f64(), r["value"]["r"].as_f64()) {
            assert!((lag - 400.0).abs() <= 1000.0 / 15.0 + 1.0, "peak at {lag} ms, not +400: {r}");
            assert!(peak > 0.5, "weak peak: {r}");
            assert!(peak > r["value"]["r0"].as_f64().unwrap_or(1.0), "lag 0 is not the peak: {r}");
        }
    }
    exp.close().await;
    drop((a, b));
    let dir = srv.stop().await;

    // Offline, from the recorded raw files: the same windows give the same lags.
    let offline = analyze(dir.path());
    let mut compared = 0;
    for l in &live {
        let end = l["window_end_ms"].as_f64();
        let Some(o) = offline.iter().find(|o| o["window_end_ms"].as_f64() == end && o["members"] == pair) else {
            continue;
        };
        let (lv, ov) = (&l["value"], &o["value"]);
        if let (Some(ll), Some(ol)) = (lv["lag_ms"].as_f64(), ov["lag_ms"].as_f64()) {
            assert!((ll - ol).abs() <= 1000.0 / 15.0 + 1.0, "window {end:?}: live {lv}, offline {ov}");
            let (lr, or) = (lv["r"].as_f64().unwrap(), ov["r"].as_f64().unwrap());
            assert!((lr - or).abs() < 0.1, "window {end:?}: live {lv}, offline {ov}");
            compared += 1;
        }
    }
    assert!(compared >= 3, "live {live:?}\noffline {offline:?}");
}
