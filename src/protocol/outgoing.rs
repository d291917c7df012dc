//! Server → client messages: the envelope encoder, `SUCCESS`/`ERROR`/`PONG`, and the data
//! shapes of the other server messages.

use super::error::ErrorType;
use super::error::WireError;
use super::message_type::MessageType;
use super::request::{GetSessionListRequest, SessionDescription};
use super::text;
use crate::session::model::{ChatMessage, FilterDict, Session};
use crate::session::{ParticipantId, SessionId};
use serde::Serialize;
use serde_json::Value;

/// `{"type": <kind>, "data": <data>}`, with struct field order kept.
#[derive(Serialize)]
struct Outgoing<T: Serialize> {
    #[serde(rename = "type")]
    kind: MessageType,
    data: T,
}

/// What [`encode`] sends if `data` cannot be serialized (a server bug, e.g. a map with
/// non-string keys): the client still gets a well-formed `ERROR`. Equal to
/// `error_message(&WireError::internal())` (a test pins that).
const INTERNAL_ERROR_MESSAGE: &str = r#"{"type":"ERROR","data":{"code":500,"type":"INTERNAL_SERVER_ERROR","description":"Internal server error. See server log for details."}}"#;

/// Encodes a message envelope `{"type", "data"}` as JSON text.
///
/// `data` is server-made; if it cannot be serialized (only possible for maps with non-string
/// keys), the result is a `500 INTERNAL_SERVER_ERROR` message instead.
pub fn encode(kind: MessageType, data: impl Serialize) -> String {
    serde_json::to_string(&Outgoing { kind, data }).unwrap_or_else(|_| INTERNAL_ERROR_MESSAGE.to_owned())
}

/// `{"type":"ERROR","data":{"code","type","description"}}`.
pub fn error_message(error: &WireError) -> String {
    encode(MessageType::Error, error)
}

/// SynthARium's `SUCCESS_TYPES` (main + dev).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SuccessType {
    /// Declared by SynthARium, never sent (`SAVED_SESSION` is the reply).
    SaveSession,
    /// Declared by SynthARium, never sent (`DELETED_SESSION` is the reply).
    DeleteSession,
    JoinExperiment,
    LeaveExperiment,
    StartExperiment,
    StopExperiment,
    AddNote,
    Chat,
    KickParticipant,
    BanParticipant,
    Mute,
    SetFilters,
    SetGroupFilters,
    PostProcessingVideo,
    AddIceCandidate,
    SendToParticipant,
}

impl SuccessType {
    /// The wire name, e.g. `"JOIN_EXPERIMENT"`.
    pub fn as_str(self) -> &'static str {
        use SuccessType::*;
        match self {
            SaveSession => "SAVE_SESSION",
            DeleteSession => "DELETE_SESSION",
            JoinExperiment => "JOIN_EXPERIMENT",
            LeaveExperiment => "LEAVE_EXPERIMENT",
            StartExperiment => "START_EXPERIMENT",
            StopExperiment => "STOP_EXPERIMENT",
            AddNote => "ADD_NOTE",
            Chat => "CHAT",
            KickParticipant => "KICK_PARTICIPANT",
            BanParticipant => "BAN_PARTICIPANT",
            Mute => "MUTE",
            SetFilters => "SET_FILTERS",
            SetGroupFilters => "SET_GROUP_FILTERS",
            PostProcessingVideo => "POST_PROCESSING_VIDEO",
            AddIceCandidate => "ADD_ICE_CANDIDATE",
            SendToParticipant => "SEND_TO_PARTICIPANT",
        }
    }

    /// SynthARium's description for this success (from [`text`]).
    ///
    /// Two cases have more than one text: `JOIN_EXPERIMENT` answers `CREATE_EXPERIMENT` with
    /// [`text::CREATED_AND_JOINED_EXPERIMENT`] and `JOIN_EXPERIMENT` with
    /// [`text::JOINED_EXPERIMENT`] (the default here); `ADD_ICE_CANDIDATE` is
    /// [`text::ADDED_ICE_CANDIDATE`] on the data channel (the default here) and
    /// [`text::ICE_CANDIDATE_RECEIVED`] over HTTP.
    pub fn default_description(self) -> &'static str {
        use SuccessType::*;
        match self {
            SaveSession => text::SAVED_SESSION,
            DeleteSession => text::DELETED_SESSION,
            JoinExperiment => text::JOINED_EXPERIMENT,
            LeaveExperiment => text::LEFT_EXPERIMENT,
            StartExperiment => text::STARTED_EXPERIMENT,
            StopExperiment => text::STOPPED_EXPERIMENT,
            AddNote => text::ADDED_NOTE,
            Chat => text::SENT_CHAT,
            KickParticipant => text::KICKED_PARTICIPANT,
            BanParticipant => text::BANNED_PARTICIPANT,
            Mute => text::CHANGED_MUTE,
            SetFilters => text::CHANGED_FILTERS,
            SetGroupFilters => text::CHANGED_GROUP_FILTERS,
            PostProcessingVideo => text::POST_PROCESSING_FINISHED,
            AddIceCandidate => text::ADDED_ICE_CANDIDATE,
            SendToParticipant => text::SENT_FILTERS_DATA_TO_PARTICIPANT,
        }
    }
}

/// `SuccessDict` = `{type, description}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuccessData<'a> {
    #[serde(rename = "type")]
    pub kind: SuccessType,
    pub description: &'a str,
}

/// `{"type":"SUCCESS","data":{"type":<success_type>,"description":<description>}}`.
///
/// Usually `success_message(t, t.default_description())`.
pub fn success_message(success_type: SuccessType, description: &str) -> String {
    encode(MessageType::Success, SuccessData { kind: success_type, description })
}

/// `PONG` data: both time fields (main's and development's) with the same value, and the `PING` data echoed.
#[derive(Serialize)]
struct PongReply {
    handled_time: i64,
    server_time: i64,
    ping_data: Value,
}

/// The answer to a client's `PING`: `PONG {handled_time, server_time, ping_data}`.
pub fn pong(ping_data: Value, now_ms: i64) -> String {
    encode(MessageType::Pong, PongReply { handled_time: now_ms, server_time: now_ms, ping_data })
}

/// The `/ws` WebSocket broadcast `{"type":"EXPERIMENTER_JOINED"}` (no `data` key).
pub fn experimenter_joined() -> String {
    format!(r#"{{"type":"{}"}}"#, MessageType::ExperimenterJoined.as_str())
}

// ---------------------------------------------------------------------------------------------
// Sessions: recent chat only, and sizes that fit the receiver
// ---------------------------------------------------------------------------------------------

/// *exphub*: the key added to a participant of a `SESSION`, `SESSION_LIST`, `SESSION_CHANGE` or
/// `SAVED_SESSION` whose `chat` holds only the most recent messages: how many messages the whole
/// chat has (`GET_CHAT_HISTORY` gives the rest). Absent when `chat` is complete. Ignored in
/// `SAVE_SESSION`, so a session can be saved back as it was received.
pub const CHAT_TOTAL_KEY: &str = "chat_total";

/// How many recent messages per participant a session list carries (a lab's list holds
/// thousands of sessions; a chat is read with `GET_SESSION`/`GET_CHAT_HISTORY`).
pub const LIST_RECENT_CHAT: usize = 3;

/// How many recent messages per participant `SESSION`, `SESSION_CHANGE` and `SAVED_SESSION` carry
/// at most; fewer when the message would not fit the receiver (see [`encode_session`]).
pub const SESSION_RECENT_CHAT: usize = 200;

/// `s` as JSON with each participant's chat cut to its last `keep` messages, and
/// [`CHAT_TOTAL_KEY`] on each participant whose chat was cut.
pub fn session_value(s: &Session, keep: usize) -> Value {
    let (recent, totals) = crate::session::recent_chat(s, keep);
    let mut v = serde_json::to_value(&recent).unwrap_or(Value::Null);
    if let Some(ps) = v.get_mut("participants").and_then(Value::as_array_mut) {
        for (p, (total, q)) in ps.iter_mut().zip(totals.iter().zip(&recent.participants)) {
            if *total > q.chat.len() {
                if let Some(o) = p.as_object_mut() {
                    o.insert(CHAT_TOTAL_KEY.to_owned(), Value::from(*total));
                }
            }
        }
    }
    v
}

/// `kind` (`SESSION`, `SESSION_CHANGE`, `SAVED_SESSION`) carrying `s` with at most
/// `SESSION_RECENT_CHAT` recent messages per participant, fewer if needed to stay within
/// `limit` bytes. `None` if even no chat at all does not fit (the caller sends an error).
pub fn encode_session(kind: MessageType, s: &Session, limit: usize) -> Option<String> {
    let mut keep = SESSION_RECENT_CHAT;
    loop {
        let msg = encode(kind, session_value(s, keep));
        if msg.len() <= limit {
            return Some(msg);
        }
        if keep == 0 {
            return None;
        }
        keep /= 4;
    }
}

/// A session list as frames of at most `limit` bytes each: one `SESSION_LIST` holding as many
/// sessions as fit, then the sessions that did not: one `SESSION_CHANGE` per session
/// (SynthARium's frontend replaces its list on `SESSION_LIST` and adds an unknown session on
/// `SESSION_CHANGE`, so it ends up with every session), or, if `opts.parts`, packed into as few
/// `SESSION_LIST_PART` frames as fit; then `SESSION_LIST_END {"sessions": <count>}`. Each
/// session carries its last [`LIST_RECENT_CHAT`] (or `opts.recent_chat`, if fewer) messages per
/// participant (fewer if it would not fit a frame alone). Also returns the ids of sessions too
/// large to send at all.
pub fn session_list_frames<'a>(
    sessions: impl IntoIterator<Item = &'a Session>,
    limit: usize,
    opts: GetSessionListRequest,
) -> (Vec<String>, Vec<SessionId>) {
    const LIST_HEAD: &str = r#"{"type":"SESSION_LIST","data":["#;
    const PART_HEAD: &str = r#"{"type":"SESSION_LIST_PART","data":["#;
    const CHANGE_HEAD: &str = r#"{"type":"SESSION_CHANGE","data":"#;
    const TAIL: &str = "]}";
    let recent = opts.recent_chat.map_or(LIST_RECENT_CHAT, |n| n.min(LIST_RECENT_CHAT));
    // A session alone in a follow-up frame: its head, the item, and the closing bytes.
    let alone_overhead = if opts.parts { PART_HEAD.len() + TAIL.len() } else { CHANGE_HEAD.len() + 1 };
    let mut frames = vec![];
    let mut current = String::from(LIST_HEAD);
    let mut in_current = 0usize;
    let mut too_large = vec![];
    let mut count = 0usize;
    for s in sessions {
        let mut keep = recent;
        let item = loop {
            let item = serde_json::to_string(&session_value(s, keep)).unwrap_or_default();
            let fits = alone_overhead + item.len() <= limit;
            if fits || keep == 0 {
                break fits.then_some(item);
            }
            keep /= 4;
        };
        let Some(item) = item else {
            too_large.push(s.id.clone());
            continue;
        };
        count += 1;
        let first_open = frames.is_empty();
        if (first_open || opts.parts) && current.len() + 1 + item.len() + TAIL.len() <= limit {
            if in_current > 0 {
                current.push(',');
            }
            current.push_str(&item);
            in_current += 1;
        } else if opts.parts {
            current.push_str(TAIL);
            frames.push(std::mem::replace(&mut current, format!("{PART_HEAD}{item}")));
            in_current = 1;
        } else {
            if first_open {
                current.push_str(TAIL);
                frames.push(std::mem::take(&mut current));
            }
            frames.push(format!("{CHANGE_HEAD}{item}}}"));
        }
    }
    if !current.is_empty() {
        current.push_str(TAIL);
        frames.push(current);
    }
    frames.push(encode(MessageType::SessionListEnd, SessionListEnd { sessions: count }));
    (frames, too_large)
}

/// *exphub* `SESSION_LIST_END` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionListEnd {
    /// How many sessions the list sent (in `SESSION_LIST` and the `SESSION_CHANGE`s after it).
    pub sessions: usize,
}

/// *exphub* `CHAT_HISTORY` data: messages `start..start + messages.len()` of participant
/// `participant_id`'s chat, which has `total` messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatHistory<'a> {
    pub session_id: &'a SessionId,
    pub participant_id: &'a ParticipantId,
    pub start: usize,
    pub total: usize,
    pub messages: &'a [ChatMessage],
}

/// The largest page of chat `chat` ending before index `before` (at most `limit` messages)
/// whose `CHAT_HISTORY` message fits in `max_len` bytes; at least one message if any precede
/// `before`. `None` only when a single message does not fit.
pub fn chat_history_page(
    session_id: &SessionId,
    participant_id: &ParticipantId,
    chat: &[ChatMessage],
    before: usize,
    limit: usize,
    max_len: usize,
) -> Option<String> {
    let end = before.min(chat.len());
    let mut n = limit.min(end);
    loop {
        let start = end - n;
        let page = ChatHistory { session_id, participant_id, start, total: chat.len(), messages: &chat[start..end] };
        let msg = encode(MessageType::ChatHistory, &page);
        if msg.len() <= max_len {
            return Some(msg);
        }
        if n <= 1 {
            return None;
        }
        n /= 2;
    }
}

/// The `ERROR` sent instead of server message `msg` that is larger than the receiving
/// connection takes (`limit` bytes): `413 INVALID_REQUEST` naming the message type.
pub fn reply_too_large(msg: &str, limit: usize) -> String {
    let kind = msg
        .strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.split('"').next())
        .filter(|k| k.parse::<MessageType>().is_ok())
        .unwrap_or("unknown");
    error_message(&WireError::new(413, ErrorType::InvalidRequest, text::reply_too_large(kind, msg.len(), limit)))
}

// ---------------------------------------------------------------------------------------------
// Data of other server messages (pass to `encode` with the message type named in each doc).
// ---------------------------------------------------------------------------------------------

/// `CONNECTION_PROPOSAL` data. `participant_summary` is the participant id string for
/// experimenters and a `ParticipantSummaryDict` object for participants (`docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionProposal {
    pub id: String,
    pub participant_summary: Value,
}

/// `CONNECTION_ANSWER` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionAnswer {
    pub id: String,
    pub answer: SessionDescription,
}

/// `KICK_NOTIFICATION` / `BAN_NOTIFICATION` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub reason: String,
}

/// `EXPERIMENT_CREATED` data (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentCreated {
    pub session_id: SessionId,
    pub creation_time: i64,
}

/// `EXPERIMENT_STARTED` data (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentStarted {
    pub start_time: i64,
}

/// `EXPERIMENT_ENDED` data (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentEnded {
    pub end_time: i64,
    pub start_time: i64,
    /// exphub: why, when it was not a STOP (`"moved"`: the experiment runs on another
    /// server now; offer again). Absent after a STOP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The server's own `PING` data (from the `PING` filter): `{sent: epoch ms, data}`.
/// The client answers `PONG` with this object as `ping_data`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerPing {
    pub sent: i64,
    pub data: Value,
}

/// `CONNECTION_PROPOSAL {id, participant_summary}`.
pub fn connection_proposal(id: String, participant_summary: Value) -> String {
    encode(MessageType::ConnectionProposal, ConnectionProposal { id, participant_summary })
}

/// `CONNECTION_ANSWER {id, answer: {sdp, type: "answer"}}`.
pub fn connection_answer(id: String, sdp: String) -> String {
    let answer = SessionDescription { sdp, kind: super::request::SdpType::Answer };
    encode(MessageType::ConnectionAnswer, ConnectionAnswer { id, answer })
}

/// `KICK_NOTIFICATION` or `BAN_NOTIFICATION` (`kind`) `{reason}`.
pub fn notification(kind: MessageType, reason: &str) -> String {
    encode(kind, Notification { reason: reason.to_owned() })
}

/// `EXPERIMENT_CREATED {session_id, creation_time}`.
pub fn experiment_created(session_id: &SessionId, creation_time: i64) -> String {
    encode(MessageType::ExperimentCreated, ExperimentCreated { session_id: session_id.clone(), creation_time })
}

/// `EXPERIMENT_STARTED {start_time}`: on START, and to a participant who joins a running one.
pub fn experiment_started(start_time: i64) -> String {
    encode(MessageType::ExperimentStarted, ExperimentStarted { start_time })
}

/// `EXPERIMENT_ENDED {end_time, start_time}`.
pub fn experiment_ended(end_time: i64, start_time: i64) -> String {
    encode(MessageType::ExperimentEnded, ExperimentEnded { end_time, start_time, reason: None })
}

/// `EXPERIMENT_ENDED {end_time, start_time, reason}`: ended by the server, not by a STOP.
pub fn experiment_ended_because(end_time: i64, start_time: i64, reason: &'static str) -> String {
    encode(MessageType::ExperimentEnded, ExperimentEnded { end_time, start_time, reason: Some(reason) })
}

/// The server's own `PING {sent, data: ""}` (for the `PING` filter).
pub fn server_ping(sent: i64) -> String {
    encode(MessageType::Ping, ServerPing { sent, data: Value::String(String::new()) })
}

/// `FILTERS_CONFIG` data: the filter catalogue, `{"TEST": [...], "SESSION": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiltersConfig {
    #[serde(rename = "TEST")]
    pub test: Vec<FilterDict>,
    #[serde(rename = "SESSION")]
    pub session: Vec<FilterDict>,
}

/// One filter's data in `FILTERS_DATA`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterData {
    pub id: String,
    pub data: Value,
}

/// One participant's entry in `FILTERS_DATA` (a map participant id → this). A filter
/// without data contributes `None` (`null`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ParticipantFiltersData {
    pub video: Vec<Option<FilterData>>,
    pub audio: Vec<Option<FilterData>>,
}

/// One group filter instance in `GROUP_FILTERS_DATA`: what it is, over whom, and results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupFilterData<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub channel: &'a str,
    pub members: &'a [String],
    pub results: Vec<GroupResultData<'a>>,
}

/// One result: the members it is about (a pair, or the group), the window's end on the
/// experiment clock, the filter's value and how many grid points had data from every member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupResultData<'a> {
    pub members: &'a [String],
    pub window_end_ms: f64,
    pub value: &'a Value,
    pub n_samples: usize,
}

impl<'a> GroupFilterData<'a> {
    pub fn new(
        id: &'a str,
        name: &'a str,
        channel: &'a str,
        members: &'a [String],
        results: impl Iterator<Item = &'a filters::GroupResult>,
    ) -> Self {
        let results = results
            .map(|r| GroupResultData {
                members: &r.members,
                window_end_ms: r.window_end_ms,
                value: &r.value,
                n_samples: r.n_samples,
            })
            .collect();
        Self { id, name, channel, members, results }
    }
}

/// `GROUP_FILTERS_DATA {filters, push}`: `push` is false for the reply to
/// `GET_GROUP_FILTERS_DATA`, true for the new results pushed to subscribers.
pub fn group_filters_data(filters: &[GroupFilterData<'_>], push: bool) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        filters: &'a [GroupFilterData<'a>],
        push: bool,
    }
    encode(MessageType::GroupFiltersData, D { filters, push })
}

/// `CHECK_POST_PROCESSING` data while processing (or idle). *exphub* adds, while processing,
/// the session and the progress in frames (`progress`: done / total, 0–1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckPostProcessing {
    pub description: String,
    pub is_processing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_done: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
}

/// One session's entry in `RECORDING_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingListEntry {
    pub session_id: SessionId,
    pub session_title: String,
    pub session_description: String,
    pub participants: Vec<ParticipantRecordings>,
}

/// One participant's files in a [`RecordingListEntry`] (file names, not paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantRecordings {
    pub participant_id: ParticipantId,
    pub video: Vec<String>,
    pub audio: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::SdpType;
    use serde_json::json;
    use std::collections::HashMap;

    fn as_json(s: &str) -> Value {
        serde_json::from_str(s).expect("encoder output is JSON")
    }

    #[test]
    fn encode_builds_the_envelope_in_order() {
        let s = encode(MessageType::ExperimentStarted, ExperimentStarted { start_time: 7 });
        assert_eq!(s, r#"{"type":"EXPERIMENT_STARTED","data":{"start_time":7}}"#);
        assert_eq!(encode(MessageType::DeletedSession, "abc"), r#"{"type":"DELETED_SESSION","data":"abc"}"#);
    }

    #[test]
    fn unserializable_data_becomes_an_internal_error() {
        let mut bad: HashMap<Vec<u8>, u8> = HashMap::new();
        bad.insert(vec![1], 1);
        assert_eq!(encode(MessageType::Session, &bad), error_message(&WireError::internal()));
        assert_eq!(INTERNAL_ERROR_MESSAGE, error_message(&WireError::internal()));
    }

    #[test]
    fn error_message_shape() {
        let e = WireError::new(404, ErrorType::UnknownSession, "No session with the given ID found.");
        assert_eq!(
            as_json(&error_message(&e)),
            json!({"type":"ERROR","data":{"code":404,"type":"UNKNOWN_SESSION","description":"No session with the given ID found."}})
        );
        let e = WireError::new(0, ErrorType::UnknownSubconnectionId, "Unknown offer ID x");
        assert_eq!(as_json(&error_message(&e))["data"]["code"], json!(0));
    }

    #[test]
    fn success_messages_carry_syntharium_texts() {
        let cases = [
            (SuccessType::JoinExperiment, "JOIN_EXPERIMENT", "Successfully joined experiment."),
            (SuccessType::LeaveExperiment, "LEAVE_EXPERIMENT", "Successfully left experiment."),
            (SuccessType::StartExperiment, "START_EXPERIMENT", "Successfully started experiment."),
            (SuccessType::StopExperiment, "STOP_EXPERIMENT", "Successfully stopped experiment."),
            (SuccessType::AddNote, "ADD_NOTE", "Successfully added note."),
            (SuccessType::Chat, "CHAT", "Successfully send chat message."),
            (SuccessType::KickParticipant, "KICK_PARTICIPANT", "Successfully kicked participant."),
            (SuccessType::BanParticipant, "BAN_PARTICIPANT", "Successfully banned participant."),
            (SuccessType::Mute, "MUTE", "Successfully changed muted state for participant."),
            (SuccessType::SetFilters, "SET_FILTERS", "Successfully changed filters."),
            (SuccessType::SetGroupFilters, "SET_GROUP_FILTERS", "Successfully changed group filters."),
            (SuccessType::AddIceCandidate, "ADD_ICE_CANDIDATE", "Successfully added ice candidate"),
            (
                SuccessType::SendToParticipant,
                "SEND_TO_PARTICIPANT",
                "Successfully sent GET_FILTERS_DATA to participant.",
            ),
            (SuccessType::SaveSession, "SAVE_SESSION", text::SAVED_SESSION),
            (SuccessType::DeleteSession, "DELETE_SESSION", text::DELETED_SESSION),
            (SuccessType::PostProcessingVideo, "POST_PROCESSING_VIDEO", text::POST_PROCESSING_FINISHED),
        ];
        for (t, name, description) in cases {
            assert_eq!(t.as_str(), name);
            assert_eq!(t.default_description(), description);
            assert_eq!(serde_json::to_value(t).ok(), Some(json!(name)));
            let msg = success_message(t, t.default_description());
            assert_eq!(
                msg,
                format!(r#"{{"type":"SUCCESS","data":{{"type":"{name}","description":"{description}"}}}}"#)
            );
        }
        assert_eq!(
            as_json(&success_message(SuccessType::JoinExperiment, text::CREATED_AND_JOINED_EXPERIMENT))["data"]
                ["description"],
            json!("Successfully started and joined experiment.")
        );
    }

    #[test]
    fn pong_has_both_time_fields() {
        let msg = pong(json!({"sent": 1.5, "data": "x"}), 1_700_000_000_123);
        assert!(msg.starts_with(
            r#"{"type":"PONG","data":{"handled_time":1700000000123,"server_time":1700000000123,"ping_data":"#
        ));
        assert_eq!(
            as_json(&msg),
            json!({"type":"PONG","data":{"handled_time":1700000000123_i64,"server_time":1700000000123_i64,"ping_data":{"sent":1.5,"data":"x"}}})
        );
        assert_eq!(as_json(&pong(Value::Null, 0))["data"]["ping_data"], Value::Null);
    }

    fn session_with_chat(n: usize, len: usize) -> Session {
        let mut s = crate::session::parse_session_str(crate::session::testdata::DEV_FORMAT_EXAMPLE).unwrap();
        for p in &mut s.participants {
            p.chat = (0..n)
                .map(|i| ChatMessage {
                    message: format!("{i:06}{}", "m".repeat(len)),
                    time: i as i64,
                    author: "experimenter".into(),
                    target: p.id.to_string(),
                    sentiment_score: None,
                })
                .collect();
        }
        s
    }

    #[test]
    fn sessions_carry_recent_chat_and_the_total() {
        let s = session_with_chat(500, 10);
        let msg = encode_session(MessageType::Session, &s, 1 << 20).unwrap();
        let v = as_json(&msg);
        for p in v["data"]["participants"].as_array().unwrap() {
            let chat = p["chat"].as_array().unwrap();
            assert_eq!(chat.len(), SESSION_RECENT_CHAT);
            assert_eq!(p[CHAT_TOTAL_KEY], json!(500));
            assert!(chat.last().unwrap()["message"].as_str().unwrap().starts_with("000499"));
        }
        // Fewer messages when the receiver takes less, and never more than it takes.
        let msg = encode_session(MessageType::SessionChange, &s, 20_000).unwrap();
        assert!(msg.len() <= 20_000);
        let n = as_json(&msg)["data"]["participants"][0]["chat"].as_array().unwrap().len();
        assert!(n < SESSION_RECENT_CHAT);
        assert_eq!(encode_session(MessageType::Session, &s, 100), None);
        // A short chat goes whole, without the key.
        let s = session_with_chat(3, 10);
        let v = as_json(&encode_session(MessageType::Session, &s, 1 << 20).unwrap());
        assert!(v["data"]["participants"][0].get(CHAT_TOTAL_KEY).is_none());
        assert_eq!(v["data"], serde_json::to_value(&s).unwrap());
    }

    /// `n` sessions `s000`, `s001`, ... with 50 chat messages of 100 bytes each.
    fn numbered_sessions(n: usize) -> Vec<Session> {
        (0..n)
            .map(|i| {
                let mut s = session_with_chat(50, 100);
                s.id = format!("s{i:03}").into();
                s
            })
            .collect()
    }

    #[test]
    fn a_long_list_is_one_session_list_then_session_changes_then_the_end() {
        let sessions = numbered_sessions(60);
        let limit = 65_536;
        let (frames, too_large) = session_list_frames(&sessions, limit, Default::default());
        assert!(too_large.is_empty());
        assert!(frames.iter().all(|f| f.len() <= limit));
        let frames: Vec<Value> = frames.iter().map(|f| as_json(f)).collect();
        assert_eq!(frames[0]["type"], "SESSION_LIST");
        let first = frames[0]["data"].as_array().unwrap();
        assert!(!first.is_empty() && first.len() < 60);
        let (last, middle) = frames[1..].split_last().unwrap();
        assert!(middle.iter().all(|f| f["type"] == "SESSION_CHANGE"));
        assert_eq!(*last, json!({"type": "SESSION_LIST_END", "data": {"sessions": 60}}));
        let ids: Vec<&str> =
            first.iter().chain(middle.iter().map(|f| &f["data"])).map(|s| s["id"].as_str().unwrap()).collect();
        let want: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, want);
        let p = &first[0]["participants"][0];
        assert_eq!(p["chat"].as_array().unwrap().len(), LIST_RECENT_CHAT);
        assert_eq!(p[CHAT_TOTAL_KEY], json!(50));
        // A short list is one frame, plus the end.
        let (frames, _) = session_list_frames(&sessions[..2], limit, Default::default());
        assert_eq!(frames.len(), 2);
        assert_eq!(as_json(&frames[0])["data"].as_array().unwrap().len(), 2);
        // An empty one too.
        let (frames, _) = session_list_frames(&[], limit, Default::default());
        assert_eq!(as_json(&frames[0]), json!({"type": "SESSION_LIST", "data": []}));
        // A session that cannot fit even without chat is left out and named.
        let mut huge = session_with_chat(1, 1);
        huge.description = "d".repeat(limit);
        let (frames, too_large) = session_list_frames([&sessions[0], &huge], limit, Default::default());
        assert_eq!(too_large, vec![huge.id.clone()]);
        assert_eq!(as_json(frames.last().unwrap())["data"]["sessions"], json!(1));
    }

    #[test]
    fn a_list_asked_for_in_parts_packs_the_rest_into_few_frames() {
        let sessions = numbered_sessions(200);
        let limit = 65_536;
        let opts = GetSessionListRequest { parts: true, recent_chat: Some(0) };
        let (frames, too_large) = session_list_frames(&sessions, limit, opts);
        assert!(too_large.is_empty());
        assert!(frames.iter().all(|f| f.len() <= limit));
        let (one_each, _) = session_list_frames(&sessions, limit, Default::default());
        assert!(frames.len() * 4 < one_each.len(), "{} frames, {} without parts", frames.len(), one_each.len());
        let frames: Vec<Value> = frames.iter().map(|f| as_json(f)).collect();
        assert_eq!(frames[0]["type"], "SESSION_LIST");
        let (last, middle) = frames[1..].split_last().unwrap();
        assert!(!middle.is_empty() && middle.iter().all(|f| f["type"] == "SESSION_LIST_PART"));
        assert_eq!(*last, json!({"type": "SESSION_LIST_END", "data": {"sessions": 200}}));
        let listed: Vec<&Value> =
            frames[..frames.len() - 1].iter().flat_map(|f| f["data"].as_array().unwrap()).collect();
        let ids: Vec<&str> = listed.iter().map(|s| s["id"].as_str().unwrap()).collect();
        let want: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, want);
        // No chat messages, but the count of each chat.
        let p = &listed[7]["participants"][0];
        assert_eq!(p["chat"], json!([]));
        assert_eq!(p[CHAT_TOTAL_KEY], json!(50));
        // More recent chat than the default is not given.
        let opts = GetSessionListRequest { parts: true, recent_chat: Some(1000) };
        let (frames, _) = session_list_frames(&sessions[..1], limit, opts);
        let p = &as_json(&frames[0])["data"][0]["participants"][0];
        assert_eq!(p["chat"].as_array().unwrap().len(), LIST_RECENT_CHAT);
    }

    #[test]
    fn chat_history_pages_walk_back_to_the_start() {
        let s = session_with_chat(250, 10);
        let chat = &s.participants[0].chat;
        let mut before = chat.len();
        let mut got = vec![];
        while before > 0 {
            let page = as_json(&chat_history_page(&"s".into(), &"p".into(), chat, before, 100, 1 << 20).unwrap())
                ["data"]
                .clone();
            assert_eq!(page["total"], json!(250));
            let start = page["start"].as_u64().unwrap() as usize;
            let msgs = page["messages"].as_array().unwrap().clone();
            assert_eq!(start + msgs.len(), before);
            got.splice(0..0, msgs);
            before = start;
        }
        assert_eq!(got, serde_json::to_value(chat).unwrap().as_array().unwrap().clone());
        // A small connection gets a smaller page, still at least one message.
        let small = chat_history_page(&"s".into(), &"p".into(), chat, 250, 100, 400).unwrap();
        assert!(small.len() <= 400);
        let n = as_json(&small)["data"]["messages"].as_array().unwrap().len();
        assert!((1..100).contains(&n), "{n}");
        assert_eq!(chat_history_page(&"s".into(), &"p".into(), chat, 250, 100, 50), None);
        // Nothing before index 0.
        let page = as_json(&chat_history_page(&"s".into(), &"p".into(), chat, 0, 100, 1 << 20).unwrap());
        assert_eq!(page["data"]["messages"], json!([]));
    }

    #[test]
    fn a_reply_too_large_names_its_type() {
        let msg = encode(MessageType::SessionList, vec!["x".repeat(100)]);
        assert_eq!(
            as_json(&reply_too_large(&msg, 50)),
            json!({"type": "ERROR", "data": {"code": 413, "type": "INVALID_REQUEST", "description": format!("The server's SESSION_LIST message is too large for this connection: {} bytes, the limit is 50 bytes.", msg.len())}})
        );
        assert!(as_json(&reply_too_large("junk", 1))["data"]["description"].as_str().unwrap().contains("unknown"));
    }

    #[test]
    fn the_hubs_builders_keep_the_wire_shapes() {
        let cases = [
            (
                connection_proposal("sub".into(), json!("p1")),
                json!({"type":"CONNECTION_PROPOSAL","data":{"id":"sub","participant_summary":"p1"}}),
            ),
            (
                connection_answer("sub".into(), "v=0".into()),
                json!({"type":"CONNECTION_ANSWER","data":{"id":"sub","answer":{"sdp":"v=0","type":"answer"}}}),
            ),
            (notification(MessageType::BanNotification, "r"), json!({"type":"BAN_NOTIFICATION","data":{"reason":"r"}})),
            (
                experiment_created(&"s".into(), 1),
                json!({"type":"EXPERIMENT_CREATED","data":{"session_id":"s","creation_time":1}}),
            ),
            (experiment_started(2), json!({"type":"EXPERIMENT_STARTED","data":{"start_time":2}})),
            (experiment_ended(3, 2), json!({"type":"EXPERIMENT_ENDED","data":{"end_time":3,"start_time":2}})),
            (server_ping(5), json!({"type":"PING","data":{"sent":5,"data":""}})),
        ];
        for (msg, want) in cases {
            assert_eq!(as_json(&msg), want);
        }
    }

    #[test]
    fn server_message_shapes() {
        assert_eq!(as_json(&experimenter_joined()), json!({"type":"EXPERIMENTER_JOINED"}));
        let answer = ConnectionAnswer {
            id: "sub".into(),
            answer: SessionDescription { sdp: "v=0".into(), kind: SdpType::Answer },
        };
        assert_eq!(
            as_json(&encode(MessageType::ConnectionAnswer, &answer)),
            json!({"type":"CONNECTION_ANSWER","data":{"id":"sub","answer":{"sdp":"v=0","type":"answer"}}})
        );
        let data: HashMap<&str, ParticipantFiltersData> = [(
            "p1",
            ParticipantFiltersData {
                video: vec![Some(FilterData { id: "f".into(), data: json!({"glasses": true}) }), None],
                audio: vec![],
            },
        )]
        .into();
        assert_eq!(
            as_json(&encode(MessageType::FiltersData, &data)),
            json!({"type":"FILTERS_DATA","data":{"p1":{"video":[{"id":"f","data":{"glasses":true}},null],"audio":[]}}})
        );
        assert_eq!(
            as_json(&encode(MessageType::FiltersConfig, FiltersConfig { test: vec![], session: vec![] })),
            json!({"type":"FILTERS_CONFIG","data":{"TEST":[],"SESSION":[]}})
        );
        assert_eq!(
            as_json(&encode(
                MessageType::ExperimentEnded,
                ExperimentEnded { end_time: 2, start_time: 1, reason: None }
            )),
            json!({"type":"EXPERIMENT_ENDED","data":{"end_time":2,"start_time":1}})
        );
        assert_eq!(
            as_json(&encode(MessageType::KickNotification, Notification { reason: "r".into() })),
            json!({"type":"KICK_NOTIFICATION","data":{"reason":"r"}})
        );
        assert_eq!(
            as_json(&encode(MessageType::Ping, ServerPing { sent: 5, data: json!("") })),
            json!({"type":"PING","data":{"sent":5,"data":""}})
        );
    }
}
