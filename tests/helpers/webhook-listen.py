#!/usr/bin/env python3
"""webhook-listen PORTFILE LOG: an HTTP server on 127.0.0.1 (an ephemeral
port, written to PORTFILE once listening) that answers every POST with 200
and appends its body to LOG, one line per request.  For the alerts
integration test; stop it with SIGTERM."""
import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace").replace("\n", " ")
        with open(sys.argv[2], "a", encoding="utf-8") as f:
            f.write(body + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: webhook-listen PORTFILE LOG")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
