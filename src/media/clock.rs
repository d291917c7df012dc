//! The experiment clock of research data: a frame's capture time in milliseconds since START,
//! from the sender's RTP timestamp anchored at the arrival of the stream's first frame (and
//! again if the sender's clock jumps by more than a second). The recorder stamps files with it;
//! the pipeline stamps group-filter values with it, so both lie on one timeline.

use std::time::Instant;

use super::rtp::Format;

/// The RTP timestamp → milliseconds-since-START mapping of one stream (a recorder's segment, a
/// pipeline's analysis).
pub struct Clock {
    /// Ticks per millisecond.
    rate: f64,
    last: Option<u64>,
    anchor: Option<(u64, f64)>,
}

impl Clock {
    pub fn new(format: Format) -> Self {
        let rate = if format == Format::Opus { 48.0 } else { 90.0 };
        Self { rate, last: None, anchor: None }
    }

    fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => ts as u64 + (1 << 32),
            Some(l) => (l as i64 + ts.wrapping_sub(l as u32) as i32 as i64) as u64,
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }

    /// Time since START of the frame with RTP timestamp `ts`; `arrival` anchors the clock (at
    /// the first frame, and again if the sender's clock jumps by more than a second).
    pub fn ms(&mut self, ts: u32, arrival: Instant, start: Instant, anchor: bool) -> f64 {
        let ext = self.extend(ts);
        let arrived = since(start, arrival);
        match self.anchor {
            Some((a_ts, a_ms)) => {
                let m = a_ms + (ext as i64 - a_ts as i64) as f64 / self.rate;
                if anchor && (m - arrived).abs() > 1000.0 {
                    self.anchor = Some((ext, arrived));
                    arrived
                } else {
                    m
                }
            }
            None => {
                self.anchor = Some((ext, arrived));
                arrived
            }
        }
    }
}

/// Signed milliseconds from `start` to `t`.
pub fn since(start: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(start) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(start.duration_since(t).as_secs_f64() * 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_maps_rtp_time_to_start_time_across_wraps() {
        let start = Instant::now();
        let mut c = Clock::new(Format::Vp8);
        let t0 = start + Duration::from_millis(500);
        assert_eq!(c.ms(u32::MAX - 8999, t0, start, true), 500.0);
        // 100 ms later in RTP time, across the 32-bit wrap, arriving a little late.
        assert!((c.ms(0, t0 + Duration::from_millis(104), start, true) - 600.0).abs() < 0.1);
        // An older frame (the processed copy) maps to its own time, not the newest.
        assert!((c.ms(u32::MAX - 8999, t0 + Duration::from_millis(110), start, false) - 500.0).abs() < 0.1);
    }
}
