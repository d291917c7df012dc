//! # exphub
//!
//! A server for live video-call experiments in behavioural research, wire-compatible with
//! SynthARium (see `ARCHITECTURE.md` for the full map and the invariants).
//!
//! Code map:
//! - [`config`]: one validated [`config::Config`] from flags, `EXPHUB_*` env and a JSON file.
//! - [`protocol`]: the only module that knows the JSON wire format (envelope, requests,
//!   replies, error dicts, the HTTP signalling bodies).
//! - [`session`]: the session data model, its validation, the participant views, and the
//!   atomic on-disk store (`sessions/<id>.json`).
//! - [`hub`]: the control plane: one task owning sessions, experiments, connections and
//!   subscriptions; handles every data-channel message.
//! - [`peer`]: the only module that touches the `webrtc` crate: connections, data channels,
//!   and the RTP forwarding plane ([`peer::forward`]). (The protocol client of the tests and
//!   the load tool is a crate of its own, `exphub-client` in `client/`.)
//! - [`media`]: the only module that touches ffmpeg: RTP frame assembly, codecs, the per-track
//!   pipeline (decode once, filter, encode once) and recorder (muxing without re-encoding).
//! - [`record`]: research data on disk: `manifest.json`, `events.jsonl`, the export archive.
//! - [`http`]: axum routes (`/offer`, `/addIceCandidate`, `/healthz`, `/metrics`, ...).
//! - [`metrics`]: lock-free counters rendered as Prometheus text.
//! - `filters` (workspace crate): the filter SDK and catalogue.

pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod peer;
pub mod protocol;
pub mod record;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

/// A running server: its address, how to stop it, and how to notice that it failed.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: hub::HubHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The HTTP server's and the hub's tasks; `None` once [`Server::failed`] saw them end.
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    hub_task: Option<tokio::task::JoinHandle<()>>,
    /// Cluster mode: this node's membership and its internal API's address.
    pub cluster: Option<Arc<cluster::Cluster>>,
    pub internal_addr: Option<SocketAddr>,
    /// `--object-store`: the uploader, finished (bounded) at shutdown.
    uploader: Option<record::uploader::Uploader>,
}

/// Why a server stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The control task (the hub) ended: a bug. Every offer would get 503 from now on, so the
    /// process should end and be restarted; acknowledged changes are on disk already.
    #[error("the control task ended unexpectedly: {0}")]
    HubEnded(String),
    /// The HTTP server ended.
    #[error("the HTTP server ended unexpectedly: {0}")]
    HttpEnded(String),
}

impl Server {
    /// Stops accepting, stops every experiment (persisting their end), closes connections.
    pub async fn shutdown(self) {
        self.hub.shutdown().await;
        // The records closed above queued their last manifest and event log.
        if let Some(u) = self.uploader.clone() {
            let _ = tokio::task::spawn_blocking(move || u.close(std::time::Duration::from_secs(10))).await;
        }
        if let Some(c) = &self.cluster {
            c.leave().await;
        }
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task {
            let _ = t.await;
        }
        if let Some(t) = self.hub_task {
            let _ = t.await;
        }
    }

    /// Resolves only if the server stops working on its own: the control task died (a panic)
    /// or the HTTP server ended. `exphub serve` waits on this beside the signals and exits
    /// non-zero, so that a supervisor restarts it. Cancel-safe; after it has reported a
    /// failure it reports the other task's end, if any, and then never resolves.
    pub async fn failed(&mut self) -> ServerError {
        async fn ended<T>(t: &mut Option<tokio::task::JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
            match t {
                Some(h) => h.await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            r = ended(&mut self.hub_task) => {
                self.hub_task = None;
                ServerError::HubEnded(match r {
                    Ok(()) => "it returned without a shutdown".to_owned(),
                    Err(e) => panic_text(e),
                })
            }
            r = ended(&mut self.task) => {
                self.task = None;
                ServerError::HttpEnded(match r {
                    Ok(Ok(())) => "it returned".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => panic_text(e),
                })
            }
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => format!("panic: {}", panic_message(&*p)),
        Err(e) => e.to_string(),
    }
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    msg.unwrap_or_else(|| "(no message)".to_owned())
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the sessions directory {0}: {1}")]
    Sessions(std::path::PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("object store: {0}")]
    ObjectStore(String),
}

/// Loads the face-analysis models (≈100 MB, about a second) on a thread of their own, so the
/// first face filter of an experiment does not stall its stream; says where they are, or that
/// the face filters cannot run and why.
fn preload_face_models(dir: Option<std::path::PathBuf>) {
    use filters::face;
    if let Some(d) = dir {
        face::set_models_dir(d);
    }
    let spawned = std::thread::Builder::new().name("face-models".into()).spawn(|| match face::Models::shared() {
        Ok(m) => tracing::info!(model = %m.path().display(), "face analysis ready"),
        Err(e) => tracing::warn!("{e}: OPENFACE_AU, SIMPLE_GLASSES_DETECTION and SYNC_SCORE_GF cannot run"),
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the face-model loader; the models load on first use");
    }
}

/// Loads the sessions, starts the hub and serves HTTP(S) on `cfg.listen`, within `cfg.http`'s
/// timeouts and connection cap.
pub async fn start(cfg: config::Config) -> Result<Server, StartError> {
    let cfg = Arc::new(cfg);
    // One node: the session files. Cluster mode: the database (loaded once the node joined).
    let files = match cfg.cluster {
        Some(_) => None,
        None => {
            let (store, sessions, problems) = session::store::SessionStore::open(&cfg.sessions_dir)
                .map_err(|e| StartError::Sessions(cfg.sessions_dir.clone(), e))?;
            for p in &problems {
                tracing::error!(file = %p.path.display(), problem = %p.message, "session file not loaded (it is left untouched)");
            }
            tracing::info!(count = sessions.len(), dir = %cfg.sessions_dir.display(), "sessions loaded");
            Some((hub::Store::Files(Arc::new(store)), sessions))
        }
    };
    preload_face_models(cfg.models_dir.clone());
    // Recordings a crash left unfinished get their duration and checksum before anything new.
    let dir = cfg.sessions_dir.clone();
    let _ = tokio::task::spawn_blocking(move || record::recover_all(&dir)).await;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(http::tls::acceptor(cert, key).map_err(StartError::Tls)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| StartError::Bind(cfg.listen, e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind(cfg.listen, e))?;
    // Cluster mode: the internal API's listener first (its URL goes into the registry).
    let (cluster, internal) = match &cfg.cluster {
        None => (None, None),
        Some(cc) => {
            let l = tokio::net::TcpListener::bind(cc.internal_addr)
                .await
                .map_err(|e| StartError::Bind(cc.internal_addr, e))?;
            let a = l.local_addr().map_err(|e| StartError::Bind(cc.internal_addr, e))?;
            let url = cc.internal_url.clone().unwrap_or_else(|| format!("http://{a}"));
            let c = cluster::Cluster::start(cc, url).await.map_err(|e| StartError::Cluster(e.to_string()))?;
            (Some(c), Some((l, a)))
        }
    };
    let (store, sessions) = match (files, &cluster) {
        (Some(files), _) => files,
        (None, None) => return Err(StartError::Cluster("no cluster to load the sessions from".into())),
        (None, Some(c)) => {
            let (rows, bad) = c.db().sessions().await.map_err(|e| StartError::Cluster(e.to_string()))?;
            for problem in &bad {
                tracing::error!(%problem, "session not loaded (it is left untouched)");
            }
            tracing::info!(count = rows.len(), "sessions loaded from the cluster database");
            hub::Store::shared(c.clone(), rows)
        }
    };
    let (objects, uploader) = match &cfg.object_store {
        None => (None, None),
        Some(url) => {
            let objects = open_object_store(url)?;
            let index = cfg.cluster.as_ref().map(|c| (c.db_url.clone(), c.node_id.clone()));
            let target = record::uploader::Target { store: objects.clone(), index, on_upload: None };
            let u = record::uploader::Uploader::start(target).map_err(|e| StartError::ObjectStore(e.to_string()))?;
            // Files the store lacks (a crash lost the queue, recovered files) go up first.
            let this_node = cluster.as_ref().map(|c| (0, c.node_id.clone()));
            let (u2, dir) = (u.clone(), cfg.sessions_dir.clone());
            let _ = tokio::task::spawn_blocking(move || u2.resync(&dir, &this_node)).await;
            tracing::info!(store = %url, "recordings are copied to the object store");
            (Some(objects), Some(u))
        }
    };
    let (hub, hub_task) = hub::start(cfg.clone(), store, sessions, cluster.clone(), uploader.clone());
    let (shutdown, mut rx) = tokio::sync::watch::channel(false);
    let state = http::AppState { hub: hub.clone(), cfg: cfg.clone(), cluster: cluster.clone(), store: objects };
    let internal_addr = internal.as_ref().map(|(_, a)| *a);
    if let (Some((l, _)), Some(c)) = (internal, &cluster) {
        let mut rx = rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let app = http::internal_router(state.clone(), c.signer().clone());
        tokio::spawn(http::serve::serve(l, None, app, cfg.http.clone(), stop));
    }
    let app = http::router(state);
    let stop = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tracing::info!(
        max_connections = cfg.http.max_connections,
        header_timeout_s = cfg.http.header_timeout.as_secs_f64(),
        body_timeout_s = cfg.http.body_timeout.as_secs_f64(),
        idle_timeout_s = cfg.http.idle_timeout.as_secs_f64(),
        "HTTP limits"
    );
    let task = tokio::spawn(http::serve::serve(listener, tls, app, cfg.http.clone(), stop));
    Ok(Server { addr, hub, shutdown, task: Some(task), hub_task: Some(hub_task), cluster, internal_addr, uploader })
}

/// Opens `--object-store` (S3's TLS runs on rustls with the ring provider already built for
/// our HTTPS server).
pub fn open_object_store(url: &record::store::StoreUrl) -> Result<Arc<dyn record::store::ObjectStore>, StartError> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    url.open().map_err(StartError::ObjectStore)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// `/metrics` shows the hub task's work: inputs handled and time busy grow with each input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hub_reports_its_busy_time() {
        let dir = std::env::temp_dir().join(format!("exphub-lib-{}", uuid::Uuid::new_v4().simple()));
        let server = crate::start(crate::config::Config::for_tests(&dir, "pw")).await.unwrap();
        let base = format!("http://{}", server.addr);
        let read = |text: &str, name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}"));
            line[name.len() + 1..].parse().unwrap()
        };
        let scrape = || async {
            let (status, body) = exphub_client::get(&base, "/metrics").await.unwrap();
            assert_eq!(status, 200);
            String::from_utf8(body).unwrap()
        };
        let before = scrape().await;
        assert!(read(&before, "exphub_hub_queue_depth") >= 0.0, "the queue depth is shown");
        // Each refused offer is one input of the hub.
        let offer = serde_json::json!({"request": {"sdp": "v=0\r\n", "type": "offer",
            "user_type": "experimenter", "experimenter_password": "wrong"}});
        for _ in 0..3 {
            let (status, _) = exphub_client::post_json(&base, "/offer", &offer).await.unwrap();
            assert_eq!(status, 401);
        }
        let after = scrape().await;
        let inputs = read(&after, "exphub_hub_inputs_total") - read(&before, "exphub_hub_inputs_total");
        assert!(inputs >= 3.0, "{inputs} inputs");
        let busy = read(&after, "exphub_hub_busy_seconds_total") - read(&before, "exphub_hub_busy_seconds_total");
        assert!(busy > 0.0, "busy {busy} s");
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A control task that dies is noticed: `Server::failed` resolves with the reason, and
    /// the hub no longer answers offers (503), which is why `exphub serve` then exits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_control_task_is_reported() {
        let dir = std::env::temp_dir().join(format!("exphub-lib-{}", uuid::Uuid::new_v4().simple()));
        let mut server = crate::start(crate::config::Config::for_tests(&dir, "pw")).await.unwrap();
        let healthy = tokio::time::timeout(Duration::from_millis(300), server.failed()).await;
        assert!(healthy.is_err(), "a healthy server has not failed");
        server.hub.crash().await;
        let e = tokio::time::timeout(Duration::from_secs(30), server.failed()).await.expect("the failure is reported");
        assert!(matches!(e, crate::ServerError::HubEnded(_)), "{e}");
        assert!(e.to_string().contains("panic: the hub task crashes"), "{e}");
        let base = format!("http://{}", server.addr);
        let offer = serde_json::json!({"request": {"sdp": "v=0\r\n", "type": "offer",
            "user_type": "experimenter", "experimenter_password": "pw"}});
        let (status, _) = exphub_client::post_json(&base, "/offer", &offer).await.unwrap();
        assert_eq!(status, 503);
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
