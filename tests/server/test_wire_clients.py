"""kafka-python, aiokafka and kcat against `embedlog serve`; and one consumer group whose
members are a wire client and an in-process embedlog.Consumer in another process."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

import embedlog


def test_kafka_python_produce_consume_group(embedlog_broker):
    kafka = pytest.importorskip("kafka")
    bs = embedlog_broker.bootstrap
    admin = kafka.KafkaAdminClient(bootstrap_servers=bs)
    admin.create_topics([kafka.admin.NewTopic("kp", 3, 1)])
    admin.close()
    p = kafka.KafkaProducer(bootstrap_servers=bs, compression_type="lz4", acks="all", enable_idempotence=True)
    futures = [p.send("kp", key=b"k%d" % i, value=b"v%d" % i) for i in range(500)]
    p.flush()
    metas = [f.get(10) for f in futures]
    assert len({(m.partition, m.offset) for m in metas}) == 500
    p.close()
    c = kafka.KafkaConsumer("kp", bootstrap_servers=bs, group_id="kpg", auto_offset_reset="earliest",
                            enable_auto_commit=False, consumer_timeout_ms=10000)
    got = []
    for m in c:
        got.append((m.partition, m.offset, m.key, m.value))
        if len(got) == 500:
            break
    c.commit()
    c.close()
    assert sorted(v for *_x, v in got) == sorted(b"v%d" % i for i in range(500))
    # kafka-python's default partitioner is murmur2, like embedlog's and Java's
    from embedlog.storage._partitioner import partition_for_key
    for part, _off, key, _v in got:
        assert part == partition_for_key(key, 3)
    with embedlog.open(embedlog_broker.path) as log:
        assert all(r["lag"] == 0 for r in log.consumer_lag("kpg"))
        assert sum(r["committed"] for r in log.consumer_lag("kpg")) == 500


def test_aiokafka_produce_consume_group(embedlog_broker):
    aiokafka = pytest.importorskip("aiokafka")
    bs = embedlog_broker.bootstrap

    async def main():
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=bs, enable_idempotence=True)
        await p.start()
        try:
            for i in range(200):
                await p.send("aio", key=b"%d" % i, value=b"x%d" % i)
            await p.flush()
        finally:
            await p.stop()
        c = aiokafka.AIOKafkaConsumer("aio", bootstrap_servers=bs, group_id="aiog", auto_offset_reset="earliest",
                                      enable_auto_commit=False)
        await c.start()
        got = []
        try:
            deadline = time.time() + 20
            while len(got) < 200 and time.time() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    got.extend(m.value for m in msgs)
            await c.commit()
        finally:
            await c.stop()
        return got

    got = asyncio.run(main())
    assert sorted(got) == sorted(b"x%d" % i for i in range(200))
    with embedlog.open(embedlog_broker.path) as log:
        assert "aio" in log.topics()                                  # auto-created on first produce
        assert sum(r["committed"] for r in log.consumer_lag("aiog")) == 200


@pytest.fixture
def kcat():
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.skip("kcat is not installed (.ci/run installs Debian's kcat package)")
    return path


def test_kcat_metadata_produce_consume_group(embedlog_broker, kcat, tmp_path):
    bs = embedlog_broker.bootstrap
    with embedlog.open(embedlog_broker.path) as log:
        log.create_topic("kc", 2)
    md = json.loads(subprocess.run([kcat, "-b", bs, "-L", "-J"], capture_output=True, text=True, timeout=30,
                                   check=True).stdout)
    topics = {t["topic"]: t for t in md["topics"]}
    assert len(topics["kc"]["partitions"]) == 2
    assert md["brokers"][0]["name"].endswith(str(embedlog_broker.port))
    lines = "".join(f"key{i}:value{i}\n" for i in range(50))
    subprocess.run([kcat, "-b", bs, "-P", "-t", "kc", "-K", ":", "-z", "lz4"], input=lines, text=True,
                   timeout=30, check=True)
    out = subprocess.run([kcat, "-b", bs, "-C", "-t", "kc", "-o", "beginning", "-e", "-f", "%k=%s %p %o\n"],
                         capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert sorted(x.split()[0] for x in out) == sorted(f"key{i}=value{i}" for i in range(50))
    # -G: balanced consumer group mode, exits at the end (-e) and commits
    out = subprocess.run([kcat, "-b", bs, "-G", "kcg", "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\n", "kc"],
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert sorted(out) == sorted(f"value{i}" for i in range(50))
    with embedlog.open(embedlog_broker.path) as log:
        recs = [r for p in range(2) for r in log.partition("kc", p).read(0)]
        assert sorted(r.key for r in recs) == sorted(b"key%d" % i for i in range(50))


MEMBER = textwrap.dedent("""
    import json, sys, time
    import embedlog
    path, out = sys.argv[1], sys.argv[2]
    c = embedlog.Consumer({"bootstrap.servers": "file://" + path, "group.id": "mixed",
                           "auto.offset.reset": "earliest", "heartbeat.interval.ms": 200})
    c.subscribe(["mix"])
    end = time.time() + 60
    while time.time() < end:
        c.poll(0.1)
        with open(out, "w") as f:
            json.dump(sorted(tp.partition for tp in c.assignment()), f)
""")


def test_wire_member_and_in_process_member_share_one_group(embedlog_broker, tmp_path):
    ck = pytest.importorskip("confluent_kafka")
    with embedlog.open(embedlog_broker.path) as log:
        log.create_topic("mix", 4)
    (tmp_path / "bin").mkdir()           # not beside tmp_path/embedlog, which would shadow the package
    script = tmp_path / "bin" / "member.py"
    script.write_text(MEMBER)
    state = tmp_path / "assigned.json"
    proc = subprocess.Popen([sys.executable, str(script), str(embedlog_broker.path), str(state)])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not (state.exists() and state.read_text() == "[0, 1, 2, 3]"):
            time.sleep(0.1)
        assert state.read_text() == "[0, 1, 2, 3]"
        c = ck.Consumer({"bootstrap.servers": embedlog_broker.bootstrap, "group.id": "mixed",
                         "auto.offset.reset": "earliest", "log_level": 3, "heartbeat.interval.ms": 300})
        c.subscribe(["mix"])
        wire = []
        deadline = time.time() + 30
        while time.time() < deadline:
            c.poll(0.2)
            wire = sorted(tp.partition for tp in c.assignment())
            other = json.loads(state.read_text() or "[]")
            if wire and other and sorted(wire + other) == [0, 1, 2, 3]:
                break
        assert wire and sorted(wire + json.loads(state.read_text())) == [0, 1, 2, 3], (wire, state.read_text())
        assert not set(wire) & set(json.loads(state.read_text()))
        c.close()
        # the wire member left: the in-process member gets all four back
        deadline = time.time() + 30
        while time.time() < deadline and state.read_text() != "[0, 1, 2, 3]":
            time.sleep(0.1)
        assert state.read_text() == "[0, 1, 2, 3]"
    finally:
        proc.terminate()
        proc.wait(10)
    assert os.path.exists(embedlog_broker.path)
