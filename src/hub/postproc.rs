//! Post-processing of recordings seen from the hub (`POST_PROCESSING_VIDEO`,
//! `CHECK_POST_PROCESSING`): the face analysis of `record::faces` over a session's raw video,
//! one job at a time per server, on a thread of its own (never on the hub task). The job shares
//! only its progress counters and a stop flag with the hub; it reports its end as
//! [`Input::PostProcessed`], and the hub then lists the results in the manifest (through the
//! session's record writer while the session records, else by rewriting the manifest on the
//! blocking pool) and logs it. The outcome waits for the next `CHECK_POST_PROCESSING`, which
//! takes it (SynthARium's consumer hands its result over once, the same way).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{errors, Hub, Input};
use crate::protocol::WireError;
use crate::record::faces::{self, FacesError, Report, Target};
use crate::session::SessionId;

/// The post-processing state of the server.
#[derive(Default)]
pub(crate) struct PostProc {
    running: Option<Job>,
    /// The last job's outcome (the success text or the error), until a check takes it.
    finished: Option<Result<String, WireError>>,
}

struct Job {
    session_id: SessionId,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long shutdown waits for a stopped job's thread (it ends at its next frame).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Frames done and to do, written by the job, read by `CHECK_POST_PROCESSING`.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

/// What the job thread reports at its end.
pub(crate) struct Finished {
    session_id: SessionId,
    dir: PathBuf,
    result: Result<Report, FacesError>,
}

/// What a job is doing now: (session, frames done, frames total).
pub(crate) type Status = (SessionId, u64, u64);

impl PostProc {
    /// The running job's session and progress.
    pub(crate) fn status(&self) -> Option<Status> {
        self.running.as_ref().map(|j| {
            let p = &j.progress;
            (j.session_id.clone(), p.done.load(Ordering::Relaxed), p.total.load(Ordering::Relaxed))
        })
    }

    /// Takes the last job's outcome, if it has not been reported yet.
    pub(crate) fn take_outcome(&mut self) -> Option<Result<String, WireError>> {
        self.finished.take()
    }
}

impl Hub {
    /// Starts the analysis of `todo` (the CSVs missing in `dir`) on a thread of its own.
    pub(super) async fn start_post_processing(
        &mut self,
        sid: &SessionId,
        dir: PathBuf,
        todo: Vec<Target>,
    ) -> Result<(), WireError> {
        let progress = Arc::new(Progress::default());
        progress.total.store(faces::total_frames(&todo), Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let listed: Vec<Value> = todo
            .iter()
            .map(|t| json!({"participant_id": t.participant_id, "run": t.run, "frames": t.frames}))
            .collect();
        let (p, s, tx, job_dir, session_id) =
            (progress.clone(), stop.clone(), self.tx.clone(), dir.clone(), sid.clone());
        let thread = std::thread::Builder::new()
            .name("post-processing".into())
            .spawn(move || {
                // A panic (a bug) must still end the job, or it would be "running" for ever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    faces::analyze(&job_dir, &todo, &mut |done, total| {
                        p.done.store(done, Ordering::Relaxed);
                        p.total.store(total, Ordering::Relaxed);
                        if s.load(Ordering::Relaxed) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                }))
                .unwrap_or_else(|panic| {
                    let msg = crate::panic_message(&*panic);
                    tracing::error!(panic = %msg, "the post-processing job panicked");
                    Err(FacesError::Internal(msg))
                });
                // The hub has stopped if this fails: nothing is waiting for the outcome.
                let _ = tx.blocking_send(Input::PostProcessed(Finished { session_id, dir: job_dir, result }));
            })
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the post-processing thread");
                WireError::internal()
            })?;
        self.postproc.running = Some(Job { session_id: sid.clone(), progress, stop, thread: Some(thread) });
        self.postproc.finished = None;
        tracing::info!(session = %sid, "post-processing started");
        self.log_post_processing(sid, &dir, "post_processing_started", json!({"kind": faces::KIND, "targets": listed}))
            .await;
        Ok(())
    }

    /// At shutdown (after the recordings are finished and the other inputs no longer matter):
    /// stops a running job, waits for its thread (bounded), and lists what it finished, so no
    /// CSV is left on disk unlisted; the file it was working on is not written.
    pub(super) async fn finish_post_processing(&mut self, rx: &mut tokio::sync::mpsc::Receiver<Input>) {
        let Some(job) = self.postproc.running.as_mut() else { return };
        job.stop.store(true, Ordering::Relaxed);
        if let Some(t) = job.thread.take() {
            let joined = tokio::task::spawn_blocking(move || t.join());
            if tokio::time::timeout(STOP_WAIT, joined).await.is_err() {
                tracing::warn!("shutdown: the post-processing job did not stop in time");
                return;
            }
        }
        while let Ok(input) = rx.try_recv() {
            if let Input::PostProcessed(f) = input {
                return self.on_post_processed(f).await;
            }
        }
    }

    /// The job's end: its results go into the manifest and the log; its outcome waits for the
    /// next `CHECK_POST_PROCESSING`.
    pub(super) async fn on_post_processed(&mut self, f: Finished) {
        self.postproc.running = None;
        let Finished { session_id: sid, dir, result } = f;
        let outcome = match result {
            Ok(report) => {
                let listed = if report.written.is_empty() {
                    Ok(())
                } else if let Some(r) = self.recordings.get_mut(&sid) {
                    r.add_analyses(&report.written);
                    Ok(())
                } else {
                    let (d, written) = (dir.clone(), report.written.clone());
                    tokio::task::spawn_blocking(move || crate::record::add_analyses_to(&d, &written))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                };
                let failed: Vec<String> = report
                    .failed
                    .iter()
                    .map(|(t, e)| format!("{} (participant {}, run {}): {e}", t.csv(), t.participant_id, t.run))
                    .collect();
                let files: Vec<&str> = report.written.iter().map(|a| a.file.as_str()).collect();
                let fields = json!({"kind": faces::KIND, "files": files, "failed": failed});
                let kind = if failed.is_empty() { "post_processing_finished" } else { "post_processing_failed" };
                self.log_post_processing(&sid, &dir, kind, fields).await;
                match listed {
                    Err(e) => {
                        tracing::error!(session = %sid, error = %e, "cannot list the post-processing results in the manifest");
                        Err(errors::post_processing_failed("the results could not be listed in the manifest."))
                    }
                    Ok(()) if !failed.is_empty() => Err(errors::post_processing_failed(&failed.join("; "))),
                    Ok(()) => {
                        let out = dir.join(faces::DIR);
                        let out = std::path::absolute(&out).unwrap_or(out);
                        Ok(format!(
                            "{} {} file(s) in {}.",
                            crate::protocol::text::POST_PROCESSING_FINISHED,
                            files.len(),
                            out.display()
                        ))
                    }
                }
            }
            Err(e) => {
                self.log_post_processing(&sid, &dir, "post_processing_failed", json!({"error": e.to_string()})).await;
                Err(errors::post_processing_failed(&e.to_string()))
            }
        };
        match &outcome {
            Ok(_) => tracing::info!(session = %sid, "post-processing finished"),
            Err(e) => tracing::warn!(session = %sid, error = %e.description, "post-processing failed"),
        }
        self.postproc.finished = Some(outcome);
    }

    /// An event of the session's log: through its record writer while it records, else
    /// appended on the blocking pool (awaited, so no record can open on the log meanwhile),
    /// after any record still closing has written its last lines.
    async fn log_post_processing(&mut self, sid: &SessionId, dir: &std::path::Path, kind: &'static str, fields: Value) {
        if self.recording(sid) {
            return self.log(sid, kind, fields);
        }
        for closing in std::mem::take(&mut self.closing) {
            let _ = closing.await;
        }
        let d = dir.to_path_buf();
        match tokio::task::spawn_blocking(move || crate::record::append_event(&d, kind, fields)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(session = %sid, error = %e, "cannot append to events.jsonl"),
            Err(e) => tracing::error!(session = %sid, error = %e, "cannot append to events.jsonl"),
        }
    }
}
