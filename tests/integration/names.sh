#!/bin/bash
# Names and what loomctl prints, through a real loomd on loopback: task,
# config, run, tag and alert-rule names holding a control character, a bidi
# override (U+202E) or the like are refused with 400 naming the key and the
# code point; text that comes from a task (its log lines, its failure
# reason) holding escape sequences and U+202E is printed by loomctl visibly
# escaped, never raw, while --json stays JSON that means the same text.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed (./bootstrap installs it)"; exit 77; }

state=$T/state
cat >"$T/loomd.conf" <<CONF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "exec"; module = "compute-exec"; }
);
CONF
start_loomd "$T/loomd.conf" "$state"

post() { # PATH JSON: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--data-binary "$2" "$URL$1" >"$T/code"
}
refused() { # PATH JSON TEXT: a 400 whose message holds TEXT
	post "$1" "$2"
	[ "$(cat "$T/code")" = 400 ] || { cat "$T/body" >&2; fail "POST $1 $2: HTTP $(cat "$T/code"), expected 400"; }
	has "$T/body" "$3"
}

# ---------------------------------------------------------------- names
SPEC='{"compute": "exec", "command": ["true"]}'
refused /api/v1/training/tasks "{\"name\": \"a\\u001b[31mred\", \"spec\": $SPEC}" \
	'name: U+001B (a control character) at character 2 is not allowed in names'
refused /api/v1/training/tasks "{\"name\": \"invoice\\u202egpj.exe\", \"spec\": $SPEC}" \
	'name: U+202E (a bidi control'
refused /api/v1/training/tasks "{\"spec\": {\"name\": \"x\\u0085y\", \"compute\": \"exec\", \"command\": [\"true\"]}}" \
	'spec.name: U+0085 (a control character)'
refused /api/v1/training/tasks "{\"name\": \"x\\u2066y\", \"spec\": $SPEC}" 'name: U+2066'
refused /api/v1/training/configs "{\"name\": \"cfg\\u202e\", \"spec\": $SPEC}" 'name: U+202E'
refused /api/v1/runs '{"name": "run\u200f"}' 'name: U+200F'
refused /api/v1/runs '{"name": "run", "tags": {"k": "v\u001b]0;x\u0007"}}' 'tags.k: U+001B'
refused /api/v1/alerts/rules '{"name": "r", "condition": {"kind": "failed"}, "job": "x\u202e*", "actions": [{"type": "bus"}]}' \
	'job: U+202E'
post /api/v1/training/tasks "{\"name\": \"caf\\u00e9-\\u4e2d\\u6587\", \"spec\": $SPEC}"
[ "$(cat "$T/code")" = 201 ] || { cat "$T/body"; fail "a name in plain UTF-8 was refused"; }
ok "names with control characters and bidi controls refused naming the key and code point"

# ---------------------------------------------------------------- what loomctl prints
printf '#!/bin/sh\nprintf %s >&2\nexit 3\n' \
	"'title \\033]0;pwned\\007 clear \\033[2J\\033[31m red \\342\\200\\256evil\\n'" >"$T/noisy.sh"
chmod +x "$T/noisy.sh"
cat >"$T/noisy.json" <<JSON
{"name": "noisy", "compute": "exec", "command": ["$T/noisy.sh"]}
JSON
expect 0 loomctl --url "$URL" --json submit "$T/noisy.json" --start
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["task_id"])' "$T/out")
deadline=$((SECONDS + 60))
# grep reads all of it: grep -q would stop at the match, and under pipefail
# loomctl's next write (a status over 4 KiB) would fail the pipeline
until loomctl --url "$URL" --json status "$id" 2>/dev/null | grep '"status": "failed"' >/dev/null; do
	[ $SECONDS -lt $deadline ] || fail "$id did not fail: $(loomctl --url "$URL" status "$id")"
	sleep 0.2
done
ESC=$(printf '\033')
RLO=$(printf '\342\200\256')
# the line is logged: loomctl logs prints it escaped
expect 0 loomctl --url "$URL" logs "$id"
has "$T/out" 'title \x1b]0;pwned\x07 clear \x1b[2J\x1b[31m red \u202eevil'
! grep -q "$ESC" "$T/out" || fail "loomctl logs printed a raw ESC"
! grep -q "$RLO" "$T/out" || fail "loomctl logs printed a raw U+202E"
# the failure reason, with the task's last words, through status
expect 0 loomctl --url "$URL" status "$id"
! grep -q "$ESC" "$T/out" || fail "loomctl status printed a raw ESC"
! grep -q "$RLO" "$T/out" || fail "loomctl status printed a raw U+202E"
# errors on stderr too: a refusal whose message quotes what was sent
expect 1 loomctl --url "$URL" logs "$id" --grep "$(printf 'x\033[2Jy')" --level nonsense
! grep -q "$ESC" "$T/err" || fail "loomctl printed a raw ESC on stderr"
# --json: JSON, the text kept
expect 0 loomctl --url "$URL" --json logs "$id"
python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert any("\x1b]0;pwned\x07" in e["message"] and "\u202eevil" in e["message"] for e in lines), lines' "$T/out" ||
	fail "loomctl --json logs lost the text"
ok "loomctl logs and status print control and bidi characters escaped; --json keeps them"
stop_loomd
