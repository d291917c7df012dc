//! `peer`: the only module that touches the `webrtc` crate.
//!
//! It builds peer connections (the main one per client, answering the client's offer, and one
//! per publisher→subscriber pair), turns the crate's callbacks into plain [`PeerEvent`]s on a
//! channel, writes outgoing data-channel messages in order from a per-connection outbox, and
//! owns the RTP plane ([`forward`]): each published track is read by one task that hands every
//! packet, unchanged but for SSRC / payload type / sequence offsets, to every sink (the echo and
//! each subscriber connection).
//!
//! It knows nothing of sessions, experiments or the protocol's JSON: the hub decides, this
//! module connects. Swapping the WebRTC stack (e.g. for str0m) means rewriting this module only.

pub mod forward;
mod keyframe;
mod munger;

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, oneshot, Mutex};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::runtime::{Runtime, TokioRuntime};

pub use forward::{Forwarder, RemoteTrack, Sink};
pub use keyframe::KeyframeRequestForwarder;

use crate::metrics::METRICS;

/// Errors of the WebRTC layer. Details go to the log; clients see a generic text.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("webrtc: {0}")]
    Rtc(#[from] webrtc::error::Error),
    #[error("invalid session description: {0}")]
    BadSdp(String),
    #[error("no free UDP port in the configured range")]
    NoPort,
    #[error("ICE gathering did not complete in time")]
    GatherTimeout,
    #[error("connection closed")]
    Closed,
}

impl PeerError {
    /// The server ran out of something (UDP ports in the configured range, file descriptors,
    /// socket buffers): worth a 503 and a retry, not the client's fault.
    pub fn is_exhaustion(&self) -> bool {
        match self {
            PeerError::NoPort => true,
            PeerError::Rtc(webrtc::error::Error::Io(e)) => {
                matches!(e.0.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
                    || e.0.kind() == std::io::ErrorKind::AddrInUse
            }
            // What the stack says when every socket bind failed (no port, no descriptor).
            PeerError::Rtc(webrtc::error::Error::Other(m)) => m.starts_with("no udp_sockets"),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, PeerError>;

/// ICE/transport settings a lab needs (from the server configuration).
#[derive(Debug, Clone)]
pub struct RtcSettings {
    /// Address the WebRTC UDP sockets bind to. A wildcard means every non-loopback interface.
    pub bind_ip: IpAddr,
    /// UDP ports to use, one per peer connection (the crate has no UDP mux yet). `None`: ephemeral.
    pub port_range: Option<RangeInclusive<u16>>,
    /// STUN/TURN servers put into every connection's configuration.
    pub ice_servers: Vec<IceServer>,
    /// Public IPs to advertise instead of the host address (1:1 NAT).
    pub nat_1to1_ips: Vec<String>,
    /// How long to wait for ICE gathering before answering with what we have.
    pub gather_timeout: Duration,
}

impl Default for RtcSettings {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            port_range: None,
            ice_servers: vec![],
            nat_1to1_ips: vec![],
            gather_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Video codecs exphub negotiates, in preference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    Vp8,
    H264,
}

impl VideoCodec {
    /// The codec as both sides of a connection offer it (public for the test client).
    pub fn rtp_codec(self) -> RTCRtpCodec {
        let fb = video_feedback();
        match self {
            VideoCodec::Vp8 => RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: fb,
            },
            VideoCodec::H264 => RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
                rtcp_feedback: fb,
            },
        }
    }

    pub fn payload_type(self) -> u8 {
        match self {
            VideoCodec::Vp8 => 96,
            VideoCodec::H264 => 102,
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            Some(VideoCodec::Vp8)
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
            Some(VideoCodec::H264)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::H264 => "H264",
        }
    }

    /// The video codec to use for a remote offer: VP8 unless the offer lacks it.
    pub fn for_offer(sdp: &str) -> Self {
        let has = |name: &str| {
            sdp.lines().any(|l| l.starts_with("a=rtpmap:") && l.to_ascii_uppercase().contains(&format!(" {name}/")))
        };
        if !has("VP8") && has("H264") {
            VideoCodec::H264
        } else {
            VideoCodec::Vp8
        }
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    vec![
        RTCPFeedback { typ: "goog-remb".to_owned(), parameter: String::new() },
        RTCPFeedback { typ: "ccm".to_owned(), parameter: "fir".to_owned() },
        RTCPFeedback { typ: "nack".to_owned(), parameter: String::new() },
        RTCPFeedback { typ: "nack".to_owned(), parameter: "pli".to_owned() },
    ]
}

// The codecs, payload types, media engines and local tracks of our connections are public so
// that the test and load client (the `exphub-client` crate) offers exactly what we answer.

/// Opus as both sides offer it.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Opus's payload type.
pub const OPUS_PT: u8 = 111;

/// A media engine offering every video codec we know and Opus.
pub fn media_engine() -> Result<MediaEngine> {
    media_engine_with(&[VideoCodec::Vp8, VideoCodec::H264])
}

/// A media engine offering these video codecs (in this order) and Opus.
pub fn media_engine_with(video: &[VideoCodec]) -> Result<MediaEngine> {
    let mut me = MediaEngine::default();
    for &codec in video {
        me.register_codec(
            RTCRtpCodecParameters { rtp_codec: codec.rtp_codec(), payload_type: codec.payload_type() },
            RtpCodecKind::Video,
        )?;
    }
    me.register_codec(RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: OPUS_PT }, RtpCodecKind::Audio)?;
    Ok(me)
}

/// What a connection tells its owner.
#[derive(Debug)]
pub enum PeerEvent {
    /// The client's data channel is open; messages can flow both ways.
    ChannelOpen,
    /// One data-channel frame.
    Message { data: bytes::Bytes, is_text: bool },
    /// ICE and DTLS are up: media can flow.
    Connected,
    /// A remote media track started.
    Track(RemoteTrack),
    /// The connection is gone (data channel closed, ICE/DTLS failed, or closed). Sent once.
    Closed,
}

/// Builds peer connections with the server's settings.
pub struct PeerFactory {
    settings: RtcSettings,
    runtime: Arc<dyn Runtime>,
    next_port: AtomicU32,
}

impl PeerFactory {
    pub fn new(settings: RtcSettings) -> Arc<Self> {
        let first = settings.port_range.as_ref().map(|r| *r.start() as u32).unwrap_or(0);
        Arc::new(Self { settings, runtime: Arc::new(TokioRuntime), next_port: AtomicU32::new(first) })
    }

    pub fn settings(&self) -> &RtcSettings {
        &self.settings
    }

    /// Builds a connection reporting to `handler`. The crate keeps only a weak reference to it
    /// (see [`Registered`]); the returned [`Peer`] owns it.
    async fn build(&self, handler: Arc<Handler>) -> Result<Arc<Peer>> {
        let registered: Arc<dyn PeerConnectionEventHandler> = Arc::new(Registered::new(&handler));
        let pc = self.bind(registered).await?;
        METRICS.udp_ports.add(1);
        Ok(Arc::new(Peer { pc, handler, closed: AtomicBool::new(false) }))
    }

    /// Binds a UDP port (the next free one of the configured range) for a new connection.
    async fn bind(&self, handler: Arc<dyn PeerConnectionEventHandler>) -> Result<Arc<dyn PeerConnection>> {
        let attempts = match &self.settings.port_range {
            Some(r) => (*r.end() as usize - *r.start() as usize) + 1,
            None => 1,
        };
        let mut last_err = None;
        for _ in 0..attempts {
            let port = match &self.settings.port_range {
                Some(r) => {
                    let span = (*r.end() as u32 - *r.start() as u32) + 1;
                    let n = self.next_port.fetch_add(1, Ordering::Relaxed);
                    (*r.start() as u32 + (n - *r.start() as u32) % span) as u16
                }
                None => 0,
            };
            match self.try_build(handler.clone(), port).await {
                Ok(pc) => return Ok(pc),
                Err(e) => {
                    tracing::debug!(port, error = %e, "peer connection build failed");
                    last_err = Some(e)
                }
            }
        }
        Err(if self.settings.port_range.is_some() { PeerError::NoPort } else { last_err.unwrap_or(PeerError::NoPort) })
    }

    async fn try_build(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
        port: u16,
    ) -> Result<Arc<dyn PeerConnection>> {
        let mut me = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut me)?
            .with(rtc::interceptor::Slot::from(14_000), keyframe::KeyframeRequestForwarder::default());
        // Advertise the largest data-channel message the stack can reassemble (256 KiB); the
        // default 64 KiB would make browsers refuse e.g. a SAVE_SESSION with a long chat log.
        let mut se = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_MESSAGE_SIZE));
        if !self.settings.nat_1to1_ips.is_empty() {
            se = se.with_nat_1to1_ips(self.settings.nat_1to1_ips.clone(), RTCIceCandidateType::Host);
        }
        let ice_servers = self
            .settings
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(ice_servers).build())
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_setting_engine(se.build())
            .with_handler(handler)
            .with_runtime(self.runtime.clone())
            .with_udp_addrs(vec![std::net::SocketAddr::new(self.settings.bind_ip, port)])
            .build()
            .await?;
        Ok(Arc::new(pc))
    }

    /// Answers a client's main offer. `echo` adds send tracks (video, audio) so the client gets
    /// its own stream back on this connection (participants); experimenters get none.
    pub async fn answer_main(&self, offer_sdp: String, echo: bool) -> Result<MainConnection> {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (handler, gathered) = Handler::new(events_tx);
        let peer = self.build(handler).await?;
        let max_send = Arc::new(std::sync::atomic::AtomicUsize::new(send_limit(&offer_sdp)));
        // Whatever fails after the build closes the connection: its port goes back to the pool.
        let (answer, echo) = match self.answer_main_on(&peer, offer_sdp, echo, gathered).await {
            Ok(done) => done,
            Err(e) => {
                peer.close().await;
                return Err(e);
            }
        };
        let (out_tx, out_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let (handler, pc) = (peer.handler.clone(), peer.pc.clone());
        let owner = peer.clone();
        let outbox_limit = max_send.clone();
        tokio::spawn(async move {
            run_outbox(handler, pc, out_rx, outbox_limit).await;
            owner.close().await;
        });
        Ok(MainConnection {
            answer_sdp: answer,
            conn: Connection { peer, outbox: out_tx, max_send },
            events: events_rx,
            echo,
        })
    }

    async fn answer_main_on(
        &self,
        peer: &Peer,
        offer_sdp: String,
        echo: bool,
        gathered: oneshot::Receiver<()>,
    ) -> Result<(String, Option<(Sink, Sink)>)> {
        let pc = &peer.pc;
        let video_codec = VideoCodec::for_offer(&offer_sdp);
        let echo_tracks = if echo {
            let v = new_local_track(RtpCodecKind::Video, video_codec.rtp_codec(), "echo");
            let a = new_local_track(RtpCodecKind::Audio, opus_codec(), "echo");
            let vs = pc.add_track(v.0.clone() as Arc<dyn TrackLocal>).await?;
            let as_ = pc.add_track(a.0.clone() as Arc<dyn TrackLocal>).await?;
            Some(((v, vs), (a, as_)))
        } else {
            None
        };
        let answer = self.negotiate(pc, offer_sdp, gathered).await?;
        let echo = match echo_tracks {
            Some(((v, vs), (a, as_))) => Some((Sink::new(&vs, v.0, v.1).await?, Sink::new(&as_, a.0, a.1).await?)),
            None => None,
        };
        Ok((answer, echo))
    }

    /// Answers a subscriber's offer for one publisher's stream: one video and one audio track,
    /// with the publisher's codecs, ready to be fed by the publisher's forwarders.
    pub async fn answer_subscription(&self, offer_sdp: String, video_codec: VideoCodec) -> Result<SubConnection> {
        let (events_tx, events_rx) = mpsc::channel(16);
        let (handler, gathered) = Handler::new(events_tx);
        let peer = self.build(handler).await?;
        match self.answer_subscription_on(&peer.pc, offer_sdp, video_codec, gathered).await {
            Ok((answer_sdp, video, audio)) => Ok(SubConnection { answer_sdp, peer, video, audio, events: events_rx }),
            Err(e) => {
                peer.close().await;
                Err(e)
            }
        }
    }

    async fn answer_subscription_on(
        &self,
        pc: &Arc<dyn PeerConnection>,
        offer_sdp: String,
        video_codec: VideoCodec,
        gathered: oneshot::Receiver<()>,
    ) -> Result<(String, Sink, Sink)> {
        let v = new_local_track(RtpCodecKind::Video, video_codec.rtp_codec(), "sub");
        let a = new_local_track(RtpCodecKind::Audio, opus_codec(), "sub");
        let vs = pc.add_track(v.0.clone() as Arc<dyn TrackLocal>).await?;
        let as_ = pc.add_track(a.0.clone() as Arc<dyn TrackLocal>).await?;
        let answer = self.negotiate(pc, offer_sdp, gathered).await?;
        let video = Sink::new(&vs, v.0, v.1).await?;
        let audio = Sink::new(&as_, a.0, a.1).await?;
        Ok((answer, video, audio))
    }

    async fn negotiate(
        &self,
        pc: &Arc<dyn PeerConnection>,
        offer_sdp: String,
        gathered: oneshot::Receiver<()>,
    ) -> Result<String> {
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(|e| PeerError::BadSdp(e.to_string()))?;
        // Whatever the stack refuses in the offer (no ICE credentials, no fingerprint, bad
        // m-lines) is the client's input.
        pc.set_remote_description(offer).await.map_err(|e| PeerError::BadSdp(e.to_string()))?;
        let answer = pc.create_answer(None).await?;
        pc.set_local_description(answer).await?;
        // Non-trickle on our side: the answer carries every candidate we have.
        if tokio::time::timeout(self.settings.gather_timeout, gathered).await.is_err() {
            tracing::warn!("ICE gathering timed out; answering with the candidates gathered so far");
        }
        pc.local_description().await.map(|d| d.sdp).ok_or(PeerError::Closed)
    }
}

const OUTBOX_CAPACITY: usize = 4096;

/// The largest data-channel message the WebRTC stack can carry (its SCTP maximum). The server
/// advertises it in every answer (`a=max-message-size`) and can receive frames up to it.
pub const MAX_MESSAGE_SIZE: u32 = SctpMaxMessageSize::MAX_MESSAGE_SIZE;

/// What a peer that does not advertise `a=max-message-size` accepts (RFC 8841 §6.1).
const DEFAULT_REMOTE_MAX_MESSAGE_SIZE: usize = 65_536;

/// The largest message the server may send to the peer that made `offer_sdp`: the smaller of
/// the peer's `a=max-message-size` (absent: 64 KiB; 0: no limit of its own) and the stack's
/// maximum. The stack negotiates the same value; a larger send would fail.
pub fn send_limit(offer_sdp: &str) -> usize {
    let ours = MAX_MESSAGE_SIZE as usize;
    let theirs = offer_sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=max-message-size:"))
        .map(|v| v.trim().parse::<usize>().unwrap_or(DEFAULT_REMOTE_MAX_MESSAGE_SIZE))
        .unwrap_or(DEFAULT_REMOTE_MAX_MESSAGE_SIZE);
    if theirs == 0 {
        ours
    } else {
        theirs.min(ours)
    }
}

/// A track we send on, with a fresh SSRC (returned with it).
pub fn new_local_track(kind: RtpCodecKind, codec: RTCRtpCodec, label: &str) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc = rand_u32();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let track = MediaStreamTrack::new(
        format!("exphub-{label}-{id}"),
        format!("{kind}-{id}"),
        format!("exphub-{label}-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    );
    (Arc::new(TrackLocalStaticRTP::new(track)), ssrc)
}

fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) | 1
}

/// A handle to send on and close a client's main connection.
#[derive(Clone)]
pub struct Connection {
    peer: Arc<Peer>,
    outbox: mpsc::Sender<Outgoing>,
    /// The largest text frame the peer accepts (see [`send_limit`]; the outbox refines it
    /// from the negotiated transport once the channel is open).
    max_send: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
enum Outgoing {
    Text(String),
    /// Several frames sent back to back (one outbox slot, e.g. a long session list).
    Batch(Vec<String>),
    /// Flush what is queued, then close the connection.
    Close,
}

impl Connection {
    /// Queues one text frame. Returns false if the outbox is full (a client that does not read)
    /// or closed; the caller then drops the connection.
    pub fn send(&self, text: String) -> bool {
        self.outbox.try_send(Outgoing::Text(text)).is_ok()
    }

    /// Queues several text frames as one outbox entry, sent in order. Like [`Connection::send`].
    pub fn send_all(&self, texts: Vec<String>) -> bool {
        self.outbox.try_send(Outgoing::Batch(texts)).is_ok()
    }

    /// The largest text frame (bytes) this connection's peer accepts. A larger frame would
    /// not be sent (the outbox skips it with a warning); callers send something smaller.
    pub fn max_message_size(&self) -> usize {
        self.max_send.load(Ordering::Relaxed)
    }

    /// Sends everything queued so far, then closes. Used for kick/ban so the notification
    /// arrives before the connection goes.
    pub fn close_after_flush(&self) {
        if self.outbox.try_send(Outgoing::Close).is_err() {
            let peer = self.peer.clone();
            tokio::spawn(async move { peer.close().await });
        }
    }

    /// Adds a trickled remote candidate. An empty candidate (end of candidates) is ignored.
    pub async fn add_ice_candidate(&self, c: IceCandidate) -> Result<()> {
        add_candidate(&self.peer.pc, c).await
    }
}

async fn add_candidate(pc: &Arc<dyn PeerConnection>, c: IceCandidate) -> Result<()> {
    if c.candidate.trim().is_empty() {
        return Ok(());
    }
    pc.add_ice_candidate(RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_mline_index,
        username_fragment: c.username_fragment,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// A remote ICE candidate as the browser's `RTCIceCandidate.toJSON()` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<String>,
}

/// A freshly answered main connection.
pub struct MainConnection {
    pub answer_sdp: String,
    pub conn: Connection,
    /// Events of this connection, in order; ends after [`PeerEvent::Closed`].
    pub events: mpsc::Receiver<PeerEvent>,
    /// The echo sinks (video, audio) when the connection was built with `echo`.
    pub echo: Option<(Sink, Sink)>,
}

/// A publisher→subscriber connection. Dropped without a [`SubHandle`] taken, it closes.
pub struct SubConnection {
    pub answer_sdp: String,
    peer: Arc<Peer>,
    pub video: Sink,
    pub audio: Sink,
    pub events: mpsc::Receiver<PeerEvent>,
}

impl SubConnection {
    pub fn handle(&self) -> SubHandle {
        SubHandle { peer: self.peer.clone() }
    }
}

/// Keeps a sub-connection alive; closing it ends the subscriber's view of the publisher and
/// reports [`PeerEvent::Closed`] on its events. Dropping the last handle closes it too.
#[derive(Clone)]
pub struct SubHandle {
    peer: Arc<Peer>,
}

impl SubHandle {
    pub async fn add_ice_candidate(&self, c: IceCandidate) -> Result<()> {
        add_candidate(&self.peer.pc, c).await
    }

    pub fn close(&self) {
        let peer = self.peer.clone();
        tokio::spawn(async move { peer.close().await });
    }
}

/// One peer connection and the handler it reports to, owned by us: the connection's handles
/// ([`Connection`], [`SubConnection`], [`SubHandle`]) and its tasks share it.
///
/// Ownership runs one way only, so a closed connection is freed: we own the handler, the
/// handler owns the data channel, the data channel (inside the crate) owns the crate's
/// connection state, and that state refers back to the handler only weakly ([`Registered`]).
/// Closing is explicit ([`Peer::close`], idempotent) or happens when the last owner drops.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    handler: Arc<Handler>,
    /// Closed by us: the UDP port is given back.
    closed: AtomicBool,
}

impl Peer {
    /// Closes the connection (its sockets go), lets go of its data channel and reports
    /// [`PeerEvent::Closed`] (once) to whoever reads its events.
    async fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            METRICS.udp_ports.add(-1);
        }
        let _ = self.pc.close().await;
        self.handler.release().await;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        // Dropped without a close (e.g. an answered sub-connection whose subscription ended
        // meanwhile): close it, or its driver would keep the sockets and the state forever.
        METRICS.udp_ports.add(-1);
        let (pc, handler) = (self.pc.clone(), self.handler.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = pc.close().await;
                handler.release().await;
            });
        }
    }
}

/// What the crate holds as the connection's event handler: a weak reference to ours, so that
/// the crate's connection state (which the data channel keeps alive) cannot keep our handler,
/// and through it the data channel, alive: no reference cycle. It lives exactly as long as the
/// crate's connection state, which makes it the counter of peer connections still in memory.
struct Registered {
    handler: std::sync::Weak<Handler>,
}

impl Registered {
    fn new(handler: &Arc<Handler>) -> Self {
        METRICS.peer_connections_allocated.add(1);
        Self { handler: Arc::downgrade(handler) }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        METRICS.peer_connections_allocated.add(-1);
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Registered {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if let Some(h) = self.handler.upgrade() {
            h.on_ice_gathering_state_change(state).await;
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if let Some(h) = self.handler.upgrade() {
            h.on_connection_state_change(state).await;
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        if let Some(h) = self.handler.upgrade() {
            h.on_data_channel(dc).await;
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(h) = self.handler.upgrade() {
            h.on_track(track).await;
        }
    }
}

/// Translates the crate's callbacks into [`PeerEvent`]s and tracks the data channel.
struct Handler {
    gathered: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    dc: Mutex<Option<Arc<dyn DataChannel>>>,
    shared: Arc<Shared>,
}

/// What the handler's side tasks share with it.
struct Shared {
    events: mpsc::Sender<PeerEvent>,
    dc_open: tokio::sync::watch::Sender<bool>,
    closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Reports the end of the connection, once.
    async fn closed(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.dc_open.send(false);
            let _ = self.events.send(PeerEvent::Closed).await;
        }
    }
}

impl Handler {
    /// The connection is closed: drop the data channel and report the end (once).
    async fn release(&self) {
        self.dc.lock().await.take();
        self.shared.closed().await;
    }

    fn new(events: mpsc::Sender<PeerEvent>) -> (Arc<Self>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let (dc_open, _) = tokio::sync::watch::channel(false);
        (
            Arc::new(Self {
                gathered: std::sync::Mutex::new(Some(tx)),
                dc: Mutex::new(None),
                shared: Arc::new(Shared { events, dc_open, closed: std::sync::atomic::AtomicBool::new(false) }),
            }),
            rx,
        )
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            if let Some(tx) = self.gathered.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(());
            }
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        if state == RTCPeerConnectionState::Connected {
            let _ = self.shared.events.send(PeerEvent::Connected).await;
        }
        if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
            self.shared.closed().await;
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        // SynthARium accepts any channel and the most recent one wins; so do we.
        *self.dc.lock().await = Some(dc.clone());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(ev) = dc.poll().await {
                match ev {
                    DataChannelEvent::OnOpen => {
                        let _ = shared.dc_open.send(true);
                        if shared.events.send(PeerEvent::ChannelOpen).await.is_err() {
                            break;
                        }
                    }
                    DataChannelEvent::OnMessage(m) => {
                        let ev = PeerEvent::Message { data: m.data.freeze(), is_text: m.is_string };
                        // Awaiting here is the back-pressure on a client that floods us.
                        if shared.events.send(ev).await.is_err() {
                            break;
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
            // A closed data channel ends the client's session (SynthARium: DC close → stop).
            shared.closed().await;
        });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        match RemoteTrack::new(track).await {
            Some(t) => {
                let _ = self.shared.events.send(PeerEvent::Track(t)).await;
            }
            None => tracing::warn!("remote track without SSRC or supported codec ignored"),
        }
    }
}

/// Drains a connection's outbox onto its data channel, in order, once the channel is open.
///
/// A frame larger than the peer accepts is skipped with a warning: it must never cost the
/// connection (the hub checks sizes before queueing, so this is a last line of defence).
async fn run_outbox(
    handler: Arc<Handler>,
    pc: Arc<dyn PeerConnection>,
    mut rx: mpsc::Receiver<Outgoing>,
    max_send: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut open = handler.shared.dc_open.subscribe();
    let mut refined = false;
    'outbox: while let Some(msg) = rx.recv().await {
        let texts = match msg {
            Outgoing::Text(text) => vec![text],
            Outgoing::Batch(texts) => texts,
            Outgoing::Close => {
                let dc = handler.dc.lock().await.clone();
                if let Some(dc) = dc {
                    // Let SCTP deliver what was queued (the kick notice) before closing.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                    while tokio::time::Instant::now() < deadline {
                        match dc.outstanding_bytes().await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = dc.close().await;
                }
                break;
            }
        };
        // Messages queued before the channel opens wait for it (e.g. EXPERIMENT_STARTED
        // right after a rejoin).
        if !*open.borrow() && open.wait_for(|o| *o).await.is_err() {
            break;
        }
        if !refined {
            refined = true;
            if let Some(Ok(n)) = match pc.sctp().await {
                Some(t) => Some(t.max_message_size().await),
                None => None,
            } {
                max_send.store(n as usize, Ordering::Relaxed);
            }
        }
        let dc = handler.dc.lock().await.clone();
        let Some(dc) = dc else { continue };
        for text in texts {
            match dc.send_text(&text).await {
                Ok(()) => {}
                Err(webrtc::error::Error::ErrOutboundPacketTooLarge) => {
                    tracing::warn!(
                        bytes = text.len(),
                        limit = max_send.load(Ordering::Relaxed),
                        "data channel message larger than the peer accepts; not sent"
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "data channel send failed");
                    break 'outbox;
                }
            }
        }
    }
    let _ = pc.close().await;
    handler.shared.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_limit_follows_the_offer() {
        let m = |v: &str| format!("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n{v}a=sctp-port:5000\r\n");
        assert_eq!(send_limit(&m("a=max-message-size:262144\r\n")), 262_144);
        assert_eq!(send_limit(&m("a=max-message-size:1073741823\r\n")), MAX_MESSAGE_SIZE as usize);
        assert_eq!(send_limit(&m("a=max-message-size:16384\r\n")), 16_384);
        assert_eq!(send_limit(&m("a=max-message-size:0\r\n")), MAX_MESSAGE_SIZE as usize);
        // Absent: the SCTP default of RFC 8841.
        assert_eq!(send_limit(&m("")), 65_536);
        assert_eq!(send_limit(&m("a=max-message-size:junk\r\n")), 65_536);
    }
}
