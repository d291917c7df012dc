//! Proves the whole life of an experiment over real WebRTC on loopback: an experimenter and
//! participants connect, media (real VP8 and Opus from a fixture) reaches the experimenter
//! before START and the other participants only after START, byte for byte; chat flows both
//! ways; STOP ends it. Also: rejoin after a dropped connection takes over the seat, and kick
//! and ban notifications arrive before the connection closes.

mod common;

use std::time::Duration;

use common::*;
use exphub::media::Kind;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_lifecycle_with_media() {
    let srv = TestServer::start().await;
    let (erec, eopts) = recorder();
    let mut exp = experimenter_with(&srv.base, eopts).await;
    let list = request(&mut exp, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;
    assert_eq!(list["data"][0]["id"], SESSION);
    exp.recv_type("SESSION_LIST_END", T).await.expect("the list ends");

    exp.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    let created = exp.recv(T).await.unwrap();
    assert_eq!(created["type"], "EXPERIMENT_CREATED", "broadcast comes first");
    assert_eq!(created["data"]["session_id"], SESSION);
    assert!(created["data"]["creation_time"].as_i64().unwrap() > 0);
    let ok = exp.recv(T).await.unwrap();
    assert_success(&ok, "JOIN_EXPERIMENT");
    assert_eq!(ok["data"]["description"], "Successfully started and joined experiment.");

    let pids = &PARTICIPANTS[..3];
    let mut parts = vec![];
    let mut recs = vec![];
    let mut players = vec![];
    for pid in pids {
        let (rec, opts) = recorder();
        let p = participant(&srv.base, pid, opts).await;
        assert_eq!(p.offer_response["type"], "SESSION_DESCRIPTION");
        assert_eq!(p.offer_response["data"]["participant_summary"]["id"], *pid);
        players.push(p.publish(media()));
        parts.push(p);
        recs.push(rec);
    }

    // Before START: the experimenter sees everyone, each participant sees only its echo.
    for pid in pids {
        assert!(wait_media(&erec, pid, Kind::Video, 30, T).await, "experimenter gets {pid}'s video before START");
        assert!(wait_media(&erec, pid, Kind::Audio, 30, T).await, "experimenter gets {pid}'s audio before START");
        assert!(frames(&erec, pid) >= 5, "whole video frames arrive from {pid}");
    }
    for (i, rec) in recs.iter().enumerate() {
        assert!(wait_media(rec, "echo", Kind::Video, 30, T).await, "participant {i} gets its echo");
        for other in pids {
            assert_eq!(count(rec, other, Kind::Video), 0, "no cross-participant media before START");
        }
    }
    for p in &mut parts {
        let msgs = p.settle(Duration::from_millis(300)).await;
        assert!(msgs.iter().all(|m| m["type"] != "CONNECTION_PROPOSAL"), "no proposals before START: {msgs:?}");
    }

    // START: everyone is told, then participants see each other.
    exp.send("START_EXPERIMENT", json!({})).await.unwrap();
    let (started, _) = exp.recv_type("EXPERIMENT_STARTED", T).await.unwrap();
    let start_time = started["data"]["start_time"].as_i64().unwrap();
    assert_success(&exp.recv_type("SUCCESS", T).await.unwrap().0, "START_EXPERIMENT");
    for p in &mut parts {
        let (m, _) = p.recv_type("EXPERIMENT_STARTED", T).await.unwrap();
        assert_eq!(m["data"]["start_time"], start_time);
    }
    for (i, rec) in recs.iter().enumerate() {
        for (j, other) in pids.iter().enumerate() {
            if i != j {
                assert!(wait_media(rec, other, Kind::Video, 30, T).await, "participant {i} sees {other} after START");
                assert!(wait_media(rec, other, Kind::Audio, 30, T).await, "participant {i} hears {other} after START");
            }
        }
        assert_eq!(rec.lock().unwrap().foreign, 0, "forwarded payloads are byte-exact");
    }
    assert_eq!(erec.lock().unwrap().foreign, 0);

    // Chat: experimenter → one participant, participant → experimenter, experimenter → all.
    let msg = json!({"message": "hello P0", "time": 1, "author": "experimenter", "target": pids[0]});
    let ok = request(&mut exp, "CHAT", msg.clone(), "SUCCESS").await;
    assert_success(&ok, "CHAT");
    let (got, _) = parts[0].recv_type("CHAT", T).await.unwrap();
    assert_eq!(got["data"], msg);
    let reply = json!({"message": "hi", "time": 2, "author": pids[0], "target": "experimenter"});
    assert_success(&request(&mut parts[0], "CHAT", reply.clone(), "SUCCESS").await, "CHAT");
    assert_eq!(exp.recv_type("CHAT", T).await.unwrap().0["data"], reply);
    let all = json!({"message": "to all", "time": 3, "author": "experimenter", "target": "participants"});
    assert_success(&request(&mut exp, "CHAT", all.clone(), "SUCCESS").await, "CHAT");
    for p in &mut parts {
        assert_eq!(p.recv_type("CHAT", T).await.unwrap().0["data"], all);
    }
    // On disk before the reply: P0 has all three, P1 only the public one.
    let file = srv.session_file();
    assert_eq!(file["participants"][0]["chat"].as_array().unwrap().len(), 3);
    assert_eq!(file["participants"][1]["chat"].as_array().unwrap().len(), 1);

    // STOP: everyone is told; times are on disk.
    exp.send("STOP_EXPERIMENT", json!({})).await.unwrap();
    let (ended, _) = exp.recv_type("EXPERIMENT_ENDED", T).await.unwrap();
    assert_eq!(ended["data"]["start_time"], start_time);
    assert_success(&exp.recv_type("SUCCESS", T).await.unwrap().0, "STOP_EXPERIMENT");
    for p in &mut parts {
        p.recv_type("EXPERIMENT_ENDED", T).await.unwrap();
    }
    let file = srv.session_file();
    assert_eq!(file["start_time"], start_time);
    assert_eq!(file["end_time"], ended["data"]["end_time"]);
    // Joining an ended experiment is refused.
    let err = exphub_client::Client::connect(
        &srv.base,
        exphub_client::Role::Participant { session_id: SESSION.into(), participant_id: PARTICIPANTS[3].into() },
        Default::default(),
    )
    .await
    .err()
    .expect("join after STOP fails");
    assert!(err.to_string().contains("409") && err.to_string().contains("The experiment has ended."), "{err}");

    close_all(srv, exp, parts, players).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_takes_over_the_seat() {
    let srv = TestServer::start().await;
    let (mut exp, erec, mut parts, recs, mut players) = running_experiment(&srv, 2).await;
    let p0 = PARTICIPANTS[0];
    assert!(wait_media(&recs[1], p0, Kind::Video, 30, T).await, "P1 sees P0");
    parts[1].settle(Duration::from_millis(300)).await;
    exp.settle(Duration::from_millis(300)).await;

    // P0 reloads the page: a new connection comes while the old one still exists. The new
    // connection takes the seat (instead of SynthARium's 409) and the old one is closed.
    players.remove(0).abort();
    let mut old = parts.remove(0);
    let before = count(&recs[1], p0, Kind::Video);
    let (rec0, opts) = recorder();
    let mut p0_again = participant(&srv.base, p0, opts).await;
    let (started, _) =
        p0_again.recv_type("EXPERIMENT_STARTED", T).await.expect("told at once that the experiment runs");
    assert!(started["data"]["start_time"].as_i64().unwrap() > 0);
    players.push(p0_again.publish(media()));
    assert!(old.wait_closed(T).await, "the old connection is closed by the server");

    // P1 keeps its sub-connection to P0: the forwarder switches source underneath.
    assert!(wait_media(&recs[1], p0, Kind::Video, before + 60, T).await, "P1 keeps seeing P0 after the rejoin");
    assert!(wait_media(&rec0, PARTICIPANTS[1], Kind::Video, 30, T).await, "the rejoined P0 sees P1");
    assert!(wait_media(&rec0, "echo", Kind::Video, 30, T).await, "the rejoined P0 gets its echo");
    let p1_msgs = parts[0].settle(Duration::from_millis(500)).await;
    assert!(
        p1_msgs.iter().all(|m| m["type"] != "CONNECTION_PROPOSAL"),
        "no one sees P0 twice: no second proposal for P0 to P1: {p1_msgs:?}"
    );
    let e_msgs = exp.settle(Duration::from_millis(300)).await;
    assert!(e_msgs.iter().all(|m| m["type"] != "CONNECTION_PROPOSAL"), "{e_msgs:?}");
    assert!(erec.lock().unwrap().foreign == 0 && recs[1].lock().unwrap().foreign == 0);

    p0_again.close().await;
    close_all(srv, exp, parts, players).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_and_ban_are_delivered_before_the_close() {
    let srv = TestServer::start().await;
    let (mut exp, _erec, mut parts, _recs, players) = running_experiment(&srv, 3).await;
    let (p1, p2) = (PARTICIPANTS[1], PARTICIPANTS[2]);

    let ok =
        request(&mut exp, "KICK_PARTICIPANT", json!({"participant_id": p1, "reason": "test kick"}), "SUCCESS").await;
    assert_success(&ok, "KICK_PARTICIPANT");
    let (note, _) = parts[1].recv_type("KICK_NOTIFICATION", T).await.expect("kick notice arrives");
    assert_eq!(note["data"], json!({"reason": "test kick"}));
    assert!(parts[1].wait_closed(T).await, "the kicked participant's connection is closed");
    // A kick is not a ban: P1 may come back.
    let (_, opts) = recorder();
    let back = participant(&srv.base, p1, opts).await;

    let ok = request(&mut exp, "BAN_PARTICIPANT", json!({"participant_id": p2, "reason": "test ban"}), "SUCCESS").await;
    assert_success(&ok, "BAN_PARTICIPANT");
    let (note, _) = parts[2].recv_type("BAN_NOTIFICATION", T).await.expect("ban notice arrives");
    assert_eq!(note["data"], json!({"reason": "test ban"}));
    assert!(parts[2].wait_closed(T).await, "the banned participant's connection is closed");
    assert_eq!(srv.session_file()["participants"][2]["banned"], true, "the ban is on disk");
    let err = exphub_client::Client::connect(
        &srv.base,
        exphub_client::Role::Participant { session_id: SESSION.into(), participant_id: p2.into() },
        Default::default(),
    )
    .await
    .err()
    .expect("a banned participant cannot rejoin");
    let refused = err.downcast_ref::<exphub_client::OfferRefused>().expect("refused by the server");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["data"]["type"], "BANNED_PARTICIPANT");
    assert_eq!(refused.body["data"]["description"], "You have been banned and can no longer join the experiment.");

    // The others carry on.
    let ok = request(&mut parts[0], "PING", json!({"n": 1}), "PONG").await;
    assert_eq!(ok["data"]["ping_data"], json!({"n": 1}));
    back.close().await;
    close_all(srv, exp, parts, players).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_a_keyframe_at_once() {
    let srv = TestServer::start().await;
    let mut first = experimenter(&srv.base).await;
    request(&mut first, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    // Our own player: it counts the keyframe requests it answers. The clip has a keyframe
    // every 2 s, so without a request a new viewer would wait up to 2 s for a picture.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let clip = std::sync::Arc::new(
        exphub_client::Media::load(&dir.join("clip-640x480-vp8.ivf"), &dir.join("clip-opus.ogg")).unwrap(),
    );
    let p0 = participant(&srv.base, PARTICIPANTS[0], Default::default()).await;
    let player = p0.publish(clip.clone());
    tokio::time::sleep(Duration::from_millis(700)).await; // mid-GOP
    let answered = clip.keyframes_sent.load(std::sync::atomic::Ordering::Relaxed);

    let (rec, opts) = recorder();
    let mut late = experimenter_with(&srv.base, opts).await;
    let ok = request(&mut late, "JOIN_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    assert!(wait_media(&rec, PARTICIPANTS[0], Kind::Video, 10, T).await);
    let deadline = std::time::Instant::now() + T;
    while !rec.lock().unwrap().first_key.contains_key(PARTICIPANTS[0]) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_pkt, first_key) = {
        let g = rec.lock().unwrap();
        (
            g.first[&(PARTICIPANTS[0].to_owned(), Kind::Video)],
            *g.first_key.get(PARTICIPANTS[0]).expect("a keyframe arrives"),
        )
    };
    let wait = first_key.saturating_duration_since(first_pkt);
    assert!(wait < Duration::from_millis(400), "keyframe {wait:?} after the first packet");
    assert!(
        clip.keyframes_sent.load(std::sync::atomic::Ordering::Relaxed) > answered,
        "the publisher was asked for a keyframe when the viewer joined"
    );
    player.abort();
    p0.close().await;
    late.close().await;
    first.close().await;
    srv.stop().await;
}
