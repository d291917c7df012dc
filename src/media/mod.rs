//! `media`: the only module that touches ffmpeg. Decode once, filter, encode once, per
//! published track, on worker threads off the async runtime (media-pipeline issue; being
//! built). Today: the RTP payload formats ([`rtp`]).

pub mod codec;
pub mod mux;
pub mod pipeline;
pub mod recorder;
pub mod rtp;
