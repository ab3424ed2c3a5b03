"""The Avro compatibility table (data/avro_pairs.py): the format's verdicts, and the
registry's: 409 on registering exactly where the table says the level forbids it."""
import json

import pytest

from embedlog.registry import IncompatibleSchema, _avro, registry_for

from .data.avro_pairs import PAIRS


def parse(obj):
    return _avro.FORMAT.parse(json.dumps(obj), {})


def test_table_is_big_enough():
    assert len(PAIRS) >= 40
    assert len({row[0] for row in PAIRS}) == len(PAIRS)
    # Every verdict combination is present, so a checker that always says yes or no fails.
    assert {(b, fw) for _n, _o, _new, b, fw, _r in PAIRS} == {(True, True), (True, False), (False, True), (False, False)}


@pytest.mark.parametrize("name,old,new,backward,forward,rule", PAIRS, ids=[p[0] for p in PAIRS])
def test_format_verdicts(name, old, new, backward, forward, rule):
    o, n = parse(old), parse(new)
    back = n.incompatibilities(o)
    fwd = o.incompatibilities(n)
    assert (not back) == backward, f"{name} ({rule}): BACKWARD says {back}"
    assert (not fwd) == forward, f"{name} ({rule}): FORWARD says {fwd}"
    for msg in back + fwd:                 # each message names the rule and the path
        assert " at /" in msg


@pytest.mark.parametrize("level", ["BACKWARD", "FORWARD", "FULL"])
def test_registry_refuses_where_the_table_says(embedlog, level):
    reg = registry_for(embedlog)
    reg.set_compatibility(level)
    for i, (name, old, new, backward, forward, _rule) in enumerate(PAIRS):
        subject = f"s{i}"
        reg.register(subject, json.dumps(old))
        allowed = {"BACKWARD": backward, "FORWARD": forward, "FULL": backward and forward}[level]
        if allowed:
            got = reg.register(subject, json.dumps(new))
            assert got.version in (1, 2), name
        else:
            with pytest.raises(IncompatibleSchema) as e:
                reg.register(subject, json.dumps(new))
            assert e.value.error_code == 409
            assert reg.versions(subject) == [1], name


def test_canonical_identity():
    a = parse(rec_text := {"type": "record", "name": "R", "namespace": "n", "doc": "d",
                           "fields": [{"name": "a", "type": {"type": "int"}}]})
    b = parse({"type": "record", "name": "n.R", "fields": [{"type": "int", "name": "a"}]})
    assert a.canonical() == b.canonical()
    c = parse({**rec_text, "fields": [{"name": "a", "type": "int", "default": 1}]})
    assert c.canonical() != a.canonical()          # a default changes resolution, so identity


def test_encode_decode_round_trip_and_bad_value():
    from embedlog.registry._formats import SerializationError
    s = parse({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"},
                                                           {"name": "b", "type": ["null", "string"]}]})
    assert s.decode(s.encode({"a": 5, "b": "x"})) == {"a": 5, "b": "x"}
    with pytest.raises(SerializationError):
        s.encode({"a": "not a number", "b": None})
    assert s.names() == ["R"]
