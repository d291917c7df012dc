//! Drawing straight into I420 planes: filled rectangles and text in a built-in 5x7 bitmap font
//! (ASCII letters, digits and common punctuation), scaled by an integer factor, with an optional
//! dark outline so it reads on any background. No font crate and no RGB conversion.

use super::frame::{VideoFrame, BLACK_Y, NEUTRAL_UV, U, V, WHITE_Y, Y};

/// Glyph width in font pixels.
pub const GLYPH_W: usize = 5;
/// Cap height in font pixels (letters and digits sit on rows 0..7).
pub const GLYPH_H: usize = 7;
/// Rows of a glyph cell including two descender rows (g, j, p, q, y, ',').
pub const CELL_H: usize = 9;
/// Horizontal advance per character in font pixels (glyph + one blank column).
pub const ADVANCE: usize = 6;

/// How text is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextStyle {
    /// Screen pixels per font pixel (1 = 5x7 glyphs).
    pub scale: usize,
    /// Luma of the glyphs.
    pub y: u8,
    /// Chroma of the glyphs (128/128 = grey, no colour).
    pub u: u8,
    pub v: u8,
    /// Luma of a dark outline around each glyph, `None` for none. The outline is
    /// `max(1, scale / 2)` screen pixels wide with neutral chroma.
    pub outline: Option<u8>,
}

impl TextStyle {
    /// White text with a black outline, `scale` screen pixels per font pixel.
    pub const fn white(scale: usize) -> Self {
        TextStyle { scale, y: WHITE_Y, u: NEUTRAL_UV, v: NEUTRAL_UV, outline: Some(BLACK_Y) }
    }

    /// Green text (RGB 0, 255, 0, as SynthARium's overlays) with a black outline.
    pub const fn green(scale: usize) -> Self {
        TextStyle { scale, y: 145, u: 54, v: 34, outline: Some(BLACK_Y) }
    }

    /// A scale that reads well on a frame of this height (3 at 480 lines, 4 at 720).
    pub fn scale_for(height: usize) -> usize {
        (height / 160).max(1)
    }
}

/// Width and height in screen pixels of `text` (one line) at `scale`, outline excluded. The
/// height includes the descender rows.
pub fn text_size(text: &str, scale: usize) -> (usize, usize) {
    let n = text.chars().count();
    let w = if n == 0 { 0 } else { (n * ADVANCE - 1) * scale };
    (w, CELL_H * scale)
}

/// Fills the rectangle `[x, x+w) x [y, y+h)` (luma coordinates, clipped to the frame) with
/// `(luma, u, v)`. Chroma covers every chroma sample the rectangle touches.
#[allow(clippy::too_many_arguments)]
pub fn fill_rect(frame: &mut VideoFrame, x: isize, y: isize, w: usize, h: usize, luma: u8, u: u8, v: u8) {
    let (fw, fh) = (frame.width() as isize, frame.height() as isize);
    let (x0, y0) = (x.max(0), y.max(0));
    let (x1, y1) = ((x + w as isize).min(fw), (y + h as isize).min(fh));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
    for r in y0..y1 {
        frame.row_mut(Y, r)[x0..x1].fill(luma);
    }
    let (cx0, cy0, cx1, cy1) = (x0 / 2, y0 / 2, x1.div_ceil(2), y1.div_ceil(2));
    for r in cy0..cy1 {
        frame.row_mut(U, r)[cx0..cx1].fill(u);
        frame.row_mut(V, r)[cx0..cx1].fill(v);
    }
}

/// Draws one line of `text` with its top-left corner at `(x, y)` (may be partly or wholly
/// outside the frame: it is clipped). Characters the font lacks are drawn as `?`.
pub fn draw_text(frame: &mut VideoFrame, x: isize, y: isize, text: &str, style: TextStyle) {
    let s = style.scale.max(1);
    // Outline first, under every glyph, so neighbouring glyphs' outlines never cover a glyph.
    if let Some(dark) = style.outline {
        let o = (s / 2).max(1) as isize;
        for_each_dot(text, |col, row| {
            let (px, py) = (x + (col * s) as isize, y + (row * s) as isize);
            fill_rect(frame, px - o, py - o, s + 2 * o as usize, s + 2 * o as usize, dark, NEUTRAL_UV, NEUTRAL_UV);
        });
    }
    for_each_dot(text, |col, row| {
        fill_rect(frame, x + (col * s) as isize, y + (row * s) as isize, s, s, style.y, style.u, style.v);
    });
}

/// Calls `f(column, row)` in font pixels for every set dot of `text`.
fn for_each_dot(text: &str, mut f: impl FnMut(usize, usize)) {
    for (i, c) in text.chars().enumerate() {
        let g = glyph(c);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                    f(i * ADVANCE + col, row);
                }
            }
        }
    }
}

/// Builds a glyph from rows of `#` (set) and anything else (clear), top row first.
const fn g(rows: &[&str]) -> [u8; CELL_H] {
    let mut out = [0u8; CELL_H];
    let mut r = 0;
    while r < rows.len() {
        let b = rows[r].as_bytes();
        let mut c = 0;
        while c < b.len() && c < GLYPH_W {
            if b[c] == b'#' {
                out[r] |= 1 << (GLYPH_W - 1 - c);
            }
            c += 1;
        }
        r += 1;
    }
    out
}

/// The bitmap of `c`: 9 rows of 5 bits (most significant bit = leftmost column).
pub fn glyph(c: char) -> [u8; CELL_H] {
    match c {
        ' ' => [0; CELL_H],
        '0' => const { g(&[".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."]) },
        '1' => const { g(&["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."]) },
        '2' => const { g(&[".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"]) },
        '3' => const { g(&["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."]) },
        '4' => const { g(&["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."]) },
        '5' => const { g(&["#####", "#....", "####.", "....#", "....#", "#...#", ".###."]) },
        '6' => const { g(&["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."]) },
        '7' => const { g(&["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."]) },
        '8' => const { g(&[".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."]) },
        '9' => const { g(&[".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."]) },
        'A' => const { g(&[".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"]) },
        'B' => const { g(&["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."]) },
        'C' => const { g(&[".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."]) },
        'D' => const { g(&["###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."]) },
        'E' => const { g(&["#####", "#....", "#....", "####.", "#....", "#....", "#####"]) },
        'F' => const { g(&["#####", "#....", "#....", "####.", "#....", "#....", "#...."]) },
        'G' => const { g(&[".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"]) },
        'H' => const { g(&["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"]) },
        'I' => const { g(&[".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."]) },
        'J' => const { g(&["..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."]) },
        'K' => const { g(&["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"]) },
        'L' => const { g(&["#....", "#....", "#....", "#....", "#....", "#....", "#####"]) },
        'M' => const { g(&["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"]) },
        'N' => const { g(&["#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"]) },
        'O' => const { g(&[".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."]) },
        'P' => const { g(&["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."]) },
        'Q' => const { g(&[".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"]) },
        'R' => const { g(&["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"]) },
        'S' => const { g(&[".####", "#....", "#....", ".###.", "....#", "....#", "####."]) },
        'T' => const { g(&["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."]) },
        'U' => const { g(&["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."]) },
        'V' => const { g(&["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."]) },
        'W' => const { g(&["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."]) },
        'X' => const { g(&["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"]) },
        'Y' => const { g(&["#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."]) },
        'Z' => const { g(&["#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"]) },
        'a' => const { g(&[".....", ".....", ".###.", "....#", ".####", "#...#", ".####"]) },
        'b' => const { g(&["#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."]) },
        'c' => const { g(&[".....", ".....", ".###.", "#....", "#....", "#...#", ".###."]) },
        'd' => const { g(&["....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"]) },
        'e' => const { g(&[".....", ".....", ".###.", "#...#", "#####", "#....", ".###."]) },
        'f' => const { g(&["..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."]) },
        'g' => const { g(&[".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."]) },
        'h' => const { g(&["#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"]) },
        'i' => const { g(&["..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."]) },
        'j' => const { g(&["...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."]) },
        'k' => const { g(&["#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."]) },
        'l' => const { g(&[".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."]) },
        'm' => const { g(&[".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"]) },
        'n' => const { g(&[".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"]) },
        'o' => const { g(&[".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."]) },
        'p' => const { g(&[".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."]) },
        'q' => const { g(&[".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"]) },
        'r' => const { g(&[".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."]) },
        's' => const { g(&[".....", ".....", ".####", "#....", ".###.", "....#", "####."]) },
        't' => const { g(&[".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."]) },
        'u' => const { g(&[".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"]) },
        'v' => const { g(&[".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."]) },
        'w' => const { g(&[".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."]) },
        'x' => const { g(&[".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"]) },
        'y' => const { g(&[".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."]) },
        'z' => const { g(&[".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"]) },
        '.' => const { g(&[".....", ".....", ".....", ".....", ".....", ".##..", ".##.."]) },
        ',' => const { g(&[".....", ".....", ".....", ".....", ".##..", ".##..", "..#..", ".#..."]) },
        ':' => const { g(&[".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."]) },
        '-' => const { g(&[".....", ".....", ".....", "#####", ".....", ".....", "....."]) },
        '+' => const { g(&[".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."]) },
        '=' => const { g(&[".....", ".....", "#####", ".....", "#####", ".....", "....."]) },
        '/' => const { g(&[".....", "....#", "...#.", "..#..", ".#...", "#....", "....."]) },
        '%' => const { g(&["##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"]) },
        '!' => const { g(&["..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."]) },
        '(' => const { g(&["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."]) },
        ')' => const { g(&[".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."]) },
        '\'' => const { g(&["..#..", "..#..", ".#...", ".....", ".....", ".....", "....."]) },
        '_' => const { g(&[".....", ".....", ".....", ".....", ".....", ".....", "#####"]) },
        '#' => const { g(&[".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."]) },
        _ => const { g(&[".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."]) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_render_their_art() {
        assert_eq!(glyph('1')[0], 0b00100);
        assert_eq!(glyph('1')[6], 0b01110);
        assert_eq!(glyph('g')[8], 0b01110, "descender row");
        assert_eq!(glyph('~'), glyph('?'), "unknown characters draw as ?");
        // Every printable ASCII letter and digit has its own glyph.
        let alnum: Vec<char> = ('0'..='9').chain('A'..='Z').chain('a'..='z').collect();
        for c in &alnum {
            assert_ne!(glyph(*c), glyph('?'), "{c}");
            assert!(glyph(*c).iter().any(|&r| r != 0), "{c}");
        }
    }

    #[test]
    fn text_is_drawn_white_with_a_dark_outline_and_clipped() {
        let mut f = VideoFrame::new(64, 32);
        f.fill(100, 90, 160);
        draw_text(&mut f, 4, 4, "1", TextStyle::white(2));
        // '1' row 0 is "..#..": font pixel (2, 0) -> screen (4+4, 4) .. (4+6, 6).
        assert_eq!(f.at(Y, 8, 4), WHITE_Y);
        assert_eq!(f.at(Y, 9, 5), WHITE_Y);
        // Just left of it, inside the outline, is dark; far away is untouched.
        assert_eq!(f.at(Y, 7, 4), BLACK_Y);
        assert_eq!(f.at(Y, 40, 20), 100);
        assert_eq!(f.at(U, 4, 2), NEUTRAL_UV, "chroma under the glyph is neutral");
        assert_eq!(f.at(U, 30, 10), 90);
        // Partly outside: no panic, the visible part is drawn.
        draw_text(&mut f, -5, 28, "88", TextStyle::white(1));
        draw_text(&mut f, 1000, 1000, "x", TextStyle::white(3));
        assert_eq!(text_size("12", 2), (22, 18));
    }
}
