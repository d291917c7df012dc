//! Forwarding load tool: how many RTP packets per second per core of server CPU the SFU
//! forwards, and with what latency, for N participants who all see each other.
//!
//! ```text
//! cargo build --release --bin exphub --example load
//! cargo run --release --example load -- --participants 2,4,8 --seconds 20 [--json out.json]
//! ```
//!
//! For each N it starts the real server (`target/release/exphub serve`, a separate process,
//! bound to 127.0.0.1, over a temporary sessions directory holding a session with N
//! participants), connects one experimenter and N participants with
//! `exphub_client::Client`, creates and starts the experiment (so everyone sees
//! everyone, plus its own echo), and has every participant replay the pre-packetized fixture
//! media (tests/fixtures). After a warm-up it measures, over `--seconds`:
//!
//! - forwarded packets/s: delta of `exphub_rtp_packets_forwarded_total` (GET /metrics);
//! - server CPU: utime+stime delta from /proc/<pid>/stat, as % of one core;
//! - forwarded packets/s per core of server CPU (= pps / (cpu% / 100));
//! - server RSS (VmRSS, VmHWM);
//! - forwarding latency p50/p95/p99: publisher `write_rtp` → subscriber receive, matched by
//!   (publisher, kind, RTP sequence number) over every packet every client receives;
//! - loss seen by receivers (per received stream, sequence range vs packets received);
//! - the load of the machine: the tool's own CPU and the rest of the machine (/proc/stat busy
//!   minus server minus this tool).
//!
//! All traffic is on 127.0.0.1. Every step has a timeout and each round has a hard deadline;
//! the server is started under `timeout -s KILL` so that it dies even if this tool is killed.
//!
//! ## Several experiments at once (a node's capacity)
//!
//! ```text
//! # 8 forwarded dyads at once; 4 dyads with two video filters on every participant:
//! cargo run --release --example load -- --participants 2 --experiments 8
//! cargo run --release --example load -- --participants 2 --experiments 4 --filters ROTATION,EDGE_OUTLINE
//! ```
//!
//! `--experiments K` runs K experiments at once on the one server, each its own session of N
//! participants (ids distinct) with its own experimenter; everyone sees the others of its own
//! experiment only. Every figure is over all experiments: frame rate min and p5 over every
//! (viewer, publisher) pair, how many pairs kept ≥ 29 fps, and the server's CPU, in all and
//! per experiment (millicores: what sizing a node needs).
//!
//! ## With filters (the media pipeline)
//!
//! ```text
//! # N=4, everyone filtered, 3 repetitions, medians at the end:
//! cargo run --release --example load -- --participants 4 --filters ROTATION,EDGE_OUTLINE --repeat 3
//! # the cost of one transcoded stream: N=1 (echo + experimenter watch it), each filtered round
//! # preceded by the same round without filters (the forwarding baseline):
//! cargo run --release --example load -- --participants 1 --filters ROTATION,EDGE_OUTLINE --baseline --repeat 3
//! # or N=2 with only the first participant filtered:
//! cargo run --release --example load -- --participants 2 --filtered 1 --filters ROTATION,EDGE_OUTLINE --baseline
//! ```
//!
//! `--filters` names video filters of the catalogue, in chain order, each with its catalogue
//! default config (ROTATION: 45°/s clockwise); `NAME:{json}` overrides the config (e.g.
//! `ROTATION:{"angle":90}`). After the experiment has started and all media flows, the
//! experimenter sends `SET_FILTERS` for each filtered participant (the first `--filtered`, default
//! all), the tool waits until every viewer receives the processed streams, warms up, and then
//! measures, in addition to the figures above:
//!
//! - received video frame rate per (viewer, publisher) pair: RTP packets with the marker bit per
//!   second, min and median over all pairs (viewers: every participant, incl. its own echo, and
//!   the experimenter) and over the pairs of filtered publishers;
//! - server-added latency p50/p95/mean: quantiles of the delta of the server's
//!   `exphub_pipeline_latency_seconds` histogram over the window (arrival of a frame's last RTP
//!   packet to the send of its processed frame; linear within a bucket);
//! - the pipeline counters' deltas: frames in/out, stale (decoded, not encoded: too late),
//!   decode errors, input drops;
//! - the CPU of the server's media worker threads (`media-*`, from /proc/<pid>/task) apart from
//!   the rest of the server.
//!
//! ## With face filters
//!
//! ```text
//! # N=4, each participant's camera a face (make face-clip), OPENFACE_AU on every stream:
//! cargo run --release --example load -- --participants 4 --filters OPENFACE_AU \
//!     --video tests/fixtures/faces/face-640x480-vp8.ivf --repeat 3
//! ```
//!
//! ## With group filters
//!
//! ```text
//! # N=4, two filters each, and every participant a member of MOTION_SYNC and SPEECH_SYNC:
//! cargo run --release --example load -- --participants 4 --filters ROTATION,EDGE_OUTLINE \
//!     --group-filters MOTION_SYNC,SPEECH_SYNC --repeat 3
//! ```
//!
//! `--group-filters` puts the group filters into every participant's group lists of the
//! session, so they run from CREATE_EXPERIMENT; each round also reports the values computed,
//! dropped at the aggregator and the results over the window.
//!
//! The packet-latency figures (publisher send → subscriber receive, matched by sequence number)
//! leave out the video of filtered publishers: its packets are re-encoded and re-numbered.
//! With `--baseline` the summary also gives the transcoding cost per filtered stream:
//! (server CPU with filters − server CPU of the baseline round) / filtered participants.
//!
//! On a shared machine, `--quiet-before 15` waits before each round until the machine is less
//! than 15% busy, and `--max-other-cpu 30 --retries 3` repeats a round during which other
//! processes used more than 30% of a core (the repeated result stays in the JSON, marked
//! `discarded`, and out of the medians).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use exphub::media::Kind;
use exphub_client::{Client, ClientOptions, Media, Origin, Role, RtpCallback, SentPacket};
use serde::Serialize;
use serde_json::{json, Value};

type AnyError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, AnyError>;

const PASSWORD: &str = "load-tool-password";
/// Latency histogram: 10 µs bins up to 200 ms, plus an overflow count.
const BIN_NS: u64 = 10_000;
const BINS: usize = 20_000;
/// A send record older than this is stale (sequence space reused) and not matched.
const MAX_LATENCY_NS: u64 = 5_000_000_000;

#[derive(Parser, Debug)]
#[command(about = "Measure exphub's RTP forwarding: packets/s per core of server CPU, latency, loss")]
struct Args {
    /// Participant counts to run, one round each (all participants see each other).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    participants: Vec<usize>,
    /// Experiments run at once on the one server, each its own session of N participants who
    /// see only each other, with its own experimenter (a node's capacity in experiments).
    #[arg(long, default_value_t = 1)]
    experiments: usize,
    /// Length of the measurement window of each round, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Warm-up after all media flows, before measuring, in seconds.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// The server binary (build it with `cargo build --release --bin exphub`).
    #[arg(long, default_value = "target/release/exphub")]
    server_bin: PathBuf,
    /// Directory with clip-640x480-vp8.ivf and clip-opus.ogg.
    #[arg(long, default_value = "tests/fixtures")]
    fixtures: PathBuf,
    /// The participants' camera: a VP8 IVF clip instead of the fixtures' (e.g. the face clip of
    /// `make face-clip`, tests/fixtures/faces/face-640x480-vp8.ivf, for face filters).
    #[arg(long)]
    video: Option<PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Pin the server to this CPU list (taskset syntax, e.g. "0") and the tool to the others.
    #[arg(long)]
    pin_server: Option<String>,
    /// Timeout for connecting everyone and getting all media flowing, in seconds.
    #[arg(long, default_value_t = 60)]
    setup_timeout: u64,
    /// Pause between rounds (lets the machine settle), in seconds.
    #[arg(long, default_value_t = 2)]
    pause: u64,
    /// Keep the server's log (stdout/stderr) of each round in this directory.
    #[arg(long)]
    server_log_dir: Option<PathBuf>,
    /// Run this command with the server's pid appended when the measurement window opens
    /// (e.g. a profiler: "perf record -F 499 -g -o perf.data -p"); it gets SIGINT at the end.
    #[arg(long)]
    attach: Option<String>,
    /// Video filters to set on the filtered participants, in chain order (catalogue names;
    /// `NAME:{json config}` to override the defaults), e.g. "ROTATION,EDGE_OUTLINE".
    #[arg(long, value_parser = split_filters, default_value = "")]
    filters: FilterList,
    /// How many participants (the first ones) get the filters; default all.
    #[arg(long)]
    filtered: Option<usize>,
    /// Before each filtered round, run the same round without filters (forwarding only), and
    /// report the CPU cost per transcoded stream as the difference.
    #[arg(long)]
    baseline: bool,
    /// Run every round this many times (interleaved), and print medians at the end.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Before each round, wait (up to 15 min) until the machine is less than this % busy (of
    /// all cores) for 6 s: other work (builds, browser tests) skews CPU and latency figures.
    #[arg(long)]
    quiet_before: Option<f64>,
    /// Repeat a round whose other processes used more than this % of one core during the
    /// window (up to --retries times); the noisy result is kept in the JSON as discarded.
    #[arg(long)]
    max_other_cpu: Option<f64>,
    #[arg(long, default_value_t = 2)]
    retries: usize,
    /// Record the experiment (the session's `record` flag): raw and processed files of every
    /// participant, the event log and the manifest, in the round's temporary directory.
    #[arg(long)]
    record: bool,
    /// Group filters every participant is a member of from the start (catalogue names,
    /// `NAME:{json}` overrides the config), e.g. `MOTION_SYNC,SPEECH_SYNC`: video ones in the
    /// session's `video_group_filters`, audio ones in `audio_group_filters`.
    #[arg(long, value_parser = split_filters, default_value = "")]
    group_filters: FilterList,
}

// ---------------------------------------------------------------------------------------------
// Shared measurement state (lock-free, preallocated; touched per packet).

struct Stream {
    /// Packets received (any time): proves the stream flows.
    seen: AtomicU64,
    /// Within the window: packets, lowest and highest sequence number.
    count: AtomicU64,
    min_seq: AtomicU32,
    max_seq: AtomicU32,
    /// Within the window: packets with the marker bit (video: frames).
    frames: AtomicU64,
}

impl Stream {
    fn new() -> Self {
        Self {
            seen: AtomicU64::new(0),
            count: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            min_seq: AtomicU32::new(u32::MAX),
            max_seq: AtomicU32::new(0),
        }
    }
}

struct Hist {
    bins: Vec<AtomicU64>,
    over: AtomicU64,
    n: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Hist {
    fn new() -> Self {
        Self {
            bins: (0..BINS).map(|_| AtomicU64::new(0)).collect(),
            over: AtomicU64::new(0),
            n: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
    #[inline]
    fn add(&self, ns: u64) {
        let b = (ns / BIN_NS) as usize;
        if b < BINS {
            self.bins[b].fetch_add(1, Ordering::Relaxed);
        } else {
            self.over.fetch_add(1, Ordering::Relaxed);
        }
        self.n.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }
    /// The q-quantile in ms (upper edge of its bin), or None without samples.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.n.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut acc = 0;
        for (i, b) in self.bins.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            if acc >= rank {
                return Some(((i as u64 + 1) * BIN_NS) as f64 / 1e6);
            }
        }
        Some(self.max_ns.load(Ordering::Relaxed) as f64 / 1e6)
    }
    fn summary(&self) -> LatencySummary {
        let n = self.n.load(Ordering::Relaxed);
        LatencySummary {
            samples: n,
            p50_ms: self.quantile_ms(0.50),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            mean_ms: (n > 0).then(|| self.sum_ns.load(Ordering::Relaxed) as f64 / n as f64 / 1e6),
            max_ms: (n > 0).then(|| self.max_ns.load(Ordering::Relaxed) as f64 / 1e6),
            over_200ms: self.over.load(Ordering::Relaxed),
        }
    }
}

/// Everything the send and receive callbacks touch. Publishers are numbered over all
/// experiments (experiment `e` has `e * group .. (e + 1) * group`).
struct Probe {
    base: Instant,
    /// Participants in all.
    n: usize,
    /// Participants per experiment.
    group: usize,
    experiments: usize,
    ids: Vec<String>,
    measuring: AtomicBool,
    /// [publisher][kind][seq] → send time in ns since `base`, + 1 (0: none).
    sent: Vec<AtomicU64>,
    /// [receiver][publisher][kind]; receivers 0..n are the participants, n + e the
    /// experimenter of experiment e.
    streams: Vec<Stream>,
    hist: Hist,
    hist_kind: [Hist; 2],
    unmatched: AtomicU64,
    unknown_origin: AtomicU64,
    /// Per publisher: its video is processed (re-encoded, re-numbered): no packet latency.
    filtered: Vec<bool>,
}

fn kind_idx(k: Kind) -> usize {
    match k {
        Kind::Video => 0,
        Kind::Audio => 1,
    }
}

impl Probe {
    fn new(ids: Vec<String>, group: usize, filtered: Vec<bool>) -> Self {
        let n = ids.len();
        let experiments = n / group;
        Self {
            base: Instant::now(),
            n,
            group,
            experiments,
            ids,
            measuring: AtomicBool::new(false),
            sent: (0..n * 2 * 65536).map(|_| AtomicU64::new(0)).collect(),
            streams: (0..(n + experiments) * n * 2).map(|_| Stream::new()).collect(),
            hist: Hist::new(),
            hist_kind: [Hist::new(), Hist::new()],
            unmatched: AtomicU64::new(0),
            unknown_origin: AtomicU64::new(0),
            filtered,
        }
    }

    fn stream(&self, receiver: usize, publisher: usize, kind: usize) -> &Stream {
        &self.streams[(receiver * self.n + publisher) * 2 + kind]
    }

    /// The experiment a receiver (participant or experimenter) belongs to.
    fn experiment_of(&self, receiver: usize) -> usize {
        if receiver < self.n {
            receiver / self.group
        } else {
            receiver - self.n
        }
    }

    /// Every (receiver, publisher) pair of the same experiment: the streams that must flow.
    fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.n + self.experiments).flat_map(move |r| {
            let first = self.experiment_of(r) * self.group;
            (first..first + self.group).map(move |p| (r, p))
        })
    }

    #[inline]
    fn on_sent(&self, publisher: usize, s: SentPacket) {
        let ns = s.at.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        self.sent[(publisher * 2 + kind_idx(s.kind)) * 65536 + s.seq as usize].store(ns, Ordering::Relaxed);
    }

    /// The publisher index of a received packet; no allocation. Participants see the other
    /// seats under aliases, so a summary is known by its participant name (`P<i>`) first.
    fn publisher_of(&self, receiver: usize, o: &Origin) -> Option<usize> {
        let id = match o {
            Origin::Echo => return (receiver < self.n).then_some(receiver),
            Origin::Sub { summary: Value::String(s), .. } => s.as_str(),
            Origin::Sub { summary, .. } => {
                let named = summary.get("participant_name").and_then(Value::as_str).and_then(|n| n.strip_prefix('P'));
                if let Some(i) = named.and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < self.group) {
                    return Some(self.experiment_of(receiver) * self.group + i);
                }
                summary.get("id")?.as_str()?
            }
        };
        self.ids.iter().position(|x| x == id)
    }

    #[inline]
    fn on_recv(&self, receiver: usize, o: &Origin, kind: Kind, seq: u16, marker: bool, at: Instant) {
        let Some(p) = self.publisher_of(receiver, o) else {
            self.unknown_origin.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let k = kind_idx(kind);
        let st = self.stream(receiver, p, k);
        st.seen.fetch_add(1, Ordering::Relaxed);
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        st.count.fetch_add(1, Ordering::Relaxed);
        st.min_seq.fetch_min(seq as u32, Ordering::Relaxed);
        st.max_seq.fetch_max(seq as u32, Ordering::Relaxed);
        if marker {
            st.frames.fetch_add(1, Ordering::Relaxed);
        }
        if k == 0 && self.filtered[p] {
            return; // re-encoded: sequence numbers are not the publisher's
        }
        let sent = self.sent[(p * 2 + k) * 65536 + seq as usize].load(Ordering::Relaxed);
        let now = at.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        if sent == 0 || now < sent || now - sent > MAX_LATENCY_NS {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.hist.add(now - sent);
        self.hist_kind[k].add(now - sent);
    }

    /// Video frames/s within the window per (viewer, publisher) pair: all pairs, and the pairs
    /// whose publisher is filtered.
    fn frame_rates(&self, secs: f64) -> (Vec<f64>, Vec<f64>) {
        let (mut all, mut filtered) = (vec![], vec![]);
        for (r, p) in self.pairs() {
            let fps = self.stream(r, p, 0).frames.load(Ordering::Relaxed) as f64 / secs;
            all.push(fps);
            if self.filtered[p] {
                filtered.push(fps);
            }
        }
        (all, filtered)
    }

    fn all_flowing(&self) -> (usize, usize) {
        let total = self.pairs().count() * 2;
        (total - self.missing().count(), total)
    }

    /// (receiver, publisher, kind) of the streams not seen yet.
    fn missing(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.pairs()
            .flat_map(|(r, p)| [(r, p, 0), (r, p, 1)])
            .filter(|&(r, p, k)| self.stream(r, p, k).seen.load(Ordering::Relaxed) == 0)
    }

    fn missing_streams(&self) -> Vec<String> {
        self.missing()
            .map(|(r, p, k)| {
                let rn = if r >= self.n { format!("experimenter{}", r - self.n) } else { format!("P{r}") };
                format!("{rn}<-P{p}/{}", ["video", "audio"][k])
            })
            .collect()
    }

    /// (received, expected) within the window over all streams.
    fn loss(&self) -> (u64, u64) {
        let (mut got, mut exp) = (0, 0);
        for s in &self.streams {
            let c = s.count.load(Ordering::Relaxed);
            if c == 0 {
                continue;
            }
            let (lo, hi) = (s.min_seq.load(Ordering::Relaxed), s.max_seq.load(Ordering::Relaxed));
            // No wrap expected in one window (>30 s at 2,000 packets/s); if one happened the
            // range is meaningless, so count that stream as lossless rather than invent loss.
            let e = if hi - lo > 60_000 { c } else { (hi - lo + 1) as u64 };
            got += c.min(e);
            exp += e;
        }
        (got, exp)
    }
}

// ---------------------------------------------------------------------------------------------
// /proc readers.

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in ticks.
fn proc_ticks(pid: &str) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(exphub::cluster::cpu::stat_ticks(&s).ok_or("bad /proc stat")?)
}

/// utime + stime of each thread of a process, by tid, and whether it is a media worker
/// (threads named `media-…` by `media::pipeline`).
/// Server threads by what they do (from their names).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ThreadKind {
    Other,
    /// `media-*`: pipeline workers.
    Media,
    /// `rec-*` (track recorders) and `record-*` (manifest and event-log writers).
    Recording,
}

fn thread_ticks(pid: &str) -> std::collections::HashMap<String, (ThreadKind, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for e in rd.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else { continue };
        let name = &s[open + 1..close];
        let ticks = exphub::cluster::cpu::stat_ticks(&s).unwrap_or(0);
        let kind = if name.starts_with("media-") {
            ThreadKind::Media
        } else if name.starts_with("rec-") || name.starts_with("record-") {
            ThreadKind::Recording
        } else {
            ThreadKind::Other
        };
        out.insert(tid, (kind, ticks));
    }
    out
}

/// Ticks the media worker threads used between two snapshots (threads born in between count
/// from zero; threads that ended in between are lost, which a steady window does not see).
fn media_ticks(
    a: &std::collections::HashMap<String, (ThreadKind, u64)>,
    b: &std::collections::HashMap<String, (ThreadKind, u64)>,
    kind: ThreadKind,
) -> (u64, usize) {
    let mut ticks = 0;
    let mut threads = 0;
    for (tid, (k, t)) in b {
        if *k == kind {
            threads += 1;
            ticks += t.saturating_sub(a.get(tid).map_or(0, |x| x.1));
        }
    }
    (ticks, threads)
}

/// (busy, idle) ticks of the whole machine. Busy ticks are sampled at the timer tick and
/// under-count short, timer-aligned bursts (like media pacing); idle time is measured exactly on
/// tickless kernels, so the machine's busy share is better taken as wall time minus idle.
fn machine_ticks() -> Res<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let line = s.lines().next().ok_or("empty /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return Err("short /proc/stat".into());
    }
    // user nice system idle iowait irq softirq steal (guest is included in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Ok((total - idle, idle))
}

/// (VmRSS, VmHWM) in MiB.
fn proc_rss_mib(pid: &str) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[derive(Clone, Copy)]
struct CpuSnap {
    at: Instant,
    server: u64,
    own: u64,
    busy: u64,
    idle: u64,
}

fn cpu_snap(server_pid: &str) -> Res<CpuSnap> {
    let (busy, idle) = machine_ticks()?;
    Ok(CpuSnap { at: Instant::now(), server: proc_ticks(server_pid)?, own: proc_ticks("self")?, busy, idle })
}

// ---------------------------------------------------------------------------------------------
// The server process.

struct Server {
    /// The `timeout` wrapper (or the server itself when `timeout` is unavailable).
    child: Child,
    /// The exphub process.
    pid: String,
    base: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Server {
    fn start(args: &Args, n: usize, hard_limit: Duration) -> Res<Server> {
        let k = args.experiments;
        let dir = TempDir::new(&format!("n{n}"))?;
        let sessions = dir.0.join("sessions");
        std::fs::create_dir_all(&sessions)?;
        let group = group_dicts(&args.group_filters)?;
        for (e, ids) in participant_ids(n * k).chunks(n).enumerate() {
            let sid = session_id(e);
            std::fs::write(
                sessions.join(format!("{sid}.json")),
                serde_json::to_vec_pretty(&session_json(&sid, ids, args.record, &group))?,
            )?;
        }
        let log = match &args.server_log_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.join(if k > 1 { format!("server-n{n}-k{k}.log") } else { format!("server-n{n}.log") })
            }
            None => dir.0.join("server.log"),
        };
        let mut cmd_line: Vec<String> = vec![];
        if let Some(cpus) = &args.pin_server {
            cmd_line.extend(["taskset".into(), "-c".into(), cpus.clone()]);
        }
        let wrapped = Path::new("/usr/bin/timeout").exists();
        if wrapped {
            // Dies by itself even if this tool is SIGKILLed; `--foreground` keeps it in our
            // process group, so a Ctrl-C at the terminal reaches it as well.
            cmd_line.extend([
                "/usr/bin/timeout".into(),
                "--foreground".into(),
                "-s".into(),
                "KILL".into(),
                format!("{}", hard_limit.as_secs() + 30),
            ]);
        }
        cmd_line.push(args.server_bin.display().to_string());
        cmd_line
            .extend(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"].into_iter().map(String::from));
        cmd_line.push(sessions.display().to_string());
        let mut child = Command::new(&cmd_line[0])
            .args(&cmd_line[1..])
            .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
            .env("EXPHUB_LOG", "warn")
            .env_remove("EXPHUB_CONFIG")
            .env_remove("EXPHUB_TLS_CERT")
            .env_remove("EXPHUB_TLS_KEY")
            .env_remove("EXPHUB_RTC_IP")
            .env_remove("EXPHUB_UDP_PORTS")
            .env_remove("EXPHUB_PUBLIC_IP")
            .env_remove("EXPHUB_ICE_SERVERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.0.join("server.stderr"))?))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cmd_line.join(" ")))?;
        // Drain stdout (the server logs there too) on a thread; hand over the address line.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut logf = std::fs::File::create(&log)?;
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(logf, "{line}");
                if let Some(rest) = line.strip_prefix("exphub serving on ") {
                    if let Some(t) = tx.take() {
                        let _ = t.send(rest.trim().trim_end_matches('/').to_owned());
                    }
                }
            }
        });
        let mut guard = Server { child, pid: String::new(), base: String::new(), log, _dir: dir };
        guard.base = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(b) => b,
            Err(_) => {
                let err = std::fs::read_to_string(guard._dir.0.join("server.stderr")).unwrap_or_default();
                let out = std::fs::read_to_string(&guard.log).unwrap_or_default();
                return Err(
                    format!("the server did not print its address within 15 s\nstdout: {out}\nstderr: {err}").into()
                );
            }
        };
        if !guard.base.starts_with("http://127.0.0.1:") {
            return Err(format!("unexpected server address {}", guard.base).into());
        }
        let wrapper = guard.child.id().to_string();
        guard.pid = if wrapped {
            // The exphub process is the wrapper's only child.
            let path = format!("/proc/{wrapper}/task/{wrapper}/children");
            let kids = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            let kids: Vec<&str> = kids.split_whitespace().collect();
            match kids.as_slice() {
                [one] => one.to_string(),
                other => return Err(format!("expected one child of the timeout wrapper, found {other:?}").into()),
            }
        } else {
            wrapper
        };
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", guard.pid)).unwrap_or_default();
        if comm.trim() != "exphub" {
            return Err(format!("pid {} is {:?}, not exphub", guard.pid, comm.trim()).into());
        }
        Ok(guard)
    }

    /// SIGTERM, a grace period, then SIGKILL; always reaps the child.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if !self.pid.is_empty() {
            let _ = Command::new("kill").args(["-TERM", &self.pid]).stderr(Stdio::null()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.pid.is_empty() {
            let _ = Command::new("kill").args(["-KILL", &self.pid]).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Res<Self> {
        let p = std::env::temp_dir().join(format!("exphub-load-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The participant ids of all experiments (experiment `e` has the `e`-th chunk of N).
fn participant_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a0ad{:06x}", i + 1)).collect()
}

/// The session of experiment `e` (the first one is `10ad10ad10`).
fn session_id(e: usize) -> String {
    format!("10ad10ad{:02x}", 0x10 + e)
}

/// A session with `ids` as participants, in SynthARium format (as tests/common does).
/// The test session with `ids` as participants, titled for the load tool, with an hour's limit.
fn session_json(id: &str, ids: &[String], record: bool, group: &[Value]) -> Value {
    let mut s = exphub_client::session_json(id, ids);
    let of = |ch: &str| group.iter().filter(|d| d["channel"] == ch).cloned().collect::<Vec<_>>();
    for p in s["participants"].as_array_mut().into_iter().flatten() {
        p["video_group_filters"] = json!(of("video"));
        p["audio_group_filters"] = json!(of("audio"));
    }
    s["title"] = json!("Load test");
    s["description"] = json!("exphub examples/load.rs");
    s["time_limit"] = json!(3_600_000);
    s["record"] = json!(record);
    s
}

// ---------------------------------------------------------------------------------------------
// One round.

#[derive(Serialize, Clone, Default)]
struct LatencySummary {
    samples: u64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    mean_ms: Option<f64>,
    max_ms: Option<f64>,
    over_200ms: u64,
}

#[derive(Serialize, Clone, Default)]
struct RoundResult {
    /// Participants per experiment, and experiments at once on the server.
    participants: usize,
    experiments: usize,
    /// Sinks per published track: N-1 other participants + echo + experimenter.
    sinks_per_track: usize,
    seconds: f64,
    server_received_pps: f64,
    forwarded_pps: f64,
    server_dropped: u64,
    server_cpu_pct: f64,
    /// Server CPU per experiment, in millicores (1000 = one core).
    server_millicores_per_experiment: f64,
    pps_per_core: f64,
    server_rss_mib: f64,
    server_hwm_mib: f64,
    latency: LatencySummary,
    latency_video: LatencySummary,
    latency_audio: LatencySummary,
    rx_packets: u64,
    rx_expected: u64,
    loss_pct: f64,
    unmatched: u64,
    tool_cpu_pct: f64,
    /// Machine busy minus server minus this tool, in % of one core.
    other_cpu_pct: f64,
    /// Whole machine, % of all cores: wall time minus idle, and as sampled at ticks.
    machine_busy_pct: f64,
    machine_busy_sampled_pct: f64,
    cores: usize,
    setup_s: f64,
    error: Option<String>,
    /// Repetition index (0-based) of this round.
    rep: usize,
    /// The video filters set (empty: forwarding only) and on how many participants.
    filters: Vec<String>,
    filtered: usize,
    /// A forwarding-only round run as the baseline of a filtered one.
    baseline: bool,
    /// Attempt number of this round (repeated when the machine was busy), and whether it was
    /// discarded for that reason (left out of the summary).
    attempt: usize,
    discarded: bool,
    /// CPU of the server's media worker threads, % of one core, and how many there were.
    media_cpu_pct: f64,
    media_threads: usize,
    /// CPU of the recorder and record-writer threads (with --record), % of one core.
    recording_cpu_pct: f64,
    /// Video frames/s per (viewer, publisher) pair: min and median over all pairs, and over
    /// the pairs of filtered publishers; pairs under 28 fps.
    fps_min: f64,
    fps_median: f64,
    fps_filtered_min: Option<f64>,
    fps_filtered_median: Option<f64>,
    fps_p5: f64,
    fps_pairs: usize,
    fps_pairs_below_28: usize,
    fps_pairs_at_29: usize,
    /// Server-added latency of processed frames, from the server's histogram over the window.
    server_latency_frames: u64,
    server_latency_p50_ms: Option<f64>,
    server_latency_p95_ms: Option<f64>,
    server_latency_mean_ms: Option<f64>,
    /// The histogram buckets `(lower, upper]` holding the p50 and the p95.
    server_latency_p50_bucket_ms: Option<(f64, f64)>,
    server_latency_p95_bucket_ms: Option<(f64, f64)>,
    /// Pipeline counters over the window.
    pipeline_frames_in: u64,
    pipeline_frames_out: u64,
    pipeline_frames_out_per_s: f64,
    pipeline_stale: u64,
    pipeline_decode_errors: u64,
    pipeline_input_dropped: u64,
    pipelines: u64,
    /// Group filters over the window: individual values computed, dropped at the aggregator,
    /// results.
    group_values: u64,
    group_dropped: u64,
    group_results: u64,
}

/// A round to run.
#[derive(Clone)]
struct RoundSpec {
    n: usize,
    /// Participants (the first ones) with the filters; 0: forwarding only.
    filtered: usize,
    baseline: bool,
    rep: usize,
}

/// The `--filters` items (a newtype: clap would otherwise take one value per item).
#[derive(Clone, Debug, Default)]
struct FilterList(Vec<String>);

impl std::ops::Deref for FilterList {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

/// Splits `--filters` at the commas outside `{...}` (configs are JSON objects).
fn split_filters(s: &str) -> Result<FilterList, String> {
    let (mut out, mut cur, mut depth) = (vec![], String::new(), 0i32);
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if depth != 0 {
        return Err("unbalanced braces".into());
    }
    out.push(cur);
    Ok(FilterList(out.into_iter().map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()))
}

/// `--filters` as wire filter dicts.
fn filter_dicts(names: &[String]) -> Res<Vec<Value>> {
    dicts("--filters", names, |i| i.video.is_some(), "a video filter")
}

/// `--group-filters` as wire filter dicts.
fn group_dicts(names: &[String]) -> Res<Vec<Value>> {
    dicts("--group-filters", names, |i| i.is_group(), "a group filter")
}

fn dicts(flag: &str, names: &[String], fits: fn(&filters::FilterInfo) -> bool, what: &str) -> Res<Vec<Value>> {
    let mut out = vec![];
    for (i, item) in names.iter().enumerate() {
        let (name, config) = match item.split_once(':') {
            Some((n, c)) => (n.trim(), Some(serde_json::from_str::<Value>(c).map_err(|e| format!("{flag} {n}: {e}"))?)),
            None => (item.trim(), None),
        };
        let info = filters::find(name).ok_or_else(|| format!("{flag}: unknown filter {name:?}"))?;
        if !fits(info) {
            return Err(format!("{flag}: {name} is not {what}").into());
        }
        let mut d = info.catalogue_entry();
        d["id"] = json!(format!("{}-{i}", name.to_lowercase()));
        if let Some(Value::Object(m)) = config {
            for (k, v) in m {
                d["config"][k] = v;
            }
        }
        out.push(d);
    }
    Ok(out)
}

fn metric(text: &str, name: &str) -> Res<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .ok_or_else(|| format!("metric {name} missing"))?
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("metric {name}: {e}").into())
}

/// What one GET /metrics says (pipeline figures are 0 on a server without them).
#[derive(Clone, Default)]
struct Scrape {
    forwarded: u64,
    received: u64,
    dropped: u64,
    frames_in: u64,
    frames_out: u64,
    stale: u64,
    decode_errors: u64,
    input_dropped: u64,
    pipelines: u64,
    group_values: u64,
    group_dropped: u64,
    group_results: u64,
    /// `exphub_pipeline_latency_seconds`: (upper bound in ms, cumulative count); +Inf last.
    latency_buckets: Vec<(f64, u64)>,
    latency_sum_s: f64,
}

fn latency_buckets(text: &str) -> Vec<(f64, u64)> {
    let prefix = "exphub_pipeline_latency_seconds_bucket{le=\"";
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (le, rest) = rest.split_once('"')?;
            let n = rest.trim_start_matches('}').trim().parse::<u64>().ok()?;
            let ms = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().ok()? * 1000.0 };
            Some((ms, n))
        })
        .collect()
}

/// The q-quantile (ms) of the observations between two cumulative histograms, linear within a
/// bucket (Prometheus' `histogram_quantile`); in the +Inf bucket, the last finite bound.
fn bucket_quantile(a: &[(f64, u64)], b: &[(f64, u64)], q: f64) -> Option<f64> {
    if a.len() != b.len() || b.is_empty() {
        return None;
    }
    let counts: Vec<(f64, u64)> = b.iter().zip(a).map(|(x, y)| (x.0, x.1.saturating_sub(y.1))).collect();
    // Cumulative → per bucket.
    let mut per = vec![];
    let mut prev = 0;
    for (le, cum) in &counts {
        per.push((*le, cum.saturating_sub(prev)));
        prev = *cum;
    }
    let total: u64 = per.iter().map(|x| x.1).sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut acc, mut lower) = (0u64, 0.0f64);
    for (le, c) in per {
        if c > 0 && (acc + c) as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * ((rank - acc as f64) / c as f64).clamp(0.0, 1.0));
        }
        acc += c;
        if le.is_finite() {
            lower = le;
        }
    }
    Some(lower)
}

/// The bucket `(lower, upper]` (ms) holding the q-quantile of the observations between two
/// cumulative histograms: what the histogram really knows about that quantile.
fn quantile_bucket(a: &[(f64, u64)], b: &[(f64, u64)], q: f64) -> Option<(f64, f64)> {
    if a.len() != b.len() || b.is_empty() {
        return None;
    }
    let total = b.last()?.1.saturating_sub(a.last()?.1);
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut lower = 0.0;
    for (x, y) in b.iter().zip(a) {
        if x.1.saturating_sub(y.1) >= rank {
            return Some((lower, x.0));
        }
        if x.0.is_finite() {
            lower = x.0;
        }
    }
    None
}

async fn scrape(base: &str) -> Res<Scrape> {
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), exphub_client::get(base, "/metrics"))
        .await
        .map_err(|_| "GET /metrics timed out")??;
    if status != 200 {
        return Err(format!("GET /metrics: HTTP {status}").into());
    }
    let t = String::from_utf8_lossy(&body);
    let opt = |name: &str| metric(&t, name).unwrap_or(0);
    Ok(Scrape {
        forwarded: metric(&t, "exphub_rtp_packets_forwarded_total")?,
        received: metric(&t, "exphub_rtp_packets_received_total")?,
        dropped: metric(&t, "exphub_rtp_packets_dropped_total")?,
        frames_in: opt("exphub_pipeline_frames_in_total"),
        frames_out: opt("exphub_pipeline_frames_out_total"),
        stale: opt("exphub_pipeline_frames_stale_total"),
        decode_errors: opt("exphub_pipeline_decode_errors_total"),
        input_dropped: opt("exphub_pipeline_input_dropped_total"),
        pipelines: opt("exphub_pipelines"),
        group_values: opt("exphub_group_values_total"),
        group_dropped: opt("exphub_group_values_dropped_total"),
        group_results: opt("exphub_group_results_total"),
        latency_buckets: latency_buckets(&t),
        latency_sum_s: t
            .lines()
            .find_map(|l| l.strip_prefix("exphub_pipeline_latency_seconds_sum "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0),
    })
}

fn recv_opts(probe: &Arc<Probe>, receiver: usize) -> ClientOptions {
    let p = probe.clone();
    let cb: RtpCallback = Arc::new(move |o: &Origin, kind: Kind, pkt: &rtc::rtp::Packet, at: Instant| {
        p.on_recv(receiver, o, kind, pkt.header.sequence_number, pkt.header.marker, at);
    });
    ClientOptions { on_rtp: Some(cb), ..Default::default() }
}

async fn step<T>(what: &str, secs: u64, f: impl std::future::Future<Output = Res<T>>) -> Res<T> {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}").into()),
        Err(_) => Err(format!("{what}: timed out after {secs} s").into()),
    }
}

/// Clients and players of a round, torn down on every path.
struct Crowd {
    /// One experimenter per experiment.
    exps: Vec<Client>,
    parts: Vec<Client>,
    players: Vec<tokio::task::JoinHandle<()>>,
}

impl Crowd {
    async fn close(mut self) {
        for h in self.players.drain(..) {
            h.abort();
        }
        let mut all: Vec<Client> = self.parts.drain(..).collect();
        all.append(&mut self.exps);
        let closes = all.into_iter().map(|c| tokio::time::timeout(Duration::from_secs(5), c.close()));
        let _ = futures_util::future::join_all(closes).await;
    }
}

/// Set once SIGINT/SIGTERM arrived: the current round is torn down and no other starts.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Resolves once INTERRUPTED is set.
async fn interrupted() {
    while !INTERRUPTED.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves on SIGINT or SIGTERM (sent to this tool alone, e.g. by `kill` or a supervisor).
async fn stop_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut t) => {
                t.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}

async fn round(args: &Args, spec: &RoundSpec, dicts: &[Value], media: Arc<Media>, tck: f64) -> Res<RoundResult> {
    let n = spec.n;
    // Setting filters gets its own setup timeout.
    let hard_limit =
        Duration::from_secs((args.experiments as u64 + 1) * args.setup_timeout + args.warmup + args.seconds + 60);
    let mut server = Server::start(args, n, hard_limit)?;
    let base = server.base.clone();
    eprintln!("[N={n}] server pid {} on {base}", server.pid);
    let ids = participant_ids(n * args.experiments);
    let filtered = (0..ids.len()).map(|i| i % n < spec.filtered).collect();
    let probe = Arc::new(Probe::new(ids, n, filtered));
    let mut crowd = Crowd { exps: vec![], parts: vec![], players: vec![] };
    let res = tokio::select! {
        r = tokio::time::timeout(hard_limit, measure(args, spec, dicts, &base, &mut server, &probe, &mut crowd, media, tck)) => r,
        _ = interrupted() => Ok(Err("interrupted by a signal".into())),
    };
    let out = match res {
        Ok(r) => r,
        Err(_) => Err(format!("round exceeded its hard limit of {} s", hard_limit.as_secs()).into()),
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), crowd.close()).await;
    server.stop();
    if let Err(e) = &out {
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!(
            "[N={n}] failed: {e}\n[N={n}] server log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    spec: &RoundSpec,
    dicts: &[Value],
    base: &str,
    server: &mut Server,
    probe: &Arc<Probe>,
    crowd: &mut Crowd,
    media: Arc<Media>,
    tck: f64,
) -> Res<RoundResult> {
    let n = spec.n;
    let t0 = Instant::now();
    for e in 0..probe.experiments {
        let sid = session_id(e);
        let mut exp = step(
            "experimenter connects",
            20,
            Client::connect(base, Role::Experimenter { password: PASSWORD.into() }, recv_opts(probe, probe.n + e)),
        )
        .await?;
        exp.send("CREATE_EXPERIMENT", json!({"session_id": sid})).await?;
        let (created, _) = exp
            .recv_type("EXPERIMENT_CREATED", Duration::from_secs(10))
            .await
            .map_err(|e| format!("CREATE_EXPERIMENT: {e}"))?;
        if created["data"]["session_id"] != sid {
            return Err(format!("unexpected EXPERIMENT_CREATED: {created}").into());
        }
        for i in e * n..(e + 1) * n {
            let role = Role::Participant { session_id: sid.clone(), participant_id: probe.ids[i].clone() };
            let c = step(&format!("participant {i} connects"), 20, Client::connect(base, role, recv_opts(probe, i)))
                .await?;
            let (Some(v), Some(a)) = (c.video_out.clone(), c.audio_out.clone()) else {
                return Err("participant client has no outgoing tracks".into());
            };
            let p = probe.clone();
            let m = media.clone();
            let sent: Arc<dyn Fn(SentPacket) + Send + Sync> = Arc::new(move |s| p.on_sent(i, s));
            crowd.players.push(tokio::spawn(async move { m.play(v, a, Some(sent)).await }));
            crowd.parts.push(c);
        }
        exp.send("START_EXPERIMENT", json!({})).await?;
        exp.recv_type("EXPERIMENT_STARTED", Duration::from_secs(10))
            .await
            .map_err(|e| format!("START_EXPERIMENT: {e}"))?;
        crowd.exps.push(exp);
    }
    // Everyone sees everyone of its experiment (and its echo); each experimenter sees all of
    // its experiment.
    let deadline = Instant::now() + Duration::from_secs(args.setup_timeout);
    loop {
        let (ok, total) = probe.all_flowing();
        if ok == total {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "media not flowing after {} s: {}/{} streams; missing {:?}",
                args.setup_timeout,
                ok,
                total,
                probe.missing_streams()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let setup_s = t0.elapsed().as_secs_f64();
    eprintln!("[N={n}] all {} streams flowing after {setup_s:.1} s", probe.all_flowing().1);
    if spec.filtered > 0 {
        set_filters(args, spec, dicts, base, crowd).await?;
    }
    eprintln!("[N={n}] warm-up {} s", args.warmup);
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    // The window.
    let m0 = scrape(base).await?;
    let th0 = thread_ticks(&server.pid);
    let c0 = cpu_snap(&server.pid)?;
    probe.measuring.store(true, Ordering::Relaxed);
    let mut attached = match &args.attach {
        Some(cmd) => {
            let mut parts = cmd.split_whitespace();
            let prog = parts.next().ok_or("--attach is empty")?;
            Some(Command::new(prog).args(parts).arg(&server.pid).stdin(Stdio::null()).spawn()?)
        }
        None => None,
    };
    let mut rss_max = 0f64;
    let window_end = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < window_end {
        tokio::time::sleep(Duration::from_millis(500).min(window_end.saturating_duration_since(Instant::now()))).await;
        rss_max = rss_max.max(proc_rss_mib(&server.pid).0);
        if matches!(server.child.try_wait(), Ok(Some(_))) {
            return Err("the server exited during the measurement".into());
        }
    }
    probe.measuring.store(false, Ordering::Relaxed);
    let c1 = cpu_snap(&server.pid)?;
    let th1 = thread_ticks(&server.pid);
    let m1 = scrape(base).await?;
    if let Some(a) = attached.as_mut() {
        let _ = Command::new("kill").args(["-INT", &a.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !matches!(a.try_wait(), Ok(Some(_))) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = a.kill();
        let _ = a.wait();
    }
    let (rss, hwm) = proc_rss_mib(&server.pid);
    if args.record {
        // Proof that the round recorded: the files and bytes so far.
        let dirs = (0..probe.experiments).map(|e| server._dir.0.join("sessions").join(session_id(e)));
        let (mut files, mut bytes) = (0u64, 0u64);
        for e in dirs.flat_map(std::fs::read_dir).flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with(".webm") {
                files += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        eprintln!("[N={n}] recording: {files} media files, {:.1} MB so far", bytes as f64 / 1e6);
        if files == 0 {
            return Err("--record: nothing was recorded".into());
        }
    }

    let secs = c1.at.duration_since(c0.at).as_secs_f64();
    let ticks = |a: u64, b: u64| b.saturating_sub(a) as f64 / tck;
    let server_cpu = ticks(c0.server, c1.server) / secs * 100.0;
    let tool_cpu = ticks(c0.own, c1.own) / secs * 100.0;
    let ncores = cores() as f64;
    let busy_sampled = ticks(c0.busy, c1.busy) / secs * 100.0; // % of one core
    let busy = (ncores * 100.0 - ticks(c0.idle, c1.idle) / secs * 100.0).clamp(0.0, ncores * 100.0).max(busy_sampled);
    let other = (busy - server_cpu - tool_cpu).max(0.0);
    let fwd_pps = (m1.forwarded - m0.forwarded) as f64 / secs;
    let rx_pps = (m1.received - m0.received) as f64 / secs;
    let (got, expected) = probe.loss();
    let (rec_ticks, rec_threads) = media_ticks(&th0, &th1, ThreadKind::Recording);
    let (media_ticks, media_threads) = media_ticks(&th0, &th1, ThreadKind::Media);
    if args.record {
        eprintln!(
            "[N={n}] recording threads: {:.2}% of a core ({rec_threads} threads)",
            rec_ticks as f64 / tck / (c1.at.duration_since(c0.at).as_secs_f64()) * 100.0
        );
    }
    let (fps_all, fps_filtered) = probe.frame_rates(secs);
    let experiments = probe.experiments;
    let lat_frames =
        m1.latency_buckets.last().map_or(0, |b| b.1).saturating_sub(m0.latency_buckets.last().map_or(0, |b| b.1));
    Ok(RoundResult {
        participants: n,
        experiments,
        sinks_per_track: n + 1,
        seconds: secs,
        server_received_pps: rx_pps,
        forwarded_pps: fwd_pps,
        server_dropped: m1.dropped - m0.dropped,
        server_cpu_pct: server_cpu,
        server_millicores_per_experiment: server_cpu * 10.0 / experiments as f64,
        pps_per_core: if server_cpu > 0.0 { fwd_pps / (server_cpu / 100.0) } else { f64::NAN },
        server_rss_mib: rss.max(rss_max),
        server_hwm_mib: hwm,
        latency: probe.hist.summary(),
        latency_video: probe.hist_kind[0].summary(),
        latency_audio: probe.hist_kind[1].summary(),
        rx_packets: got,
        rx_expected: expected,
        loss_pct: if expected > 0 { (expected - got) as f64 / expected as f64 * 100.0 } else { f64::NAN },
        unmatched: probe.unmatched.load(Ordering::Relaxed),
        tool_cpu_pct: tool_cpu,
        other_cpu_pct: other,
        machine_busy_pct: busy / ncores,
        machine_busy_sampled_pct: busy_sampled / ncores,
        cores: cores(),
        setup_s,
        error: None,
        rep: spec.rep,
        filters: if spec.filtered > 0 { args.filters.to_vec() } else { vec![] },
        filtered: spec.filtered,
        baseline: spec.baseline,
        attempt: 0,
        discarded: false,
        media_cpu_pct: ticks(0, media_ticks) / secs * 100.0,
        media_threads,
        recording_cpu_pct: ticks(0, rec_ticks) / secs * 100.0,
        fps_min: fps_all.iter().copied().fold(f64::INFINITY, f64::min),
        fps_median: median(&fps_all).unwrap_or(f64::NAN),
        fps_filtered_min: (!fps_filtered.is_empty())
            .then(|| fps_filtered.iter().copied().fold(f64::INFINITY, f64::min)),
        fps_filtered_median: median(&fps_filtered),
        fps_p5: quantile(&fps_all, 0.05).unwrap_or(f64::NAN),
        fps_pairs: fps_all.len(),
        fps_pairs_below_28: fps_all.iter().filter(|f| **f < 28.0).count(),
        fps_pairs_at_29: fps_all.iter().filter(|f| **f >= 29.0).count(),
        server_latency_frames: lat_frames,
        server_latency_p50_ms: bucket_quantile(&m0.latency_buckets, &m1.latency_buckets, 0.50),
        server_latency_p95_ms: bucket_quantile(&m0.latency_buckets, &m1.latency_buckets, 0.95),
        server_latency_p50_bucket_ms: quantile_bucket(&m0.latency_buckets, &m1.latency_buckets, 0.50),
        server_latency_p95_bucket_ms: quantile_bucket(&m0.latency_buckets, &m1.latency_buckets, 0.95),
        server_latency_mean_ms: (lat_frames > 0)
            .then(|| (m1.latency_sum_s - m0.latency_sum_s) * 1000.0 / lat_frames as f64),
        pipeline_frames_in: m1.frames_in - m0.frames_in,
        pipeline_frames_out: m1.frames_out - m0.frames_out,
        pipeline_frames_out_per_s: (m1.frames_out - m0.frames_out) as f64 / secs,
        pipeline_stale: m1.stale - m0.stale,
        pipeline_decode_errors: m1.decode_errors - m0.decode_errors,
        pipeline_input_dropped: m1.input_dropped - m0.input_dropped,
        pipelines: m1.pipelines,
        group_values: m1.group_values - m0.group_values,
        group_dropped: m1.group_dropped - m0.group_dropped,
        group_results: m1.group_results - m0.group_results,
    })
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

/// The q-quantile (nearest rank) of the values, NaN left out.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied()
}

/// Waits until the machine is less than `pct` % busy (all cores) over three 2-s windows in a
/// row, for at most 15 minutes.
async fn wait_quiet(pct: f64) {
    let start = Instant::now();
    let mut quiet = 0;
    let Ok(mut prev) = machine_ticks() else { return };
    while quiet < 3 {
        if start.elapsed() > Duration::from_secs(900) || INTERRUPTED.load(Ordering::Relaxed) {
            eprintln!("load: the machine did not become quiet within 15 min; measuring anyway");
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(now) = machine_ticks() else { return };
        let (busy, idle) = (now.0.saturating_sub(prev.0) as f64, now.1.saturating_sub(prev.1) as f64);
        prev = now;
        let pct_busy = if busy + idle > 0.0 { busy / (busy + idle) * 100.0 } else { 0.0 };
        quiet = if pct_busy < pct { quiet + 1 } else { 0 };
    }
    if start.elapsed() > Duration::from_secs(7) {
        eprintln!("load: waited {:.0} s for a quiet machine", start.elapsed().as_secs_f64());
    }
}

/// The experimenter sets the video filters of the first `spec.filtered` participants; returns
/// once every pipeline runs and processed frames flow at (nearly) the source rate.
async fn set_filters(args: &Args, spec: &RoundSpec, dicts: &[Value], base: &str, crowd: &mut Crowd) -> Res<()> {
    let n = spec.n;
    let t0 = Instant::now();
    let ids = participant_ids(n * crowd.exps.len());
    let filtered = spec.filtered * crowd.exps.len();
    for (exp, ids) in crowd.exps.iter_mut().zip(ids.chunks(n)) {
        exp.drain();
        for pid in ids.iter().take(spec.filtered) {
            exp.send("SET_FILTERS", json!({"participant_id": pid, "audio_filters": [], "video_filters": dicts}))
                .await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let m = exp.recv(left).await.map_err(|e| format!("SET_FILTERS for {pid}: {e}"))?;
                match m["type"].as_str() {
                    Some("SUCCESS") if m["data"]["type"] == "SET_FILTERS" => break,
                    Some("ERROR") => return Err(format!("SET_FILTERS for {pid}: {m}").into()),
                    _ => {}
                }
            }
        }
    }
    // Processed frames flow: every pipeline runs and frames come out at >= 90% of 30 fps each.
    let deadline = t0 + Duration::from_secs(args.setup_timeout);
    loop {
        let a = scrape(base).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = scrape(base).await?;
        let rate = (b.frames_out - a.frames_out) as f64;
        if b.pipelines as usize >= filtered && rate >= 27.0 * filtered as f64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processed video not flowing {} s after SET_FILTERS: {} pipelines, {rate:.0} frames/s out",
                args.setup_timeout, b.pipelines
            )
            .into());
        }
    }
    eprintln!(
        "[N={n}] filters {:?} set on {filtered} participant(s); processed video flows after {:.1} s",
        *args.filters,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

const HEADER: &str = "| N | experiments | sinks/track | fwd pkt/s | server CPU % | server millicores per experiment | **fwd pkt/s per core** | RSS MiB | p50 ms | p95 ms | p99 ms | max ms | loss % | dropped | fps min / p5, all pairs | pairs ≥ 29 fps | tool CPU % | other CPU % | machine busy % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn row(r: &RoundResult) -> String {
    if let Some(e) = &r.error {
        return format!(
            "| {} | {} | - | - | - | - | - | - | - | - | - | - | - | - | - | - | - | - | failed: {} |",
            r.participants,
            r.experiments,
            e.replace('|', "/").replace('\n', " ")
        );
    }
    format!(
        "| {} | {} | {} | {:.0} | {:.1} | {:.0} | **{:.0}** | {:.1} | {} | {} | {} | {} | {:.3} | {} | {:.1} / {:.1} | {} of {} | {:.1} | {:.1} | {:.1} |",
        r.participants,
        r.experiments,
        r.sinks_per_track,
        r.forwarded_pps,
        r.server_cpu_pct,
        r.server_millicores_per_experiment,
        r.pps_per_core,
        r.server_rss_mib,
        fmt_ms(r.latency.p50_ms),
        fmt_ms(r.latency.p95_ms),
        fmt_ms(r.latency.p99_ms),
        fmt_ms(r.latency.max_ms),
        r.loss_pct,
        r.server_dropped,
        r.fps_min,
        r.fps_p5,
        r.fps_pairs_at_29,
        r.fps_pairs,
        r.tool_cpu_pct,
        r.other_cpu_pct,
        r.machine_busy_pct,
    )
}

const MEDIA_HEADER: &str = "| N | filtered | rep | server CPU % | media threads CPU % (threads) | rest of server CPU % | fps min / median, all pairs | fps min / median, filtered publishers | pairs < 28 fps | server-added p50 / p95 / mean ms (bucket of the p95) | frames out/s | stale | decode err | input dropped | rtp dropped | loss % | tool CPU % | other CPU % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

fn fmt_bucket(b: Option<(f64, f64)>) -> String {
    match b {
        Some((lo, hi)) if hi.is_finite() => format!("({lo}, {hi}]"),
        Some((lo, _)) => format!("(> {lo})"),
        None => String::new(),
    }
}

fn media_row(r: &RoundResult) -> String {
    let mode = if r.discarded {
        format!("{} (discarded: busy machine)", r.filtered)
    } else if r.filtered > 0 {
        r.filtered.to_string()
    } else if r.baseline {
        "0 (baseline)".into()
    } else {
        "0".into()
    };
    if let Some(e) = &r.error {
        return format!(
            "| {} | {mode} | {} | failed: {} |",
            r.participants,
            r.rep,
            e.replace('|', "/").replace('\n', " ")
        );
    }
    format!(
        "| {} | {mode} | {} | {:.1} | {:.1} ({}) | {:.1} | {:.1} / {:.1} | {} / {} | {} of {} | {} / {} / {} {} | {:.1} | {} | {} | {} | {} | {:.3} | {:.1} | {:.1} |",
        r.participants,
        r.rep,
        r.server_cpu_pct,
        r.media_cpu_pct,
        r.media_threads,
        r.server_cpu_pct - r.media_cpu_pct,
        r.fps_min,
        r.fps_median,
        fmt_opt(r.fps_filtered_min, 1),
        fmt_opt(r.fps_filtered_median, 1),
        r.fps_pairs_below_28,
        r.fps_pairs,
        fmt_opt(r.server_latency_p50_ms, 1),
        fmt_opt(r.server_latency_p95_ms, 1),
        fmt_opt(r.server_latency_mean_ms, 1),
        fmt_bucket(r.server_latency_p95_bucket_ms),
        r.pipeline_frames_out_per_s,
        r.pipeline_stale,
        r.pipeline_decode_errors,
        r.pipeline_input_dropped,
        r.server_dropped,
        r.loss_pct,
        r.tool_cpu_pct,
        r.other_cpu_pct,
    )
}

/// Medians over repetitions per (N, filtered), and the paired cost per transcoded stream.
fn summary(results: &[RoundResult]) -> String {
    let mut keys: Vec<(usize, usize)> = vec![];
    let results: Vec<RoundResult> = results.iter().filter(|r| !r.discarded).cloned().collect();
    let results = &results[..];
    for r in results.iter().filter(|r| r.error.is_none()) {
        if !keys.contains(&(r.participants, r.filtered)) {
            keys.push((r.participants, r.filtered));
        }
    }
    let mut s = String::from(
        "Medians over repetitions:\n\n| N | filtered | runs | server CPU % | media threads CPU % | fps min (worst run) | fps median | server-added p50 / p95 ms (worst p95) | stale | other CPU % (max) | transcode cost per filtered stream, % of a core: server Δ vs baseline / media threads |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (n, f) in keys {
        let rs: Vec<&RoundResult> =
            results.iter().filter(|r| r.error.is_none() && r.participants == n && r.filtered == f).collect();
        let med = |g: &dyn Fn(&RoundResult) -> f64| median(&rs.iter().map(|r| g(r)).collect::<Vec<_>>());
        let worst = |g: &dyn Fn(&RoundResult) -> f64, min: bool| {
            rs.iter()
                .map(|r| g(r))
                .filter(|x| x.is_finite())
                .fold(if min { f64::INFINITY } else { f64::NEG_INFINITY }, |a, b| if min { a.min(b) } else { a.max(b) })
        };
        // Paired differences: each filtered round against the baseline round of its repetition.
        let cost = if f > 0 {
            let d: Vec<f64> = rs
                .iter()
                .filter_map(|r| {
                    let b = results
                        .iter()
                        .find(|b| b.error.is_none() && b.baseline && b.participants == n && b.rep == r.rep)?;
                    Some((r.server_cpu_pct - b.server_cpu_pct) / f as f64)
                })
                .collect();
            format!(
                "{} / {}",
                fmt_opt(median(&d), 1),
                fmt_opt(med(&|r| r.media_cpu_pct / (f * r.experiments) as f64), 1)
            )
        } else {
            "-".into()
        };
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "| {n} | {f} | {} | {} | {} | {} ({}) | {} | {} / {} ({}) | {} | {} | {cost} |\n",
                rs.len(),
                fmt_opt(med(&|r| r.server_cpu_pct), 1),
                fmt_opt(med(&|r| r.media_cpu_pct), 1),
                fmt_opt(med(&|r| r.fps_min), 1),
                fmt_opt(Some(worst(&|r| r.fps_min, true)), 1),
                fmt_opt(med(&|r| r.fps_median), 1),
                fmt_opt(med(&|r| r.server_latency_p50_ms.unwrap_or(f64::NAN)), 1),
                fmt_opt(med(&|r| r.server_latency_p95_ms.unwrap_or(f64::NAN)), 1),
                fmt_opt(Some(worst(&|r| r.server_latency_p95_ms.unwrap_or(f64::NAN), false)), 1),
                fmt_opt(med(&|r| r.pipeline_stale as f64), 0),
                fmt_opt(Some(worst(&|r| r.other_cpu_pct, false)), 1),
            ),
        );
    }
    s
}

fn check_binary(bin: &Path) -> Res<()> {
    let meta = std::fs::metadata(bin).map_err(|_| {
        format!(
            "{} not found: build it first with `cargo build --release --bin exphub` (or pass --server-bin)",
            bin.display()
        )
    })?;
    // Warn when sources are newer than the binary (someone changed src/ since the build).
    let built = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![PathBuf::from("src")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "tests.rs") {
                // unit tests do not change the binary
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                    newest = Some((m, p));
                }
            }
        }
    }
    if let Some((t, p)) = newest {
        if t > built {
            eprintln!("warning: {} is newer than {}; rebuild with `cargo build --release --bin exphub` to measure the current code", p.display(), bin.display());
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("load: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

fn real_main(args: Args) -> Res<()> {
    if args.participants.is_empty() || args.participants.iter().any(|&n| n == 0 || n > 32) {
        return Err("--participants: give counts between 1 and 32".into());
    }
    if args.experiments == 0 || args.participants.iter().any(|&n| n * args.experiments > 128) {
        return Err("--experiments: give 1 or more, at most 128 participants in all".into());
    }
    if args.seconds == 0 || args.seconds > 600 {
        return Err("--seconds must be 1..=600".into());
    }
    check_binary(&args.server_bin)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("LOAD_LOG").unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(cpus) = &args.pin_server {
        // The tool takes the other CPUs (set before the runtime starts its threads).
        let all: Vec<usize> = (0..cores()).collect();
        let server: Vec<usize> = parse_cpu_list(cpus)?;
        let own: Vec<String> = all.iter().filter(|c| !server.contains(c)).map(|c| c.to_string()).collect();
        if own.is_empty() {
            return Err("--pin-server leaves no CPU for the tool".into());
        }
        let st = Command::new("taskset")
            .args(["-a", "-p", "-c", &own.join(","), &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            return Err("taskset failed".into());
        }
    }
    let media = Arc::new(
        Media::load(
            &args.video.clone().unwrap_or_else(|| args.fixtures.join("clip-640x480-vp8.ivf")),
            &args.fixtures.join("clip-opus.ogg"),
        )
        .map_err(|e| format!("loading fixtures from {}: {e}", args.fixtures.display()))?,
    );
    let vpkts: usize = media.video.iter().map(|f| f.len()).sum();
    eprintln!(
        "fixture: {} video frames ({:.2} packets/frame, {:.0} ms/frame), {} audio packets; per publisher ≈ {:.0} video + 50 audio pkt/s",
        media.video.len(),
        vpkts as f64 / media.video.len() as f64,
        media.video_frame_interval.as_secs_f64() * 1e3,
        media.audio.len(),
        vpkts as f64 / media.video.len() as f64 / media.video_frame_interval.as_secs_f64(),
    );
    let tck = clk_tck();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // From here on SIGINT/SIGTERM tear the current round down (server included) and end the run.
    rt.spawn(async {
        let sig = stop_signal().await;
        eprintln!("load: {sig}: stopping");
        INTERRUPTED.store(true, Ordering::Relaxed);
    });
    let dicts = filter_dicts(&args.filters)?;
    let mut specs = vec![];
    for rep in 0..args.repeat.max(1) {
        for &n in &args.participants {
            let filtered = if args.filters.is_empty() { 0 } else { args.filtered.unwrap_or(n).min(n) };
            if args.baseline && filtered > 0 {
                specs.push(RoundSpec { n, filtered: 0, baseline: true, rep });
            }
            specs.push(RoundSpec { n, filtered, baseline: false, rep });
        }
    }
    let mut results = vec![];
    println!("{HEADER}");
    for (i, spec) in specs.iter().enumerate() {
        for attempt in 0..=args.retries {
            let n = spec.n;
            if INTERRUPTED.load(Ordering::Relaxed) {
                break;
            }
            if i > 0 || attempt > 0 {
                rt.block_on(async {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(args.pause)) => {}
                        _ = interrupted() => {}
                    }
                });
                if INTERRUPTED.load(Ordering::Relaxed) {
                    break;
                }
            }
            if let Some(pct) = args.quiet_before {
                rt.block_on(wait_quiet(pct));
            }
            let mut r = match rt.block_on(round(&args, spec, &dicts, media.clone(), tck)) {
                Ok(r) => r,
                Err(e) => RoundResult {
                    participants: n,
                    experiments: args.experiments,
                    rep: spec.rep,
                    filtered: spec.filtered,
                    baseline: spec.baseline,
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            };
            println!("{}", row(&r));
            if r.error.is_none() && (spec.filtered > 0 || !args.filters.is_empty()) {
                eprintln!("[N={n}] media: {}", media_row(&r));
                if r.group_values > 0 {
                    eprintln!(
                        "[N={n}] group filters: {} values, {} dropped, {} results in the window",
                        r.group_values, r.group_dropped, r.group_results
                    );
                }
            }
            if r.error.is_none() {
                eprintln!(
                "[N={n}] server rx {:.0} pkt/s, latency video p50/p95/p99 {}/{}/{} ms, audio {}/{}/{} ms, {} samples, {} unmatched, {} of {} received",
                r.server_received_pps,
                fmt_ms(r.latency_video.p50_ms),
                fmt_ms(r.latency_video.p95_ms),
                fmt_ms(r.latency_video.p99_ms),
                fmt_ms(r.latency_audio.p50_ms),
                fmt_ms(r.latency_audio.p95_ms),
                fmt_ms(r.latency_audio.p99_ms),
                r.latency.samples,
                r.unmatched,
                r.rx_packets,
                r.rx_expected,
            );
            }
            r.attempt = attempt;
            let noisy = args.max_other_cpu.is_some_and(|m| r.error.is_none() && r.other_cpu_pct > m);
            r.discarded = noisy && attempt < args.retries;
            let again = r.discarded;
            if again {
                eprintln!(
                    "[N={n}] other processes used {:.0}% of a core (> {:.0}): repeating this round",
                    r.other_cpu_pct,
                    args.max_other_cpu.unwrap_or(0.0)
                );
            }
            results.push(r);
            if !again {
                break;
            }
        }
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    if !args.filters.is_empty() {
        println!("\nMedia pipeline, per round:\n\n{MEDIA_HEADER}");
        for r in &results {
            println!("{}", media_row(r));
        }
        println!("\n{}", summary(&results));
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "tool": "exphub examples/load.rs",
            "server_bin": args.server_bin.display().to_string(),
            "seconds": args.seconds,
            "warmup": args.warmup,
            "pin_server": args.pin_server,
            "filters": *args.filters,
            "filter_dicts": dicts,
            "filtered": args.filtered,
            "repeat": args.repeat,
            "experiments": args.experiments,
            "cores": cores(),
            "rounds": results,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    if results.iter().any(|r| r.error.is_some()) {
        return Err("some rounds failed".into());
    }
    Ok(())
}

fn parse_cpu_list(s: &str) -> Res<Vec<usize>> {
    let mut v = vec![];
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => v.extend(a.trim().parse::<usize>()?..=b.trim().parse::<usize>()?),
            None => v.push(part.trim().parse()?),
        }
    }
    Ok(v)
}
