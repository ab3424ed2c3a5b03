"""embedlog's serializer/deserializer: the subject name strategies, auto-register on and
off, use.latest.version, the wire header, and JSON Schema against confluent-kafka's
JSONSerializer/JSONDeserializer through the REST server."""
import json

import pytest

from embedlog.registry import (
    Deserializer,
    RegistryError,
    SchemaNotFound,
    Serializer,
    record_subject_name_strategy,
    registry_for,
    topic_record_subject_name_strategy,
)
from embedlog.registry._formats import SerializationError

USER = json.dumps({"type": "record", "name": "User", "namespace": "acme",
                   "fields": [{"name": "name", "type": "string"}]})
USER2 = json.dumps({"type": "record", "name": "User", "namespace": "acme",
                    "fields": [{"name": "name", "type": "string"}, {"name": "n", "type": "int", "default": 5}]})


@pytest.fixture
def reg(embedlog):
    return registry_for(embedlog)


def test_strategies(reg):
    Serializer(reg, USER)({"name": "a"}, "orders")
    Serializer(reg, USER, key=True)({"name": "a"}, "orders")
    Serializer(reg, USER, conf={"subject.name.strategy": record_subject_name_strategy})({"name": "a"}, "orders")
    Serializer(reg, USER, conf={"subject.name.strategy": topic_record_subject_name_strategy})({"name": "a"}, "t")
    assert reg.subjects() == ["acme.User", "orders-key", "orders-value", "t-acme.User"]
    with pytest.raises(SerializationError):
        Serializer(reg, '"string"', conf={"subject.name.strategy": record_subject_name_strategy})("x", "t")


def test_header_and_round_trip(reg):
    data = Serializer(reg, USER)({"name": "zoë"}, "t")
    assert data[:5] == b"\x00\x00\x00\x00\x01"
    assert Deserializer(reg)(data) == {"name": "zoë"}
    assert Serializer(reg, USER)(None, "t") is None and Deserializer(reg)(None) is None
    with pytest.raises(SerializationError):
        Deserializer(reg)(b"\x01" + data[1:])                 # wrong magic byte
    with pytest.raises(SerializationError):
        Deserializer(reg)(b"\x00\x00")
    with pytest.raises(SchemaNotFound):
        Deserializer(reg)(b"\x00\x00\x00\x00\x63" + data[5:])  # id 99 was never given


def test_auto_register_off_and_latest(reg):
    with pytest.raises(RegistryError) as e:
        Serializer(reg, USER, conf={"auto.register.schemas": False})({"name": "a"}, "t")
    assert e.value.error_code == 40401 and reg.subjects() == []
    reg.register("t-value", USER)
    reg.register("t-value", USER2)
    old = Serializer(reg, USER, conf={"auto.register.schemas": False})({"name": "a"}, "t")
    assert old[1:5] == (1).to_bytes(4, "big")
    latest = Serializer(reg, None, conf={"auto.register.schemas": False, "use.latest.version": True})
    data = latest({"name": "b", "n": 9}, "t")
    assert data[1:5] == (2).to_bytes(4, "big") and Deserializer(reg)(data) == {"name": "b", "n": 9}
    with pytest.raises(RegistryError):
        Serializer(reg, USER, conf={"use.latest.version": True})     # needs auto-register off
    with pytest.raises(RegistryError):
        Serializer(reg, USER, conf={"auto.register": False})         # a misspelt key


def test_json_schema_with_confluent_serdes(schema_registry):
    pytest.importorskip("embedlog.registry._jsonschema")
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import (
        JSONDeserializer,
        JSONSerializer,
    )
    from confluent_kafka.serialization import MessageField, SerializationContext
    schema = json.dumps({"type": "object", "title": "Order", "properties": {"id": {"type": "integer"}},
                         "required": ["id"]})
    client = SchemaRegistryClient({"url": schema_registry.url})
    ctx = SerializationContext("orders", MessageField.VALUE)
    theirs = JSONSerializer(schema, client)({"id": 7}, ctx)
    reg = registry_for(schema_registry.log)
    assert Deserializer(reg)(theirs) == {"id": 7}
    assert reg.get_version("orders-value").schema_type == "JSON"
    ours = Serializer(reg, schema, "JSON")({"id": 8}, "orders")
    assert JSONDeserializer(schema)(ours, ctx) == {"id": 8}
