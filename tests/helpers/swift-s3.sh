#!/bin/bash
# A one-node OpenStack Swift with the s3api and tempauth middlewares: an
# S3-compatible server on loopback for the storage-s3 tests, checking AWS
# Signature V4 like the real thing.  Everything lives in DIR; /etc/swift is
# neither read nor written (a small launcher points Swift at DIR/etc).
#
#   swift-s3.sh start DIR [PORT]   start it (PORT 0 or none: free ports);
#                                  prints and writes DIR/env (S3_ENDPOINT ...)
#   swift-s3.sh stop DIR           stop exactly the processes it started
#
# Exit 77 from start when Swift is not installed (Debian: apt-get install
# swift-proxy swift-object swift-container swift-account), 1 when it does
# not come up (the logs are in DIR/log).
#
# Ports: the proxy (the S3 endpoint) on PORT, the object, container and
# account servers and memcached (optional: used when installed) on four
# more free ports, all on 127.0.0.1.  Credentials:
# access key "test:tester", secret "testing", region us-east-1, path-style
# URLs.  Object names may be 2048 bytes (S3 allows 1024): the tests put
# 1024-byte keys under a per-test prefix.
#
# Env: SWIFT_PYTHON (default /usr/bin/python3: Swift is a Debian package,
# and a python3 from a venv earlier in PATH would lack it),
# SWIFT_START_TIMEOUT (seconds, default 60).
set -euo pipefail

MODE=${1:-}
DIR=${2:-}
if [ -z "$MODE" ] || [ -z "$DIR" ]; then
	sed -n '2,23p' "$0" >&2
	exit 2
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd) # paste.deploy wants absolute paths
ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
DEV=$DIR/srv
PY=${SWIFT_PYTHON:-/usr/bin/python3}
ACCESS='test:tester'
SECRET='testing'
REGION='us-east-1'
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# A process's start time (clock ticks since boot, /proc/PID/stat field 22):
# the same across exec, different for a recycled PID, so stop never kills a
# stranger that inherited a dead server's PID.
starttime() { { sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f20; } 2>/dev/null || true; }
alive() {
	local st
	st=$({ sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1; } 2>/dev/null || true)
	[ -n "$st" ] && [ "$st" != Z ]
}

stop_all() {
	local f pid want have i
	[ -d "$RUN" ] || return 0
	for f in "$RUN"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		want=$(cat "${f%.pid}.start" 2>/dev/null || true)
		have=$(starttime "$pid")
		if [ -n "$pid" ] && [ -n "$have" ] && [ "$have" = "$want" ]; then
			kill -TERM "$pid" 2>/dev/null || true
			for i in $(seq 50); do
				alive "$pid" || break
				sleep 0.1
			done
			alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$f" "${f%.pid}.start"
	done
}

case "$MODE" in
stop)
	stop_all
	exit 0
	;;
start) ;;
*)
	echo "swift-s3.sh: unknown mode $MODE (start or stop)" >&2
	exit 2
	;;
esac

if ! [ -x "$PY" ] || ! "$PY" -c 'import swift.common.middleware.s3api, swift.proxy.server, swift.obj.server, swift.container.server, swift.account.server' 2>/dev/null; then
	echo "OpenStack Swift is not installed for $PY; install it with" >&2
	echo "  apt-get install swift-proxy swift-object swift-container swift-account" >&2
	exit 77
fi
command -v curl >/dev/null || {
	echo "curl is needed to check that Swift is up (apt-get install curl)" >&2
	exit 77
}
if ls "$RUN"/*.pid >/dev/null 2>&1; then
	echo "swift-s3.sh: $RUN has servers already; stop them first" >&2
	exit 1
fi

# Free ports from the kernel (bound to port 0, then released).  Another
# process could take one before Swift binds it; start then fails fast with
# "Address already in use" and is tried again with new ports.
free_ports() {
	"$PY" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    socks.append(s)
print(' '.join(str(s.getsockname()[1]) for s in socks))
PY
}

write_configs() { # proxy object container account memcached
	local user
	user=$(id -un)
	mkdir -p "$ETC" "$RUN" "$LOG" "$DEV/d1"
	cat >"$ETC/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = $(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
swift_hash_path_prefix = $(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
max_object_name_length = 2048
EOF
	# Swift 2.30 reads /etc/swift/swift.conf whatever swift_dir says: the
	# launcher points it at ours before anything reads it.
	cat >"$ETC/launch.py" <<'EOF'
import os, sys
from swift.common import utils
conf_path, section = sys.argv[1], sys.argv[2]
utils.SWIFT_CONF_FILE = os.path.join(os.path.dirname(conf_path), 'swift.conf')
utils.HASH_PATH_SUFFIX = utils.HASH_PATH_PREFIX = b''
from swift.common import constraints, storage_policy
constraints.reload_constraints()
storage_policy.reload_storage_policies()
if section == 'object-server':
    # One replica makes a race of Swift's visible that S3 does not have: a
    # GET lists the object's directory, an overwrite then removes the
    # .data file it picked, and the GET answers 404 for an object that
    # exists.  With more replicas the proxy would ask another node; here
    # the object server looks again, as long as a .data file is there.
    from swift.obj import diskfile
    from swift.common.exceptions import DiskFileNotExist
    _open = diskfile.BaseDiskFile.open
    def open_again(self, *args, **kwargs):
        for attempt in range(10):
            try:
                return _open(self, *args, **kwargs)
            except DiskFileNotExist:
                try:
                    names = os.listdir(self._datadir)
                except OSError:
                    names = []
                if attempt == 9 or not any(n.endswith('.data') for n in names):
                    raise
    diskfile.BaseDiskFile.open = open_again
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(conf_path, section, verbose=True))
EOF
	local name port
	for name in object container account; do
		case $name in
		object) port=$2 ;;
		container) port=$3 ;;
		account) port=$4 ;;
		esac
		cat >"$ETC/$name-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
user = $user
swift_dir = $ETC
devices = $DEV
mount_check = false
disable_fallocate = true
log_level = WARNING
log_name = $name-server

[pipeline:main]
pipeline = healthcheck $name-server

[app:$name-server]
use = egg:swift#$name

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
	done
	cat >"$ETC/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $1
workers = 0
user = $user
swift_dir = $ETC
log_level = WARNING
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = $REGION
# S3's rule: every part of a multipart upload but the last >= 5 MiB
min_segment_size = 5242880

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $SECRET .admin

# tempauth needs a memcache client.  Without a memcached its lookups fail
# (connection refused, at once) and it works from its own config; with one
# (started below when installed) the proxy caches account and container
# info and answers faster.
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$5

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
EOF
	# Rings: one replica on one device, in one python process (the
	# swift-ring-builder command would take nine interpreter starts).
	"$PY" - "$ETC" "$2" "$3" "$4" <<'EOF'
import os, sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(('object', 'container', 'account'), map(int, sys.argv[2:5])):
    b = RingBuilder(10, 1, 1)
    b.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
               'replication_ip': '127.0.0.1', 'replication_port': port,
               'device': 'd1', 'weight': 100, 'meta': ''})
    b.rebalance()
    b.get_ring().save(os.path.join(etc, name + '.ring.gz'))
EOF
}

start_bg() { # name command...
	local name=$1 pid
	shift
	# setsid: a terminal's ^C or the test's process group signals do not
	# reach the servers; stop (or the wrapper's trap) ends them.
	setsid "$@" </dev/null >"$LOG/$name.log" 2>&1 &
	pid=$!
	echo "$pid" >"$RUN/$name.pid"
	starttime "$pid" >"$RUN/$name.start"
}

# Poll until a signed S3 request (list buckets) answers 200: the proxy, the
# auth middleware and the account server are all up then.
wait_ready() { # proxy-port
	local deadline=$((SECONDS + ${SWIFT_START_TIMEOUT:-60})) f code
	while [ $SECONDS -lt $deadline ]; do
		for f in "$RUN"/*.pid; do
			if ! alive "$(cat "$f")"; then
				echo "swift-s3.sh: $(basename "${f%.pid}") exited:" >&2
				tail -5 "$LOG/$(basename "${f%.pid}").log" >&2
				return 1
			fi
		done
		code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 --aws-sigv4 "aws:amz:$REGION:s3" \
			-H "x-amz-content-sha256: $EMPTY_SHA" \
			"http://${ACCESS/:/%3A}:$SECRET@127.0.0.1:$1/" || true)
		[ "$code" = 200 ] && return 0
		sleep 0.1
	done
	echo "swift-s3.sh: no answer on port $1 after ${SWIFT_START_TIMEOUT:-60} s" >&2
	return 1
}

T0=$(date +%s.%N)
for try in 1 2 3; do
	read -r P_PROXY P_OBJ P_CONT P_ACCT P_MC <<<"$(free_ports 5)"
	if [ -n "${3:-}" ] && [ "${3}" != 0 ]; then P_PROXY=$3; fi
	write_configs "$P_PROXY" "$P_OBJ" "$P_CONT" "$P_ACCT" "$P_MC"
	if command -v memcached >/dev/null; then
		MU=()
		[ "$(id -u)" = 0 ] && MU=(-u root)
		start_bg memcached memcached -l 127.0.0.1 -p "$P_MC" -U 0 -m 64 "${MU[@]}"
	fi
	for s in account container object proxy; do
		start_bg "$s" "$PY" "$ETC/launch.py" "$ETC/$s-server.conf" "$s-server"
	done
	if wait_ready "$P_PROXY"; then
		break
	fi
	stop_all
	if [ "$try" = 3 ] || ! grep -qs 'Address already in use' "$LOG"/*.log; then
		echo "swift-s3.sh: Swift did not start; logs in $LOG" >&2
		exit 1
	fi
	echo "swift-s3.sh: a port was taken; trying other ports" >&2
done
T1=$(date +%s.%N)

cat >"$DIR/env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$P_PROXY
S3_ACCESS_KEY=$ACCESS
S3_SECRET_KEY=$SECRET
S3_REGION=$REGION
SWIFT_START_SECONDS=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')
EOF
cat "$DIR/env"
