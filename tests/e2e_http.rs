//! The HTTP surface under hostile or unlucky clients: timeouts, the connection cap, the
//! early-candidate buffer, offers the server cannot or will not answer, and what is refused
//! at the boundary. Real server on 127.0.0.1:0, raw sockets and real WebRTC clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exphub_client::{get, post_json, Client, ClientOptions, OfferRefused, Role};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes); returns what it sent
/// and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn addr_of(srv: &TestServer) -> String {
    srv.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_after_the_timeouts() {
    let srv = TestServer::start_with(|c| {
        c.http.header_timeout = Duration::from_secs(1);
        c.http.body_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = addr_of(&srv);

    // Connected, never a byte: closed by the header timeout.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    // A request head dripped one line at a time, never finished.
    let mut drip = TcpStream::connect(&addr).await.unwrap();
    drip.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let dripping = tokio::spawn(async move {
        for i in 0..100 {
            if drip.write_all(format!("x-drip-{i}: 1\r\n").as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drip
    });
    // A keep-alive connection after one answered request: closed once idle.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // A complete head announcing a body that never fully comes: 408.
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /offer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"req",
        )
        .await
        .unwrap();

    let (sent, closed) = read_until_closed(&mut idle, Duration::from_secs(20)).await;
    assert!(closed, "an idle connection is closed");
    assert_eq!(sent, "", "nothing is sent to a client that never asked");
    let (sent, closed) = read_until_closed(&mut kept, Duration::from_secs(20)).await;
    assert!(closed, "an idle keep-alive connection is closed");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    let (sent, closed) = read_until_closed(&mut slow_body, Duration::from_secs(20)).await;
    assert!(closed, "a slow body ends the connection");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains(r#""description":"The request body did not arrive in time.""#), "{sent}");
    let mut drip = tokio::time::timeout(Duration::from_secs(30), dripping).await.expect("drip ends").unwrap();
    let (sent, closed) = read_until_closed(&mut drip, Duration::from_secs(20)).await;
    assert!(closed && !sent.contains("200 OK"), "a dripped head is cut off: {sent:?}");

    // The server itself is fine.
    assert_eq!(get(&srv.base, "/healthz").await.unwrap().0, 200);
    srv.stop().await;
}

/// A socket that was accepted by the server: it answers a request on it.
async fn connect_held(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_new_clients_get_503_and_existing_ones_keep_working() {
    const CAP: usize = 6;
    let srv = TestServer::start_with(|c| {
        c.http.max_connections = CAP;
        c.http.header_timeout = Duration::from_secs(120);
    })
    .await;
    let addr = addr_of(&srv);
    // A connected experimenter (its /offer connection is closed once answered).
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "PING", json!({"n": 1}), "PONG").await;

    // Fill every slot with idle connections. Each is served once accepted; poll until a new
    // connection is turned away (the slots of earlier short requests may still be closing).
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(connect_held(&addr).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let (status, body) = get(&srv.base, "/healthz").await.unwrap();
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "the cap never took effect");
        held.push(connect_held(&addr).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused: Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(
        refused,
        json!({"type": "ERROR", "data": {"code": 503, "type": "INTERNAL_SERVER_ERROR",
               "description": "The server has too many open connections; try again later."}})
    );
    // A real offer gets a typed 503 at once, not a hang.
    let started = Instant::now();
    let offer = Client::connect(&srv.base, Role::Experimenter { password: PASSWORD.into() }, ClientOptions::default());
    let e = tokio::time::timeout(Duration::from_secs(30), offer).await.expect("answered").err().expect("refused");
    let refused = e.downcast_ref::<OfferRefused>().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(refused.status, 503, "{refused}");
    assert_eq!(refused.body["data"]["type"], "INTERNAL_SERVER_ERROR");
    assert!(started.elapsed() < Duration::from_secs(30));

    // The experimenter already connected keeps working: its data channel does not need HTTP.
    request(&mut exp, "PING", json!({"n": 2}), "PONG").await;
    request(&mut exp, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;

    // Closing the idle connections frees the slots.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&srv.base, "/healthz").await.unwrap().0 != 200 {
        assert!(Instant::now() < deadline, "slots are freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = experimenter(&srv.base).await;
    again.close().await;
    exp.close().await;
    srv.stop().await;
}

fn candidate_body(id: &str, candidate: &str) -> Value {
    json!({"request": {"id": id, "candidate": {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0,
                                               "usernameFragment": null}}})
}

async fn metric(base: &str, name: &str) -> i64 {
    let (_, text) = get(base, "/metrics").await.unwrap();
    let text = String::from_utf8(text).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_candidates_cannot_pin_memory() {
    let srv = TestServer::start().await;
    // The memory probe's candidate: 200 KiB.
    let (status, body) =
        post_json(&srv.base, "/addIceCandidate", &candidate_body("id1", &"a".repeat(200 * 1024))).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["data"]["description"], "Invalid candidate.: request.candidate.candidate: longer than 1024 bytes");
    let (status, body) =
        post_json(&srv.base, "/addIceCandidate", &candidate_body(&"i".repeat(300), "candidate:1")).await.unwrap();
    assert_eq!(status, 400, "{body}");

    // 2,000 of the largest accepted candidates over 500 ids: about 2.5 MB offered.
    let line = format!("candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host {}", "x".repeat(960));
    assert!(line.len() <= 1024);
    let mut max_seen = 0;
    for i in 0..2_000 {
        let id = format!("{:0>200}", i % 500);
        let (status, body) = post_json(&srv.base, "/addIceCandidate", &candidate_body(&id, &line)).await.unwrap();
        assert!(status == 200 || status == 400, "{status} {body}");
        if i % 100 == 99 {
            max_seen = max_seen.max(metric(&srv.base, "exphub_ice_buffered_bytes").await);
        }
    }
    assert!(max_seen > 256 * 1024, "the buffer is used: {max_seen}");
    assert!(max_seen <= 1024 * 1024, "the buffer stays under 1 MiB: {max_seen}");
    srv.stop().await;
}

fn experimenter_offer(sdp: &str, kind: &str) -> Value {
    json!({"request": {"sdp": sdp, "type": kind, "user_type": "experimenter",
                       "experimenter_password": PASSWORD, "connection_id": uuid::Uuid::new_v4().to_string()}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_the_server_cannot_answer_get_400_or_503_not_500() {
    let srv = TestServer::start().await;
    // An SDP without ICE credentials (no m-line): the client's input.
    let no_ufrag = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let (status, body) = post_json(&srv.base, "/offer", &experimenter_offer(no_ufrag, "offer")).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["data"]["description"], "Failed to parse offer.");

    // An answer or a rollback is not an offer.
    for kind in ["answer", "rollback", "pranswer"] {
        let (status, body) = post_json(&srv.base, "/offer", &experimenter_offer(no_ufrag, kind)).await.unwrap();
        assert_eq!(status, 400, "{kind}: {body}");
        assert_eq!(
            body["data"]["description"],
            format!("Failed to parse offer.: request.type: expected \"offer\", got \"{kind}\"")
        );
    }

    srv.stop().await;

    // One UDP port: the first experimenter takes it, the second is told why it cannot connect.
    let port = 47_400 + (std::process::id() % 500) as u16;
    let srv = TestServer::start_with(|c| c.rtc.port_range = Some(port..=port)).await;
    let first = experimenter(&srv.base).await;
    let e = Client::connect(&srv.base, Role::Experimenter { password: PASSWORD.into() }, ClientOptions::default())
        .await
        .err()
        .expect("no port left");
    let refused = e.downcast_ref::<OfferRefused>().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(refused.status, 503, "{refused}");
    assert_eq!(refused.body["data"]["description"], "No free UDP port for media; try again later.");
    first.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_fields_are_validated_before_they_are_persisted() {
    let srv = TestServer::start().await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let before = srv.session_file();
    let filter = |channel: Value, group: Value| json!({"name": "MIRROR", "id": "m1", "channel": channel, "groupFilter": group, "config": {}});
    let cases = [
        (filter(json!(5), json!(false)), "data.video_filters[0].channel: invalid type: integer `5`"),
        (filter(json!("sideways"), json!(false)), "data.video_filters[0].channel: unknown variant `sideways`"),
        (filter(json!("video"), json!("no")), "data.video_filters[0].groupFilter: invalid type: string \"no\""),
        (
            filter(json!("audio"), json!(false)),
            "video_filters[0].channel: an audio filter does not belong in video_filters",
        ),
        (filter(json!("video"), json!(true)), "video_filters[0].groupFilter: must be false"),
    ];
    for (f, want) in cases {
        let e = expect_error(
            &mut exp,
            "SET_FILTERS",
            json!({"participant_id": "all", "audio_filters": [], "video_filters": [f]}),
        )
        .await;
        assert_eq!(e["code"], 400, "{e}");
        let text = e["description"].as_str().unwrap();
        assert!(text.starts_with("Message data is not a valid SetFiltersRequest.: "), "{text}");
        assert!(text.contains(want), "{text} should contain {want}");
    }
    assert_eq!(srv.session_file(), before, "nothing was persisted");
    let ok = filter(json!("video"), json!(false));
    request(
        &mut exp,
        "SET_FILTERS",
        json!({"participant_id": "all", "audio_filters": [], "video_filters": [ok]}),
        "SUCCESS",
    )
    .await;
    exp.close().await;
    srv.stop().await;
}

#[test]
fn session_files_with_unsafe_ids_are_reported_and_left_alone() {
    let dir = TempDir::new("ids");
    let mut bad = session_json("../../escape");
    bad["title"] = json!("escape");
    let path = dir.path().join("escape.json");
    let bytes = serde_json::to_vec_pretty(&bad).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    write_session(dir.path(), &session_json(SESSION));
    let (_store, sessions, problems) = exphub::session::store::SessionStore::open(dir.path()).unwrap();
    assert_eq!(sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [SESSION]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, path);
    assert!(problems[0].message.contains("\"../../escape\" is not usable"), "{}", problems[0].message);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left untouched");
}
