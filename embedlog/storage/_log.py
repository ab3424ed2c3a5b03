"""Log: a log directory holding topics, each with N partitions (FORMAT.md §1, §9).

    <dir>/embedlog.json           format marker and version (FORMAT.md §1)
    <dir>/.lock                   byte-range lock serializing topic create/delete
    <dir>/topics/<topic>.json     a topic's partition count and config overrides
    <dir>/<topic>-<partition>/    one folder per partition (see _partition.py)

Any number of processes may open the same directory at once. Topic metadata changes
take the directory lock, and after writing the topic's JSON bump the metadata version
in `<dir>/.notify`, which every process's open Topic checks at each use (one shared-memory
load) to re-read the file when it moved; partitions synchronize through their own state
files.
A topic exists once its JSON file exists: it is written (temp, fsync, rename) after
its partition folders, so a crash mid-create leaves no half topic.
"""
from __future__ import annotations

import errno
import json
import os
import re
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from . import _config, _io, _replication
from . import _hotpath as hp
from ._errors import (
    ConfigError,
    EmbedlogError,
    FormatVersionError,
    InvalidPartitionsError,
    InvalidTopicError,
    LockTimeoutError,
    LogClosedError,
    ReadOnlyLogError,
    StorageError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
    typed_os_errors,
)
from ._maintenance import DEFAULT_INTERVAL_MS, Maintainer, maintain_log
from ._partition import DEFAULT_LOCK_TIMEOUT, AppendResult, Partition
from ._partitioner import StickyPartitioner, partitions_for_keys
from ._records import build_batch
from ._state import (
    TEMP_RE,
    DirNotifier,
    fsync_dir,
    remove_temp_files,
    seal_json,
    unseal_json,
    write_atomic,
)

if TYPE_CHECKING:
    from typing_extensions import Self

FORMAT_NAME = "embedlog"
FORMAT_VERSION = 1
MARKER = "embedlog.json"
NOTIFY_FILE = ".notify"
TOPICS_DIR = "topics"
TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]+")
MAX_TOPIC_LENGTH = 249
MAX_PARTITIONS = 2**31 - 1      # Kafka's partition count is an int32 (CreateTopics, CreatePartitions)


def validate_topic_name(name) -> str:
    """Kafka's rule: [a-zA-Z0-9._-], 1..249 characters, not '.' or '..'. Checked before
    any file is touched, so '../x', 'a/b', '' and NUL never reach the file system."""
    if not isinstance(name, str):
        raise InvalidTopicError(f"topic name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidTopicError("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(f"topic name is {len(name)} characters; the limit is {MAX_TOPIC_LENGTH}")
    if not TOPIC_RE.fullmatch(name):
        bad = sorted({c for c in name if not re.match(r"[a-zA-Z0-9._-]", c)})
        raise InvalidTopicError(
            f"topic name {name!r} contains {', '.join(repr(c) for c in bad)}; "
            "only ASCII letters, digits, '.', '_' and '-' are allowed")
    return name


def path_from_config(value: str) -> str:
    """A directory from 'file:///var/lib/log', 'file:relative/dir' or a plain path."""
    if value.startswith("file:"):
        u = urlparse(value)
        return unquote(u.netloc + u.path) if u.netloc not in ("", "localhost") else unquote(u.path)
    return value


class _TopicPartition(Partition):
    """A partition opened through its Topic: before each append (and each retention or
    compaction run) it lets the topic catch up with metadata changes made by other
    processes (one shared-memory load when nothing changed), so a lowered
    max.message.bytes applies to the very next append even when the caller kept this
    object instead of going through the Topic. The config dict is the topic's."""

    _owner: Topic

    def append_batches(self, batches, *, sync: bool = False, _built_here: bool = False,
                       _marker: bool = False) -> list[AppendResult]:
        # Partition.append_batches's own signature, spelled out: forwarding *args/**kwargs
        # would cost three times the check itself (tests compare the two signatures).
        owner = self._owner
        if owner._metadata_version() != owner._version:
            owner._reload()
        if owner.log._maintainer is None:
            if self.read_only:                   # (never started in a read-only Log)
                self._refuse_write("append")
            owner.log._start_maintenance()       # this process writes: it maintains too
        if self.mirrors and owner.log._replicator is None:
            owner.log._start_replicator()        # ... and copies to mirrors
        return Partition.append_batches(self, batches, sync=sync, _built_here=_built_here, _marker=_marker)

    def maintain(self, *args, **kwargs):
        self._owner._sync()
        return Partition.maintain(self, *args, **kwargs)

    def compact(self, *args, **kwargs):
        self._owner._sync()
        return Partition.compact(self, *args, **kwargs)


class Topic:
    """A topic's partitions and config. Obtain it from `Log.topic()`.

    Live across processes: when any process changes the topic (config, partitions), it
    bumps the metadata version in `<dir>/.notify`; this object compares that word with
    the version it loaded at each use (num_partitions, partitions, config, append, and
    each append of its partitions) and re-reads topics/<name>.json when it moved."""

    def __init__(self, log: Log, name: str, meta: dict, version: int):
        self.log = log
        self.name = name
        self._num_partitions = meta["partitions"]
        self._config = _config.topic_config(meta.get("config"))   # live: partitions hold this dict
        self._set = dict(meta.get("config") or {})   # the keys set explicitly (as stored)
        self.topic_id = meta.get("topic_id")
        self.replicas = list(meta.get("replicas", []))   # mirror ids; replication.factor = 1 + len
        self._version = version        # the metadata version `meta` was read at (or after)
        self._metadata_version = log.notifier.metadata_version     # bound once: the hot path
        self._deleted = False          # seen deleted by another process (see _reload)
        self._partitions: dict[int, Partition] = {}
        self._sticky = StickyPartitioner()
        self._lock = threading.Lock()

    def __repr__(self):
        # Attribute names as they are spelled on the object (t.num_partitions, ...).
        return (f"<embedlog.Topic name={self.name!r} num_partitions={self._num_partitions} "
                f"replication_factor={self.replication_factor} config_overrides={self.config_overrides!r}>")

    # ------------------------------------------------------------ live metadata
    def _sync(self):
        """Catch up with a metadata change of any process: one shared-memory load."""
        if self._metadata_version() != self._version:
            self._reload()

    def _reload(self):
        with self._lock:             # one reload at a time: an older read never lands last
            # The version first, then the file: the writer renames the file, then bumps,
            # so the file read here is at least as new as `version`.
            version = self._metadata_version()
            if version == self._version:
                return               # another thread caught up meanwhile
            try:
                meta = self.log._read_meta(self.name)
                config = None if meta is None else _config.topic_config(meta.get("config"))
            except (EmbedlogError, OSError, ValueError, KeyError):
                self._version = version  # unreadable: keep what we have (the writer's problem)
                return
            if meta is not None and meta.get("topic_id") == self.topic_id:
                self._apply(meta["partitions"], config)
                self._set = dict(meta.get("config") or {})
                self._refresh_mirrors()
            else:
                # Deleted (and maybe created again) by another process. This object keeps
                # its last metadata for whoever holds it, as before; Log.topic() stops
                # handing it out.
                self._deleted = True
            self._version = version

    def _apply(self, num_partitions: int, config: dict):
        # update(), not clear() + update(): every key is always present (defaults filled
        # in), and a partition appending in another thread never sees a missing key.
        if config != self._config:
            self._config.update(config)
        self._num_partitions = max(self._num_partitions, num_partitions)     # partitions are never removed

    def _refresh_mirrors(self):
        """The registry may have changed (a mirror removed or added back)."""
        if not self.replicas:
            return
        roots = self.log._replica_roots()
        for part in self._partitions.values():
            for m in part.mirrors:
                m.set_root(roots.get(m.replica_id))

    @property
    def replication_factor(self) -> int:
        return 1 + len(self.replicas)

    @property
    def num_partitions(self) -> int:
        self._sync()
        return self._num_partitions

    @property
    def config(self) -> dict:
        """The effective config (defaults filled in). The same dict stays current: it is
        updated in place when the topic's config changes in any process."""
        self._sync()
        return self._config

    @property
    def config_overrides(self) -> dict:
        """The configs set on this topic (at creation or by alter_topic_config), with their
        normalized values, even where one equals the default: what `topics describe` and
        DescribeConfigs report as the topic's own (Kafka's DYNAMIC_TOPIC_CONFIG)."""
        self._sync()
        return {k: self._config[k] for k in self._set if k in self._config}

    def partition(self, p: int) -> Partition:
        if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < self._num_partitions:
            self._check_partition(p)
        part = self._partitions.get(p)
        if part is not None:
            return part
        with self._lock:
            part = self._partitions.get(p)
            if part is None:
                part = _TopicPartition(os.path.join(self.log.path, f"{self.name}-{p}"), self.name, p,
                                       self._config, lock_timeout=self.log.lock_timeout,
                                       notifier=self.log.notifier, read_only=self.log.read_only)
                part._owner = self
                if self.replicas and not self.log.read_only:
                    roots = self.log._replica_roots()
                    part.mirrors = [_replication.PartitionMirror(part, slot, rid, roots.get(rid))
                                    for slot, rid in enumerate(self.replicas)]
                self._partitions[p] = part
        return part

    def _check_partition(self, p):
        if isinstance(p, int) and not isinstance(p, bool) and p >= self._num_partitions:
            self._sync()             # added by another process since we last looked?
            if p < self._num_partitions:
                return
        raise UnknownTopicOrPartitionError(
            f"topic {self.name!r} has partitions 0..{self._num_partitions - 1}; there is no partition {p!r}")

    @property
    def partitions(self) -> list[Partition]:
        return [self.partition(p) for p in range(self.num_partitions)]

    def append(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None, *,
               partition: int | None = None, timestamps: Sequence[int] | None = None,
               headers: Sequence[Sequence[tuple[str, bytes | None]] | None] | None = None,
               compression: int = 0, sync: bool = False) -> list[tuple[int, AppendResult]]:
        """Append records, routed as a Kafka producer routes them: an explicit partition
        wins, keyed records go to murmur2(key), null keys share one sticky partition for
        this call. One batch per partition; returns [(partition, AppendResult)]."""
        n = len(values)
        if keys is None:
            keys = [None] * n
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} values")
        if partition is not None:
            self.partition(partition)
            targets = [partition] * n
        else:
            num_partitions = self.num_partitions     # current in every process (see _sync)
            targets = partitions_for_keys(keys, num_partitions)
            if -1 in targets:
                sticky = self._sticky.partition(self.name, num_partitions)
                targets = [sticky if t < 0 else t for t in targets]
                self._sticky.batch_complete(self.name, num_partitions)
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(targets):
            groups.setdefault(t, []).append(i)
        out = []
        for p, idx in sorted(groups.items()):
            pick = (lambda seq: [seq[i] for i in idx]) if len(idx) != n else (lambda seq: seq)
            batch = build_batch(pick(values), pick(keys), None if timestamps is None else pick(timestamps),
                                None if headers is None else pick(headers), compression=compression)
            out.append((p, self.partition(p).append(batch, sync=sync)))
        return out

    def close(self) -> None:
        for part in self._partitions.values():
            part.close()
        self._partitions.clear()


class Log:
    """An open log directory. `embedlog.open(path)` returns one; use it as a context manager."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 retention_check_interval_ms: int = DEFAULT_INTERVAL_MS, read_only: bool = False) -> None:
        """`retention_check_interval_ms`: how often a process that appends applies
        retention and compaction to every partition (Kafka's
        log.retention.check.interval.ms); 0 turns the timer off (`maintain()` still works).

        `read_only=True` opens a directory this process may not (or must not) write: a
        backup, a read-only mount, another user's log. Nothing in it is created or
        changed, not even a lock file; every write raises ReadOnlyLogError. Each partition
        shows the records present when it is first used (its state is taken from the live
        state file, or from a scan that leaves a torn tail in place unread, with damaged
        indexes rebuilt in memory); open again to see later ones."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        path = os.fspath(path)
        if isinstance(path, str):
            if _config.bootstrap_brokers(path):
                raise ConfigError(f"{path!r} names Kafka brokers, not a log directory: for a directory of that "
                                  f"name use 'file:{path.strip()}' or './{path.strip()}'; for the cluster, "
                                  "embedlog.Producer/Consumer/AdminClient({'bootstrap.servers': ...})")
            path = path_from_config(path)
        if "\0" in path:
            raise ValueError("path contains a NUL byte")
        self.path = os.path.abspath(path)
        self.lock_timeout = lock_timeout
        if not isinstance(retention_check_interval_ms, int) or retention_check_interval_ms < 0:
            raise ValueError(f"retention_check_interval_ms must be an int >= 0, not {retention_check_interval_ms!r}")
        self.retention_check_interval_ms = retention_check_interval_ms
        self._maintainer = None
        self._replicator = None
        self._topics: dict[str, Topic] = {}
        self._retired: list[Topic] = []      # deleted by other processes, still held by someone
        self._closed = False
        self._mutex = threading.RLock()
        self.read_only = bool(read_only)
        self._init_dir(create and not self.read_only)
        if self.read_only:
            self._lock_fd = None
            self.notifier = DirNotifier(os.path.join(self.path, NOTIFY_FILE), private=True)
            return
        try:
            self._lock_fd = _io.open(os.path.join(self.path, ".lock"),
                                    os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StorageError(f"cannot open the log directory's lock file {e.filename}: {e.strerror}",
                                   path=e.filename, errno=e.errno) from e
            raise ReadOnlyLogError(
                f"cannot write the log directory {self.path} ({e.strerror}: {e.filename}); to read it, "
                "open it with read_only=True (as a Consumer without group.id does by itself, and the CLI's "
                "topics list/describe, consume without --group, groups list/describe/lag, dump, verify and du)",
                path=self.path, errno=e.errno) from e
        try:
            self.notifier = DirNotifier(os.path.join(self.path, NOTIFY_FILE))
        except OSError as e:
            os.close(self._lock_fd)
            if isinstance(e, StorageError):
                raise
            raise StorageError(f"cannot open {e.filename or NOTIFY_FILE}: {e.strerror}",
                               path=e.filename or os.path.join(self.path, NOTIFY_FILE), errno=e.errno) from e

    def _init_dir(self, create: bool):
        marker = os.path.join(self.path, MARKER)
        if os.path.exists(marker):
            try:
                with open(marker) as f:
                    doc = json.load(f)
            except (OSError, ValueError) as e:
                raise FormatVersionError(f"{marker} is unreadable ({e}); is this an embedlog directory?") from e
            if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
                raise FormatVersionError(f"{marker} does not describe an embedlog directory")
            version = doc.get("version", 0)
            if not isinstance(version, (int, float)) or isinstance(version, bool):
                raise FormatVersionError(f"{marker} has a version that is not a number: {version!r}")
            if version > FORMAT_VERSION:
                raise FormatVersionError(
                    f"{self.path} was written by a newer embedlog (format version {doc.get('version')}; "
                    f"this one reads up to {FORMAT_VERSION}): upgrade embedlog")
            if doc.get("mirror_of"):
                raise StorageError(
                    f"{self.path} is a mirror of {doc['mirror_of']}: open the primary, or make this one the "
                    "primary with `embedlog replicas promote`", path=self.path)
            return
        if not create:
            raise FileNotFoundError(f"no embedlog directory at {self.path}")
        ours = {TOPICS_DIR, MARKER, ".lock", NOTIFY_FILE}   # what a concurrent create may have made already
        if os.path.isdir(self.path) and any(n not in ours and not TEMP_RE.match(n) for n in os.listdir(self.path)):
            if os.path.exists(marker):
                # Another process finished creating it (and its topics) between our two
                # looks: it is a log directory after all.
                return self._init_dir(create)
            raise FormatVersionError(
                f"{self.path} exists, is not empty and has no {MARKER}: refusing to use it as a log directory")
        try:
            _io.makedirs(os.path.join(self.path, TOPICS_DIR), exist_ok=True)
            write_atomic(marker, json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode() + b"\n")
            fsync_dir(os.path.dirname(self.path))
        except OSError as e:
            raise StorageError(f"cannot create log directory {self.path}: {e.strerror}",
                               path=self.path, errno=e.errno) from e

    def __repr__(self):
        return f"<embedlog.Log {self.path}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self):
        if self._closed:
            raise LogClosedError(f"log {self.path} is closed")

    # ------------------------------------------------------------ dir lock
    def _dir_lock(self):
        log = self

        class _Held:
            def __enter__(self):
                if log.read_only:
                    raise ReadOnlyLogError(f"the log {log.path} was opened read-only: creating, deleting or "
                                           "changing topics and mirrors needs a writable open", path=log.path)
                if not hp.lock(log._lock_fd, 0, 1, True, log.lock_timeout):
                    raise LockTimeoutError(f"timed out waiting for the directory lock {log.path}/.lock",
                                           path=os.path.join(log.path, ".lock"))

            def __exit__(self, *exc):
                hp.unlock(log._lock_fd, 0, 1)

        return _Held()

    def _meta_path(self, name: str) -> str:
        return os.path.join(self.path, TOPICS_DIR, name + ".json")

    def _read_meta(self, name: str) -> dict | None:
        path = self._meta_path(name)
        try:
            with open(path, "rb") as f:
                meta = unseal_json(f.read())        # checks its CRC-32C (FORMAT.md §9)
            partitions = meta["partitions"]
            if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
                raise ValueError(f"partitions is {partitions!r}")
            if not isinstance(meta.get("config") or {}, dict):
                raise ValueError(f"config is {meta.get('config')!r}")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as e:
            raise StorageError(f"topic metadata {path} is damaged: {e}", path=path) from e
        try:
            _config.topic_config(meta.get("config"))
        except ConfigError as e:
            raise ConfigError(f"topic metadata {path}: {e}") from None
        return meta

    def _existing_meta(self, name: str) -> dict:
        meta = self._read_meta(name)
        if meta is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r} in {self.path}")
        return meta

    # ------------------------------------------------------------ topics
    def create_topic(self, name: str, partitions: int = 1, config: dict | None = None, *,
                     replication_factor: int = 1) -> Topic:
        """Create a topic; TopicExistsError if the name is taken. Config uses Kafka's topic
        config names; unknown names and bad values raise ConfigError before any file exists."""
        self._check_open()
        validate_topic_name(name)
        if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(f"partitions must be an integer from 1 to {MAX_PARTITIONS} (Kafka's "
                                         f"int32), not {partitions!r}")
        values = _config.topic_config(config)
        overrides = _config.set_configs(values, config)
        with self._mutex, self._dir_lock():
            if self._read_meta(name) is not None:
                raise TopicExistsError(f"topic {name!r} already exists in {self.path}")
            replicas = _replication.choose_replicas(self.path, replication_factor)
            if values["min.insync.replicas"] > replication_factor:
                warnings.warn(f"topic {name!r}: min.insync.replicas={values['min.insync.replicas']} is more "
                              f"than its replication factor {replication_factor}: acks=all will always fail "
                              f"with NOT_ENOUGH_REPLICAS (acks=0/1 still write)", stacklevel=2)
            try:
                remove_temp_files(os.path.join(self.path, TOPICS_DIR))
                for p in range(partitions):
                    pdir = os.path.join(self.path, f"{name}-{p}")
                    if os.path.exists(pdir):    # debris of a create that crashed
                        _io.rmtree(pdir)
                    Partition(pdir, name, p, values, lock_timeout=self.lock_timeout).close()
                fsync_dir(self.path)
                meta = {"name": name, "partitions": partitions, "config": overrides,
                        "topic_id": os.urandom(16).hex()}
                if replicas:
                    meta["replicas"] = replicas
                write_atomic(self._meta_path(name), seal_json(json.dumps(meta, indent=1).encode()))
            except OSError as e:
                raise StorageError(f"creating topic {name!r} failed: {e.strerror or e}",
                                   path=getattr(e, "path", None) or e.filename, errno=e.errno) from e
            self.notifier.bump_metadata()    # group members subscribed to the name rebalance
        return self.topic(name)

    def topic(self, name: str) -> Topic:
        self._check_open()
        t = self._topics.get(name)
        if t is not None:
            t._sync()
            if not t._deleted:
                return t
        validate_topic_name(name)
        with self._mutex:
            t = self._topics.get(name)
            if t is not None and t._deleted:
                # Deleted by another process: its handles stay with their holders (released
                # with the log, without a checkpoint); a lookup gets the topic as it is now.
                self._retired.append(self._topics.pop(name))
                t = None
            if t is None:
                version = self.notifier.metadata_version()     # before the read: see Topic._reload
                meta = self._read_meta(name)
                if meta is None:
                    raise UnknownTopicOrPartitionError(f"unknown topic {name!r} in {self.path}")
                t = self._topics[name] = Topic(self, name, meta, version)
        return t

    def partition(self, topic: str, partition: int) -> Partition:
        return self.topic(topic).partition(partition)

    def topics(self) -> list[str]:
        self._check_open()
        try:
            names = os.listdir(os.path.join(self.path, TOPICS_DIR))
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not TEMP_RE.match(n))

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self.topics()

    def add_partitions(self, name: str, total: int, *, validate_only: bool = False) -> Topic:
        """Grow a topic to `total` partitions (never shrink: Kafka cannot either; a count
        that is not larger raises InvalidPartitionsError). Keys map to different partitions
        from then on: murmur2(key) % total changes, and a UserWarning says so. Every process
        with the topic open routes with the new count from its next use (producers, Topic.append)
        and subscribed consumer groups rebalance to include the new partitions."""
        self._check_open()
        validate_topic_name(name)
        with self._mutex, self._dir_lock():
            meta = self._existing_meta(name)
            current = meta["partitions"]
            if not isinstance(total, int) or isinstance(total, bool) or not current < total <= MAX_PARTITIONS:
                raise InvalidPartitionsError(
                    f"topic {name!r} has {current} partitions; the new count must be larger "
                    f"(partitions can be added, never removed), not {total!r}")
            if validate_only:
                return self.topic(name)
            warnings.warn(f"topic {name!r} grows from {current} to {total} partitions: keyed records "
                          "map to different partitions from now on (murmur2(key) % partitions)",
                          stacklevel=2)
            values = _config.topic_config(meta.get("config"))
            with typed_os_errors(f"adding partitions to topic {name!r}"):
                for p in range(current, total):
                    pdir = os.path.join(self.path, f"{name}-{p}")
                    if os.path.exists(pdir):
                        _io.rmtree(pdir)
                    Partition(pdir, name, p, values, lock_timeout=self.lock_timeout).close()
                fsync_dir(self.path)
                meta["partitions"] = total
                write_atomic(self._meta_path(name), seal_json(json.dumps(meta, indent=1).encode()))
            self._published(name, meta, values)
        return self.topic(name)

    def alter_topic_config(self, name: str, changes: dict, *, incremental: bool = True,
                           validate_only: bool = False) -> dict:
        """Change a topic's config: `incremental` merges `changes` (a None value restores
        the default), otherwise `changes` replaces all overrides. Takes effect at once in
        this process, and in every other process with the topic open at its next append
        or config lookup (no reopen); returns the new full config."""
        self._check_open()
        validate_topic_name(name)
        with self._mutex, self._dir_lock():
            meta = self._existing_meta(name)
            overrides = dict(meta.get("config") or {}) if incremental else {}
            for key, value in (changes or {}).items():
                if value is None:
                    if key not in _config.TOPIC_CONFIG:
                        raise _config._unknown(key, _config.TOPIC_CONFIG, "topic")
                    overrides.pop(key, None)
                else:
                    overrides[key] = value
            values = _config.topic_config(overrides)
            if validate_only:
                return values
            factor = 1 + len(meta.get("replicas") or [])
            if values["min.insync.replicas"] > factor:
                warnings.warn(f"topic {name!r}: min.insync.replicas={values['min.insync.replicas']} is more "
                              f"than its replication factor {factor}: acks=all will always fail "
                              f"with NOT_ENOUGH_REPLICAS (acks=0/1 still write)", stacklevel=2)
            meta["config"] = _config.set_configs(values, overrides)
            with typed_os_errors(f"changing the config of topic {name!r}"):
                write_atomic(self._meta_path(name), seal_json(json.dumps(meta, indent=1).encode()))
            self._published(name, meta, values)
        return values

    def _published(self, name: str, meta: dict, config: dict):
        """After a topic's JSON was replaced (directory lock held): bump the metadata
        version for the other processes, and apply the change to this process's Topic
        now. Under the lock `meta` is the latest, so the Topic is current at the new version."""
        version = self.notifier.bump_metadata()
        t = self._topics.get(name)
        if t is not None and t.topic_id == meta.get("topic_id"):
            with t._lock:
                t._apply(meta["partitions"], dict(config))
                t._set = dict(meta.get("config") or {})
                t._version = version

    def consumer_lag(self, group: str) -> list[dict]:
        """[{group, topic, partition, committed, log_end_offset, lag}] for a group."""
        from ._offsets import consumer_lag
        return consumer_lag(self, group)

    def delete_topic(self, name: str) -> None:
        """Remove a topic and its data (this process's open handles are closed)."""
        self._check_open()
        validate_topic_name(name)
        with self._mutex, self._dir_lock():
            meta = self._existing_meta(name)
            t = self._topics.pop(name, None)
            if t is not None:
                t.close()
            with typed_os_errors(f"deleting topic {name!r}"):
                try:
                    _io.unlink(self._meta_path(name))      # the commit point
                finally:
                    if not os.path.exists(self._meta_path(name)):
                        self.notifier.bump_metadata()     # group members drop its partitions
                fsync_dir(os.path.join(self.path, TOPICS_DIR))
            for p in range(meta["partitions"]):
                _io.rmtree(os.path.join(self.path, f"{name}-{p}"), ignore_errors=True)

    def _drop_retired(self):
        """Release the handles of topics deleted by other processes without a flush or a
        checkpoint: their folders are gone, or belong to a topic created again since."""
        for t in self._retired:
            for part in t._partitions.values():
                part._abandon()
        self._retired.clear()

    # ------------------------------------------------------------ maintenance
    def maintain(self, now: int | None = None, topics: Iterable[str] | None = None) -> dict:
        """Apply retention and compaction to every partition now (`topics` to limit it),
        as the timer of a writing process does every retention_check_interval_ms.
        `now` (epoch ms) replaces the clock. Returns {topic: {partition: what was done}}
        for the partitions where something happened."""
        self._check_open()
        if self.read_only:
            raise ReadOnlyLogError(f"the log {self.path} was opened read-only: retention and compaction "
                                   "need a writable open", path=self.path)
        return maintain_log(self, now, topics)

    def _start_maintenance(self):
        with self._mutex:
            if self._maintainer is None and not self._closed:
                self._maintainer = Maintainer(self, self.retention_check_interval_ms) \
                    if self.retention_check_interval_ms else False

    def _stop_maintenance(self):
        m, self._maintainer = self._maintainer, False
        if m:
            m.stop()
        r, self._replicator = self._replicator, False
        if r:
            r.stop()

    # ------------------------------------------------------------ mirrors (FORMAT.md §15)
    def _start_replicator(self):
        with self._mutex:
            if self._replicator is None and not self._closed:
                self._replicator = _replication.Replicator(self)

    def _replica_roots(self) -> dict:
        return {r["id"]: (None if r.get("removed") else r["path"]) for r in _replication.read_replicas(self.path)}

    def replicas(self) -> list[dict]:
        """The mirror directories: [{"id", "path", "removed"}]."""
        self._check_open()
        return [dict(r, removed=bool(r.get("removed"))) for r in _replication.read_replicas(self.path)]

    def add_replica(self, path: str | os.PathLike[str]) -> dict:
        """Add a mirror directory (created if needed; an existing one must be empty or a
        mirror of this log). Adding a removed mirror back resumes it where it stopped.
        Topics created from now on may use it (replication.factor)."""
        self._check_open()
        with self._mutex, self._dir_lock():
            entry = _replication.add_replica(self, path)
            self.notifier.bump_metadata()
        return entry

    def remove_replica(self, path: str | os.PathLike[str]) -> dict:
        """Detach a mirror: its partitions leave the in-sync set at once (acks=all may then
        fail with NOT_ENOUGH_REPLICAS); its files stay where they are."""
        self._check_open()
        with self._mutex, self._dir_lock():
            entry = _replication.remove_replica(self, path)
            self.notifier.bump_metadata()
        return entry

    def replica_status(self, topics: Iterable[str] | None = None) -> list[dict]:
        """Every replica of every mirrored partition: log end offset, lag, in-sync."""
        self._check_open()
        out = []
        for name in (self.topics() if topics is None else topics):
            t = self.topic(name)
            if not t.replicas:
                continue
            for p, part in enumerate(t.partitions):
                for row in _replication.status(part):
                    out.append(dict(row, topic=name, partition=p))
        return out

    def _abandon(self):
        """Drop every handle without flush or clean checkpoint (crash simulation in tests)."""
        self._stop_maintenance()
        self._closed = True
        for t in self._topics.values():
            for part in t._partitions.values():
                part._abandon()
        self._topics.clear()
        self._drop_retired()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self.notifier.close()

    def close(self) -> None:
        if self._closed:
            return
        self._stop_maintenance()
        self._closed = True
        errors = []
        for t in self._topics.values():
            t._sync()
            if t._deleted:               # by another process: nothing to flush, and no
                self._retired.append(t)  # checkpoint into a folder that is gone or not its own
                continue
            try:
                with typed_os_errors(f"closing topic {t.name!r}"):
                    t.close()
            except Exception as e:  # close every partition even if one fails
                errors.append(e)
        self._topics.clear()
        self._drop_retired()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self.notifier.close()
        if errors:
            raise errors[0]


def open_log(path: str | os.PathLike[str], *, create: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
             retention_check_interval_ms: int = DEFAULT_INTERVAL_MS, read_only: bool = False) -> Log:
    """Open (creating if needed) the log directory at `path`; the options are Log()'s."""
    return Log(path, create=create, lock_timeout=lock_timeout,
               retention_check_interval_ms=retention_check_interval_ms, read_only=read_only)
