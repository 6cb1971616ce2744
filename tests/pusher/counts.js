// Subscription counts and cache channels with pusher-js under Node
// (tests/integration/pusher_e2e/counts.rs), triggers by the official Node
// server library through the gateway's HTTP API.
//
// c1 (on gateway A) and c2 (on B, both on one Redis) subscribe to
// `news-count` and read `pusher:subscription_count`;
// the library triggers twice on `cache-prices`, then c3 subscribes to it
// (the last event comes first) and c3 and c4 to the empty `cache-empty`
// (`pusher:cache_miss` each); then c2 leaves and c1 reads the count fall.
//
// Usage: node counts.js '<json settings>'
// settings: { host, port, port_b, admin (host:port of A), appId, key, secret }
// Prints {"done":{…}} and exits 0.

const Pusher = require("pusher-js");
const PusherServer = require("pusher");
const { say, fail } = require("./echo_road");

const s = JSON.parse(process.argv[2]);
setTimeout(() => fail("timed out"), 30000);

function client(port = s.port) {
  return new Pusher(s.key, {
    wsHost: s.host,
    wsPort: port,
    wssPort: port,
    forceTLS: true,
    enabledTransports: ["ws"],
    disableStats: true,
    cluster: "unused",
  });
}

const until = (cond) =>
  new Promise((resolve) => {
    const check = () => (cond() ? resolve() : setTimeout(check, 20));
    check();
  });

// Subscribe `p` to `name`, recording every event the channel emits.
function watch(p, name) {
  const ch = p.subscribe(name);
  ch.seen = [];
  ch.bind_global((event, data) => ch.seen.push([event, data]));
  return ch;
}

const last = (a) => a[a.length - 1];

async function main() {
  const server = new PusherServer({
    appId: s.appId,
    key: s.key,
    secret: s.secret,
    host: s.admin.split(":")[0],
    port: s.admin.split(":")[1],
    useTLS: false,
  });
  const counts = (ch) =>
    ch.seen.filter((e) => e[0] === "pusher:subscription_count").map((e) => e[1].subscription_count);
  const c1 = client();
  const a = watch(c1, "news-count");
  await until(() => counts(a).length && last(counts(a)) === 1);
  const c2 = client(s.port_b);
  const b = watch(c2, "news-count");
  await until(() => last(counts(a)) === 2 && last(counts(b)) === 2);

  await server.trigger("cache-prices", "price", { v: 1 });
  await server.trigger("cache-prices", "price", { v: 2 });
  const c3 = client();
  const prices = watch(c3, "cache-prices");
  const empty3 = watch(c3, "cache-empty");
  await until(() => prices.seen.some((e) => e[0] === "price"));
  await until(() => empty3.seen.some((e) => e[0] === "pusher:cache_miss"));
  const c4 = client();
  const empty4 = watch(c4, "cache-empty");
  await until(() => empty4.seen.some((e) => e[0] === "pusher:cache_miss"));

  c2.unsubscribe("news-count");
  await until(() => last(counts(a)) === 1);
  const events = (ch) => ch.seen.filter((e) => !e[0].startsWith("pusher:subscription_"));
  say({
    done: {
      a: counts(a),
      b: counts(b),
      prices: events(prices),
      empty3: events(empty3),
      empty4: events(empty4),
    },
  });
  process.exit(0);
}

main().catch((e) => fail(String(e && e.stack ? e.stack : e)));
