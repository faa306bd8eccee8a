#!/bin/bash
# Linear, naive and auto models (model.kind) through loom-worker on real
# series from Debian packages:
# - stocks.csv (monthly prices, random-walk-like): auto keeps a naive or
#   linear model, not the Transformer;
# - seattle-temps: auto's test MAE beats both naive baselines, and
#   metrics.json lists every candidate with its validation and test
#   metrics, exactly one kept; a naive run's test MAE is the seasonal-naive
#   baseline's; a ridge run writes only the linear map, and loom-worker
#   --predict gives what an independent computation of that map gives;
# - a linear model trained with AdamW pauses and resumes to the same bytes;
# - a regression's auto includes the training mean as its naive candidate;
# - co2 (weekly, with missing values, python3-statsmodels) with
#   data.fill = "linear": every kind sees the same filled windows.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] && [ -r "$DATA/stocks.csv" ] || {
	echo "SKIP: $DATA is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
worker() { "$W" --threads 2 "$@"; }
py() { /usr/bin/python3 "$@"; }
# metric DIR EXPR: a value from DIR/metrics.json (m)
metric() { py -c "import json,sys; m=json.load(open(sys.argv[1])); print($2)" "$1/metrics.json"; }

# ---------------------------------------------------------------- stocks: a naive or linear model
py - "$DATA/stocks.csv" "$T" <<'EOF'
import csv, datetime, sys
by = {}
for r in csv.DictReader(open(sys.argv[1])):
    d = datetime.datetime.strptime(r["date"], "%b %d %Y").date()
    by.setdefault(r["symbol"], []).append((d, r["price"]))
for s in ("MSFT", "IBM"):
    with open(f"{sys.argv[2]}/{s}.csv", "w") as f:
        f.write("date,price\n")
        for d, p in sorted(by[s]):
            f.write(f"{d.isoformat()},{p}\n")
EOF
for s in MSFT IBM; do
	cat >"$T/$s.conf" <<EOF
data = { path = "$T/$s.csv"; time_column = "date"; features = ["price"]; target = ["price"]; };
model = { context = 12; horizon = 3; patch = 3; };
train = { seed = 42; };
EOF
	expect 0 worker --run "$T/$s.conf" --out "$T/$s"
	has "$T/err" "auto: validation loss"
	form=$(metric "$T/$s" 'm["model"]["form"]')
	kind=$(metric "$T/$s" 'm["model"]["kind"]')
	[ "$form" = linear ] || fail "$s: auto kept a $kind model of form $form; a random walk's should be naive or linear"
	ok "$s monthly prices: auto kept the $kind model (form linear, not the Transformer)"
done

# ---------------------------------------------------------------- seattle-temps: auto and its candidates
sed -e 's/epochs = 40;/epochs = 6;/' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/temps.conf"
expect 0 worker --run "$T/temps.conf" --out "$T/auto"
mae=$(metric "$T/auto" 'm["test"]["mae"]')
last=$(metric "$T/auto" 'm["baselines"]["repeat_last"]["mae"]')
seasonal=$(metric "$T/auto" 'm["baselines"]["seasonal_naive"]["mae"]')
py -c "import sys; a,b,c=map(float,sys.argv[1:]); sys.exit(0 if a < b and a < c else 1)" \
	"$mae" "$last" "$seasonal" ||
	fail "auto's test MAE $mae does not beat repeat-last $last and seasonal-naive $seasonal"
py - "$T/auto/metrics.json" <<'EOF' || fail "metrics.json's candidates are not as described"
import json, sys
m = json.load(open(sys.argv[1]))
c = m["candidates"]
names = [x["name"] for x in c]
assert names[:3] == ["transformer", "linear", "naive"], names
assert sum(1 for x in c if x["chosen"]) == 1, "not exactly one chosen"
for x in c:
    for split in ("validation", "test"):
        for k in ("loss", "mae", "mse", "rmse", "smape"):
            assert isinstance(x[split][k], float), (x["name"], split, k)
chosen = [x for x in c if x["chosen"]][0]
# the kept model's test metrics are the run's
assert abs(chosen["test"]["mae"] - m["test"]["mae"]) <= 1e-9 * m["test"]["mae"], chosen
assert m["model"]["kind"] == chosen["name"]
assert m["model"]["detail"]["chosen_by"]
assert 0 <= m["model"]["fit_seconds"] < 60
# the naive candidate is the better baseline, in the same windows
naive = [x for x in c if x["name"] == "naive"][0]
b = min(m["baselines"]["repeat_last"]["mae"], m["baselines"]["seasonal_naive"]["mae"])
assert abs(naive["test"]["mae"] - b) <= 1e-6 * b, (naive["test"]["mae"], b)
EOF
ok "seattle-temps auto: test MAE $mae < repeat-last $last, seasonal-naive $seasonal; every candidate listed, one kept"

# ---------------------------------------------------------------- naive and ridge runs alone
sed -e 's/loss = "mae";/loss = "mae"; kind = "naive";/' "$T/temps.conf" >"$T/naive.conf"
expect 0 worker --run "$T/naive.conf" --out "$T/naive"
has "$T/err" "naive model fitted"
py - "$T/naive/metrics.json" <<'EOF' || fail "the naive run's test MAE is not the seasonal-naive baseline's"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["model"]["kind"] == "naive" and m["model"]["detail"]["method"] == "seasonal_naive", m["model"]
b = m["baselines"]["seasonal_naive"]["mae"]
assert abs(m["test"]["mae"] - b) <= 1e-6 * b, (m["test"]["mae"], b)
assert m["run"]["steps"] == 0
EOF
ok "kind = naive: seasonal-naive kept on validation, its test MAE is the baseline's, no training step"

sed -e 's/loss = "mae";/loss = "mae"; kind = "linear";/' "$T/temps.conf" >"$T/linear.conf"
expect 0 worker --run "$T/linear.conf" --out "$T/linear"
has "$T/err" "linear model fitted"
py "$S/tests/reference/safetensors_read.py" "$T/linear/best.safetensors" --values >"$T/linear.json" ||
	fail "best.safetensors of the linear run is not a valid safetensors file"
py - "$DATA/seattle-temps.csv" "$T/linear.json" "$T/window.json" "$T/expected.json" <<'EOF' ||
import csv, json, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
doc = json.load(open(sys.argv[2]))
t = {x["name"]: x for x in doc["tensors"]}
assert sorted(t) == ["linear.bias", "linear.weight"], sorted(t)
meta = doc["metadata"]
assert json.loads(meta["model"])["form"] == "linear"
data = json.loads(meta["data"])
w = [float.fromhex(v) for v in t["linear.weight"]["values"]]
b = [float.fromhex(v) for v in t["linear.bias"]["values"]]
H, L = t["linear.weight"]["shape"]
# the last window of the file, in original units
v = [float(r["temp"]) for r in rows][-L:]
json.dump([[[x] for x in v]], open(sys.argv[3], "w"))
# data normalization, RevIN (biased variance, eps 1e-5), the map, and back
sh, sc = data["input_shift"][0], data["input_scale"][0]
x = [(a - sh) / sc for a in v]
mu = sum(x) / L
sd = math.sqrt(sum((a - mu) ** 2 for a in x) / L + 1e-5)
xr = [(a - mu) / sd for a in x]
out = [sum(w[h * L + i] * xr[i] for i in range(L)) + b[h] for h in range(H)]
ts, tc = data["target_shift"][0], data["target_scale"][0]
json.dump([(o * sd + mu) * tc + ts for o in out], open(sys.argv[4], "w"))
EOF
	fail "the linear run's weights are not the map described"
expect 0 worker --predict "$T/linear" --input "$T/window.json" --output "$T/pred.json"
py - "$T/pred.json" "$T/expected.json" <<'EOF' || fail "loom-worker --predict of the linear model differs from the map"
import json, sys
p = json.load(open(sys.argv[1]))
e = json.load(open(sys.argv[2]))
got = [x[0] for x in p["output"][0]]
assert len(got) == len(e), (len(got), len(e))
worst = max(abs(a - b) for a, b in zip(got, e))
assert worst <= 1e-3, worst
EOF
ok "kind = linear: a ridge map alone in best.safetensors; --predict matches an independent computation"

# ---------------------------------------------------------------- a trained linear model resumes to the same bytes
sed -e 's/loss = "mae";/loss = "mae"; kind = "linear"; linear = { fit = "train"; };/' \
	-e 's/epochs = 6;/epochs = 2;/' -e 's/checkpoint_every = 200;/checkpoint_every = 40;/' \
	"$T/temps.conf" >"$T/trained.conf"
expect 0 worker --run "$T/trained.conf" --out "$T/straight"
expect 0 worker --run "$T/trained.conf" --out "$T/paused" --max-steps 57
expect 0 worker --resume "$T/paused"
cmp "$T/straight/best.safetensors" "$T/paused/best.safetensors" ||
	fail "a linear model trained with AdamW, paused and resumed, differs from the straight run"
steps=$(metric "$T/straight" 'm["run"]["steps"]')
[ "$steps" -gt 57 ] || fail "the trained linear model took $steps steps"
ok "kind = linear with fit = train: $steps AdamW steps; paused at 57 and resumed, the same bytes"

# ---------------------------------------------------------------- a regression's candidates
cat >"$T/reg.conf" <<EOF
data = { path = "$DATA/seattle-weather.csv"; time_column = "date";
         features = ["precipitation", "temp_min", "wind"]; target = ["temp_max"]; };
model = { head = "regression"; kind = "auto"; context = 7; patch = 7; };
train = { epochs = 3; seed = 1; };
EOF
expect 0 worker --run "$T/reg.conf" --out "$T/reg"
py - "$T/reg/metrics.json" <<'EOF' || fail "the regression's auto did not fit the mean as its naive model"
import json, sys
m = json.load(open(sys.argv[1]))
c = {x["name"]: x for x in m["candidates"]}
assert c["naive"]["detail"]["method"] == "mean", c["naive"]
# the mean is beaten by the linear model of the same day's minimum temperature
assert c["linear"]["test"]["mae"] < c["naive"]["test"]["mae"], c
EOF
ok "regression auto: the training mean is the naive candidate, and the linear model beats it"

# ---------------------------------------------------------------- missing values (co2)
CO2=/usr/lib/python3/dist-packages/statsmodels/datasets/co2/co2.csv
if [ -r "$CO2" ]; then
	cat >"$T/co2.conf" <<EOF
data = { path = "$CO2"; time_column = "date"; fill = "linear"; };
model = { context = 104; horizon = 13; patch = 13; };
train = { epochs = 2; seed = 3; };
EOF
	expect 0 worker --run "$T/co2.conf" --out "$T/co2"
	py - "$T/co2/metrics.json" <<'EOF' || fail "co2 with missing values: a candidate has no metrics"
import json, math, sys
m = json.load(open(sys.argv[1]))
for x in m["candidates"]:
    assert math.isfinite(x["test"]["mae"]), x
assert m["test"]["mae"] < m["baselines"]["repeat_last"]["mae"]
EOF
	ok "co2 (weekly, 59 missing values filled linearly): every candidate scored, auto beats repeat-last"
else
	echo "# co2 skipped: $CO2 is missing; install python3-statsmodels (./bootstrap does)"
fi
