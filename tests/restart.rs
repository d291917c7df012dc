//! Proves that nothing an experimenter did is lost when the server is killed: the real
//! `exphub` binary is started, driven over WebRTC, and killed with SIGKILL; every change that
//! was acknowledged (chat, notes, mute, ban, filters, times, read times) is on disk and is
//! served again after a restart. Also: a session file that does not parse is reported and
//! left byte-for-byte untouched, and `exphub sessions validate` says what is wrong. Small
//! changes live in the session's journal until it is folded into the file: what is "on disk"
//! here is the file with its journal replayed, as the next start loads it.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proc::*;
use common::*;
use serde_json::json;

/// The test session as the next start loads it: the file with its journal replayed.
fn read_session(dir: &Path) -> serde_json::Value {
    let s = exphub::session::store::read_with_journal(&dir.join(format!("{SESSION}.json"))).expect("session loads");
    serde_json::to_value(s).unwrap()
}

fn journal_of(dir: &Path) -> std::path::PathBuf {
    exphub::session::store::journal_path(&dir.join(format!("{SESSION}.json")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_kill_9() {
    init_tracing();
    let dir = TempDir::new("kill9");
    write_session(dir.path(), &session_json(SESSION));
    let broken = b"{ \"id\": \"brokenbrok\", this is not json";
    std::fs::write(dir.path().join("broken.json"), broken).unwrap();
    let log = dir.path().join("server.log");

    let srv = spawn_server(dir.path(), &log);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let (p0, p1, p2) = (PARTICIPANTS[0], PARTICIPANTS[1], PARTICIPANTS[2]);
    let mut part = participant(&srv.base, p0, Default::default()).await;
    let steps = [
        ("CHAT", json!({"message": "to P0", "time": 11, "author": "experimenter", "target": p0})),
        ("ADD_NOTE", json!({"time": 12, "speakers": [p0], "content": "P0 smiles"})),
        ("MUTE", json!({"participant_id": p1, "mute_video": true, "mute_audio": false})),
        ("BAN_PARTICIPANT", json!({"participant_id": p2, "reason": "no show"})),
        (
            "SET_FILTERS",
            json!({"participant_id": p0, "audio_filters": [],
                   "video_filters": [{"name": "ROTATION", "id": "rot-1", "channel": "video", "groupFilter": false,
                                      "config": {"angle": {"min": 1, "max": 180, "step": 1, "value": 90, "defaultValue": 45}}}]}),
        ),
        ("START_EXPERIMENT", json!({})),
    ];
    for (kind, data) in steps {
        let m = request(&mut exp, kind, data, "SUCCESS").await;
        assert_success(&m, kind);
    }
    let m = request(
        &mut part,
        "CHAT",
        json!({"message": "from P0", "time": 13, "author": p0, "target": "experimenter"}),
        "SUCCESS",
    )
    .await;
    assert_success(&m, "CHAT");
    // UPDATE_READ_MESSAGE_TIME has no reply: follow it with a PING to know it was handled.
    exp.send("UPDATE_READ_MESSAGE_TIME", json!({"participant_id": p0, "lastMessageReadTime": 14})).await.unwrap();
    request(&mut exp, "PING", json!({}), "PONG").await;
    kill9(srv);

    // On disk, right after the kill.
    let s = read_session(dir.path());
    let ps = s["participants"].as_array().unwrap();
    assert_eq!(ps[0]["chat"].as_array().unwrap().len(), 2, "both chat messages: {}", ps[0]["chat"]);
    assert_eq!(s["notes"][0]["content"], "P0 smiles");
    assert_eq!(ps[1]["muted_video"], true);
    assert_eq!(ps[1]["muted_audio"], false);
    assert_eq!(ps[2]["banned"], true);
    assert_eq!(ps[0]["video_filters"][0]["id"], "rot-1");
    assert_eq!(ps[0]["video_filters"][0]["config"]["angle"]["value"], 90);
    assert_eq!(ps[0]["lastMessageReadTime"], 14);
    assert_eq!(ps[0]["lastMessageSentTime"], 13);
    assert!(s["start_time"].as_i64().unwrap() > 0 && s["creation_time"].as_i64().unwrap() > 0);
    assert_eq!(std::fs::read(dir.path().join("broken.json")).unwrap(), broken, "broken file untouched");

    // After a restart the same is served; no experiment survives a restart.
    let srv = spawn_server(dir.path(), &log);
    let mut exp = experimenter(&srv.base).await;
    let got = request(&mut exp, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    let mut want = s.clone();
    want["creation_time"] = json!(0);
    assert_eq!(got["data"], want);
    let list = request(&mut exp, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "the broken file is not served");
    assert!(!journal_of(dir.path()).exists(), "the journal was folded into the file at start");
    drop(srv);
    assert_eq!(std::fs::read(dir.path().join("broken.json")).unwrap(), broken, "broken file still untouched");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("broken.json"), "the broken file is reported at start-up:\n{log_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_never_loses_an_acknowledged_note() {
    init_tracing();
    let dir = TempDir::new("kill9-notes");
    write_session(dir.path(), &session_json(SESSION));
    let log = dir.path().join("server.log");
    let mut acked_total = 0usize;
    for round in 0..3u64 {
        let srv = spawn_server(dir.path(), &log);
        let mut exp = experimenter(&srv.base).await;
        request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
        // Fire notes without waiting, then kill the server while writes are in flight.
        for i in 0..400 {
            exp.send("ADD_NOTE", json!({"time": i, "speakers": [], "content": format!("r{round} n{i}")}))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40 + 70 * round)).await;
        kill9(srv);
        let acked = exp.drain().iter().filter(|m| m["type"] == "SUCCESS" && m["data"]["type"] == "ADD_NOTE").count();
        let s = read_session(dir.path());
        let on_disk = s["notes"].as_array().unwrap().len();
        eprintln!("round {round}: acknowledged {acked}, on disk {on_disk}");
        assert!(
            on_disk >= acked_total + acked,
            "round {round}: {on_disk} notes on disk, {acked_total}+{acked} acknowledged"
        );
        acked_total = on_disk;
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && n != &format!("{SESSION}.json"))
            .collect();
        assert!(leftovers.is_empty(), "no stray session files: {leftovers:?}");
    }
    assert!(acked_total > 0, "some notes were written");
}

/// Chats from five connections at once (each as fast as its rate limit lets it), killed with
/// SIGKILL mid-flood: every chat that was acknowledged is in the session after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_chat_flood_loses_no_acknowledged_chat() {
    init_tracing();
    let dir = TempDir::new("kill9-chats");
    write_session(dir.path(), &session_json(SESSION));
    let log = dir.path().join("server.log");
    let srv = spawn_server(dir.path(), &log);
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let mut clients = vec![("experimenter".to_string(), exp)];
    for pid in PARTICIPANTS {
        clients.push((pid.to_string(), participant(&srv.base, pid, Default::default()).await));
    }
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = vec![];
    for (author, mut c) in clients {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let target = if author == "experimenter" { PARTICIPANTS[0] } else { "experimenter" };
            // Bounded: the server is killed long before.
            for i in 0..2000 {
                let text = format!("{author} {i}");
                let msg = json!({"message": text, "time": i, "author": author, "target": target});
                if c.send("CHAT", msg).await.is_err() {
                    return;
                }
                // Skip the chats of the others; the reply is SUCCESS or ERROR.
                let reply = loop {
                    match c.recv(Duration::from_secs(5)).await {
                        Ok(m) if m["type"] == "SUCCESS" || m["type"] == "ERROR" => break m,
                        Ok(_) => continue,
                        Err(_) => return,
                    }
                };
                if reply["type"] == "SUCCESS" {
                    acked.lock().unwrap().push(text);
                } else {
                    assert_eq!(reply["data"]["code"], 429, "only the rate limit refuses a chat: {reply}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill9(srv);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(journal_of(dir.path()).exists(), "the chats went to the journal");
    let chats_in = |s: &serde_json::Value| -> std::collections::HashSet<String> {
        s["participants"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["chat"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap().to_owned()))
            .collect()
    };
    let on_disk = chats_in(&read_session(dir.path()));
    let lost: Vec<&String> = acked.iter().filter(|t| !on_disk.contains(*t)).collect();
    eprintln!("{} chats acknowledged, {} on disk", acked.len(), on_disk.len());
    assert!(acked.len() > 20, "the flood got going: {} acknowledged", acked.len());
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    // After a restart the server serves them, and the journal is folded into the file.
    let srv = spawn_server(dir.path(), &log);
    let mut exp = experimenter(&srv.base).await;
    let got = request(&mut exp, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    let served = chats_in(&got["data"]);
    assert!(acked.iter().all(|t| served.contains(t)), "every acknowledged chat is served after the restart");
    assert!(!journal_of(dir.path()).exists(), "folded at start");
    drop(srv);
}

#[test]
fn sessions_validate_reports_each_problem() {
    let dir = TempDir::new("validate");
    write_session(dir.path(), &session_json(SESSION));
    let run =
        || Command::new(env!("CARGO_BIN_EXE_exphub")).args(["sessions", "validate"]).arg(dir.path()).output().unwrap();
    let ok = run();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let mut bad = session_json("badbadbad1");
    bad["participants"][0]["banned"] = json!("yes");
    write_session(dir.path(), &bad);
    std::fs::write(dir.path().join("junk.json"), "not json").unwrap();
    let out = run();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("junk.json"), "{text}");
    assert!(text.contains("badbadbad1.json") && text.contains("participants[0].banned"), "{text}");
    assert!(text.contains("3 file(s), 2 with errors"), "{text}");
    // The example session shipped in sessions/ is valid.
    let shipped = Command::new(env!("CARGO_BIN_EXE_exphub"))
        .args(["sessions", "validate"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions"))
        .output()
        .unwrap();
    assert!(shipped.status.success(), "{}", String::from_utf8_lossy(&shipped.stdout));
}
