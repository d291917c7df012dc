//! The session data model: what an experimenter designs and what an experiment records.
//!
//! These types are SynthARium's `SessionDict` and its parts, field for field. The same JSON
//! shape is used on disk (`sessions/<id>.json`) and on the wire (`SESSION`, `SAVE_SESSION`,
//! `SESSION_LIST`, ...), so the serde attributes here are the one place that knows those field
//! names. Validation is structural and exact, like SynthARium's `check_valid_typeddict_keys`:
//! every required key present, no unknown key (`deny_unknown_fields`), every value of the right
//! JSON type (integers must be JSON integers; a bool is not an integer). Keys that only the
//! SynthARium *development* branch has are optional on input (main-format files and scripts
//! load) and always written back.

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use super::{ParticipantId, SessionId};

pub use crate::protocol::FilterChannel;

/// One experiment design and, once run, its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub id: SessionId,
    pub title: String,
    pub description: String,
    /// Planned date, epoch ms. Not interpreted by the server.
    pub date: i64,
    /// Planned duration in ms. Not interpreted by the server.
    pub time_limit: i64,
    /// Record participants' media when the experiment runs.
    pub record: bool,
    pub participants: Vec<Participant>,
    /// Epoch ms when an experiment object exists for this session, else 0. Read-only.
    pub creation_time: i64,
    /// Epoch ms of START (or of STOP if never started). Read-only.
    pub start_time: i64,
    /// Epoch ms of STOP. Read-only.
    pub end_time: i64,
    pub notes: Vec<Note>,
    /// Free-form, never written by the server (SynthARium: "log still wip").
    #[serde(default = "empty_array")]
    pub log: Value,
    // --- exphub extension keys: optional, written only when not the default. ---
    /// Cluster mode: what happens to a running experiment whose node dies.
    #[serde(default, skip_serializing_if = "OnNodeFailure::is_default")]
    pub on_node_failure: OnNodeFailure,
}

/// `on_node_failure` (exphub extension): what a new node does with an experiment whose node
/// died. `resume` (the default): it goes on there as a new run, RUNNING if it was; `end`: it
/// is ended, and participants' offers get "The experiment has ended." (for studies that
/// discard interrupted trials).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNodeFailure {
    #[default]
    Resume,
    End,
}

impl OnNodeFailure {
    fn is_default(&self) -> bool {
        *self == OnNodeFailure::Resume
    }
}

/// A participant seat in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub id: ParticipantId,
    pub participant_name: String,
    pub banned: bool,
    pub muted_video: bool,
    pub muted_audio: bool,
    pub position: Position,
    pub size: Size,
    pub chat: Vec<ChatMessage>,
    pub audio_filters: Vec<FilterDict>,
    pub video_filters: Vec<FilterDict>,
    pub audio_group_filters: Vec<FilterDict>,
    pub video_group_filters: Vec<FilterDict>,
    // --- SynthARium development-branch keys: optional on input, always written. ---
    /// The participant sees its raw local camera instead of the processed echo.
    #[serde(default)]
    pub local_stream: bool,
    #[serde(default)]
    pub chat_filters: Vec<ChatFilter>,
    #[serde(default, rename = "lastMessageSentTime")]
    pub last_message_sent_time: i64,
    #[serde(default, rename = "lastMessageReadTime")]
    pub last_message_read_time: i64,
    /// Participant-specific canvas layout (frontend only).
    #[serde(default)]
    pub view: Vec<CanvasElement>,
    #[serde(default)]
    pub canvas_id: String,
    #[serde(default)]
    pub asymmetric_filters: Vec<AsymmetricFilter>,
    #[serde(default)]
    pub asymmetric_filters_id: String,
}

/// Canvas position; numbers are kept exactly as given (int or float).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub x: Number,
    pub y: Number,
    pub z: Number,
}

/// Canvas size; numbers are kept exactly as given (int or float).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub width: Number,
    pub height: Number,
}

/// A chat message. `author` is `"experimenter"` or a participant id; `target` is
/// `"experimenter"`, `"participants"` (everyone) or a participant id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub message: String,
    /// Epoch ms, set by the client.
    pub time: i64,
    pub author: String,
    pub target: String,
    /// SynthARium dev: `{"label", "score"}` from its sentiment chat filter. Kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment_score: Option<Value>,
}

/// An experimenter's note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub time: i64,
    pub speakers: Vec<String>,
    pub content: String,
}

/// A filter instance as stored and sent: `{name, id, channel, groupFilter, config}`.
/// Only `name` and `id` are interpreted by the protocol layer; `config` holds the filter's
/// parameter entries (see the filter catalogue). `channel` is `"video"`, `"audio"` or
/// `"both"`, `groupFilter` a bool and `config` an object, as SynthARium's `FilterDict`
/// declares them (SynthARium did not check them; exphub does, so nothing else is persisted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterDict {
    pub name: String,
    pub id: String,
    pub channel: FilterChannel,
    #[serde(rename = "groupFilter")]
    pub group_filter: bool,
    #[serde(deserialize_with = "json_object")]
    pub config: Value,
}

/// A JSON object, kept as a `Value`.
fn json_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    serde_json::Map::<String, Value>::deserialize(d).map(Value::Object)
}

/// SynthARium dev chat filter entry (`{"id", "name", "config"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFilter {
    pub id: String,
    pub name: String,
    pub config: Value,
}

/// SynthARium dev canvas element of a participant's own `view`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanvasElement {
    pub id: String,
    pub participant_name: String,
    pub size: Size,
    pub position: Position,
}

/// Viewer-side filters for one publisher: applies when the *viewer* holding this entry sees
/// the publisher whose `asymmetric_filters_id == id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsymmetricFilter {
    pub id: String,
    pub participant_name: String,
    pub audio_filters: Vec<FilterDict>,
    pub video_filters: Vec<FilterDict>,
}

fn empty_array() -> Value {
    Value::Array(vec![])
}

#[cfg(test)]
mod tests {
    use super::FilterDict;
    use serde_json::json;

    fn filter() -> serde_json::Value {
        json!({"name": "ROTATION", "id": "r1", "channel": "video", "groupFilter": false, "config": {}})
    }

    #[test]
    fn on_node_failure_is_optional_typed_and_written_only_when_not_the_default() {
        let example = crate::session::testdata::DEV_FORMAT_EXAMPLE;
        let mut v: serde_json::Value = serde_json::from_str(example).unwrap();
        let s: super::Session = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(s.on_node_failure, super::OnNodeFailure::Resume, "absent: resume");
        assert!(serde_json::to_value(&s).unwrap().get("on_node_failure").is_none(), "the default is not written");
        v["on_node_failure"] = json!("end");
        let s: super::Session = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(s.on_node_failure, super::OnNodeFailure::End);
        assert_eq!(serde_json::to_value(&s).unwrap()["on_node_failure"], "end");
        for bad in [json!("END"), json!("stop"), json!(true), json!(null)] {
            v["on_node_failure"] = bad.clone();
            assert!(serde_json::from_value::<super::Session>(v.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn filter_dict_fields_are_typed() {
        for channel in ["video", "audio", "both"] {
            let mut f = filter();
            f["channel"] = json!(channel);
            let parsed: FilterDict = serde_json::from_value(f.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), f, "round trip");
        }
        let bad = [
            ("channel", json!(5)),
            ("channel", json!("VIDEO")),
            ("channel", json!(null)),
            ("channel", json!({"a": 1})),
            ("groupFilter", json!("false")),
            ("groupFilter", json!(0)),
            ("groupFilter", json!(null)),
            ("config", json!([])),
            ("config", json!("x")),
            ("config", json!(null)),
        ];
        for (key, value) in bad {
            let mut f = filter();
            f[key] = value.clone();
            let e = serde_json::from_value::<FilterDict>(f).expect_err(&format!("{key}: {value}"));
            assert!(!e.to_string().is_empty());
        }
    }
}
