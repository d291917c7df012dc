//! The face tests' and benchmark's data: the shape model (`make models`) and the annotated
//! photos (`make face-data`), found from the workspace root. Missing data is a failure that
//! says how to get it, never a silent skip.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root (the face crate is one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// dlib's 68-point shape predictor.
pub fn model_path() -> PathBuf {
    let p = root().join("models/shape_predictor_68_face_landmarks.dat");
    assert!(p.is_file(), "{} is missing: run make models", p.display());
    p
}

/// A grey picture, row after row (stride = width).
pub struct Picture {
    pub name: String,
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl Picture {
    pub fn gray(&self) -> face::Gray<'_> {
        face::Gray::new(&self.pixels, self.width, self.height, self.width).expect("a whole picture")
    }
}

/// One of tests/fixtures/faces, decoded to grey.
pub fn photo(name: &str) -> Picture {
    let p = root().join("tests/fixtures/faces").join(name);
    assert!(p.is_file(), "{} is missing: run make face-data", p.display());
    let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_luma8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    Picture { name: name.to_owned(), pixels: img.into_raw(), width, height }
}

/// Every test photo.
pub const PHOTOS: [&str; 4] = ["breakingbad.jpg", "einstein.jpg", "lenna.png", "takeo.ppm"];

/// The 68 annotated points of a photo (its `.pts` file, read by `face::landmarks::parse_pts`:
/// 0-based pixels), if it has one.
pub fn annotation(name: &str) -> Option<face::Landmarks> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let text = std::fs::read_to_string(root().join("tests/fixtures/faces").join(format!("{stem}.pts"))).ok()?;
    Some(face::landmarks::parse_pts(&text).unwrap_or_else(|e| panic!("{stem}.pts: {e}")))
}
