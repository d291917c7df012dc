//! Flood tool: does one client's flood of session writes slow the control plane for others?
//!
//! ```text
//! cargo run --release --example flood -- [--chats 2000] [--ping-ms 20]
//! ```
//!
//! Starts the server in this process (release build: a release server) on 127.0.0.1 over a
//! temporary sessions directory holding one session with four participants. A host
//! experimenter creates the experiment; participant P0 (the flooder) sends `--chats` CHAT
//! messages to the experimenter back to back, without waiting for replies, and counts the
//! replies: SUCCESS (accepted, durable), ERROR 429 (rate-limited) and any other ERROR. Meanwhile
//! a second experimenter (the observer) sends a PING every `--ping-ms` and measures each PONG's
//! round trip. Printed: the observer's round trip p50/p99/max while the flood lasted (from the
//! first chat sent until the last reply), the flooder's counts, and the session file and journal
//! sizes afterwards. All traffic stays on loopback; every wait has a timeout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use exphub_client::{Client, ClientOptions, Role};
use serde_json::{json, Value};

const PASSWORD: &str = "flood-password";
const SESSION: &str = "f100df100d";
const PARTICIPANTS: [&str; 4] = ["aaaaaaaaa1", "bbbbbbbbb2", "ccccccccc3", "ddddddddd4"];
const T: Duration = Duration::from_secs(20);

#[derive(Parser)]
struct Args {
    /// Chats the flooder sends.
    #[arg(long, default_value_t = 2000)]
    chats: usize,
    /// The observer's PING interval in milliseconds.
    #[arg(long, default_value_t = 20)]
    ping_ms: u64,
}

fn session() -> Value {
    let participants: Vec<Value> = PARTICIPANTS
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            json!({"id": pid, "participant_name": format!("P{i}"), "banned": false,
                   "muted_video": false, "muted_audio": false,
                   "position": {"x": i * 100, "y": 0, "z": 0}, "size": {"width": 100, "height": 100},
                   "chat": [], "audio_filters": [], "video_filters": [],
                   "audio_group_filters": [], "video_group_filters": []})
        })
        .collect();
    json!({"id": SESSION, "title": "Flood", "description": "", "date": 0, "time_limit": 600000,
           "record": false, "participants": participants, "creation_time": 0, "start_time": 0, "end_time": 0,
           "notes": [], "log": []})
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn size(p: &PathBuf) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("exphub-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{SESSION}.json")), serde_json::to_vec_pretty(&session())?)?;
    let server = exphub::start(exphub::config::Config::for_tests(&dir, PASSWORD)).await?;
    let base = format!("http://{}", server.addr);
    let experimenter =
        || Client::connect(&base, Role::Experimenter { password: PASSWORD.into() }, ClientOptions::default());
    let mut host = experimenter().await?;
    host.send("CREATE_EXPERIMENT", json!({"session_id": SESSION})).await?;
    host.recv_type("SUCCESS", T).await?;
    let mut observer = experimenter().await?;
    let pid = PARTICIPANTS[0];
    let role = Role::Participant { session_id: SESSION.into(), participant_id: pid.into() };
    let mut flooder = Client::connect(&base, role, ClientOptions::default()).await?;
    // The host receives every chat; keep its inbox drained.
    let host_task = tokio::spawn(async move { while host.recv(Duration::from_secs(5)).await.is_ok() {} });

    let n = args.chats;
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        for i in 0..n {
            let msg = json!({"message": format!("flood {i:05} ...................................."),
                             "time": i, "author": pid, "target": "experimenter"});
            if flooder.send("CHAT", msg).await.is_err() {
                break;
            }
        }
        let (mut ok, mut limited, mut other) = (0usize, 0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(120);
        while ok + limited + other < n && Instant::now() < deadline {
            let Ok(m) = flooder.recv(Duration::from_secs(10)).await else { break };
            match (m["type"].as_str(), m["data"]["code"].as_u64()) {
                (Some("SUCCESS"), _) => ok += 1,
                (Some("ERROR"), Some(429)) => limited += 1,
                (Some("ERROR"), _) => other += 1,
                _ => {}
            }
        }
        (ok, limited, other, started.elapsed())
    });

    let mut rtts = vec![];
    let mut seq = 0u64;
    while !flood.is_finished() {
        seq += 1;
        let t0 = Instant::now();
        observer.send("PING", json!({"seq": seq})).await?;
        loop {
            let m = observer.recv(T).await?;
            if m["type"] == "PONG" && m["data"]["ping_data"]["seq"] == seq {
                break;
            }
        }
        rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(args.ping_ms).saturating_sub(t0.elapsed())).await;
    }
    let (ok, limited, other, took) = flood.await?;
    rtts.sort_by(|a, b| a.total_cmp(b));
    println!(
        "flooder: {n} chats sent, {ok} accepted, {limited} rate-limited (429), {other} other errors, all replies in {:.2} s",
        took.as_secs_f64()
    );
    println!(
        "observer PING round trip during the flood: {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        rtts.len(),
        pct(&rtts, 0.5),
        pct(&rtts, 0.99),
        rtts.last().copied().unwrap_or(f64::NAN)
    );
    let file = dir.join(format!("{SESSION}.json"));
    println!("session file {} B, journal {} B", size(&file), size(&exphub::session::store::journal_path(&file)));
    server.shutdown().await;
    host_task.abort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
