#!/bin/bash
# Preemption end to end through a real loomd on loopback whose sched-local
# has preemption = true, with real loom-worker processes on Seattle's hourly
# temperatures: a preemptible low-priority task holding every cpu is paused
# at a checkpoint when a high-priority task that does not fit beside it is
# started (the high task's reason names the victim meanwhile); the high task
# runs and completes; the low task then resumes by itself and completes with
# the same bytes as an undisturbed loom-worker run.  A low task that is not
# preemptible keeps running: the high task waits with the reason, then runs.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

# the monitors run in the background: stop them (and a worker this script
# stopped with SIGSTOP) before lib.sh's cleanup
BG_PIDS=
STOPPED=
trap 'rv=$?; set +e; [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
	for p in $BG_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	(exit $rv); cleanup' EXIT

# loomd under valgrind (LOOM_VALGRIND=1) answers slowly: wait longer, and
# give the high task more steps so that the low one is seen paused meanwhile
X=$((WAIT_S / 20))
state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
# stop_grace: the test holds a worker still (SIGSTOP) while its preemption is
# pending; loomd must not escalate to SIGTERM and SIGKILL meanwhile
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; stop_grace = "600s"; };
plugins = (
  { instance = "sched"; module = "sched-local"; config = { preemption = true; }; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; }
);
EOF
# the low task: ~1,400 steps (about 15 s on two cores), checkpointing every
# 50.  The test holds its worker still (SIGSTOP) once it is past step 40:
# the steps left are the margin for the test's polling on a loaded machine
# (with 470 steps, a task finished before the test could stop it)
sed -e 's/epochs = 40;/epochs = 30;/' -e 's/checkpoint_every = 200;/checkpoint_every = 50;/' \
	-e 's/patience = 10;/patience = 1000;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/low.conf"
# the high task: ~140 steps (more under valgrind), long enough to see the low
# one paused meanwhile; another seed, so it is plainly another model
sed -e "s/epochs = 40;/epochs = $((3 * X));/" -e 's/patience = 10;/patience = 1000;/' \
	-e 's/seed = 42;/seed = 7;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/high.conf"

"$B/host/loom-worker" -c "$T/loomd.conf" --threads 2 --run "$T/low.conf" --out "$T/straight" \
	>"$T/straight.log" 2>&1 || fail "the reference run failed (see straight.log)"
start_loomd "$T/loomd.conf" "$state"
ok "loomd with sched-local (preemption = true) started at $URL; reference run done"

field() { # TASK EXPR: a value of GET /training/tasks/TASK
	curl -s "$URL/api/v1/training/tasks/$1" |
		python3 -c "import json,sys; t=json.load(sys.stdin); print($2)"
}
show() { # TASK: its state and reason, for a failure message
	field "$1" '"%s %s step %s; waiting_reason: %r; requested: %r; error: %r" % (t["task_id"],
		t["status"], t["progress"]["current_step"], t.get("waiting_reason"),
		t.get("requested"), t.get("error"))'
}
wait_for() { # TASK STATE [SECONDS]
	local i=0 s
	while :; do
		s=$(field "$1" 't["status"]')
		[ "$s" = "$2" ] && return 0
		case $s in completed|failed|cancelled)
			fail "$1 ended $s, not $2: $(show "$1")" ;;
		esac
		i=$((i + 1))
		[ $i -gt $((${3:-60} * 10 * X)) ] && fail "$1 is not $2 after $((${3:-60} * X))s: $(show "$1")"
		sleep 0.1
	done
}
wait_step() { # TASK STEP: until the task is past STEP
	local i=0 s
	while s=$(field "$1" 't["progress"]["current_step"]'); [ "${s:-0}" -le "$2" ]; do
		i=$((i + 1))
		[ $i -gt $((300 * X)) ] && fail "$1 did not pass step $2 in $((30 * X))s: $(show "$1")"
		sleep 0.1
	done
}
wait_reason() { # TASK TEXT: until the task's waiting reason contains TEXT
	local i=0
	until field "$1" 't.get("waiting_reason", "")' | grep -qF -- "$2"; do
		i=$((i + 1))
		[ $i -gt $((100 * X)) ] && fail "$1 has no waiting reason with \"$2\" after $((10 * X))s: $(show "$1")"
		sleep 0.1
	done
}
worker_pid() { # TASK: its worker's pid, from GET /api/v1/resources
	curl -s "$URL/api/v1/resources" | python3 -c '
import json, sys
for j in json.load(sys.stdin)["jobs"]:
    if j["task_id"] == sys.argv[1] and j["pid"] > 0:
        print(j["pid"])' "$1"
}
# states TASK FILE: the statuses and reasons of the task's state messages a
# monitor saw, one "status: reason" a line
states() {
	python3 -c '
import json, sys
for line in open(sys.argv[2], encoding="utf-8"):
    m = json.loads(line)
    if m.get("type") == "state" and m.get("task_id") == sys.argv[1]:
        print("%s: %s" % (m["status"], m.get("reason", "")))' "$1" "$2"
}
# in_order "ID FROM>TO"...: loomd's log shows these transitions, in this order
in_order() {
	python3 - "$T/loomd.log" "$@" <<'EOF2' || fail "the transitions in loomd.log are not in the order: $*"
import re, sys
seq = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.search(r"task-(\d+): (\w+) → (\w+)", line)
    if m:
        seq.append("%s %s>%s" % m.groups())
try:
    at = [seq.index(w) for w in sys.argv[2:]]
except ValueError as e:
    sys.exit("%s; transitions seen: %s" % (e, seq))
if at != sorted(at):
    sys.exit("out of order; transitions seen: %s" % seq)
EOF2
}
WS=$B/tests/helpers/ws-watch
monitor() { # TASK OUT: a monitor of TASK until it completes, in the background (MONITOR)
	"$WS" "ws://${URL#http://}/api/v1/training/tasks/$1/monitor" --until-status completed \
		--timeout $((120 * X)) >"$2" 2>"$2.err" &
	MONITOR=$!
	BG_PIDS="$BG_PIDS $MONITOR"
	local i=0
	until grep -qF '"type":"snapshot"' "$2"; do
		i=$((i + 1))
		[ $i -gt $((100 * X)) ] && { cat "$2.err" >&2; fail "the monitor of $1 did not connect in $((10 * X))s"; }
		sleep 0.1
	done
}

# ---------------------------------------------------------------- a preemptible low task is preempted
expect 0 loomctl --url "$URL" submit "$T/low.conf" --name low --cpu 2 --preemptible
has "$T/out" "task-1 pending"
[ "$(field task-1 't["preemptible"]')" = True ] || fail "task-1 is not preemptible: $(show task-1)"
monitor task-1 "$T/ws-low"
ws_low=$MONITOR
expect 0 loomctl --url "$URL" start task-1
wait_for task-1 running 20
wait_step task-1 40
# hold the low worker still so that the preemption can be seen before the
# worker acts on it (it learns of the pause from the reply to its next report)
pid=$(worker_pid task-1)
[ -n "$pid" ] || fail "no worker pid for task-1 in /api/v1/resources"
kill -STOP "$pid"
STOPPED=$pid
expect 0 loomctl --url "$URL" submit "$T/high.conf" --name high --cpu 1 --priority 10 --start
has "$T/out" "task-2 pending"
wait_reason task-2 "preempting job 1 on local to make room"
[ "$(field task-2 't["status"]')" = pending ] || fail "task-2 started beside task-1: $(show task-2)"
[ "$(field task-1 't["status"]')" = running ] || fail "task-1 is not running: $(show task-1)"
[ "$(field task-1 't.get("requested")')" = pause ] ||
	fail "task-1 was not asked to pause for task-2: $(show task-1)"
ok "high-priority task-2 does not fit beside task-1: it waits preempting task-1, which is asked to pause"

kill -CONT "$pid"
STOPPED=
# the state and the rest in one response (task-1 resumes by itself as soon as
# task-2 is done).  loomd marks task-1 paused (reason: the preemption) when
# its worker exits, and the next plan, a moment later, gives it the reason
# it waits for: wait for that plan too
i=0
until curl -s "$URL/api/v1/training/tasks/task-1" >"$T/paused.json" &&
	grep -qF '"status":"paused"' "$T/paused.json" &&
	grep -qF '"waiting_reason":"waiting for' "$T/paused.json"; do
	i=$((i + 1))
	[ $i -gt $((300 * X)) ] && fail "task-1 was not seen paused and waiting for its cpu in $((30 * X))s: $(show task-1)"
	sleep 0.05
done
snap() { python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print($1)" "$T/paused.json"; }
step=$(snap 't["progress"]["current_step"]')
total=$(snap 't["progress"]["total_steps"]')
[ "$step" -gt 0 ] && [ "$step" -lt "$total" ] || fail "task-1 paused at step $step of $total"
[ "$(snap '"paused_at" in t')" = True ] || { cat "$T/paused.json" >&2; fail "task-1 has no paused_at"; }
# the plan that started task-2 found no room for task-1: it waits, queued
snap 't.get("waiting_reason", "")' >"$T/why"
has "$T/why" "waiting for 2 cpu; 1 of 2 cpu free on local"
case $(field task-2 't["status"]') in running|completed) ;; *) fail "task-2 did not start: $(show task-2)" ;; esac
ok "task-1 paused at step $step of $total, queued to resume; task-2 started in its place"

wait_for task-2 completed 60
wait_for task-1 completed 60
wait "$ws_low" || { cat "$T/ws-low.err" >&2; fail "the monitor of task-1 did not see it complete"; }
states task-1 "$T/ws-low" >"$T/low-states"
python3 - "$T/low-states" <<'EOF2' || { cat "$T/low-states" >&2; fail "task-1's state changes are not running, paused (preempted for job 2), running (resumed), completed"; }
import sys
lines = [l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8")]
got = [l.split(":", 1)[0] for l in lines]
sys.exit(0 if got == ["running", "paused", "running", "completed"] and "preempted" in lines[1]
         and "job 2" in lines[1] and "resumed" in lines[2] else 1)
EOF2
why=$(sed -n 2p "$T/low-states")
# the order of it all, from loomd's log of transitions (one logger, in order)
in_order "1 running>paused" "2 pending>running" "2 running>completed" "1 paused>running" \
	"1 running>completed"
[ "$(field task-1 't["metrics"].get("test_mae") is not None')" = True ] ||
	fail "task-1 has no test metrics: $(field task-1 't["metrics"]')"
cmp "$T/straight/last.safetensors" "$state/jobs/task-1/last.safetensors" ||
	fail "preempted at step $step and resumed, task-1's weights differ from an undisturbed run"
ok "task-1 ${why}; it resumed by itself once task-2 completed, to byte-identical weights"

# ---------------------------------------------------------------- a task that is not preemptible is not
expect 0 loomctl --url "$URL" submit "$T/low.conf" --name low-firm --cpu 2 --start
has "$T/out" "task-3"
wait_for task-3 running 20
wait_step task-3 40
pid=$(worker_pid task-3)
[ -n "$pid" ] || fail "no worker pid for task-3 in /api/v1/resources"
kill -STOP "$pid" # task-3 cannot end while task-4 is looked at
STOPPED=$pid
expect 0 loomctl --url "$URL" submit "$T/high.conf" --name high --cpu 1 --priority 10 --start
has "$T/out" "task-4 pending"
wait_reason task-4 "waiting for 1 cpu; 0 of 2 cpu free on local"
sleep 1 # ten more plans
[ "$(field task-4 't["status"]')" = pending ] || fail "task-4 is not waiting: $(show task-4)"
hasnt <(field task-4 't["waiting_reason"]') "preempt"
[ "$(field task-3 't["status"]')" = running ] ||
	fail "task-3, not preemptible, did not keep running: $(show task-3)"
[ "$(field task-3 't.get("requested")')" = None ] ||
	fail "task-3, not preemptible, was asked to stop: $(show task-3)"
kill -CONT "$pid"
STOPPED=
wait_for task-4 completed 60
[ "$(field task-3 't["status"]')" = completed ] || fail "task-3 did not complete: $(show task-3)"
in_order "3 running>completed" "4 pending>running" "4 running>completed"
[ "$(field task-3 '"paused_at" in t')" = False ] || fail "task-3 was paused: $(show task-3)"
cmp "$T/straight/last.safetensors" "$state/jobs/task-3/last.safetensors" ||
	fail "task-3's weights differ from an undisturbed run"
ok "a task that is not preemptible keeps running: task-4 waits for its cpu, then runs after it"

stop_loomd
ok "loomd stopped cleanly"
