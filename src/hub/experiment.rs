//! A live experiment: its state machine and who is in it, and the rules that follow from them as
//! plain functions (lifecycle transitions, seats and rejoin, who sees whom, who may join, who
//! receives a chat). No I/O here: the hub asks, then does what the answer says. The session data
//! itself (chat, notes, filters, times) lives in the hub's session map and on disk.

use std::collections::{HashMap, HashSet};

use super::{errors, ConnId};
use crate::peer::Forwarder;
use crate::protocol::WireError;
use crate::session::{ParticipantId, Session};

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
    pub participants: HashMap<ParticipantId, ConnId>,
    /// Experimenters in the experiment, in join order.
    pub experimenters: Vec<ConnId>,
    pub media: HashMap<ParticipantId, SeatMedia>,
    /// Time zero of the experiment clock: START, or the creation before it.
    pub clock_zero: std::time::Instant,
    /// Group filters: instances, the aggregator thread, recent results.
    pub group: super::group::GroupState,
}

/// A lifecycle transition the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleError {
    /// START when the experiment is not WAITING.
    NotWaiting,
    /// STOP when the experiment has already ENDED.
    AlreadyEnded,
}

impl From<LifecycleError> for WireError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotWaiting => errors::not_waiting(),
            LifecycleError::AlreadyEnded => errors::already_stopped(),
        }
    }
}

/// Who sends a chat message, for [`Experiment::chat_recipients`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatSender {
    Experimenter,
    /// A participant, by its current connection (it does not receive its own broadcast).
    Participant(ConnId),
}

impl Experiment {
    /// Where the members' group-filter values go and the clock zero they count from: `None`
    /// while the experiment has no group filter aggregator.
    pub fn group_target(&self) -> Option<(crate::media::group::GroupSink, std::time::Instant)> {
        self.group.worker.as_ref().map(|w| (w.sink(), self.clock_zero))
    }

    pub fn new() -> Self {
        Self {
            state: ExperimentState::Waiting,
            participants: HashMap::new(),
            experimenters: vec![],
            media: HashMap::new(),
            clock_zero: std::time::Instant::now(),
            group: Default::default(),
        }
    }

    /// Whether START may run: only a WAITING experiment starts.
    pub fn check_start(&self) -> Result<(), LifecycleError> {
        match self.state {
            ExperimentState::Waiting => Ok(()),
            _ => Err(LifecycleError::NotWaiting),
        }
    }

    /// WAITING → RUNNING.
    pub fn start(&mut self) -> Result<(), LifecycleError> {
        self.check_start()?;
        self.state = ExperimentState::Running;
        Ok(())
    }

    /// Whether STOP may run: from WAITING or RUNNING, not twice.
    pub fn check_stop(&self) -> Result<(), LifecycleError> {
        match self.state {
            ExperimentState::Ended => Err(LifecycleError::AlreadyEnded),
            _ => Ok(()),
        }
    }

    /// WAITING or RUNNING → ENDED.
    pub fn stop(&mut self) -> Result<(), LifecycleError> {
        self.check_stop()?;
        self.state = ExperimentState::Ended;
        Ok(())
    }

    /// Seats a participant's connection. A rejoin takes the seat over: the connection it
    /// replaced is returned (for the caller to close), so no participant is seated twice.
    pub fn seat(&mut self, participant_id: &ParticipantId, conn: ConnId) -> Option<ConnId> {
        self.participants.insert(participant_id.clone(), conn).filter(|old| *old != conn)
    }

    /// Frees a participant's seat if `conn` still holds it (a replaced connection's late close
    /// leaves the new one seated). Returns whether the seat was freed.
    pub fn unseat(&mut self, participant_id: &ParticipantId, conn: ConnId) -> bool {
        if self.participants.get(participant_id) == Some(&conn) {
            self.participants.remove(participant_id);
            true
        } else {
            false
        }
    }

    /// Who should see whom now, by SynthARium's rules, as (publisher seat, subscriber
    /// connection): experimenters in the experiment see every seated participant; participants
    /// see each other once the experiment has started. A subscriber needs an open data channel
    /// (`open`: proposals go over it). A publisher only needs its seat taken: while a rejoining
    /// participant's new connection comes up, its subscribers keep their sub-connections and the
    /// forwarders switch source underneath.
    pub fn desired_subs(&self, open: impl Fn(ConnId) -> bool) -> HashSet<(ParticipantId, ConnId)> {
        let mut want = HashSet::new();
        for e in self.experimenters.iter().filter(|e| open(**e)) {
            for pid in self.participants.keys() {
                want.insert((pid.clone(), *e));
            }
        }
        if self.state != ExperimentState::Waiting {
            for (pid, pub_conn) in &self.participants {
                for sub_conn in self.participants.values().filter(|c| open(**c)) {
                    if sub_conn != pub_conn {
                        want.insert((pid.clone(), *sub_conn));
                    }
                }
            }
        }
        want
    }

    /// The live connections a CHAT goes to, by its sender and its (resolved, real-id) target:
    /// `"participants"` is every seat (but the sending participant's own), `"experimenter"`
    /// (from a participant) every experimenter in the experiment, anything else exactly that
    /// seat. `None`: the target seat is not connected now.
    pub fn chat_recipients(&self, from: ChatSender, target: &str) -> Option<Vec<ConnId>> {
        match (from, target) {
            (ChatSender::Experimenter, "participants") => Some(self.participants.values().copied().collect()),
            (ChatSender::Participant(me), "participants") => {
                Some(self.participants.values().copied().filter(|c| *c != me).collect())
            }
            (ChatSender::Participant(_), "experimenter") => Some(self.experimenters.clone()),
            (_, seat) => self.participants.get(seat).map(|c| vec![*c]),
        }
    }
}

/// Whose chats keep a message (the participants' ids; a participant's chat holds its
/// conversation with the experimenter and, for the parts it took part in, with other seats):
/// `"participants"` every seat; from the experimenter, exactly the target seat; from a
/// participant, its own for `"experimenter"`, the target's and its own for another seat.
/// `None`: no such seat (or a participant addressing itself).
pub fn chat_keepers(session: &Session, from: Option<&ParticipantId>, target: &str) -> Option<Vec<ParticipantId>> {
    match (from, target) {
        (_, "participants") => Some(session.participants.iter().map(|p| p.id.clone()).collect()),
        (Some(me), "experimenter") => Some(vec![me.clone()]),
        (Some(me), seat) if seat == me => None,
        (me, seat) => {
            let seat = &session.participant(seat)?.id;
            Some(std::iter::once(seat).chain(me).cloned().collect())
        }
    }
}

/// SynthARium's participant checks (`docs/protocol.md`, POST /offer), with exphub's changes: a
/// rejoin takes over the seat instead of failing, and an ended experiment refuses joins.
/// `session`/`exp`: the session and its live experiment, if there are.
pub fn check_participant_offer(
    session: Option<&Session>,
    exp: Option<&Experiment>,
    participant_id: &ParticipantId,
) -> Result<(), WireError> {
    let exp = exp.ok_or_else(errors::session_not_found)?;
    let session = session.ok_or_else(errors::session_not_found)?;
    let p = session.participant(participant_id).ok_or_else(errors::participant_not_in_session)?;
    if p.banned {
        return Err(errors::banned());
    }
    if exp.state == ExperimentState::Ended {
        return Err(errors::experiment_ended());
    }
    Ok(())
}

impl Default for Experiment {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorType;

    const EXPERIMENTER: ConnId = ConnId(100);

    fn open_all(_: ConnId) -> bool {
        true
    }

    /// An experiment with one experimenter in it and `seats` seated on connections 1, 2, ….
    fn experiment(seats: &[&str]) -> Experiment {
        let mut e = Experiment::new();
        e.experimenters.push(EXPERIMENTER);
        for (i, p) in seats.iter().enumerate() {
            assert_eq!(e.seat(&(*p).into(), ConnId(i as u64 + 1)), None);
        }
        e
    }

    fn pairs(list: &[(&str, ConnId)]) -> HashSet<(ParticipantId, ConnId)> {
        list.iter().map(|(p, c)| ((*p).into(), *c)).collect()
    }

    #[test]
    fn the_lifecycle_runs_waiting_running_ended_and_never_back() {
        let mut e = Experiment::new();
        assert_eq!(e.check_stop(), Ok(()));
        assert_eq!(e.start(), Ok(()));
        assert_eq!(e.state, ExperimentState::Running);
        assert_eq!(e.start(), Err(LifecycleError::NotWaiting));
        assert_eq!(e.stop(), Ok(()));
        assert_eq!(e.state, ExperimentState::Ended);
        assert_eq!(e.start(), Err(LifecycleError::NotWaiting));
        assert_eq!(e.stop(), Err(LifecycleError::AlreadyEnded));
        assert_eq!(e.state, ExperimentState::Ended);

        let mut waiting = Experiment::new();
        assert_eq!(waiting.stop(), Ok(()), "WAITING → ENDED without a start");
        assert_eq!(waiting.start(), Err(LifecycleError::NotWaiting));
    }

    #[test]
    fn lifecycle_errors_keep_synthariums_texts() {
        let not_waiting = WireError::from(LifecycleError::NotWaiting);
        assert_eq!((not_waiting.code, not_waiting.kind), (409, ErrorType::InvalidRequest));
        assert_eq!(not_waiting.description, "Experiment cant be started, state is not WAITING.");
        let ended = WireError::from(LifecycleError::AlreadyEnded);
        assert_eq!((ended.code, ended.kind), (409, ErrorType::InvalidRequest));
        assert_eq!(ended.description, "Experiment is already stopped.");
    }

    #[test]
    fn a_stale_connection_does_not_free_the_seat() {
        let mut e = experiment(&["a"]);
        assert_eq!(e.seat(&"a".into(), ConnId(7)), Some(ConnId(1)));
        assert!(!e.unseat(&"a".into(), ConnId(1)), "the replaced connection's close");
        assert_eq!(e.participants.get("a"), Some(&ConnId(7)));
        assert!(e.unseat(&"a".into(), ConnId(7)));
        assert!(e.participants.is_empty());
        assert!(!e.unseat(&"a".into(), ConnId(7)));
        assert_eq!(e.seat(&"a".into(), ConnId(8)), None, "a seat freed is taken afresh");
        assert_eq!(e.seat(&"a".into(), ConnId(8)), None, "the same connection again replaces nothing");
    }

    #[test]
    fn experimenters_see_every_seat_and_participants_each_other_only_once_started() {
        let mut e = experiment(&["a", "b"]);
        assert_eq!(e.desired_subs(open_all), pairs(&[("a", EXPERIMENTER), ("b", EXPERIMENTER)]));
        e.start().unwrap();
        let running = pairs(&[("a", EXPERIMENTER), ("b", EXPERIMENTER), ("a", ConnId(2)), ("b", ConnId(1))]);
        assert_eq!(e.desired_subs(open_all), running);
        e.stop().unwrap();
        assert_eq!(e.desired_subs(open_all), running, "an ENDED experiment keeps its streams");
    }

    #[test]
    fn a_subscriber_needs_an_open_channel_but_a_publisher_only_its_seat() {
        let mut e = experiment(&["a", "b"]);
        e.start().unwrap();
        // b's connection is still coming up: b receives nothing, but is still published.
        let want = e.desired_subs(|c| c != ConnId(2));
        assert_eq!(want, pairs(&[("a", EXPERIMENTER), ("b", EXPERIMENTER), ("b", ConnId(1))]));
        // An experimenter whose channel is not open receives nothing.
        let want = e.desired_subs(|c| c != EXPERIMENTER);
        assert_eq!(want, pairs(&[("a", ConnId(2)), ("b", ConnId(1))]));
    }

    /// SynthARium #152: a participant who connects again while its earlier connection still
    /// exists was seen twice. Here the new connection takes the same seat, the old one is handed
    /// back to be closed, and every viewer sees the participant once.
    #[test]
    fn regression_152_a_rejoining_participant_gets_the_same_seat_and_is_seen_once() {
        let mut e = experiment(&["a", "b"]);
        e.start().unwrap();
        assert_eq!(e.seat(&"a".into(), ConnId(3)), Some(ConnId(1)), "the replaced connection, for the caller to close");
        assert!(!e.unseat(&"a".into(), ConnId(1)), "its late close does not free the new seat");
        assert_eq!(e.participants.len(), 2);
        let want = e.desired_subs(open_all);
        assert_eq!(want, pairs(&[("a", EXPERIMENTER), ("b", EXPERIMENTER), ("a", ConnId(2)), ("b", ConnId(3))]));
        assert_eq!(want.iter().filter(|(p, c)| p == "a" && *c == EXPERIMENTER).count(), 1);
        assert!(!want.iter().any(|(_, c)| *c == ConnId(1)), "nothing goes to the old connection");
    }

    /// SynthARium #241: concurrent joins and START/STOP corrupted the shared experiment. Here
    /// every input is one step on one owner's state, so any interleaving leaves a consistent
    /// experiment: one state, one connection per seat, the START that lost refused.
    #[test]
    fn regression_241_interleaved_joins_and_starts_leave_one_consistent_experiment() {
        let mut e = experiment(&[]);
        assert_eq!(e.seat(&"a".into(), ConnId(1)), None);
        assert_eq!(e.start(), Ok(()));
        assert_eq!(e.seat(&"b".into(), ConnId(2)), None);
        assert_eq!(e.start(), Err(LifecycleError::NotWaiting), "the second START loses");
        assert_eq!(e.seat(&"a".into(), ConnId(3)), Some(ConnId(1)));
        assert_eq!(e.seat(&"b".into(), ConnId(4)), Some(ConnId(2)));
        assert!(!e.unseat(&"b".into(), ConnId(2)));
        assert_eq!(e.state, ExperimentState::Running);
        assert_eq!(e.participants, HashMap::from([("a".into(), ConnId(3)), ("b".into(), ConnId(4))]));
        assert_eq!(e.stop(), Ok(()));
        assert_eq!(e.stop(), Err(LifecycleError::AlreadyEnded), "the second STOP loses");
        assert_eq!(e.start(), Err(LifecycleError::NotWaiting));
        assert_eq!(
            e.desired_subs(open_all),
            pairs(&[("a", EXPERIMENTER), ("b", EXPERIMENTER), ("a", ConnId(4)), ("b", ConnId(3))])
        );
    }

    /// SynthARium #297: a participant who (re)connects after START stayed in the lobby without
    /// its streams. Here a participant who dropped and rejoins a running experiment is
    /// subscribed again at once, both ways.
    #[test]
    fn regression_297_rejoin_after_a_drop_restores_subscriptions() {
        let mut e = experiment(&["a", "b"]);
        e.start().unwrap();
        assert!(e.unseat(&"a".into(), ConnId(1)), "a drops");
        assert_eq!(e.desired_subs(open_all), pairs(&[("b", EXPERIMENTER)]));
        assert_eq!(e.seat(&"a".into(), ConnId(5)), None);
        assert_eq!(
            e.desired_subs(open_all),
            pairs(&[("a", EXPERIMENTER), ("b", EXPERIMENTER), ("a", ConnId(2)), ("b", ConnId(5))])
        );
    }

    #[test]
    fn chats_are_kept_by_exactly_the_seats_they_concern() {
        let s = crate::session::parse_session_str(crate::session::testdata::DEV_FORMAT_EXAMPLE).unwrap();
        let ids: Vec<ParticipantId> = s.participants.iter().map(|p| p.id.clone()).collect();
        let (a, b) = (&ids[0], &ids[1]);
        assert_eq!(chat_keepers(&s, None, "participants"), Some(ids.clone()));
        assert_eq!(chat_keepers(&s, Some(a), "participants"), Some(ids.clone()));
        assert_eq!(chat_keepers(&s, None, b.as_str()), Some(vec![b.clone()]), "the experimenter's private chat");
        assert_eq!(chat_keepers(&s, Some(a), "experimenter"), Some(vec![a.clone()]));
        assert_eq!(chat_keepers(&s, Some(a), b.as_str()), Some(vec![b.clone(), a.clone()]), "both sides keep it");
        assert_eq!(chat_keepers(&s, Some(a), a.as_str()), None, "not to itself");
        assert_eq!(chat_keepers(&s, None, "gone"), None);
        assert_eq!(chat_keepers(&s, Some(a), "gone"), None);
        assert_eq!(chat_keepers(&s, None, "experimenter"), None, "the experimenter is no seat");
    }

    #[test]
    fn chats_go_to_exactly_their_target() {
        let e = experiment(&["a", "b", "c"]);
        let sorted = |v: Option<Vec<ConnId>>| {
            v.map(|mut v| {
                v.sort();
                v
            })
        };
        let from_a = ChatSender::Participant(ConnId(1));
        assert_eq!(
            sorted(e.chat_recipients(ChatSender::Experimenter, "participants")),
            Some(vec![ConnId(1), ConnId(2), ConnId(3)])
        );
        assert_eq!(
            sorted(e.chat_recipients(from_a, "participants")),
            Some(vec![ConnId(2), ConnId(3)]),
            "not back to the sender"
        );
        assert_eq!(e.chat_recipients(from_a, "experimenter"), Some(vec![EXPERIMENTER]));
        assert_eq!(e.chat_recipients(from_a, "b"), Some(vec![ConnId(2)]));
        assert_eq!(e.chat_recipients(ChatSender::Experimenter, "c"), Some(vec![ConnId(3)]));
        assert_eq!(e.chat_recipients(ChatSender::Experimenter, "gone"), None, "not connected now");
        assert_eq!(e.chat_recipients(from_a, "gone"), None);
        assert_eq!(e.chat_recipients(ChatSender::Experimenter, "experimenter"), None);
    }

    #[test]
    fn participant_offers_are_checked_against_session_and_experiment() {
        let mut s = crate::session::parse_session_str(crate::session::testdata::DEV_FORMAT_EXAMPLE).unwrap();
        let pid = s.participants[0].id.clone();
        let mut e = Experiment::new();
        let err = |r: Result<(), WireError>| r.map_err(|e| (e.code, e.kind, e.description));
        assert_eq!(check_participant_offer(Some(&s), Some(&e), &pid), Ok(()));
        let no_session = Err((400, ErrorType::UnknownSession, "Session not found.".to_owned()));
        assert_eq!(err(check_participant_offer(Some(&s), None, &pid)), no_session);
        assert_eq!(err(check_participant_offer(None, Some(&e), &pid)), no_session);
        assert_eq!(
            err(check_participant_offer(Some(&s), Some(&e), &"nobody".into())),
            Err((400, ErrorType::UnknownParticipant, "Participant not found in the given session.".to_owned()))
        );
        e.start().unwrap();
        assert_eq!(check_participant_offer(Some(&s), Some(&e), &pid), Ok(()), "joining a running experiment");
        e.stop().unwrap();
        assert_eq!(
            err(check_participant_offer(Some(&s), Some(&e), &pid)),
            Err((409, ErrorType::InvalidRequest, "The experiment has ended.".to_owned()))
        );
        s.participants[0].banned = true;
        assert_eq!(
            err(check_participant_offer(Some(&s), Some(&e), &pid)),
            Err((
                400,
                ErrorType::BannedParticipant,
                "You have been banned and can no longer join the experiment.".to_owned()
            ))
        );
    }
}
