"""Schema validation on produce (issue #15): topics with confluent.value.schema.validation /
confluent.key.schema.validation refuse, in Producer.produce(), Producer.produce_batch() and
the wire server's Produce, a record whose value (key) lacks Confluent's header or names an
id not registered under <topic>-value (-key). Each refusal checks that nothing was written."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from embedlog import ConfigError, KafkaException, Producer
from embedlog.registry import Serializer, registry_for
from embedlog.registry._enforce import INVALID_RECORD, InvalidRecordError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "cli"))   # as tests/cli has it
from clirun import run

A = json.dumps({"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]})
A2 = json.dumps({"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"},
                                                          {"name": "b", "type": "int", "default": 0}]})
B = json.dumps({"type": "record", "name": "B", "fields": [{"name": "b", "type": "int"}]})
ON = {"confluent.value.schema.validation": "true"}


def _ends(log, topic):
    t = log.topic(topic)
    return [t.partition(p).watermarks()[1] for p in range(t.num_partitions)]


def _with_id(data: bytes, schema_id: int) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + data[5:]


@pytest.fixture
def setup(embedlog, embedlog_config):
    """orders (3 partitions, value validation on) with schema id 1 under orders-value, and
    id 2 registered under payments-value only; a producer on the directory."""
    embedlog.create_topic("orders", 3, ON)
    reg = registry_for(embedlog)
    good = Serializer(reg, A)({"a": 1}, "orders")
    other = Serializer(reg, B)({"b": 1}, "payments")
    assert (good[1:5], other[1:5]) == (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")
    p = Producer({**embedlog_config, "linger.ms": 0})
    yield embedlog, reg, p, good, other
    p.close()


def _refused(log, p, topic, value, *, key=None, match):
    """produce() and produce_batch() both raise InvalidRecordError (a KafkaException with
    INVALID_RECORD) matching `match`, and no partition of `topic` moves."""
    before = _ends(log, topic)
    with pytest.raises(InvalidRecordError, match=match) as e1:
        p.produce(topic, value, key=key)
    with pytest.raises(InvalidRecordError, match=match) as e2:
        p.produce_batch(topic, [value], keys=[key])
    p.flush()
    assert _ends(log, topic) == before
    for e in (e1, e2):
        assert isinstance(e.value, KafkaException) and e.value.args[0].code() == INVALID_RECORD == 87
        assert e.value.topic == topic
    assert e1.value.record is None and e2.value.record == 0
    return e1.value


def test_registered_id_and_tombstones_pass(setup):
    log, _reg, p, good, _other = setup
    p.produce("orders", good, key=b"k1")
    p.produce("orders", None, key=b"k1")                     # a tombstone has no schema
    assert p.produce_batch("orders", [good, None, good], keys=[b"a", b"b", b"c"]) == 3
    p.flush()
    assert sum(_ends(log, "orders")) == 5
    got = sorted((r.key, r.value or b"") for part in range(3) for r in log.partition("orders", part).read(0))
    assert got == sorted([(b"k1", good), (b"k1", b""), (b"a", good), (b"b", b""), (b"c", good)])


def test_refusals_name_topic_record_and_id(setup):
    log, reg, p, good, other = setup
    e = _refused(log, p, "orders", _with_id(good, 77), match=r"record .*'orders'.*schema id 77.*does not know")
    assert e.schema_id == 77 and e.field == "value"
    e = _refused(log, p, "orders", other, match=r"schema id 2, registered under 'payments-value', not under "
                                                r"subject 'orders-value'")
    assert e.schema_id == 2
    e = _refused(log, p, "orders", b"plain json", match="does not start with Confluent's schema header")
    assert e.schema_id is None
    _refused(log, p, "orders", b"\x00\x00\x01", match="schema header")            # shorter than the header
    _refused(log, p, "orders", b"\x01" + good[1:], match="schema header")         # magic byte not 0
    reg.delete_version("orders-value", 1)                                         # soft delete
    _refused(log, p, "orders", good, match="schema id 1, whose version 1 under subject 'orders-value' is soft-deleted")
    assert sum(_ends(log, "orders")) == 0


def test_produce_batch_with_one_bad_record_writes_none(setup):
    log, _reg, p, good, _other = setup
    values = [good] * 50
    values[37] = _with_id(good, 9)
    with pytest.raises(InvalidRecordError, match="record 37 of the produce_batch call to topic 'orders'.*id 9") as e:
        p.produce_batch("orders", values, keys=[b"k%d" % i for i in range(50)])     # all three partitions
    assert e.value.record == 37
    p.flush()
    assert _ends(log, "orders") == [0, 0, 0]


def test_key_validation(embedlog, embedlog_config):
    embedlog.create_topic("users", 1, {"confluent.key.schema.validation": True})
    reg = registry_for(embedlog)
    key = Serializer(reg, A, key=True)({"a": 1}, "users")        # id 1 under users-key
    with Producer(embedlog_config) as p:
        p.produce("users", b"any value, not checked", key=key)
        p.produce("users", b"keyless", key=None)
        p.flush()
        with pytest.raises(InvalidRecordError, match="its key does not start") as e:
            p.produce_batch("users", [b"v", b"v"], keys=[key, b"plain key"])
        assert (e.value.field, e.value.record) == ("key", 1)
        p.flush()
    assert _ends(embedlog, "users") == [2]


def test_config_off_checks_nothing(embedlog, embedlog_config):
    embedlog.create_topic("free", 1)
    embedlog.create_topic("off", 1, {"confluent.value.schema.validation": "false"})
    with Producer(embedlog_config) as p:
        for topic in ("free", "off"):
            p.produce(topic, b"plain")
            p.produce_batch(topic, [b"\x00\x00\x00\x00\x63", None, b"x"])
        p.flush()
    assert _ends(embedlog, "free") == _ends(embedlog, "off") == [4]
    assert "_schemas" not in embedlog.topics()               # the registry was never asked


def test_config_turned_on_later_applies_to_a_live_producer(embedlog, embedlog_config):
    embedlog.create_topic("late", 1)
    with Producer({**embedlog_config, "linger.ms": 0}) as p:
        p.produce("late", b"plain")
        p.flush()
        embedlog.alter_topic_config("late", {"confluent.value.schema.validation": "true"})
        with pytest.raises(InvalidRecordError):
            p.produce_batch("late", [b"plain"])               # every call reads the config
        p.produce("late", b"queued before the producer's next send")   # the send picks up the change
        p.flush()
        with pytest.raises(InvalidRecordError):
            p.produce("late", b"plain")
        p.flush()
    assert _ends(embedlog, "late") == [2]


def test_schema_registered_or_deleted_by_another_process(setup, embedlog_dir):
    """The producer's check cached the ids of orders-value; another process then registers
    version 2 (a new id): produce() and produce_batch() accept it at once. Then it
    soft-deletes version 1: the next produce() and produce_batch() refuse id 1."""
    log, _reg, p, good, _other = setup
    p.produce("orders", good)
    p.flush()
    script = textwrap.dedent(f"""
        import sys, embedlog
        from embedlog.registry import registry_for
        with embedlog.open(sys.argv[1]) as log:
            reg = registry_for(log)
            if sys.argv[2] == "register":
                print(reg.register("orders-value", {A2!r}).id)
            else:
                reg.delete_version("orders-value", 1)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(embedlog_dir), "register"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "3"
    new = _with_id(good, 3)
    p.produce("orders", new)
    p.produce_batch("orders", [new, good])
    p.flush()
    assert sum(_ends(log, "orders")) == 4
    subprocess.run([sys.executable, "-c", script, str(embedlog_dir), "delete"], timeout=120, check=True)
    _refused(log, p, "orders", good, match="schema id 1, whose version 1 .* is soft-deleted")
    assert sum(_ends(log, "orders")) == 4


def test_config_values_are_validated_everywhere(embedlog, embedlog_dir):
    with pytest.raises(ConfigError, match="confluent.value.schema.validation must be true or false"):
        embedlog.create_topic("bad", 1, {"confluent.value.schema.validation": "yes"})
    assert "bad" not in embedlog.topics()
    embedlog.create_topic("t", 1)
    with pytest.raises(ConfigError, match="confluent.key.schema.validation"):
        embedlog.alter_topic_config("t", {"confluent.key.schema.validation": 1})
    assert embedlog.topic("t").config["confluent.key.schema.validation"] is False
    r = run("topics", "create", "-t", "cli", "-c", "confluent.value.schema.validation=true", dir=embedlog_dir)
    assert r.code == 0, r
    assert embedlog.topic("cli").config_overrides == {"confluent.value.schema.validation": True}


def test_wire_produce_gets_invalid_record(embedlog, embedlog_broker):
    """confluent-kafka's Producer against `embedlog serve`: the bad record's delivery report
    carries INVALID_RECORD, the good ones are written, the bad one is not."""
    ck = pytest.importorskip("confluent_kafka")
    embedlog.create_topic("wire", 1, ON)
    good = Serializer(registry_for(embedlog), A)({"a": 5}, "wire")
    p = ck.Producer({"bootstrap.servers": embedlog_broker.bootstrap, "log_level": 3, "linger.ms": 0,
                     "enable.idempotence": True,   # the record after a refused one still lines up
                     "compression.type": "lz4"})                  # the check decodes the client's batch
    reports = []

    def dr(err, msg):
        reports.append((msg.value(), err))

    p.produce("wire", good, on_delivery=dr)
    assert p.flush(30) == 0
    p.produce("wire", _with_id(good, 41), on_delivery=dr)
    assert p.flush(30) == 0
    p.produce("wire", good, on_delivery=dr)
    assert p.flush(30) == 0
    assert [err is None for _v, err in reports] == [True, False, True]
    err = reports[1][1]
    assert err.code() == ck.KafkaError.INVALID_RECORD == 87 and not err.retriable(), err
    assert _ends(embedlog, "wire") == [2]
    assert [r.value for r in embedlog.partition("wire", 0).read(0)] == [good, good]
