#!/usr/bin/env python3
"""Storage throughput of embedlog against two plain-file baselines, in one run on the same records.

    python bench/bench_storage.py [--records N] [--batch 1000] [--repeat 3] [--dir DIR]
                                  [--read-chunk BYTES] [--no-breakdown] [--json]

Records: N (default 1,000,000) random 16-byte keys and 100-byte values from
random.Random(42), generated once before anything is timed. "MB" is 10^6 bytes of
key+value payload (116 bytes a record), the same for every method.

Measured (each --repeat times, interleaved and rotated so drift hits every method alike;
best and median reported):

  embedlog append   build_batch(1000 records) + Partition.append(sync=False) for every
                    batch into a fresh log; the fdatasync that follows is timed apart.
  baseline (a) wr   Python loop: struct header (key len, value len), key, value -> one
                    open(..., "wb", buffering=1 MiB) file; flush included, fdatasync apart.
  baseline (b) wr   the same bytes, joined beforehand (not timed), os.write in 1 MiB chunks.
  embedlog read     read_columns(offset, max_bytes=1 MiB) in a loop, zip(offsets, keys,
                    values) into one list of tuples.
  embedlog read()   Partition.read() in the same loop: a list of Record namedtuples.
  baseline (a) rd   open(..., "rb", buffering=1 MiB), per record read(8) + unpack +
                    read(klen) + read(vlen) -> list of (offset, key, value) tuples.
  baseline (a') rd  informational: one f.read(), then unpack_from + 2 slices per record.
  baseline (b) rd   one f.read() of the whole file (bytes only, no parsing).

Every read result is checked against the written records (count, order, bytes), outside
the timed region. Reads are served from the page cache (all files were just written).
Ratios are of rates measured in this same run; a shared, noisy machine makes absolute
numbers meaningless from one run to the next.

The breakdown (skip it with --no-breakdown) times the sub-steps of append and read to show where the time
goes; it calls a few private embedlog functions (read-only diagnostics).
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import operator
import os
import shutil
import struct
import sys
import tempfile
import time
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import embedlog  # noqa: E402
from embedlog.storage import _hotpath as hp  # noqa: E402
from embedlog.storage._records import (HEADER_SIZE, MAX_RECORD_OVERHEAD, Columns, Record,  # noqa: E402
                               decode_columns, finish_batch)
from embedlog.storage._records import now_ms as _now_ms  # noqa: E402

from _benchutil import (MB, MiB, Runs, eprint, fmt_rate, gen_records, machine_info,  # noqa: E402
                        machine_line, timed)

HDR = struct.Struct("<ii")           # baseline record header: key length, value length
TARGETS = {"append_vs_a": 1.5, "append_vs_b": 0.40, "read_vs_a": 2.0}


# ================================================================== write side

def el_append(path, keys, values, batch):
    """(append seconds, fsync seconds) for build_batch + append of every batch into a new log."""
    shutil.rmtree(path, ignore_errors=True)
    log = embedlog.open(path)
    log.create_topic("t", partitions=1)
    p = log.partition("t", 0)
    build, append = embedlog.build_batch, p.append
    n = len(values)
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        append(build(values[i:i + batch], keys=keys[i:i + batch]), sync=False)
    t1 = time.perf_counter()
    p.flush()                                   # one fdatasync of everything
    t2 = time.perf_counter()
    assert p.log_end_offset == n, (p.log_end_offset, n)
    log.close()
    return t1 - t0, t2 - t1


def base_a_write(path, keys, values):
    gc.collect()
    t0 = time.perf_counter()
    with open(path, "wb", buffering=MiB) as f:
        w, pack = f.write, HDR.pack
        for k, v in zip(keys, values):
            w(pack(len(k), len(v)))
            w(k)
            w(v)
        f.flush()
        t1 = time.perf_counter()
        os.fdatasync(f.fileno())
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def base_b_write(path, blob):
    mv = memoryview(blob)
    total = len(blob)
    gc.collect()
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write = os.write
        off = 0
        while off < total:
            off += write(fd, mv[off:off + MiB])
        t1 = time.perf_counter()
        os.fdatasync(fd)
        t2 = time.perf_counter()
    finally:
        os.close(fd)
    return t1 - t0, t2 - t1


# ================================================================== read side

def el_read_columns(p, n, max_bytes):
    out = []
    off = 0
    read_columns = p.read_columns
    while off < n:
        c = read_columns(off, max_bytes=max_bytes)
        if not c.offsets:
            raise RuntimeError(f"read_columns({off}) returned nothing before offset {n}")
        out += zip(c.offsets, c.keys, c.values)
        off = c.offsets[-1] + 1
    return out


def el_read_records(p, n, max_bytes):
    out = []
    off = 0
    read = p.read
    while off < n:
        recs = read(off, max_bytes=max_bytes)
        if not recs:
            raise RuntimeError(f"read({off}) returned nothing before offset {n}")
        out += recs
        off = recs[-1].offset + 1
    return out


def base_a_read(path):
    out = []
    append = out.append
    unpack = HDR.unpack
    o = 0
    with open(path, "rb", buffering=MiB) as f:
        read = f.read
        while True:
            h = read(8)
            if not h:
                break
            kl, vl = unpack(h)
            append((o, read(kl), read(vl)))
            o += 1
    return out


def base_a_read_slices(path):
    """Informational variant of (a): one read of the whole file, then a loop of
    unpack_from + two slices per record. Slower than the buffered reader on CPython 3.11."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    append = out.append
    unpack_from = HDR.unpack_from
    pos, o, end = 0, 0, len(data)
    while pos < end:
        kl, vl = unpack_from(data, pos)
        k0 = pos + 8
        v0 = k0 + kl
        pos = v0 + vl
        append((o, data[k0:v0], data[v0:pos]))
        o += 1
    return out


def base_b_read(path):
    with open(path, "rb") as f:
        return f.read()


def check_tuples(out, keys, values, what):
    n = len(keys)
    if len(out) != n:
        raise AssertionError(f"{what}: read {len(out)} records, wrote {n}")
    if list(map(operator.itemgetter(0), out)) != list(range(n)):
        raise AssertionError(f"{what}: offsets are not 0..{n - 1} in order")
    if list(map(operator.itemgetter(1), out)) != keys:
        raise AssertionError(f"{what}: keys differ from what was written")
    if list(map(operator.itemgetter(2), out)) != values:
        raise AssertionError(f"{what}: values differ from what was written")


# ================================================================== breakdown

_DENSE: dict[int, bytes] = {}
_FMT: dict[int, struct.Struct] = {}


def proto_build(values, keys, *, timestamp=None):
    """Bench-local prototype of build_batch for its common case (bytes keys and values,
    no timestamps/headers/compression): lengths through struct.pack instead of
    array("i", map(len, ...)), and the bytearray returned without the final bytes() copy.
    Same batch bytes as the library; only shows what pure-Python changes could save."""
    n = len(values)
    fmt = _FMT.get(n)
    if fmt is None:
        fmt = _FMT[n] = struct.Struct(f"={n}i")
    key_lens = fmt.pack(*map(len, keys))
    value_lens = fmt.pack(*map(len, values))
    key_blob = b"".join(keys)
    value_blob = b"".join(values)
    ts = _now_ms() if timestamp is None else timestamp
    cap = HEADER_SIZE + len(key_blob) + len(value_blob) + n * MAX_RECORD_OVERHEAD
    buf = bytearray(cap)
    cbuf = hp.from_buffer(buf)
    written = hp.lib.el_encode_records(
        cbuf + HEADER_SIZE, cap - HEADER_SIZE, key_blob, hp.ffi.from_buffer("int32_t[]", key_lens),
        value_blob, hp.ffi.from_buffer("int32_t[]", value_lens), hp.NULL, ts, hp.NULL, hp.NULL, n)
    total = HEADER_SIZE + written
    finish_batch(cbuf, total, base_offset=0, partition_leader_epoch=-1, attributes=0,
                 last_offset_delta=n - 1, base_timestamp=ts, max_timestamp=ts, producer_id=-1,
                 producer_epoch=-1, base_sequence=-1, records_count=n)
    del cbuf
    del buf[total:]
    return buf


def proto_decode(buf, pos, h):
    """Bench-local prototype of decode_columns for the common case (uncompressed, dense
    offsets, equal timestamps, no nulls, no headers), falling back to the library
    otherwise. Same output; it only shows what pure-Python changes could save."""
    n = h.records_count
    if h.compression or h.log_append_time:
        return decode_columns(buf, pos, h)
    ts = hp.new("int64_t[]", n)
    ints = hp.new("int32_t[]", 7 * n)
    start = pos + HEADER_SIZE
    # < 0 is an error code; >= 0 success (0, or a property bitmask in newer builds)
    if hp.lib.el_parse_records(hp.from_buffer(buf) + start, h.size - HEADER_SIZE, n, start, ts, ints,
                               ints + n, ints + 2 * n, ints + 3 * n, ints + 4 * n, ints + 5 * n,
                               ints + 6 * n) < 0:
        return decode_columns(buf, pos, h)          # let the library raise its error
    raw = hp.ffi.buffer(ints)
    dense = _DENSE.get(n)
    if dense is None:
        dense = _DENSE[n] = array("i", range(n)).tobytes()
    zeros = bytes(8 * n)
    lens = raw[4 * n:5 * n] + raw[12 * n:13 * n]    # key and value lengths
    if (raw[0:4 * n] != dense or hp.ffi.buffer(ts)[:] != zeros or raw[24 * n:28 * n] != zeros[:4 * n]
            or b"\xff\xff\xff\xff" in lens):          # conservative: any 0xffffffff pattern
        return decode_columns(buf, pos, h)
    iv = memoryview(raw).cast("i")
    ko, kl, vo, vl = (iv[k * n:(k + 1) * n].tolist() for k in range(1, 5))
    base = h.base_offset
    return Columns(list(range(base, base + n)), [h.base_timestamp] * n,
                   [buf[o:o + l] for o, l in zip(ko, kl)], [buf[o:o + l] for o, l in zip(vo, vl)],
                   [()] * n)


def _best(fn, repeat, *args, nogc=True):
    """Best of `repeat` runs. Sub-steps run with the cyclic GC off (nogc) and drop their
    output batch by batch: they measure the work, not the collector or fresh-page faults
    of a growing heap, which the whole loops of the main table do pay."""
    times = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        if nogc:
            gc.disable()
        try:
            t0 = time.perf_counter()
            result = fn(*args)
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return min(times), result


def breakdown(root, keys, values, batch, repeat, read_chunk, main):
    """Sub-steps of append and read, each best of `repeat`. Returns rows of
    (section, label, seconds)."""
    n = len(values)
    rows = []
    chunks = [(keys[i:i + batch], values[i:i + batch]) for i in range(0, n, batch)]

    # ---------------- append
    build = embedlog.build_batch

    def build_all(fn):
        for k, v in chunks:
            fn(v, keys=k)

    t_build, _ = _best(build_all, repeat, build)
    batches = [build(v, keys=k) for k, v in chunks]

    def join_lens():                      # what build_batch does in Python before the C call
        for k, v in chunks:
            array("i", map(len, k)), b"".join(k)
            array("i", map(len, v)), b"".join(v)

    t_join, _ = _best(join_lens, repeat)
    t_proto_build, _ = _best(build_all, repeat, proto_build)
    for k, v in chunks[:50]:
        if bytes(proto_build(v, k, timestamp=1234)) != build(v, keys=k, timestamp=1234):
            raise AssertionError("prototype build differs from build_batch")
    bas = [bytearray(b) for b in batches]
    t_tobytes, _ = _best(lambda: [bytes(x) and None for x in bas], repeat)  # build_batch's last copy
    del bas

    def append_all():
        path = os.path.join(root, "bd-append")
        shutil.rmtree(path, ignore_errors=True)
        log = embedlog.open(path)
        log.create_topic("t", partitions=1)
        p = log.partition("t", 0)
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        for b in batches:
            p.append(b)
        t = time.perf_counter() - t0
        gc.enable()
        p.flush()
        log.close()
        return t

    t_append = min(append_all() for _ in range(repeat))
    parse_header = embedlog.parse_header
    t_verify, _ = _best(lambda: [parse_header(b) and None for b in batches], repeat)
    t_crc, _ = _best(lambda: [hp.crc32c(b) and None for b in batches], repeat)
    t_copy, _ = _best(lambda: [bytearray(b) and None for b in batches], repeat)

    def pwrite_all():
        path = os.path.join(root, "bd-pwrite.bin")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            pos = 0
            for b in batches:
                pos += os.pwrite(fd, b, pos)
            t = time.perf_counter() - t0
            gc.enable()
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return t

    t_pwrite = min(pwrite_all() for _ in range(repeat))
    shutil.rmtree(os.path.join(root, "bd-append"), ignore_errors=True)
    os.unlink(os.path.join(root, "bd-pwrite.bin"))

    A = "append"
    rows += [
        (A, "build_batch + append (main table, best)", main["append"]),
        (A, "build_batch only (1000 batches)", t_build),
        (A, "  of which: join keys/values + int32 lengths (Python)", t_join),
        (A, "  of which: final bytes(bytearray) copy of the batch", t_tobytes),
        (A, "  prototype build: struct.pack lengths, no final copy (same bytes)", t_proto_build),
        (A, "append only (pre-built batches)", t_append),
        (A, "  of which: parse_header with CRC verify", t_verify),
        (A, "  of which: bytearray(batch) copy to stamp offsets", t_copy),
        (A, "  of which: os.pwrite of the batches (syscall floor)", t_pwrite),
        (A, "CRC-32C of all batch bytes once (build computes it, append re-verifies)", t_crc),
    ]
    del batches

    # ---------------- read
    # Sub-steps discard their output batch by batch, so they measure the work itself; the
    # accumulating loops (main table) also pay the cyclic GC, shown by the gc.disable() rows.
    log = embedlog.open(os.path.join(root, "embedlog"))
    p = log.partition("t", 0)
    seg_path = os.path.join(root, "embedlog", "t-0", f"{0:020d}.log")
    seg_size = os.path.getsize(seg_path)

    def pread_all():
        fd = os.open(seg_path, os.O_RDONLY)
        try:
            pos = 0
            while pos < seg_size:
                pos += len(os.pread(fd, read_chunk, pos))
        finally:
            os.close(fd)

    t_pread, _ = _best(pread_all, repeat)

    def read_batches_all(keep):      # pread + header walk + CRC of every batch (private API)
        items = []
        off = 0
        while off < n:
            got = p._read_batches(off, read_chunk)
            if keep:
                items += got
            off = got[-1][2].next_offset
        return items

    t_rb, _ = _best(read_batches_all, repeat, False)
    items = read_batches_all(True)

    def decode_all(fn):
        for buf, pos, h, _p, _f in items:
            fn(buf, pos, h)

    t_decode, _ = _best(decode_all, repeat, decode_columns)
    t_proto, _ = _best(decode_all, repeat, proto_decode)
    for buf, pos, h, _p, _f in items:
        if proto_decode(buf, pos, h) != decode_columns(buf, pos, h):
            raise AssertionError("prototype decoder disagrees with decode_columns")

    # The key/value slicing inside decode_columns, alone, and an alternative spelling of it.
    spans = []
    for buf, pos, h, _p, _f in items:
        m = h.records_count
        ts = hp.new("int64_t[]", m)
        ints = hp.new("int32_t[]", 7 * m)
        rc = hp.lib.el_parse_records(hp.from_buffer(buf) + pos + HEADER_SIZE, h.size - HEADER_SIZE, m,
                                     pos + HEADER_SIZE, ts, ints, ints + m, ints + 2 * m, ints + 3 * m,
                                     ints + 4 * m, ints + 5 * m, ints + 6 * m)
        assert rc >= 0, rc
        iv = memoryview(hp.ffi.buffer(ints)).cast("i")
        ko, kl, vo, vl = (iv[k * m:(k + 1) * m].tolist() for k in range(1, 5))
        spans.append((buf, ko, kl, vo, vl))

    def parse_only():
        for buf, pos, h, _p, _f in items:
            m = h.records_count
            ts = hp.new("int64_t[]", m)
            ints = hp.new("int32_t[]", 7 * m)
            hp.lib.el_parse_records(hp.from_buffer(buf) + pos + HEADER_SIZE, h.size - HEADER_SIZE, m,
                                    pos + HEADER_SIZE, ts, ints, ints + m, ints + 2 * m, ints + 3 * m,
                                    ints + 4 * m, ints + 5 * m, ints + 6 * m)

    t_parse, _ = _best(parse_only, repeat)

    def slice_listcomp():
        for data, ko, kl, vo, vl in spans:
            [data[o:o + l] for o, l in zip(ko, kl)]
            [data[o:o + l] for o, l in zip(vo, vl)]

    t_slice, _ = _best(slice_listcomp, repeat)
    del spans, items

    def read_columns_only():
        off = 0
        while off < n:
            c = p.read_columns(off, max_bytes=read_chunk)
            off = c.offsets[-1] + 1

    t_rc, _ = _best(read_columns_only, repeat)
    cols = []
    off = 0
    while off < n:
        c = p.read_columns(off, max_bytes=read_chunk)
        cols.append(c)
        off = c.offsets[-1] + 1

    def zip_all():
        out = []
        for c in cols:
            out += zip(c.offsets, c.keys, c.values)
        return out

    t_zip, _ = _best(zip_all, repeat)

    def records_all(make):
        for c in cols:
            make(c)

    t_rec, _ = _best(records_all, repeat, lambda c: list(map(Record, *c)))
    fast = functools.partial(tuple.__new__, Record)
    t_rec_fast, _ = _best(records_all, repeat, lambda c: list(map(fast, zip(*c))))
    assert list(map(fast, zip(*cols[0]))) == list(map(Record, *cols[0]))
    assert type(list(map(fast, zip(*cols[0])))[0]) is Record
    del cols

    t_read_nogc, _ = _best(el_read_columns, repeat, p, n, read_chunk)
    t_records_nogc, _ = _best(el_read_records, repeat, p, n, read_chunk)
    t_a_nogc, _ = _best(base_a_read, repeat, os.path.join(root, "baseline_a.bin"))
    log.close()

    R = "read"
    rows += [
        (R, "read_columns loop + zip into tuples (main table, best)", main["read"]),
        (R, "  same with gc.disable()", t_read_nogc),
        (R, "read_columns loop, columns dropped per call", t_rc),
        (R, "  os.pread of the segment in read-chunk pieces (syscall floor)", t_pread),
        (R, "  _read_batches: pread + header walk + CRC verify", t_rb),
        (R, "  decode_columns of every batch (in memory)", t_decode),
        (R, "    of which: el_parse_records (C) + cffi arrays", t_parse),
        (R, "    of which: key+value slicing list comprehensions", t_slice),
        (R, "    prototype fast-path decode, same output (bench-local)", t_proto),
        (R, "zip(offsets, keys, values) of all columns into one list", t_zip),
        (R, "read() loop -> Records (main table, best)", main["read_records"]),
        (R, "  same with gc.disable()", t_records_nogc),
        (R, "  list(map(Record, *cols)) per batch, dropped", t_rec),
        (R, "  alternative: map(partial(tuple.__new__, Record), zip(*cols))", t_rec_fast),
        (R, "baseline (a) read (main table, best)", main["a_read"]),
        (R, "  same with gc.disable()", t_a_nogc),
    ]
    return rows


# ================================================================== main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000, help="records per batch (default 1000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    ap.add_argument("--read-chunk", type=int, default=MiB, help="max_bytes per read call (default 1 MiB)")
    ap.add_argument("--dir", default=None, help="parent of the temporary data directory (default: "
                    "the system temp dir, /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                    help="skip the sub-step timings")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    args = ap.parse_args(argv)
    n, batch, repeat = args.records, args.batch, args.repeat
    if n < batch or n % batch:
        ap.error("--records must be a positive multiple of --batch")

    parent = args.dir or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix="embedlog-bench-", dir=parent)
    info = machine_info(root)
    log = (lambda *a: None) if not args.json else eprint
    out = eprint if args.json else print
    out(f"machine: {machine_line(info)}")
    t_start = time.perf_counter()
    try:
        keys, values = gen_records(n, seed=42)
        payload = sum(map(len, keys)) + sum(map(len, values))
        blob = b"".join(HDR.pack(len(k), len(v)) + k + v for k, v in zip(keys, values))
        out(f"records: {n:,} x (16 B key + 100 B value) = {payload / MB:.1f} MB payload, "
            f"batches of {batch}, {repeat} runs each, read chunk {args.read_chunk} B")

        el_dir = os.path.join(root, "embedlog")
        a_path = os.path.join(root, "baseline_a.bin")
        b_path = os.path.join(root, "baseline_b.bin")

        runs = {k: Runs(k, n, payload) for k in
                ("append", "a_write", "b_write", "read", "read_records", "a_read", "a2_read",
                 "b_read")}
        fsync = {k: Runs(k) for k in ("append", "a_write", "b_write")}

        writers = [
            ("append", lambda: el_append(el_dir, keys, values, batch)),
            ("a_write", lambda: base_a_write(a_path, keys, values)),
            ("b_write", lambda: base_b_write(b_path, blob)),
        ]
        for rep in range(repeat):
            k = rep % len(writers)
            order = writers[k:] + writers[:k]
            for name, fn in order:
                t, f = fn()
                runs[name].add(t)
                fsync[name].add(f)
                log(f"  run {rep + 1} {name}: {t:.3f}s (+fsync {f:.3f}s)")

        # the files of the last runs are the ones read back; check the baseline file once
        if os.path.getsize(a_path) != len(blob) or base_b_read(a_path) != blob:
            raise AssertionError("baseline (a) file differs from the joined bytes of baseline (b)")
        el_bytes = os.path.getsize(os.path.join(el_dir, "t-0", f"{0:020d}.log"))

        rlog = embedlog.open(el_dir)
        p = rlog.partition("t", 0)
        if p.log_end_offset != n:
            raise AssertionError(f"log end offset {p.log_end_offset}, expected {n}")
        readers = [
            ("read", lambda: el_read_columns(p, n, args.read_chunk)),
            ("read_records", lambda: el_read_records(p, n, args.read_chunk)),
            ("a_read", lambda: base_a_read(a_path)),
            ("a2_read", lambda: base_a_read_slices(a_path)),
            ("b_read", lambda: base_b_read(b_path)),
        ]
        for rep in range(repeat):
            k = rep % len(readers)
            order = readers[k:] + readers[:k]
            for name, fn in order:
                t, result = timed(fn)
                runs[name].add(t)
                log(f"  run {rep + 1} {name}: {t:.3f}s")
                if name == "b_read":
                    if result != blob:
                        raise AssertionError("baseline (b) read back different bytes")
                elif name == "read_records":
                    if type(result[0]) is not Record:
                        raise AssertionError("read() did not return Record namedtuples")
                    check_tuples(list(map(operator.attrgetter("offset", "key", "value"), result)),
                                 keys, values, name)
                else:
                    check_tuples(result, keys, values, name)
                del result
        rlog.close()

        rows = None
        if args.breakdown:
            rows = breakdown(root, keys, values, batch, repeat, args.read_chunk,
                             {k: runs[k].best for k in ("append", "read", "read_records", "a_read")})

        ratios = {}
        for which in ("best", "median"):
            r = {k: v.rate(which) for k, v in runs.items()}
            ratios[which] = {
                "append_vs_a": r["append"] / r["a_write"],
                "append_vs_b": r["append"] / r["b_write"],
                "read_vs_a": r["read"] / r["a_read"],
                "read_records_vs_a": r["read_records"] / r["a_read"],
                "read_vs_a_slices": r["read"] / r["a2_read"],
                "read_vs_b": r["read"] / r["b_read"],
            }
        elapsed = time.perf_counter() - t_start
        info["loadavg_end"] = os.getloadavg()

        if args.json:
            doc = {
                "benchmark": "bench_storage",
                "machine": info,
                "params": {"records": n, "batch": batch, "repeat": repeat, "key_bytes": 16,
                           "value_bytes": 100, "seed": 42, "payload_bytes": payload,
                           "read_chunk": args.read_chunk, "embedlog_segment_bytes": el_bytes,
                           "baseline_file_bytes": len(blob)},
                "results": {k: v.as_dict() for k, v in runs.items()},
                "fsync_s": {k: v.as_dict() for k, v in fsync.items()},
                "ratios": ratios,
                "targets": {k: {"target": t, "met_best": ratios["best"][k] >= t,
                                "met_median": ratios["median"][k] >= t} for k, t in TARGETS.items()},
                "breakdown": None if rows is None else [
                    {"section": s, "step": lbl.strip(), "best_s": t, "ns_per_record": t / n * 1e9}
                    for s, lbl, t in rows],
                "elapsed_s": elapsed,
            }
            print(json.dumps(doc, indent=1))
        else:
            print_tables(runs, fsync, ratios, rows, n, payload, el_bytes, len(blob), elapsed, info)
    finally:
        if args.keep:
            out(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


LABELS = {
    "append": "embedlog append (build_batch+append, no fsync)",
    "a_write": "baseline (a) write: Python loop, buffered file",
    "b_write": "baseline (b) write: pre-joined, os.write 1 MiB",
    "read": "embedlog read: read_columns + zip -> tuples",
    "read_records": "embedlog read(): Record namedtuples",
    "a_read": "baseline (a) read: buffered, parse -> tuples",
    "a2_read": "baseline (a') read: f.read() + unpack_from/slices",
    "b_read": "baseline (b) read: one f.read() (no parsing)",
}


def print_tables(runs, fsync, ratios, rows, n, payload, el_bytes, blob_bytes, elapsed, info):
    print(f"on disk: embedlog segment {el_bytes / MB:.1f} MB, baseline file {blob_bytes / MB:.1f} MB")
    print()
    w = max(map(len, LABELS.values()))
    print(f"{'measurement':<{w}}  {'best rec/s':>11} {'best MB/s':>9}  {'median rec/s':>12} "
          f"{'median MB/s':>11}  {'fsync after (median)':>20}")
    print("-" * (w + 72))
    for k, label in LABELS.items():
        r = runs[k]
        fs = f"{fsync[k].median * 1000:.1f} ms" if k in fsync else ""
        print(f"{label:<{w}}  {fmt_rate(r.rate('best')):>11} {r.mbps('best'):>9.1f}  "
              f"{fmt_rate(r.rate('median')):>12} {r.mbps('median'):>11.1f}  {fs:>20}")
    print()
    print(f"{'ratio (same run)':<30} {'best':>7} {'median':>7}  {'target':>8}  verdict (best / median)")
    print("-" * 80)
    names = [("append_vs_a", "append / (a) write"), ("append_vs_b", "append / (b) write"),
             ("read_vs_a", "read / (a) read"), ("read_records_vs_a", "read() / (a) read"),
             ("read_vs_a_slices", "read / (a') read"),
             ("read_vs_b", "read / (b) read")]
    for key, label in names:
        b, m = ratios["best"][key], ratios["median"][key]
        t = TARGETS.get(key)
        if t is None:
            print(f"{label:<30} {b:>6.2f}x {m:>6.2f}x  {'-':>8}  (informational)")
        else:
            verdict = f"{'met' if b >= t else 'MISSED'} / {'met' if m >= t else 'MISSED'}"
            print(f"{label:<30} {b:>6.2f}x {m:>6.2f}x  {'>= ' + format(t, 'g') + 'x':>8}  {verdict}")
    if rows:
        print()
        print("where the time goes (best of the runs; sub-steps with GC off, output dropped per batch)")
        lw = max(len(lbl) for _s, lbl, _t in rows)
        section = None
        for s, lbl, t in rows:
            if s != section:
                print(f"-- {s}")
                section = s
            print(f"   {lbl:<{lw}}  {t * 1000:8.1f} ms  {t / n * 1e9:7.0f} ns/rec")
    load = info.get("loadavg_end")
    print()
    print(f"total time {elapsed:.0f} s; load average at end {load[0]:.2f}" if load else
          f"total time {elapsed:.0f} s")


if __name__ == "__main__":
    main()
