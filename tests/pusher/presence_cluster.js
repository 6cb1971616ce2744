// Presence across two gateways sharing one Redis, with pusher-js under Node
// (tests/integration/pusher_e2e/cluster.rs). A watcher on gateway A; user 1
// with a tab on A and a tab on B; user 2 on B. The watcher must see one
// member set: 1 and 2 added once each, 1 not removed while its tab on B
// stays, then 2 removed, then 1 removed when its last tab goes.
//
// Usage: node presence_cluster.js '<json settings>'
// settings: { host, a, b (ports), key, channel }
// Prints {"done":{log, …}} and exits 0.

const { say, fail, connect, subscribed } = require("./echo_road");

const s = JSON.parse(process.argv[2]);
setTimeout(() => fail("timed out"), 30000);

async function main() {
  const log = [];
  const watcher = await connect(s.host, s.a, s.key, "w");
  const room = watcher.subscribe(s.channel);
  let removed = null;
  const twoRemoved = new Promise((resolve) => {
    removed = resolve;
  });
  room.bind("pusher:member_added", (m) => log.push(["added", m.id]));
  room.bind("pusher:member_removed", (m) => {
    log.push(["removed", m.id]);
    if (log.filter((e) => e[0] === "removed").length === 2) removed();
  });
  await subscribed(room);

  const until = (what, cond) =>
    new Promise((resolve) => {
      const check = () => (cond() ? resolve() : setTimeout(check, 20));
      check();
    });
  const oneOnA = await connect(s.host, s.a, s.key, "1");
  await subscribed(oneOnA.subscribe(s.channel));
  const oneOnB = await connect(s.host, s.b, s.key, "1");
  // The members object stays live: each count is read when it is given.
  const counts = { b_tab_of_1: (await subscribed(oneOnB.subscribe(s.channel))).count };
  const twoOnB = await connect(s.host, s.b, s.key, "2");
  counts.two = (await subscribed(twoOnB.subscribe(s.channel))).count;
  await until("2 added on A", () => log.some((e) => e[0] === "added" && e[1] === "2"));
  counts.watcher = room.members.count;

  oneOnA.disconnect();
  log.push(["1 left A"]);
  twoOnB.disconnect();
  log.push(["2 left B"]);
  await until("2 removed", () => log.some((e) => e[0] === "removed" && e[1] === "2"));
  counts.after_2_left = room.members.count;
  oneOnB.disconnect();
  log.push(["1 left B"]);
  await twoRemoved;
  counts.end = room.members.count;
  say({ done: { log, counts } });
  watcher.disconnect();
  setTimeout(() => process.exit(0), 100);
}

main().catch((e) => fail(String(e)));
