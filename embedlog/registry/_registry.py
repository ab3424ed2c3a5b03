"""The registry: subjects, versions, ids, compatibility and modes, kept as records of the
compacted topic `_schemas` (one partition) in Confluent's own key and value shapes
(FORMAT.md, "_schemas"), so the topic is the only truth and every process that opens the
directory sees the same registry.

    key {"keytype":"SCHEMA","subject":S,"version":V,"magic":1}
        -> {"subject":S,"version":V,"id":N,"schema":TEXT,["schemaType":T,]"references":[..],"deleted":B}
        -> null: version V of S permanently deleted
    key {"keytype":"CONFIG","subject":S|null,"magic":0} -> {"compatibilityLevel":L} | null
    key {"keytype":"MODE","subject":S|null,"magic":0}   -> {"mode":M} | null
    key {"keytype":"DELETE_SUBJECT","subject":S,"magic":0} -> {"subject":S,"version":V}
        (versions <= V of S soft-deleted) | null (cleared by a permanent delete)
    key {"keytype":"NOOP","magic":0} -> {"maxId":N}: the highest id ever given, written by
        permanent deletes so that ids stay unique after compaction drops the tombstones

Concurrency: each Registry keeps an in-memory view brought up to date by reading the topic
from where it stopped (`_catch_up`) before every answer. A change takes the registry lock
(an open-file-description lock on byte 16 of the directory's `.lock`, which the kernel
releases if the process dies), catches up to the end, decides (next id = highest id seen
+ 1), appends fdatasync'd (acks=all) and releases: two processes never give out one id.
A process killed mid-append leaves at most a torn tail, which partition recovery drops.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

from ..storage import _hotpath as hp
from ..storage._errors import (
    LockTimeoutError,
    StorageError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from . import _errors as E
from . import _formats

SCHEMAS_TOPIC = "_schemas"
SCHEMAS_TOPIC_CONFIG = {"cleanup.policy": "compact", "retention.ms": -1}
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
DEFAULT_LEVEL = "BACKWARD"
DEFAULT_MODE = "READWRITE"
LOCK_BYTE = 16                     # byte of <dir>/.lock the registry locks (the directory lock is byte 0)
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class Schema:
    """One registered schema: what GET /subjects/{s}/versions/{v} answers."""

    subject: str | None
    version: int | None
    id: int
    schema: str
    schema_type: str = "AVRO"
    references: tuple = ()
    deleted: bool = False

    def to_json(self) -> dict:
        """Confluent's REST body (schemaType and references only when not the defaults)."""
        out: dict = {}
        if self.subject is not None:
            out["subject"] = self.subject
        if self.version is not None:
            out["version"] = self.version
        out["id"] = self.id
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = [dict(r) for r in self.references]
        out["schema"] = self.schema
        return out


@dataclass
class _Version:
    id: int
    deleted: bool


@dataclass
class _State:
    schemas: dict = field(default_factory=dict)      # id -> (schema_type, text, references tuple)
    subjects: dict = field(default_factory=dict)     # subject -> {version: _Version}
    config: dict = field(default_factory=dict)       # subject | None -> level
    mode: dict = field(default_factory=dict)         # subject | None -> mode
    max_id: int = 0


def _key(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def schema_key(subject: str, version: int) -> bytes:
    return _key({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})


def _refs(references) -> tuple:
    """References as a tuple of {"name","subject","version"} dicts, checked."""
    out = []
    for r in references or ():
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not isinstance(r.get("subject"), str) \
                or not isinstance(r.get("version"), int) or isinstance(r.get("version"), bool):
            raise E.InvalidSchemaError(f"a reference is {{'name': str, 'subject': str, 'version': int}}, not {r!r}")
        out.append((("name", r["name"]), ("subject", r["subject"]), ("version", r["version"])))
    return tuple(out)


def parse_version(version, *, allow_latest: bool = True) -> int | str:
    """An int 1..2^31-1 or "latest" (-1 means latest too, as in Confluent); else 42202."""
    if isinstance(version, str):
        if allow_latest and version.lower() == "latest":
            return "latest"
        try:
            version = int(version, 10)
        except ValueError:
            version = None
    if isinstance(version, int) and not isinstance(version, bool):
        if version == -1 and allow_latest:
            return "latest"
        if 1 <= version <= MAX_VERSION:
            return version
    raise E.InvalidVersion(f"The specified version '{version}' is not a valid version id. Allowed values are "
                           f"between [1, 2^31-1] and the string \"latest\"")


class Registry:
    """The schema registry of one log directory. `embedlog.registry(log)` returns it."""

    def __init__(self, log, *, lock_timeout: float = 30.0):
        self.log = log
        self.lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._state = _State()
        self._next = 0
        self._partition = None
        self._parsed: dict = {}          # id -> Parsed (cache)

    # ------------------------------------------------------------------ the topic
    def _part(self):
        if self._partition is None:
            try:
                t = self.log.topic(SCHEMAS_TOPIC)
            except UnknownTopicOrPartitionError:
                try:
                    t = self.log.create_topic(SCHEMAS_TOPIC, partitions=1, config=SCHEMAS_TOPIC_CONFIG)
                except TopicExistsError:
                    t = self.log.topic(SCHEMAS_TOPIC)
            self._partition = t.partition(0)
        return self._partition

    def _catch_up(self):
        part = self._part()
        with self._mutex:
            start, end = part.watermarks()
            pos = max(self._next, start)
            while pos < end:
                cols, nxt = part.fetch(pos, max_bytes=1 << 20)
                for key, value in zip(cols.keys, cols.values):
                    self._apply(key, value)
                if nxt <= pos:
                    break
                pos = nxt
            self._next = max(pos, self._next)

    def _apply(self, key: bytes | None, value: bytes | None):
        try:
            k = json.loads(key) if key else None
            v = json.loads(value) if value is not None else None
        except ValueError:
            return                       # not a registry record: skipped, as Confluent's reader does
        if not isinstance(k, dict):
            return
        st = self._state
        kind = k.get("keytype")
        subject = k.get("subject")
        if kind == "SCHEMA":
            version = k.get("version")
            versions = st.subjects.setdefault(subject, {})
            if v is None:
                versions.pop(version, None)
                if not versions:
                    del st.subjects[subject]
                return
            try:
                sid = v["id"]
                if not isinstance(sid, int) or not isinstance(v["schema"], str):
                    raise TypeError(sid)
                st.schemas[sid] = (v.get("schemaType") or "AVRO", v["schema"], _refs(v.get("references")))
            except (KeyError, TypeError, E.RegistryError):
                if not versions:
                    del st.subjects[subject]
                return                   # a value Confluent's reader would not accept either: skipped
            versions[version] = _Version(sid, bool(v.get("deleted")))
            st.max_id = max(st.max_id, sid)
        elif kind == "DELETE_SUBJECT":
            if v is not None:
                for ver, rec in st.subjects.get(subject, {}).items():
                    if ver <= v.get("version", MAX_VERSION):
                        rec.deleted = True
        elif kind == "CONFIG":
            if v is None:
                st.config.pop(subject, None)
            else:
                st.config[subject] = v.get("compatibilityLevel")
        elif kind == "MODE":
            if v is None:
                st.mode.pop(subject, None)
            else:
                st.mode[subject] = v.get("mode")
        elif kind == "NOOP" and isinstance(v, dict) and isinstance(v.get("maxId"), int):
            st.max_id = max(st.max_id, v["maxId"])

    def _append(self, records: list[tuple[bytes, bytes | None]]):
        try:
            self._part().append_records([v for _k, v in records], [k for k, _v in records], sync=True)
        except (OSError, StorageError) as e:
            raise E.StoreError(f"writing to the {SCHEMAS_TOPIC} topic of {self.log.path} failed: {e}") from e
        self._catch_up()

    class _Change:
        def __init__(self, reg):
            self.reg = reg

        def __enter__(self):
            reg = self.reg
            reg._mutex.acquire()
            try:
                fd = reg.log._lock_fd
                if not hp.lock(fd, LOCK_BYTE, 1, True, reg.lock_timeout):
                    raise LockTimeoutError(f"timed out waiting for the schema registry lock of {reg.log.path}",
                                           path=os.path.join(reg.log.path, ".lock"))
            except BaseException:
                reg._mutex.release()
                raise
            try:
                reg._catch_up()
            except BaseException:
                self.__exit__(None, None, None)
                raise
            return reg._state

        def __exit__(self, *exc):
            try:
                hp.unlock(self.reg.log._lock_fd, LOCK_BYTE, 1)
            finally:
                self.reg._mutex.release()

    def _change(self):
        return Registry._Change(self)

    def _view(self) -> _State:
        self._catch_up()
        return self._state

    # ------------------------------------------------------------------ helpers
    def _resolve_refs(self, refs: tuple, seen=None) -> dict[str, str]:
        """name -> schema text of every reference, transitively (42201 if one is missing)."""
        out: dict[str, str] = {}
        seen = set() if seen is None else seen
        for ref in refs:
            r = dict(ref)
            versions = self._state.subjects.get(r["subject"], {})
            rec = versions.get(r["version"])
            if rec is None:
                raise E.InvalidSchemaError(f"Invalid schema: the reference {r['name']!r} names subject "
                                           f"{r['subject']!r} version {r['version']}, which does not exist")
            if (r["subject"], r["version"]) in seen:
                continue
            seen.add((r["subject"], r["version"]))
            _t, text, sub = self._state.schemas[rec.id]
            for name, t in self._resolve_refs(sub, seen).items():
                out.setdefault(name, t)
            out.setdefault(r["name"], text)
        return out

    def _parse(self, text: str, schema_type: str, refs: tuple):
        try:
            fmt = _formats.get(schema_type)
            return fmt.parse(text, self._resolve_refs(refs))
        except _formats.InvalidSchema as e:
            raise E.InvalidSchemaError(f"Invalid schema: {e}") from None
        except E.RegistryError:
            raise
        except ImportError as e:
            raise E.InvalidSchemaError(f"schemaType {schema_type} is not available: {e}") from None

    def _parsed_of(self, sid: int):
        p = self._parsed.get(sid)
        if p is None:
            schema_type, text, refs = self._state.schemas[sid]
            p = self._parsed[sid] = self._parse(text, schema_type, refs)
        return p

    def _identity(self, sid: int) -> tuple:
        schema_type, _text, refs = self._state.schemas[sid]
        return schema_type, self._parsed_of(sid).canonical(), refs

    def _schema(self, subject, version, sid, deleted=False) -> Schema:
        schema_type, text, refs = self._state.schemas[sid]
        return Schema(subject, version, sid, text, schema_type, tuple(dict(r) for r in refs), deleted)

    def _versions(self, subject: str, deleted: bool) -> dict:
        return {v: r for v, r in self._state.subjects.get(subject, {}).items() if deleted or not r.deleted}

    def _live_subject(self, subject: str, deleted: bool = False) -> dict:
        _check_subject(subject)
        versions = self._versions(subject, deleted)
        if not versions:
            raise E.SubjectNotFound(f"Subject '{subject}' not found.")
        return versions

    def _find(self, versions: dict, identity: tuple) -> int | None:
        text_hits = [v for v, r in versions.items()]
        for v in sorted(text_hits):
            if self._identity(versions[v].id) == identity:
                return v
        return None

    def level(self, subject: str | None = None) -> str:
        st = self._state
        return st.config.get(subject) or st.config.get(None) or DEFAULT_LEVEL

    def _mode_of(self, subject: str | None) -> str:
        st = self._state
        return st.mode.get(subject) or st.mode.get(None) or DEFAULT_MODE

    def _incompatibilities(self, new, subject: str, level: str, against: list[int]) -> list[str]:
        if level == "NONE":
            return []
        if not level.endswith("_TRANSITIVE"):
            against = against[-1:]
        out = []
        for v in against:
            old = self._parsed_of(self._state.subjects[subject][v].id)
            if level.startswith(("BACKWARD", "FULL")):
                out += [f"{m} (version {v}, {level}: the new schema cannot read data written with it)"
                        for m in new.incompatibilities(old)]
            if level.startswith(("FORWARD", "FULL")):
                out += [f"{m} (version {v}, {level}: it cannot read data written with the new schema)"
                        for m in old.incompatibilities(new)]
        return out

    # ------------------------------------------------------------------ register / look up
    def register(self, subject: str, schema: str, schema_type: str = "AVRO", references=(), *,
                 id: int | None = None, version: int | None = None, normalize: bool = False) -> Schema:
        """Register `schema` under `subject` (POST /subjects/{s}/versions): the existing
        version if the subject already has this schema, else a new version, checked against
        the subject's compatibility level (IncompatibleSchema, 409). The same schema under
        any subject keeps one id; a new one gets the highest id ever given + 1.
        `id`/`version` are for IMPORT mode only."""
        _check_subject(subject)
        schema_type = _schema_type(schema_type)
        refs = _refs(references)
        if not isinstance(schema, str) or not schema.strip():
            raise E.InvalidSchemaError("Invalid schema: empty schema text")
        with self._change() as st:
            mode = self._mode_of(subject)
            if mode in ("READONLY", "READONLY_OVERRIDE"):
                raise E.OperationNotPermitted(f"Subject {subject} is in read-only mode")
            if (id is not None or version is not None) and mode != "IMPORT":
                raise E.OperationNotPermitted(f"Subject {subject} is not in import mode: an id or version "
                                              f"can only be given in IMPORT mode")
            new = self._parse(schema, schema_type, refs)
            identity = (schema_type, new.canonical(), refs)
            live = self._versions(subject, False)
            hit = self._find(live, identity)
            if hit is not None and id is None:
                return self._schema(subject, hit, live[hit].id)
            if mode != "IMPORT":
                problems = self._incompatibilities(new, subject, self.level(subject), sorted(live))
                if problems:
                    raise E.IncompatibleSchema("Schema being registered is incompatible with an earlier schema for "
                                               f"subject \"{subject}\", details: " + "; ".join(problems))
            if id is None:
                used = self._used_ids()
                same = [sid for sid in sorted(used) if st.schemas[sid][0] == schema_type
                        and self._identity(sid) == identity]
                sid = same[0] if same else st.max_id + 1
            else:
                if not isinstance(id, int) or isinstance(id, bool) or id < 1:
                    raise E.InvalidSchemaError(f"an imported schema id must be an int >= 1, not {id!r}")
                if self._in_use(id) and self._identity(id) != identity:
                    raise E.RegistryError(f"Overwrite new schema with id {id} is not permitted.")
                sid = id
            every = st.subjects.get(subject, {})
            if version is None:
                version = max(every, default=0) + 1
            else:
                version = parse_version(version, allow_latest=False)
                if version in every:
                    raise E.OperationNotPermitted(f"Subject {subject} already has a version {version}")
            value = {"subject": subject, "version": version, "id": sid, "schema": schema}
            if schema_type != "AVRO":
                value["schemaType"] = schema_type
            value["references"] = [dict(r) for r in refs]
            value["deleted"] = False
            self._parsed.setdefault(sid, new)
            self._append([(schema_key(subject, version), _key(value))])
            return self._schema(subject, version, sid)

    def _used_ids(self) -> set[int]:
        return {r.id for versions in self._state.subjects.values() for r in versions.values()}

    def _in_use(self, sid: int) -> bool:
        return any(r.id == sid for versions in self._state.subjects.values() for r in versions.values())

    def lookup(self, subject: str, schema: str, schema_type: str = "AVRO", references=(), *,
               deleted: bool = False) -> Schema:
        """The version of `subject` holding this schema (POST /subjects/{s}): 40401 if the
        subject does not exist, 40403 if it does not hold the schema."""
        schema_type = _schema_type(schema_type)
        refs = _refs(references)
        with self._mutex:
            self._catch_up()
            versions = self._live_subject(subject, deleted)
            new = self._parse(schema, schema_type, refs)
            hit = self._find(versions, (schema_type, new.canonical(), refs))
            if hit is None:
                raise E.SchemaNotFound("Schema not found")
            return self._schema(subject, hit, versions[hit].id, versions[hit].deleted)

    def get_by_id(self, schema_id: int) -> Schema:
        """The schema with this id (GET /schemas/ids/{id}); 40403 if none."""
        with self._mutex:
            st = self._view()
            if not isinstance(schema_id, int) or schema_id not in st.schemas or not self._in_use(schema_id):
                raise E.SchemaNotFound(f"Schema {schema_id} not found")
            return self._schema(None, None, schema_id)

    def parsed_by_id(self, schema_id: int):
        """The schema with this id parsed by its format (the serdes' decoder); 40403 if none."""
        with self._mutex:
            self.get_by_id(schema_id)
            return self._parsed_of(schema_id)

    def parse(self, schema: str, schema_type: str = "AVRO", references=()):
        """Parse a schema text with its references resolved from the registry (42201 if invalid)."""
        with self._mutex:
            self._catch_up()
            return self._parse(schema, _schema_type(schema_type), _refs(references))

    def all_schemas(self, deleted: bool = False, prefix: str = "") -> list[Schema]:
        """Every subject version (GET /schemas), by subject then version."""
        with self._mutex:
            self._catch_up()
            return [self._schema(s, v, r.id, r.deleted) for s in sorted(self._state.subjects) if s.startswith(prefix)
                    for v, r in sorted(self._state.subjects[s].items()) if deleted or not r.deleted]

    def id_versions(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """(subject, version) pairs holding the id (GET /schemas/ids/{id}/versions)."""
        with self._mutex:
            self.get_by_id(schema_id)
            return sorted((s, v) for s, versions in self._state.subjects.items() for v, r in versions.items()
                          if r.id == schema_id and (deleted or not r.deleted))

    def get_version(self, subject: str, version="latest", *, deleted: bool = False) -> Schema:
        """Version `version` (an int or "latest") of `subject`."""
        version = parse_version(version)
        with self._mutex:
            self._catch_up()
            versions = self._live_subject(subject, deleted)
            if version == "latest":
                version = max(versions)
            rec = versions.get(version)
            if rec is None:
                raise E.VersionNotFound(f"Version {version} not found.")
            return self._schema(subject, version, rec.id, rec.deleted)

    def subjects(self, deleted: bool = False, prefix: str = "") -> list[str]:
        with self._mutex:
            self._catch_up()
            return sorted(s for s in self._state.subjects if s.startswith(prefix or "") and self._versions(s, deleted))

    def versions(self, subject: str, deleted: bool = False) -> list[int]:
        with self._mutex:
            self._catch_up()
            return sorted(self._live_subject(subject, deleted))

    def referenced_by(self, subject: str, version="latest") -> list[int]:
        """Ids of the schemas whose references name this subject version."""
        with self._mutex:
            s = self.get_version(subject, version, deleted=True)
            return self._referrers(subject, s.version)

    def _referrers(self, subject: str, version: int) -> list[int]:
        st = self._state
        used = {r.id for versions in st.subjects.values() for r in versions.values() if not r.deleted}
        return sorted(sid for sid in used
                      if any(dict(r)["subject"] == subject and dict(r)["version"] == version for r in st.schemas[sid][2]))

    # ------------------------------------------------------------------ delete
    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Soft-delete every version of `subject` (a DELETE_SUBJECT record), or, with
        permanent=True and only after the soft delete, drop them (tombstones). Returns the
        versions deleted."""
        _check_subject(subject)
        with self._change() as st:
            every = st.subjects.get(subject, {})
            if not every:
                raise E.SubjectNotFound(f"Subject '{subject}' not found.")
            self._writable(subject)
            live = sorted(v for v, r in every.items() if not r.deleted)
            if not permanent:
                if not live:
                    raise E.SubjectSoftDeleted(f"Subject '{subject}' was soft deleted. Set permanent=true to "
                                               f"delete permanently")
                for v in live:
                    self._no_referrers(subject, v)
                self._append([(_key({"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0}),
                               _key({"subject": subject, "version": max(every)}))])
                return live
            if live:
                raise E.SubjectNotSoftDeleted(f"Subject '{subject}' was not deleted first before being deleted "
                                              f"permanently")
            versions = sorted(every)
            records = [(schema_key(subject, v), None) for v in versions]
            records.append((_key({"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0}), None))
            records.append((_key({"keytype": "NOOP", "magic": 0}), _key({"maxId": st.max_id})))
            self._append(records)
            return versions

    def delete_version(self, subject: str, version, permanent: bool = False) -> int:
        """Soft-delete one version (its record again with deleted=true), or with
        permanent=True, only after the soft delete, drop it (a tombstone)."""
        version = parse_version(version)
        _check_subject(subject)
        with self._change() as st:
            every = st.subjects.get(subject, {})
            if not every:
                raise E.SubjectNotFound(f"Subject '{subject}' not found.")
            self._writable(subject)
            if version == "latest":
                live = [v for v, r in every.items() if not r.deleted]
                if not live:
                    raise E.SubjectNotFound(f"Subject '{subject}' not found.")
                version = max(live)
            rec = every.get(version)
            if rec is None:
                raise E.VersionNotFound(f"Version {version} not found.")
            if not permanent:
                if rec.deleted:
                    raise E.VersionSoftDeleted(f"Subject '{subject}' Version {version} was soft deleted. Set "
                                               f"permanent=true to delete permanently")
                self._no_referrers(subject, version)
                schema_type, text, refs = st.schemas[rec.id]
                value = {"subject": subject, "version": version, "id": rec.id, "schema": text}
                if schema_type != "AVRO":
                    value["schemaType"] = schema_type
                value["references"] = [dict(r) for r in refs]
                value["deleted"] = True
                self._append([(schema_key(subject, version), _key(value))])
                return version
            if not rec.deleted:
                raise E.VersionNotSoftDeleted(f"Subject '{subject}' Version {version} was not deleted first before "
                                              f"being permanently deleted")
            self._append([(schema_key(subject, version), None),
                          (_key({"keytype": "NOOP", "magic": 0}), _key({"maxId": st.max_id}))])
            return version

    def _no_referrers(self, subject: str, version: int):
        ids = self._referrers(subject, version)
        if ids:
            raise E.ReferenceExists(f"One or more references exist to the schema {{subject={subject}, "
                                    f"version={version}}}: schema ids {ids}")

    def _writable(self, subject: str):
        if self._mode_of(subject) in ("READONLY", "READONLY_OVERRIDE"):
            raise E.OperationNotPermitted(f"Subject {subject} is in read-only mode")

    # ------------------------------------------------------------------ compatibility
    def get_compatibility(self, subject: str | None = None, *, default_to_global: bool = False) -> str:
        """The subject's level (40408 if it has none, unless default_to_global) or the
        global one (BACKWARD unless set)."""
        with self._mutex:
            st = self._view()
            if subject is None:
                return st.config.get(None) or DEFAULT_LEVEL
            _check_subject(subject)
            if subject in st.config:
                return st.config[subject]
            if default_to_global:
                return st.config.get(None) or DEFAULT_LEVEL
            raise E.CompatibilityNotSet(f"Subject '{subject}' does not have subject-level compatibility configured")

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        level = _level(level)
        if subject is not None:
            _check_subject(subject)
        with self._change():
            self._append([(_key({"keytype": "CONFIG", "subject": subject, "magic": 0}),
                           _key({"compatibilityLevel": level}))])
        return level

    def delete_compatibility(self, subject: str | None = None) -> str:
        """Drop the subject's (or the global) level; returns the level it had."""
        with self._change() as st:
            if subject is not None:
                _check_subject(subject)
                if subject not in st.subjects and subject not in st.config:
                    raise E.SubjectNotFound(f"Subject '{subject}' not found.")
            before = st.config.get(subject) or self.level(None)
            self._append([(_key({"keytype": "CONFIG", "subject": subject, "magic": 0}), None)])
            return before

    def check_compatibility(self, subject: str, schema: str, schema_type: str = "AVRO", references=(),
                            version="latest") -> list[str]:
        """Why `schema` could not be registered under `subject` as its level says, against
        `version` (or, with version=None, against what registering would check: the latest
        or, transitive levels, every version). [] means compatible."""
        schema_type = _schema_type(schema_type)
        refs = _refs(references)
        with self._mutex:
            self._catch_up()
            if version is None:
                versions = self._versions(subject, False)
                new = self._parse(schema, schema_type, refs)
                return self._incompatibilities(new, subject, self.level(subject), sorted(versions))
            old = self.get_version(subject, version)
            new = self._parse(schema, schema_type, refs)
            level = self.level(subject).replace("_TRANSITIVE", "")
            return self._incompatibilities(new, subject, level, [old.version])

    # ------------------------------------------------------------------ mode
    def get_mode(self, subject: str | None = None, *, default_to_global: bool = False) -> str:
        with self._mutex:
            st = self._view()
            if subject is None:
                return st.mode.get(None) or DEFAULT_MODE
            _check_subject(subject)
            if subject in st.mode:
                return st.mode[subject]
            if default_to_global:
                return st.mode.get(None) or DEFAULT_MODE
            raise E.ModeNotSet(f"Subject '{subject}' does not have subject-level mode configured")

    def set_mode(self, mode: str, subject: str | None = None, *, force: bool = False) -> str:
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise E.InvalidMode(f"Invalid mode {mode!r}. Valid values are {', '.join(MODES)}")
        mode = mode.upper()
        if subject is not None:
            _check_subject(subject)
        with self._change() as st:
            if mode == "IMPORT" and not force:
                live = [s for s in st.subjects if (subject is None or s == subject) and self._versions(s, True)]
                if live:
                    raise E.OperationNotPermitted("Cannot import since found existing subjects")
            self._append([(_key({"keytype": "MODE", "subject": subject, "magic": 0}), _key({"mode": mode}))])
        return mode

    def delete_mode(self, subject: str) -> str:
        _check_subject(subject)
        with self._change() as st:
            before = st.mode.get(subject) or self._mode_of(None)
            self._append([(_key({"keytype": "MODE", "subject": subject, "magic": 0}), None)])
            return before


def _check_subject(subject):
    if not isinstance(subject, str) or not subject or "\0" in subject:
        raise E.InvalidSubject(f"Invalid subject {subject!r}: a non-empty string without NUL")


def _schema_type(schema_type) -> str:
    name = (schema_type or "AVRO")
    if not isinstance(name, str) or name.upper() not in _formats.TYPES:
        raise E.InvalidSchemaError(f"Invalid schema: unknown schemaType {schema_type!r}: one of "
                                   f"{', '.join(_formats.TYPES)}")
    return name.upper()


def _level(level) -> str:
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise E.InvalidCompatibility(f"Invalid compatibility level {level!r}. Valid values are none, backward, "
                                     "forward, full, backward_transitive, forward_transitive, and full_transitive")
    return level.upper()


def registry_for(log) -> Registry:
    """The Registry of an open Log (one per Log handle)."""
    reg = getattr(log, "_schema_registry", None)
    if reg is None:
        reg = log._schema_registry = Registry(log)
    return reg
