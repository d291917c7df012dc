//! The hub's side of the media plane: which filters each published track should run (desired
//! state, pushed to the seat's forwarders on every change), and what the filters ask of the
//! experiment (reports for `GET_FILTERS_DATA`, messages, round-trip pings, panics).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use filters::{ChainEvent, FilterSpec, PingRequest, Target};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::errors;
use super::experiment::{Experiment, SeatMedia};
use super::{now_ms, ConnId, Hub, Input};
use std::sync::Arc;

use crate::media::group::GroupSink;
use crate::media::pipeline::{Analysis, Group, PipelineConfig};
use crate::media::Kind;
use crate::media::ToHub;
use crate::peer::Forwarder;
use crate::protocol::{self, MessageType, WireError};
use crate::session::model::{AsymmetricFilter, FilterChannel, FilterDict, Participant};
use crate::session::{ParticipantId, Session, SessionId};

/// Server→participant pinging on behalf of PING filters.
#[derive(Default)]
pub struct PingState {
    /// Active requests by filter instance id.
    requests: HashMap<String, PingRequest>,
    /// Round-trip times (ms), newest last.
    samples: VecDeque<f64>,
    capacity: usize,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PingState {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// One filter list as the pipeline runs it: the filters, plus the hidden mute filter when
/// muted (`docs/protocol.md` D11: muted video keeps the source's size).
fn specs(list: &[FilterDict], muted: bool, mute: &str) -> Vec<FilterSpec> {
    let mut v: Vec<FilterSpec> =
        list.iter().map(|f| FilterSpec::new(f.id.clone(), f.name.clone(), f.config.clone())).collect();
    if muted {
        v.push(FilterSpec::new(format!("exphub-{}", mute.to_ascii_lowercase()), mute, json!({})));
    }
    v
}

/// The viewer-side lists participant `viewer` has for `publisher` (SynthARium dev's
/// asymmetric filters: `viewer.asymmetric_filters[i].id == publisher.asymmetric_filters_id`).
fn asymmetric_for<'a>(viewer: &'a Participant, publisher: &Participant) -> Option<&'a AsymmetricFilter> {
    if publisher.asymmetric_filters_id.is_empty() || viewer.id == publisher.id {
        return None;
    }
    viewer.asymmetric_filters.iter().find(|a| a.id == publisher.asymmetric_filters_id)
}

/// The group (`None`: main) a viewer's list maps to: a branch keyed by its content, unless it
/// equals the publisher's own list (SynthARium's UI starts viewers' lists as copies of it).
fn group_of(list: Vec<FilterSpec>, main: &[FilterSpec]) -> Option<(Arc<str>, Vec<FilterSpec>)> {
    if list == main {
        return None;
    }
    let key: Vec<(&str, &str, &Value)> = list.iter().map(|s| (s.id.as_str(), s.name.as_str(), &s.config)).collect();
    Some((Arc::from(serde_json::to_string(&key).unwrap_or_default()), list))
}

/// What a publisher's video and audio tracks should run: its own filters (main), one branch
/// per distinct viewer-side list among the other participants, and the individual steps of the
/// group filters it is a member of (fed to `group`: the experiment's aggregator and clock zero).
pub fn desired_config(
    session: &Session,
    p: &Participant,
    group: Option<&(GroupSink, Instant)>,
) -> (PipelineConfig, PipelineConfig) {
    let analysis = |list: &[FilterDict]| {
        group.filter(|_| !list.is_empty()).map(|(sink, t0)| Analysis {
            member: Arc::from(p.id.as_str()),
            t0: *t0,
            instances: specs(list, false, ""),
            sink: sink.clone(),
        })
    };
    let mut video = PipelineConfig {
        main: specs(&p.video_filters, p.muted_video, "MUTE_VIDEO"),
        branches: vec![],
        analysis: analysis(&p.video_group_filters),
    };
    let mut audio = PipelineConfig {
        main: specs(&p.audio_filters, p.muted_audio, "MUTE_AUDIO"),
        branches: vec![],
        analysis: analysis(&p.audio_group_filters),
    };
    for viewer in &session.participants {
        let Some(a) = asymmetric_for(viewer, p) else { continue };
        if let Some(b) = group_of(specs(&a.video_filters, p.muted_video, "MUTE_VIDEO"), &video.main) {
            if !video.branches.iter().any(|(k, _)| *k == b.0) {
                video.branches.push(b);
            }
        }
        if let Some(b) = group_of(specs(&a.audio_filters, p.muted_audio, "MUTE_AUDIO"), &audio.main) {
            if !audio.branches.iter().any(|(k, _)| *k == b.0) {
                audio.branches.push(b);
            }
        }
    }
    (video, audio)
}

/// The (video, audio) groups a viewer participant gets of a publisher.
pub fn viewer_groups(session: &Session, publisher: &ParticipantId, viewer: &ParticipantId) -> (Group, Group) {
    let (Some(p), Some(v)) = (session.participant(publisher), session.participant(viewer)) else { return (None, None) };
    let Some(a) = asymmetric_for(v, p) else { return (None, None) };
    let vmain = specs(&p.video_filters, p.muted_video, "MUTE_VIDEO");
    let amain = specs(&p.audio_filters, p.muted_audio, "MUTE_AUDIO");
    (
        group_of(specs(&a.video_filters, p.muted_video, "MUTE_VIDEO"), &vmain).map(|(k, _)| k),
        group_of(specs(&a.audio_filters, p.muted_audio, "MUTE_AUDIO"), &amain).map(|(k, _)| k),
    )
}

/// Checks filter lists against the filters' schemas; the error names the list and the filter.
/// A filter's `channel` must fit its list (`"both"` fits either) and `groupFilter` must be
/// false: group filters have lists of their own.
pub fn validate_filters(video: &[FilterDict], audio: &[FilterDict], what: &str) -> Result<(), WireError> {
    for (list, filters, fits, other) in [
        ("video_filters", video, FilterChannel::includes_video as fn(FilterChannel) -> bool, "audio"),
        ("audio_filters", audio, FilterChannel::includes_audio, "video"),
    ] {
        for (i, f) in filters.iter().enumerate() {
            if !fits(f.channel) {
                let problem = format!("an {other} filter does not belong in {list}");
                return Err(protocol::invalid_data(what, &format!("{list}[{i}].channel"), problem));
            }
            if f.group_filter {
                return Err(protocol::invalid_data(what, &format!("{list}[{i}].groupFilter"), "must be false"));
            }
        }
    }
    let specs = |l: &[FilterDict]| -> Vec<FilterSpec> {
        l.iter().map(|f| FilterSpec::new(f.id.clone(), f.name.clone(), f.config.clone())).collect()
    };
    if let Err(e) = filters::VideoChain::validate(&specs(video)) {
        return Err(protocol::invalid_data(what, "video_filters", join(&e)));
    }
    if let Err(e) = filters::AudioChain::validate(&specs(audio)) {
        return Err(protocol::invalid_data(what, "audio_filters", join(&e)));
    }
    Ok(())
}

fn join(errors: &[filters::SpecError]) -> String {
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

impl Hub {
    /// The seat's forwarders, created on first use with relays that bring their filters'
    /// events back to the hub.
    pub(crate) fn seat_media(&mut self, sid: &SessionId, pid: &ParticipantId) -> Option<&mut SeatMedia> {
        if !self.experiments.get(sid)?.media.contains_key(pid) {
            let mk = |kind: Kind| -> Forwarder {
                let (tx, mut rx) = mpsc::unbounded_channel::<ToHub>();
                let hub = self.tx.clone();
                let (s, p) = (sid.to_owned(), pid.to_owned());
                tokio::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        let input = Input::Media { session_id: s.clone(), participant_id: p.clone(), kind, ev };
                        if hub.send(input).await.is_err() {
                            break;
                        }
                    }
                });
                Forwarder::spawn(kind, format!("{pid}-{}", kind.as_str()), tx)
            };
            let media = SeatMedia {
                video: mk(Kind::Video),
                audio: mk(Kind::Audio),
                reports: HashMap::new(),
                ping: PingState::default(),
            };
            // Configured from the session before anything else reaches it.
            if let Some(session) = self.sessions.get(sid) {
                if let Some(p) = session.participant(pid) {
                    let group = self.experiments.get(sid).and_then(Experiment::group_target);
                    let (v, a) = desired_config(session, p, group.as_ref());
                    media.video.configure(v);
                    media.audio.configure(a);
                }
            }
            self.experiments.get_mut(sid)?.media.insert(pid.to_owned(), media);
            self.log_media_config(sid, pid);
            self.record_seat(sid, pid);
        }
        self.experiments.get_mut(sid)?.media.get_mut(pid)
    }

    /// Pushes the desired filter lists of one participant (or all, with `None`) to its tracks,
    /// and moves each viewer's sinks to the group (main or branch) it should now get.
    pub(crate) fn apply_media(&mut self, sid: &SessionId, pid: Option<&ParticipantId>) {
        let (Some(session), Some(exp)) = (self.sessions.get(sid), self.experiments.get(sid)) else { return };
        let group = exp.group_target();
        for p in session.participants.iter().filter(|p| pid.is_none_or(|x| x == p.id)) {
            if let Some(m) = exp.media.get(&p.id) {
                let (v, a) = desired_config(session, p, group.as_ref());
                m.video.configure(v);
                m.audio.configure(a);
            }
            self.log_media_config(sid, &p.id);
        }
        for sub in self.subs.values().filter(|s| s.session_id == sid && pid.is_none_or(|x| x == s.publisher)) {
            let (Some((vid, aid)), Some((v, a)), Some(m)) = (sub.sink_ids, &sub.sinks, exp.media.get(&sub.publisher))
            else {
                continue;
            };
            let (vg, ag) = self.sub_groups(sid, &sub.publisher, sub.subscriber);
            m.video.add_sink(vid, v.clone(), vg);
            m.audio.add_sink(aid, a.clone(), ag);
        }
    }

    /// The groups a subscriber connection gets of a publisher: viewer-side branches for a
    /// participant with asymmetric filters for it, the main output otherwise (experimenters
    /// always see the publisher's own processing).
    pub(crate) fn sub_groups(&self, sid: &SessionId, publisher: &ParticipantId, subscriber: ConnId) -> (Group, Group) {
        match (self.conns.get(&subscriber).map(|c| &c.role), self.sessions.get(sid)) {
            (Some(super::Role::Participant { participant_id, .. }), Some(session)) => {
                viewer_groups(session, publisher, participant_id)
            }
            _ => (None, None),
        }
    }

    /// What a participant's filters ask of the experiment.
    pub(crate) fn on_media_event(&mut self, sid: &SessionId, pid: &ParticipantId, kind: Kind, ev: ToHub) {
        let ev = match ev {
            ToHub::Filter(ev) => ev,
            ToHub::Recording(ev) => return self.on_recording(sid, pid, kind, ev),
            ToHub::Rejected(why) => {
                tracing::warn!(session = %sid, participant = %pid, %why, "filter list rejected by the pipeline");
                return;
            }
        };
        match ev {
            ChainEvent::Report { id, name, data } => {
                let Some(m) = self.experiments.get_mut(sid).and_then(|e| e.media.get_mut(pid)) else { return };
                m.reports.insert((kind, id.to_string()), data.clone());
                // The other chain may read it (DISPLAY_SPEAKING_TIME reads SPEAKING_TIME).
                let other = if kind == Kind::Video { &m.audio } else { &m.video };
                other.peer_report(id.to_string(), name.to_owned(), Some(data));
            }
            ChainEvent::Removed { id, name } => {
                let Some(m) = self.experiments.get_mut(sid).and_then(|e| e.media.get_mut(pid)) else { return };
                // A bypassed filter keeps its error visible in GET_FILTERS_DATA.
                let key = (kind, id.to_string());
                if m.reports.get(&key).is_none_or(|r| r.get("error").is_none()) {
                    m.reports.remove(&key);
                }
                let other = if kind == Kind::Video { &m.audio } else { &m.video };
                other.peer_report(id.to_string(), name.to_owned(), None);
                let _ = m.ping.requests.remove(id.as_ref());
                self.reschedule_ping(sid, pid);
            }
            ChainEvent::Send { to, data, .. } => self.filter_send(sid, &to, data),
            ChainEvent::Ping { id, request } => {
                let Some(m) = self.experiments.get_mut(sid).and_then(|e| e.media.get_mut(pid)) else { return };
                match request {
                    Some(r) => m.ping.requests.insert(id.to_string(), r),
                    None => m.ping.requests.remove(id.as_ref()),
                };
                self.reschedule_ping(sid, pid);
            }
            ChainEvent::Panicked { id, name, stage, message } => {
                tracing::warn!(session = %sid, participant = %pid, filter = name, %id, ?stage, %message, "filter panicked; bypassed");
                if let Some(m) = self.experiments.get_mut(sid).and_then(|e| e.media.get_mut(pid)) {
                    m.reports.insert((kind, id.to_string()), json!({"error": format!("panicked: {message}")}));
                }
                // Reported to the experimenters; the stream and the experiment go on.
                let e = errors::filter_failed(name, &id, pid.as_str(), &message);
                let msg = protocol::error_message(&e);
                for c in self.experiments.get(sid).map(|x| x.experimenters.clone()).unwrap_or_default() {
                    self.send(c, msg.clone());
                }
            }
            ChainEvent::UpdateFailed { id, name, error } => {
                tracing::warn!(session = %sid, participant = %pid, filter = name, %id, %error, "filter kept its old parameters");
            }
            ChainEvent::Overrun { id, name, took, budget, count } => {
                tracing::debug!(participant = %pid, filter = name, %id, ?took, ?budget, count, "filter over budget");
            }
            ChainEvent::ChainOverrun { took, budget, count } => {
                tracing::debug!(participant = %pid, ?took, ?budget, count, "filter chain over budget");
            }
        }
    }

    /// A filter's message (e.g. FILTER_API_TEST's `TEST`) to people in the experiment.
    fn filter_send(&mut self, sid: &SessionId, to: &Target, data: Value) {
        let msg = if data.get("type").and_then(Value::as_str).is_some() && data.get("data").is_some() {
            data.to_string()
        } else {
            protocol::encode(MessageType::Test, data)
        };
        let Some(exp) = self.experiments.get(sid) else { return };
        let targets: Vec<ConnId> = match to {
            Target::All => exp.participants.values().chain(exp.experimenters.iter()).copied().collect(),
            Target::Participants => exp.participants.values().copied().collect(),
            Target::Experimenter => exp.experimenters.clone(),
            Target::Participant(p) => exp.participants.get(p.as_str()).copied().into_iter().collect(),
        };
        for t in targets {
            self.send(t, msg.clone());
        }
    }

    /// (Re)starts the seat's ping timer at the shortest requested period, or stops it.
    fn reschedule_ping(&mut self, sid: &SessionId, pid: &ParticipantId) {
        let tx = self.tx.clone();
        let Some(m) = self.experiments.get_mut(sid).and_then(|e| e.media.get_mut(pid)) else { return };
        if let Some(t) = m.ping.timer.take() {
            t.abort();
        }
        let Some(period) = m.ping.requests.values().map(|r| r.period_ms.max(10)).min() else {
            m.ping.samples.clear();
            return;
        };
        let buffer_s = m.ping.requests.values().map(|r| r.buffer_length_s).max().unwrap_or(10);
        m.ping.capacity = ((buffer_s as u64 * 1000) / period as u64).max(1) as usize;
        let (s, p) = (sid.to_owned(), pid.to_owned());
        m.ping.timer = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(period as u64));
            loop {
                tick.tick().await;
                if tx.send(Input::PingTick { session_id: s.clone(), participant_id: p.clone() }).await.is_err() {
                    break;
                }
            }
        }));
    }

    /// Sends the server's own `PING {sent, data}` to a participant.
    pub(crate) fn on_ping_tick(&mut self, sid: &SessionId, pid: &ParticipantId) {
        let Some(conn) = self.seat(sid, pid) else { return };
        let msg = protocol::outgoing::server_ping(now_ms());
        self.send(conn, msg);
    }

    /// A participant's `PONG` to our `PING`: one round-trip sample.
    pub(crate) fn on_pong(&mut self, sid: &SessionId, pid: &ParticipantId, ping_data: &Value) {
        let Some(sent) = ping_data.get("sent").and_then(Value::as_f64) else { return };
        let rtt = (now_ms() as f64 - sent).max(0.0);
        let Some(m) = self.experiments.get_mut(sid).and_then(|e| e.media.get_mut(pid)) else { return };
        if m.ping.requests.is_empty() {
            return;
        }
        m.ping.samples.push_back(rtt);
        while m.ping.samples.len() > m.ping.capacity.max(1) {
            m.ping.samples.pop_front();
        }
        let avg = m.ping.samples.iter().sum::<f64>() / m.ping.samples.len() as f64;
        m.video.set_ping(Some(avg));
        m.audio.set_ping(Some(avg));
    }
}
