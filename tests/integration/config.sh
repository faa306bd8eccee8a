#!/bin/bash
# loomd's command line and --check-config: the good file exits 0, every bad
# one exits 1 naming file, line, setting and a fix, plugin config maps are
# checked too, and bad usage exits 2.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

conf() { cat >"$T/$1"; }

# ---------------------------------------------------------------- the shipped default
LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS expect 0 loomd -c "$S/etc/loomd.conf" --check-config
has "$T/out" "loomd.conf: OK (17 plugin instances: sched=sched-local, transformer=compute-transformer, forecast=head-forecast, regression=head-regression, classification=head-classification, anomaly=head-anomaly, exec=compute-exec, store=storage-local, scratch=storage-memory, tensorboard=tracker-tensorboard, jsonl=tracker-jsonl, onnx=exporter-onnx, safetensors=exporter-safetensors, report=exporter-report, csv=exporter-csv, json=exporter-json, reservoir=sampler-reservoir)"
ok "etc/loomd.conf passes --check-config"

conf good.conf <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS", "$LOOM_TEST_FIXTURES" ];
plugins = (
  { instance = "a"; module = "fix-echo"; config = { greeting = "x"; tags = [ "p", "q" ]; limit = "1M"; }; },
  { instance = "b"; module = "fix-echo"; config = { greeting = "y"; timeout = "2m"; }; }
);
EOF
expect 0 loomd -c "$T/good.conf" --check-config
has "$T/out" "good.conf: OK (2 plugin instances: a=fix-echo, b=fix-echo)"
ok "a module instantiated twice passes"

# ---------------------------------------------------------------- bad files
bad() { # FILE MESSAGE...: --check-config exits 1 and prints each MESSAGE
	local file=$1
	shift
	expect 1 loomd -c "$T/$file" --check-config
	for m in "$@"; do has "$T/err" "$m"; done
}

conf syntax.conf <<'EOF'
listen = "127.0.0.1:7420";
log = { level = ; };
EOF
bad syntax.conf "syntax.conf:2: syntax error"

conf typo.conf <<'EOF'
# a comment
listn = "127.0.0.1:7420";
log = {
  levl = "debug";
};
EOF
bad typo.conf "typo.conf:2: listn: unknown setting (did you mean listen?)" \
	"typo.conf:4: log.levl: unknown setting (did you mean level?)" \
	"typo.conf: 2 problems found"

conf types.conf <<'EOF'
listen = 7420;
log = { level = "loud"; };
plugins = ( { module = "storage-local"; } );
EOF
bad types.conf 'types.conf:1: listen: expected a string, got an integer; it is the API address, "host:port"' \
	'types.conf:2: log.level: "loud" is not one of error, warn, info, debug, trace' \
	'types.conf:3: plugins[0].instance: missing setting'

conf plugin.conf <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS", "$LOOM_TEST_FIXTURES" ];
plugins = (
  { instance = "e"; module = "fix-echo";
    config = { greting = "x"; count = 0; }; },
  { instance = "s"; module = "storage-local"; config = { root = 5; }; },
  { instance = "n"; module = "no-such-module"; }
);
EOF
bad plugin.conf 'plugin.conf:4: plugin "e" (fix-echo): config.greting: unknown setting (did you mean greeting?)' \
	'plugin.conf:4: plugin "e" (fix-echo): config.count: 0 is out of range; use a value from 1 to 100' \
	'plugin.conf:4: plugin "e" (fix-echo): config.greeting: missing setting (what to say)' \
	'plugin.conf:5: plugin "s" (storage-local): config.root: expected a path (a string), got an integer; it is the directory holding the blobs' \
	'plugin.conf:6: plugin "n": plugin module "no-such-module" not found'

conf abi.conf <<EOF
plugin_path = [ "$LOOM_TEST_FIXTURES" ];
plugins = ( { instance = "x"; module = "fix-abi-major"; } );
EOF
bad abi.conf "abi.conf:2: plugin \"x\": cannot use plugin" "rebuild the plugin against Loom's SDK"

expect 1 loomd -c "$T/does-not-exist.conf" --check-config
has "$T/err" "does-not-exist.conf: cannot open the config file: No such file or directory"
ok "bad files exit 1 with file:line, setting and a suggestion"

# a bad file also stops a real start, before anything is touched
expect 1 loomd -c "$T/typo.conf" --state-dir "$T/never" --foreground
has "$T/err" "typo.conf:2: listn: unknown setting"
[ ! -e "$T/never" ] || fail "a refused config created the state directory"
ok "a bad file stops start-up before the state directory is touched"

# ---------------------------------------------------------------- usage
expect 2 loomd --bogus
has "$T/err" "usage: loomd"
expect 2 loomd -c "$T/good.conf" extra-argument
expect 2 loomd -c "$T/good.conf" --log-level chatty
has "$T/err" '--log-level: "chatty" is not one of error, warn, info, debug, trace'
expect 2 loomd -c "$T/good.conf" --listen nowhere
has "$T/err" '--listen "nowhere": expected "host:port"'
expect 2 loomd -c "$T/good.conf" --state-dir ""
has "$T/err" "--state-dir: give a directory"
expect 1 loomd -c /tmp --check-config
has "$T/err" "/tmp: not a regular file"
expect 0 loomd --version
has "$T/out" "loomd 0.1.0 (plugin ABI 1.3)"
expect 0 loomd --help
has "$T/out" "--check-config"
expect 0 loomctl --version
ok "usage errors exit 2; --version and --help"
