// Pure formatting helpers: value in, string out. No DOM, no fetch.

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

export function fmtInt(v) {
  return isNum(v) ? nf0.format(v) : '–';
}

/** 0.123 → "12.3%" (fraction in); `fmtPct(45.6, true)` → "45.6%" (percent in). */
export function fmtPct(v, alreadyPercent = false) {
  if (!isNum(v)) return '–';
  return `${nf1.format(alreadyPercent ? v : v * 100)}%`;
}

export function fmtRate(v) {
  if (!isNum(v)) return '–';
  return v >= 100 ? nf0.format(v) : v.toFixed(v >= 10 ? 1 : 2);
}

export function fmtMs(v) {
  if (!isNum(v)) return '–';
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(v / 60_000);
  const s = Math.floor((v % 60_000) / 1000);
  if (m < 60) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function fmtCost(v) {
  if (!isNum(v)) return '–';
  if (v === 0) return '$0';
  if (v < 0.01) return `$${v.toFixed(6).replace(/0+$/, '')}`;
  return `$${v.toFixed(v < 100 ? 4 : 2).replace(/0+$/, '').replace(/\.$/, '')}`;
}

export function fmtBytes(v) {
  if (!isNum(v)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = v;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/**
 * Any timestamp the APIs send → epoch milliseconds, or NaN.
 * Numbers below 1e11 are epoch seconds (samples), larger ones epoch milliseconds.
 */
export function toMs(ts) {
  if (isNum(ts)) return ts < 1e11 ? ts * 1000 : ts;
  if (typeof ts === 'string' && ts) {
    if (/^\d+(\.\d+)?$/.test(ts)) return toMs(Number(ts));
    return Date.parse(ts);
  }
  return NaN;
}

export function fmtClock(ts) {
  const ms = toMs(ts);
  if (!Number.isFinite(ms)) return '–';
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtDateTime(ts) {
  const ms = toMs(ts);
  return Number.isFinite(ms) ? new Date(ms).toLocaleString() : '–';
}

export function fmtAgo(ts, now = Date.now()) {
  const ms = toMs(ts);
  if (!Number.isFinite(ms)) return '';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function fmtUptime(seconds) {
  return isNum(seconds) ? fmtMs(seconds * 1000) : '–';
}

/** One line summarising an event's metadata, for the table. */
export function summarize(metadata, limit = 120) {
  if (!metadata || typeof metadata !== 'object') return '';
  const parts = [];
  for (const [k, v] of Object.entries(metadata)) {
    let text;
    if (v === null || v === undefined) text = 'null';
    else if (typeof v === 'object') text = JSON.stringify(v);
    else text = String(v);
    parts.push(`${k}=${text}`);
    if (parts.join(' ').length > limit) break;
  }
  const line = parts.join(' ');
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

/** The run an event belongs to, when it names one (LLMonitor runId, watcher session_id). */
export function runIdOf(ev) {
  const m = (ev && ev.metadata) || {};
  return m.runId || m.run_id || m.session_id || ev.session_id || null;
}

export function statusClass(status) {
  switch (status) {
    case 'failed':
    case 'error':
      return 'st-failed';
    case 'completed':
    case 'ended':
    case 'success':
      return 'st-ok';
    case 'running':
    case 'start':
    case 'pending':
      return 'st-running';
    default:
      return 'st-info';
  }
}

/** A run's status word for people: ended runs say how they ended. */
export function runStatus(run) {
  if (!run) return '';
  if (run.status === 'ended') return run.end_reason === 'failed' ? 'failed' : 'completed';
  return run.status || 'unknown';
}

/** Tokens per second of a run: completion tokens (or the live count) over its elapsed time. */
export function tokensPerSecond(run, liveTokens, now = Date.now()) {
  const tokens = Math.max(run?.tokens?.completion || 0, liveTokens || 0);
  const start = toMs(run?.start_at ?? run?.created_at);
  let elapsed = isNum(run?.duration_ms) && run.status === 'ended' ? run.duration_ms : now - start;
  if (!tokens || !Number.isFinite(elapsed) || elapsed <= 0) return null;
  return tokens / (elapsed / 1000);
}
