//! Cluster mode (`--cluster-db`): a throwaway PostgreSQL started by the test (see
//! `common/pg.rs`; the nodes and helpers are in `common/cluster.rs`) and three real `exphub serve` processes (A, B, C) on loopback, each with its
//! own sessions directory, internal API and UDP port range, so that an answer's candidates tell
//! which node answered. Every process and the database are stopped and removed when a test
//! ends, also when it fails (guards with Drop). The tests run one at a time (each starts its
//! own database and nodes).
//!
//! - T1 `a_participant_offer_reaching_another_node_is_answered_by_the_owner`
//! - T2 `trickled_candidates_through_a_third_node_reach_the_owner`
//! - T3 `placement_spreads_within_capacity_and_refuses_when_full`
//! - T4 `concurrent_creates_on_two_nodes_place_the_experiment_once` (through the nodes) and
//!   `concurrent_placements_reserve_once` (the SQL, without heartbeats that would hide a leak)
//! - fencing: `a_fenced_out_owner_cannot_release_the_moved_placement`
//! - the internal API: `the_internal_api_is_signed_and_not_public`
//! - T10 (single node unchanged) is the rest of the suite, which runs without `--cluster-db`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/pg.rs"]
mod pg;

use std::time::Duration;

use cluster::*;
use common::*;
use exphub_client::ClientOptions;
use pg::Pg;
use serde_json::{json, Value};

/// T1: the experiment is placed on B (its experimenter is there); participants offer to A and
/// C; the answers are B's (its UDP range), the data channels open and media flows between
/// them through B. A logs one forwarded offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_offer_reaching_another_node_is_answered_by_the_owner() {
    let (_serial, pg, [a, b, c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut exp = experimenter(b.base()).await;
    let ok = request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    let owner = db(&pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!((owner.node_id.as_str(), owner.epoch), ("B", 1));

    let (rec0, opts0) = recorder();
    let (rec1, opts1) = recorder();
    let p0 = participant_via(a.base(), SESSION, PARTICIPANTS[0], opts0).await;
    let p1 = participant_via(c.base(), SESSION, PARTICIPANTS[1], opts1).await;
    for (p, via) in [(&p0, &a), (&p1, &c)] {
        let ports = candidate_ports(&p.offer_response);
        assert!(within(&ports, b.ports), "answer via {} has B's ports {:?}: {ports:?}", via.id, b.ports);
        assert!(!ports.iter().any(|x| (via.ports.0..=via.ports.1).contains(x)), "not {}'s", via.id);
    }
    let started = request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    assert_success(&started, "START_EXPERIMENT");
    let players = vec![p0.publish(media()), p1.publish(media())];
    // Each participant decodes the other's video: media went P0 → B → P1 and back.
    let video = exphub::media::Kind::Video;
    assert!(wait_media(&rec1, PARTICIPANTS[0], video, 30, Duration::from_secs(30)).await, "P1 receives P0's video");
    assert!(wait_media(&rec0, PARTICIPANTS[1], video, 30, Duration::from_secs(30)).await, "P0 receives P1's video");
    assert!(frames(&rec1, PARTICIPANTS[0]) > 0 && frames(&rec0, PARTICIPANTS[1]) > 0, "whole frames arrive");
    let forwarded = a.log_text().matches("forwarding an offer").count();
    assert_eq!(forwarded, 1, "A forwarded one offer (P0's main connection):\n{}", a.log_text());
    assert_eq!(b.log_text().matches("forwarding an offer").count(), 0, "the owner forwards nothing");
    for h in players {
        h.abort();
    }
    for cl in [p0, p1, exp] {
        cl.close().await;
    }
}

/// T2: a participant offers via A and trickles its candidates via C (as a balancer in front
/// of the nodes may send them); C forwards them to B, the owner, which takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_candidates_through_a_third_node_reach_the_owner() {
    let (_serial, _pg, [a, b, c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut exp = experimenter(b.base()).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let opts = ClientOptions { trickle: true, trickle_to: Some(c.base().to_owned()), ..Default::default() };
    let mut p0 = participant_via(a.base(), SESSION, PARTICIPANTS[0], opts).await;
    assert!(within(&candidate_ports(&p0.offer_response), b.ports), "B answered");
    let s = request(&mut p0, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    assert_eq!(s["data"]["id"], SESSION);
    // Candidates are trickled as they are gathered: wait until the owner has taken some.
    let taken =
        |log: &str| log.lines().filter(|l| l.contains("path=/internal/v1/ice") && l.contains("status=200")).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while taken(&b.log_text()) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken(&b.log_text()) > 0, "B took forwarded candidates:\n{}", b.log_text());
    let at_c = c.log_text().lines().filter(|l| l.contains("path=/addIceCandidate") && l.contains("status=200")).count();
    assert_eq!(at_c, taken(&b.log_text()), "every candidate C answered was B's answer");
    assert_eq!(taken(&a.log_text()) + taken(&c.log_text()), 0, "only the owner takes them");
    p0.close().await;
    exp.close().await;
}

/// T3: capacities fit three experiments per node; an experimenter on A creates ten. A takes
/// three (its own first), the next six are placed on B and C (the experimenter is told where),
/// and the tenth is refused with NO_CAPACITY. No node is above its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_spreads_within_capacity_and_refuses_when_full() {
    let ids: Vec<String> = (0..10).map(|i| format!("c1u5te{i:04}")).collect();
    let sessions: Vec<Value> = ids.iter().map(|id| session_json(id)).collect();
    let cost = exphub::cluster::cost_millicores(&serde_json::from_value(sessions[0].clone()).unwrap());
    let capacity = cost * 3.5;
    let (_serial, pg, [a, _b, _c]) = three(capacity, &sessions).await;
    let mut exp = experimenter(a.base()).await;
    let mut here = 0;
    let mut elsewhere = std::collections::HashMap::<String, usize>::new();
    for (i, sid) in ids.iter().enumerate() {
        exp.send("CREATE_EXPERIMENT", json!({"session_id": sid})).await.unwrap();
        let m = outcome(&mut exp).await;
        match (i, m["type"].as_str(), m["data"]["type"].as_str()) {
            (0..=2, Some("SUCCESS"), _) => here += 1,
            (3..=8, Some("ERROR"), Some("EXPERIMENT_ON_OTHER_NODE")) => {
                assert_eq!(m["data"]["code"], 409, "{m}");
                let d = m["data"]["description"].as_str().unwrap();
                let node =
                    ["B", "C"].into_iter().find(|n| d.contains(&format!("({n})"))).unwrap_or_else(|| panic!("{d}"));
                *elsewhere.entry(node.to_owned()).or_default() += 1;
            }
            (9, Some("ERROR"), Some("NO_CAPACITY")) => {
                assert_eq!(m["data"]["code"], 503, "{m}");
                assert!(m["data"]["description"].as_str().unwrap().starts_with("No server has room"), "{m}");
            }
            _ => panic!("create #{i}: {m}"),
        }
    }
    assert_eq!(here, 3);
    assert_eq!((elsewhere.get("B"), elsewhere.get("C")), (Some(&3), Some(&3)), "{elsewhere:?}");
    let nodes = db(&pg).await.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert!(n.load <= n.capacity, "{n:?}");
        assert_eq!(n.experiments, 3, "{n:?}");
    }
    exp.close().await;
}

/// T4: 25 CREATE_EXPERIMENTs for one session from an experimenter on A and 25 from one on B,
/// all at once: one placement (epoch 1, one reservation), one success; the other callers on
/// the winner's node are told the experiment exists, those on the other node where it lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_on_two_nodes_place_the_experiment_once() {
    let (_serial, pg, [a, b, _c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut ea = experimenter(a.base()).await;
    let mut eb = experimenter(b.base()).await;
    for _ in 0..25 {
        ea.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
        eb.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    }
    let mut replies = vec![];
    for (e, node) in [(&mut ea, "A"), (&mut eb, "B")] {
        for _ in 0..25 {
            replies.push((node, outcome(e).await));
        }
    }
    let owner = db(&pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!(owner.epoch, 1);
    let successes: Vec<&(&str, Value)> = replies.iter().filter(|(_, m)| m["type"] == "SUCCESS").collect();
    assert_eq!(successes.len(), 1, "{replies:?}");
    assert_eq!(successes[0].0, owner.node_id, "the success is on the owner");
    for (node, m) in replies.iter().filter(|(_, m)| m["type"] == "ERROR") {
        if *node == owner.node_id {
            assert_eq!(m["data"]["description"], "Experiment already exists.", "{m}");
        } else {
            assert_eq!(m["data"]["type"], "EXPERIMENT_ON_OTHER_NODE", "{m}");
            assert!(m["data"]["description"].as_str().unwrap().contains(&format!("({})", owner.node_id)), "{m}");
        }
    }
    let nodes = db(&pg).await.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.experiments).sum::<i32>(), 1, "{nodes:?}");
    ea.close().await;
    eb.close().await;
}

/// T4, in the database alone (no heartbeat that would recompute a leaked reservation): 50
/// concurrent placements of one experiment over two connections, preferring two different
/// nodes, agree on one placement at epoch 1 and reserve its cost exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_reserve_once() {
    let _serial = SERIAL.lock().await;
    let pg = Pg::start(false);
    let (d1, d2) = (std::sync::Arc::new(db(&pg).await), std::sync::Arc::new(db(&pg).await));
    d1.register("X", "http://127.0.0.1:9", 1000.0).await.unwrap();
    d1.register("Y", "http://127.0.0.1:9", 1000.0).await.unwrap();
    for round in 0..4 {
        let sid = format!("race{round}");
        let mut tasks = vec![];
        for i in 0..50 {
            let (d, sid) = (if i % 2 == 0 { d1.clone() } else { d2.clone() }, sid.clone());
            tasks.push(tokio::spawn(async move { d.place(&sid, 29.0, if i % 2 == 0 { "X" } else { "Y" }).await }));
        }
        let mut got = vec![];
        for t in tasks {
            got.push(t.await.unwrap().expect("placed"));
        }
        assert!(got.iter().all(|p| *p == got[0]), "one answer: {got:?}");
        assert_eq!(got[0].epoch, 1);
    }
    let nodes = d1.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.load).sum::<f32>(), 4.0 * 29.0, "{nodes:?}");
    assert_eq!(nodes.iter().map(|n| n.experiments).sum::<i32>(), 4, "{nodes:?}");
}

/// Fencing: once an experiment has moved on (its node went stale and it was placed again, epoch
/// 2), the old owner's write about it (its release) commits nothing; the new owner's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_owner_cannot_release_the_moved_placement() {
    let _serial = SERIAL.lock().await;
    let pg = Pg::start(false);
    let d = db(&pg).await;
    d.register("X", "http://127.0.0.1:9", 1000.0).await.unwrap();
    d.register("Y", "http://127.0.0.1:9", 1000.0).await.unwrap();
    let first = d.place("fenced", 29.0, "X").await.unwrap();
    assert_eq!((first.node_id.as_str(), first.epoch), ("X", 1));
    assert_eq!(d.place("fenced", 29.0, "Y").await.unwrap(), first, "a live placement stays");
    sql(&pg, "UPDATE nodes SET last_seen = now() - interval '1 minute' WHERE node_id = 'X'").await;
    let moved = d.place("fenced", 29.0, "Y").await.unwrap();
    assert_eq!((moved.node_id.as_str(), moved.epoch), ("Y", 2), "taken over with the next epoch");
    assert!(!d.release("fenced", "X", 1).await.unwrap(), "the zombie's write is fenced");
    let load =
        |nodes: Vec<exphub::cluster::NodeRow>, id: &str| nodes.into_iter().find(|n| n.node_id == id).unwrap().load;
    assert_eq!(load(d.nodes().await.unwrap(), "Y"), 29.0, "the new owner's reservation stands");
    assert!(d.release("fenced", "Y", 2).await.unwrap());
    assert_eq!(load(d.nodes().await.unwrap(), "Y"), 0.0, "released");
    let again = d.place("fenced", 29.0, "Y").await.unwrap();
    assert_eq!((again.node_id.as_str(), again.epoch), ("Y", 3), "a new run is a new epoch");
}

/// The internal API answers only on the internal address, and only signed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_api_is_signed_and_not_public() {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let pg = Pg::start(false);
    let a = node(&pg, "A", port_ranges()[0], 1000.0, &[session_json(SESSION)]);
    let url = db(&pg).await.nodes().await.unwrap().remove(0).internal_url;
    assert_ne!(url, a.base());
    let body = json!({"request": {}});
    let (status, _) = exphub_client::post_json(a.base(), "/internal/v1/offer", &body).await.unwrap();
    assert_eq!(status, 404, "not on the public listener");
    let (status, _) = exphub_client::post_json(&url, "/internal/v1/offer", &body).await.unwrap();
    assert_eq!(status, 401, "unsigned");
    use exphub::cluster::{internal, Signer};
    let bytes = axum::body::Bytes::from(body.to_string());
    let post = |secret: &'static str| {
        let (url, bytes) = (url.clone(), bytes.clone());
        async move {
            internal::post(
                &Signer::new(secret.as_bytes()),
                "test",
                &url,
                "/internal/v1/offer",
                Some("application/json"),
                bytes,
                T,
            )
            .await
            .unwrap()
            .status
        }
    };
    assert_eq!(post("another-secret-0123456789").await, 401, "signed with another secret");
    assert_eq!(post(SECRET).await, 400, "signed: the offer handler answers (a request without an sdp)");
}
