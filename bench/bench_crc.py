#!/usr/bin/env python3
"""CRC-32C throughput (hardware and software paths) and recovery-scan speed of embedlog.

    python bench/bench_crc.py [--size-mib 64] [--recovery-mb 500] [--repeat 3]
                              [--segment-bytes N] [--dir DIR] [--no-cold] [--json]

CRC-32C: embedlog.storage._hotpath.crc32c (the hardware instruction when the CPU has it) and
crc32c_software (the table path) over one 64 MiB random buffer, and over the same bytes
as 4 KiB buffers in a Python loop (one cffi call per buffer, chained). Each rate is
the best / median of --repeat timings, each timing at least --min-time seconds long.
GB = 10^9 bytes. zlib.crc32 (a different polynomial) is printed only as a yardstick.

Recovery scan: a partition of ~--recovery-mb MB (1000-record batches of 16-byte keys
and 100-byte values) is written and closed; then, --repeat times, its shared state is
invalidated (first 8 bytes of partition.state zeroed, partition.checkpoint deleted) and
`embedlog.open(dir).partition("t", 0).log_end_offset` is timed: every batch's CRC is
checked and the indexes are rebuilt. "warm": segment pages in the page cache; "cold":
evicted first with posix_fadvise(DONTNEED) (best effort, the disk is a shared VM disk).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import embedlog  # noqa: E402
from embedlog.storage import _hotpath as hp  # noqa: E402

from _benchutil import MB, MiB, eprint, machine_info, machine_line  # noqa: E402

GB = 1e9
TARGET_HW_GBPS = 5.0


# ================================================================== CRC

def time_rate(fn, nbytes, repeat, min_time):
    """(best, median) GB/s of fn() processing nbytes, each timing >= min_time seconds."""
    fn()                                       # warm caches and branch predictors
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / 4 or loops >= 1 << 20:
            break
        loops *= 2
    loops = max(1, int(loops * min_time / max(dt, 1e-9)))
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        dt = time.perf_counter() - t0
        rates.append(nbytes * loops / dt / GB)
    return max(rates), statistics.median(rates), loops


def bench_crc(size, small, repeat, min_time):
    rng = random.Random(42)
    buf = rng.randbytes(size)
    pieces = [buf[i:i + small] for i in range(0, size, small)]
    crc, crc_sw = hp.crc32c, hp.crc32c_software

    # correctness first: known vector, both paths agree, chaining over pieces == whole
    if crc(b"123456789") != 0xE3069283 or crc_sw(b"123456789") != 0xE3069283:
        raise AssertionError("CRC-32C check value of '123456789' is wrong")
    whole = crc(buf)
    if crc_sw(buf) != whole:
        raise AssertionError("hardware and software CRC-32C disagree")

    def chained(f):
        def run():
            c = 0
            for x in pieces:
                c = f(x, c)
            return c
        return run

    if chained(crc)() != whole or chained(crc_sw)() != whole:
        raise AssertionError("chained CRC-32C over pieces differs from the whole-buffer CRC")

    rows = []
    hw = hp.crc32c_hardware()
    label_hw = "crc32c (hardware path)" if hw else "crc32c (no hw: dispatches to software)"
    for label, fn, nbytes in [
        (f"{label_hw}, {size // MiB} MiB buffer", lambda: crc(buf), size),
        (f"crc32c_software, {size // MiB} MiB buffer", lambda: crc_sw(buf), size),
        (f"{label_hw.split(' (')[0]} hw, {small // 1024} KiB buffers in a loop", chained(crc), size),
        (f"crc32c_software, {small // 1024} KiB buffers in a loop", chained(crc_sw), size),
        (f"zlib.crc32 (CRC-32, not -32C; yardstick), {size // MiB} MiB", lambda: zlib.crc32(buf), size),
    ]:
        best, med, loops = time_rate(fn, nbytes, repeat, min_time)
        rows.append({"name": label, "GB_per_s_best": best, "GB_per_s_median": med,
                     "bytes_per_timing": nbytes * loops})
    empty = b""
    n_calls = 200_000
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n_calls):
            crc(empty)
        times.append((time.perf_counter() - t0) / n_calls)
    call_ns = min(times) * 1e9
    return {"hardware": hw, "rows": rows, "call_overhead_ns": call_ns,
            "per_4k_call_ns_best": small / (rows[2]["GB_per_s_best"] * GB) * 1e9}


# ================================================================== recovery scan

def build_partition(path, target_bytes, segment_bytes):
    rng = random.Random(42)
    pool_batches = 64
    keys = [rng.randbytes(16) for _ in range(pool_batches * 1000)]
    values = [rng.randbytes(100) for _ in range(pool_batches * 1000)]
    log = embedlog.open(path)
    config = {} if segment_bytes is None else {"segment.bytes": segment_bytes}
    log.create_topic("t", partitions=1, config=config)
    p = log.partition("t", 0)
    written = batches = 0
    t0 = time.perf_counter()
    while written < target_bytes:
        i = (batches % pool_batches) * 1000
        b = embedlog.build_batch(values[i:i + 1000], keys=keys[i:i + 1000])
        p.append(b)
        written += len(b)
        batches += 1
    append_s = time.perf_counter() - t0
    leo = p.log_end_offset
    log.close()                       # fdatasync + clean checkpoint
    return {"batches": batches, "records": leo, "bytes": written, "append_s": append_s}


def segment_logs(pdir):
    return sorted(os.path.join(pdir, f) for f in os.listdir(pdir) if f.endswith(".log"))


def invalidate(pdir):
    with open(os.path.join(pdir, "partition.state"), "r+b") as f:
        f.write(b"\0" * 8)
    try:
        os.unlink(os.path.join(pdir, "partition.checkpoint"))
    except FileNotFoundError:
        pass


def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def index_mtimes(pdir):
    return {f: os.stat(os.path.join(pdir, f)).st_mtime_ns for f in os.listdir(pdir)
            if f.endswith(".index") or f.endswith(".timeindex")}


def time_open(path, expect):
    gc.collect()
    t0 = time.perf_counter()
    log = embedlog.open(path)
    leo = log.partition("t", 0).log_end_offset
    dt = time.perf_counter() - t0
    log.close()
    if leo != expect:
        raise AssertionError(f"log end offset {leo} after recovery, expected {expect}")
    return dt


def raw_floor(paths, chunk=MiB):
    """pread in 1 MiB pieces + crc32c of every byte: what the scan cannot beat."""
    t0 = time.perf_counter()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            pos = 0
            while True:
                b = os.pread(fd, chunk, pos)
                if not b:
                    break
                hp.crc32c(b)
                pos += len(b)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


def bench_recovery(root, target_mb, repeat, segment_bytes, cold):
    path = os.path.join(root, "recovery")
    info = build_partition(path, int(target_mb * MB), segment_bytes)
    pdir = os.path.join(path, "t-0")
    logs = segment_logs(pdir)
    size = sum(os.path.getsize(p) for p in logs)
    res = {"partition": info, "segments": len(logs), "segment_bytes_total": size}

    # reopen with valid state: no scan (the reference point)
    res["open_clean_s"] = [time_open(path, info["records"]) for _ in range(repeat)]

    modes = ["warm"] + (["cold"] if cold else [])
    for mode in modes:
        times = []
        for _ in range(repeat):
            invalidate(pdir)
            if mode == "cold":
                evict(logs)
            before = index_mtimes(pdir)
            time.sleep(0.01)          # let mtime granularity tell a rewrite apart
            times.append(time_open(path, info["records"]))
            after = index_mtimes(pdir)
            if not all(after[f] != before.get(f) for f in after):
                raise AssertionError("recovery did not rewrite the index files: was a scan run?")
        res[mode] = times
    # floor: pread + CRC of the same bytes, warm
    res["floor_warm_s"] = [raw_floor(logs) for _ in range(repeat)]
    return res


# ================================================================== main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=64, help="big CRC buffer (default 64 MiB)")
    ap.add_argument("--small", type=int, default=4096, help="small CRC buffer bytes (default 4096)")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per CRC timing (default 0.3)")
    ap.add_argument("--recovery-mb", type=float, default=500, help="partition size, MB (default 500)")
    ap.add_argument("--segment-bytes", type=int, default=None,
                    help="topic segment.bytes (default: embedlog's default, 1 GiB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="parent of the temporary data directory (default /tmp)")
    ap.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold-cache scans")
    ap.add_argument("--no-recovery", dest="recovery", action="store_false")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    parent = args.dir or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix="embedlog-bench-crc-", dir=parent)
    info = machine_info(root)
    out = eprint if args.json else print
    out(f"machine: {machine_line(info)}")
    t_start = time.perf_counter()
    try:
        crc = bench_crc(args.size_mib * MiB, args.small, args.repeat, args.min_time)
        rec = bench_recovery(root, args.recovery_mb, args.repeat, args.segment_bytes, args.cold) \
            if args.recovery else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    info["loadavg_end"] = os.getloadavg()

    hw_best = crc["rows"][0]["GB_per_s_best"]
    hw_med = crc["rows"][0]["GB_per_s_median"]
    if args.json:
        doc = {"benchmark": "bench_crc", "machine": info, "crc32c": crc,
               "target_hw_GB_per_s": TARGET_HW_GBPS,
               "target_met_best": bool(crc["hardware"] and hw_best >= TARGET_HW_GBPS),
               "target_met_median": bool(crc["hardware"] and hw_med >= TARGET_HW_GBPS),
               "recovery": None, "elapsed_s": elapsed}
        if rec:
            size, nb = rec["segment_bytes_total"], rec["partition"]["batches"]
            doc["recovery"] = dict(rec)
            for mode in ("warm", "cold", "floor_warm_s"):
                if mode in rec:
                    ts = rec[mode]
                    doc["recovery"][f"{mode}_summary"] = {
                        "best_s": min(ts), "median_s": statistics.median(ts),
                        "MB_per_s_best": size / min(ts) / MB,
                        "MB_per_s_median": size / statistics.median(ts) / MB,
                        "batches_per_s_best": nb / min(ts),
                        "batches_per_s_median": nb / statistics.median(ts)}
        print(json.dumps(doc, indent=1))
        return

    print()
    w = max(len(r["name"]) for r in crc["rows"])
    print(f"{'CRC-32C':<{w}}  {'best GB/s':>9}  {'median GB/s':>11}")
    print("-" * (w + 24))
    for r in crc["rows"]:
        print(f"{r['name']:<{w}}  {r['GB_per_s_best']:>9.2f}  {r['GB_per_s_median']:>11.2f}")
    print(f"cffi call overhead (empty buffer): {crc['call_overhead_ns']:.0f} ns/call; "
          f"4 KiB call, hardware: {crc['per_4k_call_ns_best']:.0f} ns/call")
    if crc["hardware"]:
        print(f"hardware path vs target >= {TARGET_HW_GBPS:g} GB/s: "
              f"{'met' if hw_best >= TARGET_HW_GBPS else 'MISSED'} (best {hw_best:.2f}) / "
              f"{'met' if hw_med >= TARGET_HW_GBPS else 'MISSED'} (median {hw_med:.2f}); "
              f"hardware / software = {hw_best / crc['rows'][1]['GB_per_s_best']:.1f}x")
    else:
        print("hardware CRC-32C is not available on this CPU: the target does not apply")
    if rec:
        part = rec["partition"]
        size, nb = rec["segment_bytes_total"], part["batches"]
        print()
        print(f"recovery scan: {size / MB:.1f} MB in {rec['segments']} segment(s), {nb:,} batches, "
              f"{part['records']:,} records")
        print(f"{'open + log_end_offset':<44} {'best s':>7} {'median s':>9} {'best MB/s':>10} "
              f"{'median MB/s':>11} {'best batches/s':>15}")
        print("-" * 101)
        ts = rec["open_clean_s"]
        print(f"{'clean state (no scan, reference)':<44} {min(ts):>7.4f} {statistics.median(ts):>9.4f} "
              f"{'-':>10} {'-':>11} {'-':>15}")
        rows = []
        rows.append(("invalid state -> full scan, warm cache", rec["warm"]))
        if "cold" in rec:
            rows.append(("invalid state -> full scan, cold (fadvise)", rec["cold"]))
        rows.append(("floor: pread 1 MiB + crc32c, warm", rec["floor_warm_s"]))
        for label, ts in rows:
            b, m = min(ts), statistics.median(ts)
            print(f"{label:<44} {b:>7.3f} {m:>9.3f} {size / b / MB:>10.0f} {size / m / MB:>11.0f} "
                  f"{nb / b:>15,.0f}")
        print(f"(writing the partition took {part['append_s']:.1f} s: "
              f"{part['bytes'] / part['append_s'] / MB:.0f} MB/s of batches, no fsync)")
    print()
    print(f"total time {elapsed:.0f} s; load average at end {info['loadavg_end'][0]:.2f}")


if __name__ == "__main__":
    main()
