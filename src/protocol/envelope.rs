//! Inbound frames → [`Envelope`]: the `{"type", "data"}` shell, checked, `data` not yet typed.

use super::error::{ErrorType, WireError};
use super::message_type::MessageType;
use super::text;
use serde_json::Value;

/// A checked message envelope: a known `type` and its still untyped `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub kind: MessageType,
    pub data: serde_json::Value,
}

/// The error for every frame that is not a valid envelope (`docs/protocol.md` D1: no silent drops).
pub fn invalid_message() -> WireError {
    WireError::new(400, ErrorType::InvalidRequest, text::INVALID_MESSAGE)
}

/// Parses one data-channel frame into an [`Envelope`].
///
/// Checks, in this order:
/// 1. `frame.len() > max_len` → `413 INVALID_REQUEST` (checked first, so an oversized frame
///    is never looked into, whatever its kind);
/// 2. binary frame (`!is_text`), not UTF-8 JSON, not a JSON object, keys other than exactly
///    `type` and `data`, `type` not a string or not a [`MessageType`] →
///    `400 INVALID_REQUEST` "Received message is not a valid Message object.".
///
/// `data` may be any JSON value, including `null`; it is typed by
/// [`parse_request`](super::parse_request).
pub fn parse_frame(frame: &[u8], is_text: bool, max_len: usize) -> Result<Envelope, WireError> {
    if frame.len() > max_len {
        return Err(WireError::new(
            413,
            ErrorType::InvalidRequest,
            super::text::message_too_large(frame.len(), max_len),
        ));
    }
    if !is_text {
        return Err(invalid_message());
    }
    // serde_json bounds nesting depth (128), so hostile nesting is an error, not a stack overflow.
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(frame) else {
        return Err(invalid_message());
    };
    if map.len() != 2 {
        return Err(invalid_message());
    }
    let kind = match map.get("type") {
        Some(Value::String(name)) => name.parse::<MessageType>().map_err(|_| invalid_message())?,
        _ => return Err(invalid_message()),
    };
    // Two keys, one of them `type`: the other must be `data`.
    let data = map.remove("data").ok_or_else(invalid_message)?;
    Ok(Envelope { kind, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 1 << 20;

    fn parse(s: &str) -> Result<Envelope, WireError> {
        parse_frame(s.as_bytes(), true, MAX)
    }

    #[test]
    fn valid_envelopes_parse() {
        let env = parse(r#"{"type":"PING","data":{"sent":1}}"#).unwrap();
        assert_eq!(env.kind, MessageType::Ping);
        assert_eq!(env.data, json!({"sent": 1}));

        // Key order does not matter; data may be anything, including null.
        let env = parse(r#" {"data":null,"type":"GET_SESSION_LIST"} "#).unwrap();
        assert_eq!(env, Envelope { kind: MessageType::GetSessionList, data: Value::Null });

        // Server-only types are still valid envelopes (the hub answers 403, not 400).
        let env = parse(r#"{"type":"SUCCESS","data":{}}"#).unwrap();
        assert_eq!(env.kind, MessageType::Success);
        let env = parse(r#"{"type":"RECORDING_LIST","data":[]}"#).unwrap();
        assert_eq!(env.kind, MessageType::RecordingList);
    }

    #[test]
    fn invalid_envelopes_are_400_invalid_request() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_data = format!(r#"{{"type":"PING","data":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        let cases: Vec<&str> = vec![
            "",
            " ",
            "not json",
            "{",
            r#""x""#,
            "5",
            "null",
            "true",
            "[]",
            r#"[{"type":"PING","data":{}}]"#,
            "{}",
            r#"{"type":"PING"}"#,
            r#"{"data":{}}"#,
            r#"{"type":5,"data":{}}"#,
            r#"{"type":null,"data":{}}"#,
            r#"{"type":["PING"],"data":{}}"#,
            r#"{"type":"ping","data":{}}"#,
            r#"{"type":"NO_SUCH_TYPE","data":{}}"#,
            r#"{"type":"PING","data":{},"extra":1}"#,
            r#"{"type":"PING","dat":{}}"#,
            r#"{"type":"PING","data":{}} trailing"#,
            r#"{"type":"PING","data":{}}{"type":"PING","data":{}}"#,
            "\u{feff}{\"type\":\"PING\",\"data\":{}}",
            &deep,
            &deep_data,
        ];
        for case in cases {
            let err = parse(case).unwrap_err();
            assert_eq!(err, invalid_message(), "input: {:.80}", case);
            assert_eq!(err.code, 400);
            assert_eq!(err.kind, ErrorType::InvalidRequest);
            assert_eq!(err.description, "Received message is not a valid Message object.");
        }
    }

    #[test]
    fn invalid_utf8_is_400() {
        let frame = b"{\"type\":\"PING\",\"data\":\"\xff\xfe\"}";
        assert_eq!(parse_frame(frame, true, MAX), Err(invalid_message()));
    }

    #[test]
    fn binary_frames_are_400_even_when_they_hold_valid_json() {
        let frame = br#"{"type":"PING","data":{}}"#;
        assert_eq!(parse_frame(frame, false, MAX), Err(invalid_message()));
    }

    #[test]
    fn oversized_frames_are_413() {
        let frame = br#"{"type":"PING","data":"0123456789"}"#;
        assert!(parse_frame(frame, true, frame.len()).is_ok(), "exactly max_len is fine");
        for is_text in [true, false] {
            let err = parse_frame(frame, is_text, frame.len() - 1).unwrap_err();
            assert_eq!(err.code, 413);
            assert_eq!(err.kind, ErrorType::InvalidRequest);
            assert!(err.description.contains("too large"), "{}", err.description);
        }
    }
}
