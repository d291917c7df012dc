//! exphub filter SDK.
//!
//! This crate is what filter developers write against. It knows frames, parameters and a
//! context, never tokio, webrtc, ffmpeg or the hub (invariant: it depends on `std`,
//! `serde_json` and the workspace's `face` crate, whose analysis it re-exports as [`face`]).
//!
//! # Map
//! * [`VideoFrame`] (I420 planes with strides) and [`AudioFrame`] (interleaved `f32`, 48 kHz):
//!   `api/frame.rs`.
//! * [`VideoFilter`] / [`AudioFilter`]: `new(params)`, `process(&mut frame, &mut ctx)` in place,
//!   `update(params)` for live changes, `Drop` for cleanup: `api/filter.rs`.
//! * [`Param`] schemas → the catalogue entry ([`FilterInfo::config_json`]) and validated
//!   [`Params`] ([`FilterInfo::parse_config`], errors as [`ParamError`]): `api/params.rs`.
//! * [`FilterContext`]: report data, read other filters' reports, send messages, ping, timing:
//!   `api/context.rs`.
//! * [`draw`]: rectangles and bitmap-font text straight into I420.
//! * [`face`]: face analysis for filters (the `face` crate: detection, landmarks, pose, AU
//!   estimates) and [`face::FaceStream`], a stream analysed at a fixed rate.
//! * The registry ([`catalogue`], [`find`]): one line per filter, below.
//! * [`chain`]: [`VideoChain`] / [`AudioChain`], what the server runs per track: live
//!   re-configuration, per-filter timing, panic containment, events.
//! * [`testing`]: synthetic frames and a harness to run a filter without a server.
//! * One module per filter (`rotation`, `edge_outline`, ...); `template` is the commented
//!   starting point the README walks through.
//!
//! # Invariants
//! * A filter keeps the frame's size and works in place; per-frame work allocates nothing in
//!   steady state (buffers are reused: `clone_from`, scratch `Vec`s kept in the filter).
//! * Everything a filter does besides pixels goes through its [`FilterContext`], which is plain
//!   data: no lock or await on the media path.
//! * A panicking filter never takes the chain down: the chain catches it, reports it and bypasses
//!   the filter from then on (so never build the server with `panic = "abort"`).

// `x % n == 0` rather than `is_multiple_of` (stable only since 1.87; the workspace's MSRV is 1.85).
#![allow(unknown_lints, clippy::manual_is_multiple_of)]

mod api;
pub mod chain;
/// Group filters: the individual step, the aggregator and what runs between them.
pub mod group {
    pub use crate::api::group::*;
}
/// Synchrony math for group filters: correlation with missing values, lagged cross-correlation,
/// peak picking.
pub mod sync {
    pub use crate::api::sync::*;
}
/// OASIS, SynthARium's synchrony score of two smile series (`SYNC_SCORE_GF`'s aggregate):
/// symbolic words of the series, offset-adjusted similarity, both directions.
pub mod oasis {
    pub use crate::api::oasis::*;
}
pub mod testing;

pub use api::context::{FilterContext, PingRequest, Reported, Target};
pub use api::draw;
pub use api::face;
pub use api::filter::{audio, video, AudioFilter, Channel, FilterInfo, Listing, MakeAudio, MakeVideo, VideoFilter};
pub use api::frame::{AudioFrame, VideoFrame, VideoFramePool, BLACK_Y, NEUTRAL_UV, SAMPLE_RATE, U, V, WHITE_Y, Y};
pub use api::group::{
    aggregator, audio_step, video_step, Aggregation, Aggregator, AudioStep, Decimator, GroupFilter, GroupResult,
    MakeAggregator, MakeAudioStep, MakeVideoStep, Sample, Scope, VideoStep, Window, Windowing,
};
pub use api::params::{Param, ParamError, ParamValue, Params};
pub use api::simd::Kernel;
pub use chain::{AudioChain, Budget, ChainEvent, FilterSpec, FilterStats, SpecError, Stage, VideoChain};

pub mod audio_pitch;
pub mod blur;
pub mod delay;
pub mod display_speaking_time;
pub mod edge_outline;
pub mod fault_test;
pub mod filter_api_test;
pub mod group_display;
pub mod mirror;
pub mod motion_sync;
pub mod mute_audio;
pub mod mute_video;
pub mod openface_au;
pub mod ping;
pub mod rotation;
pub mod simple_glasses_detection;
pub mod speaking_time;
pub mod speech_sync;
pub mod sync_score;
pub mod template;
pub mod template_gf;

/// The registry: every filter the server knows, in catalogue order. **Adding a filter = one
/// file + two lines: its `pub mod` above and its `INFO` here.**
static REGISTRY: &[FilterInfo] = &[
    filter_api_test::INFO,
    edge_outline::INFO,
    rotation::INFO,
    delay::INFO,
    openface_au::INFO,
    simple_glasses_detection::INFO,
    ping::INFO,
    speaking_time::INFO,
    display_speaking_time::INFO,
    group_display::INFO,
    blur::INFO,
    mirror::INFO,
    audio_pitch::INFO,
    template::INFO,
    mute_audio::INFO,
    mute_video::INFO,
    fault_test::INFO,
    template_gf::INFO,
    motion_sync::INFO,
    speech_sync::INFO,
    sync_score::INFO,
];

/// Every filter the server knows, in catalogue order.
pub fn catalogue() -> &'static [FilterInfo] {
    REGISTRY
}

/// Looks a filter up by name; `AUDIO_SPEAKING_TIME` (SynthARium main) is an alias of `SPEAKING_TIME`.
pub fn find(name: &str) -> Option<&'static FilterInfo> {
    let name = if name == "AUDIO_SPEAKING_TIME" { "SPEAKING_TIME" } else { name };
    REGISTRY.iter().find(|f| f.name == name)
}

/// The whole `FILTERS_CONFIG` payload: `{"TEST": [FilterDict], "SESSION": [FilterDict]}` of every
/// listed filter (hidden ones are left out), in registry order.
pub fn catalogue_json() -> serde_json::Value {
    let listed =
        |l: Listing| REGISTRY.iter().filter(|f| f.listing == l).map(FilterInfo::catalogue_entry).collect::<Vec<_>>();
    serde_json::json!({"TEST": listed(Listing::Test), "SESSION": listed(Listing::Session)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_unique_and_alias_resolves() {
        for (i, f) in REGISTRY.iter().enumerate() {
            assert!(REGISTRY[i + 1..].iter().all(|g| g.name != f.name), "duplicate {}", f.name);
        }
        assert_eq!(find("AUDIO_SPEAKING_TIME").map(|f| f.name), Some("SPEAKING_TIME"));
        assert_eq!(find("ROTATION").map(|f| f.default_id()), Some("rotation".to_owned()));
        assert!(find("NOPE").is_none());
    }

    #[test]
    fn every_filter_is_runnable_where_its_channel_says() {
        for f in REGISTRY {
            if let Some(g) = f.group {
                // A group filter has exactly the step of its channel, and its defaults build both
                // halves.
                assert_eq!(
                    (g.video_step.is_some(), g.audio_step.is_some()),
                    (f.channel == Channel::Video, f.channel == Channel::Audio),
                    "{}",
                    f.name
                );
                let p = f.parse_config(&f.config_json()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
                assert!(
                    g.video_step.is_none_or(|m| m(&p).is_ok()) && g.audio_step.is_none_or(|m| m(&p).is_ok()),
                    "{}",
                    f.name
                );
                Aggregation::new(&g, &p).unwrap_or_else(|e| panic!("{}: {e}", f.name));
                continue;
            }
            let (v, a) = (f.video.is_some(), f.audio.is_some());
            let expect = match f.channel {
                Channel::Video => (true, false),
                Channel::Audio => (false, true),
                Channel::Both => (true, true),
            };
            assert_eq!((v, a), expect, "{}", f.name);
            // Defaults always validate and build.
            let p = f.parse_config(&f.config_json()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            if let Some(make) = f.video {
                make(&p).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            }
            if let Some(make) = f.audio {
                make(&p).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            }
        }
    }

    /// The catalogue keeps SynthARium's shapes and its start-up validation of them: a choice's
    /// options are strings, `value` a string, `requiresOtherFilter` a bool and, if true,
    /// `defaultValue[0]` an existing filter; numbers have int min/max/value when the default is.
    #[test]
    fn catalogue_matches_synthariums_filters_config() {
        let cfg = catalogue_json();
        let session: Vec<&str> =
            cfg["SESSION"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        for n in [
            "FILTER_API_TEST",
            "EDGE_OUTLINE",
            "ROTATION",
            "DELAY",
            "OPENFACE_AU",
            "PING",
            "SPEAKING_TIME",
            "DISPLAY_SPEAKING_TIME",
        ] {
            assert!(session.contains(&n), "{n} in SESSION: {session:?}");
        }
        // The group filters are listed with `groupFilter: true` (SynthARium's session form offers
        // those in its group-filter lists).
        for (n, channel) in [("MOTION_SYNC", "video"), ("SPEECH_SYNC", "audio"), ("SYNC_SCORE_GF", "video")] {
            let f = cfg["SESSION"].as_array().unwrap().iter().find(|f| f["name"] == n).unwrap_or_else(|| panic!("{n}"));
            assert_eq!((&f["groupFilter"], &f["channel"]), (&json!(true), &json!(channel)), "{n}");
        }
        let groups = cfg["SESSION"].as_array().unwrap().iter().filter(|f| f["groupFilter"] == true).count();
        assert_eq!(groups, 3, "no other listed filter is a group filter");
        for hidden in ["MUTE_AUDIO", "MUTE_VIDEO", "TEMPLATE_GF"] {
            assert!(!cfg.to_string().contains(&format!("\"{hidden}\"")), "{hidden} is not listed");
        }
        assert_eq!(
            cfg["TEST"],
            json!([simple_glasses_detection::INFO.catalogue_entry(), template::INFO.catalogue_entry()])
        );
        let rot = cfg["SESSION"].as_array().unwrap().iter().find(|f| f["name"] == "ROTATION").unwrap();
        assert_eq!(
            *rot,
            json!({"name": "ROTATION", "id": "rotation", "channel": "video", "groupFilter": false, "config": {
                "direction": {"defaultValue": ["clockwise", "anti-clockwise"], "value": "clockwise", "requiresOtherFilter": false},
                "angle": {"min": 1, "max": 180, "step": 1, "value": 45, "defaultValue": 45}}})
        );
        for list in [&cfg["TEST"], &cfg["SESSION"]] {
            for f in list.as_array().unwrap() {
                for (param, e) in f["config"].as_object().unwrap() {
                    let name = &f["name"];
                    match &e["defaultValue"] {
                        serde_json::Value::Array(opts) => {
                            assert!(opts.iter().all(|o| o.is_string()), "{name}.{param}");
                            assert!(e["value"].is_string(), "{name}.{param}");
                            assert!(e["requiresOtherFilter"].is_boolean(), "{name}.{param}");
                            if e["requiresOtherFilter"] == true {
                                assert!(
                                    find(opts[0].as_str().unwrap()).is_some(),
                                    "{name}.{param} requires an existing filter"
                                );
                            }
                        }
                        d if d.is_i64() => {
                            for k in ["min", "max", "value"] {
                                assert!(e[k].is_i64(), "{name}.{param}.{k} is an int");
                            }
                            assert!(e["step"].is_number(), "{name}.{param}.step");
                        }
                        d => assert!(d.is_number(), "{name}.{param}: defaultValue {d}"),
                    }
                }
            }
        }
        let dst = find("DISPLAY_SPEAKING_TIME").unwrap().config_json();
        assert_eq!(
            dst,
            json!({"filterId": {"defaultValue": ["SPEAKING_TIME"], "value": "", "requiresOtherFilter": true}})
        );
    }
}
