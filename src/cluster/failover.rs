//! Failover: a dead owner's experiments move on, and a zombie owner fences itself.
//!
//! - **Probe and takeover** (`Cluster::owner_is_dead`): a router that finds an experiment's
//!   owner with a stale heartbeat (over 6 s on the database's clock) probes it directly
//!   (`GET /internal/v1/health`, 300 ms). An owner that answers only has a slow database link:
//!   the offer is forwarded as usual. One that does not is dead: the experiment is placed again
//!   (`exphub_takeover`: epoch + 1, this node first) and the offer goes to the new owner.
//! - **Adoption**: a node that learns it owns an experiment its hub has not opened (a takeover
//!   placed it here) keeps what it needs to open it ([`Adoption`]: the epoch, the run's START,
//!   where it came from) for the hub, which opens it at the participant's offer.
//! - **Self-fencing**: the heartbeat task notes when it *sent* its last heartbeat that
//!   succeeded. 4 s after that the node refuses participants' offers (503, try again) and
//!   writes nothing fenced, while media already flowing keeps flowing. Routers call a node
//!   dead only after 6 s, so a zombie has stopped accepting well before anyone takes over. When
//!   a heartbeat succeeds again after such a gap, the node first checks every epoch it holds
//!   (one query) and hands the experiments it lost to the hub, which ends them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use super::db::Adoption;
use super::{internal, Cluster, Db, Routed};
use crate::protocol::{ErrorType, OfferRequest, OfferUser, WireError};

/// How long after its last successful heartbeat (sent) a node stops accepting offers.
pub const FENCE_AFTER: Duration = Duration::from_secs(4);
/// How long a router waits for a stale owner's health probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// A node's failover state (inside [`Cluster`]).
pub(super) struct Failover {
    /// When the last heartbeat that succeeded was sent (monotonic clock).
    last_beat: Mutex<Instant>,
    /// Experiments placed here by a takeover that the hub has not opened yet.
    adoptions: Mutex<HashMap<String, Adoption>>,
    /// Experiments this node found it no longer owns, for the hub to end.
    moved_tx: mpsc::UnboundedSender<String>,
    moved_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl Default for Failover {
    fn default() -> Self {
        let (moved_tx, moved_rx) = mpsc::unbounded_channel();
        Failover {
            last_beat: Mutex::new(Instant::now()),
            adoptions: Mutex::default(),
            moved_tx,
            moved_rx: Mutex::new(Some(moved_rx)),
        }
    }
}

fn participant_session(req: &OfferRequest) -> Option<&str> {
    match &req.user {
        OfferUser::Participant { session_id, .. } => Some(session_id.as_str()),
        OfferUser::Experimenter { .. } => None,
    }
}

impl Cluster {
    /// Whether this node has fenced itself: its last successful heartbeat was sent more than
    /// [`FENCE_AFTER`] ago.
    pub fn fenced(&self) -> bool {
        self.failover.last_beat.lock().map_or(true, |t| t.elapsed() > FENCE_AFTER)
    }

    /// A self-fenced node refuses participants' offers (503, try again).
    pub fn refuse_when_fenced(&self, req: &OfferRequest) -> Option<WireError> {
        participant_session(req)?;
        self.fenced().then(|| {
            WireError::new(
                503,
                ErrorType::InternalServerError,
                "This server has lost the cluster's database for a moment; try again.",
            )
        })
    }

    /// The receiver of the experiments this node lost (taken once, by the hub).
    pub fn take_moved(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.failover.moved_rx.lock().ok().and_then(|mut r| r.take())
    }

    /// What the hub needs to open experiment `session_id`, placed here by a takeover.
    pub fn adoption(&self, session_id: &str) -> Option<Adoption> {
        self.failover.adoptions.lock().ok().and_then(|a| a.get(session_id).cloned())
    }

    /// The hub opened (or will not open) experiment `session_id`: nothing left to adopt.
    pub fn adopted(&self, session_id: &str) {
        if let Ok(mut a) = self.failover.adoptions.lock() {
            a.remove(session_id);
        }
    }

    /// An offer forwarded here by another node: if the experiment is placed here but this node
    /// does not know it yet (a takeover elsewhere placed it here), learn it for adoption.
    pub async fn claim(&self, req: &OfferRequest) {
        if let Some(sid) = participant_session(req).filter(|s| !self.owns(s)) {
            self.learn_placement(sid).await;
        }
    }

    /// Reads this node's placement of `session_id` and keeps it for the hub to adopt.
    pub(super) async fn learn_placement(&self, session_id: &str) {
        match self.db.adoption(session_id, &self.node_id).await {
            Ok(Some(a)) => {
                if let Ok(mut o) = self.owned.lock() {
                    o.insert(session_id.to_owned(), a.epoch);
                }
                if let Ok(mut m) = self.failover.adoptions.lock() {
                    m.insert(session_id.to_owned(), a);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(session_id, error = %e, "cannot read the experiment's placement"),
        }
    }

    /// The owner of `session_id` has a stale heartbeat: probe it; if it answers, forward to it
    /// (`Some`); else take the experiment over and forward to the new owner (`Some`), or handle
    /// it here (`None`) when the new owner is this node.
    pub(super) async fn owner_is_dead(
        &self,
        session_id: &str,
        owner: &super::Owner,
    ) -> Result<Option<(String, String)>, Routed> {
        if let Some(url) = &owner.internal_url {
            match internal::get(&self.signer, &self.node_id, url, "/internal/v1/health", PROBE_TIMEOUT).await {
                Ok(a) if a.status == 200 => {
                    tracing::info!(owner = %owner.node_id, session_id, "owner's heartbeat is stale but it answers its probe; forwarding");
                    return Ok(Some((owner.node_id.clone(), url.clone())));
                }
                Ok(a) => tracing::info!(owner = %owner.node_id, status = a.status, "owner's probe failed"),
                Err(e) => tracing::info!(owner = %owner.node_id, error = %e, "owner's probe failed"),
            }
        }
        let (p, silent_ms) = match self.db.take_over(session_id, &self.node_id, &owner.node_id, owner.epoch).await {
            Ok(r) => r,
            Err(super::DbError::NoCapacity) => return Err(Routed::Refused(WireError::new(
                503,
                ErrorType::NoCapacity,
                "The server running this experiment failed and no other server has room for it now; try again later.",
            ))),
            Err(e) => {
                tracing::warn!(session_id, error = %e, "cannot take the experiment over");
                return Err(Routed::Refused(super::unavailable()));
            }
        };
        tracing::info!(
            dead = %owner.node_id,
            session_id,
            to = %p.node_id,
            epoch = p.epoch,
            since_last_heartbeat_ms = silent_ms,
            "owner {} is dead; experiment {} moves to {} at epoch {}",
            owner.node_id,
            session_id,
            p.node_id,
            p.epoch
        );
        if p.node_id == self.node_id {
            self.learn_placement(session_id).await;
            return Ok(None);
        }
        match self.db.owner(session_id).await {
            Ok(Some(o)) if o.node_id == self.node_id => {
                self.learn_placement(session_id).await;
                Ok(None)
            }
            Ok(Some(super::Owner { node_id, internal_url: Some(url), .. })) => Ok(Some((node_id, url))),
            Ok(_) => Err(Routed::Refused(super::unavailable())),
            Err(e) => {
                tracing::warn!(session_id, error = %e, "cannot look up the experiment's new node");
                Err(Routed::Refused(super::unavailable()))
            }
        }
    }

    /// START of experiment `session_id`'s run (wall clock, unix µs), written fenced by this
    /// node's epoch so that a new owner resumes the run's clock. Not while self-fenced.
    pub async fn record_start(&self, session_id: &str, unix_us: i64) {
        let Some(epoch) = self.epoch(session_id) else { return };
        if self.fenced() {
            tracing::warn!(session_id, "self-fenced: the experiment's START is not written to the cluster");
            return;
        }
        match self.db.record_start(session_id, &self.node_id, epoch, unix_us).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(session_id, epoch, "placement had moved on; START not written (fenced)"),
            Err(e) => tracing::warn!(session_id, error = %e, "could not write the experiment's START to the cluster"),
        }
    }

    /// A heartbeat sent at `sent` succeeded. After a gap long enough to have fenced this node,
    /// first re-checks every epoch it holds and hands the lost experiments to the hub; the
    /// fence lifts only once that check has succeeded.
    pub(super) async fn heartbeat_succeeded(&self, sent: Instant, db: &Db) {
        let last = self.failover.last_beat.lock().map(|t| *t).unwrap_or(sent);
        let gap = sent.saturating_duration_since(last);
        if gap > FENCE_AFTER {
            let held: Vec<(String, i64)> =
                self.owned.lock().map(|o| o.iter().map(|(s, e)| (s.clone(), *e)).collect()).unwrap_or_default();
            tracing::info!(
                gap_ms = gap.as_millis() as u64,
                experiments = held.len(),
                "heartbeat works again after a self-fence; re-checking epochs"
            );
            if !held.is_empty() {
                match db.lost(&self.node_id, &held).await {
                    Ok(lost) => {
                        for sid in lost {
                            tracing::warn!(session_id = %sid, "experiment moved to another node while this one was fenced; ending its copy here");
                            if let Ok(mut o) = self.owned.lock() {
                                o.remove(&sid);
                            }
                            let _ = self.failover.moved_tx.send(sid);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot re-check the epochs; staying fenced");
                        return;
                    }
                }
            }
        }
        if let Ok(mut t) = self.failover.last_beat.lock() {
            *t = sent;
        }
    }
}
