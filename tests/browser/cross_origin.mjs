// A page served from another origin connects to exphub, as SynthARium's frontend on its Vite
// dev server does: headless Chromium loads a page from a second local server (another port,
// so another origin), which imports exphub's protocol module and connects as the experimenter
// to the real server binary started with EXPHUB_ALLOW_ORIGINS=<that origin>. The browser
// sends the CORS preflights itself. Checked: the data channel opens and answers
// GET_SESSION_LIST, and the page's /ws socket receives EXPERIMENTER_JOINED when the page
// opens the experiment. Then the same page against a server that does not allow its origin
// must fail on the first request. Last, exphub's own room, opened before the experiment is
// open, joins on /ws's notice.
//
// Run: `node tests/browser/cross_origin.mjs` with target/debug/exphub built (EXPHUB_BIN for
// another). Prints "N passed, M failed" last; everything has a timeout.

import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ROOT, launchBrowser, makeCameraFile, reexecInLoopbackNamespace, remove, startServer, tempDir, until } from './harness.mjs';

const nsStatus = reexecInLoopbackNamespace(new URL(import.meta.url).pathname);
if (nsStatus !== null) process.exit(nsStatus);

const T = 60_000;
const SESSION = 'ae839e5e6f';
const PARTICIPANT = '9ba5fdccde';
const tmp = tempDir('xorigin');
const password = `pw-${randomBytes(9).toString('hex')}`;
const results = [];
let browser;
let page;
const servers = [];

// The other origin: a page and exphub's protocol module (the module is plain ES, no build).
const PAGE = `<!doctype html><meta charset="utf-8"><title>other origin</title>
<script type="module">
import { Connection } from '/protocol.js';
window.tryConnect = async (base, password, session) => {
  const ws = new WebSocket(base.replace(/^http/, 'ws') + '/ws');
  const joined = new Promise((resolve) => ws.addEventListener('message', (e) => resolve(e.data)));
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('ws failed')); });
  const conn = new Connection({ role: 'experimenter', password, base });
  await conn.connect();
  const list = await conn.request('GET_SESSION_LIST', {}, 'SESSION_LIST');
  await conn.request('CREATE_EXPERIMENT', { session_id: session }, 'SUCCESS');
  const notice = await Promise.race([joined, new Promise((r) => setTimeout(() => r('no notice'), 20000))]);
  ws.close();
  return { sessions: list.map((s) => s.id), notice };
};
</script>`;

function startPageServer() {
  const protocolJs = readFileSync(path.join(ROOT, 'web/js/protocol.js'));
  const srv = http.createServer((req, res) => {
    if (req.url === '/protocol.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(protocolJs);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    }
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

async function check(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`ok    ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL  ${name}\n      ${String(e.stack ?? e).split('\n').slice(0, 4).join('\n      ')}`);
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

async function serverWithOrigins(origins) {
  const sessionsDir = path.join(tmp, `sessions-${servers.length}`);
  mkdirSync(sessionsDir, { recursive: true });
  copyFileSync(path.join(ROOT, 'sessions', `${SESSION}.json`), path.join(sessionsDir, `${SESSION}.json`));
  if (origins) process.env.EXPHUB_ALLOW_ORIGINS = origins;
  else delete process.env.EXPHUB_ALLOW_ORIGINS;
  const s = await startServer({ sessionsDir, password });
  servers.push(s);
  return s;
}

const timer = setTimeout(() => {
  console.log('FAIL  the run took too long');
  process.exit(1);
}, 4 * T);

try {
  const pageServer = await startPageServer();
  const origin = `http://127.0.0.1:${pageServer.address().port}`;
  browser = await launchBrowser(makeCameraFile(tmp));
  page = await browser.newPage();
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => typeof window.tryConnect === 'function', null, { timeout: T });

  await check('a page of an allowed origin connects, and its /ws hears EXPERIMENTER_JOINED', async () => {
    const exphub = await serverWithOrigins(origin);
    const r = await page.evaluate(([b, p, s]) => window.tryConnect(b, p, s), [exphub.base, password, SESSION]);
    assert(r.sessions.includes(SESSION), `session list ${JSON.stringify(r.sessions)}`);
    assert(r.notice === '{"type":"EXPERIMENTER_JOINED"}', `notice ${r.notice}`);
  });

  await check('a page of an origin that is not allowed fails on the first request', async () => {
    const exphub = await serverWithOrigins(null);
    const err = await page
      .evaluate(([b, p, s]) => window.tryConnect(b, p, s).then(() => 'connected', (e) => String(e.message ?? e)), [exphub.base, password, SESSION])
      .catch((e) => String(e));
    assert(err !== 'connected', 'connected although the origin is not allowed');
  });
  await check("exphub's room joins when the experimenter opens the experiment (/ws, not polling)", async () => {
    const exphub = await serverWithOrigins(origin);
    const ctx = await browser.newContext();
    await ctx.grantPermissions(['camera', 'microphone'], { origin: exphub.base });
    const room = await ctx.newPage();
    await room.goto(`${exphub.base}/lobby?participantId=${PARTICIPANT}&sessionId=${SESSION}`);
    const status = () => room.locator('#lobby-status').textContent();
    const join = room.getByRole('button', { name: 'Join the session' });
    await until(() => join.isEnabled(), 'the join button');
    await join.click();
    await until(async () => /has not opened/.test(await status()), 'the room to wait for the experimenter');
    // The room's fallback poll comes 30 s after its first try; the notice must come first.
    await page.evaluate(([b, p, s]) => window.tryConnect(b, p, s), [exphub.base, password, SESSION]);
    await until(async () => /You are in/.test(await status()), 'the room to join on EXPERIMENTER_JOINED', { timeout: 20_000 });
    await ctx.close();
  });
  pageServer.close();
} catch (e) {
  results.push(false);
  console.log(`FAIL  setup: ${e.stack ?? e}`);
} finally {
  clearTimeout(timer);
  await browser?.close().catch(() => {});
  for (const s of servers) await s.stop().catch(() => {});
  remove(tmp);
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.every(Boolean) && results.length > 0 ? 0 : 1);
