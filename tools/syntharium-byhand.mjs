// SynthARium's own React frontend against exphub, driven in headless Chromium as a lab would
// use it. NOT part of `make test` or CI: it needs a local build of SynthARium's frontend, which
// this repository does not contain and CI cannot fetch. See docs/syntharium.md ("Tried by hand").
//
// Build SynthARium's frontend (its `development` branch) with the backend address baked in:
//   cd SynthARium/frontend && npm ci
//   VITE_BACKEND=http://127.0.0.1:18080 VITE_ICE_SERVERS= VITE_CHAT_GPT_API_KEY= npx vite build
// then, with exphub built (cargo build --bin exphub):
//   node tools/syntharium-byhand.mjs --build SynthARium/frontend/build --port 18080 [--mode same|cross]
//
// --mode same  (default): exphub serves the build itself (--frontend-dir), one origin.
// --mode cross: the build is served from another origin (127.0.0.1:<port+1>, a small static
//               server with SPA fallback) and exphub allows it (--allow-origins).
// --port must be the port in VITE_BACKEND. Screenshots go to --shots (default
// tests/artifacts/syntharium/). Every step has a timeout; prints "N passed, M failed" last.
// Runs inside a loopback-only network namespace when it can (as the browser tests do).

import { createServer } from 'node:http';
import { readFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  ROOT,
  Steps,
  launchBrowser,
  makeCameraFile,
  reexecInLoopbackNamespace,
  remove,
  tempDir,
  until,
} from '../tests/browser/harness.mjs';
import { spawn } from 'node:child_process';

const nsStatus = reexecInLoopbackNamespace(new URL(import.meta.url).pathname);
if (nsStatus !== null) process.exit(nsStatus);

const { values: args } = parseArgs({
  options: {
    build: { type: 'string' },
    port: { type: 'string', default: '18080' },
    mode: { type: 'string', default: 'same' },
    shots: { type: 'string', default: path.join(ROOT, 'tests/artifacts/syntharium') },
  },
});
if (!args.build || !existsSync(path.join(args.build, 'index.html'))) {
  console.log('usage: node tools/syntharium-byhand.mjs --build <SynthARium/frontend/build> --port <VITE_BACKEND port> [--mode same|cross]');
  process.exit(2);
}
const PORT = Number(args.port);
const BACKEND = `http://127.0.0.1:${PORT}`;
const ORIGIN = args.mode === 'cross' ? `http://127.0.0.1:${PORT + 1}` : BACKEND;
const PASSWORD = 'a long secret';
const T = 30_000;
mkdirSync(args.shots, { recursive: true });
const watchdog = setTimeout(() => {
  console.log('FAIL  did not finish within 10 min');
  process.exit(1);
}, 10 * 60_000);

const tmp = tempDir('syntharium');
const bin = process.env.EXPHUB_BIN ?? path.join(ROOT, 'target/debug/exphub');
const serverArgs = ['serve', '--host', '127.0.0.1', '--port', String(PORT), '--sessions-dir', path.join(tmp, 'sessions')];
serverArgs.push(...(args.mode === 'cross' ? ['--allow-origins', ORIGIN] : ['--frontend-dir', args.build]));
const server = spawn(bin, serverArgs, {
  env: { ...process.env, EXPHUB_EXPERIMENTER_PASSWORD: PASSWORD, EXPHUB_LOG: 'warn', NO_COLOR: '1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
const serverLog = [];
server.stdout.on('data', (d) => serverLog.push(String(d)));
server.stderr.on('data', (d) => serverLog.push(String(d)));

// Another origin for --mode cross: the build's files, page routes answered with index.html.
let statics;
if (args.mode === 'cross') {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json' };
  statics = createServer((req, res) => {
    const p = path.normalize(decodeURIComponent(new URL(req.url, ORIGIN).pathname)).replace(/^(\.\.[/\\])+/, '');
    let file = path.join(args.build, p);
    if (!file.startsWith(path.resolve(args.build)) || !existsSync(file) || statSync(file).isDirectory()) file = path.join(args.build, 'index.html');
    res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  }).listen(PORT + 1, '127.0.0.1');
}

// Every frame on the data channel "API", both ways, as [direction, time, text].
function recordFrames() {
  window.__frames = [];
  const Orig = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...a) {
    const pc = new Orig(...a);
    window.__pcs.push(pc);
    const wrap = (dc) => {
      if (dc.label !== 'API') return;
      const send = dc.send.bind(dc);
      dc.send = (d) => {
        window.__frames.push(['>', Date.now(), String(d)]);
        return send(d);
      };
      dc.addEventListener('message', (e) => window.__frames.push(['<', Date.now(), String(e.data)]));
    };
    const cdc = pc.createDataChannel.bind(pc);
    pc.createDataChannel = (...b) => {
      const dc = cdc(...b);
      wrap(dc);
      return dc;
    };
    pc.addEventListener('datachannel', (e) => wrap(e.channel));
    return pc;
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
}

let browser;
const pages = {};
async function page(who) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await ctx.addInitScript(recordFrames);
  const p = await ctx.newPage();
  p.setDefaultTimeout(T);
  pages[who] = p;
  return p;
}
const frames = async (who) =>
  (await pages[who].evaluate(() => window.__frames)).map((f) => {
    try {
      return { dir: f[0], ...JSON.parse(f[2]) };
    } catch {
      return { dir: f[0] };
    }
  });
const got = async (who, type, pred = () => true) => (await frames(who)).find((m) => m.dir === '<' && m.type === type && pred(m.data));
const shot = (who, name) => pages[who].screenshot({ path: path.join(args.shots, `${args.mode}-${name}.png`) });
/** Frames decoded so far by every open connection's inbound video, summed. */
const decoded = (who) =>
  pages[who].evaluate(async () => {
    let n = 0;
    for (const pc of window.__pcs) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded ?? 0;
      });
    }
    return n;
  });
async function videoMoves(who) {
  const a = await decoded(who);
  await until(async () => (await decoded(who)) > a + 10, `${who}: video frames decode`, { timeout: T });
}
async function invite(who, s, i) {
  const p = await page(who);
  await p.goto(`${ORIGIN}/consent?participantId=${s.participants[i].id}&sessionId=${s.id}`);
  for (const cb of await p.getByRole('checkbox').all()) await cb.check();
  await p.getByRole('button', { name: 'Continue' }).click();
  await p.waitForURL(/\/lobby/);
}
async function confirm(p, button) {
  await p.getByRole('button', { name: button }).click();
  await p.getByRole('button', { name: /^yes$/i }).click();
}
async function participantsTab(p) {
  await p.locator('svg[data-icon=users]').first().click();
  return p.locator('.joinedParticipantContainer');
}

const steps = new Steps();
let session;
try {
  await until(() => serverLog.join('').includes('serving on'), 'exphub starts', { timeout: T });
  browser = await launchBrowser(makeCameraFile(tmp));
  const exp = await page('exp');

  await steps.run('experimenter logs in with ?experimenterPassword=', async () => {
    await exp.goto(`${ORIGIN}/?experimenterPassword=${encodeURIComponent(PASSWORD)}`);
    await exp.getByText('CREATE NEW EXPERIMENT').waitFor();
    await shot('exp', '01-overview');
  });

  await steps.run('session form: two participants, a filter each, saved', async () => {
    await exp.getByText('CREATE NEW EXPERIMENT').click();
    await exp.getByLabel('Title').fill('By-hand run');
    await exp.getByLabel('Description').fill("SynthARium's frontend against exphub");
    await exp.locator('input[type=datetime-local]').fill('2030-01-15T10:00');
    for (const [name, filter] of [['Alice', 'EDGE_OUTLINE'], ['Bob', 'PING']]) {
      await exp.getByRole('button', { name: 'ADD' }).click();
      const d = exp.getByRole('dialog');
      await d.getByLabel('Participant Name').fill(name);
      await d.getByLabel('Mute Audio').uncheck();
      await d.getByLabel('Mute Video').uncheck();
      await d.getByText('Select a Filter').click();
      await exp.getByRole('option', { name: filter, exact: true }).click();
      await d.getByRole('button', { name: 'SAVE', exact: true }).click();
      await d.waitFor({ state: 'detached' });
    }
    await exp.getByLabel('Record Session').check();
    await shot('exp', '02-session-form');
    await exp.getByRole('button', { name: 'SAVE SESSION' }).click();
    await exp.getByText('CREATE NEW EXPERIMENT').waitFor();
    session = (await got('exp', 'SAVED_SESSION')).data;
  });

  await steps.run('a participant who comes early is let in when the experiment opens (/ws)', async () => {
    await invite('alice', session, 0);
    await exp.getByRole('button', { name: 'JOIN' }).click();
    await exp.waitForURL(/experimentOverview/);
    await until(() => got('alice', 'SESSION'), 'Alice reloads and gets her session', { timeout: 60_000 });
  });

  await steps.run('the second participant joins; the experimenter sees both', async () => {
    await invite('bob', session, 1);
    await until(async () => (await frames('exp')).filter((m) => m.type === 'CONNECTION_PROPOSAL').length >= 2, 'two proposals');
    await videoMoves('exp');
    await shot('exp', '03-experimenter-before-start');
    await shot('alice', '04-lobby');
  });

  await steps.run('start: both participants in the meeting room, video both ways', async () => {
    await confirm(exp, 'START EXPERIMENT');
    for (const who of ['alice', 'bob']) await pages[who].waitForURL(/meetingRoom/);
    for (const who of ['exp', 'alice', 'bob']) await videoMoves(who);
    await shot('alice', '05-meeting-room');
  });

  await steps.run('chat: experimenter to everyone, a participant to the experimenter', async () => {
    const box = exp.getByPlaceholder('Enter your message here');
    await box.fill('Hello everyone');
    await box.press('Enter');
    await until(() => got('bob', 'CHAT', (d) => d.message === 'Hello everyone'), 'Bob gets the broadcast');
    // SynthARium's meeting room shows its chat only after a reload (its own state bug).
    await pages.alice.reload();
    const abox = pages.alice.getByPlaceholder('Enter your message here');
    await abox.fill('Hi from Alice');
    await abox.press('Enter');
    await until(() => got('exp', 'CHAT', (d) => d.message === 'Hi from Alice'), 'the experimenter gets Alice’s message');
    await shot('exp', '06-chat');
  });

  await steps.run("mute Bob's video; his filter data is shown", async () => {
    const rows = await participantsTab(exp);
    await rows.filter({ hasText: 'Bob' }).getByRole('button', { name: 'Info' }).click();
    await exp.getByRole('button', { name: 'Mute Video' }).click();
    await exp.getByRole('button', { name: 'Finish' }).click();
    await until(() => got('exp', 'SUCCESS', (d) => d.type === 'MUTE'), 'MUTE succeeds');
    await exp.locator('svg[data-icon=clipboard-list]').first().click();
    await until(() => got('exp', 'FILTERS_DATA', (d) => Object.values(d).some((p) => p.video.some((f) => f.data?.ping))), 'PING data');
    await shot('exp', '07-muted-and-filter-data');
  });

  await steps.run('change filters live (from SynthARium’s /connectionTest page)', async () => {
    const t = await page('tester');
    await t.goto(`${ORIGIN}/connectionTest?sessionId=${session.id}&experimenterPassword=${encodeURIComponent(PASSWORD)}`);
    await t.getByRole('button', { name: 'Start Connection' }).click();
    const join = t.getByRole('button', { name: 'JOIN_EXPERIMENT' });
    await until(() => join.isEnabled(), 'connected');
    await join.click();
    await until(() => got('tester', 'SUCCESS', (d) => d.type === 'JOIN_EXPERIMENT'), 'joined');
    await t.getByRole('button', { name: 'Rotation', exact: true }).click();
    await until(() => got('tester', 'SUCCESS', (d) => d.type === 'SET_FILTERS'), 'SET_FILTERS succeeds');
    await videoMoves('exp');
    await shot('exp', '08-rotation');
    await t.context().close();
  });

  await steps.run('kick Bob', async () => {
    const rows = await participantsTab(exp);
    await rows.filter({ hasText: 'Bob' }).getByRole('button', { name: 'Kick' }).click();
    const m = exp.locator('.kickParticipantModalContainer');
    await m.locator('input,textarea').fill('Testing the kick');
    await m.getByRole('button', { name: 'Kick' }).click();
    await until(() => got('bob', 'KICK_NOTIFICATION'), 'Bob is told');
    await until(async () => (await rows.count()) === 1, 'Bob leaves the list');
  });

  await steps.run('end: the participant is taken to /end', async () => {
    await confirm(exp, 'END EXPERIMENT');
    await pages.alice.waitForURL(/\/end/);
    await exp.getByText('CREATE NEW EXPERIMENT').waitFor();
    await shot('alice', '09-end');
  });

  await steps.run('the recording list in the Post-Processing Room', async () => {
    await exp.getByRole('button', { name: 'Post-Processing Room' }).click();
    await until(() => got('exp', 'RECORDING_LIST', (d) => d.some((r) => r.session_id === session.id)), 'RECORDING_LIST');
    await exp.locator('#filters-select[role=button], #filters-select[role=combobox]').first().click();
    await exp.getByRole('option', { name: new RegExp(session.id) }).waitFor();
    await shot('exp', '10-recordings');
    await exp.keyboard.press('Escape');
  });

  await steps.run('the ended session can be deleted right away', async () => {
    await exp.getByRole('button', { name: 'Back to Session Overview' }).click();
    await exp.getByRole('button', { name: /show past sessions/i }).click();
    await exp.getByText('By-hand run').last().click();
    await exp.getByRole('button', { name: 'DELETE' }).click();
    await until(() => got('exp', 'DELETED_SESSION'), 'DELETED_SESSION');
  });
} finally {
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
  server.kill('SIGTERM');
  statics?.close();
  remove(tmp);
  const s = steps.summary();
  if (s.failed) console.log(serverLog.join('').split('\n').filter((l) => / (WARN|ERROR) exphub/.test(l)).slice(-20).join('\n'));
  console.log(`${s.passed} passed, ${s.failed} failed`);
  process.exit(s.failed ? 1 : 0);
}
