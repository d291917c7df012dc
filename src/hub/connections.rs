//! Offers and connections: `/offer` (credentials, the participant's seat checks, answering off
//! the task), trickled candidates before and after the answer (bounded), peer events, and
//! removing a connection with everything hanging off it.

use super::*;

/// How many trickled candidates we keep for a connection id the hub does not know yet, for how
/// many ids, how many bytes in all and per id, and for how long (SynthARium's buffer was
/// unbounded and never expired). Anyone can post candidates, so the bytes are what matters: a
/// candidate line is at most `protocol::MAX_CANDIDATE_LEN` (1 KiB), an id at most
/// `MAX_ID_LEN`, and the whole buffer at most [`ICE_BUFFER_BYTES`].
pub(super) const ICE_BUFFER_PER_ID: usize = 32;
pub(super) const ICE_BUFFER_IDS: usize = 1024;
pub(super) const ICE_BUFFER_BYTES: usize = 1024 * 1024;
pub(super) const ICE_BUFFER_BYTES_PER_ID: usize = 16 * 1024;
pub(super) const ICE_BUFFER_TTL: Duration = Duration::from_secs(60);

pub(super) struct PendingOffer {
    role: Role,
    connection_id: String,
    video_codec: VideoCodec,
    reply: oneshot::Sender<Result<Value, WireError>>,
}

/// Candidates trickled for connection ids not answered yet: bounded in ids, candidates and
/// bytes, oldest id evicted first, each id expiring after [`ICE_BUFFER_TTL`].
#[derive(Default)]
pub(super) struct IceBuffers {
    by_id: HashMap<String, IceBuffer>,
    order: VecDeque<String>,
    /// Accounted bytes of every buffered id and candidate.
    bytes: usize,
}

struct IceBuffer {
    created: Instant,
    candidates: Vec<IceCandidate>,
    bytes: usize,
}

/// What a candidate costs in the buffer: its strings plus a fixed overhead for the struct and
/// the allocations.
fn candidate_bytes(c: &IceCandidate) -> usize {
    const OVERHEAD: usize = std::mem::size_of::<IceCandidate>() + 64;
    c.candidate.len()
        + c.sdp_mid.as_ref().map_or(0, String::len)
        + c.username_fragment.as_ref().map_or(0, String::len)
        + OVERHEAD
}

impl IceBuffers {
    /// Buffers `candidate` for `id`, evicting expired and then the oldest ids to make room.
    pub(super) fn push(&mut self, id: String, candidate: IceCandidate, now: Instant) -> Result<(), WireError> {
        let cost = candidate_bytes(&candidate);
        let id_cost = id.len() + std::mem::size_of::<IceBuffer>() + 64;
        if let Some(buf) = self.by_id.get(&id) {
            if buf.candidates.len() >= ICE_BUFFER_PER_ID || buf.bytes + cost > ICE_BUFFER_BYTES_PER_ID {
                return Err(errors::too_many_early_candidates());
            }
        }
        let new_id = !self.by_id.contains_key(&id);
        let need = cost + if new_id { id_cost } else { 0 };
        while let Some(front) = self.order.front() {
            let expired = self.by_id.get(front).is_none_or(|b| now.duration_since(b.created) > ICE_BUFFER_TTL);
            let full = self.by_id.len() + usize::from(new_id) > ICE_BUFFER_IDS || self.bytes + need > ICE_BUFFER_BYTES;
            if !expired && !full {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                if old == id {
                    // Our own id is the oldest: it goes too, and is started afresh below.
                    return self.restart(id, candidate, now);
                }
                self.remove(&old);
            }
        }
        if new_id {
            self.order.push_back(id.clone());
            self.by_id.insert(id.clone(), IceBuffer { created: now, candidates: vec![], bytes: id_cost });
            self.bytes += id_cost;
        }
        let buf = self.by_id.get_mut(&id).expect("inserted above");
        buf.candidates.push(candidate);
        buf.bytes += cost;
        self.bytes += cost;
        METRICS.ice_buffered_bytes.set(self.bytes as i64);
        Ok(())
    }

    fn restart(&mut self, id: String, candidate: IceCandidate, now: Instant) -> Result<(), WireError> {
        self.remove(&id);
        self.push(id, candidate, now)
    }

    /// The candidates buffered for `id`, taken out.
    pub(super) fn take(&mut self, id: &str) -> Option<Vec<IceCandidate>> {
        let buf = self.remove(id)?;
        self.order.retain(|x| x != id);
        Some(buf.candidates)
    }

    fn remove(&mut self, id: &str) -> Option<IceBuffer> {
        let buf = self.by_id.remove(id)?;
        self.bytes -= buf.bytes;
        METRICS.ice_buffered_bytes.set(self.bytes as i64);
        Some(buf)
    }

    /// Accounted bytes held.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The answer to a client whose offer the peer layer could not answer: `bad_offer` (400) when
/// the offer itself was refused, 503 with the reason when the server ran out of ports or
/// descriptors (a retry may work), else 500. Logged at the matching level.
pub(super) fn peer_error(what: &str, e: &peer::PeerError, bad_offer: impl FnOnce() -> WireError) -> WireError {
    if let peer::PeerError::BadSdp(why) = e {
        // The client's text: shortened, it goes to the log.
        let why: String = why.chars().take(200).collect();
        tracing::info!(error = %why, "{what} refused: invalid session description");
        return bad_offer();
    }
    if e.is_exhaustion() {
        tracing::error!(error = %e, "{what} not answered: out of resources");
        let description = if matches!(e, peer::PeerError::NoPort) {
            "No free UDP port for media; try again later."
        } else {
            "The server is out of sockets or open files; try again later."
        };
        return errors::out_of_resources(description);
    }
    tracing::error!(error = %e, "{what} not answered");
    WireError::internal()
}

impl Hub {
    pub(super) fn on_offer(&mut self, req: OfferRequest, reply: oneshot::Sender<Result<Value, WireError>>) {
        let role = match &req.user {
            OfferUser::Experimenter { password } => {
                if !constant_time_eq(password, &self.cfg.experimenter_password) {
                    let _ = reply.send(Err(errors::bad_password()));
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

    /// [`experiment::check_participant_offer`] against the hub's current state.
    pub(super) fn check_participant_offer(
        &self,
        session_id: &SessionId,
        participant_id: &ParticipantId,
    ) -> Result<(), WireError> {
        experiment::check_participant_offer(
            self.sessions.get(session_id),
            self.experiments.get(session_id),
            participant_id,
        )
    }

    pub(super) async fn on_answered(&mut self, token: u64, result: Result<peer::MainConnection, peer::PeerError>) {
        let Some(pending) = self.pending.remove(&token) else { return };
        let mc = match result {
            Ok(mc) => mc,
            Err(e) => {
                let bad_offer = errors::unparseable_offer;
                let _ = pending.reply.send(Err(peer_error("offer", &e, bad_offer)));
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
        let id = ConnId(self.next_id());
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
        if let Some(candidates) = self.ice_buffers.take(&pending.connection_id) {
            let c = conn.clone();
            tokio::spawn(async move {
                for cand in candidates {
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
                summary = self.sessions.get(session_id).and_then(|s| {
                    let me = self.aliases.viewer(s, participant_id);
                    s.participant(participant_id).map(|p| session::participant_summary(p, &me))
                });
                let sink_ids = (self.next_id(), self.next_id());
                // Rejoin: the new connection takes the seat; the old one is closed.
                let Some(exp) = self.experiments.get_mut(session_id) else {
                    let _ = pending.reply.send(Err(errors::session_not_found()));
                    return;
                };
                let old = exp.seat(participant_id, id);
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
        // A participant joining a running experiment learns so (`docs/protocol.md` D9), once it has
        // asked for its session (`release_start`).
        let start_held = matches!(&pending.role, Role::Participant { session_id, .. }
            if self.experiments.get(session_id).is_some_and(|e| e.state == ExperimentState::Running));
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
                limits: Default::default(),
                start_held,
            },
        );
        let _ = pending.reply.send(Ok(protocol::offer_answer_body(&answer_sdp, summary)));
    }

    /// Sends a late joiner its held `EXPERIMENT_STARTED` (once; only if the experiment still
    /// runs: after a STOP it has had `EXPERIMENT_ENDED` instead).
    pub(super) fn release_start(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        if !std::mem::take(&mut c.start_held) {
            return;
        }
        let Role::Participant { session_id, .. } = &c.role else { return };
        if self.experiments.get(session_id).is_none_or(|e| e.state != ExperimentState::Running) {
            return;
        }
        let start_time = self.sessions.get(session_id).map(|s| s.start_time).unwrap_or(0);
        self.send(id, protocol::outgoing::experiment_started(start_time));
    }

    pub(super) fn on_http_ice(&mut self, connection_id: String, candidate: IceCandidate) -> Result<(), WireError> {
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
        self.ice_buffers.push(connection_id, candidate, Instant::now())
    }

    pub(super) async fn on_peer_event(&mut self, id: ConnId, ev: PeerEvent) {
        match ev {
            PeerEvent::ChannelOpen => {
                let Some(c) = self.conns.get_mut(&id) else { return };
                if c.open {
                    return;
                }
                c.open = true;
                if c.start_held {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(super::START_HOLD).await;
                        let _ = tx.send(Input::ReleaseStart { conn: id }).await;
                    });
                }
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
                    if !replaced {
                        exp.unseat(participant_id, id);
                    }
                }
                if !replaced {
                    self.log(session_id, "participant_left", serde_json::json!({"participant_id": participant_id}));
                }
                self.reconcile(session_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(len: usize) -> IceCandidate {
        IceCandidate {
            candidate: "c".repeat(len),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: Some("u".repeat(8)),
        }
    }

    #[test]
    fn the_early_candidate_buffer_is_bounded_in_bytes() {
        let mut b = IceBuffers::default();
        let now = Instant::now();
        let max = protocol::MAX_CANDIDATE_LEN;
        let id_of = |i: usize| format!("{i:0>width$}", width = protocol::MAX_ID_LEN);
        // 20,000 largest candidates over 2,000 largest ids: 20 MiB offered.
        for i in 0..20_000 {
            let _ = b.push(id_of(i % 2_000), cand(max), now);
            assert!(b.bytes() <= ICE_BUFFER_BYTES, "{} bytes after {i}", b.bytes());
        }
        assert!(b.bytes() > ICE_BUFFER_BYTES / 2, "the buffer is used, not just emptied");
        // The newest id is kept; the oldest were evicted.
        assert!(b.take(&id_of(1_999)).is_some_and(|c| !c.is_empty()));
        assert!(b.take(&id_of(0)).is_none());
    }

    #[test]
    fn one_id_is_capped_in_count_and_bytes() {
        let mut b = IceBuffers::default();
        let now = Instant::now();
        let mut accepted = 0;
        while b.push("one".into(), cand(protocol::MAX_CANDIDATE_LEN), now).is_ok() {
            accepted += 1;
            assert!(accepted <= ICE_BUFFER_PER_ID);
        }
        assert!((8..ICE_BUFFER_PER_ID).contains(&accepted), "the byte cap holds first: {accepted}");
        assert!(b.bytes() <= ICE_BUFFER_BYTES_PER_ID + 1024, "{}", b.bytes());
        // Small candidates: the count cap.
        for _ in 0..ICE_BUFFER_PER_ID {
            b.push("two".into(), cand(100), now).unwrap();
        }
        assert!(b.push("two".into(), cand(100), now).is_err());
        assert_eq!(b.take("two").map(|c| c.len()), Some(ICE_BUFFER_PER_ID));
        assert!(b.take("two").is_none());
    }

    #[test]
    fn expired_ids_are_dropped() {
        let mut b = IceBuffers::default();
        let t0 = Instant::now();
        b.push("old".into(), cand(100), t0).unwrap();
        b.push("new".into(), cand(100), t0 + ICE_BUFFER_TTL + Duration::from_secs(1)).unwrap();
        assert!(b.take("old").is_none());
        assert!(b.take("new").is_some());
        assert_eq!(b.bytes(), 0);
    }
}
