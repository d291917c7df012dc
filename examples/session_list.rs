//! Session-list load tool: how long an experimenter waits for the whole session list of a lab
//! that has kept its sessions for years.
//!
//! ```text
//! cargo build --release --bin exphub --example session_list
//! cargo run --release --example session_list -- [--sessions 2000] [--participants 4] [--chats 200] [--repeat 5] [--syntharium]
//! ```
//!
//! It writes a temporary sessions directory with `--sessions` sessions of `--participants`
//! participants, each participant with `--chats` chat messages (alternating experimenter →
//! participant and back, about 60 bytes of text each), starts the real server
//! (`target/release/exphub serve` on 127.0.0.1, a separate process, killed when the tool ends),
//! connects one experimenter with `exphub_client::Client` (a real WebRTC peer), and
//! `--repeat` times sends `GET_SESSION_LIST` as exphub's dashboard does
//! (`{"parts": true, "recent_chat": 0}`; with `--syntharium` as SynthARium's frontend does, `{}`)
//! and times:
//!
//! - the first frame (`SESSION_LIST`), and
//! - the complete list (`SESSION_LIST_END`, after the `SESSION_LIST_PART`s or `SESSION_CHANGE`s
//!   that carry the sessions that did not fit the first frame),
//!
//! checking that every session arrived. It also times paging one participant's whole chat with
//! `GET_CHAT_HISTORY`, and prints the server's start-up time (until it prints its address)
//! and RSS. All traffic is on 127.0.0.1; every wait has a timeout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exphub_client::{Client, ClientOptions, Role};
use serde_json::{json, Value};

const PASSWORD: &str = "load-password";
const T: Duration = Duration::from_secs(60);

struct Args {
    sessions: usize,
    participants: usize,
    chats: usize,
    repeat: usize,
    /// Ask as SynthARium's frontend does (`{}`), not as exphub's dashboard does.
    syntharium: bool,
    server_bin: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sessions: 2000,
        participants: 4,
        chats: 200,
        repeat: 5,
        syntharium: false,
        server_bin: PathBuf::from("target/release/exphub"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--sessions" => a.sessions = num(value()?)?,
            "--participants" => a.participants = num(value()?)?,
            "--chats" => a.chats = num(value()?)?,
            "--repeat" => a.repeat = num(value()?)?.max(1),
            "--server-bin" => a.server_bin = PathBuf::from(value()?),
            "--syntharium" => a.syntharium = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// One stored session (SynthARium dev format) with chat.
fn session(id: &str, participants: usize, chats: usize) -> Value {
    let ps: Vec<Value> = (0..participants)
        .map(|i| {
            let pid = format!("{id}p{i}");
            let chat: Vec<Value> = (0..chats)
                .map(|k| {
                    let (author, target) =
                        if k % 2 == 0 { ("experimenter", pid.as_str()) } else { (pid.as_str(), "experimenter") };
                    json!({"message": format!("message {k:04}: please look at the screen and wait."),
                           "time": 1_700_000_000_000_i64 + k as i64 * 1000, "author": author, "target": target})
                })
                .collect();
            json!({
                "id": pid, "participant_name": format!("Participant {i}"), "banned": false,
                "muted_video": false, "muted_audio": false,
                "position": {"x": i * 100, "y": 0, "z": 0}, "size": {"width": 100, "height": 100},
                "chat": chat, "audio_filters": [], "video_filters": [],
                "audio_group_filters": [], "video_group_filters": [],
                "local_stream": false, "chat_filters": [], "lastMessageSentTime": 0, "lastMessageReadTime": 0,
                "view": [], "canvas_id": format!("canvas-{i}"), "asymmetric_filters": [], "asymmetric_filters_id": ""
            })
        })
        .collect();
    json!({
        "id": id, "title": format!("Session {id}"), "description": "A stored session of the load tool.",
        "date": 1_700_000_000_000_i64, "time_limit": 600000, "record": false, "participants": ps,
        "creation_time": 1_700_000_000_000_i64, "start_time": 1_700_000_000_001_i64, "end_time": 1_700_000_600_000_i64,
        "notes": [{"time": 1_700_000_000_100_i64, "speakers": [], "content": "A note."}], "log": []
    })
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server process; killed (and reaped) on drop.
struct Server {
    child: Child,
    base: String,
    started_in: Duration,
}

impl Server {
    fn start(bin: &Path, sessions: &Path) -> Result<Self, String> {
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
            .arg(sessions)
            .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
            .env("EXPHUB_LOG", "warn")
            .env_remove("EXPHUB_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("exphub serving on ") {
                    if let Some(t) = tx.take() {
                        let _ = t.send(rest.trim().trim_end_matches('/').to_owned());
                    }
                }
            }
        });
        let mut server = Server { child, base: String::new(), started_in: Duration::ZERO };
        server.base = rx.recv_timeout(Duration::from_secs(120)).map_err(|_| "the server did not start in 120 s")?;
        server.started_in = t0.elapsed();
        Ok(server)
    }

    /// VmRSS of the exphub process, in MB.
    fn rss_mb(&self) -> Option<f64> {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET_SESSION_LIST`: (time to the first frame, time to the end, frames, bytes, sessions).
async fn list_once(c: &mut Client, request: &Value) -> Result<(Duration, Duration, usize, usize, usize), String> {
    c.drain();
    let t0 = Instant::now();
    c.send("GET_SESSION_LIST", request.clone()).await.map_err(|e| e.to_string())?;
    let (first, _) = c.recv_type("SESSION_LIST", T).await.map_err(|e| e.to_string())?;
    let t_first = t0.elapsed();
    let mut sessions = first["data"].as_array().map_or(0, Vec::len);
    let (mut frames, mut bytes) = (1, first.to_string().len());
    loop {
        let m = c.recv(T).await.map_err(|e| format!("after {sessions} sessions: {e}"))?;
        match m["type"].as_str() {
            Some("SESSION_CHANGE") => {
                sessions += 1;
                frames += 1;
                bytes += m.to_string().len();
            }
            Some("SESSION_LIST_PART") => {
                sessions += m["data"].as_array().map_or(0, Vec::len);
                frames += 1;
                bytes += m.to_string().len();
            }
            Some("SESSION_LIST_END") => {
                let announced = m["data"]["sessions"].as_u64().unwrap_or(0) as usize;
                if announced != sessions {
                    return Err(format!("SESSION_LIST_END says {announced}, received {sessions}"));
                }
                return Ok((t_first, t0.elapsed(), frames + 1, bytes, sessions));
            }
            _ => {}
        }
    }
}

/// Pages one participant's whole chat: (time, pages, messages).
async fn chat_once(c: &mut Client, sid: &str, pid: &str) -> Result<(Duration, usize, usize), String> {
    let t0 = Instant::now();
    let (mut before, mut pages, mut messages) = (None::<u64>, 0, 0);
    loop {
        let mut req = json!({"session_id": sid, "participant_id": pid});
        if let Some(b) = before {
            req["before"] = json!(b);
        }
        c.send("GET_CHAT_HISTORY", req).await.map_err(|e| e.to_string())?;
        let (page, _) = c.recv_type("CHAT_HISTORY", T).await.map_err(|e| e.to_string())?;
        pages += 1;
        messages += page["data"]["messages"].as_array().map_or(0, Vec::len);
        let start = page["data"]["start"].as_u64().unwrap_or(0);
        if start == 0 {
            return Ok((t0.elapsed(), pages, messages));
        }
        before = Some(start);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(args: Args) -> Result<(), String> {
    if !args.server_bin.exists() {
        return Err(format!("{} not found: cargo build --release --bin exphub", args.server_bin.display()));
    }
    let dir = TempDir(std::env::temp_dir().join(format!("exphub-session-list-{}", uuid::Uuid::new_v4().simple())));
    std::fs::create_dir_all(&dir.0).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut disk = 0usize;
    for i in 0..args.sessions {
        let id = format!("{i:010x}");
        let text = serde_json::to_vec(&session(&id, args.participants, args.chats)).map_err(|e| e.to_string())?;
        disk += text.len();
        std::fs::write(dir.0.join(format!("{id}.json")), text).map_err(|e| e.to_string())?;
    }
    println!(
        "wrote {} sessions x {} participants x {} chat messages: {:.1} MB in {:.1} s",
        args.sessions,
        args.participants,
        args.chats,
        disk as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let server = Server::start(&args.server_bin, &dir.0)?;
    println!(
        "server started (loaded the sessions) in {:.0} ms; RSS {:.0} MB",
        ms(server.started_in),
        server.rss_mb().unwrap_or(0.0)
    );
    let opts = ClientOptions { auto_subscribe: false, ..Default::default() };
    let mut c = Client::connect(&server.base, Role::Experimenter { password: PASSWORD.into() }, opts)
        .await
        .map_err(|e| format!("experimenter connects: {e}"))?;
    // What exphub's dashboard asks for, unless --syntharium.
    let request = if args.syntharium { json!({}) } else { json!({"parts": true, "recent_chat": 0}) };
    println!("GET_SESSION_LIST {request}");
    let mut complete = vec![];
    for r in 0..args.repeat {
        let (first, all, frames, bytes, n) = list_once(&mut c, &request).await?;
        if n != args.sessions {
            return Err(format!("round {r}: {n} sessions arrived, {} stored", args.sessions));
        }
        println!(
            "GET_SESSION_LIST #{r}: first frame {:.0} ms, complete list {:.0} ms ({n} sessions, {frames} frames, {:.1} MB)",
            ms(first),
            ms(all),
            bytes as f64 / 1e6
        );
        complete.push(ms(all));
    }
    complete.sort_by(f64::total_cmp);
    println!(
        "complete list: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} rounds; server RSS {:.0} MB",
        complete[complete.len() / 2],
        complete[0],
        complete[complete.len() - 1],
        complete.len(),
        server.rss_mb().unwrap_or(0.0)
    );
    if args.sessions > 0 && args.participants > 0 {
        let sid = format!("{:010x}", 0);
        let (d, pages, messages) = chat_once(&mut c, &sid, &format!("{sid}p0")).await?;
        println!("GET_CHAT_HISTORY of one participant: {messages} messages in {pages} pages, {:.0} ms", ms(d));
    }
    // Still connected and served.
    c.send("PING", json!({})).await.map_err(|e| e.to_string())?;
    c.recv_type("PONG", T).await.map_err(|e| format!("PING after the lists: {e}"))?;
    c.close().await;
    drop(server);
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
