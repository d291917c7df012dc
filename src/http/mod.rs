//! `http`: the axum routes. Thin: parse (via `protocol`), ask the hub, answer.
//!
//! - `POST /offer`, `POST /addIceCandidate`: SynthARium's signalling, with its exact error
//!   statuses and bodies (status = the error's `code`).
//! - `GET /hello-world`: SynthARium's liveness text.
//! - `GET /ws`: SynthARium's lobby socket (`EXPERIMENTER_JOINED`, `ws.rs`).
//! - `GET /healthz`, `GET /metrics`: operations.
//! - `GET /`, `/room` (`/lobby`, `/meetingRoom`), `/web/...`: the web app (`web.rs`), also
//!   at `/exphub/` (`/exphub/room`, ...). With a frontend directory, that frontend's build
//!   owns `/` and its page routes instead (`frontend.rs`).
//!
//! Every request passes two layers: the access log (one line per request: method, path,
//! status, latency; never the query string, which may hold the dashboard's password) and the
//! body buffer (the whole body within [`MAX_BODY`] bytes and the body timeout, else a typed
//! 413 or 408). Connections, timeouts and TLS are `serve.rs`'s.

pub mod cors;
pub mod frontend;
pub mod serve;
pub mod tls;
pub mod web;
pub mod ws;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
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
    /// Cluster mode: routes `/offer` and `/addIceCandidate` to the experiment's node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `--object-store`: the export is built from the store's copies.
    pub store: Option<Arc<dyn crate::record::store::ObjectStore>>,
}

/// Largest HTTP body accepted (an SDP offer is a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let ws_slots = ws::Slots(Arc::new(tokio::sync::Semaphore::new(state.cfg.http.max_connections)));
    let app = Router::new()
        .route("/ws", get(ws::ws).layer(axum::Extension(ws_slots)))
        .route("/offer", post(offer))
        .route("/addIceCandidate", post(add_ice_candidate))
        .route("/hello-world", get(hello_world))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/recordings/{session_id}/export", get(export).post(export_form))
        .route("/room", get(web::room))
        .route("/exphub", get(web::dashboard))
        .route("/exphub/", get(web::dashboard))
        .route("/exphub/room", get(web::room))
        .route("/exphub/lobby", get(web::room))
        .route("/exphub/meetingRoom", get(web::room))
        .route("/web/filters.json", get(web::filters_info))
        .route("/web/{*path}", get(web::asset));
    // Another frontend's build owns `/` and its page routes; exphub's app stays at /exphub/.
    let app = if state.cfg.frontend_dir.is_some() {
        app.fallback(frontend::serve)
    } else {
        app.route("/", get(web::dashboard)).route("/lobby", get(web::room)).route("/meetingRoom", get(web::room))
    };
    app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), buffer_body))
        .layer(middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// The internal API of cluster mode (`--internal-addr` only): the owner's side of a forwarded
/// `/offer` or `/addIceCandidate` (handled here, never forwarded again), a health probe and
/// `exphub drain`'s request. Every request must carry a valid signature (`cluster::internal`),
/// else 401.
pub fn internal_router(state: AppState, signer: crate::cluster::Signer) -> Router {
    Router::new()
        .route("/internal/v1/offer", post(|st, h, b| handle_offer(st, h, b, false)))
        .route("/internal/v1/ice", post(|st, h, b| handle_ice(st, h, b, false)))
        .route("/internal/v1/health", get(healthz))
        .route("/internal/v1/drain", post(drain))
        .layer(middleware::from_fn(move |req: Request, next: Next| verify_signature(signer.clone(), req, next)))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), buffer_body))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// Lets a request through only with a valid signature of the cluster secret.
async fn verify_signature(signer: crate::cluster::Signer, req: Request, next: Next) -> Response {
    use crate::cluster::internal::{SIGNATURE_HEADER, TIME_HEADER};
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    // The body is already buffered (`buffer_body`, an outer layer).
    let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) else {
        return error_response(&WireError::new(400, protocol::ErrorType::InvalidRequest, "Unreadable body."));
    };
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let ok = signer.verify(
        parts.method.as_str(),
        parts.uri.path(),
        h(TIME_HEADER),
        h(SIGNATURE_HEADER),
        &bytes,
        crate::hub::now_ms(),
    );
    if !ok {
        let e = WireError::new(401, protocol::ErrorType::InvalidRequest, "Internal request without a valid signature.");
        return error_response(&e);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Reads the whole request body before the handler runs: at most [`MAX_BODY`] bytes (413)
/// and within the body timeout (408), so a client dripping a body cannot hold a handler.
async fn buffer_body(State(st): State<AppState>, req: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let bytes = match tokio::time::timeout(st.cfg.http.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            let e = WireError::new(
                413,
                protocol::ErrorType::InvalidRequest,
                format!("Request body too large (at most {MAX_BODY} bytes)."),
            );
            return error_response(&e);
        }
        Ok(Err(_)) => {
            let e = WireError::new(400, protocol::ErrorType::InvalidRequest, "Failed to read the request body.");
            return error_response(&e);
        }
        Err(_) => {
            let e =
                WireError::new(408, protocol::ErrorType::InvalidRequest, "The request body did not arrive in time.");
            let mut r = error_response(&e);
            r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            return r;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// The description of an error answer, for the access log.
#[derive(Clone)]
struct ErrorDescription(String);

/// One log line per request. Server errors at ERROR, refused credentials at WARN, other client
/// errors and successes at INFO, `/healthz` and `/metrics` at DEBUG (scraped every few
/// seconds). The path only: a query string may hold a password.
async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let latency_ms = (start.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let error = resp.extensions().get::<ErrorDescription>().map(|e| e.0.as_str()).unwrap_or("");
    match status {
        500.. => tracing::error!(%method, %path, status, latency_ms, error, "http request"),
        401 | 403 => tracing::warn!(%method, %path, status, latency_ms, error, "http request"),
        400.. => tracing::info!(%method, %path, status, latency_ms, error, "http request"),
        _ if path == "/healthz" || path == "/metrics" => {
            tracing::debug!(%method, %path, status, latency_ms, "http request")
        }
        _ => tracing::info!(%method, %path, status, latency_ms, "http request"),
    }
    resp
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// An error as SynthARium answers it: status = code, body = `{"type":"ERROR","data":{...}}`.
fn error_response(e: &WireError) -> Response {
    METRICS.error(e.kind);
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, Json(protocol::error_body(e))).into_response();
    r.extensions_mut().insert(ErrorDescription(e.description.clone()));
    r
}

async fn offer(st: State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    handle_offer(st, headers, body, true).await
}

/// `POST /offer`: parsed here whichever node answers (so its 400/415 answers never depend on
/// the node); in cluster mode forwarded to the experiment's node when that is another one
/// (`route`: false for a request that was forwarded here).
async fn handle_offer(State(st): State<AppState>, headers: HeaderMap, body: Bytes, route: bool) -> Response {
    let req = match protocol::parse_offer_request(content_type(&headers), &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if let Some(c) = st.cluster.as_ref() {
        // A self-fenced node takes no participant's offer (cluster::failover).
        if let Some(e) = c.refuse_when_fenced(&req) {
            return error_response(&e);
        }
        if !route {
            c.claim(&req).await;
        } else if let Some(r) = routed(c.route_offer(&req, content_type(&headers), body).await) {
            return r;
        }
    }
    match st.hub.offer(req).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => error_response(&e),
    }
}

/// A routing decision as a response (`None`: handle it here).
fn routed(r: crate::cluster::Routed) -> Option<Response> {
    use crate::cluster::Routed;
    match r {
        Routed::Local => None,
        Routed::Refused(e) => Some(error_response(&e)),
        Routed::Remote(a) => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut r = (status, a.body).into_response();
            if let Some(ct) = a.content_type.and_then(|ct| header::HeaderValue::from_str(&ct).ok()) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Some(r)
        }
    }
}

async fn add_ice_candidate(st: State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    handle_ice(st, headers, body, true).await
}

async fn handle_ice(State(st): State<AppState>, headers: HeaderMap, body: Bytes, route: bool) -> Response {
    let (id, c) = match protocol::parse_add_ice_candidate_request(content_type(&headers), &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if let Some(cl) = st.cluster.as_ref().filter(|_| route) {
        if let Some(r) = routed(cl.route_ice(&id, content_type(&headers), body).await) {
            return r;
        }
    }
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
    let files = match &st.store {
        Some(objects) => match store_contents(&st, objects.clone(), &session_id).await {
            Ok(f) => f,
            Err(r) => return r,
        },
        None => {
            let listed = tokio::task::spawn_blocking(move || {
                let file = crate::session::store::find_file(&dir, &sid);
                crate::record::export::contents(&dir, file.as_deref(), &sid)
            })
            .await;
            match listed {
                Ok(Ok(f)) => f,
                _ => return no_recordings(),
            }
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

/// 404 for an export of a session with nothing recorded (or nothing copied to the store).
fn no_recordings() -> Response {
    error_response(&WireError::new(404, protocol::ErrorType::FileNotFound, "No recordings for this session."))
}

/// The archive's contents from the object store (the `artifacts` index in cluster mode), or
/// the response that refuses it: 404 without copies, 503 naming what is listed but missing.
async fn store_contents(
    st: &AppState,
    objects: Arc<dyn crate::record::store::ObjectStore>,
    session_id: &str,
) -> Result<Vec<(String, crate::record::export::Source)>, Response> {
    use crate::record::export::{contents_from_store, StoreExportError};
    let index = match &st.cluster {
        Some(c) => match c.db().artifacts(session_id).await {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the artifacts index");
                return Err(error_response(&crate::cluster::unavailable()));
            }
        },
        None => None,
    };
    let file = crate::session::store::find_file(&st.cfg.sessions_dir, session_id);
    match contents_from_store(objects, index, file.as_deref(), session_id).await {
        Ok(f) => Ok(f),
        Err(StoreExportError::NotFound) => Err(no_recordings()),
        Err(StoreExportError::Missing(files)) => {
            tracing::warn!(session_id, missing = ?files, "export refused: files missing from the object store");
            let text = format!(
                "The archive would be incomplete; not in the object store (yet): {}. Try again when the uploads are done.",
                files.join(", ")
            );
            Err(error_response(&WireError::new(503, protocol::ErrorType::FileNotFound, text)))
        }
        Err(StoreExportError::Io(e)) => {
            tracing::error!(session_id, error = %e, "export from the object store failed");
            let e = WireError::new(
                503,
                protocol::ErrorType::InternalServerError,
                "The object store is not reachable now; try again in a moment.",
            );
            Err(error_response(&e))
        }
    }
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

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let mut text = METRICS.render();
    if let Some(c) = &st.cluster {
        text.push_str(&c.render_metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `POST /internal/v1/drain` (`exphub drain`), body `{"timeout_s": N}` or empty (2 hours): the
/// node takes no new experiments and its process exits when the last one has ended. Answers
/// `{"node_id", "state": "draining", "experiments", "timeout_s"}`; 503 if the database cannot
/// be told (nothing changes then).
async fn drain(State(st): State<AppState>, body: Bytes) -> Response {
    let Some(c) = &st.cluster else {
        return error_response(&WireError::new(404, protocol::ErrorType::InvalidRequest, "Not in cluster mode."));
    };
    let timeout = match serde_json::from_slice::<serde_json::Value>(&body) {
        _ if body.iter().all(u8::is_ascii_whitespace) => crate::cluster::DEFAULT_DRAIN_TIMEOUT,
        Ok(v) => match v.get("timeout_s").map(|t| t.as_f64()) {
            None => crate::cluster::DEFAULT_DRAIN_TIMEOUT,
            Some(Some(t)) if t.is_finite() && (0.0..=1e9).contains(&t) => std::time::Duration::from_secs_f64(t),
            Some(_) => {
                let e = WireError::new(
                    400,
                    protocol::ErrorType::InvalidDatatype,
                    "timeout_s must be a number of seconds (0 or more).",
                );
                return error_response(&e);
            }
        },
        Err(_) => {
            let e = WireError::new(400, protocol::ErrorType::InvalidDatatype, "Failed to parse request.");
            return error_response(&e);
        }
    };
    match c.drain(timeout).await {
        Ok(n) => Json(serde_json::json!({
            "node_id": c.node_id,
            "state": "draining",
            "experiments": n,
            "timeout_s": timeout.as_secs_f64(),
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot mark the node as draining");
            error_response(&WireError::new(
                503,
                protocol::ErrorType::InternalServerError,
                "The cluster database is not reachable; the node is not draining. Try again.",
            ))
        }
    }
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
