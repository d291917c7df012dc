//! A live experiment: its state machine and who is in it. The session data itself (chat,
//! notes, filters, times) lives in the hub's session map and on disk.

use std::collections::HashMap;

use super::ConnId;
use crate::peer::forward::Kind;
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

    /// The seat's forwarders, created on first use.
    pub fn media_for(&mut self, participant_id: &str) -> &mut SeatMedia {
        self.media
            .entry(participant_id.to_owned())
            .or_insert_with(|| SeatMedia { video: Forwarder::spawn(Kind::Video), audio: Forwarder::spawn(Kind::Audio) })
    }
}

impl Default for Experiment {
    fn default() -> Self {
        Self::new()
    }
}
