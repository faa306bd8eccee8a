#!/bin/bash
# ONNX export end to end on real data (Debian's python3-vega-datasets): a
# model of each head is trained with loom-worker, exported through
# exporter-onnx (host/exports/export.h gathers the run as loomd does), checked with
# Debian's python3-onnx (onnx.checker, full_check), and run in ONNX Runtime
# (the npm package onnxruntime-node in tests/node) on 256 real windows; its
# outputs must equal loom-worker --predict's within 1e-4 relative
# (|onnx − loom| ≤ 1e-4 · max(|loom|, mean |loom|); tests/node/run-onnx.js).
# Also: --predict's refusals, and an export refused for a run without
# weights.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
PY=/usr/bin/python3
[ -r "$DATA/seattle-temps.csv" ] && [ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA/seattle-*.csv are missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
"$PY" -c "import onnx, numpy" 2>/dev/null || {
	echo "SKIP: $PY cannot import onnx; install python3-onnx (./bootstrap does)"
	exit 77
}
command -v node >/dev/null || {
	echo "SKIP: no node command; install nodejs (./bootstrap does)"
	exit 77
}
[ -d "$S/tests/node/node_modules/onnxruntime-node" ] || {
	echo "SKIP: tests/node/node_modules/onnxruntime-node is missing; run" \
		"(cd tests/node && npm ci --ignore-scripts) (./bootstrap does)"
	exit 77
}
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
EXPORT=$B/tests/unit/plugins/exporter-onnx/onnx-export

# windows DIR CSV N OUT: the last N windows (stride 1) of CSV's columns that
# DIR's model reads, as --predict's input JSON
windows() {
	"$W" --predict "$1" >"$T/info.json" 2>"$T/err" || fail "--predict $1 without --input failed"
	"$PY" - "$T/info.json" "$2" "$3" "$4" <<'EOF'
import csv, json, sys
info, path, n, out = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), sys.argv[4]
channels, L = info["input"]["channels"], info["input"]["shape"][1]
rows = [[float(r[c]) for c in channels] for r in csv.DictReader(open(path))]
start = len(rows) - L - n + 1
json.dump({"input": [rows[s:s + L] for s in range(start, start + n)]}, open(out, "w"))
EOF
}

# check NAME SPEC CSV: train, export, check, run in ONNX Runtime, compare
check() {
	local name=$1 spec=$2 csv=$3 d=$T/$1
	expect 0 "$W" --threads 2 --run "$spec" --out "$d"
	expect 0 env LOOM_TEST_PLUGINS="$LOOM_TEST_PLUGINS" "$EXPORT" "$d" "$d.onnx"
	[ -s "$d.onnx" ] || fail "$name: no ONNX file written"
	expect 0 "$PY" -c '
import onnx, sys
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
assert m.ir_version == 8 and m.opset_import[0].version == 17, (m.ir_version, m.opset_import)
print(m.producer_name, len(m.graph.node), "nodes", len(m.graph.initializer), "initializers")
' "$d.onnx"
	windows "$d" "$csv" 256 "$d.in.json"
	expect 0 "$W" --predict "$d" --input "$d.in.json" --output "$d.loom.json"
	expect 0 node "$S/tests/node/run-onnx.js" "$d.onnx" "$d.in.json" "$d.loom.json" 1e-4
	ok "$name: $(cat "$T/out")"
}

sed 's/epochs = 40;/epochs = 2;/' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/forecast.conf"
check forecast "$T/forecast.conf" "$DATA/seattle-temps.csv"

sed 's/epochs = 30;/epochs = 2;/' "$S/etc/jobs/seattle-weather-classify.conf" >"$T/classify.conf"
check classification "$T/classify.conf" "$DATA/seattle-weather.csv"

# several targets, RevIN without channel independence, sinusoidal positions
cat >"$T/forecast2.conf" <<EOF
name = "onnx-forecast-multi";
data = { path = "$DATA/seattle-weather.csv"; time_column = "date";
         features = ["temp_max", "temp_min", "wind"]; target = ["temp_min", "temp_max"]; };
model = { head = "forecast"; context = 28; horizon = 7; patch = 7; d_model = 32; heads = 4;
          layers = 2; ffn = 64; revin = true; channel_independent = false;
          positions = "sinusoidal"; };
train = { epochs = 2; batch = 32; warmup_steps = 5; seed = 5; };
EOF
check forecast-multi "$T/forecast2.conf" "$DATA/seattle-weather.csv"

cat >"$T/regression.conf" <<EOF
name = "onnx-regression";
data = { path = "$DATA/seattle-weather.csv"; time_column = "date";
         features = ["precipitation", "temp_min", "wind"]; target = ["temp_max"]; };
model = { head = "regression"; context = 14; patch = 7; d_model = 32; heads = 4; layers = 2;
          ffn = 64; };
train = { epochs = 2; batch = 32; warmup_steps = 5; seed = 5; };
EOF
check regression "$T/regression.conf" "$DATA/seattle-weather.csv"

cat >"$T/anomaly.conf" <<EOF
name = "onnx-anomaly";
data = { path = "$DATA/seattle-temps.csv"; time_column = "date"; features = ["temp"]; };
model = { head = "anomaly"; context = 48; patch = 12; stride = 6; d_model = 32; heads = 4;
          layers = 2; ffn = 64; revin = true; };
train = { epochs = 2; batch = 32; warmup_steps = 5; seed = 5; };
EOF
check anomaly "$T/anomaly.conf" "$DATA/seattle-temps.csv"

# ---------------------------------------------------------------- refusals
expect 1 "$W" --predict "$T"
has "$T/err" "has no best.safetensors or last.safetensors"
echo '{"input": [[[1, 2]]]}' >"$T/bad.json"
expect 1 "$W" --predict "$T/regression" --input "$T/bad.json"
has "$T/err" "dimension 1 must have 14 entries"
mkdir "$T/empty"
expect 1 env LOOM_TEST_PLUGINS="$LOOM_TEST_PLUGINS" "$EXPORT" "$T/empty" "$T/empty.onnx"
[ ! -e "$T/empty.onnx" ] || fail "a refused export left a file"
ok "--predict and the export refuse a directory without a model"
