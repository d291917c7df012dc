//! Table-driven tests of frame → request parsing, across every message type.

use super::*;
use crate::session::model::{ChatMessage, FilterDict, Note};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A small filter registry: four individual filters and one group filter.
struct FakeFilters;

impl FilterNames for FakeFilters {
    fn is_filter(&self, name: &str) -> bool {
        ["ROTATION", "EDGE_OUTLINE", "DELAY", "SPEAKING_TIME"].contains(&name)
    }
    fn is_group_filter(&self, name: &str) -> bool {
        name == "TEMPLATE_GF"
    }
}

/// Frame → envelope → request, as the hub does it.
fn parse(kind: &str, data: Value) -> Result<ClientRequest, WireError> {
    let frame = json!({ "type": kind, "data": data }).to_string();
    let env = parse_frame(frame.as_bytes(), true, DEFAULT_MAX_FRAME_LEN)?;
    parse_request(env, &FakeFilters)
}

fn filter(name: &str, id: &str) -> Value {
    json!({"name": name, "id": id, "channel": "video", "groupFilter": false, "config": {}})
}

fn filter_dict(name: &str, id: &str) -> FilterDict {
    serde_json::from_value(filter(name, id)).expect("test filter is a valid FilterDict")
}

fn ice() -> Value {
    json!({"candidate": "candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host",
           "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "uf"})
}

/// Odd `data` values every parser must survive.
fn odd_data() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1.5),
        json!("x"),
        json!(""),
        json!([]),
        json!([{}]),
        json!({}),
        json!({"type": 5, "data": {}}),
        json!({"session_id": null}),
        json!({"participant_id": [], "reason": {}}),
        json!({"a": {"b": {"c": [[[[{"d": null}]]]]}}}),
        json!({"audio_filters": [null], "video_filters": "x", "participant_id": "p"}),
        json!({"audio_group_filters": [{"name": 1}], "video_group_filters": []}),
        json!({"id": {}, "offer": {"sdp": [], "type": null}}),
        json!({"id": "s", "candidate": {"candidate": 1}}),
        json!({"filter_id": 1e300, "filter_name": "", "filter_channel": ""}),
        json!({"participant_id": "p", "lastMessageReadTime": 18446744073709551615_u64}),
        json!({"handled_time": null, "server_time": null, "ping_data": null}),
    ]
}

#[test]
fn every_client_request_parses() {
    let chat = json!({"message": "hi", "time": 1650380763075_i64, "author": "experimenter", "target": "participants"});
    let chat_with_score = json!({"message": "hi", "time": 1, "author": "p1", "target": "experimenter",
                                 "sentiment_score": {"label": "neutral", "score": 0.9}});
    let note = json!({"time": 1650380763076_i64, "speakers": ["speaker"], "content": "This is a note"});
    let session = json!({"id": "", "title": "t"});
    let ping = json!({"sent": 12.25, "data": "latency"});

    let cases: Vec<(&str, Value, ClientRequest)> = vec![
        ("PING", ping.clone(), ClientRequest::Ping(ping)),
        ("PING", Value::Null, ClientRequest::Ping(Value::Null)),
        (
            "PONG",
            json!({"handled_time": 1234.5, "ping_data": {"sent": 100, "data": ""}}),
            ClientRequest::Pong(PongData {
                handled_time: serde_json::Number::from_f64(1234.5).unwrap(),
                ping_data: json!({"sent": 100, "data": ""}),
            }),
        ),
        (
            "PONG",
            json!({"server_time": 7, "ping_data": null}),
            ClientRequest::Pong(PongData { handled_time: 7.into(), ping_data: Value::Null }),
        ),
        (
            "CONNECTION_OFFER",
            json!({"id": "sub1", "offer": {"sdp": "v=0", "type": "offer"}}),
            ClientRequest::ConnectionOffer {
                id: "sub1".into(),
                offer: SessionDescription { sdp: "v=0".into(), kind: SdpType::Offer },
            },
        ),
        (
            "ADD_ICE_CANDIDATE",
            json!({"id": "sub1", "candidate": ice()}),
            ClientRequest::AddIceCandidate { id: "sub1".into(), candidate: serde_json::from_value(ice()).unwrap() },
        ),
        (
            "ADD_ICE_CANDIDATE",
            json!({"id": "sub1", "candidate": {"candidate": "", "sdpMid": null, "sdpMLineIndex": null, "usernameFragment": null}}),
            ClientRequest::AddIceCandidate {
                id: "sub1".into(),
                candidate: IceCandidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_m_line_index: None,
                    username_fragment: None,
                },
            },
        ),
        ("GET_SESSION_LIST", json!({}), ClientRequest::GetSessionList(Default::default())),
        (
            "GET_SESSION",
            json!({"session_id": "ae839e5e6f"}),
            ClientRequest::GetSession { session_id: "ae839e5e6f".into() },
        ),
        ("SAVE_SESSION", session.clone(), ClientRequest::SaveSession(session)),
        ("DELETE_SESSION", json!({"session_id": "s"}), ClientRequest::DeleteSession { session_id: "s".into() }),
        ("CREATE_EXPERIMENT", json!({"session_id": "s"}), ClientRequest::CreateExperiment { session_id: "s".into() }),
        ("JOIN_EXPERIMENT", json!({"session_id": "s"}), ClientRequest::JoinExperiment { session_id: "s".into() }),
        ("LEAVE_EXPERIMENT", json!({}), ClientRequest::LeaveExperiment),
        ("START_EXPERIMENT", json!({}), ClientRequest::StartExperiment),
        ("STOP_EXPERIMENT", json!({}), ClientRequest::StopExperiment),
        ("ADD_NOTE", note.clone(), ClientRequest::AddNote(serde_json::from_value::<Note>(note).unwrap())),
        ("CHAT", chat.clone(), ClientRequest::Chat(serde_json::from_value::<ChatMessage>(chat).unwrap())),
        (
            "CHAT",
            chat_with_score.clone(),
            ClientRequest::Chat(serde_json::from_value::<ChatMessage>(chat_with_score).unwrap()),
        ),
        (
            "KICK_PARTICIPANT",
            json!({"participant_id": "p", "reason": "r"}),
            ClientRequest::KickParticipant(KickRequest { participant_id: "p".into(), reason: "r".into() }),
        ),
        (
            "BAN_PARTICIPANT",
            json!({"participant_id": "p", "reason": ""}),
            ClientRequest::BanParticipant(KickRequest { participant_id: "p".into(), reason: String::new() }),
        ),
        (
            "MUTE",
            json!({"participant_id": "p", "mute_video": true, "mute_audio": false}),
            ClientRequest::Mute(MuteRequest { participant_id: "p".into(), mute_video: true, mute_audio: false }),
        ),
        (
            "SET_FILTERS",
            // The same id in the audio and the video list is fine; AUDIO_SPEAKING_TIME is renamed.
            json!({"participant_id": "all",
                   "audio_filters": [filter("AUDIO_SPEAKING_TIME", "a")],
                   "video_filters": [filter("ROTATION", "a"), filter("EDGE_OUTLINE", "b")]}),
            ClientRequest::SetFilters(SetFiltersRequest {
                participant_id: "all".into(),
                audio_filters: vec![filter_dict("SPEAKING_TIME", "a")],
                video_filters: vec![filter_dict("ROTATION", "a"), filter_dict("EDGE_OUTLINE", "b")],
            }),
        ),
        (
            "SET_FILTERS",
            json!({"participant_id": "p", "audio_filters": [], "video_filters": []}),
            ClientRequest::SetFilters(SetFiltersRequest {
                participant_id: "p".into(),
                audio_filters: vec![],
                video_filters: vec![],
            }),
        ),
        (
            "SET_GROUP_FILTERS",
            json!({"audio_group_filters": [filter("TEMPLATE_GF", "g1")], "video_group_filters": [filter("TEMPLATE_GF", "g2")]}),
            ClientRequest::SetGroupFilters(SetGroupFiltersRequest {
                audio_group_filters: vec![filter_dict("TEMPLATE_GF", "g1")],
                video_group_filters: vec![filter_dict("TEMPLATE_GF", "g2")],
            }),
        ),
        ("GET_FILTERS_CONFIG", json!({}), ClientRequest::GetFiltersConfig),
        (
            "GET_FILTERS_DATA",
            json!({"filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"}),
            ClientRequest::GetFiltersData(GetFiltersDataRequest {
                filter_id: "all".into(),
                filter_name: "ROTATION".into(),
                filter_channel: FilterChannel::Video,
            }),
        ),
        (
            "GET_FILTERS_DATA",
            json!({"filter_id": "f", "filter_name": "AUDIO_SPEAKING_TIME", "filter_channel": "both"}),
            ClientRequest::GetFiltersData(GetFiltersDataRequest {
                filter_id: "f".into(),
                filter_name: "SPEAKING_TIME".into(),
                filter_channel: FilterChannel::Both,
            }),
        ),
        (
            "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
            json!({"participant_id": "all", "filter_id": "all", "filter_name": "DELAY", "filter_channel": "audio"}),
            ClientRequest::GetFiltersDataSendToParticipant(GetFiltersDataSendToParticipantRequest {
                participant_id: "all".into(),
                filter_id: "all".into(),
                filter_name: "DELAY".into(),
                filter_channel: FilterChannel::Audio,
            }),
        ),
        (
            "UPDATE_READ_MESSAGE_TIME",
            json!({"participant_id": "p", "lastMessageReadTime": 1700000000000_i64}),
            ClientRequest::UpdateReadMessageTime { participant_id: "p".into(), last_message_read_time: 1700000000000 },
        ),
        ("GET_RECORDING_LIST", json!({}), ClientRequest::GetRecordingList),
        (
            "POST_PROCESSING_VIDEO",
            json!({"session_id": "s"}),
            ClientRequest::PostProcessingVideo { session_id: "s".into() },
        ),
        ("CHECK_POST_PROCESSING", json!({}), ClientRequest::CheckPostProcessing),
        (
            "GET_CHAT_HISTORY",
            json!({"session_id": "s", "participant_id": "p"}),
            ClientRequest::GetChatHistory(GetChatHistoryRequest {
                session_id: "s".into(),
                participant_id: "p".into(),
                before: None,
                limit: None,
            }),
        ),
        (
            "GET_CHAT_HISTORY",
            json!({"session_id": "s", "participant_id": "p", "before": 40, "limit": 20}),
            ClientRequest::GetChatHistory(GetChatHistoryRequest {
                session_id: "s".into(),
                participant_id: "p".into(),
                before: Some(40),
                limit: Some(20),
            }),
        ),
        (
            "GET_GROUP_FILTERS_DATA",
            json!({"subscribe": true}),
            ClientRequest::GetGroupFiltersData(GetGroupFiltersDataRequest {
                filter_id: "all".into(),
                results: None,
                subscribe: Some(true),
            }),
        ),
    ];

    let mut covered = BTreeSet::new();
    for (kind, data, expected) in cases {
        let got = parse(kind, data.clone());
        assert_eq!(got.as_ref(), Ok(&expected), "{kind} {data}");
        assert_eq!(expected.kind().as_str(), kind);
        covered.insert(expected.kind());
    }
    let client_types: BTreeSet<MessageType> =
        MessageType::ALL.iter().copied().filter(|t| t.is_client_request()).collect();
    assert_eq!(covered, client_types, "every client request type has a success case");
}

#[test]
fn pong_helpers() {
    let Ok(ClientRequest::Pong(pong)) = parse(
        "PONG",
        json!({"handled_time": 3, "server_time": 4, "ping_data": {"sent": 1700000000000_i64, "data": ""}}),
    ) else {
        panic!("valid PONG");
    };
    assert_eq!(pong.handled_time, 3.into(), "handled_time wins over server_time");
    assert_eq!(pong.ping_sent_ms(), Some(1700000000000));
    let Ok(ClientRequest::Pong(pong)) = parse("PONG", json!({"handled_time": 3, "ping_data": "x"})) else {
        panic!("valid PONG");
    };
    assert_eq!(pong.ping_sent_ms(), None);
}

/// `(type, data, SynthARium's text, the rest of the description after "<text>: ")`.
/// A rest ending in `*` is a prefix.
fn malformed_cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    use text::*;
    vec![
        // PONG
        ("PONG", json!({}), INVALID_PONG, "data: missing field `ping_data`"),
        ("PONG", json!({"ping_data": 1}), INVALID_PONG, "data: missing field `handled_time`"),
        ("PONG", json!({"handled_time": "1", "ping_data": 1}), INVALID_PONG, "data.handled_time: invalid type: string \"1\"*"),
        ("PONG", json!({"handled_time": 1, "ping_data": 1, "sent": 2}), INVALID_PONG, "data.sent: unknown field `sent`, expected one of `handled_time`, `server_time`, `ping_data`"),
        ("PONG", json!(5), INVALID_PONG, "data: expected an object, got a number"),
        // CONNECTION_OFFER
        ("CONNECTION_OFFER", json!({"id": "s"}), INVALID_CONNECTION_OFFER, "data: missing field `offer`"),
        ("CONNECTION_OFFER", json!({"id": 1, "offer": {"sdp": "", "type": "offer"}}), INVALID_CONNECTION_OFFER, "data.id: invalid type: integer `1`, expected a string"),
        ("CONNECTION_OFFER", json!({"id": "s", "offer": {"sdp": "", "type": "bogus"}}), INVALID_CONNECTION_OFFER, "data.offer.type: unknown variant `bogus`*"),
        ("CONNECTION_OFFER", json!({"id": "s", "offer": {"sdp": ""}}), INVALID_CONNECTION_OFFER, "data.offer: missing field `type`"),
        ("CONNECTION_OFFER", json!({"id": "s", "offer": "v=0"}), INVALID_CONNECTION_OFFER, "data.offer: invalid type: string \"v=0\"*"),
        ("CONNECTION_OFFER", json!([]), INVALID_CONNECTION_OFFER, "data: expected an object, got an array"),
        // ADD_ICE_CANDIDATE
        ("ADD_ICE_CANDIDATE", json!({"id": "s"}), INVALID_ADD_ICE_CANDIDATE, "data: missing field `candidate`"),
        ("ADD_ICE_CANDIDATE", json!({"id": "s", "candidate": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0}}), INVALID_ADD_ICE_CANDIDATE, "data.candidate: missing field `usernameFragment`"),
        ("ADD_ICE_CANDIDATE", json!({"id": "s", "candidate": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 1.0, "usernameFragment": null}}), INVALID_ADD_ICE_CANDIDATE, "data.candidate.sdpMLineIndex: invalid type: floating point `1.0`*"),
        ("ADD_ICE_CANDIDATE", json!({"id": "s", "candidate": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 70000, "usernameFragment": null}}), INVALID_ADD_ICE_CANDIDATE, "data.candidate.sdpMLineIndex: invalid value: integer `70000`*"),
        ("ADD_ICE_CANDIDATE", json!({"id": "s", "candidate": {"candidate": null, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null}}), INVALID_ADD_ICE_CANDIDATE, "data.candidate.candidate: invalid type: null*"),
        // Session id requests
        ("GET_SESSION", json!({}), INVALID_SESSION_ID_REQUEST, "data: missing field `session_id`"),
        ("GET_SESSION", Value::Null, INVALID_SESSION_ID_REQUEST, "data: expected an object, got null"),
        ("GET_SESSION", json!({"session_id": 5}), INVALID_SESSION_ID_REQUEST, "data.session_id: invalid type: integer `5`, expected a string"),
        ("DELETE_SESSION", json!({"session_id": "s", "x": 1}), INVALID_SESSION_ID_REQUEST, "data.x: unknown field `x`, expected `session_id`"),
        ("DELETE_SESSION", json!("s"), INVALID_SESSION_ID_REQUEST, "data: expected an object, got a string"),
        ("CREATE_EXPERIMENT", json!({"sessionId": "s"}), INVALID_SESSION_ID_REQUEST, "data.sessionId: unknown field `sessionId`, expected `session_id`"),
        ("JOIN_EXPERIMENT", json!({"session_id": null}), INVALID_SESSION_ID_REQUEST, "data.session_id: invalid type: null, expected a string"),
        // ADD_NOTE
        ("ADD_NOTE", json!({"time": 1.0, "speakers": [], "content": ""}), INVALID_NOTE, "data.time: invalid type: floating point `1.0`, expected i64"),
        ("ADD_NOTE", json!({"time": true, "speakers": [], "content": ""}), INVALID_NOTE, "data.time: invalid type: boolean `true`, expected i64"),
        ("ADD_NOTE", json!({"time": 1, "speakers": [1], "content": ""}), INVALID_NOTE, "data.speakers[0]: invalid type: integer `1`, expected a string"),
        ("ADD_NOTE", json!({"time": 1, "speakers": []}), INVALID_NOTE, "data: missing field `content`"),
        // CHAT
        ("CHAT", json!({"message": "m", "time": 1, "author": "experimenter"}), INVALID_CHAT_MESSAGE, "data: missing field `target`"),
        ("CHAT", json!({"message": "m", "time": 1, "author": "a", "target": "t", "x": 0}), INVALID_CHAT_MESSAGE, "data.x: unknown field `x`*"),
        ("CHAT", json!({"message": 5, "time": 1, "author": "a", "target": "t"}), INVALID_CHAT_MESSAGE, "data.message: invalid type: integer `5`, expected a string"),
        // GET_CHAT_HISTORY
        ("GET_CHAT_HISTORY", json!({"session_id": "s"}), INVALID_GET_CHAT_HISTORY, "data: missing field `participant_id`"),
        ("GET_CHAT_HISTORY", json!({"session_id": "s", "participant_id": "p", "before": -1}), INVALID_GET_CHAT_HISTORY, "data.before: invalid value: integer `-1`*"),
        ("GET_CHAT_HISTORY", json!({"session_id": "s", "participant_id": "p", "limit": 0}), INVALID_GET_CHAT_HISTORY, "data.limit: must be at least 1"),
        ("GET_CHAT_HISTORY", json!({"session_id": "s", "participant_id": "p", "page": 1}), INVALID_GET_CHAT_HISTORY, "data.page: unknown field `page`*"),
        // KICK / BAN
        ("KICK_PARTICIPANT", json!({"participant_id": "p", "reason": 5}), INVALID_KICK_REQUEST, "data.reason: invalid type: integer `5`, expected a string"),
        ("BAN_PARTICIPANT", json!({"participant_id": "p"}), INVALID_KICK_REQUEST, "data: missing field `reason`"),
        ("BAN_PARTICIPANT", json!([]), INVALID_KICK_REQUEST, "data: expected an object, got an array"),
        // MUTE
        ("MUTE", json!({"participant_id": "p", "mute_video": "true", "mute_audio": false}), INVALID_MUTE_REQUEST, "data.mute_video: invalid type: string \"true\", expected a boolean"),
        ("MUTE", json!({"participant_id": "p", "mute_video": true, "mute_audio": 1}), INVALID_MUTE_REQUEST, "data.mute_audio: invalid type: integer `1`, expected a boolean"),
        ("MUTE", json!({"participant_id": "p", "mute_video": true}), INVALID_MUTE_REQUEST, "data: missing field `mute_audio`"),
        // SET_FILTERS
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": []}), INVALID_SET_FILTERS_REQUEST, "data: missing field `video_filters`"),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [filter("ROTATION", "a"), filter("NOPE", "b")]}), INVALID_SET_FILTERS_REQUEST, "data.video_filters[1].name: unknown filter \"NOPE\""),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [filter("TEMPLATE_GF", "a")], "video_filters": []}), INVALID_SET_FILTERS_REQUEST, "data.audio_filters[0].name: unknown filter \"TEMPLATE_GF\""),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [filter("DELAY", "a"), filter("SPEAKING_TIME", "a")], "video_filters": []}), INVALID_SET_FILTERS_REQUEST, "data.audio_filters[1].id: duplicate filter id \"a\""),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [{"name": "ROTATION", "channel": "video", "groupFilter": false, "config": {}}]}), INVALID_SET_FILTERS_REQUEST, "data.video_filters[0]: missing field `id`"),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [{"name": "ROTATION", "id": "a", "groupFilter": false, "config": {}}]}), INVALID_SET_FILTERS_REQUEST, "data.video_filters[0]: missing field `channel`"),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [{"name": "ROTATION", "id": 1, "channel": "video", "groupFilter": false, "config": {}}]}), INVALID_SET_FILTERS_REQUEST, "data.video_filters[0].id: invalid type: integer `1`, expected a string"),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": {}, "video_filters": []}), INVALID_SET_FILTERS_REQUEST, "data.audio_filters: invalid type: map, expected a sequence"),
        ("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [{"name": "ROTATION", "id": "a", "channel": "video", "groupFilter": false, "config": {}, "extra": 1}]}), INVALID_SET_FILTERS_REQUEST, "data.video_filters[0].extra: unknown field `extra`, expected one of `name`, `id`, `channel`, `groupFilter`, `config`"),
        // SET_GROUP_FILTERS
        ("SET_GROUP_FILTERS", json!({"audio_group_filters": [filter("TEMPLATE_GF", "g")], "video_group_filters": [filter("TEMPLATE_GF", "g")]}), INVALID_SET_GROUP_FILTERS_REQUEST, "data.video_group_filters[0].id: duplicate filter id \"g\""),
        ("SET_GROUP_FILTERS", json!({"audio_group_filters": [filter("ROTATION", "g")], "video_group_filters": []}), INVALID_SET_GROUP_FILTERS_REQUEST, "data.audio_group_filters[0].name: unknown filter \"ROTATION\""),
        ("SET_GROUP_FILTERS", json!({"audio_group_filters": []}), INVALID_SET_GROUP_FILTERS_REQUEST, "data: missing field `video_group_filters`"),
        // GET_FILTERS_DATA
        ("GET_FILTERS_DATA", json!({"filter_id": "all", "filter_name": "ROTATION", "filter_channel": "all"}), INVALID_GET_FILTERS_DATA, "data.filter_channel: unknown variant `all`, expected one of `audio`, `video`, `both`"),
        ("GET_FILTERS_DATA", json!({"filter_id": "all", "filter_name": "NOPE", "filter_channel": "video"}), INVALID_GET_FILTERS_DATA, "data.filter_name: unknown filter \"NOPE\""),
        ("GET_FILTERS_DATA", json!({"filter_id": 1, "filter_name": "ROTATION", "filter_channel": "video"}), INVALID_GET_FILTERS_DATA, "data.filter_id: invalid type: integer `1`, expected a string"),
        ("GET_FILTERS_DATA", json!({"participant_id": "p", "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"}), INVALID_GET_FILTERS_DATA, "data.participant_id: unknown field `participant_id`*"),
        // GET_FILTERS_DATA_SEND_TO_PARTICIPANT
        ("GET_FILTERS_DATA_SEND_TO_PARTICIPANT", json!({"filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"}), INVALID_GET_FILTERS_DATA_SEND_TO_PARTICIPANT, "data: missing field `participant_id`"),
        ("GET_FILTERS_DATA_SEND_TO_PARTICIPANT", json!({"participant_id": "p", "filter_id": "all", "filter_name": "X", "filter_channel": "video"}), INVALID_GET_FILTERS_DATA_SEND_TO_PARTICIPANT, "data.filter_name: unknown filter \"X\""),
        // UPDATE_READ_MESSAGE_TIME
        ("UPDATE_READ_MESSAGE_TIME", json!({"participant_id": "p", "last_message_read_time": 1}), INVALID_UPDATE_READ_MESSAGE_TIME, "data.last_message_read_time: unknown field `last_message_read_time`, expected `participant_id` or `lastMessageReadTime`"),
        ("UPDATE_READ_MESSAGE_TIME", json!({"participant_id": "p", "lastMessageReadTime": 1.5}), INVALID_UPDATE_READ_MESSAGE_TIME, "data.lastMessageReadTime: invalid type: floating point `1.5`, expected i64"),
        ("UPDATE_READ_MESSAGE_TIME", json!({"lastMessageReadTime": 1}), INVALID_UPDATE_READ_MESSAGE_TIME, "data: missing field `participant_id`"),
        // POST_PROCESSING_VIDEO
        ("POST_PROCESSING_VIDEO", json!({}), INVALID_POST_PROCESSING, "data: missing field `session_id`"),
        ("POST_PROCESSING_VIDEO", json!({"session_id": []}), INVALID_POST_PROCESSING, "data.session_id: invalid type: sequence, expected a string"),
        // GET_GROUP_FILTERS_DATA
        ("GET_GROUP_FILTERS_DATA", json!({"subscribe": "yes"}), INVALID_GET_GROUP_FILTERS_DATA, "data.subscribe: invalid type: string \"yes\", expected a boolean"),
        ("GET_GROUP_FILTERS_DATA", json!({"results": -1}), INVALID_GET_GROUP_FILTERS_DATA, "data.results: invalid value: integer `-1`, expected usize"),
    ]
}

/// `pattern` with `*` as "any text".
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    rest.is_empty()
}

#[test]
fn malformed_data_is_400_invalid_datatype_naming_the_field() {
    let mut covered = BTreeSet::new();
    for (kind, data, text, rest) in malformed_cases() {
        let err = parse(kind, data.clone()).expect_err(&format!("{kind} {data} must fail"));
        assert_eq!((err.code, err.kind), (400, ErrorType::InvalidDatatype), "{kind} {data}");
        let expected_start = format!("{text}: ");
        assert!(err.description.starts_with(&expected_start), "{kind} {data}: {}", err.description);
        let got_rest = &err.description[expected_start.len()..];
        assert!(glob_match(rest, got_rest), "{kind} {data}:\n  got  {got_rest}\n  want {rest}");
        covered.insert(kind.parse::<MessageType>().unwrap());
    }
    // Every client type that validates its data has malformed cases.
    let validated: BTreeSet<MessageType> = MessageType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_client_request())
        .filter(|t| !ignores_data(*t) && !matches!(t, MessageType::Ping | MessageType::SaveSession))
        .collect();
    assert_eq!(covered, validated);
}

#[test]
fn chat_messages_and_notes_over_the_limit_are_413() {
    let chat = |len: usize| json!({"message": "é".repeat(len / 2), "time": 1, "author": "a", "target": "t"});
    assert!(parse("CHAT", chat(MAX_CHAT_MESSAGE_BYTES)).is_ok());
    let err = parse("CHAT", chat(MAX_CHAT_MESSAGE_BYTES + 2)).unwrap_err();
    assert_eq!((err.code, err.kind), (413, ErrorType::InvalidRequest));
    assert_eq!(
        err.description,
        format!("Chat message too long: {} bytes, the limit is 8192 bytes.", MAX_CHAT_MESSAGE_BYTES + 2)
    );
    let note = |len: usize| json!({"time": 1, "speakers": [], "content": "x".repeat(len)});
    assert!(parse("ADD_NOTE", note(MAX_NOTE_BYTES)).is_ok());
    let err = parse("ADD_NOTE", note(140_000)).unwrap_err();
    assert_eq!((err.code, err.kind), (413, ErrorType::InvalidRequest));
    assert_eq!(err.description, "Note too long: 140000 bytes, the limit is 8192 bytes.");
}

#[test]
fn save_session_drops_the_chat_totals_the_server_added() {
    let data = json!({"id": "s", "participants": [{"id": "p", "chat": [], "chat_total": 5}, 3]});
    assert_eq!(
        parse("SAVE_SESSION", data),
        Ok(ClientRequest::SaveSession(json!({"id": "s", "participants": [{"id": "p", "chat": []}, 3]})))
    );
}

#[test]
fn the_full_description_reads_well() {
    let err = parse("KICK_PARTICIPANT", json!({"participant_id": "p", "reason": 5})).unwrap_err();
    assert_eq!(
        err.description,
        "Message data is not a valid KickRequest.: data.reason: invalid type: integer `5`, expected a string"
    );
    let err = parse("CONNECTION_OFFER", json!({"id": "s"})).unwrap_err();
    assert_eq!(err.description, "Invalid connection offer dict: data: missing field `offer`");
}

fn ignores_data(kind: MessageType) -> bool {
    use MessageType as T;
    matches!(
        kind,
        T::GetSessionList
            | T::LeaveExperiment
            | T::StartExperiment
            | T::StopExperiment
            | T::GetFiltersConfig
            | T::GetRecordingList
            | T::CheckPostProcessing
    )
}

#[test]
fn ignored_data_accepts_anything() {
    for &kind in MessageType::ALL.iter().filter(|t| ignores_data(**t)) {
        for data in odd_data() {
            let req = parse(kind.as_str(), data.clone());
            assert_eq!(req.map(|r| r.kind()), Ok(kind), "{kind} {data}");
        }
    }
    for data in odd_data() {
        assert_eq!(parse("PING", data.clone()), Ok(ClientRequest::Ping(data.clone())));
        assert_eq!(parse("SAVE_SESSION", data.clone()), Ok(ClientRequest::SaveSession(data)));
    }
}

#[test]
fn server_only_types_are_recognised_whatever_their_data() {
    let server_only = [
        "TEST",
        "SUCCESS",
        "ERROR",
        "SESSION_DESCRIPTION",
        "CONNECTION_PROPOSAL",
        "CONNECTION_ANSWER",
        "SAVED_SESSION",
        "SESSION_CHANGE",
        "DELETED_SESSION",
        "SESSION_LIST",
        "SESSION",
        "EXPERIMENT_CREATED",
        "EXPERIMENT_STARTED",
        "EXPERIMENT_ENDED",
        "KICK_NOTIFICATION",
        "BAN_NOTIFICATION",
        "FILTERS_CONFIG",
        "FILTERS_DATA",
        "GET_VIDEO_FILTERS",
        "GET_AUDIO_FILTERS",
        "ACTIVE_VIDEO_FILTERS",
        "ACTIVE_AUDIO_FILTERS",
        "RECORDING_LIST",
        "EXPERIMENTER_JOINED",
        "CHAT_HISTORY",
        "SESSION_LIST_END",
        "SESSION_LIST_PART",
        "GROUP_FILTERS_DATA",
    ];
    for name in server_only {
        let kind: MessageType = name.parse().unwrap();
        assert!(!kind.is_client_request(), "{name}");
        for data in odd_data() {
            assert_eq!(parse(name, data), Ok(ClientRequest::ServerOnly(kind)), "{name}");
        }
    }
    let client_count = MessageType::ALL.iter().filter(|t| t.is_client_request()).count();
    assert_eq!(client_count + server_only.len(), MessageType::ALL.len());
}

#[test]
fn no_input_panics_and_every_error_has_the_messages_text() {
    let prefixes = |kind: MessageType| -> &'static str {
        use MessageType as T;
        match kind {
            T::Pong => text::INVALID_PONG,
            T::ConnectionOffer => text::INVALID_CONNECTION_OFFER,
            T::AddIceCandidate => text::INVALID_ADD_ICE_CANDIDATE,
            T::GetSession | T::DeleteSession | T::CreateExperiment | T::JoinExperiment => {
                text::INVALID_SESSION_ID_REQUEST
            }
            T::AddNote => text::INVALID_NOTE,
            T::Chat => text::INVALID_CHAT_MESSAGE,
            T::KickParticipant | T::BanParticipant => text::INVALID_KICK_REQUEST,
            T::Mute => text::INVALID_MUTE_REQUEST,
            T::SetFilters => text::INVALID_SET_FILTERS_REQUEST,
            T::SetGroupFilters => text::INVALID_SET_GROUP_FILTERS_REQUEST,
            T::GetFiltersData => text::INVALID_GET_FILTERS_DATA,
            T::GetFiltersDataSendToParticipant => text::INVALID_GET_FILTERS_DATA_SEND_TO_PARTICIPANT,
            T::UpdateReadMessageTime => text::INVALID_UPDATE_READ_MESSAGE_TIME,
            T::PostProcessingVideo => text::INVALID_POST_PROCESSING,
            T::GetChatHistory => text::INVALID_GET_CHAT_HISTORY,
            T::GetGroupFiltersData => text::INVALID_GET_GROUP_FILTERS_DATA,
            _ => "<never fails>",
        }
    };
    let mut datas = odd_data();
    datas.extend(malformed_cases().into_iter().map(|(_, d, _, _)| d));
    for &kind in MessageType::ALL {
        for data in &datas {
            match parse(kind.as_str(), data.clone()) {
                Ok(req) => assert_eq!(req.kind(), kind),
                Err(err) => {
                    assert_eq!((err.code, err.kind), (400, ErrorType::InvalidDatatype), "{kind} {data}");
                    let prefix = format!("{}: data", prefixes(kind));
                    assert!(err.description.starts_with(&prefix), "{kind} {data}: {}", err.description);
                }
            }
        }
    }
}

#[test]
fn raw_frames_of_every_kind_never_panic() {
    let mut frames: Vec<String> = vec![
        r#""x""#.into(),
        "5".into(),
        "null".into(),
        "[]".into(),
        r#"{"type":5,"data":{}}"#.into(),
        r#"{"type":"CHAT","data":{"message":"\ud800","time":1,"author":"a","target":"b"}}"#.into(),
        r#"{"type":"CHAT","data":{"message":"m","time":1e400,"author":"a","target":"b"}}"#.into(),
        r#"{"type":"ADD_NOTE","data":{"time":-9223372036854775809,"speakers":[],"content":""}}"#.into(),
        r#"{"type":"ADD_NOTE","data":{"time":9223372036854775807,"speakers":[],"content":""}}"#.into(),
        r#"{"type":"SET_FILTERS","data":{"participant_id":"all","audio_filters":[],"video_filters":[],"participant_id":"x"}}"#.into(),
    ];
    frames.push(format!(r#"{{"type":"SAVE_SESSION","data":{}{}}}"#, "[".repeat(127), "]".repeat(127)));
    frames.push(format!(r#"{{"type":"MUTE","data":{}{}}}"#, "{\"a\":".repeat(200), "}".repeat(200)));
    for frame in &frames {
        for is_text in [true, false] {
            if let Ok(env) = parse_frame(frame.as_bytes(), is_text, DEFAULT_MAX_FRAME_LEN) {
                let _ = parse_request(env, &FakeFilters);
            }
        }
    }
    // Duplicate keys: the last one wins (as in Python's json), then validation applies.
    let env = parse_frame(frames[9].as_bytes(), true, DEFAULT_MAX_FRAME_LEN).unwrap();
    let Ok(ClientRequest::SetFilters(req)) = parse_request(env, &FakeFilters) else {
        panic!("duplicate key frame parses");
    };
    assert_eq!(req.participant_id, "x");
}

#[test]
fn canonical_filter_names() {
    assert_eq!(canonical_filter_name("AUDIO_SPEAKING_TIME"), "SPEAKING_TIME");
    assert_eq!(canonical_filter_name("SPEAKING_TIME"), "SPEAKING_TIME");
    assert_eq!(canonical_filter_name("ROTATION"), "ROTATION");
    assert_eq!(canonical_filter_name(""), "");
}

#[test]
fn from_data_serves_other_validators() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Thing {
        #[allow(dead_code)]
        n: i64,
    }
    let err = from_data::<Thing>(json!({"n": "1"}), text::INVALID_SESSION).unwrap_err();
    assert_eq!(
        err.description,
        "Message data is not a valid Session object.: data.n: invalid type: string \"1\", expected i64"
    );
    assert_eq!(err, invalid_data(text::INVALID_SESSION, "data.n", "invalid type: string \"1\", expected i64"));
}

/// Deterministic fuzzing: valid messages of every type, mutated byte by byte, plus random
/// bytes, never panic the parser and always yield a reply (a request or a WireError).
#[test]
fn mutated_and_random_frames_never_panic() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let samples: Vec<String> = MessageType::ALL
        .iter()
        .map(|t| {
            json!({"type": t.as_str(), "data": {"session_id": "abc", "participant_id": "p", "id": "x",
                "offer": {"sdp": "v=0", "type": "offer"}, "message": "m", "time": 1, "author": "a", "target": "b",
                "audio_filters": [filter("ROTATION", "r")], "video_filters": [], "reason": "r",
                "mute_video": true, "mute_audio": false, "filter_id": "all", "filter_name": "ROTATION",
                "filter_channel": "video", "speakers": [], "content": "c"}})
            .to_string()
        })
        .collect();
    let names = FakeFilters;
    let mut replies = 0usize;
    for round in 0..20_000 {
        let mut frame = samples[round % samples.len()].clone().into_bytes();
        match rnd() % 4 {
            0 => {
                let i = (rnd() as usize) % frame.len();
                frame[i] = rnd() as u8;
            }
            1 => {
                let i = (rnd() as usize) % frame.len();
                frame.truncate(i);
            }
            2 => {
                let i = (rnd() as usize) % frame.len();
                let b = b"{}[]\":,0-e\\u0000"[(rnd() % 16) as usize];
                frame.insert(i, b);
            }
            _ => frame = (0..rnd() % 64).map(|_| rnd() as u8).collect(),
        }
        let is_text = rnd() % 8 != 0;
        let outcome = parse_frame(&frame, is_text, 1 << 20).and_then(|env| parse_request(env, &names));
        if let Err(e) = &outcome {
            assert!(matches!(e.code, 0 | 400 | 403 | 413), "unexpected code {e:?}");
        }
        replies += 1;
    }
    assert_eq!(replies, 20_000);
}
