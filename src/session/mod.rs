//! Sessions: the experiment designs and records that experimenters edit and experiments
//! write into, their validation, the views other roles may see, and their files on disk.
//!
//! This module owns everything that is true of a session *as data*: the exact JSON shape
//! ([`model`]), structural parsing with error texts that name the offending field
//! ([`parse_session`]), the semantic rules of `SAVE_SESSION` with SynthARium's exact error
//! codes and texts ([`prepare_new_session`], [`apply_update`]), the reduced views a participant
//! may see ([`participant_summary`], [`participant_view`]), id generation ([`new_id`]) and
//! durable storage ([`store::SessionStore`]). It must not know about the async runtime (no
//! tokio: the caller runs the store's blocking IO on `spawn_blocking`), about WebRTC, or about
//! the hub, experiments and connected users: whether an experiment exists, who may send what,
//! and which filter names are registered are the caller's business. The only thing it borrows
//! from the rest of the crate is the wire error type, so that the error a client sees is
//! decided here, next to the rule that produces it.

mod id;
pub mod journal;
pub mod model;
mod rules;
pub mod store;
mod view;

pub use id::{ParticipantId, SessionId};
pub use model::*;
pub use rules::{
    all_filters, apply_update, prepare_new_session, FilterKind, FilterRef, DUPLICATE_PARTICIPANT_ID,
    SESSION_ALREADY_STARTED, UNKNOWN_PARTICIPANT_ID,
};
pub use store::{validate_dir, LoadProblem, SessionStore};
pub use view::{
    is_public, participant_summary, participant_view, recent_chat, Aliases, ParticipantSummary, Viewer, EXPERIMENTER,
    PUBLIC_TARGET,
};

use serde_json::Value;

/// A fresh id: the first 10 lowercase hex digits of a random (v4) UUID, SynthARium's format
/// for session and participant ids (`uuid4().hex[:10]`). The first 10 digits of a v4 UUID
/// are all random (the version nibble comes later), so this is 40 bits of randomness:
/// collisions are possible in principle, which is why callers check against existing ids.
pub fn new_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(10);
    id
}

/// Whether `id` can name a file or directory inside the sessions directory (and nothing
/// elsewhere): not empty; ASCII letters, digits, `-` and `_` only.
pub fn is_file_safe_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh id for which `taken` is false, or `None` if none was found in a generous number of
/// attempts (only possible if `taken` answers `true` for nearly everything, i.e. a bug).
pub(crate) fn unique_id(taken: impl Fn(&str) -> bool) -> Option<String> {
    // 40 random bits: even with a million ids in use, one attempt fails with p < 1e-6.
    (0..64).map(|_| new_id()).find(|id| !taken(id))
}

/// Parses and structurally validates a session, exactly: every required key present, no
/// unknown key, every value of the right JSON type (integers must be JSON integers, `1.0`
/// and `true` are not), objects where the data model has objects. Keys that only SynthARium's
/// development branch has may be missing (main-format data) and get their defaults.
///
/// The error names the offending field path and the problem, e.g.
/// `participants[0].banned: invalid type: string "x", expected a boolean`. It says nothing
/// about session-level rules (ids, read-only times): see [`prepare_new_session`] and
/// [`apply_update`].
pub fn parse_session(v: Value) -> Result<Session, String> {
    // `from_value` consumes the value; keep a copy only for the shape check below.
    let input = v.clone();
    let session: Session = serde_path_to_error::deserialize(v).map_err(|e| e.to_string())?;
    // serde's derived `Deserialize` for structs also accepts a JSON *array* of the field values
    // (`"position": [0, 10, 10]`). SynthARium rejects that and so do we: every place where the
    // parsed session serialises to an object must have been an object in the input.
    let output = serde_json::to_value(&session).map_err(|e| e.to_string())?;
    let mut path = String::new();
    check_objects(&input, &output, &mut path)?;
    Ok(session)
}

/// Parses a session from JSON text (e.g. a session file): a syntax error is reported with its
/// line and column, anything else as in [`parse_session`].
pub fn parse_session_str(text: &str) -> Result<Session, String> {
    // A byte order mark is not JSON, but editors on some systems add one; it hides nothing.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    parse_session(value)
}

/// Walks `input` and the re-serialised `output` together and fails where the output has an
/// object but the input had an array (see [`parse_session`]). `path` is the current location
/// in `serde_path_to_error`'s notation; it is restored before returning.
fn check_objects(input: &Value, output: &Value, path: &mut String) -> Result<(), String> {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (key, out) in o {
                if let Some(inp) = i.get(key) {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    let r = check_objects(inp, out, path);
                    path.truncate(len);
                    r?;
                }
            }
            Ok(())
        }
        (Value::Array(i), Value::Array(o)) => {
            for (index, (inp, out)) in i.iter().zip(o).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                let r = check_objects(inp, out, path);
                path.truncate(len);
                r?;
            }
            Ok(())
        }
        (Value::Array(_), Value::Object(_)) => {
            let at = if path.is_empty() { String::new() } else { format!("{path}: ") };
            Err(format!("{at}invalid type: sequence, expected a map"))
        }
        _ => Ok(()),
    }
}

impl Session {
    /// The participant with this id (a [`ParticipantId`] or a client's raw string), if the
    /// session has one.
    pub fn participant<Q: ?Sized>(&self, id: &Q) -> Option<&Participant>
    where
        ParticipantId: PartialEq<Q>,
    {
        self.participants.iter().find(|p| p.id == *id)
    }

    /// The participant with this id, mutably, if the session has one.
    pub fn participant_mut<Q: ?Sized>(&mut self, id: &Q) -> Option<&mut Participant>
    where
        ParticipantId: PartialEq<Q>,
    {
        self.participants.iter_mut().find(|p| p.id == *id)
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Fixtures shared by the tests of this module's files.

    /// SynthARium's `backend/sessions/ae839e5e6f.json` ([main] format), a real stored file
    /// (description shortened).
    pub const MAIN_FORMAT_EXAMPLE: &str = r#"{
  "id": "ae839e5e6f",
  "title": "Example Session 1",
  "date": 1650380763073,
  "record": false,
  "time_limit": 1800000,
  "description": "Example description with 250 words and 1506 characters: Lorem ipsum dolor sit amet, … Duis autem vel eum",
  "creation_time": 0,
  "end_time": 1684691314078,
  "start_time": 1684691314078,
  "notes": [{"time": 1650380763076, "speakers": ["speaker"], "content": "This is a note"}],
  "participants": [
    {"id": "9ba5fdccde", "participant_name": "Max", "banned": false,
     "size": {"width": 100, "height": 100}, "muted_video": false, "muted_audio": false,
     "position": {"x": 0, "y": 10, "z": 10},
     "chat": [{"message": "Welcome to todays experiment!", "time": 1650380763075,
               "author": "experimenter", "target": "participants"}],
     "audio_filters": [], "video_filters": [], "audio_group_filters": [], "video_group_filters": []},
    {"id": "25a882669d", "participant_name": "Erika", "banned": false,
     "size": {"width": 100, "height": 100}, "muted_video": false, "muted_audio": true,
     "position": {"x": 0, "y": 150, "z": 200},
     "chat": [
       {"message": "Welcome to todays experiment!", "time": 1650380763075, "author": "experimenter", "target": "participants"},
       {"message": "Hello Erika. Please enable your video camera to start the experiment.", "time": 1650380764175, "author": "experimenter", "target": "25a882669d"},
       {"message": "Hello, of course. It should work now.", "time": 1650380765075, "author": "25a882669d", "target": "experimenter"}],
     "audio_filters": [], "video_filters": [], "audio_group_filters": [], "video_group_filters": []},
    {"id": "8e39086e83", "participant_name": "Bob", "banned": false,
     "size": {"width": 100, "height": 100}, "muted_video": true, "muted_audio": true,
     "position": {"x": 0, "y": 300, "z": 250},
     "chat": [
       {"message": "Welcome to todays experiment!", "time": 1650380763075, "author": "experimenter", "target": "participants"},
       {"message": "Hello World!", "time": 1650380765075, "author": "8e39086e83", "target": "experimenter"},
       {"message": "Lets build the experimental hub!", "time": 1650380765075, "author": "8e39086e83", "target": "experimenter"}],
     "audio_filters": [], "video_filters": [], "audio_group_filters": [], "video_group_filters": []}
  ],
  "log": []
}"#;

    /// exphub's shipped example session (full dev format).
    pub const DEV_FORMAT_EXAMPLE: &str = include_str!("../../sessions/ae839e5e6f.json");

    /// The main-format example as a `Value`, for tests that modify it before parsing.
    pub fn main_value() -> serde_json::Value {
        serde_json::from_str(MAIN_FORMAT_EXAMPLE).expect("fixture is JSON")
    }

    /// A session ready to be created: ids empty, times 0.
    pub fn new_session_value() -> serde_json::Value {
        let mut v = main_value();
        v["id"] = "".into();
        for t in ["creation_time", "start_time", "end_time"] {
            v[t] = 0.into();
        }
        for p in v["participants"].as_array_mut().expect("array") {
            p["id"] = "".into();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn main_format_loads_with_dev_defaults() {
        let s = parse_session_str(MAIN_FORMAT_EXAMPLE).expect("main format parses");
        assert_eq!(s.id, "ae839e5e6f");
        assert_eq!(s.participants.len(), 3);
        assert_eq!(s.notes[0].content, "This is a note");
        for p in &s.participants {
            assert!(!p.local_stream);
            assert!(p.chat_filters.is_empty());
            assert_eq!(p.last_message_sent_time, 0);
            assert_eq!(p.last_message_read_time, 0);
            assert!(p.view.is_empty());
            assert_eq!(p.canvas_id, "");
            assert!(p.asymmetric_filters.is_empty());
            assert_eq!(p.asymmetric_filters_id, "");
        }
        // Written back, it carries every dev key.
        let out = serde_json::to_value(&s).unwrap();
        let p0 = out["participants"][0].as_object().unwrap();
        for key in [
            "local_stream",
            "chat_filters",
            "lastMessageSentTime",
            "lastMessageReadTime",
            "view",
            "canvas_id",
            "asymmetric_filters",
            "asymmetric_filters_id",
        ] {
            assert!(p0.contains_key(key), "missing {key}");
        }
    }

    #[test]
    fn dev_format_round_trips_exactly() {
        let original: Value = serde_json::from_str(DEV_FORMAT_EXAMPLE).unwrap();
        let s = parse_session(original.clone()).expect("example parses");
        assert_eq!(serde_json::to_value(&s).unwrap(), original);
        assert_eq!(s.participants.len(), 3);
        assert_eq!((s.creation_time, s.start_time, s.end_time), (0, 0, 0));
    }

    fn parse_err(v: Value) -> String {
        parse_session(v).expect_err("must be rejected")
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = main_value();
        v["participants"][0]["banned"] = json!("x");
        assert_eq!(parse_err(v), r#"participants[0].banned: invalid type: string "x", expected a boolean"#);

        let mut v = main_value();
        v["participants"][1]["position"]["y"] = json!("1");
        assert!(parse_err(v).starts_with("participants[1].position.y: invalid type: string"));

        let mut v = main_value();
        v["participants"][2].as_object_mut().unwrap().remove("chat");
        assert_eq!(parse_err(v), "participants[2]: missing field `chat`");

        let mut v = main_value();
        v.as_object_mut().unwrap().remove("title");
        assert_eq!(parse_err(v), "missing field `title`");

        let mut v = main_value();
        v["extra"] = json!(1);
        let e = parse_err(v);
        assert!(e.starts_with("extra: unknown field `extra`"), "{e}");

        let mut v = main_value();
        v["notes"][0]["speakers"] = json!([1]);
        assert!(parse_err(v).starts_with("notes[0].speakers[0]: invalid type: integer `1`"));
    }

    #[test]
    fn integers_are_exact() {
        // A JSON float is not an int (SynthARium: `isinstance(1.0, int)` is false).
        let mut v = main_value();
        v["date"] = json!(1.0);
        assert!(parse_err(v).starts_with("date: invalid type: floating point"));
        // exphub is stricter than Python here: a bool is not an int.
        let mut v = main_value();
        v["time_limit"] = json!(true);
        assert!(parse_err(v).starts_with("time_limit: invalid type: boolean"));
        // Position and size take ints and floats alike, and keep them as given.
        let mut v = main_value();
        v["participants"][0]["position"]["x"] = json!(1.5);
        let s = parse_session(v).unwrap();
        assert_eq!(serde_json::to_value(&s.participants[0].position).unwrap()["x"], json!(1.5));
    }

    #[test]
    fn arrays_are_not_objects() {
        let mut v = main_value();
        v["participants"][0]["position"] = json!([0, 10, 10]);
        assert_eq!(parse_err(v), "participants[0].position: invalid type: sequence, expected a map");

        let mut v = main_value();
        v["notes"][0] = json!([1, [], "x"]);
        assert_eq!(parse_err(v), "notes[0]: invalid type: sequence, expected a map");

        assert!(parse_session(json!([])).is_err());
        assert!(parse_session(json!("x")).is_err());
        assert!(parse_session(Value::Null).is_err());
    }

    #[test]
    fn free_form_fields_stay_free() {
        let mut v = main_value();
        v["log"] = json!({"anything": [1, 2]});
        v["participants"][0]["video_filters"] = json!([
            {"name": "ROTATION", "id": "r1", "channel": "video", "groupFilter": false,
             "config": {"direction": {"value": "clockwise"}}}
        ]);
        v["participants"][0]["chat"][0]["sentiment_score"] = json!({"label": "neutral", "score": 0.9});
        let s = parse_session(v.clone()).unwrap();
        let out = serde_json::to_value(&s).unwrap();
        assert_eq!(out["log"], v["log"]);
        assert_eq!(out["participants"][0]["video_filters"], v["participants"][0]["video_filters"]);
        assert_eq!(out["participants"][0]["chat"][0], v["participants"][0]["chat"][0]);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse_session_str("{\"id\": }").unwrap_err();
        assert!(e.starts_with("not valid JSON:") && e.contains("line 1"), "{e}");
        // A byte order mark is tolerated.
        assert!(parse_session_str(&format!("\u{feff}{MAIN_FORMAT_EXAMPLE}")).is_ok());
    }

    #[test]
    fn ids_are_ten_lowercase_hex() {
        let a = new_id();
        assert_eq!(a.len(), 10);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_id());
        assert!(unique_id(|_| true).is_none());
        let taken = new_id();
        assert_ne!(unique_id(|id| id == taken).unwrap(), taken);
    }

    #[test]
    fn participant_lookup() {
        let mut s = parse_session_str(MAIN_FORMAT_EXAMPLE).unwrap();
        assert_eq!(s.participant("25a882669d").unwrap().participant_name, "Erika");
        assert!(s.participant("nope").is_none());
        s.participant_mut("8e39086e83").unwrap().banned = true;
        assert!(s.participants[2].banned);
    }
}
