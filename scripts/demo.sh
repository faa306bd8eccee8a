#!/bin/sh
# make demo: start loomd on etc/loomd.conf with a temporary state directory,
# submit the Seattle forecast as a training task, watch it with a progress
# bar, pause it midway and resume it, print its test metrics beside the
# naive baselines, and stop loomd cleanly.
#   scripts/demo.sh BUILDDIR SRCDIR
set -eu
B=$1
S=$2
state=$(mktemp -d "${TMPDIR:-/tmp}/loom-demo.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
	rm -rf "$state"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

export LOOM_PLUGIN_PATH="$B/plugins"
export LOOM_WORKER="$B/host/loom-worker"
say "loomd --check-config: is etc/loomd.conf valid?"
"$B/host/loomd" -c "$S/etc/loomd.conf" --check-config

say "loomd: start on a free loopback port, state in $state"
"$B/host/loomd" -c "$S/etc/loomd.conf" --state-dir "$state" --listen 127.0.0.1:0
pid=$(cat "$state/loomd.pid")
url=$(cat "$state/loomd.url")
echo "loomd is running (pid $pid) at $url; its log is $state/loomd.log"
# loomctl talks to loomd over its Unix socket: the first start made this
# account (the state directory's owner) an admin, so no token is needed
sock=$state/loomd.sock
say "loomctl whoami (over $sock)"
"$B/host/loomctl" --socket "$sock" whoami

say "loomctl health"
"$B/host/loomctl" --socket "$sock" health
say "loomctl plugins"
"$B/host/loomctl" --socket "$sock" plugins

data=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv
if [ ! -r "$data" ]; then
	echo
	echo "($data is missing: install python3-vega-datasets, as ./bootstrap does, to see"
	echo " the training part of the demo)"
	exit 0
fi
job="$S/etc/jobs/seattle-temps-forecast.conf"
ctl() { "$B/host/loomctl" --socket "$sock" "$@"; }
field() { ctl --json status "$1" | python3 -c 'import json,sys; t=json.load(sys.stdin); print('"$2"')'; }
step() { field "$1" 't["progress"]["current_step"]'; }

say "loomctl submit: a 24-hour forecast of Seattle's temperature ($job)"
task=$(ctl submit "$job" --start --cpu 2 | cut -d' ' -f1)
echo "submitted $task; it runs in a loom-worker process that loomd started"
say "loomctl watch $task (pausing it at step 600, then resuming it)"
ctl watch "$task" &
watcher=$!
while [ "$(step "$task")" -lt 600 ] && [ "$(field "$task" 't["status"]')" = running ]; do
	sleep 0.2
done
# On a loaded machine the task may finish before the pause reaches it: the
# demo then says so and goes on.
if ctl pause "$task" >/dev/null 2>"$state/pause.err"; then
	i=0
	while [ "$(field "$task" 't["status"]')" != paused ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && { echo "task $task did not pause" >&2; exit 1; }
		sleep 0.1
	done
	printf '\n'
	ctl status "$task" | sed -n '1,3p'
	ctl resources
	sleep 1
	ctl resume "$task" >/dev/null
else
	printf '\n(%s finished before it could be paused: %s)\n' "$task" "$(cat "$state/pause.err")"
fi
wait "$watcher" || { echo "the task did not complete" >&2; exit 1; }

say "test metrics beside the naive baselines, and the model auto kept ($state/jobs/$task/metrics.json)"
python3 - "$state/jobs/$task/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t, b = m["test"], m["baselines"]
print(f"  Loom forecast          MAE {t['mae']:.4f} °F   MSE {t['mse']:.4f}")
print(f"  repeat last value      MAE {b['repeat_last']['mae']:.4f} °F   MSE {b['repeat_last']['mse']:.4f}")
s = b.get("seasonal_naive")
if s:
    print(f"  same hour, day before  MAE {s['mae']:.4f} °F   MSE {s['mse']:.4f}")
print(f"  ({m['run']['steps']} steps, {m['run']['epochs_run']} epochs, {m['run']['parameters']} parameters)")
k = m.get("model")
if k:
    print(f"  kept: the {k['kind']} model, {k.get('detail', {}).get('chosen_by', 'as the spec asked')}")
    for c in m.get("candidates", []):
        members = " + ".join(c.get("detail", {}).get("members", []))
        name = f"{c['name']} ({members})" if members else c["name"]
        print(f"    {name:40} validation loss {c['validation']['loss']:.5f}   test MAE {c['test']['mae']:.4f} °F")
PY
say "loomctl list"
ctl list

say "stop loomd (SIGTERM)"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt 300 ] && { echo "loomd did not stop" >&2; exit 1; }
	sleep 0.1
done
pid=
tail -n 2 "$state/loomd.log"
echo
echo "Demo complete."
