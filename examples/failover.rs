//! Failover figures of cluster mode: failure detection, recovery, zombie safety and running
//! media during a database outage.
//!
//! ```text
//! cargo build --release --bin exphub && cargo build --release --example failover
//! target/release/examples/failover [--reps 5] [--server-bin target/release/exphub]
//! ```
//!
//! Each repetition starts a throwaway PostgreSQL (fsync on; `tests/common/pg.rs`) and three
//! real nodes A, B, C on loopback. An experiment runs on B with two participants (connected
//! to B, publishing the fixture media to each other), and one on C with one participant. Then:
//!
//! 1. **database outage**: PostgreSQL is stopped for 10 s; the video frames P1 receives from P0
//!    per second during the outage against the 5 s before;
//! 2. **zombie**: C is paused (SIGSTOP) for 10 s; after 7 s its participant re-offers via A
//!    (which takes the experiment over); after SIGCONT offers for that session go to C for
//!    5 s, and those C answers itself are counted (must be 0);
//! 3. **owner crash**: B is killed (SIGKILL); both participants re-offer via A at once and
//!    again every 300 ms until answered, as exphub's page does when its connection fails.
//!    Detection: kill → the takeover committed (the placement's epoch moves, polled every
//!    20 ms). Recovery: kill → each participant's first video frame from the other through
//!    the new owner (the later of the two).
//!
//! It prints each repetition and the medians, p95 and maxima. All traffic is on 127.0.0.1;
//! every step has a timeout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exphub_client::{Client, ClientOptions, Media, Origin, Role};
use serde_json::json;

#[path = "../tests/common/pg.rs"]
mod pg;
#[path = "../tests/common/child.rs"]
mod proc;

const PASSWORD: &str = "failover-tool-password";
const SECRET: &str = "failover-tool-secret-0123456789";
const T: Duration = Duration::from_secs(30);
const ON_B: &str = "f41l0b0001";
const ON_C: &str = "f41l0c0001";
const PIDS: [&str; 2] = ["aaaaaaaaa1", "bbbbbbbbb2"];

type Res<T> = Result<T, String>;

struct Node {
    proc: proc::Proc,
    ports: (u16, u16),
}

fn start_node(bin: &Path, dir: &Path, pg: &pg::Pg, name: &str, i: u16) -> Res<Node> {
    let sessions = dir.join(name);
    std::fs::create_dir_all(&sessions).map_err(|e| e.to_string())?;
    for sid in [ON_B, ON_C] {
        let s = exphub_client::session_json(sid, &PIDS);
        std::fs::write(sessions.join(format!("{sid}.json")), s.to_string()).map_err(|e| e.to_string())?;
    }
    let ports = (31_000 + i * 1000, 31_999 + i * 1000);
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
        .arg(&sessions)
        .args(["--cluster-db", &pg.url, "--node-id", name, "--internal-addr", "127.0.0.1:0"])
        .args(["--capacity-millicores", "100000", "--udp-ports", &format!("{}-{}", ports.0, ports.1)])
        .env("EXPHUB_CLUSTER_SECRET", SECRET)
        .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
        .env("EXPHUB_LOG", "warn")
        .env_remove("EXPHUB_CONFIG")
        .env_remove("EXPHUB_CLUSTER_DB")
        .stdin(Stdio::null());
    Ok(Node { proc: proc::spawn(cmd, &sessions.join("server.log")), ports })
}

fn answered_by(c: &Client, ports: (u16, u16)) -> bool {
    let sdp = c.offer_response["data"]["sdp"].as_str().unwrap_or_default();
    let found: Vec<u16> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .filter_map(|l| l.split_whitespace().nth(5)?.parse().ok())
        .collect();
    !found.is_empty() && found.iter().all(|p| (ports.0..=ports.1).contains(p))
}

/// Client options that count the video frames received from other participants.
fn counting() -> (Arc<AtomicU64>, ClientOptions) {
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    let opts = ClientOptions {
        on_rtp: Some(Arc::new(move |o, kind, p, _| {
            if matches!(o, Origin::Sub { .. }) && kind == exphub::media::Kind::Video && p.header.marker {
                c.fetch_add(1, Ordering::Relaxed);
            }
        })),
        ..Default::default()
    };
    (n, opts)
}

fn role(sid: &str, pid: &str) -> Role {
    Role::Participant { session_id: sid.into(), participant_id: pid.into() }
}

async fn connect_retrying(base: &str, sid: &str, pid: &str, opts: ClientOptions, within: Duration) -> Res<Client> {
    let deadline = Instant::now() + within;
    loop {
        match Client::connect(base, role(sid, pid), opts.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(format!("{pid} re-offers via {base}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> Res<()> {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn epoch(url: &str, sid: &str) -> Option<i64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    let row = client.query_opt("SELECT epoch FROM placements WHERE session_id = $1", &[&sid]).await.ok()??;
    Some(row.get(0))
}

fn signal(p: &proc::Proc, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    unsafe { libc::kill(p.child.id() as libc::pid_t, sig) };
}

struct Rep {
    fps_ratio: f64,
    zombie: u32,
    detect: Duration,
    recover: Duration,
}

async fn one(bin: &Path, media: &Arc<Media>) -> Res<Rep> {
    let dir = std::env::temp_dir().join(format!("exphub-failover-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = Cleanup(dir.clone());
    let pg = Arc::new(pg::Pg::start(true));
    let [a, mut b, c] =
        [start_node(bin, &dir, &pg, "A", 0)?, start_node(bin, &dir, &pg, "B", 1)?, start_node(bin, &dir, &pg, "C", 2)?];
    let exp_role = || Role::Experimenter { password: PASSWORD.into() };
    let mut eb =
        Client::connect(b.proc.base.as_str(), exp_role(), ClientOptions::default()).await.map_err(|e| e.to_string())?;
    let mut ec =
        Client::connect(c.proc.base.as_str(), exp_role(), ClientOptions::default()).await.map_err(|e| e.to_string())?;
    for (e, sid) in [(&mut eb, ON_B), (&mut ec, ON_C)] {
        e.send("CREATE_EXPERIMENT", json!({"session_id": sid})).await.map_err(|e| e.to_string())?;
        e.recv_type("SUCCESS", T).await.map_err(|e| format!("create {sid}: {e}"))?;
    }
    let (n1, o1) = counting();
    let (_, o0) = counting();
    let p0 = Client::connect(&b.proc.base, role(ON_B, PIDS[0]), o0).await.map_err(|e| e.to_string())?;
    let p1 = Client::connect(&b.proc.base, role(ON_B, PIDS[1]), o1).await.map_err(|e| e.to_string())?;
    let pc = Client::connect(&c.proc.base, role(ON_C, PIDS[0]), ClientOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    for e in [&mut eb, &mut ec] {
        e.send("START_EXPERIMENT", json!({})).await.map_err(|e| e.to_string())?;
        e.recv_type("SUCCESS", T).await.map_err(|e| format!("start: {e}"))?;
    }
    let players = [p0.publish(media.clone()), p1.publish(media.clone())];
    wait_for(T, || n1.load(Ordering::Relaxed) > 30).await.map_err(|_| "no media on B")?;
    tokio::time::sleep(Duration::from_secs(1)).await; // the START reaches the database

    // 1. Database outage.
    let f0 = n1.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = (n1.load(Ordering::Relaxed) - f0) as f64 / 5.0;
    let stopping = pg.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await.map_err(|e| e.to_string())?;
    let t = Instant::now();
    let f1 = n1.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = (n1.load(Ordering::Relaxed) - f1) as f64 / t.elapsed().as_secs_f64();
    let starting = pg.clone();
    tokio::task::spawn_blocking(move || starting.start_again()).await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(6)).await; // heartbeats back, fences lifted

    // 2. Zombie.
    signal(&c.proc, libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let moved = connect_retrying(&a.proc.base, ON_C, PIDS[1], ClientOptions::default(), T).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&c.proc, libc::SIGCONT);
    let mut zombie = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(cl) = Client::connect(&c.proc.base, role(ON_C, PIDS[0]), ClientOptions::default()).await {
            if answered_by(&cl, c.ports) {
                zombie += 1;
            }
            cl.close().await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // 3. Owner crash.
    let killed = Instant::now();
    b.proc.child.kill().map_err(|e| e.to_string())?;
    let _ = b.proc.child.wait();
    for h in players {
        h.abort();
    }
    let url = pg.url.clone();
    let detect = tokio::spawn(async move {
        while epoch(&url, ON_B).await != Some(2) && killed.elapsed() < T * 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        killed.elapsed()
    });
    let (m1, q1) = counting();
    let (m0, q0) = counting();
    let base = a.proc.base.clone();
    let r0 = tokio::spawn(connect_retrying_owned(base.clone(), PIDS[0], q0));
    let r1 = tokio::spawn(connect_retrying_owned(base, PIDS[1], q1));
    let (r0, r1) = (r0.await.map_err(|e| e.to_string())??, r1.await.map_err(|e| e.to_string())??);
    let again = [r0.publish(media.clone()), r1.publish(media.clone())];
    wait_for(T, || m0.load(Ordering::Relaxed) > 0 && m1.load(Ordering::Relaxed) > 0)
        .await
        .map_err(|_| "no media after the takeover")?;
    let recover = killed.elapsed();
    let detect = detect.await.map_err(|e| e.to_string())?;
    for h in again {
        h.abort();
    }
    for cl in [r0, r1, moved, pc, p0, p1, eb, ec] {
        cl.close().await;
    }
    drop((a, b, c));
    Ok(Rep { fps_ratio: during / before.max(1e-9), zombie, detect, recover })
}

async fn connect_retrying_owned(base: String, pid: &'static str, opts: ClientOptions) -> Res<Client> {
    connect_retrying(&base, ON_B, pid, opts, T).await
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn summary(name: &str, mut v: Vec<f64>, unit: &str) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!("{name}: median {:.2}{unit}, p95 {:.2}{unit}, max {:.2}{unit} (n = {})", q(0.5), q(0.95), q(1.0), v.len());
}

async fn run() -> Res<()> {
    let mut reps = 5;
    let mut bin = PathBuf::from("target/release/exphub");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--reps" => reps = value.parse::<usize>().map_err(|e| format!("--reps: {e}"))?.max(1),
            "--server-bin" => bin = PathBuf::from(value),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !bin.exists() {
        return Err(format!("{} not found: cargo build --release --bin exphub", bin.display()));
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let media = Arc::new(
        Media::load(&fixtures.join("clip-640x480-vp8.ivf"), &fixtures.join("clip-opus.ogg"))
            .map_err(|e| e.to_string())?,
    );
    let mut all = vec![];
    for i in 0..reps {
        let r = one(&bin, &media).await?;
        println!(
            "rep {}: fps during a 10 s database outage / before {:.2}; zombie offers accepted {}; detection {:.2} s; kill → first frame on the new owner {:.2} s",
            i + 1,
            r.fps_ratio,
            r.zombie,
            r.detect.as_secs_f64(),
            r.recover.as_secs_f64()
        );
        all.push(r);
    }
    summary("fps ratio during the outage", all.iter().map(|r| r.fps_ratio).collect(), "");
    println!("zombie offers accepted after the epoch moved: {}", all.iter().map(|r| r.zombie).sum::<u32>());
    summary("failure detection", all.iter().map(|r| r.detect.as_secs_f64()).collect(), " s");
    summary("kill → first frame on the new owner", all.iter().map(|r| r.recover.as_secs_f64()).collect(), " s");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
