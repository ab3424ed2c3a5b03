"""A producer process for the end-to-end history tests (run as a script, never imported
by pytest): produces `count` records with unique values through embedlog.Producer and
reports each delivery on stdout, one JSON line written with os.write the moment the
delivery callback runs, so a SIGKILL loses no report that was made.

    python _producer_proc.py DIR TOPIC NAME ACKS COUNT [COMPRESSION]

Values are f"{NAME}-{i}". Every 97th record is padded with "#" and random bytes past the topic's
max.message.bytes, so its send must fail; reports name values without the padding. Lines: {"v": value, "ok": bool, "p": partition,
"o": offset, "e": error}. The last line is {"done": true} after flush().
"""
import json
import os
import sys


def main():
    path, topic, name, acks, count = sys.argv[1:6]
    compression = sys.argv[6] if len(sys.argv) > 6 else "none"
    count = int(count)
    from embedlog import Producer

    def report(err, msg):
        line = {"v": msg.value().split(b"#")[0].decode(), "ok": err is None, "p": msg.partition(), "o": msg.offset()}
        if err is not None:
            line["e"] = str(err)
        os.write(1, (json.dumps(line) + "\n").encode())

    p = Producer({"bootstrap.servers": f"file://{path}", "acks": acks, "linger.ms": 2,
                  "compression.type": compression, "batch.num.messages": 50,
                  "log.retention.check.interval.ms": 0})
    for i in range(count):
        value = f"{name}-{i}".encode()
        if i % 97 == 96:
            value += b"#" + os.urandom(5000)   # over max.message.bytes (4096), even compressed
        headers = [("i", str(i).encode())] if i % 3 == 0 else None
        p.produce(topic, value=value, key=f"k{i % 17}".encode(), headers=headers, on_delivery=report)
        if i % 50 == 0:
            p.poll(0)
    p.flush()
    p.close()
    os.write(1, b'{"done": true}\n')


if __name__ == "__main__":
    main()
