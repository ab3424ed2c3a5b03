"""confluent-kafka's own SchemaRegistryClient, AvroSerializer and AvroDeserializer against
the registry's REST server, unchanged; and embedlog's serdes against confluent-kafka's."""
import json

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from embedlog.registry import Deserializer, Serializer, registry_for

from .data.avro_pairs import PAIRS

USER = json.dumps({"type": "record", "name": "User", "namespace": "acme",
                   "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]})
USER2 = json.dumps({"type": "record", "name": "User", "namespace": "acme",
                    "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"},
                               {"name": "email", "type": ["null", "string"], "default": None}]})
CTX = SerializationContext("users", MessageField.VALUE)


@pytest.fixture
def client(schema_registry):
    return SchemaRegistryClient({"url": schema_registry.url})


def test_confluent_serializer_round_trip(client, schema_registry):
    ser = AvroSerializer(client, USER)
    data = ser({"name": "ann", "age": 31}, CTX)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
    assert AvroDeserializer(client)(data, CTX) == {"name": "ann", "age": 31}
    # The registration is a record of _schemas, in Confluent's key shape.
    records = schema_registry.log.partition("_schemas", 0).read(0)
    assert json.loads(records[0].key) == {"keytype": "SCHEMA", "subject": "users-value", "version": 1, "magic": 1}
    value = json.loads(records[0].value)
    assert value["id"] == 1 and value["schema"] == USER and value["deleted"] is False and "schemaType" not in value


def test_client_calls(client):
    first = client.register_schema("users-value", Schema(USER, "AVRO"))
    again = client.register_schema("other-value", Schema(USER, "AVRO"))
    assert first == again == 1                            # one schema, one id, across subjects
    assert client.register_schema("users-value", Schema(USER2, "AVRO")) == 2
    assert client.get_subjects() == ["other-value", "users-value"]
    assert client.get_versions("users-value") == [1, 2]
    latest = client.get_latest_version("users-value")
    assert (latest.version, latest.schema_id, latest.schema.schema_str) == (2, 2, USER2)
    assert client.get_version("users-value", 1).schema.schema_str == USER
    assert client.get_schema(2).schema_str == USER2
    found = client.lookup_schema("users-value", Schema(USER, "AVRO"))
    assert (found.version, found.schema_id) == (1, 1)
    assert sorted(client.get_subjects_by_schema_id(1)) == ["other-value", "users-value"]
    assert client.get_compatibility() == "BACKWARD"
    client.set_compatibility("users-value", "FULL")
    assert client.get_compatibility("users-value") == "FULL"
    assert client.test_compatibility("users-value", Schema(USER, "AVRO")) is True
    assert sorted(client.get_schema_types()) == ["AVRO", "JSON", "PROTOBUF"]
    assert client.delete_version("users-value", 2) == 2
    assert client.get_versions("users-value") == [1]
    assert client.delete_subject("other-value") == [1]
    assert client.delete_subject("other-value", permanent=True) == [1]
    assert client.get_subjects() == ["users-value"]
    assert client.get_schema(1).schema_str == USER        # still held by users-value


@pytest.mark.parametrize("name,old,new,backward", [r[:4] for r in PAIRS[:12]], ids=[r[0] for r in PAIRS[:12]])
def test_409_as_the_table_says(client, name, old, new, backward):
    client.register_schema("t-value", Schema(json.dumps(old), "AVRO"))
    if backward:
        client.register_schema("t-value", Schema(json.dumps(new), "AVRO"))
        assert len(client.get_versions("t-value")) == (1 if old == new else 2)
    else:
        with pytest.raises(SchemaRegistryError) as e:
            client.register_schema("t-value", Schema(json.dumps(new), "AVRO"))
        assert e.value.http_status_code == 409 and e.value.error_code == 409
        assert client.get_versions("t-value") == [1]


def test_errors(client):
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("x-value", Schema('{"type": "record", "name": "R", "fields": [{"name": "a"}]}', "AVRO"))
    assert e.value.error_code == 42201 and "field" in e.value.error_message.lower() or "type" in e.value.error_message
    with pytest.raises(SchemaRegistryError) as e:
        client.get_latest_version("nope")
    assert e.value.error_code == 40401 and e.value.http_status_code == 404
    client.register_schema("x-value", Schema(USER, "AVRO"))
    with pytest.raises(SchemaRegistryError) as e:
        client.get_version("x-value", 7)
    assert e.value.error_code == 40402
    with pytest.raises(SchemaRegistryError) as e:
        client.get_schema(99)
    assert e.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as e:
        client.delete_subject("x-value", permanent=True)
    assert e.value.error_code == 40405
    with pytest.raises(SchemaRegistryError) as e:
        client.set_compatibility("x-value", "SIDEWAYS")
    assert e.value.error_code == 42203


def test_raw_http(schema_registry):
    import urllib.error
    import urllib.request

    def call(method, path, body=None):
        req = urllib.request.Request(schema_registry.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers["Content-Type"], json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], json.loads(e.read())

    odd = "..%2F..%2Fetc%2Fpasswd"            # a path-traversal-like subject is just a name
    status, ctype, body = call("POST", f"/subjects/{odd}/versions", {"schema": USER})
    assert (status, body) == (200, {"id": 1, "version": 1, "schema": USER})
    assert ctype.startswith("application/vnd.schemaregistry.v1+json")
    assert call("GET", "/subjects")[2] == ["../../etc/passwd"]
    assert call("GET", f"/subjects/{odd}/versions/latest")[2]["subject"] == "../../etc/passwd"
    status, _c, body = call("GET", f"/subjects/{odd}/versions/0")
    assert (status, body["error_code"]) == (422, 42202)
    status, _c, body = call("GET", f"/subjects/{odd}/versions/abc")
    assert (status, body["error_code"]) == (422, 42202)
    status, _c, body = call("POST", f"/compatibility/subjects/{odd}/versions/latest?verbose=true",
                            {"schema": json.dumps({"type": "record", "name": "User", "namespace": "acme",
                                                   "fields": [{"name": "zip", "type": "int"}]})})
    assert status == 200 and body["is_compatible"] is False and "zip" in body["messages"][0]
    assert call("GET", "/schemas/ids/1/versions")[2] == [{"subject": "../../etc/passwd", "version": 1}]
    assert call("PUT", "/config", {"compatibility": "NONE"})[2] == {"compatibility": "NONE"}
    assert call("GET", "/config")[2] == {"compatibilityLevel": "NONE"}
    assert call("GET", f"/config/{odd}")[2]["error_code"] == 40408
    status, _c, body = call("POST", "/subjects/a/versions", {"schema": "{not json"})
    assert (status, body["error_code"]) == (422, 42201) and "not JSON" in body["message"]
    assert call("GET", "/subjects")[2] == ["../../etc/passwd"]        # nothing written
    assert call("PUT", "/mode", {"mode": "READONLY"})[2] == {"mode": "READONLY"}
    status, _c, body = call("POST", f"/subjects/{odd}/versions", {"schema": USER2})
    assert (status, body["error_code"]) == (422, 42205)


def test_embedlog_serializer_read_by_confluent_and_back(client, schema_registry):
    reg = registry_for(schema_registry.log)
    ours = Serializer(reg, USER)
    data = ours({"name": "bo", "age": 7}, "users")
    assert AvroDeserializer(client)(data, CTX) == {"name": "bo", "age": 7}
    theirs = AvroSerializer(client, USER2)({"name": "cy", "age": 8, "email": "c@x"}, CTX)
    assert Deserializer(reg)(theirs) == {"name": "cy", "age": 8, "email": "c@x"}
    assert reg.versions("users-value") == [1, 2]
