#!/bin/bash
# Users, roles, API tokens and shares (docs/security.md), against a real
# loomd: 401 without or with a bad token (the token format and its checksum
# checked by a second implementation here), 403 for a role that may not,
# 404 for another user's task, lists filtered, shares, revocation, expiry,
# the exec permission, data_roots, the audit lines, and that no token is
# stored or logged in clear.
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl is not installed (./bootstrap installs it)"; exit 77; }
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: /usr/bin/python3 is not installed (./bootstrap installs it)"; exit 77; }

state=$T/state
mkdir -p "$state" "$T/data"
conf() {
	cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
$1
data_roots = [ "$T/data", "/usr/lib/python3/dist-packages/vega_datasets/_data" ];
jobs = { worker = "$B/host/loom-worker"; tick = "100ms"; cpu = 2; };
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "transformer"; module = "compute-transformer"; },
  { instance = "forecast"; module = "head-forecast"; },
  { instance = "exec"; module = "compute-exec"; }
);
EOF
}

# api TOKEN METHOD PATH [BODY]: the status on stdout, the body in $T/body
api() {
	local tok=$1 method=$2 path=$3 body=${4:-}
	command curl -s -o "$T/body" -w '%{http_code}' -X "$method" \
		${tok:+-H "Authorization: Bearer $tok"} \
		${body:+-H 'Content-Type: application/json' --data-binary "$body"} "$URL$path"
}
# want STATUS TOKEN METHOD PATH [BODY] [TEXT]: the status, and TEXT in the body
want() {
	local status=$1 text=${6:-}
	shift
	local got
	got=$(api "$@")
	[ "$got" = "$status" ] || { cat "$T/body" >&2; fail "$2 $3: HTTP $got, expected $status"; }
	[ -z "$text" ] || has "$T/body" "$text"
}
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/body" "$1"; }

# ---- the first start: an admin for the state directory's owner
conf 'auth = "none";'
start_loomd "$T/loomd.conf" "$state"
owner=$(stat -c %U "$state")
has "$T/loomd.log" "created the admin user \"$owner\""
has "$T/loomd.log" 'auth = "none": EVERY client'
want 200 "" GET /api/v1/session "" "\"user\":\"$owner\""
for u in alice:user bob:user vic:viewer; do
	want 201 "" POST /api/v1/users "{\"name\":\"${u%%:*}\",\"role\":\"${u#*:}\"}"
done
want 409 "" POST /api/v1/users '{"name":"alice"}' "there is a user by that name"
want 400 "" POST /api/v1/users '{"name":"Alice/../x"}' "name: give 1 to 32"
want 400 "" POST /api/v1/users '{"name":"zed","role":"root"}' "role: admin, user or viewer"
for u in root:"$owner" alice bob vic; do
	name=${u#*:}
	want 201 "" POST /api/v1/tokens "{\"user\":\"$name\",\"name\":\"tests\"}"
	field token >"$T/token.${u%%:*}"
done
want 201 "" POST /api/v1/tokens '{"user":"bob","expires_in":3600}'
field token >"$T/token.soon"
field id >"$T/token.soon.id"
stop_loomd
ROOT=$(cat "$T/token.root") ALICE=$(cat "$T/token.alice") BOB=$(cat "$T/token.bob")
VIC=$(cat "$T/token.vic") SOON=$(cat "$T/token.soon")

# the format, computed here independently: loom_ + 43 base62 + base62(CRC-32)
"$PY" - "$ROOT" <<'EOF' || fail "a token does not have the documented format"
import sys, zlib
t = sys.argv[1]
b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
assert len(t) == 54 and t.startswith("loom_") and all(c in b62 for c in t[5:]), t[:9]
c, s = zlib.crc32(t[:48].encode()), ""
for _ in range(6):
    s = b62[c % 62] + s
    c //= 62
assert s == t[48:], "checksum"
EOF
ok "tokens: loom_, 49 base62 characters, a CRC-32 checksum"

# ---- tokens
conf 'auth = "token";'
start_loomd "$T/loomd.conf" "$state"
want 401 "" GET /api/v1/training/tasks "" "sign in: send"
command curl -s -D "$T/head" -o /dev/null "$URL/api/v1/training/tasks"
has "$T/head" 'WWW-Authenticate: Bearer realm="loom"'
want 200 "" GET /api/v1/health
[ "$(grep -c state_dir "$T/body")" = 0 ] || fail "health tells an anonymous caller where the state is"
want 200 "$ROOT" GET /api/v1/health "" state_dir
want 401 "ghp_abc" GET /api/v1/session "" "not a Loom API token"
want 401 "${ALICE:0:40}" GET /api/v1/session "" "cut short or mistyped"
flipped=${ALICE:0:20}$( [ "${ALICE:20:1}" = a ] && echo b || echo a )${ALICE:21}
want 401 "$flipped" GET /api/v1/session "" "checksum does not match"
# well formed, never issued: the same checksum rule, another body
forged=$("$PY" -c '
import zlib
b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
t = "loom_" + "Z" * 43
c, s = zlib.crc32(t.encode()), ""
for _ in range(6):
    s = b62[c % 62] + s; c //= 62
print(t + s)')
want 401 "$forged" GET /api/v1/session "" "no such token"
code=$(command curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Basic cm9vdDpyb290" "$URL/api/v1/session")
[ "$code" = 401 ] || fail "Basic auth: $code"
has "$T/body" "Authorization: Bearer"
want 200 "$ALICE" GET /api/v1/session "" '"user":"alice","role":"user","exec":false,"via":"token"'
code=$(command curl -s -o "$T/body" -w '%{http_code}' -b "loom_token=$VIC" "$URL/api/v1/session")
[ "$code" = 200 ] && has "$T/body" '"user":"vic"' && has "$T/body" '"via":"cookie"'
ok "401 without, with a malformed, altered or unknown token; tokens and cookies accepted"

# ---- roles
want 403 "$ALICE" GET /api/v1/users "" "needs an admin"
want 200 "$ROOT" GET /api/v1/users "" '"name":"vic","role":"viewer"'
want 403 "$ALICE" POST /api/v1/tokens '{"user":"bob"}' "only an admin makes tokens for another user"
want 409 "$ROOT" PATCH "/api/v1/users/$owner" '{"role":"user"}' "last admin"
want 200 "$ALICE" GET /api/v1/tokens "" '"user":"alice"'
grep -q '"user":"bob"' "$T/body" && fail "alice sees bob's tokens"
ok "roles: admin routes, others' tokens, the last admin"

# ---- tasks: owners, 404 for another's, lists, shares
# the spec as JSON, written by hand: the long forecast job
spec='{"name":"long","compute":"transformer","data":{"path":"/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv","time_column":"date","features":["temp"],"target":["temp"]},"model":{"head":"forecast","context":48,"horizon":24,"patch":24,"stride":24,"d_model":16,"heads":2,"layers":1,"ffn":32},"train":{"epochs":1000,"batch":64,"early_stopping":{"metric":"val_loss","patience":1000}}}'
want 201 "$ALICE" POST /api/v1/training/tasks "{\"spec\":$spec}" '"user":"alice"'
a=$(field task_id)
want 403 "$VIC" POST /api/v1/training/tasks "{\"spec\":$spec}" "vic is a viewer"
want 403 "$ALICE" POST /api/v1/training/tasks "{\"spec\":$spec,\"user\":\"bob\"}" "only an admin submits"
want 201 "$ROOT" POST /api/v1/training/tasks "{\"spec\":$spec,\"user\":\"bob\"}" '"user":"bob"'
b=$(field task_id)
# another's task answers as a missing one does, word for word
want 404 "$BOB" GET "/api/v1/training/tasks/$a" "" "there is no $a"
hidden=$(cat "$T/body")
want 404 "$BOB" GET /api/v1/training/tasks/task-999 ""
[ "$(sed "s/task-999/$a/" "$T/body")" = "$hidden" ] ||
	fail "another user's task and a missing one answer differently: $hidden / $(cat "$T/body")"
want 404 "$BOB" POST "/api/v1/training/tasks/$a/cancel"
# nor can bob's task wait on it: it is as missing as task-999
want 404 "$BOB" POST /api/v1/training/tasks "{\"spec\":$spec,\"after\":[\"$a\"]}" \
	"after[0]: there is no $a"
# the pool's holders: only the tasks the caller may see
want 200 "$ALICE" POST "/api/v1/training/tasks/$a/start"
for i in $(seq 600); do
	want 200 "$ROOT" GET /api/v1/resources
	grep -q "\"$a\"" "$T/body" && break
	[ "$i" = 600 ] && fail "$a did not start within 60 s"
	sleep 0.1
done
want 200 "$BOB" GET /api/v1/resources '"nodes"'
hasnt "$T/body" "\"$a\""
want 200 "$ALICE" GET /api/v1/resources "\"$a\""
want 200 "$BOB" GET /api/v1/training/tasks "" "\"total\":1"
has "$T/body" "\"$b\""
hasnt "$T/body" "\"$a\""
want 200 "$VIC" GET /api/v1/training/tasks "" '"total":0'
want 200 "$ROOT" GET /api/v1/training/tasks "" '"total":2'
# bob may not share alice's task; alice shares it for reading
want 404 "$BOB" POST /api/v1/shares "{\"kind\":\"task\",\"id\":\"$a\",\"user\":\"bob\"}"
want 200 "$ALICE" POST /api/v1/shares "{\"kind\":\"task\",\"id\":\"${a#task-}\",\"user\":\"bob\"}" "\"id\":\"$a\""
want 200 "$BOB" GET "/api/v1/training/tasks/$a" "" '"user":"alice"'
want 403 "$BOB" POST "/api/v1/training/tasks/$a/cancel" "" "for reading only"
want 200 "$BOB" GET /api/v1/training/tasks "" '"total":2'
want 200 "$ALICE" POST /api/v1/shares "{\"kind\":\"task\",\"id\":\"$a\",\"user\":\"*\"}"
want 200 "$VIC" GET "/api/v1/training/tasks/$a"
want 403 "$VIC" POST "/api/v1/training/tasks/$a/pause" "" "may only read"
want 200 "$ALICE" POST /api/v1/shares "{\"kind\":\"task\",\"id\":\"$a\",\"user\":\"bob\",\"level\":\"write\"}"
code=$(api "$BOB" POST "/api/v1/training/tasks/$a/cancel")
[ "$code" = 200 ] || [ "$code" = 202 ] || fail "bob's cancel with a write share: HTTP $code"
want 200 "$BOB" DELETE "/api/v1/shares/task/$a/bob"
want 404 "$BOB" GET "/api/v1/training/tasks/$a/nope" ""
want 200 "$ALICE" DELETE "/api/v1/shares/task/$a/%2A"
want 404 "$VIC" GET "/api/v1/training/tasks/$a"
code=$(api "$ROOT" POST "/api/v1/training/tasks/$b/cancel")
[ "$code" = 200 ] || [ "$code" = 202 ] || fail "the admin's cancel: HTTP $code"
ok "tasks: owners, 404 for another's, filtered lists, read and write shares"

# ---- the exec permission
want 403 "$ALICE" POST /api/v1/training/tasks '{"spec":{"compute":"exec","command":["/bin/true"]}}' \
	"alice may not run commands"
want 200 "$ROOT" PATCH /api/v1/users/alice '{"exec":true}' '"exec":true'
want 201 "$ALICE" POST /api/v1/training/tasks '{"spec":{"compute":"exec","command":["/bin/true"]}}'
ok "compute-exec needs the exec permission, which an admin grants"

# ---- data roots
bad="{\"spec\":${spec/\/usr\/lib\/python3\/dist-packages\/vega_datasets\/_data\/seattle-temps.csv/\/etc\/passwd}}"
want 400 "$ALICE" POST /api/v1/training/tasks "$bad" "is outside the directories tasks may read (data_roots"
ln -s /etc "$T/data/etc"
bad="{\"spec\":${spec/\/usr\/lib\/python3\/dist-packages\/vega_datasets\/_data\/seattle-temps.csv/$T/data/etc/passwd}}"
want 400 "$ALICE" POST /api/v1/training/tasks "$bad" "data_roots"
bad="{\"spec\":${spec/\/usr\/lib\/python3\/dist-packages\/vega_datasets\/_data\/seattle-temps.csv/$T/data/../loomd.conf}}"
want 400 "$ALICE" POST /api/v1/training/tasks "$bad" "data_roots"
cp /usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv "$T/data/t.csv"
good="{\"spec\":${spec/\/usr\/lib\/python3\/dist-packages\/vega_datasets\/_data\/seattle-temps.csv/$T/data/t.csv}}"
want 201 "$ALICE" POST /api/v1/training/tasks "$good"
ok "data.path outside data_roots (directly, by a link, by ..) is refused"

# ---- revocation and expiry
want 200 "$BOB" GET /api/v1/session
want 200 "$BOB" DELETE "/api/v1/tokens/$(cat "$T/token.soon.id")" '"state":"revoked"'
want 401 "$SOON" GET /api/v1/session "" "was revoked"
want 201 "$ROOT" POST /api/v1/tokens '{"user":"vic","expires_in":60}'
late=$(field token)
late_id=$(field id)
/usr/bin/python3 - "$state/loom.db" "$late_id" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("UPDATE tokens SET expires_at = 1000 WHERE id = ?", (int(sys.argv[2]),))
db.commit()
EOF
want 401 "$late" GET /api/v1/session "" "expired at"
want 404 "$ALICE" DELETE "/api/v1/tokens/$late_id"
ok "revoked and expired tokens are refused; others' tokens cannot be revoked"

# ---- no token in clear in the database or the log; the audit trail
for tok in "$ROOT" "$ALICE" "$BOB" "$VIC" "$late"; do
	for f in "$state"/loom.db* "$T/loomd.log"; do
		! grep -qF "${tok:5:40}" "$f" || fail "a token is stored in clear in $f"
	done
done
has "$T/loomd.log" "[audit] alice: shared task $a with bob for reading"
has "$T/loomd.log" "[audit] vic: refused POST /api/v1/training/tasks/$a/pause"
grep -q "\[audit\] $owner: gave alice the right to run commands" "$T/loomd.log" ||
	fail "no audit line for the exec permission"
has "$T/loomd.log" "[audit] bob: revoked token"
has "$T/loomd.log" "refused a task"
ok "no token in the database or the log; sign-ins, refusals, shares, changes audited"
stop_loomd

# ---- auth = "none" only on loopback
conf 'auth = "none";'
expect 1 "$LOOMD" -c "$T/loomd.conf" --state-dir "$state" --listen 0.0.0.0:0 --foreground
has "$T/err" 'auth = "none" makes every client an admin'
ok "auth = \"none\" is refused on a listener that is not loopback"
