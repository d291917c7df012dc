//! The wire protocol: the only module that knows the JSON format of messages.
//!
//! It turns data-channel frames into checked [`Envelope`]s ([`parse_frame`]) and those into
//! typed, validated [`ClientRequest`]s ([`parse_request`]); parses the HTTP signalling bodies
//! of `/offer` and `/addIceCandidate` ([`parse_offer_request`],
//! [`parse_add_ice_candidate_request`]); and encodes every server message ([`encode`],
//! [`error_message`], [`success_message`], [`pong`], and the data structs in
//! [`outgoing`]). Every client-visible text it produces lives in [`text`], every error is a
//! [`WireError`]. The format is SynthARium's (`docs/protocol.md` is the contract), with
//! exphub's deliberate changes: no silent drops, and malformed data is answered with a
//! description that names the offending field.
//!
//! It is pure, synchronous code over bytes and `serde_json` values. It must not know tokio,
//! webrtc, the hub, connections, roles or permissions (the hub decides who may send what,
//! looking at [`Envelope::kind`]), nor which filters exist (the registry answers through
//! [`FilterNames`]). No client input makes it panic.

mod envelope;
pub mod error;
mod http;
mod message_type;
pub mod outgoing;
mod request;
pub mod text;

pub use envelope::{invalid_message, parse_frame, Envelope};
pub use error::{ErrorType, WireError};
pub use http::{
    add_ice_candidate_success_body, error_body, offer_answer_body, parse_add_ice_candidate_request,
    parse_offer_request, FilterListing, Health, HelloWorld, OfferRequest, OfferUser, MAX_CANDIDATE_LEN, MAX_ID_LEN,
};
pub use message_type::{MessageType, UnknownMessageType};
pub use outgoing::{encode, error_message, experimenter_joined, pong, success_message, SuccessType};
pub use request::{
    canonical_filter_name, from_data, invalid_data, parse_request, ClientRequest, FilterChannel, FilterNames,
    GetChatHistoryRequest, GetFiltersDataRequest, GetFiltersDataSendToParticipantRequest, GetGroupFiltersDataRequest,
    GetSessionListRequest, IceCandidate, KickRequest, MuteRequest, PongData, SdpType, SessionDescription,
    SetFiltersRequest, SetGroupFiltersRequest,
};

/// The default maximum size of one data-channel frame: 256 KiB, the most the WebRTC stack
/// carries and what the server advertises (`a=max-message-size`; `docs/protocol.md` Limits).
pub const DEFAULT_MAX_FRAME_LEN: usize = 256 * 1024;

/// The longest `CHAT` `message`, in bytes (UTF-8); longer → `413 INVALID_REQUEST`.
pub const MAX_CHAT_MESSAGE_BYTES: usize = 8 * 1024;

/// The longest `ADD_NOTE` `content`, in bytes (UTF-8); longer → `413 INVALID_REQUEST`.
pub const MAX_NOTE_BYTES: usize = 8 * 1024;

#[cfg(test)]
mod tests;
