#!/bin/bash
# The sampler plugins through a real loomd (host/inference/sample.h):
# - GET /api/v1/samplers lists the sampler instances with what they read;
# - POST /api/v1/samplers/{instance}/select on hand-computed pools: margin
#   (smallest p1 - p2 first, ties to the lower row), k-center with a fixed
#   centre, variance with ids echoed, the reservoir's bank slots over two
#   calls, the same answer for the same seed;
# - refusals name the problem: a pool without what the sampler reads, k
#   larger than the pool, probabilities that do not sum to 1, rows of
#   different lengths, a fixed row outside the pool, unknown fields, an
#   unknown instance or one of another kind.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }

cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = (
  { instance = "store"; module = "storage-local"; },
  { instance = "margin"; module = "sampler-margin"; },
  { instance = "variance"; module = "sampler-variance"; },
  { instance = "k-center"; module = "sampler-k-center"; },
  { instance = "reservoir"; module = "sampler-reservoir"; },
  { instance = "random"; module = "sampler-random"; }
);
EOF
start_loomd "$T/loomd.conf" "$T/state"
ok "loomd started at $URL"

pick() { # INSTANCE BODY: status in $T/code, body in $T/body
	curl -s -o "$T/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--data-binary "$2" "$URL/api/v1/samplers/$1/select" >"$T/code"
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json; b=json.load(open('$T/body')); print($1)"; }

curl -s "$URL/api/v1/samplers" >"$T/body"
[ "$(py '[(s["instance"], s["needs"], s["streaming"]) for s in b["samplers"]]')" = \
	"[('margin', ['probs'], False), ('variance', ['scores'], False), ('k-center', ['features'], False), ('reservoir', [], True), ('random', [], False)]" ] ||
	fail "the list: $(cat "$T/body")"
ok "GET /api/v1/samplers lists the five sampler instances with what they read"

# margins 0.0, 0.8, 0.2, 0.1, 0.0: rows 0 and 4 tie (lower row first), then 3
pick margin '{"k": 3, "probs": [[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.5, 0.5]]}'
code 200
[ "$(py '[c["row"] for c in b["chosen"]]')" = "[0, 4, 3]" ] || fail "margin: $(cat "$T/body")"
[ "$(py 'b["n"], b["module"]')" = "3 sampler-margin" ] || fail "margin: $(cat "$T/body")"
ok "margin chooses the smallest margins, ties to the lower row"

# 1-D points 0, 1, 10, 11 with row 0 a fixed centre: the farthest (11, row
# 3), then rows 1 and 2 are both 1 away: the lower row
pick k-center '{"k": 2, "features": [[0], [1], [10], [11]], "fixed": [0]}'
code 200
[ "$(py '[c["row"] for c in b["chosen"]]')" = "[3, 1]" ] || fail "k-center: $(cat "$T/body")"
pick variance '{"k": 2, "scores": [0.1, 0.7, 0.3, 0.9], "ids": [100, 101, 102, 103]}'
code 200
[ "$(py '[(c["row"], c["id"], round(c["score"], 6)) for c in b["chosen"]]')" = "[(3, 103, 0.9), (1, 101, 0.7)]" ] ||
	fail "variance: $(cat "$T/body")"
ok "k-center around a fixed centre; variance with the caller's ids and scores echoed"

pick random '{"k": 3, "seed": 7, "scores": [1, 2, 3, 4, 5, 6, 7, 8]}'
code 200
cp "$T/body" "$T/r1"
pick random '{"k": 3, "seed": 7, "scores": [1, 2, 3, 4, 5, 6, 7, 8]}'
cmp -s "$T/body" "$T/r1" || fail "random with the same seed answered differently"
# a bank of 3 over a stream: the first call fills slots 0-2
pick reservoir '{"k": 3, "seed": 1, "scores": [0, 0, 0]}'
code 200
[ "$(py '[(c["row"], c["slot"]) for c in b["chosen"]]')" = "[(0, 0), (1, 1), (2, 2)]" ] ||
	fail "reservoir: $(cat "$T/body")"
pick reservoir '{"k": 3, "seed": 1, "seen": 3, "scores": [0, 0, 0, 0, 0, 0]}'
code 200
py 'all(0 <= c["slot"] < 3 for c in b["chosen"]) and len({c["slot"] for c in b["chosen"]}) == len(b["chosen"])' |
	grep -qx True || fail "reservoir, second call: $(cat "$T/body")"
ok "the same seed, the same rows; the reservoir fills its bank, then replaces slots"

refuse() { # INSTANCE BODY STATUS TEXT
	pick "$1" "$2"
	code "$3"
	has "$T/body" "$4"
}
refuse margin '{"k": 1, "scores": [1, 2]}' 400 'sampler \"margin\" (sampler-margin) needs probs'
refuse margin '{"k": 3, "probs": [[0.5, 0.5], [0.9, 0.1]]}' 400 "k = 3 is more than the 2 rows it may choose from"
refuse margin '{"k": 1, "probs": [[0.5, 0.6], [0.9, 0.1]]}' 400 "row 0: the probabilities sum to 1.1, not 1"
refuse margin '{"k": 1, "probs": [[0.5, 0.5], [1]]}' 400 "probs: row 1 has 1 values, row 0 has 2"
refuse margin '{"k": 1, "probs": [[0.5, 0.5]], "scores": [1, 2]}' 400 "scores has 2 rows, another array 1"
refuse k-center '{"k": 1, "features": [[0], [1]], "fixed": [5]}' 400 "fixed: entry 0 (5) is not a row of the pool"
refuse margin '{"k": 1, "probs": [[0.5, 0.5]], "top": 3}' 400 'unknown field \"top\"'
refuse margin '{"probs": [[0.5, 0.5]]}' 400 "k: required"
refuse margin '{"k": 1}' 400 "no pool"
refuse nothing '{"k": 1, "scores": [1]}' 404 'no sampler instance \"nothing\"'
refuse store '{"k": 1, "scores": [1]}' 404 'no sampler instance \"store\"'
pick margin '{"k": 1, "probs": [[0.5, 0.5]]}'
code 200
ok "refusals name the problem; loomd goes on serving"

stop_loomd
ok "loomd stopped"
