//! `record::uploader`: copies finished research files to the object store (`--object-store`)
//! and, in cluster mode, indexes each copy in the `artifacts` table.
//!
//! One thread per server with its own small tokio runtime, fed by a bounded queue. It reads
//! finished files only (a segment at its end, a file closed at the experiment's end, a file
//! completed by crash recovery), so the recorders and the record writers never wait for it:
//! they hand over a job without blocking ([`Uploader::send`]); a full queue drops the job
//! (counted as failed, logged) and the file goes up at the next start, which checks every
//! recorded file against the store ([`Uploader::resync`]). A failed upload is retried with
//! backoff (1 s doubling to 60 s, ten tries); the manifest and the event log are coalesced,
//! so that only their newest version waits in the queue. Local copies are kept.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::{self, Key, ObjectStore, ObjectStoreExt, RunTag};
use crate::metrics::METRICS;

/// Jobs waiting at most (beyond it a job is dropped and done at the next start).
const QUEUE: usize = 4096;
/// Tries of one upload before it is left to the next start.
const TRIES: u32 = 10;
/// Files up to this size go up in one request; larger ones in parts of this size.
const PART: usize = 8 << 20;

/// One file to upload.
#[derive(Debug, Clone)]
pub struct Upload {
    pub session_id: String,
    /// The run's epoch and node in cluster mode (part of the key).
    pub tag: RunTag,
    /// The path relative to the session directory (the key's last part, and the archive's).
    pub rel: String,
    pub local: PathBuf,
    /// `raw` / `processed` (media), `manifest`, `events`, `analysis`.
    pub kind: String,
    /// Known already (the manifest's checksum of a media file); computed otherwise.
    pub sha256: Option<String>,
    /// When the file was finished (the upload lag counts from here).
    pub finished: Instant,
    /// The file is complete (not one still growing, such as the event log of a running run).
    pub complete: bool,
    /// Skip if the store already holds an object of the file's size (the start-up check; a
    /// manifest or log rewritten to the same size is not caught, its next change copies it).
    pub if_absent: bool,
}

impl Upload {
    fn key(&self) -> Key {
        store::key(&self.session_id, &self.tag, &self.rel)
    }
}

/// Where the uploader writes.
pub struct Target {
    pub store: Arc<dyn ObjectStore>,
    /// Cluster mode: the database of the `artifacts` index, and this node's id.
    pub index: Option<(String, String)>,
    /// Told each upload's key and lag (measurements: `examples/upload_lag.rs`).
    pub on_upload: Option<mpsc::Sender<(String, Duration)>>,
}

/// The handle of the uploader thread (cheap to clone).
#[derive(Clone)]
pub struct Uploader {
    tx: mpsc::SyncSender<Msg>,
    done: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

enum Msg {
    Upload(Box<Upload>),
    /// Finish what is queued (no more retries) and stop.
    Stop,
}

impl Uploader {
    /// Starts the uploader thread.
    pub fn start(target: Target) -> std::io::Result<Uploader> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let t = std::thread::Builder::new().name("uploader".into()).spawn(move || run(target, rx))?;
        Ok(Uploader { tx, done: Arc::new(std::sync::Mutex::new(Some(t))) })
    }

    /// Queues an upload without waiting: a full queue drops it (counted, logged).
    pub fn send(&self, u: Upload) {
        match self.tx.try_send(Msg::Upload(Box::new(u))) {
            Ok(()) => METRICS.upload_queue.add(1),
            Err(mpsc::TrySendError::Full(Msg::Upload(u))) => {
                METRICS.uploads_failed.inc();
                tracing::error!(file = %u.local.display(), "upload queue full; the file is uploaded at the next start");
            }
            Err(_) => {}
        }
    }

    /// Queues a check of every recorded file under `sessions_dir` against the store (at
    /// start-up): files the store lacks (a crash lost the queue, a recovered file) go up.
    pub fn resync(&self, sessions_dir: &Path, this_node: &RunTag) {
        let Ok(rd) = std::fs::read_dir(sessions_dir) else { return };
        for e in rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            let dir = e.path();
            let Ok(Some(m)) = super::Manifest::load(&dir) else { continue };
            // A run recorded before cluster mode (or by a single node) has no tag; in cluster
            // mode it is filed under this node, epoch 0.
            let tag_of = |run: u32| -> RunTag {
                let r = m.runs.iter().find(|r| r.run == run);
                match (r.and_then(|r| r.epoch), r.and_then(|r| r.node_id.clone()), this_node) {
                    (Some(e), Some(n), Some(_)) => Some((e, n)),
                    (_, _, Some((_, node))) => Some((0, node.clone())),
                    _ => None,
                }
            };
            let now = Instant::now();
            for f in m.files.iter().filter(|f| f.sha256.is_some()) {
                self.send(Upload {
                    session_id: m.session_id.clone(),
                    tag: tag_of(f.run),
                    rel: f.file.clone(),
                    local: dir.join(&f.file),
                    kind: f.kind.clone(),
                    sha256: f.sha256.clone(),
                    finished: now,
                    complete: true,
                    if_absent: true,
                });
            }
            let last = tag_of(m.runs.iter().map(|r| r.run).max().unwrap_or(0));
            for (rel, kind) in [(super::MANIFEST, "manifest"), (super::EVENTS, "events")] {
                self.send(Upload {
                    session_id: m.session_id.clone(),
                    tag: last.clone(),
                    rel: rel.into(),
                    local: dir.join(rel),
                    kind: kind.into(),
                    sha256: None,
                    finished: now,
                    complete: true,
                    // Only if it changed since its last copy (a start does not copy every log).
                    if_absent: true,
                });
            }
        }
    }

    /// Uploads what is queued (failures are not retried any more) and stops the thread,
    /// waiting at most `limit` (blocking: call it from a blocking context).
    pub fn close(&self, limit: Duration) {
        let _ = self.tx.send(Msg::Stop);
        let Some(t) = self.done.lock().ok().and_then(|mut d| d.take()) else { return };
        let deadline = Instant::now() + limit;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!(
                queued = METRICS.upload_queue.get(),
                "uploads left at shutdown; they go up at the next start"
            );
        }
    }
}

/// A job and its retry state.
struct Pending {
    u: Upload,
    tries: u32,
    due: Instant,
}

fn run(target: Target, rx: mpsc::Receiver<Msg>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "the uploader cannot start; nothing is uploaded");
            return;
        }
    };
    let mut up = Uploading { store: target.store, index: target.index, db: None };
    let on_upload = target.on_upload;
    let mut queue: Vec<Pending> = vec![];
    let mut stopping = false;
    loop {
        // Wait for a job, or for the next retry to be due.
        let wait = queue.iter().map(|p| p.due).min().map(|d| d.saturating_duration_since(Instant::now()));
        let first = match (stopping, wait) {
            (true, _) => None,
            (false, Some(w)) if w.is_zero() => rx.try_recv().ok(),
            (false, Some(w)) => match rx.recv_timeout(w) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                // Every handle is gone without a Stop: finish what is queued, as for a Stop.
                Err(mpsc::RecvTimeoutError::Disconnected) => Some(Msg::Stop),
            },
            (false, None) => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        for m in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match m {
                Msg::Stop => stopping = true,
                Msg::Upload(u) => {
                    METRICS.upload_queue.add(-1);
                    add(&mut queue, *u);
                }
            }
        }
        let now = Instant::now();
        let Some(i) = queue.iter().position(|p| p.due <= now || stopping) else {
            if stopping && queue.is_empty() {
                break;
            }
            continue;
        };
        let mut p = queue.remove(i);
        match rt.block_on(up.upload(&p.u)) {
            Ok(Some(bytes)) => {
                METRICS.uploads_done.inc();
                METRICS.upload_bytes.add(bytes);
                let lag = p.u.finished.elapsed();
                METRICS.upload_lag.observe(lag);
                if let Some(tx) = &on_upload {
                    let _ = tx.send((p.u.key().to_string(), lag));
                }
            }
            Ok(None) => {} // already there
            Err(e) => {
                p.tries += 1;
                if p.tries >= TRIES || stopping {
                    METRICS.uploads_failed.inc();
                    tracing::error!(key = %p.u.key(), error = %e, tries = p.tries, "upload failed; the file is uploaded at the next start");
                } else {
                    let backoff = Duration::from_secs(1 << (p.tries - 1).min(6)).min(Duration::from_secs(60));
                    if p.tries == 1 {
                        tracing::warn!(key = %p.u.key(), error = %e, "upload failed; retrying with backoff");
                    }
                    p.due = Instant::now() + backoff;
                    add_pending(&mut queue, p);
                }
            }
        }
        if stopping && queue.is_empty() {
            break;
        }
    }
}

/// Queues `u`; a newer version of a growing file (manifest, event log) replaces a waiting one.
fn add(queue: &mut Vec<Pending>, u: Upload) {
    add_pending(queue, Pending { u, tries: 0, due: Instant::now() })
}

fn add_pending(queue: &mut Vec<Pending>, p: Pending) {
    let replaces = |q: &Pending| {
        q.u.local == p.u.local && q.u.tag == p.u.tag && matches!(q.u.kind.as_str(), "manifest" | "events")
    };
    match queue.iter_mut().find(|q| replaces(q)) {
        // Keep the older finish time (the lag of the first change) and the earlier due time.
        Some(q) => {
            let (finished, due) = (q.u.finished.min(p.u.finished), q.due.min(p.due));
            *q = Pending { due, ..p };
            q.u.finished = finished;
        }
        None => queue.push(p),
    }
}

struct Uploading {
    store: Arc<dyn ObjectStore>,
    index: Option<(String, String)>,
    db: Option<crate::cluster::Db>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Uploading {
    /// Uploads one file and indexes it; the bytes uploaded, or `None` if the store had it.
    async fn upload(&mut self, u: &Upload) -> Result<Option<u64>, BoxError> {
        let key = u.key();
        let mut file = std::fs::File::open(&u.local)?;
        let len = file.metadata()?.len();
        if u.if_absent {
            match self.store.head(&key).await {
                Ok(m) if m.size == len => return Ok(None),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (bytes, sha) = if len as usize <= PART {
            // Small files (manifest, event log, short segments) in one request; the checksum of
            // a file without one is taken from the same bytes.
            let mut b = Vec::with_capacity(len as usize);
            file.read_to_end(&mut b)?;
            let sha = u.sha256.clone().unwrap_or_else(|| hex(ring::digest::digest(&ring::digest::SHA256, &b).as_ref()));
            let n = b.len() as u64;
            self.store.put(&key, b.into()).await?;
            (n, sha)
        } else {
            let mut w = object_store::WriteMultipart::new_with_chunk_size(self.store.put_multipart(&key).await?, PART);
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0u64;
            // The length it had when we looked: a file never grows once finished, and the
            // event log's later lines go up with its next version.
            let mut left = len;
            let result: Result<(), BoxError> = async {
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let got = file.read(&mut buf[..want])?;
                    if got == 0 {
                        break;
                    }
                    if u.sha256.is_none() {
                        ctx.update(&buf[..got]);
                    }
                    w.wait_for_capacity(4).await?;
                    w.write(&buf[..got]);
                    n += got as u64;
                    left -= got as u64;
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                let _ = w.abort().await;
                return Err(e);
            }
            w.finish().await?;
            (n, u.sha256.clone().unwrap_or_else(|| hex(ctx.finish().as_ref())))
        };
        if let Some((url, node)) = &self.index {
            if self.db.is_none() {
                self.db = Some(crate::cluster::Db::connect(url).await?);
            }
            if let Some(db) = &self.db {
                let epoch = u.tag.as_ref().map_or(0, |(e, _)| *e);
                let node = u.tag.as_ref().map_or(node.as_str(), |(_, n)| n.as_str());
                db.record_artifact(&crate::cluster::db::Artifact {
                    session_id: u.session_id.clone(),
                    epoch,
                    node_id: node.to_owned(),
                    path: u.rel.clone(),
                    kind: u.kind.clone(),
                    bytes: bytes as i64,
                    sha256: sha,
                    complete: u.complete,
                    object_key: key.to_string(),
                })
                .await?;
            }
        }
        tracing::debug!(%key, bytes, "uploaded");
        Ok(Some(bytes))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(rel: &str, kind: &str, finished: Instant) -> Upload {
        Upload {
            session_id: "s1".into(),
            tag: None,
            rel: rel.into(),
            local: PathBuf::from("/d").join(rel),
            kind: kind.into(),
            sha256: None,
            finished,
            complete: false,
            if_absent: false,
        }
    }

    #[test]
    fn only_the_newest_manifest_and_log_wait_and_media_files_never_merge() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        let mut q = vec![];
        add(&mut q, upload("manifest.json", "manifest", t0));
        add(&mut q, upload("a.webm", "raw", t0));
        add(&mut q, upload("events.jsonl", "events", t0));
        let mut newest = upload("manifest.json", "manifest", later);
        newest.complete = true;
        add(&mut q, newest);
        add(&mut q, upload("a.webm", "raw", later));
        let listed: Vec<(&str, bool)> = q.iter().map(|p| (p.u.rel.as_str(), p.u.complete)).collect();
        assert_eq!(listed, [("manifest.json", true), ("a.webm", false), ("events.jsonl", false), ("a.webm", false)]);
        // The lag counts from the first change that waited.
        assert_eq!(q[0].u.finished, t0);
    }
}
