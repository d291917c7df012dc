//! Cluster failover (`--cluster-db`): a dead owner's experiments move on, a zombie fences
//! itself, a database outage leaves running media alone. A throwaway PostgreSQL and three
//! real `exphub serve` processes (A, B, C; see `common/cluster.rs`), the owner killed with
//! SIGKILL or paused with SIGSTOP, the database stopped and started again. Every process and
//! the database are stopped and removed when a test ends, also when it fails.
//!
//! - T5 `a_killed_owners_running_experiment_resumes_on_another_node`
//! - T6 `a_paused_owner_accepts_no_offer_after_the_takeover_and_ends_its_copy`
//! - T7 `running_media_does_not_notice_a_database_outage`
//! - `on_node_failure_end_ends_the_experiment_instead`
//! - the probe: `a_stale_owner_that_answers_its_probe_keeps_its_experiment`

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use cluster::*;
use common::*;
use exphub::media::Kind;
use exphub_client::{Client, ClientOptions, Role};
use pg::Pg;
use serde_json::{json, Value};

const VIDEO: Kind = Kind::Video;

/// The test session, recording.
fn recorded_session() -> Value {
    let mut s = session_json(SESSION);
    s["record"] = json!(true);
    s
}

/// One value of a query (for what no exphub statement reads).
async fn query_i64(pg: &Pg, statement: &str) -> Option<i64> {
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    client.query_opt(statement, &[]).await.ok().flatten().and_then(|r| r.get(0))
}

/// Waits until the owner has written the run's START to the database.
async fn wait_start_written(pg: &Pg) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let q = format!("SELECT start_unix_us FROM placements WHERE session_id = '{SESSION}'");
        if query_i64(pg, &q).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the owner never wrote the experiment's START");
}

/// A participant's offer via `base`, retried (as exphub's page does on reconnect) until it is
/// answered or `within` has passed.
async fn reconnect(base: &str, pid: &str, opts: ClientOptions, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    let role = || Role::Participant { session_id: SESSION.into(), participant_id: pid.into() };
    loop {
        match Client::connect(base, role(), opts.clone()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %e, "re-offer refused; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("participant {pid} could not re-offer via {base} within {within:?}: {e}"),
        }
    }
}

/// The experiment running on B with P0 and P1 (connected to B) exchanging media: the
/// experimenter, the participants, their recorders and players.
struct Running {
    exp: Client,
    parts: Vec<Client>,
    recs: Vec<Recorder>,
    players: Vec<tokio::task::JoinHandle<()>>,
}

async fn running_on(owner: &Node, pg: &Pg) -> Running {
    let mut exp = experimenter(owner.base()).await;
    let ok = request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    assert_success(&ok, "JOIN_EXPERIMENT");
    let placed = db(pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!((placed.node_id.as_str(), placed.epoch), (owner.id.as_str(), 1));
    let (mut parts, mut recs) = (vec![], vec![]);
    for pid in &PARTICIPANTS[..2] {
        let (rec, opts) = recorder();
        parts.push(participant_via(owner.base(), SESSION, pid, opts).await);
        recs.push(rec);
    }
    let started = request(&mut exp, "START_EXPERIMENT", json!({}), "SUCCESS").await;
    assert_success(&started, "START_EXPERIMENT");
    let players = parts.iter().map(|p| p.publish(media())).collect();
    for (rec, from) in [(&recs[1], PARTICIPANTS[0]), (&recs[0], PARTICIPANTS[1])] {
        assert!(
            wait_media(rec, from, VIDEO, 30, Duration::from_secs(30)).await,
            "{from}'s video flows through the owner"
        );
    }
    wait_start_written(pg).await;
    Running { exp, parts, recs, players }
}

fn signal(node: &Node, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    let r = unsafe { libc::kill(node.proc.child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "signal {sig} to node {}", node.id);
}

/// The event log lines of `node`'s recording of the test session.
fn events(node: &Node) -> Vec<Value> {
    let text = std::fs::read_to_string(node.dir.path().join(SESSION).join("events.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

async fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// T5: the experiment runs (and records) on B with two participants exchanging media; B is
/// killed with SIGKILL. The participants re-offer via A: A finds B's heartbeat stale, its
/// probe unanswered, and places the experiment again (epoch 2, on A or C). Both are re-seated
/// in the RUNNING experiment, media flows between them again, the new owner's event log
/// opens the new run with `experiment_failover`, and the new run is recorded there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owners_running_experiment_resumes_on_another_node() {
    let (_serial, pg, [a, mut b, c]) = three(10_000.0, &[recorded_session()]).await;
    let run = running_on(&b, &pg).await;
    b.proc.child.kill().unwrap(); // SIGKILL
    b.proc.child.wait().unwrap();
    for h in run.players {
        h.abort();
    }
    let (mut parts, mut recs, mut players) = (vec![], vec![], vec![]);
    for pid in &PARTICIPANTS[..2] {
        let (rec, opts) = recorder();
        let p = reconnect(a.base(), pid, opts, Duration::from_secs(40)).await;
        players.push(p.publish(media()));
        parts.push(p);
        recs.push(rec);
    }
    let owner = db(&pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!(owner.epoch, 2, "{owner:?}");
    let new = [&a, &c].into_iter().find(|n| n.id == owner.node_id).expect("A or C took it over");
    for p in &parts {
        assert!(within(&candidate_ports(&p.offer_response), new.ports), "answered by the new owner {}", new.id);
    }
    for (rec, from) in [(&recs[1], PARTICIPANTS[0]), (&recs[0], PARTICIPANTS[1])] {
        assert!(wait_media(rec, from, VIDEO, 30, Duration::from_secs(30)).await, "{from}'s video flows on {}", new.id);
    }
    assert!(a.log_text().contains("owner B is dead; experiment"), "A's decision is logged:\n{}", a.log_text());
    let failover =
        poll(Duration::from_secs(10), || events(new).into_iter().find(|e| e["type"] == "experiment_failover"))
            .await
            .unwrap_or_else(|| panic!("experiment_failover in {}'s event log: {:?}", new.id, events(new)));
    assert_eq!(failover["from_node"], "B", "{failover}");
    assert_eq!(failover["to_node"], new.id.as_str(), "{failover}");
    assert_eq!(failover["epoch"], 2, "{failover}");
    assert!(failover["gap_ms"].as_i64().is_some_and(|g| g >= 6000), "the gap covers the stale heartbeat: {failover}");
    let first = &events(new)[0];
    assert_eq!(first["type"], "experiment_failover", "it opens the new run's log");
    assert!(events(new).iter().any(|e| e["type"] == "experiment_started"), "the run resumes RUNNING");
    let manifest = new.dir.path().join(SESSION).join("manifest.json");
    let files = poll(Duration::from_secs(20), || {
        let m: Value = serde_json::from_slice(&std::fs::read(&manifest).ok()?).ok()?;
        let files = m["files"].as_array()?.len();
        (files >= 2).then_some(files)
    })
    .await;
    assert!(
        files.is_some(),
        "the new run records on {}: {}",
        new.id,
        std::fs::read_to_string(&manifest).unwrap_or_default()
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let start = query_i64(&pg, &format!("SELECT start_unix_us FROM placements WHERE session_id = '{SESSION}'")).await;
    assert!(start.is_some());
    assert_eq!(m["runs"][0]["start_us"].as_i64(), start, "the run's START is the original one: {m}");
    for h in players {
        h.abort();
    }
    for p in parts {
        p.close().await;
    }
    drop(run.parts);
    drop(run.exp);
}

/// T6: B is paused (SIGSTOP) while its experiment runs; meanwhile P1 re-offers via A, which
/// takes the experiment over. B is resumed (SIGCONT): from then on it answers no offer for the
/// session itself (refused while fenced, then forwarded to the new owner), it ends its copy,
/// and P0, still connected to it, is told (`EXPERIMENT_ENDED`, reason `moved`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_accepts_no_offer_after_the_takeover_and_ends_its_copy() {
    let (_serial, pg, [a, b, c]) = three(10_000.0, &[recorded_session()]).await;
    let mut run = running_on(&b, &pg).await;
    signal(&b, libc::SIGSTOP);
    let paused = Instant::now();
    // Past the 6 s a heartbeat may be stale before anyone calls B dead.
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    let (rec1, opts1) = recorder();
    let p1 = reconnect(a.base(), PARTICIPANTS[1], opts1, Duration::from_secs(20)).await;
    let owner = db(&pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!(owner.epoch, 2, "{owner:?}");
    let new = [&a, &c].into_iter().find(|n| n.id == owner.node_id).expect("A or C took it over");
    assert!(within(&candidate_ports(&p1.offer_response), new.ports), "P1 is on the new owner");
    let left = Duration::from_secs(10).saturating_sub(paused.elapsed());
    tokio::time::sleep(left).await;
    signal(&b, libc::SIGCONT);

    // Offers to B for the session from now on: none may be answered by B itself.
    let (mut zombie, mut forwarded, mut refused) = (0, 0, 0);
    let (rec0, opts0) = recorder();
    let mut p0 = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && forwarded == 0 {
        let role = Role::Participant { session_id: SESSION.into(), participant_id: PARTICIPANTS[0].into() };
        match Client::connect(b.base(), role, opts0.clone()).await {
            Ok(cl) if within(&candidate_ports(&cl.offer_response), b.ports) => {
                zombie += 1;
                cl.close().await;
            }
            Ok(cl) => {
                forwarded += 1;
                p0 = Some(cl);
            }
            Err(_) => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    eprintln!("offers via B after SIGCONT: answered by B {zombie}, refused {refused}, forwarded {forwarded}");
    assert_eq!(zombie, 0, "B answered an offer for an experiment it no longer owns");
    assert_eq!(forwarded, 1, "B forwards the session's offers to the new owner once it has re-checked");
    // B ended its copy and told P0, still connected to it.
    let (ended, _) = run.parts[0].recv_type("EXPERIMENT_ENDED", Duration::from_secs(20)).await.expect("P0 is told");
    assert_eq!(ended["data"]["reason"], "moved", "{ended}");
    assert!(b.log_text().contains("ending this node's copy"), "{}", b.log_text());
    // P0 and P1 see each other on the new owner.
    let p0 = p0.unwrap();
    let players = vec![p0.publish(media()), p1.publish(media())];
    assert!(wait_media(&rec1, PARTICIPANTS[0], VIDEO, 30, Duration::from_secs(30)).await, "P1 sees P0 on {}", new.id);
    assert!(wait_media(&rec0, PARTICIPANTS[1], VIDEO, 30, Duration::from_secs(30)).await, "P0 sees P1 on {}", new.id);
    for h in players.into_iter().chain(std::mem::take(&mut run.players)) {
        h.abort();
    }
    for cl in [p0, p1, run.exp].into_iter().chain(run.parts) {
        cl.close().await;
    }
}

/// T7: the database stops for 10 s while the experiment runs on B. The frames P1 receives
/// from P0 keep coming at the rate of the window before (reported, asserted ≥ 50 %); a
/// placement asked for meanwhile gets a clear error; once B's last heartbeat is 4 s old, B
/// refuses new participants' offers (self-fenced). After the restart heartbeats and
/// placements work again, B still owns its experiment (its epoch did not move) and takes
/// offers again, and media still flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_media_does_not_notice_a_database_outage() {
    const OTHER: &str = "f41l0ver01";
    let (_serial, pg, [a, b, _c]) = three(10_000.0, &[recorded_session(), session_json(OTHER)]).await;
    let run = running_on(&b, &pg).await;
    let window = Duration::from_secs(8);
    let before0 = frames(&run.recs[1], PARTICIPANTS[0]);
    tokio::time::sleep(window).await;
    let before = frames(&run.recs[1], PARTICIPANTS[0]) - before0;

    let pg = std::sync::Arc::new(pg);
    let stopping = pg.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await.unwrap();
    let outage = Instant::now();
    let during0 = frames(&run.recs[1], PARTICIPANTS[0]);
    let mut ea = experimenter(a.base()).await;
    ea.send("CREATE_EXPERIMENT", json!({"session_id": OTHER})).await.unwrap();
    let m = outcome(&mut ea).await;
    assert_eq!(m["type"], "ERROR", "{m}");
    assert_eq!(m["data"]["code"], 503, "{m}");
    assert!(m["data"]["description"].as_str().unwrap().contains("try again"), "a clear error: {m}");
    // A session edit is refused as clearly: the designs live in the database.
    let mut edit = session_json(OTHER);
    edit["title"] = json!("Edited during the outage");
    ea.send("SAVE_SESSION", edit).await.unwrap();
    let m = outcome(&mut ea).await;
    assert_eq!((m["type"].as_str(), m["data"]["code"].as_i64()), (Some("ERROR"), Some(503)), "a session edit: {m}");
    // Self-fenced 4 s after the last heartbeat: a new participant's offer to B is refused.
    tokio::time::sleep(Duration::from_millis(5_500).saturating_sub(outage.elapsed())).await;
    let role = Role::Participant { session_id: SESSION.into(), participant_id: PARTICIPANTS[2].into() };
    let refused = Client::connect(b.base(), role.clone(), ClientOptions::default()).await;
    let refused = refused.err().map(|e| e.to_string()).unwrap_or_else(|| "answered".into());
    assert!(refused.contains("503") && refused.contains("try again"), "B refuses while fenced: {refused}");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
    let during = frames(&run.recs[1], PARTICIPANTS[0]) - during0;
    let outage_len = outage.elapsed();
    let starting = pg.clone();
    tokio::task::spawn_blocking(move || starting.start_again()).await.unwrap();

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let ratio = rate(during, outage_len) / rate(before, window);
    eprintln!(
        "frames P0 → P1: {:.1}/s before, {:.1}/s during the database outage: ratio {ratio:.2}",
        rate(before, window),
        rate(during, outage_len)
    );
    assert!(before > 0 && ratio >= 0.5, "media kept flowing during the outage: ratio {ratio:.2}");

    // Heartbeats and placements work again; B still owns its experiment and takes offers.
    let d = db(&pg).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = d.nodes().await.unwrap_or_default();
        if nodes.len() == 3 && nodes.iter().all(|n| n.alive) {
            break;
        }
        assert!(Instant::now() < deadline, "heartbeats after the restart: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = d.session(OTHER).await.unwrap().expect("the session is in the database");
    assert_ne!(stored.session.title, "Edited during the outage", "the refused edit changed nothing");
    ea.send("CREATE_EXPERIMENT", json!({"session_id": OTHER})).await.unwrap();
    assert_success(&outcome(&mut ea).await, "JOIN_EXPERIMENT");
    let p2 = reconnect(b.base(), PARTICIPANTS[2], ClientOptions::default(), Duration::from_secs(20)).await;
    assert!(within(&candidate_ports(&p2.offer_response), b.ports), "B answers its experiment's offers again");
    let owner = d.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!((owner.node_id.as_str(), owner.epoch), ("B", 1), "no takeover happened");
    let after0 = frames(&run.recs[1], PARTICIPANTS[0]);
    assert!(
        poll(Duration::from_secs(10), || (frames(&run.recs[1], PARTICIPANTS[0]) > after0 + 30).then_some(()))
            .await
            .is_some(),
        "media still flows after the outage"
    );
    for h in run.players {
        h.abort();
    }
    for cl in [p2, ea, run.exp].into_iter().chain(run.parts) {
        cl.close().await;
    }
}

/// A session with `"on_node_failure": "end"`: after its node is killed, the first re-offer
/// places it again, the new owner marks it ended, and participants' offers get "The
/// experiment has ended.".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_node_failure_end_ends_the_experiment_instead() {
    let mut s = session_json(SESSION);
    s["on_node_failure"] = json!("end");
    let (_serial, pg, [a, mut b, _c]) = three(10_000.0, &[s]).await;
    let run = running_on(&b, &pg).await;
    b.proc.child.kill().unwrap();
    b.proc.child.wait().unwrap();
    for h in run.players {
        h.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let role = || Role::Participant { session_id: SESSION.into(), participant_id: PARTICIPANTS[0].into() };
    let refusal = loop {
        match Client::connect(a.base(), role(), ClientOptions::default()).await {
            Ok(_) => panic!("an ended experiment took a participant"),
            Err(e) if e.to_string().contains("has ended") => break e.to_string(),
            Err(e) => {
                assert!(Instant::now() < deadline, "no end answer within 40 s: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    assert!(refusal.contains("409"), "{refusal}");
    let owner = db(&pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!(owner.epoch, 2, "{owner:?}");
}

/// An owner whose heartbeat looks stale but which answers the router's direct probe keeps its
/// experiment: only its database link lags, so the offer is forwarded to it, no takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_that_answers_its_probe_keeps_its_experiment() {
    let (_serial, pg, [a, b, _c]) = three(10_000.0, &[session_json(SESSION)]).await;
    let mut exp = experimenter(b.base()).await;
    request(&mut exp, "CREATE_EXPERIMENT", json!({"session_id": SESSION}), "SUCCESS").await;
    let mut parts = vec![];
    // B's own heartbeat refreshes its row every second: age it right before each offer until
    // A has seen it stale (and probed) at least once.
    for pid in PARTICIPANTS.iter().cycle().take(10) {
        sql(&pg, "UPDATE nodes SET last_seen = now() - interval '1 minute' WHERE node_id = 'B'").await;
        let p = participant_via(a.base(), SESSION, pid, ClientOptions::default()).await;
        assert!(within(&candidate_ports(&p.offer_response), b.ports), "B answered");
        parts.push(p);
        if a.log_text().contains("answers its probe") {
            break;
        }
    }
    assert!(a.log_text().contains("answers its probe"), "A probed B:\n{}", a.log_text());
    let owner = db(&pg).await.owner(SESSION).await.unwrap().expect("placed");
    assert_eq!((owner.node_id.as_str(), owner.epoch), ("B", 1), "no takeover");
    for p in parts {
        p.close().await;
    }
    exp.close().await;
}
