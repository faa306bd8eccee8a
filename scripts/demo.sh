#!/bin/sh
# make demo: start loomd on etc/loomd.conf with a temporary state directory,
# show what it loaded through loomctl, and stop it cleanly.
#   scripts/demo.sh BUILDDIR SRCDIR
set -eu
B=$1
S=$2
state=$(mktemp -d "${TMPDIR:-/tmp}/loom-demo.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
	rm -rf "$state"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

export LOOM_PLUGIN_PATH="$B/plugins"
say "loomd --check-config: is etc/loomd.conf valid?"
"$B/host/loomd" -c "$S/etc/loomd.conf" --check-config

say "loomd: start on a free loopback port, state in $state"
"$B/host/loomd" -c "$S/etc/loomd.conf" --state-dir "$state" --listen 127.0.0.1:0
pid=$(cat "$state/loomd.pid")
url=$(cat "$state/loomd.url")
echo "loomd is running (pid $pid) at $url; its log is $state/loomd.log"

say "loomctl health"
"$B/host/loomctl" --url "$url" health
say "loomctl plugins"
"$B/host/loomctl" --url "$url" plugins
say "loomctl plugins show store"
"$B/host/loomctl" --url "$url" plugins show store
say "GET /api/v1/plugins (the REST API loomctl uses)"
if command -v curl >/dev/null; then curl -s "$url/api/v1/plugins"; echo; fi

say "stop loomd (SIGTERM)"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt 100 ] && { echo "loomd did not stop" >&2; exit 1; }
	sleep 0.1
done
pid=
tail -n 3 "$state/loomd.log"
echo
echo "Demo complete.  The training demo arrives with the job control plane (issue 4)."
