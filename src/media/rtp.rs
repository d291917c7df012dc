//! RTP payload formats: frames in, packets out, and back (VP8: RFC 7741, H.264: RFC 6184,
//! Opus: RFC 7587). Pure code over bytes; the pipeline uses it between the forwarder and the
//! codecs.
//!
//! The [`FrameAssembler`] emits a frame as soon as its marker packet and every packet back to
//! the previous frame's end have arrived — never waiting for the *next* frame's first packet
//! (the webrtc crate's `SampleBuilder` does, which costs one frame interval per hop: a
//! pitfall of that crate). A gap that a later complete frame overtakes is reported as loss, so
//! the pipeline can ask for a keyframe and freeze instead of decoding garbage.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Payload formats the pipeline handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Vp8,
    H264,
    Opus,
}

/// One received RTP packet, as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    /// When the server received it (for the server-added latency).
    pub arrival: Instant,
}

/// One packet to send: the forwarder adds SSRC, payload type and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpOut {
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// A reassembled, depacketized frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub timestamp: u32,
    /// The codec's bitstream (VP8 frame, H.264 Annex B access unit, Opus packet).
    pub data: Bytes,
    pub keyframe: bool,
    /// Frames were lost before this one (the decoder's reference chain is broken).
    pub after_loss: bool,
    /// Arrival of the frame's last packet.
    pub arrival: Instant,
}

/// Reassembles frames from packets that may arrive reordered or with gaps.
pub struct FrameAssembler {
    format: Format,
    /// Packets not yet emitted, by extended sequence number.
    pending: BTreeMap<u64, RtpIn>,
    /// Extended sequence number of the last packet of the last emitted (or skipped) frame.
    last_done: Option<u64>,
    highest: Option<u64>,
    loss: bool,
    /// Frames abandoned because packets were missing.
    pub lost_frames: u64,
}

/// How many packets we hold before giving up on a gap.
const MAX_PENDING: usize = 512;

impl FrameAssembler {
    pub fn new(format: Format) -> Self {
        Self { format, pending: BTreeMap::new(), last_done: None, highest: None, loss: false, lost_frames: 0 }
    }

    fn extend(&mut self, seq: u16) -> u64 {
        match self.highest {
            None => (1u64 << 32) + seq as u64,
            Some(h) => {
                let base = h & !0xFFFF;
                let candidates =
                    [base.wrapping_sub(0x1_0000) + seq as u64, base + seq as u64, base + 0x1_0000 + seq as u64];
                *candidates.iter().min_by_key(|c| c.abs_diff(h)).expect("three candidates")
            }
        }
    }

    /// Adds a packet; returns the frames it completes, oldest first.
    pub fn push(&mut self, p: RtpIn) -> Vec<Frame> {
        if self.format == Format::Opus {
            // One packet is one frame; order and gaps are the decoder's concern (PLC).
            let ext = self.extend(p.seq);
            let after_loss = self.highest.is_some_and(|h| ext > h + 1);
            self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
            if p.payload.is_empty() {
                return vec![]; // padding only (a bandwidth probe): no frame
            }
            return vec![Frame {
                timestamp: p.timestamp,
                data: p.payload,
                keyframe: true,
                after_loss,
                arrival: p.arrival,
            }];
        }
        let ext = self.extend(p.seq);
        if self.last_done.is_some_and(|d| ext <= d) {
            return vec![]; // late or duplicate
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.pending.insert(ext, p);
        let mut out = vec![];
        loop {
            // Start-up: the first packet may be mid-frame. If it says it starts a frame (VP8's
            // S bit, an H.264 NAL start), begin there: a stream that opens with a keyframe is
            // decodable at once. Otherwise skip to the first marker, to a frame boundary.
            let Some(done) = self.last_done else {
                if let Some((k, p)) = self.pending.iter().next() {
                    if self.starts_frame(&p.payload) {
                        self.last_done = Some(k - 1);
                        continue;
                    }
                }
                match self.pending.iter().find(|(_, p)| p.marker).map(|(k, _)| *k) {
                    Some(m) => {
                        self.pending.retain(|k, _| *k > m);
                        self.last_done = Some(m);
                        continue;
                    }
                    None => break,
                }
            };
            // The next frame: contiguous packets from done+1 up to a marker, one timestamp.
            let mut seq = done + 1;
            let mut complete = None;
            let mut ts = None;
            while let Some(p) = self.pending.get(&seq) {
                if ts.is_some_and(|t| t != p.timestamp) {
                    break; // the previous frame's marker was lost; resolved by the gap logic
                }
                ts = Some(p.timestamp);
                if p.marker {
                    complete = Some(seq);
                    break;
                }
                seq += 1;
            }
            if let Some(end) = complete {
                let pkts: Vec<RtpIn> = (done + 1..=end).filter_map(|k| self.pending.remove(&k)).collect();
                self.last_done = Some(end);
                if let Some(f) = self.depacketize(&pkts) {
                    out.push(f);
                }
                continue;
            }
            // Incomplete. If a later frame is already complete (its marker arrived and the
            // packets after the gap lead to it), the gap is loss: skip to after the gap.
            if self.overtaken(done) || self.pending.len() > MAX_PENDING {
                let next_start = self.next_frame_start(done);
                match next_start {
                    Some(start) => {
                        self.pending.retain(|k, _| *k >= start);
                        self.last_done = Some(start - 1);
                        self.loss = true;
                        self.lost_frames += 1;
                        continue;
                    }
                    None => break,
                }
            }
            break;
        }
        out
    }

    /// True when, after `done`, some later frame has its marker and is complete.
    fn overtaken(&self, done: u64) -> bool {
        let Some(start) = self.next_frame_start(done) else { return false };
        let mut seq = start;
        let ts = match self.pending.get(&start) {
            Some(p) => p.timestamp,
            None => return false,
        };
        while let Some(p) = self.pending.get(&seq) {
            if p.timestamp != ts {
                return false;
            }
            if p.marker {
                return true;
            }
            seq += 1;
        }
        false
    }

    /// The first pending packet after `done` that starts a frame: right after a pending
    /// marker packet or a packet of another timestamp, or, after a gap, a packet whose payload
    /// says it begins a frame (VP8's S bit, an H.264 NAL start) with a new timestamp.
    fn next_frame_start(&self, done: u64) -> Option<u64> {
        let mut prev: Option<(&u64, &RtpIn)> = None;
        for (k, p) in self.pending.range(done + 1..) {
            if let Some((pk, pp)) = prev {
                let starts = if *k == pk + 1 {
                    pp.marker || pp.timestamp != p.timestamp
                } else {
                    pp.timestamp != p.timestamp && self.starts_frame(&p.payload)
                };
                if starts {
                    return Some(*k);
                }
            }
            prev = Some((k, p));
        }
        None
    }

    fn starts_frame(&self, payload: &[u8]) -> bool {
        match self.format {
            Format::Vp8 => vp8_descriptor(payload).is_some_and(|(_, start)| start),
            Format::H264 => match payload.first().map(|b| b & 0x1F) {
                Some(1..=24) => true,
                Some(28) => payload.get(1).is_some_and(|h| h & 0x80 != 0),
                _ => false,
            },
            Format::Opus => true,
        }
    }

    fn depacketize(&mut self, pkts: &[RtpIn]) -> Option<Frame> {
        let first = pkts.first()?;
        let mut data = BytesMut::new();
        let keyframe = match self.format {
            Format::Vp8 => {
                let mut key = false;
                for (i, p) in pkts.iter().enumerate() {
                    let (hdr, start) = vp8_descriptor(&p.payload)?;
                    if i == 0 {
                        if !start {
                            return None;
                        }
                        key = p.payload.get(hdr).is_some_and(|b| b & 1 == 0);
                    }
                    data.extend_from_slice(&p.payload[hdr..]);
                }
                key
            }
            Format::H264 => {
                let mut key = false;
                for p in pkts {
                    key |= h264_depacketize(&p.payload, &mut data)?;
                }
                key
            }
            Format::Opus => {
                data.extend_from_slice(&first.payload);
                true
            }
        };
        let after_loss = std::mem::take(&mut self.loss);
        let arrival = pkts.iter().map(|p| p.arrival).max().unwrap_or(first.arrival);
        Some(Frame { timestamp: first.timestamp, data: data.freeze(), keyframe, after_loss, arrival })
    }
}

/// VP8 payload descriptor length and its S bit (start of a partition with PID 0).
fn vp8_descriptor(p: &[u8]) -> Option<(usize, bool)> {
    let b0 = *p.first()?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let ext = *p.get(1)?;
        i = 2;
        if ext & 0x80 != 0 {
            i += if *p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    (i <= p.len()).then_some((i, start))
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Appends the NAL units of one H.264 RTP payload in Annex B form; true if one is an IDR.
fn h264_depacketize(p: &[u8], out: &mut BytesMut) -> Option<bool> {
    let nal_type = *p.first()? & 0x1F;
    match nal_type {
        1..=23 => {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(p);
            Some(nal_type == 5)
        }
        24 => {
            // STAP-A: [size16][nal]...
            let mut i = 1;
            let mut key = false;
            while i + 2 <= p.len() {
                let n = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                i += 2;
                let nal = p.get(i..i + n)?;
                key |= nal.first().is_some_and(|b| b & 0x1F == 5);
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(nal);
                i += n;
            }
            Some(key)
        }
        28 => {
            let (ind, hdr) = (*p.first()?, *p.get(1)?);
            if hdr & 0x80 != 0 {
                out.extend_from_slice(&START_CODE);
                out.put_u8((ind & 0xE0) | (hdr & 0x1F));
            }
            out.extend_from_slice(p.get(2..)?);
            Some(hdr & 0x1F == 5)
        }
        _ => Some(false), // reserved/unsupported (e.g. MTAP): skipped
    }
}

/// Splits frames into RTP payloads of at most `mtu` bytes.
pub struct Packetizer {
    format: Format,
    mtu: usize,
    picture_id: u16,
}

impl Packetizer {
    pub fn new(format: Format, mtu: usize) -> Self {
        Self { format, mtu: mtu.max(64), picture_id: 0 }
    }

    /// Packetizes one frame; the last packet of a video frame carries the marker.
    pub fn packetize(&mut self, data: &[u8], timestamp: u32, out: &mut Vec<RtpOut>) {
        match self.format {
            Format::Opus => out.push(RtpOut { timestamp, marker: false, payload: Bytes::copy_from_slice(data) }),
            Format::Vp8 => {
                // Descriptor with a 15-bit picture id (X=1, I=1, M=1), like libwebrtc.
                let pid = self.picture_id & 0x7FFF;
                self.picture_id = self.picture_id.wrapping_add(1);
                let chunk = self.mtu - 4;
                let n = data.len().div_ceil(chunk).max(1);
                for (i, part) in data.chunks(chunk).enumerate() {
                    let mut b = BytesMut::with_capacity(part.len() + 4);
                    b.put_u8(if i == 0 { 0x90 } else { 0x80 });
                    b.put_u8(0x80);
                    b.put_u16(0x8000 | pid);
                    b.extend_from_slice(part);
                    out.push(RtpOut { timestamp, marker: i + 1 == n, payload: b.freeze() });
                }
            }
            Format::H264 => {
                let start = out.len();
                for nal in annexb_nals(data) {
                    if nal.is_empty() {
                        continue;
                    }
                    if nal.len() <= self.mtu {
                        out.push(RtpOut { timestamp, marker: false, payload: Bytes::copy_from_slice(nal) });
                        continue;
                    }
                    let (hdr, body) = (nal[0], &nal[1..]);
                    let chunk = self.mtu - 2;
                    let n = body.len().div_ceil(chunk);
                    for (i, part) in body.chunks(chunk).enumerate() {
                        let mut b = BytesMut::with_capacity(part.len() + 2);
                        b.put_u8((hdr & 0xE0) | 28);
                        let s = if i == 0 { 0x80 } else { 0 };
                        let e = if i + 1 == n { 0x40 } else { 0 };
                        b.put_u8(s | e | (hdr & 0x1F));
                        b.extend_from_slice(part);
                        out.push(RtpOut { timestamp, marker: false, payload: b.freeze() });
                    }
                }
                if let Some(last) = out[start..].last_mut() {
                    last.marker = true;
                }
            }
        }
    }
}

/// The NAL units of an Annex B stream (start codes of 3 or 4 bytes).
fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = vec![];
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    if starts.is_empty() {
        return vec![data];
    }
    let mut nals = vec![];
    for (k, &(_, body)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map(|s| s.0).unwrap_or(data.len());
        // A 4-byte start code's leading zero belongs to it, not to the previous NAL.
        if k + 1 < starts.len() && end > body && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(&data[body..end]);
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(format: Format, frames: &[(u32, Vec<u8>)], mtu: usize) -> Vec<RtpIn> {
        let mut p = Packetizer::new(format, mtu);
        let mut out = vec![];
        for (ts, f) in frames {
            p.packetize(f, *ts, &mut out);
        }
        out.into_iter()
            .enumerate()
            .map(|(i, o)| RtpIn {
                seq: (65_530u32 + i as u32) as u16,
                timestamp: o.timestamp,
                marker: o.marker,
                payload: o.payload,
                arrival: Instant::now(),
            })
            .collect()
    }

    fn vp8_frame(key: bool, len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[0] = if key { 0x10 } else { 0x11 };
        f
    }

    /// An assembler that has just seen a one-packet frame (`payload`) end at `first - 1`, so
    /// that packet `first` starts a frame, as mid-stream; and what that packet gave.
    fn primed(format: Format, first: u16, payload: &'static [u8]) -> (FrameAssembler, Vec<Frame>) {
        let mut a = FrameAssembler::new(format);
        let frames = a.push(RtpIn {
            seq: first.wrapping_sub(1),
            timestamp: 7,
            marker: true,
            payload: Bytes::from_static(payload),
            arrival: Instant::now(),
        });
        (a, frames)
    }

    #[test]
    fn vp8_round_trip_across_sequence_wrap_and_reordering() {
        let frames: Vec<(u32, Vec<u8>)> =
            (0..6).map(|i| (i * 3000, vp8_frame(i % 3 == 0, 2500 + i as usize * 10, i as u8))).collect();
        let mut pkts = packets(Format::Vp8, &frames, 1200);
        // A start marker so the assembler knows where frames begin.
        let (mut a, first) = primed(Format::Vp8, pkts[0].seq, &[0x10, 0]);
        assert_eq!(first.len(), 1, "a first packet that starts a frame is a frame");
        pkts.swap(1, 2); // reordering inside a frame
        let mut got = vec![];
        for p in pkts {
            got.extend(a.push(p));
        }
        assert_eq!(got.len(), 6);
        for (g, (ts, f)) in got.iter().zip(&frames) {
            assert_eq!(g.timestamp, *ts);
            assert_eq!(&g.data[..], &f[..]);
            assert_eq!(g.keyframe, f[0] & 1 == 0);
            assert!(!g.after_loss);
        }
    }

    #[test]
    fn a_stream_that_starts_mid_frame_is_picked_up_at_the_next_frame() {
        let frames: Vec<(u32, Vec<u8>)> = (0..3).map(|i| (i * 3000, vp8_frame(i == 0, 2500, i as u8))).collect();
        let pkts = packets(Format::Vp8, &frames, 1200);
        let mut a = FrameAssembler::new(Format::Vp8);
        // Joined after the first packet of frame 0.
        let got: Vec<Frame> = pkts.into_iter().skip(1).flat_map(|p| a.push(p)).collect();
        let ts: Vec<u32> = got.iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, vec![3000, 6000]);
    }

    #[test]
    fn a_frame_is_emitted_on_its_marker_not_on_the_next_frame() {
        let frames = vec![(0, vp8_frame(true, 100, 1)), (3000, vp8_frame(false, 100, 2))];
        let pkts = packets(Format::Vp8, &frames, 1200);
        let (mut a, _) = primed(Format::Vp8, pkts[0].seq, &[0x10, 0]);
        assert_eq!(a.push(pkts[0].clone()).len(), 1, "single-packet frame out at once");
    }

    #[test]
    fn loss_is_skipped_and_reported() {
        let frames: Vec<(u32, Vec<u8>)> = (0..4).map(|i| (i * 3000, vp8_frame(i == 0, 2000, i as u8))).collect();
        let mut pkts = packets(Format::Vp8, &frames, 1200);
        let (mut a, _) = primed(Format::Vp8, pkts[0].seq, &[0x10, 0]);
        pkts.remove(3); // a packet of frame 1 (2 packets per frame)
        let mut got = vec![];
        for p in pkts {
            got.extend(a.push(p));
        }
        let ts: Vec<u32> = got.iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, vec![0, 6000, 9000]);
        assert!(got[1].after_loss && !got[2].after_loss);
        assert_eq!(a.lost_frames, 1);
    }

    #[test]
    fn h264_round_trip_with_fragmentation() {
        let mut au = vec![];
        for (t, len) in [(7u8, 12usize), (8, 4), (5, 5000)] {
            au.extend_from_slice(&[0, 0, 0, 1, 0x60 | t]);
            au.extend((0..len).map(|i| (i % 251) as u8 + 1));
        }
        let p_frame: Vec<u8> = [0, 0, 1, 0x41].into_iter().chain((0..3000).map(|i| (i % 13) as u8 + 1)).collect();
        let frames = vec![(0u32, au.clone()), (3000, p_frame.clone())];
        let pkts = packets(Format::H264, &frames, 1200);
        let (mut a, _) = primed(Format::H264, pkts[0].seq, &[0x41, 0]);
        let got: Vec<Frame> = pkts.into_iter().flat_map(|p| a.push(p)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].data[..], &au[..]);
        assert!(got[0].keyframe && !got[1].keyframe);
        // Our 3-byte start code comes back as a 4-byte one.
        assert_eq!(&got[1].data[4..], &p_frame[3..]);
    }

    #[test]
    fn opus_is_one_packet_per_frame() {
        let mut a = FrameAssembler::new(Format::Opus);
        let f = a.push(RtpIn {
            seq: 1,
            timestamp: 960,
            marker: false,
            payload: Bytes::from_static(b"opus"),
            arrival: Instant::now(),
        });
        assert_eq!(f.len(), 1);
        let f = a.push(RtpIn {
            seq: 3,
            timestamp: 2880,
            marker: false,
            payload: Bytes::from_static(b"next"),
            arrival: Instant::now(),
        });
        assert!(f[0].after_loss);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for format in [Format::Vp8, Format::H264, Format::Opus] {
            let mut a = FrameAssembler::new(format);
            for i in 0..5000u32 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let len = (seed >> 50) as usize % 40;
                let payload: Vec<u8> = (0..len).map(|k| (seed >> (k % 56)) as u8).collect();
                a.push(RtpIn {
                    seq: (seed >> 20) as u16 % 64 + i as u16,
                    timestamp: (seed >> 30) as u32 % 3,
                    marker: seed & 1 == 0,
                    payload: payload.into(),
                    arrival: Instant::now(),
                });
            }
        }
    }
}
