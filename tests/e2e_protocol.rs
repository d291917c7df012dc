//! Proves, over real WebRTC connections (the `exphub_client` stack on loopback) to a real
//! server, that exphub speaks SynthARium's wire protocol as `docs/protocol.md` (the contract,
//! with SynthARium's behaviour where exphub keeps it) defines it:
//!
//! - every experimenter message's success path: the exact reply, its order, the broadcasts to
//!   other experimenters (and only to those the reference names), and what reaches the disk;
//! - every error path of those messages: code, type and description, and that a failed
//!   request changes nothing;
//! - what participants may do (chat, their own session view, their own filter data, PING) and
//!   that everything else is `403 FORBIDDEN`, even with malformed data;
//! - malformed frames of every kind get `400` (never a silent drop, protocol.md D1), oversized
//!   frames get `413`, malformed data gets `400 INVALID_DATATYPE` naming the field, and the
//!   server keeps serving the same and other connections afterwards;
//! - HTTP signalling (`/offer`, `/addIceCandidate`) with every error in SynthARium's order and
//!   body shape, the operational endpoints, and both frontend styles of connecting (dev:
//!   trickle ICE; main: no `connection_id`) carrying media end to end.
//!
//! "Nothing else arrived" is proved without sleeping: a `PING` is sent and its `PONG` must be
//! the next message (the hub handles one connection's messages in order).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use exphub::media::Kind;
use exphub_client::{get, post_json, post_raw, Client, ClientOptions, OfferRefused, Role};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Clients that do not open sub-connections: protocol tests need no media, and this keeps the
/// machine's two cores free.
fn quiet_opts() -> ClientOptions {
    ClientOptions { auto_subscribe: false, ..Default::default() }
}

async fn exp(base: &str) -> Client {
    experimenter_with(base, quiet_opts()).await
}

async fn part(base: &str, pid: &str) -> Client {
    participant(base, pid, quiet_opts()).await
}

/// Media signalling that arrives at its own pace (proposals, answers, trickle acks).
fn is_signalling(m: &Value) -> bool {
    matches!(m["type"].as_str(), Some("CONNECTION_PROPOSAL" | "CONNECTION_ANSWER"))
        || (m["type"] == "SUCCESS" && m["data"]["type"] == "ADD_ICE_CANDIDATE")
}

/// The next message that is not media signalling.
async fn next(c: &mut Client, ctx: &str) -> Value {
    loop {
        let m = c.recv(T).await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        if !is_signalling(&m) {
            return m;
        }
    }
}

/// Proves that no message (other than media signalling) was queued for `c` before now.
async fn assert_quiet(c: &mut Client, ctx: &str) {
    static N: AtomicU64 = AtomicU64::new(0);
    let tag = format!("quiet-{}", N.fetch_add(1, Ordering::Relaxed));
    c.send("PING", json!(tag)).await.unwrap();
    let m = next(c, ctx).await;
    assert_eq!(m["type"], "PONG", "{ctx}: expected nothing before the PONG, got {m}");
    assert_eq!(m["data"]["ping_data"], tag, "{ctx}: {m}");
}

fn success(ty: &str, description: &str) -> Value {
    json!({"type": "SUCCESS", "data": {"type": ty, "description": description}})
}

/// Sends a request; the next message must be exactly `want`.
async fn expect_next(c: &mut Client, kind: &str, data: Value, want: Value) {
    c.send(kind, data.clone()).await.unwrap();
    let m = next(c, &format!("{kind} {data}")).await;
    assert_eq!(m, want, "{kind} {data}");
}

/// `GET_SESSION_LIST` → `SESSION_LIST` `want` (one frame: a short list), then `SESSION_LIST_END`.
async fn expect_list(c: &mut Client, data: Value, want: Value) {
    let n = want.as_array().map_or(0, Vec::len);
    expect_next(c, "GET_SESSION_LIST", data, json!({"type": "SESSION_LIST", "data": want})).await;
    assert_eq!(next(c, "SESSION_LIST_END").await, json!({"type": "SESSION_LIST_END", "data": {"sessions": n}}));
}

/// An error's description: exact, or (for texts that end with a parser's detail) a prefix.
#[derive(Debug, Clone)]
enum D {
    Is(String),
    Starts(String),
    Ends(String),
}

fn is(s: impl Into<String>) -> D {
    D::Is(s.into())
}

fn starts(s: impl Into<String>) -> D {
    D::Starts(s.into())
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// `m` is `{"type":"ERROR","data":{"code","type","description"}}` with these values.
fn check_error(m: &Value, code: u64, ty: &str, d: &D, ctx: &str) {
    assert_eq!(m["type"], "ERROR", "{ctx}: {m}");
    assert_eq!(sorted_keys(m), ["data", "type"], "{ctx}: {m}");
    let data = &m["data"];
    assert_eq!(sorted_keys(data), ["code", "description", "type"], "{ctx}: {m}");
    assert_eq!(data["code"], code, "{ctx}: {m}");
    assert_eq!(data["type"], ty, "{ctx}: {m}");
    let desc = data["description"].as_str().unwrap_or_else(|| panic!("{ctx}: description not a string: {m}"));
    match d {
        D::Is(s) => assert_eq!(desc, s, "{ctx}"),
        D::Starts(p) => assert!(desc.starts_with(p.as_str()), "{ctx}: description {desc:?} does not start with {p:?}"),
        D::Ends(p) => assert!(desc.ends_with(p.as_str()), "{ctx}: description {desc:?} does not end with {p:?}"),
    }
}

/// One request that must fail.
struct ErrCase {
    kind: &'static str,
    data: Value,
    code: u64,
    ty: &'static str,
    desc: D,
}

fn case(kind: &'static str, data: Value, code: u64, ty: &'static str, desc: D) -> ErrCase {
    ErrCase { kind, data, code, ty, desc }
}

/// Sends every case; the next message after each must be its ERROR.
async fn run_cases(c: &mut Client, cases: &[ErrCase]) {
    for k in cases {
        let ctx = format!("{} {}", k.kind, k.data);
        c.send(k.kind, k.data.clone()).await.unwrap();
        let m = next(c, &ctx).await;
        check_error(&m, k.code, k.ty, &k.desc, &ctx);
    }
}

fn nce(prefix: &str) -> D {
    is(format!("{prefix} Experimenter is not connected to an experiment."))
}

fn is_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn note() -> Value {
    json!({"time": 1_700_000_000_000_i64, "speakers": [], "content": "P0 looks away"})
}

fn chat(author: &str, target: &str, message: &str, time: i64) -> Value {
    json!({"message": message, "time": time, "author": author, "target": target})
}

fn rotation(id: &str) -> Value {
    json!({"name": "ROTATION", "id": id, "channel": "video", "groupFilter": false,
           "config": {"direction": {"defaultValue": ["clockwise", "anti-clockwise"], "value": "clockwise", "requiresOtherFilter": false},
                      "angle": {"min": 1, "max": 180, "step": 1, "value": 90, "defaultValue": 45}}})
}

fn speaking_time(id: &str) -> Value {
    json!({"name": "SPEAKING_TIME", "id": id, "channel": "audio", "groupFilter": false, "config": {}})
}

fn template_gf(id: &str) -> Value {
    json!({"name": "TEMPLATE_GF", "id": id, "channel": "video", "groupFilter": true, "config": {}})
}

/// The participant summary of test participant `i` as `session_json` writes it (no chat yet).
fn summary(i: usize) -> Value {
    json!({"id": PARTICIPANTS[i], "participant_name": format!("P{i}"), "position": {"x": i * 100, "y": 0, "z": 0},
           "size": {"width": 100, "height": 100}, "chat": [], "view": [], "canvas_id": format!("canvas-{i}"),
           "asymmetric_filters_id": format!("asym-{i}")})
}

/// A new session as the session form sends it: every id and time empty.
fn new_session(title: &str, participants: usize) -> Value {
    let mut s = session_json("");
    s["title"] = json!(title);
    let ps = s["participants"].as_array_mut().unwrap();
    ps.truncate(participants);
    for p in ps.iter_mut() {
        p["id"] = json!("");
    }
    s
}

/// Creates the experiment of the test session; returns its `creation_time`.
async fn create_experiment(a: &mut Client) -> i64 {
    a.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    let created = next(a, "CREATE_EXPERIMENT").await;
    assert_eq!(created["type"], "EXPERIMENT_CREATED", "{created}");
    let ok = next(a, "CREATE_EXPERIMENT").await;
    assert_eq!(ok, success("JOIN_EXPERIMENT", "Successfully started and joined experiment."));
    created["data"]["creation_time"].as_i64().unwrap()
}

fn offer_refused(e: exphub_client::AnyError) -> OfferRefused {
    *e.downcast::<OfferRefused>().unwrap_or_else(|e| panic!("expected an offer refusal, got {e}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Experimenter messages: success paths
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_messages_reply_and_broadcast() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let mut b = exp(&srv.base).await;
    let stored = session_json(SESSION);

    // GET_SESSION_LIST: every session, whole (data is ignored). GET_SESSION: one, whole.
    expect_list(&mut a, json!({}), json!([stored])).await;
    expect_next(&mut a, "GET_SESSION", json!({"session_id": SESSION}), json!({"type": "SESSION", "data": stored}))
        .await;
    assert_quiet(&mut b, "B sees nothing of A's reads").await;

    // SAVE_SESSION create: new ids; SAVED_SESSION to the caller only, SESSION_CHANGE to the others only.
    let new = new_session("Created", 2);
    a.send("SAVE_SESSION", new.clone()).await.unwrap();
    let saved = next(&mut a, "SAVE_SESSION create").await;
    assert_eq!(saved["type"], "SAVED_SESSION", "{saved}");
    let sid = saved["data"]["id"].as_str().unwrap().to_owned();
    assert!(is_id(&saved["data"]["id"]) && sid != SESSION, "new session id: {sid}");
    let (p0, p1) = (saved["data"]["participants"][0]["id"].clone(), saved["data"]["participants"][1]["id"].clone());
    assert!(is_id(&p0) && is_id(&p1) && p0 != p1, "new participant ids: {p0} {p1}");
    let mut want = new.clone();
    want["id"] = json!(sid);
    want["participants"][0]["id"] = p0.clone();
    want["participants"][1]["id"] = p1.clone();
    assert_eq!(saved["data"], want, "everything else as sent");
    assert_quiet(&mut a, "no SESSION_CHANGE to the sender of SAVE_SESSION").await;
    assert_eq!(next(&mut b, "B").await, json!({"type": "SESSION_CHANGE", "data": want}));
    assert_eq!(srv.file_of(&sid), Some(want.clone()), "the new session is on disk");

    // SAVE_SESSION update: fields replaced, a participant removed, a new one gets a fresh id.
    let mut upd = want.clone();
    upd["title"] = json!("Updated");
    upd["record"] = json!(true);
    let kept = upd["participants"][1].clone();
    let mut added = kept.clone();
    added["id"] = json!("");
    added["participant_name"] = json!("Newcomer");
    upd["participants"] = json!([kept, added]);
    a.send("SAVE_SESSION", upd.clone()).await.unwrap();
    let saved = next(&mut a, "SAVE_SESSION update").await;
    assert_eq!(saved["type"], "SAVED_SESSION", "{saved}");
    let fresh = saved["data"]["participants"][1]["id"].clone();
    assert!(is_id(&fresh) && fresh != p0 && fresh != p1, "fresh participant id {fresh} (removed: {p0}, kept: {p1})");
    let mut want = upd.clone();
    want["participants"][1]["id"] = fresh;
    assert_eq!(saved["data"], want);
    assert_quiet(&mut a, "no SESSION_CHANGE to the sender of an update").await;
    assert_eq!(next(&mut b, "B").await, json!({"type": "SESSION_CHANGE", "data": want}));
    assert_eq!(srv.file_of(&sid), Some(want));

    // DELETE_SESSION: DELETED_SESSION with the bare id to every experimenter, sender included; no SUCCESS.
    expect_next(&mut a, "DELETE_SESSION", json!({"session_id": sid}), json!({"type": "DELETED_SESSION", "data": sid}))
        .await;
    assert_quiet(&mut a, "no SUCCESS after DELETED_SESSION").await;
    assert_eq!(next(&mut b, "B").await, json!({"type": "DELETED_SESSION", "data": sid}));
    assert_eq!(srv.file_of(&sid), None, "the file is gone");
    expect_list(&mut b, json!(null), json!([stored])).await;

    // GET_FILTERS_CONFIG: {"TEST": [...], "SESSION": [...]}, FilterDicts with the catalogue's defaults.
    a.send("GET_FILTERS_CONFIG", json!({})).await.unwrap();
    let cfg = next(&mut a, "GET_FILTERS_CONFIG").await;
    assert_eq!(cfg["type"], "FILTERS_CONFIG", "{cfg}");
    assert_eq!(sorted_keys(&cfg["data"]), ["SESSION", "TEST"], "{cfg}");
    let all: Vec<&Value> =
        cfg["data"]["TEST"].as_array().unwrap().iter().chain(cfg["data"]["SESSION"].as_array().unwrap()).collect();
    for f in &all {
        assert_eq!(sorted_keys(f), ["channel", "config", "groupFilter", "id", "name"], "{f}");
        let name = f["name"].as_str().unwrap();
        assert_eq!(f["id"], name.to_lowercase().replace('_', "-"), "default id of {name}");
        assert!(["video", "audio", "both"].contains(&f["channel"].as_str().unwrap()), "{f}");
        assert!(f["groupFilter"].is_boolean(), "{f}");
        for (param, entry) in f["config"].as_object().unwrap() {
            let keys = sorted_keys(entry);
            let number = ["defaultValue", "max", "min", "step", "value"];
            let choice = ["defaultValue", "requiresOtherFilter", "value"];
            assert!(keys == number || keys == choice, "{name}.{param}: {entry}");
        }
    }
    let session_names: BTreeSet<&str> =
        cfg["data"]["SESSION"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for n in ["ROTATION", "DELAY", "EDGE_OUTLINE", "SPEAKING_TIME", "PING", "FILTER_API_TEST"] {
        assert!(session_names.contains(n), "{n} offered in the session designer: {session_names:?}");
    }
    let names: Vec<&str> = all.iter().map(|f| f["name"].as_str().unwrap()).collect();
    for hidden in ["MUTE_VIDEO", "MUTE_AUDIO"] {
        assert!(!names.contains(&hidden), "{hidden} is internal");
    }
    let rot = all.iter().find(|f| f["name"] == "ROTATION").unwrap();
    assert_eq!(
        **rot,
        json!({"name": "ROTATION", "id": "rotation", "channel": "video", "groupFilter": false, "config": {
            "direction": {"defaultValue": ["clockwise", "anti-clockwise"], "value": "clockwise", "requiresOtherFilter": false},
            "angle": {"min": 1, "max": 180, "step": 1, "value": 45, "defaultValue": 45}}})
    );
    assert_quiet(&mut b, "FILTERS_CONFIG is not broadcast").await;

    a.close().await;
    b.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_messages_reply_and_broadcast() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let mut b = exp(&srv.base).await;
    let (p0id, p1id) = (PARTICIPANTS[0], PARTICIPANTS[1]);

    // CREATE_EXPERIMENT: EXPERIMENT_CREATED to every experimenter (to the sender first), then SUCCESS.
    let before = now_ms();
    a.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    let created = next(&mut a, "CREATE").await;
    assert_eq!(sorted_keys(&created["data"]), ["creation_time", "session_id"], "{created}");
    assert_eq!(created["type"], "EXPERIMENT_CREATED");
    assert_eq!(created["data"]["session_id"], SESSION);
    let ct = created["data"]["creation_time"].as_i64().unwrap();
    assert!(before <= ct && ct <= now_ms(), "creation_time {ct} is now");
    assert_eq!(next(&mut a, "CREATE").await, success("JOIN_EXPERIMENT", "Successfully started and joined experiment."));
    assert_eq!(next(&mut b, "B").await, created, "the other experimenter is told too");
    assert_eq!(srv.session_file()["creation_time"], ct, "creation_time persisted");

    // Participants join; the /offer answer carries their summary.
    let mut p0 = part(&srv.base, p0id).await;
    let mut p1 = part(&srv.base, p1id).await;
    for (p, i) in [(&p0, 0), (&p1, 1)] {
        let body = &p.offer_response;
        assert_eq!(sorted_keys(body), ["data", "type"]);
        assert_eq!(body["type"], "SESSION_DESCRIPTION");
        assert_eq!(sorted_keys(&body["data"]), ["participant_summary", "sdp", "type"]);
        assert_eq!(body["data"]["type"], "answer");
        assert!(body["data"]["sdp"].as_str().unwrap().starts_with("v=0"));
        assert_eq!(body["data"]["participant_summary"], summary(i));
    }

    // JOIN_EXPERIMENT: a proposal per connected participant, then SUCCESS.
    b.send("JOIN_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    let mut proposed = BTreeSet::new();
    loop {
        let m = b.recv(T).await.unwrap();
        if m["type"] == "CONNECTION_PROPOSAL" {
            assert_eq!(sorted_keys(&m["data"]), ["id", "participant_summary"], "{m}");
            assert_eq!(m["data"]["id"].as_str().unwrap().len(), 22, "sub-connection id: {m}");
            proposed.insert(m["data"]["participant_summary"].as_str().unwrap().to_owned());
            continue;
        }
        assert_eq!(m, success("JOIN_EXPERIMENT", "Successfully joined experiment."));
        break;
    }
    assert_eq!(proposed, BTreeSet::from([p0id.to_owned(), p1id.to_owned()]), "proposals come before the SUCCESS");

    // LEAVE_EXPERIMENT.
    expect_next(&mut b, "LEAVE_EXPERIMENT", json!({}), success("LEAVE_EXPERIMENT", "Successfully left experiment."))
        .await;

    // START_EXPERIMENT: EXPERIMENT_STARTED to everyone in the experiment (not to B, who left), then SUCCESS.
    a.send("START_EXPERIMENT", json!({})).await.unwrap();
    let started = next(&mut a, "START").await;
    assert_eq!(sorted_keys(&started["data"]), ["start_time"]);
    let st = started["data"]["start_time"].as_i64().unwrap();
    assert_eq!(started, json!({"type": "EXPERIMENT_STARTED", "data": {"start_time": st}}));
    assert!(st >= ct, "start after creation");
    assert_eq!(next(&mut a, "START").await, success("START_EXPERIMENT", "Successfully started experiment."));
    assert_eq!(next(&mut p0, "P0").await, started);
    assert_eq!(next(&mut p1, "P1").await, started);
    assert_quiet(&mut b, "B left the experiment: no EXPERIMENT_STARTED").await;
    assert_eq!(srv.session_file()["start_time"], st, "start_time persisted");

    // ADD_NOTE: SUCCESS, on disk, not broadcast.
    expect_next(&mut a, "ADD_NOTE", note(), success("ADD_NOTE", "Successfully added note.")).await;
    assert_eq!(srv.session_file()["notes"], json!([note()]));
    assert_quiet(&mut b, "notes are not broadcast").await;

    // CHAT: experimenter → one participant, → everyone; participant → experimenter.
    let m1 = chat("experimenter", p0id, "only for P0", 1);
    expect_next(&mut a, "CHAT", m1.clone(), success("CHAT", "Successfully send chat message.")).await;
    assert_eq!(next(&mut p0, "P0").await, json!({"type": "CHAT", "data": m1}));
    assert_quiet(&mut p1, "P1 does not get P0's private message").await;
    assert_quiet(&mut b, "other experimenters do not see experimenter→participant chat").await;
    let m2 = chat("experimenter", "participants", "for everyone", 2);
    expect_next(&mut a, "CHAT", m2.clone(), success("CHAT", "Successfully send chat message.")).await;
    assert_eq!(next(&mut p0, "P0").await, json!({"type": "CHAT", "data": m2}));
    assert_eq!(next(&mut p1, "P1").await, json!({"type": "CHAT", "data": m2}));
    let m3 = chat(p0id, "experimenter", "hello experimenter", 3);
    expect_next(&mut p0, "CHAT", m3.clone(), success("CHAT", "Successfully send chat message.")).await;
    assert_eq!(next(&mut a, "A").await, json!({"type": "CHAT", "data": m3}));
    assert_quiet(&mut a, "no echo of the experimenter's own chat").await;
    let file = srv.session_file();
    assert_eq!(file["participants"][0]["chat"], json!([m1, m2, m3]));
    assert_eq!(file["participants"][1]["chat"], json!([m2]));
    assert_eq!(file["participants"][0]["lastMessageSentTime"], 3);

    // MUTE: SESSION_CHANGE to every experimenter (protocol.md D11), SUCCESS; persisted; no message to P0.
    a.send("MUTE", json!({"participant_id": p0id, "mute_video": true, "mute_audio": false})).await.unwrap();
    let change = next(&mut a, "MUTE").await;
    let file = srv.session_file();
    assert_eq!(file["participants"][0]["muted_video"], true);
    assert_eq!(file["participants"][0]["muted_audio"], false);
    assert_eq!(change, json!({"type": "SESSION_CHANGE", "data": file}));
    assert_eq!(next(&mut a, "MUTE").await, success("MUTE", "Successfully changed muted state for participant."));
    assert_eq!(next(&mut b, "B").await, change, "SESSION_CHANGE to experimenters outside the experiment too");
    assert_quiet(&mut p0, "a mute is not announced to the participant").await;

    // SET_FILTERS "all": every participant; SESSION_CHANGE to all experimenters incl. sender, then SUCCESS.
    let (rot, spk) = (rotation("rot-1"), speaking_time("spk-1"));
    a.send("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [spk], "video_filters": [rot]}))
        .await
        .unwrap();
    let change = next(&mut a, "SET_FILTERS all").await;
    let file = srv.session_file();
    for p in file["participants"].as_array().unwrap() {
        assert_eq!((&p["video_filters"], &p["audio_filters"]), (&json!([rot]), &json!([spk])), "{}", p["id"]);
    }
    assert_eq!(change, json!({"type": "SESSION_CHANGE", "data": file}));
    assert_eq!(next(&mut a, "SET_FILTERS").await, success("SET_FILTERS", "Successfully changed filters."));
    assert_eq!(next(&mut b, "B").await, change);

    // SET_FILTERS one participant: only that one changes.
    a.send("SET_FILTERS", json!({"participant_id": p1id, "audio_filters": [], "video_filters": []})).await.unwrap();
    let change = next(&mut a, "SET_FILTERS one").await;
    let mut want = file.clone();
    want["participants"][1]["video_filters"] = json!([]);
    want["participants"][1]["audio_filters"] = json!([]);
    assert_eq!(srv.session_file(), want);
    assert_eq!(change, json!({"type": "SESSION_CHANGE", "data": want}));
    assert_eq!(next(&mut a, "SET_FILTERS").await, success("SET_FILTERS", "Successfully changed filters."));
    assert_eq!(next(&mut b, "B").await, change);

    // SET_GROUP_FILTERS: replies like SET_FILTERS (protocol.md D3).
    let gf = template_gf("gf-1");
    a.send("SET_GROUP_FILTERS", json!({"audio_group_filters": [], "video_group_filters": [gf]})).await.unwrap();
    let change = next(&mut a, "SET_GROUP_FILTERS").await;
    let file = srv.session_file();
    for p in file["participants"].as_array().unwrap() {
        assert_eq!((&p["video_group_filters"], &p["audio_group_filters"]), (&json!([gf]), &json!([])), "{}", p["id"]);
    }
    assert_eq!(change, json!({"type": "SESSION_CHANGE", "data": file}));
    assert_eq!(
        next(&mut a, "SET_GROUP_FILTERS").await,
        success("SET_GROUP_FILTERS", "Successfully changed group filters.")
    );
    assert_eq!(next(&mut b, "B").await, change);

    // GET_FILTERS_DATA: per connected participant, one entry per matching filter (null: no data yet).
    let rows = [
        (
            json!({"filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"}),
            json!({p0id: {"video": [null], "audio": []}, p1id: {"video": [], "audio": []}}),
        ),
        (
            json!({"filter_id": "rot-1", "filter_name": "ROTATION", "filter_channel": "both"}),
            json!({p0id: {"video": [null], "audio": []}, p1id: {"video": [], "audio": []}}),
        ),
        (
            json!({"filter_id": "all", "filter_name": "SPEAKING_TIME", "filter_channel": "audio"}),
            json!({p0id: {"video": [], "audio": [null]}, p1id: {"video": [], "audio": []}}),
        ),
        // SynthARium main's name is an alias (protocol.md, Which SynthARium).
        (
            json!({"filter_id": "all", "filter_name": "AUDIO_SPEAKING_TIME", "filter_channel": "both"}),
            json!({p0id: {"video": [], "audio": [null]}, p1id: {"video": [], "audio": []}}),
        ),
        (
            json!({"filter_id": "all", "filter_name": "DELAY", "filter_channel": "both"}),
            json!({p0id: {"video": [], "audio": []}, p1id: {"video": [], "audio": []}}),
        ),
    ];
    for (req, data) in rows {
        expect_next(&mut a, "GET_FILTERS_DATA", req, json!({"type": "FILTERS_DATA", "data": data})).await;
    }

    // GET_FILTERS_DATA_SEND_TO_PARTICIPANT: to one participant, then to all.
    let req = json!({"participant_id": p0id, "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"});
    let sent = success("SEND_TO_PARTICIPANT", "Successfully sent GET_FILTERS_DATA to participant.");
    expect_next(&mut a, "GET_FILTERS_DATA_SEND_TO_PARTICIPANT", req, sent.clone()).await;
    assert_eq!(
        next(&mut p0, "P0").await,
        json!({"type": "FILTERS_DATA", "data": {p0id: {"video": [null], "audio": []}}})
    );
    assert_quiet(&mut p1, "only the named participant gets FILTERS_DATA").await;
    let req =
        json!({"participant_id": "all", "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"});
    let (seen_by0, seen_by1) = (shown_ids(&mut p0).await, shown_ids(&mut p1).await);
    expect_next(&mut a, "GET_FILTERS_DATA_SEND_TO_PARTICIPANT", req, sent).await;
    // Each participant sees its own entry under its id and the other seat's under its alias.
    let whole = |k0: &str, k1: &str| json!({"type": "FILTERS_DATA", "data": {k0: {"video": [null], "audio": []}, k1: {"video": [], "audio": []}}});
    assert_eq!(next(&mut p0, "P0").await, whole(p0id, &seen_by0["P1"]));
    assert_eq!(next(&mut p1, "P1").await, whole(&seen_by1["P0"], p1id));

    // UPDATE_READ_MESSAGE_TIME: no reply, persisted.
    a.send("UPDATE_READ_MESSAGE_TIME", json!({"participant_id": p0id, "lastMessageReadTime": 1_700_000_000_123_i64}))
        .await
        .unwrap();
    assert_quiet(&mut a, "UPDATE_READ_MESSAGE_TIME has no reply").await;
    assert_eq!(srv.session_file()["participants"][0]["lastMessageReadTime"], 1_700_000_000_123_i64);

    // GET_RECORDING_LIST: the recordings found in <sessions>/<session id>/.
    let rec_dir = srv.dir.path().join(SESSION);
    std::fs::create_dir_all(&rec_dir).unwrap();
    for f in [
        "aaaaaaaaa1_20240101_120000.mp4",
        "aaaaaaaaa1_raw_20240101_120000.mp4",
        "aaaaaaaaa1_20240101_120000.mp3",
        "bbbbbbbbb2_20240101_120001.mp4",
        "notes.txt",
    ] {
        std::fs::write(rec_dir.join(f), b"x").unwrap();
    }
    a.send("GET_RECORDING_LIST", json!({})).await.unwrap();
    let list = next(&mut a, "GET_RECORDING_LIST").await;
    assert_eq!(list["type"], "RECORDING_LIST", "{list}");
    let entries = list["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only sessions with a recordings directory: {list}");
    let e = &entries[0];
    assert_eq!(sorted_keys(e), ["participants", "session_description", "session_id", "session_title"]);
    assert_eq!(
        (&e["session_id"], &e["session_title"], &e["session_description"]),
        (&json!(SESSION), &json!("Test session"), &json!("For tests"))
    );
    for p in e["participants"].as_array().unwrap() {
        assert_eq!(sorted_keys(p), ["audio", "participant_id", "video"], "{p}");
        let want = match p["participant_id"].as_str().unwrap() {
            "aaaaaaaaa1" => {
                json!({"participant_id": "aaaaaaaaa1", "video": ["aaaaaaaaa1_20240101_120000.mp4", "aaaaaaaaa1_raw_20240101_120000.mp4"], "audio": ["aaaaaaaaa1_20240101_120000.mp3"]})
            }
            "bbbbbbbbb2" => {
                json!({"participant_id": "bbbbbbbbb2", "video": ["bbbbbbbbb2_20240101_120001.mp4"], "audio": []})
            }
            other => json!({"participant_id": other, "video": [], "audio": []}),
        };
        assert_eq!(*p, want);
    }
    let listed: BTreeSet<&str> =
        e["participants"].as_array().unwrap().iter().map(|p| p["participant_id"].as_str().unwrap()).collect();
    assert!(listed.contains(p0id) && listed.contains(p1id), "{listed:?}");

    // PING: PONG with both time fields (same value, epoch ms) and the data echoed.
    let t0 = now_ms();
    a.send("PING", json!({"sent": 12.5, "data": "latency"})).await.unwrap();
    let pong = next(&mut a, "PING").await;
    let t1 = now_ms();
    assert_eq!(pong["type"], "PONG");
    assert_eq!(sorted_keys(&pong["data"]), ["handled_time", "ping_data", "server_time"], "{pong}");
    let ht = pong["data"]["handled_time"].as_i64().unwrap();
    assert_eq!(pong["data"]["server_time"], ht);
    assert!(t0 <= ht && ht <= t1, "handled_time {ht} not within [{t0}, {t1}]");
    assert_eq!(pong["data"]["ping_data"], json!({"sent": 12.5, "data": "latency"}));

    // KICK: notification to the participant, SUCCESS to the caller; the seat is free, rejoin works.
    expect_next(
        &mut a,
        "KICK_PARTICIPANT",
        json!({"participant_id": p1id, "reason": "go"}),
        success("KICK_PARTICIPANT", "Successfully kicked participant."),
    )
    .await;
    assert_eq!(next(&mut p1, "P1").await, json!({"type": "KICK_NOTIFICATION", "data": {"reason": "go"}}));
    let again = json!({"participant_id": p1id, "reason": "go"});
    run_cases(
        &mut a,
        &[case(
            "KICK_PARTICIPANT",
            again,
            404,
            "UNKNOWN_PARTICIPANT",
            is("Failed to kick Participant. Participant with the given ID not found."),
        )],
    )
    .await;
    p1.close().await;
    let mut p1 = part(&srv.base, p1id).await;
    // Rejoining a running experiment is told so at once (protocol.md D9).
    assert_eq!(next(&mut p1, "P1 rejoined").await, started);

    // BAN: notification, SUCCESS, persisted; the next /offer is refused.
    expect_next(
        &mut a,
        "BAN_PARTICIPANT",
        json!({"participant_id": p1id, "reason": "banned"}),
        success("BAN_PARTICIPANT", "Successfully banned participant."),
    )
    .await;
    assert_eq!(next(&mut p1, "P1").await, json!({"type": "BAN_NOTIFICATION", "data": {"reason": "banned"}}));
    assert_eq!(srv.session_file()["participants"][1]["banned"], true);
    p1.close().await;
    let refused = offer_refused(
        Client::connect(
            &srv.base,
            Role::Participant { session_id: SESSION.into(), participant_id: p1id.into() },
            quiet_opts(),
        )
        .await
        .err()
        .expect("banned participant cannot join"),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        json!({"type": "ERROR", "data": {"code": 400, "type": "BANNED_PARTICIPANT", "description": "You have been banned and can no longer join the experiment."}})
    );

    // STOP_EXPERIMENT: EXPERIMENT_ENDED to everyone in it, then SUCCESS; times persisted.
    a.send("STOP_EXPERIMENT", json!({})).await.unwrap();
    let ended = next(&mut a, "STOP").await;
    assert_eq!(ended["type"], "EXPERIMENT_ENDED");
    assert_eq!(sorted_keys(&ended["data"]), ["end_time", "start_time"]);
    assert_eq!(ended["data"]["start_time"], st);
    let et = ended["data"]["end_time"].as_i64().unwrap();
    assert!(et >= st);
    assert_eq!(next(&mut a, "STOP").await, success("STOP_EXPERIMENT", "Successfully stopped experiment."));
    assert_eq!(next(&mut p0, "P0").await, ended);
    assert_quiet(&mut b, "B is not in the experiment").await;
    let file = srv.session_file();
    assert_eq!((&file["start_time"], &file["end_time"]), (&json!(st), &json!(et)));

    p0.close().await;
    a.close().await;
    b.close().await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Experimenter messages: error paths
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experimenter_error_paths() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let file_before = srv.session_file();
    let p0 = PARTICIPANTS[0];
    let kick = json!({"participant_id": p0, "reason": "r"});
    let mute = json!({"participant_id": p0, "mute_video": true, "mute_audio": true});
    let set_filters = json!({"participant_id": "all", "audio_filters": [], "video_filters": [rotation("r")]});
    let group = json!({"audio_group_filters": [], "video_group_filters": [template_gf("g")]});
    let fd_send =
        json!({"participant_id": "all", "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"});
    let cand = json!({"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null});
    let offer = json!({"sdp": "v=0\r\n", "type": "offer"});

    // SAVE_SESSION create rules (protocol.md, SAVE_SESSION), in SynthARium's order of checks.
    let create = |f: &dyn Fn(&mut Value)| {
        let mut s = new_session("x", 2);
        f(&mut s);
        s
    };
    // SAVE_SESSION update rules, against the stored test session.
    let update = |f: &dyn Fn(&mut Value)| {
        let mut s = session_json(SESSION);
        f(&mut s);
        s
    };
    let invalid_session = "Message data is not a valid Session object.";

    let cases = vec![
        // Not in an experiment: NOT_CONNECTED_TO_EXPERIMENT with each handler's prefix.
        case("LEAVE_EXPERIMENT", json!({}), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Failed to leave experiment.")),
        case("START_EXPERIMENT", json!({}), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Cannot start experiment.")),
        case("STOP_EXPERIMENT", json!({}), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Cannot stop experiment.")),
        case("ADD_NOTE", note(), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Cannot add note.")),
        case(
            "CHAT",
            chat("experimenter", p0, "hi", 1),
            409,
            "NOT_CONNECTED_TO_EXPERIMENT",
            nce("Cannot send chat message."),
        ),
        case("KICK_PARTICIPANT", kick.clone(), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Cannot kick participant.")),
        case("BAN_PARTICIPANT", kick.clone(), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Cannot ban participant.")),
        case("MUTE", mute.clone(), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Failed to mute participant.")),
        case("SET_FILTERS", set_filters.clone(), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Failed to set filters.")),
        case("SET_GROUP_FILTERS", group.clone(), 409, "NOT_CONNECTED_TO_EXPERIMENT", nce("Failed to set filters.")),
        // The reference gives no prefix for this one; the suffix is the NCE text.
        case(
            "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
            fd_send.clone(),
            409,
            "NOT_CONNECTED_TO_EXPERIMENT",
            D::Ends(". Experimenter is not connected to an experiment.".into()),
        ),
        // The author is checked before the experiment.
        case("CHAT", chat(p0, p0, "hi", 1), 400, "INVALID_REQUEST", is("Author of message must be experimenter.")),
        // Unknown ids.
        case(
            "GET_SESSION",
            json!({"session_id": "nope"}),
            404,
            "UNKNOWN_SESSION",
            is("No session with the given ID found: nope."),
        ),
        case(
            "JOIN_EXPERIMENT",
            json!({"session_id": SESSION}),
            404,
            "UNKNOWN_EXPERIMENT",
            is("There is no experiment with the given ID."),
        ),
        case(
            "CREATE_EXPERIMENT",
            json!({"session_id": "nope"}),
            400,
            "UNKNOWN_SESSION",
            is("No session with the given ID found."),
        ),
        case(
            "DELETE_SESSION",
            json!({"session_id": "nope"}),
            404,
            "INVALID_REQUEST",
            is("No session found for the given ID."),
        ),
        case(
            "CONNECTION_OFFER",
            json!({"id": "nope", "offer": offer}),
            0,
            "UNKNOWN_SUBCONNECTION_ID",
            is("Unknown offer ID nope"),
        ),
        case(
            "ADD_ICE_CANDIDATE",
            json!({"id": "nope", "candidate": cand}),
            0,
            "UNKNOWN_SUBCONNECTION_ID",
            is("Unknown subconnection ID nope"),
        ),
        // SAVE_SESSION create.
        case(
            "SAVE_SESSION",
            create(&|s| s["participants"][1]["id"] = json!("aaaaaaaaa1")),
            400,
            "INVALID_REQUEST",
            is("Participant \"id\" must initially be set to an empty string as default value."),
        ),
        case(
            "SAVE_SESSION",
            create(&|s| s["creation_time"] = json!(5)),
            400,
            "INVALID_REQUEST",
            is("\"creation_time\" must initially be set to the default value 0."),
        ),
        case(
            "SAVE_SESSION",
            create(&|s| s["end_time"] = json!(5)),
            400,
            "INVALID_REQUEST",
            is("\"end_time\" must initially be set to the default value 0."),
        ),
        case(
            "SAVE_SESSION",
            create(&|s| s["start_time"] = json!(5)),
            400,
            "INVALID_REQUEST",
            is("\"start_time\" must initially be set to the default value 0."),
        ),
        // Order: participant id, then creation_time, end_time, start_time.
        case(
            "SAVE_SESSION",
            create(&|s| {
                s["participants"][0]["id"] = json!("x");
                s["creation_time"] = json!(5);
            }),
            400,
            "INVALID_REQUEST",
            is("Participant \"id\" must initially be set to an empty string as default value."),
        ),
        case(
            "SAVE_SESSION",
            create(&|s| {
                s["start_time"] = json!(5);
                s["end_time"] = json!(5);
            }),
            400,
            "INVALID_REQUEST",
            is("\"end_time\" must initially be set to the default value 0."),
        ),
        case(
            "SAVE_SESSION",
            create(&|s| {
                s["participants"][0]["video_filters"] =
                    json!([{"name": "NOPE", "id": "n", "channel": "video", "groupFilter": false, "config": {}}])
            }),
            400,
            "INVALID_DATATYPE",
            starts(format!("{invalid_session}: participants[0].video_filters[0].name")),
        ),
        case(
            "SAVE_SESSION",
            create(&|s| s["participants"][1]["video_group_filters"] = json!([rotation("not-a-group-filter")])),
            400,
            "INVALID_DATATYPE",
            starts(format!("{invalid_session}: participants[1].video_group_filters[0].name")),
        ),
        // SAVE_SESSION update.
        case(
            "SAVE_SESSION",
            update(&|s| s["id"] = json!("0000000000")),
            404,
            "UNKNOWN_SESSION",
            is("No session with the given ID found to update."),
        ),
        case(
            "SAVE_SESSION",
            update(&|s| s["creation_time"] = json!(5)),
            409,
            "INVALID_PARAMETER",
            is("Cannot change session \"creation_time\", field is read only."),
        ),
        case(
            "SAVE_SESSION",
            update(&|s| s["start_time"] = json!(5)),
            409,
            "INVALID_PARAMETER",
            is("Cannot change session \"start_time\", field is read only."),
        ),
        case(
            "SAVE_SESSION",
            update(&|s| s["end_time"] = json!(5)),
            409,
            "INVALID_PARAMETER",
            is("Cannot change session \"end_time\", field is read only."),
        ),
        case(
            "SAVE_SESSION",
            update(&|s| s["participants"][2]["id"] = json!("eeeeeeeee5")),
            409,
            "UNKNOWN_ID",
            is("Unknown participant ID found in session data."),
        ),
        case(
            "SAVE_SESSION",
            update(&|s| s["participants"][2]["id"] = json!(PARTICIPANTS[0])),
            400,
            "DUPLICATE_ID",
            is("Duplicate participant ID found in session data."),
        ),
        // Unknown ids are checked before duplicates.
        case(
            "SAVE_SESSION",
            update(&|s| {
                s["participants"][1]["id"] = json!(PARTICIPANTS[0]);
                s["participants"][3]["id"] = json!("eeeeeeeee5");
            }),
            409,
            "UNKNOWN_ID",
            is("Unknown participant ID found in session data."),
        ),
        case(
            "SAVE_SESSION",
            update(&|s| {
                s["participants"][3]["audio_filters"] =
                    json!([{"name": "NOPE", "id": "n", "channel": "audio", "groupFilter": false, "config": {}}])
            }),
            400,
            "INVALID_DATATYPE",
            starts(format!("{invalid_session}: participants[3].audio_filters[0].name")),
        ),
        // SET_FILTERS data rules (validated before the experiment is looked at).
        case(
            "SET_FILTERS",
            json!({"participant_id": "all", "audio_filters": [], "video_filters": [{"name": "NOPE", "id": "n", "channel": "video", "groupFilter": false, "config": {}}]}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid SetFiltersRequest.: data.video_filters[0].name:"),
        ),
        case(
            "SET_FILTERS",
            json!({"participant_id": "all", "audio_filters": [], "video_filters": [rotation("same"), rotation("same")]}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid SetFiltersRequest.: data.video_filters[1].id:"),
        ),
        case(
            "SET_GROUP_FILTERS",
            json!({"audio_group_filters": [], "video_group_filters": [rotation("r")]}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid SetGroupFiltersRequest.: data.video_group_filters[0].name:"),
        ),
        // Group filter ids are unique across both lists.
        case(
            "SET_GROUP_FILTERS",
            json!({"audio_group_filters": [template_gf("g")], "video_group_filters": [template_gf("g")]}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid SetGroupFiltersRequest.: data.video_group_filters[0].id:"),
        ),
        case(
            "GET_FILTERS_DATA",
            json!({"filter_id": "all", "filter_name": "NOPE", "filter_channel": "video"}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid GetFiltersData.: data.filter_name:"),
        ),
        case(
            "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
            json!({"participant_id": "all", "filter_id": "all", "filter_name": "NOPE", "filter_channel": "video"}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid GET_FILTERS_DATA_SEND_TO_PARTICIPANT.: data.filter_name:"),
        ),
        // Post-processing needs a recording (the rest: tests/e2e_postproc.rs).
        case(
            "POST_PROCESSING_VIDEO",
            json!({"session_id": SESSION}),
            404,
            "FILE_NOT_FOUND",
            is(format!("No recorded video found for session {SESSION}.")),
        ),
        // Types only the server sends.
        case(
            "SUCCESS",
            json!({"type": "CHAT", "description": "x"}),
            403,
            "FORBIDDEN",
            is("SUCCESS is not allowed for this user."),
        ),
        case("SESSION_LIST", json!([]), 403, "FORBIDDEN", is("SESSION_LIST is not allowed for this user.")),
    ];
    run_cases(&mut a, &cases).await;
    assert_eq!(srv.session_file(), file_before, "no failed request changed the session");
    let files = std::fs::read_dir(srv.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(files, 1, "no failed SAVE_SESSION wrote a file");

    // In a WAITING experiment, no participant connected.
    let ct = create_experiment(&mut a).await;
    let cases = vec![
        case(
            "CREATE_EXPERIMENT",
            json!({"session_id": SESSION}),
            409,
            "INVALID_REQUEST",
            is("Experiment already exists."),
        ),
        case(
            "JOIN_EXPERIMENT",
            json!({"session_id": SESSION}),
            409,
            "ALREADY_JOINED_EXPERIMENT",
            is("Can not join an experiment while already connected to an experiment."),
        ),
        case(
            "DELETE_SESSION",
            json!({"session_id": SESSION}),
            400,
            "EXPERIMENT_RUNNING",
            is("Cannot delete session with running experiment."),
        ),
        case(
            "CHAT",
            chat("experimenter", "nobody", "hi", 1),
            404,
            "UNKNOWN_USER",
            is("No participant found for the given ID."),
        ),
        // Chat targets are exact (protocol.md D7): a substring of "participants" is not a broadcast.
        case(
            "CHAT",
            chat("experimenter", "part", "hi", 1),
            404,
            "UNKNOWN_USER",
            is("No participant found for the given ID."),
        ),
        case(
            "CHAT",
            chat("experimenter", "", "hi", 1),
            404,
            "UNKNOWN_USER",
            is("No participant found for the given ID."),
        ),
        case(
            "KICK_PARTICIPANT",
            kick.clone(),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Failed to kick Participant. Participant with the given ID not found."),
        ),
        case(
            "KICK_PARTICIPANT",
            json!({"participant_id": "nobody", "reason": ""}),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Failed to kick Participant. Participant with the given ID not found."),
        ),
        case(
            "BAN_PARTICIPANT",
            json!({"participant_id": "nobody", "reason": ""}),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Failed to ban Participant. Participant with the given ID not found."),
        ),
        case(
            "MUTE",
            json!({"participant_id": "nobody", "mute_video": true, "mute_audio": true}),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Failed to mute participant, requested participantId is not part of this experiment."),
        ),
        case(
            "SET_FILTERS",
            json!({"participant_id": "nobody", "audio_filters": [], "video_filters": []}),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Unknown participant ID: \"nobody\"."),
        ),
        case(
            "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
            json!({"participant_id": "nobody", "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"}),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Participant with id \"nobody\" not found."),
        ),
        // Known but not connected counts as not found.
        case(
            "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
            json!({"participant_id": p0, "filter_id": "all", "filter_name": "ROTATION", "filter_channel": "video"}),
            404,
            "UNKNOWN_PARTICIPANT",
            is(format!("Participant with id \"{p0}\" not found.")),
        ),
        case(
            "UPDATE_READ_MESSAGE_TIME",
            json!({"participant_id": "nobody", "lastMessageReadTime": 1}),
            404,
            "UNKNOWN_PARTICIPANT",
            is("Failed to select participant, requested participantId is not part of this experiment."),
        ),
    ];
    run_cases(&mut a, &cases).await;
    let mut want = file_before.clone();
    want["creation_time"] = json!(ct);
    assert_eq!(srv.session_file(), want, "no failed request changed the session");
    // Editing is allowed while the experiment is WAITING.
    want["title"] = json!("Edited while waiting");
    expect_next(&mut a, "SAVE_SESSION", want.clone(), json!({"type": "SAVED_SESSION", "data": want})).await;
    assert_eq!(srv.session_file(), want);

    // A chat to a known participant who is not connected is logged, then reported undeliverable.
    let m = chat("experimenter", p0, "are you there?", 7);
    run_cases(
        &mut a,
        &[case("CHAT", m.clone(), 404, "UNKNOWN_USER", is(format!("Failed to send data to {p0}, user not found.")))],
    )
    .await;
    assert_eq!(srv.session_file()["participants"][0]["chat"], json!([m]));

    // RUNNING.
    a.send("START_EXPERIMENT", json!({})).await.unwrap();
    assert_eq!(next(&mut a, "START").await["type"], "EXPERIMENT_STARTED");
    assert_eq!(next(&mut a, "START").await, success("START_EXPERIMENT", "Successfully started experiment."));
    a.send("GET_SESSION", json!({"session_id": SESSION})).await.unwrap();
    let current = next(&mut a, "GET_SESSION").await["data"].clone();
    let cases = vec![
        case(
            "START_EXPERIMENT",
            json!({}),
            409,
            "INVALID_REQUEST",
            is("Experiment cant be started, state is not WAITING."),
        ),
        case(
            "SAVE_SESSION",
            current,
            409,
            "EXPERIMENT_ALREADY_STARTED",
            is("Cannot edit session, session has already started."),
        ),
    ];
    run_cases(&mut a, &cases).await;

    // ENDED.
    a.send("STOP_EXPERIMENT", json!({})).await.unwrap();
    assert_eq!(next(&mut a, "STOP").await["type"], "EXPERIMENT_ENDED");
    assert_eq!(next(&mut a, "STOP").await, success("STOP_EXPERIMENT", "Successfully stopped experiment."));
    let cases = vec![
        case("STOP_EXPERIMENT", json!({}), 409, "INVALID_REQUEST", is("Experiment is already stopped.")),
        case(
            "START_EXPERIMENT",
            json!({}),
            409,
            "INVALID_REQUEST",
            is("Experiment cant be started, state is not WAITING."),
        ),
    ];
    run_cases(&mut a, &cases).await;

    a.close().await;
    srv.stop().await;
}

/// SynthARium gives these two handlers (copy-pasted) prefixes, marked [sic];
/// exphub keeps SynthARium's texts byte for byte elsewhere (`src/protocol/text.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_connected_texts_of_filters_data_and_read_time_follow_the_reference() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let rows = [
        (
            "GET_FILTERS_DATA",
            json!({"filter_id": "all", "filter_name": "PING", "filter_channel": "video"}),
            "Failed to set filters.",
        ),
        (
            "UPDATE_READ_MESSAGE_TIME",
            json!({"participant_id": PARTICIPANTS[0], "lastMessageReadTime": 1}),
            "Failed to mute participant.",
        ),
    ];
    // Both rows are checked before failing, so that the report names every wrong text.
    let (mut got, mut want) = (vec![], vec![]);
    for (kind, data, prefix) in rows {
        a.send(kind, data).await.unwrap();
        let m = next(&mut a, kind).await;
        check_error(
            &m,
            409,
            "NOT_CONNECTED_TO_EXPERIMENT",
            &D::Ends(" Experimenter is not connected to an experiment.".into()),
            kind,
        );
        got.push(format!("{kind}: {}", m["data"]["description"].as_str().unwrap()));
        want.push(format!("{kind}: {prefix} Experimenter is not connected to an experiment."));
    }
    assert_eq!(got, want);
    a.close().await;
    srv.stop().await;
}

/// GET_FILTERS_DATA (as SynthARium): a filter of that name exists but with another id →
/// 404 UNKNOWN_FILTER_ID 'Unknown filter ID: "<id>".'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_filters_data_with_an_unknown_filter_id_is_404() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    create_experiment(&mut a).await;
    let _p0 = part(&srv.base, PARTICIPANTS[0]).await;
    a.send(
        "SET_FILTERS",
        json!({"participant_id": PARTICIPANTS[0], "audio_filters": [], "video_filters": [rotation("rot-1")]}),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut a, "SET_FILTERS").await["type"], "SESSION_CHANGE");
    assert_eq!(next(&mut a, "SET_FILTERS").await, success("SET_FILTERS", "Successfully changed filters."));
    let req = json!({"filter_id": "rot-2", "filter_name": "ROTATION", "filter_channel": "video"});
    run_cases(&mut a, &[case("GET_FILTERS_DATA", req, 404, "UNKNOWN_FILTER_ID", is("Unknown filter ID: \"rot-2\"."))])
        .await;
    a.close().await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Participants
// ---------------------------------------------------------------------------------------------

/// Every client request type that only experimenters may send, and the types only the server sends.
const NOT_FOR_PARTICIPANTS: &[&str] = &[
    "SAVE_SESSION",
    "DELETE_SESSION",
    "CREATE_EXPERIMENT",
    "JOIN_EXPERIMENT",
    "LEAVE_EXPERIMENT",
    "START_EXPERIMENT",
    "STOP_EXPERIMENT",
    "ADD_NOTE",
    "KICK_PARTICIPANT",
    "BAN_PARTICIPANT",
    "MUTE",
    "SET_FILTERS",
    "SET_GROUP_FILTERS",
    "GET_FILTERS_CONFIG",
    "GET_FILTERS_DATA_SEND_TO_PARTICIPANT",
    "UPDATE_READ_MESSAGE_TIME",
    "GET_RECORDING_LIST",
    "POST_PROCESSING_VIDEO",
    "CHECK_POST_PROCESSING",
    // server → client only
    "TEST",
    "SUCCESS",
    "ERROR",
    "SESSION_DESCRIPTION",
    "CONNECTION_PROPOSAL",
    "CONNECTION_ANSWER",
    "SAVED_SESSION",
    "SESSION_CHANGE",
    "DELETED_SESSION",
    "SESSION_LIST",
    "SESSION",
    "EXPERIMENT_CREATED",
    "EXPERIMENT_STARTED",
    "EXPERIMENT_ENDED",
    "KICK_NOTIFICATION",
    "BAN_NOTIFICATION",
    "FILTERS_CONFIG",
    "FILTERS_DATA",
    "RECORDING_LIST",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_may_do_only_their_part() {
    const OTHER: &str = "0123456789";
    let dir = TempDir::new("srv");
    write_session(dir.path(), &session_json(SESSION));
    write_session(dir.path(), &session_json(OTHER));
    let srv = TestServer::start_in(dir).await;
    let (id0, id1, id2) = (PARTICIPANTS[0], PARTICIPANTS[1], PARTICIPANTS[2]);
    let mut a = exp(&srv.base).await;
    create_experiment(&mut a).await;
    let mut p0 = part(&srv.base, id0).await;
    let mut p1 = part(&srv.base, id1).await;
    let mut p2 = part(&srv.base, id2).await;
    let sent = success("CHAT", "Successfully send chat message.");

    // Chat in every direction; each message reaches exactly its target.
    let e_p1 = chat("experimenter", id1, "private to P1", 1);
    expect_next(&mut a, "CHAT", e_p1.clone(), sent.clone()).await;
    assert_eq!(next(&mut p1, "P1").await, json!({"type": "CHAT", "data": e_p1}));
    let e_p0 = chat("experimenter", id0, "private to P0", 2);
    expect_next(&mut a, "CHAT", e_p0.clone(), sent.clone()).await;
    assert_eq!(next(&mut p0, "P0").await, json!({"type": "CHAT", "data": e_p0}));
    let p0_e = chat(id0, "experimenter", "P0 to the experimenter", 3);
    expect_next(&mut p0, "CHAT", p0_e.clone(), sent.clone()).await;
    assert_eq!(next(&mut a, "A").await, json!({"type": "CHAT", "data": p0_e}));
    // Participants address each other by the aliases they are shown (never by real ids), and
    // see the author of a relayed message under their own alias for it.
    let (seen_by0, seen_by1, seen_by2) = (shown_ids(&mut p0).await, shown_ids(&mut p1).await, shown_ids(&mut p2).await);
    expect_next(&mut p1, "CHAT", chat(id1, &seen_by1["P2"], "P1 to P2", 4), sent.clone()).await;
    assert_eq!(next(&mut p2, "P2").await, json!({"type": "CHAT", "data": chat(&seen_by2["P1"], id2, "P1 to P2", 4)}));
    expect_next(&mut p1, "CHAT", chat(id1, &seen_by1["P0"], "P1 to P0", 5), sent.clone()).await;
    assert_eq!(next(&mut p0, "P0").await, json!({"type": "CHAT", "data": chat(&seen_by0["P1"], id0, "P1 to P0", 5)}));
    let p2_all = chat(id2, "participants", "P2 to everyone", 6);
    expect_next(&mut p2, "CHAT", p2_all.clone(), sent.clone()).await;
    let p2_all_as = |seen: &HashMap<String, String>| chat(&seen["P2"], "participants", "P2 to everyone", 6);
    assert_eq!(next(&mut p0, "P0").await, json!({"type": "CHAT", "data": p2_all_as(&seen_by0)}));
    assert_eq!(next(&mut p1, "P1").await, json!({"type": "CHAT", "data": p2_all_as(&seen_by1)}));
    assert_ne!(seen_by0["P2"], seen_by1["P2"], "aliases are per viewer");
    // The session (the file, the experimenter's view) keeps the real ids.
    let (p1_p2, p1_p0) = (chat(id1, id2, "P1 to P2", 4), chat(id1, id0, "P1 to P0", 5));
    assert_quiet(&mut p2, "no echo to the sender").await;
    assert_quiet(&mut p0, "P0 got exactly its messages").await;
    assert_quiet(&mut p1, "P1 got exactly its messages").await;
    assert_quiet(&mut a, "the experimenter got exactly its messages").await;
    expect_next(&mut a, "ADD_NOTE", note(), success("ADD_NOTE", "Successfully added note.")).await;

    // Participant chat errors.
    let cases = vec![
        case(
            "CHAT",
            chat(id1, "experimenter", "spoofed", 9),
            400,
            "INVALID_REQUEST",
            is("Author of message must be participant ID."),
        ),
        case("CHAT", chat(id0, "nobody", "x", 9), 404, "UNKNOWN_USER", is("No participant found for the given ID.")),
        case("CHAT", chat(id0, "part", "x", 9), 404, "UNKNOWN_USER", is("No participant found for the given ID.")),
        case("CHAT", chat(id0, id0, "x", 9), 404, "UNKNOWN_USER", is("No participant found for the given ID.")),
        // A real id of another seat is not an address for a participant (no oracle for guesses).
        case("CHAT", chat(id0, id1, "x", 9), 404, "UNKNOWN_USER", is("No participant found for the given ID.")),
        case(
            "CHAT",
            json!({"message": "x", "time": 1, "author": id0}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid ChatMessage.: data: missing field `target`"),
        ),
        case(
            "GET_SESSION",
            json!({"session_id": OTHER}),
            403,
            "FORBIDDEN",
            is("Participants may only request their own session."),
        ),
        case(
            "GET_SESSION",
            json!({"session_id": "nope"}),
            403,
            "FORBIDDEN",
            is("Participants may only request their own session."),
        ),
        case(
            "GET_FILTERS_DATA",
            json!({"filter_id": "all", "filter_name": "NOPE", "filter_channel": "video"}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid GetFiltersData.: data.filter_name:"),
        ),
        case(
            "CONNECTION_OFFER",
            json!({"id": "nope", "offer": {"sdp": "v=0\r\n", "type": "offer"}}),
            0,
            "UNKNOWN_SUBCONNECTION_ID",
            is("Unknown offer ID nope"),
        ),
        case(
            "ADD_ICE_CANDIDATE",
            json!({"id": "nope", "candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null}}),
            0,
            "UNKNOWN_SUBCONNECTION_ID",
            is("Unknown subconnection ID nope"),
        ),
    ];
    run_cases(&mut p0, &cases).await;
    // PONG (the answer to the PING filter's PING), dev and main shapes: no reply.
    p0.send("PONG", json!({"handled_time": 12.5, "ping_data": {"sent": 1, "data": ""}})).await.unwrap();
    p0.send("PONG", json!({"server_time": 13, "ping_data": {"sent": 1, "data": ""}})).await.unwrap();
    assert_quiet(&mut p0, "PONG has no reply").await;

    // GET_SESSION of its own session: other participants' private chat and the notes removed.
    a.send("GET_SESSION", json!({"session_id": SESSION})).await.unwrap();
    let full = next(&mut a, "GET_SESSION").await["data"].clone();
    assert_eq!(full["notes"], json!([note()]));
    assert_eq!(full["participants"][1]["chat"], json!([e_p1, p1_p2, p1_p0, p2_all]));
    assert_eq!(full["participants"][0]["chat"], json!([e_p0, p0_e, p1_p0, p2_all]), "P0's own chat is whole");
    // P0's view: its own id and chat whole, the other seats under P0's aliases, their chat public only.
    let mut view = full.clone();
    view["notes"] = json!([]);
    let p2_all_0 = p2_all_as(&seen_by0);
    view["participants"][0]["chat"] = json!([e_p0, p0_e, chat(&seen_by0["P1"], id0, "P1 to P0", 5), p2_all_0]);
    for i in 1..4 {
        view["participants"][i]["id"] = json!(seen_by0[&format!("P{i}")]);
        view["participants"][i]["chat"] = json!([p2_all_0]);
    }
    expect_next(&mut p0, "GET_SESSION", json!({"session_id": SESSION}), json!({"type": "SESSION", "data": view})).await;
    // GET_SESSION_LIST: only its own session, in the same view (protocol.md D2).
    // A list carries each chat's last 3 messages and `chat_total` where it cut (P0 has 4).
    let mut listed = view.clone();
    let own = listed["participants"][0]["chat"].as_array().unwrap().clone();
    assert_eq!(own.len(), 4);
    listed["participants"][0]["chat"] = json!(own[1..]);
    listed["participants"][0]["chat_total"] = json!(4);
    expect_list(&mut p0, json!({}), json!([listed])).await;

    // GET_FILTERS_DATA: the caller's own filters only (protocol.md D6).
    a.send("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [rotation("rot-1")]}))
        .await
        .unwrap();
    assert_eq!(next(&mut a, "SET_FILTERS").await["type"], "SESSION_CHANGE");
    assert_eq!(next(&mut a, "SET_FILTERS").await, success("SET_FILTERS", "Successfully changed filters."));
    let req = json!({"filter_id": "all", "filter_name": "ROTATION", "filter_channel": "both"});
    expect_next(
        &mut p1,
        "GET_FILTERS_DATA",
        req,
        json!({"type": "FILTERS_DATA", "data": {id1: {"video": [null], "audio": []}}}),
    )
    .await;

    // PING.
    p0.send("PING", json!({"sent": 1, "data": ""})).await.unwrap();
    let pong = next(&mut p0, "PING").await;
    assert_eq!(pong["type"], "PONG");
    assert_eq!(pong["data"]["ping_data"], json!({"sent": 1, "data": ""}));
    assert_eq!(pong["data"]["handled_time"], pong["data"]["server_time"]);

    // Everything else is 403, even with malformed data, and changes nothing.
    let file_before = srv.session_file();
    for data in [json!("garbage"), json!({"session_id": SESSION}), json!(null)] {
        let cases: Vec<ErrCase> = NOT_FOR_PARTICIPANTS
            .iter()
            .map(|t| case(t, data.clone(), 403, "FORBIDDEN", is(format!("{t} is not allowed for this user."))))
            .collect();
        run_cases(&mut p0, &cases).await;
    }
    assert_eq!(srv.session_file(), file_before, "forbidden requests changed nothing");
    assert_quiet(&mut a, "forbidden requests reached no experimenter").await;
    assert_quiet(&mut p1, "forbidden requests reached no participant").await;
    // The experiment is still WAITING (the participant's START/STOP did nothing).
    a.send("START_EXPERIMENT", json!({})).await.unwrap();
    assert_eq!(next(&mut a, "START").await["type"], "EXPERIMENT_STARTED");
    assert_eq!(next(&mut a, "START").await, success("START_EXPERIMENT", "Successfully started experiment."));

    for c in [p0, p1, p2, a] {
        c.close().await;
    }
    srv.stop().await;
}

/// CHAT delivery (as SynthARium): a participant-id target that is not connected → 404
/// UNKNOWN_USER "Failed to send data to <id>, user not found." after the message was logged.
/// exphub does this for experimenters; a participant's chat is logged and answered SUCCESS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_chat_to_a_participant_who_is_not_connected_is_404() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    create_experiment(&mut a).await;
    let mut p0 = part(&srv.base, PARTICIPANTS[0]).await;
    let (id0, id3) = (PARTICIPANTS[0], PARTICIPANTS[3]);
    // P0 names P3 by its alias, and the error repeats the alias, not P3's id.
    let to3 = shown_ids(&mut p0).await["P3"].clone();
    let m = chat(id0, &to3, "are you there?", 1);
    run_cases(
        &mut p0,
        &[case("CHAT", m.clone(), 404, "UNKNOWN_USER", is(format!("Failed to send data to {to3}, user not found.")))],
    )
    .await;
    let file = srv.session_file();
    let stored = chat(id0, id3, "are you there?", 1);
    assert_eq!(
        (&file["participants"][0]["chat"], &file["participants"][3]["chat"]),
        (&json!([stored]), &json!([stored])),
        "logged before the error"
    );
    p0.close().await;
    a.close().await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Malformed input
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_answered_and_the_server_keeps_serving() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let mut b = exp(&srv.base).await;
    create_experiment(&mut a).await;
    assert_eq!(next(&mut b, "B").await["type"], "EXPERIMENT_CREATED");
    let mut p0 = part(&srv.base, PARTICIPANTS[0]).await;
    let invalid = is("Received message is not a valid Message object.");

    // Not a valid envelope: 400 INVALID_REQUEST, never a silent drop (protocol.md D1).
    let frames = [
        "",
        " ",
        "not json",
        "{",
        "\"x\"",
        "5",
        "null",
        "true",
        "[]",
        r#"[{"type":"PING","data":{}}]"#,
        "{}",
        r#"{"type":"PING"}"#,
        r#"{"data":{}}"#,
        r#"{"type":"PING","data":{},"extra":1}"#,
        r#"{"type":"PING","dat":{}}"#,
        r#"{"type":"NO_SUCH_TYPE","data":{}}"#,
        r#"{"type":"ping","data":{}}"#,
        r#"{"type":5,"data":{}}"#,
        r#"{"type":null,"data":{}}"#,
        r#"{"type":"PING","data":{}} trailing"#,
    ];
    for c in [&mut a, &mut p0] {
        for f in frames {
            c.send_text(f).await.unwrap();
            check_error(&next(c, f).await, 400, "INVALID_REQUEST", &invalid, &format!("frame {f:?}"));
        }
        // Binary frames, even holding a valid message.
        for f in [br#"{"type":"PING","data":{}}"#.as_slice(), b"\x00\x01\x02"] {
            c.send_binary(f).await.unwrap();
            check_error(&next(c, "binary").await, 400, "INVALID_REQUEST", &invalid, &format!("binary frame {f:?}"));
        }
    }

    // A known type with malformed data: 400 INVALID_DATATYPE naming the field.
    let cases = vec![
        case("GET_SESSION", json!({}), 400, "INVALID_DATATYPE", starts("Message data is not a valid SessionIdRequest.: data: missing field `session_id`")),
        case("GET_SESSION", json!({"session_id": 5}), 400, "INVALID_DATATYPE", starts("Message data is not a valid SessionIdRequest.: data.session_id:")),
        case("GET_SESSION", json!({"session_id": SESSION, "x": 1}), 400, "INVALID_DATATYPE", starts("Message data is not a valid SessionIdRequest.: data.x: unknown field `x`")),
        case("DELETE_SESSION", json!([SESSION]), 400, "INVALID_DATATYPE", starts("Message data is not a valid SessionIdRequest.: data:")),
        case("CREATE_EXPERIMENT", json!("x"), 400, "INVALID_DATATYPE", starts("Message data is not a valid SessionIdRequest.: data:")),
        case("JOIN_EXPERIMENT", json!(null), 400, "INVALID_DATATYPE", starts("Message data is not a valid SessionIdRequest.: data:")),
        case("SAVE_SESSION", json!({}), 400, "INVALID_DATATYPE", starts("Message data is not a valid Session object.")),
        case("SAVE_SESSION", {
            let mut s = new_session("x", 1);
            s["participants"][0]["banned"] = json!("no");
            s
        }, 400, "INVALID_DATATYPE", starts("Message data is not a valid Session object.: data: participants[0].banned")),
        case("ADD_NOTE", json!({"time": 1.5, "speakers": [], "content": ""}), 400, "INVALID_DATATYPE", starts("Message data is not a valid Note.: data.time:")),
        case("ADD_NOTE", json!({"time": true, "speakers": [], "content": ""}), 400, "INVALID_DATATYPE", starts("Message data is not a valid Note.: data.time:")),
        case("CHAT", json!({"message": "x", "time": 1, "author": "experimenter"}), 400, "INVALID_DATATYPE", starts("Message data is not a valid ChatMessage.: data: missing field `target`")),
        case("CHAT", json!({"message": "x", "time": 1, "author": "experimenter", "target": "participants", "foo": 1}), 400, "INVALID_DATATYPE",
            starts("Message data is not a valid ChatMessage.: data.foo: unknown field `foo`")),
        case("KICK_PARTICIPANT", json!({"participant_id": "x", "reason": 5}), 400, "INVALID_DATATYPE", starts("Message data is not a valid KickRequest.: data.reason:")),
        case("BAN_PARTICIPANT", json!({"participant_id": "x"}), 400, "INVALID_DATATYPE", starts("Message data is not a valid KickRequest.: data: missing field `reason`")),
        case("MUTE", json!({"participant_id": "x", "mute_video": "yes", "mute_audio": false}), 400, "INVALID_DATATYPE", starts("Message data is not a valid MuteRequest.: data.mute_video:")),
        case("SET_FILTERS", json!({"participant_id": "all", "video_filters": []}), 400, "INVALID_DATATYPE", starts("Message data is not a valid SetFiltersRequest.: data: missing field `audio_filters`")),
        case("SET_FILTERS", json!({"participant_id": "all", "audio_filters": [], "video_filters": [{"name": "ROTATION"}]}), 400, "INVALID_DATATYPE",
            starts("Message data is not a valid SetFiltersRequest.: data.video_filters[0]: missing field `id`")),
        case("SET_GROUP_FILTERS", json!({"audio_group_filters": 1, "video_group_filters": []}), 400, "INVALID_DATATYPE",
            starts("Message data is not a valid SetGroupFiltersRequest.: data.audio_group_filters:")),
        case("GET_FILTERS_DATA", json!({"filter_id": "all", "filter_name": "PING", "filter_channel": "left"}), 400, "INVALID_DATATYPE",
            starts("Message data is not a valid GetFiltersData.: data.filter_channel:")),
        case("GET_FILTERS_DATA_SEND_TO_PARTICIPANT", json!({"filter_id": "all", "filter_name": "PING", "filter_channel": "video"}), 400, "INVALID_DATATYPE",
            starts("Message data is not a valid GET_FILTERS_DATA_SEND_TO_PARTICIPANT.: data: missing field `participant_id`")),
        case("UPDATE_READ_MESSAGE_TIME", json!({"participant_id": "x", "lastMessageReadTime": "now"}), 400, "INVALID_DATATYPE",
            starts("Message data is not a valid UpdateReadMessageTimeRequest.: data.lastMessageReadTime:")),
        case("POST_PROCESSING_VIDEO", json!({}), 400, "INVALID_DATATYPE", starts("Message data is not a valid PostProcessingDict.: data: missing field `session_id`")),
        case("CONNECTION_OFFER", json!({"id": "x"}), 400, "INVALID_DATATYPE", starts("Invalid connection offer dict: data: missing field `offer`")),
        case("CONNECTION_OFFER", json!({"id": "x", "offer": {"sdp": "", "type": "bogus"}}), 400, "INVALID_DATATYPE", starts("Invalid connection offer dict: data.offer.type:")),
        case("ADD_ICE_CANDIDATE", json!({"id": "x", "candidate": {"candidate": "c"}}), 400, "INVALID_DATATYPE",
            starts("Invalid add ice candidate dict: data.candidate: missing field `sdpMid`")),
        case("PONG", json!({}), 400, "INVALID_DATATYPE", starts("Message data is not a valid Pong.")),
    ];
    run_cases(&mut a, &cases).await;
    // Participants get INVALID_DATATYPE for the types they may send.
    let cases = vec![
        case("CHAT", json!(5), 400, "INVALID_DATATYPE", starts("Message data is not a valid ChatMessage.: data:")),
        case(
            "GET_SESSION",
            json!({}),
            400,
            "INVALID_DATATYPE",
            starts("Message data is not a valid SessionIdRequest.: data: missing field `session_id`"),
        ),
        case(
            "ADD_ICE_CANDIDATE",
            json!({}),
            400,
            "INVALID_DATATYPE",
            starts("Invalid add ice candidate dict: data: missing field"),
        ),
    ];
    run_cases(&mut p0, &cases).await;

    // After all of it: the same connections and another one are served correctly.
    let stored = session_json(SESSION);
    let mut want = stored.clone();
    want["creation_time"] = srv.session_file()["creation_time"].clone();
    // GET_SESSION_LIST ignores its data.
    expect_list(&mut a, json!(5), json!([want])).await;
    expect_next(&mut b, "GET_SESSION", json!({"session_id": SESSION}), json!({"type": "SESSION", "data": want})).await;
    assert_quiet(&mut a, "A").await;
    assert_quiet(&mut p0, "P0").await;
    let m = chat(PARTICIPANTS[0], "experimenter", "still here", 1);
    expect_next(&mut p0, "CHAT", m.clone(), success("CHAT", "Successfully send chat message.")).await;
    assert_eq!(next(&mut a, "A").await, json!({"type": "CHAT", "data": m}));
    let mut c = exp(&srv.base).await;
    expect_next(
        &mut c,
        "GET_SESSION",
        json!({"session_id": SESSION}),
        json!({"type": "SESSION", "data": srv.session_file()}),
    )
    .await;

    for c in [a, b, c, p0] {
        c.close().await;
    }
    srv.stop().await;
}

/// Frames over the server's limit get 413 (protocol.md D1). The webrtc stack of the test client
/// cannot send a data-channel message over 256 KiB at all (SCTP: the peer's advertised
/// `max-message-size`, and this stack caps its own at 256 KiB), so the limit is proved end to end
/// on a server configured with a small limit; `src/protocol/envelope.rs` unit-tests the check
/// itself (`oversized_frames_are_413`, limit checked before anything else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_get_413() {
    const LIMIT: usize = 2048;
    let srv = TestServer::start_with(|cfg| cfg.max_message_bytes = LIMIT).await;
    let mut a = exp(&srv.base).await;
    let frame = |len: usize| {
        let pad = len - r#"{"type":"PING","data":""}"#.len();
        format!(r#"{{"type":"PING","data":"{}"}}"#, "x".repeat(pad))
    };
    // Exactly at the limit: served.
    a.send_text(&frame(LIMIT)).await.unwrap();
    let pong = next(&mut a, "PING at the limit").await;
    assert_eq!(pong["type"], "PONG");
    assert_eq!(pong["data"]["ping_data"].as_str().unwrap().len(), LIMIT - 25);
    // One byte over, text or binary: 413, checked before anything else.
    let over = frame(LIMIT + 1);
    a.send_text(&over).await.unwrap();
    check_error(
        &next(&mut a, "over").await,
        413,
        "INVALID_REQUEST",
        &is(format!("Message too large: {} bytes, the limit is {LIMIT} bytes.", LIMIT + 1)),
        "text over the limit",
    );
    a.send_binary(&vec![b'x'; 5000]).await.unwrap();
    check_error(
        &next(&mut a, "binary over").await,
        413,
        "INVALID_REQUEST",
        &is(format!("Message too large: 5000 bytes, the limit is {LIMIT} bytes.")),
        "binary over the limit",
    );
    a.send_text(&format!("{{{}", "x".repeat(3000))).await.unwrap();
    check_error(
        &next(&mut a, "junk over").await,
        413,
        "INVALID_REQUEST",
        &starts("Message too large: 3001 bytes"),
        "non-JSON over the limit",
    );
    assert_quiet(&mut a, "still served after 413s").await;
    a.close().await;
    srv.stop().await;

    // On a default server (256 KiB, as advertised), a larger frame cannot leave this client
    // stack; if it ever can, the server must answer 413. A frame of exactly the advertised size
    // is answered: `e2e_limits::a_frame_at_the_limit_gets_a_reply_that_fits`.
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let big = frame((1 << 20) + 1);
    match a.send_text(&big).await {
        Err(e) => assert!(e.to_string().contains("maximum message size"), "client refuses: {e}"),
        Ok(()) => check_error(
            &next(&mut a, "1 MiB + 1").await,
            413,
            "INVALID_REQUEST",
            &starts("Message too large:"),
            "over 1 MiB",
        ),
    }
    assert_quiet(&mut a, "still served").await;
    a.close().await;
    srv.stop().await;
}

/// protocol.md D1: only frames over the limit (default 256 KiB) are refused. Were the server to
/// advertise `a=max-message-size:65536` in its SDP answer (the webrtc default), a standards-following
/// client (a browser, this client) cannot send any message over 64 KiB, e.g. a SAVE_SESSION of a
/// session with a long chat history. This stack can do at most 256 KiB; 200 KB must pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_between_64_kib_and_the_limit_are_served() {
    let srv = TestServer::start().await;
    let mut a = exp(&srv.base).await;
    let data = "x".repeat(200_000);
    a.send("PING", json!(data)).await.unwrap_or_else(|e| panic!("a 200 KB frame cannot be sent: {e}"));
    let pong = next(&mut a, "200 KB PING").await;
    assert_eq!(pong["data"]["ping_data"], json!(data));
    a.close().await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. HTTP signalling and operations
// ---------------------------------------------------------------------------------------------

fn http_error(code: u64, ty: &str, desc: &str) -> Value {
    json!({"type": "ERROR", "data": {"code": code, "type": ty, "description": desc}})
}

/// POSTs raw bytes to `/offer` (or another path) and checks status = code and the exact body.
async fn expect_http(base: &str, path: &str, ct: &str, body: &[u8], want: Value, ctx: &str) {
    let (status, resp) = post_raw(base, path, ct, body.to_vec()).await.unwrap();
    let resp: Value = serde_json::from_slice(&resp)
        .unwrap_or_else(|_| panic!("{ctx}: body is not JSON: {}", String::from_utf8_lossy(&resp)));
    assert_eq!(resp, want, "{ctx}");
    assert_eq!(u64::from(status), want["data"]["code"].as_u64().unwrap_or(200), "{ctx}: status = code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_errors_in_synthariums_order() {
    let srv = TestServer::start().await;
    let base = srv.base.as_str();
    let json_ct = "application/json";
    let exp_req = |f: &dyn Fn(&mut Value)| {
        let mut r = json!({"sdp": "v=0\r\n", "type": "offer", "user_type": "experimenter", "experimenter_password": PASSWORD, "connection_id": "c-1"});
        f(&mut r);
        serde_json::to_vec(&json!({ "request": r })).unwrap()
    };
    let part_req = |sid: &str, pid: &str, f: &dyn Fn(&mut Value)| {
        let mut r = json!({"sdp": "v=0\r\n", "type": "offer", "user_type": "participant", "session_id": sid, "participant_id": pid, "connection_id": "c-2"});
        f(&mut r);
        serde_json::to_vec(&json!({ "request": r })).unwrap()
    };
    let parse_req = http_error(400, "INVALID_DATATYPE", "Failed to parse request.");
    let bad_offer = http_error(400, "INVALID_REQUEST", "Failed to parse offer.");
    let rows: Vec<(&str, Vec<u8>, Value, &str)> = vec![
        // 1. content type
        (
            "text/plain",
            exp_req(&|_| {}),
            http_error(415, "INVALID_REQUEST", "Content type must be 'application/json'."),
            "text/plain",
        ),
        (
            "text/plain",
            b"not json".to_vec(),
            http_error(415, "INVALID_REQUEST", "Content type must be 'application/json'."),
            "content type before JSON",
        ),
        // 2. JSON with a `request` object
        (json_ct, b"not json".to_vec(), parse_req.clone(), "not JSON"),
        (json_ct, b"{}".to_vec(), parse_req.clone(), "no request key"),
        (json_ct, br#"{"request": 5}"#.to_vec(), parse_req.clone(), "request not an object"),
        (
            "application/json; charset=utf-8",
            b"[]".to_vec(),
            parse_req.clone(),
            "charset parameter accepted, then JSON checked",
        ),
        // 3. missing parameters (Python list repr)
        (
            json_ct,
            br#"{"request": {}}"#.to_vec(),
            http_error(400, "INVALID_REQUEST", "Missing request parameters: ['sdp', 'type', 'user_type']."),
            "all missing",
        ),
        (
            json_ct,
            exp_req(&|r| {
                r.as_object_mut().unwrap().remove("type");
            }),
            http_error(400, "INVALID_REQUEST", "Missing request parameters: ['type']."),
            "type missing",
        ),
        (
            json_ct,
            exp_req(&|r| {
                r.as_object_mut().unwrap().remove("experimenter_password");
            }),
            http_error(400, "INVALID_REQUEST", "Missing request parameters: ['experimenter_password']."),
            "password missing",
        ),
        (
            json_ct,
            part_req(SESSION, PARTICIPANTS[0], &|r| {
                r.as_object_mut().unwrap().remove("session_id");
            }),
            http_error(400, "INVALID_REQUEST", "Missing request parameters: ['session_id']."),
            "session_id missing",
        ),
        (
            json_ct,
            part_req(SESSION, PARTICIPANTS[0], &|r| {
                r.as_object_mut().unwrap().remove("participant_id");
                r.as_object_mut().unwrap().remove("sdp");
            }),
            http_error(400, "INVALID_REQUEST", "Missing request parameters: ['sdp', 'participant_id']."),
            "sdp and participant_id missing",
        ),
        (
            json_ct,
            exp_req(&|r| {
                r["user_type"] = json!("admin");
                r.as_object_mut().unwrap().remove("sdp");
            }),
            http_error(400, "INVALID_REQUEST", "Missing request parameters: ['sdp']."),
            "missing before user type",
        ),
        // 4. user type
        (
            json_ct,
            exp_req(&|r| r["user_type"] = json!("admin")),
            http_error(400, "INVALID_REQUEST", "Invalid user type."),
            "user type",
        ),
        (
            json_ct,
            exp_req(&|r| {
                r["user_type"] = json!("admin");
                r["type"] = json!("bogus");
            }),
            http_error(400, "INVALID_REQUEST", "Invalid user type."),
            "user type before offer",
        ),
        // 5. offer
        (json_ct, exp_req(&|r| r["type"] = json!("bogus")), bad_offer.clone(), "sdp type"),
        (json_ct, exp_req(&|r| r["sdp"] = json!(5)), bad_offer.clone(), "sdp not a string"),
        (
            json_ct,
            exp_req(&|r| {
                r["type"] = json!("bogus");
                r["experimenter_password"] = json!("wrong");
            }),
            bad_offer.clone(),
            "offer before password",
        ),
        (
            json_ct,
            part_req("nope", PARTICIPANTS[0], &|r| r["type"] = json!("bogus")),
            bad_offer.clone(),
            "offer before session",
        ),
        // (exphub) present fields of the wrong JSON type
        (
            json_ct,
            exp_req(&|r| r["connection_id"] = json!(5)),
            http_error(
                400,
                "INVALID_DATATYPE",
                "Failed to parse request.: request.connection_id: expected a string, got a number",
            ),
            "connection_id not a string",
        ),
        (
            json_ct,
            part_req(SESSION, PARTICIPANTS[0], &|r| r["session_id"] = json!(null)),
            http_error(
                400,
                "INVALID_DATATYPE",
                "Failed to parse request.: request.session_id: expected a string, got null",
            ),
            "session_id null",
        ),
        // 6. password
        (
            json_ct,
            exp_req(&|r| r["experimenter_password"] = json!("wrong")),
            http_error(401, "INVALID_REQUEST", "Invalid or missing experimenter password."),
            "wrong password",
        ),
        (
            json_ct,
            exp_req(&|r| r["experimenter_password"] = json!("no-password-given")),
            http_error(401, "INVALID_REQUEST", "Invalid or missing experimenter password."),
            "SynthARium's placeholder",
        ),
        // An SDP that does not parse, with the right password.
        (json_ct, exp_req(&|r| r["sdp"] = json!("garbage")), bad_offer.clone(), "unparsable SDP"),
        // 7. participant: no experiment for the session yet.
        (
            json_ct,
            part_req(SESSION, PARTICIPANTS[0], &|_| {}),
            http_error(400, "UNKNOWN_SESSION", "Session not found."),
            "no experiment",
        ),
    ];
    for (ct, body, want, ctx) in &rows {
        expect_http(base, "/offer", ct, body, want.clone(), ctx).await;
    }

    // With an experiment: unknown session / participant, banned.
    let mut a = exp(base).await;
    create_experiment(&mut a).await;
    expect_next(
        &mut a,
        "BAN_PARTICIPANT",
        json!({"participant_id": PARTICIPANTS[3], "reason": ""}),
        success("BAN_PARTICIPANT", "Successfully banned participant."),
    )
    .await;
    let rows: Vec<(Vec<u8>, Value, &str)> = vec![
        (
            part_req("nope", PARTICIPANTS[0], &|_| {}),
            http_error(400, "UNKNOWN_SESSION", "Session not found."),
            "unknown session",
        ),
        (
            part_req(SESSION, "nobody", &|_| {}),
            http_error(400, "UNKNOWN_PARTICIPANT", "Participant not found in the given session."),
            "unknown participant",
        ),
        (
            part_req(SESSION, PARTICIPANTS[3], &|_| {}),
            http_error(400, "BANNED_PARTICIPANT", "You have been banned and can no longer join the experiment."),
            "banned",
        ),
        (
            part_req(SESSION, PARTICIPANTS[0], &|r| r["sdp"] = json!("garbage")),
            bad_offer.clone(),
            "unparsable SDP from a participant",
        ),
    ];
    for (body, want, ctx) in &rows {
        expect_http(base, "/offer", json_ct, body, want.clone(), ctx).await;
    }

    // STOP from WAITING (allowed; start_time = end_time), after which joining is refused (protocol.md D10).
    a.send("STOP_EXPERIMENT", json!({})).await.unwrap();
    let ended = next(&mut a, "STOP").await;
    assert_eq!(ended["type"], "EXPERIMENT_ENDED");
    assert_eq!(ended["data"]["start_time"], ended["data"]["end_time"], "never started: start_time = end_time");
    assert_eq!(next(&mut a, "STOP").await, success("STOP_EXPERIMENT", "Successfully stopped experiment."));
    expect_http(
        base,
        "/offer",
        json_ct,
        &part_req(SESSION, PARTICIPANTS[0], &|_| {}),
        http_error(409, "INVALID_REQUEST", "The experiment has ended."),
        "ended",
    )
    .await;

    a.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_hello_health_and_metrics_endpoints() {
    let srv = TestServer::start().await;
    let base = srv.base.as_str();
    let cand = json!({"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"});

    // /addIceCandidate: buffered for a connection not answered yet (the dev frontend races its offer).
    let ok = json!({"type": "SUCCESS", "data": {"type": "ADD_ICE_CANDIDATE", "description": "Ice candidate was succesfully received."}});
    let (status, body) =
        post_json(base, "/addIceCandidate", &json!({"request": {"id": "conn-1", "candidate": cand}})).await.unwrap();
    assert_eq!((status, body), (200, ok.clone()));
    // The end-of-candidates marker and a null usernameFragment are accepted too.
    let end = json!({"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null});
    let (status, body) =
        post_json(base, "/addIceCandidate", &json!({"request": {"id": "conn-1", "candidate": end}})).await.unwrap();
    assert_eq!((status, body), (200, ok));
    let invalid = http_error(400, "INVALID_REQUEST", "Invalid candidate.");
    let mut missing = cand.clone();
    missing.as_object_mut().unwrap().remove("sdpMid");
    let rows: Vec<(&str, Vec<u8>, Value, &str)> = vec![
        (
            "application/json",
            serde_json::to_vec(&json!({"request": {"id": "conn-1"}})).unwrap(),
            invalid.clone(),
            "no candidate",
        ),
        (
            "application/json",
            serde_json::to_vec(&json!({"request": {"candidate": cand}})).unwrap(),
            invalid.clone(),
            "no id",
        ),
        (
            "application/json",
            serde_json::to_vec(&json!({"request": {"id": 5, "candidate": cand}})).unwrap(),
            invalid.clone(),
            "id not a string",
        ),
        (
            "application/json",
            serde_json::to_vec(&json!({"request": {"id": "c", "candidate": missing}})).unwrap(),
            invalid.clone(),
            "sdpMid missing",
        ),
        (
            "application/json",
            serde_json::to_vec(&json!({"request": {"id": "c", "candidate": "candidate:1"}})).unwrap(),
            invalid.clone(),
            "candidate not an object",
        ),
        (
            "application/json",
            b"nope".to_vec(),
            http_error(400, "INVALID_DATATYPE", "Failed to parse request."),
            "not JSON",
        ),
        (
            "application/json",
            b"{}".to_vec(),
            http_error(400, "INVALID_DATATYPE", "Failed to parse request."),
            "no request",
        ),
        (
            "text/plain",
            serde_json::to_vec(&json!({"request": {"id": "c", "candidate": cand}})).unwrap(),
            http_error(415, "INVALID_REQUEST", "Content type must be 'application/json'."),
            "content type",
        ),
    ];
    for (ct, body, want, ctx) in &rows {
        expect_http(base, "/addIceCandidate", ct, body, want.clone(), ctx).await;
    }

    // GET /hello-world: {"text": "Hello World", "timestamp": "<date time>"}.
    let (status, body) = get(base, "/hello-world").await.unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sorted_keys(&v), ["text", "timestamp"]);
    assert_eq!(v["text"], "Hello World");
    let ts = v["timestamp"].as_str().unwrap();
    let b = ts.as_bytes();
    assert!(
        ts.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':',
        "timestamp like str(datetime.now()): {ts}"
    );

    // GET /healthz.
    let (status, body) = get(base, "/healthz").await.unwrap();
    assert_eq!((status, serde_json::from_slice::<Value>(&body).unwrap()), (200, json!({"status": "ok"})));

    // GET /metrics: Prometheus text. Counters are process-wide (other tests run in this process),
    // so values are checked for shape, and the connection gauge for counting our open connection.
    let a = exp(base).await;
    let (status, body) = get(base, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap_or_else(|_| panic!("{line}"))
    };
    assert!(text.contains("# TYPE exphub_rtp_packets_forwarded_total counter\n"), "{text}");
    assert!(text.contains("# TYPE exphub_connections gauge\n"), "{text}");
    assert!(value("exphub_rtp_packets_forwarded_total") >= 0.0);
    assert!(value("exphub_connections") >= 1.0, "our experimenter is connected");
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = l.split_whitespace();
        let (name, v) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(name.starts_with("exphub_") && v.parse::<f64>().is_ok() && parts.next().is_none(), "sample line: {l}");
    }
    a.close().await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Both frontend styles of connecting, end to end with media
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_and_main_style_clients_work_end_to_end() {
    let srv = TestServer::start().await;
    let (id0, id1) = (PARTICIPANTS[0], PARTICIPANTS[1]);

    // Dev frontend: trickle ICE (/addIceCandidate for the main connection, ADD_ICE_CANDIDATE for
    // sub-connections, each acknowledged).
    let (arec, aopts) = recorder();
    let mut a = experimenter_with(&srv.base, ClientOptions { trickle: true, ..aopts }).await;
    create_experiment(&mut a).await;
    let (p0rec, p0opts) = recorder();
    let p0 = participant(&srv.base, id0, ClientOptions { trickle: true, ..p0opts }).await;
    let play0 = p0.publish(media());
    assert!(wait_media(&arec, id0, Kind::Video, 30, T).await, "trickle experimenter sees trickle participant's video");
    assert!(wait_media(&arec, id0, Kind::Audio, 30, T).await, "trickle experimenter hears trickle participant");
    assert!(wait_media(&p0rec, "echo", Kind::Video, 30, T).await, "trickle participant gets its echo");

    // Main frontend: no connection_id in the offer.
    let (brec, bopts) = recorder();
    let mut b = experimenter_with(&srv.base, ClientOptions { send_connection_id: false, ..bopts }).await;
    b.send("JOIN_EXPERIMENT", json!({"session_id": SESSION})).await.unwrap();
    let (joined, _) = b.recv_type("SUCCESS", T).await.unwrap();
    assert_eq!(joined, success("JOIN_EXPERIMENT", "Successfully joined experiment."));
    let (p1rec, p1opts) = recorder();
    let mut p1 = participant(&srv.base, id1, ClientOptions { send_connection_id: false, ..p1opts }).await;
    let play1 = p1.publish(media());
    assert!(wait_media(&brec, id0, Kind::Video, 30, T).await, "main-style experimenter sees P0");
    assert!(wait_media(&brec, id1, Kind::Video, 30, T).await, "main-style experimenter sees P1");
    assert!(wait_media(&brec, id1, Kind::Audio, 30, T).await, "main-style experimenter hears P1");
    assert!(wait_media(&arec, id1, Kind::Video, 30, T).await, "trickle experimenter sees main-style P1");
    assert!(wait_media(&p1rec, "echo", Kind::Video, 30, T).await, "main-style participant gets its echo");
    // START: the participants see each other (P0's sub-connections trickle, P1's do not).
    a.send("START_EXPERIMENT", json!({})).await.unwrap();
    assert!(wait_media(&p0rec, id1, Kind::Video, 30, T).await, "P0 sees P1 after START");
    assert!(wait_media(&p1rec, id0, Kind::Video, 30, T).await, "P1 sees P0 after START");
    for r in [&arec, &brec, &p0rec, &p1rec] {
        assert_eq!(r.lock().unwrap().foreign, 0, "forwarded media is byte-exact");
    }

    // The trickle experimenter's sub-connection candidates were each acknowledged; nothing failed.
    let msgs = a.settle(Duration::from_millis(300)).await;
    let acks: Vec<&Value> =
        msgs.iter().filter(|m| m["type"] == "SUCCESS" && m["data"]["type"] == "ADD_ICE_CANDIDATE").collect();
    assert!(!acks.is_empty(), "ADD_ICE_CANDIDATE acknowledged: {msgs:?}");
    for ack in &acks {
        assert_eq!(**ack, success("ADD_ICE_CANDIDATE", "Successfully added ice candidate"));
    }
    assert!(msgs.iter().all(|m| m["type"] != "ERROR"), "{msgs:?}");
    let msgs = p1.settle(Duration::from_millis(100)).await;
    assert!(
        msgs.iter()
            .all(|m| m["type"] != "ERROR" && !(m["type"] == "SUCCESS" && m["data"]["type"] == "ADD_ICE_CANDIDATE")),
        "main style: no trickle: {msgs:?}"
    );
    let msgs = b.settle(Duration::from_millis(100)).await;
    assert!(msgs.iter().all(|m| m["type"] != "ERROR"), "{msgs:?}");

    play0.abort();
    play1.abort();
    for c in [p0, p1, a, b] {
        c.close().await;
    }
    srv.stop().await;
}
