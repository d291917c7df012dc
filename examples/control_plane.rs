//! Control-plane load tool: is the one hub task the bottleneck of a node that runs many small
//! experiments at once?
//!
//! ```text
//! cargo build --release --bin exphub --example control_plane
//! cargo run --release --example control_plane -- [--experiments 200] [--participants 2] \
//!     [--media 0] [--rate 1] [--seconds 20] [--request GET_SESSION|PING]
//! ```
//!
//! It writes `--experiments` sessions of `--participants` participants each, starts the real
//! server (`target/release/exphub serve` on 127.0.0.1, a separate process, killed when the tool
//! ends), creates every experiment (one experimenter connection per ten experiments, as a lab
//! with several experimenters would), and connects every participant as a real WebRTC peer
//! (main connection and data channel). The first `--media` experiments are also started and
//! their participants publish the fixture media (tests/fixtures), forwarded to each other;
//! the others stay in the waiting room, data channel only.
//!
//! Then, for `--seconds`, every participant sends `--request` (`GET_SESSION` of its own
//! session, or `PING`) `--rate` times a second at a random phase, waits for the reply and
//! records the round trip. At the end it prints:
//!
//! - the round trips p50/p95/p99/max and how many requests were answered;
//! - the hub task's busy fraction: delta of `exphub_hub_busy_seconds_total` over the wall
//!   time (1.0 = the hub task never waited for input: the control plane is saturated);
//! - inputs handled per second (`exphub_hub_inputs_total`) and the deepest input queue seen
//!   (`exphub_hub_queue_depth`, sampled every 200 ms);
//! - the server process's CPU (utime+stime from /proc, % of one core).
//!
//! ## Cluster mode
//!
//! ```text
//! cargo run --release --example control_plane -- --cluster [--experiments 300] [--at-once 4] [--offers 300] \
//!     [--idle-seconds 10]
//! ```
//!
//! Starts a throwaway PostgreSQL (Debian's `postgresql`, fsync on; see `tests/common/pg.rs`) and
//! three real nodes with `--cluster-db`, every session in the database. Then:
//!
//! - placements end to end: experimenters (one per ten experiments, spread over the nodes,
//!   `--at-once` of them working at a time) create every experiment; each `CREATE_EXPERIMENT`
//!   → `SUCCESS` is timed (placement in the database, then the session write, as on one node);
//!   it prints placements per second and the p50/p95/p99 round trip;
//! - the added latency of a routed offer: `--offers` participant `POST /offer`s for a placed
//!   experiment, alternately to its own node and to another node, which forwards it. The
//!   participant id is not in the session, so the owner refuses it at once and the difference
//!   is the routing alone (owner look-up, signed internal request), not ICE gathering.
//!
//! - where a placement's time goes: the placement's own database round trip (`exphub_place`,
//!   called from the tool, one at a time) and the two ways a node writes a session durably
//!   (the whole file: temp, fsync, rename, directory fsync; one journal line: append, fdatasync),
//!   timed in the sessions directory; the rest of the round trip is the hub and the network;
//! - the control plane's cost: each node's CPU and PostgreSQL's committed transactions per
//!   second per node (`pg_stat_database.xact_commit`) over `--idle-seconds`, with no experiment
//!   and again with every experiment placed, beside a single node without `--cluster-db`;
//! - balance: 300 placements of a mix of costs on three registered nodes with no preferred
//!   node (two random choices, the less loaded), then max/min reserved load.
//!
//! All traffic is on 127.0.0.1; every step has a timeout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exphub_client::{Client, ClientOptions, Media, Role};
use serde_json::{json, Value};

#[path = "../tests/common/pg.rs"]
mod pg;
#[path = "../tests/common/child.rs"]
mod proc;

const PASSWORD: &str = "control-plane-password";
const T: Duration = Duration::from_secs(30);
/// Experiments per experimenter connection.
const PER_EXPERIMENTER: usize = 10;

type Res<T> = Result<T, String>;

struct Args {
    experiments: usize,
    participants: usize,
    media: usize,
    rate: f64,
    seconds: u64,
    request: String,
    concurrency: usize,
    server_bin: PathBuf,
    cluster: bool,
    at_once: usize,
    offers: usize,
    idle_seconds: u64,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        experiments: 200,
        participants: 2,
        media: 0,
        rate: 1.0,
        seconds: 20,
        request: "GET_SESSION".into(),
        concurrency: 8,
        server_bin: PathBuf::from("target/release/exphub"),
        cluster: false,
        at_once: 4,
        offers: 300,
        idle_seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--experiments" => a.experiments = num(value()?)?.max(1),
            "--participants" => a.participants = num(value()?)?.max(1),
            "--media" => a.media = num(value()?)?,
            "--rate" => a.rate = value()?.parse::<f64>().map_err(|e| format!("--rate: {e}"))?.clamp(0.01, 50.0),
            "--seconds" => a.seconds = num(value()?)?.max(1) as u64,
            "--request" => a.request = value()?,
            "--concurrency" => a.concurrency = num(value()?)?.max(1),
            "--server-bin" => a.server_bin = PathBuf::from(value()?),
            "--cluster" => a.cluster = true,
            "--at-once" => a.at_once = num(value()?)?.max(1),
            "--offers" => a.offers = num(value()?)?.max(1),
            "--idle-seconds" => a.idle_seconds = num(value()?)?.max(1) as u64,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !["GET_SESSION", "PING"].contains(&a.request.as_str()) {
        return Err(format!("--request must be GET_SESSION or PING, not {}", a.request));
    }
    Ok(a)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server process (`tests/common/proc.rs`: killed and reaped on drop).
struct Server(proc::Proc);

impl Server {
    fn start(bin: &Path, sessions: &Path, extra: &[String]) -> Res<Self> {
        if !bin.exists() {
            return Err(format!("{} not found: cargo build --release --bin exphub", bin.display()));
        }
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
            .arg(sessions)
            .args(extra)
            .env("EXPHUB_CLUSTER_SECRET", "control-plane-tool-secret")
            .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
            .env("EXPHUB_LOG", "warn")
            .env_remove("EXPHUB_CONFIG")
            .env_remove("EXPHUB_CLUSTER_DB")
            .stdin(Stdio::null());
        Ok(Server(proc::spawn(cmd, &sessions.join("server.log"))))
    }

    fn base(&self) -> &str {
        &self.0.base
    }

    /// utime + stime of the server, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let pid = self.0.child.id();
        let tck = 100.0; // USER_HZ on Linux
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
        exphub::cluster::cpu::stat_ticks(&s).unwrap_or(0) as f64 / tck
    }
}

/// A metric's value from Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(base: &str) -> Res<String> {
    let (status, body) = exphub_client::get(base, "/metrics").await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sends a request and waits for the reply of type `want`, retrying after a rate-limit refusal.
async fn ask(c: &mut Client, kind: &str, data: Value, want: &str) -> Res<Value> {
    for _ in 0..40 {
        c.send(kind, data.clone()).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + T;
        loop {
            let m =
                c.recv(deadline.saturating_duration_since(Instant::now())).await.map_err(|e| format!("{kind}: {e}"))?;
            if m["type"] == want {
                return Ok(m);
            }
            if m["type"] == "ERROR" {
                if m["data"]["code"] == 429 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    break;
                }
                return Err(format!("{kind}: {m}"));
            }
        }
    }
    Err(format!("{kind}: still refused after 40 tries"))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn run(args: Args) -> Res<()> {
    let dir = TempDir(std::env::temp_dir().join(format!("exphub-control-plane-{}", uuid::Uuid::new_v4().simple())));
    std::fs::create_dir_all(&dir.0).map_err(|e| e.to_string())?;
    let ids: Vec<String> = (0..args.experiments).map(|i| format!("{:010x}", 0xc0_0000_0000u64 + i as u64)).collect();
    let pids = |sid: &str| -> Vec<String> { (0..args.participants).map(|k| format!("{sid}p{k}")).collect() };
    for sid in &ids {
        let s = exphub_client::session_json(sid, &pids(sid));
        std::fs::write(dir.0.join(format!("{sid}.json")), s.to_string()).map_err(|e| e.to_string())?;
    }
    if args.cluster {
        return run_cluster(&args, &dir, &ids, &pids).await;
    }
    let server = Server::start(&args.server_bin, &dir.0, &[])?;
    let base = server.base().to_owned();
    println!(
        "server at {base}; {} experiments x {} participants ({} with media)",
        args.experiments, args.participants, args.media
    );

    // Experiments, created by several experimenters at once.
    let t0 = Instant::now();
    let quiet = ClientOptions { auto_subscribe: false, ..Default::default() };
    let mut creators = vec![];
    for chunk in ids.chunks(PER_EXPERIMENTER) {
        let (base, chunk, opts) = (base.clone(), chunk.to_vec(), quiet.clone());
        creators.push(tokio::spawn(async move {
            let mut e = Client::connect(&base, Role::Experimenter { password: PASSWORD.into() }, opts)
                .await
                .map_err(|e| format!("experimenter connects: {e}"))?;
            for sid in &chunk {
                ask(&mut e, "CREATE_EXPERIMENT", json!({"session_id": sid}), "SUCCESS").await?;
            }
            Ok::<_, String>((chunk, e))
        }));
    }
    let mut experimenters = vec![];
    for c in creators {
        experimenters.push(c.await.map_err(|e| e.to_string())??);
    }
    println!("{} experiments created in {:.1} s", ids.len(), t0.elapsed().as_secs_f64());

    // Participants, `--concurrency` connecting at a time.
    let t0 = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut joins = vec![];
    for sid in &ids {
        for pid in pids(sid) {
            let (base, sid, gate, opts) = (base.clone(), sid.clone(), gate.clone(), quiet.clone());
            joins.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let role = Role::Participant { session_id: sid.clone(), participant_id: pid.clone() };
                let c = tokio::time::timeout(T, Client::connect(&base, role, opts))
                    .await
                    .map_err(|_| format!("{pid}: connect timed out"))?
                    .map_err(|e| format!("{pid}: {e}"))?;
                Ok::<_, String>((sid, c))
            }));
        }
    }
    let mut parts = vec![];
    let mut failed = vec![];
    for j in joins {
        match j.await.map_err(|e| e.to_string())? {
            Ok(p) => parts.push(p),
            Err(e) => failed.push(e),
        }
    }
    println!(
        "{} participants connected in {:.1} s, {} failed{}",
        parts.len(),
        t0.elapsed().as_secs_f64(),
        failed.len(),
        failed.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );

    // Media: start the first `--media` experiments; their participants publish.
    let media_ids: Vec<String> = ids.iter().take(args.media).cloned().collect();
    let mut players = vec![];
    if !media_ids.is_empty() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let media = Arc::new(
            Media::load(&fixtures.join("clip-640x480-vp8.ivf"), &fixtures.join("clip-opus.ogg"))
                .map_err(|e| e.to_string())?,
        );
        for (chunk, e) in experimenters.iter_mut() {
            for sid in chunk.iter().filter(|s| media_ids.contains(s)) {
                ask(e, "LEAVE_EXPERIMENT", json!({}), "SUCCESS").await?;
                ask(e, "JOIN_EXPERIMENT", json!({"session_id": sid}), "SUCCESS").await?;
                ask(e, "START_EXPERIMENT", json!({}), "SUCCESS").await?;
            }
        }
        for (sid, p) in &parts {
            if media_ids.contains(sid) {
                players.push(p.publish(media.clone()));
            }
        }
        println!("{} experiments started, {} participants publishing", media_ids.len(), players.len());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The measurement.
    let rtts = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let before = scrape(&base).await?;
    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(args.seconds);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tasks = vec![];
    for (i, (sid, mut c)) in parts.into_iter().enumerate() {
        let (rtts, errors, kind) = (rtts.clone(), errors.clone(), args.request.clone());
        let phase = period.mul_f64((i as f64 * 0.618_034) % 1.0);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(phase).await;
            let mut next = Instant::now();
            while Instant::now() < end {
                let (data, want) = match kind.as_str() {
                    "PING" => (json!({}), "PONG"),
                    _ => (json!({"session_id": sid}), "SESSION"),
                };
                let sent = Instant::now();
                let ok = c.send(&kind, data).await.is_ok() && c.recv_type(want, T).await.is_ok();
                if ok {
                    rtts.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                next += period;
                tokio::time::sleep_until(next.into()).await;
            }
            c
        }));
    }
    let mut max_depth = 0.0f64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(m) = scrape(&base).await {
            max_depth = max_depth.max(metric(&m, "exphub_hub_queue_depth"));
        }
    }
    let mut clients = vec![];
    for t in tasks {
        if let Ok(c) = t.await {
            clients.push(c);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let after = scrape(&base).await?;
    let cpu = server.cpu_seconds() - cpu0;
    let busy = metric(&after, "exphub_hub_busy_seconds_total") - metric(&before, "exphub_hub_busy_seconds_total");
    let inputs = metric(&after, "exphub_hub_inputs_total") - metric(&before, "exphub_hub_inputs_total");
    let mut v = rtts.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    println!(
        "{} {} round trips in {wall:.1} s ({:.0}/s), {} failed: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        args.request,
        v.len() as f64 / wall,
        errors.load(std::sync::atomic::Ordering::Relaxed),
        quantile(&v, 0.5),
        quantile(&v, 0.95),
        quantile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "hub task busy {:.1} % of the time ({:.0} inputs/s, {:.0} us each); deepest input queue seen {max_depth:.0}; server CPU {:.0} % of one core",
        busy / wall * 100.0,
        inputs / wall,
        if inputs > 0.0 { busy / inputs * 1e6 } else { 0.0 },
        cpu / wall * 100.0,
    );
    for p in players {
        p.abort();
    }
    for c in clients {
        c.close().await;
    }
    for (_, e) in experimenters {
        e.close().await;
    }
    drop(server);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Cluster mode (see the module docs).
async fn run_cluster(args: &Args, dir: &TempDir, ids: &[String], pids: &dyn Fn(&str) -> Vec<String>) -> Res<()> {
    let pg = pg::Pg::start(true);
    // The session designs are in the database, shared by the nodes.
    let db = exphub::cluster::Db::connect(&pg.url).await.map_err(|e| e.to_string())?;
    for sid in ids {
        let s = serde_json::from_value(exphub_client::session_json(sid, &pids(sid))).map_err(|e| e.to_string())?;
        db.write_session(&s, Some(0), "control_plane").await.map_err(|e| e.to_string())?;
    }
    balance(&db).await?;
    let mut nodes = vec![];
    for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
        let sessions = dir.0.join(name);
        std::fs::create_dir_all(&sessions).map_err(|e| e.to_string())?;
        let extra: Vec<String> = [
            "--cluster-db",
            &pg.url,
            "--node-id",
            name,
            "--internal-addr",
            "127.0.0.1:0",
            "--capacity-millicores",
            "1000000",
            "--udp-ports",
            &format!("{}-{}", 30_000 + i * 1000, 30_999 + i * 1000),
        ]
        .into_iter()
        .map(String::from)
        .collect();
        nodes.push(Server::start(&args.server_bin, &sessions, &extra)?);
    }
    let single_dir = dir.0.join("single");
    std::fs::create_dir_all(&single_dir).map_err(|e| e.to_string())?;
    let single = Server::start(&args.server_bin, &single_dir, &[])?;
    println!(
        "PostgreSQL on port {} (fsync on) and three nodes: {}; a single node: {}",
        pg.port,
        nodes.iter().map(|n| n.base()).collect::<Vec<_>>().join(" "),
        single.base()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    control_plane_cost(&pg.url, &nodes, &single, args.idle_seconds, "idle").await?;

    // Placements end to end.
    let quiet = ClientOptions { auto_subscribe: false, ..Default::default() };
    let mut experimenters = vec![];
    for (k, chunk) in ids.chunks(PER_EXPERIMENTER).enumerate() {
        let base = nodes[k % nodes.len()].base();
        let e = Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, quiet.clone())
            .await
            .map_err(|e| format!("experimenter connects: {e}"))?;
        experimenters.push((chunk.to_vec(), e));
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(args.at_once));
    let t0 = Instant::now();
    let mut tasks = vec![];
    for (chunk, mut e) in experimenters {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let mut took = vec![];
            for sid in &chunk {
                let t = Instant::now();
                ask(&mut e, "CREATE_EXPERIMENT", json!({"session_id": sid}), "SUCCESS").await?;
                took.push(ms(t.elapsed()));
            }
            Ok::<_, String>((took, e))
        }));
    }
    let mut took = vec![];
    let mut clients = vec![];
    for t in tasks {
        let (v, e) = t.await.map_err(|e| e.to_string())??;
        took.extend(v);
        clients.push(e);
    }
    let wall = t0.elapsed().as_secs_f64();
    took.sort_by(f64::total_cmp);
    println!(
        "{} placements (CREATE_EXPERIMENT -> SUCCESS, {} experimenters at once) in {wall:.2} s: {:.0}/s; p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        took.len(),
        args.at_once,
        took.len() as f64 / wall,
        quantile(&took, 0.5),
        quantile(&took, 0.95),
        quantile(&took, 0.99),
    );

    let placed = format!("{} experiments placed", took.len());
    control_plane_cost(&pg.url, &nodes, &single, args.idle_seconds, &placed).await?;
    placement_split(&db, &dir.0.join("A"), 200).await?;

    // The added latency of a routed offer.
    let sid = &ids[0];
    let owner = db.owner(sid).await.map_err(|e| e.to_string())?.ok_or("the first experiment is not placed")?;
    let own = ["A", "B", "C"].iter().position(|n| *n == owner.node_id).ok_or("unknown owner")?;
    let other = (own + 1) % nodes.len();
    let body = json!({"request": {"sdp": "v=0\r\n", "type": "offer", "user_type": "participant",
                                  "session_id": sid, "participant_id": "nobody0000"}});
    let (mut local, mut routed) = (vec![], vec![]);
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..args.offers * 2 {
        let (base, into) =
            if i % 2 == 0 { (nodes[own].base(), &mut local) } else { (nodes[other].base(), &mut routed) };
        let t = Instant::now();
        let (status, _) = exphub_client::post_json(base, "/offer", &body).await.map_err(|e| e.to_string())?;
        into.push(ms(t.elapsed()));
        statuses.insert(status);
    }
    if statuses.len() != 1 {
        return Err(format!("the owner and the router answered differently: {statuses:?}"));
    }
    local.sort_by(f64::total_cmp);
    routed.sort_by(f64::total_cmp);
    println!(
        "/offer to the owner: p50 {:.2} ms, p95 {:.2} ms; through another node: p50 {:.2} ms, p95 {:.2} ms; added by routing: p50 {:.2} ms, p95 {:.2} ms ({} each, answer {statuses:?})",
        quantile(&local, 0.5),
        quantile(&local, 0.95),
        quantile(&routed, 0.5),
        quantile(&routed, 0.95),
        quantile(&routed, 0.5) - quantile(&local, 0.5),
        quantile(&routed, 0.95) - quantile(&local, 0.95),
        args.offers,
    );
    for e in clients {
        e.close().await;
    }
    drop(nodes);
    drop(pg);
    Ok(())
}

/// PostgreSQL's committed transactions so far, in the cluster's database.
async fn xact_commits(url: &str) -> Res<i64> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let row = c
        .query_one("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// The control plane's cost over `secs`: each node's CPU beside a single node's, and the
/// database's commits per second per node.
async fn control_plane_cost(url: &str, nodes: &[Server], single: &Server, secs: u64, what: &str) -> Res<()> {
    let before: Vec<f64> = nodes.iter().map(Server::cpu_seconds).collect();
    let (single0, x0, t0) = (single.cpu_seconds(), xact_commits(url).await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let x1 = xact_commits(url).await?;
    let wall = t0.elapsed().as_secs_f64();
    let pct = |now: f64, then: f64| format!("{:.2} %", (now - then) / wall * 100.0);
    let per_node: Vec<String> = nodes.iter().zip(&before).map(|(n, b)| pct(n.cpu_seconds(), *b)).collect();
    println!(
        "control plane, {what}, over {wall:.0} s: CPU per node {} of a core (a single node without --cluster-db: {}); PostgreSQL {:.2} commits/s per node",
        per_node.join(" / "),
        pct(single.cpu_seconds(), single0),
        (x1 - x0) as f64 / wall / nodes.len() as f64,
    );
    Ok(())
}

/// Where a placement's time goes: the placement's database round trip (one at a time, from
/// here), and a durable session write both ways in the node's sessions directory.
async fn placement_split(db: &exphub::cluster::Db, dir: &Path, n: usize) -> Res<()> {
    let mut place = vec![];
    for i in 0..n {
        let t = Instant::now();
        db.place(&format!("split{i:06}"), 29.0, "A").await.map_err(|e| e.to_string())?;
        place.push(ms(t.elapsed()));
    }
    for i in 0..n {
        let _ = db.release(&format!("split{i:06}"), "A", 1).await;
    }
    let dir = dir.to_owned();
    let (whole, first, line) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        use std::io::Write;
        let sync_dir = || std::fs::File::open(&dir)?.sync_all();
        let body = vec![b' '; 2048]; // a two-person session file is about 2 KiB
        let (mut whole, mut first, mut line) = (vec![], vec![], vec![]);
        for i in 0..n {
            // The whole file: temp file, fsync, rename, directory fsync.
            let (tmp, target) = (dir.join(".split.tmp"), dir.join("split.json"));
            let t = Instant::now();
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)?;
            sync_dir()?;
            whole.push(ms(t.elapsed()));
            // A session's first journal line: a new file, fdatasync, directory fsync; then
            // a second line: append, fdatasync.
            let journal = dir.join(format!("split{i}.journal.jsonl"));
            let t = Instant::now();
            let mut j = std::fs::OpenOptions::new().create(true).append(true).open(&journal)?;
            j.write_all(b"{\"CreationTime\":{\"time\":1}}\n")?;
            j.sync_data()?;
            sync_dir()?;
            first.push(ms(t.elapsed()));
            let t = Instant::now();
            j.write_all(b"{\"CreationTime\":{\"time\":0}}\n")?;
            j.sync_data()?;
            line.push(ms(t.elapsed()));
            std::fs::remove_file(&journal)?;
        }
        Ok((whole, first, line))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let show = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("p50 {:.2} ms, p95 {:.2} ms", quantile(&v, 0.5), quantile(&v, 0.95))
    };
    println!(
        "where a placement's time goes ({n} each, one at a time): exphub_place round trip {}; session file written whole {}; a first journal line {}; a further journal line {}",
        show(place),
        show(whole),
        show(first),
        show(line),
    );
    Ok(())
}

/// Balance: five rounds of 300 placements (a mix of 2-person forwarded, 4-person forwarded and
/// 2-person transcoded costs) on three fresh nodes with room for all, no preferred node.
async fn balance(db: &exphub::cluster::Db) -> Res<()> {
    let e = |e: exphub::cluster::DbError| e.to_string();
    let names = ["balance-x", "balance-y", "balance-z"];
    let costs = [29.0f32, 78.0, 171.0];
    let mut ratios = vec![];
    for round in 0..5 {
        for n in names {
            db.register(n, "http://127.0.0.1:9", 1e6).await.map_err(e)?;
        }
        for i in 0..300 {
            if i % 50 == 0 {
                for n in names {
                    db.heartbeat(n, 0.0).await.map_err(e)?;
                }
            }
            db.place(&format!("balance{round}-{i:04}"), costs[(i * 7 + i / 5) % 3], "").await.map_err(e)?;
        }
        let loads: Vec<f32> = db
            .nodes()
            .await
            .map_err(e)?
            .into_iter()
            .filter(|n| names.contains(&n.node_id.as_str()))
            .map(|n| n.load)
            .collect();
        let (max, min) = loads.iter().fold((0f32, f32::MAX), |(a, b), l| (a.max(*l), b.min(*l)));
        ratios.push(max / min.max(1.0));
        for n in names {
            db.deregister(n).await.map_err(e)?;
        }
    }
    println!(
        "balance: max/min reserved load after 300 placements on three nodes (two random choices), five rounds: {}",
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
