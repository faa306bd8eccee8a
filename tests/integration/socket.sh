#!/bin/bash
# The Unix socket: loomd serves the same API on STATE_DIR/loomd.sock (or
# api.socket), with exactly api.socket_mode; curl --unix-socket and loomctl
# --socket (and LOOM_SOCKET) reach it, requests with bodies included.  A
# stale socket left by a killed loomd is replaced; a live one, or a path
# that is not a socket, refuses start-up naming it; a clean stop removes
# it; api.socket = "" turns it off; loomctl --timeout ends a wait on a
# socket that never answers.  loomctl's token sources: a token file
# others can read is refused (and not read at all over the socket), a
# token given with --token is wiped from the process's arguments, and no
# token appears in loomctl's messages; login keeps a token loomd accepts
# in a 0600 file, logout removes it.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }

state=$T/state
SOCK=$state/loomd.sock
# conf [API SETTINGS]: loomd.conf with an api group
conf() {
	cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
api = { $1 };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
}

# ---------------------------------------------------------------- the socket and its mode
conf 'socket_mode = "0660";'
start_loomd "$T/loomd.conf" "$state"
[ -S "$SOCK" ] || fail "no socket at $SOCK"
[ "$(stat -c %a "$SOCK")" = 660 ] || fail "the socket's mode is $(stat -c %a "$SOCK"), not 660"
grep -qF "api: on $URL, and on the Unix socket $SOCK (mode 0660)" "$T/loomd.log" ||
	fail "loomd did not log the socket's path and mode"
ok "loomd listens on $SOCK with mode 0660 (and says so)"

code=$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$SOCK" http://localhost/api/v1/health)
[ "$code" = 200 ] || fail "curl --unix-socket: HTTP $code"
has "$T/body" '"status":"ok"'
expect 0 loomctl --socket "$SOCK" health
has "$T/out" "at $SOCK: ok"
printf '{"compute": "exec", "command": ["/bin/true"]}\n' >"$T/job.json"
expect 0 loomctl --socket "$SOCK" submit "$T/job.json"
has "$T/out" "task-1"
LOOM_SOCKET=$SOCK expect 0 loomctl list
has "$T/out" "task-1"
# --url and LOOM_URL win over LOOM_SOCKET; --url and --socket together do not go
LOOM_SOCKET=/nonexistent expect 0 loomctl --url "$URL" status task-1
LOOM_SOCKET=/nonexistent LOOM_URL=$URL expect 0 loomctl status task-1
expect 2 loomctl --socket "$SOCK" --url "$URL" health
has "$T/err" "--url $URL and --socket $SOCK name two ways to reach loomd: give one"
# the front door through the socket: loomd's names, any port (a local
# proxy's); a change's Origin must be the Host's own
sock_post() {
	curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$SOCK" -X POST "$@" \
		http://localhost/api/v1/training/tasks/task-999/start >"$T/code"
}
sock_post -H 'Host: localhost:8080' -H 'Origin: http://localhost:8080'
[ "$(cat "$T/code")" = 404 ] || fail "a local proxy's own page through the socket: HTTP $(cat "$T/code")"
sock_post -H 'Host: localhost:8080' -H 'Origin: http://localhost:3000'
[ "$(cat "$T/code")" = 403 ] || fail "another local page through the socket: HTTP $(cat "$T/code")"
sock_post -H 'Host: evil.example:8080' -H 'Origin: http://evil.example:8080'
[ "$(cat "$T/code")" = 421 ] || fail "a rebound name through the socket: HTTP $(cat "$T/code")"
expect 3 loomctl --socket "$T/nothing.sock" health
has "$T/err" "cannot reach loomd on the socket $T/nothing.sock"
# a socket that takes the request and never answers: --timeout ends it
if [ -x /usr/bin/python3 ]; then
	/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)
c, _ = s.accept(); time.sleep(30)' "$T/mute.sock" &
mute=$!
i=0
until [ -S "$T/mute.sock" ]; do i=$((i + 1)); [ $i -gt 100 ] && fail "the mute server did not start"; sleep 0.1; done
start_s=$(date +%s)
expect 3 loomctl --socket "$T/mute.sock" --timeout 1 health
has "$T/err" "cannot reach loomd on the socket $T/mute.sock: Connection timed out (waiting for the answer)"
[ $(($(date +%s) - start_s)) -lt 20 ] || fail "--timeout 1 took $(($(date +%s) - start_s)) s"
kill $mute 2>/dev/null || true
wait $mute 2>/dev/null || true
fi
ok "curl --unix-socket, loomctl --socket and LOOM_SOCKET reach the API (a submission included)"

# ---------------------------------------------------------------- tokens
# who the socket says we are (the state directory's owner: an admin), and a
# token made there
LOOM_TOKEN= expect 0 loomctl --socket "$SOCK" whoami
has "$T/out" "signed in by socket"
expect 0 loomctl --socket "$SOCK" tokens create --name cli --quiet
SECRET=$(cat "$T/out")
export XDG_CONFIG_HOME=$T/config
mkdir -p "$XDG_CONFIG_HOME/loom"
echo "$SECRET" >"$XDG_CONFIG_HOME/loom/token"
chmod 644 "$XDG_CONFIG_HOME/loom/token"
LOOM_TOKEN= expect 2 loomctl --url "$URL" health
has "$T/err" "the token file $XDG_CONFIG_HOME/loom/token can be read by other users (mode 0644)"
hasnt "$T/err" "$SECRET"
# over the socket the file is not read: loomd knows who asks
LOOM_TOKEN= expect 0 loomctl --socket "$SOCK" health
chmod 600 "$XDG_CONFIG_HOME/loom/token"
LOOM_TOKEN= expect 0 loomctl --url "$URL" whoami
has "$T/out" "signed in by token"
# a token given is checked, and never echoed
expect 2 loomctl --url "$URL" --token "bad token $SECRET" health
has "$T/err" "--token: not a token"
hasnt "$T/err" "$SECRET"
# --token is wiped from the arguments ps shows: watch a pending task,
# which runs until the task is cancelled
"$LOOMCTL" --socket "$SOCK" --token "$SECRET" watch task-1 >"$T/watch" 2>&1 &
watch=$!
i=0
until tr '\0' ' ' <"/proc/$watch/cmdline" 2>/dev/null | grep -q 'xxxxxxxxxx'; do
	kill -0 $watch 2>/dev/null || { cat "$T/watch" >&2; fail "loomctl watch ended early"; }
	i=$((i + 1))
	[ $i -gt 100 ] && fail "--token was not wiped from loomctl's arguments within 10s"
	sleep 0.1
done
tr '\0' ' ' <"/proc/$watch/cmdline" | grep -qF "$SECRET" && fail "ps shows the token"
expect 0 loomctl --socket "$SOCK" cancel task-1
wait $watch || true
unset XDG_CONFIG_HOME
ok "whoami over the socket; a token file others can read is refused (not read over the socket); --token is wiped from ps; no message shows a token"

# login / logout
TOKEN=$SECRET
export XDG_CONFIG_HOME=$T/config2
echo "loom_notavalidtoken" | expect 1 loomctl --url "$URL" login
has "$T/err" "loomd did not accept the token; nothing written"
[ ! -e "$XDG_CONFIG_HOME/loom/token" ] || fail "login kept a token loomd refused"
echo "$TOKEN" | expect 0 loomctl --url "$URL" login
has "$T/out" "signed in to $URL as "
hasnt "$T/out" "$TOKEN"
[ "$(stat -c %a "$XDG_CONFIG_HOME/loom/token")" = 600 ] || fail "the token file is not 0600"
[ "$(stat -c %a "$XDG_CONFIG_HOME/loom")" = 700 ] || fail "the token's directory is not 0700"
[ "$(cat "$XDG_CONFIG_HOME/loom/token")" = "$TOKEN" ] || fail "the token file does not hold the token"
LOOM_TOKEN= expect 0 loomctl --url "$URL" whoami
has "$T/out" "signed in by token"
expect 0 loomctl logout
has "$T/out" "removed $XDG_CONFIG_HOME/loom/token"
[ ! -e "$XDG_CONFIG_HOME/loom/token" ] || fail "logout left the token file"
expect 0 loomctl logout
has "$T/out" "nothing to do"
unset XDG_CONFIG_HOME
ok "login checks a token with loomd and keeps it 0600 (a refused one is not kept); logout removes it"

# ---------------------------------------------------------------- stale, live, not a socket
kill -KILL "$LOOMD_PID"
wait "$LOOMD_BG" 2>/dev/null || true
LOOMD_PID= LOOMD_BG=
[ -S "$SOCK" ] || fail "the killed loomd's socket is gone (the stale case cannot be tested)"
start_loomd "$T/loomd.conf" "$state"
grep -qF "removed the stale socket $SOCK" "$T/loomd.log" || fail "the stale socket was not replaced"
expect 0 loomctl --socket "$SOCK" health
ok "a stale socket left by a killed loomd is replaced"

# a second loomd (its own state) pointed at the live socket
conf "socket = \"$SOCK\";"
rv=0
loomd -c "$T/loomd.conf" --state-dir "$T/state2" --listen 127.0.0.1:0 --foreground \
	>"$T/out" 2>"$T/err" || rv=$?
[ $rv -ne 0 ] || fail "a second loomd started on a live socket"
has "$T/err" "api.socket \"$SOCK\": another process (another loomd?) accepts connections on it"
expect 0 loomctl --socket "$SOCK" health
echo "keep me" >"$T/plain"
conf "socket = \"$T/plain\";"
rv=0
loomd -c "$T/loomd.conf" --state-dir "$T/state2" --listen 127.0.0.1:0 --foreground \
	>"$T/out" 2>"$T/err" || rv=$?
[ $rv -ne 0 ] || fail "loomd started with a regular file as its socket"
has "$T/err" "api.socket \"$T/plain\" exists and is not a socket"
[ "$(cat "$T/plain")" = "keep me" ] || fail "the regular file was changed"
ok "a live socket, or a file that is not a socket, refuses start-up naming it"

stop_loomd
[ ! -e "$SOCK" ] || fail "the socket is still there after a clean stop"
ok "a clean stop removes the socket"

# ---------------------------------------------------------------- a relative path; none
conf 'socket = "run.sock";'
start_loomd "$T/loomd.conf" "$state"
[ -S "$state/run.sock" ] || fail "api.socket = \"run.sock\" is not under the state directory"
[ "$(stat -c %a "$state/run.sock")" = 600 ] || fail "the default mode is not 0600"
expect 0 loomctl --socket "$state/run.sock" health
stop_loomd
conf 'socket = "";'
start_loomd "$T/loomd.conf" "$state"
grep -qF 'without a Unix socket (api.socket = "")' "$T/loomd.log" || fail "no word of the socket being off"
[ -z "$(find "$state" -name '*.sock')" ] || fail "a socket with api.socket = \"\""
stop_loomd
ok "api.socket relative to the state directory (mode 0600 by default); \"\" turns it off"
