#!/bin/bash
# The SDK as a third-party plugin author gets it: install libloom, the
# headers and loom.pc into a temporary prefix, build the example plugin with
# nothing but `cc -shared -fPIC ... $(pkg-config --cflags --libs loom)`, and
# load it in a real loomd.
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
	compute.h types.h version.h loom.h; do
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
has "$T/out" "hello            hello-exporter         exporter   1.0.0      1.0"
has "$T/out" "plain            hello-exporter         exporter   1.0.0      1.0"
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
