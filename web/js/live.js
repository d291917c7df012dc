// The live experiment view of the dashboard: a grid with every participant's processed video,
// their state, mute and filters, live filter data; a live chart per pair of every group filter
// under it; start and stop; chat, notes and live filter changes (SET_FILTERS) in the side panel.

import { h, fill, notify, prompt, confirmDialog, fmtTime, fmtDuration, play, setPressed, copyText } from './ui.js';
import { Connection, describeError, sessionStatus, inviteLink } from './protocol.js';
import { filterEditor } from './editor.js';
import {
  formatFilterData,
  GROUP_CHART,
  groupSignature,
  mergeGroupData,
  numericKeys,
  chooseKey,
  fmtValue,
  chartGeometry,
} from './helpers.js';

const clone = (v) => JSON.parse(JSON.stringify(v));

export class LiveView {
  /** app: {conn, sessions (Map), catalogue, origin, go(route)}. */
  constructor(app, sessionId) {
    this.app = app;
    this.sid = sessionId;
    this.tiles = new Map(); // pid → {el, video, ...}
    this.subByPid = new Map();
    this.kicked = new Set();
    this.filterData = new Map(); // pid → Map(filter id → data)
    this.stats = new Map(); // pid → last stats
    this.lastRead = new Map();
    this.liveChat = []; // CHAT messages received since the last session update
    // pid → its whole chat as far as fetched with GET_CHAT_HISTORY (sessions carry recent chat only).
    this.history = new Map();
    this.fetching = new Set();
    this.groups = new Map(); // group filter id → its per-pair series (helpers.mergeGroupData)
    this.groupKeys = new Map(); // group filter id → the value key chosen to plot
    this.groupCards = new Map(); // group filter id → {el, ..., pairs: Map(members key → figure)}
    this.groupSig = null; // the session's group filters when last asked for (groupSignature)
    this.chatTarget = 'participants';
    this.tab = 'chat';
    this.joined = false;
    this.offs = [];
    this.timers = [];
    this.el = h('section', { class: 'live', 'aria-labelledby': 'live-title' });
    this.build();
  }

  get session() {
    return this.app.sessions.get(this.sid);
  }

  get conn() {
    return this.app.conn;
  }

  participant(pid) {
    return this.session?.participants.find((p) => p.id === pid);
  }

  name(pid) {
    return this.participant(pid)?.participant_name ?? pid;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Joins the experiment of the session, creating it if none is open. */
  async enter() {
    this.attach();
    const s = this.session;
    if (!s) return;
    try {
      await this.conn.request('JOIN_EXPERIMENT', { session_id: this.sid }, 'SUCCESS:JOIN_EXPERIMENT');
      this.joined = true;
      this.expState = { open: 'open', draft: 'open', running: 'running', ended: 'ended' }[sessionStatus(this.session ?? s)];
    } catch (e) {
      if (e.type === 'UNKNOWN_EXPERIMENT' && sessionStatus(s) !== 'ended') {
        try {
          await this.conn.request('CREATE_EXPERIMENT', { session_id: this.sid }, 'SUCCESS:JOIN_EXPERIMENT');
          this.joined = true;
          // A new experiment waits for its start (also one re-created after a server restart).
          this.expState = 'open';
          notify('Experiment opened: participants can join now.');
        } catch (e2) {
          notify(describeError(e2, 'Could not open the experiment'), 'error');
        }
      } else if (e.type === 'UNKNOWN_EXPERIMENT') {
        notify('This experiment has ended; its record is shown.', 'info');
      } else {
        notify(describeError(e, 'Could not join the experiment'), 'error');
      }
    }
    this.update();
    if (this.joined) this.requestGroups();
  }

  /** Listens to the current connection (again, after a reconnect). */
  attach() {
    this.offs.forEach((f) => f());
    const c = this.conn;
    this.offs = [
      c.on('sub', (sub) => this.onSub(sub)),
      c.on('subchange', (sub) => this.onSub(sub)),
      c.on('subclose', (sub) => this.onSubClose(sub)),
      c.on('EXPERIMENT_STARTED', (d) => {
        this.expState = 'running';
        if (this.session) this.session.start_time = d.start_time;
        notify('The experiment has started.');
        this.update();
      }),
      c.on('EXPERIMENT_ENDED', (d) => {
        this.expState = 'ended';
        if (this.session) Object.assign(this.session, { end_time: d.end_time, start_time: d.start_time });
        notify('The experiment has ended.');
        this.update();
      }),
      c.on('CHAT', (m) => this.onChat(m)),
      c.on('FILTERS_DATA', (d) => this.onFiltersData(d)),
      c.on('GROUP_FILTERS_DATA', (d) => this.onGroupData(d)),
    ];
    for (const sub of c.subs.values()) this.onSub(sub);
    if (!this.timers.length) {
      this.timers.push(setInterval(() => this.poll(), 2000));
      this.timers.push(setInterval(() => this.updateClock(), 1000));
    }
  }

  /** After a reconnect: listen to the new connection and join again. */
  async reattach() {
    this.joined = false;
    this.expState = null;
    this.groupSig = null;
    this.subByPid.clear();
    await this.enter();
  }

  /** Leaves the experiment (its sub-connections close) and stops every timer. */
  destroy() {
    this.offs.forEach((f) => f());
    this.timers.forEach(clearInterval);
    this.timers = [];
    clearTimeout(this.groupTimer);
    this.groupTimer = null;
    for (const t of this.tiles.values()) t.video.srcObject = null;
    if (this.joined && this.conn?.state === 'connected') {
      this.conn.request('LEAVE_EXPERIMENT', {}, 'SUCCESS:LEAVE_EXPERIMENT').catch(() => {});
    }
    this.joined = false;
  }

  // ------------------------------------------------------------------ building

  build() {
    this.titleEl = h('h2', { id: 'live-title' });
    this.statusEl = h('span', { class: 'pill', id: 'experiment-status', role: 'status' });
    this.clockEl = h('span', { class: 'clock muted', 'aria-label': 'Time since start' });
    this.startBtn = h('button', { type: 'button', class: 'primary', onclick: () => this.start() }, 'Start experiment');
    this.stopBtn = h('button', { type: 'button', class: 'danger', onclick: () => this.stop() }, 'Stop experiment');
    this.grid = h('div', { class: 'grid', role: 'list', 'aria-label': 'Participants' });
    this.side = h('aside', { class: 'side', 'aria-label': 'Chat, notes and filters' });
    this.groupStatus = h('p', { class: 'muted group-status', role: 'status' });
    this.groupList = h('div', { class: 'group-list' });
    this.groupPanel = h(
      'section',
      { class: 'group-filters', id: 'group-filters', 'aria-labelledby': 'group-filters-title', hidden: true },
      h('h3', { id: 'group-filters-title' }, 'Group filters'),
      this.groupStatus,
      this.groupList,
    );
    fill(
      this.el,
      h(
        'header',
        { class: 'live-head row' },
        h('button', { type: 'button', onclick: () => this.app.go('#/') }, '← Sessions'),
        this.titleEl,
        this.statusEl,
        this.clockEl,
        h('span', { class: 'grow' }),
        this.startBtn,
        this.stopBtn,
      ),
      h('div', { class: 'live-body' }, h('div', { class: 'live-main' }, this.grid, this.groupPanel), this.side),
    );
    this.buildSide();
  }

  buildSide() {
    const tabs = [
      ['chat', 'Chat'],
      ['notes', 'Notes'],
      ['filters', 'Filters'],
    ];
    this.tabBtns = new Map();
    const list = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Side panel' });
    for (const [id, label] of tabs) {
      const b = h(
        'button',
        {
          type: 'button',
          role: 'tab',
          id: `tab-${id}`,
          'aria-controls': `panel-${id}`,
          onclick: () => this.showTab(id),
          onkeydown: (e) => {
            const i = tabs.findIndex(([t]) => t === id);
            const j = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : null;
            if (j == null) return;
            const next = tabs[(j + tabs.length) % tabs.length][0];
            this.showTab(next);
            this.tabBtns.get(next).focus();
          },
        },
        label,
      );
      this.tabBtns.set(id, b);
      list.append(b);
    }
    // Chat
    this.chatTargetSel = h('select', {
      id: 'chat-target',
      onchange: () => {
        this.chatTarget = this.chatTargetSel.value;
        this.renderChat();
      },
    });
    this.chatList = h('ol', { id: 'chat-list', class: 'messages', 'aria-live': 'polite', 'aria-label': 'Messages' });
    this.chatInput = h('input', { id: 'chat-input', type: 'text', autocomplete: 'off', maxlength: 2000 });
    const chatPanel = h(
      'div',
      { role: 'tabpanel', id: 'panel-chat', 'aria-labelledby': 'tab-chat', class: 'panel' },
      h('div', { class: 'field' }, h('label', { for: 'chat-target' }, 'Conversation'), this.chatTargetSel),
      this.chatList,
      h(
        'form',
        { class: 'row chat-form', onsubmit: (e) => (e.preventDefault(), this.sendChat()) },
        h('label', { for: 'chat-input', class: 'visually-hidden' }, 'Message'),
        this.chatInput,
        h('button', { type: 'submit', class: 'primary' }, 'Send'),
      ),
    );
    // Notes
    this.notesList = h('ol', { class: 'notes', 'aria-label': 'Notes' });
    this.noteInput = h('textarea', { id: 'note-input', rows: 3 });
    const notesPanel = h(
      'div',
      { role: 'tabpanel', id: 'panel-notes', 'aria-labelledby': 'tab-notes', class: 'panel' },
      this.notesList,
      h(
        'form',
        { onsubmit: (e) => (e.preventDefault(), this.addNote()) },
        h('label', { for: 'note-input' }, 'New note'),
        this.noteInput,
        h('div', { class: 'row end' }, h('button', { type: 'submit', class: 'primary' }, 'Add note')),
      ),
    );
    // Filters
    this.filterPidSel = h('select', { id: 'filters-participant', onchange: () => this.loadFilterDraft() });
    this.filterBox = h('div');
    const filtersPanel = h(
      'div',
      { role: 'tabpanel', id: 'panel-filters', 'aria-labelledby': 'tab-filters', class: 'panel' },
      h('div', { class: 'field' }, h('label', { for: 'filters-participant' }, 'Participant'), this.filterPidSel),
      this.filterBox,
      h(
        'div',
        { class: 'row end' },
        h('button', { type: 'button', onclick: () => this.loadFilterDraft() }, 'Reset'),
        h('button', { type: 'button', onclick: () => this.applyFilters(true) }, 'Apply to everyone'),
        h('button', { type: 'button', class: 'primary', onclick: () => this.applyFilters(false) }, 'Apply filters'),
      ),
    );
    this.panels = new Map([
      ['chat', chatPanel],
      ['notes', notesPanel],
      ['filters', filtersPanel],
    ]);
    fill(this.side, list, chatPanel, notesPanel, filtersPanel);
    this.showTab('chat');
  }

  showTab(id) {
    this.tab = id;
    for (const [t, b] of this.tabBtns) {
      b.setAttribute('aria-selected', t === id ? 'true' : 'false');
      b.tabIndex = t === id ? 0 : -1;
    }
    for (const [t, p] of this.panels) p.hidden = t !== id;
    if (id === 'chat') this.renderChat();
    if (id === 'notes') this.renderNotes();
    if (id === 'filters' && !this.filterDraft) this.loadFilterDraft();
  }

  // ------------------------------------------------------------------ updates

  /** Redraws from the session (after any change of it). */
  update() {
    const s = this.session;
    if (!s) {
      fill(this.grid, h('p', {}, 'This session no longer exists.'));
      return;
    }
    // The experiment's own state once joined; the session's times otherwise.
    const status = this.joined && this.expState ? this.expState : sessionStatus(s);
    this.titleEl.textContent = s.title || 'Untitled session';
    const label = { draft: 'Not open', open: 'Waiting to start', running: 'Running', ended: 'Ended' }[status];
    this.statusEl.textContent = this.joined || status === 'ended' ? label : `${label} (not joined)`;
    this.statusEl.className = `pill status-${status}`;
    this.startBtn.disabled = !this.joined || status !== 'open';
    this.stopBtn.disabled = !this.joined || status === 'ended';
    this.updateClock();
    // Tiles: one per participant of the session, in its order.
    const pids = s.participants.map((p) => p.id);
    for (const [pid, t] of this.tiles) {
      if (!pids.includes(pid)) {
        t.el.remove();
        this.tiles.delete(pid);
      }
    }
    for (const p of s.participants) {
      if (!this.tiles.has(p.id)) this.tiles.set(p.id, this.makeTile(p.id));
      this.grid.append(this.tiles.get(p.id).el);
      if (!this.lastRead.has(p.id) || p.lastMessageReadTime > this.lastRead.get(p.id)) {
        this.lastRead.set(p.id, p.lastMessageReadTime || 0);
      }
      this.updateTile(p.id);
    }
    if (!s.participants.length) this.grid.append(h('p', { class: 'muted' }, 'This session has no participants.'));
    // Side panel lists.
    const keep = this.filterPidSel.value;
    fill(this.filterPidSel, s.participants.map((p) => h('option', { value: p.id }, p.participant_name)));
    if (keep) this.filterPidSel.value = keep;
    if (this.filterDraft && this.filterDraft.pid !== this.filterPidSel.value) this.filterDraft = null;
    this.renderChatTargets();
    if (this.tab === 'chat') this.renderChat();
    if (this.tab === 'notes') this.renderNotes();
    if (this.tab === 'filters' && !this.filterDraft) this.loadFilterDraft();
    // SET_GROUP_FILTERS (here or from another dashboard) changed the instances: ask again.
    if (this.joined && this.groupSig !== null && groupSignature(s) !== this.groupSig) this.requestGroups();
    this.renderGroups();
  }

  /** The server sent the session anew: its chat logs now hold every message received so far. */
  sessionReplaced() {
    this.liveChat = [];
    this.update();
  }

  updateClock() {
    const s = this.session;
    if (!s) return;
    if (s.start_time && !s.end_time) this.clockEl.textContent = fmtDuration(Date.now() - s.start_time);
    else if (s.start_time && s.end_time) this.clockEl.textContent = `lasted ${fmtDuration(s.end_time - s.start_time)}`;
    else this.clockEl.textContent = '';
  }

  makeTile(pid) {
    const video = h('video', { autoplay: true, playsinline: true, 'aria-label': `Video of ${this.name(pid)}` });
    video.addEventListener('resize', () => this.updateTile(pid));
    const t = {
      video,
      nameEl: h('h3', {}),
      stateEl: h('span', { class: 'pill' }),
      muteEl: h('span', { class: 'mute-state' }),
      filtersEl: h('p', { class: 'active-filters' }),
      dataEl: h('p', { class: 'filter-data' }),
      statsEl: h('p', { class: 'stats muted' }),
      placeholder: h('div', { class: 'placeholder' }),
      muteVideo: h('button', { type: 'button', class: 'small', onclick: () => this.toggleMute(pid, 'video') }),
      muteAudio: h('button', { type: 'button', class: 'small', onclick: () => this.toggleMute(pid, 'audio') }),
      chatBtn: h('button', { type: 'button', class: 'small', onclick: () => this.openChat(pid) }),
      sound: h('button', { type: 'button', class: 'small listen', onclick: () => this.toggleSound(pid) }),
    };
    t.el = h(
      'article',
      { class: 'tile', role: 'listitem', dataset: { pid } },
      h('div', { class: 'media' }, video, t.placeholder),
      h(
        'div',
        { class: 'tile-info' },
        h('div', { class: 'row' }, t.nameEl, t.stateEl, h('span', { class: 'grow' }), t.muteEl),
        t.filtersEl,
        t.dataEl,
        t.statsEl,
      ),
      h(
        'div',
        { class: 'tile-actions', role: 'group', 'aria-label': `Actions for ${this.name(pid)}` },
        t.muteVideo,
        t.muteAudio,
        t.sound,
        t.chatBtn,
        h('button', { type: 'button', class: 'small', onclick: () => this.openFilters(pid) }, 'Filters'),
        h('button', { type: 'button', class: 'small', onclick: () => this.copyInvite(pid) }, 'Copy link'),
        h('button', { type: 'button', class: 'small danger', onclick: () => this.kick(pid) }, 'Kick'),
        h('button', { type: 'button', class: 'small danger', onclick: () => this.ban(pid) }, 'Ban'),
      ),
    );
    return t;
  }

  /** The participant's connection state as a word. */
  stateOf(pid) {
    const p = this.participant(pid);
    if (p?.banned) return 'banned';
    const sub = this.subByPid.get(pid);
    if (!sub) return this.kicked.has(pid) ? 'kicked' : 'not connected';
    if (sub.state === 'connected') {
      const st = this.stats.get(pid);
      return st && st.stalled ? 'no video' : 'connected';
    }
    if (sub.state === 'disconnected') return 'unstable';
    return 'connecting';
  }

  updateTile(pid) {
    const t = this.tiles.get(pid);
    const p = this.participant(pid);
    if (!t || !p) return;
    const name = p.participant_name;
    t.nameEl.textContent = name;
    t.video.setAttribute('aria-label', `Video of ${name}`);
    const state = this.stateOf(pid);
    t.stateEl.textContent = state;
    t.stateEl.className = `pill state-${state.replace(/ /g, '-')}`;
    t.el.dataset.state = state;
    t.el.setAttribute('aria-label', `${name}, ${state}`);
    const mutes = [p.muted_video ? 'video muted' : null, p.muted_audio ? 'audio muted' : null].filter(Boolean);
    t.muteEl.textContent = mutes.join(', ');
    t.el.dataset.mutedVideo = String(p.muted_video);
    t.el.dataset.mutedAudio = String(p.muted_audio);
    setPressed(t.muteVideo, p.muted_video, p.muted_video ? 'Unmute video' : 'Mute video');
    setPressed(t.muteAudio, p.muted_audio, p.muted_audio ? 'Unmute audio' : 'Mute audio');
    t.muteVideo.setAttribute('aria-label', `${p.muted_video ? 'Unmute' : 'Mute'} video of ${name}`);
    t.muteAudio.setAttribute('aria-label', `${p.muted_audio ? 'Unmute' : 'Mute'} audio of ${name}`);
    setPressed(t.sound, !t.video.muted, 'Listen');
    t.sound.setAttribute('aria-label', `Listen to ${name}`);
    const names = [...p.video_filters.map((f) => f.name), ...p.audio_filters.map((f) => f.name)];
    t.filtersEl.textContent = names.length ? `Filters: ${names.join(', ')}` : 'No filters';
    t.el.dataset.filters = names.join(',');
    const unread = this.unread(pid);
    fill(t.chatBtn, 'Chat', unread ? h('span', { class: 'badge', 'aria-label': `${unread} unread` }, String(unread)) : null);
    t.chatBtn.setAttribute('aria-label', `Chat with ${name}${unread ? `, ${unread} unread` : ''}`);
    t.el.classList.toggle('has-unread', unread > 0);
    // Filter data and stream statistics.
    const data = this.filterData.get(pid);
    const lines = [];
    if (data) {
      for (const f of [...p.video_filters, ...p.audio_filters]) {
        const line = formatFilterData(f.name, data.get(f.id));
        if (line && !lines.includes(line)) lines.push(line);
      }
    }
    const live = this.subByPid.has(pid);
    t.dataEl.textContent = live ? lines.join(' · ') : '';
    const st = this.stats.get(pid);
    t.statsEl.textContent =
      st && live
        ? [
            `${st.width}×${st.height}`,
            `${Math.round(st.fps || 0)} fps`,
            st.kbps != null ? `${Math.round(st.kbps)} kbit/s` : null,
            st.rttMs != null ? `RTT ${st.rttMs} ms` : null,
          ]
            .filter(Boolean)
            .join(' · ')
        : '';
    const showVideo = this.subByPid.has(pid) && t.video.videoWidth > 0;
    t.placeholder.hidden = showVideo;
    t.placeholder.textContent =
      state === 'not connected' ? 'Not connected yet' : state === 'kicked' ? 'Kicked' : state === 'banned' ? 'Banned' : 'Connecting…';
  }

  // ------------------------------------------------------------------ media

  onSub(sub) {
    const pid = sub.publisherId;
    if (!pid) return;
    const t = this.tiles.get(pid);
    if (this.subByPid.get(pid) !== sub) {
      this.subByPid.set(pid, sub);
      this.kicked.delete(pid);
      this.stats.delete(pid);
    }
    if (t && t.video.srcObject !== sub.stream) {
      play(t.video, sub.stream, {
        muted: t.video.muted,
        onBlocked: () => notify('Click “Listen” on a participant to hear them.'),
      });
    }
    this.updateTile(pid);
  }

  onSubClose(sub) {
    const pid = sub.publisherId;
    if (this.subByPid.get(pid) !== sub) return;
    this.subByPid.delete(pid);
    this.stats.delete(pid);
    const t = this.tiles.get(pid);
    if (t) t.video.srcObject = null;
    this.updateTile(pid);
  }

  toggleSound(pid) {
    const t = this.tiles.get(pid);
    if (!t) return;
    t.video.muted = !t.video.muted;
    if (!t.video.muted) t.video.play().catch(() => {});
    this.updateTile(pid);
  }

  /** Every 2 s: stream statistics and live filter data (group filters push theirs). */
  async poll() {
    for (const [pid, sub] of this.subByPid) {
      if (!sub.pc) continue;
      try {
        const prev = this.stats.get(pid);
        const st = await Connection.inboundStats(sub.pc, prev);
        st.stalled = prev && sub.state === 'connected' && st.framesDecoded === prev.framesDecoded && st.framesDecoded > 0;
        this.stats.set(pid, st);
      } catch {
        /* closed meanwhile */
      }
      this.updateTile(pid);
    }
    const s = this.session;
    if (!this.joined || !s || sessionStatus(s) === 'ended' || this.conn?.state !== 'connected') return;
    // The group filters could not be asked for (e.g. a timeout): again, until they can.
    if (this.groupError && !this.groupAsking) this.requestGroups();
    const names = new Map();
    for (const p of s.participants) {
      for (const f of p.video_filters) names.set(f.name, names.get(f.name) === 'audio' ? 'both' : names.get(f.name) ?? 'video');
      for (const f of p.audio_filters) names.set(f.name, names.get(f.name) === 'video' ? 'both' : 'audio');
    }
    for (const [name, channel] of names) {
      try {
        await this.conn.request(
          'GET_FILTERS_DATA',
          { filter_id: 'all', filter_name: name, filter_channel: channel },
          'FILTERS_DATA',
        );
      } catch {
        /* a filter without data: nothing to show */
      }
    }
  }

  onFiltersData(d) {
    for (const [pid, lists] of Object.entries(d ?? {})) {
      const m = this.filterData.get(pid) ?? new Map();
      for (const e of [...(lists.video ?? []), ...(lists.audio ?? [])]) if (e) m.set(e.id, e.data);
      this.filterData.set(pid, m);
      this.updateTile(pid);
    }
  }

  // ------------------------------------------------------------------ group filters

  /**
   * Asks for the group filters with their recent results and for every new result as a push
   * (on entering, and again when the session's group filters change). The reply arrives as a
   * GROUP_FILTERS_DATA event like the pushes (onGroupData).
   */
  async requestGroups() {
    const s = this.session;
    if (!s) return;
    // One request at a time; a change meanwhile asks once more when it is answered.
    if (this.groupAsking) {
      this.groupAgain = true;
      return;
    }
    this.groupAsking = true;
    this.groupSig = groupSignature(s);
    // Enough results to fill every pair's chart (a reply too large is asked for with fewer).
    const n = s.participants.length;
    const results = Math.min(1000, GROUP_CHART.maxPoints * Math.max(1, (n * (n - 1)) / 2));
    try {
      await this.conn.groupFiltersData({ subscribe: true, results });
      this.groupError = null;
    } catch (e) {
      this.groupError = describeError(e, 'Group filter results cannot be shown');
    }
    this.groupAsking = false;
    this.renderGroups();
    if (this.groupAgain && this.joined) {
      this.groupAgain = false;
      this.requestGroups();
    }
  }

  onGroupData(d) {
    this.groups = mergeGroupData(this.groups, d);
    this.renderGroupsSoon();
  }

  /** Pushes come in bursts (one per instance): draw once for them. */
  renderGroupsSoon() {
    if (this.groupTimer) return;
    this.groupTimer = setTimeout(() => {
      this.groupTimer = null;
      this.renderGroups();
    }, 100);
  }

  /** One card per instance (name, id, members), one chart per pair with its latest value. */
  renderGroups() {
    const panel = this.groupPanel;
    panel.hidden = !this.groups.size && !this.groupError;
    this.groupStatus.textContent = this.groupError ?? '';
    this.groupStatus.hidden = !this.groupError;
    for (const [id, card] of this.groupCards) {
      if (!this.groups.has(id)) {
        card.el.remove();
        this.groupCards.delete(id);
      }
    }
    for (const inst of this.groups.values()) {
      let card = this.groupCards.get(inst.id);
      if (!card) {
        card = this.makeGroupCard(inst.id);
        this.groupCards.set(inst.id, card);
      }
      this.groupList.append(card.el);
      this.updateGroupCard(card, inst);
    }
  }

  makeGroupCard(id) {
    const selId = `group-key-${id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const card = {
      titleEl: h('h4', {}),
      membersEl: h('p', { class: 'muted small' }),
      keySel: h('select', {
        id: selId,
        onchange: () => {
          this.groupKeys.set(id, card.keySel.value);
          this.renderGroups();
        },
      }),
      waitEl: h('p', { class: 'muted small' }, 'Waiting for the first results…'),
      pairList: h('div', { class: 'pairs' }),
      pairs: new Map(),
    };
    card.keyField = h('div', { class: 'field inline' }, h('label', { for: selId }, 'Value'), card.keySel);
    card.el = h(
      'article',
      { class: 'group-filter', dataset: { id } },
      h('div', { class: 'row' }, card.titleEl, h('span', { class: 'grow' }), card.keyField),
      card.membersEl,
      card.waitEl,
      card.pairList,
    );
    return card;
  }

  updateGroupCard(card, inst) {
    card.titleEl.textContent = `${inst.name} (${inst.id})`;
    card.membersEl.textContent = `${inst.channel ? `${inst.channel}, ` : ''}over ${inst.members.map((p) => this.name(p)).join(', ') || 'nobody yet'}`;
    card.el.dataset.name = inst.name;
    const series = [...inst.series.entries()];
    const keys = numericKeys(series.flatMap(([, s]) => s.points));
    const key = chooseKey(keys, this.groupKeys.get(inst.id));
    if (keys.join('\n') !== [...card.keySel.options].map((o) => o.value).join('\n')) {
      fill(card.keySel, keys.map((k) => h('option', { value: k }, k)));
    }
    if (key) card.keySel.value = key;
    card.keyField.hidden = keys.length < 2;
    card.waitEl.hidden = series.length > 0;
    for (const [k, fig] of card.pairs) {
      if (!inst.series.has(k)) {
        fig.el.remove();
        card.pairs.delete(k);
      }
    }
    for (const [k, s] of series) {
      let fig = card.pairs.get(k);
      if (!fig) {
        fig = {
          label: h('figcaption', {}),
          latest: h('span', { class: 'latest' }),
          canvas: h('canvas', { role: 'img', height: 90 }),
        };
        fig.el = h('figure', { class: 'pair', dataset: { members: s.members.join(',') } }, fig.canvas, fig.label);
        card.pairs.set(k, fig);
      }
      card.pairList.append(fig.el);
      const who = s.members.map((p) => this.name(p)).join(' & ');
      const g = drawChart(fig.canvas, s.points, key);
      fill(fig.label, h('span', { class: 'who' }, who), ' ', fig.latest);
      fig.latest.textContent = g.count ? `${key} ${fmtValue(g.last)}` : 'no value yet';
      fig.el.dataset.points = String(g.count);
      fig.el.dataset.key = key ?? '';
      fig.canvas.setAttribute(
        'aria-label',
        g.count
          ? `${key} of ${who} over the last ${fmtDuration(g.t1 - g.t0)}: from ${fmtValue(g.min)} to ${fmtValue(g.max)}, now ${fmtValue(g.last)}`
          : `No ${key ?? 'value'} of ${who} yet`,
      );
    }
  }

  // ------------------------------------------------------------------ actions

  async start() {
    this.startBtn.disabled = true;
    try {
      await this.conn.request('START_EXPERIMENT', {}, 'SUCCESS:START_EXPERIMENT');
    } catch (e) {
      notify(describeError(e, 'Could not start the experiment'), 'error');
    }
    this.update();
  }

  async stop() {
    if (!(await confirmDialog('Stop the experiment?', 'Everyone is told that the experiment has ended; it cannot be restarted.', { confirm: 'Stop experiment', danger: true }))) return;
    try {
      await this.conn.request('STOP_EXPERIMENT', {}, 'SUCCESS:STOP_EXPERIMENT');
    } catch (e) {
      notify(describeError(e, 'Could not stop the experiment'), 'error');
    }
    this.update();
  }

  async toggleMute(pid, kind) {
    const p = this.participant(pid);
    if (!p) return;
    const data = {
      participant_id: pid,
      mute_video: kind === 'video' ? !p.muted_video : p.muted_video,
      mute_audio: kind === 'audio' ? !p.muted_audio : p.muted_audio,
    };
    try {
      await this.conn.request('MUTE', data, 'SUCCESS:MUTE');
      p.muted_video = data.mute_video;
      p.muted_audio = data.mute_audio;
      this.updateTile(pid);
    } catch (e) {
      notify(describeError(e, `Could not change ${p.participant_name}'s mute state`), 'error');
    }
  }

  async kick(pid) {
    const name = this.name(pid);
    const reason = await prompt(`Kick ${name}?`, { label: 'Reason (shown to the participant)', confirm: 'Kick', danger: true });
    if (reason == null) return;
    try {
      await this.conn.request('KICK_PARTICIPANT', { participant_id: pid, reason }, 'SUCCESS:KICK_PARTICIPANT');
      this.kicked.add(pid);
      const sub = this.subByPid.get(pid);
      if (sub) this.conn.closeSub(sub, 'closed');
      notify(`${name} was kicked.`);
    } catch (e) {
      notify(describeError(e, `Could not kick ${name}`), 'error');
    }
    this.updateTile(pid);
  }

  async ban(pid) {
    const name = this.name(pid);
    const reason = await prompt(`Ban ${name}?`, { label: 'Reason (shown to the participant)', confirm: 'Ban', danger: true });
    if (reason == null) return;
    try {
      await this.conn.request('BAN_PARTICIPANT', { participant_id: pid, reason }, 'SUCCESS:BAN_PARTICIPANT');
      const p = this.participant(pid);
      if (p) p.banned = true;
      const sub = this.subByPid.get(pid);
      if (sub) this.conn.closeSub(sub, 'closed');
      notify(`${name} was banned.`);
    } catch (e) {
      notify(describeError(e, `Could not ban ${name}`), 'error');
    }
    this.updateTile(pid);
  }

  async copyInvite(pid) {
    const link = inviteLink(this.app.origin, this.sid, pid);
    if (await copyText(link)) notify(`Invite link for ${this.name(pid)} copied.`);
    else await prompt(`Invite link for ${this.name(pid)}`, { label: 'Copy this link', value: link, confirm: 'Done' });
  }

  // ------------------------------------------------------------------ chat

  /** Every message of the session (as the server stored it) plus those received since. */
  conversation(target) {
    const s = this.session;
    if (!s) return [];
    const seen = new Set();
    const out = [];
    const add = (m) => {
      const key = `${m.time}|${m.author}|${m.target}|${m.message}`;
      if (seen.has(key)) return;
      seen.add(key);
      out.push(m);
    };
    const all = [...[...this.history.values()].flat(), ...s.participants.flatMap((p) => p.chat), ...this.liveChat];
    for (const m of all) {
      if (target === 'participants' ? m.target === 'participants' : m.author === target || m.target === target) add(m);
    }
    return out.sort((a, b) => a.time - b.time);
  }

  unread(pid) {
    const last = this.lastRead.get(pid) ?? 0;
    return this.conversation(pid).filter((m) => m.author === pid && m.time > last).length;
  }

  renderChatTargets() {
    const s = this.session;
    if (!s) return;
    const opts = [h('option', { value: 'participants' }, 'Everyone (all participants)')];
    for (const p of s.participants) {
      const n = this.unread(p.id);
      opts.push(h('option', { value: p.id }, n ? `${p.participant_name} (${n} unread)` : p.participant_name));
    }
    fill(this.chatTargetSel, opts);
    this.chatTargetSel.value = this.chatTarget;
    const total = s.participants.reduce((a, p) => a + this.unread(p.id), 0);
    fill(this.tabBtns.get('chat'), 'Chat', total ? h('span', { class: 'badge', 'aria-label': `${total} unread` }, String(total)) : null);
  }

  /**
   * Fetches the whole chat behind `target` if the session carries only its recent part: the
   * participant's own chat, or for "everyone" the chat of one participant (public messages are
   * in every participant's chat). Redraws as pages arrive.
   */
  ensureHistory(target) {
    const s = this.session;
    if (!s) return;
    const partial = (p) => (p.chat_total ?? 0) > p.chat.length;
    const p = target === 'participants' ? s.participants.find(partial) : this.participant(target);
    if (!p || !partial(p) || this.history.has(p.id) || this.fetching.has(p.id)) return;
    this.fetching.add(p.id);
    const got = [];
    this.conn
      .chatHistory(this.sid, p.id, (page) => {
        got.unshift(...page);
        this.history.set(p.id, [...got]);
        if (this.tab === 'chat') this.renderChat();
      })
      .catch((e) => {
        this.history.delete(p.id);
        notify(describeError(e, `Earlier messages of ${this.name(p.id)} could not be loaded`), 'error');
      })
      .finally(() => {
        this.fetching.delete(p.id);
        if (this.tab === 'chat') this.renderChat();
      });
  }

  renderChat() {
    const target = this.chatTarget;
    this.ensureHistory(target);
    const msgs = this.conversation(target);
    const loading = [...this.fetching].some((pid) => target === 'participants' || pid === target);
    fill(
      this.chatList,
      loading ? h('li', { class: 'muted' }, 'Loading earlier messages…') : null,
      msgs.length
        ? msgs.map((m) => {
            const mine = m.author === 'experimenter';
            const who = mine ? 'You' : this.name(m.author);
            const to = m.target === 'participants' ? ' → everyone' : mine || m.target === 'experimenter' ? '' : ` → ${this.name(m.target)}`;
            return h(
              'li',
              { class: mine ? 'mine' : 'theirs' },
              h('div', { class: 'meta' }, `${who}${to} · ${fmtTime(m.time)}`),
              h('div', { class: 'text' }, m.message),
            );
          })
        : h('li', { class: 'muted' }, 'No messages yet.'),
    );
    this.chatList.scrollTop = this.chatList.scrollHeight;
    if (target !== 'participants' && this.tab === 'chat') this.markRead(target);
  }

  markRead(pid) {
    const latest = Math.max(0, ...this.conversation(pid).filter((m) => m.author === pid).map((m) => m.time));
    if (latest > (this.lastRead.get(pid) ?? 0)) {
      this.lastRead.set(pid, latest);
      const p = this.participant(pid);
      if (p) p.lastMessageReadTime = latest;
      if (this.joined) this.conn.send('UPDATE_READ_MESSAGE_TIME', { participant_id: pid, lastMessageReadTime: latest });
      this.renderChatTargets();
      this.updateTile(pid);
    }
  }

  openChat(pid) {
    this.chatTarget = pid;
    this.showTab('chat');
    this.renderChatTargets();
    this.renderChat();
    this.chatInput.focus();
  }

  onChat(m) {
    this.liveChat.push(m);
    this.renderChatTargets();
    if (this.tab === 'chat') this.renderChat();
    if (m.author !== 'experimenter') {
      this.updateTile(m.author);
      if (!(this.tab === 'chat' && this.chatTarget === m.author)) notify(`New message from ${this.name(m.author)}.`);
    }
  }

  async sendChat() {
    const text = this.chatInput.value.trim();
    if (!text) return;
    const msg = { message: text, time: Date.now(), author: 'experimenter', target: this.chatTarget };
    try {
      await this.conn.request('CHAT', msg, 'SUCCESS:CHAT');
      this.chatInput.value = '';
      this.liveChat.push(msg);
      this.renderChat();
    } catch (e) {
      const to = this.chatTarget === 'participants' ? 'everyone' : this.name(this.chatTarget);
      notify(describeError(e, `The message to ${to} was not delivered`), 'error');
    }
  }

  // ------------------------------------------------------------------ notes

  renderNotes() {
    const notes = this.session?.notes ?? [];
    fill(
      this.notesList,
      notes.length
        ? notes.map((n) => h('li', {}, h('div', { class: 'meta' }, fmtTime(n.time)), h('div', { class: 'text' }, n.content)))
        : h('li', { class: 'muted' }, 'No notes yet.'),
    );
  }

  async addNote() {
    const content = this.noteInput.value.trim();
    if (!content) return;
    const note = { time: Date.now(), speakers: [], content };
    try {
      await this.conn.request('ADD_NOTE', note, 'SUCCESS:ADD_NOTE');
      this.session.notes.push(note);
      this.noteInput.value = '';
      this.renderNotes();
    } catch (e) {
      notify(describeError(e, 'The note was not saved'), 'error');
    }
  }

  // ------------------------------------------------------------------ filters

  openFilters(pid) {
    this.filterPidSel.value = pid;
    this.loadFilterDraft();
    this.showTab('filters');
    this.filterPidSel.focus();
  }

  loadFilterDraft() {
    const p = this.participant(this.filterPidSel.value);
    if (!p) {
      fill(this.filterBox, h('p', { class: 'muted' }, 'No participant.'));
      return;
    }
    this.filterDraft = { pid: p.id, video: clone(p.video_filters), audio: clone(p.audio_filters) };
    fill(
      this.filterBox,
      h('p', { class: 'muted' }, `Changes apply to ${p.participant_name}’s stream at once, for everyone who sees it.`),
      filterEditor(this.filterDraft, this.app.catalogue, null, { idPrefix: 'live-filters' }),
    );
  }

  async applyFilters(everyone) {
    const d = this.filterDraft;
    if (!d) return;
    const data = { participant_id: everyone ? 'all' : d.pid, audio_filters: d.audio, video_filters: d.video };
    try {
      await this.conn.request('SET_FILTERS', data, 'SUCCESS:SET_FILTERS');
      notify(everyone ? 'Filters applied to everyone.' : `Filters of ${this.name(d.pid)} applied.`);
      this.filterDraft = null;
      this.loadFilterDraft();
    } catch (e) {
      notify(describeError(e, 'The filters were not applied'), 'error');
    }
  }
}

/** The chart's margins inside its canvas (CSS pixels): room for the value labels. */
const CHART_PAD = { left: 52, right: 8, top: 8, bottom: 16 };

/**
 * Draws a line chart of `key` over time into a canvas (its CSS width, `height` attribute in CSS
 * pixels, sharp on high-density screens): the y axis labelled with the key and its range, the
 * time axis with the experiment clock at both ends. Returns the geometry (helpers.chartGeometry).
 */
function drawChart(canvas, points, key) {
  const cssW = Math.max(120, Math.round(canvas.clientWidth || 280));
  const cssH = Number(canvas.dataset.h ?? (canvas.dataset.h = canvas.height));
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== cssW * dpr || canvas.height !== cssH * dpr) {
    canvas.width = cssW * dpr;
    canvas.height = cssH * dpr;
    canvas.style.height = `${cssH}px`;
  }
  const g = chartGeometry(points, key, { width: cssW, height: cssH, pad: CHART_PAD });
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const style = getComputedStyle(canvas);
  const fg = style.getPropertyValue('--fg').trim() || '#1c2430';
  const muted = style.getPropertyValue('--muted').trim() || '#5b6675';
  const line = style.getPropertyValue('--line').trim() || '#d5dae1';
  const accent = style.getPropertyValue('--accent').trim() || '#1f5fa8';
  const [x0, x1, y0, y1] = [CHART_PAD.left, cssW - CHART_PAD.right, cssH - CHART_PAD.bottom, CHART_PAD.top];
  ctx.strokeStyle = line;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(x0 + 0.5, y1);
  ctx.lineTo(x0 + 0.5, y0 + 0.5);
  ctx.lineTo(x1, y0 + 0.5);
  ctx.stroke();
  ctx.font = '10px system-ui, sans-serif';
  ctx.fillStyle = muted;
  ctx.textBaseline = 'top';
  ctx.textAlign = 'right';
  if (g.count) {
    ctx.fillText(fmtValue(g.max), x0 - 4, y1);
    ctx.textBaseline = 'bottom';
    ctx.fillText(fmtValue(g.min), x0 - 4, y0);
    // The experiment clock (since START) at both ends of the time axis.
    ctx.textBaseline = 'top';
    ctx.fillText(fmtDuration(g.t1), x1, y0 + 3);
    ctx.textAlign = 'left';
    if (g.t1 > g.t0) ctx.fillText(fmtDuration(g.t0), x0, y0 + 3);
  }
  // The y axis's name, along it.
  ctx.save();
  ctx.translate(8, (y0 + y1) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.fillStyle = fg;
  ctx.fillText(key ?? '', 0, 0);
  ctx.restore();
  ctx.strokeStyle = accent;
  ctx.fillStyle = accent;
  ctx.lineWidth = 1.5;
  ctx.lineJoin = 'round';
  for (const seg of g.segments) {
    ctx.beginPath();
    seg.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    // Each result as a dot while they are few enough to tell apart (a lone one always).
    if (g.count <= 120 || seg.length === 1) {
      for (const [x, y] of seg) {
        ctx.beginPath();
        ctx.arc(x, y, 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  return g;
}
