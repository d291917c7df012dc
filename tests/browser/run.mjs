// The web app, end to end, in headless Chromium: an experimenter and two participants in three
// browser contexts run a whole experiment against the real server binary.
//
//   design a session → invite → lobby → start → everyone sees everyone (frames decode) → chat
//   both ways, notes → live filter data → a group filter's live chart → rejoin after a refresh → live filter change visible in
//   the experimenter's grid (pixel check on a canvas grab) → mute → kick, join again, ban → stop
//   → duplicate and delete → a group filter designed in the session editor; plus readable server errors and the dashboard reconnecting after
//   the server was killed.
//
// Each step is one test; after a failure the rest are skipped. Screenshots of each step go to
// tests/artifacts/browser/ (with the browsers' console and, on failure, the server's log).
// Prints "N passed, M failed" last. Everything has a timeout; the whole run stops itself after
// EXPHUB_E2E_TIMEOUT_MS (6 min). Runs inside a loopback-only network namespace when it can.
// Run: `make e2e` (builds the server, installs Chromium and playwright-core if missing), or
// `node tests/browser/run.mjs` with target/debug/exphub built (EXPHUB_BIN to use another).

import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import {
  ARTIFACTS,
  reexecInLoopbackNamespace,
  Steps,
  grab,
  launchBrowser,
  makeCameraFile,
  remove,
  shot,
  startServer,
  tempDir,
  until,
  waitDecoding,
  writeJson,
} from './harness.mjs';

// Only loopback: inside a fresh network namespace when we can make one.
const nsStatus = reexecInLoopbackNamespace(new URL(import.meta.url).pathname);
if (nsStatus !== null) process.exit(nsStatus);

const TOTAL_TIMEOUT_MS = Number(process.env.EXPHUB_E2E_TIMEOUT_MS ?? 6 * 60_000);
const T = 30_000; // default wait for a condition (generous: a loaded 2-core machine)
const started = Date.now();

const tmp = tempDir('run');
const sessionsDir = path.join(tmp, 'sessions');
const password = `pw-${randomBytes(9).toString('hex')}`;
let server;
let browser;
const consoleLog = [];

async function cleanup() {
  try {
    await browser?.close();
  } catch {
    /* already gone */
  }
  await server?.stop().catch(() => {});
  remove(tmp);
}

const steps = new Steps();
const watchdog = setTimeout(async () => {
  console.log(`FAIL  the browser tests did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`);
  setTimeout(() => process.exit(1), 15_000).unref();
  await cleanup();
  console.log(`${steps.summary().passed} passed, 1 failed`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
const pages = {};

function watch(page, who) {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleLog.push(`[${who}] ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleLog.push(`[${who}] pageerror: ${e.message}`));
}

steps.onFail = async (id) => {
  for (const [who, page] of Object.entries(pages)) {
    if (!page.isClosed()) await shot(page, id, `FAILED-${who}`).catch(() => {});
  }
};

try {
  mkdirSync(sessionsDir, { recursive: true });
  const camera = makeCameraFile(tmp);
  server = await startServer({ sessionsDir, password });
  browser = await launchBrowser(camera);
  console.log(`server ${server.base}, ${browser.version ? `Chromium ${browser.version()}` : 'Chromium'}`);
  const base = server.base;
  const expCtx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await expCtx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const exp = await expCtx.newPage();
  pages.experimenter = exp;
  watch(exp, 'experimenter');
  const invites = {};
  let alice;
  let bob;
  const tileOf = (name) => exp.locator('article.tile', { has: exp.locator('h3', { hasText: name }) });
  // From the session list: a new session in the editor with this title and these participants.
  const newDesign = async (title, names) => {
    await exp.getByRole('button', { name: 'New session' }).click();
    await exp.getByLabel('Title').fill(title);
    for (const _ of names) await exp.getByRole('button', { name: 'Add participant' }).click();
    const cards = exp.locator('.participant-card');
    for (const [i, name] of names.entries()) await cards.nth(i).getByLabel('Name').fill(name);
    return cards;
  };

  // ------------------------------------------------------------------ design
  await steps.run('experimenter logs in (a wrong password is refused readably)', async (id) => {
    await exp.goto(base + '/');
    await exp.getByLabel('Experimenter password').fill('not the password');
    await exp.getByRole('button', { name: 'Log in' }).click();
    await until(async () => /wrong password/i.test(await exp.locator('#login-error').textContent()), 'the wrong-password message');
    await shot(exp, id, 'login-refused');
    await exp.getByLabel('Experimenter password').fill(password);
    await exp.getByRole('button', { name: 'Log in' }).click();
    await exp.getByRole('heading', { name: 'Sessions' }).waitFor({ timeout: T });
    const url = exp.url();
    if (url.includes(password)) throw new Error('the password appears in the address');
    await shot(exp, id, 'sessions-empty');
  });

  await steps.run('designs a session: participants, layout by dragging, filters with parameter inputs', async (id) => {
    const cards = await newDesign('Browser test session', ['Alice', 'Bob']);
    await exp.getByLabel('Description').fill('Two participants, made by the browser test.');
    // Drag Bob's box on the canvas 20 canvas units to the left and 100 down.
    const bobBox = exp.locator('.stage.designer .box', { hasText: 'Bob' });
    const xInput = cards.nth(1).getByLabel('x', { exact: true });
    const yInput = cards.nth(1).getByLabel('y', { exact: true });
    const [x0, y0] = [Number(await xInput.inputValue()), Number(await yInput.inputValue())];
    const stageBox = await exp.locator('.stage.designer').boundingBox();
    const scale = stageBox.width / 1040;
    const b = await bobBox.boundingBox();
    await exp.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
    await exp.mouse.down();
    await exp.mouse.move(b.x + b.width / 2 - 20 * scale, b.y + b.height / 2 + 100 * scale, { steps: 8 });
    await exp.mouse.up();
    const [x1, y1] = [Number(await xInput.inputValue()), Number(await yInput.inputValue())];
    if (Math.abs(x1 - (x0 - 20)) > 3 || Math.abs(y1 - (y0 + 100)) > 3) throw new Error(`dragging Bob's box moved it from ${x0},${y0} to ${x1},${y1}`);
    // Keyboard: arrow keys move the focused box.
    await bobBox.focus();
    await exp.keyboard.press('ArrowRight');
    if (Number(await xInput.inputValue()) !== x1 + 10) throw new Error('ArrowRight did not move the box by 10');
    // Alice gets SPEAKING_TIME (audio); Bob gets PING (video, number parameters with min/max/step).
    const aliceCard = cards.nth(0);
    await aliceCard.locator('summary', { hasText: 'Filters' }).click();
    await aliceCard.getByLabel('Add an audio filter').selectOption('SPEAKING_TIME');
    await until(async () => /speaks/i.test(await aliceCard.locator('.filters-audio .add-desc').textContent()), 'the filter description');
    await aliceCard.locator('.filters-audio').getByRole('button', { name: 'Add', exact: true }).click();
    const bobCard = cards.nth(1);
    await bobCard.locator('summary', { hasText: 'Filters' }).click();
    await bobCard.getByLabel('Add a video filter').selectOption('PING');
    await bobCard.locator('.filters-video').getByRole('button', { name: 'Add', exact: true }).click();
    const period = bobCard.locator('.filter[data-name="PING"]').getByLabel('Period');
    const attrs = await period.evaluate((i) => [i.type, i.min, i.max, i.step]);
    if (attrs.join() !== 'number,10,60000,1') throw new Error(`PING period input is ${attrs}`);
    await period.fill('500');
    await period.dispatchEvent('change');
    if (!(await bobCard.locator('.filter[data-name="PING"] .desc').textContent()).includes('round-trip')) throw new Error('no PING description');
    // Bob sees his own camera unprocessed (local_stream); Alice sees her processed echo.
    await bobCard.getByLabel('Shows own camera unprocessed').check();
    await exp.getByLabel('Record the participants').check();
    await shot(exp, id, 'editor');
    await exp.getByRole('button', { name: 'Create session' }).click();
    await exp.getByRole('heading', { name: /Edit session: Browser test session/ }).waitFor({ timeout: T });
    for (const name of ['Alice', 'Bob']) {
      invites[name] = await exp.getByRole('textbox', { name: `Invite link for ${name}` }).inputValue();
      if (!/\/lobby\?participantId=[0-9a-f]{10}&sessionId=[0-9a-f]{10}$/.test(invites[name])) throw new Error(`odd invite link ${invites[name]}`);
    }
    await exp.getByRole('button', { name: 'Copy invite link for Alice' }).click();
    const clip = await exp.evaluate(() => navigator.clipboard.readText());
    if (clip !== invites.Alice) throw new Error(`clipboard holds ${clip}`);
    await exp.locator('.layout').scrollIntoViewIfNeeded();
    await shot(exp, id, 'editor-saved-with-invites');
  });

  await steps.run('opens the experiment from the session list', async (id) => {
    await exp.getByRole('button', { name: 'Back to sessions' }).first().click();
    await exp.getByRole('button', { name: 'Open experiment Browser test session' }).click();
    await until(async () => (await exp.locator('#experiment-status').textContent()) === 'Waiting to start', 'the experiment to be open');
    await tileOf('Alice').waitFor({ timeout: T });
    await shot(exp, id, 'live-waiting');
  });

  await steps.run("the server's refusals read as sentences: an open experiment's session cannot be deleted", async (id) => {
    await exp.getByRole('button', { name: '← Sessions' }).click();
    await exp.getByRole('button', { name: 'Delete Browser test session' }).click();
    await exp.getByRole('dialog', { name: /Delete/ }).getByRole('button', { name: 'Delete' }).click();
    const notice = exp.locator('.notice-error').last();
    await notice.waitFor({ timeout: T });
    const text = await notice.textContent();
    if (!/^The session was not deleted: Cannot delete session with running experiment\. \(400 EXPERIMENT_RUNNING\)/.test(text)) throw new Error(`the error reads: ${text}`);
    await shot(exp, id, 'readable-error');
    await notice.getByRole('button', { name: 'Dismiss' }).click();
    // Back into the experiment, which kept waiting.
    await exp.getByRole('button', { name: 'Join experiment Browser test session' }).click();
    await until(async () => (await exp.locator('#experiment-status').textContent()) === 'Waiting to start', 'the experiment to be joined again');
  });

  // ------------------------------------------------------------------ lobby
  await steps.run('participants open their invite links: lobby with self-view, then join', async (id) => {
    for (const name of ['Alice', 'Bob']) {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.grantPermissions(['camera', 'microphone'], { origin: base });
      const page = await ctx.newPage();
      pages[name] = page;
      watch(page, name);
      await page.goto(invites[name]);
      await waitDecoding(page.locator('#self-view'), `${name}'s self-view`);
      await until(async () => Number(await page.locator('#mic-level').evaluate((m) => m.value)) > 0, `${name}'s microphone level`, { timeout: T });
      await page.getByRole('button', { name: 'Join the session' }).click();
      await until(async () => /You are in/.test(await page.locator('#lobby-status').textContent()), `${name} to be in the lobby`, { timeout: T });
      await until(async () => (await page.locator('#lobby-title').textContent()).includes(name), `${name}'s name in the lobby`);
    }
    alice = pages.Alice;
    bob = pages.Bob;
    await shot(alice, id, 'lobby-alice');
  });

  await steps.run("experimenter's grid shows both participants' live video before the start", async (id) => {
    for (const name of ['Alice', 'Bob']) {
      await waitDecoding(tileOf(name).locator('video'), `the experimenter's tile of ${name}`);
      await until(async () => (await tileOf(name).getAttribute('data-state')) === 'connected', `${name}'s tile to say connected`);
    }
    // Participants do not see each other before START.
    if (await alice.locator('#meeting').isVisible()) throw new Error('Alice is in the meeting before the start');
    await shot(exp, id, 'grid-before-start');
  });

  // ------------------------------------------------------------------ meeting
  await steps.run('start: both participants enter the meeting room and see each other', async (id) => {
    await exp.getByRole('button', { name: 'Start experiment' }).click();
    await until(async () => (await exp.locator('#experiment-status').textContent()) === 'Running', 'the experiment to run');
    for (const [me, other] of [
      [alice, 'Bob'],
      [bob, 'Alice'],
    ]) {
      await me.locator('#meeting').waitFor({ state: 'visible', timeout: T });
      await waitDecoding(me.locator('.seat[data-self="false"] video'), `the meeting room's view of ${other}`);
      await waitDecoding(me.locator('.seat[data-self="true"] video'), 'the own processed echo');
      const label = await me.locator('.seat[data-self="false"] .tile-name').textContent();
      if (label !== other) throw new Error(`the other seat is labelled ${label}`);
    }
    const sources = [await alice.locator('.seat[data-self="true"]').getAttribute('data-source'), await bob.locator('.seat[data-self="true"]').getAttribute('data-source')];
    if (sources.join() !== 'echo,camera') throw new Error(`own views show ${sources} (want Alice: echo, Bob: camera as local_stream says)`);
    // Seats are placed as designed: Bob (dragged left of his grid cell) is where the session says.
    const place = await alice.locator('.seat[data-self="false"]').evaluate((e) => [e.style.left, e.style.width]);
    if (!place[0].endsWith('%') || !place[1].endsWith('%')) throw new Error(`Bob's seat is not placed: ${place}`);
    await shot(alice, id, 'meeting-alice');
    await shot(bob, id, 'meeting-bob');
    await shot(exp, id, 'grid-running');
  });

  await steps.run('chat both ways, with unread marks on the dashboard', async (id) => {
    await tileOf('Alice').getByRole('button', { name: /^Chat with Alice/ }).click();
    await exp.locator('#chat-input').fill('Hello Alice, can you hear me?');
    await exp.locator('#panel-chat').getByRole('button', { name: 'Send' }).click();
    await until(async () => (await alice.locator('#chat-list').textContent()).includes('Hello Alice, can you hear me?'), 'Alice to get the message');
    // The experimenter looks at the "everyone" conversation: Alice's answer is unread.
    await exp.getByLabel('Conversation').selectOption('participants');
    await alice.locator('#chat-input').fill('Yes, loud and clear.');
    await alice.getByRole('button', { name: 'Send' }).click();
    await until(async () => (await tileOf('Alice').getByRole('button', { name: /^Chat with Alice/ }).getAttribute('aria-label')).includes('1 unread'), 'an unread mark on Alice');
    await shot(exp, id, 'unread');
    await tileOf('Alice').getByRole('button', { name: /^Chat with Alice/ }).click();
    await until(async () => (await exp.locator('#chat-list').textContent()).includes('Yes, loud and clear.'), 'the answer in the conversation');
    await until(async () => !(await tileOf('Alice').getByRole('button', { name: /^Chat with Alice/ }).getAttribute('aria-label')).includes('unread'), 'the unread mark to go');
    await shot(exp, id, 'chat-with-alice');
    // To everyone.
    await exp.getByLabel('Conversation').selectOption('participants');
    await exp.locator('#chat-input').fill('Welcome, both of you.');
    await exp.locator('#panel-chat').getByRole('button', { name: 'Send' }).click();
    await until(async () => (await bob.locator('#chat-list').textContent()).includes('Welcome, both of you.'), 'Bob to get the message to everyone');
    await shot(exp, id, 'chat-experimenter');
    await shot(alice, id, 'chat-alice');
    // Notes.
    await exp.getByRole('tab', { name: 'Notes' }).click();
    await exp.getByLabel('New note').fill('Alice answered at once.');
    await exp.getByRole('button', { name: 'Add note' }).click();
    await until(async () => (await exp.locator('#panel-notes .notes').textContent()).includes('Alice answered at once.'), 'the note in the list');
    await exp.getByRole('tab', { name: 'Chat' }).click();
  });

  await steps.run('live filter data: speaking time next to Alice, ping next to Bob', async (id) => {
    await until(async () => /Speaking \d+\.\d s/.test(await tileOf('Alice').locator('.filter-data').textContent()), "Alice's speaking time", { timeout: 45_000 });
    await until(async () => /Ping [1-9]\d* ms/.test(await tileOf('Bob').locator('.filter-data').textContent()), "Bob's ping", { timeout: 45_000 });
    await shot(exp, id, 'filter-data');
  });

  await steps.run('group filters: TEMPLATE_GF on both participants, a live chart of the pair on the dashboard', async (id) => {
    // SET_GROUP_FILTERS from a second experimenter connection while the experiment is open: the
    // dashboard hears the SESSION_CHANGE and asks for the instances again.
    const sid = new URL(exp.url()).hash.slice('#/live/'.length);
    const tgf = { name: 'TEMPLATE_GF', id: 'tgf', channel: 'video', groupFilter: true, config: {} };
    const t0 = Date.now();
    await exp.evaluate(
      async ({ password, sid, tgf }) => {
        const { Connection } = await import('/web/js/protocol.js');
        const c = new Connection({ role: 'experimenter', password });
        await c.connect();
        try {
          await c.request('JOIN_EXPERIMENT', { session_id: sid }, 'SUCCESS:JOIN_EXPERIMENT');
          await c.request('SET_GROUP_FILTERS', { audio_group_filters: [], video_group_filters: [tgf] }, 'SUCCESS:SET_GROUP_FILTERS');
        } finally {
          c.close();
        }
      },
      { password, sid, tgf },
    );
    const card = exp.locator('#group-filters .group-filter[data-id="tgf"]');
    await card.waitFor({ timeout: T });
    const members = await card.locator('p').first().textContent();
    if (!/Alice/.test(members) || !/Bob/.test(members)) throw new Error(`the instance's members read: ${members}`);
    const pair = card.locator('figure.pair');
    // Results come once a second per pair (a 2 s window): a few points are drawn.
    const tSet = Date.now();
    // TEMPLATE_GF reports `difference`, and `r` once the brightness moves: plot the difference
    // (with the value select, when there is more than one to choose from).
    const keySel = card.locator('select');
    await until(async () => (await keySel.locator('option[value="difference"]').count()) > 0, 'the difference among the values', { timeout: 45_000 });
    if (await keySel.isVisible()) await keySel.selectOption('difference');
    await until(async () => Number(await pair.getAttribute('data-points')) >= 3, 'three points on the pair chart', { timeout: 45_000 });
    const tChart = Date.now();
    const caption = await pair.locator('figcaption').textContent();
    if (!/Alice & Bob|Bob & Alice/.test(caption)) throw new Error(`the pair chart is captioned ${caption}`);
    // TEMPLATE_GF reports r (plotted by default, when it is a number: the pictures vary) and difference.
    const key = await pair.getAttribute('data-key');
    const latest = await pair.locator('.latest').textContent();
    if (!['r', 'difference'].includes(key) || !new RegExp(`^${key} -?\\d+(\\.\\d+)?(e[+-]\\d+)?$`).test(latest)) throw new Error(`the chart plots ${key}, latest value: ${latest}`);
    // The line is on the canvas: pixels of the accent colour.
    const inked = await pair.locator('canvas').evaluate((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 120 && d[i] < 90 && d[i + 3] > 100) n += 1;
      return n;
    });
    if (inked < 20) throw new Error(`only ${inked} line pixels on the chart`);
    await exp.locator('#group-filters').scrollIntoViewIfNeeded();
    await exp.locator('#group-filters').screenshot({ path: path.join(ARTIFACTS, `${id}-group-filters-panel.png`) });
    await shot(exp, id, 'group-filters');
    // Re-entering the experiment: the chart comes back with the results so far (GET_GROUP_FILTERS_DATA's reply).
    const before = Number(await pair.getAttribute('data-points'));
    await exp.getByRole('button', { name: '← Sessions' }).click();
    await exp.getByRole('button', { name: 'Join experiment Browser test session' }).click();
    await until(async () => Number(await exp.locator('#group-filters figure.pair').getAttribute('data-points')) >= before, 'the chart to come back after re-entering');
    const tBack = Date.now();
    // The grid's pictures are back too (the next steps look at them).
    for (const name of ['Alice', 'Bob']) {
      await until(async () => (await tileOf(name).locator('video').evaluate((v) => v.videoWidth)) > 0, `the experimenter's tile of ${name} after re-entering`, { timeout: 45_000 });
    }
    const secs = (a, b) => ((b - a) / 1000).toFixed(1);
    console.log(`      (SET_GROUP_FILTERS ${secs(t0, tSet)} s, 3 points ${secs(tSet, tChart)} s later, chart back after re-entering ${secs(tChart, tBack)} s, videos ${secs(tBack, Date.now())} s)`);
  });

  await steps.run('a participant who refreshes the page rejoins the meeting', async (id) => {
    await alice.reload();
    await alice.locator('#meeting').waitFor({ state: 'visible', timeout: T });
    await waitDecoding(alice.locator('.seat[data-self="false"] video'), "Alice's view of Bob after the refresh");
    await waitDecoding(tileOf('Alice').locator('video'), "the experimenter's view of Alice after her refresh");
    await waitDecoding(bob.locator('.seat[data-self="false"] video'), "Bob's view of Alice after her refresh");
    await shot(alice, id, 'rejoined-alice');
  });

  await steps.run("live filter change: EDGE_OUTLINE on Alice shows in the experimenter's grid", async (id) => {
    const video = tileOf('Alice').locator('video');
    const before = await grab(video);
    if (before.dark > 0.5) throw new Error(`Alice's picture is dark before the filter: ${JSON.stringify(before)}`);
    await tileOf('Alice').getByRole('button', { name: 'Filters' }).click();
    await exp.locator('#panel-filters').getByLabel('Add a video filter').selectOption('EDGE_OUTLINE');
    await exp.locator('#panel-filters .filters-video').getByRole('button', { name: 'Add', exact: true }).click();
    await exp.getByRole('button', { name: 'Apply filters' }).click();
    const after = await until(
      async () => {
        const g = await grab(video);
        return g.dark > 0.7 && g.bright > 0.005 && g.sat < before.sat / 2 ? g : false;
      },
      "Alice's tile to turn into white edges on black",
      { timeout: T },
    );
    const bobNow = await grab(tileOf('Bob').locator('video'));
    if (bobNow.dark > 0.5) throw new Error(`Bob's picture changed too: ${JSON.stringify(bobNow)}`);
    // Everyone who sees Alice sees the filtered picture: Bob, and Alice's own echo.
    await until(async () => (await grab(bob.locator('.seat[data-self="false"] video'))).dark > 0.7, 'Bob to see Alice filtered', { timeout: T });
    await until(async () => (await grab(alice.locator('.seat[data-self="true"] video'))).dark > 0.7, "Alice's echo to be filtered", { timeout: T });
    await until(async () => (await tileOf('Alice').locator('.active-filters').textContent()).includes('EDGE_OUTLINE'), 'EDGE_OUTLINE among Alice’s active filters');
    writeJson('edge-outline-pixels.json', { before, after, bob: bobNow });
    await shot(exp, id, 'edge-outline');
    await shot(bob, id, 'edge-outline-seen-by-bob');
  });

  await steps.run("mute Bob's video: his tile turns black and says so", async (id) => {
    const tile = tileOf('Bob');
    await tile.getByRole('button', { name: 'Mute video of Bob' }).click();
    await until(async () => (await tile.getByRole('button', { name: 'Unmute video of Bob' }).getAttribute('aria-pressed')) === 'true', 'the mute button to be pressed');
    await until(async () => (await tile.locator('.mute-state').textContent()).includes('video muted'), 'the muted mark');
    const g = await until(
      async () => {
        const x = await grab(tile.locator('video'));
        return x.dark > 0.97 && x.width > 0 ? x : false;
      },
      "Bob's tile to turn black",
      { timeout: T },
    );
    writeJson('mute-pixels.json', g);
    await shot(exp, id, 'muted');
  });

  await steps.run('kick Bob with a reason: his page says so, the grid marks him', async (id) => {
    await tileOf('Bob').getByRole('button', { name: 'Kick' }).click();
    const dlg = exp.getByRole('dialog', { name: 'Kick Bob?' });
    await dlg.getByLabel('Reason').fill('Test over for you, thanks');
    await dlg.getByRole('button', { name: 'Kick' }).click();
    await bob.getByRole('heading', { name: 'You were removed from the experiment' }).waitFor({ timeout: T });
    const text = await bob.locator('#end-text').textContent();
    if (!text.includes('Test over for you, thanks')) throw new Error(`Bob's page says: ${text}`);
    await until(async () => (await tileOf('Bob').getAttribute('data-state')) === 'kicked', "Bob's tile to say kicked");
    await shot(bob, id, 'kicked-bob');
    await shot(exp, id, 'kicked-grid');
  });

  await steps.run('a kicked participant may join again; a banned one may not', async (id) => {
    await bob.getByRole('button', { name: 'Join again' }).click();
    await bob.getByRole('button', { name: 'Join the session' }).click();
    await bob.locator('#meeting').waitFor({ state: 'visible', timeout: T });
    await until(async () => (await tileOf('Bob').getAttribute('data-state')) === 'connected', "Bob's tile to say connected again", { timeout: 45_000 });
    await tileOf('Bob').getByRole('button', { name: 'Ban' }).click();
    const dlg = exp.getByRole('dialog', { name: 'Ban Bob?' });
    await dlg.getByLabel('Reason').fill('Broke the rules');
    await dlg.getByRole('button', { name: 'Ban' }).click();
    await bob.getByRole('heading', { name: 'You cannot take part any more' }).waitFor({ timeout: T });
    if (!(await bob.locator('#end-text').textContent()).includes('Broke the rules')) throw new Error('no ban reason on Bob’s page');
    if (await bob.getByRole('button', { name: 'Join again' }).isVisible()) throw new Error('a banned participant is offered to join again');
    await until(async () => (await tileOf('Bob').getAttribute('data-state')) === 'banned', "Bob's tile to say banned");
    await shot(bob, id, 'banned-bob');
  });

  await steps.run('stop: the experiment ends for everyone', async (id) => {
    await exp.getByRole('button', { name: 'Stop experiment' }).click();
    await exp.getByRole('dialog', { name: 'Stop the experiment?' }).getByRole('button', { name: 'Stop experiment' }).click();
    await until(async () => (await exp.locator('#experiment-status').textContent()) === 'Ended', 'the dashboard to say Ended');
    await alice.getByRole('heading', { name: 'The experiment has ended' }).waitFor({ timeout: T });
    await shot(alice, id, 'ended-alice');
    await shot(exp, id, 'ended-dashboard');
    await exp.getByRole('button', { name: '← Sessions' }).click();
    await until(async () => (await exp.locator('tr', { hasText: 'Browser test session' }).textContent()).includes('Ended'), 'the session list to say Ended');
    await shot(exp, id, 'sessions-after');
  });

  await steps.run("the recorded session's data downloads as one archive from the list", async (id) => {
    const button = exp.getByRole('button', { name: 'Download the data of Browser test session' });
    await button.waitFor({ timeout: T });
    await shot(exp, id, 'download-button');
    const [download] = await Promise.all([exp.waitForEvent('download', { timeout: T }), button.click()]);
    if (!/^[0-9a-f]{10}\.tar$/.test(download.suggestedFilename())) throw new Error(`download named ${download.suggestedFilename()}`);
    const tar = readFileSync(await download.path());
    // tar entry names sit at the start of each 512-byte header.
    const names = [];
    const bodies = {};
    for (let off = 0; off + 512 <= tar.length; ) {
      const name = tar.subarray(off, off + 100).toString('latin1').replace(/\0.*$/s, '');
      if (!name) break;
      names.push(name);
      const size = parseInt(tar.subarray(off + 124, off + 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
      bodies[name] = tar.subarray(off + 512, off + 512 + size);
      off += 512 + Math.ceil(size / 512) * 512;
    }
    const want = ['session.json', 'manifest.json', 'events.jsonl'];
    if (!want.every((w, i) => names[i]?.endsWith(`/${w}`))) throw new Error(`archive starts with ${names.slice(0, 3)}`);
    const media = names.filter((n) => n.endsWith('.webm') || n.endsWith('.mkv'));
    // Alice and Bob, raw and processed, video and audio: at least one file of each.
    for (const kind of ['raw_video', 'processed_video', 'raw_audio', 'processed_audio']) {
      if (!media.some((n) => n.includes(kind))) throw new Error(`no ${kind} file in ${media}`);
    }
    // Chromium's own streams, recorded: every file decodes without an error.
    for (const n of media) {
      const f = path.join(tmp, path.basename(n));
      writeFileSync(f, bodies[n]);
      const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries', 'stream=codec_name,nb_read_frames', '-of', 'csv=p=0', f], { encoding: 'utf8' });
      if (r.status !== 0 || r.stderr.trim()) throw new Error(`${n} does not decode cleanly: ${r.stderr}`);
      const [codec, frames] = r.stdout.trim().split(',');
      if (!['vp8', 'h264', 'opus'].includes(codec) || !(Number(frames) > 0)) throw new Error(`${n}: ${r.stdout}`);
    }
    const notices = await exp.locator('#notices, .notice, [role="status"], [role="alert"]').allTextContents();
    if (notices.some((t) => /Recording of participant/.test(t))) throw new Error(`a recording error was reported: ${notices}`);
  });

  await steps.run('duplicate the session to run it again, then delete the copy', async (id) => {
    await exp.getByRole('button', { name: 'Duplicate Browser test session' }).click();
    const row = exp.locator('tr', { hasText: 'Copy of Browser test session' });
    await until(async () => (await row.textContent()).includes('Draft'), 'the copy, a draft, in the list');
    await row.getByRole('link').click();
    await exp.getByRole('heading', { name: 'Edit session: Copy of Browser test session' }).waitFor({ timeout: T });
    const names = await exp.locator('.participant-card input[id$="-name"]').evaluateAll((l) => l.map((i) => i.value));
    if (names.join() !== 'Alice,Bob') throw new Error(`the copy has ${names}`);
    const link = await exp.getByRole('textbox', { name: 'Invite link for Alice' }).inputValue();
    if (link === invites.Alice) throw new Error('the copy reuses the invite link');
    await shot(exp, id, 'duplicate');
    await exp.getByRole('button', { name: 'Back to sessions' }).first().click();
    await exp.getByRole('button', { name: 'Delete Copy of Browser test session' }).click();
    await exp.getByRole('dialog', { name: /Delete/ }).getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await exp.locator('tr', { hasText: 'Copy of' }).count()) === 0, 'the copy to be gone');
  });

  await steps.run("the session editor puts a group filter into both members' group lists", async (id) => {
    const cards = await newDesign('Group filter design', ['Carol', 'Dan']);
    // Group filters are offered for the session only, never in a participant's own lists.
    const section = exp.locator('.group-section');
    const offered = await section.getByLabel('Add a group filter').locator('option').allTextContents();
    if (!offered.includes('MOTION_SYNC') || offered.includes('ROTATION')) throw new Error(`the group filter list offers ${offered}`);
    const own = await cards.nth(0).getByLabel('Add a video filter').locator('option').allTextContents();
    if (own.includes('MOTION_SYNC')) throw new Error("MOTION_SYNC is offered among a participant's own video filters");
    await section.getByLabel('Add a group filter').selectOption('MOTION_SYNC');
    await section.getByRole('button', { name: 'Add', exact: true }).click();
    const inst = section.locator('.group-instance[data-name="MOTION_SYNC"]');
    for (const n of ['Carol', 'Dan']) if (!(await inst.getByLabel(n, { exact: true }).isChecked())) throw new Error(`${n} is not a member by default`);
    const win = inst.getByLabel('Window ms');
    await win.fill('5000');
    await win.dispatchEvent('change');
    await exp.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await shot(exp, id, 'group-filter-in-editor');
    await exp.getByRole('button', { name: 'Create session' }).click();
    await exp.getByRole('heading', { name: 'Edit session: Group filter design' }).waitFor({ timeout: T });
    // The stored session, asked for on a connection of its own.
    const sid = new URL(exp.url()).hash.slice('#/edit/'.length);
    const stored = await exp.evaluate(
      async ({ password, sid }) => {
        const { Connection } = await import('/web/js/protocol.js');
        const c = new Connection({ role: 'experimenter', password });
        await c.connect();
        try {
          return await c.request('GET_SESSION', { session_id: sid }, 'SESSION');
        } finally {
          c.close();
        }
      },
      { password, sid },
    );
    const [a, b] = stored.participants.map((p) => p.video_group_filters);
    const same = a?.length === 1 && b?.length === 1 && a[0].id === b[0].id && JSON.stringify(a[0]) === JSON.stringify(b[0]);
    if (!same || a[0].name !== 'MOTION_SYNC' || a[0].config.window_ms?.value !== 5000) throw new Error(`video_group_filters: ${JSON.stringify([a, b])}`);
    if (stored.participants.some((p) => p.audio_group_filters.length)) throw new Error('an audio group filter was stored');
    // The editor of the saved session shows the instance again, read from the members' lists.
    const again = exp.locator(`.group-section .group-instance[data-id="${a[0].id}"]`);
    if ((await again.getByLabel('Window ms').inputValue()) !== '5000') throw new Error('the saved window is not shown');
    for (const n of ['Carol', 'Dan']) if (!(await again.getByLabel(n, { exact: true }).isChecked())) throw new Error(`${n} is not shown as a member`);
    await exp.getByRole('button', { name: 'Back to sessions' }).first().click();
    await exp.getByRole('button', { name: 'Delete Group filter design' }).click();
    await exp.getByRole('dialog', { name: /Delete/ }).getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await exp.locator('tr', { hasText: 'Group filter design' }).count()) === 0, 'the design to be gone');
  });

  await steps.run('connection loss is shown; the dashboard reconnects when the server is back', async (id) => {
    const port = server.port;
    const t0 = Date.now();
    await server.kill();
    await exp.locator('#banner').waitFor({ state: 'visible', timeout: 45_000 });
    const noticed = Date.now() - t0;
    const text = await exp.locator('#banner').textContent();
    if (!/connection to the server was lost/i.test(text)) throw new Error(`the banner says: ${text}`);
    await shot(exp, id, 'connection-lost');
    server = await startServer({ sessionsDir, password, port });
    await exp.locator('#banner').waitFor({ state: 'hidden', timeout: 45_000 });
    await until(async () => (await exp.locator('#connection-state').textContent()) === 'Connected', 'the dashboard to say Connected');
    await exp.locator('tr', { hasText: 'Browser test session' }).waitFor({ timeout: T });
    console.log(`      (loss noticed after ${(noticed / 1000).toFixed(1)} s, reconnected ${((Date.now() - t0 - noticed) / 1000).toFixed(1)} s later)`);
    await shot(exp, id, 'reconnected');
  });
} catch (e) {
  console.log(`FAIL  setup: ${e.stack ?? e}`);
  steps.results.push({ name: 'setup', status: 'failed', error: e });
}

writeFileSync(path.join(ARTIFACTS, 'browser-console.log'), consoleLog.join('\n') + '\n');
if (steps.failed && server) writeFileSync(path.join(ARTIFACTS, 'server-stderr.log'), server.stderr.join(''));
clearTimeout(watchdog);
await cleanup();
const { passed, failed, skipped } = steps.summary();
const setupFailed = steps.results.some((r) => r.name === 'setup') ? 1 : 0;
console.log(`browser tests took ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${path.relative(process.cwd(), ARTIFACTS) || ARTIFACTS}`);
console.log(`${passed} passed, ${failed + setupFailed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed + setupFailed + skipped ? 1 : 0);
