//! One archive per session: the session file, the manifest, the event log and every media
//! file, as an uncompressed tar (media is already compressed; tar streams without a temp
//! file and opens everywhere: `tar xf`, 7-Zip, Python's `tarfile`).
//!
//! Layout inside the archive: `<session_id>/session.json`, `<session_id>/manifest.json`,
//! `<session_id>/events.jsonl`, then the media files, all under `<session_id>/`, then the
//! post-processing results (`<session_id>/processed/*.csv`).
//!
//! With an object store (`--object-store`) the archive is built from the store's copies
//! ([`contents_from_store`]), so any node can export an experiment that ran on another: the
//! same layout on a single node; in cluster mode each run's files under
//! `<session_id>/e<epoch>-<node>/`. A file that is listed (in a stored manifest, or in the
//! `artifacts` index) but not in the store is never left out silently: the export fails,
//! naming it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::store::{self, ObjectStore, ObjectStoreExt};

/// Where an archive entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk, archived as far as it is written when its turn comes.
    File(PathBuf),
    /// Bytes made when the archive was planned (the session with its journal applied).
    Bytes(Vec<u8>),
    /// An object of the store, streamed when its turn comes.
    Object(Object),
}

/// An object of the store and its size (from its listing).
#[derive(Clone)]
pub struct Object {
    pub store: Arc<dyn ObjectStore>,
    /// The runtime its reads run on (the archive is written on a blocking thread).
    pub rt: tokio::runtime::Handle,
    pub key: String,
    pub size: u64,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Object({}, {} bytes)", self.key, self.size)
    }
}

impl PartialEq for Object {
    fn eq(&self, o: &Self) -> bool {
        (&self.key, self.size) == (&o.key, o.size)
    }
}
impl Eq for Object {}

/// Why an archive cannot be built from the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreExportError {
    #[error("no copies of this session in the object store")]
    NotFound,
    /// Listed but not (completely) in the store: the archive would be partial.
    #[error("not in the object store (yet): {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("the object store: {0}")]
    Io(#[from] io::Error),
}

/// What goes into the archive of `session_id` from the object store: the session file (from
/// this node's directory, if it has it), then the objects `index` lists (cluster mode: the
/// `artifacts` rows' keys), or else every object under the session's prefix. Every file a
/// stored manifest lists, and every indexed object, must be in the store with its size.
pub async fn contents_from_store(
    objects: Arc<dyn ObjectStore>,
    index: Option<Vec<crate::cluster::db::Artifact>>,
    session_file: Option<&Path>,
    session_id: &str,
) -> Result<Vec<(String, Source)>, StoreExportError> {
    if !crate::session::is_file_safe_id(session_id) {
        return Err(StoreExportError::NotFound);
    }
    let prefix = store::session_prefix(session_id);
    let listed: std::collections::HashMap<String, u64> =
        store::list(objects.as_ref(), &prefix).await?.into_iter().collect();
    // (directory of the run's copies under the prefix, path relative to it, expected size).
    let mut wanted: Vec<(String, String, Option<u64>)> = match &index {
        Some(rows) => rows
            .iter()
            .map(|a| {
                let rel_dir = a.object_key.strip_prefix(&prefix).and_then(|k| k.strip_suffix(&a.path)).unwrap_or("");
                (rel_dir.to_owned(), a.path.clone(), Some(a.bytes as u64))
            })
            .collect(),
        None => listed
            .iter()
            .filter_map(|(k, size)| Some((String::new(), k.strip_prefix(&prefix)?.to_owned(), Some(*size))))
            .collect(),
    };
    if wanted.is_empty() {
        return Err(StoreExportError::NotFound);
    }
    // Every stored manifest's files must be there too (a file not uploaded yet, or lost).
    let manifests: Vec<String> =
        wanted.iter().filter(|(_, rel, _)| rel == super::MANIFEST).map(|(d, _, _)| d.clone()).collect();
    for dir in manifests {
        let key = format!("{prefix}{dir}{}", super::MANIFEST);
        let bytes = objects.get(&store::Key::from(key.as_str())).await.map_err(store::io_error)?.bytes().await;
        let bytes = bytes.map_err(store::io_error)?;
        let Ok(m) = serde_json::from_slice::<super::Manifest>(&bytes) else {
            return Err(StoreExportError::Missing(vec![format!("{dir}{} (does not parse)", super::MANIFEST)]));
        };
        // In cluster mode a node's copies of one path are indexed once (the newest epoch's).
        let node = |d: &str| d.split_once('-').map(|(_, n)| n.to_owned());
        let same = |d: &str| if index.is_some() { node(d) == node(&dir) } else { d == dir };
        for f in &m.files {
            match wanted.iter_mut().find(|(d, rel, _)| same(d) && *rel == f.file) {
                Some(w) if f.bytes.is_some() && index.is_none() => w.2 = f.bytes,
                Some(_) => {}
                None => wanted.push((dir.clone(), f.file.clone(), f.bytes)),
            }
        }
    }
    let mut missing = vec![];
    for (dir, rel, size) in &wanted {
        let key = format!("{prefix}{dir}{rel}");
        match (listed.get(&key), size) {
            (Some(have), Some(want)) if have != want => missing.push(format!("{dir}{rel} ({have} of {want} bytes)")),
            (Some(_), _) => {}
            (None, _) => missing.push(format!("{dir}{rel}")),
        }
    }
    if !missing.is_empty() {
        return Err(StoreExportError::Missing(missing));
    }
    // Each run's copies together, its manifest and event log first.
    let rank = |rel: &str| match rel {
        super::MANIFEST => 0,
        super::EVENTS => 1,
        _ => 2,
    };
    wanted.sort_by(|a, b| (&a.0, rank(&a.1), &a.1).cmp(&(&b.0, rank(&b.1), &b.1)));
    wanted.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let rt = tokio::runtime::Handle::current();
    let mut out = vec![];
    if let Some(f) = session_file {
        let bytes = crate::session::store::current_bytes(f)?;
        out.push((format!("{session_id}/session.json"), Source::Bytes(bytes)));
    }
    for (dir, rel, _) in wanted {
        let key = format!("{prefix}{dir}{rel}");
        let size = listed.get(&key).copied().unwrap_or(0);
        let obj = Object { store: objects.clone(), rt: rt.clone(), key, size };
        out.push((format!("{session_id}/{dir}{rel}"), Source::Object(obj)));
    }
    Ok(out)
}

/// What goes into the archive of `session_id`: (name in the archive, source). The session
/// file is taken as the session stands, journal included. Errors if the session has no
/// recording directory.
pub fn contents(
    sessions_dir: &Path,
    session_file: Option<&Path>,
    session_id: &str,
) -> io::Result<Vec<(String, Source)>> {
    if !crate::session::is_file_safe_id(session_id) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a session id"));
    }
    let dir = sessions_dir.join(session_id);
    let mut media = vec![];
    let mut first = vec![];
    for e in fs::read_dir(&dir)? {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue; // directories: `processed/` is added below
        }
        let Ok(name) = e.file_name().into_string() else { continue };
        if name.starts_with('.') {
            continue; // temp files of atomic writes
        }
        match name.as_str() {
            super::MANIFEST | super::EVENTS => first.push(name),
            _ => media.push(name),
        }
    }
    first.sort_by_key(|n| n != super::MANIFEST);
    media.sort();
    let mut out = vec![];
    if let Some(f) = session_file {
        let bytes = crate::session::store::current_bytes(f)?;
        out.push((format!("{session_id}/session.json"), Source::Bytes(bytes)));
    }
    for n in first.into_iter().chain(media) {
        out.push((format!("{session_id}/{n}"), Source::File(dir.join(&n))));
    }
    // The finished CSVs only: one being written has a temporary name starting with '.'.
    let processed = dir.join(super::faces::DIR);
    let mut csvs: Vec<String> = match fs::read_dir(&processed) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && n.ends_with(".csv"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e),
    };
    csvs.sort();
    for n in csvs {
        out.push((format!("{session_id}/{}/{n}", super::faces::DIR), Source::File(processed.join(&n))));
    }
    Ok(out)
}

/// Writes the tar of `files` to `out`. Files still being written are archived as far as they
/// are on disk when their turn comes.
pub fn write_archive(files: &[(String, Source)], out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    for (name, source) in files {
        let path = match source {
            Source::File(path) => path,
            Source::Object(o) => {
                let r = store::ObjectReader::open(o.rt.clone(), o.store.clone(), &o.key)?;
                let mut h = tar::Header::new_gnu();
                h.set_size(o.size);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, name, io::Read::take(r, o.size))?;
                continue;
            }
            Source::Bytes(bytes) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                );
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, name, bytes.as_slice())?;
                continue;
            }
        };
        let mut f = fs::File::open(path)?;
        // A file growing while we read it: archive the length it has now.
        let len = f.metadata()?.len();
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(
            fs::metadata(path)?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, io::Read::take(&mut f, len))?;
    }
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_the_session_file_manifest_first_and_media() {
        let d = std::env::temp_dir().join(format!("exphub-export-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(d.join("s1").join("processed")).unwrap();
        fs::write(d.join("s1.json"), b"{}").unwrap();
        fs::write(d.join("s1").join("p_raw_video_1-1.webm"), b"media").unwrap();
        fs::write(d.join("s1").join("events.jsonl"), b"{}\n").unwrap();
        fs::write(d.join("s1").join("manifest.json"), b"{}").unwrap();
        fs::write(d.join("s1").join(".tmp-x"), b"").unwrap();
        let files = contents(&d, Some(&d.join("s1.json")), "s1").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["s1/session.json", "s1/manifest.json", "s1/events.jsonl", "s1/p_raw_video_1-1.webm"]);
        // Post-processing results: the finished CSVs, not one being written.
        fs::write(d.join("s1/processed/p.run-1.csv"), b"frame\n1\n").unwrap();
        fs::write(d.join("s1/processed/.p.run-2.csv.partial"), b"fra").unwrap();
        let with_csv = contents(&d, None, "s1").unwrap();
        let names: Vec<&str> = with_csv.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["s1/manifest.json", "s1/events.jsonl", "s1/p_raw_video_1-1.webm", "s1/processed/p.run-1.csv"]
        );
        let mut buf = vec![];
        write_archive(&files, &mut buf).unwrap();
        let mut a = tar::Archive::new(&buf[..]);
        let got: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path().unwrap().display().to_string(), e.size()))
            .collect();
        assert_eq!(got[3], ("s1/p_raw_video_1-1.webm".to_string(), 5));
        assert!(contents(&d, None, "../etc").is_err());
        assert!(contents(&d, None, "nope").is_err());
        let _ = fs::remove_dir_all(d);
    }
}
