// Support for the browser tests: the real server as a child process, headless Chromium with a
// fake camera, steps with screenshots, and checks that video really decodes.

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = process.env.EXPHUB_E2E_ARTIFACTS ?? path.join(ROOT, 'tests/artifacts/browser');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const log = (...a) => console.log(...a);

/**
 * Runs this script again inside a new network namespace that has only the loopback interface
 * (as root, `unshare -n`), so that the server and Chromium can only talk over 127.0.0.1.
 * Returns the child's exit code, or null when the namespace cannot be made (then run here).
 */
export function reexecInLoopbackNamespace(script) {
  if (process.env.EXPHUB_E2E_NETNS || process.env.EXPHUB_E2E_NO_NETNS) return null;
  try {
    execFileSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    console.log('(no network namespace available: running on the host\'s loopback)');
    return null;
  }
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && ip route add 224.0.0.0/4 dev lo && exec "$0" "$@"', process.execPath, script, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, EXPHUB_E2E_NETNS: '1' },
  });
  return r.status ?? 1;
}

/** A temporary directory, removed by cleanup(). */
export function tempDir(tag) {
  return mkdtempSync(path.join(tmpdir(), `exphub-e2e-${tag}-`));
}

/** A y4m for Chromium's fake camera: ffmpeg's moving test pattern, 640x480 at 30 fps, 2 s (looped). */
export function makeCameraFile(dir) {
  const file = path.join(dir, 'camera.y4m');
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=30', '-t', '2', '-pix_fmt', 'yuv420p', file], {
    stdio: 'inherit',
    timeout: 60_000,
  });
  return file;
}

/** Starts the real server on 127.0.0.1 with a free port; resolves with {base, stop()}. */
export async function startServer({ sessionsDir, password, port = 0 }) {
  const bin = process.env.EXPHUB_BIN ?? path.join(ROOT, 'target/debug/exphub');
  if (!existsSync(bin)) throw new Error(`${bin} not found: build it first (cargo build --bin exphub)`);
  const child = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', String(port), '--sessions-dir', sessionsDir], {
    env: { ...process.env, EXPHUB_EXPERIMENTER_PASSWORD: password, EXPHUB_LOG: process.env.EXPHUB_LOG ?? 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = [];
  child.stderr.on('data', (d) => {
    stderr.push(d.toString());
    if (process.env.EXPHUB_E2E_VERBOSE) process.stderr.write(`[server] ${d}`);
  });
  const base = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out} ${stderr.join('')}`)), 30_000);
    child.stdout.on('data', (d) => {
      out += d.toString();
      const m = out.match(/serving on (http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${stderr.join('')}`));
    });
  });
  return {
    base,
    stderr,
    port: Number(new URL(base).port),
    /** Kills the server at once (SIGKILL), as a crash would. */
    async kill() {
      if (child.exitCode != null) return;
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode != null) return;
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r();
        }, 5000);
        child.on('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    },
  };
}

/** Headless Debian Chromium with a fake camera and microphone, loopback ICE allowed. */
export async function launchBrowser(cameraFile) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-video-capture=${cameraFile}`,
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-renderer-backgrounding',
      '--disable-background-timer-throttling',
      '--disable-backgrounding-occluded-windows',
      // Host candidates as plain addresses (no mDNS names, no multicast queries).
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
}

/** Runs named steps in order; after the first failure the rest are skipped. */
export class Steps {
  constructor() {
    this.results = [];
    this.failed = false;
    this.n = 0;
    mkdirSync(ARTIFACTS, { recursive: true });
  }

  async run(name, fn) {
    this.n += 1;
    const id = String(this.n).padStart(2, '0');
    if (this.failed) {
      this.results.push({ name, status: 'skipped' });
      log(`skip  ${id} ${name}`);
      return;
    }
    const t0 = Date.now();
    try {
      await fn(id);
      const ms = Date.now() - t0;
      this.results.push({ name, status: 'passed', ms });
      log(`ok    ${id} ${name} (${(ms / 1000).toFixed(1)} s)`);
    } catch (e) {
      this.failed = true;
      this.results.push({ name, status: 'failed', error: e });
      log(`FAIL  ${id} ${name}\n      ${String(e.stack ?? e).split('\n').slice(0, 6).join('\n      ')}`);
      if (this.onFail) await this.onFail(id, name).catch((err) => log(`      (could not save failure artefacts: ${err.message})`));
    }
  }

  summary() {
    const count = (s) => this.results.filter((r) => r.status === s).length;
    return { passed: count('passed'), failed: count('failed'), skipped: count('skipped') };
  }
}

/** Saves a screenshot of a page as tests/artifacts/browser/<id>-<name>.png. */
export async function shot(page, id, name) {
  const file = path.join(ARTIFACTS, `${id}-${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

/** Polls `fn` until it returns a truthy value; throws `what` after `timeout` ms. */
export async function until(fn, what, { timeout = 30_000, interval = 250 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout / 1000} s waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** {width, height, frames} of a <video>: frames is the number of frames the page has shown. */
export function videoState(locator) {
  return locator.evaluate((v) => ({
    width: v.videoWidth,
    height: v.videoHeight,
    frames: v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
    paused: v.paused,
  }));
}

/** Waits until a <video> has a picture and shows new frames (decoding, not merely present). */
export async function waitDecoding(locator, what, { timeout = 45_000, frames = 8 } = {}) {
  await locator.waitFor({ state: 'attached', timeout });
  let first = null;
  return until(
    async () => {
      const s = await videoState(locator);
      if (!s.width) return false;
      first ??= s;
      return s.frames - first.frames >= frames ? s : false;
    },
    `${what} to decode video`,
    { timeout },
  );
}

/**
 * A canvas grab of a <video>: the picture downscaled to 160x120 and measured. dark / bright:
 * share of pixels with luma below 50 / above 180; sat: mean of max(r,g,b) - min(r,g,b).
 */
export function grab(locator) {
  return locator.evaluate((v) => {
    const c = document.createElement('canvas');
    c.width = 160;
    c.height = 120;
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(v, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let dark = 0;
    let bright = 0;
    let sat = 0;
    let luma = 0;
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const [r, gg, b] = [d[i], d[i + 1], d[i + 2]];
      const y = 0.299 * r + 0.587 * gg + 0.114 * b;
      luma += y;
      if (y < 50) dark += 1;
      if (y > 180) bright += 1;
      sat += Math.max(r, gg, b) - Math.min(r, gg, b);
    }
    const r3 = (x) => Math.round(x * 1000) / 1000;
    return { dark: r3(dark / n), bright: r3(bright / n), sat: r3(sat / n), luma: r3(luma / n), width: v.videoWidth };
  });
}

export function writeJson(name, value) {
  writeFileSync(path.join(ARTIFACTS, name), JSON.stringify(value, null, 2));
}

export function remove(dir) {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}
