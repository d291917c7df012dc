//! The data-channel API: one function per message, in SynthARium's order of checks, with
//! exphub's deliberate changes (`docs/protocol.md` D1–D14). Every change to a session is written to disk
//! before the reply that reports it.

use serde_json::{json, Value};

use super::errors::{self, forbidden, not_connected as nce};
use super::experiment::{self, ChatSender};
use super::group;
use super::{now_ms, Catalogue, ConnId, Experiment, ExperimentState, Hub, Role};
use crate::media::Kind;
use crate::metrics::METRICS;
use crate::peer;
use crate::protocol::outgoing::{FilterData, ParticipantFiltersData};
use crate::protocol::{self, text, ClientRequest, ErrorType, FilterChannel, MessageType as T, SuccessType, WireError};
use crate::session::journal::Change;
use crate::session::model::{ChatMessage, FilterDict, Participant};
use crate::session::{self, ParticipantId, Session, SessionId};

type Res = Result<(), WireError>;

/// What a participant may send; everything else is 403 (experimenters may send any request).
const PARTICIPANT_MAY_SEND: &[T] = &[
    T::Ping,
    T::Pong,
    T::ConnectionOffer,
    T::AddIceCandidate,
    T::Chat,
    T::GetSession,
    T::GetSessionList,
    T::GetFiltersData,
    T::GetChatHistory,
];

fn success(t: SuccessType, description: &str) -> String {
    protocol::success_message(t, description)
}

/// The list of a participant's filters that `GET_FILTERS_DATA` looks in: its own filters of
/// `kind`, or its group filters of `kind`.
fn filter_list(p: &Participant, group: bool, kind: Kind) -> &[FilterDict] {
    match (group, kind) {
        (false, Kind::Video) => &p.video_filters,
        (false, Kind::Audio) => &p.audio_filters,
        (true, Kind::Video) => &p.video_group_filters,
        (true, Kind::Audio) => &p.audio_group_filters,
    }
}

fn to_peer_candidate(c: protocol::IceCandidate) -> peer::IceCandidate {
    peer::IceCandidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment,
    }
}

impl Hub {
    /// One data-channel frame from connection `id`.
    pub(super) async fn on_message(&mut self, id: ConnId, data: &[u8], is_text: bool) {
        let env = match protocol::parse_frame(data, is_text, self.cfg.max_message_bytes) {
            Ok(env) => env,
            Err(e) => return self.send_error(id, &e),
        };
        let kind = env.kind;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        // Rate limits before anything else is done for the frame (see `limits`).
        if let Err(e) = conn.limits.admit(kind, std::time::Instant::now()) {
            return self.send_error(id, &e);
        }
        let role = conn.role.clone();
        let writes_before = self.writes.load(std::sync::atomic::Ordering::Relaxed);
        // Permission before validation: a participant learns nothing about a message it may
        // not send (`docs/protocol.md` D2).
        if matches!(role, Role::Participant { .. }) && !PARTICIPANT_MAY_SEND.contains(&kind) {
            return self.send_error(id, &forbidden(kind));
        }
        // The event log gets the request as sent (only when its experiment records).
        let sid_before = self.log_target(id);
        // CREATE_EXPERIMENT and JOIN_EXPERIMENT lead into the experiment whose log they belong in.
        let logged =
            (sid_before.is_some() || matches!(kind, T::CreateExperiment | T::JoinExperiment)).then(|| env.data.clone());
        let req = match protocol::parse_request(env, &Catalogue) {
            Ok(r) => r,
            Err(e) => return self.send_error(id, &e),
        };
        let result = match role {
            Role::Experimenter { .. } => self.experimenter_request(id, req).await,
            Role::Participant { session_id, participant_id } => {
                self.participant_request(id, &session_id, &participant_id, kind, req).await
            }
        };
        // Only a message that went to the disk uses the sender's write budget.
        if self.writes.load(std::sync::atomic::Ordering::Relaxed) != writes_before {
            if let Some(c) = self.conns.get_mut(&id) {
                c.limits.charge_write();
            }
        }
        if let Some(data) = logged {
            if let Some(sid) = sid_before.or_else(|| self.log_target(id)) {
                self.log_request(id, &sid, kind, &data, result.as_ref().err());
            }
        }
        if let Err(e) = result {
            if e.kind == ErrorType::InternalServerError {
                tracing::error!(conn = %id, message = kind.as_str(), "request failed internally");
            }
            self.send_error(id, &e);
        }
        // A late joiner's EXPERIMENT_STARTED comes after its session (SynthARium's lobby
        // navigates on it and needs the session first).
        if kind == T::GetSession {
            self.release_start(id);
        }
    }

    /// Messages every user may send.
    fn common_request(&mut self, id: ConnId, req: ClientRequest) -> Res {
        match req {
            ClientRequest::Ping(data) => {
                self.send(id, protocol::pong(data, now_ms()));
                Ok(())
            }
            // Answers to the server's own PING (the PING filter).
            ClientRequest::Pong(p) => {
                if let Some(super::Role::Participant { session_id, participant_id }) =
                    self.conns.get(&id).map(|c| c.role.clone())
                {
                    self.on_pong(&session_id, &participant_id, &p.ping_data);
                }
                Ok(())
            }
            ClientRequest::ConnectionOffer { id: sub_id, offer } => self.on_connection_offer(id, sub_id, offer.sdp),
            ClientRequest::AddIceCandidate { id: sub_id, candidate } => {
                self.on_sub_ice(id, &sub_id, to_peer_candidate(candidate))?;
                self.send(id, success(SuccessType::AddIceCandidate, text::ADDED_ICE_CANDIDATE));
                Ok(())
            }
            other => Err(forbidden(other.kind())),
        }
    }

    async fn participant_request(
        &mut self,
        id: ConnId,
        sid: &SessionId,
        pid: &ParticipantId,
        kind: T,
        req: ClientRequest,
    ) -> Res {
        match req {
            ClientRequest::Ping(_)
            | ClientRequest::Pong(_)
            | ClientRequest::ConnectionOffer { .. }
            | ClientRequest::AddIceCandidate { .. } => self.common_request(id, req),
            ClientRequest::Chat(msg) => self.participant_chat(id, sid, pid, msg).await,
            ClientRequest::GetSession { session_id } => {
                if session_id != sid {
                    return Err(errors::own_session_only());
                }
                let view = self.participant_view(sid, pid)?;
                let msg = self.session_message(id, T::Session, &view);
                self.send(id, msg);
                Ok(())
            }
            // The frontend sends this on every connect; a participant gets only its own session.
            ClientRequest::GetSessionList(opts) => {
                let view = self.participant_view(sid, pid)?;
                self.send_session_list(id, [&view], opts);
                Ok(())
            }
            // Its own chat only: it holds every message the participant may read.
            ClientRequest::GetChatHistory(r) => {
                if r.session_id != sid || r.participant_id != pid {
                    return Err(errors::own_chat_only());
                }
                self.chat_history(id, r)
            }
            // SynthARium issue #154: answered with the caller's own filters only.
            ClientRequest::GetFiltersData(r) => {
                let data = self.filters_data(sid, Some(pid), &r.filter_id, &r.filter_name, r.filter_channel)?;
                self.send(id, protocol::encode(T::FiltersData, data));
                Ok(())
            }
            _ => Err(forbidden(kind)),
        }
    }

    fn participant_view(&self, sid: &SessionId, pid: &ParticipantId) -> Result<Session, WireError> {
        let s = self.sessions.get(sid).ok_or_else(|| errors::no_session(404))?;
        Ok(session::participant_view(&self.aliases.viewer(s, pid)))
    }

    /// A `CHAT` relay for connection `to`: a participant sees the other seats under its aliases.
    fn chat_for(&self, to: ConnId, sid: &SessionId, msg: &ChatMessage) -> String {
        match (self.conns.get(&to).map(|c| &c.role), self.sessions.get(sid)) {
            (Some(Role::Participant { participant_id, .. }), Some(s)) => {
                protocol::encode(T::Chat, self.aliases.viewer(s, participant_id).chat(msg))
            }
            _ => protocol::encode(T::Chat, msg),
        }
    }

    async fn experimenter_request(&mut self, id: ConnId, req: ClientRequest) -> Res {
        use ClientRequest as R;
        match req {
            R::Ping(_) | R::Pong(_) | R::ConnectionOffer { .. } | R::AddIceCandidate { .. } => {
                self.common_request(id, req)
            }
            R::GetSessionList(opts) => self.get_session_list(id, opts),
            R::GetChatHistory(r) => self.chat_history(id, r),
            R::GetSession { session_id } => self.get_session(id, &session_id),
            R::SaveSession(data) => self.save_session(id, data).await,
            R::DeleteSession { session_id } => self.delete_session(&session_id).await,
            R::CreateExperiment { session_id } => self.create_experiment(id, &session_id).await,
            R::JoinExperiment { session_id } => self.join_experiment(id, &session_id),
            R::LeaveExperiment => self.leave(id),
            R::StartExperiment => self.start_experiment(id).await,
            R::StopExperiment => self.stop(id).await,
            R::AddNote(note) => self.add_note(id, note).await,
            R::Chat(msg) => self.experimenter_chat(id, msg).await,
            R::KickParticipant(r) => self.kick_participant(id, r),
            R::BanParticipant(r) => self.ban_participant(id, r).await,
            R::Mute(r) => self.mute(id, r).await,
            R::SetFilters(r) => self.set_filters(id, r).await,
            R::SetGroupFilters(r) => self.set_group_filters(id, r).await,
            R::GetFiltersConfig => self.get_filters_config(id),
            R::GetFiltersData(r) => self.get_filters_data(id, r),
            R::GetFiltersDataSendToParticipant(r) => self.get_filters_data_send_to_participant(id, r),
            R::GetGroupFiltersData(r) => self.get_group_filters_data(id, r),
            R::UpdateReadMessageTime { participant_id, last_message_read_time } => {
                self.update_read_message_time(id, participant_id, last_message_read_time).await
            }
            R::GetRecordingList => self.get_recording_list(id),
            R::PostProcessingVideo { session_id } => self.post_processing_video(id, &session_id).await,
            R::CheckPostProcessing => self.check_post_processing(id),
            R::ServerOnly(kind) => Err(forbidden(kind)),
        }
    }

    /// `GET_SESSION`.
    fn get_session(&mut self, id: ConnId, session_id: &SessionId) -> Res {
        let s = self.sessions.get(session_id).ok_or_else(|| errors::no_session_with_id(session_id.as_str()))?;
        let msg = self.session_message(id, T::Session, s);
        self.send(id, msg);
        Ok(())
    }

    /// `LEAVE_EXPERIMENT`.
    fn leave(&mut self, id: ConnId) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to leave experiment."))?;
        self.leave_experiment(id, &sid);
        self.send(id, success(SuccessType::LeaveExperiment, text::LEFT_EXPERIMENT));
        Ok(())
    }

    /// `STOP_EXPERIMENT`.
    async fn stop(&mut self, id: ConnId) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Cannot stop experiment."))?;
        if let Some(e) = self.experiments.get(&sid) {
            e.check_stop()?;
        }
        self.stop_experiment(&sid, now_ms()).await?;
        self.send(id, success(SuccessType::StopExperiment, text::STOPPED_EXPERIMENT));
        Ok(())
    }

    /// `ADD_NOTE`.
    async fn add_note(&mut self, id: ConnId, note: session::model::Note) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Cannot add note."))?;
        self.commit(&sid, Change::Note { note }).await?;
        self.send(id, success(SuccessType::AddNote, text::ADDED_NOTE));
        Ok(())
    }

    /// `KICK_PARTICIPANT`.
    fn kick_participant(&mut self, id: ConnId, r: protocol::KickRequest) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Cannot kick participant."))?;
        let conn = self.seat(&sid, &r.participant_id).ok_or_else(errors::kick_unknown)?;
        self.remove_participant(conn, T::KickNotification, &r.reason);
        self.send(id, success(SuccessType::KickParticipant, text::KICKED_PARTICIPANT));
        Ok(())
    }

    /// `BAN_PARTICIPANT`.
    async fn ban_participant(&mut self, id: ConnId, r: protocol::KickRequest) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Cannot ban participant."))?;
        self.session_mut(&sid)?.participant(&r.participant_id).ok_or_else(errors::ban_unknown)?;
        self.commit(&sid, Change::Ban { participant: r.participant_id.clone() }).await?;
        if let Some(conn) = self.seat(&sid, &r.participant_id) {
            self.remove_participant(conn, T::BanNotification, &r.reason);
        }
        self.send(id, success(SuccessType::BanParticipant, text::BANNED_PARTICIPANT));
        Ok(())
    }

    /// `MUTE`.
    async fn mute(&mut self, id: ConnId, r: protocol::MuteRequest) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to mute participant."))?;
        self.session_mut(&sid)?.participant(&r.participant_id).ok_or_else(errors::mute_unknown)?;
        let change = Change::Mute { participant: r.participant_id.clone(), video: r.mute_video, audio: r.mute_audio };
        self.commit(&sid, change).await?;
        self.apply_media(&sid, Some(&r.participant_id));
        self.broadcast_session_change(&sid, None);
        self.send(id, success(SuccessType::Mute, text::CHANGED_MUTE));
        Ok(())
    }

    /// `SET_FILTERS`.
    async fn set_filters(&mut self, id: ConnId, r: protocol::SetFiltersRequest) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to set filters."))?;
        super::media::validate_filters(&r.video_filters, &r.audio_filters, text::INVALID_SET_FILTERS_REQUEST)?;
        let session = self.session_mut(&sid)?;
        if r.participant_id != "all" && session.participant(&r.participant_id).is_none() {
            return Err(errors::unknown_participant_id(r.participant_id.as_str()));
        }
        let participant = (r.participant_id != "all").then(|| r.participant_id.clone());
        self.commit(&sid, Change::Filters { participant, audio: r.audio_filters, video: r.video_filters }).await?;
        // Live from the next frame, without renegotiation.
        let only = (r.participant_id != "all").then_some(&r.participant_id);
        self.apply_media(&sid, only);
        self.broadcast_session_change(&sid, None);
        self.send(id, success(SuccessType::SetFilters, text::CHANGED_FILTERS));
        Ok(())
    }

    /// `SET_GROUP_FILTERS`.
    async fn set_group_filters(&mut self, id: ConnId, r: protocol::SetGroupFiltersRequest) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to set filters."))?;
        let change = Change::GroupFilters { audio: r.audio_group_filters, video: r.video_group_filters };
        self.commit(&sid, change).await?;
        self.apply_groups(&sid);
        // SynthARium never replied here (it awaited the aggregator forever); we do.
        self.broadcast_session_change(&sid, None);
        self.send(id, success(SuccessType::SetGroupFilters, text::CHANGED_GROUP_FILTERS));
        Ok(())
    }

    /// `GET_FILTERS_CONFIG`.
    fn get_filters_config(&mut self, id: ConnId) -> Res {
        // Derived from each filter's own declaration (filters crate).
        let msg = protocol::encode(T::FiltersConfig, filters::catalogue_json());
        self.send(id, msg);
        Ok(())
    }

    /// `GET_FILTERS_DATA`.
    fn get_filters_data(&mut self, id: ConnId, r: protocol::GetFiltersDataRequest) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to set filters."))?; // SynthARium's text [sic]
        let data = self.filters_data(&sid, None, &r.filter_id, &r.filter_name, r.filter_channel)?;
        self.send(id, protocol::encode(T::FiltersData, data));
        Ok(())
    }

    /// `GET_FILTERS_DATA_SEND_TO_PARTICIPANT`.
    fn get_filters_data_send_to_participant(
        &mut self,
        id: ConnId,
        r: protocol::GetFiltersDataSendToParticipantRequest,
    ) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to get filters data."))?;
        let targets: Vec<(ParticipantId, ConnId)> = if r.participant_id == "all" {
            self.experiments
                .get(&sid)
                .map(|e| e.participants.iter().map(|(p, c)| (p.clone(), *c)).collect())
                .unwrap_or_default()
        } else {
            let c = self
                .seat(&sid, &r.participant_id)
                .ok_or_else(|| errors::participant_id_not_found(r.participant_id.as_str()))?;
            vec![(r.participant_id.clone(), c)]
        };
        let only = if r.participant_id == "all" { None } else { Some(&r.participant_id) };
        let data = self.filters_data(&sid, only, &r.filter_id, &r.filter_name, r.filter_channel)?;
        for (pid, c) in targets {
            // Keyed by participant: each recipient sees the other seats under its aliases.
            let Some(s) = self.sessions.get(&sid) else { continue };
            let viewer = self.aliases.viewer(s, &pid);
            let shown: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (viewer.show(k), v.clone())).collect();
            self.send(c, protocol::encode(T::FiltersData, shown));
        }
        self.send(id, success(SuccessType::SendToParticipant, text::SENT_FILTERS_DATA_TO_PARTICIPANT));
        Ok(())
    }

    /// `UPDATE_READ_MESSAGE_TIME`.
    async fn update_read_message_time(
        &mut self,
        id: ConnId,
        participant_id: ParticipantId,
        last_message_read_time: i64,
    ) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Failed to mute participant."))?; // SynthARium's text [sic]
        self.session_mut(&sid)?.participant(&participant_id).ok_or_else(errors::select_unknown)?;
        self.commit(&sid, Change::ReadTime { participant: participant_id, time: last_message_read_time }).await
    }

    /// `GET_RECORDING_LIST`.
    fn get_recording_list(&mut self, id: ConnId) -> Res {
        let list = self.recording_list();
        self.send(id, protocol::encode(T::RecordingList, list));
        Ok(())
    }

    /// `POST_PROCESSING_VIDEO`: the face analysis of the session's recorded raw video (the runs
    /// and participants without results yet), on a thread of its own (`postproc`); the reply
    /// says where the results go.
    async fn post_processing_video(&mut self, id: ConnId, sid: &SessionId) -> Res {
        use crate::record::{faces, Manifest};
        if let Some((running, _, _)) = self.postproc.status() {
            return Err(errors::still_processing(running.as_str()));
        }
        if self.experiments.get(sid).is_some_and(|e| e.state == ExperimentState::Running)
            || self.recordings.get(sid).is_some_and(|r| r.open_files() > 0)
        {
            return Err(errors::post_processing_while_recording());
        }
        if !session::is_file_safe_id(sid.as_str()) {
            return Err(errors::no_recorded_video(sid.as_str()));
        }
        let dir = self.cfg.sessions_dir.join(sid.as_str());
        // A small read on the hub task, as RECORDING_LIST's.
        let manifest = Manifest::load(&dir).map_err(|e| {
            tracing::error!(session = %sid, error = %e, "manifest.json cannot be read");
            errors::post_processing_failed("the session's manifest.json cannot be read.")
        })?;
        let all = manifest.map(|m| faces::targets(&m, None)).unwrap_or_default();
        if all.is_empty() {
            return Err(errors::no_recorded_video(sid.as_str()));
        }
        let out = dir.join(faces::DIR);
        let shown = std::path::absolute(&out).unwrap_or(out).display().to_string();
        let todo = faces::missing(&dir, all);
        if todo.is_empty() {
            return Err(errors::post_processing_exists(&shown));
        }
        filters::face::models_dir().map_err(|e| errors::post_processing_unavailable(&e.to_string()))?;
        self.start_post_processing(sid, dir, todo).await?;
        self.send(id, protocol::encode(T::PostProcessingVideo, format!("{}{shown}", text::POST_PROCESSING_STARTED)));
        Ok(())
    }

    /// `CHECK_POST_PROCESSING`: the last job's outcome, once (`SUCCESS` or `ERROR`), else what
    /// runs now.
    fn check_post_processing(&mut self, id: ConnId) -> Res {
        use protocol::outgoing::CheckPostProcessing;
        if let Some(outcome) = self.postproc.take_outcome() {
            self.send(id, success(SuccessType::PostProcessingVideo, &outcome?));
            return Ok(());
        }
        let data = match self.postproc.status() {
            Some((sid, done, total)) => CheckPostProcessing {
                description: format!("Video post-processing of session {sid} is running: {done} of {total} frames."),
                is_processing: true,
                session_id: Some(sid),
                frames_done: Some(done),
                frames_total: Some(total),
                progress: Some(if total > 0 { (done as f64 / total as f64).min(1.0) } else { 0.0 }),
            },
            None => CheckPostProcessing {
                description: "No video post-processing is running.".into(),
                is_processing: false,
                session_id: None,
                frames_done: None,
                frames_total: None,
                progress: None,
            },
        };
        self.send(id, protocol::encode(T::CheckPostProcessing, data));
        Ok(())
    }

    /// The recording session whose log gets connection `id`'s requests.
    fn log_target(&self, id: ConnId) -> Option<SessionId> {
        let c = self.conns.get(&id)?;
        let sid = match &c.role {
            Role::Participant { session_id, .. } => session_id.clone(),
            Role::Experimenter { .. } => c.experiment.clone()?,
        };
        self.recording(&sid).then_some(sid)
    }

    /// The experiment (session id) an experimenter has joined.
    pub(super) fn joined(&self, id: ConnId) -> Option<SessionId> {
        self.conns.get(&id).and_then(|c| c.experiment.clone()).filter(|sid| self.experiments.contains_key(sid))
    }

    fn session_mut(&mut self, sid: &SessionId) -> Result<&mut Session, WireError> {
        self.sessions.get_mut(sid).ok_or_else(WireError::internal)
    }

    /// `SESSION_CHANGE` (the session, recent chat) to every experimenter on the hub but `except`.
    pub(super) fn broadcast_session_change(&mut self, sid: &SessionId, except: Option<ConnId>) {
        let Some(s) = self.sessions.get(sid) else { return };
        // One encoding per distinct connection limit (in practice one for everyone).
        let mut by_limit: Vec<(usize, String)> = vec![];
        let mut out = vec![];
        for &e in self.experimenters.iter().filter(|e| Some(**e) != except) {
            let limit = self.send_limit(e);
            let msg = match by_limit.iter().find(|(l, _)| *l == limit) {
                Some((_, m)) => m.clone(),
                None => {
                    let m = self.session_message(e, T::SessionChange, s);
                    by_limit.push((limit, m.clone()));
                    m
                }
            };
            out.push((e, msg));
        }
        for (e, msg) in out {
            self.send(e, msg);
        }
    }

    /// `kind` (`SESSION`, `SESSION_CHANGE`, `SAVED_SESSION`) carrying session `s` to connection
    /// `to`: recent chat only, as much as fits the connection. A session too large even without
    /// chat becomes a `413` error (logged).
    fn session_message(&self, to: ConnId, kind: T, s: &Session) -> String {
        let limit = self.send_limit(to);
        protocol::outgoing::encode_session(kind, s, limit).unwrap_or_else(|| {
            tracing::error!(session = %s.id, message = kind.as_str(), limit, "session too large to send");
            let without_chat = protocol::encode(kind, protocol::outgoing::session_value(s, 0));
            protocol::outgoing::reply_too_large(&without_chat, limit)
        })
    }

    /// An experimenter's `GET_SESSION_LIST`: every stored session.
    fn get_session_list(&mut self, id: ConnId, opts: protocol::GetSessionListRequest) -> Res {
        let sessions = std::mem::take(&mut self.sessions);
        self.send_session_list(id, sessions.values(), opts);
        self.sessions = sessions;
        Ok(())
    }

    /// The session list in frames that fit connection `id` (`SESSION_LIST`, then
    /// `SESSION_CHANGE`s or, when asked, `SESSION_LIST_PART`s, then `SESSION_LIST_END`; see
    /// [`protocol::outgoing::session_list_frames`]).
    fn send_session_list<'a>(
        &mut self,
        id: ConnId,
        sessions: impl IntoIterator<Item = &'a Session>,
        opts: protocol::GetSessionListRequest,
    ) {
        let (frames, too_large) = protocol::outgoing::session_list_frames(sessions, self.send_limit(id), opts);
        for sid in too_large {
            tracing::error!(session = %sid, "session too large to list, even without chat; left out of SESSION_LIST");
        }
        self.send_all(id, frames);
    }

    /// `CHAT_HISTORY`: one page of a participant's chat, oldest first.
    fn chat_history(&mut self, id: ConnId, r: protocol::GetChatHistoryRequest) -> Res {
        const DEFAULT_PAGE: u64 = 100;
        const MAX_PAGE: u64 = 1000;
        let s = self.sessions.get(&r.session_id).ok_or_else(|| errors::no_session_with_id(r.session_id.as_str()))?;
        let p = s
            .participant(&r.participant_id)
            .ok_or_else(|| errors::no_participant_with_id(r.participant_id.as_str()))?;
        let before = r.before.map_or(p.chat.len(), |b| usize::try_from(b).unwrap_or(usize::MAX));
        let limit = r.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE) as usize;
        let max_len = self.send_limit(id);
        let msg = protocol::outgoing::chat_history_page(&s.id, &p.id, &p.chat, before, limit, max_len)
            .ok_or_else(errors::chat_page_too_large)?;
        self.send(id, msg);
        Ok(())
    }

    async fn save_session(&mut self, id: ConnId, data: Value) -> Res {
        let s = session::parse_session(data).map_err(|e| protocol::invalid_data(text::INVALID_SESSION, "data", e))?;
        let saved = if s.id.is_empty() {
            let sessions = &self.sessions;
            session::prepare_new_session(s, |id| sessions.contains_key(id))?
        } else {
            let stored = self.sessions.get(&s.id).ok_or_else(errors::no_session_to_update)?;
            let mut updated = session::apply_update(stored, s)?;
            // The server is the authority on chat: a form loaded before a message arrived
            // must not erase it (`docs/protocol.md` D4, nothing is lost).
            for p in &mut updated.participants {
                if let Some(old) = stored.participant(&p.id) {
                    p.chat = old.chat.clone();
                }
            }
            updated
        };
        for f in session::all_filters(&saved) {
            let ok = if f.kind.is_group() {
                filters::find(&f.filter.name).is_some_and(|i| i.is_group())
            } else {
                filters::find(&f.filter.name).is_some_and(|i| !i.is_group())
            };
            if !ok {
                return Err(protocol::invalid_data(
                    text::INVALID_SESSION,
                    &format!("{}.name", f.path()),
                    format_args!("unknown filter {:?}", f.filter.name),
                ));
            }
        }
        for p in &saved.participants {
            super::media::validate_filters(&p.video_filters, &p.audio_filters, text::INVALID_SESSION)?;
        }
        let sid = saved.id.clone();
        let previous = self.sessions.insert(sid.clone(), saved);
        if let Err(e) = self.persist(&sid).await {
            match previous {
                Some(p) => self.sessions.insert(sid, p),
                None => self.sessions.remove(&sid),
            };
            return Err(e);
        }
        // A waiting experiment's participants get the new filters at once (`docs/protocol.md` D5).
        self.apply_media(&sid, None);
        self.broadcast_session_change(&sid, Some(id));
        let msg = self.session_message(id, T::SavedSession, &self.sessions[&sid]);
        self.send(id, msg);
        Ok(())
    }

    async fn delete_session(&mut self, sid: &SessionId) -> Res {
        if let Some(exp) = self.experiments.get(sid) {
            if exp.state != ExperimentState::Ended {
                return Err(errors::delete_with_live_experiment());
            }
            // Ended (protocol.md D10), but SynthARium's pages return to the session list after
            // STOP_EXPERIMENT without LEAVE_EXPERIMENT: whoever is still in it leaves now.
            for e in exp.experimenters.clone() {
                self.exit_experiment(e, sid);
            }
            self.drop_ended_experiment(sid);
        }
        let s = self.sessions.get(sid).ok_or_else(errors::delete_unknown_session)?;
        if s.creation_time > 0 {
            return Err(errors::delete_after_experiment());
        }
        self.delete_file(sid).await?;
        self.sessions.remove(sid);
        let msg = protocol::encode(T::DeletedSession, sid);
        for e in self.experimenters.clone() {
            self.send(e, msg.clone());
        }
        Ok(())
    }

    async fn create_experiment(&mut self, id: ConnId, sid: &SessionId) -> Res {
        if self.experiments.contains_key(sid) {
            return Err(errors::experiment_exists());
        }
        if !self.sessions.contains_key(sid) {
            return Err(errors::no_session(400));
        }
        if self.cluster.is_some() {
            // Placed first (off the hub task); `open_experiment` follows if it lands here.
            return self.place_experiment(id, sid);
        }
        self.open_experiment(id, sid).await
    }

    /// Creates experiment `sid` on this node, with connection `id` as its first experimenter.
    pub(super) async fn open_experiment(&mut self, id: ConnId, sid: &SessionId) -> Res {
        let now = now_ms();
        // One journal line (durable, then applied), not the whole file: the one write
        // CREATE_EXPERIMENT waits for on the hub task, about a third cheaper.
        self.commit(sid, Change::CreationTime { time: now }).await?;
        self.experiments.insert(sid.to_owned(), Experiment::new());
        METRICS.live_experiments.set(self.experiments.len() as i64);
        self.open_recording(sid);
        self.apply_groups(sid);
        let msg = protocol::outgoing::experiment_created(sid, now);
        for e in self.experimenters.clone() {
            self.send(e, msg.clone());
        }
        self.enter_experiment(id, sid);
        self.send(id, success(SuccessType::JoinExperiment, text::CREATED_AND_JOINED_EXPERIMENT));
        Ok(())
    }

    fn join_experiment(&mut self, id: ConnId, sid: &SessionId) -> Res {
        // An ended experiment holds nobody (D10): SynthARium's pages never leave it after STOP.
        if self
            .joined(id)
            .is_some_and(|old| self.experiments.get(&old).is_some_and(|e| e.state != ExperimentState::Ended))
        {
            return Err(errors::already_joined());
        }
        if !self.experiments.contains_key(sid) {
            return Err(errors::no_experiment());
        }
        self.enter_experiment(id, sid);
        self.send(id, success(SuccessType::JoinExperiment, text::JOINED_EXPERIMENT));
        Ok(())
    }

    /// Puts an experimenter into an experiment (leaving any other first) and proposes every
    /// participant's stream to it.
    fn enter_experiment(&mut self, id: ConnId, sid: &SessionId) {
        if let Some(old) = self.joined(id) {
            if old != sid {
                self.leave_experiment(id, &old);
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.experiment = Some(sid.to_owned());
        }
        if let Some(e) = self.experiments.get_mut(sid) {
            if !e.experimenters.contains(&id) {
                e.experimenters.push(id);
            }
        }
        self.log(sid, "experimenter_joined", json!({"connection": id}));
        // SynthARium's lobby pages reload on `/ws`'s EXPERIMENTER_JOINED (no socket: no-op).
        let _ = self.lobby.send(());
        self.reconcile(sid);
    }

    fn leave_experiment(&mut self, id: ConnId, sid: &SessionId) {
        self.exit_experiment(id, sid);
        self.maybe_drop_experiment(sid);
    }

    /// Takes an experimenter out of an experiment (without dropping an ended one).
    fn exit_experiment(&mut self, id: ConnId, sid: &SessionId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.experiment = None;
        }
        if let Some(e) = self.experiments.get_mut(sid) {
            e.experimenters.retain(|x| *x != id);
        }
        self.log(sid, "experimenter_left", json!({"connection": id}));
        self.reconcile(sid);
    }

    async fn start_experiment(&mut self, id: ConnId) -> Res {
        let sid = self.joined(id).ok_or_else(|| nce("Cannot start experiment."))?;
        self.experiments.get(&sid).ok_or(experiment::LifecycleError::NotWaiting)?.check_start()?;
        let now = now_ms();
        let before = self.session_mut(&sid)?.start_time;
        self.session_mut(&sid)?.start_time = now;
        if let Err(e) = self.persist(&sid).await {
            self.session_mut(&sid)?.start_time = before;
            return Err(e);
        }
        let zero = std::time::Instant::now();
        if let Some(e) = self.experiments.get_mut(&sid) {
            e.start()?;
            e.clock_zero = zero;
        }
        // One clock zero for the recording and the group filters.
        self.start_recording(&sid, now, zero);
        self.started_in_cluster(&sid);
        self.apply_groups(&sid);
        self.log_group_config(&sid);
        self.send_to_experiment(&sid, protocol::outgoing::experiment_started(now));
        self.send(id, success(SuccessType::StartExperiment, text::STARTED_EXPERIMENT));
        self.reconcile(&sid);
        Ok(())
    }

    /// STOP: times persisted, then ENDED and `EXPERIMENT_ENDED` to everyone in the experiment.
    /// If the times cannot be written, nothing changes and the error is returned.
    pub(super) async fn stop_experiment(&mut self, sid: &SessionId, now: i64) -> Res {
        let s = self.session_mut(sid)?;
        let before = (s.start_time, s.end_time);
        s.end_time = now;
        if s.start_time == 0 {
            s.start_time = now;
        }
        let (end_time, start_time) = (s.end_time, s.start_time);
        if let Err(e) = self.persist(sid).await {
            let s = self.session_mut(sid)?;
            (s.start_time, s.end_time) = before;
            return Err(e);
        }
        if let Some(e) = self.experiments.get_mut(sid) {
            e.stop()?;
        }
        self.stop_recording(sid, end_time);
        self.apply_groups(sid);
        self.send_to_experiment(sid, protocol::outgoing::experiment_ended(end_time, start_time));
        Ok(())
    }

    /// To every connected participant and every experimenter of the experiment.
    fn send_to_experiment(&mut self, sid: &SessionId, msg: String) {
        let Some(e) = self.experiments.get(sid) else { return };
        let targets: Vec<ConnId> = e.participants.values().chain(e.experimenters.iter()).copied().collect();
        for t in targets {
            self.send(t, msg.clone());
        }
    }

    /// Kick or ban: the notification is queued before the close, and the outbox flushes it
    /// before closing (`docs/protocol.md` D12).
    fn remove_participant(&mut self, conn: ConnId, notification: T, reason: &str) {
        if let Some(Role::Participant { session_id, participant_id }) = self.conns.get(&conn).map(|c| c.role.clone()) {
            let what = if notification == T::BanNotification { "participant_banned" } else { "participant_kicked" };
            self.log(&session_id, what, json!({"participant_id": participant_id, "reason": reason}));
        }
        self.send(conn, protocol::outgoing::notification(notification, reason));
        self.drop_connection(conn, false);
    }

    async fn experimenter_chat(&mut self, id: ConnId, msg: ChatMessage) -> Res {
        if msg.author != "experimenter" {
            return Err(errors::author_not_experimenter());
        }
        let sid = self.joined(id).ok_or_else(|| nce("Cannot send chat message."))?;
        let session = self.sessions.get(&sid).ok_or_else(WireError::internal)?;
        let to = experiment::chat_keepers(session, None, &msg.target).ok_or_else(errors::no_chat_target)?;
        self.commit(&sid, Change::Chat { to, message: msg.clone(), sender: None }).await?;
        let out = protocol::encode(T::Chat, &msg);
        let targets = match self.experiments.get(&sid) {
            Some(e) => e.chat_recipients(ChatSender::Experimenter, &msg.target),
            None if msg.target == "participants" => Some(vec![]),
            None => None,
        };
        let Some(targets) = targets else {
            return Err(errors::chat_not_delivered(&msg.target));
        };
        for t in targets {
            self.send(t, out.clone());
        }
        self.send(id, success(SuccessType::Chat, text::SENT_CHAT));
        Ok(())
    }

    async fn participant_chat(
        &mut self,
        id: ConnId,
        sid: &SessionId,
        pid: &ParticipantId,
        mut msg: ChatMessage,
    ) -> Res {
        if msg.author != *pid {
            return Err(errors::author_not_participant());
        }
        // Another seat is addressed by the sender's alias for it (never by its real id).
        let shown_target = msg.target.clone();
        if msg.target != session::PUBLIC_TARGET && msg.target != session::EXPERIMENTER {
            let s = self.sessions.get(sid).ok_or_else(WireError::internal)?;
            let to = self.aliases.viewer(s, pid).resolve(&msg.target).map(str::to_owned);
            msg.target = to.ok_or_else(errors::no_chat_target)?;
        }
        let session = self.sessions.get(sid).ok_or_else(WireError::internal)?;
        session.participant(pid).ok_or_else(WireError::internal)?;
        let to = experiment::chat_keepers(session, Some(pid), &msg.target).ok_or_else(errors::no_chat_target)?;
        self.commit(sid, Change::Chat { to, message: msg.clone(), sender: Some(pid.to_owned()) }).await?;
        let Some(exp) = self.experiments.get(sid) else { return Ok(()) };
        // Logged above; a seat not connected now: the sender learns it was not delivered live
        // (as SynthARium does).
        let Some(targets) = exp.chat_recipients(ChatSender::Participant(id), &msg.target) else {
            return Err(errors::chat_not_delivered(&shown_target));
        };
        for t in targets {
            let out = self.chat_for(t, sid, &msg);
            self.send(t, out);
        }
        self.send(id, success(SuccessType::Chat, text::SENT_CHAT));
        Ok(())
    }

    /// `FILTERS_DATA` for the connected participants (or `only` one): per participant, the
    /// data each matching filter last reported (`null` until it reports).
    fn filters_data(
        &self,
        sid: &SessionId,
        only: Option<&ParticipantId>,
        filter_id: &str,
        filter_name: &str,
        channel: FilterChannel,
    ) -> Result<serde_json::Map<String, Value>, WireError> {
        let mut out = serde_json::Map::new();
        let (Some(exp), Some(session)) = (self.experiments.get(sid), self.sessions.get(sid)) else { return Ok(out) };
        let name = protocol::canonical_filter_name(filter_name);
        let group = filters::find(name).is_some_and(|f| f.is_group());
        let viewer = only.map(|o| self.aliases.viewer(session, o));
        let named = |f: &FilterDict| protocol::canonical_filter_name(&f.name) == name;
        // An instance's data: the last value it reported (`null` until it reports); of a group
        // filter, the member's latest value and latest result with each other member (keyed as
        // the caller sees the others).
        let data = |pid: &ParticipantId, kind: Kind, f: &FilterDict| -> Option<Value> {
            if group {
                let show = |other: &str| viewer.as_ref().map_or_else(|| other.to_owned(), |v| v.show(other));
                group::member_data(&exp.group, &f.id, pid.as_str(), show)
            } else {
                exp.media.get(pid).and_then(|m| m.reports.get(&(kind, f.id.clone()))).cloned()
            }
        };
        let pick = |p: &Participant, kind: Kind| -> Vec<Option<FilterData>> {
            filter_list(p, group, kind)
                .iter()
                .filter(|f| named(f) && (filter_id == "all" || f.id == filter_id))
                .map(|f| data(&p.id, kind, f).map(|data| FilterData { id: f.id.clone(), data }))
                .collect()
        };
        let seats: Vec<&ParticipantId> = exp.participants.keys().filter(|p| only.is_none_or(|o| o == *p)).collect();
        // A specific id must name a filter of that name somewhere (SynthARium: 404).
        if filter_id != "all" {
            let known = seats.iter().filter_map(|p| session.participant(*p)).any(|p| {
                [Kind::Video, Kind::Audio]
                    .into_iter()
                    .any(|k| filter_list(p, group, k).iter().any(|f| named(f) && f.id == filter_id))
            });
            if !known {
                return Err(errors::unknown_filter_id(filter_id));
            }
        }
        for pid in seats {
            let Some(p) = session.participant(pid) else { continue };
            let entry = ParticipantFiltersData {
                video: if matches!(channel, FilterChannel::Video | FilterChannel::Both) {
                    pick(p, Kind::Video)
                } else {
                    vec![]
                },
                audio: if matches!(channel, FilterChannel::Audio | FilterChannel::Both) {
                    pick(p, Kind::Audio)
                } else {
                    vec![]
                },
            };
            out.insert(pid.to_string(), serde_json::to_value(entry).unwrap_or(Value::Null));
        }
        Ok(out)
    }

    /// `RECORDING_LIST`: recordings found under `<sessions-dir>/<session id>/` (the manifest's
    /// files, or SynthARium-style names when there is no manifest).
    fn recording_list(&self) -> Vec<protocol::outgoing::RecordingListEntry> {
        let mut out = vec![];
        for s in self.sessions.values() {
            // Only ids that name a directory of the sessions directory (not a path elsewhere).
            if !session::is_file_safe_id(s.id.as_str()) {
                continue;
            }
            let dir = self.cfg.sessions_dir.join(s.id.as_str());
            if !dir.is_dir() {
                continue;
            }
            let ids: Vec<String> = s.participants.iter().map(|p| p.id.to_string()).collect();
            let mut files = crate::record::list(&dir, &ids);
            let participants = s
                .participants
                .iter()
                .map(|p| {
                    let (video, audio) = files.remove(p.id.as_str()).unwrap_or_default();
                    protocol::outgoing::ParticipantRecordings { participant_id: p.id.clone(), video, audio }
                })
                .collect();
            out.push(protocol::outgoing::RecordingListEntry {
                session_id: s.id.clone(),
                session_title: s.title.clone(),
                session_description: s.description.clone(),
                participants,
            });
        }
        out
    }
}
