"""Producer memory growth (issue #18): an idempotent acks=all producer with a mirror, a
compacted topic and a maintainer process (retention and compaction), as in the concurrency
load test, run in a real subprocess for a bounded time, sampling its own glibc malloc
counters (mallinfo2) every 0.25 s.

What grew in the soak was not a leak: bytes in use stayed flat while the mirror threads'
malloc arenas filled with free space. The mirror copies asked os.pread for a whole chunk
(1 MiB in copyfile, 8 MiB in common_prefix) and got a 16 KiB index back, or nothing at
the end of a file: glibc serves such a request with mmap and frees it whole, which raises
its dynamic mmap threshold to the chunk's size, and from then on the same requests came
out of the thread's arena, trimmed to the few bytes read, creeping up the heap. Reads now
ask for what the file holds (storage._io.read_chunks, _mirror_files.common_prefix).

The child starts with the threshold already raised to 8 MiB (one malloc/free of 8 MiB),
the state the soak reached after a minute or two, so the old reads go to the arenas from
the start. Checked over ~30 s and ~40,000 records:
(1) no read of 128 KiB or more comes back short (the pattern itself; the old code made
    hundreds);
(2) malloc bytes in use (uordblks + hblkhd) grow less than 16 B a record, as a
    least-squares slope over the ~90 samples after a warm-up, records produced on the x
    axis (a slow run gives fewer records, not a false failure): measured -0.3 to 2.4; a
    leak of 40 B a record is past the bound at any speed;
(3) the free bytes the arenas hold (fordblks) grow less than 8 MiB from the first sample
    (before any mirror copy) to the last: measured +2.6 MB (two thread arenas' first
    heaps), the old reads +16 to +18 MB (each mirror thread's arena grown by an 8 MiB
    read, then left free).
RssAnon is printed, not asserted (pymalloc takes 1 MiB arenas in steps): its slope was
1.0-2.5 B a record, 15-17 with the old reads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import embedlog

HERE = os.path.abspath(__file__)
RATE = 1000                  # records a second to t (a third as many again to c)
SECONDS, WARMUP = 30.0, 8.0
SHORT_READ_MIN = 128 * 1024  # glibc's default mmap threshold
LEAK_BOUND = 16.0            # bytes a record, in use
FREE_BOUND = 8 << 20         # bytes, free in the arenas, growth over the run


# ------------------------------------------------------------------ the child (a script)

def _mallinfo():
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def info():
        m = libc.mallinfo2()
        with open("/proc/self/status") as f:
            anon = next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))
        return m.uordblks + m.hblkhd, m.fordblks, anon
    return libc, info


def child_producer(log, rate, seconds):
    libc, info = _mallinfo()
    libc.free(libc.malloc(8 << 20))      # the dynamic mmap threshold at 8 MiB, as after a while
    real_pread, short = os.pread, []

    def pread(fd, n, pos):               # the allocation pattern: asked much, got little
        buf = real_pread(fd, n, pos)
        if n >= SHORT_READ_MIN and len(buf) < n and len(short) < 20:
            f = sys._getframe(1)
            short.append(f"{n} -> {len(buf)} at {os.path.basename(f.f_code.co_filename)}:{f.f_lineno}")
        return buf
    os.pread = pread

    from embedlog import Producer
    delivered = [0]

    def report(err, msg):
        delivered[0] += 1 if err is None else 0
        msg.value(), msg.offset()

    p = Producer({"bootstrap.servers": f"file://{log}", "enable.idempotence": True, "linger.ms": 5,
                  "log.retention.check.interval.ms": 0})
    start = time.monotonic()
    i = n = 0
    next_sample = start
    while time.monotonic() - start < seconds:
        for _ in range(20):
            p.produce("t", value=f"p-{i}".encode(), key=f"p-k{i % 50}".encode(), on_delivery=report)
            n += 1
            if i % 3 == 0:
                p.produce("c", value=f"p-c{i}".encode(), key=f"ck{i % 40}".encode(), on_delivery=report)
                n += 1
            i += 1
        p.poll(0)
        now = time.monotonic()
        if now >= next_sample:
            in_use, free, anon = info()
            print(json.dumps({"t": now - start, "n": n, "in_use": in_use, "free": free, "anon": anon}), flush=True)
            next_sample += 0.25
        ahead = i / float(rate) - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    p.flush()
    p.close()
    print(json.dumps({"done": n, "delivered": delivered[0], "short": short, "short_count": len(short)}), flush=True)


def child_maintainer(log, stop):
    with embedlog.Log(log, create=False, retention_check_interval_ms=0) as lg:
        while not os.path.exists(stop):
            lg.maintain()
            time.sleep(0.1)


# ------------------------------------------------------------------ the test

def _slope(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run_producer(tmp_path, seconds=SECONDS, rate=RATE):
    log, mirror, stop = str(tmp_path / "log"), str(tmp_path / "mirror"), str(tmp_path / "stop")
    with embedlog.Log(log, retention_check_interval_ms=0) as lg:
        lg.add_replica(mirror)
        lg.create_topic("t", 4, {"segment.bytes": 16384, "retention.bytes": 131072, "retention.ms": -1,
                                 "min.insync.replicas": 1}, replication_factor=2)
        lg.create_topic("c", 2, {"segment.bytes": 8192, "cleanup.policy": "compact",
                                 "min.cleanable.dirty.ratio": 0.01, "min.insync.replicas": 1},
                        replication_factor=2)
    maint = subprocess.Popen([sys.executable, HERE, "maintainer", log, stop])
    try:
        out = subprocess.run([sys.executable, HERE, "producer", log, str(rate), str(seconds)],
                             capture_output=True, text=True, timeout=seconds + 120)
    finally:
        open(stop, "w").close()
        maint.wait(timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    samples, end = [x for x in lines if "t" in x], lines[-1]
    assert end["delivered"] == end["done"], end
    return samples, end


def test_producer_memory_stays_flat_with_a_mirror(tmp_path):
    samples, end = run_producer(tmp_path)
    late = [s for s in samples if s["t"] >= WARMUP]
    assert len(late) >= 20, f"{len(late)} samples after the warm-up"
    xs = [s["n"] for s in late]
    in_use = _slope(xs, [s["in_use"] for s in late])
    anon = _slope(xs, [s["anon"] for s in late])
    first, last = samples[0], samples[-1]
    free = last["free"] - first["free"]
    print(f"\n{end['done']} records, {len(late)} samples after {WARMUP:.0f} s: malloc in use "
          f"{late[0]['in_use'] / 1e6:.1f} -> {last['in_use'] / 1e6:.1f} MB ({in_use:.2f} B/record), free in "
          f"arenas {first['free'] / 1e6:.1f} -> {last['free'] / 1e6:.1f} MB, RssAnon {anon:.2f} B/record, "
          f"{end['short_count']} short large reads")
    assert end["short_count"] == 0, f"reads of >= 128 KiB that came back short: {end['short']}"
    assert in_use < LEAK_BOUND, f"malloc bytes in use grow {in_use:.1f} B a record"
    assert free < FREE_BOUND, f"the malloc arenas' free space grew {free / 1e6:.1f} MB"


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "producer":
        child_producer(args[0], int(args[1]), float(args[2]))
    else:
        child_maintainer(*args)
