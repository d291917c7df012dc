//! The SDK proper: frames, the filter traits, parameter schemas, the context and drawing
//! helpers. Everything here is re-exported at the crate root.

pub mod context;
pub mod draw;
pub mod face;
pub mod filter;
pub mod frame;
pub mod group;
pub mod oasis;
pub mod params;
pub mod simd;
pub mod sync;
