// Drives the official `pusher` Node server library, unmodified, against
// the gateway's Pusher HTTP API (tests/integration/pusher_api.rs).
//
// Argument: JSON {"host", "port", "appId", "key", "secret", "skew"?,
// "steps": [...]}. `skew` moves the library's clock by that many seconds
// (a stale timestamp). Each step prints one line of JSON: {"status",
// "body"} for the gateway's answer, {"thrown"} when the library refused to
// send, {"url"} for a "sign" step (a signed URL for a body the test sends
// itself).
const Pusher = require("pusher")
const { createSignedQueryString } = require("pusher/lib/requests")

const config = JSON.parse(process.argv[2])
if (config.skew) {
  const now = Date.now
  Date.now = () => now() + config.skew * 1000
}
const pusher = new Pusher({
  appId: config.appId,
  key: config.key,
  secret: config.secret,
  host: config.host,
  port: config.port,
  useTLS: false,
})

async function answer(promise) {
  try {
    const res = await promise
    return { status: res.status, body: await res.text() }
  } catch (e) {
    if (e.status !== undefined) return { status: e.status, body: e.body }
    return { thrown: String((e && e.message) || e) }
  }
}

function step(s) {
  switch (s.op) {
    case "trigger":
      return answer(pusher.trigger(s.channels, s.event, s.data, s.params))
    case "triggerBatch":
      return answer(pusher.triggerBatch(s.batch))
    case "get":
      return answer(pusher.get({ path: s.path, params: s.params || {} }))
    case "post":
      return answer(pusher.post({ path: s.path, body: s.body }))
    case "sign": {
      const query = createSignedQueryString(pusher.config.token, {
        method: s.method,
        path: s.path,
        body: s.body,
        params: s.params,
      })
      return { url: `http://${config.host}:${config.port}${s.path}?${query}` }
    }
    default:
      return { thrown: `unknown step ${s.op}` }
  }
}

;(async () => {
  for (const s of config.steps) {
    process.stdout.write(JSON.stringify(await step(s)) + "\n")
  }
})()
