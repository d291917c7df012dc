//! The wire's error dict: `{"code": int, "type": ERROR_TYPE, "description": str}`.
//!
//! Every error a client can see is a [`WireError`]. Modules below the hub return it (or their
//! own error, mapped here) so that the code, the type name and the text are decided in one
//! place per failure. Internal details (io errors, panics) never go into `description`: they
//! are logged and the client gets `INTERNAL_SERVER_ERROR`.

use serde::Serialize;
use std::fmt;

/// SynthARium's `ERROR_TYPES` (main + dev), plus exphub's `FORBIDDEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    NotImplemented,
    InternalServerError,
    InvalidRequest,
    InvalidDatatype,
    UnknownId,
    DuplicateId,
    UnknownSession,
    UnknownExperiment,
    UnknownParticipant,
    UnknownUser,
    UnknownSubconnectionId,
    UnknownFilterId,
    UnknownFilterType,
    BannedParticipant,
    ParticipantAlreadyConnected,
    ExperimentAlreadyStarted,
    InvalidParameter,
    NotConnectedToExperiment,
    ExperimentRunning,
    AlreadyJoinedExperiment,
    FileNotFound,
    FileAlreadyExists,
    StillProcessing,
    PostProcessingFailed,
    /// exphub addition: a known message type the sender's role may not send.
    Forbidden,
    /// exphub addition: the connection sent more than its rate limit allows (429).
    TooManyRequests,
    /// exphub addition (cluster mode): no node has room for the experiment (503).
    NoCapacity,
    /// exphub addition (cluster mode): the experiment is placed on another node (409).
    ExperimentOnOtherNode,
    /// exphub addition (cluster mode): another node changed the session since this node's
    /// copy; nothing was written (409).
    SessionChanged,
}

impl ErrorType {
    /// The wire name, e.g. `"INVALID_REQUEST"`.
    pub fn as_str(self) -> &'static str {
        use ErrorType::*;
        match self {
            NotImplemented => "NOT_IMPLEMENTED",
            InternalServerError => "INTERNAL_SERVER_ERROR",
            InvalidRequest => "INVALID_REQUEST",
            InvalidDatatype => "INVALID_DATATYPE",
            UnknownId => "UNKNOWN_ID",
            DuplicateId => "DUPLICATE_ID",
            UnknownSession => "UNKNOWN_SESSION",
            UnknownExperiment => "UNKNOWN_EXPERIMENT",
            UnknownParticipant => "UNKNOWN_PARTICIPANT",
            UnknownUser => "UNKNOWN_USER",
            UnknownSubconnectionId => "UNKNOWN_SUBCONNECTION_ID",
            UnknownFilterId => "UNKNOWN_FILTER_ID",
            UnknownFilterType => "UNKNOWN_FILTER_TYPE",
            BannedParticipant => "BANNED_PARTICIPANT",
            ParticipantAlreadyConnected => "PARTICIPANT_ALREADY_CONNECTED",
            ExperimentAlreadyStarted => "EXPERIMENT_ALREADY_STARTED",
            InvalidParameter => "INVALID_PARAMETER",
            NotConnectedToExperiment => "NOT_CONNECTED_TO_EXPERIMENT",
            ExperimentRunning => "EXPERIMENT_RUNNING",
            AlreadyJoinedExperiment => "ALREADY_JOINED_EXPERIMENT",
            FileNotFound => "FILE_NOT_FOUND",
            FileAlreadyExists => "FILE_ALREADY_EXISTS",
            StillProcessing => "STILL_PROCESSING",
            PostProcessingFailed => "POST_PROCESSING_FAILED",
            Forbidden => "FORBIDDEN",
            TooManyRequests => "TOO_MANY_REQUESTS",
            NoCapacity => "NO_CAPACITY",
            ExperimentOnOtherNode => "EXPERIMENT_ON_OTHER_NODE",
            SessionChanged => "SESSION_CHANGED",
        }
    }
}

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireError {
    /// HTTP-like status (SynthARium quirks kept: `UNKNOWN_SUBCONNECTION_ID` uses 0).
    pub code: u16,
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub description: String,
}

impl WireError {
    pub fn new(code: u16, kind: ErrorType, description: impl Into<String>) -> Self {
        Self { code, kind, description: description.into() }
    }

    /// `500 INTERNAL_SERVER_ERROR` with SynthARium's text; log the cause separately.
    pub fn internal() -> Self {
        Self::new(500, ErrorType::InternalServerError, "Internal server error. See server log for details.")
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.kind.as_str(), self.description)
    }
}

impl std::error::Error for WireError {}
