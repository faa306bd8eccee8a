#!/bin/sh
# Every English document (docs/*.md, README.md) has a Chinese counterpart
# (docs/zh/, README.zh-CN.md) translated from its current text, or NEWS.md
# says the update is pending (scripts/docs-zh).
srcdir=${srcdir:-$(dirname "$0")/..}
exec sh "$srcdir/scripts/docs-zh" check "$srcdir"
