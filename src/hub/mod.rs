//! `hub`: the control plane. One task owns every session, live experiment, connection and
//! sub-connection, and handles its inputs (HTTP offers, data-channel messages, peer events,
//! results of asynchronous peer work) strictly in arrival order.
//!
//! Why one task and no locks: SynthARium's races (issues #152, #241, #297) come from
//! concurrent handlers mutating shared experiment state. Here a message is handled to the end
//! (including the durable write of any session change) before the next one is looked at, so
//! every reply and broadcast reflects one consistent state. Control traffic is small (a few
//! messages per second per client); anything slow is moved off the task: peer-connection
//! negotiation runs in spawned tasks that report back as inputs, disk writes run on the
//! blocking pool (awaited, so a reply is never sent before its change is on disk), and media
//! never passes through here at all (see `peer::forward`).
//!
//! Subscriptions are desired state: `Hub::reconcile` derives from the experiment's state and
//! its connected users who should receive whom, and opens or closes sub-connections to match.
//! A participant is a seat, not a connection: a rejoin swaps the connection under the seat, and
//! the seat's forwarders (and therefore every subscriber's view) carry on.

mod cluster;
mod connections;
mod errors;
mod experiment;
mod failover;
mod group;
mod handlers;
mod limits;
mod media;
mod persist;
mod postproc;
mod recording;
mod shared;
mod subscriptions;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::config::{constant_time_eq, Config};
use crate::media::Kind;
use crate::metrics::METRICS;
use crate::peer::{self, Connection, IceCandidate, PeerEvent, PeerFactory, SubHandle, VideoCodec};
use crate::protocol::{self, ErrorType, OfferRequest, OfferUser, WireError};
use crate::session::store::SessionStore;
use crate::session::{self, ParticipantId, Session, SessionId};

pub use experiment::{Experiment, ExperimentState};
pub use persist::Store;

/// A connection's id inside the hub (never sent to clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Inputs of the hub task.
pub(crate) enum Input {
    Offer {
        req: OfferRequest,
        reply: oneshot::Sender<Result<Value, WireError>>,
    },
    Answered {
        token: u64,
        result: Result<peer::MainConnection, peer::PeerError>,
    },
    Ice {
        connection_id: String,
        candidate: IceCandidate,
        reply: oneshot::Sender<Result<(), WireError>>,
    },
    Peer {
        conn: ConnId,
        ev: PeerEvent,
    },
    SubAnswered {
        sub_id: String,
        result: Result<peer::SubConnection, peer::PeerError>,
    },
    SubConnected {
        sub_id: String,
    },
    /// An event of a participant's track pipeline (filter reports, messages, pings, panics).
    Media {
        session_id: SessionId,
        participant_id: ParticipantId,
        kind: Kind,
        ev: crate::media::ToHub,
    },
    /// What an experiment's group-filter aggregator reports.
    Group {
        session_id: SessionId,
        ev: crate::media::group::GroupEvent,
    },
    /// Time to ping a participant for its PING filters.
    PingTick {
        session_id: SessionId,
        participant_id: ParticipantId,
    },
    SubClosed {
        sub_id: String,
    },
    /// The post-processing job ended.
    PostProcessed(postproc::Finished),
    /// Cluster mode: where `CREATE_EXPERIMENT` of connection `conn` was placed.
    Placed {
        conn: ConnId,
        session_id: SessionId,
        result: Result<crate::cluster::Placement, crate::cluster::DbError>,
    },
    /// Cluster mode: what the database says about sessions (changed elsewhere, re-read).
    Shared(crate::cluster::sessions::SessionEvent),
    /// Cluster mode: experiment `session_id` moved to another node while this one was fenced.
    Moved {
        session_id: SessionId,
    },
    /// A late joiner that never asked for its session gets its held `EXPERIMENT_STARTED`.
    ReleaseStart {
        conn: ConnId,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Tests only: the hub task panics, as a bug would make it.
    #[cfg(test)]
    Crash,
}

/// Cheap, cloneable access to the hub task.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Input>,
    /// The `/ws` lobby broadcast; weak, so that it closes when the hub task ends.
    lobby: tokio::sync::broadcast::WeakSender<()>,
}

/// Lobby notices in flight per `/ws` socket (every notice is the same, so a socket that lags
/// behind loses nothing that matters).
const LOBBY_BACKLOG: usize = 4;

impl HubHandle {
    /// Subscribes to the lobby notices (`EXPERIMENTER_JOINED` on `/ws`: an experimenter
    /// created or joined an experiment); `None` once the hub has stopped. The receiver ends
    /// (`Closed`) when the hub task ends.
    pub fn lobby(&self) -> Option<tokio::sync::broadcast::Receiver<()>> {
        self.lobby.upgrade().map(|tx| tx.subscribe())
    }

    /// Handles `POST /offer`: the reply body, or the error to answer with.
    pub async fn offer(&self, req: OfferRequest) -> Result<Value, WireError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Input::Offer { req, reply }).await.map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }

    /// Handles `POST /addIceCandidate`.
    pub async fn add_ice_candidate(&self, connection_id: String, candidate: IceCandidate) -> Result<(), WireError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Input::Ice { connection_id, candidate, reply }).await.map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }

    /// Tests only: makes the hub task panic.
    #[cfg(test)]
    pub(crate) async fn crash(&self) {
        let _ = self.tx.send(Input::Crash).await;
    }

    /// Stops every experiment (as SynthARium does on shutdown) and closes all connections.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Input::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn unavailable() -> WireError {
    errors::shutting_down()
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Experimenter { id: String },
    Participant { session_id: SessionId, participant_id: ParticipantId },
}

pub(crate) struct Conn {
    pub role: Role,
    pub conn: Connection,
    /// The client's data channel is open (SynthARium's CONNECTED).
    pub open: bool,
    /// Experimenters: the experiment (session id) joined.
    pub experiment: Option<SessionId>,
    pub connection_id: String,
    /// Participants: the codec its browser sends (from its offer).
    pub video_codec: VideoCodec,
    /// Participants: the forwarder sink ids of its echo.
    pub echo_sinks: Option<(u64, u64)>,
    /// Its rate limits.
    pub limits: limits::Limits,
    /// Participants that joined a running experiment: `EXPERIMENT_STARTED` waits until their
    /// first `GET_SESSION` is answered (or [`START_HOLD`] after their channel opened), so that
    /// a client that navigates on it already has its session.
    pub start_held: bool,
}

/// How long a late joiner's `EXPERIMENT_STARTED` waits for its `GET_SESSION`.
pub(crate) const START_HOLD: Duration = Duration::from_secs(2);

/// A publisher→subscriber connection.
pub(crate) struct Sub {
    pub session_id: SessionId,
    pub publisher: ParticipantId,
    pub subscriber: ConnId,
    /// Set once the subscriber's offer has been answered.
    pub handle: Option<SubHandle>,
    /// The offer arrived and is being answered.
    pub offered: bool,
    /// Candidates that arrived before the answer.
    pub early_ice: Vec<IceCandidate>,
    pub sink_ids: Option<(u64, u64)>,
    /// The sinks (video, audio); added to the forwarders once the connection is up (a keyframe
    /// sent earlier would be lost), kept to move them between groups.
    pub sinks: Option<(peer::Sink, peer::Sink)>,
}

/// Filter-name lookups for the protocol parser, backed by the filter catalogue.
pub(crate) struct Catalogue;

impl protocol::FilterNames for Catalogue {
    fn is_filter(&self, name: &str) -> bool {
        filters::find(name).is_some_and(|f| !f.is_group())
    }
    fn is_group_filter(&self, name: &str) -> bool {
        filters::find(name).is_some_and(|f| f.is_group())
    }
}

/// The hub's state. Only the hub task touches it.
pub(crate) struct Hub {
    pub cfg: Arc<Config>,
    factory: Arc<PeerFactory>,
    store: Store,
    tx: mpsc::Sender<Input>,
    pub sessions: BTreeMap<SessionId, Session>,
    pub experiments: HashMap<SessionId, Experiment>,
    pub conns: HashMap<ConnId, Conn>,
    /// Experimenters on the hub, in connection order.
    pub experimenters: Vec<ConnId>,
    pub subs: HashMap<String, Sub>,
    by_connection_id: HashMap<String, ConnId>,
    ice_buffers: connections::IceBuffers,
    pending: HashMap<u64, connections::PendingOffer>,
    next_id: u64,
    /// Sessions recording (their experiment runs, or its files are still being finished).
    recordings: HashMap<SessionId, crate::record::SessionRecord>,
    /// Records being closed (their writer finishing), awaited at shutdown.
    closing: Vec<tokio::task::JoinHandle<()>>,
    /// The key of the aliases under which participants see each other (`session::Viewer`).
    pub aliases: session::Aliases,
    /// Session writes attempted so far (charged to the sender's write budget, `limits`).
    writes: std::sync::atomic::AtomicU64,
    /// `/ws` lobby notices (see [`HubHandle::lobby`]).
    lobby: tokio::sync::broadcast::Sender<()>,
    /// The post-processing job (one per server) and its last outcome.
    postproc: postproc::PostProc,
    /// Cluster mode: this node's membership (placement at CREATE_EXPERIMENT, release at the end).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `--object-store`: where recordings' finished files are copied.
    uploader: Option<crate::record::uploader::Uploader>,
    /// Cluster mode: the task of this node's event connection (sessions changed elsewhere).
    listener: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the hub task over the sessions loaded from `store` (and, with a shared store, the
/// event connection that brings other nodes' session changes). The task ends only after
/// [`HubHandle::shutdown`]; its handle tells the server if it ends otherwise (a panic).
pub fn start(
    cfg: Arc<Config>,
    store: Store,
    sessions: Vec<Session>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    uploader: Option<crate::record::uploader::Uploader>,
) -> (HubHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4096);
    if let Some(mut moved) = cluster.as_ref().and_then(|c| c.take_moved()) {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(sid) = moved.recv().await {
                if tx.send(Input::Moved { session_id: sid.into() }).await.is_err() {
                    break;
                }
            }
        });
    }
    let (lobby, _) = tokio::sync::broadcast::channel(LOBBY_BACKLOG);
    let weak_lobby = lobby.downgrade();
    let listener = match &store {
        Store::Shared { cluster, .. } => Some(cluster.listen_sessions(tx.clone(), Input::Shared)),
        Store::Files(_) => None,
    };
    let hub = Hub {
        lobby,
        factory: PeerFactory::new(cfg.rtc.clone()),
        cfg,
        store,
        tx: tx.clone(),
        sessions: sessions.into_iter().map(|s| (s.id.clone(), s)).collect(),
        experiments: HashMap::new(),
        conns: HashMap::new(),
        experimenters: vec![],
        subs: HashMap::new(),
        by_connection_id: HashMap::new(),
        ice_buffers: connections::IceBuffers::default(),
        pending: HashMap::new(),
        next_id: 1,
        recordings: HashMap::new(),
        closing: Vec::new(),
        aliases: session::Aliases::random(),
        writes: Default::default(),
        postproc: Default::default(),
        cluster,
        uploader,
        listener,
    };
    let task = tokio::spawn(hub.run(rx));
    (HubHandle { tx, lobby: weak_lobby }, task)
}

/// Wall clock in epoch milliseconds: the times of the protocol and of session files.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        while let Some(input) = rx.recv().await {
            // The hub's busy time and backlog: is the one control task the bottleneck?
            METRICS.hub_queue_depth.set(rx.len() as i64);
            let started = Instant::now();
            let stop = matches!(input, Input::Shutdown { .. });
            self.handle(input, &mut rx).await;
            METRICS.hub_inputs.inc();
            METRICS.hub_busy_ns.add(started.elapsed().as_nanos() as u64);
            if stop {
                break;
            }
        }
    }

    /// Handles one input to the end.
    async fn handle(&mut self, input: Input, rx: &mut mpsc::Receiver<Input>) {
        match input {
            Input::Offer { req, reply } => {
                self.adopt_for_offer(&req).await;
                self.on_offer(req, reply)
            }
            Input::Answered { token, result } => self.on_answered(token, result).await,
            Input::Ice { connection_id, candidate, reply } => {
                let _ = reply.send(self.on_http_ice(connection_id, candidate));
            }
            Input::Peer { conn, ev } => self.on_peer_event(conn, ev).await,
            Input::SubAnswered { sub_id, result } => self.on_sub_answered(sub_id, result),
            Input::SubConnected { sub_id } => self.on_sub_connected(&sub_id),
            Input::Media { session_id, participant_id, kind, ev } => {
                self.on_media_event(&session_id, &participant_id, kind, ev)
            }
            Input::Group { session_id, ev } => self.on_group_event(&session_id, ev),
            Input::PingTick { session_id, participant_id } => self.on_ping_tick(&session_id, &participant_id),
            Input::SubClosed { sub_id } => {
                if let Some(sub) = self.subs.get(&sub_id) {
                    let sid = sub.session_id.clone();
                    self.close_sub(&sub_id);
                    // The subscriber's view failed (e.g. ICE); offer it again if still wanted.
                    self.reconcile(&sid);
                }
            }
            Input::Placed { conn, session_id, result } => self.on_placed(conn, session_id, result).await,
            Input::Shared(ev) => self.on_shared(ev),
            Input::Moved { session_id } => self.on_moved(session_id),
            Input::ReleaseStart { conn } => self.release_start(conn),
            Input::PostProcessed(f) => self.on_post_processed(f).await,
            Input::Shutdown { reply } => {
                self.shutdown().await;
                self.finish_recordings(rx).await;
                self.finish_post_processing(rx).await;
                let _ = reply.send(());
            }
            #[cfg(test)]
            Input::Crash => panic!("the hub task crashes (test hook)"),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
    /// The connection currently holding participant `pid`'s seat in experiment `sid`.
    pub(crate) fn seat(&self, sid: &SessionId, pid: &ParticipantId) -> Option<ConnId> {
        self.experiments.get(sid).and_then(|e| e.participants.get(pid)).copied()
    }

    /// Queues a message for a connection; a client whose outbox is full is dropped.
    ///
    /// A message larger than the connection's peer accepts is never sent (it would cost the
    /// connection): the client gets `413` naming it instead, and the log a warning.
    pub(crate) fn send(&mut self, id: ConnId, msg: String) {
        self.send_all(id, vec![msg]);
    }

    /// Queues several messages in order, as one outbox entry (see [`Hub::send`]).
    pub(crate) fn send_all(&mut self, id: ConnId, mut msgs: Vec<String>) {
        let Some(c) = self.conns.get(&id) else { return };
        let limit = c.conn.max_message_size();
        for msg in msgs.iter_mut().filter(|m| m.len() > limit) {
            tracing::warn!(
                conn = %id,
                bytes = msg.len(),
                limit,
                "server message too large for the connection; sent 413"
            );
            METRICS.error(ErrorType::InvalidRequest);
            *msg = protocol::outgoing::reply_too_large(msg, limit);
        }
        METRICS.messages_sent.add(msgs.len() as u64);
        let queued = if msgs.len() == 1 { c.conn.send(msgs.remove(0)) } else { c.conn.send_all(msgs) };
        if !queued {
            tracing::warn!(conn = %id, "client does not read its messages; dropping the connection");
            self.drop_connection(id, false);
        }
    }

    /// The largest message connection `id` takes (0 if it is gone).
    pub(crate) fn send_limit(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.conn.max_message_size())
    }

    pub(crate) fn send_error(&mut self, id: ConnId, e: &WireError) {
        METRICS.error(e.kind);
        self.send(id, protocol::error_message(e));
    }
}

/// A 22-character id from SynthARium's shortuuid alphabet (base57 of a v4 uuid).
fn short_uuid() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut n = uuid::Uuid::new_v4().as_u128();
    let mut out = Vec::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[(n % 57) as usize]);
        n /= 57;
    }
    out.reverse();
    String::from_utf8(out).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_uuids_look_like_synthariums() {
        let a = super::short_uuid();
        assert_eq!(a.len(), 22);
        assert_ne!(a, super::short_uuid());
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() && !b"01IOl".contains(&b)));
    }
}
