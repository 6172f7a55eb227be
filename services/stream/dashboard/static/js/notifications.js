// The notification bell: unread count, the list, mark read/unread/all through the REST routes,
// kept live by `notification.created|updated` and `notifications.unread_count_changed` frames.

import { withQuery } from './api.js';
import { $, badge, clear, h, longText, setText } from './dom.js';
import { fmtAgo, fmtDateTime, fmtInt, toMs } from './format.js';

const KEEP = 200;

export function createNotifications({ api, onOpenRun, onError }) {
  const items = new Map();
  let unread = 0;
  const bell = $('bell');
  const panel = $('notif-panel');

  function setUnread(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) return;
    unread = Math.max(0, n);
    const count = $('bell-count');
    count.hidden = unread === 0;
    setText(count, unread > 99 ? '99+' : String(unread));
    bell.dataset.unread = String(unread);
    bell.title = `Notifications: ${unread} unread`;
  }

  function upsert(n) {
    if (!n || typeof n.id !== 'string') return;
    items.set(n.id, { ...(items.get(n.id) || {}), ...n });
    if (items.size > KEEP) {
      const sorted = sortedItems();
      for (const old of sorted.slice(KEEP)) items.delete(old.id);
    }
  }

  function sortedItems() {
    return [...items.values()].sort((a, b) => toMs(b.last_occurred_at ?? b.created_at) - toMs(a.last_occurred_at ?? a.created_at));
  }

  function render() {
    const list = $('notif-list');
    const frag = document.createDocumentFragment();
    for (const n of sortedItems()) frag.appendChild(row(n));
    clear(list).appendChild(frag);
    $('notif-empty').hidden = items.size > 0;
  }

  function row(n) {
    const isUnread = !n.read_at;
    const sev = n.severity === 'critical' || n.severity === 'error' ? 'st-failed' : n.severity === 'warning' ? 'st-warn' : 'st-info';
    return h(
      'li',
      { className: `notif ${isUnread ? 'unread' : 'read'}`, dataset: { id: n.id, kind: String(n.kind ?? '') } },
      h(
        'div',
        { className: 'notif-head' },
        badge(String(n.kind ?? 'notice'), sev),
        h('span', { className: 'notif-title' }, String(n.title ?? '')),
        n.count > 1 ? h('span', { className: 'muted small', title: 'occurrences' }, ` ×${fmtInt(n.count)}`) : null,
      ),
      n.body ? h('div', { className: 'notif-body' }, longText(String(n.body), 200)) : null,
      h(
        'div',
        { className: 'notif-foot muted small' },
        h('span', { title: fmtDateTime(n.last_occurred_at) }, fmtAgo(n.last_occurred_at ?? n.created_at)),
        n.task_name ? ` · ${n.task_name}` : null,
        n.run_id
          ? h('button', { type: 'button', className: 'link', on: { click: () => onOpenRun(n.run_id) } }, 'open run')
          : null,
        h(
          'button',
          { type: 'button', className: 'link mark', on: { click: () => mark(n.id, isUnread ? 'read' : 'unread') } },
          isUnread ? 'mark read' : 'mark unread',
        ),
      ),
    );
  }

  async function mark(id, how) {
    const n = items.get(id);
    try {
      await api.post(`api/notifications/${encodeURIComponent(id)}/${how}`);
    } catch (err) {
      onError(err);
      return;
    }
    if (n) {
      const wasUnread = !n.read_at;
      n.read_at = how === 'read' ? n.read_at || new Date().toISOString() : null;
      // The server also sends unread_count_changed; this keeps the bell right meanwhile.
      if (wasUnread && how === 'read') setUnread(unread - 1);
      if (!wasUnread && how === 'unread') setUnread(unread + 1);
    }
    render();
    refreshCount();
  }

  async function markAll() {
    try {
      await api.post('api/notifications/read');
    } catch (err) {
      onError(err);
      return;
    }
    const now = new Date().toISOString();
    for (const n of items.values()) if (!n.read_at) n.read_at = now;
    setUnread(0);
    render();
    refreshCount();
  }

  async function refreshCount() {
    try {
      const res = await api.get('api/notifications/unread-count');
      setUnread(res?.count);
    } catch (err) {
      onError(err);
    }
  }

  async function load() {
    try {
      const [list, count] = await Promise.all([
        api.get(withQuery('api/notifications', { limit: 50 })),
        api.get('api/notifications/unread-count'),
      ]);
      items.clear();
      for (const n of list.items || []) upsert(n);
      setUnread(count?.count);
      render();
    } catch (err) {
      onError(err);
    }
  }

  /** `notification.created|updated` {notification, unread_count}. */
  function onNotification(data) {
    if (!data) return;
    upsert(data.notification);
    setUnread(data.unread_count);
    render();
  }

  function onUnreadCount(data) {
    setUnread(data?.unread_count);
  }

  function toggle(open = panel.hidden) {
    panel.hidden = !open;
    bell.setAttribute('aria-expanded', String(open));
    if (open) load(); // read states may have changed in another tab
  }

  bell.addEventListener('click', (e) => {
    e.stopPropagation();
    toggle();
  });
  panel.addEventListener('click', (e) => e.stopPropagation());
  document.addEventListener('click', () => {
    if (!panel.hidden) toggle(false);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !panel.hidden) toggle(false);
  });
  $('notif-all-read').addEventListener('click', markAll);

  return { load, onNotification, onUnreadCount };
}
