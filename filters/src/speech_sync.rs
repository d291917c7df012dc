//! `SPEECH_SYNC`: turn-taking and vocal synchrony per pair of participants, from each one's
//! voice activity and loudness.
//!
//! **Individual step** ([`VoiceActivity`]), on every decoded 20 ms block (50 Hz): the sample
//! `[active, level]` where `level` is the block's RMS over all channels in dBFS (0 dB = a
//! full-scale square wave, so a full-scale sine is -3 dBFS; floored at -100) and `active` is 1
//! or 0, an energy voice-activity decision: `level` above both `threshold_dbfs` and the noise
//! floor plus `margin_db`. The noise floor follows the quietest blocks: it drops at once to a
//! lower level and rises by 1 dB per second otherwise; it starts at the first block's level (so
//! a member who speaks from the very first block is heard from their first pause on).
//!
//! **Hangover**: a silence shorter than `hangover_ms` inside one member's speech (between
//! syllables and words) counts as speech. It is applied by the aggregator, which sees both
//! sides of the silence, rather than by the step: a causal hangover would lengthen every turn
//! by the hangover and so shorten every pause and inflate every overlap.
//!
//! **Aggregator** ([`SpeechSync`]), per pair (`members = [a, b]`), one result per `step_ms`
//! over the last `window_ms`, on the grid points of the window where both have a value (the
//! valid time; missing points count nowhere):
//!
//! * `valid_s`: the valid time in seconds;
//! * `speaking_a`, `speaking_b`: the share of the valid time each speaks (hangover included);
//! * `overlap_s`, `overlap_share`: time (share) both speak;
//! * `silence_share`: share neither speaks (mutual silence);
//! * `turns`: speaker changes: one speaks alone, then (after silence, overlap or both) the other
//!   speaks alone; counted in the window where the new speaker starts to speak alone. A gap in
//!   the data ends the context (no turn is counted across it);
//! * `mean_pause_ms`: over the turns with a silence between them, the mean time from the end of
//!   one's speech to the start of the other's (`null` if none);
//! * `overlapped_turns`: turns where the next speaker started before the previous one stopped;
//! * `r`, `lag_ms`, `r0`: the loudness envelopes (the level averaged over 100 ms bins) correlated
//!   at lags `-max_lag_ms..=max_lag_ms` in 100 ms steps; the peak nearest lag 0 that is the
//!   largest within ±1 s (as `MOTION_SYNC`), its lag (`> 0`: b follows a) and r at lag 0
//!   (`null` where undefined).
//!
//! A window whose valid time is under half its length gives no result.

use serde_json::{json, Value};

use crate::group::{aggregator, audio_step, Aggregator, AudioStep, GroupFilter, Sample, Scope, Window, Windowing};
use crate::sync::{check_max_lag, cross_correlation, pick_peak, PEAK_SPAN_MS};
use crate::{AudioFrame, Channel, FilterInfo, Listing, Param, ParamError, Params};

pub const INFO: FilterInfo = FilterInfo {
    name: "SPEECH_SYNC",
    listing: Listing::Session,
    channel: Channel::Audio,
    group: Some(GroupFilter {
        video_step: None,
        audio_step: Some(audio_step::<VoiceActivity>),
        aggregator: aggregator::<SpeechSync>,
    }),
    description: "Turn-taking per pair: speaking shares, overlaps, pauses, turns, loudness synchrony.",
    params: &[
        Param::Number { name: "window_ms", min: 5000.0, max: 300000.0, step: 1000.0, default: 30000.0 },
        Param::Number { name: "step_ms", min: 500.0, max: 10000.0, step: 100.0, default: 1000.0 },
        Param::Number { name: "max_lag_ms", min: 100.0, max: 5000.0, step: 100.0, default: 2000.0 },
        Param::Number { name: "threshold_dbfs", min: -90.0, max: -10.0, step: 1.0, default: -50.0 },
        Param::Number { name: "margin_db", min: 3.0, max: 40.0, step: 1.0, default: 10.0 },
        Param::Number { name: "hangover_ms", min: 0.0, max: 1000.0, step: 20.0, default: 200.0 },
    ],
    video: None,
    audio: None,
};

/// Grid: one point per 20 ms block.
const RATE_HZ: f64 = 50.0;
/// Grid points per loudness-envelope bin (100 ms).
const BIN: usize = 5;
const BIN_MS: f64 = 100.0;
/// The level of digital silence.
const FLOOR_DBFS: f32 = -100.0;
/// Noise-floor rise per second while the level is above it.
const FLOOR_RISE_DB_PER_S: f32 = 1.0;

/// The individual step: energy voice activity and level of one member's audio.
pub struct VoiceActivity {
    threshold: f32,
    margin: f32,
    /// The noise floor (dBFS); `None` before the first block.
    floor: Option<f32>,
}

impl AudioStep for VoiceActivity {
    fn new(p: &Params) -> Result<Self, ParamError> {
        let (threshold, margin) = (p.number("threshold_dbfs") as f32, p.number("margin_db") as f32);
        Ok(VoiceActivity { threshold, margin, floor: None })
    }

    fn step(&mut self, frame: &AudioFrame) -> Option<Sample> {
        let s = frame.samples();
        if s.is_empty() || frame.sample_rate() == 0 {
            return None;
        }
        let power = s.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / s.len() as f64;
        if !power.is_finite() {
            return None; // a broken block says nothing about the voice
        }
        let level = ((10.0 * power.log10()) as f32).max(FLOOR_DBFS);
        let floor = match self.floor {
            Some(f) if f <= level => f + FLOOR_RISE_DB_PER_S * frame.frames() as f32 / frame.sample_rate() as f32,
            _ => level,
        };
        self.floor = Some(floor);
        let active = level > self.threshold && level > floor + self.margin;
        Some(Sample::new(&[active as u8 as f32, level]))
    }
}

/// A grid point of one member: missing, silent or speaking.
const MISSING: u8 = 2;

/// The aggregator: turn-taking measures and loudness synchrony, per pair.
pub struct SpeechSync {
    windowing: Windowing,
    /// Hangover in grid points.
    hangover: usize,
    /// Largest lag in envelope bins.
    max_lag_bins: usize,
    /// Per member: activity per grid point (0, 1, [`MISSING`]) and loudness envelope (reused).
    act: [Vec<u8>; 2],
    env: [Vec<f32>; 2],
    rs: Vec<f64>,
}

impl Aggregator for SpeechSync {
    fn new(p: &Params) -> Result<Self, ParamError> {
        let (window_ms, max_lag_ms, hangover_ms) =
            (p.number("window_ms"), p.number("max_lag_ms"), p.number("hangover_ms"));
        check_max_lag(window_ms, max_lag_ms)?;
        let dt = 1000.0 / RATE_HZ;
        // The lead holds the lags and the context of the first turn, in whole envelope bins.
        let lead_ms = (max_lag_ms.max(hangover_ms).max(1000.0) / BIN_MS).ceil() * BIN_MS;
        Ok(SpeechSync {
            windowing: Windowing {
                rate_hz: RATE_HZ,
                window_ms,
                step_ms: p.number("step_ms"),
                lead_ms,
                // A lost block or two is bridged; longer gaps are missing.
                max_gap_ms: 3.0 * dt,
                scope: Scope::Pairs,
            },
            hangover: (hangover_ms / dt).round() as usize,
            max_lag_bins: (max_lag_ms / BIN_MS).round() as usize,
            act: Default::default(),
            env: Default::default(),
            rs: Vec::new(),
        })
    }

    fn windowing(&self) -> Windowing {
        self.windowing
    }

    fn aggregate(&mut self, w: &Window<'_>) -> Option<Value> {
        let (n, lead, dt) = (w.points(), w.lead, w.dt_ms);
        for m in 0..2 {
            let (vad, level) = (w.series(m, 0), w.series(m, 1));
            if vad.len() != n || level.len() != n || lead % BIN != 0 {
                return None;
            }
            let act = &mut self.act[m];
            act.clear();
            act.extend(vad.iter().map(|v| if v.is_nan() { MISSING } else { (*v >= 0.5) as u8 }));
            bridge(act, self.hangover);
            let env = &mut self.env[m];
            env.clear();
            env.extend(level.chunks(BIN).map(|b| {
                let (sum, k) = b.iter().filter(|v| !v.is_nan()).fold((0.0, 0), |(s, k), v| (s + v, k + 1));
                if k * 2 > b.len() {
                    sum / k as f32
                } else {
                    f32::NAN
                }
            }));
        }
        let [a, b] = &self.act;
        let (mut valid, mut sa, mut sb, mut both, mut none) = (0usize, 0, 0, 0, 0);
        for t in lead..n {
            match (a[t], b[t]) {
                (MISSING, _) | (_, MISSING) => continue,
                (1, 1) => both += 1,
                (1, 0) => sa += 1,
                (0, 1) => sb += 1,
                _ => none += 1,
            }
            valid += 1;
        }
        if valid * 2 < n - lead || valid == 0 {
            return None;
        }
        let turns = turns(a, b, lead);
        let gaps: Vec<usize> = turns.iter().filter_map(|&p| (p >= 0).then_some(p as usize)).collect();
        let mean_pause = (!gaps.is_empty()).then(|| gaps.iter().sum::<usize>() as f64 * dt / gaps.len() as f64);

        let bins = self.env[0].len();
        let lead_bins = lead / BIN;
        let min_pairs = (bins - lead_bins).div_ceil(2).max(3);
        cross_correlation(
            &self.env[0],
            &self.env[1],
            lead_bins,
            self.max_lag_bins.min(lead_bins),
            min_pairs,
            &mut self.rs,
        );
        let span = (PEAK_SPAN_MS / BIN_MS) as usize;
        let peak = pick_peak(&self.rs, span);
        let r0 = self.rs.get(self.rs.len() / 2).copied().filter(|r| !r.is_nan());
        let share = |k: usize| k as f64 / valid as f64;
        let secs = |k: usize| k as f64 * dt / 1000.0;
        Some(json!({
            "valid_s": secs(valid),
            "speaking_a": share(sa + both),
            "speaking_b": share(sb + both),
            "overlap_s": secs(both),
            "overlap_share": share(both),
            "silence_share": share(none),
            "turns": turns.len(),
            "mean_pause_ms": mean_pause,
            "overlapped_turns": turns.len() - gaps.len(),
            "r": peak.map(|p| p.r),
            "lag_ms": peak.map(|p| p.lag as f64 * BIN_MS),
            "r0": r0,
        }))
    }
}

/// Fills silent runs shorter than `hangover` points that lie between two speaking points.
fn bridge(act: &mut [u8], hangover: usize) {
    let mut t = 0;
    while t < act.len() {
        if act[t] != 0 {
            t += 1;
            continue;
        }
        let end = act[t..].iter().position(|&v| v != 0).map_or(act.len(), |k| t + k);
        if t > 0 && act[t - 1] == 1 && end < act.len() && act[end] == 1 && end - t < hangover {
            act[t..end].fill(1);
        }
        t = end;
    }
}

/// The turns whose new speaker starts to speak alone at or after `from`: for each, the grid
/// points from the end of the previous speaker's speech to the start of the next one's
/// (negative: they overlapped).
fn turns(a: &[u8], b: &[u8], from: usize) -> Vec<isize> {
    let mut out = Vec::new();
    // The member who last spoke alone, and the point after their latest speech.
    let mut holder: Option<(usize, usize)> = None;
    for t in 0..a.len() {
        let now = [a[t], b[t]];
        if now.contains(&MISSING) {
            holder = None;
            continue;
        }
        if let Some((p, end)) = holder.as_mut() {
            if now[*p] == 1 {
                *end = t + 1;
            }
        }
        let solo = match now {
            [1, 0] => 0,
            [0, 1] => 1,
            _ => continue,
        };
        match holder {
            Some((p, end)) if p != solo => {
                let act = if solo == 0 { a } else { b };
                // The start of the new speaker's speech that led here.
                let start = (0..t).rev().find(|&j| act[j] != 1).map_or(0, |j| j + 1);
                if t >= from {
                    out.push(start as isize - end as isize);
                }
                holder = Some((solo, t + 1));
            }
            Some(_) => {}
            None => holder = Some((solo, t + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{capture_times, run_group, GroupRun, Rng};
    use crate::SAMPLE_RATE;

    /// One 20 ms mono block starting at `t0` seconds: a 200 Hz tone (amplitude 0.3) while
    /// `speaking(t)`, over faint noise.
    fn block(t0: f64, speaking: impl Fn(f64) -> bool, rng: &mut Rng) -> AudioFrame {
        let n = SAMPLE_RATE as usize / 50;
        let s = (0..n)
            .map(|i| {
                let t = t0 + i as f64 / SAMPLE_RATE as f64;
                let tone = if speaking(t) { 0.3 * (2.0 * std::f64::consts::PI * 200.0 * t).sin() } else { 0.0 };
                (tone + rng.range(-0.002, 0.002)) as f32
            })
            .collect();
        AudioFrame::from_samples(1, SAMPLE_RATE, s)
    }

    /// Runs SPEECH_SYNC (defaults unless `params` says) over members speaking in the given
    /// intervals (seconds), for `secs` seconds of blocks, skipping blocks where `gap(m, t)`.
    fn run(talk: &[&[(f64, f64)]], secs: f64, params: Params, gap: impl Fn(usize, f64) -> bool) -> GroupRun {
        let times = capture_times((secs * 50.0) as usize, 50.0, 0.0);
        let names = ["a", "b", "c", "d"];
        let mut rngs: Vec<Rng> = (0..talk.len()).map(|m| Rng::new(m as u64 + 1)).collect();
        run_group(&INFO, &params, &names[..talk.len()], &times, |m, k| {
            let t0 = times[k] / 1000.0;
            let spans = talk[m];
            (!gap(m, t0)).then(|| block(t0, |t| spans.iter().any(|&(s, e)| t >= s && t < e), &mut rngs[m]))
        })
        .unwrap()
    }

    #[test]
    fn voice_activity_follows_level_and_noise_floor() {
        let mut v = VoiceActivity::new(&INFO.default_params()).unwrap();
        let mut rng = Rng::new(9);
        let quiet = v.step(&block(0.0, |_| false, &mut rng)).unwrap();
        assert_eq!(quiet.get(0), 0.0);
        assert!((quiet.get(1) - (-59.6)).abs() < 1.0, "noise ±0.002 uniform: {}", quiet.get(1));
        let loud = v.step(&block(0.02, |_| true, &mut rng)).unwrap();
        assert_eq!(loud.get(0), 1.0);
        assert!((loud.get(1) - (-13.5)).abs() < 0.2, "0.3 sine = -13.5 dBFS: {}", loud.get(1));
        // A steady hum 5 dB above the floor is not speech, however long it lasts.
        let mut hum = VoiceActivity::new(&INFO.default_params().with("threshold_dbfs", -80)).unwrap();
        let noise = |amp: f64, rng: &mut Rng| {
            AudioFrame::from_samples(1, SAMPLE_RATE, (0..960).map(|_| rng.range(-amp, amp) as f32).collect())
        };
        for _ in 0..50 {
            hum.step(&noise(0.001, &mut rng));
        }
        for _ in 0..500 {
            assert_eq!(hum.step(&noise(0.0018, &mut rng)).unwrap().get(0), 0.0);
        }
        assert_eq!(hum.step(&AudioFrame::from_samples(2, SAMPLE_RATE, Vec::new())), None);
        assert_eq!(hum.step(&AudioFrame::from_samples(1, SAMPLE_RATE, vec![f32::NAN; 960])), None, "not loud");
        let digital_silence = v.step(&AudioFrame::from_samples(1, SAMPLE_RATE, vec![0.0; 960])).unwrap();
        assert_eq!(digital_silence.as_slice(), &[0.0, -100.0]);
    }

    #[test]
    fn bridging_and_turns_by_hand() {
        let mut act = vec![1, 0, 0, 1, 0, 0, 0, 1, 0, 2, 0, 1];
        bridge(&mut act, 3);
        assert_eq!(act, [1, 1, 1, 1, 0, 0, 0, 1, 0, 2, 0, 1], "only gaps < 3 between speech");
        // a: 1 1 0 0 0 1 1 1 1 0; b: 0 0 0 1 1 1 0 0 0 0 → a→b (pause 1 point), b→a via overlap
        // at 5 (b ends at 6, a starts at 5: -1).
        let a = [1, 1, 0, 0, 0, 1, 1, 1, 1, 0];
        let b = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0];
        assert_eq!(turns(&a, &b, 0), vec![1, -1]);
        assert_eq!(turns(&a, &b, 4), vec![-1], "only turns from point 4 on");
        let mut b2 = b;
        b2[2] = MISSING;
        assert_eq!(turns(&a, &b2, 0), vec![-1], "no turn across missing data");
    }

    /// Known turns: the measures equal the ground truth within one block (20 ms) per event.
    #[test]
    fn turn_taking_matches_the_ground_truth() {
        // a: 2.0-3.0 and 3.1-4.0 (a 100 ms gap, bridged), 6.0-8.0, 11.0-12.0;
        // b: 4.3-6.5 (pause 300 ms after a; a takes over at 6.0 with 500 ms of overlap),
        //    8.4-10.0 (pause 400 ms); then a after 1000 ms.
        let a: &[(f64, f64)] = &[(2.0, 3.0), (3.1, 4.0), (6.0, 8.0), (11.0, 12.0)];
        let b: &[(f64, f64)] = &[(4.3, 6.5), (8.4, 10.0)];
        let out = run(&[a, b], 33.0, INFO.default_params(), |_, _| false);
        // The first full window ends at 30 s (the first block at 0 + 30 s): it spans (0, 30].
        let r = out.pair("a", "b")[0];
        assert_eq!(r.window_end_ms, 30_000.0);
        let v = &r.value;
        let near = |k: &str, want: f64, tol: f64| {
            let got = v[k].as_f64().unwrap();
            assert!((got - want).abs() <= tol, "{k}: {got} vs {want} ({v})");
        };
        assert_eq!(v["turns"], 4, "{v}");
        assert_eq!(v["overlapped_turns"], 1, "{v}");
        // Pauses 300, 400, 1000 → 566.7 ms; each within one block.
        near("mean_pause_ms", (300.0 + 400.0 + 1000.0) / 3.0, 20.0);
        near("valid_s", 30.0, 0.02);
        // a speaks 2 + 2 + 1 = 5 s (the bridged gap included), b 2.2 + 1.6 = 3.8 s; overlap 0.5 s.
        near("speaking_a", 5.0 / 30.0, 0.04 / 30.0);
        near("speaking_b", 3.8 / 30.0, 0.04 / 30.0);
        near("overlap_s", 0.5, 0.02);
        near("overlap_share", 0.5 / 30.0, 0.02 / 30.0);
        near("silence_share", (30.0 - 5.0 - 3.8 + 0.5) / 30.0, 0.06 / 30.0);
    }

    /// Identical members: loudness envelopes correlate perfectly at lag 0; a member talking
    /// 400 ms after another shows up at +400 ms.
    #[test]
    fn loudness_envelopes_correlate_at_their_lag() {
        let mut rng = Rng::new(3);
        let mut spans = Vec::new();
        let mut t = 1.0;
        while t < 40.0 {
            let len = rng.range(0.3, 2.0);
            spans.push((t, t + len));
            t += len + rng.range(0.3, 1.5);
        }
        let later: Vec<(f64, f64)> = spans.iter().map(|&(s, e)| (s + 0.4, e + 0.4)).collect();
        let out = run(&[&spans, &spans, &later], 40.0, INFO.default_params(), |_, _| false);
        let same = out.pair("a", "b");
        assert!(!same.is_empty());
        for r in &same {
            assert!(r.value["r"].as_f64().unwrap() > 0.99, "{}", r.value);
            assert_eq!(r.value["lag_ms"], 0.0);
        }
        for r in out.pair("a", "c") {
            assert_eq!(r.value["lag_ms"], 400.0, "{}", r.value);
        }
    }

    /// A member without blocks for 15 s: windows with too little data give nothing, and no
    /// turn, pause or overlap is invented across the gap.
    #[test]
    fn missing_data_gives_no_bogus_results() {
        // Alternating turns every 2 s (a from 1 s), b silent from 10 to 25 s (no data).
        let a: Vec<(f64, f64)> = (0..15).map(|k| (1.0 + 4.0 * k as f64, 2.6 + 4.0 * k as f64)).collect();
        let b: Vec<(f64, f64)> = (0..15).map(|k| (3.0 + 4.0 * k as f64, 4.6 + 4.0 * k as f64)).collect();
        let p = INFO.default_params().with("window_ms", 10000);
        let out = run(&[&a, &b], 50.0, p, |m, t| m == 1 && (10.0..25.0).contains(&t));
        let res = out.pair("a", "b");
        for r in &res {
            let (from, to) = (r.window_end_ms / 1000.0 - 10.0, r.window_end_ms / 1000.0);
            let missing = (to.min(25.0) - from.max(10.0)).max(0.0);
            assert!(missing <= 5.1, "window ending {to} s lacks {missing} s of b: {}", r.value);
            let v = &r.value;
            assert!((v["valid_s"].as_f64().unwrap() - (10.0 - missing)).abs() < 0.1, "{v}");
            // Every real pause is 400 ms; there are no others.
            if let Some(p) = v["mean_pause_ms"].as_f64() {
                assert!((p - 400.0).abs() <= 20.0, "{v}");
            }
            assert_eq!(v["overlap_s"], 0.0, "{v}");
        }
        assert!(res.iter().any(|r| r.window_end_ms <= 10_000.0) && res.iter().any(|r| r.window_end_ms >= 30_000.0));
        assert!(!res.iter().any(|r| (16_000.0..=24_000.0).contains(&r.window_end_ms)));
    }
}
