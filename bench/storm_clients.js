// Storm clients of bench/storm.sh: N subscribers (half WebSocket, half SSE)
// on C channels from A source addresses (127.0.0.1 …), a publisher of R
// messages/s spread over the channels, and one disruption (a shell command
// run once every client streams). Every client resumes with the wire
// protocol's cursor (WebSocket `cursor=`, SSE `Last-Event-ID`), honours the
// server's reconnect delay (`retry`) and `Retry-After`, and otherwise backs
// off with full jitter. Loss and duplicates are counted per client by the
// message's per-channel sequence number and by message id. Prints one JSON
// line at the end.
//   node bench/storm_clients.js <json options>
// options: { urls: ["http://127.0.0.1:18480"], publish: "http://127.0.0.1:19390",
//   n, channels, addrs, rate, before_s, after_s, disrupt: "shell command",
//   procs: client processes (default: one per 2,500 clients) }
// The disruption command prints `listening <epoch ms>` when the server the
// clients come back to listens (scenario a); without it, times are taken
// from each client's first retry (scenario b).
//
// One Node process cannot hold thousands of clients and publish 1,000
// messages/s: its event loop falls behind and the times measure it rather
// than the gateway. So this process only coordinates: it forks `procs`
// client processes (each a contiguous share of the indices; a client's
// channel and source address are taken from its index) and one publisher
// process, and
// adds up their figures. Each process checks that its share fits its
// open-files limit before it starts.
'use strict';
const path = require('path');
const http = require('http');
const fs = require('fs');
const { spawn, fork } = require('child_process');

const o = JSON.parse(process.argv[2]);
const role = process.argv[3] || 'coordinator';
const MAX_SEQ = o.rate * (o.before_s + o.after_s + 60) / o.channels + 100;
const now = () => Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms) {
  const until = now() + ms;
  while (!cond() && now() < until) await sleep(50);
  return cond();
}
// This process's open-files soft limit, from /proc.
function fdLimit() {
  const m = /Max open files\s+(\d+|unlimited)/.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}
// The answer to the coordinator's `q`, once.
function onRequest(q, f) {
  process.on('message', async (m) => { if (m.q === q) process.send({ a: q, v: await f(m) }); });
}

if (role === 'clients') {
  const WebSocket = require(path.join(__dirname, '../tests/pusher/node_modules/ws'));
  const stats = { refusals: {}, refusalsDuring: {}, why: {}, resets: 0, connects: 0, errors: 0, connRefused: 0 };
  let armed = false;
  // A refusal, by status; those after the disruption apart; and why, by
  // the answer's body (the gateway's error message), to tell them apart.
  const refused = (status, res) => {
    stats.refusals[status] = (stats.refusals[status] || 0) + 1;
    if (armed) stats.refusalsDuring[status] = (stats.refusalsDuring[status] || 0) + 1;
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (t) => { if (body.length < 200) body += t; });
    res.on('end', () => { const k = `${status} ${body.slice(0, 120)}`; stats.why[k] = (stats.why[k] || 0) + 1; });
  };
  // A contiguous block of indices: half WebSocket, half SSE, every channel
  // and address represented in each process.
  const mine = [];
  for (let i = Math.floor(o.part * o.n / o.procs); i < Math.floor((o.part + 1) * o.n / o.procs); i++) mine.push(i);
  if (mine.length + 100 > fdLimit()) {
    process.send({ a: 'fatal', v: `client process ${o.part}: ${mine.length} clients do not fit its open-files limit ${fdLimit()}` });
    process.exit(1);
  }
  class Client {
    constructor(i) {
      this.i = i;
      this.kind = i % 2 ? 'sse' : 'ws';
      this.channel = `public.storm.${i % o.channels}`;
      this.local = `127.0.0.${1 + (i % o.addrs)}`;
      this.url = o.urls[i % o.urls.length];
      this.cursor = '';
      this.seen = new Uint8Array(MAX_SEQ);
      this.ids = new Set();
      this.first = -1; this.last = -1; this.dups = 0; this.dupIds = 0;
      this.attempt = 0; this.hint = null; this.streaming = false;
      this.lostAt = null; this.firstRetryAt = null; this.backAt = null; this.storms = 0;
      this.attemptAt = null; this.lastAttemptMs = null;
      // The successful attempt's stages, from its start: TCP connected,
      // answer head (101 or 200), first frame or chunk after the head.
      this.connectAt = null; this.frameAt = null; this.stages = null;
    }
    start() {
      if (this.lostAt !== null && this.firstRetryAt === null) this.firstRetryAt = now();
      this.attemptAt = now();
      this.connectAt = null; this.frameAt = null;
      stats.connects++;
      if (this.kind === 'ws') this.ws(); else this.sse();
    }
    opened() {
      this.streaming = true;
      this.attempt = 0;
      if (this.lostAt !== null && this.backAt === null) {
        this.backAt = now();
        // The gateway's part: from the attempt that succeeded to streaming.
        this.lastAttemptMs = this.backAt - this.attemptAt;
        this.resumed = true;
      }
    }
    // Socket connected (to the balancer in (b)): the kernel's and the
    // balancer's part, and this process's own turn to hear it.
    connected() { if (this.connectAt === null) this.connectAt = now(); }
    // The first frame or chunk after the head: the gateway wrote it.
    framed() {
      if (this.frameAt !== null) return;
      this.frameAt = now();
      if (this.resumed && this.stages === null) {
        this.stages = { connect: this.connectAt !== null ? this.connectAt - this.attemptAt : null, head: this.backAt - this.attemptAt, frame: this.frameAt - this.attemptAt };
      }
    }
    lost(retryAfterMs) {
      if (this.done) return;
      if (this.streaming && this.lostAt === null && armed) { this.lostAt = now(); }
      this.streaming = false;
      let delay;
      if (retryAfterMs != null) delay = retryAfterMs;
      else if (this.hint != null) { delay = this.hint; this.hint = null; }
      else {
        // Full jitter: random in [0, min(2 s, 100 ms * 2^n)).
        delay = Math.random() * Math.min(2000, 100 * 2 ** this.attempt);
        this.attempt = Math.min(this.attempt + 1, 10);
      }
      setTimeout(() => this.start(), delay);
    }
    message(f) {
      if (f.type === 'reset') { stats.resets++; return; }
      if (f.type === 'reconnect') { if (f.cursor) this.cursor = f.cursor; if (f.retry != null) this.hint = f.retry; return; }
      if (f.type !== 'message' || !f.data) return;
      if (f.cursor) this.cursor = f.cursor;
      const s = f.data.s;
      if (this.ids.has(f.id)) this.dupIds++; else this.ids.add(f.id);
      if (this.seen[s]) { this.dups++; return; }
      this.seen[s] = 1;
      if (this.first < 0 || s < this.first) this.first = s;
      if (s > this.last) this.last = s;
    }
    ws() {
      let q = `channels=${this.channel}`;
      if (this.cursor) q += `&cursor=${encodeURIComponent(this.cursor)}`;
      const ws = new WebSocket(`${this.url.replace(/^http/, 'ws')}/realtime/ws?${q}`, 'pushgate.v1', { localAddress: this.local, perMessageDeflate: false });
      this.sock = ws;
      if (ws._req) ws._req.on('socket', (s) => s.once('connect', () => this.connected()));
      let ended = false;
      const end = (ra) => { if (!ended) { ended = true; this.lost(ra); } };
      ws.on('open', () => this.opened());
      ws.on('message', (d) => { this.framed(); try { this.message(JSON.parse(d)); } catch (_) { stats.errors++; } });
      ws.on('unexpected-response', (req, res) => {
        refused(res.statusCode, res);
        const ra = Number(res.headers['retry-after']);
        res.on('end', () => req.destroy());
        end(ra > 0 ? ra * 1000 : undefined);
      });
      ws.on('error', (e) => { if (e.code === 'ECONNREFUSED' && armed) stats.connRefused++; end(); });
      ws.on('close', () => end());
    }
    sse() {
      const headers = this.cursor ? { 'last-event-id': this.cursor } : {};
      const u = new URL(`${this.url}/realtime/sse?channels=${this.channel}`);
      const req = http.get({ host: u.hostname, port: u.port, path: u.pathname + u.search, headers, localAddress: this.local, agent: false });
      this.sock = req;
      req.on('socket', (s) => s.once('connect', () => this.connected()));
      let ended = false;
      const end = (ra) => { if (!ended) { ended = true; this.lost(ra); } };
      req.on('error', (e) => { if (e.code === 'ECONNREFUSED' && armed) stats.connRefused++; end(); });
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          refused(res.statusCode, res);
          const ra = Number(res.headers['retry-after']);
          res.on('end', () => end(ra > 0 ? ra * 1000 : undefined));
          return;
        }
        this.opened();
        res.setEncoding('utf8');
        let buf = '';
        let id = null, data = '', event = '';
        res.on('data', (chunk) => {
          this.framed();
          buf += chunk;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
            if (line === '') {
              if (id) this.cursor = id;
              if (data) { try { const f = JSON.parse(data); if (event === 'reconnect') f.type = 'reconnect'; this.message(f); } catch (_) { stats.errors++; } }
              id = null; data = ''; event = '';
            } else if (line.startsWith('id:')) id = line.slice(3).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
            else if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('retry:')) this.hint = Number(line.slice(6).trim());
          }
        });
        res.on('end', () => end());
        res.on('error', () => end());
        res.on('close', () => end());
      });
    }
  }

  // How late this process's event loop runs: a client's times include its
  // process's turn on the cores, which the storm shares with the gateway.
  const loopDelay = require('perf_hooks').monitorEventLoopDelay({ resolution: 10 });
  const clients = [];
  onRequest('start', async () => {
    for (let k = 0; k < mine.length; k++) {
      const c = new Client(mine[k]);
      clients.push(c);
      c.start();
      if (k % 100 === 99) await sleep(20);
    }
    const all = await waitFor(() => clients.every((c) => c.streaming), 60000);
    return { all, connected: clients.filter((c) => c.streaming).length, fd_limit: fdLimit(), clients: clients.length };
  });
  onRequest('arm', () => { armed = true; loopDelay.reset(); loopDelay.enable(); return true; });
  // `lastSeq` per channel: wait (15 s at most) until every client holds its
  // channel's last message, then report raw times and counts.
  onRequest('drain', async (m) => {
    const lastSeq = m.lastSeq;
    const drained = await waitFor(() => clients.every((c) => c.last >= lastSeq[c.i % o.channels]), 15000);
    loopDelay.disable();
    const r = { loopDelay: { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 }, stages: { connect: [], head: [], frame: [], retryWait: [] }, drained, lost: 0, dups: 0, dupIds: 0, hit: 0, short: 0, back: [], fromRetry: [], kinds: { ws: 0, sse: 0 }, refusals: stats.refusals, refusalsDuring: stats.refusalsDuring, why: stats.why, connRefused: stats.connRefused, lastAttempt: [], resets: stats.resets, connects: stats.connects, errors: stats.errors };
    for (const c of clients) {
      c.done = true;
      const ch = c.i % o.channels;
      if (c.first >= 0) {
        for (let s = c.first; s <= lastSeq[ch]; s++) if (!c.seen[s]) r.lost++;
      } else r.short++;
      r.dups += c.dups; r.dupIds += c.dupIds;
      if (c.lostAt !== null) {
        r.hit++; r.kinds[c.kind]++;
        if (c.backAt !== null) {
          r.back.push(c.backAt - (m.listening !== null ? Math.max(m.listening, c.lostAt) : c.lostAt));
          if (c.firstRetryAt !== null) r.fromRetry.push(c.backAt - c.firstRetryAt);
          if (c.lastAttemptMs !== null) r.lastAttempt.push(c.lastAttemptMs);
          if (c.firstRetryAt !== null) r.stages.retryWait.push(c.firstRetryAt - c.lostAt);
          if (c.stages) for (const k of ['connect', 'head', 'frame']) if (c.stages[k] !== null) r.stages[k].push(c.stages[k]);
        }
      }
    }
    for (const c of clients) { try { c.sock.destroy ? c.sock.destroy() : c.sock.terminate(); } catch (_) {} }
    return r;
  });
}

if (role === 'publisher') {
  // R messages/s over the channels: one batch every 10 ms, each message
  // carrying its channel's sequence number.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const seq = new Array(o.channels).fill(0);
  let published = 0, publishErrors = 0, timer = null, startedAt = 0;
  function publishTick() {
    // Catch up to the rate from the start, so a late timer does not lower it.
    const due = Math.floor((now() - startedAt) * o.rate / 1000) - published;
    const per = Math.min(Math.max(0, due), Math.max(1, o.rate));
    if (per === 0) return;
    const batch = [];
    for (let k = 0; k < per; k++) {
      const c = (published + k) % o.channels;
      batch.push({ channel: `public.storm.${c}`, data: { s: seq[c]++ } });
    }
    published += per;
    const body = JSON.stringify(batch);
    const u = new URL(`${o.publish}/publish`);
    const req = http.request({ host: u.hostname, port: u.port, path: '/publish', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) publishErrors++;
      res.resume();
    });
    req.on('error', () => { publishErrors++; });
    req.end(body);
  }
  onRequest('start', () => { startedAt = now(); timer = setInterval(publishTick, 10); return true; });
  onRequest('stop', () => {
    clearInterval(timer);
    const secs = (now() - startedAt) / 1000;
    return { published, publishErrors, rate: Math.round(published / secs), lastSeq: seq.map((s) => s - 1) };
  });
}

function pct(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}
// A forked process of `role`, and `ask(q, extra)`: its answer to `q`.
function worker(role, extra) {
  const w = fork(__filename, [JSON.stringify({ ...o, ...extra }), role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  w.on('message', (m) => {
    if (m.a === 'fatal') { console.error(m.v); process.exit(1); }
    const r = waiting.get(m.a); if (r) { waiting.delete(m.a); r(m.v); }
  });
  w.on('exit', (code) => { if (code && !done) { console.error(`${role} process exited with ${code}`); process.exit(1); } });
  w.ask = (q, more) => new Promise((r) => { waiting.set(q, r); w.send({ q, ...more }); });
  return w;
}
let done = false;
function add(into, from) { for (const [k, v] of Object.entries(from)) into[k] = (into[k] || 0) + v; }

if (role === 'coordinator') (async () => {
  const procs = o.procs || Math.max(1, Math.ceil(o.n / 2500));
  const ws = [];
  for (let p = 0; p < procs; p++) ws.push(worker('clients', { part: p, procs }));
  const pub = worker('publisher', {});
  const started = await Promise.all(ws.map((w) => w.ask('start')));
  const connected = started.reduce((a, s) => a + s.connected, 0);
  const all = started.every((s) => s.all);
  await pub.ask('start');
  await sleep(o.before_s * 1000);
  await Promise.all(ws.map((w) => w.ask('arm')));
  let listening = null, closed = null;
  const disruptAt = now();
  const d = spawn('bash', ['-c', o.disrupt], { stdio: ['ignore', 'pipe', 'inherit'] });
  d.stdout.setEncoding('utf8');
  d.stdout.on('data', (t) => {
    const m = /listening (\d+)/.exec(t);
    if (m && listening === null) listening = Number(m[1]);
    const c = /closed (\d+)/.exec(t);
    if (c && closed === null) closed = Number(c[1]);
  });
  await sleep(o.after_s * 1000);
  const p = await pub.ask('stop');
  const parts = await Promise.all(ws.map((w) => w.ask('drain', { lastSeq: p.lastSeq, listening })));
  const t = { lost: 0, dups: 0, dupIds: 0, hit: 0, short: 0, resets: 0, connects: 0, errors: 0, connRefused: 0 };
  const stages = { connect: [], head: [], frame: [], retryWait: [] };
  const back = [], fromRetry = [], lastAttempt = [], kinds = { ws: 0, sse: 0 }, refusals = {}, refusalsDuring = {}, why = {};
  for (const r of parts) {
    for (const k of Object.keys(t)) t[k] += r[k];
    for (const k of Object.keys(stages)) stages[k].push(...r.stages[k]);
    back.push(...r.back); fromRetry.push(...r.fromRetry); lastAttempt.push(...r.lastAttempt);
    add(kinds, r.kinds); add(refusals, r.refusals); add(refusalsDuring, r.refusalsDuring); add(why, r.why);
  }
  done = true;
  // Not drained: some client still lacks its channel's last message 15 s
  // after publishing stopped, so `lost` counts late messages too.
  const drained = parts.every((r) => r.drained);
  console.log(JSON.stringify({
    drained,
    clients: o.n, client_processes: procs, clients_per_process: started.map((s) => s.clients), fd_limit_per_process: started[0].fd_limit,
    connected_before: connected, all_connected: all, addrs: o.addrs, channels: o.channels, rate: o.rate,
    published: p.published, published_per_s: p.rate, publish_errors: p.publishErrors,
    disrupted: t.hit, disrupted_by_kind: kinds, unresumed: t.hit - back.length, never_received: t.short,
    closed_after_disrupt_ms: closed !== null ? closed - disruptAt : null,
    listening_after_disrupt_ms: listening !== null ? listening - disruptAt : null,
    back_ms: { p50: pct(back, 0.5), p99: pct(back, 0.99), max: pct(back, 1) },
    back_from_first_retry_ms: { p50: pct(fromRetry, 0.5), p99: pct(fromRetry, 0.99), max: pct(fromRetry, 1) },
    // The successful attempt alone (connect, handshake, resume), without
    // the waits and refused attempts before it: what the gateway took.
    back_from_last_attempt_ms: { p50: pct(lastAttempt, 0.5), p99: pct(lastAttempt, 0.99), max: pct(lastAttempt, 1) },
    connections_refused_during_storm: t.connRefused,
    // The successful attempt of each resumed client, from its start, ms:
    // socket connected, answer head, first frame; and the wait from the
    // loss to the first retry. How late each client process's event loop
    // ran during the storm (ms, per process).
    client_stages_ms: Object.fromEntries(Object.entries(stages).map(([k, xs]) => [k, { p50: pct(xs, 0.5), p99: pct(xs, 0.99), max: pct(xs, 1), n: xs.length }])),
    client_loop_delay_ms: parts.map((r) => ({ p50: Math.round(r.loopDelay.p50), p99: Math.round(r.loopDelay.p99), max: Math.round(r.loopDelay.max) })),
    lost: t.lost, duplicated: t.dups, duplicated_ids: t.dupIds, resets: t.resets, refusals, refusals_during_storm: refusalsDuring, refusal_reasons: why, connects: t.connects,
  }));
  for (const w of [...ws, pub]) w.kill();
  process.exit(0);
})();
