"""Log directory and topics: names, configs, persistence, bad input."""
import json
import os

import pytest

import embedlog
from embedlog import (ConfigError, FormatVersionError, InvalidPartitionsError, InvalidTopicError,
                      LogClosedError, TopicExistsError, UnknownTopicOrPartitionError)


@pytest.mark.parametrize("name", ["../x", "a/b", "", "\0", "a\0b", ".", "..", "x" * 250, "é", "a b",
                                  "..\\evil", "/abs"])
def test_bad_topic_names_are_rejected_before_any_file_is_touched(tmp_path, name):
    with embedlog.open(tmp_path / "log") as log:
        before = sorted(os.listdir(log.path)), sorted(os.listdir(tmp_path))
        with pytest.raises(InvalidTopicError):
            log.create_topic(name)
        with pytest.raises(InvalidTopicError):
            log.topic(name)
        assert (sorted(os.listdir(log.path)), sorted(os.listdir(tmp_path))) == before


@pytest.mark.parametrize("name", ["a", "A-b_c.d", "__consumer_offsets", "x" * 249, "0"])
def test_good_topic_names(log, name):
    t = log.create_topic(name, partitions=2)
    assert t.name == name and log.topics() == [name]
    assert os.path.isdir(os.path.join(log.path, f"{name}-1"))


def test_topic_name_must_be_str(log):
    with pytest.raises(InvalidTopicError, match="must be a str"):
        log.create_topic(b"bytes")


def test_create_list_reopen_delete(tmp_path):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        log.create_topic("orders", partitions=3, config={"retention.ms": "1000", "cleanup.policy": "compact"})
        log.create_topic("events")
        with pytest.raises(TopicExistsError, match="orders"):
            log.create_topic("orders")
        log.topic("orders").partition(2).append_records([b"v"])
    with embedlog.open(path) as log:
        assert log.topics() == ["events", "orders"]
        t = log.topic("orders")
        assert t.num_partitions == 3
        assert t.config["retention.ms"] == 1000 and t.config["cleanup.policy"] == "compact"
        assert t.config["segment.bytes"] == 1073741824     # defaults filled in
        assert t.partition(2).log_end_offset == 1
        meta = json.load(open(os.path.join(path, "topics", "orders.json")))
        assert meta["config"] == {"retention.ms": 1000, "cleanup.policy": "compact"}
        log.delete_topic("orders")
        assert log.topics() == ["events"]
        assert not os.path.exists(os.path.join(path, "orders-0"))
        with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'orders'"):
            log.topic("orders")


def test_unknown_config_key_names_the_key_and_suggests(log):
    with pytest.raises(ConfigError, match=r"'retention\.msec'.*did you mean 'retention\.ms'"):
        log.create_topic("t", config={"retention.msec": 5})
    assert log.topics() == []


@pytest.mark.parametrize("config,match", [
    ({"segment.bytes": "big"}, "segment.bytes must be an integer"),
    ({"segment.bytes": 1}, "between 14"),
    ({"cleanup.policy": "shred"}, "cleanup.policy"),
    ({"compression.type": "brotli"}, "compression.type must be one of"),
    ({"min.cleanable.dirty.ratio": 2}, "between 0.0 and 1.0"),
    ({"preallocate": "maybe"}, "true or false"),
    ({"retention.ms": True}, "integer"),
])
def test_bad_config_values(log, config, match):
    with pytest.raises(ConfigError, match=match):
        log.create_topic("t", config=config)
    assert log.topics() == []


def test_bad_partition_counts(log):
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(InvalidPartitionsError):
            log.create_topic("t", partitions=bad)
    with pytest.raises(embedlog.InvalidReplicationFactorError, match="replication factor 3 needs 2 mirror"):
        log.create_topic("t", replication_factor=3)
    assert "t" not in log.topics()
    t = log.create_topic("t", partitions=2)
    for bad in (2, -1, "0"):
        with pytest.raises(UnknownTopicOrPartitionError):
            t.partition(bad)


def test_use_after_close(tmp_path):
    log = embedlog.open(tmp_path / "log")
    p = log.create_topic("t").partition(0)
    log.close()
    with pytest.raises(LogClosedError):
        log.topics()
    with pytest.raises(LogClosedError):
        p.append_records([b"x"])
    with pytest.raises(LogClosedError):
        p.read(0)
    log.close()  # idempotent


def test_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("mine")
    with pytest.raises(FormatVersionError, match="not empty"):
        embedlog.open(tmp_path / "data")
    assert os.listdir(tmp_path / "data") == ["precious.txt"]


def test_newer_format_version_is_a_clear_error(tmp_path):
    embedlog.open(tmp_path / "log").close()
    (tmp_path / "log" / "embedlog.json").write_text('{"format": "embedlog", "version": 99}')
    with pytest.raises(FormatVersionError, match="newer embedlog"):
        embedlog.open(tmp_path / "log")


def test_open_without_create(tmp_path):
    with pytest.raises(FileNotFoundError):
        embedlog.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_file_url_and_pathlike(tmp_path):
    with embedlog.open(f"file://{tmp_path}/viaurl") as log:
        assert log.path == str(tmp_path / "viaurl")
    with pytest.raises(TypeError):
        embedlog.open(42)


def test_topic_append_routes_like_kafka(log, vectors):
    t = log.create_topic("t", partitions=12)
    keys = [f"key-{i}".encode() for i in range(200)]
    placed = t.append([b"v%d" % i for i in range(200)], keys=keys)
    from embedlog.storage._partitioner import partition_for_key
    for p, _res in placed:
        got = [r.key for r in t.partition(p).read(0)]
        assert got and all(partition_for_key(k, 12) == p for k in got)
    assert sum(t.partition(p).log_end_offset for p in range(12)) == 200
    # explicit partition wins; null keys share one sticky partition per call
    t.append([b"x", b"y"], keys=[b"key-1", None], partition=5)
    assert [r.value for r in t.partition(5).read(0)][-2:] == [b"x", b"y"]
    res = t.append([b"n1", b"n2", b"n3"])
    assert len(res) == 1 and res[0][1].last_offset - res[0][1].base_offset == 2


def test_trailing_newline_is_not_a_valid_topic_name(log):
    with pytest.raises(InvalidTopicError):
        log.create_topic("abc\n")


def test_dot_topics_are_listed(log):
    log.create_topic(".hidden")
    assert log.topics() == [".hidden"] and ".hidden" in log
