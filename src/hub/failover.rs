//! Failover seen from the hub (cluster mode): adopting an experiment that a takeover placed on
//! this node, ending the copy of one that moved away while this node was fenced, and writing
//! START to the cluster so that a new owner continues the run's clock. Without `--cluster-db`
//! none of this runs.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{now_ms, ConnId, Experiment, ExperimentState, Hub};
use crate::metrics::METRICS;
use crate::protocol::{self, OfferRequest, OfferUser};
use crate::session::{OnNodeFailure, SessionId};

/// The monotonic instant of wall-clock time `unix_us` (now, if that is in the future or
/// further back than the monotonic clock reaches).
fn instant_of(unix_us: i64) -> Instant {
    let ago = Duration::from_micros(crate::record::wall_us().saturating_sub(unix_us).max(0) as u64);
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

impl Hub {
    /// A participant's offer for an experiment that a takeover placed here and that this hub
    /// has not opened: opens it from the session, as the session's `on_node_failure` says.
    /// `resume`: a new run, RUNNING (its clock continuing from the original START) if it was
    /// started, recording if the session records, the log opened by `experiment_failover`.
    /// `end`: ENDED, so offers get "The experiment has ended.".
    pub(super) async fn adopt_for_offer(&mut self, req: &OfferRequest) {
        let Some(cluster) = self.cluster.clone() else { return };
        let OfferUser::Participant { session_id: sid, .. } = &req.user else { return };
        let Some(a) = cluster.adoption(sid.as_str()) else { return };
        cluster.adopted(sid.as_str());
        if self.experiments.contains_key(sid) {
            return;
        }
        let Some(s) = self.sessions.get_mut(sid) else {
            tracing::warn!(session_id = %sid, "an experiment was placed here by a takeover, but this node does not have its session");
            return;
        };
        let policy = s.on_node_failure;
        let now = now_ms();
        let start_ms = a.start_unix_us.map(|us| us / 1000);
        s.creation_time = now;
        if let Some(t) = start_ms {
            s.start_time = t;
            s.end_time = 0;
        }
        if policy == OnNodeFailure::End {
            s.end_time = now;
        }
        if let Err(e) = self.persist(sid).await {
            tracing::warn!(session_id = %sid, error = ?e, "cannot write the adopted experiment's times; going on");
        }
        let mut exp = Experiment::new();
        let running = match (policy, a.start_unix_us) {
            (OnNodeFailure::End, _) => {
                exp.state = ExperimentState::Ended;
                None
            }
            (OnNodeFailure::Resume, Some(us)) => {
                exp.state = ExperimentState::Running;
                exp.clock_zero = instant_of(us);
                Some((start_ms.unwrap_or(now), exp.clock_zero))
            }
            (OnNodeFailure::Resume, None) => None,
        };
        tracing::info!(
            session_id = %sid,
            epoch = a.epoch,
            from = a.from_node.as_deref().unwrap_or("?"),
            gap_ms = a.gap_ms,
            policy = ?policy,
            running = running.is_some(),
            "adopted an experiment after its node failed"
        );
        self.experiments.insert(sid.clone(), exp);
        METRICS.live_experiments.set(self.experiments.len() as i64);
        if policy == OnNodeFailure::End {
            return;
        }
        let failover = json!({
            "from_node": a.from_node,
            "to_node": cluster.node_id,
            "epoch": a.epoch,
            "gap_ms": a.gap_ms,
            "reason": "node_failure",
        });
        self.open_recording_with(sid, Some(failover));
        if let Some((start_time, zero)) = running {
            self.start_recording(sid, start_time, zero);
            if let (Some(r), Some(us)) = (self.recordings.get_mut(sid), a.start_unix_us) {
                r.started_at_us(us);
            }
        }
        self.apply_groups(sid);
        if running.is_some() {
            self.log_group_config(sid);
        }
    }

    /// START on this node: its wall-clock time goes to the cluster (fenced by the epoch).
    pub(super) fn started_in_cluster(&self, sid: &SessionId) {
        let Some(cluster) = self.cluster.clone() else { return };
        let (sid, us) = (sid.clone(), crate::record::wall_us());
        tokio::spawn(async move { cluster.record_start(sid.as_str(), us).await });
    }

    /// Experiment `sid` moved to another node while this one was fenced: its copy here ends.
    /// Everyone in it gets `EXPERIMENT_ENDED` with reason `moved` (offer again: the offer goes
    /// to the new owner), the recording of this run is finished, and the experiment dropped.
    pub(super) fn on_moved(&mut self, sid: SessionId) {
        let Some(e) = self.experiments.get_mut(&sid) else { return };
        e.state = ExperimentState::Ended;
        let experimenters: Vec<ConnId> = std::mem::take(&mut e.experimenters);
        let now = now_ms();
        let start_time = self.sessions.get(&sid).map_or(0, |s| s.start_time);
        tracing::warn!(session_id = %sid, "ending this node's copy of an experiment that moved to another node");
        self.log(&sid, "experiment_moved", json!({ "reason": "moved" }));
        self.stop_recording(&sid, now);
        let msg = protocol::outgoing::experiment_ended_because(now, start_time, "moved");
        let participants: Vec<ConnId> =
            self.experiments.get(&sid).map(|e| e.participants.values().copied().collect()).unwrap_or_default();
        for id in participants.iter().chain(&experimenters) {
            self.send(*id, msg.clone());
        }
        for id in experimenters {
            if let Some(c) = self.conns.get_mut(&id) {
                c.experiment = None;
            }
        }
        self.drop_ended_experiment(&sid);
    }
}
