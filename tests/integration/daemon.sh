#!/bin/bash
# A real loomd on loopback, driven with loomctl, curl and a bus client in
# another process: health, plugins, errors and their exit codes, the state
# directory lock, log reopening, JSON logs, start-up failures, detaching,
# and a clean shutdown.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS", "$LOOM_TEST_FIXTURES" ];
log = { file = "$T/daemon.log"; };
plugins = (
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; },
  { instance = "scratch"; module = "storage-memory"; config = { max_bytes = "16M"; }; },
  { instance = "echo"; module = "fix-echo"; config = { greeting = "hi"; count = 7; }; },
  { instance = "s3"; module = "storage-s3";
    config = { endpoint = "http://127.0.0.1:9"; bucket = "loom-test"; access_key = "AKIDTEST";
               secret_key = "hunter2-do-not-show"; check_on_start = false; }; }
);
EOF

start_loomd "$T/loomd.conf" "$state" --log-level debug
ok "loomd started at $URL"
schema_version() { # what the database records
	python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT max(version) FROM schema_migrations").fetchone()[0])' "$state/loom.db"
}

# ---------------------------------------------------------------- health
expect 0 loomctl --url "$URL" health
has "$T/out" "loomd 0.1.0 at $URL: ok"
has "$T/out" "4 plugin instance(s)"
expect 0 loomctl --url "$URL" --json health
has "$T/out" '"status": "ok"'
has "$T/out" "\"schema_version\": $(schema_version)"
LOOM_URL=$URL expect 0 loomctl health
ok "loomctl health (--url, --json, LOOM_URL)"

# ---------------------------------------------------------------- plugins
expect 0 loomctl --url "$URL" plugins
has "$T/out" "store            storage-local          storage    1.0.0      1.3"
has "$T/out" "scratch          storage-memory         storage"
has "$T/out" "echo             fix-echo               exporter   0.0.1"
expect 0 loomctl --url "$URL" --json plugins list
has "$T/out" '"count": 4'
expect 0 loomctl --url "$URL" plugins show store
has "$T/out" "root = \"$state/plugins/store/blobs\""
[ -d "$state/plugins/store/blobs/.loom-tmp" ] || fail "storage-local did not create its root"
expect 1 loomctl --url "$URL" plugins show nothere
has "$T/err" 'loomd refused (HTTP 404): no plugin instance "nothere"'
# a credential in a plugin's config is never shown (nor logged)
expect 0 loomctl --url "$URL" --json plugins show s3
has "$T/out" '"secret_key": "(secret)"'
has "$T/out" '"access_key": "AKIDTEST"'
hasnt "$T/out" hunter2
hasnt "$T/daemon.log" hunter2
ok "loomctl plugins list / show; a plugin's secret_key shown as (secret)"

# ---------------------------------------------------------------- HTTP errors
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/nope")
[ "$code" = 404 ] || fail "unknown path gave $code"
has "$T/body" '{"error":{"code":"not_found","message":"no such endpoint: GET /api/v1/nope'
code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X DELETE "$URL/api/v1/plugins")
[ "$code" = 405 ] || fail "wrong method gave $code"
has "$T/body" '"code":"method_not_allowed"'
has "$T/headers" "Allow: GET, HEAD"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/plugins/%zz")
[ "$code" = 400 ] || fail "malformed escape gave $code"
# a name that is not UTF-8 still gets a JSON error with a length (no hang)
code=$(curl -s -m 5 -o "$T/body" -w '%{http_code}' "$URL/api/v1/plugins/%ff")
[ "$code" = 404 ] || fail "a non-UTF-8 name gave $code"
has "$T/body" '"code":"not_found"'
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/plugins/%65cho")
[ "$code" = 200 ] || fail "an encoded instance name gave $code"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/plugins/echo%2Fx")
[ "$code" = 404 ] || fail "an encoded slash gave $code"
has "$T/body" 'no plugin instance \"echo/x\"'
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/plugins/echo/")
[ "$code" = 200 ] || fail "trailing slash gave $code"
curl -s -o /dev/null -I "$URL/api/v1/health" || fail "HEAD failed"
# garbage on the socket, an oversize body: answered or dropped, never fatal
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'THIS IS NOT HTTP\r\n\r\n' >&3
timeout 5 cat <&3 >/dev/null || true
exec 3>&-
head -c 20000000 /dev/zero | curl -s -o /dev/null -X POST --data-binary @- "$URL/api/v1/health" || true
expect 0 loomctl --url "$URL" health
ok "404, 405 with Allow, 400, HEAD, garbage and oversize requests survived"

# ---------------------------------------------------------------- the bus from another process
expect 0 "$B/tests/helpers/bus-request" "ipc://$state/bus.req" bus.ping
has "$T/out" '"pong":true'
expect 0 "$B/tests/helpers/bus-request" "ipc://$state/bus.req" echo.echo '{"q":42}'
has "$T/out" '"greeting":"hi"'
has "$T/out" '"request":{"q":42}'
expect 1 "$B/tests/helpers/bus-request" "ipc://$state/bus.req" no.such.service
has "$T/err" 'LOOM_ENOSERVICE'
ok "bus requests over ipc from another process"

# ---------------------------------------------------------------- exit codes
expect 2 loomctl --url "$URL" frobnicate
has "$T/err" 'unknown command "frobnicate"'
expect 2 loomctl --url "$URL"
expect 2 loomctl --url "$URL" health extra
expect 2 loomctl --url "ftp://x" health
expect 3 loomctl --url "http://127.0.0.1:1" health
has "$T/err" "cannot reach loomd at http://127.0.0.1:1"
expect 2 loomctl --url "$URL" plugins show "é"
has "$T/err" 'is not an instance name'
expect 2 loomctl --url "$URL" plugins show ""
ok "loomctl exit codes 2 and 3"

# ---------------------------------------------------------------- one daemon per state directory
expect 1 loomd -c "$T/loomd.conf" --state-dir "$state" --listen 127.0.0.1:0 --foreground
cat "$T/out" "$T/err" "$T/daemon.log" >"$T/all"
has "$T/all" "another loomd (pid $LOOMD_PID) is running on the state directory $state"
expect 0 loomctl --url "$URL" health
ok "a second loomd on the same state directory is refused"

expect 1 loomd -c "$T/loomd.conf" --state-dir "$T/state-port" --listen "127.0.0.1:${URL##*:}" --foreground
cat "$T/out" "$T/err" >"$T/all"
has "$T/all" "cannot listen on 127.0.0.1:${URL##*:}: Address in use; another process holds that port"
[ ! -e "$T/state-port/loomd.url" ] || fail "a failed start left loomd.url"
ok "a taken port is refused with a clear message"

# a state directory whose bus socket path would not fit a Unix socket
long=$T/$(printf 'd%.0s' $(seq 1 100))
expect 1 loomd -c "$T/loomd.conf" --state-dir "$long" --listen 127.0.0.1:0 --foreground
cat "$T/out" "$T/err" >"$T/all"
has "$T/all" "bytes long, over the 107 a Unix socket allows; use a shorter state_dir"
ok "a state directory too long for the bus sockets is refused with the fix"

# ---------------------------------------------------------------- SIGHUP reopens the log
mv "$T/daemon.log" "$T/daemon.log.1"
kill -HUP "$LOOMD_PID"
i=0
until [ -f "$T/daemon.log" ]; do
	i=$((i + 1)); [ $i -gt 100 ] && fail "no new log file after SIGHUP"
	loomctl --url "$URL" health >/dev/null
	sleep 0.1
done
loomctl --url "$URL" health >/dev/null
has "$T/daemon.log.1" "SIGHUP: reopening the log file"
has "$T/daemon.log" "http GET /api/v1/health -> 200"
ok "SIGHUP reopens the log file"

# ---------------------------------------------------------------- clean shutdown
stop_loomd
has "$T/daemon.log" "SIGTERM: shutting down"
has "$T/daemon.log" "loomd stopped"
[ ! -e "$state/loomd.url" ] || fail "loomd.url left behind"
[ ! -s "$state/loomd.pid" ] || fail "loomd.pid still names a process"
expect 3 loomctl --url "$URL" health
ok "SIGTERM stops loomd cleanly"

# restart on the same state: the database is reused, the blobs are kept
start_loomd "$T/loomd.conf" "$state"
expect 0 loomctl --url "$URL" --json health
has "$T/out" "\"schema_version\": $(schema_version)"
stop_loomd
ok "restart on the same state directory"

# ---------------------------------------------------------------- IPv6
if ip -6 addr show lo 2>/dev/null | grep -q '::1'; then
	cat >"$T/v6.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = ( { instance = "m"; module = "storage-memory"; } );
EOF
	start_loomd "$T/v6.conf" "$T/state-v6" --listen '[::1]:0'
	case "$URL" in
	"http://[::1]:0") fail "the IPv6 URL kept port 0" ;;
	"http://[::1]:"*) ;;
	*) fail "unexpected IPv6 URL $URL" ;;
	esac
	expect 0 loomctl --url "$URL" health
	stop_loomd
	ok "an IPv6 listener on port 0 reports the port it got"
fi

# ---------------------------------------------------------------- JSON log lines
cat >"$T/json.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
log = { format = "json"; file = "$T/json.log"; };
plugins = ( { instance = "m"; module = "storage-memory"; } );
EOF
start_loomd "$T/json.conf" "$T/state-json"
stop_loomd
python3 - "$T/json.log" <<'PY' || fail "log lines are not JSON objects with time, level, msg"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "empty log"
for line in lines:
    o = json.loads(line)
    assert {"time", "level", "msg"} <= o.keys(), o
assert any("started plugin instance m" in json.loads(l)["msg"] for l in lines)
PY
ok "log.format = json writes one JSON object per line"

# ---------------------------------------------------------------- start-up failures
cat >"$T/bad-init.conf" <<EOF
plugin_path = [ "$LOOM_TEST_FIXTURES" ];
plugins = ( { instance = "broken"; module = "fix-init-fails"; } );
EOF
expect 1 loomd -c "$T/bad-init.conf" --state-dir "$T/state-bad" --listen 127.0.0.1:0 --foreground
has "$T/err" 'plugin "broken" (fix-init-fails) failed to initialize'
has "$T/err" "[storage:broken] the fixture refuses to start"
[ ! -e "$T/state-bad/loomd.url" ] || fail "a failed start left loomd.url"

cat >"$T/missing.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = ( { instance = "s"; module = "storage-locl"; } );
EOF
expect 1 loomd -c "$T/missing.conf" --state-dir "$T/state-missing" --listen 127.0.0.1:0 --foreground
has "$T/err" 'plugin module "storage-locl" not found'
has "$T/err" '(did you mean "storage-local"?)'
ok "start-up failures exit 1 and say why"

# ---------------------------------------------------------------- detached
if [ "${LOOM_VALGRIND:-}" != 1 ]; then
	expect 0 "$LOOMD" -c "$T/json.conf" --state-dir "$T/state-detached" --listen 127.0.0.1:0
	pid=$(cat "$T/state-detached/loomd.pid")
	kill -0 "$pid" || fail "the detached loomd is not running"
	expect 0 loomctl --url "$(cat "$T/state-detached/loomd.url")" health
	kill -TERM "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && fail "the detached loomd did not stop"
		sleep 0.1
	done
	ok "without --foreground loomd detaches once ready"
fi
