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
//!
//! Outputs: the *main* output (the publisher's own filters: what its echo, the experimenters and
//! most viewers get) and one *branch* per distinct viewer-side filter list (asymmetric filters),
//! each with its own chain and encoder, all fed from the same decoded frame.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use filters::chain::{Chain, Kind};
use filters::{AudioChain, AudioFrame, Budget, ChainEvent, FilterSpec, VideoChain, VideoFrame};
use tokio::sync::mpsc::UnboundedSender;

use super::codec::{AudioDecoder, AudioEncoder, VideoDecoder, VideoEncoder, VideoSettings};
use super::rtp::{Format, FrameAssembler, Packetizer, RtpIn, RtpOut};
use crate::metrics::METRICS;

/// A frame older than this when its turn comes is decoded but not filtered or encoded.
const STALE_AFTER: Duration = Duration::from_millis(100);
/// Bounded input: about a second of video packets.
const INPUT_CAPACITY: usize = 512;
const MTU: usize = 1200;

/// Which output: `None` is the main one, `Some(key)` a viewer-side branch.
pub type Group = Option<Arc<str>>;

/// What a pipeline should produce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineConfig {
    /// The publisher's own filters. Empty: no main output (the forwarder forwards the
    /// publisher's packets to the main group itself).
    pub main: Vec<FilterSpec>,
    /// Viewer-side branches by key.
    pub branches: Vec<(Arc<str>, Vec<FilterSpec>)>,
}

impl PipelineConfig {
    /// Nothing to decode for.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty() && self.branches.is_empty()
    }
}

/// What the worker sends back to the forwarder.
#[derive(Debug)]
pub enum ToForwarder {
    Packets(Group, Vec<RtpOut>),
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
    /// The track's recorder opened or closed a file, failed, or measured a second.
    Recording(super::recorder::RecEvent),
}

enum Input {
    Rtp(RtpIn),
    /// The publisher's stream restarted (a rejoin): new sequence space, new decoder state.
    NewSource,
    Configure(PipelineConfig),
    Keyframe(Group),
    Ping(Option<f64>),
    PeerReport {
        id: String,
        name: String,
        data: Option<serde_json::Value>,
    },
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
        config: PipelineConfig,
        to_forwarder: UnboundedSender<ToForwarder>,
        to_hub: UnboundedSender<ToHub>,
        name: String,
    ) -> std::io::Result<Self> {
        let kind = if format == Format::Opus { MediaKind::Audio } else { MediaKind::Video };
        let (tx, rx) = mpsc::sync_channel(INPUT_CAPACITY);
        let _ = tx.try_send(Input::Configure(config));
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
        // A zero-cost probe: sending a no-op `Ping` fails once the thread is gone.
        !matches!(self.tx.try_send(Input::Ping(None)), Err(TrySendError::Disconnected(_)))
    }

    /// The source changed (a rejoin): forget the old stream's sequence numbers and wait for
    /// a keyframe of the new one.
    pub fn new_source(&self) {
        let _ = self.tx.send(Input::NewSource);
    }

    /// New filter lists, applied from the next frame (instances with the same id and name
    /// keep their state and get the new parameters).
    pub fn configure(&self, config: PipelineConfig) {
        let _ = self.tx.send(Input::Configure(config));
    }

    /// The next frame of output `group` is a keyframe (a viewer joined or asked).
    pub fn force_keyframe(&self, group: Group) {
        let _ = self.tx.try_send(Input::Keyframe(group));
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

/// One output of a pipeline: a chain and its encoder.
struct Output<C, E> {
    group: Group,
    chain: C,
    encoder: E,
    packetizer: Packetizer,
    force_key: bool,
}

/// The forwarder has gone away: the worker ends.
struct Gone;

impl<C, E> Output<C, E> {
    /// Packetizes what the encoder made of one frame and hands it to the forwarder; `Ok(true)`
    /// when there was something to send.
    fn send<'a>(
        &mut self,
        encoded: impl Iterator<Item = &'a [u8]>,
        timestamp: u32,
        out: &UnboundedSender<ToForwarder>,
    ) -> Result<bool, Gone> {
        let mut packets = Vec::new();
        for e in encoded {
            self.packetizer.packetize(e, timestamp, &mut packets);
        }
        if packets.is_empty() {
            return Ok(false);
        }
        out.send(ToForwarder::Packets(self.group.clone(), packets)).map_err(|_| Gone)?;
        Ok(true)
    }
}

/// Makes a new output for a group (`None` if its codec cannot be opened).
type NewOutput<'a, K, E> = dyn FnMut(Group) -> Option<Output<Chain<K>, E>> + 'a;

/// Handles a control input for a pipeline's outputs; gives the packet back when it is one.
/// `Configure` brings the outputs to the new lists: kept groups get the new list (their filter
/// instances carry over), new groups are created, dropped groups are removed.
fn control<K: Kind, E>(
    input: Input,
    outputs: &mut Vec<Output<Chain<K>, E>>,
    new_output: &mut NewOutput<'_, K, E>,
    to_hub: &UnboundedSender<ToHub>,
) -> Option<RtpIn> {
    match input {
        Input::Rtp(p) => return Some(p),
        // Handled by the worker loops before they call this.
        Input::NewSource => {}
        Input::Configure(config) => {
            let mut wanted: Vec<(Group, Vec<FilterSpec>)> =
                config.branches.into_iter().map(|(k, v)| (Some(k), v)).collect();
            if !config.main.is_empty() {
                wanted.insert(0, (None, config.main));
            }
            outputs.retain(|o| wanted.iter().any(|(g, _)| *g == o.group));
            for (group, specs) in wanted {
                let idx = match outputs.iter().position(|o| o.group == group) {
                    Some(i) => i,
                    None => match new_output(group.clone()) {
                        Some(o) => {
                            outputs.push(o);
                            outputs.len() - 1
                        }
                        None => continue,
                    },
                };
                if let Err(errors) = outputs[idx].chain.apply(&specs) {
                    let _ = to_hub.send(ToHub::Rejected(spec_errors(errors)));
                }
            }
            for o in outputs.iter_mut() {
                forward_events(&o.group, o.chain.drain_events(), to_hub);
            }
        }
        Input::Keyframe(group) => {
            for o in outputs.iter_mut().filter(|o| o.group == group) {
                o.force_key = true;
            }
        }
        Input::Ping(ms) => {
            if ms.is_some() {
                for o in outputs.iter_mut() {
                    o.chain.set_ping_ms(ms);
                }
            }
        }
        Input::PeerReport { id, name, data } => {
            for o in outputs.iter_mut() {
                o.chain.set_peer_report(&id, &name, data.clone());
            }
        }
    }
    None
}

fn spec_errors(errors: Vec<filters::SpecError>) -> String {
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

/// Events of the main chain all go to the hub; a branch's only when they are failures (its
/// reports would shadow the main instances' in `GET_FILTERS_DATA`).
fn forward_events<'a>(group: &Group, events: impl Iterator<Item = ChainEvent> + 'a, to_hub: &UnboundedSender<ToHub>) {
    if group.is_none() {
        drain_chain_events(events, to_hub);
    } else {
        drain_chain_events(events.filter(|e| matches!(e, ChainEvent::Panicked { .. })), to_hub);
    }
}

fn run_video(format: Format, rx: Receiver<Input>, out: UnboundedSender<ToForwarder>, to_hub: UnboundedSender<ToHub>) {
    let mut decoder = match VideoDecoder::new(format) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "video decoder unavailable");
            return;
        }
    };
    let mut new_output = |group: Group| -> Option<Output<VideoChain, VideoEncoder>> {
        match VideoEncoder::new(format, VideoSettings::default()) {
            Ok(encoder) => Some(Output {
                group,
                chain: VideoChain::new(Budget::VIDEO),
                encoder,
                packetizer: Packetizer::new(format, MTU),
                force_key: true,
            }),
            Err(e) => {
                tracing::error!(error = %e, "video encoder unavailable");
                None
            }
        }
    };
    let mut outputs: Vec<Output<VideoChain, VideoEncoder>> = Vec::new();
    let mut assembler = FrameAssembler::new(format);
    let mut decoded = VideoFrame::new(2, 2);
    let mut scratch = VideoFrame::new(2, 2);
    let mut encoded = Vec::new();
    let mut waiting_for_key = true;
    let epoch = Instant::now();
    let _ = out.send(ToForwarder::NeedKeyframe);
    while let Ok(input) = rx.recv() {
        if let Input::NewSource = input {
            // The old sequence space means nothing now; the new stream starts at a keyframe.
            assembler = FrameAssembler::new(format);
            waiting_for_key = true;
            let _ = out.send(ToForwarder::NeedKeyframe);
            continue;
        }
        let Some(packet) = control(input, &mut outputs, &mut new_output, &to_hub) else { continue };
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
            match decoder.decode(&frame.data, &mut decoded) {
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
            decoded.pts = frame.arrival.duration_since(epoch);
            let single = outputs.len() == 1;
            for o in &mut outputs {
                // One output filters the decoded frame in place; several each get a copy.
                let picture = if single {
                    &mut decoded
                } else {
                    scratch.clone_from(&decoded);
                    &mut scratch
                };
                o.chain.process(picture);
                forward_events(&o.group, o.chain.drain_events(), &to_hub);
                encoded.clear();
                if let Err(e) = o.encoder.encode(picture, std::mem::take(&mut o.force_key), &mut encoded) {
                    tracing::warn!(error = %e, "encode error");
                    o.force_key = true;
                    continue;
                }
                match o.send(encoded.iter().map(|e| &e.data[..]), frame.timestamp, &out) {
                    Err(Gone) => return,
                    Ok(false) => {}
                    Ok(true) => {
                        METRICS.pipeline_frames_out.inc();
                        if o.group.is_none() {
                            METRICS.pipeline_latency.observe(frame.arrival.elapsed());
                        }
                    }
                }
            }
        }
    }
}

fn run_audio(rx: Receiver<Input>, out: UnboundedSender<ToForwarder>, to_hub: UnboundedSender<ToHub>) {
    let mut decoder = match AudioDecoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "opus decoder unavailable");
            return;
        }
    };
    let mut new_output = |group: Group| -> Option<Output<AudioChain, AudioEncoder>> {
        match AudioEncoder::new(2, 64_000) {
            Ok(encoder) => Some(Output {
                group,
                chain: AudioChain::new(Budget::AUDIO),
                encoder,
                packetizer: Packetizer::new(Format::Opus, MTU),
                force_key: false,
            }),
            Err(e) => {
                tracing::error!(error = %e, "opus encoder unavailable");
                None
            }
        }
    };
    let mut outputs: Vec<Output<AudioChain, AudioEncoder>> = Vec::new();
    let mut assembler = FrameAssembler::new(Format::Opus);
    let mut decoded = AudioFrame::new(2, 960, 48_000);
    let mut encoded = Vec::new();
    let epoch = Instant::now();
    while let Ok(input) = rx.recv() {
        if let Input::NewSource = input {
            assembler = FrameAssembler::new(Format::Opus);
            continue;
        }
        let Some(packet) = control(input, &mut outputs, &mut new_output, &to_hub) else { continue };
        for frame in assembler.push(packet) {
            match decoder.decode(&frame.data, &mut decoded) {
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
            decoded.pts = frame.arrival.duration_since(epoch);
            let single = outputs.len() == 1;
            for o in &mut outputs {
                let mut copy;
                let samples = if single {
                    &mut decoded
                } else {
                    copy =
                        AudioFrame::from_samples(decoded.channels(), decoded.sample_rate(), decoded.samples().to_vec());
                    copy.pts = decoded.pts;
                    &mut copy
                };
                o.chain.process(samples);
                forward_events(&o.group, o.chain.drain_events(), &to_hub);
                encoded.clear();
                if o.encoder.encode(samples, &mut encoded).is_err() {
                    continue;
                }
                if let Err(Gone) = o.send(encoded.iter().map(|e| &e[..]), frame.timestamp, &out) {
                    return;
                }
            }
        }
    }
}
