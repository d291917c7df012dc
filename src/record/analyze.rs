//! Offline recomputation of group filters (`exphub analyze`): the same individual steps and the
//! same [`Aggregation`](filters::Aggregation) as the live run, over the recorded raw files, with the parameters and
//! members the event log says the run used.
//!
//! Each raw frame's time on the experiment clock is its file's `start_ms` plus its time in the
//! file: the recorder's clock, which the live values are stamped with too. The frames analysed
//! are chosen by the same [`Decimator`], so live and offline results of a window agree up to
//! what the network did to the live run (values that arrived too late, a few milliseconds of
//! clock anchoring) and the first and last windows (the files start at START's first keyframe,
//! the live run stops at STOP).

use std::path::{Path, PathBuf};

use filters::{Decimator, GroupResult, Sample};
use serde::Serialize;
use serde_json::Value;

use super::{FileEntry, Manifest, EVENTS};
use crate::media::codec::{AudioDecoder, VideoDecoder};
use crate::media::group::{InstanceSpec, Resolved};
use crate::media::mux;
use crate::media::pipeline::Codec;
use crate::media::rtp::Format;

/// One instance of a run, as logged at START (or at its last change).
#[derive(Debug, Clone)]
pub struct LoggedInstance {
    pub spec: InstanceSpec,
    /// `video` or `audio`.
    pub channel: String,
}

/// One line of the output.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub run: u32,
    pub filter_id: &'a str,
    pub filter_name: &'a str,
    pub members: &'a [String],
    pub window_end_ms: f64,
    pub value: &'a Value,
    pub n_samples: usize,
}

/// The group filter instances of `run` from the event log: for each id, its last logged
/// definition (a change during the run is applied to the whole run: documented).
pub fn logged_instances(dir: &Path, run: u32) -> std::io::Result<Vec<LoggedInstance>> {
    let text = std::fs::read_to_string(dir.join(EVENTS))?;
    let mut out: Vec<LoggedInstance> = Vec::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else { continue }; // a torn last line
        if e["type"] != "group_filter_config" || e["run"].as_u64() != Some(run as u64) {
            continue;
        }
        for i in e["instances"].as_array().into_iter().flatten() {
            let (Some(id), Some(name), Some(channel)) =
                (i["filter_id"].as_str(), i["filter_name"].as_str(), i["channel"].as_str())
            else {
                continue;
            };
            let members = i["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_owned));
            let spec = InstanceSpec {
                id: id.to_owned(),
                name: name.to_owned(),
                config: i["config"].clone(),
                members: members.collect(),
            };
            let logged = LoggedInstance { spec, channel: channel.to_owned() };
            match out.iter_mut().find(|o| o.spec.id == id) {
                Some(o) => *o = logged,
                None => out.push(logged),
            }
        }
    }
    Ok(out)
}

/// Recomputes one instance from the members' raw files of `run`; `progress(done, total)` after
/// each file.
pub fn recompute(
    dir: &Path,
    manifest: &Manifest,
    run: u32,
    inst: &LoggedInstance,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<GroupResult>, String> {
    let resolved = Resolved::new(&inst.spec.name, &inst.spec.config)?;
    let mut aggregation = resolved.aggregation(&inst.spec.members)?;
    let rate = aggregation.windowing().rate_hz;
    let files: Vec<&FileEntry> = manifest
        .files
        .iter()
        .filter(|f| f.run == run && f.kind == "raw" && f.media == inst.channel && f.viewers.is_none())
        .filter(|f| inst.spec.members.contains(&f.participant_id))
        .collect();
    let mut last = f64::NEG_INFINITY;
    for (done, member) in inst.spec.members.iter().enumerate() {
        let mut mine: Vec<&&FileEntry> = files.iter().filter(|f| f.participant_id == *member).collect();
        mine.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        let mut decimator = Decimator::new(rate);
        let mut push = |t: f64, v| {
            aggregation.push(member, t, v);
            last = last.max(t);
        };
        match inst.channel.as_str() {
            "video" => member_values::<VideoDecoder>(dir, &mine, &resolved, &mut decimator, &mut push)?,
            _ => member_values::<AudioDecoder>(dir, &mine, &resolved, &mut decimator, &mut push)?,
        }
        progress(done + 1, inst.spec.members.len());
    }
    let mut out = Vec::new();
    if last.is_finite() {
        aggregation.advance(last, &mut out);
    }
    Ok(out)
}

/// One member's values from its recorded files (in time order) with the live step and
/// decimation: `push(t_ms, value)` per analysed frame.
fn member_values<C: Codec>(
    dir: &Path,
    files: &[&&FileEntry],
    resolved: &Resolved,
    decimator: &mut Decimator,
    push: &mut dyn FnMut(f64, Option<Sample>),
) -> Result<(), String> {
    let mut step = C::make_step(&resolved.group, &resolved.params)
        .ok_or("the filter has no step for this medium")?
        .map_err(|e| e.to_string())?;
    let mut frame = C::blank();
    for f in files {
        decode_file::<C>(dir, f, &mut frame, &mut |t, decoded| {
            if let Some(frame) = decoded {
                if decimator.admit(t) {
                    push(t, C::step(&mut step, frame));
                }
            }
        })?;
    }
    Ok(())
}

/// Decodes one recorded file with the live pipeline's decoder for its codec: `each(t_ms,
/// frame)` for every packet in file order, `t_ms` on the experiment clock (the file's `start_ms`
/// plus the packet's time in the file), `frame` the decoded picture, or `None` when the packet
/// gave none (a decoding error, or nothing to show yet). Errors (naming the file) if the file
/// cannot be read.
pub(crate) fn decode_file<C: Codec>(
    dir: &Path,
    f: &FileEntry,
    frame: &mut C::Frame,
    each: &mut dyn FnMut(f64, Option<&C::Frame>),
) -> Result<(), String> {
    let format = match (f.media.as_str(), f.codec.as_str()) {
        ("audio", _) => Format::Opus,
        (_, "h264") => Format::H264,
        _ => Format::Vp8,
    };
    let mut dec = C::decoder(format).map_err(|e| format!("{}: {e}", f.file))?;
    mux::read_packets(&dir.join(&f.file), |ms, data| {
        let t = f.start_ms + ms;
        match dec.decode(data, frame) {
            Ok(true) => each(t, Some(frame)),
            _ => each(t, None),
        }
    })
    .map_err(|e| format!("{}: {e}", f.file))
}

/// The default output file of a run.
pub fn default_out(dir: &Path, run: u32) -> PathBuf {
    dir.join(format!("group_results.run-{run}.jsonl"))
}

/// The last run of a manifest that started.
pub fn last_run(manifest: &Manifest) -> Option<u32> {
    manifest.runs.iter().filter(|r| r.start_us.is_some()).map(|r| r.run).max()
}
