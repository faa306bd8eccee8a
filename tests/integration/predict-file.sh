#!/bin/bash
# The predict endpoint's file form (docs/inference.md, "Rows of a file"):
# POST /api/v1/models/{name}/predict {"file": PATH, "from_line", "to_line",
# "stride"} through a real loomd, its inference worker and a model trained
# here on seattle-temps (python3-vega-datasets):
# - a path outside data_roots is 400 naming data_roots, and no worker is
#   even started for it;
# - the windows answer equals the JSON form's for the same windows, and
#   loom-worker --predict's, to the bit; from_line/to_line/stride pick the
#   windows the description says (first_line, last_line, time);
# - the same file again is a cache hit; the file changed is the new answer;
# - a missing column is 400 with the file:line message; no window in the
#   range, more windows than one request takes, file with inputs, a
#   relative path: 400 naming what to do.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
W=$B/host/loom-worker
py() { /usr/bin/python3 "$@"; }

mkdir -p "$T/data"
cp "$DATA/seattle-temps.csv" "$T/data/temps.csv"
state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T/data" ];
jobs = { worker = "$W"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; config = { predict_threads = 1; }; },
  { instance = "forecast"; module = "head-forecast"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

api() { # METHOD PATH [BODY-FILE]: status in $T/code, body in $T/body, headers in $T/head
	curl -s -o "$T/body" -D "$T/head" -w '%{http_code}' -X "$1" \
		${3:+-H 'Content-Type: application/json' --data-binary "@$3"} "$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
predict() { # BODY-JSON: POST it to the predict endpoint
	printf '%s' "$1" >"$T/req-body.json"
	api POST /api/v1/models/temps/predict "$T/req-body.json"
}

cat >"$T/job.conf" <<EOF
name = "temps";
compute = "transformer";
data = { path = "$T/data/temps.csv"; time_column = "date"; features = ["temp"]; target = ["temp"]; };
model = { kind = "transformer"; head = "forecast"; context = 48; horizon = 12; patch = 12; stride = 24;
          d_model = 16; heads = 2; layers = 1; ffn = 32; dropout = 0.1; };
train = { epochs = 1; batch = 32; warmup_steps = 2; seed = 3; };
EOF
expect 0 loomctl --url "$URL" submit "$T/job.conf" --start --cpu 1
wait_for task-1 completed 120
expect 0 loomctl --url "$URL" models promote temps 1 --alias production
D1=$(curl -s "$URL/api/v1/models/temps/versions/1" | py -c "import json,sys; print(json.load(sys.stdin)['dir'])")
ok "a trained model, promoted to production"

# ---------------------------------------------------------------- outside data_roots
predict '{"file": "/etc/passwd"}'
code 400
has "$T/body" '\"/etc/passwd\" is outside the directories tasks may read (data_roots'
has "$T/body" "$T/data"
curl -s "$URL/metrics" >"$T/metrics"
has "$T/metrics" "loom_inference_worker_starts_total 0"
ln -s /etc "$T/data/etc"
predict "{\"file\": \"$T/data/etc/passwd\"}"
code 400
has "$T/body" 'outside the directories tasks may read'
curl -s "$URL/metrics" >"$T/metrics"
has "$T/metrics" "loom_inference_worker_starts_total 0"
ok "a path outside data_roots (or a link out of them): 400 naming data_roots; no worker asked"

# ---------------------------------------------------------------- the windows, equal to JSON's
# lines 8002 to 8100 are rows 8000 to 8098; windows of 48 rows start every
# 10 rows from the first: those at rows 8000, 8010 … 8050 lie within
predict "{\"file\": \"$T/data/temps.csv\", \"from_line\": 8002, \"to_line\": 8100, \"stride\": 10}"
code 200
has "$T/head" "X-Loom-Cache: miss"
cp "$T/body" "$T/f1.json"
# windows(CSV, STARTS...): the API's {"inputs"} and --predict's {"input"}, and
# the description the file form must give
windows() {
	py - "$@" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
starts = [int(s) for s in sys.argv[3:]]
wins = [[[float(r["temp"])] for r in rows[s:s + 48]] for s in starts]
out = sys.argv[2]
json.dump({"inputs": wins}, open(out + "/req.json", "w"))
json.dump({"input": wins}, open(out + "/in.json", "w"))
json.dump([{"first_line": s + 2, "last_line": s + 49, "time": rows[s + 47]["date"]} for s in starts],
          open(out + "/meta.json", "w"))
EOF
}
windows "$T/data/temps.csv" "$T" 8000 8010 8020 8030 8040 8050
api POST /api/v1/models/temps/predict "$T/req.json"
code 200
cp "$T/body" "$T/j1.json"
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$W" --predict "$D1" --input "$T/in.json" --output "$T/p1.json"
same() { # FILE-ANSWER JSON-ANSWER PREDICT-OUTPUT META
	py - "$@" <<'EOF' || fail "the file form's answer $1 differs from $2 / $3 / $4"
import json, sys
f, j, p, m = (json.load(open(a)) for a in sys.argv[1:])
assert f["shape"] == j["shape"] == p["shape"], (f["shape"], j["shape"], p["shape"])
assert f["outputs"] == j["outputs"], "file and JSON forms differ"
assert f["outputs"] == p["output"], "file form and loom-worker --predict differ"
assert f["windows"] == m, (f["windows"], m)
assert f["version"] == 1
EOF
}
same "$T/f1.json" "$T/j1.json" "$T/p1.json" "$T/meta.json"
[ "$(py -c "import json; print(json.load(open('$T/f1.json'))['shape'])")" = "[6, 12, 1]" ] ||
	fail "shape: $(head -c 300 "$T/f1.json")"
ok "lines 8002-8100, stride 10: 6 windows, equal to the JSON form and --predict to the bit"

# no bounds, stride 4000: rows 0, 4000, 8000 (8759 rows: the last start is 8711)
predict "{\"file\": \"$T/data/temps.csv\", \"stride\": 4000}"
code 200
windows "$T/data/temps.csv" "$T" 0 4000 8000
api POST /api/v1/models/temps/predict "$T/req.json"
code 200
cp "$T/body" "$T/j2.json"
predict "{\"file\": \"$T/data/temps.csv\", \"stride\": 4000}"
cp "$T/body" "$T/f2.json"
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$W" --predict "$D1" --input "$T/in.json" --output "$T/p2.json"
same "$T/f2.json" "$T/j2.json" "$T/p2.json" "$T/meta.json"
# only to_line: windows ending by line 60 at stride 1 start at rows 0 … 11
predict "{\"file\": \"$T/data/temps.csv\", \"to_line\": 60}"
code 200
py -c "
import json; w = json.load(open('$T/body'))['windows']
assert [x['first_line'] for x in w] == list(range(2, 14)), w
assert w[-1]['last_line'] == 60 and w[0]['time'] == '2010/01/02 23:00', w
" || fail "to_line 60: $(head -c 400 "$T/body")"
ok "stride and to_line alone pick the windows the description names"

# ---------------------------------------------------------------- cache, and a changed file
predict "{\"file\": \"$T/data/temps.csv\", \"from_line\": 8002, \"to_line\": 8100, \"stride\": 10}"
code 200
has "$T/head" "X-Loom-Cache: hit"
cmp -s "$T/body" "$T/f1.json" || fail "the cached answer differs"
# row 8030 (line 8032) lies in windows 8000 … 8030
py - "$T/data/temps.csv" <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
d, t = lines[8031].split(",")
lines[8031] = d + "," + str(float(t) + 25.5)
open(sys.argv[1], "w").write("\n".join(lines))
EOF
predict "{\"file\": \"$T/data/temps.csv\", \"from_line\": 8002, \"to_line\": 8100, \"stride\": 10}"
code 200
has "$T/head" "X-Loom-Cache: miss"
cp "$T/body" "$T/f3.json"
windows "$T/data/temps.csv" "$T" 8000 8010 8020 8030 8040 8050
api POST /api/v1/models/temps/predict "$T/req.json"
cp "$T/body" "$T/j3.json"
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$W" --predict "$D1" --input "$T/in.json" --output "$T/p3.json"
same "$T/f3.json" "$T/j3.json" "$T/p3.json" "$T/meta.json"
py -c "
import json; a, b = json.load(open('$T/f1.json'))['outputs'], json.load(open('$T/f3.json'))['outputs']
assert a[0] != b[0] and a[5] == b[5], 'the changed row must change windows 0-3 only'
" || fail "the changed file's answer"
ok "the same file again: a cache hit; the file changed: the new answer (a miss)"

# ---------------------------------------------------------------- errors
printf 'date,humidity\n2010/01/01 00:00,3\n' >"$T/data/bad.csv"
predict "{\"file\": \"$T/data/bad.csv\"}"
code 400
has "$T/body" "$T/data/bad.csv:1: no column \\\"temp\\\""
{ echo "date,temp"; for i in $(seq 0 59); do echo "2010/01/01 00:$(printf %02d $i),$([ $i = 5 ] && echo x || echo $i)"; done; } >"$T/data/nan.csv"
predict "{\"file\": \"$T/data/nan.csv\"}"
code 400
has "$T/body" "$T/data/nan.csv:7:"
predict "{\"file\": \"$T/data/temps.csv\", \"from_line\": 5, \"to_line\": 40}"
code 400
has "$T/body" 'no window of 48 rows'
predict "{\"file\": \"$T/data/missing.csv\"}"
code 400
predict "{\"file\": \"data/temps.csv\"}"
code 400
has "$T/body" 'file: the absolute path'
predict "{\"file\": \"$T/data/temps.csv\", \"inputs\": [[[1]]]}"
code 400
has "$T/body" 'file and inputs exclude each other'
predict "{\"file\": \"$T/data/temps.csv\", \"from_line\": 0}"
code 400
has "$T/body" 'from_line: a file line, 1 or more'
predict "{\"file\": \"$T/data/temps.csv\", \"stride\": 0}"
code 400
has "$T/body" 'stride: a whole number'
# 65,600 hourly rows: 65,553 windows at stride 1, more than a request takes
py - "$T/data/big.csv" <<'EOF'
import sys, datetime
t0 = datetime.datetime(2000, 1, 1)
with open(sys.argv[1], "w") as f:
    f.write("date,temp\n")
    for i in range(65600):
        f.write((t0 + datetime.timedelta(hours=i)).strftime("%Y/%m/%d %H:%M") + ",%d\n" % (i % 50))
EOF
predict "{\"file\": \"$T/data/big.csv\"}"
code 400
has "$T/body" 'hold 65553 windows of 48 rows at stride 1, more than the 65536 one request takes'
has "$T/body" 'batch prediction task (docs/inference.md'
predict "{\"file\": \"$T/data/big.csv\", \"stride\": 2}"
code 200
[ "$(py -c "import json; print(len(json.load(open('$T/body'))['windows']))")" = 32777 ] ||
	fail "stride 2 over 65,600 rows: $(head -c 200 "$T/body")"
ok "a missing column, a bad value, no window, too many, a relative path, bad fields: 400 saying why"

stop_loomd
ok "loomd stopped"
