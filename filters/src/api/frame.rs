//! Frame types: [`VideoFrame`] (I420 planes with strides) and [`AudioFrame`] (interleaved `f32`).
//!
//! Both own their sample memory and are designed for reuse: [`Clone::clone_from`],
//! [`VideoFrame::reset`] and [`VideoFrame::copy_from_planes`] keep the allocation when the size
//! does not grow, so a pipeline (or a filter that keeps copies, like DELAY) allocates only while
//! warming up. A filter works **in place** on the frame it is given and keeps its size.

use std::time::Duration;

/// Index of the luma plane in [`VideoFrame::planes_mut`] and friends.
pub const Y: usize = 0;
/// Index of the blue-difference chroma plane.
pub const U: usize = 1;
/// Index of the red-difference chroma plane.
pub const V: usize = 2;

/// Video black (limited range, as the VP8/H.264 decoders output): Y = 16.
pub const BLACK_Y: u8 = 16;
/// Video white (limited range): Y = 235.
pub const WHITE_Y: u8 = 235;
/// Neutral chroma: U = V = 128 is grey (no colour).
pub const NEUTRAL_UV: u8 = 128;

/// Row alignment of frames this crate allocates. Decoders use 32 or 64; 16 is enough to make
/// `stride != width` for most sizes so that filters that ignore strides fail their tests.
const ALIGN: usize = 16;

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// A picture in I420 (YUV 4:2:0 planar): a full-resolution luma plane `Y` and two chroma planes
/// `U` and `V` of `ceil(width/2) x ceil(height/2)` samples.
///
/// Plane `p` has [`plane_width(p)`](Self::plane_width) x [`plane_height(p)`](Self::plane_height)
/// samples; row `r` of it starts at `r * stride(p)` in [`plane(p)`](Self::plane). The bytes
/// between `plane_width` and `stride` are padding: read them never, write them if convenient.
///
/// Values are limited range as decoders produce them: black is Y = 16, white Y = 235, grey chroma
/// U = V = 128 (see [`BLACK_Y`], [`WHITE_Y`], [`NEUTRAL_UV`]).
#[derive(Debug)]
pub struct VideoFrame {
    width: usize,
    height: usize,
    strides: [usize; 3],
    /// Start of each plane in `data`.
    offsets: [usize; 3],
    data: Vec<u8>,
    /// Presentation time on the server clock (the pipeline's monotonic clock, not wall time).
    pub pts: Duration,
}

impl VideoFrame {
    /// A black frame of `width x height` with this crate's default strides.
    pub fn new(width: usize, height: usize) -> Self {
        let mut f =
            VideoFrame { width: 0, height: 0, strides: [0; 3], offsets: [0; 3], data: Vec::new(), pts: Duration::ZERO };
        f.reset(width, height);
        f.fill(BLACK_Y, NEUTRAL_UV, NEUTRAL_UV);
        f
    }

    /// A black frame with the given strides (e.g. to mirror a decoder's line sizes so that a whole
    /// plane copies in one `copy_from_slice`). Panics if a stride is smaller than its plane width.
    pub fn with_strides(width: usize, height: usize, strides: [usize; 3]) -> Self {
        let mut f =
            VideoFrame { width: 0, height: 0, strides: [0; 3], offsets: [0; 3], data: Vec::new(), pts: Duration::ZERO };
        f.layout(width, height, strides);
        f.fill(BLACK_Y, NEUTRAL_UV, NEUTRAL_UV);
        f
    }

    /// Makes this frame `width x height` with default strides, reusing the allocation. The pixel
    /// contents are unspecified afterwards (whatever the buffer held): fill or copy into it.
    pub fn reset(&mut self, width: usize, height: usize) {
        let cw = width.div_ceil(2);
        self.layout(width, height, [align(width), align(cw), align(cw)]);
    }

    fn layout(&mut self, width: usize, height: usize, strides: [usize; 3]) {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        assert!(strides[0] >= width && strides[1] >= cw && strides[2] >= cw, "stride smaller than the plane width");
        let sizes = [strides[0] * height, strides[1] * ch, strides[2] * ch];
        self.width = width;
        self.height = height;
        self.strides = strides;
        self.offsets = [0, sizes[0], sizes[0] + sizes[1]];
        // `resize` keeps the capacity: no allocation unless the frame grows.
        self.data.resize(sizes[0] + sizes[1] + sizes[2], 0);
    }

    /// Copies a decoded picture in: `planes[p]` holds plane `p` with row stride `strides[p]`
    /// (which may differ from this frame's). Reuses the allocation when the size is unchanged.
    pub fn copy_from_planes(&mut self, width: usize, height: usize, planes: [&[u8]; 3], strides: [usize; 3]) {
        if self.width != width || self.height != height {
            self.reset(width, height);
        }
        for p in 0..3 {
            let (w, h, ds) = (self.plane_width(p), self.plane_height(p), self.strides[p]);
            let dst = self.plane_mut(p);
            if ds == strides[p] && planes[p].len() >= ds * h {
                dst[..ds * h].copy_from_slice(&planes[p][..ds * h]);
            } else {
                for r in 0..h {
                    dst[r * ds..r * ds + w].copy_from_slice(&planes[p][r * strides[p]..r * strides[p] + w]);
                }
            }
        }
    }

    /// Width in pixels (of the luma plane).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels (of the luma plane).
    pub fn height(&self) -> usize {
        self.height
    }

    /// Row stride of plane `p` in bytes.
    pub fn stride(&self, p: usize) -> usize {
        self.strides[p]
    }

    /// Samples per row of plane `p`: `width` for Y, `ceil(width/2)` for U and V.
    pub fn plane_width(&self, p: usize) -> usize {
        if p == Y {
            self.width
        } else {
            self.width.div_ceil(2)
        }
    }

    /// Rows of plane `p`: `height` for Y, `ceil(height/2)` for U and V.
    pub fn plane_height(&self, p: usize) -> usize {
        if p == Y {
            self.height
        } else {
            self.height.div_ceil(2)
        }
    }

    fn range(&self, p: usize) -> std::ops::Range<usize> {
        let end = if p == V { self.data.len() } else { self.offsets[p + 1] };
        self.offsets[p]..end
    }

    /// Plane `p` (`Y`, `U` or `V`), `stride(p) * plane_height(p)` bytes.
    pub fn plane(&self, p: usize) -> &[u8] {
        &self.data[self.range(p)]
    }

    /// Plane `p`, mutable.
    pub fn plane_mut(&mut self, p: usize) -> &mut [u8] {
        let r = self.range(p);
        &mut self.data[r]
    }

    /// All three planes at once, mutable (e.g. to process U and V in one loop).
    pub fn planes_mut(&mut self) -> [&mut [u8]; 3] {
        let (y, rest) = self.data.split_at_mut(self.offsets[1]);
        let (u, v) = rest.split_at_mut(self.offsets[2] - self.offsets[1]);
        [y, u, v]
    }

    /// Row `r` of plane `p`, exactly `plane_width(p)` samples (no padding).
    pub fn row(&self, p: usize, r: usize) -> &[u8] {
        let (s, w) = (self.strides[p], self.plane_width(p));
        &self.plane(p)[r * s..r * s + w]
    }

    /// Row `r` of plane `p`, mutable.
    pub fn row_mut(&mut self, p: usize, r: usize) -> &mut [u8] {
        let (s, w) = (self.strides[p], self.plane_width(p));
        &mut self.plane_mut(p)[r * s..r * s + w]
    }

    /// The sample at `(x, y)` of plane `p` (for tests and debugging; loops should use rows).
    pub fn at(&self, p: usize, x: usize, y: usize) -> u8 {
        self.plane(p)[y * self.strides[p] + x]
    }

    /// Fills every plane with one value (padding included).
    pub fn fill(&mut self, y: u8, u: u8, v: u8) {
        let [py, pu, pv] = self.planes_mut();
        py.fill(y);
        pu.fill(u);
        pv.fill(v);
    }

    /// Whether `other` has the same width and height.
    pub fn same_size(&self, other: &VideoFrame) -> bool {
        self.width == other.width && self.height == other.height
    }
}

impl Clone for VideoFrame {
    fn clone(&self) -> Self {
        VideoFrame {
            width: self.width,
            height: self.height,
            strides: self.strides,
            offsets: self.offsets,
            data: self.data.clone(),
            pts: self.pts,
        }
    }

    /// Copies `source` into `self`, reusing `self`'s allocation: no allocation when `self` is at
    /// least as big (the steady state of a ring of frame copies).
    fn clone_from(&mut self, source: &Self) {
        self.width = source.width;
        self.height = source.height;
        self.strides = source.strides;
        self.offsets = source.offsets;
        self.data.clone_from(&source.data);
        self.pts = source.pts;
    }
}

/// A free list of video frames, so that code which needs temporary frames (copies, scratch)
/// allocates only while warming up. Not thread-safe on purpose: one pool per pipeline thread.
#[derive(Debug, Default)]
pub struct VideoFramePool {
    free: Vec<VideoFrame>,
}

impl VideoFramePool {
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame of `width x height` (contents unspecified), recycled if one is free.
    pub fn get(&mut self, width: usize, height: usize) -> VideoFrame {
        match self.free.pop() {
            Some(mut f) => {
                if f.width != width || f.height != height {
                    f.reset(width, height);
                }
                f
            }
            None => VideoFrame::new(width, height),
        }
    }

    /// A copy of `source`, recycled if a frame is free.
    pub fn copy_of(&mut self, source: &VideoFrame) -> VideoFrame {
        match self.free.pop() {
            Some(mut f) => {
                f.clone_from(source);
                f
            }
            None => source.clone(),
        }
    }

    /// Returns a frame for reuse.
    pub fn put(&mut self, frame: VideoFrame) {
        self.free.push(frame);
    }

    /// Frames currently free.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    /// Drops all free frames (e.g. after a resolution change).
    pub fn clear(&mut self) {
        self.free.clear();
    }
}

/// The pipeline's audio sample rate (Opus in WebRTC is always 48 kHz).
pub const SAMPLE_RATE: u32 = 48_000;

/// A block of audio: interleaved `f32` samples in `[-1, 1]`, 1 or 2 channels, usually 48 kHz and
/// 20 ms (960 samples per channel).
///
/// The number of samples is fixed once the frame is made (filters keep the size); use
/// [`samples_mut`](Self::samples_mut) to change them in place.
#[derive(Debug)]
pub struct AudioFrame {
    samples: Vec<f32>,
    channels: usize,
    sample_rate: u32,
    /// Presentation time on the server clock.
    pub pts: Duration,
}

impl AudioFrame {
    /// A silent frame of `frames` samples per channel.
    pub fn new(channels: usize, frames: usize, sample_rate: u32) -> Self {
        assert!(channels == 1 || channels == 2, "audio frames have 1 or 2 channels");
        AudioFrame { samples: vec![0.0; channels * frames], channels, sample_rate, pts: Duration::ZERO }
    }

    /// A frame from interleaved `f32` samples. Panics if `samples.len()` is not a multiple of
    /// `channels` or `channels` is not 1 or 2.
    pub fn from_samples(channels: usize, sample_rate: u32, samples: Vec<f32>) -> Self {
        assert!(channels == 1 || channels == 2, "audio frames have 1 or 2 channels");
        assert_eq!(samples.len() % channels, 0, "interleaved samples must fill whole frames");
        AudioFrame { samples, channels, sample_rate, pts: Duration::ZERO }
    }

    /// Makes this frame hold `frames` samples per channel, reusing the allocation (contents
    /// unspecified afterwards).
    pub fn reset(&mut self, channels: usize, frames: usize, sample_rate: u32) {
        assert!(channels == 1 || channels == 2, "audio frames have 1 or 2 channels");
        self.channels = channels;
        self.sample_rate = sample_rate;
        self.samples.resize(channels * frames, 0.0);
    }

    /// Copies interleaved signed 16-bit samples in (what Opus decoders commonly output),
    /// reusing the allocation.
    pub fn copy_from_i16(&mut self, channels: usize, sample_rate: u32, samples: &[i16]) {
        self.reset(channels, samples.len() / channels, sample_rate);
        for (d, s) in self.samples.iter_mut().zip(samples) {
            *d = *s as f32 / 32768.0;
        }
    }

    /// Writes the samples out as interleaved signed 16-bit, clamping to the valid range.
    pub fn write_i16(&self, out: &mut Vec<i16>) {
        out.clear();
        out.extend(self.samples.iter().map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16));
    }

    /// Interleaved samples (`[l0, r0, l1, r1, ...]` for stereo).
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// Interleaved samples, mutable.
    pub fn samples_mut(&mut self) -> &mut [f32] {
        &mut self.samples
    }

    /// 1 (mono) or 2 (stereo).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Samples per second per channel (48 000 in the pipeline).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels
    }

    /// How long the frame plays.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / self.sample_rate as f64)
    }
}

impl Clone for AudioFrame {
    fn clone(&self) -> Self {
        AudioFrame {
            samples: self.samples.clone(),
            channels: self.channels,
            sample_rate: self.sample_rate,
            pts: self.pts,
        }
    }

    /// Copies `source` into `self` reusing `self`'s allocation.
    fn clone_from(&mut self, source: &Self) {
        self.samples.clone_from(&source.samples);
        self.channels = source.channels;
        self.sample_rate = source.sample_rate;
        self.pts = source.pts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_sizes_round_chroma_up_and_strides_pad() {
        let f = VideoFrame::new(35, 21);
        assert_eq!((f.plane_width(Y), f.plane_height(Y)), (35, 21));
        assert_eq!((f.plane_width(U), f.plane_height(U)), (18, 11));
        assert_eq!(f.stride(Y), 48);
        assert_eq!(f.plane(Y).len(), 48 * 21);
        assert_eq!(f.plane(V).len(), f.stride(V) * 11);
        assert!(f.plane(Y).iter().all(|&v| v == BLACK_Y));
        assert!(f.plane(U).iter().chain(f.plane(V)).all(|&v| v == NEUTRAL_UV));
    }

    #[test]
    fn clone_from_reuses_the_allocation() {
        let mut a = VideoFrame::new(64, 48);
        a.row_mut(Y, 3)[5] = 200;
        a.pts = Duration::from_millis(7);
        let mut b = VideoFrame::new(64, 48);
        let ptr = b.plane(Y).as_ptr();
        b.clone_from(&a);
        assert_eq!(b.plane(Y).as_ptr(), ptr, "same buffer");
        assert_eq!(b.at(Y, 5, 3), 200);
        assert_eq!(b.pts, Duration::from_millis(7));
    }

    #[test]
    fn copy_from_planes_handles_foreign_strides() {
        let (w, h) = (6, 4);
        let y: Vec<u8> = (0..10 * h).map(|i| i as u8).collect(); // stride 10
        let u = vec![1u8; 8 * 2];
        let v = vec![2u8; 8 * 2];
        let mut f = VideoFrame::new(2, 2);
        f.copy_from_planes(w, h, [&y, &u, &v], [10, 8, 8]);
        assert_eq!((f.width(), f.height()), (6, 4));
        assert_eq!(f.row(Y, 2), &[20, 21, 22, 23, 24, 25]);
        assert_eq!(f.row(U, 1), &[1, 1, 1]);
        assert_eq!(f.row(V, 0), &[2, 2, 2]);
    }

    #[test]
    fn audio_i16_round_trip() {
        let mut a = AudioFrame::new(2, 0, SAMPLE_RATE);
        a.copy_from_i16(2, SAMPLE_RATE, &[0, 16384, -32768, 32767]);
        assert_eq!(a.frames(), 2);
        assert_eq!(a.samples()[1], 0.5);
        let mut out = vec![];
        a.write_i16(&mut out);
        assert_eq!(out, [0, 16384, -32768, 32767]);
    }
}
