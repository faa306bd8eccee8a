# Shared by the integration tests: a private temporary directory, a real
# loomd started on an ephemeral loopback port, and assertions.
# Sourced by bash scripts run through `make check`.
set -euo pipefail

: "${LOOM_TEST_BUILDDIR:?run the integration tests through make check}"
B=$LOOM_TEST_BUILDDIR
S=$LOOM_TEST_SRCDIR
LOOMD=$B/host/loomd
LOOMCTL=$B/host/loomctl
T=$(mktemp -d "${TMPDIR:-/tmp}/loom-it.XXXXXX")
LOOMD_PID=   # loomd's own pid (from its pid file)
LOOMD_BG=    # the background job running it
URL=
WAIT_S=20
[ "${LOOM_VALGRIND:-}" = 1 ] && WAIT_S=180

cleanup() {
	local rv=$?
	if [ -n "$LOOMD_PID" ] && kill -0 "$LOOMD_PID" 2>/dev/null; then
		kill -KILL "$LOOMD_PID" 2>/dev/null || true
	fi
	[ -n "$LOOMD_BG" ] && wait "$LOOMD_BG" 2>/dev/null || true
	if [ $rv -ne 0 ] && [ $rv -ne 77 ]; then
		local lines=40
		[ "${LOOM_VALGRIND:-}" = 1 ] && lines=400
		for f in "$T"/*.log "$T"/out "$T"/err; do
			[ -f "$f" ] && { echo "--- $f"; tail -n $lines "$f"; }
		done
	fi
	rm -rf "$T"
	exit $rv
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# loomd, under valgrind memcheck when LOOM_VALGRIND=1.
loomd() {
	if [ "${LOOM_VALGRIND:-}" = 1 ]; then
		$LIBTOOL --mode=execute valgrind --quiet --leak-check=full \
			--errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
			--suppressions="$S/tests/valgrind.supp" "$LOOMD" "$@"
	else
		"$LOOMD" "$@"
	fi
}

loomctl() { "$LOOMCTL" "$@"; }

# start_loomd CONF STATE_DIR [more loomd arguments]: run loomd in the
# foreground (in the background of this script) on 127.0.0.1:0 and wait
# until it has written its URL.  Sets LOOMD_PID, LOOMD_BG and URL.
start_loomd() {
	local conf=$1 state=$2
	shift 2
	rm -f "$state/loomd.url"
	loomd -c "$conf" --state-dir "$state" --listen 127.0.0.1:0 --foreground "$@" \
		>>"$T/loomd.log" 2>&1 &
	LOOMD_BG=$!
	local i=0
	while [ ! -s "$state/loomd.url" ]; do
		kill -0 "$LOOMD_BG" 2>/dev/null || fail "loomd exited during start-up (see loomd.log)"
		i=$((i + 1))
		[ $i -gt $((WAIT_S * 10)) ] && fail "loomd did not start within ${WAIT_S}s"
		sleep 0.1
	done
	URL=$(cat "$state/loomd.url")
	LOOMD_PID=$(cat "$state/loomd.pid")
	test_token "$state"
}

# test_token STATE_DIR: the admin's API token for this state directory, made
# once over loomd's Unix socket (the first start makes the directory's
# owner, this test, an admin), exported as LOOM_TOKEN for loomctl,
# ws-watch and the curl below.  Tests of authentication use `command curl`.
test_token() {
	local state=$1 file
	file=$T/token.$(printf '%s' "$1" | tr -c 'A-Za-z0-9' _)
	LOOM_TOKEN=
	if [ ! -s "$file" ] && [ -S "$state/loomd.sock" ]; then
		LOOM_TOKEN= "$LOOMCTL" --socket "$state/loomd.sock" tokens create --name tests --quiet \
			>"$file" 2>>"$T/loomd.log" || rm -f "$file"
	fi
	[ -s "$file" ] && LOOM_TOKEN=$(cat "$file")
	export LOOM_TOKEN
}

# curl with the test's token (no header without one)
curl() {
	if [ -n "${LOOM_TOKEN:-}" ]; then
		command curl -H "Authorization: Bearer $LOOM_TOKEN" "$@"
	else
		command curl "$@"
	fi
}

# stop_loomd: SIGTERM, and require a clean exit (under valgrind: no leaks).
stop_loomd() {
	kill -TERM "$LOOMD_PID"
	local rv=0
	wait "$LOOMD_BG" || rv=$?
	LOOMD_PID= LOOMD_BG=
	[ $rv -eq 0 ] || fail "loomd exited with status $rv after SIGTERM"
}

# expect STATUS CMD...: run CMD, capture stdout in $T/out and stderr in
# $T/err, and require its exit status.
expect() {
	local want=$1 rv=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rv=$?
	[ "$rv" -eq "$want" ] || {
		echo "command: $*" >&2
		echo "stdout:" >&2; cat "$T/out" >&2
		echo "stderr:" >&2; cat "$T/err" >&2
		fail "exit status $rv, expected $want"
	}
}

# has FILE TEXT: FILE contains TEXT (a fixed string).
has() {
	grep -qF -- "$2" "$1" || {
		echo "--- $1:" >&2; cat "$1" >&2
		fail "expected \"$2\" in $1"
	}
}

hasnt() {
	! grep -qF -- "$2" "$1" || fail "did not expect \"$2\" in $1"
}

# field TASK EXPR: a value of GET /api/v1/training/tasks/TASK, the Python
# expression EXPR over it as t.  wait_for TASK STATE [SECONDS]: poll until
# the task is in STATE (default 60 s), failing at once if it ends in
# another.  (A test may define its own after sourcing this file.)
field() {
	curl -s "$URL/api/v1/training/tasks/$1" |
		/usr/bin/python3 -c "import json,sys; t=json.load(sys.stdin); print($2)"
}
wait_for() {
	local i=0 s
	while :; do
		s=$(field "$1" 't["status"]')
		[ "$s" = "$2" ] && return 0
		case $s in completed|failed|cancelled)
			fail "$1 ended $s, not $2: $(field "$1" 't.get("error", "")')" ;;
		esac
		i=$((i + 1))
		[ $i -gt $((${3:-60} * 10)) ] && fail "$1 is $s, not $2, after ${3:-60}s"
		sleep 0.1
	done
}
