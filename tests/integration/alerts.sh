#!/bin/bash
# Alerts end to end through a real loomd on loopback: rules added with
# `loomctl alerts add` (JSON and libconfig) and bad ones refused with the
# key named; compute-exec jobs (shell scripts printing JSON lines) that
# push a metric over a threshold, print a NaN loss, diverge, fail with an
# error log line and stall; a webhook listener on loopback (Python's
# http.server) that must receive each alert exactly once within the repeat
# interval; a command action that writes a file; `loomctl alerts` listing
# and showing them; the bus action's outcome stored with each alert.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: /usr/bin/python3 is missing (the webhook listener is Python)"; exit 77; }

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 8; };
alerts = { command_actions = true; };  # the loss-nan rule runs a command
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

"$PY" "$S/tests/helpers/webhook-listen.py" "$T/hook.port" "$T/hooks" &
HOOK_PID=$!
trap 'kill $HOOK_PID 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do [ -s "$T/hook.port" ] && break; sleep 0.1; done
[ -s "$T/hook.port" ] || fail "the webhook listener did not start"
HOOK=http://127.0.0.1:$(cat "$T/hook.port")/hook
touch "$T/hooks"

# ---------------------------------------------------------------- bad rules
cat >"$T/bad1.json" <<EOF
{"name": "bad", "condition": {"kind": "metric_above", "metric": "loss", "threshold": "ten"},
 "actions": [{"type": "bus"}]}
EOF
expect 1 loomctl --url "$URL" alerts add "$T/bad1.json"
has "$T/err" "condition.threshold: must be a number"
cat >"$T/bad2.json" <<EOF
{"name": "bad", "condition": {"kind": "stalld", "seconds": 3}, "actions": [{"type": "bus"}]}
EOF
expect 1 loomctl --url "$URL" alerts add "$T/bad2.json"
has "$T/err" 'unknown kind "stalld" (did you mean "stalled"?)'
cat >"$T/bad3.json" <<EOF
{"name": "bad", "condition": {"kind": "failed"}, "actions": [{"type": "webhook", "url": "ftp://x"}]}
EOF
expect 1 loomctl --url "$URL" alerts add "$T/bad3.json"
has "$T/err" "actions[0].url: \"ftp://x\" is not an http:// or https:// URL"
cat >"$T/bad4.json" <<EOF
{"name": "bad", "condition": {"kind": "failed"}, "actions": [{"type": "webhook", "url": "http://169.254.169.254/latest/meta-data/"}]}
EOF
expect 1 loomctl --url "$URL" alerts add "$T/bad4.json"
has "$T/err" '169.254.169.254 is not one of them'
has "$T/err" 'alerts.webhook_hosts in loomd.conf'
cat >"$T/bad5.json" <<EOF
{"name": "bad", "condition": {"kind": "failed"}, "actions": [{"type": "webhook", "url": "http://127.0.0.1/x\r\nX-Evil: 1"}]}
EOF
expect 1 loomctl --url "$URL" alerts add "$T/bad5.json"
has "$T/err" 'a line break'
expect 2 loomctl --url "$URL" alerts add "$T/missing.json"
expect 1 loomctl --url "$URL" alerts show 999
expect 0 loomctl --url "$URL" alerts rules
has "$T/out" "no alert rules"
ok "bad rules refused naming the key"

# ---------------------------------------------------------------- rules
add_rule() { # FILE: the new rule's id on stdout
	expect 0 loomctl --url "$URL" --json alerts add "$1"
	"$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$T/out"
}
cat >"$T/r-high.json" <<EOF
{"name": "grad-high", "condition": {"kind": "metric_above", "metric": "grad_norm", "threshold": 10},
 "actions": [{"type": "webhook", "url": "$HOOK"}, {"type": "bus"}], "repeat_interval": "1h"}
EOF
cat >"$T/r-nan.conf" <<EOF
# libconfig works too
name = "loss-nan";
condition = { kind = "metric_nonfinite"; metric = "loss"; };
actions = ( { type = "webhook"; url = "$HOOK"; },
            { type = "command"; command = "echo \"\$LOOM_ALERT_JOB \$LOOM_ALERT_VALUE\" >> $T/cmd.out"; } );
EOF
cat >"$T/r-div.json" <<EOF
{"name": "diverging", "condition": {"kind": "divergence", "metric": "loss", "percent": 50, "window": 4},
 "actions": [{"type": "webhook", "url": "$HOOK"}]}
EOF
cat >"$T/r-log.json" <<EOF
{"name": "error-log", "condition": {"kind": "log", "level": "error", "keyword": "status 4"},
 "actions": [{"type": "webhook", "url": "$HOOK"}]}
EOF
cat >"$T/r-stall.json" <<EOF
{"name": "stall", "condition": {"kind": "stalled", "seconds": 2}, "job": "stuck-*",
 "actions": [{"type": "webhook", "url": "$HOOK"}]}
EOF
cat >"$T/r-fail.json" <<EOF
{"name": "failures", "condition": {"kind": "failed"}, "actions": [{"type": "webhook", "url": "$HOOK"}]}
EOF
R_HIGH=$(add_rule "$T/r-high.json")
R_NAN=$(add_rule "$T/r-nan.conf")
R_DIV=$(add_rule "$T/r-div.json")
R_LOG=$(add_rule "$T/r-log.json")
R_STALL=$(add_rule "$T/r-stall.json")
R_FAIL=$(add_rule "$T/r-fail.json")
expect 0 loomctl --url "$URL" alerts rules
for n in grad-high loss-nan diverging error-log stall failures; do has "$T/out" "$n"; done
has "$T/out" "stuck-*"
expect 1 loomctl --url "$URL" alerts add "$T/r-fail.json"
has "$T/err" 'an alert rule named "failures" exists'
ok "six rules added (JSON and libconfig); a taken name refused"

# ---------------------------------------------------------------- jobs
script() { # NAME BODY: an executable shell script
	printf '#!/bin/sh\n%s\n' "$2" >"$T/$1.sh"
	chmod +x "$T/$1.sh"
}
# (a pause between lines: the worker reports the newest value of each
# metric, and every one of these must be seen)
script high 'for v in 5 12 15 11; do echo "{\"step\": $v, \"grad_norm\": $v}"; sleep 0.3; done'
script nan 'echo "{\"step\": 1, \"loss\": 0.5}"; echo "{\"step\": 2, \"loss\": \"NaN\"}"'
script div 'for v in 1.0 0.8 0.7 0.75 1.2 1.3; do echo "{\"step\": 1, \"loss\": $v}"; sleep 0.3; done'
script err 'echo "{\"step\": 1, \"loss\": 0.1}"; echo exploded >&2; exit 4'
script stall 'echo "{\"step\": 1, \"total_steps\": 2}"; sleep 5; echo "{\"step\": 2}"'
submit() { # NAME SCRIPT: the task id
	curl -s -X POST -H 'Content-Type: application/json' \
		--data-binary "{\"name\": \"$1\", \"spec\": {\"compute\": \"exec\", \"command\": [\"$T/$2.sh\"]}, \"start\": true}" \
		"$URL/api/v1/training/tasks" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["task_id"])'
}
J_HIGH=$(submit high-1 high)
J_NAN=$(submit nan-1 nan)
J_DIV=$(submit div-1 div)
J_ERR=$(submit err-1 err)
J_STALL=$(submit stuck-1 stall)
wait_done() { # TASK: wait until it has ended
	for _ in $(seq 300); do
		s=$(curl -s "$URL/api/v1/training/tasks/$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])')
		case $s in completed|failed|cancelled) echo "$s"; return 0 ;; esac
		sleep 0.1
	done
	fail "$1 did not end within 30 s"
}
for j in $J_HIGH $J_NAN $J_DIV $J_STALL; do [ "$(wait_done "$j")" = completed ] || fail "$j did not complete"; done
[ "$(wait_done "$J_ERR")" = failed ] || fail "$J_ERR did not fail"
ok "five compute-exec jobs ran ($J_HIGH $J_NAN $J_DIV $J_ERR $J_STALL)"

# ---------------------------------------------------------------- webhooks
# (rule, task) pairs the webhook must have received, each exactly once
want="grad-high $J_HIGH
loss-nan $J_NAN
diverging $J_DIV
error-log $J_ERR
failures $J_ERR
stall $J_STALL"
pairs() {
	"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    a = json.loads(line)
    print(a["rule"], a["task_id"])' "$T/hooks" | sort
}
for _ in $(seq 150); do
	[ "$(pairs | wc -l)" -ge 6 ] && break
	sleep 0.1
done
sleep 1 # anything more would come now
[ "$(pairs)" = "$(echo "$want" | sort)" ] || {
	echo "webhook got:"; cat "$T/hooks"; fail "the webhook did not get each alert exactly once"
}
grep -F '"rule": "loss-nan"' "$T/hooks" >/dev/null || grep -F '"rule":"loss-nan"' "$T/hooks" >/dev/null ||
	fail "webhook bodies are not the alert JSON"
"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    a = json.loads(line)
    if a["rule"] == "loss-nan":
        assert a["value"] == "NaN", a
    if a["rule"] == "grad-high":
        assert a["value"] == 12, a
        assert "grad_norm = 12 at step 12, above 10" in a["message"], a
    if a["rule"] == "stall":
        assert a["value"] >= 2, a' "$T/hooks" || fail "wrong alert contents"
ok "the webhook got each alert once: over a threshold (twice matched), NaN, divergence, error log, failure, stall"

# ---------------------------------------------------------------- command, listing
for _ in $(seq 50); do [ -s "$T/cmd.out" ] && break; sleep 0.1; done
[ "$(cat "$T/cmd.out")" = "$J_NAN NaN" ] || fail "the command wrote \"$(cat "$T/cmd.out" 2>/dev/null)\""
ok "the command action ran with LOOM_ALERT_JOB and LOOM_ALERT_VALUE"

expect 0 loomctl --url "$URL" alerts
for n in grad-high loss-nan diverging error-log stall failures; do has "$T/out" "$n"; done
has "$T/out" "(6 of 6)"
expect 0 loomctl --url "$URL" --json alerts --rule "$R_FAIL"
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["total"] == 1, d' "$T/out" ||
	fail "--rule did not filter"
expect 0 loomctl --url "$URL" --json alerts --job "$J_ERR" --limit 1
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["total"] == 2 and len(d["alerts"]) == 1, d' "$T/out" ||
	fail "--job/--limit did not filter"
id=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["alerts"][0]["id"])' "$T/out")
expect 0 loomctl --url "$URL" alerts show "$id"
has "$T/out" "webhook 200"
expect 0 loomctl --url "$URL" --json alerts --rule "$R_HIGH"
"$PY" -c '
import json, sys
a = json.load(open(sys.argv[1]))["alerts"][0]
bus = [x for x in a["actions"] if x["type"] == "bus"][0]
hook = [x for x in a["actions"] if x["type"] == "webhook"][0]
assert bus["ok"] is True and hook["status"] == 200, a' "$T/out" || fail "action outcomes not stored"
ok "loomctl alerts lists, filters and shows them with their actions' outcomes (bus event published)"

# ---------------------------------------------------------------- disable, delete, restart
expect 0 loomctl --url "$URL" alerts disable "$R_FAIL"
has "$T/out" "disabled"
J2=$(submit err-2 err)
[ "$(wait_done "$J2")" = failed ] || fail "$J2 did not fail"
# error-log's webhook for it comes a moment after the task failed: wait for it
for _ in $(seq 300); do grep -q "$J2\"" "$T/hooks" && break; sleep 0.1; done
sleep 1 # the disabled rule's would have come by now
[ "$(grep -c "$J2\"" "$T/hooks")" = 1 ] || { cat "$T/hooks"; fail "a disabled rule fired (or error-log did not)"; }
expect 0 loomctl --url "$URL" alerts delete "$R_STALL"
expect 1 loomctl --url "$URL" alerts delete "$R_STALL"
stop_loomd
start_loomd "$T/loomd.conf" "$state"
expect 0 loomctl --url "$URL" alerts rules
hasnt "$T/out" "stall "
has "$T/out" "failures"
expect 0 loomctl --url "$URL" alerts
has "$T/out" "(7 of 7)"
ok "disable, delete, and rules and alerts kept across a restart"
stop_loomd
kill $HOOK_PID
wait $HOOK_PID 2>/dev/null || true
