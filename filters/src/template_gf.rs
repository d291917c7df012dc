//! `TEMPLATE_GF`: SynthARium's template group filter, on exphub's group-filter SDK. Individual
//! step: the mean luma of the frame. Aggregate: per pair, the mean absolute difference of the
//! two members' brightness over the window.

use serde_json::{json, Value};

use crate::group::{aggregator, video_step, Aggregator, GroupFilter, Sample, Scope, VideoStep, Window, Windowing};
use crate::{Channel, FilterInfo, Listing, ParamError, Params, VideoFrame, Y};

pub const INFO: FilterInfo = FilterInfo {
    name: "TEMPLATE_GF",
    listing: Listing::Hidden,
    channel: Channel::Video,
    group: Some(GroupFilter {
        video_step: Some(video_step::<MeanLuma>),
        audio_step: None,
        aggregator: aggregator::<Difference>,
    }),
    description: "Template group filter: per-participant mean brightness; per pair, their mean absolute difference.",
    params: &[],
    video: None,
    audio: None,
};

pub struct MeanLuma;

impl VideoStep for MeanLuma {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(MeanLuma)
    }

    fn step(&mut self, frame: &VideoFrame) -> Option<Sample> {
        let (w, h) = (frame.plane_width(Y), frame.plane_height(Y));
        if w * h == 0 {
            return None;
        }
        let sum: u64 = (0..h).map(|r| frame.row(Y, r).iter().map(|&v| v as u64).sum::<u64>()).sum();
        Some(Sample::scalar(sum as f32 / (w * h) as f32))
    }
}

pub struct Difference;

impl Aggregator for Difference {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(Difference)
    }

    fn windowing(&self) -> Windowing {
        Windowing {
            rate_hz: 5.0,
            window_ms: 2000.0,
            step_ms: 1000.0,
            lead_ms: 0.0,
            max_gap_ms: 500.0,
            scope: Scope::Pairs,
        }
    }

    fn aggregate(&mut self, w: &Window<'_>) -> Option<Value> {
        let (a, b) = (w.series(0, 0), w.series(1, 0));
        let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).filter(|v| !v.is_nan()).collect();
        (!d.is_empty()).then(|| json!({"difference": d.iter().sum::<f32>() / d.len() as f32}))
    }
}
