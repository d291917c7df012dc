//! Session files: one JSON file per session in one directory (`sessions/<id>.json`), written
//! atomically and durably.
//!
//! Three SynthARium defects shape this file. SynthARium rewrites a session in place
//! (`open(path, "w")`), so a crash mid-write destroys it: every write here goes to a temp file
//! that is fsynced and then renamed over the target, and the directory is fsynced so the rename
//! itself survives a power cut. SynthARium skips a file it cannot parse and may later write a
//! session over it: a file that did not load is remembered and never written or deleted.
//! SynthARium imports a file whose `id` is `""` under a fresh id on every start and keeps the
//! original, so the sessions multiply: here the original is removed once the import is on disk.
//!
//! Small changes (a chat line, a read time, a note, a mute...) are not a rewrite: they are
//! appended to the session's journal (`<stem>.journal.jsonl` beside `<stem>.json`, see
//! [`super::journal`]) and fdatasynced. A full write folds the journal into the file
//! (compaction): on [`save`](SessionStore::save) (the hub saves in full when the journal
//! passes [`JOURNAL_COMPACT_BYTES`], at shutdown and for every change that is not small) and at
//! [`open`](SessionStore::open), which replays every journal first.
//!
//! All methods take `&self` and do blocking IO; the caller runs them on a blocking thread. A
//! mutex serialises them, so two writes never interleave and the store's view of which file
//! belongs to which session stays consistent.

use super::journal::{self, Base};
use super::model::Session;
use super::rules::assign_missing_participant_ids;
use super::{parse_session_str, unique_id, SessionId};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Temp files are `.exphub-<random>.tmp`: hidden, and not `*.json`, so no reader of the
/// directory (this store, SynthARium, a person) takes one for a session; stale ones (a crash
/// between create and rename) are removed by [`SessionStore::open`].
const TMP_PREFIX: &str = ".exphub-";
const TMP_SUFFIX: &str = ".tmp";

/// The revision recorded for a deleted session: no [`SessionStore::save_revision`] of an older
/// snapshot may bring its file back.
const DELETED: u64 = u64::MAX;

/// A journal longer than this asks for compaction ([`SessionStore::wants_compaction`]).
pub const JOURNAL_COMPACT_BYTES: u64 = 256 * 1024;

/// The journal of the session file `path`: `<stem>.journal.jsonl` (not `*.json`, so never
/// taken for a session).
pub fn journal_path(path: &Path) -> PathBuf {
    path.with_extension("journal.jsonl")
}

/// A file in the session directory that did not become a session at start-up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// The session directory. See the module documentation for the guarantees.
#[derive(Debug)]
pub struct SessionStore {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The file of each known session: `<id>.json`, or the file it was loaded from.
    paths: HashMap<SessionId, PathBuf>,
    /// Files this store never writes or deletes: those that did not load, and valid files
    /// whose session id another file already has.
    protected: HashSet<PathBuf>,
    /// The newest revision written per session by [`SessionStore::save_revision`].
    revisions: HashMap<SessionId, u64>,
    /// The open journal per session (absent: none on disk, the next append starts one).
    journals: HashMap<SessionId, Journal>,
    /// The bytes of each session's file as last written or read, for a new journal's header.
    bases: HashMap<SessionId, Base>,
}

#[derive(Debug)]
struct Journal {
    file: fs::File,
    /// Bytes known good (whole lines); a failed append is cut back to this.
    len: u64,
    /// A failed append could not be cut back, or a journal could not be folded at start:
    /// nothing more may be appended before a full write.
    broken: bool,
}

impl SessionStore {
    /// Opens (creating it if missing) the session directory and loads every `*.json` file in
    /// it (not recursive: subdirectories hold recordings; hidden files are skipped), in file
    /// name order.
    ///
    /// Returns the store, the loaded sessions, and the files that did not load, which the
    /// caller must report (they are not logged here). A loaded session's `creation_time` is 0:
    /// no experiment survives a restart. Files in SynthARium's main format load with the dev
    /// keys defaulted and are rewritten in full only when next saved. A file whose session id
    /// is `""` gets a fresh id, is written as `<id>.json`, and the original is removed;
    /// participants without an id get one and the file is rewritten, so the ids given to
    /// participants stay valid across restarts. When two files hold the same session id, the
    /// one named `<id>.json` wins, else the first by name; the other is reported and kept as is.
    ///
    /// Fails only if the directory cannot be created or listed.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<(SessionStore, Vec<Session>, Vec<LoadProblem>)> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let scan = scan(&dir)?;
        for tmp in &scan.temps {
            // Left by a crash between writing and renaming; the target was not touched.
            match fs::remove_file(tmp) {
                Ok(()) => tracing::info!("removed stale temp file {}", tmp.display()),
                Err(e) => tracing::warn!("cannot remove stale temp file {}: {e}", tmp.display()),
            }
        }
        let verdicts = classify(&scan.files);
        let mut problems = scan.errors;
        let mut state = State::default();
        let mut loaded = Vec::new();
        let mut imports = Vec::new();
        // Every session id present in the directory, so that an imported session's fresh id
        // differs from all of them, shadowed duplicates included.
        let ids_on_disk: HashSet<SessionId> =
            scan.files.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|s| s.id.clone()).collect();
        for ((path, result), verdict) in scan.files.into_iter().zip(verdicts) {
            match (result, verdict) {
                (Ok(s), Verdict::Load) if !super::is_file_safe_id(s.id.as_str()) => {
                    // An id such as `../x` would name files outside the directory (recordings,
                    // exports): reported, and the file left as it is.
                    state.protected.insert(path.clone());
                    let message = format!(
                        "session id {:?} is not usable (only letters, digits, '-' and '_'); the file is left untouched",
                        s.id
                    );
                    problems.push(LoadProblem { path, message });
                }
                (Ok(s), Verdict::Load) => loaded.push((path, s)),
                (Ok(s), Verdict::Import) => imports.push((path, s)),
                (_, Verdict::Broken(message)) | (_, Verdict::Duplicate(message)) | (Err(message), _) => {
                    state.protected.insert(path.clone());
                    problems.push(LoadProblem { path, message });
                }
            }
        }
        let store = SessionStore { dir, state: Mutex::new(state) };
        let mut sessions = Vec::with_capacity(loaded.len() + imports.len());
        let mut st = store.lock();
        for (path, mut s) in loaded {
            st.paths.insert(s.id.clone(), path.clone());
            let replayed = replay_journal(&path, &mut s, &mut problems);
            s.creation_time = 0;
            if replayed {
                if let Err(e) = store.write_locked(&mut st, &path, &s) {
                    problems.push(LoadProblem {
                        path: journal_path(&path),
                        message: format!("replayed, but could not be folded into the session file ({e})"),
                    });
                    // Appending after a possibly torn tail is not safe: the next full write
                    // (the hub makes one before the next small change) folds it.
                    if let Ok(file) = OpenOptions::new().append(true).open(journal_path(&path)) {
                        st.journals.insert(s.id.clone(), Journal { file, len: 0, broken: true });
                    }
                }
            }
            if s.participants.iter().any(|p| p.id.is_empty()) {
                match assign_missing_participant_ids(&mut s.participants, HashSet::new()) {
                    Ok(()) => {
                        if let Err(e) = store.write_locked(&mut st, &path, &s) {
                            problems.push(LoadProblem {
                                path: path.clone(),
                                message: format!(
                                    "loaded; participants without an id got one, but the file could not be \
                                     rewritten ({e}): the ids change again on the next start"
                                ),
                            });
                        }
                    }
                    Err(e) => problems.push(LoadProblem { path: path.clone(), message: e.description }),
                }
            }
            sessions.push(s);
        }
        for (path, mut s) in imports {
            s.creation_time = 0;
            if let Err(e) = assign_missing_participant_ids(&mut s.participants, HashSet::new()) {
                st.protected.insert(path.clone());
                problems.push(LoadProblem { path, message: e.description });
                continue;
            }
            let Some(id) = unique_id(|id| ids_on_disk.contains(id) || store.id_taken_locked(&st, id)) else {
                st.protected.insert(path.clone());
                problems.push(LoadProblem { path, message: "could not generate a session id".into() });
                continue;
            };
            s.id = SessionId::from(id);
            let target = store.dir.join(format!("{}.json", s.id));
            let written = store.check_new_target(&st, &target).and_then(|()| store.write_locked(&mut st, &target, &s));
            if let Err(e) = written {
                if st.paths.get(&s.id) == Some(&target) {
                    // Renamed into place; only the directory fsync failed. Go on: removing
                    // the original is what prevents a second import.
                    tracing::warn!("{}: {e}", target.display());
                } else {
                    // The original stays; the next start tries again.
                    st.protected.insert(path.clone());
                    problems.push(LoadProblem {
                        path,
                        message: format!("has no session id; could not write it as {}: {e}", target.display()),
                    });
                    continue;
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!("session file {} had no id: now {}", path.display(), target.display());
                    if let Err(e) = sync_dir(&store.dir) {
                        tracing::warn!("{}: {e}", store.dir.display());
                    }
                }
                Err(e) => {
                    st.protected.insert(path.clone());
                    problems.push(LoadProblem {
                        path,
                        message: format!(
                            "had no session id and was imported as {}, but the original could not be \
                             removed ({e}): remove it by hand or it is imported again on the next start",
                            target.display()
                        ),
                    });
                }
            }
            sessions.push(s);
        }
        drop(st);
        Ok((store, sessions, problems))
    }

    /// The directory this store manages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds session `id`, if the store knows it.
    pub fn path_of(&self, id: &str) -> Option<PathBuf> {
        self.lock().paths.get(id).cloned()
    }

    /// Whether a new session must not get `id`: a known session has it, or its file name
    /// `<id>.json` is already used by a session or by a file that did not load. In-memory only
    /// (no IO); use it in [`super::prepare_new_session`]'s `existing_ids`. (A file that
    /// appeared after start-up is caught by [`save`](Self::save), which refuses to overwrite it.)
    pub fn id_taken(&self, id: &str) -> bool {
        self.id_taken_locked(&self.lock(), id)
    }

    /// Writes `s` to its file: the one it was loaded from, or `<id>.json` for a session new to
    /// the store. Atomic (temp file, fsync, rename) and durable (directory fsync) on return.
    ///
    /// Refuses (with an error, writing nothing) to write a file that did not load at start-up,
    /// a file that belongs to another session, a file that exists but is not a known session
    /// (for a new session), and an id that is not a plain file name (for a new session:
    /// ASCII letters, digits, `-` and `_`; server-generated ids always are).
    ///
    /// Writes unconditionally; see [`save_revision`](Self::save_revision) for writes that may
    /// complete out of order.
    pub fn save(&self, s: &Session) -> io::Result<()> {
        let mut st = self.lock();
        let target = self.target_for(&st, s.id.as_str())?;
        self.write_locked(&mut st, &target, s)?;
        if st.revisions.get(&s.id) == Some(&DELETED) {
            st.revisions.remove(&s.id);
        }
        Ok(())
    }

    /// Like [`save`](Self::save), but only if `revision` is newer than the last revision of this
    /// session written by this method; returns whether it wrote.
    ///
    /// For snapshots taken under the caller's lock and written on blocking threads, which may
    /// run in any order: the caller numbers its changes per session (1, 2, ...; below
    /// `u64::MAX`), and an older snapshot that arrives after a newer one is dropped instead of
    /// overwriting it (the newer one contains its change). After [`delete`](Self::delete) no
    /// revision of that session is written any more.
    pub fn save_revision(&self, s: &Session, revision: u64) -> io::Result<bool> {
        let mut st = self.lock();
        if st.revisions.get(&s.id).is_some_and(|&last| last >= revision) {
            return Ok(false);
        }
        let target = self.target_for(&st, s.id.as_str())?;
        self.write_locked(&mut st, &target, s)?;
        st.revisions.insert(s.id.clone(), revision);
        Ok(true)
    }

    /// Deletes the file of session `id` (not its recordings directory). `NotFound` if the
    /// store has no file for `id`; a file already gone counts as deleted.
    pub fn delete(&self, id: &SessionId) -> io::Result<()> {
        let mut st = self.lock();
        let path = file_of(&st, id.as_str())?;
        if st.protected.contains(&path) {
            // Cannot happen (protected files are never a session's path); checked anyway
            // because deleting one would be unrecoverable.
            return Err(io::Error::other(format!("{} is protected, not deleting it", path.display())));
        }
        remove_if_exists(&path)?;
        st.paths.remove(id);
        st.revisions.insert(id.clone(), DELETED);
        st.journals.remove(id);
        st.bases.remove(id);
        remove_if_exists(&journal_path(&path))?;
        sync_dir(parent_of(&path, &self.dir))
    }

    /// Appends one journal line (a [`journal::Change::line`]) for session `id` and makes it
    /// durable (fdatasync; the first line of a new journal also fsyncs the directory). On
    /// error nothing of the line remains: the journal is cut back to its last whole line (if
    /// even that fails, further appends are refused until the next full write).
    pub fn append(&self, id: &SessionId, line: &[u8]) -> io::Result<()> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let path = file_of(st, id.as_str())?;
        if st.protected.contains(&path) {
            return Err(protected_error(&path));
        }
        if let Some(j) = st.journals.get_mut(id) {
            if j.broken {
                return Err(io::Error::other("the journal needs a full write first"));
            }
            let written = j.file.write_all(line).and_then(|()| j.file.sync_data());
            return match written {
                Ok(()) => {
                    j.len += line.len() as u64;
                    Ok(())
                }
                Err(e) => {
                    if j.file.set_len(j.len).and_then(|()| j.file.sync_data()).is_err() {
                        j.broken = true;
                    }
                    Err(e)
                }
            };
        }
        let base = match st.bases.get(id) {
            Some(b) => *b,
            None => Base::of(&fs::read(&path)?),
        };
        let jpath = journal_path(&path);
        let mut bytes = base.header();
        bytes.extend_from_slice(line);
        let created = (|| {
            // `append`: every write goes to the end, also after a cut-back.
            let mut file = OpenOptions::new().append(true).create(true).open(&jpath)?;
            file.set_len(0)?;
            file.write_all(&bytes)?;
            file.sync_data()?;
            sync_dir(parent_of(&path, &self.dir))?;
            Ok(file)
        })();
        match created {
            Ok(file) => {
                st.journals.insert(id.clone(), Journal { file, len: bytes.len() as u64, broken: false });
                st.bases.insert(id.clone(), base);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&jpath);
                Err(e)
            }
        }
    }

    /// The sessions that have a journal (changes not yet folded into their file).
    pub fn journaled(&self) -> Vec<SessionId> {
        self.lock().journals.keys().cloned().collect()
    }

    /// Whether session `id`'s journal should be folded by a full [`save`](Self::save) before
    /// the next append: it is longer than [`JOURNAL_COMPACT_BYTES`], or it refuses appends.
    pub fn wants_compaction(&self, id: &SessionId) -> bool {
        self.lock().journals.get(id).is_some_and(|j| j.broken || j.len > JOURNAL_COMPACT_BYTES)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves `State` consistent (every update is
        // a single insert/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id_taken_locked(&self, st: &State, id: &str) -> bool {
        let file = self.dir.join(format!("{id}.json"));
        st.paths.contains_key(id) || st.protected.contains(&file) || st.paths.values().any(|p| *p == file)
    }

    /// The file `save` writes for session `id`, or why it must not write.
    fn target_for(&self, st: &State, id: &str) -> io::Result<PathBuf> {
        if let Some(path) = st.paths.get(id) {
            if st.protected.contains(path) {
                return Err(protected_error(path));
            }
            return Ok(path.clone());
        }
        if id.len() > 128 || !super::is_file_safe_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("session id {id:?} cannot be used as a file name"),
            ));
        }
        let target = self.dir.join(format!("{id}.json"));
        self.check_new_target(st, &target)?;
        Ok(target)
    }

    /// Whether `target` may become the file of a session the store does not know yet.
    fn check_new_target(&self, st: &State, target: &Path) -> io::Result<()> {
        if st.protected.contains(target) {
            return Err(protected_error(target));
        }
        if st.paths.values().any(|p| p == target) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} belongs to another session", target.display()),
            ));
        }
        match fs::symlink_metadata(target) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a known session file; not overwriting it", target.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes `s` to `target` atomically and records `target` as its file as soon as the
    /// rename has happened (even if the directory fsync then fails: the file is there).
    ///
    /// The file now holds every change of the session's journal, which is removed (a
    /// journal left by a crash before the removal names the old bytes as its base and is
    /// ignored at the next start).
    fn write_locked(&self, st: &mut State, target: &Path, s: &Session) -> io::Result<()> {
        let bytes = to_json(s)?;
        let dir = parent_of(target, &self.dir);
        write_and_rename(dir, target, &bytes)?;
        st.paths.insert(s.id.clone(), target.to_path_buf());
        st.bases.insert(s.id.clone(), Base::of(&bytes));
        st.journals.remove(&s.id);
        if let Err(e) = remove_if_exists(&journal_path(target)) {
            // Stale from now on (its base is gone); a new journal replaces it.
            tracing::warn!("cannot remove folded journal of {}: {e}", target.display());
        }
        sync_dir(dir)
    }
}

/// The file of session `id`, `NotFound` if the store has none.
fn file_of(st: &State, id: &str) -> io::Result<PathBuf> {
    st.paths
        .get(id)
        .cloned()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file for session {id:?}")))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What the journal beside session file `path` holds, read without writing anything: `None`
/// without a journal.
fn read_journal(path: &Path) -> Option<Result<journal::Replay, String>> {
    let bytes = match fs::read(journal_path(path)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot read its journal: {e}"))),
    };
    Some(fs::read(path).map(|file| journal::read(&bytes, &file)).map_err(|e| format!("cannot read: {e}")))
}

/// Applies the journal beside `path` to `s` (the session loaded from `path`); whether the
/// file must be rewritten to fold it in. A stale journal is removed; one with a corrupt line
/// is reported and moved aside to `<journal>.corrupt` after its good lines are applied.
fn replay_journal(path: &Path, s: &mut Session, problems: &mut Vec<LoadProblem>) -> bool {
    let jpath = journal_path(path);
    let replay = match read_journal(path) {
        None => return false,
        Some(Ok(r)) => r,
        Some(Err(message)) => {
            problems.push(LoadProblem { path: jpath, message });
            return false;
        }
    };
    if replay.stale {
        tracing::info!("{}: already folded into the session file; removed", jpath.display());
        let _ = fs::remove_file(&jpath);
        return false;
    }
    for c in &replay.changes {
        c.apply(s);
    }
    if replay.torn_tail {
        tracing::info!("{}: ignored an incomplete last line (never acknowledged)", jpath.display());
    }
    if let Some((line, why)) = &replay.corrupt {
        let aside = jpath.with_extension("jsonl.corrupt");
        let _ = fs::rename(&jpath, &aside);
        problems.push(LoadProblem {
            path: jpath.clone(),
            message: format!(
                "line {line} is not a change ({why}); the {} line(s) before it were applied, the rest is kept in {}",
                replay.changes.len(),
                aside.display()
            ),
        });
    }
    tracing::info!("{}: replayed {} change(s)", jpath.display(), replay.changes.len());
    true
}

/// The session in file `path` with its journal applied, as the next start would load it
/// (read-only; for checks and tools).
pub fn read_with_journal(path: &Path) -> Result<Session, String> {
    let mut s = read_session(path)?;
    match read_journal(path) {
        Some(Ok(r)) if !r.stale => r.changes.iter().for_each(|c| c.apply(&mut s)),
        Some(Err(e)) => return Err(e),
        _ => {}
    }
    Ok(s)
}

/// The bytes of session file `path` as the session stands: the file itself, or, while a journal
/// beside it holds changes not yet folded in, the session with them applied (in the file's
/// format). For readers outside the hub, e.g. the export archive.
pub fn current_bytes(path: &Path) -> io::Result<Vec<u8>> {
    match read_journal(path) {
        Some(Ok(r)) if !r.stale && !r.changes.is_empty() => {
            to_json(&read_with_journal(path).map_err(io::Error::other)?)
        }
        _ => fs::read(path),
    }
}

fn protected_error(path: &Path) -> io::Error {
    io::Error::other(format!("{} holds a session file that did not load; not overwriting it", path.display()))
}

fn parent_of<'a>(path: &'a Path, fallback: &'a Path) -> &'a Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(fallback)
}

/// The file format: the session as JSON, indented by 4 spaces like SynthARium's
/// `json.dump(indent=4)`, with a final newline.
pub fn to_json(s: &Session) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    s.serialize(&mut ser).map_err(io::Error::other)?;
    buf.push(b'\n');
    Ok(buf)
}

/// Replaces `target` with `bytes` atomically and durably: a temp file beside it, fsync,
/// rename, fsync of the directory. On failure `target` is untouched.
pub fn write_file_atomic(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(target, Path::new("."));
    write_and_rename(dir, target, bytes)?;
    sync_dir(dir)
}

/// Writes `bytes` to a new temp file in `dir`, fsyncs it and renames it over `target`. On
/// failure the temp file is removed and `target` is untouched.
fn write_and_rename(dir: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}{TMP_SUFFIX}", super::new_id()));
    let result = (|| {
        // `create_new`: never follow or truncate something that happens to have the name.
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files elsewhere; the rename is as durable as the
        // platform makes it.
        let _ = dir;
        Ok(())
    }
}

/// What the directory listing found.
struct Scan {
    /// Every `*.json` file, sorted by name, with its parsed session or what is wrong with it.
    files: Vec<(PathBuf, Result<Session, String>)>,
    /// Stale temp files of this store.
    temps: Vec<PathBuf>,
    /// Entries that could not even be looked at.
    errors: Vec<LoadProblem>,
}

fn scan(dir: &Path) -> io::Result<Scan> {
    let mut scan = Scan { files: Vec::new(), temps: Vec::new(), errors: Vec::new() };
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                scan.errors
                    .push(LoadProblem { path: dir.to_path_buf(), message: format!("cannot list an entry: {e}") });
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with(TMP_PREFIX) && name_str.ends_with(TMP_SUFFIX) {
            scan.temps.push(path);
            continue;
        }
        if name_str.starts_with('.') || path.extension() != Some(OsStr::new("json")) {
            continue;
        }
        // `metadata` follows symlinks: a link to a session file is a session file.
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => continue,
            Err(e) => {
                scan.errors.push(LoadProblem { path, message: format!("cannot read: {e}") });
                continue;
            }
        }
        let result = read_session(&path);
        scan.files.push((path, result));
    }
    scan.files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(scan)
}

fn read_session(path: &Path) -> Result<Session, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let s = parse_session_str(text).map_err(|e| format!("not a valid session: {e}"))?;
    let mut seen = HashSet::new();
    if let Some(p) = s.participants.iter().find(|p| !p.id.is_empty() && !seen.insert(p.id.as_str())) {
        return Err(format!("not a valid session: duplicate participant id {:?}", p.id));
    }
    Ok(s)
}

/// What becomes of a scanned file.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// A session, loaded from this file.
    Load,
    /// A session without id: gets a fresh id and a new file.
    Import,
    /// Did not parse: the message.
    Broken(String),
    /// Valid, but another file has its session id: the message.
    Duplicate(String),
}

/// Decides, for files sorted by name, which file each session id is loaded from: the file
/// named `<id>.json` if there is one (that is where SynthARium, and this store, write it),
/// else the first by name.
fn classify(files: &[(PathBuf, Result<Session, String>)]) -> Vec<Verdict> {
    let canonical = |path: &Path, id: &str| path.file_name() == Some(OsStr::new(&format!("{id}.json")));
    let mut winner: HashMap<&str, usize> = HashMap::new();
    for (i, (path, result)) in files.iter().enumerate() {
        let Ok(s) = result else { continue };
        if s.id.is_empty() {
            continue;
        }
        let take = match winner.get(s.id.as_str()) {
            None => true,
            // A later file displaces the first only if it has the canonical name and the
            // first has not.
            Some(&w) => canonical(path, s.id.as_str()) && !canonical(&files[w].0, s.id.as_str()),
        };
        if take {
            winner.insert(s.id.as_str(), i);
        }
    }
    files
        .iter()
        .enumerate()
        .map(|(i, (_, result))| match result {
            Err(message) => Verdict::Broken(message.clone()),
            Ok(s) if s.id.is_empty() => Verdict::Import,
            Ok(s) => match winner.get(s.id.as_str()) {
                Some(&w) if w == i => Verdict::Load,
                Some(&w) => Verdict::Duplicate(format!(
                    "duplicate session id {:?}, already loaded from {}; file ignored",
                    s.id,
                    files[w].0.display()
                )),
                None => Verdict::Load, // unreachable: every id has a winner
            },
        })
        .collect()
}

/// The sessions `dir` holds as [`SessionStore::open`] would load them (journals applied), read
/// without writing anything (for `exphub sessions import`); the files that would not load, and
/// those without a session id (`exphub serve` gives them one), are returned as problems.
pub fn read_dir(dir: impl AsRef<Path>) -> io::Result<(Vec<Session>, Vec<LoadProblem>)> {
    let scan = scan(dir.as_ref())?;
    let verdicts = classify(&scan.files);
    let mut problems = scan.errors;
    let mut sessions = Vec::new();
    for ((path, result), verdict) in scan.files.into_iter().zip(verdicts) {
        let message = match (result, verdict) {
            (Ok(s), Verdict::Load) if !super::is_file_safe_id(s.id.as_str()) => {
                format!("session id {:?} is not usable (only letters, digits, '-' and '_')", s.id)
            }
            (Ok(_), Verdict::Load) => match read_with_journal(&path) {
                Ok(s) => {
                    sessions.push(s);
                    continue;
                }
                Err(e) => e,
            },
            (Ok(_), Verdict::Import) => "has no session id (`exphub serve` on this directory gives it one)".into(),
            (_, Verdict::Broken(m)) | (_, Verdict::Duplicate(m)) | (Err(m), _) => m,
        };
        problems.push(LoadProblem { path, message });
    }
    Ok((sessions, problems))
}

/// The file session `id` loads from, found without writing anything (for `exphub export`
/// and the download, which may run beside a serving hub).
pub fn find_file(dir: impl AsRef<Path>, id: &str) -> Option<PathBuf> {
    let scan = scan(dir.as_ref()).ok()?;
    let verdicts = classify(&scan.files);
    scan.files
        .into_iter()
        .zip(verdicts)
        .find(|((_, r), v)| matches!(v, Verdict::Load) && r.as_ref().is_ok_and(|s| s.id == id))
        .map(|((p, _), _)| p)
}

/// Checks the session files in `dir` without writing anything (the CLI's
/// `exphub sessions validate [DIR]`): per `*.json` file, in name order, `Ok("<id>: <title>")`
/// for a file that would load, or `Err(what is wrong)` for one that would be reported at
/// start-up. A file without session id is `Ok` and says it would get one.
pub fn validate_dir(dir: impl AsRef<Path>) -> Vec<(PathBuf, Result<String, String>)> {
    let dir = dir.as_ref();
    let scan = match scan(dir) {
        Ok(scan) => scan,
        Err(e) => return vec![(dir.to_path_buf(), Err(format!("cannot read directory: {e}")))],
    };
    let verdicts = classify(&scan.files);
    let mut out: Vec<(PathBuf, Result<String, String>)> =
        scan.errors.into_iter().map(|p| (p.path, Err(p.message))).collect();
    for ((path, result), verdict) in scan.files.into_iter().zip(verdicts) {
        let line = match (result, verdict) {
            (Ok(s), Verdict::Load) => {
                let note = if s.participants.iter().any(|p| p.id.is_empty()) {
                    " (participants without id get one on start)"
                } else {
                    ""
                };
                let journal = match read_journal(&path) {
                    None => String::new(),
                    Some(Err(e)) => {
                        out.push((path, Err(e)));
                        continue;
                    }
                    Some(Ok(r)) if r.stale => " (a journal already folded in: removed on start)".into(),
                    Some(Ok(r)) => match r.corrupt {
                        Some((line, why)) => {
                            out.push((journal_path(&path), Err(format!("line {line} is not a change: {why}"))));
                            continue;
                        }
                        None => format!(" (journal: {} change(s) folded in on start)", r.changes.len()),
                    },
                };
                Ok(format!("{}: {}{note}{journal}", s.id, s.title))
            }
            (Ok(s), Verdict::Import) => Ok(format!("(no session id; gets a new id and file on start): {}", s.title)),
            (_, Verdict::Broken(m)) | (_, Verdict::Duplicate(m)) | (Err(m), _) => Err(m),
        };
        out.push((path, line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::{new_id, parse_session, prepare_new_session};
    use super::*;
    use serde_json::{json, Value};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("exphub-session-test-{name}-{}", new_id()));
            fs::create_dir_all(&path).unwrap();
            TestDir(path)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, text).unwrap();
            p
        }
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> =
                fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn open(dir: &TestDir) -> (SessionStore, Vec<Session>, Vec<LoadProblem>) {
        SessionStore::open(&dir.0).unwrap()
    }

    #[test]
    fn creates_missing_dir() {
        let d = TestDir::new("mkdir");
        let sub = d.0.join("a/b");
        let (store, sessions, problems) = SessionStore::open(&sub).unwrap();
        assert!(sub.is_dir() && sessions.is_empty() && problems.is_empty());
        assert_eq!(store.dir(), sub);
    }

    #[test]
    fn main_format_file_loads_untouched_until_saved() {
        let d = TestDir::new("main");
        let mut text = MAIN_FORMAT_EXAMPLE.replace("\"creation_time\": 0", "\"creation_time\": 1684691300000");
        text.push('\n');
        let path = d.write("ae839e5e6f.json", &text);
        let (store, sessions, problems) = open(&d);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.creation_time, 0, "forced to 0 on load");
        assert_eq!(s.start_time, 1684691314078);
        assert!(s.participants.iter().all(|p| !p.local_stream && p.view.is_empty() && p.canvas_id.is_empty()));
        // Loading does not rewrite it.
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        // Saving writes the full dev format, 4-space indented, to the same file.
        store.save(s).unwrap();
        let written = fs::read_to_string(&path).unwrap();
        assert!(written.contains("\n    \"id\": \"ae839e5e6f\""));
        assert!(written.contains("\"lastMessageReadTime\": 0"));
        assert!(written.contains("\"asymmetric_filters_id\": \"\""));
        assert_eq!(parse_session_str(&written).unwrap(), *s);
        assert_eq!(d.names(), vec!["ae839e5e6f.json"]);
    }

    #[test]
    fn dev_format_round_trips_through_the_store() {
        let d = TestDir::new("dev");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        let (store, sessions, problems) = open(&d);
        assert!(problems.is_empty(), "{problems:?}");
        let mut s = sessions[0].clone();
        let first = s.participants[0].chat[0].clone();
        s.participants[0].chat.push(first);
        s.notes.clear();
        store.save(&s).unwrap();
        drop(store);
        let (_, again, problems) = open(&d);
        assert!(problems.is_empty());
        assert_eq!(again, vec![s]);
        let original: Value = serde_json::from_str(DEV_FORMAT_EXAMPLE).unwrap();
        assert_eq!(original["id"], "ae839e5e6f");
    }

    #[test]
    fn broken_files_are_reported_and_never_touched() {
        let d = TestDir::new("broken");
        let bad_json = "{ \"id\": \"aaaaaaaaaa\", oops";
        let mut invalid = main_value();
        invalid["id"] = json!("bbbbbbbbbb");
        invalid["participants"][0]["banned"] = json!("x");
        let invalid = serde_json::to_string_pretty(&invalid).unwrap();
        let mut dup = main_value();
        dup["id"] = json!("cccccccccc");
        dup["participants"][1]["id"] = dup["participants"][0]["id"].clone();
        let dup = dup.to_string();
        let not_utf8: &[u8] = b"{\"id\": \"\xff\"}";
        let p1 = d.write("aaaaaaaaaa.json", bad_json);
        let p2 = d.write("bbbbbbbbbb.json", &invalid);
        let p3 = d.write("cccccccccc.json", &dup);
        let p4 = d.0.join("dddddddddd.json");
        fs::write(&p4, not_utf8).unwrap();
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);

        let (store, sessions, problems) = open(&d);
        assert_eq!(sessions.len(), 1);
        let got: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(got, vec![p1.clone(), p2.clone(), p3.clone(), p4.clone()]);
        assert!(problems[0].message.starts_with("not a valid session: not valid JSON:"), "{}", problems[0]);
        assert_eq!(
            problems[1].message,
            r#"not a valid session: participants[0].banned: invalid type: string "x", expected a boolean"#
        );
        assert!(problems[2].message.contains("duplicate participant id"));
        assert!(problems[3].message.starts_with("not UTF-8"));

        // Saving another session leaves them byte-identical ...
        let mut s = sessions[0].clone();
        s.title = "changed".into();
        store.save(&s).unwrap();
        // ... and a session whose file name would be a broken file's is refused.
        let mut intruder = s.clone();
        intruder.id = "bbbbbbbbbb".into();
        assert!(store.id_taken("bbbbbbbbbb"));
        assert!(store.save(&intruder).is_err());
        assert!(store.save_revision(&intruder, 1).is_err());
        assert!(store.delete(&"bbbbbbbbbb".into()).is_err());
        drop(store);
        assert_eq!(fs::read_to_string(&p1).unwrap(), bad_json);
        assert_eq!(fs::read_to_string(&p2).unwrap(), invalid);
        assert_eq!(fs::read_to_string(&p3).unwrap(), dup);
        assert_eq!(fs::read(&p4).unwrap(), not_utf8);
        // And on the next start they are reported again, not lost.
        let (_, _, problems) = open(&d);
        assert_eq!(problems.len(), 4);
    }

    #[test]
    fn file_without_id_is_imported_once() {
        let d = TestDir::new("import");
        let v = new_session_value();
        let original = d.write("my-draft.json", &v.to_string());
        let (store, sessions, problems) = open(&d);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.id.as_str().len(), 10);
        assert!(s.participants.iter().all(|p| p.id.as_str().len() == 10));
        assert!(!original.exists(), "the original is removed");
        let file = d.0.join(format!("{}.json", s.id));
        assert_eq!(store.path_of(s.id.as_str()), Some(file.clone()));
        assert_eq!(d.names(), vec![format!("{}.json", s.id)]);
        drop(store);
        // The next start loads the same session under the same id: no proliferation.
        let (_, again, problems) = open(&d);
        assert!(problems.is_empty());
        assert_eq!(again, sessions);
    }

    #[test]
    fn participants_without_id_get_stable_ids() {
        let d = TestDir::new("pids");
        let mut v = main_value();
        v["participants"][1]["id"] = json!("");
        v["participants"][2]["id"] = json!("");
        let path = d.write("ae839e5e6f.json", &v.to_string());
        let (_, sessions, problems) = open(&d);
        assert!(problems.is_empty());
        let ids: HashSet<_> = sessions[0].participants.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains("9ba5fdccde"));
        let on_disk = parse_session_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(on_disk.participants, sessions[0].participants);
    }

    #[test]
    fn duplicate_session_ids() {
        let d = TestDir::new("dups");
        let mut copy = main_value();
        copy["title"] = json!("backup copy");
        // "0-backup.json" sorts first, but the file named after the id wins.
        let backup = d.write("0-backup.json", &copy.to_string());
        d.write("ae839e5e6f.json", MAIN_FORMAT_EXAMPLE);
        copy["title"] = json!("another copy");
        let other = d.write("zz-copy.json", &copy.to_string());
        let (store, sessions, problems) = open(&d);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].title, "Example Session 1");
        assert_eq!(problems.iter().map(|p| p.path.clone()).collect::<Vec<_>>(), vec![backup.clone(), other]);
        assert!(problems[0].message.contains("duplicate session id \"ae839e5e6f\""));
        store.save(&sessions[0]).unwrap();
        assert!(fs::read_to_string(&backup).unwrap().contains("backup copy"));

        // Without a canonical file, the first by name wins and keeps its own file name.
        let d = TestDir::new("dups2");
        d.write("a.json", MAIN_FORMAT_EXAMPLE);
        d.write("b.json", MAIN_FORMAT_EXAMPLE);
        let (store, sessions, problems) = open(&d);
        assert_eq!(sessions.len(), 1);
        assert_eq!(problems[0].path, d.0.join("b.json"));
        assert_eq!(store.path_of("ae839e5e6f"), Some(d.0.join("a.json")));
        store.save(&sessions[0]).unwrap();
        assert_eq!(d.names(), vec!["a.json", "b.json"]);
    }

    #[test]
    fn new_session_save_and_delete() {
        let d = TestDir::new("new");
        let (store, _, _) = open(&d);
        let s = parse_session(new_session_value()).unwrap();
        let s = prepare_new_session(s, |id| store.id_taken(id)).unwrap();
        store.save(&s).unwrap();
        let file = d.0.join(format!("{}.json", s.id));
        assert!(file.is_file());
        assert_eq!(d.names(), vec![format!("{}.json", s.id)], "no temp file left behind");
        assert!(store.id_taken(s.id.as_str()));
        store.delete(&s.id).unwrap();
        assert!(!file.exists());
        assert!(!store.id_taken(s.id.as_str()));
        assert_eq!(store.delete(&s.id).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(d.names().is_empty());
    }

    #[test]
    fn save_refuses_foreign_files_and_bad_ids() {
        let d = TestDir::new("foreign");
        let (store, _, _) = open(&d);
        let mut s = parse_session_str(MAIN_FORMAT_EXAMPLE).unwrap();
        // A file that appeared after start-up is not overwritten.
        d.write("ae839e5e6f.json", "not mine");
        assert_eq!(store.save(&s).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(d.0.join("ae839e5e6f.json")).unwrap(), "not mine");
        for id in ["", "../escape", "a/b", ".hidden", "x.json\0"] {
            s.id = id.into();
            assert_eq!(store.save(&s).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{id:?}");
        }
        assert!(!d.0.parent().unwrap().join("escape.json").exists());
    }

    #[test]
    fn odd_ids_from_files_are_reported_and_left_alone() {
        let d = TestDir::new("oddid");
        let mut v = main_value();
        v["id"] = json!("../../etc/x");
        let path = d.write("odd.json", &v.to_string());
        let (store, sessions, problems) = open(&d);
        assert!(sessions.is_empty());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, path);
        assert_eq!(store.path_of("../../etc/x"), None);
        assert_eq!(fs::read_to_string(&path).unwrap(), v.to_string());
        assert_eq!(d.names(), vec!["odd.json"]);
    }

    #[test]
    fn failed_write_leaves_target_and_no_temp() {
        let d = TestDir::new("fail");
        // Renaming a file over a non-empty directory fails after the temp file was written.
        let target = d.0.join("x.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "k").unwrap();
        assert!(write_and_rename(&d.0, &target, b"{}").is_err());
        assert_eq!(d.names(), vec!["x.json"]);
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "k");
    }

    #[test]
    fn revisions_drop_stale_snapshots() {
        let d = TestDir::new("rev");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        let (store, sessions, _) = open(&d);
        let mut newer = sessions[0].clone();
        newer.title = "rev 2".into();
        let mut older = sessions[0].clone();
        older.title = "rev 1".into();
        assert!(store.save_revision(&newer, 2).unwrap());
        assert!(!store.save_revision(&older, 1).unwrap());
        assert!(!store.save_revision(&newer, 2).unwrap());
        let path = d.0.join("ae839e5e6f.json");
        assert_eq!(parse_session_str(&fs::read_to_string(&path).unwrap()).unwrap().title, "rev 2");
        store.delete(&newer.id).unwrap();
        assert!(!store.save_revision(&newer, 3).unwrap(), "a deleted session stays deleted");
        assert!(!path.exists());
    }

    #[test]
    fn current_bytes_carry_the_journal_for_readers_outside_the_hub() {
        use super::super::journal::Change;
        use super::super::model::Note;
        let d = TestDir::new("current");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        let (store, sessions, _) = open(&d);
        let path = d.0.join("ae839e5e6f.json");
        assert_eq!(current_bytes(&path).unwrap(), fs::read(&path).unwrap(), "no journal: the file");
        let note = Change::Note { note: Note { time: 7, speakers: vec![], content: "journaled".into() } };
        store.append(&sessions[0].id, &note.line()).unwrap();
        let now = parse_session_str(std::str::from_utf8(&current_bytes(&path).unwrap()).unwrap()).unwrap();
        assert_eq!(now.notes.len(), sessions[0].notes.len() + 1);
        assert_eq!(now.notes.last().unwrap().content, "journaled");
    }

    #[test]
    fn journal_is_replayed_at_open_and_folded_by_a_full_write() {
        use super::super::journal::Change;
        use super::super::model::Note;
        let d = TestDir::new("journal");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        let note = |i: i64| Change::Note { note: Note { time: i, speakers: vec![], content: format!("n{i}") } };
        let (store, sessions, _) = open(&d);
        let id = sessions[0].id.clone();
        let notes_before = sessions[0].notes.len();
        let path = d.0.join("ae839e5e6f.json");
        let file_before = fs::read(&path).unwrap();
        store.append(&id, &note(1).line()).unwrap();
        store.append(&id, &note(2).line()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), file_before, "an append does not rewrite the file");
        // A torn last line (a crash mid-append) is ignored.
        let mut j = fs::OpenOptions::new().append(true).open(journal_path(&path)).unwrap();
        j.write_all(&note(3).line()[..7]).unwrap();
        drop((j, store));
        let ok = validate_dir(&d.0);
        assert!(ok[0].1.as_ref().unwrap().contains("journal: 2 change(s)"), "{ok:?}");
        assert_eq!(read_with_journal(&path).unwrap().notes.len(), notes_before + 2);
        let (store, sessions, problems) = open(&d);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sessions[0].notes.len(), notes_before + 2, "replayed");
        assert!(!journal_path(&path).exists(), "folded at open");
        assert_eq!(parse_session_str(&fs::read_to_string(&path).unwrap()).unwrap().notes.len(), notes_before + 2);
        // A journal left beside a file that already holds it (a crash between the full write
        // and the journal's removal) is stale: not applied twice.
        store.append(&id, &note(4).line()).unwrap();
        let journal = fs::read(journal_path(&path)).unwrap();
        let mut s = sessions[0].clone();
        note(4).apply(&mut s);
        store.save(&s).unwrap();
        assert!(!journal_path(&path).exists());
        fs::write(journal_path(&path), journal).unwrap();
        drop(store);
        let (_store, sessions, problems) = open(&d);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sessions[0].notes.len(), notes_before + 3, "once");
        assert!(!journal_path(&path).exists(), "the stale journal is removed");
    }

    #[test]
    fn ignores_other_files_and_cleans_stale_temps() {
        let d = TestDir::new("other");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        d.write("notes.txt", "x");
        d.write(".hidden.json", "x");
        d.write(".exphub-0123456789.tmp", "half-written");
        fs::create_dir(d.0.join("ae839e5e6f")).unwrap(); // a recordings directory
        fs::create_dir(d.0.join("dir.json")).unwrap();
        let (_, sessions, problems) = open(&d);
        assert_eq!(sessions.len(), 1);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(d.names(), vec![".hidden.json", "ae839e5e6f", "ae839e5e6f.json", "dir.json", "notes.txt"]);
    }

    #[test]
    fn usable_from_several_threads() {
        let d = TestDir::new("threads");
        let (store, _, _) = open(&d);
        let store = std::sync::Arc::new(store);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut s = parse_session(new_session_value()).unwrap();
                    s.title = format!("t{i}");
                    let s = prepare_new_session(s, |id| store.id_taken(id)).unwrap();
                    for _ in 0..3 {
                        store.save(&s).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(d.names().len(), 4);
        assert!(d.names().iter().all(|n| n.ends_with(".json") && !n.starts_with('.')));
    }

    #[test]
    fn validate_dir_reports_without_writing() {
        let d = TestDir::new("validate");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        d.write("broken.json", "{");
        d.write("draft.json", &new_session_value().to_string());
        d.write("dup.json", DEV_FORMAT_EXAMPLE);
        d.write(".exphub-aaaaaaaaaa.tmp", "stale");
        let before = d.names();
        let report = validate_dir(&d.0);
        assert_eq!(d.names(), before, "nothing written, renamed or removed");
        let names: Vec<_> = report.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["ae839e5e6f.json", "broken.json", "draft.json", "dup.json"]);
        assert_eq!(report[0].1, Ok("ae839e5e6f: Example Session 1".into()));
        assert!(report[1].1.is_err());
        assert!(report[2].1.as_ref().unwrap().contains("no session id"));
        assert!(report[3].1.as_ref().unwrap_err().contains("duplicate session id"));

        let missing = validate_dir(d.0.join("missing"));
        assert_eq!(missing.len(), 1);
        assert!(missing[0].1.as_ref().unwrap_err().starts_with("cannot read directory"));
    }

    #[test]
    fn shipped_example_loads() {
        // `DEV_FORMAT_EXAMPLE` is `sessions/ae839e5e6f.json` of the repository.
        let d = TestDir::new("example");
        d.write("ae839e5e6f.json", DEV_FORMAT_EXAMPLE);
        let (_, sessions, problems) = open(&d);
        assert!(problems.is_empty(), "{problems:?}");
        let s = &sessions[0];
        assert_eq!(s.id, "ae839e5e6f");
        assert_eq!((s.creation_time, s.start_time, s.end_time), (0, 0, 0));
        assert!(s.participants.iter().all(|p| !p.canvas_id.is_empty() && p.view.len() == 3));
        assert_eq!(validate_dir(&d.0)[0].1, Ok("ae839e5e6f: Example Session 1".into()));
        // The shipped file is exactly what the store writes.
        assert_eq!(String::from_utf8(to_json(s).unwrap()).unwrap(), DEV_FORMAT_EXAMPLE);
    }
}
