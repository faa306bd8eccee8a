#!/bin/bash
# Incremental runs of the Transformer engine (issue 15, docs/incremental.md)
# through loom-worker on real data: seattle-weather (python3-vega-datasets)
# split by year, a classifier of `weather`.
# - a plain run on 2012 keeps continual.safetensors (a replay bank filled
#   by the reservoir sampler, the Fisher, its test split as increment 1) and
#   metrics.json "continual" with R = [[R11]];
# - an increment on 2013 from it with replay + EWC + LwF: R has two rows,
#   the summary figures agree with R, the shared holdout measures the init
#   version and the new one on the same windows;
# - paused and resumed, it ends with the same bytes as in one go;
# - a bank kept larger than the init's fills its free slots first;
# - an increment whose data has classes the init lacked grows the head
#   (the init's classes first, in their order);
# - an incompatible spec is refused naming what differs; replay, EWC and
#   LwF without train.init are refused.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
worker() { "$W" --threads 2 "$@"; }
py() { /usr/bin/python3 "$@"; }
# metric DIR EXPR: a value from DIR/metrics.json (m)
metric() { py -c "import json,sys; m=json.load(open(sys.argv[1])); print($2)" "$1/metrics.json"; }

py - "$DATA/seattle-weather.csv" "$T" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
for y in ("2012", "2013", "2014"):
    with open(f"{sys.argv[2]}/y{y}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows[0])
        w.writerows(r for r in rows[1:] if r[0].startswith(y))
EOF
# spec FILE DATA [INIT_DIR] [INCREMENTAL]: a small classifier
spec() {
	local init=""
	[ -n "${3:-}" ] && init="init = { model = \"weather\"; model_dir = \"$3\"; version = 1; };"
	cat >"$1" <<EOF
name = "weather";
data = { path = "$2"; time_column = "date"; target = "weather";
         features = ["precipitation", "temp_max", "temp_min", "wind"]; };
model = { head = "classification"; context = 14; patch = 7; d_model = 16; heads = 2;
          layers = 1; ffn = 32; dropout = 0.1; };
train = { epochs = ${EPOCHS:-4}; batch = 32; lr = 0.003; warmup_steps = 5; seed = 7;
          checkpoint_every = 0; $init };
${4:-}
EOF
}

# ---------------------------------------------------------------- increment 1: a plain run
spec "$T/v1.conf" "$T/y2012.csv"
expect 0 worker --run "$T/v1.conf" --out "$T/v1"
[ -s "$T/v1/continual.safetensors" ] || fail "a plain run kept no continual.safetensors"
[ "$(metric "$T/v1" 'm["continual"]["increment"]')" = 1 ] || fail "increment 1 expected"
[ "$(metric "$T/v1" 'len(m["continual"]["R"])')" = 1 ] || fail "R of increment 1 has one row"
[ "$(metric "$T/v1" 'm["continual"]["strategies"]["replay"]["bank_rows"]')" -gt 0 ] ||
	fail "the reservoir kept no bank rows"
r11=$(metric "$T/v1" 'm["continual"]["R"][0][0]')
acc=$(metric "$T/v1" 'm["test"]["accuracy"]')
py -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-6)" \
	"$r11" "$acc" || fail "R[1][1] $r11 is not the test accuracy $acc"
ok "increment 1: continual.safetensors kept, R = [[$r11]] = the test accuracy"

# ---------------------------------------------------------------- increment 2: replay + EWC + LwF
INC='incremental = { replay = { memory = 200; ratio = 1.0; }; ewc = { lambda = 100.0; mode = "online"; gamma = 0.9; }; lwf = { alpha = 0.5; temperature = 2.0; }; };'
spec "$T/v2.conf" "$T/y2013.csv" "$T/v1" "$INC"
expect 0 worker --run "$T/v2.conf" --out "$T/v2"
has "$T/err" "starting from model \"weather\" version 1"
py - "$T/v2/metrics.json" <<'EOF' || fail "the continual record of increment 2 is wrong"
import json, math, sys
m = json.load(open(sys.argv[1]))
c, h = m["continual"], m["holdout"]
R, before, base = c["R"], c["R_before"], c["baseline"]
assert c["increment"] == 2 and len(R) == 2 and len(R[0]) == 1 and len(R[1]) == 2, R
assert c["init"] == {"model": "weather", "version": 1}, c["init"]
assert abs(c["average"] - (R[1][0] + R[1][1]) / 2) < 1e-9
assert abs(c["forgetting"] - (R[0][0] - R[1][0])) < 1e-9
assert abs(c["bwt"] - (R[1][0] - R[0][0])) < 1e-9
assert abs(c["fwt"] - (before[1] - base[1])) < 1e-9
assert abs(R[1][1] - m["test"]["accuracy"]) < 1e-6
assert h["windows"] == sum(i["test_windows"] for i in c["increments"])
assert h["init"] is not None and "accuracy" in h["init"] and "accuracy" in h["model"]
s = c["strategies"]
assert s["replay"]["mixed_per_batch"] == 32 and s["ewc"]["terms"] == 1, s
print("R", R, "holdout", h["model"]["accuracy"], "init", h["init"]["accuracy"])
EOF
ok "increment 2 (replay + EWC + LwF): R has two rows, the summary agrees with it, the holdout measures both versions"

# ---------------------------------------------------------------- pause and resume: the same bytes
expect 0 worker --run "$T/v2.conf" --out "$T/v2p" --max-steps 9
has "$T/err" "paused at step 9"
expect 0 worker --resume "$T/v2p"
for f in best.safetensors last.safetensors continual.safetensors; do
	cmp -s "$T/v2/$f" "$T/v2p/$f" || fail "$f differs after a pause at step 9 and a resume"
done
ok "an incremental run paused at step 9 and resumed ends with the same bytes"

# ---------------------------------------------------------------- a bank kept larger than before
spec "$T/small.conf" "$T/y2012.csv" "" 'incremental = { replay = { memory = 50; }; };'
expect 0 worker --run "$T/small.conf" --out "$T/small"
spec "$T/large.conf" "$T/y2013.csv" "$T/small" 'incremental = { replay = { memory = 300; ratio = 0.5; }; };'
expect 0 worker --run "$T/large.conf" --out "$T/large"
py - "$T/small/continual.safetensors" "$T/large/continual.safetensors" <<'EOF' || fail "the larger bank is wrong"
import json, struct, sys
def bank(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    t = head["memory.x"]
    rows, width = t["shape"][0], t["shape"][1] * t["shape"][2]
    a, b = t["data_offsets"]
    x = struct.unpack(f"<{(b - a) // 4}f", data[a:b])
    empty = sum(all(v == 0 for v in x[r * width:(r + 1) * width]) for r in range(rows))
    return rows, empty, json.loads(head["__metadata__"]["continual"])["memory_seen"]
small, large = bank(sys.argv[1]), bank(sys.argv[2])
new = large[2] - small[2]  # the increment's training windows
assert small[0] == 50 and small[1] == 0, small
assert new > 0 and large[0] == min(300, 50 + new) and large[1] == 0, (small, large)
print("bank (rows, empty rows, seen):", small, "->", large)
EOF
ok "a bank kept larger than the init's fills its free slots first (no empty row); seen carries over"

# ---------------------------------------------------------------- new classes grow the head
grep -v ',rain$\|,drizzle$\|,snow$' "$T/y2014.csv" >"$T/fogsun.csv"
spec "$T/fs.conf" "$T/fogsun.csv"
expect 0 worker --run "$T/fs.conf" --out "$T/fs"
spec "$T/grow.conf" "$T/y2012.csv" "$T/fs"
expect 0 worker --run "$T/grow.conf" --out "$T/grow"
has "$T/err" "classes new in this increment"

py - "$T/fs/best.safetensors" "$T/grow/best.safetensors" <<'EOF' || fail "the grown head's classes are not the init's followed by the new ones"
import json, struct, sys
def classes(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    return json.loads(meta["data"])["classes"]
old, new = classes(sys.argv[1]), classes(sys.argv[2])
assert new[:len(old)] == old and len(new) > len(old), (old, new)
assert sorted(new[len(old):]) == new[len(old):], new
print(old, "->", new)
EOF
ok "an increment with classes the init lacked grows the head, the init's classes first"

# ---------------------------------------------------------------- refused
sed -e 's/d_model = 16/d_model = 32/' "$T/v2.conf" >"$T/bad.conf"
expect 1 worker --run "$T/bad.conf" --out "$T/bad"
has "$T/err" "model.d_model: the version this run starts from (train.init) has 16"
spec "$T/noinit.conf" "$T/y2013.csv" "" "$INC"
expect 1 worker --run "$T/noinit.conf" --out "$T/noinit"
has "$T/err" "incremental.replay.ratio"
has "$T/err" "incremental.ewc.lambda"
has "$T/err" "incremental.lwf.alpha"
spec "$T/nosampler.conf" "$T/y2013.csv" "$T/v1" 'incremental = { replay = { ratio = 1.0; sampler = "nope"; }; };'
expect 1 worker --run "$T/nosampler.conf" --out "$T/nosampler"
has "$T/err" 'incremental.replay.sampler: no sampler instance "nope"'
hasnt "$T/err" "epoch 1/"
mkdir "$T/corrupt"
cp "$T/v1/best.safetensors" "$T/corrupt/"
head -c 1000 "$T/v1/continual.safetensors" >"$T/corrupt/continual.safetensors"
spec "$T/corrupt.conf" "$T/y2013.csv" "$T/corrupt" "$INC"
expect 1 worker --run "$T/corrupt.conf" --out "$T/corrupt-run"
has "$T/err" "train.init.model_dir: the continual.safetensors of $T/corrupt cannot be used"
sed -e 's/model_dir = "[^"]*";//' "$T/v2.conf" >"$T/nodir.conf"
expect 1 worker --run "$T/nodir.conf" --out "$T/nodir"
has "$T/err" "train.init.model_dir: not set"
ok "refused, naming what to change: an incompatible spec, strategies without train.init, an unresolved train.init, a missing sampler (before any epoch), a corrupt continual.safetensors"
