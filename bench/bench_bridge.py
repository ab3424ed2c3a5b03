#!/usr/bin/env python3
"""Bridge throughput: a log directory to a Kafka-protocol broker and back, beside the
broker's own produce rate from confluent-kafka, in one run.

    python bench/bench_bridge.py [--messages 1000000] [--size 100] [--partitions 1] [--json]

Workload: N values of SIZE random bytes (random.Random(42)), no keys, in a fresh log
directory written in 5,000-record lz4 batches before the timed region.

  produce      confluent-kafka Producer (acks=all, enable.idempotence, lz4, linger.ms 5)
               of the same N values to a new topic on the broker: the peer's own rate
               (bench_wire.run_produce).
  dir->broker  `embedlog.connect.bridge(DIR, BROKER)`: creates the topic, copies N
               records (read from the directory, produced with the same settings, acks=all,
               one sync record per written batch), translates no group.
  broker->dir  `bridge(BROKER, NEWDIR)` of that topic: consumed by librdkafka, appended
               fdatasync'd to the new directory.
Both bridge copies are checked afterwards: same count, same values in order.

The broker is Tansu (tests/peers.py, memory:// storage: the only local engine of its
build). Machine: 2 shared vCPUs; read ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "tests"))

import _benchutil as bu
import bench_wire as bw

import embedlog
from embedlog.connect._bridge import bridge


def fill(path: str, n: int, size: int, partitions: int):
    rb = random.Random(42).randbytes
    with embedlog.open(path) as log:
        log.create_topic("bridged", partitions)
        for p in range(partitions):
            part = log.partition("bridged", p)
            left = n // partitions + (1 if p < n % partitions else 0)
            while left:
                k = min(5_000, left)
                part.append_records([rb(size) for _ in range(k)], compression=3)
                left -= k


def values(path: str, partitions: int) -> list[list[bytes]]:
    out = []
    with embedlog.open(path) as log:
        for p in range(partitions):
            part, got, pos = log.partition("bridged", p), [], 0
            while True:
                cols, nxt = part.fetch(pos)
                got.extend(cols.values)
                if nxt == pos:
                    break
                pos = nxt
            out.append(got)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-bridge-")
    src, back = os.path.join(tmp, "src"), os.path.join(tmp, "back")
    info = bu.machine_info(tmp)
    bu.eprint(bu.machine_line(info))
    n = args.messages
    try:
        fill(src, n, args.size, args.partitions)
        with bw.target_tansu() as broker:
            bs = broker["bootstrap"]
            bw.create_topic(bs, "peer-produce", args.partitions)
            peer = bw.run_produce(bs, "peer-produce", n, args.size, acks="all")
            bu.eprint(f"produce (confluent-kafka -> broker): {peer['rate']:,.0f} msg/s")
            t0 = time.perf_counter()
            out = bridge(src, bs)
            to_broker = time.perf_counter() - t0
            bu.eprint(f"bridge dir -> broker: {n / to_broker:,.0f} msg/s ({out['records']:,} records)")
            t0 = time.perf_counter()
            back_summary = bridge(bs, back, topics="bridged")
            to_dir = time.perf_counter() - t0
            bu.eprint(f"bridge broker -> dir: {n / to_dir:,.0f} msg/s ({back_summary['records']:,} records)")
        same = values(src, args.partitions) == values(back, args.partitions)
        if out["records"] != n or back_summary["records"] != n or not same:
            raise SystemExit(f"copies differ: {out['records']}, {back_summary['records']}, same values {same}")
        result = {
            "machine": info, "args": vars(args), "broker": broker["label"],
            "produce_rate": peer["rate"], "dir_to_broker_rate": n / to_broker, "broker_to_dir_rate": n / to_dir,
            "dir_to_broker_vs_produce": n / to_broker / peer["rate"],
            "broker_to_dir_vs_produce": n / to_dir / peer["rate"]}
        lines = [f"N = {n:,} x {args.size} B, {args.partitions} partition(s), broker: {broker['label']}",
                 f"  confluent-kafka produce (acks=all, idempotent, lz4) {peer['rate']:>12,.0f} msg/s  1.00x",
                 f"  bridge dir -> broker                                {n / to_broker:>12,.0f} msg/s  "
                 f"{result['dir_to_broker_vs_produce']:.2f}x",
                 f"  bridge broker -> dir                                {n / to_dir:>12,.0f} msg/s  "
                 f"{result['broker_to_dir_vs_produce']:.2f}x"]
        print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
