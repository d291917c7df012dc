//! [`FilterContext`]: everything a filter may do besides changing pixels and samples.
//!
//! The context is plain data owned by the pipeline thread, so nothing on the media path takes a
//! lock or awaits:
//! * **outputs** (reports, messages, ping requests) are queued in an outbox that the chain drains
//!   after each filter call and hands to the server as [`ChainEvent`](crate::ChainEvent)s;
//! * **inputs** (the current ping, other filters' reports, frame timing) are plain fields that
//!   the chain or the server sets between frames.
//!
//! A filter never sees the server, the experiment or another thread.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Who a message from a filter goes to (SynthARium's `experiment_send(to, ...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every participant and experimenter of the experiment (`"all"`).
    All,
    /// Every participant (`"participants"`).
    Participants,
    /// The experimenter(s) (`"experimenter"`).
    Experimenter,
    /// One participant, by id.
    Participant(String),
}

impl Target {
    /// SynthARium's wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Target::All => "all",
            Target::Participants => "participants",
            Target::Experimenter => "experimenter",
            Target::Participant(id) => id,
        }
    }
}

impl From<&str> for Target {
    fn from(s: &str) -> Self {
        match s {
            "all" => Target::All,
            "participants" => Target::Participants,
            "experimenter" => Target::Experimenter,
            id => Target::Participant(id.to_owned()),
        }
    }
}

/// A request that the server pings this participant (SynthARium's `start_pinging`): a
/// server→client `PING` every `period_ms`, averaging the round-trip times of the last
/// `buffer_length_s` seconds (`max(1, buffer_length_s / (period_ms / 1000))` samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingRequest {
    pub period_ms: u32,
    pub buffer_length_s: u32,
}

/// What a filter asked for during one call; the chain tags it with the instance and turns it
/// into a [`ChainEvent`](crate::ChainEvent).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Report(Value),
    Send { to: Target, data: Value },
    Ping(Option<PingRequest>),
}

/// The last value a filter instance reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// The filter's name (e.g. `"SPEAKING_TIME"`).
    pub name: String,
    pub data: Value,
}

/// What a filter may do besides pixels: report data, read other filters' reports, send
/// messages, use the server's ping, and read frame timing. See the module docs for why it is
/// plain data.
#[derive(Debug)]
pub struct FilterContext {
    frame_index: u64,
    budget: Duration,
    wall_clock: SystemTime,
    ping_ms: Option<f64>,
    /// Whether a later filter in the chain overwrites U and V (set by the chain per filter).
    chroma_discarded: bool,
    /// Reports of instances in this chain, updated right after each filter call (so a filter
    /// later in the chain sees this frame's value).
    own: HashMap<String, Reported>,
    /// Reports of the same participant's other chain (audio for a video chain and vice versa),
    /// set by the server between frames.
    peer: HashMap<String, Reported>,
    pub(crate) outbox: Vec<Request>,
}

impl Default for FilterContext {
    fn default() -> Self {
        FilterContext::new(Duration::from_millis(33))
    }
}

impl FilterContext {
    /// A context for a chain whose frames are due every `budget`.
    pub fn new(budget: Duration) -> Self {
        FilterContext {
            frame_index: 0,
            budget,
            wall_clock: SystemTime::UNIX_EPOCH,
            ping_ms: None,
            chroma_discarded: false,
            own: HashMap::new(),
            peer: HashMap::new(),
            outbox: Vec::new(),
        }
    }

    // ----- for filters ---------------------------------------------------------------------

    /// Publishes this instance's data (returned by `GET_FILTERS_DATA` and readable by other
    /// filters through [`reported`](Self::reported)). The last report of a frame wins.
    pub fn report(&mut self, data: Value) {
        self.outbox.push(Request::Report(data));
    }

    /// Sends `data` (a whole message, e.g. `{"type": "TEST", "data": {...}}`) to `to` in this
    /// participant's experiment. Delivered by the server after the frame.
    pub fn send(&mut self, to: impl Into<Target>, data: Value) {
        self.outbox.push(Request::Send { to: to.into(), data });
    }

    /// Asks the server to ping this participant (see [`PingRequest`]); calling it again changes
    /// the period. The chain stops the pinging when the instance is removed.
    pub fn request_ping(&mut self, period_ms: u32, buffer_length_s: u32) {
        self.outbox.push(Request::Ping(Some(PingRequest { period_ms, buffer_length_s })));
    }

    /// Withdraws this instance's ping request.
    pub fn stop_ping(&mut self) {
        self.outbox.push(Request::Ping(None));
    }

    /// The participant's current average round-trip time in ms, if the server has measured one.
    pub fn ping_ms(&self) -> Option<f64> {
        self.ping_ms
    }

    /// The last data reported by the filter instance `id`, in this chain or in the same
    /// participant's other chain (this chain first).
    pub fn reported(&self, id: &str) -> Option<&Value> {
        self.own.get(id).or_else(|| self.peer.get(id)).map(|r| &r.data)
    }

    /// The last data reported by any instance of the filter called `name` (this chain first),
    /// for filters that must find a partner whose id was not configured.
    pub fn reported_by(&self, name: &str) -> Option<&Value> {
        fn find<'a>(m: &'a HashMap<String, Reported>, name: &str) -> Option<&'a Value> {
            m.values().find(|r| r.name == name).map(|r| &r.data)
        }
        find(&self.own, name).or_else(|| find(&self.peer, name))
    }

    /// Every report the server passed to this chain from outside it (the participant's other
    /// chain, and group filter results under ids starting with
    /// [`GROUP_REPORT_PREFIX`](crate::group::GROUP_REPORT_PREFIX)), by instance id.
    pub fn peer_reports(&self) -> impl Iterator<Item = (&str, &Reported)> {
        self.peer.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many frames this chain has processed before the current one (0 for the first).
    pub fn frame_index(&self) -> u64 {
        self.frame_index
    }

    /// The time the whole chain has for one frame.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Wall-clock time at the start of this frame (for timestamps in messages; use the frame's
    /// `pts` for anything that affects the picture or sound).
    pub fn wall_clock(&self) -> SystemTime {
        self.wall_clock
    }

    /// Whether this frame's chroma (U and V) will be overwritten by a later filter in the chain
    /// without being read (one that declares [`VideoFilter::overwrites_chroma`], e.g.
    /// EDGE_OUTLINE or MUTE_VIDEO). If so, whatever this filter leaves in U and V is never seen:
    /// a filter that only transforms the picture (ROTATION, MIRROR, BLUR) may skip its chroma
    /// work. Filters between see the chroma as the skipping filter left it, so a filter must not
    /// base anything but its own chroma output on chroma contents. Always `false` for audio.
    ///
    /// [`VideoFilter::overwrites_chroma`]: crate::VideoFilter::overwrites_chroma
    pub fn chroma_discarded(&self) -> bool {
        self.chroma_discarded
    }

    // ----- for the pipeline (the chain and the server) ---------------------------------------

    /// Sets what [`chroma_discarded`](Self::chroma_discarded) answers. The chain sets it before
    /// each filter; a test can set it on a [`Harness`](crate::testing::Harness)'s `ctx`.
    pub fn set_chroma_discarded(&mut self, discarded: bool) {
        self.chroma_discarded = discarded;
    }

    /// Sets the participant's average round-trip time (the server, when it has a new value).
    pub fn set_ping_ms(&mut self, ms: Option<f64>) {
        self.ping_ms = ms;
    }

    /// Stores a report of the same participant's other chain (the server forwards
    /// [`ChainEvent::Report`](crate::ChainEvent::Report)s between a participant's audio and video
    /// chains). `None` forgets it (the instance was removed).
    pub fn set_peer_report(&mut self, id: &str, name: &str, data: Option<Value>) {
        match data {
            None => {
                self.peer.remove(id);
            }
            Some(data) => match self.peer.get_mut(id) {
                Some(r) => {
                    r.data = data;
                    if r.name != name {
                        r.name = name.to_owned();
                    }
                }
                None => {
                    self.peer.insert(id.to_owned(), Reported { name: name.to_owned(), data });
                }
            },
        }
    }

    /// Sets frame timing before a frame.
    pub fn begin_frame(&mut self, frame_index: u64, wall_clock: SystemTime) {
        self.frame_index = frame_index;
        self.wall_clock = wall_clock;
    }

    /// The reports of this chain's instances.
    pub fn own_reports(&self) -> &HashMap<String, Reported> {
        &self.own
    }

    /// Records `data` as instance `id`'s report; returns whether it changed.
    pub(crate) fn store_own(&mut self, id: &str, name: &str, data: &Value) -> bool {
        match self.own.get_mut(id) {
            Some(r) if r.data == *data => false,
            Some(r) => {
                r.data.clone_from(data);
                true
            }
            None => {
                self.own.insert(id.to_owned(), Reported { name: name.to_owned(), data: data.clone() });
                true
            }
        }
    }

    pub(crate) fn forget_own(&mut self, id: &str) {
        self.own.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_own_reports_before_peer_reports_and_by_name() {
        let mut ctx = FilterContext::default();
        ctx.set_peer_report("st", "SPEAKING_TIME", Some(json!({"time": 1.0})));
        assert_eq!(ctx.reported("st"), Some(&json!({"time": 1.0})));
        assert_eq!(ctx.reported_by("SPEAKING_TIME"), Some(&json!({"time": 1.0})));
        assert!(ctx.store_own("st", "SPEAKING_TIME", &json!({"time": 2.0})));
        assert!(!ctx.store_own("st", "SPEAKING_TIME", &json!({"time": 2.0})), "unchanged");
        assert_eq!(ctx.reported("st"), Some(&json!({"time": 2.0})));
        ctx.forget_own("st");
        ctx.set_peer_report("st", "SPEAKING_TIME", None);
        assert_eq!(ctx.reported("st"), None);
        assert_eq!(Target::from("experimenter"), Target::Experimenter);
        assert_eq!(Target::from("p1").as_str(), "p1");
    }
}
