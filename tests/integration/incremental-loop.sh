#!/bin/bash
# The incremental-learning loop end to end (issue 15, "The loop, end to
# end"): `make demo-loop` (scripts/demo-loop) run as a test, then every
# stage's outcome checked again from what it left behind, through a loomd
# restarted on the same state directory.  The demo trains version 1 of a
# seattle-weather classifier on 2012 under a deployment rule
# (holdout_accuracy, production), labels the 100 windows of 2013 the margin
# sampler picks through the API (a script stands in for the reviewer and
# answers with the file's true label), trains version 2 from production on
# that increment with the incremental template's settings (replay + EWC),
# and lets the rule decide.  Checked here: the round scored with version 1
# and queued 100 items, all decided (confirmed + corrected = 100); the
# increment file holds exactly those labels, each the file's own; version 2
# started from version 1 (lineage) and carries continual.safetensors (replay
# bank, EWC terms, both increments' holdouts) and the flattened cl_* and
# holdout_* metrics; metrics.json's R is 2×(1, 2) with its summary; the
# rule recorded a decision about version 2 that agrees with the holdout
# figures it names (promoted when better, else kept), and production is
# then version 2 or 1 accordingly; the predict endpoint answers from the
# alias's version, before and after the restart.  Then a rule no version
# can meet (better_by 1): version 3, trained from production the same way,
# is recorded "kept" and neither production nor the endpoint moves.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
CSV=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv
[ -r "$CSV" ] || {
	echo "SKIP: $CSV is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
PY=/usr/bin/python3
L=$T/loop

# ---------------------------------------------------------------- the demo
rv=0
LOOP_DIR=$L LOOP_SUMMARY=$T/summary.json LOOP_K=100 \
	bash "$S/scripts/demo-loop" "$B" "$S" >"$T/demo.log" 2>&1 || rv=$?
[ $rv -eq 0 ] || { cat "$T/demo.log" >&2; fail "scripts/demo-loop exited $rv"; }
for s in 1 2 3 4 5 6 7 8; do has "$T/demo.log" "(stage $s: "; done
has "$T/demo.log" "The loop took "
ok "scripts/demo-loop ran its 8 stages to the end ($(grep -o 'The loop took [0-9.]* s' "$T/demo.log"))"

$PY - "$T/summary.json" "$L/data/2013.csv" "$L/data/2013-increment.csv" <<'PY' || fail "the demo's stages (see $T/summary.json)"
import csv, json, sys
s = json.load(open(sys.argv[1]))
r = s["round"]
assert (r["state"], r["model_version"], r["windows"], r["counts"]["queued"]) == ("open", 1, 352, 100), r
v = s["review"]
assert v["items"] == 100 and v["confirm"] + v["correct"] == 100, v
assert v["confirm"] > 0 and v["correct"] > 0, v  # the margin sampler picks hard cases
# the increment: the reviewed labels (the file's own) on 100 rows, the rest empty
orig = list(csv.DictReader(open(sys.argv[2])))
inc = list(csv.DictReader(open(sys.argv[3])))
assert len(inc) == len(orig) == 365
lab = [(o, i) for o, i in zip(orig, inc) if i["weather"]]
assert len(lab) == 100, len(lab)
assert all(o["weather"] == i["weather"] for o, i in lab)
assert all({k: x for k, x in o.items() if k != "weather"} == {k: x for k, x in i.items() if k != "weather"}
           for o, i in zip(orig, inc))
c = s["continual"]
assert c["increment"] == 2 and [len(x) for x in c["R"]] == [1, 2], c["R"]
assert c["metric"] == "accuracy" and c["higher_is_better"] is True, c
assert [i["index"] for i in c["increments"]] == [1, 2]
assert c["increments"][0]["data"].endswith("/2012.csv") and c["increments"][1]["data"].endswith("/2013-increment.csv")
assert c["R_before"][0] is None and c["R_before"][1] is not None, c["R_before"]
assert all(0.0 <= x <= 1.0 for row in c["R"] for x in row)
# the summary from R, with the contract's signs (accuracy: higher is better)
R = c["R"]
close = lambda a, b: abs(a - b) < 1e-6
assert close(c["average"], (R[1][0] + R[1][1]) / 2), c
assert close(c["forgetting"], R[0][0] - R[1][0]) and close(c["bwt"], R[1][0] - R[0][0]), c
assert close(c["fwt"], c["R_before"][1] - c["baseline"][1]), c
h = s["holdout"]
assert h["increments"] == 2 and h["windows"] == sum(i["test_windows"] for i in c["increments"]), h
assert h["init_model"] == "weather" and h["init_version"] == 1, h
# the shared holdout is the increments' test splits together: its accuracy
# is theirs weighted by windows, for this model (R's last row) and for
# version 1 (R[0][0] on 2012, R_before[1] on 2013)
n = [i["test_windows"] for i in c["increments"]]
assert close(h["model"]["accuracy"], (R[1][0] * n[0] + R[1][1] * n[1]) / sum(n)), (h, R, n)
assert close(h["init"]["accuracy"], (R[0][0] * n[0] + c["R_before"][1] * n[1]) / sum(n)), (h, R, n)
d = [x for x in s["decisions"]["decisions"] if x["version"] == 2]
assert len(d) == 1 and d[0]["action"] in ("promoted", "kept"), d
assert s["alias_version"] == (2 if d[0]["action"] == "promoted" else 1), (s["alias_version"], d)
assert s["endpoint_version"] == s["alias_version"], s
print(d[0]["action"])
PY
action=$($PY -c "import json; print([x for x in json.load(open('$T/summary.json'))['decisions']['decisions'] if x['version'] == 2][0]['action'])")
ok "round 1 queued 100 windows of 2013 scored by version 1, all decided; the increment holds the file's labels on exactly those rows; R is 2×(1, 2) with its summary; version 2 was $action by the rule and the endpoint answered from production"

# ---------------------------------------------------------------- what loomd kept, after a restart
start_loomd "$L/loomd.conf" "$L/state"
get() { curl -s -o "$T/body" -w '%{http_code}' "$URL$1" >"$T/code"; [ "$(cat "$T/code")" = 200 ] || fail "GET $1: HTTP $(cat "$T/code"): $(cat "$T/body")"; }
get /api/v1/models/weather/versions/2
cp "$T/body" "$T/v2.json"
get /api/v1/models/weather/deploy/decisions
cp "$T/body" "$T/decisions.json"
get /api/v1/models/weather/aliases/production
cp "$T/body" "$T/alias.json"
get /api/v1/models/weather/deploy
cp "$T/body" "$T/rule.json"
$PY - "$T/v2.json" "$T/decisions.json" "$T/alias.json" "$T/rule.json" "$T/summary.json" <<'PY' || fail "the registry after the loop"
import json, os, struct, sys
v2, dec, alias, rule, s = (json.load(open(f)) for f in sys.argv[1:6])
assert v2["task_id"] == s["task2"], (v2["task_id"], s["task2"])
assert v2["lineage"]["init"] == {"model": "weather", "version": 1}, v2["lineage"]
m = v2["metrics"]
for k in ("cl_average", "cl_forgetting", "cl_bwt", "cl_fwt", "holdout_accuracy", "holdout_init_accuracy"):
    assert k in m, (k, sorted(m))
assert abs(m["cl_average"] - s["continual"]["average"]) < 1e-9, (m["cl_average"], s["continual"]["average"])
assert abs(m["holdout_accuracy"] - s["holdout"]["model"]["accuracy"]) < 1e-9
assert abs(m["holdout_init_accuracy"] - s["holdout"]["init"]["accuracy"]) < 1e-9
assert "continual.safetensors" in [f["name"] for f in v2["files"]], v2["files"]
# continual.safetensors: the replay bank, the EWC terms, both increments' holdouts
raw = open(os.path.join(v2["dir"], "continual.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = json.loads(hdr["__metadata__"]["continual"])
names = set(hdr) - {"__metadata__"}
for t in ("memory.x", "memory.y", "holdout.1.x", "holdout.1.y", "holdout.2.x", "holdout.2.y"):
    assert t in names, (t, sorted(names))
bank = hdr["memory.x"]["shape"]
assert bank[1:] == [14, 4] and 0 < bank[0] <= 1000, bank
assert any(t.startswith("ewc.") and ".fisher." in t for t in names), sorted(names)
assert [len(r) for r in meta["R"]] == [1, 2] and len(meta["increments"]) == 2, meta
# the rule and its decisions
assert (rule["metric"], rule["alias"], rule["approval"]) == ("holdout_accuracy", "production", False), rule
d = [x for x in dec["decisions"] if x["version"] == 2]
assert len(d) == 1, dec
d = d[0]
better = m["holdout_accuracy"] > m["holdout_init_accuracy"] + rule["better_by"]
assert d["action"] == ("promoted" if better else "kept"), (d, m["holdout_accuracy"], m["holdout_init_accuracy"])
assert "holdout_accuracy" in d["reason"], d
assert d["metric"] == "holdout_accuracy" and d["against"] == 1, d
assert abs(d["value"] - m["holdout_accuracy"]) < 1e-9 and abs(d["against_value"] - m["holdout_init_accuracy"]) < 1e-9, (d, m)
assert alias["version"] == (2 if better else 1), alias
if s["v1_by"] == "rule":
    d1 = [x for x in dec["decisions"] if x["version"] == 1]
    assert len(d1) == 1 and d1[0]["action"] == "promoted", dec
PY
ok "after a restart: version 2's lineage, its cl_* and holdout_* metrics, its continual.safetensors (bank, EWC, holdouts); the rule's decision agrees with the holdout figures"

# the endpoint follows the alias after the restart too
curl -s -D "$T/headers" -o "$T/body" -H 'Content-Type: application/json' \
	--data-binary "{\"file\": \"$L/data/2013.csv\", \"from_line\": 300, \"to_line\": 320}" \
	"$URL/api/v1/models/weather/predict" >/dev/null
alias_v=$($PY -c "import json; print(json.load(open('$T/alias.json'))['version'])")
[ "$($PY -c "import json; print(json.load(open('$T/body'))['version'])")" = "$alias_v" ] ||
	fail "the endpoint did not answer from production (version $alias_v): $(head -c 400 "$T/body")"
ok "the predict endpoint answers from production, version $alias_v"

# ---------------------------------------------------------------- a version the rule keeps out
# better_by 1: no accuracy is better by more than 1, so version 3 (the
# same increment again, from production) is kept out and nothing moves
curl -s -o "$T/body" -X PUT -H 'Content-Type: application/json' \
	--data-binary '{"metric": "holdout_accuracy", "better_by": 1.0, "alias": "production"}' \
	"$URL/api/v1/models/weather/deploy" >/dev/null
task3=$(curl -s -H 'Content-Type: application/json' --data-binary @"$L/v2.json" \
	"$URL/api/v1/training/tasks" | $PY -c 'import json, sys; print(json.load(sys.stdin)["task_id"])')
wait_for "$task3" completed 300
get /api/v1/models/weather/deploy/decisions
cp "$T/body" "$T/decisions.json"
get /api/v1/models/weather/aliases/production
$PY - "$T/decisions.json" "$T/body" "$alias_v" <<'PY' || fail "the rule did not keep version 3 out: $(cat "$T/decisions.json")"
import json, sys
dec, alias, before = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
d = [x for x in dec["decisions"] if x["version"] == 3]
assert len(d) == 1 and d[0]["action"] == "kept" and d[0]["against"] == before, d
assert alias["version"] == before, alias
PY
curl -s -o "$T/body" -H 'Content-Type: application/json' \
	--data-binary "{\"file\": \"$L/data/2013.csv\", \"from_line\": 300, \"to_line\": 320}" \
	"$URL/api/v1/models/weather/predict"
[ "$($PY -c "import json; print(json.load(open('$T/body'))['version'])")" = "$alias_v" ] ||
	fail "the endpoint moved off production (version $alias_v): $(head -c 400 "$T/body")"
ok "a rule no version can meet (better_by 1) kept version 3 out: production and the endpoint stay on version $alias_v"

stop_loomd
ok "loomd stopped cleanly"
