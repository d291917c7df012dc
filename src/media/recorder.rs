//! Recording one published track: the raw stream (the packets as received, before filters)
//! and the processed stream (what the others saw: the pipeline's encoder output, or the same
//! packets when the track is forwarded), muxed without re-encoding, on one clock.
//!
//! Invariants:
//! - recording never blocks media: the forwarder hands packets over with `try_send` to a
//!   bounded queue; a full queue (a stalled disk) loses packets for the recording alone;
//! - files never start with pre-roll: a video file starts at its first keyframe after the
//!   recording began (the forwarder asks for one), an audio file at its first packet;
//! - one clock: every frame's time is *milliseconds since START*, from the sender's RTP
//!   timestamp anchored at the arrival of the segment's first packet. Raw and processed
//!   frames of one source frame carry the same RTP timestamp, so they get the same time; a
//!   file's `start_ms` plus a frame's time in the file is that frame's time since START;
//! - a new source (a rejoin) starts a new *segment*: new files, a new anchor; so does a
//!   publisher that stopped sending for [`IDLE_CLOSE`];
//! - a write error (a full disk) closes that file and is reported; the output tries again
//!   with a new file after [`RETRY_AFTER`]. The experiment goes on;
//! - once a second every open file is flushed (cluster ended, handed to the kernel), so a
//!   crash of the server loses at most the last second, and the per-stream statistics of
//!   that second are reported.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use super::clock::Clock;
use super::codec::VideoDecoder;
use super::mux::{codec_name, Muxer, TrackInfo};
use super::rtp::{Format, FrameAssembler, RtpIn};
use super::ToHub;
use crate::metrics::METRICS;

/// Packets queued for the recorder: a few seconds of video.
const CAPACITY: usize = 4096;
/// A segment whose publisher sent nothing for this long is closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(3);
/// After a write error, the next attempt with a new file.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);

/// Where and for whom a track is recorded.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub dir: PathBuf,
    pub participant: String,
    /// The experiment run (a session can be run more than once); part of the file names.
    pub run: u32,
    /// START of the experiment: time zero of every file and event.
    pub start: Instant,
}

/// Raw (as received) or processed (as the others saw it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    Raw,
    Processed,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Raw => "raw",
            Version::Processed => "processed",
        }
    }
}

/// A file the recorder opened.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileOpened {
    pub file: String,
    pub participant_id: String,
    pub kind: Version,
    pub media: &'static str,
    pub codec: &'static str,
    pub container: &'static str,
    pub segment: u32,
    /// Milliseconds since START of the file's first frame.
    pub start_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A viewer-side version (asymmetric filters): the branch's key (its filter list as JSON);
    /// `None`: the main processed stream (or raw).
    #[serde(skip)]
    pub branch: Option<Arc<str>>,
}

/// A file the recorder finished (or gave up on after an error).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileClosed {
    pub file: String,
    /// As the container says: the last frame's time plus its duration.
    pub duration_ms: f64,
    pub frames: u64,
    pub bytes: u64,
    /// Of the whole file, hex; `None` when it could not be read back.
    pub sha256: Option<String>,
    /// What stopped the file early (a write error), if anything.
    pub error: Option<String>,
}

/// One second of one stream.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct StreamStats {
    /// Frames per second received from the publisher.
    pub fps_in: f64,
    /// Frames per second sent to the viewers (processed output).
    pub fps_out: f64,
    pub packets_in: u64,
    /// Packets the publisher sent that did not arrive (sequence gaps).
    pub packets_lost: u64,
    pub kbps_in: f64,
    /// Server-added latency: arrival of a frame's last packet to the send of its processed
    /// frame (forwarded frames: to their forwarding).
    pub latency_ms_mean: Option<f64>,
    pub latency_ms_max: Option<f64>,
}

#[derive(Debug)]
pub enum RecEvent {
    Opened(FileOpened),
    Closed(FileClosed),
    Failed { file: String, error: String },
    Stats(StreamStats),
}

enum RecIn {
    Raw {
        epoch: u32,
        format: Format,
        p: RtpIn,
    },
    Processed {
        epoch: u32,
        encoder: bool,
        p: RtpIn,
    },
    /// A packet of a viewer-side branch (asymmetric filters), as sent.
    Branch {
        epoch: u32,
        group: Arc<str>,
        p: RtpIn,
    },
    Ended,
}

/// A running recorder of one track. Dropping it finishes the files (trailers, checksums,
/// reports) on the recorder's thread.
pub struct Recorder {
    tx: SyncSender<RecIn>,
}

impl Recorder {
    pub fn spawn(spec: RecordSpec, to_hub: UnboundedSender<ToHub>, name: &str) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(CAPACITY);
        std::thread::Builder::new().name(format!("rec-{name}")).spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(spec, rx, to_hub)));
            if r.is_err() {
                tracing::error!("recorder panicked; this track's recording stops");
            }
        })?;
        Ok(Self { tx })
    }

    fn send(&self, m: RecIn) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            METRICS.record_dropped.inc();
        }
    }

    /// A packet as received from source number `epoch` (a new epoch: a new segment).
    pub fn raw(&self, epoch: u32, format: Format, p: RtpIn) {
        self.send(RecIn::Raw { epoch, format, p });
    }

    /// A packet of the main output as sent: `encoder` if the pipeline made it, else it is a
    /// forwarded source packet. Sequence numbers are the output's, timestamps the source's.
    pub fn processed(&self, epoch: u32, encoder: bool, p: RtpIn) {
        self.send(RecIn::Processed { epoch, encoder, p });
    }

    /// A packet of viewer-side branch `group` as sent (sequence numbers the branch's,
    /// timestamps the source's).
    pub fn branch(&self, epoch: u32, group: Arc<str>, p: RtpIn) {
        self.send(RecIn::Branch { epoch, group, p });
    }

    /// The source ended (the publisher left): close the segment now.
    pub fn ended(&self) {
        self.send(RecIn::Ended);
    }
}

fn run(spec: RecordSpec, rx: Receiver<RecIn>, to_hub: UnboundedSender<ToHub>) {
    let report = |e: RecEvent| {
        let _ = to_hub.send(ToHub::Recording(e));
    };
    let mut seg: Option<Segment> = None;
    let mut segments = 0u32;
    let mut stats = Window::default();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(RecIn::Raw { epoch, format, p }) => {
                stats.audio = format == Format::Opus;
                stats.raw(&p);
                if seg.as_ref().is_none_or(|s| s.epoch != epoch || s.format != format) {
                    if let Some(s) = seg.take() {
                        s.close(&report);
                    }
                    segments += 1;
                    seg = Some(Segment::new(epoch, format, segments));
                }
                if let Some(s) = seg.as_mut() {
                    s.push(Version::Raw, p, true, &spec, &report);
                }
            }
            Ok(RecIn::Processed { epoch, encoder, p }) => {
                stats.processed(&p);
                if let Some(s) = seg.as_mut().filter(|s| s.epoch == epoch) {
                    s.push(Version::Processed, p, encoder, &spec, &report);
                }
            }
            Ok(RecIn::Branch { epoch, group, p }) => {
                if let Some(s) = seg.as_mut().filter(|s| s.epoch == epoch) {
                    s.push_branch(group, p, &spec, &report);
                }
            }
            Ok(RecIn::Ended) => {
                if let Some(s) = seg.take() {
                    s.close(&report);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TICK;
            if seg.as_ref().is_some_and(|s| now.duration_since(s.last_packet) > IDLE_CLOSE) {
                if let Some(s) = seg.take() {
                    s.close(&report);
                }
            }
            if let Some(s) = seg.as_mut() {
                s.flush(&report);
            }
            if let Some(st) = stats.take(seg.is_some()) {
                report(RecEvent::Stats(st));
            }
        }
    }
    if let Some(s) = seg.take() {
        s.close(&report);
    }
}

/// Statistics of the current second.
#[derive(Default)]
struct Window {
    /// Opus: every packet is a frame (the marker bit only starts a talkspurt).
    audio: bool,
    since: Option<Instant>,
    frames_in: u64,
    frames_out: u64,
    packets_in: u64,
    bytes_in: u64,
    highest_seq: Option<u64>,
    lost: u64,
    /// Arrival of each recent source frame's last packet, by RTP timestamp.
    arrivals: std::collections::VecDeque<(u32, Instant)>,
    latency_sum: f64,
    latency_max: f64,
    latency_n: u64,
}

impl Window {
    fn raw(&mut self, p: &RtpIn) {
        self.since.get_or_insert(p.arrival);
        self.packets_in += 1;
        self.bytes_in += p.payload.len() as u64;
        // Sequence gaps: extend against the highest seen; reordered packets count once.
        let ext = match self.highest_seq {
            None => p.seq as u64 + (1 << 32),
            Some(h) => {
                let d = p.seq.wrapping_sub(h as u16) as i16 as i64;
                (h as i64 + d) as u64
            }
        };
        match self.highest_seq {
            Some(h) if ext > h => {
                self.lost += ext - h - 1;
                self.highest_seq = Some(ext);
            }
            Some(_) => self.lost = self.lost.saturating_sub(1), // a late packet was not lost
            None => self.highest_seq = Some(ext),
        }
        if p.marker || self.audio {
            self.frames_in += 1;
            if self.arrivals.len() == 64 {
                self.arrivals.pop_front();
            }
            self.arrivals.push_back((p.timestamp, p.arrival));
        }
    }

    fn processed(&mut self, p: &RtpIn) {
        if !p.marker && !self.audio {
            return;
        }
        self.frames_out += 1;
        if let Some(&(_, at)) = self.arrivals.iter().rev().find(|(ts, _)| *ts == p.timestamp) {
            let ms = p.arrival.saturating_duration_since(at).as_secs_f64() * 1000.0;
            self.latency_sum += ms;
            self.latency_max = self.latency_max.max(ms);
            self.latency_n += 1;
        }
    }

    /// The second's figures (if anything happened or a segment is open), and a new window.
    fn take(&mut self, open: bool) -> Option<StreamStats> {
        let arrivals = std::mem::take(&mut self.arrivals);
        let (highest, audio) = (self.highest_seq, self.audio);
        let w = std::mem::take(self);
        self.arrivals = arrivals;
        self.highest_seq = highest;
        self.audio = audio;
        if w.packets_in == 0 && w.frames_out == 0 && !open {
            return None;
        }
        let secs = TICK.as_secs_f64();
        Some(StreamStats {
            fps_in: w.frames_in as f64 / secs,
            fps_out: w.frames_out as f64 / secs,
            packets_in: w.packets_in,
            packets_lost: w.lost,
            kbps_in: w.bytes_in as f64 * 8.0 / 1000.0 / secs,
            latency_ms_mean: (w.latency_n > 0).then(|| w.latency_sum / w.latency_n as f64),
            latency_ms_max: (w.latency_n > 0).then_some(w.latency_max),
        })
    }
}

/// One source's files: raw and processed.
struct Segment {
    epoch: u32,
    format: Format,
    number: u32,
    clock: Clock,
    raw: Output,
    processed: Output,
    /// Viewer-side versions, in order of appearance.
    branches: Vec<(Arc<str>, Output)>,
    last_packet: Instant,
}

impl Segment {
    fn new(epoch: u32, format: Format, number: u32) -> Self {
        Self {
            epoch,
            format,
            number,
            clock: Clock::new(format),
            raw: Output::new(Version::Raw, format),
            processed: Output::new(Version::Processed, format),
            branches: Vec::new(),
            last_packet: Instant::now(),
        }
    }

    fn push(&mut self, v: Version, p: RtpIn, encoder: bool, spec: &RecordSpec, report: &dyn Fn(RecEvent)) {
        self.last_packet = Instant::now();
        let (out, clock) = match v {
            Version::Raw => (&mut self.raw, &mut self.clock),
            Version::Processed => (&mut self.processed, &mut self.clock),
        };
        if v == Version::Processed && out.origin_encoder != Some(encoder) {
            // The processed stream switched between our encoder and the publisher's packets:
            // a new picture chain, decodable from its next keyframe.
            out.origin_encoder = Some(encoder);
            out.assembler = FrameAssembler::new(self.format);
            out.waiting_key = true;
        }
        for frame in out.assembler.push(p) {
            let ms = clock.ms(frame.timestamp, frame.arrival, spec.start, v == Version::Raw);
            out.write(frame.data.as_ref(), frame.keyframe, ms, spec, self.number, report);
        }
    }

    fn push_branch(&mut self, group: Arc<str>, p: RtpIn, spec: &RecordSpec, report: &dyn Fn(RecEvent)) {
        let i = match self.branches.iter().position(|(g, _)| *g == group) {
            Some(i) => i,
            None => {
                let mut o = Output::new(Version::Processed, self.format);
                o.branch = Some((self.branches.len() as u32 + 1, group.clone()));
                self.branches.push((group, o));
                self.branches.len() - 1
            }
        };
        let out = &mut self.branches[i].1;
        for frame in out.assembler.push(p) {
            let ms = self.clock.ms(frame.timestamp, frame.arrival, spec.start, false);
            out.write(frame.data.as_ref(), frame.keyframe, ms, spec, self.number, report);
        }
    }

    fn flush(&mut self, report: &dyn Fn(RecEvent)) {
        self.raw.flush(report);
        self.processed.flush(report);
        for (_, o) in &mut self.branches {
            o.flush(report);
        }
    }

    fn close(mut self, report: &dyn Fn(RecEvent)) {
        self.raw.close(None, report);
        self.processed.close(None, report);
        for (_, o) in &mut self.branches {
            o.close(None, report);
        }
    }
}

struct OpenFile {
    name: String,
    path: PathBuf,
    muxer: Muxer,
    start_ms: f64,
    last_ms: f64,
    last_duration: i64,
}

struct Output {
    version: Version,
    format: Format,
    assembler: FrameAssembler,
    file: Option<OpenFile>,
    waiting_key: bool,
    origin_encoder: Option<bool>,
    failed_at: Option<Instant>,
    /// Files this output opened in its segment (a retry after an error is a new file).
    parts: u32,
    /// A viewer-side branch: its number in the segment and its key.
    branch: Option<(u32, Arc<str>)>,
}

impl Output {
    fn new(version: Version, format: Format) -> Self {
        Self {
            version,
            format,
            assembler: FrameAssembler::new(format),
            file: None,
            waiting_key: true,
            origin_encoder: None,
            failed_at: None,
            parts: 0,
            branch: None,
        }
    }

    fn write(&mut self, data: &[u8], key: bool, ms: f64, spec: &RecordSpec, segment: u32, report: &dyn Fn(RecEvent)) {
        if self.waiting_key && !key {
            return;
        }
        self.waiting_key = false;
        if self.file.is_none() {
            if self.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
                self.waiting_key = true;
                return;
            }
            match self.open(data, ms, spec, segment, report) {
                Some(f) => self.file = Some(f),
                None => {
                    self.waiting_key = true;
                    return;
                }
            }
        }
        let Some(f) = self.file.as_mut() else { return };
        let video = self.format != Format::Opus;
        let duration = if video {
            if f.muxer.frames() == 0 {
                33
            } else {
                ((ms - f.last_ms).round() as i64).clamp(1, 1000)
            }
        } else {
            20
        };
        let at = (ms - f.start_ms).round() as i64;
        match f.muxer.write(data, at, key, duration) {
            Ok(()) => {
                f.last_ms = ms;
                f.last_duration = duration;
                METRICS.record_frames.inc();
            }
            Err(e) if !e.is_fatal() => {
                METRICS.record_dropped.inc();
                tracing::debug!(file = %f.name, error = %e, "a frame the muxer refused was left out");
            }
            Err(e) => {
                let error = e.to_string();
                self.close(Some(error), report);
                self.failed_at = Some(Instant::now());
                self.waiting_key = true;
            }
        }
    }

    fn open(
        &mut self,
        first: &[u8],
        ms: f64,
        spec: &RecordSpec,
        segment: u32,
        report: &dyn Fn(RecEvent),
    ) -> Option<OpenFile> {
        let (width, height, extradata) = match self.format {
            Format::Opus => (0, 0, vec![]),
            f => {
                let (w, h) = picture_size(f, first)?;
                (w, h, if f == Format::H264 { parameter_sets(first) } else { vec![] })
            }
        };
        let info = TrackInfo { format: self.format, width, height, extradata };
        self.parts += 1;
        let media = if self.format == Format::Opus { "audio" } else { "video" };
        let part = if self.parts > 1 { format!(".{}", self.parts) } else { String::new() };
        let version = match &self.branch {
            Some((n, _)) => format!("{}-v{n}", self.version.as_str()),
            None => self.version.as_str().to_owned(),
        };
        let name = format!(
            "{}_{}_{}_{}-{}{}.{}",
            file_safe(&spec.participant),
            version,
            media,
            spec.run,
            segment,
            part,
            info.extension()
        );
        let path = spec.dir.join(&name);
        match Muxer::create(&path, &info) {
            Ok(muxer) => {
                let video = self.format != Format::Opus;
                report(RecEvent::Opened(FileOpened {
                    file: name.clone(),
                    participant_id: spec.participant.clone(),
                    kind: self.version,
                    media,
                    codec: codec_name(self.format),
                    container: info.container(),
                    segment,
                    start_ms: (ms * 1000.0).round() / 1000.0,
                    width: video.then_some(width),
                    height: video.then_some(height),
                    branch: self.branch.as_ref().map(|(_, k)| k.clone()),
                }));
                self.failed_at = None;
                Some(OpenFile { name, path, muxer, start_ms: ms, last_ms: ms, last_duration: 0 })
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(file = %path.display(), %error, "cannot create a recording file");
                if self.failed_at.is_none() {
                    report(RecEvent::Failed { file: name, error });
                }
                self.failed_at = Some(Instant::now());
                None
            }
        }
    }

    fn flush(&mut self, report: &dyn Fn(RecEvent)) {
        let Some(f) = self.file.as_mut() else { return };
        if let Err(e) = f.muxer.flush() {
            let error = e.to_string();
            self.close(Some(error), report);
            self.failed_at = Some(Instant::now());
            self.waiting_key = true;
        }
    }

    /// Finishes the file (trailer, checksum) and reports it; `error` is why it ends early.
    fn close(&mut self, error: Option<String>, report: &dyn Fn(RecEvent)) {
        let Some(f) = self.file.take() else { return };
        let frames = f.muxer.frames();
        let duration_ms = (f.last_ms - f.start_ms).round() + f.last_duration as f64;
        if let Some(e) = &error {
            METRICS.record_errors.inc();
            report(RecEvent::Failed { file: f.name.clone(), error: e.clone() });
        }
        let finished = f.muxer.finish();
        let error = error.or_else(|| finished.err().map(|e| e.to_string()));
        let (bytes, sha256) = match sha256_file(&f.path) {
            Ok((b, h)) => (b, Some(h)),
            Err(_) => (0, None),
        };
        report(RecEvent::Closed(FileClosed { file: f.name, duration_ms, frames, bytes, sha256, error }));
    }
}

/// `s` as a file-name part: ASCII letters, digits, `-` and `_` kept, anything else `_` (a
/// participant id from a hand-edited session file must not name a path).
fn file_safe(s: &str) -> String {
    let out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// The picture size of a keyframe, from a decode of it (the codec knows its own headers).
fn picture_size(format: Format, keyframe: &[u8]) -> Option<(u32, u32)> {
    let mut dec = VideoDecoder::new(format).ok()?;
    let mut pic = filters::VideoFrame::new(2, 2);
    match dec.decode(keyframe, &mut pic) {
        Ok(true) => Some((pic.width() as u32, pic.height() as u32)),
        _ => None,
    }
}

/// The SPS and PPS NAL units of an Annex B access unit, Annex B again.
pub(crate) fn parameter_sets(au: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(au.len(), |&n| n - 3);
        while end > s && au[end - 1] == 0 {
            end -= 1; // a 4-byte start code's leading zero
        }
        if s < end && matches!(au[s] & 0x1f, 7 | 8) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(&au[s..end]);
        }
    }
    out
}

/// Size and SHA-256 (hex) of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        ctx.update(&buf[..k]);
    }
    let hex = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((n, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_ids_cannot_name_a_path() {
        assert_eq!(file_safe("a1b2c3d4e5"), "a1b2c3d4e5");
        assert_eq!(file_safe("../../etc/x"), "______etc_x");
        assert_eq!(file_safe(""), "_");
    }

    #[test]
    fn sps_and_pps_are_extracted() {
        let au = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9];
        assert_eq!(parameter_sets(&au), vec![0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3]);
    }

    #[test]
    fn loss_is_counted_from_sequence_gaps() {
        let mut w = Window::default();
        let now = Instant::now();
        for seq in [65534u16, 65535, 2, 3, 1] {
            w.raw(&RtpIn { seq, timestamp: 0, marker: false, payload: bytes::Bytes::new(), arrival: now });
        }
        let s = w.take(true).unwrap();
        assert_eq!(s.packets_in, 5);
        assert_eq!(s.packets_lost, 1); // seq 0 never came; 1 came late
    }

    #[test]
    fn sha256_of_a_known_file() {
        let p = std::env::temp_dir().join(format!("exphub-sha-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&p, b"abc").unwrap();
        let (n, h) = sha256_file(&p).unwrap();
        assert_eq!(n, 3);
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let _ = std::fs::remove_file(p);
    }
}
