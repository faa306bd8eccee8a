#!/bin/bash
# Inference workers (docs/inference.md): loom-worker --serve on a model
# trained here from seattle-temps (python3-vega-datasets).
# - it prints "ready URL", its ipc socket is mode 0600;
# - predictions through the wire format (tests/helpers/serve-request) equal
#   loom-worker --predict's to the bit (each f32 printed the same way), with
#   and without --uncertainty, for a request of many windows and of one;
# - a second worker on the same ipc path is refused, naming the path;
# - malformed requests (bad magic, version, truncated, oversized, dims that
#   disagree with the payload, a NaN, a window of the wrong shape) get an
#   error naming the problem, and the worker keeps serving;
# - tcp://127.0.0.1:0 binds a free port and names it in the ready line;
# - SIGTERM ends it with status 0.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
REQ=$B/tests/helpers/serve-request
py() { /usr/bin/python3 "$@"; }

cat >"$T/f.conf" <<EOF
data = { path = "$DATA/seattle-temps.csv"; time_column = "date"; features = ["temp"]; target = ["temp"]; };
model = { kind = "transformer"; head = "forecast"; context = 48; horizon = 12; patch = 12; stride = 24;
          d_model = 16; heads = 2; layers = 1; ffn = 32; dropout = 0.1; };
train = { epochs = 2; batch = 32; warmup_steps = 2; seed = 3; };
EOF
expect 0 "$W" --threads 2 --run "$T/f.conf" --out "$T/model"

# 100 windows of 48 hours from the last part of the year, and one
py - "$DATA/seattle-temps.csv" "$T" <<'EOF'
import csv, json, sys
v = [float(r["temp"]) for r in csv.DictReader(open(sys.argv[1]))]
wins = [[[x] for x in v[s:s + 48]] for s in range(7000, 7000 + 100 * 13, 13)]
json.dump({"input": wins}, open(sys.argv[2] + "/many.json", "w"))
json.dump({"input": wins[37:38]}, open(sys.argv[2] + "/one.json", "w"))
EOF

# start_worker NAME URL: a worker in the background; waits for its ready line
start_worker() {
	"$W" --serve "$T/model" --listen "$2" >"$T/$1.out" 2>"$T/$1.log" &
	eval "${1}_PID=$!"
	local i=0
	until grep -q '^ready ' "$T/$1.out"; do
		kill -0 "$(eval echo \$${1}_PID)" 2>/dev/null || fail "$1: the worker exited before it was ready"
		i=$((i + 1))
		[ $i -lt $((WAIT_S * 20)) ] || fail "$1: no ready line in ${WAIT_S} s"
		sleep 0.05
	done
}
SOCK=$T/w.sock
start_worker w1 "ipc://$SOCK"
has "$T/w1.out" "ready ipc://$SOCK"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "the socket is mode $(stat -c %a "$SOCK"), expected 600"
ok "--serve prints its ready line; the ipc socket is mode 0600"

# same_output A B [KEY…]: the arrays under KEY (output) of two JSON files
# are equal as f32 bit patterns
same_output() {
	py - "$@" <<'EOF'
import json, struct, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def flat(x):
    return [y for e in x for y in flat(e)] if isinstance(x, list) else [x]
for key in sys.argv[3:] or ["output"]:
    fa, fb = flat(a[key]), flat(b[key])
    bits = lambda v: [struct.pack("<f", x) for x in v]
    if len(fa) != len(fb) or bits(fa) != bits(fb):
        n = sum(1 for x, y in zip(bits(fa), bits(fb)) if x != y)
        sys.exit(f"{key}: {len(fa)} against {len(fb)} values, {n} differ")
    if not fa:
        sys.exit(f"{key}: empty")
EOF
}
for f in many one; do
	expect 0 "$W" --predict "$T/model" --input "$T/$f.json" --output "$T/$f.predict.json"
	expect 0 "$REQ" "ipc://$SOCK" predict "$T/$f.json"
	cp "$T/out" "$T/$f.serve.json"
	same_output "$T/$f.predict.json" "$T/$f.serve.json" || fail "$f: the served output differs from --predict's"
	expect 0 "$W" --predict "$T/model" --input "$T/$f.json" --uncertainty --output "$T/$f.pu.json"
	expect 0 "$REQ" "ipc://$SOCK" predict "$T/$f.json" --uncertainty
	cp "$T/out" "$T/$f.su.json"
	same_output "$T/$f.pu.json" "$T/$f.su.json" output uncertainty ||
		fail "$f: the served uncertainty differs from --predict --uncertainty's"
	same_output "$T/$f.predict.json" "$T/$f.su.json" || fail "$f: asking for the uncertainty changed the prediction"
	has "$T/$f.su.json" '"passes":16'
done
# the window alone gets the spread it got among the 100 (its prediction
# may differ in the last bits: the matrix kernels block by batch size)
py - "$T" <<'EOF'
import json, struct, sys
t = sys.argv[1]
many, one = json.load(open(t + "/many.su.json")), json.load(open(t + "/one.su.json"))
key = "uncertainty"
if struct.pack("<12f", *[v[0] for v in many[key][37]]) != struct.pack("<12f", *[v[0] for v in one[key][0]]):
    sys.exit(f"window 37's {key} depends on the other windows of its request")
if max(abs(a[0] - b[0]) for a, b in zip(many["output"][37], one["output"][0])) > 1e-4:
    sys.exit("window 37's prediction depends on the other windows of its request")
EOF
ok "served predictions and uncertainties equal loom-worker --predict's to the bit (100 windows and 1)"

expect 1 "$W" --serve "$T/model" --listen "ipc://$SOCK"
has "$T/err" "--listen ipc://$SOCK"
has "$T/err" "another process is listening there (it holds $SOCK.lock)"
ok "a second worker on the same ipc path is refused"

check_raw() {
	expect 0 "$REQ" "ipc://$SOCK" raw "$1"
	has "$T/out" "status $2: "
	has "$T/out" "$3"
}
check_raw bad-magic 12 "bad magic"
check_raw bad-version 12 "wire format version 9; this side speaks version 1"
check_raw truncated 12 "the message has"
check_raw oversized 15 "at most 65536; split the batch"
check_raw wrong-dims 12 "[2, 4, 1] windows need 32 bytes, the payload has 24"
check_raw nan 1 "window 1, step 0, channel 0 is NaN"
check_raw wrong-shape 1 "the model takes windows of 48 steps of 1 channels (see info); got 3 × 2"
has "$T/w1.log" "bad magic"
expect 0 "$REQ" "ipc://$SOCK" predict "$T/one.json"
same_output "$T/one.predict.json" "$T/out" || fail "after the malformed requests the output changed"
expect 0 "$REQ" "ipc://$SOCK" info
has "$T/out" '"method": "mc_dropout"'
ok "malformed requests get errors naming the problem, and the worker keeps serving"

start_worker w2 "tcp://127.0.0.1:0"
TCP=$(sed -n 's/^ready //p' "$T/w2.out")
case "$TCP" in tcp://127.0.0.1:0 | "") fail "the ready line names no port: $TCP" ;; esac
expect 0 "$REQ" "$TCP" predict "$T/one.json"
same_output "$T/one.predict.json" "$T/out" || fail "tcp: the served output differs"
ok "tcp://127.0.0.1:0 binds a free port ($TCP) and answers the same"

for w in w1 w2; do
	pid=$(eval echo \$${w}_PID)
	kill -TERM "$pid"
	rv=0
	wait "$pid" || rv=$?
	[ $rv -eq 0 ] || fail "$w: exit status $rv after SIGTERM, expected 0"
	has "$T/$w.log" "stopping"
done
[ ! -e "$SOCK" ] || [ ! -S "$SOCK" ] || true
ok "SIGTERM ends the workers with status 0"
