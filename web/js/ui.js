// Small DOM helpers shared by both pages: element building, notices, dialogs, formatting.

/**
 * Builds an element: h('button', {class: 'x', onclick: f, 'aria-label': 'Close'}, 'text', child).
 * Attributes starting with "on" become listeners; `dataset`, `style` take objects; null/false
 * attributes are left out; children may be strings, nodes, arrays or null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/**
 * Shows a notice in the page's live region (#notices): kind "error" stays until closed,
 * others fade after a few seconds. Screen readers announce it.
 */
export function notify(text, kind = 'info') {
  const box = document.getElementById('notices');
  if (!box) return;
  const item = h(
    'div',
    { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, text),
    h('button', { type: 'button', class: 'icon', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'),
  );
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 5000);
  else while (box.children.length > 4) box.firstElementChild.remove();
  return item;
}

/** Asks for a line of text in a modal dialog; resolves with the text, or null if cancelled. */
export function prompt(title, { label = 'Reason', value = '', confirm = 'OK', danger = false } = {}) {
  return new Promise((resolve) => {
    const input = h('input', { type: 'text', value, required: true, id: 'prompt-input' });
    const dlg = h(
      'dialog',
      { class: 'prompt', 'aria-labelledby': 'prompt-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'prompt-title' }, title),
        h('label', { for: 'prompt-input' }, label),
        input,
        h(
          'div',
          { class: 'row end' },
          h('button', { type: 'button', onclick: () => dlg.close('') }, 'Cancel'),
          h('button', { type: 'submit', class: danger ? 'danger' : 'primary', value: 'ok' }, confirm),
        ),
      ),
    );
    dlg.addEventListener('close', () => {
      const ok = dlg.returnValue === 'ok';
      dlg.remove();
      resolve(ok ? input.value.trim() : null);
    });
    document.body.append(dlg);
    dlg.showModal();
    input.select();
  });
}

/** Asks yes or no in a modal dialog. */
export function confirmDialog(title, text, { confirm = 'OK', danger = false } = {}) {
  return new Promise((resolve) => {
    const dlg = h(
      'dialog',
      { class: 'prompt', 'aria-labelledby': 'confirm-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, title),
        h('p', {}, text),
        h(
          'div',
          { class: 'row end' },
          h('button', { type: 'submit', value: '' }, 'Cancel'),
          h('button', { type: 'submit', class: danger ? 'danger' : 'primary', value: 'ok' }, confirm),
        ),
      ),
    );
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue === 'ok');
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Copies text; falls back to selecting it in `input` when the clipboard is not available. */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (input) {
      input.focus();
      input.select();
      try {
        return document.execCommand('copy');
      } catch {
        return false;
      }
    }
    return false;
  }
}

/** "14:05" for an epoch-ms time (today), else a short date and time. */
export function fmtTime(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

/** "1:05:09" / "5:09" for a duration in ms. */
export function fmtDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/**
 * Plays a stream in a <video>. If the browser refuses to play sound without a click, the video
 * plays muted and `onBlocked` is called (to offer a button that unmutes it).
 */
export async function play(video, stream, { muted = false, onBlocked } = {}) {
  if (video.srcObject !== stream) video.srcObject = stream;
  video.muted = muted;
  try {
    await video.play();
  } catch (e) {
    if (e.name === 'NotAllowedError' && !muted) {
      video.muted = true;
      onBlocked?.();
      try {
        await video.play();
      } catch {
        /* no frames yet: the autoplay attribute starts it later */
      }
    }
  }
}

/** Sets a button's pressed state (a toggle button) and its text. */
export function setPressed(btn, pressed, text) {
  btn.setAttribute('aria-pressed', pressed ? 'true' : 'false');
  if (text) btn.textContent = text;
}
