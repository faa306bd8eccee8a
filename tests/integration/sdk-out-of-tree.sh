#!/bin/bash
# The SDK as a third-party plugin author gets it: install libloom, the
# headers and loom.pc into a temporary prefix, build the example plugins
# with nothing but `cc -shared -fPIC ... $(pkg-config --cflags --libs loom)`,
# and load them in a real loomd: hello-exporter (a config map checked by the
# host), and hello-compute, whose job specs loomd refuses naming the key
# (<loom/spec.h>) and whose task loom-worker runs to a weights file that an
# independent reader checks (<loom/safetensors.h>).
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v pkg-config >/dev/null || { echo "SKIP: pkg-config is not installed"; exit 77; }

dest=$T/dest
"${MAKE:-make}" -s -C "$B" DESTDIR="$dest" \
	install-libLTLIBRARIES install-loomincludeHEADERS install-nodist_loomincludeHEADERS \
	install-pkgconfigDATA >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "make install failed"; }
pc=$(find "$dest" -name loom.pc)
[ -n "$pc" ] || fail "loom.pc was not installed"
[ -n "$(find "$dest" -name 'libloom.so.1*')" ] || fail "libloom.so.1 was not installed"
for h in plugin.h host.h error.h storage.h scheduler.h sampler.h head.h tracker.h exporter.h \
	compute.h types.h version.h loom.h spec.h safetensors.h util.h; do
	[ -n "$(find "$dest" -path "*/include/loom/$h")" ] || fail "<loom/$h> was not installed"
done
ok "SDK installed into a temporary prefix"

# Resolve the installed prefix inside $dest the way a packager's sysroot does.
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=
flags=$(pkg-config --cflags --libs loom)
case "$flags" in *"$dest"*) ;; *) fail "pkg-config flags do not point into the temporary prefix: $flags" ;; esac
[ "$(pkg-config --modversion loom)" = 0.1.0 ] || fail "loom.pc has the wrong version"

mkdir -p "$T/plugins"
# shellcheck disable=SC2086
${CC:-cc} -shared -fPIC -Wall -Werror -o "$T/plugins/hello-exporter.so" \
	"$S/sdk/examples/hello-exporter/hello-exporter.c" $flags 2>"$T/cc.log" ||
	{ cat "$T/cc.log"; fail "the example plugin did not build against the installed SDK"; }
ok "hello-exporter built out of tree: cc -shared -fPIC ... \$(pkg-config --cflags --libs loom)"

# The example's own Makefile does the same.
cp "$S/sdk/examples/hello-exporter/hello-exporter.c" "$S/sdk/examples/hello-exporter/Makefile" "$T/"
"${MAKE:-make}" -s -C "$T" hello-exporter.so >"$T/make.log" 2>&1 ||
	{ cat "$T/make.log"; fail "the example's Makefile failed"; }
ok "the example's Makefile builds it too"

cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$T/plugins" ];
plugins = (
  { instance = "hello"; module = "hello-exporter"; config = { title = "Nightly"; }; },
  { instance = "plain"; module = "hello-exporter"; }
);
EOF
expect 0 loomd -c "$T/loomd.conf" --check-config
start_loomd "$T/loomd.conf" "$T/state"
expect 0 loomctl --url "$URL" plugins
has "$T/out" "hello            hello-exporter         exporter   1.0.0      1.3"
has "$T/out" "plain            hello-exporter         exporter   1.0.0      1.3"
expect 0 loomctl --url "$URL" --json plugins show hello
has "$T/out" '"title": "Nightly"'
has "$T/out" "\"path\": \"$T/plugins/hello-exporter.so\""
stop_loomd
has "$T/loomd.log" '[exporter:hello] hello from hello, titling summaries "Nightly"'
ok "loomd loads the out-of-tree plugin (without a .la file) twice"

cat >"$T/bad.conf" <<EOF
plugin_path = [ "$T/plugins" ];
plugins = ( { instance = "hello"; module = "hello-exporter"; config = { title = 3; tensor = true; }; } );
EOF
expect 1 loomd -c "$T/bad.conf" --check-config
has "$T/err" 'config.title: expected a string, got an integer'
has "$T/err" 'config.tensor: unknown setting (did you mean tensors?)'
ok "the host validates the out-of-tree plugin's config map"

# ---------------------------------------------------------------- a compute plugin
[ -x /usr/bin/python3 ] || {
	echo "SKIP: /usr/bin/python3 (Debian's python3) is missing; it runs the independent safetensors reader"
	exit 77
}
# shellcheck disable=SC2086
${CC:-cc} -shared -fPIC -Wall -Wextra -Werror -o "$T/plugins/hello-compute.so" \
	"$S/sdk/examples/hello-compute/hello-compute.c" $flags 2>"$T/cc.log" ||
	{ cat "$T/cc.log"; fail "hello-compute did not build against the installed SDK"; }
mkdir -p "$T/hc"
cp "$S/sdk/examples/hello-compute/hello-compute.c" "$S/sdk/examples/hello-compute/Makefile" "$T/hc/"
"${MAKE:-make}" -s -C "$T/hc" hello-compute.so >"$T/make.log" 2>&1 ||
	{ cat "$T/make.log"; fail "hello-compute's Makefile failed"; }
ok "hello-compute built out of tree: cc -shared -fPIC ... \$(pkg-config --cflags --libs loom)"

# sales = 3·week + 2, exactly: the fit must find a = 3, b = 2
{
	echo "week,sales,region"
	for i in $(seq 0 99); do echo "$i,$((3 * i + 2)),north"; done
} >"$T/sales.csv"
cat >"$T/compute.conf" <<EOF
plugin_path = [ "$T/plugins", "$LOOM_TEST_PLUGINS" ];
data_roots = [ "$T" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 1; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "fit"; module = "hello-compute"; }
);
EOF
cat >"$T/fit.conf" <<EOF
name = "sales-trend";
compute = "fit";
data = { path = "$T/sales.csv"; x = "week"; y = "sales"; };
train = { holdout = 0.25; };
EOF
sed 's/^train = {/model = { intercpt = false; };\ntrain = {/' "$T/fit.conf" >"$T/typo.conf"
sed 's/x = "week"/x = "sales"/' "$T/fit.conf" >"$T/same.conf"
sed 's/holdout = 0.25/holdout = "most"/' "$T/fit.conf" >"$T/type.conf"
sed '/^data = /d' "$T/fit.conf" >"$T/nodata.conf"

start_loomd "$T/compute.conf" "$T/cstate"
expect 0 loomctl --url "$URL" plugins
has "$T/out" "fit              hello-compute          compute    1.0.0      1.3"
expect 1 loomctl --url "$URL" submit "$T/typo.conf"
has "$T/err" "model.intercpt: unknown setting (did you mean intercept?)"
expect 1 loomctl --url "$URL" submit "$T/same.conf"
has "$T/err" "data.x: is the column to predict (data.y) too"
expect 1 loomctl --url "$URL" submit "$T/type.conf"
has "$T/err" "train.holdout: expected a number, got a string"
expect 1 loomctl --url "$URL" submit "$T/nodata.conf"
has "$T/err" "data: missing setting"
expect 0 loomctl --url "$URL" list
hasnt "$T/out" "task-"
ok "loomd refuses hello-compute's bad specs, naming the key (<loom/spec.h>)"

expect 0 loomctl --url "$URL" submit "$T/fit.conf" --start
has "$T/out" "task-1"
expect 0 loomctl --url "$URL" watch task-1
has "$T/out" "completed"
expect 0 loomctl --url "$URL" --json status task-1
has "$T/out" '"test_mse"'
weights=$T/cstate/jobs/task-1/last.safetensors
[ -s "$weights" ] || fail "task-1 wrote no $weights"
[ -s "$T/cstate/jobs/task-1/metrics.json" ] || fail "task-1 wrote no metrics.json"
/usr/bin/python3 "$S/tests/reference/safetensors_read.py" "$weights" --values >"$T/read.json" \
	2>"$T/read.log" || { cat "$T/read.log"; fail "the independent reader refused $weights"; }
/usr/bin/python3 - "$T/read.json" <<'PY' || fail "the weights are not sales = 3·week + 2"
import json, sys
doc = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in doc["tensors"]}
assert [x["name"] for x in doc["tensors"]] == ["weight", "bias"], doc
for name, want in (("weight", 3.0), ("bias", 2.0)):
    assert t[name]["dtype"] == "F64" and t[name]["shape"] == [1], t[name]
    got = float.fromhex(t[name]["values"][0])
    assert abs(got - want) < 1e-9, (name, got, want)
m = doc["metadata"]
assert m["format"] == "hello-compute" and m["x"] == "week" and m["y"] == "sales", m
assert m["rows"] == "75", m
PY
stop_loomd
ok "loom-worker ran hello-compute's task; the independent reader reads sales = 3·week + 2 back"
