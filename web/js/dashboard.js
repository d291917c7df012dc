// The experimenter dashboard: log in, list sessions, edit them, run an experiment.
// Views are chosen by the address's hash: #/ (sessions), #/new, #/edit/<id>, #/live/<id>.

import { h, fill, $, notify, confirmDialog, fmtTime } from './ui.js';
import { Connection, describeError, sessionStatus, newSession, SESSION_LIST_OPTIONS } from './protocol.js';
import { FilterCatalogue, sessionEditor } from './editor.js';
import { LiveView } from './live.js';

const app = {
  conn: null,
  password: null,
  sessions: new Map(),
  /** Ids of sessions with recordings on the server (GET_RECORDING_LIST). */
  recorded: new Set(),
  catalogue: new FilterCatalogue(null, []),
  origin: location.origin,
  live: null,
  reconnectTimer: null,
  reconnectDelay: 1000,
  go(route) {
    if (location.hash === route) render();
    else location.hash = route;
  },
};

const main = $('#main');
const connState = $('#connection-state');
const logoutBtn = $('#logout');

// ---------------------------------------------------------------------------- connection

function setConnState(text, kind) {
  connState.textContent = text;
  connState.className = `pill conn-${kind}`;
}

async function connect(password) {
  const conn = new Connection({ role: 'experimenter', password });
  setConnState('Connecting…', 'connecting');
  await conn.connect();
  app.conn = conn;
  app.password = password;
  wire(conn);
  setConnState('Connected', 'ok');
  logoutBtn.hidden = false;
  const [config, infos, list] = await Promise.all([
    conn.request('GET_FILTERS_CONFIG', {}, 'FILTERS_CONFIG'),
    fetch('/web/filters.json')
      .then((r) => (r.ok ? r.json() : []))
      .catch(() => []),
    conn.request('GET_SESSION_LIST', SESSION_LIST_OPTIONS, 'SESSION_LIST'),
  ]);
  app.catalogue = new FilterCatalogue(config, infos);
  setSessions(list);
  return conn;
}

/** Asks which sessions have recordings; redraws the list if that changed. */
async function refreshRecordings() {
  if (!app.conn) return;
  try {
    const list = await app.conn.request('GET_RECORDING_LIST', {}, 'RECORDING_LIST');
    const ids = (list ?? []).filter((e) => e.participants?.some((p) => p.video?.length || p.audio?.length)).map((e) => e.session_id);
    const changed = ids.length !== app.recorded.size || ids.some((id) => !app.recorded.has(id));
    app.recorded = new Set(ids);
    if (changed && currentView() === 'list') renderList();
  } catch {
    // The list simply shows no download buttons.
  }
}

/** Streams the session's research data (session file, manifest, event log, media) to a file. */
function downloadData(s) {
  let frame = $('#download-frame');
  if (!frame) {
    frame = h('iframe', { id: 'download-frame', name: 'download-frame', hidden: true, title: 'download' });
    document.body.append(frame);
  }
  const form = h(
    'form',
    { method: 'post', action: `/recordings/${encodeURIComponent(s.id)}/export`, target: 'download-frame', hidden: true },
    h('input', { type: 'hidden', name: 'password', value: app.password }),
  );
  document.body.append(form);
  form.submit();
  form.remove();
  notify(`Downloading the data of “${s.title}” (${s.id}.tar).`);
}

function setSessions(list) {
  app.sessions = new Map((list ?? []).map((s) => [s.id, s]));
}

/** Keeps the session map current and redraws what shows it. */
function wire(conn) {
  // A long session list arrives as SESSION_LIST and then SESSION_LIST_PARTs (we ask for parts;
  // SynthARium's way is one SESSION_CHANGE per further session): redraw the list at most every
  // 100 ms, not once per message.
  let listTimer = null;
  const renderListSoon = () => {
    if (listTimer) return;
    listTimer = setTimeout(() => {
      listTimer = null;
      if (currentView() === 'list') renderList();
    }, 100);
  };
  const upsert = (s) => {
    if (!s?.id) return;
    app.sessions.set(s.id, s);
    if (app.live?.sid === s.id) app.live.sessionReplaced();
    else if (currentView() === 'list') renderListSoon();
  };
  conn.on('SESSION_LIST', (list) => {
    setSessions(list);
    if (currentView() === 'list') renderList();
    app.live?.sessionReplaced();
  });
  conn.on('SESSION_CHANGE', upsert);
  conn.on('SESSION_LIST_PART', (list) => {
    for (const s of list ?? []) if (s?.id) app.sessions.set(s.id, s);
    if ((list ?? []).some((s) => s?.id === app.live?.sid)) app.live.sessionReplaced();
    if (currentView() === 'list') renderListSoon();
  });
  conn.on('SAVED_SESSION', upsert);
  conn.on('SESSION', upsert);
  conn.on('DELETED_SESSION', (id) => {
    app.sessions.delete(id);
    if (currentView() === 'list') renderList();
  });
  conn.on('EXPERIMENT_CREATED', (d) => {
    const s = app.sessions.get(d.session_id);
    if (s) s.creation_time = d.creation_time;
    if (currentView() === 'list') renderList();
  });
  conn.on('servererror', (e) => notify(describeError(e, 'The server reported an error'), 'error'));
  conn.on('close', ({ lost, reason }) => {
    if (!lost || app.conn !== conn) return;
    setConnState('Connection lost', 'lost');
    showLostBanner(reason);
    scheduleReconnect();
  });
}

function showLostBanner(reason) {
  const banner = $('#banner');
  fill(
    banner,
    h('strong', {}, 'The connection to the server was lost. '),
    h('span', {}, `${reason} Trying again…`),
    h('button', { type: 'button', onclick: () => reconnect() }, 'Reconnect now'),
  );
  banner.hidden = false;
}

function scheduleReconnect() {
  clearTimeout(app.reconnectTimer);
  app.reconnectTimer = setTimeout(reconnect, app.reconnectDelay);
  app.reconnectDelay = Math.min(app.reconnectDelay * 2, 15000);
}

async function reconnect() {
  clearTimeout(app.reconnectTimer);
  if (!app.password || app.conn?.state === 'connected') return;
  try {
    await connect(app.password);
    app.reconnectDelay = 1000;
    $('#banner').hidden = true;
    notify('Reconnected.');
    if (app.live) await app.live.reattach();
    else render();
  } catch (e) {
    setConnState('Connection lost', 'lost');
    if (e.code === 401) {
      logout();
      notify(describeError(e, 'Could not log in again'), 'error');
      return;
    }
    showLostBanner(describeError(e));
    scheduleReconnect();
  }
}

function logout() {
  app.live?.destroy();
  app.live = null;
  const c = app.conn;
  app.conn = null;
  app.password = null;
  c?.close('Logged out.');
  clearTimeout(app.reconnectTimer);
  $('#banner').hidden = true;
  logoutBtn.hidden = true;
  setConnState('Not connected', 'off');
  renderLogin();
}
logoutBtn.addEventListener('click', logout);

// ---------------------------------------------------------------------------- views

function currentView() {
  if (!app.conn) return 'login';
  const hash = location.hash || '#/';
  if (hash.startsWith('#/live/')) return 'live';
  if (hash.startsWith('#/edit/') || hash === '#/new') return 'edit';
  return 'list';
}

function render() {
  const view = currentView();
  if (view !== 'live' && app.live) {
    app.live.destroy();
    app.live = null;
  }
  if (view === 'login') return renderLogin();
  if (view === 'list') {
    renderList();
    refreshRecordings();
    return;
  }
  if (view === 'edit') return renderEdit();
  if (view === 'live') return renderLive();
}
window.addEventListener('hashchange', render);

function renderLogin() {
  document.title = 'Log in · exphub';
  const input = h('input', { id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error' });
  const btn = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h(
    'form',
    {
      class: 'card login',
      'aria-labelledby': 'login-title',
      onsubmit: async (e) => {
        e.preventDefault();
        btn.disabled = true;
        error.textContent = '';
        try {
          await connect(input.value);
          render();
        } catch (err) {
          setConnState('Not connected', 'off');
          error.textContent =
            err.code === 401 ? 'Wrong password. Use the experimenter password the server printed or was given.' : describeError(err, 'Could not log in');
          input.select();
        } finally {
          btn.disabled = false;
        }
      },
    },
    h('h2', { id: 'login-title' }, 'Experimenter login'),
    h('p', { class: 'muted' }, 'The password is sent to the server inside the connection request, never in the address.'),
    // For password managers: the account this password belongs to.
    h('input', { type: 'text', name: 'username', autocomplete: 'username', value: 'experimenter', hidden: true }),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Experimenter password'), input),
    error,
    h('div', { class: 'row end' }, btn),
  );
  fill(main, form);
  input.focus();
}

const STATUS_TEXT = { draft: 'Draft', open: 'Open (waiting)', running: 'Running', ended: 'Ended' };

function renderList() {
  document.title = 'Sessions · exphub';
  const sessions = [...app.sessions.values()].sort((a, b) => (b.date || 0) - (a.date || 0) || a.title.localeCompare(b.title));
  const rows = sessions.map((s) => {
    const st = sessionStatus(s);
    return h(
      'tr',
      { dataset: { sid: s.id } },
      h('th', { scope: 'row' }, h('a', { href: `#/edit/${s.id}` }, s.title || 'Untitled'), s.description ? h('div', { class: 'muted small' }, s.description.slice(0, 120)) : null),
      h('td', {}, String(s.participants.length)),
      h('td', {}, h('span', { class: `pill status-${st}` }, STATUS_TEXT[st])),
      h('td', {}, s.date ? fmtTime(s.date) : ''),
      h(
        'td',
        {},
        h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'small primary', 'aria-label': `${st === 'ended' ? 'View' : st === 'draft' ? 'Open experiment' : 'Join experiment'} ${s.title}`, onclick: () => app.go(`#/live/${s.id}`) }, st === 'ended' ? 'View record' : st === 'draft' ? 'Open experiment' : 'Join experiment'),
        h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${s.title}`, onclick: () => app.go(`#/edit/${s.id}`) }, st === 'draft' || st === 'open' ? 'Edit' : 'Details'),
        app.recorded.has(s.id)
          ? h('button', { type: 'button', class: 'small', 'aria-label': `Download the data of ${s.title}`, onclick: () => downloadData(s) }, 'Download data')
          : null,
        h('button', { type: 'button', class: 'small', 'aria-label': `Duplicate ${s.title}`, onclick: () => duplicate(s) }, 'Duplicate'),
        h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${s.title}`, onclick: () => remove(s) }, 'Delete'),
        ),
      ),
    );
  });
  fill(
    main,
    h(
      'section',
      { 'aria-labelledby': 'sessions-title' },
      h('div', { class: 'row' }, h('h2', { id: 'sessions-title' }, 'Sessions'), h('span', { class: 'grow' }), h('button', { type: 'button', class: 'primary', onclick: () => app.go('#/new') }, 'New session')),
      sessions.length
        ? h(
            'table',
            { class: 'sessions' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Title'), h('th', { scope: 'col' }, 'Participants'), h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, 'Planned'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
            h('tbody', {}, rows),
          )
        : h('p', { class: 'muted' }, 'No sessions yet. Create one with “New session”.'),
    ),
  );
}

async function save(s) {
  try {
    const saved = await app.conn.request('SAVE_SESSION', s, 'SAVED_SESSION');
    app.sessions.set(saved.id, saved);
    notify(`Session “${saved.title}” saved.`);
    return saved;
  } catch (e) {
    notify(describeError(e, 'The session was not saved'), 'error');
    return null;
  }
}

/** A copy of a session to run again: new ids, no chat, notes or times. */
async function duplicate(s) {
  const copy = JSON.parse(JSON.stringify(s));
  Object.assign(copy, { id: '', title: `Copy of ${s.title}`, creation_time: 0, start_time: 0, end_time: 0, notes: [], log: [] });
  for (const p of copy.participants) {
    delete p.chat_total;
    Object.assign(p, { id: '', chat: [], banned: false, muted_video: false, muted_audio: false, lastMessageSentTime: 0, lastMessageReadTime: 0 });
  }
  const saved = await save(copy);
  if (saved && currentView() === 'list') renderList();
  return saved;
}

async function remove(s) {
  if (!(await confirmDialog(`Delete “${s.title}”?`, 'The session file is deleted. Recordings stay on the server.', { confirm: 'Delete', danger: true }))) return;
  try {
    await app.conn.request('DELETE_SESSION', { session_id: s.id }, (m) => m.type === 'DELETED_SESSION' && m.data === s.id);
    notify(`Session “${s.title}” deleted.`);
  } catch (e) {
    notify(describeError(e, 'The session was not deleted'), 'error');
  }
  renderList();
}

function renderEdit() {
  const hash = location.hash;
  const s = hash === '#/new' ? newSession() : app.sessions.get(hash.slice('#/edit/'.length));
  if (!s) {
    fill(main, h('p', {}, 'No such session. ', h('a', { href: '#/' }, 'Back to the sessions')));
    return;
  }
  document.title = `${s.id ? s.title : 'New session'} · exphub`;
  fill(
    main,
    sessionEditor(s, {
      catalogue: app.catalogue,
      origin: app.origin,
      onSave: async (x) => {
        const saved = await save(x);
        // A new session now has an address of its own.
        if (saved && location.hash === '#/new') history.replaceState(null, '', `#/edit/${saved.id}`);
        return saved;
      },
      onCancel: () => app.go('#/'),
      onDuplicate: async (x) => {
        const saved = await duplicate(x);
        if (saved) app.go(`#/edit/${saved.id}`);
      },
    }),
  );
  main.querySelector('#session-title')?.focus();
}

function renderLive() {
  const sid = location.hash.slice('#/live/'.length);
  if (app.live?.sid === sid) return;
  app.live?.destroy();
  if (!app.sessions.has(sid)) {
    app.live = null;
    fill(main, h('p', {}, 'No such session. ', h('a', { href: '#/' }, 'Back to the sessions')));
    return;
  }
  document.title = `${app.sessions.get(sid).title} (live) · exphub`;
  app.live = new LiveView(app, sid);
  fill(main, app.live.el);
  app.live.update();
  app.live.enter();
}

setConnState('Not connected', 'off');
render();
