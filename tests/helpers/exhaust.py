#!/usr/bin/python3
"""One client trying to exhaust loomd, for tests/integration/exhaust.sh and
bench/RESULTS.md ("HTTP request bodies and loomd's memory").  Standard
library only.

  exhaust.py bodies URL PID N SIZE [--expect-budget BYTES] [--margin MB]
      N connections each announce a SIZE-byte body and send all of it but
      the last byte, so loomd holds them unfinished.  Prints loomd's RSS
      (VmRSS of PID) before, at its highest while they are held, and after
      they are closed, with how many were answered 503 (and whether each
      503 had Retry-After and named http.body_budget).  With
      --expect-budget: fails unless the bodies held fit in BYTES, the rest
      were refused with 503, and RSS came back to within --margin MB
      (default 48) of where it started.

  exhaust.py conns URL N
      Opens N connections and holds them (each has sent nothing).  Prints
      "open N" and waits for stdin to close.

  exhaust.py ws URL PATH N [--deadline S]
      Opens N WebSockets on PATH that never read and never answer a ping.
      Prints "open N", then waits for a line on stdin, then (still not
      answering) waits until loomd has closed every one: prints
      "closed N in T s" or fails after the deadline (default 60 s).
"""
import json
import os
import select
import socket
import sys
import time


def addr(url):
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return host.strip("[]"), int(port)


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise SystemExit("FAIL: no VmRSS for pid %d" % pid)


def connect(url):
    s = socket.create_connection(addr(url), timeout=30)
    return s


def read_answer(s, timeout):
    """An HTTP answer (head and up to 4 KiB of body) or None."""
    s.setblocking(False)
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
        if not r:
            break
        try:
            chunk = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        if b"\r\n\r\n" in buf and len(buf.split(b"\r\n\r\n", 1)[1]) > 0:
            head, body = buf.split(b"\r\n\r\n", 1)
            clen = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    clen = int(v.strip())
            if len(body) >= clen:
                break
    return buf or None


def bodies(argv):
    url, pid, n, size = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    budget, margin = None, 48.0
    i = 4
    while i < len(argv):
        if argv[i] == "--expect-budget":
            budget, i = int(argv[i + 1]), i + 2
        elif argv[i] == "--margin":
            margin, i = float(argv[i + 1]), i + 2
        else:
            raise SystemExit("usage: see the top of exhaust.py")
    before = rss_mb(pid)
    head = ("POST /api/v1/training/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size).encode()
    part = b"{" + b" " * (size - 2)  # all but the last byte: never complete
    socks = []
    t0 = time.monotonic()
    for _ in range(n):
        s = connect(url)
        s.sendall(head)
        socks.append(s)
    # Send the bodies, a slice to each in turn, as slow clients would; an
    # answer (a refusal) ends a connection's part.
    sent = [0] * n
    answers = [None] * n
    alive = set(range(n))
    step = 1 << 20

    def collect(timeout):
        if not alive:
            return
        r, _, _ = select.select([socks[k] for k in alive], [], [], timeout)
        for s in r:
            k = socks.index(s)
            answers[k] = read_answer(s, 1.0) or b"(closed)"
            alive.discard(k)

    while alive:
        collect(0)
        for k in list(alive):
            s = socks[k]
            try:
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(part[sent[k]:sent[k] + step])
                sent[k] += step
            except OSError:
                answers[k] = read_answer(s, 1.0) or b"(reset)"
                alive.discard(k)
                continue
            if sent[k] >= len(part):
                alive.discard(k)
    alive = set(k for k in range(n) if answers[k] is None)
    # The refusals were decided when the heads arrived; on a slow machine
    # (a sanitizer build) their answers come later: wait for them until the
    # bodies left unanswered fit the budget, up to 20 s (held bodies never
    # complete, and loomd's request_timeout, 30 s, would answer them 408)
    deadline = time.monotonic() + 20
    collect(0.5)
    while (budget is not None and len(alive) * size > budget and
           time.monotonic() < deadline):
        collect(0.5)
    refused = with_retry = naming = other = 0
    for a in answers:
        if a is None:
            continue
        if a.startswith(b"HTTP/1.1 503"):
            refused += 1
            with_retry += b"\r\nRetry-After:" in a
            naming += b"http.body_budget" in a
        else:
            other += 1
    held = n - refused - other
    # loomd has the bytes once its RSS stops growing; take the highest seen
    # over a few seconds.
    during = rss_mb(pid)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0 and time.monotonic() - t0 < 120:
        time.sleep(0.1)
        r = rss_mb(pid)
        if r > during + 1:
            quiet_since = time.monotonic()
        during = max(during, r)
    for s in socks:
        s.close()
    after = rss_mb(pid)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        after = rss_mb(pid)
        if budget is None or after <= before + margin:
            # settled: nothing more comes back
            time.sleep(0.5)
            after = min(after, rss_mb(pid))
            break
        time.sleep(0.2)
    result = {"connections": n, "body_mb": round(size / 1048576.0, 1),
              "refused_503": refused, "with_retry_after": with_retry,
              "naming_budget": naming, "other_answers": other, "held": held,
              "rss_mb_before": round(before, 1), "rss_mb_during": round(during, 1),
              "rss_mb_after": round(after, 1)}
    print(json.dumps(result))
    if budget is not None:
        if held * size > budget:
            raise SystemExit("FAIL: %d bodies of %d bytes held, over the budget of %d"
                             % (held, size, budget))
        if other:
            raise SystemExit("FAIL: %d connections got something other than a 503" % other)
        if held == 0 or refused == 0:
            raise SystemExit("FAIL: expected some bodies held and the rest refused")
        if with_retry != refused or naming != refused:
            raise SystemExit("FAIL: every 503 should have Retry-After and name "
                             "http.body_budget")
        if after > before + margin:
            raise SystemExit("FAIL: RSS %.1f MB after the clients left, %.1f MB before"
                             % (after, before))


def conns(argv):
    url, n = argv[0], int(argv[1])
    socks = [connect(url) for _ in range(n)]
    print("open %d" % len(socks), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def ws(argv):
    url, path, n = argv[0], argv[1], int(argv[2])
    deadline = 60.0
    if len(argv) > 4 and argv[3] == "--deadline":
        deadline = float(argv[4])
    # LOOM_TOKEN: the test's token (tests/integration/lib.sh)
    auth = ""
    if os.environ.get("LOOM_TOKEN"):
        auth = "Authorization: Bearer %s\r\n" % os.environ["LOOM_TOKEN"]
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n%s\r\n" % (path, auth)).encode()
    socks = []
    for _ in range(n):
        s = connect(url)
        s.sendall(req)
        # the 101 and nothing more: after it this client reads nothing
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(1)
            if not c:
                raise SystemExit("FAIL: the upgrade was not answered")
            head += c
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit("FAIL: upgrade refused: %r" % head[:200])
        socks.append(s)
    print("open %d" % len(socks), flush=True)
    if not sys.stdin.readline():
        return  # told to stop
    t0 = time.monotonic()
    open_ = set(range(n))
    for s in socks:
        s.setblocking(False)
    # Only now look at the sockets, to see when loomd has closed them;
    # what it sent (pings, a close frame) is dropped unanswered.
    while open_ and time.monotonic() - t0 < deadline:
        r, _, _ = select.select([socks[k] for k in open_], [], [], 0.5)
        for s in r:
            k = socks.index(s)
            try:
                if not s.recv(65536):
                    open_.discard(k)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                open_.discard(k)
    if open_:
        raise SystemExit("FAIL: %d of %d WebSockets still open after %.0f s"
                         % (len(open_), n, deadline))
    print("closed %d in %.1f s" % (n, time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("bodies", "conns", "ws"):
        raise SystemExit(__doc__)
    {"bodies": bodies, "conns": conns, "ws": ws}[sys.argv[1]](sys.argv[2:])
