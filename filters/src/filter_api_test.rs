//! `FILTER_API_TEST`: exercises the filter API's messaging. On frame 0 and every 300th frame it
//! sends `{"type": "TEST", "data": {"description": "Test message sent by FilterAPITestFilter",
//! "frame_counter": n, "time": "<now>"}}` to everyone in the experiment. Frames pass unchanged.
//! Runs on audio and video (each instance counts its own frames).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{
    audio, video, AudioFilter, AudioFrame, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, Target,
    VideoFilter, VideoFrame,
};

pub const INFO: FilterInfo = FilterInfo {
    name: "FILTER_API_TEST",
    listing: Listing::Session,
    channel: Channel::Both,
    group: None,
    description: "Sends TEST messages to everyone in the experiment (frame 0, then every 300th frame).",
    params: &[],
    video: Some(video::<FilterApiTest>),
    audio: Some(audio::<FilterApiTest>),
};

/// Messages go out on frames that are multiples of this.
pub const EVERY: u64 = 300;

pub struct FilterApiTest {
    counter: u64,
}

impl FilterApiTest {
    fn tick(&mut self, ctx: &mut FilterContext) {
        if self.counter % EVERY == 0 {
            ctx.send(Target::All, message(self.counter, ctx.wall_clock()));
        }
        self.counter += 1;
    }
}

/// The TEST message for frame `n` at `now`.
pub fn message(n: u64, now: SystemTime) -> Value {
    json!({"type": "TEST", "data": {
        "description": "Test message sent by FilterAPITestFilter",
        "frame_counter": n,
        "time": format_time(now),
    }})
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, the shape of Python's `str(datetime.now())`.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

impl VideoFilter for FilterApiTest {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(FilterApiTest { counter: 0 })
    }

    fn process(&mut self, _: &mut VideoFrame, ctx: &mut FilterContext) {
        self.tick(ctx);
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

impl AudioFilter for FilterApiTest {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(FilterApiTest { counter: 0 })
    }

    fn process(&mut self, _: &mut AudioFrame, ctx: &mut FilterContext) {
        self.tick(ctx);
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, gradient, Harness};
    use std::time::Duration;

    #[test]
    fn sends_on_frame_0_and_every_300th_frame_to_all() {
        let mut f = <FilterApiTest as VideoFilter>::new(&INFO.default_params()).unwrap();
        let mut h = Harness::new();
        h.wall_clock = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let run = h.run(&mut f, testing::video_frames(601, |_| gradient(8, 8)));
        let sent = run.sent();
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|(to, _)| **to == Target::All));
        let counters: Vec<u64> = sent.iter().map(|(_, m)| m["data"]["frame_counter"].as_u64().unwrap()).collect();
        assert_eq!(counters, [0, 300, 600]);
        assert_eq!(
            *sent[1].1,
            json!({"type": "TEST", "data": {"description": "Test message sent by FilterAPITestFilter",
                   "frame_counter": 300, "time": "2023-11-14 22:13:20.123456"}})
        );
    }

    #[test]
    fn audio_instances_count_their_own_frames() {
        let mut f = <FilterApiTest as AudioFilter>::new(&INFO.default_params()).unwrap();
        let run = testing::run(&mut f, testing::silence_frames(1, 301));
        assert_eq!(run.sent().len(), 2);
    }

    #[test]
    fn formats_dates_like_python() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00.000000");
        assert_eq!(format_time(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00:00.000000");
    }
}
