#!/bin/sh
# make demo: start loomd on etc/loomd.conf with a temporary state directory,
# show what it loaded through loomctl, and stop it cleanly.
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
say "loomd --check-config: is etc/loomd.conf valid?"
"$B/host/loomd" -c "$S/etc/loomd.conf" --check-config

say "loomd: start on a free loopback port, state in $state"
"$B/host/loomd" -c "$S/etc/loomd.conf" --state-dir "$state" --listen 127.0.0.1:0
pid=$(cat "$state/loomd.pid")
url=$(cat "$state/loomd.url")
echo "loomd is running (pid $pid) at $url; its log is $state/loomd.log"

say "loomctl health"
"$B/host/loomctl" --url "$url" health
say "loomctl plugins"
"$B/host/loomctl" --url "$url" plugins
say "loomctl plugins show store"
"$B/host/loomctl" --url "$url" plugins show store
say "GET /api/v1/plugins (the REST API loomctl uses)"
if command -v curl >/dev/null; then curl -s "$url/api/v1/plugins"; echo; fi

say "stop loomd (SIGTERM)"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt 100 ] && { echo "loomd did not stop" >&2; exit 1; }
	sleep 0.1
done
pid=
tail -n 3 "$state/loomd.log"

data=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv
if [ ! -r "$data" ]; then
	echo
	echo "($data is missing: install python3-vega-datasets, as ./bootstrap does, to see"
	echo " the training part of the demo)"
	exit 0
fi
job="$S/etc/jobs/seattle-temps-forecast.conf"
say "loom-worker: train a 24-hour forecast of Seattle's temperature ($job)"
"$B/host/loom-worker" --run "$job" --out "$state/run" --max-steps 600 --log-level warn
say "loom-worker --resume: continue the paused run from its checkpoint"
"$B/host/loom-worker" --resume "$state/run" --log-level warn
say "metrics.json: the test split beside the naive baselines"
python3 - "$state/run/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t, b = m["test"], m["baselines"]
print(f"  Loom forecast      MAE {t['mae']:.4f} °F   MSE {t['mse']:.4f}")
print(f"  repeat last value  MAE {b['repeat_last']['mae']:.4f} °F   MSE {b['repeat_last']['mse']:.4f}")
s = b.get("seasonal_naive")
if s:
    print(f"  same hour, day before  MAE {s['mae']:.4f} °F   MSE {s['mse']:.4f}")
print(f"  ({m['run']['steps']} steps, {m['run']['epochs_run']} epochs, {m['run']['parameters']} parameters)")
PY
echo
echo "Demo complete.  (Submitting, watching and pausing jobs through loomd arrives with"
echo "the job control plane.)"
