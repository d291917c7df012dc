//! Recordings copied to an object store (`--object-store`), indexed and exported from it.
//!
//! - `a_cluster_uploads_indexes_and_any_node_exports`: three nodes over a throwaway PostgreSQL
//!   and one local-directory store; an experiment with two participants over WebRTC runs and
//!   records on B; the store holds every file under `sessions/<sid>/e1-B/` with the manifest's
//!   SHA-256, `artifacts` lists them, and A (which did not run it) exports the same bytes; with
//!   an object deleted, the export is refused with 503 naming the file.
//! - `a_single_node_uploads_and_the_cli_exports_from_the_store`: one node (no database), keys
//!   `sessions/<sid>/<file>`; `exphub export --object-store` from an empty sessions directory
//!   gives the same files.
//! - `files_left_by_a_crash_are_uploaded_at_the_next_start`: a file completed by crash recovery,
//!   and a finished file the store lacks, go up at the next start.
//! - `the_s3_protocol_against_moto`: the same upload to moto's S3 server on loopback (`make
//!   moto`), read back over S3.
//!
//! Each prints the upload lag p95 that `/metrics` saw (bucket bound), for docs/cluster.md.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::*;
use common::*;
use exphub::record::store::{ObjectStore, ObjectStoreExt, StoreUrl};
use serde_json::{json, Value};

fn recorded_session() -> Value {
    let mut s = session_json(SESSION);
    s["record"] = json!(true);
    s
}

/// A local-directory store (removed on drop) and its URL.
fn local_store() -> (TempDir, String) {
    let objects = TempDir::new("objects");
    let url = format!("file://{}", objects.path().display());
    (objects, url)
}

/// A single node over `dir` with the recorded session, copying to the store at `url`.
async fn server_with_store(dir: TempDir, url: &str) -> TestServer {
    write_session(dir.path(), &recorded_session());
    let url = StoreUrl::parse(url).unwrap();
    TestServer::start_configured(dir, |c| c.object_store = Some(url)).await
}

/// CREATE, two participants publishing, START, two seconds of media, STOP (via `base`).
async fn record_two(
    base: &str,
) -> (exphub_client::Client, Vec<exphub_client::Client>, Vec<tokio::task::JoinHandle<()>>) {
    let mut exp = experimenter(base).await;
    let ok = request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    let (rec, opts) = recorder();
    let p0 = participant_via(base, SESSION, PARTICIPANTS[0], opts).await;
    let p1 = participant_via(base, SESSION, PARTICIPANTS[1], Default::default()).await;
    let players = vec![p0.publish(media()), p1.publish(media())];
    let ok = request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    assert_success(&ok, "START_EXPERIMENT");
    let video = exphub::media::Kind::Video;
    assert!(wait_media(&rec, PARTICIPANTS[1], video, 30, Duration::from_secs(30)).await, "media flows");
    tokio::time::sleep(Duration::from_secs(2)).await;
    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    (exp, vec![p0, p1], players)
}

/// The local manifest once every file is finished.
async fn finished_manifest(rec_dir: &Path) -> exphub::record::Manifest {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(m)) = exphub::record::Manifest::load(rec_dir) {
            if !m.files.is_empty() && m.files.iter().all(|f| f.complete) {
                return m;
            }
        }
        assert!(Instant::now() < deadline, "recordings not finished in {}", rec_dir.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sha_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

/// Waits until `key` is in the store with these bytes' SHA-256; its bytes.
async fn wait_object(store: &dyn ObjectStore, key: &str, sha: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let k = exphub::record::store::Key::from(key);
    let mut last = String::from("absent");
    loop {
        if let Ok(got) = store.get(&k).await {
            if let Ok(b) = got.bytes().await {
                if sha_hex(&b) == sha {
                    return b.to_vec();
                }
                last = format!("{} bytes, sha {}", b.len(), sha_hex(&b));
            }
        }
        assert!(Instant::now() < deadline, "{key} with sha {sha} not in the store ({last})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every finished file of the manifest is in the store under `dir_key` with the manifest's
/// checksum; and the stored manifest lists them all as complete. Their bytes, by file name.
async fn assert_uploaded(
    store: &dyn ObjectStore,
    dir_key: &str,
    m: &exphub::record::Manifest,
) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for f in &m.files {
        let sha = f.sha256.as_deref().expect("a finished file has its checksum");
        out.push((f.file.clone(), wait_object(store, &format!("{dir_key}{}", f.file), sha).await));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let k = exphub::record::store::Key::from(format!("{dir_key}manifest.json").as_str());
        let stored = match store.get(&k).await {
            Ok(g) => g.bytes().await.ok().and_then(|b| serde_json::from_slice::<exphub::record::Manifest>(&b).ok()),
            Err(_) => None,
        };
        if stored.as_ref().is_some_and(|s| s.files == m.files) {
            break;
        }
        assert!(Instant::now() < deadline, "the stored manifest is not the finished one: {stored:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let k = exphub::record::store::Key::from(format!("{dir_key}events.jsonl").as_str());
    assert!(store.head(&k).await.is_ok(), "the event log is in the store");
    out
}

/// The export download (the dashboard's form post): status and body.
async fn export_via(base: &str) -> (u16, Vec<u8>) {
    let body = format!("password={PASSWORD}").into_bytes();
    exphub_client::post_raw(base, &format!("/recordings/{SESSION}/export"), "application/x-www-form-urlencoded", body)
        .await
        .expect("the export answers")
}

fn tar_files(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .expect("a tar")
        .map(|e| {
            let mut e = e.expect("an entry");
            let name = e.path().unwrap().display().to_string();
            let mut b = vec![];
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            (name, b)
        })
        .collect()
}

/// The upload lag p95 from a `/metrics` text, as the upper bound of its bucket (seconds).
fn lag_p95(metrics: &str) -> Option<(f64, u64)> {
    let buckets: Vec<(f64, u64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("exphub_upload_lag_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, n.parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    let want = (total as f64 * 0.95).ceil() as u64;
    buckets.iter().find(|(_, n)| *n >= want).map(|(le, _)| (*le, total))
}

/// Prints the upload lag p95 that `/metrics` saw; checks that it counted at least `files`.
async fn print_lag(label: &str, base: &str, files: usize) {
    let (_, m) = exphub_client::get(base, "/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&m);
    let done = text.lines().find(|l| l.starts_with("exphub_uploads_total ")).unwrap_or_default().to_owned();
    let p95 = lag_p95(&text);
    eprintln!("upload lag ({label}): p95 <= {p95:?} s over (le, count); {done}");
    assert!(p95.is_some_and(|(_, n)| n as usize >= files), "the lag of every upload is measured: {p95:?}");
    assert!(text.contains("\nexphub_upload_queue "), "the queue depth is shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_uploads_indexes_and_any_node_exports() {
    let _serial = SERIAL.lock().await;
    let (objects, url) = local_store();
    init_tracing();
    let pg = pg::Pg::start(false);
    let [ra, rb, rc] = port_ranges();
    let s = [recorded_session()];
    let extra = ["--object-store", url.as_str()];
    let a = node_with(&pg, "A", ra, 10_000.0, &s, &extra);
    let b = node_with(&pg, "B", rb, 10_000.0, &s, &extra);
    let c = node_with(&pg, "C", rc, 10_000.0, &s, &extra);
    let (exp, parts, players) = record_two(b.base()).await;
    let m = finished_manifest(&b.dir.path().join(SESSION)).await;
    assert_eq!(m.files.len(), 8, "raw and processed audio and video of two: {:?}", m.files);
    assert_eq!(
        (m.runs[0].node_id.as_deref(), m.runs[0].epoch),
        (Some("B"), Some(1)),
        "the run names its node and epoch"
    );

    let store = StoreUrl::parse(&url).unwrap().open().unwrap();
    let dir_key = format!("sessions/{SESSION}/e1-B/");
    let uploaded = assert_uploaded(store.as_ref(), &dir_key, &m).await;
    for (name, bytes) in &uploaded {
        assert_eq!(
            bytes,
            &std::fs::read(b.dir.path().join(SESSION).join(name)).unwrap(),
            "{name}: the local copy is kept and equal"
        );
    }

    // The index lists every file with its checksum, and the manifest and the event log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = db(&pg).await.artifacts(SESSION).await.unwrap();
        let all = m.files.iter().all(|f| rows.iter().any(|r| r.path == f.file && Some(&r.sha256) == f.sha256.as_ref()));
        if all && rows.iter().any(|r| r.kind == "manifest") && rows.iter().any(|r| r.kind == "events") {
            break rows;
        }
        assert!(Instant::now() < deadline, "artifacts incomplete: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in &rows {
        assert_eq!((r.epoch, r.node_id.as_str()), (1, "B"), "{r:?}");
        assert_eq!(r.object_key, format!("{dir_key}{}", r.path));
    }

    // A did not run it: its export comes from the store, the same bytes under e1-B/.
    let (status, tar) = export_via(a.base()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    let files = tar_files(&tar);
    for (name, bytes) in &uploaded {
        let want = format!("{SESSION}/e1-B/{name}");
        let got = files
            .iter()
            .find(|(n, _)| *n == want)
            .unwrap_or_else(|| panic!("{want} in {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>()));
        assert_eq!(&got.1, bytes, "{want}");
    }
    assert!(files.iter().any(|(n, _)| *n == format!("{SESSION}/e1-B/manifest.json")));
    print_lag("local directory, cluster", b.base(), m.files.len()).await;

    // An object lost from the store: no silently partial archive.
    let lost = &m.files[0].file;
    std::fs::remove_file(objects.path().join(format!("{dir_key}{lost}"))).unwrap();
    let (status, body) = export_via(c.base()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains(lost.as_str()), "the refusal names {lost}: {text}");

    for h in players {
        h.abort();
    }
    for p in parts {
        p.close().await;
    }
    exp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_uploads_and_the_cli_exports_from_the_store() {
    let _serial = SERIAL.lock().await;
    let (_objects, url) = local_store();
    let srv = server_with_store(TempDir::new("upload"), &url).await;
    let (exp, parts, players) = record_two(&srv.base).await;
    let m = finished_manifest(&srv.dir.path().join(SESSION)).await;
    let store = StoreUrl::parse(&url).unwrap().open().unwrap();
    let uploaded = assert_uploaded(store.as_ref(), &format!("sessions/{SESSION}/"), &m).await;
    print_lag("local directory, single node", &srv.base, m.files.len()).await;

    // The CLI, from a sessions directory that has nothing: the store's copies.
    let empty = TempDir::new("empty");
    let out = empty.path().join("export.tar");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_exphub"))
        .args(["export", SESSION, "--object-store", &url, "--sessions-dir"])
        .arg(empty.path())
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let files = tar_files(&std::fs::read(&out).unwrap());
    assert_eq!(files[0].0, format!("{SESSION}/manifest.json"));
    assert_eq!(files[1].0, format!("{SESSION}/events.jsonl"));
    for (name, bytes) in &uploaded {
        let got = files.iter().find(|(n, _)| *n == format!("{SESSION}/{name}")).expect("in the archive");
        assert_eq!(&got.1, bytes);
    }
    close_all(srv, exp, parts, players).await;
}

/// A file that a crash left unfinished is completed at the next start (crash recovery) and
/// then uploaded; a finished file the store lacks (the queue was lost with the process) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_by_a_crash_are_uploaded_at_the_next_start() {
    let _serial = SERIAL.lock().await;
    let (_objects, url) = local_store();
    let dir = TempDir::new("crashed");
    let rec = dir.path().join(SESSION);
    std::fs::create_dir_all(&rec).unwrap();
    let mut m = exphub::record::Manifest::new(SESSION);
    let entry = |file: &str, complete: bool, sha: Option<String>, bytes: Option<u64>| exphub::record::FileEntry {
        file: file.into(),
        run: 1,
        participant_id: PARTICIPANTS[0].into(),
        kind: "raw".into(),
        media: "audio".into(),
        codec: "opus".into(),
        container: "webm".into(),
        segment: 1,
        start_ms: 0.0,
        width: None,
        height: None,
        viewers: None,
        filters: None,
        duration_ms: None,
        frames: None,
        bytes,
        sha256: sha,
        complete,
        recovered: false,
        error: None,
    };
    std::fs::write(rec.join("unfinished.webm"), b"written up to the crash").unwrap();
    std::fs::write(rec.join("finished.webm"), b"finished before the crash").unwrap();
    let finished_sha = sha_hex(b"finished before the crash");
    m.files.push(entry("unfinished.webm", false, None, None));
    m.files.push(entry("finished.webm", true, Some(finished_sha.clone()), Some(25)));
    std::fs::write(rec.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::write(rec.join("events.jsonl"), b"").unwrap();

    let srv = server_with_store(dir, &url).await;
    let store = StoreUrl::parse(&url).unwrap().open().unwrap();
    let prefix = format!("sessions/{SESSION}/");
    wait_object(store.as_ref(), &format!("{prefix}finished.webm"), &finished_sha).await;
    wait_object(store.as_ref(), &format!("{prefix}unfinished.webm"), &sha_hex(b"written up to the crash")).await;
    let recovered = exphub::record::Manifest::load(&srv.dir.path().join(SESSION)).unwrap().unwrap();
    assert!(recovered.files[0].recovered, "{:?}", recovered.files[0]);
    // The export from the store has both, and the recovered manifest.
    let (status, tar) = export_via(&srv.base).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    let names: Vec<String> = tar_files(&tar).into_iter().map(|(n, _)| n).collect();
    for f in ["unfinished.webm", "finished.webm", "manifest.json"] {
        assert!(names.contains(&format!("{SESSION}/{f}")), "{f} in {names:?}");
    }
    srv.stop().await;
}

/// moto's S3 server from `make moto` (a virtualenv under the repository).
fn moto_server() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-moto/bin/moto_server");
    assert!(bin.exists(), "moto is not installed ({} is missing): run `make moto`", bin.display());
    bin
}

/// A moto server on a free loopback port, stopped on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto
}

/// Creates a bucket (moto takes unsigned requests).
async fn create_bucket(endpoint: &str, bucket: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "bucket created: {resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_protocol_against_moto() {
    let _serial = SERIAL.lock().await;
    let moto = start_moto().await;
    create_bucket(&moto.endpoint, "lab").await;
    // moto accepts any credentials; the store reads them from the standard environment.
    // SAFETY (edition 2021: safe): set before the server starts, read by the S3 client only.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let url = format!("s3://lab/exphub?endpoint={}&region=us-east-1", moto.endpoint);
    let srv = server_with_store(TempDir::new("s3"), &url).await;
    let (exp, parts, players) = record_two(&srv.base).await;
    let m = finished_manifest(&srv.dir.path().join(SESSION)).await;
    let store = exphub::open_object_store(&StoreUrl::parse(&url).unwrap()).unwrap();
    assert_uploaded(store.as_ref(), &format!("sessions/{SESSION}/"), &m).await;
    // Under the URL's prefix in the bucket, as S3 lists it.
    let bucket =
        exphub::open_object_store(&StoreUrl::parse(&format!("s3://lab?endpoint={}", moto.endpoint)).unwrap()).unwrap();
    let keys = exphub::record::store::list(bucket.as_ref(), "exphub/sessions").await.unwrap();
    assert!(keys.iter().any(|(k, _)| *k == format!("exphub/sessions/{SESSION}/manifest.json")), "{keys:?}");
    print_lag("S3 protocol, moto", &srv.base, m.files.len()).await;
    // The export reads it back over S3.
    let (status, tar) = export_via(&srv.base).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    assert_eq!(tar_files(&tar).len(), 1 + 2 + m.files.len(), "session, manifest, log, media");
    close_all(srv, exp, parts, players).await;
}
