//! Persistence: durable session writes awaited before a reply (small changes appended to the
//! session's journal, everything else a full write), deleting a session file, dropping an
//! ended experiment, and stopping everything at shutdown. In cluster mode the same calls write
//! the cluster database instead ([`Store::Shared`]): a whole document by compare-and-set on
//! the version this node holds, a small change re-read and re-applied when another node wrote
//! first.

use super::*;
use crate::cluster::sessions::{SessionEvent, Stored};
use crate::cluster::{Cluster, DbError};
use crate::session::journal::Change;

/// Where session designs are kept.
pub enum Store {
    /// One node: the session files.
    Files(Arc<SessionStore>),
    /// Cluster mode: the cluster database, with the version of each session this node holds.
    Shared { cluster: Arc<Cluster>, versions: HashMap<SessionId, i64> },
}

impl Store {
    /// Cluster mode's store over the sessions loaded from the database.
    pub fn shared(cluster: Arc<Cluster>, rows: Vec<Stored>) -> (Store, Vec<Session>) {
        let versions = rows.iter().map(|r| (r.session.id.clone(), r.version)).collect();
        (Store::Shared { cluster, versions }, rows.into_iter().map(|r| r.session).collect())
    }
}

/// The outcome of a blocking store call, as the client sees it.
fn written(
    session_id: &SessionId,
    result: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), WireError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(session = %session_id, error = %e, "could not write session file");
            Err(WireError::internal())
        }
        Err(e) => {
            tracing::error!(error = %e, "session writer panicked");
            Err(WireError::internal())
        }
    }
}

/// How long a session write may wait for the cluster database before the client gets 503.
const DB_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A database call bounded by [`DB_WRITE_TIMEOUT`]; a failure as the client sees it (503 while
/// the database is unreachable).
async fn in_db<T>(
    session_id: &SessionId,
    f: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, WireError> {
    let e = match tokio::time::timeout(DB_WRITE_TIMEOUT, f).await {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => e,
        Err(_) => DbError::Unreachable("timed out".into()),
    };
    tracing::warn!(session = %session_id, error = %e, "could not write the session to the cluster database");
    Err(errors::cluster_unavailable())
}

impl Hub {
    /// Writes a session durably in full (temp file, fsync, rename; its journal folded in)
    /// before the caller replies. Cluster mode: the whole document, if the database still has
    /// the version this node holds; else `409` (changed elsewhere, nothing written) and the
    /// session is re-read.
    pub(crate) async fn persist(&mut self, session_id: &SessionId) -> Result<(), WireError> {
        let Some(s) = self.sessions.get(session_id).cloned() else { return Ok(()) };
        METRICS.session_writes.inc();
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (cluster, known) = match &self.store {
            Store::Files(store) => {
                let store = store.clone();
                return written(session_id, tokio::task::spawn_blocking(move || store.save(&s)).await);
            }
            Store::Shared { cluster, versions } => (cluster.clone(), versions.get(session_id).copied().unwrap_or(0)),
        };
        match in_db(session_id, cluster.db().write_session(&s, Some(known), &cluster.node_id)).await? {
            Some(v) => {
                self.set_version(session_id, v);
                Ok(())
            }
            None => {
                self.reread_session(session_id);
                Err(errors::session_changed())
            }
        }
    }

    /// Makes a small change durable (one journal line, fdatasynced) and only then applies it
    /// to the session in memory: on error the session is as it was and the caller has done
    /// nothing visible yet. A journal that asks for compaction is folded first. Cluster mode:
    /// the session with the change is written by compare-and-set; if another node wrote first,
    /// the change is applied to its version and written again (up to three times).
    pub(crate) async fn commit(&mut self, session_id: &SessionId, change: Change) -> Result<(), WireError> {
        let Some(s) = self.sessions.get(session_id) else { return Err(WireError::internal()) };
        let store = match &self.store {
            Store::Files(store) => store.clone(),
            Store::Shared { cluster, versions } => {
                let (cluster, base) = (cluster.clone(), s.clone());
                let known = versions.get(session_id).copied().unwrap_or(0);
                METRICS.session_writes.inc();
                self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let write = cluster.db().write_change(base, known, |s| change.apply(s), &cluster.node_id);
                let Some(w) = in_db(session_id, write).await? else {
                    self.reread_session(session_id);
                    return Err(errors::session_changed());
                };
                // Another node's change came with it if the version moved by more than one.
                let others = w.version != known + 1;
                self.set_version(session_id, w.version);
                self.sessions.insert(session_id.clone(), w.session);
                if others {
                    self.broadcast_session_change(session_id, None);
                }
                return Ok(());
            }
        };
        if store.wants_compaction(session_id) {
            self.persist(session_id).await?;
        }
        let id = session_id.to_owned();
        let line = change.line();
        METRICS.session_writes.inc();
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        written(session_id, tokio::task::spawn_blocking(move || store.append(&id, &line)).await)?;
        if let Some(s) = self.sessions.get_mut(session_id) {
            change.apply(s);
        }
        Ok(())
    }

    pub(crate) async fn delete_file(&mut self, session_id: &SessionId) -> Result<(), WireError> {
        let store = match &self.store {
            Store::Files(store) => store.clone(),
            Store::Shared { cluster, .. } => {
                let cluster = cluster.clone();
                // A row already gone was deleted by another node: deleted either way.
                in_db(session_id, cluster.db().delete_session(session_id.as_str(), &cluster.node_id)).await?;
                if let Store::Shared { versions, .. } = &mut self.store {
                    versions.remove(session_id);
                }
                return Ok(());
            }
        };
        let id = session_id.to_owned();
        match tokio::task::spawn_blocking(move || store.delete(&id)).await {
            Ok(Ok(())) => Ok(()),
            other => {
                tracing::error!(session = %session_id, result = ?other.map(|r| r.map_err(|e| e.to_string())), "could not delete session file");
                Err(WireError::internal())
            }
        }
    }

    /// Cluster mode: the version of session `sid` this node now holds.
    pub(super) fn set_version(&mut self, sid: &SessionId, version: i64) {
        if let Store::Shared { versions, .. } = &mut self.store {
            versions.insert(sid.clone(), version);
        }
    }

    /// Drops an ended experiment once no experimenter is in it (`docs/protocol.md` D10); its session
    /// becomes deletable again (`creation_time = 0`).
    pub(crate) fn maybe_drop_experiment(&mut self, session_id: &SessionId) {
        if !self.drop_ended_experiment(session_id) {
            return;
        }
        // Not awaited (this runs inside synchronous handlers); a lost line is harmless, since
        // every session loads with `creation_time` 0. Applied at once: nothing is acknowledged.
        // (Cluster mode keeps `creation_time` across starts, since other nodes may run the
        // experiment: a lost write there leaves the session undeletable until its next run.)
        let change = Change::CreationTime { time: 0 };
        let id = session_id.to_owned();
        match &self.store {
            Store::Files(store) => {
                let (store, line) = (store.clone(), change.line());
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.append(&id, &line) {
                        tracing::warn!(error = %e, "could not write session file");
                    }
                });
            }
            Store::Shared { cluster, versions } => {
                // The written row comes back as an input, so that this node holds its version.
                let (cluster, tx) = (cluster.clone(), self.tx.clone());
                let Some(base) = self.sessions.get(session_id).cloned() else { return };
                let known = versions.get(session_id).copied().unwrap_or(0);
                tokio::spawn(async move {
                    let write = cluster.db().write_change(base, known, |s| change.apply(s), &cluster.node_id);
                    let row = match write.await {
                        Ok(Some(row)) => Ok(Some(row)),
                        // Gone, or others kept writing first: as the database has it now.
                        Ok(None) => cluster.db().session(id.as_str()).await,
                        Err(e) => Err(e),
                    };
                    match row {
                        Ok(row) => {
                            let _ = tx.send(Input::Shared(SessionEvent::Row { id, row })).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not write the session to the cluster database"),
                    }
                });
            }
        }
    }

    /// Drops an ended experiment that no experimenter is in (its participants' connections, its
    /// sub-connections, its recording) and sets its session's `creation_time` to 0 in memory
    /// only. Returns whether it did.
    pub(crate) fn drop_ended_experiment(&mut self, session_id: &SessionId) -> bool {
        let Some(exp) = self.experiments.get(session_id) else { return false };
        if exp.state != ExperimentState::Ended || !exp.experimenters.is_empty() {
            return false;
        }
        let participants: Vec<ConnId> = exp.participants.values().copied().collect();
        for id in participants {
            self.drop_connection(id, false);
        }
        let subs: Vec<String> =
            self.subs.iter().filter(|(_, s)| s.session_id == session_id).map(|(k, _)| k.clone()).collect();
        for s in subs {
            self.close_sub(&s);
        }
        self.experiments.remove(session_id);
        self.release_placement(session_id);
        METRICS.live_experiments.set(self.experiments.len() as i64);
        self.maybe_close_recording(session_id);
        if let Some(s) = self.sessions.get_mut(session_id) {
            Change::CreationTime { time: 0 }.apply(s);
        }
        true
    }

    pub(super) async fn shutdown(&mut self) {
        let now = now_ms();
        let ids: Vec<SessionId> = self.experiments.keys().cloned().collect();
        for sid in ids {
            if self.experiments.get(&sid).is_some_and(|e| e.state != ExperimentState::Ended) {
                let _ = self.stop_experiment(&sid, now).await;
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.creation_time = 0;
            }
            let _ = self.persist(&sid).await;
        }
        // Fold every journal left, so the files alone hold everything.
        let journaled = match &self.store {
            Store::Files(store) => store.journaled(),
            Store::Shared { .. } => vec![],
        };
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        for sid in journaled {
            let _ = self.persist(&sid).await;
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.drop_connection(c, false);
        }
        // Give the outboxes a moment to flush EXPERIMENT_ENDED.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
