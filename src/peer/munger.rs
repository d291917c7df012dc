//! Sequence numbers and timestamps as the sinks see them: one continuous stream per group of
//! sinks, whatever happens upstream.
//!
//! Upstream changes three ways: the publisher rejoins (a new source with its own sequence
//! space and clock), the main group switches between the publisher's packets and our encoder's
//! (filters added or removed), and a viewer-side branch starts or stops with its sinks. The
//! [`Munger`] rewrites each packet so that none of this shows: each group's sequence numbers
//! go on by one, and timestamps go on a nominal frame after the last one sent. Pure state, no
//! IO: the forwarder asks it for every packet it sends.

use std::collections::HashMap;

use crate::media::pipeline::Group;
use crate::media::Kind;

/// The sequence space of one group of sinks.
#[derive(Debug, Default)]
struct Sequence {
    /// The last packet sent to the group (`None`: nothing yet).
    last_seq: Option<u16>,
    last_ts: u32,
    /// Forwarded packets: output = input + offset.
    offset: u16,
    /// Re-base `offset` at the next forwarded packet (after a switch of path or source).
    rebase: bool,
}

/// The sequence and timestamp rewriting of one track's forwarder.
#[derive(Debug)]
pub(super) struct Munger {
    /// A nominal frame in RTP clock units (the gap left when the clock is re-based).
    step: u32,
    seqs: HashMap<Group, Sequence>,
    /// Timestamps: output = input + offset, re-based when the source changes.
    ts_offset: u32,
    rebase_ts: bool,
}

impl Munger {
    pub(super) fn new(kind: Kind) -> Self {
        // A video frame at 30 fps on the 90 kHz clock; 20 ms of Opus at 48 kHz.
        let step = if kind == Kind::Video { 3000 } else { 960 };
        Self { step, seqs: HashMap::new(), ts_offset: 0, rebase_ts: false }
    }

    /// A new source (a rejoin): from its first packet on, timestamps and the forwarded
    /// sequence continue where the sinks are.
    pub(super) fn new_source(&mut self) {
        self.rebase_ts = true;
        for s in self.seqs.values_mut() {
            s.rebase = true;
        }
    }

    /// The main group goes back from our encoder's packets to the publisher's: the forwarded
    /// sequence continues the encoded one.
    pub(super) fn main_forwarded_again(&mut self) {
        self.seqs.entry(None).or_default().rebase = true;
    }

    /// Every source packet, before anything else (whichever path it takes): after a new
    /// source, re-bases the clock so that `ts` comes a nominal frame after the last packet sent.
    pub(super) fn source_packet(&mut self, ts: u32) {
        if !self.rebase_ts {
            return;
        }
        self.rebase_ts = false;
        if let Some(last) = self.seqs.values().filter(|s| s.last_seq.is_some()).map(|s| s.last_ts).next() {
            self.ts_offset = last.wrapping_add(self.step).wrapping_sub(ts);
        }
    }

    /// A source packet forwarded to the main group: its sequence number and timestamp as sent.
    pub(super) fn forward(&mut self, seq: u16, ts: u32) -> (u16, u32) {
        let s = self.seqs.entry(None).or_default();
        if s.rebase {
            s.rebase = false;
            if let Some(last) = s.last_seq {
                s.offset = last.wrapping_add(1).wrapping_sub(seq);
            }
        }
        let out = (seq.wrapping_add(s.offset), ts.wrapping_add(self.ts_offset));
        s.last_seq = Some(out.0);
        s.last_ts = out.1;
        out
    }

    /// A packet of our encoder for `group`, with the source frame's timestamp `ts`: its
    /// sequence number (the group's next) and timestamp as sent.
    pub(super) fn encoded(&mut self, group: &Group, ts: u32) -> (u16, u32) {
        let s = self.seqs.entry(group.clone()).or_default();
        let out = (s.last_seq.map_or(0, |l| l.wrapping_add(1)), ts.wrapping_add(self.ts_offset));
        s.last_seq = Some(out.0);
        s.last_ts = out.1;
        out
    }

    /// A timestamp as sent, in the source's clock (the recorder's time base).
    pub(super) fn source_ts(&self, ts: u32) -> u32 {
        ts.wrapping_sub(self.ts_offset)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const V: u32 = 3000;

    /// Forwards `n` source packets of one frame each from (`seq`, `ts`); the packets as sent.
    fn forward(m: &mut Munger, seq: u16, ts: u32, n: u16) -> Vec<(u16, u32)> {
        (0..n)
            .map(|i| {
                let (seq, ts) = (seq.wrapping_add(i), ts.wrapping_add(u32::from(i) * V));
                m.source_packet(ts);
                m.forward(seq, ts)
            })
            .collect()
    }

    fn branch(key: &str) -> Group {
        Some(Arc::from(key))
    }

    #[test]
    fn a_first_source_is_forwarded_unchanged() {
        let mut m = Munger::new(Kind::Video);
        assert_eq!(forward(&mut m, 100, 9000, 3), vec![(100, 9000), (101, 12000), (102, 15000)]);
        assert_eq!(m.source_ts(12000), 12000);
    }

    #[test]
    fn a_rejoin_continues_the_sequence_and_the_clock() {
        let mut m = Munger::new(Kind::Video);
        forward(&mut m, 100, 9000, 3); // last sent: 102 @ 15000
        m.new_source();
        // The new source has its own sequence space and clock.
        assert_eq!(forward(&mut m, 40_000, 777_777, 2), vec![(103, 18000), (104, 21000)]);
        // The recorder still gets the new source's own clock.
        assert_eq!(m.source_ts(18000), 777_777);
        // A second rejoin continues again.
        m.new_source();
        assert_eq!(forward(&mut m, 7, 5, 1), vec![(105, 24000)]);
    }

    #[test]
    fn audio_leaves_twenty_milliseconds_at_a_rejoin() {
        let mut m = Munger::new(Kind::Audio);
        m.source_packet(48_000);
        assert_eq!(m.forward(10, 48_000), (10, 48_000));
        m.new_source();
        m.source_packet(1);
        assert_eq!(m.forward(900, 1), (11, 48_960));
    }

    #[test]
    fn a_switch_to_the_pipeline_and_back_keeps_one_sequence() {
        let mut m = Munger::new(Kind::Video);
        forward(&mut m, 500, 0, 2); // 500, 501
                                    // Filters on: our encoder's packets continue the main group's sequence.
        m.source_packet(6000);
        assert_eq!(m.encoded(&None, 6000), (502, 6000));
        assert_eq!(m.encoded(&None, 6000), (503, 6000), "a frame of two packets");
        m.source_packet(9000);
        assert_eq!(m.encoded(&None, 9000), (504, 9000));
        // Filters off: the publisher's packets (which went on meanwhile) continue it too.
        m.main_forwarded_again();
        assert_eq!(forward(&mut m, 510, 12000, 2), vec![(505, 12000), (506, 15000)]);
    }

    #[test]
    fn a_rejoin_while_processed_continues_the_clock_of_the_encoded_stream() {
        let mut m = Munger::new(Kind::Video);
        m.source_packet(90_000);
        assert_eq!(m.encoded(&None, 90_000), (0, 90_000));
        m.new_source();
        m.source_packet(5);
        assert_eq!(m.encoded(&None, 5), (1, 93_000));
    }

    #[test]
    fn a_branch_gaining_its_first_sink_starts_its_own_sequence() {
        let mut m = Munger::new(Kind::Video);
        forward(&mut m, 1000, 0, 3); // main: 1000..=1002
        m.source_packet(9000);
        assert_eq!(m.encoded(&branch("b"), 9000), (0, 9000));
        assert_eq!(m.encoded(&branch("b"), 9000), (1, 9000));
        // The main group is not disturbed by the branch.
        assert_eq!(m.forward(1003, 9000), (1003, 9000));
        // Another branch has a sequence space of its own.
        assert_eq!(m.encoded(&branch("c"), 9000), (0, 9000));
        // A branch that lost its sinks and gains one again continues where it was.
        assert_eq!(m.encoded(&branch("b"), 12000), (2, 12000));
    }

    #[test]
    fn sequence_numbers_and_timestamps_wrap_around() {
        let mut m = Munger::new(Kind::Video);
        let near_end = u32::MAX - 1000;
        assert_eq!(forward(&mut m, 65_534, near_end, 3), vec![(65_534, near_end), (65_535, 1999), (0, 4999)]);
        // A rejoin across the wrap: the new source starts high, the stream goes on from 0.
        m.new_source();
        assert_eq!(forward(&mut m, 65_535, 10, 2), vec![(1, 7999), (2, 10_999)]);
        // Our encoder continues past 65535 too.
        let mut m = Munger::new(Kind::Video);
        forward(&mut m, 65_535, 0, 1);
        assert_eq!(m.encoded(&None, 3000), (0, 3000));
        // And a switch back to forwarding re-bases across the wrap.
        m.main_forwarded_again();
        assert_eq!(m.forward(12, 6000), (1, 6000));
    }
}
