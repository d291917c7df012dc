//! Face analysis of recordings (post-processing: `POST_PROCESSING_VIDEO`, `exphub analyze
//! --faces`): every frame of a participant's recorded **raw** video (what the camera sent,
//! before filters), run through the same face analysis as the live `OPENFACE_AU` filter
//! (`filters::face`), written as one CSV per participant and run with OpenFace's
//! FeatureExtraction column names:
//!
//! `<session dir>/processed/<participant_id>.run-<run>.csv`
//!
//! - one row per recorded frame (every packet of the participant's raw video files of the run,
//!   its segments in time order); `frame` counts from 1, `timestamp` is seconds since START on
//!   the experiment clock (the file's `start_ms` plus the frame's time in the file, as every
//!   recorded time);
//! - `success` 1 when a face was found and its landmarks fitted; a frame without a face (or
//!   one that could not be decoded) has `success` 0 and zeros in every other column;
//! - pose as OpenFace gives it (mm, radians, camera frame), the 68 landmarks in pixels;
//! - `AU06_r`, `AU12_r` (0–5) and `AU06_c`, `AU12_c` (0/1) are estimates from the landmarks
//!   (`face::au`). Offline they are computed in two passes, as OpenFace does offline: the
//!   first pass fits every frame's landmarks and shape features, then the person's neutral
//!   face is taken from the whole run (`au::neutral_of` over every frame with a face), and the
//!   second pass estimates each frame's AUs against it. (Live, the filter can only use the
//!   frames seen so far, so early live values differ.)
//!
//! The first pass is kept in memory (about 0.6 kB per frame with a face: some 65 MB for an
//! hour at 30 fps), one participant's run at a time.
//!
//! A CSV is written under a temporary name (`processed/.<name>.partial`) and renamed when
//! complete, so a file with the final name is always whole. Each written file is listed in the
//! manifest's `analyses` by the caller. The work runs on the caller's thread (the hub runs it
//! on a thread of its own, never on the hub task).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use filters::face::{self as fa, au, Analyzer, Features, Landmarks, Models, Pose};

use super::analyze::decode_file;
use super::{wall_us, Analysis, FileEntry, Manifest};
use crate::media::codec::VideoDecoder;
use crate::media::pipeline::Codec;

/// The results' directory inside the session directory.
pub const DIR: &str = "processed";
/// The manifest's `kind` of these results.
pub const KIND: &str = "faces";

/// One CSV to compute: a participant's raw video of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub run: u32,
    pub participant_id: String,
    /// Its raw video files, in time order.
    pub files: Vec<FileEntry>,
    /// Frames the manifest lists for them.
    pub frames: u64,
}

impl Target {
    /// The CSV's path relative to the session directory.
    pub fn csv(&self) -> String {
        format!("{DIR}/{}.run-{}.csv", self.participant_id, self.run)
    }
}

/// The participants' raw video of every run (or of `run` only), by run and participant.
pub fn targets(m: &Manifest, run: Option<u32>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let raw = m.files.iter().filter(|f| f.kind == "raw" && f.media == "video" && f.viewers.is_none());
    for f in raw.filter(|f| run.is_none_or(|r| f.run == r)) {
        let t = match out.iter_mut().find(|t| t.run == f.run && t.participant_id == f.participant_id) {
            Some(t) => t,
            None => {
                out.push(Target { run: f.run, participant_id: f.participant_id.clone(), files: vec![], frames: 0 });
                out.last_mut().expect("just pushed")
            }
        };
        t.files.push(f.clone());
        t.frames = t.frames.saturating_add(f.frames.unwrap_or(0));
    }
    for t in &mut out {
        t.files.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms).then(a.segment.cmp(&b.segment)));
    }
    out.sort_by(|a, b| (a.run, &a.participant_id).cmp(&(b.run, &b.participant_id)));
    out
}

/// The targets whose CSV is not in `dir` yet.
pub fn missing(dir: &Path, targets: Vec<Target>) -> Vec<Target> {
    targets.into_iter().filter(|t| !dir.join(t.csv()).is_file()).collect()
}

/// The frames of `targets` as the manifest counts them (a file's numbers: saturating).
pub fn total_frames(targets: &[Target]) -> u64 {
    targets.iter().fold(0u64, |n, t| n.saturating_add(t.frames))
}

/// Why face analysis of recordings stopped.
#[derive(Debug)]
pub enum FacesError {
    /// The face models are not installed (or cannot be read): nothing was analysed.
    Models(fa::FaceError),
    /// A recorded file cannot be read.
    Read { file: String, reason: String },
    /// A result file cannot be written.
    Write { file: String, error: io::Error },
    /// Stopped on request (the server shuts down) before the file was written.
    Cancelled,
    /// A bug: the analysis panicked (the message).
    Internal(String),
}

impl std::fmt::Display for FacesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FacesError::Models(e) => write!(f, "{e}"),
            FacesError::Read { file, reason } => write!(f, "cannot read {file}: {reason}"),
            FacesError::Write { file, error } => write!(f, "cannot write {file}: {error}"),
            FacesError::Cancelled => write!(f, "stopped before it was finished"),
            FacesError::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

impl std::error::Error for FacesError {}

/// What [`analyze`] did: the files written, and the targets that failed (each with its reason;
/// the others are written all the same).
#[derive(Debug, Default)]
pub struct Report {
    pub written: Vec<Analysis>,
    pub failed: Vec<(Target, FacesError)>,
}

/// Analyses every target in order and writes its CSV. `progress(done, total)` is called after
/// every frame (`total`: the manifest's frame counts; `done` may pass it if the manifest
/// counted fewer); returning `Break` stops the work: the target being analysed is reported as
/// [`FacesError::Cancelled`] (its file is not written) and the later ones are not begun, while
/// the files already written stay in the report. `Err` only when nothing can be done (no
/// models); a target that fails is reported in [`Report::failed`] and the next one goes on.
pub fn analyze(
    dir: &Path,
    targets: &[Target],
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<Report, FacesError> {
    let models = Models::shared().map_err(FacesError::Models)?;
    let total = total_frames(targets);
    let mut done = 0u64;
    let mut report = Report::default();
    for t in targets {
        let mut each = |_: u64| -> ControlFlow<()> {
            done += 1;
            progress(done, total.max(done))
        };
        match analyze_one(dir, &models, t, &mut each) {
            Ok(a) => report.written.push(a),
            Err(FacesError::Cancelled) => {
                report.failed.push((t.clone(), FacesError::Cancelled));
                return Ok(report);
            }
            Err(e @ FacesError::Models(_)) => return Err(e),
            Err(e) => report.failed.push((t.clone(), e)),
        }
    }
    Ok(report)
}

/// What the first pass keeps of a frame with a face.
struct Measured {
    confidence: f32,
    pose: Pose,
    landmarks: Landmarks,
    features: Features,
}

/// One recorded frame: its time on the experiment clock (ms) and its face, if any.
struct Row {
    t_ms: f64,
    face: Option<Box<Measured>>,
}

fn analyze_one(
    dir: &Path,
    models: &std::sync::Arc<Models>,
    t: &Target,
    each: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<Analysis, FacesError> {
    let mut analyzer = Analyzer::new(models.clone()).map_err(FacesError::Models)?;
    // Pass 1: every frame's face (landmarks, pose, shape features).
    // The count is the manifest's (a file): a hint, capped, never trusted for an allocation.
    let mut rows: Vec<Row> = Vec::with_capacity(t.frames.min(1 << 16) as usize);
    let mut frame = VideoDecoder::blank();
    let mut stopped = false;
    for f in &t.files {
        // A new segment is a new stream (a rejoin): find the face afresh.
        analyzer.reset();
        decode_file::<VideoDecoder>(dir, f, &mut frame, &mut |t_ms, decoded| {
            if stopped {
                return;
            }
            let face = decoded.map(|fr| analyzer.analyze(fa::gray(fr))).filter(|r| r.success).map(|r| {
                Box::new(Measured {
                    confidence: r.confidence,
                    pose: r.pose,
                    landmarks: r.landmarks,
                    features: r.features,
                })
            });
            rows.push(Row { t_ms, face });
            stopped = each(rows.len() as u64).is_break();
        })
        .map_err(|reason| {
            // `decode_file` names the file; said once.
            let reason = reason.strip_prefix(&format!("{}: ", f.file)).map(str::to_owned).unwrap_or(reason);
            FacesError::Read { file: f.file.clone(), reason }
        })?;
        if stopped {
            return Err(FacesError::Cancelled);
        }
    }
    // The person's neutral face over the whole run, then pass 2: the AUs against it.
    let neutral = au::neutral_of(rows.iter().filter_map(|r| r.face.as_ref().map(|m| m.features)));
    let name = t.csv();
    let path = dir.join(&name);
    let tmp = dir.join(DIR).join(format!(".{}.run-{}.csv.partial", t.participant_id, t.run));
    let written = std::fs::create_dir_all(dir.join(DIR))
        .and_then(|()| write_csv(&tmp, &rows, &neutral))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .and_then(|()| crate::media::recorder::sha256_file(&path));
    let (bytes, sha256) = written.map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        FacesError::Write { file: name.clone(), error }
    })?;
    Ok(Analysis {
        file: name,
        run: t.run,
        participant_id: t.participant_id.clone(),
        kind: KIND.into(),
        sources: t.files.iter().map(|f| f.file.clone()).collect(),
        frames: rows.len() as u64,
        faces_found: rows.iter().filter(|r| r.face.is_some()).count() as u64,
        bytes,
        sha256,
        created_us: wall_us(),
    })
}

/// OpenFace FeatureExtraction's column names, in its order (for the columns exphub has).
pub fn header() -> String {
    let mut h =
        String::from("frame,face_id,timestamp,confidence,success,pose_Tx,pose_Ty,pose_Tz,pose_Rx,pose_Ry,pose_Rz");
    for axis in ["x", "y"] {
        for i in 0..68 {
            let _ = write!(h, ",{axis}_{i}");
        }
    }
    h.push_str(",AU06_r,AU12_r,AU06_c,AU12_c");
    h
}

fn write_csv(path: &Path, rows: &[Row], neutral: &Features) -> io::Result<()> {
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "{}", header())?;
    let mut line = String::with_capacity(2048);
    for (i, r) in rows.iter().enumerate() {
        line.clear();
        row(&mut line, i as u64 + 1, r, neutral);
        w.write_all(line.as_bytes())?;
    }
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()
}

/// One CSV line (with its newline).
fn row(out: &mut String, frame: u64, r: &Row, neutral: &Features) {
    let seconds = r.t_ms / 1000.0;
    let _ = write!(out, "{frame},0,{seconds:.3}");
    match &r.face {
        Some(m) => {
            let p = &m.pose;
            let _ = write!(
                out,
                ",{:.3},1,{:.1},{:.1},{:.1},{:.3},{:.3},{:.3}",
                m.confidence, p.tx, p.ty, p.tz, p.rx, p.ry, p.rz
            );
            for axis in 0..2 {
                for pt in &m.landmarks {
                    let _ = write!(out, ",{:.1}", pt[axis]);
                }
            }
            let a = au::estimate(&m.features, neutral);
            let _ = write!(out, ",{:.2},{:.2},{},{}", a.au06_r, a.au12_r, a.au06_c as u8, a.au12_c as u8);
        }
        None => {
            // success 0 and zeros everywhere else: 6 pose, 136 landmark and 4 AU columns.
            out.push_str(",0,0");
            for _ in 0..6 + 136 + 4 {
                out.push_str(",0");
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, run: u32, pid: &str, kind: &str, media: &str, start_ms: f64, frames: u64) -> FileEntry {
        FileEntry {
            file: name.into(),
            run,
            participant_id: pid.into(),
            kind: kind.into(),
            media: media.into(),
            codec: "VP8".into(),
            container: "webm".into(),
            segment: 1,
            start_ms,
            width: None,
            height: None,
            viewers: None,
            filters: None,
            duration_ms: None,
            frames: Some(frames),
            bytes: None,
            sha256: None,
            complete: true,
            recovered: false,
            error: None,
        }
    }

    #[test]
    fn targets_are_each_participants_raw_video_per_run_in_time_order() {
        let mut m = Manifest::new("s");
        m.files = vec![
            file("b2", 1, "b", "raw", "video", 900.0, 10),
            file("b1", 1, "b", "raw", "video", 40.0, 20),
            file("bp", 1, "b", "processed", "video", 40.0, 20),
            file("ba", 1, "b", "raw", "audio", 40.0, 50),
            file("a1", 1, "a", "raw", "video", 50.0, 7),
            file("a2", 2, "a", "raw", "video", 50.0, 5),
        ];
        let mut viewer = file("bv", 1, "b", "raw", "video", 40.0, 20);
        viewer.viewers = Some(vec!["a".into()]);
        m.files.push(viewer);
        // Frame counts from a file add up without overflowing.
        let mut huge = m.clone();
        huge.files.push(file("b3", 1, "b", "raw", "video", 950.0, u64::MAX));
        assert_eq!(targets(&huge, None)[1].frames, u64::MAX);
        let all = targets(&m, None);
        let names: Vec<(u32, &str, Vec<&str>, u64)> = all
            .iter()
            .map(|t| (t.run, t.participant_id.as_str(), t.files.iter().map(|f| f.file.as_str()).collect(), t.frames))
            .collect();
        assert_eq!(names, [(1, "a", vec!["a1"], 7), (1, "b", vec!["b1", "b2"], 30), (2, "a", vec!["a2"], 5)]);
        assert_eq!(all[1].csv(), "processed/b.run-1.csv");
        assert_eq!(targets(&m, Some(2)).len(), 1);
        assert!(targets(&m, Some(3)).is_empty());
        // A CSV already there is not missing.
        let d = std::env::temp_dir().join(format!("exphub-faces-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(d.join(DIR)).unwrap();
        std::fs::write(d.join("processed/a.run-1.csv"), "x").unwrap();
        let left: Vec<String> = missing(&d, all).iter().map(Target::csv).collect();
        assert_eq!(left, ["processed/b.run-1.csv", "processed/a.run-2.csv"]);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_row_has_every_column_of_the_header_with_or_without_a_face() {
        let columns = header().split(',').count();
        assert_eq!(columns, 11 + 136 + 4);
        assert!(header().starts_with("frame,face_id,timestamp,confidence,success,pose_Tx,"));
        assert!(header().contains(",x_0,") && header().contains(",y_67,AU06_r,AU12_r,AU06_c,AU12_c"));
        let neutral = au::POPULATION_NEUTRAL;
        let mut line = String::new();
        row(&mut line, 3, &Row { t_ms: 1234.5678, face: None }, &neutral);
        assert!(line.starts_with("3,0,1.235,0,0,0,"), "{line}");
        assert_eq!(line.trim_end().split(',').count(), columns);
        assert!(line.ends_with('\n'));
        let mut lm = [[0f32; 2]; 68];
        lm[67] = [301.25, 99.0];
        let m = Measured {
            confidence: 0.9,
            pose: Pose { tx: 1.0, ty: 2.0, tz: 500.0, rx: 0.1, ry: -0.2, rz: 0.0 },
            landmarks: lm,
            features: neutral,
        };
        line.clear();
        row(&mut line, 4, &Row { t_ms: 40.0, face: Some(Box::new(m)) }, &neutral);
        let cells: Vec<&str> = line.trim_end().split(',').collect();
        assert_eq!(cells.len(), columns);
        assert_eq!(&cells[..11], ["4", "0", "0.040", "0.900", "1", "1.0", "2.0", "500.0", "0.100", "-0.200", "0.000"]);
        assert_eq!((cells[11 + 67], cells[11 + 68 + 67]), ("301.2", "99.0"));
        // The neutral face itself: no action units.
        assert_eq!(&cells[columns - 4..], ["0.00", "0.00", "0", "0"]);
    }

    #[test]
    fn an_unreadable_recording_fails_its_target_alone_and_leaves_no_file() {
        let d = std::env::temp_dir().join(format!("exphub-faces-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("p_raw_video_1-1.webm"), b"not a webm file").unwrap();
        let t = Target {
            run: 1,
            participant_id: "p".into(),
            files: vec![file("p_raw_video_1-1.webm", 1, "p", "raw", "video", 0.0, u64::MAX)],
            // A manifest is a file: its counts are not trusted for allocations.
            frames: u64::MAX,
        };
        let report = analyze(&d, &[t], &mut |_, _| ControlFlow::Continue(())).expect("the models are installed");
        assert!(report.written.is_empty());
        let (_, e) = &report.failed[0];
        assert!(matches!(e, FacesError::Read { file, .. } if file == "p_raw_video_1-1.webm"), "{e}");
        let left: Vec<_> = std::fs::read_dir(d.join(DIR)).map(|r| r.count()).into_iter().collect();
        assert!(left.is_empty() || left == [0], "{left:?}");
        let _ = std::fs::remove_dir_all(d);
    }
}
