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
//!
//! Group filters: when the participant is a member of group filter instances, their individual
//! steps run on the decoded frame (before the participant's own filters), at each instance's
//! analysis rate, and their values go to the experiment's aggregator ([`super::group`]) stamped
//! with the frame's capture time on the experiment clock. A track with nothing but analysis is
//! decoded and never encoded (it is still forwarded as received).

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use filters::chain::{Chain, Media};
use filters::{
    AudioFrame, AudioStep, Budget, ChainEvent, Decimator, FilterSpec, GroupFilter, Sample, VideoFrame, VideoStep,
};
use tokio::sync::mpsc::UnboundedSender;

use super::clock::Clock;
use super::codec::{self, AudioDecoder, AudioEncoder, Encoded, VideoDecoder, VideoEncoder, VideoSettings};
use super::group::{GroupSink, Resolved};
use super::rtp::{self, Format, FrameAssembler, Packetizer, RtpIn, RtpOut};
use super::{Kind, ToHub};
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
    /// The group filter instances this track feeds.
    pub analysis: Option<Analysis>,
}

impl PipelineConfig {
    /// Nothing to decode for.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
            && self.branches.is_empty()
            && self.analysis.as_ref().is_none_or(|a| a.instances.is_empty())
    }

    /// Nothing to encode: the track is forwarded as received (and maybe analysed).
    pub fn encodes(&self) -> bool {
        !(self.main.is_empty() && self.branches.is_empty())
    }
}

/// A member's part in its experiment's group filters: which instances its track feeds, where
/// to, and the experiment clock's zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The participant id (how the aggregator knows the member).
    pub member: Arc<str>,
    /// Time zero of the values (START, or the experiment's creation before it).
    pub t0: Instant,
    /// The group filter instances (id, name, stored config) of this medium.
    pub instances: Vec<FilterSpec>,
    pub sink: GroupSink,
}

/// What the worker sends back to the forwarder.
#[derive(Debug)]
pub enum ToForwarder {
    Packets(Group, Vec<RtpOut>),
    /// The decoder needs a keyframe from the publisher (loss, start, decode error).
    NeedKeyframe,
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

/// A running pipeline. Dropping it stops the worker thread.
pub struct Pipeline {
    tx: SyncSender<Input>,
    kind: Kind,
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
        let kind = if format == Format::Opus { Kind::Audio } else { Kind::Video };
        let (tx, rx) = mpsc::sync_channel(INPUT_CAPACITY);
        let _ = tx.try_send(Input::Configure(config));
        std::thread::Builder::new().name(format!("media-{name}")).spawn(move || {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
                Kind::Video => run::<VideoDecoder>(format, rx, to_forwarder, to_hub),
                Kind::Audio => run::<AudioDecoder>(format, rx, to_forwarder, to_hub),
            }));
            if ok.is_err() {
                // A bug outside the (already guarded) filters: the stream falls back to
                // forwarding when the hub notices the channel closed.
                tracing::error!("media worker panicked; the track stops being processed");
            }
        })?;
        Ok(Self { tx, kind })
    }

    pub fn kind(&self) -> Kind {
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
type NewOutput<'a, M, E> = dyn FnMut(Group) -> Option<Output<Chain<M>, E>> + 'a;

/// Handles a control input for a pipeline's outputs; gives the packet back when it is one.
/// `Configure` brings the outputs to the new lists: kept groups get the new list (their filter
/// instances carry over), new groups are created, dropped groups are removed.
fn control<M: Media, E>(
    input: Input,
    outputs: &mut Vec<Output<Chain<M>, E>>,
    new_output: &mut NewOutput<'_, M, E>,
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

/// What differs between a video and an audio worker: the codecs, the decoded frame, the
/// chain's budget. Everything else (control, the stale-frame rule, one copy per extra output,
/// filter, encode, send) is [`run`], once; video's wait for a keyframe is the [`KeyframeGate`].
/// (Also what `exphub analyze` decodes recorded files with: one place knows a medium's codecs.)
pub(crate) trait Codec: Sized {
    const KIND: Kind;
    const BUDGET: Budget;
    /// What a chain of this medium processes: the decoded frame.
    type Frame: Clone;
    type Media: Media<Frame = Self::Frame>;
    type Encoder;
    /// What the encoder makes of one frame (one or more pieces).
    type Encoded: AsRef<[u8]>;

    /// The decoder for `format`.
    fn decoder(format: Format) -> codec::Result<Self>;
    /// Decodes one frame into `out`; `Ok(false)`: nothing to show yet.
    fn decode(&mut self, data: &[u8], out: &mut Self::Frame) -> codec::Result<bool>;
    /// A frame to decode into (its size follows the stream).
    fn blank() -> Self::Frame;
    fn set_pts(frame: &mut Self::Frame, pts: Duration);
    fn encoder(format: Format) -> codec::Result<Self::Encoder>;
    /// The individual step of a group filter for this medium (`None`: it has none).
    fn make_step(group: &GroupFilter, params: &filters::Params) -> Option<Result<Step, filters::ParamError>>;
    /// Runs a step of this medium on a decoded frame.
    fn step(step: &mut Step, frame: &Self::Frame) -> Option<Sample>;
    fn encode(
        encoder: &mut Self::Encoder,
        frame: &Self::Frame,
        force_key: bool,
        out: &mut Vec<Self::Encoded>,
    ) -> codec::Result<()>;
}

impl Codec for VideoDecoder {
    const KIND: Kind = Kind::Video;
    const BUDGET: Budget = Budget::VIDEO;
    type Frame = VideoFrame;
    type Media = filters::chain::Video;
    type Encoder = VideoEncoder;
    type Encoded = Encoded;

    fn decoder(format: Format) -> codec::Result<Self> {
        VideoDecoder::new(format)
    }
    fn decode(&mut self, data: &[u8], out: &mut VideoFrame) -> codec::Result<bool> {
        VideoDecoder::decode(self, data, out)
    }
    fn blank() -> VideoFrame {
        VideoFrame::new(2, 2)
    }
    fn set_pts(frame: &mut VideoFrame, pts: Duration) {
        frame.pts = pts;
    }
    fn encoder(format: Format) -> codec::Result<VideoEncoder> {
        VideoEncoder::new(format, VideoSettings::default())
    }
    fn make_step(group: &GroupFilter, params: &filters::Params) -> Option<Result<Step, filters::ParamError>> {
        group.video_step.map(|make| make(params).map(Step::Video))
    }
    fn step(step: &mut Step, frame: &VideoFrame) -> Option<Sample> {
        match step {
            Step::Video(s) => s.step(frame),
            Step::Audio(_) => None,
        }
    }
    fn encode(
        encoder: &mut VideoEncoder,
        frame: &VideoFrame,
        force_key: bool,
        out: &mut Vec<Encoded>,
    ) -> codec::Result<()> {
        encoder.encode(frame, force_key, out)
    }
}

impl Codec for AudioDecoder {
    const KIND: Kind = Kind::Audio;
    const BUDGET: Budget = Budget::AUDIO;
    type Frame = AudioFrame;
    type Media = filters::chain::Audio;
    type Encoder = AudioEncoder;
    type Encoded = Bytes;

    fn decoder(_: Format) -> codec::Result<Self> {
        AudioDecoder::new()
    }
    fn decode(&mut self, data: &[u8], out: &mut AudioFrame) -> codec::Result<bool> {
        AudioDecoder::decode(self, data, out)
    }
    fn blank() -> AudioFrame {
        AudioFrame::new(2, 960, 48_000)
    }
    fn set_pts(frame: &mut AudioFrame, pts: Duration) {
        frame.pts = pts;
    }
    fn encoder(_: Format) -> codec::Result<AudioEncoder> {
        AudioEncoder::new(2, 64_000)
    }
    fn make_step(group: &GroupFilter, params: &filters::Params) -> Option<Result<Step, filters::ParamError>> {
        group.audio_step.map(|make| make(params).map(Step::Audio))
    }
    fn step(step: &mut Step, frame: &AudioFrame) -> Option<Sample> {
        match step {
            Step::Audio(s) => s.step(frame),
            Step::Video(_) => None,
        }
    }
    /// Opus has no keyframes: `force_key` means nothing here.
    fn encode(encoder: &mut AudioEncoder, frame: &AudioFrame, _: bool, out: &mut Vec<Bytes>) -> codec::Result<()> {
        encoder.encode(frame, out)
    }
}

/// A group filter's individual step, of either medium.
pub enum Step {
    Video(Box<dyn VideoStep>),
    Audio(Box<dyn AudioStep>),
}

/// One group filter instance's individual step on this track.
struct Analyser {
    spec: FilterSpec,
    id: Arc<str>,
    step: Step,
    decimator: Decimator,
}

/// The track's group-filter analysis: its steps, the experiment clock, the aggregator.
struct Analysers {
    format: Format,
    config: Option<Analysis>,
    clock: Clock,
    list: Vec<Analyser>,
}

impl Analysers {
    fn new(format: Format) -> Self {
        Self { format, config: None, clock: Clock::new(format), list: Vec::new() }
    }

    /// Brings the steps to `analysis`: instances with the same id, name and config keep their
    /// state; a new clock zero (START) restarts the clock.
    fn apply<C: Codec>(&mut self, analysis: Option<Analysis>, to_hub: &UnboundedSender<ToHub>) {
        if self.config.as_ref().map(|a| a.t0) != analysis.as_ref().map(|a| a.t0) {
            self.clock = Clock::new(self.format);
            for a in &mut self.list {
                a.decimator.reset();
            }
        }
        let wanted = analysis.as_ref().map(|a| a.instances.as_slice()).unwrap_or_default();
        let mut old = std::mem::take(&mut self.list);
        for spec in wanted {
            if let Some(i) = old.iter().position(|a| a.spec == *spec) {
                self.list.push(old.swap_remove(i));
                continue;
            }
            match build_step::<C>(spec) {
                Ok(Some((step, rate))) => self.list.push(Analyser {
                    spec: spec.clone(),
                    id: Arc::from(spec.id.as_str()),
                    step,
                    decimator: Decimator::new(rate),
                }),
                Ok(None) => {}
                Err(why) => {
                    let _ = to_hub.send(ToHub::Rejected(why));
                }
            }
        }
        self.config = analysis;
    }

    /// Runs the steps due at this frame's capture time and hands their values over.
    fn run<C: Codec>(&mut self, timestamp: u32, arrival: Instant, frame: &C::Frame) {
        let Some(config) = &self.config else { return };
        if self.list.is_empty() {
            return;
        }
        let t_ms = self.clock.ms(timestamp, arrival, config.t0, true);
        let mut panicked = None;
        for (i, a) in self.list.iter_mut().enumerate() {
            if !a.decimator.admit(t_ms) {
                continue;
            }
            let step = &mut a.step;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| C::step(step, frame))) {
                Ok(value) => {
                    METRICS.group_values.inc();
                    config.sink.send(&a.id, &config.member, t_ms, value);
                }
                Err(_) => panicked = Some(i),
            }
        }
        if let Some(i) = panicked {
            // Like a chain's filter: a panicking step is reported and not run again.
            let a = self.list.remove(i);
            METRICS.filter_panics.inc();
            tracing::warn!(filter = %a.spec.name, id = %a.spec.id, "group filter step panicked; stopped on this track");
        }
    }
}

/// The step (and its analysis rate) of a group filter instance on a medium; `Ok(None)` when the
/// filter has no step for it.
fn build_step<C: Codec>(spec: &FilterSpec) -> Result<Option<(Step, f64)>, String> {
    let in_instance = |e: String| format!("{e} (instance {})", spec.id);
    let r = Resolved::new(&spec.name, &spec.config).map_err(in_instance)?;
    let rate = r.aggregation(&[]).map_err(in_instance)?.windowing().rate_hz;
    match C::make_step(&r.group, &r.params) {
        None => Ok(None),
        Some(Ok(step)) => Ok(Some((step, rate))),
        Some(Err(e)) => Err(in_instance(format!("{}: {e}", r.name))),
    }
}

/// Video's freeze after a loss: from the start, after a loss and after a decode error, frames
/// are not decoded until a keyframe arrives (the forwarder is asked for one and rate-limits
/// the requests), instead of decoding smeared inter frames. Audio has no gate.
struct KeyframeGate {
    enabled: bool,
    waiting: bool,
}

impl KeyframeGate {
    fn new(kind: Kind) -> Self {
        let enabled = kind == Kind::Video;
        Self { enabled, waiting: enabled }
    }

    /// Wait for the next keyframe (start, new source, decode error) and ask for it.
    fn wait(&mut self, out: &UnboundedSender<ToForwarder>) {
        if self.enabled {
            self.waiting = true;
            let _ = out.send(ToForwarder::NeedKeyframe);
        }
    }

    /// Whether `frame` may be decoded.
    fn admit(&mut self, frame: &rtp::Frame, out: &UnboundedSender<ToForwarder>) -> bool {
        if !self.enabled {
            return true;
        }
        if frame.after_loss {
            self.waiting = true;
        }
        if self.waiting && !frame.keyframe {
            let _ = out.send(ToForwarder::NeedKeyframe);
            return false;
        }
        self.waiting = false;
        true
    }
}

/// The worker: packets and control in, one decode per frame, one chain and one encode per
/// output, packets out.
fn run<C: Codec>(
    format: Format,
    rx: Receiver<Input>,
    out: UnboundedSender<ToForwarder>,
    to_hub: UnboundedSender<ToHub>,
) {
    let video = C::KIND == Kind::Video;
    let mut decoder = match C::decoder(format) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, kind = C::KIND.as_str(), "decoder unavailable");
            return;
        }
    };
    let mut new_output = |group: Group| -> Option<Output<Chain<C::Media>, C::Encoder>> {
        match C::encoder(format) {
            Ok(encoder) => Some(Output {
                group,
                chain: Chain::new(C::BUDGET),
                encoder,
                packetizer: Packetizer::new(format, MTU),
                // A video viewer's first picture must be a keyframe.
                force_key: video,
            }),
            Err(e) => {
                tracing::error!(error = %e, kind = C::KIND.as_str(), "encoder unavailable");
                None
            }
        }
    };
    let mut outputs: Vec<Output<Chain<C::Media>, C::Encoder>> = Vec::new();
    let mut assembler = FrameAssembler::new(format);
    let mut decoded = C::blank();
    let mut scratch = C::blank();
    let mut encoded = Vec::new();
    let mut gate = KeyframeGate::new(C::KIND);
    let mut analysers = Analysers::new(format);
    gate.wait(&out);
    let epoch = Instant::now();
    while let Ok(input) = rx.recv() {
        if let Input::NewSource = input {
            // The old sequence space means nothing now; the new stream starts at a keyframe.
            assembler = FrameAssembler::new(format);
            analysers.clock = Clock::new(format);
            gate.wait(&out);
            continue;
        }
        if let Input::Configure(c) = &input {
            analysers.apply::<C>(c.analysis.clone(), &to_hub);
        }
        let Some(packet) = control(input, &mut outputs, &mut new_output, &to_hub) else { continue };
        for frame in assembler.push(packet) {
            if video {
                METRICS.pipeline_frames_in.inc();
            }
            if !gate.admit(&frame, &out) {
                continue;
            }
            match decoder.decode(&frame.data, &mut decoded) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    METRICS.pipeline_decode_errors.inc();
                    tracing::debug!(error = %e, kind = C::KIND.as_str(), "decode error");
                    gate.wait(&out);
                    continue;
                }
            }
            // Analysis first: it is cheap, it is data, and it needs every frame it is due.
            analysers.run::<C>(frame.timestamp, frame.arrival, &decoded);
            if frame.arrival.elapsed() > STALE_AFTER {
                METRICS.pipeline_frames_stale.inc();
                continue;
            }
            C::set_pts(&mut decoded, frame.arrival.duration_since(epoch));
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
                if let Err(e) = C::encode(&mut o.encoder, picture, std::mem::take(&mut o.force_key), &mut encoded) {
                    tracing::warn!(error = %e, kind = C::KIND.as_str(), "encode error");
                    o.force_key = video;
                    continue;
                }
                match o.send(encoded.iter().map(|e| e.as_ref()), frame.timestamp, &out) {
                    Err(Gone) => return,
                    Ok(false) => {}
                    Ok(true) if video => {
                        METRICS.pipeline_frames_out.inc();
                        if o.group.is_none() {
                            METRICS.pipeline_latency.observe(frame.arrival.elapsed());
                        }
                    }
                    Ok(true) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::VideoChain;
    use serde_json::json;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    /// Outputs with a fake encoder: the number of the output, in order of creation.
    type Outputs = Vec<Output<VideoChain, usize>>;

    struct Rig {
        outputs: Outputs,
        created: usize,
        /// Groups whose encoder "cannot be opened".
        refuse: Vec<Group>,
        to_hub: UnboundedSender<ToHub>,
        hub: UnboundedReceiver<ToHub>,
    }

    impl Rig {
        fn new() -> Self {
            let (to_hub, hub) = unbounded_channel();
            Rig { outputs: Vec::new(), created: 0, refuse: Vec::new(), to_hub, hub }
        }

        fn input(&mut self, input: Input) -> Option<RtpIn> {
            let (created, refuse) = (&mut self.created, &self.refuse);
            let mut new_output = |group: Group| {
                if refuse.contains(&group) {
                    return None;
                }
                *created += 1;
                Some(Output {
                    group,
                    chain: VideoChain::new(Budget::VIDEO),
                    encoder: *created,
                    packetizer: Packetizer::new(Format::Vp8, MTU),
                    force_key: true,
                })
            };
            control(input, &mut self.outputs, &mut new_output, &self.to_hub)
        }

        fn configure(&mut self, main: &[&str], branches: &[(&str, &[&str])]) {
            let config = PipelineConfig {
                main: specs(main),
                branches: branches.iter().map(|(k, names)| (Arc::from(*k), specs(names))).collect(),
                analysis: None,
            };
            assert!(self.input(Input::Configure(config)).is_none());
        }

        /// Per output: its group, its encoder's number and its filters' names.
        fn state(&self) -> Vec<(Option<&str>, usize, Vec<&'static str>)> {
            self.outputs
                .iter()
                .map(|o| (o.group.as_deref(), o.encoder, o.chain.instances().map(|(_, name)| name).collect()))
                .collect()
        }

        fn rejected(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            while let Ok(ev) = self.hub.try_recv() {
                if let ToHub::Rejected(why) = ev {
                    out.push(why);
                }
            }
            out
        }
    }

    fn specs(names: &[&str]) -> Vec<FilterSpec> {
        names.iter().map(|n| FilterSpec::new(n.to_lowercase(), *n, json!({}))).collect()
    }

    #[test]
    fn configure_creates_the_main_output_first_then_one_per_branch() {
        let mut r = Rig::new();
        r.configure(&["MIRROR"], &[("b1", &["MUTE_VIDEO"]), ("b2", &["MIRROR", "MUTE_VIDEO"])]);
        assert_eq!(
            r.state(),
            vec![
                (None, 1, vec!["MIRROR"]),
                (Some("b1"), 2, vec!["MUTE_VIDEO"]),
                (Some("b2"), 3, vec!["MIRROR", "MUTE_VIDEO"]),
            ]
        );
        assert!(r.rejected().is_empty());
    }

    #[test]
    fn an_empty_main_list_means_no_main_output() {
        let mut r = Rig::new();
        r.configure(&[], &[("b1", &["MIRROR"])]);
        assert_eq!(r.state(), vec![(Some("b1"), 1, vec!["MIRROR"])]);
    }

    #[test]
    fn reconfiguring_keeps_kept_groups_drops_the_others_and_adds_new_ones() {
        let mut r = Rig::new();
        r.configure(&["MIRROR"], &[("b1", &["MUTE_VIDEO"]), ("b2", &["MIRROR"])]);
        r.configure(&["MUTE_VIDEO"], &[("b2", &["MUTE_VIDEO"]), ("b3", &["MIRROR"])]);
        // Main and b2 keep their encoders (no new keyframe, no new encoder state) with the new
        // lists; b1 is gone; b3 is new.
        assert_eq!(
            r.state(),
            vec![(None, 1, vec!["MUTE_VIDEO"]), (Some("b2"), 3, vec!["MUTE_VIDEO"]), (Some("b3"), 4, vec!["MIRROR"])]
        );
        // Back to branches only: the main output goes.
        r.configure(&[], &[("b3", &["MIRROR"])]);
        assert_eq!(r.state(), vec![(Some("b3"), 4, vec!["MIRROR"])]);
    }

    #[test]
    fn a_rejected_list_is_reported_and_the_previous_one_stays() {
        let mut r = Rig::new();
        r.configure(&["MIRROR"], &[]);
        r.configure(&["NO_SUCH_FILTER"], &[]);
        assert_eq!(r.state(), vec![(None, 1, vec!["MIRROR"])]);
        let rejected = r.rejected();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(rejected[0].contains("NO_SUCH_FILTER"), "{rejected:?}");
    }

    #[test]
    fn a_group_whose_encoder_cannot_open_is_skipped() {
        let mut r = Rig::new();
        r.refuse.push(Some(Arc::from("b1")));
        r.configure(&["MIRROR"], &[("b1", &["MIRROR"]), ("b2", &["MIRROR"])]);
        assert_eq!(r.state(), vec![(None, 1, vec!["MIRROR"]), (Some("b2"), 2, vec!["MIRROR"])]);
    }

    #[test]
    fn a_keyframe_request_reaches_only_its_group() {
        let mut r = Rig::new();
        r.configure(&["MIRROR"], &[("b1", &["MIRROR"])]);
        for o in &mut r.outputs {
            o.force_key = false;
        }
        assert!(r.input(Input::Keyframe(Some(Arc::from("b1")))).is_none());
        let keys: Vec<_> = r.outputs.iter().map(|o| (o.group.clone(), o.force_key)).collect();
        assert_eq!(keys, vec![(None, false), (Some(Arc::from("b1")), true)]);
        assert!(r.input(Input::Keyframe(None)).is_none());
        assert!(r.outputs.iter().all(|o| o.force_key));
    }

    #[test]
    fn a_packet_is_handed_back_and_changes_nothing() {
        let mut r = Rig::new();
        r.configure(&["MIRROR"], &[]);
        let p =
            RtpIn { seq: 7, timestamp: 9, marker: true, payload: Bytes::from_static(b"x"), arrival: Instant::now() };
        let back = r.input(Input::Rtp(p)).expect("the packet comes back");
        assert_eq!((back.seq, back.timestamp), (7, 9));
        assert_eq!(r.state(), vec![(None, 1, vec!["MIRROR"])]);
    }

    fn frame(keyframe: bool, after_loss: bool) -> rtp::Frame {
        rtp::Frame { timestamp: 0, data: Bytes::new(), keyframe, after_loss, arrival: Instant::now() }
    }

    fn asked(rx: &mut UnboundedReceiver<ToForwarder>) -> usize {
        std::iter::from_fn(|| rx.try_recv().ok()).filter(|m| matches!(m, ToForwarder::NeedKeyframe)).count()
    }

    #[test]
    fn video_waits_for_a_keyframe_at_the_start_after_a_loss_and_after_a_decode_error() {
        let (out, mut rx) = unbounded_channel();
        let mut gate = KeyframeGate::new(Kind::Video);
        gate.wait(&out);
        assert_eq!(asked(&mut rx), 1, "the worker asks at its start");
        assert!(!gate.admit(&frame(false, false), &out), "no inter frame before the first keyframe");
        assert_eq!(asked(&mut rx), 1, "and asks again");
        assert!(gate.admit(&frame(true, false), &out));
        assert!(gate.admit(&frame(false, false), &out));
        assert!(!gate.admit(&frame(false, true), &out), "an inter frame after a loss is not decoded");
        assert!(gate.admit(&frame(true, true), &out), "a keyframe after a loss is");
        gate.wait(&out); // a decode error or a new source
        assert!(!gate.admit(&frame(false, false), &out));
        assert!(gate.admit(&frame(true, false), &out));
        assert_eq!(asked(&mut rx), 3);
    }

    #[test]
    fn audio_has_no_keyframe_gate() {
        let (out, mut rx) = unbounded_channel();
        let mut gate = KeyframeGate::new(Kind::Audio);
        gate.wait(&out);
        assert!(gate.admit(&frame(false, false), &out));
        assert!(gate.admit(&frame(false, true), &out));
        assert_eq!(asked(&mut rx), 0);
    }
}
