// CPU and memory: backfilled from GET /api/system/history, then one point per `system` frame,
// drawn on a <canvas> (two lines, 0–100 %) — no charting library needed.

import { $, setText } from './dom.js';
import { fmtBytes, fmtPct, fmtUptime, isNum, toMs } from './format.js';

const KEEP = 180;
const CPU_COLOR = '#2f6fed';
const MEM_COLOR = '#e8870e';

export function createSystem({ api, onError }) {
  const canvas = $('sys-chart');
  const samples = []; // oldest first, unique by ts
  let info = {};
  let drawTimer = 0;

  function add(sample) {
    if (!sample || !isNum(sample.cpu) || !isNum(sample.mem)) return false;
    const ts = toMs(sample.ts);
    if (!Number.isFinite(ts)) return false;
    const last = samples[samples.length - 1];
    if (last && ts <= last.t) {
      if (samples.some((s) => s.t === ts)) return false;
      samples.push({ t: ts, s: sample });
      samples.sort((a, b) => a.t - b.t);
    } else {
      samples.push({ t: ts, s: sample });
    }
    while (samples.length > KEEP) samples.shift();
    return true;
  }

  function showCurrent() {
    const cur = samples[samples.length - 1]?.s;
    canvas.dataset.samples = String(samples.length);
    if (!cur) return;
    setText('sys-cpu', fmtPct(cur.cpu, true));
    setText('sys-mem', fmtPct(cur.mem, true));
    setText('sys-summary', `CPU ${fmtPct(cur.cpu, true)} · Mem ${fmtPct(cur.mem, true)}`);
    const meta = [
      isNum(cur.mem_used) && isNum(cur.mem_total) ? `mem ${fmtBytes(cur.mem_used)} / ${fmtBytes(cur.mem_total)}` : null,
      isNum(info.cpu_cores) ? `${info.cpu_cores} cores` : null,
      isNum(info.uptime) ? `up ${fmtUptime(info.uptime)}` : null,
      info.version ? `llmwatch ${info.version}` : null,
    ].filter(Boolean);
    setText('sys-meta', meta.join(' · '));
    canvas.setAttribute('aria-label', `CPU ${fmtPct(cur.cpu, true)}, memory ${fmtPct(cur.mem, true)}`);
  }

  function scheduleDraw() {
    if (!drawTimer) drawTimer = setTimeout(draw, 50);
  }

  function draw() {
    drawTimer = 0;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const style = getComputedStyle(canvas);
    const grid = style.getPropertyValue('--grid').trim() || 'rgba(128,128,128,.25)';
    const text = style.getPropertyValue('--muted').trim() || '#888';
    const left = 30;
    const top = 6;
    const bottom = hgt - 16;
    const right = w - 4;
    ctx.font = '10px system-ui, sans-serif';
    ctx.lineWidth = 1;
    for (const pct of [0, 25, 50, 75, 100]) {
      const y = bottom - ((bottom - top) * pct) / 100;
      ctx.strokeStyle = grid;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
      ctx.fillStyle = text;
      ctx.fillText(`${pct}%`, 0, y + 3);
    }
    if (samples.length === 0) return;
    const t0 = samples[0].t;
    const t1 = Math.max(samples[samples.length - 1].t, t0 + 1);
    const x = (t) => left + ((right - left) * (t - t0)) / (t1 - t0);
    const y = (v) => bottom - ((bottom - top) * Math.min(100, Math.max(0, v))) / 100;
    for (const [key, color] of [['mem', MEM_COLOR], ['cpu', CPU_COLOR]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.75;
      ctx.beginPath();
      samples.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.s[key])) : ctx.moveTo(x(p.t), y(p.s[key]))));
      if (samples.length === 1) ctx.lineTo(right, y(samples[0].s[key]));
      ctx.stroke();
    }
    ctx.fillStyle = text;
    const secs = Math.round((t1 - t0) / 1000);
    ctx.fillText(secs > 0 ? `last ${secs}s` : 'now', left, hgt - 3);
  }

  async function load() {
    try {
      const [history, current] = await Promise.all([api.get('api/system/history'), api.get('api/system')]);
      info = current || {};
      for (const s of history?.items || []) add(s);
      if (current?.sample) add(current.sample);
      showCurrent();
      scheduleDraw();
    } catch (err) {
      onError(err);
    }
  }

  /** A `system` frame: {sample, uptime}. */
  function onSample(data) {
    if (isNum(data?.uptime)) info.uptime = data.uptime;
    if (add(data?.sample)) {
      showCurrent();
      scheduleDraw();
    }
  }

  new ResizeObserver(scheduleDraw).observe(canvas);
  return { load, onSample };
}
