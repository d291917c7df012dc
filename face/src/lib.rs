//! Face analysis for exphub (work in progress).
pub mod ffi;
