#!/bin/bash
# The labeling-confirmation page (web/labeling.js) through a real loomd
# with authentication on, the margin sampler and a real model:
# - set up through the API: users alice and bob (role user), carol (user,
#   a read share) and vera (viewer); alice trains a short seattle-weather
#   classifier ("weather", version 1) and promotes it to production, makes
#   the project, shares it with bob for writing and with carol and vera for
#   reading, and starts a round over 2015's days (a file of this test,
#   under data_roots), which loomd scores and samples by margin;
# - in headless Chromium (tests/web/labeling.mjs) alice and bob review
#   items with the keyboard: alice confirms, bob corrects by digit key,
#   some are skipped, one is flagged; carol and vera see no decision button
#   and their forged requests get 403;
# - then through the API: every decision stored as the page made it (who,
#   the action, the label: a confirmation is the predicted class), no item
#   held or decided by both, and the export holds the confirmed and
#   corrected labels.
# The page's time from a decision's key press to the next item drawn is
# printed (p50/p99), not asserted: bench/labeling-page records it.
# Screenshots: tests/integration/web-shots/labeling-*.png in the build tree.
#
# LOOM_DECISIONS (default 24) decisions in all; LOOM_LABELING_OUT, when
# set, keeps the page's record of them (bench/labeling-page reads it).
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: /usr/bin/python3 is not installed (./bootstrap installs it)"; exit 77; }
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium is not installed (Debian: apt-get install chromium; ./bootstrap does)"; exit 77; }
command -v node >/dev/null || { echo "SKIP: node is not installed (Debian: nodejs; ./bootstrap does)"; exit 77; }
NODE_MODULES=$S/tests/node/node_modules
[ -d "$NODE_MODULES/puppeteer-core" ] || {
	echo "SKIP: puppeteer-core is not installed in tests/node (./bootstrap runs npm ci there)"
	exit 77
}
DYGRAPHS=/usr/share/javascript/dygraphs
[ -r "$DYGRAPHS/dygraph.min.js" ] || DYGRAPHS=$NODE_MODULES/dygraphs/dist
[ -r "$DYGRAPHS/dygraph.min.js" ] || {
	echo "SKIP: no dygraph.min.js: install libjs-dygraphs (Debian), or run ./bootstrap for npm's"
	exit 77
}
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA/seattle-weather.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
SHOTS=$B/tests/integration/web-shots
mkdir -p "$SHOTS"
rm -f "$SHOTS"/labeling-*.png
DECISIONS=${LOOM_DECISIONS:-24}
K=$((DECISIONS + 16)) # enough that both reviewers always have an item
PROJECT=weather-review

state=$T/state
mkdir -p "$T/data"
cat >"$T/loomd.conf" <<CONF
auth = "token";
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T/data", "$DATA" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
web = { root = "$S/web"; dygraphs = "$DYGRAPHS"; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; },
  { instance = "margin"; module = "sampler-margin"; }
);
CONF
start_loomd "$T/loomd.conf" "$state"
[ -n "${LOOM_TOKEN:-}" ] || fail "lib.sh made no admin token"
ok "loomd with tokens started at $URL"

# ---------------------------------------------------------------- users
declare -A TOKEN
for u in alice:user bob:user carol:user vera:viewer; do
	expect 0 loomctl --url "$URL" users add "${u%%:*}" --role "${u#*:}"
	TOKEN[${u%%:*}]=$(loomctl --url "$URL" tokens create --user "${u%%:*}" -q)
	case ${TOKEN[${u%%:*}]} in loom_*) ;; *) fail "no token for ${u%%:*}: ${TOKEN[${u%%:*}]}" ;; esac
done
api() { # USER METHOD PATH [BODY]: status in $T/code, body in $T/body (USER admin: lib.sh's token)
	local tok=${TOKEN[$1]:-$LOOM_TOKEN}
	command curl -s -o "$T/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $tok" \
		${4:+-H 'Content-Type: application/json' --data-binary "$4"} "$URL$3" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "${2:-}HTTP $(cat "$T/code"), expected $1"; }; }
py() { "$PY" -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }
ok "users alice, bob, carol (user) and vera (viewer), with tokens"

# ---------------------------------------------------------------- the model
# etc/jobs/seattle-weather-classify.conf as JSON, 3 epochs
spec=$(cat <<JSON
{"data": {"path": "$DATA/seattle-weather.csv", "time_column": "date",
          "features": ["precipitation", "temp_max", "temp_min", "wind"],
          "target": "weather", "split": [0.7, 0.1, 0.2]},
 "model": {"head": "classification", "context": 14, "patch": 1, "stride": 1,
           "d_model": 32, "heads": 4, "layers": 2, "ffn": 64, "dropout": 0.1,
           "revin": false, "channel_independent": false},
 "train": {"epochs": 3, "batch": 32, "lr": 1e-3, "weight_decay": 0.01,
           "schedule": "cosine", "warmup_steps": 20, "seed": 7}}
JSON
)
api alice POST /api/v1/training/tasks "{\"name\": \"weather\", \"start\": true, \"spec\": $spec}"
code 201 "alice's training task: "
task=$(py 'b["task_id"]')
i=0
while :; do
	api alice GET "/api/v1/training/tasks/$task"
	s=$(py 'b["status"]')
	[ "$s" = completed ] && break
	case $s in failed|cancelled) fail "$task ended $s: $(cat "$T/body")" ;; esac
	i=$((i + 1))
	[ $i -gt 1800 ] && fail "$task is $s after 180 s"
	sleep 0.1
done
# the registry registers a completed task's version in the background
i=0
until api alice GET /api/v1/models/weather/versions/1 && [ "$(cat "$T/code")" = 200 ]; do
	i=$((i + 1))
	[ $i -gt $((WAIT_S * 10)) ] && fail "the model \"weather\" has no version 1 after ${WAIT_S}s: $(cat "$T/body")"
	sleep 0.1
done
api alice POST /api/v1/models/weather/aliases/production '{"version": 1}'
code 200 "promoting weather v1: "
ok "alice trained \"weather\" ($task), version 1, promoted to production"

# ---------------------------------------------------------------- the project
# a later year: 2015's days, with the header
"$PY" - "$DATA/seattle-weather.csv" "$T/data/weather-2015.csv" <<'EOF'
import sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    lines = f.read().splitlines()
    rows = [l for l in lines[1:] if l.startswith("2015")]
    assert len(rows) == 365, len(rows)
    out.write("\n".join([lines[0]] + rows) + "\n")
EOF
api alice POST /api/v1/labeling/projects "{\"name\": \"$PROJECT\", \"model\": \"weather\", \"sampler\": \"margin\", \"k\": $K, \"lease\": \"10m\"}"
code 201 "creating the project: "
[ "$(py 'b["owner"], b["alias"], b["lease_seconds"]')" = "alice production 600" ] ||
	fail "the project: $(cat "$T/body")"
api alice POST /api/v1/shares "{\"kind\": \"labeling\", \"id\": \"$PROJECT\", \"user\": \"bob\", \"level\": \"write\"}"
code 200 "sharing with bob: "
for u in carol vera; do
	api alice POST /api/v1/shares "{\"kind\": \"labeling\", \"id\": \"$PROJECT\", \"user\": \"$u\", \"level\": \"read\"}"
	code 200 "sharing with $u: "
done
api alice POST "/api/v1/labeling/projects/$PROJECT/rounds" "{\"data\": \"$T/data/weather-2015.csv\", \"seed\": 1}"
code 201 "the round: "
i=0
while :; do
	api alice GET "/api/v1/labeling/projects/$PROJECT/rounds/1"
	code 200 "round 1: "
	s=$(py 'b["state"]')
	[ "$s" = open ] && break
	[ "$s" = failed ] && fail "round 1 failed: $(cat "$T/body")"
	i=$((i + 1))
	[ $i -gt 1200 ] && fail "round 1 is $s after 120 s: $(cat "$T/body")"
	sleep 0.1
done
[ "$(py 'b["counts"]["queued"], b["model_version"], b["sampler"]')" = "$K 1 margin" ] ||
	fail "round 1: $(cat "$T/body")"
ok "project $PROJECT (alice's), shared with bob (write), carol and vera (read); round 1 open with $K items by margin"

# ---------------------------------------------------------------- the browser
rv=0 scale=1
[ "${LOOM_VALGRIND:-}" = 1 ] && scale=5
OUT=${LOOM_LABELING_OUT:-$T/decisions.json}
LOOM_WEB_TIMEOUT_SCALE=$scale LOOM_NODE_MODULES=$NODE_MODULES LOOM_URL=$URL LOOM_WEB_SHOTS=$SHOTS \
	CHROMIUM=$CHROMIUM LOOM_PROJECT=$PROJECT LOOM_DECISIONS=$DECISIONS LOOM_LABELING_OUT=$OUT \
	LOOM_ALICE_TOKEN=${TOKEN[alice]} LOOM_BOB_TOKEN=${TOKEN[bob]} LOOM_CAROL_TOKEN=${TOKEN[carol]} \
	LOOM_VIEWER_TOKEN=${TOKEN[vera]} \
	timeout $((300 * scale)) node "$S/tests/web/labeling.mjs" >"$T/labeling.log" 2>&1 || rv=$?
cat "$T/labeling.log"
[ $rv -eq 0 ] || fail "the browser test failed (status $rv); screenshots in $SHOTS"
ls "$SHOTS"/labeling-*.png >/dev/null 2>&1 || fail "no screenshots in $SHOTS"
ok "screenshots: $(cd "$SHOTS" && echo labeling-*.png)"

# ---------------------------------------------------------------- what loomd stored
# each item the pages decided, as loomd has it now (the admin reads all)
"$PY" - "$OUT" >"$T/ids" <<'EOF'
import json, sys
print(" ".join(sorted({str(d["item"]) for d in json.load(open(sys.argv[1]))["decisions"]})))
EOF
echo '{' >"$T/items.json"
sep=
for id in $(cat "$T/ids"); do
	api admin GET "/api/v1/labeling/items/$id"
	code 200 "item $id: "
	printf '%s"%s": %s\n' "$sep" "$id" "$(cat "$T/body")" >>"$T/items.json"
	sep=,
done
echo '}' >>"$T/items.json"
api admin GET "/api/v1/labeling/projects/$PROJECT/export?format=json"
code 200 "the export: "
cp "$T/body" "$T/export.json"
"$PY" - "$OUT" "$T/items.json" "$T/export.json" <<'EOF' || fail "the stored decisions differ from the page's (above)"
import json, sys
log = json.load(open(sys.argv[1]))["decisions"]
items = json.load(open(sys.argv[2]))
export = json.load(open(sys.argv[3]))
bad = []
last = {}
for d in log:
    last[d["item"]] = d
final = {}  # item -> the user who confirmed, corrected or flagged it
for d in log:
    if d["action"] == "skip":
        continue
    if d["item"] in final:
        bad.append(f'item {d["item"]} decided twice: by {final[d["item"]]} and {d["user"]}')
    final[d["item"]] = d["user"]
for id, d in last.items():
    it = items[str(id)]
    s = it.get("decision")
    if not s:
        if d["action"] != "skip":
            bad.append(f"item {id}: no decision stored, the page made {d}")
        continue
    if s["action"] != d["action"] or s["user"] != d["user"]:
        bad.append(f'item {id}: stored {s["action"]} by {s["user"]}, the page made {d["action"]} by {d["user"]}')
    want = {"confirm": it["prediction"]["label"], "correct": d["label"]}.get(d["action"])
    if d["action"] == "confirm" and d["label"] != it["prediction"]["label"]:
        bad.append(f'item {id}: the page showed {d["label"]} predicted, loomd has {it["prediction"]["label"]}')
    if want is not None and s["label"] != want:
        bad.append(f'item {id}: stored label {s["label"]!r}, the page chose {want!r} ({d["action"]})')
    if d["action"] == "correct" and s["label"] == it["prediction"]["label"]:
        bad.append(f"item {id}: corrected to the predicted class")
    if d["action"] == "flag" and not s.get("note"):
        bad.append(f"item {id}: flagged without the note: {s}")
# an item a reviewer held and did not skip was never the other's
seen = {}
for d in log:
    seen.setdefault(d["item"], set()).add(d["user"])
for id, users in seen.items():
    if len(users) > 1 and not any(x["item"] == id and x["action"] == "skip" for x in log):
        bad.append(f"item {id} was held by {sorted(users)}")
# the export: every confirmed and corrected item, with its label
rows = export.get("labels", export.get("items", export)) if isinstance(export, dict) else export
got = {}
for r in rows:
    got[r.get("item", r.get("id"))] = r.get("label")
for id, d in last.items():
    if d["action"] in ("confirm", "correct"):
        want = items[str(id)]["decision"]["label"]
        if got.get(id) != want:
            bad.append(f"the export has item {id} as {got.get(id)!r}, stored {want!r}")
    elif id in got:
        bad.append(f'the export has item {id}, whose last decision was {d["action"]}')
for b in bad:
    print(b)
n = sum(1 for d in last.values() if d["action"] in ("confirm", "correct"))
print(f"{len(log)} decisions on {len(last)} items compared; {n} in the export")
sys.exit(1 if bad else 0)
EOF
ok "every decision stored as the page made it (who, action, label; a confirmation the predicted class); none by both; the export agrees"

stop_loomd
ok "loomd stopped cleanly"
