"""A real SMTP server for the delivery tests (aiosmtpd).

usage: smtp_sink.py PORT DIR [--starttls CERT KEY | --tls CERT KEY] [--auth USER PASSWORD]

With --starttls it requires STARTTLS before mail; with --tls it speaks TLS
from the first byte (SMTPS); with --auth it requires
AUTH (PLAIN or LOGIN, only after STARTTLS when both are given).

Writes every message it accepts to DIR/<n>.json ({"from", "to", "data"})
before it answers, then waits as many seconds as the file DIR/delay says (if
it exists), so a test can kill the host while the reply is outstanding.
Prints "ready" once it listens.
"""

import asyncio
import itertools
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


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
    args = sys.argv[3:]
    options = {}
    if "--starttls" in args:
        i = args.index("--starttls")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args[i + 1], args[i + 2])
        options.update(tls_context=context, require_starttls=True)
    if "--tls" in args:
        i = args.index("--tls")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args[i + 1], args[i + 2])
        options.update(ssl_context=context)
    if "--auth" in args:
        i = args.index("--auth")
        user, password = args[i + 1].encode(), args[i + 2].encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user and auth_data.password == password
            return AuthResult(success=ok, handled=False)

        options.update(authenticator=authenticator, auth_required=True,
                       auth_require_tls="--starttls" in args)
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port,
                            server_hostname="localhost", **options)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
