// Every request the page makes goes through here, so the read token travels with each one.
// URLs are relative to the page, so the dashboard also works behind a path prefix.

export class ApiError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}${detail ? `: ${detail}` : ''}`);
    this.status = status;
  }
}

/** The read token: `?token=` in the page URL (EventSource cannot send headers, fetch can). */
export function pageToken(search = location.search) {
  return new URLSearchParams(search).get('token') || '';
}

export function createApi(token = pageToken()) {
  const listeners = new Set();

  async function request(method, path) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store', credentials: 'same-origin' });
    } catch (err) {
      throw new ApiError(0, 'network error');
    }
    if (res.status === 401 || res.status === 403) for (const fn of listeners) fn(res.status);
    if (!res.ok) {
      let detail = '';
      try {
        const body = await res.json();
        detail = body.detail || body.title || '';
      } catch {
        // not problem+json: the status says enough
      }
      throw new ApiError(res.status, detail);
    }
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  return {
    token,
    get: (path) => request('GET', path),
    post: (path) => request('POST', path),
    /** The SSE URL; `lastEventId` resumes after a manual reconnect (EventSource only sends the
     * Last-Event-ID header on its own retries, which we do not use). */
    streamUrl(lastEventId) {
      const params = new URLSearchParams();
      if (lastEventId) params.set('lastEventId', lastEventId);
      if (token) params.set('token', token);
      const qs = params.toString();
      return `api/stream${qs ? `?${qs}` : ''}`;
    },
    onAuthError(fn) {
      listeners.add(fn);
    },
  };
}

/** `path?k=v&…`, skipping empty values. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
