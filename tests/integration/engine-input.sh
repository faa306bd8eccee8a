#!/bin/bash
# compute-transformer's input checks through a real loomd: degenerate specs
# (features = [], target = [], split [1, 0, 0], a batch of 1,048,576) are
# refused at submission with 400 naming the key; a data.path that is
# missing, unreadable, a directory, a FIFO or a device fails the task with one and
# the same message, so a client cannot tell which paths exist; a file that
# is not a CSV (a shadow-like file) fails without quoting its content; a
# header of 3,000,000 columns (26 MB) is refused at once, naming the count
# and the bound, instead of spinning in a quadratic duplicate check; a batch
# larger than the data's windows is clamped with a warning.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
# /dev: the worker's own refusal of a device (below) is under test, past data_roots
data_roots = [ "$T", "/usr/lib/python3/dist-packages/vega_datasets/_data", "/dev" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"

api() { # METHOD PATH [BODY]: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data-binary "$3"} \
		"$URL$2" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
field() { # TASK EXPR: a value of GET /training/tasks/TASK
	curl -s "$URL/api/v1/training/tasks/$1" |
		python3 -c "import json,sys; t=json.load(sys.stdin); print($2)"
}
ends_failed() { # TASK: wait (60 s at most) until it has failed; its error in $T/error
	local i=0 s
	while :; do
		s=$(field "$1" 't["status"]')
		case $s in
		failed) field "$1" 't.get("error", "")' >"$T/error"; return 0 ;;
		completed|cancelled) fail "$1 ended $s, not failed" ;;
		esac
		i=$((i + 1))
		[ $i -gt 600 ] && fail "$1 is $s, not failed, after 60s"
		sleep 0.1
	done
}
submit() { # DATA-JSON [TRAIN-JSON]: POST a started task; its id in $T/id
	api POST /api/v1/training/tasks "{\"spec\": {\"data\": $1, \"model\": {\"context\": 4, \
\"horizon\": 2, \"patch\": 2, \"d_model\": 8, \"heads\": 2, \"layers\": 1, \"ffn\": 8}, \
\"train\": ${2:-{\"epochs\": 1\}}}, \"start\": true}"
	python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['task_id'])" "$T/body" >"$T/id" 2>/dev/null || true
}

# ---------------------------------------------------------------- refused at submission
submit '{"path": "x.csv", "features": []}'
code 400; has "$T/body" "data.features: an empty list"
submit '{"path": "x.csv", "target": []}'
code 400; has "$T/body" "data.target: an empty list"
submit '{"path": "x.csv", "split": [1, 0, 0]}'
code 400; has "$T/body" "data.split: the validation fraction is 0"
submit '{"path": "x.csv", "split": [0.8, 0.2, 0]}'
code 400; has "$T/body" "data.split: the test fraction is 0"
submit '{"path": "x.csv"}' '{"batch": 1048576}'
code 400; has "$T/body" "train.batch: "; has "$T/body" "is out of range; use a value from 1 to 8192"
ok "features = [], target = [], split [1, 0, 0] and [0.8, 0.2, 0], batch 1048576: 400 naming the key"

# ---------------------------------------------------------------- data.path: one message
mkdir -p "$T/closed" "$T/dir"
printf 'v\n1\n2\n' >"$T/closed/data.csv"
chmod 000 "$T/closed"
mkfifo "$T/fifo"
paths=("$T/nope.csv" "$T/dir" "$T/fifo" /dev/zero)
# root reads a file whatever its mode: the unreadable case needs another user
[ "$(id -u)" = 0 ] || paths+=("$T/closed/data.csv")
n=0
for p in "${paths[@]}"; do
	submit "{\"path\": \"$p\"}"
	code 201
	ends_failed "$(cat "$T/id")"
	has "$T/error" "data.path \"$p\": cannot read it (missing, not a regular file, or not readable by loomd's user)"
	sed -e "s|$p|PATH|" "$T/error" >"$T/error.$n"
	[ $n -eq 0 ] || cmp -s "$T/error.0" "$T/error.$n" ||
		fail "the error for $p differs from a missing file's: $(cat "$T/error.$n") vs $(cat "$T/error.0")"
	n=$((n + 1))
done
chmod 700 "$T/closed"
[ "$(id -u)" = 0 ] && echo "note: run as root, so a file's mode cannot make it unreadable: that case was left out"
ok "data.path missing, unreadable, a directory, a FIFO, a device: the same message, naming only the path"

# ---------------------------------------------------------------- no file content in errors
cat >"$T/shadow" <<'EOF'
root:$6$Zm9vYmFy$hWv0Q3xq0Zl5eSECRETHASH:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
bin:*:19000:0:99999:7:::
EOF
submit "{\"path\": \"$T/shadow\", \"time_column\": \"date\"}"
code 201
ends_failed "$(cat "$T/id")"
has "$T/error" "not a CSV with a header row of column names"
hasnt "$T/error" "SECRET"
hasnt "$T/error" "daemon"
{ printf 't,v\n1,1\n2,SECRETVALUE\n'; for i in $(seq 3 60); do echo "$i,$i"; done; } >"$T/value.csv"
submit "{\"path\": \"$T/value.csv\", \"features\": [\"v\"]}"
code 201
ends_failed "$(cat "$T/id")"
has "$T/error" "value.csv:3: column \"v\": the value is not a number"
hasnt "$T/error" "SECRETVALUE"
ok "a non-CSV file and a bad value: errors name the line and column, never the content"

# ---------------------------------------------------------------- a 3,000,000-column header
python3 - "$T/wide.csv" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write(",".join("c%d" % i for i in range(3000000)))
    f.write("\n")
EOF
submit "{\"path\": \"$T/wide.csv\"}"
code 201
ends_failed "$(cat "$T/id")"
has "$T/error" "wide.csv:1: the header names 3000000 columns; at most 65536 are supported"
ok "a 26 MB header of 3,000,000 columns: refused at once, naming the count and the bound"

# ---------------------------------------------------------------- a batch larger than the data
# 300 rows: 205 training windows; a batch of 8,192 is clamped, with a warning
python3 - "$T/sine.csv" <<'EOF'
import math, sys
with open(sys.argv[1], "w") as f:
    f.write("t,v\n")
    for i in range(300):
        f.write("%d,%.6f\n" % (i, math.sin(i / 5.0)))
EOF
cat >"$T/big-batch.json" <<EOF
{"data": {"path": "$T/sine.csv", "time_column": "t"},
 "model": {"context": 4, "horizon": 2, "patch": 2, "d_model": 8, "heads": 2, "layers": 1, "ffn": 8},
 "train": {"epochs": 2, "batch": 8192, "warmup_steps": 1}}
EOF
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 "$B/host/loom-worker" --threads 1 --run "$T/big-batch.json" --out "$T/big"
has "$T/err" "train.batch is 8192, more windows than the data has (train 205, validation 29, test 59): batches hold at most 205 windows, one training step per epoch"
[ -s "$T/big/last.safetensors" ] || fail "the clamped run wrote no weights"
ok "train.batch 8192 on 205 training windows: clamped to 205 with a warning, and the run completes"

stop_loomd
