#!/bin/sh
# Line coverage of host/, sdk/ and plugins/ from the .gcda files a
# --enable-coverage build left after `make check`.  Run from the build
# directory:  sh SRCDIR/scripts/coverage.sh
set -eu
command -v gcov >/dev/null || { echo "coverage: gcov is not installed" >&2; exit 1; }
if [ -z "$(find . -name '*.gcda' -print -quit)" ]; then
	echo "coverage: no .gcda files; configure with --enable-coverage and run make check" >&2
	exit 1
fi
find host sdk plugins -name '*.gcda' 2>/dev/null | while read -r g; do
	gcov -n -o "$(dirname "$g")" "$g" 2>/dev/null
done | awk '
	/^File / { f = $2; gsub(/\x27/, "", f) }
	/^Lines executed:/ {
		if (f !~ /(host|sdk|plugins)\/.*\.c$/ || seen[f]++) next
		split($2, a, ":"); pct = a[2] + 0; n = $4 + 0
		hit[f] = pct * n / 100; tot[f] = n
	}
	END {
		printf "%-48s %8s %8s\n", "file", "lines", "covered"
		for (f in tot) {
			match(f, /(host|sdk|plugins)\/.*$/); name = substr(f, RSTART)
			printf "%-48s %8d %7.1f%%\n", name, tot[f], 100 * hit[f] / tot[f]
			H += hit[f]; N += tot[f]
		}
		printf "%-48s %8d %7.1f%%\n", "total (host + sdk + plugins)", N, N ? 100 * H / N : 0
	}' | sort -k1,1 | awk 'NR == 1 || !/^total/ { print } /^total/ { t = $0 } END { print t }'
