//! What a participant may see of a session (`docs/protocol.md` D8).
//!
//! SynthARium sends the publisher's *entire* chat log in every participant summary and lets
//! a participant fetch any session whole, so private experimenter↔participant messages leak to
//! co-participants. exphub sends participants only public messages of other people.
//!
//! A participant's id is, with the session id, its whole credential (the invite link). So a
//! participant never sees another participant's real id: every other seat is shown under an
//! alias that only this viewer sees ([`Viewer`]), derived with a keyed hash (HMAC-SHA-256 with
//! a key drawn at start, [`Aliases`]) of (session id, viewer id, other id). An alias is stable
//! while the server runs, cannot be turned back into the id without the key, and is not a
//! credential (`/offer` knows only real ids). What a participant sends back naming another
//! seat (a chat `target`) is resolved from the viewer's aliases ([`Viewer::resolve`]).

use std::fmt::Write as _;

use super::model::{AsymmetricFilter, CanvasElement, ChatMessage, Participant, Position, Session, Size};
use serde::Serialize;
use serde_json::Value;

/// The chat `target` that addresses every participant. Only this exact value is public
/// (SynthARium's substring test `target in "participants"` is not reproduced).
pub const PUBLIC_TARGET: &str = "participants";

/// The chat `author`/`target` that names the experimenter(s).
pub const EXPERIMENTER: &str = "experimenter";

/// Whether everyone in the session may read this message.
pub fn is_public(msg: &ChatMessage) -> bool {
    msg.target == PUBLIC_TARGET
}

/// The secret behind every alias. One per server run: aliases stay stable while it runs.
pub struct Aliases {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for Aliases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aliases { key: <redacted> }")
    }
}

impl Aliases {
    /// A fresh random key (two v4 UUIDs: 244 bits from the operating system's generator).
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::with_secret(&secret)
    }

    pub fn with_secret(secret: &[u8]) -> Self {
        Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret) }
    }

    /// How participant `viewer` of `session` sees the session's other seats.
    pub fn viewer<'a, V: AsRef<str> + ?Sized>(&'a self, session: &'a Session, viewer: &'a V) -> Viewer<'a> {
        Viewer { aliases: self, session, id: viewer.as_ref() }
    }
}

/// One participant's window on its session: its own id as it is, everyone else's as aliases.
#[derive(Clone, Copy)]
pub struct Viewer<'a> {
    aliases: &'a Aliases,
    session: &'a Session,
    id: &'a str,
}

impl Viewer<'_> {
    /// The alias of `other` for this viewer: 16 lowercase hex digits (64 bits of the HMAC of
    /// the length-prefixed session id, viewer id and other id). Participant ids are 10 hex
    /// digits (SynthARium's format), so an alias does not name a seat.
    pub fn alias(&self, other: &str) -> String {
        let mut ctx = ring::hmac::Context::with_key(&self.aliases.key);
        for part in [self.session.id.as_str(), self.id, other] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let tag = ctx.sign();
        tag.as_ref()[..8].iter().fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// How a chat `author`/`target` or a participant id is shown: the viewer's own id and the
    /// keywords as they are, anything else (another participant, present or not) as an alias.
    pub fn show(&self, id: &str) -> String {
        if id == self.id || id == PUBLIC_TARGET || id == EXPERIMENTER {
            id.to_owned()
        } else {
            self.alias(id)
        }
    }

    /// A layout or filter id (`canvas_id`, `view[].id`, ...): these are the designer's own ids
    /// and shown as they are, unless one happens to be another seat's participant id.
    fn show_layout_id(&self, id: &str) -> String {
        if id != self.id && self.session.participant(id).is_some() {
            self.alias(id)
        } else {
            id.to_owned()
        }
    }

    /// The real id of the other participant this viewer sees as `shown`, if any. Real ids of
    /// other seats are not accepted: they would let a participant test guesses.
    pub fn resolve(&self, shown: &str) -> Option<&str> {
        self.session
            .participants
            .iter()
            .map(|p| p.id.as_str())
            .filter(|id| *id != self.id)
            .find(|id| self.alias(id) == shown)
    }

    /// A chat message as this viewer sees it.
    pub fn chat(&self, m: &ChatMessage) -> ChatMessage {
        ChatMessage { author: self.show(&m.author), target: self.show(&m.target), ..m.clone() }
    }

    fn canvas(&self, v: &[CanvasElement]) -> Vec<CanvasElement> {
        v.iter().map(|c| CanvasElement { id: self.show_layout_id(&c.id), ..c.clone() }).collect()
    }
}

/// `ParticipantSummaryDict` (dev shape), sent in the `/offer` response and in connection
/// proposals to participants, with only public chat, as one viewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantSummary<'a> {
    pub id: String,
    pub participant_name: &'a str,
    pub position: &'a Position,
    pub size: &'a Size,
    pub chat: Vec<ChatMessage>,
    pub view: Vec<CanvasElement>,
    pub canvas_id: String,
    pub asymmetric_filters_id: String,
}

impl<'a> ParticipantSummary<'a> {
    pub fn of(p: &'a Participant, viewer: &Viewer) -> Self {
        Self {
            id: viewer.show(p.id.as_str()),
            participant_name: &p.participant_name,
            position: &p.position,
            size: &p.size,
            chat: p.chat.iter().filter(|m| is_public(m)).map(|m| viewer.chat(m)).collect(),
            view: viewer.canvas(&p.view),
            canvas_id: viewer.show_layout_id(&p.canvas_id),
            asymmetric_filters_id: viewer.show_layout_id(&p.asymmetric_filters_id),
        }
    }
}

/// `{id, participant_name, position, size, chat, view, canvas_id, asymmetric_filters_id}` of
/// `p` as `viewer` sees it, where `chat` holds only its public messages
/// (`target == "participants"`).
pub fn participant_summary(p: &Participant, viewer: &Viewer) -> Value {
    // Serialising these types cannot fail (string keys, no custom serialisers); if it ever
    // did, `null` is what SynthARium's type allows for a missing summary.
    serde_json::to_value(ParticipantSummary::of(p, viewer)).unwrap_or_else(|e| {
        tracing::error!("cannot serialise participant summary: {e}");
        Value::Null
    })
}

/// The session as `viewer` may see it: its own chat whole, every other participant's chat
/// reduced to public messages, no experimenter notes, and every other seat's id (in the
/// participant list, in chat authors and targets) as the viewer's alias. Everything else is
/// kept (the participant frontend reads names, layout and its own filters from it). An
/// unknown viewer sees only public chat.
pub fn participant_view(viewer: &Viewer) -> Session {
    let mut view = viewer.session.clone();
    for p in view.participants.iter_mut() {
        if p.id != viewer.id {
            p.chat.retain(is_public);
        }
        p.id = viewer.show(p.id.as_str()).into();
        p.chat = p.chat.iter().map(|m| viewer.chat(m)).collect();
        p.view = viewer.canvas(&p.view);
        p.canvas_id = viewer.show_layout_id(&p.canvas_id);
        p.asymmetric_filters_id = viewer.show_layout_id(&p.asymmetric_filters_id);
        p.asymmetric_filters = p
            .asymmetric_filters
            .iter()
            .map(|a| AsymmetricFilter { id: viewer.show_layout_id(&a.id), ..a.clone() })
            .collect();
    }
    // Notes are the experimenter's own observations (of the participants!).
    view.notes.clear();
    view
}

/// A copy of `s` in which every participant's chat holds only its last `keep` messages, and
/// for each participant (in order) how many messages its whole chat has. Copies only what it
/// keeps, so a long history costs nothing here.
pub fn recent_chat(s: &Session, keep: usize) -> (Session, Vec<usize>) {
    let totals = s.participants.iter().map(|p| p.chat.len()).collect();
    let Session {
        id,
        title,
        description,
        date,
        time_limit,
        record,
        participants,
        creation_time,
        start_time,
        end_time,
        notes,
        log,
        on_node_failure,
    } = s;
    let participants = participants.iter().map(|p| with_recent_chat(p, keep)).collect();
    let copy = Session {
        id: id.clone(),
        title: title.clone(),
        description: description.clone(),
        date: *date,
        time_limit: *time_limit,
        record: *record,
        participants,
        creation_time: *creation_time,
        start_time: *start_time,
        end_time: *end_time,
        notes: notes.clone(),
        log: log.clone(),
        on_node_failure: *on_node_failure,
    };
    (copy, totals)
}

/// `p` with only the last `keep` messages of its chat. Every field is named, so a new field
/// cannot be forgotten here.
fn with_recent_chat(p: &Participant, keep: usize) -> Participant {
    let Participant {
        id,
        participant_name,
        banned,
        muted_video,
        muted_audio,
        position,
        size,
        chat,
        audio_filters,
        video_filters,
        audio_group_filters,
        video_group_filters,
        local_stream,
        chat_filters,
        last_message_sent_time,
        last_message_read_time,
        view,
        canvas_id,
        asymmetric_filters,
        asymmetric_filters_id,
    } = p;
    Participant {
        id: id.clone(),
        participant_name: participant_name.clone(),
        banned: *banned,
        muted_video: *muted_video,
        muted_audio: *muted_audio,
        position: position.clone(),
        size: size.clone(),
        chat: chat[chat.len().saturating_sub(keep)..].to_vec(),
        audio_filters: audio_filters.clone(),
        video_filters: video_filters.clone(),
        audio_group_filters: audio_group_filters.clone(),
        video_group_filters: video_group_filters.clone(),
        local_stream: *local_stream,
        chat_filters: chat_filters.clone(),
        last_message_sent_time: *last_message_sent_time,
        last_message_read_time: *last_message_read_time,
        view: view.clone(),
        canvas_id: canvas_id.clone(),
        asymmetric_filters: asymmetric_filters.clone(),
        asymmetric_filters_id: asymmetric_filters_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_session_str;
    use super::super::testdata::*;
    use super::*;

    fn aliases() -> Aliases {
        Aliases::with_secret(b"test secret")
    }

    #[test]
    fn summary_has_dev_keys_and_only_public_chat() {
        let s = parse_session_str(DEV_FORMAT_EXAMPLE).unwrap();
        let a = aliases();
        let erika = &s.participants[1];
        assert!(erika.chat.iter().any(|m| !is_public(m)), "fixture needs private chat");
        // Erika's own summary (the /offer answer) and Max's view of her (a proposal).
        for viewer in [erika.id.as_str(), s.participants[0].id.as_str()] {
            let v = participant_summary(erika, &a.viewer(&s, viewer));
            let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
            let mut want = vec![
                "id",
                "participant_name",
                "position",
                "size",
                "chat",
                "view",
                "canvas_id",
                "asymmetric_filters_id",
            ];
            let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            keys.sort_unstable();
            want.sort_unstable();
            assert_eq!(keys, want);
            let chat = v["chat"].as_array().unwrap();
            assert!(!chat.is_empty());
            assert!(chat.iter().all(|m| m["target"] == PUBLIC_TARGET));
            assert_eq!(v["canvas_id"], erika.canvas_id.as_str());
            assert_eq!(v["view"], serde_json::to_value(&erika.view).unwrap());
        }
        assert_eq!(participant_summary(erika, &a.viewer(&s, &erika.id))["id"], erika.id.as_str());
    }

    #[test]
    fn only_the_exact_public_target_is_public() {
        let s = parse_session_str(MAIN_FORMAT_EXAMPLE).unwrap();
        let mut p = s.participants[0].clone();
        let mut m = p.chat[0].clone();
        for target in ["", "part", "Participants"] {
            m.target = target.into();
            p.chat.push(m.clone());
        }
        let v = participant_summary(&p, &aliases().viewer(&s, &p.id));
        assert_eq!(v["chat"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn recent_chat_keeps_the_last_messages_and_counts_all() {
        let s = parse_session_str(DEV_FORMAT_EXAMPLE).unwrap();
        let totals: Vec<usize> = s.participants.iter().map(|p| p.chat.len()).collect();
        let (same, t) = recent_chat(&s, usize::MAX);
        assert_eq!(same, s);
        assert_eq!(t, totals);
        let (one, t) = recent_chat(&s, 1);
        assert_eq!(t, totals);
        for (p, q) in one.participants.iter().zip(&s.participants) {
            assert_eq!(p.chat.as_slice(), &q.chat[q.chat.len().saturating_sub(1)..]);
            assert_eq!(Participant { chat: q.chat.clone(), ..p.clone() }, *q);
        }
        let (none, _) = recent_chat(&s, 0);
        assert!(none.participants.iter().all(|p| p.chat.is_empty()));
        assert_eq!(none.notes, s.notes);
    }

    #[test]
    fn view_keeps_own_chat_and_drops_others_private_chat() {
        let s = parse_session_str(MAIN_FORMAT_EXAMPLE).unwrap();
        let a = aliases();
        let erika = "25a882669d";
        let viewer = a.viewer(&s, erika);
        let v = participant_view(&viewer);
        assert_eq!(v.participant(erika).unwrap().chat, s.participant(erika).unwrap().chat);
        let bob = v.participant(&viewer.alias("8e39086e83")).unwrap();
        assert_eq!(bob.chat.len(), 1);
        assert!(bob.chat.iter().all(is_public));
        // The experimenter's notes are not for participants.
        assert!(!s.notes.is_empty() && v.notes.is_empty());
        assert_eq!(v.participants.len(), 3);
        // A stranger sees only public chat.
        let v = participant_view(&a.viewer(&s, "nobody"));
        assert!(v.participants.iter().flat_map(|p| &p.chat).all(is_public));
    }

    /// Every string of `v`, recursively (keys too).
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                strings(x, out)
            }),
            _ => {}
        }
    }

    #[test]
    fn a_participant_is_never_shown_another_seats_id() {
        let mut s = parse_session_str(DEV_FORMAT_EXAMPLE).unwrap();
        // A hand-written layout that reuses participant ids as canvas ids must not leak either.
        let ids: Vec<String> = s.participants.iter().map(|p| p.id.to_string()).collect();
        for p in &mut s.participants {
            p.canvas_id = p.id.to_string();
            for (c, id) in p.view.iter_mut().zip(&ids) {
                c.id = id.clone();
            }
        }
        let a = aliases();
        for me in &ids {
            let viewer = a.viewer(&s, me);
            let mut shown = vec![];
            strings(&serde_json::to_value(participant_view(&viewer)).unwrap(), &mut shown);
            for p in &s.participants {
                strings(&participant_summary(p, &viewer), &mut shown);
            }
            for other in ids.iter().filter(|o| *o != me) {
                assert!(!shown.contains(other), "{me} is shown {other}");
            }
            assert!(shown.contains(me), "{me} sees its own id");
        }
    }

    #[test]
    fn aliases_are_consistent_per_viewer_and_resolve_back() {
        let s = parse_session_str(DEV_FORMAT_EXAMPLE).unwrap();
        let a = aliases();
        let (max, erika) = (s.participants[0].id.as_str(), s.participants[1].id.as_str());
        let (vm, ve) = (a.viewer(&s, max), a.viewer(&s, erika));
        let view = participant_view(&vm);
        // The layout (canvas ids) and Max's view of Erika agree: the summary in a proposal, the
        // session's participant list and the chat authors use one alias.
        let erika_alias = vm.alias(erika);
        assert_eq!(erika_alias.len(), 16);
        assert!(view.participant(&erika_alias).is_some());
        assert_eq!(participant_summary(&s.participants[1], &vm)["id"], erika_alias.as_str());
        assert_eq!(vm.resolve(&erika_alias), Some(erika));
        // Public chat by Max, as Erika sees it: authored by Max's alias for Erika.
        let max_alias = ve.alias(max);
        let by_max = participant_view(&ve).participants[1]
            .chat
            .iter()
            .find(|m| m.author != "experimenter" && m.author != erika)
            .cloned();
        assert_eq!(by_max.map(|m| m.author), Some(max_alias.clone()));
        // Aliases differ per viewer, per key, and are stable.
        assert_ne!(ve.alias(s.participants[2].id.as_str()), vm.alias(s.participants[2].id.as_str()));
        assert_ne!(Aliases::with_secret(b"other").viewer(&s, max).alias(erika), erika_alias);
        assert_eq!(a.viewer(&s, max).alias(erika), erika_alias);
        // Only aliases resolve: not a real id, not the viewer's own alias, not another viewer's.
        assert_eq!(vm.resolve(erika), None);
        assert_eq!(vm.resolve(&vm.alias(max)), None);
        assert_eq!(vm.resolve(&max_alias), None);
        assert_eq!(ve.resolve(&max_alias), Some(max));
    }
}
