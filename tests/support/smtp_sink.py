"""A real SMTP server for the delivery tests (aiosmtpd, no TLS).

usage: smtp_sink.py PORT DIR

Writes every message it accepts to DIR/<n>.json ({"from", "to", "data"})
before it answers, then waits as many seconds as the file DIR/delay says (if
it exists), so a test can kill the host while the reply is outstanding.
Prints "ready" once it listens.
"""

import asyncio
import itertools
import json
import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.count = itertools.count()

    async def handle_DATA(self, server, session, envelope):
        n = next(self.count)
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf8", errors="replace"),
        }
        tmp = os.path.join(self.out, f".{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, f"{n}.json"))
        try:
            with open(os.path.join(self.out, "delay")) as f:
                await asyncio.sleep(float(f.read().strip() or 0))
        except FileNotFoundError:
            pass
        return f"250 OK queued as sink-{n}"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
