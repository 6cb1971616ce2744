// Subscribers and publisher of bench/deflate.sh: N WebSockets (Node's `ws`,
// which offers permessage-deflate as browsers do) on one channel, then, on
// "go" from stdin, M messages of about S bytes of JSON published through
// the admin API at R a second. Prints "ready" once every socket is open, then
// one JSON line: messages received, bytes read off the wire by all sockets
// meanwhile, and the extension negotiated.
//   node bench/deflate_subscribers.js <ws url> <admin host:port> N M S R
const path = require('path');
const http = require('http');
const WebSocket = require(path.join(__dirname, '../tests/pusher/node_modules/ws'));

const [url, admin, N, M, S, R] = process.argv.slice(2);
const n = +N, m = +M, size = +S, rate = +R;
const sockets = [];
let open = 0, received = 0, done = null;

function payload(seq) {
  const rows = [];
  let i = 0;
  while (JSON.stringify(rows).length < size - 40) {
    rows.push({ id: seq * 1000 + i, sku: `SKU-${(seq * 7 + i) % 997}`, price: ((i * 37) % 1000) / 10, name: `widget ${i}`, in_stock: i % 3 !== 0 });
    i++;
  }
  return { seq, rows };
}

function publish(seq) {
  const body = JSON.stringify({ channel: 'public.deflate', data: payload(seq) });
  const [host, port] = admin.split(':');
  const req = http.request({ host, port, path: '/publish', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
  req.on('error', (e) => { console.error(e); process.exit(1); });
  req.end(body);
}

for (let i = 0; i < n; i++) {
  const ws = new WebSocket(url, 'pushgate.v1');
  ws.got = 0;
  ws.on('open', () => { if (++open === n) console.log('ready'); });
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type === 'message' && ++ws.got <= m && ++received === n * m && done) done();
  });
  ws.on('error', (e) => { console.error(String(e)); process.exit(1); });
  sockets.push(ws);
}

process.stdin.once('data', () => {
  const before = sockets.reduce((a, ws) => a + ws._socket.bytesRead, 0);
  const t0 = Date.now();
  done = () => {
    const after = sockets.reduce((a, ws) => a + ws._socket.bytesRead, 0);
    console.log(JSON.stringify({ received, bytes: after - before, ms: Date.now() - t0, extensions: sockets[0].extensions }));
    process.exit(0);
  };
  let seq = 0;
  const timer = setInterval(() => { publish(seq++); if (seq === m) clearInterval(timer); }, 1000 / rate);
  setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', received })); process.exit(1); }, 120000 + (m * 1000) / rate);
});
