//! Writing encoded frames to Matroska/WebM files without re-encoding (ffmpeg's muxers), and
//! reading such a file back for its duration (recovery after a crash).
//!
//! Crash safety: Matroska is written front to back; the segment's size is "unknown" until the
//! trailer rewrites it, and every cluster is self-contained. [`Muxer::flush`] ends the current
//! cluster and hands it to the kernel, so a `kill -9` loses at most what came after the last
//! flush, and what is on disk plays (ffmpeg, browsers and VLC read unfinished files).

use std::path::Path;
use std::ptr;

use ff::ffi;
use ffmpeg_next as ff;

use super::rtp::Format;

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("{0}")]
    Ffmpeg(#[from] ff::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot create a stream in the container")]
    Stream,
    /// The muxer refused this one packet (the file is fine).
    #[error("packet refused by the muxer: {0}")]
    Refused(ff::Error),
}

impl MuxError {
    /// The file cannot go on (I/O), as opposed to one refused packet.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, MuxError::Refused(_))
    }
}

pub type Result<T> = std::result::Result<T, MuxError>;

/// What a file's single track carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub format: Format,
    /// Video size (from the first keyframe).
    pub width: u32,
    pub height: u32,
    /// H.264: the SPS and PPS of the first keyframe, Annex B (the muxer writes `avcC`).
    pub extradata: Vec<u8>,
}

impl TrackInfo {
    /// The container ffmpeg writes: WebM for VP8 and Opus, Matroska for H.264.
    pub fn container(&self) -> &'static str {
        match self.format {
            Format::H264 => "matroska",
            Format::Vp8 | Format::Opus => "webm",
        }
    }

    /// The file name extension for [`TrackInfo::container`].
    pub fn extension(&self) -> &'static str {
        match self.format {
            Format::H264 => "mkv",
            Format::Vp8 | Format::Opus => "webm",
        }
    }
}

/// The codec's name as the manifest gives it.
pub fn codec_name(format: Format) -> &'static str {
    match format {
        Format::Vp8 => "VP8",
        Format::H264 => "H264",
        Format::Opus => "opus",
    }
}

/// One open file with one track. Timestamps are milliseconds from the file's start.
pub struct Muxer {
    octx: ff::format::context::Output,
    time_base: ff::Rational,
    last_ms: Option<i64>,
    frames: u64,
}

/// `OpusHead` (RFC 7845 §5.1) for two channels, no pre-skip: RTP carries no pre-skip, and
/// zero keeps every packet's time equal to its RTP time.
fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family
    h
}

impl Muxer {
    /// Creates `path` (truncating it) and writes the container header.
    pub fn create(path: &Path, info: &TrackInfo) -> Result<Self> {
        super::codec::init();
        let mut octx = ff::format::output_as(path, info.container())?;
        let extradata = match info.format {
            Format::Opus => opus_head(),
            _ => info.extradata.clone(),
        };
        // SAFETY: `octx` is a valid output context; the new stream's codecpar is allocated by
        // avformat_new_stream and owned by it; extradata is allocated with av_mallocz and
        // padded as libavformat requires, and freed with the context.
        unsafe {
            let st = ffi::avformat_new_stream(octx.as_mut_ptr(), ptr::null());
            if st.is_null() {
                return Err(MuxError::Stream);
            }
            let par = (*st).codecpar;
            match info.format {
                Format::Vp8 | Format::H264 => {
                    (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
                    (*par).codec_id = if info.format == Format::Vp8 {
                        ffi::AVCodecID::AV_CODEC_ID_VP8
                    } else {
                        ffi::AVCodecID::AV_CODEC_ID_H264
                    };
                    (*par).width = info.width as i32;
                    (*par).height = info.height as i32;
                    (*par).format = ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32;
                }
                Format::Opus => {
                    (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
                    (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_OPUS;
                    (*par).sample_rate = 48_000;
                    ffi::av_channel_layout_default(&mut (*par).ch_layout, 2);
                }
            }
            if !extradata.is_empty() {
                let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                let buf = ffi::av_mallocz(extradata.len() + pad) as *mut u8;
                if buf.is_null() {
                    return Err(MuxError::Stream);
                }
                ptr::copy_nonoverlapping(extradata.as_ptr(), buf, extradata.len());
                (*par).extradata = buf;
                (*par).extradata_size = extradata.len() as i32;
            }
            (*st).time_base = ffi::AVRational { num: 1, den: 1000 };
        }
        let mut opts = ff::Dictionary::new();
        // A new cluster at least every second, so flushing once a second loses little.
        opts.set("cluster_time_limit", "1000");
        octx.write_header_with(opts)?;
        let time_base = octx.stream(0).map(|s| s.time_base()).unwrap_or(ff::Rational(1, 1000));
        let mut m = Self { octx, time_base, last_ms: None, frames: 0 };
        m.flush()?;
        Ok(m)
    }

    /// Writes one frame at `ms` from the file's start (raised to keep time strictly increasing,
    /// as Matroska requires for a track without B-frames).
    pub fn write(&mut self, data: &[u8], ms: i64, key: bool, duration_ms: i64) -> Result<()> {
        if data.is_empty() {
            // RTP padding (bandwidth probes) carries no frame; Matroska has no empty blocks.
            return Ok(());
        }
        let ms = match self.last_ms {
            Some(last) if ms <= last => last + 1,
            _ => ms.max(0),
        };
        let mut pkt = ff::Packet::copy(data);
        let ts =
            ms.saturating_mul(self.time_base.denominator() as i64) / (1000 * self.time_base.numerator().max(1) as i64);
        pkt.set_pts(Some(ts));
        pkt.set_dts(Some(ts));
        pkt.set_duration(
            duration_ms * self.time_base.denominator() as i64 / (1000 * self.time_base.numerator().max(1) as i64),
        );
        pkt.set_stream(0);
        if key {
            pkt.set_flags(ff::packet::Flags::KEY);
        }
        if let Err(e) = pkt.write(&mut self.octx) {
            self.io_error()?;
            return Err(MuxError::Refused(e));
        }
        self.last_ms = Some(ms);
        self.frames += 1;
        self.io_error()
    }

    /// Ends the current cluster and hands everything written so far to the kernel.
    pub fn flush(&mut self) -> Result<()> {
        // SAFETY: a null packet asks a muxer with AVFMT_ALLOW_FLUSH (Matroska has it) to
        // flush; `pb` is the open AVIOContext of this context.
        unsafe {
            let ctx = self.octx.as_mut_ptr();
            let r = ffi::av_write_frame(ctx, ptr::null_mut());
            if r < 0 {
                return Err(ff::Error::from(r).into());
            }
            if !(*ctx).pb.is_null() {
                ffi::avio_flush((*ctx).pb);
            }
        }
        self.io_error()
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The last frame's time (ms from the file's start).
    pub fn last_ms(&self) -> Option<i64> {
        self.last_ms
    }

    fn io_error(&self) -> Result<()> {
        // SAFETY: reading the error field of this context's open AVIOContext.
        let e = unsafe {
            let ctx = self.octx.as_ptr();
            if (*ctx).pb.is_null() {
                0
            } else {
                (*(*ctx).pb).error
            }
        };
        if e < 0 {
            Err(std::io::Error::from_raw_os_error(-e).into())
        } else {
            Ok(())
        }
    }

    /// Writes the trailer (duration, cues) and closes the file.
    pub fn finish(mut self) -> Result<()> {
        self.octx.write_trailer()?;
        // SAFETY: as in `flush`.
        unsafe {
            let ctx = self.octx.as_mut_ptr();
            if !(*ctx).pb.is_null() {
                ffi::avio_flush((*ctx).pb);
            }
        }
        self.io_error()
        // Dropping `octx` closes the AVIOContext.
    }
}

/// What a recorded file holds, read back from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub duration_ms: f64,
    pub frames: u64,
}

/// Reads every packet of `path` (also an unfinished file) for its duration and frame count.
pub fn probe(path: &Path) -> Result<Probe> {
    super::codec::init();
    let mut ictx = ff::format::input(path)?;
    let tb = ictx.stream(0).map(|s| s.time_base()).unwrap_or(ff::Rational(1, 1000));
    let (mut first, mut end, mut frames) = (None::<i64>, 0i64, 0u64);
    for (_, p) in ictx.packets() {
        let Some(pts) = p.pts().or(p.dts()) else { continue };
        frames += 1;
        first = Some(first.map_or(pts, |f| f.min(pts)));
        end = end.max(pts + p.duration().max(0));
    }
    let ticks = end - first.unwrap_or(0);
    let duration_ms = ticks as f64 * 1000.0 * tb.numerator() as f64 / tb.denominator().max(1) as f64;
    Ok(Probe { duration_ms, frames })
}

/// Calls `each(ms, data)` for every packet of `path` in file order, `ms` being its time in the
/// file (pts in milliseconds from the file's start).
pub fn read_packets(path: &Path, mut each: impl FnMut(f64, &[u8])) -> Result<()> {
    super::codec::init();
    let mut ictx = ff::format::input(path)?;
    let tb = ictx.stream(0).map(|s| s.time_base()).unwrap_or(ff::Rational(1, 1000));
    let scale = 1000.0 * tb.numerator() as f64 / tb.denominator().max(1) as f64;
    for (_, p) in ictx.packets() {
        let (Some(pts), Some(data)) = (p.pts().or(p.dts()), p.data()) else { continue };
        each(pts as f64 * scale, data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::{VideoEncoder, VideoSettings};
    use filters::VideoFrame;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("exphub-mux-{}-{name}", uuid::Uuid::new_v4().simple()))
    }

    fn vp8_frames(n: usize) -> Vec<(Vec<u8>, bool)> {
        let mut enc = VideoEncoder::new(Format::Vp8, VideoSettings::default()).unwrap();
        let mut out = vec![];
        for i in 0..n {
            let mut f = VideoFrame::new(320, 240);
            f.plane_mut(0).fill((i * 7 % 255) as u8);
            let mut enc_out = vec![];
            enc.encode(&f, i == 0, &mut enc_out).unwrap();
            out.extend(enc_out.into_iter().map(|e| (e.data.to_vec(), e.keyframe)));
        }
        out
    }

    #[test]
    fn vp8_file_reads_back_with_its_duration() {
        let path = temp("a.webm");
        let info = TrackInfo { format: Format::Vp8, width: 320, height: 240, extradata: vec![] };
        let mut m = Muxer::create(&path, &info).unwrap();
        for (i, (data, key)) in vp8_frames(30).iter().enumerate() {
            m.write(data, i as i64 * 33, *key, 33).unwrap();
        }
        m.finish().unwrap();
        let p = probe(&path).unwrap();
        assert_eq!(p.frames, 30);
        assert!((p.duration_ms - 990.0).abs() < 40.0, "{p:?}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn h264_annex_b_is_written_as_matroska_with_avcc() {
        let mut enc = VideoEncoder::new(Format::H264, VideoSettings::default()).unwrap();
        let mut frames = vec![];
        for i in 0..20 {
            let mut f = VideoFrame::new(320, 240);
            f.plane_mut(0).fill((i * 9 % 255) as u8);
            let mut out = vec![];
            enc.encode(&f, i == 0, &mut out).unwrap();
            frames.extend(out.into_iter().map(|e| (e.data.to_vec(), e.keyframe)));
        }
        assert!(frames[0].1, "the first frame is an IDR");
        let extradata = crate::media::recorder::parameter_sets(&frames[0].0);
        assert!(!extradata.is_empty());
        let info = TrackInfo { format: Format::H264, width: 320, height: 240, extradata };
        assert_eq!(info.extension(), "mkv");
        let path = temp("e.mkv");
        let mut m = Muxer::create(&path, &info).unwrap();
        for (i, (data, key)) in frames.iter().enumerate() {
            m.write(data, i as i64 * 33, *key, 33).unwrap();
        }
        m.finish().unwrap();
        assert_eq!(probe(&path).unwrap().frames, frames.len() as u64);
        // Decodes again from the container alone (avcC, length-prefixed NAL units).
        let mut ictx = ff::format::input(&path).unwrap();
        let par = ictx.stream(0).unwrap().parameters();
        let mut dec = ff::codec::Context::from_parameters(par).unwrap().decoder().video().unwrap();
        let mut n = 0;
        let mut pic = ff::frame::Video::empty();
        for (_, p) in ictx.packets() {
            dec.send_packet(&p).unwrap();
            while dec.receive_frame(&mut pic).is_ok() {
                assert_eq!((pic.width(), pic.height()), (320, 240));
                n += 1;
            }
        }
        dec.send_eof().unwrap();
        while dec.receive_frame(&mut pic).is_ok() {
            n += 1;
        }
        assert_eq!(n, frames.len());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn unfinished_file_is_readable_up_to_the_last_flush() {
        let path = temp("b.webm");
        let info = TrackInfo { format: Format::Vp8, width: 320, height: 240, extradata: vec![] };
        let mut m = Muxer::create(&path, &info).unwrap();
        let frames = vp8_frames(20);
        for (i, (data, key)) in frames.iter().enumerate() {
            m.write(data, i as i64 * 33, *key, 33).unwrap();
            if i == 9 {
                m.flush().unwrap();
            }
        }
        // As if killed: no trailer, nothing after the flush reaches the file.
        std::mem::forget(m);
        let p = probe(&path).unwrap();
        assert_eq!(p.frames, 10, "{p:?}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn opus_file_has_its_frames() {
        let path = temp("c.webm");
        let info = TrackInfo { format: Format::Opus, width: 0, height: 0, extradata: vec![] };
        let mut m = Muxer::create(&path, &info).unwrap();
        let mut enc = crate::media::codec::AudioEncoder::new(2, 64_000).unwrap();
        let mut n = 0;
        for i in 0..50 {
            let f = filters::AudioFrame::new(2, 960, 48_000);
            let mut out = vec![];
            enc.encode(&f, &mut out).unwrap();
            for d in out {
                m.write(&d, i * 20, true, 20).unwrap();
                n += 1;
            }
        }
        m.finish().unwrap();
        let p = probe(&path).unwrap();
        assert_eq!(p.frames, n);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn empty_packets_are_skipped_and_the_file_goes_on() {
        let path = temp("d.webm");
        let info = TrackInfo { format: Format::Opus, width: 0, height: 0, extradata: vec![] };
        let mut m = Muxer::create(&path, &info).unwrap();
        m.write(&[0xfc, 1, 2], 0, true, 20).unwrap();
        m.write(&[], 20, true, 20).unwrap();
        m.write(&[0xfc, 1, 2], 40, true, 20).unwrap();
        m.finish().unwrap();
        assert_eq!(probe(&path).unwrap().frames, 2);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let info = TrackInfo { format: Format::Vp8, width: 320, height: 240, extradata: vec![] };
        // /dev/full accepts the open and fails every write with ENOSPC.
        let r = Muxer::create(Path::new("/dev/full"), &info);
        let e = r.err().expect("writing to /dev/full must fail");
        assert!(e.to_string().contains("space"), "{e}");
    }
}
