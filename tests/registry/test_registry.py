"""The in-process registry: its records, deletes, references, modes, bad input, and ids
across processes (real subprocesses, one killed -9)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import embedlog
from embedlog.registry import (
    IncompatibleSchema,
    InvalidCompatibility,
    InvalidSchemaError,
    InvalidVersion,
    OperationNotPermitted,
    ReferenceExists,
    SchemaNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
    registry_for,
)


def rec(name, *fields, ns=None):
    doc = {"type": "record", "name": name, "fields": [{"name": f, "type": t} for f, t in fields]}
    if ns:
        doc["namespace"] = ns
    return json.dumps(doc)


A1 = rec("A", ("a", "int"))
A2 = rec("A", ("a", "long"))
B1 = rec("B", ("b", "string"))


@pytest.fixture
def reg(embedlog):
    return registry_for(embedlog)


def test_callable_module_and_export(embedlog):
    import embedlog.registry as module
    assert embedlog.__class__.__name__ == "Log"
    assert module(embedlog) is registry_for(embedlog)
    assert "registry" in __import__("embedlog").__all__


def test_versions_ids_and_records(reg, embedlog):
    assert reg.register("s", A1).id == 1
    assert reg.register("s", A2).version == 2
    assert reg.register("t", A1).id == 1                     # same schema, same id
    assert reg.register("s", A1).version == 1                # already there: no new version
    assert reg.get_version("s", "latest").schema == A2
    assert reg.get_version("s", -1).version == 2
    assert reg.versions("s") == [1, 2] and reg.subjects() == ["s", "t"]
    assert reg.id_versions(1) == [("s", 1), ("t", 1)]
    # Another Log handle on the directory sees the same registry, from the topic alone.
    with embedlog.__class__(embedlog.path) as other:
        r2 = registry_for(other)
        assert r2.get_by_id(2).schema == A2 and r2.subjects() == ["s", "t"]
    keys = [json.loads(r.key) for r in embedlog.partition("_schemas", 0).read(0)]
    assert keys[0] == {"keytype": "SCHEMA", "subject": "s", "version": 1, "magic": 1}
    assert embedlog.topic("_schemas").config["cleanup.policy"] == "compact"


def test_soft_then_permanent_delete(reg):
    reg.register("s", A1)
    reg.register("s", A2)
    with pytest.raises(VersionNotSoftDeleted):
        reg.delete_version("s", 1, permanent=True)
    assert reg.delete_version("s", 1) == 1
    with pytest.raises(VersionSoftDeleted):
        reg.delete_version("s", 1)
    assert reg.versions("s") == [2] and reg.versions("s", deleted=True) == [1, 2]
    assert reg.get_version("s", 1, deleted=True).deleted is True
    with pytest.raises(VersionNotFound):
        reg.get_version("s", 1)
    assert reg.delete_version("s", 1, permanent=True) == 1
    assert reg.versions("s", deleted=True) == [2]
    with pytest.raises(SubjectNotSoftDeleted) as e:
        reg.delete_subject("s", permanent=True)
    assert e.value.error_code == 40405
    assert reg.delete_subject("s") == [2]
    with pytest.raises(SubjectSoftDeleted) as e:
        reg.delete_subject("s")
    assert e.value.error_code == 40404
    assert reg.subjects() == [] and reg.subjects(deleted=True) == ["s"]
    with pytest.raises(SubjectNotFound):
        reg.versions("s")
    assert reg.delete_subject("s", permanent=True) == [2]
    assert reg.subjects(deleted=True) == []
    with pytest.raises(SchemaNotFound):
        reg.get_by_id(2)
    # ids are never reused, even for a schema seen before and permanently deleted.
    assert reg.register("s", B1).id == 3 and reg.register("s", B1).version == 1


def test_ids_survive_compaction_of_tombstones(reg, embedlog):
    reg.register("s", A1)
    reg.register("s", A2)
    reg.delete_subject("s")
    reg.delete_subject("s", permanent=True)
    embedlog.partition("_schemas", 0).compact(now=2**62)    # long past delete.retention.ms
    with embedlog.__class__(embedlog.path) as other:
        assert registry_for(other).register("u", B1).id == 3


def test_references(reg):
    reg.register("address", rec("Address", ("street", "string"), ns="acme"))
    person = json.dumps({"type": "record", "name": "Person", "namespace": "acme",
                         "fields": [{"name": "home", "type": "acme.Address"}]})
    refs = [{"name": "acme.Address", "subject": "address", "version": 1}]
    with pytest.raises(InvalidSchemaError) as e:
        reg.register("person", person)                      # the name is unknown without the reference
    assert "acme.Address" in str(e.value) and e.value.error_code == 42201
    got = reg.register("person", person, references=refs)
    assert got.references == tuple(refs)
    assert reg.referenced_by("address", 1) == [got.id]
    with pytest.raises(ReferenceExists):
        reg.delete_subject("address")
    parsed = reg.parsed_by_id(got.id)
    assert parsed.decode(parsed.encode({"home": {"street": "x"}})) == {"home": {"street": "x"}}
    with pytest.raises(InvalidSchemaError):
        reg.register("p2", person, references=[{"name": "acme.Address", "subject": "address", "version": 9}])


def test_compatibility_levels_and_transitive(reg):
    assert reg.get_compatibility() == "BACKWARD"
    reg.set_compatibility("backward_transitive", "s")
    v1 = rec("R", ("a", "int"))
    v2 = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"},
                                                                {"name": "b", "type": "int", "default": 0}]})
    v3 = json.dumps({"type": "record", "name": "R", "fields": [{"name": "b", "type": "int"}]})
    reg.register("s", v1)
    reg.register("s", v2)
    # v3 reads v2 data (b is there) but not v1 data: refused only because the level is transitive.
    assert reg.check_compatibility("s", v3, version="latest") == []
    assert reg.check_compatibility("s", v3, version=None)
    with pytest.raises(IncompatibleSchema):
        reg.register("s", v3)
    reg.set_compatibility("NONE", "s")
    assert reg.register("s", v3).version == 3
    assert reg.delete_compatibility("s") == "NONE"
    assert reg.get_compatibility("s", default_to_global=True) == "BACKWARD"
    with pytest.raises(InvalidCompatibility):
        reg.set_compatibility("MOSTLY")


def test_malformed_records_are_skipped(reg, embedlog):
    reg.register("s", A1)
    part = embedlog.partition("_schemas", 0)
    junk = [(b"not json", b"{}"), (b'{"keytype":"SCHEMA","subject":"x","version":1,"magic":1}', b'{"id":"two"}'),
            (b'{"keytype":"SCHEMA","subject":"x","version":2,"magic":1}', b"[]"), (None, b"x"),
            (b'{"keytype":"FUTURE","magic":0}', b"{}")]
    part.append_records([v for _k, v in junk], [k for k, _v in junk], sync=True)
    with embedlog.__class__(embedlog.path) as other:
        r2 = registry_for(other)
        assert r2.subjects() == ["s"] and r2.register("t", A2).id == 2
        assert [s.subject for s in r2.all_schemas()] == ["s", "t"]


def test_modes(reg):
    reg.register("s", A1)
    with pytest.raises(OperationNotPermitted):
        reg.set_mode("IMPORT")                                # subjects exist
    reg.set_mode("READONLY", "s")
    with pytest.raises(OperationNotPermitted):
        reg.register("s", A2)
    assert reg.register("t", A2).id == 2                     # only s is read-only
    assert reg.delete_mode("s") == "READONLY"
    assert reg.register("s", A2).version == 2


def test_import_mode_keeps_given_ids(reg):
    reg.set_mode("IMPORT")
    got = reg.register("s", A1, id=100, version=5)
    assert (got.id, got.version) == (100, 5)
    with pytest.raises(OperationNotPermitted):
        reg.register("s", A2, id=101, version=5)          # version 5 is taken
    reg.set_mode("READWRITE")
    with pytest.raises(OperationNotPermitted):
        reg.register("s", A2, id=7)                        # ids are given only in IMPORT mode
    assert reg.register("s", A2).id == 101 and reg.versions("s") == [5, 6]


def test_bad_input_writes_nothing(reg, embedlog):
    reg.register("s", A1)
    end = embedlog.partition("_schemas", 0).log_end_offset
    for bad in ["", "{", '{"type": "record", "name": "R"}', '{"type": "nope"}', json.dumps({"type": "enum",
                "name": "E", "symbols": ["A", "A"]})]:
        with pytest.raises(InvalidSchemaError) as e:
            reg.register("s", bad)
        assert e.value.error_code == 42201 and e.value.message
    for version in (0, "x", 2**31, "1.5"):
        with pytest.raises(InvalidVersion):
            reg.get_version("s", version)
    with pytest.raises(SubjectNotFound):
        reg.get_version("nope", 1)
    with pytest.raises(InvalidSchemaError):
        reg.register("s", A2, schema_type="XML")
    assert embedlog.partition("_schemas", 0).log_end_offset == end


REGISTER = textwrap.dedent("""
    import json, sys, embedlog
    from embedlog.registry import registry_for
    log = embedlog.open(sys.argv[1])
    reg = registry_for(log)
    tag, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        s = json.dumps({"type": "record", "name": f"R_{tag}_{i}", "fields": [{"name": "a", "type": "int"}]})
        got = reg.register(f"{tag}-{i % 3}" if i % 2 else "shared", s)
        print(got.id, got.subject, got.version, flush=True)
""")


def _spawn(path, tag, n):
    return subprocess.Popen([sys.executable, "-c", REGISTER, str(path), tag, str(n)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_ids_unique_across_concurrent_processes(embedlog_dir, tmp_path):
    embedlog.open(embedlog_dir).close()
    registry_for(embedlog.open(embedlog_dir)).set_compatibility("NONE")
    procs = [_spawn(embedlog_dir, f"p{k}", 20) for k in range(3)]
    seen = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        for line in out.split("\n"):
            if line:
                sid, subject, version = line.split()
                seen.setdefault(int(sid), []).append((subject, int(version)))
    assert len(seen) == 60 and sorted(seen) == list(range(1, 61))      # 60 schemas, 60 ids, none shared
    with embedlog.open(embedlog_dir) as log:
        reg = registry_for(log)
        assert reg.versions("shared") == list(range(1, 31))             # one version each, none lost
        for sid, places in seen.items():
            assert reg.id_versions(sid) == places


def test_killed_registrar_leaves_a_consistent_registry(embedlog_dir):
    embedlog.open(embedlog_dir).close()
    p = _spawn(embedlog_dir, "k", 10_000)
    acked = []
    for line in p.stdout:
        acked.append(int(line.split()[0]))
        if len(acked) == 25:
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait(timeout=60)
    with embedlog.open(embedlog_dir) as log:
        reg = registry_for(log)
        for sid in acked:                                    # every acknowledged id survived
            reg.get_by_id(sid)
        ids = sorted({sid for s in reg.subjects() for v in reg.versions(s)
                      for sid in [reg.get_version(s, v).id]})
        assert ids == list(range(1, len(ids) + 1)) and len(ids) >= len(acked)
        assert reg.register("after", B1).id == len(ids) + 1
