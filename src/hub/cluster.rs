//! Cluster mode seen from the hub: `CREATE_EXPERIMENT` asks the cluster where the experiment
//! goes (on a spawned task: the hub never waits on the database) and opens it when it lands
//! here; an experiment that is dropped gives its placement back. Without `--cluster-db` none
//! of this runs.

use super::{errors, ConnId, Hub, Input};
use crate::cluster::{DbError, Placement};
use crate::session::SessionId;

impl Hub {
    /// Asks the cluster to place experiment `sid`; the answer comes back as [`Input::Placed`].
    pub(super) fn place_experiment(&mut self, id: ConnId, sid: &SessionId) -> Result<(), crate::protocol::WireError> {
        let Some(cluster) = self.cluster.clone() else { return Ok(()) };
        let cost = self.sessions.get(sid).map_or(0.0, crate::cluster::cost_millicores);
        let (tx, session_id) = (self.tx.clone(), sid.clone());
        tokio::spawn(async move {
            let result = cluster.place(session_id.as_str(), cost).await;
            let _ = tx.send(Input::Placed { conn: id, session_id, result }).await;
        });
        Ok(())
    }

    /// Where experiment `sid` was placed: here → it opens (if it is still to be opened);
    /// elsewhere or nowhere → the experimenter is told.
    pub(super) async fn on_placed(&mut self, id: ConnId, sid: SessionId, result: Result<Placement, DbError>) {
        let Some(cluster) = self.cluster.clone() else { return };
        let r = match result {
            Ok(p) if p.node_id == cluster.node_id => {
                if self.experiments.contains_key(&sid) {
                    Err(errors::experiment_exists())
                } else if !self.sessions.contains_key(&sid) || !self.conns.contains_key(&id) {
                    // Deleted, or the experimenter left, while it was being placed.
                    self.release_placement(&sid);
                    Err(errors::no_session(400))
                } else {
                    let opened = self.open_experiment(id, &sid).await;
                    if opened.is_err() {
                        self.release_placement(&sid);
                    }
                    opened
                }
            }
            Ok(p) => Err(errors::experiment_on_other_node(&p.node_id)),
            Err(DbError::NoCapacity) => {
                Err(errors::no_capacity(self.sessions.get(&sid).map_or(0.0, crate::cluster::cost_millicores)))
            }
            Err(e) => {
                tracing::warn!(session_id = %sid, error = %e, "cannot place the experiment");
                Err(errors::cluster_unavailable())
            }
        };
        if let Err(e) = r {
            self.send_error(id, &e);
        }
    }

    /// Gives experiment `sid`'s placement back (cluster mode; off the hub task).
    pub(super) fn release_placement(&self, sid: &SessionId) {
        let Some(cluster) = self.cluster.clone() else { return };
        let sid = sid.clone();
        tokio::spawn(async move { cluster.release(sid.as_str()).await });
    }
}
