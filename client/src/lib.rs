//! `exphub-client`: a SynthARium-protocol client over real WebRTC, what the browser frontend
//! does, in Rust; and the test session every test and the load tool start from.
//!
//! A development crate of the workspace (not published): used by the integration tests and
//! the load tool (`examples/load.rs`), never by the server, which it reaches only over HTTP and
//! WebRTC. It takes from `exphub` only what both sides must agree on (codecs, payload types,
//! the keyframe-request interceptor, the RTP packetizer, the media [`Kind`]).
//! It posts an offer to `/offer`, opens the `"API"` data channel, publishes pre-encoded media
//! (participants), answers `CONNECTION_PROPOSAL`s by opening a receive-only sub-connection per
//! publisher (like the frontend's `SubConnection`), and reports every RTP packet it receives to
//! a callback, with the arrival instant.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rtc::data_channel::RTCDataChannelInit;
use rtc::media::io::ivf_reader::IVFReader;
use rtc::media::io::ogg_reader::OggReader;
use rtc::rtp;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Mutex};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime, TokioRuntime,
};

use exphub::media::rtp::{Format, Packetizer};
use exphub::media::Kind;
use exphub::peer::VideoCodec;
use exphub::peer::{
    media_engine, media_engine_with, new_local_track, opus_codec, KeyframeRequestForwarder, MAX_MESSAGE_SIZE, OPUS_PT,
};

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;
pub type ClientResult<T> = std::result::Result<T, AnyError>;

/// Where a received packet came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Our own stream, echoed on the main connection.
    Echo,
    /// A publisher's stream on a sub-connection: the proposal's `participant_summary`
    /// (an id string for experimenters, a summary object for participants).
    Sub { proposal_id: String, summary: Value },
}

/// Called for every RTP packet received, with its arrival time.
pub type RtpCallback = Arc<dyn Fn(&Origin, Kind, &rtp::Packet, Instant) + Send + Sync>;

/// How the client connects.
#[derive(Clone)]
pub struct ClientOptions {
    /// Send ICE candidates by trickle (`/addIceCandidate`, `ADD_ICE_CANDIDATE`) like the dev
    /// frontend, instead of waiting for gathering to complete like the main frontend.
    pub trickle: bool,
    /// Send trickled candidates to this server (`http://host:port`) instead of the one that
    /// gets the offer: another node of a cluster, as a balancer in front of it may do.
    pub trickle_to: Option<String>,
    /// Open a sub-connection for every `CONNECTION_PROPOSAL` automatically.
    pub auto_subscribe: bool,
    /// Send a `connection_id` in the offer (dev frontend); without it the server makes one.
    pub send_connection_id: bool,
    pub on_rtp: Option<RtpCallback>,
    /// The video codec a participant publishes (and the only one its offer names, so the
    /// server negotiates it); [`Client::send_video_frame`] packetizes for it.
    pub video_codec: VideoCodec,
    /// An experimenter's routing hint: a `session_id` in the offer, so that a cluster node
    /// forwards it to the node running that experiment (a second connection to watch it).
    pub session_hint: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            trickle: false,
            trickle_to: None,
            auto_subscribe: true,
            send_connection_id: true,
            on_rtp: None,
            video_codec: VideoCodec::Vp8,
            session_hint: None,
        }
    }
}

/// Who connects.
#[derive(Debug, Clone)]
pub enum Role {
    Experimenter { password: String },
    Participant { session_id: String, participant_id: String },
}

/// A connected client.
pub struct Client {
    pc: Arc<dyn PeerConnection>,
    dc: Arc<dyn DataChannel>,
    inbox: mpsc::UnboundedReceiver<Value>,
    /// The body of the successful `/offer` response.
    pub offer_response: Value,
    /// Local tracks we publish on (participants): (video, ssrc), (audio, ssrc).
    pub video_out: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    pub audio_out: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    subs: Arc<Mutex<HashMap<String, Arc<dyn PeerConnection>>>>,
    closed: tokio::sync::watch::Receiver<bool>,
    packetizer: Mutex<Packetizer>,
    video_pt: u8,
    video_seq: std::sync::atomic::AtomicU16,
    runtime: Arc<CrashableRuntime>,
}

/// Tokio, with a switch that cuts off every task the WebRTC stack spawned for one client (its
/// connections' drivers) at once: the client vanishes like a crashed browser or a pulled cable,
/// its sockets close and nothing more is sent (no DTLS close_notify, no SCTP ABORT).
#[derive(Debug)]
struct CrashableRuntime {
    inner: TokioRuntime,
    crashed: tokio::sync::watch::Sender<bool>,
    /// Tasks spawned and not yet finished or cut off.
    live: Arc<std::sync::atomic::AtomicUsize>,
}

impl CrashableRuntime {
    fn new() -> Arc<Self> {
        Arc::new(Self { inner: TokioRuntime, crashed: tokio::sync::watch::channel(false).0, live: Arc::default() })
    }

    /// Cuts off every task; returns once they are all gone (or after a few seconds).
    async fn crash(&self) {
        self.crashed.send_replace(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.live.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

struct LiveGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Runtime for CrashableRuntime {
    fn spawn(&self, future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        let mut crashed = self.crashed.subscribe();
        self.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        self.inner.spawn(Box::pin(async move {
            let _guard = guard;
            let stop = async move {
                // A runtime dropped without a crash never cuts its tasks off.
                if crashed.wait_for(|c| *c).await.map(|_| ()).is_err() {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = future => {}
                _ = stop => {}
            }
        }))
    }
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        self.inner.wrap_udp_socket(socket)
    }
    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }
    fn connect_tcp<'a>(
        &'a self,
        remote_addr: std::net::SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>>
    {
        self.inner.connect_tcp(remote_addr)
    }
    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send + 'a>>
    {
        self.inner.resolve_host(host)
    }
    fn sleep(&self, duration: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }
    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }
    fn block_on(&self, future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }
    fn yield_now(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }
}

/// An `/offer` that the server refused: HTTP status and the body.
#[derive(Debug)]
pub struct OfferRefused {
    pub status: u16,
    pub body: Value,
}

impl std::fmt::Display for OfferRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offer refused with {}: {}", self.status, self.body)
    }
}
impl std::error::Error for OfferRefused {}

/// POSTs JSON and returns the status and the JSON body (or the text as a JSON string).
pub async fn post_json(base: &str, path: &str, body: &Value) -> ClientResult<(u16, Value)> {
    let raw = post_raw(base, path, "application/json", body.to_string().into_bytes()).await?;
    Ok((
        raw.0,
        serde_json::from_slice(&raw.1).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw.1).into())),
    ))
}

/// POSTs bytes with a content type; returns status and body bytes. `base` is `http://host:port`.
pub async fn post_raw(base: &str, path: &str, content_type: &str, body: Vec<u8>) -> ClientResult<(u16, Vec<u8>)> {
    request(base, "POST", path, Some(content_type), body).await
}

/// A GET; returns status and body bytes.
pub async fn get(base: &str, path: &str) -> ClientResult<(u16, Vec<u8>)> {
    request(base, "GET", path, None, vec![]).await
}

async fn request(
    base: &str,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> ClientResult<(u16, Vec<u8>)> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", authority);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body)))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes.to_vec()))
}

struct ClientHandler {
    gathered: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    candidates: mpsc::UnboundedSender<Value>,
    origin: Origin,
    on_rtp: Option<RtpCallback>,
    closed: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            if let Some(tx) = self.gathered.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(());
            }
        }
    }
    async fn on_ice_candidate(&self, ev: RTCPeerConnectionIceEvent) {
        if let Ok(c) = ev.candidate.to_json() {
            let _ = self.candidates.send(json!({
                "candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index,
                "usernameFragment": c.username_fragment,
            }));
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
            if let Some(c) = &self.closed {
                let _ = c.send(true);
            }
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Audio => Kind::Audio,
            _ => Kind::Video,
        };
        let origin = self.origin.clone();
        let cb = self.on_rtp.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        if let Some(cb) = &cb {
                            cb(&origin, kind, &p, Instant::now());
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// A peer connection; `video`: the one video codec to offer (`None`: every codec we know).
async fn build_pc(
    handler: Arc<ClientHandler>,
    video: Option<VideoCodec>,
    runtime: Arc<CrashableRuntime>,
) -> ClientResult<Arc<dyn PeerConnection>> {
    let mut me = match video {
        Some(v) => media_engine_with(&[v])?,
        None => media_engine()?,
    };
    // Like a browser, the client's encoder (here: the fixture player) hears viewers' PLIs.
    let registry = register_default_interceptors(Registry::new(), &mut me)?
        .with(rtc::interceptor::Slot::from(14_000), KeyframeRequestForwarder::default());
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .with_sctp_max_message_size(
                    rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize::Bounded(MAX_MESSAGE_SIZE),
                )
                .build(),
        )
        .with_handler(handler)
        .with_runtime(runtime)
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

fn recvonly() -> Option<RTCRtpTransceiverInit> {
    Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() })
}

impl Client {
    /// Connects like the SynthARium frontend: offer over HTTP, then the `"API"` data channel.
    /// Fails with [`OfferRefused`] when the server answers the offer with an error.
    pub async fn connect(base: &str, role: Role, opts: ClientOptions) -> ClientResult<Client> {
        let (cand_tx, mut cand_rx) = mpsc::unbounded_channel();
        let (gtx, grx) = oneshot::channel();
        let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        let handler = Arc::new(ClientHandler {
            gathered: std::sync::Mutex::new(Some(gtx)),
            candidates: cand_tx,
            origin: Origin::Echo,
            on_rtp: opts.on_rtp.clone(),
            closed: Some(closed_tx.clone()),
        });
        let publishes = matches!(role, Role::Participant { .. });
        let runtime = CrashableRuntime::new();
        let pc = build_pc(handler, publishes.then_some(opts.video_codec), runtime.clone()).await?;
        let dc =
            pc.create_data_channel("API", Some(RTCDataChannelInit { ordered: true, ..Default::default() })).await?;
        let (mut video_out, mut audio_out) = (None, None);
        match &role {
            Role::Participant { .. } => {
                let v = new_local_track(RtpCodecKind::Video, opts.video_codec.rtp_codec(), "cam");
                let a = new_local_track(RtpCodecKind::Audio, opus_codec(), "mic");
                pc.add_track(v.0.clone() as Arc<dyn TrackLocal>).await?;
                pc.add_track(a.0.clone() as Arc<dyn TrackLocal>).await?;
                video_out = Some(v);
                audio_out = Some(a);
            }
            Role::Experimenter { .. } => {
                pc.add_transceiver_from_kind(RtpCodecKind::Audio, recvonly()).await?;
                pc.add_transceiver_from_kind(RtpCodecKind::Video, recvonly()).await?;
            }
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        if !opts.trickle {
            let _ = tokio::time::timeout(Duration::from_secs(5), grx).await;
        }
        let local = pc.local_description().await.ok_or("no local description")?;
        let connection_id = uuid::Uuid::new_v4().to_string();
        let mut req = json!({"sdp": local.sdp, "type": "offer"});
        match &role {
            Role::Experimenter { password } => {
                req["user_type"] = json!("experimenter");
                req["experimenter_password"] = json!(password);
                if let Some(sid) = &opts.session_hint {
                    req["session_id"] = json!(sid);
                }
            }
            Role::Participant { session_id, participant_id } => {
                req["user_type"] = json!("participant");
                req["session_id"] = json!(session_id);
                req["participant_id"] = json!(participant_id);
            }
        }
        if opts.send_connection_id || opts.trickle {
            req["connection_id"] = json!(connection_id);
        }
        if opts.trickle {
            // Like the dev frontend: candidates go to /addIceCandidate as they come, possibly
            // before the offer has been answered (the server buffers them).
            let base = opts.trickle_to.clone().unwrap_or_else(|| base.to_owned());
            let id = connection_id.clone();
            tokio::spawn(async move {
                while let Some(c) = cand_rx.recv().await {
                    let body = json!({"request": {"id": id, "candidate": c}});
                    let _ = post_json(&base, "/addIceCandidate", &body).await;
                }
            });
        }
        let (status, body) = post_json(base, "/offer", &json!({ "request": req })).await?;
        if status != 200 || body["type"] != "SESSION_DESCRIPTION" {
            let _ = pc.close().await;
            return Err(Box::new(OfferRefused { status, body }));
        }
        let sdp = body["data"]["sdp"].as_str().ok_or("answer without sdp")?.to_owned();
        pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;

        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let subs: Arc<Mutex<HashMap<String, Arc<dyn PeerConnection>>>> = Arc::default();
        let (open_tx, open_rx) = oneshot::channel();
        tokio::spawn(run_channel(
            dc.clone(),
            inbox_tx,
            open_tx,
            subs.clone(),
            opts.clone(),
            closed_tx,
            runtime.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(10), open_rx).await.map_err(|_| "data channel did not open")??;
        Ok(Client {
            pc,
            dc,
            inbox,
            offer_response: body,
            video_out,
            audio_out,
            subs,
            closed: closed_rx,
            packetizer: Mutex::new(Packetizer::new(
                match opts.video_codec {
                    VideoCodec::Vp8 => Format::Vp8,
                    VideoCodec::H264 => Format::H264,
                },
                1200,
            )),
            video_pt: opts.video_codec.payload_type(),
            video_seq: std::sync::atomic::AtomicU16::new(1000),
            runtime,
        })
    }

    /// Sends `{"type": kind, "data": data}`.
    pub async fn send(&self, kind: &str, data: Value) -> ClientResult<()> {
        self.send_text(&json!({"type": kind, "data": data}).to_string()).await
    }

    /// Sends a raw text frame (for malformed-input tests).
    pub async fn send_text(&self, text: &str) -> ClientResult<()> {
        self.dc.send_text(text).await?;
        Ok(())
    }

    /// Sends a raw binary frame.
    pub async fn send_binary(&self, data: &[u8]) -> ClientResult<()> {
        self.dc.send(bytes::BytesMut::from(data)).await?;
        Ok(())
    }

    /// The next message, or an error after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> ClientResult<Value> {
        match tokio::time::timeout(timeout, self.inbox.recv()).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err("connection closed".into()),
            Err(_) => Err("timed out waiting for a message".into()),
        }
    }

    /// Waits for the next message of type `kind`, returning it and the messages skipped.
    pub async fn recv_type(&mut self, kind: &str, timeout: Duration) -> ClientResult<(Value, Vec<Value>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = vec![];
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await.map_err(|e| format!("{e} (wanted {kind}; got {skipped:?})"))?;
            if m["type"] == kind {
                return Ok((m, skipped));
            }
            skipped.push(m);
        }
    }

    /// Messages already received, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut v = vec![];
        while let Ok(m) = self.inbox.try_recv() {
            v.push(m);
        }
        v
    }

    /// Waits until no message arrives for `quiet`, returning what came.
    pub async fn settle(&mut self, quiet: Duration) -> Vec<Value> {
        let mut v = vec![];
        while let Ok(Some(m)) = tokio::time::timeout(quiet, self.inbox.recv()).await {
            v.push(m);
        }
        v
    }

    /// True once the main connection has failed or closed.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Waits until the server closes the connection.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.closed.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// Number of open sub-connections.
    pub async fn sub_count(&self) -> usize {
        self.subs.lock().await.len()
    }

    /// Closes everything (the server sees the data channel close).
    pub async fn close(self) {
        for (_, pc) in self.subs.lock().await.drain() {
            let _ = pc.close().await;
        }
        let _ = self.dc.close().await;
        let _ = self.pc.close().await;
    }

    /// Drops the connection without closing the data channel cleanly (a crashed browser tab):
    /// only the peer connection is torn down.
    pub async fn drop_abruptly(self) {
        for (_, pc) in self.subs.lock().await.drain() {
            let _ = pc.close().await;
        }
        let _ = self.pc.close().await;
    }

    /// Vanishes like a crashed browser or a pulled cable: every socket of the client (main and
    /// sub-connections) closes at once and nothing more is sent, no DTLS close_notify, no SCTP
    /// ABORT. The server only learns of it when ICE times out.
    pub async fn crash(self) {
        self.runtime.crash().await;
        // The drivers are gone: closing now only frees our side, nothing reaches the wire.
        for (_, pc) in self.subs.lock().await.drain() {
            let _ = pc.close().await;
        }
        let _ = self.pc.close().await;
    }

    /// Sends one encoded video frame (of [`ClientOptions::video_codec`]) on our published track: packetized here, with our
    /// own sequence numbers. For tests that generate their pictures.
    pub async fn send_video_frame(&self, data: &[u8], timestamp: u32) -> ClientResult<()> {
        let (track, ssrc) = self.video_out.clone().ok_or("not a participant")?;
        let mut out = Vec::new();
        self.packetizer.lock().await.packetize(data, timestamp, &mut out);
        for o in out {
            let seq = self.video_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: o.marker,
                    payload_type: self.video_pt,
                    sequence_number: seq,
                    timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: o.payload,
            };
            track.write_rtp(p).await?;
        }
        Ok(())
    }

    /// Starts playing `media` on our published tracks in real time, looping; stops when the
    /// returned handle is dropped or aborted.
    pub fn publish(&self, media: Arc<Media>) -> tokio::task::JoinHandle<()> {
        let v = self.video_out.clone();
        let a = self.audio_out.clone();
        tokio::spawn(async move {
            let (Some(v), Some(a)) = (v, a) else { return };
            media.play(v, a, None).await
        })
    }
}

/// Reads the data channel: delivers parsed messages to the inbox, runs sub-connections.
async fn run_channel(
    dc: Arc<dyn DataChannel>,
    inbox: mpsc::UnboundedSender<Value>,
    open: oneshot::Sender<()>,
    subs: Arc<Mutex<HashMap<String, Arc<dyn PeerConnection>>>>,
    opts: ClientOptions,
    closed: Arc<tokio::sync::watch::Sender<bool>>,
    runtime: Arc<CrashableRuntime>,
) {
    let mut open = Some(open);
    while let Some(ev) = dc.poll().await {
        match ev {
            DataChannelEvent::OnOpen => {
                if let Some(o) = open.take() {
                    let _ = o.send(());
                }
            }
            DataChannelEvent::OnMessage(m) => {
                let Ok(v) = serde_json::from_slice::<Value>(&m.data) else { continue };
                match v["type"].as_str() {
                    Some("CONNECTION_PROPOSAL") if opts.auto_subscribe => {
                        let (dc, subs, opts, data) = (dc.clone(), subs.clone(), opts.clone(), v["data"].clone());
                        let runtime = runtime.clone();
                        tokio::spawn(async move {
                            if let Err(e) = subscribe(dc, subs, opts, data, runtime).await {
                                tracing::warn!(error = %e, "client sub-connection failed");
                            }
                        });
                    }
                    Some("CONNECTION_ANSWER") => {
                        let id = v["data"]["id"].as_str().unwrap_or_default().to_owned();
                        let sdp = v["data"]["answer"]["sdp"].as_str().unwrap_or_default().to_owned();
                        if let Some(pc) = subs.lock().await.get(&id).cloned() {
                            if let Ok(answer) = RTCSessionDescription::answer(sdp) {
                                if let Err(e) = pc.set_remote_description(answer).await {
                                    tracing::warn!(error = %e, "client could not apply sub answer");
                                }
                            }
                        }
                    }
                    _ => {}
                }
                if inbox.send(v).is_err() {
                    break;
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    // Like the frontend: a closed data channel ends the connection.
    let _ = closed.send(true);
}

async fn subscribe(
    dc: Arc<dyn DataChannel>,
    subs: Arc<Mutex<HashMap<String, Arc<dyn PeerConnection>>>>,
    opts: ClientOptions,
    proposal: Value,
    runtime: Arc<CrashableRuntime>,
) -> ClientResult<()> {
    let id = proposal["id"].as_str().ok_or("proposal without id")?.to_owned();
    let (cand_tx, mut cand_rx) = mpsc::unbounded_channel();
    let (gtx, grx) = oneshot::channel();
    let (closed_tx, mut closed_rx) = tokio::sync::watch::channel(false);
    let handler = Arc::new(ClientHandler {
        gathered: std::sync::Mutex::new(Some(gtx)),
        candidates: cand_tx,
        origin: Origin::Sub { proposal_id: id.clone(), summary: proposal["participant_summary"].clone() },
        on_rtp: opts.on_rtp.clone(),
        closed: Some(Arc::new(closed_tx)),
    });
    let pc = build_pc(handler, None, runtime).await?;
    {
        // Like the frontend, forget a sub-connection the server has closed (or that failed).
        let (subs, id, pc) = (subs.clone(), id.clone(), Arc::downgrade(&pc));
        tokio::spawn(async move {
            if closed_rx.wait_for(|c| *c).await.is_err() {
                return;
            }
            let mut subs = subs.lock().await;
            let ours = subs.get(&id).is_some_and(|p| pc.upgrade().is_some_and(|pc| Arc::ptr_eq(p, &pc)));
            if let Some(p) = ours.then(|| subs.remove(&id)).flatten() {
                drop(subs);
                let _ = p.close().await;
            }
        });
    }
    pc.add_transceiver_from_kind(RtpCodecKind::Video, recvonly()).await?;
    pc.add_transceiver_from_kind(RtpCodecKind::Audio, recvonly()).await?;
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    if !opts.trickle {
        let _ = tokio::time::timeout(Duration::from_secs(5), grx).await;
    }
    let local = pc.local_description().await.ok_or("no local description")?;
    subs.lock().await.insert(id.clone(), pc.clone());
    let msg = json!({"type": "CONNECTION_OFFER", "data": {"id": id, "offer": {"sdp": local.sdp, "type": "offer"}}});
    dc.send_text(&msg.to_string()).await?;
    if opts.trickle {
        tokio::spawn(async move {
            while let Some(c) = cand_rx.recv().await {
                let msg = json!({"type": "ADD_ICE_CANDIDATE", "data": {"id": id, "candidate": c}});
                if dc.send_text(&msg.to_string()).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Pre-packetized media, ready to be replayed at real-time pace at almost no CPU cost.
pub struct Media {
    /// Video frames: (RTP packets of the frame, RTP timestamp delta to the next frame).
    pub video: Vec<Vec<rtp::Packet>>,
    /// Indexes of the video frames that are keyframes.
    pub keyframes: Vec<usize>,
    pub video_frame_interval: Duration,
    pub audio: Vec<rtp::Packet>,
    /// How many keyframe requests the player has answered (all players of this media).
    pub keyframes_sent: std::sync::atomic::AtomicU64,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One packet as a publisher sent it: which, and when.
#[derive(Debug, Clone, Copy)]
pub struct SentPacket {
    pub kind: Kind,
    pub seq: u16,
    pub at: Instant,
}

impl Media {
    /// Loads an IVF (VP8) and an Ogg (Opus, one packet per page) file and packetizes them.
    pub fn load(ivf: &Path, ogg: &Path) -> ClientResult<Self> {
        let (mut reader, header) = IVFReader::new(std::io::BufReader::new(std::fs::File::open(ivf)?))?;
        let fps_num = header.timebase_denominator.max(1) as u64;
        let fps_den = header.timebase_numerator.max(1) as u64;
        let video_frame_interval = Duration::from_micros(1_000_000 * fps_den / fps_num);
        let ts_step = (90_000 * fps_den / fps_num) as u32;
        let mut payloader = rtc::rtp::codec::vp8::Vp8Payloader::default();
        let mut video = vec![];
        let mut keyframes = vec![];
        let mut ts = 0u32;
        while let Ok((frame, _)) = reader.parse_next_frame() {
            // VP8 frame tag: bit 0 of the first byte is 0 for a keyframe.
            if frame.first().is_some_and(|b| b & 1 == 0) {
                keyframes.push(video.len());
            }
            let parts = payloader.payload(1200, &frame.freeze())?;
            let n = parts.len();
            let pkts = parts
                .into_iter()
                .enumerate()
                .map(|(i, payload)| rtp::Packet {
                    header: rtp::header::Header { version: 2, marker: i + 1 == n, timestamp: ts, ..Default::default() },
                    payload,
                })
                .collect();
            video.push(pkts);
            ts = ts.wrapping_add(ts_step);
        }
        let (mut ogg_reader, _) = OggReader::new(std::io::BufReader::new(std::fs::File::open(ogg)?), true)?;
        let mut audio = vec![];
        let mut ts = 0u32;
        while let Ok((page, hdr)) = ogg_reader.parse_next_page() {
            if hdr.granule_position == 0 {
                continue; // Opus head/tags pages
            }
            audio.push(rtp::Packet {
                header: rtp::header::Header { version: 2, marker: false, timestamp: ts, ..Default::default() },
                payload: page.freeze(),
            });
            ts = ts.wrapping_add(960);
        }
        if video.is_empty() || audio.is_empty() {
            return Err("fixture has no frames".into());
        }
        if keyframes.first() != Some(&0) {
            return Err("the video fixture must start with a keyframe".into());
        }
        Ok(Self { video, keyframes, video_frame_interval, audio, keyframes_sent: Default::default() })
    }

    /// Plays video and audio in real time, looping forever. Each sent packet is reported to
    /// `sent` (for latency measurement) when given. Like an encoder, it answers a viewer's
    /// keyframe request (PLI/FIR) by continuing from the next keyframe of the clip.
    pub async fn play(
        &self,
        video: (Arc<TrackLocalStaticRTP>, u32),
        audio: (Arc<TrackLocalStaticRTP>, u32),
        sent: Option<Arc<dyn Fn(SentPacket) + Send + Sync>>,
    ) {
        let start = tokio::time::Instant::now();
        let audio_interval = Duration::from_millis(20);
        let (mut vi, mut ai) = (0usize, 0usize);
        let (mut vseq, mut aseq) = (0u16, 0u16);
        let (mut vloop_ts, mut aloop_ts) = (0u32, 0u32);
        let vloop_len = self.video.len() as u32 * 3000;
        let aloop_len = self.audio.len() as u32 * 960;
        let mut next_v = start;
        let mut next_a = start;
        let want_key = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = {
            let (track, want_key) = (video.0.clone(), want_key.clone());
            tokio::spawn(async move {
                while let Some(webrtc::media_stream::track_local::TrackLocalEvent::OnRtcpPacket(_)) = track.poll().await
                {
                    want_key.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let _stop_listener = AbortOnDrop(listener);
        loop {
            let next = next_v.min(next_a);
            tokio::time::sleep_until(next).await;
            if next_v <= next {
                if want_key.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    let pos = vi % self.video.len();
                    let next_key = self.keyframes.iter().find(|k| **k >= pos).copied();
                    // Jump forward to the next keyframe (wrapping to the clip's start).
                    let target = next_key.unwrap_or(self.video.len());
                    vi += target - pos;
                    if target == self.video.len() {
                        vloop_ts = vloop_ts.wrapping_add(vloop_len);
                    }
                    self.keyframes_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let frame = &self.video[vi % self.video.len()];
                for p in frame {
                    let mut p = p.clone();
                    p.header.ssrc = video.1;
                    p.header.payload_type = 96;
                    p.header.sequence_number = vseq;
                    p.header.timestamp = p.header.timestamp.wrapping_add(vloop_ts);
                    vseq = vseq.wrapping_add(1);
                    if let Some(s) = &sent {
                        s(SentPacket { kind: Kind::Video, seq: p.header.sequence_number, at: Instant::now() });
                    }
                    if video.0.write_rtp(p).await.is_err() {
                        return;
                    }
                }
                vi += 1;
                if vi % self.video.len() == 0 {
                    vloop_ts = vloop_ts.wrapping_add(vloop_len);
                }
                next_v += self.video_frame_interval;
            }
            if next_a <= next {
                let mut p = self.audio[ai % self.audio.len()].clone();
                p.header.ssrc = audio.1;
                p.header.payload_type = OPUS_PT;
                p.header.sequence_number = aseq;
                p.header.timestamp = p.header.timestamp.wrapping_add(aloop_ts);
                aseq = aseq.wrapping_add(1);
                if let Some(s) = &sent {
                    s(SentPacket { kind: Kind::Audio, seq: p.header.sequence_number, at: Instant::now() });
                }
                if audio.0.write_rtp(p).await.is_err() {
                    return;
                }
                ai += 1;
                if ai % self.audio.len() == 0 {
                    aloop_ts = aloop_ts.wrapping_add(aloop_len);
                }
                next_a += audio_interval;
            }
        }
    }
}

/// A session in SynthARium's dev format with these participants (named `P0`, `P1`, … and
/// placed four to a row), titled "Test session", not recorded, with a ten-minute limit: what
/// the tests and the load tool start from (they change fields as they need).
pub fn session_json(id: &str, participant_ids: &[impl AsRef<str>]) -> Value {
    let participants: Vec<Value> = participant_ids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            json!({
                "id": pid.as_ref(), "participant_name": format!("P{i}"), "banned": false,
                "muted_video": false, "muted_audio": false,
                "position": {"x": (i % 4) * 100, "y": (i / 4) * 100, "z": 0}, "size": {"width": 100, "height": 100},
                "chat": [], "audio_filters": [], "video_filters": [],
                "audio_group_filters": [], "video_group_filters": [],
                "local_stream": false, "chat_filters": [], "lastMessageSentTime": 0, "lastMessageReadTime": 0,
                "view": [], "canvas_id": format!("canvas-{i}"), "asymmetric_filters": [], "asymmetric_filters_id": format!("asym-{i}")
            })
        })
        .collect();
    json!({
        "id": id, "title": "Test session", "description": "For tests", "date": 0, "time_limit": 600000,
        "record": false, "participants": participants, "creation_time": 0, "start_time": 0, "end_time": 0,
        "notes": [], "log": []
    })
}
