// Pusher users across gateways (tests/integration/pusher_e2e/users.rs),
// with pusher-js under Node signing in through Laravel's user-auth road
// (POST /broadcasting/user-auth through the gateway to the stand-in app)
// and the official Node server library for sendToUser and
// terminateUserConnections.
//
// alice signs in on A (watching bob) and on B; carol on B; anon on A never
// signs in and tries `#server-to-user-alice`. bob signs in on B, then leaves.
// carol subscribes on B to a cache channel triggered through A. Then
// alice's connections are terminated.
//
// Usage: node users.js '<json settings>'
// settings: { host, a, b (public ports), admin (host:port of A's admin), appId, key, secret }
// Prints {"done":{…}} and exits 0.

const Pusher = require("pusher-js");
const PusherServer = require("pusher");
const { say, fail, base } = require("./echo_road");

const s = JSON.parse(process.argv[2]);
setTimeout(() => fail("timed out"), 30000);

async function login(gateway, user, watch) {
  const r = await fetch(`${gateway}/login?user=${user}&watch=${watch.join(",")}`);
  if (!r.ok) fail(`login answered ${r.status}`);
  const cookie = r.headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .join("; ");
  return { cookie, csrf: await r.text() };
}

// What Laravel Echo's pusher connector does for `signin`: POST the socket
// id to /broadcasting/user-auth with the session, through the gateway.
function userAuth(gateway, session) {
  return async ({ socketId }, callback) => {
    const r = await fetch(`${gateway}/broadcasting/user-auth`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-csrf-token": session.csrf,
        cookie: session.cookie,
      },
      body: new URLSearchParams({ socket_id: socketId }).toString(),
    });
    if (r.ok) callback(null, await r.json());
    else callback(new Error(`user-auth answered ${r.status}`), null);
  };
}

function client(port, extra = {}) {
  const p = new Pusher(s.key, {
    wsHost: s.host,
    wsPort: port,
    wssPort: port,
    forceTLS: true,
    enabledTransports: ["ws"],
    disableStats: true,
    cluster: "unused",
    ...extra,
  });
  p.codes = [];
  p.connection.bind("error", (e) => p.codes.push(e && e.data ? e.data.code : null));
  return p;
}

const until = (cond) =>
  new Promise((resolve) => {
    const check = () => (cond() ? resolve() : setTimeout(check, 20));
    check();
  });

// pusher-js on `port`, signed in as `user` watching `watch`; resolves once
// its `#server-to-user-` channel is subscribed.
async function signedIn(port, user, watch, log) {
  const gateway = base(s.host, port);
  const session = await login(gateway, user, watch);
  const p = client(port, { userAuthentication: { customHandler: userAuth(gateway, session) } });
  p.got = [];
  p.user.watchlist.bind("online", (e) => log.push([user, "online", e.user_ids]));
  p.user.watchlist.bind("offline", (e) => log.push([user, "offline", e.user_ids]));
  p.user.bind("note", (d) => p.got.push(d));
  p.signin();
  await until(() => p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed);
  return p;
}

async function main() {
  const log = [];
  const server = new PusherServer({
    appId: s.appId,
    key: s.key,
    secret: s.secret,
    host: s.admin.split(":")[0],
    port: s.admin.split(":")[1],
    useTLS: false,
  });
  const alice1 = await signedIn(s.a, "alice", ["bob"], log);
  const alice2 = await signedIn(s.b, "alice", [], log);
  const carol = await signedIn(s.b, "carol", [], log);
  // bob is not online yet: alice's first state says so.
  await until(() => log.some((e) => e[0] === "alice" && e[1] === "offline"));
  // pusher-js will not subscribe to a `#` channel itself: the frame is
  // sent as a forging client would.
  const anon = client(s.a);
  await until(() => anon.connection.state === "connected");
  const stolen = [];
  let refused = null;
  anon.connection.bind("message", (m) => {
    if (m.channel !== "#server-to-user-alice") return;
    if (m.event === "pusher:subscription_error") refused = m.data.status;
    else stolen.push(m.event);
  });
  anon.send_event("pusher:subscribe", { channel: "#server-to-user-alice" });
  await until(() => refused !== null);

  const bob = await signedIn(s.b, "bob", [], log);
  await until(() => log.some((e) => e[0] === "alice" && e[1] === "online"));

  await server.sendToUser("alice", "note", { n: 1 });
  await server.sendToUser("carol", "note", { n: 2 });
  await until(() => alice1.got.length && alice2.got.length && carol.got.length);
  // A socket that follows no user hears nothing more within a round trip.
  await server.sendToUser("alice", "note", { n: 3 });
  await until(() => alice1.got.length === 2 && alice2.got.length === 2);

  bob.disconnect();
  await until(() => log.filter((e) => e[0] === "alice" && e[1] === "offline").length === 2);

  // A cache channel's last event, triggered on A, is kept in the shared
  // history: a subscriber on B gets it first.
  await server.trigger("cache-room", "state", { v: 7 });
  const cached = [];
  const room = carol.subscribe("cache-room");
  room.bind_global((event, data) => {
    if (!event.startsWith("pusher:subscription_")) cached.push([event, data]);
  });
  await until(() => cached.length > 0);

  const answer = await server.terminateUserConnections("alice");
  await until(() => alice1.connection.state !== "connected" && alice2.connection.state !== "connected");
  say({
    done: {
      log,
      got: { alice1: alice1.got, alice2: alice2.got, carol: carol.got, anon: stolen },
      refused,
      cached,
      terminate_status: answer.status,
      codes: { alice1: alice1.codes, alice2: alice2.codes },
      states: {
        alice1: alice1.connection.state,
        alice2: alice2.connection.state,
        carol: carol.connection.state,
        anon: anon.connection.state,
      },
    },
  });
  process.exit(0);
}

main().catch((e) => fail(String(e && e.stack ? e.stack : e)));
