#!/bin/bash
# The first half of the incremental-learning loop on real data, through a
# real loomd, real loom-worker processes and the margin sampler plugin
# (issue 14's "done when"): a seattle-weather classifier trained on
# 2012-2014 and registered, promoted to production, its predictions
# through the endpoint equal to `loom-worker --predict` to the bit; a
# labeling project over it; a round batch-scores 2015 and queues the 50
# windows of smallest margin, in the sampler's order (checked against the
# margins of the task's own predictions.json); two reviewers, alice and
# bob, lease distinct items and confirm and correct them through the API
# (one skip, one flag), loomd is killed (-9) in the middle and restarted
# with nothing lost and alice's lease still hers; a lease that ends
# returns its item to the queue; the increment exported as JSON and CSV
# holds exactly the decisions, with provenance (round, sampler, model
# version, reviewers).  Who may do what: a viewer with a read share sees
# the project but may not lease (403), a user it is not shared with gets
# 404, a decision on another's item is 409; bad requests name the field.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
CSV=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv
[ -r "$CSV" ] || {
	echo "SKIP: $CSV is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

# ---------------------------------------------------------------- data: 2012-2014 to train, 2015 to score
mkdir -p "$T/data"
head -1 "$CSV" >"$T/data/train.csv"
grep -E '^201[234]/' "$CSV" >>"$T/data/train.csv"
head -1 "$CSV" >"$T/data/2015.csv"
grep -E '^2015/' "$CSV" >>"$T/data/2015.csv"
[ "$(wc -l <"$T/data/2015.csv")" = 366 ] || fail "2015 has $(wc -l <"$T/data/2015.csv") lines, not 366"

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T/data" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; },
  { instance = "margin"; module = "sampler-margin"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

expect 0 loomctl --url "$URL" users add alice
expect 0 loomctl --url "$URL" users add bob
expect 0 loomctl --url "$URL" users add carol
expect 0 loomctl --url "$URL" users add vic --role viewer
declare -A TOKEN
for u in alice bob carol vic; do
	TOKEN[$u]=$(loomctl --url "$URL" tokens create --user $u -q)
done
export TOKEN_alice=${TOKEN[alice]} TOKEN_bob=${TOKEN[bob]}

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

# ---------------------------------------------------------------- train, register, promote
/usr/bin/python3 - "$T/data/train.csv" >"$T/train.json" <<'PY'
import json, sys
print(json.dumps({"name": "weather", "start": True, "spec": {
    "compute": "transformer",
    "data": {"path": sys.argv[1], "time_column": "date",
             "features": ["precipitation", "temp_max", "temp_min", "wind"],
             "target": "weather", "split": [0.8, 0.1, 0.1]},
    "model": {"head": "classification", "context": 14, "patch": 1, "stride": 1,
              "d_model": 16, "heads": 2, "layers": 1, "ffn": 32, "dropout": 0.1,
              "revin": False, "channel_independent": False},
    "train": {"epochs": 3, "batch": 32, "lr": 2e-3, "seed": 7, "threads": 1}}}))
PY
as alice POST /api/v1/training/tasks "$(cat "$T/train.json")"
code 201
task=$(py 'b["task_id"]')
LOOM_TOKEN=${TOKEN[alice]} wait_for "$task" completed 300
as alice POST /api/v1/models/weather/aliases/production '{"version": 1}'
code 200
ok "alice trained $task, registered as weather v1, promoted to production"

# ---------------------------------------------------------------- the endpoint equals loom-worker --predict
as alice GET /api/v1/models/weather/versions/1
code 200
mdir=$(py 'b["dir"]')
/usr/bin/python3 - "$T/data/2015.csv" >"$T/windows.json" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = ["precipitation", "temp_max", "temp_min", "wind"]
wins = [[[float(r[c]) for c in cols] for r in rows[s:s + 14]] for s in (0, 100, 351)]
print(json.dumps({"inputs": wins}))
PY
/usr/bin/python3 -c "import json; print(json.dumps({'input': json.load(open('$T/windows.json'))['inputs']}))" >"$T/worker-in.json"
expect 0 "$B/host/loom-worker" --predict "$mdir" --input "$T/worker-in.json" --output "$T/worker-out.json" -c "$T/loomd.conf"
as alice POST /api/v1/models/weather/predict "$(cat "$T/windows.json")"
code 200
/usr/bin/python3 - "$T/body" "$T/worker-out.json" <<'PY' || fail "the endpoint's answer differs from loom-worker --predict"
import json, struct, sys
a, w = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
f = lambda x: struct.pack("<f", x)
flat = lambda v: [y for x in v for y in (flat(x) if isinstance(x, list) else [x])]
A, W = flat(a["outputs"]), flat(w["output"])
assert len(A) == len(W) == 3 * 5, (len(A), len(W))
assert all(f(x) == f(y) for x, y in zip(A, W)), (A, W)
assert a["version"] == 1
PY
ok "the endpoint's probabilities equal loom-worker --predict's to the bit (3 windows of 2015)"

# ---------------------------------------------------------------- the project
as alice POST /api/v1/labeling/projects '{"name": "weather-review", "model": "nope", "sampler": "margin"}'
code 404
says 'model: there is no model "nope"'
as alice POST /api/v1/labeling/projects '{"name": "weather-review", "model": "weather", "sampler": "nope"}'
code 400
says 'sampler: there is no sampler instance "nope"'
as alice POST /api/v1/labeling/projects '{"name": "../x", "model": "weather", "sampler": "margin"}'
code 400
says 'name: required'
as alice POST /api/v1/labeling/projects '{"name": "weather-review", "model": "weather", "sampler": "margin", "k": 50, "lease": "10m", "colour": 1}'
code 400
says 'colour: unknown field'
as vic POST /api/v1/labeling/projects '{"name": "weather-review", "model": "weather", "sampler": "margin"}'
code 403
as alice POST /api/v1/labeling/projects '{"name": "weather-review", "model": "weather", "sampler": "margin", "k": 50, "lease": "10m"}'
code 201
[ "$(py '(b["owner"], b["alias"], b["k"], b["lease_seconds"])')" = "('alice', 'production', 50, 600)" ] ||
	fail "the project: $(cat "$T/body")"
as alice POST /api/v1/labeling/projects '{"name": "weather-review", "model": "weather", "sampler": "margin"}'
code 409
expect 0 env LOOM_TOKEN="${TOKEN[alice]}" "$LOOMCTL" --url "$URL" share labeling weather-review bob write
expect 0 env LOOM_TOKEN="${TOKEN[alice]}" "$LOOMCTL" --url "$URL" share labeling weather-review vic read
as carol GET /api/v1/labeling/projects/weather-review
code 404
as carol GET /api/v1/labeling/projects
code 200
[ "$(py 'b["total"]')" = 0 ] || fail "carol sees another's project: $(cat "$T/body")"
as bob GET /api/v1/labeling/projects
[ "$(py '[p["name"] for p in b["projects"]]')" = "['weather-review']" ] || fail "bob's list: $(cat "$T/body")"
ok "project weather-review: bad model, sampler, name and field refused; shared with bob (write) and vic (read); carol sees nothing"

# ---------------------------------------------------------------- a round scores 2015
as alice POST /api/v1/labeling/projects/weather-review/rounds '{"data": "/etc/passwd"}'
code 400
says 'data_roots'
as alice POST /api/v1/labeling/projects/weather-review/next
code 200
[ "$(py 'b["item"]')" = None ] && says 'no rounds yet' || fail "next before a round: $(cat "$T/body")"
as alice POST /api/v1/labeling/projects/weather-review/rounds "{\"data\": \"$T/data/2015.csv\", \"seed\": 7}"
code 201
[ "$(py '(b["number"], b["state"], b["model_version"], b["sampler"], b["k"])')" = "(1, 'scoring', 1, 'margin', 50)" ] ||
	fail "the round: $(cat "$T/body")"
rtask=$(py 'b["task"]')
LOOM_TOKEN=${TOKEN[alice]} wait_for "$rtask" completed 120
as bob GET /api/v1/labeling/projects/weather-review/rounds/1
code 200
[ "$(py '(b["state"], b["windows"], b["counts"]["queued"])')" = "('open', 352, 50)" ] || fail "round 1: $(cat "$T/body")"
out_dir=$(LOOM_TOKEN=${TOKEN[alice]} field "$rtask" 't["out_dir"]')
[ -s "$out_dir/predictions.json" ] && [ -s "$out_dir/predictions.csv" ] || fail "no predictions in $out_dir"
ok "round 1: $rtask batch-scored 352 windows of 2015 (CSV and JSON), 50 queued by margin"

# ---------------------------------------------------------------- two reviewers
# review.py: alice and bob ask in turn; alice confirms, bob corrects to the
# runner-up class; alice skips her 3rd item and flags her 5th.  After 20
# decisions it stops (loomd is killed), and a second call goes on to the end.
cat >"$T/review.py" <<'PY'
import json, os, struct, sys, urllib.request, urllib.error
url, out_dir, log, phase = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
tok = {u: os.environ["TOKEN_" + u] for u in ("alice", "bob")}
def call(user, method, path, body=None):
    req = urllib.request.Request(url + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + tok[user], "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
# the sampler's order, from the task's own predictions
pred = json.load(open(os.path.join(out_dir, "predictions.json")))
f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
def margin(p):
    p = sorted((f32(x) for x in p), reverse=True)
    return p[0] - p[1]
order = sorted(range(pred["windows"]), key=lambda w: (margin(pred["output"][w]), w))[:50]
state = json.load(open(log)) if os.path.exists(log) else {"decided": [], "held": {}, "leased": {}, "n": 0}
held = state["held"]
for u in ("alice", "bob"):
    if u not in held:
        s, b = call(u, "POST", "/api/v1/labeling/projects/weather-review/next")
        assert s == 200, (s, b)
        held[u] = b["item"]
    elif phase == "after" and held[u]:
        # a lease survives loomd's kill: asking again gives the same item
        s, b = call(u, "POST", "/api/v1/labeling/projects/weather-review/next")
        assert s == 200 and b["item"]["id"] == held[u]["id"], (held[u]["id"], b)
user = "alice"
while held.get("alice") or held.get("bob"):
    if not held.get(user):
        user = "bob" if user == "alice" else "alice"
        continue
    it = held[user]
    w = order[it["rank"] - 1]
    assert it["window"]["first_line"] == pred["first_line"][w], (it["rank"], it["window"]["first_line"], pred["first_line"][w])
    assert it["version"] == 1 and it["sampler"] == "margin" and it["why"].startswith("margin ")
    assert abs(it["score"] - margin(pred["output"][w])) < 1e-12, (it["score"], margin(pred["output"][w]))
    assert len(it["window"]["values"]) == 14 and len(it["window"]["values"][0]) == 4
    assert it["lease"]["user"] == user
    state["leased"].setdefault(str(it["id"]), []).append(user)
    probs, classes = it["prediction"]["probs"], it["prediction"]["classes"]
    ranked = sorted(range(len(probs)), key=lambda c: (-probs[c], c))
    assert classes[ranked[0]] == it["prediction"]["label"]
    n = state["n"]
    if user == "alice" and n == 4:
        body, want = {"action": "skip"}, None
    elif user == "alice" and n == 8:
        body, want = {"action": "flag", "note": "the wind sensor looks stuck"}, None
    elif user == "alice":
        body, want = {"action": "confirm"}, it["prediction"]["label"]
    else:
        body, want = {"action": "correct", "label": classes[ranked[1]]}, classes[ranked[1]]
    if user == "bob" and n == 1:
        # bob may not decide alice's item
        s, b = call("bob", "POST", "/api/v1/labeling/items/%d/decision" % held["alice"]["id"], {"action": "confirm"})
        assert s == 409 and "another reviewer" in b["error"]["message"], (s, b)
        s, b = call("bob", "POST", "/api/v1/labeling/items/%d/decision" % it["id"], {"action": "correct", "label": "hail"})
        assert s == 400 and "label: expected one of the model's classes" in b["error"]["message"], (s, b)
    s, b = call(user, "POST", "/api/v1/labeling/items/%d/decision" % it["id"], body)
    assert s == 200, (s, b)
    assert b["item"]["state"] == {"skip": "queued", "flag": "flagged"}.get(body["action"], "done"), b["item"]
    state["decided"].append({"item": it["id"], "user": user, "action": body["action"], "label": want,
                             "predicted": it["prediction"]["label"]})
    held[user] = b["next"]
    state["n"] = n + 1
    user = "bob" if user == "alice" else "alice"
    if phase == "before" and state["n"] == 20:
        break
json.dump(state, open(log, "w"))
PY
/usr/bin/python3 "$T/review.py" "$URL" "$out_dir" "$T/review.json" before || fail "the review, first part"
ok "20 decisions by alice and bob, each item the sampler's next by margin"

# ---------------------------------------------------------------- kill -9 in the middle of the round
served=$(pgrep -f -- "--serve $state/" || true)
[ -n "$served" ] || fail "no inference worker of this loomd is running"
kill -KILL "$LOOMD_PID"
wait "$LOOMD_BG" 2>/dev/null || true
LOOMD_PID= LOOMD_BG=
# its inference worker notices (within about a second) and stops
i=0
while kill -0 $served 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt $((WAIT_S * 10)) ] && fail "inference worker $served outlived loomd by ${WAIT_S}s"
	sleep 0.1
done
start_loomd "$T/loomd.conf" "$state"
as alice GET /api/v1/labeling/projects/weather-review
code 200
[ "$(py '(b["counts"]["done"] + b["counts"]["flagged"], b["counts"]["leased"])')" = "(19, 2)" ] ||
	fail "after kill -9: $(cat "$T/body")"
/usr/bin/python3 "$T/review.py" "$URL" "$out_dir" "$T/review.json" after || fail "the review, after the restart"
ok "loomd killed (-9) after 20 decisions (its inference worker stopped too) and restarted: 19 decided and 1 flagged kept, both leases kept; the review went on to the end"

/usr/bin/python3 - "$T/review.json" <<'PY' || fail "the leases and decisions"
import json, sys
s = json.load(open(sys.argv[1]))
for item, users in s["leased"].items():
    # only the skipped item went to a second reviewer
    assert len(users) == 1 or users == ["alice", "bob"], (item, users)
skipped = [d["item"] for d in s["decided"] if d["action"] == "skip"]
assert len(skipped) == 1
again = [d for d in s["decided"] if d["item"] == skipped[0] and d["action"] != "skip"]
assert len(again) == 1 and again[0]["user"] == "bob", again
final = [d for d in s["decided"] if d["action"] in ("confirm", "correct")]
assert len(final) == 49, len(final)
assert len({d["item"] for d in final}) == 49
PY
as alice POST /api/v1/labeling/projects/weather-review/next
[ "$(py 'b["item"]')" = None ] && says 'no items left' || fail "next at the end: $(cat "$T/body")"
ok "no item was leased to both reviewers (but the one alice skipped, which went to bob); 49 labelled, 1 flagged"

# ---------------------------------------------------------------- who may
as vic GET /api/v1/labeling/projects/weather-review
code 200
as vic POST /api/v1/labeling/projects/weather-review/next
code 403
as carol GET /api/v1/labeling/items/1
code 404
as alice POST /api/v1/labeling/items/1/decision '{"action": "confirm"}'
code 409
says 'already'
ok "vic (read share) sees but may not lease (403); carol gets 404 for an item; a decided item is 409"

# ---------------------------------------------------------------- the increment
as bob GET '/api/v1/labeling/projects/weather-review/export?format=json'
code 200
/usr/bin/python3 - "$T/body" "$T/review.json" "$T/data/2015.csv" <<'PY' || fail "the JSON export: $(head -c 600 "$T/body")"
import json, sys
e, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert e["format"] == "loom-labels/1" and e["count"] == 49, (e["format"], e["count"])
assert e["project"]["model"] == "weather" and sorted(e["reviewers"]) == ["alice", "bob"]
r = e["rounds"][0]
assert r["sampler"] == "margin" and r["model_version"] == 1 and r["data"] == sys.argv[3] and r["task"].startswith("task-")
want = {d["item"]: d for d in s["decided"] if d["action"] in ("confirm", "correct")}
for l in e["labels"]:
    d = want.pop(l["item"])
    assert (l["user"], l["action"], l["label"], l["predicted"]) == (d["user"], d["action"], d["label"], d["predicted"]), (l, d)
    assert l["model_version"] == 1 and l["round"] == 1 and l["data"] == sys.argv[3]
assert not want
PY
as bob GET '/api/v1/labeling/projects/weather-review/export?format=csv'
code 200
head -1 "$T/body" | grep -q '^item,round,rank,data,first_line,last_line,time,model,model_version,sampler,predicted,label,action,user,at$' ||
	fail "the CSV header: $(head -1 "$T/body")"
[ "$(wc -l <"$T/body")" = 50 ] || fail "the CSV has $(wc -l <"$T/body") lines, not 50"
/usr/bin/python3 - "$T/body" <<'PY' || fail "the CSV rows"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert all(r["model"] == "weather" and r["sampler"] == "margin" and r["model_version"] == "1" for r in rows)
assert {r["action"] for r in rows} == {"confirm", "correct"}
assert all(r["time"].startswith("2015/") for r in rows), rows[0]
PY
ok "the increment: 49 labels as JSON and CSV, each the decision made, with round, sampler, model version, data and reviewers"

# ---------------------------------------------------------------- a lease that ends
as alice POST /api/v1/labeling/projects '{"name": "short", "model": "weather", "sampler": "margin", "k": 3, "lease": 1}'
code 201
expect 0 env LOOM_TOKEN="${TOKEN[alice]}" "$LOOMCTL" --url "$URL" share labeling short bob write
as alice POST /api/v1/labeling/projects/short/rounds "{\"data\": \"$T/data/2015.csv\", \"k\": 3}"
code 201
rtask=$(py 'b["task"]')
LOOM_TOKEN=${TOKEN[alice]} wait_for "$rtask" completed 120
as alice POST /api/v1/labeling/projects/short/next
first=$(py 'b["item"]["id"]')
cp "$T/body" "$T/alice-item"
as bob POST /api/v1/labeling/projects/short/next
# bob gets another item, unless alice's 1 s lease had already ended when
# he asked (a slow machine): then his lease begins after hers ended
/usr/bin/python3 - "$T/alice-item" "$T/body" <<'PY2' || fail "bob got alice's leased item: $(cat "$T/body")"
import datetime, json, sys
a, b = (json.load(open(f))["item"] for f in sys.argv[1:3])
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
assert b["id"] != a["id"] or t(b["lease"]["until"]) - datetime.timedelta(seconds=1) >= t(a["lease"]["until"])
PY2
sleep 1.5 # past both 1 s leases, whatever the machine's speed
as carol POST /api/v1/labeling/projects/short/next
code 404
as bob POST /api/v1/labeling/projects/short/next
[ "$(py '(b["item"]["id"], b["item"]["lease"]["user"])')" = "($first, 'bob')" ] ||
	fail "alice's ended lease did not return item $first to the queue: $(cat "$T/body")"
as alice POST "/api/v1/labeling/items/$first/decision" '{"action": "confirm"}'
code 409
says "you do not hold item $first's lease"
as bob POST "/api/v1/labeling/items/$first/release"
code 200
[ "$(py '(b["item"]["state"], b["item"]["lease"])')" = "('queued', None)" ] || fail "release: $(cat "$T/body")"
ok "an ended lease returns the item (bob got it); its old holder's decision is 409"

stop_loomd
ok "loomd stopped cleanly"
