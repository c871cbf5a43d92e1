#!/usr/bin/env python3
"""A real SMTP server on loopback for microseg's notification tests (aiosmtpd).

Every accepted message is written to OUT_DIR as NNNN.eml (the raw message as received, with
an X-Sink-Rcpt header per envelope recipient on top) and NNNN.json (envelope, decoded headers
and the decoded text/plain and text/html parts); each written to a temporary name first and
renamed, so a reader never sees half a file. Every RCPT TO is appended to OUT_DIR/rcpt.log.
Prints "PORT <n>" on stdout once it listens.

    smtp_sink.py OUT_DIR [--port 0] [--refuse-rcpt] [--auth USER:PASSWORD]
                 [--tls-cert CERT --tls-key KEY [--implicit-tls]]

--refuse-rcpt   answer every RCPT TO with 550 (a refused delivery)
--auth          advertise AUTH PLAIN/LOGIN and accept only these credentials; every attempt is
                appended to OUT_DIR/auth.log as "ok USER" or "bad USER" (never the password)
--tls-cert/key  offer and require STARTTLS with this certificate, or with --implicit-tls wrap
                the whole connection in TLS (SMTPS)
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write(
        "smtp_sink.py: aiosmtpd is not installed; run tests/support/setup.sh\n")
    sys.exit(3)


class Sink:
    def __init__(self, out_dir, refuse_rcpt):
        self.out_dir = out_dir
        self.refuse_rcpt = refuse_rcpt
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(os.path.join(self.out_dir, "rcpt.log"), "a") as f:
            f.write(("refused " if self.refuse_rcpt else "accepted ") + address + "\n")
        if self.refuse_rcpt:
            return "550 5.1.1 mailbox unavailable (test sink refuses every recipient)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = "%04d.eml" % self.count
        tmp = os.path.join(self.out_dir, "." + name + ".tmp")
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        head = b"".join(b"X-Sink-Rcpt: " + r.encode("utf-8") + b"\r\n" for r in envelope.rcpt_tos)
        head += b"X-Sink-Mail-From: " + (envelope.mail_from or "").encode("utf-8") + b"\r\n"
        with open(tmp, "wb") as f:
            f.write(head + content)
        os.replace(tmp, os.path.join(self.out_dir, name))
        write_json(self.out_dir, "%04d" % self.count, envelope, content)
        return "250 Message accepted for delivery"


def write_json(out_dir, stem, envelope, content):
    msg = email.message_from_bytes(content, policy=email.policy.default)
    parts = {}
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_subtype() in ("plain", "html"):
            parts.setdefault(part.get_content_subtype(), part.get_content())
    doc = {
        "mail_from": envelope.mail_from,
        "rcpt_tos": envelope.rcpt_tos,
        "headers": {k.lower(): str(v) for k, v in msg.items()},
        "content_type": msg.get_content_type(),
        "text": parts.get("plain"),
        "html": parts.get("html"),
    }
    tmp = os.path.join(out_dir, "." + stem + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, stem + ".json"))


def authenticator_for(out_dir, user, password):
    log = os.path.join(out_dir, "auth.log")

    def authenticate(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = login == user and auth_data.password.decode("utf-8", "replace") == password
        with open(log, "a") as f:
            f.write(("ok " if ok else "bad ") + login + "\n")
        # handled=False: aiosmtpd answers (235 or 535) itself.
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main():
    if os.environ.get("SMTP_SINK_DEBUG"):
        import logging
        logging.basicConfig(level=logging.DEBUG)
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--refuse-rcpt", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--implicit-tls", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)

    context = None
    if a.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.tls_cert, a.tls_key)

    handler = Sink(a.out_dir, a.refuse_rcpt)
    kwargs = {}
    if a.auth:
        user, _, password = a.auth.partition(":")
        kwargs["authenticator"] = authenticator_for(a.out_dir, user, password)
        kwargs["auth_require_tls"] = context is not None
    if context is not None and not a.implicit_tls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True

    def factory():
        return SMTP(handler, hostname="sink.test", **kwargs)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host="127.0.0.1", port=a.port,
        ssl=context if a.implicit_tls else None)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
