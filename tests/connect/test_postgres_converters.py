"""The registry converters the PostgreSQL connector's records go through
(embedlog/connect/_registryconv.py), without a server: hypothesis-made Connect schemas and
values map to Avro and JSON Schema that the registry's format modules accept, and every value
encodes and decodes back; the converter itself against an in-process registry; bad settings."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedlog import registry
from embedlog.connect._converters import converter
from embedlog.connect._data import ConnectError
from embedlog.connect._registryconv import (
    DECIMAL,
    avro_value,
    json_value,
    to_avro,
    to_json_schema,
)
from embedlog.registry import _formats

AVRO, JSONSCHEMA = "io.confluent.connect.avro.AvroConverter", "io.confluent.connect.json.JsonSchemaConverter"
_RANGES = {"int8": 7, "int16": 15, "int32": 31, "int64": 63}


def _leaf(draw):
    kind = draw(st.sampled_from(["int8", "int16", "int32", "int64", "float", "double", "boolean", "string",
                                 "bytes", "decimal", "micro"]))
    if kind == "decimal":
        return {"type": "bytes", "name": DECIMAL, "version": 1,
                "parameters": {"scale": str(draw(st.integers(0, 4))), "connect.decimal.precision": "12"}}
    if kind == "micro":                       # a named primitive, as Debezium's time types
        return {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1}
    return {"type": kind}


@st.composite
def schemas(draw, name="acme.Row", depth=0):
    fields = []
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=5,
                          unique=True))
    for i, n in enumerate(names):
        pick = draw(st.integers(0, 9)) if depth < 2 else 0
        if pick == 9:
            s = draw(schemas(f"{name}_{i}", depth + 1))
        elif pick == 8:
            s = {"type": "array", "items": {**_leaf(draw), "optional": False}}
        elif pick == 7:
            s = {"type": "map", "keys": {"type": "string", "optional": False},
                 "values": {**_leaf(draw), "optional": draw(st.booleans())}}
        else:
            s = _leaf(draw)
        fields.append({**s, "optional": draw(st.booleans()), "field": n})
    return {"type": "struct", "name": name, "optional": False, "fields": fields}


def _value(draw, s):
    if s.get("optional") and draw(st.booleans()):
        return None
    t = s["type"]
    if s.get("name") == DECIMAL:
        n = draw(st.integers(-10**11, 10**11))
        return n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    if t in _RANGES:
        b = _RANGES[t]
        return draw(st.integers(-2**b, 2**b - 1))
    if t == "float":
        return draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
    if t == "double":
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if t == "boolean":
        return draw(st.booleans())
    if t == "string":
        return draw(st.text(max_size=10))
    if t == "bytes":
        return draw(st.binary(max_size=10))
    if t == "array":
        return [_value(draw, s["items"]) for _ in range(draw(st.integers(0, 3)))]
    if t == "map":
        return {k: _value(draw, s["values"]) for k in draw(st.lists(st.text(max_size=4), max_size=3, unique=True))}
    return {f["field"]: _value(draw, f) for f in s["fields"]}


@st.composite
def pairs(draw):
    s = draw(schemas())
    return s, _value(draw, s)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_connect_schemas_and_values_round_trip_through_avro_and_json_schema(pair):
    schema, value = pair
    avro = _formats.get("AVRO").parse(json.dumps(to_avro(schema, {}, bare=True)), {})
    want = avro_value(schema, value)
    assert avro.decode(avro.encode(want)) == want
    js = _formats.get("JSON").parse(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#",
                                                **to_json_schema(schema, bare=True)}), {})
    doc = json_value(schema, value)
    assert js.decode(js.encode(doc)) == doc          # encode validates it against the schema
    with pytest.raises(_formats.SerializationError):
        js.encode({**doc, "not_a_column": 1})         # closed objects: an added column is a new version


ROW = {"type": "struct", "name": "db.public.t.Value", "optional": True, "fields": [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "bytes", "optional": True, "name": DECIMAL, "parameters": {"scale": "2"}, "field": "price"},
    {"type": "string", "optional": False, "default": "x", "field": "label"}]}


@pytest.mark.parametrize("cls", [AVRO, JSONSCHEMA])
def test_the_converter_registers_once_per_schema_and_reads_back(tmp_path, cls):
    conv = converter({"value.converter": cls, "value.converter.schema.registry.url": f"file://{tmp_path}"}, "value")
    a = conv.from_connect(ROW, {"id": 1, "price": (150).to_bytes(2, "big"), "label": "a"}, topic="t")
    b = conv.from_connect(ROW, {"id": 2, "price": None, "label": "b"}, topic="t")
    assert a[:5] == b[:5] == b"\0\0\0\0\1"                      # magic 0, schema id 1
    assert conv.from_connect(ROW, None, topic="t") is None      # a tombstone stays one
    reg = registry(tmp_path)
    assert reg.versions("t-value") == [1]
    assert reg.get_version("t-value").schema_type == ("AVRO" if cls == AVRO else "JSON")
    price = 1.5 if cls == JSONSCHEMA else pytest.approx(1.5)
    assert conv.to_connect(a)[1] == {"id": 1, "price": price, "label": "a"}
    other = converter({"value.converter": cls.rsplit(".", 1)[1], "value.converter.schema.registry.url":
                       f"file://{tmp_path}", "value.converter.auto.register.schemas": "false"}, "value")
    with pytest.raises(ConnectError, match="refused the schema for u-value"):
        other.from_connect(ROW, {"id": 1, "price": None, "label": "a"}, topic="u")   # not registered there


def test_json_fail_invalid_schema_validates_each_payload(tmp_path):
    base = {"value.converter": JSONSCHEMA, "value.converter.schema.registry.url": f"file://{tmp_path}"}
    bad = {"id": "one", "price": None, "label": "a"}              # a string where the schema says int32
    assert converter(base, "value").from_connect(ROW, bad, topic="t")[5:] == b'{"id":"one","price":null,"label":"a"}'
    strict = converter({**base, "value.converter.json.fail.invalid.schema": "true"}, "value")
    with pytest.raises(ConnectError, match=r"a value of t does not match its schema: .*\$\.id"):
        strict.from_connect(ROW, bad, topic="t")
    with pytest.raises(ConnectError, match="a value of t does not match its schema"):
        converter(base, "value").from_connect(ROW, {"id": 1, "price": None, "label": float("nan")}, topic="t")


@pytest.mark.parametrize("settings_,message", [
    ({}, "value.converter.schema.registry.url is required for io.confluent.connect.avro.AvroConverter"),
    ({"schema.registry.url": "ftp://x"}, "value.converter.schema.registry.url 'ftp://x': use http(s)://HOST:PORT"),
    ({"schema.registry.url": "http://x", "schema.registry.ur": "y"},
     "unknown setting value.converter.schema.registry.ur for io.confluent.connect.avro.AvroConverter"),
    ({"schema.registry.url": "http://x", "auto.register.schemas": "yes"},
     "value.converter.auto.register.schemas must be true or false, not 'yes'"),
])
def test_bad_registry_converter_settings_are_one_clear_error(settings_, message):
    config = {"value.converter": AVRO, **{f"value.converter.{k}": v for k, v in settings_.items()}}
    with pytest.raises(ConnectError) as e:
        converter(config, "value")
    assert message in str(e.value)
