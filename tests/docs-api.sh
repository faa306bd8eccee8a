#!/bin/bash
# docs/api.md is what scripts/gen-api-doc writes from docs/openapi.json:
# regenerate it into a temporary file and compare.  An out-of-date page
# fails with the difference and the command that brings it up to date.
set -eu
S=${LOOM_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "SKIP: python3 is not installed (./bootstrap installs it)"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/loom-docs-api.XXXXXX")
trap 'rm -rf "$T"' EXIT

"$PY" "$S/scripts/gen-api-doc" --openapi "$S/docs/openapi.json" -o "$T/api.md" || {
	echo "FAIL: scripts/gen-api-doc could not read docs/openapi.json (above)" >&2
	exit 1
}
if ! diff -u "$S/docs/api.md" "$T/api.md" >"$T/diff"; then
	head -n 80 "$T/diff" >&2
	n=$(wc -l <"$T/diff")
	[ "$n" -gt 80 ] && echo "... ($n lines of difference in all)" >&2
	echo "FAIL: docs/api.md is out of date with docs/openapi.json; run" >&2
	echo "    python3 scripts/gen-api-doc" >&2
	echo "in the source tree and commit docs/api.md" >&2
	exit 1
fi
echo "ok - docs/api.md is up to date with docs/openapi.json"
