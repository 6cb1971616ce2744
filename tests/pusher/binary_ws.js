// Node's `ws` as a pushgate.v1 client of binary messages. Prints one JSON
// record a line: {"ready":true} once subscribed, then {"result":{…}} with
// the bytes it received (hex), the ack of its own binary publish, and the
// bytes of that publish as delivered back to it.
// Usage: node binary_ws.js '{"url":"wss://…/realtime/ws?channels=c&binary=1","channel":"c"}'
'use strict';
const WebSocket = require('ws');

const { url, channel } = JSON.parse(process.argv[2]);
const out = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
setTimeout(() => { out({ failed: 'timeout' }); process.exit(1); }, 15000);

/** A binary frame: its JSON head and its bytes. */
function split(buf) {
  const at = buf.indexOf(10);
  return { head: JSON.parse(buf.subarray(0, at).toString('utf8')), bytes: buf.subarray(at + 1) };
}

const ws = new WebSocket(url, 'pushgate.v1');
const result = {};
ws.on('open', () => ws.send(JSON.stringify({ op: 'ping', ref: 'ready' })));
ws.on('message', (data, isBinary) => {
  if (!isBinary) {
    const f = JSON.parse(data.toString('utf8'));
    if (f.ref === 'ready') return out({ ready: true });
    if (f.ref === 'back') { result.ack = f; return; }
    return out({ failed: `unexpected text frame ${data}` });
  }
  const { head, bytes } = split(data);
  if (head.event === 'back') {
    result.echoed = bytes.toString('hex');
    out({ result });
    ws.close();
    return;
  }
  result.received = bytes.toString('hex');
  result.head = head;
  // Send the bytes back reversed, as a binary publish.
  const reversed = Buffer.from(bytes).reverse();
  const headLine = Buffer.from(`${JSON.stringify({ op: 'publish', channel, event: 'back', ref: 'back' })}\n`);
  ws.send(Buffer.concat([headLine, reversed]), { binary: true });
});
ws.on('error', (e) => { out({ failed: String(e) }); process.exit(1); });
ws.on('close', () => process.exit(0));
