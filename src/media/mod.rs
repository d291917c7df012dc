//! `media`: the only module that touches ffmpeg. Per published track, on threads off the
//! async runtime: decode once, filter, encode once ([`pipeline`]), and record the raw and
//! processed streams without re-encoding ([`recorder`], [`mux`]). Plus the RTP payload formats
//! ([`rtp`]) and the codecs ([`codec`]).

pub mod codec;
pub mod mux;
pub mod pipeline;
pub mod recorder;
pub mod rtp;
