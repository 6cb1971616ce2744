"""A pushgate.v1 WebSocket through Python's `websockets`, which offers
permessage-deflate by default and compresses every frame it sends; driven by
tests/integration/ws_deflate.rs.  Usage: python deflate_ws.py <url> [cafile]
Prints one JSON line per step, as deflate_ws.js does (the ack with the
number of cursor frames seen before it)."""

import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect


def out(v):
    print(json.dumps(v), flush=True)


async def main(url, cafile):
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    async with connect(url, subprotocols=["pushgate.v1"], ssl=context) as ws:
        out({"extensions": ws.response.headers.get("Sec-WebSocket-Extensions")})
        cursor_frames = 0
        while True:
            f = json.loads(await ws.recv())
            if f.get("type") == "message":
                break
        out(f)
        rows = [{"row": i, "note": "from python websockets"} for i in range(60)]
        await ws.send(json.dumps({"op": "publish", "channel": f["channel"], "event": "up", "data": {"rows": rows}, "ref": 8}))
        while True:
            f = json.loads(await ws.recv())
            if f.get("type") == "cursor":
                cursor_frames += 1
            if f.get("type") in ("ack", "error"):
                break
        out({**f, "cursor_frames": cursor_frames})


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None), 15))
