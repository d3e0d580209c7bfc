#!/usr/bin/env python3
"""cmesh's reference adapter (docs/apps.md), around a toy app.

The app: every peer holds a set of record ids and floods each new one to all its
links over TCP; a new link first gets everything held (that is its resync). The
adapter: one JSON object a line, `init`/`write`/`published`/`stop` in on stdin,
`ready`/`written`/`seen`/`links`/`publish`/`subscribe`/`stopped` out on stdout.
Neighbours find each other through the sync service: each publishes its address on
the topic `toy-addr`, and the lower index dials. Python 3.7+, standard library only.
"""
import asyncio
import json
import sys


def send(message):
    """One line to the peer. stdout is the protocol: log on stderr or with `log`."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class ToyApp:
    def __init__(self):
        self.held = set()
        self.links = set()

    def add(self, record, came_from=None):
        """Holds `record`; floods it on if it is new. Returns whether it was."""
        if record in self.held:
            return False
        self.held.add(record)
        for link in self.links - {came_from}:
            link.write(record.encode() + b"\n")
        return True

    async def serve(self, reader, writer):
        self.links.add(writer)
        send({"type": "links", "count": len(self.links)})
        writer.write("".join(r + "\n" for r in self.held).encode())
        try:
            async for line in reader:
                record = line.decode().strip()
                if self.add(record, came_from=writer):
                    send({"type": "seen", "id": record})
        except ConnectionError:
            pass
        finally:
            self.links.discard(writer)
            send({"type": "links", "count": len(self.links)})


async def main():
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    init = json.loads(await stdin.readline())
    if init.get("protocol") != 1:
        send({"type": "error", "message": "this adapter speaks protocol 1"})
        return
    app = ToyApp()
    host, port = init["listen"].rsplit(":", 1)
    await asyncio.start_server(app.serve, host, int(port))
    send({"type": "publish", "topic": "toy-addr", "value": init["advertise"]})
    send({"type": "subscribe", "topic": "toy-addr", "from": "neighbours"})
    send({"type": "ready"})
    async for line in stdin:
        message = json.loads(line)
        if message["type"] == "write":
            app.add(message["id"])
            send({"type": "written", "id": message["id"]})
        elif message["type"] == "published" and message["index"] > init["index"]:
            h, p = message["value"].rsplit(":", 1)
            reader, writer = await asyncio.open_connection(h, int(p))
            asyncio.ensure_future(app.serve(reader, writer))
        elif message["type"] == "stop":
            break
    send({"type": "stopped"})


asyncio.run(main())
