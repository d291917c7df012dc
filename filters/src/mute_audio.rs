//! `MUTE_AUDIO`: silence, keeping the source's channels and frame length (SynthARium switched to
//! mono, which the encoder then had to handle). Hidden from the catalogue.

use crate::{audio, AudioFilter, AudioFrame, Channel, FilterContext, FilterInfo, Listing, ParamError, Params};

pub const INFO: FilterInfo = FilterInfo {
    name: "MUTE_AUDIO",
    listing: Listing::Hidden,
    channel: Channel::Audio,
    group: None,
    description: "Silence.",
    params: &[],
    video: None,
    audio: Some(audio::<MuteAudio>),
};

pub struct MuteAudio;

impl AudioFilter for MuteAudio {
    fn new(_: &Params) -> Result<Self, ParamError> {
        Ok(MuteAudio)
    }

    fn process(&mut self, frame: &mut AudioFrame, _: &mut FilterContext) {
        frame.samples_mut().fill(0.0);
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn silences_keeping_channels_and_length() {
        let mut f = MuteAudio::new(&INFO.default_params()).unwrap();
        let run = testing::run(&mut f, testing::sine_frames(440.0, 0.8, 2, 3));
        for fr in &run.frames {
            assert_eq!((fr.channels(), fr.frames()), (2, 960));
            assert!(fr.samples().iter().all(|&s| s == 0.0));
        }
    }
}
