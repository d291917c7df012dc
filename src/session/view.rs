//! What a participant may see of a session (contract §2 point 8).
//!
//! SynthARium sends the publisher's *entire* chat log in every participant summary and lets
//! a participant fetch any session whole, so private experimenter↔participant messages leak to
//! co-participants. exphub sends participants only public messages of other people.

use super::model::{CanvasElement, ChatMessage, Participant, Position, Session, Size};
use serde::Serialize;
use serde_json::Value;

/// The chat `target` that addresses every participant. Only this exact value is public
/// (SynthARium's substring test `target in "participants"` is not reproduced).
pub const PUBLIC_TARGET: &str = "participants";

/// Whether everyone in the session may read this message.
pub fn is_public(msg: &ChatMessage) -> bool {
    msg.target == PUBLIC_TARGET
}

/// `ParticipantSummaryDict` (dev shape), sent in the `/offer` response and in connection
/// proposals to participants, with only public chat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantSummary<'a> {
    pub id: &'a str,
    pub participant_name: &'a str,
    pub position: &'a Position,
    pub size: &'a Size,
    pub chat: Vec<&'a ChatMessage>,
    pub view: &'a [CanvasElement],
    pub canvas_id: &'a str,
    pub asymmetric_filters_id: &'a str,
}

impl<'a> ParticipantSummary<'a> {
    pub fn of(p: &'a Participant) -> Self {
        Self {
            id: &p.id,
            participant_name: &p.participant_name,
            position: &p.position,
            size: &p.size,
            chat: p.chat.iter().filter(|m| is_public(m)).collect(),
            view: &p.view,
            canvas_id: &p.canvas_id,
            asymmetric_filters_id: &p.asymmetric_filters_id,
        }
    }
}

/// `{id, participant_name, position, size, chat, view, canvas_id, asymmetric_filters_id}` of
/// `p`, where `chat` holds only its public messages (`target == "participants"`).
pub fn participant_summary(p: &Participant) -> Value {
    // Serialising these types cannot fail (string keys, no custom serialisers); if it ever
    // did, `null` is what SynthARium's type allows for a missing summary.
    serde_json::to_value(ParticipantSummary::of(p)).unwrap_or_else(|e| {
        tracing::error!("cannot serialise participant summary: {e}");
        Value::Null
    })
}

/// The session as participant `pid` may see it: its own chat whole, every other participant's
/// chat reduced to public messages, and no experimenter notes. Everything else is kept (the participant frontend reads
/// names, layout and its own filters from it). An unknown `pid` sees only public chat.
pub fn participant_view(s: &Session, pid: &str) -> Session {
    let mut view = s.clone();
    for p in view.participants.iter_mut().filter(|p| p.id != pid) {
        p.chat.retain(is_public);
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

    #[test]
    fn summary_has_dev_keys_and_only_public_chat() {
        let s = parse_session_str(DEV_FORMAT_EXAMPLE).unwrap();
        let erika = &s.participants[1];
        assert!(erika.chat.iter().any(|m| !is_public(m)), "fixture needs private chat");
        let v = participant_summary(erika);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut want =
            vec!["id", "participant_name", "position", "size", "chat", "view", "canvas_id", "asymmetric_filters_id"];
        let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        let chat = v["chat"].as_array().unwrap();
        assert!(!chat.is_empty());
        assert!(chat.iter().all(|m| m["target"] == PUBLIC_TARGET));
        assert_eq!(v["id"], erika.id.as_str());
        assert_eq!(v["canvas_id"], erika.canvas_id.as_str());
        assert_eq!(v["view"], serde_json::to_value(&erika.view).unwrap());
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
        let v = participant_summary(&p);
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
        let erika = "25a882669d";
        let v = participant_view(&s, erika);
        assert_eq!(v.participant(erika).unwrap().chat, s.participant(erika).unwrap().chat);
        let bob = v.participant("8e39086e83").unwrap();
        assert_eq!(bob.chat.len(), 1);
        assert!(bob.chat.iter().all(is_public));
        // The experimenter's notes are not for participants.
        assert!(!s.notes.is_empty() && v.notes.is_empty());
        assert_eq!(v.participants.len(), 3);
        // A stranger sees only public chat.
        let v = participant_view(&s, "nobody");
        assert!(v.participants.iter().flat_map(|p| &p.chat).all(is_public));
    }
}
