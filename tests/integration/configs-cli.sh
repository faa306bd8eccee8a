#!/bin/bash
# loomctl configs against a real loomd on loopback: every subcommand in
# text and with --json; a libconfig round trip (create, export, create from
# the export: the same spec); an update makes version 2 and version 1 stays
# readable; validate names each problem and exits 1; templates printed as
# text that stores as the same spec; a task submitted from a stored config
# version; delete; and the exit statuses: 1 refused, 2 bad usage,
# 3 unreachable.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

# jfield FILE FILTER: a value of the JSON in FILE (FILTER: ".", ".a.b[0]"),
# strings raw; fails when FILE is not JSON.
if command -v jq >/dev/null; then
	jfield() { jq -r "$2" "$1"; }
elif [ -x /usr/bin/python3 ]; then
	jfield() {
		/usr/bin/python3 -c '
import json, re, sys
d = json.load(open(sys.argv[1]))
for k, i in re.findall(r"\.(\w+)|\[(\d+)\]", sys.argv[2]):
    d = d.get(k) if k else d[int(i)]
print(d if isinstance(d, str) else json.dumps(d, indent=2))' "$1" "$2"
	}
else
	echo "SKIP: neither jq nor /usr/bin/python3 is installed to read --json output"
	exit 77
fi
# is FILE FILTER VALUE: the value in FILE is VALUE.
is() {
	local v
	v=$(jfield "$1" "$2") || { cat "$1" >&2; fail "$1 is not JSON"; }
	[ "$v" = "$3" ] || { cat "$1" >&2; fail "$2 is \"$v\", expected \"$3\""; }
}

state=$T/state
mkdir -p "$state"
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; };
plugins = (
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; }
);
EOF
sed -e 's/epochs = 40;/epochs = 1;/' "$S/etc/jobs/seattle-temps-forecast.conf" >"$T/tiny.conf"
sed -e 's/epochs = 1;/epochs = 2;/' "$T/tiny.conf" >"$T/tiny2.conf"
grep -v '^name = ' "$T/tiny.conf" >"$T/unnamed.conf"
cat >"$T/bad.conf" <<'EOF'
data = { path = "/nowhere.csv"; features = ["a"]; target = ["a"]; };
model = { head = "forecast"; d_model = "big"; };
train = { epochz = 3; };
EOF
printf 'model = { d_model = ; };\n' >"$T/syntax.conf"

export LOOM_TEMPLATES=$S/etc/templates
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

# loomctl without its libtool wrapper script, which costs ~0.2 s a call on
# a loaded machine (most of this test's time): libtool's execute mode names
# the program the wrapper runs and the library path it needs.
prog= libs=
IFS='|' read -r prog libs < <($LIBTOOL --mode=execute sh -c \
	'printf "%s|%s\n" "$1" "${LD_LIBRARY_PATH:-}"' sh "$LOOMCTL") || true
if [ -x "$prog" ] && [ -n "$libs" ]; then
	ctl() { LD_LIBRARY_PATH=$libs "$prog" --url "$URL" "$@"; }
else
	ctl() { loomctl --url "$URL" "$@"; }
fi

# ---------------------------------------------------------------- bad usage: 2
expect 0 ctl configs list
has "$T/out" "(0 of 0)"
expect 0 ctl configs
has "$T/out" "(0 of 0)"
expect 2 ctl configs bogus
has "$T/err" 'unknown command "bogus"'; has "$T/err" "loomctl configs validate FILE"
expect 2 ctl configs show
has "$T/err" "usage: configs show ID [--version N] [--format libconfig|json]"
expect 2 ctl configs show banana
has "$T/err" '"banana" is not a config id; ids look like config-3'
expect 2 ctl configs show 1 --format yaml
has "$T/err" '--format "yaml": give libconfig or json'
expect 2 ctl configs show 1 --version two
has "$T/err" '--version: "two" is not a whole number'
expect 2 ctl --json configs show 1 --format libconfig
has "$T/err" "give one of them"
expect 2 ctl configs list --limit x
expect 2 ctl configs list --offset
expect 2 ctl configs create
has "$T/err" "usage: configs create FILE"
expect 2 ctl configs create "$T/tiny.conf" "$T/tiny2.conf"
expect 2 ctl configs create "$T/tiny.conf" --nmae x
expect 2 ctl configs create "$T/missing.conf"
has "$T/err" "cannot read $T/missing.conf"
expect 2 ctl configs create "$T/syntax.conf" --name s
has "$T/err" "syntax.conf:1: syntax error"
expect 2 ctl configs create - <"$T/unnamed.conf"
has "$T/err" "give the config a name with --name NAME"
expect 2 ctl configs update 1
has "$T/err" "usage: configs update ID FILE"
expect 2 ctl configs delete
expect 2 ctl configs versions 1 2
expect 2 ctl configs validate
expect 2 ctl configs templates forecast
expect 2 ctl configs template ../etc
has "$T/err" "is not a template name"
expect 2 ctl submit --config 1 "$T/tiny.conf"
has "$T/err" "not both"
expect 2 ctl submit "$T/tiny.conf" --version 1
has "$T/err" "--version N goes with --config ID"
ok "bad usage exits 2 with a line saying what to do"

# ---------------------------------------------------------------- create, show, round trip
expect 0 ctl configs create "$T/tiny.conf" --name tiny --description "one epoch" --comment first
has "$T/out" "config-1 tiny version 1"
expect 1 ctl configs create "$T/tiny.conf" --name tiny
has "$T/err" "HTTP 409"; has "$T/err" 'a config named "tiny" already exists (config-1)'
expect 0 ctl configs create "$T/tiny.conf"
has "$T/out" "config-2 seattle-temps-forecast version 1" # the spec's name setting
expect 0 ctl configs create "$T/unnamed.conf"
has "$T/out" "config-3 unnamed version 1"                 # the file's name
expect 1 ctl configs create "$T/tiny.conf"
has "$T/err" "HTTP 409"; has "$T/err" "came from the spec's name setting; give another with --name"
expect 0 ctl configs show config-1
has "$T/out" "config-1  tiny  version 1 of 1"; has "$T/out" "one epoch"
has "$T/out" "train.epochs = 1"; has "$T/out" 'model.head = "forecast"'
has "$T/out" "data.split = [0.7,0.1,0.2]"
expect 0 ctl configs show 1 --format libconfig
cp "$T/out" "$T/export.conf"
has "$T/export.conf" "# tiny: config-1 version 1, exported by Loom"
has "$T/export.conf" "epochs = 1;"
expect 0 ctl configs create "$T/export.conf" --name tiny-copy
has "$T/out" "config-4 tiny-copy version 1"
expect 0 ctl configs show 1 --format json
cp "$T/out" "$T/1.json"
expect 0 ctl configs show 4 --format json
cmp "$T/1.json" "$T/out" || fail "config-4, created from config-1's libconfig export, has another spec"
jfield "$T/1.json" . >/dev/null || fail "show --format json is not JSON"
expect 0 ctl configs show 4 --format libconfig
tail -n +2 "$T/out" >"$T/4.conf"
tail -n +3 "$T/export.conf" | cmp - "$T/4.conf" || fail "config-4 exports other libconfig text"
ok "create (names from --name, the spec, the file), show, and the libconfig round trip"

# ---------------------------------------------------------------- versions
expect 0 ctl configs update 1 "$T/tiny2.conf" --comment "two epochs"
has "$T/out" "config-1 tiny version 2"
expect 0 ctl configs versions config-1
has "$T/out" "config-1  tiny"
grep -Eq '^ +1 [0-9T:.-]+Z +first$' "$T/out" || fail "no version 1 line in $(cat "$T/out")"
grep -Eq '^ +2 [0-9T:.-]+Z +two epochs$' "$T/out" || fail "no version 2 line in $(cat "$T/out")"
expect 0 ctl configs show 1
has "$T/out" "version 2 of 2"; has "$T/out" "train.epochs = 2"
expect 0 ctl configs show 1 --version 1
has "$T/out" "version 1 of 2"; has "$T/out" "train.epochs = 1"
expect 0 ctl configs show 1 --version 1 --format libconfig
has "$T/out" "config-1 version 1"; has "$T/out" "epochs = 1;"
expect 1 ctl configs show 1 --version 3
has "$T/err" "config-1 has no version 3"
expect 0 ctl configs update 3 "$T/tiny.conf" --name renamed --description "now named"
has "$T/out" "config-3 renamed version 2"
expect 1 ctl configs update 3 "$T/tiny.conf" --name tiny
has "$T/err" "HTTP 409"
expect 1 ctl configs update 99 "$T/tiny.conf"
has "$T/err" "there is no config-99"
ok "update stores version 2 with its comment; version 1 stays readable; rename"

# ---------------------------------------------------------------- validate
expect 0 ctl configs validate "$T/tiny.conf"
has "$T/out" "$T/tiny.conf: OK"
expect 0 ctl configs validate - <"$T/tiny.conf"
has "$T/out" "stdin: OK"
expect 1 ctl configs validate "$T/bad.conf"
has "$T/err" "model.d_model: expected an integer, got a string"
has "$T/err" "train.epochz: unknown setting (did you mean epochs?)"
[ "$(grep -c "^$T/bad.conf: " "$T/err")" -ge 2 ] || fail "validate did not print each problem on its own line"
hasnt "$T/out" "OK"
expect 1 ctl configs validate "$T/syntax.conf"
has "$T/err" "syntax.conf:1: syntax error"
expect 1 ctl configs create "$T/bad.conf" --name bad
has "$T/err" "HTTP 400"; has "$T/err" "model.d_model"
ok "validate: OK, or each problem on its own line and exit 1"

# ---------------------------------------------------------------- list
expect 0 ctl configs list
has "$T/out" "(4 of 4)"
grep -Eq '^config-1 +2 [0-9T:.-]+Z tiny$' "$T/out" || fail "no config-1 row in $(cat "$T/out")"
expect 0 ctl configs list --limit 1 --offset 1
has "$T/out" "config-3"; hasnt "$T/out" "config-4"; has "$T/out" "(1 of 4)"
expect 0 ctl configs --limit 2
has "$T/out" "config-4"; has "$T/out" "config-3"; has "$T/out" "(2 of 4)"
expect 1 ctl configs list --limit 0
has "$T/err" "HTTP 400"; has "$T/err" "limit"
ok "list: a table newest first, paged"

# ---------------------------------------------------------------- templates
expect 0 ctl configs templates
for t in anomaly classification failure-fine-tune forecast incremental regression; do has "$T/out" "$t"; done
has "$T/out" "Forecast: the next 24 hours"
expect 0 ctl configs template forecast
cp "$T/out" "$T/forecast.conf"
head -n 1 "$T/forecast.conf" | grep -q '^# Forecast: ' || fail "the template text starts with $(head -n 1 "$T/forecast.conf")"
expect 0 ctl configs create "$T/forecast.conf" --name fc
has "$T/out" "config-5 fc version 1"
expect 0 ctl --json configs template forecast
jfield "$T/out" .spec >"$T/template.spec"
expect 0 ctl configs show 5 --format json
jfield "$T/out" . | cmp - "$T/template.spec" || fail "config-5, stored from the template's text, has another spec"
expect 0 ctl configs create - --name fc-stdin < <(ctl configs template forecast)
has "$T/out" "config-6 fc-stdin version 1"
expect 1 ctl configs template nope
has "$T/err" "HTTP 404"; has "$T/err" 'no template "nope"'
ok "templates listed; a template printed as text stores as the same spec"

# ---------------------------------------------------------------- --json
expect 0 ctl --json configs list
is "$T/out" .total 6; is "$T/out" '.configs[0].config_id' config-6
expect 0 ctl --json configs show 1 --version 1
is "$T/out" .version 1; is "$T/out" .versions 2; is "$T/out" .spec.train.epochs 1
expect 0 ctl --json configs show 1 --format json
is "$T/out" .train.epochs 2
expect 0 ctl --json configs versions 1
is "$T/out" '.versions[1].comment' "two epochs"
expect 0 ctl --json configs create "$T/tiny.conf" --name tiny-json
is "$T/out" .config_id config-7; is "$T/out" .version 1
expect 0 ctl --json configs update 7 "$T/tiny2.conf"
is "$T/out" .version 2
expect 0 ctl --json configs validate "$T/tiny.conf"
is "$T/out" .valid true
expect 1 ctl --json configs validate "$T/bad.conf"
is "$T/out" .error.code invalid
expect 0 ctl --json configs templates
is "$T/out" '.templates[3].name' forecast
expect 1 ctl --json configs show 99
is "$T/out" .error.code not_found
expect 0 ctl --json configs delete 7
is "$T/out" .config_id config-7; is "$T/out" .deleted true
ok "--json prints the API's JSON for every subcommand, refusals included"

# ---------------------------------------------------------------- submit from a stored config
expect 0 ctl submit --config config-1 --version 1 --name from-config
has "$T/out" "task-1 pending"
expect 0 ctl --json status task-1
is "$T/out" .config_id config-1; is "$T/out" .config_version 1
expect 0 ctl submit --config 1
has "$T/out" "task-2 pending"
expect 0 ctl --json status task-2
is "$T/out" .config_version 2
expect 1 ctl submit --config 99
has "$T/err" "HTTP 404"; has "$T/err" "there is no config-99"
ok "submit --config ID [--version N]: a task from a stored config version"

# ---------------------------------------------------------------- delete
expect 0 ctl configs delete 4
has "$T/out" "config-4 deleted"
expect 1 ctl configs show 4
has "$T/err" "HTTP 404"; has "$T/err" "config-4 was deleted"
expect 1 ctl configs delete config-4
expect 1 ctl configs versions 4
expect 1 ctl configs show 4 --format libconfig
has "$T/err" "config-4 was deleted"
expect 1 ctl configs show 123
has "$T/err" "there is no config-123"
expect 0 ctl configs create "$T/export.conf" --name tiny-copy
has "$T/out" "tiny-copy version 1"    # the name is free again
ok "delete: the config is gone (exit 1), its name free"

# ---------------------------------------------------------------- unreachable: 3
stop_loomd
expect 3 ctl configs list
has "$T/err" "cannot reach loomd"
expect 3 ctl configs validate "$T/tiny.conf"
ok "loomd stopped: exit 3"
