//! Session designs in the cluster database: in cluster mode the table `sessions` (one JSON
//! document per session and its version) is their system of record, and every node keeps the
//! sessions in memory as a cache.
//!
//! - Writes ([`Db::write_session`]) are a compare-and-set on the version the writer holds, one
//!   statement (`exphub_session_write`), committed before the caller replies; a write that lost
//!   the race changes nothing and says so. [`Db::write_change`] re-reads and re-applies a small
//!   change (an append or a single-field set) up to [`RETRIES`] times.
//! - Every write and delete is announced on the channel `exphub_events` at commit:
//!   `{"t":"session_changed","id":…,"v":…,"origin":<node>}` or `{"t":"session_deleted",…}`.
//!   [`listen`] keeps one `LISTEN` connection per node on its own task, re-reads the row of
//!   each announcement from another node (the payload is never trusted for content) and hands
//!   the row to the hub; after every (re)connection it hands over every session (a notification
//!   may have been missed meanwhile). A dropped connection is re-opened with backoff.
//! - [`import`] and [`dump`]: `exphub sessions import DIR` / `dump DIR`.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{Db, DbError};
use crate::session::{self, Session, SessionId};

/// How often a small change is re-read and re-applied after losing a race.
pub const RETRIES: usize = 3;

/// The channel of cluster events.
pub const CHANNEL: &str = "exphub_events";

/// The `application_name` of every node's event connection.
pub const APPLICATION_NAME: &str = "exphub-events";

const ALL: &str = "SELECT session_id, version, doc::text FROM sessions ORDER BY session_id";
const ONE: &str = "SELECT session_id, version, doc::text FROM sessions WHERE session_id = $1";

/// A session as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub version: i64,
    pub session: Session,
}

/// What the hub learns from the database about sessions other nodes changed.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few per session change; boxing would buy nothing
pub enum SessionEvent {
    /// Session `id` as the database holds it now (`None`: deleted).
    Row { id: SessionId, row: Option<Stored> },
    /// Every session, after the event connection was (re)opened.
    All(Vec<Stored>),
}

/// A row's document as a session; a document that is not a valid session (or not this row's)
/// is an error, reported by the caller and never overwritten by this node.
fn parse_row(id: &str, version: i64, doc: &str) -> Result<Stored, String> {
    let session = session::parse_session_str(doc).map_err(|e| format!("session {id:?} in the database: {e}"))?;
    if session.id != id {
        return Err(format!("session {id:?} in the database holds the document of {:?}", session.id));
    }
    Ok(Stored { version, session })
}

fn rows(rows: Vec<tokio_postgres::Row>) -> (Vec<Stored>, Vec<String>) {
    let mut ok = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for r in rows {
        match parse_row(r.get(0), r.get(1), r.get(2)) {
            Ok(s) => ok.push(s),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

fn doc(s: &Session) -> Result<String, DbError> {
    serde_json::to_string(s).map_err(|e| DbError::Query(format!("cannot encode session {}: {e}", s.id)))
}

impl Db {
    /// Every session, and the rows that are not valid sessions (reported, left alone).
    pub async fn sessions(&self) -> Result<(Vec<Stored>, Vec<String>), DbError> {
        Ok(rows(self.query(ALL, &[]).await?))
    }

    /// Session `id` as the database holds it (`None`: there is no such row).
    pub async fn session(&self, id: &str) -> Result<Option<Stored>, DbError> {
        let (mut ok, bad) = rows(self.query(ONE, &[&id]).await?);
        match bad.into_iter().next() {
            Some(e) => Err(DbError::Query(e)),
            None => Ok(ok.pop()),
        }
    }

    /// Writes `s` if the row is still at version `known` (`Some(0)`: a new session, only if its
    /// id is free; `None`: unconditionally). The new version, or `None` if another write came
    /// first. Announced on [`CHANNEL`] with `origin`.
    pub async fn write_session(&self, s: &Session, known: Option<i64>, origin: &str) -> Result<Option<i64>, DbError> {
        let doc = doc(s)?;
        let row = self
            .query_one("SELECT exphub_session_write($1, $2, $3, $4)", &[&s.id.as_str(), &known, &doc, &origin])
            .await?;
        Ok(row.get(0))
    }

    /// Writes `base` (at version `known`) with `change` applied; if another write came first,
    /// re-reads the row, applies `change` to it and tries again, up to [`RETRIES`] times. The
    /// session as written and its version, or `None` if the session is gone or the race was
    /// lost every time.
    pub async fn write_change(
        &self,
        mut base: Session,
        known: i64,
        change: impl Fn(&mut Session),
        origin: &str,
    ) -> Result<Option<Stored>, DbError> {
        let mut known = known;
        change(&mut base);
        for attempt in 0..=RETRIES {
            if let Some(version) = self.write_session(&base, Some(known), origin).await? {
                return Ok(Some(Stored { version, session: base }));
            }
            if attempt == RETRIES {
                break;
            }
            let Some(fresh) = self.session(base.id.as_str()).await? else { return Ok(None) };
            (base, known) = (fresh.session, fresh.version);
            change(&mut base);
        }
        Ok(None)
    }

    /// Deletes session `id`; `false` if there was no such row. Announced on [`CHANNEL`].
    pub async fn delete_session(&self, id: &str, origin: &str) -> Result<bool, DbError> {
        Ok(self.query_one("SELECT exphub_session_delete($1, $2)", &[&id, &origin]).await?.get(0))
    }
}

/// An announcement on [`CHANNEL`].
#[derive(serde::Deserialize)]
struct Announcement {
    t: String,
    id: Option<String>,
    origin: Option<String>,
}

/// How long the event connection waits before re-opening, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Keeps this node's `LISTEN` connection (see the module documentation) and hands what it
/// learns to `tx` as `wrap(event)`. Ends when `tx` is closed.
pub fn listen<T: Send + 'static>(
    url: String,
    node_id: String,
    tx: mpsc::Sender<T>,
    wrap: fn(SessionEvent) -> T,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let mut failing = false;
        loop {
            let e = listen_once(&url, &node_id, &tx, wrap, &mut failing).await;
            if tx.is_closed() {
                return;
            }
            if failing {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                tracing::warn!(error = %e, "cross-node events lost their database connection; re-opening it with backoff");
                failing = true;
                backoff = Duration::from_secs(1);
            }
            tokio::time::sleep(backoff).await;
        }
    })
}

/// One life of the event connection; returns why it ended.
async fn listen_once<T>(
    url: &str,
    node_id: &str,
    tx: &mpsc::Sender<T>,
    wrap: fn(SessionEvent) -> T,
    failing: &mut bool,
) -> DbError {
    let mut cfg: tokio_postgres::Config = match url.parse() {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    // Named, so that an operator (or a test) can find it in pg_stat_activity.
    cfg.application_name(APPLICATION_NAME);
    let connected = tokio::time::timeout(Duration::from_secs(10), cfg.connect(NoTls)).await;
    let (client, mut conn) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return e.into(),
        Err(_) => return DbError::Unreachable("connecting timed out".into()),
    };
    let (ntx, mut nrx) = mpsc::unbounded_channel::<Result<String, String>>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ntx.send(Err(e.to_string()));
                    return;
                }
            }
        }
        let _ = ntx.send(Err("the connection closed".into()));
    });
    let ended = follow(&client, node_id, tx, wrap, &mut nrx, failing).await;
    driver.abort();
    ended
}

async fn follow<T>(
    client: &Client,
    node_id: &str,
    tx: &mpsc::Sender<T>,
    wrap: fn(SessionEvent) -> T,
    nrx: &mut mpsc::UnboundedReceiver<Result<String, String>>,
    failing: &mut bool,
) -> DbError {
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        return e.into();
    }
    // Listening from here on: whatever changed before (or while disconnected) is in this read.
    let all = match client.query(ALL, &[]).await {
        Ok(r) => rows(r).0,
        Err(e) => return e.into(),
    };
    if *failing {
        tracing::info!("cross-node events work again");
        *failing = false;
    }
    if tx.send(wrap(SessionEvent::All(all))).await.is_err() {
        return DbError::Unreachable("the hub stopped".into());
    }
    loop {
        let payload = match nrx.recv().await {
            Some(Ok(p)) => p,
            Some(Err(e)) => return DbError::Unreachable(e),
            None => return DbError::Unreachable("the connection closed".into()),
        };
        let Ok(a) = serde_json::from_str::<Announcement>(&payload) else {
            tracing::debug!(payload, "ignored an event that is not exphub's");
            continue;
        };
        let Some(id) = a.id.filter(|_| a.origin.as_deref() != Some(node_id)) else { continue };
        if a.t != "session_changed" && a.t != "session_deleted" {
            continue;
        }
        let row = match client.query(ONE, &[&id]).await {
            Ok(r) => rows(r),
            Err(e) => return e.into(),
        };
        if let Some(bad) = row.1.first() {
            tracing::warn!(problem = %bad, "a session changed elsewhere is not valid; kept as it was here");
            continue;
        }
        let event = SessionEvent::Row { id: SessionId::from(id), row: row.0.into_iter().next() };
        if tx.send(wrap(event)).await.is_err() {
            return DbError::Unreachable("the hub stopped".into());
        }
    }
}

/// What `exphub sessions import` did with one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Written at this version.
    Written(i64),
    /// The id exists in the database and `--replace` was not given: left alone.
    Exists,
}

/// `exphub sessions import DIR`: every session file of `dir` that `exphub serve` would load
/// (its journal applied), into the database under its own id; an id that exists is refused
/// unless `replace`. Reads `dir` without writing to it. The files that do not load are
/// returned as problems and not imported.
pub async fn import(
    url: &str,
    dir: &Path,
    replace: bool,
) -> Result<(Vec<(SessionId, Imported)>, Vec<crate::session::LoadProblem>), DbError> {
    let (sessions, problems) =
        session::store::read_dir(dir).map_err(|e| DbError::Query(format!("{}: {e}", dir.display())))?;
    let db = Db::connect(url).await?;
    let mut out = Vec::with_capacity(sessions.len());
    for mut s in sessions {
        // No experiment survives an import.
        s.creation_time = 0;
        let known = if replace { None } else { Some(0) };
        let r = match db.write_session(&s, known, "import").await? {
            Some(v) => Imported::Written(v),
            None => Imported::Exists,
        };
        out.push((s.id, r));
    }
    Ok((out, problems))
}

/// `exphub sessions dump DIR`: every session of the database as `DIR/<id>.json`, in the
/// session file format (`exphub serve` without a database loads them); each file written
/// atomically. The rows that are not valid sessions are returned and not written.
pub async fn dump(url: &str, dir: &Path) -> Result<(Vec<SessionId>, Vec<String>), DbError> {
    let db = Db::connect(url).await?;
    let (sessions, bad) = db.sessions().await?;
    let io = |e: std::io::Error| DbError::Query(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut written = Vec::with_capacity(sessions.len());
    for s in sessions {
        let s = s.session;
        if !session::is_file_safe_id(s.id.as_str()) {
            return Err(DbError::Query(format!("session id {:?} cannot be a file name", s.id)));
        }
        let bytes = session::store::to_json(&s).map_err(io)?;
        session::store::write_file_atomic(&dir.join(format!("{}.json", s.id)), &bytes).map_err(io)?;
        written.push(s.id);
    }
    Ok((written, bad))
}

impl super::Cluster {
    /// Starts this node's event connection ([`listen`]).
    pub fn listen_sessions<T: Send + 'static>(
        &self,
        tx: mpsc::Sender<T>,
        wrap: fn(SessionEvent) -> T,
    ) -> tokio::task::JoinHandle<()> {
        listen(self.db.url().to_owned(), self.node_id.clone(), tx, wrap)
    }
}
