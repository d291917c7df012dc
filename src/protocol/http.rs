//! Bodies of the HTTP signalling endpoints `POST /offer` and `POST /addIceCandidate`, and of
//! the other JSON endpoints (`/hello-world`, `/healthz`, `/web/filters.json`).
//!
//! Both signalling requests are JSON wrapped in `{"request": {...}}`. Errors are [`WireError`]s; the HTTP
//! layer answers with status = `code` and body = [`error_body`].

use super::error::{ErrorType, WireError};
use super::message_type::MessageType;
use super::request::{json_kind, AddIceCandidateDict, IceCandidate, SdpType, SessionDescription};
use super::text;
use crate::session::{ParticipantId, SessionId};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::fmt;

/// Longest id accepted in a signalling body (`session_id`, `participant_id`,
/// `connection_id`, the candidate's `id`, `sdpMid` and `usernameFragment`). Real ones are
/// 10–36 characters; the bound keeps unauthenticated input small.
pub const MAX_ID_LEN: usize = 256;

/// Longest ICE candidate line accepted. A real one is about 100–200 bytes (RFC 8839 grammar:
/// foundation ≤ 32, an address, a port, a type and a few extensions).
pub const MAX_CANDIDATE_LEN: usize = 1024;

/// Who is offering, with the credentials the hub checks (nothing is checked here).
#[derive(Clone, PartialEq, Eq)]
pub enum OfferUser {
    Participant {
        session_id: SessionId,
        participant_id: ParticipantId,
    },
    /// The password as sent. Not compared here; its `Debug` output is redacted.
    Experimenter {
        password: String,
    },
}

impl fmt::Debug for OfferUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferUser::Participant { session_id, participant_id } => f
                .debug_struct("Participant")
                .field("session_id", session_id)
                .field("participant_id", participant_id)
                .finish(),
            OfferUser::Experimenter { .. } => f.debug_struct("Experimenter").field("password", &"<redacted>").finish(),
        }
    }
}

/// A parsed `POST /offer` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRequest {
    /// The client's `sdp` and `type` (always `offer`: other RTCSdpTypes are refused).
    pub offer: SessionDescription,
    pub user: OfferUser,
    /// The client's `connection_id` (SynthARium dev), used to route trickled ICE candidates;
    /// a fresh UUID v4 when the client sent none (SynthARium main).
    pub connection_id: String,
    /// `connection_id` was generated here because the request had none.
    pub connection_id_generated: bool,
    /// (exphub, cluster mode) An experimenter's `session_id`: the experiment this connection
    /// is for, so that the offer is routed to the node running it. SynthARium ignores the key,
    /// and so does exphub when it is not a string of at most [`MAX_ID_LEN`] bytes.
    pub session_hint: Option<SessionId>,
}

/// Parses a `POST /offer` request.
///
/// Checks in SynthARium's order (`docs/protocol.md`, POST /offer), first failure wins:
/// 1. media type of `content_type` (parameters ignored, case-insensitive) is not
///    `application/json` → `415 INVALID_REQUEST` "Content type must be 'application/json'.";
/// 2. body is not JSON, or has no `request` object → `400 INVALID_DATATYPE`
///    "Failed to parse request.";
/// 3. missing keys of `sdp, type, user_type` + (`session_id, participant_id` for
///    participants | `experimenter_password` for experimenters) → `400 INVALID_REQUEST`
///    "Missing request parameters: ['type', 'sdp']." (Python list repr, in that order;
///    `null` values count as present, other keys are ignored);
/// 4. `user_type` is not `"participant"`/`"experimenter"` → `400 INVALID_REQUEST`
///    "Invalid user type.";
/// 5. `sdp` is not a string or `type` not an RTCSdpType → `400 INVALID_REQUEST`
///    "Failed to parse offer.";
///    (exphub) a valid type other than `offer` → the same error, with
///    `": request.type: expected \"offer\", got \"answer\""` appended;
/// 6. (exphub) `session_id`, `participant_id`, `experimenter_password` or a present
///    `connection_id` is not a string → `400 INVALID_DATATYPE`
///    `"Failed to parse request.: request.<key>: expected a string, got <kind>"`; an id longer
///    than [`MAX_ID_LEN`] → `"Failed to parse request.: request.<key>: longer than 256 bytes"`.
pub fn parse_offer_request(content_type: Option<&str>, body: &[u8]) -> Result<OfferRequest, WireError> {
    check_content_type(content_type)?;
    let request = unwrap_request(body)?;

    let user_type = request.get("user_type").and_then(Value::as_str);
    let mut required = vec!["sdp", "type", "user_type"];
    match user_type {
        Some("participant") => required.extend(["session_id", "participant_id"]),
        Some("experimenter") => required.push("experimenter_password"),
        _ => {}
    }
    let missing: Vec<&str> = required.into_iter().filter(|k| !request.contains_key(*k)).collect();
    if !missing.is_empty() {
        return Err(WireError::new(
            400,
            ErrorType::InvalidRequest,
            format!("{} {}.", text::MISSING_REQUEST_PARAMETERS, python_list_repr(&missing)),
        ));
    }

    let is_participant = match user_type {
        Some("participant") => true,
        Some("experimenter") => false,
        _ => return Err(WireError::new(400, ErrorType::InvalidRequest, text::INVALID_USER_TYPE)),
    };

    let failed_offer = || WireError::new(400, ErrorType::InvalidRequest, text::FAILED_TO_PARSE_OFFER);
    let sdp = request.get("sdp").and_then(Value::as_str).ok_or_else(failed_offer)?;
    let kind = request.get("type").and_then(Value::as_str).and_then(SdpType::from_wire).ok_or_else(failed_offer)?;
    if kind != SdpType::Offer {
        // SynthARium answered an `answer` or `rollback` as if it were an offer.
        return Err(WireError::new(
            400,
            ErrorType::InvalidRequest,
            format!("{}: request.type: expected \"offer\", got \"{}\"", text::FAILED_TO_PARSE_OFFER, kind.as_str()),
        ));
    }
    let offer = SessionDescription { sdp: sdp.to_owned(), kind };

    let user = if is_participant {
        OfferUser::Participant {
            session_id: id_field(&request, "session_id")?.into(),
            participant_id: id_field(&request, "participant_id")?.into(),
        }
    } else {
        OfferUser::Experimenter { password: string_field(&request, "experimenter_password")? }
    };

    let (connection_id, connection_id_generated) = if request.contains_key("connection_id") {
        (id_field(&request, "connection_id")?, false)
    } else {
        (uuid::Uuid::new_v4().to_string(), true)
    };

    let session_hint = match &user {
        OfferUser::Experimenter { .. } => request
            .get("session_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
            .map(SessionId::from),
        OfferUser::Participant { .. } => None,
    };

    Ok(OfferRequest { offer, user, connection_id, connection_id_generated, session_hint })
}

/// Parses a `POST /addIceCandidate` request:
/// `{"request": {"id": <connection_id>, "candidate": RTCIceCandidateDict}}`.
///
/// Content type and JSON errors as steps 1–2 of [`parse_offer_request`]; a `request` that is
/// not a valid AddIceCandidate dict → `400 INVALID_REQUEST` "Invalid candidate."; (exphub) a
/// candidate line longer than [`MAX_CANDIDATE_LEN`], or an `id`, `sdpMid` or
/// `usernameFragment` longer than [`MAX_ID_LEN`] → the same error with
/// `": request.candidate.candidate: longer than 1024 bytes"` (the field's path) appended.
/// Returns the connection id and the candidate (an empty `candidate` string is the
/// end-of-candidates marker; SynthARium ignores it).
pub fn parse_add_ice_candidate_request(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(String, IceCandidate), WireError> {
    check_content_type(content_type)?;
    let request = unwrap_request(body)?;
    let dict: AddIceCandidateDict = serde_json::from_value(Value::Object(request))
        .map_err(|_| WireError::new(400, ErrorType::InvalidRequest, text::INVALID_CANDIDATE))?;
    let c = &dict.candidate;
    let fields = [
        ("request.id", Some(&dict.id), MAX_ID_LEN),
        ("request.candidate.candidate", Some(&c.candidate), MAX_CANDIDATE_LEN),
        ("request.candidate.sdpMid", c.sdp_mid.as_ref(), MAX_ID_LEN),
        ("request.candidate.usernameFragment", c.username_fragment.as_ref(), MAX_ID_LEN),
    ];
    for (path, value, max) in fields {
        if value.is_some_and(|v| v.len() > max) {
            return Err(WireError::new(
                400,
                ErrorType::InvalidRequest,
                format!("{}: {path}: longer than {max} bytes", text::INVALID_CANDIDATE),
            ));
        }
    }
    Ok((dict.id, dict.candidate))
}

/// The `/offer` success body:
/// `{"type":"SESSION_DESCRIPTION","data":{"sdp","type":"answer","participant_summary"?}}`
/// (`participant_summary` only for participants).
pub fn offer_answer_body(sdp: &str, participant_summary: Option<Value>) -> Value {
    let mut data = Map::new();
    data.insert("sdp".into(), Value::String(sdp.to_owned()));
    data.insert("type".into(), Value::String(SdpType::Answer.as_str().to_owned()));
    if let Some(summary) = participant_summary {
        data.insert("participant_summary".into(), summary);
    }
    json!({ "type": MessageType::SessionDescription.as_str(), "data": data })
}

/// The `/addIceCandidate` success body:
/// `{"type":"SUCCESS","data":{"type":"ADD_ICE_CANDIDATE","description":"Ice candidate was succesfully received."}}`.
pub fn add_ice_candidate_success_body() -> Value {
    json!({
        "type": MessageType::Success.as_str(),
        "data": { "type": "ADD_ICE_CANDIDATE", "description": text::ICE_CANDIDATE_RECEIVED },
    })
}

/// An HTTP error body: `{"type":"ERROR","data":{"code","type","description"}}`.
pub fn error_body(error: &WireError) -> Value {
    json!({
        "type": MessageType::Error.as_str(),
        "data": {
            "code": error.code,
            "type": error.kind.as_str(),
            "description": error.description,
        },
    })
}

/// Step 1: `application/json` (parameters such as `charset` ignored, case-insensitive).
fn check_content_type(content_type: Option<&str>) -> Result<(), WireError> {
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(WireError::new(415, ErrorType::InvalidRequest, text::CONTENT_TYPE_NOT_JSON))
    }
}

/// Step 2: the body is JSON and its `request` is an object. (SynthARium answered a missing or
/// non-object `request` with a bare 500; exphub answers like a non-JSON body.)
fn unwrap_request(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    let failed = || WireError::new(400, ErrorType::InvalidDatatype, text::FAILED_TO_PARSE_REQUEST);
    let Ok(Value::Object(mut outer)) = serde_json::from_slice::<Value>(body) else {
        return Err(failed());
    };
    match outer.remove("request") {
        Some(Value::Object(request)) => Ok(request),
        _ => Err(failed()),
    }
}

/// A key known to be present that must hold a string (step 6).
fn string_field(request: &Map<String, Value>, key: &str) -> Result<String, WireError> {
    match request.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(WireError::new(
            400,
            ErrorType::InvalidDatatype,
            format!(
                "{}: request.{key}: expected a string, got {}",
                text::FAILED_TO_PARSE_REQUEST,
                other.map_or("nothing", json_kind)
            ),
        )),
    }
}

/// A string field that names something (an id): at most [`MAX_ID_LEN`] bytes.
fn id_field(request: &Map<String, Value>, key: &str) -> Result<String, WireError> {
    let s = string_field(request, key)?;
    if s.len() > MAX_ID_LEN {
        return Err(WireError::new(
            400,
            ErrorType::InvalidDatatype,
            format!("{}: request.{key}: longer than {MAX_ID_LEN} bytes", text::FAILED_TO_PARSE_REQUEST),
        ));
    }
    Ok(s)
}

/// Python's `repr(list_of_str)` for plain ASCII keys: `['a', 'b']`.
fn python_list_repr(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("'{item}'")).collect();
    format!("[{}]", quoted.join(", "))
}

// The bodies of the other JSON endpoints. Fields are declared in the order the server has
// always sent them (alphabetical).

/// `GET /hello-world`: SynthARium's liveness body, `{"text": "Hello World", "timestamp"}`.
#[derive(Debug, Serialize)]
pub struct HelloWorld {
    text: &'static str,
    /// Like Python's `str(datetime.now())`.
    timestamp: String,
}

impl HelloWorld {
    pub fn new(timestamp: String) -> Self {
        Self { text: "Hello World", timestamp }
    }
}

/// `GET /healthz`: `{"status": "ok"}`.
#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
}

impl Health {
    pub const OK: Health = Health { status: "ok" };
}

/// One entry of `GET /web/filters.json`: what the dashboard shows of a filter.
#[derive(Debug, Serialize)]
pub struct FilterListing {
    /// `"video"`, `"audio"` or `"both"`.
    pub channel: &'static str,
    pub description: &'static str,
    /// A group filter.
    pub group: bool,
    pub name: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");

    fn body(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "request": request })).unwrap()
    }

    fn participant() -> Value {
        json!({"sdp": "v=0\r\n", "type": "offer", "user_type": "participant",
               "session_id": "ae839e5e6f", "participant_id": "9ba5fdccde",
               "connection_id": "c0ffee"})
    }

    fn experimenter() -> Value {
        json!({"sdp": "v=0\r\n", "type": "offer", "user_type": "experimenter",
               "experimenter_password": "secret", "connection_id": "c0ffee"})
    }

    fn err(code: u16, kind: ErrorType, description: &str) -> WireError {
        WireError::new(code, kind, description)
    }

    #[test]
    fn participant_offer_parses() {
        let req = parse_offer_request(JSON, &body(participant())).unwrap();
        assert_eq!(req.offer, SessionDescription { sdp: "v=0\r\n".into(), kind: SdpType::Offer });
        assert_eq!(
            req.user,
            OfferUser::Participant { session_id: "ae839e5e6f".into(), participant_id: "9ba5fdccde".into() }
        );
        assert_eq!(req.connection_id, "c0ffee");
        assert!(!req.connection_id_generated);
    }

    #[test]
    fn experimenter_offer_parses_and_hides_the_password_in_debug() {
        let req = parse_offer_request(Some("Application/JSON; charset=utf-8"), &body(experimenter())).unwrap();
        assert_eq!(req.user, OfferUser::Experimenter { password: "secret".into() });
        let debug = format!("{req:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn an_experimenters_session_id_is_a_routing_hint_and_never_an_error() {
        assert_eq!(parse_offer_request(JSON, &body(experimenter())).unwrap().session_hint, None);
        let mut r = experimenter();
        r["session_id"] = json!("ae839e5e6f");
        assert_eq!(parse_offer_request(JSON, &body(r.clone())).unwrap().session_hint, Some("ae839e5e6f".into()));
        for ignored in [json!(7), json!(null), json!(""), json!("x".repeat(MAX_ID_LEN + 1))] {
            r["session_id"] = ignored.clone();
            assert_eq!(parse_offer_request(JSON, &body(r.clone())).unwrap().session_hint, None, "{ignored}");
        }
        assert_eq!(
            parse_offer_request(JSON, &body(participant())).unwrap().session_hint,
            None,
            "participants: in user"
        );
    }

    #[test]
    fn extra_keys_are_ignored_and_missing_connection_id_is_generated() {
        let mut r = participant();
        r.as_object_mut().unwrap().remove("connection_id");
        r["unrelated"] = json!([1, 2]);
        let req = parse_offer_request(JSON, &body(r)).unwrap();
        assert!(req.connection_id_generated);
        let uuid = uuid::Uuid::parse_str(&req.connection_id).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        let again = parse_offer_request(JSON, &body(participant_without_cid())).unwrap();
        assert_ne!(again.connection_id, req.connection_id);
    }

    fn participant_without_cid() -> Value {
        let mut r = participant();
        r.as_object_mut().unwrap().remove("connection_id");
        r
    }

    #[test]
    fn only_an_offer_is_answered() {
        let req = parse_offer_request(JSON, &body(experimenter())).unwrap();
        assert_eq!(req.offer.kind, SdpType::Offer);
        for t in ["pranswer", "answer", "rollback"] {
            let mut r = experimenter();
            r["type"] = json!(t);
            let e = parse_offer_request(JSON, &body(r)).unwrap_err();
            assert_eq!((e.code, e.kind), (400, ErrorType::InvalidRequest), "{t}");
            assert_eq!(e.description, format!("Failed to parse offer.: request.type: expected \"offer\", got \"{t}\""));
        }
    }

    #[test]
    fn overlong_ids_and_candidates_are_refused() {
        let long_id = "x".repeat(MAX_ID_LEN + 1);
        for key in ["session_id", "participant_id", "connection_id"] {
            let mut r = participant();
            r[key] = json!(long_id);
            let e = parse_offer_request(JSON, &body(r)).unwrap_err();
            assert_eq!((e.code, e.kind), (400, ErrorType::InvalidDatatype), "{key}");
            assert_eq!(
                e.description,
                format!("Failed to parse request.: request.{key}: longer than {MAX_ID_LEN} bytes")
            );
        }
        let mut r = participant();
        r["connection_id"] = json!("x".repeat(MAX_ID_LEN));
        assert!(parse_offer_request(JSON, &body(r)).is_ok(), "the limit itself is fine");

        type Mutation = (fn(&mut Value), &'static str);
        let cases: Vec<Mutation> = vec![
            (|r| r["id"] = json!("i".repeat(MAX_ID_LEN + 1)), "request.id"),
            (|r| r["candidate"]["candidate"] = json!("c".repeat(MAX_CANDIDATE_LEN + 1)), "request.candidate.candidate"),
            (|r| r["candidate"]["sdpMid"] = json!("m".repeat(MAX_ID_LEN + 1)), "request.candidate.sdpMid"),
            (
                |r| r["candidate"]["usernameFragment"] = json!("u".repeat(MAX_ID_LEN + 1)),
                "request.candidate.usernameFragment",
            ),
        ];
        for (mutate, path) in cases {
            let mut r = candidate_request();
            mutate(&mut r);
            let e = parse_add_ice_candidate_request(JSON, &body(r)).unwrap_err();
            assert_eq!((e.code, e.kind), (400, ErrorType::InvalidRequest), "{path}");
            assert!(
                e.description.starts_with(&format!("Invalid candidate.: {path}: longer than")),
                "{}",
                e.description
            );
        }
        // A 200 KiB candidate, as the memory probe sent them.
        let mut r = candidate_request();
        r["candidate"]["candidate"] = json!("a".repeat(200 * 1024));
        assert_eq!(parse_add_ice_candidate_request(JSON, &body(r)).unwrap_err().code, 400);
        let mut r = candidate_request();
        r["candidate"]["candidate"] = json!("c".repeat(MAX_CANDIDATE_LEN));
        assert!(parse_add_ice_candidate_request(JSON, &body(r)).is_ok());
    }

    #[test]
    fn offer_errors_follow_synthariums_order() {
        let ct_err = err(415, ErrorType::InvalidRequest, "Content type must be 'application/json'.");
        let parse_err = err(400, ErrorType::InvalidDatatype, "Failed to parse request.");
        let user_err = err(400, ErrorType::InvalidRequest, "Invalid user type.");
        let offer_err = err(400, ErrorType::InvalidRequest, "Failed to parse offer.");
        let missing = |s: &str| err(400, ErrorType::InvalidRequest, &format!("Missing request parameters: {s}."));

        let cases: Vec<(Option<&str>, Vec<u8>, WireError)> = vec![
            // 1. content type, before anything else (even an empty body).
            (None, b"".to_vec(), ct_err.clone()),
            (Some("text/plain"), body(participant()), ct_err.clone()),
            (Some("application/jsonx"), body(participant()), ct_err.clone()),
            (Some(""), body(participant()), ct_err.clone()),
            // 2. JSON / request object.
            (JSON, b"".to_vec(), parse_err.clone()),
            (JSON, b"{not json".to_vec(), parse_err.clone()),
            (JSON, b"\xff\xfe".to_vec(), parse_err.clone()),
            (JSON, b"5".to_vec(), parse_err.clone()),
            (JSON, b"null".to_vec(), parse_err.clone()),
            (JSON, b"[]".to_vec(), parse_err.clone()),
            (JSON, b"{}".to_vec(), parse_err.clone()),
            (JSON, serde_json::to_vec(&participant()).unwrap(), parse_err.clone()),
            (JSON, br#"{"request": "sdp type user_type"}"#.to_vec(), parse_err.clone()),
            (JSON, br#"{"request": null}"#.to_vec(), parse_err.clone()),
            // 3. missing keys, Python list repr in the required list's order.
            (JSON, body(json!({})), missing("['sdp', 'type', 'user_type']")),
            (
                JSON,
                body(json!({"user_type": "participant"})),
                missing("['sdp', 'type', 'session_id', 'participant_id']"),
            ),
            (JSON, body(json!({"user_type": "experimenter", "sdp": 1})), missing("['type', 'experimenter_password']")),
            (JSON, body(json!({"user_type": "admin", "type": null})), missing("['sdp']")),
            (
                JSON,
                body(json!({"sdp": "", "type": "offer", "user_type": "participant", "participant_id": "p"})),
                missing("['session_id']"),
            ),
            // 4. user type (missing-key check passed).
            (JSON, body(json!({"sdp": "", "type": "offer", "user_type": "admin"})), user_err.clone()),
            (JSON, body(json!({"sdp": "", "type": "offer", "user_type": null})), user_err.clone()),
            (JSON, body(json!({"sdp": "", "type": "bogus", "user_type": 5})), user_err.clone()),
            // 5. offer.
            (
                JSON,
                body(json!({"sdp": "", "type": "bogus", "user_type": "experimenter", "experimenter_password": "x"})),
                offer_err.clone(),
            ),
            (
                JSON,
                body(json!({"sdp": "", "type": "OFFER", "user_type": "experimenter", "experimenter_password": "x"})),
                offer_err.clone(),
            ),
            (
                JSON,
                body(json!({"sdp": null, "type": "offer", "user_type": "experimenter", "experimenter_password": "x"})),
                offer_err.clone(),
            ),
            (
                JSON,
                body(json!({"sdp": "", "type": 1, "user_type": "participant", "session_id": 1, "participant_id": 2})),
                offer_err.clone(),
            ),
        ];
        for (i, (ct, b, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parse_offer_request(ct, &b), Err(expected), "case {i}");
        }
    }

    #[test]
    fn non_string_credentials_are_invalid_datatype() {
        for (key, value) in
            [("session_id", json!(5)), ("participant_id", json!(null)), ("connection_id", json!({"a": 1}))]
        {
            let mut r = participant();
            r[key] = value;
            let e = parse_offer_request(JSON, &body(r)).unwrap_err();
            assert_eq!((e.code, e.kind), (400, ErrorType::InvalidDatatype));
            assert!(
                e.description.starts_with(&format!("Failed to parse request.: request.{key}: expected a string")),
                "{}",
                e.description
            );
        }
        let mut r = experimenter();
        r["experimenter_password"] = json!(["secret"]);
        let e = parse_offer_request(JSON, &body(r)).unwrap_err();
        assert_eq!(
            e.description,
            "Failed to parse request.: request.experimenter_password: expected a string, got an array"
        );
    }

    fn candidate_request() -> Value {
        json!({"id": "c0ffee", "candidate": {
            "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
            "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"}})
    }

    #[test]
    fn ice_candidate_request_parses() {
        let (id, c) = parse_add_ice_candidate_request(JSON, &body(candidate_request())).unwrap();
        assert_eq!(id, "c0ffee");
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_m_line_index, Some(0));
        assert_eq!(c.username_fragment.as_deref(), Some("abcd"));

        // Nulls as RTCIceCandidate.toJSON() may produce them; empty end-of-candidates.
        let mut r = candidate_request();
        r["candidate"] = json!({"candidate": "", "sdpMid": null, "sdpMLineIndex": null, "usernameFragment": null});
        let (_, c) = parse_add_ice_candidate_request(JSON, &body(r)).unwrap();
        assert_eq!(
            c,
            IceCandidate { candidate: String::new(), sdp_mid: None, sdp_m_line_index: None, username_fragment: None }
        );
    }

    #[test]
    fn ice_candidate_request_errors() {
        let ct_err = err(415, ErrorType::InvalidRequest, "Content type must be 'application/json'.");
        let parse_err = err(400, ErrorType::InvalidDatatype, "Failed to parse request.");
        let cand_err = err(400, ErrorType::InvalidRequest, "Invalid candidate.");
        assert_eq!(parse_add_ice_candidate_request(Some("text/html"), b"x"), Err(ct_err));
        assert_eq!(parse_add_ice_candidate_request(JSON, b"x"), Err(parse_err.clone()));
        assert_eq!(parse_add_ice_candidate_request(JSON, b"{}"), Err(parse_err.clone()));
        assert_eq!(parse_add_ice_candidate_request(JSON, b"[1]"), Err(parse_err));

        let mutations: Vec<fn(&mut Value)> = vec![
            |r| *r = json!({}),
            |r| *r = json!({"id": "x"}),
            |r| r["id"] = json!(1),
            |r| r["extra"] = json!(1),
            |r| r["candidate"] = json!("candidate:1"),
            |r| r["candidate"]["candidate"] = json!(null),
            |r| r["candidate"]["sdpMLineIndex"] = json!(-1),
            |r| r["candidate"]["sdpMLineIndex"] = json!(0.5),
            |r| r["candidate"]["sdpMLineIndex"] = json!("0"),
            |r| r["candidate"]["sdpMid"] = json!(0),
            |r| r["candidate"]["foundation"] = json!("1"),
            |r| {
                r["candidate"].as_object_mut().unwrap().remove("usernameFragment");
            },
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut r = candidate_request();
            mutate(&mut r);
            assert_eq!(parse_add_ice_candidate_request(JSON, &body(r)), Err(cand_err.clone()), "mutation {i}");
        }
    }

    #[test]
    fn success_and_error_bodies() {
        assert_eq!(
            offer_answer_body("v=0", None),
            json!({"type": "SESSION_DESCRIPTION", "data": {"sdp": "v=0", "type": "answer"}})
        );
        assert_eq!(
            offer_answer_body("v=0", Some(json!({"participant_name": "Max"}))),
            json!({"type": "SESSION_DESCRIPTION",
                   "data": {"sdp": "v=0", "type": "answer", "participant_summary": {"participant_name": "Max"}}})
        );
        assert_eq!(
            add_ice_candidate_success_body(),
            json!({"type": "SUCCESS", "data": {"type": "ADD_ICE_CANDIDATE",
                   "description": "Ice candidate was succesfully received."}})
        );
        assert_eq!(
            error_body(&err(401, ErrorType::InvalidRequest, "Invalid or missing experimenter password.")),
            json!({"type": "ERROR", "data": {"code": 401, "type": "INVALID_REQUEST",
                   "description": "Invalid or missing experimenter password."}})
        );
    }

    #[test]
    fn bodies_of_the_other_json_endpoints_are_as_always_sent() {
        let hello = HelloWorld::new("2026-12-03 09:00:00.123".into());
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"text":"Hello World","timestamp":"2026-12-03 09:00:00.123"}"#
        );
        assert_eq!(serde_json::to_string(&Health::OK).unwrap(), r#"{"status":"ok"}"#);
        let f = FilterListing { name: "MIRROR", channel: "video", group: false, description: "Mirrors." };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"channel":"video","description":"Mirrors.","group":false,"name":"MIRROR"}"#
        );
    }
}
