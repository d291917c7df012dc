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
//! Sequence numbers and timestamps are rewritten with a per-forwarder offset so that a
//! rejoining publisher (a new source with new sequence space) continues the stream every
//! subscriber already has, without a jump the receivers would read as loss.
//!
//! When the track has filters (or is muted), the forwarder hands source packets to a
//! [`Pipeline`] worker instead (decode once, filter, encode once) and fans out what comes back:
//! the same sinks, the same continuous sequence space. It switches between the two paths live,
//! at the next packet, from a desired filter list ([`Forwarder::configure`]).

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

use super::{PeerError, Result, VideoCodec};
use crate::media::pipeline::{Pipeline, ToForwarder, ToHub};
use crate::media::rtp::{Format, RtpIn, RtpOut};
use crate::metrics::METRICS;
use filters::FilterSpec;

/// Minimum spacing of keyframe requests sent to one publisher.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// Media kind of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

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
        // The payload type must be the one negotiated on this connection (stack-notes pitfall 2).
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
    Add(u64, Sink),
    Remove(u64),
    Keyframe,
    Configure(Vec<FilterSpec>),
    Ping(Option<f64>),
    PeerReport(String, String, Option<serde_json::Value>),
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

    /// The filters this track should run (empty: forward without decoding). Applied live:
    /// the pipeline starts, changes or stops at the next packet.
    pub fn configure(&self, specs: Vec<FilterSpec>) {
        let _ = self.tx.send(Ctrl::Configure(specs));
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Feed from this track from now on (a rejoin replaces the previous source).
    pub fn set_source(&self, t: RemoteTrack) {
        let _ = self.tx.send(Ctrl::Source(t));
    }

    /// Starts sending to `sink` under `id`; a video sink gets a keyframe soon.
    pub fn add_sink(&self, id: u64, sink: Sink) {
        let _ = self.tx.send(Ctrl::Add(id, sink));
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

    /// Asks the publisher for a keyframe (rate-limited).
    pub fn request_keyframe(&self) {
        let _ = self.tx.send(Ctrl::Keyframe);
    }
}

struct SinkState {
    sink: Sink,
    listener: tokio::task::JoinHandle<()>,
}

struct Loop {
    kind: Kind,
    source: Option<Arc<dyn TrackRemote>>,
    source_ssrc: u32,
    sinks: HashMap<u64, SinkState>,
    /// Output = input + offset (wrapping), re-based on every source change.
    seq_offset: u16,
    ts_offset: u32,
    last_out_seq: Option<u16>,
    last_out_ts: u32,
    rebase: bool,
    last_pli: Option<Instant>,
    pli_pending: bool,
    /// Where output sequence numbers continue after a switch of path or source.
    rebase_seq: bool,
    name: String,
    format: Option<Format>,
    specs: Vec<FilterSpec>,
    pipeline: Option<Pipeline>,
    pipe_rx: Option<mpsc::UnboundedReceiver<ToForwarder>>,
    events: mpsc::UnboundedSender<ToHub>,
    ctrl_weak: mpsc::WeakUnboundedSender<Ctrl>,
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
        source: None,
        source_ssrc: 0,
        sinks: HashMap::new(),
        seq_offset: 0,
        ts_offset: 0,
        last_out_seq: None,
        last_out_ts: 0,
        rebase: false,
        last_pli: None,
        pli_pending: false,
        rebase_seq: false,
        name,
        format: None,
        specs: vec![],
        pipeline: None,
        pipe_rx: None,
        events,
        ctrl_weak,
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
                Some(ToForwarder::Packets(p)) => l.send_processed(p),
                Some(ToForwarder::NeedKeyframe) => l.request_upstream_keyframe(),
                None => {
                    // The worker is gone (a bug outside the filters): fall back to forwarding.
                    tracing::warn!(track = %l.name, "media pipeline stopped; forwarding unprocessed");
                    l.stop_pipeline();
                }
            },
            ev = poll_source(&source) => match ev {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => l.on_source_packet(p),
                Some(TrackRemoteEvent::OnEnded) | None => l.source = None,
                Some(_) => {}
            },
        }
    }
    for (_, s) in l.sinks.drain() {
        s.listener.abort();
    }
    if l.pipeline.take().is_some() {
        METRICS.pipelines.set(METRICS.pipelines.get() - 1);
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
                self.rebase = true;
                self.rebase_seq = true;
                if format != self.format {
                    // A new codec (rejoin from another browser): a new pipeline for it.
                    self.format = format;
                    self.stop_pipeline();
                }
                self.reconcile_pipeline();
                self.want_keyframe();
            }
            Ctrl::Configure(specs) => {
                self.specs = specs;
                self.reconcile_pipeline();
            }
            Ctrl::Add(id, sink) => {
                let listener = tokio::spawn(listen_rtcp(sink.track.clone(), self.ctrl_weak.clone()));
                if let Some(old) = self.sinks.insert(id, SinkState { sink, listener }) {
                    old.listener.abort();
                }
                self.want_keyframe();
            }
            Ctrl::Remove(id) => {
                if let Some(old) = self.sinks.remove(&id) {
                    old.listener.abort();
                }
            }
            Ctrl::Keyframe => self.want_keyframe(),
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
        }
    }

    /// Brings the pipeline to the desired filter list: none, started, or reconfigured.
    fn reconcile_pipeline(&mut self) {
        if self.specs.is_empty() {
            self.stop_pipeline();
            return;
        }
        if let Some(p) = &self.pipeline {
            p.configure(self.specs.clone());
            return;
        }
        let Some(format) = self.format else { return }; // started when the source arrives
        let (tx, rx) = mpsc::unbounded_channel();
        match Pipeline::spawn(format, self.specs.clone(), tx, self.events.clone(), self.name.clone()) {
            Ok(p) => {
                METRICS.pipelines.set(METRICS.pipelines.get() + 1);
                self.pipeline = Some(p);
                self.pipe_rx = Some(rx);
            }
            Err(e) => tracing::error!(track = %self.name, error = %e, "cannot start a media worker; forwarding unprocessed"),
        }
    }

    fn stop_pipeline(&mut self) {
        if self.pipeline.take().is_some() {
            METRICS.pipelines.set(METRICS.pipelines.get() - 1);
            // Forwarded packets continue the sequence; the picture restarts with a keyframe.
            self.rebase_seq = true;
            self.want_keyframe();
        }
        self.pipe_rx = None;
    }

    /// A viewer needs a keyframe: our encoder makes one, or the publisher is asked.
    fn want_keyframe(&mut self) {
        if self.kind != Kind::Video {
            return;
        }
        match &self.pipeline {
            Some(p) => p.force_keyframe(),
            None => self.request_upstream_keyframe(),
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
        if self.rebase {
            self.rebase = false;
            if self.last_out_seq.is_some() {
                // Continue the timestamp a nominal frame (or 20 ms of audio) after the last one.
                let step = if self.kind == Kind::Video { 3000 } else { 960 };
                self.ts_offset = self.last_out_ts.wrapping_add(step).wrapping_sub(p.header.timestamp);
            }
        }
        if self.pli_pending {
            self.maybe_send_pli();
        }
        if let Some(pipeline) = &self.pipeline {
            pipeline.push(RtpIn {
                seq: p.header.sequence_number,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                payload: p.payload,
                arrival: Instant::now(),
            });
            return;
        }
        if self.rebase_seq {
            self.rebase_seq = false;
            if let Some(last) = self.last_out_seq {
                self.seq_offset = last.wrapping_add(1).wrapping_sub(p.header.sequence_number);
            }
        }
        p.header.sequence_number = p.header.sequence_number.wrapping_add(self.seq_offset);
        p.header.timestamp = p.header.timestamp.wrapping_add(self.ts_offset);
        // The publisher's header extensions carry ids negotiated on *its* connection; the
        // subscriber's connection adds its own (e.g. transport-cc) in the interceptors.
        p.header.extension = false;
        p.header.extensions.clear();
        p.header.extensions_padding = 0;
        self.fan_out(p);
    }

    /// Packets from our own encoder: they continue the sequence the subscribers already have.
    fn send_processed(&mut self, packets: Vec<RtpOut>) {
        for o in packets {
            let seq = self.last_out_seq.map_or(0, |s| s.wrapping_add(1));
            let p = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: o.marker,
                    sequence_number: seq,
                    timestamp: o.timestamp.wrapping_add(self.ts_offset),
                    ..Default::default()
                },
                payload: o.payload,
            };
            self.fan_out(p);
        }
    }

    fn fan_out(&mut self, p: rtp::Packet) {
        self.last_out_seq = Some(p.header.sequence_number);
        self.last_out_ts = p.header.timestamp;
        let bytes = p.payload.len() as u64;
        let mut sent = 0u64;
        let mut dropped = 0u64;
        for s in self.sinks.values() {
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

/// Turns a viewer's PLI/FIR on one sink into a keyframe request to the publisher.
async fn listen_rtcp(track: Arc<TrackLocalStaticRTP>, ctrl: mpsc::WeakUnboundedSender<Ctrl>) {
    while let Some(TrackLocalEvent::OnRtcpPacket(_)) = track.poll().await {
        METRICS.pli_received.inc();
        match ctrl.upgrade() {
            Some(tx) => {
                let _ = tx.send(Ctrl::Keyframe);
            }
            None => break,
        }
    }
}
