// A Laravel page's JavaScript under Node, configured as Laravel's
// resources/js/echo.js and bootstrap.js configure it: the real, unmodified
// `laravel-echo` with pusher-js as its `Pusher`, `broadcaster: 'pusher'` or
// `'reverb'`, and `axios` as the page's HTTP client (Echo adds its
// `X-Socket-ID` to axios's requests). Authorization goes to
// /broadcasting/auth through the gateway with the headers Echo builds
// (`X-CSRF-TOKEN` from `csrfToken`) plus the session cookie a browser would
// add (Node's XHR may not send a cookie, so the handler adds it).
//
// Usage: node echo_laravel.mjs (an ES module, as laravel-echo is one) '<json settings>'
// settings: { host, port, key, user, broadcaster, private, refused, presence, event }
// Prints JSON lines: {"ready":…} once subscribed and the app's own action
// was posted, {"done":…} when the triggered event arrived.

import Pusher from "pusher-js";
import axios from "axios";
import Echo from "laravel-echo";
import road from "./echo_road.js";

const { say, fail, base, login } = road;

const s = JSON.parse(process.argv[2]);
setTimeout(() => fail("timed out"), 20000);

// What Laravel's bootstrap.js does: axios on the window (here, the global).
globalThis.axios = axios;

function joined(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribed(resolve);
    channel.error(reject);
  });
}

async function main() {
  const gateway = base(s.host, s.port);
  const session = await login(gateway, s.user);
  let echo;
  const options = {
    broadcaster: s.broadcaster,
    key: s.key,
    Pusher,
    wsHost: s.host,
    wsPort: s.port,
    wssPort: s.port,
    forceTLS: true,
    enabledTransports: ["ws"],
    disableStats: true,
    csrfToken: session.csrf,
    authEndpoint: `${gateway}/broadcasting/auth`,
    channelAuthorization: {
      customHandler: async ({ socketId, channelName }, callback) => {
        const r = await fetch(echo.connector.options.authEndpoint, {
          method: "POST",
          headers: {
            ...echo.connector.options.auth.headers,
            "content-type": "application/x-www-form-urlencoded",
            cookie: session.cookie,
          },
          body: new URLSearchParams({ socket_id: socketId, channel_name: channelName }).toString(),
        });
        if (r.ok) callback(null, await r.json());
        else callback(new Error(`auth answered ${r.status}`), { status: r.status });
      },
    },
  };
  // Laravel's echo.js for Pusher names a cluster; for Reverb, Echo clears it.
  if (s.broadcaster === "pusher") options.cluster = "mt1";
  echo = new Echo(options);

  const mine = echo.private(s.private);
  let got;
  const arrived = new Promise((resolve) => (got = resolve));
  // Echo's namespace: "OrderShipped" is App\Events\OrderShipped.
  mine.listen("OrderShipped", got);
  await joined(mine);
  let refused = null;
  try {
    await joined(echo.private(s.refused));
  } catch (e) {
    refused = { type: e.type, error: e.error };
  }
  let here = null;
  const room = echo.join(s.presence).here((users) => (here = users));
  await joined(room);
  room.whisper("typing", { who: s.user });
  // The page's own request, through axios as Laravel pages make it.
  const order = await axios.post(
    `${gateway}/orders`,
    { item: 1 },
    { headers: { cookie: session.cookie, "x-csrf-token": session.csrf } },
  );
  say({
    ready: {
      socket_id: echo.socketId(),
      status: echo.connectionStatus(),
      refused,
      here,
      order: order.status,
    },
  });
  const data = await arrived;
  say({ done: { data } });
  echo.disconnect();
  setTimeout(() => process.exit(0), 100);
}

main().catch((e) => fail(String(e && e.stack ? e.stack : e)));
