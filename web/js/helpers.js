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
