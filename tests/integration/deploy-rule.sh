#!/bin/bash
# The deployment rule and train.init through a real loomd and real
# loom-worker processes, on Debian's seattle-weather (python3-vega-datasets):
# - train.init: a client's model_dir, alias with version, a bad version,
#   an unknown key are 400 naming the field; a model that does not exist,
#   or that the caller may not read, 404 with predict's words; a good one
#   is stored with the version's directory and number (when the engine of
#   this tree knows train.init);
# - a rule (loomctl models deploy) on test_accuracy: a weak version (1
#   epoch at lr 1e-6) promoted by hand, then a trained one judged against
#   it by the registered figures, the decision's reason naming both;
#   better_by that no accuracy can reach keeps the alias; with approval
#   on an unset alias the version waits, shows as pending in loomctl
#   models show, is approved by alice (409 the second time) and a reader
#   may not approve; bad rule fields are 400 with a did-you-mean;
# - the check: production moved by hand to the weak version, a check on
#   labelled 2015 predicts it and the version before (two batch
#   prediction tasks), and rolls back when the earlier one is better by
#   the rule (the figures checked against the tasks' predictions.json);
#   a file without labels fails the check saying why.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
CSV=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv
[ -r "$CSV" ] || {
	echo "SKIP: $CSV is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

mkdir -p "$T/data"
head -1 "$CSV" >"$T/data/train.csv"
grep -E '^201[234]/' "$CSV" >>"$T/data/train.csv"
head -1 "$CSV" >"$T/data/2015.csv"
grep -E '^2015/' "$CSV" >>"$T/data/2015.csv"
# the same rows without the label column
cut -d, -f1-5 "$T/data/2015.csv" >"$T/data/2015-unlabelled.csv"
head -1 "$T/data/2015-unlabelled.csv" | grep -q weather && fail "the unlabelled file kept its labels"

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T/data" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

for u in alice bob carol; do
	expect 0 loomctl --url "$URL" users add $u
done
declare -A TOKEN
for u in alice bob carol; do
	TOKEN[$u]=$(loomctl --url "$URL" tokens create --user $u -q)
done
as() { # USER METHOD PATH [BODY]: status in $T/code, body in $T/body
	command curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer ${TOKEN[$1]}" \
		-X "$2" ${4:+-H 'Content-Type: application/json' --data-binary "$4"} "$URL$3" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }
says() { # TEXT: in the error's message (else anywhere in the body)
	/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))
t = b["error"]["message"] if isinstance(b, dict) and "error" in b else json.dumps(b)
sys.exit(sys.argv[2] not in t)' "$T/body" "$1" || fail "expected \"$1\" in: $(cat "$T/body")"
}
actl() { LOOM_TOKEN=${TOKEN[alice]} loomctl --url "$URL" "$@"; }

task_body() { # EPOCHS LR [TRAIN_INIT_JSON]: a classifier's submission as alice
	/usr/bin/python3 - "$T/data/train.csv" "$1" "$2" "${3:-}" <<'PY'
import json, sys
train = {"epochs": int(sys.argv[2]), "batch": 32, "lr": float(sys.argv[3]), "seed": 7,
         "threads": 1}
if sys.argv[4]:
    train["init"] = json.loads(sys.argv[4])
print(json.dumps({"name": "weather", "start": True, "spec": {
    "compute": "transformer",
    "data": {"path": sys.argv[1], "time_column": "date",
             "features": ["precipitation", "temp_max", "temp_min", "wind"],
             "target": "weather", "split": [0.8, 0.1, 0.1]},
    "model": {"head": "classification", "context": 14, "patch": 1, "stride": 1,
              "d_model": 16, "heads": 2, "layers": 1, "ffn": 32, "dropout": 0.1,
              "revin": False, "channel_independent": False},
    "train": train}}))
PY
}
train() { # EPOCHS LR: a new version of weather; its number in $ver
	as alice POST /api/v1/training/tasks "$(task_body "$1" "$2")"
	code 201
	local task
	task=$(py 'b["task_id"]')
	LOOM_TOKEN=${TOKEN[alice]} wait_for "$task" completed 300
	as alice GET /api/v1/models/weather
	code 200
	ver=$(py "[v['version'] for v in b['versions'] if v['task_id'] == '$task'][0]")
}
acc() { # VERSION: its registered test_accuracy
	as alice GET "/api/v1/models/weather/versions/$1"
	code 200
	py 'repr(b["metrics"]["test_accuracy"])'
}
newest() { # EXPR over the newest decision d
	as alice GET /api/v1/models/weather/deploy/decisions
	code 200
	py "(lambda d: $1)(b['decisions'][0])"
}

# ---------------------------------------------------------------- version 1: weak
train 1 1e-6
[ "$ver" = 1 ] || fail "the first version is $ver"
weak=$ver
ok "version 1: one epoch at lr 1e-6 (test_accuracy $(acc 1))"

# ---------------------------------------------------------------- train.init at submission
as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "model_dir": "/etc"}')"
code 400
says "train.init.model_dir: loomd sets it"
as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "alias": "production", "version": 1}')"
code 400
says "give train.init.alias or train.init.version, not both"
as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "version": "one"}')"
code 400
says "train.init.version: expected a version number"
as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "versoin": 1}')"
code 400
says "train.init.versoin: unknown setting (did you mean version?)"
as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "nope"}')"
code 404
says 'train.init.model: there is no model "nope"'
as bob POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "version": 1}')"
code 404
says 'train.init.model: there is no model "weather"'
as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "alias": "production"}')"
code 404
says 'has no alias "production"'
ok "train.init: model_dir, alias with version, bad and unknown fields 400; no such model, another's, no alias 404"

as alice POST /api/v1/training/tasks "$(task_body 1 1e-3 '{"model": "weather", "version": 1}')"
if [ "$(cat "$T/code")" = 400 ] && grep -q 'train.init: unknown' "$T/body"; then
	echo "# this tree's engine does not know train.init yet: the stored spec is not checked"
else
	code 201
	init_task=$(py 'b["task_id"]')
	as alice GET "/api/v1/training/tasks/$init_task"
	code 200
	[ "$(py 'b["spec"]["train"]["init"]["model_dir"]')" = "$state/models/weather/v1" ] ||
		fail "train.init.model_dir: $(py 'b["spec"]["train"]["init"]')"
	[ "$(py 'b["spec"]["train"]["init"]["version"]')" = 1 ] || fail "$(py 'b["spec"]["train"]["init"]')"
	[ "$(py '"alias" in b["spec"]["train"]["init"]')" = False ] || fail "$(py 'b["spec"]["train"]["init"]')"
	# the run ends one way or the other; its job.json holds the resolved spec
	for i in $(seq 600); do
		s=$(LOOM_TOKEN=${TOKEN[alice]} field "$init_task" 't["status"]')
		case $s in completed|failed|cancelled) break ;; esac
		sleep 0.1
	done
	if [ -s "$state/jobs/$init_task/job.json" ]; then
		/usr/bin/python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
assert j["train"]["init"]["model_dir"] == sys.argv[2], j["train"]["init"]' \
			"$state/jobs/$init_task/job.json" "$state/models/weather/v1" ||
			fail "job.json's train.init"
	fi
	if [ "$s" = completed ]; then
		# its version's lineage says where it started
		as alice GET /api/v1/models/weather
		code 200
		[ "$(py "[v['version'] for v in b['versions'] if v['task_id'] == '$init_task']")" = "[2]" ] ||
			fail "$init_task's version: $(cat "$T/body")"
		as alice GET /api/v1/models/weather/versions/2
		code 200
		[ "$(py 'b["lineage"]["init"]')" = "{'model': 'weather', 'version': 1}" ] ||
			fail "version 2's lineage init: $(py 'b["lineage"]')"
	fi
	ok "train.init by version: stored with the version's directory and number ($init_task $s)"
fi

# ---------------------------------------------------------------- the rule
actl models deploy weather --metric test_accuracy --better-by 0 >"$T/out" ||
	fail "loomctl models deploy: $(cat "$T/out")"
has "$T/out" "test_accuracy better by > 0 (higher is better) → production"
as alice PUT /api/v1/models/weather/deploy '{"metric": "test_accuracy", "betterby": 0}'
code 400
says 'deploy.betterby: unknown field (did you mean better_by?)'
as alice PUT /api/v1/models/weather/deploy '{"metric": "test_accuracy", "alias": "Prod"}'
code 400
says 'deploy.alias'
expect 2 actl models deploy weather --better-by much
as bob GET /api/v1/models/weather/deploy
code 404
expect 0 actl share model weather carol read
as carol GET /api/v1/models/weather/deploy
code 200
[ "$(py 'b["metric"]')" = test_accuracy ] || fail "$(cat "$T/body")"
as carol PUT /api/v1/models/weather/deploy '{"metric": "test_loss"}'
code 403
ok "the rule: set with loomctl, bad fields 400 with a did-you-mean, hidden from bob, read-only for carol"

expect 0 actl models promote weather "$weak"
# versions made by the train.init run, if any, are not this test's business
as alice GET /api/v1/models/weather/deploy/decisions
code 200
before=$(py 'b["total"]')

# ---------------------------------------------------------------- a trained version, judged by the rule
train 3 2e-3
good=$ver
a_weak=$(acc "$weak")
a_good=$(acc "$good")
as alice GET /api/v1/models/weather/deploy/decisions
code 200
[ "$(py 'b["total"]')" = $((before + 1)) ] || fail "decisions: $(cat "$T/body")"
[ "$(newest 'd["version"]')" = "$good" ] || fail "the newest decision is not version $good's"
[ "$(newest 'd["user"]')" = deploy-rule ] || fail "decision by $(newest 'd["user"]')"
want=$(/usr/bin/python3 -c "print('promoted' if $a_good > $a_weak else 'kept')")
[ "$(newest 'd["action"]')" = "$want" ] ||
	fail "version $good ($a_good) against $weak ($a_weak): $(newest 'd')"
figures=$(/usr/bin/python3 -c "print('test_accuracy %.6g against %.6g of version $weak' % ($a_good, $a_weak))")
[ "$(newest "'$figures' in d['reason']")" = True ] || fail "reason: $(newest 'd["reason"]')"
as alice GET /api/v1/models/weather/aliases/production
code 200
if [ "$want" = promoted ]; then
	[ "$(py 'b["version"]')" = "$good" ] || fail "production is at $(py 'b["version"]')"
else
	[ "$(py 'b["version"]')" = "$weak" ] || fail "production is at $(py 'b["version"]')"
	echo "# the trained version was not better here ($a_good against $a_weak): kept"
fi
ok "version $good ($a_good) against version $weak ($a_weak) by the rule: $want"

# ---------------------------------------------------------------- better_by out of reach, and approval
expect 0 actl models deploy weather --metric test_accuracy --better-by 1
as alice GET /api/v1/models/weather/aliases/production
code 200
cur=$(py 'b["version"]')
train 1 1e-6
[ "$(newest 'd["action"]')" = kept ] || fail "better_by 1: $(newest 'd')"
as alice GET /api/v1/models/weather/aliases/production
[ "$(py 'b["version"]')" = "$cur" ] || fail "better_by 1 moved production"
ok "better_by 1 (out of any accuracy's reach): version $ver kept, production stays at $cur"

expect 0 actl models deploy weather --metric test_accuracy --alias canary --approval
train 1 1e-6
gated=$ver
[ "$(newest 'd["action"]')" = pending_approval ] || fail "approval: $(newest 'd')"
actl models show weather >"$T/out"
has "$T/out" "[pending approval]"
has "$T/out" "→ canary, with approval"
as alice GET /api/v1/models/weather/aliases/canary
code 404
as carol POST "/api/v1/models/weather/versions/$gated/approve"
code 403
expect 1 actl models approve weather "$((gated - 1))"
actl models approve weather "$gated" >"$T/out" || fail "approve: $(cat "$T/out")"
has "$T/out" "canary → version $gated"
has "$T/out" "approved by alice"
as alice GET /api/v1/models/weather/aliases/canary
code 200
[ "$(py 'b["version"]')" = "$gated" ] || fail "canary is at $(py 'b["version"]')"
expect 1 actl models approve weather "$gated"
has "$T/err" "is not pending approval"
actl models deploy weather --show >"$T/out"
has "$T/out" "pending_approval"
has "$T/out" "[approved by alice"
ok "with approval: version $gated waited, carol may not approve, alice did (canary → $gated), not twice"

# ---------------------------------------------------------------- the check rolls a regression back
expect 0 actl models deploy weather --metric test_accuracy
expect 0 actl models promote weather "$good"
expect 0 actl models promote weather "$weak"
as alice POST /api/v1/models/weather/deploy/check '{"data": "/etc/passwd"}'
code 400
says "data_roots"
as carol POST /api/v1/models/weather/deploy/check "{\"data\": \"$T/data/2015.csv\"}"
code 403
actl --json models check weather "$T/data/2015.csv" --wait >"$T/check.json" ||
	fail "loomctl models check: $(cat "$T/check.json")"
/usr/bin/python3 - "$T/check.json" "$state" "$weak" "$good" >"$T/expect" <<'PY' || fail "the check: $(cat "$T/check.json")"
import json, sys
c = json.load(open(sys.argv[1]))
state, weak, good = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
assert c["state"] == "done", c
assert c["version"] == weak and c["previous"] == good and c["metric"] == "predict/accuracy", c
acc = {}
for which in ("version", "previous"):
    p = json.load(open("%s/jobs/%s/predictions.json" % (state, c["tasks"][which])))
    acc[which] = p["metrics"]["accuracy"]
    assert p["model"]["version"] == c[which], p["model"]
assert abs(acc["version"] - c["value"]) < 1e-12 and abs(acc["previous"] - c["previous_value"]) < 1e-12, (acc, c)
want = "rolled_back" if acc["previous"] > acc["version"] else "kept"
assert c["outcome"] == want, (want, c)
print(want, good if want == "rolled_back" else weak)
PY
read -r outcome at <"$T/expect"
as alice GET /api/v1/models/weather/aliases/production
[ "$(py 'b["version"]')" = "$at" ] || fail "production is at $(py 'b["version"]') after the check ($outcome)"
[ "$(newest 'd["action"]')" = "$outcome" ] || fail "the check's decision: $(newest 'd')"
[ "$outcome" = rolled_back ] || echo "# the weak version was not worse on 2015 here: kept"
ok "the check on 2015: $outcome, production at version $at"

expect 0 actl models promote weather "$good"
expect 0 actl models promote weather "$weak"
expect 1 actl models check weather "$T/data/2015-unlabelled.csv" --wait
actl --json models check weather "$T/data/2015-unlabelled.csv" --wait >"$T/check.json" || true
/usr/bin/python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
assert c["state"] == "failed" and "no labels" in c["reason"], c' "$T/check.json" ||
	fail "a check without labels: $(cat "$T/check.json")"
as alice GET /api/v1/models/weather/aliases/production
[ "$(py 'b["version"]')" = "$weak" ] || fail "a failed check moved production"
ok "a check on a file without labels fails saying so, and moves nothing"

stop_loomd
ok "loomd stopped cleanly"
