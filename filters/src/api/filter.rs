//! The filter traits and [`FilterInfo`], a filter's declaration (name, listing, channel,
//! parameter schema and constructors) from which the registry, the catalogue and the chains are
//! derived.

use serde_json::{json, Map, Value};

use super::context::FilterContext;
use super::frame::{AudioFrame, VideoFrame};
use super::group::GroupFilter;
use super::params::{Param, ParamError, Params};

/// A video filter: changes a [`VideoFrame`] in place, keeping its size.
///
/// Lifecycle: the chain builds an instance with [`new`](Self::new) from validated [`Params`],
/// calls [`process`](Self::process) once per frame, [`update`](Self::update) when the
/// experimenter changes its parameters (same id and name), and drops it when it is removed
/// (implement `Drop` to release anything the filter holds). Everything runs on one pipeline
/// thread, so no method needs locks; `Send` lets the chain move to that thread.
pub trait VideoFilter: Send {
    /// Builds an instance. `params` are already validated against the schema.
    fn new(params: &Params) -> Result<Self, ParamError>
    where
        Self: Sized;

    /// Processes one frame in place. Must not change the frame's size. Read `frame.pts` for time.
    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext);

    /// Applies new parameters from the next frame on; state (an accumulated rotation angle, a
    /// ring of delayed frames) carries over. On `Err` the filter must keep its old parameters.
    fn update(&mut self, params: &Params) -> Result<(), ParamError>;

    /// Whether this filter sets U and V to values that do not depend on their previous contents
    /// (EDGE_OUTLINE and MUTE_VIDEO write neutral chroma). The chain then tells the filters
    /// before it, through [`FilterContext::chroma_discarded`], that their chroma work would be
    /// wasted. Asked when the instance is built and after each [`update`](Self::update).
    /// Default `false`; answering `true` wrongly makes earlier filters leave stale chroma.
    fn overwrites_chroma(&self) -> bool {
        false
    }
}

/// An audio filter: changes an [`AudioFrame`] in place, keeping its size. Same lifecycle as
/// [`VideoFilter`].
pub trait AudioFilter: Send {
    /// Builds an instance. `params` are already validated against the schema.
    fn new(params: &Params) -> Result<Self, ParamError>
    where
        Self: Sized;

    /// Processes one block of samples in place. Must not change the number of samples.
    fn process(&mut self, frame: &mut AudioFrame, ctx: &mut FilterContext);

    /// Applies new parameters from the next frame on, keeping state. On `Err` keep the old ones.
    fn update(&mut self, params: &Params) -> Result<(), ParamError>;
}

/// Builds a boxed video filter from validated parameters (what [`FilterInfo::video`] holds).
pub type MakeVideo = fn(&Params) -> Result<Box<dyn VideoFilter>, ParamError>;
/// Builds a boxed audio filter from validated parameters (what [`FilterInfo::audio`] holds).
pub type MakeAudio = fn(&Params) -> Result<Box<dyn AudioFilter>, ParamError>;

/// The [`MakeVideo`] of a filter type: `video: Some(filters::video::<Rotation>)`.
pub fn video<F: VideoFilter + 'static>(params: &Params) -> Result<Box<dyn VideoFilter>, ParamError> {
    Ok(Box::new(F::new(params)?))
}

/// The [`MakeAudio`] of a filter type: `audio: Some(filters::audio::<SpeakingTime>)`.
pub fn audio<F: AudioFilter + 'static>(params: &Params) -> Result<Box<dyn AudioFilter>, ParamError> {
    Ok(Box::new(F::new(params)?))
}

/// Where a filter is offered (SynthARium's filter "type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Offered in the session designer (`FILTERS_CONFIG.SESSION`).
    Session,
    /// Offered on test pages only (`FILTERS_CONFIG.TEST`; the designer ignores these).
    Test,
    /// Not listed in the catalogue (internal, e.g. the mute filters), but valid in filter lists.
    Hidden,
}

/// Which media a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Video,
    Audio,
    Both,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Video => "video",
            Channel::Audio => "audio",
            Channel::Both => "both",
        }
    }
}

/// A filter's declaration: everything the server needs to list, validate and build it. Each
/// filter file defines one as `pub const INFO: FilterInfo`; the registry lists them.
#[derive(Debug, Clone)]
pub struct FilterInfo {
    /// Unique, SCREAMING_SNAKE_CASE (the name stored in sessions).
    pub name: &'static str,
    pub listing: Listing,
    /// Informational (catalogue `channel`); what actually runs where is decided by which
    /// constructors exist.
    pub channel: Channel,
    /// A group filter's two halves (individual step, aggregator; see [`group`](crate::group)).
    /// `None` for a filter the chains run; group filters are never run by chains.
    pub group: Option<GroupFilter>,
    pub description: &'static str,
    pub params: &'static [Param],
    /// Constructor for video chains, if the filter processes video.
    pub video: Option<MakeVideo>,
    /// Constructor for audio chains, if the filter processes audio.
    pub audio: Option<MakeAudio>,
}

impl PartialEq for FilterInfo {
    /// Filters are identified by name (names are unique in the registry).
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl FilterInfo {
    /// A group filter (runs per group, not in a member's chain).
    pub fn is_group(&self) -> bool {
        self.group.is_some()
    }

    /// The catalogue's default instance id: `name.lower().replace("_", "-")`.
    pub fn default_id(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }

    /// Every parameter at its default.
    pub fn default_params(&self) -> Params {
        Params::defaults(self.params)
    }

    /// Validates a stored or requested `config` object (see [`Params::parse`]).
    pub fn parse_config(&self, config: &Value) -> Result<Params, ParamError> {
        Params::parse(self.params, config)
    }

    /// The catalogue `config` object: one entry per parameter, SynthARium's shapes.
    pub fn config_json(&self) -> Value {
        let mut m = Map::new();
        for p in self.params {
            m.insert(p.name().to_owned(), p.entry_json());
        }
        Value::Object(m)
    }

    /// The whole catalogue entry (a SynthARium `FilterDict`):
    /// `{name, id, channel, groupFilter, config}`.
    pub fn catalogue_entry(&self) -> Value {
        json!({
            "name": self.name,
            "id": self.default_id(),
            "channel": self.channel.as_str(),
            "groupFilter": self.is_group(),
            "config": self.config_json(),
        })
    }
}
