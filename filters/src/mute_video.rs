//! `MUTE_VIDEO`: a black picture of the source's own resolution (Y 16, U/V 128).
//!
//! SynthARium swaps in a 320x240 image while muted, which makes the encoder renegotiate the
//! resolution twice per mute; keeping the size avoids that. Hidden from the catalogue; the
//! pipeline uses it for muting and it is valid in filter lists.

use crate::{
    video, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, VideoFilter, VideoFrame, BLACK_Y,
    NEUTRAL_UV,
};

pub const INFO: FilterInfo = FilterInfo {
    name: "MUTE_VIDEO",
    listing: Listing::Hidden,
    channel: Channel::Video,
    group: None,
    description: "A black picture of the source's size.",
    params: &[],
    video: Some(video::<MuteVideo>),
    audio: None,
};

pub struct MuteVideo;

impl VideoFilter for MuteVideo {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(MuteVideo)
    }

    fn process(&mut self, frame: &mut VideoFrame, _: &mut FilterContext) {
        frame.fill(BLACK_Y, NEUTRAL_UV, NEUTRAL_UV);
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }

    fn overwrites_chroma(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, gradient};
    use crate::{U, V, Y};

    #[test]
    fn blacks_out_every_plane_keeping_the_size() {
        let mut f = MuteVideo::new(&INFO.default_params()).unwrap();
        let run = testing::run(&mut f, testing::video_frames(1, |_| gradient(33, 17)));
        let out = &run.frames[0];
        assert_eq!((out.width(), out.height()), (33, 17));
        for p in [Y, U, V] {
            for r in 0..out.plane_height(p) {
                let want = if p == Y { BLACK_Y } else { NEUTRAL_UV };
                assert!(out.row(p, r).iter().all(|&v| v == want), "plane {p} row {r}");
            }
        }
    }
}
