//! Persistence: durable session writes awaited before a reply (small changes appended to the
//! session's journal, everything else a full write), deleting a session file, dropping an
//! ended experiment, and stopping everything at shutdown.

use super::*;
use crate::session::journal::Change;

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

impl Hub {
    /// Writes a session durably in full (temp file, fsync, rename; its journal folded in)
    /// before the caller replies.
    pub(crate) async fn persist(&self, session_id: &SessionId) -> Result<(), WireError> {
        let Some(s) = self.sessions.get(session_id).cloned() else { return Ok(()) };
        let store = self.store.clone();
        METRICS.session_writes.inc();
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        written(session_id, tokio::task::spawn_blocking(move || store.save(&s)).await)
    }

    /// Makes a small change durable (one journal line, fdatasynced) and only then applies it
    /// to the session in memory: on error the session is as it was and the caller has done
    /// nothing visible yet. A journal that asks for compaction is folded first.
    pub(crate) async fn commit(&mut self, session_id: &SessionId, change: Change) -> Result<(), WireError> {
        if !self.sessions.contains_key(session_id) {
            return Err(WireError::internal());
        }
        if self.store.wants_compaction(session_id) {
            self.persist(session_id).await?;
        }
        let store = self.store.clone();
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

    pub(crate) async fn delete_file(&self, session_id: &SessionId) -> Result<(), WireError> {
        let store = self.store.clone();
        let id = session_id.to_owned();
        match tokio::task::spawn_blocking(move || store.delete(&id)).await {
            Ok(Ok(())) => Ok(()),
            other => {
                tracing::error!(session = %session_id, result = ?other.map(|r| r.map_err(|e| e.to_string())), "could not delete session file");
                Err(WireError::internal())
            }
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
        let line = Change::CreationTime { time: 0 }.line();
        let (store, id) = (self.store.clone(), session_id.to_owned());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.append(&id, &line) {
                tracing::warn!(error = %e, "could not write session file");
            }
        });
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
        for sid in self.store.journaled() {
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
