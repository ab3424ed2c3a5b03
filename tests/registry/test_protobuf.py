"""Protobuf format (embedlog/registry/_protobuf/): Confluent's compatibility verdicts on the
table of schema pairs, the .proto parser (features, errors with line:col), the text and
descriptor forms sharing one canonical text, references, and the wire format's message
indexes."""
from __future__ import annotations

import base64
import re

import pytest
from google.protobuf import descriptor_pb2, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedlog.registry import _formats
from embedlog.registry._formats import InvalidSchema, SerializationError
from embedlog.registry._protobuf import COMPATIBLE, differences

from .data.protobuf_pairs import PAIRS

FORMAT = _formats.get("PROTOBUF")
KINDS = {"PACKAGE_CHANGED", "MESSAGE_ADDED", "MESSAGE_REMOVED", "MESSAGE_MOVED", "ENUM_ADDED", "ENUM_REMOVED",
         "ENUM_CONST_ADDED", "ENUM_CONST_CHANGED", "ENUM_CONST_REMOVED", "FIELD_ADDED", "FIELD_REMOVED",
         "FIELD_NAME_CHANGED", "FIELD_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED", "FIELD_NAMED_TYPE_CHANGED",
         "FIELD_NUMERIC_LABEL_CHANGED", "FIELD_STRING_OR_BYTES_LABEL_CHANGED", "REQUIRED_FIELD_ADDED",
         "REQUIRED_FIELD_REMOVED", "ONEOF_ADDED", "ONEOF_REMOVED", "ONEOF_FIELD_ADDED", "ONEOF_FIELD_REMOVED",
         "MULTIPLE_FIELDS_MOVED_TO_ONEOF", "FIELD_MOVED_TO_EXISTING_ONEOF"}

USER = '''syntax = "proto3";
package acme.v1;
import "google/protobuf/timestamp.proto";
option java_package = "com.acme.v1";   // kept
option (acme.custom) = { a: 1 };       // a custom option: ignored

/* A user. */
message User {
  string name = 1;
  int64 id = 2 [deprecated = true, (acme.field) = "x"];
  repeated string tags = 3;
  map<string, Address> addresses = 4;
  optional int32 age = 5;
  oneof contact {
    string email = 6;
    string phone = 7;
  }
  Kind kind = 8;
  google.protobuf.Timestamp created = 9;
  reserved 20 to 25, 30;
  reserved "old_name";
  message Address { string city = 1; }
  enum Kind { KIND_UNSPECIFIED = 0; ADMIN = 1; }
}
message Team { repeated User members = 1; }
'''


def parse(text, refs=None):
    return FORMAT.parse(text, refs or {})


def test_table_is_large_enough_and_covers_every_verdict():
    assert len(PAIRS) >= 40
    assert {(r[3], r[4]) for r in PAIRS} == {(True, True), (True, False), (False, True), (False, False)}


@pytest.mark.parametrize("row", PAIRS, ids=[r[0] for r in PAIRS])
def test_compatibility_table(row):
    _name, old_text, new_text, backward_ok, forward_ok, rule = row[:6]
    old_refs, new_refs = row[6] if len(row) > 6 else ({}, {})
    old, new = parse(old_text, old_refs), parse(new_text, new_refs)
    backward, forward = new.incompatibilities(old), old.incompatibilities(new)
    assert (not backward) == backward_ok, backward
    assert (not forward) == forward_ok, forward
    # The Difference types the rule names are the ones found (in one direction or the other).
    found = {k for k, _p in differences(old, new) + differences(new, old)}
    assert found <= KINDS
    assert set(re.findall(r"[A-Z][A-Z_]{4,}", rule)) & KINDS <= found, found
    for message in backward + forward:
        path, kind = message.split(": ", 1)
        assert path.startswith("#/") and kind.split(" ")[0] in KINDS - COMPATIBLE


def test_incompatibility_names_the_path_and_rule():
    old = parse('syntax = "proto3";\nmessage M { message N { int32 x = 1; } N n = 1; }')
    new = parse('syntax = "proto3";\nmessage M { message N { sint32 x = 1; } N n = 1; }')
    assert [m.split(" (")[0] for m in new.incompatibilities(old)] == [
        "#/M/N/1: FIELD_SCALAR_KIND_CHANGED", "#/M/1: FIELD_NAMED_TYPE_CHANGED"]


def test_parse_builds_protocs_descriptor():
    p = parse(USER)
    fdp = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(p.formatted("serialized")))
    user = fdp.message_type[0]
    assert fdp.package == "acme.v1" and fdp.syntax == "proto3"
    assert list(fdp.dependency) == ["google/protobuf/timestamp.proto"]
    assert fdp.options.java_package == "com.acme.v1"
    fields = {f.name: f for f in user.field}
    assert fields["id"].options.deprecated is True
    assert fields["addresses"].type_name == ".acme.v1.User.AddressesEntry"
    entry = next(m for m in user.nested_type if m.name == "AddressesEntry")
    assert entry.options.map_entry and [f.name for f in entry.field] == ["key", "value"]
    assert entry.field[1].type_name == ".acme.v1.User.Address"
    # proto3 optional: a synthetic oneof after the real ones, as protoc writes it
    assert [o.name for o in user.oneof_decl] == ["contact", "_age"]
    assert fields["age"].proto3_optional and fields["age"].oneof_index == 1
    assert fields["email"].oneof_index == 0 and not fields["email"].proto3_optional
    assert fields["kind"].type == fields["kind"].TYPE_ENUM and fields["kind"].type_name == ".acme.v1.User.Kind"
    assert fields["created"].type_name == ".google.protobuf.Timestamp"
    assert [(r.start, r.end) for r in user.reserved_range] == [(20, 26), (30, 31)]
    assert list(user.reserved_name) == ["old_name"]
    assert p.names() == ["acme.v1.User", "acme.v1.User.Address", "acme.v1.Team"]


def test_proto2_features():
    p = parse('syntax = "proto2";\npackage p;\nmessage M {\n  required int32 a = 1 [default = -5];\n'
              '  optional string s = 2 [default = "hi\\n"];\n  extensions 100 to max;\n}\n'
              'extend M { optional int32 ext = 100; }\nenum E { option allow_alias = true; X = 1; Y = 1; }\n')
    fdp = p.fdp
    assert fdp.syntax == ""                                   # protoc leaves proto2 unset
    a, s = fdp.message_type[0].field
    assert (a.label, a.default_value) == (a.LABEL_REQUIRED, "-5") and s.default_value == "hi\n"
    assert fdp.enum_type[0].options.allow_alias
    assert 'required int32 a = 1 [default = -5];' in p.canonical()


def test_text_and_descriptor_forms_share_one_canonical_text():
    text = parse(USER)
    again = parse(text.formatted("serialized"))
    assert again.canonical() == text.canonical()
    assert again.names() == text.names()
    # Comments, spacing and name qualification do not change identity ...
    squeezed = re.sub(r"//[^\n]*|/\*.*?\*/", "", USER, flags=re.DOTALL).replace("\n  ", " ")
    squeezed = squeezed.replace("Kind kind", ".acme.v1.User.Kind kind")
    assert parse(squeezed).canonical() == text.canonical()
    # ... a field does.
    assert parse(USER.replace("string name = 1", "string nom = 1")).canonical() != text.canonical()


SERVICE = '''syntax = "proto3";
package a.b;
import public "google/protobuf/empty.proto";
option optimize_for = SPEED;
option java_outer_classname = "Foo" "Bar";
message Outer {
  enum E { option allow_alias = true; Z = 0; NEG = -1; HEX = 0x10; reserved 5 to 7, 100 to max; reserved 9; }
  message Inner { Outer.E e = 1; repeated int32 ints = 2 [packed = false]; double d = 3 [(x.y) = -1.5e3]; }
  Inner inner = 1;
  reserved 10 to max;
  extend google.protobuf.Empty { optional int32 ignored = 1000; }
  oneof choice { option (my) = 1; Inner a = 2; .a.b.Outer.E b = 3; }
}
service S {
  rpc Get (Outer) returns (stream Outer.Inner);
  rpc Put (stream .a.b.Outer) returns (google.protobuf.Empty) { option deprecated = true; }
}
'''


def test_services_enum_ranges_and_options_survive_both_forms():
    p = parse(SERVICE)
    fdp = p.fdp
    enum = fdp.message_type[0].enum_type[0]
    assert [(r.start, r.end) for r in enum.reserved_range] == [(5, 7), (100, 2 ** 31 - 1), (9, 9)]  # inclusive
    assert [(r.start, r.end) for r in fdp.message_type[0].reserved_range] == [(10, 536870912)]
    assert [v.number for v in enum.value] == [0, -1, 16]
    get, put = fdp.service[0].method
    assert (get.input_type, get.output_type, get.server_streaming) == (".a.b.Outer", ".a.b.Outer.Inner", True)
    assert (put.client_streaming, put.output_type, put.options.deprecated) == (True, ".google.protobuf.Empty", True)
    assert fdp.options.java_outer_classname == "FooBar" and list(fdp.public_dependency) == [0]
    # the canonical text is itself a schema with the same canonical text, and so is the descriptor
    assert parse(p.canonical()).canonical() == p.canonical() == parse(p.formatted("serialized")).canonical()
    assert "rpc Put (stream .a.b.Outer) returns (.google.protobuf.Empty) { option deprecated = true; }" in p.canonical()


def test_references_by_import_name_transitively():
    refs = {"a.proto": 'syntax = "proto3";\npackage a;\nimport "b.proto";\nmessage A { b.B b = 1; }',
            "b.proto": 'syntax = "proto3";\npackage b;\nmessage B { int32 x = 1; }'}
    p = parse('syntax = "proto3";\nimport "a.proto";\nmessage M { a.A a = 1; }', refs)
    assert p.fdp.message_type[0].field[0].type_name == ".a.A"
    assert p.decode(p.encode({"a": {"b": {"x": 7}}})) == {"a": {"b": {"x": 7}}}
    # a reference may be in the descriptor form too
    refs["b.proto"] = parse(refs["b.proto"]).formatted("serialized")
    assert parse('syntax = "proto3";\nimport "a.proto";\nmessage M { a.A a = 1; }', refs).canonical() == p.canonical()


@pytest.mark.parametrize("text, where", [
    ('syntax = "proto3";\nmessage M {\n  strin a = 1;\n}', "line 3:3: unknown type 'strin'"),
    ('syntax = "proto3";\nmessage M { int32 a = 0; }', "line 2:23: field number 0 out of range"),
    ('syntax = "proto3";\nmessage M { int32 a = 1 }', "line 2:25: expected ';'"),
    ('syntax = "proto4";', "line 1:10: unknown syntax 'proto4'"),
    ('syntax = "proto2";\nmessage M { int32 a = 1; }', "line 2:13: proto2 fields need a label"),
    ('syntax = "proto3";\nmessage M { required int32 a = 1; }', "line 2:13: required fields are not allowed"),
    ('syntax = "proto3";\nmessage M { int32 a = 1; string b = 1; }', "field number 1 is used by both 'a' and 'b'"),
    ('syntax = "proto3";\nenum E { A = 1; }', "line 2:6: enum E: the first value must be 0"),
    ('syntax = "proto3";\nimport "nope.proto";', "import 'nope.proto' is neither a reference"),
    ('syntax = "proto3";\nmessage M {\n  int32 a = 1;\n', "line 4:1: unclosed message"),
    ('syntax = "proto3";\noption java_pakage = "x";', "line 2:8: unknown option 'java_pakage'"),
    ('syntax = "proto3";\nmessage M { int32 a = 1; } $', "line 2:28: unexpected character '$'"),
    ('syntax = "proto3";\nmessage M { map<float, int32> m = 1; }', "line 2:17: map key type 'float'"),
    ('edition = "2023";', "line 1:1: protobuf editions are not supported"),
    ('syntax = "proto3";\nmessage M { int32 a = 1 [default = 3]; }', "line 2:26: explicit default values"),
    ('syntax = "proto3";\nmessage M { reserved 2; int32 a = 2; }', "field 'a' uses reserved number 2"),
    ('syntax = "proto3";\nmessage M { int32 a = 19001; }', "line 2:23: field number 19001 is reserved"),
    ('syntax = "proto3";\nmessage M {}\nmessage M {}', "M"),
    ('syntax = "proto3";\nenum E { Z = 0; B = 99999999999; }', "line 2:21: an enum value number 99999999999 is out"),
    ('syntax = "proto3";\nmessage M { reserved 5 to 2; }', "line 2:22: empty range 5 to 2"),
    ("   ", "empty"),
])
def test_invalid_schema_says_what_and_where(text, where):
    with pytest.raises(InvalidSchema) as e:
        parse(text)
    assert where in str(e.value)


def test_bad_reference_and_cycle_name_the_reference():
    with pytest.raises(InvalidSchema, match=r"reference 'r.proto': line 1:19: expected ';'"):
        parse('syntax = "proto3";\nimport "r.proto";', {"r.proto": 'syntax = "proto3" message'})
    cyc = {"a.proto": 'syntax = "proto3";\nimport "b.proto";', "b.proto": 'syntax = "proto3";\nimport "a.proto";'}
    with pytest.raises(InvalidSchema, match="import cycle: default -> a.proto -> b.proto -> a.proto"):
        parse('syntax = "proto3";\nimport "a.proto";', cyc)


def test_wire_message_indexes():
    p = parse('syntax = "proto3";\nmessage A { int32 x = 1; message B { int32 y = 1; } }\n'
              'message C { map<string, int32> m = 1; message D { int32 z = 1; } }')
    assert p.encode({"x": 1}) == b"\x00\x08\x01"                     # [0] is the single byte 0
    b = p._descriptor([0, 0])
    cls = message_factory.GetMessageClass(b)
    assert p.encode(cls(y=2)) == b"\x04\x00\x00\x08\x02"             # count 2, [0, 0], zig-zag
    d = message_factory.GetMessageClass(p._descriptor([1, 1]))      # D comes after C's map entry
    assert p.encode(d(z=3)) == b"\x04\x02\x02\x08\x03"
    assert p.decode(b"\x04\x02\x02\x08\x03") == {"z": 3}
    assert p.decode(b"\x02\x02\x0a\x05\x0a\x01k\x10\x05") == {"m": {"k": 5}}   # [1]: C
    with pytest.raises(SerializationError, match="message index 5 at depth 0 is out of range"):
        p.decode(b"\x02\x0a")
    with pytest.raises(SerializationError, match="A: not a message of this type"):
        p.decode(b"\x00\xff\xff")
    with pytest.raises(SerializationError, match="truncated message indexes"):
        p.decode(b"\x04\x02")


def test_encode_refuses_values_that_do_not_match():
    p = parse('syntax = "proto2";\nmessage M { required int32 a = 1; optional string s = 2; }')
    with pytest.raises(SerializationError, match="required fields not set: a"):
        p.encode({"s": "x"})
    with pytest.raises(SerializationError, match="M: .*nope"):
        p.encode({"a": 1, "nope": 2})
    with pytest.raises(SerializationError, match="message or a dict"):
        p.encode([1])
    other = parse('syntax = "proto3";\nmessage Other { int32 a = 1; }')
    with pytest.raises(SerializationError, match="Other is not defined by this schema"):
        p.encode(message_factory.GetMessageClass(other._descriptor([0]))(a=1))


def test_serialized_is_the_only_other_format():
    p = parse(USER)
    assert p.formatted("serialized") and p.formatted("ignore_extensions") is None


ROUND = parse('syntax = "proto3";\nmessage R { string s = 1; sint64 n = 2; repeated bool flags = 3; '
              'map<int32, string> m = 4; optional double d = 5; bytes raw = 6; }')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=st.text(), n=st.integers(-2 ** 63, 2 ** 63 - 1), flags=st.lists(st.booleans(), max_size=5),
       m=st.dictionaries(st.integers(-2 ** 31, 2 ** 31 - 1), st.text(max_size=5), max_size=4),
       raw=st.binary(max_size=20))
def test_round_trip(s, n, flags, m, raw):
    value = {"s": s, "n": str(n), "flags": flags, "m": {str(k): v for k, v in m.items()},
             "raw": base64.b64encode(raw).decode()}
    out = ROUND.decode(ROUND.encode(value))
    expect = {k: v for k, v in value.items() if v not in ("", "0", [], {})}   # proto3 defaults are not sent
    assert out == expect


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(USER)), length=st.integers(0, 12),
       insert=st.text(alphabet='{}[]()<>;=,."\'-+/*\n x0aZ_9', max_size=3))
def test_any_damaged_text_is_parsed_or_invalid_schema(cut, length, insert):
    text = USER[:cut] + insert + USER[cut + length:]
    try:
        p = parse(text)
    except InvalidSchema as e:
        assert str(e).startswith("schema")
    else:
        assert parse(p.canonical()).canonical() == p.canonical()


META_PROTO = '''syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
option go_package = "../confluent";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}
message Rule { string name = 1; string doc = 2; string expr = 3; string sql = 4; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
'''


def test_protoc_generated_descriptor_and_its_text_are_one_schema():
    # confluent-kafka ships protoc's output for its meta.proto: the descriptor it registers
    # and the .proto text have one canonical text (so one id), and the same message indexes.
    from confluent_kafka.schema_registry.confluent import meta_pb2
    serialized = base64.b64encode(meta_pb2.DESCRIPTOR.serialized_pb).decode()
    generated, text = parse(serialized), parse(META_PROTO)
    assert generated.canonical() == text.canonical()
    assert generated.names() == text.names() == ["confluent.Meta", "confluent.Rule"]
    value = meta_pb2.Meta(doc="d", params={"k": "v"}, tags=["t"])
    assert text.encode(value) == generated.encode(value) == b"\x00" + value.SerializeToString()
    assert text.decode(generated.encode(value)) == {"doc": "d", "params": {"k": "v"}, "tags": ["t"]}
