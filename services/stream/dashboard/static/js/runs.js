// Runs: in-flight runs with elapsed time and live tokens/s, recent runs, and a run's tree
// (GET /api/runs/{id} with its children) in the detail dialog. Kept current by `run.*` frames.

import { withQuery } from './api.js';
import { $, badge, clear, h, jsonView, setText } from './dom.js';
import { fmtCost, fmtDateTime, fmtInt, fmtMs, fmtRate, isNum, runStatus, statusClass, toMs, tokensPerSecond } from './format.js';
import { throttle } from './stats.js';

const KEEP = 300;
const RECENT_SHOWN = 20;
const INFLIGHT = new Set(['pending', 'running']);

function startedAt(run) {
  return toMs(run.start_at ?? run.created_at);
}

export function createRuns({ api, detail, onError }) {
  const runs = new Map();
  const liveTokens = new Map(); // run id → latest tokens_so_far from streaming events
  let renderTimer = 0;

  function upsert(run) {
    if (!run || typeof run.id !== 'string') return;
    runs.set(run.id, { ...(runs.get(run.id) || {}), ...run });
    if (runs.size > KEEP) {
      const oldest = [...runs.values()].sort((a, b) => startedAt(a) - startedAt(b)).slice(0, runs.size - KEEP);
      for (const r of oldest) runs.delete(r.id);
    }
    scheduleRender();
  }

  function scheduleRender() {
    if (!renderTimer) renderTimer = setTimeout(render, 150);
  }

  function elapsedOf(run, now) {
    if (!INFLIGHT.has(run.status) && isNum(run.duration_ms)) return run.duration_ms;
    const start = startedAt(run);
    return Number.isFinite(start) ? Math.max(0, now - start) : null;
  }

  function item(run, now) {
    const status = runStatus(run);
    const rate = tokensPerSecond(run, liveTokens.get(run.id), now);
    const tokens = Math.max((run.tokens?.prompt || 0) + (run.tokens?.completion || 0), liveTokens.get(run.id) || 0);
    return h(
      'li',
      { className: `run-item ${statusClass(status)}`, tabindex: '0', dataset: { runId: run.id, status } },
      h(
        'div',
        { className: 'run-line' },
        run.parent_run_id ? h('span', { className: 'muted', title: 'child run' }, '↳ ') : null,
        h('span', { className: 'run-name' }, String(run.task_name || run.id)),
        badge(String(run.type || 'run'), 'badge-type'),
        badge(status, statusClass(status)),
      ),
      h(
        'div',
        { className: 'run-meta muted small' },
        h('span', { className: 'run-elapsed' }, fmtMs(elapsedOf(run, now))),
        ` · ${fmtInt(tokens)} tok`,
        rate !== null ? h('span', { className: 'run-rate' }, ` · ${fmtRate(rate)} tok/s`) : null,
        isNum(run.cost_usd) ? ` · ${fmtCost(run.cost_usd)}` : null,
      ),
    );
  }

  function render() {
    renderTimer = 0;
    const now = Date.now();
    const all = [...runs.values()].sort((a, b) => startedAt(b) - startedAt(a));
    const inflight = all.filter((r) => INFLIGHT.has(r.status));
    const recent = all.filter((r) => !INFLIGHT.has(r.status)).slice(0, RECENT_SHOWN);
    fill('runs-inflight', inflight, now);
    fill('runs-recent', recent, now);
    $('runs-inflight-empty').hidden = inflight.length > 0;
    $('runs-recent-empty').hidden = recent.length > 0;
    setText('runs-inflight-count', inflight.length ? `${inflight.length} in flight` : '');
  }

  function fill(id, list, now) {
    const frag = document.createDocumentFragment();
    for (const run of list) frag.appendChild(item(run, now));
    clear($(id)).appendChild(frag);
  }

  // --- the tree ---------------------------------------------------------------------------
  function section(label, value) {
    if (value === undefined || value === null || value === '') return null;
    if (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0) return null;
    return h('div', { className: `run-field run-${label}` }, h('h4', {}, label), jsonView(value));
  }

  function node(run, depth = 0) {
    const status = runStatus(run);
    const t = run.tokens || {};
    const kids = Array.isArray(run.children) ? run.children : [];
    const facts = [
      `${fmtMs(run.duration_ms ?? elapsedOf(run, Date.now()))}`,
      `${fmtInt(t.prompt)} in / ${fmtInt(t.completion)} out tokens${t.estimated ? ' (estimated)' : ''}`,
      `cost ${fmtCost(run.cost_usd)}`,
      run.app ? `app ${run.app}` : null,
    ].filter(Boolean);
    const head = h(
      'div',
      { className: 'run-head' },
      h('span', { className: 'run-name' }, String(run.task_name || run.id)),
      badge(String(run.type || 'run'), 'badge-type'),
      badge(status, statusClass(status)),
      h('span', { className: 'muted small' }, facts.join(' · ')),
    );
    const body = h(
      'div',
      { className: 'run-body' },
      h('p', { className: 'muted small' }, `id ${run.id} · started ${fmtDateTime(run.start_at)}${run.end_at ? ` · ended ${fmtDateTime(run.end_at)}` : ''}`),
      Array.isArray(run.tags) && run.tags.length ? h('p', {}, run.tags.map((tag) => badge(String(tag), 'badge-tag'))) : null,
      run.error ? h('div', { className: 'run-field run-error error-text' }, h('h4', {}, 'error'), jsonView(run.error)) : null,
      section('input', run.input),
      section('output', run.output),
      section('feedback', run.feedback),
      depth > 0 && run.children === undefined
        ? h('button', { type: 'button', className: 'link', on: { click: () => open(run.id) } }, 'open this run →')
        : null,
      kids.length ? h('ol', { className: 'run-children' }, kids.map((k) => h('li', {}, node(k, depth + 1)))) : null,
    );
    const openByDefault = depth === 0 || status === 'failed' || kids.length === 0;
    return h('details', { className: `run-node ${statusClass(status)}`, dataset: { runId: run.id }, open: openByDefault }, h('summary', {}, head), body);
  }

  async function open(id) {
    detail.loading('run', id, 'Run');
    let run;
    try {
      run = await api.get(`api/runs/${encodeURIComponent(id)}`);
    } catch (err) {
      detail.error('run', id, 'Run', err.status === 404 ? `No run ${id} (yet).` : `Could not load run ${id}: ${err.message}`);
      return;
    }
    upsert({ ...run, children: undefined });
    const parent = run.parent_run_id
      ? h('p', {}, h('button', { type: 'button', className: 'link', on: { click: () => open(run.parent_run_id) } }, '← parent run'))
      : null;
    detail.show('run', id, `Run · ${run.task_name || run.id}`, parent, node(run));
  }

  const refreshOpen = throttle(async () => {
    const cur = detail.current;
    if (cur && cur.kind === 'run') await open(cur.id);
  }, 1000);

  /** A `run.*` frame: {run, error?}. */
  function onRun(data) {
    if (!data || !data.run) return;
    upsert(data.run);
    const cur = detail.current;
    if (cur && cur.kind === 'run' && (cur.id === data.run.id || cur.id === data.run.parent_run_id || document.querySelector(`#detail-body [data-run-id="${CSS.escape(data.run.id)}"]`))) {
      refreshOpen();
    }
  }

  /** A live `event` frame: remember streaming token counts for the tokens/s of running runs. */
  function onEvent(ev) {
    const m = ev?.metadata || {};
    const sid = m.session_id || m.runId;
    const n = m.tokens_so_far ?? ev?.tokens_so_far;
    if (sid && isNum(n)) {
      liveTokens.set(sid, n);
      if (runs.has(sid)) scheduleRender();
    }
  }

  async function load() {
    try {
      const [recent, running] = await Promise.all([
        api.get(withQuery('api/runs', { limit: 50 })),
        api.get(withQuery('api/runs', { status: 'running', limit: 50 })),
      ]);
      runs.clear();
      for (const r of [...(recent.items || []), ...(running.items || [])]) upsert(r);
      render();
    } catch (err) {
      onError(err);
    }
  }

  function onListClick(e) {
    const li = e.target.closest('li[data-run-id]');
    if (li) open(li.dataset.runId);
  }
  for (const id of ['runs-inflight', 'runs-recent']) {
    $(id).addEventListener('click', onListClick);
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'Enter') onListClick(e);
    });
  }
  // Elapsed time and tokens/s of in-flight runs tick once a second.
  setInterval(() => {
    if ([...runs.values()].some((r) => INFLIGHT.has(r.status))) scheduleRender();
  }, 1000);

  return { load, onRun, onEvent, open };
}
