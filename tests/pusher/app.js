// A stand-in for an application that uses Pusher (a Laravel app, say),
// built on the official `pusher` server library for Node:
//
//   GET  /login?user=ID           a session cookie (`laravel_session`) and an
//                                 `XSRF-TOKEN` cookie; the body is the token
//   POST /broadcasting/auth       Laravel's channel authorization: form-encoded
//                                 `socket_id` and `channel_name`, the session
//                                 cookie and the `X-CSRF-TOKEN` header;
//                                 answered with `pusher.authorizeChannel`
//   POST /broadcasting/user-auth  Laravel's user authentication (pusher-js's
//                                 `signin`): form-encoded `socket_id`, the
//                                 session cookie and the CSRF header; answered
//                                 with `pusher.authenticateUser` for the
//                                 session's user and the `watch` list it
//                                 logged in with (`/login?user=ID&watch=a,b`)
//   POST /orders                  an action of the app's own, as a page's
//                                 axios calls it: records the session's user
//                                 and Echo's `X-Socket-ID` (what Laravel's
//                                 `broadcast(…)->toOthers()` reads)
//   POST /pusher/webhook          webhooks, checked with the library's own
//                                 `pusher.webhook(req).isValid()`
//   GET  /pusher.min.js           pusher-js's unmodified browser build
//   GET  /echo.iife.js            laravel-echo's, and /axios.min.js axios's
//   GET  /page.html               tests/pusher/page.html
//
// Settings come from the environment: APP_ID, APP_KEY, APP_SECRET,
// WEBHOOK_FAILURES (answer the first N webhooks 500). Every request it
// handles is printed on stdout as one JSON line, for the test to read:
// first {"listening":PORT}, then {"webhook":…}, {"auth":…} and {"order":…}
// records.

const http = require("http");
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const Pusher = require("pusher");

const pusher = new Pusher({
  appId: process.env.APP_ID || "1001",
  key: process.env.APP_KEY || "app-key",
  secret: process.env.APP_SECRET || "app-secret",
  cluster: "mt1",
});
let webhookFailures = Number(process.env.WEBHOOK_FAILURES || 0);

// session id -> { user, csrf }
const sessions = new Map();

function say(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

function cookies(req) {
  const out = {};
  for (const part of (req.headers.cookie || "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { "content-type": type, ...headers });
  res.end(body);
}

// Which private and presence channels a user may have: their own
// `private-user.ID`, any `presence-room.*`, and `private-shared`.
function allowed(user, channel) {
  return (
    channel === `private-user.${user}` ||
    channel === "private-shared" ||
    channel === "private-encrypted-shared" ||
    channel.startsWith("presence-room.")
  );
}

function authorize(req, res, body) {
  const form = new URLSearchParams(body);
  const socketId = form.get("socket_id");
  const channel = form.get("channel_name");
  const jar = cookies(req);
  const session = sessions.get(jar.laravel_session);
  const record = {
    auth: {
      channel,
      socket_id: socketId,
      cookie: req.headers.cookie || null,
      csrf: req.headers["x-csrf-token"] || null,
      content_type: req.headers["content-type"] || null,
      user: session ? session.user : null,
    },
  };
  let status = 200;
  let answer;
  if (!session) {
    status = 401;
  } else if (req.headers["x-csrf-token"] !== session.csrf) {
    status = 419; // Laravel's "page expired": a missing or wrong CSRF token
  } else if (!socketId || !channel || !allowed(session.user, channel)) {
    status = 403;
  } else if (channel.startsWith("presence-")) {
    answer = pusher.authorizeChannel(socketId, channel, {
      user_id: session.user,
      user_info: { name: `User ${session.user}` },
    });
  } else {
    answer = pusher.authorizeChannel(socketId, channel);
  }
  record.auth.status = status;
  say(record);
  if (answer) send(res, 200, "application/json", JSON.stringify(answer));
  else send(res, status, "application/json", JSON.stringify({ message: "Forbidden" }));
}

function webhook(req, res, body) {
  const hook = pusher.webhook({ headers: req.headers, rawBody: body });
  const valid = hook.isValid();
  let events = null;
  let timeMs = null;
  if (valid) {
    events = hook.getEvents();
    timeMs = hook.getTime().getTime();
  }
  const failing = webhookFailures > 0;
  if (failing) webhookFailures -= 1;
  say({ webhook: { valid, events, time_ms: timeMs, answered: failing ? 500 : valid ? 200 : 401 } });
  if (failing) send(res, 500, "text/plain", "try again");
  else if (valid) send(res, 200, "text/plain", "ok");
  else send(res, 401, "text/plain", "invalid");
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://app");
    if (req.method === "GET" && url.pathname === "/login") {
      const user = url.searchParams.get("user") || "1";
      const watch = (url.searchParams.get("watch") || "").split(",").filter((w) => w);
      const id = crypto.randomBytes(16).toString("hex");
      const csrf = crypto.randomBytes(16).toString("hex");
      sessions.set(id, { user, csrf, watch });
      send(res, 200, "text/plain", csrf, {
        "set-cookie": [
          `laravel_session=${id}; Path=/; HttpOnly; SameSite=Lax`,
          `XSRF-TOKEN=${csrf}; Path=/; SameSite=Lax`,
        ],
      });
    } else if (req.method === "POST" && url.pathname === "/broadcasting/auth") {
      authorize(req, res, body);
    } else if (req.method === "POST" && url.pathname === "/broadcasting/user-auth") {
      const session = sessions.get(cookies(req).laravel_session);
      const socketId = new URLSearchParams(body).get("socket_id");
      say({ user_auth: { user: session ? session.user : null, socket_id: socketId } });
      if (!session || req.headers["x-csrf-token"] !== session.csrf || !socketId) {
        send(res, session ? 419 : 401, "application/json", "{}");
      } else {
        const user = { id: session.user, watchlist: session.watch };
        send(res, 200, "application/json", JSON.stringify(pusher.authenticateUser(socketId, user)));
      }
    } else if (req.method === "POST" && url.pathname === "/orders") {
      const session = sessions.get(cookies(req).laravel_session);
      say({
        order: {
          user: session ? session.user : null,
          csrf_ok: !!session && req.headers["x-csrf-token"] === session.csrf,
          socket_id: req.headers["x-socket-id"] || null,
        },
      });
      send(res, 201, "application/json", "{}");
    } else if (req.method === "POST" && url.pathname === "/pusher/webhook") {
      webhook(req, res, body);
    } else if (req.method === "GET" && url.pathname === "/pusher.min.js") {
      const file = path.join(__dirname, "node_modules/pusher-js/dist/web/pusher.min.js");
      send(res, 200, "application/javascript", fs.readFileSync(file));
    } else if (req.method === "GET" && url.pathname === "/echo.iife.js") {
      const file = path.join(__dirname, "node_modules/laravel-echo/dist/echo.iife.js");
      send(res, 200, "application/javascript", fs.readFileSync(file));
    } else if (req.method === "GET" && url.pathname === "/axios.min.js") {
      const file = path.join(__dirname, "node_modules/axios/dist/axios.min.js");
      send(res, 200, "application/javascript", fs.readFileSync(file));
    } else if (req.method === "GET" && url.pathname === "/page.html") {
      send(res, 200, "text/html; charset=utf-8", fs.readFileSync(path.join(__dirname, "page.html")));
    } else {
      send(res, 404, "text/plain", "not found");
    }
  });
});

server.listen(0, "127.0.0.1", () => say({ listening: server.address().port }));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
