//! Post-processing end to end over real WebRTC on loopback: two participants publish the face
//! camera (a real annotated photo; participant 0 smiles every other 2 s by a pixel warp of its
//! lip corners) while the experiment records; after STOP, `POST_PROCESSING_VIDEO` runs the face
//! analysis over the recorded raw video and `CHECK_POST_PROCESSING` reports its progress, then
//! its success once. The CSVs are read back with pandas (OpenFace's columns, one row per
//! recorded frame, the experiment clock, faces found, AU12 higher while smiling), are listed in
//! the manifest and the export, and `exphub analyze --faces` writes the same bytes. Every error
//! of the two messages is provoked, and a job that fails reports `POST_PROCESSING_FAILED` once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::camera::*;
use common::*;
use exphub::media::rtp::Format;
use exphub_client::Client;
use serde_json::{json, Value};

/// Participant 0's camera: rests 2 s, smiles 2 s (60 pictures each at 30 fps).
fn smiling(n: u32) -> bool {
    n % 120 >= 60
}

/// How long a job may take on a busy machine (debug build, shared cores).
const JOB: Duration = Duration::from_secs(240);

fn recorded_session() -> Value {
    let mut s = session_json(SESSION);
    s["record"] = json!(true);
    s
}

/// A sessions directory with the recorded test session and its (empty) recording directory.
fn recording_dir(tag: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    write_session(dir.path(), &recorded_session());
    let rec = dir.path().join(SESSION);
    std::fs::create_dir_all(&rec).unwrap();
    (dir, rec)
}

/// Writes the manifest of a recording of one run with these files.
fn write_manifest(rec: &Path, files: Vec<Value>) {
    let m = json!({"format": "exphub-recording/1", "session_id": SESSION, "events": "events.jsonl",
        "runs": [{"run": 1, "created_us": 1, "start_us": 2, "start_time": 3, "end_time": 4, "end_us": 5}], "files": files});
    std::fs::write(rec.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest.json")).unwrap()
}

/// Sends `CHECK_POST_PROCESSING` and returns its answer: `CHECK_POST_PROCESSING`, `SUCCESS` or
/// `ERROR` (other messages are skipped).
async fn check(c: &mut Client) -> Value {
    c.send("CHECK_POST_PROCESSING", json!({})).await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        let m = c.recv(deadline.saturating_duration_since(Instant::now())).await.expect("an answer to the check");
        if matches!(m["type"].as_str(), Some("CHECK_POST_PROCESSING" | "SUCCESS" | "ERROR")) {
            return m;
        }
    }
}

/// Checks until the job's outcome (`SUCCESS` or `ERROR`); also returns the progress reports seen.
async fn outcome(c: &mut Client) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + JOB;
    let mut running = vec![];
    loop {
        let m = check(c).await;
        if m["type"] != "CHECK_POST_PROCESSING" {
            return (m, running);
        }
        assert!(Instant::now() < deadline, "post-processing did not finish: {m}");
        if m["data"]["is_processing"] == true {
            running.push(m["data"].clone());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn error_of(m: &Value) -> (u64, &str, &str) {
    assert_eq!(m["type"], "ERROR", "{m}");
    let d = &m["data"];
    (d["code"].as_u64().unwrap(), d["type"].as_str().unwrap(), d["description"].as_str().unwrap())
}

/// A Python with pandas (Debian's; `make test` installs python3-pandas).
fn python_with_pandas() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Command::new(p).args(["-c", "import pandas"]).output().is_ok_and(|o| o.status.success()))
        .expect("python3 with pandas (make test installs python3-pandas)")
}

/// Reads a CSV with pandas and checks its structure; returns the summary it prints.
/// `smile_spans`: the intervals (seconds on the experiment clock) in which the camera smiled.
fn pandas_summary(csv: &Path, frames: u64, start_s: f64, smile_spans: &[(f64, f64)]) -> Value {
    let code = r#"
import json, sys
import pandas as pd
path, frames, start_s, spans = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
df = pd.read_csv(path)
want = (["frame", "face_id", "timestamp", "confidence", "success",
         "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
        + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        + ["AU06_r", "AU12_r", "AU06_c", "AU12_c"])
assert list(df.columns) == want, list(df.columns)
assert len(df) == frames, (len(df), frames)
assert (df["frame"] == range(1, len(df) + 1)).all()
assert df["timestamp"].is_monotonic_increasing and df["timestamp"].is_unique
assert abs(df["timestamp"].iloc[0] - start_s) < 0.002, (df["timestamp"].iloc[0], start_s)
faces = df[df["success"] == 1]
none = df[df["success"] == 0]
assert (none.drop(columns=["frame", "face_id", "timestamp"]) == 0).all().all()
assert faces["AU12_r"].between(0, 5).all() and faces["AU06_r"].between(0, 5).all()
margin = 0.4
t = faces["timestamp"]
inside = pd.Series(False, index=faces.index)
near = pd.Series(False, index=faces.index)
for a, b in spans:
    inside |= (t >= a + margin) & (t <= b - margin)
    near |= (t >= a - margin) & (t <= b + margin)
smile, rest = faces[inside]["AU12_r"], faces[~near]["AU12_r"]
print(json.dumps({
    "rows": len(df), "success": float(df["success"].mean()),
    "duration": float(df["timestamp"].iloc[-1] - df["timestamp"].iloc[0]),
    "n_smile": int(len(smile)), "n_rest": int(len(rest)),
    "au12_smile": float(smile.median()) if len(smile) else None,
    "au12_rest": float(rest.median()) if len(rest) else None,
    "x_36": float(faces["x_36"].median()), "pose_Tz": float(faces["pose_Tz"].median()),
}))
"#;
    let out = Command::new(python_with_pandas())
        .arg("-c")
        .arg(code)
        .arg(csv)
        .arg(frames.to_string())
        .arg(start_s.to_string())
        .arg(serde_json::to_string(smile_spans).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "pandas on {}:\n{}", csv.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs the face-analysis pandas snippet of `docs/research-data.md` in `dir`; its output.
fn run_docs_snippet(dir: &Path) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/research-data.md")).unwrap();
    let code = &doc[doc.find("<!-- pandas-faces-snippet -->").expect("the snippet's marker")..];
    let code = &code[code.find("```python\n").unwrap() + 10..];
    let code = &code[..code.find("```").unwrap()];
    let out = Command::new(python_with_pandas()).arg("-c").arg(code).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "the docs' snippet fails:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

fn exphub(args: &[&str], sessions_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_exphub"))
        .args(args)
        .arg("--sessions-dir")
        .arg(sessions_dir)
        .env("EXPHUB_MODELS_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_faces_are_post_processed_into_openface_csvs() {
    let dir = TempDir::new("postproc");
    write_session(dir.path(), &recorded_session());
    let srv = TestServer::start_in(dir).await;
    let rec_dir: PathBuf = srv.dir.path().join(SESSION);
    let (p0, p1) = (PARTICIPANTS[0], PARTICIPANTS[1]);
    let mut exp = experimenter(&srv.base).await;

    // Before anything is recorded: the data is checked, then the recording looked for.
    let e = expect_error(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": 5})).await;
    assert_eq!((e["code"].as_u64(), e["type"].as_str()), (Some(400), Some("INVALID_DATATYPE")), "{e}");
    assert!(e["description"].as_str().unwrap().starts_with("Message data is not a valid PostProcessingDict."), "{e}");
    for sid in [SESSION, "../etc", "nothing-here"] {
        let e = expect_error(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": sid})).await;
        assert_eq!((e["code"].as_u64(), e["type"].as_str()), (Some(404), Some("FILE_NOT_FOUND")), "{sid}: {e}");
    }
    let idle = check(&mut exp).await;
    assert_eq!(idle["type"], "CHECK_POST_PROCESSING", "{idle}");
    assert_eq!(idle["data"]["is_processing"], false);
    assert!(idle["data"]["description"].is_string());

    // Record: both participants publish the face camera, participant 0 smiling in phases.
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let a = Arc::new(participant(&srv.base, p0, Default::default()).await);
    let b = Arc::new(participant(&srv.base, p1, Default::default()).await);
    let (cam_a, sent_a) =
        start_camera_showing(a.clone(), Format::Vp8, |n| face_picture(if smiling(n) { 1.0 } else { 0.0 }));
    let (cam_b, _) = start_camera_showing(b.clone(), Format::Vp8, |_| face_picture(0.0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // While it records, post-processing is refused.
    let e = expect_error(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION})).await;
    assert_eq!((e["code"].as_u64(), e["type"].as_str()), (Some(409), Some("EXPERIMENT_RUNNING")), "{e}");
    tokio::time::sleep(Duration::from_millis(7000)).await;
    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    cam_a.abort();
    cam_b.abort();
    let _ = (cam_a.await, cam_b.await);
    let deadline = Instant::now() + T;
    let m = loop {
        let m = manifest(&rec_dir);
        let files = m["files"].as_array().unwrap();
        if files.len() >= 4 && files.iter().all(|f| f["complete"] == true) {
            break m;
        }
        assert!(Instant::now() < deadline, "files not finished: {m:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // When participant 0's camera smiled, on the experiment clock (send time since START).
    let spans: Vec<(f64, f64)> = {
        let sent = sent_a.lock().unwrap();
        let at = |n: u32| sent.get(&n).map(|t| t.saturating_duration_since(start).as_secs_f64());
        (0..)
            .map(|k| (at(120 * k + 60), at(120 * k + 120)))
            .take_while(|(a, _)| a.is_some())
            .map(|(a, b)| (a.unwrap(), b.unwrap_or(f64::INFINITY)))
            .filter(|(a, b)| *b > 0.0 && b > a)
            .collect()
    };

    // Start: the reply names the results' directory; a second start is refused while it runs.
    let started =
        request(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION}), "POST_PROCESSING_VIDEO").await;
    let text = started["data"].as_str().expect("a bare string, as SynthARium's");
    let shown =
        text.strip_prefix("Start video post-processing. Result directory: ").unwrap_or_else(|| panic!("{text}"));
    assert!(Path::new(shown).is_absolute() && shown.ends_with(&format!("{SESSION}/processed")), "{text}");
    let e = expect_error(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION})).await;
    assert_eq!((e["code"].as_u64(), e["type"].as_str()), (Some(102), Some("STILL_PROCESSING")), "{e}");
    let (done, progress) = outcome(&mut exp).await;
    assert_eq!(done["type"], "SUCCESS", "{done}");
    assert_eq!(done["data"]["type"], "POST_PROCESSING_VIDEO", "{done}");
    assert!(!progress.is_empty(), "a check while it ran");
    let p = &progress[0];
    assert_eq!(p["session_id"], SESSION, "{p}");
    assert!(p["frames_total"].as_u64().unwrap() > 400 && p["progress"].as_f64().is_some(), "{p}");
    // The outcome is reported once.
    let after = check(&mut exp).await;
    assert_eq!((&after["type"], &after["data"]["is_processing"]), (&json!("CHECK_POST_PROCESSING"), &json!(false)));
    let e = expect_error(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION})).await;
    assert_eq!((e["code"].as_u64(), e["type"].as_str()), (Some(409), Some("FILE_ALREADY_EXISTS")), "{e}");

    // The manifest lists both CSVs (written by the session's writer: poll).
    let deadline = Instant::now() + T;
    let m2 = loop {
        let m2 = manifest(&rec_dir);
        if m2["analyses"].as_array().is_some_and(|a| a.len() == 2) {
            break m2;
        }
        assert!(Instant::now() < deadline, "analyses not listed: {m2:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut summaries = vec![];
    for pid in [p0, p1] {
        let raw: Vec<&Value> = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["participant_id"] == pid && f["kind"] == "raw" && f["media"] == "video")
            .collect();
        let frames: u64 = raw.iter().map(|f| f["frames"].as_u64().unwrap()).sum();
        let start_s = raw.iter().map(|f| f["start_ms"].as_f64().unwrap()).fold(f64::INFINITY, f64::min) / 1000.0;
        let name = format!("processed/{pid}.run-1.csv");
        let entry = m2["analyses"].as_array().unwrap().iter().find(|a| a["file"] == name.as_str()).expect("listed");
        assert_eq!(
            (&entry["kind"], &entry["run"], &entry["participant_id"]),
            (&json!("faces"), &json!(1), &json!(pid))
        );
        assert_eq!(entry["frames"].as_u64(), Some(frames), "{entry}");
        let csv = rec_dir.join(&name);
        let (bytes, sha) = exphub::media::recorder::sha256_file(&csv).unwrap();
        assert_eq!((entry["bytes"].as_u64(), entry["sha256"].as_str()), (Some(bytes), Some(sha.as_str())));
        let spans = if pid == p0 { spans.clone() } else { vec![] };
        let s = pandas_summary(&csv, frames, start_s, &spans);
        eprintln!("{pid}: {s}");
        assert!(s["success"].as_f64().unwrap() >= 0.9, "faces found in {s}");
        assert!(entry["faces_found"].as_u64().unwrap() as f64 >= 0.9 * frames as f64, "{entry}");
        assert!(s["duration"].as_f64().unwrap() > 6.0, "{s}");
        // The face sits in the middle of the 640x480 picture, about half a metre away.
        let x36 = s["x_36"].as_f64().unwrap();
        assert!((200.0..320.0).contains(&x36), "{s}");
        summaries.push(s);
    }
    let s = &summaries[0];
    let (smile, rest) = (s["au12_smile"].as_f64().unwrap(), s["au12_rest"].as_f64().unwrap());
    assert!(s["n_smile"].as_u64().unwrap() >= 30 && s["n_rest"].as_u64().unwrap() >= 30, "{s}");
    assert!(smile >= 1.0 && rest < 1.0 && smile > rest + 0.5, "AU12 smiling {smile}, resting {rest}: {s}");
    // The neutral camera: no smile.
    assert!(summaries[1]["au12_rest"].as_f64().unwrap() < 1.0, "{}", summaries[1]);
    let shown = run_docs_snippet(&rec_dir);
    for pid in [p0, p1] {
        assert!(shown.contains(&format!("processed/{pid}.run-1.csv: ")), "{shown}");
    }

    // The event log has the job's start and end.
    let log = std::fs::read_to_string(rec_dir.join("events.jsonl")).unwrap();
    let kinds: Vec<String> =
        log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].as_str().unwrap().to_owned()).collect();
    for k in ["post_processing_started", "post_processing_finished"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not logged: {kinds:?}");
    }

    // The export archive holds them.
    let out = srv.dir.path().join("export.tar");
    let st = exphub(&["export", SESSION, "--out", out.to_str().unwrap()], srv.dir.path());
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let names = tar_names(&std::fs::read(&out).unwrap());
    for pid in [p0, p1] {
        let n = format!("{SESSION}/processed/{pid}.run-1.csv");
        assert!(names.contains(&n), "{n} not in {names:?}");
    }

    let before: Vec<Vec<u8>> =
        [p0, p1].iter().map(|p| std::fs::read(rec_dir.join(format!("processed/{p}.run-1.csv"))).unwrap()).collect();
    drop(exp);
    drop(a);
    drop(b);
    let dir = srv.stop().await;

    // The command line computes the same CSVs (and lists them again, once each).
    let out = exphub(&["analyze", SESSION, "--faces"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("fps") && stderr.contains("ETA"), "a progress bar: {stderr}");
    let printed = String::from_utf8_lossy(&out.stdout);
    for (pid, old) in [p0, p1].iter().zip(&before) {
        let path = dir.path().join(SESSION).join(format!("processed/{pid}.run-1.csv"));
        assert!(printed.contains(&path.display().to_string()), "{printed}");
        assert!(std::fs::read(&path).unwrap() == *old, "{pid}: the CLI's CSV differs from the server's");
    }
    assert_eq!(manifest(&dir.path().join(SESSION))["analyses"].as_array().unwrap().len(), 2);
    let out = exphub(&["analyze", SESSION, "--faces", "--run", "7"], dir.path());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no recorded video"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_reports_post_processing_failed_once_and_leaves_no_csv() {
    // A recording whose raw video is not a video file.
    let (dir, rec) = recording_dir("postproc-fail");
    let file = format!("{}_raw_video_1-1.webm", PARTICIPANTS[0]);
    std::fs::write(rec.join(&file), b"this is not a webm file").unwrap();
    write_manifest(
        &rec,
        vec![json!({"file": file, "run": 1, "participant_id": PARTICIPANTS[0], "kind": "raw", "media": "video",
            "codec": "VP8", "container": "webm", "segment": 1, "start_ms": 12.0, "duration_ms": 1000.0,
            "frames": 30, "bytes": 23, "sha256": "0", "complete": true})],
    );
    let srv = TestServer::start_in(dir).await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION}), "POST_PROCESSING_VIDEO").await;
    let (done, _) = outcome(&mut exp).await;
    let (code, kind, text) = error_of(&done);
    assert_eq!((code, kind), (500, "POST_PROCESSING_FAILED"), "{done}");
    assert!(text.contains(&file), "names the file: {text}");
    let after = check(&mut exp).await;
    assert_eq!((&after["type"], &after["data"]["is_processing"]), (&json!("CHECK_POST_PROCESSING"), &json!(false)));
    let left: Vec<String> = std::fs::read_dir(rec.join("processed"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(manifest(&rec).get("analyses").is_none());
    // Logged, numbered, outside any run.
    let log: Vec<Value> = std::fs::read_to_string(rec.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["post_processing_started", "post_processing_failed"]);
    assert_eq!((log[0]["seq"].as_u64(), log[1]["seq"].as_u64()), (Some(1), Some(2)));
    // Nothing was written: the job may be tried again.
    request(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION}), "POST_PROCESSING_VIDEO").await;
    let (done, _) = outcome(&mut exp).await;
    assert_eq!(error_of(&done).1, "POST_PROCESSING_FAILED");
    // A participant may not ask.
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let mut p = participant(&srv.base, PARTICIPANTS[1], Default::default()).await;
    let e = expect_error(&mut p, "CHECK_POST_PROCESSING", json!({})).await;
    assert_eq!((e["code"].as_u64(), e["type"].as_str()), (Some(403), Some("FORBIDDEN")), "{e}");
    drop(p);
    drop(exp);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stops_at_shutdown_and_leaves_no_csv_unlisted() {
    // Two participants' recordings, long enough that the job is still busy when the server stops.
    let (dir, rec) = recording_dir("postproc-stop");
    let files = PARTICIPANTS[..2]
        .iter()
        .map(|pid| serde_json::to_value(record_face_clip(&rec, &format!("{pid}_raw_video_1-1.webm"), pid, 15)).unwrap())
        .collect();
    write_manifest(&rec, files);
    let srv = TestServer::start_in(dir).await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "POST_PROCESSING_VIDEO", json!({"session_id": SESSION}), "POST_PROCESSING_VIDEO").await;
    // Running: some frames done.
    let deadline = Instant::now() + JOB;
    loop {
        let c = check(&mut exp).await;
        assert_eq!(c["type"], "CHECK_POST_PROCESSING", "finished before the server was stopped: {c}");
        if c["data"]["frames_done"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(exp);
    let dir = srv.stop().await;
    // The job stopped with the server: the file it was on is not written, anything it finished
    // is listed, and the log says so.
    let rec = dir.path().join(SESSION);
    let left: Vec<String> = std::fs::read_dir(rec.join("processed"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.len() < 2 && left.iter().all(|n| !n.starts_with('.')), "{left:?}");
    let listed: Vec<String> = manifest(&rec)["analyses"]
        .as_array()
        .map(|a| a.iter().map(|x| x["file"].as_str().unwrap().trim_start_matches("processed/").to_owned()).collect())
        .unwrap_or_default();
    assert_eq!(listed, left, "every CSV on disk is listed");
    let log = std::fs::read_to_string(rec.join("events.jsonl")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "post_processing_failed", "{log}");
    assert!(last["failed"].to_string().contains("stopped before it was finished"), "{last}");
}
