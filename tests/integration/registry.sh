#!/bin/bash
# The model registry end to end through a real loomd and real loom-worker
# processes: three short compute-transformer tasks with the same name and
# different learning rates become versions 1-3 of one model; the
# best-test_mae tag sits on the version whose task had the lowest test MAE;
# promote v1 then v3 to production, roll back to v1, and a second rollback
# is refused (409); a compute-exec task registers nothing; the model's
# files survive deleting the task's directory; loomctl models list, show,
# promote and rollback, with --json; unknown names and bad aliases.
# Headline metrics: best- tags only for the head's headline metrics (five
# for a forecaster, three for a seattle-weather classifier, not its 80-odd
# per-class figures and confusion cells), "headline" in the head's order,
# loomctl models show and compare showing those first and the classifier's
# confusion matrix as a matrix.
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
  { instance = "classification"; module = "head-classification"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

api() { # METHOD PATH [BODY]: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} \
		"$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }

# ---------------------------------------------------------------- three versions
i=0
for lr in 2e-3 5e-4 1e-2; do
	i=$((i + 1))
	# Transformers (kind = transformer): auto would keep the same ridge
	# model whatever the learning rate, and versions of equal test MAE
	# have no single best
	sed -e 's/epochs = 40;/epochs = 2;/' -e "s/lr = 2e-3;/lr = $lr;/" \
		-e 's/loss = "mae";/loss = "mae"; kind = "transformer";/' \
		"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/job$i.conf"
	grep -q "lr = $lr;" "$T/job$i.conf" || fail "the job file has no lr line to change"
	expect 0 loomctl --url "$URL" submit "$T/job$i.conf" --start --cpu 1 --name "reg temps"
done
for t in task-1 task-2 task-3; do
	wait_for $t completed 120
done
# asked right after the tasks are seen completed: the versions are there
api GET /api/v1/models
code 200
[ "$(py 'b["total"]')" = 1 ] || fail "models: $(cat "$T/body")"
[ "$(py 'b["models"][0]["name"]')" = "reg temps" ] || fail "models: $(cat "$T/body")"
[ "$(py 'b["models"][0]["versions"]')" = 3 ] || fail "models: $(cat "$T/body")"
[ "$(py 'b["models"][0]["latest_version"]')" = 3 ] || fail "models: $(cat "$T/body")"
ok "three completed tasks became versions 1-3 of \"reg temps\""

# each version is its task, with the task's final metrics
api GET "/api/v1/models/reg%20temps"
code 200
[ "$(py '[v["version"] for v in b["versions"]]')" = "[3, 2, 1]" ] || fail "$(cat "$T/body")"
best_task=
best=
for t in 1 2 3; do
	mae=$(field task-$t 't["metrics"]["test_mae"]')
	vmae=$(py "[v for v in b['versions'] if v['task_id'] == 'task-$t'][0]['metrics']['test_mae']")
	[ "$mae" = "$vmae" ] || fail "task-$t's test_mae $mae, its version's $vmae"
	if [ -z "$best" ] || /usr/bin/python3 -c "import sys; sys.exit(0 if $mae < $best else 1)"; then
		best=$mae best_task=task-$t
	fi
done
tagged=$(py '[v["task_id"] for v in b["versions"] if "best-test_mae" in v["tags"]]')
[ "$tagged" = "['$best_task']" ] || fail "best-test_mae is on $tagged; the lowest test MAE ($best) is $best_task's"
ok "best-test_mae is on $best_task's version (test MAE $best)"
[ "$(py 'sorted(b["tags"])')" = "['best-test_loss', 'best-test_mae', 'best-test_mse', 'best-test_rmse', 'best-test_smape']" ] ||
	fail "the tags are not the forecast head's headline metrics: $(py 'sorted(b["tags"])')"
[ "$(py 'b["versions"][0]["headline"]')" = "['test_loss', 'test_mae', 'test_rmse', 'test_mse', 'test_smape']" ] ||
	fail "the version's headline is not the head's order: $(py 'b["versions"][0]["headline"]')"
ok "best- tags only for the forecast head's headline metrics, listed in its order"

# the version's files, lineage and spec: the three tasks run at once, so
# which of them became version 2 is not known; look task-2's version up by
# its task_id
v2=$(py "[v['version'] for v in b['versions'] if v['task_id'] == 'task-2']")
case $v2 in \[[1-3]\]) v2=${v2#[}; v2=${v2%]} ;; *) fail "task-2's versions: $v2" ;; esac
api GET "/api/v1/models/reg%20temps/versions/$v2"
code 200
[ "$(py 'b["task_id"]')" = task-2 ] || fail "$(cat "$T/body")"
[ "$(py 'b["version"]')" = "$v2" ] || fail "$(cat "$T/body")"
[ "$(py 'sorted(f["name"] for f in b["files"])')" = \
	"['best.safetensors', 'continual.safetensors', 'last.safetensors', 'metrics.json', 'spec.json']" ] || fail "$(cat "$T/body")"
[ "$(py 'b["spec"]["train"]["lr"]')" = 0.0005 ] || fail "spec: $(py 'b["spec"]')"
[ "$(py 'b["lineage"]["task_id"]')" = task-2 ] || fail "lineage: $(py 'b["lineage"]')"
# which model the version is: the one its task kept, as its metrics.json says
[ "$(py 'b["lineage"]["model"]["kind"]')" = "$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['model']['kind'])" "$state/jobs/task-2/metrics.json")" ] ||
	fail "the version's model: $(py 'b["lineage"]')"
vdir=$(py 'b["dir"]')
case $vdir in "$state"/models/reg_temps/v$v2) ;; *) fail "version $v2's directory is $vdir" ;; esac
cmp "$vdir/best.safetensors" "$state/jobs/task-2/best.safetensors" || fail "best.safetensors differs"
rm -rf "$state/jobs/task-2"
api GET "/api/v1/models/reg%20temps/versions/v$v2"
code 200
[ "$(py 'b["task_id"]')" = task-2 ] || fail "$(cat "$T/body")"
[ "$(py '[f["bytes"] > 0 for f in b["files"]]')" = "[True, True, True, True, True]" ] || fail "$(cat "$T/body")"
[ -s "$vdir/best.safetensors" ] || fail "the model's weights went with the task's directory"
ok "version $v2 keeps its own files (weights, the continual record, metrics, spec) after task-2's directory is deleted"

# ---------------------------------------------------------------- aliases
expect 0 loomctl --url "$URL" models promote "reg temps" 1
has "$T/out" "production → version 1"
api POST "/api/v1/models/reg%20temps/aliases/production" '{"version": 3}'
code 200
[ "$(py 'b["previous"]')" = 1 ] || fail "$(cat "$T/body")"
api GET "/api/v1/models/reg%20temps/aliases/production"
code 200
[ "$(py 'b["version"]')" = 3 ] || fail "$(cat "$T/body")"
expect 0 loomctl --url "$URL" models rollback "reg temps"
has "$T/out" "production → version 1 (was 3), rollback"
api GET "/api/v1/models/reg%20temps/versions/production"
code 200
[ "$(py 'b["version"]')" = 1 ] || fail "$(cat "$T/body")"
expect 1 loomctl --url "$URL" models rollback "reg temps" --alias production
has "$T/err" "HTTP 409"
has "$T/err" "has no earlier version to roll back to"
api POST "/api/v1/models/reg%20temps/aliases/production/rollback"
code 409
[ "$(py 'b["error"]["code"]')" = conflict ] || fail "$(cat "$T/body")"
expect 0 loomctl --url "$URL" --json models promote "reg temps" v2 --alias staging
[ "$(/usr/bin/python3 -c "import json; print(json.load(open('$T/out'))['alias'])")" = staging ] ||
	fail "promote --json: $(cat "$T/out")"
ok "promote v1, promote v3, rollback to v1, a second rollback refused (409); staging → v2"

# ---------------------------------------------------------------- refusals
api GET /api/v1/models/nope
code 404
has "$T/body" 'there is no model \"nope\"'
api GET "/api/v1/models/reg%20temps/versions/9"
code 404
api GET "/api/v1/models/reg%20temps/aliases/canary"
code 404
api POST "/api/v1/models/reg%20temps/aliases/Prod!" '{"version": 1}'
code 400
api POST "/api/v1/models/reg%20temps/aliases/production" '{"version": 12}'
code 404
api POST "/api/v1/models/reg%20temps/aliases/production" 'not json'
code 400
expect 2 loomctl --url "$URL" models promote "reg temps"
expect 1 loomctl --url "$URL" models show nope
ok "unknown model, version and alias are 404; a bad alias or body 400; bad usage exits 2"

# ---------------------------------------------------------------- the CLI
expect 0 loomctl --url "$URL" models list
has "$T/out" "reg temps"
has "$T/out" "production=1"
has "$T/out" "staging=2"
expect 0 loomctl --url "$URL" models show "reg temps"
has "$T/out" "best-test_mae"
has "$T/out" "task-3"
expect 0 loomctl --url "$URL" models show "reg temps" production
has "$T/out" "version:  1"
has "$T/out" "best.safetensors"
expect 0 loomctl --url "$URL" --json models list
/usr/bin/python3 -c "import json; assert json.load(open('$T/out'))['models'][0]['versions'] == 3" ||
	fail "models list --json: $(cat "$T/out")"
ok "loomctl models list and show, in text and JSON"

# ---------------------------------------------------------------- compute-exec
api POST /api/v1/training/tasks '{"name": "exec-model", "spec": {"compute": "exec", "command": ["true"]}, "start": true}'
code 201
wait_for task-4 completed 30
api GET /api/v1/models
[ "$(py 'b["total"]')" = 1 ] || fail "a compute-exec task registered a model: $(cat "$T/body")"
api GET /api/v1/models/exec-model
code 404
ok "a compute-exec task (no best.safetensors) registers nothing"

# ---------------------------------------------------------------- a classifier's headline
sed -e 's/epochs = [0-9]*;/epochs = 2;/' "$S/etc/jobs/seattle-weather-classify.conf" >"$T/weather.conf"
for i in 1 2; do
	expect 0 loomctl --url "$URL" submit "$T/weather.conf" --start --cpu 1 --name weather
done
wait_for task-5 completed 120
wait_for task-6 completed 120
api GET /api/v1/models/weather
code 200
[ "$(py 'sorted(b["tags"])')" = "['best-test_accuracy', 'best-test_loss', 'best-test_macro_f1']" ] ||
	fail "a classifier's tags are not its headline metrics: $(py 'sorted(b["tags"])')"
[ "$(py 'len(b["versions"][0]["metrics"]) > 50')" = True ] ||
	fail "the version lost its detail metrics: $(py 'b["versions"][0]["metrics"]')"
api GET /api/v1/models/weather/versions/1
code 200
[ "$(py 'b["headline"]')" = "['test_loss', 'test_accuracy', 'test_macro_f1']" ] ||
	fail "headline: $(py 'b["headline"]')"
[ "$(py '[t["name"] for t in b["details"]]')" = "['per_class', 'confusion']" ] ||
	fail "details: $(py 'b["details"]')"
[ "$(py 'b["details"][1]["rows"]')" = "['drizzle', 'fog', 'rain', 'snow', 'sun']" ] ||
	fail "the confusion matrix's rows: $(py 'b["details"][1]')"
[ "$(py 'b["details"][1]["cells"][1][4]')" = "test_confusion.fog.sun" ] ||
	fail "the confusion matrix's cells: $(py 'b["details"][1]')"
hasnt "$T/body" '@display'
ok "a classifier's versions: three best- tags (headline), the confusion matrix declared"

expect 0 loomctl --url "$URL" models show weather 1
has "$T/out" "tags:     best-"
# the headline lines in the head's order, the rest left out
/usr/bin/python3 - "$T/out" <<'PY' || fail "models show: $(cat "$T/out")"
import sys
lines = open(sys.argv[1]).read().splitlines()
names = [l.split()[0] if not l.startswith("metrics:") else l.split()[1]
         for l in lines if l.startswith("metrics:") or (l.startswith("          test_"))]
assert names == ["test_loss", "test_accuracy", "test_macro_f1"], names
assert not any("test_confusion" in l for l in lines), "a confusion cell is listed"
# the matrix: a header of the classes, then one row per true class of five counts
head = [i for i, l in enumerate(lines) if l.strip().startswith("true \\ predicted")]
assert head, "no confusion matrix"
h = lines[head[0]].split()
assert h[3:] == ["drizzle", "fog", "rain", "snow", "sun"], h
for k, c in enumerate(["drizzle", "fog", "rain", "snow", "sun"]):
    row = lines[head[0] + 1 + k].split()
    assert row[0] == c and len(row) == 6 and all(x.isdigit() for x in row[1:]), row
PY
has "$T/out" "more: --all"
expect 0 loomctl --url "$URL" models show weather 1 --all
has "$T/out" "test_confusion.fog.sun"
expect 0 loomctl --url "$URL" models compare weather 1 2
has "$T/out" "test_macro_f1"
hasnt "$T/out" "test_precision."
expect 0 loomctl --url "$URL" models compare weather 1 2 --all
has "$T/out" "test_precision.fog"
expect 2 loomctl --url "$URL" models compare weather 1
# the run shows the same: headline lines, the per-class table, the matrix
expect 0 loomctl --url "$URL" runs show task-5
/usr/bin/python3 - "$T/out" <<'PY' || fail "runs show: $(cat "$T/out")"
import sys
lines = open(sys.argv[1]).read().splitlines()
m = [i for i, l in enumerate(lines) if l.startswith("  metrics ")][0]
assert [lines[m + k].split()[-2] for k in range(3)] == ["test_loss", "test_accuracy", "test_macro_f1"], lines[m:m + 3]
pc = [i for i, l in enumerate(lines) if l.strip().startswith("Per class (test")][0]
assert lines[pc + 1].split() == ["class", "precision", "recall", "f1"], lines[pc + 1]
cm = [i for i, l in enumerate(lines) if l.strip().startswith("true \\ predicted")][0]
assert lines[cm].split()[3:] == ["drizzle", "fog", "rain", "snow", "sun"], lines[cm]
assert not any(l.strip().startswith("test_confusion") for l in lines), "a confusion cell is listed"
PY
has "$T/out" "--all lists them"
expect 0 loomctl --url "$URL" runs show task-5 --all
has "$T/out" "test_confusion.fog.sun"
expect 0 loomctl --url "$URL" status task-5
has "$T/out" "test_macro_f1"
hasnt "$T/out" "test_confusion"
has "$T/out" "per-class figures and the like: loomctl runs show task-5"
expect 0 loomctl --url "$URL" runs list --name weather
has "$T/out" "test_loss"
hasnt "$T/out" "test_confusion"
ok "loomctl models show and compare, runs show and list: headline metrics first, the confusion matrix as a matrix"

# the registry survives a restart
stop_loomd
start_loomd "$T/loomd.conf" "$state"
api GET "/api/v1/models/reg%20temps/aliases/production"
code 200
[ "$(py 'b["version"]')" = 1 ] || fail "$(cat "$T/body")"
stop_loomd
ok "versions and aliases are still there after a restart"
