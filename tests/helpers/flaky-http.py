#!/usr/bin/python3
"""A pass-through HTTP proxy that fails on request, for the storage-s3 tests.

    flaky-http.py UPSTREAM_URL PORT_FILE LOG_FILE

Listens on a free port of 127.0.0.1 (written to PORT_FILE once it listens)
and forwards every request unchanged (the Host header too, so AWS
signatures made for this proxy stay valid upstream) to UPSTREAM_URL,
except:

  - a request whose path has a segment "failN" (N a number) is answered
    503 ServiceUnavailable the first N times that same request (method,
    path and query) arrives, and forwarded after that;
  - a request whose path has a segment "hangN" is answered only after N
    seconds the first time it arrives (a timeout for the client).

Every request is logged to LOG_FILE as one line, "METHOD PATH?QUERY STATUS",
written and flushed before the answer goes out, so the test reads exactly
the attempts its client made.  Stop it with SIGTERM.
"""
import http.client
import http.server
import re
import socketserver
import sys
import threading
import time
import urllib.parse

HOP = {'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'expect',
       'te', 'trailer', 'upgrade'}

upstream = urllib.parse.urlsplit(sys.argv[1])
port_file, log_file = sys.argv[2], sys.argv[3]
log = open(log_file, 'a', buffering=1)
lock = threading.Lock()
seen = {}  # (method, path) -> times seen


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        pass

    def record(self, status):
        with lock:
            log.write('%s %s %d\n' % (self.command, self.path, status))
            log.flush()

    def count(self):
        with lock:
            n = seen.get((self.command, self.path), 0) + 1
            seen[(self.command, self.path)] = n
        return n

    def handle_any(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        path = urllib.parse.urlsplit(self.path).path
        n = self.count()
        fail = re.search(r'/fail(\d+)(/|$)', path)
        hang = re.search(r'/hang(\d+)(/|$)', path)
        if hang and n == 1:
            time.sleep(int(hang.group(1)))
        if fail and n <= int(fail.group(1)):
            msg = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable'
                   b'</Code><Message>injected by flaky-http.py</Message></Error>')
            self.record(503)
            self.send_response(503)
            self.send_header('Content-Type', 'application/xml')
            self.send_header('Content-Length', str(len(msg)))
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(msg)
            return
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, body=body if length else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.record(resp.status)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            # The body goes with a length of our own (upstream may have
            # sent it chunked); a HEAD's Content-Length is the object's.
            if k.lower() not in HOP and (k.lower() != 'content-length' or
                                         self.command == 'HEAD'):
                self.send_header(k, v)
        if self.command != 'HEAD':
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


srv = Server(('127.0.0.1', 0), Handler)
with open(port_file + '.tmp', 'w') as f:
    f.write('%d\n' % srv.server_address[1])
import os
os.rename(port_file + '.tmp', port_file)
srv.serve_forever()
