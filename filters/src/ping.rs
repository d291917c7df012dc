//! `PING`: measures the round-trip time to the participant. The filter only asks: on its first
//! frame it requests server→client `PING`s every `period` ms averaged over `bufferLength` s
//! ([`FilterContext::request_ping`]); the server measures and sets the average, which the filter
//! reports as `{"ping": avg_ms}` (0 until measured, as SynthARium). The chain withdraws the
//! request when the instance is removed. Frames pass unchanged.

use serde_json::json;

use crate::{video, Channel, FilterContext, FilterInfo, Listing, Param, ParamError, Params, VideoFilter, VideoFrame};

pub const INFO: FilterInfo = FilterInfo {
    name: "PING",
    listing: Listing::Session,
    channel: Channel::Video,
    group: None,
    description: "Measures the round-trip time to the participant over the data channel (ms).",
    params: &[
        Param::Number { name: "period", min: 10.0, max: 60000.0, step: 1.0, default: 1000.0 },
        Param::Number { name: "bufferLength", min: 1.0, max: 300.0, step: 1.0, default: 10.0 },
    ],
    video: Some(video::<Ping>),
    audio: None,
};

pub struct Ping {
    period_ms: u32,
    buffer_length_s: u32,
    /// Whether the current period/buffer have been requested from the server.
    requested: bool,
}

impl VideoFilter for Ping {
    fn new(p: &Params) -> Result<Self, ParamError> {
        Ok(Ping { period_ms: p.int("period") as u32, buffer_length_s: p.int("bufferLength") as u32, requested: false })
    }

    fn process(&mut self, _: &mut VideoFrame, ctx: &mut FilterContext) {
        if !self.requested {
            ctx.request_ping(self.period_ms, self.buffer_length_s);
            self.requested = true;
        }
        ctx.report(json!({ "ping": ctx.ping_ms().unwrap_or(0.0) }));
    }

    fn update(&mut self, p: &Params) -> Result<(), ParamError> {
        let (period, buffer) = (p.int("period") as u32, p.int("bufferLength") as u32);
        if (period, buffer) != (self.period_ms, self.buffer_length_s) {
            self.period_ms = period;
            self.buffer_length_s = buffer;
            self.requested = false; // re-request on the next frame
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, gradient, Harness};
    use crate::PingRequest;

    #[test]
    fn requests_pinging_once_and_reports_the_servers_average() {
        let mut f = Ping::new(&INFO.default_params().with("period", 500)).unwrap();
        let mut h = Harness::new();
        let first = h.run(&mut f, testing::video_frames(3, |_| gradient(8, 8)));
        assert_eq!(first.pings(), [Some(PingRequest { period_ms: 500, buffer_length_s: 10 })]);
        assert_eq!(first.reports(), [&json!({"ping": 0.0})], "0 until measured; unchanged reports are not repeated");
        h.ctx.set_ping_ms(Some(42.5));
        let second = h.run(&mut f, testing::video_frames(2, |_| gradient(8, 8)));
        assert!(second.pings().is_empty());
        assert_eq!(second.reports(), [&json!({"ping": 42.5})]);
    }

    #[test]
    fn a_new_period_is_requested_again() {
        let mut f = Ping::new(&INFO.default_params()).unwrap();
        let mut h = Harness::new();
        h.run(&mut f, testing::video_frames(1, |_| gradient(8, 8)));
        f.update(&INFO.default_params()).unwrap();
        assert!(
            h.run(&mut f, testing::video_frames(1, |_| gradient(8, 8))).pings().is_empty(),
            "same values: no new request"
        );
        f.update(&INFO.default_params().with("bufferLength", 60)).unwrap();
        let run = h.run(&mut f, testing::video_frames(1, |_| gradient(8, 8)));
        assert_eq!(run.pings(), [Some(PingRequest { period_ms: 1000, buffer_length_s: 60 })]);
    }
}
