//! The node's own CPU use, measured for placement: the process's user + system time from
//! `/proc/self/stat`, sampled at every heartbeat and smoothed by an exponential moving average
//! (time constant [`TAU`]), in millicores (1000 = one core busy). Placement takes
//! `capacity − max(reserved load, measured cpu)` as a node's room, so a node busier than its
//! reservations predict (a cost model that is off, other work on the machine's process) gets
//! no new experiments.

use std::time::{Duration, Instant};

/// How fast the average follows a change: after `TAU` it has moved 63 % of the way.
pub const TAU: Duration = Duration::from_secs(5);

/// The process's CPU time so far, in clock ticks (user + system), from a `/proc/<pid>/stat`
/// text. The command name (field 2) may hold spaces and parentheses, so fields are counted
/// after its last `)`.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime (14), stime (15).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// Clock ticks per second of `/proc/*/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// An exponential moving average of CPU use, fed with cumulative CPU time samples.
#[derive(Debug)]
pub struct CpuMeter {
    ticks_per_second: f64,
    last: Option<(Instant, u64)>,
    average: Option<f64>,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new(ticks_per_second())
    }
}

impl CpuMeter {
    pub fn new(ticks_per_second: f64) -> Self {
        CpuMeter { ticks_per_second, last: None, average: None }
    }

    /// Takes a sample (cumulative `ticks` at `at`) and returns the average in millicores
    /// (0 until two samples are apart in time). The first interval's use seeds the average.
    pub fn sample(&mut self, at: Instant, ticks: u64) -> f32 {
        if let Some((t0, k0)) = self.last {
            let dt = at.saturating_duration_since(t0).as_secs_f64();
            if dt > 0.0 {
                let used = ticks.saturating_sub(k0) as f64 / self.ticks_per_second;
                let now = used / dt * 1000.0;
                let alpha = 1.0 - (-dt / TAU.as_secs_f64()).exp();
                self.average = Some(self.average.map_or(now, |avg| avg + alpha * (now - avg)));
            }
        }
        self.last = Some((at, ticks));
        self.millicores()
    }

    /// Reads this process's CPU time now; the average, or `None` if `/proc` cannot be read.
    pub fn sample_self(&mut self) -> Option<f32> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        Some(self.sample(Instant::now(), stat_ticks(&stat)?))
    }

    /// The current average, in millicores.
    pub fn millicores(&self) -> f32 {
        self.average.unwrap_or(0.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_the_command_name() {
        let stat = "4242 (exp hub) (x)) S 1 4242 4242 0 -1 4194560 900 0 3 0 250 70 0 0 20 0 9 0 123 0 0";
        assert_eq!(stat_ticks(stat), Some(320));
        assert_eq!(stat_ticks("4242 (exphub) S 1"), None, "too short");
        assert_eq!(stat_ticks("no name here"), None);
        assert_eq!(stat_ticks("1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 1"), None, "not a number");
    }

    #[test]
    fn the_average_follows_use_in_millicores() {
        let mut m = CpuMeter::new(100.0);
        let t0 = Instant::now();
        assert_eq!(m.sample(t0, 1000), 0.0, "one sample says nothing yet");
        // Half a core for a second: 50 ticks of 1/100 s.
        assert!((m.sample(t0 + Duration::from_secs(1), 1050) - 500.0).abs() < 0.01);
        // Then two cores busy: the average moves towards 2000 with the time constant.
        let mut ticks = 1050;
        let mut last = 0.0;
        for s in 2..=30 {
            ticks += 200;
            last = m.sample(t0 + Duration::from_secs(s), ticks);
            assert!(last > 500.0 && last < 2000.0, "{last}");
        }
        assert!(last > 1990.0, "after six time constants it is there: {last}");
        // Idle: it decays, 63 % of the way after TAU.
        let at = t0 + Duration::from_secs(30) + TAU;
        let idle = m.sample(at, ticks);
        assert!((idle - last * (-1.0f32).exp()).abs() < 1.0, "{idle}");
    }

    #[test]
    fn a_clock_that_does_not_move_or_a_counter_that_goes_back_changes_nothing_harmful() {
        let mut m = CpuMeter::new(100.0);
        let t0 = Instant::now();
        m.sample(t0, 100);
        assert_eq!(m.sample(t0, 200), 0.0, "no time passed");
        assert_eq!(m.sample(t0 + Duration::from_secs(1), 50), 0.0, "a counter going back counts as idle");
    }

    #[test]
    fn this_process_can_be_measured() {
        let ticks = || stat_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let mut m = CpuMeter::default();
        assert!(m.sample_self().is_some());
        // Busy until the kernel has counted some CPU time (bounded, on a loaded machine too).
        let (start, until) = (ticks(), Instant::now() + Duration::from_secs(20));
        let mut x = 0u64;
        while ticks() < start + 3 && Instant::now() < until {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        assert!(m.sample_self().unwrap() > 0.0, "a busy loop uses CPU");
    }
}
