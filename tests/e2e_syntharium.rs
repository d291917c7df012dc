//! SynthARium's own frontend against exphub: the contract it relies on, over real HTTP,
//! WebSocket and WebRTC (its code is not part of this repository; the tests check what it
//! sends and expects): CORS preflights and headers, `/ws` with `EXPERIMENTER_JOINED`, the late
//! joiner's message order, and serving its build with SPA fallback.

mod common;

use std::time::Duration;

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

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client on `/ws`.
async fn lobby_socket(base: &str) -> Ws {
    let authority = base.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{authority}/ws"), tcp).await.expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The next text message of a socket (pings are answered by the library while reading).
async fn next_text(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(T, ws.next()).await.expect("a message in time").expect("open").unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return t.to_string();
        }
    }
}

/// Whether the server ends the socket within `T` (a Close frame, EOF or a reset).
async fn ends(ws: &mut Ws) -> bool {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_))) => return true,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// SynthARium's lobby reloads on `EXPERIMENTER_JOINED`: every socket gets it on
/// CREATE_EXPERIMENT and on JOIN_EXPERIMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_broadcasts_experimenter_joined_on_create_and_join() {
    let srv = TestServer::start().await;
    let mut a = lobby_socket(&srv.base).await;
    let mut b = lobby_socket(&srv.base).await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    for ws in [&mut a, &mut b] {
        let m: serde_json::Value = serde_json::from_str(&next_text(ws).await).unwrap();
        assert_eq!(m, json!({"type": "EXPERIMENTER_JOINED"}));
    }
    let mut exp2 = experimenter(&srv.base).await;
    request(&mut exp2, "JOIN_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    for ws in [&mut a, &mut b] {
        assert_eq!(next_text(ws).await, r#"{"type":"EXPERIMENTER_JOINED"}"#);
    }
    exp.close().await;
    exp2.close().await;
    // Stopping the server closes the sockets.
    srv.stop().await;
    assert!(ends(&mut a).await, "socket closed at shutdown");
    assert!(ends(&mut b).await, "socket closed at shutdown");
}

/// The sockets are bounded: a cap (503 beyond it, a slot back when one closes) and a client
/// that answers no ping is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_sockets_are_capped_and_silent_ones_closed() {
    let srv = TestServer::start_with(|c| {
        c.http.max_connections = 2;
        c.http.idle_timeout = Duration::from_millis(600);
    })
    .await;
    let mut a = lobby_socket(&srv.base).await;
    let b = lobby_socket(&srv.base).await;
    let authority = srv.base.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let refused = tokio_tungstenite::client_async(format!("ws://{authority}/ws"), tcp).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        other => panic!("a third socket is refused, got {:?}", other.map(|(_, r)| r.status())),
    }
    // `a` reads (so it answers pings) while `b` never does: `b` is closed, `a` stays.
    let mut b = b;
    let reader = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(3), next_text(&mut a)).await;
        a
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ends(&mut b).await, "a silent socket is closed");
    let mut a = reader.await.unwrap();
    // `b`'s slot is free again (polled: the server notices the close on its own time).
    let deadline = tokio::time::Instant::now() + T;
    let mut c = loop {
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        if let Ok((ws, _)) = tokio_tungstenite::client_async(format!("ws://{authority}/ws"), tcp).await {
            break ws;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot of a closed socket is reused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    srv.stop().await;
    assert!(ends(&mut a).await);
    assert!(ends(&mut c).await);
}

/// A participant joining a running experiment gets its session before `EXPERIMENT_STARTED`
/// (SynthARium's lobby navigates to the meeting room on it and needs the session by then); a
/// client that never asks still learns that the experiment runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_its_session_before_experiment_started() {
    let srv = TestServer::start().await;
    let (exp, _erec, mut parts, _recs, players) = running_experiment(&srv, 1).await;
    let (_rec, opts) = recorder();
    let mut late = participant(&srv.base, PARTICIPANTS[1], opts).await;
    late.send("GET_SESSION", json!({"session_id": SESSION})).await.unwrap();
    let (_, before) = late.recv_type("EXPERIMENT_STARTED", T).await.expect("EXPERIMENT_STARTED");
    let types: Vec<&str> = before.iter().filter_map(|m| m["type"].as_str()).collect();
    assert!(types.contains(&"SESSION"), "the session comes first, got {types:?}");
    // Never asking: told anyway, after a short hold.
    let (_rec, opts) = recorder();
    let mut silent = participant(&srv.base, PARTICIPANTS[2], opts).await;
    silent.recv_type("EXPERIMENT_STARTED", T).await.expect("EXPERIMENT_STARTED without asking");
    parts.push(late);
    parts.push(silent);
    close_all(srv, exp, parts, players).await;
}

/// A SynthARium-like build served at `/`: files with their types and caching, every page
/// route falling back to index.html, nothing outside the directory, exphub's app at /exphub/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_dir_serves_a_build_with_spa_fallback() {
    let tmp = TempDir::new("build");
    let build = tmp.path().join("build");
    std::fs::create_dir_all(build.join("assets")).unwrap();
    const INDEX: &str = "<!doctype html><title>SA build</title><script type=module src=/assets/index-4f2a.js></script>";
    std::fs::write(build.join("index.html"), INDEX).unwrap();
    std::fs::write(build.join("assets/index-4f2a.js"), "console.log(1)").unwrap();
    std::fs::write(build.join("assets/index-4f2a.css"), "body{}").unwrap();
    std::fs::write(build.join("favicon.ico"), [0u8, 0, 1, 0]).unwrap();
    std::fs::write(build.join("manifest.json"), "{}").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), build.join("link.txt")).unwrap();
    let dir = build.clone();
    let srv = TestServer::start_with(move |c| c.frontend_dir = Some(dir)).await;

    for route in exphub::http::frontend::SPA_ROUTES.iter().chain(&["/lobby/", "/sessionForm"]) {
        let path = format!("{route}?participantId=aaaaaaaaa1&sessionId={SESSION}");
        let (status, h, body) = http(&srv.base, "GET", &path, &[], "").await;
        assert_eq!(status, 200, "{route}");
        assert_eq!(String::from_utf8(body).unwrap(), INDEX, "{route}");
        assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"), "{route}");
        assert_eq!(header(&h, "cache-control"), Some("no-cache"), "{route}");
    }
    let files = [
        ("/assets/index-4f2a.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        ("/assets/index-4f2a.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"),
        ("/favicon.ico", "image/x-icon", "no-cache"),
        ("/manifest.json", "application/json", "no-cache"),
    ];
    for (path, mime, cache) in files {
        let (status, h, body) = http(&srv.base, "GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, std::fs::read(build.join(&path[1..])).unwrap(), "{path}");
        assert_eq!(header(&h, "content-type"), Some(mime), "{path}");
        assert_eq!(header(&h, "cache-control"), Some(cache), "{path}");
    }
    // Nothing outside the build, however asked; unknown files are 404, not index.html.
    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/assets/..%5c..%5csecret.txt",
        "/link.txt",
        "/.hidden",
        "/missing.js",
        "/assets/",
    ] {
        let (status, _, body) = http(&srv.base, "GET", path, &[], "").await;
        assert_eq!(status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{path}");
    }
    // exphub's own app and API stay reachable.
    let (status, _, body) = http(&srv.base, "GET", "/exphub/", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(body, exphub_page("index.html"));
    let (status, _, body) = http(&srv.base, "GET", "/room?participantId=x", &[], "").await;
    assert_eq!((status, body), (200, exphub_page("room.html")));
    let (status, _, _) = http(&srv.base, "GET", "/hello-world", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = http(&srv.base, "GET", "/web/js/protocol.js", &[], "").await;
    assert_eq!(status, 200);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;
    exp.close().await;
    srv.stop().await;
}

fn exphub_page(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web").join(name)).unwrap()
}

/// The real binary with SynthARium's own config.json, laid out as in its repository
/// (`backend/config.json`, `frontend/build`): the keys exphub does not use are reported on
/// stderr once logging runs, `environment: dev` and `serve_frontend` take effect, and its
/// frontend's login without `?experimenterPassword=` (the placeholder password in the `/offer`
/// body, which this config.json sets) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntharium_config_json_with_the_real_binary() {
    let tmp = TempDir::new("synth");
    let backend = tmp.path().join("backend");
    let build = tmp.path().join("frontend").join("build");
    std::fs::create_dir_all(backend.join("sessions")).unwrap();
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("index.html"), "<!doctype html><title>SA</title>").unwrap();
    write_session(&backend.join("sessions"), &session_json(SESSION));
    let config = json!({
        "experimenter_password": "no-password-given", "host": "127.0.0.1", "port": 0,
        "environment": "dev", "serve_frontend": true, "https": false, "log": "INFO",
        "log_dependencies": "WARNING", "ping_subprocesses": 0.0,
        "experimenter_multiprocessing": false, "participant_multiprocessing": true
    });
    std::fs::write(backend.join("config.json"), config.to_string()).unwrap();
    let log = tmp.path().join("stderr.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_exphub"));
    cmd.args(["serve", "--config"])
        .arg(backend.join("config.json"))
        .arg("--sessions-dir")
        .arg(backend.join("sessions"))
        .env_remove("EXPHUB_EXPERIMENTER_PASSWORD")
        .env_remove("EXPHUB_ALLOW_ORIGINS")
        .env_remove("EXPHUB_FRONTEND_DIR");
    let server = common::proc::spawn(cmd, &log);
    let base = server.base.clone();

    let stderr = std::fs::read_to_string(&log).unwrap();
    let line = stderr.lines().find(|l| l.contains("config file keys that exphub does not use")).unwrap_or_else(|| {
        panic!("the ignored keys are reported on stderr:\n{stderr}");
    });
    for key in ["log_dependencies", "ping_subprocesses", "experimenter_multiprocessing", "participant_multiprocessing"]
    {
        assert!(line.contains(key), "{key} in {line}");
    }
    for used in ["environment", "serve_frontend", "experimenter_password"] {
        assert!(!line.contains(used), "{used} is used, not ignored: {line}");
    }
    let pre = [("origin", "http://localhost:5173"), ("access-control-request-method", "POST")];
    let (status, h, _) = http(&base, "OPTIONS", "/offer", &pre, "").await;
    assert_eq!((status, header(&h, "access-control-allow-origin")), (204, Some("http://localhost:5173")));
    let (status, _, body) = http(&base, "GET", "/experimentOverview", &[], "").await;
    assert_eq!((status, body), (200, b"<!doctype html><title>SA</title>".to_vec()));
    let role = exphub_client::Role::Experimenter { password: "no-password-given".into() };
    let mut exp = exphub_client::Client::connect(&base, role, Default::default()).await.expect("login");
    request(&mut exp, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;
    exp.close().await;
    drop(server);
}

/// SynthARium's experimenter pages end an experiment with STOP_EXPERIMENT and go back to the
/// session list without LEAVE_EXPERIMENT, so the experimenter stays in the ended experiment.
/// That must not block what the list offers next: deleting the ended session, and joining
/// another running experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_without_leaving_blocks_neither_delete_nor_join() {
    const OTHER: &str = "0e0e05e551";
    let dir = TempDir::new("srv");
    write_session(dir.path(), &session_json(SESSION));
    write_session(dir.path(), &exphub_client::session_json(OTHER, &["0e0e0aaaa1"]));
    let srv = TestServer::start_in(dir).await;
    let (mut a, _erec, parts, _recs, players) = running_experiment(&srv, 1).await;
    let mut c = experimenter(&srv.base).await;
    request(&mut c, "JOIN_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    request(&mut a, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    // Another experiment runs meanwhile; `c` (still in the ended one) joins it.
    let mut b = experimenter(&srv.base).await;
    request(&mut b, "CREATE_EXPERIMENT", json!({"session_id": OTHER}), "SUCCESS").await;
    c.send("JOIN_EXPERIMENT", json!({"session_id": OTHER})).await.unwrap();
    let (reply, _) = c.recv_type("SUCCESS", T).await.expect("JOIN_EXPERIMENT after an ended experiment");
    assert_success(&reply, "JOIN_EXPERIMENT");
    // `a` (still in the ended one) deletes its session: it has ended, nothing runs.
    a.send("DELETE_SESSION", json!({"session_id": SESSION})).await.unwrap();
    let (deleted, skipped) = a.recv_type("DELETED_SESSION", T).await.expect("DELETE_SESSION after STOP_EXPERIMENT");
    assert_eq!(deleted["data"], SESSION);
    assert!(skipped.iter().all(|m| m["type"] != "ERROR"), "{skipped:?}");
    assert_eq!(srv.file_of(SESSION), None, "the file is gone");
    b.close().await;
    c.close().await;
    close_all(srv, a, parts, players).await;
}
