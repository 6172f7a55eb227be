// Headline stats and the per-model table from GET /api/stats.
//
// Live without a polling storm: frames only *request* a refresh; at most one fetch runs at a time
// and at most one per second (a burst of 10,000 events costs one request a second). While idle, a
// slow refresh lets `events_per_second` (a 60 s window) decay to zero.

import { $, clear, h, setText } from './dom.js';
import { fmtCost, fmtInt, fmtMs, fmtPct, fmtRate, fmtAgo, isNum } from './format.js';

const MIN_INTERVAL_MS = 1000;
const IDLE_REFRESH_MS = 15_000;

/** Calls `fn` at most once per `interval` ms, always once more after the last request. */
export function throttle(fn, interval) {
  let running = false;
  let wanted = false;
  let last = 0;
  let timer = 0;
  async function run() {
    timer = 0;
    running = true;
    wanted = false;
    last = Date.now();
    try {
      await fn();
    } finally {
      running = false;
      if (wanted) schedule();
    }
  }
  function schedule() {
    wanted = true;
    if (running || timer) return;
    timer = setTimeout(run, Math.max(0, last + interval - Date.now()));
  }
  return schedule;
}

export function createStats({ api, onError }) {
  let idleTimer = 0;
  const refresh = throttle(async () => {
    clearTimeout(idleTimer);
    try {
      render(await api.get('api/stats'));
    } catch (err) {
      onError(err);
    } finally {
      idleTimer = setTimeout(refresh, IDLE_REFRESH_MS);
    }
  }, MIN_INTERVAL_MS);

  function render(s) {
    if (!s) return;
    const tokens = s.tokens || {};
    const runs = s.runs || {};
    const byStatus = s.by_status || {};
    setText('stat-eps', fmtRate(s.events_per_second));
    setText('stat-total', fmtInt(s.total));
    setText('stat-since', s.since ? `since ${fmtAgo(s.since)}` : '');
    setText('stat-error-rate', fmtPct(s.error_rate));
    setText('stat-errors', `${fmtInt(byStatus.failed || 0)} failed`);
    setText('stat-tokens', fmtInt(tokens.total));
    setText('stat-tokens-split', `${fmtInt(tokens.prompt)} in · ${fmtInt(tokens.completion)} out`);
    setText('stat-cost', fmtCost(s.cost_usd));
    setText('stat-runs', fmtInt(runs.running));
    setText('stat-runs-split', `${fmtInt(runs.completed)} ok · ${fmtInt(runs.failed)} failed`);
    $('stats').dataset.total = String(isNum(s.total) ? s.total : '');
    renderModels(s.by_model || {});
  }

  function renderModels(byModel) {
    const body = $('models-body');
    const entries = Object.entries(byModel).sort((a, b) => (b[1].count || 0) - (a[1].count || 0));
    const frag = document.createDocumentFragment();
    for (const [model, m] of entries) {
      frag.appendChild(
        h(
          'tr',
          { dataset: { model } },
          h('td', { className: 'model-name' }, model),
          h('td', { className: 'num' }, fmtInt(m.count)),
          h('td', { className: `num${m.errors ? ' st-failed-text' : ''}` }, fmtInt(m.errors)),
          h('td', { className: 'num' }, fmtMs(m.avg_duration_ms)),
          h('td', { className: 'num' }, fmtMs(m.p50_duration_ms)),
          h('td', { className: 'num' }, fmtMs(m.p95_duration_ms)),
          h('td', { className: 'num' }, fmtMs(m.p99_duration_ms)),
          h('td', { className: 'num' }, `${fmtInt(m.tokens_prompt)} / ${fmtInt(m.tokens_completion)}`),
          h('td', { className: 'num' }, fmtCost(m.cost_usd)),
        ),
      );
    }
    clear(body).appendChild(frag);
    $('models-empty').hidden = entries.length > 0;
  }

  return { refresh };
}
