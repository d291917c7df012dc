//! exphub filter SDK.
//!
//! This crate is what filter developers write against. It knows frames and parameters, never
//! tokio, webrtc, ffmpeg or the hub. For now it holds the **catalogue**: every filter the server
//! knows, its kind, channel and parameter schema, from which the server derives both the
//! `FILTERS_CONFIG` catalogue and the validation of filter names. The media-pipeline issue adds
//! the frame types, the `VideoFilter`/`AudioFilter` traits and the filters themselves.

/// Where a filter is offered (SynthARium's filter "type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Offered in the session designer.
    Session,
    /// Offered on test pages only.
    Test,
    /// Not listed in the catalogue (internal, e.g. the mute filters).
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

/// One parameter of a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A number input: `{min, max, step, value, defaultValue}`.
    Number { name: &'static str, min: f64, max: f64, step: f64, default: f64 },
    /// A choice list: `{defaultValue: [options], value, requiresOtherFilter}`. With
    /// `requires_other_filter`, `options[0]` names another filter whose instance id the value holds.
    Choice { name: &'static str, options: &'static [&'static str], default: &'static str, requires_other_filter: bool },
}

impl Param {
    pub fn name(&self) -> &'static str {
        match self {
            Param::Number { name, .. } | Param::Choice { name, .. } => name,
        }
    }
}

/// A filter as the catalogue describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterInfo {
    pub name: &'static str,
    pub listing: Listing,
    pub channel: Channel,
    /// A group filter (aggregates across participants).
    pub group: bool,
    pub description: &'static str,
    pub params: &'static [Param],
}

impl FilterInfo {
    /// The catalogue's default instance id: `name.lower().replace("_", "-")`.
    pub fn default_id(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }
}

/// Every filter the server knows, in catalogue order.
pub fn catalogue() -> &'static [FilterInfo] {
    CATALOGUE
}

/// Looks a filter up by name; `AUDIO_SPEAKING_TIME` (SynthARium main) is an alias of `SPEAKING_TIME`.
pub fn find(name: &str) -> Option<&'static FilterInfo> {
    let name = if name == "AUDIO_SPEAKING_TIME" { "SPEAKING_TIME" } else { name };
    CATALOGUE.iter().find(|f| f.name == name)
}

static CATALOGUE: &[FilterInfo] = &[
    FilterInfo {
        name: "FILTER_API_TEST",
        listing: Listing::Session,
        channel: Channel::Both,
        group: false,
        description: "Sends TEST messages to everyone in the experiment (frame 0, then every 300th frame).",
        params: &[],
    },
    FilterInfo {
        name: "EDGE_OUTLINE",
        listing: Listing::Session,
        channel: Channel::Video,
        group: false,
        description: "White edges on black.",
        params: &[],
    },
    FilterInfo {
        name: "ROTATION",
        listing: Listing::Session,
        channel: Channel::Video,
        group: false,
        description: "Rotates the picture continuously; angle is degrees per second.",
        params: &[
            Param::Choice {
                name: "direction",
                options: &["clockwise", "anti-clockwise"],
                default: "clockwise",
                requires_other_filter: false,
            },
            Param::Number { name: "angle", min: 1.0, max: 180.0, step: 1.0, default: 45.0 },
        ],
    },
    FilterInfo {
        name: "DELAY",
        listing: Listing::Session,
        channel: Channel::Both,
        group: false,
        description: "Delays the stream by a number of frames.",
        params: &[Param::Number { name: "size", min: 0.0, max: 120.0, step: 1.0, default: 60.0 }],
    },
    FilterInfo {
        name: "PING",
        listing: Listing::Session,
        channel: Channel::Video,
        group: false,
        description: "Measures the round-trip time to the participant over the data channel (ms).",
        params: &[
            Param::Number { name: "period", min: 10.0, max: 60000.0, step: 1.0, default: 1000.0 },
            Param::Number { name: "bufferLength", min: 1.0, max: 300.0, step: 1.0, default: 10.0 },
        ],
    },
    FilterInfo {
        name: "SPEAKING_TIME",
        listing: Listing::Session,
        channel: Channel::Audio,
        group: false,
        description: "Counts the seconds the participant speaks.",
        params: &[],
    },
    FilterInfo {
        name: "MUTE_AUDIO",
        listing: Listing::Hidden,
        channel: Channel::Audio,
        group: false,
        description: "Silence.",
        params: &[],
    },
    FilterInfo {
        name: "MUTE_VIDEO",
        listing: Listing::Hidden,
        channel: Channel::Video,
        group: false,
        description: "A black picture of the source's size.",
        params: &[],
    },
    FilterInfo {
        name: "TEMPLATE_GF",
        listing: Listing::Hidden,
        channel: Channel::Video,
        group: true,
        description: "Template group filter: per-participant mean brightness, aggregated as a standard deviation.",
        params: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_alias_resolves() {
        for (i, f) in CATALOGUE.iter().enumerate() {
            assert!(CATALOGUE[i + 1..].iter().all(|g| g.name != f.name), "duplicate {}", f.name);
        }
        assert_eq!(find("AUDIO_SPEAKING_TIME").map(|f| f.name), Some("SPEAKING_TIME"));
        assert_eq!(find("ROTATION").map(|f| f.default_id()), Some("rotation".to_owned()));
        assert!(find("NOPE").is_none());
    }
}
