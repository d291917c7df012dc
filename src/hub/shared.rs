//! Cluster mode: sessions other nodes changed. The event connection (`cluster::sessions`)
//! re-reads each changed row and hands it over as [`Input::Shared`]; a row newer than this
//! node's copy replaces it, and this node's experimenters hear of it exactly as of a local
//! change (`SESSION_CHANGE`, `DELETED_SESSION`, and `EXPERIMENT_CREATED` when an experiment
//! was opened on another node). Reads run off the hub task.

use super::persist::Store;
use super::*;
use crate::cluster::sessions::{SessionEvent, Stored};

impl Hub {
    pub(super) fn on_shared(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Row { row: Some(row), .. } => self.take_row(row),
            SessionEvent::Row { id, row: None } => self.forget_session(&id),
            SessionEvent::All(rows) => {
                let present: HashSet<SessionId> = rows.iter().map(|r| r.session.id.clone()).collect();
                for row in rows {
                    self.take_row(row);
                }
                // Missing from the list: deleted elsewhere, or created here after it was read.
                // Asked again, one by one, so that a session created meanwhile is not lost.
                let missing: Vec<SessionId> =
                    self.sessions.keys().filter(|id| !present.contains(*id)).cloned().collect();
                for id in missing {
                    self.reread_session(&id);
                }
            }
        }
    }

    /// A session as the database holds it: taken if newer than this node's copy.
    fn take_row(&mut self, row: Stored) {
        let Store::Shared { versions, .. } = &mut self.store else { return };
        let id = row.session.id.clone();
        if versions.get(&id).is_some_and(|&v| v >= row.version) {
            return;
        }
        versions.insert(id.clone(), row.version);
        let was_open = self.sessions.get(&id).is_some_and(|s| s.creation_time > 0);
        let opened = !was_open && row.session.creation_time > 0 && !self.experiments.contains_key(&id);
        let creation_time = row.session.creation_time;
        self.sessions.insert(id.clone(), row.session);
        if self.experiments.contains_key(&id) {
            // As after a SAVE_SESSION here: a waiting experiment's participants get its filters.
            self.apply_media(&id, None);
        }
        self.broadcast_session_change(&id, None);
        if opened {
            let msg = protocol::outgoing::experiment_created(&id, creation_time);
            for e in self.experimenters.clone() {
                self.send(e, msg.clone());
            }
        }
    }

    /// A session deleted elsewhere. One with an experiment on this node stays while it runs.
    fn forget_session(&mut self, id: &SessionId) {
        if self.experiments.contains_key(id) {
            tracing::warn!(session = %id, "session deleted on another node while its experiment runs here; kept until it ends");
            return;
        }
        if let Store::Shared { versions, .. } = &mut self.store {
            versions.remove(id);
        }
        if self.sessions.remove(id).is_some() {
            let msg = protocol::encode(protocol::MessageType::DeletedSession, id);
            for e in self.experimenters.clone() {
                self.send(e, msg.clone());
            }
        }
    }

    /// Reads session `id` again (off the hub task); the row comes back as [`Input::Shared`].
    pub(super) fn reread_session(&self, id: &SessionId) {
        let Store::Shared { cluster, .. } = &self.store else { return };
        let (cluster, tx, id) = (cluster.clone(), self.tx.clone(), id.clone());
        tokio::spawn(async move {
            match cluster.db().session(id.as_str()).await {
                Ok(row) => {
                    let _ = tx.send(Input::Shared(SessionEvent::Row { id, row })).await;
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "cannot re-read the session from the cluster database")
                }
            }
        });
    }
}
