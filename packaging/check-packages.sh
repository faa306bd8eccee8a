#!/bin/bash
# check-packages.sh BUILDDIR SRCDIR — `make check-packages`: the clean-room
# test of the Debian packages (docs/deployment.md).
#
#   1. a fresh Debian 12 root from Debian's packages (mmdebstrap), once as a
#      tarball that both roots below are unpacked from;
#   2. the packages of this tree (make deb), and those of an older tree for
#      the upgrade (OLD_COMMIT with this tree's packaging/ laid over it);
#   3. install: apt-get install ./loom_*.deb ./libloom1_*.deb
#      ./libloom-dev_*.deb into the root; start loomd as the installed
#      loomd.service says (its ExecStart, User, StateDirectory ...), check
#      its health, train the example forecast job with the packaged loomctl
#      and predict with the model it registered;
#   4. build the example plugin from libloom-dev with
#      `pkg-config --cflags --libs loom`, configure it, restart loomd and
#      see it loaded;
#   5. purge, and compare the root with its listing from before the
#      install: every new path must be one policy keeps
#      (packaging/tests/purge-keeps), anything else fails;
#   6. upgrade: the older packages in a second fresh root, a job trained and
#      a task left pending, then this tree's packages installed over them;
#      loomd must migrate the state database to a newer schema and keep
#      every task and model (same ids, the model still predicts the same),
#      and the new dataset routes work.
#
# Everything happens under BUILDDIR/_pkg-check, removed at the end unless
# KEEP=1 (on a failure the logs stay there).  Run as root: mmdebstrap,
# chroot and the mounts need it.  The script runs in a mount namespace of
# its own, so no mount it makes outlives it, and loomd runs in a network
# namespace of its own (only its loopback), so the packaged listen address
# 127.0.0.1:7420 is used as it is and cannot collide with anything on this
# machine.
#
# Environment:
#   KEEP=1          keep BUILDDIR/_pkg-check (the roots, logs) at the end
#   DEBS=DIR        test the packages in DIR instead of building them with
#                   `make deb` (one loom_, libloom1_ and libloom-dev_ .deb)
#   OLD_DEBS=DIR    the older packages for the upgrade test (e.g. the last
#                   release's) instead of building OLD_COMMIT
#   OLD_COMMIT      the older tree (default 389a70c: issue 15's end, state
#                   schema 22); built with this tree's packaging/ and the
#                   configure.ac/Makefile.am hooks of HOOK_COMMIT (75921b8),
#                   as Debian version OLD_VERSION (0.1.0-0+old1: below
#                   0.1.0-1, not below the 0.1.0 of libloom1's symbols
#                   file); the .debs
#                   are cached in BUILDDIR/_pkg-check-cache/ under a key of
#                   all three and the packaging files' contents
#   UPGRADE=0       skip the upgrade test (says so in the summary)
#   INSTALL_TEST=0  skip the install, plugin and purge tests
#   JOB_TIMEOUT     seconds a training task may take (default 1800)
#   MIRROR          the Debian mirror for mmdebstrap (default: its own,
#                   deb.debian.org)
#
# The packages apt downloads are kept in BUILDDIR/_pkg-check-cache/apt-archives
# for the next root and the next run: apt uses a cached file only when its
# size and hash are those the root's fresh index names.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@" # make runs it with $(SHELL)
set -eEu -o pipefail

die() { printf 'check-packages: %s\n' "$*" >&2; exit 1; }
skip() { printf 'check-packages: SKIP: %s\n' "$*" >&2; exit 77; }

[ $# -eq 2 ] || die "usage: $0 BUILDDIR SRCDIR (run it through \`make check-packages')"
B=$(cd "$1" && pwd) || die "$1: no such build directory"
S=$(cd "$2" && pwd) || die "$2: no such source directory"
HERE=$S/packaging

[ "$(id -u)" = 0 ] || skip "needs root (mmdebstrap, chroot, mounts); run it as root"
for tool in mmdebstrap unshare nsenter chroot jq curl flock; do
	command -v "$tool" >/dev/null 2>&1 ||
		skip "$tool is missing (apt-get install mmdebstrap util-linux jq curl; ./bootstrap does it)"
done
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || skip "the test builds an amd64 root; this is $(dpkg --print-architecture 2>/dev/null || uname -m)"

# A mount namespace of our own, private: the mounts below vanish with this
# process even when it is killed, and never propagate to the machine's.
if [ -z "${LOOM_PKG_CHECK_NS:-}" ]; then
	export LOOM_PKG_CHECK_NS=$$
	exec unshare --mount --propagation private -- /bin/bash "$0" "$@"
fi

KEEP=${KEEP:-0}
UPGRADE=${UPGRADE:-1}
INSTALL_TEST=${INSTALL_TEST:-1}
JOB_TIMEOUT=${JOB_TIMEOUT:-1800}
OLD_COMMIT=${OLD_COMMIT:-389a70c}
HOOK_COMMIT=${HOOK_COMMIT:-75921b8}
OLD_VERSION=${OLD_VERSION:-0.1.0-0+old1}
W=$B/_pkg-check
CACHE=$B/_pkg-check-cache
LOGS=$W/logs
ROOTS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
JOB=/usr/share/loom/jobs/seattle-temps-forecast.conf
MODEL=seattle-temps-forecast
TEMPS=/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv

# One run at a time per build directory.
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -n 9 || die "another check-packages runs on $B (lock $CACHE/lock)"

# ---------------------------------------------------------------- steps and the summary
STEP='' STEP_T0='' FAILED='' ROOT='' NS_PID='' LOOMD_PID='' NOTIFY_PID='' NOTIFY_LOG=''
STEPS=() SECS=() NOTES=()
now() { printf '%s' "$EPOCHREALTIME"; }
step_done() {
	[ -n "$STEP" ] || return 0
	STEPS+=("$STEP")
	SECS+=("$(awk -v a="$STEP_T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')")
	STEP=
}
step() { step_done; STEP=$1; STEP_T0=$(now); printf '\n== %s\n' "$1"; }
say() { printf '   %s\n' "$*"; }
note() { NOTES+=("$*"); say "$*"; }
fail() {
	FAILED=${STEP:-setup}
	printf '\ncheck-packages: FAIL (%s): %s\n' "$FAILED" "$1" >&2
	shift
	for f in "$@"; do
		[ -s "$f" ] || continue
		printf -- '--- last lines of %s\n' "$f" >&2
		tail -n 40 "$f" >&2
	done
	exit 1
}
# run LOG CMD...: CMD's output to LOGS/LOG; its tail shown when it fails.
run() {
	local log=$LOGS/$1 rc=0
	shift
	"$@" >>"$log" 2>&1 || rc=$?
	[ $rc -eq 0 ] || fail "$* exited with status $rc (log: $log)" "$log"
}

summary() {
	local i total=0
	printf '\n%-66s %8s\n' "step" "seconds"
	for i in "${!STEPS[@]}"; do
		printf '%-66s %8s\n' "${STEPS[$i]}" "${SECS[$i]}"
		total=$(awk -v a="$total" -v b="${SECS[$i]}" 'BEGIN { printf "%.1f", a + b }')
	done
	printf '%-66s %8s\n' "total" "$total"
	if [ ${#NOTES[@]} -gt 0 ]; then
		printf '\n'
		printf '%s\n' "${NOTES[@]}"
	fi
}

# ---------------------------------------------------------------- cleaning up
# Every process whose root is the chroot (loomd, its workers, anything
# apt left behind): TERM, then KILL.
root_pids() {
	local p r
	[ -n "$ROOT" ] || return 0
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		[ "$r" = "$ROOT" ] && printf '%s\n' "${p#/proc/}"
	done
	return 0
}
kill_root_processes() {
	local pids i
	pids=$(root_pids)
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	for i in $(seq 50); do
		[ -n "$(root_pids)" ] || return 0
		sleep 0.1
	done
	pids=$(root_pids)
	# shellcheck disable=SC2086
	[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}
unmount_root() {
	local m
	[ -n "$ROOT" ] || return 0
	# Deepest first.
	for m in $(awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
}
close_root() {
	[ -n "$ROOT" ] || return 0
	kill_root_processes
	[ -z "$NOTIFY_PID" ] || { kill "$NOTIFY_PID" 2>/dev/null || true; NOTIFY_PID=; }
	unmount_root
	if [ -n "$NS_PID" ]; then kill "$NS_PID" 2>/dev/null || true; NS_PID=; fi
	LOOMD_PID=
	ROOT=
}
# rm -rf that never crosses into a mount (a root's /proc, /dev ...).
remove_tree() {
	[ -e "$1" ] || return 0
	if awk -v r="$1" 'index($5, r "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		printf 'check-packages: %s still has mounts; not removing it\n' "$1" >&2
		return 1
	fi
	rm -rf --one-file-system "$1"
}
on_exit() {
	local rc=$?
	trap - EXIT ERR INT TERM
	set +e
	[ $rc -eq 0 ] || [ -n "$FAILED" ] || FAILED=${STEP:-setup}
	close_root
	step_done
	local kept=
	if [ "$KEEP" = 1 ]; then
		kept="kept $W (KEEP=1)"
	else
		STEP="clean up (remove the roots)"; STEP_T0=$(now)
		if [ $rc -ne 0 ]; then
			for d in "$W"/*; do [ "$d" = "$LOGS" ] || remove_tree "$d"; done
			kept="the logs are in $LOGS (KEEP=1 keeps the roots too)"
		else
			remove_tree "$W"
		fi
		step_done
	fi
	summary
	[ -z "$kept" ] || printf '\n%s\n' "$kept"
	if [ $rc -eq 0 ]; then
		printf '\ncheck-packages: PASS\n'
	else
		printf '\ncheck-packages: FAILED in "%s"\n' "$FAILED" >&2
	fi
	exit $rc
}
on_err() {
	[ -n "$FAILED" ] && return
	FAILED=${STEP:-setup}
	printf '\ncheck-packages: FAIL (%s): line %s: `%s` failed\n' "$FAILED" "$1" "$2" >&2
}
trap on_exit EXIT
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR
interrupted() {
	FAILED=${STEP:-setup}
	printf '\ncheck-packages: interrupted by %s in "%s"\n' "$1" "$FAILED" >&2
	exit "$2"
}
trap 'interrupted SIGINT 130' INT
trap 'interrupted SIGTERM 143' TERM

remove_tree "$W" || die "$W: a mount from an earlier run is still there; unmount it"
mkdir -p "$LOGS"

# ---------------------------------------------------------------- a root to work in
# in_root CMD...: CMD in the chroot as root, with a clean environment.
in_root() {
	chroot "$ROOT" /usr/bin/env -i PATH=$ROOTS_PATH HOME=/root LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}
# in_ns CMD...: CMD on the host side but in loomd's network namespace.
in_ns() { nsenter --net="/proc/$NS_PID/ns/net" -- "$@"; }
# as_user USER CMD...: CMD in the chroot as USER, in loomd's network
# namespace, with the environment a login would give it.
as_user() {
	local user=$1 home
	shift
	home=$(in_root getent passwd "$user" | cut -d: -f6)
	nsenter --net="/proc/$NS_PID/ns/net" -- chroot "$ROOT" /usr/bin/setpriv \
		--reuid="$user" --regid="$(in_root id -gn "$user")" --init-groups -- \
		/usr/bin/env -i PATH=$ROOTS_PATH HOME="$home" USER="$user" LOGNAME="$user" \
		LC_ALL=C.UTF-8 "$@"
}
loomctl() { as_user loom loomctl "$@"; }

# open_root NAME: unpack the base tarball as W/NAME, mount what programs in
# it need, and make loomd's network namespace (only a loopback, up).
open_root() {
	ROOT=$W/$1
	mkdir "$ROOT"
	tar -xf "$W/base.tar" -C "$ROOT" --numeric-owner
	mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
	mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ROOT/sys"
	# A /dev of its own: the usual nodes, its own pty instance.
	mount -t tmpfs -o nosuid,mode=0755,size=1m dev "$ROOT/dev"
	local n
	for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
		IFS=: read -r name maj min <<<"$n"
		mknod -m 0666 "$ROOT/dev/$name" c "$maj" "$min"
	done
	mkdir "$ROOT/dev/pts" "$ROOT/dev/shm"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$ROOT/dev/pts"
	ln -s pts/ptmx "$ROOT/dev/ptmx"
	ln -s /proc/self/fd "$ROOT/dev/fd"
	ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
	ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
	ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
	mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$ROOT/dev/shm"
	mount -t tmpfs -o nosuid,nodev,mode=0755 run "$ROOT/run"
	mkdir -m 1777 "$ROOT/run/lock"
	# The downloaded packages, shared by the roots and kept between runs:
	# apt takes a file from there only when its size and hash are those
	# of the package the root's index names, so it is never stale.
	mkdir -p "$CACHE/apt-archives/partial"
	mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
	unshare --net -- sleep infinity &
	NS_PID=$!
	local i
	for i in $(seq 50); do
		[ "$(readlink "/proc/$NS_PID/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
		sleep 0.1
	done
	in_ns ip link set lo up || fail "cannot bring up the loopback in loomd's network namespace"
}

# listing: the root's paths, without what the kernel, apt and dpkg keep
# for themselves or what is temporary.
listing() {
	(cd "$ROOT" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run \
		-o -path ./tmp -o -path ./var/tmp -o -path ./var/cache/apt -o -path ./var/cache/debconf \
		-o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/log \) -prune \
		-o -print | sed 's|^\.||; /^$/d' | LC_ALL=C sort)
}

# ---------------------------------------------------------------- the packages
# debs_in DIR: the three packages in DIR, one each of one version; sets
# DEB_LOOM, DEB_LIB, DEB_DEV, DEB_VERSION.
debs_in() {
	local dir=$1 p f files v
	DEB_VERSION=
	for p in loom libloom1 libloom-dev; do
		files=$(find "$dir" -maxdepth 1 -name "${p}_*_amd64.deb" | sort)
		[ -n "$files" ] || fail "$dir has no ${p}_*_amd64.deb"
		[ "$(printf '%s\n' "$files" | wc -l)" -eq 1 ] ||
			fail "$dir has more than one ${p}_*.deb (which to test?): $(printf '%s ' $files)"
		f=$files
		v=$(dpkg-deb -f "$f" Version)
		[ -z "$DEB_VERSION" ] || [ "$v" = "$DEB_VERSION" ] ||
			fail "$dir: $f is version $v, the others $DEB_VERSION"
		DEB_VERSION=$v
		case $p in
		loom) DEB_LOOM=$f ;; libloom1) DEB_LIB=$f ;; libloom-dev) DEB_DEV=$f ;;
		esac
	done
}
# copy_debs SET FILE...: the packages into ROOT/tmp/SET/.
copy_debs() {
	mkdir -p "$ROOT/tmp/$1"
	cp "${@:2}" "$ROOT/tmp/$1/"
}

# ---------------------------------------------------------------- the unit, as systemd would run it
UNIT=/lib/systemd/system/loomd.service
# unit_values KEY: the values of KEY= in the unit's [Service] section, one a
# line, in order (an empty assignment resets the list, as systemd does).
unit_values() {
	awk -v key="$1" '
		/^[ \t]*\[/ { section = $0; gsub(/[ \t]/, "", section); next }
		section != "[Service]" { next }
		/^[ \t]*[#;]/ { next }
		{
			line = $0
			while (line ~ /\\$/ && (getline next_line) > 0)
				line = substr(line, 1, length(line) - 1) " " next_line
			eq = index(line, "=")
			if (!eq) next
			k = substr(line, 1, eq - 1); gsub(/[ \t]/, "", k)
			if (k != key) next
			v = substr(line, eq + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
			if (v == "") { n = 0; next }
			vals[++n] = v
		}
		END { for (i = 1; i <= n; i++) print vals[i] }' "$ROOT$UNIT"
}
unit_value() { unit_values "$1" | tail -n 1; }

# unit_words TEXT: TEXT split as systemd splits a command line, with the
# specifiers it expands for a system service; what this does not handle
# fails rather than being guessed.
unit_words() {
	local text=$1 w out=()
	case $text in *[\"\'\\]*) fail "$UNIT: quoting or escapes in \"$text\" are not handled by this test" ;; esac
	case $text in *'$'*) fail "$UNIT: environment variables in \"$text\" are not handled by this test" ;; esac
	for w in $text; do
		w=${w//%%/$'\001'}
		w=${w//%S//var/lib}; w=${w//%t//run}; w=${w//%C//var/cache}
		w=${w//%L//var/log}; w=${w//%E//etc}; w=${w//%n/loomd.service}; w=${w//%N/loomd}
		case $w in *%*) fail "$UNIT: the specifier in \"$w\" is not handled by this test" ;; esac
		out+=("${w//$'\001'/%}")
	done
	printf '%s\n' "${out[@]}"
}

# read_unit: what starting the service needs, from the installed unit.
read_unit() {
	[ -f "$ROOT$UNIT" ] || fail "the packages installed no $UNIT"
	local k
	for k in ExecStartPre ExecStartPost ExecCondition EnvironmentFile RootDirectory RootImage; do
		[ -z "$(unit_values "$k")" ] ||
			fail "$UNIT has $k=, which this test does not emulate: teach packaging/check-packages.sh"
	done
	local starts
	starts=$(unit_values ExecStart)
	[ -n "$starts" ] || fail "$UNIT has no ExecStart="
	[ "$(printf '%s\n' "$starts" | wc -l)" -eq 1 ] || fail "$UNIT has several ExecStart= lines"
	local cmd=$starts
	while :; do
		case $cmd in
		-*) cmd=${cmd#-} ;;
		:*) cmd=${cmd#:} ;;
		[@+!]*) fail "$UNIT: ExecStart prefix ${cmd%%[!@+!]*} is not handled by this test" ;;
		*) break ;;
		esac
	done
	mapfile -t U_ARGV < <(unit_words "$cmd")
	U_TYPE=$(unit_value Type); U_TYPE=${U_TYPE:-simple}
	U_USER=$(unit_value User)
	[ -n "$U_USER" ] || fail "$UNIT has no User=: loomd would run as root"
	in_root getent passwd "$U_USER" >/dev/null ||
		fail "$UNIT runs as $U_USER, but the packages did not create that user"
	U_GROUP=$(unit_value Group)
	[ -n "$U_GROUP" ] || U_GROUP=$(in_root id -gn "$U_USER")
	U_SUPP=$(unit_values SupplementaryGroups | tr '\n' ' ')
	U_UMASK=$(unit_value UMask); U_UMASK=${U_UMASK:-0022}
	U_WD=$(unit_value WorkingDirectory); U_WD=${U_WD:-/}
	U_WD=${U_WD#-}
	[ "$U_WD" != "~" ] || U_WD=$(in_root getent passwd "$U_USER" | cut -d: -f6)
	U_ENV=()
	local e
	while IFS= read -r e; do
		[ -n "$e" ] || continue
		case $e in *[\"\'\\%\$]*) fail "$UNIT: Environment=$e: quoting, specifiers and variables are not handled by this test" ;; esac
		# shellcheck disable=SC2206
		U_ENV+=($e)
	done < <(unit_values Environment)
	U_KILL=$(unit_value KillSignal); U_KILL=${U_KILL:-SIGTERM}
	U_STOP_TIMEOUT=$(unit_value TimeoutStopSec); U_STOP_TIMEOUT=${U_STOP_TIMEOUT:-90s}
	case $U_STOP_TIMEOUT in
	*[0-9]min) U_STOP_S=$((${U_STOP_TIMEOUT%min} * 60)) ;;
	*[0-9]s) U_STOP_S=${U_STOP_TIMEOUT%s} ;;
	*[0-9]) U_STOP_S=$U_STOP_TIMEOUT ;;
	*) fail "$UNIT: TimeoutStopSec=$U_STOP_TIMEOUT is not handled by this test" ;;
	esac
	[ -z "$(unit_values ExecStop)" ] ||
		fail "$UNIT has ExecStop=, which this test does not emulate: teach packaging/check-packages.sh"
}

# make_unit_dirs: StateDirectory= and friends, made and owned as systemd
# makes them before ExecStart (exec-directories in systemd.exec(5)).
make_unit_dirs() {
	local kind base owner key mode d
	U_DIRS_ENV=()
	for kind in State:/var/lib:user Runtime:/run:user Cache:/var/cache:user Logs:/var/log:user \
		Configuration:/etc:root; do
		IFS=: read -r key base owner <<<"$kind"
		mode=$(unit_value "${key}DirectoryMode"); mode=${mode:-0755}
		local names=() paths=()
		# shellcheck disable=SC2207
		names=($(unit_values "${key}Directory" | tr '\n' ' '))
		[ ${#names[@]} -gt 0 ] || continue
		for d in "${names[@]}"; do
			case $d in /* | *..*) fail "$UNIT: ${key}Directory=$d is not a relative name" ;; esac
			in_root mkdir -p "$base/$d"
			if [ "$owner" = user ]; then
				in_root chown -R "$U_USER:$U_GROUP" "$base/$d"
			fi
			in_root chmod "$mode" "$base/$d"
			paths+=("$base/$d")
			say "${key}Directory=$d: $base/$d, $(in_root stat -c '%U:%G %a' "$base/$d")"
		done
		U_DIRS_ENV+=("${key^^}_DIRECTORY=$(IFS=:; echo "${paths[*]}")")
	done
}

# start_loomd LOG [notify|no-notify] [EXTRA_ARGS...]: run the unit's
# ExecStart in the root as the unit's user, in the background, the way
# systemd would (the environment, umask, working directory and
# exec-directories of systemd.exec(5); not its sandboxing, which
# systemd-analyze checks).  With notify and Type=notify, a listener on
# NOTIFY_SOCKET must receive READY=1.  Then wait for the API's health.
start_loomd() {
	local label=$1 log=$LOGS/$1 notify=$2
	shift 2
	read_unit
	make_unit_dirs
	local home shell
	home=$(in_root getent passwd "$U_USER" | cut -d: -f6)
	shell=$(in_root getent passwd "$U_USER" | cut -d: -f7)
	local env=("PATH=$ROOTS_PATH" HOME="$home" USER="$U_USER" LOGNAME="$U_USER" SHELL="$shell"
		"${U_DIRS_ENV[@]}" "${U_ENV[@]}")
	local notes=
	if [ "$U_TYPE" = notify ] && [ "$notify" = notify ]; then
		mkdir -p "$ROOT/run/loom-check"
		NOTIFY_LOG=$W/notify.$label
		rm -f "$ROOT/run/loom-check/notify" "$NOTIFY_LOG"
		/usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(4096).replace(b"\n", b" ") + b"\n")
' "$ROOT/run/loom-check/notify" "$NOTIFY_LOG" &
		NOTIFY_PID=$!
		local i
		for i in $(seq 100); do [ -S "$ROOT/run/loom-check/notify" ] && break; sleep 0.05; done
		[ -S "$ROOT/run/loom-check/notify" ] || fail "the NOTIFY_SOCKET listener did not start"
		env+=(NOTIFY_SOCKET=/run/loom-check/notify)
		notes=", NOTIFY_SOCKET listened to"
	fi
	local setpriv=(/usr/bin/setpriv --reuid="$U_USER" --regid="$U_GROUP")
	if [ -n "${U_SUPP// /}" ]; then
		setpriv+=(--groups="$(echo "$U_SUPP" | xargs | tr ' ' ',')")
	else
		setpriv+=(--clear-groups)
	fi
	say "ExecStart as $U_USER:$U_GROUP (Type=$U_TYPE, UMask=$U_UMASK$notes): ${U_ARGV[*]} $*"
	: >>"$log"
	nsenter --net="/proc/$NS_PID/ns/net" -- chroot "$ROOT" "${setpriv[@]}" -- \
		/bin/sh -c 'umask "$1" && cd "$2" && shift 2 && exec /usr/bin/env -i "$@"' sh \
		"$U_UMASK" "$U_WD" "${env[@]}" "${U_ARGV[@]}" "$@" </dev/null >>"$log" 2>&1 &
	LOOMD_PID=$!
	LOOMD_LOG=$log
	wait_ready "$notify"
}

wait_ready() {
	local deadline=$((SECONDS + 180)) ready=
	while :; do
		if ! kill -0 "$LOOMD_PID" 2>/dev/null; then
			local rc=0
			wait "$LOOMD_PID" || rc=$?
			LOOMD_PID=
			fail "loomd exited with status $rc before it was ready" "$LOOMD_LOG"
		fi
		if [ -n "$NOTIFY_PID" ] && [ -z "$ready" ] && grep -q '\(^\| \)READY=1' "$NOTIFY_LOG" 2>/dev/null; then
			ready=1
		fi
		if { [ -z "$NOTIFY_PID" ] || [ -n "$ready" ]; } && loomctl --json health >"$W/health.json" 2>/dev/null; then
			break
		fi
		[ $SECONDS -lt $deadline ] ||
			fail "loomd did not become ready in 180 s (READY=1 ${ready:+received}${ready:-not received}; loomctl health failed)" "$LOOMD_LOG"
		sleep 0.2
	done
	[ "$(jq -r .status "$W/health.json")" = ok ] || fail "loomd's health is not ok: $(jq -c . "$W/health.json")"
	SCHEMA=$(jq -r .database.schema_version "$W/health.json")
	say "ready: $(jq -r '"loomd \(.version), ABI \(.abi), \(.plugins) plugins, schema \(.database.schema_version), state \(.state_dir)"' "$W/health.json")${ready:+, READY=1 received}"
}

stop_loomd() {
	[ -n "$LOOMD_PID" ] || return 0
	local rc=0 deadline=$((SECONDS + U_STOP_S)) stopping=
	kill -"${U_KILL#SIG}" "$LOOMD_PID"
	while kill -0 "$LOOMD_PID" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] ||
			fail "loomd did not stop within $U_STOP_TIMEOUT of $U_KILL (the unit's TimeoutStopSec)" "$LOOMD_LOG"
		sleep 0.1
	done
	wait "$LOOMD_PID" || rc=$?
	LOOMD_PID=
	[ $rc -eq 0 ] || fail "loomd exited with status $rc on $U_KILL (expected 0)" "$LOOMD_LOG"
	if [ -n "$NOTIFY_PID" ]; then
		# The datagram was queued before loomd exited; the listener may not
		# have written it yet.
		local i
		for i in $(seq 100); do
			grep -q '\(^\| \)STOPPING=1' "$NOTIFY_LOG" && break
			sleep 0.05
		done
		grep -q '\(^\| \)STOPPING=1' "$NOTIFY_LOG" ||
			fail "loomd sent no STOPPING=1 to NOTIFY_SOCKET when it stopped (it sent: $(tr '\n' '|' <"$NOTIFY_LOG"))"
		kill "$NOTIFY_PID" 2>/dev/null || true
		wait "$NOTIFY_PID" 2>/dev/null || true
		NOTIFY_PID=
		stopping=", STOPPING=1 sent"
	fi
	say "stopped ($U_KILL, exit status 0$stopping)"
}

# ---------------------------------------------------------------- training through loomd
# submit [ARGS]: submit the example job; prints the task id.
submit() {
	loomctl --json submit "$JOB" "$@" >"$W/submit.json" 2>"$W/submit.err" ||
		fail "loomctl submit $JOB $* failed: $(cat "$W/submit.err")"
	jq -r .task_id "$W/submit.json"
}
# wait_task ID: poll its state until it ends (JOB_TIMEOUT); it must complete.
wait_task() {
	local id=$1 deadline=$((SECONDS + JOB_TIMEOUT)) st last=-1 pct
	while :; do
		loomctl --json status "$id" >"$W/status.json" 2>"$W/status.err" ||
			fail "loomctl status $id failed: $(cat "$W/status.err")" "$LOOMD_LOG"
		st=$(jq -r .status "$W/status.json")
		pct=$(jq -r '.progress.percentage | floor' "$W/status.json")
		if [ $((pct / 25)) -ne $((last / 25)) ]; then
			say "$id: $st, $pct % ($(jq -r '"step \(.progress.current_step)/\(.progress.total_steps), epoch \(.progress.epoch)/\(.progress.epochs)"' "$W/status.json"))"
			last=$pct
		fi
		case $st in
		completed) break ;;
		failed | cancelled)
			loomctl logs "$id" --limit 40 >"$W/task.log" 2>&1 || true
			fail "$id ended $st (expected completed): $(jq -r .reason "$W/status.json" 2>/dev/null)" \
				"$W/task.log" "$ROOT/var/lib/loom/jobs/$id/worker.log" "$LOOMD_LOG"
			;;
		esac
		if [ $SECONDS -ge $deadline ]; then
			fail "$id is still $st after $JOB_TIMEOUT s (JOB_TIMEOUT)" "$LOOMD_LOG"
		fi
		sleep 1
	done
	say "$id completed: test_mae $(jq -r .metrics.test_mae "$W/status.json")"
}
# predict VERSION OUT: the model's 24-hour forecast of the series' last week.
predict() {
	tail -n 168 "$ROOT$TEMPS" | cut -d, -f2 | jq -s -c '{inputs: [map([.])]}' >"$ROOT/tmp/window.json"
	loomctl --json predict "$MODEL" /tmp/window.json --version "$1" >"$2" 2>"$W/predict.err" ||
		fail "loomctl predict $MODEL --version $1 failed: $(cat "$W/predict.err")" "$LOOMD_LOG"
	[ "$(jq -c .shape "$2")" = "[1,24,1]" ] || fail "the forecast's shape is $(jq -c .shape "$2"), expected [1,24,1]"
	jq -e '[.outputs[][][]] | all(. > -40 and . < 130)' "$2" >/dev/null ||
		fail "the forecast has values no Seattle temperature takes: $(jq -c '.outputs' "$2")"
}

# ================================================================= 1. the root
step "root: mmdebstrap bookworm (apt, build-essential, pkg-config)"
mkdir -p "$CACHE/apt-archives"
# shellcheck disable=SC2016,SC2054
mm=(mmdebstrap --variant=apt --include=build-essential,pkg-config --skip=cleanup/apt/lists
	--skip=essential/unlink --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
	--setup-hook="sync-in $CACHE/apt-archives /var/cache/apt/archives/"
	--customize-hook="sync-out /var/cache/apt/archives $CACHE/apt-archives"
	bookworm "$W/base.tar")
[ -z "${MIRROR:-}" ] || mm+=("$MIRROR")
run mmdebstrap.log "${mm[@]}"
say "$(du -m "$W/base.tar" | cut -f1) MB tarball; $(tar -xOf "$W/base.tar" ./etc/debian_version) from $(tar -xOf "$W/base.tar" ./etc/apt/sources.list | awk '{ print $2 }' | sort -u | xargs)"

# ================================================================= 2. the packages
step "packages: make deb"
if [ -n "${DEBS:-}" ]; then
	debs_in "$DEBS"
	note "tested the packages in DEBS=$DEBS ($DEB_VERSION), not a fresh make deb"
else
	t0=$(date +%s)
	run make-deb.log make -C "$B" deb
	debs_in "$B/packages"
	for f in "$DEB_LOOM" "$DEB_LIB" "$DEB_DEV"; do
		[ "$(stat -c %Y "$f")" -ge "$t0" ] || fail "$f is older than this make deb: a stale package"
	done
fi
NEW_LOOM=$DEB_LOOM NEW_LIB=$DEB_LIB NEW_DEV=$DEB_DEV NEW_VERSION=$DEB_VERSION
say "$(basename "$NEW_LOOM") $(basename "$NEW_LIB") $(basename "$NEW_DEV")"

# ================================================================= 3. install
# installed PKG: whether PKG is installed in the root.
installed() { in_root dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
if [ "$INSTALL_TEST" = 0 ]; then
	note "INSTALL_TEST=0: the install, plugin and purge tests were skipped"
else
	# The root's listing is taken with Loom's dependencies (Depends and
	# Recommends, through apt-get satisfy) already installed, so that what the
	# purge leaves is Loom's own; the upgrade test's root shows that
	# apt-get install ./loom_*.deb alone brings them.
	step "install: Loom's dependencies (apt-get satisfy), the listing"
	open_root install
	deps=$(for f in "$NEW_LOOM" "$NEW_LIB" "$NEW_DEV"; do dpkg-deb -f "$f" Depends Recommends | sed 's/^[A-Za-z]*: //'; done |
		tr ',' '\n' | sed 's/^ *//; s/ *$//; /^$/d' | grep -Ev '^(loom|libloom1|libloom-dev)([ :(]|$)' | LC_ALL=C sort -u | paste -sd, -)
	say "apt-get satisfy $deps"
	run install-deps.log in_root apt-get satisfy -y "$deps"
	say "$(grep -c '^Setting up' "$LOGS/install-deps.log") packages set up"
	listing >"$W/before.list"

	step "install: apt-get install ./loom ./libloom1 ./libloom-dev"
	copy_debs new "$NEW_LOOM" "$NEW_LIB" "$NEW_DEV"
	run install-apt.log in_root sh -c 'cd /tmp/new && apt-get install -y ./loom_*.deb ./libloom1_*.deb ./libloom-dev_*.deb'
	for p in loom libloom1 libloom-dev; do
		[ "$(in_root dpkg-query -W -f '${Version}' "$p")" = "$NEW_VERSION" ] || fail "$p is not installed at $NEW_VERSION" "$LOGS/install-apt.log"
	done
	dpkg-deb -f "$NEW_LOOM" Recommends | grep -q python3-vega-datasets ||
		fail "loom does not recommend python3-vega-datasets, the example jobs' data"
	say "installed $NEW_VERSION ($(grep '^Setting up' "$LOGS/install-apt.log" | awk '{ print $3 }' | xargs))"
	in_root getent passwd loom >/dev/null || fail "the packages did not create the user loom" "$LOGS/install-apt.log"
	say "user: $(in_root getent passwd loom)"
	say "/var/lib/loom: $(in_root stat -c '%U:%G %a' /var/lib/loom 2>/dev/null || echo missing)"
	[ -z "$(root_pids)" ] || fail "the install left processes running in the root: $(root_pids | xargs)"
	say "no process left running by the install (no systemd as PID 1: the unit is enabled, not started)"
	[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/loomd.service" ] &&
		say "loomd.service enabled (multi-user.target.wants)" || note "note: loomd.service is not enabled after the install"

	step "install: start loomd as the unit does, health"
	start_loomd loomd-1.log notify
	url=$(cat "$ROOT/var/lib/loom/loomd.url" 2>/dev/null) || fail "loomd wrote no STATE_DIR/loomd.url"
	listen=$(sed -n 's/^listen *= *"\(.*\)";.*/\1/p' "$ROOT/etc/loom/loomd.conf")
	[ "$url" = "http://$listen" ] || fail "loomd serves $url, the packaged loomd.conf says listen = \"$listen\""
	code=$(in_ns curl -s -o "$W/health-tcp.json" -w '%{http_code}' "$url/api/v1/health") ||
		fail "curl $url/api/v1/health failed"
	[ "$code" = 200 ] && [ "$(jq -r .status "$W/health-tcp.json")" = ok ] ||
		fail "GET $url/api/v1/health: $code $(cat "$W/health-tcp.json")"
	say "GET $url/api/v1/health: 200 (in loomd's own network namespace)"
	loomctl whoami >"$W/whoami" 2>&1 || fail "loomctl whoami failed: $(cat "$W/whoami")"
	say "over the socket, loom is: $(head -n 1 "$W/whoami")"

	step "install: train the example forecast job"
	[ -f "$ROOT$JOB" ] || fail "the packages have no $JOB"
	task=$(submit --start)
	say "submitted $JOB: $task"
	wait_task "$task"
	loomctl --json models show "$MODEL" 1 >"$W/model.json" 2>"$W/model.err" ||
		fail "the model $MODEL has no version 1 after $task: $(cat "$W/model.err")"
	[ "$(jq -r .task_id "$W/model.json")" = "$task" ] || fail "$MODEL v1 is from $(jq -r .task_id "$W/model.json"), expected $task"
	jq -e '.files | map(.name) | index("best.safetensors")' "$W/model.json" >/dev/null ||
		fail "$MODEL v1 has no best.safetensors: $(jq -c .files "$W/model.json")"
	predict 1 "$W/predict-1.json"
	say "registered $MODEL v1 ($(jq -r '.files | map(.name) | join(", ")' "$W/model.json")); it forecasts $(jq -r '[.outputs[0][][0]] | "\(.[0] | . * 10 | round / 10) … \(.[-1] | . * 10 | round / 10)"' "$W/predict-1.json") °F"

	# ================================================================= 4. a third-party plugin
	step "plugin: build hello-exporter with pkg-config, load it"
	ex=/usr/share/doc/libloom-dev/examples/hello-exporter
	[ -d "$ROOT$ex" ] || fail "libloom-dev has no $ex"
	in_root sh -c "rm -rf /tmp/hello && cp -r $ex /tmp/hello && cd /tmp/hello && for f in *.gz; do [ ! -e \"\$f\" ] || gunzip \"\$f\"; done"
	flags=$(in_root pkg-config --cflags --libs loom) || fail "pkg-config --cflags --libs loom failed in the root"
	say "pkg-config --cflags --libs loom: $flags"
	run plugin-build.log in_root sh -c 'cd /tmp/hello && cc -shared -fPIC -Wall -Werror -o hello-exporter.so hello-exporter.c $(pkg-config --cflags --libs loom)'
	# Installed the way docs/plugin-guide.md says: a directory of the
	# administrator's on plugin_path, an instance in plugins (the conffile).
	in_root install -D -m 0644 /tmp/hello/hello-exporter.so /usr/local/lib/loom/plugins/hello-exporter.so
	conf=$ROOT/etc/loom/loomd.conf
	[ "$(grep -c '^plugins = ($' "$conf")" = 1 ] || fail "/etc/loom/loomd.conf has no single \"plugins = (\" line to add the instance to"
	sed -i -e 's|^#\?plugin_path = .*|plugin_path = [ "/usr/local/lib/loom/plugins" ];|' \
		-e 's|^plugins = ($|plugins = (\n  { instance = "hello"; module = "hello-exporter"; config = { title = "Clean room"; }; },|' "$conf"
	grep -q '^plugin_path = \[ "/usr/local/lib/loom/plugins" \];' "$conf" || fail "could not set plugin_path in /etc/loom/loomd.conf"
	as_user loom loomd -c /etc/loom/loomd.conf --check-config >"$W/check-config" 2>&1 ||
		fail "loomd --check-config refuses the edited /etc/loom/loomd.conf" "$W/check-config"
	say "loomd -c /etc/loom/loomd.conf --check-config: $(tail -n 1 "$W/check-config")"
	stop_loomd
	start_loomd loomd-2.log notify
	loomctl --json plugins show hello >"$W/plugin.json" 2>"$W/plugin.err" ||
		fail "loomd has no plugin instance hello after the restart: $(cat "$W/plugin.err")" "$LOOMD_LOG"
	[ "$(jq -r '.module' "$W/plugin.json")" = hello-exporter ] &&
		[ "$(jq -r '.path' "$W/plugin.json")" = /usr/local/lib/loom/plugins/hello-exporter.so ] ||
		fail "the instance hello is not hello-exporter from /usr/local/lib/loom/plugins: $(jq -c . "$W/plugin.json")"
	grep -q '\[exporter:hello\] hello from hello' "$LOOMD_LOG" || fail "loomd's log does not show hello-exporter's init" "$LOOMD_LOG"
	loomctl --json plugins >"$W/plugins.json"
	jq -e '[.. | objects | select(.instance? == "hello" and .module? == "hello-exporter")] | length == 1' "$W/plugins.json" >/dev/null ||
		fail "GET /api/v1/plugins does not list the instance hello of hello-exporter: $(jq -c . "$W/plugins.json" | cut -c1-400)"
	say "loaded: hello = hello-exporter $(jq -r .version "$W/plugin.json") from $(jq -r .path "$W/plugin.json"), listed by GET /api/v1/plugins"

	# ================================================================= 5. purge
	step "purge: apt-get purge, what is left"
	stop_loomd
	[ -z "$(root_pids)" ] || fail "processes still run in the root after loomd stopped: $(root_pids | xargs)"
	run purge.log in_root apt-get purge -y loom libloom1 libloom-dev
	for p in loom libloom1 libloom-dev; do
		! in_root dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q . ||
			fail "dpkg still knows $p after the purge: $(in_root dpkg-query -W -f '${Status}' "$p")"
	done
	listing >"$W/after.list"
	LC_ALL=C comm -13 "$W/before.list" "$W/after.list" >"$W/new.list"
	if grep -qi loom "$W/new.list"; then
		say "what is left of Loom (new paths naming loom):"
		grep -i loom "$W/new.list" | sed 's/^/     /'
	else
		say "what is left of Loom (new paths naming loom): nothing"
	fi
	# Outside the listing (it leaves out /var/log), so named here.
	for d in /var/lib/loom /var/log/loom /etc/loom; do
		[ ! -e "$ROOT$d" ] || fail "$d is still there after the purge: $(cd "$ROOT" && find ".$d" | head -n 5 | xargs)"
	done
	if in_root getent passwd loom >/dev/null; then
		note "purge kept the system user loom ($(in_root getent passwd loom)), as Debian keeps system users"
	fi
	unexplained=()
	while IFS= read -r path; do
		why=
		while IFS=$'\t' read -r pat reason; do
			case $pat in '' | '#'*) continue ;; esac
			# shellcheck disable=SC2053
			if [[ $path == $pat ]]; then why=$reason; break; fi
		done <"$HERE/tests/purge-keeps"
		if [ -n "$why" ]; then
			say "kept: $path — $why"
		else
			unexplained+=("$path")
		fi
	done <"$W/new.list"
	if [ ${#unexplained[@]} -gt 0 ]; then
		printf '   NOT EXPLAINED: %s\n' "${unexplained[@]}" >&2
		fail "the purge left ${#unexplained[@]} path(s) that packaging/tests/purge-keeps does not explain (listed above)"
	fi
	say "$(wc -l <"$W/new.list") new path(s) after the purge, each one policy keeps"
	close_root

fi

# ================================================================= 6. upgrade
if [ "$UPGRADE" = 0 ]; then
	note "UPGRADE=0: the upgrade test was skipped"
	exit 0
fi

step "upgrade: the older packages"
if [ -n "${OLD_DEBS:-}" ]; then
	debs_in "$OLD_DEBS"
	note "upgrade from the packages in OLD_DEBS=$OLD_DEBS ($DEB_VERSION)"
else
	git -C "$S" rev-parse -q --verify "$OLD_COMMIT^{commit}" >/dev/null 2>&1 ||
		fail "$S is not a git clone with $OLD_COMMIT (a dist tarball?): give OLD_DEBS=DIR, or UPGRADE=0"
	old_sha=$(git -C "$S" rev-parse "$OLD_COMMIT^{commit}")
	hook_sha=$(git -C "$S" rev-parse "$HOOK_COMMIT^{commit}")
	pkg_sum=$(cd "$S" && git ls-files -co --exclude-standard -- packaging | LC_ALL=C sort |
		while IFS= read -r f; do [ ! -f "$f" ] || { printf '%s\n' "$f"; sha256sum <"$f"; }; done | sha256sum | cut -c1-16)
	key=${old_sha:0:12}-${hook_sha:0:12}-$pkg_sum-${OLD_VERSION//[^A-Za-z0-9.+-]/_}
	cached=$CACHE/old-$key
	if [ -f "$cached/done" ]; then
		say "cached: $cached (the key covers $OLD_COMMIT, $HOOK_COMMIT's hooks, packaging/'s files, $OLD_VERSION)"
	else
		old=$W/old-tree
		mkdir -p "$old"
		git -C "$S" archive "$old_sha" | tar -x -C "$old"
		[ ! -e "$old/packaging" ] || fail "$OLD_COMMIT already has packaging/: use it as it is (set HOOK_COMMIT to a no-op)"
		(cd "$S" && git ls-files -co --exclude-standard -z -- packaging | tar --null -T - -cf -) | tar -x -C "$old"
		# The hooks the packaging needs (the configure options, the includes).
		git -C "$S" show --format= "$hook_sha" -- configure.ac Makefile.am >"$W/hooks.patch"
		run old-build.log patch -d "$old" -p1 -i "$W/hooks.patch"
		say "$OLD_COMMIT + packaging/ + $HOOK_COMMIT's configure.ac/Makefile.am hooks in $old"
		run old-build.log sh -c "cd '$old' && autoreconf -fi && ./configure -q"
		LOOM_DEB_VERSION=$OLD_VERSION DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
			run old-build.log make -C "$old" deb
		rm -rf "$cached"
		mkdir -p "$cached"
		cp "$old"/packages/loom_*.deb "$old"/packages/libloom1_*.deb "$old"/packages/libloom-dev_*.deb "$cached/"
		touch "$cached/done"
		remove_tree "$old"
		# Only the newest key is worth keeping.
		find "$CACHE" -mindepth 1 -maxdepth 1 -name 'old-*' ! -name "old-$key" -exec rm -rf {} +
	fi
	debs_in "$cached"
fi
OLD_LOOM=$DEB_LOOM OLD_LIB=$DEB_LIB OLD_DEV=$DEB_DEV OLD_DEB_VERSION=$DEB_VERSION
dpkg --compare-versions "$OLD_DEB_VERSION" lt "$NEW_VERSION" ||
	fail "the older packages ($OLD_DEB_VERSION) are not older than the new ones ($NEW_VERSION)"
say "$(basename "$OLD_LOOM") → $(basename "$NEW_LOOM")"

step "upgrade: install the older packages, train, leave a task pending"
open_root upgrade
copy_debs old "$OLD_LOOM" "$OLD_LIB" "$OLD_DEV"
run upgrade-apt-old.log in_root sh -c 'cd /tmp/old && apt-get install -y ./loom_*.deb ./libloom1_*.deb ./libloom-dev_*.deb'
for p in python3-vega-datasets libjs-dygraphs; do
	installed "$p" || fail "apt-get install ./loom_*.deb did not bring $p (a Depends or Recommends)" "$LOGS/upgrade-apt-old.log"
done
say "installed $OLD_DEB_VERSION with its dependencies ($(grep -c '^Setting up' "$LOGS/upgrade-apt-old.log") packages; python3-vega-datasets as a Recommends)"
start_loomd loomd-old.log no-notify
OLD_SCHEMA=$SCHEMA
done_task=$(submit --start)
wait_task "$done_task"
pending_task=$(submit --name left-pending)
say "$pending_task left pending"
loomctl --json list >"$W/tasks-old.json"
loomctl --json models show "$MODEL" 1 >"$W/model-old.json" ||
	fail "the older loomd registered no $MODEL v1"
loomctl --json runs list >"$W/runs-old.json"
model_dir=$(jq -r .dir "$W/model-old.json")
(cd "$ROOT$model_dir" && find . -type f | LC_ALL=C sort | xargs sha256sum) >"$W/model-files-old.sum"
# No predict here: 389a70c's serving worker resolved the store's relative
# root against its working directory, / under the unit (fixed in 15d6484).
say "$(jq -r '.total' "$W/tasks-old.json") tasks, $MODEL v1 from $(jq -r .task_id "$W/model-old.json"), $(jq -r '.runs | length' "$W/runs-old.json") run(s), schema $OLD_SCHEMA"

step "upgrade: apt-get install the new packages over them"
copy_debs new "$NEW_LOOM" "$NEW_LIB" "$NEW_DEV"
# As on a real upgrade, the old loomd runs while apt replaces its files;
# restarting it is what the unit's postinst (under systemd) does next.
run upgrade-apt-new.log in_root sh -c 'cd /tmp/new && apt-get install -y ./loom_*.deb ./libloom1_*.deb ./libloom-dev_*.deb'
grep -q "Unpacking loom ($NEW_VERSION) over ($OLD_DEB_VERSION)" "$LOGS/upgrade-apt-new.log" ||
	fail "apt did not upgrade loom from $OLD_DEB_VERSION to $NEW_VERSION" "$LOGS/upgrade-apt-new.log"
for p in loom libloom1 libloom-dev; do
	[ "$(in_root dpkg-query -W -f '${Version}' "$p")" = "$NEW_VERSION" ] || fail "$p is not at $NEW_VERSION after the upgrade"
done
say "loom, libloom1, libloom-dev: $OLD_DEB_VERSION → $NEW_VERSION"
stop_loomd

step "upgrade: loomd restarted, migrated, kept the state"
start_loomd loomd-new.log notify
[ "$SCHEMA" -gt "$OLD_SCHEMA" ] ||
	fail "the state database's schema is $SCHEMA after the upgrade, $OLD_SCHEMA before: no migration ran"
grep -q "migrated to schema version $SCHEMA" "$LOOMD_LOG" || fail "loomd's log does not say it migrated to schema $SCHEMA" "$LOOMD_LOG"
say "schema $OLD_SCHEMA → $SCHEMA ($(grep -c 'migrated to schema version' "$LOOMD_LOG") migration(s) in loomd's log)"
loomctl --json list >"$W/tasks-new.json"
tasks() { jq -c '[.tasks[] | {task_id, name, status, created_at}] | sort_by(.task_id)' "$1"; }
[ "$(tasks "$W/tasks-new.json")" = "$(tasks "$W/tasks-old.json")" ] ||
	fail "the tasks differ after the upgrade: before $(tasks "$W/tasks-old.json"), after $(tasks "$W/tasks-new.json")"
say "tasks kept: $(jq -r '[.tasks[] | "\(.task_id) \(.status)"] | join(", ")' "$W/tasks-new.json")"
loomctl --json models show "$MODEL" 1 >"$W/model-new.json" || fail "$MODEL v1 is gone after the upgrade"
model() { jq -c '{name, version, task_id, run_id, created_at, files}' "$1"; }
[ "$(model "$W/model-new.json")" = "$(model "$W/model-old.json")" ] ||
	fail "$MODEL v1 differs after the upgrade: before $(model "$W/model-old.json"), after $(model "$W/model-new.json")"
loomctl --json runs list >"$W/runs-new.json"
runs() { jq -c '[.runs[] | {run_id: (.run_id // .id), task_id}] | sort_by(.run_id)' "$1"; }
[ "$(runs "$W/runs-new.json")" = "$(runs "$W/runs-old.json")" ] ||
	fail "the runs differ after the upgrade: before $(runs "$W/runs-old.json"), after $(runs "$W/runs-new.json")"
(cd "$ROOT$model_dir" && find . -type f | LC_ALL=C sort | xargs sha256sum) >"$W/model-files-new.sum"
cmp -s "$W/model-files-old.sum" "$W/model-files-new.sum" ||
	fail "$MODEL v1's files changed in the upgrade: $(diff "$W/model-files-old.sum" "$W/model-files-new.sum" | tr '\n' ' ')"
predict 1 "$W/predict-new.json"
say "$MODEL v1 (from $(jq -r .task_id "$W/model-new.json")) kept its $(wc -l <"$W/model-files-new.sum") files byte for byte; the new loomd forecasts with it"
loomctl start "$pending_task" >/dev/null 2>"$W/start.err" || fail "loomctl start $pending_task failed: $(cat "$W/start.err")"
wait_task "$pending_task"
say "the task left pending before the upgrade ran to completion after it"

step "upgrade: the dataset routes (new in this build)"
loomctl data create clean-room --description "check-packages" >/dev/null 2>"$W/data.err" ||
	fail "loomctl data create failed: $(cat "$W/data.err")" "$LOOMD_LOG"
loomctl --json data import clean-room "$TEMPS" --message "seattle temps" >"$W/import.json" 2>"$W/data.err" ||
	fail "loomctl data import failed: $(cat "$W/data.err")" "$LOOMD_LOG"
rows=$(awk 'END { print NR - 1 }' "$ROOT$TEMPS")
[ "$(jq -r .rows "$W/import.json")" = "$rows" ] || fail "the import has $(jq -r .rows "$W/import.json") rows, $TEMPS $rows"
loomctl data checkout clean-room main -o /tmp/checkout.csv 2>"$W/data.err" ||
	fail "loomctl data checkout failed: $(cat "$W/data.err")" "$LOOMD_LOG"
# The same bytes, but for the final newline the file lacks.
awk 1 "$ROOT$TEMPS" | cmp -s - "$ROOT/tmp/checkout.csv" ||
	fail "the checkout of clean-room differs from $TEMPS: $(awk 1 "$ROOT$TEMPS" | cmp - "$ROOT/tmp/checkout.csv" 2>&1)"
say "imported $TEMPS as clean-room@$(jq -r .version "$W/import.json" | cut -c1-12) ($rows rows); its checkout is the same CSV"
stop_loomd
db_schema=$(in_root sh -c 'command -v sqlite3 >/dev/null' && in_root sqlite3 /var/lib/loom/loom.db 'SELECT max(version) FROM schema_migrations' ||
	sqlite3 "$ROOT/var/lib/loom/loom.db" 'SELECT max(version) FROM schema_migrations' 2>/dev/null || echo "?")
[ "$db_schema" = "$SCHEMA" ] || fail "loom.db's schema_migrations says $db_schema, the API said $SCHEMA"
note "upgrade $OLD_DEB_VERSION → $NEW_VERSION: schema $OLD_SCHEMA → $SCHEMA (loom.db agrees), tasks $done_task and $pending_task and $MODEL v1 kept"
close_root
step_done
