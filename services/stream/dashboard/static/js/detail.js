// The one detail dialog: an event's full record, or a run's tree. Content is built by callers
// with the safe helpers in dom.js; this module only opens, fills and closes it.

import { $, clear, h, setText } from './dom.js';

export function createDetail() {
  const dialog = $('detail');
  const body = $('detail-body');
  const title = $('detail-title');
  let current = null; // {kind, id} of what is shown, so live updates can refresh it

  $('detail-close').addEventListener('click', () => dialog.close());
  // A click on the backdrop (outside the dialog box) closes it too.
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close();
  });
  dialog.addEventListener('close', () => {
    current = null;
  });

  function show(kind, id, heading, ...content) {
    current = { kind, id };
    setText(title, heading);
    clear(body);
    for (const node of content) if (node) body.appendChild(node);
    if (!dialog.open) dialog.showModal();
    body.scrollTop = 0;
  }

  function loading(kind, id, heading) {
    show(kind, id, heading, h('p', { className: 'muted' }, 'Loading…'));
  }

  function error(kind, id, heading, message) {
    show(kind, id, heading, h('p', { className: 'error-text' }, message));
  }

  return {
    show,
    loading,
    error,
    isShowing(kind, id) {
      return dialog.open && current && current.kind === kind && (id === undefined || current.id === id);
    },
    get current() {
      return dialog.open ? current : null;
    },
  };
}
