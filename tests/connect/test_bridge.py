"""embedlog bridge: directory <-> directory and directory <-> a real Kafka-protocol broker
(Tansu, tests/peers.py). Records keep partition, order, keys, values, headers and
timestamps; group offsets are translated exactly; SIGKILLed bridges resume with no
duplicate and no loss; bad input fails clearly."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import embedlog as el
from embedlog.connect._bridge import Bridge, BridgeError, bridge
from embedlog.connect._ends import is_brokers

PARTS = 3


def fill(path, topic="orders", n=300, partitions=PARTS, config=None, seed=1, chunk=1000):
    """n records per partition: keys, some null values, headers, explicit timestamps."""
    rnd = random.Random(seed)
    with el.open(path) as log:
        if topic not in log.topics():
            log.create_topic(topic, partitions, config)
        for p in range(partitions):
            part = log.partition(topic, p)
            base = part.log_end_offset
            for k in range(0, n, chunk):
                m = min(chunk, n - k)
                idx = range(base + k, base + k + m)
                part.append_records(
                    [None if i % 37 == 5 else rnd.randbytes(rnd.randrange(0, 60)) for i in idx],
                    [b"k%d" % (i % 50) for i in idx], [1_700_000_000_000 + i * 7 for i in idx],
                    [[("p", b"%d" % p), ("i", str(i).encode())] if i % 3 else None for i in idx])


def _read_from(part, offset):
    out = []
    while True:
        cols, nxt = part.fetch(offset)
        out.extend(zip(cols.timestamps, cols.keys, cols.values, cols.headers))
        if nxt == offset:
            return out
        offset = nxt


def records(path, topic="orders", partitions=PARTS):
    """Per partition: (timestamp, key, value, headers) in order, offsets left out."""
    with el.open(path) as log:
        return [_read_from(log.partition(topic, p), log.partition(topic, p).log_start_offset)
                for p in range(partitions)]


def commit(path, group, offsets):
    with el.open(path) as log:
        from embedlog.storage._offsets import store_for
        store_for(log).commit(group, [(t, p, o, "m") for (t, p), o in offsets.items()])


def committed(path, group, topic="orders", partitions=PARTS):
    c = el.Consumer({"bootstrap.servers": path, "group.id": group})
    try:
        return [tp.offset for tp in c.committed([el.TopicPartition(topic, p) for p in range(partitions)])]
    finally:
        c.close()


def rest_after(path, group, topic="orders", partitions=PARTS):
    """What a consumer of `group` reads next on `path`, per partition, from its committed offsets."""
    offs = committed(path, group, topic, partitions)
    with el.open(path) as log:
        return [None if offs[p] < 0 else _read_from(log.partition(topic, p), offs[p]) for p in range(partitions)]


# ------------------------------------------------------------------ directory to directory
def test_dir_to_dir_copies_everything_and_translates_offsets_exactly(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.01, "segment.bytes": 4096}, chunk=20)
    with el.open(a) as log:                # offsets with gaps: translation must count, not subtract
        for p in range(PARTS):
            log.partition("orders", p).compact()
        assert len(log.partition("orders", 1).read(0, max_records=10**9)) < 300
    commit(a, "g", {("orders", 0): 0, ("orders", 1): 150, ("orders", 2): 300})
    commit(a, "h", {("orders", 1): 77})
    s = bridge(a, b)
    src = records(a)
    assert records(b) == src
    assert s["records"] == sum(map(len, src)) and s["topics"]["orders"]["created"]
    with el.open(b) as log:
        assert log.topic("orders").config["cleanup.policy"] == "compact"
        assert log.topic("orders").num_partitions == PARTS
    # a group moved to b reads exactly what it had not consumed on a
    for g in ("g", "h"):
        assert rest_after(b, g) == rest_after(a, g)
    assert rest_after(b, "h")[0] is None and len(rest_after(b, "h")[1]) > 0
    # again: nothing new, nothing copied twice
    assert bridge(a, b)["records"] == 0
    fill(a, n=40, seed=2)
    assert bridge(a, b)["records"] == 40 * PARTS
    assert records(b) == records(a)


def test_topic_and_group_patterns_and_internal_topics(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, "orders", n=10)
    fill(a, "audit", n=10, partitions=1)
    commit(a, "keep", {("orders", 0): 3})
    commit(a, "drop", {("orders", 0): 4})
    s = bridge(a, b, topics="ord.*", groups="keep")
    with el.open(b) as log:
        topics = log.topics()
    assert "orders" in topics and "audit" not in topics
    assert "__embedlog_bridge" in topics           # the sync records live at the directory end
    assert set(s["groups"]) == {"keep"}
    assert committed(b, "keep")[0] == 3 and committed(b, "drop")[0] < 0


def test_fewer_partitions_on_the_destination_is_refused_unless_told(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, n=5)
    with el.open(b) as log:
        log.create_topic("orders", 1)
    with pytest.raises(BridgeError, match="1 partition.*3 on.*--add-partitions"):
        bridge(a, b)
    assert records(b, partitions=1) == [[]]          # nothing written
    s = bridge(a, b, add_partitions=True)
    assert s["topics"]["orders"]["partitions_added"] == 2
    assert records(b) == records(a)


def test_a_group_active_on_the_destination_is_left_alone(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, n=20)
    bridge(a, b)
    c = el.Consumer({"bootstrap.servers": b, "group.id": "g", "auto.offset.reset": "earliest"})
    c.subscribe(["orders"])
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 20 * PARTS and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
    c.commit(asynchronous=False)
    ours = committed(b, "g")
    commit(a, "g", {("orders", p): 1 for p in range(PARTS)})      # older commits on the source
    s = bridge(a, b)
    assert "active" in s["groups"]["g"]["skipped"]
    c.close()
    s = bridge(a, b)                                   # no member now; still never moved back
    assert s["groups"]["g"]["committed"] == 0
    assert committed(b, "g") == ours


def test_destination_that_lost_records_is_refused(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, n=10)
    bridge(a, b)
    with el.open(b) as log:
        log.delete_topic("orders")
        log.create_topic("orders", PARTS)
    with pytest.raises(BridgeError, match="below the .* the bridge wrote"):
        bridge(a, b)
    s = bridge(a, b, name="again")                     # a new bridge starts over
    assert s["records"] == 10 * PARTS and records(b) == records(a)


def test_follow_copies_new_records_until_stopped(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, n=10)
    br = Bridge(a, b, group_interval=0.2)
    result = {}
    th = threading.Thread(target=lambda: result.update(br.run(follow=True)))
    th.start()
    try:
        fill(a, n=25, seed=3)
        commit(a, "late", {("orders", 2): 30})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (records(b) != records(a) or committed(b, "late")[2] != 30):
            time.sleep(0.1)
    finally:
        br.stop()
        th.join(20)
        br.close()
    assert not th.is_alive() and result["stopped"] == "stopped"
    assert records(b) == records(a) and committed(b, "late")[2] == 30


def test_the_broker_address_check():
    for v in ("localhost:9092", "broker1:9092,broker2:9092", "10.0.0.1:9092", "[::1]:9092",
              "PLAINTEXT://kafka:9092", "kafka-0.kafka.svc.cluster.local:9093"):
        assert is_brokers(v), v
    for v in ("file:///x", "/var/lib/log", "./data:1", "data", "dir/sub", "~/log", "host:port", "a:99999x"):
        assert not is_brokers(v), v


# ------------------------------------------------------------------ killed bridges
def _run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "embedlog", "bridge", *args], capture_output=True, text=True,
                          timeout=timeout)


def _kill_loop(args, kills, rnd, min_s=0.4, max_s=1.6):
    done = 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-m", "embedlog", "bridge", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(min_s, max_s))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            done += 1
        proc.wait()
    return done


def test_sigkilled_dir_to_dir_bridge_resumes_without_duplicates(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, n=60_000)
    commit(a, "g", {("orders", p): 10_000 * (p + 1) for p in range(PARTS)})
    rnd = random.Random(7)
    kills = _kill_loop(["--from", a, "--to", b], 5, rnd)
    assert kills >= 3                                 # killed mid-copy, not after it finished
    r = _run_cli("--from", a, "--to", b, "--json")
    assert r.returncode == 0, r.stderr
    assert records(b) == records(a)
    assert rest_after(b, "g") == rest_after(a, "g")


def test_interrupted_bridge_says_so_and_the_next_run_finishes(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fill(a, n=150_000, partitions=1)
    proc = subprocess.Popen([sys.executable, "-m", "embedlog", "bridge", "--from", a, "--to", b],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 130:                        # it was still copying
        assert "interrupted" in err and "Traceback" not in err
    else:
        assert proc.returncode == 0, err
    r = _run_cli("--from", a, "--to", b)
    assert r.returncode == 0, r.stderr
    assert records(b, partitions=1) == records(a, partitions=1)


# ------------------------------------------------------------------ bad input
def test_unreachable_broker_fails_clearly_and_quickly(tmp_path):
    from peers import free_port
    a = str(tmp_path / "a")
    fill(a, n=1)
    t0 = time.monotonic()
    r = _run_cli("--from", a, "--to", f"127.0.0.1:{free_port()}", "--timeout", "2")
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1
    assert r.stderr.startswith("Error: cannot reach the Kafka brokers at 127.0.0.1:") and "Traceback" not in r.stderr
    assert "FAIL|rdkafka" not in r.stderr


def test_bad_arguments_give_one_error_line(tmp_path):
    a = str(tmp_path / "a")
    fill(a, n=1)
    for args, text in ((["--from", str(tmp_path / "nope"), "--to", str(tmp_path / "b")], "no embedlog directory"),
                       (["--from", a, "--to", a], "the same"),
                       (["--from", a, "--to", str(tmp_path / "b"), "--topics", "("], "bad pattern"),
                       (["--from", "127.0.0.1:1", "--to", "127.0.0.2:1"], "one end of a bridge must be")):
        r = _run_cli(*args, "--timeout", "1")
        assert r.returncode == 1 and r.stderr.startswith("Error: ") and text in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "b" / "orders-0") and not os.path.exists(tmp_path / "nope")


# ------------------------------------------------------------------ a real broker
confluent_kafka = pytest.importorskip("confluent_kafka")


def _consume_all(bootstrap, topic, partitions):
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "enable.partition.eof": True})
    out = [[] for _ in range(partitions)]
    c.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(partitions)])
    eof, deadline = set(), time.monotonic() + 60
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in c.consume(10000, 0.5):
            if m.error() is not None:
                if m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            eof.discard(m.partition())
            out[m.partition()].append((m.timestamp()[1], m.key(), m.value(), tuple(m.headers() or ())))
    c.close()
    return out


def test_dir_to_broker_and_back(tmp_path, tansu_broker):
    a, back = str(tmp_path / "a"), str(tmp_path / "back")
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    fill(a, topic, n=2000)
    commit(a, "mover", {(topic, 0): 0, (topic, 1): 1234, (topic, 2): 2000})
    s = bridge(a, tansu_broker.bootstrap)
    assert s["records"] == 2000 * PARTS and s["groups"]["mover"]["committed"] == PARTS
    src = records(a, topic)
    assert _consume_all(tansu_broker.bootstrap, topic, PARTS) == src
    # the group moved to the cluster resumes where it was
    c = confluent_kafka.Consumer({"bootstrap.servers": tansu_broker.bootstrap, "group.id": "mover"})
    got = c.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTS)], timeout=10)
    c.close()
    assert [tp.offset for tp in got] == [0, 1234, 2000]
    # and back to a new directory: the same records, the same group position
    s2 = bridge(tansu_broker.bootstrap, back, topics=topic, groups="mover")
    assert s2["records"] == 2000 * PARTS
    assert records(back, topic) == src
    assert committed(back, "mover", topic) == [0, 1234, 2000]
    assert bridge(a, tansu_broker.bootstrap)["records"] == 0   # nothing twice


def test_sigkilled_bridge_to_the_broker_leaves_no_duplicate(tmp_path, tansu_broker):
    a = str(tmp_path / "a")
    topic = f"kill-{uuid.uuid4().hex[:6]}"
    fill(a, topic, n=100_000)
    args = ["--from", a, "--to", tansu_broker.bootstrap, "--topics", topic]
    kills = _kill_loop(args, 4, random.Random(11), 0.7, 1.4)
    assert kills >= 2
    r = _run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stopped"] == "caught up"
    assert _consume_all(tansu_broker.bootstrap, topic, PARTS) == records(a, topic)


@pytest.mark.soak          # the same resume logic as the two kill loops above; kept out of the 15-minute run
def test_sigkilled_bridge_from_the_broker_leaves_no_duplicate(tmp_path, tansu_broker):
    a, c = str(tmp_path / "a"), str(tmp_path / "c")
    topic = f"back-{uuid.uuid4().hex[:6]}"
    fill(a, topic, n=60_000)
    assert bridge(a, tansu_broker.bootstrap, topics=topic)["records"] == 60_000 * PARTS
    args = ["--from", tansu_broker.bootstrap, "--to", c, "--topics", topic]
    kills = _kill_loop(args, 4, random.Random(5), 0.8, 1.6)
    assert kills >= 2
    r = _run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    assert records(c, topic) == records(a, topic)
