"""Worker processes of the concurrency-under-load test (test_concurrency_load.py), run as
scripts (never imported by pytest), each its own process so the parent can count its file
descriptors and RSS in /proc. They stop when the file OUT/stop exists and report through
files in OUT, one JSON line per event written with os.write (a SIGKILL loses no line that
was written; a torn last line is skipped by the reader).

    python load_workers.py producer LOG OUT NAME ACKS IDEMPOTENT KEYED RATE
    python load_workers.py consumer LOG OUT NAME
    python load_workers.py maintainer LOG OUT

producer: values f"{NAME}-{i}" to topic "t" (and every 3rd record keyed to the compacted
topic "c"), at about RATE records a second; lines {"t": topic, "v", "ok", "p", "o"}.
consumer: group "g" on "t", commits after processing; lines {"s": n} when a session starts
(an assignment), {"r": [[p, o, v], ...]} per poll, {"c": [[p, o], ...]} per commit that
succeeded.
maintainer: Log.maintain() in a loop; lines {"m": rounds, "did": n}.
"""
import json
import os
import sys
import time


def _out(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return lambda obj: os.write(fd, (json.dumps(obj) + "\n").encode())


def producer(log, out, name, acks, idempotent, keyed, rate):
    from embedlog import Producer
    emit = _out(os.path.join(out, f"produce-{name}.jsonl"))

    def report(err, msg):
        emit({"t": msg.topic(), "v": msg.value().decode(), "ok": err is None,
              "p": msg.partition(), "o": msg.offset(), **({"e": str(err)} if err else {})})

    conf = {"bootstrap.servers": f"file://{log}", "acks": acks, "linger.ms": 5,
            "log.retention.check.interval.ms": 0}
    if idempotent == "1":
        conf["enable.idempotence"] = True
    p = Producer(conf)
    stop = os.path.join(out, "stop")
    start, i = time.monotonic(), 0
    while not os.path.exists(stop):
        for _ in range(20):
            key = f"{name}-k{i % 50}".encode() if keyed == "1" else None
            p.produce("t", value=f"{name}-{i}".encode(), key=key, on_delivery=report)
            if i % 3 == 0:
                p.produce("c", value=f"{name}-c{i}".encode(), key=f"ck{i % 40}".encode(), on_delivery=report)
            i += 1
        p.poll(0)
        ahead = i / float(rate) - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    p.flush()
    p.close()
    emit({"done": True, "n": i})


def consumer(log, out, name):
    from embedlog import Consumer, KafkaException
    emit = _out(os.path.join(out, f"consume-{name}-{os.getpid()}.jsonl"))
    sessions = [0]

    def on_assign(c, parts):
        sessions[0] += 1
        emit({"s": sessions[0], "a": sorted(tp.partition for tp in parts)})

    c = Consumer({"bootstrap.servers": f"file://{log}", "group.id": "g", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
                  "log.retention.check.interval.ms": 0})
    c.subscribe(["t"], on_assign=on_assign, on_revoke=on_assign)
    stop = os.path.join(out, "stop")
    while not os.path.exists(stop):
        msgs = c.consume(200, 0.2)
        reads = [[m.partition(), m.offset(), m.value().decode()] for m in msgs if m.error() is None]
        if reads:
            emit({"r": reads})             # processed ...
            try:                           # ... then committed: at-least-once
                done = c.commit(asynchronous=False)
                emit({"c": [[tp.partition, tp.offset] for tp in done or ()]})
            except KafkaException as e:
                emit({"cfail": str(e)})    # rebalanced under us: the new owner goes on
    c.close()
    emit({"done": True})


def maintainer(log, out):
    import embedlog
    emit = _out(os.path.join(out, "maintain.jsonl"))
    stop = os.path.join(out, "stop")
    rounds = did = 0
    with embedlog.Log(log, create=False, retention_check_interval_ms=0) as lg:
        while not os.path.exists(stop):
            done = lg.maintain()
            rounds += 1
            did += sum(len(v) for v in done.values())
            time.sleep(0.1)
    emit({"m": rounds, "did": did})


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    {"producer": producer, "consumer": consumer, "maintainer": maintainer}[role](*args)
