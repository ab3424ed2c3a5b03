"""The `embedlog` command line (grows with issue #4; `demo` is the README's first command)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile


def _demo(args) -> int:
    import embedlog

    path = args.dir or os.path.join(tempfile.gettempdir(), "embedlog-demo")
    with embedlog.open(path) as log:
        if "orders" not in log:
            log.create_topic("orders", partitions=3, config={"compression.type": "producer"})
        topic = log.topic("orders")
        keys = [f"customer-{i % 7}".encode() for i in range(1000)]
        values = [f'{{"order": {i}, "amount": {i * 3 % 100}}}'.encode() for i in range(1000)]
        placed = topic.append(values, keys=keys, compression=3)  # lz4
        print(f"log directory: {log.path}")
        print(f"appended {len(values)} keyed records to 'orders' in {len(placed)} lz4 batches "
              "(murmur2 key -> partition, as Kafka's Java client)")
        print(f"{'PARTITION':>9} {'LOG-START':>9} {'LOG-END':>8} {'BYTES':>8}  LAST RECORD")
        total = 0
        for part in topic.partitions:
            start, end = part.watermarks()
            last = part.read(end - 1)[-1] if end > start else None
            total += end - start
            print(f"{part.partition:>9} {start:>9} {end:>8} {part.size_bytes():>8}  "
                  f"{last.key.decode() if last else '-'} = {last.value.decode() if last else '-'}")
        print(f"{total} records in the topic; read back with Partition.read(offset)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="embedlog", description="Kafka's data model in a local directory.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="create a topic, append keyed records, read them back")
    demo.add_argument("dir", nargs="?", help="log directory (default: a folder in the temp dir)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    from ._errors import EmbedlogError
    try:
        return args.func(args)
    except (EmbedlogError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
