"""AdminClient: futures keyed by name, Kafka's errors."""
import pytest

import embedlog
from embedlog import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from embedlog.admin import (AdminClient, ConfigResource, ConsumerGroupTopicPartitions, NewPartitions,
                            NewTopic, ResourceType)


def code_of(future):
    with pytest.raises(KafkaException) as e:
        future.result()
    return e.value.args[0].code()


def test_create_list_delete_topics(conf):
    a = AdminClient(conf)
    fs = a.create_topics([NewTopic("a", 3, config={"retention.ms": "1000"}), NewTopic("b", 1),
                          NewTopic("a", 1), NewTopic("../bad", 1), NewTopic("c", 1, config={"nope": 1})])
    assert fs["b"].result() is None
    assert code_of(fs["../bad"]) == KafkaError.INVALID_TOPIC_EXCEPTION
    assert code_of(fs["c"]) == KafkaError.INVALID_CONFIG
    md = a.list_topics()
    assert set(md.topics) == {"a", "b"} and len(md.topics["a"].partitions) == 3
    assert code_of(a.create_topics([NewTopic("a", 1)])["a"]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert a.create_topics([NewTopic("v", 1)], validate_only=True)["v"].result() is None
    assert "v" not in a.list_topics().topics
    assert a.delete_topics(["b"])["b"].result() is None
    assert code_of(a.delete_topics(["b"])["b"]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert set(a.list_topics().topics) == {"a"}
    a.close()


def test_create_partitions_grows_only_and_warns(conf, logdir):
    a = AdminClient(conf)
    a.create_topics([NewTopic("g", 2)])["g"].result()
    with pytest.warns(UserWarning, match="different partitions"):
        assert a.create_partitions([NewPartitions("g", 5)])["g"].result() is None
    assert len(a.list_topics().topics["g"].partitions) == 5
    assert code_of(a.create_partitions([NewPartitions("g", 3)])["g"]) == KafkaError.INVALID_PARTITIONS
    assert code_of(a.create_partitions([NewPartitions("g", 5)])["g"]) == KafkaError.INVALID_PARTITIONS
    p = Producer(conf)
    p.produce("g", value=b"x", partition=4)
    assert p.flush() == 0
    with embedlog.open(logdir) as log:
        assert log.partition("g", 4).log_end_offset == 1
    a.close()


def test_describe_and_alter_configs(conf, logdir):
    a = AdminClient(conf)
    a.create_topics([NewTopic("t", 1, config={"retention.ms": 1000})])["t"].result()
    res = ConfigResource(ResourceType.TOPIC, "t")
    entries = a.describe_configs([res])[res].result()
    assert entries["retention.ms"].value == "1000" and not entries["retention.ms"].is_default
    assert entries["segment.bytes"].value == "1073741824" and entries["segment.bytes"].is_default
    a.incremental_alter_configs([ConfigResource("topic", "t", set_config={"segment.bytes": "2000"})]) \
        [ConfigResource("topic", "t")].result()
    entries = a.describe_configs([res])[res].result()
    assert entries["segment.bytes"].value == "2000" and entries["retention.ms"].value == "1000"
    a.alter_configs([ConfigResource("topic", "t", set_config={"cleanup.policy": "compact"})]) \
        [ConfigResource("topic", "t")].result()
    entries = a.describe_configs([res])[res].result()
    assert entries["cleanup.policy"].value == "compact"
    assert entries["retention.ms"].is_default                  # non-incremental: replaced
    bad = ConfigResource("topic", "t", set_config={"segment.bytes": "huge"})
    assert code_of(a.alter_configs([bad])[bad]) == KafkaError.INVALID_CONFIG
    assert code_of(a.describe_configs([ConfigResource("topic", "zz")])[ConfigResource("topic", "zz")]) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    a.close()
    with embedlog.open(logdir) as log:
        assert log.topic("t").config["cleanup.policy"] == "compact"


def test_config_change_takes_effect_in_the_same_process(conf, logdir):
    a = AdminClient(conf)
    a.create_topics([NewTopic("s", 1)])["s"].result()
    p = Producer(conf)
    p.produce("s", value=b"x" * 100)
    p.flush()
    a.incremental_alter_configs([ConfigResource("topic", "s", set_config={"max.message.bytes": "150"})]) \
        [ConfigResource("topic", "s")].result()
    errs = []
    p.produce("s", value=b"x" * 200, on_delivery=lambda e, m: errs.append(e))
    p.flush()
    assert errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_groups_and_offsets(conf):
    a = AdminClient(conf)
    a.create_topics([NewTopic("t", 2)])["t"].result()
    p = Producer(conf)
    for i in range(10):
        p.produce("t", value=b"x", partition=i % 2)
    p.flush()
    c = Consumer({**conf, "group.id": "grp", "client.id": "worker-1", "auto.offset.reset": "earliest"})
    c.subscribe(["t"])
    got = 0
    while got < 10:
        m = c.poll(5)
        assert m is not None
        got += m.error() is None
    listing = a.list_consumer_groups().result()
    assert [g.group_id for g in listing.valid] == ["grp"]
    desc = a.describe_consumer_groups(["grp"])["grp"].result()
    assert desc.state == "Stable" and desc.partition_assignor == "range" and len(desc.members) == 1
    assert desc.members[0].client_id == "worker-1"
    assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1]
    req = ConsumerGroupTopicPartitions("grp", [TopicPartition("t", 0, 3)])
    assert code_of(a.alter_consumer_group_offsets([req])["grp"]) == KafkaError.UNKNOWN_MEMBER_ID  # active
    c.close()
    res = a.alter_consumer_group_offsets([req])["grp"].result()
    assert [(tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions] == [("t", 0, 3)]
    bad = ConsumerGroupTopicPartitions("grp", [TopicPartition("t", 0, 99)])
    assert code_of(a.alter_consumer_group_offsets([bad])["grp"]) == KafkaError.OFFSET_OUT_OF_RANGE
    got = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("grp")])["grp"].result()
    assert {(tp.partition, tp.offset) for tp in got.topic_partitions} == {(0, 3), (1, 5)}
    assert a.describe_consumer_groups(["grp"])["grp"].result().state == "Empty"
    a.close()
