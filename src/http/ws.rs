//! `GET /ws`: SynthARium's lobby socket. The server sends the text
//! `{"type":"EXPERIMENTER_JOINED"}` to every socket whenever an experimenter creates or joins
//! an experiment (the lobby then reloads and connects); what clients send is read and dropped.
//!
//! Bounded: at most [`Config::http`](crate::config::Config::http)`.max_connections` sockets
//! (503 beyond), inbound messages of at most 1 KiB, a ping every `ping_every`; a socket that
//! answers nothing (no pong, no frame) for three pings, or does not take a send within
//! `SEND_TIMEOUT`, is closed, and every socket is closed when the hub stops.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::AppState;
use crate::protocol::{self, ErrorType, WireError};

/// The sockets `/ws` may hold open at once.
#[derive(Clone)]
pub struct Slots(pub Arc<Semaphore>);

/// Largest message (and frame) a client may send; it sends none.
const MAX_INBOUND: usize = 1024;
/// A send the client does not take within this time ends the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The ping interval: well within the connection's idle timeout (pings keep a live socket's
/// bytes moving), at most 20 s.
fn ping_every(idle: Duration) -> Duration {
    (idle / 3).clamp(Duration::from_millis(100), Duration::from_secs(20))
}

pub async fn ws(
    State(st): State<AppState>,
    Extension(Slots(slots)): Extension<Slots>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let Ok(permit) = slots.try_acquire_owned() else {
        let e = WireError::new(503, ErrorType::InternalServerError, "Too many open lobby sockets; try again later.");
        return super::error_response(&e);
    };
    let Some(lobby) = st.hub.lobby() else {
        let e = WireError::new(503, ErrorType::InternalServerError, "The server is shutting down.");
        return super::error_response(&e);
    };
    let ping = ping_every(st.cfg.http.idle_timeout);
    upgrade
        .max_message_size(MAX_INBOUND)
        .max_frame_size(MAX_INBOUND)
        .on_upgrade(move |socket| run(socket, lobby, permit, ping))
}

async fn run(
    mut socket: WebSocket,
    mut lobby: tokio::sync::broadcast::Receiver<()>,
    _permit: OwnedSemaphorePermit,
    ping: Duration,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + ping, ping);
    let mut heard = Instant::now();
    loop {
        let out = tokio::select! {
            notice = lobby.recv() => match notice {
                // Lagging behind loses only copies of the same notice.
                Ok(()) | Err(RecvError::Lagged(_)) => Message::Text(protocol::experimenter_joined().into()),
                Err(RecvError::Closed) => Message::Close(None),
            },
            inbound = socket.recv() => match inbound {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {
                    heard = Instant::now();
                    continue;
                }
            },
            _ = ticks.tick() => {
                if heard.elapsed() > ping * 3 {
                    break; // nobody there
                }
                Message::Ping(Default::default())
            }
        };
        let closing = matches!(out, Message::Close(_));
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(out)).await {
            Ok(Ok(())) if !closing => {}
            _ => break,
        }
    }
}
