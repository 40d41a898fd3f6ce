// The server's REST API and WebSocket (docs/PROTOCOL.md). The key lives in sessionStorage only.
const KEY = 'dataagent.apiKey';
export const hooks = { busy: (on) => {}, unauthorized: () => {} };

export const auth = {
  disabled: false,
  get key() { return sessionStorage.getItem(KEY) || ''; },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.error_code || 'http_error';
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function api(path, { method = 'GET', body, retries = 8 } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = auth.key && !auth.disabled ? { 'X-API-Key': auth.key } : {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 503 && attempt < retries) {
      hooks.busy(true);
      await sleep(1000 * Math.min(8, Number(res.headers.get('Retry-After')) || 1) * (attempt + 1));
      continue;
    }
    hooks.busy(false);
    if (res.status === 204) return null;
    const data = await res.json().catch(() => ({}));
    if (res.status === 401) hooks.unauthorized();
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
}

export async function uiConfig() {
  const res = await fetch('/ui/config');
  return res.ok ? res.json() : { auth_disabled: false };
}

// One session's socket: reconnects with backoff and resumes with ?after_seq, dropping any frame already seen.
export class SessionSocket {
  constructor(sessionId, handlers) {
    this.sessionId = sessionId;
    this.on = handlers; // connected(data, resumed), event(frame), state(name), closed(code)
    this.lastSeq = null;
    this.attempt = 0;
    this.stopped = false;
  }

  open() {
    const params = new URLSearchParams();
    if (auth.key && !auth.disabled) params.set('api_key', auth.key);
    const resumed = this.lastSeq !== null;
    if (resumed) params.set('after_seq', String(this.lastSeq));
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/${encodeURIComponent(this.sessionId)}?${params}`);
    this.ws = ws;
    ws.onmessage = (message) => this.receive(JSON.parse(message.data), resumed);
    ws.onclose = (close) => this.closed(ws, close.code);
  }

  receive(frame, resumed) {
    if (frame.event_type === 'connected') {
      this.attempt = 0;
      if (this.lastSeq === null && !frame.data.active_run_id) this.lastSeq = frame.data.last_seq ?? null;
      this.on.state('open');
      this.on.connected(frame.data, resumed);
      return;
    }
    if (typeof frame.seq === 'number') {
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    this.on.event(frame);
  }

  closed(ws, code) {
    if (ws !== this.ws || this.stopped) return;
    if (code === 4401 || code === 4404 || code === 4400) {
      this.stopped = true;
      this.on.closed(code);
      return;
    }
    this.on.state(code === 1013 ? 'busy' : 'reconnecting');
    const delay = Math.min(8000, 250 * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
    this.timer = setTimeout(() => this.open(), delay);
  }

  send(type, payload = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ type, payload }));
    return true;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }
}
