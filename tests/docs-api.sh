#!/bin/bash
# docs/api.md and its Chinese translation docs/zh/api.md are what
# scripts/gen-api-doc writes from docs/openapi.json (the Chinese page with
# the translations in docs/zh/api-strings.json): regenerate both into a
# temporary directory and compare.  The script fails by itself when a text
# of docs/openapi.json has no translation, or the table translates a text
# the document no longer has; an out-of-date page fails with the difference
# and the command that brings it up to date.  Last, the error path: a table
# with one translation missing and one unused fails naming both.
set -eu
S=${LOOM_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "SKIP: python3 is not installed (./bootstrap installs it)"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/loom-docs-api.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir "$T/zh"

gen() {
	"$PY" "$S/scripts/gen-api-doc" --openapi "$S/docs/openapi.json" "$@"
}

if ! gen --strings "$S/docs/zh/api-strings.json" -o "$T/api.md" --zh-output "$T/zh/api.md"; then
	echo "FAIL: scripts/gen-api-doc failed (its messages are above); fix docs/openapi.json" >&2
	echo "or docs/zh/api-strings.json as they say, then run python3 scripts/gen-api-doc" >&2
	exit 1
fi
for page in api.md zh/api.md; do
	if ! diff -u "$S/docs/$page" "$T/$page" >"$T/diff"; then
		head -n 80 "$T/diff" >&2
		n=$(wc -l <"$T/diff")
		[ "$n" -gt 80 ] && echo "... ($n lines of difference in all)" >&2
		echo "FAIL: docs/$page is out of date with docs/openapi.json; run" >&2
		echo "    python3 scripts/gen-api-doc" >&2
		echo "in the source tree and commit docs/api.md and docs/zh/api.md" >&2
		exit 1
	fi
done
echo "ok - docs/api.md and docs/zh/api.md are up to date with docs/openapi.json"

# The error path: drop the table's first translation, add one of a text the
# document does not have.  The run must fail, name both, and leave the
# Chinese page unwritten.
"$PY" - "$S/docs/zh/api-strings.json" "$T/strings.json" "$T/expect" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    table = json.load(f)
gone = sorted(table)[0]
del table[gone]
table["a text docs/openapi.json does not have"] = "……"
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(table, f, ensure_ascii=False, indent=1, sort_keys=True)
    f.write("\n")
with open(sys.argv[3], "w", encoding="utf-8") as f:
    short = gone if len(gone) <= 80 else gone[:80] + "…"
    f.write(json.dumps(short, ensure_ascii=False) + " (\n")
    f.write('"a text docs/openapi.json does not have"\n')
EOF
rc=0
gen --strings "$T/strings.json" -o "$T/en.md" --zh-output "$T/zh.md" 2>"$T/err" || rc=$?
fail() {
	cat "$T/err" >&2
	echo "FAIL: $*" >&2
	exit 1
}
[ "$rc" = 1 ] || fail "a table with a translation missing: scripts/gen-api-doc exited $rc, not 1"
[ ! -e "$T/zh.md" ] || fail "a table with a translation missing: docs/zh/api.md was written all the same"
while IFS= read -r want; do
	grep -qF -- "$want" "$T/err" || fail "scripts/gen-api-doc's messages (above) do not name $want"
done <"$T/expect"
grep -qF "add each missing text to $T/strings.json" "$T/err" ||
	fail "scripts/gen-api-doc's messages (above) do not say to add the missing text to the table"
echo "ok - a missing or unused translation fails, naming it"
