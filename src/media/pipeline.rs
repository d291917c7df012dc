//! One published track's processing: RTP → frames → decode once → filter chain → encode once
//! → RTP, on a dedicated OS thread (never on tokio's workers).
//!
//! Inputs (packets and control) arrive on one bounded channel, so a configuration change
//! applies at the next frame boundary, in order with the media. Outputs go to the track's
//! forwarder (packets, keyframe requests upstream) and to the hub (what filters report or
//! send, panics). When the worker falls behind, frames are still decoded (the reference chain
//! needs them) but stale ones are not filtered and encoded: latency is never traded for
//! completeness. After a loss the picture freezes until a keyframe arrives, instead of
//! decoding smeared inter frames.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use filters::{AudioChain, Budget, ChainEvent, FilterSpec, VideoChain, VideoFrame};
use tokio::sync::mpsc::UnboundedSender;

use super::codec::{AudioDecoder, AudioEncoder, VideoDecoder, VideoEncoder, VideoSettings};
use super::rtp::{Format, FrameAssembler, Packetizer, RtpIn, RtpOut};
use crate::metrics::METRICS;

/// A frame older than this when its turn comes is decoded but not filtered or encoded.
const STALE_AFTER: Duration = Duration::from_millis(100);
/// Bounded input: about a second of video packets.
const INPUT_CAPACITY: usize = 512;
const MTU: usize = 1200;

/// What the worker sends back to the forwarder.
#[derive(Debug)]
pub enum ToForwarder {
    Packets(Vec<RtpOut>),
    /// The decoder needs a keyframe from the publisher (loss, start, decode error).
    NeedKeyframe,
}

/// What the worker tells the hub.
#[derive(Debug)]
pub enum ToHub {
    /// A filter event: a report, a message to send, a ping request, a panic, an overrun.
    Filter(ChainEvent),
    /// A filter list could not be applied (the previous one stays).
    Rejected(String),
}

enum Input {
    Rtp(RtpIn),
    Configure(Vec<FilterSpec>),
    Keyframe,
    Ping(Option<f64>),
    PeerReport { id: String, name: String, data: Option<serde_json::Value> },
}

/// Media kind of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Video,
    Audio,
}

/// A running pipeline. Dropping it stops the worker thread.
pub struct Pipeline {
    tx: SyncSender<Input>,
    kind: MediaKind,
}

impl Pipeline {
    /// Starts a worker for a track of `format` (VP8/H.264 video or Opus audio).
    pub fn spawn(
        format: Format,
        specs: Vec<FilterSpec>,
        to_forwarder: UnboundedSender<ToForwarder>,
        to_hub: UnboundedSender<ToHub>,
        name: String,
    ) -> std::io::Result<Self> {
        let kind = if format == Format::Opus { MediaKind::Audio } else { MediaKind::Video };
        let (tx, rx) = mpsc::sync_channel(INPUT_CAPACITY);
        let _ = tx.try_send(Input::Configure(specs));
        std::thread::Builder::new().name(format!("media-{name}")).spawn(move || {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
                MediaKind::Video => run_video(format, rx, to_forwarder, to_hub),
                MediaKind::Audio => run_audio(rx, to_forwarder, to_hub),
            }));
            if ok.is_err() {
                // A bug outside the (already guarded) filters: the stream falls back to
                // forwarding when the hub notices the channel closed.
                tracing::error!("media worker panicked; the track stops being processed");
            }
        })?;
        Ok(Self { tx, kind })
    }

    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// Hands a packet to the worker; false (and counted) if its queue is full.
    pub fn push(&self, p: RtpIn) -> bool {
        match self.tx.try_send(Input::Rtp(p)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                METRICS.pipeline_input_dropped.inc();
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// True while the worker thread runs.
    pub fn alive(&self) -> bool {
        // A zero-cost probe: sending a keyframe request fails once the thread is gone.
        !matches!(self.tx.try_send(Input::Ping(None)), Err(TrySendError::Disconnected(_)))
    }

    /// A new filter list, applied from the next frame (instances with the same id and name
    /// keep their state and get the new parameters).
    pub fn configure(&self, specs: Vec<FilterSpec>) {
        let _ = self.tx.send(Input::Configure(specs));
    }

    /// The next encoded frame is a keyframe (a viewer joined or asked).
    pub fn force_keyframe(&self) {
        let _ = self.tx.try_send(Input::Keyframe);
    }

    /// The participant's current round-trip time (for the PING filter).
    pub fn set_ping(&self, ms: Option<f64>) {
        let _ = self.tx.try_send(Input::Ping(ms));
    }

    /// Another chain's report (e.g. SPEAKING_TIME for DISPLAY_SPEAKING_TIME).
    pub fn peer_report(&self, id: String, name: String, data: Option<serde_json::Value>) {
        let _ = self.tx.try_send(Input::PeerReport { id, name, data });
    }
}

fn drain_chain_events(events: impl Iterator<Item = ChainEvent>, to_hub: &UnboundedSender<ToHub>) {
    for e in events {
        if let ChainEvent::Panicked { .. } = &e {
            METRICS.filter_panics.inc();
        }
        let _ = to_hub.send(ToHub::Filter(e));
    }
}

fn run_video(format: Format, rx: Receiver<Input>, out: UnboundedSender<ToForwarder>, to_hub: UnboundedSender<ToHub>) {
    let (mut decoder, mut encoder) = match (VideoDecoder::new(format), VideoEncoder::new(format, VideoSettings::default())) {
        (Ok(d), Ok(e)) => (d, e),
        (d, e) => {
            tracing::error!(decoder = ?d.err(), encoder = ?e.err(), "video codec unavailable");
            return;
        }
    };
    let mut chain = VideoChain::new(Budget::VIDEO);
    let mut assembler = FrameAssembler::new(format);
    let mut packetizer = Packetizer::new(format, MTU);
    let mut picture = VideoFrame::new(2, 2);
    let mut encoded = Vec::new();
    let mut force_key = true;
    let mut waiting_for_key = true;
    let epoch = Instant::now();
    let _ = out.send(ToForwarder::NeedKeyframe);
    while let Ok(input) = rx.recv() {
        let packet = match input {
            Input::Rtp(p) => p,
            Input::Configure(specs) => {
                if let Err(errors) = chain.apply(&specs) {
                    let text = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                    let _ = to_hub.send(ToHub::Rejected(text));
                }
                drain_chain_events(chain.drain_events(), &to_hub);
                continue;
            }
            Input::Keyframe => {
                force_key = true;
                continue;
            }
            Input::Ping(ms) => {
                if ms.is_some() {
                    chain.set_ping_ms(ms);
                }
                continue;
            }
            Input::PeerReport { id, name, data } => {
                chain.set_peer_report(&id, &name, data);
                continue;
            }
        };
        for frame in assembler.push(packet) {
            METRICS.pipeline_frames_in.inc();
            if frame.after_loss {
                waiting_for_key = true;
            }
            if waiting_for_key && !frame.keyframe {
                // Frozen until the publisher sends a keyframe (the forwarder rate-limits PLIs).
                let _ = out.send(ToForwarder::NeedKeyframe);
                continue;
            }
            waiting_for_key = false;
            match decoder.decode(&frame.data, &mut picture) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    METRICS.pipeline_decode_errors.inc();
                    tracing::debug!(error = %e, "decode error; waiting for a keyframe");
                    waiting_for_key = true;
                    let _ = out.send(ToForwarder::NeedKeyframe);
                    continue;
                }
            }
            if frame.arrival.elapsed() > STALE_AFTER {
                METRICS.pipeline_frames_stale.inc();
                continue;
            }
            picture.pts = frame.arrival.duration_since(epoch);
            chain.process(&mut picture);
            drain_chain_events(chain.drain_events(), &to_hub);
            encoded.clear();
            if let Err(e) = encoder.encode(&picture, std::mem::take(&mut force_key), &mut encoded) {
                tracing::warn!(error = %e, "encode error");
                force_key = true;
                continue;
            }
            let mut packets = Vec::new();
            for e in &encoded {
                packetizer.packetize(&e.data, frame.timestamp, &mut packets);
            }
            if !packets.is_empty() {
                METRICS.pipeline_frames_out.inc();
                METRICS.pipeline_latency.observe(frame.arrival.elapsed());
                if out.send(ToForwarder::Packets(packets)).is_err() {
                    return;
                }
            }
        }
    }
}

fn run_audio(rx: Receiver<Input>, out: UnboundedSender<ToForwarder>, to_hub: UnboundedSender<ToHub>) {
    let (mut decoder, mut encoder) = match (AudioDecoder::new(), AudioEncoder::new(2, 64_000)) {
        (Ok(d), Ok(e)) => (d, e),
        (d, e) => {
            tracing::error!(decoder = ?d.err(), encoder = ?e.err(), "opus codec unavailable");
            return;
        }
    };
    let mut chain = AudioChain::new(Budget::AUDIO);
    let mut assembler = FrameAssembler::new(Format::Opus);
    let mut packetizer = Packetizer::new(Format::Opus, MTU);
    let mut samples = filters::AudioFrame::new(2, 960, 48_000);
    let mut encoded = Vec::new();
    let epoch = Instant::now();
    while let Ok(input) = rx.recv() {
        let packet = match input {
            Input::Rtp(p) => p,
            Input::Configure(specs) => {
                if let Err(errors) = chain.apply(&specs) {
                    let text = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                    let _ = to_hub.send(ToHub::Rejected(text));
                }
                drain_chain_events(chain.drain_events(), &to_hub);
                continue;
            }
            Input::Keyframe => continue,
            Input::Ping(ms) => {
                if ms.is_some() {
                    chain.set_ping_ms(ms);
                }
                continue;
            }
            Input::PeerReport { id, name, data } => {
                chain.set_peer_report(&id, &name, data);
                continue;
            }
        };
        for frame in assembler.push(packet) {
            match decoder.decode(&frame.data, &mut samples) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    METRICS.pipeline_decode_errors.inc();
                    continue;
                }
            }
            if frame.arrival.elapsed() > STALE_AFTER {
                METRICS.pipeline_frames_stale.inc();
                continue;
            }
            samples.pts = frame.arrival.duration_since(epoch);
            chain.process(&mut samples);
            drain_chain_events(chain.drain_events(), &to_hub);
            encoded.clear();
            if encoder.encode(&samples, &mut encoded).is_err() {
                continue;
            }
            let mut packets = Vec::new();
            for e in &encoded {
                packetizer.packetize(e, frame.timestamp, &mut packets);
            }
            if !packets.is_empty() && out.send(ToForwarder::Packets(packets)).is_err() {
                return;
            }
        }
    }
}
