//! Subscriptions: reconciling the open sub-connections to who should see whom
//! ([`Experiment::desired_subs`]), and the sub-connection handshake (proposal, offer, answer, ICE).

use super::connections::ICE_BUFFER_PER_ID;
use super::*;

impl Hub {
    /// Who should see whom now ([`Experiment::desired_subs`]), given which connections are open.
    pub(super) fn desired_subs(&self, session_id: &SessionId) -> HashSet<(ParticipantId, ConnId)> {
        let Some(exp) = self.experiments.get(session_id) else { return HashSet::new() };
        exp.desired_subs(|id| self.conns.get(&id).is_some_and(|c| c.open))
    }

    /// Opens and closes sub-connections of one experiment to match [`Self::desired_subs`].
    pub(crate) fn reconcile(&mut self, session_id: &SessionId) {
        let want = self.desired_subs(session_id);
        let have: Vec<(String, ParticipantId, ConnId)> = self
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

    pub(super) fn propose(&mut self, session_id: &SessionId, publisher: ParticipantId, subscriber: ConnId) {
        let Some(sub_conn) = self.conns.get(&subscriber) else { return };
        let summary = match &sub_conn.role {
            // The experimenter UI resolves names from its session data with the id.
            Role::Experimenter { .. } => Value::String(publisher.to_string()),
            // A participant sees the publisher under its own alias for it, never the real id.
            Role::Participant { participant_id, .. } => self
                .sessions
                .get(session_id)
                .and_then(|s| {
                    let viewer = self.aliases.viewer(s, participant_id);
                    s.participant(&publisher).map(|p| session::participant_summary(p, &viewer))
                })
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
        self.send(subscriber, protocol::outgoing::connection_proposal(id, summary));
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
        let unknown = || errors::unknown_offer_id(&id);
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

    pub(super) fn on_sub_answered(&mut self, sub_id: String, result: Result<peer::SubConnection, peer::PeerError>) {
        let Some(sub) = self.subs.get(&sub_id) else { return }; // closed meanwhile; dropped here
        let subscriber = sub.subscriber;
        let sc = match result {
            Ok(sc) => sc,
            Err(e) => {
                self.subs.remove(&sub_id);
                let bad_offer = errors::unappliable_sub_offer;
                let err = super::connections::peer_error("sub-connection offer", &e, bad_offer);
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
        self.send(subscriber, protocol::outgoing::connection_answer(sub_id, answer_sdp));
    }

    /// The subscriber's connection is up: start forwarding to it (the forwarder asks the
    /// publisher for a keyframe, which now reaches the new viewer).
    pub(super) fn on_sub_connected(&mut self, sub_id: &str) {
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
        let sub = self
            .subs
            .get_mut(id)
            .filter(|s| s.subscriber == from)
            .ok_or_else(|| errors::unknown_subconnection_id(id))?;
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
            None => return Err(errors::too_many_candidates_before_offer()),
        }
        Ok(())
    }
}
