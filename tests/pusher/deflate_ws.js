// A pushgate.v1 WebSocket through Node's `ws` with its default
// permessage-deflate offer, driven by tests/integration/ws_deflate.rs.
// Usage: node deflate_ws.js <url>   (NODE_EXTRA_CA_CERTS for wss)
// Prints one JSON line per step: the negotiated extensions once open, the
// first message received, then the ack of a large publish op (which `ws`
// sends compressed: it compresses messages of 1 KiB and more) with the
// number of `{"type":"cursor"}` frames seen before it.
const WebSocket = require('ws');

const ws = new WebSocket(process.argv[2], 'pushgate.v1');
const out = (v) => process.stdout.write(JSON.stringify(v) + '\n');
const timer = setTimeout(() => { out({ error: 'timeout' }); process.exit(2); }, 15000);
let stage = 0;
let cursorFrames = 0;
ws.on('open', () => out({ extensions: ws.extensions }));
ws.on('message', (data, isBinary) => {
  const f = JSON.parse(data.toString());
  if (f.type === 'cursor') cursorFrames += 1;
  if (stage === 0 && f.type === 'message') {
    stage = 1;
    out(f);
    const rows = Array.from({ length: 60 }, (_, i) => ({ row: i, note: 'from node ws' }));
    ws.send(JSON.stringify({ op: 'publish', channel: f.channel, event: 'up', data: { rows }, ref: 7 }));
  } else if (stage === 1 && f.type === 'ack') {
    out({ ...f, cursor_frames: cursorFrames });
    clearTimeout(timer);
    ws.close(1000);
  } else if (f.type === 'error') {
    out(f);
  }
});
ws.on('close', () => process.exit(stage === 1 ? 0 : 1));
ws.on('error', (e) => { out({ error: String(e) }); process.exit(1); });
