"""subscribe() to a topic that does not exist is not silent (issue #20): with
allow.auto.create.topics off, poll() hands out one UNKNOWN_TOPIC_OR_PART event per
missing name, as librdkafka does ("Subscribed topic not available: NAME: Broker: Unknown
topic or partition"); the group still waits for the topic and consumes it once created."""
import os
import subprocess
import sys
import time

import embedlog

from embedlog import OFFSET_INVALID, Consumer, KafkaError, Producer
from embedlog.admin import AdminClient, NewTopic

NO_AUTO = {"allow.auto.create.topics": False, "auto.offset.reset": "earliest", "enable.auto.commit": False}


def create(conf, topic, values=()):
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1)])[topic].result()
    admin.close()
    if values:
        p = Producer(conf)
        for v in values:
            p.produce(topic, value=v)
        assert p.flush() == 0
        p.close()


def poll_all(c, seconds=0.5):
    """Everything poll() hands out within `seconds` (records and events)."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = c.poll(0.05)
        if m is not None:
            out.append(m)
    return out


def errors(msgs):
    return [m for m in msgs if m.error() is not None]


def assert_unknown_topic_event(m, name):
    err = m.error()
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert err.str() == f"Subscribed topic not available: {name}: Broker: Unknown topic or partition"
    assert m.topic() == name and m.partition() == -1 and m.offset() == OFFSET_INVALID
    assert not err.fatal()


def test_unknown_topic_is_reported_once_then_poll_returns_none(conf):
    c = Consumer({**conf, "group.id": "g", **NO_AUTO})
    c.subscribe(["missing"])
    m = c.poll(1.0)
    assert m is not None, "subscribing to a topic that does not exist was silent"
    assert_unknown_topic_event(m, "missing")
    assert c.poll(0.3) is None                 # once per subscribe, not on every poll
    assert poll_all(c, 0.3) == []
    assert c.assignment() == []
    c.close()


def test_consume_returns_the_event_and_each_subscribe_reports_again(conf):
    c = Consumer({**conf, "group.id": "g", **NO_AUTO})
    c.subscribe(["missing", "missing"])        # a name given twice: one event
    got = c.consume(10, timeout=1.0)
    assert len(got) == 1
    assert_unknown_topic_event(got[0], "missing")
    assert c.consume(10, timeout=0.2) == []
    c.subscribe(["missing", "other"])
    assert sorted(m.topic() for m in errors(poll_all(c))) == ["missing", "other"]
    c.unsubscribe()
    c.subscribe(["other"])
    assert [m.topic() for m in errors(poll_all(c))] == ["other"]
    c.close()


def test_existing_topic_gives_no_error_beside_a_missing_one(conf):
    create(conf, "there", [b"a", b"b"])
    c = Consumer({**conf, "group.id": "g", **NO_AUTO})
    c.subscribe(["there", "missing"])
    msgs = poll_all(c, 1.0)
    errs = errors(msgs)
    assert len(errs) == 1
    assert_unknown_topic_event(errs[0], "missing")
    assert [m.value() for m in msgs if m.error() is None] == [b"a", b"b"]
    c.close()


def test_regex_matching_nothing_is_no_error(conf):
    create(conf, "orders", [b"x"])
    c = Consumer({**conf, "group.id": "g", **NO_AUTO})
    c.subscribe(["^nothing\\..*", "missing"])
    errs = errors(poll_all(c))
    assert [m.topic() for m in errs] == ["missing"]      # the pattern is not reported
    c.subscribe(["^nothing\\..*"])
    assert poll_all(c) == []
    c.close()


def test_default_config_auto_creates_so_no_event(conf, logdir):
    """embedlog's allow.auto.create.topics defaults to true (Java's consumer default;
    librdkafka's is false): subscribing creates the topic (embedlog.num.partitions), as a
    broker with auto.create.topics.enable does for the Java consumer, so there is no error
    and the topic is visible; with the setting off it is reported and not created."""
    loud = Consumer({**conf, "group.id": "l", **NO_AUTO})
    loud.subscribe(["missing"])
    assert [m.topic() for m in errors(poll_all(loud))] == ["missing"]
    with embedlog.open(logdir) as log:
        assert "missing" not in log.topics()
    quiet = Consumer({**conf, "group.id": "q", "auto.offset.reset": "earliest", "embedlog.num.partitions": 2})
    quiet.subscribe(["missing"])
    assert poll_all(quiet) == []
    with embedlog.open(logdir) as log:
        assert log.topic("missing").num_partitions == 2
    quiet.close()
    loud.close()


def test_topic_created_later_by_another_process_is_consumed(conf, logdir):
    c = Consumer({**conf, "group.id": "g", **NO_AUTO})
    c.subscribe(["later"])
    m = c.poll(1.0)
    assert m is not None
    assert_unknown_topic_event(m, "later")
    script = (
        "import sys\n"
        "from embedlog import Producer\n"
        "from embedlog.admin import AdminClient, NewTopic\n"
        "conf = {'bootstrap.servers': 'file://' + sys.argv[1]}\n"
        "a = AdminClient(conf)\n"
        "a.create_topics([NewTopic('later', 2)])['later'].result()\n"
        "a.close()\n"
        "p = Producer(conf)\n"
        "for i in range(10):\n"
        "    p.produce('later', key=b'%d' % i, value=b'v%d' % i)\n"
        "assert p.flush() == 0\n"
        "p.close()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", script, logdir], check=True, env=env, timeout=60)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None:
            assert m.error() is None, m.error()            # no second UNKNOWN_TOPIC_OR_PART
            got.append(m)
    assert sorted(m.value() for m in got) == [b"v%d" % i for i in range(10)]
    assert sorted(tp.partition for tp in c.assignment()) == [0, 1]
    c.close()


def test_topic_deleted_while_subscribed_is_reported_again(conf):
    create(conf, "t", [b"1"])
    c = Consumer({**conf, "group.id": "g", **NO_AUTO})
    c.subscribe(["t", "missing"])
    first = poll_all(c, 1.0)
    assert [m.topic() for m in errors(first)] == ["missing"]
    assert [m.value() for m in first if m.error() is None] == [b"1"]
    admin = AdminClient(conf)
    admin.delete_topics(["t"])["t"].result()
    admin.close()
    errs = errors(poll_all(c, 1.0))
    assert len(errs) == 1
    assert_unknown_topic_event(errs[0], "t")
    c.close()
