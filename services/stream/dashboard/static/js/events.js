// The live event table: newest first (by arrival), de-duplicated by event id, filtered in the
// page, each row opening the full event. Bursts are rendered in batches, not one by one.

import { withQuery } from './api.js';
import { $, badge, clear, h, jsonView, setText } from './dom.js';
import { fmtClock, fmtDateTime, runIdOf, statusClass, summarize } from './format.js';

const KEEP = 5000; // events kept in memory
const SHOW = 500; // rows in the DOM at most, until older pages are asked for
const PAGE = 500; // history page size
const FLUSH_MS = 100;
const FILTER_FIELDS = ['event_type', 'status', 'model', 'source'];

/** Whether an event passes the filters ({event_type, status, model, source, q}). */
export function matches(ev, filters) {
  for (const f of FILTER_FIELDS) if (filters[f] && ev[f] !== filters[f]) return false;
  const q = (filters.q || '').trim().toLowerCase();
  if (!q) return true;
  const hay = [ev.command, ev.model, ev.event_type, ev.status, ev.source, ev.id, JSON.stringify(ev.metadata || {})];
  return hay.some((s) => typeof s === 'string' && s.toLowerCase().includes(q));
}

export function createEventTable({ api, onOpenRun, detail }) {
  const table = $('events-table');
  const tbody = $('events-body');
  const form = $('filters');
  const rows = []; // newest first
  const byId = new Map();
  const seq = new WeakMap(); // arrival order of live events, to merge with a snapshot
  const seen = Object.fromEntries(FILTER_FIELDS.map((f) => [f, new Set()]));
  let counter = 0;
  let duplicates = 0;
  let pending = [];
  let flushTimer = 0;
  let paused = false;
  let optionsDirty = false;
  let nextCursor = null;
  let limit = SHOW;
  let filters = readFilters();

  function readFilters() {
    const data = new FormData(form);
    return Object.fromEntries(['q', ...FILTER_FIELDS].map((k) => [k, String(data.get(k) || '')]));
  }

  function remember(ev) {
    for (const f of FILTER_FIELDS) {
      const v = ev[f];
      if (typeof v === 'string' && v && !seen[f].has(v)) {
        seen[f].add(v);
        optionsDirty = true;
      }
    }
  }

  function trim() {
    while (rows.length > KEEP) byId.delete(rows.pop().id);
  }

  /** A live `event` frame. */
  function add(ev) {
    if (!ev || typeof ev.id !== 'string') return;
    if (byId.has(ev.id)) {
      duplicates += 1;
      table.dataset.duplicates = String(duplicates);
      return;
    }
    counter += 1;
    seq.set(ev, counter);
    byId.set(ev.id, ev);
    rows.unshift(ev);
    remember(ev);
    trim();
    pending.push(ev);
    if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_MS);
  }

  function flush() {
    flushTimer = 0;
    const batch = pending;
    pending = [];
    if (!paused) {
      for (const ev of batch) if (byId.has(ev.id) && matches(ev, filters)) tbody.prepend(rowFor(ev));
      while (tbody.rows.length > limit) tbody.lastElementChild.remove();
    }
    afterRender();
  }

  function renderAll() {
    clearTimeout(flushTimer);
    flushTimer = 0;
    pending = [];
    const frag = document.createDocumentFragment();
    let shown = 0;
    for (const ev of rows) {
      if (shown >= limit) break;
      if (!matches(ev, filters)) continue;
      frag.appendChild(rowFor(ev));
      shown += 1;
    }
    clear(tbody).appendChild(frag);
    afterRender();
  }

  function afterRender() {
    if (optionsDirty) refreshOptions();
    const shown = tbody.rows.length;
    table.dataset.rows = String(rows.length);
    setText('events-count', shown === rows.length ? `${rows.length}` : `${shown} of ${rows.length}`);
    $('events-empty').hidden = shown > 0;
    $('events-older').hidden = !nextCursor;
  }

  function refreshOptions() {
    optionsDirty = false;
    for (const f of FILTER_FIELDS) {
      const select = form.elements[f];
      const value = select.value;
      const values = [...seen[f]].sort();
      if (select.options.length === values.length + 1) continue;
      clear(select).appendChild(h('option', { value: '' }, 'all'));
      for (const v of values) select.appendChild(h('option', { value: v }, v));
      select.value = value;
    }
  }

  function rowFor(ev) {
    const cls = statusClass(ev.status);
    return h(
      'tr',
      { className: `row ${cls}`, tabindex: '0', dataset: { id: ev.id } },
      h('td', { className: 'col-time', title: String(ev.timestamp ?? '') }, fmtClock(ev.timestamp)),
      h('td', { className: 'col-type' }, badge(String(ev.event_type ?? ''), 'badge-type')),
      h('td', { className: 'col-status' }, badge(String(ev.status ?? ''), cls)),
      h('td', { className: 'col-command' }, String(ev.command ?? '')),
      h('td', { className: 'col-model' }, String(ev.model ?? '')),
      h('td', { className: 'col-source' }, String(ev.source ?? '')),
      h('td', { className: 'col-summary' }, summarize(ev.metadata)),
    );
  }

  /** Marks the start of a snapshot read: live events after this mark are newer than it. */
  function beginSnapshot() {
    return counter;
  }

  /** The history snapshot (newest first), merged with what arrived live while it was read. */
  function applySnapshot(items, cursor, mark) {
    const fresh = rows.filter((ev) => seq.get(ev) > mark);
    rows.length = 0;
    byId.clear();
    for (const ev of [...fresh, ...items]) {
      if (!ev || typeof ev.id !== 'string' || byId.has(ev.id)) continue;
      byId.set(ev.id, ev);
      rows.push(ev);
      remember(ev);
    }
    trim();
    nextCursor = cursor || null;
    limit = SHOW;
    renderAll();
  }

  async function loadOlder() {
    if (!nextCursor) return;
    const page = await api.get(withQuery('api/history', { limit: PAGE, before: nextCursor }));
    for (const ev of page.items || []) {
      if (!ev || byId.has(ev.id) || rows.length >= KEEP) continue;
      byId.set(ev.id, ev);
      rows.push(ev);
      remember(ev);
      limit = Math.min(KEEP, limit + 1);
    }
    nextCursor = rows.length < KEEP ? page.next_cursor || null : null;
    renderAll();
  }

  function open(ev) {
    const runId = runIdOf(ev);
    const facts = h(
      'dl',
      { className: 'facts' },
      h('dt', {}, 'id'),
      h('dd', {}, String(ev.id)),
      h('dt', {}, 'time'),
      h('dd', {}, `${fmtDateTime(ev.timestamp)} (${String(ev.timestamp ?? '')})`),
      h('dt', {}, 'type'),
      h('dd', {}, badge(String(ev.event_type ?? ''), 'badge-type')),
      h('dt', {}, 'status'),
      h('dd', {}, badge(String(ev.status ?? ''), statusClass(ev.status))),
      h('dt', {}, 'command'),
      h('dd', {}, String(ev.command ?? '')),
      h('dt', {}, 'model'),
      h('dd', {}, String(ev.model ?? '–')),
      h('dt', {}, 'source'),
      h('dd', {}, String(ev.source ?? '')),
      runId && [
        h('dt', {}, 'run'),
        h('dd', {}, h('button', { type: 'button', className: 'link', on: { click: () => onOpenRun(runId) } }, String(runId))),
      ],
    );
    const extra = Object.fromEntries(
      Object.entries(ev).filter(([k]) => !['id', 'timestamp', 'event_type', 'status', 'command', 'model', 'source', 'metadata'].includes(k)),
    );
    detail.show(
      'event',
      ev.id,
      `${ev.event_type ?? 'event'} · ${ev.command ?? ''}`,
      facts,
      h('h3', { className: 'sub' }, 'Metadata'),
      jsonView(ev.metadata ?? {}),
      Object.keys(extra).length ? [h('h3', { className: 'sub' }, 'Other fields'), jsonView(extra)] : null,
      h('details', { className: 'raw' }, h('summary', {}, 'Raw JSON'), h('pre', {}, JSON.stringify(ev, null, 2))),
    );
  }

  function openFromRow(target) {
    const tr = target.closest('tr[data-id]');
    const ev = tr && byId.get(tr.dataset.id);
    if (ev) open(ev);
  }

  tbody.addEventListener('click', (e) => openFromRow(e.target));
  tbody.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      openFromRow(e.target);
    }
  });
  form.addEventListener('input', () => {
    filters = readFilters();
    renderAll();
  });
  form.addEventListener('submit', (e) => e.preventDefault());
  $('events-older').addEventListener('click', () => loadOlder().catch(() => {}));
  const pause = $('events-pause');
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) renderAll();
  });

  return { add, beginSnapshot, applySnapshot, get size() { return rows.length; } };
}
