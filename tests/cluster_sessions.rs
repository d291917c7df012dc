//! Cluster mode: session designs in PostgreSQL and cross-node events (`LISTEN/NOTIFY`), with a
//! throwaway database and three real `exphub serve` processes (see `common/cluster.rs`).
//!
//! - sessions saved through A are listed on B and C, and T9: an experimenter on C receives
//!   `SESSION_CHANGE` for a save on A (the delay is printed, not asserted), and
//!   `EXPERIMENT_CREATED` for an experiment opened on A
//! - a `SAVE_SESSION` from a stale copy gets 409 and the database keeps the other version; a
//!   small change re-applies itself on the newer version; a database failure is a 503 that
//!   changes nothing
//! - after the event connections drop, every node re-opens its own and catches up on a change
//!   it was never told of
//! - a delete on B reaches A's experimenters
//! - `exphub sessions import` / `dump`: the round trip, and a single node serving the dump
//! - the compare-and-set itself, at the SQL level

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use cluster::*;
use common::*;
use exphub::session::Session;
use exphub_client::Client;
use pg::Pg;
use serde_json::{json, Value};

/// A new session as the session form sends it (every id empty).
fn new_session(title: &str) -> Value {
    let mut s = session_json("");
    s["title"] = json!(title);
    for p in s["participants"].as_array_mut().unwrap() {
        p["id"] = json!("");
    }
    s
}

/// The next `SESSION_CHANGE` for session `sid` (others are skipped).
async fn change_of(c: &mut Client, sid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = c.recv(left).await.unwrap_or_else(|e| panic!("SESSION_CHANGE of {sid}: {e}"));
        if m["type"] == "SESSION_CHANGE" && m["data"]["id"] == sid {
            return m["data"].clone();
        }
    }
}

/// The ids in a node's session list.
async fn listed(c: &mut Client) -> Vec<String> {
    let first = request(c, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await;
    let mut ids: Vec<String> =
        first["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().into()).collect();
    loop {
        let m = c.recv(T).await.expect("the rest of the list");
        match m["type"].as_str() {
            Some("SESSION_CHANGE") => ids.push(m["data"]["id"].as_str().unwrap().into()),
            Some("SESSION_LIST_END") => return ids,
            _ => {}
        }
    }
}

/// Asks for the node's session list until `want` holds for it (events take a moment).
async fn listed_until(c: &mut Client, what: &str, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids = listed(c).await;
        if want(&ids) || Instant::now() > deadline {
            assert!(want(&ids), "{what}: {ids:?}");
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored(pg: &Pg, sid: &str) -> Option<exphub::cluster::sessions::Stored> {
    db(pg).await.session(sid).await.unwrap()
}

/// Sessions saved through A are listed on B and C; T9: C's experimenter receives
/// `SESSION_CHANGE` for every save on A, new session or edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_saved_on_one_node_reach_the_others() {
    let (_serial, pg, [a, b, c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut ea = experimenter(a.base()).await;
    let mut eb = experimenter(b.base()).await;
    let mut ec = experimenter(c.base()).await;

    let saved = request(&mut ea, "SAVE_SESSION", new_session("Created on A"), "SAVED_SESSION").await;
    let acked = Instant::now();
    let sid = saved["data"]["id"].as_str().unwrap().to_owned();
    let seen = change_of(&mut ec, &sid).await;
    let mut delays = vec![acked.elapsed()];
    assert_eq!(seen, saved["data"], "C's experimenter sees the session as saved");
    assert_eq!(stored(&pg, &sid).await.expect("in the database").version, 1);
    for (name, e) in [("B", &mut eb), ("C", &mut ec)] {
        let both = |ids: &[String]| ids.contains(&sid) && ids.contains(&SESSION.to_owned());
        listed_until(e, &format!("{name} lists both"), both).await;
    }

    // Edits: each one reaches C.
    let mut doc = saved["data"].clone();
    for i in 0..5 {
        doc["title"] = json!(format!("Edit {i} on A"));
        request(&mut ea, "SAVE_SESSION", doc.clone(), "SAVED_SESSION").await;
        let acked = Instant::now();
        let seen = change_of(&mut ec, &sid).await;
        delays.push(acked.elapsed());
        assert_eq!(seen["title"], doc["title"]);
    }
    assert_eq!(stored(&pg, &sid).await.unwrap().version, 6);
    delays.sort();
    eprintln!(
        "T9: SAVE_SESSION acknowledged on A -> SESSION_CHANGE on C: median {:?}, max {:?} ({} saves)",
        delays[delays.len() / 2],
        delays[delays.len() - 1],
        delays.len()
    );
    // An experiment opened on A: C's experimenter is told, as A's are.
    let ok = request(&mut ea, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    let (created, _) = ec.recv_type("EXPERIMENT_CREATED", Duration::from_secs(20)).await.expect("C hears of it");
    assert_eq!(created["data"]["session_id"], SESSION);
    assert!(created["data"]["creation_time"].as_i64().unwrap() > 0);
    for cl in [ea, eb, ec] {
        cl.close().await;
    }
}

/// B's copy is stale (another node wrote a newer version whose event B has not seen yet: made
/// here with SQL, so that the race is certain): B's `SAVE_SESSION` gets 409 and writes nothing,
/// and B's experimenter then receives the newer version. A small change (`ADD_NOTE`) made from
/// a stale copy is re-applied to the newer version instead. A database failure answers 503 and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_save_is_refused_and_the_other_version_stays() {
    let (_serial, pg, [_a, b, _c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut eb = experimenter(b.base()).await;
    let copy = request(&mut eb, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await["data"].clone();
    let bump = |title: &str| {
        format!(
            "UPDATE sessions SET doc = jsonb_set(doc, '{{title}}', '\"{title}\"'), version = version + 1 \
             WHERE session_id = '{SESSION}'"
        )
    };
    sql(&pg, &bump("Saved on A")).await;

    let mut mine = copy.clone();
    mine["title"] = json!("Saved on B");
    let e = expect_error(&mut eb, "SAVE_SESSION", mine.clone()).await;
    assert_eq!(
        e,
        json!({"code": 409, "type": "SESSION_CHANGED", "description": "The session was changed elsewhere; reload it."})
    );
    let row = stored(&pg, SESSION).await.unwrap();
    assert_eq!((row.version, row.session.title.as_str()), (2, "Saved on A"), "the database keeps A's version");
    // B re-read it: its experimenter has the newer version, and saving from it works.
    let reloaded = change_of(&mut eb, SESSION).await;
    assert_eq!(reloaded["title"], "Saved on A");
    let mut again = reloaded.clone();
    again["title"] = json!("Saved on B after reloading");
    request(&mut eb, "SAVE_SESSION", again, "SAVED_SESSION").await;
    assert_eq!(stored(&pg, SESSION).await.unwrap().version, 3);

    // A small change from a stale copy: re-read, re-applied, both kept.
    let ok = request(&mut eb, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    sql(&pg, &bump("Renamed on A while B runs it")).await;
    let note = json!({"time": 1_700_000_000_000_i64, "speakers": [], "content": "noted on B"});
    let ok = request(&mut eb, "ADD_NOTE", note, "SUCCESS").await;
    assert_success(&ok, "ADD_NOTE");
    let row = stored(&pg, SESSION).await.unwrap();
    assert_eq!(row.session.title, "Renamed on A while B runs it", "A's change stays");
    assert_eq!(row.session.notes.last().map(|n| n.content.as_str()), Some("noted on B"), "B's note is added");
    assert!(row.session.creation_time > 0, "and B's experiment is still recorded in it");

    // The database fails: 503, nothing changes here or there.
    sql(&pg, "ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (false) NOT VALID").await;
    let note = json!({"time": 1_700_000_000_001_i64, "speakers": [], "content": "lost?"});
    let e = expect_error(&mut eb, "ADD_NOTE", note).await;
    assert_eq!(e["code"], 503, "{e}");
    sql(&pg, "ALTER TABLE sessions DROP CONSTRAINT refuse").await;
    let now = request(&mut eb, "GET_SESSION", json!({"session_id": SESSION}), "SESSION").await["data"].clone();
    assert!(now["notes"].as_array().unwrap().iter().all(|n| n["content"] != "lost?"), "not applied here");
    assert_eq!(stored(&pg, SESSION).await.unwrap().version, row.version, "nor there");
    eb.close().await;
}

/// The event connections drop (as when the database restarts) after a change that was never
/// announced: each node re-opens its connection, re-reads every session, and C's experimenter
/// gets the change. Events flow again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_event_connection_drops_a_node_catches_up() {
    let (_serial, pg, [a, _b, c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut ea = experimenter(a.base()).await;
    let mut ec = experimenter(c.base()).await;
    // Every node listens and has read every session once (its last query, now idle).
    let listening = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'exphub-events' \
                     AND state = 'idle' AND query LIKE 'SELECT session_id%'";
    let d = db(&pg).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&pg, listening).await < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&pg, listening).await, 3, "three event connections");
    sql(
        &pg,
        &format!(
            "UPDATE sessions SET doc = jsonb_set(doc, '{{title}}', '\"Missed\"'), version = version + 1 \
             WHERE session_id = '{SESSION}'"
        ),
    )
    .await;
    sql(&pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'exphub-events'").await;
    let seen = change_of(&mut ec, SESSION).await;
    assert_eq!(seen["title"], "Missed", "C caught up after re-opening its event connection");
    assert!(c.log_text().contains("cross-node events lost their database connection"), "logged once");
    // And events flow again: a save on A (caught up too) reaches C.
    assert_eq!(change_of(&mut ea, SESSION).await["title"], "Missed", "A caught up too");
    let mut doc = seen.clone();
    doc["title"] = json!("After the drop");
    request(&mut ea, "SAVE_SESSION", doc, "SAVED_SESSION").await;
    assert_eq!(change_of(&mut ec, SESSION).await["title"], "After the drop");
    assert_eq!(d.session(SESSION).await.unwrap().unwrap().version, 3);
    for cl in [ea, ec] {
        cl.close().await;
    }
}

async fn count(pg: &Pg, query: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query_one(query, &[]).await.unwrap().get(0)
}

/// A session deleted through B disappears on A: A's experimenter gets `DELETED_SESSION`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_node_reaches_the_others() {
    let (_serial, pg, [a, b, c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut ea = experimenter(a.base()).await;
    let mut eb = experimenter(b.base()).await;
    let deleted = request(&mut eb, "DELETE_SESSION", json!({"session_id": SESSION}), "DELETED_SESSION").await;
    assert_eq!(deleted["data"], SESSION);
    let (m, _) = ea.recv_type("DELETED_SESSION", Duration::from_secs(20)).await.expect("A hears of it");
    assert_eq!(m["data"], SESSION);
    assert!(stored(&pg, SESSION).await.is_none(), "the row is gone");
    let mut ec = experimenter(c.base()).await;
    listed_until(&mut ec, "C lists nothing", |ids| ids.is_empty()).await;
    for cl in [ea, eb, ec] {
        cl.close().await;
    }
}

fn exphub(args: &[&str], url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exphub"))
        .args(args)
        .env("EXPHUB_CLUSTER_DB", url)
        .output()
        .expect("exphub runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn load(path: &std::path::Path) -> Session {
    exphub::session::parse_session_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `exphub sessions import DIR` puts the files into the database under their ids (refusing an
/// id already there unless `--replace`); `exphub sessions dump DIR` writes files equal in
/// content, which a single node without a database serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_dump_round_trip() {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let pg = Pg::start(false);
    let src = TempDir::new("import");
    let mut other = session_json("0the4se55n");
    other["title"] = json!("The other one");
    write_session(src.path(), &session_json(SESSION));
    write_session(src.path(), &other);
    let dir = src.path().to_str().unwrap();

    let (ok, out) = exphub(&["sessions", "import", dir], &pg.url);
    assert!(ok, "{out}");
    assert!(out.contains("2 imported, 0 refused"), "{out}");
    let (ok, out) = exphub(&["sessions", "import", dir], &pg.url);
    assert!(!ok && out.contains("0 imported, 2 refused"), "an id already there is refused: {out}");
    let (ok, out) = exphub(&["sessions", "import", "--replace", dir], &pg.url);
    assert!(ok && out.contains("2 imported"), "{out}");
    assert_eq!(stored(&pg, SESSION).await.unwrap().version, 2);

    let dst = TempDir::new("dump");
    let (ok, out) = exphub(&["sessions", "dump", dst.path().to_str().unwrap()], &pg.url);
    assert!(ok && out.contains("2 session(s) written"), "{out}");
    for id in [SESSION, "0the4se55n"] {
        let name = format!("{id}.json");
        assert_eq!(load(&dst.path().join(&name)), load(&src.path().join(&name)), "{name} round trips");
    }

    // A single node without a database serves the dump.
    let srv = TestServer::start_in(dst).await;
    let mut e = experimenter(&srv.base).await;
    let mut ids = listed(&mut e).await;
    ids.sort();
    assert_eq!(ids, vec!["0the4se55n".to_owned(), SESSION.to_owned()]);
    e.close().await;
    srv.stop().await;
}

/// The compare-and-set of session writes, at the SQL level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_writes_compare_and_set_on_the_version() {
    let _serial = SERIAL.lock().await;
    let pg = Pg::start(false);
    let d = db(&pg).await;
    let s: Session = serde_json::from_value(session_json(SESSION)).unwrap();
    assert_eq!(d.write_session(&s, Some(0), "X").await.unwrap(), Some(1), "a new session");
    assert_eq!(d.write_session(&s, Some(0), "X").await.unwrap(), None, "its id is taken");
    let mut a = s.clone();
    a.title = "A".into();
    assert_eq!(d.write_session(&a, Some(1), "X").await.unwrap(), Some(2), "from the current version");
    let mut stale = s.clone();
    stale.title = "stale".into();
    assert_eq!(d.write_session(&stale, Some(1), "Y").await.unwrap(), None, "from an older version: refused");
    assert_eq!(d.session(SESSION).await.unwrap().unwrap().session.title, "A", "the newer version stays");
    // A small change from the stale copy is re-applied to the current version.
    let w = d
        .write_change(stale, 1, |s| s.description = "changed".into(), "Y")
        .await
        .unwrap()
        .expect("written after a re-read");
    assert_eq!((w.version, w.session.title.as_str(), w.session.description.as_str()), (3, "A", "changed"));
    assert_eq!(d.session(SESSION).await.unwrap().unwrap(), w);
    assert_eq!(d.write_session(&s, None, "import").await.unwrap(), Some(4), "unconditionally");
    assert!(d.delete_session(SESSION, "X").await.unwrap());
    assert!(!d.delete_session(SESSION, "X").await.unwrap(), "already gone");
    assert!(d.write_change(s, 4, |_| {}, "X").await.unwrap().is_none(), "a deleted session is not brought back");
}
