//! Research data of recorded experiments: the event log (`events.jsonl`), the manifest
//! (`manifest.json`) and the export archive ([`export`]), all under
//! `<sessions-dir>/<session_id>/` beside the media files the recorders
//! (`media::recorder`) write there.
//!
//! Invariants:
//! - one writer thread per recorded session writes both files, in the order the hub handed
//!   them over; the hub never waits for the disk;
//! - `events.jsonl` is append-only JSON Lines with a sequence number that continues across
//!   runs and restarts; each batch of lines is handed to the kernel in one `write` as soon as
//!   the queue is empty, and fsynced at least once a second, so a crash loses at most the
//!   last second and never leaves a torn line behind (a torn tail from a power loss is cut
//!   at the next open);
//! - `manifest.json` is replaced atomically (temp file, fsync, rename, fsync dir) on every
//!   change: a file is listed from the moment it is opened (`complete: false`), and gets its
//!   duration, size and SHA-256 when it is finished, or at the next start of the server if
//!   the server died first (`recovered: true`).
//! - times: `t_us` is server wall time in microseconds; `t_ms` and every `start_ms` are
//!   milliseconds since the run's START on the server's monotonic clock (`null` before START).
//! - results computed later from the recordings (face analysis, [`faces`]) are files under
//!   `processed/`, listed in the manifest's `analyses`; while the session records they are
//!   added through its writer ([`SessionRecord::add_analyses`]), otherwise by rewriting the
//!   manifest atomically ([`add_analyses_to`]).

pub mod analyze;
pub mod export;
pub mod faces;
pub mod store;
pub mod uploader;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::media::recorder::{FileClosed, FileOpened};

pub const MANIFEST: &str = "manifest.json";
pub const EVENTS: &str = "events.jsonl";
/// The manifest's `format` field.
pub const MANIFEST_FORMAT: &str = "exphub-recording/1";

/// Server wall time in microseconds since the Unix epoch.
pub fn wall_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub session_id: String,
    /// The event log's file name, beside the manifest.
    pub events: String,
    pub runs: Vec<Run>,
    pub files: Vec<FileEntry>,
    /// Results computed from the recordings afterwards (absent in older manifests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<Analysis>,
}

/// One result file computed from the recordings (e.g. the face analysis of a participant's run).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    /// Path relative to the session directory, e.g. `processed/<participant>.run-1.csv`.
    pub file: String,
    pub run: u32,
    pub participant_id: String,
    /// What was computed: `faces` (OpenFace-style per-frame face analysis).
    pub kind: String,
    /// The recorded files it was computed from, in time order.
    pub sources: Vec<String>,
    /// Rows (one per recorded frame).
    pub frames: u64,
    /// Rows with a face.
    pub faces_found: u64,
    pub bytes: u64,
    pub sha256: String,
    /// When it was written (server wall time, µs).
    pub created_us: i64,
}

/// One experiment of the session (a session can be run again after an experiment ended).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub run: u32,
    pub created_us: i64,
    /// START in server wall time (µs); `start_ms` of files and `t_ms` of events count from it.
    pub start_us: Option<i64>,
    /// SynthARium's `start_time`/`end_time` (ms) as the session file has them.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub end_us: Option<i64>,
    /// Cluster mode: the node that ran it and its placement's epoch (where its files are in
    /// the object store: `sessions/<session_id>/e<epoch>-<node>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// One media file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub file: String,
    pub run: u32,
    pub participant_id: String,
    /// `raw` (as received, before filters) or `processed` (what the others saw).
    pub kind: String,
    /// `video` or `audio`.
    pub media: String,
    pub codec: String,
    pub container: String,
    /// A rejoin (or a long pause of the publisher) starts a new segment.
    pub segment: u32,
    /// Milliseconds since START of the file's first frame: add a frame's time in the file to
    /// get its time since START.
    pub start_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A viewer-side version (asymmetric filters): who saw it, and its filters. Absent: the
    /// raw stream, or the processed one everybody else saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Value>,
    pub duration_ms: Option<f64>,
    pub frames: Option<u64>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// The file was finished (trailer written, checksum taken).
    pub complete: bool,
    /// Filled in after a crash of the server from what the file holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    /// What ended the file early (e.g. a full disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Manifest {
    pub fn new(session_id: &str) -> Self {
        Self {
            format: MANIFEST_FORMAT.into(),
            session_id: session_id.into(),
            events: EVENTS.into(),
            runs: vec![],
            files: vec![],
            analyses: vec![],
        }
    }

    /// Lists `new` results, replacing earlier entries of the same file.
    pub fn add_analyses(&mut self, new: &[Analysis]) {
        self.analyses.retain(|a| !new.iter().any(|n| n.file == a.file));
        self.analyses.extend(new.iter().cloned());
    }

    /// Reads `<dir>/manifest.json`: `Ok(None)` if there is none.
    pub fn load(dir: &Path) -> io::Result<Option<Self>> {
        match fs::read(dir.join(MANIFEST)) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).unwrap_or_default();
        b.push(b'\n');
        b
    }

    /// Fills in files that were never finished (the server died) from what they hold.
    /// True if anything changed.
    pub fn recover(&mut self, dir: &Path) -> bool {
        let mut changed = false;
        for f in self.files.iter_mut().filter(|f| !f.complete && f.sha256.is_none()) {
            let path = dir.join(&f.file);
            if let Ok(p) = crate::media::mux::probe(&path) {
                f.duration_ms = Some(p.duration_ms.round());
                f.frames = Some(p.frames);
            }
            if let Ok((bytes, sha)) = crate::media::recorder::sha256_file(&path) {
                f.bytes = Some(bytes);
                f.sha256 = Some(sha);
            }
            f.recovered = true;
            changed = true;
        }
        changed
    }
}

/// Adds `new` results to the manifest of session directory `dir` (atomic rewrite). Only for a
/// directory no [`SessionRecord`] writes into (the hub uses [`SessionRecord::add_analyses`]
/// while the session records). Errors if there is no manifest.
pub fn add_analyses_to(dir: &Path, new: &[Analysis]) -> io::Result<()> {
    let mut m = Manifest::load(dir)?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no manifest.json"))?;
    m.add_analyses(new);
    crate::session::store::write_file_atomic(&dir.join(MANIFEST), &m.bytes())
}

/// Appends one event to the log of session directory `dir` while no [`SessionRecord`] writes
/// into it (e.g. post-processing after the experiment): numbered after the last line, `run` and
/// `t_ms` null (outside any run), fsynced.
pub fn append_event(dir: &Path, kind: &str, fields: Value) -> io::Result<()> {
    let (mut log, seq) = open_log(&dir.join(EVENTS))?;
    let mut m = Map::new();
    m.insert("seq".into(), json!(seq));
    m.insert("t_us".into(), json!(wall_us()));
    m.insert("t_ms".into(), Value::Null);
    m.insert("run".into(), Value::Null);
    m.insert("type".into(), json!(kind));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    let mut line = serde_json::to_vec(&Value::Object(m)).map_err(io::Error::other)?;
    line.push(b'\n');
    log.write_all(&line)?;
    log.sync_data()
}

/// Recovers the manifests of every session directory under `sessions_dir` (at start-up,
/// before any recording can run). Problems are logged, never fatal.
pub fn recover_all(sessions_dir: &Path) {
    let Ok(rd) = fs::read_dir(sessions_dir) else { return };
    for e in rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        let dir = e.path();
        match Manifest::load(&dir) {
            Ok(Some(mut m)) => {
                if m.recover(&dir) {
                    match crate::session::store::write_file_atomic(&dir.join(MANIFEST), &m.bytes()) {
                        Ok(()) => tracing::warn!(dir = %dir.display(), "recordings of an interrupted run recovered"),
                        Err(e) => tracing::error!(dir = %dir.display(), error = %e, "cannot update a manifest"),
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(dir = %dir.display(), error = %e, "manifest.json does not parse; left as it is"),
        }
    }
}

enum Job {
    Event(Value),
    Manifest(Vec<u8>),
    /// From now on, copy finished files to this object store (`None`: stop copying).
    UploadTo(Option<UploadTo>),
    /// A finished media file to copy (after what was queued before it is written).
    Upload(uploader::Upload),
    /// Copy the event log now (the run ended).
    UploadEvents,
}

/// Where a session's research files are copied while it records (`--object-store`).
#[derive(Clone)]
pub struct UploadTo {
    pub uploader: uploader::Uploader,
    /// The run's epoch and node in cluster mode.
    pub tag: store::RunTag,
}

/// How often the event log of a running experiment is copied to the object store (and at
/// the end of each run, and when the record closes).
const EVENTS_UPLOAD_EVERY: Duration = Duration::from_secs(60);

/// The research data of one session directory while the hub records into it: the manifest
/// (owned here, written by the writer thread) and the event log.
pub struct SessionRecord {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The current run and its START on the monotonic clock.
    pub run: u32,
    pub start: Option<Instant>,
    tx: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl SessionRecord {
    /// Opens (creating) `<sessions_dir>/<session_id>/` for a new run.
    pub fn open(sessions_dir: &Path, session_id: &str) -> io::Result<Self> {
        if !crate::session::is_file_safe_id(session_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("session id {session_id:?} cannot name a recording directory"),
            ));
        }
        let dir = sessions_dir.join(session_id);
        fs::create_dir_all(&dir)?;
        let manifest = match Manifest::load(&dir) {
            Ok(Some(m)) => m,
            Ok(None) => Manifest::new(session_id),
            Err(e) => {
                // Kept for a human to look at; a new manifest starts beside it.
                let aside = dir.join(format!("manifest.broken-{}.json", wall_us()));
                tracing::error!(dir = %dir.display(), error = %e, moved_to = %aside.display(), "manifest.json does not parse");
                fs::rename(dir.join(MANIFEST), &aside)?;
                Manifest::new(session_id)
            }
        };
        let (log, next_seq) = open_log(&dir.join(EVENTS))?;
        let (tx, rx) = mpsc::channel();
        let manifest_path = dir.join(MANIFEST);
        let sid = session_id.to_owned();
        let writer = std::thread::Builder::new()
            .name(format!("record-{session_id}"))
            .spawn(move || write_loop(rx, log, next_seq, &manifest_path, &sid))?;
        let mut r = Self { dir, manifest, run: 0, start: None, tx: Some(tx), writer: Some(writer) };
        r.new_run();
        Ok(r)
    }

    /// A new experiment of this session.
    pub fn new_run(&mut self) {
        self.run = self.manifest.runs.iter().map(|r| r.run).max().unwrap_or(0) + 1;
        self.start = None;
        self.manifest.runs.push(Run {
            run: self.run,
            created_us: wall_us(),
            start_us: None,
            start_time: None,
            end_time: None,
            end_us: None,
            node_id: None,
            epoch: None,
        });
        self.save_manifest();
    }

    fn current_run(&mut self) -> Option<&mut Run> {
        let run = self.run;
        self.manifest.runs.iter_mut().find(|r| r.run == run)
    }

    /// Copies this record's finished files to an object store from now on (at CREATE, for the
    /// new run: in cluster mode each run has its own epoch and node). The run keeps them.
    pub fn upload_to(&mut self, to: Option<UploadTo>) {
        let tag = to.as_ref().and_then(|t| t.tag.clone());
        if let Some(r) = self.current_run() {
            (r.epoch, r.node_id) = tag.map_or((None, None), |(e, n)| (Some(e), Some(n)));
        }
        self.send(Job::UploadTo(to));
        self.save_manifest();
    }

    /// START: time zero of the run.
    pub fn started(&mut self, at: Instant, start_time: i64) {
        self.start = Some(at);
        let us = wall_us();
        if let Some(r) = self.current_run() {
            r.start_us = Some(us);
            r.start_time = Some(start_time);
        }
        self.save_manifest();
    }

    /// The run's START was earlier, on another server (a run resumed after a failover): its
    /// wall-clock time, so that the manifest gives the original START.
    pub fn started_at_us(&mut self, start_us: i64) {
        if let Some(r) = self.current_run() {
            r.start_us = Some(start_us);
        }
        self.save_manifest();
    }

    pub fn ended(&mut self, end_time: i64) {
        let us = wall_us();
        if let Some(r) = self.current_run() {
            r.end_us = Some(us);
            r.end_time = Some(end_time);
        }
        self.save_manifest();
        self.send(Job::UploadEvents);
    }

    /// Appends an event: `kind` plus `fields` (an object), stamped with the time.
    pub fn event(&self, kind: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("t_us".into(), json!(wall_us()));
        let t_ms = self.start.map(|s| {
            let now = Instant::now();
            (now.saturating_duration_since(s).as_secs_f64() * 1_000_000.0).round() / 1000.0
        });
        m.insert("t_ms".into(), json!(t_ms));
        m.insert("run".into(), json!(self.run));
        m.insert("type".into(), json!(kind));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        self.send(Job::Event(Value::Object(m)));
    }

    /// `branch`: for a viewer-side version, its viewers and filter list.
    pub fn file_opened(&mut self, f: &FileOpened, branch: Option<(Vec<String>, Value)>) {
        let (viewers, filters) = branch.map_or((None, None), |(v, f)| (Some(v), Some(f)));
        self.manifest.files.push(FileEntry {
            file: f.file.clone(),
            run: self.run,
            participant_id: f.participant_id.clone(),
            kind: f.kind.as_str().into(),
            media: f.media.into(),
            codec: f.codec.into(),
            container: f.container.into(),
            segment: f.segment,
            start_ms: f.start_ms,
            width: f.width,
            height: f.height,
            viewers,
            filters,
            duration_ms: None,
            frames: None,
            bytes: None,
            sha256: None,
            complete: false,
            recovered: false,
            error: None,
        });
        self.save_manifest();
    }

    pub fn file_closed(&mut self, c: &FileClosed) {
        if let Some(f) = self.manifest.files.iter_mut().rev().find(|f| f.file == c.file) {
            f.duration_ms = Some(c.duration_ms);
            f.frames = Some(c.frames);
            f.bytes = Some(c.bytes);
            f.sha256 = c.sha256.clone();
            f.complete = c.error.is_none();
            f.error = c.error.clone();
            // A finished file goes to the object store (if one is configured), with the
            // checksum taken for the manifest; a file ended by an error is copied as it is.
            let u = uploader::Upload {
                session_id: self.manifest.session_id.clone(),
                tag: None, // the writer's current target's
                rel: f.file.clone(),
                local: self.dir.join(&f.file),
                kind: f.kind.clone(),
                sha256: f.sha256.clone(),
                finished: Instant::now(),
                complete: f.complete,
                if_absent: false,
            };
            self.send(Job::Upload(u));
        }
        self.save_manifest();
    }

    /// Lists `new` results in the manifest (see [`Manifest::add_analyses`]).
    pub fn add_analyses(&mut self, new: &[Analysis]) {
        self.manifest.add_analyses(new);
        self.save_manifest();
    }

    /// Files opened and not yet finished.
    pub fn open_files(&self) -> usize {
        self.manifest.files.iter().filter(|f| !f.complete && f.sha256.is_none() && f.error.is_none()).count()
    }

    fn save_manifest(&self) {
        self.send(Job::Manifest(self.manifest.bytes()));
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
    }

    /// Writes what is queued, fsyncs and stops the writer thread (blocking: call it from a
    /// blocking context).
    pub fn close(mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Opens the event log for appending: cuts a torn last line, and finds the next sequence
/// number.
fn open_log(path: &Path) -> io::Result<(fs::File, u64)> {
    let mut f = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    let len = f.metadata()?.len();
    let tail_len = len.min(64 * 1024);
    let mut tail = vec![0u8; tail_len as usize];
    f.seek(SeekFrom::Start(len - tail_len))?;
    f.read_exact(&mut tail)?;
    if !tail.is_empty() && tail.last() != Some(&b'\n') {
        let keep = tail.iter().rposition(|&b| b == b'\n').map_or(len - tail_len, |i| len - tail_len + i as u64 + 1);
        f.set_len(keep)?;
        tail.truncate((keep - (len - tail_len)) as usize);
    }
    let next = tail
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|l| serde_json::from_slice::<Value>(l).ok())
        .and_then(|v| v.get("seq").and_then(Value::as_u64))
        .map_or(1, |s| s + 1);
    Ok((f, next))
}

fn write_loop(rx: mpsc::Receiver<Job>, mut log: fs::File, mut seq: u64, manifest: &Path, session_id: &str) {
    let mut dirty = false;
    let mut target: Option<UploadTo> = None;
    // Copies waiting until what was queued before them is written.
    let mut uploads: Vec<uploader::Upload> = vec![];
    let mut manifest_changed = false;
    let mut events_now = false;
    let mut events_sent: Option<Instant> = None;
    let dir = manifest.parent().unwrap_or(Path::new(".")).to_owned();
    let copy = |target: &Option<UploadTo>, rel: &str, kind: &str, complete: bool| {
        if let Some(t) = target {
            t.uploader.send(uploader::Upload {
                session_id: session_id.to_owned(),
                tag: t.tag.clone(),
                rel: rel.to_owned(),
                local: dir.join(rel),
                kind: kind.to_owned(),
                sha256: None,
                finished: Instant::now(),
                complete,
                if_absent: false,
            });
        }
    };
    let mut last_sync = Instant::now();
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut pending_manifest: Option<Vec<u8>> = None;
    let mut closed = false;
    while !closed {
        // Wait for work, but wake up to fsync within a second of a write.
        let first = if dirty {
            match rx.recv_timeout(Duration::from_secs(1).saturating_sub(last_sync.elapsed())) {
                Ok(j) => Some(j),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    closed = true;
                    None
                }
            }
        } else {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        };
        let mut take = |j: Job, batch: &mut Vec<u8>| match j {
            Job::Event(mut v) => {
                if let Value::Object(m) = &mut v {
                    // `seq` first, for the human reader.
                    let mut o = Map::new();
                    o.insert("seq".into(), json!(seq));
                    o.extend(std::mem::take(m));
                    *m = o;
                }
                seq += 1;
                if serde_json::to_writer(&mut *batch, &v).is_ok() {
                    batch.push(b'\n');
                }
            }
            Job::Manifest(b) => pending_manifest = Some(b),
            Job::UploadTo(t) => target = t,
            Job::Upload(u) => uploads.push(u),
            Job::UploadEvents => events_now = true,
        };
        if let Some(j) = first {
            take(j, &mut batch);
        }
        loop {
            match rx.try_recv() {
                Ok(j) => take(j, &mut batch),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            // One write of whole lines: a crash of the process cannot tear a line.
            if let Err(e) = log.write_all(&batch) {
                tracing::error!(error = %e, "cannot append to events.jsonl");
            }
            batch.clear();
            dirty = true;
        }
        if let Some(b) = pending_manifest.take() {
            match crate::session::store::write_file_atomic(manifest, &b) {
                Ok(()) => manifest_changed = true,
                Err(e) => tracing::error!(error = %e, "cannot write manifest.json"),
            }
        }
        if let Some(t) = &target {
            for mut u in uploads.drain(..) {
                u.tag = t.tag.clone();
                t.uploader.send(u);
            }
            if std::mem::take(&mut manifest_changed) {
                copy(&target, MANIFEST, "manifest", false);
            }
            // The event log: at the end of a run, and every minute while lines are written.
            if std::mem::take(&mut events_now)
                || (dirty && events_sent.is_none_or(|t| t.elapsed() >= EVENTS_UPLOAD_EVERY))
            {
                copy(&target, EVENTS, "events", false);
                events_sent = Some(Instant::now());
            }
        } else {
            uploads.clear();
        }
        if dirty && (closed || last_sync.elapsed() >= Duration::from_secs(1)) {
            let _ = log.sync_data();
            dirty = false;
            last_sync = Instant::now();
        }
    }
    let _ = log.sync_data();
    // The record closes: the final manifest and event log.
    copy(&target, MANIFEST, "manifest", true);
    copy(&target, EVENTS, "events", true);
}

/// Files of each participant of a session directory, for `RECORDING_LIST`: from the manifest
/// when there is one (by media), else by file name as SynthARium does.
pub fn list(dir: &Path, participant_ids: &[String]) -> HashMap<String, (Vec<String>, Vec<String>)> {
    let mut out: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    if let Ok(Some(m)) = Manifest::load(dir) {
        for f in &m.files {
            let e = out.entry(f.participant_id.clone()).or_default();
            if f.media == "audio" {
                e.1.push(f.file.clone());
            } else {
                e.0.push(f.file.clone());
            }
        }
        return out;
    }
    let Ok(rd) = fs::read_dir(dir) else { return out };
    let mut files: Vec<String> = rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
    files.sort();
    for pid in participant_ids {
        let mine = |ext: &[&str]| -> Vec<String> {
            files
                .iter()
                .filter(|f| f.starts_with(pid.as_str()) && ext.iter().any(|x| f.ends_with(x)))
                .cloned()
                .collect()
        };
        out.insert(pid.clone(), (mine(&[".mp4", ".webm", ".mkv"]), mine(&[".mp3", ".ogg", ".opus"])));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let p = std::env::temp_dir().join(format!("exphub-record-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn lines(dir: &Path) -> Vec<Value> {
        fs::read_to_string(dir.join("s1").join(EVENTS))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn events_are_numbered_across_runs_and_a_torn_line_is_cut() {
        let d = temp();
        let mut r = SessionRecord::open(&d, "s1").unwrap();
        r.event("a", json!({"x": 1}));
        r.started(Instant::now(), 5);
        r.event("b", json!({}));
        r.close();
        let l = lines(&d);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0]["seq"].as_u64(), l[1]["seq"].as_u64()), (Some(1), Some(2)));
        assert!(l[0]["t_ms"].is_null() && l[1]["t_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(l[0]["x"], 1);
        // A power loss tore the last line.
        let mut f = OpenOptions::new().append(true).open(d.join("s1").join(EVENTS)).unwrap();
        f.write_all(b"{\"seq\":3,\"ty").unwrap();
        drop(f);
        let r = SessionRecord::open(&d, "s1").unwrap();
        assert_eq!(r.run, 2);
        r.event("c", json!({}));
        r.close();
        let l = lines(&d);
        assert_eq!(l.len(), 3);
        assert_eq!(l[2]["seq"].as_u64(), Some(3));
        assert_eq!(l[2]["run"].as_u64(), Some(2));
        let m = Manifest::load(&d.join("s1")).unwrap().unwrap();
        assert_eq!(m.runs.len(), 2);
        assert_eq!(m.runs[0].start_time, Some(5));
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_session_id_cannot_name_a_path() {
        let d = temp();
        assert!(SessionRecord::open(&d, "../escape").is_err());
        assert!(SessionRecord::open(&d, "").is_err());
        assert!(!d.parent().unwrap().join("escape").exists());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn analyses_are_listed_once_per_file_and_old_manifests_load() {
        let d = temp();
        let r = SessionRecord::open(&d, "s1").unwrap();
        r.close();
        let dir = d.join("s1");
        // A manifest written before `analyses` existed has none, and is written back without it.
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert!(m.analyses.is_empty());
        assert!(!String::from_utf8(m.bytes()).unwrap().contains("analyses"));
        let a = |file: &str, frames: u64| Analysis {
            file: file.into(),
            run: 1,
            participant_id: "p".into(),
            kind: "faces".into(),
            sources: vec!["p_raw_video_1-1.webm".into()],
            frames,
            faces_found: 1,
            bytes: 5,
            sha256: "0".repeat(64),
            created_us: 1,
        };
        add_analyses_to(&dir, &[a("processed/p.run-1.csv", 3), a("processed/q.run-1.csv", 4)]).unwrap();
        add_analyses_to(&dir, &[a("processed/p.run-1.csv", 9)]).unwrap();
        let m = Manifest::load(&dir).unwrap().unwrap();
        let listed: Vec<(&str, u64)> = m.analyses.iter().map(|a| (a.file.as_str(), a.frames)).collect();
        assert_eq!(listed, [("processed/q.run-1.csv", 4), ("processed/p.run-1.csv", 9)]);
        assert_eq!(m.runs.len(), 1);
        // Events outside a run continue the log's numbering.
        append_event(&dir, "post_processing_started", json!({"kind": "faces"})).unwrap();
        let r = SessionRecord::open(&d, "s1").unwrap();
        r.event("x", json!({}));
        r.close();
        let l = lines(&d);
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0]["seq"].as_u64(), &l[0]["type"], &l[0]["run"]),
            (Some(1), &json!("post_processing_started"), &Value::Null)
        );
        assert_eq!(l[1]["seq"].as_u64(), Some(2));
        assert!(add_analyses_to(&d.join("none"), &[]).is_err());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_broken_manifest_is_kept_aside() {
        let d = temp();
        fs::create_dir_all(d.join("s1")).unwrap();
        fs::write(d.join("s1").join(MANIFEST), b"{not json").unwrap();
        let r = SessionRecord::open(&d, "s1").unwrap();
        r.close();
        let names: Vec<String> =
            fs::read_dir(d.join("s1")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().any(|n| n.starts_with("manifest.broken-")), "{names:?}");
        let kept = names.iter().find(|n| n.starts_with("manifest.broken-")).unwrap();
        assert_eq!(fs::read(d.join("s1").join(kept)).unwrap(), b"{not json");
        assert!(Manifest::load(&d.join("s1")).unwrap().is_some());
        let _ = fs::remove_dir_all(d);
    }
}
