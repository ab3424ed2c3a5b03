"""acks=all throughput and latency with 0, 1 and 2 mirrors on the same disk, beside
acks=1, in one run (issue #7).

    python bench/bench_mirroring.py [--messages 200000] [--latency-messages 1000] [--size 100]
                                    [--rounds 2] [--dir DIR] [--json]

For each configuration a fresh log (and fresh mirror directories under the same parent,
so on the same disk) gets one topic with one partition and replication factor 1 + the
number of mirrors (min.insync.replicas = the same, so acks=all waits for every mirror):

* throughput: a Producer (`linger.ms` 5, `batch.size` default) produces `--messages`
  messages of `--size` bytes, then flush(); messages/s and MB/s;
* latency: `--latency-messages` messages, one at a time, produce() + flush() each;
  p50 / p99 of that call.

Rounds alternate the order of the configurations so drift hits all alike; the median of
the rounds is reported, with ratios to acks=1 without mirrors. Checked after each run:
every mirror's segment files are byte-identical to the primary's (acks=all rows).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchutil import MB, eprint, machine_info, machine_line  # noqa: E402

import embedlog  # noqa: E402

CONFIGS = [("acks=1, 0 mirrors", "1", 0), ("acks=1, 2 mirrors", "1", 2), ("acks=all, 0 mirrors", "all", 0),
           ("acks=all, 1 mirror", "all", 1), ("acks=all, 2 mirrors", "all", 2)]


def setup(root, name, mirrors):
    path = os.path.join(root, name.replace(" ", "").replace(",", "-").replace("=", ""))
    log = embedlog.Log(path, retention_check_interval_ms=0)
    for i in range(mirrors):
        log.add_replica(path + f"-mirror{i + 1}")
    log.create_topic("t", 1, {"min.insync.replicas": 1 + mirrors}, replication_factor=1 + mirrors)
    log.close()
    return path


def run_one(root, name, acks, mirrors, args):
    path = setup(root, name, mirrors)
    payload = os.urandom(args.size)
    p = embedlog.Producer({"bootstrap.servers": path, "acks": acks, "linger.ms": 5,
                           "log.retention.check.interval.ms": 0})
    t = time.perf_counter()
    for _ in range(args.messages):
        try:
            p.produce("t", payload)
        except BufferError:
            p.poll(0.01)
            p.produce("t", payload)
    p.flush()
    thr = time.perf_counter() - t
    q = embedlog.Producer({"bootstrap.servers": path, "acks": acks, "linger.ms": 0,
                           "log.retention.check.interval.ms": 0})
    lat = []
    errors = []
    for _ in range(args.latency_messages):
        t = time.perf_counter()
        q.produce("t", payload, on_delivery=lambda err, msg: err and errors.append(err))
        q.flush()
        lat.append(time.perf_counter() - t)
    assert not errors, errors[:3]
    del p, q
    if acks == "all":
        with embedlog.open(path) as log:
            part = log.partition("t", 0)
            assert part.log_end_offset == args.messages + args.latency_messages
            for m in log.replicas():
                mdir = os.path.join(m["path"], "t-0")
                for f in os.listdir(part.path):
                    if f.endswith(".log"):
                        assert filecmp.cmp(os.path.join(part.path, f), os.path.join(mdir, f), shallow=False)
    lat.sort()
    return {"throughput_s": thr, "msgs_per_s": args.messages / thr,
            "MB_per_s": args.messages * args.size / thr / MB,
            "p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--latency-messages", type=int, default=1000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="embedlog-bench-mirror-", dir=args.dir)
    info = machine_info(root)
    out = eprint if args.json else print
    out(f"machine: {machine_line(info)}")
    results = {name: [] for name, _a, _m in CONFIGS}
    try:
        for r in range(args.rounds):
            order = CONFIGS if r % 2 == 0 else list(reversed(CONFIGS))
            for name, acks, mirrors in order:
                res = run_one(os.path.join(root, f"r{r}"), name, acks, mirrors, args)
                results[name].append(res)
                out(f"round {r + 1} {name:<22} {res['msgs_per_s']:>9.0f} msg/s  p50 {res['p50_us']:>7.0f} us  "
                    f"p99 {res['p99_us']:>7.0f} us")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    summary = {}
    for name, runs in results.items():
        summary[name] = {k: statistics.median(x[k] for x in runs) for k in ("msgs_per_s", "MB_per_s", "p50_us", "p99_us")}
    base = summary["acks=1, 0 mirrors"]
    for s in summary.values():
        s["throughput_vs_acks1"] = s["msgs_per_s"] / base["msgs_per_s"]
        s["p50_vs_acks1"] = s["p50_us"] / base["p50_us"]
    if args.json:
        print(json.dumps({"benchmark": "bench_mirroring", "machine": info, "params": vars(args), "runs": results,
                          "summary": summary}, indent=1))
        return
    print()
    print(f"{'configuration':<22} {'msg/s':>9} {'x acks=1':>9} {'p50 us':>8} {'p99 us':>8} {'p50 x acks=1':>13}")
    for name, s in summary.items():
        print(f"{name:<22} {s['msgs_per_s']:>9.0f} {s['throughput_vs_acks1']:>9.2f} {s['p50_us']:>8.0f} "
              f"{s['p99_us']:>8.0f} {s['p50_vs_acks1']:>13.1f}")


if __name__ == "__main__":
    main()
