#!/usr/bin/env python3
"""Reads an export of exporter-csv or exporter-json the way a user would
(Python's csv and json modules; pandas too when installed) and compares it
with what the test expected, value by value, bit for bit.

  check_export.py csv FILE EXPECTED   EXPECTED: {"rows": [[run_id, metric,
      step, epoch, scope, value], ...]}, value as C's %a or "nan",
      "inf", "-inf"; step and epoch null for final rows
  check_export.py json FILE EXPECTED  EXPECTED: {"history": {metric:
      {"step": [...], "epoch": [...], "value": [...]}}} (values as above)

Prints what it checked; exits 1 naming the first difference."""
import csv
import json
import math
import struct
import sys


def hexed(v):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v).hex()


def same(v, e):
    """v, a float read from the export, is exactly e (C's %a, or nan/inf/-inf)."""
    if e in ("nan", "inf", "-inf"):
        return hexed(v) == e
    return struct.pack("<d", v) == struct.pack("<d", float.fromhex(e))


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_csv(path, want):
    raw = open(path, "rb").read()
    lines = raw.split(b"\r\n")
    if lines[-1] != b"":
        fail("the file does not end with CRLF")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["run_id", "metric", "step", "epoch", "scope", "value"]:
        fail("header %r" % rows[0])
    rows = rows[1:]
    if len(rows) != len(want["rows"]):
        fail("%d rows, expected %d" % (len(rows), len(want["rows"])))
    for i, (got, exp) in enumerate(zip(rows, want["rows"])):
        run_id, metric, step, epoch, scope, value = got
        e_step = "" if exp[2] is None else str(exp[2])
        e_epoch = "" if exp[3] is None else str(exp[3])
        if [run_id, metric, step, epoch, scope] != [exp[0], exp[1], e_step, e_epoch, exp[4]]:
            fail("row %d: %r, expected %r" % (i + 1, got, exp))
        if not same(float(value), exp[5]):
            fail("row %d: value %s reads as %s, expected %s" % (i + 1, value,
                 hexed(float(value)), exp[5]))
    print("csv: %d rows match" % len(rows))
    try:
        import pandas
    except ImportError:
        print("pandas: not installed, not checked")
        return
    # pandas' default float parser is not exact; round_trip is.
    df = pandas.read_csv(path, float_precision="round_trip")
    if len(df) != len(rows) or list(df.columns) != ["run_id", "metric", "step", "epoch",
                                                       "scope", "value"]:
        fail("pandas read %d rows, columns %r" % (len(df), list(df.columns)))
    for i, exp in enumerate(want["rows"]):
        if not same(float(df["value"][i]), exp[5]):
            fail("pandas: row %d value %r, expected %s" % (i + 1, df["value"][i], exp[5]))
        if df["metric"][i] != exp[1]:
            fail("pandas: row %d metric %r, expected %r" % (i + 1, df["metric"][i], exp[1]))
    print("pandas: %d rows match" % len(df))


def check_json(path, want):
    doc = json.load(open(path, encoding="utf-8"))
    docs = doc["runs"] if "runs" in doc else [doc]
    for d in docs:
        for key in ("run", "spec", "model", "metrics", "history"):
            if key not in d:
                fail("no %r" % key)
        hist = d["history"]
        if sorted(hist) != sorted(want["history"]):
            fail("metrics %r, expected %r" % (sorted(hist), sorted(want["history"])))
        for name, exp in want["history"].items():
            got = hist[name]
            n = len(exp["value"])
            if got["step"] != exp["step"] or got["epoch"] != exp["epoch"]:
                fail("%s: steps or epochs differ" % name)
            values = list(got["value"])
            if len(values) != n:
                fail("%s: %d values, expected %d" % (name, len(values), n))
            for kind, v in (("NaN", math.nan), ("inf", math.inf), ("-inf", -math.inf)):
                for i in got.get("nonfinite", {}).get(kind, []):
                    if values[i] is not None:
                        fail("%s: index %d listed as %s but is %r" % (name, i, kind, values[i]))
                    values[i] = v
            for i, v in enumerate(values):
                if v is None or not same(float(v), exp["value"][i]):
                    fail("%s[%d]: %r, expected %s" % (name, i, v, exp["value"][i]))
    print("json: %d run(s), histories match" % len(docs))


def main():
    mode, path, expected = sys.argv[1:4]
    want = json.load(open(expected))
    (check_csv if mode == "csv" else check_json)(path, want)


if __name__ == "__main__":
    main()
