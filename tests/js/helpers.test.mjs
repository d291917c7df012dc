// Unit tests of web/js/helpers.js, the pages' pure helpers (`node --test tests/js/`).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { formatFilterData, paramLabel, gridLayout, placeOf } from '../../web/js/helpers.js';
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
