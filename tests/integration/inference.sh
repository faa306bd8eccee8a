#!/bin/bash
# The predict endpoint (docs/inference.md) through a real loomd, its real
# inference workers (loom-worker --serve) and two models trained here on
# seattle-temps (python3-vega-datasets):
# - POST /api/v1/models/{name}/predict answers with the production alias's
#   version, equal to loom-worker --predict on that version's directory to
#   the bit (the same windows in one request);
# - the same request again is a cache hit (X-Loom-Cache, /metrics), with
#   the same answer;
# - promote moves the next request to the new version without a restart
#   (and never to a stale cached answer); ?version= and ?alias= pick one;
# - uncertainty on request (MC dropout), the shape of the outputs;
# - binary bodies (application/octet-stream, raw f32): the same values as
#   the JSON answer to the bit, with and without uncertainty; cached apart
#   from JSON; a body that is not whole windows is 400 naming the sizes;
#   other routes still refuse it (415); a cached answer needs no worker;
# - bad requests answer 400 naming what is wrong; unknown models, versions
#   and aliases 404; loomd keeps serving;
# - a worker killed with SIGKILL: the next request answers 503 naming the
#   signal, and the worker is started again and answers as before;
# - loomd stops cleanly with its workers.
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

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$W"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; config = { predict_threads = 1; }; },
  { instance = "forecast"; module = "head-forecast"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; }
);
EOF
# loomd runs from an empty directory, as under systemd (from /): a plugin's
# relative path must resolve under the state directory in the inference
# workers too, never in the working directory.
mkdir "$T/cwd"
cd "$T/cwd"
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

api() { # METHOD PATH [BODY-FILE]: status in $T/code, body in $T/body, headers in $T/head
	curl -s -o "$T/body" -D "$T/head" -w '%{http_code}' -X "$1" \
		${3:+-H 'Content-Type: application/json' --data-binary "@$3"} "$URL$2" >"$T/code"
}
bapi() { # PATH BODY-FILE: as api, the body as application/octet-stream
	curl -s -o "$T/body" -D "$T/head" -w '%{http_code}' -X POST \
		-H 'Content-Type: application/octet-stream' --data-binary "@$2" "$URL$1" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }

# ---------------------------------------------------------------- two versions
for seed in 3 4; do
	cat >"$T/job$seed.conf" <<EOF
name = "temps";
compute = "transformer";
data = { path = "$DATA/seattle-temps.csv"; time_column = "date"; features = ["temp"]; target = ["temp"]; };
model = { kind = "transformer"; head = "forecast"; context = 48; horizon = 12; patch = 12; stride = 24;
          d_model = 16; heads = 2; layers = 1; ffn = 32; dropout = 0.1; };
train = { epochs = 2; batch = 32; warmup_steps = 2; seed = $seed; };
EOF
	expect 0 loomctl --url "$URL" submit "$T/job$seed.conf" --start --cpu 1
	wait_for "task-$((seed - 2))" completed 120
done
api GET /api/v1/models/temps
code 200
[ "$(py -c "import json; print([v['version'] for v in json.load(open('$T/body'))['versions']])")" = "[2, 1]" ] ||
	fail "versions: $(cat "$T/body")"
dir_of() { # VERSION: its directory
	curl -s "$URL/api/v1/models/temps/versions/$1" | py -c "import json,sys; print(json.load(sys.stdin)['dir'])"
}
D1=$(dir_of 1)
D2=$(dir_of 2)
ok "two tasks became versions 1 and 2 of \"temps\""

# 5 windows of 48 hours from the end of the year, as the API takes them
# ({"inputs": …}) and as loom-worker --predict does ({"input": …})
py - "$DATA/seattle-temps.csv" "$T" <<'EOF'
import csv, json, sys
v = [float(r["temp"]) for r in csv.DictReader(open(sys.argv[1]))]
wins = [[[x] for x in v[s:s + 48]] for s in range(8000, 8000 + 5 * 97, 97)]
json.dump({"inputs": wins}, open(sys.argv[2] + "/req.json", "w"))
json.dump({"inputs": wins, "uncertainty": True, "passes": 8}, open(sys.argv[2] + "/req-u.json", "w"))
json.dump({"input": wins}, open(sys.argv[2] + "/in.json", "w"))
json.dump({"inputs": wins[:2]}, open(sys.argv[2] + "/req2.json", "w"))
json.dump({"inputs": wins[:3]}, open(sys.argv[2] + "/req3.json", "w"))
json.dump({"inputs": wins[:4]}, open(sys.argv[2] + "/req4.json", "w"))
# the same windows as raw little-endian f32 [5, 48, 1] (binary bodies)
import struct
open(sys.argv[2] + "/req.f32", "wb").write(struct.pack("<240f", *[s[0] for w in wins for s in w]))
EOF
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$W" --predict "$D1" --input "$T/in.json" --output "$T/p1.json"
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$W" --predict "$D2" --input "$T/in.json" --output "$T/p2.json"

# same(API-ANSWER, PREDICT-OUTPUT): every value equal (both print each f32
# exactly), the same shape
same() {
	py - "$1" "$2" <<'EOF' || fail "the answer in $1 differs from loom-worker --predict's $2"
import json, sys
a, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["shape"] == p["shape"], (a["shape"], p["shape"])
assert a["outputs"] == p["output"], "values differ"
EOF
}

# ---------------------------------------------------------------- no production yet
api POST /api/v1/models/temps/predict "$T/req.json"
code 404
has "$T/body" 'has no alias \"production\"'
ok "before a promote: 404 naming the missing production alias"

# ---------------------------------------------------------------- production = v1
expect 0 loomctl --url "$URL" models promote temps 1 --alias production
api POST /api/v1/models/temps/predict "$T/req.json"
code 200
has "$T/head" "X-Loom-Cache: miss"
cp "$T/body" "$T/a1.json"
same "$T/a1.json" "$T/p1.json"
[ "$(py -c "import json; b=json.load(open('$T/a1.json')); print(b['version'], b['shape'])")" = \
	"1 [5, 12, 1]" ] || fail "$(head -c 300 "$T/a1.json")"
ok "production (v1) answers equal loom-worker --predict on v1 to the bit"
[ -z "$(ls -A "$T/cwd")" ] || fail "an inference worker wrote into loomd's working directory: $(ls -A "$T/cwd")"
[ -d "$state/plugins/store/blobs" ] || fail "the store's relative root is not under the state directory"
ok "the inference worker's plugins resolve relative paths under the state directory, not the working directory"
# the instance's predict_threads reaches the model its workers open
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$W" --predict "$D1" -c "$T/loomd.conf"
has "$T/out" '"threads": 1'

api POST /api/v1/models/temps/predict "$T/req.json"
code 200
has "$T/head" "X-Loom-Cache: hit"
cmp -s "$T/body" "$T/a1.json" || fail "the cached answer differs from the first"
curl -s "$URL/metrics" >"$T/metrics"
has "$T/metrics" "loom_inference_cache_hits_total 1"
has "$T/metrics" "loom_inference_cache_misses_total 1"
ok "the same request again: a cache hit, the same answer; /metrics counts it"

# ---------------------------------------------------------------- promote v2
expect 0 loomctl --url "$URL" models promote temps 2 --alias production
api POST /api/v1/models/temps/predict "$T/req.json"
code 200
has "$T/head" "X-Loom-Cache: miss"
cp "$T/body" "$T/a2.json"
same "$T/a2.json" "$T/p2.json"
[ "$(py -c "import json; print(json.load(open('$T/a2.json'))['version'])")" = 2 ] || fail "not v2: $(head -c 200 "$T/a2.json")"
cmp -s "$T/a1.json" "$T/a2.json" && fail "v1 and v2 answered the same"
ok "after promoting v2 the next request is v2's (no stale cached answer), equal to --predict on v2"

api POST "/api/v1/models/temps/predict?version=1" "$T/req.json"
code 200
[ "$(py -c "import json; b=json.load(open('$T/body')); print(b['version'])")" = 1 ] ||
	fail "$(head -c 200 "$T/body")"
same "$T/body" "$T/p1.json"
expect 0 loomctl --url "$URL" models rollback temps --alias production
api POST "/api/v1/models/temps/predict?alias=production" "$T/req.json"
code 200
[ "$(py -c "import json; print(json.load(open('$T/body'))['version'])")" = 1 ] || fail "rollback: $(head -c 200 "$T/body")"
ok "?version=1 and, after a rollback, ?alias=production answer with v1"

expect 0 loomctl --url "$URL" --json predict temps "$T/in.json"
same "$T/out" "$T/p1.json"
expect 0 loomctl --url "$URL" predict temps "$T/in.json" --version 2 --uncertainty --passes 4
has "$T/out" "temps version 2: 5 windows"
[ "$(grep -c '^  [1-5]: ' "$T/out")" = 5 ] || fail "loomctl predict: $(cat "$T/out")"
has "$T/out" " ±"
expect 2 loomctl --url "$URL" predict temps "$T/in.json" --version 2 --alias production
expect 2 loomctl --url "$URL" predict temps "$T/nothing.json"
has "$T/err" "nothing.json"
expect 1 loomctl --url "$URL" predict nothing "$T/in.json"
has "$T/err" 'there is no model "nothing"'
ok "loomctl predict: the same answer with --json; one line a window; usage errors and unknown models"

# ---------------------------------------------------------------- uncertainty
api POST /api/v1/models/temps/predict "$T/req-u.json"
code 200
py - "$T/body" "$T/p1.json" <<'EOF' || fail "uncertainty: $(head -c 400 "$T/body")"
import json, sys
a, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["outputs"] == p["output"]                 # the prediction is the plain one
u = a["uncertainty"]
assert len(u) == 5 and all(len(w) == 12 and all(len(s) == 1 for s in w) for w in u)
flat = [s[0] for w in u for s in w]
assert all(x >= 0 for x in flat) and max(flat) > 0
assert a["uncertainty_method"]["method"] == "mc_dropout", a["uncertainty_method"]
assert a["passes"] == 8
EOF
ok "uncertainty on request: MC dropout over 8 passes, one spread per output, the prediction unchanged"

# ---------------------------------------------------------------- binary bodies
# equal(BINARY-ANSWER, JSON, SPREAD): the f32 of the binary answer are the
# JSON's "outputs" (and, with SPREAD 1, then its "uncertainty"), value for
# value, to the bit
equal() {
	py - "$1" "$2" "$3" <<'EOF' || fail "the binary answer $1 differs from $2"
import json, struct, sys
raw, a, spread = open(sys.argv[1], "rb").read(), json.load(open(sys.argv[2])), sys.argv[3] == "1"
flat = lambda v: [x for y in v for x in flat(y)] if isinstance(v, list) else [v]
want = flat(a["outputs"]) + (flat(a["uncertainty"]) if spread else [])
got = list(struct.unpack("<%df" % (len(raw) // 4), raw))
assert len(raw) % 4 == 0 and len(got) == len(want), (len(raw), len(want))
assert got == want, [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w][:3]
EOF
}
hdr() { # NAME VALUE: the last answer had that header
	tr -d '\r' <"$T/head" | grep -qix "$1: $2" ||
		fail "no \"$1: $2\" among $(tr -d '\r' <"$T/head" | tr '\n' '|')"
}
# loom-worker --predict's outputs as an answer's ({"outputs": …})
for v in 1 2; do
	py -c "import json; p = json.load(open('$T/p$v.json')); json.dump({'outputs': p['output']}, open('$T/p${v}a.json', 'w'))"
done
# production is v1 again (the rollback); a1.json is v1's JSON answer to req.json
bapi /api/v1/models/temps/predict "$T/req.f32"
code 200
hdr Content-Type application/octet-stream
hdr X-Loom-Cache miss    # req.json's answer is cached, but as JSON: keyed apart
hdr X-Loom-Shape 5,12,1
hdr X-Loom-Model-Version 1
grep -qi "^X-Loom-Uncertainty" "$T/head" && fail "X-Loom-Uncertainty without uncertainty"
[ "$(wc -c <"$T/body")" = $((5 * 12 * 4)) ] || fail "the binary answer is $(wc -c <"$T/body") bytes"
cp "$T/body" "$T/b1.f32"
equal "$T/b1.f32" "$T/a1.json" 0
equal "$T/b1.f32" "$T/p1a.json" 0
bapi /api/v1/models/temps/predict "$T/req.f32"
code 200
hdr X-Loom-Cache hit
hdr X-Loom-Shape 5,12,1
hdr X-Loom-Model-Version 1
cmp -s "$T/body" "$T/b1.f32" || fail "the cached binary answer differs from the first"
api POST /api/v1/models/temps/predict "$T/req.json"
code 200
hdr X-Loom-Cache hit
cmp -s "$T/body" "$T/a1.json" || fail "after a binary request, the JSON answer changed"
ok "a binary body: the JSON answer's values to the bit (and loom-worker --predict's); cached apart from JSON"

api POST /api/v1/models/temps/predict "$T/req-u.json"
code 200
cp "$T/body" "$T/au.json"
bapi "/api/v1/models/temps/predict?uncertainty=true&passes=8" "$T/req.f32"
code 200
hdr X-Loom-Cache miss
hdr X-Loom-Shape 5,12,1
hdr X-Loom-Uncertainty mc_dropout
hdr X-Loom-Passes 8
[ "$(wc -c <"$T/body")" = $((2 * 5 * 12 * 4)) ] || fail "the binary answer is $(wc -c <"$T/body") bytes"
equal "$T/body" "$T/au.json" 1
cp "$T/body" "$T/bu.f32"
bapi "/api/v1/models/temps/predict?uncertainty=true&passes=8" "$T/req.f32"
code 200
hdr X-Loom-Cache hit
hdr X-Loom-Uncertainty mc_dropout
hdr X-Loom-Passes 8
cmp -s "$T/body" "$T/bu.f32" || fail "the cached binary answer with uncertainty differs"
bapi "/api/v1/models/temps/predict?uncertainty=true&passes=4" "$T/req.f32"
code 200
hdr X-Loom-Cache miss
hdr X-Loom-Passes 4
bapi "/api/v1/models/temps/predict?version=2" "$T/req.f32"
code 200
hdr X-Loom-Model-Version 2
equal "$T/body" "$T/p2a.json" 0
ok "?uncertainty=true&passes=8: outputs then spread, the JSON answer's to the bit; the options key the cache; ?version= picks v2"

head -c $((5 * 48 * 4 + 4)) /dev/zero >"$T/bad.f32"
bapi /api/v1/models/temps/predict "$T/bad.f32"
code 400
has "$T/body" "the body's 964 bytes are not a whole number of windows: this model's window is 48 steps x 1 channel x 4 bytes = 192 bytes of little-endian f32 ([B, 48, 1] row-major), and 964 is not a multiple of 192"
: >"$T/empty.f32"
bapi /api/v1/models/temps/predict "$T/empty.f32"
code 400
has "$T/body" "the body is empty: send 1 to 65536 windows, each 48 steps"
py -c "import struct; open('$T/nan.f32', 'wb').write(struct.pack('<96f', *([1.0] * 60 + [float('nan')] + [1.0] * 35)))"
bapi /api/v1/models/temps/predict "$T/nan.f32"
code 400
has "$T/body" "window 1, step 12, channel 0 is NaN"
bapi "/api/v1/models/temps/predict?uncertainty=maybe" "$T/req.f32"
code 400
has "$T/body" 'uncertainty: \"maybe\" is not true or false'
bapi "/api/v1/models/temps/predict?passes=2000" "$T/req.f32"
code 400
has "$T/body" 'passes: \"2000\" is not a whole number from 1 to 1024'
api POST "/api/v1/models/temps/predict?uncertainty=true" "$T/req.json"
code 400
has "$T/body" "a JSON body gives them as its fields"
bapi /api/v1/training/tasks "$T/req.f32"
code 415
has "$T/body" 'Content-Type \"application/octet-stream\" is not accepted: this API reads JSON'
curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary "@$T/req.f32" \
	"$URL/api/v1/models/temps/predict" >"$T/code"
code 415
has "$T/body" "application/json or application/octet-stream"
ok "binary bodies that are not whole windows, empty, NaN, or with bad options: 400 naming them; another route or another type: 415"

# ---------------------------------------------------------------- bad requests
bad() { # BODY EXPECTED-CODE TEXT
	printf '%s' "$1" >"$T/bad.json"
	api POST /api/v1/models/temps/predict "$T/bad.json"
	code "$2"
	has "$T/body" "$3"
}
bad '{"inputs": [[[1]]]}' 400 "each window must be an array of 48 steps"
bad '{"inputs": []}' 400 "inputs: required"
bad '{"input": [[[1]]]}' 400 'unknown field \"input\"'
bad "$(py -c 'import json; w = [[1]] * 48; w[47] = ["x"]; print(json.dumps({"inputs": [w]}))')" 400 \
	"value 47 is not a number"
# 1e39 is a JSON number, but no f32 holds it
bad "$(py -c 'w = [[2]] * 48; print("{\"inputs\": [%s, %s]}" % ([[1]] * 48, str(w[:10] + [["1e39"]] + w[11:]).replace("\x27", "")))')" 400 \
	"value 58 (window 1, step 10, channel 0) is not a finite f32 number"
bad '{"inputs": [], "passes": 0}' 400 "passes: a whole number"
bad '[1, 2]' 400 "the body must be a JSON object"
bad 'not json' 400 ""
api POST "/api/v1/models/temps/predict?alias=production&version=1" "$T/req.json"
code 400
api POST "/api/v1/models/temps/predict?alias=staging" "$T/req.json"
code 404
has "$T/body" 'has no alias \"staging\"'
api POST "/api/v1/models/temps/predict?version=9" "$T/req.json"
code 404
api POST /api/v1/models/nothing/predict "$T/req.json"
code 404
api POST "/api/v1/models/temps/predict?limit=3" "$T/req.json"
code 400
api POST /api/v1/models/temps/predict "$T/req.json"
code 200
ok "bad bodies and parameters: 400 naming the problem; unknown model, version, alias: 404; serving goes on"

# ---------------------------------------------------------------- a worker dies
pid=$(pgrep -f -- "--serve $D1 " || true)
[ -n "$pid" ] || fail "no inference worker for $D1: $(pgrep -af loom-worker || true)"
kill -KILL "$pid"
# dead before the request (kill only queues the signal): a zombie until
# loomd reaps it
i=0
until [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; do
	i=$((i + 1))
	[ $i -lt $((WAIT_S * 100)) ] || fail "worker $pid did not die after SIGKILL"
	sleep 0.01
done
# a cached answer needs no worker: it is looked up before one is found
bapi /api/v1/models/temps/predict "$T/req.f32"
code 200
hdr X-Loom-Cache hit
cmp -s "$T/body" "$T/b1.f32" || fail "the cached binary answer differs while the worker is dead"
# a request not asked before
api POST /api/v1/models/temps/predict "$T/req2.json"
code 503
has "$T/body" "killed by signal 9"
has "$T/head" "Retry-After"
ok "a worker killed with SIGKILL: the next request answers 503 naming the signal"
i=0
while :; do
	api POST /api/v1/models/temps/predict "$T/req2.json"
	[ "$(cat "$T/code")" = 200 ] && break
	[ "$(cat "$T/code")" = 503 ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code") while the worker restarts"; }
	i=$((i + 1))
	[ $i -lt $((WAIT_S * 20)) ] || fail "the worker did not come back in ${WAIT_S} s: $(cat "$T/body")"
	sleep 0.05
done
has "$T/head" "X-Loom-Cache: miss"
api POST /api/v1/models/temps/predict "$T/req3.json"
code 200
has "$T/head" "X-Loom-Cache: miss"
py - "$T/body" "$T/p1.json" <<'EOF' || fail "after the restart v1 answers differently"
import json, sys
a, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["version"] == 1 and len(a["outputs"]) == 3
# windows sent in another batch may differ in their last bits (docs/inference.md)
for w, q in zip(a["outputs"], p["output"]):
    for s, t in zip(w, q):
        assert abs(s[0] - t[0]) <= 1e-4 * max(1.0, abs(t[0])), (s, t)
EOF
new=$(pgrep -f -- "--serve $D1 " || true)
[ -n "$new" ] && [ "$new" != "$pid" ] || fail "no new worker for v1 (old pid $pid, now '$new')"
curl -s "$URL/metrics" >"$T/metrics"
has "$T/metrics" "loom_inference_worker_deaths_total 1"
ok "the worker is started again (pid $pid → $new) and answers"

# killed while a request waits on it: the worker is stopped (SIGSTOP) so
# that it cannot answer however fast it would be, the request is sent,
# then the worker is killed; the request answers 503 naming the signal
# (whether loomd had sent it before the kill or finds the connection gone)
kill -STOP "$new"
api POST /api/v1/models/temps/predict "$T/req4.json" &     # not asked before: not cached
req=$!
sleep 0.3
kill -KILL "$new"
wait "$req"
code 503
has "$T/body" "killed by signal 9"
ok "a worker killed while a request waits on it: that request answers 503 naming the signal"

stop_loomd
pgrep -f -- "--serve $D1 " >/dev/null && fail "a worker outlived loomd"
pgrep -f -- "--serve $D2 " >/dev/null && fail "a worker outlived loomd"
ok "loomd stopped with its workers"
