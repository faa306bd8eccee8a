#!/bin/bash
# Tracking, exports and trackers end to end through a real loomd and real
# loom-worker processes: a short compute-transformer task becomes run-1,
# whose lineage hashes the data file as sha256sum does; its history is
# served and downsampled keeping extremes; the TensorBoard and JSON-lines
# trackers wrote the same points; a paused and resumed task keeps its run;
# a script's run takes batches of points (NaN included) and refuses bad
# ones whole; runs compare and rank; a run's headline metrics (the head's
# declaration from metrics.json; a script's run by the fallback rule) come
# first in the run, its list entry and compare; every exporter answers for the
# completed task (ONNX, safetensors, HTML, CSV, JSON) through the API and
# loomctl; a task that never completed and a damaged weights file are
# refused with clear errors.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; },
  { instance = "exec"; module = "compute-exec"; },
  { instance = "tensorboard"; module = "tracker-tensorboard"; },
  { instance = "jsonl"; module = "tracker-jsonl"; },
  { instance = "onnx"; module = "exporter-onnx"; },
  { instance = "safetensors"; module = "exporter-safetensors"; },
  { instance = "report"; module = "exporter-report"; },
  { instance = "csv"; module = "exporter-csv"; },
  { instance = "json"; module = "exporter-json"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

api() { # METHOD PATH [BODY|@FILE]: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" \
		${3:+-H 'Content-Type: application/json' --data-binary "$3"} "$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; echo >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }
# Training tasks take seconds, many more on a loaded machine: wait for them
# up to 120 s (more when loomd runs under valgrind); WAIT_S is loomd's
# start-up allowance.
X=$((WAIT_S / 20))
wait_state() { # TASK STATE
	local i=0
	# grep reads all of it: grep -q would stop at the match, and under pipefail
	# loomctl's next write (a status over 4 KiB) would fail the pipeline
	until loomctl --url "$URL" --json status "$1" | grep "\"status\": \"$2\"" >/dev/null; do
		i=$((i + 1))
		[ $i -gt $((1200 * X)) ] && { loomctl --url "$URL" status "$1" >&2; fail "$1 did not reach $2 in $((120 * X))s"; }
		sleep 0.1
	done
}

# ---------------------------------------------------------------- a task's run
sed -e 's/epochs = 40;/epochs = 2;/' -e 's/loss = "mae";/loss = "mae"; kind = "transformer";/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/short.conf"
expect 0 loomctl --url "$URL" submit "$T/short.conf" --start --cpu 1
wait_state task-1 completed
api GET /api/v1/runs/run-1
code 200
[ "$(py 'b["task_id"], b["attempt"], b["state"]')" = "task-1 1 completed" ] || fail "run-1: $(cat "$T/body")"
want=$(sha256sum "$DATA/seattle-temps.csv" | cut -d' ' -f1)
[ "$(py 'b["lineage"]["data"]["sha256"]')" = "$want" ] || fail "lineage hash: $(py 'b["lineage"]')"
[ "$(py 'b["lineage"]["plugins"]["transformer"]["module"]')" = compute-transformer ] ||
	fail "lineage plugins: $(py 'b["lineage"]')"
[ "$(py 'sorted(a["name"] for a in b["artifacts"])')" = \
	"['best.safetensors', 'job.json', 'last.safetensors', 'metrics.json']" ] || fail "artifacts: $(py 'b["artifacts"]')"
[ "$(py 'b["artifacts"][0]["sha256"]')" = "$(sha256sum "$state/jobs/task-1/best.safetensors" | cut -d' ' -f1)" ] ||
	fail "the best.safetensors checksum differs"
# the final test metrics are the run's, as in metrics.json
/usr/bin/python3 - "$T/body" "$state/jobs/task-1/metrics.json" <<'EOF' || fail "run metrics differ from metrics.json"
import json, sys
run = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2]))
for k, v in m["test"].items():
    assert abs(run["metrics"]["test_" + k] - v) <= 1e-12 * max(1, abs(v)), (k, v, run["metrics"])
EOF
# the kept model (metrics.json's model) is tagged
[ "$(py 'b["tags"]["model.kind"], b["tags"]["model.form"]')" = "transformer transformer" ] ||
	fail "run-1's model tags: $(py 'b["tags"]')"
ok "run-1: task-1's attempt, lineage with the data's sha256, artifacts with checksums, final metrics, the kept model's tags"
# the forecast head's headline metrics, in its order (metrics.json declares
# them; the stored declaration is no metric)
[ "$(py 'b["headline"]')" = "['test_loss', 'test_mae', 'test_rmse', 'test_mse', 'test_smape']" ] ||
	fail "run-1's headline: $(py 'b["headline"]')"
[ "$(py 'b["details"]')" = "[]" ] || fail "run-1's details: $(py 'b["details"]')"
hasnt "$T/body" '@display'
[ "$(/usr/bin/python3 -c "import json; print(json.load(open('$state/jobs/task-1/metrics.json'))['headline'])")" = \
	"['loss', 'mae', 'rmse', 'mse', 'smape']" ] || fail "metrics.json declares no headline"
api GET "/api/v1/runs?task=1"
[ "$(py 'b["runs"][0]["headline"]')" = "['test_loss', 'test_mae', 'test_rmse', 'test_mse', 'test_smape']" ] ||
	fail "the run list's headline: $(cat "$T/body")"
[ "$(py '"details" in b["runs"][0]')" = False ] || fail "the run list carries details"
ok "run-1's headline metrics are the forecast head's, in its order, also in the run list"

api GET "/api/v1/training/tasks/task-1/metrics?name=train_loss&max_points=20"
code 200
/usr/bin/python3 - "$T/body" "$state/jobs/task-1/metrics.json" <<'EOF' || fail "history: $(cat "$T/body")"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["run_id"] == "run-1" and b["task_id"] == "task-1", b
assert b["total"] >= 94 and b["returned"] <= 20 and b["downsampled"], b
steps = b["steps"]
assert steps == sorted(steps) and steps[0] == 0, steps
EOF
full=$(py 'b["total"]')
api GET "/api/v1/training/tasks/task-1/metrics?name=train_loss&max_points=100000"
code 200
/usr/bin/python3 - "$T/body" "$T/hist.json" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
assert not b["downsampled"] and b["returned"] == b["total"], b
json.dump(b, open(sys.argv[2], "w"))
EOF
api GET "/api/v1/training/tasks/task-1/metrics?name=train_loss&max_points=20"
/usr/bin/python3 - "$T/body" "$T/hist.json" <<'EOF' || fail "downsampling lost an extreme"
import json, sys
small = json.load(open(sys.argv[1])); full = json.load(open(sys.argv[2]))
v = full["values"]
assert max(v) in small["values"] and min(v) in small["values"], (max(v), min(v), small["values"])
assert small["steps"][-1] == full["steps"][-1]
EOF
api GET "/api/v1/training/tasks/task-1/metrics?name=val_loss&from_step=1&to_step=60"
code 200
[ "$(py 'b["total"], b["steps"]')" = "1 [47]" ] || fail "step range: $(cat "$T/body")"
api GET "/api/v1/training/tasks/task-1/metrics?name=bad%20name"
code 400
api GET "/api/v1/training/tasks/task-1/metrics?name=no_such_metric"
code 404
grep -q "has no metric" "$T/body" || fail "$(cat "$T/body")"
api GET "/api/v1/training/tasks/task-1/metrics?name=lr&max_points=2"
code 400
ok "history: $full train_loss points, downsampled to 20 keeping the minimum and maximum; step ranges; bad names 400, unknown 404"

# the trackers saw the same run: TensorBoard event files read by an
# independent reader, one JSON line per point (the trackers run on a thread
# of their own, a moment behind loomd's store)
i=0
until grep -q '"type":"run_end"' "$state/plugins/jsonl/run-1.jsonl" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt $((600 * X)) ] && fail "the jsonl tracker never ended run-1"; sleep 0.1
done
ev=$(ls "$state"/plugins/tensorboard/run-1/events.out.tfevents.* | head -1)
[ -s "$ev" ] || fail "no TensorBoard event file for run-1"
if [ -r "$S/tests/reference/tfevents_read.py" ]; then
	python3 "$S/tests/reference/tfevents_read.py" "$ev" >"$T/events.json" || fail "the event file does not read back"
	/usr/bin/python3 - "$T/events.json" "$full" <<'EOF' || fail "event file: $(head -c 600 "$T/events.json")"
import json, sys
text = open(sys.argv[1]).read()
n = text.count('train_loss"')  # step points, and epoch/train_loss
assert n >= int(sys.argv[2]), (n, sys.argv[2])
EOF
fi
lines=$(grep -c '"name":"train_loss"' "$state/plugins/jsonl/run-1.jsonl" || true)
[ "$lines" -ge "$full" ] || fail "jsonl has $lines train_loss lines, want $full"
ok "trackers: TensorBoard events ($(basename "$ev")) and JSON lines ($lines train_loss points)"

# ---------------------------------------------------------------- exports
for f in onnx safetensors html csv json; do
	api GET "/api/v1/training/tasks/task-1/export?format=$f"
	code 200
	cp "$T/body" "$T/task-1.$f"
done
head -c 8 "$T/task-1.safetensors" | od -An -tu8 | grep -q '[0-9]' || fail "safetensors header"
grep -q '<svg' "$T/task-1.html" || fail "the report has no chart"
head -1 "$T/task-1.csv" | grep -q 'run_id,metric,step' || fail "csv header: $(head -1 "$T/task-1.csv")"
grep -q '^run-1,train_loss,0,' "$T/task-1.csv" || fail "csv rows"
/usr/bin/python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$T/task-1.json" || fail "json export"
api GET /api/v1/exporters
[ "$(py 'sorted(e["format"] for e in b["exporters"])')" = "['csv', 'html', 'json', 'onnx', 'safetensors']" ] ||
	fail "exporters: $(cat "$T/body")"
api GET "/api/v1/training/tasks/task-1/export?format=pdf"
code 400
grep -q 'loomd exports' "$T/body" || fail "$(cat "$T/body")"
cd "$T"
expect 0 loomctl --url "$URL" export task-1 --format onnx
[ -s "$T/task-1.onnx" ] && cmp -s "$T/task-1.onnx" "$T/task-1.onnx" || fail "loomctl export wrote nothing"
expect 0 loomctl --url "$URL" report task-1 -o "$T/report.html"
cmp -s "$T/report.html" "$T/task-1.html" || fail "loomctl report differs from the API's"
expect 2 loomctl --url "$URL" export task-1
ok "exports: onnx, safetensors, html, csv and json through the API and loomctl; unknown formats listed"

# ---------------------------------------------------------------- pause, resume: one run
sed -e 's/epochs = 40;/epochs = 30;/' -e 's/checkpoint_every = 200;/checkpoint_every = 20;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/long.conf"
expect 0 loomctl --url "$URL" submit "$T/long.conf" --start --cpu 1
wait_state task-2 running
i=0
until [ "$(curl -s "$URL/api/v1/training/tasks/task-2" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"]["current_step"])')" -gt 25 ]; do
	i=$((i + 1)); [ $i -gt $((1200 * X)) ] && fail "task-2 made no progress in $((120 * X))s"; sleep 0.1
done
expect 0 loomctl --url "$URL" pause task-2
api GET "/api/v1/training/tasks/task-2/export?format=html"
code 409
grep -q 'task-2 is paused' "$T/body" || fail "$(cat "$T/body")"
api GET "/api/v1/runs?task=task-2"
[ "$(py 'len(b["runs"]), b["runs"][0]["id"], b["runs"][0]["state"]')" = "1 run-2 paused" ] ||
	fail "paused run: $(cat "$T/body")"
expect 0 loomctl --url "$URL" resume task-2
wait_state task-2 running
expect 0 loomctl --url "$URL" cancel task-2
api GET "/api/v1/runs?task=task-2"
[ "$(py 'len(b["runs"]), b["runs"][0]["id"], b["runs"][0]["state"]')" = "1 run-2 cancelled" ] ||
	fail "resumed run: $(cat "$T/body")"
api GET "/api/v1/training/tasks/task-2/export?format=onnx"
code 409
grep -q 'exports a completed task' "$T/body" || fail "$(cat "$T/body")"
ok "a paused and resumed task keeps run-2, which ends cancelled; a task that never completed is not exported (409)"

# ---------------------------------------------------------------- a script's run
api POST /api/v1/runs '{"name":"script","params":{"lr":0.5,"opt":{"kind":"sgd"}},"tags":{"who":"ci"}}'
code 201
[ "$(py 'b["id"], b["task_id"], b["tags"]["who"]')" = "run-3 None ci" ] || fail "$(cat "$T/body")"
/usr/bin/python3 - "$T/batch.json" <<'EOF'
import json, math, sys
n = 20000
steps = list(range(n))
values = [math.sin(i / 500.0) for i in steps]
values[123] = "NaN"
values[456] = "Infinity"
json.dump({"metrics": [{"name": "loss", "steps": steps, "values": values}],
           "points": [{"name": "acc", "step": 1, "value": 0.5}, {"name": "acc", "step": 2, "value": 0.75}]},
          open(sys.argv[1], "w"))
EOF
api POST /api/v1/runs/run-3/metrics "@$T/batch.json"
code 202
[ "$(py 'b["accepted"]')" = 20002 ] || fail "$(cat "$T/body")"
api GET "/api/v1/runs/run-3/metrics?name=loss&from_step=120&to_step=125"
code 200
[ "$(py 'b["values"][3], b["total"]')" = "NaN 6" ] || fail "$(cat "$T/body")"
api GET "/api/v1/runs/run-3/metrics?name=loss&from_step=456&to_step=456"
[ "$(py 'b["values"]')" = "['Infinity']" ] || fail "$(cat "$T/body")"
api POST /api/v1/runs/run-3/metrics '{"metrics":[{"name":"ok","steps":[1],"values":[1]},{"name":"bad name","steps":[1],"values":[1]}]}'
code 400
grep -q 'metrics\[1\].name' "$T/body" || fail "$(cat "$T/body")"
api POST /api/v1/runs/run-3/metrics '{"metrics":[{"name":"x","steps":[1,2],"values":[1]}]}'
code 400
api POST /api/v1/runs/run-3/metrics '{"metrics":[{"name":"x","steps":[1],"values":["abc"]}]}'
code 400
grep -q 'values\[0\]' "$T/body" || fail "$(cat "$T/body")"
api POST /api/v1/runs/run-3/metrics '{"points":[{"name":"x","step":-1,"value":1}]}'
code 400
api POST /api/v1/runs/run-3/metrics 'not json'
code 400
api POST /api/v1/runs/run-99/metrics '{"points":[{"name":"x","step":1,"value":1}]}'
code 404
api POST /api/v1/runs/nope/metrics '{"points":[]}'
code 404
api GET /api/v1/runs/run-3
[ "$(py '[s["name"] for s in b["series"]]')" = "['acc', 'loss']" ] || fail "a refused batch left points: $(py 'b["series"]')"
api POST /api/v1/runs/run-3/end '{"state":"completed"}'
code 200
api POST /api/v1/runs/run-1/end '{}'
code 409
ok "a script's run: 20,002 points in one request (NaN and Infinity kept), malformed batches refused whole, unknown runs 404"
# a script's run declares nothing: its names without a '.', losses first
api GET /api/v1/runs/run-3
[ "$(py 'b["headline"]')" = "['loss', 'acc']" ] || fail "the script's headline: $(py 'b["headline"]')"

# ---------------------------------------------------------------- compare, best
sed -e 's/lr = 2e-3;/lr = 5e-4;/' "$T/short.conf" >"$T/short2.conf"
expect 0 loomctl --url "$URL" submit "$T/short2.conf" --start --cpu 1
wait_state task-3 completed
api GET "/api/v1/runs/compare?ids=run-1,run-4"
code 200
/usr/bin/python3 - "$T/body" <<'EOF' || fail "compare: $(head -c 800 "$T/body")"
import json, sys
b = json.load(open(sys.argv[1]))
diff = [p["key"] for p in b["params"] if p["differs"]]
assert diff == ["train.lr"], diff
m = {x["name"]: x for x in b["metrics"]}
mae = m["test_mae"]
best = "run-1" if mae["values"][0] < mae["values"][1] else "run-4"
assert mae["best"] == best and mae["better"] == "lower", mae
# the headline metrics first, in the head's order, then the rest by name
head = ["test_loss", "test_mae", "test_rmse", "test_mse", "test_smape"]
assert b["headline"] == head, b["headline"]
names = [x["name"] for x in b["metrics"]]
assert names[:5] == head and all(x["headline"] for x in b["metrics"][:5]), names
assert names[5:] == sorted(names[5:]) and not any(x["headline"] for x in b["metrics"][5:]), names
EOF
best=$(py '[m["best"] for m in b["metrics"] if m["name"] == "test_mae"][0]')
api GET "/api/v1/runs/best?metric=test_mae&name=seattle-temps-forecast"
code 200
[ "$(py 'b["run"]["id"]')" = "$best" ] || fail "best: $(cat "$T/body")"
api GET "/api/v1/runs/compare?ids=run-1"
code 400
api GET "/api/v1/runs/compare?ids=run-1,run-77"
code 404
expect 0 loomctl --url "$URL" compare task-1 task-3
has "$T/out" "train.lr"
has "$T/out" "test_smape"
hasnt "$T/out" "train_loss"
expect 0 loomctl --url "$URL" compare task-1 task-3 --all
has "$T/out" "train_loss"
expect 0 loomctl --url "$URL" runs best test_mae
has "$T/out" "$best"
expect 0 loomctl --url "$URL" runs show run-3
has "$T/out" "loss"
expect 0 loomctl --url "$URL" report run-1 run-4 -o "$T/compare.html"
grep -q '<svg' "$T/compare.html" || fail "the comparison report has no chart"
expect 1 loomctl --url "$URL" runs show run-99
ok "compare marks train.lr and the best test_mae ($best); best agrees; comparison report"

# ---------------------------------------------------------------- many tasks starting together
# Each start stores a transition while the tracking writer begins a run and
# the log writer stores lines, on three connections: a run whose transaction
# read before it wrote was lost ("database is locked") and every point and
# artifact of it refused by its foreign key.
sed -e 's/epochs = 2;/epochs = 1;/' "$T/short.conf" >"$T/one.conf"
for i in 1 2 3 4 5 6; do
	expect 0 loomctl --url "$URL" submit "$T/one.conf" --start --cpu 0.25
done
for id in 4 5 6 7 8 9; do
	wait_state "task-$id" completed
done
for id in 4 5 6 7 8 9; do
	api GET "/api/v1/runs?task=task-$id"
	code 200
	[ "$(py '[(r["task_id"], r["state"]) for r in b["runs"]]')" = "[('task-$id', 'completed')]" ] ||
		fail "task-$id's run: $(head -c 600 "$T/body")"
done
expect 0 loomctl --url "$URL" compare task-4 task-9
! grep -E 'database is locked|FOREIGN KEY|cannot record a run' "$T/loomd.log" ||
	fail "loomd's log shows lost writes"
ok "six tasks started together: six runs, each completed with its points"

# ---------------------------------------------------------------- a damaged model
printf 'XXXX' | dd of="$state/jobs/task-1/best.safetensors" bs=1 seek=200 conv=notrunc 2>/dev/null
api GET "/api/v1/training/tasks/task-1/export?format=onnx"
code 422
grep -q 'changed since the run recorded it' "$T/body" || fail "$(cat "$T/body")"
head -c 100 "$state/jobs/task-3/best.safetensors" >"$T/trunc" && cp "$T/trunc" "$state/jobs/task-3/best.safetensors"
api GET "/api/v1/training/tasks/task-3/export?format=safetensors"
code 422
ok "damaged weights are refused (422) naming the file"

stop_loomd
ok "loomd stopped cleanly"
