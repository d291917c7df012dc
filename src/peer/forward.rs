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
use crate::metrics::METRICS;

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
    Paused(bool),
}

/// Fans one publisher's track of one kind out to any number of sinks. Dropping the last
/// handle stops the task.
#[derive(Clone)]
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Ctrl>,
    kind: Kind,
}

impl Forwarder {
    pub fn spawn(kind: Kind) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(kind, rx, tx.downgrade()));
        Self { tx, kind }
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

    /// While paused (the participant is muted), packets are dropped instead of forwarded.
    /// Resuming asks for a keyframe so the picture comes back at once.
    pub fn set_paused(&self, paused: bool) {
        let _ = self.tx.send(Ctrl::Paused(paused));
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
    paused: bool,
    ctrl_weak: mpsc::WeakUnboundedSender<Ctrl>,
}

async fn run(kind: Kind, mut rx: mpsc::UnboundedReceiver<Ctrl>, ctrl_weak: mpsc::WeakUnboundedSender<Ctrl>) {
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
        paused: false,
        ctrl_weak,
    };
    loop {
        let Some(source) = l.source.clone() else {
            match rx.recv().await {
                Some(c) => l.control(c),
                None => break,
            }
            continue;
        };
        tokio::select! {
            biased;
            c = rx.recv() => match c {
                Some(c) => l.control(c),
                None => break,
            },
            ev = source.poll() => match ev {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => l.forward(p),
                Some(TrackRemoteEvent::OnEnded) | None => l.source = None,
                Some(_) => {}
            },
        }
    }
    for (_, s) in l.sinks.drain() {
        s.listener.abort();
    }
}

impl Loop {
    fn control(&mut self, c: Ctrl) {
        match c {
            Ctrl::Source(t) => {
                self.source = Some(t.inner);
                self.source_ssrc = t.ssrc;
                self.rebase = true;
                self.want_keyframe();
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
            Ctrl::Paused(p) => {
                if self.paused && !p {
                    self.want_keyframe();
                }
                self.paused = p;
            }
        }
    }

    fn want_keyframe(&mut self) {
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

    fn forward(&mut self, mut p: rtp::Packet) {
        if self.rebase {
            self.rebase = false;
            if let Some(last) = self.last_out_seq {
                self.seq_offset = last.wrapping_add(1).wrapping_sub(p.header.sequence_number);
                // Continue the timestamp a nominal frame (or 20 ms of audio) after the last one.
                let step = if self.kind == Kind::Video { 3000 } else { 960 };
                self.ts_offset = self.last_out_ts.wrapping_add(step).wrapping_sub(p.header.timestamp);
            }
        }
        if self.pli_pending {
            self.maybe_send_pli();
        }
        let bytes = p.payload.len() as u64;
        METRICS.packets_received.inc();
        if self.paused {
            return;
        }
        p.header.sequence_number = p.header.sequence_number.wrapping_add(self.seq_offset);
        p.header.timestamp = p.header.timestamp.wrapping_add(self.ts_offset);
        self.last_out_seq = Some(p.header.sequence_number);
        self.last_out_ts = p.header.timestamp;
        // The publisher's header extensions carry ids negotiated on *its* connection; the
        // subscriber's connection adds its own (e.g. transport-cc) in the interceptors.
        p.header.extension = false;
        p.header.extensions.clear();
        p.header.extensions_padding = 0;
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
