//! SynthARium's own frontend against exphub: the contract it relies on, over real HTTP,
//! WebSocket and WebRTC (its code is not part of this repository; the tests check what it
//! sends and expects): CORS preflights and headers, `/ws` with `EXPERIMENTER_JOINED`, the late
//! joiner's message order, and serving its build with SPA fallback.

mod common;

use axum::http::HeaderMap;
use bytes::Bytes;
use common::*;
use exphub::config::AllowOrigins;
use http_body_util::{BodyExt, Full};
use serde_json::json;

/// One request with extra headers; status, headers and body.
async fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, HeaderMap, Vec<u8>) {
    let authority = base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(T, sender.send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()))
        .await
        .expect("an answer in time")
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

const DEV_SERVER: &str = "http://127.0.0.1:5173";
const OTHER_SITE: &str = "http://evil.example";

/// The browser's preflight and the real request, for an allowed and a disallowed origin, on
/// every route SynthARium's frontend calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_and_headers_for_allowed_origins_only() {
    let srv = TestServer::start_with(|c| c.allow_origins = AllowOrigins::List(vec![DEV_SERVER.to_owned()])).await;
    for path in ["/offer", "/addIceCandidate", "/hello-world", "/ws"] {
        let method = if path == "/hello-world" || path == "/ws" { "GET" } else { "POST" };
        let pre = |origin| {
            [
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", "content-type"),
            ]
        };
        let (status, h, _) = http(&srv.base, "OPTIONS", path, &pre(DEV_SERVER), "").await;
        assert_eq!(status, 204, "preflight of {path}");
        assert_eq!(header(&h, "access-control-allow-origin"), Some(DEV_SERVER), "{path}");
        assert!(header(&h, "access-control-allow-methods").unwrap().contains(method), "{path}");
        assert!(header(&h, "access-control-allow-headers").unwrap().to_lowercase().contains("content-type"), "{path}");
        assert_eq!(header(&h, "access-control-allow-credentials"), None, "{path}");
        let (status, h, _) = http(&srv.base, "OPTIONS", path, &pre(OTHER_SITE), "").await;
        assert_eq!(status, 403, "preflight of {path} from another site");
        assert_eq!(header(&h, "access-control-allow-origin"), None, "{path}");
    }
    // The actual requests: the answer carries the origin for an allowed page only.
    let (status, h, _) = http(&srv.base, "GET", "/hello-world", &[("origin", DEV_SERVER)], "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(DEV_SERVER));
    assert!(header(&h, "vary").unwrap().contains("Origin"));
    let bad_offer = json!({"request": {"sdp": "x", "type": "offer", "user_type": "experimenter",
                                        "experimenter_password": "wrong"}})
    .to_string();
    let ct = ("content-type", "application/json");
    let (status, h, _) = http(&srv.base, "POST", "/offer", &[("origin", DEV_SERVER), ct], &bad_offer).await;
    assert!(status >= 400, "a refused offer is still readable by the allowed page");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(DEV_SERVER));
    let (_, h, _) = http(&srv.base, "POST", "/offer", &[("origin", OTHER_SITE), ct], &bad_offer).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    let (_, h, _) = http(&srv.base, "GET", "/hello-world", &[("origin", OTHER_SITE)], "").await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    srv.stop().await;

    // SynthARium's "environment": "dev": every origin.
    let srv = TestServer::start_with(|c| c.allow_origins = AllowOrigins::Any).await;
    let pre = [("origin", OTHER_SITE), ("access-control-request-method", "POST")];
    let (status, h, _) = http(&srv.base, "OPTIONS", "/offer", &pre, "").await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(OTHER_SITE));
    srv.stop().await;

    // The default: same origin only, so no CORS header at all.
    let srv = TestServer::start().await;
    let (_, h, _) = http(&srv.base, "GET", "/hello-world", &[("origin", DEV_SERVER)], "").await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    srv.stop().await;
}
