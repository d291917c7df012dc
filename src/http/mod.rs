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
use serde_json::json;

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

async fn hello_world() -> Json<serde_json::Value> {
    Json(json!({"text": "Hello World", "timestamp": chrono_like_now()}))
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

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], METRICS.render())
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_419), (2025, 11, 27));
    }
}
