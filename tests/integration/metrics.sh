#!/bin/bash
# GET /metrics through a real loomd: the Prometheus text format with every
# family docs/metrics.md lists (each task state present, 0 included); a
# short training task moves the counters (transitions, points ingested,
# bus messages, requests by route, method and status, the plan-time and
# request-duration histograms); a WebSocket monitor shows in the gauge
# while open; a task's name never becomes a label; and `promtool check
# metrics` (Debian's prometheus package) accepts the scrape.  With auth
# on, a viewer's token reads it and no token gets 401.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; }
);
EOF
sed -e 's/epochs = 40;/epochs = 1;/' -e 's/stride = 2;/stride = 24;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/tiny.conf"
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"
# waits below are 30 s, more under valgrind (WAIT_S is loomd's start-up allowance)
X=$((WAIT_S / 20))

# scrape [NAME]: GET /metrics into $T/NAME (default m), headers in $T/h
scrape() {
	local f=$T/${1:-m} code
	code=$(curl -s -D "$T/h" -o "$f" -w '%{http_code}' "$URL/metrics")
	[ "$code" = 200 ] || { cat "$f" >&2; fail "GET /metrics: HTTP $code"; }
}
# val SERIES [FILE]: the value of one series (exact name and labels), or
# fail when it is missing
val() {
	local v
	v=$(awk -v k="$1" '$1 == k { print $2; exit }' "${2:-$T/m}")
	[ -n "$v" ] || { cat "${2:-$T/m}" >&2; fail "no series $1 in the scrape"; }
	echo "$v"
}
# at_least SERIES N: the series' value is N or more
at_least() {
	local v
	v=$(val "$1")
	awk -v v="$v" -v n="$2" 'BEGIN { exit !(v + 0 >= n + 0) }' ||
		fail "$1 is $v, expected at least $2"
}

# ---------------------------------------------------------------- the format
scrape first
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$T/h" ||
	{ cat "$T/h" >&2; fail "GET /metrics: not the 0.0.4 text format"; }
for family in loom_build_info:gauge loom_tasks:gauge loom_task_transitions_total:counter \
	loom_workers_running:gauge loom_scheduler_plan_seconds:histogram \
	loom_http_requests_total:counter loom_http_request_duration_seconds:histogram \
	loom_websocket_connections:gauge loom_bus_messages_total:counter \
	loom_bus_messages_dropped_total:counter loom_metric_points_ingested_total:counter \
	loom_metric_points_dropped_total:counter loom_tracker_points_dropped_total:counter \
	loom_store_bytes:gauge loom_plugin_instances:gauge process_cpu_seconds_total:counter \
	process_resident_memory_bytes:gauge process_virtual_memory_bytes:gauge \
	process_start_time_seconds:gauge process_open_fds:gauge process_max_fds:gauge; do
	has "$T/first" "# TYPE ${family%%:*} ${family#*:}"
	has "$T/first" "# HELP ${family%%:*} "
done
for s in pending running paused completed failed cancelled; do
	[ "$(val "loom_tasks{state=\"$s\"}" "$T/first")" = 0 ] || fail "loom_tasks{state=\"$s\"} is not 0 before any task"
done
[ "$(val 'loom_plugin_instances{kind="scheduler"}' "$T/first")" = 1 ] || fail "one scheduler instance"
[ "$(val 'loom_plugin_instances{kind="head"}' "$T/first")" = 1 ] || fail "one head instance"
[ "$(val 'loom_plugin_instances{kind="exporter"}' "$T/first")" = 0 ] || fail "no exporter instance"
has "$T/first" 'loom_build_info{version="'
cp "$T/first" "$T/m"
at_least 'loom_store_bytes{file="database"}' 4096
at_least process_resident_memory_bytes 1000000
at_least process_open_fds 3
now=$(date +%s)
start=$(val process_start_time_seconds)
awk -v s="$start" -v n="$now" 'BEGIN { exit !(s <= n + 1 && s > n - 3600) }' ||
	fail "process_start_time_seconds $start is not when loomd started (now $now)"
ok "GET /metrics: the 0.0.4 text format, every family with HELP and TYPE, each task state 0"

# ---------------------------------------------------------------- counters move
curl -s -o /dev/null "$URL/no/such/path"
curl -s -o /dev/null -I "$URL/metrics"
expect 0 loomctl --url "$URL" submit "$T/tiny.conf" --start --cpu 1 --name 'secret "name"'
i=0
# grep reads all of it: grep -q would stop at the match, and under pipefail
# loomctl's next write (a status over 4 KiB) would fail the pipeline
until loomctl --url "$URL" --json status task-1 | grep '"status": "completed"' >/dev/null; do
	i=$((i + 1))
	[ $i -gt $((1200 * X)) ] && { loomctl --url "$URL" status task-1 >&2; fail "task-1 did not complete"; }
	sleep 0.1
done
# points reach the store from the tracking queue, which is flushed every
# 500 ms: wait for them
i=0
until scrape && awk '$1 == "loom_metric_points_ingested_total" { exit !($2 > 0) }' "$T/m"; do
	i=$((i + 1))
	[ $i -gt $((300 * X)) ] && fail "loom_metric_points_ingested_total stayed 0 after task-1 completed"
	sleep 0.1
done
[ "$(val 'loom_tasks{state="completed"}')" = 1 ] || fail "loom_tasks{state=\"completed\"} is not 1"
at_least 'loom_task_transitions_total{to="running"}' 1
at_least 'loom_task_transitions_total{to="completed"}' 1
at_least 'loom_scheduler_plan_seconds_count' 1
[ "$(val 'loom_scheduler_plan_seconds_bucket{le="+Inf"}')" = "$(val loom_scheduler_plan_seconds_count)" ] ||
	fail "the +Inf bucket and _count of loom_scheduler_plan_seconds differ"
at_least 'loom_bus_messages_total{direction="in",kind="request"}' 3 # attach, report, finish
at_least 'loom_bus_messages_total{direction="out",kind="reply"}' 3
at_least 'loom_bus_messages_total{direction="out",kind="event"}' 1
at_least 'loom_http_requests_total{route="/metrics",method="GET",status="200"}' 1
at_least 'loom_http_requests_total{route="/metrics",method="HEAD",status="200"}' 1
at_least 'loom_http_requests_total{route="/api/v1/training/tasks",method="POST",status="201"}' 1
at_least 'loom_http_requests_total{route="/api/v1/training/tasks/{id}",method="GET",status="200"}' 1
at_least 'loom_http_requests_total{route="unmatched",method="GET",status="404"}' 1
at_least 'loom_http_request_duration_seconds_count{route="/metrics"}' 1
at_least 'loom_http_request_duration_seconds_bucket{route="/metrics",le="10"}' 1
[ "$(val 'loom_workers_running')" = 0 ] || fail "a worker still counted after task-1 completed"
hasnt "$T/m" secret
ok "a task moved the counters: transitions, points ingested, bus messages, requests by route; its name is no label"

# ---------------------------------------------------------------- WebSockets
expect 0 loomctl --url "$URL" submit "$T/tiny.conf" --cpu 1
WS=$B/tests/helpers/ws-watch
"$WS" "ws://${URL#http://}/api/v1/training/tasks/task-2/monitor" --timeout $((60 * X)) >"$T/ws" 2>&1 &
ws=$!
i=0
until scrape && [ "$(val loom_websocket_connections)" = 1 ]; do
	i=$((i + 1))
	[ $i -gt $((300 * X)) ] && fail "loom_websocket_connections did not reach 1 with a monitor open"
	sleep 0.1
done
kill "$ws"
wait "$ws" 2>/dev/null || true
i=0
until scrape && [ "$(val loom_websocket_connections)" = 0 ]; do
	i=$((i + 1))
	[ $i -gt $((300 * X)) ] && fail "loom_websocket_connections did not return to 0 after the monitor closed"
	sleep 0.1
done
ok "loom_websocket_connections counts a monitor while it is open"

# ---------------------------------------------------------------- who may read it
# a viewer and its token, made while every client is the admin; then loomd
# again with tokens required
expect 0 loomctl --url "$URL" users add watcher --role viewer
expect 0 loomctl --url "$URL" tokens create --user watcher --name prometheus --quiet
viewer=$(cat "$T/out")
case $viewer in loom_*) ;; *) fail "tokens create --quiet printed \"$viewer\"" ;; esac
stop_loomd
grep -v '^auth' "$T/loomd.conf" >"$T/token.conf"
echo 'auth = "token";' >>"$T/token.conf"
start_loomd "$T/token.conf" "$state"
code=$(command curl -s -D "$T/h" -o "$T/body" -w '%{http_code}' "$URL/metrics")
[ "$code" = 401 ] || fail "GET /metrics without a token: HTTP $code, expected 401"
grep -qi '^www-authenticate: bearer' "$T/h" || { cat "$T/h" >&2; fail "the 401 has no WWW-Authenticate: Bearer"; }
code=$(command curl -s -o "$T/m" -w '%{http_code}' -H "Authorization: Bearer $viewer" "$URL/metrics")
[ "$code" = 200 ] || { cat "$T/m" >&2; fail "GET /metrics with a viewer's token: HTTP $code, expected 200"; }
has "$T/m" '# TYPE loom_tasks gauge'
[ "$(val 'loom_tasks{state="completed"}')" = 1 ] || fail "after a restart loom_tasks{state=\"completed\"} is not 1"
at_least 'loom_http_requests_total{route="/metrics",method="GET",status="401"}' 1
hasnt "$T/m" "$viewer"
ok "GET /metrics: a viewer's token reads it, no token gets 401 with WWW-Authenticate: Bearer"

# ---------------------------------------------------------------- promtool
if ! command -v promtool >/dev/null; then
	stop_loomd
	echo "SKIP: promtool is not installed; install Debian's prometheus package (./bootstrap does) to check the format"
	exit 77
fi
for f in first m; do
	promtool check metrics <"$T/$f" >"$T/promtool" 2>&1 ||
		{ cat "$T/promtool" >&2; fail "promtool check metrics refused the scrape $f"; }
done
ok "promtool check metrics accepts the scrapes"

stop_loomd
ok "loomd stopped cleanly"
