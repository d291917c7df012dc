//! `cluster`: several exphub nodes sharing one control plane in PostgreSQL (`--cluster-db`).
//! Without it nothing here runs and exphub is the single node it always was.
//!
//! An experiment lives whole on one node (media never crosses nodes). PostgreSQL holds the node
//! registry (heartbeats, capacity, reserved load) and the placements (experiment → node, with an
//! epoch that fences every write about it); see `docs/cluster.md`.
//!
//! - `db`: the schema and every statement (placement, heartbeat and release are SQL functions:
//!   one statement, one transaction each).
//! - registry ([`Cluster::start`]): a fresh node id per process start, registered at start and
//!   heartbeated every second on its own task and connection (never on the hub task).
//! - placement ([`Cluster::place`], [`Cluster::release`]): at `CREATE_EXPERIMENT`, cost-aware
//!   (the session's predicted CPU, [`cost_millicores`]), the experimenter's node first if it has
//!   room, capacity reserved in the same transaction, `NO_CAPACITY` when no node has room.
//! - routing ([`Cluster::route_offer`], [`Cluster::route_ice`]): a participant's `/offer` that
//!   reaches a node not owning its experiment is forwarded, body unchanged, to the owner's
//!   internal API, and the owner's answer returned unchanged; trickled candidates follow the
//!   connection to the node that answered it.
//!   An experimenter's offer with a `session_id` (the routing hint) is routed the same way.
//! - drain ([`Cluster::drain`], [`Cluster::drained`]): `exphub drain` marks the node
//!   `draining` (placement skips it); the process leaves when its last experiment is gone.
//! - `cpu`: the node's measured CPU, sent with every heartbeat; placement's room is
//!   `capacity − max(reserved load, measured cpu)`.
//! - `internal`: the authenticated internal API (HMAC-SHA256 under `EXPHUB_CLUSTER_SECRET`).
//! - `failover`: the probe and takeover of a dead owner's experiments, adoption on the new
//!   owner, and self-fencing after 4 s without a heartbeat.

pub mod cpu;
pub mod db;
pub mod failover;
pub mod internal;
pub mod sessions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;

use crate::protocol::{ErrorType, OfferRequest, OfferUser, WireError};
use crate::session::Session;
pub use db::{Adoption, Db, DbError, NodeRow, Owner, Placement};
pub use internal::Signer;

/// How a node joins the cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `postgres://user@host:port/db`.
    pub db_url: String,
    /// This process's node id (fresh per start unless given).
    pub node_id: String,
    /// Where the internal API listens.
    pub internal_addr: SocketAddr,
    /// The internal API's URL as other nodes reach it (default: `http://<internal_addr>`).
    pub internal_url: Option<String>,
    /// Predicted CPU this node accepts, in millicores (default: cores × 750).
    pub capacity_millicores: f32,
    /// Send the measured CPU with the heartbeat (placement's room is then
    /// `capacity − max(load, cpu)`); `false`: 0, placement by reserved load alone.
    pub measured_cpu: bool,
    /// The HMAC key of internal requests.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("internal_addr", &self.internal_addr)
            .field("internal_url", &self.internal_url)
            .field("capacity_millicores", &self.capacity_millicores)
            .field("measured_cpu", &self.measured_cpu)
            .finish_non_exhaustive()
    }
}

/// `<hostname>-<6 random hex digits>`: a new id per process start, so that a restarted node
/// never inherits a stale row.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let rand = &uuid::Uuid::new_v4().simple().to_string()[..6];
    if host.is_empty() {
        format!("node-{rand}")
    } else {
        format!("{host}-{rand}")
    }
}

/// Default capacity: 750 millicores per core (75 % target use).
pub fn default_capacity() -> f32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f32 * 750.0
}

/// Predicted CPU of an experiment of this session, in millicores, from exphub's measurements
/// on a 2-core machine (`load --experiments K`, docs/cluster.md): forwarding for N participants
/// who all see each other (38/101/247 for 2/4/8, linear between, 36 per participant beyond 8;
/// 38 per two-person experiment measured with 12 and 16 of them at once), 150 per transcoded
/// video stream (a participant with video filters: two filters on each of two participants
/// measured 373 per experiment), 35 per extra viewer-side branch (asymmetric filters), 7 per
/// transcoded audio stream, 1 per recorded file (raw audio and video per participant).
pub fn cost_millicores(s: &Session) -> f32 {
    let n = s.participants.iter().filter(|p| !p.banned).count().max(1) as f32;
    let fwd = match n {
        n if n <= 2.0 => 19.0 * n,
        n if n <= 4.0 => 38.0 + (n - 2.0) * 31.5,
        n if n <= 8.0 => 101.0 + (n - 4.0) * 36.5,
        n => 247.0 + (n - 8.0) * 36.0,
    };
    let mut cost = fwd;
    for p in s.participants.iter().filter(|p| !p.banned) {
        if !p.video_filters.is_empty() {
            cost += 150.0;
        }
        cost += 35.0 * p.asymmetric_filters.len() as f32;
        if !p.audio_filters.is_empty() {
            cost += 7.0;
        }
        if s.record {
            cost += 2.0;
        }
    }
    cost
}

/// What routing decided for a request.
pub enum Routed {
    /// This node handles it.
    Local,
    /// Another node answered; return its answer unchanged.
    Remote(internal::Answer),
    /// It cannot be routed now.
    Refused(WireError),
}

/// How long a forwarded `/offer` may take (the owner answers after ICE gathering).
const OFFER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a trickled candidate waits for its connection's route to appear.
const ICE_ROUTE_WAIT: Duration = Duration::from_secs(2);

/// This node's membership of the cluster.
pub struct Cluster {
    pub node_id: String,
    pub internal_url: String,
    db: Db,
    signer: Signer,
    /// Experiments placed on this node, with their epochs: the local fast path of routing.
    owned: Mutex<HashMap<String, i64>>,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// `Some(deadline)` once the node drains: it leaves when its last experiment is gone, or
    /// at the deadline.
    drain: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    /// The measured CPU (millicores, `f32` bits) as last sent with the heartbeat.
    cpu: Arc<AtomicU32>,
    failover: failover::Failover,
}

/// How long `exphub drain` waits for the experiments by default: 2 hours.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// The answer to anything that needs the cluster's database while it cannot be reached.
pub fn unavailable() -> WireError {
    WireError::new(503, ErrorType::InternalServerError, "The cluster is not reachable now; try again in a moment.")
}

impl Cluster {
    /// Connects (creating or migrating the schema), registers this node and starts its
    /// heartbeat (every second, on its own task and database connection).
    pub async fn start(cfg: &ClusterConfig, internal_url: String) -> Result<Arc<Cluster>, DbError> {
        let db = Db::connect(&cfg.db_url).await?;
        db.register(&cfg.node_id, &internal_url, cfg.capacity_millicores).await?;
        let beat_db = Db::connect(&cfg.db_url).await?;
        let (drain, draining) = tokio::sync::watch::channel(None);
        let cpu = Arc::new(AtomicU32::new(0));
        let cluster = Arc::new(Cluster {
            node_id: cfg.node_id.clone(),
            internal_url: internal_url.clone(),
            db,
            signer: Signer::new(&cfg.secret),
            owned: Mutex::default(),
            heartbeat: Mutex::new(None),
            drain,
            cpu: cpu.clone(),
            failover: Default::default(),
        });
        let (node_id, url, capacity) = (cfg.node_id.clone(), internal_url.clone(), cfg.capacity_millicores);
        let (measured, report_cpu) = (cpu.clone(), cfg.measured_cpu);
        let weak = Arc::downgrade(&cluster);
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            let mut meter = cpu::CpuMeter::default();
            loop {
                tick.tick().await;
                let Some(cluster) = weak.upgrade() else { break };
                let millicores = meter.sample_self().unwrap_or(0.0);
                measured.store(millicores.to_bits(), Ordering::Relaxed);
                let sent = std::time::Instant::now();
                let r = match beat_db.heartbeat(&node_id, if report_cpu { millicores } else { 0.0 }).await {
                    // The row is gone (the database lost its unlogged tables): register again,
                    // draining still if it was.
                    Ok(false) => match beat_db.register(&node_id, &url, capacity).await {
                        Ok(()) if draining.borrow().is_some() => beat_db.set_draining(&node_id).await.map(drop),
                        r => r,
                    },
                    Ok(true) => Ok(()),
                    Err(e) => Err(e),
                };
                if r.is_ok() {
                    cluster.heartbeat_succeeded(sent, &beat_db).await;
                }
                match r {
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "cluster heartbeat failed; retrying every second");
                        failing = true;
                    }
                    Ok(()) if failing => {
                        tracing::info!("cluster heartbeat works again");
                        failing = false;
                    }
                    _ => {}
                }
            }
        });
        if let Ok(mut h) = cluster.heartbeat.lock() {
            *h = Some(heartbeat);
        }
        tracing::info!(node_id = %cfg.node_id, internal_url = %internal_url, capacity = cfg.capacity_millicores, "joined the cluster");
        Ok(cluster)
    }

    /// Starts draining: the node's row says `draining`, so placement chooses it no more, while
    /// its experiments go on and their participants can still (re)join. [`Cluster::drained`]
    /// resolves when the last one is gone, or `timeout` from now. Again while draining: the
    /// new timeout counts. Returns how many experiments the node holds.
    pub async fn drain(&self, timeout: Duration) -> Result<usize, DbError> {
        self.db.set_draining(&self.node_id).await?;
        self.drain.send_replace(Some(tokio::time::Instant::now() + timeout));
        let n = self.owned.lock().map_or(0, |o| o.len());
        tracing::info!(experiments = n, timeout_s = timeout.as_secs(), "draining: no new experiments here");
        Ok(n)
    }

    /// Whether the node is draining.
    pub fn draining(&self) -> bool {
        self.drain.borrow().is_some()
    }

    /// Resolves once the node drains and its last experiment is gone (checked twice, half a
    /// second apart, so a placement committing at the moment of the drain is seen), or its
    /// drain timeout passed. Never resolves if the node does not drain.
    pub async fn drained(&self) {
        let mut rx = self.drain.subscribe();
        if rx.wait_for(Option::is_some).await.is_err() {
            return std::future::pending().await;
        }
        let mut empty_before = false;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let left = self.owned.lock().map_or(0, |o| o.len());
            if left == 0 && empty_before {
                tracing::info!("drained: the last experiment has ended; leaving the cluster");
                return;
            }
            empty_before = left == 0;
            if (*self.drain.borrow()).is_some_and(|d| tokio::time::Instant::now() >= d) {
                tracing::warn!(experiments = left, "drain timeout: leaving the cluster with experiments still running");
                return;
            }
        }
    }

    /// The node's cluster gauges, as Prometheus text (appended to `/metrics`).
    pub fn render_metrics(&self) -> String {
        let cpu = f32::from_bits(self.cpu.load(Ordering::Relaxed));
        format!(
            "# HELP exphub_cluster_draining 1 while this node drains (no new experiments; it exits when the last one ends).\n\
             # TYPE exphub_cluster_draining gauge\nexphub_cluster_draining {}\n\
             # HELP exphub_cluster_cpu_millicores This process's measured CPU as sent with the heartbeat (a {} s average).\n\
             # TYPE exphub_cluster_cpu_millicores gauge\nexphub_cluster_cpu_millicores {cpu:.0}\n",
            u8::from(self.draining()),
            cpu::TAU.as_secs(),
        )
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Leaves the cluster: no more heartbeats, the node row removed, its placements ended.
    pub async fn leave(&self) {
        if let Some(h) = self.heartbeat.lock().ok().and_then(|mut h| h.take()) {
            h.abort();
        }
        if let Err(e) = self.db.deregister(&self.node_id).await {
            tracing::warn!(error = %e, "could not leave the cluster cleanly; the node will look dead in 6 s");
        }
    }

    /// The cluster database (session designs, the export's `artifacts`).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The epoch of this node's placement of `session_id`, if it holds one.
    pub fn epoch(&self, session_id: &str) -> Option<i64> {
        self.owned.lock().ok().and_then(|o| o.get(session_id).copied())
    }

    /// Whether experiment `session_id` is placed on this node.
    pub fn owns(&self, session_id: &str) -> bool {
        self.owned.lock().is_ok_and(|o| o.contains_key(session_id))
    }

    /// Places experiment `session_id` (this node first if it has room).
    pub async fn place(&self, session_id: &str, cost: f32) -> Result<Placement, DbError> {
        let p = self.db.place(session_id, cost, &self.node_id).await?;
        if p.node_id == self.node_id {
            if let Ok(mut o) = self.owned.lock() {
                o.insert(session_id.to_owned(), p.epoch);
            }
            self.adopted(session_id);
        }
        Ok(p)
    }

    /// Ends this node's placement of `session_id` (its reservation returns). Fenced: a placement
    /// that moved on to a newer epoch is left alone.
    pub async fn release(&self, session_id: &str) {
        let Some(epoch) = self.owned.lock().ok().and_then(|mut o| o.remove(session_id)) else { return };
        match self.db.release(session_id, &self.node_id, epoch).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(session_id, epoch, "placement had moved on; not released (fenced)"),
            Err(e) => tracing::warn!(session_id, error = %e, "could not release the placement"),
        }
    }

    /// Routes a parsed `/offer`: a participant's offer for an experiment owned by another live
    /// node is forwarded there, and so is an experimenter's that names such an experiment (the
    /// `session_id` routing hint); one whose owner is dead (stale heartbeat, failed probe) takes
    /// the experiment over first (`failover`); everything else is handled here. Remembers which
    /// node answers the connection, so that its trickled candidates can follow.
    pub async fn route_offer(&self, req: &OfferRequest, content_type: Option<&str>, body: Bytes) -> Routed {
        let session_id = match &req.user {
            OfferUser::Participant { session_id, .. } => Some(session_id),
            OfferUser::Experimenter { .. } => req.session_hint.as_ref(),
        };
        let (sid, owner) = match session_id {
            Some(session_id) if !self.owns(session_id.as_str()) => match self.db.owner(session_id.as_str()).await {
                Ok(o) => (session_id.as_str(), o.filter(|o| !o.ended)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up the experiment's node");
                    return Routed::Refused(unavailable());
                }
            },
            _ => ("", None),
        };
        let target = match owner {
            None => None,
            Some(o) if o.node_id == self.node_id => {
                // Placed here by a takeover this node has not seen: the hub adopts it.
                self.learn_placement(sid).await;
                None
            }
            Some(o) if !o.alive => match self.owner_is_dead(sid, &o).await {
                Ok(t) => t,
                Err(r) => return r,
            },
            Some(o) => match o.internal_url {
                Some(url) => Some((o.node_id, url)),
                None => return Routed::Refused(unavailable()),
            },
        };
        let node = target.as_ref().map_or(self.node_id.as_str(), |(n, _)| n.as_str());
        if !req.connection_id_generated {
            if let Err(e) = self.db.route_connection(&req.connection_id, node).await {
                tracing::warn!(error = %e, "cannot record the connection's node; its trickled candidates stay local");
            }
        }
        let Some((node, url)) = target else { return Routed::Local };
        tracing::info!(to = %node, "forwarding an offer to the experiment's node");
        self.forward(&node, &url, "/internal/v1/offer", content_type, body).await
    }

    /// Forwards a request to node `node`'s internal API, signed; its answer, or 502.
    async fn forward(&self, node: &str, url: &str, path: &str, content_type: Option<&str>, body: Bytes) -> Routed {
        match internal::post(&self.signer, &self.node_id, url, path, content_type, body, OFFER_TIMEOUT).await {
            Ok(a) => Routed::Remote(a),
            Err(e) => {
                tracing::warn!(to = %node, path, error = %e, "a node did not answer a forwarded request");
                Routed::Refused(WireError::new(
                    502,
                    ErrorType::InternalServerError,
                    "The server running this experiment did not answer; try again.",
                ))
            }
        }
    }

    /// Routes a trickled candidate of connection `connection_id` to the node that answers the
    /// connection; waits up to 2 s for the route when the offer is still being routed.
    pub async fn route_ice(&self, connection_id: &str, content_type: Option<&str>, body: Bytes) -> Routed {
        let deadline = tokio::time::Instant::now() + ICE_ROUTE_WAIT;
        let (node, url) = loop {
            match self.db.connection_node(connection_id).await {
                Ok(Some((node, _))) if node == self.node_id => return Routed::Local,
                Ok(Some((node, Some(url)))) => break (node, url),
                Ok(Some((_, None))) => return Routed::Refused(unavailable()),
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Unknown: this node buffers it, as for an offer still on its way here.
                Ok(None) => return Routed::Local,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up the connection's node; handling the candidate here");
                    return Routed::Local;
                }
            }
        };
        self.forward(&node, &url, "/internal/v1/ice", content_type, body).await
    }
}
