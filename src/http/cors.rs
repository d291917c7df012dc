//! CORS for pages of another origin (SynthARium's frontend on its dev server, a build on
//! another port, `localhost` vs `127.0.0.1`): which origins may call is
//! [`Config::allow_origins`](crate::config::Config::allow_origins).
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   here, before routing, on every path: `204` with the allow headers for an allowed origin,
//!   `403` without them otherwise.
//! - Any other request from an allowed origin gets `Access-Control-Allow-Origin: <origin>`
//!   (and `Vary: Origin`); a disallowed origin gets no CORS header, so its page cannot read
//!   the answer.
//!
//! Credentials are never allowed (no `Access-Control-Allow-Credentials`): the API needs
//! none, and a browser's remembered Basic login for the export download must not be usable
//! from another site's page.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Methods the API uses.
const METHODS: &str = "GET, POST, OPTIONS";
/// Request headers a page may send (SynthARium's list, plus `Authorization` for the export).
const HEADERS: &str = "Content-Type, X-Requested-With, Authorization";
/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";

pub async fn cors(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin else { return next.run(req).await };
    let allowed = st.cfg.allow_origins.allows(&origin);
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        allow_origin(h, &origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(METHODS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        return r;
    }
    let mut r = next.run(req).await;
    if allowed {
        allow_origin(r.headers_mut(), &origin);
    }
    r
}

fn allow_origin(h: &mut axum::http::HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
