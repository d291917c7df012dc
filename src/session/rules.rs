//! The session-level rules of `SAVE_SESSION`, with SynthARium's exact error codes and texts.
//!
//! Structural validity is [`super::parse_session`]'s job; these functions take a parsed
//! [`Session`] and decide whether it may be created or may replace the stored one, and they
//! assign the server-generated ids. The order of the checks is SynthARium's
//! (`SessionManager.create_session`, `SessionData.update`), so a request that breaks several
//! rules gets the same error as from SynthARium.

use super::model::{FilterDict, Participant, Session};
use super::{unique_id, ParticipantId, SessionId};
use crate::protocol::error::{ErrorType, WireError};
use std::collections::HashSet;

/// 409 `EXPERIMENT_ALREADY_STARTED`: the stored session has a `start_time`.
pub const SESSION_ALREADY_STARTED: &str = "Cannot edit session, session has already started.";
/// 409 `UNKNOWN_ID`: an update names a participant id the stored session does not have.
pub const UNKNOWN_PARTICIPANT_ID: &str = "Unknown participant ID found in session data.";
/// 400 `DUPLICATE_ID`: two participants of one session share an id.
pub const DUPLICATE_PARTICIPANT_ID: &str = "Duplicate participant ID found in session data.";

const SESSION_ID_NOT_EMPTY: &str = "Session \"id\" must initially be set to an empty string as default value.";
const PARTICIPANT_ID_NOT_EMPTY: &str = "Participant \"id\" must initially be set to an empty string as default value.";

fn invalid_request(text: &str) -> WireError {
    WireError::new(400, ErrorType::InvalidRequest, text)
}

/// The three times only the server sets, in SynthARium's check order.
fn read_only_times(s: &Session) -> [(&'static str, i64); 3] {
    [("creation_time", s.creation_time), ("start_time", s.start_time), ("end_time", s.end_time)]
}

/// Checks a session sent for **creation** (`SAVE_SESSION` with `id == ""`) and gives it its
/// ids: a fresh session id for which `existing_ids` is false, and a fresh id for every
/// participant (unique within the session).
///
/// Errors (400 `INVALID_REQUEST`, SynthARium's texts and order): a non-empty session id (the
/// caller routes those to [`apply_update`], so this only guards misuse), any participant id
/// not `""`, then `creation_time`, `end_time`, `start_time` not 0. Notes, chat and log are
/// accepted as given. Because every participant id must be empty, duplicates cannot occur.
///
/// `existing_ids` should answer for every id the caller knows: its in-memory sessions and
/// [`super::SessionStore::id_taken`].
pub fn prepare_new_session(mut s: Session, existing_ids: impl Fn(&str) -> bool) -> Result<Session, WireError> {
    if !s.id.is_empty() {
        return Err(invalid_request(SESSION_ID_NOT_EMPTY));
    }
    if s.participants.iter().any(|p| !p.id.is_empty()) {
        return Err(invalid_request(PARTICIPANT_ID_NOT_EMPTY));
    }
    // SynthARium checks creation, end, start in that order (not the field order).
    for (field, value) in [("creation_time", s.creation_time), ("end_time", s.end_time), ("start_time", s.start_time)] {
        if value != 0 {
            return Err(invalid_request(&format!("\"{field}\" must initially be set to the default value 0.")));
        }
    }
    s.id = unique_id(existing_ids).map(SessionId::from).ok_or_else(id_space_exhausted)?;
    assign_missing_participant_ids(&mut s.participants, HashSet::new())?;
    Ok(s)
}

/// Checks a session sent to **update** a stored one (`SAVE_SESSION` with `id != ""`; the caller
/// has found `stored` by that id and answered 404 itself otherwise) and returns what replaces
/// it: `new`, every field taken from the request (participants may be added, removed,
/// reordered), with fresh ids for participants whose id is `""`.
///
/// Errors, in SynthARium's order: the stored session has started (`start_time != 0`) → 409
/// `EXPERIMENT_ALREADY_STARTED`; a read-only field (`id`, `creation_time`, `start_time`,
/// `end_time`) differs → 409 `INVALID_PARAMETER` `Cannot change session "<field>", field is
/// read only.`; a non-empty participant id the stored session does not have → 409
/// `UNKNOWN_ID`; a non-empty participant id twice → 400 `DUPLICATE_ID`.
pub fn apply_update(stored: &Session, mut new: Session) -> Result<Session, WireError> {
    if stored.start_time != 0 {
        return Err(WireError::new(409, ErrorType::ExperimentAlreadyStarted, SESSION_ALREADY_STARTED));
    }
    let id_change = std::iter::once(("id", stored.id != new.id));
    let time_changes =
        read_only_times(stored).into_iter().zip(read_only_times(&new)).map(|((f, a), (_, b))| (f, a != b));
    if let Some((field, _)) = id_change.chain(time_changes).find(|(_, changed)| *changed) {
        return Err(WireError::new(
            409,
            ErrorType::InvalidParameter,
            format!("Cannot change session \"{field}\", field is read only."),
        ));
    }
    // SynthARium checks all ids for "unknown" before it checks for duplicates.
    if new.participants.iter().any(|p| !p.id.is_empty() && stored.participant(p.id.as_str()).is_none()) {
        return Err(WireError::new(409, ErrorType::UnknownId, UNKNOWN_PARTICIPANT_ID));
    }
    let mut seen = HashSet::new();
    if new.participants.iter().any(|p| !p.id.is_empty() && !seen.insert(p.id.as_str())) {
        return Err(WireError::new(400, ErrorType::DuplicateId, DUPLICATE_PARTICIPANT_ID));
    }
    // New ids also avoid the ids of participants this update removes: recordings are named
    // by participant id, and a reused id would mix two people's files.
    let avoid = stored.participants.iter().map(|p| p.id.clone()).collect();
    assign_missing_participant_ids(&mut new.participants, avoid)?;
    Ok(new)
}

/// Gives every participant whose id is `""` a fresh id that no other participant has and that
/// is not in `avoid`. Used for new sessions, updates, and session files that lack ids.
pub(crate) fn assign_missing_participant_ids(
    participants: &mut [Participant],
    mut avoid: HashSet<ParticipantId>,
) -> Result<(), WireError> {
    avoid.extend(participants.iter().filter(|p| !p.id.is_empty()).map(|p| p.id.clone()));
    for p in participants.iter_mut().filter(|p| p.id.is_empty()) {
        let id = unique_id(|id| avoid.contains(id)).ok_or_else(id_space_exhausted)?;
        p.id = ParticipantId::from(id);
        avoid.insert(p.id.clone());
    }
    Ok(())
}

fn id_space_exhausted() -> WireError {
    // Unreachable in practice (40 random bits per attempt); a bug in the caller's predicate.
    tracing::error!("could not generate a unique id");
    WireError::internal()
}

/// Which list of a participant a filter is in; decides which registry validates its name
/// (plain filters vs group filters) and which media it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterKind {
    /// `audio_filters`
    Audio,
    /// `video_filters`
    Video,
    /// `audio_group_filters`
    AudioGroup,
    /// `video_group_filters`
    VideoGroup,
    /// `asymmetric_filters[i].audio_filters` (viewer-side filters on another publisher)
    AsymmetricAudio,
    /// `asymmetric_filters[i].video_filters`
    AsymmetricVideo,
}

impl FilterKind {
    /// Group filters are validated against the group-filter registry, the rest against the
    /// filter registry.
    pub fn is_group(self) -> bool {
        matches!(self, Self::AudioGroup | Self::VideoGroup)
    }

    /// Whether the filter processes audio (else video).
    pub fn is_audio(self) -> bool {
        matches!(self, Self::Audio | Self::AudioGroup | Self::AsymmetricAudio)
    }

    /// Whether the filter is a viewer-side (asymmetric) one.
    pub fn is_asymmetric(self) -> bool {
        matches!(self, Self::AsymmetricAudio | Self::AsymmetricVideo)
    }

    /// The JSON key of the list the filter is in.
    pub fn field(self) -> &'static str {
        match self {
            Self::Audio | Self::AsymmetricAudio => "audio_filters",
            Self::Video | Self::AsymmetricVideo => "video_filters",
            Self::AudioGroup => "audio_group_filters",
            Self::VideoGroup => "video_group_filters",
        }
    }
}

/// One filter of a session, as yielded by [`all_filters`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterRef<'a> {
    pub filter: &'a FilterDict,
    pub kind: FilterKind,
    /// Index of the participant in `participants`.
    pub participant: usize,
    /// For asymmetric filters, the index in that participant's `asymmetric_filters`.
    pub asymmetric: Option<usize>,
    /// Index in its list.
    pub index: usize,
}

impl FilterRef<'_> {
    /// Where the filter is, in the notation of [`super::parse_session`]'s errors, e.g.
    /// `participants[1].asymmetric_filters[0].video_filters[2]`, so that a caller's
    /// "unknown filter" error names the field like a structural error would.
    pub fn path(&self) -> String {
        let mut path = format!("participants[{}]", self.participant);
        if let Some(a) = self.asymmetric {
            path.push_str(&format!(".asymmetric_filters[{a}]"));
        }
        format!("{path}.{}[{}]", self.kind.field(), self.index)
    }
}

/// Every filter of every participant, in participant order; per participant the four own lists
/// (audio, video, audio group, video group) and then the asymmetric entries. The caller checks
/// the names against its filter registries (group kinds against the group-filter registry).
pub fn all_filters(s: &Session) -> impl Iterator<Item = FilterRef<'_>> {
    s.participants.iter().enumerate().flat_map(|(pi, p)| {
        let own = [
            (FilterKind::Audio, &p.audio_filters),
            (FilterKind::Video, &p.video_filters),
            (FilterKind::AudioGroup, &p.audio_group_filters),
            (FilterKind::VideoGroup, &p.video_group_filters),
        ]
        .into_iter()
        .map(|(kind, list)| (kind, None, list));
        let asymmetric = p.asymmetric_filters.iter().enumerate().flat_map(|(ai, a)| {
            [
                (FilterKind::AsymmetricAudio, Some(ai), &a.audio_filters),
                (FilterKind::AsymmetricVideo, Some(ai), &a.video_filters),
            ]
        });
        own.chain(asymmetric).flat_map(move |(kind, asymmetric, list)| {
            list.iter().enumerate().map(move |(index, filter)| FilterRef {
                filter,
                kind,
                participant: pi,
                asymmetric,
                index,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::{parse_session, parse_session_str};
    use super::*;
    use serde_json::json;

    fn new_session() -> Session {
        parse_session(new_session_value()).unwrap()
    }

    fn stored() -> Session {
        let mut s = parse_session_str(MAIN_FORMAT_EXAMPLE).unwrap();
        s.start_time = 0;
        s.end_time = 0;
        s
    }

    fn assert_err(r: Result<Session, WireError>, code: u16, kind: ErrorType, text: &str) {
        let e = r.expect_err("must be rejected");
        assert_eq!((e.code, e.kind, e.description.as_str()), (code, kind, text));
    }

    #[test]
    fn create_generates_ids() {
        let s = prepare_new_session(new_session(), |_| false).unwrap();
        assert_eq!(s.id.as_str().len(), 10);
        let ids: HashSet<_> = s.participants.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| id.as_str().len() == 10 && id.as_str().chars().all(|c| c.is_ascii_hexdigit())));
        // Everything else is kept as given (notes, chat, log).
        let given = new_session();
        assert_eq!(s.notes, given.notes);
        assert_eq!(s.participants[1].chat, given.participants[1].chat);
        assert_eq!(s.log, given.log);
    }

    #[test]
    fn create_avoids_existing_ids() {
        let taken = std::cell::RefCell::new(Vec::new());
        // Refuse the first candidates: the generator must keep trying.
        let s = prepare_new_session(new_session(), |id| {
            let mut t = taken.borrow_mut();
            t.push(id.to_string());
            t.len() < 5
        })
        .unwrap();
        assert_eq!(&s.id, taken.borrow().last().unwrap());
        // An always-taken predicate is a bug: internal error, no endless loop.
        assert_err(
            prepare_new_session(new_session(), |_| true),
            500,
            ErrorType::InternalServerError,
            "Internal server error. See server log for details.",
        );
    }

    #[test]
    fn create_error_texts() {
        let mut s = new_session();
        s.participants[1].id = "abc".into();
        s.creation_time = 1; // the participant check comes first
        assert_err(
            prepare_new_session(s, |_| false),
            400,
            ErrorType::InvalidRequest,
            "Participant \"id\" must initially be set to an empty string as default value.",
        );
        let mut s = new_session();
        s.creation_time = 1;
        s.start_time = 1;
        s.end_time = 1;
        assert_err(
            prepare_new_session(s, |_| false),
            400,
            ErrorType::InvalidRequest,
            "\"creation_time\" must initially be set to the default value 0.",
        );
        let mut s = new_session();
        s.start_time = 1;
        s.end_time = 1;
        assert_err(
            prepare_new_session(s, |_| false),
            400,
            ErrorType::InvalidRequest,
            "\"end_time\" must initially be set to the default value 0.",
        );
        let mut s = new_session();
        s.start_time = 1;
        assert_err(
            prepare_new_session(s, |_| false),
            400,
            ErrorType::InvalidRequest,
            "\"start_time\" must initially be set to the default value 0.",
        );
        let mut s = new_session();
        s.id = "x".into();
        assert_err(
            prepare_new_session(s, |_| false),
            400,
            ErrorType::InvalidRequest,
            "Session \"id\" must initially be set to an empty string as default value.",
        );
    }

    #[test]
    fn update_replaces_everything_and_adds_participants() {
        let old = stored();
        let mut new = old.clone();
        new.title = "Renamed".into();
        new.participants.remove(0); // removing is allowed
        let mut added = new.participants[0].clone();
        added.id = "".into();
        added.participant_name = "Newcomer".into();
        new.participants.push(added.clone());
        new.participants.push(added);
        let s = apply_update(&old, new).unwrap();
        assert_eq!(s.title, "Renamed");
        assert_eq!(s.participants.len(), 4);
        assert_eq!(s.participants[0].id, "25a882669d");
        let (a, b) = (&s.participants[2].id, &s.participants[3].id);
        assert!(a.as_str().len() == 10 && b.as_str().len() == 10 && a != b);
        // New ids avoid every stored id, including the removed participant's.
        assert!(old.participant(a).is_none() && old.participant(b).is_none());
    }

    #[test]
    fn update_may_happen_while_waiting() {
        // An experiment exists (creation_time > 0) but has not started: editing is allowed
        // as long as the client sends the stored creation_time back.
        let mut old = stored();
        old.creation_time = 1_700_000_000_000;
        let new = old.clone();
        assert!(apply_update(&old, new).is_ok());
    }

    #[test]
    fn update_error_texts() {
        let mut started = stored();
        started.start_time = 5;
        assert_err(
            apply_update(&started, started.clone()),
            409,
            ErrorType::ExperimentAlreadyStarted,
            "Cannot edit session, session has already started.",
        );

        for field in ["creation_time", "start_time", "end_time"] {
            let old = stored();
            let mut v = serde_json::to_value(&old).unwrap();
            v[field] = json!(42);
            let new = parse_session(v).unwrap();
            assert_err(
                apply_update(&old, new),
                409,
                ErrorType::InvalidParameter,
                &format!("Cannot change session \"{field}\", field is read only."),
            );
        }
        let old = stored();
        let mut new = old.clone();
        new.id = "other".into();
        assert_err(
            apply_update(&old, new),
            409,
            ErrorType::InvalidParameter,
            "Cannot change session \"id\", field is read only.",
        );

        // Unknown is checked before duplicates, across all participants.
        let old = stored();
        let mut new = old.clone();
        new.participants[1].id = new.participants[0].id.clone();
        new.participants[2].id = "made-up".into();
        assert_err(apply_update(&old, new), 409, ErrorType::UnknownId, "Unknown participant ID found in session data.");

        let mut new = old.clone();
        new.participants[1].id = new.participants[0].id.clone();
        assert_err(
            apply_update(&old, new),
            400,
            ErrorType::DuplicateId,
            "Duplicate participant ID found in session data.",
        );
    }

    #[test]
    fn filters_are_enumerated_with_kind_and_path() {
        let mut v = main_value();
        let f = |name: &str| json!({"name": name, "id": name.to_lowercase(), "channel": "video", "groupFilter": false, "config": {}});
        v["participants"][0]["audio_filters"] = json!([f("A")]);
        v["participants"][0]["video_filters"] = json!([f("V1"), f("V2")]);
        v["participants"][1]["audio_group_filters"] = json!([f("AG")]);
        v["participants"][1]["video_group_filters"] = json!([f("VG")]);
        v["participants"][2]["asymmetric_filters"] = json!([
            {"id": "x", "participant_name": "Max", "audio_filters": [f("AA")], "video_filters": [f("AV")]}
        ]);
        let s = parse_session(v).unwrap();
        let got: Vec<_> = all_filters(&s).map(|r| (r.filter.name.clone(), r.kind, r.path())).collect();
        let want = vec![
            ("A", FilterKind::Audio, "participants[0].audio_filters[0]"),
            ("V1", FilterKind::Video, "participants[0].video_filters[0]"),
            ("V2", FilterKind::Video, "participants[0].video_filters[1]"),
            ("AG", FilterKind::AudioGroup, "participants[1].audio_group_filters[0]"),
            ("VG", FilterKind::VideoGroup, "participants[1].video_group_filters[0]"),
            ("AA", FilterKind::AsymmetricAudio, "participants[2].asymmetric_filters[0].audio_filters[0]"),
            ("AV", FilterKind::AsymmetricVideo, "participants[2].asymmetric_filters[0].video_filters[0]"),
        ];
        let want: Vec<_> = want.into_iter().map(|(n, k, p)| (n.to_string(), k, p.to_string())).collect();
        assert_eq!(got, want);
        assert!(FilterKind::AudioGroup.is_group() && !FilterKind::AsymmetricVideo.is_group());
        assert!(FilterKind::AsymmetricAudio.is_audio() && FilterKind::AsymmetricAudio.is_asymmetric());
    }
}
