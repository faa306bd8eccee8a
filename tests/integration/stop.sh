#!/bin/bash
# Stopping workers that do not answer, and what a worker may use: a real
# loomd on loopback.
#  - A worker stuck where no request reaches it (a stand-in for a parser
#    spinning in a loop: it never reports and ignores SIGTERM) is stopped by
#    loomd's escalation when its timeout passes and when it is cancelled:
#    SIGTERM to its process group after jobs.stop_grace, SIGKILL after a
#    second grace, long before the heartbeat would.  The recorded reason
#    names the request and the escalation; nothing of its group is left.
#  - compute-exec's command runs in a process group of its own: when the
#    worker is killed, the command goes too (loomd stops the worker's whole
#    session).
#  - A task with a memory request fails with "exceeded its memory request"
#    when it goes beyond it; one with enough memory completes.
#  - max_rss is the worker's own peak, not loomd's high-water mark.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
[ -r /proc/self/stat ] || { echo "SKIP: no /proc (loomd finds a worker's processes there)"; exit 77; }

api() { # METHOD PATH [BODY]: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} \
		"$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
field() { # TASK EXPR: a value of GET /training/tasks/TASK
	curl -s "$URL/api/v1/training/tasks/$1" |
		python3 -c "import json,sys; t=json.load(sys.stdin); print($2)"
}
submit() { # BODY: the new task's id in $TASK
	api POST /api/v1/training/tasks "$1"
	code 201
	TASK=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['task_id'])" "$T/body")
}
wait_end() { # TASK SECONDS: until the task has ended; its state in $END
	local deadline=$((SECONDS + $2))
	while :; do
		END=$(field "$1" 't["status"]')
		case $END in completed|failed|cancelled) return 0 ;; esac
		[ $SECONDS -gt $deadline ] && fail "$1 is still $END after $2 s"
		sleep 0.1
	done
}
wait_file() { # FILE: until it exists and is not empty (60 s)
	local i=0
	while [ ! -s "$1" ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && fail "$1 did not appear in 60 s"
		sleep 0.1
	done
}
# live PID: the process exists and is not a zombie
live() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
# group_gone PGID: no live process is left in process group PGID (5 s for
# init to reap what was killed)
group_gone() {
	local i=0 p left
	while :; do
		left=
		for p in $(ps -e -o pid= -o pgid= | awk -v g="$1" '$2 == g { print $1 }'); do
			live "$p" && left="$left $p"
		done
		[ -z "$left" ] && return 0
		i=$((i + 1))
		[ $i -gt 50 ] && { ps -o pid,pgid,sid,stat,args -p "${left# }" >&2 || true; fail "processes of group $1 are left:$left"; }
		sleep 0.1
	done
}

# ---------------------------------------------------------------- a stuck worker
# It never reports, ignores SIGTERM, and leaves a child in its group.
cat >"$T/stuck-worker" <<'EOF'
#!/bin/sh
trap "" TERM INT
job=$(echo "$@" | sed 's/.*--job \([0-9]*\).*/\1/')
sleep 120 &
echo "$$ $!" >"$STUCK_DIR/task-$job.new"
mv "$STUCK_DIR/task-$job.new" "$STUCK_DIR/task-$job"
while kill -0 $PPID 2>/dev/null; do sleep 0.1; done # gone with a failed test's loomd
EOF
chmod +x "$T/stuck-worker"
mkdir "$T/stuck"
export STUCK_DIR=$T/stuck
cat >"$T/stuck.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$T/stuck-worker"; tick = "100ms"; heartbeat_timeout = "300s";
         stop_grace = "1s"; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
start_loomd "$T/stuck.conf" "$T/state1"
ok "loomd with a worker that never answers started at $URL"

t0=$(date +%s)
submit '{"spec": {"compute": "exec", "command": ["true"]}, "timeout": 2, "start": true}'
wait_file "$T/stuck/$TASK"
read -r wpid cpid <"$T/stuck/$TASK"
wait_end "$TASK" 60
t1=$(date +%s)
[ "$END" = failed ] || fail "$TASK ended $END, not failed"
field "$TASK" 't["error"]' >"$T/out"
has "$T/out" "timed out after 2 s (its timeout)"
has "$T/out" "did not stop within 1 s"
has "$T/out" "killed (SIGKILL)"
echo "# $(cat "$T/out")"
[ $((t1 - t0)) -lt 30 ] || fail "$TASK took $((t1 - t0)) s to stop"
live "$cpid" && fail "the stuck worker's child $cpid is still running"
group_gone "$wpid"
# finished_at is when it ended, not when the timeout passed
curl -s "$URL/api/v1/training/tasks/$TASK" >"$T/task.json"
python3 - "$T/task.json" <<'EOF' || fail "finished_at is not when the worker was killed"
import json, sys, datetime
t = json.load(open(sys.argv[1]))
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
# timeout 2 s + grace 1 s (SIGTERM) + grace 1 s (SIGKILL)
assert p(t["finished_at"]) - p(t["started_at"]) >= 3.9, t
EOF
ok "timeout: a worker that never answers is terminated, then killed ($((t1 - t0)) s); the reason says so"

submit '{"spec": {"compute": "exec", "command": ["true"]}, "start": true}'
wait_file "$T/stuck/$TASK"
read -r wpid cpid <"$T/stuck/$TASK"
expect 0 timeout 60 "$LOOMCTL" --url "$URL" cancel "$TASK"
[ "$(field "$TASK" 't["status"]')" = cancelled ] || fail "$TASK is not cancelled"
has "$T/loomd.log" "$TASK: running → cancelled: cancelled on request; the worker did not stop within 1 s"
live "$cpid" && fail "the stuck worker's child $cpid is still running"
group_gone "$wpid"
ok "loomctl cancel: a worker that never answers is killed; the task is cancelled"
stop_loomd

# ---------------------------------------------------------------- real workers
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; stop_grace = "1s"; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; }
);
EOF
start_loomd "$T/loomd.conf" "$T/state2"
ok "loomd with loom-worker started at $URL"

# compute-exec's command ignores SIGTERM and has an hour's grace from
# compute-exec: loomd kills the worker, and the command in its own group
submit "{\"spec\": {\"compute\": \"exec\", \"stop_grace\": 3600, \"command\": [\"/bin/sh\", \"-c\", \"echo \$\$ >$T/cmd.pid; trap '' TERM; while :; do sleep 0.2; done\"]}, \"start\": true}"
wait_file "$T/cmd.pid"
cmd=$(cat "$T/cmd.pid")
expect 0 timeout 60 "$LOOMCTL" --url "$URL" cancel "$TASK"
[ "$(field "$TASK" 't["status"]')" = cancelled ] || fail "$TASK is not cancelled"
group_gone "$cmd"
ok "cancel: compute-exec's command that ignores SIGTERM is killed with its worker"

# max_rss is the worker's own: loomd grows first (a large request body)
head -c $((15 << 20)) /dev/zero | tr '\0' 'a' | sed 's/^/{"spec": "/; s/$/"}/' >"$T/big.json"
curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary @"$T/big.json" \
	"$URL/api/v1/training/tasks" || true
rm -f "$T/big.json"
loomd_hwm=$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$LOOMD_PID/status")
submit '{"spec": {"compute": "exec", "command": ["true"]}, "start": true}'
wait_end "$TASK" 60
[ "$END" = completed ] || fail "$TASK ended $END"
rss=$(field "$TASK" 't["resource_usage"]["max_rss"]')
[ "$rss" -gt 0 ] && [ "$rss" -lt $((loomd_hwm / 2)) ] && [ "$rss" -lt $((64 << 20)) ] ||
	fail "$TASK (exec true) reports max_rss $rss; loomd's own peak is $loomd_hwm"
ok "max_rss of exec true: $((rss >> 10)) KiB (loomd's peak: $((loomd_hwm >> 20)) MiB)"

# ---------------------------------------------------------------- memory requests
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
if grep -q "enforced by cgroup v2" "$T/loomd.log"; then
	echo "# memory requests: cgroup v2 (memory.max)"
elif grep -qa __asan_init "$B/host/loom-worker" "$B/host/.libs/loom-worker" 2>/dev/null; then
	# AddressSanitizer reserves terabytes of shadow address space and aborts
	# when a mapping fails: RLIMIT_AS cannot limit such a worker
	echo "# skipped the memory requests: this is a sanitizer build, where RLIMIT_AS cannot apply"
	stop_loomd
	ok "loomd stopped cleanly"
	exit 0
else
	echo "# memory requests: RLIMIT_AS and the reported peak (no delegated cgroup v2 here)"
fi
# a model of ~600 MB against a request of 64M
sed -e 's/epochs = 40;/epochs = 1;/' -e 's/stride = 2;/stride = 24;/' \
	-e 's/d_model = 64; heads = 4; layers = 2; ffn = 128;/d_model = 512; heads = 4; layers = 4; ffn = 2048;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/big.conf"
sed -e 's/epochs = 40;/epochs = 1;/' -e 's/stride = 2;/stride = 24;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/tiny.conf"
export LOOM_TEMPLATES=$S/etc/templates
expect 0 loomctl --url "$URL" submit "$T/big.conf" --memory 64M --start
TASK=$(grep -o 'task-[0-9]*' "$T/out" | head -1)
wait_end "$TASK" 120
[ "$END" = failed ] || fail "$TASK ended $END, not failed"
field "$TASK" 't["error"]' >"$T/out"
has "$T/out" "exceeded its memory request (64M): peak "
echo "# $(cat "$T/out")"
expect 0 loomctl --url "$URL" submit "$T/tiny.conf" --memory 256M --start
TASK=$(grep -o 'task-[0-9]*' "$T/out" | head -1)
wait_end "$TASK" 120
[ "$END" = completed ] || fail "$TASK ended $END: $(field "$TASK" 't.get("error")')"
ok "memory: 64M for a model of ~600 MB fails naming the request and the peak; 256M for a small one completes"
stop_loomd
