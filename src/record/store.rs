//! The object store that recordings are uploaded to (`--object-store`): a local directory
//! (`file:///dir`, for tests and small labs) or an S3-compatible bucket
//! (`s3://bucket/prefix?endpoint=http://host:port&region=…`, credentials from the standard
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment), through the `object_store`
//! crate. Also where the object keys are made, and reading objects back for the export.
//!
//! Keys: `sessions/<session_id>/<path>` on a single node; in cluster mode
//! `sessions/<session_id>/e<epoch>-<node>/<path>`, so that the runs of one experiment on
//! several nodes never overwrite each other. `<path>` is the file's path relative to the
//! session's recording directory.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use object_store::path::Path as Key;
pub use object_store::{ObjectStore, ObjectStoreExt};

/// Where recordings go, as `--object-store` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:///dir`: a local directory (created if missing).
    Dir(PathBuf),
    /// `s3://bucket/prefix?endpoint=…&region=…`.
    S3 { bucket: String, prefix: String, endpoint: Option<String>, region: Option<String> },
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Dir(d) => write!(f, "file://{}", d.display()),
            StoreUrl::S3 { bucket, prefix, endpoint, .. } => {
                write!(f, "s3://{bucket}/{prefix}")?;
                match endpoint {
                    Some(e) => write!(f, " at {e}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl StoreUrl {
    /// Parses `file:///dir` or `s3://bucket[/prefix][?endpoint=URL][&region=NAME]`.
    pub fn parse(s: &str) -> Result<StoreUrl, String> {
        let s = s.trim();
        if let Some(dir) = s.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(format!(
                    "{s:?}: a directory store needs an absolute path, e.g. file:///var/exphub/objects"
                ));
            }
            return Ok(StoreUrl::Dir(PathBuf::from(dir)));
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(format!("{s:?}: expected file:///DIR or s3://BUCKET/PREFIX?endpoint=URL&region=NAME"));
        };
        let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
        if bucket.is_empty() {
            return Err(format!("{s:?}: no bucket name"));
        }
        let (mut endpoint, mut region) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) if v.starts_with("http://") || v.starts_with("https://") => {
                    endpoint = Some(v.trim_end_matches('/').to_owned())
                }
                Some(("endpoint", v)) => return Err(format!("{s:?}: endpoint {v:?} is not an http(s) URL")),
                Some(("region", v)) if !v.is_empty() => region = Some(v.to_owned()),
                _ => return Err(format!("{s:?}: unknown parameter {pair:?} (endpoint=URL and region=NAME are known)")),
            }
        }
        Ok(StoreUrl::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned(), endpoint, region })
    }

    /// Opens the store (no request is made: a wrong bucket or key shows at the first upload).
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, String> {
        match self {
            StoreUrl::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| e.to_string())?;
                Ok(Arc::new(fs))
            }
            StoreUrl::S3 { bucket, prefix, endpoint, region } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                let s3 = b.build().map_err(|e| e.to_string())?;
                if prefix.is_empty() {
                    Ok(Arc::new(s3))
                } else {
                    Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str())))
                }
            }
        }
    }
}

/// Which run of an experiment a file belongs to in cluster mode: its placement's epoch and the
/// node that recorded it. `None` on a single node.
pub type RunTag = Option<(i64, String)>;

/// The key prefix of a session's objects (ends with `/`).
pub fn session_prefix(session_id: &str) -> String {
    format!("sessions/{session_id}/")
}

/// The key of file `rel` (relative to the session directory).
pub fn key(session_id: &str, tag: &RunTag, rel: &str) -> Key {
    let mut parts = vec!["sessions".to_owned(), session_id.to_owned()];
    if let Some((epoch, node)) = tag {
        parts.push(format!("e{epoch}-{node}"));
    }
    parts.extend(rel.split('/').filter(|p| !p.is_empty()).map(str::to_owned));
    Key::from_iter(parts)
}

/// An object store error as an `io::Error` (not found stays `NotFound`).
pub fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        e => io::Error::other(e.to_string()),
    }
}

/// Every object under `prefix` with its size, sorted by key.
pub async fn list(store: &dyn ObjectStore, prefix: &str) -> io::Result<Vec<(String, u64)>> {
    use futures_util::StreamExt;
    let p = Key::from(prefix.trim_end_matches('/'));
    let mut s = store.list(Some(&p));
    let mut out = vec![];
    while let Some(m) = s.next().await {
        let m = m.map_err(io_error)?;
        out.push((m.location.to_string(), m.size));
    }
    out.sort();
    Ok(out)
}

/// A blocking reader of one object, for the tar writer on a blocking thread: the object's
/// bytes stream in as the archive is written (never the whole object in memory).
pub struct ObjectReader {
    rt: tokio::runtime::Handle,
    stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    buf: bytes::Bytes,
}

impl ObjectReader {
    /// Opens object `key` (call from a thread that may block, with `rt` a runtime's handle).
    pub fn open(rt: tokio::runtime::Handle, store: Arc<dyn ObjectStore>, key: &str) -> io::Result<ObjectReader> {
        let k = Key::from(key);
        let got = rt.block_on(async move { store.get(&k).await }).map_err(io_error)?;
        Ok(ObjectReader { rt, stream: got.into_stream(), buf: bytes::Bytes::new() })
    }
}

impl io::Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        use futures_util::StreamExt;
        while self.buf.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(io_error(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why_not() {
        assert_eq!(StoreUrl::parse("file:///tmp/o"), Ok(StoreUrl::Dir("/tmp/o".into())));
        assert!(StoreUrl::parse("file://rel/dir").unwrap_err().contains("absolute"));
        assert_eq!(
            StoreUrl::parse("s3://lab/exphub/?endpoint=http://127.0.0.1:9000/&region=eu-central-1"),
            Ok(StoreUrl::S3 {
                bucket: "lab".into(),
                prefix: "exphub".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-central-1".into()),
            })
        );
        assert_eq!(
            StoreUrl::parse("s3://lab"),
            Ok(StoreUrl::S3 { bucket: "lab".into(), prefix: String::new(), endpoint: None, region: None })
        );
        assert!(StoreUrl::parse("s3:///x").unwrap_err().contains("bucket"));
        assert!(StoreUrl::parse("s3://b?endpoint=ftp://x").unwrap_err().contains("endpoint"));
        assert!(StoreUrl::parse("s3://b?secret=x").unwrap_err().contains("unknown parameter"));
        assert!(StoreUrl::parse("gs://b").is_err());
    }

    #[test]
    fn keys_name_the_run_in_cluster_mode() {
        assert_eq!(key("s1", &None, "p_raw_video_1-1.webm").as_ref(), "sessions/s1/p_raw_video_1-1.webm");
        assert_eq!(key("s1", &Some((3, "b".into())), "processed/p.csv").as_ref(), "sessions/s1/e3-b/processed/p.csv");
    }
}
