#!/bin/bash
# loomctl data (host/cli/loomctl-data.c) against a real loomd with a
# storage-local store and small chunks (1-8 KiB, so that a 48 KB CSV makes
# a few dozen of them):
# - the argument checks (a bad name, a missing file, a directory, a
#   format the file does not have) fail with exit 2 before any request:
#   loomctl is pointed at a port nothing listens on, which would be exit 3;
#   --help of data and of a subcommand;
# - create, list, show; import a real CSV (seattle-weather.csv,
#   python3-vega-datasets) and a raw f32 array (LOOMARR1); log; tag;
#   branch --from the tag; checkout -o of each equals the input (the CSV
#   after normalization: a CRLF copy checks out with LF endings), to a file
#   replaced whole and to standard output, over TCP and over the Unix
#   socket; --native gives the array back byte for byte;
# - 1 % of the rows edited in one region and imported onto the branch:
#   diff counts a few changed rows and most rows the same, the import
#   stored a fraction of the bytes; a fast-forward merge, a merge that is
#   not one refused; a commit whose --parent is no longer the head refused
#   as a conflict;
# - a branch lock held by bob: admin's import and lock refused (exit 1)
#   naming bob; unlock; an import whose CSV is refused releases the lock
#   (the upload is aborted); a quota refuses an import, and the next one
#   goes through once it is lifted;
# - audit lists the actions; gc (admin only) frees a deleted dataset's
#   chunks; quota shows the stored bytes.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-weather.csv" ] || {
	echo "SKIP: $DATA/seattle-weather.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
py() { /usr/bin/python3 "$@"; }
# EXPR over the JSON in FILE as b
pj() { py -c "import json,sys; b=json.load(open(sys.argv[1])); print($2)" "$1"; }

CSV=$DATA/seattle-weather.csv
ROWS=$(($(wc -l <"$CSV") - 1))
# a raw f32 array: LOOMARR1, element size 4, 3 columns named, 5000 rows
py - "$T/series.f32" <<'EOF'
import math, struct, sys
names = [b"t", b"load", b""]          # the third unnamed: "c2"
with open(sys.argv[1], "wb") as f:
    f.write(b"LOOMARR1" + bytes([4, 0, 0, 0]) + struct.pack("<I", len(names)))
    for n in names:
        f.write(struct.pack("<H", len(n)) + n)
    for i in range(5000):
        f.write(struct.pack("<3f", i, math.sin(i / 50.0) * 100, (i * 7919) % 1000 / 10.0))
EOF
# the CSV with CRLF endings: stored (and checked out) with LF
sed 's/$/\r/' "$CSV" >"$T/crlf.csv"
# 1 % of the rows, in one region, edited: temp_max of 15 days in 2013
py - "$CSV" "$T/edited.csv" <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
out = []
for i, l in enumerate(lines):
    if 700 <= i < 715:
        f = l.split(",")
        f[2] = "%.1f" % (float(f[2]) + 0.5)
        l = ",".join(f)
    out.append(l)
open(sys.argv[2], "w").write("\n".join(out))
EOF
[ "$(cmp -l "$CSV" "$T/edited.csv" | wc -l)" -gt 0 ] || fail "edited.csv is not edited"
# data of bob's own (no chunk of it stored before) and a scratch dataset's
py - "$T/bob.csv" "$T/scratch.csv" <<'EOF2'
import random, sys
for path, seed in ((sys.argv[1], 1), (sys.argv[2], 2)):
    r = random.Random(seed)
    with open(path, "w") as f:
        f.write("id,x,y\n")
        for i in range(3000):
            f.write("%d,%.6f,%.6f\n" % (i, r.random(), r.gauss(0, 1)))
EOF2
# a CSV with a row of too many fields (line 5)
{ sed -n 1,4p "$CSV"; echo "2012-01-04,0,1,2,3,rain,extra"; sed -n 6,25p "$CSV"; } >"$T/bad.csv"

# ---------------------------------------------------------------- no request made
# nothing listens on port 1: a request would exit 3, a local refusal exits 2
export LOOM_URL=http://127.0.0.1:1
LOOM_TOKEN=
export LOOM_TOKEN
expect 2 loomctl data import 'bad/name' "$CSV"
has "$T/err" 'NAME "bad/name" is not a name'
expect 2 loomctl data import .hidden "$CSV"
has "$T/err" 'NAME ".hidden" is not a name'
expect 2 loomctl data create -- -dash
has "$T/err" 'NAME "-dash" is not a name'
expect 2 loomctl data create "$(printf 'x%.0s' $(seq 65))"
has "$T/err" "is not a name"
expect 2 loomctl data import weather "$T/nosuch.csv"
has "$T/err" "cannot read $T/nosuch.csv: No such file or directory"
expect 2 loomctl data import weather "$T"
has "$T/err" "is not a regular file (a directory)"
: >"$T/empty.csv"
expect 2 loomctl data import weather "$T/empty.csv"
has "$T/err" "is empty"
expect 2 loomctl data import weather "$CSV" --format f32
has "$T/err" "does not start with the LOOMARR1 header"
expect 2 loomctl data import weather "$T/series.f32" --format f64
has "$T/err" "holds elements of 4 bytes, not those of f64; give --format f32"
expect 2 loomctl data import weather "$CSV" --branch 'a b'
has "$T/err" '--branch "a b" is not a name'
expect 2 loomctl data checkout weather 'v1;rm'
has "$T/err" 'REF "v1;rm" is not a ref'
expect 2 loomctl data import weather
has "$T/err" "usage: data import NAME FILE"
expect 2 loomctl data frobnicate
has "$T/err" 'unknown command "frobnicate"'
has "$T/err" "data checkout NAME REF [-o FILE] [--native]"
expect 2 loomctl data log weather --limit many
has "$T/err" '--limit: "many" is not a whole number'
expect 2 loomctl data quota bob lots
has "$T/err" 'BYTES "lots" is not a number of bytes'
expect 2 loomctl data tag weather v1
has "$T/err" "give the REF that TAG names"
expect 0 loomctl data --help
has "$T/out" "data import NAME FILE [--branch B]"
has "$T/out" "data quota USER [BYTES|default]"
expect 0 loomctl data import --help
has "$T/out" "usage: loomctl data import NAME FILE"
has "$T/out" "parts of 8 MiB"
expect 0 loomctl data help checkout
has "$T/out" "usage: loomctl data checkout NAME REF [-o FILE] [--native]"
expect 3 loomctl data list
ok "bad names, files and formats exit 2 before any request; --help of data and a subcommand"

# ---------------------------------------------------------------- loomd
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; }
);
datasets = {
  storage = "store";
  chunk_min = "1K"; chunk_avg = "2K"; chunk_max = "8K";
  lock_ttl = 600;
};
EOF
start_loomd "$T/loomd.conf" "$T/state"
export LOOM_URL=$URL
ME=$(loomctl --json whoami | pj /dev/stdin 'b["user"]')
expect 0 loomctl users add bob
BOB=$(loomctl tokens create --user bob -q)
# `loomctl tokens` is `loomctl tokens list`, as its usage says
loomctl tokens >"$T/tokens.1" || fail "loomctl tokens (no subcommand) failed"
loomctl tokens list >"$T/tokens.2" || fail "loomctl tokens list failed"
# (the ids and users: LAST USED moves with each call)
[ "$(awk '{print $1, $2}' "$T/tokens.1")" = "$(awk '{print $1, $2}' "$T/tokens.2")" ] ||
	fail "loomctl tokens and loomctl tokens list list different tokens"
loomctl tokens --user bob >"$T/tokens.bob" || fail "loomctl tokens --user bob failed"
grep -q ' bob ' "$T/tokens.bob" || fail "loomctl tokens --user bob does not list bob's token"
bob() { LOOM_TOKEN=$BOB "$LOOMCTL" "$@"; }
ok "loomd started at $URL (admin $ME, user bob)"

# ---------------------------------------------------------------- create, import, show
expect 0 loomctl data list
has "$T/out" "(0 datasets)"
expect 0 loomctl data create weather --description "Seattle, 2012-2015"
has "$T/out" "dataset weather created (owner $ME, default branch main)"
expect 1 loomctl data create weather
has "$T/err" "loomd refused (HTTP 409)"
expect 0 loomctl --json data import weather "$CSV" --message "first import"
V1=$(pj "$T/out" 'b["version"]')
[ ${#V1} -eq 64 ] || fail "import --json: no version id: $(cat "$T/out")"
[ "$(pj "$T/out" 'b["rows"]')" = "$ROWS" ] || fail "import: rows $(pj "$T/out" 'b["rows"]'), not $ROWS"
[ "$(pj "$T/out" 'b["bytes"]')" -gt $(($(wc -c <"$CSV") - 100)) ] || fail "import: bytes: $(cat "$T/out")"
[ "$(pj "$T/out" 'b["chunks"] >= 5')" = True ] || fail "import: fewer chunks than chunk_max allows: $(cat "$T/out")"
expect 0 loomctl data show weather
has "$T/out" "dataset   weather (owner $ME"
has "$T/out" "about     Seattle, 2012-2015"
has "$T/out" "head      $V1 of main: $ROWS rows"
grep -Eq "^main +${V1:0:12} +$ME " "$T/out" || fail "show: no main branch at ${V1:0:12}: $(cat "$T/out")"
expect 0 loomctl data list
has "$T/out" "(1 dataset)"
grep -Eq "^weather +$ME +${V1:0:12} +$ROWS " "$T/out" || fail "list: $(cat "$T/out")"
ok "create (409 the second time), import of seattle-weather.csv ($ROWS rows), show, list"

# the same file again: a version whose chunks are all known
expect 0 loomctl data import weather "$CSV"
has "$T/out" "version "
has "$T/out" "weather/main: $ROWS rows"
has "$T/out" ", 0 B new in 0 of"
V2=$(sed -n 's/^version //p' "$T/out")
[ "$V2" != "$V1" ] || fail "a second commit made the same version id (its parent differs)"
ok "importing the same file again stores no new bytes"

# the array, over the Unix socket
expect 0 loomctl data create series
expect 0 loomctl --socket "$T/state/loomd.sock" data import series "$T/series.f32"
has "$T/out" "series/main: 5000 rows"
expect 0 loomctl data show series main
has "$T/out" "data      f32, 5000 rows"
grep -Eq '^load +number$' "$T/out" || fail "show series main: no column load: $(cat "$T/out")"
grep -Eq '^c2 +number$' "$T/out" || fail "show series main: the unnamed column is not c2: $(cat "$T/out")"
expect 0 loomctl data checkout series main -o "$T/series.out" --native
cmp "$T/series.f32" "$T/series.out" || fail "checkout --native of the array differs from the input"
expect 0 loomctl --socket "$T/state/loomd.sock" data checkout series main --native
cmp "$T/series.f32" "$T/out" || fail "checkout --native over the socket differs from the input"
expect 0 loomctl data checkout series main
[ "$(head -n 1 "$T/out")" = "t,load,c2" ] || fail "checkout of the array as CSV: header $(head -n 1 "$T/out")"
[ "$(sed -n 3p "$T/out" | cut -d, -f1)" = 1 ] || fail "checkout as CSV: row 2 $(sed -n 3p "$T/out")"
[ "$(($(wc -l <"$T/out") - 1))" = 5000 ] || fail "checkout as CSV: $(wc -l <"$T/out") lines"
ok "an f32 array imported over the socket; checkout --native equals it byte for byte, as CSV 5000 rows"

# ---------------------------------------------------------------- log, tag, branch, checkout
expect 0 loomctl data log weather
has "$T/out" "${V2:0:12}"
has "$T/out" "${V1:0:12}"
has "$T/out" "first import"
[ "$(grep -n "${V2:0:12}" "$T/out" | cut -d: -f1)" -lt "$(grep -n "${V1:0:12}" "$T/out" | cut -d: -f1)" ] ||
	fail "log: not newest first: $(cat "$T/out")"
expect 0 loomctl data log weather --limit 1
hasnt "$T/out" "${V1:0:12}"
expect 0 loomctl data tag weather v1 "${V1:0:10}"
has "$T/out" "v1 -> ${V1:0:12}"
expect 1 loomctl data tag weather v1 main
has "$T/err" "HTTP 409"
expect 0 loomctl data tag weather
grep -Eq "^v1 +${V1:0:12}" "$T/out" || fail "tag list: $(cat "$T/out")"
expect 0 loomctl data branch weather edits --from v1
has "$T/out" "edits -> ${V1:0:12}"
expect 0 loomctl data branch weather
grep -Eq "^edits +${V1:0:12}" "$T/out" || fail "branch list: $(cat "$T/out")"
grep -Eq "^main +${V2:0:12}" "$T/out" || fail "branch list: $(cat "$T/out")"
expect 0 loomctl data checkout weather v1 -o "$T/v1.csv"
cmp "$CSV" "$T/v1.csv" || fail "checkout -o of v1 differs from seattle-weather.csv"
has "$T/err" "wrote $T/v1.csv: version $V1 of weather, $ROWS rows"
expect 0 loomctl data checkout weather edits
cmp "$CSV" "$T/out" || fail "checkout to standard output differs from seattle-weather.csv"
expect 0 loomctl --socket "$T/state/loomd.sock" data checkout weather "$V1" -o "$T/v1s.csv"
cmp "$CSV" "$T/v1s.csv" || fail "checkout over the socket differs"
# a failed checkout leaves FILE as it was
echo keep >"$T/keep.csv"
expect 1 loomctl data checkout weather nosuchref -o "$T/keep.csv"
[ "$(cat "$T/keep.csv")" = keep ] || fail "a refused checkout replaced -o FILE"
[ -z "$(find "$T" -maxdepth 1 -name 'keep.csv.?*')" ] || fail "a refused checkout left a temporary file"
expect 0 loomctl data create crlf
expect 0 loomctl data import crlf "$T/crlf.csv"
expect 0 loomctl data checkout crlf main -o "$T/crlf.out"
cmp "$CSV" "$T/crlf.out" || fail "the CRLF copy does not check out as the LF file"
ok "log newest first, tag by an id prefix (never moved), branch --from a tag, checkout -o (whole, kept on refusal) and to stdout equal the normalized input"

# ---------------------------------------------------------------- an edit, diff, merge, conflict
expect 0 loomctl --json data import weather "$T/edited.csv" --branch edits --message "15 days warmer"
V3=$(pj "$T/out" 'b["version"]')
NEW=$(pj "$T/out" 'b["new_bytes"]')
STORED=$(pj "$T/out" 'b["stored"]')
[ "$(pj "$T/out" 'b["new_chunks"] * 2 < b["chunks"] and 0 < b["new_bytes"] * 2 < b["stored"]')" = True ] ||
	fail "the edit of 1 % of the rows stored $NEW new bytes of $STORED: $(cat "$T/out")"
expect 0 loomctl data diff weather v1 edits
has "$T/out" "diff v1 (${V1:0:12})..edits (${V3:0:12}): 0 rows added, 0 removed,"
CHANGED=$(sed -n 's/.* removed, \([0-9]*\) changed, \([0-9]*\) the same.*/\1/p' "$T/out")
SAME=$(sed -n 's/.* removed, \([0-9]*\) changed, \([0-9]*\) the same.*/\2/p' "$T/out")
[ -n "$CHANGED" ] && [ "$CHANGED" -ge 15 ] && [ "$CHANGED" -le $((ROWS / 2)) ] ||
	fail "diff: $CHANGED rows changed for 15 edited (chunk granularity): $(cat "$T/out")"
[ $((CHANGED + SAME)) -eq "$ROWS" ] || fail "diff: changed + same is not $ROWS: $(cat "$T/out")"
# one region: one hunk, around rows 700-714 (1-based)
[ "$(grep -c '^  changed ' "$T/out")" = 1 ] || fail "diff: not one hunk: $(cat "$T/out")"
HUNK=$(sed -n 's/^  changed  *rows \([0-9]*\)-\([0-9]*\)  *-> rows [0-9]*-[0-9]*$/\1 \2/p' "$T/out")
[ -n "$HUNK" ] && [ "${HUNK% *}" -le 700 ] && [ "${HUNK#* }" -ge 714 ] || fail "diff: the hunk is not around rows 700-714: $(cat "$T/out")"
expect 0 loomctl --json data diff weather "$V1" "$V2"
[ "$(pj "$T/out" 'b["same"]')" = True ] || fail "diff of two imports of one file: $(cat "$T/out")"
expect 0 loomctl data diff weather v1 main
has "$T/out" "the same rows and columns"
ok "15 rows edited: $NEW of $STORED bytes new; diff: $CHANGED rows changed (chunk granularity), $SAME the same"

# main (V2) is not an ancestor of edits (V1 → V3): not a fast-forward
expect 1 loomctl data merge weather edits main
has "$T/err" "HTTP 409"
expect 0 loomctl data branch weather ff --from v1
expect 0 loomctl data merge weather edits ff
expect 0 loomctl --json data branch weather
[ "$(pj "$T/out" '[x["version"] for x in (b if isinstance(b, list) else b["branches"]) if x["name"] == "ff"][0]')" = "$V3" ] ||
	fail "merge did not move ff to $V3: $(cat "$T/out")"
# a commit whose parent is no longer the head
expect 1 loomctl data import weather "$CSV" --branch edits --parent "$V1"
has "$T/err" "HTTP 409"
has "$T/err" "is not the head of branch edits"
expect 0 loomctl --json data log weather edits --limit 1
[ "$(pj "$T/out" '(b if isinstance(b, list) else b["versions"])[0]["id"]')" = "$V3" ] ||
	fail "the refused commit moved edits: $(cat "$T/out")"
ok "merge: a fast-forward moves the branch, another is refused; a stale --parent is a conflict"

# ---------------------------------------------------------------- locks
expect 0 bob data create shared
expect 0 bob data import shared "$CSV"
expect 0 bob data lock shared main --ttl 300
has "$T/out" "locked by bob until"
expect 1 loomctl data import shared "$T/edited.csv"
has "$T/err" "HTTP 409"
has "$T/err" "locked by bob until"
expect 1 loomctl data lock shared main
has "$T/err" "locked by bob"
expect 0 bob data show shared
grep -Eq "^main .*locked by bob until" "$T/out" || fail "show: no lock on main: $(cat "$T/out")"
expect 0 bob data unlock shared main
expect 0 loomctl data import shared "$T/edited.csv"
# an import refused by loomd (a row with too many fields) aborts its upload:
# the branch is not left locked
expect 1 bob data import shared "$T/bad.csv"
has "$T/err" "loomd refused"
expect 0 bob data import shared "$CSV"
expect 0 bob data show shared
hasnt "$T/out" "locked by"
ok "bob's lock refuses admin's import and lock naming bob; unlock; a refused import releases the lock"

# ---------------------------------------------------------------- quota
expect 0 loomctl data quota bob
has "$T/out" "bob: "
has "$T/out" "quota none"
expect 1 bob data quota bob 1G
has "$T/err" "HTTP 403"
expect 0 loomctl data quota bob 1K
has "$T/out" "quota 1.0 KiB"
expect 0 bob data create mine
expect 1 bob data import mine "$T/bob.csv"
has "$T/err" "HTTP 413"
expect 0 loomctl data quota bob 0
expect 0 bob data import mine "$T/bob.csv"
expect 0 loomctl --json data quota bob
[ "$(pj "$T/out" 'b["used_bytes"] > 1024')" = True ] || fail "quota: bob's stored bytes: $(cat "$T/out")"
ok "a quota refuses an import (413); lifted, the next import goes through (the lock was released)"

# ---------------------------------------------------------------- audit, gc, rm
expect 0 loomctl data audit weather
for action in commit tag checkout; do
	grep -Eq "^[^ ]+ +$ME +$action" "$T/out" || fail "audit: no $action: $(cat "$T/out")"
done
expect 0 loomctl --json data audit shared --user bob --limit 100
[ "$(pj "$T/out" 'all(e["user"] == "bob" for e in (b if isinstance(b, list) else b["audit"]))')" = True ] ||
	fail "audit --user bob: $(cat "$T/out")"
expect 0 loomctl data audit shared --action lock
has "$T/out" "bob"
expect 1 bob data audit weather
expect 1 bob data gc
has "$T/err" "HTTP 403"
expect 0 loomctl data create scratch
expect 0 loomctl data import scratch "$T/scratch.csv"
expect 0 loomctl data rm crlf
expect 0 loomctl data rm scratch
expect 0 loomctl --json data gc --grace 0
[ "$(pj "$T/out" 'b["chunks_deleted"] > 0')" = True ] || fail "gc deleted none of scratch's chunks: $(cat "$T/out")"
expect 0 loomctl data gc --grace 0
has "$T/out" "gc: 0 chunks deleted"
expect 1 loomctl data show crlf
has "$T/err" "HTTP 404"
expect 0 loomctl data checkout weather v1 -o "$T/after-gc.csv"
cmp "$CSV" "$T/after-gc.csv" || fail "gc broke a version still referenced"
ok "audit lists commits, tags, checkouts and locks (filtered by user, action); gc is admin's and keeps what versions reference"

# ---------------------------------------------------------------- a restart, a large file
# loomd again with the default chunk sizes (64 KiB to 1 MiB; the small
# ones would make thousands of chunks of the file below); what was
# committed is there after the restart
stop_loomd
sed -i '/chunk_min/d' "$T/loomd.conf"
start_loomd "$T/loomd.conf" "$T/state"
export LOOM_URL=$URL
expect 0 loomctl data checkout weather v1 -o "$T/restarted.csv"
cmp "$CSV" "$T/restarted.csv" || fail "v1 after a restart differs"
# 24 MiB: three parts of 8 MiB up (over the socket), two answers of at most
# 16 MiB down
py - "$T/big.csv" <<'EOF2'
import random, sys
r = random.Random(3)
with open(sys.argv[1], "w") as f:
    f.write("time,a,b,c\n")
    i = 0
    while f.tell() < 24 << 20:
        f.write("%d,%.6f,%.6f,%d\n" % (i, r.random(), r.gauss(0, 1), r.randrange(10**6)))
        i += 1
EOF2
expect 0 loomctl data create big
expect 0 loomctl --socket "$T/state/loomd.sock" --json data import big "$T/big.csv"
[ "$(pj "$T/out" 'b["rows"]')" = "$(($(wc -l <"$T/big.csv") - 1))" ] || fail "big: rows: $(cat "$T/out")"
expect 0 loomctl data checkout big main -o "$T/big.out"
cmp "$T/big.csv" "$T/big.out" || fail "big: checkout differs from the input"
[ "$(grep -c ' checkout ' <(loomctl data audit big --action checkout))" -ge 2 ] ||
	fail "big: the checkout did not page (one answer of more than 16 MiB?)"
ok "a 24 MiB CSV: imported in parts of 8 MiB over the socket, checked out in pages, equal"

stop_loomd
