//! Session writes under pressure: a flooding client is rate-limited with a typed error, and a
//! write that fails on a real full disk is refused and leaves nothing behind (no change in
//! memory, no side effect, nothing in the next successful write).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Sends `n` chats without waiting and returns every reply (SUCCESS or ERROR), in order.
async fn chat_burst(c: &mut exphub_client::Client, author: &str, target: &str, n: usize) -> Vec<Value> {
    for i in 0..n {
        c.send("CHAT", json!({"message": format!("burst {i}"), "time": i, "author": author, "target": target}))
            .await
            .unwrap();
    }
    let mut replies = vec![];
    while replies.len() < n {
        let m = c.recv(T).await.expect("every chat gets a reply");
        if m["type"] == "SUCCESS" || m["type"] == "ERROR" {
            replies.push(m);
        }
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_is_rate_limited_with_429_and_others_are_not() {
    let srv = TestServer::start().await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let pid = PARTICIPANTS[0];
    let mut flooder = participant(&srv.base, pid, Default::default()).await;
    let replies = chat_burst(&mut flooder, pid, "experimenter", 60).await;
    let ok = replies.iter().filter(|m| m["type"] == "SUCCESS").count();
    let limited: Vec<&Value> = replies.iter().filter(|m| m["type"] == "ERROR").collect();
    assert!(ok >= 5, "a burst passes: {ok} accepted");
    assert!(!limited.is_empty(), "the flood is limited: {ok} of 60 accepted");
    for m in &limited {
        assert_eq!(m["data"]["code"], 429, "{m}");
        assert_eq!(m["data"]["type"], "TOO_MANY_REQUESTS", "{m}");
    }
    // The first replies are the accepted ones: the burst comes first.
    assert!(replies[..5].iter().all(|m| m["type"] == "SUCCESS"), "{replies:?}");
    // Refused chats are gone; accepted ones are kept.
    let s = request(&mut exp, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await;
    assert_eq!(s["data"]["participants"][0]["chat"].as_array().unwrap().len(), ok);
    // Another client is not limited by the flooder's budget, and the flooder may read.
    request(&mut exp, "ADD_NOTE", json!({"time": 1, "speakers": [], "content": "fine"}), "SUCCESS").await;
    request(&mut flooder, "PING", json!({}), "PONG").await;
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let m = request(
        &mut flooder,
        "CHAT",
        json!({"message": "later", "time": 99, "author": pid, "target": "experimenter"}),
        "SUCCESS",
    )
    .await;
    assert_success(&m, "CHAT");
}

/// A small tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_owned())),
            Ok(o) => {
                eprintln!("SKIPPED: cannot mount a tmpfs ({}); needs root", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Fills the file system with `filler` until a write fails.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler.bin");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        for _ in 0..1_000_000 {
            if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
                break;
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_on_a_full_disk_is_refused_and_gone() {
    init_tracing();
    let dir = TempDir::new("full");
    let Some(fs) = Tmpfs::mount(dir.path(), "512k") else { return };
    write_session(dir.path(), &session_json(SESSION));
    let srv = TestServer::start_in(TempDir(dir.path().to_owned())).await;
    let mut exp = experimenter(&srv.base).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    let (p0, p1, p2) = (PARTICIPANTS[0], PARTICIPANTS[1], PARTICIPANTS[2]);
    let mut part = participant(&srv.base, p0, Default::default()).await;
    let before = request(&mut exp, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await["data"].clone();

    let filler = fs.fill();
    let refused = [
        ("CHAT", json!({"message": "refused 1", "time": 1, "author": "experimenter", "target": p0})),
        ("CHAT", json!({"message": "refused 2", "time": 2, "author": "experimenter", "target": "participants"})),
        ("ADD_NOTE", json!({"time": 3, "speakers": [], "content": "refused note"})),
        ("MUTE", json!({"participant_id": p1, "mute_video": true, "mute_audio": true})),
        (
            "SET_FILTERS",
            json!({"participant_id": "all", "audio_filters": [], "video_filters": [
            {"name": "ROTATION", "id": "rot-x", "channel": "video", "groupFilter": false,
             "config": {"angle": {"min": 1, "max": 180, "step": 1, "value": 90, "defaultValue": 45}}}]}),
        ),
        (
            "SET_GROUP_FILTERS",
            json!({"audio_group_filters": [], "video_group_filters": [
            {"name": "TEMPLATE_GF", "id": "grp-x", "channel": "video", "groupFilter": true, "config": {}}]}),
        ),
        ("UPDATE_READ_MESSAGE_TIME", json!({"participant_id": p0, "lastMessageReadTime": 77})),
        ("BAN_PARTICIPANT", json!({"participant_id": p2, "reason": "refused"})),
        ("BAN_PARTICIPANT", json!({"participant_id": p0, "reason": "refused"})),
        ("STOP_EXPERIMENT", json!({})),
    ];
    for (kind, data) in refused {
        let e = expect_error(&mut exp, kind, data).await;
        assert_eq!(e["code"], 500, "{kind}: {e}");
    }
    let e = expect_error(
        &mut part,
        "CHAT",
        json!({"message": "refused 3", "time": 4, "author": p0, "target": "experimenter"}),
    )
    .await;
    assert_eq!(e["code"], 500, "participant CHAT: {e}");

    // Nothing of it happened: the session is as before, the banned participant is still
    // here, nobody got a chat, the experiment still runs.
    let now = request(&mut exp, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await["data"].clone();
    assert_eq!(now, before, "refused changes are not in memory");
    let got = part.settle(Duration::from_millis(300)).await;
    assert!(!part.is_closed(), "a refused ban kicks nobody");
    assert!(got.iter().all(|m| m["type"] != "CHAT" && m["type"] != "BAN_NOTIFICATION"), "{got:?}");

    // Space again: the next write succeeds and holds none of the refused changes. (The
    // refused writes used up the experimenter's write budget: let it refill.)
    std::fs::remove_file(filler).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    request(&mut exp, "ADD_NOTE", json!({"time": 5, "speakers": [], "content": "accepted"}), "SUCCESS").await;
    let path = dir.path().join(format!("{SESSION}.json"));
    let disk = serde_json::to_value(exphub::session::store::read_with_journal(&path).unwrap()).unwrap();
    let mut want = before.clone();
    want["notes"] = json!([{"time": 5, "speakers": [], "content": "accepted"}]);
    assert_eq!(disk, want, "on disk: the accepted note only");
    let stopped = request(&mut exp, "STOP_EXPERIMENT", json!({}), "SUCCESS").await;
    assert_success(&stopped, "STOP_EXPERIMENT");
    let disk = serde_json::to_value(exphub::session::store::read_with_journal(&path).unwrap()).unwrap();
    assert!(disk["end_time"].as_i64().unwrap() > 0, "the stop is on disk");
    srv.stop().await;
    drop(fs);
}
