#!/bin/bash
# loomctl label (host/cli/loomctl-label.c) against a real loomd, on a
# seattle-weather classifier (python3-vega-datasets) trained here on
# 2012-2014 and promoted, reviewing 2015:
# - create, list, status; a round over a relative --data path (made
#   absolute) with --wait until it is open; next shows the item (window,
#   prediction, score and why, lease); decide confirm, correct, skip and
#   flag, each as the API stored it; a second reviewer shares the queue
#   and cannot decide an item leased to the first;
# - export as CSV and as JSON, to standard output and to a file written
#   whole, with one row per confirmed or corrected item, as decided;
# - export --apply: the round's data file written again with the labels in
#   the label column (added when the file has none, replaced byte-exactly
#   in a CRLF file with quoted fields), --only corrected; a file that is
#   not the one the round scored (a line gone, a date changed, a column
#   missing) refused naming the difference; a forecaster's labels refused;
# - a forecaster's corrections: comma-separated numbers take the shape of
#   the prediction's values, JSON is sent as given;
# - a round whose scoring fails: --wait exits 1 naming the error;
# - refusals exit 1 with loomd's message (a missing project, a name that
#   must be escaped, a class the model lacks, an item already decided,
#   data outside data_roots); bad usage exits 2 with the usage text.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA/seattle-weather.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
py() { /usr/bin/python3 "$@"; }
# jq-like: EXPR over the JSON in FILE as b
pj() { py -c "import json,sys; b=json.load(open(sys.argv[1])); print($2)" "$1"; }

# the training years and the later one, without its labels, under data_roots
mkdir -p "$T/data" "$T/elsewhere"
{ head -n 1 "$DATA/seattle-weather.csv"; grep -E '^201[234]' "$DATA/seattle-weather.csv"; } >"$T/data/train.csv"
py - "$DATA/seattle-weather.csv" "$T/data/new.csv" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["date"].startswith("2015")]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["date", "precipitation", "temp_max", "temp_min", "wind"])
    for r in rows:
        w.writerow([r["date"], r["precipitation"], r["temp_max"], r["temp_min"], r["wind"]])
EOF
# 2015 without the wind column: its scoring fails
cut -d, -f1-4 "$T/data/new.csv" >"$T/data/nowind.csv"
cp "$T/data/new.csv" "$T/elsewhere/new.csv"

cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T/data" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; },
  { instance = "forecast"; module = "head-forecast"; },
  { instance = "margin"; module = "sampler-margin"; },
  { instance = "variance"; module = "sampler-variance"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; }
);
EOF
start_loomd "$T/loomd.conf" "$T/state"
ok "loomd started at $URL"
export LOOM_URL=$URL
ME=$(loomctl --json whoami | pj /dev/stdin 'b["user"]')

# ---------------------------------------------------------------- usage
usage() { # ARGS...: exit 2 with the usage text
	expect 2 loomctl label "$@"
	has "$T/err" "label create NAME --model M --sampler S"
}
usage
usage frobnicate
usage list extra
usage create wr --model weather
usage create wr --sampler margin --model
usage create --model weather --sampler margin
usage status
usage status wr --wait
usage round wr
usage round wr --data x.csv --frob 1
usage next
usage decide 3
usage decide 3 approve
has "$T/err" '"approve" is not an action'
usage decide 3 correct
has "$T/err" "correct needs the right label"
usage decide 3 confirm --label rain
usage export wr --format xml
usage wait wr
expect 2 loomctl label decide abc confirm
has "$T/err" '"abc" is not an item id'
expect 2 loomctl label create wr --model weather --sampler margin --k many
has "$T/err" '--k: "many" is not a whole number'
expect 2 loomctl --json label export wr --format csv
has "$T/err" "two different outputs"
ok "bad usage exits 2 with the usage text and what is wrong"

# ---------------------------------------------------------------- the model
cat >"$T/weather.json" <<EOF
{"name": "weather", "compute": "transformer",
 "data": {"path": "$T/data/train.csv", "time_column": "date",
          "features": ["precipitation", "temp_max", "temp_min", "wind"],
          "target": "weather", "split": [0.7, 0.1, 0.2]},
 "model": {"head": "classification", "context": 14, "patch": 1, "stride": 1,
           "d_model": 32, "heads": 4, "layers": 2, "ffn": 64, "dropout": 0.1,
           "revin": false, "channel_independent": false},
 "train": {"epochs": 2, "batch": 32, "lr": 1e-3, "weight_decay": 0.01,
           "schedule": "cosine", "warmup_steps": 20, "seed": 7}}
EOF
expect 0 loomctl submit "$T/weather.json" --start --cpu 1
wait_for task-1 completed 300
# before a promote the alias names no version
expect 1 loomctl label create wr --model weather --sampler margin
has "$T/err" "loomd refused (HTTP"
has "$T/err" "production"
expect 0 loomctl models promote weather 1
ok "a classifier trained on 2012-2014, promoted (v1); before that create named the missing alias"

# ---------------------------------------------------------------- create, list, status
expect 0 loomctl label list
has "$T/out" "(0 projects)"
expect 0 loomctl label create wr --model weather --sampler margin --k 6 --lease 10m
has "$T/out" "labeling project wr: weather@production, sampler margin, 6 items a round, lease 600 s"
expect 1 loomctl label create wr --model weather --sampler margin
has "$T/err" 'a labeling project called "wr" exists'
expect 1 loomctl label create other --model weather --sampler nosuch
has "$T/err" 'no sampler instance "nosuch"'
expect 1 loomctl label create other --model nosuch --sampler margin
has "$T/err" 'no model "nosuch"'
expect 1 loomctl label create other --model weather --sampler margin --lease 0
has "$T/err" "lease:"
expect 0 loomctl --json label create short --model weather --sampler margin --lease 90
[ "$(pj "$T/out" '(b["lease_seconds"], b["k"], b["alias"])')" = "(90, 50, 'production')" ] ||
	fail "create --json: $(cat "$T/out")"
expect 0 loomctl label list
has "$T/out" "(2 projects)"
grep -Eq '^wr +weather@production +margin +0 +0 +0 +0 +0$' "$T/out" || fail "list: $(cat "$T/out")"
expect 0 loomctl label status wr
has "$T/out" "project   wr (owner $ME"
has "$T/out" "model     weather@production, sampler margin, 6 items a round, lease 600 s"
has "$T/out" "items     0 queued, 0 leased, 0 done, 0 flagged (0 in all)"
has "$T/out" "(no rounds yet: loomctl label round wr --data FILE starts one)"
expect 0 loomctl label next wr
has "$T/out" "no item to review: the project has no rounds yet"
ok "create (k, lease), list and status; next says there are no rounds yet; refusals exit 1"

# ---------------------------------------------------------------- missing projects and names
for cmd in "status nope" "next nope" "round nope --data $T/data/new.csv" "export nope"; do
	# shellcheck disable=SC2086
	expect 1 loomctl label $cmd
	has "$T/err" 'there is no labeling project "nope"'
done
# a name that would be another path unescaped reaches loomd as one segment
expect 1 loomctl label status 'wr/rounds/1'
has "$T/err" 'there is no labeling project "wr/rounds/1"'
expect 1 loomctl label next '../projects'
has "$T/err" 'there is no labeling project "../projects"'
ok "a missing project exits 1 with loomd's message, whatever its name holds"

# ---------------------------------------------------------------- a round
expect 1 loomctl label round wr --data "$T/elsewhere/new.csv" --wait
has "$T/err" "outside the directories tasks may read (data_roots"
# relative to the current directory: loomd gets the absolute path
(cd "$T/data" && expect 0 loomctl label round wr --data new.csv --k 5 --seed 3 --wait)
grep -Eq '^round 1 of wr: scoring \(task-[0-9]+, version 1, k 5, seed 3\)$' "$T/out" ||
	fail "round: $(cat "$T/out")"
grep -Eq '^round 1 of wr: open \(task-[0-9]+, version 1, k 5, seed 3\), 5 items from [0-9]+ windows$' "$T/out" ||
	fail "round --wait: $(cat "$T/out")"
expect 0 loomctl --json label status wr
[ "$(pj "$T/out" '[(r["number"], r["state"], r["data"], r["k"], r["seed"], r["model_version"], r["counts"]["queued"]) for r in b["rounds"]]')" = \
	"[(1, 'open', '$T/data/new.csv', 5, 3, 1, 5)]" ] || fail "status --json: $(cat "$T/out")"
expect 0 loomctl label status wr
has "$T/out" "items     5 queued, 0 leased, 0 done, 0 flagged (5 in all)"
grep -Eq "^ +1 open +task-[0-9]+ +1 +5 +3 +5 +0 +0 +0 .* $T/data/new.csv\$" "$T/out" ||
	fail "status: $(cat "$T/out")"
ok "round over a relative --data path: absolute in the round, --wait until open, 5 items queued"

# ---------------------------------------------------------------- next
expect 0 loomctl --json label next wr
cp "$T/out" "$T/n1.json"
I1=$(pj "$T/n1.json" 'b["item"]["id"]')
[ "$(pj "$T/n1.json" '(b["item"]["rank"], b["item"]["state"], b["item"]["lease"]["user"], b["item"]["task"], b["item"]["version"])')" = \
	"(1, 'leased', '$ME', 'classification', 1)" ] || fail "next --json: $(cat "$T/n1.json")"
# asking again: the same item, the caller's own lease first
expect 0 loomctl label next wr
has "$T/out" "item      $I1 of wr: round 1, rank 1 (1 = most informative), leased"
has "$T/out" "model     weather version 1 (classification)"
grep -Eq "^lease     $ME, [0-9]+ s left \(until 20" "$T/out" || fail "next: no lease line: $(cat "$T/out")"
has "$T/out" "by margin: $(pj "$T/n1.json" 'b["item"]["why"]')"
has "$T/out" "window    lines $(pj "$T/n1.json" 'b["item"]["window"]["first_line"]')-$(pj "$T/n1.json" 'b["item"]["window"]["last_line"]') of $T/data/new.csv, 2015"
has "$T/out" "(14 rows)"
for ch in precipitation temp_max temp_min wind; do
	grep -Eq "^ +$ch( +-?[0-9.e+-]+){5}\$" "$T/out" || fail "next: no summary of $ch: $(cat "$T/out")"
done
# the window's summary is the window's: wind's last value and mean
py - "$T/n1.json" "$T/out" <<'EOF' || fail "the window summary differs from the item's values"
import json, re, sys
item = json.load(open(sys.argv[1]))["item"]
wind = [row[3] for row in item["window"]["values"]]
line = next(l for l in open(sys.argv[2]) if re.match(r"^ +wind ", l)).split()
assert abs(float(line[2]) - wind[-1]) <= 1e-5 * max(1, abs(wind[-1])), (line, wind)
assert abs(float(line[5]) - sum(wind) / len(wind)) <= 1e-5 * max(1, abs(sum(wind) / len(wind))), (line, wind)
EOF
P1=$(pj "$T/n1.json" 'b["item"]["prediction"]["label"]')
has "$T/out" "predicted $P1 ($P1 "
has "$T/out" "decide    loomctl label decide $I1 confirm|correct --label L|skip|flag"
ok "next leases item $I1 (rank 1) and shows its lease, score and why, window summary, prediction"

# ---------------------------------------------------------------- decide
expect 0 loomctl label decide "$I1" confirm
has "$T/out" "item $I1 confirm: $P1 (predicted $P1) by $ME"
grep -Eq "^next: item [0-9]+ \(round 1, rank 2\), leased to you for [0-9]+ s" "$T/out" || fail "decide: $(cat "$T/out")"
expect 0 loomctl --json label next wr
I2=$(pj "$T/out" 'b["item"]["id"]')
P2=$(pj "$T/out" 'b["item"]["prediction"]["label"]')
C2=$(pj "$T/out" '[c for c in b["item"]["prediction"]["classes"] if c != b["item"]["prediction"]["label"]][0]')
expect 1 loomctl label decide "$I2" correct --label hail
has "$T/err" "label: expected one of the model's classes"
expect 0 loomctl label decide "item-$I2" correct --label "$C2" --note "looked it up"
has "$T/out" "item $I2 correct: $C2 (predicted $P2) by $ME"
expect 0 loomctl --json label next wr
I3=$(pj "$T/out" 'b["item"]["id"]')
expect 0 loomctl label decide "$I3" skip
has "$T/out" "item $I3 skipped: back in the queue for the other reviewers"
expect 0 loomctl --json label next wr
I4=$(pj "$T/out" 'b["item"]["id"]')
[ "$I4" != "$I3" ] || fail "the skipped item $I3 was offered again"
expect 0 loomctl --json label decide "$I4" flag --note "sensor?"
[ "$(pj "$T/out" '(b["item"]["state"], b["item"]["decision"]["action"], b["item"]["decision"]["note"])')" = \
	"('flagged', 'flag', 'sensor?')" ] || fail "flag --json: $(cat "$T/out")"
I5=$(pj "$T/out" 'b["next"]["id"]')
expect 1 loomctl label decide "$I1" confirm
has "$T/err" "loomd refused (HTTP 409)"
has "$T/err" "is decided already"
expect 1 loomctl label decide 999999 confirm
has "$T/err" 'there is no labeling item "999999"'
expect 1 loomctl label decide 999999 correct --label rain
has "$T/err" 'there is no labeling item "999999"'
ok "decide: confirm, correct (a class the model lacks refused), skip (not offered again), flag; a decided or missing item exits 1"

# ---------------------------------------------------------------- a second reviewer
expect 0 loomctl users add bob
BOB=$(loomctl tokens create --user bob -q)
LOOM_TOKEN=$BOB expect 1 loomctl label next wr
has "$T/err" 'there is no labeling project "wr"'
expect 0 loomctl share labeling wr bob write
LOOM_TOKEN=$BOB expect 0 loomctl --json label next wr
[ "$(pj "$T/out" 'b["item"]["id"]')" = "$I3" ] || fail "bob did not get the skipped item $I3: $(cat "$T/out")"
LOOM_TOKEN=$BOB expect 1 loomctl label decide "$I5" confirm
has "$T/err" "loomd refused (HTTP 409)"
has "$T/err" "(another reviewer does)"
LOOM_TOKEN=$BOB expect 0 loomctl label decide "$I3" confirm
has "$T/out" "item $I3 confirm:"
has "$T/out" "by bob"
ok "bob, sharing the project for writing, gets the item $ME skipped and cannot decide $ME's leased item"

# ---------------------------------------------------------------- export
expect 0 loomctl label export wr
cp "$T/out" "$T/stdout.csv"
echo stale >"$T/inc.csv"
expect 0 loomctl label export wr --format csv -o "$T/inc.csv"
has "$T/err" "wrote $T/inc.csv ("
cmp -s "$T/stdout.csv" "$T/inc.csv" || fail "the CSV on standard output and in the file differ"
ls "$T"/inc.csv.* 2>/dev/null && fail "a temporary file was left beside inc.csv"
expect 0 loomctl --json label export wr
cp "$T/out" "$T/inc.json"
expect 0 loomctl label export wr --format json --round 1 -o "$T/inc1.json"
py - "$T/inc.csv" "$T/inc.json" "$T/inc1.json" "$I1:confirm:$P1:$ME" "$I2:correct:$C2:$ME" "$I3:confirm::bob" <<'EOF' ||
import csv, json, sys
want = [w.split(":") for w in sys.argv[4:]]
rows = list(csv.DictReader(open(sys.argv[1])))
doc = json.load(open(sys.argv[2]))
one = json.load(open(sys.argv[3]))
assert len(rows) == 3 and doc["count"] == 3 and len(doc["labels"]) == 3, (rows, doc["count"])
byid = {r["item"]: r for r in rows}
for item, action, label, user in want:
    r = byid[item]
    j = next(l for l in doc["labels"] if str(l["item"]) == item)
    assert r["action"] == action == j["action"], (r, j)
    assert r["user"] == user == j["user"], (r, j)
    assert r["round"] == "1" and r["model"] == "weather" and r["model_version"] == "1", r
    assert r["sampler"] == "margin", r
    if action == "confirm":
        assert r["label"] == r["predicted"] == j["label"], (r, j)
    else:
        assert r["label"] == label == j["label"] and r["predicted"] != label, (r, j)
    if label:
        assert r["label"] == label, (r, label)
assert sorted(doc["reviewers"]) == sorted({w[3] for w in want}), doc["reviewers"]
assert doc["project"]["name"] == "wr" and doc["project"]["model"] == "weather", doc["project"]
assert [l["item"] for l in one["labels"]] == [l["item"] for l in doc["labels"]], one
EOF
	fail "the exports do not match the decisions: $(cat "$T/inc.csv")"
expect 1 loomctl label export wr -o "$T/no/such/dir/x.csv"
has "$T/err" "cannot write $T/no/such/dir/x.csv"
ok "export: CSV and JSON, stdout and -o FILE (written whole), three rows as decided (the skip, the flag and the lease left out)"

# ---------------------------------------------------------------- export --apply
# the round's data file written again with the labels in the label column:
# new.csv (CRLF, as Python's csv module writes) has none, so "weather" is added last, set on each labelled
# window's last row and empty elsewhere; every other byte as it was
expect 0 loomctl label export wr --apply "$T/data/new.csv" -o "$T/applied.csv"
has "$T/err" "wrote $T/applied.csv: 3 rows labelled in column \"weather\", added last (all labels of project wr, model weather version 1)"
expect 0 loomctl label export wr --apply "$T/data/new.csv"
cmp -s "$T/out" "$T/applied.csv" || fail "--apply on standard output and in the file differ"
expect 0 loomctl label export wr --apply "$T/data/new.csv" --only corrected -o "$T/corrected.csv"
has "$T/err" "1 rows labelled"
# the same file with CRLF line ends, quoted dates and a stale weather
# column in the middle: that column is replaced, the rest kept byte for byte
py - "$T/data/new.csv" "$T/data/crlf.csv" <<'EOF'
import sys
lines = open(sys.argv[1], newline="").read().splitlines()
out = []
for i, l in enumerate(lines):
    f = l.split(",")
    f.insert(2, "weather" if i == 0 else '"old, stale"')
    if i:
        f[0] = '"' + f[0] + '"'
    out.append(",".join(f))
open(sys.argv[2], "w", newline="").write("\r\n".join(out) + "\r\n")
EOF
expect 0 loomctl label export wr --apply "$T/data/crlf.csv" -o "$T/crlf-applied.csv"
has "$T/err" "3 rows labelled in column \"weather\" (all labels"
py - "$T/inc.json" "$T/data/new.csv" "$T/applied.csv" "$T/corrected.csv" "$T/data/crlf.csv" "$T/crlf-applied.csv" <<'EOF' ||
import json, sys
doc = json.load(open(sys.argv[1]))
want = {l["last_line"]: l["label"] for l in doc["labels"]}
fixed = {l["last_line"]: l["label"] for l in doc["labels"] if l["action"] == "correct"}
assert len(want) == 3 and len(fixed) == 1, doc["labels"]
def check(path, labels, col, original):
    data, was_data = open(path, "rb").read(), open(original, "rb").read()
    assert was_data.endswith(b"\r\n") and data.endswith(b"\r\n"), data[-10:]
    lines, orig = data.split(b"\r\n"), was_data.split(b"\r\n")
    assert len(lines) == len(orig), (path, len(lines), len(orig))
    for n, (got, was) in enumerate(zip(lines, orig), start=1):
        if not was:
            assert got == was
            continue
        g, w = got.split(b","), was.split(b",")
        if col is None:        # added last
            head, cell = got.rsplit(b",", 1)
            assert head == was, (n, got, was)
        elif n == 1:           # the header has the column already
            assert got == was, (got, was)
            continue
        else:                  # the stale column, which itself held a comma
            assert w[2] == b'"old', w
            cell = g[2]
            assert g[:2] + g[3:] == w[:2] + w[4:], (n, got, was)
        if n == 1:
            assert cell == b"weather", (n, cell)
        else:
            assert cell == labels.get(n, "").encode(), (n, cell, labels.get(n))
check(sys.argv[3], want, None, sys.argv[2])
check(sys.argv[4], fixed, None, sys.argv[2])
check(sys.argv[6], want, 2, sys.argv[5])
EOF
	fail "--apply did not write the labels as the export has them"
# refusals: another file (a line gone, a date changed, a column missing),
# labels of a forecaster, bad usage
sed '3d' "$T/data/new.csv" >"$T/data/short.csv"
expect 1 loomctl label export wr --apply "$T/data/short.csv" -o "$T/x.csv"
has "$T/err" "this is not the file its round scored ($T/data/new.csv)"
[ ! -e "$T/x.csv" ] || fail "a refused --apply wrote its output"
LAST=$(pj "$T/inc.json" 'b["labels"][0]["last_line"]')
py - "$T/data/new.csv" "$T/data/moved.csv" "$LAST" <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
n = int(sys.argv[3]) - 1
lines[n] = "1999" + lines[n][4:]
open(sys.argv[2], "w").write("\n".join(lines))
EOF
expect 1 loomctl label export wr --apply "$T/data/moved.csv"
has "$T/err" "moved.csv:$LAST: date is \"1999"
has "$T/err" "and the export recorded \"2015"
cut -d, -f1-4 "$T/data/new.csv" >"$T/data/nowind-apply.csv"
expect 1 loomctl label export wr --apply "$T/data/nowind-apply.csv"
has "$T/err" "nowind-apply.csv:1: no column \"wind\", an input of model \"weather\" version 1"
expect 1 loomctl label export wr --apply "$T/data/absent.csv"
has "$T/err" "cannot read $T/data/absent.csv"
expect 1 loomctl label export nope --apply "$T/data/new.csv"
has "$T/err" 'there is no labeling project "nope"'
usage export wr --apply "$T/data/new.csv" --only wrong
has "$T/err" '--only "wrong": give corrected, confirmed or all'
usage export wr --apply "$T/data/new.csv" --format csv
has "$T/err" "takes no --format or --json"
usage export wr --only corrected
# the increment committed to a dataset's branch: the same bytes as -o wrote
expect 0 loomctl data create wr-labels
expect 0 loomctl label export wr --apply "$T/data/new.csv" --dataset wr-labels --branch round1
has "$T/out" "round1"
expect 0 loomctl data checkout wr-labels round1 -o "$T/committed.csv"
# (the dataset keeps rows with "\n" endings: new.csv's "\r\n" normalized)
sed 's/\r$//' "$T/applied.csv" >"$T/applied-lf.csv"
cmp -s "$T/committed.csv" "$T/applied-lf.csv" ||
	fail "the dataset's increment differs from --apply's file (line endings aside)"
expect 0 loomctl --json data log wr-labels round1
has "$T/out" "labels of project wr (all, all rounds) applied to $T/data/new.csv"
expect 0 loomctl label export wr --apply "$T/data/new.csv" --dataset wr-labels -o "$T/applied2.csv"
cmp -s "$T/applied2.csv" "$T/applied.csv" || fail "--dataset with -o wrote another file"
expect 2 loomctl label export wr --apply "$T/data/new.csv" --dataset 'no/such'
usage export wr --dataset wr-labels
has "$T/err" "give --apply DATA.csv too"
usage export wr --apply "$T/data/new.csv" --branch b1
has "$T/err" "give --dataset too"
ok "export --apply --dataset: the increment committed to a dataset branch, with the project in its message"
ok "export --apply: the round's file again with the labels in its label column (added, or replaced byte-exactly in a CRLF file with quotes); another file, missing columns and bad usage refused"

# ---------------------------------------------------------------- status and list after review
expect 0 loomctl label status wr
has "$T/out" "items     0 queued, 1 leased, 3 done, 1 flagged (5 in all)"
expect 0 loomctl label list
grep -Eq '^wr +weather@production +margin +0 +1 +3 +1 +1$' "$T/out" || fail "list: $(cat "$T/out")"
ok "status and list count 3 done, 1 flagged and item $I5 leased"

# ---------------------------------------------------------------- a forecaster's labels
# two days of temp_max ahead: --label's numbers take the prediction's shape
cat >"$T/tmax.json" <<EOF
{"name": "tmax", "compute": "transformer",
 "data": {"path": "$T/data/train.csv", "time_column": "date",
          "features": ["precipitation", "temp_max", "temp_min", "wind"], "target": ["temp_max"]},
 "model": {"head": "forecast", "context": 14, "horizon": 2, "patch": 2, "stride": 2,
           "d_model": 16, "heads": 2, "layers": 1, "ffn": 32, "dropout": 0.1},
 "train": {"epochs": 2, "batch": 32, "warmup_steps": 2, "seed": 5}}
EOF
expect 0 loomctl submit "$T/tmax.json" --start --cpu 1
TASK=$(cut -d' ' -f1 "$T/out")
wait_for "$TASK" completed 300
expect 0 loomctl models promote tmax 1
expect 0 loomctl label create fc --model tmax --sampler variance --k 2
expect 0 loomctl label round fc --data "$T/data/new.csv" --wait
has "$T/out" "2 items from"
expect 0 loomctl --json label next fc
F1=$(pj "$T/out" 'b["item"]["id"]')
[ "$(pj "$T/out" '(b["item"]["task"], len(b["item"]["prediction"]["values"]), len(b["item"]["prediction"]["uncertainty"]))')" = \
	"('forecast', 2, 2)" ] || fail "the forecast item: $(cat "$T/out")"
expect 0 loomctl label next fc
has "$T/out" "model     tmax version 1 (forecast)"
has "$T/out" "predicted 2 steps ahead (± the spread of Monte-Carlo-dropout passes)"
grep -Eq '^ +h1 +temp_max -?[0-9.e+-]+ ±[0-9.e+-]+$' "$T/out" || fail "forecast: no step 1: $(cat "$T/out")"
grep -Eq '^ +h2 +temp_max -?[0-9.e+-]+ ±[0-9.e+-]+$' "$T/out" || fail "forecast: no step 2: $(cat "$T/out")"
expect 2 loomctl label decide "$F1" correct --label 1.5
has "$T/err" "1 number given; the prediction has 2"
expect 2 loomctl label decide "$F1" correct --label 1.5,x
has "$T/err" "expected finite numbers separated by commas"
expect 2 loomctl label decide "$F1" correct --label '[[1.5],'
has "$T/err" "not JSON"
expect 0 loomctl --json label decide "$F1" correct --label "10.5, 11"
[ "$(pj "$T/out" 'b["item"]["decision"]["label"]')" = "[[10.5], [11.0]]" ] || fail "the numbers' shape: $(cat "$T/out")"
F2=$(pj "$T/out" 'b["next"]["id"]')
expect 1 loomctl label decide "$F2" correct --label '[9, 8]'
has "$T/err" "label: expected finite numbers shaped as the prediction's"
expect 0 loomctl label decide "$F2" correct --label '[[9], [8.25]]'
expect 0 loomctl --json label export fc
[ "$(pj "$T/out" '[l["label"] for l in b["labels"]]')" = "[[[10.5], [11.0]], [[9], [8.25]]]" ] ||
	fail "the forecast export: $(cat "$T/out")"
expect 1 loomctl label export fc --apply "$T/data/new.csv"
has "$T/err" "model \"tmax\" version 1 is a forecast model; --apply writes class labels"
ok "a forecast's corrections: \"10.5, 11\" shaped as [[10.5], [11]], JSON as given; wrong counts and shapes refused; --apply refused"

# ---------------------------------------------------------------- a round that fails
expect 1 loomctl label round wr --data "$T/data/nowind.csv" --wait
grep -Eq '^round 2 of wr: scoring' "$T/out" || fail "round 2: $(cat "$T/out")"
has "$T/err" "loomctl: round 2 of wr failed: "
has "$T/err" "wind"
expect 0 loomctl --json label status wr
[ "$(pj "$T/out" 'b["rounds"][1]["state"]')" = failed ] || fail "round 2: $(cat "$T/out")"
expect 0 loomctl label status wr
has "$T/out" "      error: "
ok "a round whose scoring fails: --wait exits 1 naming the error; status shows it"

stop_loomd
ok "loomd stopped cleanly"
