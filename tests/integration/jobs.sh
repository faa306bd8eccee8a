#!/bin/bash
# Training tasks end to end through a real loomd on loopback, its sched-local
# scheduler and real loom-worker processes, driven with loomctl and curl:
# submission and its refusals (400, 404, 409), listing with filters and
# paging, a pause and resume through the API that ends with the same bytes
# as an uninterrupted loom-worker run, cancel (pending and running),
# dependencies (waiting, then failing with their dependency), a worker
# killed by a signal (the job fails with the cause; with retries it comes
# back), and kill -9 of loomd itself: the restarted loomd resumes the job
# from its checkpoint to the same bytes.
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
  { instance = "exec"; module = "compute-exec"; }
);
EOF
# a job of ~700 steps (a few seconds on one core), checkpointing every 50
sed -e 's/epochs = 40;/epochs = 15;/' -e 's/checkpoint_every = 200;/checkpoint_every = 50;/' \
	-e 's/patience = 10;/patience = 1000;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/job.conf"
sed -e 's/epochs = 40;/epochs = 1;/' -e 's/stride = 2;/stride = 24;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/tiny.conf"
# a job far longer than the test, to be cancelled: it cannot complete
# before the cancel however slow the machine is
sed -e 's/epochs = 40;/epochs = 1000;/' -e 's/patience = 10;/patience = 1000;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/long.conf"

export LOOM_TEMPLATES=$S/etc/templates
start_loomd "$T/loomd.conf" "$state"
ok "loomd with sched-local started at $URL"

api() { # METHOD PATH [BODY]: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} \
		"$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
wait_step() { # TASK STEP: until the task is past STEP
	local i=0
	while [ "$(field "$1" 't["progress"]["current_step"]')" -le "$2" ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && fail "$1 did not pass step $2 in 60s"
		sleep 0.1
	done
}

# ---------------------------------------------------------------- refusals
api POST /api/v1/training/tasks '{"spec": '
code 400; has "$T/body" '"code":"bad_request"'; has "$T/body" "not valid JSON"
api POST /api/v1/training/tasks '{"spec": {}, "priorty": 3}'
code 400; has "$T/body" "priorty: unknown field (did you mean priority?)"
api POST /api/v1/training/tasks '{"priority": 1}'
code 400; has "$T/body" "spec: missing"
api POST /api/v1/training/tasks '{"spec": {"compute": "nope"}}'
code 400; has "$T/body" 'no compute plugin instance \"nope\"'
api POST /api/v1/training/tasks '{"spec": {"model": {"d_model": "big"}}}'
code 400; has "$T/body" '"code":"invalid"'; has "$T/body" "spec:"
api POST /api/v1/training/tasks '{"spec": {}, "resource_requirements": {"cpu": -1}}'
code 400; has "$T/body" "resource_requirements.cpu"
api POST /api/v1/training/tasks '{"spec": {}, "after": ["task-999"]}'
code 400 # the spec is checked first
api POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["true"]}, "preemptible": true}'
code 400; has "$T/body" "cannot checkpoint, so a preemption would cancel the task"
api GET /api/v1/training/tasks/task-999
code 404; has "$T/body" "there is no task-999"
api GET /api/v1/training/tasks/banana
code 404; has "$T/body" "is not a task id"
api POST /api/v1/training/tasks/task-999/pause
code 404
api GET '/api/v1/training/tasks?status=sleeping'
code 400; has "$T/body" '\"sleeping\" is not a state'
api GET '/api/v1/training/tasks?limit=0'
code 400; has "$T/body" "limit"
expect 2 loomctl --url "$URL" status nope
expect 1 loomctl --url "$URL" submit "$S/etc/loomd.conf"
has "$T/err" "HTTP 400"
ok "malformed JSON, unknown fields, bad specs and values: 400 naming the field; unknown ids: 404"

# ---------------------------------------------------------------- submit, list, cancel pending
expect 0 loomctl --url "$URL" submit "$T/tiny.conf" --name held
has "$T/out" "task-1 pending"
expect 0 loomctl --url "$URL" --json status task-1
has "$T/out" '"waiting_reason": "not started; POST'
api POST /api/v1/training/tasks/task-1/pause
code 409; has "$T/body" "task-1 is pending; only a running task can be paused"
api POST /api/v1/training/tasks/task-1/resume
code 409; has "$T/body" "start it instead"
expect 0 loomctl --url "$URL" cancel task-1
has "$T/out" "task-1 cancelled"
api POST /api/v1/training/tasks/task-1/start
code 409; has "$T/body" "task-1 is cancelled"
api POST /api/v1/training/tasks/task-1/cancel
code 409; has "$T/body" "it has already ended"
ok "a pending task: not started until asked, illegal transitions 409 naming the state, cancel"

expect 0 loomctl --url "$URL" submit "$T/tiny.conf" --start --priority 5
has "$T/out" "task-2"
expect 0 loomctl --url "$URL" watch task-2
has "$T/out" "completed"
[ -s "$state/jobs/task-2/last.safetensors" ] || fail "task-2 wrote no weights"
[ "$(field task-2 '"test_mae" in t["metrics"]')" = True ] || fail "task-2 has no test metrics"
api GET '/api/v1/training/tasks?status=completed'
code 200; has "$T/body" '"total":1'; has "$T/body" '"task_id":"task-2"'
api GET '/api/v1/training/tasks?limit=1&offset=1'
code 200; has "$T/body" '"total":2'; has "$T/body" '"task_id":"task-1"'
expect 0 loomctl --url "$URL" list --status cancelled
has "$T/out" "task-1"; hasnt "$T/out" "task-2"
expect 0 loomctl --url "$URL" logs task-2
has "$T/out" "epoch 1/1: train_loss"; has "$T/out" "completed:"
# ids are shared by every task's entries and loomd's own: page from the first
first=$(curl -s "$URL/api/v1/training/tasks/task-2/logs?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
api GET "/api/v1/training/tasks/task-2/logs?after=$first&limit=1"
code 200
python3 -c 'import json,sys; b = json.load(open(sys.argv[1])); assert len(b["logs"]) == 1 and b["logs"][0]["id"] == b["next"] > int(sys.argv[2]), b' \
	"$T/body" "$first" || fail "after=$first&limit=1 is not the next entry"
expect 0 loomctl --url "$URL" logs task-2 -f
ok "a started task runs in a worker to completed, with test metrics; list filters and pages"

# ---------------------------------------------------------------- pause and resume: same bytes
"$B/host/loom-worker" -c "$T/loomd.conf" --threads 2 --run "$T/job.conf" --out "$T/straight" \
	>"$T/straight.log" 2>&1 || fail "the reference run failed"
expect 0 loomctl --url "$URL" submit "$T/job.conf" --start --cpu 2
wait_step task-3 60
expect 0 loomctl --url "$URL" pause task-3
has "$T/out" "task-3 paused"
step=$(field task-3 't["progress"]["current_step"]')
total=$(field task-3 't["progress"]["total_steps"]')
[ "$step" -lt "$total" ] || fail "task-3 paused at step $step of $total: too late to test"
[ "$(field task-3 '"paused_at" in t')" = True ] || fail "no paused_at"
expect 0 loomctl --url "$URL" resources
has "$T/out" "cpu 2 of 2 free"
expect 0 loomctl --url "$URL" resume task-3
expect 0 loomctl --url "$URL" watch task-3
cmp "$T/straight/last.safetensors" "$state/jobs/task-3/last.safetensors" ||
	fail "paused through the API at step $step and resumed, the weights differ from a straight run"
ok "paused through the API at step $step of $total, resources freed, resumed: byte-identical weights"

# ---------------------------------------------------------------- cancel running; dependencies
expect 0 loomctl --url "$URL" submit "$T/long.conf" --start --cpu 2
expect 0 loomctl --url "$URL" submit "$T/tiny.conf" --start --after task-4
has "$T/out" "task-5 pending"
wait_step task-4 20
[ "$(field task-5 't["status"]')" = pending ] || fail "task-5 ran before task-4 ended"
field task-5 't["waiting_reason"]' >"$T/why"
has "$T/why" "waiting for"; has "$T/why" "4"
expect 0 loomctl --url "$URL" cancel task-4
has "$T/out" "task-4 cancelled"
wait_for task-5 failed 10
has <(field task-5 't["error"]') "task-4, which it runs after, did not complete"
ok "cancel a running task; a task waits for its dependency and fails with it"

# ---------------------------------------------------------------- a worker killed
expect 0 loomctl --url "$URL" submit "$T/long.conf" --start --cpu 2
wait_step task-6 20
pkill -KILL -f "loom-worker --connect ipc://$state/bus.req --job 6 " || fail "no worker for task-6"
wait_for task-6 failed 20
has <(field task-6 't["error"]') "killed by signal 9"
expect 0 loomctl --url "$URL" submit "$T/job.conf" --start --cpu 2 --retries 1
wait_step task-7 60
pkill -KILL -f "loom-worker --connect ipc://$state/bus.req --job 7 " || fail "no worker for task-7"
wait_for task-7 completed 60
[ "$(field task-7 't["attempts"]')" = 2 ] || fail "task-7 did not run twice"
cmp "$T/straight/last.safetensors" "$state/jobs/task-7/last.safetensors" ||
	fail "killed and retried from its checkpoint, task-7's weights differ from a straight run"
expect 0 loomctl --url "$URL" health
ok "a worker killed by SIGKILL fails its task with the cause; with a retry it resumes to the same bytes"

# ---------------------------------------------------------------- kill -9 of loomd
expect 0 loomctl --url "$URL" submit "$T/job.conf" --start --cpu 2
wait_step task-8 60
kill -KILL "$LOOMD_PID"
wait "$LOOMD_BG" 2>/dev/null || true
LOOMD_PID= LOOMD_BG=
start_loomd "$T/loomd.conf" "$state"
wait_for task-8 completed 90
cmp "$T/straight/last.safetensors" "$state/jobs/task-8/last.safetensors" ||
	fail "after kill -9 of loomd, task-8's weights differ from a straight run"
[ "$(field task-2 't["status"]')" = completed ] || fail "task-2 was lost"
expect 0 loomctl --url "$URL" list
for i in 1 2 3 4 5 6 7 8; do has "$T/out" "task-$i "; done
ok "kill -9 of loomd mid-run: restarted, it resumed task-8 to the same bytes; every task is there"

# ---------------------------------------------------------------- the WebSocket monitor
WS=$B/tests/helpers/ws-watch
wsurl=ws://${URL#http://}/api/v1/training/tasks
expect 2 "$WS" "$wsurl/task-999/monitor"
expect 0 loomctl --url "$URL" submit "$T/job.conf" --cpu 2
"$WS" "$wsurl/task-9/monitor" '{"action": "subscribe", "metrics": ["loss"]}' \
	--until-status completed --timeout 90 >"$T/ws1" 2>"$T/ws1.err" &
ws1=$!
"$WS" "$wsurl/task-9/monitor" --until-status completed --timeout 90 >"$T/ws2" 2>"$T/ws2.err" &
ws2=$!
# start task-9 only once both monitors are connected and ws1's subscription
# is in place, or they miss its first state change and metrics
i=0
until grep -qF '"type":"subscribed"' "$T/ws1" && grep -qF '"type":"snapshot"' "$T/ws2"; do
	i=$((i + 1))
	[ $i -gt 300 ] && { cat "$T/ws1.err" "$T/ws2.err" >&2; fail "the monitors of task-9 did not connect in 30s"; }
	sleep 0.1
done
expect 0 loomctl --url "$URL" start task-9
wait $ws1 || { cat "$T/ws1.err" >&2; fail "the subscribed monitor did not see task-9 complete"; }
wait $ws2 || { cat "$T/ws2.err" >&2; fail "the second monitor did not see task-9 complete"; }
has "$T/ws1" '"type":"snapshot"'; has "$T/ws1" '"task_id":"task-9"'
has "$T/ws1" '"type":"subscribed"'
has "$T/ws1" '"type":"state","task_id":"task-9","status":"running"'
has "$T/ws1" '"type":"progress"'; has "$T/ws1" '"total_steps":705'
has "$T/ws1" '"type":"metrics"'; has "$T/ws1" '"loss":'
hasnt "$T/ws1" '"val_loss":'
has "$T/ws2" '"val_loss":'
has "$T/ws2" '"status":"completed"'
ok "two WebSocket monitors of task-9: snapshot, state changes, progress; metrics filtered by subscription"

# ---------------------------------------------------------------- stored configs
body=$(python3 -c 'import json,sys; print(json.dumps({"name": "tiny", "format": "libconfig", "text": open(sys.argv[1]).read(), "comment": "first"}))' "$T/tiny.conf")
api POST /api/v1/training/configs "$body"
code 201; has "$T/body" '"config_id":"config-1"'; has "$T/body" '"version":1'
api POST /api/v1/training/configs "$body"
code 409
api POST /api/v1/training/configs '{"name": "bad", "format": "libconfig", "text": "model = { d_model = ; };"}'
code 400; has "$T/body" "text:1: syntax error"
api POST /api/v1/training/configs/validate '{"spec": {"model": {"d_model": "big"}}}'
code 400; has "$T/body" "spec:"
api PUT /api/v1/training/configs/config-1 "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["text"]=d["text"].replace("epochs = 1;","epochs = 2;"); d["comment"]="two epochs"; print(json.dumps(d))' "$body")"
code 200; has "$T/body" '"version":2'
api GET /api/v1/training/configs/config-1/versions
code 200; has "$T/body" '"comment":"first"'; has "$T/body" '"comment":"two epochs"'
api GET '/api/v1/training/configs/config-1?version=1&format=libconfig'
code 200; has "$T/body" "epochs = 1"
api GET '/api/v1/training/configs/config-1?format=json'
code 200; has "$T/body" '"epochs": 2'
api GET /api/v1/training/templates
code 200; for t in forecast regression classification anomaly incremental failure-fine-tune; do has "$T/body" "\"name\":\"$t\""; done
api GET /api/v1/training/templates/classification
code 200; has "$T/body" '"head":"classification"'
api GET /api/v1/training/templates/..%2Fetc
code 400
api POST /api/v1/training/tasks '{"config_id": "config-1", "config_version": 1, "start": true}'
code 201; has "$T/body" '"config_id":"config-1"'; has "$T/body" '"config_version":1'
wait_for task-10 completed 60
[ "$(field task-10 't["progress"]["epochs"]')" = 1 ] || fail "task-10 did not run version 1 of the config"
api POST /api/v1/training/tasks '{"config_id": "config-9"}'
code 404
api DELETE /api/v1/training/configs/config-1
code 200
api GET /api/v1/training/configs/config-1
code 404
ok "configs: libconfig import, versions, export, validation, templates; a task from a config version"

# ---------------------------------------------------------------- compute-exec
cat >"$T/exec.json" <<'EOF'
{"compute": "exec", "params": {"lr": 0.5},
 "command": ["/bin/sh", "-c", "for i in 1 2 3; do echo \"{\\\"step\\\": $i, \\\"total_steps\\\": 3, \\\"loss\\\": 0.$i}\"; done; echo lr=$LOOM_PARAM_LR"]}
EOF
expect 0 loomctl --url "$URL" submit "$T/exec.json" --start
wait_for task-11 completed 30
[ "$(field task-11 't["metrics"]["loss"]')" = 0.3 ] || fail "task-11's metrics: $(field task-11 't["metrics"]')"
[ "$(field task-11 't["progress"]["current_step"]')" = 3 ] || fail "task-11's progress"
expect 0 loomctl --url "$URL" logs task-11
has "$T/out" "lr=0.5"
api POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["/bin/sh", "-c", "echo broken >&2; exit 3"]}, "start": true}'
code 201
wait_for task-12 failed 30
has <(field task-12 't["error"]') "exited with status 3"
api POST /api/v1/training/tasks '{"spec": {"compute": "exec", "command": ["sleep", "30"]}, "start": true}'
code 201
wait_for task-13 running 30
api POST /api/v1/training/tasks/task-13/pause
code 409; has "$T/body" "cannot pause; cancel it instead"
expect 0 loomctl --url "$URL" cancel task-13
has "$T/out" "task-13 cancelled"
ok "compute-exec: metrics and progress from JSON lines, params as environment, failure cause; no pause, cancel"

if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	cat >"$T/train_torch.py" <<'EOF'
import json, os, torch
torch.manual_seed(0)
x = torch.randn(256, 4); y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=float(os.environ["LOOM_PARAM_LR"]))
steps = int(os.environ["LOOM_PARAM_STEPS"])
for step in range(1, steps + 1):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
    loss.backward(); opt.step()
    print(json.dumps({"step": step, "total_steps": steps, "loss": loss.item()}))
EOF
	api POST /api/v1/training/tasks "{\"spec\": {\"compute\": \"exec\", \"command\": [\"/usr/bin/python3\", \"$T/train_torch.py\"], \"params\": {\"lr\": 0.1, \"steps\": 200}}, \"start\": true}"
	code 201
	wait_for task-14 completed 120
	loss=$(field task-14 't["metrics"]["loss"]')
	python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.01 else 1)" "$loss" ||
		fail "the PyTorch task's final loss is $loss"
	ok "compute-exec ran a PyTorch training script: final loss $loss, tracked as task-14's metric"
else
	echo "# skipped the PyTorch part: /usr/bin/python3 has no torch (./bootstrap installs python3-torch)"
fi

# ---------------------------------------------------------------- concurrent submissions
# Submissions are written in groups (one transaction, a savepoint each):
# refused ones among them refuse nothing else.
pids=
before=$(curl -s "$URL/api/v1/training/tasks?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
for i in $(seq 1 24); do
	if [ $((i % 3)) = 0 ]; then after='"after": ["task-99999"], '; else after=; fi
	curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' --data-binary \
		"{$after\"name\": \"burst-$i\", \"spec\": {\"compute\": \"exec\", \"command\": [\"true\"]}}" \
		"$URL/api/v1/training/tasks" >"$T/burst-$i" &
	pids="$pids $!"
done
wait $pids # not loomd
[ "$(cat "$T"/burst-* | sort | uniq -c | tr -s ' ' | sed 's/^ //' | tr '\n' ' ')" = "16 201 8 404 " ] ||
	fail "24 concurrent submissions, 8 of them after a missing task: got $(cat "$T"/burst-* | sort | uniq -c | tr '\n' ' ')"
api GET '/api/v1/training/tasks?limit=100'
code 200; has "$T/body" "\"total\":$((before + 16))"
n=$(python3 -c 'import json,sys; print(len({t["name"] for t in json.load(open(sys.argv[1]))["tasks"] if t["name"].startswith("burst-")}))' "$T/body")
[ "$n" = 16 ] || fail "$n distinct burst tasks stored, expected 16"
ok "24 concurrent submissions: 16 stored, 8 refused (404) without affecting the others"

# ---------------------------------------------------------------- stopped early
# A task that completes before its planned steps (early stopping) is done:
# 100 %, and it says where it stopped, not "completed 40.0 %" for ever.
api POST /api/v1/training/tasks '{"name": "early", "start": true, "spec": {"compute": "exec", "command": ["/bin/sh", "-c", "echo \"{\\\"step\\\": 480, \\\"total_steps\\\": 1200, \\\"epoch\\\": 12, \\\"epochs\\\": 30}\""]}}'
code 201
early=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["task_id"])' "$T/body")
wait_for "$early" completed 30
[ "$(field "$early" 't["progress"]["percentage"], t["progress"].get("stopped_early")')" = "100.0 True" ] ||
	fail "$early's progress: $(field "$early" 't["progress"]')"
expect 0 loomctl --url "$URL" status "$early"
has "$T/out" "stopped early at epoch 12 of 30 (step 480 of 1200)"
expect 0 loomctl --url "$URL" list
grep "$early" "$T/out" | grep -q "100.0%" || fail "list: $(grep "$early" "$T/out")"
ok "a task that stopped early: 100 %, stopped early at epoch 12 of 30"

stop_loomd
ok "loomd stopped cleanly"
