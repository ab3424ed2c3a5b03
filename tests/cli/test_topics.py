"""embedlog topics create|list|describe|alter|add-partitions|delete, and the directory rules."""
import os

import embedlog
from clirun import assert_error, call, parse_table, run


def test_create_as_the_issue_writes_it_then_describe(tmp_path):
    d = tmp_path / "new"            # topics create may create the log directory
    r = run("topics", "create", "--topic", "orders", "--partitions", "12", "--replication-factor", "1",
            "--config", "retention.ms=604800000", "--config", "compression.type=lz4", dir=d)
    assert r.code == 0 and r.out == "Created topic orders.\n", r
    with embedlog.open(d) as log:
        t = log.topic("orders")
        assert t.num_partitions == 12
        assert t.config["retention.ms"] == 604800000 and t.config["compression.type"] == "lz4"
    doc = run("topics", "describe", "--topic", "orders", "--json", dir=d).json
    assert len(doc) == 1 and doc[0]["partitions"] == 12 and doc[0]["replication_factor"] == 1
    # what was set, even retention.ms=604800000, its default (#20: Kafka lists it as the topic's)
    assert doc[0]["config"] == {"compression.type": "lz4", "retention.ms": 604800000}
    assert doc[0]["effective_config"]["retention.ms"] == 604800000
    assert doc[0]["effective_config"]["segment.bytes"] == 1073741824
    assert [p["partition"] for p in doc[0]["partition_details"]] == list(range(12))
    assert all(p["log_end_offset"] == 0 and p["size_bytes"] == 0 and p["segments"] == 1
               for p in doc[0]["partition_details"])


def test_create_errors(logdir):
    assert call("topics", "create", "-t", "t", "-p", "2", dir=logdir).code == 0
    assert_error(run("topics", "create", "-t", "t", dir=logdir), 1, "'t' already exists")
    assert call("topics", "create", "-t", "t", "--if-not-exists", dir=logdir).code == 0
    assert_error(call("topics", "create", "-t", "r", "--replication-factor", "3", dir=logdir), 1,
                 "replication factor 3 needs 2 mirror directories")
    assert_error(call("topics", "create", "-t", "c", "--config", "retention.msx=5", dir=logdir), 1,
                 "retention.msx", "retention.ms")
    assert_error(call("topics", "create", "-t", "c", "-c", "retention.ms=soon", dir=logdir), 1, "retention.ms")
    assert_error(call("topics", "create", "-t", "c", "-c", "retention.ms", dir=logdir), 2, "KEY=VALUE")
    assert_error(call("topics", "create", "-t", "../x", dir=logdir), 1, "'../x'")
    assert_error(call("topics", "create", "-t", "z", "-p", "0", dir=logdir), 2, "--partitions")
    with embedlog.open(logdir) as log:
        assert log.topics() == ["t"] and log.topic("t").num_partitions == 2   # nothing half-made


def test_the_log_directory_rules(tmp_path, logdir):
    assert_error(run("topics", "list"), 2, "--dir", "EMBEDLOG_DIR")
    assert_error(run("topics", "list", dir=tmp_path / "missing"), 1, "does not exist")
    assert not (tmp_path / "missing").exists()              # reading never creates a directory
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    assert_error(call("topics", "list", dir=tmp_path / "plain"), 1, "not an embedlog log directory")
    # --dir before or after the command beats EMBEDLOG_DIR
    call("topics", "create", "-t", "here", dir=logdir)
    assert call("--dir", logdir, "topics", "list", dir=tmp_path / "missing").table()[1:] == [["here", "1"]]
    assert call("topics", "list", "--dir", logdir, dir=tmp_path / "missing").table()[1:] == [["here", "1"]]


def test_list_table_json_nl(orders):
    with embedlog.open(orders) as log:
        log.create_topic("__consumer_offsets", 1, {"cleanup.policy": "compact"})
        log.create_topic("a.long.topic.name", 7)
    r = call("topics", "list", dir=orders)
    assert r.table() == [["TOPIC", "PARTITIONS"], ["__consumer_offsets", "1"], ["a.long.topic.name", "7"],
                         ["orders", "3"]]
    assert run("topics", "list", "--exclude-internal", "--json", dir=orders).json == [
        {"topic": "a.long.topic.name", "partitions": 7, "internal": False},
        {"topic": "orders", "partitions": 3, "internal": False}]
    assert [o["topic"] for o in call("topics", "list", "--nl", dir=orders).nl] == [
        "__consumer_offsets", "a.long.topic.name", "orders"]


def test_describe_offsets_sizes_and_table(orders):
    with embedlog.open(orders) as log:
        ends = [log.partition("orders", p).log_end_offset for p in range(3)]
    doc = call("topics", "describe", "--json", dir=orders).json[0]
    parts = doc["partition_details"]
    assert [p["log_end_offset"] for p in parts] == ends and sum(ends) == 6
    for p in parts:
        pdir = orders / f"orders-{p['partition']}"
        on_disk = sum(os.path.getsize(pdir / n) for n in os.listdir(pdir) if n.endswith(".log"))
        assert p["size_bytes"] == on_disk and (on_disk > 0) == (p["log_end_offset"] > 0)
    r = run("topics", "describe", "-t", "orders", dir=orders)
    first, rest = r.out.split("\n", 1)
    assert first.startswith("Topic: orders  TopicId: ") and "PartitionCount: 3" in first
    rows = parse_table(rest)
    assert rows[0] == ["PARTITION", "LOG-START-OFFSET", "LOG-END-OFFSET", "SIZE", "SEGMENTS"]
    assert [int(row[2]) for row in rows[1:]] == ends
    assert_error(run("topics", "describe", "-t", "nope", dir=orders), 1, "unknown topic 'nope'")


def test_alter_sets_and_deletes_overrides(orders):
    r = run("topics", "alter", "-t", "orders", "-c", "retention.ms=1000", "-c", "segment.bytes=100000", dir=orders)
    assert r.code == 0 and "retention.ms=1000" in r.out, r
    r = call("topics", "alter", "-t", "orders", "--delete-config", "segment.bytes", dir=orders)
    assert r.code == 0, r
    with embedlog.open(orders) as log:
        cfg = log.topic("orders").config
        assert cfg["retention.ms"] == 1000 and cfg["segment.bytes"] == 1073741824
    assert_error(run("topics", "alter", "-t", "orders", "-c", "segment.bytes=-5", dir=orders), 1, "segment.bytes")
    assert_error(call("topics", "alter", "-t", "orders", "--delete-config", "nosuch.key", dir=orders), 1, "nosuch.key")
    assert_error(call("topics", "alter", "-t", "nope", "-c", "retention.ms=1", dir=orders), 1, "unknown topic")
    assert_error(call("topics", "alter", "-t", "orders", dir=orders), 2, "nothing to change")


def test_add_partitions_warns_and_never_shrinks(orders):
    r = run("topics", "add-partitions", "-t", "orders", "--partitions", "5", dir=orders)
    assert r.code == 0 and "now has 5 partitions (was 3)" in r.out, r
    assert r.err.startswith("Warning: ") and "different partitions" in r.err and "Traceback" not in r.err
    with embedlog.open(orders) as log:
        assert log.topic("orders").num_partitions == 5
    assert_error(run("topics", "add-partitions", "-t", "orders", "-p", "4", dir=orders), 1, "never removed")
    assert_error(call("topics", "add-partitions", "-t", "orders", "-p", "5", dir=orders), 1, "must be larger")


def test_delete(orders):
    assert run("topics", "delete", "-t", "orders", dir=orders).out == "Deleted topic orders.\n"
    assert not (orders / "orders-0").exists()
    assert_error(run("topics", "delete", "-t", "orders", dir=orders), 1, "unknown topic 'orders'")
    assert_error(call("topics", "delete", "-t", "__consumer_offsets", dir=orders), 1, "internal")


def test_describe_shows_configs_set_even_when_equal_to_the_default(logdir):
    # retention.ms=604800000 is Kafka's default: set explicitly, it is still the topic's own
    r = call("topics", "create", "--topic", "t", "--partitions", "2", "--config", "retention.ms=604800000",
             "--config", "cleanup.policy=compact", dir=logdir)
    assert r.code == 0, r
    doc = call("topics", "describe", "-t", "t", "--json", dir=logdir).json[0]
    assert doc["config"] == {"cleanup.policy": "compact", "retention.ms": 604800000}
    first = call("topics", "describe", "-t", "t", dir=logdir).out.split("\n", 1)[0]
    assert first.endswith("ReplicationFactor: 1  Configs: cleanup.policy=compact,retention.ms=604800000"), first
    # set to the default by alter: still shown; deleted: gone
    assert call("topics", "alter", "--topic", "t", "--config", "segment.bytes=1073741824", dir=logdir).code == 0
    assert call("topics", "describe", "-t", "t", "--json", dir=logdir).json[0]["config"]["segment.bytes"] == 1073741824
    assert call("topics", "alter", "--topic", "t", "--delete-config", "retention.ms", dir=logdir).code == 0
    assert "retention.ms" not in call("topics", "describe", "-t", "t", "--json", dir=logdir).json[0]["config"]
    # the API and another process see the same (DescribeConfigs' source)
    with embedlog.open(logdir) as log:
        assert log.topic("t").config_overrides == {"cleanup.policy": "compact", "segment.bytes": 1073741824}
    from embedlog.admin import AdminClient, ConfigResource, ResourceType
    admin = AdminClient({"bootstrap.servers": f"file://{logdir}"})
    (fut,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, "t")]).values()
    entries = fut.result()
    assert not entries["segment.bytes"].is_default and entries["retention.ms"].is_default
    admin.close() if hasattr(admin, "close") else None
    # --all-configs: one per line, defaults marked
    lines = call("topics", "describe", "-t", "t", "--all-configs", dir=logdir).out.split("\n")
    assert lines[0].endswith("Configs:")
    assert "  segment.bytes=1073741824" in lines and "  retention.ms=604800000  (default)" in lines
    assert "  cleanup.policy=compact" in lines


def test_delete_records_as_kafka_delete_records(orders, tmp_path):
    with embedlog.open(orders) as log:
        ends = [log.partition("orders", p).log_end_offset for p in range(3)]
    assert ends == [3, 2, 1]
    r = call("topics", "delete-records", "--topic", "orders", "-p", "0", "--before", "2", "--json", dir=orders)
    assert r.code == 0 and r.json == [{"topic": "orders", "partition": 0, "low_watermark": 2, "error": None}], r
    # the rest of partition 0 is what a reader sees
    assert call("consume", "orders", "-p", "0", dir=orders).lines() == ["a3"]
    spec = tmp_path / "offsets.json"
    spec.write_text('{"partitions": [{"topic": "orders", "partition": 1, "offset": -1}], "version": 1}')
    r = call("topics", "delete-records", "--offset-json-file", spec, dir=orders)
    assert r.code == 0, r
    assert call("consume", "orders", "-p", "1", dir=orders).lines() == []
    with embedlog.open(orders) as log:
        assert [log.partition("orders", p).watermarks() for p in range(3)] == [(2, 3), (2, 2), (0, 1)]
    # beyond the high watermark: refused, that partition unchanged, the others done
    r = call("topics", "delete-records", "--topic", "orders", "--before", "3", dir=orders)
    assert_error(r, 1, "failed", "high watermark")
    with embedlog.open(orders) as log:
        assert [log.partition("orders", p).watermarks() for p in range(3)] == [(3, 3), (2, 2), (0, 1)]
    assert_error(call("topics", "delete-records", dir=orders), 2, "--offset-json-file")
    assert_error(call("topics", "delete-records", "--topic", "orders", dir=orders), 2, "--before")
    spec.write_text('{"partitions": [{"topic": "orders"}]}')
    assert_error(call("topics", "delete-records", "--offset-json-file", spec, dir=orders), 2, "shape")
