#!/bin/bash
# storage-s3 against a real S3 server: starts a one-node OpenStack Swift with
# s3api (tests/helpers/swift-s3.sh) and a fault-injecting proxy in front of
# it (tests/helpers/flaky-http.py) on loopback, runs the Check suite
# test-storage-s3 (the storage conformance suite plus S3's own cases)
# against them, and stops both, also when the suite fails or is
# interrupted.  Skips (77) when Swift is not installed.
set -u

B=${LOOM_TEST_BUILDDIR:-$(pwd)}
S=${LOOM_TEST_SRCDIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
PY=${SWIFT_PYTHON:-/usr/bin/python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loom-s3.XXXXXX")
PROXY_PID=
SUITE_PID=

cleanup() {
	if [ -n "$SUITE_PID" ]; then
		kill "$SUITE_PID" 2>/dev/null
		wait "$SUITE_PID" 2>/dev/null
	fi
	if [ -n "$PROXY_PID" ]; then
		kill "$PROXY_PID" 2>/dev/null
		wait "$PROXY_PID" 2>/dev/null
	fi
	bash "$S/tests/helpers/swift-s3.sh" stop "$WORK/swift"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

T0=$(date +%s.%N)
bash "$S/tests/helpers/swift-s3.sh" start "$WORK/swift" >"$WORK/start.log" 2>&1
rc=$?
if [ $rc = 77 ]; then
	echo "SKIP: $(cat "$WORK/start.log")"
	echo "(Debian: apt-get install swift-proxy swift-object swift-container swift-account memcached)"
	exit 77
elif [ $rc != 0 ]; then
	echo "FAIL: Swift did not start:"
	cat "$WORK/start.log"
	for f in "$WORK"/swift/log/*.log; do
		echo "== $f"
		tail -n 20 "$f"
	done
	exit 1
fi
set -a
# shellcheck disable=SC1091
. "$WORK/swift/env"
set +a
echo "Swift up in ${SWIFT_START_SECONDS} s at $S3_ENDPOINT"

"$PY" "$S/tests/helpers/flaky-http.py" "$S3_ENDPOINT" "$WORK/proxy.port" "$WORK/proxy.log" \
	2>"$WORK/proxy.err" &
PROXY_PID=$!
for _ in $(seq 100); do
	[ -s "$WORK/proxy.port" ] && break
	kill -0 "$PROXY_PID" 2>/dev/null || break
	sleep 0.1
done
if ! [ -s "$WORK/proxy.port" ]; then
	echo "FAIL: flaky-http.py did not start:"
	cat "$WORK/proxy.err"
	exit 1
fi
S3_PROXY_ENDPOINT=http://127.0.0.1:$(cat "$WORK/proxy.port")
S3_PROXY_LOG=$WORK/proxy.log
export S3_PROXY_ENDPOINT S3_PROXY_LOG

# A one-process Swift is slow: the conformance suite's threaded cases take
# 20-30 s of their 60 s here, so give every case three times its time.
CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-3}
export CK_TIMEOUT_MULTIPLIER

T1=$(date +%s.%N)
# In the background and waited for, so that a signal to this script runs
# the trap at once (bash defers traps while a foreground child runs); in a
# process group of its own, because Check's runner answers SIGTERM by
# killing its whole process group, which would otherwise be this script
# before it stopped Swift.
if [ "${LOOM_VALGRIND:-}" = 1 ]; then
	setsid sh "$S/tests/valgrind.sh" "$B/tests/unit/plugins/test-storage-s3" &
else
	setsid "$B/tests/unit/plugins/test-storage-s3" &
fi
SUITE_PID=$!
wait "$SUITE_PID"
rc=$?
SUITE_PID=
T2=$(date +%s.%N)
awk -v a="$T0" -v b="$T1" -v c="$T2" 'BEGIN {
	printf "timings: Swift and proxy start %.1f s, the suite %.1f s\n", b - a, c - b }'
if [ $rc != 0 ] && [ -s "$WORK/swift/log/proxy.log" ]; then
	echo "== Swift proxy log (last lines)"
	tail -n 20 "$WORK/swift/log/proxy.log"
fi
exit $rc
