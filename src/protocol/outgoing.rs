//! Server → client messages: the envelope encoder, `SUCCESS`/`ERROR`/`PONG`, and the data
//! shapes of the other server messages.

use super::error::WireError;
use super::message_type::MessageType;
use super::request::SessionDescription;
use super::text;
use crate::session::model::FilterDict;
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
    pub session_id: String,
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
}

/// The server's own `PING` data (from the `PING` filter): `{sent: epoch ms, data}`.
/// The client answers `PONG` with this object as `ping_data`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerPing {
    pub sent: i64,
    pub data: Value,
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

/// `CHECK_POST_PROCESSING` data while processing (or idle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckPostProcessing {
    pub description: String,
    pub is_processing: bool,
}

/// One session's entry in `RECORDING_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingListEntry {
    pub session_id: String,
    pub session_title: String,
    pub session_description: String,
    pub participants: Vec<ParticipantRecordings>,
}

/// One participant's files in a [`RecordingListEntry`] (file names, not paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantRecordings {
    pub participant_id: String,
    pub video: Vec<String>,
    pub audio: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorType;
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
            as_json(&encode(MessageType::ExperimentEnded, ExperimentEnded { end_time: 2, start_time: 1 })),
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
