#!/bin/bash
# HTML reports end to end: real runs trained by loom-worker, written by the
# exporter-report plugin (tests/helpers/report-write, as `loomctl report`
# will through loomd), parsed as HTML5 with Python's html.parser (every
# element closed in order, nothing fetched), then rendered by headless
# Chromium (a page 3000 px tall, the charts under the metrics and the
# model choice): the screenshot is not blank and the chart lines are on it in
# the colours the plugin drew them (a line spans the plot; a legend entry
# or a swatch does not).  The final metrics open with the head's headline
# metrics in its order; the classifier's per-class figures and confusion
# matrix are tables with class names (true classes down, predicted
# across), also for a metrics.json written before heads declared them.
# A model.kind = "auto" forecast's report has a "Model choice" section: the
# kind kept, why, and every candidate with exactly one row marked kept; a
# model.kind = "transformer" run's names its kind and has no candidates; a
# metrics.json from before model kinds has no such section; what the
# section takes from metrics.json is escaped.
set -eu
. "${LOOM_TEST_SRCDIR:?run the integration tests through make check}/tests/integration/lib.sh"

DATA=/usr/lib/python3/dist-packages/vega_datasets/_data
[ -r "$DATA/seattle-temps.csv" ] || {
	echo "SKIP: $DATA/seattle-temps.csv is missing; install python3-vega-datasets (./bootstrap does)"
	exit 77
}
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || {
	echo "SKIP: chromium is not installed; install it (./bootstrap does) to render reports"
	exit 77
}
PY=/usr/bin/python3
export LOOM_PLUGIN_PATH=$LOOM_TEST_PLUGINS
W=$B/host/loom-worker
RW=$B/tests/helpers/report-write

# ---------------------------------------------------------------- real runs
sed -e 's/epochs = 40;/epochs = 2;/' -e 's/head = "forecast";/head = "forecast"; kind = "auto";/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/a.conf"
grep -q 'kind = "auto";' "$T/a.conf" || fail "the job file has no head line to add model.kind to"
sed -e 's/kind = "auto";/kind = "transformer";/' "$T/a.conf" >"$T/t.conf"
sed -e 's/epochs = 40;/epochs = 2;/' -e 's/lr = 2e-3;/lr = 5e-3;/' \
	"$S/etc/jobs/seattle-temps-forecast.conf" >"$T/b.conf"
sed -e 's/epochs = [0-9]*;/epochs = 2;/' "$S/etc/jobs/seattle-weather-classify.conf" >"$T/c.conf"
for r in a b c t; do
	"$W" --threads 2 --run "$T/$r.conf" --out "$T/$r" 2>"$T/err" || fail "loom-worker $r.conf failed"
done
ok "trained four runs (three forecasts: auto, the default and transformer; a classifier) for two epochs"

LOOM_REPORT_RUN_JSON='{"started_ms":1700000000000,"finished_ms":1700000005000,"duration_ms":5000,"attempts":1}' \
	"$RW" "$T/run.html" "$T/a" 2>"$T/err" || fail "report-write failed on a run"
"$RW" "$T/weather.html" "$T/c" 2>"$T/err" || fail "report-write failed on the classifier"
"$RW" "$T/compare.html" "$T/a" "$T/b" 2>"$T/err" || fail "report-write failed on a comparison"
"$RW" "$T/transformer.html" "$T/t" 2>"$T/err" || fail "report-write failed on a transformer run"
"$RW" "$T/again.html" "$T/b" 2>"$T/err" && "$RW" "$T/again2.html" "$T/b" 2>"$T/err" ||
	fail "report-write failed"
cmp -s "$T/again.html" "$T/again2.html" || fail "two reports of the same run differ"
ok "reports written: a run, a classifier, a comparison; the same run gives the same bytes"

# ---------------------------------------------------------------- well-formed HTML5
cat >"$T/check_html.py" <<'EOF'
import sys
from html.parser import HTMLParser

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}

class Check(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.errors, self.text = [], {}, [], []
    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for k, v in attrs:
            if k in ("src", "href") or (v and "url(" in v):
                self.errors.append("fetches something: %s=%r" % (k, v))
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))
    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append("</%s> at %s closes %s" % (tag, self.getpos(), self.stack[-1:] or "nothing"))
            return
        self.stack.pop()
    def handle_data(self, data):
        self.text.append(data)

path, want = sys.argv[1], sys.argv[2:]
html = open(path, encoding="utf-8").read()
if not html.startswith("<!DOCTYPE html>"):
    sys.exit(path + ": no <!DOCTYPE html>")
p = Check()
p.feed(html)
p.close()
if p.stack:
    p.errors.append("never closed: %s" % p.stack)
for t in ("script", "link", "iframe", "img", "object"):
    if p.tags.get(t):
        p.errors.append("has <%s>" % t)
text = "".join(p.text)
for w in want:
    if w not in text:
        p.errors.append("text %r not found" % w)
if p.errors:
    sys.exit(path + ": " + "; ".join(p.errors))
print("%s: %d svg, %d tags" % (path, p.tags.get("svg", 0), sum(p.tags.values())))
EOF
$PY "$T/check_html.py" "$T/run.html" "seattle-temps-forecast" "Test metrics beside the baselines" \
	"seasonal_naive" "Metrics over training" "2023-11-14 22:13:20 UTC" ||
	fail "the run report is not well-formed HTML5"
$PY "$T/check_html.py" "$T/weather.html" "classes" "majority" ||
	fail "the classifier's report is not well-formed or lacks its classes and baseline"
$PY "$T/check_html.py" "$T/compare.html" "Comparison of 2 runs" "settings differ" "train.lr" ||
	fail "the comparison is not well-formed HTML5"
ok "the reports parse as HTML5: every element closed in order, no script, nothing fetched"

# ---------------------------------------------------------------- headline and details
# an old classifier's metrics.json: the same run without the declaration
mkdir "$T/old"
cp "$T/c"/*.* "$T/old/"
$PY - "$T/old/metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
del m["headline"], m["details"]
json.dump(m, open(sys.argv[1], "w"))
EOF
"$RW" "$T/old.html" "$T/old" 2>"$T/err" || fail "report-write failed on an old metrics.json"
cat >"$T/check_metrics.py" <<'EOF'
import sys
from html.parser import HTMLParser

class Tables(HTMLParser):
    # each <table> with the <h3> before it, as rows of cell texts
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.h3, self.cur, self.cell, self.in_h3 = [], "", None, None, False
    def handle_starttag(self, tag, attrs):
        if tag == "h3":
            self.in_h3, self.h3 = True, ""
        elif tag == "table":
            self.cur = (self.h3, [])
        elif tag == "tr" and self.cur:
            self.cur[1].append([])
        elif tag in ("td", "th") and self.cur:
            self.cell = ""
    def handle_endtag(self, tag):
        if tag == "h3":
            self.in_h3 = False
        elif tag == "table" and self.cur:
            self.tables.append(self.cur)
            self.cur = None
        elif tag in ("td", "th") and self.cur and self.cell is not None:
            self.cur[1][-1].append(self.cell.strip())
            self.cell = None
    def handle_data(self, d):
        if self.in_h3:
            self.h3 += d
        if self.cell is not None:
            self.cell += d

p = Tables()
p.feed(open(sys.argv[1]).read())
t = {h: rows for h, rows in p.tables}
heads = [h for h, _ in p.tables]
first = heads.index("Headline metrics per split")
assert heads[first + 1] == "Test metrics beside the baselines", heads
rows = t["Headline metrics per split"]
assert [r[0] for r in rows[1:]] == ["loss", "accuracy", "macro_f1"], rows
assert [r[0] for r in t["Test metrics beside the baselines"][1:]] == ["loss", "accuracy", "macro_f1"]
classes = ["drizzle", "fog", "rain", "snow", "sun"]
pc = t["Per class (test)"]
assert pc[0] == ["class", "precision", "recall", "f1"], pc[0]
assert [r[0] for r in pc[1:]] == classes, pc
cm = t["Confusion matrix (test)"]
assert cm[0] == ["true \\ predicted"] + classes, cm[0]
assert [r[0] for r in cm[1:]] == classes, cm
assert all(len(r) == 6 and all(x.isdigit() for x in r[1:]) for r in cm[1:]), cm
# no confusion cell or per-class figure is listed as a final metric of its own
text = open(sys.argv[1]).read()
text = text[text.index('<section id="metrics">'):]
text = text[:text.index("</section>")]
assert "confusion.fog" not in text and "precision.fog" not in text
print("%s: headline %s, %d classes in the matrix" % (sys.argv[1], [r[0] for r in rows[1:]], len(cm) - 1))
EOF
$PY "$T/check_metrics.py" "$T/weather.html" || fail "the classifier's report: headline or tables wrong"
$PY "$T/check_metrics.py" "$T/old.html" || fail "the report of an old metrics.json: headline or tables wrong"
$PY - "$T/compare.html" <<'EOF' || fail "the comparison's metrics do not open with the headline ones"
import re, sys
t = open(sys.argv[1]).read()
t = t[t.index('<section id="metrics">'):]
rows = re.findall(r'<tr><th scope="row">([^<]*)</th>', t[:t.index("</section>")])
assert rows[:5] == ["test loss", "test mae", "test rmse", "test mse", "test smape"], rows[:8]
EOF
ok "the classifier's report: headline metrics in the head's order, per-class table and confusion matrix with class names (also without a declaration); a comparison's metrics open with them"

# ---------------------------------------------------------------- the model choice
# older runs: the same auto run's metrics.json without "model" and "candidates"
mkdir "$T/nomodel" "$T/markup"
cp "$T/a"/*.* "$T/nomodel/"
cp "$T/a"/*.* "$T/markup/"
$PY - "$T/nomodel/metrics.json" "$T/markup/metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
del m["model"], m["candidates"]
json.dump(m, open(sys.argv[1], "w"))
# markup where metrics.json has text: a name, a reason, a setting, a member
m = json.load(open(sys.argv[2]))
m["model"]["detail"]["chosen_by"] = "<script>alert(1)</script> & co"
m["candidates"][0]["name"] = "<b>trans</b>"
m["candidates"][1]["detail"]["decomposition"] = "<i>odd</i>"
m["candidates"][-1]["detail"]["members"][0] = "<u>m</u>"
json.dump(m, open(sys.argv[2], "w"))
EOF
"$RW" "$T/nomodel.html" "$T/nomodel" 2>"$T/err" || fail "report-write failed on a run without a model"
"$RW" "$T/markup.html" "$T/markup" 2>"$T/err" || fail "report-write failed on markup in metrics.json"
cat >"$T/check_choice.py" <<'EOF'
import json, sys
from html.parser import HTMLParser

class Section(HTMLParser):
    # the choice section's dt/dd pairs and its candidates table's rows
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.on, self.meta, self.rows, self.tags = False, {}, [], []
        self.cell, self.row, self.dt, self.in_table = None, None, None, False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.on = a.get("id") == "choice"
        if not self.on:
            return
        self.tags.append(tag)
        if tag == "table" and "candidates" in (a.get("class") or ""):
            self.in_table = True
        elif tag == "tr" and self.in_table:
            self.row = {"class": a.get("class") or "", "cells": []}
        elif tag in ("td", "th", "dt", "dd"):
            self.cell = ""
    def handle_endtag(self, tag):
        if not self.on:
            return
        if tag == "section":
            self.on = False
        elif tag == "table":
            self.in_table = False
        elif tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        elif tag in ("td", "th") and self.row is not None:
            self.row["cells"].append(self.cell.strip())
            self.cell = None
        elif tag == "dt" and not self.in_table:
            self.dt, self.cell = self.cell.strip(), None
        elif tag == "dd" and self.dt is not None:
            self.meta.setdefault(self.dt, self.cell.strip())
            self.dt, self.cell = None, None
    def handle_data(self, d):
        if self.on and self.cell is not None:
            self.cell += d

mode, path = sys.argv[1], sys.argv[2]
html = open(path, encoding="utf-8").read()
p = Section()
p.feed(html)
if mode == "none":
    assert 'id="choice"' not in html and "Model choice" not in html, "a section without a model"
    print("%s: no Model choice section" % path)
    sys.exit(0)
assert html.count('<section id="choice">') == 1, "no (or two) Model choice sections"
assert html.index('<section id="metrics">') < html.index('<section id="choice">')
if mode == "transformer":
    assert p.meta.get("Kept") == "transformer", p.meta
    assert "table" not in p.tags, "a candidates table for a single model"
    assert "no other model was compared" in p.meta.get("Why", ""), p.meta
    print("%s: kept %s, no candidates" % (path, p.meta["Kept"]))
    sys.exit(0)
m = json.load(open(sys.argv[3]))
body = [r for r in p.rows if r["cells"] and r["cells"][0] not in ("candidate", "loss")]
names = [r["cells"][0] for r in body]
for want in ("transformer", "linear", "naive", "ensemble"):
    assert any(n == want or n.startswith(want + " (") for n in names), (want, names)
assert len(body) == len(m["candidates"]), (names, len(m["candidates"]))
# exactly one row says "kept" (in words, not by colour alone)
kept = [r for r in body if r["cells"][1] == "kept"]
assert len(kept) == 1, "%d rows marked kept: %s" % (len(kept), names)
assert [r["class"] for r in body].count("kept") == 1 and kept[0]["class"] == "kept"
assert all(r["cells"][1] == "" for r in body if r is not kept[0])
chosen = [c for c in m["candidates"] if c["chosen"]]
assert len(chosen) == 1 and kept[0]["cells"][0].startswith(chosen[0]["name"]), (kept, chosen)
assert p.meta["Kept"] == m["model"]["kind"] == chosen[0]["name"], (p.meta, m["model"])
assert p.meta["Why"] == m["model"]["detail"]["chosen_by"], p.meta
# the test metrics beside the baselines name the kind kept
assert '<th scope="col">model (%s)</th>' % m["model"]["kind"] in html
for c in m["candidates"]:
    if "members" in c["detail"]:
        label = "%s (%s)" % (c["name"], " + ".join(c["detail"]["members"]))
        assert label in names, (label, names)
        assert "average of " in p.meta.get(label, ""), (label, p.meta.get(label))
# the validation loss and test MAE of each, as the report writes numbers
def fmt(v):
    return ("%.0f" % v) if v == int(v) else ("%.6g" % v)
for r, c in zip(body, m["candidates"]):
    assert fmt(c["validation"]["loss"]) in r["cells"], (r, c["validation"])
    assert fmt(c["test"]["mae"]) in r["cells"], (r, c["test"])
# each candidate's detail in words
text = " ".join(p.meta.values())
assert "ridge regression" in text and "penalty alpha" in text, p.meta
assert "naive forecast:" in text and "best epoch" in text, p.meta
print("%s: kept %s (%s); candidates %s" % (path, p.meta["Kept"], p.meta["Why"], names))
EOF
$PY "$T/check_html.py" "$T/run.html" "Model choice" "Candidates" ||
	fail "the auto run's report is not well-formed HTML5"
$PY "$T/check_choice.py" auto "$T/run.html" "$T/a/metrics.json" ||
	fail "the auto run's report: the Model choice section is wrong"
$PY "$T/check_html.py" "$T/transformer.html" "Model choice" ||
	fail "the transformer run's report is not well-formed HTML5"
$PY "$T/check_choice.py" transformer "$T/transformer.html" ||
	fail "the transformer run's report: the Model choice section is wrong"
$PY "$T/check_choice.py" none "$T/nomodel.html" ||
	fail "the report of a run without a model description has a Model choice section"
$PY "$T/check_html.py" "$T/markup.html" "<script>alert(1)</script> & co" "<b>trans</b>" \
	"<i>odd</i>" "<u>m</u>" || fail "markup in metrics.json is not shown as text"
grep -q '&lt;b&gt;trans&lt;/b&gt;' "$T/markup.html" || fail "a candidate's name is not escaped"
$PY - "$T/compare.html" <<'EOF' || fail "the comparison does not name the model each run kept"
import re, sys
t = open(sys.argv[1]).read()
t = t[t.index('<section id="runs">'):]
t = t[:t.index("</section>")]
assert "<th scope=\"col\">model kept</th>" in t, t
assert len(re.findall(r"<td>(transformer|linear|naive|ensemble)</td>", t)) == 2, t
EOF
ok "the Model choice section: an auto run's candidates, one kept and why; a transformer run's kind alone; none for older runs; text escaped; a comparison names each run's kept model"

# ---------------------------------------------------------------- rendered by Chromium
shot() { # HTML PNG
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
		--window-size=1200,3000 --screenshot="$2" "file://$1" >"$T/chromium.log" 2>&1 || true
	[ -s "$2" ] || fail "chromium wrote no screenshot of $1 (see chromium.log)"
}

cat >"$T/check_png.py" <<'EOF'
# Decode a PNG with the standard library only (zlib and the five row
# filters), then: enough of the page is not white, and each colour given
# covers a wide span of columns, as a chart line does (a legend entry or a
# swatch is a few pixels wide).
import struct, sys, zlib

def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(path + ": not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    if depth != 8 or ctype not in (2, 6) or interlace:
        sys.exit("%s: unsupported PNG (depth %d, colour type %d)" % (path, depth, ctype))
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 255
        elif f == 2:
            cur = bytearray((a + b) & 255 for a, b in zip(cur, prev))
        elif f == 3:
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(cur)
        prev = cur
    return w, h, bpp, rows

path, colours = sys.argv[1], sys.argv[2:]
w, h, bpp, rows = decode(path)
ink = 0
spans = {c: set() for c in colours}
targets = [(c, int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)) for c in colours]
for y, row in enumerate(rows):
    for x in range(w):
        r, g, b = row[x * bpp], row[x * bpp + 1], row[x * bpp + 2]
        if r + g + b < 720:
            ink += 1
            for c, tr, tg, tb in targets:
                if abs(r - tr) < 40 and abs(g - tg) < 40 and abs(b - tb) < 40:
                    spans[c].add(x)
share = ink / (w * h)
if share < 0.01:
    sys.exit("%s: %.1f%% of the page is not white: blank?" % (path, 100 * share))
for c in colours:
    if len(spans[c]) < w // 3:
        sys.exit("%s: colour %s covers %d columns of %d: no chart line drawn in it" %
                 (path, c, len(spans[c]), w))
print("%s: %.1f%% ink; %s" % (path, 100 * share,
      ", ".join("%s over %d columns" % (c, len(spans[c])) for c in colours)))
EOF

shot "$T/run.html" "$T/run.png"
$PY "$T/check_png.py" "$T/run.png" "#1f77b4" "#d62728" ||
	fail "the run report's screenshot lacks its charts"
shot "$T/compare.html" "$T/compare.png"
$PY "$T/check_png.py" "$T/compare.png" "#1f77b4" "#d62728" ||
	fail "the comparison's screenshot lacks its overlaid charts"
ok "rendered by headless Chromium: the pages are not blank and the chart lines are drawn"
