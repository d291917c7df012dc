//! Recording, seen from the hub: which experiments record (the session's `record` flag at
//! CREATE_EXPERIMENT), starting and stopping the track recorders, the event log entries of
//! everything the hub accepts or does, and the manifest updates the recorders report.
//!
//! The writes go through `record::SessionRecord`, which hands them to its own thread. Opening
//! a record does a little IO on the hub task (creating the directory, reading back an existing
//! `manifest.json` and the tail of `events.jsonl`, setting a broken manifest aside), as does
//! `RECORDING_LIST` (listing directories). A session's record outlives its experiment until
//! every file is finished.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{errors, ConnId, ExperimentState, Hub, Input, Role};
use crate::media::recorder::{RecEvent, RecordSpec};
use crate::media::Kind;
use crate::protocol::{self, MessageType, WireError};
use crate::record::SessionRecord;
use crate::session::{ParticipantId, SessionId};

impl Hub {
    /// CREATE_EXPERIMENT of a session with `record` on: open its directory, event log and
    /// manifest (a session run again gets a new run number).
    pub(crate) fn open_recording(&mut self, sid: &SessionId) {
        self.open_recording_with(sid, None);
    }

    /// [`Hub::open_recording`]; a run adopted after a node failure starts its log with
    /// `experiment_failover` (`failover`: its fields).
    pub(crate) fn open_recording_with(&mut self, sid: &SessionId, failover: Option<Value>) {
        if !self.sessions.get(sid).is_some_and(|s| s.record) {
            return;
        }
        if let Some(r) = self.recordings.get_mut(sid) {
            r.new_run();
        } else {
            match SessionRecord::open(&self.cfg.sessions_dir, sid.as_str()) {
                Ok(r) => {
                    self.recordings.insert(sid.to_owned(), r);
                }
                Err(e) => {
                    tracing::error!(session = %sid, error = %e, "cannot open the recording directory");
                    self.tell_experimenters(
                        sid,
                        format!("Recording is not possible: {e}. The experiment goes on without it."),
                    );
                    return;
                }
            }
        }
        // The run's files go to the object store, under its epoch and node in cluster mode.
        if let (Some(u), Some(r)) = (&self.uploader, self.recordings.get_mut(sid)) {
            let tag = self.cluster.as_ref().map(|c| (c.epoch(sid.as_str()).unwrap_or(0), c.node_id.clone()));
            r.upload_to(Some(crate::record::UploadTo { uploader: u.clone(), tag }));
        }
        if let Some(f) = failover {
            self.log(sid, "experiment_failover", f);
        }
        let title = self.sessions.get(sid).map(|s| s.title.clone()).unwrap_or_default();
        self.log(sid, "experiment_created", json!({ "session_id": sid, "session_title": title }));
    }

    /// An event for session `sid`'s log, if it records.
    pub(crate) fn log(&self, sid: &SessionId, kind: &str, fields: Value) {
        if let Some(r) = self.recordings.get(sid) {
            r.event(kind, fields);
        }
    }

    /// What participant `pid`'s media runs now: filters with every parameter, mute state.
    pub(crate) fn log_media_config(&self, sid: &SessionId, pid: &ParticipantId) {
        let (Some(r), Some(p)) = (self.recordings.get(sid), self.sessions.get(sid).and_then(|s| s.participant(pid)))
        else {
            return;
        };
        r.event(
            "media_config",
            json!({
                "participant_id": p.id,
                "muted_video": p.muted_video,
                "muted_audio": p.muted_audio,
                "video_filters": p.video_filters,
                "audio_filters": p.audio_filters,
                "asymmetric_filters": p.asymmetric_filters,
            }),
        );
    }

    pub(crate) fn recording(&self, sid: &SessionId) -> bool {
        self.recordings.contains_key(sid)
    }

    /// START: time zero; every seated participant's tracks start recording.
    pub(crate) fn start_recording(&mut self, sid: &SessionId, start_time: i64, zero: Instant) {
        let Some(r) = self.recordings.get_mut(sid) else { return };
        r.started(zero, start_time);
        self.log(sid, "experiment_started", json!({ "start_time": start_time }));
        // Time zero's state of every participant, as designed or changed before START.
        let pids: Vec<ParticipantId> =
            self.sessions.get(sid).map(|s| s.participants.iter().map(|p| p.id.clone()).collect()).unwrap_or_default();
        for pid in pids {
            self.log_media_config(sid, &pid);
        }
        let seats: Vec<ParticipantId> =
            self.experiments.get(sid).map(|e| e.media.keys().cloned().collect()).unwrap_or_default();
        for pid in seats {
            self.record_seat(sid, &pid);
        }
    }

    /// Starts the recorders of one seat (at START, or when its media appears later).
    pub(crate) fn record_seat(&self, sid: &SessionId, pid: &ParticipantId) {
        let Some(r) = self.recordings.get(sid) else { return };
        let Some(start) = r.start else { return };
        let Some(e) = self.experiments.get(sid).filter(|e| e.state == ExperimentState::Running) else { return };
        let Some(m) = e.media.get(pid) else { return };
        let spec = RecordSpec { dir: r.dir.clone(), participant: pid.to_string(), run: r.run, start };
        m.video.record(Some(spec.clone()));
        m.audio.record(Some(spec));
    }

    /// STOP: the recorders finish their files (reported back as they close).
    pub(crate) fn stop_recording(&mut self, sid: &SessionId, end_time: i64) {
        if let Some(e) = self.experiments.get(sid) {
            for m in e.media.values() {
                m.video.record(None);
                m.audio.record(None);
            }
        }
        self.log(sid, "experiment_stopped", json!({ "end_time": end_time }));
        if let Some(r) = self.recordings.get_mut(sid) {
            r.ended(end_time);
        }
    }

    /// What a track's recorder reports.
    pub(crate) fn on_recording(&mut self, sid: &SessionId, pid: &ParticipantId, kind: Kind, ev: RecEvent) {
        match ev {
            RecEvent::Opened(f) => {
                // A viewer-side version: who sees it (now), and with which filters.
                let branch = f.branch.as_ref().map(|key| {
                    let viewers = self
                        .sessions
                        .get(sid)
                        .map(|s| {
                            s.participants
                                .iter()
                                .filter(|v| {
                                    let (vg, ag) = super::media::viewer_groups(s, pid, &v.id);
                                    let g = if kind == Kind::Video { vg } else { ag };
                                    g.as_deref() == Some(&**key)
                                })
                                .map(|v| v.id.to_string())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    let filters = serde_json::from_str::<Value>(key)
                        .map(|v| {
                            // The key is [[id, name, config], ...].
                            let list = v.as_array().cloned().unwrap_or_default();
                            Value::Array(
                                list.into_iter().map(|t| json!({"id": t[0], "name": t[1], "config": t[2]})).collect(),
                            )
                        })
                        .unwrap_or(Value::Null);
                    (viewers, filters)
                });
                let mut logged = serde_json::to_value(&f).unwrap_or(Value::Null);
                if let (Some((viewers, filters)), Value::Object(m)) = (&branch, &mut logged) {
                    m.insert("viewers".into(), json!(viewers));
                    m.insert("filters".into(), filters.clone());
                }
                self.log(sid, "recording_started", logged);
                if let Some(r) = self.recordings.get_mut(sid) {
                    r.file_opened(&f, branch);
                }
            }
            RecEvent::Closed(c) => {
                self.log(sid, "recording_finished", serde_json::to_value(&c).unwrap_or(Value::Null));
                if let Some(r) = self.recordings.get_mut(sid) {
                    r.file_closed(&c);
                }
                self.maybe_close_recording(sid);
            }
            RecEvent::Failed { file, error } => {
                tracing::error!(session = %sid, participant = %pid, %file, %error, "recording failed");
                self.log(sid, "recording_failed", json!({ "participant_id": pid, "file": file, "error": error }));
                self.tell_experimenters(
                    sid,
                    format!(
                        "Recording of participant {pid} ({file}) failed: {error}. The experiment goes on; \
                         recording is retried every few seconds."
                    ),
                );
            }
            RecEvent::Stats(s) => {
                let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("participant_id".into(), json!(pid));
                    m.insert("kind".into(), json!(kind.as_str()));
                    // The achieved delay of this track's DELAY filters, as they last reported it.
                    let delays: Vec<Value> = self
                        .experiments
                        .get(sid)
                        .and_then(|e| e.media.get(pid))
                        .map(|m| {
                            m.reports
                                .iter()
                                .filter(|((k, _), _)| *k == kind)
                                .filter_map(|((_, id), r)| {
                                    r.get("delay_ms").map(|d| json!({"filter_id": id, "delay_ms": d}))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    m.insert("delay_filters".into(), Value::Array(delays));
                }
                self.log(sid, "stream_stats", v);
            }
        }
    }

    /// An ERROR to the experiment's experimenters that is about the experiment, not a request.
    fn tell_experimenters(&mut self, sid: &SessionId, text: String) {
        let msg = protocol::error_message(&errors::recording_failed(text));
        for c in self.experiments.get(sid).map(|x| x.experimenters.clone()).unwrap_or_default() {
            self.send(c, msg.clone());
        }
    }

    /// Closes a session's record once its experiment is gone and every file is finished.
    pub(crate) fn maybe_close_recording(&mut self, sid: &SessionId) {
        let done = self.recordings.get(sid).is_some_and(|r| r.open_files() == 0) && !self.experiments.contains_key(sid);
        if done {
            if let Some(r) = self.recordings.remove(sid) {
                self.closing.retain(|h| !h.is_finished());
                self.closing.push(tokio::task::spawn_blocking(move || r.close()));
            }
        }
    }

    /// Logs an accepted (or refused) data-channel request of connection `id`.
    pub(crate) fn log_request(
        &self,
        id: ConnId,
        sid: &SessionId,
        kind: MessageType,
        data: &Value,
        error: Option<&WireError>,
    ) {
        let from = match self.conns.get(&id).map(|c| &c.role) {
            Some(Role::Participant { participant_id, .. }) => {
                json!({"role": "participant", "participant_id": participant_id})
            }
            _ => json!({"role": "experimenter", "connection": id}),
        };
        // SDP bodies are transport detail, and large.
        let mut data = match kind {
            MessageType::ConnectionOffer => json!({"id": data.get("id"), "sdp_bytes": data.to_string().len()}),
            _ => data.clone(),
        };
        // A participant names another seat by its alias for it; the log names the seat.
        if let (MessageType::Chat, Some(Role::Participant { participant_id, .. }), Some(s)) =
            (kind, self.conns.get(&id).map(|c| &c.role), self.sessions.get(sid))
        {
            let viewer = self.aliases.viewer(s, participant_id);
            let real = data.get("target").and_then(Value::as_str).and_then(|t| viewer.resolve(t)).map(str::to_owned);
            if let (Some(real), Some(obj)) = (real, data.as_object_mut()) {
                obj.insert("target".into(), Value::String(real));
            }
        }
        let mut fields = json!({"from": from, "command": kind.as_str(), "data": data, "ok": error.is_none()});
        if let Some(e) = error {
            fields["error"] = json!({"code": e.code, "type": e.kind.as_str(), "description": e.description});
        }
        self.log(sid, "command", fields);
    }

    /// At shutdown, after the experiments stopped: waits (bounded) for the recorders to
    /// finish their files, handling only their reports, then closes every record.
    pub(crate) async fn finish_recordings(&mut self, rx: &mut tokio::sync::mpsc::Receiver<Input>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let open: usize = self.recordings.values().map(|r| r.open_files()).sum();
        tracing::info!(open, "shutdown: waiting for recordings to finish");
        while self.recordings.values().any(|r| r.open_files() > 0) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Input::Media { session_id, participant_id, kind, ev })) => {
                    self.on_media_event(&session_id, &participant_id, kind, ev);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let open: usize = self.recordings.values().map(|r| r.open_files()).sum();
        if open > 0 {
            tracing::warn!(open, "shutdown: recordings left unfinished (completed at the next start)");
        }
        let records: Vec<SessionRecord> = self.recordings.drain().map(|(_, r)| r).collect();
        let _ = tokio::task::spawn_blocking(move || records.into_iter().for_each(SessionRecord::close)).await;
        // Records closed on the way (their experiment was dropped) are written out too.
        for h in std::mem::take(&mut self.closing) {
            let _ = h.await;
        }
    }
}
