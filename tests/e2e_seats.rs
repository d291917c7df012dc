//! A seat cannot be taken with what participants are shown: a participant's id (with the
//! session id, the invite link) is its whole credential, so participants see each other only
//! under per-viewer aliases, and still see, hear and chat with each other.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use exphub::media::Kind;
use exphub_client::{Client, ClientOptions, OfferRefused, Role};
use serde_json::{json, Value};

/// Every id-like value in `v`: the values of id, author, target and layout keys anywhere in it.
fn ids_in(v: &Value, out: &mut BTreeSet<String>) {
    const KEYS: [&str; 7] =
        ["id", "author", "target", "canvas_id", "asymmetric_filters_id", "participant_id", "session_id"];
    match v {
        Value::Array(a) => a.iter().for_each(|x| ids_in(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if let (true, Some(s)) = (KEYS.contains(&k.as_str()), x.as_str()) {
                    out.insert(s.to_owned());
                }
                ids_in(x, out);
            }
        }
        _ => {}
    }
}

/// Everything a participant was shown that names someone: the ids in its messages, the keys of
/// `FILTERS_DATA`, and a proposal's summary (an id string for experimenters).
fn shown_in(msgs: &[Value], out: &mut BTreeSet<String>) {
    for m in msgs {
        ids_in(m, out);
        if m["type"] == "FILTERS_DATA" {
            out.extend(m["data"].as_object().into_iter().flat_map(|o| o.keys().cloned()));
        }
        if let Some(s) = m["data"]["participant_summary"].as_str() {
            out.insert(s.to_owned());
        }
    }
}

fn chat(author: &str, target: &str, message: &str, time: i64) -> Value {
    json!({"message": message, "time": time, "author": author, "target": target})
}

/// Sends a CHAT and waits for its SUCCESS; the messages skipped on the way are kept in `seen`.
async fn send_chat(c: &mut Client, m: Value, seen: &mut Vec<Value>) {
    c.send("CHAT", m.clone()).await.unwrap();
    let (ok, skipped) = c.recv_type("SUCCESS", T).await.unwrap_or_else(|e| panic!("CHAT {m}: {e}"));
    assert_success(&ok, "CHAT");
    assert!(skipped.iter().all(|s| s["type"] != "ERROR"), "CHAT {m}: {skipped:?}");
    seen.extend(skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_participant_is_shown_does_not_take_a_seat_or_its_chat() {
    let srv = TestServer::start().await;
    let (me, victim) = (PARTICIPANTS[0], PARTICIPANTS[1]);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let mut p0 = participant(&srv.base, me, ClientOptions::default()).await;
    let mut p1 = participant(&srv.base, victim, ClientOptions::default()).await;
    let mut p2 = participant(&srv.base, PARTICIPANTS[2], ClientOptions::default()).await;
    let mut seen0 = vec![p0.offer_response.clone()];
    let ok = request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    assert_success(&ok, "START_EXPERIMENT");

    // Everything that shows P0 someone else: proposals (after START), chat relays of public and
    // private messages, FILTERS_DATA for everyone, its session and its session list.
    let mut ignored = vec![];
    let by1 = shown_ids(&mut p1).await;
    send_chat(&mut p1, chat(victim, "participants", "hello everyone", 1), &mut ignored).await;
    send_chat(&mut p1, chat(victim, &by1["P0"], "hello P0", 2), &mut ignored).await;
    send_chat(&mut p2, chat(PARTICIPANTS[2], "participants", "P2 here", 3), &mut ignored).await;
    send_chat(&mut exp, chat("experimenter", victim, "secret for P1", 4), &mut ignored).await;
    send_chat(&mut p1, chat(victim, "experimenter", "secret reply of P1", 5), &mut ignored).await;
    let req =
        json!({"participant_id": "all", "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"});
    request(&mut exp, "GET_FILTERS_DATA_SEND_TO_PARTICIPANT", req, "SUCCESS").await;
    p0.send("GET_SESSION", json!({"session_id": SESSION})).await.unwrap();
    p0.send("GET_SESSION_LIST", json!({})).await.unwrap();
    let (list, skipped) = p0.recv_type("SESSION_LIST", T).await.expect("SESSION_LIST");
    seen0.extend(skipped);
    seen0.push(list);
    // Both proposals (P1 and P2 to P0) have arrived by now or arrive while we wait.
    let deadline = std::time::Instant::now() + T;
    while seen0.iter().filter(|m| m["type"] == "CONNECTION_PROPOSAL").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "P0 gets a proposal for P1 and for P2: {seen0:?}");
        seen0.extend(p0.settle(Duration::from_millis(200)).await);
    }
    seen0.extend(p0.settle(Duration::from_millis(300)).await);
    for kind in ["SESSION", "SESSION_LIST", "FILTERS_DATA", "CHAT"] {
        assert!(seen0.iter().any(|m| m["type"] == kind), "P0 was shown a {kind}: {seen0:?}");
    }

    let mut shown = BTreeSet::new();
    shown_in(&seen0, &mut shown);

    // P0 tries to join as everyone it was shown (its own seat aside): every /offer is refused.
    shown.remove(me);
    assert!(shown.len() >= 4, "ids shown to P0: {shown:?}");
    let mut taken = vec![];
    for id in &shown {
        let role = Role::Participant { session_id: SESSION.into(), participant_id: id.clone() };
        let opts = ClientOptions { auto_subscribe: false, ..Default::default() };
        match Client::connect(&srv.base, role, opts).await {
            Ok(impostor) => taken.push((id.clone(), impostor)),
            Err(err) => {
                let refused = err.downcast_ref::<OfferRefused>().unwrap_or_else(|| panic!("/offer as {id:?}: {err}"));
                let got = (refused.status, &refused.body["data"]["type"]);
                assert_eq!(got, (400, &json!("UNKNOWN_PARTICIPANT")), "{id:?}");
            }
        }
    }

    // P1 kept its seat, and its private chat goes to P1 alone (not to an impostor either).
    send_chat(&mut exp, chat("experimenter", victim, "second secret for P1", 6), &mut ignored).await;
    let mut read = vec![];
    for (_, impostor) in &mut taken {
        read.extend(impostor.settle(Duration::from_millis(500)).await);
    }
    let taken_ids: Vec<&String> = taken.iter().map(|(id, _)| id).collect();
    assert!(
        taken.is_empty(),
        "P0 took the seats {taken_ids:?} with ids it was shown; P1 still connected: {}; the impostor read: {read:?}",
        !p1.is_closed()
    );
    assert!(!p1.is_closed(), "P1 is still connected");
    let (got, _) = p1.recv_type("CHAT", T).await.expect("P1 gets its private chat");
    assert_eq!(got["data"]["message"], "second secret for P1");
    let pong = request(&mut p1, "PING", json!("still here"), "PONG").await;
    assert_eq!(pong["data"]["ping_data"], "still here");
    seen0.extend(p0.settle(Duration::from_millis(500)).await);
    let text = serde_json::to_string(&seen0).unwrap();
    assert!(!text.contains("secret"), "P0 reads P1's private chat: {text}");
    // And the ids themselves: no other seat's id in anything P0 was shown.
    for other in &PARTICIPANTS[1..] {
        assert!(!shown.contains(*other), "P0 is shown {other}, another seat's id: {seen0:?}");
    }
    let impostors = taken.into_iter().map(|(_, c)| c);
    close_all(srv, exp, [p0, p1, p2].into_iter().chain(impostors).collect(), vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_still_see_and_chat_with_each_other_under_aliases() {
    // Recorded, to check that the event log names seats by their ids.
    let dir = TempDir::new("seats");
    let mut s = session_json(SESSION);
    s["record"] = json!(true);
    write_session(dir.path(), &s);
    let srv = TestServer::start_in(dir).await;
    let (mut exp, _erec, mut parts, recs, players) = running_experiment(&srv, 3).await;

    // Each proposal's summary is the publisher as that viewer's session shows it: the same
    // alias, name and layout (the frontend places the video by it).
    let mut shown: Vec<HashMap<String, String>> = vec![];
    for (i, p) in parts.iter_mut().enumerate() {
        let mut summaries = vec![];
        for _ in 0..2 {
            let (m, _) = p.recv_type("CONNECTION_PROPOSAL", T).await.expect("a proposal per other seat");
            summaries.push(m["data"]["participant_summary"].clone());
        }
        shown.push(shown_ids(p).await);
        let mut names = BTreeSet::new();
        for summary in summaries {
            let name = summary["participant_name"].as_str().unwrap().to_owned();
            assert_eq!(summary["id"].as_str(), Some(shown[i][&name].as_str()), "P{i}: {summary}");
            assert_eq!(summary["canvas_id"], format!("canvas-{}", &name[1..]), "P{i}: {summary}");
            names.insert(name);
        }
        assert_eq!(names.len(), 2, "P{i}");
    }
    // Sub-connections work: everyone sees everyone else.
    for (i, rec) in recs.iter().enumerate() {
        for (j, pid) in PARTICIPANTS[..3].iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(wait_media(rec, pid, Kind::Video, 30, T).await, "P{i} sees P{j}");
        }
    }
    for (i, p) in parts.iter_mut().enumerate() {
        let s = request(p, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
        let by_id: HashMap<&str, &Value> =
            s["data"]["participants"].as_array().unwrap().iter().map(|x| (x["id"].as_str().unwrap(), x)).collect();
        assert!(by_id.contains_key(PARTICIPANTS[i]), "P{i} sees itself under its own id");
        for j in (0..3).filter(|j| *j != i) {
            let alias = &shown[i][&format!("P{j}")];
            assert_ne!(alias, PARTICIPANTS[j]);
            assert_eq!(by_id[alias.as_str()]["canvas_id"], format!("canvas-{j}"));
        }
    }

    // Public chat reaches everyone, authored by the alias each reader knows for P1.
    let mut ignored = vec![];
    send_chat(&mut parts[1], chat(PARTICIPANTS[1], "participants", "hi all", 1), &mut ignored).await;
    for i in [0, 2] {
        let (m, _) = parts[i].recv_type("CHAT", T).await.expect("public chat arrives");
        assert_eq!(m["data"], chat(&shown[i]["P1"], "participants", "hi all", 1), "P{i}");
    }
    assert_ne!(shown[0]["P1"], shown[2]["P1"], "aliases are per viewer");
    // Private chat by alias: P0 → P2; P2 sees P0's alias for it as author and its own id as target.
    send_chat(&mut parts[0], chat(PARTICIPANTS[0], &shown[0]["P2"], "psst", 2), &mut ignored).await;
    let (m, _) = parts[2].recv_type("CHAT", T).await.expect("private chat arrives");
    assert_eq!(m["data"], chat(&shown[2]["P0"], PARTICIPANTS[2], "psst", 2));
    // P2's own session view shows both messages with the same authors.
    let s = request(&mut parts[2], "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    let own = s["data"]["participants"][2]["chat"].as_array().unwrap().clone();
    assert_eq!(
        own,
        [chat(&shown[2]["P1"], "participants", "hi all", 1), chat(&shown[2]["P0"], PARTICIPANTS[2], "psst", 2)]
    );
    // The experimenter and the session file keep real ids.
    let file = srv.session_file();
    assert_eq!(file["participants"][2]["chat"][1], chat(PARTICIPANTS[0], PARTICIPANTS[2], "psst", 2));
    let e = request(&mut exp, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    assert_eq!(e["data"]["participants"][1]["id"], PARTICIPANTS[1]);
    let log = srv.dir.path().join(SESSION).join("events.jsonl");
    let deadline = std::time::Instant::now() + T;
    let logged = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["command"] == "CHAT" && e["data"]["message"] == "psst");
        if let Some(e) = found {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "the CHAT is logged: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(logged["data"]["target"], PARTICIPANTS[2], "{logged}");

    close_all(srv, exp, parts, players).await;
}
