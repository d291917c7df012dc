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
//! Subscriptions are desired state: [`Hub::reconcile`] derives from the experiment's state and
//! its connected users who should receive whom, and opens or closes sub-connections to match.
//! A participant is a seat, not a connection: a rejoin swaps the connection under the seat, and
//! the seat's forwarders (and therefore every subscriber's view) carry on.

mod experiment;
mod handlers;
mod media;
mod recording;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::config::{constant_time_eq, Config};
use crate::metrics::METRICS;
use crate::peer::forward::Kind;
use crate::peer::{self, Connection, IceCandidate, PeerEvent, PeerFactory, SubHandle, VideoCodec};
use crate::protocol::{self, ErrorType, MessageType, OfferRequest, OfferUser, WireError};
use crate::session::store::SessionStore;
use crate::session::{self, Session};

pub use experiment::{Experiment, ExperimentState};

/// A connection's id inside the hub (never sent to clients).
pub type ConnId = u64;

/// How many trickled candidates we keep for a connection id the hub does not know yet, for how
/// many ids, and for how long (SynthARium's buffer was unbounded and never expired).
const ICE_BUFFER_PER_ID: usize = 32;
const ICE_BUFFER_IDS: usize = 1024;
const ICE_BUFFER_TTL: Duration = Duration::from_secs(60);

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
        session_id: String,
        participant_id: String,
        kind: Kind,
        ev: crate::media::pipeline::ToHub,
    },
    /// Time to ping a participant for its PING filters.
    PingTick {
        session_id: String,
        participant_id: String,
    },
    SubClosed {
        sub_id: String,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Cheap, cloneable access to the hub task.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Input>,
}

impl HubHandle {
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

    /// Stops every experiment (as SynthARium does on shutdown) and closes all connections.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Input::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn unavailable() -> WireError {
    WireError::new(503, ErrorType::InternalServerError, "The server is shutting down.")
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Experimenter { id: String },
    Participant { session_id: String, participant_id: String },
}

pub(crate) struct Conn {
    pub role: Role,
    pub conn: Connection,
    /// The client's data channel is open (SynthARium's CONNECTED).
    pub open: bool,
    /// Experimenters: the experiment (session id) joined.
    pub experiment: Option<String>,
    pub connection_id: String,
    /// Participants: the codec its browser sends (from its offer).
    pub video_codec: VideoCodec,
    /// Participants: the forwarder sink ids of its echo.
    pub echo_sinks: Option<(u64, u64)>,
}

/// A publisher→subscriber connection.
pub(crate) struct Sub {
    pub session_id: String,
    pub publisher: String,
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

struct PendingOffer {
    role: Role,
    connection_id: String,
    video_codec: VideoCodec,
    reply: oneshot::Sender<Result<Value, WireError>>,
}

struct IceBuffer {
    created: Instant,
    candidates: Vec<IceCandidate>,
}

/// Filter-name lookups for the protocol parser, backed by the filter catalogue.
pub(crate) struct Catalogue;

impl protocol::FilterNames for Catalogue {
    fn is_filter(&self, name: &str) -> bool {
        filters::find(name).is_some_and(|f| !f.group)
    }
    fn is_group_filter(&self, name: &str) -> bool {
        filters::find(name).is_some_and(|f| f.group)
    }
}

/// The hub's state. Only the hub task touches it.
pub(crate) struct Hub {
    pub cfg: Arc<Config>,
    factory: Arc<PeerFactory>,
    store: Arc<SessionStore>,
    tx: mpsc::Sender<Input>,
    pub sessions: BTreeMap<String, Session>,
    pub experiments: HashMap<String, Experiment>,
    pub conns: HashMap<ConnId, Conn>,
    /// Experimenters on the hub, in connection order.
    pub experimenters: Vec<ConnId>,
    pub subs: HashMap<String, Sub>,
    by_connection_id: HashMap<String, ConnId>,
    ice_buffers: HashMap<String, IceBuffer>,
    ice_order: VecDeque<String>,
    pending: HashMap<u64, PendingOffer>,
    next_id: u64,
    /// Sessions recording (their experiment runs, or its files are still being finished).
    recordings: HashMap<String, crate::record::SessionRecord>,
    /// Records being closed (their writer finishing), awaited at shutdown.
    closing: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the hub task over the sessions found on disk.
pub fn start(cfg: Arc<Config>, store: Arc<SessionStore>, sessions: Vec<Session>) -> HubHandle {
    let (tx, rx) = mpsc::channel(4096);
    let hub = Hub {
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
        ice_buffers: HashMap::new(),
        ice_order: VecDeque::new(),
        pending: HashMap::new(),
        next_id: 1,
        recordings: HashMap::new(),
        closing: Vec::new(),
    };
    tokio::spawn(hub.run(rx));
    HubHandle { tx }
}

/// Wall clock in epoch milliseconds: the hub's only clock read, passed down as `now`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        while let Some(input) = rx.recv().await {
            match input {
                Input::Offer { req, reply } => self.on_offer(req, reply),
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
                Input::PingTick { session_id, participant_id } => self.on_ping_tick(&session_id, &participant_id),
                Input::SubClosed { sub_id } => {
                    if let Some(sub) = self.subs.get(&sub_id) {
                        let sid = sub.session_id.clone();
                        self.close_sub(&sub_id);
                        // The subscriber's view failed (e.g. ICE); offer it again if still wanted.
                        self.reconcile(&sid);
                    }
                }
                Input::Shutdown { reply } => {
                    self.shutdown().await;
                    self.finish_recordings(&mut rx).await;
                    let _ = reply.send(());
                    break;
                }
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ----------------------------------------------------------------------------------
    // Offers and connections
    // ----------------------------------------------------------------------------------

    fn on_offer(&mut self, req: OfferRequest, reply: oneshot::Sender<Result<Value, WireError>>) {
        let role = match &req.user {
            OfferUser::Experimenter { password } => {
                if !constant_time_eq(password, &self.cfg.experimenter_password) {
                    let _ = reply.send(Err(WireError::new(
                        401,
                        ErrorType::InvalidRequest,
                        "Invalid or missing experimenter password.",
                    )));
                    return;
                }
                Role::Experimenter { id: format!("E{}", session::new_id()) }
            }
            OfferUser::Participant { session_id, participant_id } => {
                if let Err(e) = self.check_participant_offer(session_id, participant_id) {
                    let _ = reply.send(Err(e));
                    return;
                }
                Role::Participant { session_id: session_id.clone(), participant_id: participant_id.clone() }
            }
        };
        METRICS.offers_total.inc();
        let token = self.next_id();
        let echo = matches!(role, Role::Participant { .. });
        let video_codec = VideoCodec::for_offer(&req.offer.sdp);
        self.pending.insert(token, PendingOffer { role, connection_id: req.connection_id.clone(), video_codec, reply });
        let factory = self.factory.clone();
        let tx = self.tx.clone();
        let sdp = req.offer.sdp.clone();
        tokio::spawn(async move {
            let result = factory.answer_main(sdp, echo).await;
            let _ = tx.send(Input::Answered { token, result }).await;
        });
    }

    /// SynthARium's participant checks (reference §2.2 step 7), with exphub's changes: a
    /// rejoin takes over the seat instead of failing, and an ended experiment refuses joins.
    fn check_participant_offer(&self, session_id: &str, participant_id: &str) -> Result<(), WireError> {
        let exp = self
            .experiments
            .get(session_id)
            .ok_or_else(|| WireError::new(400, ErrorType::UnknownSession, "Session not found."))?;
        let session = self
            .sessions
            .get(session_id)
            .ok_or_else(|| WireError::new(400, ErrorType::UnknownSession, "Session not found."))?;
        let p = session.participant(participant_id).ok_or_else(|| {
            WireError::new(400, ErrorType::UnknownParticipant, "Participant not found in the given session.")
        })?;
        if p.banned {
            return Err(WireError::new(
                400,
                ErrorType::BannedParticipant,
                "You have been banned and can no longer join the experiment.",
            ));
        }
        if exp.state == ExperimentState::Ended {
            return Err(WireError::new(409, ErrorType::InvalidRequest, "The experiment has ended."));
        }
        Ok(())
    }

    async fn on_answered(&mut self, token: u64, result: Result<peer::MainConnection, peer::PeerError>) {
        let Some(pending) = self.pending.remove(&token) else { return };
        let mc = match result {
            Ok(mc) => mc,
            Err(e) => {
                tracing::warn!(error = %e, "could not answer offer");
                let err = match e {
                    peer::PeerError::BadSdp(_) => {
                        WireError::new(400, ErrorType::InvalidRequest, "Failed to parse offer.")
                    }
                    _ => WireError::internal(),
                };
                let _ = pending.reply.send(Err(err));
                return;
            }
        };
        // The world may have changed while we negotiated (a ban, a stop): check again.
        if let Role::Participant { session_id, participant_id } = &pending.role {
            if let Err(e) = self.check_participant_offer(session_id, participant_id) {
                mc.conn.close_after_flush();
                let _ = pending.reply.send(Err(e));
                return;
            }
        }
        let id = self.next_id();
        let peer::MainConnection { answer_sdp, conn, mut events, echo } = mc;
        // Relay this connection's events into the hub, tagged with its id.
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if tx.send(Input::Peer { conn: id, ev }).await.is_err() {
                    break;
                }
            }
        });
        if let Some(buf) = self.ice_buffers.remove(&pending.connection_id) {
            let c = conn.clone();
            tokio::spawn(async move {
                for cand in buf.candidates {
                    if let Err(e) = c.add_ice_candidate(cand).await {
                        tracing::debug!(error = %e, "buffered candidate rejected");
                    }
                }
            });
        }
        self.by_connection_id.insert(pending.connection_id.clone(), id);
        let mut summary = None;
        let mut echo_sinks = None;
        match &pending.role {
            Role::Experimenter { .. } => {
                METRICS.connections_experimenter.set(METRICS.connections_experimenter.get() + 1);
                self.experimenters.push(id);
            }
            Role::Participant { session_id, participant_id } => {
                METRICS.connections_participant.set(METRICS.connections_participant.get() + 1);
                summary = self
                    .sessions
                    .get(session_id)
                    .and_then(|s| s.participant(participant_id))
                    .map(session::participant_summary);
                let sink_ids = (self.next_id(), self.next_id());
                // Rejoin: the new connection takes the seat; the old one is closed.
                let Some(exp) = self.experiments.get_mut(session_id) else {
                    let _ =
                        pending.reply.send(Err(WireError::new(400, ErrorType::UnknownSession, "Session not found.")));
                    return;
                };
                let old = exp.participants.insert(participant_id.clone(), id);
                if let (Some((v, a)), Some(media)) = (echo, self.seat_media(session_id, participant_id)) {
                    media.video.add_sink(sink_ids.0, v, None);
                    media.audio.add_sink(sink_ids.1, a, None);
                    echo_sinks = Some(sink_ids);
                }
                self.log(
                    session_id,
                    "participant_joined",
                    serde_json::json!({"participant_id": participant_id, "rejoin": old.is_some()}),
                );
                if let Some(old) = old {
                    tracing::info!(participant = %participant_id, "rejoin: replacing the previous connection");
                    self.drop_connection(old, true);
                }
            }
        }
        self.conns.insert(
            id,
            Conn {
                role: pending.role.clone(),
                conn,
                open: false,
                experiment: None,
                connection_id: pending.connection_id,
                video_codec: pending.video_codec,
                echo_sinks,
            },
        );
        // A participant joining a running experiment learns so at once (contract §2.9).
        if let Role::Participant { session_id, .. } = &pending.role {
            if let Some(exp) = self.experiments.get(session_id) {
                if exp.state == ExperimentState::Running {
                    let start_time = self.sessions.get(session_id).map(|s| s.start_time).unwrap_or(0);
                    self.send(
                        id,
                        protocol::encode(
                            MessageType::ExperimentStarted,
                            serde_json::json!({ "start_time": start_time }),
                        ),
                    );
                }
            }
        }
        let _ = pending.reply.send(Ok(protocol::offer_answer_body(&answer_sdp, summary)));
    }

    fn on_http_ice(&mut self, connection_id: String, candidate: IceCandidate) -> Result<(), WireError> {
        if let Some(conn) = self.by_connection_id.get(&connection_id).and_then(|id| self.conns.get(id)) {
            let c = conn.conn.clone();
            tokio::spawn(async move {
                if let Err(e) = c.add_ice_candidate(candidate).await {
                    tracing::debug!(error = %e, "remote candidate rejected");
                }
            });
            return Ok(());
        }
        // Not answered yet (the dev frontend trickles before /offer returns): buffer, bounded.
        let now = Instant::now();
        while let Some(front) = self.ice_order.front() {
            let expired = self.ice_buffers.get(front).is_none_or(|b| now.duration_since(b.created) > ICE_BUFFER_TTL);
            if !expired && self.ice_buffers.len() < ICE_BUFFER_IDS {
                break;
            }
            if let Some(id) = self.ice_order.pop_front() {
                self.ice_buffers.remove(&id);
            }
        }
        let buf = self.ice_buffers.entry(connection_id.clone()).or_insert_with(|| {
            self.ice_order.push_back(connection_id);
            IceBuffer { created: now, candidates: vec![] }
        });
        if buf.candidates.len() >= ICE_BUFFER_PER_ID {
            return Err(WireError::new(
                400,
                ErrorType::InvalidRequest,
                "Too many candidates for an unknown connection.",
            ));
        }
        buf.candidates.push(candidate);
        Ok(())
    }

    async fn on_peer_event(&mut self, id: ConnId, ev: PeerEvent) {
        match ev {
            PeerEvent::ChannelOpen => {
                let Some(c) = self.conns.get_mut(&id) else { return };
                if c.open {
                    return;
                }
                c.open = true;
                if let Role::Participant { session_id, participant_id } = c.role.clone() {
                    // Its echo starts with a picture.
                    if let Some(m) = self.experiments.get(&session_id).and_then(|e| e.media.get(&participant_id)) {
                        m.video.request_keyframe();
                    }
                    self.reconcile(&session_id);
                } else if let Some(sid) = c.experiment.clone() {
                    self.reconcile(&sid);
                }
            }
            PeerEvent::Message { data, is_text } => {
                if !self.conns.contains_key(&id) {
                    return;
                }
                METRICS.messages_received.inc();
                self.on_message(id, &data, is_text).await;
            }
            PeerEvent::Track(track) => {
                let Some(Role::Participant { session_id, participant_id }) =
                    self.conns.get(&id).map(|c| c.role.clone())
                else {
                    return;
                };
                let Some(exp) = self.experiments.get(&session_id) else { return };
                if exp.participants.get(&participant_id) != Some(&id) {
                    return; // a stale connection's late track
                }
                let Some(media) = self.seat_media(&session_id, &participant_id) else { return };
                match track.kind {
                    Kind::Video => media.video.set_source(track),
                    Kind::Audio => media.audio.set_source(track),
                }
            }
            PeerEvent::Connected => {}
            PeerEvent::Closed => self.drop_connection(id, false),
        }
    }

    /// Removes a connection and everything hanging off it. `replaced`: a rejoin took the seat.
    pub(crate) fn drop_connection(&mut self, id: ConnId, replaced: bool) {
        let Some(c) = self.conns.remove(&id) else { return };
        c.conn.close_after_flush();
        self.by_connection_id.remove(&c.connection_id);
        match &c.role {
            Role::Experimenter { .. } => {
                METRICS.connections_experimenter.set(METRICS.connections_experimenter.get() - 1);
                self.experimenters.retain(|e| *e != id);
                if let Some(sid) = &c.experiment {
                    if let Some(exp) = self.experiments.get_mut(sid) {
                        exp.experimenters.retain(|e| *e != id);
                    }
                    self.log(sid, "experimenter_left", serde_json::json!({"connection": id}));
                    self.reconcile(sid);
                    self.maybe_drop_experiment(sid);
                }
            }
            Role::Participant { session_id, participant_id } => {
                METRICS.connections_participant.set(METRICS.connections_participant.get() - 1);
                if let Some(exp) = self.experiments.get_mut(session_id) {
                    if let (Some((v, a)), Some(m)) = (c.echo_sinks, exp.media.get(participant_id)) {
                        m.video.remove_sink(v);
                        m.audio.remove_sink(a);
                    }
                    if !replaced && exp.participants.get(participant_id) == Some(&id) {
                        exp.participants.remove(participant_id);
                    }
                }
                if !replaced {
                    self.log(session_id, "participant_left", serde_json::json!({"participant_id": participant_id}));
                }
                self.reconcile(session_id);
            }
        }
    }

    /// The connection currently holding participant `pid`'s seat in experiment `sid`.
    pub(crate) fn seat(&self, sid: &str, pid: &str) -> Option<ConnId> {
        self.experiments.get(sid).and_then(|e| e.participants.get(pid)).copied()
    }

    /// Queues a message for a connection; a client whose outbox is full is dropped.
    pub(crate) fn send(&mut self, id: ConnId, msg: String) {
        let Some(c) = self.conns.get(&id) else { return };
        METRICS.messages_sent.inc();
        if !c.conn.send(msg) {
            tracing::warn!(conn = id, "client does not read its messages; dropping the connection");
            self.drop_connection(id, false);
        }
    }

    pub(crate) fn send_error(&mut self, id: ConnId, e: &WireError) {
        METRICS.error(e.kind);
        self.send(id, protocol::error_message(e));
    }

    // ----------------------------------------------------------------------------------
    // Subscriptions (desired state + reconcile)
    // ----------------------------------------------------------------------------------

    /// Who should see whom now, by SynthARium's rules: experimenters in the experiment see every
    /// connected participant; participants see each other once the experiment has started.
    fn desired_subs(&self, session_id: &str) -> HashSet<(String, ConnId)> {
        let mut want = HashSet::new();
        let Some(exp) = self.experiments.get(session_id) else { return want };
        // A subscriber needs an open data channel (proposals go over it). A publisher only
        // needs its seat taken: while a rejoining participant's new connection comes up, its
        // subscribers keep their sub-connections and the forwarders switch source underneath.
        let open = |id: &ConnId| self.conns.get(id).is_some_and(|c| c.open);
        for e in exp.experimenters.iter().filter(|e| open(e)) {
            for pid in exp.participants.keys() {
                want.insert((pid.clone(), *e));
            }
        }
        if exp.state != ExperimentState::Waiting {
            for (pid, pub_conn) in &exp.participants {
                for sub_conn in exp.participants.values().filter(|c| open(c)) {
                    if sub_conn != pub_conn {
                        want.insert((pid.clone(), *sub_conn));
                    }
                }
            }
        }
        want
    }

    /// Opens and closes sub-connections of one experiment to match [`Self::desired_subs`].
    pub(crate) fn reconcile(&mut self, session_id: &str) {
        let want = self.desired_subs(session_id);
        let have: Vec<(String, String, ConnId)> = self
            .subs
            .iter()
            .filter(|(_, s)| s.session_id == session_id)
            .map(|(id, s)| (id.clone(), s.publisher.clone(), s.subscriber))
            .collect();
        let mut present = HashSet::new();
        for (sub_id, publisher, subscriber) in have {
            if want.contains(&(publisher.clone(), subscriber)) {
                present.insert((publisher, subscriber));
            } else {
                self.close_sub(&sub_id);
            }
        }
        let mut missing: Vec<_> = want.difference(&present).cloned().collect();
        missing.sort();
        for (publisher, subscriber) in missing {
            self.propose(session_id, publisher, subscriber);
        }
        METRICS.subconnections.set(self.subs.len() as i64);
    }

    fn propose(&mut self, session_id: &str, publisher: String, subscriber: ConnId) {
        let Some(sub_conn) = self.conns.get(&subscriber) else { return };
        let summary = match sub_conn.role {
            // The experimenter UI resolves names from its session data with the id.
            Role::Experimenter { .. } => Value::String(publisher.clone()),
            Role::Participant { .. } => self
                .sessions
                .get(session_id)
                .and_then(|s| s.participant(&publisher))
                .map(session::participant_summary)
                .unwrap_or(Value::Null),
        };
        let id = short_uuid();
        self.subs.insert(
            id.clone(),
            Sub {
                session_id: session_id.to_owned(),
                publisher,
                subscriber,
                handle: None,
                offered: false,
                early_ice: vec![],
                sink_ids: None,
                sinks: None,
            },
        );
        self.send(
            subscriber,
            protocol::encode(
                MessageType::ConnectionProposal,
                serde_json::json!({"id": id, "participant_summary": summary}),
            ),
        );
    }

    pub(crate) fn close_sub(&mut self, sub_id: &str) {
        let Some(sub) = self.subs.remove(sub_id) else { return };
        if let (Some((v, a)), Some(m)) =
            (sub.sink_ids, self.experiments.get(&sub.session_id).and_then(|e| e.media.get(&sub.publisher)))
        {
            m.video.remove_sink(v);
            m.audio.remove_sink(a);
        }
        if let Some(h) = sub.handle {
            h.close();
        }
        METRICS.subconnections.set(self.subs.len() as i64);
    }

    /// `CONNECTION_OFFER` from a subscriber: answer it off the hub task.
    pub(crate) fn on_connection_offer(&mut self, from: ConnId, id: String, sdp: String) -> Result<(), WireError> {
        let unknown = || WireError::new(0, ErrorType::UnknownSubconnectionId, format!("Unknown offer ID {id}"));
        let sub = self.subs.get_mut(&id).filter(|s| s.subscriber == from && !s.offered).ok_or_else(unknown)?;
        sub.offered = true;
        let codec = self
            .experiments
            .get(&sub.session_id)
            .and_then(|e| e.participants.get(&sub.publisher))
            .and_then(|c| self.conns.get(c))
            .map(|c| c.video_codec)
            .unwrap_or(VideoCodec::Vp8);
        let factory = self.factory.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = factory.answer_subscription(sdp, codec).await;
            let _ = tx.send(Input::SubAnswered { sub_id: id, result }).await;
        });
        Ok(())
    }

    fn on_sub_answered(&mut self, sub_id: String, result: Result<peer::SubConnection, peer::PeerError>) {
        let Some(sub) = self.subs.get(&sub_id) else { return }; // closed meanwhile; dropped here
        let subscriber = sub.subscriber;
        let sc = match result {
            Ok(sc) => sc,
            Err(e) => {
                tracing::warn!(error = %e, "could not answer a sub-connection offer");
                self.subs.remove(&sub_id);
                let err = match e {
                    peer::PeerError::BadSdp(_) => WireError::new(
                        400,
                        ErrorType::InvalidDatatype,
                        "Invalid connection offer dict: the offer could not be applied.",
                    ),
                    _ => WireError::internal(),
                };
                self.send_error(subscriber, &err);
                return;
            }
        };
        let handle = sc.handle();
        let sub = self.subs.get_mut(&sub_id).expect("looked up above");
        let early = std::mem::take(&mut sub.early_ice);
        sub.handle = Some(handle.clone());
        sub.sinks = Some((sc.video.clone(), sc.audio.clone()));
        let peer::SubConnection { answer_sdp, mut events, .. } = sc;
        let tx = self.tx.clone();
        let id2 = sub_id.clone();
        tokio::spawn(async move {
            for c in early {
                let _ = handle.add_ice_candidate(c).await;
            }
            while let Some(ev) = events.recv().await {
                let input = match ev {
                    PeerEvent::Connected => Input::SubConnected { sub_id: id2.clone() },
                    PeerEvent::Closed => Input::SubClosed { sub_id: id2.clone() },
                    _ => continue,
                };
                let closed = matches!(input, Input::SubClosed { .. });
                if tx.send(input).await.is_err() || closed {
                    break;
                }
            }
        });
        self.send(
            subscriber,
            protocol::encode(
                MessageType::ConnectionAnswer,
                serde_json::json!({"id": sub_id, "answer": {"sdp": answer_sdp, "type": "answer"}}),
            ),
        );
    }

    /// The subscriber's connection is up: start forwarding to it (the forwarder asks the
    /// publisher for a keyframe, which now reaches the new viewer).
    fn on_sub_connected(&mut self, sub_id: &str) {
        let ids = (self.next_id(), self.next_id());
        let Some(sub) = self.subs.get_mut(sub_id) else { return };
        if sub.sink_ids.is_some() {
            return;
        }
        let Some((v, a)) = sub.sinks.clone() else { return };
        sub.sink_ids = Some(ids);
        let (sid, publisher, subscriber) = (sub.session_id.clone(), sub.publisher.clone(), sub.subscriber);
        let (vg, ag) = self.sub_groups(&sid, &publisher, subscriber);
        if let Some(m) = self.seat_media(&sid, &publisher) {
            m.video.add_sink(ids.0, v, vg);
            m.audio.add_sink(ids.1, a, ag);
        }
    }

    /// `ADD_ICE_CANDIDATE` on the data channel, for one of the sender's sub-connections.
    pub(crate) fn on_sub_ice(&mut self, from: ConnId, id: &str, c: IceCandidate) -> Result<(), WireError> {
        let sub = self.subs.get_mut(id).filter(|s| s.subscriber == from).ok_or_else(|| {
            WireError::new(0, ErrorType::UnknownSubconnectionId, format!("Unknown subconnection ID {id}"))
        })?;
        match &sub.handle {
            Some(h) => {
                let h = h.clone();
                tokio::spawn(async move {
                    if let Err(e) = h.add_ice_candidate(c).await {
                        tracing::debug!(error = %e, "sub candidate rejected");
                    }
                });
            }
            None if sub.early_ice.len() < ICE_BUFFER_PER_ID => sub.early_ice.push(c),
            None => {
                return Err(WireError::new(400, ErrorType::InvalidRequest, "Too many candidates before the offer."))
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------
    // Persistence
    // ----------------------------------------------------------------------------------

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

    /// Drops an ended experiment once no experimenter is in it (contract §2.10); its session
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

    async fn shutdown(&mut self) {
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
