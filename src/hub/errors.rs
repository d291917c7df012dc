//! Every error the hub answers with, one named constructor each. The texts are SynthARium's
//! byte for byte where SynthARium has the case (scripts and the frontend may compare them,
//! typos included); the others are exphub's.

use crate::protocol::{ErrorType, MessageType, WireError};

fn e(code: u16, kind: ErrorType, text: impl Into<String>) -> WireError {
    WireError::new(code, kind, text)
}

// --- Offers and candidates (`/offer`, `/addIceCandidate`) -----------------------------------

pub(super) fn bad_password() -> WireError {
    e(401, ErrorType::InvalidRequest, "Invalid or missing experimenter password.")
}
pub(super) fn unparseable_offer() -> WireError {
    e(400, ErrorType::InvalidRequest, crate::protocol::text::FAILED_TO_PARSE_OFFER)
}
pub(super) fn session_not_found() -> WireError {
    e(400, ErrorType::UnknownSession, "Session not found.")
}
pub(super) fn participant_not_in_session() -> WireError {
    e(400, ErrorType::UnknownParticipant, "Participant not found in the given session.")
}
pub(super) fn banned() -> WireError {
    e(400, ErrorType::BannedParticipant, "You have been banned and can no longer join the experiment.")
}
pub(super) fn experiment_ended() -> WireError {
    e(409, ErrorType::InvalidRequest, "The experiment has ended.")
}
pub(super) fn too_many_early_candidates() -> WireError {
    e(400, ErrorType::InvalidRequest, "Too many candidates for an unknown connection.")
}
pub(super) fn shutting_down() -> WireError {
    e(503, ErrorType::InternalServerError, "The server is shutting down.")
}

// --- Sub-connections ------------------------------------------------------------------------

pub(super) fn unknown_offer_id(id: &str) -> WireError {
    e(0, ErrorType::UnknownSubconnectionId, format!("Unknown offer ID {id}"))
}
pub(super) fn unknown_subconnection_id(id: &str) -> WireError {
    e(0, ErrorType::UnknownSubconnectionId, format!("Unknown subconnection ID {id}"))
}
pub(super) fn unappliable_sub_offer() -> WireError {
    e(400, ErrorType::InvalidDatatype, "Invalid connection offer dict: the offer could not be applied.")
}
pub(super) fn too_many_candidates_before_offer() -> WireError {
    e(400, ErrorType::InvalidRequest, "Too many candidates before the offer.")
}

// --- Permissions and limits -----------------------------------------------------------------

pub(super) fn forbidden(kind: MessageType) -> WireError {
    e(403, ErrorType::Forbidden, format!("{} is not allowed for this user.", kind.as_str()))
}
pub(super) fn own_session_only() -> WireError {
    e(403, ErrorType::Forbidden, "Participants may only request their own session.")
}
pub(super) fn own_chat_only() -> WireError {
    e(403, ErrorType::Forbidden, "Participants may only request their own chat.")
}
pub(super) fn too_many(what: String) -> WireError {
    e(429, ErrorType::TooManyRequests, format!("Too many requests: {what}. Try again later."))
}

// --- Sessions -------------------------------------------------------------------------------

/// SynthARium answers an unknown session with 404 on GET_SESSION, 400 on CREATE_EXPERIMENT.
pub(super) fn no_session(code: u16) -> WireError {
    e(code, ErrorType::UnknownSession, "No session with the given ID found.")
}
pub(super) fn no_session_with_id(session_id: &str) -> WireError {
    e(404, ErrorType::UnknownSession, format!("No session with the given ID found: {session_id}."))
}
pub(super) fn no_participant_with_id(participant_id: &str) -> WireError {
    e(404, ErrorType::UnknownParticipant, format!("No participant with the given ID found: {participant_id}."))
}
pub(super) fn no_session_to_update() -> WireError {
    e(404, ErrorType::UnknownSession, "No session with the given ID found to update.")
}
pub(super) fn delete_with_live_experiment() -> WireError {
    e(400, ErrorType::ExperimentRunning, "Cannot delete session with running experiment.")
}
pub(super) fn delete_unknown_session() -> WireError {
    e(404, ErrorType::InvalidRequest, "No session found for the given ID.")
}
pub(super) fn delete_after_experiment() -> WireError {
    e(409, ErrorType::ExperimentRunning, "Can not delete the session, a experiment for this session exists.")
}
pub(super) fn chat_page_too_large() -> WireError {
    e(413, ErrorType::InvalidRequest, "The chat message before the requested index is too large for this connection.")
}

// --- Experiments ----------------------------------------------------------------------------

/// `"<prefix> Experimenter is not connected to an experiment."`
pub(super) fn not_connected(prefix: &str) -> WireError {
    e(409, ErrorType::NotConnectedToExperiment, format!("{prefix} Experimenter is not connected to an experiment."))
}
pub(super) fn experiment_exists() -> WireError {
    e(409, ErrorType::InvalidRequest, "Experiment already exists.")
}
pub(super) fn already_joined() -> WireError {
    e(409, ErrorType::AlreadyJoinedExperiment, "Can not join an experiment while already connected to an experiment.")
}
pub(super) fn no_experiment() -> WireError {
    e(404, ErrorType::UnknownExperiment, "There is no experiment with the given ID.")
}
pub(super) fn not_waiting() -> WireError {
    e(409, ErrorType::InvalidRequest, "Experiment cant be started, state is not WAITING.")
}
pub(super) fn already_stopped() -> WireError {
    e(409, ErrorType::InvalidRequest, "Experiment is already stopped.")
}
pub(super) fn kick_unknown() -> WireError {
    e(404, ErrorType::UnknownParticipant, "Failed to kick Participant. Participant with the given ID not found.")
}
pub(super) fn ban_unknown() -> WireError {
    e(404, ErrorType::UnknownParticipant, "Failed to ban Participant. Participant with the given ID not found.")
}
pub(super) fn mute_unknown() -> WireError {
    e(
        404,
        ErrorType::UnknownParticipant,
        "Failed to mute participant, requested participantId is not part of this experiment.",
    )
}
pub(super) fn select_unknown() -> WireError {
    e(
        404,
        ErrorType::UnknownParticipant,
        "Failed to select participant, requested participantId is not part of this experiment.",
    )
}
/// `"Unknown participant ID: \"<id>\"."`
pub(super) fn unknown_participant_id(participant_id: &str) -> WireError {
    e(404, ErrorType::UnknownParticipant, format!("Unknown participant ID: \"{participant_id}\"."))
}
/// `"Participant with id \"<id>\" not found."`
pub(super) fn participant_id_not_found(participant_id: &str) -> WireError {
    e(404, ErrorType::UnknownParticipant, format!("Participant with id \"{participant_id}\" not found."))
}
pub(super) fn unknown_filter_id(filter_id: &str) -> WireError {
    e(404, ErrorType::UnknownFilterId, format!("Unknown filter ID: \"{filter_id}\"."))
}

/// To the experimenters: a filter panicked and is bypassed.
pub(super) fn filter_failed(name: &str, id: &str, participant_id: &str, message: &str) -> WireError {
    e(
        500,
        ErrorType::InternalServerError,
        format!("Filter {name} \"{id}\" of participant {participant_id} failed and is bypassed: {message}"),
    )
}
/// To the experimenters: recording could not write.
pub(super) fn recording_failed(text: String) -> WireError {
    e(507, ErrorType::InternalServerError, text)
}

// --- Chat -----------------------------------------------------------------------------------

pub(super) fn author_not_experimenter() -> WireError {
    e(400, ErrorType::InvalidRequest, "Author of message must be experimenter.")
}
pub(super) fn author_not_participant() -> WireError {
    e(400, ErrorType::InvalidRequest, "Author of message must be participant ID.")
}
pub(super) fn no_chat_target() -> WireError {
    e(404, ErrorType::UnknownUser, "No participant found for the given ID.")
}
/// The chat is stored, but its target seat is not connected now.
pub(super) fn chat_not_delivered(target: &str) -> WireError {
    e(404, ErrorType::UnknownUser, format!("Failed to send data to {target}, user not found."))
}

/// An offer not answered for lack of ports, sockets or files: try again later.
pub(super) fn out_of_resources(description: &str) -> WireError {
    e(503, ErrorType::InternalServerError, description)
}

// --- Post-processing (`POST_PROCESSING_VIDEO`, `CHECK_POST_PROCESSING`) ------------------------

/// The face models are not installed: `reason` says where they were looked for.
pub(super) fn post_processing_unavailable(reason: &str) -> WireError {
    e(
        501,
        ErrorType::NotImplemented,
        format!("Post-processing (face analysis) is not available on this server: {reason}"),
    )
}
/// SynthARium's code 102.
pub(super) fn still_processing(session_id: &str) -> WireError {
    e(102, ErrorType::StillProcessing, format!("Video post-processing is still running (session {session_id})."))
}
pub(super) fn post_processing_exists(dir: &str) -> WireError {
    e(409, ErrorType::FileAlreadyExists, format!("Post-processing results already exist: {dir}"))
}
pub(super) fn no_recorded_video(session_id: &str) -> WireError {
    e(404, ErrorType::FileNotFound, format!("No recorded video found for session {session_id}."))
}
pub(super) fn post_processing_while_recording() -> WireError {
    e(
        409,
        ErrorType::ExperimentRunning,
        "Cannot post-process the session while its experiment is running or its recordings are being written.",
    )
}
pub(super) fn post_processing_failed(reason: &str) -> WireError {
    e(500, ErrorType::PostProcessingFailed, format!("Video post-processing failed: {reason}"))
}

// --- Cluster mode ---------------------------------------------------------------------------

pub(super) fn no_capacity(cost_millicores: f32) -> WireError {
    let pct = (cost_millicores / 10.0).round();
    e(
        503,
        ErrorType::NoCapacity,
        format!("No server has room for this experiment now (it needs about {pct}% of a core)."),
    )
}
pub(super) fn experiment_on_other_node(node_id: &str) -> WireError {
    e(
        409,
        ErrorType::ExperimentOnOtherNode,
        format!("This experiment runs on another server ({node_id}); connect to that server to join it."),
    )
}
pub(super) fn cluster_unavailable() -> WireError {
    crate::cluster::unavailable()
}
pub(super) fn session_changed() -> WireError {
    e(409, ErrorType::SessionChanged, "The session was changed elsewhere; reload it.")
}
