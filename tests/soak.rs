//! Connections come and go; the server gives back everything they took.
//!
//! - `churn_gives_back_memory_and_connections`: the real binary (a process of its own, so its
//!   memory is its own) goes through connect/leave cycles of experimenters, participants,
//!   watched participants (each with a sub-connection) and a client that vanishes without
//!   closing. Afterwards every peer connection is freed (`exphub_peer_connections_allocated`
//!   back to the baseline) and the RSS grew by less than a leak would make it (the leak this
//!   guards against was about 0.5 MB per cycle). A longer run: `examples/soak.rs`.
//! - `rejected_offers_give_their_ports_back`: offers with valid credentials and an SDP the
//!   WebRTC layer refuses (main and sub-connection offers) each get a 400 and close what was
//!   built: with a `--udp-ports` range of four ports, clients still connect afterwards.
//!
//! Both read the `/metrics` gauges of the process (RSS, fds) and of the peer layer (UDP ports
//! in use, peer connections in memory) and check that they follow the connections.

mod common;

use std::time::{Duration, Instant};

use common::proc::*;
use common::*;
use exphub_client::{self as client, Client, ClientOptions, Role};
use serde_json::{json, Value};

const UNWATCHED: &str = "5e55105e56";
/// Connect/leave cycles after the warm-up (whose first watched cycle's client vanishes).
const CYCLES: usize = 24;
const WARMUP: usize = 6;

async fn metrics(base: &str) -> String {
    let (status, body) = client::get(base, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("metrics are text")
}

fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("gauge {name} missing in /metrics"))
}

/// Polls `/metrics` until `ok` holds (true) or `timeout` passes (false, with the last text).
async fn wait_metrics(base: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = metrics(base).await;
        if ok(&text) || Instant::now() > deadline {
            return (ok(&text), text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS of the server")
}

fn quiet() -> ClientOptions {
    ClientOptions { auto_subscribe: false, ..Default::default() }
}

/// One cycle: `n` picks the kind (experimenter, participant, watched participant) and the seat.
/// The vanishing client takes the last seat (held until the server notices); the others
/// rotate through the rest.
async fn cycle(base: &str, watcher: &mut Client, n: usize, vanish: bool) {
    let seat = if vanish { PARTICIPANTS[3] } else { PARTICIPANTS[(n / 3) % 3] };
    match n % 3 {
        0 => {
            let mut c = Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, quiet())
                .await
                .expect("experimenter connects");
            request(&mut c, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;
            c.close().await;
        }
        1 => {
            let role = Role::Participant { session_id: UNWATCHED.into(), participant_id: seat.into() };
            let mut c = Client::connect(base, role, quiet()).await.expect("participant connects");
            request(&mut c, "GET_SESSION", json!({"session_id": UNWATCHED}), "SESSION").await;
            c.close().await;
        }
        _ => {
            watcher.drain();
            let mut c = participant(base, seat, quiet()).await;
            request(&mut c, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
            // The watcher's sub-connection to this participant is proposed and answered.
            let (p, _) = watcher.recv_type("CONNECTION_PROPOSAL", T).await.expect("a proposal for the watcher");
            assert_eq!(p["data"]["participant_summary"], seat, "{p}");
            let (a, _) = watcher.recv_type("CONNECTION_ANSWER", T).await.expect("the sub-connection is answered");
            assert_eq!(a["data"]["id"], p["data"]["id"]);
            if vanish {
                c.crash().await;
            } else {
                c.close().await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_gives_back_memory_and_connections() {
    init_tracing();
    let dir = TempDir::new("soak");
    write_session(dir.path(), &session_json(SESSION));
    write_session(dir.path(), &session_json(UNWATCHED));
    let srv = spawn_server(dir.path(), &dir.path().join("server.log"));
    let pid = srv.child.id();

    // The watcher owns both experiments and stays in SESSION's, subscribing to everyone.
    let mut watcher = experimenter(&srv.base).await;
    request(&mut watcher, "CREATE_EXPERIMENT", json!({"session_id": UNWATCHED}), "SUCCESS").await;
    request(&mut watcher, "LEAVE_EXPERIMENT", json!({}), "SUCCESS").await;
    request(&mut watcher, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let base = metrics(&srv.base).await;
    assert_eq!(gauge(&base, "exphub_connections"), 1);
    assert_eq!(gauge(&base, "exphub_udp_ports_in_use"), 1, "one port for the watcher's connection");
    let live0 = gauge(&base, "exphub_peer_connections_allocated");
    assert_eq!(live0, 1, "{base}");
    assert!(gauge(&base, "exphub_process_resident_memory_bytes") > 4 << 20);
    assert!(gauge(&base, "exphub_process_open_fds") > 3);

    // The gauges follow a connection: one more port and peer connection while it is open.
    let mut extra = experimenter(&srv.base).await;
    request(&mut extra, "PING", json!({}), "PONG").await;
    let open = metrics(&srv.base).await;
    assert_eq!(gauge(&open, "exphub_udp_ports_in_use"), 2, "{open}");
    assert_eq!(gauge(&open, "exphub_peer_connections_allocated"), 2, "{open}");
    assert!(gauge(&open, "exphub_process_open_fds") > gauge(&base, "exphub_process_open_fds"), "{open}");
    extra.close().await;

    // The first watched cycle vanishes without closing; the server notices when ICE times out,
    // about 30 s later, and everything it held must go too. It vanishes during the warm-up, so
    // that the memory it holds until then counts in the reference: freed, it is reused.
    let started = Instant::now();
    for n in 0..WARMUP {
        cycle(&srv.base, &mut watcher, n, n == 2).await;
    }
    let rss_warm = rss_kb(pid);
    for n in WARMUP..WARMUP + CYCLES {
        cycle(&srv.base, &mut watcher, n, false).await;
    }
    let idle = |t: &str| {
        gauge(t, "exphub_connections") == 1
            && gauge(t, "exphub_subconnections") == 0
            && gauge(t, "exphub_peer_connections_allocated") == live0
    };
    let (settled, text) = wait_metrics(&srv.base, Duration::from_secs(75), idle).await;
    assert!(settled, "every connection of the cycles is closed and freed: {text}");
    assert_eq!(gauge(&text, "exphub_udp_ports_in_use"), 1, "{text}");
    let rss_end = rss_kb(pid);
    let per_cycle = (rss_end as f64 - rss_warm as f64) / CYCLES as f64;
    eprintln!(
        "soak: {CYCLES} cycles in {:.1} s; RSS {rss_warm} kB → {rss_end} kB ({per_cycle:+.0} kB per cycle)",
        started.elapsed().as_secs_f64()
    );
    // The leak was 450-880 kB per cycle; allocator noise over a short run stays far below this.
    assert!(per_cycle < 200.0, "RSS grew by {per_cycle:.0} kB per cycle ({rss_warm} → {rss_end} kB)");
    let (settled, _) =
        wait_metrics(&srv.base, T, |t| gauge(t, "exphub_process_open_fds") <= gauge(&base, "exphub_process_open_fds"))
            .await;
    assert!(settled, "the server's fds are back to the baseline");
    watcher.close().await;
}

/// An `/offer` with the password and an SDP nobody can parse.
async fn garbage_offer(base: &str) -> (u16, Value) {
    let req = json!({"request": {"sdp": "garbage", "type": "offer", "user_type": "experimenter",
                                 "experimenter_password": PASSWORD}});
    client::post_json(base, "/offer", &req).await.expect("POST /offer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_offers_give_their_ports_back() {
    // Four ports, somewhere this test's process is unlikely to meet another test's range.
    let first = 41_000 + (std::process::id() % 4_000) as u16 * 4;
    let srv = TestServer::start_with(|c| c.rtc.port_range = Some(first..=first + 3)).await;
    for i in 0..10 {
        let (status, body) = garbage_offer(&srv.base).await;
        assert_eq!(status, 400, "garbage offer {i}: {body}");
    }
    let m = metrics(&srv.base).await;
    assert_eq!(gauge(&m, "exphub_udp_ports_in_use"), 0, "{m}");
    assert_eq!(gauge(&m, "exphub_peer_connections_allocated"), 0, "{m}");

    // Sub-connection offers: the experimenter answers each proposal with garbage.
    let mut exp = experimenter_with(&srv.base, quiet()).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let _p0 = participant(&srv.base, PARTICIPANTS[0], quiet()).await;
    for i in 0..4 {
        let (p, _) = exp.recv_type("CONNECTION_PROPOSAL", T).await.expect("a proposal");
        let offer = json!({"id": p["data"]["id"], "offer": {"sdp": "garbage", "type": "offer"}});
        exp.send("CONNECTION_OFFER", offer).await.unwrap();
        let (err, _) = exp.recv_type("ERROR", T).await.expect("the garbage sub offer is refused");
        assert_eq!(err["data"]["code"], 400, "garbage sub offer {i}: {err}");
        // Leaving and joining again brings a new proposal (it may come before the SUCCESS).
        exp.send("LEAVE_EXPERIMENT", json!({})).await.unwrap();
        exp.send("JOIN_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    }
    // Two ports in use (experimenter, participant); the others are free for new clients.
    let (ok, m) = wait_metrics(&srv.base, T, |t| gauge(t, "exphub_udp_ports_in_use") == 2).await;
    assert!(ok, "{m}");
    let mut p1 = participant(&srv.base, PARTICIPANTS[1], quiet()).await;
    request(&mut p1, "PING", json!({}), "PONG").await;
    let mut late = experimenter_with(&srv.base, quiet()).await;
    request(&mut late, "PING", json!({}), "PONG").await;
    srv.stop().await;
}
