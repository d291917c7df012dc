//! The 68-point landmark model (an ensemble of regression trees, Kazemi and Sullivan 2014) read
//! from dlib's serialized `shape_predictor` and evaluated in Rust.
//!
//! The result is dlib's, in float precision: dlib rounds each landmark to an integer pixel, this
//! does not. The evaluation is dlib's algorithm; what makes it faster is the memory layout and
//! the order of work. A cascade's 500 trees all read the same feature pixels, so all 500 leaf
//! indices are found first (a cascade's splits are 90 kB, its leaves 4.4 MB), then every cache
//! line of the 500 chosen leaves is loaded in one tight pass, so the memory serves many misses
//! at once, and the leaves are added up in order from the cache. The leaves are one contiguous
//! array, on huge pages where the system gives them (1.45 instead of 2.1 ms per face, measured:
//! the leaves are read at random, 4 kB pages cost a TLB miss per leaf); dlib walks tree by tree
//! with every leaf vector a heap block of its own. The leaves are added in dlib's order, so the
//! sums round as dlib's do: a small difference can move a feature pixel, and then a later tree
//! takes another leaf (see the i16 trial below).
//!
//! Tried and dropped: leaves as i16 with a scale per leaf or per tree (half the bytes): the
//! landmarks moved up to 3.8 px from the float result (a rounding difference moves a feature
//! pixel, and a later tree takes another leaf), and it was no faster. Leaves padded to whole,
//! aligned cache lines (9 per leaf instead of 9.5 on average): no measurable change.
//!
//! # The file
//!
//! dlib's serialization: an integer is a control byte (the byte count, the sign in bit 7 for
//! signed types) followed by that many little-endian bytes; a float is an integer mantissa
//! (int64) and exponent (int16), `mantissa * 2^exponent`; a `std::vector` is its length then its
//! elements; a column matrix is its row and column counts (negated in the newer format) then its
//! elements. A `shape_predictor` is: version (int, 1); the initial shape (column matrix, x0, y0,
//! x1, ...); the forests (a vector per cascade of trees, each tree its splits (idx1, idx2: unsigned
//! long, thresh: float) and its leaf values (column matrices)); the anchor part of every feature
//! pixel per cascade (vectors of unsigned long); the offset of every feature pixel from its
//! anchor (vectors of float pairs).
//!
//! Every length is checked against the bytes left before anything is allocated, and every index
//! against what it indexes, so a truncated, corrupt or hostile file is a [`ModelError`], never a
//! panic or an absurd allocation.

#![forbid(unsafe_code)]

use std::path::Path;
use std::{fmt, io};

use crate::Gray;

/// Why a model file could not be loaded.
#[derive(Debug)]
pub enum ModelError {
    /// The file could not be read.
    Io(io::Error),
    /// The file is too short for `what`, read from byte `offset` on (a length that claims
    /// more elements than the bytes left could hold counts as this too).
    Truncated { what: &'static str, offset: usize },
    /// Not a version-1 `shape_predictor` (the only version dlib writes).
    Version(i64),
    /// A number that dlib's serialization cannot have written (a bad control byte, a text-format
    /// float, a non-finite value).
    Encoding { what: &'static str, offset: usize },
    /// The parts do not fit together (sizes or indices that disagree).
    Inconsistent(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Io(e) => write!(f, "cannot read the shape model: {e}"),
            ModelError::Truncated { what, offset } => {
                write!(f, "the shape model file is truncated: {what} at byte {offset} does not fit in it")
            }
            ModelError::Version(v) => {
                write!(f, "not a dlib shape_predictor of version 1 (version {v} found)")
            }
            ModelError::Encoding { what, offset } => {
                write!(f, "the shape model file is corrupt: bad {what} at byte {offset}")
            }
            ModelError::Inconsistent(why) => write!(f, "the shape model file is inconsistent: {why}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ModelError {
    fn from(e: io::Error) -> Self {
        ModelError::Io(e)
    }
}

/// A face box in pixels, as dlib's `rectangle`: the shape model maps (0, 0) to the top-left
/// corner and (1, 1) to the bottom-right one (`right`, `bottom` are the last pixel, inclusive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

/// One split node: go left when `pixel[idx1] - pixel[idx2] > thresh`.
#[derive(Clone, Copy, Debug)]
struct Split {
    idx1: u32,
    idx2: u32,
    thresh: f32,
}

/// Where one tree's splits and leaves are (a tree of `n` splits has `n + 1` leaves).
#[derive(Clone, Copy, Debug)]
struct Tree {
    /// First split in `Cascade::splits`.
    split_start: usize,
    splits: usize,
    /// First leaf, counted in leaf vectors, in `ShapeModel::leaves`.
    leaf_start: usize,
}

/// One level of the cascade: its feature pixels (relative to the initial shape) and its trees.
#[derive(Debug)]
struct Cascade {
    /// Per feature pixel: the landmark it is anchored to, and its offset from it.
    anchors: Vec<u32>,
    deltas: Vec<[f32; 2]>,
    splits: Vec<Split>,
    trees: Vec<Tree>,
}

/// dlib's 68-point (or any n-point) shape predictor, immutable after [`ShapeModel::load`];
/// share it between threads behind an `Arc`.
#[derive(Debug)]
pub struct ShapeModel {
    /// The mean shape in the unit box: x0, y0, x1, y1, ...
    initial: Vec<f32>,
    cascades: Vec<Cascade>,
    /// Every leaf vector of every tree, `2 * num_parts` floats each, tree after tree.
    leaves: Vec<f32>,
}

impl ShapeModel {
    /// Reads a dlib `shape_predictor` file (`shape_predictor_68_face_landmarks.dat`).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::from_bytes(&std::fs::read(path)?)
    }

    /// Reads a dlib `shape_predictor` from its serialized bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        Parser { r: Reader { buf: bytes, pos: 0 } }.model()
    }

    /// How many landmarks the model places (68 for the iBUG 300-W layout).
    pub fn num_parts(&self) -> usize {
        self.initial.len() / 2
    }

    /// The landmarks of the face in `rect`, in pixels.
    pub fn predict(&self, img: Gray<'_>, rect: Rect) -> Vec<[f32; 2]> {
        let mut out = Vec::new();
        self.predict_into(img, rect, &mut out);
        out
    }

    /// [`ShapeModel::predict`] into `out` (cleared first), to reuse its allocation.
    pub fn predict_into(&self, img: Gray<'_>, rect: Rect, out: &mut Vec<[f32; 2]>) {
        let dim = self.initial.len();
        let unit = UnitBox::new(rect);
        let mut shape = self.initial.clone();
        let mut pixels = Vec::new();
        let mut chosen = Vec::new();
        for cascade in &self.cascades {
            let m = similarity(&self.initial, &shape);
            pixels.clear();
            pixels.extend(cascade.anchors.iter().zip(&cascade.deltas).map(|(&a, d)| {
                let a = a as usize;
                // dlib's order of float operations: the offset turned with the shape, then
                // the anchor added.
                let x = (m[0] * d[0] + m[1] * d[1]) + shape[2 * a];
                let y = (m[2] * d[0] + m[3] * d[1]) + shape[2 * a + 1];
                let (px, py) = unit.to_image(x, y);
                pixel(img, px, py)
            }));
            chosen.clear();
            chosen.extend(
                cascade
                    .trees
                    .iter()
                    .map(|t| t.leaf_start + leaf_of(&cascade.splits[t.split_start..][..t.splits], &pixels)),
            );
            self.add_leaves(&chosen, &mut shape);
        }
        out.clear();
        out.extend(shape.chunks_exact(2).map(|p| {
            let (x, y) = unit.to_image(p[0], p[1]);
            [x as f32, y as f32]
        }));
        debug_assert_eq!(out.len() * 2, dim);
    }

    /// Adds the chosen leaf vectors to `shape`, in order. First one load per cache line of
    /// every chosen leaf, none waiting for another, so the memory serves many at once (measured:
    /// a quarter less time than adding leaf after leaf, where each leaf's misses wait for the
    /// previous leaf's adds); then the adds, from the cache.
    fn add_leaves(&self, chosen: &[usize], shape: &mut [f32]) {
        let dim = shape.len();
        let mut touched = 0u32;
        for &leaf in chosen {
            let v = &self.leaves[leaf * dim..][..dim];
            let mut k = 0;
            while k < dim {
                touched |= v[k].to_bits();
                k += 16;
            }
            touched |= v[dim - 1].to_bits();
        }
        std::hint::black_box(touched);
        for &leaf in chosen {
            let v = &self.leaves[leaf * dim..][..dim];
            for (s, l) in shape.iter_mut().zip(v) {
                *s += l;
            }
        }
    }
}

/// The leaf a tree of `splits` (complete, breadth first) reaches for these feature pixels.
#[inline]
fn leaf_of(splits: &[Split], pixels: &[f32]) -> usize {
    let mut i = 0;
    while let Some(s) = splits.get(i) {
        // Indices were checked against the feature count at load.
        let diff = pixels[s.idx1 as usize] - pixels[s.idx2 as usize];
        i = if diff > s.thresh { 2 * i + 1 } else { 2 * i + 2 };
    }
    i - splits.len()
}

/// The pixel at the image point (x, y) rounded to the nearest pixel, as dlib reads it: 0
/// outside the image.
#[inline]
fn pixel(img: Gray<'_>, x: f64, y: f64) -> f32 {
    let (x, y) = ((x + 0.5).floor(), (y + 0.5).floor());
    // NaN and negative coordinates fail the comparison; the casts are exact below the bounds.
    if x >= 0.0 && y >= 0.0 && x < img.width() as f64 && y < img.height() as f64 {
        img.get(x as usize, y as usize).map_or(0.0, f32::from)
    } else {
        0.0
    }
}

/// The map from the unit box (where shapes live) to the image: (0, 0) to the box's top-left,
/// (1, 1) to its bottom-right corner.
#[derive(Clone, Copy)]
struct UnitBox {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl UnitBox {
    fn new(r: Rect) -> Self {
        let (left, top) = (f64::from(r.left), f64::from(r.top));
        UnitBox { left, top, width: f64::from(r.right) - left, height: f64::from(r.bottom) - top }
    }

    #[inline]
    fn to_image(self, x: f32, y: f32) -> (f64, f64) {
        (self.width * f64::from(x) + self.left, self.height * f64::from(y) + self.top)
    }
}

/// The linear part [m00, m01, m10, m11] of the least-squares similarity transform (rotation,
/// uniform scale, translation) from the shape `from` to the shape `to` (x0, y0, x1, ...), in
/// double precision and rounded to float, as dlib's `find_tform_between_shapes`. dlib takes it
/// from Umeyama's SVD; in two dimensions it has this closed form.
fn similarity(from: &[f32], to: &[f32]) -> [f32; 4] {
    let n = from.len() / 2;
    if n < 2 {
        return [1.0, 0.0, 0.0, 1.0];
    }
    let mean = |s: &[f32]| {
        let (mut x, mut y) = (0.0f64, 0.0f64);
        for p in s.chunks_exact(2) {
            x += f64::from(p[0]);
            y += f64::from(p[1]);
        }
        (x / n as f64, y / n as f64)
    };
    let (fx, fy) = mean(from);
    let (tx, ty) = mean(to);
    let (mut var, mut dot, mut cross) = (0.0f64, 0.0f64, 0.0f64);
    for (f, t) in from.chunks_exact(2).zip(to.chunks_exact(2)) {
        let (ax, ay) = (f64::from(f[0]) - fx, f64::from(f[1]) - fy);
        let (bx, by) = (f64::from(t[0]) - tx, f64::from(t[1]) - ty);
        var += ax * ax + ay * ay;
        dot += ax * bx + ay * by;
        cross += ax * by - ay * bx;
    }
    if var == 0.0 {
        return [1.0, 0.0, 0.0, 1.0];
    }
    let (a, b) = ((dot / var) as f32, (cross / var) as f32);
    [a, -b, b, a]
}

/// A cursor over the file's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ModelError> {
        let b = self.buf.get(self.pos..self.pos + n).ok_or(ModelError::Truncated { what, offset: self.pos })?;
        self.pos += n;
        Ok(b)
    }

    fn peek(&self, what: &'static str) -> Result<u8, ModelError> {
        self.buf.get(self.pos).copied().ok_or(ModelError::Truncated { what, offset: self.pos })
    }

    /// An integer of at most `max` bytes: (negative, magnitude). `signed` types keep the sign
    /// in bit 7 of the control byte and ignore bits 4-6; unsigned ones must have them clear.
    #[inline]
    fn int(&mut self, max: usize, signed: bool, what: &'static str) -> Result<(bool, u64), ModelError> {
        let at = self.pos;
        let c = self.peek(what)?;
        let (neg, size) = if signed { (c & 0x80 != 0, usize::from(c & 0x0F)) } else { (false, usize::from(c & 0x8F)) };
        if size == 0 || size > max {
            return Err(ModelError::Encoding { what, offset: at });
        }
        self.pos += 1;
        let bytes = self.take(size, what)?;
        let v = bytes.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        Ok((neg, v))
    }

    /// An `unsigned long` (8 bytes).
    fn ulong(&mut self, what: &'static str) -> Result<u64, ModelError> {
        Ok(self.int(8, false, what)?.1)
    }

    /// A `long` or `int64`.
    fn long(&mut self, what: &'static str) -> Result<i64, ModelError> {
        let (neg, v) = self.int(8, true, what)?;
        let v = v as i64;
        Ok(if neg { v.wrapping_neg() } else { v })
    }

    /// A float: int64 mantissa times two to the int16 exponent. Non-finite values (which dlib
    /// encodes with reserved exponents) are refused: no model has them.
    #[inline]
    fn float(&mut self, what: &'static str) -> Result<f32, ModelError> {
        match self.float_fast() {
            Some(v) => Ok(v),
            None => self.float_checked(what),
        }
    }

    /// [`Reader::float`] for the common case (a well-formed float with 12 bytes left), without
    /// error details: `None` leaves the position alone for `float_checked` to say what is
    /// wrong. The 65 MB of leaves are 16 million floats; this makes loading 10x faster.
    #[inline(always)]
    fn float_fast(&mut self) -> Option<f32> {
        let b: &[u8; 12] = self.buf.get(self.pos..self.pos + 12)?.try_into().ok()?;
        let c = b[0];
        let n = usize::from(c & 0x0F);
        if c & 0x70 != 0 || n == 0 || n > 8 {
            return None;
        }
        let raw = u64::from_le_bytes([b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]]);
        let m = if n == 8 { raw } else { raw & ((1u64 << (8 * n)) - 1) } as i64;
        let m = if c & 0x80 != 0 { m.wrapping_neg() } else { m };
        let (c, at) = (b[1 + n], 2 + n);
        let n2 = usize::from(c & 0x0F);
        if n2 == 0 || n2 > 2 {
            return None;
        }
        let e = u16::from_le_bytes([b[at], if n2 == 2 { b[at + 1] } else { 0 }]) as i16;
        let e = if c & 0x80 != 0 { e.wrapping_neg() } else { e };
        let v = if e >= 32000 { f32::NAN } else { ldexp(m, e) };
        if !v.is_finite() {
            return None;
        }
        self.pos += at + n2;
        Some(v)
    }

    /// [`Reader::float`], every step checked and reported.
    fn float_checked(&mut self, what: &'static str) -> Result<f32, ModelError> {
        let at = self.pos;
        // dlib's older text format starts with an ASCII character (bits 4-6 set).
        if self.peek(what)? & 0x70 != 0 {
            return Err(ModelError::Encoding { what, offset: at });
        }
        let mantissa = self.long(what)?;
        let (neg, e) = self.int(2, true, what)?;
        let e = e as u16 as i16;
        let e = if neg { e.wrapping_neg() } else { e };
        let v = if e >= 32000 { f32::NAN } else { ldexp(mantissa, e) };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(ModelError::Encoding { what, offset: at })
        }
    }

    /// A vector's length, refused when `min_bytes` per element cannot fit in the rest of the
    /// file (so a corrupt length cannot allocate more than the file's size).
    fn len(&mut self, min_bytes: usize, what: &'static str) -> Result<usize, ModelError> {
        let offset = self.pos;
        let n = self.ulong(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() / min_bytes => Ok(n),
            _ => Err(ModelError::Truncated { what, offset }),
        }
    }

    /// A float column matrix (`matrix<float,0,1>`): its row count, then its elements appended
    /// to `out`.
    fn column(&mut self, out: &mut Vec<f32>, what: &'static str) -> Result<usize, ModelError> {
        let offset = self.pos;
        let (mut rows, mut cols) = (self.long(what)?, self.long(what)?);
        if rows < 0 || cols < 0 {
            // The newer format writes both counts negated.
            (rows, cols) = (rows.wrapping_neg(), cols.wrapping_neg());
        }
        if cols != 1 || rows < 0 {
            return Err(ModelError::Inconsistent(format!(
                "{what} at byte {offset} is a {rows}x{cols} matrix, not a column"
            )));
        }
        let rows = match usize::try_from(rows) {
            Ok(n) if n <= self.remaining() / MIN_FLOAT_BYTES => n,
            _ => return Err(ModelError::Truncated { what, offset }),
        };
        out.reserve(rows);
        for _ in 0..rows {
            out.push(self.float(what)?);
        }
        Ok(rows)
    }
}

/// The fewest bytes a serialized float takes (two control bytes, one byte each).
const MIN_FLOAT_BYTES: usize = 4;
/// The fewest bytes a serialized split takes (two unsigned longs and a float).
const MIN_SPLIT_BYTES: usize = 2 + 2 + MIN_FLOAT_BYTES;
/// The fewest bytes a serialized column matrix takes (its two counts).
const MIN_COLUMN_BYTES: usize = 4;

/// `m * 2^e` rounded to float once, as C's `ldexpf((float)m, e)`.
fn ldexp(m: i64, e: i16) -> f32 {
    let x = m as f32;
    let e = i32::from(e);
    if x == 0.0 || e < -400 {
        // |x| < 2^64: anything scaled below 2^-336 is zero in float.
        return x * 0.0;
    }
    if e > 300 {
        return x * f32::INFINITY;
    }
    // Exact in double: a 24-bit mantissa times a power of two inside double's normal range.
    let scale = f64::from_bits(((e + 1023) as u64) << 52);
    (f64::from(x) * scale) as f32
}

struct Parser<'a> {
    r: Reader<'a>,
}

impl Parser<'_> {
    fn model(mut self) -> Result<ShapeModel, ModelError> {
        let (neg, v) = self.r.int(4, true, "the version")?;
        let version = v as u32 as i32;
        let version = if neg { version.wrapping_neg() } else { version };
        if version != 1 {
            return Err(ModelError::Version(version.into()));
        }
        let mut initial = Vec::new();
        let dim = self.r.column(&mut initial, "the initial shape")?;
        if dim == 0 || dim % 2 != 0 {
            return Err(ModelError::Inconsistent(format!(
                "the initial shape has {dim} coordinates, not an even number"
            )));
        }
        if dim / 2 > u32::MAX as usize {
            return Err(ModelError::Inconsistent("too many parts".into()));
        }

        let mut leaves = Vec::new();
        let n = self.r.len(8, "the forests")?;
        let mut forests = Vec::with_capacity(n);
        for c in 0..n {
            forests.push(self.forest(c, n, dim, &mut leaves)?);
        }

        self.cascade_count(forests.len(), "anchor indices")?;
        let mut anchors = Vec::with_capacity(forests.len());
        for c in 0..forests.len() {
            let n = self.r.len(2, "the anchor indices")?;
            let mut a = Vec::with_capacity(n);
            for _ in 0..n {
                let offset = self.r.pos;
                let i = self.r.ulong("an anchor index")?;
                if i >= (dim / 2) as u64 {
                    return Err(ModelError::Inconsistent(format!(
                        "cascade {c}: anchor index {i} at byte {offset}, but the shape has {} parts",
                        dim / 2
                    )));
                }
                a.push(i as u32);
            }
            anchors.push(a);
        }

        self.cascade_count(forests.len(), "pixel offsets")?;
        let mut cascades = Vec::with_capacity(forests.len());
        for (c, ((splits, trees), anchors)) in forests.into_iter().zip(anchors).enumerate() {
            let n = self.r.len(2 * MIN_FLOAT_BYTES, "the pixel offsets")?;
            if n != anchors.len() {
                return Err(ModelError::Inconsistent(format!(
                    "cascade {c}: {} anchor indices but {n} pixel offsets",
                    anchors.len()
                )));
            }
            let mut deltas = Vec::with_capacity(n);
            for _ in 0..n {
                deltas.push([self.r.float("a pixel offset")?, self.r.float("a pixel offset")?]);
            }
            if let Some(s) = splits.iter().find(|s| s.idx1.max(s.idx2) as usize >= n) {
                return Err(ModelError::Inconsistent(format!(
                    "cascade {c}: a split compares feature pixels {} and {}, but there are {n}",
                    s.idx1, s.idx2
                )));
            }
            cascades.push(Cascade { anchors, deltas, splits, trees });
        }
        Ok(ShapeModel { initial, cascades, leaves })
    }

    /// The number of cascades of a section (`what`, per cascade), which must be `cascades`.
    fn cascade_count(&mut self, cascades: usize, what: &'static str) -> Result<(), ModelError> {
        let n = self.r.len(1, what)?;
        if n != cascades {
            return Err(ModelError::Inconsistent(format!("{cascades} cascades of trees but {n} of {what}")));
        }
        Ok(())
    }

    /// Cascade `c` (of `cascades`): its trees' splits, and their leaves appended to `leaves`.
    fn forest(
        &mut self,
        c: usize,
        cascades: usize,
        dim: usize,
        leaves: &mut Vec<f32>,
    ) -> Result<(Vec<Split>, Vec<Tree>), ModelError> {
        let n = self.r.len(2, "a forest")?;
        let mut trees = Vec::with_capacity(n);
        let mut splits = Vec::new();
        for t in 0..n {
            let n_splits = self.r.len(MIN_SPLIT_BYTES, "a tree's splits")?;
            let split_start = splits.len();
            splits.reserve(n_splits);
            for _ in 0..n_splits {
                let offset = self.r.pos;
                let (idx1, idx2) = (self.r.ulong("a split")?, self.r.ulong("a split")?);
                let thresh = self.r.float("a split")?;
                let (Ok(idx1), Ok(idx2)) = (u32::try_from(idx1), u32::try_from(idx2)) else {
                    return Err(ModelError::Inconsistent(format!(
                        "a split at byte {offset} has a feature index too large"
                    )));
                };
                splits.push(Split { idx1, idx2, thresh });
            }
            let n_leaves = self.r.len(MIN_COLUMN_BYTES, "a tree's leaves")?;
            if n_leaves != n_splits + 1 {
                return Err(ModelError::Inconsistent(format!(
                    "cascade {c}, tree {t}: {n_splits} splits need {} leaves, not {n_leaves}",
                    n_splits + 1
                )));
            }
            let leaf_start = leaves.len() / dim;
            if c == 0 && t == 0 {
                // Room for every leaf at once: every tree is as large as the first one in any
                // real model. Huge pages for them, asked before they are written (the leaves
                // are read at random: a third less time per face with them, measured).
                let all = cascades.saturating_mul(n).saturating_mul(n_leaves).saturating_mul(dim);
                leaves.reserve(all.min(self.r.remaining() / MIN_FLOAT_BYTES));
                crate::ffi::advise_huge_pages(leaves.spare_capacity_mut());
            }
            for l in 0..n_leaves {
                let len = self.r.column(leaves, "a leaf")?;
                if len != dim {
                    return Err(ModelError::Inconsistent(format!(
                        "cascade {c}, tree {t}, leaf {l} has {len} values, the shape {dim}"
                    )));
                }
            }
            trees.push(Tree { split_start, splits: n_splits, leaf_start });
        }
        Ok((splits, trees))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dlib's integer encoding: a control byte (byte count | sign) and the magnitude's bytes.
    fn int(out: &mut Vec<u8>, v: i64) {
        let (neg, mut m) = (v < 0, v.unsigned_abs());
        let mut bytes = Vec::new();
        loop {
            bytes.push(m as u8);
            m >>= 8;
            if m == 0 {
                break;
            }
        }
        out.push(bytes.len() as u8 | if neg { 0x80 } else { 0 });
        out.extend(bytes);
    }

    /// A float as mantissa * 2^-16 (any mantissa/exponent pair is valid for the reader).
    fn float(out: &mut Vec<u8>, v: f32) {
        int(out, (v * 65536.0) as i64);
        int(out, -16);
    }

    fn column(out: &mut Vec<u8>, v: &[f32]) {
        int(out, -(v.len() as i64));
        int(out, -1);
        v.iter().for_each(|&x| float(out, x));
    }

    /// A two-part model: the initial shape (0.25, 0.25), (0.75, 0.75); one cascade of two
    /// one-split trees that compare the pixel at part 0 with the one at part 1.
    fn tiny(version: i64, split_idx: u64, leaves_per_tree: u64, anchor_cascades: i64) -> Vec<u8> {
        let mut f = Vec::new();
        int(&mut f, version);
        column(&mut f, &[0.25, 0.25, 0.75, 0.75]);
        int(&mut f, 1); // cascades
        int(&mut f, 2); // trees
        for t in 0..2 {
            int(&mut f, 1); // splits
            int(&mut f, 0);
            int(&mut f, split_idx as i64);
            float(&mut f, 10.0);
            int(&mut f, leaves_per_tree as i64);
            for l in 0..leaves_per_tree {
                // Left (part 0 brighter): move part 0 right by 0.25 per tree; right: move part 1 up.
                let d = if l == 0 { [0.125, 0.0, 0.0, 0.0] } else { [0.0, 0.0, 0.0, -0.125] };
                column(&mut f, &d.map(|x| x * (t + 1) as f32));
            }
        }
        int(&mut f, anchor_cascades);
        int(&mut f, 2);
        int(&mut f, 0);
        int(&mut f, 1);
        int(&mut f, 1); // delta cascades
        int(&mut f, 2);
        for _ in 0..4 {
            float(&mut f, 0.0);
        }
        f
    }

    #[test]
    fn a_tiny_model_predicts_by_its_trees() {
        let m = ShapeModel::from_bytes(&tiny(1, 1, 2, 1)).unwrap();
        assert_eq!(m.num_parts(), 2);
        // A 9x9 image, the box from (0, 0) to (8, 8): part 0 at (2, 2), part 1 at (6, 6).
        let mut px = vec![0u8; 81];
        px[2 * 9 + 2] = 200;
        let img = Gray::new(&px, 9, 9, 9).unwrap();
        let rect = Rect { left: 0.0, top: 0.0, right: 8.0, bottom: 8.0 };
        // 200 - 0 > 10: both trees take their left leaf: part 0 moves by (0.125 + 0.25) * 8.
        assert_eq!(m.predict(img, rect), vec![[5.0, 2.0], [6.0, 6.0]]);
        // Dark image: right leaves, part 1 moves up by 0.375 * 8.
        let dark = vec![0u8; 81];
        let img = Gray::new(&dark, 9, 9, 9).unwrap();
        assert_eq!(m.predict(img, rect), vec![[2.0, 2.0], [6.0, 3.0]]);
        // A box far outside the image reads zeros and does not panic, nor does a NaN box.
        let far = Rect { left: -1e9, top: 1e9, right: -1e9 + 8.0, bottom: 1e9 + 8.0 };
        assert_eq!(m.predict(img, far).len(), 2);
        let nan = Rect { left: f32::NAN, top: 0.0, right: 8.0, bottom: f32::INFINITY };
        assert_eq!(m.predict(img, nan).len(), 2);
        assert_eq!(m.predict(Gray::new(&[], 0, 0, 0).unwrap(), rect).len(), 2, "an empty image");
    }

    #[test]
    fn every_prefix_of_a_model_is_truncated() {
        let f = tiny(1, 1, 2, 1);
        for n in 0..f.len() {
            match ShapeModel::from_bytes(&f[..n]) {
                Err(ModelError::Truncated { .. }) => {}
                other => panic!("prefix of {n} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_version_and_inconsistent_models_are_refused() {
        assert!(matches!(ShapeModel::from_bytes(&tiny(2, 1, 2, 1)), Err(ModelError::Version(2))));
        assert!(matches!(ShapeModel::from_bytes(&tiny(-1, 1, 2, 1)), Err(ModelError::Version(-1))));
        let e = ShapeModel::from_bytes(&tiny(1, 2, 2, 1)).unwrap_err();
        assert!(matches!(&e, ModelError::Inconsistent(w) if w.contains("feature pixels 0 and 2")), "{e}");
        let e = ShapeModel::from_bytes(&tiny(1, 1, 3, 1)).unwrap_err();
        assert!(matches!(&e, ModelError::Inconsistent(w) if w.contains("need 2 leaves")), "{e}");
        let e = ShapeModel::from_bytes(&tiny(1, 1, 2, 2)).unwrap_err();
        assert!(matches!(&e, ModelError::Inconsistent(w) if w.contains("1 cascades of trees but 2 of anchor")), "{e}");
    }

    #[test]
    fn absurd_lengths_allocate_nothing() {
        let mut f = Vec::new();
        int(&mut f, 1);
        int(&mut f, -(1 << 60));
        int(&mut f, -1);
        assert!(matches!(ShapeModel::from_bytes(&f), Err(ModelError::Truncated { what: "the initial shape", .. })));
        let mut f = Vec::new();
        int(&mut f, 1);
        column(&mut f, &[0.5, 0.5]);
        int(&mut f, i64::MAX); // cascades
        assert!(matches!(ShapeModel::from_bytes(&f), Err(ModelError::Truncated { what: "the forests", .. })));
    }

    #[test]
    fn bad_numbers_are_encoding_errors() {
        // A 9-byte integer, a text float, an infinite float.
        let mut f = vec![0x09];
        f.extend([0; 9]);
        assert!(matches!(ShapeModel::from_bytes(&f), Err(ModelError::Encoding { offset: 0, .. })));
        let mut f = Vec::new();
        int(&mut f, 1);
        int(&mut f, -2);
        int(&mut f, -1);
        let at = f.len();
        f.extend(b"0.5 0.5 ");
        assert!(matches!(ShapeModel::from_bytes(&f), Err(ModelError::Encoding { offset, .. }) if offset == at));
        f.truncate(at);
        int(&mut f, 1);
        int(&mut f, 32000);
        float(&mut f, 0.5);
        assert!(matches!(ShapeModel::from_bytes(&f), Err(ModelError::Encoding { offset, .. }) if offset == at));
    }

    #[test]
    fn random_bytes_are_an_error_not_a_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in [0, 1, 7, 100, 4096] {
            for _ in 0..50 {
                let f: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                assert!(ShapeModel::from_bytes(&f).is_err());
            }
        }
    }

    #[test]
    fn the_fast_float_path_reads_what_the_checked_one_does() {
        let mut state = 0x0123_4567_89AB_CDEFu64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let m = (state as i64) >> (state % 64);
            let e = ((state >> 20) % 400) as i64 - 200;
            let mut f = Vec::new();
            int(&mut f, m);
            int(&mut f, e);
            f.extend([0xFF; 12]);
            let (mut fast, mut checked) = (Reader { buf: &f, pos: 0 }, Reader { buf: &f, pos: 0 });
            let a = fast.float_fast();
            let b = checked.float_checked("a float").ok();
            assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "m {m} e {e}");
            if a.is_some() {
                assert_eq!(fast.pos, checked.pos);
            }
        }
    }

    #[test]
    fn ldexp_is_ldexpf() {
        assert_eq!(ldexp(3, -1), 1.5);
        assert_eq!(ldexp(-5, 2), -20.0);
        assert_eq!(ldexp(0, 100), 0.0);
        assert_eq!(ldexp(1, -149), f32::from_bits(1), "the smallest subnormal");
        assert_eq!(ldexp(1, -151), 0.0, "below half of it");
        assert_eq!(ldexp(3, -151), f32::from_bits(1), "rounded once, to nearest");
        assert_eq!(ldexp(1, 128), f32::INFINITY);
        assert_eq!(ldexp(i64::MAX, -63), 1.0, "the mantissa is rounded to float first");
        assert_eq!(ldexp(1, i16::MIN), 0.0);
        assert_eq!(ldexp(-1, 31999), f32::NEG_INFINITY);
    }

    #[test]
    fn similarity_recovers_a_rotation_and_scale() {
        let from = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        // Turned by 90 degrees, scaled by 2, moved.
        let to: Vec<f32> = from.chunks(2).flat_map(|p| [5.0 - 2.0 * p[1], 1.0 + 2.0 * p[0]]).collect();
        assert_eq!(similarity(&from, &to), [0.0, -2.0, 2.0, 0.0]);
        assert_eq!(similarity(&from[..2], &to[..2]), [1.0, 0.0, 0.0, 1.0], "one point: identity");
        assert_eq!(similarity(&[1.0; 4], &to[..4]), [1.0, 0.0, 0.0, 1.0], "no spread: identity");
    }
}
