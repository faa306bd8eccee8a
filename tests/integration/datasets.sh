#!/bin/bash
# Versioned datasets through a real loomd (issue 16): alice imports the
# seattle-weather CSV through the upload routes (in parts), logs and tags
# it; bob cannot see it (404) until it is shared; bob works on a branch of
# his own whose diff (rows 100-110 edited) names that region; a branch
# locked by alice refuses bob (409 naming her and until when); two uploads
# from the same parent: the second is a conflict (409), never merged;
# fast-forward merge and a refused non-fast-forward one; /data pages
# reproduce the file byte for byte; bob over his quota is refused with
# nothing acknowledged (head and used bytes unchanged); loomd killed (-9)
# after the chunks and after the manifest leaves the old and the new head,
# each of which checks out; gc deletes exactly the unreferenced chunks
# (counted in storage) and every reachable version still checks out; the
# audit trail says who did what.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
CSV=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-weather.csv
[ -r "$CSV" ] || {
	echo "SKIP: $CSV is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}

mkdir -p "$T/data"
tr -d '\r' <"$CSV" >"$T/data/v1.csv"
# rows 100-110 (data rows, 1-based) edited: wind + 1
awk -F, -v OFS=, 'NR >= 101 && NR <= 111 { $5 = $5 + 1 } { print }' "$T/data/v1.csv" >"$T/data/bob.csv"
# 2016 appended (2015 again, a year on)
{ cat "$T/data/v1.csv"; grep '^2015' "$T/data/v1.csv" | sed 's/^2015/2016/'; } >"$T/data/v3.csv"
# what the killed commits upload: rows 1000-1003 and 500-505 edited
awk -F, -v OFS=, 'NR >= 1001 && NR <= 1004 { $3 = $3 + 1 } { print }' "$T/data/v1.csv" >"$T/data/crash.csv"
awk -F, -v OFS=, 'NR >= 501 && NR <= 506 { $4 = $4 - 1 } { print }' "$T/data/v1.csv" >"$T/data/v5.csv"
ROWS=$(($(wc -l <"$T/data/v1.csv") - 1))

state=$T/state
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = (
  { instance = "store"; module = "storage-local"; config = { root = "$T/blobs"; }; }
);
datasets = { chunk_min = "1K"; chunk_avg = "2K"; chunk_max = "8K"; lock_ttl = 600; };
EOF
start_loomd "$T/loomd.conf" "$state"
ok "loomd started at $URL"

expect 0 loomctl --url "$URL" users add alice
expect 0 loomctl --url "$URL" users add bob
declare -A TOKEN
for u in alice bob; do
	TOKEN[$u]=$(loomctl --url "$URL" tokens create --user $u -q)
done
TOKEN[admin]=$LOOM_TOKEN

as() { # USER METHOD PATH [BODY]: status in $T/code, body in $T/body
	command curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer ${TOKEN[$1]}" \
		-X "$2" ${4:+-H 'Content-Type: application/json' --data-binary "$4"} "$URL$3" >"$T/code" || true
}
code() { [ "$(cat "$T/code")" = "$1" ] || { cat "$T/body" >&2; fail "HTTP $(cat "$T/code"), expected $1"; }; }
py() { /usr/bin/python3 -c "import json,sys; b=json.load(open('$T/body')); print($1)"; }
says() { # TEXT: in the error's message
	/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))
t = b["error"]["message"] if isinstance(b, dict) and "error" in b else json.dumps(b)
sys.exit(sys.argv[2] not in t)' "$T/body" "$1" || fail "expected \"$1\" in: $(cat "$T/body")"
}
errcode() { [ "$(py 'b["error"]["code"]')" = "$1" ] || fail "expected error code $1: $(cat "$T/body")"; }
D=/api/v1/datasets/weather

# upload USER FILE BRANCH [PARENT]: begin, parts of 16K, no commit; sets UP
upload() {
	local body="{\"branch\": \"$3\", \"format\": \"csv\"${4:+, \"parent\": \"$4\"}}" n=0 f
	as "$1" POST "$D/uploads" "$body"
	code 201
	UP=$(py 'b["upload"]')
	rm -rf "$T/parts" && mkdir "$T/parts"
	split -b 16384 -d -a 4 "$2" "$T/parts/p"
	for f in "$T/parts"/p*; do
		put_part "$1" "$UP" $n "$f"
		code 200
		n=$((n + 1))
	done
}
put_part() { # USER UPLOAD N FILE
	command curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer ${TOKEN[$1]}" \
		-X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$4" \
		"$URL$D/uploads/$2/parts/$3" >"$T/code" || true
}
# checkout USER REF OUT: every page of /data (5 chunks each) into OUT
checkout() {
	local from=0 next
	: >"$3"
	while :; do
		next=$(command curl -s -D "$T/headers" -o "$T/page" -w '%{http_code}' \
			-H "Authorization: Bearer ${TOKEN[$1]}" "$URL$D/versions/$2/data?from=$from&count=5")
		[ "$next" = 200 ] || { cat "$T/page" >&2; fail "checkout of $2: HTTP $next"; }
		cat "$T/page" >>"$3"
		next=$(tr -d '\r' <"$T/headers" | sed -n 's/^[Xx]-[Ll]oom-[Cc]hunks-[Nn]ext: //p')
		[ -n "$next" ] || fail "no X-Loom-Chunks-Next header"
		[ "$next" = end ] && break
		[ "$next" -gt "$from" ] || fail "X-Loom-Chunks-Next $next does not move past $from"
		from=$next
	done
}
head_of() { # BRANCH
	as alice GET "$D"
	code 200
	/usr/bin/python3 -c "import json; b=json.load(open('$T/body')); print([x['version'] for x in b['branches'] if x['name']=='$1'][0] or '')"
}

# ---------------------------------------------------------------- create, import, log, tag
as alice POST /api/v1/datasets '{"name": "gc"}'
code 400
as alice POST /api/v1/datasets '{"name": ".hidden"}'
code 400
says "name:"
as alice POST /api/v1/datasets '{"name": "weather", "description": "Seattle, 2012-2015"}'
code 201
as alice POST /api/v1/datasets '{"name": "weather"}'
code 409
upload alice "$T/data/v1.csv" main
# a part out of order names the one expected
put_part alice "$UP" 7 "$T/data/v1.csv"
code 409
says "expects part"
as alice POST "$D/uploads/$UP/commit" '{"message": "seattle-weather as published"}'
code 201
V1=$(py 'b["version"]')
[ "$(py 'b["rows"]')" = "$ROWS" ] || fail "rows: $(py 'b["rows"]') != $ROWS"
[ "$(py 'b["new_chunks"]')" = "$(py 'b["chunks"]')" ] || fail "a first import stores every chunk"
[ "$(py 'b["chunks"]')" -ge 10 ] || fail "only $(py 'b["chunks"]') chunks: the small chunk sizes were not used"
as alice GET "$D/versions"
code 200
[ "$(py 'len(b)')" = 1 ] && [ "$(py 'b[0]["id"]')" = "$V1" ] || fail "log: $(cat "$T/body")"
as alice POST "$D/tags" "{\"name\": \"v1\", \"ref\": \"${V1:0:10}\"}"
code 201
[ "$(py 'b["version"]')" = "$V1" ] || fail "tag by prefix"
as alice POST "$D/tags" '{"name": "v1", "ref": "main"}'
code 409
as alice GET "$D/versions/v1"
code 200
[ "$(py 'b["id"]')" = "$V1" ] && [ "$(py 'b["format"]')" = csv ] || fail "manifest: $(cat "$T/body")"
checkout alice v1 "$T/out-v1.csv"
cmp "$T/out-v1.csv" "$T/data/v1.csv" || fail "the checkout of v1 differs from the file"
ok "alice imported $ROWS rows in parts as $V1, tagged v1; /data pages give the file back byte for byte"

# ---------------------------------------------------------------- bob: 404 until shared, his own branch, diff
as bob GET "$D"
code 404
as bob GET /api/v1/datasets
code 200
[ "$(py 'len(b)')" = 0 ] || fail "bob lists alice's dataset"
as bob POST "$D/uploads" '{"branch": "bob"}'
code 404
expect 0 env LOOM_TOKEN="${TOKEN[alice]}" "$LOOMCTL" --url "$URL" share dataset weather bob write
as bob GET "$D"
code 200
upload bob "$T/data/bob.csv" bob
as bob POST "$D/uploads/$UP/commit" '{"message": "wind fixed in rows 100-110"}'
code 201
VB=$(py 'b["version"]')
[ "$(py 'b["parents"][0]')" = "$V1" ] || fail "bob's branch starts at main's head"
[ "$(py 'b["new_chunks"]')" -le 2 ] || fail "an edit of 11 rows stored $(py 'b["new_chunks"]') new chunks"
as bob GET "$D/diff?from=v1&to=bob"
code 200
/usr/bin/python3 - "$T/body" <<'PY' || fail "diff: $(cat "$T/body")"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rows"]
assert not d["same"] and r["added"] == 0 and r["removed"] == 0, r
assert 11 <= r["changed"] <= 400, r
assert r["changed"] + r["same"] == 1461, r
# every changed hunk lies around rows 99..109 (0-based), and covers them
h = [x for x in d["hunks"] if x["op"] == "changed"]
assert h and min(x["a"]["row"] for x in h) <= 99, h
assert max(x["a"]["row"] + x["a"]["rows"] for x in h) >= 110, h
assert all(x["a"]["row"] < 110 and x["a"]["row"] + x["a"]["rows"] > 99 - 400 for x in h), h
PY
ok "bob sees nothing until shared; his branch's edit of rows 100-110 is one region of the diff ($(py 'b["rows"]["changed"]') rows changed at chunk granularity)"

# ---------------------------------------------------------------- locks
as alice POST "$D/branches/main/lock" '{"ttl": 300}'
code 200
as bob POST "$D/uploads" '{"branch": "main"}'
code 409
errcode locked
says "locked by alice until 20"
as bob DELETE "$D/branches/main/lock"
code 403
as alice DELETE "$D/branches/main/lock"
code 200
ok "a branch locked by alice refuses bob with 409 naming her and until when"

# ---------------------------------------------------------------- conflicts
upload alice "$T/data/v3.csv" main "$V1"
as alice POST "$D/uploads/$UP/commit" '{"message": "2016"}'
code 201
V3=$(py 'b["version"]')
# a second upload from the same parent: refused at its beginning …
as bob POST "$D/uploads" "{\"branch\": \"main\", \"parent\": \"$V1\"}"
code 409
errcode conflict
# … and at its commit
upload bob "$T/data/bob.csv" main
as bob POST "$D/uploads/$UP/commit" "{\"message\": \"from v1\", \"parent\": \"$V1\"}"
code 409
errcode conflict
says "branch main of dataset weather moved: its head is $V3"
[ "$(head_of main)" = "$V3" ] || fail "the conflict moved main"
as bob POST "$D/uploads" '{"branch": "main"}'
code 201
as bob DELETE "$D/uploads/$(py 'b["upload"]')"
code 200
ok "two uploads from the same parent: the second is 409 conflict at begin and at commit; main stays $V3"

# ---------------------------------------------------------------- merges
as alice POST "$D/merge" '{"into": "main", "from": "bob"}'
code 409
errcode not_fast_forward
as alice POST "$D/branches" '{"name": "feature"}'
code 201
[ "$(py 'b["version"]')" = "$V3" ] || fail "a branch starts at the default branch's head"
as alice POST "$D/branches" '{"name": "v1"}'
code 409
upload alice "$T/data/v1.csv" feature
as alice POST "$D/uploads/$UP/commit" '{"message": "2016 dropped again"}'
code 201
V4=$(py 'b["version"]')
[ "$(py 'b["new_chunks"]')" = 0 ] || fail "v1's rows again stored $(py 'b["new_chunks"]') new chunks"
as alice POST "$D/merge" '{"into": "main", "from": "feature"}'
code 200
[ "$(head_of main)" = "$V4" ] || fail "fast-forward did not move main"
ok "fast-forward merge moves main to $V4; a non-fast-forward one is 409 naming both heads"

# ---------------------------------------------------------------- quota
as admin GET /api/v1/datasets/quotas/bob
code 200
USED=$(py 'b["used_bytes"]')
as bob GET /api/v1/datasets/quotas/alice
code 403
as admin PUT /api/v1/datasets/quotas/bob "{\"max_bytes\": $((USED + 2000))}"
code 200
python3 -c "
import random
random.seed(7)
print('a,b,c')
for i in range(20000): print(random.random(), random.random(), i, sep=',')" >"$T/data/noise.csv"
as bob POST "$D/uploads" '{"branch": "bob"}'
code 201
UP=$(py 'b["upload"]')
put_part bob "$UP" 0 "$T/data/noise.csv"
code 413
errcode quota_exceeded
says "user bob would use"
says "loomctl data quota bob"
put_part bob "$UP" 1 "$T/data/noise.csv"
code 404
[ "$(head_of bob)" = "$VB" ] || fail "the refused upload moved bob's branch"
as admin GET /api/v1/datasets/quotas/bob
[ "$(py 'b["used_bytes"]')" = "$USED" ] || fail "used bytes $(py 'b["used_bytes"]') != $USED after the refusal"
as bob POST "$D/uploads" '{"branch": "bob"}'
code 201
as bob DELETE "$D/uploads/$(py 'b["upload"]')"
code 200
as admin PUT /api/v1/datasets/quotas/bob '{"max_bytes": null}'
code 200
ok "bob over his quota: 413 quota_exceeded, the upload aborted, head and used bytes ($USED) unchanged, the lock free"

# ---------------------------------------------------------------- kill -9 mid-commit
crash_commit() { # WHEN FILE
	stop_loomd
	LOOM_TEST_DATASETS_CRASH=$1 start_loomd "$T/loomd.conf" "$state"
	upload alice "$2" main
	as alice POST "$D/uploads/$UP/commit" '{"message": "killed"}'
	[ "$(cat "$T/code")" = 000 ] || fail "the commit answered $(cat "$T/code") instead of dying"
	local rv=0
	wait "$LOOMD_BG" || rv=$?
	[ $rv = 137 ] || fail "loomd exited $rv, not 137 (SIGKILL)"
	LOOMD_PID= LOOMD_BG=
	start_loomd "$T/loomd.conf" "$state"
}
crash_commit after-chunks "$T/data/crash.csv"
[ "$(head_of main)" = "$V4" ] || fail "after-chunks: main is $(head_of main), not the old head $V4"
checkout alice main "$T/out.csv"
cmp "$T/out.csv" "$T/data/v1.csv" || fail "after-chunks: the old head does not check out"
as alice POST "$D/branches/main/lock"
code 200
as alice DELETE "$D/branches/main/lock"
code 200
ok "killed after the chunks: main is the old head $V4, which checks out; its lock was freed at restart"
crash_commit after-manifest "$T/data/v5.csv"
V5=$(head_of main)
[ "$V5" != "$V4" ] || fail "after-manifest: main is still the old head"
checkout alice main "$T/out.csv"
cmp "$T/out.csv" "$T/data/v5.csv" || fail "after-manifest: the new head does not check out"
ok "killed after the manifest: main is the new head $V5, which checks out"

# ---------------------------------------------------------------- gc
blobs() { find "$T/blobs/datasets/chunks" -type f | wc -l; }
as bob DELETE "$D/branches/bob"
code 200
as alice DELETE "$D/branches/feature"
code 200
B0=$(blobs)
as bob POST /api/v1/datasets/gc '{"grace_s": 0}'
code 403
as admin POST /api/v1/datasets/gc '{"grace_s": 0}'
code 200
DELETED=$(py 'b["chunks_deleted"]')
[ "$(py 'b["versions_deleted"]')" -ge 1 ] || fail "gc deleted no version: $(cat "$T/body")"
[ "$DELETED" -ge 1 ] || fail "gc deleted no chunk: $(cat "$T/body")"
[ "$(blobs)" = $((B0 - DELETED)) ] || fail "storage holds $(blobs) chunks, expected $B0 - $DELETED"
as admin POST /api/v1/datasets/gc '{"grace_s": 0}'
code 200
[ "$(py 'b["chunks_deleted"]')" = 0 ] || fail "a second gc deleted more: $(cat "$T/body")"
as alice GET "$D/versions/$VB"
code 404
for ref in v1 main "$V3" "$V4"; do
	checkout alice "$ref" "$T/out.csv"
done
checkout alice v1 "$T/out.csv"
cmp "$T/out.csv" "$T/data/v1.csv" || fail "v1 after gc"
checkout alice "$V3" "$T/out.csv"
cmp "$T/out.csv" "$T/data/v3.csv" || fail "$V3 after gc"
checkout alice main "$T/out.csv"
cmp "$T/out.csv" "$T/data/v5.csv" || fail "main after gc"
ok "gc deleted $DELETED unreferenced chunks (storage $B0 -> $(blobs)) and bob's version; every reachable version checks out"

# ---------------------------------------------------------------- audit
as bob GET "$D/audit"
code 403
as alice GET "$D/audit?limit=1000"
code 200
/usr/bin/python3 - "$T/body" <<'PY' || fail "audit: $(cat "$T/body")"
import json, sys
a = json.load(open(sys.argv[1]))
acts = {(x["user"], x["action"]) for x in a}
for want in [("alice", "create"), ("alice", "commit"), ("alice", "tag"), ("alice", "checkout"),
             ("bob", "commit"), ("alice", "lock"), ("alice", "unlock"), ("alice", "merge"),
             ("bob", "upload-abort"), ("bob", "branch-delete")]:
    assert want in acts, want
c = [x for x in a if x["action"] == "commit" and x["user"] == "alice"]
assert all(x["version"] and x["bytes"] is not None for x in c), c
PY
as alice GET "$D/audit?action=tag&user=alice"
code 200
[ "$(py 'len(b)')" = 1 ] || fail "audit filters: $(cat "$T/body")"
ok "the audit trail names who created, committed, tagged, checked out, locked, merged and aborted"

stop_loomd
