// The SynthARium protocol, as a browser speaks it. Both pages (dashboard and participant room)
// use this module and nothing else talks to the server.
//
// The flow (docs/protocol.md in the repository describes every message):
//  1. The page makes an RTCPeerConnection (the "main" connection) with a data channel labelled
//     "API". A participant sends its camera and microphone on it and receives its own processed
//     picture back (the "echo"); an experimenter only receives.
//  2. It POSTs the offer to /offer as {"request": {sdp, type, user_type, ...}}; the password or
//     the participant's ids travel in this body, never in a URL. The answer comes back as
//     {"type": "SESSION_DESCRIPTION", "data": {sdp, type}}.
//  3. Every message on the data channel is one JSON object {"type": ..., "data": ...}.
//  4. To show someone else's video the server sends CONNECTION_PROPOSAL {id, participant_summary};
//     the page answers with a new receive-only RTCPeerConnection (a "sub-connection"): it sends
//     CONNECTION_OFFER {id, offer}, trickles late ICE candidates with ADD_ICE_CANDIDATE, and
//     applies the server's CONNECTION_ANSWER.
//  5. The server may PING {sent, data}; the page answers PONG {handled_time, ping_data}.
//
// Events (addEventListener / on()): "state" (detail: state), "message" (detail: the message),
// one event per message type (detail: its data, e.g. on("CHAT", chat => ...)), "servererror"
// (an ERROR that answers no pending request), "echo" (the own processed stream), "sub", "subchange"
// and "subclose" (detail: a Sub), "close" (detail: {reason}).

/** How long to wait for ICE candidates before sending an offer anyway (later ones are trickled). */
const GATHER_WAIT_MS = 1500;
/** How long a request waits for its reply. */
const REQUEST_TIMEOUT_MS = 20000;
/** The page pings the server this often, and calls the connection lost after this silence. */
const HEARTBEAT_MS = 2500;
const SILENCE_MS = 8000;

/** An error the server answered with: {code, type, description}, or a local failure. */
/**
 * The GET_SESSION_LIST options of exphub's dashboard (an exphub addition; SynthARium sends `{}`):
 * the sessions that do not fit the first SESSION_LIST come packed in SESSION_LIST_PART frames
 * (data: an array of sessions) instead of one SESSION_CHANGE each, and without chat messages
 * (`chat_total` on each participant says how many there are; GET_CHAT_HISTORY pages them).
 * SESSION_LIST_END ends the list either way.
 */
export const SESSION_LIST_OPTIONS = Object.freeze({ parts: true, recent_chat: 0 });

export class ProtocolError extends Error {
  constructor(code, type, description) {
    super(description);
    this.name = 'ProtocolError';
    this.code = code;
    this.type = type;
    this.description = description;
  }
}

/** A random UUID v4 (crypto.randomUUID exists only in secure contexts). */
export function uuid4() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Resolves when the connection has gathered its candidates, or after `ms`. */
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The JSON form of a candidate, as ADD_ICE_CANDIDATE and /addIceCandidate want it. */
function candidateJson(c) {
  const j = c.toJSON();
  return {
    candidate: j.candidate,
    sdpMid: j.sdpMid ?? '0',
    sdpMLineIndex: j.sdpMLineIndex ?? 0,
    usernameFragment: j.usernameFragment ?? null,
  };
}

/** Posts JSON; returns the parsed body, or throws a ProtocolError with the server's error. */
async function postJson(base, path, body, signal) {
  let resp;
  try {
    resp = await fetch(base + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    throw new ProtocolError(0, 'NETWORK', `The server cannot be reached (${e.message}).`);
  }
  let json = null;
  try {
    json = await resp.json();
  } catch {
    /* not JSON */
  }
  if (!resp.ok || !json) {
    const d = json?.data ?? {};
    throw new ProtocolError(
      d.code ?? resp.status,
      d.type ?? 'HTTP',
      d.description ?? `The server answered ${resp.status} ${resp.statusText}.`,
    );
  }
  return json;
}

/**
 * One sub-connection: the stream of one publisher (a participant) to us.
 * `publisherId` is the participant's id; `summary` the proposal's participant_summary (an id
 * string for experimenters, an object {id, participant_name, position, size, ...} for
 * participants). `stream` gets the tracks; `state` follows the peer connection.
 */
export class Sub {
  constructor(id, summary) {
    this.id = id;
    this.summary = summary;
    this.publisherId = typeof summary === 'string' ? summary : summary?.id ?? '';
    this.stream = new MediaStream();
    this.state = 'new';
    this.pc = null;
  }
}

/**
 * A connection to exphub.
 * options: {role: "experimenter" | "participant", password, sessionId, participantId,
 *           stream (participant: the camera/microphone MediaStream), iceServers, base (origin)}
 */
export class Connection extends EventTarget {
  constructor(options) {
    super();
    this.options = { base: '', iceServers: [], ...options };
    this.state = 'new';
    this.subs = new Map();
    this.echo = new MediaStream();
    this.pc = null;
    this.dc = null;
    this.offerResponse = null;
    this.participantSummary = null;
    this.connectionId = uuid4();
    this._pending = [];
    this._closed = false;
  }

  get isParticipant() {
    return this.options.role === 'participant';
  }

  /** Listens to an event; `handler` gets the detail. Returns a function that stops listening. */
  on(type, handler) {
    const f = (e) => handler(e.detail);
    this.addEventListener(type, f);
    return () => this.removeEventListener(type, f);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  /** Offers, posts the offer, and resolves once the data channel is open. */
  async connect({ timeoutMs = 20000 } = {}) {
    const o = this.options;
    this._setState('connecting');
    const pc = new RTCPeerConnection({ iceServers: o.iceServers });
    this.pc = pc;
    const dc = pc.createDataChannel('API', { ordered: true });
    this.dc = dc;
    if (this.isParticipant && o.stream) {
      for (const track of o.stream.getTracks()) {
        const sender = pc.addTrack(track, o.stream);
        if (track.kind === 'video') keepResolution(sender);
      }
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
    pc.addEventListener('track', (e) => {
      this.echo.addTrack(e.track);
      this._emit('echo', this.echo);
    });
    let offered = false;
    const early = [];
    pc.addEventListener('icecandidate', (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      if (offered) this._trickleMain(candidateJson(e.candidate));
      else early.push(e.candidate);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed') this._lost('The media connection failed.');
    });
    const opened = new Promise((resolve, reject) => {
      dc.addEventListener('open', resolve, { once: true });
      dc.addEventListener('close', () => reject(new ProtocolError(0, 'CLOSED', 'The connection closed.')), {
        once: true,
      });
    });
    opened.catch(() => {});
    dc.addEventListener('message', (e) => this._onFrame(e.data));

    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, GATHER_WAIT_MS);
      const request = { sdp: pc.localDescription.sdp, type: 'offer', connection_id: this.connectionId };
      if (this.isParticipant) {
        Object.assign(request, {
          user_type: 'participant',
          session_id: o.sessionId,
          participant_id: o.participantId,
        });
      } else {
        Object.assign(request, { user_type: 'experimenter', experimenter_password: o.password });
      }
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeoutMs);
      let body;
      try {
        body = await postJson(o.base, '/offer', { request }, abort.signal);
      } finally {
        clearTimeout(timer);
      }
      if (body.type !== 'SESSION_DESCRIPTION') {
        throw new ProtocolError(500, 'INVALID_REQUEST', 'The server did not answer with a session description.');
      }
      this.offerResponse = body;
      this.participantSummary = body.data.participant_summary ?? null;
      offered = true;
      // Candidates found after the offer left (they are not in its SDP) go by trickle.
      const inSdp = request.sdp;
      for (const c of early) if (!inSdp.includes(c.candidate)) this._trickleMain(candidateJson(c));
      await pc.setRemoteDescription({ type: body.data.type, sdp: body.data.sdp });
      await withTimeout(opened, timeoutMs, 'The data channel did not open.');
    } catch (e) {
      this._closed = true;
      pc.close();
      this._setState('failed');
      throw e instanceof ProtocolError ? e : new ProtocolError(0, 'CLIENT', e.message ?? String(e));
    }
    dc.addEventListener('close', () => this._lost('The connection to the server closed.'));
    // A server that dies sends no goodbye; ICE would notice only after 30 s.
    // Anything heard clears the outstanding ping; one unanswered for SILENCE_MS means lost.
    this._pingSince = null;
    this._heartbeat = setInterval(() => {
      const now = Date.now();
      if (this._pingSince == null) {
        this._pingSince = now;
        this.send('PING', { sent: now, data: 'heartbeat' });
      } else if (now - this._pingSince > SILENCE_MS) {
        this._lost('The server stopped answering.');
      }
    }, HEARTBEAT_MS);
    this._setState('connected');
    return this;
  }

  _trickleMain(candidate) {
    postJson(this.options.base, '/addIceCandidate', { request: { id: this.connectionId, candidate } }).catch(() => {});
  }

  /** Sends a message; returns false if the channel is not open. */
  send(type, data = {}) {
    if (!this.dc || this.dc.readyState !== 'open') return false;
    this.dc.send(JSON.stringify({ type, data }));
    return true;
  }

  /**
   * Sends a request and resolves with the reply's data. `expect` is the reply type
   * ("SAVED_SESSION"), or "SUCCESS:<type>" for a SUCCESS of that type, or a predicate on the
   * message. The server handles one message at a time and answers each in order, so an ERROR
   * belongs to the oldest request still waiting; it rejects that request with a ProtocolError.
   */
  request(type, data, expect, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    const match =
      typeof expect === 'function'
        ? expect
        : expect.startsWith('SUCCESS:')
          ? (m) => m.type === 'SUCCESS' && m.data?.type === expect.slice(8)
          : (m) => m.type === expect;
    return new Promise((resolve, reject) => {
      const entry = { type, match, resolve, reject };
      entry.timer = setTimeout(() => {
        this._pending = this._pending.filter((p) => p !== entry);
        reject(new ProtocolError(408, 'TIMEOUT', `No answer from the server to ${type}.`));
      }, timeoutMs);
      this._pending.push(entry);
      if (!this.send(type, data)) {
        clearTimeout(entry.timer);
        this._pending = this._pending.filter((p) => p !== entry);
        reject(new ProtocolError(0, 'CLOSED', 'Not connected to the server.'));
      }
    });
  }

  /**
   * A participant's whole chat, fetched page by page with GET_CHAT_HISTORY (an exphub
   * addition): sessions carry only each chat's recent messages, and `chat_total` on a
   * participant whose chat is longer. Pages come newest first; `onPage(messages)` gets each
   * page (oldest first within it) as it arrives. Resolves with the whole chat, oldest first.
   */
  async chatHistory(sessionId, participantId, onPage) {
    let before;
    let all = [];
    for (;;) {
      const data = { session_id: sessionId, participant_id: participantId };
      if (before !== undefined) data.before = before;
      const page = await this.request(
        'GET_CHAT_HISTORY',
        data,
        (m) => m.type === 'CHAT_HISTORY' && m.data?.session_id === sessionId && m.data?.participant_id === participantId,
      );
      all = [...page.messages, ...all];
      onPage?.(page.messages, page);
      if (!page.start || !page.messages.length) return all;
      before = page.start;
    }
  }

  /**
   * The joined experiment's group filters with their recent results (GET_GROUP_FILTERS_DATA,
   * an exphub addition): resolves with the reply's data {filters: [{id, name, channel,
   * members, results: [{members, window_end_ms, value, n_samples}]}], push: false}. With
   * `subscribe: true` every later batch of results comes as GROUP_FILTERS_DATA with `push:
   * true`. The reply and the pushes are also "GROUP_FILTERS_DATA" events. A reply too large
   * for the connection (413) is asked for again with half as many `results`, down to 25.
   */
  async groupFiltersData({ filterId = 'all', results, subscribe } = {}) {
    for (let n = results; ; n = Math.floor(n / 2)) {
      const data = { filter_id: filterId };
      if (n != null) data.results = n;
      if (subscribe != null) data.subscribe = subscribe;
      try {
        return await this.request('GET_GROUP_FILTERS_DATA', data, (m) => m.type === 'GROUP_FILTERS_DATA' && m.data?.push === false);
      } catch (e) {
        if (!(e.code === 413 && n != null && n >= 50)) throw e;
      }
    }
  }

  _onFrame(text) {
    this._pingSince = null;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    const d = msg.data;
    switch (msg.type) {
      case 'PING':
        this.send('PONG', { handled_time: Date.now(), ping_data: d });
        break;
      case 'CONNECTION_PROPOSAL':
        this._onProposal(d);
        break;
      case 'CONNECTION_ANSWER':
        this._onAnswer(d);
        break;
    }
    if (msg.type === 'ERROR') {
      // Errors about sub-connections answer no request of ours.
      if (d?.type === 'UNKNOWN_SUBCONNECTION_ID' || /connection offer/i.test(d?.description ?? '')) {
        console.warn('sub-connection error', d);
      } else if (this._pending.length) {
        const p = this._pending.shift();
        clearTimeout(p.timer);
        p.reject(new ProtocolError(d?.code, d?.type, d?.description ?? 'Unknown error.'));
      } else {
        this._emit('servererror', new ProtocolError(d?.code, d?.type, d?.description ?? 'Unknown error.'));
      }
    } else if (!(msg.type === 'SUCCESS' && d?.type === 'ADD_ICE_CANDIDATE')) {
      const i = this._pending.findIndex((p) => p.match(msg));
      if (i >= 0) {
        const [p] = this._pending.splice(i, 1);
        clearTimeout(p.timer);
        p.resolve(d);
      }
    }
    this._emit('message', msg);
    this._emit(msg.type, d);
  }

  async _onProposal(data) {
    const sub = new Sub(data.id, data.participant_summary);
    // A publisher is shown once: a new proposal for it replaces an older sub-connection.
    for (const old of this.subs.values()) {
      if (old.publisherId && old.publisherId === sub.publisherId) this.closeSub(old, 'replaced');
    }
    this.subs.set(sub.id, sub);
    const pc = new RTCPeerConnection({ iceServers: this.options.iceServers });
    sub.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addEventListener('track', (e) => {
      sub.stream.addTrack(e.track);
      this._emit('subchange', sub);
    });
    let offered = false;
    pc.addEventListener('icecandidate', (e) => {
      if (offered && e.candidate && e.candidate.candidate) {
        this.send('ADD_ICE_CANDIDATE', { id: sub.id, candidate: candidateJson(e.candidate) });
      }
    });
    pc.addEventListener('connectionstatechange', () => {
      const s = pc.connectionState;
      sub.state = s;
      if (s === 'failed' || s === 'closed') this.closeSub(sub, s);
      else this._emit('subchange', sub);
    });
    sub.state = 'connecting';
    this._emit('sub', sub);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, GATHER_WAIT_MS);
      if (this.subs.get(sub.id) !== sub) return;
      offered = true;
      this.send('CONNECTION_OFFER', { id: sub.id, offer: { sdp: pc.localDescription.sdp, type: 'offer' } });
    } catch (e) {
      console.warn('could not offer a sub-connection', e);
      this.closeSub(sub, 'failed');
    }
  }

  async _onAnswer(data) {
    const sub = this.subs.get(data?.id);
    if (!sub?.pc) return;
    try {
      await sub.pc.setRemoteDescription({ type: data.answer.type, sdp: data.answer.sdp });
    } catch (e) {
      console.warn('could not apply a sub-connection answer', e);
      this.closeSub(sub, 'failed');
    }
  }

  /** Closes one sub-connection (e.g. of a participant who was removed) and emits "subclose". */
  closeSub(sub, why = 'closed') {
    if (this.subs.get(sub.id) !== sub) return;
    this.subs.delete(sub.id);
    sub.state = why === 'failed' ? 'failed' : 'closed';
    try {
      sub.pc?.close();
    } catch {
      /* already closed */
    }
    this._emit('subclose', sub);
  }

  _lost(reason) {
    if (this._closed) return;
    this.close(reason, 'lost');
  }

  /** Closes everything. `state` is "closed" (we closed it) or "lost" (it dropped). */
  close(reason = 'Closed.', state = 'closed') {
    if (this._closed) return;
    this._closed = true;
    clearInterval(this._heartbeat);
    for (const sub of [...this.subs.values()]) this.closeSub(sub, 'closed');
    for (const p of this._pending) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError(0, 'CLOSED', reason));
    }
    this._pending = [];
    try {
      this.dc?.close();
    } catch {
      /* ignore */
    }
    try {
      this.pc?.close();
    } catch {
      /* ignore */
    }
    this._setState(state);
    this._emit('close', { reason, lost: state === 'lost' });
  }

  /** Statistics of a received stream: {width, height, fps, framesDecoded, rttMs, kbps}. */
  static async inboundStats(pc, previous) {
    const out = { width: 0, height: 0, fps: 0, framesDecoded: 0, rttMs: null, bytes: 0, at: performance.now() };
    if (!pc) return out;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.width = s.frameWidth ?? 0;
        out.height = s.frameHeight ?? 0;
        out.fps = s.framesPerSecond ?? 0;
        out.framesDecoded = s.framesDecoded ?? 0;
        out.bytes += s.bytesReceived ?? 0;
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.bytes += s.bytesReceived ?? 0;
      } else if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime != null) {
        out.rttMs = Math.round(s.currentRoundTripTime * 1000);
      }
    });
    out.kbps = previous ? Math.max(0, ((out.bytes - previous.bytes) * 8) / (out.at - previous.at)) : null;
    return out;
  }
}

/** Chromium otherwise lowers the resolution while its bandwidth estimate ramps up. */
function keepResolution(sender) {
  try {
    if (sender.track) sender.track.contentHint = 'detail';
    const p = sender.getParameters();
    p.degradationPreference = 'maintain-resolution';
    sender.setParameters(p).catch(() => {});
  } catch {
    /* not supported: fine */
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new ProtocolError(408, 'TIMEOUT', what)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A readable sentence for an error, with what was being done. */
export function describeError(e, doing) {
  const what = doing ? `${doing}: ` : '';
  if (e instanceof ProtocolError) {
    const hint = ERROR_HINTS[e.type];
    const code = e.code && e.type && !['NETWORK', 'CLIENT', 'CLOSED', 'TIMEOUT'].includes(e.type) ? ` (${e.code} ${e.type})` : '';
    return `${what}${e.description}${hint ? ' ' + hint : ''}${code}`;
  }
  return `${what}${e?.message ?? e}`;
}

const ERROR_HINTS = {
  FORBIDDEN: 'This account may not do that.',
  NOT_CONNECTED_TO_EXPERIMENT: 'Open the experiment first.',
  EXPERIMENT_ALREADY_STARTED: 'A session that has run can no longer be edited; duplicate it instead.',
};

/** The live state of a session, from its times. */
export function sessionStatus(s) {
  if (s.end_time > 0) return 'ended';
  if (s.start_time > 0) return 'running';
  if (s.creation_time > 0) return 'open';
  return 'draft';
}

/** A new, empty session in the protocol's SessionDict shape. */
export function newSession() {
  return {
    id: '',
    title: '',
    description: '',
    date: Date.now(),
    time_limit: 3600000,
    record: false,
    participants: [],
    creation_time: 0,
    start_time: 0,
    end_time: 0,
    notes: [],
    log: [],
  };
}

/** A new participant seat (id "" until the server assigns one). */
export function newParticipant(name, position, size) {
  return {
    id: '',
    participant_name: name,
    banned: false,
    muted_video: false,
    muted_audio: false,
    position: { x: 0, y: 0, z: 0, ...position },
    size: { width: 320, height: 240, ...size },
    chat: [],
    audio_filters: [],
    video_filters: [],
    audio_group_filters: [],
    video_group_filters: [],
    local_stream: false,
    chat_filters: [],
    lastMessageSentTime: 0,
    lastMessageReadTime: 0,
    view: [],
    canvas_id: uuid4(),
    asymmetric_filters: [],
    asymmetric_filters_id: uuid4(),
  };
}

/** The invite link of a participant. */
export function inviteLink(origin, sessionId, participantId) {
  const q = new URLSearchParams({ participantId, sessionId });
  return `${origin}/lobby?${q}`;
}

/** SynthARium's designer canvas, in which positions and sizes are given. */
export const CANVAS = { width: 1040, height: 640 };
