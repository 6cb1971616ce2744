"""Python `websockets` as a pushgate.v1 client of binary messages: the same
records as binary_ws.js ({"ready":true}, then {"result":{…}}).

Usage: python binary_ws.py '{"url":"wss://…","channel":"c","ca":"…/gw.crt"}'
"""

import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect


def out(record):
    print(json.dumps(record), flush=True)


def split(frame):
    at = frame.index(b"\n")
    return json.loads(frame[:at].decode()), frame[at + 1 :]


async def main(settings):
    context = ssl.create_default_context(cafile=settings["ca"])
    result = {}
    async with connect(settings["url"], subprotocols=["pushgate.v1"], ssl=context) as ws:
        await ws.send(json.dumps({"op": "ping", "ref": "ready"}))
        async for frame in ws:
            if isinstance(frame, str):
                f = json.loads(frame)
                if f.get("ref") == "ready":
                    out({"ready": True})
                elif f.get("ref") == "back":
                    result["ack"] = f
                else:
                    out({"failed": f"unexpected text frame {frame}"})
                    return
                continue
            head, data = split(frame)
            if head["event"] == "back":
                result["echoed"] = data.hex()
                out({"result": result})
                return
            result["received"] = data.hex()
            result["head"] = head
            op = {"op": "publish", "channel": settings["channel"], "event": "back", "ref": "back"}
            await ws.send(json.dumps(op).encode() + b"\n" + data[::-1])


asyncio.run(asyncio.wait_for(main(json.loads(sys.argv[1])), 15))
