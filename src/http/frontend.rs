//! Another web frontend's build served at `/` (`--frontend-dir`, or SynthARium's
//! `serve_frontend`), as SynthARium's backend serves its React build: files from the directory
//! with their MIME types, and its page routes ([`SPA_ROUTES`]) answered with its `index.html`.
//! exphub's own app stays at `/exphub/` (and `/room`, `/web/...`).
//!
//! - Only paths whose every segment is a plain name are looked up (no `..`, no `.` or hidden
//!   segments, no backslashes or NULs, after percent-decoding), and the file found must lie
//!   inside the directory after resolving links: nothing outside it is ever served.
//! - Caching: files under `assets/` (content-hashed names in Vite and CRA builds, also
//!   `static/`) are immutable for a year; everything else, `index.html` above all, is
//!   revalidated on every load so that a new build is picked up at once.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// SynthARium's page routes (both of its branches), answered with the build's index.html.
pub const SPA_ROUTES: &[&str] = &[
    "/",
    "/lobby",
    "/meetingRoom",
    "/watchingRoom",
    "/experimentOverview",
    "/sessionForm",
    "/consent",
    "/end",
    "/postProcessingRoom",
    "/connectionTest",
    "/connectionLatencyTest",
    "/template",
];

/// Largest file served (a build's bundles are a few MiB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// The fallback route when a frontend directory is configured: a file of the build, a page
/// route (index.html), or 404.
pub async fn serve(State(st): State<AppState>, req: Request) -> Response {
    let Some(root) = st.cfg.frontend_dir.as_deref() else {
        return not_found();
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = req.uri().path();
    let route = path.trim_end_matches('/');
    if SPA_ROUTES.contains(&path) || SPA_ROUTES.contains(&route) {
        return file(root, Path::new("index.html")).await.unwrap_or_else(not_found);
    }
    let Some(rel) = safe_relative(path) else { return not_found() };
    file(root, &rel).await.unwrap_or_else(not_found)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// The path as a relative file path, if every segment is a plain name.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path.strip_prefix('/')?)?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        let bad = seg.is_empty() || seg.starts_with('.') || seg.contains(['\\', '\0', ':']);
        if bad {
            return None;
        }
        rel.push(seg);
    }
    Some(rel)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A file of the build, if it is a regular file inside `root` (after resolving links).
async fn file(root: &Path, rel: &Path) -> Option<Response> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let full = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    if !full.starts_with(&root) {
        return None;
    }
    let meta = tokio::fs::metadata(&full).await.ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let body = tokio::fs::read(&full).await.ok()?;
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(&full)));
    let hashed = rel.starts_with("assets") || rel.starts_with("static");
    let cache = if hashed { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Invite links carry the participant's credentials (ids): never send them on.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Some(r)
}

/// The content type of a build's file, by extension.
pub fn mime(p: &Path) -> &'static str {
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "onnx" | "bin" => "application/octet-stream",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_looked_up() {
        assert_eq!(safe_relative("/assets/index-abc.js"), Some(PathBuf::from("assets/index-abc.js")));
        assert_eq!(safe_relative("/a%20b.png"), Some(PathBuf::from("a b.png")));
        for bad in
            ["/../etc/passwd", "/assets/../../x", "/%2e%2e/x", "/.env", "/a//b", "/a%5c..%5cb", "/a%00", "/%zz", "/c:x"]
        {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
