"""JSON Schema format (embedlog/registry/_jsonschema.py): Confluent's compatibility verdicts on a
table of schema pairs, parse and value errors, canonical form, and wire interop with
confluent-kafka's own JSONSerializer/JSONDeserializer over its in-process mock registry."""
from __future__ import annotations

import json
import pathlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedlog.registry import _formats
from embedlog.registry._formats import InvalidSchema, SerializationError

FORMAT = _formats.get("JSON")
PAIRS = json.loads((pathlib.Path(__file__).parent / "data" / "json_pairs.json").read_text())


def parse(doc, refs=None):
    return FORMAT.parse(doc if isinstance(doc, str) else json.dumps(doc), refs or {})


def test_table_is_large_enough_and_covers_every_verdict():
    assert len(PAIRS) >= 40
    assert {(r["BACKWARD"], r["FORWARD"]) for r in PAIRS} == {
        (True, True), (True, False), (False, True), (False, False)}


@pytest.mark.parametrize("row", PAIRS, ids=[r["rule"][:60] for r in PAIRS])
def test_compatibility_table(row):
    old = parse(row["old"], row.get("old_refs"))
    new = parse(row["new"], row.get("new_refs"))
    backward = new.incompatibilities(old)
    forward = old.incompatibilities(new)
    assert (not backward) == row["BACKWARD"], backward
    assert (not forward) == row["FORWARD"], forward
    assert (not backward and not forward) == row["FULL"]
    for message in backward + forward:  # each names a path and a Confluent difference type
        path, kind = message.split(": ")
        assert path.startswith("#/") and kind.isupper()


def test_incompatibility_names_the_path_and_rule():
    old = parse({"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "string"}}}}})
    new = parse({"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "integer"}}}}})
    assert new.incompatibilities(old) == ["#/properties/a/properties/b: TYPE_CHANGED"]


def test_canonical_ignores_key_order_and_whitespace():
    a = parse('{"type": "object",\n "properties": {"b": {"type": "integer"}, "a": {}}}')
    b = parse('{"properties":{"a":{},"b":{"type":"integer"}},"type":"object"}')
    assert a.canonical() == b.canonical() == '{"properties":{"a":{},"b":{"type":"integer"}},"type":"object"}'
    assert parse({"type": "string", "title": "x"}).canonical() != a.canonical()


def test_names_is_the_title():
    assert parse({"title": "com.example.User", "type": "object"}).names() == ["com.example.User"]
    assert parse({"type": "object"}).names() == []


@pytest.mark.parametrize("text, where", [
    ('{"type": "object",\n "properties": {"a": }}', "line 2 column 22"),
    ('[1, 2]', "object or a boolean"),
    ('{"type": "strin"}', "#/type"),
    ('{"properties": {"a": {"minLength": -1}}}', "#/properties/a/minLength"),
    ('{"$ref": "missing.json"}', "'missing.json'"),
    ('{"properties": {"a": {"$ref": "#/definitions/nope"}}}', "#/properties/a"),
])
def test_invalid_schema_says_what_and_where(text, where):
    with pytest.raises(InvalidSchema) as e:
        FORMAT.parse(text, {})
    assert where in str(e.value)


def test_invalid_reference_names_the_reference():
    with pytest.raises(InvalidSchema, match="reference 'r.json'.*#/type"):
        FORMAT.parse('{"$ref": "r.json"}', {"r.json": '{"type": 5}'})


def test_draft_from_dollar_schema():
    # draft-04's boolean exclusiveMaximum is invalid under draft-07 (the default)
    text = '{"type": "number", "maximum": 5, "exclusiveMaximum": true}'
    with pytest.raises(InvalidSchema):
        FORMAT.parse(text, {})
    d4 = FORMAT.parse('{"$schema": "http://json-schema.org/draft-04/schema#", ' + text[1:], {})
    d4.encode(4)
    with pytest.raises(SerializationError):
        d4.encode(5)


PERSON = {"title": "Person", "type": "object", "additionalProperties": False,
          "required": ["name"],
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0},
                         "tags": {"type": "array", "items": {"type": "string"}},
                         "address": {"$ref": "address.json"}}}
ADDRESS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def person():
    return parse(PERSON, {"address.json": json.dumps(ADDRESS)})


def test_encode_is_compact_json_and_decode_inverts():
    p = person()
    value = {"name": "Zoë", "age": 3, "address": {"city": "Oslo"}}
    payload = p.encode(value)
    assert payload == '{"name":"Zoë","age":3,"address":{"city":"Oslo"}}'.encode()
    assert p.decode(payload) == value


@pytest.mark.parametrize("value, where", [
    ({"age": 1}, "$"),
    ({"name": "x" * 21}, "$.name"),
    ({"name": "x", "age": -1}, "$.age"),
    ({"name": "x", "tags": ["a", 2]}, "$.tags[1]"),
    ({"name": "x", "address": {}}, "$.address"),
    ({"name": "x", "other": 1}, "$"),
])
def test_values_not_matching_raise_with_the_path(value, where):
    with pytest.raises(SerializationError) as e:
        person().encode(value)
    assert f"at {where}:" in str(e.value)
    with pytest.raises(SerializationError):
        person().decode(json.dumps(value).encode())


@pytest.mark.parametrize("payload", [b'{"name": "x"', b"\xff\xfe", b""])
def test_bad_payload(payload):
    with pytest.raises(SerializationError, match="not JSON"):
        person().decode(payload)


def test_unencodable_value():
    with pytest.raises(SerializationError):
        parse({}).encode(float("nan"))
    with pytest.raises(SerializationError):
        parse({}).encode({"a": object()})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=15)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_round_trips_through_the_empty_schema(value):
    schema = parse({})
    assert schema.decode(schema.encode(value)) == value


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries(
    {"name": st.text(max_size=20)},
    optional={"age": st.integers(0, 2**40), "tags": st.lists(st.text(), max_size=3),
              "address": st.fixed_dictionaries({"city": st.text()})}))
def test_person_round_trips(value):
    p = person()
    assert p.decode(p.encode(value)) == value


# ---- interop with confluent-kafka's serializers, no server (its in-process mock registry) -------

def _confluent():
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )
    from confluent_kafka.schema_registry.json_schema import (
        JSONDeserializer,
        JSONSerializer,
    )
    from confluent_kafka.serialization import MessageField, SerializationContext
    return (Schema, MockSchemaRegistryClient, JSONSerializer, JSONDeserializer,
            SerializationContext("orders", MessageField.VALUE))


SIMPLE = {"title": "Order", "type": "object",
          "properties": {"id": {"type": "integer"}, "note": {"type": ["string", "null"]},
                         "items": {"type": "array", "items": {"type": "number"}}},
          "required": ["id"]}


def test_confluent_serializer_bytes_decode_with_ours():
    _schema, Mock, Ser, _De, ctx = _confluent()
    client = Mock({"url": "mock://"})
    ser = Ser(json.dumps(SIMPLE), client, conf={"auto.register.schemas": True})
    value = {"id": 7, "note": "ünï", "items": [1.5, 2]}
    framed = ser(value, ctx)
    assert framed[0] == 0
    schema_id = struct.unpack(">I", framed[1:5])[0]
    assert client.get_schema(schema_id).schema_str == json.dumps(SIMPLE)
    ours = parse(SIMPLE)
    assert ours.decode(framed[5:]) == value
    assert ours.encode(value) == framed[5:]  # the same bytes, compact JSON both sides


def test_our_bytes_decode_with_confluent_deserializer():
    Schema, Mock, _Ser, De, ctx = _confluent()
    client = Mock({"url": "mock://"})
    schema_id = client.register_schema("orders-value", Schema(json.dumps(SIMPLE), "JSON"))
    value = {"id": 9, "note": None, "items": []}
    framed = b"\0" + struct.pack(">I", schema_id) + parse(SIMPLE).encode(value)
    de = De(json.dumps(SIMPLE), schema_registry_client=client)
    assert de(framed, ctx) == value
