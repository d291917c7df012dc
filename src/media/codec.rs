//! ffmpeg codecs behind small, safe types: decode an encoded frame into a [`VideoFrame`] /
//! [`AudioFrame`], encode one back. The settings are the measured low-latency ones (each
//! avoids frames buffered inside the codec): one slice thread, `LOW_DELAY` decoding (exactly
//! one picture out per packet), realtime libvpx with no lag, x264
//! ultrafast/zerolatency/baseline with forced IDRs, Opus VoIP.
//!
//! Resolution changes (browsers adapt their send size under load) re-create the encoder.

use std::sync::Once;

use bytes::Bytes;
use ff::codec::{self, threading};
use ff::format::{sample, Pixel, Sample};
use ff::{ChannelLayout, Dictionary, Rational};
use ffmpeg_next as ff;
use filters::{AudioFrame, VideoFrame};

use super::rtp::Format;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("ffmpeg: {0}")]
    Ffmpeg(#[from] ff::Error),
    #[error("codec {0} is not available in this FFmpeg build")]
    Missing(&'static str),
    #[error("unsupported picture format {0:?}")]
    PixelFormat(Pixel),
}

pub type Result<T> = std::result::Result<T, CodecError>;

pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ff::init();
        // Corrupt packets are counted by the pipeline; ffmpeg's own stderr lines would flood.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn low_delay_context(codec: ff::Codec) -> codec::Context {
    let mut ctx = codec::Context::new_with_codec(codec);
    // Frame threading would delay output by threads-1 frames; slices with one thread do not.
    ctx.set_threading(threading::Config { kind: threading::Type::Slice, count: 1, ..Default::default() });
    ctx
}

/// Decodes VP8 or H.264 frames to I420.
pub struct VideoDecoder {
    dec: ff::decoder::Video,
    picture: ff::frame::Video,
}

impl VideoDecoder {
    pub fn new(format: Format) -> Result<Self> {
        init();
        let name = match format {
            Format::Vp8 => "vp8",
            Format::H264 => "h264",
            Format::Opus => return Err(CodecError::Missing("video decoder for opus")),
        };
        let c = ff::decoder::find_by_name(name).ok_or(CodecError::Missing(name))?;
        let mut ctx = low_delay_context(c);
        ctx.set_flags(codec::Flags::LOW_DELAY);
        Ok(Self { dec: ctx.decoder().video()?, picture: ff::frame::Video::empty() })
    }

    /// Decodes one frame; `Ok(true)` when a picture was written to `out`.
    pub fn decode(&mut self, data: &[u8], out: &mut VideoFrame) -> Result<bool> {
        self.dec.send_packet(&ff::Packet::copy(data))?;
        let mut got = false;
        // The picture is only valid inside the loop (ffmpeg unrefs it on EAGAIN).
        while self.dec.receive_frame(&mut self.picture).is_ok() {
            let p = &self.picture;
            if !matches!(p.format(), Pixel::YUV420P | Pixel::YUVJ420P) {
                return Err(CodecError::PixelFormat(p.format()));
            }
            let (w, h) = (p.width() as usize, p.height() as usize);
            out.copy_from_planes(w, h, [p.data(0), p.data(1), p.data(2)], [p.stride(0), p.stride(1), p.stride(2)]);
            got = true;
        }
        Ok(got)
    }
}

/// Encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct VideoSettings {
    pub bitrate: usize,
    /// libvpx `cpu-used` (higher = faster, slightly worse).
    pub vp8_cpu_used: u8,
    pub fps: u32,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self { bitrate: 1_000_000, vp8_cpu_used: 16, fps: 30 }
    }
}

/// One encoded video frame.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub data: Bytes,
    pub keyframe: bool,
}

impl AsRef<[u8]> for Encoded {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Encodes I420 pictures to VP8 or H.264 with real-time settings.
pub struct VideoEncoder {
    format: Format,
    settings: VideoSettings,
    enc: Option<ff::encoder::Video>,
    size: (usize, usize),
    picture: ff::frame::Video,
    packet: ff::Packet,
    pts: i64,
}

impl VideoEncoder {
    pub fn new(format: Format, settings: VideoSettings) -> Result<Self> {
        init();
        if format == Format::Opus {
            return Err(CodecError::Missing("video encoder for opus"));
        }
        Ok(Self {
            format,
            settings,
            enc: None,
            size: (0, 0),
            picture: ff::frame::Video::empty(),
            packet: ff::Packet::empty(),
            pts: 0,
        })
    }

    fn open(&mut self, w: usize, h: usize) -> Result<()> {
        let name = match self.format {
            Format::Vp8 => "libvpx",
            _ => "libx264",
        };
        let c = ff::encoder::find_by_name(name).ok_or(CodecError::Missing(name))?;
        let mut v = low_delay_context(c).encoder().video()?;
        v.set_width(w as u32);
        v.set_height(h as u32);
        v.set_format(Pixel::YUV420P);
        v.set_time_base(Rational(1, 90_000));
        v.set_frame_rate(Some(Rational(self.settings.fps as i32, 1)));
        v.set_bit_rate(self.settings.bitrate);
        v.set_max_b_frames(0);
        // Keyframes come on request (new viewer, loss); a long GOP otherwise.
        v.set_gop(self.settings.fps * 10);
        let mut o = Dictionary::new();
        match self.format {
            Format::Vp8 => {
                o.set("deadline", "realtime");
                o.set("cpu-used", &self.settings.vp8_cpu_used.to_string());
                o.set("lag-in-frames", "0");
                o.set("error-resilient", "default");
                o.set("auto-alt-ref", "0");
                o.set("static-thresh", "100");
            }
            _ => {
                o.set("preset", "ultrafast");
                o.set("tune", "zerolatency");
                o.set("profile", "baseline");
                o.set("forced-idr", "1");
            }
        }
        self.enc = Some(v.open_with(o)?);
        self.size = (w, h);
        self.picture = ff::frame::Video::new(Pixel::YUV420P, w as u32, h as u32);
        Ok(())
    }

    /// Encodes `frame` (forcing a keyframe if asked) and appends what comes out to `out`.
    pub fn encode(&mut self, frame: &VideoFrame, force_key: bool, out: &mut Vec<Encoded>) -> Result<()> {
        let (w, h) = (frame.width(), frame.height());
        let mut force_key = force_key;
        if self.enc.is_none() || self.size != (w, h) {
            self.open(w, h)?;
            force_key = true;
        }
        for p in 0..3 {
            let rows = frame.plane_height(p);
            let n = frame.plane_width(p);
            let (src_stride, dst_stride) = (frame.stride(p), self.picture.stride(p));
            let src = frame.plane(p);
            let dst = self.picture.data_mut(p);
            for r in 0..rows {
                dst[r * dst_stride..r * dst_stride + n].copy_from_slice(&src[r * src_stride..r * src_stride + n]);
            }
        }
        self.picture.set_pts(Some(self.pts));
        // 90 kHz clock, one frame interval per picture (RTP timestamps are set by the caller).
        self.pts += 90_000 / self.settings.fps.max(1) as i64;
        self.picture.set_kind(if force_key { ff::picture::Type::I } else { ff::picture::Type::None });
        let enc = self.enc.as_mut().expect("opened above");
        enc.send_frame(&self.picture)?;
        while enc.receive_packet(&mut self.packet).is_ok() {
            if let Some(d) = self.packet.data() {
                out.push(Encoded { data: Bytes::copy_from_slice(d), keyframe: self.packet.is_key() });
            }
        }
        Ok(())
    }
}

/// Decodes Opus packets to 48 kHz interleaved `f32`.
pub struct AudioDecoder {
    dec: ff::decoder::Audio,
    frame: ff::frame::Audio,
}

impl AudioDecoder {
    pub fn new() -> Result<Self> {
        init();
        let c = ff::decoder::find_by_name("opus").ok_or(CodecError::Missing("opus"))?;
        // Without extradata the decoder assumes WebRTC's Opus: 48 kHz, stereo.
        Ok(Self { dec: low_delay_context(c).decoder().audio()?, frame: ff::frame::Audio::empty() })
    }

    /// Decodes one packet into `out` (interleaved, the decoder's channel count).
    pub fn decode(&mut self, data: &[u8], out: &mut AudioFrame) -> Result<bool> {
        self.dec.send_packet(&ff::Packet::copy(data))?;
        let mut got = false;
        while self.dec.receive_frame(&mut self.frame).is_ok() {
            let f = &self.frame;
            let n = f.samples();
            let ch = (f.channels() as usize).clamp(1, 2);
            let rate = f.rate();
            let mut samples = Vec::with_capacity(n * ch);
            match f.format() {
                Sample::F32(sample::Type::Planar) => {
                    let planes: Vec<&[f32]> = (0..ch).map(|c| &f.plane::<f32>(c)[..n]).collect();
                    for i in 0..n {
                        for p in &planes {
                            samples.push(p[i]);
                        }
                    }
                }
                Sample::F32(sample::Type::Packed) => samples.extend_from_slice(&f.plane::<f32>(0)[..n * ch]),
                Sample::I16(sample::Type::Packed) => {
                    samples.extend(f.plane::<i16>(0)[..n * ch].iter().map(|s| *s as f32 / 32768.0))
                }
                Sample::I16(sample::Type::Planar) => {
                    for i in 0..n {
                        for c in 0..ch {
                            samples.push(f.plane::<i16>(c)[i] as f32 / 32768.0);
                        }
                    }
                }
                other => return Err(CodecError::Missing(sample_name(other))),
            }
            *out = AudioFrame::from_samples(ch, rate, samples);
            got = true;
        }
        Ok(got)
    }
}

fn sample_name(_s: Sample) -> &'static str {
    "this sample format"
}

/// Encodes 20 ms blocks of 48 kHz interleaved `f32` (mono or stereo) to Opus.
pub struct AudioEncoder {
    enc: ff::encoder::Audio,
    frame: ff::frame::Audio,
    packet: ff::Packet,
    channels: usize,
    pts: i64,
}

impl AudioEncoder {
    pub fn new(channels: usize, bitrate: usize) -> Result<Self> {
        init();
        let c = ff::encoder::find_by_name("libopus").ok_or(CodecError::Missing("libopus"))?;
        let mut a = low_delay_context(c).encoder().audio()?;
        let layout = if channels == 1 { ChannelLayout::MONO } else { ChannelLayout::STEREO };
        a.set_rate(48_000);
        a.set_channel_layout(layout);
        a.set_format(Sample::F32(sample::Type::Packed));
        a.set_bit_rate(bitrate);
        a.set_time_base(Rational(1, 48_000));
        let mut o = Dictionary::new();
        o.set("application", "voip");
        o.set("frame_duration", "20");
        let enc = a.open_with(o)?;
        let frame = ff::frame::Audio::new(Sample::F32(sample::Type::Packed), 960, layout);
        Ok(Self { enc, frame, packet: ff::Packet::empty(), channels: channels.clamp(1, 2), pts: 0 })
    }

    /// Encodes a 960-sample (20 ms) frame; other lengths are padded or cut to 960.
    pub fn encode(&mut self, input: &AudioFrame, out: &mut Vec<Bytes>) -> Result<()> {
        let dst = self.frame.plane_mut::<f32>(0);
        let want = 960 * self.channels;
        let src = input.samples();
        let ich = input.channels();
        for i in 0..960 {
            for c in 0..self.channels {
                let s = src.get(i * ich + c.min(ich - 1)).copied().unwrap_or(0.0);
                if i * self.channels + c < want {
                    dst[i * self.channels + c] = s;
                }
            }
        }
        self.frame.set_rate(48_000);
        self.frame.set_pts(Some(self.pts));
        self.pts += 960;
        self.enc.send_frame(&self.frame)?;
        while self.enc.receive_packet(&mut self.packet).is_ok() {
            if let Some(d) = self.packet.data() {
                out.push(Bytes::copy_from_slice(d));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: usize, h: usize, t: usize) -> VideoFrame {
        let mut f = VideoFrame::new(w, h);
        for y in 0..h {
            let row = f.row_mut(0, y);
            for (x, px) in row.iter_mut().take(w).enumerate() {
                *px = (((x + t * 4) / 16 + y / 16) % 2 * 150 + 40) as u8;
            }
        }
        f
    }

    fn mean_abs_diff(a: &VideoFrame, b: &VideoFrame) -> f64 {
        let mut sum = 0u64;
        for y in 0..a.height() {
            for x in 0..a.width() {
                sum += (a.at(0, x, y) as i32 - b.at(0, x, y) as i32).unsigned_abs() as u64;
            }
        }
        sum as f64 / (a.width() * a.height()) as f64
    }

    #[test]
    fn video_round_trips_through_each_codec() {
        for format in [Format::Vp8, Format::H264] {
            let mut enc = VideoEncoder::new(format, VideoSettings::default()).unwrap();
            let mut dec = VideoDecoder::new(format).unwrap();
            let mut out = VideoFrame::new(2, 2);
            let mut decoded = 0;
            for t in 0..10 {
                let src = pattern(320, 240, t);
                let mut packets = vec![];
                enc.encode(&src, t == 5, &mut packets).unwrap();
                assert_eq!(packets.len(), 1, "{format:?}: one packet per picture (no lag)");
                if t == 0 || t == 5 {
                    assert!(packets[0].keyframe, "{format:?}: frame {t} is a keyframe");
                } else {
                    assert!(!packets[0].keyframe, "{format:?}: frame {t} is not");
                }
                assert!(dec.decode(&packets[0].data, &mut out).unwrap(), "{format:?}: one picture out per packet");
                assert_eq!((out.width(), out.height()), (320, 240));
                let err = mean_abs_diff(&src, &out);
                assert!(err < 6.0, "{format:?} frame {t}: mean error {err}");
                decoded += 1;
            }
            assert_eq!(decoded, 10);
        }
    }

    #[test]
    fn a_new_size_reopens_the_encoder_with_a_keyframe() {
        let mut enc = VideoEncoder::new(Format::Vp8, VideoSettings::default()).unwrap();
        let mut dec = VideoDecoder::new(Format::Vp8).unwrap();
        let mut out = VideoFrame::new(2, 2);
        let mut p = vec![];
        enc.encode(&pattern(320, 240, 0), false, &mut p).unwrap();
        enc.encode(&pattern(160, 120, 1), false, &mut p).unwrap();
        assert!(p[1].keyframe);
        dec.decode(&p[0].data, &mut out).unwrap();
        dec.decode(&p[1].data, &mut out).unwrap();
        assert_eq!((out.width(), out.height()), (160, 120));
    }

    #[test]
    fn audio_round_trips_through_opus() {
        let mut enc = AudioEncoder::new(2, 64_000).unwrap();
        let mut dec = AudioDecoder::new().unwrap();
        let mut out = AudioFrame::new(2, 960, 48_000);
        let mut energy = 0.0f32;
        for k in 0..20 {
            let samples: Vec<f32> = (0..960)
                .flat_map(|i| {
                    let s = ((k * 960 + i) as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.5;
                    [s, s]
                })
                .collect();
            let mut packets = vec![];
            enc.encode(&AudioFrame::from_samples(2, 48_000, samples), &mut packets).unwrap();
            for p in packets {
                assert!(dec.decode(&p, &mut out).unwrap());
                assert_eq!(out.frames(), 960);
                if k > 5 {
                    energy += out.samples().iter().map(|s| s * s).sum::<f32>();
                }
            }
        }
        let rms = (energy / (14.0 * 1920.0)).sqrt();
        assert!((0.25..0.5).contains(&rms), "a 0.5-amplitude sine comes back with rms {rms}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = VideoDecoder::new(Format::Vp8).unwrap();
        let mut out = VideoFrame::new(2, 2);
        for n in [0usize, 1, 3, 10, 100] {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let _ = dec.decode(&junk, &mut out);
        }
        let mut adec = AudioDecoder::new().unwrap();
        let mut aout = AudioFrame::new(2, 960, 48_000);
        let _ = adec.decode(&[0xff, 0xfe, 0x01], &mut aout);
    }
}
