//! [`Envelope`] → typed [`ClientRequest`]: exact validation of every message a client may send.
//!
//! Validation is SynthARium's, tightened: every required key present, no unknown key, every
//! value of the right JSON type (an integer field takes only a JSON integer, not `1.0` and not
//! `true`). A malformed `data` is `400 INVALID_DATATYPE` with SynthARium's text for that
//! message, followed by `": <field path>: <problem>"`, e.g.
//! `Message data is not a valid KickRequest.: data.reason: invalid type: integer `5`, expected a string`.

use super::envelope::Envelope;
use super::error::{ErrorType, WireError};
use super::message_type::MessageType;
use super::text;
use crate::session::model::{ChatMessage, FilterDict, Note};
use crate::session::{ParticipantId, SessionId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Number, Value};
use std::collections::HashSet;
use std::fmt;

/// Which filter names exist. Implemented by the filter registry (which lives elsewhere).
///
/// Names are passed in canonical form (see [`canonical_filter_name`]).
pub trait FilterNames {
    /// `name` is a registered individual (per-participant) filter.
    fn is_filter(&self, name: &str) -> bool;
    /// `name` is a registered group filter.
    fn is_group_filter(&self, name: &str) -> bool;
}

/// SynthARium main's `AUDIO_SPEAKING_TIME` is dev's `SPEAKING_TIME` (`docs/protocol.md`,
/// Which SynthARium).
const FILTER_NAME_ALIASES: &[(&str, &str)] = &[("AUDIO_SPEAKING_TIME", "SPEAKING_TIME")];

/// The canonical name of a filter: aliases (`AUDIO_SPEAKING_TIME`) map to their current name
/// (`SPEAKING_TIME`), every other name maps to itself.
pub fn canonical_filter_name(name: &str) -> &str {
    FILTER_NAME_ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, canonical)| canonical)
}

// ---------------------------------------------------------------------------------------------
// Data types of client requests
// ---------------------------------------------------------------------------------------------

/// `RTCSdpType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    Offer,
    Pranswer,
    Answer,
    Rollback,
}

impl SdpType {
    /// The wire name, e.g. `"offer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SdpType::Offer => "offer",
            SdpType::Pranswer => "pranswer",
            SdpType::Answer => "answer",
            SdpType::Rollback => "rollback",
        }
    }

    /// Parses an exact wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "offer" => Some(SdpType::Offer),
            "pranswer" => Some(SdpType::Pranswer),
            "answer" => Some(SdpType::Answer),
            "rollback" => Some(SdpType::Rollback),
            _ => None,
        }
    }
}

/// `RTCSessionDescriptionDict` = `{sdp, type}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "RTCSessionDescription")]
pub struct SessionDescription {
    pub sdp: String,
    #[serde(rename = "type")]
    pub kind: SdpType,
}

/// `RTCIceCandidateDict`: exactly the browser's `RTCIceCandidate.toJSON()`.
///
/// All four keys are required (as in SynthARium); the three that `toJSON()` may set to `null`
/// accept `null`. An empty `candidate` is the end-of-candidates marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "RTCIceCandidate")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", deserialize_with = "required_nullable")]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", deserialize_with = "required_nullable")]
    pub sdp_m_line_index: Option<u16>,
    #[serde(rename = "usernameFragment", deserialize_with = "required_nullable")]
    pub username_fragment: Option<String>,
}

/// `PONG` data: `{handled_time, ping_data}` (dev) or `{server_time, ping_data}` (main).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PongData {
    /// When the client handled the PING. The frontend sends `performance.now()` (a float,
    /// not epoch ms), so any JSON number is accepted.
    pub handled_time: Number,
    /// The `data` of the server's `PING`, echoed.
    pub ping_data: Value,
}

impl PongData {
    /// `ping_data.sent`: the epoch ms at which the server sent the PING, if echoed intact.
    pub fn ping_sent_ms(&self) -> Option<i64> {
        self.ping_data.get("sent")?.as_i64()
    }
}

/// `KickRequestDict`, used by `KICK_PARTICIPANT` and `BAN_PARTICIPANT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "KickRequest")]
pub struct KickRequest {
    pub participant_id: ParticipantId,
    pub reason: String,
}

/// `MuteRequestDict`: both flags are absolute states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "MuteRequest")]
pub struct MuteRequest {
    pub participant_id: ParticipantId,
    pub mute_video: bool,
    pub mute_audio: bool,
}

/// `SetFiltersRequestDict`. Names are registered filters in canonical form; ids are unique
/// within each list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "SetFiltersRequest")]
pub struct SetFiltersRequest {
    /// `"all"` or a participant id.
    pub participant_id: ParticipantId,
    pub audio_filters: Vec<FilterDict>,
    pub video_filters: Vec<FilterDict>,
}

/// `SetGroupFiltersRequestDict`. Names are registered group filters; ids are unique across
/// both lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "SetGroupFiltersRequest")]
pub struct SetGroupFiltersRequest {
    pub audio_group_filters: Vec<FilterDict>,
    pub video_group_filters: Vec<FilterDict>,
}

/// Which of a participant's filter lists a `GET_FILTERS_DATA` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterChannel {
    Audio,
    Video,
    Both,
}

impl FilterChannel {
    pub fn includes_audio(self) -> bool {
        matches!(self, FilterChannel::Audio | FilterChannel::Both)
    }
    pub fn includes_video(self) -> bool {
        matches!(self, FilterChannel::Video | FilterChannel::Both)
    }
}

/// `GetFiltersDataRequestDict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "GetFiltersData")]
pub struct GetFiltersDataRequest {
    /// `"all"` or a filter id.
    pub filter_id: String,
    /// A registered filter name in canonical form.
    pub filter_name: String,
    pub filter_channel: FilterChannel,
}

/// `GetFiltersDataSendToParticipantRequestDict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "GetFiltersDataSendToParticipant")]
pub struct GetFiltersDataSendToParticipantRequest {
    /// `"all"` or a participant id.
    pub participant_id: ParticipantId,
    /// `"all"` or a filter id.
    pub filter_id: String,
    /// A registered filter name in canonical form.
    pub filter_name: String,
    pub filter_channel: FilterChannel,
}

// Wire shapes that become struct variants of `ClientRequest`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ConnectionOffer")]
struct ConnectionOfferDict {
    id: String,
    offer: SessionDescription,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "AddIceCandidate")]
pub(super) struct AddIceCandidateDict {
    pub(super) id: String,
    pub(super) candidate: IceCandidate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "SessionIdRequest")]
struct SessionIdRequest {
    session_id: SessionId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "UpdateReadMessageTimeRequest")]
struct UpdateReadMessageTimeRequest {
    participant_id: ParticipantId,
    #[serde(rename = "lastMessageReadTime")]
    last_message_read_time: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Pong")]
struct PongDict {
    #[serde(default)]
    handled_time: Option<Number>,
    #[serde(default)]
    server_time: Option<Number>,
    ping_data: Value,
}

/// Deserializes an `Option` whose key must be present (serde treats a missing `Option` field
/// as `None` unless the field has its own `deserialize_with`).
fn required_nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

// ---------------------------------------------------------------------------------------------
// Client requests
// ---------------------------------------------------------------------------------------------

/// One message from a client, typed and validated.
///
/// Which role may send which request is the hub's decision (it should look at
/// [`Envelope::kind`] *before* calling [`parse_request`], so that a forbidden request gets 403
/// without revealing validation details).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    /// Any JSON; answered with [`pong`](super::pong).
    Ping(Value),
    /// A client's answer to the server's own `PING`.
    Pong(PongData),
    /// An answer to a `CONNECTION_PROPOSAL` (sub-connection offer).
    ConnectionOffer {
        id: String,
        offer: SessionDescription,
    },
    /// A trickled ICE candidate for the sub-connection `id`.
    AddIceCandidate {
        id: String,
        candidate: IceCandidate,
    },
    /// SynthARium sends no options; `data` that is not [`GetSessionListRequest`] is ignored.
    GetSessionList(GetSessionListRequest),
    GetSession {
        session_id: SessionId,
    },
    /// A full session; validated by the session module (invalid → [`text::INVALID_SESSION`]).
    SaveSession(Value),
    DeleteSession {
        session_id: SessionId,
    },
    CreateExperiment {
        session_id: SessionId,
    },
    JoinExperiment {
        session_id: SessionId,
    },
    /// `data` ignored.
    LeaveExperiment,
    /// `data` ignored.
    StartExperiment,
    /// `data` ignored.
    StopExperiment,
    AddNote(Note),
    Chat(ChatMessage),
    KickParticipant(KickRequest),
    BanParticipant(KickRequest),
    Mute(MuteRequest),
    SetFilters(SetFiltersRequest),
    SetGroupFilters(SetGroupFiltersRequest),
    /// `data` ignored.
    GetFiltersConfig,
    GetFiltersData(GetFiltersDataRequest),
    GetFiltersDataSendToParticipant(GetFiltersDataSendToParticipantRequest),
    UpdateReadMessageTime {
        participant_id: ParticipantId,
        last_message_read_time: i64,
    },
    /// `data` ignored.
    GetRecordingList,
    PostProcessingVideo {
        session_id: SessionId,
    },
    /// `data` ignored.
    CheckPostProcessing,
    /// *exphub*: one page of participant `participant_id`'s chat in session `session_id`.
    GetChatHistory(GetChatHistoryRequest),
    /// *exphub*: the experiment's group filters and recent results; `subscribe` asks for pushes.
    GetGroupFiltersData(GetGroupFiltersDataRequest),
    /// A known type that only the server sends (`SUCCESS`, `SESSION_LIST`, ...): the hub
    /// answers `403 FORBIDDEN`. `data` is not looked at.
    ServerOnly(MessageType),
}

impl ClientRequest {
    /// The message type this request came as.
    pub fn kind(&self) -> MessageType {
        use ClientRequest as R;
        use MessageType as T;
        match self {
            R::Ping(_) => T::Ping,
            R::Pong(_) => T::Pong,
            R::ConnectionOffer { .. } => T::ConnectionOffer,
            R::AddIceCandidate { .. } => T::AddIceCandidate,
            R::GetSessionList(_) => T::GetSessionList,
            R::GetSession { .. } => T::GetSession,
            R::SaveSession(_) => T::SaveSession,
            R::DeleteSession { .. } => T::DeleteSession,
            R::CreateExperiment { .. } => T::CreateExperiment,
            R::JoinExperiment { .. } => T::JoinExperiment,
            R::LeaveExperiment => T::LeaveExperiment,
            R::StartExperiment => T::StartExperiment,
            R::StopExperiment => T::StopExperiment,
            R::AddNote(_) => T::AddNote,
            R::Chat(_) => T::Chat,
            R::KickParticipant(_) => T::KickParticipant,
            R::BanParticipant(_) => T::BanParticipant,
            R::Mute(_) => T::Mute,
            R::SetFilters(_) => T::SetFilters,
            R::SetGroupFilters(_) => T::SetGroupFilters,
            R::GetFiltersConfig => T::GetFiltersConfig,
            R::GetFiltersData(_) => T::GetFiltersData,
            R::GetFiltersDataSendToParticipant(_) => T::GetFiltersDataSendToParticipant,
            R::UpdateReadMessageTime { .. } => T::UpdateReadMessageTime,
            R::GetRecordingList => T::GetRecordingList,
            R::PostProcessingVideo { .. } => T::PostProcessingVideo,
            R::CheckPostProcessing => T::CheckPostProcessing,
            R::GetChatHistory(_) => T::GetChatHistory,
            R::GetGroupFiltersData(_) => T::GetGroupFiltersData,
            R::ServerOnly(kind) => *kind,
        }
    }
}

impl MessageType {
    /// Whether some client role may send this type at all. `false` for the types that
    /// [`parse_request`] turns into [`ClientRequest::ServerOnly`].
    pub fn is_client_request(self) -> bool {
        matches!(client_request_class(self), Class::Client)
    }
}

/// Internal split of message types, so that [`parse_request`] and
/// [`MessageType::is_client_request`] agree.
enum Class {
    Client,
    ServerOnly,
}

fn client_request_class(kind: MessageType) -> Class {
    use MessageType as T;
    // No wildcard: adding a MessageType forces a decision here.
    match kind {
        T::Ping
        | T::Pong
        | T::ConnectionOffer
        | T::AddIceCandidate
        | T::GetSessionList
        | T::GetSession
        | T::SaveSession
        | T::DeleteSession
        | T::CreateExperiment
        | T::JoinExperiment
        | T::LeaveExperiment
        | T::StartExperiment
        | T::StopExperiment
        | T::AddNote
        | T::Chat
        | T::KickParticipant
        | T::BanParticipant
        | T::Mute
        | T::SetFilters
        | T::SetGroupFilters
        | T::GetFiltersConfig
        | T::GetFiltersData
        | T::GetFiltersDataSendToParticipant
        | T::UpdateReadMessageTime
        | T::GetRecordingList
        | T::PostProcessingVideo
        | T::CheckPostProcessing
        | T::GetChatHistory
        | T::GetGroupFiltersData => Class::Client,
        T::Test
        | T::Success
        | T::Error
        | T::SessionDescription
        | T::ConnectionProposal
        | T::ConnectionAnswer
        | T::SavedSession
        | T::SessionChange
        | T::DeletedSession
        | T::SessionList
        | T::Session
        | T::ExperimentCreated
        | T::ExperimentStarted
        | T::ExperimentEnded
        | T::KickNotification
        | T::BanNotification
        | T::FiltersConfig
        | T::FiltersData
        | T::GetVideoFilters
        | T::GetAudioFilters
        | T::ActiveVideoFilters
        | T::ActiveAudioFilters
        | T::RecordingList
        | T::ExperimenterJoined
        | T::ChatHistory
        | T::SessionListEnd
        | T::SessionListPart
        | T::GroupFiltersData => Class::ServerOnly,
    }
}

/// Types and validates the `data` of an envelope.
///
/// Errors are `400 INVALID_DATATYPE` `"<SynthARium's text for the message>: <path>: <problem>"`,
/// where `<path>` starts at `data` (e.g. `data.video_filters[2].name`). Never panics.
pub fn parse_request(env: Envelope, filters: &dyn FilterNames) -> Result<ClientRequest, WireError> {
    use ClientRequest as R;
    use MessageType as T;
    let Envelope { kind, data } = env;
    if let Class::ServerOnly = client_request_class(kind) {
        return Ok(R::ServerOnly(kind));
    }
    Ok(match kind {
        T::Ping => R::Ping(data),
        T::Pong => {
            let pong: PongDict = from_data(data, text::INVALID_PONG)?;
            let handled_time = pong
                .handled_time
                .or(pong.server_time)
                .ok_or_else(|| invalid_data(text::INVALID_PONG, "data", "missing field `handled_time`"))?;
            R::Pong(PongData { handled_time, ping_data: pong.ping_data })
        }
        T::ConnectionOffer => {
            let d: ConnectionOfferDict = from_data(data, text::INVALID_CONNECTION_OFFER)?;
            R::ConnectionOffer { id: d.id, offer: d.offer }
        }
        T::AddIceCandidate => {
            let d: AddIceCandidateDict = from_data(data, text::INVALID_ADD_ICE_CANDIDATE)?;
            R::AddIceCandidate { id: d.id, candidate: d.candidate }
        }
        T::GetSessionList => R::GetSessionList(serde_json::from_value(data).unwrap_or_default()),
        T::GetSession => R::GetSession { session_id: session_id(data)? },
        T::SaveSession => R::SaveSession(strip_chat_totals(data)),
        T::DeleteSession => R::DeleteSession { session_id: session_id(data)? },
        T::CreateExperiment => R::CreateExperiment { session_id: session_id(data)? },
        T::JoinExperiment => R::JoinExperiment { session_id: session_id(data)? },
        T::LeaveExperiment => R::LeaveExperiment,
        T::StartExperiment => R::StartExperiment,
        T::StopExperiment => R::StopExperiment,
        T::AddNote => {
            let note: Note = from_data(data, text::INVALID_NOTE)?;
            if note.content.len() > super::MAX_NOTE_BYTES {
                return Err(WireError::new(413, ErrorType::InvalidRequest, text::note_too_long(note.content.len())));
            }
            R::AddNote(note)
        }
        T::Chat => {
            let msg: ChatMessage = from_data(data, text::INVALID_CHAT_MESSAGE)?;
            if msg.message.len() > super::MAX_CHAT_MESSAGE_BYTES {
                return Err(WireError::new(
                    413,
                    ErrorType::InvalidRequest,
                    text::chat_message_too_long(msg.message.len()),
                ));
            }
            R::Chat(msg)
        }
        T::KickParticipant => R::KickParticipant(from_data(data, text::INVALID_KICK_REQUEST)?),
        T::BanParticipant => R::BanParticipant(from_data(data, text::INVALID_KICK_REQUEST)?),
        T::Mute => R::Mute(from_data(data, text::INVALID_MUTE_REQUEST)?),
        T::SetFilters => {
            const TEXT: &str = text::INVALID_SET_FILTERS_REQUEST;
            let mut req: SetFiltersRequest = from_data(data, TEXT)?;
            let registered = |name: &str| filters.is_filter(name);
            check_filters(&mut req.audio_filters, "audio_filters", TEXT, &registered, &mut HashSet::new())?;
            check_filters(&mut req.video_filters, "video_filters", TEXT, &registered, &mut HashSet::new())?;
            R::SetFilters(req)
        }
        T::SetGroupFilters => {
            const TEXT: &str = text::INVALID_SET_GROUP_FILTERS_REQUEST;
            let mut req: SetGroupFiltersRequest = from_data(data, TEXT)?;
            let registered = |name: &str| filters.is_group_filter(name);
            let mut ids = HashSet::new();
            check_filters(&mut req.audio_group_filters, "audio_group_filters", TEXT, &registered, &mut ids)?;
            check_filters(&mut req.video_group_filters, "video_group_filters", TEXT, &registered, &mut ids)?;
            R::SetGroupFilters(req)
        }
        T::GetFiltersConfig => R::GetFiltersConfig,
        T::GetFiltersData => {
            const TEXT: &str = text::INVALID_GET_FILTERS_DATA;
            let mut req: GetFiltersDataRequest = from_data(data, TEXT)?;
            check_filter_name(&mut req.filter_name, TEXT, filters)?;
            R::GetFiltersData(req)
        }
        T::GetFiltersDataSendToParticipant => {
            const TEXT: &str = text::INVALID_GET_FILTERS_DATA_SEND_TO_PARTICIPANT;
            let mut req: GetFiltersDataSendToParticipantRequest = from_data(data, TEXT)?;
            check_filter_name(&mut req.filter_name, TEXT, filters)?;
            R::GetFiltersDataSendToParticipant(req)
        }
        T::UpdateReadMessageTime => {
            let req: UpdateReadMessageTimeRequest = from_data(data, text::INVALID_UPDATE_READ_MESSAGE_TIME)?;
            R::UpdateReadMessageTime {
                participant_id: req.participant_id,
                last_message_read_time: req.last_message_read_time,
            }
        }
        T::GetRecordingList => R::GetRecordingList,
        T::PostProcessingVideo => {
            let req: SessionIdRequest = from_data(data, text::INVALID_POST_PROCESSING)?;
            R::PostProcessingVideo { session_id: req.session_id }
        }
        T::CheckPostProcessing => R::CheckPostProcessing,
        T::GetChatHistory => {
            const TEXT: &str = text::INVALID_GET_CHAT_HISTORY;
            let req: GetChatHistoryRequest = from_data(data, TEXT)?;
            if req.limit == Some(0) {
                return Err(invalid_data(TEXT, "data.limit", "must be at least 1"));
            }
            R::GetChatHistory(req)
        }
        T::GetGroupFiltersData => {
            let req: GetGroupFiltersDataRequest = from_data(data, text::INVALID_GET_GROUP_FILTERS_DATA)?;
            R::GetGroupFiltersData(req)
        }
        // Server-only types returned above; listed so that this match stays exhaustive
        // without a wildcard.
        T::Test
        | T::Success
        | T::Error
        | T::SessionDescription
        | T::ConnectionProposal
        | T::ConnectionAnswer
        | T::SavedSession
        | T::SessionChange
        | T::DeletedSession
        | T::SessionList
        | T::Session
        | T::ExperimentCreated
        | T::ExperimentStarted
        | T::ExperimentEnded
        | T::KickNotification
        | T::BanNotification
        | T::FiltersConfig
        | T::FiltersData
        | T::GetVideoFilters
        | T::GetAudioFilters
        | T::ActiveVideoFilters
        | T::ActiveAudioFilters
        | T::RecordingList
        | T::ExperimenterJoined
        | T::ChatHistory
        | T::SessionListEnd
        | T::SessionListPart
        | T::GroupFiltersData => R::ServerOnly(kind),
    })
}

fn session_id(data: Value) -> Result<SessionId, WireError> {
    from_data::<SessionIdRequest>(data, text::INVALID_SESSION_ID_REQUEST).map(|r| r.session_id)
}

/// Canonicalises every filter name, then checks it is registered and that its id is not in
/// `seen_ids` (which it is added to).
fn check_filters(
    list: &mut [FilterDict],
    field: &str,
    invalid_text: &str,
    is_registered: &dyn Fn(&str) -> bool,
    seen_ids: &mut HashSet<String>,
) -> Result<(), WireError> {
    for (i, filter) in list.iter_mut().enumerate() {
        let canonical = canonical_filter_name(&filter.name);
        if canonical != filter.name {
            filter.name = canonical.to_owned();
        }
        if !is_registered(&filter.name) {
            return Err(invalid_data(
                invalid_text,
                &format!("data.{field}[{i}].name"),
                format_args!("unknown filter {:?}", filter.name),
            ));
        }
        if !seen_ids.insert(filter.id.clone()) {
            return Err(invalid_data(
                invalid_text,
                &format!("data.{field}[{i}].id"),
                format_args!("duplicate filter id {:?}", filter.id),
            ));
        }
    }
    Ok(())
}

fn check_filter_name(name: &mut String, invalid_text: &str, filters: &dyn FilterNames) -> Result<(), WireError> {
    let canonical = canonical_filter_name(name);
    if canonical != name.as_str() {
        *name = canonical.to_owned();
    }
    // Group filters too: their members' data (an exphub extension; SynthARium refuses them).
    if filters.is_filter(name) || filters.is_group_filter(name) {
        Ok(())
    } else {
        Err(invalid_data(invalid_text, "data.filter_name", format_args!("unknown filter {:?}", name)))
    }
}

/// `GET_CHAT_HISTORY` data: `{session_id, participant_id, before?, limit?}`. The page is the
/// (at most `limit`) messages just before index `before` of the participant's chat (default:
/// its end), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetChatHistoryRequest {
    pub session_id: SessionId,
    pub participant_id: ParticipantId,
    #[serde(default)]
    pub before: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// *exphub* `GET_GROUP_FILTERS_DATA` data: `{filter_id?: id | "all", results?: n, subscribe?: bool}`.
/// The reply holds each instance's last `results` results (default 300); `subscribe: true`
/// also pushes every new result to this connection until `subscribe: false` or it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetGroupFiltersDataRequest {
    #[serde(default = "all")]
    pub filter_id: String,
    #[serde(default)]
    pub results: Option<usize>,
    #[serde(default)]
    pub subscribe: Option<bool>,
}

fn all() -> String {
    "all".to_owned()
}

/// *exphub* `GET_SESSION_LIST` options (SynthARium sends none, and gets its usual answer):
/// `{"parts": true}` packs the sessions that do not fit the first `SESSION_LIST` into as few
/// `SESSION_LIST_PART` frames as fit (instead of one `SESSION_CHANGE` each); `"recent_chat": n`
/// lists each participant's last `n` messages (at most the default, 3; `chat_total` as usual).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct GetSessionListRequest {
    #[serde(default)]
    pub parts: bool,
    #[serde(default)]
    pub recent_chat: Option<usize>,
}

/// Removes the `chat_total` key the server adds to trimmed participants
/// ([`super::outgoing::CHAT_TOTAL_KEY`]), so a session read from the server can be saved back
/// as it is.
fn strip_chat_totals(mut data: Value) -> Value {
    if let Some(ps) = data.get_mut("participants").and_then(Value::as_array_mut) {
        for p in ps.iter_mut().filter_map(Value::as_object_mut) {
            p.remove(super::outgoing::CHAT_TOTAL_KEY);
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Shared helpers (also for other modules that validate message data, e.g. SAVE_SESSION)
// ---------------------------------------------------------------------------------------------

/// `400 INVALID_DATATYPE` "`<text>: <path>: <problem>`".
pub fn invalid_data(text: &str, path: &str, problem: impl fmt::Display) -> WireError {
    WireError::new(400, ErrorType::InvalidDatatype, format!("{text}: {path}: {problem}"))
}

/// Deserializes message `data` into `T` (a serde type with `deny_unknown_fields`), mapping
/// any failure to [`invalid_data`] with `invalid_text` and the path of the offending field.
///
/// The session module can use it for `SAVE_SESSION` with [`text::INVALID_SESSION`].
pub fn from_data<T: DeserializeOwned>(data: Value, invalid_text: &str) -> Result<T, WireError> {
    if !data.is_object() {
        return Err(invalid_data(invalid_text, "data", format_args!("expected an object, got {}", json_kind(&data))));
    }
    serde_path_to_error::deserialize(data).map_err(|err| {
        let path = render_path(err.path());
        invalid_data(invalid_text, &path, err.into_inner())
    })
}

/// `data`, `data.field`, `data.list[3].name`, ...
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("data");
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// A JSON value's kind, for error texts.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
