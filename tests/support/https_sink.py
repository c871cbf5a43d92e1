#!/usr/bin/env python3
"""An HTTPS webhook receiver on 127.0.0.1 for microseg's TLS webhook test (standard library only).

    https_sink.py OUT_DIR CERT KEY

Answers every POST with 200 "ok" and writes it to OUT_DIR/NNNN.json as
{"path", "idempotency_key", "body"}. Prints "PORT <n>" on stdout once it listens.
"""

import json
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def main():
    out_dir, cert, key = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            count[0] += 1
            doc = {
                "path": self.path,
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "body": json.loads(body or b"null"),
            }
            tmp = os.path.join(out_dir, ".%04d.tmp" % count[0])
            with open(tmp, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, os.path.join(out_dir, "%04d.json" % count[0]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, fmt, *args):
            sys.stderr.write((fmt % args) + "\n")

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
