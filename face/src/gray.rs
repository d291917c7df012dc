//! The image every face-analysis step reads: a borrowed 8-bit grey view (the Y plane of an I420
//! frame), never copied.

#![forbid(unsafe_code)]

use std::fmt;

/// A borrowed 8-bit grey image: `stride` bytes per row, `height` rows. Built only through
/// [`Gray::new`], which checks that the slice holds the whole image, so every pixel of
/// `width` x `height` can be read.
#[derive(Clone, Copy)]
pub struct Gray<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
}

/// The slice given to [`Gray::new`] does not hold the image it is said to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadGray {
    pub len: usize,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl fmt::Display for BadGray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {}x{} grey image with a stride of {} does not fit in {} bytes (or the stride is below the width)",
            self.width, self.height, self.stride, self.len
        )
    }
}

impl std::error::Error for BadGray {}

impl<'a> Gray<'a> {
    /// The image of `width` x `height` pixels whose row `y` starts at `data[y * stride]`.
    pub fn new(data: &'a [u8], width: usize, height: usize, stride: usize) -> Result<Self, BadGray> {
        let bad = BadGray { len: data.len(), width, height, stride };
        if stride < width {
            return Err(bad);
        }
        let need = match height {
            0 => Some(0),
            h => (h - 1).checked_mul(stride).and_then(|n| n.checked_add(width)),
        };
        match need {
            Some(n) if n <= data.len() => Ok(Gray { data, width, height, stride }),
            _ => Err(bad),
        }
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The pixel at (x, y), if it is inside the image.
    #[inline]
    pub fn get(&self, x: usize, y: usize) -> Option<u8> {
        if x < self.width && y < self.height {
            self.data.get(y * self.stride + x).copied()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_slice_against_the_geometry() {
        let buf = [0u8; 11];
        assert!(Gray::new(&buf, 3, 3, 4).is_ok(), "the last row needs only its width");
        assert!(Gray::new(&buf[..10], 3, 3, 4).is_err(), "one byte short");
        assert!(Gray::new(&buf, 3, 4, 4).is_err(), "a row too many");
        assert!(Gray::new(&buf, 5, 1, 4).is_err(), "stride below the width");
        assert!(Gray::new(&buf, 1, usize::MAX, usize::MAX).is_err(), "overflow is an error");
        assert!(Gray::new(&[], 0, 0, 0).is_ok());
    }

    #[test]
    fn get_is_none_outside() {
        let buf = [1u8, 2, 9, 3, 4];
        let g = Gray::new(&buf, 2, 2, 3).unwrap();
        assert_eq!(g.get(1, 1), Some(4));
        assert_eq!(g.get(2, 0), None, "the stride's padding is not a pixel");
        assert_eq!(g.get(0, 2), None);
    }
}
