#!/bin/bash
# The web UI through a real loomd: the static files' headers (a strict
# Content-Security-Policy, nosniff, no referrer, ETag and 304, no-cache;
# the API keeps no-store), every way out of the web root refused (404), then
# the pages in headless Chromium driven by puppeteer-core (tests/web/ui.mjs):
# sign in with a token, the task list, a running task's chart growing,
# pause and resume from the page, a classifier's headline metrics and
# confusion matrix, the model a forecast kept among auto's candidates
# and the classifier's model.kind, runs compared, a model version promoted
# and rolled back, a version the deployment rule holds for approval
# approved from the page, alerts; a viewer sees no mutating button and its forged
# requests get 403.  Screenshots of each page go to
# tests/integration/web-shots/ in the build tree.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium is not installed (Debian: apt-get install chromium; ./bootstrap does)"; exit 77; }
command -v node >/dev/null || { echo "SKIP: node is not installed (Debian: nodejs; ./bootstrap does)"; exit 77; }
NODE_MODULES=$S/tests/node/node_modules
[ -d "$NODE_MODULES/puppeteer-core" ] || {
	echo "SKIP: puppeteer-core is not installed in tests/node (./bootstrap runs npm ci there)"
	exit 77
}
DYGRAPHS=/usr/share/javascript/dygraphs
[ -r "$DYGRAPHS/dygraph.min.js" ] || DYGRAPHS=$NODE_MODULES/dygraphs/dist
[ -r "$DYGRAPHS/dygraph.min.js" ] || {
	echo "SKIP: no dygraph.min.js: install libjs-dygraphs (Debian), or run ./bootstrap for npm's"
	exit 77
}
DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
SHOTS=$B/tests/integration/web-shots
rm -rf "$SHOTS"
mkdir -p "$SHOTS"

state=$T/state
conf() { # AUTH: loomd.conf with auth = AUTH
	cat >"$T/loomd.conf" <<CONF
auth = "$1";
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
web = { root = "$S/web"; dygraphs = "$DYGRAPHS"; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; },
  { instance = "classification"; module = "head-classification"; }
);
CONF
}
# two short tasks of one name, another learning rate each (versions 1 and
# 2 of a model, two runs to compare), and one far longer than the test, to watch, pause and resume
# The first is model.kind = "auto" (the default) keeping an average
# (model.auto.ensemble = "always"): the page reads both averages auto tried
# (auto/ensemble_of_2/… and auto/ensemble_of_3/…) to find the kept one.  The second is a
# Transformer alone: auto keeps the same model whatever the learning rate,
# and runs of equal figures have no best to mark.
sed -e 's/epochs = 40;/epochs = 1;/' -e 's/stride = 2;/stride = 24;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/base.conf"
sed -e 's/head = "forecast";/head = "forecast"; auto = { ensemble = "always"; };/' "$T/base.conf" >"$T/short.conf"
sed -e 's/lr = 2e-3;/lr = 5e-3;/' -e 's/head = "forecast";/head = "forecast"; kind = "transformer";/' \
	"$T/base.conf" >"$T/short2.conf"
grep -q 'kind = "transformer";' "$T/short2.conf" && grep -q '"always"' "$T/short.conf" ||
	fail "the job file has no head line"
# a classifier: headline metrics, a per-class table and a confusion
# matrix; its model.kind named (the forecasts' is auto, the default)
sed -e 's/epochs = [0-9]*;/epochs = 1;/' -e 's/head = "classification";/head = "classification"; kind = "transformer";/' \
	"$S/etc/jobs/seattle-weather-classify.conf" >"$T/classify.conf"
grep -q 'kind = "transformer";' "$T/classify.conf" || fail "the classifier's job file has no head line"
grep -q 'lr = 5e-3;' "$T/short2.conf" || fail "the job file has no lr line to change"
sed -e 's/epochs = 40;/epochs = 1000;/' -e 's/patience = 10;/patience = 1000;/' \
	-e 's/checkpoint_every = 200;/checkpoint_every = 20;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/long.conf"
# ---------------------------------------------------------------- users, tokens, tasks
# the first start (auth = "none", loopback): the state directory's owner
# is the admin; a viewer, who may read the long task; a token for each; two short tasks of one name
# (versions 1 and 2 of a model, two runs to compare) and a long one, left
# pending for the second start
conf none
start_loomd "$T/loomd.conf" "$state"
owner=$(stat -c %U "$state")
api0() { # METHOD PATH BODY: the body on stdout (2xx or fail)
	command curl -sf -X "$1" -H 'Content-Type: application/json' --data-binary "$3" "$URL$2" ||
		fail "$1 $2 failed"
}
tok() { python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
api0 POST /api/v1/users '{"name":"vera","role":"viewer"}' >/dev/null
admin_token=$(api0 POST /api/v1/tokens "{\"user\":\"$owner\",\"name\":\"web\"}" | tok)
viewer_token=$(api0 POST /api/v1/tokens '{"user":"vera","name":"web"}' | tok)
expect 0 loomctl --url "$URL" submit "$T/short.conf" --start --cpu 1 --name "web temps"
expect 0 loomctl --url "$URL" submit "$T/short2.conf" --start --cpu 1 --name "web temps"
# its name is markup, which the pages must show as text
expect 0 loomctl --url "$URL" submit "$T/long.conf" --cpu 1 --name 'web long <img src=x onerror="document.title=1">'
expect 0 loomctl --url "$URL" submit "$T/classify.conf" --start --cpu 1 --name "web weather"
# the viewer may read the long task (a share), and change nothing
api0 POST /api/v1/shares '{"kind":"task","id":"task-3","user":"vera","level":"read"}' >/dev/null
field() { # TASK EXPR
	command curl -s -H "Authorization: Bearer $admin_token" "$URL/api/v1/training/tasks/$1" |
		python3 -c "import json,sys; t=json.load(sys.stdin); print($2)"
}
wait_for() { # TASK STATE [SECONDS]
	local i=0 s
	while :; do
		s=$(field "$1" 't["status"]')
		[ "$s" = "$2" ] && return 0
		case $s in completed|failed|cancelled) fail "$1 ended $s, not $2" ;; esac
		i=$((i + 1))
		[ $i -gt $((${3:-60} * 10)) ] && fail "$1 is $s, not $2, after ${3:-60}s"
		sleep 0.1
	done
}
wait_for task-1 completed 120
wait_for task-2 completed 120
wait_for task-4 completed 120
# the classifier's deployment rule holds its next version for approval
api0 PUT "/api/v1/models/web%20weather/deploy" '{"metric": "test_accuracy", "alias": "canary", "approval": true}' |
	grep -q '"approval": *true' || fail "setting the deployment rule of \"web weather\" failed"
expect 0 loomctl --url "$URL" submit "$T/classify.conf" --start --cpu 1 --name "web weather"
wait_for task-5 completed 120
# the viewer may read the model too (models have owners: a share); the
# registry registers a completed task's version in the background
i=0
until [ "$(command curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin_token" \
	"$URL/api/v1/models/web%20temps/versions/2")" = 200 ]; do
	i=$((i + 1))
	[ $i -gt $((WAIT_S * 10)) ] && fail "the model \"web temps\" has no version 2 after ${WAIT_S}s"
	sleep 0.1
done
api0 POST /api/v1/shares '{"kind":"model","id":"web temps","user":"vera","level":"read"}' |
	grep -q '"kind":"model"' || fail "sharing the model with the viewer failed"
stop_loomd
ok "users, tokens and tasks made on a first start"

conf token
start_loomd "$T/loomd.conf" "$state"
ok "loomd with tokens started at $URL"

# ---------------------------------------------------------------- the files
head_of() { # PATH [CURL ARGS]: headers in $T/head, body in $T/body, status printed
	local p=$1
	shift
	rm -f "$T/body"
	: >"$T/body"
	command curl -s --path-as-is -D "$T/head" -o "$T/body" -w '%{http_code}' "$@" "$URL$p"
}
hdr() { grep -i "^$1:" "$T/head" | head -1 | cut -d: -f2- | sed 's/^ //; s/\r$//'; }
[ "$(head_of /)" = 200 ] || fail "GET / is not 200"
has "$T/body" '<script type="module" src="/app.js"></script>'
[ "$(hdr Content-Type)" = "text/html; charset=utf-8" ] || fail "GET /: $(cat "$T/head")"
csp=$(hdr Content-Security-Policy)
for d in "default-src 'self'" "script-src 'self'" "style-src 'self'" "frame-ancestors 'none'" \
	"base-uri 'none'" "object-src 'none'"; do
	case $csp in *"$d"*) ;; *) fail "the CSP lacks $d: $csp" ;; esac
done
case $csp in *unsafe*) fail "the CSP allows something unsafe: $csp" ;; esac
[ "$(hdr X-Content-Type-Options)" = nosniff ] || fail "no nosniff: $(cat "$T/head")"
[ "$(hdr Referrer-Policy)" = no-referrer ] || fail "no Referrer-Policy: $(cat "$T/head")"
[ "$(hdr Cache-Control)" = no-cache ] || fail "GET / Cache-Control: $(cat "$T/head")"
etag=$(hdr ETag)
[ -n "$etag" ] || fail "GET / has no ETag"
[ "$(head_of / -H "If-None-Match: $etag")" = 304 ] || fail "If-None-Match with the ETag is not 304"
[ ! -s "$T/body" ] || fail "a 304 with a body"
[ "$(head_of /app.js -I)" = 200 ] || fail "HEAD /app.js"
[ "$(hdr Content-Type)" = "text/javascript; charset=utf-8" ] || fail "app.js: $(cat "$T/head")"
[ "$(head_of /style.css)" = 200 ] && [ "$(hdr Content-Type)" = "text/css; charset=utf-8" ] ||
	fail "style.css: $(cat "$T/head")"
[ "$(head_of /dygraphs/dygraph.min.js)" = 200 ] || fail "the chart library is not served"
# the API keeps its own caching
[ "$(head_of /api/v1/health)" = 200 ] && [ "$(hdr Cache-Control)" = no-store ] ||
	fail "the API's Cache-Control: $(cat "$T/head")"
ok "/ and its files: types, a strict CSP, nosniff, no-referrer, ETag and 304; the API still no-store"

for p in /../etc/passwd /..%2f..%2fetc%2fpasswd /%2e%2e/%2e%2e/etc/passwd /.gitignore /Makefile.inc \
	/%2eapp.js /app%2ejs /web/index.html /dygraphs/index.js /dygraphs/..%2fdygraph.min.js \
	/index.html%00.js '/x%0d%0aSet-Cookie:%20a=b.js'; do
	code=$(head_of "$p")
	[ "$code" = 404 ] || [ "$code" = 400 ] || fail "GET $p gave $code"
	grep -q root: "$T/body" && fail "GET $p leaked /etc/passwd"
	grep -qi '^set-cookie' "$T/head" && fail "GET $p set a cookie"
done
ok "traversal, dotfiles, other types, subdirectories, escapes: refused"

# ---------------------------------------------------------------- the long task, and a viewer
code=$(command curl -s -o "$T/body" -w '%{http_code}' -X POST \
	-H "Authorization: Bearer $admin_token" "$URL/api/v1/training/tasks/task-3/start")
[ "$code" = 200 ] || [ "$code" = 202 ] || fail "starting task-3: $code $(cat "$T/body")"
wait_for task-3 running 60
ok "the long task running"
# what the page hides the server refuses: a viewer's token gets 403
code=$(command curl -s -o "$T/body" -w '%{http_code}' -X POST \
	-H "Authorization: Bearer $viewer_token" "$URL/api/v1/training/tasks/task-3/pause")
[ "$code" = 403 ] || fail "a viewer's pause gave $code: $(cat "$T/body")"
has "$T/body" '"code":"forbidden"'
# and without a credential: the page loads, the data does not
code=$(command curl -s -o "$T/body" -w '%{http_code}' "$URL/api/v1/training/tasks")
[ "$code" = 401 ] || fail "the task list without a credential gave $code"
ok "a viewer's token forging a pause: 403; no credential: 401 (the UI's files stay public)"

# ---------------------------------------------------------------- the browser
rv=0 scale=1
[ "${LOOM_VALGRIND:-}" = 1 ] && scale=5 # loomd under valgrind answers slowly
LOOM_WEB_TIMEOUT_SCALE=$scale LOOM_NODE_MODULES=$NODE_MODULES LOOM_URL=$URL LOOM_WEB_SHOTS=$SHOTS CHROMIUM=$CHROMIUM \
	LOOM_TASK=task-3 LOOM_MODEL="web temps" LOOM_RUNS=run-1,run-2 LOOM_CLASSIFIER=task-4 \
	LOOM_GATED="web weather" \
	LOOM_AUTO=task-1 LOOM_AUTO_METRICS="$state/jobs/task-1/metrics.json" \
	LOOM_ADMIN_TOKEN=$admin_token LOOM_VIEWER_TOKEN=$viewer_token \
	timeout $((300 * scale)) node "$S/tests/web/ui.mjs" >"$T/ui.log" 2>&1 || rv=$?
cat "$T/ui.log"
[ $rv -eq 0 ] || fail "the browser test failed (status $rv); screenshots in $SHOTS"
ls "$SHOTS"/*.png >/dev/null 2>&1 || fail "no screenshots in $SHOTS"
ok "screenshots: $(cd "$SHOTS" && echo *.png)"

command curl -s -o /dev/null -X POST -H "Authorization: Bearer $admin_token" \
	"$URL/api/v1/training/tasks/task-3/cancel"
stop_loomd
ok "loomd stopped cleanly"
