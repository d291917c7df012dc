//! Persistence: durable session writes awaited before a reply, deleting a session file,
//! dropping an ended experiment, and stopping everything at shutdown.

use super::*;

impl Hub {
    /// Writes a session durably (temp file, fsync, rename) before the caller replies.
    pub(crate) async fn persist(&self, session_id: &str) -> Result<(), WireError> {
        let Some(s) = self.sessions.get(session_id).cloned() else { return Ok(()) };
        let store = self.store.clone();
        METRICS.session_writes.inc();
        match tokio::task::spawn_blocking(move || store.save(&s)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(session = session_id, error = %e, "could not write session file");
                Err(WireError::internal())
            }
            Err(e) => {
                tracing::error!(error = %e, "session writer panicked");
                Err(WireError::internal())
            }
        }
    }

    pub(crate) async fn delete_file(&self, session_id: &str) -> Result<(), WireError> {
        let store = self.store.clone();
        let id = session_id.to_owned();
        match tokio::task::spawn_blocking(move || store.delete(&id)).await {
            Ok(Ok(())) => Ok(()),
            other => {
                tracing::error!(session = session_id, result = ?other.map(|r| r.map_err(|e| e.to_string())), "could not delete session file");
                Err(WireError::internal())
            }
        }
    }

    /// Drops an ended experiment once no experimenter is in it (`docs/protocol.md` D10); its session
    /// becomes deletable again (`creation_time = 0`).
    pub(crate) fn maybe_drop_experiment(&mut self, session_id: &str) {
        let Some(exp) = self.experiments.get(session_id) else { return };
        if exp.state != ExperimentState::Ended || !exp.experimenters.is_empty() {
            return;
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
        METRICS.live_experiments.set(self.experiments.len() as i64);
        self.maybe_close_recording(session_id);
        if let Some(s) = self.sessions.get_mut(session_id) {
            s.creation_time = 0;
        }
        let store = self.store.clone();
        if let Some(s) = self.sessions.get(session_id).cloned() {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.save(&s) {
                    tracing::error!(error = %e, "could not write session file");
                }
            });
        }
    }

    pub(super) async fn shutdown(&mut self) {
        let now = now_ms();
        let ids: Vec<String> = self.experiments.keys().cloned().collect();
        for sid in ids {
            if self.experiments.get(&sid).is_some_and(|e| e.state != ExperimentState::Ended) {
                self.stop_experiment(&sid, now).await;
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.creation_time = 0;
            }
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
