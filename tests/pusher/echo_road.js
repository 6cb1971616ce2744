// Laravel Echo's road for pusher-js under Node, shared by the scripts that
// drive it: log in to the stand-in application through a gateway, and
// authorize each private and presence channel by POSTing Echo's form
// (socket_id, channel_name) with the session cookie and the X-CSRF-TOKEN
// header to /broadcasting/auth through the gateway. (Echo's browser XHR
// sends the cookie itself; Node's XHR may not, so the handler does what the
// browser does.)

const Pusher = require("pusher-js");

function say(record) {
  console.log(JSON.stringify(record));
}

function fail(why) {
  say({ failed: why });
  process.exit(1);
}

// A gateway at https://host:port.
function base(host, port) {
  return `https://${host}:${port}`;
}

async function login(gateway, user) {
  const r = await fetch(`${gateway}/login?user=${encodeURIComponent(user)}`);
  if (!r.ok) fail(`login answered ${r.status}`);
  const cookie = r.headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .join("; ");
  return { cookie, csrf: await r.text() };
}

// What Echo's pusher connector sends for each channel.
function echoAuthorizer(gateway, session) {
  return async ({ socketId, channelName }, callback) => {
    const r = await fetch(`${gateway}/broadcasting/auth`, {
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

// pusher-js on the gateway at host:port over TLS, logged in as `user`.
async function connect(host, port, key, user) {
  const gateway = base(host, port);
  const session = await login(gateway, user);
  return new Pusher(key, {
    wsHost: host,
    wsPort: port,
    wssPort: port,
    forceTLS: true,
    enabledTransports: ["ws"],
    disableStats: true,
    cluster: "unused",
    channelAuthorization: { customHandler: echoAuthorizer(gateway, session) },
  });
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.bind("pusher:subscription_succeeded", resolve);
    channel.bind("pusher:subscription_error", reject);
  });
}

module.exports = { say, fail, base, login, connect, subscribed };
