//! Every fixed text the protocol layer puts on the wire, in one place.
//!
//! Most strings are SynthARium's, byte for byte (typos included: "send chat message",
//! "succesfully"), because scripts and the frontend may compare them. Strings that exphub adds
//! (SynthARium crashed or never sent anything there) are marked *exphub*.

// --- Envelope (data channel) -------------------------------------------------------------

/// `400 INVALID_REQUEST`: the frame is not a `{"type", "data"}` object with a known type.
pub const INVALID_MESSAGE: &str = "Received message is not a valid Message object.";

// --- Malformed `data` of a known type: `400 INVALID_DATATYPE`, "<text>: <path>: <problem>" ---

/// `CONNECTION_OFFER`.
pub const INVALID_CONNECTION_OFFER: &str = "Invalid connection offer dict";
/// `ADD_ICE_CANDIDATE` (data channel).
pub const INVALID_ADD_ICE_CANDIDATE: &str = "Invalid add ice candidate dict";
/// `SAVE_SESSION` (validated by the session module, which should use this text).
pub const INVALID_SESSION: &str = "Message data is not a valid Session object.";
/// `GET_SESSION`, `DELETE_SESSION`, `CREATE_EXPERIMENT`, `JOIN_EXPERIMENT`.
pub const INVALID_SESSION_ID_REQUEST: &str = "Message data is not a valid SessionIdRequest.";
/// `ADD_NOTE`.
pub const INVALID_NOTE: &str = "Message data is not a valid Note.";
/// `CHAT`.
pub const INVALID_CHAT_MESSAGE: &str = "Message data is not a valid ChatMessage.";
/// `KICK_PARTICIPANT`, `BAN_PARTICIPANT`.
pub const INVALID_KICK_REQUEST: &str = "Message data is not a valid KickRequest.";
/// `MUTE`.
pub const INVALID_MUTE_REQUEST: &str = "Message data is not a valid MuteRequest.";
/// `SET_FILTERS`.
pub const INVALID_SET_FILTERS_REQUEST: &str = "Message data is not a valid SetFiltersRequest.";
/// `SET_GROUP_FILTERS`.
pub const INVALID_SET_GROUP_FILTERS_REQUEST: &str = "Message data is not a valid SetGroupFiltersRequest.";
/// `GET_FILTERS_DATA`.
pub const INVALID_GET_FILTERS_DATA: &str = "Message data is not a valid GetFiltersData.";
/// `GET_FILTERS_DATA_SEND_TO_PARTICIPANT`.
pub const INVALID_GET_FILTERS_DATA_SEND_TO_PARTICIPANT: &str =
    "Message data is not a valid GET_FILTERS_DATA_SEND_TO_PARTICIPANT.";
/// `POST_PROCESSING_VIDEO`.
pub const INVALID_POST_PROCESSING: &str = "Message data is not a valid PostProcessingDict.";
/// *exphub*: `UPDATE_READ_MESSAGE_TIME` (SynthARium did not validate it and answered 500).
pub const INVALID_UPDATE_READ_MESSAGE_TIME: &str = "Message data is not a valid UpdateReadMessageTimeRequest.";
/// *exphub*: `PONG` (SynthARium did not validate it and answered 500).
pub const INVALID_PONG: &str = "Message data is not a valid Pong.";
/// *exphub*: `GET_GROUP_FILTERS_DATA`.
pub const INVALID_GET_GROUP_FILTERS_DATA: &str = "Message data is not a valid GetGroupFiltersDataRequest.";
/// *exphub*: `GET_CHAT_HISTORY`.
pub const INVALID_GET_CHAT_HISTORY: &str = "Message data is not a valid GetChatHistoryRequest.";

// --- Sizes: `413 INVALID_REQUEST` (exphub) -------------------------------------------------

/// A frame over the server's limit.
pub fn message_too_large(len: usize, limit: usize) -> String {
    format!("Message too large: {len} bytes, the limit is {limit} bytes.")
}

/// A `CHAT` whose `message` is over [`super::MAX_CHAT_MESSAGE_BYTES`].
pub fn chat_message_too_long(len: usize) -> String {
    format!("Chat message too long: {len} bytes, the limit is {} bytes.", super::MAX_CHAT_MESSAGE_BYTES)
}

/// An `ADD_NOTE` whose `content` is over [`super::MAX_NOTE_BYTES`].
pub fn note_too_long(len: usize) -> String {
    format!("Note too long: {len} bytes, the limit is {} bytes.", super::MAX_NOTE_BYTES)
}

/// A server message that the receiving connection could not take (larger than its peer's
/// `max-message-size`); this error is sent in its place.
pub fn reply_too_large(kind: &str, len: usize, limit: usize) -> String {
    format!("The server's {kind} message is too large for this connection: {len} bytes, the limit is {limit} bytes.")
}

// --- HTTP `/offer` and `/addIceCandidate` --------------------------------------------------

/// `415 INVALID_REQUEST`.
pub const CONTENT_TYPE_NOT_JSON: &str = "Content type must be 'application/json'.";
/// `400 INVALID_DATATYPE`: body not JSON, or (exphub) no `request` object in it.
pub const FAILED_TO_PARSE_REQUEST: &str = "Failed to parse request.";
/// `400 INVALID_REQUEST`, followed by a Python list repr and a full stop.
pub const MISSING_REQUEST_PARAMETERS: &str = "Missing request parameters:";
/// `400 INVALID_REQUEST`.
pub const INVALID_USER_TYPE: &str = "Invalid user type.";
/// `400 INVALID_REQUEST`: `sdp`/`type` do not make an RTCSessionDescription.
pub const FAILED_TO_PARSE_OFFER: &str = "Failed to parse offer.";
/// `400 INVALID_REQUEST`: `/addIceCandidate` body is not an AddIceCandidate dict.
pub const INVALID_CANDIDATE: &str = "Invalid candidate.";

// --- SUCCESS descriptions ------------------------------------------------------------------

/// `JOIN_EXPERIMENT` in reply to `CREATE_EXPERIMENT`.
pub const CREATED_AND_JOINED_EXPERIMENT: &str = "Successfully started and joined experiment.";
/// `JOIN_EXPERIMENT` in reply to `JOIN_EXPERIMENT`.
pub const JOINED_EXPERIMENT: &str = "Successfully joined experiment.";
/// `LEAVE_EXPERIMENT`.
pub const LEFT_EXPERIMENT: &str = "Successfully left experiment.";
/// `START_EXPERIMENT`.
pub const STARTED_EXPERIMENT: &str = "Successfully started experiment.";
/// `STOP_EXPERIMENT`.
pub const STOPPED_EXPERIMENT: &str = "Successfully stopped experiment.";
/// `ADD_NOTE`.
pub const ADDED_NOTE: &str = "Successfully added note.";
/// `CHAT` (SynthARium's grammar).
pub const SENT_CHAT: &str = "Successfully send chat message.";
/// `KICK_PARTICIPANT`.
pub const KICKED_PARTICIPANT: &str = "Successfully kicked participant.";
/// `BAN_PARTICIPANT`.
pub const BANNED_PARTICIPANT: &str = "Successfully banned participant.";
/// `MUTE`.
pub const CHANGED_MUTE: &str = "Successfully changed muted state for participant.";
/// `SET_FILTERS`.
pub const CHANGED_FILTERS: &str = "Successfully changed filters.";
/// `SET_GROUP_FILTERS` (SynthARium never got to send it: `docs/protocol.md` D3).
pub const CHANGED_GROUP_FILTERS: &str = "Successfully changed group filters.";
/// `ADD_ICE_CANDIDATE` on the data channel (sub-connections), one per candidate.
pub const ADDED_ICE_CANDIDATE: &str = "Successfully added ice candidate";
/// `ADD_ICE_CANDIDATE` as the HTTP `/addIceCandidate` answer (SynthARium's spelling).
pub const ICE_CANDIDATE_RECEIVED: &str = "Ice candidate was succesfully received.";
/// `SEND_TO_PARTICIPANT` in reply to `GET_FILTERS_DATA_SEND_TO_PARTICIPANT`.
pub const SENT_FILTERS_DATA_TO_PARTICIPANT: &str = "Successfully sent GET_FILTERS_DATA to participant.";
/// *exphub*: `SAVE_SESSION` (declared by SynthARium, never sent).
pub const SAVED_SESSION: &str = "Successfully saved session.";
/// *exphub*: `DELETE_SESSION` (declared by SynthARium, never sent).
pub const DELETED_SESSION: &str = "Successfully deleted session.";
/// *exphub*: `POST_PROCESSING_VIDEO` default (SynthARium sends its consumer's own text).
pub const POST_PROCESSING_FINISHED: &str = "Successfully post-processed video.";
/// `POST_PROCESSING_VIDEO`'s reply (a bare string), followed by the results' absolute path.
pub const POST_PROCESSING_STARTED: &str = "Start video post-processing. Result directory: ";
