// Unit tests of the pure helpers of web/js/protocol.js and web/js/ui.js (`node --test tests/js/`).
// The module is imported as the browser loads it; nothing here touches a network or a DOM.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  ProtocolError,
  Connection,
  describeError,
  sessionStatus,
  inviteLink,
  newSession,
  newParticipant,
  uuid4,
  CANVAS,
} from '../../web/js/protocol.js';
import { fmtDuration } from '../../web/js/ui.js';

test('sessionStatus follows the session times, the latest set one wins', () => {
  const s = { creation_time: 0, start_time: 0, end_time: 0 };
  assert.equal(sessionStatus(s), 'draft');
  assert.equal(sessionStatus({ ...s, creation_time: 1 }), 'open');
  assert.equal(sessionStatus({ ...s, creation_time: 1, start_time: 2 }), 'running');
  assert.equal(sessionStatus({ ...s, creation_time: 1, start_time: 2, end_time: 3 }), 'ended');
  // A session whose experiment was dropped after it ran (creation_time back to 0) is ended.
  assert.equal(sessionStatus({ ...s, start_time: 2, end_time: 3 }), 'ended');
});

test('describeError gives the server text, a hint, and the code for server errors', () => {
  const e = new ProtocolError(403, 'FORBIDDEN', 'SAVE_SESSION is not allowed for this user.');
  assert.equal(
    describeError(e, 'Saving'),
    'Saving: SAVE_SESSION is not allowed for this user. This account may not do that. (403 FORBIDDEN)',
  );
  const nce = new ProtocolError(409, 'NOT_CONNECTED_TO_EXPERIMENT', 'Cannot add note. Experimenter is not connected to an experiment.');
  assert.match(describeError(nce), /^Cannot add note\. .* Open the experiment first\. \(409 NOT_CONNECTED_TO_EXPERIMENT\)$/);
  // No hint for other types, and no doing-prefix when none is given.
  const plain = new ProtocolError(404, 'UNKNOWN_SESSION', 'No session with the given ID found.');
  assert.equal(describeError(plain), 'No session with the given ID found. (404 UNKNOWN_SESSION)');
});

test('describeError leaves out codes of local failures and handles plain errors', () => {
  for (const type of ['NETWORK', 'CLIENT', 'CLOSED', 'TIMEOUT']) {
    assert.equal(describeError(new ProtocolError(408, type, 'No answer.'), 'Joining'), 'Joining: No answer.');
  }
  assert.equal(describeError(new Error('boom'), 'Loading'), 'Loading: boom');
  assert.equal(describeError('just text'), 'just text');
});

test('inviteLink is the lobby address SynthARium invites with', () => {
  assert.equal(
    inviteLink('https://lab.example:8443', 'ae839e5e6f', '9ba5fdccde'),
    'https://lab.example:8443/lobby?participantId=9ba5fdccde&sessionId=ae839e5e6f',
  );
  // Ids are query-encoded, whatever they hold.
  const link = new URL(inviteLink('http://127.0.0.1:8080', 'a b', 'x&y=z'));
  assert.equal(link.searchParams.get('sessionId'), 'a b');
  assert.equal(link.searchParams.get('participantId'), 'x&y=z');
});

test('newSession and newParticipant have every key of the SessionDict, ids empty', () => {
  const s = newSession();
  assert.deepEqual(Object.keys(s).sort(), [
    'creation_time', 'date', 'description', 'end_time', 'id', 'log', 'notes', 'participants',
    'record', 'start_time', 'time_limit', 'title',
  ]);
  assert.equal(s.id, '');
  const p = newParticipant('Alice', { x: 5 }, { width: 100 });
  assert.equal(p.id, '');
  assert.equal(p.participant_name, 'Alice');
  assert.deepEqual(p.position, { x: 5, y: 0, z: 0 });
  assert.deepEqual(p.size, { width: 100, height: 240 });
  for (const key of ['chat', 'audio_filters', 'video_filters', 'audio_group_filters', 'video_group_filters', 'view', 'asymmetric_filters', 'chat_filters']) {
    assert.deepEqual(p[key], [], key);
  }
  assert.notEqual(p.canvas_id, newParticipant('Bob').canvas_id);
});

test('uuid4 is a version-4 UUID, different every time', () => {
  const re = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const a = uuid4();
  assert.match(a, re);
  assert.notEqual(a, uuid4());
});

test('the designer canvas is SynthARium\'s', () => {
  assert.deepEqual(CANVAS, { width: 1040, height: 640 });
});

test('fmtDuration shows m:ss, or h:mm:ss from an hour on, never negative', () => {
  assert.equal(fmtDuration(0), '0:00');
  assert.equal(fmtDuration(309_000), '5:09');
  assert.equal(fmtDuration(3_909_000), '1:05:09');
  assert.equal(fmtDuration(999), '0:00');
  assert.equal(fmtDuration(-5000), '0:00');
});

test('groupFiltersData asks with the given options, takes only the reply (not a push), and asks with fewer results when the reply is too large', async () => {
  // A connection whose request() answers here (a real one needs WebRTC).
  const c = Object.create(Connection.prototype);
  const asked = [];
  let tooLargeAbove = Infinity;
  c.request = async (type, data, match) => {
    asked.push({ type, data });
    assert.equal(match({ type: 'GROUP_FILTERS_DATA', data: { filters: [], push: true } }), false);
    assert.equal(match({ type: 'FILTERS_DATA', data: { push: false } }), false);
    assert.equal(match({ type: 'GROUP_FILTERS_DATA', data: { filters: [], push: false } }), true);
    if ((data.results ?? 300) > tooLargeAbove) throw new ProtocolError(413, 'INVALID_REQUEST', 'too large');
    return { filters: [], push: false };
  };
  assert.deepEqual(await c.groupFiltersData(), { filters: [], push: false });
  assert.deepEqual(asked.pop(), { type: 'GET_GROUP_FILTERS_DATA', data: { filter_id: 'all' } });
  await c.groupFiltersData({ filterId: 'tgf', results: 10, subscribe: false });
  assert.deepEqual(asked.pop().data, { filter_id: 'tgf', results: 10, subscribe: false });
  // 413: half as many, until it fits.
  asked.length = 0;
  tooLargeAbove = 200;
  await c.groupFiltersData({ results: 1000, subscribe: true });
  assert.deepEqual(asked.map((a) => a.data.results), [1000, 500, 250, 125]);
  assert.ok(asked.every((a) => a.data.subscribe === true));
  // Not below 25 results; other errors at once.
  asked.length = 0;
  tooLargeAbove = 0;
  await assert.rejects(c.groupFiltersData({ results: 100 }), (e) => e.code === 413);
  assert.deepEqual(asked.map((a) => a.data.results), [100, 50, 25]);
  asked.length = 0;
  c.request = async (type, data) => {
    asked.push(data);
    throw new ProtocolError(409, 'NOT_CONNECTED_TO_EXPERIMENT', 'no');
  };
  await assert.rejects(c.groupFiltersData({ results: 1000 }), (e) => e.code === 409);
  assert.equal(asked.length, 1);
});
