//! Filter chains: what the server's media workers run.
//!
//! A [`Chain`] ([`VideoChain`] / [`AudioChain`]) owns the filter instances of one track, built
//! from a list of [`FilterSpec`]s (`id`, `name`, `config`). It
//! * applies a new list live ([`Chain::apply`]): instances whose id **and** name match are kept
//!   and get [`update`](crate::VideoFilter::update); others are built or dropped; the list order
//!   is the execution order; an invalid list changes nothing;
//! * runs every frame through the instances ([`Chain::process`]), timing each against the budget;
//! * **contains panics**: a filter that panics (in `new`, `process`, `update` or `drop`) is
//!   reported as [`ChainEvent::Panicked`] and bypassed from then on; the frame goes on through the
//!   rest of the chain;
//! * turns what filters asked of their [`FilterContext`] into [`ChainEvent`]s that the server
//!   drains after each frame ([`Chain::drain_events`]).
//!
//! Nothing here locks, awaits or talks to another thread: the server moves events out and
//! inputs (ping, other chain's reports, new specs) in between frames.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::api::context::{FilterContext, PingRequest, Request, Target};
use crate::api::filter::{AudioFilter, Channel, FilterInfo, VideoFilter};
use crate::api::frame::{AudioFrame, VideoFrame};
use crate::api::params::{ParamError, Params};

/// One entry of a participant's `video_filters` / `audio_filters` list.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    /// Instance id (unique within one list; a `"both"` filter has the same id in both lists).
    pub id: String,
    /// Filter name (`AUDIO_SPEAKING_TIME` is accepted for `SPEAKING_TIME`).
    pub name: String,
    /// The stored `config` object (whole catalogue entries or bare values per parameter).
    pub config: Value,
}

impl FilterSpec {
    pub fn new(id: impl Into<String>, name: impl Into<String>, config: Value) -> Self {
        FilterSpec { id: id.into(), name: name.into(), config }
    }
}

/// Why a filter list was rejected. `Display`: `ROTATION "r1": angle: 500 is above the maximum 180`.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecError {
    UnknownFilter {
        id: String,
        name: String,
    },
    /// The filter exists but does not process this chain's media (or is a group filter).
    WrongChannel {
        id: String,
        name: String,
        channel: Channel,
    },
    DuplicateId {
        id: String,
    },
    /// The config did not validate against the schema.
    Params {
        id: String,
        name: String,
        error: ParamError,
    },
    /// The constructor rejected the parameters.
    Create {
        id: String,
        name: String,
        error: ParamError,
    },
    /// The constructor panicked.
    Panicked {
        id: String,
        name: String,
        message: String,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::UnknownFilter { id, name } => write!(f, "{name} {id:?}: unknown filter"),
            SpecError::WrongChannel { id, name, channel } => {
                write!(f, "{name} {id:?}: does not run on {}", channel.as_str())
            }
            SpecError::DuplicateId { id } => write!(f, "{id:?}: duplicate filter id"),
            SpecError::Params { id, name, error } | SpecError::Create { id, name, error } => {
                write!(f, "{name} {id:?}: {error}")
            }
            SpecError::Panicked { id, name, message } => write!(f, "{name} {id:?}: panicked while starting: {message}"),
        }
    }
}

impl std::error::Error for SpecError {}

/// Where a filter panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Process,
    Update,
    Drop,
}

/// Something the server must act on, drained after each frame or `apply`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEvent {
    /// Instance `id` reported new data (only emitted when it changed). Store it for
    /// `GET_FILTERS_DATA` and forward it to the participant's other chain
    /// ([`Chain::set_peer_report`]).
    Report { id: Arc<str>, name: &'static str, data: Value },
    /// Deliver `data` to `to` in the participant's experiment.
    Send { id: Arc<str>, to: Target, data: Value },
    /// Start (or change) pinging this participant on behalf of `id`, or stop (`None`). The
    /// server pings while any instance wants it, at the shortest requested period.
    Ping { id: Arc<str>, request: Option<PingRequest> },
    /// Instance `id` left the chain (removed by `apply`, or bypassed after a panic): forget its
    /// report here and in the other chain.
    Removed { id: Arc<str>, name: &'static str },
    /// A filter panicked; it is bypassed from now on (the frame went on without it).
    Panicked { id: Arc<str>, name: &'static str, stage: Stage, message: String },
    /// `update` rejected new parameters; the instance keeps its old ones.
    UpdateFailed { id: Arc<str>, name: &'static str, error: ParamError },
    /// A filter took longer than [`Budget::filter`]. Rate-limited to one event per filter per
    /// second; `count` = overruns since the previous event.
    Overrun { id: Arc<str>, name: &'static str, took: Duration, budget: Duration, count: u64 },
    /// The whole chain took longer than [`Budget::chain`] (same rate limit).
    ChainOverrun { took: Duration, budget: Duration, count: u64 },
}

/// Time limits a chain checks. Overruns are reported, never enforced (a filter is not stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The whole chain's share of a frame interval (decode and encode need the rest).
    pub chain: Duration,
    /// One filter's limit.
    pub filter: Duration,
}

impl Budget {
    /// Video at 30 fps: 33 ms per frame for decode + chain + encode; the chain gets 10 ms, one
    /// filter 4 ms (aim for < 1 ms at 640x480).
    pub const VIDEO: Budget = Budget { chain: Duration::from_millis(10), filter: Duration::from_millis(4) };
    /// Audio in 20 ms frames: the chain gets 5 ms, one filter 2 ms (aim for < 0.1 ms).
    pub const AUDIO: Budget = Budget { chain: Duration::from_millis(5), filter: Duration::from_millis(2) };
}

/// Timing of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterStats {
    pub id: Arc<str>,
    pub name: &'static str,
    /// Frames processed.
    pub frames: u64,
    pub last: Duration,
    /// Exponential moving average (1/16 per frame).
    pub mean: Duration,
    pub max: Duration,
    /// Frames over [`Budget::filter`].
    pub overruns: u64,
    /// Panicked and no longer run.
    pub bypassed: bool,
}

/// The media a chain processes, as a type: [`Video`] or [`Audio`] (their frame and filter
/// types). Lets one [`Chain`] implementation serve both.
pub trait Media: 'static {
    type Frame;
    type Filter: ?Sized + Send;
    const CHANNEL: Channel;
    #[allow(clippy::type_complexity)]
    fn maker(info: &FilterInfo) -> Option<fn(&Params) -> Result<Box<Self::Filter>, ParamError>>;
    fn process(f: &mut Self::Filter, frame: &mut Self::Frame, ctx: &mut FilterContext);
    fn update(f: &mut Self::Filter, params: &Params) -> Result<(), ParamError>;
    /// [`VideoFilter::overwrites_chroma`]; `false` for audio.
    fn overwrites_chroma(f: &Self::Filter) -> bool;
}

/// Video chains.
pub struct Video;
/// Audio chains.
pub struct Audio;

impl Media for Video {
    type Frame = VideoFrame;
    type Filter = dyn VideoFilter;
    const CHANNEL: Channel = Channel::Video;
    fn maker(info: &FilterInfo) -> Option<fn(&Params) -> Result<Box<dyn VideoFilter>, ParamError>> {
        info.video
    }
    fn process(f: &mut Self::Filter, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        f.process(frame, ctx)
    }
    fn update(f: &mut Self::Filter, params: &Params) -> Result<(), ParamError> {
        f.update(params)
    }
    fn overwrites_chroma(f: &Self::Filter) -> bool {
        f.overwrites_chroma()
    }
}

impl Media for Audio {
    type Frame = AudioFrame;
    type Filter = dyn AudioFilter;
    const CHANNEL: Channel = Channel::Audio;
    fn maker(info: &FilterInfo) -> Option<fn(&Params) -> Result<Box<dyn AudioFilter>, ParamError>> {
        info.audio
    }
    fn process(f: &mut Self::Filter, frame: &mut AudioFrame, ctx: &mut FilterContext) {
        f.process(frame, ctx)
    }
    fn update(f: &mut Self::Filter, params: &Params) -> Result<(), ParamError> {
        f.update(params)
    }
    fn overwrites_chroma(_: &Self::Filter) -> bool {
        false
    }
}

/// The filter chain of one video track.
pub type VideoChain = Chain<Video>;
/// The filter chain of one audio track.
pub type AudioChain = Chain<Audio>;

struct Slot<F: ?Sized> {
    id: Arc<str>,
    info: &'static FilterInfo,
    /// `None` once the filter panicked (bypassed).
    filter: Option<Box<F>>,
    stats: FilterStats,
    /// Whether this instance has an active ping request (to withdraw it on removal).
    pinging: bool,
    overrun: RateLimit,
    /// The filter's [`Media::overwrites_chroma`], asked after `new` and each `update`.
    overwrites_chroma: bool,
}

/// One event per second at most, counting what it held back.
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    pending: u64,
}

impl RateLimit {
    /// Counts one occurrence; returns the count to report if an event is due now.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// Finds a filter by name: [`crate::find`] (the registry) unless a test supplies its own.
pub type Lookup = fn(&str) -> Option<&'static FilterInfo>;

/// A chain of filter instances for one track. See the module docs.
pub struct Chain<M: Media> {
    lookup: Lookup,
    slots: Vec<Slot<M::Filter>>,
    ctx: FilterContext,
    budget: Budget,
    events: Vec<ChainEvent>,
    frames: u64,
    chain_overrun: RateLimit,
    last_chain_time: Duration,
}

impl<M: Media> Chain<M> {
    /// An empty chain (frames pass through untouched).
    pub fn new(budget: Budget) -> Self {
        Chain::with_lookup(budget, crate::find)
    }

    /// A chain that finds filters with `lookup` instead of the registry: lets a developer run a
    /// filter in a real chain before registering it, and tests use it for misbehaving filters.
    pub fn with_lookup(budget: Budget, lookup: Lookup) -> Self {
        Chain {
            lookup,
            slots: Vec::new(),
            ctx: FilterContext::new(budget.chain),
            budget,
            events: Vec::new(),
            frames: 0,
            chain_overrun: RateLimit::default(),
            last_chain_time: Duration::ZERO,
        }
    }

    /// Checks a filter list without building anything (for the hub, to reject a bad
    /// `SET_FILTERS` before it reaches a pipeline). Returns every problem, not just the first.
    pub fn validate(specs: &[FilterSpec]) -> Result<Vec<(&'static FilterInfo, Params)>, Vec<SpecError>> {
        Self::validate_with(crate::find, specs)
    }

    /// [`validate`](Self::validate) with another lookup.
    pub fn validate_with(
        lookup: Lookup,
        specs: &[FilterSpec],
    ) -> Result<Vec<(&'static FilterInfo, Params)>, Vec<SpecError>> {
        let mut ok = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            if specs[..i].iter().any(|o| o.id == s.id) {
                errors.push(SpecError::DuplicateId { id: s.id.clone() });
                continue;
            }
            let Some(info) = lookup(&s.name) else {
                errors.push(SpecError::UnknownFilter { id: s.id.clone(), name: s.name.clone() });
                continue;
            };
            if info.is_group() || M::maker(info).is_none() {
                errors.push(SpecError::WrongChannel {
                    id: s.id.clone(),
                    name: info.name.to_owned(),
                    channel: M::CHANNEL,
                });
                continue;
            }
            match info.parse_config(&s.config) {
                Ok(p) => ok.push((info, p)),
                Err(error) => errors.push(SpecError::Params { id: s.id.clone(), name: info.name.to_owned(), error }),
            }
        }
        if errors.is_empty() {
            Ok(ok)
        } else {
            Err(errors)
        }
    }

    /// Replaces the chain with `specs` (a `SET_FILTERS` list for this track). Instances whose id
    /// and name match an existing one are kept (state carries over) and get `update`; the others
    /// are built; instances not in the list are dropped. If any spec is invalid or any new
    /// instance fails to build, nothing changes and every problem is returned.
    ///
    /// Events (update failures, panics in `update`/`drop`, ping withdrawals, removals) are queued
    /// for [`drain_events`](Self::drain_events).
    pub fn apply(&mut self, specs: &[FilterSpec]) -> Result<(), Vec<SpecError>> {
        let validated = Self::validate_with(self.lookup, specs)?;

        // Phase 1: build every new instance; the running chain is untouched until all succeed.
        let mut built: Vec<Option<(Box<M::Filter>, bool)>> = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        for (spec, (info, params)) in specs.iter().zip(&validated) {
            if self.reusable(&spec.id, info).is_some() {
                built.push(None);
                continue;
            }
            let make = M::maker(info).expect("validate checked that this kind has a constructor");
            let build = || {
                make(params).map(|f| {
                    let overwrites = M::overwrites_chroma(&f);
                    (f, overwrites)
                })
            };
            match catch_unwind(AssertUnwindSafe(build)) {
                Ok(Ok(f)) => built.push(Some(f)),
                Ok(Err(error)) => {
                    errors.push(SpecError::Create { id: spec.id.clone(), name: info.name.to_owned(), error })
                }
                Err(p) => errors.push(SpecError::Panicked {
                    id: spec.id.clone(),
                    name: info.name.to_owned(),
                    message: panic_message(&*p),
                }),
            }
        }
        if !errors.is_empty() {
            for f in built.into_iter().flatten() {
                // Never started: drop quietly, but a panicking Drop must not escape either.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(f)));
            }
            return Err(errors);
        }

        // Phase 2: assemble the new list in the requested order.
        let mut old = std::mem::take(&mut self.slots);
        let mut slots = Vec::with_capacity(specs.len());
        for ((spec, (info, params)), new) in specs.iter().zip(validated).zip(built) {
            match new {
                Some((filter, overwrites_chroma)) => {
                    let id: Arc<str> = Arc::from(spec.id.as_str());
                    // A bypassed instance with this id and name is replaced by the new one.
                    if let Some(i) = old.iter().position(|s| *s.id == *spec.id && s.info.name == info.name) {
                        let s = old.remove(i);
                        retire(s, &mut self.ctx, &mut self.events);
                    }
                    slots.push(Slot {
                        stats: FilterStats {
                            id: id.clone(),
                            name: info.name,
                            frames: 0,
                            last: Duration::ZERO,
                            mean: Duration::ZERO,
                            max: Duration::ZERO,
                            overruns: 0,
                            bypassed: false,
                        },
                        id,
                        info,
                        filter: Some(filter),
                        pinging: false,
                        overrun: RateLimit::default(),
                        overwrites_chroma,
                    });
                }
                None => {
                    let i = old
                        .iter()
                        .position(|s| *s.id == *spec.id && s.info.name == info.name)
                        .expect("reusable() found it");
                    let mut slot = old.remove(i);
                    let f = slot.filter.as_mut().expect("reusable() checked it is not bypassed");
                    let update = || M::update(f, &params).map(|()| M::overwrites_chroma(f));
                    match catch_unwind(AssertUnwindSafe(update)) {
                        Ok(Ok(overwrites)) => slot.overwrites_chroma = overwrites,
                        Ok(Err(error)) => {
                            self.events.push(ChainEvent::UpdateFailed { id: slot.id.clone(), name: info.name, error })
                        }
                        Err(p) => bypass(&mut slot, Stage::Update, &*p, &mut self.ctx, &mut self.events),
                    }
                    slots.push(slot);
                }
            }
        }
        for s in old {
            retire(s, &mut self.ctx, &mut self.events);
        }
        self.slots = slots;
        Ok(())
    }

    /// An existing, running instance with this id and filter.
    fn reusable(&self, id: &str, info: &FilterInfo) -> Option<usize> {
        self.slots.iter().position(|s| &*s.id == id && s.info.name == info.name && s.filter.is_some())
    }

    /// Runs one frame through every running instance, in order.
    pub fn process(&mut self, frame: &mut M::Frame) {
        if self.slots.is_empty() {
            self.frames += 1;
            return;
        }
        self.ctx.begin_frame(self.frames, SystemTime::now());
        self.frames += 1;
        let start = Instant::now();
        // The last running filter that overwrites chroma: the filters before it may skip theirs.
        let overwriter = self.slots.iter().rposition(|s| s.filter.is_some() && s.overwrites_chroma);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(f) = slot.filter.as_mut() else { continue };
            self.ctx.set_chroma_discarded(overwriter.is_some_and(|j| j > i));
            let t0 = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| M::process(f, frame, &mut self.ctx)));
            let now = Instant::now();
            let took = now - t0;
            match result {
                Ok(()) => {
                    drain_requests(&mut self.ctx, &slot.id, slot.info.name, &mut slot.pinging, &mut self.events);
                    let st = &mut slot.stats;
                    st.frames += 1;
                    st.last = took;
                    st.max = st.max.max(took);
                    st.mean = if st.frames == 1 { took } else { (st.mean * 15 + took) / 16 };
                    if took > self.budget.filter {
                        st.overruns += 1;
                        if let Some(count) = slot.overrun.hit(now) {
                            self.events.push(ChainEvent::Overrun {
                                id: slot.id.clone(),
                                name: slot.info.name,
                                took,
                                budget: self.budget.filter,
                                count,
                            });
                        }
                    }
                }
                Err(p) => {
                    // What it queued before panicking is not trustworthy: drop it.
                    self.ctx.outbox.clear();
                    bypass(slot, Stage::Process, &*p, &mut self.ctx, &mut self.events);
                }
            }
        }
        let now = Instant::now();
        self.ctx.set_chroma_discarded(false);
        self.last_chain_time = now - start;
        if self.last_chain_time > self.budget.chain {
            if let Some(count) = self.chain_overrun.hit(now) {
                self.events.push(ChainEvent::ChainOverrun {
                    took: self.last_chain_time,
                    budget: self.budget.chain,
                    count,
                });
            }
        }
    }

    /// Events since the last call, in order. Call after every frame and after `apply`.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, ChainEvent> {
        self.events.drain(..)
    }

    /// Removes every instance (the track ended), queuing their `Removed`/ping-stop events.
    pub fn clear(&mut self) {
        for s in std::mem::take(&mut self.slots) {
            retire(s, &mut self.ctx, &mut self.events);
        }
    }

    /// Timing of each instance, in chain order.
    pub fn stats(&self) -> impl Iterator<Item = &FilterStats> {
        self.slots.iter().map(|s| &s.stats)
    }

    /// How long the last frame took through the whole chain.
    pub fn last_chain_time(&self) -> Duration {
        self.last_chain_time
    }

    /// Instance ids in execution order, with their filter names.
    pub fn instances(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.slots.iter().map(|s| (&*s.id, s.info.name))
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The last report of instance `id` in this chain (`GET_FILTERS_DATA`).
    pub fn report(&self, id: &str) -> Option<&Value> {
        self.ctx.own_reports().get(id).map(|r| &r.data)
    }

    /// Sets the participant's current average RTT for filters that read it (`PING`).
    pub fn set_ping_ms(&mut self, ms: Option<f64>) {
        self.ctx.set_ping_ms(ms);
    }

    /// Passes on a report from the participant's other chain (from its
    /// [`ChainEvent::Report`]; `None` from its [`ChainEvent::Removed`]).
    pub fn set_peer_report(&mut self, id: &str, name: &str, data: Option<Value>) {
        self.ctx.set_peer_report(id, name, data);
    }

    /// The context (e.g. to inspect reports in tests).
    pub fn context(&self) -> &FilterContext {
        &self.ctx
    }

    pub fn context_mut(&mut self) -> &mut FilterContext {
        &mut self.ctx
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }
}

impl<M: Media> Drop for Chain<M> {
    /// Drops every filter with its panics contained. Call [`clear`](Chain::clear) and drain the
    /// events first if the server needs the ping withdrawals.
    fn drop(&mut self) {
        self.clear();
    }
}

/// Moves what a filter queued in the context into events, tagged with its instance.
pub(crate) fn drain_requests(
    ctx: &mut FilterContext,
    id: &Arc<str>,
    name: &'static str,
    pinging: &mut bool,
    events: &mut Vec<ChainEvent>,
) {
    if ctx.outbox.is_empty() {
        return;
    }
    let mut outbox = std::mem::take(&mut ctx.outbox);
    for r in outbox.drain(..) {
        match r {
            Request::Report(data) => {
                if ctx.store_own(id, name, &data) {
                    events.push(ChainEvent::Report { id: id.clone(), name, data });
                }
            }
            Request::Send { to, data } => events.push(ChainEvent::Send { id: id.clone(), to, data }),
            Request::Ping(request) => {
                *pinging = request.is_some();
                events.push(ChainEvent::Ping { id: id.clone(), request });
            }
        }
    }
    ctx.outbox = outbox; // keep the capacity
}

/// Takes a panicked filter out of service.
fn bypass<F: ?Sized>(
    slot: &mut Slot<F>,
    stage: Stage,
    payload: &(dyn Any + Send),
    ctx: &mut FilterContext,
    events: &mut Vec<ChainEvent>,
) {
    events.push(ChainEvent::Panicked {
        id: slot.id.clone(),
        name: slot.info.name,
        stage,
        message: panic_message(payload),
    });
    slot.stats.bypassed = true;
    if let Some(f) = slot.filter.take() {
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(f))) {
            events.push(ChainEvent::Panicked {
                id: slot.id.clone(),
                name: slot.info.name,
                stage: Stage::Drop,
                message: panic_message(&*p),
            });
        }
    }
    withdraw(slot, ctx, events);
}

/// Removes an instance from service: drop (panic contained), withdraw its ping and report.
fn retire<F: ?Sized>(mut slot: Slot<F>, ctx: &mut FilterContext, events: &mut Vec<ChainEvent>) {
    if let Some(f) = slot.filter.take() {
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(f))) {
            events.push(ChainEvent::Panicked {
                id: slot.id.clone(),
                name: slot.info.name,
                stage: Stage::Drop,
                message: panic_message(&*p),
            });
        }
        withdraw(&mut slot, ctx, events);
    }
}

fn withdraw<F: ?Sized>(slot: &mut Slot<F>, ctx: &mut FilterContext, events: &mut Vec<ChainEvent>) {
    if std::mem::take(&mut slot.pinging) {
        events.push(ChainEvent::Ping { id: slot.id.clone(), request: None });
    }
    ctx.forget_own(&slot.id);
    events.push(ChainEvent::Removed { id: slot.id.clone(), name: slot.info.name });
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, gradient, moving_box, Harness};
    use crate::{video, Listing, ParamError, Params, VideoFilter, Y};
    use serde_json::json;
    use std::time::Duration;

    fn spec(id: &str, name: &str, config: Value) -> FilterSpec {
        FilterSpec::new(id, name, config)
    }

    fn frame(i: usize) -> VideoFrame {
        let mut f = moving_box(64, 48, i);
        f.pts = testing::frame_time(i, 30.0);
        f
    }

    // ----- misbehaving filters, reachable only through a test lookup -----

    struct Panicky {
        after: u32,
        seen: u32,
    }
    impl VideoFilter for Panicky {
        fn new(p: &Params) -> Result<Self, ParamError> {
            Ok(Panicky { after: p.int("after") as u32, seen: 0 })
        }
        fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
            frame.row_mut(Y, 0)[0] = 1; // visible trace of having run
            ctx.report(json!({"seen": self.seen}));
            self.seen += 1;
            if self.seen > self.after {
                ctx.send("all", json!("never delivered"));
                panic!("boom at frame {}", self.seen);
            }
        }
        fn update(&mut self, p: &Params) -> Result<(), ParamError> {
            if p.int("after") == 99 {
                panic!("update boom");
            }
            if p.int("after") == 98 {
                return Err(ParamError::Invalid { param: "after".into(), reason: "98 is unlucky".into() });
            }
            self.after = p.int("after") as u32;
            Ok(())
        }
    }
    static PANICKY: FilterInfo = FilterInfo {
        name: "PANICKY",
        listing: Listing::Hidden,
        channel: crate::Channel::Video,
        group: None,
        description: "",
        params: &[crate::Param::Number { name: "after", min: 0.0, max: 100.0, step: 1.0, default: 2.0 }],
        video: Some(video::<Panicky>),
        audio: None,
    };

    struct Slow;
    impl VideoFilter for Slow {
        fn new(_: &Params) -> Result<Self, ParamError> {
            Ok(Slow)
        }
        fn process(&mut self, _: &mut VideoFrame, _: &mut FilterContext) {
            std::thread::sleep(Duration::from_millis(3));
        }
        fn update(&mut self, _: &Params) -> Result<(), ParamError> {
            Ok(())
        }
    }
    static SLOW: FilterInfo = FilterInfo { name: "SLOW", params: &[], video: Some(video::<Slow>), ..PANICKY };

    /// Reports whether its chroma was discarded; overwrites chroma itself if `overwrites` is 1
    /// and panics on its first frame if `panic` is 1.
    struct Probe {
        overwrites: bool,
        panic: bool,
    }
    impl VideoFilter for Probe {
        fn new(p: &Params) -> Result<Self, ParamError> {
            Ok(Probe { overwrites: p.int("overwrites") == 1, panic: p.int("panic") == 1 })
        }
        fn process(&mut self, _: &mut VideoFrame, ctx: &mut FilterContext) {
            ctx.report(json!(ctx.chroma_discarded()));
            assert!(!self.panic, "probe panics");
        }
        fn update(&mut self, p: &Params) -> Result<(), ParamError> {
            self.overwrites = p.int("overwrites") == 1;
            Ok(())
        }
        fn overwrites_chroma(&self) -> bool {
            self.overwrites
        }
    }
    static PROBE: FilterInfo = FilterInfo {
        name: "PROBE",
        params: &[
            crate::Param::Number { name: "overwrites", min: 0.0, max: 1.0, step: 1.0, default: 0.0 },
            crate::Param::Number { name: "panic", min: 0.0, max: 1.0, step: 1.0, default: 0.0 },
        ],
        video: Some(video::<Probe>),
        ..PANICKY
    };

    fn test_lookup(name: &str) -> Option<&'static FilterInfo> {
        match name {
            "PROBE" => Some(&PROBE),
            "PANICKY" => Some(&PANICKY),
            "SLOW" => Some(&SLOW),
            n => crate::find(n),
        }
    }

    fn events(c: &mut VideoChain) -> Vec<ChainEvent> {
        c.drain_events().collect()
    }

    #[test]
    fn runs_filters_in_list_order() {
        let mut c = VideoChain::new(Budget::VIDEO);
        c.apply(&[spec("m", "MIRROR", json!({})), spec("mute", "MUTE_VIDEO", json!({}))]).unwrap();
        let mut f = frame(0);
        c.process(&mut f);
        assert!(f.plane(Y).iter().all(|&v| v == crate::BLACK_Y), "mute ran last");
        c.apply(&[spec("mute", "MUTE_VIDEO", json!({})), spec("m", "MIRROR", json!({}))]).unwrap();
        let mut f = frame(0);
        c.process(&mut f);
        assert!(f.plane(Y).iter().all(|&v| v == crate::BLACK_Y));
        c.apply(&[spec("m", "MIRROR", json!({}))]).unwrap();
        let mut f = frame(0);
        c.process(&mut f);
        assert_eq!(f.at(Y, 63, 24), 235, "mirrored box");
        assert_eq!(c.instances().collect::<Vec<_>>(), [("m", "MIRROR")]);
    }

    #[test]
    fn reapplying_keeps_instances_with_the_same_id_and_name_and_updates_them() {
        let mut c = VideoChain::new(Budget::VIDEO);
        let rot = |speed: i32| {
            spec(
                "r",
                "ROTATION",
                json!({"angle": {"min": 1, "max": 180, "step": 1, "value": speed, "defaultValue": 45}, "direction": "anti-clockwise"}),
            )
        };
        c.apply(&[rot(90)]).unwrap();
        let src = gradient(64, 48);
        let run = |c: &mut VideoChain, t: f64| {
            let mut f = src.clone();
            f.pts = Duration::from_secs_f64(t);
            c.process(&mut f);
            f
        };
        run(&mut c, 0.0);
        run(&mut c, 1.0); // 90 degrees
        c.apply(&[rot(180)]).unwrap();
        let half_turn = run(&mut c, 1.5); // 90 + 0.5 * 180 = 180: kept its angle
        assert_eq!(half_turn.at(Y, 0, 0), src.at(Y, 63, 47));
        assert_eq!(c.stats().next().unwrap().frames, 3, "same instance");
        // Same id, different filter: a new instance.
        c.apply(&[spec("r", "MIRROR", json!({}))]).unwrap();
        assert_eq!(c.stats().next().unwrap().frames, 0);
        assert!(events(&mut c).contains(&ChainEvent::Removed { id: "r".into(), name: "ROTATION" }));
    }

    #[test]
    fn an_invalid_list_changes_nothing_and_lists_every_problem() {
        let mut c = VideoChain::new(Budget::VIDEO);
        c.apply(&[spec("m", "MIRROR", json!({}))]).unwrap();
        let err = c
            .apply(&[
                spec("a", "ROTATION", json!({"angle": 500})),
                spec("b", "NOPE", json!({})),
                spec("c", "SPEAKING_TIME", json!({})),
                spec("d", "TEMPLATE_GF", json!({})),
                spec("a", "MIRROR", json!({})),
            ])
            .unwrap_err();
        let text: Vec<String> = err.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            [
                "ROTATION \"a\": angle: 500 is above the maximum 180",
                "NOPE \"b\": unknown filter",
                "SPEAKING_TIME \"c\": does not run on video",
                "TEMPLATE_GF \"d\": does not run on video",
                "\"a\": duplicate filter id",
            ]
        );
        assert_eq!(c.instances().collect::<Vec<_>>(), [("m", "MIRROR")], "unchanged");
        assert!(VideoChain::validate(&[spec("x", "AUDIO_SPEAKING_TIME", json!({}))]).is_err());
        assert!(AudioChain::validate(&[
            spec("x", "AUDIO_SPEAKING_TIME", json!({})),
            spec("d", "DELAY", json!({"size": 3}))
        ])
        .is_ok());
    }

    #[test]
    fn a_panicking_filter_is_reported_and_bypassed_and_the_frame_goes_on() {
        let mut c = VideoChain::with_lookup(Budget::VIDEO, test_lookup);
        c.apply(&[spec("p", "PANICKY", json!({"after": 1})), spec("m", "MUTE_VIDEO", json!({}))]).unwrap();
        let mut f = frame(0);
        c.process(&mut f);
        assert_eq!(c.report("p"), Some(&json!({"seen": 0})));
        events(&mut c);
        let mut f = frame(1);
        c.process(&mut f); // panics here
        assert!(f.plane(Y).iter().all(|&v| v == crate::BLACK_Y), "the rest of the chain still ran");
        let ev = events(&mut c);
        assert!(
            matches!(&ev[0], ChainEvent::Panicked { id, stage: Stage::Process, message, .. } if &**id == "p" && message == "boom at frame 2"),
            "{ev:?}"
        );
        assert!(ev.contains(&ChainEvent::Removed { id: "p".into(), name: "PANICKY" }));
        assert!(!ev.iter().any(|e| matches!(e, ChainEvent::Send { .. })), "what it queued before panicking is dropped");
        assert_eq!(c.report("p"), None);
        assert!(c.stats().next().unwrap().bypassed);
        // Bypassed from now on: its trace pixel is not written.
        let mut f = frame(2);
        c.apply(&[spec("p", "PANICKY", json!({"after": 1}))]).unwrap_or_else(|e| panic!("{e:?}"));
        // ...unless the list is applied again, which builds a fresh instance.
        c.process(&mut f);
        assert_eq!(f.at(Y, 0, 0), 1);
        assert_eq!(c.stats().next().unwrap().frames, 1);
    }

    #[test]
    fn update_errors_and_panics_are_contained() {
        let mut c = VideoChain::with_lookup(Budget::VIDEO, test_lookup);
        c.apply(&[spec("p", "PANICKY", json!({"after": 50}))]).unwrap();
        c.apply(&[spec("p", "PANICKY", json!({"after": 98}))]).unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [ChainEvent::UpdateFailed { error, .. }] if error.to_string() == "after: 98 is unlucky"),
            "{ev:?}"
        );
        assert!(!c.stats().next().unwrap().bypassed, "keeps running with its old parameters");
        c.apply(&[spec("p", "PANICKY", json!({"after": 99}))]).unwrap();
        let ev = events(&mut c);
        assert!(matches!(&ev[0], ChainEvent::Panicked { stage: Stage::Update, .. }), "{ev:?}");
        assert!(c.stats().next().unwrap().bypassed);
    }

    #[test]
    fn overruns_are_reported_rate_limited() {
        let mut c = VideoChain::with_lookup(
            Budget { chain: Duration::from_millis(2), filter: Duration::from_millis(1) },
            test_lookup,
        );
        c.apply(&[spec("s", "SLOW", json!({}))]).unwrap();
        for i in 0..3 {
            c.process(&mut frame(i));
        }
        let ev = events(&mut c);
        let overruns: Vec<_> = ev.iter().filter(|e| matches!(e, ChainEvent::Overrun { .. })).collect();
        assert_eq!(overruns.len(), 1, "one event per second: {ev:?}");
        assert!(matches!(overruns[0], ChainEvent::Overrun { took, count: 1, .. } if *took >= Duration::from_millis(3)));
        assert!(ev.iter().any(|e| matches!(e, ChainEvent::ChainOverrun { .. })));
        let st = c.stats().next().unwrap();
        assert_eq!((st.frames, st.overruns), (3, 3));
        assert!(st.mean >= Duration::from_millis(3) && st.max >= st.mean);
    }

    #[test]
    fn ping_requests_are_withdrawn_when_the_instance_goes() {
        let mut c = VideoChain::new(Budget::VIDEO);
        c.apply(&[spec("ping", "PING", json!({"period": 500}))]).unwrap();
        c.set_ping_ms(Some(12.0));
        c.process(&mut frame(0));
        let ev = events(&mut c);
        assert_eq!(
            ev,
            [
                ChainEvent::Ping {
                    id: "ping".into(),
                    request: Some(PingRequest { period_ms: 500, buffer_length_s: 10 })
                },
                ChainEvent::Report { id: "ping".into(), name: "PING", data: json!({"ping": 12.0}) },
            ]
        );
        c.apply(&[]).unwrap();
        assert_eq!(
            events(&mut c),
            [
                ChainEvent::Ping { id: "ping".into(), request: None },
                ChainEvent::Removed { id: "ping".into(), name: "PING" }
            ]
        );
    }

    /// The server's job between a participant's two chains, done by hand: forward the audio
    /// chain's reports into the video chain; DISPLAY_SPEAKING_TIME then shows SPEAKING_TIME's count.
    #[test]
    fn reports_cross_from_the_audio_chain_to_the_video_chain() {
        let mut audio = AudioChain::new(Budget::AUDIO);
        let mut video = VideoChain::new(Budget::VIDEO);
        audio.apply(&[spec("st", "AUDIO_SPEAKING_TIME", json!({}))]).unwrap();
        let cfg = json!({"filterId": {"defaultValue": ["SPEAKING_TIME"], "value": "st", "requiresOtherFilter": true}});
        video.apply(&[spec("show", "DISPLAY_SPEAKING_TIME", cfg)]).unwrap();
        for mut a in testing::sine_frames(300.0, 0.5, 2, 100) {
            audio.process(&mut a);
        }
        for e in audio.drain_events() {
            if let ChainEvent::Report { id, name, data } = e {
                video.set_peer_report(&id, name, Some(data));
            }
        }
        assert_eq!(video.context().reported("st"), Some(&json!({"time": 2.0})));
        let mut f = VideoFrame::new(320, 240);
        f.fill(60, 128, 128);
        video.process(&mut f);
        let mut want = VideoFrame::new(320, 240);
        want.fill(60, 128, 128);
        let style = crate::draw::TextStyle::white(crate::draw::TextStyle::scale_for(240));
        crate::draw::draw_text(&mut want, 10, 240 - 10 - 9 * style.scale as isize, "2.0 s", style);
        assert_eq!(testing::luma_diff(&f, &want), 0.0);
    }

    #[test]
    fn filters_before_a_chroma_overwriter_are_told_their_chroma_is_discarded() {
        let mut c = VideoChain::with_lookup(Budget::VIDEO, test_lookup);
        let probe = |id: &str, overwrites: i32, panic: i32| {
            spec(id, "PROBE", json!({"overwrites": overwrites, "panic": panic}))
        };
        let discarded = |c: &mut VideoChain, ids: &[&str]| {
            c.process(&mut frame(0));
            events(c);
            ids.iter().map(|id| c.report(id) == Some(&json!(true))).collect::<Vec<_>>()
        };
        c.apply(&[probe("a", 0, 0), probe("b", 0, 0), probe("over", 1, 0), probe("after", 0, 0)]).unwrap();
        assert_eq!(discarded(&mut c, &["a", "b", "over", "after"]), [true, true, false, false]);
        // A live update that stops overwriting is seen at once.
        c.apply(&[probe("a", 0, 0), probe("b", 0, 0), probe("over", 0, 0), probe("after", 0, 0)]).unwrap();
        assert_eq!(discarded(&mut c, &["a", "b", "over", "after"]), [false; 4]);
        // The real filters: EDGE_OUTLINE declares it; after it is bypassed, nothing is discarded.
        c.apply(&[probe("a", 0, 0), spec("e", "EDGE_OUTLINE", json!({})), probe("p", 1, 1)]).unwrap();
        assert_eq!(discarded(&mut c, &["a"]), [true]);
        c.apply(&[probe("a", 0, 0), probe("p", 1, 1), spec("e", "MIRROR", json!({}))]).unwrap();
        assert_eq!(discarded(&mut c, &["a"]), [true], "the overwriter had not panicked yet");
        assert!(c.stats().nth(1).unwrap().bypassed);
        assert_eq!(discarded(&mut c, &["a"]), [false]);
        assert!(!c.context().chroma_discarded(), "reset after the frame");
    }

    /// ROTATION, MIRROR and BLUR before EDGE_OUTLINE skip chroma; the picture is the same as when
    /// they do not.
    #[test]
    fn skipping_discarded_chroma_does_not_change_the_output() {
        let specs = [
            spec("r", "ROTATION", json!({"angle": 33})),
            spec("m", "MIRROR", json!({})),
            spec("b", "BLUR", json!({})),
            spec("e", "EDGE_OUTLINE", json!({})),
        ];
        let mut c = VideoChain::new(Budget::VIDEO);
        c.apply(&specs).unwrap();
        let mut h = [Harness::new(), Harness::new(), Harness::new(), Harness::new()];
        let mut direct: Vec<Box<dyn VideoFilter>> = specs
            .iter()
            .map(|s| {
                let info = crate::find(&s.name).unwrap();
                (info.video.unwrap())(&info.parse_config(&s.config).unwrap()).unwrap()
            })
            .collect();
        for i in 0..5 {
            let (mut a, mut b) = (frame(i), frame(i));
            c.process(&mut a);
            for (f, h) in direct.iter_mut().zip(&mut h) {
                h.process(&mut **f, &mut b); // never told that chroma is discarded
            }
            assert_eq!(
                (a.plane(Y), a.plane(crate::U), a.plane(crate::V)),
                (b.plane(Y), b.plane(crate::U), b.plane(crate::V))
            );
        }
    }

    #[test]
    fn an_empty_chain_passes_frames_untouched() {
        let mut c = VideoChain::new(Budget::VIDEO);
        let src = frame(3);
        let mut f = src.clone();
        c.process(&mut f);
        assert_eq!(testing::luma_diff(&f, &src), 0.0);
        assert!(c.is_empty() && events(&mut c).is_empty());
    }
}
