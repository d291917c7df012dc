//! Soak load tool: does the server give back what a connection took once it is gone?
//!
//! ```text
//! cargo build --bin exphub --example soak
//! cargo run --example soak -- --cycles 1000 [--mix 1,1,1,1] [--every 100] [--warmup 50]
//! ```
//!
//! It starts the real server (`--server-bin`, default `target/debug/exphub`; a separate process
//! on 127.0.0.1 over a temporary sessions directory with two sessions of four participants) and
//! one experimenter that creates both experiments: it leaves the first (nobody watches it) and
//! stays in the second, answering every `CONNECTION_PROPOSAL` with a sub-connection. Then it
//! runs `--cycles` connect/leave cycles, one at a time, of four kinds, interleaved by the
//! weights of `--mix` (experimenter, participant, watched participant, abrupt drop):
//!
//! - `e` experimenter: connect, `GET_SESSION_LIST`, close;
//! - `p` participant of the unwatched experiment: connect, `GET_SESSION`, close;
//! - `w` watched participant: connect, `GET_SESSION`, wait until the watching experimenter's
//!   sub-connection to it is answered, close (the server closes that sub-connection); with
//!   `--media tests/fixtures` it publishes the fixture clip meanwhile, which the server
//!   forwards to the watcher and echoes;
//! - `d` abrupt drop: like `w`, but the client vanishes (its sockets close, no DTLS or SCTP
//!   close is sent); the server notices when ICE times out.
//!
//! Every `--every` cycles it prints the server's RSS (VmRSS), open fds, threads, UDP sockets
//! and the connection gauges of `/metrics`. At the end it waits (up to `--settle` s) until
//! the server is back to the experimenter alone, then prints the growth of RSS per cycle after
//! the warm-up: (RSS settled − RSS after `--warmup` cycles) / (cycles − warmup).
//!
//! All traffic is on 127.0.0.1; every step has a timeout; the server is killed when the tool
//! ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use exphub_client::{self as client, Client, ClientOptions, Media, Role};
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PASSWORD: &str = "soak-password";
const UNWATCHED: &str = "50a450a450";
const WATCHED: &str = "50a450a451";
const STEP: Duration = Duration::from_secs(20);

#[derive(Parser)]
#[command(about = "Connect/leave cycles against a real server; prints its memory per cycle.")]
struct Args {
    /// Connect/leave cycles to run.
    #[arg(long, default_value_t = 1000)]
    cycles: usize,
    /// Weights of the cycle kinds: experimenter, participant, watched participant, abrupt drop.
    #[arg(long, value_delimiter = ',', default_value = "1,1,1,1")]
    mix: Vec<usize>,
    /// Print a sample every this many cycles.
    #[arg(long, default_value_t = 100)]
    every: usize,
    /// Cycles before the reference sample of the growth figure.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// The server binary (`cargo build --bin exphub`).
    #[arg(long, default_value = "target/debug/exphub")]
    server_bin: PathBuf,
    /// How long to wait at the end for abrupt drops to be noticed, in seconds.
    #[arg(long, default_value_t = 120)]
    settle: u64,
    /// Watched participants publish the fixture media (clip-640x480-vp8.ivf, clip-opus.ogg in
    /// this directory, e.g. tests/fixtures) while connected, so the forwarders feed their
    /// sub-connections.
    #[arg(long)]
    media: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Experimenter,
    Participant,
    Watched,
    Drop,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Experimenter => 'e',
            Kind::Participant => 'p',
            Kind::Watched => 'w',
            Kind::Drop => 'd',
        }
    }
}

/// The cycle kinds in a fixed interleaved order, each as often as its weight says.
fn schedule(mix: &[usize]) -> Res<Vec<Kind>> {
    let kinds = [Kind::Experimenter, Kind::Participant, Kind::Watched, Kind::Drop];
    if mix.len() != 4 || mix.iter().all(|w| *w == 0) {
        return Err("--mix takes four weights (experimenter, participant, watched, drop), not all 0".into());
    }
    let mut left = mix.to_vec();
    let mut out = vec![];
    while left.iter().any(|w| *w > 0) {
        for (i, k) in kinds.iter().enumerate() {
            if left[i] > 0 {
                left[i] -= 1;
                out.push(*k);
            }
        }
    }
    Ok(out)
}

/// Seats per session: enough that a seat is used again only after an abrupt drop on it has
/// been noticed (else the cycle is a rejoin, which keeps the seat's sub-connections).
const SEATS: usize = 16;

fn participant_ids(session: &str) -> Vec<String> {
    (0..SEATS).map(|i| format!("{}{i:x}", &session[..9])).collect()
}

/// A session in SynthARium's main format (the development keys are optional).
fn session_json(id: &str) -> Value {
    let seat = |(i, pid): (usize, &String)| {
        let mut p = json!({"id": pid, "participant_name": format!("P{i}"), "banned": false, "muted_video": false,
                           "muted_audio": false, "position": {"x": i * 100, "y": 0, "z": 0},
                           "size": {"width": 100, "height": 100}});
        for list in ["chat", "audio_filters", "video_filters", "audio_group_filters", "video_group_filters"] {
            p[list] = json!([]);
        }
        p
    };
    let participants: Vec<Value> = participant_ids(id).iter().enumerate().map(seat).collect();
    json!({
        "id": id, "title": "Soak", "description": "", "date": 0, "time_limit": 600000, "record": false,
        "participants": participants, "creation_time": 0, "start_time": 0, "end_time": 0, "notes": [], "log": []
    })
}

/// The server process; killed on drop.
struct Server {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Server {
    fn start(bin: &PathBuf) -> Res<Server> {
        let dir = std::env::temp_dir().join(format!("exphub-soak-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        for s in [UNWATCHED, WATCHED] {
            std::fs::write(dir.join(format!("{s}.json")), serde_json::to_vec_pretty(&session_json(s))?)?;
        }
        let mut cmd = Command::new(bin);
        // The server dies with this tool, however it ends (Linux: parent-death signal).
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
            .arg(&dir)
            .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
            .env("EXPHUB_LOG", "warn")
            .env_remove("EXPHUB_CONFIG")
            .env_remove("EXPHUB_UDP_PORTS")
            .env_remove("EXPHUB_RTC_IP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.join("server.log"))?))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e} (build it with `cargo build --bin exphub`)", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("exphub serving on ") {
                    let _ = tx.send(rest.trim().trim_end_matches('/').to_owned());
                }
            }
        });
        let mut server = Server { child, base: String::new(), dir };
        server.base = rx.recv_timeout(Duration::from_secs(20)).map_err(|_| "the server did not print its address")?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One look at the server: /proc and /metrics.
#[derive(Debug, Clone, Default)]
struct Sample {
    rss_kb: u64,
    threads: u64,
    fds: usize,
    udp: usize,
    connections: i64,
    subconnections: i64,
    peer_live: Option<i64>,
}

fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

/// Socket inodes of the UDP sockets in /proc/net/udp{,6}.
fn udp_inodes() -> std::collections::HashSet<String> {
    let mut set = std::collections::HashSet::new();
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        for line in std::fs::read_to_string(f).unwrap_or_default().lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9) {
                set.insert(inode.to_owned());
            }
        }
    }
    set
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

async fn sample(server: &Server) -> Sample {
    let pid = server.pid();
    let udp = udp_inodes();
    let (mut fds, mut udp_n) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            fds += 1;
            let target = std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                if udp.contains(inode) {
                    udp_n += 1;
                }
            }
        }
    }
    let text = match client::get(&server.base, "/metrics").await {
        Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
        _ => String::new(),
    };
    Sample {
        rss_kb: status_field(pid, "VmRSS:"),
        threads: status_field(pid, "Threads:"),
        fds,
        udp: udp_n,
        connections: metric(&text, "exphub_connections").unwrap_or(-1),
        subconnections: metric(&text, "exphub_subconnections").unwrap_or(-1),
        peer_live: metric(&text, "exphub_peer_connections_allocated"),
    }
}

fn print_sample(label: &str, s: &Sample) {
    println!(
        "{label:>10}  rss {:>8} kB  fds {:>4}  udp {:>4}  threads {:>3}  connections {:>3}  subconnections {:>3}  peer connections in memory {}",
        s.rss_kb,
        s.fds,
        s.udp,
        s.threads,
        s.connections,
        s.subconnections,
        s.peer_live.map_or("-".into(), |n| n.to_string()),
    );
}

fn quiet() -> ClientOptions {
    ClientOptions { auto_subscribe: false, ..Default::default() }
}

async fn request(c: &mut Client, kind: &str, data: Value, want: &str) -> Res<Value> {
    c.send(kind, data).await?;
    let deadline = Instant::now() + STEP;
    loop {
        let m = c.recv(deadline.saturating_duration_since(Instant::now())).await?;
        match m["type"].as_str() {
            Some(t) if t == want => return Ok(m),
            Some("ERROR") => return Err(format!("{kind}: {}", m["data"]).into()),
            _ => {}
        }
    }
}

/// The experimenter that owns both experiments and watches the second one.
async fn admin(base: &str) -> Res<Client> {
    let mut a =
        Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, ClientOptions::default()).await?;
    request(&mut a, "CREATE_EXPERIMENT", json!({"session_id": UNWATCHED}), "SUCCESS").await?;
    request(&mut a, "LEAVE_EXPERIMENT", json!({}), "SUCCESS").await?;
    request(&mut a, "CREATE_EXPERIMENT", json!({"session_id": WATCHED}), "SUCCESS").await?;
    Ok(a)
}

/// Waits until the watcher's sub-connection to `pid` is proposed, offered and answered.
async fn wait_answered(admin: &mut Client, pid: &str) -> Res<()> {
    let deadline = Instant::now() + STEP;
    let mut proposal = None;
    loop {
        let m = admin.recv(deadline.saturating_duration_since(Instant::now())).await?;
        match m["type"].as_str() {
            Some("CONNECTION_PROPOSAL") if m["data"]["participant_summary"] == pid => {
                proposal = m["data"]["id"].as_str().map(str::to_owned);
            }
            Some("CONNECTION_ANSWER") if proposal.is_some() && m["data"]["id"].as_str() == proposal.as_deref() => {
                return Ok(())
            }
            _ => {}
        }
    }
}

async fn cycle(
    base: &str,
    admin: &mut Client,
    kind: Kind,
    n: usize,
    crashed: &mut [Option<Instant>],
    media: Option<&Arc<Media>>,
) -> Res<()> {
    match kind {
        Kind::Experimenter => {
            let mut c = Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, quiet()).await?;
            request(&mut c, "GET_SESSION_LIST", json!({}), "SESSION_LIST").await?;
            c.close().await;
        }
        Kind::Participant => {
            let pid = participant_ids(UNWATCHED)[n % SEATS].clone();
            let role = Role::Participant { session_id: UNWATCHED.into(), participant_id: pid };
            let mut c = Client::connect(base, role, quiet()).await?;
            request(&mut c, "GET_SESSION", json!({"session_id": UNWATCHED}), "SESSION").await?;
            c.close().await;
        }
        Kind::Watched | Kind::Drop => {
            let seat = n % SEATS;
            let pid = participant_ids(WATCHED)[seat].clone();
            // A seat whose client vanished less than a minute ago may still be held: joining it
            // is a rejoin, and the watcher keeps its sub-connection (no new proposal).
            let rejoin = crashed[seat].is_some_and(|t| t.elapsed() < Duration::from_secs(60));
            admin.drain();
            let role = Role::Participant { session_id: WATCHED.into(), participant_id: pid.clone() };
            let mut c = Client::connect(base, role, quiet()).await?;
            request(&mut c, "GET_SESSION", json!({"session_id": WATCHED}), "SESSION").await?;
            let playing = media.map(|m| c.publish(m.clone()));
            if !rejoin {
                wait_answered(admin, &pid).await?;
            }
            // Let ICE and DTLS come up so the server adds the forwarder sinks (and, with media,
            // forwards to them for a moment).
            tokio::time::sleep(Duration::from_millis(if media.is_some() { 1000 } else { 300 })).await;
            if let Some(p) = playing {
                p.abort();
            }
            if kind == Kind::Drop {
                crashed[seat] = Some(Instant::now());
                c.crash().await;
            } else {
                c.close().await;
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let args = Args::parse();
    let plan = schedule(&args.mix)?;
    let media = match &args.media {
        Some(dir) => Some(Arc::new(Media::load(&dir.join("clip-640x480-vp8.ivf"), &dir.join("clip-opus.ogg"))?)),
        None => None,
    };
    let server = Server::start(&args.server_bin)?;
    println!("server pid {} at {}", server.pid(), server.base);
    let mut admin = admin(&server.base).await?;
    let base_sample = sample(&server).await;
    print_sample("start", &base_sample);
    let mut warm: Option<Sample> = None;
    let mut failures = 0usize;
    let mut counts = [0usize; 4];
    let mut crashed = vec![None; SEATS];
    let started = Instant::now();
    for i in 0..args.cycles {
        let kind = plan[i % plan.len()];
        // Each kind walks through the seats on its own.
        let n = counts[kind as usize];
        counts[kind as usize] += 1;
        match tokio::time::timeout(STEP * 3, cycle(&server.base, &mut admin, kind, n, &mut crashed, media.as_ref()))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failures += 1;
                eprintln!("cycle {} ({}) failed: {e}", i + 1, kind.letter());
            }
            Err(_) => {
                failures += 1;
                eprintln!("cycle {} ({}) timed out", i + 1, kind.letter());
            }
        }
        admin.drain();
        if i + 1 == args.warmup {
            let s = sample(&server).await;
            print_sample(&format!("{} warm", i + 1), &s);
            warm = Some(s);
        } else if (i + 1) % args.every.max(1) == 0 {
            print_sample(&format!("{}", i + 1), &sample(&server).await);
        }
    }
    let elapsed = started.elapsed();
    // Abrupt drops are noticed when ICE times out: wait until only the watcher is left.
    let deadline = Instant::now() + Duration::from_secs(args.settle);
    let mut last = sample(&server).await;
    while Instant::now() < deadline
        && (last.connections != base_sample.connections
            || last.subconnections != base_sample.subconnections
            || last.peer_live.is_some_and(|n| Some(n) > base_sample.peer_live))
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = sample(&server).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = sample(&server).await;
    print_sample("settled", &last);
    println!(
        "{} cycles (e {}, p {}, w {}, d {}) in {:.0} s, {failures} failed",
        args.cycles,
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        elapsed.as_secs_f64()
    );
    let (from, n) = match &warm {
        Some(w) if args.cycles > args.warmup => (w.rss_kb, args.cycles - args.warmup),
        _ => (base_sample.rss_kb, args.cycles.max(1)),
    };
    println!(
        "RSS growth after warm-up: {:+} kB over {n} cycles = {:+.1} kB per cycle (start {} kB, settled {} kB)",
        last.rss_kb as i64 - from as i64,
        (last.rss_kb as f64 - from as f64) / n as f64,
        base_sample.rss_kb,
        last.rss_kb
    );
    admin.close().await;
    Ok(())
}
