"""Drives the official `pusher` Python server library, unmodified, against
the gateway's Pusher HTTP API (tests/integration/pusher_api.rs).

Argument: JSON {"host", "port", "app_id", "key", "secret", "steps": [...]}.
Each step names a library method and its arguments; it prints one line of
JSON: {"result": ...} with what the method returned, or {"error": the
exception's class, "body": its text} when it raised.
"""

import json
import sys

import pusher

config = json.loads(sys.argv[1])
client = pusher.Pusher(
    app_id=config["app_id"],
    key=config["key"],
    secret=config["secret"],
    host=config["host"],
    port=config["port"],
    ssl=False,
)

for step in config["steps"]:
    method = getattr(client, step["op"])
    try:
        out = {"result": method(*step.get("args", []), **step.get("kwargs", {}))}
    except Exception as e:  # the test reads which one and its text
        out = {"error": type(e).__name__, "body": str(e)}
    print(json.dumps(out), flush=True)
