//! Cluster test support: three real `exphub serve` processes (A, B, C) over a throwaway
//! PostgreSQL (`pg.rs`), each with its own sessions directory, internal API and UDP port range,
//! so that an answer's candidates tell which node answered. Included by the cluster test files
//! with `#[path]`, beside `common` and `pg`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::proc::{spawn, Proc};
use crate::common::*;
use crate::pg::Pg;
use exphub::cluster::Db;
use exphub_client::{Client, ClientOptions, Role};
use serde_json::Value;

pub const SECRET: &str = "cluster-test-secret-0123456789";

/// One test at a time: each runs a database and three servers.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Node {
    pub proc: Proc,
    pub id: String,
    pub ports: (u16, u16),
    pub log: PathBuf,
    pub dir: TempDir,
}

impl Node {
    pub fn base(&self) -> &str {
        &self.proc.base
    }
    /// The node's log without its colours.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // ESC [ ... m
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// UDP ranges of 100 ports for A, B, C at a random base (other tests may run beside these).
pub fn port_ranges() -> [(u16, u16); 3] {
    let base = 20_000 + (uuid::Uuid::new_v4().as_u128() % 90) as u16 * 100;
    [0u16, 1, 2].map(|i| (base + i * 1000, base + i * 1000 + 99))
}

/// Starts node `id` with these sessions.
pub fn node(pg: &Pg, id: &str, ports: (u16, u16), capacity: f32, sessions: &[Value]) -> Node {
    node_with(pg, id, ports, capacity, sessions, &[])
}

/// Starts node `id` with these sessions (put into the database, where cluster nodes load them
/// from, unless already there; also written to its sessions directory) and extra `exphub serve` arguments.
pub fn node_with(pg: &Pg, id: &str, ports: (u16, u16), capacity: f32, sessions: &[Value], extra: &[&str]) -> Node {
    seed(pg, sessions);
    let dir = TempDir::new(&format!("cluster-{id}"));
    for s in sessions {
        write_session(dir.path(), s);
    }
    let log = dir.path().join("server.log");
    let proc = spawn(serve_command(pg, id, ports, capacity, dir.path(), extra), &log);
    Node { proc, id: id.to_owned(), ports, log, dir }
}

/// Puts `sessions` into the cluster database, keeping a session already there (from a thread of
/// its own, so that synchronous helpers can call it inside a test's runtime).
pub fn seed(pg: &Pg, sessions: &[Value]) {
    if sessions.is_empty() {
        return;
    }
    let url = pg.url.clone();
    let sessions: Vec<exphub::session::Session> =
        sessions.iter().map(|v| serde_json::from_value(v.clone()).expect("a test session")).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("the test connects to its database");
            for s in &sessions {
                db.write_session(s, Some(0), "test").await.expect("a session seeded");
            }
        })
    })
    .join()
    .expect("seeding the database");
}

/// The command line of node `id` over sessions directory `dir`.
pub fn serve_command(pg: &Pg, id: &str, ports: (u16, u16), capacity: f32, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exphub"));
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
        .arg(dir)
        .args(["--cluster-db", &pg.url, "--node-id", id, "--internal-addr", "127.0.0.1:0"])
        .args(["--udp-ports", &format!("{}-{}", ports.0, ports.1)])
        .args(["--capacity-millicores", &capacity.to_string()])
        // Toy capacities (a few experiments per node): placement by reservations alone, not
        // by the CPU these debug-build nodes measure on a shared machine.
        .arg("--ignore-measured-cpu")
        .args(extra)
        .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
        .env("EXPHUB_CLUSTER_SECRET", SECRET)
        .env("EXPHUB_LOG", "info");
    cmd
}

/// One test's cluster: its turn (see [`SERIAL`]), a database and nodes A, B and C.
pub async fn three(capacity: f32, sessions: &[Value]) -> (tokio::sync::MutexGuard<'static, ()>, Pg, [Node; 3]) {
    let serial = SERIAL.lock().await;
    init_tracing();
    let pg = Pg::start(false);
    let [ra, rb, rc] = port_ranges();
    let nodes = [
        node(&pg, "A", ra, capacity, sessions),
        node(&pg, "B", rb, capacity, sessions),
        node(&pg, "C", rc, capacity, sessions),
    ];
    (serial, pg, nodes)
}

/// The ports of the host candidates in an answer's SDP.
pub fn candidate_ports(answer: &Value) -> Vec<u16> {
    answer["data"]["sdp"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .filter_map(|l| l.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

pub fn within(ports: &[u16], range: (u16, u16)) -> bool {
    !ports.is_empty() && ports.iter().all(|p| (range.0..=range.1).contains(p))
}

pub async fn participant_via(base: &str, sid: &str, pid: &str, opts: ClientOptions) -> Client {
    Client::connect(base, Role::Participant { session_id: sid.into(), participant_id: pid.into() }, opts)
        .await
        .unwrap_or_else(|e| panic!("participant {pid} connects via {base}: {e}"))
}

pub async fn db(pg: &Pg) -> Db {
    Db::connect(&pg.url).await.expect("the test connects to its database")
}

/// The reply to a request that answers SUCCESS or ERROR (other messages are skipped).
pub async fn outcome(c: &mut Client) -> Value {
    loop {
        let m = c.recv(T).await.expect("a reply");
        if m["type"] == "SUCCESS" || m["type"] == "ERROR" {
            return m;
        }
    }
}

/// Raw SQL for what no exphub statement does (ageing a node's heartbeat).
pub async fn sql(pg: &Pg, statement: &str) {
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(statement).await.unwrap();
}
