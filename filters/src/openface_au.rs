//! `OPENFACE_AU`: facial action units per analysed frame, drawn on the video and reported as
//! filter data, as SynthARium's filter of the same name (which sends each frame to an external
//! OpenFace process). Here the SDK's face analysis ([`crate::face`]) runs in the pipeline at
//! 10 Hz: the face is found and followed, its 68 landmarks fitted, and AU06 (cheek raiser) and
//! AU12 (lip-corner puller) estimated on OpenFace's 0–5 scale against the person's own neutral
//! face (see `face::au` for how, and what the estimates are).
//!
//! Drawn on every frame, green with a black outline from (50, 50), one line per 50 px at 480
//! lines (scaled with the height): `AU06: <x>`, `AU12: <x>` (`-` before the first face) and the
//! state (`Face 0.93` with the detector's confidence, or `No face`).
//!
//! Reported (`GET_FILTERS_DATA`), as SynthARium's `{"data": <OpenFace's result>}`:
//! `{"data": {"roi": {"x", "y", "width", "height"}, "intensity": {"AU06", "AU12"},
//! "presence": {"AU06", "AU12"}, "confidence", "success", "pose": {"Tx", "Ty", "Tz", "Rx", "Ry",
//! "Rz"}}}`; intensities and presence are `"-"` while no face is seen, as OpenFace reports them.
//! SynthARium's other AU keys are not estimated and not sent.

use crate::draw::{draw_text, TextStyle};
use crate::face::{Face, FaceStream, DEFAULT_RATE_HZ};
use crate::{video, Channel, FilterContext, FilterInfo, Listing, ParamError, Params, VideoFilter, VideoFrame};
use serde_json::{json, Value};

pub const INFO: FilterInfo = FilterInfo {
    name: "OPENFACE_AU",
    listing: Listing::Session,
    channel: Channel::Video,
    group: None,
    description: "Estimates facial action units AU06 and AU12 (10 times a second), shows and reports them.",
    params: &[],
    video: Some(video::<OpenFaceAu>),
    audio: None,
};

pub struct OpenFaceAu {
    stream: FaceStream,
    lines: [String; 3],
}

/// The reported data of one analysis.
pub fn report(face: &Face) -> Value {
    let [x, y, w, h] = face.bbox.map(|v| v.round() as i64);
    let roi = json!({ "x": x, "y": y, "width": w, "height": h });
    if !face.success {
        return json!({
            "roi": roi,
            "intensity": { "AU06": "-", "AU12": "-" },
            "presence": { "AU06": "-", "AU12": "-" },
            "confidence": 0.0,
            "success": false,
        });
    }
    let r2 = |v: f32| (v as f64 * 100.0).round() / 100.0;
    let p = &face.pose;
    json!({
        "roi": roi,
        "intensity": { "AU06": r2(face.au.au06_r), "AU12": r2(face.au.au12_r) },
        "presence": { "AU06": u8::from(face.au.au06_c), "AU12": u8::from(face.au.au12_c) },
        "confidence": r2(face.confidence),
        "success": true,
        "pose": {
            "Tx": r2(p.tx), "Ty": r2(p.ty), "Tz": r2(p.tz),
            "Rx": (p.rx as f64 * 1000.0).round() / 1000.0,
            "Ry": (p.ry as f64 * 1000.0).round() / 1000.0,
            "Rz": (p.rz as f64 * 1000.0).round() / 1000.0,
        },
    })
}

/// The three overlay lines for this analysis.
fn set_lines(lines: &mut [String; 3], face: &Face) {
    use std::fmt::Write;
    for l in lines.iter_mut() {
        l.clear();
    }
    if face.success {
        let _ = write!(lines[0], "AU06: {:.2}", face.au.au06_r);
        let _ = write!(lines[1], "AU12: {:.2}", face.au.au12_r);
        let _ = write!(lines[2], "Face {:.2}", face.confidence);
    } else {
        lines[0].push_str("AU06: -");
        lines[1].push_str("AU12: -");
        lines[2].push_str("No face");
    }
}

impl VideoFilter for OpenFaceAu {
    fn new(_: &Params) -> Result<Self, ParamError> {
        let stream = FaceStream::new(DEFAULT_RATE_HZ)?;
        Ok(OpenFaceAu { stream, lines: ["AU06: -".into(), "AU12: -".into(), "Starting".into()] })
    }

    fn process(&mut self, frame: &mut VideoFrame, ctx: &mut FilterContext) {
        if let Some(face) = self.stream.update(frame) {
            ctx.report(json!({ "data": report(face) }));
            set_lines(&mut self.lines, face);
        }
        let scale = TextStyle::scale_for(frame.height());
        let step = (50 * frame.height() / 480).max(12) as isize;
        let x = (50 * frame.width() / 640) as isize;
        for (i, line) in self.lines.iter().enumerate() {
            draw_text(frame, x, step + i as isize * step, line, TextStyle::green(scale));
        }
    }

    fn update(&mut self, _: &Params) -> Result<(), ParamError> {
        Ok(())
    }
}
