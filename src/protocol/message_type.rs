//! The `type` of a message envelope.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Declares [`MessageType`] once, with its wire names, so that `as_str`, `FromStr` and
/// [`MessageType::ALL`] cannot disagree.
macro_rules! message_types {
    ($( $(#[$meta:meta])* $variant:ident = $wire:literal, )*) => {
        /// Every message type of SynthARium's `MESSAGE_TYPES` (main + development), plus the
        /// two types its server sends without listing them (`RECORDING_LIST`,
        /// `EXPERIMENTER_JOINED`).
        ///
        /// All of them are *known* types: a client frame carrying one is a valid envelope.
        /// Which of them a client may send is decided by [`parse_request`](super::parse_request)
        /// (the others become [`ClientRequest::ServerOnly`](super::ClientRequest::ServerOnly)).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MessageType {
            $( $(#[$meta])* $variant, )*
        }

        impl MessageType {
            /// Every message type, in declaration order.
            pub const ALL: &'static [MessageType] = &[ $( MessageType::$variant, )* ];

            /// The wire name, e.g. `"SESSION_LIST"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( MessageType::$variant => $wire, )*
                }
            }
        }

        impl FromStr for MessageType {
            type Err = UnknownMessageType;

            /// Parses an exact (case-sensitive) wire name.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $wire => Ok(MessageType::$variant), )*
                    _ => Err(UnknownMessageType(s.to_owned())),
                }
            }
        }
    };
}

message_types! {
    // --- both SynthARium branches ---
    /// Server → client, from the `FILTER_API_TEST` filter.
    Test = "TEST",
    Success = "SUCCESS",
    Error = "ERROR",
    /// The HTTP `/offer` answer's type.
    SessionDescription = "SESSION_DESCRIPTION",
    ConnectionProposal = "CONNECTION_PROPOSAL",
    ConnectionOffer = "CONNECTION_OFFER",
    ConnectionAnswer = "CONNECTION_ANSWER",
    SaveSession = "SAVE_SESSION",
    SavedSession = "SAVED_SESSION",
    SessionChange = "SESSION_CHANGE",
    DeleteSession = "DELETE_SESSION",
    DeletedSession = "DELETED_SESSION",
    GetSessionList = "GET_SESSION_LIST",
    GetSession = "GET_SESSION",
    SessionList = "SESSION_LIST",
    Session = "SESSION",
    Chat = "CHAT",
    CreateExperiment = "CREATE_EXPERIMENT",
    JoinExperiment = "JOIN_EXPERIMENT",
    LeaveExperiment = "LEAVE_EXPERIMENT",
    StartExperiment = "START_EXPERIMENT",
    StopExperiment = "STOP_EXPERIMENT",
    ExperimentCreated = "EXPERIMENT_CREATED",
    ExperimentStarted = "EXPERIMENT_STARTED",
    ExperimentEnded = "EXPERIMENT_ENDED",
    AddNote = "ADD_NOTE",
    KickParticipant = "KICK_PARTICIPANT",
    BanParticipant = "BAN_PARTICIPANT",
    KickNotification = "KICK_NOTIFICATION",
    BanNotification = "BAN_NOTIFICATION",
    Mute = "MUTE",
    SetFilters = "SET_FILTERS",
    SetGroupFilters = "SET_GROUP_FILTERS",
    Ping = "PING",
    Pong = "PONG",
    // --- development branch ---
    UpdateReadMessageTime = "UPDATE_READ_MESSAGE_TIME",
    GetFiltersConfig = "GET_FILTERS_CONFIG",
    FiltersConfig = "FILTERS_CONFIG",
    GetFiltersData = "GET_FILTERS_DATA",
    GetFiltersDataSendToParticipant = "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
    FiltersData = "FILTERS_DATA",
    /// SynthARium-internal (main process ↔ connection subprocess); never on the wire.
    GetVideoFilters = "GET_VIDEO_FILTERS",
    /// SynthARium-internal; never on the wire.
    GetAudioFilters = "GET_AUDIO_FILTERS",
    /// SynthARium-internal; never on the wire.
    ActiveVideoFilters = "ACTIVE_VIDEO_FILTERS",
    /// SynthARium-internal; never on the wire.
    ActiveAudioFilters = "ACTIVE_AUDIO_FILTERS",
    PostProcessingVideo = "POST_PROCESSING_VIDEO",
    GetRecordingList = "GET_RECORDING_LIST",
    CheckPostProcessing = "CHECK_POST_PROCESSING",
    AddIceCandidate = "ADD_ICE_CANDIDATE",
    // --- sent by SynthARium's server but missing from its MESSAGE_TYPES ---
    /// Reply to `GET_RECORDING_LIST`.
    RecordingList = "RECORDING_LIST",
    /// Broadcast on the `/ws` WebSocket (never on the data channel), without `data`.
    ExperimenterJoined = "EXPERIMENTER_JOINED",
    // --- exphub additions (a SynthARium client never sends them and ignores them) ---
    /// Client → server: one page of a participant's chat history.
    GetChatHistory = "GET_CHAT_HISTORY",
    /// Reply to `GET_CHAT_HISTORY`.
    ChatHistory = "CHAT_HISTORY",
    /// After the last frame of a session list (`SESSION_LIST`, then `SESSION_CHANGE`s).
    SessionListEnd = "SESSION_LIST_END",
    /// Further sessions of a list asked for with `{"parts": true}`: `data` is an array of sessions.
    SessionListPart = "SESSION_LIST_PART",
    /// Client → server: the experiment's group filters, their members and recent results
    /// (and, with `subscribe`, every new result as it comes).
    GetGroupFiltersData = "GET_GROUP_FILTERS_DATA",
    /// Reply to `GET_GROUP_FILTERS_DATA`, and its pushes (`push: true`).
    GroupFiltersData = "GROUP_FILTERS_DATA",
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MessageType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A `type` string that is not a [`MessageType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message type {0:?}")]
pub struct UnknownMessageType(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_wire_name() {
        for &t in MessageType::ALL {
            assert_eq!(t.as_str().parse::<MessageType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            assert_eq!(serde_json::to_string(&t).ok(), Some(format!("\"{}\"", t.as_str())));
        }
    }

    #[test]
    fn all_syntharium_message_types_are_known() {
        // SynthARium main + development MESSAGE_TYPES, as its code lists them.
        let names = "TEST SUCCESS ERROR SESSION_DESCRIPTION CONNECTION_PROPOSAL CONNECTION_OFFER \
            CONNECTION_ANSWER SAVE_SESSION SAVED_SESSION SESSION_CHANGE DELETE_SESSION DELETED_SESSION \
            GET_SESSION_LIST GET_SESSION SESSION_LIST SESSION CHAT CREATE_EXPERIMENT JOIN_EXPERIMENT \
            LEAVE_EXPERIMENT START_EXPERIMENT STOP_EXPERIMENT EXPERIMENT_CREATED EXPERIMENT_STARTED \
            EXPERIMENT_ENDED ADD_NOTE KICK_PARTICIPANT BAN_PARTICIPANT KICK_NOTIFICATION \
            BAN_NOTIFICATION MUTE SET_FILTERS SET_GROUP_FILTERS PING PONG \
            UPDATE_READ_MESSAGE_TIME GET_FILTERS_CONFIG FILTERS_CONFIG GET_FILTERS_DATA \
            GET_FILTERS_DATA_SEND_TO_PARTICIPANT FILTERS_DATA GET_VIDEO_FILTERS GET_AUDIO_FILTERS \
            ACTIVE_VIDEO_FILTERS ACTIVE_AUDIO_FILTERS POST_PROCESSING_VIDEO GET_RECORDING_LIST \
            CHECK_POST_PROCESSING ADD_ICE_CANDIDATE";
        let mut count = 0;
        for name in names.split_whitespace() {
            assert!(name.parse::<MessageType>().is_ok(), "{name} is not known");
            count += 1;
        }
        // Plus RECORDING_LIST and EXPERIMENTER_JOINED, and exphub's GET_CHAT_HISTORY,
        // CHAT_HISTORY, SESSION_LIST_END, SESSION_LIST_PART, GET_GROUP_FILTERS_DATA and
        // GROUP_FILTERS_DATA.
        assert_eq!(MessageType::ALL.len(), count + 8);
    }

    #[test]
    fn unknown_names_are_rejected_case_sensitively() {
        for name in ["", "ping", "Ping", "PING ", "NOT_A_TYPE", "SESSION_LIST\0"] {
            assert_eq!(name.parse::<MessageType>(), Err(UnknownMessageType(name.to_owned())));
        }
    }
}
