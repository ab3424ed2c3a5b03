"""Compaction throughput (issue #6): MB/s of input the cleaner gets through on a ~1 GB
partition where 10% of the keys are unique, beside the raw copy rate of the same bytes
in the same run.

    python bench/bench_compaction.py [--size-mb 1000] [--unique 0.1] [--segment-mb 100]
                                     [--value-size 100] [--repeat 2] [--dir DIR] [--json]

Each repeat builds the partition afresh (not timed): records with 16-byte keys drawn
from N = unique x records distinct keys (uniformly, so almost every key recurs) and
`--value-size`-byte values, in batches of 1000, no compression. The segments are
`--segment-mb` large, so all but the active one are cleanable. Timed:

* cleaner: `Partition.compact()` (build the key map over the dirty range, rewrite the
  segments, build indexes, fdatasync, swap): input MB = the closed segments' bytes;
* raw copy (pread/pwrite): the same closed segment files copied with 8 MiB preads and
  writes plus fdatasync, the I/O the cleaner's copy does without any parsing;
* raw copy (copy_file_range): the kernel's copy of the same files (shutil.copyfile),
  the floor.

Before each timed step the page cache's dirty pages are written out (`os.sync()`, not
timed): otherwise whichever step runs first after the build waits in its fdatasync for
the build's writeback, and the ratio swings 8x with the order of the steps.

Checked after each cleaning: the log replays to exactly the last value of every key.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchutil import MB, MiB, eprint, machine_info, machine_line  # noqa: E402

import embedlog  # noqa: E402

T0 = 1_700_000_000_000


def build(path, size_mb, unique, segment_mb, value_size, seed):
    rng = random.Random(seed)
    log = embedlog.Log(path, retention_check_interval_ms=0)
    t = log.create_topic("t", 1, {"cleanup.policy": "compact", "segment.bytes": segment_mb * MB,
                                  "retention.ms": -1, "min.cleanable.dirty.ratio": 0.0})
    part = t.partition(0)
    per = 16 + value_size + 12                      # payload + a record's overhead, roughly
    n = int(size_mb * MB / per)
    nkeys = max(1, int(n * unique))
    keys = [b"%016d" % i for i in range(nkeys)]
    latest = {}
    written = 0
    value = bytes(rng.getrandbits(8) for _ in range(value_size))
    while written < n:
        k = min(1000, n - written)
        ks = [keys[rng.randrange(nkeys)] for _ in range(k)]
        vs = [b"%012d" % (written + j) + value[12:] for j in range(k)]
        part.append_records(vs, ks, timestamps=[T0] * k)
        for j, key in enumerate(ks):
            latest[key] = written + j
        written += k
    part.flush()
    return log, part, latest, n, nkeys


def closed_segments(part):
    logs = sorted(f for f in os.listdir(part.path) if f.endswith(".log"))
    return [os.path.join(part.path, f) for f in logs[:-1]]


def copy_pread(paths, dst_dir):
    for p in paths:
        src = os.open(p, os.O_RDONLY)
        dst = os.open(os.path.join(dst_dir, os.path.basename(p)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pos = 0
            while True:
                buf = os.pread(src, 8 * MiB, pos)
                if not buf:
                    break
                os.pwrite(dst, buf, pos)
                pos += len(buf)
            os.fdatasync(dst)
        finally:
            os.close(src)
            os.close(dst)


def copy_kernel(paths, dst_dir):
    for p in paths:
        out = os.path.join(dst_dir, os.path.basename(p))
        shutil.copyfile(p, out)
        fd = os.open(out, os.O_WRONLY)
        os.fdatasync(fd)
        os.close(fd)


def check(part, latest):
    seen = {}
    off = part.log_start_offset
    end = part.log_end_offset
    while off < end:
        cols, off = part.fetch(off, 16 * MiB)
        for o, k in zip(cols.offsets, cols.keys):
            seen[k] = o
    assert seen == latest, "compacted log does not replay to the latest value of every key"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=1000)
    ap.add_argument("--unique", type=float, default=0.1, help="distinct keys / records (default 0.1)")
    ap.add_argument("--segment-mb", type=int, default=100)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    parent = args.dir or tempfile.gettempdir()
    root = tempfile.mkdtemp(prefix="embedlog-bench-compact-", dir=parent)
    info = machine_info(root)
    out = eprint if args.json else print
    out(f"machine: {machine_line(info)}")
    runs = {"cleaner": [], "copy_pread": [], "copy_kernel": []}
    stats = None
    try:
        for r in range(args.repeat):
            path = os.path.join(root, f"log{r}")
            log, part, latest, n, nkeys = build(path, args.size_mb, args.unique, args.segment_mb,
                                                args.value_size, seed=r)
            paths = closed_segments(part)
            input_bytes = sum(os.path.getsize(p) for p in paths)
            order = ["copy_pread", "copy_kernel", "cleaner"] if r % 2 == 0 else ["cleaner", "copy_kernel", "copy_pread"]
            for what in order:
                # Untimed: the build's (and the previous step's) dirty pages reach the disk
                # first, so no step's fdatasync waits for another's writeback.
                os.sync()
                if what == "cleaner":
                    t = time.perf_counter()
                    stats = part.compact(T0 + 1)
                    runs["cleaner"].append(time.perf_counter() - t)
                    assert stats["bytes_in"] == input_bytes, (stats["bytes_in"], input_bytes)
                else:
                    dst = os.path.join(root, f"copy{r}-{what}")
                    os.makedirs(dst)
                    fn = copy_pread if what == "copy_pread" else copy_kernel
                    t = time.perf_counter()
                    fn(paths, dst)
                    runs[what].append(time.perf_counter() - t)
                    shutil.rmtree(dst)
            check(part, latest)
            out(f"run {r + 1}: {n:,} records, {nkeys:,} keys, {input_bytes / MB:.0f} MB cleaned -> "
                f"{stats['bytes_out'] / MB:.1f} MB; cleaner {runs['cleaner'][-1]:.2f} s, copy "
                f"{runs['copy_pread'][-1]:.2f} s, kernel copy {runs['copy_kernel'][-1]:.2f} s")
            log.close()
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    rates = {k: {"MB_per_s_best": input_bytes / min(v) / MB, "MB_per_s_median": input_bytes / statistics.median(v) / MB}
             for k, v in runs.items()}
    ratio = {k: rates["cleaner"]["MB_per_s_median"] / rates[k]["MB_per_s_median"] for k in ("copy_pread", "copy_kernel")}
    if args.json:
        print(json.dumps({"benchmark": "bench_compaction", "machine": info, "params": vars(args),
                          "input_bytes": input_bytes, "records": n, "keys": nkeys, "runs_s": runs,
                          "rates": rates, "cleaner_over_copy_median": ratio, "last_stats": stats}, indent=1))
        return
    print()
    print(f"{'':<28} {'best MB/s':>10} {'median MB/s':>12}")
    names = {"cleaner": "cleaner (Partition.compact)", "copy_pread": "raw copy, pread/pwrite",
             "copy_kernel": "raw copy, copy_file_range"}
    for k, v in rates.items():
        print(f"{names[k]:<28} {v['MB_per_s_best']:>10.1f} {v['MB_per_s_median']:>12.1f}")
    print(f"\ncleaner / raw copy (median): {ratio['copy_pread']:.3f} of pread/pwrite, "
          f"{ratio['copy_kernel']:.3f} of copy_file_range")


if __name__ == "__main__":
    main()
