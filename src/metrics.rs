//! Process-wide counters, rendered as Prometheus text at `GET /metrics`.
//!
//! Counters are plain relaxed atomics: the media path increments them per packet without a
//! lock, and a scrape reads a slightly racy but monotonic snapshot.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::protocol::error::ErrorType;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (ms) of the latency histogram's buckets.
const LATENCY_BUCKETS_MS: [f64; 14] =
    [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0];
/// Upper bounds (ms) of the upload lag's buckets (a file finished → its copy in the store).
const LAG_BUCKETS_MS: [f64; 14] =
    [10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 10e3, 30e3, 60e3, 120e3, 300e3];

/// A fixed-bucket histogram of durations: lock-free `observe`, Prometheus rendering and
/// approximate quantiles.
pub struct Histogram {
    bounds: &'static [f64; 14],
    buckets: [AtomicU64; 15],
    sum_us: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Self {
        Self::with_bounds(&LATENCY_BUCKETS_MS)
    }

    const fn with_bounds(bounds: &'static [f64; 14]) -> Self {
        Self { bounds, buckets: [const { AtomicU64::new(0) }; 15], sum_us: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = self.bounds.iter().position(|b| ms <= *b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += b.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(le) => {
                    let _ = writeln!(s, "{name}_bucket{{le=\"{}\"}} {cum}", le / 1000.0);
                }
                None => {
                    let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {cum}");
                }
            }
        }
        let _ = writeln!(s, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {cum}");
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Self(AtomicI64::new(0))
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `n` (may be negative) atomically: for gauges changed from many tasks at once.
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Metrics {
    pub connections_participant: Gauge,
    pub connections_experimenter: Gauge,
    pub subconnections: Gauge,
    pub live_experiments: Gauge,
    /// UDP ports bound by peer connections (one per connection, until it is closed).
    pub udp_ports: Gauge,
    /// Peer connections still in memory (the WebRTC stack's state of each; freed after close).
    pub peer_connections_allocated: Gauge,
    /// Bytes of trickled candidates held for connection ids not answered yet.
    pub ice_buffered_bytes: Gauge,
    /// Open HTTP(S) connections.
    pub http_connections: Gauge,
    /// HTTP connections turned away at the connection cap.
    pub http_connections_refused: Counter,
    pub offers_total: Counter,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub packets_received: Counter,
    pub packets_forwarded: Counter,
    pub bytes_forwarded: Counter,
    pub packets_dropped: Counter,
    pub pli_sent: Counter,
    pub pli_received: Counter,
    pub session_writes: Counter,
    pub pipelines: Gauge,
    pub pipeline_frames_in: Counter,
    pub pipeline_frames_out: Counter,
    pub pipeline_frames_stale: Counter,
    pub pipeline_decode_errors: Counter,
    pub pipeline_input_dropped: Counter,
    pub filter_panics: Counter,
    pub group_values: Counter,
    pub group_values_dropped: Counter,
    pub group_values_late: Counter,
    pub group_results: Counter,
    pub record_frames: Counter,
    pub record_dropped: Counter,
    pub record_errors: Counter,
    /// RTP arrival of a frame's last packet to the send of its processed frame.
    pub pipeline_latency: Histogram,
    /// Nanoseconds the hub task spent handling inputs (its busy time; idle waits excluded).
    pub hub_busy_ns: Counter,
    /// Inputs the hub task handled.
    pub hub_inputs: Counter,
    /// Inputs waiting in the hub's queue, sampled each time the hub takes one.
    pub hub_queue_depth: Gauge,
    /// Object store uploads (`record::uploader`): done, failed for good, bytes, jobs queued,
    /// and the lag from a file's end to its copy in the store.
    pub uploads_done: Counter,
    pub uploads_failed: Counter,
    pub upload_bytes: Counter,
    pub upload_queue: Gauge,
    pub upload_lag: Histogram,
    errors: Mutex<Vec<(ErrorType, u64)>>,
}

pub static METRICS: Metrics = Metrics {
    connections_participant: Gauge::new(),
    connections_experimenter: Gauge::new(),
    subconnections: Gauge::new(),
    live_experiments: Gauge::new(),
    udp_ports: Gauge::new(),
    peer_connections_allocated: Gauge::new(),
    ice_buffered_bytes: Gauge::new(),
    http_connections: Gauge::new(),
    http_connections_refused: Counter::new(),
    offers_total: Counter::new(),
    messages_received: Counter::new(),
    messages_sent: Counter::new(),
    packets_received: Counter::new(),
    packets_forwarded: Counter::new(),
    bytes_forwarded: Counter::new(),
    packets_dropped: Counter::new(),
    pli_sent: Counter::new(),
    pli_received: Counter::new(),
    session_writes: Counter::new(),
    pipelines: Gauge::new(),
    pipeline_frames_in: Counter::new(),
    pipeline_frames_out: Counter::new(),
    pipeline_frames_stale: Counter::new(),
    pipeline_decode_errors: Counter::new(),
    pipeline_input_dropped: Counter::new(),
    filter_panics: Counter::new(),
    group_values: Counter::new(),
    group_values_dropped: Counter::new(),
    group_values_late: Counter::new(),
    group_results: Counter::new(),
    record_frames: Counter::new(),
    record_dropped: Counter::new(),
    record_errors: Counter::new(),
    pipeline_latency: Histogram::new(),
    hub_busy_ns: Counter::new(),
    hub_inputs: Counter::new(),
    hub_queue_depth: Gauge::new(),
    uploads_done: Counter::new(),
    uploads_failed: Counter::new(),
    upload_bytes: Counter::new(),
    upload_queue: Gauge::new(),
    upload_lag: Histogram::with_bounds(&LAG_BUCKETS_MS),
    errors: Mutex::new(Vec::new()),
};

impl Metrics {
    /// Counts an error sent to a client (control plane only; not on the media path).
    pub fn error(&self, kind: ErrorType) {
        if let Ok(mut e) = self.errors.lock() {
            match e.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => e.push((kind, 1)),
            }
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let mut g = |name: &str, help: &str, v: i64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        g(
            "exphub_connections",
            "Open main connections (all roles).",
            self.connections_participant.get() + self.connections_experimenter.get(),
        );
        g("exphub_participant_connections", "Open participant main connections.", self.connections_participant.get());
        g(
            "exphub_experimenter_connections",
            "Open experimenter main connections.",
            self.connections_experimenter.get(),
        );
        g("exphub_subconnections", "Open publisher-to-subscriber connections.", self.subconnections.get());
        g(
            "exphub_live_experiments",
            "Experiments held in memory (waiting, running or ended).",
            self.live_experiments.get(),
        );
        g(
            "exphub_udp_ports_in_use",
            "UDP ports bound by peer connections (one per connection; --udp-ports bounds them).",
            self.udp_ports.get(),
        );
        g(
            "exphub_peer_connections_allocated",
            "Peer connections still held in memory (open, or closed and not yet freed).",
            self.peer_connections_allocated.get(),
        );
        let process = ProcessStats::read();
        if let Some(rss) = process.resident_bytes {
            g("exphub_process_resident_memory_bytes", "Resident memory of the server process (RSS).", rss);
        }
        if let Some(fds) = process.open_fds {
            g("exphub_process_open_fds", "Open file descriptors of the server process.", fds);
        }
        g(
            "exphub_ice_buffered_bytes",
            "Bytes of trickled ICE candidates held for connections not answered yet.",
            self.ice_buffered_bytes.get(),
        );
        g("exphub_http_connections", "Open HTTP(S) connections.", self.http_connections.get());
        g(
            "exphub_hub_queue_depth",
            "Inputs waiting for the hub task (sampled when it takes the next one).",
            self.hub_queue_depth.get(),
        );
        let mut c = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            "exphub_http_connections_refused_total",
            "HTTP(S) connections turned away at the connection cap.",
            self.http_connections_refused.get(),
        );
        c("exphub_offers_total", "Main-connection offers answered.", self.offers_total.get());
        c("exphub_hub_inputs_total", "Inputs handled by the hub task.", self.hub_inputs.get());
        c("exphub_messages_received_total", "Data-channel messages received.", self.messages_received.get());
        c("exphub_messages_sent_total", "Data-channel messages queued to clients.", self.messages_sent.get());
        c("exphub_rtp_packets_received_total", "RTP packets received from publishers.", self.packets_received.get());
        c("exphub_rtp_packets_forwarded_total", "RTP packets forwarded (one per sink).", self.packets_forwarded.get());
        c(
            "exphub_rtp_bytes_forwarded_total",
            "RTP payload bytes forwarded (one per sink).",
            self.bytes_forwarded.get(),
        );
        c(
            "exphub_rtp_packets_dropped_total",
            "RTP packets a sink could not take (congested connection).",
            self.packets_dropped.get(),
        );
        c("exphub_pli_sent_total", "Keyframe requests sent to publishers.", self.pli_sent.get());
        c("exphub_pli_received_total", "Keyframe requests received from viewers.", self.pli_received.get());
        c("exphub_session_writes_total", "Session files written.", self.session_writes.get());
        c(
            "exphub_pipeline_frames_in_total",
            "Video frames assembled by media pipelines.",
            self.pipeline_frames_in.get(),
        );
        c(
            "exphub_pipeline_frames_out_total",
            "Video frames filtered, encoded and sent.",
            self.pipeline_frames_out.get(),
        );
        c(
            "exphub_pipeline_frames_stale_total",
            "Frames decoded but skipped as too late.",
            self.pipeline_frames_stale.get(),
        );
        c("exphub_pipeline_decode_errors_total", "Frames the decoder rejected.", self.pipeline_decode_errors.get());
        c(
            "exphub_pipeline_input_dropped_total",
            "Packets dropped at a full pipeline input.",
            self.pipeline_input_dropped.get(),
        );
        c("exphub_filter_panics_total", "Filters that panicked (and were bypassed).", self.filter_panics.get());
        c("exphub_group_values_total", "Values of group filters' individual steps.", self.group_values.get());
        c(
            "exphub_group_values_dropped_total",
            "Group-filter values dropped at a full aggregator input.",
            self.group_values_dropped.get(),
        );
        c(
            "exphub_group_values_late_total",
            "Group-filter values that arrived after their windows were evaluated.",
            self.group_values_late.get(),
        );
        c("exphub_group_results_total", "Group-filter results (windows evaluated).", self.group_results.get());
        c("exphub_record_frames_total", "Frames written to recordings.", self.record_frames.get());
        c(
            "exphub_record_packets_dropped_total",
            "Packets lost to a recording because its queue was full (a slow disk).",
            self.record_dropped.get(),
        );
        c("exphub_record_errors_total", "Recording files ended by a write error.", self.record_errors.get());
        c("exphub_uploads_total", "Files copied to the object store.", self.uploads_done.get());
        c(
            "exphub_uploads_failed_total",
            "Uploads given up (after retries, or a full queue); they are retried at the next start.",
            self.uploads_failed.get(),
        );
        c("exphub_upload_bytes_total", "Bytes copied to the object store.", self.upload_bytes.get());
        let _ = writeln!(
            s,
            "# HELP exphub_hub_busy_seconds_total Time the hub task spent handling inputs.\n# TYPE exphub_hub_busy_seconds_total counter\nexphub_hub_busy_seconds_total {}",
            self.hub_busy_ns.get() as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "# HELP exphub_pipelines Media pipelines running.\n# TYPE exphub_pipelines gauge\nexphub_pipelines {}",
            self.pipelines.get()
        );
        let _ = writeln!(
            s,
            "# HELP exphub_upload_queue Files waiting for the uploader.\n# TYPE exphub_upload_queue gauge\nexphub_upload_queue {}",
            self.upload_queue.get()
        );
        self.upload_lag.render(
            &mut s,
            "exphub_upload_lag_seconds",
            "A research file's end (segment end, file closed, manifest changed) to its copy in the object store.",
        );
        self.pipeline_latency.render(
            &mut s,
            "exphub_pipeline_latency_seconds",
            "Server-added latency of processed video: arrival of a frame to the send of its processed frame.",
        );
        let _ = writeln!(
            s,
            "# HELP exphub_errors_total Errors sent to clients, by type.\n# TYPE exphub_errors_total counter"
        );
        if let Ok(e) = self.errors.lock() {
            for (k, n) in e.iter() {
                let _ = writeln!(s, "exphub_errors_total{{type=\"{}\"}} {n}", k.as_str());
            }
        }
        s
    }
}

/// What the operating system says about this process (Linux `/proc`; `None` elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    /// Resident set size (VmRSS), in bytes.
    pub resident_bytes: Option<i64>,
    /// Entries of `/proc/self/fd`.
    pub open_fds: Option<i64>,
}

impl ProcessStats {
    pub fn read() -> Self {
        let resident_bytes = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| vm_rss_bytes(&s));
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as i64);
        Self { resident_bytes, open_fds }
    }
}

/// `VmRSS:   1234 kB` of a `/proc/<pid>/status` text, in bytes.
fn vm_rss_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_text() {
        assert_eq!(vm_rss_bytes("Name:\texphub\nVmRSS:\t   4321 kB\nThreads:\t4\n"), Some(4321 * 1024));
        assert_eq!(vm_rss_bytes("Name:\texphub\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_gauges_are_rendered() {
        let text = METRICS.render();
        let value = |name: &str| -> i64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {text}"))
        };
        assert!(value("exphub_process_resident_memory_bytes") > 1 << 20);
        assert!(value("exphub_process_open_fds") >= 3);
        value("exphub_udp_ports_in_use");
        value("exphub_peer_connections_allocated");
    }
}
