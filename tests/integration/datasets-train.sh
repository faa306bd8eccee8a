#!/bin/bash
# Training and batch prediction on a dataset version (issue 16,
# docs/datasets.md) through a real loomd and real loom-worker processes, on
# Debian's seattle-weather (python3-vega-datasets):
# - alice imports 2012–2014 into dataset "weather" (upload parts, commit),
#   tags it v1, then commits 2015 on top (main moves on; v1 stays);
# - a training task on data.path = "dataset:weather@v1" is stored with
#   loomd's file and data.dataset {name, ref, version = v1's id}; the file
#   is v1's rows (not main's), the run's lineage and the registered model
#   version's lineage name that version;
# - "dataset:weather" without a ref trains on the default branch's head;
# - a batch prediction on "dataset:weather@main" resolves the same way;
# - bob, who may not read the dataset, gets 404 naming it as missing; a
#   ref that names nothing is 404 naming the ref; a client's own
#   data.dataset is 400; a malformed reference is 400.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
CSV=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv
[ -r "$CSV" ] || {
	echo "SKIP: $CSV is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

mkdir -p "$T/data"
head -1 "$CSV" >"$T/data/v1.csv"
grep -E '^201[234]/' "$CSV" >>"$T/data/v1.csv"
cp "$T/data/v1.csv" "$T/data/v2.csv"
grep -E '^2015/' "$CSV" >>"$T/data/v2.csv"

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T/data" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

for u in alice bob; do
	expect 0 loomctl --url "$URL" users add $u
done
declare -A TOKEN
for u in alice bob; do
	TOKEN[$u]=$(loomctl --url "$URL" tokens create --user $u -q)
done
as() { # USER METHOD PATH [BODY]: status in $T/code, body in $T/body
	command curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer ${TOKEN[$1]}" \
		-X "$2" ${4:+-H 'Content-Type: application/json' --data-binary "$4"} "$URL$3" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }
says() { # TEXT: in the error's message
	/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))
t = b["error"]["message"] if isinstance(b, dict) and "error" in b else json.dumps(b)
sys.exit(sys.argv[2] not in t)' "$T/body" "$1" || fail "expected \"$1\" in: $(cat "$T/body")"
}
# commit USER FILE MESSAGE: one upload of FILE to weather's main; the new
# version's id in $version
commit() {
	as "$1" POST /api/v1/datasets/weather/uploads '{"branch": "main", "format": "csv"}'
	code 201
	local up
	up=$(py 'b["upload"]')
	command curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer ${TOKEN[$1]}" \
		-X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" \
		"$URL/api/v1/datasets/weather/uploads/$up/parts/0" >"$T/code"
	code 200
	as "$1" POST "/api/v1/datasets/weather/uploads/$up/commit" "{\"message\": \"$3\"}"
	code 201
	version=$(py 'b["version"]')
}

# ---------------------------------------------------------------- the dataset
as alice POST /api/v1/datasets '{"name": "weather", "description": "Seattle, daily"}'
code 201
commit alice "$T/data/v1.csv" "2012 to 2014"
v1=$version
as alice POST /api/v1/datasets/weather/tags "{\"name\": \"v1\", \"ref\": \"$v1\"}"
code 201
commit alice "$T/data/v2.csv" "with 2015"
v2=$version
[ "$v1" != "$v2" ] || fail "two different files made one version"
ok "weather: v1 = ${v1:0:12} (tagged), main = ${v2:0:12}"

task_body() { # DATA_PATH [EXTRA_DATA_JSON]: a classifier's submission
	/usr/bin/python3 - "$1" "${2:-}" <<'PY'
import json, sys
data = {"path": sys.argv[1], "time_column": "date",
        "features": ["precipitation", "temp_max", "temp_min", "wind"],
        "target": "weather", "split": [0.8, 0.1, 0.1]}
if sys.argv[2]:
    data.update(json.loads(sys.argv[2]))
print(json.dumps({"name": "weather", "start": True, "spec": {
    "compute": "transformer", "data": data,
    "model": {"head": "classification", "context": 14, "patch": 1, "stride": 1,
              "d_model": 16, "heads": 2, "layers": 1, "ffn": 32, "dropout": 0.1,
              "revin": False, "channel_independent": False},
    "train": {"epochs": 1, "batch": 32, "lr": 0.003, "seed": 7, "threads": 1}}}))
PY
}

# ---------------------------------------------------------------- refusals
as bob POST /api/v1/training/tasks "$(task_body dataset:weather@v1)"
code 404
says 'data.path: there is no dataset "weather"'
as alice POST /api/v1/training/tasks "$(task_body dataset:weather@nope)"
code 404
says 'nope'
as alice POST /api/v1/training/tasks "$(task_body "$T/data/v1.csv" '{"dataset": {"name": "weather", "version": "0"}}')"
code 400
says 'data.dataset: loomd sets it'
as alice POST /api/v1/training/tasks "$(task_body 'dataset:../../etc@v1')"
code 400
says 'data.path'
ok "refused: a dataset bob may not read (404), an unknown ref (404), a client's data.dataset (400), a bad name (400)"

# ---------------------------------------------------------------- training on the tag
as alice POST /api/v1/training/tasks "$(task_body dataset:weather@v1)"
code 201
task=$(py 'b["task_id"]')
as alice GET "/api/v1/training/tasks/$task"
code 200
path=$(py 'b["spec"]["data"]["path"]')
[ "$(py 'b["spec"]["data"]["dataset"]["version"]')" = "$v1" ] || fail "the task's data.dataset.version is not v1's id: $(cat "$T/body")"
[ "$(py 'b["spec"]["data"]["dataset"]["ref"]')" = v1 ] || fail "the task's data.dataset.ref is not v1"
[ "$(py 'b["spec"]["data"]["dataset"]["name"]')" = weather ] || fail "data.dataset.name"
case $path in "$state"/*) ;; *) fail "data.path $path is not loomd's file under $state" ;; esac
cmp -s "$path" "$T/data/v1.csv" || fail "the file a task on v1 reads is not v1's rows"
LOOM_TOKEN=${TOKEN[alice]} wait_for "$task" completed 300
ok "$task trained on dataset:weather@v1 = $path"

as alice GET "/api/v1/runs?task=$task"
code 200
run=$(py 'b["runs"][0]["id"]')
as alice GET "/api/v1/runs/$run"
code 200
[ "$(py 'b["lineage"]["data"]["dataset"]["version"]')" = "$v1" ] || fail "run lineage: $(cat "$T/body")"
[ "$(py 'b["lineage"]["data"]["sha256"]')" = "$(sha256sum "$T/data/v1.csv" | cut -c1-64)" ] ||
	fail "the run's data sha256 is not v1's file's"
as alice GET /api/v1/models/weather
code 200
mv=$(py "[v['version'] for v in b['versions'] if v['task_id'] == '$task'][0]")
as alice GET "/api/v1/models/weather/versions/$mv"
code 200
[ "$(py 'b["lineage"]["dataset"]["version"]')" = "$v1" ] || fail "model lineage: $(cat "$T/body")"
ok "the run's lineage and model version $mv's name dataset weather version ${v1:0:12}"

# ---------------------------------------------------------------- the default branch, and a prediction
as alice POST /api/v1/training/tasks "$(task_body dataset:weather '{"split": [0.8, 0.1, 0.1]}')"
code 201
task2=$(py 'b["task_id"]')
as alice GET "/api/v1/training/tasks/$task2"
[ "$(py 'b["spec"]["data"]["dataset"]["version"]')" = "$v2" ] || fail "dataset:weather is not main's head"
cmp -s "$(py 'b["spec"]["data"]["path"]')" "$T/data/v2.csv" || fail "main's file differs from v2.csv"
LOOM_TOKEN=${TOKEN[alice]} wait_for "$task2" completed 300
as alice POST /api/v1/models/weather/aliases/production "{\"version\": $mv}"
code 200
as alice POST /api/v1/training/tasks "{\"start\": true, \"spec\": {\"compute\": \"transformer\", \"predict\": {\"model\": \"weather\", \"data\": {\"path\": \"dataset:weather@main\"}}}}"
code 201
ptask=$(py 'b["task_id"]')
as alice GET "/api/v1/training/tasks/$ptask"
[ "$(py 'b["spec"]["predict"]["data"]["dataset"]["version"]')" = "$v2" ] || fail "predict: $(cat "$T/body")"
LOOM_TOKEN=${TOKEN[alice]} wait_for "$ptask" completed 300
ok "dataset:weather trains on main's head; $ptask predicts over dataset:weather@main"

stop_loomd
ok "loomd stopped cleanly"
