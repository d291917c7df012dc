//! The group filters of one experiment: one aggregator thread (never the hub, never tokio's
//! workers) that receives every member's values from the members' pipelines through one bounded
//! channel, runs each group filter instance's [`Aggregation`] and reports results and series to
//! the hub.
//!
//! - Values carry their capture time on the experiment clock ([`super::clock`]); a window is
//!   evaluated once the clock has passed its end by [`SETTLE`], so values still in flight
//!   (network jitter, decode queue) are in it. A value later than that is counted, not lost
//!   for later windows.
//! - A full channel drops the value (counted in `exphub_group_values_dropped_total`): the
//!   media threads never wait for the aggregator.
//! - The instances come from the session ([`GroupConfig`]); an instance whose id, name and
//!   parameters stay keeps its series across membership changes (a late join, a rejoin);
//!   changed parameters or a new clock (START) start it over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use filters::{Aggregation, GroupFilter, GroupResult, Params, Sample};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::clock::since;
use crate::metrics::METRICS;

/// How long after a window's end it is evaluated.
pub const SETTLE: Duration = Duration::from_millis(400);
const TICK: Duration = Duration::from_millis(100);
/// Individual series go to the hub (for the event log) in batches this long.
const SERIES_EVERY: Duration = Duration::from_secs(1);
/// Values queued for the aggregator: a few seconds of 8 members at 15-50 Hz.
const CAPACITY: usize = 4096;

/// One group filter instance as the session defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub id: String,
    pub name: String,
    /// The stored `config` (validated against the filter's schema here).
    pub config: Value,
    /// Participant ids, in session order.
    pub members: Vec<String>,
}

/// What the aggregator runs: the instances, on the clock that starts at `t0`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    pub t0: Instant,
    pub instances: Vec<InstanceSpec>,
}

/// What the aggregator tells the hub.
#[derive(Debug)]
pub enum GroupEvent {
    /// Windows evaluated by one instance.
    Results { id: Arc<str>, name: &'static str, results: Vec<GroupResult> },
    /// One member's values of one instance since the last batch: `(t_ms, value)`.
    Series { id: Arc<str>, name: &'static str, member: Arc<str>, points: Vec<(f64, Option<Sample>)> },
    /// An instance that could not be built (its parameters do not validate).
    Rejected { id: String, why: String },
}

enum In {
    Value { id: Arc<str>, member: Arc<str>, t_ms: f64, value: Option<Sample> },
    Configure(GroupConfig),
    Stop,
}

static NEXT_SINK: AtomicU64 = AtomicU64::new(1);

/// Where a member's pipeline sends its values; cheap to clone. Two sinks are equal when they
/// feed the same aggregator.
#[derive(Clone)]
pub struct GroupSink {
    tx: SyncSender<In>,
    id: u64,
}

impl std::fmt::Debug for GroupSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupSink({})", self.id)
    }
}

impl PartialEq for GroupSink {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl GroupSink {
    /// Hands one value over; dropped (and counted) when the aggregator is behind.
    pub fn send(&self, id: &Arc<str>, member: &Arc<str>, t_ms: f64, value: Option<Sample>) {
        let v = In::Value { id: id.clone(), member: member.clone(), t_ms, value };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(v) {
            METRICS.group_values_dropped.inc();
        }
    }
}

/// The aggregator thread of one experiment. Dropping it stops the thread.
pub struct GroupWorker {
    sink: GroupSink,
}

impl GroupWorker {
    pub fn spawn(name: &str, to_hub: UnboundedSender<GroupEvent>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(CAPACITY);
        std::thread::Builder::new().name(format!("group-{name}")).spawn(move || {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(rx, to_hub)));
            if ok.is_err() {
                tracing::error!("group-filter aggregator panicked; the experiment's group filters stop");
            }
        })?;
        Ok(Self { sink: GroupSink { tx, id: NEXT_SINK.fetch_add(1, Ordering::Relaxed) } })
    }

    /// The sink the members' pipelines send to.
    pub fn sink(&self) -> GroupSink {
        self.sink.clone()
    }

    /// The instances to run (applied in order with the values).
    pub fn configure(&self, config: GroupConfig) {
        let _ = self.sink.tx.send(In::Configure(config));
    }
}

impl Drop for GroupWorker {
    /// The thread ends now, not when the last member's pipeline lets go of its sink.
    fn drop(&mut self) {
        let _ = self.sink.tx.try_send(In::Stop);
    }
}

/// One running instance.
struct Instance {
    spec: InstanceSpec,
    name: &'static str,
    id: Arc<str>,
    aggregation: Aggregation,
    /// Values since the last series batch, per member.
    pending: HashMap<Arc<str>, Vec<(f64, Option<Sample>)>>,
    late_reported: u64,
}

/// A group filter instance's registered filter and validated parameters: what its aggregation,
/// its members' steps and `exphub analyze` are all built from.
pub struct Resolved {
    pub name: &'static str,
    pub group: GroupFilter,
    pub params: Params,
}

impl Resolved {
    /// The registered group filter `name` with its stored `config` validated.
    pub fn new(name: &str, config: &Value) -> Result<Self, String> {
        let info = filters::find(name).ok_or_else(|| format!("unknown filter {name:?}"))?;
        let group = info.group.ok_or_else(|| format!("{} is not a group filter", info.name))?;
        let params = info.parse_config(config).map_err(|e| format!("{}: {e}", info.name))?;
        Ok(Self { name: info.name, group, params })
    }

    /// The aggregation over `members`.
    pub fn aggregation(&self, members: &[String]) -> Result<Aggregation, String> {
        let mut aggregation = Aggregation::new(&self.group, &self.params).map_err(|e| format!("{}: {e}", self.name))?;
        aggregation.set_members(members);
        Ok(aggregation)
    }
}

/// Builds an instance of a registered group filter from its stored config.
pub fn build(spec: &InstanceSpec) -> Result<(&'static str, Aggregation), String> {
    let r = Resolved::new(&spec.name, &spec.config)?;
    Ok((r.name, r.aggregation(&spec.members)?))
}

fn run(rx: Receiver<In>, to_hub: UnboundedSender<GroupEvent>) {
    let mut instances: Vec<Instance> = Vec::new();
    let mut t0: Option<Instant> = None;
    let mut next_series = Instant::now() + SERIES_EVERY;
    let mut next_tick = Instant::now() + TICK;
    let mut results = Vec::new();
    loop {
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(In::Value { id, member, t_ms, value }) => {
                if let Some(i) = instances.iter_mut().find(|i| i.id == id) {
                    if i.aggregation.push(&member, t_ms, value) {
                        i.pending.entry(member).or_default().push((t_ms, value));
                    }
                }
            }
            Ok(In::Configure(config)) => {
                let restart = t0 != Some(config.t0);
                flush_series(&mut instances, &to_hub);
                if restart {
                    instances.clear();
                }
                t0 = Some(config.t0);
                let mut next = Vec::with_capacity(config.instances.len());
                for spec in config.instances {
                    let kept = instances
                        .iter()
                        .position(|i| i.spec.id == spec.id && i.spec.name == spec.name && i.spec.config == spec.config);
                    match kept {
                        Some(k) => {
                            let mut i = instances.swap_remove(k);
                            i.aggregation.set_members(&spec.members);
                            i.spec = spec;
                            next.push(i);
                        }
                        None => match build(&spec) {
                            Ok((name, aggregation)) => next.push(Instance {
                                id: Arc::from(spec.id.as_str()),
                                spec,
                                name,
                                aggregation,
                                pending: HashMap::new(),
                                late_reported: 0,
                            }),
                            Err(why) => {
                                let _ = to_hub.send(GroupEvent::Rejected { id: spec.id, why });
                            }
                        },
                    }
                }
                instances = next;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(In::Stop) | Err(RecvTimeoutError::Disconnected) => {
                flush_series(&mut instances, &to_hub);
                return;
            }
        }
        // Every `TICK`, however busy the channel: evaluate what is complete.
        if Instant::now() < next_tick {
            continue;
        }
        next_tick = Instant::now() + TICK;
        let Some(t0) = t0 else { continue };
        let complete = since(t0, Instant::now()) - SETTLE.as_secs_f64() * 1000.0;
        for i in &mut instances {
            i.aggregation.advance(complete, &mut results);
            let late = i.aggregation.late();
            if late > i.late_reported {
                METRICS.group_values_late.add(late - i.late_reported);
                i.late_reported = late;
            }
            if !results.is_empty() {
                let results = std::mem::take(&mut results);
                METRICS.group_results.add(results.len() as u64);
                if to_hub.send(GroupEvent::Results { id: i.id.clone(), name: i.name, results }).is_err() {
                    return;
                }
            }
        }
        if Instant::now() >= next_series {
            next_series = Instant::now() + SERIES_EVERY;
            flush_series(&mut instances, &to_hub);
        }
    }
}

fn flush_series(instances: &mut [Instance], to_hub: &UnboundedSender<GroupEvent>) {
    for i in instances {
        for (member, points) in i.pending.drain() {
            if !points.is_empty() {
                let _ = to_hub.send(GroupEvent::Series { id: i.id.clone(), name: i.name, member, points });
            }
        }
    }
}
