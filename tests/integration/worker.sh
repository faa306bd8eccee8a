#!/bin/bash
# loom-worker end to end on real data (Debian's python3-vega-datasets): the
# forecast beats the naive baselines, the classifier beats the majority
# class; a run paused (--max-steps, SIGINT) or killed (-9) and resumed ends
# with the same bytes as one that never stopped; a corrupt checkpoint is
# refused; bad specs and data are refused with clear messages.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
worker() { "$W" --threads 2 "$@"; }

metric() { # FILE EXPR: a number from metrics.json
	python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print($2)" "$1"
}

# ---------------------------------------------------------------- learning on real data
expect 0 worker --run "$S/etc/jobs/seattle-temps-forecast.conf" --out "$T/temps"
has "$T/err" "test metrics:"
for f in last.safetensors best.safetensors metrics.json job.json; do
	[ -s "$T/temps/$f" ] || fail "the run wrote no $f"
done
mae=$(metric "$T/temps/metrics.json" 'm["test"]["mae"]')
last=$(metric "$T/temps/metrics.json" 'm["baselines"]["repeat_last"]["mae"]')
seasonal=$(metric "$T/temps/metrics.json" 'm["baselines"]["seasonal_naive"]["mae"]')
python3 -c "import sys; a,b,c=map(float,sys.argv[1:]); sys.exit(0 if a < b and a < c else 1)" \
	"$mae" "$last" "$seasonal" ||
	fail "forecast test MAE $mae does not beat repeat-last $last and seasonal-naive $seasonal"
ok "seattle-temps forecast: test MAE $mae < repeat-last $last, seasonal-naive $seasonal"

expect 0 worker --run "$S/etc/jobs/seattle-weather-classify.conf" --out "$T/weather"
acc=$(metric "$T/weather/metrics.json" 'm["test"]["accuracy"]')
maj=$(metric "$T/weather/metrics.json" 'm["baselines"]["majority_class"]["accuracy"]')
python3 -c "import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if a > b else 1)" "$acc" "$maj" ||
	fail "classification test accuracy $acc does not beat the majority class $maj"
ok "seattle-weather classification: test accuracy $acc > majority class $maj"

# ---------------------------------------------------------------- pause, kill, resume: same bytes
# a shorter run of the same job, checkpointing every 50 steps
sed -e 's/epochs = 40;/epochs = 4;/' -e 's/checkpoint_every = 200;/checkpoint_every = 50;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/short.conf"
expect 0 worker --run "$T/short.conf" --out "$T/straight"

expect 0 worker --run "$T/short.conf" --out "$T/paused" --max-steps 77
has "$T/err" "paused; continue with: loom-worker --resume $T/paused"
[ ! -e "$T/paused/last.safetensors" ] || fail "a paused run wrote last.safetensors"
expect 0 worker --resume "$T/paused" --max-steps 130
expect 0 worker --resume "$T/paused"
cmp "$T/straight/last.safetensors" "$T/paused/last.safetensors" ||
	fail "paused and resumed twice, last.safetensors differs from the straight run"
cmp "$T/straight/best.safetensors" "$T/paused/best.safetensors" ||
	fail "paused and resumed, best.safetensors differs"
ok "paused at steps 77 and 130 and resumed: byte-identical last and best weights"

# kill -9 in the middle of the run, then resume from the newest checkpoint
"$W" --threads 2 --run "$T/short.conf" --out "$T/killed" >"$T/killed.log" 2>&1 &
pid=$!
i=0
until ls "$T/killed/checkpoints/" 2>/dev/null | grep -q 'step-000000000100'; do
	i=$((i + 1)); [ $i -gt 600 ] && fail "no checkpoint appeared to kill after"
	sleep 0.05
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ ! -e "$T/killed/last.safetensors" ] || fail "the run finished before it could be killed"
expect 0 worker --resume "$T/killed"
has "$T/err" "resuming from"
cmp "$T/straight/last.safetensors" "$T/killed/last.safetensors" ||
	fail "killed with -9 and resumed, last.safetensors differs from the straight run"
ok "killed with -9 and resumed: byte-identical last weights"

# SIGINT pauses at the next step (run directly, not through the shell
# function, so $! is loom-worker itself: libtool's wrapper execs it)
"$W" --threads 2 --run "$S/etc/jobs/seattle-temps-forecast.conf" --out "$T/int" >"$T/int.log" 2>&1 &
pid=$!
until grep -q 'step ' "$T/int.log" 2>/dev/null; do sleep 0.05; done
kill -INT "$pid"
rv=0
wait "$pid" || rv=$?
[ $rv -eq 0 ] || fail "SIGINT: loom-worker exited $rv"
has "$T/int.log" "paused at step"
[ -n "$(ls "$T/int/checkpoints/")" ] || fail "SIGINT left no checkpoint"
ok "SIGINT pauses with a checkpoint and exit 0"

# ---------------------------------------------------------------- corrupt checkpoints
newest=$(ls "$T/paused/checkpoints/" | sort | tail -n 1)
cp -r "$T/paused" "$T/trunc"
truncate -s 1000 "$T/trunc/checkpoints/$newest"
expect 1 worker --resume "$T/trunc"
has "$T/err" "is truncated or not a Loom checkpoint"
cp -r "$T/paused" "$T/flip"
python3 - "$T/flip/checkpoints/$newest" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x40
open(p, "wb").write(b)
PY
expect 1 worker --resume "$T/flip"
has "$T/err" "is corrupt"
ok "a truncated or flipped checkpoint is refused, nothing loaded"

# ---------------------------------------------------------------- data from a storage plugin
mkdir -p "$T/blobs/series"
cp "$DATA/seattle-weather.csv" "$T/blobs/series/weather.csv"
cat >"$T/worker.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = (
  { instance = "store"; module = "storage-local"; config = { root = "$T/blobs"; }; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; }
);
EOF
sed -e "s|path = \".*\";|path = \"store:series/weather.csv\";|" -e 's/epochs = 30;/epochs = 2;/' \
	"$S/etc/jobs/seattle-weather-classify.conf" >"$T/stored.conf"
expect 0 worker -c "$T/worker.conf" --run "$T/stored.conf" --out "$T/stored"
[ -s "$T/stored/metrics.json" ] || fail "the run on stored data wrote no metrics"
sed -e 's|store:series/weather.csv|store:series/nope.csv|' "$T/stored.conf" >"$T/stored-missing.conf"
expect 1 worker -c "$T/worker.conf" --run "$T/stored-missing.conf" --out "$T/stored2"
has "$T/err" 'data.path: cannot open "store:series/nope.csv" through its storage plugin'
ok "data read through a storage plugin (\"store:series/weather.csv\")"

# A relative root resolves under the state directory, as in loomd
# (STATE_DIR/plugins/store/blobs), never the working directory: standalone
# with --state-dir, and in the workers loomd starts for its tasks.
mkdir -p "$T/cwd" "$T/sd/plugins/store/blobs/series"
cp "$DATA/seattle-weather.csv" "$T/sd/plugins/store/blobs/series/weather.csv"
sed -e "s|root = \"$T/blobs\";|root = \"blobs\";|" "$T/worker.conf" >"$T/relative.conf"
grep -q 'root = "blobs";' "$T/relative.conf" || fail "relative.conf has no relative root"
(cd "$T/cwd" && "$W" --threads 2 -c "$T/relative.conf" --state-dir "$T/sd" \
	--run "$T/stored.conf" --out "$T/stored-sd" >"$T/out" 2>"$T/err") ||
	{ cat "$T/err"; fail "the standalone run with --state-dir failed"; }
[ -s "$T/stored-sd/metrics.json" ] || fail "the run with --state-dir wrote no metrics"
[ ! -e "$T/cwd/blobs" ] || fail "the worker made blobs/ in its working directory"
expect 2 worker --state-dir "" --run "$T/stored.conf" --out "$T/o0"
has "$T/err" "--state-dir: give a directory"
cat >"$T/loomd-sd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$W"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; }
);
EOF
cd "$T/cwd"
start_loomd "$T/loomd-sd.conf" "$T/sd"
expect 0 loomctl --url "$URL" submit "$T/stored.conf" --start --cpu 1
expect 0 loomctl --url "$URL" watch task-1
stop_loomd
cd "$T"
[ ! -e "$T/cwd/blobs" ] || fail "a worker loomd started made blobs/ in loomd's working directory"
ok "a relative storage root resolves under the state directory: loom-worker --state-dir, and the workers loomd starts"

# ---------------------------------------------------------------- bad input
expect 1 worker --resume "$T/nothing-here"
has "$T/err" "cannot read $T/nothing-here/job.json"

sed -e 's|seattle-temps.csv|no-such-file.csv|' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/nofile.conf"
expect 1 worker --run "$T/nofile.conf" --out "$T/o1"
has "$T/err" "no-such-file.csv"

sed -e 's|\["temp"\]|["tmp"]|g' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/nocol.conf"
expect 1 worker --run "$T/nocol.conf" --out "$T/o2"
has "$T/err" 'no column "tmp" (did you mean "temp"?)'

sed -e 's|d_model = 64;|d_modle = 64;|' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/typo.conf"
expect 1 worker --run "$T/typo.conf" --out "$T/o3"
has "$T/err" "model.d_modle: unknown setting (did you mean d_model?)"

# the real series with one value spoiled on line 100
sed -e '100s/,[0-9.]*$/,n\/a/' "$DATA/seattle-temps.csv" >"$T/bad.csv"
sed -e "s|/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv|$T/bad.csv|" \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/badcsv.conf"
expect 1 worker --run "$T/badcsv.conf" --out "$T/o4"
has "$T/err" 'bad.csv:100: column "temp": the value is not a number; fix the value or set data.fill'

expect 2 worker --run "$T/typo.conf"
expect 2 "$W" --threads 0 --run "$T/typo.conf" --out "$T/o5"
ok "bad specs, data files and usage are refused with clear messages"
