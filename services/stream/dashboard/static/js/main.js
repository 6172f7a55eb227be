// The dashboard's entry point: builds each panel, reads the snapshots, and routes live frames.
//
// Order matters for a gap-free start: the live connection opens first, and the snapshots are read
// once it is live, so anything newer than a snapshot arrives as a frame (duplicates are dropped
// by id). A `reset` frame (the server could not resume our cursor) re-reads every snapshot.

import { createApi } from './api.js';
import { createDetail } from './detail.js';
import { $, setText } from './dom.js';
import { createEventTable } from './events.js';
import { createLive } from './live.js';
import { createNotifications } from './notifications.js';
import { createRuns } from './runs.js';
import { createStats } from './stats.js';
import { createSystem } from './system.js';

const SNAPSHOT_FALLBACK_MS = 3000; // show data even if the live feed never comes up

const api = createApi();
const root = document.documentElement;
const detail = createDetail();

function showBanner(message) {
  const banner = $('banner');
  setText(banner, message);
  banner.hidden = !message;
}

function onError(err) {
  if (err && (err.status === 401 || err.status === 403)) {
    showBanner(
      api.token
        ? 'The read token in this page’s URL was refused.'
        : 'This llmwatch needs a read token: open the page as /?token=<LLMWATCH_READ_TOKEN>.',
    );
  } else if (err) {
    console.warn('llmwatch:', err.message || err);
  }
}
api.onAuthError((status) => onError({ status }));

const runs = createRuns({ api, detail, onError });
const openRun = (id) => runs.open(id);
const events = createEventTable({ api, detail, onOpenRun: openRun });
const stats = createStats({ api, onError });
const notifications = createNotifications({ api, onOpenRun: openRun, onError });
const system = createSystem({ api, onError });

function setStale(stale) {
  $('config-stale').hidden = !stale;
}

async function loadSnapshots() {
  const mark = events.beginSnapshot();
  const history = api
    .get('api/history?limit=500')
    .then((page) => events.applySnapshot(page?.items || [], page?.next_cursor, mark))
    .catch(onError);
  const info = api
    .get('api/info')
    .then((i) => setStale(Boolean(i?.config_stale)))
    .catch(onError);
  stats.refresh();
  await Promise.all([history, info, runs.load(), notifications.load(), system.load()]);
  root.dataset.snapshots = String(Number(root.dataset.snapshots || 0) + 1);
}

function onFrame(type, data, id) {
  if (id) root.dataset.lastEventId = id;
  switch (type) {
    case 'event':
      events.add(data);
      runs.onEvent(data);
      stats.refresh();
      break;
    case 'run.created':
    case 'run.started':
    case 'run.completed':
    case 'run.failed':
    case 'run.updated':
      runs.onRun(data);
      stats.refresh();
      break;
    case 'system':
      system.onSample(data);
      break;
    case 'config.stale':
      setStale(Boolean(data?.stale));
      break;
    case 'notification.created':
    case 'notification.updated':
      notifications.onNotification(data);
      break;
    case 'notifications.unread_count_changed':
      notifications.onUnreadCount(data);
      break;
    case 'reset':
      loadSnapshots();
      break;
    default:
      break; // ping, and names a newer server may add
  }
}

let snapshotted = false;
function snapshotOnce() {
  if (snapshotted) return;
  snapshotted = true;
  loadSnapshots();
}

const LABELS = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', offline: 'offline' };

function onStatus({ state, role, detail: why, lastId }) {
  root.dataset.liveState = state;
  root.dataset.liveRole = role;
  root.dataset.lastEventId = lastId || '';
  let label = LABELS[state] || state;
  if (state === 'live' && role === 'follower') label = 'live · shared';
  if (why && state !== 'live') label = `${label} ${why}`;
  setText('conn-text', label);
  $('conn').title =
    state === 'live'
      ? `Live${role === 'follower' ? ' through another tab’s connection' : ''}. Last event id: ${lastId || '–'}`
      : 'Not connected: click to retry now';
  if (state === 'live') {
    showBanner('');
    snapshotOnce();
  }
}

const live = createLive({ streamUrl: api.streamUrl, onFrame, onStatus });
$('conn').addEventListener('click', () => live.reconnectNow());
live.start();
setTimeout(snapshotOnce, SNAPSHOT_FALLBACK_MS);
