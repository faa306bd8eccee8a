#!/bin/bash
# ONNX export end to end on real data (Debian's python3-vega-datasets): a
# model of each head and of each form is trained with loom-worker, exported
# through exporter-onnx (host/exports/export.h gathers the run as loomd
# does), checked with Debian's python3-onnx (onnx.checker, full_check), and
# run in ONNX Runtime (the npm package onnxruntime-node in tests/node) on 256
# real windows; its outputs must equal loom-worker --predict's within 1e-4
# relative (|onnx − loom| ≤ 1e-4 · max(|loom|, mean |loom|);
# tests/node/run-onnx.js).
# Forms (the weights' metadata "model"): the Transformer; linear (a ridge fit
# of model.kind = "linear", a naive forecast, what model.kind = "auto" keeps
# here); mixed (an ensemble with the Transformer), made here from trained
# Transformers with a linear part and mix = 0.5 added, since a 2-epoch
# Transformer is not among the two best of auto's candidates.
# Also: --predict's refusals, an export refused for a run without weights
# and for a form the exporter does not know.
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

# parity NAME CSV FORM: export the model in $T/NAME, check it, run it in
# ONNX Runtime and compare with --predict on CSV's last 256 windows; the
# ONNX file must say it holds the form FORM
parity() {
	local name=$1 csv=$2 form=$3 d=$T/$1
	expect 0 env LOOM_TEST_PLUGINS="$LOOM_TEST_PLUGINS" "$EXPORT" "$d" "$d.onnx"
	[ -s "$d.onnx" ] || fail "$name: no ONNX file written"
	expect 0 "$PY" -c '
import onnx, sys
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
assert m.ir_version == 8 and m.opset_import[0].version == 17, (m.ir_version, m.opset_import)
meta = {p.key: p.value for p in m.metadata_props}
print(m.producer_name, len(m.graph.node), "nodes", len(m.graph.initializer), "initializers,",
      "model", meta["loom.model"], "form", meta["loom.form"])
' "$d.onnx"
	has "$T/out" "form $form"
	windows "$d" "$csv" 256 "$d.in.json"
	expect 0 "$W" --predict "$d" --input "$d.in.json" --output "$d.loom.json"
	expect 0 node "$S/tests/node/run-onnx.js" "$d.onnx" "$d.in.json" "$d.loom.json" 1e-4
	ok "$name ($form form): $(cat "$T/out")"
}

# check NAME SPEC CSV [FORM]: train, then parity (FORM: transformer)
check() {
	expect 0 "$W" --threads 2 --run "$2" --out "$T/$1"
	parity "$1" "$3" "${4:-transformer}"
}

# remodel FROM TO MODEL_JSON [mix]: TO is a copy of the run FROM whose
# best.safetensors has the metadata "model" = MODEL_JSON; with "mix", also
# linear.weight [out, context·cin] and linear.bias [out] of small random
# values and mix = [0.5] added (an ensemble with the Transformer).
# safetensors: an 8-byte little-endian header length, the JSON header
# (dtype, shape, data_offsets; "__metadata__" of strings), the raw bytes.
remodel() {
	mkdir -p "$2"
	"$PY" - "$1/best.safetensors" "$2/best.safetensors" "$3" "${4:-}" <<'EOF'
import json, struct, sys
import numpy as np
src, dst, model, mix = sys.argv[1:5]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
body = bytearray(raw[8 + n:])
meta = head["__metadata__"]
meta["model"] = model
if mix:
    spec, data = json.loads(meta["spec"]), json.loads(meta["data"])
    cin = 1 if spec["model"]["channel_independent"] else len(data["inputs"])
    out = head["head.proj.weight"]["shape"][0]
    rng = np.random.default_rng(13)
    add = {"linear.weight": rng.uniform(-0.05, 0.05, (out, spec["model"]["context"] * cin)),
           "linear.bias": rng.uniform(-0.05, 0.05, (out,)),
           "mix": np.array([0.5])}
    for name, v in add.items():
        b = v.astype("<f4").tobytes()
        head[name] = {"dtype": "F32", "shape": list(v.shape),
                      "data_offsets": [len(body), len(body) + len(b)]}
        body += b
text = json.dumps(head).encode()
text += b" " * (-len(text) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + bytes(body))
EOF
}

sed 's/epochs = 40;/epochs = 2;/; s/head = "forecast";/head = "forecast"; kind = "transformer";/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/forecast.conf"
check forecast "$T/forecast.conf" "$DATA/seattle-temps.csv"

sed 's/epochs = 30;/epochs = 2;/' "$S/etc/jobs/seattle-weather-classify.conf" >"$T/classify.conf"
check classification "$T/classify.conf" "$DATA/seattle-weather.csv"

# several targets, RevIN without channel independence, sinusoidal positions
cat >"$T/forecast2.conf" <<EOF
name = "onnx-forecast-multi";
data = { path = "$DATA/seattle-weather.csv"; time_column = "date";
         features = ["temp_max", "temp_min", "wind"]; target = ["temp_min", "temp_max"]; };
model = { head = "forecast"; kind = "transformer"; context = 28; horizon = 7; patch = 7;
          d_model = 32; heads = 4; layers = 2; ffn = 64; revin = true;
          channel_independent = false; positions = "sinusoidal"; };
train = { epochs = 2; batch = 32; warmup_steps = 5; seed = 5; };
EOF
check forecast-multi "$T/forecast2.conf" "$DATA/seattle-weather.csv"

# model.residual = "last": the window's last value added to the head's
# output, one channel (channel-independent) and two targets among three
sed 's/kind = "transformer";/kind = "transformer"; residual = "last";/' "$T/forecast.conf" \
	>"$T/residual.conf"
check residual "$T/residual.conf" "$DATA/seattle-temps.csv"
sed 's/kind = "transformer";/kind = "transformer"; residual = "last";/' "$T/forecast2.conf" \
	>"$T/residual2.conf"
check residual-multi "$T/residual2.conf" "$DATA/seattle-weather.csv"

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

# ---------------------------------------------------------------- linear and mixed forms
# a ridge fit over 3 channels for 2 targets: RevIN, no channel split, so
# the flattened window interleaves the channels (element t·3 + c)
sed 's/kind = "transformer";/kind = "linear";/' "$T/forecast2.conf" >"$T/linear.conf"
check linear "$T/linear.conf" "$DATA/seattle-weather.csv" linear

# a linear regression (no RevIN): the map straight onto the target
sed 's/head = "regression";/head = "regression"; kind = "linear";/' "$T/regression.conf" \
	>"$T/linear-regression.conf"
check linear-regression "$T/linear-regression.conf" "$DATA/seattle-weather.csv" linear

# the naive forecast that validates best, per channel after RevIN
sed 's/kind = "transformer";/kind = "naive";/' "$T/forecast.conf" >"$T/naive.conf"
check naive "$T/naive.conf" "$DATA/seattle-temps.csv" linear

# what auto keeps when told to average (the form is whatever it chose:
# linear here, the 2-epoch Transformer being the worst of three)
sed 's/kind = "transformer";/kind = "auto"; auto = { ensemble = "always"; };/' \
	"$T/forecast.conf" >"$T/auto.conf"
expect 0 "$W" --threads 2 --run "$T/auto.conf" --out "$T/auto"
form=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["model"]["form"])' \
	"$T/auto/metrics.json")
parity auto "$DATA/seattle-temps.csv" "$form"

# ensembles with the Transformer, made from the Transformers trained above:
# channel-independent (seattle-temps), and over interleaved channels
MIXED='{"kind":"ensemble","form":"mixed","detail":{"members":["transformer","linear"]}}'
remodel "$T/forecast" "$T/mixed" "$MIXED" mix
parity mixed "$DATA/seattle-temps.csv" mixed
# the linear part counts: the ensemble's forecasts are not the Transformer's
expect 0 "$PY" -c '
import json, sys
a, b = (json.load(open(p))["output"] for p in sys.argv[1:3])
flat = lambda v: [x for y in v for x in flat(y)] if isinstance(v, list) else [v]
d = max(abs(x - y) for x, y in zip(flat(a), flat(b)))
print(f"{d:.3g}")
sys.exit(d < 0.1)
' "$T/mixed.loom.json" "$T/forecast.loom.json"
ok "the ensemble's forecasts differ from the Transformer's alone by up to $(cat "$T/out")"
remodel "$T/forecast-multi" "$T/mixed-multi" "$MIXED" mix
parity mixed-multi "$DATA/seattle-weather.csv" mixed

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
remodel "$T/linear" "$T/cubic" '{"kind":"cubic","form":"cubic"}'
expect 1 env LOOM_TEST_PLUGINS="$LOOM_TEST_PLUGINS" "$EXPORT" "$T/cubic" "$T/cubic.onnx"
has "$T/err" 'best.safetensors: the weights are a model of form "cubic", which this exporter does not know'
[ ! -e "$T/cubic.onnx" ] || fail "a refused export left a file"
ok "the export refuses a form it does not know"
