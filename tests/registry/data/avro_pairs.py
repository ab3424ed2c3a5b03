"""Avro compatibility table: (old schema, new schema) pairs with the verdicts Confluent's
registry gives (it runs Avro's Java SchemaCompatibility): BACKWARD = the new schema reads
data written with the old; FORWARD = the old schema reads data written with the new;
FULL = both. Each row names the rule of Avro's "Schema Resolution" it exercises.

Row: (name, old, new, backward, forward, rule). FULL is backward and forward."""


def rec(*fields, name="R", **extra):
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


def enum(symbols, name="E", **extra):
    return {"type": "enum", "name": name, "symbols": symbols, **extra}


def fixed(size, name="F", **extra):
    return {"type": "fixed", "name": name, "size": size, **extra}


def one(type_):
    """A record with one field `x` of the given type."""
    return rec(f("x", type_))


NODE = rec(f("value", "int"), f("next", ["null", "Node"], default=None), name="Node")
NODE2 = rec(f("value", "int"), f("next", ["null", "Node"], default=None), f("tag", "string", default=""), name="Node")

PAIRS = [
    ("identical record", rec(f("a", "int")), rec(f("a", "int")), True, True, "same schema"),
    ("add field with default", rec(f("a", "int")), rec(f("a", "int"), f("b", "string", default="x")), True, True,
     "reader field missing in writer uses its default; writer-only fields are skipped"),
    ("add field without default", rec(f("a", "int")), rec(f("a", "int"), f("b", "string")), False, True,
     "READER_FIELD_MISSING_DEFAULT_VALUE"),
    ("remove field with default", rec(f("a", "int"), f("b", "string", default="x")), rec(f("a", "int")), True, True,
     "writer-only field skipped; old reader fills it from its default"),
    ("remove field without default", rec(f("a", "int"), f("b", "string")), rec(f("a", "int")), True, False,
     "READER_FIELD_MISSING_DEFAULT_VALUE in the old reader"),
    ("add optional field null default", rec(f("a", "int")), rec(f("a", "int"), f("b", ["null", "string"], default=None)),
     True, True, "default null on a union with null first"),
    ("int to long", one("int"), one("long"), True, False, "promotion int->long, not back"),
    ("long to int", one("long"), one("int"), False, True, "promotion int->long, not back"),
    ("int to float", one("int"), one("float"), True, False, "promotion int->float"),
    ("int to double", one("int"), one("double"), True, False, "promotion int->double"),
    ("long to float", one("long"), one("float"), True, False, "promotion long->float"),
    ("long to double", one("long"), one("double"), True, False, "promotion long->double"),
    ("float to double", one("float"), one("double"), True, False, "promotion float->double"),
    ("double to float", one("double"), one("float"), False, True, "no demotion double->float"),
    ("float to long", one("float"), one("long"), False, True, "no float->long; long->float promotes"),
    ("string to bytes", one("string"), one("bytes"), True, True, "string and bytes promote both ways"),
    ("bytes to string", one("bytes"), one("string"), True, True, "string and bytes promote both ways"),
    ("int to string", one("int"), one("string"), False, False, "TYPE_MISMATCH"),
    ("string to int", one("string"), one("int"), False, False, "TYPE_MISMATCH"),
    ("boolean to int", one("boolean"), one("int"), False, False, "TYPE_MISMATCH"),
    ("top-level string to int", "string", "int", False, False, "TYPE_MISMATCH on primitives"),
    ("top-level int to long", "int", "long", True, False, "promotion at the top level"),
    ("top-level null", "null", "null", True, True, "same primitive"),
    ("enum add symbol", one(enum(["A", "B"])), one(enum(["A", "B", "C"])), True, False,
     "MISSING_ENUM_SYMBOLS: the old reader lacks C"),
    ("enum remove symbol", one(enum(["A", "B", "C"])), one(enum(["A", "B"])), False, True,
     "MISSING_ENUM_SYMBOLS: the new reader lacks C"),
    ("enum add symbol, old has default", one(enum(["A", "B"], default="A")), one(enum(["A", "B", "C"], default="A")),
     True, True, "a reader enum default reads unknown symbols"),
    ("enum remove symbol, new has default", one(enum(["A", "B", "C"])), one(enum(["A", "B"], default="A")),
     True, True, "a reader enum default reads unknown symbols"),
    ("enum renamed", one(enum(["A"], name="E")), one(enum(["A"], name="G")), False, False, "NAME_MISMATCH"),
    ("enum renamed with alias", one(enum(["A"], name="E")), one(enum(["A"], name="G", aliases=["E"])), True, False,
     "reader aliases match the writer's name"),
    ("fixed same", one(fixed(8)), one(fixed(8)), True, True, "same fixed"),
    ("fixed size change", one(fixed(8)), one(fixed(16)), False, False, "FIXED_SIZE_MISMATCH"),
    ("fixed renamed", one(fixed(8, name="F")), one(fixed(8, name="H")), False, False, "NAME_MISMATCH"),
    ("int to union with int", one("int"), one(["null", "int"]), True, False,
     "reader union has a branch for the writer; old int reader cannot read a null branch"),
    ("union to int", one(["null", "int"]), one("int"), False, True, "every writer branch must be readable"),
    ("union gains branch", one(["null", "int"]), one(["null", "int", "string"]), True, False,
     "the new writer's string branch is unknown to the old reader"),
    ("union loses branch", one(["null", "int", "string"]), one(["null", "int"]), False, True,
     "the old writer's string branch is unknown to the new reader"),
    ("union branch promoted", one(["null", "int"]), one(["null", "long"]), True, False,
     "writer branch int readable by reader branch long"),
    ("union reordered", one(["null", "string"]), one(["string", "null"]), True, True,
     "branches match by type, not position"),
    ("int to union of int and string", one("int"), one(["int", "string"]), True, False,
     "writer string branch not readable by an int reader"),
    ("array items int to long", one({"type": "array", "items": "int"}), one({"type": "array", "items": "long"}),
     True, False, "arrays recurse on items"),
    ("array items long to int", one({"type": "array", "items": "long"}), one({"type": "array", "items": "int"}),
     False, True, "arrays recurse on items"),
    ("map values int to long", one({"type": "map", "values": "int"}), one({"type": "map", "values": "long"}),
     True, False, "maps recurse on values"),
    ("map values string to int", one({"type": "map", "values": "string"}), one({"type": "map", "values": "int"}),
     False, False, "maps recurse on values"),
    ("array to map", one({"type": "array", "items": "int"}), one({"type": "map", "values": "int"}), False, False,
     "TYPE_MISMATCH"),
    ("map values enum add symbol", one({"type": "map", "values": enum(["A"])}),
     one({"type": "map", "values": enum(["A", "B"])}), True, False, "maps recurse, then the enum rule"),
    ("record renamed", rec(f("a", "int"), name="R"), rec(f("a", "int"), name="S"), False, False, "NAME_MISMATCH"),
    ("record renamed with alias", rec(f("a", "int"), name="R"), rec(f("a", "int"), name="S", aliases=["R"]),
     True, False, "reader aliases match the writer's name; the old reader has no alias"),
    ("namespace changed", rec(f("a", "int"), namespace="a"), rec(f("a", "int"), namespace="b"), True, True,
     "Avro's checker compares unqualified names"),
    ("field renamed with alias", rec(f("a", "int")), rec(f("b", "int", aliases=["a"])), True, False,
     "reader field aliases; the old reader's a has no default"),
    ("field renamed", rec(f("a", "int")), rec(f("b", "int")), False, False,
     "READER_FIELD_MISSING_DEFAULT_VALUE both ways"),
    ("doc change only", rec(f("a", "int"), doc="one"), rec(f("a", "int", doc="x"), doc="two"), True, True,
     "doc does not take part in resolution"),
    ("nested record add field without default", one(rec(f("a", "int"), name="In")),
     one(rec(f("a", "int"), f("b", "int"), name="In")), False, True, "records recurse"),
    ("nested record add field with default", one(rec(f("a", "int"), name="In")),
     one(rec(f("a", "int"), f("b", "int", default=0), name="In")), True, True, "records recurse"),
    ("array of records add field without default", one({"type": "array", "items": rec(f("a", "int"), name="In")}),
     one({"type": "array", "items": rec(f("a", "int"), f("b", "int"), name="In")}), False, True,
     "arrays recurse, then the record rule"),
    ("recursive type unchanged", NODE, NODE, True, True, "recursion: a pair already being checked is assumed"),
    ("recursive type add field with default", NODE, NODE2, True, True, "recursion with a new defaulted field"),
    ("field type int to union in record", rec(f("a", "int"), f("b", "int")),
     rec(f("a", "int"), f("b", ["null", "int"], default=None)), True, False,
     "making a field optional: old readers cannot read null"),
    ("field made required", rec(f("a", ["null", "int"], default=None)), rec(f("a", "int")), False, True,
     "new int reader cannot read the old null branch"),
    ("field order changed", rec(f("a", "int"), f("b", "string")), rec(f("b", "string"), f("a", "int")), True, True,
     "fields match by name"),
    ("string to enum", one("string"), one(enum(["A"])), False, False, "TYPE_MISMATCH"),
]
