"""Topic changes made by one process reach the others without a reopen (issue #6;
FORMAT.md §1 `.notify`): config, added partitions, producers, consumer groups.

Process A is the test process. It opens the log and keeps its Topic, Partition,
Producer or Consumer objects throughout, never reopening. Process B is a real
subprocess, either `python -c` or the CLI, that makes the change and exits.
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import embedlog
from embedlog import (Consumer, InvalidPartitionsError, KafkaError, Producer, RecordTooLargeError,
                      TopicPartition)
from embedlog.storage._partitioner import partition_for_key

KEYS = [f"customer-{i}".encode() for i in range(40)]


def python(code: str, *args) -> str:
    """Run `code` in a fresh interpreter (sys.argv[1:] = args); its stderr."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stderr


def cli(path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, EMBEDLOG_DIR=str(path))
    r = subprocess.run([sys.executable, "-m", "embedlog", *args], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r
    return r


def poll_until(done, consumers, what, timeout=15.0):
    """Poll the consumers (their group checks run inside poll()) until done(records
    polled so far) holds; those records."""
    deadline = time.monotonic() + timeout
    got = []
    while not done(got):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {[assigned(c) for c in consumers]}"
        for c in consumers:
            m = c.poll(0.02)
            if m is not None and m.error() is None:
                got.append(m)
    return got


def assigned(c) -> set:
    return {(tp.topic, tp.partition) for tp in c.assignment()}


# ------------------------------------------------------------------ config

def test_config_change_in_another_process_applies_to_the_next_append(tmp_path):
    path = tmp_path / "log"
    big = b"x" * 5000
    with embedlog.open(path) as log:
        t = log.create_topic("t", partitions=1)
        part = t.partition(0)                 # kept, as an application keeps it
        config = t.config
        t.append([big])
        part.append_records([big])

        cli(path, "topics", "alter", "-t", "t", "-c", "max.message.bytes=2000", "-c", "retention.ms=60000")
        # The partition handle first (no Topic call in between), then the topic.
        with pytest.raises(RecordTooLargeError, match="max.message.bytes=2000"):
            part.append_records([big])
        with pytest.raises(RecordTooLargeError, match="max.message.bytes=2000"):
            t.append([big])
        t.append([b"small"])
        assert part.config is config and t.config is config     # one live dict, updated in place
        assert config["max.message.bytes"] == 2000 and config["retention.ms"] == 60000

        cli(path, "topics", "alter", "-t", "t", "--delete-config", "max.message.bytes")
        part.append_records([big])            # the default limit again
        assert config["max.message.bytes"] == 1048588 and config["retention.ms"] == 60000
        assert part.log_end_offset == 4


def test_producer_sees_a_lowered_max_message_bytes(tmp_path):
    path = tmp_path / "log"
    reports = []
    p = Producer({"bootstrap.servers": f"file://{path}", "linger.ms": 0,
                  "on_delivery": lambda err, msg: reports.append(err)})
    try:
        with embedlog.open(path) as log:
            log.create_topic("t")
        p.produce("t", value=b"x" * 5000)
        assert p.flush(10) == 0 and reports == [None]
        python("""
            import sys
            from embedlog import AdminClient
            from embedlog.admin import ConfigResource
            a = AdminClient({"bootstrap.servers": "file://" + sys.argv[1]})
            res = ConfigResource("topic", "t", set_config={"max.message.bytes": "2000"})
            a.incremental_alter_configs([res])[res].result()
            a.close()
        """, path)
        p.produce("t", value=b"x" * 5000)
        assert p.flush(10) == 0
        assert reports[1] is not None and reports[1].code() == KafkaError.MSG_SIZE_TOO_LARGE, reports
    finally:
        p.close()


def test_retention_changed_in_another_process_applies_to_the_next_maintain(tmp_path):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        part = log.create_topic("t", partitions=1).partition(0)   # only the partition is kept
        for _ in range(3):
            part.append_records([b"v"] * 10)
        later = int(time.time() * 1000) + 60_000                 # a minute on: within 7 days
        part.maintain(later)
        assert part.log_start_offset == 0
        cli(path, "topics", "alter", "-t", "t", "-c", "retention.ms=1000")
        part.maintain(later)
        assert part.log_start_offset == part.log_end_offset == 30


# ------------------------------------------------------------------ partitions

def test_partitions_added_in_another_process_take_keyed_records(tmp_path):
    path = tmp_path / "log"
    assert any(partition_for_key(k, 5) >= 2 for k in KEYS)       # the test can tell 2 from 5
    with embedlog.open(path) as log:
        t = log.create_topic("orders", partitions=2)
        t.append([b"before"] * len(KEYS), keys=KEYS)

        err = python("""
            import sys, embedlog
            with embedlog.open(sys.argv[1]) as log:
                log.add_partitions("orders", 5)
        """, path)
        assert "different partitions" in err            # the growth warning, in B

        results = t.append([k + b"-after" for k in KEYS], keys=KEYS)   # before any other call on t
        assert {p for p, _ in results} == {partition_for_key(k, 5) for k in KEYS}
        assert t.num_partitions == 5 and len(t.partitions) == 5
        placed = {}
        for p in range(5):
            for rec in t.partition(p).read(0):
                if rec.value.endswith(b"-after"):
                    placed[rec.key] = p
        assert placed == {k: partition_for_key(k, 5) for k in KEYS}


def test_producer_routes_keys_with_the_new_count(tmp_path):
    path = tmp_path / "log"
    conf = {"bootstrap.servers": f"file://{path}", "linger.ms": 0}
    delivered = []
    p = Producer(conf)
    try:
        with embedlog.open(path) as log:
            log.create_topic("orders", partitions=2)
        for k in KEYS:
            p.produce("orders", value=b"before", key=k,
                      on_delivery=lambda err, msg: delivered.append((err, msg.key(), msg.partition())))
        assert p.flush(10) == 0
        assert {(k, part) for _, k, part in delivered} == {(k, partition_for_key(k, 2)) for k in KEYS}

        err = python("""
            import sys
            from embedlog import AdminClient, NewPartitions
            a = AdminClient({"bootstrap.servers": "file://" + sys.argv[1]})
            a.create_partitions([NewPartitions("orders", 4)])["orders"].result()
            a.close()
        """, path)
        assert "different partitions" in err            # the warning, on the AdminClient path

        delivered.clear()
        for k in KEYS:
            p.produce("orders", value=b"after", key=k,
                      on_delivery=lambda err, msg: delivered.append((err, msg.key(), msg.partition())))
        p.produce("orders", value=b"explicit", partition=3,
                  on_delivery=lambda err, msg: delivered.append((err, msg.key(), msg.partition())))
        assert p.flush(10) == 0
        assert all(e is None for e, _, _ in delivered), delivered
        assert {(k, part) for _, k, part in delivered} == \
            {(k, partition_for_key(k, 4)) for k in KEYS} | {(None, 3)}
        assert any(partition_for_key(k, 4) >= 2 for k in KEYS)
    finally:
        p.close()


def test_shrinking_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        t = log.create_topic("t", partitions=3)
        version = log.notifier.metadata_version()
        for bad in (3, 2, 1):
            with pytest.raises(InvalidPartitionsError, match=r"has 3 partitions.*never removed"):
                log.add_partitions("t", bad)
        err = python("""
            import sys, embedlog
            with embedlog.open(sys.argv[1]) as log:
                try:
                    log.add_partitions("t", 2)
                except embedlog.InvalidPartitionsError as e:
                    print("refused:", e, file=sys.stderr)
        """, path)
        assert "refused: topic 't' has 3 partitions" in err and "never removed" in err
        r = subprocess.run([sys.executable, "-m", "embedlog", "topics", "add-partitions", "-t", "t", "-p", "1"],
                           capture_output=True, text=True, env=dict(os.environ, EMBEDLOG_DIR=str(path)))
        assert r.returncode == 1 and "never removed" in r.stderr and "Traceback" not in r.stderr
        assert log.notifier.metadata_version() == version          # nothing was published
        assert t.num_partitions == 3
        with open(path / "topics" / "t.json") as f:
            assert json.load(f)["partitions"] == 3
        assert not (path / "t-3").exists()


# ------------------------------------------------------------------ consumer groups

def test_subscribed_group_gets_partitions_added_by_another_process(tmp_path):
    path = tmp_path / "log"
    conf = {"bootstrap.servers": f"file://{path}", "group.id": "g", "auto.offset.reset": "earliest"}
    with embedlog.open(path) as log:
        log.create_topic("t", partitions=1)
    c = Consumer(conf)
    try:
        c.subscribe(["t"])
        poll_until(lambda _: assigned(c) == {("t", 0)}, [c], "the first assignment")

        r = cli(path, "topics", "add-partitions", "-t", "t", "-p", "3")
        assert "now has 3 partitions (was 1)" in r.stdout
        assert r.stderr.startswith("Warning: ") and "different partitions" in r.stderr
        python("""
            import sys, embedlog
            with embedlog.open(sys.argv[1]) as log:
                log.partition("t", 2).append_records([b"in-a-new-partition"])
        """, path)

        got = poll_until(lambda got: any(m.partition() == 2 for m in got), [c], "the record in t-2")
        assert assigned(c) == {("t", 0), ("t", 1), ("t", 2)}
        assert [m.value() for m in got if m.partition() == 2] == [b"in-a-new-partition"]
    finally:
        c.close()


_MEMBER = """
import json, os, sys, time
from embedlog import Consumer
path, out, stop = sys.argv[1:4]
c = Consumer({"bootstrap.servers": "file://" + path, "group.id": "g", "client.id": "b"})
c.subscribe(["t"])
last = None
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    c.poll(0.02)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        with open(out + ".tmp", "w") as f:
            json.dump(now, f)
        os.replace(out + ".tmp", out)
        last = now
c.close()
"""


def test_members_in_two_processes_share_the_added_partitions(tmp_path):
    """A member in another process, which did not make the change, takes its share too."""
    path = tmp_path / "log"
    out, stop = tmp_path / "b-assignment.json", tmp_path / "stop"
    with embedlog.open(path) as log:
        log.create_topic("t", partitions=2)
    a = Consumer({"bootstrap.servers": f"file://{path}", "group.id": "g", "client.id": "a"})
    b = subprocess.Popen([sys.executable, "-c", _MEMBER, str(path), str(out), str(stop)],
                         stderr=subprocess.PIPE, text=True)

    def b_assignment():
        try:
            with open(out) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    try:
        a.subscribe(["t"])
        poll_until(lambda _: len(assigned(a)) == 1 and len(b_assignment() or ()) == 1, [a], "one partition each")
        with embedlog.open(path) as log:                 # A grows the topic; B must notice
            with pytest.warns(UserWarning, match="different partitions"):
                log.add_partitions("t", 4)
        poll_until(lambda _: len(assigned(a)) == 2 and len(b_assignment() or ()) == 2, [a], "two partitions each")
        assert {p for _, p in assigned(a)} | set(b_assignment()) == {0, 1, 2, 3}
    finally:
        stop.touch()
        try:
            _, err = b.communicate(timeout=30)
        finally:
            if b.poll() is None:
                b.kill()
        a.close()
    assert b.returncode == 0, err


# ------------------------------------------------------------------ deletion, cost, lifetime

def test_topic_deleted_by_another_process_crashes_nothing(tmp_path):
    path = tmp_path / "log"
    conf = {"bootstrap.servers": f"file://{path}", "group.id": "g", "auto.offset.reset": "earliest"}
    with embedlog.open(path) as log:
        t = log.create_topic("gone", partitions=2)
        t.append([b"x"], keys=[b"k"])
        c = Consumer(conf)
        try:
            c.subscribe(["gone"])
            poll_until(lambda _: len(assigned(c)) == 2, [c], "the assignment")
            cli(path, "topics", "delete", "-t", "gone")
            # The group drops the deleted topic's partitions; polling raises nothing.
            poll_until(lambda _: assigned(c) == set(), [c], "the partitions to be revoked")
            # The open handle keeps what it had (as before the live metadata).
            assert t.num_partitions == 2 and t.config["cleanup.policy"] == "delete"
            t.partition(1)
            # Created again under the same name: another topic (another topic_id). The
            # old handle still keeps what it had; a subscriber gets the new one.
            cli(path, "topics", "create", "-t", "gone", "-p", "3")
            assert t.num_partitions == 2
            poll_until(lambda _: len(assigned(c)) == 3, [c], "the new topic's partitions")
        finally:
            c.close()


@pytest.mark.parametrize("created_again", [False, True])
def test_closing_after_another_process_deleted_the_topic(tmp_path, created_again):
    """Closing used to flush the deleted partitions: FileNotFoundError when the folders
    were gone, a clean checkpoint of the old data in the new topic's folder when a topic
    of the same name had been created since."""
    path = tmp_path / "log"
    log = embedlog.open(path)
    t = log.create_topic("gone", partitions=1)
    t.append([b"x", b"y"])
    cli(path, "topics", "delete", "-t", "gone")
    if created_again:
        cli(path, "topics", "create", "-t", "gone")
    log.close()                                          # raises nothing
    if created_again:
        with open(path / "gone-0" / "partition.checkpoint") as f:
            assert json.load(f)["recovery_point"] == 0   # the new topic's own checkpoint
        with embedlog.open(path) as log:
            part = log.partition("gone", 0)
            assert (part.log_start_offset, part.log_end_offset) == (0, 0)
            assert part.read(0) == []


def test_nothing_is_read_from_disk_while_the_metadata_is_unchanged(tmp_path, monkeypatch):
    """The check on the append path is one load from .notify: no file is opened or
    stat'ed per append; the topic file is read once per change."""
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        t = log.create_topic("t", partitions=2)
        part = t.partition(0)
        reads = []
        read_meta = log._read_meta
        monkeypatch.setattr(log, "_read_meta", lambda name: reads.append(name) or read_meta(name))
        for i in range(20):
            t.append([b"v"], keys=[b"k%d" % i])
            part.append_records([b"w"])
            assert t.num_partitions == 2 and t.config["retention.ms"] == 604800000
        assert reads == []
        python("""
            import sys, embedlog
            with embedlog.open(sys.argv[1]) as log:
                log.alter_topic_config("t", {"retention.ms": 1000})
        """, path)
        part.append_records([b"w"])
        t.append([b"v"])
        assert t.config["retention.ms"] == 1000
        assert reads == ["t"]


def test_own_changes_apply_at_once_without_a_reread(tmp_path, monkeypatch):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        t = log.create_topic("t", partitions=1)
        reads = []
        read_meta = log._read_meta
        monkeypatch.setattr(log, "_read_meta", lambda name: reads.append(name) or read_meta(name))
        log.alter_topic_config("t", {"max.message.bytes": 100})
        with pytest.warns(UserWarning, match="from 1 to 3 partitions"):
            log.add_partitions("t", 3)
        assert t.config["max.message.bytes"] == 100 and t.num_partitions == 3
        with pytest.raises(RecordTooLargeError):
            t.append([b"x" * 200], partition=2)
        assert reads == ["t", "t"]            # each change read the file once, under the lock


def test_partitions_of_a_topic_append_with_the_partition_signature():
    """_TopicPartition spells out Partition.append_batches's parameters (for speed):
    they must stay the same."""
    import inspect
    from embedlog.storage._log import _TopicPartition
    assert inspect.signature(_TopicPartition.append_batches) == inspect.signature(embedlog.Partition.append_batches)


def test_a_topic_outlives_its_log(tmp_path):
    log = embedlog.open(tmp_path / "log")
    t = log.create_topic("t", partitions=3, config={"retention.ms": 5})
    log.close()
    assert t.num_partitions == 3 and t.config["retention.ms"] == 5


def test_explicit_assignment_of_an_added_partition(tmp_path):
    """assign() (no group) can name a partition another process just added."""
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        log.create_topic("t", partitions=1)
    c = Consumer({"bootstrap.servers": f"file://{path}", "group.id": "g", "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("t", 0)])
        c.poll(0)
        python("""
            import sys, embedlog
            with embedlog.open(sys.argv[1]) as log:
                log.add_partitions("t", 2)
                log.partition("t", 1).append_records([b"one"])
        """, path)
        c.assign([TopicPartition("t", 1)])
        got = poll_until(lambda got: got, [c], "the record")
        assert (got[0].partition(), got[0].value()) == (1, b"one")
    finally:
        c.close()
