#!/usr/bin/env python3
"""Read TensorBoard event files with nothing but the standard library, as an
independent check of tracker-tensorboard's writer.

    tfevents_read.py PATH...

PATH is an event file or a directory (every file in it whose name contains
"tfevents", in name order, as TensorBoard reads them).  Each record's length
and data CRCs are verified and each Event decoded; every event is printed as
one JSON line:

    {"file": "...", "record": 0, "wall_time": 1.7e9, "step": 0,
     "file_version": "brain.Event:2"}
    {"file": "...", "record": 1, "wall_time": ..., "step": 120,
     "values": [{"tag": "train_loss", "simple_value": 0.31}]}

simple_value is the float32 widened to a double exactly; NaN and infinities
are printed as the strings "nan", "inf" and "-inf" (JSON has no NaN).  Any
malformed record (a short file, a CRC that does not match, a bad protobuf
encoding) is reported on stderr with the file and offset, and the exit
status is 1.

The format, from TensorFlow's sources:
  tensorflow/core/lib/io/record_writer.cc  record framing:
      uint64 LE length, uint32 LE masked_crc32c(length bytes),
      data, uint32 LE masked_crc32c(data);
      masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32)
  tensorflow/core/util/event.proto  Event: 1 wall_time double, 2 step int64,
      3 file_version string, 5 summary Summary (others skipped here)
  tensorflow/core/framework/summary.proto  Summary: repeated 1 value;
      Value: 1 tag string, 2 simple_value float (others skipped here)
"""

import json
import math
import os
import struct
import sys


class FormatError(Exception):
    pass


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_varint(buf, pos):
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("varint runs past the end of its message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise FormatError("varint longer than 10 bytes")


def fields(buf):
    """Yield (field number, wire type, value) of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise FormatError("field number 0")
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise FormatError("fixed64 field %d runs past the end" % num)
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise FormatError("length-delimited field %d runs past the end" % num)
            value = buf[pos:pos + n]
            pos += n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise FormatError("fixed32 field %d runs past the end" % num)
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise FormatError("unsupported wire type %d (field %d)" % (wire, num))
        yield num, wire, value


def expect(wire, want, what):
    if wire != want:
        raise FormatError("%s has wire type %d, expected %d" % (what, wire, want))


def number(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def decode_value(buf):
    out = {}
    for num, wire, value in fields(buf):
        if num == 1:
            expect(wire, 2, "Summary.Value.tag")
            out["tag"] = value.decode("utf-8")
        elif num == 2:
            expect(wire, 5, "Summary.Value.simple_value")
            out["simple_value"] = number(struct.unpack("<f", value)[0])
    return out


def decode_event(buf):
    event = {}
    for num, wire, value in fields(buf):
        if num == 1:
            expect(wire, 1, "Event.wall_time")
            event["wall_time"] = number(struct.unpack("<d", value)[0])
        elif num == 2:
            expect(wire, 0, "Event.step")
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif num == 3:
            expect(wire, 2, "Event.file_version")
            event["file_version"] = value.decode("utf-8")
        elif num == 5:
            expect(wire, 2, "Event.summary")
            values = event.setdefault("values", [])
            for snum, swire, svalue in fields(value):
                if snum == 1:
                    expect(swire, 2, "Summary.value")
                    values.append(decode_value(svalue))
    return event


def read_file(path, out):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    record = 0
    while pos < len(data):
        where = "%s: offset %d: record %d" % (path, pos, record)
        if pos + 12 > len(data):
            raise FormatError("%s: truncated header (%d bytes left)" % (where, len(data) - pos))
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (stored,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if stored != masked_crc(header):
            raise FormatError("%s: length CRC mismatch (stored 0x%08x, computed 0x%08x)"
                              % (where, stored, masked_crc(header)))
        if pos + 12 + length + 4 > len(data):
            raise FormatError("%s: truncated data (length %d)" % (where, length))
        body = data[pos + 12:pos + 12 + length]
        (stored,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if stored != masked_crc(body):
            raise FormatError("%s: data CRC mismatch (stored 0x%08x, computed 0x%08x)"
                              % (where, stored, masked_crc(body)))
        try:
            event = decode_event(body)
        except (FormatError, UnicodeDecodeError) as e:
            raise FormatError("%s: bad Event: %s" % (where, e))
        row = {"file": os.path.basename(path), "record": record}
        row.update(event)
        out.write(json.dumps(row, allow_nan=False) + "\n")
        pos += 16 + length
        record += 1


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: tfevents_read.py PATH...\n")
        return 2
    files = []
    for arg in argv[1:]:
        if os.path.isdir(arg):
            files += [os.path.join(arg, n) for n in sorted(os.listdir(arg)) if "tfevents" in n]
        else:
            files.append(arg)
    try:
        for path in files:
            read_file(path, sys.stdout)
    except (FormatError, OSError) as e:
        sys.stdout.flush()
        sys.stderr.write("tfevents_read: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
