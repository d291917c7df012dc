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

/// A running server: its address and how to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: hub::HubHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stops accepting, stops every experiment (persisting their end), closes connections.
    pub async fn shutdown(self) {
        self.hub.shutdown().await;
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
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
}

/// Loads the sessions, starts the hub and serves HTTP(S) on `cfg.listen`.
pub async fn start(cfg: config::Config) -> Result<Server, StartError> {
    let cfg = Arc::new(cfg);
    let (store, sessions, problems) = session::store::SessionStore::open(&cfg.sessions_dir)
        .map_err(|e| StartError::Sessions(cfg.sessions_dir.clone(), e))?;
    for p in &problems {
        tracing::error!(file = %p.path.display(), problem = %p.message, "session file not loaded (it is left untouched)");
    }
    tracing::info!(count = sessions.len(), dir = %cfg.sessions_dir.display(), "sessions loaded");
    // Recordings a crash left unfinished get their duration and checksum before anything new.
    let dir = cfg.sessions_dir.clone();
    let _ = tokio::task::spawn_blocking(move || record::recover_all(&dir)).await;
    let hub = hub::start(cfg.clone(), Arc::new(store), sessions);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| StartError::Bind(cfg.listen, e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind(cfg.listen, e))?;
    let (shutdown, mut rx) = tokio::sync::watch::channel(false);
    let app = http::router(http::AppState { hub: hub.clone(), cfg: cfg.clone() });
    let stop = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let task = match &cfg.tls {
        None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await }),
        Some((cert, key)) => {
            let acceptor = http::tls::acceptor(cert, key).map_err(StartError::Tls)?;
            tokio::spawn(http::tls::serve(listener, acceptor, app, stop))
        }
    };
    Ok(Server { addr, hub, shutdown, task })
}
