"""Protobuf compatibility table: (old, new) schema pairs with the verdicts Confluent's registry
gives (its protobuf-provider SchemaDiff: a pair is compatible when every Difference is in
COMPATIBLE_CHANGES). BACKWARD = the new schema reads data written with the old (diff from
old to new); FORWARD = the old schema reads data written with the new (diff from new to
old); FULL is both. Each row names the Difference types it produces and the rule.

Row: (name, old, new, backward, forward, rule[, (old_refs, new_refs)])."""


def p3(body, package=None):
    head = 'syntax = "proto3";\n' + (f"package {package};\n" if package else "")
    return head + body


def p2(body):
    return 'syntax = "proto2";\n' + body


def one(field, extra=""):
    """A proto3 message M with one declaration (a field) and extra top-level text."""
    return p3(f"message M {{\n  {field}\n}}\n{extra}")


STATUS_ENUM = "enum Status { ACTIVE = 0; INACTIVE = 1; }"
HOME_V1 = 'syntax = "proto3";\npackage acme.dep;\nmessage Home { int32 id = 1; bool on = 2; }\n'
HOME_V2 = 'syntax = "proto3";\npackage acme.dep;\nmessage Home { string id = 1; bool on = 2; }\n'
HOME_OTHER_PKG = 'syntax = "proto3";\npackage acme.dep2;\nmessage Home { int32 id = 1; bool on = 2; }\n'
USES_HOME = p3('import "home.proto";\nmessage M { .acme.dep.Home h = 1; }\n')

PAIRS = [
    # -- fields added, removed, renamed, renumbered
    ("identical", one("string a = 1;"), one("string a = 1;"), True, True, "no difference"),
    ("field added", one("string a = 1;"), one("string a = 1;\n  int32 b = 2;"), True, True,
     "FIELD_ADDED / FIELD_REMOVED: unknown fields are skipped, missing ones take defaults"),
    ("field removed", one("string a = 1;\n  int32 b = 2;"), one("string a = 1;"), True, True,
     "FIELD_REMOVED / FIELD_ADDED"),
    ("field renumbered", one("string a = 1;"), one("string a = 2;"), True, True,
     "fields match by number: FIELD_REMOVED + FIELD_ADDED"),
    ("field renamed", one("string a = 1;"), one("string b = 1;"), True, True,
     "FIELD_NAME_CHANGED: names are not on the wire"),
    ("nested message gains a field", p3("message W { message T { string s = 1; } }"),
     p3("message W { message T { string s = 1; string t = 2; } }"), True, True, "FIELD_ADDED in a nested message"),
    # -- scalar groups
    ("int32 -> int64", one("int32 a = 1;"), one("int64 a = 1;"), True, True,
     "GENERAL_NUMBER group (int32 int64 uint32 uint64 bool): same varint"),
    ("int32 -> uint64", one("int32 a = 1;"), one("uint64 a = 1;"), True, True, "GENERAL_NUMBER group"),
    ("int64 -> bool", one("int64 a = 1;"), one("bool a = 1;"), True, True, "GENERAL_NUMBER group"),
    ("int32 -> sint32", one("int32 a = 1;"), one("sint32 a = 1;"), False, False,
     "FIELD_SCALAR_KIND_CHANGED: zig-zag (SIGNED_NUMBER) is not plain varint"),
    ("sint32 -> sint64", one("sint32 a = 1;"), one("sint64 a = 1;"), True, True, "SIGNED_NUMBER group"),
    ("string -> bytes", one("string a = 1;"), one("bytes a = 1;"), True, True, "STRING_OR_BYTES group"),
    ("string -> int32", one("string a = 1;"), one("int32 a = 1;"), False, False, "FIELD_SCALAR_KIND_CHANGED"),
    ("fixed32 -> sfixed32", one("fixed32 a = 1;"), one("sfixed32 a = 1;"), True, True, "FIXED32 group"),
    ("fixed32 -> fixed64", one("fixed32 a = 1;"), one("fixed64 a = 1;"), False, False,
     "FIELD_SCALAR_KIND_CHANGED: FIXED32 vs FIXED64"),
    ("uint32 -> fixed32", one("uint32 a = 1;"), one("fixed32 a = 1;"), False, False,
     "FIELD_SCALAR_KIND_CHANGED: varint vs 4 bytes"),
    ("float -> double", one("float a = 1;"), one("double a = 1;"), False, False,
     "FIELD_SCALAR_KIND_CHANGED: FLOAT and DOUBLE are groups of one"),
    ("int32 -> enum", one("int32 a = 1;"), one("Status a = 1;", STATUS_ENUM), True, True,
     "an enum is a GENERAL_NUMBER (+ ENUM_ADDED / ENUM_REMOVED)"),
    ("enum -> int64", one("Status a = 1;", STATUS_ENUM), one("int64 a = 1;"), True, True,
     "an enum is a GENERAL_NUMBER (+ ENUM_REMOVED / ENUM_ADDED)"),
    ("enum -> sint32", one("Status a = 1;", STATUS_ENUM), one("sint32 a = 1;"), False, False,
     "FIELD_SCALAR_KIND_CHANGED: GENERAL_NUMBER vs SIGNED_NUMBER"),
    # -- kinds and named types
    ("int32 -> message", one("int32 a = 1;"), one("N a = 1;", "message N { string s = 1; }"), False, False,
     "FIELD_KIND_CHANGED: scalar vs message"),
    ("message -> string", one("N a = 1;", "message N { string s = 1; }"), one("string a = 1;"), False, False,
     "FIELD_KIND_CHANGED (+ MESSAGE_REMOVED backward)"),
    ("message type renamed", one("N a = 1;", "message N { string s = 1; }"),
     one("O a = 1;", "message O { string s = 1; }"), False, False,
     "FIELD_NAMED_TYPE_CHANGED: message types match by name (+ MESSAGE_REMOVED)"),
    ("field's message type changes incompatibly", p3("message M { N a = 1; }\nmessage N { int32 x = 1; }"),
     p3("message M { N a = 1; }\nmessage N { string x = 1; }"), False, False,
     "FIELD_SCALAR_KIND_CHANGED inside N, so FIELD_NAMED_TYPE_CHANGED on M.a"),
    ("name qualification", p3("message M { Status s = 1; message Status { string t = 1; } }", "foo"),
     p3("message M { .foo.M.Status s = 1; message Status { string t = 1; } }", "foo"), True, True,
     "type names compare resolved: no difference"),
    ("wrapper types differ", one("google.protobuf.Int32Value a = 1;").replace(
        'syntax = "proto3";\n', 'syntax = "proto3";\nimport "google/protobuf/wrappers.proto";\n'),
     one("google.protobuf.Int64Value a = 1;").replace(
        'syntax = "proto3";\n', 'syntax = "proto3";\nimport "google/protobuf/wrappers.proto";\n'),
     False, False, "FIELD_NAMED_TYPE_CHANGED: Int32Value and Int64Value are different messages"),
    ("recursive message gains a field", p3("message Node { int32 v = 1; Node next = 2; }"),
     p3("message Node { int32 v = 1; Node next = 2; int32 w = 3; }"), True, True,
     "FIELD_ADDED; the recursion is compared once"),
    # -- messages and enums
    ("message removed", p3("message A { string s = 1; }\nmessage B { string s = 1; }"),
     p3("message A { string s = 1; }"), False, True, "MESSAGE_REMOVED backward, MESSAGE_ADDED forward"),
    ("message added", p3("message A { string s = 1; }"),
     p3("message A { string s = 1; }\nmessage B { string s = 1; }"), True, False,
     "MESSAGE_ADDED backward, MESSAGE_REMOVED forward"),
    ("nested message removed", p3("message A { message B { string s = 1; } }"), p3("message A { }"),
     False, True, "MESSAGE_REMOVED at #/A/B"),
    ("messages reordered", p3("message A { string s = 1; }\nmessage B { string s = 1; }"),
     p3("message B { string s = 1; }\nmessage A { string s = 1; }"), True, True,
     "MESSAGE_MOVED: indexes are read against the writer's own schema"),
    ("enum value added", one("Status a = 1;", STATUS_ENUM),
     one("Status a = 1;", "enum Status { ACTIVE = 0; INACTIVE = 1; GONE = 2; }"), True, True,
     "ENUM_CONST_ADDED / ENUM_CONST_REMOVED"),
    ("enum value removed", one("Status a = 1;", "enum Status { ACTIVE = 0; INACTIVE = 1; GONE = 2; }"),
     one("Status a = 1;", STATUS_ENUM), True, True, "ENUM_CONST_REMOVED (an unknown number is kept)"),
    ("enum value renamed", one("Status a = 1;", STATUS_ENUM),
     one("Status a = 1;", "enum Status { ACTIVE = 0; NOT_ACTIVE = 1; }"), True, True, "ENUM_CONST_CHANGED"),
    ("unused enum removed", one("string a = 1;", STATUS_ENUM), one("string a = 1;"), True, True,
     "ENUM_REMOVED / ENUM_ADDED"),
    ("package changed", p3("message M { string a = 1; }", "foo"), p3("message M { string a = 1; }", "bar"),
     True, True, "PACKAGE_CHANGED is in today's COMPATIBLE_CHANGES (older registries refused it)"),
    ("proto2 -> proto3, same fields", p2("message M { optional int32 a = 1; }"),
     p3("message M { int32 a = 1; }"), True, True, "syntax is not compared; a proto3 field writes no label"),
    # -- labels
    ("proto2 required added", p2("message M { optional string a = 1; }"),
     p2("message M { optional string a = 1; required string b = 2; }"), False, False,
     "REQUIRED_FIELD_ADDED backward, REQUIRED_FIELD_REMOVED forward"),
    ("proto2 optional added", p2("message M { optional string a = 1; }"),
     p2("message M { optional string a = 1; optional string b = 2; }"), True, True, "FIELD_ADDED"),
    ("proto2 optional -> required string", p2("message M { optional string a = 1; }"),
     p2("message M { required string a = 1; }"), True, True,
     "FIELD_STRING_OR_BYTES_LABEL_CHANGED is compatible"),
    ("proto2 optional -> required int32", p2("message M { optional int32 a = 1; }"),
     p2("message M { required int32 a = 1; }"), False, False, "FIELD_NUMERIC_LABEL_CHANGED"),
    ("optional int32 -> repeated", one("optional int32 a = 1;"), one("repeated int32 a = 1;"), False, False,
     "FIELD_NUMERIC_LABEL_CHANGED: packed repeated numbers are not a singular number"),
    ("optional string -> repeated", one("optional string a = 1;"), one("repeated string a = 1;"), True, True,
     "FIELD_STRING_OR_BYTES_LABEL_CHANGED: a repeated string reads a singular one"),
    ("optional message -> repeated", one("optional N a = 1;", "message N { string s = 1; }"),
     one("repeated N a = 1;", "message N { string s = 1; }"), True, True, "labels of message fields are not compared"),
    ("implicit int32 -> repeated", one("int32 a = 1;"), one("repeated int32 a = 1;"), True, True,
     "labels compare only when both are written (a proto3 implicit field has none)"),
    # -- maps
    ("map value int32 -> string", one("map<string, int32> m = 1;"), one("map<string, string> m = 1;"),
     False, False, "FIELD_SCALAR_KIND_CHANGED on the map's value"),
    ("map value int32 -> int64", one("map<string, int32> m = 1;"), one("map<string, int64> m = 1;"),
     True, True, "map key and value compare like fields"),
    ("map key string -> int32", one("map<string, int32> m = 1;"), one("map<int32, int32> m = 1;"),
     False, False, "FIELD_SCALAR_KIND_CHANGED on the map's key"),
    ("map -> repeated message", one("map<string, int32> m = 1;"),
     one("repeated KV m = 1;", "message KV { string key = 1; int32 value = 2; }"), False, False,
     "FIELD_KIND_CHANGED: map vs message"),
    # -- oneofs
    ("one field moved into a new oneof", one("string a = 1;\n  string b = 2;"),
     one("string a = 1;\n  oneof o { string b = 2; int32 c = 3; }"), True, True,
     "ONEOF_ADDED backward; ONEOF_REMOVED + FIELD_ADDED forward"),
    ("two fields moved into a new oneof", one("string a = 1;\n  string b = 2;"),
     one("oneof o { string a = 1; string b = 2; }"), False, True,
     "MULTIPLE_FIELDS_MOVED_TO_ONEOF backward; moving out of a oneof is allowed"),
    ("field added to a oneof", one("oneof o { string a = 1; string b = 2; }"),
     one("oneof o { string a = 1; string b = 2; int32 c = 3; }"), True, False,
     "ONEOF_FIELD_ADDED backward, ONEOF_FIELD_REMOVED forward"),
    ("field removed from a oneof", one("oneof o { string a = 1; string b = 2; int32 c = 3; }"),
     one("oneof o { string a = 1; string b = 2; }"), False, True, "ONEOF_FIELD_REMOVED backward"),
    ("field moved into an existing oneof", one("oneof o { string a = 1; }\n  string b = 2;"),
     one("oneof o { string a = 1; string b = 2; }"), False, True,
     "FIELD_MOVED_TO_EXISTING_ONEOF backward; forward the field only left the oneof"),
    ("oneof renamed", one("oneof o { string a = 1; }"), one("oneof p { string a = 1; }"), True, True,
     "ONEOF_REMOVED + ONEOF_ADDED; its field compares by number"),
    ("oneof field type changes", one("oneof o { string a = 1; }"), one("oneof o { int32 a = 1; }"), False, False,
     "FIELD_SCALAR_KIND_CHANGED inside the oneof"),
    # -- references
    ("referenced message changes incompatibly", USES_HOME, USES_HOME, False, False,
     "FIELD_SCALAR_KIND_CHANGED in the reference, so FIELD_NAMED_TYPE_CHANGED",
     ({"home.proto": HOME_V1}, {"home.proto": HOME_V2})),
    ("referenced message moves package", USES_HOME,
     p3('import "home2.proto";\nmessage M { .acme.dep2.Home h = 1; }\n'), True, True,
     "named types compare by their name within their package",
     ({"home.proto": HOME_V1}, {"home2.proto": HOME_OTHER_PKG})),
    ("local message moved into a reference", p3("message M { Home h = 1; }\nmessage Home { int32 id = 1; bool on = 2; }"),
     USES_HOME, False, True, "MESSAGE_REMOVED backward (Home leaves the file); MESSAGE_ADDED forward",
     ({}, {"home.proto": HOME_V1})),
]
