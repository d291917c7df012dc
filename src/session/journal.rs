//! Small session changes as journal lines, so that a chat line or a read time is made durable
//! by appending one line to `<stem>.journal.jsonl` beside the session file instead of
//! rewriting the whole file.
//!
//! The journal's first line names the bytes of the session file it applies to
//! (`{"base":{"len":N,"fnv":"<16 hex digits>"}}`); every further line is one [`Change`] as
//! compact JSON. Replaying means: read the file, check that it is the base, apply the changes
//! in order. A journal whose base is not the file (the file was rewritten with the changes
//! folded in and the process died before the journal was removed) is stale and ignored. A last
//! line without its newline is a write that did not complete (never acknowledged) and is
//! ignored.

use super::model::{ChatMessage, FilterDict, Note, Session};
use super::ParticipantId;
use serde::{Deserialize, Serialize};

/// One small change of a session, applied in memory only after its line is on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// `message` goes into the chat of each participant in `to`; a participant `sender` gets
    /// its `lastMessageSentTime` set to the message's time.
    Chat {
        to: Vec<ParticipantId>,
        message: ChatMessage,
        sender: Option<ParticipantId>,
    },
    /// A participant's `lastMessageReadTime`.
    ReadTime {
        participant: ParticipantId,
        time: i64,
    },
    Note {
        note: Note,
    },
    Mute {
        participant: ParticipantId,
        video: bool,
        audio: bool,
    },
    Ban {
        participant: ParticipantId,
    },
    /// A participant's own filters (`participant: None`: every participant's).
    Filters {
        participant: Option<ParticipantId>,
        audio: Vec<FilterDict>,
        video: Vec<FilterDict>,
    },
    /// Every participant's group filters.
    GroupFilters {
        audio: Vec<FilterDict>,
        video: Vec<FilterDict>,
    },
    /// The session's `creation_time` (0 when its experiment is gone).
    CreationTime {
        time: i64,
    },
}

impl Change {
    /// Applies the change. Participants that are not (or no longer) in the session are skipped:
    /// the caller checks them before writing the change.
    pub fn apply(&self, s: &mut Session) {
        match self {
            Change::Chat { to, message, sender } => {
                for id in to {
                    if let Some(p) = s.participant_mut(id) {
                        p.chat.push(message.clone());
                    }
                }
                if let Some(p) = sender.as_ref().and_then(|id| s.participant_mut(id)) {
                    p.last_message_sent_time = message.time;
                }
            }
            Change::ReadTime { participant, time } => {
                if let Some(p) = s.participant_mut(participant) {
                    p.last_message_read_time = *time;
                }
            }
            Change::Note { note } => s.notes.push(note.clone()),
            Change::Mute { participant, video, audio } => {
                if let Some(p) = s.participant_mut(participant) {
                    p.muted_video = *video;
                    p.muted_audio = *audio;
                }
            }
            Change::Ban { participant } => {
                if let Some(p) = s.participant_mut(participant) {
                    p.banned = true;
                }
            }
            Change::Filters { participant, audio, video } => {
                for p in s.participants.iter_mut().filter(|p| participant.as_ref().is_none_or(|id| *id == p.id)) {
                    p.audio_filters = audio.clone();
                    p.video_filters = video.clone();
                }
            }
            Change::GroupFilters { audio, video } => {
                for p in &mut s.participants {
                    p.audio_group_filters = audio.clone();
                    p.video_group_filters = video.clone();
                }
            }
            Change::CreationTime { time } => s.creation_time = *time,
        }
    }

    /// The journal line: compact JSON and a newline.
    pub fn line(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Identifies the bytes of a session file: length and 64-bit FNV-1a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub len: u64,
    pub fnv: u64,
}

impl Base {
    pub fn of(bytes: &[u8]) -> Base {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Base { len: bytes.len() as u64, fnv: h }
    }

    /// The journal's first line.
    pub fn header(&self) -> Vec<u8> {
        format!("{{\"base\":{{\"len\":{},\"fnv\":\"{:016x}\"}}}}\n", self.len, self.fnv).into_bytes()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    base: HeaderBase,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderBase {
    len: u64,
    fnv: String,
}

/// What a journal holds for a given session file.
#[derive(Debug, Default, PartialEq)]
pub struct Replay {
    /// The changes to apply, in order.
    pub changes: Vec<Change>,
    /// The journal belongs to other bytes of the session file: already folded in, ignore it.
    pub stale: bool,
    /// A last line without newline (a write that never completed) was ignored.
    pub torn_tail: bool,
    /// A complete line that is not a change (the 1-based line number and why): replay stops
    /// before it.
    pub corrupt: Option<(usize, String)>,
}

/// Reads a journal's text against the bytes of the session file it sits beside.
pub fn read(journal: &[u8], file: &[u8]) -> Replay {
    let mut out = Replay::default();
    let complete = journal.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    out.torn_tail = complete < journal.len();
    let mut lines = journal[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let base = Base::of(file);
    let header_ok = lines
        .next()
        .and_then(|l| serde_json::from_slice::<Header>(l).ok())
        .is_some_and(|h| h.base.len == base.len && u64::from_str_radix(&h.base.fnv, 16).is_ok_and(|f| f == base.fnv));
    if !header_ok {
        // No complete header (a torn first write) or another base: nothing to replay.
        out.stale = complete > 0;
        return out;
    }
    for (i, line) in lines.enumerate() {
        match serde_json::from_slice::<Change>(line) {
            Ok(c) => out.changes.push(c),
            Err(e) => {
                out.corrupt = Some((i + 2, e.to_string()));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: i64) -> Change {
        Change::Note { note: Note { time: i, speakers: vec![], content: format!("n{i}") } }
    }

    #[test]
    fn replays_lines_after_a_matching_header_and_ignores_a_torn_tail() {
        let file = b"{\"id\": \"x\"}\n";
        let mut j = Base::of(file).header();
        j.extend(note(1).line());
        j.extend(note(2).line());
        j.extend(&note(3).line()[..10]);
        let r = read(&j, file);
        assert_eq!(r.changes, vec![note(1), note(2)]);
        assert!(r.torn_tail && !r.stale && r.corrupt.is_none());
        let r = read(&j, b"{\"id\": \"y\"}\n");
        assert!(r.stale && r.changes.is_empty(), "another base: stale");
        let mut bad = Base::of(file).header();
        bad.extend(b"{\"op\":\"nope\"}\n");
        bad.extend(note(1).line());
        let r = read(&bad, file);
        assert_eq!(r.corrupt.map(|c| c.0), Some(2));
        assert!(r.changes.is_empty());
    }
}
