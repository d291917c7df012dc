// Pure helpers of the pages: no DOM, no network, no module state. They take data and return
// data, so tests/js/ runs them under `node --test`.

import { CANVAS } from './protocol.js';

/** How a filter's report reads next to a participant. */
export function formatFilterData(name, data) {
  if (data == null) return null;
  if (name === 'SPEAKING_TIME' || name === 'AUDIO_SPEAKING_TIME') {
    if (typeof data.time === 'number') return `Speaking ${data.time.toFixed(1)} s`;
  }
  if (name === 'PING' && typeof data.ping === 'number') return `Ping ${Math.round(data.ping)} ms`;
  if (typeof data === 'object') {
    const parts = Object.entries(data)
      .filter(([, v]) => typeof v !== 'object')
      .map(([k, v]) => `${k} ${typeof v === 'number' ? Math.round(v * 10) / 10 : v}`);
    if (parts.length) return `${name}: ${parts.join(', ')}`;
  }
  return `${name}: ${JSON.stringify(data).slice(0, 60)}`;
}

/** "angle" → "Angle", "bufferLength" → "Buffer length", "delay_ms" → "Delay ms". */
export function paramLabel(key) {
  const s = key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Places n participants in a grid on the canvas (4:3 boxes). */
export function gridLayout(n) {
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const cw = CANVAS.width / cols;
  const ch = CANVAS.height / rows;
  let w = cw - 20;
  let hgt = (w * 3) / 4;
  if (hgt > ch - 20) {
    hgt = ch - 20;
    w = (hgt * 4) / 3;
  }
  return Array.from({ length: n }, (_, i) => {
    const c = i % cols;
    const r = Math.floor(i / cols);
    return {
      position: { x: Math.round(c * cw + (cw - w) / 2), y: Math.round(r * ch + (ch - hgt) / 2), z: 0 },
      size: { width: Math.round(w), height: Math.round(hgt) },
    };
  });
}

/**
 * Where participant `pid` appears on the screen of participant `me`: `me`'s own `view` if it
 * places them, else their place in `session`, else the `summary` of a proposal.
 */
export function placeOf(session, me, pid, summary) {
  const p = session?.participants.find((x) => x.id === pid);
  const fromView = p && me?.view?.find((v) => v.id && v.id === p.canvas_id);
  const src = fromView ?? p ?? summary;
  return { position: src?.position ?? { x: 0, y: 0 }, size: src?.size ?? { width: 320, height: 240 } };
}

// ---------------------------------------------------------------------------- group filters

/** The dashboard's live group-filter charts look back this far and keep at most this many points per pair. */
export const GROUP_CHART = Object.freeze({ windowMs: 180_000, maxPoints: 300 });

/** The key of a result's members (a pair, or the whole group): "pidA|pidB". */
export const membersKey = (members) => members.join('|');

/**
 * Which group filter instances a session defines, as a string that changes when they do: each
 * instance id with its name and members (the participants whose group filter lists hold it).
 * The dashboard asks for the instances again when this changes (SET_GROUP_FILTERS).
 */
export function groupSignature(session) {
  const inst = new Map();
  for (const p of session?.participants ?? []) {
    for (const [channel, list] of [['video', p.video_group_filters], ['audio', p.audio_group_filters]]) {
      for (const f of list ?? []) {
        if (!f || typeof f.id !== 'string') continue;
        const i = inst.get(f.id) ?? { name: f.name, channel, members: [] };
        if (!i.members.includes(p.id)) i.members.push(p.id);
        inst.set(f.id, i);
      }
    }
  }
  return JSON.stringify([...inst].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * A GROUP_FILTERS_DATA message merged into the charts' state, a Map instance id →
 * {id, name, channel, members, series: Map(membersKey → {members, points: [{t, value}]})}.
 * Returns a new state; the old one is left as it was. A reply (`push: false`) replaces the
 * state: it lists every instance with its recent results. A push appends its new results.
 * Each series keeps its points in time order, the last `windowMs` and at most `maxPoints`;
 * a result earlier than the series' last one means the experiment clock restarted (START)
 * and starts the series anew. Malformed entries are skipped.
 */
export function mergeGroupData(state, data, { windowMs = GROUP_CHART.windowMs, maxPoints = GROUP_CHART.maxPoints } = {}) {
  if (!data || !Array.isArray(data.filters)) return state;
  const out = data.push === false ? new Map() : new Map(state);
  for (const f of data.filters) {
    if (!f || typeof f.id !== 'string') continue;
    const old = out.get(f.id);
    const inst = {
      id: f.id,
      name: typeof f.name === 'string' ? f.name : old?.name ?? f.id,
      channel: typeof f.channel === 'string' ? f.channel : old?.channel ?? '',
      members: Array.isArray(f.members) ? f.members.filter((m) => typeof m === 'string') : old?.members ?? [],
      series: new Map(old?.series),
    };
    const copied = new Set();
    for (const r of Array.isArray(f.results) ? f.results : []) {
      if (!r || typeof r !== 'object') continue;
      const t = r.window_end_ms;
      if (!Array.isArray(r.members) || !r.members.every((m) => typeof m === 'string') || !Number.isFinite(t)) continue;
      if (r.value == null || typeof r.value !== 'object') continue;
      const key = membersKey(r.members);
      let s = inst.series.get(key);
      if (!copied.has(key)) {
        s = { members: r.members, points: s ? [...s.points] : [] };
        inst.series.set(key, s);
        copied.add(key);
      }
      const last = s.points[s.points.length - 1];
      if (last && t < last.t) s.points = [];
      else if (last && t === last.t) s.points.pop();
      s.points.push({ t, value: r.value });
    }
    for (const key of copied) {
      const s = inst.series.get(key);
      const end = s.points[s.points.length - 1].t;
      const from = Math.max(s.points.findIndex((p) => p.t >= end - windowMs), s.points.length - maxPoints, 0);
      if (from > 0) s.points = s.points.slice(from);
    }
    out.set(f.id, inst);
  }
  return out;
}

/** The keys with a finite number in some point's value, in the order first seen. */
export function numericKeys(points) {
  const keys = [];
  for (const p of points) {
    for (const [k, v] of Object.entries(p.value ?? {})) if (Number.isFinite(v) && !keys.includes(k)) keys.push(k);
  }
  return keys;
}

/** The key to plot: the one asked for if there is one, else `r` (a correlation), else the first. */
export function chooseKey(keys, wanted) {
  if (wanted != null && keys.includes(wanted)) return wanted;
  if (keys.includes('r')) return 'r';
  return keys[0] ?? null;
}

/** A value as a chart labels it: three significant digits ("0.123", "12.3", "1.23e+5"). */
export function fmtValue(v) {
  if (!Number.isFinite(v)) return '–';
  return String(Number(v.toPrecision(3)));
}

/**
 * Where a series' points of `key` go on a chart of `width` × `height` pixels inside `pad`
 * ({left, right, top, bottom}): the y range (a flat series gets a little room around its
 * value), the time range, the count of plotted points, the last value, and the line as
 * segments of [x, y] (a point without the key breaks the line). Time runs left to right over
 * the series' span; y grows upwards.
 */
export function chartGeometry(points, key, { width, height, pad = { left: 0, right: 0, top: 0, bottom: 0 } }) {
  const vals = points.map((p) => p.value?.[key]).filter(Number.isFinite);
  if (!vals.length || !points.length) return { count: 0, min: null, max: null, t0: null, t1: null, last: null, segments: [] };
  let min = Math.min(...vals);
  let max = Math.max(...vals);
  if (max - min < 1e-9 * Math.max(1, Math.abs(max))) {
    const d = Math.abs(max) * 0.05 || 0.5;
    min -= d;
    max += d;
  }
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const [x0, x1] = [pad.left, width - pad.right];
  const [y0, y1] = [height - pad.bottom, pad.top];
  const x = (t) => (t1 > t0 ? x0 + ((t - t0) / (t1 - t0)) * (x1 - x0) : x1);
  const y = (v) => y0 + ((v - min) / (max - min)) * (y1 - y0);
  const segments = [];
  let seg = null;
  let last = null;
  for (const p of points) {
    const v = p.value?.[key];
    if (!Number.isFinite(v)) {
      seg = null;
      continue;
    }
    if (!seg) segments.push((seg = []));
    seg.push([x(p.t), y(v)]);
    last = v;
  }
  return { count: vals.length, min, max, t0, t1, last, segments };
}

// ------------------------------------------------------------- group filters in the editor

/** The participant's list that holds group filter instances of `channel`. */
const groupListKey = (channel) => (channel === 'audio' ? 'audio_group_filters' : 'video_group_filters');

/**
 * The group filter instances a design holds, read from the participants' `video_group_filters`
 * and `audio_group_filters`: one per id, in the order first seen, as a filter
 * `{name, id, channel, groupFilter: true, config}` (a copy of its first occurrence) plus
 * `members`, the indices in `participants` of those whose lists hold it. Entries without a
 * string id are skipped.
 */
export function groupInstancesOf(participants) {
  const byId = new Map();
  (participants ?? []).forEach((p, index) => {
    for (const channel of ['video', 'audio']) {
      for (const f of p?.[groupListKey(channel)] ?? []) {
        if (!f || typeof f.id !== 'string') continue;
        let inst = byId.get(f.id);
        if (!inst) {
          inst = {
            name: f.name,
            id: f.id,
            channel: f.channel === 'audio' || f.channel === 'video' ? f.channel : channel,
            groupFilter: true,
            config: structuredClone(f.config ?? {}),
            members: [],
          };
          byId.set(f.id, inst);
        }
        if (!inst.members.includes(index)) inst.members.push(index);
      }
    }
  });
  return [...byId.values()];
}

/**
 * The participants with their group filter lists rewritten from `instances` (as
 * groupInstancesOf gives them: `members` are indices in `participants`): each participant's
 * `video_group_filters` / `audio_group_filters` holds, in instance order, every instance of
 * that channel it is a member of, each with the same id and a copy of the same config. Returns
 * copies; `participants` is left as it was. An instance without members ends up nowhere.
 */
export function applyGroupInstances(participants, instances) {
  return participants.map((p, index) => {
    const out = { ...p, video_group_filters: [], audio_group_filters: [] };
    for (const inst of instances) {
      if (!inst.members.includes(index)) continue;
      const { name, id, channel, config } = inst;
      out[groupListKey(channel)].push({ name, id, channel, groupFilter: true, config: structuredClone(config ?? {}) });
    }
    return out;
  });
}
