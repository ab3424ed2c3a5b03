"""Producer memory growth (issue #18): one producer process at a fixed rate, sampled.

    python bench/rss_growth.py [--acks all|1] [--seconds 180] [--rate 150]
                               [--configs default,arena2,arena1,mmap,trim] [--parallel 1]
                               [--others 0] [--tracemalloc] [--dir DIR] [--json FILE]

Each configuration runs in a fresh log directory shaped like the concurrency load test's
(tests/reliability/test_concurrency_load.py): topic t with 4 partitions and a mirror
(replication factor 2, segment.bytes 16 KiB, retention.bytes 128 KiB, so segments roll and
retention deletes them every few seconds), compacted topic c (2 partitions, mirror). A
maintainer process runs Log.maintain() every 0.1 s (retention, compaction) and --others
extra producers (load-test style, not measured) may share the log. The measured producer
is a child process: idempotent when --acks all, values "p-{i}" keyed 1 in 50 to t, every
3rd record also keyed to c, produced in bursts of 20 at --rate records a second to t, a
delivery callback per record writing a JSON line (as load_workers.py does). Every second
it samples its own VmRSS and RssAnon (/proc/self/status), glibc's mallinfo2() (bytes in
use, free in arenas, arena and mmapped totals) and sys.getallocatedblocks() (and
tracemalloc's traced bytes with --tracemalloc); at the end malloc_info() per arena.

Configurations (glibc tunables given to the child only):
  default   nothing set
  arena2    MALLOC_ARENA_MAX=2
  arena1    MALLOC_ARENA_MAX=1
  mmap      MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=262144: glibc's default
            values, but fixed (setting either turns off the dynamic mmap threshold)
  trim      malloc_trim(0) every 5 s in the producer

Reported per configuration: values at 10 s and at the end, and the least-squares slope in
bytes per record produced (t and c records) over the samples after --warmup seconds, of
RssAnon, malloc in-use bytes (uordblks + hblkhd), malloc footprint (arena + hblkhd) and
Python's allocated blocks. A leak is a slope in the in-use bytes; allocator behaviour is a
footprint slope with flat in-use bytes, which a fix of the allocation pattern flattens.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.abspath(__file__)
CONFIGS = {
    "default": {},
    "arena2": {"MALLOC_ARENA_MAX": "2"},
    "arena1": {"MALLOC_ARENA_MAX": "1"},
    "mmap": {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "262144"},
    "trim": {"RSS_GROWTH_TRIM": "5"},
}


# ------------------------------------------------------------------ measurement (child side)

class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL(None)
try:
    _libc.mallinfo2.restype = _Mallinfo2
    HAVE_MALLINFO2 = True
except AttributeError:          # glibc < 2.33
    HAVE_MALLINFO2 = False


def mallinfo() -> dict:
    if not HAVE_MALLINFO2:
        return {}
    m = _libc.mallinfo2()
    return {"in_use": m.uordblks + m.hblkhd, "free": m.fordblks, "arena": m.arena, "mmapped": m.hblkhd,
            "footprint": m.arena + m.hblkhd}


def proc_status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
            elif k == "Threads":
                out[k] = int(v)
    return out


def arenas() -> list[dict]:
    """malloc_info(): per heap (arena) its system bytes and free bytes."""
    _libc.fopen.restype = ctypes.c_void_p
    _libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    _libc.fclose.argtypes = [ctypes.c_void_p]
    _libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    fd, path = tempfile.mkstemp(suffix=".xml")
    os.close(fd)
    try:
        fp = _libc.fopen(path.encode(), b"w")
        _libc.malloc_info(0, fp)
        _libc.fclose(fp)
        with open(path) as f:
            xml = f.read()
    finally:
        os.unlink(path)
    heaps = []
    for m in re.finditer(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        body = m.group(2)
        cur = re.search(r'<system type="current" size="(\d+)"', body)
        free = sum(int(s) for s in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', body))
        heaps.append({"nr": int(m.group(1)), "system": int(cur.group(1)) if cur else 0, "free": free})
    return heaps


def sample(t0, n, delivered) -> dict:
    s = {"t": round(time.monotonic() - t0, 2), "n": n, "delivered": delivered,
         "blocks": sys.getallocatedblocks(), **proc_status(), **mallinfo()}
    import tracemalloc
    if tracemalloc.is_tracing():
        s["traced"] = tracemalloc.get_traced_memory()[0]
    return s


def producer(log, out, acks, rate, seconds, name="p", measure=True):
    """The load test's producer loop (load_workers.producer), sampling itself each second."""
    if measure and os.environ.get("RSS_GROWTH_TRACEMALLOC"):
        import tracemalloc
        tracemalloc.start(1)
    from embedlog import Producer
    trim = float(os.environ.get("RSS_GROWTH_TRIM") or 0)
    fd = os.open(os.path.join(out, f"produce-{name}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    delivered = [0]

    def report(err, msg):
        delivered[0] += 1
        os.write(fd, (json.dumps({"t": msg.topic(), "v": msg.value().decode(), "ok": err is None,
                                  "p": msg.partition(), "o": msg.offset()}) + "\n").encode())

    conf = {"bootstrap.servers": f"file://{log}", "acks": acks, "linger.ms": 5,
            "log.retention.check.interval.ms": 0}
    if acks == "all":
        conf["enable.idempotence"] = True
    p = Producer(conf)
    start = time.monotonic()
    i = n = 0
    next_sample = next_trim = start
    stop = os.path.join(out, "stop")
    while (seconds and time.monotonic() - start < seconds) or (not seconds and not os.path.exists(stop)):
        for _ in range(20):
            p.produce("t", value=f"{name}-{i}".encode(), key=f"{name}-k{i % 50}".encode(), on_delivery=report)
            n += 1
            if i % 3 == 0:
                p.produce("c", value=f"{name}-c{i}".encode(), key=f"ck{i % 40}".encode(), on_delivery=report)
                n += 1
            i += 1
        p.poll(0)
        now = time.monotonic()
        if trim and now >= next_trim:
            _libc.malloc_trim(0)
            next_trim = now + trim
        if measure and now >= next_sample:
            print(json.dumps(sample(start, n, delivered[0])), flush=True)
            next_sample += 1.0
        ahead = i / float(rate) - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    p.flush()
    if measure:
        print(json.dumps({"final": sample(start, n, delivered[0]), "arenas": arenas()}), flush=True)
    p.close()


def maintainer(log, out):
    import embedlog
    stop = os.path.join(out, "stop")
    with embedlog.Log(log, create=False, retention_check_interval_ms=0) as lg:
        while not os.path.exists(stop):
            lg.maintain()
            time.sleep(0.1)


# ------------------------------------------------------------------ orchestration (parent side)

def make_log(log, mirror):
    import embedlog
    with embedlog.Log(log, retention_check_interval_ms=0) as lg:
        lg.add_replica(mirror)
        lg.create_topic("t", 4, {"segment.bytes": 16384, "retention.bytes": 131072, "retention.ms": -1,
                                 "min.insync.replicas": 1}, replication_factor=2)
        lg.create_topic("c", 2, {"segment.bytes": 8192, "cleanup.policy": "compact",
                                 "min.cleanable.dirty.ratio": 0.01, "min.insync.replicas": 1},
                        replication_factor=2)


def slope(xs, ys):
    n = len(xs)
    if n < 3:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")


METRICS = (("RssAnon", "RssAnon"), ("in_use", "malloc in use"), ("footprint", "malloc footprint"),
           ("blocks", "py blocks"))


def summarize(samples, warmup):
    late = [s for s in samples if s["t"] >= warmup]
    at10 = next((s for s in samples if s["t"] >= 10), samples[0])
    end = samples[-1]
    out = {"records": end["n"], "seconds": end["t"], "at10": at10, "end": end}
    for key, _label in METRICS:
        if key in end:
            out[f"slope_{key}"] = slope([s["n"] for s in late], [s[key] for s in late])
    return out


def run_config(name, env_extra, args, base):
    d = os.path.join(base, name)
    log, mirror, out = os.path.join(d, "log"), os.path.join(d, "mirror"), os.path.join(d, "out")
    os.makedirs(out)
    make_log(log, mirror)
    env = dict(os.environ, **env_extra)
    if args.tracemalloc:
        env["RSS_GROWTH_TRACEMALLOC"] = "1"
    for k in CONFIGS["mmap"].keys() | CONFIGS["arena1"].keys() | CONFIGS["trim"].keys():
        if k not in env_extra:
            env.pop(k, None)
    helpers = [subprocess.Popen([sys.executable, HERE, "_maintainer", log, out])]
    for k in range(args.others):
        helpers.append(subprocess.Popen([sys.executable, HERE, "_other", log, out, args.acks, str(args.rate),
                                         f"o{k}"], stdout=subprocess.DEVNULL))
    child = subprocess.Popen([sys.executable, HERE, "_producer", log, out, args.acks, str(args.rate),
                              str(args.seconds)], env=env, stdout=subprocess.PIPE, text=True)
    samples, final = [], None
    for line in child.stdout:
        obj = json.loads(line)
        if "final" in obj:
            final = obj
        else:
            samples.append(obj)
    rc = child.wait()
    open(os.path.join(out, "stop"), "w").close()
    for h in helpers:
        h.wait(timeout=120)
    if rc != 0 or not samples:
        raise SystemExit(f"{name}: producer exited {rc}")
    res = summarize(samples, args.warmup)
    res.update(name=name, env=env_extra, final=final, samples=samples)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acks", default="all", choices=("all", "1"))
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--rate", type=int, default=150, help="records a second to t (a third as many again to c)")
    ap.add_argument("--configs", default="default,arena2,arena1,mmap,trim")
    ap.add_argument("--parallel", type=int, default=1, help="configurations run at the same time")
    ap.add_argument("--others", type=int, default=0, help="extra (unmeasured) producers on the same log")
    ap.add_argument("--warmup", type=float, default=20, help="seconds left out of the slope")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", default=None, help="write every sample here")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(HERE))
    from _benchutil import machine_info, machine_line
    base = tempfile.mkdtemp(prefix="rss_growth-", dir=args.dir)
    print(machine_line(machine_info(base)))
    import embedlog
    print(f"embedlog imported from {os.path.dirname(embedlog.__file__)}")
    print(f"acks={args.acks} rate={args.rate}/s to t (+1/3 to c), {args.seconds:.0f} s per configuration, "
          f"{args.others} other producers, slope after {args.warmup:.0f} s")
    names = args.configs.split(",")
    results = {}
    try:
        pending = list(names)
        while pending:
            batch, pending = pending[:args.parallel], pending[args.parallel:]
            threads = []
            for name in batch:
                def go(name=name):
                    results[name] = run_config(name, CONFIGS[name], args, base)
                threads.append(threading.Thread(target=go))
                threads[-1].start()
            for th in threads:
                th.join()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'config':9} {'records':>8} | {'RssAnon MB 10s->end':>20} {'B/rec':>6} | {'in-use MB':>13} {'B/rec':>6}"
          f" | {'footprint MB':>13} {'B/rec':>6} | {'py blocks':>15} {'/krec':>6}")
    for name in names:
        r = results.get(name)
        if r is None:
            continue
        a, e = r["at10"], r["end"]
        mb = lambda s, k: s.get(k, 0) / 1e6      # noqa: E731
        print(f"{name:9} {r['records']:8d} | {mb(a, 'RssAnon'):9.1f} -> {mb(e, 'RssAnon'):6.1f} "
              f"{r['slope_RssAnon']:6.1f} | {mb(a, 'in_use'):5.1f} -> {mb(e, 'in_use'):5.1f} "
              f"{r.get('slope_in_use', float('nan')):6.1f} | {mb(a, 'footprint'):5.1f} -> {mb(e, 'footprint'):5.1f} "
              f"{r.get('slope_footprint', float('nan')):6.1f} | {a['blocks']:7d}->{e['blocks']:7d} "
              f"{r['slope_blocks'] * 1000:6.2f}")
        if r["final"]:
            big = sorted(r["final"]["arenas"], key=lambda h: -h["system"])[:4]
            print("          arenas (system/free MB): " +
                  ", ".join(f"#{h['nr']} {h['system'] / 1e6:.1f}/{h['free'] / 1e6:.1f}" for h in big))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_producer":
        log, out, acks, rate, seconds = sys.argv[2:7]
        producer(log, out, acks, int(rate), float(seconds))
    elif len(sys.argv) > 1 and sys.argv[1] == "_other":
        log, out, acks, rate, name = sys.argv[2:7]
        producer(log, out, acks, int(rate), 0, name=name, measure=False)
    elif len(sys.argv) > 1 and sys.argv[1] == "_maintainer":
        maintainer(sys.argv[2], sys.argv[3])
    else:
        main()
