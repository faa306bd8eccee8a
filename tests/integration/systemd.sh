#!/bin/bash
# loomd under systemd, as far as a machine without systemd as PID 1 allows:
#  - readiness: with $NOTIFY_SOCKET (a path, or "@name" in the abstract
#    namespace) loomd sends READY=1 once its API answers (the listener
#    asks GET /api/v1/health as soon as READY=1 arrives), RELOADING=1 and
#    READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, each with MAINPID; a
#    socket nobody listens on is not fatal; workers, and the commands they
#    run, do not inherit NOTIFY_SOCKET;
#  - SIGHUP applies log.level from the file again (info → debug: debug
#    lines appear); a file that no longer loads is logged with its line and
#    changes nothing, loomd serving on; --log-level wins over the file;
#  - the unit and the sysusers file as `make install` writes them:
#    `systemd-analyze verify` passes (the binary and the man pages the unit
#    names, from the install, laid over the system's in a private mount
#    namespace and MANPATH) and `systemd-analyze security --offline=true`
#    rates it 2.5 or less; systemd-sysusers creates the user with the
#    state directory as its home.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || { echo "SKIP: python3 is not installed"; exit 77; }

# The service manager's end: one line per datagram (its lines joined by
# " | "), and on READY=1 the health endpoint's answer, asked at once.
cat >"$T/notify-listen.py" <<'EOF'
import os, re, socket, sys, urllib.error, urllib.request
addr, out = sys.argv[1], sys.argv[2]
parent = os.getppid()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
s.settimeout(1)
open(out + ".up", "w").close()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with open(out, "a") as f:
    while True:
        try:
            lines = s.recv(65536).decode().split("\n")
        except socket.timeout:
            if os.getppid() != parent:  # the test is gone
                break
            continue
        f.write(" | ".join(lines) + "\n")
        f.flush()
        if "READY=1" in lines:
            m = re.search(r"STATUS=serving the API on (\S+);", "\n".join(lines))
            try:
                code = opener.open(m.group(1) + "/api/v1/health", timeout=10).status
            except urllib.error.HTTPError as e:
                code = e.code
            except Exception as e:
                code = "error (%s)" % e
            f.write("health %s\n" % code)
            f.flush()
        if "STOPPING=1" in lines:
            break
EOF

LISTENER=   # exits on STOPPING=1, or once this script is gone
listen_notify() { # ADDR OUT: a listener in the background, bound before this returns
	rm -f "$2" "$2.up"
	"$PY" "$T/notify-listen.py" "$1" "$2" &
	LISTENER=$!
	local i=0
	until [ -e "$2.up" ]; do
		kill -0 "$LISTENER" 2>/dev/null || fail "the notify listener did not start"
		i=$((i + 1)); [ $i -gt 100 ] && fail "the notify listener did not bind $1 within 10 s"
		sleep 0.1
	done
}
wait_line() { # FILE TEXT [N]: until FILE has N (default 1) lines with TEXT
	local i=0
	until [ -f "$1" ] && [ "$(grep -cF -- "$2" "$1")" -ge "${3:-1}" ]; do
		i=$((i + 1))
		[ $i -gt $((WAIT_S * 10)) ] && { [ -f "$1" ] && cat "$1" >&2; fail "no \"$2\" in $1 after ${WAIT_S}s"; }
		sleep 0.1
	done
}
kinds() { # FILE: each datagram's first line, and the health answers, in order
	awk '{ print $1 == "health" ? $0 : $1 }' "$1" | tr '\n' ' '
}
all_from() { # FILE PID: every datagram in FILE says MAINPID=PID
	! grep -v '^health ' "$1" | grep -qv " | MAINPID=$2\$" ||
		fail "a datagram without MAINPID=$2: $(cat "$1")"
}

# ---------------------------------------------------------------- readiness, reload, stop
state=$T/state
conf() { # LEVEL: the test's loomd.conf with log.level LEVEL
	cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
log = { level = "$1"; file = "$T/daemon.log"; };
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
}
conf info
listen_notify "$T/notify.sock" "$T/notify"
NOTIFY_SOCKET=$T/notify.sock
export NOTIFY_SOCKET
start_loomd "$T/loomd.conf" "$state"
unset NOTIFY_SOCKET
wait_line "$T/notify" "health "
[ "$(kinds "$T/notify")" = "READY=1 health 200 " ] ||
	fail "expected READY=1 and then a health answer 200, got: $(kinds "$T/notify")"
has "$T/notify" "READY=1 | STATUS=serving the API on $URL; log level info | MAINPID=$LOOMD_PID"
ok "READY=1 (with STATUS and MAINPID) once GET /api/v1/health answers"

# a worker and the command it runs get no NOTIFY_SOCKET
cat >"$T/env-cmd.sh" <<EOF
env >"$T/cmd.env"
tr '\\000' '\\n' </proc/\$PPID/environ >"$T/worker.env"
cat /proc/\$PPID/comm >"$T/worker.comm"
EOF
curl -s -o "$T/body" -H 'Content-Type: application/json' \
	--data-binary "{\"spec\": {\"compute\": \"exec\", \"command\": [\"/bin/sh\", \"$T/env-cmd.sh\"]}, \"start\": true}" \
	"$URL/api/v1/training/tasks"
task=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['task_id'])" "$T/body") ||
	fail "the task was not created: $(cat "$T/body")"
wait_for "$task" completed
has "$T/worker.comm" "loom-worker"
has "$T/worker.env" "LOOM_TEST_BUILDDIR="   # the environment was read
has "$T/cmd.env" "LOOM_TEST_BUILDDIR="
hasnt "$T/worker.env" NOTIFY_SOCKET
hasnt "$T/cmd.env" NOTIFY_SOCKET
ok "neither the worker nor its command inherits NOTIFY_SOCKET"

# SIGHUP, log.level info → debug: debug lines from then on.  The notify
# module logs each datagram at debug level from loomd's main thread:
# RELOADING=1 goes while the level is still info, READY=1 after it.
hasnt "$T/daemon.log" "notify: sent"
conf debug
kill -HUP "$LOOMD_PID"
wait_line "$T/notify" "READY=1" 2
# (logged once sent: it may reach the listener first)
wait_line "$T/daemon.log" "notify: sent \"READY=1 STATUS=serving the API on $URL; log level debug MAINPID=$LOOMD_PID\""
has "$T/daemon.log" "SIGHUP: log level debug (was info), format text"
hasnt "$T/daemon.log" "notify: sent \"RELOADING=1"
curl -s -o /dev/null "$URL/api/v1/health"
wait_line "$T/daemon.log" "http GET /api/v1/health -> 200"
grep -F "RELOADING=1" "$T/notify" | grep -qE "MONOTONIC_USEC=[0-9]+ .*MAINPID=$LOOMD_PID" ||
	fail "RELOADING=1 without MONOTONIC_USEC and MAINPID: $(cat "$T/notify")"
ok "SIGHUP: RELOADING=1 then READY=1; log.level debug applied, debug lines appear"

# a file that no longer loads: logged with its line, nothing changes
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
log = { level = "loud"; file = "$T/daemon.log"; };
EOF
kill -HUP "$LOOMD_PID"
wait_line "$T/notify" "READY=1" 3
wait_line "$T/daemon.log" "SIGHUP: $T/loomd.conf: 1 problem found; the log settings stay as they were (level debug); loomd goes on serving"
has "$T/daemon.log" "SIGHUP: $T/loomd.conf:2: log.level: \"loud\" is not one of error, warn, info, debug, trace"
expect 0 loomctl --url "$URL" health
has "$T/daemon.log" "notify: sent \"RELOADING=1"   # still at debug level
ok "SIGHUP with a broken file: the error and its line logged, the level kept, loomd serving"

pid=$LOOMD_PID
stop_loomd
wait_line "$T/notify" "STOPPING=1"
wait "$LISTENER" || true
[ "$(kinds "$T/notify")" = "READY=1 health 200 RELOADING=1 READY=1 health 200 RELOADING=1 READY=1 health 200 STOPPING=1 " ] ||
	fail "unexpected notifications: $(kinds "$T/notify")"
all_from "$T/notify" "$pid"
ok "STOPPING=1 on SIGTERM; the whole sequence in order"

# ---------------------------------------------------------------- an abstract socket; --log-level wins
conf debug
name="@loom-test-notify-$$-$RANDOM"
listen_notify "$name" "$T/notify2"
NOTIFY_SOCKET=$name
export NOTIFY_SOCKET
start_loomd "$T/loomd.conf" "$state" --log-level info
unset NOTIFY_SOCKET
wait_line "$T/notify2" "health "
[ "$(kinds "$T/notify2")" = "READY=1 health 200 " ] || fail "abstract socket: $(kinds "$T/notify2")"
: >"$T/daemon.log"
kill -HUP "$LOOMD_PID"
wait_line "$T/notify2" "READY=1" 2
wait_line "$T/daemon.log" "SIGHUP: log.level \"debug\" in $T/loomd.conf is not applied: --log-level info was given on the command line"
has "$T/daemon.log" "SIGHUP: log level info, format text"
hasnt "$T/daemon.log" "notify: sent"
pid=$LOOMD_PID
stop_loomd
wait_line "$T/notify2" "STOPPING=1"
wait "$LISTENER" || true
all_from "$T/notify2" "$pid"
ok "an abstract NOTIFY_SOCKET (@name); --log-level keeps winning over the file on SIGHUP"

# nobody listening: said at debug level, never fatal
NOTIFY_SOCKET=$T/nobody.sock
export NOTIFY_SOCKET
start_loomd "$T/loomd.conf" "$state"
unset NOTIFY_SOCKET
expect 0 loomctl --url "$URL" health
stop_loomd
has "$T/daemon.log" "notify: cannot send \"READY=1"
has "$T/daemon.log" "to $T/nobody.sock: "
ok "a NOTIFY_SOCKET nobody listens on is logged at debug level, and loomd serves"

# ---------------------------------------------------------------- the unit, as installed
if ! command -v systemd-analyze >/dev/null; then
	echo "SKIP: systemd-analyze is not installed: the unit is neither verified nor rated"
	exit 0
fi
if ! systemd-analyze --help | grep -q -- --offline; then
	echo "SKIP: systemd-analyze $(systemd-analyze --version | sed -n '1s/^systemd //p') has no" \
		"--offline (systemd 250 and later): the unit is neither verified nor rated"
	exit 0
fi
root=$T/root
"${MAKE:-make}" -s -C "$B" DESTDIR="$root" install-binPROGRAMS install-man \
	install-systemdsystemunitDATA install-sysusersDATA >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "make install failed"; }
unit=$(find "$root" -name loomd.service)
sysusers=$(find "$root" -path '*/sysusers.d/loom.conf')
man8=$(find "$root" -name loomd.8)
[ -n "$unit" ] && [ -n "$sysusers" ] && [ -n "$man8" ] || fail "the unit, loom.conf or loomd.8 was not installed"
bindir=$(sed -n 's|^ExecStart=\(/.*\)/loomd .*|\1|p' "$unit")
[ -x "$root$bindir/loomd" ] || fail "the unit's ExecStart names $bindir/loomd, which make install did not write"
hasnt "$unit" "@bindir@"
hasnt "$unit" "@loomconfdir@"

systemd-analyze security --offline=true --threshold=25 "$unit" >"$T/security" 2>&1 || {
	cat "$T/security"; fail "systemd-analyze security rates the unit above 2.5"; }
score=$(sed -n 's/.*Overall exposure level for loomd.service: \([0-9.]*\).*/\1/p' "$T/security")
[ -n "$score" ] || { cat "$T/security"; fail "no overall exposure level in systemd-analyze's answer"; }
awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }' || { cat "$T/security"; fail "exposure $score, over 2.5"; }
ok "systemd-analyze security --offline=true: exposure $score (2.5 or less)"

# verify looks for ExecStart's program and runs man(1) for each
# Documentation= page: the installed ones, laid over the system's where
# only this process sees them
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null || [ ! -d "$bindir" ]; then
	echo "SKIP: systemd-analyze verify needs root, unshare(1) and $bindir (a private mount namespace)"
elif ! unshare -m true 2>/dev/null; then
	echo "SKIP: systemd-analyze verify: no private mount namespace here (unshare -m)"
else
	set +e
	MANPATH=$(dirname "$(dirname "$man8")") unshare -m sh -c '
		mount -t overlay overlay -o "lowerdir=$1:$2" "$2" || exit 99
		exec systemd-analyze verify "$3"' sh "$root$bindir" "$bindir" "$unit" >"$T/verify" 2>&1
	rv=$?
	set -e
	case $rv in
	0)	[ -s "$T/verify" ] && { cat "$T/verify"; fail "systemd-analyze verify warned"; }
		ok "systemd-analyze verify passes (ExecStart and the man pages from the install)" ;;
	99)	cat "$T/verify"
		echo "SKIP: systemd-analyze verify: cannot lay the install over $bindir (overlayfs)" ;;
	*)	cat "$T/verify"; fail "systemd-analyze verify failed ($rv)" ;;
	esac
fi

if command -v systemd-sysusers >/dev/null; then
	mkdir -p "$T/sysroot/etc"
	systemd-sysusers --root="$T/sysroot" "$sysusers" >"$T/out" 2>&1 || { cat "$T/out"; fail "systemd-sysusers failed"; }
	home=$(sed -n 's/^u loom - "Loom training daemon" //p' "$sysusers")
	grep -q "^loom:x:[0-9]*:[0-9]*:Loom training daemon:$home:" "$T/sysroot/etc/passwd" ||
		fail "no loom user with home $home: $(cat "$T/sysroot/etc/passwd")"
	grep -q '^loom:x:' "$T/sysroot/etc/group" || fail "no loom group"
	ok "systemd-sysusers creates the user loom, its home $home"
else
	echo "SKIP: systemd-sysusers is not installed: the sysusers.d file is not tried"
fi
