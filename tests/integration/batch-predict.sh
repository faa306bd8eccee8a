#!/bin/bash
# Batch prediction as a compute job (docs/inference.md, "Batch prediction"):
# loom-worker --run on a spec with a predict group, over models trained here
# on Debian's seattle-weather (python3-vega-datasets), scoring 2015:
# - the outputs equal loom-worker --predict on the same windows to the bit
#   (a classifier; a forecaster with its Monte-Carlo-dropout spread);
# - predictions.csv and predictions.json agree; confidence is the top
#   probability, margin top1 − top2, predicted the top class; the accuracy
#   logged is the share of windows whose label is the predicted class;
# - paused after one step and after three and resumed: the same bytes as a
#   run that never stopped, and a predict.batch that is no multiple of the
#   model's train.batch changes nothing;
# - stride 3 gives (rows − context) / 3 + 1 windows starting every 3 rows;
# - a file without its label column predicts the same, without actuals;
# - a file missing a feature column, or a value, is refused naming the
#   line and column; a spec mixing predict with train, an unknown key in
#   predict and passes without uncertainty are refused naming the key.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA/seattle-weather.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
worker() { "$W" --threads 2 "$@"; }
py() { /usr/bin/python3 "$@"; }

# ---------------------------------------------------------------- a classifier, and 2015
sed -e 's/epochs = 30;/epochs = 3;/' "$S/etc/jobs/seattle-weather-classify.conf" >"$T/cls.conf"
grep -q 'epochs = 3;' "$T/cls.conf" || fail "could not shorten the classifier's epochs"
expect 0 worker --run "$T/cls.conf" --out "$T/cls"
{ head -n 1 "$DATA/seattle-weather.csv"; grep '^2015' "$DATA/seattle-weather.csv"; } >"$T/w2015.csv"
ok "a classifier trained on seattle-weather (3 epochs)"

spec() { # FILE DATA [MORE]: a batch prediction with the classifier
	cat >"$1" <<EOF
name = "weather-2015"; compute = "transformer";
predict = { model_dir = "$T/cls"; data = { path = "$2"; }; model = "weather"; version = 3;
            ${3:-batch = 64;} };
EOF
}
spec "$T/b.conf" "$T/w2015.csv"
expect 0 worker --run "$T/b.conf" --out "$T/p"
for f in predictions.csv predictions.json inputs.f32 job.json; do
	[ -s "$T/p/$f" ] || fail "the batch prediction wrote no $f"
done
[ ! -e "$T/p/predict.cursor" ] && [ ! -e "$T/p/predict.part" ] ||
	fail "a finished batch prediction left its cursor behind"
has "$T/err" "predicting 352 windows of 14 rows"
acc_logged=$(sed -n 's/.*accuracy \([0-9.]*\) over the windows.*/\1/p' "$T/err")
[ -n "$acc_logged" ] || fail "no accuracy in the log"

# the same windows, cut from inputs.f32, through loom-worker --predict
py - "$T/p" "$T/windows.json" <<'EOF'
import json, struct, sys
p = json.load(open(sys.argv[1] + "/predictions.json"))
R, C, L = p["series"]["rows"], p["series"]["channels"], p["context"]
raw = open(sys.argv[1] + "/inputs.f32", "rb").read()
assert len(raw) == 4 * R * C, (len(raw), R, C)
x = struct.unpack("<%df" % (R * C), raw)
json.dump({"input": [[list(x[(s + l) * C:(s + l + 1) * C]) for l in range(L)] for s in p["start"]]},
          open(sys.argv[2], "w"))
EOF
expect 0 "$W" --predict "$T/cls" --input "$T/windows.json" --output "$T/predict.json"
py - "$T/p" "$T/predict.json" "$acc_logged" <<'EOF' || fail "the batch prediction's files are wrong (above)"
import csv, json, struct, sys
f32 = lambda v: struct.pack("<f", v)                 # the f32 a number stands for
p = json.load(open(sys.argv[1] + "/predictions.json"))
ref = json.load(open(sys.argv[2]))["output"]
N, L, R = p["windows"], p["context"], p["rows"]
classes = p["classes"]
assert p["task"] == "classification" and p["model"] == {"dir": p["model"]["dir"], "name": "weather", "version": 3}
assert classes == ["drizzle", "fog", "rain", "snow", "sun"], classes
assert p["channels"] == ["precipitation", "temp_max", "temp_min", "wind"], p["channels"]
assert R == 365 and L == 14 and N == R - L + 1 and p["stride"] == 1, (R, L, N)
assert p["series"] == {"file": "inputs.f32", "rows": R, "channels": 4, "dtype": "f32le"}
# to the bit, as loom-worker --predict
assert len(ref) == N and all(f32(a) == f32(b) for o, r in zip(p["output"], ref) for a, b in zip(o, r)), \
    "outputs differ from loom-worker --predict"
assert p["uncertainty"] is None and p["uncertainty_method"] is None
# the classification fields
for i, o in enumerate(p["output"]):
    top = max(range(len(o)), key=lambda c: (o[c], -c))
    second = sorted(o)[-2]
    assert p["predicted"][i] == classes[top], i
    assert f32(p["confidence"][i]) == f32(o[top]), i
    assert f32(p["margin"][i]) == f32(struct.unpack("<f", f32(o[top]))[0] - struct.unpack("<f", f32(second))[0]), i
# the file's lines, times and labels (2015 is in time order: line = row + 2)
rows = list(csv.reader(open("/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv")))
y2015 = [r for r in rows[1:] if r[0].startswith("2015")]
assert p["start"] == list(range(N))
assert p["first_line"] == [s + 2 for s in p["start"]] and p["last_line"] == [s + L + 1 for s in p["start"]]
assert p["time"] == [r[0] for r in y2015]
assert p["actual"] == [y2015[s + L - 1][5] for s in p["start"]]
acc = sum(a == b for a, b in zip(p["predicted"], p["actual"])) / N
assert abs(acc - float(sys.argv[3])) < 1e-5 and abs(acc - p["metrics"]["accuracy"]) < 1e-12, (acc, sys.argv[3])
# the CSV says the same
c = list(csv.reader(open(sys.argv[1] + "/predictions.csv", newline="")))
assert c[0] == ["window", "first_line", "last_line", "time", "predicted", "confidence", "margin"] + \
    ["p_" + k for k in classes] + ["actual"], c[0]
assert len(c) == N + 1
for i, row in enumerate(c[1:]):
    assert row[:4] == [str(i), str(p["first_line"][i]), str(p["last_line"][i]), p["time"][p["start"][i] + L - 1]], row
    assert row[4] == p["predicted"][i] and row[-1] == p["actual"][i], row
    nums = [float(v) for v in row[5:-1]]
    want = [p["confidence"][i], p["margin"][i]] + p["output"][i]
    assert all(f32(a) == f32(b) for a, b in zip(nums, want)), (i, row)
print("accuracy", acc)
EOF
ok "2015 scored: outputs equal loom-worker --predict to the bit; CSV and JSON agree; confidence, margin, predicted and accuracy ($acc_logged) check out"

# ---------------------------------------------------------------- pause and resume
spec "$T/b50.conf" "$T/w2015.csv" "batch = 50;"
expect 0 worker --run "$T/b50.conf" --out "$T/paused" --max-steps 1
has "$T/err" "rounded up to 64"
has "$T/err" "paused; continue with: loom-worker --resume $T/paused"
[ ! -e "$T/paused/predictions.json" ] || fail "a paused batch prediction wrote predictions.json"
[ "$(py -c "import json,sys; print(json.load(open(sys.argv[1]))['windows_done'])" "$T/paused/predict.cursor")" = 64 ] ||
	fail "the cursor after one step: $(cat "$T/paused/predict.cursor")"
expect 0 worker --resume "$T/paused" --max-steps 3
has "$T/err" "resuming from $T/paused/predict.cursor: 64 of 352 windows done"
expect 0 worker --resume "$T/paused"
has "$T/err" "resuming from $T/paused/predict.cursor: 192 of 352 windows done"
for f in predictions.csv predictions.json inputs.f32; do
	cmp "$T/p/$f" "$T/paused/$f" || fail "paused twice and resumed, $f differs from the straight run"
done
[ ! -e "$T/paused/predict.cursor" ] || fail "the resumed run left its cursor behind"
ok "paused after steps 1 and 3 and resumed (batch 50 → 64): byte-identical CSV, JSON and series"

# the data changed while paused: the cursor is not used, the answer is the new data's
cp "$T/w2015.csv" "$T/changed.csv"
spec "$T/c.conf" "$T/changed.csv"
expect 0 worker --run "$T/c.conf" --out "$T/changed" --max-steps 2
sed -i '5s/,10.2,/,10.3,/' "$T/changed.csv"
cmp -s "$T/w2015.csv" "$T/changed.csv" && fail "could not change line 5 of the data"
expect 0 worker --resume "$T/changed"
has "$T/err" "was written for another spec, model or data; predicting from the first window"
expect 0 worker --run "$T/c.conf" --out "$T/changed-straight"
cmp "$T/changed/predictions.json" "$T/changed-straight/predictions.json" ||
	fail "resumed over changed data, predictions.json differs from a fresh run on it"
cmp -s "$T/changed/inputs.f32" "$T/p/inputs.f32" && fail "the changed value is not in inputs.f32"
ok "data changed during a pause: the cursor is ignored and the answer is the new data's"

# ---------------------------------------------------------------- stride
spec "$T/s3.conf" "$T/w2015.csv" "stride = 3;"
expect 0 worker --run "$T/s3.conf" --out "$T/s3"
py - "$T/s3" <<'EOF' || fail "stride 3 cut the wrong windows"
import csv, json, sys
p = json.load(open(sys.argv[1] + "/predictions.json"))
n = (365 - 14) // 3 + 1
assert p["stride"] == 3 and p["windows"] == n == 118, p["windows"]
assert p["start"] == [3 * i for i in range(n)] and p["last_line"][-1] == 3 * (n - 1) + 14 + 1
assert len(p["output"]) == n and len(list(csv.reader(open(sys.argv[1] + "/predictions.csv")))) == n + 1
EOF
ok "stride 3: 118 windows, starting every 3 rows"

# ---------------------------------------------------------------- new data without labels
py -c "
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
csv.writer(open(sys.argv[2], 'w', newline='')).writerows([r[:5] for r in rows])
csv.writer(open(sys.argv[3], 'w', newline='')).writerows([r[:4] + r[5:] for r in rows])
rows[6][2] = ''
csv.writer(open(sys.argv[4], 'w', newline='')).writerows(rows)
" "$T/w2015.csv" "$T/unlabelled.csv" "$T/no-wind.csv" "$T/gap.csv"
spec "$T/u.conf" "$T/unlabelled.csv"
expect 0 worker --run "$T/u.conf" --out "$T/u"
py - "$T/u" "$T/p" <<'EOF' || fail "the unlabelled file's predictions are wrong"
import csv, json, sys
u, p = (json.load(open(d + "/predictions.json")) for d in sys.argv[1:])
assert u["actual"] is None and u["output"] == p["output"] and u["metrics"] == {"windows": 352}, u["metrics"]
assert list(csv.reader(open(sys.argv[1] + "/predictions.csv")))[0][-1] == "p_sun"
EOF
ok "a file without the label column: the same predictions, actual null"

spec "$T/nw.conf" "$T/no-wind.csv"
expect 1 worker --run "$T/nw.conf" --out "$T/nw"
has "$T/err" "$T/no-wind.csv:1: no column \"wind\""
has "$T/err" "columns: date, precipitation, temp_max, temp_min, weather"
spec "$T/gap.conf" "$T/gap.csv"
expect 1 worker --run "$T/gap.conf" --out "$T/gap"
has "$T/err" "$T/gap.csv:7: column \"temp_max\": missing value"
has "$T/err" "trained with data.fill \"none\""
ok "a missing feature column and a missing value are refused naming the line and column"

# ---------------------------------------------------------------- bad specs
cat >"$T/mixed.conf" <<EOF
predict = { model_dir = "$T/cls"; data = { path = "$T/w2015.csv"; }; };
train = { epochs = 1; };
EOF
expect 1 worker --run "$T/mixed.conf" --out "$T/mixed"
has "$T/err" "train: a spec with a predict group is a batch prediction"
[ ! -e "$T/mixed" ] || fail "a refused spec created its output directory"
cat >"$T/typo.conf" <<EOF
predict = { model_dir = "$T/cls"; data = { path = "$T/w2015.csv"; }; strid = 3; passes = 8; };
EOF
expect 1 worker --run "$T/typo.conf" --out "$T/typo"
has "$T/err" "predict.strid: unknown setting (did you mean stride?)"
has "$T/err" "predict.passes: Monte-Carlo-dropout passes are only run with predict.uncertainty"
cat >"$T/nodir.conf" <<EOF
predict = { data = { path = "$T/w2015.csv"; }; };
EOF
expect 1 worker --run "$T/nodir.conf" --out "$T/nodir"
has "$T/err" "predict.model_dir"
ok "predict mixed with train, an unknown key, passes without uncertainty and no model_dir are refused"

# ---------------------------------------------------------------- a forecaster, with its spread
cat >"$T/fc.conf" <<EOF
name = "temps"; compute = "transformer";
data = { path = "$DATA/seattle-weather.csv"; time_column = "date"; features = ["temp_max", "temp_min"];
         target = ["temp_max"]; };
model = { kind = "transformer"; head = "forecast"; context = 14; horizon = 3; patch = 7;
          d_model = 16; heads = 2; layers = 1; ffn = 32; dropout = 0.1; };
train = { epochs = 2; batch = 32; warmup_steps = 2; seed = 5; };
EOF
expect 0 worker --run "$T/fc.conf" --out "$T/fc"
cat >"$T/bf.conf" <<EOF
predict = { model_dir = "$T/fc"; data = { path = "$T/w2015.csv"; }; uncertainty = true; batch = 32; };
EOF
expect 0 worker --run "$T/bf.conf" --out "$T/pf"
py - "$T/pf" "$T/windows.json" <<'EOF'
import json, struct, sys
p = json.load(open(sys.argv[1] + "/predictions.json"))
R, C, L = p["series"]["rows"], p["series"]["channels"], p["context"]
x = struct.unpack("<%df" % (R * C), open(sys.argv[1] + "/inputs.f32", "rb").read())
json.dump({"input": [[list(x[(s + l) * C:(s + l + 1) * C]) for l in range(L)] for s in p["start"]]},
          open(sys.argv[2], "w"))
EOF
expect 0 "$W" --predict "$T/fc" --input "$T/windows.json" --output "$T/predict.json" --uncertainty
py - "$T/pf" "$T/predict.json" <<'EOF' || fail "the forecast's batch prediction is wrong (above)"
import csv, json, struct, sys
f32 = lambda v: struct.pack("<f", v)
p = json.load(open(sys.argv[1] + "/predictions.json"))
ref = json.load(open(sys.argv[2]))
N, L, H = p["windows"], p["context"], p["horizon"]
assert p["task"] == "forecast" and H == 3 and p["targets"] == ["temp_max"] and N == 365 - 14 + 1
assert p["uncertainty_method"] == "mc_dropout", p["uncertainty_method"]
flat = lambda w: [v for step in w for v in step]                 # [h][target] → [h·targets]
assert all(f32(a) == f32(b) for o, r in zip(p["output"], ref["output"]) for a, b in zip(o, flat(r)))
assert all(f32(a) == f32(b) for o, r in zip(p["uncertainty"], ref["uncertainty"]) for a, b in zip(o, flat(r)))
assert all(v > 0 for o in p["uncertainty"] for v in o)
rows = [r for r in csv.reader(open("/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv"))
        if r[0].startswith("2015")]
for i, s in enumerate(p["start"]):
    want = [float(rows[s + L + h][2]) if s + L + h < len(rows) else None for h in range(H)]
    assert p["actual"][i] == want, (i, p["actual"][i], want)
c = list(csv.reader(open(sys.argv[1] + "/predictions.csv", newline="")))
assert c[0][4:] == ["temp_max_h1", "temp_max_h2", "temp_max_h3", "temp_max_h1_sd", "temp_max_h2_sd",
                    "temp_max_h3_sd", "actual_temp_max_h1", "actual_temp_max_h2", "actual_temp_max_h3"], c[0]
for i, row in enumerate(c[1:]):
    want = p["output"][i] + p["uncertainty"][i]
    assert all(f32(float(a)) == f32(b) for a, b in zip(row[4:10], want)), (i, row)
    assert [float(v) if v else None for v in row[10:]] == p["actual"][i], (i, row)
known = [(o[h], a[h]) for o, a in zip(p["output"], p["actual"]) for h in range(H) if a[h] is not None]
mae = sum(abs(struct.unpack("<f", f32(o))[0] - a) for o, a in known) / len(known)
assert abs(mae - p["metrics"]["mae"]) < 1e-9 and p["metrics"]["actual_values"] == len(known), (mae, p["metrics"])
EOF
ok "a forecast with MC-dropout spread equals loom-worker --predict --uncertainty to the bit; actuals and MAE check out"
