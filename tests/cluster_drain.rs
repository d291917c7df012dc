//! Cluster mode: draining a node, the experimenter's routing hint and the measured CPU in
//! placement. Real `exphub serve` processes over a throwaway PostgreSQL (`common/cluster.rs`);
//! the tests run one at a time and clean up when they end, also when they fail.
//!
//! - T8 `a_draining_node_finishes_its_experiment_then_leaves`
//! - the routing hint: `an_experimenters_routing_hint_reaches_the_remote_experiment`
//! - placement's room with the measured CPU, and draining nodes, in SQL:
//!   `busy_or_draining_nodes_get_no_new_placement`

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use cluster::*;
use common::*;
use exphub::media::Kind;
use exphub_client::ClientOptions;
use pg::Pg;
use serde_json::json;

const OTHER: &str = "d4a1n0e0e1";

/// `exphub drain --internal-url URL`, signed with the cluster secret; its exit status and stdout.
async fn run_drain(url: &str) -> (bool, String) {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_exphub"))
            .args(["drain", "--internal-url", &url, "--drain-timeout", "600"])
            .env("EXPHUB_CLUSTER_SECRET", SECRET)
            .output()
            .expect("exphub drain runs")
    })
    .await
    .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn node_row(pg: &Pg, id: &str) -> Option<exphub::cluster::NodeRow> {
    db(pg).await.nodes().await.unwrap().into_iter().find(|n| n.node_id == id)
}

/// Waits until `rec` has `more` packets of `kind` from `origin` beyond what it has now.
async fn more_media(rec: &Recorder, origin: &str, more: u64) -> bool {
    let now = count(rec, origin, Kind::Video);
    wait_media(rec, origin, Kind::Video, now + more, Duration::from_secs(30)).await
}

/// T8: an experiment runs on A (two participants, media both ways); `exphub drain` A. A new
/// CREATE_EXPERIMENT from A's experimenter is placed on B or C; the running experiment's media
/// goes on and a participant re-joins it (through C, routed to A); when it has ended, A leaves
/// the cluster (its row is gone) and its process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_finishes_its_experiment_then_leaves() {
    let (_serial, pg, [mut a, _b, c]) = three(10_000.0, &[session_json(SESSION), session_json(OTHER)]).await;
    let mut exp = experimenter(a.base()).await;
    let ok = request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    let (rec0, opts0) = recorder();
    let (rec1, opts1) = recorder();
    let p0 = participant_via(a.base(), SESSION, PARTICIPANTS[0], opts0).await;
    let p1 = participant_via(a.base(), SESSION, PARTICIPANTS[1], opts1).await;
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let mut players = vec![p0.publish(media()), p1.publish(media())];
    assert!(more_media(&rec1, PARTICIPANTS[0], 30).await, "P1 receives P0's video");
    assert!(more_media(&rec0, PARTICIPANTS[1], 30).await, "P0 receives P1's video");

    let url = node_row(&pg, "A").await.expect("A is registered").internal_url;
    let bad = exphub::cluster::internal::post(
        &exphub::cluster::Signer::new(SECRET.as_bytes()),
        "test",
        &url,
        "/internal/v1/drain",
        Some("application/json"),
        axum::body::Bytes::from_static(br#"{"timeout_s": "soon"}"#),
        T,
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 400, "a bad timeout is refused: {:?}", bad.body);
    assert_eq!(node_row(&pg, "A").await.unwrap().state, "serving", "and changes nothing");
    let (ok, said) = run_drain(&url).await;
    assert!(ok, "exphub drain succeeds: {said}");
    assert!(said.contains("\"state\":\"draining\"") && said.contains("\"experiments\":1"), "{said}");
    assert_eq!(node_row(&pg, "A").await.unwrap().state, "draining");
    let (status, metrics) = exphub_client::get(a.base(), "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("exphub_cluster_draining 1"), "/metrics shows it");

    // No new experiment lands on A.
    exp.send("CREATE_EXPERIMENT", json!({"session_id": OTHER})).await.unwrap();
    let m = outcome(&mut exp).await;
    assert_eq!(m["data"]["type"], "EXPERIMENT_ON_OTHER_NODE", "{m}");
    let owner = db(&pg).await.owner(OTHER).await.unwrap().expect("placed");
    assert!(owner.node_id == "B" || owner.node_id == "C", "{owner:?}");

    // The running experiment goes on, and a participant can re-join it (via C, routed to A).
    assert!(more_media(&rec1, PARTICIPANTS[0], 30).await, "P0 → P1 goes on while draining");
    players.pop().unwrap().abort();
    p1.close().await;
    let (rec1b, opts1b) = recorder();
    let p1b = participant_via(c.base(), SESSION, PARTICIPANTS[1], opts1b).await;
    assert!(within(&candidate_ports(&p1b.offer_response), a.ports), "A answers the re-join");
    players.push(p1b.publish(media()));
    assert!(more_media(&rec1b, PARTICIPANTS[0], 30).await, "the re-joined P1 receives P0's video");
    assert!(more_media(&rec0, PARTICIPANTS[1], 30).await, "P0 receives the re-joined P1's video");
    assert_eq!(a.proc.child.try_wait().unwrap(), None, "A runs while its experiment does");

    // The experiment ends: A leaves and exits 0.
    request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    for h in players {
        h.abort();
    }
    for cl in [p0, p1b, exp] {
        cl.close().await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = a.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "A exits once drained:\n{}", a.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "A exits 0: {status:?}\n{}", a.log_text());
    assert!(node_row(&pg, "A").await.is_none(), "A's row is gone");
    assert!(a.log_text().contains("drained"), "{}", a.log_text());
}

/// The routing hint: the experiment runs on B; an experimenter offers to A with its
/// `session_id`; B answers (B's UDP range), and on that connection the experimenter joins the
/// experiment and receives B's experiment messages. A hint naming no placed experiment is
/// answered where it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experimenters_routing_hint_reaches_the_remote_experiment() {
    let (_serial, _pg, [a, b, c]) = three(10_000.0, &[session_json(SESSION), session_json(OTHER)]).await;
    let mut eb = experimenter(b.base()).await;
    request(&mut eb, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let hint = |sid: &str| ClientOptions { session_hint: Some(sid.to_owned()), ..Default::default() };
    let mut ea = experimenter_with(a.base(), hint(SESSION)).await;
    assert!(within(&candidate_ports(&ea.offer_response), b.ports), "B answers: {}", ea.offer_response);
    let joined = request(&mut ea, "JOIN_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&joined, "JOIN_EXPERIMENT");
    let p0 = participant_via(c.base(), SESSION, PARTICIPANTS[0], ClientOptions::default()).await;
    request(&mut eb, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    ea.recv_type("EXPERIMENT_STARTED", T).await.expect("B's experiment messages reach the hinted connection");
    let local = experimenter_with(a.base(), hint(OTHER)).await;
    assert!(within(&candidate_ports(&local.offer_response), a.ports), "not placed: A answers");
    for cl in [p0, ea, eb, local] {
        cl.close().await;
    }
}

/// Placement's room is `capacity − max(reserved, measured cpu)`, and only serving nodes get new
/// experiments, in the database alone: a preferred node whose heartbeat says it is busy is
/// passed over; once idle again it is chosen; a draining node is never chosen, while an
/// experiment already on it stays there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_or_draining_nodes_get_no_new_placement() {
    let _serial = SERIAL.lock().await;
    let pg = Pg::start(false);
    let d = db(&pg).await;
    d.register("X", "http://127.0.0.1:9", 1000.0).await.unwrap();
    d.register("Y", "http://127.0.0.1:9", 1000.0).await.unwrap();
    assert!(d.heartbeat("X", 950.0).await.unwrap());
    assert_eq!(d.place("busy1", 100.0, "X").await.unwrap().node_id, "Y", "X is busy: its room is 50");
    assert!(d.heartbeat("X", 10.0).await.unwrap());
    assert_eq!(d.place("busy2", 100.0, "X").await.unwrap().node_id, "X", "X is idle again");
    assert!(d.set_draining("Y").await.unwrap());
    assert!(d.heartbeat("X", 950.0).await.unwrap());
    assert!(matches!(d.place("busy3", 100.0, "Y").await, Err(exphub::cluster::DbError::NoCapacity)));
    let stays = d.place("busy1", 100.0, "X").await.unwrap();
    assert_eq!((stays.node_id.as_str(), stays.epoch), ("Y", 1), "a placement on a draining node stands");
    let nodes = d.nodes().await.unwrap();
    assert_eq!((nodes[0].cpu, nodes[0].state.as_str()), (950.0, "serving"), "{nodes:?}");
    assert_eq!(nodes[1].state, "draining", "{nodes:?}");
}
