// Unit tests of web/js/helpers.js, the pages' pure helpers (`node --test tests/js/`).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  formatFilterData,
  paramLabel,
  gridLayout,
  placeOf,
  groupSignature,
  mergeGroupData,
  numericKeys,
  chooseKey,
  fmtValue,
  chartGeometry,
  membersKey,
  groupInstancesOf,
  applyGroupInstances,
} from '../../web/js/helpers.js';
import { CANVAS } from '../../web/js/protocol.js';

test('formatFilterData reads the known reports as sentences', () => {
  assert.equal(formatFilterData('SPEAKING_TIME', { time: 12.345 }), 'Speaking 12.3 s');
  assert.equal(formatFilterData('AUDIO_SPEAKING_TIME', { time: 3 }), 'Speaking 3.0 s');
  assert.equal(formatFilterData('PING', { ping: 41.6 }), 'Ping 42 ms');
});

test('formatFilterData shows other reports field by field, rounded, nested values left out', () => {
  assert.equal(formatFilterData('DELAY', { delay_ms: 200.04, frames: 6 }), 'DELAY: delay_ms 200, frames 6');
  assert.equal(formatFilterData('X', { ok: true, label: 'a', nested: { a: 1 } }), 'X: ok true, label a');
  // Only nested values, or not an object: the JSON, cut short.
  assert.equal(formatFilterData('X', { nested: { a: 1 } }), 'X: {"nested":{"a":1}}');
  assert.equal(formatFilterData('X', 5), 'X: 5');
  assert.equal(formatFilterData('X', 'y'.repeat(100)).length, 'X: '.length + 60);
  // A filter that reported nothing yet, or a malformed known report.
  assert.equal(formatFilterData('PING', null), null);
  assert.equal(formatFilterData('PING', undefined), null);
  assert.equal(formatFilterData('PING', { ping: 'n/a' }), 'PING: ping n/a');
});

test('paramLabel turns parameter keys into labels', () => {
  assert.equal(paramLabel('angle'), 'Angle');
  assert.equal(paramLabel('bufferLength'), 'Buffer length');
  assert.equal(paramLabel('delay_ms'), 'Delay ms');
  assert.equal(paramLabel('filterId'), 'Filter id');
});

test('gridLayout places n 4:3 boxes inside the canvas without overlap', () => {
  assert.deepEqual(gridLayout(0), []);
  for (const n of [1, 2, 3, 4, 5, 9, 10, 16]) {
    const slots = gridLayout(n);
    assert.equal(slots.length, n);
    for (const { position: p, size: s } of slots) {
      assert.ok(p.x >= 0 && p.y >= 0, `n=${n}: inside`);
      assert.ok(p.x + s.width <= CANVAS.width && p.y + s.height <= CANVAS.height, `n=${n}: inside`);
      assert.ok(Math.abs(s.width / s.height - 4 / 3) < 0.02, `n=${n}: 4:3`);
      assert.equal(p.z, 0);
    }
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const [a, b] = [slots[i], slots[j]];
        const apart =
          a.position.x + a.size.width <= b.position.x || b.position.x + b.size.width <= a.position.x ||
          a.position.y + a.size.height <= b.position.y || b.position.y + b.size.height <= a.position.y;
        assert.ok(apart, `n=${n}: boxes ${i} and ${j} overlap`);
      }
    }
  }
});

test('placeOf prefers the viewer\'s own view, then the session, then the proposal', () => {
  const place = (x) => ({ position: { x, y: 1, z: 0 }, size: { width: 10, height: 20 } });
  const session = { participants: [{ id: 'p1', canvas_id: 'c1', ...place(100) }] };
  const summary = place(300);
  // The session's place.
  assert.deepEqual(placeOf(session, { view: [] }, 'p1', summary), place(100));
  // The viewer's own view, matched by canvas id.
  const me = { view: [{ id: 'c1', ...place(200) }, { id: '', ...place(999) }] };
  assert.deepEqual(placeOf(session, me, 'p1', summary), place(200));
  // Not in the session (yet): the proposal's summary.
  assert.deepEqual(placeOf(session, me, 'p2', summary), place(300));
  // Nothing known: the top left corner at 320x240.
  assert.deepEqual(placeOf(null, null, 'p2', null), { position: { x: 0, y: 0 }, size: { width: 320, height: 240 } });
  // A view entry with an empty id never matches a participant without a canvas id.
  const noCanvas = { participants: [{ id: 'p3', canvas_id: '', ...place(50) }] };
  assert.deepEqual(placeOf(noCanvas, { view: [{ id: '', ...place(999) }] }, 'p3', null), place(50));
});

// ---------------------------------------------------------------------------- group filters

const res = (members, t, value) => ({ members, window_end_ms: t, value, n_samples: 10 });
const tgf = (results, extra = {}) => ({ id: 'tgf', name: 'TEMPLATE_GF', channel: 'video', members: ['a', 'b', 'c'], results, ...extra });
const times = (state, id, key) => state.get(id).series.get(key).points.map((p) => p.t);

test('groupSignature changes with the instances, their names and members, not with anything else', () => {
  const gf = (id, name = 'TEMPLATE_GF') => ({ id, name, channel: 'video', groupFilter: true, config: {} });
  const p = (id, video, audio = []) => ({ id, participant_name: id, video_group_filters: video, audio_group_filters: audio, chat: [] });
  const s = { participants: [p('a', [gf('x')]), p('b', [gf('x')])] };
  const sig = groupSignature(s);
  assert.equal(groupSignature(structuredClone(s)), sig);
  // Other changes (chat, names) keep it.
  const chatty = structuredClone(s);
  chatty.participants[0].chat.push({ message: 'hi' });
  chatty.participants[0].participant_name = 'Alice';
  assert.equal(groupSignature(chatty), sig);
  // A member more, another instance, another filter, the same id moved to audio: it changes.
  assert.notEqual(groupSignature({ participants: [...s.participants, p('c', [gf('x')])] }), sig);
  assert.notEqual(groupSignature({ participants: [p('a', [gf('x'), gf('y')]), p('b', [gf('x')])] }), sig);
  assert.notEqual(groupSignature({ participants: [p('a', [gf('x', 'MOTION_SYNC')]), p('b', [gf('x', 'MOTION_SYNC')])] }), sig);
  assert.notEqual(groupSignature({ participants: [p('a', [], [gf('x')]), p('b', [], [gf('x')])] }), sig);
  // The order of the instances does not matter; no participants or no lists is fine.
  const ab = { participants: [p('a', [gf('x'), gf('y')])] };
  const ba = { participants: [p('a', [gf('y'), gf('x')])] };
  assert.equal(groupSignature(ab), groupSignature(ba));
  assert.equal(groupSignature(null), groupSignature({ participants: [{ id: 'a' }] }));
});

test('mergeGroupData: a reply sets the instances and their series per pair, pushes append', () => {
  const reply = {
    push: false,
    filters: [tgf([res(['a', 'b'], 1000, { difference: 1 }), res(['a', 'c'], 1000, { difference: 2 }), res(['a', 'b'], 2000, { difference: 3 })])],
  };
  const s1 = mergeGroupData(new Map(), reply);
  const inst = s1.get('tgf');
  assert.deepEqual([inst.name, inst.channel, inst.members], ['TEMPLATE_GF', 'video', ['a', 'b', 'c']]);
  assert.deepEqual([...inst.series.keys()], ['a|b', 'a|c']);
  assert.deepEqual(inst.series.get('a|b').points, [{ t: 1000, value: { difference: 1 } }, { t: 2000, value: { difference: 3 } }]);
  assert.deepEqual(inst.series.get('a|b').members, ['a', 'b']);
  // A push appends to the pair it is about and leaves the input state as it was.
  const s2 = mergeGroupData(s1, { push: true, filters: [tgf([res(['a', 'b'], 3000, { difference: 4 })])] });
  assert.deepEqual(times(s2, 'tgf', 'a|b'), [1000, 2000, 3000]);
  assert.deepEqual(times(s2, 'tgf', 'a|c'), [1000]);
  assert.deepEqual(times(s1, 'tgf', 'a|b'), [1000, 2000]);
  // A push of an instance not seen yet adds it.
  const s3 = mergeGroupData(s2, { push: true, filters: [{ id: 'm', name: 'MOTION_SYNC', channel: 'video', members: ['a', 'b'], results: [res(['a', 'b'], 5, { r: 0.5 })] }] });
  assert.deepEqual([...s3.keys()], ['tgf', 'm']);
  // A new reply replaces everything: instances gone from it are gone.
  const s4 = mergeGroupData(s3, { push: false, filters: [tgf([])] });
  assert.deepEqual([...s4.keys()], ['tgf']);
  assert.equal(s4.get('tgf').series.size, 0);
  assert.equal(mergeGroupData(s3, { push: false, filters: [] }).size, 0);
});

test('mergeGroupData keeps each series in time order, bounded, and restarts it when the clock does', () => {
  let s = new Map();
  for (let t = 1; t <= 50; t++) s = mergeGroupData(s, { push: true, filters: [tgf([res(['a', 'b'], t * 1000, { difference: t })])] });
  // At most maxPoints...
  const few = mergeGroupData(s, { push: true, filters: [tgf([res(['a', 'b'], 51_000, { difference: 0 })])] }, { maxPoints: 10, windowMs: 1e9 });
  assert.deepEqual(times(few, 'tgf', 'a|b'), Array.from({ length: 10 }, (_, i) => (42 + i) * 1000));
  // ... and only the last windowMs.
  const recent = mergeGroupData(s, { push: true, filters: [tgf([res(['a', 'b'], 51_000, { difference: 0 })])] }, { maxPoints: 1000, windowMs: 5000 });
  assert.deepEqual(times(recent, 'tgf', 'a|b'), [46_000, 47_000, 48_000, 49_000, 50_000, 51_000]);
  // The same window end again replaces the point; an earlier one (START restarted the
  // experiment clock) starts the series anew.
  const again = mergeGroupData(s, { push: true, filters: [tgf([res(['a', 'b'], 50_000, { difference: 99 })])] });
  assert.equal(times(again, 'tgf', 'a|b').length, 50);
  assert.deepEqual(again.get('tgf').series.get('a|b').points.at(-1).value, { difference: 99 });
  const restarted = mergeGroupData(s, { push: true, filters: [tgf([res(['a', 'b'], 1500, { difference: 7 }), res(['a', 'b'], 2500, { difference: 8 })])] });
  assert.deepEqual(times(restarted, 'tgf', 'a|b'), [1500, 2500]);
  // The same rule inside one reply: results from before START and after it.
  const reply = mergeGroupData(new Map(), { push: false, filters: [tgf([res(['a', 'b'], 9000, { difference: 1 }), res(['a', 'b'], 1000, { difference: 2 })])] });
  assert.deepEqual(times(reply, 'tgf', 'a|b'), [1000]);
});

test('mergeGroupData skips what it cannot read and never throws on it', () => {
  const s = mergeGroupData(new Map(), { push: false, filters: [tgf([res(['a', 'b'], 1000, { difference: 1 })])] });
  for (const bad of [null, undefined, 5, 'x', {}, { filters: 'no' }, { filters: null }]) assert.equal(mergeGroupData(s, bad), s);
  const junk = mergeGroupData(s, {
    push: true,
    filters: [
      null,
      { name: 'no id' },
      tgf([null, 7, { members: 'a|b', window_end_ms: 1 }, res(['a', 3], 2000, {}), res(['a', 'b'], 'late', {}), res(['a', 'b'], NaN, {}), res(['a', 'b'], 3000, null), res(['a', 'b'], 4000, 'x')]),
      { id: 'tgf', results: undefined },
      { id: 'x', results: [res(['a', 'b'], 1, { v: 1 })] },
    ],
  });
  assert.deepEqual(times(junk, 'tgf', 'a|b'), [1000]);
  // An instance with nothing but an id: named by it, no members.
  assert.deepEqual([junk.get('x').name, junk.get('x').members, times(junk, 'x', 'a|b')], ['x', [], [1]]);
  assert.equal(membersKey(['a', 'b']), 'a|b');
});

test('numericKeys and chooseKey: r by default, else the first number, the asked-for one if there', () => {
  const pts = [{ t: 1, value: { label: 'x', lag_ms: 400, nested: { a: 1 } } }, { t: 2, value: { r: 0.4, lag_ms: 380, bad: NaN } }, { t: 3, value: {} }];
  assert.deepEqual(numericKeys(pts), ['lag_ms', 'r']);
  assert.equal(chooseKey(['lag_ms', 'r'], undefined), 'r');
  assert.equal(chooseKey(['lag_ms', 'r'], 'lag_ms'), 'lag_ms');
  assert.equal(chooseKey(['lag_ms', 'r'], 'gone'), 'r');
  assert.equal(chooseKey(['difference'], null), 'difference');
  assert.equal(chooseKey([], 'r'), null);
  assert.deepEqual(numericKeys([]), []);
});

test('fmtValue gives three significant digits', () => {
  assert.equal(fmtValue(0.123456), '0.123');
  assert.equal(fmtValue(12.3456), '12.3');
  assert.equal(fmtValue(-400), '-400');
  assert.equal(fmtValue(123456), '123000');
  assert.equal(fmtValue(0), '0');
  assert.equal(fmtValue(NaN), '–');
  assert.equal(fmtValue(undefined), '–');
});

test('chartGeometry scales time left to right and values upwards inside the padding', () => {
  const pad = { left: 40, right: 10, top: 5, bottom: 15 };
  const pts = [1000, 2000, 3000].map((t, i) => ({ t, value: { r: [0, 1, 0.5][i] } }));
  const g = chartGeometry(pts, 'r', { width: 250, height: 120, pad });
  assert.deepEqual([g.count, g.min, g.max, g.t0, g.t1, g.last], [3, 0, 1, 1000, 3000, 0.5]);
  assert.deepEqual(g.segments, [[[40, 105], [140, 5], [240, 55]]]);
  // A point without the key breaks the line; the count is of plotted points.
  const gap = [...pts.slice(0, 2), { t: 2500, value: { lag_ms: 1 } }, pts[2]];
  const g2 = chartGeometry(gap, 'r', { width: 250, height: 120, pad });
  assert.equal(g2.count, 3);
  assert.deepEqual(g2.segments.map((s) => s.length), [2, 1]);
  // A flat series gets room around its value; one point sits at the right edge.
  const flat = chartGeometry([{ t: 5, value: { d: 20 } }], 'd', { width: 100, height: 50, pad });
  assert.ok(flat.min < 20 && flat.max > 20);
  assert.deepEqual(flat.segments, [[[90, 20]]]);
  assert.deepEqual(chartGeometry([{ t: 5, value: { d: 0 } }], 'd', { width: 100, height: 50 }).segments, [[[100, 25]]]);
  // Nothing to plot.
  assert.deepEqual(chartGeometry([], 'r', { width: 10, height: 10 }), { count: 0, min: null, max: null, t0: null, t1: null, last: null, segments: [] });
  assert.equal(chartGeometry(pts, 'nope', { width: 10, height: 10 }).count, 0);
});

// ------------------------------------------------------------- group filters in the editor

const gf = (name, id, channel, config = {}) => ({ name, id, channel, groupFilter: true, config });
const person = (video = [], audio = []) => ({ participant_name: 'x', video_group_filters: video, audio_group_filters: audio });

test('groupInstancesOf groups the participants\' lists by id, members as indices, first seen first', () => {
  const ms = gf('MOTION_SYNC', 'ms', 'video', { window_ms: { value: 5000 } });
  const ss = gf('SPEECH_SYNC', 'ss', 'audio');
  const got = groupInstancesOf([person([ms]), person([], [ss]), person([ms], [ss])]);
  assert.deepEqual(got, [
    { ...ms, members: [0, 2] },
    { ...ss, members: [1, 2] },
  ]);
  // A copy: editing an instance leaves the session as it was.
  got[0].config.window_ms.value = 9000;
  assert.equal(ms.config.window_ms.value, 5000);
  // Nothing, missing lists and malformed entries.
  assert.deepEqual(groupInstancesOf(undefined), []);
  assert.deepEqual(groupInstancesOf([{}, person([null, { name: 'X' }, gf('MOTION_SYNC', 7, 'video')])]), []);
  // The same id twice in one list: one member, once.
  assert.deepEqual(groupInstancesOf([person([ms, ms])])[0].members, [0]);
});

test('applyGroupInstances puts each instance into its channel\'s list of each member, same id and config', () => {
  const parts = [person([gf('OLD', 'old', 'video')]), person(), person()];
  const ms = { ...gf('MOTION_SYNC', 'ms', 'video', { step_ms: { value: 500 } }), members: [0, 2] };
  const ss = { ...gf('SPEECH_SYNC', 'ss', 'audio'), members: [0, 1, 2] };
  const none = { ...gf('MOTION_SYNC', 'gone', 'video'), members: [] };
  const out = applyGroupInstances(parts, [ms, ss, none]);
  const strip = ({ members, ...f }) => f;
  assert.deepEqual(out.map((p) => p.video_group_filters), [[strip(ms)], [], [strip(ms)]]);
  assert.deepEqual(out.map((p) => p.audio_group_filters), [[strip(ss)], [strip(ss)], [strip(ss)]]);
  // Copies: the input participants keep their lists, members do not share a config object.
  assert.equal(parts[0].video_group_filters[0].id, 'old');
  assert.notEqual(out[0].video_group_filters[0].config, out[2].video_group_filters[0].config);
  assert.equal(out[1].participant_name, 'x');
});

test('groupInstancesOf and applyGroupInstances are inverse on a design', () => {
  const a = gf('MOTION_SYNC', 'a', 'video', { window_ms: { value: 4000 } });
  const b = gf('SPEECH_SYNC', 'b', 'audio');
  const parts = [person([a], [b]), person([a]), person([], [b])];
  const inst = groupInstancesOf(parts);
  assert.deepEqual(applyGroupInstances(parts, inst), parts);
  assert.deepEqual(groupInstancesOf(applyGroupInstances(parts, inst)), inst);
});
