//! A live experiment: its state machine and who is in it. The session data itself (chat,
//! notes, filters, times) lives in the hub's session map and on disk.

use std::collections::HashMap;

use super::ConnId;
use crate::peer::Forwarder;

/// SynthARium's `ExperimentState`: WAITING → RUNNING → ENDED (or WAITING → ENDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExperimentState {
    Waiting,
    Running,
    Ended,
}

/// The media of one participant seat: its forwarders outlive any one connection, so a
/// rejoin keeps every subscriber's sinks.
pub struct SeatMedia {
    pub video: Forwarder,
    pub audio: Forwarder,
    /// The last data each filter instance reported, by (kind, instance id): `GET_FILTERS_DATA`.
    pub reports: HashMap<(crate::media::Kind, String), serde_json::Value>,
    /// Pinging requested by PING filters (instance id → request), and its state.
    pub ping: super::media::PingState,
}

pub struct Experiment {
    pub state: ExperimentState,
    /// Seats taken: participant id → its current connection.
    pub participants: HashMap<String, ConnId>,
    /// Experimenters in the experiment, in join order.
    pub experimenters: Vec<ConnId>,
    pub media: HashMap<String, SeatMedia>,
}

impl Experiment {
    pub fn new() -> Self {
        Self {
            state: ExperimentState::Waiting,
            participants: HashMap::new(),
            experimenters: vec![],
            media: HashMap::new(),
        }
    }
}

impl Default for Experiment {
    fn default() -> Self {
        Self::new()
    }
}
