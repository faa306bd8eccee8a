#!/bin/bash
# storage-local with a relative root, as etc/loomd.conf ships it
# (root = "blobs"): loomd started from a scratch working directory keeps
# the blobs under STATE_DIR/plugins/store/blobs, as loomd.conf(5) says; a
# task reads "store:series/weather.csv" from there in its worker; and no
# blobs/ appears in the working directory, neither from loomd nor from the
# workers it starts.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA/seattle-weather.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

state=$T/state
mkdir -p "$T/cwd"
cat >"$T/loomd.conf" <<CONF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "classification"; module = "head-classification"; }
);
CONF
sed -e "s|path = \".*\";|path = \"store:series/weather.csv\";|" -e 's/epochs = 30;/epochs = 1;/' \
	"$S/etc/jobs/seattle-weather-classify.conf" >"$T/stored.conf"
grep -q 'store:series/weather.csv' "$T/stored.conf" || fail "stored.conf does not read from the store"

cd "$T/cwd"
start_loomd "$T/loomd.conf" "$state"
[ -d "$state/plugins/store/blobs" ] ||
	fail "loomd did not make the store's root under STATE_DIR/plugins/store/blobs"
[ ! -e "$T/cwd/blobs" ] || fail "loomd made blobs/ in its working directory"
ok "the relative root is STATE_DIR/plugins/store/blobs"

mkdir -p "$state/plugins/store/blobs/series"
cp "$DATA/seattle-weather.csv" "$state/plugins/store/blobs/series/weather.csv"
expect 0 loomctl --url "$URL" submit "$T/stored.conf" --start --cpu 1
expect 0 loomctl --url "$URL" watch task-1
stop_loomd
cd "$T"
[ ! -e "$T/cwd/blobs" ] || fail "a worker made blobs/ in loomd's working directory"
[ -z "$(ls -A "$T/cwd")" ] || fail "loomd or a worker wrote into the working directory: $(ls -A "$T/cwd")"
ok "a task read store:series/weather.csv from STATE_DIR/plugins/store/blobs; the working directory stayed empty"
