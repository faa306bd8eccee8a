#!/bin/bash
# Any web page could drive loomd: a text/plain POST with a foreign Origin
# and Host: evil.example created a compute-exec task that ran a shell
# command (browser CSRF; DNS rebinding).  This replays the attack against a
# real loomd on loopback and shows each of its parts refused before any
# route runs, with no task created: a body that is not JSON (415), a Host
# loomd does not serve (421; 400 when HTTP/1.1 sends none), a foreign
# Origin on a change or a WebSocket upgrade (403).  loomd's own page, curl
# and loomctl still get through; server_names in loomd.conf changes the
# names served.  Unknown query parameters are refused naming them (400).
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: $PY is missing (the WebSocket checks use it)"; exit 77; }

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"
HOSTPORT=${URL#http://}
PORT=${HOSTPORT##*:}

# post [CURL ARGS...]: POST the attack's spec to /training/tasks; status in
# $T/code, body in $T/body
SPEC="{\"spec\": {\"compute\": \"exec\", \"command\": [\"/bin/sh\", \"-c\", \"echo pwned >$T/pwned\"]}, \"start\": true}"
post() {
	curl -s -o "$T/body" -w '%{http_code}' -X POST --data-binary "$SPEC" "$@" \
		"$URL/api/v1/training/tasks" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; echo >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
tasks() { curl -s "$URL/api/v1/training/tasks" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }

# ---------------------------------------------------------------- the attack, whole and in parts
post -H 'Content-Type: text/plain' -H 'Origin: http://evil.example' -H 'Host: evil.example'
code 421
has "$T/body" 'Host \"evil.example\" is not a name this loomd serves'
has "$T/body" 'server_names in loomd.conf'
ok "the attack as it came (text/plain, Origin and Host evil.example): 421"

# a browser's cross-site "simple" request: text/plain, no preflight
post -H 'Content-Type: text/plain' -H "Host: $HOSTPORT"
code 415
has "$T/body" 'Content-Type \"text/plain\" is not accepted'
has "$T/body" 'Content-Type: application/json'
post -H 'Content-Type: application/x-www-form-urlencoded'
code 415
post -H 'Content-Type:'
code 415
has "$T/body" 'but no Content-Type'
post -H 'Content-Type: application/json; charset=iso-8859-1'
code 415
has "$T/body" 'UTF-8 only'
ok "a body that is not application/json: 415 naming what was sent and what to send"

# CSRF: a foreign page's request carries its Origin
post -H 'Content-Type: application/json' -H 'Origin: http://evil.example'
code 403
has "$T/body" 'Origin \"http://evil.example\" is not loomd'
post -H 'Content-Type: application/json' -H 'Origin: null'
code 403
post -H 'Content-Type: application/json' -H "Origin: http://127.0.0.1:$((PORT == 65535 ? 1 : PORT + 1))"
code 403
ok "a foreign Origin (and \"null\") on a change: 403"

# DNS rebinding: evil.example now resolves to 127.0.0.1; the page is
# same-origin in the browser's eyes, but its Host is the attacker's name
post -H 'Content-Type: application/json' -H "Origin: http://evil.example:$PORT" -H "Host: evil.example:$PORT"
code 421
post -H 'Content-Type: application/json' -H "Host: evil.example:$PORT"
code 421
post -H 'Content-Type: application/json' -H "Host: 127.0.0.1:$((PORT == 65535 ? 1 : PORT + 1))"
code 421
# an absolute-form target names the host instead of Host
code=$(curl -s -o "$T/body" -w '%{http_code}' --request-target "http://evil.example:$PORT/api/v1/health" "$URL/")
[ "$code" = 421 ] || fail "absolute-form target naming evil.example: HTTP $code"
# HTTP/1.1 needs a Host; HTTP/1.0 may leave it out
code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Host:' "$URL/api/v1/health")
[ "$code" = 400 ] || fail "HTTP/1.1 without Host: HTTP $code"
has "$T/body" 'no Host header'
code=$(curl -s -o /dev/null -w '%{http_code}' -0 -H 'Host:' "$URL/api/v1/health")
[ "$code" = 200 ] || fail "HTTP/1.0 without Host: HTTP $code"
ok "a Host loomd does not serve: 421; none on HTTP/1.1: 400"

[ "$(tasks)" = 0 ] || fail "a refused request created a task: $(curl -s "$URL/api/v1/training/tasks")"
[ ! -e "$T/pwned" ] || fail "a refused request ran its command"
ok "no task created, no command run"

# ---------------------------------------------------------------- what still works
# loomd's own page (the web UI): same-origin, JSON
post -H 'Content-Type: application/json; charset=utf-8' -H "Origin: http://$HOSTPORT"
code 201
post -H 'Content-Type: application/json' -H "Origin: http://localhost:$PORT" -H "Host: localhost:$PORT"
code 201
# curl and scripts send no Origin; an empty POST needs no Content-Type
echo '{"compute": "exec", "command": ["true"]}' >"$T/true.json"
expect 0 loomctl --url "$URL" submit "$T/true.json"
code=$(curl -s -o "$T/body" -w '%{http_code}' -X POST "$URL/api/v1/training/tasks/task-3/start")
[ "$code" = 200 ] || { cat "$T/body"; fail "POST …/start with no body: HTTP $code"; }
[ "$(tasks)" = 3 ] || fail "expected 3 tasks"
# a foreign page may read (it cannot see the answer without CORS, which loomd does not send)
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Origin: http://evil.example' "$URL/api/v1/training/tasks")
[ "$code" = 200 ] || fail "GET with a foreign Origin: HTTP $code"
i=0
until [ -s "$T/pwned" ]; do
	i=$((i + 1))
	[ $i -gt $((WAIT_S * 10)) ] && fail "the same-origin task did not run within ${WAIT_S}s"
	sleep 0.1
done
ok "a same-origin POST, loomctl, and an empty POST still work"

# ---------------------------------------------------------------- WebSocket upgrades
# upgrade ORIGIN HOST: the status of a monitor upgrade for task-1
upgrade() {
	"$PY" - "$PORT" "$1" "$2" <<'EOF'
import os, socket, sys
port, origin, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
req = ("GET /api/v1/training/tasks/task-1/monitor HTTP/1.1\r\nHost: %s\r\n"
       "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" % host)
if origin:
    req += "Origin: %s\r\n" % origin
if os.environ.get("LOOM_TOKEN"):
    req += "Authorization: Bearer %s\r\n" % os.environ["LOOM_TOKEN"]
s.sendall((req + "\r\n").encode())
line = b""
while not line.endswith(b"\r\n"):
    b = s.recv(1)
    if not b:
        break
    line += b
print(line.split()[1].decode() if line else "closed")
EOF
}
[ "$(upgrade "http://evil.example" "$HOSTPORT")" = 403 ] || fail "WebSocket with a foreign Origin"
[ "$(upgrade "" "evil.example:$PORT")" = 421 ] || fail "WebSocket with Host evil.example"
[ "$(upgrade "http://$HOSTPORT" "$HOSTPORT")" = 101 ] || fail "same-origin WebSocket refused"
[ "$(upgrade "" "$HOSTPORT")" = 101 ] || fail "WebSocket without Origin refused"
ok "WebSocket upgrades: foreign Origin 403, foreign Host 421; own and none accepted"

# ---------------------------------------------------------------- unknown query parameters
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/logs?grep=x")
[ "$code" = 400 ] || fail "/api/v1/logs?grep=x: HTTP $code"
has "$T/body" 'unknown query parameter \"grep\" (this route takes: format, level'
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/logs?q=x&limit=5")
[ "$code" = 200 ] || fail "/api/v1/logs?q=x&limit=5: HTTP $code"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/training/tasks?limit=1&limit=2")
[ "$code" = 400 ] || fail "a parameter given twice: HTTP $code"
has "$T/body" 'given more than once'
expect 0 loomctl --url "$URL" alerts list
expect 0 loomctl --url "$URL" alerts list --limit 5
ok "unknown query parameters: 400 naming them; loomctl's own queries pass"
stop_loomd

# ---------------------------------------------------------------- server_names
cat >>"$T/loomd.conf" <<'EOF'
server_names = [ "Loom.Test", "localhost" ];
EOF
start_loomd "$T/loomd.conf" "$state"
PORT=${URL##*:}
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: loom.test:$PORT" "$URL/api/v1/health")
[ "$code" = 200 ] || fail "Host loom.test with server_names naming it: HTTP $code"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/health")
[ "$code" = 421 ] || fail "Host 127.0.0.1 when server_names leaves it out: HTTP $code"
has "$T/body" "(loom.test, localhost, port $PORT)"
expect 0 loomctl --url "http://localhost:$PORT" list
stop_loomd
cat >"$T/bad.conf" <<'EOF'
server_names = [ "loom.test:80", "http://x" ];
EOF
expect 1 "$LOOMD" -c "$T/bad.conf" --check-config
has "$T/err" 'server_names[0]: "loom.test:80": give a host name'
has "$T/err" 'server_names[1]: "http://x"'
ok "server_names: the names it lists are served, others 421; a port or scheme in it is refused"
