// Scenarios for the Pusher WebSocket endpoint, driven by the integration
// tests (tests/integration/pusher_ws.rs) with the real, unmodified pusher-js
// (under Node, over `ws`) and the node `pusher` server library signing the
// subscriptions. Usage:
//   node ws_scenarios.js <scenario> '<json settings>'
// settings: { host, port, tls, key, secret, appId, admin }
// Prints one JSON line with what it saw and exits 0; the Rust test asserts.

const Pusher = require('pusher-js');
const PusherServer = require('pusher');

const [scenario, settingsText] = process.argv.slice(2);
const s = JSON.parse(settingsText);

function client(extra = {}) {
  return new Pusher(s.key, {
    wsHost: s.host,
    wsPort: s.port,
    wssPort: s.port,
    forceTLS: s.tls,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'unused',
    ...extra,
  });
}

// Signs with the app's secret (or a wrong one) as an application's auth
// endpoint would, through the official server library.
function authorizer(secret, userFor) {
  const server = new PusherServer({ appId: s.appId, key: s.key, secret, host: 'unused' });
  return ({ socketId, channelName }, callback) => {
    const data = userFor ? userFor(channelName) : undefined;
    callback(null, server.authorizeChannel(socketId, channelName, data));
  };
}

// A pusher-js option signing every subscription with `handler`.
function signing(handler) {
  return { channelAuthorization: { customHandler: handler } };
}

function done(result) {
  console.log(JSON.stringify(result));
  process.exit(0);
}

function fail(why) {
  console.log(JSON.stringify({ failed: why }));
  process.exit(1);
}

setTimeout(() => fail(`timed out in ${scenario}`), 15000);

async function publish(channel, event, data) {
  const r = await fetch(`http://${s.admin}/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channel, event, data }),
  });
  if (!r.ok) fail(`publish answered ${r.status}`);
}

const scenarios = {
  // A pushgate publish reaches a pusher-js subscriber as the event it was
  // published with, its data an object again.
  async public() {
    const p = client();
    const ch = p.subscribe('news-1');
    ch.bind('pusher:subscription_succeeded', () => publish('news-1', 'greet', { x: 1 }));
    ch.bind('greet', (data) => done({ socket_id: p.connection.socket_id, data }));
  },

  // Signed by the app: subscribed; signed with another secret: refused,
  // and the socket stays usable.
  async private() {
    const seen = {};
    const signed = authorizer(s.secret);
    const forged = authorizer('not-the-secret');
    const p = client(
      signing((params, cb) => (params.channelName === 'private-ok' ? signed : forged)(params, cb)),
    );
    p.subscribe('private-ok').bind('pusher:subscription_succeeded', () => {
      seen.ok = true;
      p.subscribe('private-no').bind('pusher:subscription_error', (e) => {
        seen.refused = e;
        // Still usable: a public subscription after the refusal.
        p.subscribe('news-2').bind('pusher:subscription_succeeded', () =>
          done({ ...seen, state: p.connection.state }),
        );
      });
    });
  },

  // Two connections of one user are one member; a watcher sees one
  // member_added, and one member_removed only once both are gone.
  async presence() {
    const user = (id) => (name) => ({ user_id: id, user_info: { name: `user ${id}` } });
    const connect = (id) => client(signing(authorizer(s.secret, user(id))));
    const log = [];
    const watcher = connect('w');
    const wch = watcher.subscribe('presence-room');
    wch.bind('pusher:member_added', (m) => log.push(['added', m.id, m.info]));
    wch.bind('pusher:member_removed', (m) => {
      log.push(['removed', m.id]);
      done({ log, count: wch.members.count });
    });
    wch.bind('pusher:subscription_succeeded', () => {
      const tab1 = connect('u1');
      tab1.subscribe('presence-room').bind('pusher:subscription_succeeded', (members) => {
        log.push(['tab1 sees', members.count]);
        const tab2 = connect('u1');
        tab2.subscribe('presence-room').bind('pusher:subscription_succeeded', (m2) => {
          log.push(['tab2 sees', m2.count, wch.members.count]);
          tab1.disconnect();
          log.push(['tab1 gone']);
          // A round trip through the gateway after tab1's close, then more
          // than twice the gateway's presence_grace: a member_removed owed
          // for tab1 would be here before tab2 leaves.
          watcher.subscribe('news-3').bind('pusher:subscription_succeeded', () => {
            setTimeout(() => {
              log.push(['tab2 leaves']);
              tab2.disconnect();
            }, 3 * s.presenceGraceMs);
          });
        });
      });
    });
  },

  // Client events reach the other socket, never the sender; the 11th in a
  // second is refused with 4301 and the sender stays connected.
  async client_events() {
    const a = client(signing(authorizer(s.secret)));
    const b = client(signing(authorizer(s.secret)));
    const got = { b: [], a: [], errors: [] };
    a.connection.bind('error', (e) => {
      got.errors.push(e.data && e.data.code);
      setTimeout(() => done({ ...got, state: a.connection.state }), 300);
    });
    const cb = b.subscribe('private-chat');
    cb.bind('client-msg', (d) => got.b.push(d.n));
    cb.bind('pusher:subscription_succeeded', () => {
      const ca = a.subscribe('private-chat');
      ca.bind('client-msg', (d) => got.a.push(d.n));
      ca.bind('pusher:subscription_succeeded', () => {
        for (let n = 1; n <= 11; n++) ca.trigger('client-msg', { n });
      });
    });
  },

  // A trigger of the official server library through the HTTP API with a
  // socket_id reaches every subscriber but that socket; the next trigger
  // without one reaches both (one channel keeps order, so `a` seeing
  // `all` without `skip` before it means `skip` was left out, not late).
  async excluded() {
    const [adminHost, adminPort] = s.admin.split(':');
    const api = new PusherServer({
      appId: s.appId, key: s.key, secret: s.secret,
      host: adminHost, port: Number(adminPort), useTLS: false,
    });
    const a = client();
    const b = client();
    const got = { a: [], b: [] };
    const finish = () => {
      if (got.a.includes('all') && got.b.includes('all')) done(got);
    };
    let ready = 0;
    const subscribed = async () => {
      if (++ready < 2) return;
      const r1 = await api.trigger('news-3', 'skip', { n: 1 }, { socket_id: a.connection.socket_id });
      if (r1.status !== 200) fail(`trigger answered ${r1.status}`);
      const r2 = await api.trigger('news-3', 'all', { n: 2 });
      if (r2.status !== 200) fail(`trigger answered ${r2.status}`);
    };
    for (const [name, p] of [['a', a], ['b', b]]) {
      const ch = p.subscribe('news-3');
      for (const event of ['skip', 'all']) {
        ch.bind(event, () => { got[name].push(event); finish(); });
      }
      ch.bind('pusher:subscription_succeeded', subscribed);
    }
  },

  // An unknown key is closed with 4001 and pusher-js does not come back.
  async unknown_key() {
    const p = new Pusher('no-such-key', {
      wsHost: s.host, wsPort: s.port, wssPort: s.port, forceTLS: s.tls,
      enabledTransports: ['ws'], disableStats: true, cluster: 'unused',
    });
    const states = [];
    const errors = [];
    p.connection.bind('state_change', (c) => states.push(c.current));
    p.connection.bind('error', (e) => errors.push(((e.error || e).data || {}).code));
    // Long enough for a retry, had pusher-js decided to make one.
    setTimeout(() => done({ states, errors }), 2500);
  },
};

const run = scenarios[scenario];
if (!run) fail(`no scenario ${scenario}`);
run().catch((e) => fail(String(e)));
