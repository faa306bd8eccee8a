#!/bin/bash
# Structured logs end to end through a real loomd: a compute-exec task
# prints lines (stdout at info, stderr at warn); they are queried by level,
# keyword and time, loomd's own entries are there too, exports come in
# each format with their content type, loomctl logs takes its options, and
# bad parameters are 400s that name the parameter.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed (./bootstrap installs it)"; exit 77; }

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; };
logs = { retention = "30d"; archive = true; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"

api() { # PATH: status in $T/code, body in $T/body, content type in $T/type
	curl -s -o "$T/body" -w '%{http_code} %{content_type}' "$URL$1" >"$T/meta"
	cut -d' ' -f1 "$T/meta" >"$T/code"
	cut -d' ' -f2- "$T/meta" >"$T/type"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
n_logs() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["logs"]))' "$T/body"; }

cat >"$T/exec.json" <<'EOF'
{"compute": "exec",
 "command": ["/bin/sh", "-c", "echo 'starting the zebra run'; echo 'quota nearly exceeded' >&2; for i in 1 2 3 4 5; do echo \"plain line $i\"; done; echo 'the zebra run is done'"]}
EOF
expect 0 loomctl --url "$URL" submit "$T/exec.json" --start
deadline=$((SECONDS + 30))
# grep reads all of it: grep -q would stop at the match, and under pipefail
# loomctl's next write (a status over 4 KiB) would fail the pipeline
until loomctl --url "$URL" --json status task-1 2>/dev/null | grep '"status": "completed"' >/dev/null; do
	[ $SECONDS -lt $deadline ] || fail "task-1 did not complete: $(loomctl --url "$URL" status task-1)"
	sleep 0.2
done

# ---------------------------------------------------------------- queries
api "/api/v1/training/tasks/task-1/logs"
code 200
has "$T/body" '"status":"completed"'
has "$T/body" '"message":"plain line 3"'
all=$(n_logs)
[ "$all" -ge 8 ] || fail "task-1 has $all entries, expected at least the command's 8 lines"
api "/api/v1/training/tasks/task-1/logs?level=warn"
code 200
has "$T/body" "quota nearly exceeded"
hasnt "$T/body" "plain line"
api "/api/v1/training/tasks/task-1/logs?q=zebra"
code 200
[ "$(n_logs)" = 2 ] || fail "q=zebra found $(n_logs) entries, expected 2"
api "/api/v1/training/tasks/task-1/logs?q=%22run+is+done%22"
code 200
[ "$(n_logs)" = 1 ] || fail "a phrase found $(n_logs) entries"
api "/api/v1/training/tasks/task-1/logs?since=1h&order=desc&limit=2"
code 200
[ "$(n_logs)" = 2 ] || fail "limit=2 gave $(n_logs) entries"
api "/api/v1/training/tasks/task-1/logs?until=2000-01-01"
code 200
[ "$(n_logs)" = 0 ] || fail "until=2000-01-01 gave $(n_logs) entries"
ok "task logs: level, keyword, phrase, time, order and limit filters"

api "/api/v1/logs?job=host"
code 200
has "$T/body" '"job":null'
has "$T/body" "loomd ready: API on"
api "/api/v1/logs?job=host&instance=loomd&q=ready"
code 200
[ "$(n_logs)" -ge 1 ] || fail "loomd's own "ready" line is not stored"
api "/api/v1/logs?job=task-1&q=zebra"
code 200
[ "$(n_logs)" = 2 ] || fail "host route job=task-1 q=zebra: $(n_logs)"
ok "host entries: loomd's own lines are stored and searchable"

# ---------------------------------------------------------------- exports
api "/api/v1/training/tasks/task-1/logs?format=jsonl"
code 200
has "$T/type" "application/x-ndjson"
python3 -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 8, lines
for l in lines:
    json.loads(l)
' "$T/body" || fail "the jsonl export is not JSON lines"
api "/api/v1/training/tasks/task-1/logs?format=csv&level=warn"
code 200
has "$T/type" "text/csv"
has "$T/body" "id,time,level,job,instance,message,fields"
has "$T/body" ",warn,,worker,quota nearly exceeded,{}"
api "/api/v1/logs?format=text&job=task-1&q=zebra"
code 200
has "$T/type" "text/plain"
has "$T/body" "[task-1:worker] starting the zebra run"
ok "exports: jsonl, csv and text with their content types"

# ---------------------------------------------------------------- loomctl
expect 0 loomctl --url "$URL" logs task-1 --level warn
has "$T/out" "warn  quota nearly exceeded"
hasnt "$T/out" "plain line"
expect 0 loomctl --url "$URL" logs task-1 --grep "zebra done"
has "$T/out" "the zebra run is done"
hasnt "$T/out" "starting"
expect 0 loomctl --url "$URL" logs task-1 --limit 3
[ "$(wc -l <"$T/out")" = 3 ] || fail "--limit 3 printed $(wc -l <"$T/out") lines"
expect 0 loomctl --url "$URL" logs task-1 --since 2000-01-01T00:00:00Z --until 10000000000000
has "$T/out" "plain line 5"
expect 0 loomctl --url "$URL" logs task-1 --format csv --grep quota
has "$T/out" "quota nearly exceeded"
has "$T/out" "id,time,level"
expect 0 loomctl --url "$URL" logs task-1 --format jsonl --limit 1
[ "$(wc -l <"$T/out")" = 1 ] || fail "--format jsonl --limit 1"
expect 0 loomctl --url "$URL" logs task-1 -f
has "$T/out" "plain line 5"
expect 0 loomctl --url "$URL" logs --host --instance loomd --grep ready
has "$T/out" "[loomd:loomd]"
expect 0 loomctl --url "$URL" --json logs --host --level warn --limit 5
expect 2 loomctl --url "$URL" logs --level warn
has "$T/err" "give a task ID or --host"
expect 2 loomctl --url "$URL" logs task-1 --format xml
has "$T/err" "use text, jsonl or csv"
ok "loomctl logs: --level, --grep, --limit, --since/--until, --format, -f, --host"

# ---------------------------------------------------------------- bad parameters
bad() { # QUERY TEXT: a 400 whose message contains TEXT
	api "/api/v1/training/tasks/task-1/logs?$1"
	code 400
	has "$T/body" "$2"
}
bad "level=loud" 'level: \"loud\" is not a level'
bad "since=yesterday" 'since: \"yesterday\" is not a time'
bad "q=%22unterminated" 'q: \"\"unterminated\" is not a search'
bad "q=AND" "q: "
bad "limit=0" "limit: "
bad "format=xml" 'format: \"xml\"'
bad "order=sideways" 'order: \"sideways\"'
api "/api/v1/logs?job=nine"
code 400
has "$T/body" 'job: \"nine\" is not a task id'
api "/api/v1/training/tasks/task-99/logs"
code 404
expect 1 loomctl --url "$URL" logs task-1 --grep '"oops'
has "$T/err" "is not a search"
ok "bad parameters: 400 naming the parameter; an unknown task is a 404"

stop_loomd
# the entries outlive loomd: a restart still serves them
start_loomd "$T/loomd.conf" "$state"
api "/api/v1/training/tasks/task-1/logs?q=zebra"
code 200
[ "$(n_logs)" = 2 ] || fail "after a restart q=zebra found $(n_logs)"
stop_loomd
ok "entries survive a restart"
