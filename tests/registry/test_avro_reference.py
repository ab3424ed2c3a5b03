"""The Avro verdicts against a reference: Apache Avro's own compatibility checker
(avro.compatibility, the Python port of the Java SchemaCompatibility that Confluent's
registry runs), on the table and on random schema pairs."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedlog.registry import _avro

from .data.avro_pairs import PAIRS

avro_schema = pytest.importorskip("avro.schema")
compatibility = pytest.importorskip("avro.compatibility")


def reference(reader, writer) -> bool:
    checker = compatibility.ReaderWriterCompatibilityChecker()
    result = checker.get_compatibility(avro_schema.parse(json.dumps(reader)), avro_schema.parse(json.dumps(writer)))
    return result.compatibility == compatibility.SchemaCompatibilityType.compatible


def ours(reader, writer) -> bool:
    fmt = _avro.FORMAT
    return not fmt.parse(json.dumps(reader), {}).incompatibilities(fmt.parse(json.dumps(writer), {}))


@pytest.mark.parametrize("name,old,new,backward,forward,rule", PAIRS, ids=[p[0] for p in PAIRS])
def test_table_agrees_with_apache_avro(name, old, new, backward, forward, rule):
    assert (reference(new, old), reference(old, new)) == (backward, forward), rule


PRIMS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
DEFAULTS = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0, "bytes": "",
            "string": ""}


def types(path: str, depth: int):
    """Avro types whose named types are named by their path, so the same place in two
    schemas has the same name (and two places never clash)."""
    leaves = [st.sampled_from(PRIMS),
              st.lists(st.sampled_from("ABC"), min_size=1, max_size=3, unique=True).flatmap(
                  lambda syms: st.sampled_from([{}, {"default": syms[0]}]).map(
                      lambda d: {"type": "enum", "name": f"E{path}", "symbols": syms, **d})),
              st.sampled_from([2, 4]).map(lambda n: {"type": "fixed", "name": f"F{path}", "size": n}),
              st.lists(st.sampled_from(["null", "int", "long", "string", "double"]), min_size=2, max_size=3,
                       unique=True)]
    if depth == 0:
        return st.one_of(leaves)
    return st.one_of(*leaves, types(path + "i", depth - 1).map(lambda t: {"type": "array", "items": t}),
                     types(path + "v", depth - 1).map(lambda t: {"type": "map", "values": t}),
                     records(path, depth - 1))


def default_for(t):
    if isinstance(t, str):
        return True, DEFAULTS[t]
    if isinstance(t, list):
        return (True, None) if t[0] == "null" else (t[0] in DEFAULTS, DEFAULTS.get(t[0]))
    kind = t["type"]
    if kind == "enum":
        return True, t["symbols"][0]
    if kind == "array":
        return True, []
    if kind == "map":
        return True, {}
    return False, None


def field(path: str, name: str, depth: int):
    def build(args):
        t, want_default = args
        f = {"name": name, "type": t}
        has, value = default_for(t)
        if want_default and has:
            f["default"] = value
        return f
    return st.tuples(types(path + name, depth), st.booleans()).map(build)


def records(path: str, depth: int):
    return st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True).flatmap(
        lambda names: st.tuples(*[field(path, n, depth) for n in names])).map(
        lambda fields: {"type": "record", "name": f"R{path}", "fields": list(fields)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records("", 2), records("", 2))
def test_random_pairs_agree_with_apache_avro(reader, writer):
    assert ours(reader, writer) == reference(reader, writer), (reader, writer)
