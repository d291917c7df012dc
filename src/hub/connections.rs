//! Offers and connections: `/offer` (credentials, the participant's seat checks, answering off
//! the task), trickled candidates before and after the answer (bounded), peer events, and
//! removing a connection with everything hanging off it.

use super::*;

/// How many trickled candidates we keep for a connection id the hub does not know yet, for how
/// many ids, and for how long (SynthARium's buffer was unbounded and never expired).
pub(super) const ICE_BUFFER_PER_ID: usize = 32;
pub(super) const ICE_BUFFER_IDS: usize = 1024;
pub(super) const ICE_BUFFER_TTL: Duration = Duration::from_secs(60);

pub(super) struct PendingOffer {
    role: Role,
    connection_id: String,
    video_codec: VideoCodec,
    reply: oneshot::Sender<Result<Value, WireError>>,
}

pub(super) struct IceBuffer {
    created: Instant,
    candidates: Vec<IceCandidate>,
}

impl Hub {
    pub(super) fn on_offer(&mut self, req: OfferRequest, reply: oneshot::Sender<Result<Value, WireError>>) {
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
    pub(super) fn check_participant_offer(&self, session_id: &str, participant_id: &str) -> Result<(), WireError> {
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

    pub(super) async fn on_answered(&mut self, token: u64, result: Result<peer::MainConnection, peer::PeerError>) {
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
                limits: Default::default(),
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

    pub(super) async fn on_peer_event(&mut self, id: ConnId, ev: PeerEvent) {
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
}
