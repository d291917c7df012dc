//! Face analysis for exphub (work in progress): the grey image view every step reads
//! ([`Gray`]), dlib's detector and shape predictor through a C ABI ([`ffi`]), and the
//! 68-point landmark model evaluated in Rust ([`ert`]).
pub mod ert;
pub mod ffi;
mod gray;

pub use gray::{BadGray, Gray};
