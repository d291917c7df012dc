//! The RTP plane: one task per published track, fanning every packet out to its sinks.
//!
//! Invariants (the hot path):
//! - one task reads the publisher's track and writes every sink itself: no task hop of ours
//!   between the receive and the send, no lock, no per-packet allocation of ours (the payload
//!   is a refcounted `Bytes`; each sink gets a header copy, which the crate consumes);
//! - a sink that cannot take a packet right now (its connection's driver queue is full) loses
//!   that packet, counted; it never stalls the others;
//! - control (sinks added/removed, a new source after a rejoin, keyframe requests) arrives on
//!   a channel that the loop checks between packets.
//!
//! Sequence numbers and timestamps are rewritten (by the `Munger`, `munger.rs`) so that a rejoining
//! publisher (a new source with new sequence space) continues the stream every subscriber
//! already has, without a jump the receivers would read as loss.
//!
//! When the track has filters (or is muted), the forwarder hands source packets to a
//! [`Pipeline`] worker instead (decode once, filter, encode once) and fans out what comes back:
//! the same sinks, the same continuous sequence space. It switches between the two paths live,
//! at the next packet, from desired filter lists ([`Forwarder::configure`]).
//!
//! Sinks belong to a *group*: the main group (the publisher's own filters, or its packets
//! forwarded as they are) or a viewer-side branch (asymmetric filters). Each group has its own
//! sequence space; a branch only runs while it has sinks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use super::munger::Munger;
use super::{PeerError, Result, VideoCodec};
use crate::media::pipeline::{Group, Pipeline, PipelineConfig, ToForwarder};
use crate::media::recorder::{RecordSpec, Recorder};
use crate::media::rtp::{Format, RtpIn, RtpOut};
/// The media kind lives in `media` (one name for every layer); re-exported where tracks are.
pub use crate::media::Kind;
use crate::media::ToHub;
use crate::metrics::METRICS;

/// Minimum spacing of keyframe requests sent to one publisher.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// A track a client publishes to us.
pub struct RemoteTrack {
    inner: Arc<dyn TrackRemote>,
    pub kind: Kind,
    pub ssrc: u32,
    pub mime: String,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("kind", &self.kind)
            .field("ssrc", &self.ssrc)
            .field("mime", &self.mime)
            .finish()
    }
}

impl RemoteTrack {
    pub(super) async fn new(inner: Arc<dyn TrackRemote>) -> Option<Self> {
        let ssrc = *inner.ssrcs().await.first()?;
        let kind = match inner.kind().await {
            RtpCodecKind::Audio => Kind::Audio,
            RtpCodecKind::Video => Kind::Video,
            _ => return None,
        };
        let mime = inner.codec(ssrc).await.map(|c| c.mime_type).unwrap_or_default();
        Some(Self { inner, kind, ssrc, mime })
    }

    /// The video codec of this track, if it is video we can forward.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        VideoCodec::from_mime(&self.mime)
    }

    /// The payload format, if the pipeline can process it.
    fn format(&self) -> Option<Format> {
        match self.kind {
            Kind::Audio => self.mime.eq_ignore_ascii_case("audio/opus").then_some(Format::Opus),
            Kind::Video => match self.video_codec()? {
                VideoCodec::Vp8 => Some(Format::Vp8),
                VideoCodec::H264 => Some(Format::H264),
            },
        }
    }
}

/// One outgoing track of one connection, bound and ready for packets.
#[derive(Clone)]
pub struct Sink {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
}

impl Sink {
    /// `sender` is what `add_track` returned for `track`; call after negotiation.
    pub(super) async fn new(sender: &Arc<dyn RtpSender>, track: Arc<TrackLocalStaticRTP>, ssrc: u32) -> Result<Self> {
        // The payload type must be the one negotiated on this connection (the crate does not
        // rewrite it: a publisher's payload type would be wrong for this receiver).
        let params = sender.get_parameters().await?;
        let pt = params
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .ok_or_else(|| PeerError::BadSdp("the offer has no matching codec for our track".into()))?;
        Ok(Self { track, ssrc, pt })
    }
}

enum Ctrl {
    Source(RemoteTrack),
    Add(u64, Sink, Group),
    Remove(u64),
    /// A viewer asked for a keyframe: `Some(sink)`, or the whole track (`None`).
    Keyframe(Option<u64>),
    Configure(PipelineConfig),
    Ping(Option<f64>),
    PeerReport(String, String, Option<serde_json::Value>),
    Record(Option<RecordSpec>),
}

/// Fans one publisher's track of one kind out to any number of sinks. Dropping the last
/// handle stops the task.
#[derive(Clone)]
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Ctrl>,
    kind: Kind,
}

impl Forwarder {
    /// `events` receives what this track's filters report or send (when it has filters).
    pub fn spawn(kind: Kind, name: String, events: mpsc::UnboundedSender<ToHub>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(kind, name, rx, tx.downgrade(), events));
        Self { tx, kind }
    }

    /// The filters this track should run: the publisher's own (`main`; empty: forward without
    /// decoding) and the viewer-side branches. Applied live: the pipeline starts, changes or
    /// stops at the next packet.
    pub fn configure(&self, config: PipelineConfig) {
        let _ = self.tx.send(Ctrl::Configure(config));
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Feed from this track from now on (a rejoin replaces the previous source).
    pub fn set_source(&self, t: RemoteTrack) {
        let _ = self.tx.send(Ctrl::Source(t));
    }

    /// Starts sending to `sink` under `id`, from output `group` (`None`: main); a video sink
    /// gets a keyframe soon. Adding an existing id moves it (e.g. to another branch).
    pub fn add_sink(&self, id: u64, sink: Sink, group: Group) {
        let _ = self.tx.send(Ctrl::Add(id, sink, group));
    }

    pub fn remove_sink(&self, id: u64) {
        let _ = self.tx.send(Ctrl::Remove(id));
    }

    /// The participant's round-trip time, for the PING filter.
    pub fn set_ping(&self, ms: Option<f64>) {
        let _ = self.tx.send(Ctrl::Ping(ms));
    }

    /// Another chain's report (e.g. SPEAKING_TIME's seconds for DISPLAY_SPEAKING_TIME).
    pub fn peer_report(&self, id: String, name: String, data: Option<serde_json::Value>) {
        let _ = self.tx.send(Ctrl::PeerReport(id, name, data));
    }

    /// Starts recording this track's raw and processed streams (`None`: stops and finishes
    /// the files). Recording never slows the forwarding.
    pub fn record(&self, spec: Option<RecordSpec>) {
        let _ = self.tx.send(Ctrl::Record(spec));
    }

    /// A keyframe for every viewer (our encoders make one, or the publisher is asked).
    pub fn request_keyframe(&self) {
        let _ = self.tx.send(Ctrl::Keyframe(None));
    }
}

struct SinkState {
    sink: Sink,
    group: Group,
    listener: tokio::task::JoinHandle<()>,
}

struct Loop {
    kind: Kind,
    name: String,
    source: Option<Arc<dyn TrackRemote>>,
    source_ssrc: u32,
    format: Option<Format>,
    sinks: HashMap<u64, SinkState>,
    /// Sequence numbers and timestamps as the sinks see them.
    munger: Munger,
    last_pli: Option<Instant>,
    pli_pending: bool,
    /// Desired filter lists; the pipeline runs the main list and the branches with sinks.
    config: PipelineConfig,
    running: PipelineConfig,
    pipeline: Option<Pipeline>,
    pipe_rx: Option<mpsc::UnboundedReceiver<ToForwarder>>,
    events: mpsc::UnboundedSender<ToHub>,
    ctrl_weak: mpsc::WeakUnboundedSender<Ctrl>,
    recorder: Option<Recorder>,
    /// Counts sources (a rejoin is a new one): the recorder starts a new segment.
    epoch: u32,
}

async fn run(
    kind: Kind,
    name: String,
    mut rx: mpsc::UnboundedReceiver<Ctrl>,
    ctrl_weak: mpsc::WeakUnboundedSender<Ctrl>,
    events: mpsc::UnboundedSender<ToHub>,
) {
    let mut l = Loop {
        kind,
        name,
        source: None,
        source_ssrc: 0,
        format: None,
        sinks: HashMap::new(),
        munger: Munger::new(kind),
        last_pli: None,
        pli_pending: false,
        config: PipelineConfig::default(),
        running: PipelineConfig::default(),
        pipeline: None,
        pipe_rx: None,
        events,
        ctrl_weak,
        recorder: None,
        epoch: 0,
    };
    loop {
        let source = l.source.clone();
        tokio::select! {
            biased;
            c = rx.recv() => match c {
                Some(c) => l.control(c),
                None => break,
            },
            out = recv_pipeline(&mut l.pipe_rx) => match out {
                Some(ToForwarder::Packets(group, p)) => l.send_processed(&group, p),
                Some(ToForwarder::NeedKeyframe) => l.request_upstream_keyframe(),
                None => {
                    // The worker is gone (a bug outside the filters): fall back to forwarding.
                    tracing::warn!(track = %l.name, "media pipeline stopped; forwarding unprocessed");
                    l.config = PipelineConfig::default();
                    l.stop_pipeline();
                }
            },
            ev = poll_source(&source) => match ev {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => l.on_source_packet(p),
                Some(TrackRemoteEvent::OnEnded) | None => {
                    l.source = None;
                    if let Some(r) = &l.recorder {
                        r.ended();
                    }
                }
                Some(_) => {}
            },
        }
    }
    for (_, s) in l.sinks.drain() {
        s.listener.abort();
    }
    if l.pipeline.take().is_some() {
        METRICS.pipelines.add(-1);
    }
}

async fn recv_pipeline(rx: &mut Option<mpsc::UnboundedReceiver<ToForwarder>>) -> Option<ToForwarder> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn poll_source(source: &Option<Arc<dyn TrackRemote>>) -> Option<TrackRemoteEvent> {
    match source {
        Some(s) => s.poll().await,
        None => std::future::pending().await,
    }
}

impl Loop {
    fn control(&mut self, c: Ctrl) {
        match c {
            Ctrl::Source(t) => {
                let format = t.format();
                self.source = Some(t.inner);
                self.source_ssrc = t.ssrc;
                self.epoch = self.epoch.wrapping_add(1);
                self.munger.new_source();
                if format != self.format {
                    // A new codec (rejoin from another browser): a new pipeline for it.
                    self.format = format;
                    self.stop_pipeline();
                } else if let Some(p) = &self.pipeline {
                    p.new_source();
                }
                self.reconcile_pipeline();
                // The new source's decoder state starts now: ask the publisher for a keyframe
                // (forwarded viewers need it, and so does our own decoder), and let our
                // encoders restart their pictures too.
                self.request_upstream_keyframe();
                self.want_keyframe(None);
            }
            Ctrl::Configure(config) => {
                self.config = config;
                self.reconcile_pipeline();
            }
            Ctrl::Add(id, sink, group) => {
                let listener = tokio::spawn(listen_rtcp(id, sink.track.clone(), self.ctrl_weak.clone()));
                if let Some(old) = self.sinks.insert(id, SinkState { sink, group: group.clone(), listener }) {
                    old.listener.abort();
                }
                self.reconcile_pipeline();
                self.want_keyframe(Some(group));
            }
            Ctrl::Remove(id) => {
                if let Some(old) = self.sinks.remove(&id) {
                    old.listener.abort();
                    self.reconcile_pipeline();
                }
            }
            Ctrl::Keyframe(sink) => match sink {
                Some(id) => {
                    let group = self.sinks.get(&id).map(|s| s.group.clone());
                    if let Some(g) = group {
                        self.want_keyframe(Some(g));
                    }
                }
                None => self.want_keyframe(None),
            },
            Ctrl::Ping(ms) => {
                if let Some(p) = &self.pipeline {
                    p.set_ping(ms);
                }
            }
            Ctrl::PeerReport(id, name, data) => {
                if let Some(p) = &self.pipeline {
                    p.peer_report(id, name, data);
                }
            }
            Ctrl::Record(spec) => {
                // Dropping the old recorder finishes its files on its own thread.
                self.recorder = None;
                if let Some(spec) = spec {
                    match Recorder::spawn(spec, self.events.clone(), &self.name) {
                        Ok(r) => {
                            self.recorder = Some(r);
                            // Files start at a keyframe: ask for one now instead of waiting.
                            self.request_upstream_keyframe();
                            self.want_keyframe(None);
                        }
                        Err(e) => tracing::error!(track = %self.name, error = %e, "cannot start a recorder"),
                    }
                }
            }
        }
    }

    /// The main output is processed (not forwarded as received).
    fn main_processed(&self) -> bool {
        self.pipeline.is_some() && !self.running.main.is_empty()
    }

    /// Brings the pipeline to the desired lists: the main list, plus the branches that have
    /// sinks. None left: forward without decoding.
    fn reconcile_pipeline(&mut self) {
        let branches = self
            .config
            .branches
            .iter()
            .filter(|(k, _)| self.sinks.values().any(|s| s.group.as_deref() == Some(&**k)))
            .cloned()
            .collect();
        let want = PipelineConfig { main: self.config.main.clone(), branches, analysis: self.config.analysis.clone() };
        if want.is_empty() {
            self.stop_pipeline();
            return;
        }
        if want == self.running && self.pipeline.is_some() {
            return;
        }
        let main_was_processed = self.main_processed();
        if let Some(p) = &self.pipeline {
            p.configure(want.clone());
            self.running = want;
        } else {
            let Some(format) = self.format else { return }; // started when the source arrives
            let (tx, rx) = mpsc::unbounded_channel();
            match Pipeline::spawn(format, want.clone(), tx, self.events.clone(), self.name.clone()) {
                Ok(p) => {
                    METRICS.pipelines.add(1);
                    self.pipeline = Some(p);
                    self.pipe_rx = Some(rx);
                    self.running = want;
                }
                Err(e) => {
                    tracing::error!(track = %self.name, error = %e, "cannot start a media worker; forwarding unprocessed")
                }
            }
        }
        if main_was_processed && !self.main_processed() {
            // Back to forwarding the main group: continue its sequence, restart its picture.
            self.munger.main_forwarded_again();
            self.request_upstream_keyframe();
        }
    }

    fn stop_pipeline(&mut self) {
        let main_was_processed = self.main_processed();
        if self.pipeline.take().is_some() {
            METRICS.pipelines.add(-1);
        }
        self.pipe_rx = None;
        self.running = PipelineConfig::default();
        if main_was_processed {
            self.munger.main_forwarded_again();
            self.request_upstream_keyframe();
        }
    }

    /// Viewers of `group` (`None`: every group) need a keyframe: our encoder makes one, or
    /// the publisher is asked.
    fn want_keyframe(&mut self, group: Option<Group>) {
        if self.kind != Kind::Video {
            return;
        }
        let groups: Vec<Group> = match group {
            Some(g) => vec![g],
            None => {
                let mut g: Vec<Group> = self.running.branches.iter().map(|(k, _)| Some(k.clone())).collect();
                g.push(None);
                g
            }
        };
        for g in groups {
            match (&self.pipeline, &g) {
                (Some(p), Some(_)) => p.force_keyframe(g),
                (Some(p), None) if self.main_processed() => p.force_keyframe(None),
                _ => self.request_upstream_keyframe(),
            }
        }
    }

    fn request_upstream_keyframe(&mut self) {
        if self.kind != Kind::Video {
            return;
        }
        self.pli_pending = true;
        self.maybe_send_pli();
    }

    fn maybe_send_pli(&mut self) {
        if !self.pli_pending {
            return;
        }
        let Some(source) = self.source.clone() else { return };
        let now = Instant::now();
        if self.last_pli.is_some_and(|t| now.duration_since(t) < PLI_INTERVAL) {
            return; // sent again from the packet path once the interval has passed
        }
        self.last_pli = Some(now);
        self.pli_pending = false;
        let media_ssrc = self.source_ssrc;
        METRICS.pli_sent.inc();
        tokio::spawn(async move {
            let _ = source.write_rtcp(vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc })]).await;
        });
    }

    fn on_source_packet(&mut self, mut p: rtp::Packet) {
        METRICS.packets_received.inc();
        self.munger.source_packet(p.header.timestamp);
        if self.pli_pending {
            self.maybe_send_pli();
        }
        let arrival = Instant::now();
        if let (Some(r), Some(format)) = (&self.recorder, self.format) {
            r.raw(self.epoch, format, rtp_in(&p, p.header.timestamp, arrival));
        }
        if let Some(pipeline) = &self.pipeline {
            pipeline.push(rtp_in(&p, p.header.timestamp, arrival));
            if self.main_processed() {
                return;
            }
        }
        (p.header.sequence_number, p.header.timestamp) =
            self.munger.forward(p.header.sequence_number, p.header.timestamp);
        // The publisher's header extensions carry ids negotiated on *its* connection; the
        // subscriber's connection adds its own (e.g. transport-cc) in the interceptors.
        p.header.extension = false;
        p.header.extensions.clear();
        p.header.extensions_padding = 0;
        self.record_output(&None, false, &p);
        self.fan_out(&None, p);
    }

    /// Hands a packet of output `group` to the recorder (sequence number as sent, timestamp in
    /// the source's time, as the raw packets have it); `encoder`: our encoder made it.
    fn record_output(&self, group: &Group, encoder: bool, p: &rtp::Packet) {
        let Some(r) = &self.recorder else { return };
        let p = rtp_in(p, self.munger.source_ts(p.header.timestamp), Instant::now());
        match group {
            None => r.processed(self.epoch, encoder, p),
            Some(g) => r.branch(self.epoch, g.clone(), p),
        }
    }

    /// Packets from one of our encoders: they continue that group's sequence.
    fn send_processed(&mut self, group: &Group, packets: Vec<RtpOut>) {
        for o in packets {
            let (sequence_number, timestamp) = self.munger.encoded(group, o.timestamp);
            let p = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: o.marker,
                    sequence_number,
                    timestamp,
                    ..Default::default()
                },
                payload: o.payload,
            };
            self.record_output(group, true, &p);
            self.fan_out(group, p);
        }
    }

    fn fan_out(&mut self, group: &Group, p: rtp::Packet) {
        let bytes = p.payload.len() as u64;
        let mut sent = 0u64;
        let mut dropped = 0u64;
        for s in self.sinks.values().filter(|s| s.group == *group) {
            let mut out = p.clone();
            out.header.ssrc = s.sink.ssrc;
            out.header.payload_type = s.sink.pt;
            // `write_rtp` only awaits when the connection's driver queue is full; we never
            // wait for one subscriber: that packet is lost for it alone. `unconstrained` keeps
            // tokio's cooperative budget from turning a ready send into a spurious drop.
            match tokio::task::unconstrained(s.sink.track.write_rtp(out)).now_or_never() {
                Some(Ok(())) => sent += 1,
                Some(Err(_)) | None => dropped += 1,
            }
        }
        METRICS.packets_forwarded.add(sent);
        METRICS.bytes_forwarded.add(sent * bytes);
        if dropped > 0 {
            METRICS.packets_dropped.add(dropped);
        }
    }
}

/// `p` as the pipeline and the recorder take it, with `timestamp`, received at `arrival`.
fn rtp_in(p: &rtp::Packet, timestamp: u32, arrival: Instant) -> RtpIn {
    RtpIn { seq: p.header.sequence_number, timestamp, marker: p.header.marker, payload: p.payload.clone(), arrival }
}

/// Turns a viewer's PLI/FIR on one sink into a keyframe request for that sink's group.
async fn listen_rtcp(id: u64, track: Arc<TrackLocalStaticRTP>, ctrl: mpsc::WeakUnboundedSender<Ctrl>) {
    while let Some(TrackLocalEvent::OnRtcpPacket(_)) = track.poll().await {
        METRICS.pli_received.inc();
        match ctrl.upgrade() {
            Some(tx) => {
                let _ = tx.send(Ctrl::Keyframe(Some(id)));
            }
            None => break,
        }
    }
}
