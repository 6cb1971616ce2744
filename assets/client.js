/**
 * pushgate browser client, served by the gateway at `<realtime.path>/client.js`.
 *
 * A classic script that defines `globalThis.Pushgate`; `<realtime.path>/client.mjs`
 * re-exports it for `import { Pushgate } from '/realtime/client.mjs'`.
 * No dependencies, no build step.
 *
 * What it does for the page: picks the first transport that works (WebSocket,
 * then SSE, then long-polling) and probes the preferred one again later;
 * reconnects with exponential backoff and full jitter (after the delay the
 * gateway gives it when it restarts, `retry`, when it gave one); resumes from the last
 * cursor on every reconnect and transport switch, dropping anything seen twice
 * by message id; refreshes tokens; queues publish/send while offline; and,
 * with `shareAcrossTabs`, keeps one connection per browser for all tabs.
 */
(function (root) {
  'use strict';

  const TRANSPORTS = ['websocket', 'sse', 'poll'];

  /** Options and their defaults. */
  const DEFAULTS = {
    /** @type {string|undefined} Bearer token (JWT or static token). */
    token: undefined,
    /** @type {(() => Promise<string>)|undefined} Called when the token expired or was refused. */
    getToken: undefined,
    /** Transports to try, in order of preference. */
    transports: TRANSPORTS,
    /** Backoff: first delay ceiling and cap (ms); each delay is random in [0, min(cap, base*2^n)). */
    backoffBase: 500,
    backoffCap: 15000,
    /** While on a fallback transport, probe the preferred one this often (ms; 0: never). */
    retryPreferredAfter: 30000,
    /** A connection attempt that takes longer fails (ms). */
    connectTimeout: 8000,
    /** Publish/send calls held while disconnected, and how long each may wait (ms). */
    queueLimit: 100,
    queueTimeout: 15000,
    /** How long a publish/send waits for its answer once sent (ms). */
    requestTimeout: 15000,
    /** Long-poll hold asked of the server (s). */
    pollTimeout: 25,
    /**
     * With `getToken`, a WebSocket renews a JWT this long before its `exp` (ms; at
     * most a third of its remaining life) with an `auth` op, instead of being
     * closed at expiry. 0: only when refused.
     */
    refreshEarly: 30000,
    /** A stream silent this long is presumed dead (ms); the server sends heartbeats. */
    staleAfter: 45000,
    /** One connection per browser: tabs of this origin elect a leader that relays. */
    shareAcrossTabs: false,
  };

  /** An error with the gateway's error code (`forbidden`, `queue_full`, `timeout`, ...). */
  class PushgateError extends Error {
    constructor(code, message) {
      super(message || code);
      this.name = 'PushgateError';
      this.code = code;
    }
  }

  /** A JWT's `exp` in ms since the epoch, or null (not a JWT, or no exp). */
  function jwtExp(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const exp = JSON.parse(atob(part)).exp;
      return typeof exp === 'number' ? exp * 1000 : null;
    } catch (_) {
      return null;
    }
  }

  /** Whether a JWT's `exp` has passed (with a few seconds of margin). */
  function jwtExpired(token) {
    const exp = jwtExp(token);
    return exp !== null && exp < Date.now() + 3000;
  }

  /** The bytes of base64 `text` as an ArrayBuffer. */
  function base64Bytes(text) {
    const s = atob(text);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes.buffer;
  }

  /**
   * A binary WebSocket frame as a message: its JSON head up to the first
   * newline, then the bytes, handed on as an ArrayBuffer.
   */
  function binaryFrame(buffer) {
    const all = new Uint8Array(buffer);
    const at = all.indexOf(10);
    if (at < 0) return null;
    const f = JSON.parse(new TextDecoder().decode(all.subarray(0, at)));
    f.data = buffer.slice(at + 1);
    return f;
  }

  /** `data` as bytes when it is an ArrayBuffer or a typed array / DataView; else null. */
  function bytesOf(data) {
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return null;
  }

  /** `bytes` in base64. */
  function base64Of(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  /** Is message id `a` after `b`? Ids are decimal sequence numbers; others compare as strings. */
  function after(a, b) {
    if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
      return a.length !== b.length ? a.length > b.length : a > b;
    }
    return a !== b;
  }

  /**
   * A realtime connection to one pushgate.
   *
   * Events (`rt.on(name, fn)`): `connect` {transport}, `disconnect` {transport, code, reason},
   * `transport` {from, to} (switched), `reset` {channels, reason} (history gap: refetch),
   * `error` {code, message}, `presence` {channel, action, subject}, `leader` {leader}.
   */
  class Pushgate {
    /**
     * @param {string} url realtime base, e.g. `/realtime` or `https://host/realtime`
     * @param {Partial<typeof DEFAULTS>} [options]
     */
    constructor(url, options) {
      this.options = Object.assign({}, DEFAULTS, options || {});
      const base = new URL(url || '/realtime', root.location ? root.location.href : undefined);
      this._http = base.href.replace(/\/+$/, '');
      this._ws = this._http.replace(/^http/, 'ws');
      this._token = this.options.token;
      this._handlers = new Map(); // channel -> Set(handler)
      this._listeners = new Map(); // event -> Set(fn)
      this._lastIds = new Map(); // channel -> last delivered id
      this._cursor = '';
      this._order = this.options.transports.filter((t) => TRANSPORTS.includes(t));
      if (!this._order.length) throw new PushgateError('bad_request', 'no usable transport');
      this._index = 0;
      this._t = null; // active transport
      this._state = 'connecting';
      this._attempt = 0;
      this._latency = null;
      this._queue = [];
      this._pending = new Map(); // ws ref -> {resolve, reject, timer}
      this._ref = 0;
      this._timers = {};
      this._closed = false;
      this._leader = true;
      if (root.addEventListener) {
        // Back online: skip the rest of the backoff.
        root.addEventListener('online', () => {
          if (!this._waiting) return;
          clearTimeout(this._timers.reconnect);
          this._connect();
        });
      }
      if (this.options.shareAcrossTabs && root.BroadcastChannel && root.navigator && navigator.locks) {
        share(this);
      } else {
        // After the current script: subscriptions made right after `new` go in the connect URL.
        queueMicrotask(() => this._connect());
      }
    }

    /** Listen to an event; returns a function that stops listening. */
    on(name, fn) {
      if (!this._listeners.has(name)) this._listeners.set(name, new Set());
      this._listeners.get(name).add(fn);
      return () => this._listeners.get(name).delete(fn);
    }

    _emit(name, detail) {
      for (const fn of this._listeners.get(name) || []) {
        try { fn(detail); } catch (e) { setTimeout(() => { throw e; }); }
      }
      // `leader` is about this tab only; everything else is news for the followers too.
      if (this._relay && name !== 'leader') this._relay('event', { name, detail });
    }

    /**
     * Receive `channel`'s messages: `handler(data, message)`. Returns an unsubscribe function.
     * @param {string} channel
     * @param {(data: any, message: {channel: string, event: string, id: string, data: any}) => void} handler
     */
    subscribe(channel, handler) {
      let set = this._handlers.get(channel);
      const fresh = !set;
      if (fresh) this._handlers.set(channel, (set = new Set()));
      set.add(handler);
      if (fresh) this._channelsChanged();
      return () => {
        if (!set.delete(handler) || set.size) return;
        this._handlers.delete(channel);
        this._channelsChanged();
      };
    }

    /**
     * Publish to a channel whose rule allows clients; resolves `{channel, id}`.
     * `data` may be an ArrayBuffer or a typed array: subscribers get bytes.
     */
    publish(channel, data, event) {
      return this._request('publish', { channel, event: event || 'message', data });
    }

    /**
     * Send `data` to the application (`client_messages.forward_to`); resolves to its answer.
     * Bytes (an ArrayBuffer or a typed array) reach it as `application/octet-stream`.
     */
    send(data) {
      return this._request('send', { data });
    }

    /** Where the connection stands: state, transport, cursor, latency (ms, last round trip). */
    status() {
      return {
        state: this._state,
        transport: this._t ? this._t.kind : this._shared ? this._shared.transport : null,
        cursor: this._cursor,
        latency: this._latency,
        queued: this._queue.length,
        leader: this._leader,
      };
    }

    /** Close for good: no reconnect; queued calls are rejected. */
    close() {
      this._closed = true;
      this._state = 'closed';
      for (const k of Object.keys(this._timers)) clearTimeout(this._timers[k]);
      if (this._t) this._t.close();
      this._t = null;
      if (this._probe) this._probe.close();
      if (this._unshare) this._unshare();
      this._failAll(new PushgateError('closed', 'client closed'));
    }

    // ---- connection management -------------------------------------------

    /** Every channel this connection must carry (followers' too when leading). */
    _channels() {
      const all = new Set(this._handlers.keys());
      if (this._extraChannels) for (const c of this._extraChannels()) all.add(c);
      return [...all];
    }

    _channelsChanged() {
      if (this._follow) return this._follow('sub', { channels: [...this._handlers.keys()] });
      this._sync();
    }

    /** Bring the live transport's channel set in line with `_channels()`. */
    _sync() {
      if (!this._t || !this._t.open) return;
      const next = new Set(this._channels());
      const carried = this._carried || new Set();
      const added = [...next].filter((c) => !carried.has(c));
      const removed = [...carried].filter((c) => !next.has(c));
      this._carried = next;
      if (added.length || removed.length) this._t.update(added, removed);
    }

    _timer(name, ms, fn) {
      clearTimeout(this._timers[name]);
      this._timers[name] = setTimeout(fn, ms);
    }

    async _connect() {
      this._waiting = false;
      if (this._closed || !this._leader) return;
      this._state = 'connecting';
      try {
        if (this._token && this.options.getToken && jwtExpired(this._token)) await this._refreshToken();
      } catch (e) {
        this._emit('error', { code: 'token_refresh_failed', message: String(e && e.message) });
      }
      if (this._closed || !this._leader) return;
      this._open(this._order[this._index], false);
    }

    /** Start a transport of `kind`; a probe only becomes active once it opens. */
    _open(kind, probe) {
      const t = new (kind === 'websocket' ? WsTransport : kind === 'sse' ? SseTransport : PollTransport)(this);
      t.kind = kind;
      t.probe = probe;
      t.startedAt = Date.now();
      t.onopen = () => this._opened(t);
      t.onframe = (f) => { if (t === this._t) this._frame(f); };
      t.onclose = (info) => this._lost(t, info);
      if (probe) this._probe = t;
      else this._t = t;
      t.start();
      return t;
    }

    _opened(t) {
      if (t.probe) {
        if (this._probe !== t) return t.close();
        this._probe = null;
        t.probe = false;
        const old = this._t;
        this._t = t;
        this._index = this._order.indexOf(t.kind);
        if (old) old.close();
        this._emit('transport', { from: old ? old.kind : null, to: t.kind });
      } else if (t !== this._t) {
        return t.close();
      }
      const wasConnected = this._state === 'connected';
      this._state = 'connected';
      t.openedAt = Date.now();
      if (!wasConnected) this._emit('connect', { transport: t.kind });
      this._sync();
      this._flushQueue();
      this._scheduleProbe();
    }

    _scheduleProbe() {
      const every = this.options.retryPreferredAfter;
      if (!every || this._index === 0) return;
      this._timer('probe', every, () => {
        if (this._closed || !this._t || this._state !== 'connected' || this._index === 0) return;
        this._open(this._order[0], true);
      });
    }

    /** A transport ended: decide between retrying it, falling back, and refreshing the token. */
    async _lost(t, info) {
      if (t.probe || t !== this._t) {
        if (this._probe === t) {
          this._probe = null;
          this._scheduleProbe();
        }
        return;
      }
      this._t = null;
      for (const [, p] of this._pending) p.reject(new PushgateError('disconnected', 'connection lost before the answer'));
      this._pending.clear();
      if (this._state === 'connected') {
        this._state = 'connecting';
        this._emit('disconnect', { transport: t.kind, code: info.code, reason: info.reason });
      }
      if (this._closed) return;
      let delay;
      const lived = t.openedAt ? Date.now() - t.openedAt : 0;
      // Only a connection that held for a while resets the backoff: one that
      // opens and dies again and again must not reconnect in a tight loop.
      if (lived > 5000) this._attempt = 0;
      if (info.auth && this.options.getToken) {
        try {
          await this._refreshToken();
          delay = 0;
        } catch (e) {
          this._emit('error', { code: 'token_refresh_failed', message: String(e && e.message) });
        }
      }
      if (delay === undefined) {
        const failed = !t.openedAt || (lived < 1000 && !t.received);
        if (failed && !info.auth && !info.refused && this._index < this._order.length - 1) {
          const from = t.kind;
          this._index += 1;
          delay = 0;
          this._emit('transport', { from, to: this._order[this._index] });
        } else {
          if (failed && this._index === this._order.length - 1 && this._order.length > 1) this._index = 0;
          // Told when to come back (a restart's `retry`): that long, plus the usual jitter.
          const hinted = t.retryHint != null ? t.retryHint : 0;
          delay = info.retryAfter != null ? info.retryAfter : hinted + this._backoff();
        }
      }
      this._waiting = true;
      this._timer('reconnect', delay, () => this._connect());
    }

    _backoff() {
      const ceiling = Math.min(this.options.backoffCap, this.options.backoffBase * 2 ** this._attempt);
      this._attempt = Math.min(this._attempt + 1, 30);
      return Math.random() * ceiling;
    }

    /** One `getToken()` at a time, however many transports and requests ask. */
    _refreshToken() {
      if (!this.options.getToken) return Promise.reject(new PushgateError('unauthorized', 'token refused and no getToken'));
      if (!this._refreshing) {
        this._refreshing = Promise.resolve(this.options.getToken())
          .then((tok) => { this._token = tok; return tok; })
          .finally(() => { this._refreshing = null; });
      }
      return this._refreshing;
    }

    // ---- inbound -----------------------------------------------------------

    /** A parsed frame from the active transport. */
    _frame(f) {
      switch (f.type) {
        case 'message': return this._deliver(f);
        case 'reset':
          for (const c of f.channels || []) this._lastIds.delete(c);
          if (f.cursor) this._cursor = f.cursor;
          if (this._relay) this._relay('reset', f);
          return this._emit('reset', { channels: f.channels || [], reason: f.reason });
        case 'presence': return this._emit('presence', f);
        case 'ack':
          // A subscribe's ack carries the cursor including the new channel.
          if (f.op === 'subscribe' && f.cursor) this._cursor = f.cursor;
        // falls through
        case 'error': {
          const p = f.ref != null && this._pending.get(String(f.ref));
          if (p) {
            this._pending.delete(String(f.ref));
            return f.type === 'ack' ? p.resolve(f) : p.reject(new PushgateError(f.code, f.message));
          }
          if (f.cursor && f.type === 'error') this._cursor = f.cursor;
          if (f.type === 'error') this._emit('error', { code: f.code, message: f.message, channel: f.channel });
          return;
        }
        case 'reconnect':
          if (f.cursor) this._cursor = f.cursor;
          // The gateway is stopping and gives each client its own delay
          // (`retry`, ms), so a restart's returns are spread rather than
          // landing at once: the transport that heard it waits that long.
          if (this._t && Number.isFinite(f.retry) && f.retry >= 0) this._t.retryHint = f.retry;
          return;
        // After compressed messages, which carry no cursor (permessage-deflate).
        // Relayed: a follower that becomes leader resumes from it.
        case 'cursor':
          if (f.cursor) {
            this._cursor = f.cursor;
            if (this._relay) this._relay('cursor', { cursor: f.cursor });
          }
          return;
        default: return;
      }
    }

    /** Hand a message to its handlers once: ids only move forward per channel. */
    _deliver(m) {
      const last = this._lastIds.get(m.channel);
      if (last !== undefined && !after(m.id, last)) return false;
      this._lastIds.set(m.channel, m.id);
      if (m.cursor) this._cursor = m.cursor;
      // Bytes reach the page as an ArrayBuffer whatever the transport:
      // SSE and long-poll carry them in base64 (`encoding` still says so).
      if (m.encoding === 'base64' && typeof m.data === 'string') m.data = base64Bytes(m.data);
      if (this._relay) this._relay('msg', m);
      for (const h of this._handlers.get(m.channel) || []) {
        try { h(m.data, m); } catch (e) { setTimeout(() => { throw e; }); }
      }
      return true;
    }

    // ---- outbound: publish / send, queued while offline ----------------------

    _request(kind, body) {
      if (this._closed) return Promise.reject(new PushgateError('closed', 'client closed'));
      if (this._follow) return this._follow('req', { kind, body });
      return new Promise((resolve, reject) => {
        const item = { kind, body, resolve, reject };
        if (this._state === 'connected' && this._t && !this._queue.length) return this._execute(item);
        if (this._queue.length >= this.options.queueLimit) {
          return reject(new PushgateError('queue_full', `more than ${this.options.queueLimit} calls waiting for a connection`));
        }
        item.timer = setTimeout(() => {
          const i = this._queue.indexOf(item);
          if (i >= 0) this._queue.splice(i, 1);
          reject(new PushgateError('timeout', 'no connection within queueTimeout'));
        }, this.options.queueTimeout);
        this._queue.push(item);
      });
    }

    /** Send queued calls in order; over HTTP each waits for the previous answer. */
    async _flushQueue() {
      if (this._flushing) return;
      this._flushing = true;
      try {
        while (this._queue.length && this._state === 'connected' && this._t) {
          const item = this._queue.shift();
          clearTimeout(item.timer);
          const done = this._execute(item);
          if (this._t.kind !== 'websocket') await done;
        }
      } finally {
        this._flushing = false;
      }
    }

    /** Run one call on the active transport; settles the caller's promise. */
    _execute(item) {
      const run = this._t && this._t.kind === 'websocket' ? this._wsCall(item) : this._httpCall(item);
      return run.then(item.resolve, item.reject);
    }

    _wsCall({ kind, body }) {
      const ref = String(++this._ref);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this._pending.delete(ref);
          reject(new PushgateError('timeout', `no answer to ${kind} within requestTimeout`));
        }, this.options.requestTimeout);
        const settle = (fn) => (v) => { clearTimeout(timer); fn(v); };
        this._pending.set(ref, { resolve: settle(resolve), reject: settle(reject) });
        const bytes = bytesOf(body.data);
        if (!bytes) return this._t.send(Object.assign({ op: kind, ref }, body));
        // Bytes go as a binary frame: the op's JSON head, a newline, the bytes.
        const head = new TextEncoder().encode(`${JSON.stringify(Object.assign({ op: kind, ref }, body, { data: undefined }))}\n`);
        const frame = new Uint8Array(head.length + bytes.length);
        frame.set(head);
        frame.set(bytes, head.length);
        this._t.sendBytes(frame);
      }).then((ack) => (kind === 'send' ? ack.data : { channel: ack.channel, id: ack.id }));
    }

    async _httpCall({ kind, body }, retried) {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), this.options.requestTimeout);
      let resp;
      try {
        resp = await fetch(`${this._http}/${kind}`, {
          method: 'POST',
          headers: Object.assign({ 'content-type': 'application/json' }, this._authHeader()),
          body: JSON.stringify(bytesOf(body.data)
            ? Object.assign({}, body, { data: undefined, data_base64: base64Of(bytesOf(body.data)) })
            : body),
          signal: ctl.signal,
          credentials: 'same-origin',
        });
      } catch (e) {
        throw new PushgateError(ctl.signal.aborted ? 'timeout' : 'network', String(e && e.message));
      } finally {
        clearTimeout(timer);
      }
      const json = await resp.json().catch(() => ({}));
      if (resp.status === 401 && !retried && this.options.getToken) {
        await this._refreshToken();
        return this._httpCall({ kind, body }, true);
      }
      if (!resp.ok) throw new PushgateError(json.error || `http_${resp.status}`, json.message);
      return kind === 'send' ? json.data : json;
    }

    _failAll(err) {
      for (const item of this._queue.splice(0)) { clearTimeout(item.timer); item.reject(err); }
      for (const [, p] of this._pending) p.reject(err);
      this._pending.clear();
    }

    _authHeader() {
      return this._token ? { authorization: `Bearer ${this._token}` } : {};
    }

    /** Query string shared by the three transports. */
    _query(extra) {
      const q = new URLSearchParams();
      const channels = this._channels();
      if (channels.length) q.set('channels', channels.join(','));
      this._carried = new Set(channels);
      if (this._cursor) q.set('cursor', this._cursor);
      for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
      return q.toString();
    }
  }

  // ---- transports ---------------------------------------------------------
  // Each calls onopen once, onframe per parsed frame, onclose once with
  // {code, reason, auth (token refused), refused (server said no), retryAfter}.

  class WsTransport {
    constructor(client) { this.c = client; this.open = false; this.received = false; }

    start() {
      // Messages of bytes come as binary frames, not base64; cursors may
      // come in their own frames (`case 'cursor'`), which lets compressed
      // messages be shared by every subscriber.
      const extra = this.c._token
        ? { token: this.c._token, binary: 1, cursor_frames: 1 }
        : { binary: 1, cursor_frames: 1 };
      let ws;
      try {
        ws = new WebSocket(`${this.c._ws}/ws?${this.c._query(extra)}`, 'pushgate.v1');
        ws.binaryType = 'arraybuffer';
      } catch (e) {
        return setTimeout(() => this._end({ code: 0, reason: String(e && e.message) }));
      }
      this.ws = ws;
      this.timer = setTimeout(() => this._end({ code: 0, reason: 'connect timeout' }), this.c.options.connectTimeout);
      ws.onopen = () => {
        clearTimeout(this.timer);
        this.open = true;
        this.onopen();
        this._ping();
        this._renewLater();
      };
      ws.onmessage = (ev) => {
        this.received = true;
        this.lastSeen = Date.now();
        let f;
        try {
          f = typeof ev.data === 'string' ? JSON.parse(ev.data) : binaryFrame(ev.data);
        } catch (_) { return; }
        if (!f) return;
        if (f.type === 'error' && f.code === 'token_expired') this.expired = true;
        if (f.type === 'ack' && f.op === 'ping' && f.ref === this.pingRef) {
          this.c._latency = Date.now() - this.pingAt;
          return;
        }
        this.onframe(f);
      };
      ws.onclose = (ev) => this._end({
        code: ev.code,
        reason: ev.reason,
        auth: this.expired || (ev.code === 1008 && /token/i.test(ev.reason)),
      });
    }

    /** Round trip every 20 s: the latency figure, and a dead-link detector. */
    _ping() {
      this.pingRef = `p${++this.c._ref}`;
      this.pingAt = Date.now();
      this.send({ op: 'ping', ref: this.pingRef });
      this.pingTimer = setTimeout(() => {
        if (Date.now() - (this.lastSeen || 0) > this.c.options.staleAfter) return this._end({ code: 0, reason: 'stale' });
        this._ping();
      }, 20000);
    }

    /** Renew the token on the open socket before it expires (`refreshEarly`). */
    _renewLater() {
      const { getToken, refreshEarly } = this.c.options;
      const exp = this.c._token && jwtExp(this.c._token);
      if (!getToken || !refreshEarly || !exp) return;
      const left = exp - Date.now();
      this.renewTimer = setTimeout(async () => {
        try {
          const token = await this.c._refreshToken();
          if (this.done) return;
          this.send({ op: 'auth', token, ref: `a${++this.c._ref}` });
          this._renewLater();
        } catch (e) {
          // The server will say token_expired; the reactive path takes over.
        }
      }, Math.max(0, left - Math.min(refreshEarly, left / 3)));
    }

    send(obj) { if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(obj)); }

    sendBytes(frame) { if (this.ws && this.ws.readyState === 1) this.ws.send(frame); }

    update(added, removed) {
      for (const channel of added) this.send({ op: 'subscribe', channel, cursor: this.c._cursor || undefined, ref: `s${++this.c._ref}` });
      for (const channel of removed) this.send({ op: 'unsubscribe', channel });
    }

    _end(info) {
      if (this.done) return;
      this.done = true;
      clearTimeout(this.timer);
      clearTimeout(this.pingTimer);
      clearTimeout(this.renewTimer);
      if (this.ws) {
        this.ws.onclose = this.ws.onmessage = this.ws.onopen = null;
        try { this.ws.close(); } catch (_) { /* already closed */ }
      }
      this.onclose(info);
    }

    close() { this._end({ code: 1000, reason: 'closed by client' }); }
  }

  /** Shared by SSE and long-poll: one fetch at a time, aborted on update or close. */
  class HttpTransport {
    constructor(client) { this.c = client; this.open = false; this.received = false; }

    start() { this._loop(); }

    update() {
      // New channel set: restart the request with the same cursor.
      if (this.ctl) this.ctl.abort();
    }

    async _fetch(url, timeout) {
      this.ctl = new AbortController();
      const ctl = this.ctl;
      this.timedOut = false;
      const timer = setTimeout(() => { this.timedOut = true; ctl.abort(); }, timeout);
      try {
        const resp = await fetch(url, { headers: this.c._authHeader(), signal: ctl.signal, cache: 'no-store', credentials: 'same-origin' });
        return { resp, ctl, timer };
      } catch (e) {
        clearTimeout(timer);
        if (ctl.signal.aborted && !this.done && !this.timedOut) return { restart: true };
        throw e;
      }
    }

    /** A refusal before the stream started: map the status to what `_lost` needs. */
    async _refusal(resp) {
      const json = await resp.json().catch(() => ({}));
      const retry = Number(resp.headers.get('retry-after'));
      if (resp.status !== 401 || !this.c.options.getToken) this.c._emit('error', { code: json.error || `http_${resp.status}`, message: json.message });
      if (resp.status === 400 && json.error === 'bad_cursor') this.c._cursor = '';
      return {
        code: resp.status,
        reason: json.error || '',
        auth: resp.status === 401,
        // The gateway said no (its JSON error): retrying elsewhere won't help. Anything
        // else (a proxy's 404 or 502) means this transport does not get through.
        refused: !!json.error && [400, 401, 403, 413, 429, 503].includes(resp.status),
        retryAfter: retry > 0 ? retry * 1000 : undefined,
      };
    }

    _opened() {
      if (this.open) return;
      this.open = true;
      this.onopen();
    }

    _end(info) {
      if (this.done) return;
      this.done = true;
      if (this.ctl) this.ctl.abort();
      this.onclose(info);
    }

    close() { this._end({ code: 1000, reason: 'closed by client' }); }
  }

  class SseTransport extends HttpTransport {
    async _loop() {
      while (!this.done) {
        // With no channels there is nothing to stream: idle until update().
        if (!this.c._channels().length) { this._opened(); await new Promise((r) => (this.wake = r)); continue; }
        let r;
        try {
          r = await this._fetch(`${this.c._http}/sse?${this.c._query()}`, this.c.options.connectTimeout);
        } catch (e) {
          return this._end({ code: 0, reason: String(e && e.message) });
        }
        if (r.restart) continue;
        clearTimeout(r.timer);
        if (!r.resp.ok) return this._end(await this._refusal(r.resp));
        // Open on the first bytes, not the headers: a buffering proxy sends
        // headers and then holds the stream, which must count as a failure.
        const ended = await this._read(r.resp.body.getReader(), r.ctl, () => {
          if (!this.open) this.c._latency = Date.now() - this.startedAt;
          this._opened();
        });
        if (ended === 'silent') return this._end({ code: 0, reason: 'no data within connectTimeout (a buffering proxy?)' });
        if (ended === 'aborted' && !this.done) continue;
        return this._end({ code: 0, reason: 'stream ended' });
      }
    }

    update() { if (this.wake) { const w = this.wake; this.wake = null; w(); } super.update(); }

    /** Parse `text/event-stream` by hand: fetch lets us see statuses EventSource hides. */
    async _read(reader, ctl, onFirst) {
      const dec = new TextDecoder();
      let buf = '';
      let stale;
      let first = true;
      let silent = false;
      const arm = (ms) => {
        clearTimeout(stale);
        stale = setTimeout(() => { silent = true; ctl.abort(); reader.cancel().catch(() => {}); }, ms);
      };
      const timedOut = () => (first && !this.open ? 'silent' : 'aborted');
      // The gateway writes its preamble at once: silence until connectTimeout is a failure.
      arm(this.open ? this.c.options.staleAfter : this.c.options.connectTimeout);
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return silent ? timedOut() : 'done';
          if (first) { first = false; onFirst(); }
          arm(this.c.options.staleAfter);
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + (buf[i] === '\r' ? 4 : 2));
            const lines = block.split(/\r?\n/);
            const field = (name) => lines.filter((l) => l.startsWith(`${name}:`)).map((l) => l.slice(name.length + 1).replace(/^ /, ''));
            const data = field('data').join('\n');
            const id = field('id').pop();
            if (!data) {
              // `id:` alone: the stream's starting cursor, covering channels just added.
              if (id && this === this.c._t) this.c._cursor = id;
              continue;
            }
            this.received = true;
            try {
              const f = JSON.parse(data);
              // A long cursor is left out of the JSON: `id:` always carries it.
              if (id && f && f.cursor === undefined) f.cursor = id;
              this.onframe(f);
            } catch (_) { /* not ours */ }
          }
        }
      } catch (_) {
        if (silent) return timedOut();
        return ctl.signal.aborted ? 'aborted' : 'error';
      } finally {
        clearTimeout(stale);
      }
    }
  }

  class PollTransport extends HttpTransport {
    async _loop() {
      let first = true;
      while (!this.done) {
        if (!this.c._channels().length) { this._opened(); await new Promise((r) => (this.wake = r)); continue; }
        // The first poll returns at once: it proves the endpoint works and pins the cursor.
        const hold = first ? 0 : this.c.options.pollTimeout;
        const started = Date.now();
        let r;
        try {
          r = await this._fetch(`${this.c._http}/poll?${this.c._query({ timeout: hold })}`, hold * 1000 + this.c.options.connectTimeout);
        } catch (e) {
          return this._end({ code: 0, reason: String(e && e.message) });
        }
        if (r.restart) continue;
        let body;
        try {
          if (!r.resp.ok) return this._end(await this._refusal(r.resp));
          body = await r.resp.json();
        } catch (e) {
          if (r.ctl.signal.aborted && !this.done) continue;
          return this._end({ code: 0, reason: String(e && e.message) });
        } finally {
          clearTimeout(r.timer);
        }
        if (this.done) return;
        if (first) this.c._latency = Date.now() - started;
        first = false;
        this._opened();
        for (const f of body.messages || []) { this.received = true; this.onframe(f); }
        if (body.cursor && this === this.c._t) this.c._cursor = body.cursor;
      }
    }

    update() { if (this.wake) { const w = this.wake; this.wake = null; w(); } super.update(); }
  }

  // ---- one connection per browser ------------------------------------------

  /**
   * Tabs of one origin share one connection: a Web Lock elects the leader,
   * which connects for the union of every tab's channels and relays over a
   * BroadcastChannel; followers forward publish/send to it. When the leader
   * tab goes, its lock is released, the next tab in line takes over and
   * resumes from the cursor it has been tracking all along.
   */
  function share(c) {
    const name = `pushgate:${c._http}`;
    const bc = new BroadcastChannel(name);
    const tab = Math.random().toString(36).slice(2);
    const followers = new Map(); // tab -> channels
    const calls = new Map(); // id -> {kind, body, resolve, reject}
    const abort = new AbortController();
    let seq = 0;
    let release = null;
    const post = (t, body) => bc.postMessage(Object.assign({ t, tab }, body));
    c._leader = false;
    c._shared = { transport: null };

    c._follow = (t, body) => {
      if (t === 'sub') return post('sub', body);
      return new Promise((resolve, reject) => {
        const id = `${tab}:${++seq}`;
        const timer = setTimeout(() => {
          calls.delete(id);
          reject(new PushgateError('timeout', 'no answer from the leader tab'));
        }, c.options.queueTimeout + c.options.requestTimeout);
        const settle = (fn) => (v) => { clearTimeout(timer); calls.delete(id); fn(v); };
        calls.set(id, { kind: body.kind, body: body.body, resolve: settle(resolve), reject: settle(reject) });
        post('req', { id, kind: body.kind, body: body.body });
      });
    };

    const lead = (m) => {
      if (m.t === 'sub') { followers.set(m.tab, m.channels); return c._sync(); }
      if (m.t === 'bye') { followers.delete(m.tab); return c._sync(); }
      if (m.t === 'hello') return post('state', { state: c._state, transport: c._t ? c._t.kind : null, cursor: c._cursor });
      if (m.t === 'req') {
        c._request(m.kind, m.body).then(
          (value) => post('res', { id: m.id, ok: true, value }),
          (e) => post('res', { id: m.id, ok: false, code: e.code || 'error', message: e.message }),
        );
      }
    };

    const follow = (m) => {
      if (m.t === 'msg') return c._deliver(m.m);
      if (m.t === 'cursor') { if (m.cursor) c._cursor = m.cursor; return; }
      if (m.t === 'reset') {
        for (const ch of m.f.channels || []) c._lastIds.delete(ch);
        if (m.f.cursor) c._cursor = m.f.cursor;
        return;
      }
      if (m.t === 'state') {
        c._state = m.state;
        c._shared.transport = m.transport;
        if (m.cursor) c._cursor = m.cursor;
        return;
      }
      if (m.t === 'event') {
        const d = m.detail || {};
        if (m.name === 'connect') { c._state = 'connected'; c._shared.transport = d.transport; }
        if (m.name === 'disconnect') c._state = 'connecting';
        if (m.name === 'transport') c._shared.transport = d.to;
        return c._emit(m.name, d);
      }
      if (m.t === 'res' && calls.has(m.id)) {
        const call = calls.get(m.id);
        return m.ok ? call.resolve(m.value) : call.reject(new PushgateError(m.code, m.message));
      }
      if (m.t === 'leader') {
        // A new leader knows nothing of us yet: tell it our channels and unanswered calls.
        post('sub', { channels: [...c._handlers.keys()] });
        for (const [id, call] of calls) post('req', { id, kind: call.kind, body: call.body });
      }
    };

    bc.onmessage = (ev) => (c._leader ? lead(ev.data) : follow(ev.data));
    post('hello', {});
    post('sub', { channels: [...c._handlers.keys()] });
    root.addEventListener && root.addEventListener('pagehide', () => { if (!c._leader) post('bye', {}); });

    navigator.locks.request(name, { signal: abort.signal }, () => new Promise((resolve) => {
      release = resolve;
      if (c._closed) return resolve();
      c._leader = true;
      c._follow = null;
      c._relay = (t, body) => post(t, t === 'msg' ? { m: body } : t === 'reset' ? { f: body } : body);
      c._extraChannels = () => [].concat(...followers.values());
      for (const [id, call] of calls) {
        // Our own calls that waited on a leader now run here.
        calls.delete(id);
        c._request(call.kind, call.body).then(call.resolve, call.reject);
      }
      c._emit('leader', { leader: true });
      post('leader', {});
      queueMicrotask(() => c._connect());
    })).catch(() => { /* closed before becoming leader */ });

    c._unshare = () => {
      abort.abort();
      if (release) release();
      if (!c._leader) post('bye', {});
      bc.close();
    };
  }

  Pushgate.PushgateError = PushgateError;
  Pushgate.version = '1';
  root.Pushgate = Pushgate;
})(globalThis);
