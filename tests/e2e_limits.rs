//! Message sizes, end to end over real WebRTC connections to a real server:
//!
//! - no server message is larger than the receiving peer accepts (its `a=max-message-size`):
//!   a long session list arrives as `SESSION_LIST` + `SESSION_CHANGE`s + `SESSION_LIST_END`
//!   (asked with `{"parts": true}`: `SESSION_LIST` + few `SESSION_LIST_PART`s + `SESSION_LIST_END`),
//!   big sessions carry their recent chat (and `chat_total`), `GET_CHAT_HISTORY` pages give the
//!   whole chat in order, and the connection stays up throughout;
//! - a reply that cannot fit becomes `413` (the frame got its answer, the connection lives);
//! - chat messages and notes over their limit are refused with `413`.

mod common;

use common::*;
use exphub_client::{Client, ClientOptions};
use serde_json::{json, Value};

fn quiet() -> ClientOptions {
    ClientOptions { auto_subscribe: false, ..Default::default() }
}

async fn exp(base: &str) -> Client {
    experimenter_with(base, quiet()).await
}

/// `n` chat messages of about `len` bytes between the experimenter and `pid`, numbered.
fn chat_log(pid: &str, n: usize, len: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (author, target) = if i % 2 == 0 { ("experimenter", pid) } else { (pid, "experimenter") };
            json!({"message": format!("{i:06} {}", "m".repeat(len)), "time": 1_700_000_000_000_i64 + i as i64,
                   "author": author, "target": target})
        })
        .collect()
}

/// Receives a whole session list (after `GET_SESSION_LIST`): every session by id, in order.
async fn receive_list(c: &mut Client) -> Vec<Value> {
    receive_list_frames(c).await.0
}

/// [`receive_list`], and the types of the frames after the first, in order.
async fn receive_list_frames(c: &mut Client) -> (Vec<Value>, Vec<String>) {
    let first = c.recv_type("SESSION_LIST", T).await.expect("SESSION_LIST arrives").0;
    let mut sessions: Vec<Value> = first["data"].as_array().unwrap().clone();
    let mut kinds = vec![];
    loop {
        let m = c.recv(T).await.expect("the rest of the list arrives");
        let kind = m["type"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "SESSION_CHANGE" => sessions.push(m["data"].clone()),
            "SESSION_LIST_PART" => sessions.extend(m["data"].as_array().unwrap().iter().cloned()),
            "SESSION_LIST_END" => {
                assert_eq!(m["data"]["sessions"], json!(sessions.len()));
                return (sessions, kinds);
            }
            _ => continue,
        }
        kinds.push(kind);
    }
}

/// 300 ordinary 4-participant sessions, participant 0 with 30 chat messages: their sorted ids.
fn many_sessions(dir: &TempDir) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..300 {
        let id = format!("{i:010x}");
        let mut s = session_json(&id);
        s["participants"][0]["chat"] = json!(chat_log(PARTICIPANTS[0], 30, 40));
        write_session(dir.path(), &s);
        ids.push(id);
    }
    ids
}

/// PING → PONG on `c`: the connection is alive and served.
async fn alive(c: &mut Client, ctx: &str) {
    c.send("PING", json!({"alive": ctx})).await.unwrap_or_else(|e| panic!("{ctx}: send: {e}"));
    let pong = c.recv_type("PONG", T).await.unwrap_or_else(|e| panic!("{ctx}: no PONG: {e}")).0;
    assert_eq!(pong["data"]["ping_data"], json!({"alive": ctx}));
    assert!(!c.is_closed(), "{ctx}");
}

/// Fetches participant `pid`'s whole chat with `GET_CHAT_HISTORY`, newest page first.
async fn whole_chat(c: &mut Client, sid: &str, pid: &str, limit: Option<u64>) -> Vec<Value> {
    let mut before: Option<u64> = None;
    let mut all: Vec<Value> = vec![];
    for _ in 0..10_000 {
        let mut req = json!({"session_id": sid, "participant_id": pid});
        if let Some(b) = before {
            req["before"] = json!(b);
        }
        if let Some(l) = limit {
            req["limit"] = json!(l);
        }
        let page = request(c, "GET_CHAT_HISTORY", req, "CHAT_HISTORY").await["data"].clone();
        assert_eq!((page["session_id"].as_str(), page["participant_id"].as_str()), (Some(sid), Some(pid)));
        let start = page["start"].as_u64().unwrap();
        let msgs = page["messages"].as_array().unwrap().clone();
        assert_eq!(start + msgs.len() as u64, before.unwrap_or(page["total"].as_u64().unwrap()));
        all.splice(0..0, msgs);
        if start == 0 {
            return all;
        }
        before = Some(start);
    }
    panic!("paging did not end");
}

/// D1: at 300 ordinary 4-participant sessions (about 600 kB as one list) the list arrived as one
/// frame over the data channel's limit and the server closed the experimenter's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_list_arrives_whole_and_the_connection_stays() {
    let dir = TempDir::new("many");
    let ids = many_sessions(&dir);
    let srv = TestServer::start_in(dir).await;
    let mut a = exp(&srv.base).await;
    a.send("GET_SESSION_LIST", json!({})).await.unwrap();
    let list = receive_list(&mut a).await;
    let mut got: Vec<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    // The list carries recent chat and says how long the chat is.
    let p0 = &list[0]["participants"][0];
    assert!(p0["chat"].as_array().unwrap().len() < 30);
    assert_eq!(p0["chat_total"], json!(30));
    assert_eq!(p0["chat"].as_array().unwrap().last(), chat_log(PARTICIPANTS[0], 30, 40).last());
    alive(&mut a, "after the list").await;
    a.close().await;
    srv.stop().await;
}

/// D1 (speed): exphub's dashboard asks for `{"parts": true, "recent_chat": 0}` and gets the
/// sessions packed into few `SESSION_LIST_PART` frames (not one `SESSION_CHANGE` each), without
/// chat messages but with each chat's length; SynthARium's `{}` still gets `SESSION_CHANGE`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_asked_for_in_parts_arrives_packed_and_without_chat() {
    let dir = TempDir::new("parts");
    let ids = many_sessions(&dir);
    let srv = TestServer::start_in(dir).await;
    let mut a = exp(&srv.base).await;
    a.send("GET_SESSION_LIST", json!({"parts": true, "recent_chat": 0})).await.unwrap();
    let (list, kinds) = receive_list_frames(&mut a).await;
    let mut got: Vec<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    assert!(!kinds.is_empty() && kinds.iter().all(|k| k == "SESSION_LIST_PART"), "{kinds:?}");
    assert!(kinds.len() < 30, "{} frames for 300 sessions", kinds.len());
    for s in &list {
        let p0 = &s["participants"][0];
        assert_eq!((&p0["chat"], &p0["chat_total"]), (&json!([]), &json!(30)));
    }
    // SynthARium's request is answered as before.
    a.send("GET_SESSION_LIST", json!({})).await.unwrap();
    let (list, kinds) = receive_list_frames(&mut a).await;
    assert_eq!(list.len(), ids.len());
    assert!(kinds.iter().all(|k| k == "SESSION_CHANGE"), "{kinds:?}");
    alive(&mut a, "after the lists").await;
    a.close().await;
    srv.stop().await;
}

/// D1: one session with a huge chat (2,000 messages, about 280 kB) and one message of 140 kB
/// (older files, from before the chat limit): `GET_SESSION` and `GET_SESSION_LIST` answer and
/// the connection stays; `GET_CHAT_HISTORY` returns the whole chat, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_chat_is_served_in_pages_and_the_connection_stays() {
    let dir = TempDir::new("huge");
    let mut s = session_json(SESSION);
    let long = chat_log(PARTICIPANTS[0], 2_000, 120);
    s["participants"][0]["chat"] = json!(long);
    let mut big = chat_log(PARTICIPANTS[1], 5, 10);
    big[2]["message"] = json!("x".repeat(140_000));
    s["participants"][1]["chat"] = json!(big);
    write_session(dir.path(), &s);
    let srv = TestServer::start_in(dir).await;
    let mut a = exp(&srv.base).await;

    let got = request(&mut a, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    let p0 = &got["data"]["participants"][0];
    assert_eq!(p0["chat_total"], json!(2_000));
    let recent = p0["chat"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.len() < 2_000);
    assert_eq!(recent.as_slice(), &long[2_000 - recent.len()..]);
    alive(&mut a, "after GET_SESSION").await;

    a.send("GET_SESSION_LIST", json!({})).await.unwrap();
    assert_eq!(receive_list(&mut a).await.len(), 1);
    alive(&mut a, "after GET_SESSION_LIST").await;

    assert_eq!(whole_chat(&mut a, SESSION, PARTICIPANTS[0], None).await, long);
    // 154 pages: within the connection's burst of 200 messages (429 beyond it).
    assert_eq!(whole_chat(&mut a, SESSION, PARTICIPANTS[0], Some(13)).await, long);
    assert_eq!(whole_chat(&mut a, SESSION, PARTICIPANTS[1], Some(1000)).await, big, "with the 140 kB message");
    alive(&mut a, "after paging").await;

    // Paging errors.
    let e = expect_error(&mut a, "GET_CHAT_HISTORY", json!({"session_id": "nope", "participant_id": "x"})).await;
    assert_eq!(
        e,
        json!({"code": 404, "type": "UNKNOWN_SESSION", "description": "No session with the given ID found: nope."})
    );
    let e = expect_error(&mut a, "GET_CHAT_HISTORY", json!({"session_id": SESSION, "participant_id": "x"})).await;
    assert_eq!(
        e,
        json!({"code": 404, "type": "UNKNOWN_PARTICIPANT", "description": "No participant with the given ID found: x."})
    );

    // A participant pages through its own chat, and only its own.
    a.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    a.recv_type("SUCCESS", T).await.unwrap();
    let mut p = participant(&srv.base, PARTICIPANTS[0], quiet()).await;
    let view = request(&mut p, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    assert_eq!(view["data"]["participants"][0]["chat_total"], json!(2_000));
    assert_eq!(whole_chat(&mut p, SESSION, PARTICIPANTS[0], None).await, long);
    let e = expect_error(&mut p, "GET_CHAT_HISTORY", json!({"session_id": SESSION, "participant_id": PARTICIPANTS[1]}))
        .await;
    assert_eq!(
        e,
        json!({"code": 403, "type": "FORBIDDEN", "description": "Participants may only request their own chat."})
    );
    alive(&mut p, "participant after paging").await;
    p.close().await;
    a.close().await;
    srv.stop().await;
}

/// D1: a 140 kB chat message or note is refused (it would make the session too large to send);
/// nothing is stored; the connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_chat_messages_and_notes_are_413() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    a.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    a.recv_type("SUCCESS", T).await.unwrap();
    let mut p = participant(&srv.base, PARTICIPANTS[0], quiet()).await;
    let huge = "x".repeat(140_000);
    let m = json!({"message": huge, "time": 1, "author": PARTICIPANTS[0], "target": "experimenter"});
    let e = expect_error(&mut p, "CHAT", m).await;
    assert_eq!(
        e,
        json!({"code": 413, "type": "INVALID_REQUEST", "description": "Chat message too long: 140000 bytes, the limit is 8192 bytes."})
    );
    let m = json!({"message": huge, "time": 1, "author": "experimenter", "target": "participants"});
    assert_eq!(expect_error(&mut a, "CHAT", m).await["code"], json!(413));
    let note = json!({"time": 1, "speakers": [], "content": "n".repeat(9_000)});
    assert_eq!(
        expect_error(&mut a, "ADD_NOTE", note).await,
        json!({"code": 413, "type": "INVALID_REQUEST", "description": "Note too long: 9000 bytes, the limit is 8192 bytes."})
    );
    // At the limit: accepted.
    let m = json!({"message": "y".repeat(8192), "time": 2, "author": PARTICIPANTS[0], "target": "experimenter"});
    let ok = request(&mut p, "CHAT", m.clone(), "SUCCESS").await;
    assert_eq!(ok["data"]["type"], "CHAT");
    let file = srv.session_file();
    assert_eq!(file["participants"][0]["chat"], json!([m]));
    assert_eq!(file["notes"], json!([]));
    alive(&mut p, "participant").await;
    alive(&mut a, "experimenter").await;
    p.close().await;
    a.close().await;
    srv.stop().await;
}

/// D8: a frame within the advertised `max-message-size` (262,144 B) whose reply would be larger
/// than that (a `PING` echoes its data) killed the sender's connection. Now the frame is
/// answered with 413 and the connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_at_the_limit_gets_a_reply_that_fits() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let limit = exphub::peer::MAX_MESSAGE_SIZE as usize;
    let pad = limit - r#"{"type":"PING","data":""}"#.len();
    let frame = format!(r#"{{"type":"PING","data":"{}"}}"#, "x".repeat(pad));
    assert_eq!(frame.len(), limit);
    a.send_text(&frame).await.expect("the client may send a frame of the advertised size");
    let m = a.recv(T).await.expect("the frame is answered");
    assert_eq!(m["type"], "ERROR", "{}", &m.to_string()[..200.min(m.to_string().len())]);
    assert_eq!(m["data"]["code"], json!(413));
    assert_eq!(m["data"]["type"], json!("INVALID_REQUEST"));
    let d = m["data"]["description"].as_str().unwrap();
    assert!(
        d.starts_with("The server's PONG message is too large for this connection: ")
            && d.ends_with(&format!("the limit is {limit} bytes.")),
        "{d}"
    );
    alive(&mut a, "after the big PING").await;
    a.close().await;
    srv.stop().await;
}
