//! `FAULT_TEST`: panics on its `after`-th frame. Hidden from the catalogue; it exists so that
//! the server's fault handling (a failing filter is reported and bypassed, the stream goes on)
//! can be tested end to end, and so that filter developers can see what happens.

use crate::{video, Channel, FilterContext, FilterInfo, Listing, Param, ParamError, Params, VideoFilter, VideoFrame};

pub const INFO: FilterInfo = FilterInfo {
    name: "FAULT_TEST",
    listing: Listing::Hidden,
    channel: Channel::Video,
    group: None,
    description: "Panics after `after` frames (for testing fault handling).",
    params: &[Param::Number { name: "after", min: 0.0, max: 10_000.0, step: 1.0, default: 10.0 }],
    video: Some(video::<FaultTest>),
    audio: None,
};

pub struct FaultTest {
    left: u64,
}

impl VideoFilter for FaultTest {
    fn new(p: &Params) -> Result<Self, ParamError> {
        Ok(FaultTest { left: p.int("after").max(0) as u64 })
    }

    fn process(&mut self, _: &mut VideoFrame, _: &mut FilterContext) {
        if self.left == 0 {
            panic!("FAULT_TEST: deliberate failure");
        }
        self.left -= 1;
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use crate::{Budget, ChainEvent, FilterSpec, VideoChain};
    use serde_json::json;

    #[test]
    fn the_chain_bypasses_it_after_its_panic() {
        let mut chain = VideoChain::new(Budget::VIDEO);
        chain
            .apply(&[
                FilterSpec::new("f", "FAULT_TEST", json!({"after": 2})),
                FilterSpec::new("m", "MIRROR", json!({})),
            ])
            .unwrap();
        let mut frame = crate::testing::gradient(16, 8);
        let mut panics = 0;
        for _ in 0..5 {
            chain.process(&mut frame);
            panics += chain.drain_events().filter(|e| matches!(e, ChainEvent::Panicked { .. })).count();
        }
        assert_eq!(panics, 1, "reported once, then bypassed");
    }
}
