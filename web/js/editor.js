// The session editor (title, participants, their place on the canvas, their filters) and the
// filter editor it shares with the live view.

import { h, fill, copyText, notify } from './ui.js';
import { CANVAS, newParticipant, inviteLink, uuid4 } from './protocol.js';
import { applyGroupInstances, gridLayout, groupInstancesOf, paramLabel } from './helpers.js';

let seq = 0;
const uid = (p) => `${p}-${++seq}`;
const clone = (v) => JSON.parse(JSON.stringify(v));

/**
 * The filters the server offers: FILTERS_CONFIG ({TEST: [...], SESSION: [...]}, each a
 * FilterDict whose config holds the parameter schemas) plus the descriptions of /web/filters.json.
 */
export class FilterCatalogue {
  constructor(config, infos = []) {
    this.session = config?.SESSION ?? [];
    this.test = config?.TEST ?? [];
    this.info = new Map(infos.map((i) => [i.name, i]));
  }

  all() {
    return [...this.session, ...this.test];
  }

  entry(name) {
    return this.all().find((f) => f.name === name);
  }

  description(name) {
    return this.info.get(name)?.description ?? '';
  }

  /** Filters of a participant's own lists that can run on `kind` ("video" or "audio"). */
  forKind(kind) {
    return this.all().filter((f) => !f.groupFilter && (f.channel === kind || f.channel === 'both'));
  }

  /** Group filters (for the participants' group lists). */
  groups() {
    return this.all().filter((f) => f.groupFilter);
  }

  /** A new instance of a filter: a fresh id and the catalogue's defaults. */
  instantiate(name) {
    const e = this.entry(name);
    if (!e) throw new Error(`unknown filter ${name}`);
    return { ...clone(e), id: uuid4() };
  }
}

/**
 * One input for parameter `key` of filter `f` (its catalogue entry `entry`, edited in place):
 * a number input with the schema's min, max and step, or a choice list; a parameter that names
 * another filter shows which one of `linkable` it uses. Calls onChange() after a change.
 */
export function paramInput(f, key, entry, { idPrefix, onChange, linkable = [] }) {
  const id = `${idPrefix}-${f.id}-${key}`;
  if (Array.isArray(entry?.defaultValue)) {
    if (entry.requiresOtherFilter) {
      const needs = entry.defaultValue[0];
      const linked = linkable.find((g) => g.id === entry.value);
      return h(
        'p',
        { class: 'param linked' },
        `${paramLabel(key)}: uses `,
        linked ? h('strong', {}, linked.name) : h('em', {}, `no ${needs} filter`),
        linked ? null : ' (add one)',
      );
    }
    const sel = h(
      'select',
      {
        id,
        onchange: () => {
          entry.value = sel.value;
          onChange?.();
        },
      },
      entry.defaultValue.map((o) => h('option', { value: o, selected: o === entry.value }, o)),
    );
    return h('div', { class: 'param' }, h('label', { for: id }, paramLabel(key)), sel);
  }
  if (entry && typeof entry.min === 'number') {
    const input = h('input', {
      id,
      type: 'number',
      min: entry.min,
      max: entry.max,
      step: entry.step,
      value: entry.value ?? entry.defaultValue,
      required: true,
      'aria-describedby': `${id}-range`,
      onchange: () => {
        if (!input.checkValidity() || input.value === '') {
          input.reportValidity();
          return;
        }
        entry.value = Number(input.value);
        onChange?.();
      },
    });
    return h(
      'div',
      { class: 'param' },
      h('label', { for: id }, paramLabel(key)),
      input,
      h('small', { id: `${id}-range`, class: 'muted' }, `${entry.min} to ${entry.max}, step ${entry.step}`),
    );
  }
  return h('p', { class: 'param' }, `${paramLabel(key)}: ${JSON.stringify(entry)}`);
}

/**
 * Edits two filter lists in place ({video: [...], audio: [...]}); calls onChange() after each
 * change. Each filter shows its description and one input per parameter: a number input with
 * the schema's min, max and step, or a choice list.
 */
export function filterEditor(lists, catalogue, onChange, { idPrefix = uid('filters') } = {}) {
  const root = h('div', { class: 'filter-editor' });
  const changed = () => {
    render();
    onChange?.();
  };

  function addFilter(kind, name) {
    const f = catalogue.instantiate(name);
    lists[kind].push(f);
    // A parameter that needs another filter (DISPLAY_SPEAKING_TIME needs SPEAKING_TIME) gets
    // an instance of it in the list of that filter's channel, linked by id.
    for (const entry of Object.values(f.config ?? {})) {
      if (entry?.requiresOtherFilter && Array.isArray(entry.defaultValue)) {
        const needs = entry.defaultValue[0];
        const needEntry = catalogue.entry(needs);
        if (!needEntry) continue;
        const home = needEntry.channel === 'audio' ? 'audio' : 'video';
        let other = lists[home].find((g) => g.name === needs);
        if (!other) {
          other = catalogue.instantiate(needs);
          lists[home].push(other);
        }
        entry.value = other.id;
      }
    }
    changed();
  }

  function section(kind) {
    const title = kind === 'video' ? 'Video filters' : 'Audio filters';
    const selId = `${idPrefix}-add-${kind}`;
    const list = lists[kind];
    const options = catalogue.forKind(kind);
    const sel = h(
      'select',
      { id: selId },
      h('option', { value: '' }, '— choose a filter —'),
      options.map((f) => h('option', { value: f.name, title: catalogue.description(f.name) }, f.name)),
    );
    return h(
      'fieldset',
      { class: `filters filters-${kind}` },
      h('legend', {}, title),
      list.length
        ? h(
            'ol',
            { class: 'filter-list' },
            list.map((f, i) =>
              h(
                'li',
                { class: 'filter', dataset: { name: f.name } },
                h(
                  'div',
                  { class: 'row' },
                  h('strong', {}, f.name),
                  h('span', { class: 'grow' }),
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'icon',
                      'aria-label': `Move ${f.name} up`,
                      disabled: i === 0,
                      onclick: () => {
                        [list[i - 1], list[i]] = [list[i], list[i - 1]];
                        changed();
                      },
                    },
                    '↑',
                  ),
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'small',
                      'aria-label': `Remove ${f.name} from ${title.toLowerCase()}`,
                      onclick: () => {
                        list.splice(i, 1);
                        changed();
                      },
                    },
                    'Remove',
                  ),
                ),
                catalogue.description(f.name) ? h('p', { class: 'muted desc' }, catalogue.description(f.name)) : null,
                h(
                  'div',
                  { class: 'params' },
                  Object.entries(f.config ?? {}).map(([k, e]) =>
                    paramInput(f, k, e, { idPrefix, onChange, linkable: [...lists.video, ...lists.audio] }),
                  ),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'None.'),
      h(
        'div',
        { class: 'row add-filter' },
        h('label', { for: selId }, `Add ${kind === 'audio' ? 'an' : 'a'} ${kind} filter`),
        sel,
        h(
          'button',
          {
            type: 'button',
            onclick: () => {
              if (sel.value) addFilter(kind, sel.value);
              else sel.focus();
            },
          },
          'Add',
        ),
      ),
      h('p', { class: 'muted desc add-desc', 'aria-live': 'polite' }),
    );
  }

  function render() {
    const active = document.activeElement?.id;
    fill(root, section('video'), section('audio'));
    // Show the description of the filter chosen in each "add" list.
    for (const sel of root.querySelectorAll('.add-filter select')) {
      const out = sel.closest('fieldset').querySelector('.add-desc');
      sel.addEventListener('change', () => (out.textContent = catalogue.description(sel.value)));
    }
    if (active) document.getElementById(active)?.focus();
  }
  render();
  return root;
}

/** A colour per participant, shared by its box on the canvas and its card. */
const hueOf = (i) => (210 + i * 67) % 360;

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/**
 * The session editor. `session` is a SessionDict (id "" for a new one); it is edited on a copy.
 * onSave(copy) must resolve with the stored session (ids assigned), which the editor then shows
 * (with the invite links). onCancel() leaves.
 */
export function sessionEditor(session, { catalogue, origin, onSave, onCancel, onDuplicate }) {
  const s = clone(session);
  const isNew = !s.id;
  const readOnly = s.start_time > 0;
  const els = new Map(); // participant object → {box, inputs}
  // A new session keeps its participants in a grid until a box is placed by hand.
  let autoLayout = isNew;
  const root = h('section', { class: 'editor', 'aria-labelledby': 'editor-title' });

  const title = h('input', { id: 'session-title', type: 'text', value: s.title, required: true, maxlength: 200 });
  const desc = h('textarea', { id: 'session-description', rows: 3 }, s.description);
  const record = h('input', { id: 'session-record', type: 'checkbox', checked: s.record });
  const date = h('input', { id: 'session-date', type: 'datetime-local', value: toLocalInput(s.date) });
  const minutes = h('input', {
    id: 'session-duration',
    type: 'number',
    min: 1,
    max: 1440,
    step: 1,
    value: Math.max(1, Math.round((s.time_limit || 3600000) / 60000)),
  });

  const stage = h('div', {
    class: 'stage designer',
    role: 'group',
    'aria-label': `Layout canvas, ${CANVAS.width} by ${CANVAS.height}. Focus a participant and use the arrow keys to move it, Shift and the arrow keys to resize it.`,
  });
  const plist = h('div', { class: 'participants' });
  // The design's group filter instances, members as participant objects (so that removing a
  // participant drops it); written back into the participants' group lists on save.
  const groups = groupInstancesOf(s.participants).map((g) => ({ ...g, members: new Set(g.members.map((i) => s.participants[i])) }));
  const groupBox = h('div', { class: 'group-editor' });
  const gid = uid('group');
  const pname = (p, i) => p.participant_name || `Participant ${i + 1}`;

  function groupCard(g, index) {
    const desc = catalogue.description(g.name);
    const n = s.participants.filter((p) => g.members.has(p)).length;
    return h(
      'li',
      { class: 'filter group-instance', dataset: { name: g.name, id: g.id } },
      h(
        'div',
        { class: 'row' },
        h('strong', {}, g.name),
        h('span', { class: 'muted' }, `${g.channel}, over its members`),
        h('span', { class: 'grow' }),
        h(
          'button',
          {
            type: 'button',
            class: 'small',
            'aria-label': `Remove group filter ${g.name}`,
            onclick: () => {
              groups.splice(index, 1);
              renderGroups();
            },
          },
          'Remove',
        ),
      ),
      desc ? h('p', { class: 'muted desc' }, desc) : null,
      h('div', { class: 'params' }, Object.entries(g.config ?? {}).map(([k, e]) => paramInput(g, k, e, { idPrefix: gid, linkable: groups }))),
      h(
        'fieldset',
        { class: 'members' },
        h('legend', {}, 'Members'),
        s.participants.map((p, i) => {
          const id = `${gid}-${g.id}-member-${i}`;
          return h(
            'div',
            { class: 'check' },
            h('input', {
              id,
              type: 'checkbox',
              checked: g.members.has(p),
              onchange: (e) => {
                if (e.target.checked) g.members.add(p);
                else g.members.delete(p);
                renderGroups();
              },
            }),
            h('label', { for: id }, pname(p, i)),
          );
        }),
        n < 2 ? h('p', { class: 'muted' }, n ? 'One member: no pair to measure.' : 'No members: it is not saved.') : null,
      ),
    );
  }

  function renderGroups() {
    if (readOnly) {
      const names = (g) => s.participants.map((p, i) => (g.members.has(p) ? pname(p, i) : null)).filter(Boolean);
      const text = groups.map((g) => `${g.name} (${names(g).join(', ')})`);
      fill(groupBox, h('p', {}, text.join('; ') || 'None.'));
      return;
    }
    const active = document.activeElement?.id;
    const sel = h(
      'select',
      { id: `${gid}-add` },
      h('option', { value: '' }, '— choose a group filter —'),
      catalogue.groups().map((f) => h('option', { value: f.name, title: catalogue.description(f.name) }, f.name)),
    );
    fill(
      groupBox,
      groups.length ? h('ol', { class: 'filter-list' }, groups.map(groupCard)) : h('p', { class: 'muted' }, 'None.'),
      h(
        'div',
        { class: 'row add-filter' },
        h('label', { for: sel.id }, 'Add a group filter'),
        sel,
        h(
          'button',
          {
            type: 'button',
            onclick: () => {
              if (!sel.value) return sel.focus();
              // Everyone is a member at first; untick who is not.
              groups.push({ ...catalogue.instantiate(sel.value), groupFilter: true, members: new Set(s.participants) });
              renderGroups();
            },
          },
          'Add',
        ),
      ),
    );
    if (active) document.getElementById(active)?.focus();
  }

  function geometry(p) {
    const { box, inputs } = els.get(p) ?? {};
    if (box) {
      box.style.left = `${(100 * p.position.x) / CANVAS.width}%`;
      box.style.top = `${(100 * p.position.y) / CANVAS.height}%`;
      box.style.width = `${(100 * p.size.width) / CANVAS.width}%`;
      box.style.height = `${(100 * p.size.height) / CANVAS.height}%`;
      box.style.zIndex = String(10 + Number(p.position.z || 0));
      box.setAttribute(
        'aria-label',
        `${p.participant_name || 'Participant'}: x ${p.position.x}, y ${p.position.y}, width ${p.size.width}, height ${p.size.height}`,
      );
      box.querySelector('.box-name').textContent = p.participant_name || 'Participant';
    }
    if (inputs) {
      inputs.x.value = p.position.x;
      inputs.y.value = p.position.y;
      inputs.w.value = p.size.width;
      inputs.h.value = p.size.height;
    }
  }

  function setGeometry(p, x, y, w, hh) {
    autoLayout = false;
    w = clamp(Math.round(w), 40, CANVAS.width);
    hh = clamp(Math.round(hh), 30, CANVAS.height);
    p.size.width = w;
    p.size.height = hh;
    p.position.x = clamp(Math.round(x), 0, CANVAS.width - w);
    p.position.y = clamp(Math.round(y), 0, CANVAS.height - hh);
    geometry(p);
  }

  function makeBox(p) {
    const handle = h('span', { class: 'resize', 'aria-hidden': 'true' });
    const box = h(
      'div',
      { class: 'box', tabindex: readOnly ? -1 : 0, role: 'button', 'aria-roledescription': 'movable box' },
      h('span', { class: 'box-name' }),
      handle,
    );
    let drag = null;
    box.addEventListener('pointerdown', (e) => {
      if (readOnly || e.button !== 0) return;
      e.preventDefault();
      box.focus();
      box.setPointerCapture(e.pointerId);
      const scale = CANVAS.width / stage.getBoundingClientRect().width;
      drag = {
        resize: e.target === handle,
        x0: e.clientX,
        y0: e.clientY,
        p0: { ...p.position },
        s0: { ...p.size },
        scale,
      };
      box.classList.add('dragging');
    });
    box.addEventListener('pointermove', (e) => {
      if (!drag) return;
      const dx = (e.clientX - drag.x0) * drag.scale;
      const dy = (e.clientY - drag.y0) * drag.scale;
      if (drag.resize) setGeometry(p, drag.p0.x, drag.p0.y, drag.s0.width + dx, drag.s0.height + dy);
      else setGeometry(p, drag.p0.x + dx, drag.p0.y + dy, drag.s0.width, drag.s0.height);
    });
    const end = () => {
      drag = null;
      box.classList.remove('dragging');
    };
    box.addEventListener('pointerup', end);
    box.addEventListener('pointercancel', end);
    box.addEventListener('keydown', (e) => {
      if (readOnly) return;
      const step = e.altKey ? 1 : 10;
      const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
      if (!d) return;
      e.preventDefault();
      if (e.shiftKey) setGeometry(p, p.position.x, p.position.y, p.size.width + d[0], p.size.height + d[1]);
      else setGeometry(p, p.position.x + d[0], p.position.y + d[1], p.size.width, p.size.height);
    });
    return box;
  }

  function numberInput(id, label, value, onchange) {
    const input = h('input', { id, type: 'number', step: 1, value, disabled: readOnly, onchange });
    return [input, h('div', { class: 'num' }, h('label', { for: id }, label), input)];
  }

  function participantCard(p, index) {
    const base = uid('p');
    const name = h('input', {
      id: `${base}-name`,
      type: 'text',
      value: p.participant_name,
      required: true,
      disabled: readOnly,
      oninput: () => {
        p.participant_name = name.value;
        geometry(p);
        renderGroups();
        heading.textContent = name.value || `Participant ${index + 1}`;
      },
    });
    const heading = h('h4', {}, p.participant_name || `Participant ${index + 1}`);
    const apply = () =>
      setGeometry(p, Number(x.value), Number(y.value), Number(w.value), Number(hh.value));
    const [x, xBox] = numberInput(`${base}-x`, 'x', p.position.x, apply);
    const [y, yBox] = numberInput(`${base}-y`, 'y', p.position.y, apply);
    const [w, wBox] = numberInput(`${base}-w`, 'Width', p.size.width, apply);
    const [hh, hBox] = numberInput(`${base}-h`, 'Height', p.size.height, apply);
    els.get(p).inputs = { x, y, w, h: hh };
    const local = h('input', {
      id: `${base}-local`,
      type: 'checkbox',
      checked: p.local_stream,
      disabled: readOnly,
      onchange: () => (p.local_stream = local.checked),
    });
    let invite;
    if (p.id) {
      const link = inviteLink(origin, s.id, p.id);
      const field = h('input', { id: `${base}-invite`, type: 'text', readonly: true, value: link, class: 'invite' });
      invite = h(
        'div',
        { class: 'invite-row' },
        h('label', { for: `${base}-invite` }, `Invite link for ${p.participant_name || 'this participant'}`),
        h(
          'div',
          { class: 'row' },
          field,
          h(
            'button',
            {
              type: 'button',
              'aria-label': `Copy invite link for ${p.participant_name}`,
              onclick: async () => {
                if (await copyText(link, field)) notify(`Invite link for ${p.participant_name} copied.`);
                else notify('Select the link and copy it by hand.', 'warn');
              },
            },
            'Copy',
          ),
        ),
      );
    } else {
      invite = h('p', { class: 'muted' }, 'The invite link appears once the session is saved.');
    }
    const lists = { video: p.video_filters, audio: p.audio_filters };
    const card = h(
      'article',
      { class: 'participant-card', dataset: { index } },
      h(
        'div',
        { class: 'row' },
        heading,
        h('span', { class: 'grow' }),
        readOnly
          ? null
          : h(
              'button',
              {
                type: 'button',
                class: 'small danger',
                'aria-label': `Remove ${p.participant_name || 'participant'}`,
                onclick: () => {
                  s.participants.splice(index, 1);
                  renderParticipants();
                },
              },
              'Remove',
            ),
      ),
      h('div', { class: 'field' }, h('label', { for: `${base}-name` }, 'Name'), name),
      h('div', { class: 'row geometry' }, xBox, yBox, wBox, hBox),
      h(
        'div',
        { class: 'check' },
        local,
        h('label', { for: `${base}-local` }, 'Shows own camera unprocessed (instead of the filtered picture)'),
      ),
      invite,
      readOnly
        ? h('p', {}, `Filters: ${[...lists.video, ...lists.audio].map((f) => f.name).join(', ') || 'none'}`)
        : h('details', { class: 'filters-box', open: lists.video.length + lists.audio.length > 0 },
        h('summary', {}, `Filters (${lists.video.length + lists.audio.length})`),
        filterEditor(lists, catalogue, () => {
          const sum = root.querySelector(`[data-index="${index}"] .filters-box > summary`);
          if (sum) sum.textContent = `Filters (${lists.video.length + lists.audio.length})`;
        }),
      ),
    );
    card.style.setProperty('--hue', String(hueOf(index)));
    return card;
  }

  function renderParticipants() {
    els.clear();
    fill(stage);
    s.participants.forEach((p, i) => {
      const box = makeBox(p);
      box.style.setProperty('--hue', String(hueOf(i)));
      els.set(p, { box });
      stage.append(box);
    });
    fill(
      plist,
      s.participants.length ? s.participants.map((p, i) => participantCard(p, i)) : h('p', { class: 'muted' }, 'No participants yet.'),
    );
    for (const p of s.participants) geometry(p);
    renderGroups();
  }

  const addBtn = h(
    'button',
    {
      type: 'button',
      onclick: () => {
        const n = s.participants.length + 1;
        const slots = gridLayout(n);
        s.participants.push(newParticipant(`Participant ${n}`, slots[n - 1].position, slots[n - 1].size));
        if (autoLayout) {
          slots.forEach((g, i) => {
            Object.assign(s.participants[i].position, g.position);
            Object.assign(s.participants[i].size, g.size);
          });
        }
        renderParticipants();
        plist.querySelector('.participant-card:last-child input[type=text]')?.focus();
      },
    },
    'Add participant',
  );
  const arrangeBtn = h(
    'button',
    {
      type: 'button',
      onclick: () => {
        gridLayout(s.participants.length).forEach((g, i) => {
          Object.assign(s.participants[i].position, g.position);
          Object.assign(s.participants[i].size, g.size);
        });
        s.participants.forEach(geometry);
      },
    },
    'Arrange in a grid',
  );

  const saveBtn = h('button', { type: 'submit', class: 'primary' }, isNew ? 'Create session' : 'Save session');
  const form = h(
    'form',
    {
      novalidate: false,
      onsubmit: async (e) => {
        e.preventDefault();
        if (readOnly) return;
        if (!form.reportValidity()) return;
        s.title = title.value.trim();
        s.description = desc.value;
        s.record = record.checked;
        s.date = date.value ? new Date(date.value).getTime() : 0;
        s.time_limit = Math.round(Number(minutes.value || 60) * 60000);
        saveBtn.disabled = true;
        try {
          const out = clone(s);
          const members = (g) => s.participants.map((p, i) => (g.members.has(p) ? i : -1)).filter((i) => i >= 0);
          out.participants = applyGroupInstances(out.participants, groups.map((g) => ({ ...g, members: members(g) })));
          const saved = await onSave(out);
          if (saved) root.replaceWith(sessionEditor(saved, { catalogue, origin, onSave, onCancel, onDuplicate }));
        } finally {
          saveBtn.disabled = false;
        }
      },
    },
    h(
      'div',
      { class: 'row' },
      h('h2', { id: 'editor-title' }, isNew ? 'New session' : readOnly ? `Session: ${s.title}` : `Edit session: ${s.title}`),
      h('span', { class: 'grow' }),
      h('button', { type: 'button', onclick: () => onCancel() }, 'Back to sessions'),
    ),
    readOnly
      ? h('p', { class: 'notice notice-warn' }, 'This session has run and can no longer be changed. Duplicate it to run it again.',
          onDuplicate ? h('button', { type: 'button', onclick: () => onDuplicate(s) }, 'Duplicate') : null)
      : null,
    h(
      'fieldset',
      { class: 'session-fields', disabled: readOnly },
      h('legend', {}, 'Session'),
      h('div', { class: 'field' }, h('label', { for: 'session-title' }, 'Title'), title),
      h('div', { class: 'field' }, h('label', { for: 'session-description' }, 'Description'), desc),
      h(
        'div',
        { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: 'session-date' }, 'Planned date'), date),
        h('div', { class: 'field' }, h('label', { for: 'session-duration' }, 'Planned duration (minutes)'), minutes),
      ),
      h('div', { class: 'check' }, record, h('label', { for: 'session-record' }, 'Record the participants')),
    ),
    h(
      'div',
      { class: 'editor-body' },
      h(
        'section',
        { class: 'layout', 'aria-labelledby': 'layout-title' },
        h(
          'div',
          { class: 'row' },
          h('h3', { id: 'layout-title' }, 'Layout'),
          h('span', { class: 'grow' }),
          readOnly ? null : arrangeBtn,
        ),
        h('p', { class: 'muted' }, 'Where each participant appears on the participants\u2019 screens.', readOnly ? null : ' Drag a box to move it, its corner to resize it.'),
        stage,
      ),
      h(
        'section',
        { class: 'participants-section', 'aria-labelledby': 'participants-title' },
        h('div', { class: 'row' }, h('h3', { id: 'participants-title' }, 'Participants'), h('span', { class: 'grow' }), readOnly ? null : addBtn),
        plist,
      ),
    ),
    h(
      'section',
      { class: 'group-section', 'aria-labelledby': 'editor-groups-title' },
      h('h3', { id: 'editor-groups-title' }, 'Group filters'),
      h(
        'p',
        { class: 'muted' },
        'Measure several participants together (e.g. movement synchrony per pair), from the moment the experiment is opened; the live view charts the results.',
      ),
      groupBox,
    ),
    readOnly ? null : h('div', { class: 'row end sticky-actions' }, h('button', { type: 'button', onclick: () => onCancel() }, 'Cancel'), saveBtn),
  );
  root.append(form);
  renderParticipants();
  return root;
}

function toLocalInput(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
