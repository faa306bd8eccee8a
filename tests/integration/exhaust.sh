#!/bin/bash
# One client trying to exhaust a real loomd on loopback (issue 11, "One client
# can exhaust loomd"), with the limits of loomd.conf's http group set small:
#
# - unfinished request bodies past http.body_budget are answered 503 with
#   Retry-After, naming the setting, and loomd's memory goes back near where
#   it was once the clients leave;
# - connections past http.max_conns_per_client are refused, except health
#   and control requests, which the reserve serves;
# - with the pool full of WebSocket monitors that never read, health and
#   `loomctl cancel` still get through (the reserve), a WebSocket upgrade
#   does not use the reserve;
# - monitors that never read nor answer pings are closed after
#   http.ws_idle_timeout, and the pool is free again.
#
# Every wait polls for the state it needs with a generous deadline.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
PY=/usr/bin/python3
[ -x $PY ] || { echo "SKIP: $PY is missing (./bootstrap installs python3)"; exit 77; }
[ -r /proc/self/status ] || { echo "SKIP: no /proc to read loomd's RSS from"; exit 77; }
X="$PY $S/tests/helpers/exhaust.py"

conf() { # FILE HTTP-SETTINGS
	cat >"$1" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
http = { $2 };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
}
# curl's status for METHOD PATH, the body in $T/body
st() { curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} "$URL$2"; }

# ---------------------------------------------------------------- bodies
conf "$T/a.conf" 'body_budget = "24M"; max_body = "4M"; max_conns_per_client = 64;'
start_loomd "$T/a.conf" "$T/a"
# 24 connections announce 3 MB each and hold all of it but a byte: 8 fit
# in the 24 MB budget, 16 are refused.  The 3 MB bodies are really held
# (72 MB had they all been taken); RSS goes back once they leave.
$X bodies "$URL" "$LOOMD_PID" 24 3145728 --expect-budget 25165824 --margin 16 >"$T/out" ||
	{ cat "$T/out"; fail "the body budget"; }
cat "$T/out"
has "$T/out" '"refused_503": 16'
# the budget is free again: a normal request with a body is served
[ "$(st POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["true"]}}')" = 201 ] ||
	{ cat "$T/body"; fail "a task after the body test"; }
ok "bodies past http.body_budget: 503 with Retry-After naming it; RSS back near the start"

# ---------------------------------------------------------------- per client
stop_loomd
conf "$T/b.conf" 'max_conns = 32; max_conns_per_client = 6; reserve = 4;'
start_loomd "$T/b.conf" "$T/b"
coproc HOLD { $X conns "$URL" 6; }
read -r line <&"${HOLD[0]}"
[ "$line" = "open 6" ] || fail "holding 6 connections: $line"
# The seventh from the same address is not served an ordinary request...
code=$(st GET /api/v1/training/tasks)
[ "$code" = 503 ] || { cat "$T/body"; fail "GET tasks past the per-client cap: HTTP $code, expected 503"; }
has "$T/body" "http.max_conns_per_client"
has "$T/body" "6 connections"
# ...but health and control get through the reserve.
[ "$(st GET /api/v1/health)" = 200 ] || { cat "$T/body"; fail "health past the per-client cap"; }
expect 0 loomctl --url "$URL" health
exec {HOLD[1]}>&-
wait "$HOLD_PID"
# Once they are gone, the client is served again (the reaper may take a
# moment to count them out).
i=0
until [ "$(st GET /api/v1/training/tasks)" = 200 ]; do
	i=$((i + 1)); [ $i -gt 300 ] && fail "GET tasks still refused 30 s after the connections closed"
	sleep 0.1
done
ok "past http.max_conns_per_client: 503 naming it, health and loomctl through the reserve"

# ---------------------------------------------------------------- a full pool
stop_loomd
conf "$T/c.conf" 'max_conns = 8; reserve = 4; max_conns_per_client = 8; ws_idle_timeout = "10m";'
start_loomd "$T/c.conf" "$T/c"
# the monitors watch a task that stays pending; another, running, is cancelled
[ "$(st POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["true"]}}')" = 201 ] ||
	{ cat "$T/body"; fail "submitting a task"; }
watched=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["task_id"])' "$T/body")
[ "$(st POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["sleep", "300"]}, "start": true}')" = 201 ] ||
	{ cat "$T/body"; fail "submitting a task"; }
task=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["task_id"])' "$T/body")
coproc MON { $X ws "$URL" "/api/v1/training/tasks/$watched/monitor" 8 --deadline 60; }
mon=$MON_PID
read -r line <&"${MON[0]}"
[ "$line" = "open 8" ] || fail "opening 8 monitors: $line"
code=$(st GET /api/v1/training/tasks)
[ "$code" = 503 ] || { cat "$T/body"; fail "GET tasks with the pool full: HTTP $code, expected 503"; }
has "$T/body" "http.max_conns"
[ "$(st GET /api/v1/health)" = 200 ] || { cat "$T/body"; fail "health with the pool full"; }
expect 0 loomctl --url "$URL" cancel "$task"
has "$T/out" "cancelled"
# a WebSocket upgrade may not take a reserve slot
code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Upgrade: websocket' -H 'Connection: Upgrade' \
	-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Version: 13' \
	"$URL/api/v1/training/tasks/$watched/monitor")
[ "$code" = 503 ] || { cat "$T/body"; fail "an upgrade with the pool full: HTTP $code, expected 503"; }
kill "$mon" 2>/dev/null || true
wait "$mon" 2>/dev/null || true
ok "pool full of monitors that never read: 503 for others, health and loomctl cancel served"

# ---------------------------------------------------------------- idle WebSockets
stop_loomd
conf "$T/d.conf" 'max_conns = 8; reserve = 4; max_conns_per_client = 8; ws_ping_interval = "200ms"; ws_idle_timeout = "1s";'
start_loomd "$T/d.conf" "$T/d"
[ "$(st POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["true"]}}')" = 201 ] ||
	{ cat "$T/body"; fail "submitting a task"; }
task=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["task_id"])' "$T/body")
coproc MON { $X ws "$URL" "/api/v1/training/tasks/$task/monitor" 8 --deadline 60; }
mon=$MON_PID
read -r line <&"${MON[0]}"
[ "$line" = "open 8" ] || fail "opening 8 monitors: $line"
echo go >&"${MON[1]}"
read -r line <&"${MON[0]}" || true
case $line in "closed 8 in "*) ;; *) fail "idle monitors: ${line:-the helper failed}" ;; esac
wait "$mon" || fail "the WebSocket helper failed"
i=0
until [ "$(st GET /api/v1/training/tasks)" = 200 ]; do
	i=$((i + 1)); [ $i -gt 300 ] && fail "GET tasks still refused 30 s after the monitors were closed"
	sleep 0.1
done
ok "monitors that neither read nor answer pings closed after http.ws_idle_timeout ($line)"

stop_loomd
