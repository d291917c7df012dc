//! `http`: the axum routes. Thin: parse (via `protocol`), ask the hub, answer.
//!
//! - `POST /offer`, `POST /addIceCandidate`: SynthARium's signalling, with its exact error
//!   statuses and bodies (status = the error's `code`).
//! - `GET /hello-world`: SynthARium's liveness text.
//! - `GET /healthz`, `GET /metrics`: operations.
//! - `GET /`, `/room` (`/lobby`, `/meetingRoom`), `/web/...`: the web app (`web.rs`).

pub mod tls;
pub mod web;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::config::Config;
use crate::hub::HubHandle;
use crate::metrics::METRICS;
use crate::peer;
use crate::protocol::{self, WireError};

#[derive(Clone)]
pub struct AppState {
    pub hub: HubHandle,
    pub cfg: Arc<Config>,
}

/// Largest HTTP body accepted (an SDP offer is a few KiB).
const MAX_BODY: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/offer", post(offer))
        .route("/addIceCandidate", post(add_ice_candidate))
        .route("/hello-world", get(hello_world))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/recordings/{session_id}/export", get(export).post(export_form))
        .route("/", get(web::dashboard))
        .route("/room", get(web::room))
        .route("/lobby", get(web::room))
        .route("/meetingRoom", get(web::room))
        .route("/web/filters.json", get(web::filters_info))
        .route("/web/{*path}", get(web::asset))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// An error as SynthARium answers it: status = code, body = `{"type":"ERROR","data":{...}}`.
fn error_response(e: &WireError) -> Response {
    METRICS.error(e.kind);
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(protocol::error_body(e))).into_response()
}

async fn offer(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let req = match protocol::parse_offer_request(content_type(&headers), &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match st.hub.offer(req).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn add_ice_candidate(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (id, c) = match protocol::parse_add_ice_candidate_request(content_type(&headers), &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let cand = peer::IceCandidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment,
    };
    match st.hub.add_ice_candidate(id, cand).await {
        Ok(()) => Json(protocol::add_ice_candidate_success_body()).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn hello_world() -> Json<protocol::HelloWorld> {
    Json(protocol::HelloWorld::new(chrono_like_now()))
}

/// `datetime.now()`-like text without a date-time dependency: RFC 3339 in UTC.
fn chrono_like_now() -> String {
    let ms = crate::hub::now_ms();
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The experimenter password from `Authorization: Bearer <password>` or HTTP Basic (any
/// user name).
fn password_of(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(p) = v.strip_prefix("Bearer ") {
        return Some(p.trim().to_owned());
    }
    let b = v.strip_prefix("Basic ")?;
    let decoded = base64_decode(b.trim())?;
    let s = String::from_utf8(decoded).ok()?;
    s.split_once(':').map(|(_, p)| p.to_owned())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len().max(1)]);
    }
    Some(out)
}

/// `GET /recordings/{session_id}/export`: the session's research data as one tar (the same
/// archive as `exphub export`), streamed as it is written. Experimenters only (the password
/// in `Authorization`).
async fn export(
    State(st): State<AppState>,
    axum::extract::Path(session_id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    archive(st, session_id, password_of(&headers)).await
}

#[derive(serde::Deserialize)]
struct ExportForm {
    password: String,
}

/// `POST /recordings/{session_id}/export` with a form field `password`: the same, for the
/// dashboard's download button (a form post lets the browser stream the download to disk).
async fn export_form(
    State(st): State<AppState>,
    axum::extract::Path(session_id): axum::extract::Path<String>,
    form: Result<axum::Form<ExportForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    archive(st, session_id, form.ok().map(|f| f.0.password)).await
}

async fn archive(st: AppState, session_id: String, password: Option<String>) -> Response {
    let authorized = password.is_some_and(|p| crate::config::constant_time_eq(&p, &st.cfg.experimenter_password));
    if !authorized {
        let e = WireError::new(401, protocol::ErrorType::InvalidRequest, "Experimenter password required.");
        let mut r = error_response(&e);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"exphub\""));
        return r;
    }
    let dir = st.cfg.sessions_dir.clone();
    let sid = session_id.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let file = crate::session::store::find_file(&dir, &sid);
        crate::record::export::contents(&dir, file.as_deref(), &sid)
    })
    .await;
    let files = match listed {
        Ok(Ok(f)) => f,
        _ => {
            let e = WireError::new(404, protocol::ErrorType::FileNotFound, "No recordings for this session.");
            return error_response(&e);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        if let Err(e) = crate::record::export::write_archive(&files, w) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = axum::body::Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{session_id}.tar\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

const CHUNK: usize = 256 * 1024;

/// A `Write` that hands 256 KiB chunks to the response body, waiting while the client reads
/// slowly (backpressure instead of memory).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the client went away"))
    }
}

async fn healthz() -> Json<protocol::Health> {
    Json(protocol::Health::OK)
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], METRICS.render())
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_and_bearer_passwords() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("authorization", "Basic dXNlcjpzM2NyZXQ6eA==".parse().unwrap()); // user:s3cret:x
        assert_eq!(super::password_of(&h).as_deref(), Some("s3cret:x"));
        h.insert("authorization", "Bearer pw".parse().unwrap());
        assert_eq!(super::password_of(&h).as_deref(), Some("pw"));
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert_eq!(super::password_of(&h), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_419), (2025, 11, 27));
    }
}
