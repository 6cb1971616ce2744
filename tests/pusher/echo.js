// A Laravel Echo page's road with the real, unmodified pusher-js under Node
// (over `ws`), driven by tests/integration/pusher_e2e: log in to the
// stand-in application through the gateway, authorize each private and
// presence channel by POSTing Echo's form (socket_id, channel_name) with the
// session cookie and the X-CSRF-TOKEN header to /broadcasting/auth through
// the gateway (Echo's browser XHR sends the cookie itself; Node's XHR may
// not, so this handler does what the browser does), subscribe, send a
// client event, then wait for an event the test triggers.
//
// Usage: node echo.js '<json settings>'
// settings: { host, port, key, user, private, refused, presence, event }
// Prints JSON lines: {"ready":…} once subscribed, {"done":…} when the
// triggered event arrived (then it disconnects and exits 0).

const Pusher = require("pusher-js");

const s = JSON.parse(process.argv[2]);
const base = `https://${s.host}:${s.port}`;

function say(record) {
  console.log(JSON.stringify(record));
}

function fail(why) {
  say({ failed: why });
  process.exit(1);
}

setTimeout(() => fail("timed out"), 20000);

async function login(user) {
  const r = await fetch(`${base}/login?user=${encodeURIComponent(user)}`);
  if (!r.ok) fail(`login answered ${r.status}`);
  const cookie = r.headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .join("; ");
  return { cookie, csrf: await r.text() };
}

// What Echo's pusher connector sends for each channel.
function echoAuthorizer(session) {
  return async ({ socketId, channelName }, callback) => {
    const r = await fetch(`${base}/broadcasting/auth`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-csrf-token": session.csrf,
        "x-socket-id": socketId,
        "x-requested-with": "XMLHttpRequest",
        cookie: session.cookie,
      },
      body: new URLSearchParams({ socket_id: socketId, channel_name: channelName }).toString(),
    });
    if (r.ok) callback(null, await r.json());
    else callback(new Error(`auth answered ${r.status}`), { status: r.status });
  };
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.bind("pusher:subscription_succeeded", resolve);
    channel.bind("pusher:subscription_error", reject);
  });
}

async function main() {
  const session = await login(s.user);
  const p = new Pusher(s.key, {
    wsHost: s.host,
    wsPort: s.port,
    wssPort: s.port,
    forceTLS: true,
    enabledTransports: ["ws"],
    disableStats: true,
    cluster: "unused",
    channelAuthorization: { customHandler: echoAuthorizer(session) },
  });
  const mine = p.subscribe(s.private);
  const got = new Promise((resolve) => mine.bind(s.event, resolve));
  await subscribed(mine);
  let refused = null;
  try {
    await subscribed(p.subscribe(s.refused));
  } catch (e) {
    refused = e;
  }
  const room = p.subscribe(s.presence);
  const members = await subscribed(room);
  room.trigger("client-typing", { who: s.user });
  say({
    ready: {
      socket_id: p.connection.socket_id,
      refused,
      members: members.count,
      me: members.me && members.me.id,
    },
  });
  const data = await got;
  say({ done: { data } });
  p.disconnect();
  setTimeout(() => process.exit(0), 100);
}

main().catch((e) => fail(String(e)));
