#!/bin/bash
# A full disk under a real loomd: its state directory is a small tmpfs,
# filled until writes fail (ENOSPC).  Then an acknowledged change must be
# durable or refused: POST start and cancel answer 503 naming the cause
# and the tasks stay as they were; /health answers 503 with database.ok
# false; a task whose worker finishes meanwhile is kept in memory and ends
# in its final state once space returns, without a restart; the
# tensorboard tracker's write errors are logged once and counted, not
# twice a second.  Space returned: /health is ok again by itself, a start
# works and survives a restart of loomd.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed (./bootstrap installs it)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: mounting a tmpfs for the full disk needs root"; exit 77; }

state=$T/state
mkdir -p "$state"
if ! mount -t tmpfs -o size=4m,mode=0750 tmpfs "$state" 2>"$T/mount.err"; then
	echo "SKIP: cannot mount a tmpfs on $state: $(cat "$T/mount.err")"
	exit 77
fi
fulldisk_exit() {
	local rv=$?
	if [ -n "$LOOMD_PID" ] && kill -0 "$LOOMD_PID" 2>/dev/null; then
		kill -KILL "$LOOMD_PID" 2>/dev/null || true
		wait "$LOOMD_BG" 2>/dev/null || true
	fi
	LOOMD_PID= LOOMD_BG=
	umount "$state" 2>/dev/null || umount -l "$state" 2>/dev/null || true
	(exit $rv)
	cleanup
}
trap fulldisk_exit EXIT

cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
log = { file = "$T/daemon.log"; };
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; },
  { instance = "tensorboard"; module = "tracker-tensorboard"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started on a 4 MiB tmpfs at $URL"

api() { # METHOD PATH [BODY]: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} \
		"$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
field() { # TASK EXPR: a value of GET /training/tasks/TASK
	curl -s "$URL/api/v1/training/tasks/$1" |
		python3 -c "import json,sys; t=json.load(sys.stdin); print($2)"
}
submit() { # BODY: the new task's id on stdout
	api POST /api/v1/training/tasks "$1"
	code 201
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["task_id"])' "$T/body"
}
wait_final() { # TASK SECONDS: until it is completed, failed or cancelled
	local i=0 s
	while :; do
		s=$(field "$1" 't["status"]')
		case $s in completed|failed|cancelled) return 0 ;; esac
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && fail "$1 is still $s after $2 s"
		sleep 0.1
	done
}
wait_log() { # TEXT SECONDS: until loomd's log has TEXT
	local i=0
	until grep -qF -- "$1" "$T/daemon.log"; do
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && fail "loomd did not log \"$1\" within $2 s"
		sleep 0.1
	done
}

# A: pending, to be started; B: pending, to be cancelled; C: running,
# reporting a point every 50 ms (the tracker writes them) until $T/go
# exists, then exiting 0.
A=$(submit '{"name": "a", "spec": {"compute": "exec", "command": ["true"]}}')
B=$(submit '{"name": "b", "spec": {"compute": "exec", "command": ["true"]}}')
cat >"$T/c.sh" <<EOF
#!/bin/sh
i=0
while [ ! -e "$T/go" ]; do
	i=\$((i + 1))
	echo "{\"step\": \$i, \"total_steps\": 1000000, \"loss\": 0.5}"
	sleep 0.05
done
EOF
chmod +x "$T/c.sh"
C=$(submit "{\"name\": \"c\", \"spec\": {\"compute\": \"exec\", \"command\": [\"$T/c.sh\"]}, \"start\": true}")
i=0
until [ "$(field "$C" 't["progress"]["current_step"]')" -gt 5 ] 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 600 ] && fail "$C did not report progress in 60 s"; sleep 0.1
done
ok "$A and $B pending, $C running and tracked"

# ---------------------------------------------------------------- fill the disk
# The WAL is checkpointed and truncated first, so a write cannot reuse
# space the WAL already holds; then a file takes every free block.  SQLite
# may still fit a small write into pages it holds: submissions are sent
# until one is refused, which proves the store cannot write.
python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())' \
	"$state/loom.db" >/dev/null
full_from=$(wc -l <"$T/daemon.log")
dd if=/dev/zero of="$state/fill" bs=64k 2>/dev/null && fail "dd filled 4 MiB without ENOSPC?"
dd if=/dev/zero of="$state/fill2" bs=512 2>/dev/null || true
n=0
while :; do
	api POST /api/v1/training/tasks '{"name": "filler", "spec": {"compute": "exec", "command": ["true"]}}'
	[ "$(cat "$T/code")" = 503 ] && break
	code 201
	n=$((n + 1))
	[ $n -gt 500 ] && fail "500 submissions were stored on a full disk"
done
has "$T/body" '"code":"unavailable"'
has "$T/body" " could not be stored: database or disk is full; free space under $state and retry"
ok "a submission on the full disk: 503 naming the cause ($n stored before it in pages SQLite held)"

# ---------------------------------------------------------------- refused, unchanged
api POST "/api/v1/training/tasks/$A/start"
code 503
has "$T/body" "$A's start could not be stored: database or disk is full; free space under $state and retry"
[ "$(field "$A" 't["status"]')" = pending ] || fail "$A is not pending after a refused start"
api POST "/api/v1/training/tasks/$B/cancel"
code 503
has "$T/body" "$B's cancel could not be stored: database or disk is full"
[ "$(field "$B" 't["status"]')" = pending ] || fail "$B is not pending after a refused cancel"
ok "start and cancel on the full disk: 503 naming the cause, the tasks unchanged"

api GET /api/v1/health
code 503
python3 - "$T/body" <<'EOF' || fail "/health on a full disk: $(cat "$T/body")"
import json, sys
h = json.load(open(sys.argv[1]))
assert h["status"] == "degraded", h
assert h["database"]["ok"] is False, h
assert "no room to write" in h["database"]["error"], h
EOF
ok "/health: 503, database.ok false with the cause"

# ---------------------------------------------------------------- loomd's own changes
# The tracker fails on each flush while C reports; three seconds of it
# (six flushes and more) must give one line, not one per flush.
wait_log "[tracker:tensorboard] cannot write" 30
sleep 3
touch "$T/go"
wait_log "$C: its move to" 30
# the store still says running; the task says what is kept
[ "$(field "$C" 't["status"], t.get("unstored_status")')" = "running completed" ] ||
	fail "$C while its move is kept: $(curl -s "$URL/api/v1/training/tasks/$C")"
full_to=$(wc -l <"$T/daemon.log")
sed -n "$((full_from + 1)),${full_to}p" "$T/daemon.log" >"$T/full.log"
tb=$(grep -c 'tensorboard' "$T/full.log" || true)
[ "$tb" -le 3 ] || { cat "$T/full.log" >&2; fail "$tb lines from the tensorboard tracker while the disk was full"; }
total=$(wc -l <"$T/full.log")
ok "while full: $tb line(s) from the tensorboard tracker, $total lines in all"

# ---------------------------------------------------------------- space returns
rm -f "$state/fill" "$state/fill2"
i=0
until [ "$(curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/health")" = 200 ]; do
	i=$((i + 1)); [ $i -gt 200 ] && fail "/health is not ok 20 s after space returned: $(cat "$T/body")"
	sleep 0.1
done
has "$T/body" '"ok":true'
ok "/health ok again by itself"

wait_final "$C" 30
[ "$(field "$C" 't["status"]')" = completed ] || fail "$C ended $(field "$C" 't["status"]'): $(field "$C" 't.get("error")')"
wait_log "$C: its move to completed, kept while the state database could not write, is stored" 5
[ "$(field "$C" 't.get("unstored_status")')" = None ] || fail "$C still says a move is kept"
ok "$C, finished while the disk was full, completed without a restart"

api POST "/api/v1/training/tasks/$A/start"
code 200
wait_final "$A" 60
[ "$(field "$A" 't["status"]')" = completed ] || fail "$A did not complete"
api POST "/api/v1/training/tasks/$B/cancel"
code 200
[ "$(field "$B" 't["status"]')" = cancelled ] || fail "$B was not cancelled"
ok "start and cancel work again"

stop_loomd
start_loomd "$T/loomd.conf" "$state"
[ "$(field "$A" 't["status"]')" = completed ] || fail "$A is not completed after a restart"
[ "$(field "$B" 't["status"]')" = cancelled ] || fail "$B is not cancelled after a restart"
[ "$(field "$C" 't["status"]')" = completed ] || fail "$C is not completed after a restart"
stop_loomd
ok "durable: the same states after a restart"
