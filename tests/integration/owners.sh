#!/bin/bash
# Who sees what, end to end: users alice and bob (role user) and vic
# (viewer); alice owns a config, a task made from it, the task's run, the
# model it registers, an API run, its logs and exports; an admin owns an
# alert rule, which fires on alice's task.  For each kind: bob gets 404
# (never 403) and does not see it in lists; shared for reading, bob sees
# it and a change is 403; shared for writing, bob may change it; vic never
# changes anything (403).  Non-admins never read loomd's own log lines.
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
  { instance = "csv"; module = "exporter-csv"; }
);
EOF

# ---------------------------------------------------------------- users and tokens
# made by the test's admin (lib.sh's LOOM_TOKEN, from the Unix socket)
start_loomd "$T/loomd.conf" "$state"
[ -n "${LOOM_TOKEN:-}" ] || fail "lib.sh made no admin token"
expect 0 loomctl --url "$URL" users add adm --role admin
expect 0 loomctl --url "$URL" users add alice
expect 0 loomctl --url "$URL" users add bob
expect 0 loomctl --url "$URL" users add vic --role viewer
declare -A TOKEN
for u in adm alice bob vic; do
	TOKEN[$u]=$(loomctl --url "$URL" tokens create --user $u -q)
	case ${TOKEN[$u]} in loom_*) ;; *) fail "no token for $u: ${TOKEN[$u]}" ;; esac
done
ok "tokens for adm, alice, bob and vic"

api() { # USER METHOD PATH [BODY]: status in $T/code, body in $T/body
	command curl -s -o "$T/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer ${TOKEN[$1]}" \
		${4:+-H 'Content-Type: application/json' --data-binary "$4"} "$URL$3" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "${2:-}HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }
# sees USER PATH EXPR: EXPR (over the list b) is true for USER's GET PATH
sees() {
	api "$1" GET "$2"
	code 200 "$1 GET $2: "
	[ "$(py "$3")" = True ] || fail "$1 GET $2: not $3: $(cat "$T/body")"
}
# same404 USER PATH ID OTHER: USER's 404 for PATH/ID reads as the one for
# PATH/OTHER, an object that does not exist
same404() {
	local a b
	api "$1" GET "$2/$3"
	code 404 "$1 GET $2/$3: "
	a=$(py 'b["error"]["message"]' | sed -e "s/$3/ID/g" -e "s/${3//%20/ }/ID/g")
	api "$1" GET "$2/$4"
	code 404 "$1 GET $2/$4: "
	b=$(py 'b["error"]["message"]' | sed -e "s/$4/ID/g" -e "s/${4//%20/ }/ID/g")
	[ "$a" = "$b" ] || fail "another user's object answers \"$a\", a missing one \"$b\""
}
share() { # KIND ID USER LEVEL, as alice
	api alice POST /api/v1/shares "{\"kind\": \"$1\", \"id\": \"$2\", \"user\": \"$3\", \"level\": \"$4\"}"
	code 200 "share $1 $2 with $3 ($4): "
}

# ---------------------------------------------------------------- configs
sed -e 's/epochs = 40;/epochs = 1;/' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/job.conf"
body=$(/usr/bin/python3 -c "import json,sys; print(json.dumps({'name': 'alice-temps', 'text': open('$T/job.conf').read(), 'format': 'libconfig'}))")
api alice POST /api/v1/training/configs "$body"
code 201 "alice creates a config: "
[ "$(py 'b["config_id"]')" = config-1 ] || fail "config: $(cat "$T/body")"
[ "$(py 'b["owner"]')" = alice ] || fail "config owner: $(cat "$T/body")"

api bob GET /api/v1/training/configs/config-1
code 404 "bob reads alice's config: "
api bob GET /api/v1/training/configs/config-1/versions
code 404 "bob reads alice's config's versions: "
api bob PUT /api/v1/training/configs/config-1 "$body"
code 404 "bob changes alice's config: "
api bob DELETE /api/v1/training/configs/config-1
code 404 "bob deletes alice's config: "
sees bob /api/v1/training/configs 'b["total"] == 0 and b["configs"] == []'
same404 bob /api/v1/training/configs config-1 config-99
sees adm /api/v1/training/configs 'b["total"] == 1'
sees alice /api/v1/training/configs '[c["config_id"] for c in b["configs"]] == ["config-1"]'
# a task from it: only a config one may read
api bob POST /api/v1/training/tasks '{"config_id": "config-1"}'
code 404 "bob submits alice's config: "
ok "configs: bob gets 404 for alice's config, lists none, and cannot submit it"

share config config-1 bob read
share config config-1 vic write
sees bob /api/v1/training/configs '[c["config_id"] for c in b["configs"]] == ["config-1"]'
api bob GET /api/v1/training/configs/config-1
code 200 "bob reads the shared config: "
api bob PUT /api/v1/training/configs/config-1 "$body"
code 403 "bob changes a config shared for reading: "
has "$T/body" "for reading only"
api vic PUT /api/v1/training/configs/config-1 "$body"
code 403 "vic changes a config shared for writing: "
api vic GET /api/v1/training/configs/config-1
code 200 "vic reads a shared config: "
share config config-1 bob write
api bob PUT /api/v1/training/configs/config-1 "$body"
code 200 "bob changes a config shared for writing: "
[ "$(py 'b["version"]')" = 2 ] || fail "config: $(cat "$T/body")"
[ "$(py 'b["owner"]')" = alice ] || fail "the owner changed: $(cat "$T/body")"
api alice DELETE "/api/v1/shares/config/config-1/bob"
code 200 "alice stops sharing: "
api bob GET /api/v1/training/configs/config-1
code 404 "bob after the share is gone: "
ok "configs: shared for reading 200 and 403 to a change, for writing 200; vic 403"

# ---------------------------------------------------------------- a task of alice's
api alice POST /api/v1/training/tasks '{"config_id": "config-1", "name": "alice temps", "start": true, "resource_requirements": {"cpu": 1}}'
code 201 "alice submits her config: "
task=$(py 'b["task_id"]')
[ "$task" = task-1 ] || fail "task: $(cat "$T/body")"
i=0
while :; do
	api alice GET /api/v1/training/tasks/$task
	s=$(py 'b["status"]')
	[ "$s" = completed ] && break
	case $s in failed|cancelled) fail "$task ended $s: $(cat "$T/body")" ;; esac
	i=$((i + 1))
	[ $i -gt 1800 ] && fail "$task is $s after 180 s"
	sleep 0.1
done
ok "alice's task from her config completed"

# ---------------------------------------------------------------- runs
api alice GET "/api/v1/runs?task=$task"
code 200
run=$(py 'b["runs"][0]["id"]')
[ "$(py 'b["runs"][0]["user"]')" = alice ] || fail "the task's run is not alice's: $(cat "$T/body")"
api alice POST /api/v1/runs '{"name": "notebook", "params": {"lr": 0.1}}'
code 201 "alice makes a run: "
arun=$(py 'b["id"]')
[ "$(py 'b["user"]')" = alice ] || fail "API run: $(cat "$T/body")"
api alice POST /api/v1/runs/$arun/metrics '{"points": [{"name": "loss", "step": 1, "value": 0.5}]}'
code 202 "alice posts metrics: "

for r in $run $arun; do
	api bob GET /api/v1/runs/$r
	code 404 "bob reads $r: "
	api bob GET /api/v1/runs/$r/metrics
	code 404 "bob reads $r's metrics: "
	api bob POST /api/v1/runs/$r/tags '{"k": "v"}'
	code 404 "bob tags $r: "
	api bob GET "/api/v1/runs/$r/export?format=csv"
	code 404 "bob exports $r: "
done
api bob POST /api/v1/runs/$arun/metrics '{"points": [{"name": "loss", "step": 2, "value": 0.4}]}'
code 404 "bob posts metrics to alice's run: "
api bob GET "/api/v1/runs/compare?ids=$run,$arun"
code 404 "bob compares alice's runs: "
sees bob /api/v1/runs 'b["runs"] == []'
same404 bob /api/v1/runs $arun run-99
sees bob "/api/v1/runs?task=$task" 'b["runs"] == []'
api bob GET "/api/v1/runs/best?metric=loss"
code 404 "bob asks for the best of alice's runs: "
sees adm /api/v1/runs 'len(b["runs"]) == 2'
sees alice "/api/v1/runs/compare?ids=$run,$arun" 'len(b["runs"]) == 2'
ok "runs: bob gets 404 for alice's runs (task and API), lists none, ranks none"

# a run shared, and the task's run through its task
share run $arun bob read
sees bob /api/v1/runs "[r['id'] for r in b['runs']] == ['$arun']"
api bob GET /api/v1/runs/$arun
code 200 "bob reads a run shared for reading: "
api bob POST /api/v1/runs/$arun/tags '{"k": "v"}'
code 403 "bob tags a run shared for reading: "
share run $arun bob write
api bob POST /api/v1/runs/$arun/tags '{"k": "v"}'
code 200 "bob tags a run shared for writing: "
api bob POST /api/v1/runs/$arun/end '{"state": "completed"}'
code 200 "bob ends a run shared for writing: "
share task $task bob read
api bob GET /api/v1/runs/$run
code 200 "bob reads the run of a task shared with him: "
sees bob "/api/v1/runs?task=$task" "[r['id'] for r in b['runs']] == ['$run']"
api bob POST /api/v1/runs/$run/tags '{"k": "v"}'
code 403 "bob tags the run of a task shared for reading: "
share run $run vic write
api vic POST /api/v1/runs/$run/tags '{"k": "v"}'
code 403 "vic tags a run shared for writing: "
api vic GET /api/v1/runs/$run
code 200 "vic reads a shared run: "
ok "runs: shared as a run or through the task, read 200, change 403; shared for writing 200; vic 403"

# ---------------------------------------------------------------- models
api alice GET /api/v1/models
code 200
[ "$(py 'b["total"]')" = 1 ] || fail "models: $(cat "$T/body")"
[ "$(py 'b["models"][0]["owner"]')" = alice ] || fail "model owner: $(cat "$T/body")"
api bob GET "/api/v1/models/alice%20temps"
code 404 "bob reads alice's model: "
api bob GET "/api/v1/models/alice%20temps/versions/1"
code 404 "bob reads alice's model's version: "
api bob POST "/api/v1/models/alice%20temps/aliases/production" '{"version": 1}'
code 404 "bob promotes alice's model: "
sees bob /api/v1/models 'b["total"] == 0'
same404 bob /api/v1/models "alice%20temps" "nobody%20temps"
share model "alice temps" bob read
sees bob /api/v1/models '[m["name"] for m in b["models"]] == ["alice temps"]'
api bob GET "/api/v1/models/alice%20temps/versions/1"
code 200 "bob reads a model shared for reading: "
api bob POST "/api/v1/models/alice%20temps/aliases/production" '{"version": 1}'
code 403 "bob promotes a model shared for reading: "
share model "alice temps" bob write
api bob POST "/api/v1/models/alice%20temps/aliases/production" '{"version": 1}'
code 200 "bob promotes a model shared for writing: "
share model "alice temps" vic write
api vic POST "/api/v1/models/alice%20temps/aliases/production/rollback"
code 403 "vic rolls back a model shared for writing: "
ok "models: 404, none listed; shared for reading 403 to promote, for writing 200; vic 403"

# ---------------------------------------------------------------- logs and exports
# (task-1 is shared with bob for reading from here on: a second task is not)
api alice POST /api/v1/training/tasks '{"config_id": "config-1", "name": "alice quiet"}'
code 201 "alice submits a second task: "
task2=$(py 'b["task_id"]')
api bob GET /api/v1/training/tasks/$task2/logs
code 404 "bob reads alice's task's log: "
api bob GET "/api/v1/training/tasks/$task2/export?format=csv"
code 404 "bob exports alice's task: "
api bob GET "/api/v1/logs?job=$task2"
code 404 "bob asks the log for alice's task: "
api bob GET "/api/v1/logs?job=host"
code 403 "bob asks for loomd's own log: "
has "$T/body" "loomd's own log is for admins"
api vic GET "/api/v1/logs?job=host"
code 403 "vic asks for loomd's own log: "
api bob GET /api/v1/training/tasks/$task/logs
code 200 "bob reads a shared task's log: "
[ "$(py 'len(b["logs"]) > 0')" = True ] || fail "no log lines for $task: $(cat "$T/body")"
api bob GET /api/v1/logs
code 200 "bob reads the log: "
[ "$(py "all(l['job'] == '$task' for l in b['logs']) and len(b['logs']) > 0 and b['only'] == 'tasks'")" = True ] ||
	fail "bob's log holds more than $task: $(head -c 2000 "$T/body")"
api adm GET "/api/v1/logs?job=host"
code 200 "the admin reads loomd's own log: "
[ "$(py 'len(b["logs"]) > 0')" = True ] || fail "no loomd lines for the admin"
api alice GET /api/v1/logs
[ "$(py "all(l['job'] in ('$task', '$task2') for l in b['logs'])")" = True ] ||
	fail "alice's log holds more than her tasks: $(head -c 2000 "$T/body")"
api bob GET "/api/v1/training/tasks/$task/export?format=csv"
code 200 "bob exports a shared task: "
if "$LOOMCTL" --help 2>&1 | grep -q -- --token; then
	LOOM_TOKEN=${TOKEN[bob]} expect 0 loomctl --url "$URL" logs --host --limit 5
	has "$T/err" "loomd's own lines are for admins"
else
	echo "# this loomctl sends no token: loomctl logs --host is not checked"
fi
ok "logs and exports: another's task 404, loomd's own lines 403, the rest filtered to one's tasks"

# ---------------------------------------------------------------- alert rules and alerts
rule_body='{"name": "alice-done", "condition": {"kind": "metric_above", "metric": "train_loss", "threshold": -1e9}, "job": "'$task'", "actions": [{"type": "bus"}]}'
api alice POST /api/v1/alerts/rules "$rule_body"
code 403 "alice makes an alert rule: "
api adm POST /api/v1/alerts/rules "$rule_body"
code 201 "the admin makes an alert rule: "
rule=$(py 'b["id"]')
[ "$(py 'b["owner"]')" = adm ] || fail "rule owner: $(cat "$T/body")"
api bob GET /api/v1/alerts/rules/$rule
code 404 "bob reads the admin's rule: "
sees bob /api/v1/alerts/rules 'b["rules"] == []'
same404 bob /api/v1/alerts/rules $rule 99
api adm POST /api/v1/shares "{\"kind\": \"alert-rule\", \"id\": \"rule-$rule\", \"user\": \"bob\", \"level\": \"write\"}"
code 200 "the admin shares the rule: "
api bob GET /api/v1/alerts/rules/$rule
code 200 "bob reads a shared rule: "
api bob PUT /api/v1/alerts/rules/$rule '{"enabled": false}'
code 403 "bob changes a rule (admins only): "
ok "alert rules: admins make and change them; others see only those shared with them"

# fire it: a task of alice's shared with vic only reports loss
api adm DELETE "/api/v1/shares/alert-rule/rule-$rule/bob"
code 200 "the admin stops sharing the rule: "
api adm PUT /api/v1/alerts/rules/$rule "{\"job\": \"$task2\"}"
code 200 "the admin points the rule at $task2: "
api alice POST /api/v1/training/tasks/$task2/start
code 200 "alice starts $task2: "
api alice POST /api/v1/shares "{\"kind\": \"task\", \"id\": \"$task2\", \"user\": \"vic\", \"level\": \"read\"}"
code 200
i=0
while :; do
	api adm GET "/api/v1/alerts?rule=$rule"
	[ "$(py 'b["total"] > 0')" = True ] && break
	i=$((i + 1))
	[ $i -gt 600 ] && fail "the rule did not fire within 60 s: $(cat "$T/body")"
	sleep 0.1
done
alert=$(py 'b["alerts"][0]["id"]')
sees alice /api/v1/alerts "$alert in [a['id'] for a in b['alerts']]"
api alice GET /api/v1/alerts/$alert
code 200 "alice reads an alert about her task: "
sees vic /api/v1/alerts "$alert in [a['id'] for a in b['alerts']]"
sees bob /api/v1/alerts "b['alerts'] == [] and b['total'] == 0"
api bob GET /api/v1/alerts/$alert
code 404 "bob reads an alert about alice's task: "
ok "fired alerts: seen by the task's owner and whom the task is shared with, 404 for others"

# ---------------------------------------------------------------- the resource pool
api bob GET /api/v1/resources
code 200
[ "$(py "all(j['task_id'] == '$task' for j in b['jobs'])")" = True ] ||
	fail "bob sees others' tasks in the pool: $(cat "$T/body")"
ok "the resource pool lists only the tasks one may see"

api alice POST /api/v1/training/tasks/$task2/cancel
stop_loomd
ok "loomd stopped cleanly"
