//! Shared test support: a real server on 127.0.0.1:0 over a temporary sessions directory,
//! and real WebRTC clients (`exphub_client`) with media recorders.
#![allow(dead_code)]

pub mod camera;
pub mod child;
pub mod proc;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exphub::media::Kind;
use exphub_client::{Client, ClientOptions, Media, Origin, Role};
use serde_json::{json, Value};

pub const PASSWORD: &str = "test-password";
pub const SESSION: &str = "5e55105e55";
pub const PARTICIPANTS: [&str; 4] = ["aaaaaaaaa1", "bbbbbbbbb2", "ccccccccc3", "ddddddddd4"];
pub const T: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("EXPHUB_TEST_LOG").unwrap_or_else(|_| "warn,webrtc=error,rtc=error".into()))
            .with_test_writer()
            .try_init();
    });
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("exphub-test-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A session with the test participants, in SynthARium dev format.
pub fn session_json(id: &str) -> Value {
    exphub_client::session_json(id, &PARTICIPANTS)
}

pub fn write_session(dir: &Path, v: &Value) {
    let id = v["id"].as_str().unwrap();
    std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

pub struct TestServer {
    pub server: Option<exphub::Server>,
    pub base: String,
    pub dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = TempDir::new("srv");
        write_session(dir.path(), &session_json(SESSION));
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: TempDir) -> Self {
        Self::start_configured(dir, |_| {}).await
    }

    /// Like [`start_in`](Self::start_in), with the config adjusted by `f`.
    pub async fn start_configured(dir: TempDir, f: impl FnOnce(&mut exphub::config::Config)) -> Self {
        init_tracing();
        let mut cfg = exphub::config::Config::for_tests(dir.path(), PASSWORD);
        f(&mut cfg);
        let server = exphub::start(cfg).await.expect("server starts");
        let base = format!("http://{}", server.addr);
        Self { server: Some(server), base, dir }
    }

    /// Like [`start`](Self::start) (the test session on disk), with the config adjusted by `f`
    /// (e.g. a lower data-channel frame limit).
    pub async fn start_with(f: impl FnOnce(&mut exphub::config::Config)) -> Self {
        let dir = TempDir::new("srv");
        write_session(dir.path(), &session_json(SESSION));
        Self::start_configured(dir, f).await
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        TempDir(std::mem::take(&mut self.dir.0))
    }

    /// The file `<id>.json` in the sessions directory, if there is one, with its journal (the
    /// small changes not yet folded into it) replayed: what the next start would load.
    pub fn file_of(&self, id: &str) -> Option<Value> {
        let path = self.dir.path().join(format!("{id}.json"));
        let text = std::fs::read_to_string(&path).ok()?;
        if exphub::session::store::journal_path(&path).exists() {
            let s = exphub::session::store::read_with_journal(&path).expect("session and journal load");
            return Some(serde_json::to_value(s).unwrap());
        }
        Some(serde_json::from_str(&text).unwrap())
    }

    pub fn session_file(&self) -> Value {
        self.file_of(SESSION).expect("the session file exists")
    }
}

/// The test media (VP8 640x480 + Opus), loaded once.
pub fn media() -> Arc<Media> {
    static M: OnceLock<Arc<Media>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        Arc::new(Media::load(&dir.join("clip-640x480-vp8.ivf"), &dir.join("clip-opus.ogg")).expect("fixtures load"))
    })
    .clone()
}

/// Every payload the fixture can produce, to prove that forwarded media is byte-exact.
pub fn fixture_payloads() -> Arc<HashSet<Bytes>> {
    static P: OnceLock<Arc<HashSet<Bytes>>> = OnceLock::new();
    P.get_or_init(|| {
        let m = media();
        let mut s: HashSet<Bytes> = m.video.iter().flatten().map(|p| p.payload.clone()).collect();
        s.extend(m.audio.iter().map(|p| p.payload.clone()));
        Arc::new(s)
    })
    .clone()
}

/// What a client received, per origin ("echo" or the publisher's participant id) and kind.
#[derive(Default)]
pub struct Received {
    pub packets: HashMap<(String, Kind), u64>,
    pub foreign: u64,
    pub first: HashMap<(String, Kind), Instant>,
    /// Arrival of the first packet that starts a VP8 keyframe, per origin.
    pub first_key: HashMap<String, Instant>,
    /// Video frames completed (marker bit), per origin.
    pub frames: HashMap<String, u64>,
}

/// Whether an RTP payload starts a VP8 keyframe (RFC 7741 payload descriptor, then the frame tag).
pub fn is_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&d) = payload.first() else {
        return false;
    };
    let (x, s, pid) = (d & 0x80 != 0, d & 0x10 != 0, d & 0x07);
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        i = 2;
        if ext & 0x80 != 0 {
            // Picture id: one byte, or two when its M bit is set.
            i += if payload.get(i).is_some_and(|b| b & 0x80 != 0) { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|b| b & 1 == 0)
}

pub type Recorder = Arc<Mutex<Received>>;

/// Who a received stream is from: "echo", or the publisher's participant id. Experimenters are
/// told the id; participants see other seats under aliases, so a summary object is named by the
/// fixture participant whose name it carries (`P<i>` → `PARTICIPANTS[i]`), else by its alias.
pub fn origin_name(o: &Origin) -> String {
    match o {
        Origin::Echo => "echo".into(),
        Origin::Sub { summary, .. } => match summary {
            Value::String(pid) => pid.clone(),
            v => v["participant_name"]
                .as_str()
                .and_then(|n| n.strip_prefix('P')?.parse::<usize>().ok())
                .and_then(|i| PARTICIPANTS.get(i))
                .map(|p| p.to_string())
                .unwrap_or_else(|| v["id"].as_str().unwrap_or("?").to_owned()),
        },
    }
}

/// How participant client `c` sees the seats of its session, by participant name: its own real
/// id, and its aliases for the others (from `GET_SESSION`; other messages are skipped).
pub async fn shown_ids(c: &mut Client) -> HashMap<String, String> {
    let s = request(c, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    s["data"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["participant_name"].as_str().unwrap().to_owned(), p["id"].as_str().unwrap().to_owned()))
        .collect()
}

pub fn recorder() -> (Recorder, ClientOptions) {
    let rec: Recorder = Arc::default();
    let payloads = fixture_payloads();
    let r = rec.clone();
    let opts = ClientOptions {
        on_rtp: Some(Arc::new(move |o, kind, p, at| {
            let mut g = r.lock().unwrap();
            let name = origin_name(o);
            if kind == Kind::Video {
                if is_vp8_keyframe(&p.payload) {
                    g.first_key.entry(name.clone()).or_insert(at);
                }
                if p.header.marker {
                    *g.frames.entry(name.clone()).or_default() += 1;
                }
            }
            let key = (name, kind);
            *g.packets.entry(key.clone()).or_default() += 1;
            g.first.entry(key).or_insert(at);
            if !payloads.contains(&p.payload) {
                g.foreign += 1;
            }
        })),
        ..Default::default()
    };
    (rec, opts)
}

pub fn count(rec: &Recorder, origin: &str, kind: Kind) -> u64 {
    rec.lock().unwrap().packets.get(&(origin.to_owned(), kind)).copied().unwrap_or(0)
}

pub fn frames(rec: &Recorder, origin: &str) -> u64 {
    rec.lock().unwrap().frames.get(origin).copied().unwrap_or(0)
}

/// Waits until `origin` has sent at least `n` packets of `kind` to this recorder.
pub async fn wait_media(rec: &Recorder, origin: &str, kind: Kind, n: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if count(rec, origin, kind) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub async fn experimenter(base: &str) -> Client {
    Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, ClientOptions::default())
        .await
        .expect("experimenter connects")
}

pub async fn experimenter_with(base: &str, opts: ClientOptions) -> Client {
    Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, opts).await.expect("experimenter connects")
}

pub async fn participant(base: &str, pid: &str, opts: ClientOptions) -> Client {
    Client::connect(base, Role::Participant { session_id: SESSION.into(), participant_id: pid.into() }, opts)
        .await
        .unwrap_or_else(|e| panic!("participant {pid} connects: {e}"))
}

/// Sends a request and waits for the reply of type `want`.
pub async fn request(c: &mut Client, kind: &str, data: Value, want: &str) -> Value {
    c.send(kind, data).await.unwrap();
    c.recv_type(want, T).await.unwrap_or_else(|e| panic!("{kind} → {want}: {e}")).0
}

/// Sends a request and returns the ERROR it must produce.
pub async fn expect_error(c: &mut Client, kind: &str, data: Value) -> Value {
    c.send(kind, data.clone()).await.unwrap();
    let (m, skipped) = c.recv_type("ERROR", T).await.unwrap_or_else(|e| panic!("{kind} {data} → ERROR: {e}"));
    assert!(skipped.iter().all(|s| s["type"] != "SUCCESS"), "{kind} succeeded before erroring: {skipped:?}");
    m["data"].clone()
}

pub fn assert_success(m: &Value, ty: &str) {
    assert_eq!(m["type"], "SUCCESS", "{m}");
    assert_eq!(m["data"]["type"], ty, "{m}");
}

/// Creates and starts the experiment with the first `n` participants connected and publishing.
pub async fn running_experiment(
    srv: &TestServer,
    n: usize,
) -> (Client, Recorder, Vec<Client>, Vec<Recorder>, Vec<tokio::task::JoinHandle<()>>) {
    let (erec, eopts) = recorder();
    let mut exp = experimenter_with(&srv.base, eopts).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let mut parts = vec![];
    let mut recs = vec![];
    let mut players = vec![];
    for pid in &PARTICIPANTS[..n] {
        let (rec, opts) = recorder();
        let p = participant(&srv.base, pid, opts).await;
        players.push(p.publish(media()));
        parts.push(p);
        recs.push(rec);
    }
    let ok = request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    assert_success(&ok, "START_EXPERIMENT");
    (exp, erec, parts, recs, players)
}

/// Ends a test: stops the players, closes every client, then stops the server.
pub async fn close_all(srv: TestServer, exp: Client, parts: Vec<Client>, players: Vec<tokio::task::JoinHandle<()>>) {
    for h in players {
        h.abort();
    }
    for p in parts {
        p.close().await;
    }
    exp.close().await;
    srv.stop().await;
}
