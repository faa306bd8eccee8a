#!/bin/bash
# The bash completion of loomctl (packaging/bash-completion/loomctl),
# sourced with bash-completion's helpers and called as bash calls it:
# - in step with loomctl: the commands are those `loomctl --help` lists;
#   each command that has subcommands (found by asking loomctl for an
#   unknown one, which prints its usage without a request) offers exactly
#   the subcommands of its usage; every option a usage shows (global,
#   per command, per subcommand) is offered after that command;
# - fixed values (--format, --level, share kinds), and file names where an
#   argument is a file (job specs, JSON, CSV, -o);
# - names from a real loomd on loopback (plugin instances, datasets, a
#   dataset's branches and tags, users), over the socket and over TCP;
#   nothing, at once, when nothing listens;
# - from a stand-in loomctl: a name with shell characters is neither
#   offered nor run, and one that never answers is given up on (timeout 2).
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

BC=/usr/share/bash-completion/bash_completion
[ -r "$BC" ] || {
	echo "SKIP: $BC is missing; install bash-completion (apt-get install bash-completion," \
		"dnf install bash-completion)"
	exit 77
}
set +eu +o pipefail
# shellcheck source=/dev/null
. "$BC"
. "$S/packaging/bash-completion/loomctl"
set -euo pipefail
declare -F _init_completion >/dev/null || {
	echo "SKIP: $BC defines no _init_completion (bash-completion older than 2.0)"
	exit 77
}
declare -F _loomctl >/dev/null || fail "the completion defines no _loomctl"
[ "$(complete -p loomctl)" = "complete -F _loomctl loomctl" ] ||
	fail "loomctl's completion is not registered: $(complete -p loomctl 2>&1)"

# comp WORD...: complete the last WORD (often '') as bash does after
# `WORD... <TAB>`; the candidates, sorted, one a line, in $T/comp.
comp() {
	local rc=0
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	set +eu +o pipefail
	_loomctl "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" || rc=$?
	set -euo pipefail
	[ "$rc" -le 1 ] || fail "_loomctl returned $rc for: $*"
	if [ ${#COMPREPLY[@]} -gt 0 ]; then printf '%s\n' "${COMPREPLY[@]}"; fi | sort -u >"$T/comp"
}
# offers WORD... -- CANDIDATE...: each CANDIDATE is offered
offers() {
	local -a w=()
	while [ "$1" != -- ]; do w+=("$1"); shift; done
	shift
	comp "${w[@]}"
	for c in "$@"; do
		grep -qxF -- "$c" "$T/comp" || {
			echo "offered for \"${w[*]}\":" >&2; cat "$T/comp" >&2
			fail "\"${w[*]}\" does not offer \"$c\""
		}
	done
}
# exactly WORD... -- CANDIDATE...: the candidates are these and no others
exactly() {
	local -a w=()
	while [ "$1" != -- ]; do w+=("$1"); shift; done
	shift
	comp "${w[@]}"
	if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi | sort -u >"$T/want"
	cmp -s "$T/want" "$T/comp" || {
		diff "$T/want" "$T/comp" >&2 || true
		fail "\"${w[*]}\" offers other candidates than expected (< expected, > offered)"
	}
}

# ---------------------------------------------------------------- in step with loomctl
# nothing listens on port 1: any command that asked loomd would exit 3
NOWHERE=http://127.0.0.1:1
LOOM_URL=$NOWHERE LOOMCTL_COMPLETE_LIVE=0
export LOOM_URL LOOMCTL_COMPLETE_LIVE
# loomctl's token file, which login and logout would touch, kept in $T
HOME=$T/home XDG_CONFIG_HOME=$T/home/.config
export HOME XDG_CONFIG_HOME
mkdir -p "$HOME"
"$LOOMCTL" --help >"$T/help"
# the commands: "  NAME ..." lines of the commands section ("start|resume ID": two)
sed -n '/^commands:/,/^$/p' "$T/help" | sed -nE 's/^  ([a-z][a-z|-]*).*/\1/p' | tr '|' '\n' |
	sort -u >"$T/commands"
[ "$(wc -l <"$T/commands")" -ge 20 ] || fail "read only $(wc -l <"$T/commands") commands from loomctl --help"
comp loomctl ''
cmp -s "$T/commands" "$T/comp" || {
	diff "$T/commands" "$T/comp" >&2 || true
	fail "the completion's commands differ from loomctl --help's (< --help, > completion)"
}
ok "the commands are loomctl --help's ($(wc -l <"$T/commands"))"

sed -n '/^options:/,/^$/p' "$T/help" | sed -nE 's/^  (--[a-z-]+).*/\1/p' >"$T/globals"
[ -s "$T/globals" ] || fail "read no options from loomctl --help"
mapfile -t globals <"$T/globals"
offers loomctl - -- "${globals[@]}" --help --version
ok "the global options are offered ($(wc -l <"$T/globals"))"

# opts_of TEXT: the options in a synopsis (-o, --name), one a line
opts_of() { { grep -oE -- '(^|[^a-z-])--?[a-z][a-z-]*' <<<"$1" || true; } | sed -E 's/^[^-]*//' | sort -u; }

groups=0 subs_checked=0 opts_checked=0
while read -r cmd; do
	rc=0
	"$LOOMCTL" "$cmd" no-such-subcommand </dev/null >"$T/usage" 2>&1 || rc=$?
	# its usage's lines "usage: loomctl C SUB ...", "  [loomctl] C SUB ...",
	# "C [SUB] ... | C SUB ..." and the lines that go on with "[": one
	# "SUB<tab>SYNOPSIS" line each ("enable|disable|delete": three)
	awk -v c="$cmd" '
		{ line = $0; is = 0
		  if (sub(/^(loomctl: )?usage: +(loomctl )?/, "", line) || sub(/^ +(loomctl )?/, "", line))
			is = 1
		  if (is && last && line ~ /^\[/) { for (k in cur) print k "\t" line; next }
		  last = 0; delete cur
		  if (!is) next
		  np = split(line, parts, / \| /)
		  for (p = 1; p <= np; p++) {
			if (index(parts[p], c " ") != 1) continue
			split(substr(parts[p], length(c) + 2), w, " ")
			if (w[1] !~ /^\[?[a-z][a-z|-]*\]?$/) continue
			gsub(/[][]/, "", w[1]); n = split(w[1], names, "|")
			for (i = 1; i <= n; i++) { print names[i] "\t" parts[p]; cur[names[i]] = 1 }
			last = 1
		  }
		}
	' "$T/usage" >"$T/subsyn"
	cut -f1 "$T/subsyn" | sort -u >"$T/subs"
	if [ ! -s "$T/subs" ]; then
		# a plain command: the options of its synopsis in --help (the
		# entry's first line up to its description, and the lines that go
		# on with "[" or "|")
		awk -v c="$cmd" '
			/^commands:/ { on = 1; next }
			on && /^$/ { exit }
			on && /^  [a-z]/ {
				split(substr($0, 3), w, " "); n = split(w[1], names, "|"); mine = 0
				for (i = 1; i <= n; i++) if (names[i] == c) mine = 1
				if (mine) { line = substr($0, 3); sub(/   .*/, "", line); print line }
				next
			}
			on && mine && /^ {3,24}[[|]/ { print }
			on && /^ {25}/ { next }
		' "$T/help" >"$T/synopsis"
		want=$(opts_of "$(cat "$T/synopsis")")
		if [ -n "$want" ]; then
			# shellcheck disable=SC2086
			offers loomctl "$cmd" - -- $want
			opts_checked=$((opts_checked + $(wc -w <<<"$want")))
		fi
		continue
	fi
	[ "$rc" -eq 2 ] || fail "loomctl $cmd no-such-subcommand: exit $rc, not 2 (usage)"
	groups=$((groups + 1))
	# loomctl data help [COMMAND] is --help's other spelling
	[ "$cmd" = data ] && echo help >>"$T/subs" && sort -u -o "$T/subs" "$T/subs"
	comp loomctl "$cmd" ''
	cmp -s "$T/subs" "$T/comp" || {
		cat "$T/usage" >&2
		diff "$T/subs" "$T/comp" >&2 || true
		fail "the subcommands of $cmd differ from its usage (< usage, > completion)"
	}
	while read -r sub; do
		subs_checked=$((subs_checked + 1))
		awk -F '\t' -v s="$sub" '$1 == s { print $2 }' "$T/subsyn" >"$T/synopsis"
		want=$(opts_of "$(cat "$T/synopsis")")
		[ -n "$want" ] || continue
		# shellcheck disable=SC2086
		offers loomctl "$cmd" "$sub" - -- $want
		opts_checked=$((opts_checked + $(wc -w <<<"$want")))
	done <"$T/subs"
done <"$T/commands"
[ "$groups" -ge 8 ] || fail "found only $groups commands with subcommands"
ok "the subcommands of $groups commands are their usage's ($subs_checked), and $opts_checked options of the usages are offered"

# ---------------------------------------------------------------- values and files
exactly loomctl export task-1 --format '' -- onnx safetensors csv json html
exactly loomctl logs task-1 --format '' -- text jsonl csv
exactly loomctl logs task-1 --level w -- warn
exactly loomctl configs show cfg-1 --format '' -- libconfig json
exactly loomctl data import ds x.csv --format=f -- f32 f64
exactly loomctl share '' -- task config run model alert-rule labeling
exactly loomctl label decide item-1 c -- confirm correct
exactly loomctl users set-role bob '' -- admin user viewer
exactly loomctl --json mod -- models
exactly loomctl --url "$NOWHERE" runs be -- best
exactly loomctl data --help im -- import
ok "fixed values: --format, --level, share kinds, decide actions, roles"

mkdir -p "$T/files/jobs"
touch "$T/files/a.conf" "$T/files/b.json" "$T/files/c.csv" "$T/files/d.txt"
(
	cd "$T/files"
	exactly loomctl submit '' -- a.conf b.json jobs
	exactly loomctl submit --config '' --
	exactly loomctl configs update cfg-1 '' -- a.conf b.json jobs
	exactly loomctl predict m '' -- b.json jobs
	exactly loomctl models check m '' -- c.csv jobs
	exactly loomctl label round p --data '' -- c.csv jobs
	exactly loomctl report task-1 -o '' -- a.conf b.json c.csv d.txt jobs
	exactly loomctl data checkout ds main --output=d -- d.txt
	exactly loomctl --cacert '' -- jobs
)
ok "file names: job specs, JSON, CSV, -o and --output=, --cacert"

# ---------------------------------------------------------------- names from loomd
cat >"$T/loomd.conf" <<EOF
plugin_path = [ "$LOOM_TEST_PLUGINS" ];
plugins = (
  { instance = "sched"; module = "sched-local"; },
  { instance = "store"; module = "storage-local"; config = { root = "blobs"; }; }
);
datasets = { storage = "store"; };
EOF
start_loomd "$T/loomd.conf" "$T/state"
SOCK=$T/state/loomd.sock
printf 'a,b\n1,2\n' >"$T/x.csv"
for a in "data create weather" "data create weather.old" "data create other" \
	"data import weather $T/x.csv" "data branch weather dev" "data tag weather v1 main" \
	"users add bob"; do
	# shellcheck disable=SC2086
	expect 0 "$LOOMCTL" --socket "$SOCK" $a
done
export LOOMCTL_COMPLETE_LIVE=1
exactly "$LOOMCTL" --socket "$SOCK" plugins show '' -- sched store
exactly "$LOOMCTL" --socket="$SOCK" data show w -- weather weather.old
exactly "$LOOMCTL" --url "$URL" data checkout weather '' -- main dev v1
exactly "$LOOMCTL" --url "$URL" data import weather x.csv --branch '' -- main dev
exactly "$LOOMCTL" --url "$URL" share dataset weather b -- bob
exactly "$LOOMCTL" --url "$URL" label create p --sampler '' -- sched store
LOOM_URL=$URL exactly "$LOOMCTL" users show '' -- bob "$(id -un)"
ok "names from loomd: plugin instances, datasets, branches and tags, users"

LOOMCTL_COMPLETE_LIVE=0 exactly "$LOOMCTL" --url "$URL" plugins show '' --
exactly "$LOOMCTL" --url "$NOWHERE" data show '' --
stop_loomd
exactly "$LOOMCTL" --socket "$SOCK" plugins show '' --
ok "no names with LOOMCTL_COMPLETE_LIVE=0, or when loomd is not there"

# a stand-in loomctl: a table with names the shell would expand, and one
# that never answers
cat >"$T/fake-loomctl" <<EOF
#!/bin/sh
case " \$* " in
*" sleep "*) exec sleep 60 ;;
esac
printf '%s\n' 'NAME   X' 'good-1 x' '\$(touch $T/ran)' '\`touch $T/ran\`' 'a;b' '*' '-x' 'ok.2@h:1 y'
EOF
chmod +x "$T/fake-loomctl"
exactly "$T/fake-loomctl" plugins show '' -- good-1 ok.2@h:1
[ ! -e "$T/ran" ] || fail "a name from loomd was run by the shell"
ok "names with shell characters are neither offered nor run"
SECONDS=0
exactly "$T/fake-loomctl" --url sleep plugins show '' --
[ "$SECONDS" -lt 10 ] || fail "the completion waited ${SECONDS}s for a loomctl that never answers"
ok "a loomctl that never answers is given up on (${SECONDS}s)"
