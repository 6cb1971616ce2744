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
//   n, channels, addrs, rate, before_s, after_s, disrupt: "shell command" }
// The disruption command prints `listening <epoch ms>` when the server the
// clients come back to listens (scenario a); without it, times are taken
// from each client's first retry (scenario b).
'use strict';
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');
const WebSocket = require(path.join(__dirname, '../tests/pusher/node_modules/ws'));

const o = JSON.parse(process.argv[2]);
const MAX_SEQ = o.rate * (o.before_s + o.after_s + 60) / o.channels + 100;
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const now = () => Date.now();
const stats = { refusals: {}, refusalsDuring: {}, resets: 0, connects: 0, errors: 0 };
// A refusal, by status; those after the disruption apart.
function refused(status) {
  stats.refusals[status] = (stats.refusals[status] || 0) + 1;
  if (armed) stats.refusalsDuring[status] = (stats.refusalsDuring[status] || 0) + 1;
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
  }
  start() {
    if (this.lostAt !== null && this.firstRetryAt === null) this.firstRetryAt = now();
    stats.connects++;
    if (this.kind === 'ws') this.ws(); else this.sse();
  }
  opened() {
    this.streaming = true;
    this.attempt = 0;
    if (this.lostAt !== null && this.backAt === null) this.backAt = now();
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
    let ended = false;
    const end = (ra) => { if (!ended) { ended = true; this.lost(ra); } };
    ws.on('open', () => this.opened());
    ws.on('message', (d) => { try { this.message(JSON.parse(d)); } catch (_) { stats.errors++; } });
    ws.on('unexpected-response', (req, res) => {
      refused(res.statusCode);
      const ra = Number(res.headers['retry-after']);
      res.resume(); req.destroy();
      end(ra > 0 ? ra * 1000 : undefined);
    });
    ws.on('error', () => end());
    ws.on('close', () => end());
  }
  sse() {
    const headers = this.cursor ? { 'last-event-id': this.cursor } : {};
    const u = new URL(`${this.url}/realtime/sse?channels=${this.channel}`);
    const req = http.get({ host: u.hostname, port: u.port, path: u.pathname + u.search, headers, localAddress: this.local, agent: false });
    this.sock = req;
    let ended = false;
    const end = (ra) => { if (!ended) { ended = true; this.lost(ra); } };
    req.on('error', () => end());
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        refused(res.statusCode);
        const ra = Number(res.headers['retry-after']);
        res.resume();
        res.on('end', () => end(ra > 0 ? ra * 1000 : undefined));
        return;
      }
      this.opened();
      res.setEncoding('utf8');
      let buf = '';
      let id = null, data = '', event = '';
      res.on('data', (chunk) => {
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

let armed = false;
const seq = new Array(o.channels).fill(0);
let published = 0, publishErrors = 0, publishing = true;
function publishTick() {
  if (!publishing) return;
  const per = Math.max(1, Math.round(o.rate / 100));
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms) {
  const until = now() + ms;
  while (!cond() && now() < until) await sleep(50);
  return cond();
}
function pct(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

(async () => {
  const clients = [];
  for (let i = 0; i < o.n; i++) {
    const c = new Client(i);
    clients.push(c);
    c.start();
    if (i % 200 === 199) await sleep(20);
  }
  const all = await waitFor(() => clients.every((c) => c.streaming), 60000);
  const connected = clients.filter((c) => c.streaming).length;
  const timer = setInterval(publishTick, 10);
  await sleep(o.before_s * 1000);
  armed = true;
  let listening = null;
  const disruptAt = now();
  const d = spawn('bash', ['-c', o.disrupt], { stdio: ['ignore', 'pipe', 'inherit'] });
  d.stdout.setEncoding('utf8');
  d.stdout.on('data', (t) => {
    const m = /listening (\d+)/.exec(t);
    if (m && listening === null) listening = Number(m[1]);
  });
  await sleep(o.after_s * 1000);
  publishing = false;
  clearInterval(timer);
  const lastSeq = seq.map((s) => s - 1);
  // Drain: every client holds its channel's last message, or 15 s.
  await waitFor(() => clients.every((c) => c.last >= lastSeq[c.i % o.channels]), 15000);
  let lost = 0, dups = 0, dupIds = 0, hit = 0, short = 0;
  const back = [], fromRetry = [];
  for (const c of clients) {
    c.done = true;
    const ch = c.i % o.channels;
    if (c.first >= 0) {
      for (let s = c.first; s <= lastSeq[ch]; s++) if (!c.seen[s]) lost++;
    } else short++;
    dups += c.dups; dupIds += c.dupIds;
    if (c.lostAt !== null) {
      hit++;
      if (c.backAt !== null) {
        back.push(c.backAt - (listening !== null ? Math.max(listening, c.lostAt) : c.lostAt));
        if (c.firstRetryAt !== null) fromRetry.push(c.backAt - c.firstRetryAt);
      }
    }
  }
  const unresumed = hit - back.length;
  const kinds = { ws: clients.filter((c) => c.kind === 'ws' && c.lostAt !== null).length, sse: clients.filter((c) => c.kind === 'sse' && c.lostAt !== null).length };
  console.log(JSON.stringify({
    clients: o.n, connected_before: connected, all_connected: all, addrs: o.addrs, channels: o.channels, rate: o.rate,
    published, publish_errors: publishErrors,
    disrupted: hit, disrupted_by_kind: kinds, unresumed, never_received: short,
    listening_after_disrupt_ms: listening !== null ? listening - disruptAt : null,
    back_ms: { p50: pct(back, 0.5), p99: pct(back, 0.99), max: pct(back, 1) },
    back_from_first_retry_ms: { p50: pct(fromRetry, 0.5), p99: pct(fromRetry, 0.99), max: pct(fromRetry, 1) },
    lost, duplicated: dups, duplicated_ids: dupIds, resets: stats.resets, refusals: stats.refusals, refusals_during_storm: stats.refusalsDuring, connects: stats.connects,
  }));
  for (const c of clients) { try { c.sock.destroy ? c.sock.destroy() : c.sock.terminate(); } catch (_) {} }
  process.exit(0);
})();
