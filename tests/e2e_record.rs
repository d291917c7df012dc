//! Proves recording end to end over real WebRTC on loopback: a short experiment with synthetic
//! participants is recorded; ffprobe sees every expected file with the right codec and a
//! duration within 100 ms of the expected one; raw and processed files of a participant align
//! on the manifest's offsets (the picture number drawn into every frame is at the same time
//! since START in both, and the processed one is mirrored); the event log holds every command
//! of the run in order; RECORDING_LIST, the CLI export and the authenticated download give the
//! files; the pandas snippet of `docs/research-data.md` runs. A `kill -9` of the real binary
//! during recording leaves playable files and a valid log up to the last second, which the next start
//! completes in the manifest. A full disk is reported to the experimenter and the experiment
//! goes on.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::camera::*;
use common::proc::*;
use common::*;
use exphub::media::codec::VideoDecoder;
use exphub::media::rtp::Format;
use exphub::media::Kind;
use ffmpeg_next as ff;
use serde_json::{json, Value};

/// The test session with `record` on; participant 0 has MIRROR, so its raw and processed
/// recordings differ.
fn recorded_session() -> Value {
    let mut s = session_json(SESSION);
    s["record"] = json!(true);
    s["participants"][0]["video_filters"] =
        json!([{"name": "MIRROR", "id": "m1", "channel": "video", "groupFilter": false, "config": {}}]);
    // Participant 1 sees participant 0 edge-outlined instead (asymmetric filters): a third
    // version of participant 0's video, recorded as what participant 1 saw.
    s["participants"][1]["asymmetric_filters"] = json!([{"id": "asym-0", "participant_name": "P0", "audio_filters": [],
        "video_filters": [{"name": "EDGE_OUTLINE", "id": "e-for-p1", "channel": "video", "groupFilter": false, "config": {}}]}]);
    // Participant 1's sound is delayed by 100 ms: the per-second statistics say by how much.
    s["participants"][1]["audio_filters"] = json!([{"name": "DELAY", "id": "d1", "channel": "audio",
        "groupFilter": false, "config": {"size": 0, "delay_ms": 100}}]);
    s
}

fn rec_dir(dir: &Path) -> PathBuf {
    dir.join(SESSION)
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(rec_dir(dir).join("manifest.json")).expect("manifest.json")).unwrap()
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(rec_dir(dir).join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line that does not parse ({e}): {l}")))
        .collect()
}

/// Waits until every file of the manifest is finished.
async fn wait_finished(dir: &Path) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let m = manifest(dir);
        let files = m["files"].as_array().unwrap();
        if !files.is_empty() && files.iter().all(|f| f["complete"] == true) {
            return m;
        }
        assert!(Instant::now() < deadline, "files not finished: {m:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ffprobe's view of a file: (codec name, container duration in ms).
fn ffprobe(path: &Path) -> (String, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs (make test installs ffmpeg)");
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codec = v["streams"][0]["codec_name"].as_str().unwrap_or_default().to_owned();
    let dur = v["format"]["duration"].as_str().and_then(|d| d.parse::<f64>().ok()).unwrap_or(f64::NAN) * 1000.0;
    (codec, dur)
}

/// Frames ffmpeg decodes from a file without an error (a playable file).
fn decodable_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Every video frame of a recording: (ms in the file, picture number, marker square on the left).
fn pictures_of(path: &Path, mirrored: bool) -> Vec<(f64, u32, bool)> {
    let mut ictx = ff::format::input(path).unwrap();
    let tb = ictx.stream(0).unwrap().time_base();
    let mut dec = VideoDecoder::new(Format::Vp8).unwrap();
    let mut pic = filters::VideoFrame::new(2, 2);
    let mut out = vec![];
    for (_, p) in ictx.packets() {
        let Some(data) = p.data() else { continue };
        if let Ok(true) = dec.decode(data, &mut pic) {
            let w = pic.width();
            let mut luma = Vec::with_capacity(w * pic.height());
            for y in 0..pic.height() {
                luma.extend_from_slice(&pic.row(0, y)[..w]);
            }
            let ms = p.pts().unwrap_or(0) as f64 * 1000.0 * tb.numerator() as f64 / tb.denominator() as f64;
            let left = luma[(MY + MS / 2) * w + MX + MS / 2] > 200;
            out.push((ms, read_number_in(&luma, w, mirrored), left));
        }
    }
    out
}

fn file<'a>(m: &'a Value, pid: &str, kind: &str, media: &str) -> &'a Value {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["participant_id"] == pid && f["kind"] == kind && f["media"] == media)
        .unwrap_or_else(|| panic!("no {kind} {media} file of {pid}: {m:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_is_recorded_on_one_clock_with_a_complete_log() {
    let dir = TempDir::new("rec");
    write_session(dir.path(), &recorded_session());
    let srv = TestServer::start_in(dir).await;
    let (p0, p1) = (PARTICIPANTS[0], PARTICIPANTS[1]);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let camera_client = Arc::new(participant(&srv.base, p0, Default::default()).await);
    let (rec, opts) = recorder();
    let other = participant(&srv.base, p1, opts).await;
    let clip = other.publish(media());
    let (camera, _sent) = start_camera(camera_client.clone());
    // Pre-roll: media flows for a while before START and must not be in the files.
    tokio::time::sleep(Duration::from_millis(700)).await;
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    assert!(wait_media(&rec, p0, Kind::Video, 30, T).await, "participants see each other");
    request(
        &mut exp,
        "CHAT",
        json!({"message": "hello", "time": 1, "author": "experimenter", "target": p1}),
        "SUCCESS",
    )
    .await;
    other.send("CHAT", json!({"message": "hi back", "time": 2, "author": p1, "target": "experimenter"})).await.unwrap();
    // Delivered (and so accepted) before the next command, so the log's order is known.
    exp.recv_type("CHAT", T).await.expect("the participant's chat reaches the experimenter");
    request(&mut exp, "ADD_NOTE", json!({"time": 3, "speakers": [], "content": "a note"}), "SUCCESS").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    let m = wait_finished(srv.dir.path()).await;
    camera.abort();
    clip.abort();

    // The manifest: four files of the clip's publisher, three (video) of the camera's: raw,
    // processed (MIRROR, everyone's view) and what participant 1 saw (EDGE_OUTLINE).
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 7, "{m:#}");
    let seen_by_p1 = files.iter().find(|f| f["viewers"] == json!([p1])).expect("participant 1's version");
    assert_eq!((&seen_by_p1["participant_id"], &seen_by_p1["kind"]), (&json!(p0), &json!("processed")));
    assert_eq!(seen_by_p1["filters"][0]["name"], "EDGE_OUTLINE");
    let log = events(srv.dir.path());
    let stopped = log.iter().find(|e| e["type"] == "experiment_stopped").expect("stop logged");
    let stop_ms = stopped["t_ms"].as_f64().unwrap();
    for f in files {
        let path = rec_dir(srv.dir.path()).join(f["file"].as_str().unwrap());
        let (codec, dur) = ffprobe(&path);
        let want = if f["media"] == "video" { "vp8" } else { "opus" };
        assert_eq!(codec, want, "{f}");
        let listed = f["duration_ms"].as_f64().unwrap();
        assert!((dur - listed).abs() <= 100.0, "ffprobe {dur} ms vs manifest {listed} ms: {f}");
        // Expected: from the file's first frame to STOP.
        let expected = stop_ms - f["start_ms"].as_f64().unwrap();
        assert!((dur - expected).abs() <= 100.0, "ffprobe {dur} ms vs START..STOP {expected} ms: {f}");
        // No pre-roll: a file starts at START or later, promptly.
        let start = f["start_ms"].as_f64().unwrap();
        assert!((0.0..1500.0).contains(&start), "{f}");
        assert_eq!(f["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(f["bytes"].as_u64().unwrap(), std::fs::metadata(&path).unwrap().len());
    }

    // One clock: a picture is at the same time since START in the raw and processed files.
    let raw = file(&m, p0, "raw", "video");
    let processed = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["participant_id"] == p0 && f["kind"] == "processed" && f["viewers"].is_null())
        .unwrap();
    let at = |f: &Value, pics: Vec<(f64, u32, bool)>| -> HashMap<u32, (f64, bool)> {
        let start = f["start_ms"].as_f64().unwrap();
        pics.into_iter().map(|(ms, n, left)| (n, (start + ms, left))).collect()
    };
    let dir = rec_dir(srv.dir.path());
    let raw_pics = at(raw, pictures_of(&dir.join(raw["file"].as_str().unwrap()), false));
    let proc_pics = at(processed, pictures_of(&dir.join(processed["file"].as_str().unwrap()), true));
    let common: Vec<u32> = raw_pics.keys().filter(|n| proc_pics.contains_key(n)).copied().collect();
    assert!(
        common.len() > 40,
        "raw {} / processed {} pictures, {} in both",
        raw_pics.len(),
        proc_pics.len(),
        common.len()
    );
    for n in &common {
        let (tr, left_raw) = raw_pics[n];
        let (tp, left_proc) = proc_pics[n];
        assert!((tr - tp).abs() <= 1000.0 / FPS as f64, "picture {n}: raw at {tr} ms, processed at {tp} ms");
        assert!(left_raw && !left_proc, "picture {n}: the processed file is the mirrored one");
    }

    // The event log: numbered, in order, every command of the run.
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "{e}");
        assert!(e["t_us"].as_i64().unwrap() > 0);
    }
    let commands: Vec<&str> =
        log.iter().filter(|e| e["type"] == "command").map(|e| e["command"].as_str().unwrap()).collect();
    let want = ["CREATE_EXPERIMENT", "START_EXPERIMENT", "CHAT", "CHAT", "ADD_NOTE", "STOP_EXPERIMENT"];
    let mut it = commands.iter();
    for w in want {
        assert!(it.any(|c| *c == w), "{w} missing or out of order in {commands:?}");
    }
    let chat = log.iter().find(|e| e["command"] == "CHAT" && e["from"]["participant_id"] == p1).unwrap();
    assert_eq!(chat["data"]["message"], "hi back");
    let kinds: Vec<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for k in ["experiment_created", "participant_joined", "experiment_started", "media_config", "recording_started"] {
        assert!(kinds.contains(&k), "{k} not logged: {kinds:?}");
    }
    let mirror = log.iter().find(|e| e["type"] == "media_config" && e["participant_id"] == p0).unwrap();
    assert_eq!(mirror["video_filters"][0]["name"], "MIRROR");
    let stats: Vec<&Value> = log
        .iter()
        .filter(|e| e["type"] == "stream_stats" && e["participant_id"] == p0 && e["kind"] == "video")
        .collect();
    assert!(stats.len() >= 2, "per-second stats of the camera: {stats:?}");
    let busy = stats.iter().max_by(|a, b| a["fps_in"].as_f64().partial_cmp(&b["fps_in"].as_f64()).unwrap()).unwrap();
    assert!(busy["fps_in"].as_f64().unwrap() >= 25.0 && busy["fps_out"].as_f64().unwrap() >= 25.0, "{busy}");
    assert!(busy["latency_ms_mean"].as_f64().is_some(), "{busy}");
    let audio = log
        .iter()
        .filter(|e| e["type"] == "stream_stats" && e["participant_id"] == p1 && e["kind"] == "audio")
        .map(|e| e["fps_in"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(audio >= 45.0, "Opus at 20 ms is 50 frames/s: {audio}");
    let delayed = log
        .iter()
        .rev()
        .filter(|e| e["type"] == "stream_stats" && e["participant_id"] == p1 && e["kind"] == "audio")
        .find_map(|e| e["delay_filters"][0]["delay_ms"].as_f64())
        .expect("the DELAY filter's achieved delay is in the statistics");
    assert!((delayed - 100.0).abs() <= 20.0, "achieved delay {delayed} ms");
    let mut last = f64::MIN;
    for e in log.iter().filter(|e| e["t_ms"].is_number()) {
        let t = e["t_ms"].as_f64().unwrap();
        assert!(t >= last, "t_ms goes back: {e}");
        last = t;
    }

    // RECORDING_LIST names the files.
    let list = request(&mut exp, "GET_RECORDING_LIST", json!({}), "RECORDING_LIST").await;
    let entry = list["data"].as_array().unwrap().iter().find(|e| e["session_id"] == SESSION).unwrap();
    let of = |pid: &str| entry["participants"].as_array().unwrap().iter().find(|p| p["participant_id"] == pid).unwrap();
    assert_eq!(of(p1)["video"].as_array().unwrap().len(), 2);
    assert_eq!(of(p1)["audio"].as_array().unwrap().len(), 2);
    assert_eq!(of(p0)["video"].as_array().unwrap().len(), 3);

    // The download: experimenters only; one tar with the session file, manifest, log, media.
    let (status, _) = exphub_client::get(&srv.base, &format!("/recordings/{SESSION}/export")).await.unwrap();
    assert_eq!(status, 401);
    let tar = download(&srv.base, &format!("/recordings/{SESSION}/export"), PASSWORD).await;
    let names = tar_names(&tar);
    assert_eq!(
        &names[..3],
        [format!("{SESSION}/session.json"), format!("{SESSION}/manifest.json"), format!("{SESSION}/events.jsonl")]
    );
    assert_eq!(names.len(), 3 + 7, "{names:?}");
    assert_eq!(download(&srv.base, &format!("/recordings/{SESSION}/export"), "wrong").await.len(), 0);

    // The CLI's archive is the same list.
    let out = srv.dir.path().join("export.tar");
    let st = Command::new(env!("CARGO_BIN_EXE_exphub"))
        .args(["export", SESSION, "--sessions-dir"])
        .arg(srv.dir.path())
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(tar_names(&std::fs::read(&out).unwrap()), names);

    run_readme_snippet(&rec_dir(srv.dir.path()));

    other.close().await;
    if let Ok(c) = Arc::try_unwrap(camera_client) {
        c.close().await;
    }
    exp.close().await;
    srv.stop().await;
}

/// GET with HTTP Basic auth; the body on 200, empty otherwise.
async fn download(base: &str, path: &str, password: &str) -> Vec<u8> {
    use http_body_util::BodyExt;
    let authority = base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let cred = base64(&format!("experimenter:{password}"));
    let req = hyper::Request::get(path)
        .header("host", authority)
        .header("authorization", format!("Basic {cred}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    if resp.status() != 200 {
        return vec![];
    }
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    resp.into_body().collect().await.unwrap().to_bytes().to_vec()
}

fn base64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

/// Runs the pandas snippet of `docs/research-data.md` in the recording directory, if Python
/// with pandas is here.
fn run_readme_snippet(dir: &Path) {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/research-data.md");
    let readme = std::fs::read_to_string(doc).unwrap();
    let start = readme.find("<!-- pandas-snippet -->").expect("docs/research-data.md has the pandas snippet");
    let code = &readme[start..];
    let code = &code[code.find("```python\n").unwrap() + 10..];
    let code = &code[..code.find("```").unwrap()];
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Command::new(p).args(["-c", "import pandas"]).output().is_ok_and(|o| o.status.success()));
    let Some(python) = python else {
        eprintln!("pandas not available: the research-data snippet is not run (make test installs python3-pandas)");
        return;
    };
    let out = Command::new(python).arg("-c").arg(code).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "the research-data pandas snippet fails:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("START_EXPERIMENT") && text.contains("processed"), "snippet output:\n{text}");
}

#[test]
fn kill_9_during_recording_leaves_playable_files_and_a_valid_log() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = TempDir::new("rec-kill");
    write_session(dir.path(), &recorded_session());
    let log = dir.path().join("server.log");
    let server = spawn_server(dir.path(), &log);
    let base = server.base.clone();
    let killed_us = rt.block_on(async {
        let mut exp = experimenter(&base).await;
        request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
        let p = participant(&base, PARTICIPANTS[1], Default::default()).await;
        let clip = p.publish(media());
        request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let at = exphub::record::wall_us();
        kill9(server);
        clip.abort();
        at
    });
    let m = manifest(dir.path());
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "{m:#}");
    for f in files {
        assert_eq!(f["complete"], false, "{f}");
        let path = rec_dir(dir.path()).join(f["file"].as_str().unwrap());
        // Playable: decodes without an error, and holds all but the last second or so.
        let frames = decodable_frames(&path);
        let per_sec = if f["media"] == "video" { 30.0 } else { 50.0 };
        let expected = (3.5 - f["start_ms"].as_f64().unwrap() / 1000.0) * per_sec;
        assert!(frames as f64 >= expected - 1.6 * per_sec, "{frames} frames of ~{expected}: {f}");
    }
    // The log: every line whole, numbered, and written up to the last second.
    let log_lines = events(dir.path());
    for (i, e) in log_lines.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
    }
    let last = log_lines.iter().filter(|e| e["type"] == "stream_stats").map(|e| e["t_us"].as_i64().unwrap()).max();
    let lag = killed_us - last.expect("stream stats logged");
    assert!(lag < 1_500_000, "the log's last statistics are {lag} µs older than the kill");

    // The next start completes the manifest from the files.
    let server = spawn_server(dir.path(), &log);
    let m = manifest(dir.path());
    for f in m["files"].as_array().unwrap() {
        assert_eq!(f["recovered"], true, "{f}");
        assert_eq!(f["sha256"].as_str().map(str::len), Some(64), "{f}");
        assert!(f["duration_ms"].as_f64().unwrap() > 1000.0, "{f}");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_the_experiment_goes_on() {
    let dir = TempDir::new("rec-full");
    let mut s = recorded_session();
    s["participants"][0]["video_filters"] = json!([]);
    s["participants"][1]["audio_filters"] = json!([]);
    write_session(dir.path(), &s);
    // The raw video file of participant 1 lands on a device that is always full.
    let p1 = PARTICIPANTS[1];
    std::fs::create_dir_all(rec_dir(dir.path())).unwrap();
    std::os::unix::fs::symlink("/dev/full", rec_dir(dir.path()).join(format!("{p1}_raw_video_1-1.webm"))).unwrap();
    let srv = TestServer::start_in(dir).await;
    let (rec, opts) = recorder();
    let mut exp = experimenter_with(&srv.base, opts).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let p = participant(&srv.base, p1, Default::default()).await;
    let clip = p.publish(media());
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let (err, _) = exp.recv_type("ERROR", T).await.expect("the experimenter is told");
    let text = err["data"]["description"].as_str().unwrap();
    assert!(text.contains(p1) && text.contains("space"), "{err}");
    // The experiment goes on: media still reaches the experimenter, and the other files record.
    let before = count(&rec, p1, Kind::Video);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(count(&rec, p1, Kind::Video) > before + 20, "media keeps flowing");
    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    let deadline = Instant::now() + T;
    let m = loop {
        let m = manifest(srv.dir.path());
        let done = m["files"].as_array().unwrap().iter().filter(|f| f["complete"] == true).count();
        if done >= 3 || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let complete: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["complete"] == true)
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert!(complete.len() >= 3, "processed video and both audio files recorded: {m:#}");
    assert!(events(srv.dir.path()).iter().any(|e| e["type"] == "recording_failed"));
    clip.abort();
    p.close().await;
    exp.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_starts_a_segment_and_shutdown_finishes_every_file() {
    let dir = TempDir::new("rec-shutdown");
    let mut s = recorded_session();
    s["participants"][0]["video_filters"] = json!([]);
    write_session(dir.path(), &s);
    let srv = TestServer::start_in(dir).await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let p = participant(&srv.base, PARTICIPANTS[2], Default::default()).await;
    let clip = p.publish(media());
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The participant reloads: a new connection takes the seat, its files a new segment.
    let again = participant(&srv.base, PARTICIPANTS[2], Default::default()).await;
    clip.abort();
    let clip = again.publish(media());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // No STOP_EXPERIMENT: the server is asked to shut down (SIGTERM / Ctrl-C do this).
    let dir = srv.stop().await;
    clip.abort();
    let m = manifest(dir.path());
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 8, "two segments of four files: {m:#}");
    let second = files.iter().filter(|f| f["segment"] == 2).collect::<Vec<_>>();
    assert_eq!(second.len(), 4, "{m:#}");
    let first_end = files
        .iter()
        .filter(|f| f["segment"] == 1 && f["media"] == "video" && f["kind"] == "raw")
        .map(|f| f["start_ms"].as_f64().unwrap() + f["duration_ms"].as_f64().unwrap())
        .next()
        .unwrap();
    for f in &second {
        assert!(f["start_ms"].as_f64().unwrap() >= first_end - 100.0, "segment 2 follows segment 1: {f}");
    }
    drop(p);
    let kinds: Vec<String> = events(dir.path()).iter().map(|e| e["type"].to_string()).collect();
    for f in files {
        assert_eq!(f["complete"], true, "{f} {kinds:?}");
        let (_, dur) = ffprobe(&rec_dir(dir.path()).join(f["file"].as_str().unwrap()));
        assert!((dur - f["duration_ms"].as_f64().unwrap()).abs() <= 100.0, "{f}");
    }
    assert!(m["runs"][0]["end_us"].is_number(), "{m:#}");
    assert!(events(dir.path()).iter().any(|e| e["type"] == "experiment_stopped"));
}
