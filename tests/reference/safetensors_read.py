#!/usr/bin/env python3
"""An independent reader of the safetensors format, for Loom's tests.

Written from the format's description (huggingface/safetensors), with the
standard library only (struct, json), so it shares no code with Loom's
codec.  It checks every rule and exits 1 naming the first one broken:

- 8 bytes: N, the header length, little-endian unsigned 64-bit;
- N bytes of UTF-8 JSON, an object, padded at the end with spaces (0x20)
  only, N a multiple of 8 so the data that follows is aligned;
- no key twice; every key but "__metadata__" a tensor:
  {"dtype": one of the format's names, "shape": [non-negative ints],
   "data_offsets": [begin, end]}, nothing else;
- offsets relative to the byte buffer after the header, end - begin equal
  to the dtype's size times the product of the shape, and the tensors
  covering the buffer exactly: contiguous, no gap, no overlap, nothing
  after the last;
- "__metadata__", when present, an object of string to string.

Then prints one JSON document: {"header_len", "metadata", "tensors": [{
"name", "dtype", "shape", "data_offsets", "sha256"[, "values"]}]} in file
order; with --values each F32/F64 value as float.hex() (exact), each
integer as an int.  With --torch it loads every
"layers.K." group into torch.nn.TransformerEncoderLayer (strict), using the
metadata's "model" (d_model, heads, ffn), and adds "torch_layers"; exits 77
when torch is not installed.
"""
import hashlib
import json
import struct
import sys

DTYPES = {
    "BOOL": (1, None), "U8": (1, "B"), "I8": (1, "b"), "U16": (2, "H"), "I16": (2, "h"),
    "F16": (2, "e"), "BF16": (2, None), "U32": (4, "I"), "I32": (4, "i"), "F32": (4, "f"),
    "U64": (8, "Q"), "I64": (8, "q"), "F64": (8, "d"),
    "F8_E4M3": (1, None), "F8_E5M2": (1, None),
}


class Bad(Exception):
    pass


def no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise Bad("the header has the key %r twice" % k)
        seen[k] = v
    return seen


def parse(blob):
    if len(blob) < 8:
        raise Bad("shorter than the 8-byte header length (%d bytes)" % len(blob))
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise Bad("header length %d runs past the end of the file (%d bytes)" % (n, len(blob)))
    if n % 8 != 0:
        raise Bad("header length %d is not a multiple of 8" % n)
    raw = blob[8:8 + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Bad("the header is not UTF-8: %s" % e)
    body = text.rstrip(" ")
    if not body.startswith("{") or not body.endswith("}"):
        raise Bad("the header is not a JSON object padded with spaces")
    try:
        header = json.loads(body, object_pairs_hook=no_duplicates)
    except ValueError as e:
        raise Bad("the header is not JSON: %s" % e)
    data = blob[8 + n:]
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict):
            raise Bad("__metadata__ is not an object")
        for k, v in meta.items():
            if not isinstance(v, str):
                raise Bad("__metadata__[%r] is not a string" % k)
    tensors = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise Bad("tensor %r: entry must have exactly dtype, shape, data_offsets" % name)
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in DTYPES:
            raise Bad("tensor %r: unknown dtype %r" % (name, dtype))
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise Bad("tensor %r: shape %r is not a list of sizes" % (name, shape))
        if not isinstance(offs, list) or len(offs) != 2 or not all(
                isinstance(o, int) and not isinstance(o, bool) for o in offs):
            raise Bad("tensor %r: data_offsets %r is not [begin, end]" % (name, offs))
        b, end = offs
        count = 1
        for d in shape:
            count *= d
        if not 0 <= b <= end <= len(data):
            raise Bad("tensor %r: offsets %r out of the %d-byte buffer" % (name, offs, len(data)))
        if end - b != count * DTYPES[dtype][0]:
            raise Bad("tensor %r: %d bytes for %s %r (want %d)" %
                      (name, end - b, dtype, shape, count * DTYPES[dtype][0]))
        tensors.append({"name": name, "dtype": dtype, "shape": shape, "data_offsets": offs})
    pos = 0
    for t in sorted(tensors, key=lambda t: tuple(t["data_offsets"])):
        if t["data_offsets"][0] != pos:
            raise Bad("tensor %r: starts at %d, the previous ended at %d (gap or overlap)" %
                      (t["name"], t["data_offsets"][0], pos))
        pos = t["data_offsets"][1]
    if pos != len(data):
        raise Bad("%d bytes after the last tensor" % (len(data) - pos))
    for t in tensors:
        b, end = t["data_offsets"]
        t["sha256"] = hashlib.sha256(data[b:end]).hexdigest()
    tensors.sort(key=lambda t: t["data_offsets"][0])
    return n, meta, tensors, data


def values(t, data):
    size, code = DTYPES[t["dtype"]]
    b, end = t["data_offsets"]
    if code is None:
        return data[b:end].hex()
    vals = struct.unpack("<%d%s" % ((end - b) // size, code), data[b:end])
    if code in "efd":
        return [float(v).hex() for v in vals]
    return list(vals)


def torch_layers(meta, tensors, data):
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed", file=sys.stderr)
        sys.exit(77)
    model = json.loads(meta["model"])
    by_name = {t["name"]: t for t in tensors}
    layers = sorted({int(n.split(".")[1]) for n in by_name if n.startswith("layers.")})
    for k in layers:
        prefix = "layers.%d." % k
        state = {}
        for name, t in by_name.items():
            if name.startswith(prefix):
                b, end = t["data_offsets"]
                flat = struct.unpack("<%df" % ((end - b) // 4), data[b:end])
                state[name[len(prefix):]] = torch.tensor(flat, dtype=torch.float32).reshape(t["shape"])
        layer = torch.nn.TransformerEncoderLayer(
            model["d_model"], model["heads"], dim_feedforward=model["ffn"], dropout=0.0,
            batch_first=True, norm_first=True)
        layer.load_state_dict(state, strict=True)
        for name, v in layer.state_dict().items():
            if not torch.equal(v, state[name]):
                raise Bad("torch changed %s%s on load" % (prefix, name))
    return len(layers)


def main(argv):
    if len(argv) < 2:
        print("usage: safetensors_read.py FILE [--values] [--torch]", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        blob = f.read()
    try:
        n, meta, tensors, data = parse(blob)
        if "--values" in argv:
            for t in tensors:
                t["values"] = values(t, data)
        out = {"header_len": n, "metadata": meta, "tensors": tensors}
        if "--torch" in argv:
            out["torch_layers"] = torch_layers(meta or {}, tensors, data)
    except Bad as e:
        print("%s: not a valid safetensors file: %s" % (argv[1], e), file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
