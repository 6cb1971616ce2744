// A Laravel Echo page with the real, unmodified pusher-js under Node (over
// `ws`), driven by tests/integration/pusher_e2e: log in and authorize
// through the gateway (echo_road.js), subscribe, send a client event, then
// wait for an event the test triggers.
//
// Usage: node echo.js '<json settings>'
// settings: { host, port, key, user, private, refused, presence, event }
// Prints JSON lines: {"ready":…} once subscribed, {"done":…} when the
// triggered event arrived (then it disconnects and exits 0).

const { say, fail, connect, subscribed } = require("./echo_road");

const s = JSON.parse(process.argv[2]);
setTimeout(() => fail("timed out"), 20000);

async function main() {
  const p = await connect(s.host, s.port, s.key, s.user);
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
