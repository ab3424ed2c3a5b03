"""confluent-kafka's own ProtobufSerializer / ProtobufDeserializer and SchemaRegistryClient
against the registry's REST server, unchanged, with message classes built at test time from
FileDescriptorProtos (the protobuf runtime, not our parser); bytes cross both ways between
embedlog's serdes and confluent-kafka's."""
from __future__ import annotations

import base64
import json
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import (
    ProtobufDeserializer,
    ProtobufSerializer,
)
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    timestamp_pb2,
)

from embedlog.registry import Deserializer, Serializer, _formats, registry_for

from .data.protobuf_pairs import PAIRS

F = descriptor_pb2.FieldDescriptorProto
CTX = SerializationContext("users", MessageField.VALUE)
CONF = {"use.deprecated.format": False}
FORMAT = _formats.get("PROTOBUF")

ADDRESS_PROTO = 'syntax = "proto3";\npackage acme.geo;\nmessage Address { string city = 1; int32 zip = 2; }\n'
USER_PROTO = '''syntax = "proto3";
package acme;
import "acme/address.proto";
import "google/protobuf/timestamp.proto";
message User {
  string name = 1;
  int32 age = 2;
  repeated string tags = 3;
  .acme.geo.Address home = 4;
  .google.protobuf.Timestamp created = 5;
  map<string, int64> scores = 6;
  Role role = 7;
  message Inner { int64 x = 1; }
}
enum Role { ROLE_UNSPECIFIED = 0; ADMIN = 1; }
'''


def _field(msg, name, number, type_, type_name="", label=F.LABEL_OPTIONAL):
    f = msg.field.add(name=name, number=number, type=type_, label=label)
    if type_name:
        f.type_name = type_name


def _classes():
    """The classes protoc would generate for USER_PROTO and ADDRESS_PROTO, built by hand."""
    addr = descriptor_pb2.FileDescriptorProto(name="acme/address.proto", package="acme.geo", syntax="proto3")
    a = addr.message_type.add(name="Address")
    _field(a, "city", 1, F.TYPE_STRING)
    _field(a, "zip", 2, F.TYPE_INT32)
    user = descriptor_pb2.FileDescriptorProto(
        name="acme/user.proto", package="acme", syntax="proto3",
        dependency=["acme/address.proto", "google/protobuf/timestamp.proto"])
    u = user.message_type.add(name="User")
    _field(u, "name", 1, F.TYPE_STRING)
    _field(u, "age", 2, F.TYPE_INT32)
    _field(u, "tags", 3, F.TYPE_STRING, label=F.LABEL_REPEATED)
    _field(u, "home", 4, F.TYPE_MESSAGE, ".acme.geo.Address")
    _field(u, "created", 5, F.TYPE_MESSAGE, ".google.protobuf.Timestamp")
    _field(u, "scores", 6, F.TYPE_MESSAGE, ".acme.User.ScoresEntry", F.LABEL_REPEATED)
    _field(u, "role", 7, F.TYPE_ENUM, ".acme.Role")
    entry = u.nested_type.add(name="ScoresEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, F.TYPE_STRING)
    _field(entry, "value", 2, F.TYPE_INT64)
    inner = u.nested_type.add(name="Inner")
    _field(inner, "x", 1, F.TYPE_INT64)
    role = user.enum_type.add(name="Role")
    role.value.add(name="ROLE_UNSPECIFIED", number=0)
    role.value.add(name="ADMIN", number=1)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(addr)
    pool.Add(user)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("acme.User")), get(pool.FindMessageTypeByName("acme.User.Inner"))


User, Inner = _classes()


@pytest.fixture
def client(schema_registry):
    return SchemaRegistryClient({"url": schema_registry.url})


def _user():
    u = User(name="ann", age=31, tags=["a", "b"], role=1)
    u.home.city, u.home.zip = "Oslo", 150
    u.created.seconds = 1_700_000_000
    u.scores["q"] = 2 ** 40
    return u


def test_confluent_serializer_to_both_deserializers(client, schema_registry):
    data = ProtobufSerializer(User, client, CONF)(_user(), CTX)
    # magic 0, id, then message indexes [0] as the single byte 0
    assert data[0] == 0 and data[5] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert ProtobufDeserializer(User, CONF)(data, CTX) == _user()
    reg = registry_for(schema_registry.log)
    assert Deserializer(reg)(data) == {
        "name": "ann", "age": 31, "tags": ["a", "b"], "home": {"city": "Oslo", "zip": 150},
        "created": "2023-11-14T22:13:20Z", "scores": {"q": str(2 ** 40)}, "role": "ADMIN"}
    # the serializer registered the import as a reference under its file name; the
    # well-known timestamp.proto was skipped (skip.known.types) and resolved built in
    assert client.get_subjects() == ["acme/address.proto", "users-value"]
    latest = client.get_latest_version("users-value")
    assert latest.schema_id == schema_id and latest.schema.schema_type == "PROTOBUF"
    assert [(r.name, r.subject, r.version) for r in latest.schema.references] == [
        ("acme/address.proto", "acme/address.proto", 1)]
    # the registrations are records of _schemas in Confluent's value shape
    values = [json.loads(r.value) for r in schema_registry.log.partition("_schemas", 0).read(0)]
    assert [(v["subject"], v["schemaType"]) for v in values] == [
        ("acme/address.proto", "PROTOBUF"), ("users-value", "PROTOBUF")]
    assert values[1]["references"] == [{"name": "acme/address.proto", "subject": "acme/address.proto", "version": 1}]
    assert values[1]["schema"] == base64.b64encode(User.DESCRIPTOR.file.serialized_pb).decode()


def test_nested_message_indexes_cross_both_ways(client, schema_registry):
    data = ProtobufSerializer(Inner, client, CONF)(Inner(x=-5), CTX)
    assert data[5:8] == b"\x04\x00\x02"   # zig-zag count 2, [0, 1]: User's 2nd nested type (after ScoresEntry)
    reg = registry_for(schema_registry.log)
    assert Deserializer(reg)(data) == {"x": "-5"}
    ours = Serializer(reg, USER_PROTO, "PROTOBUF", references=[
        {"name": "acme/address.proto", "subject": "acme/address.proto", "version": 1}])
    back = ours(Inner(x=9), "users")
    assert back[5:8] == b"\x04\x00\x02"
    assert ProtobufDeserializer(Inner, CONF)(back, CTX) == Inner(x=9)


def test_embedlog_text_schema_is_the_same_schema_as_confluents_descriptor(client, schema_registry):
    reg = registry_for(schema_registry.log)
    reg.register("acme/address.proto", ADDRESS_PROTO, "PROTOBUF")
    refs = [{"name": "acme/address.proto", "subject": "acme/address.proto", "version": 1}]
    ours = Serializer(reg, USER_PROTO, "PROTOBUF", references=refs)
    value = {"name": "bo", "age": 7, "home": {"city": "Rome"}, "scores": {"k": "3"}, "role": "ADMIN"}
    data = ours(value, "users")
    got = ProtobufDeserializer(User, CONF)(data, CTX)
    assert (got.name, got.age, got.home.city, dict(got.scores), got.role) == ("bo", 7, "Rome", {"k": 3}, 1)
    # confluent's serializer registers the base64 descriptor of the same file: same ids, no new version
    theirs = ProtobufSerializer(User, client, CONF)(_user(), CTX)
    assert theirs[1:5] == data[1:5]
    assert client.get_versions("users-value") == [1] and client.get_versions("acme/address.proto") == [1]
    assert Deserializer(reg)(theirs)["home"] == {"city": "Oslo", "zip": 150}


def test_types_serialized_format_and_errors(client, schema_registry):
    assert sorted(client.get_schema_types()) == ["AVRO", "JSON", "PROTOBUF"]
    sid = client.register_schema("p-value", Schema(ADDRESS_PROTO, "PROTOBUF"))
    with urllib.request.urlopen(f"{schema_registry.url}/schemas/ids/{sid}?format=serialized", timeout=30) as r:
        body = json.loads(r.read())
    fdp = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(body["schema"]))
    assert (fdp.package, fdp.message_type[0].name, body["schemaType"]) == ("acme.geo", "Address", "PROTOBUF")
    with urllib.request.urlopen(f"{schema_registry.url}/schemas/ids/{sid}", timeout=30) as r:
        assert json.loads(r.read())["schema"] == ADDRESS_PROTO          # the text as registered
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("p-value", Schema('syntax = "proto3";\nmessage M {\n  strin a = 1;\n}', "PROTOBUF"))
    assert e.value.error_code == 42201 and "line 3:3: unknown type 'strin'" in e.value.error_message
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("p-value", Schema('syntax = "proto3";\nimport "x.proto";', "PROTOBUF"))
    assert e.value.error_code == 42201 and "'x.proto'" in e.value.error_message
    assert client.get_versions("p-value") == [1]                          # nothing written


ROWS = [r for r in PAIRS if len(r) == 6][::6]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_409_as_the_table_says(client, row):
    _name, old, new, backward = row[:4]
    client.register_schema("t-value", Schema(old, "PROTOBUF"))
    assert client.test_compatibility("t-value", Schema(new, "PROTOBUF")) is backward
    if backward:
        client.register_schema("t-value", Schema(new, "PROTOBUF"))
        same = FORMAT.parse(old, {}).canonical() == FORMAT.parse(new, {}).canonical()
        assert len(client.get_versions("t-value")) == (1 if same else 2)
    else:
        with pytest.raises(SchemaRegistryError) as e:
            client.register_schema("t-value", Schema(new, "PROTOBUF"))
        assert e.value.http_status_code == 409 and e.value.error_code == 409
        assert client.get_versions("t-value") == [1]


def test_confluent_decimal_import_is_built_in(client, schema_registry):
    from confluent_kafka.schema_registry.confluent.type import decimal_pb2
    fdp = descriptor_pb2.FileDescriptorProto(name="price.proto", package="shop", syntax="proto3",
                                             dependency=["confluent/type/decimal.proto"])
    _field(fdp.message_type.add(name="Price"), "amount", 1, F.TYPE_MESSAGE, ".confluent.type.Decimal")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(decimal_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fdp)
    price_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Price"))
    value = price_cls()
    value.amount.value, value.amount.precision, value.amount.scale = b"\x04\xd2", 4, 2
    data = ProtobufSerializer(price_cls, client, CONF)(value, CTX)      # registers no reference for it
    assert client.get_subjects() == ["users-value"]
    assert Deserializer(registry_for(schema_registry.log))(data) == {
        "amount": {"value": "BNI=", "precision": 4, "scale": 2}}
    assert ProtobufDeserializer(price_cls, CONF)(data, CTX) == value
