// The participant room: lobby (camera and microphone check), then the meeting room with the
// other participants placed as the session says, chat with the experimenter, and clear pages
// when the experiment ends or the participant is removed. A refresh rejoins.

import { h, fill, $, notify, fmtTime, play } from './ui.js';
import { Connection, describeError, CANVAS } from './protocol.js';
import { placeOf as placeIn } from './helpers.js';

const params = new URLSearchParams(location.search);
const sessionId = params.get('sessionId') ?? params.get('session_id') ?? '';
const participantId = params.get('participantId') ?? params.get('participant_id') ?? '';
const JOINED_KEY = `exphub-joined:${sessionId}:${participantId}`;

const el = {
  state: $('#room-state'),
  banner: $('#banner'),
  lobby: $('#lobby'),
  meeting: $('#meeting'),
  end: $('#end'),
  selfView: $('#self-view'),
  cameraStatus: $('#camera-status'),
  cameraSel: $('#camera-select'),
  micSel: $('#mic-select'),
  micLevel: $('#mic-level'),
  retryMedia: $('#retry-media'),
  join: $('#join'),
  lobbyStatus: $('#lobby-status'),
  welcome: $('#welcome-name'),
  stage: $('#stage'),
  chatList: $('#chat-list'),
  chatForm: $('#chat-form'),
  chatInput: $('#chat-input'),
  chatUnread: $('#chat-unread'),
  endTitle: $('#end-title'),
  endText: $('#end-text'),
  rejoin: $('#rejoin'),
};

const room = {
  stream: null, // camera + microphone
  conn: null,
  session: null, // our view of the session (GET_SESSION)
  me: null, // our participant entry
  started: false,
  over: false, // ended, kicked or banned: no reconnecting
  chat: [],
  history: [], // our whole chat, fetched with GET_CHAT_HISTORY when the session carries only its recent part
  historyLoading: false,
  unread: 0,
  tiles: new Map(), // pid → {el, video}
  retryTimer: null,
  retryDelay: 2000,
  joining: false,
  lobbySocket: null, // /ws while waiting for the experimenter
  audioCtx: null,
};

function setState(text, kind = 'info') {
  el.state.textContent = text;
  el.state.className = `pill conn-${kind}`;
}

function show(section) {
  for (const s of [el.lobby, el.meeting, el.end]) s.hidden = s !== section;
  document.body.dataset.view = section.id;
}

// ---------------------------------------------------------------------------- devices

async function startMedia(constraints = { video: { width: 640, height: 480 }, audio: true }) {
  el.cameraStatus.textContent = 'Starting your camera…';
  el.retryMedia.hidden = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const old = room.stream;
    room.stream = stream;
    play(el.selfView, stream, { muted: true });
    el.cameraStatus.textContent = describeTracks(stream);
    watchLevel(stream);
    await listDevices();
    if (room.conn && old) await replaceTracks(old, stream);
    old?.getTracks().forEach((t) => t.stop());
    el.join.disabled = false;
    return true;
  } catch (e) {
    const why =
      e.name === 'NotAllowedError'
        ? 'Access to the camera or microphone was refused. Allow it in the browser (the icon in the address bar) and try again.'
        : e.name === 'NotFoundError'
          ? 'No camera or microphone was found. Connect one and try again.'
          : !window.isSecureContext
            ? 'The browser allows cameras only on https:// pages (or localhost). Ask the experimenter for an https link.'
            : `The camera could not be started: ${e.message}`;
    el.cameraStatus.textContent = why;
    el.retryMedia.hidden = false;
    return false;
  }
}

function describeTracks(stream) {
  const v = stream.getVideoTracks()[0];
  const a = stream.getAudioTracks()[0];
  const s = v?.getSettings() ?? {};
  return [v ? `Camera: ${v.label || 'on'}${s.width ? ` (${s.width}×${s.height})` : ''}` : 'No camera', a ? `Microphone: ${a.label || 'on'}` : 'No microphone'].join('. ') + '.';
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = (kind) => room.stream?.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId;
  const fillSel = (sel, kind, label) => {
    const list = devices.filter((d) => d.kind === kind);
    fill(sel, list.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current(kind === 'videoinput' ? 'video' : 'audio') }, d.label || `${label} ${i + 1}`)));
    sel.disabled = list.length < 2;
  };
  fillSel(el.cameraSel, 'videoinput', 'Camera');
  fillSel(el.micSel, 'audioinput', 'Microphone');
}

function chosenConstraints() {
  return {
    video: { width: 640, height: 480, deviceId: el.cameraSel.value ? { exact: el.cameraSel.value } : undefined },
    audio: { deviceId: el.micSel.value ? { exact: el.micSel.value } : undefined },
  };
}
el.cameraSel.addEventListener('change', () => startMedia(chosenConstraints()));
el.micSel.addEventListener('change', () => startMedia(chosenConstraints()));
el.retryMedia.addEventListener('click', () => startMedia());

/** After a device change while connected: the new tracks go out on the same senders. */
async function replaceTracks(old, stream) {
  for (const sender of room.conn?.pc?.getSenders() ?? []) {
    const next = stream.getTracks().find((t) => t.kind === sender.track?.kind);
    if (next) await sender.replaceTrack(next);
  }
}

/** The microphone level meter. */
function watchLevel(stream) {
  const track = stream.getAudioTracks()[0];
  if (!track) return;
  try {
    room.audioCtx ??= new AudioContext();
    const src = room.audioCtx.createMediaStreamSource(new MediaStream([track]));
    const an = room.audioCtx.createAnalyser();
    an.fftSize = 1024;
    src.connect(an);
    const buf = new Float32Array(an.fftSize);
    const tick = () => {
      if (track.readyState !== 'live') return;
      an.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const x of buf) sum += x * x;
      el.micLevel.value = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      if (!el.lobby.hidden) requestAnimationFrame(tick);
      else setTimeout(tick, 500);
    };
    tick();
  } catch {
    /* no Web Audio: no meter */
  }
}

// ---------------------------------------------------------------------------- joining

async function join() {
  if (room.joining || room.over) return;
  room.joining = true;
  clearTimeout(room.retryTimer);
  el.join.disabled = true;
  room.audioCtx?.resume?.();
  setState('Connecting…', 'connecting');
  el.lobbyStatus.textContent = 'Connecting…';
  const conn = new Connection({ role: 'participant', sessionId, participantId, stream: room.stream });
  wire(conn);
  try {
    await conn.connect();
  } catch (e) {
    room.joining = false;
    return joinFailed(e);
  }
  room.joining = false;
  room.conn = conn;
  room.retryDelay = 2000;
  room.lobbySocket?.close();
  sessionStorage.setItem(JOINED_KEY, '1');
  el.banner.hidden = true;
  const summary = conn.participantSummary;
  if (summary?.participant_name) el.welcome.textContent = `, ${summary.participant_name}`;
  setState(room.started ? 'In the experiment' : 'Waiting for the start', 'ok');
  if (!room.started) el.lobbyStatus.textContent = 'You are in. The experiment begins when the experimenter starts it; this page changes by itself.';
  el.join.textContent = 'Joined';
  try {
    const s = await conn.request('GET_SESSION', { session_id: sessionId }, 'SESSION');
    setSession(s);
  } catch (e) {
    notify(describeError(e, 'Could not load the session'), 'error');
  }
}

function joinFailed(e) {
  const text = e.description ?? e.message;
  if (e.type === 'BANNED_PARTICIPANT') return finish('banned', '');
  if (e.type === 'UNKNOWN_PARTICIPANT') return finish('invalid', text);
  if (e.code === 409 && /ended/i.test(text)) return finish('ended', '');
  if (e.type === 'UNKNOWN_SESSION') {
    setState('Waiting for the experimenter', 'connecting');
    el.lobbyStatus.textContent = 'The experimenter has not opened this session yet. This page joins as soon as they do (if it takes long, check the link with the experimenter).';
    // The server says on /ws when an experimenter opens an experiment; polling stays as the
    // fallback (slow while the socket is open).
    retryLater(watchLobby() ? 30000 : 3000);
    return;
  }
  setState('Not connected', 'lost');
  el.lobbyStatus.textContent = describeError(e, 'Could not join');
  retryLater();
}

/** Opens the lobby socket (`/ws`) once; joins when an experimenter opens an experiment. */
function watchLobby() {
  if (room.lobbySocket) return true;
  let ws;
  try {
    ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/ws`);
  } catch {
    return false;
  }
  room.lobbySocket = ws;
  // A notice sent before the socket was open is missed: try once more when it opens.
  ws.addEventListener('open', () => {
    if (!room.conn) join();
  });
  ws.addEventListener('message', (ev) => {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (m?.type === 'EXPERIMENTER_JOINED' && !room.conn) join();
  });
  ws.addEventListener('close', () => {
    room.lobbySocket = null;
    if (!room.conn && !room.over) retryLater(3000); // back to polling
  });
  return true;
}

function retryLater(ms) {
  clearTimeout(room.retryTimer);
  const delay = ms ?? room.retryDelay;
  room.retryDelay = Math.min(room.retryDelay * 2, 15000);
  room.retryTimer = setTimeout(join, delay);
}

el.join.addEventListener('click', join);

function wire(conn) {
  conn.on('EXPERIMENT_STARTED', () => startMeeting());
  conn.on('EXPERIMENT_ENDED', (d) => {
    // Cluster mode: the experiment moved to another server; reconnect (the offer reaches it).
    if (d?.reason === 'moved') return conn.close('The experiment moved to another server.', 'lost');
    finish('ended', '');
  });
  conn.on('KICK_NOTIFICATION', (d) => finish('kicked', d?.reason ?? ''));
  conn.on('BAN_NOTIFICATION', (d) => finish('banned', d?.reason ?? ''));
  conn.on('CHAT', (m) => addChat(m, true));
  conn.on('SESSION', (s) => setSession(s));
  conn.on('echo', () => renderSelf());
  conn.on('sub', (sub) => onSub(sub));
  conn.on('subchange', (sub) => onSub(sub));
  conn.on('subclose', (sub) => onSubClose(sub));
  conn.on('servererror', (e) => notify(describeError(e), 'error'));
  conn.on('close', ({ lost, reason }) => {
    if (!lost || room.over || room.conn !== conn) return;
    room.conn = null;
    setState('Connection lost', 'lost');
    fill(el.banner, h('strong', {}, 'The connection was lost. '), `${reason} Reconnecting…`);
    el.banner.hidden = false;
    retryLater(1000);
  });
}

function setSession(s) {
  room.session = s;
  room.me = s.participants.find((p) => p.id === participantId) ?? null;
  if (room.me) {
    el.welcome.textContent = `, ${room.me.participant_name}`;
    room.chat = [];
    mergeChat(room.history);
    mergeChat(room.me.chat);
    renderChat();
    // The session carries only the recent part of a long chat; fetch the rest once.
    if ((room.me.chat_total ?? 0) > room.me.chat.length && !room.history.length) loadHistory();
  }
  layout();
}

const chatKey = (x) => `${x.time}|${x.author}|${x.message}`;

function mergeChat(msgs) {
  const seen = new Set(room.chat.map(chatKey));
  for (const m of msgs) {
    if (seen.has(chatKey(m))) continue;
    seen.add(chatKey(m));
    room.chat.push(m);
  }
}

async function loadHistory() {
  const conn = room.conn;
  if (!conn || room.historyLoading) return;
  room.historyLoading = true;
  try {
    room.history = await conn.chatHistory(sessionId, participantId);
    mergeChat(room.history);
    renderChat();
  } catch (e) {
    notify(describeError(e, 'Earlier messages could not be loaded'), 'error');
  } finally {
    room.historyLoading = false;
  }
}

// ---------------------------------------------------------------------------- meeting

function startMeeting() {
  if (room.over) return;
  room.started = true;
  setState('In the experiment', 'ok');
  show(el.meeting);
  renderSelf();
  layout();
}

/** Where a participant appears: our own `view` if it places them, else their session place. */
const placeOf = (pid, summary) => placeIn(room.session, room.me, pid, summary);

function tile(pid, name, self) {
  let t = room.tiles.get(pid);
  if (!t) {
    const video = h('video', { autoplay: true, playsinline: true, muted: self, 'aria-label': self ? 'You' : `Video of ${name}` });
    video.muted = self;
    const label = h('span', { class: 'tile-name' }, self ? `${name} (you)` : name);
    t = { el: h('div', { class: `seat${self ? ' self' : ''}`, role: 'listitem', dataset: { pid, self: String(self) } }, video, label), video, label };
    if (!self) video.addEventListener('click', () => video.play());
    room.tiles.set(pid, t);
    el.stage.append(t.el);
  }
  t.label.textContent = self ? `${name} (you)` : name;
  return t;
}

function placeTile(t, place) {
  const { position: p, size: s } = place;
  t.el.style.left = `${(100 * p.x) / CANVAS.width}%`;
  t.el.style.top = `${(100 * p.y) / CANVAS.height}%`;
  t.el.style.width = `${(100 * s.width) / CANVAS.width}%`;
  t.el.style.height = `${(100 * s.height) / CANVAS.height}%`;
  t.el.style.zIndex = String(10 + Number(p.z || 0));
}

function renderSelf() {
  if (!room.started || !room.conn) return;
  const name = room.me?.participant_name ?? room.conn.participantSummary?.participant_name ?? 'You';
  const t = tile(participantId, name, true);
  // local_stream: the participant sees the raw camera; otherwise the processed echo.
  const useLocal = room.me?.local_stream || room.conn.echo.getVideoTracks().length === 0;
  const stream = useLocal ? room.stream : room.conn.echo;
  t.el.dataset.source = useLocal ? 'camera' : 'echo';
  play(t.video, stream, { muted: true });
  placeTile(t, placeOf(participantId, room.conn.participantSummary));
}

function onSub(sub) {
  if (!sub.publisherId || !room.conn || room.conn.subs.get(sub.id) !== sub) return;
  const name = sub.summary?.participant_name ?? room.session?.participants.find((p) => p.id === sub.publisherId)?.participant_name ?? 'Participant';
  const t = tile(sub.publisherId, name, false);
  t.sub = sub;
  if (t.video.srcObject !== sub.stream) play(t.video, sub.stream, { onBlocked: () => notify('Click a picture to hear the others.') });
  t.el.dataset.state = sub.state;
  placeTile(t, placeOf(sub.publisherId, sub.summary));
}

function onSubClose(sub) {
  const t = room.tiles.get(sub.publisherId);
  if (!t || t.sub !== sub) return;
  t.video.srcObject = null;
  t.el.remove();
  room.tiles.delete(sub.publisherId);
}

function layout() {
  for (const [pid, t] of room.tiles) {
    placeTile(t, placeOf(pid, t.sub?.summary ?? (pid === participantId ? room.conn?.participantSummary : null)));
  }
  if (room.started) renderSelf();
}

// ---------------------------------------------------------------------------- chat

function addChat(m, incoming) {
  if (room.chat.some((x) => chatKey(x) === chatKey(m))) return;
  room.chat.push(m);
  renderChat();
  if (incoming && document.activeElement !== el.chatInput) {
    room.unread += 1;
    el.chatUnread.textContent = String(room.unread);
    el.chatUnread.setAttribute('aria-label', `${room.unread} unread`);
    el.chatUnread.hidden = false;
    if (!room.started) notify(`Message from the experimenter: ${m.message}`);
  }
}

el.chatInput.addEventListener('focus', () => {
  room.unread = 0;
  el.chatUnread.hidden = true;
});

function renderChat() {
  const nameOf = (pid) => room.session?.participants.find((p) => p.id === pid)?.participant_name ?? 'Participant';
  const msgs = [...room.chat].sort((a, b) => a.time - b.time);
  fill(
    el.chatList,
    msgs.length
      ? msgs.map((m) => {
          const mine = m.author === participantId;
          const who = mine ? 'You' : m.author === 'experimenter' ? 'Experimenter' : nameOf(m.author);
          const to = m.target === 'participants' ? ' → everyone' : '';
          return h('li', { class: mine ? 'mine' : 'theirs' }, h('div', { class: 'meta' }, `${who}${to} · ${fmtTime(m.time)}`), h('div', { class: 'text' }, m.message));
        })
      : h('li', { class: 'muted' }, 'No messages yet. You can write to the experimenter here.'),
  );
  el.chatList.scrollTop = el.chatList.scrollHeight;
}

el.chatForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = el.chatInput.value.trim();
  if (!text || !room.conn) return;
  const msg = { message: text, time: Date.now(), author: participantId, target: 'experimenter' };
  try {
    await room.conn.request('CHAT', msg, 'SUCCESS:CHAT');
    el.chatInput.value = '';
    addChat(msg, false);
  } catch (err) {
    notify(describeError(err, 'Your message was not sent'), 'error');
  }
});

// ---------------------------------------------------------------------------- the end

const ENDINGS = {
  ended: ['The experiment has ended', 'Thank you for taking part. You can close this page now.'],
  kicked: ['You were removed from the experiment', 'The experimenter removed you from the experiment.'],
  banned: ['You cannot take part any more', 'The experimenter has excluded you from this experiment.'],
  invalid: ['This link does not work', 'The invite link is not valid for this session. Ask the experimenter for a new one.'],
};

function finish(kind, detail) {
  if (room.over) return;
  room.over = true;
  clearTimeout(room.retryTimer);
  const conn = room.conn;
  room.conn = null;
  conn?.close('Finished.');
  sessionStorage.removeItem(JOINED_KEY);
  room.stream?.getTracks().forEach((t) => t.stop());
  for (const t of room.tiles.values()) t.video.srcObject = null;
  el.selfView.srcObject = null;
  const [title, text] = ENDINGS[kind];
  el.endTitle.textContent = title;
  el.endText.textContent = detail && kind !== 'invalid' ? `${text} Reason: ${detail}` : kind === 'invalid' && detail ? `${text} (${detail})` : text;
  el.rejoin.hidden = kind !== 'kicked';
  el.banner.hidden = true;
  document.body.dataset.ending = kind;
  setState({ ended: 'Ended', kicked: 'Removed', banned: 'Excluded', invalid: 'Invalid link' }[kind], 'off');
  document.title = `${title} · exphub`;
  show(el.end);
  el.endTitle.tabIndex = -1;
  el.endTitle.focus();
}

el.rejoin.addEventListener('click', () => location.reload());

// ---------------------------------------------------------------------------- start

async function main() {
  show(el.lobby);
  if (!sessionId || !participantId) return finish('invalid', 'the link lacks its session or participant id');
  setState('Camera check', 'info');
  const ok = await startMedia();
  // After a refresh (or a lost connection) rejoin at once: the server gives us our seat back.
  if (ok && sessionStorage.getItem(JOINED_KEY)) join();
  else if (ok) el.lobbyStatus.textContent = 'When you can see yourself, join the session.';
}

main();
