// One live connection per browser, not per tab.
//
// The tabs elect a leader (Web Locks when the page is a secure context, else a BroadcastChannel
// heartbeat). The leader alone holds the EventSource on /api/stream and rebroadcasts each frame on
// a BroadcastChannel; followers render what it relays. Every tab remembers the last event id it
// saw, so a follower that takes over resumes where the old leader stopped: no gap, no repeat.
//
// Reconnects are ours, not EventSource's: on any error we close it and open a new one after an
// exponential backoff with jitter, passing `?lastEventId=` (EventSource only sends the
// Last-Event-ID header on its own retries).

export const FRAME_TYPES = [
  'event',
  'run.created',
  'run.started',
  'run.completed',
  'run.failed',
  'run.updated',
  'system',
  'config.stale',
  'notification.created',
  'notification.updated',
  'notifications.unread_count_changed',
  'reset',
  'ping',
];

const LOCK_NAME = 'llmwatch-live-leader';
const CHANNEL_NAME = 'llmwatch-live';
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const STABLE_AFTER_MS = 5_000; // a connection that lived this long resets the backoff
const WATCHDOG_MS = 90_000; // the server pings every 30 s; silence this long means a dead link
const HEARTBEAT_MS = 1_000;
const LEADER_TIMEOUT_MS = 2_500;
const CLAIM_MS = 250;

/** Backoff before reconnect attempt `n` (0-based): exponential, capped, with half jitter. */
export function backoffDelay(n, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(n, 10));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * createLive({streamUrl(lastId) → url, onFrame(type, data, id), onStatus({state, role, detail})})
 * states: connecting | live | reconnecting | offline.
 */
export function createLive({ streamUrl, onFrame, onStatus }) {
  const tabId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(CHANNEL_NAME) : null;
  let role = '';
  let lastId = '';
  let es = null;
  let attempt = 0;
  let openedAt = 0;
  let retryTimer = 0;
  let watchdogTimer = 0;
  let status = { state: 'connecting', detail: '' };

  function report() {
    onStatus({ ...status, role, lastId });
  }

  function setStatus(state, detail = '') {
    status = { state, detail };
    report();
    if (role === 'leader' && channel) channel.postMessage({ kind: 'status', from: tabId, status });
  }

  function deliver(type, raw, id) {
    if (id) lastId = id;
    let data = null;
    try {
      data = raw ? JSON.parse(raw) : {};
    } catch {
      return; // a frame we cannot read is skipped, not fatal
    }
    onFrame(type, data, id);
  }

  // --- leader: the EventSource ------------------------------------------------------------
  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    setStatus(attempt === 0 ? 'connecting' : 'reconnecting');
    const source = new EventSource(streamUrl(lastId));
    es = source;
    source.onopen = () => {
      openedAt = Date.now();
      setStatus('live');
      armWatchdog();
    };
    source.onerror = () => {
      if (es !== source) return;
      source.close();
      es = null;
      scheduleReconnect();
    };
    for (const type of FRAME_TYPES) {
      source.addEventListener(type, (e) => {
        if (es !== source) return;
        armWatchdog();
        // Pings carry no id; EventSource then repeats the previous one, which is harmless.
        const id = e.lastEventId || '';
        if (channel) channel.postMessage({ kind: 'frame', from: tabId, type, data: e.data, id });
        deliver(type, e.data, id);
      });
    }
  }

  function scheduleReconnect() {
    clearTimeout(watchdogTimer);
    if (openedAt && Date.now() - openedAt >= STABLE_AFTER_MS) attempt = 0;
    openedAt = 0;
    const delay = backoffDelay(attempt);
    attempt += 1;
    setStatus(attempt > 3 ? 'offline' : 'reconnecting', `retry in ${Math.ceil(delay / 1000)}s`);
    retryTimer = setTimeout(connect, delay);
  }

  function armWatchdog() {
    clearTimeout(watchdogTimer);
    watchdogTimer = setTimeout(() => {
      if (es) es.close();
      es = null;
      scheduleReconnect();
    }, WATCHDOG_MS);
  }

  function reconnectNow() {
    if (role === 'leader') {
      attempt = 0;
      connect();
    } else if (channel) {
      channel.postMessage({ kind: 'reconnect', from: tabId });
    }
  }

  // --- roles ------------------------------------------------------------------------------
  function becomeLeader() {
    if (role === 'leader') return;
    role = 'leader';
    attempt = 0;
    connect();
  }

  function becomeFollower() {
    const was = role;
    role = 'follower';
    clearTimeout(retryTimer);
    clearTimeout(watchdogTimer);
    if (es) es.close();
    es = null;
    if (was !== 'follower') {
      status = { state: 'connecting', detail: 'waiting for the leader tab' };
      report();
      if (channel) channel.postMessage({ kind: 'hello', from: tabId });
    }
  }

  function onChannelMessage({ data: msg }) {
    if (!msg || msg.from === tabId) return;
    if (msg.kind === 'frame' && role === 'follower') deliver(msg.type, msg.data, msg.id);
    else if (msg.kind === 'status' && role === 'follower') {
      status = msg.status;
      report();
    } else if (msg.kind === 'hello' && role === 'leader') setStatus(status.state, status.detail);
    else if (msg.kind === 'reconnect' && role === 'leader' && status.state !== 'live') reconnectNow();
  }

  function electWithLocks() {
    becomeFollower();
    // The callback's promise never settles: the lock is held until this tab goes away, and then
    // the browser hands it to the next waiting tab.
    navigator.locks.request(LOCK_NAME, () => new Promise(() => becomeLeader()));
  }

  function electWithHeartbeat() {
    // Without Web Locks: the leader beats every second; a follower that hears nothing for a while
    // announces a claim and takes over unless, meanwhile, it hears the leader or a claim from a
    // smaller id. If two leaders still emerge (a slow channel), the smaller id keeps the seat.
    let lastBeat = Date.now() - LEADER_TIMEOUT_MS / 2;
    let leaderId = '';
    let claim = 0;
    const beat = () => channel.postMessage({ kind: 'hb', from: tabId });
    const dropClaim = () => {
      clearTimeout(claim);
      claim = 0;
    };
    channel.addEventListener('message', ({ data: msg }) => {
      if (!msg || msg.from === tabId) return;
      if (msg.kind === 'hb' || msg.kind === 'frame' || msg.kind === 'status') {
        if (role === 'leader') {
          if (msg.from < tabId) becomeFollower();
          else return;
        }
        dropClaim();
        leaderId = msg.from;
        lastBeat = Date.now();
      } else if (msg.kind === 'claim') {
        if (role === 'leader') beat(); // still here: the claimant backs off
        else if (!claim || msg.from < tabId) {
          dropClaim(); // someone else is taking over; wait for its beat (or its silence)
          lastBeat = Date.now();
        }
      } else if (msg.kind === 'bye' && msg.from === leaderId) {
        lastBeat = 0;
      }
    });
    becomeFollower();
    setInterval(() => {
      if (role === 'leader') beat();
      else if (!claim && Date.now() - lastBeat > LEADER_TIMEOUT_MS) {
        channel.postMessage({ kind: 'claim', from: tabId });
        claim = setTimeout(() => {
          claim = 0;
          becomeLeader();
          beat();
        }, CLAIM_MS);
      }
    }, HEARTBEAT_MS);
    addEventListener('pagehide', () => {
      if (role === 'leader') channel.postMessage({ kind: 'bye', from: tabId });
    });
  }

  function start() {
    addEventListener('online', () => {
      if (status.state !== 'live') reconnectNow();
    });
    if (!channel) {
      becomeLeader(); // no BroadcastChannel: every tab on its own
      return;
    }
    channel.addEventListener('message', onChannelMessage);
    if (navigator.locks && typeof navigator.locks.request === 'function') electWithLocks();
    else electWithHeartbeat();
  }

  return {
    start,
    reconnectNow,
    get role() {
      return role;
    },
    get lastId() {
      return lastId;
    },
  };
}
