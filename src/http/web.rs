//! The web app: the experimenter dashboard and the participant room, plain HTML, CSS and
//! JavaScript modules from `web/` at the repository root, embedded in the binary at build time
//! (no build step, no runtime files).
//!
//! - `GET /` → `web/index.html` (dashboard); `GET /room`, `/lobby`, `/meetingRoom` →
//!   `web/room.html` (SynthARium's invite links are `/lobby?participantId=…&sessionId=…`).
//! - `GET /web/<path>` → the file of the static table below, with its MIME type.
//! - `GET /web/filters.json` → name, channel and description of every filter, from the filter
//!   catalogue (the protocol's `FILTERS_CONFIG` has no descriptions).
//!
//! For working on the pages without rebuilding: `EXPHUB_WEB_DIR=web` makes the server read the
//! same files (only the paths of the table) from that directory on every request.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::FilterListing;

/// One embedded file: its path under `web/`, its content type, its bytes.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset { path: $path, mime: $mime, body: include_bytes!(concat!("../../web/", $path)) }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file the web app consists of. Adding a file = one line here.
static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("room.html", HTML),
    asset!("css/app.css", CSS),
    asset!("js/protocol.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/helpers.js", JS),
    asset!("js/dashboard.js", JS),
    asset!("js/editor.js", JS),
    asset!("js/live.js", JS),
    asset!("js/room.js", JS),
    asset!("favicon.svg", SVG),
];

/// The pages allow only their own scripts, styles and media (no inline script).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

fn serve(path: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let body: Vec<u8> = match std::env::var_os("EXPHUB_WEB_DIR") {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(a.path)) {
            Ok(b) => b,
            Err(_) => a.body.to_vec(),
        },
        None => a.body.to_vec(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    // Small files; always revalidate so that a new server version is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Invite links carry the participant's credentials (ids): never send them on.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if a.mime == HTML {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    resp
}

/// `GET /`: the experimenter dashboard.
pub async fn dashboard() -> Response {
    serve("index.html")
}

/// `GET /room`, `/lobby`, `/meetingRoom`: the participant room (ids in the query string).
pub async fn room() -> Response {
    serve("room.html")
}

/// `GET /web/{*path}`: an asset of the table.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

/// `GET /web/filters.json`: `[{name, channel, description, group}]` for every filter.
pub async fn filters_info() -> Response {
    let list: Vec<FilterListing> = filters::catalogue()
        .iter()
        .map(|f| FilterListing {
            name: f.name,
            channel: f.channel.as_str(),
            group: f.is_group(),
            description: f.description,
        })
        .collect();
    let mut resp = Json(list).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_type_and_content() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            let ext = a.path.rsplit('.').next().unwrap();
            let want = match ext {
                "html" => HTML,
                "js" => JS,
                "css" => CSS,
                "svg" => SVG,
                other => panic!("no MIME type for .{other}"),
            };
            assert_eq!(a.mime, want, "{}", a.path);
        }
    }

    #[test]
    fn pages_load_only_files_of_the_table() {
        // Every `/web/...` reference in a page or module names an embedded file.
        for a in ASSETS.iter().filter(|a| a.mime == HTML || a.mime == JS) {
            let text = std::str::from_utf8(a.body).unwrap();
            for (i, _) in text.match_indices("/web/") {
                let rest = &text[i + 5..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')))
                    .unwrap_or(rest.len());
                let path = rest[..end].trim_end_matches('.');
                if path == "filters.json" || path.is_empty() {
                    continue;
                }
                assert!(ASSETS.iter().any(|b| b.path == path), "{} refers to missing /web/{path}", a.path);
            }
        }
    }
}
