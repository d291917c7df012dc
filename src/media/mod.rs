//! `media`: the only module that touches ffmpeg. Per published track, on threads off the
//! async runtime: decode once, filter, encode once ([`pipeline`]), and record the raw and
//! processed streams without re-encoding ([`recorder`], [`mux`]). Plus the RTP payload formats
//! ([`rtp`]) and the codecs ([`codec`]).
//!
//! Also the two names every layer above shares: a track's [`Kind`] (audio or video) and
//! [`ToHub`], what a track's media threads tell the hub.

pub mod clock;
pub mod codec;
pub mod group;
pub mod mux;
pub mod pipeline;
pub mod recorder;
pub mod rtp;

use filters::ChainEvent;

/// Media kind of a track: audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// What a track's media threads (its pipeline worker, its recorder) tell the hub.
#[derive(Debug)]
pub enum ToHub {
    /// A filter event: a report, a message to send, a ping request, a panic, an overrun.
    Filter(ChainEvent),
    /// A filter list could not be applied (the previous one stays).
    Rejected(String),
    /// The track's recorder opened or closed a file, failed, or measured a second.
    Recording(recorder::RecEvent),
}
