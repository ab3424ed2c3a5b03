"""Consumer-group membership across processes, with the kernel as failure detector
(DESIGN.md; FORMAT.md §13). Eager rebalancing with Kafka's range and roundrobin assignors.

    <dir>/groups/<group-dir>/group.json      generation, protocol, members and assignment
    <dir>/groups/<group-dir>/generation      8 bytes, memory-mapped: the current generation
    <dir>/groups/<group-dir>/.lock           byte 0: exclusive for a rebalance, shared for a commit
    <dir>/groups/<group-dir>/members/<id>    one file per live member, locked (OFD) by its owner

A member's lock is released by the kernel when its process dies, so any member that
can lock another's file knows that member is dead, removes it and rebalances. Every
change of membership writes group.json with generation + 1. A commit takes the group
lock shared and is accepted only from a member of the current generation for a
partition assigned to it, so a partition is never committed by two members at once.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import threading
import time
import uuid

from ..storage import _hotpath as hp
from ..storage import _io
from ..storage._errors import EmbedlogError, LockTimeoutError, UnknownTopicOrPartitionError, typed_os_errors
from ..storage._state import fsync_dir, remove_temp_files, write_atomic

GROUPS_DIR = "groups"
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class CommitFailedError(EmbedlogError):
    """Raised when a commit comes from a member that is not in the group's current
    generation or does not own the partition (Kafka's ILLEGAL_GENERATION)."""

    code = 22


class UnknownMemberError(CommitFailedError):
    code = 25


def group_dir_name(group: str) -> str:
    if _SAFE.match(group) and group not in (".", ".."):
        return group
    return "g-" + hashlib.sha256(group.encode()).hexdigest()[:32]


# ------------------------------------------------------------------ assignors

def assign_range(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, list]:
    """Kafka's RangeAssignor: per topic, members sorted by id share the partitions in
    contiguous ranges; the first (n % m) members get one extra."""
    out = {m: [] for m in members}
    for topic in sorted(partitions):
        subs = sorted(m for m, topics in members.items() if topic in topics)
        if not subs:
            continue
        n, m = partitions[topic], len(subs)
        per, extra = divmod(n, m)
        start = 0
        for i, member in enumerate(subs):
            count = per + (1 if i < extra else 0)
            out[member].extend((topic, p) for p in range(start, start + count))
            start += count
    return out


def assign_roundrobin(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, list]:
    """Kafka's RoundRobinAssignor: all partitions sorted, dealt to members sorted by id,
    skipping members not subscribed to the partition's topic."""
    out = {m: [] for m in members}
    order = sorted(members)
    if not order:
        return out
    i = 0
    for topic in sorted(partitions):
        for p in range(partitions[topic]):
            for _ in range(len(order)):
                member = order[i % len(order)]
                i += 1
                if topic in members[member]:
                    out[member].append((topic, p))
                    break
    return out


def assign_sticky(members: dict[str, list[str]], partitions: dict[str, int],
                  previous: dict[str, list]) -> dict[str, list]:
    """Balanced, and keeping every partition with its previous owner where the balance
    allows (Kafka's StickyAssignor goal): members with more previous partitions get the
    larger quotas; extra partitions are released; free ones go to the least loaded."""
    out = {m: [] for m in members}
    order = sorted(members)
    if not order:
        return out
    all_tps = [(t, p) for t in sorted(partitions) for p in range(partitions[t])]
    eligible = {tp: [m for m in order if tp[0] in members[m]] for tp in all_tps}
    keep = {m: sorted(tuple(tp) for tp in previous.get(m, []) if tuple(tp) in eligible and m in eligible[tuple(tp)])
            for m in order}
    base, extra = divmod(len(all_tps), len(order))
    ranked = sorted(order, key=lambda m: (-len(keep[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}
    owned = set()
    for m in order:
        for tp in keep[m][:quota[m]]:
            if tp not in owned:
                out[m].append(tp)
                owned.add(tp)
    for tp in all_tps:
        if tp in owned or not eligible[tp]:
            continue
        under = [m for m in eligible[tp] if len(out[m]) < quota[m]]
        pick = min(under or eligible[tp], key=lambda m: (len(out[m]), m))
        out[pick].append(tp)
        owned.add(tp)
    return {m: sorted(tps) for m, tps in out.items()}


ASSIGNORS = {"range": assign_range, "roundrobin": assign_roundrobin}


def resolve_subscription(patterns: list[str], topics: list[str]) -> list[str]:
    """Names as given; '^regex' patterns matched against existing topics (internal
    '__' topics excluded from patterns, as Kafka does)."""
    out = set()
    for pat in patterns:
        if pat.startswith("^"):
            rx = re.compile(pat)
            out.update(t for t in topics if not t.startswith("__") and rx.match(t))
        else:
            out.add(pat)
    return sorted(out)


# ------------------------------------------------------------------ membership

class GroupMember:
    """This process's membership of one group (one per subscribed Consumer)."""

    client_host = None     # the wire server sets a remote member's address ("/127.0.0.1")

    def __init__(self, log, group: str, client_id: str, strategies: list[str], lock_timeout: float,
                 session_timeout: float = 45.0, heartbeat_interval: float = 3.0,
                 max_poll_interval: float = 300.0):
        self.log = log
        self.group = group
        self.dir = os.path.join(log.path, GROUPS_DIR, group_dir_name(group))
        safe_client = re.sub(r"[^A-Za-z0-9._-]", "_", client_id)[:100] or "client"
        self.member_id = f"{safe_client}-{uuid.uuid4()}"
        self.client_id = client_id
        self.strategies = strategies
        self.lock_timeout = lock_timeout
        self.generation = -1
        self.protocol = None
        self.assignment: list[tuple[str, int]] = []
        self.subscription: list[str] = []
        self._member_fd = None
        self.session_timeout = session_timeout
        self.heartbeat_interval = heartbeat_interval
        self.max_poll_interval = max_poll_interval
        self.last_poll = time.monotonic()        # the consumer updates it from poll()
        self.poll_exceeded = False               # set when max.poll.interval.ms ran out
        self._metadata_version = None            # .notify's metadata version at the last check
        self._owed = frozenset()                 # pending keys of partitions it must revoke
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._heartbeat = None
        self._lock_fd = self._gen_fd = None
        try:
            with typed_os_errors(f"opening the files of group {group!r}"):
                _io.makedirs(os.path.join(self.dir, "members"), exist_ok=True)
                self._lock_fd = _io.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                         0o644)
                gen_path = os.path.join(self.dir, "generation")
                self._gen_fd = _io.open(gen_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                if os.fstat(self._gen_fd).st_size < 4096:
                    _io.ftruncate(self._gen_fd, 4096)
                self._gen_mm = mmap.mmap(self._gen_fd, 4096)
        except BaseException:
            for fd in (self._lock_fd, self._gen_fd):
                if fd is not None:
                    os.close(fd)
            raise
        self._gen_ptr = hp.from_buffer(self._gen_mm)

    def _typed(self, doing: str):
        """An OSError of a group operation as a StorageError naming the file (#18)."""
        return typed_os_errors(f"{doing} group {self.group!r}")

    # -- locks
    def _group_lock(self, exclusive: bool):
        if not hp.lock(self._lock_fd, 0, 1, exclusive, self.lock_timeout):
            raise LockTimeoutError(f"timed out waiting for the lock of group {self.group!r} ({self.dir})",
                                   path=os.path.join(self.dir, ".lock"))

    def _group_unlock(self):
        hp.unlock(self._lock_fd, 0, 1)

    def current_generation(self) -> int:
        return hp.lib.el_atomic_load_u64(self._gen_ptr)

    # -- state
    def read_state(self) -> dict:
        try:
            with open(os.path.join(self.dir, "group.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"group": self.group, "generation": 0, "protocol": None, "members": {}}

    def _write_state(self, state: dict):
        write_atomic(os.path.join(self.dir, "group.json"), json.dumps(state, indent=1).encode() + b"\n")
        hp.lib.el_atomic_store_u64(self._gen_ptr, state["generation"])

    def _live_members(self) -> dict[str, dict]:
        """Metadata of members whose owner holds its lock; dead members' files go."""
        out = {}
        mdir = os.path.join(self.dir, "members")
        for name in sorted(os.listdir(mdir)):
            path = os.path.join(mdir, name)
            if name == self.member_id:
                if self._member_fd is not None:
                    out[name] = self._my_meta()
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if hp.lock(fd, 0, 1, True, 0):      # we got it: the owner is gone
                    _io.unlink(path)
                    continue
                with open(path) as f:
                    text = f.read()
                try:
                    out[name] = json.loads(text)
                except ValueError:
                    continue                       # still being written by a joining member
            finally:
                os.close(fd)
        return out

    def _my_meta(self) -> dict:
        return {"client_id": self.client_id, "pid": os.getpid(), "subscription": self.subscription,
                "strategies": self.strategies, "host": self.client_host}

    def _rebalance_locked(self, release: frozenset = frozenset()) -> dict:
        """Recompute the assignment of the live members (group lock held exclusively).

        A partition moving away from a live member goes to nobody until that member has
        revoked it (its on_revoke returned) and said so (`release`, from request_rebalance):
        then the next generation hands it over. So no partition is owned by two live
        members at once, with eager protocols (which revoke everything) as with
        cooperative-sticky (KIP-429, only what moves)."""
        members = self._live_members()
        state = self.read_state()
        topics = self.log.topics()
        protocol = None
        if members:
            common = None
            for meta in members.values():
                s = meta.get("strategies") or ["range"]
                common = [x for x in (common if common is not None else s) if x in s]
            order = members[sorted(members)[0]].get("strategies") or ["range"]
            protocol = next((x for x in order if x in (common or [])), None)
            if protocol is None:
                protocol = "range"
        subs = {m: resolve_subscription(meta.get("subscription", []), topics) for m, meta in members.items()}
        counts = self._partition_counts(subs.values(), topics)
        pending = {}
        if not members:
            assignment = {}
        else:
            previous = {m: info.get("assignment", []) for m, info in state.get("members", {}).items()
                        if m in members}
            if protocol == "cooperative-sticky":
                assignment = assign_sticky(subs, counts, previous)
            else:
                assignment = ASSIGNORS[protocol](subs, counts)
            # Who still holds a partition: its owner in the last generation, or the owner of
            # a revocation still pending (not yet released, owner alive).
            was = {tuple(tp): m for m, tps in previous.items() for tp in tps}
            for key, owner in (state.get("pending_revocation") or {}).items():
                if owner in members and not (owner == self.member_id and key in release):
                    topic, _, part = key.rpartition(":")
                    was.setdefault((topic, int(part)), owner)
            for m, tps in assignment.items():
                for tp in list(tps):
                    if was.get(tuple(tp)) not in (None, m):
                        tps.remove(tp)
                        pending[f"{tp[0]}:{tp[1]}"] = was[tuple(tp)]
        new = {"group": self.group, "generation": state.get("generation", 0) + 1, "protocol": protocol,
               "pending_revocation": pending,
               "leader": sorted(members)[0] if members else None,
               "topics": {t: counts[t] for t in counts},
               "members": {m: {"client_id": meta.get("client_id"), "pid": meta.get("pid"),
                               "host": meta.get("host"), "subscription": meta.get("subscription", []),
                               "assignment": [list(tp) for tp in assignment.get(m, [])]}
                           for m, meta in members.items()}}
        self._write_state(new)
        return new

    def _partition_counts(self, subscriptions, topics: list[str]) -> dict[str, int]:
        """{topic: partitions} of the existing topics among the resolved subscriptions:
        what an assignment is computed from, and what group.json records as "topics"."""
        counts = {}
        for t in sorted({t for ts in subscriptions for t in ts}):
            if t in topics:
                try:
                    counts[t] = self.log.topic(t).num_partitions
                except UnknownTopicOrPartitionError:
                    pass                 # deleted between the listing and the read
        return counts

    def _topics_changed(self, state: dict) -> bool:
        """True when the group's topics differ from those its assignment was computed for:
        partitions added, a subscribed topic (or one matching a pattern) created or deleted.
        Kafka's consumer learns this from a metadata refresh (metadata.max.age.ms); here
        the metadata version in .notify says when to look."""
        topics = self.log.topics()
        subs = [resolve_subscription(m.get("subscription", []), topics) for m in state["members"].values()]
        return self._partition_counts(subs, topics) != state.get("topics", {})

    # -- lifecycle
    def join(self, subscription: list[str], release: frozenset = frozenset()):
        """Join (or rejoin with a new subscription). `release`: pending revocations of this
        member that it has revoked already (a wire client in JoinGroup has)."""
        with self._mutex, self._typed("joining"):
            self._join(subscription, release)
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                               name=f"embedlog-heartbeat-{self.group}")
            self._heartbeat.start()

    def _heartbeat_loop(self):
        """Touch the member file every heartbeat.interval.ms (others evict a member whose
        file is older than session.timeout.ms); leave the group when the application has
        not polled for max.poll.interval.ms, as Kafka's consumer does."""
        while not self._stop.wait(self.heartbeat_interval):
            with self._mutex:
                if self._member_fd is None:
                    continue
                if time.monotonic() - self.last_poll > self.max_poll_interval:
                    self.poll_exceeded = True
                    self._leave()
                    continue
                try:
                    os.utime(self._member_fd)
                except OSError:
                    pass

    def _join(self, subscription: list[str], release: frozenset = frozenset()):
        self.subscription = list(subscription)
        self.last_poll = time.monotonic()
        self._group_lock(True)
        try:
            remove_temp_files(self.dir)
            if self._member_fd is None:
                path = os.path.join(self.dir, "members", self.member_id)
                fd = _io.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                if not hp.lock(fd, 0, 1, True, 0):
                    raise LockTimeoutError(f"cannot lock member file {path}", path=path)
                self._member_fd = fd
                fsync_dir(os.path.dirname(path))
            _io.ftruncate(self._member_fd, 0)
            _io.pwrite(self._member_fd, json.dumps(self._my_meta()).encode(), 0)
            self._rebalance_locked(release)
        finally:
            self._group_unlock()

    def poll_assignment(self):
        """None if nothing changed, else (generation, assignment) of the new generation."""
        with self._mutex, self._typed("reading the assignment of"):
            return self._poll_assignment()

    def _poll_assignment(self):
        if self._member_fd is None:
            return None                           # left (max.poll.interval.ms): the consumer rejoins
        gen = self.current_generation()
        if gen == self.generation:
            return None
        self._group_lock(False)
        try:
            state = self.read_state()
        finally:
            self._group_unlock()
        me = state["members"].get(self.member_id)
        if me is None:   # removed (taken for dead after session.timeout.ms): join again
            if self._member_fd is not None:
                os.close(self._member_fd)
                self._member_fd = None
            self._join(self.subscription)
            return self._poll_assignment()
        self.generation = state["generation"]
        self.assignment = [tuple(tp) for tp in me["assignment"]]
        self.protocol = state.get("protocol")
        self._owed = frozenset(k for k, owner in (state.get("pending_revocation") or {}).items()
                               if owner == self.member_id)
        return self.generation, self.assignment

    def metadata_moved(self) -> bool:
        """A topic changed since the last check_members (one shared-memory load)."""
        return self.log.notifier.metadata_version() != self._metadata_version

    def check_members(self):
        """Rebalance if a member died (its lock is free), stopped heartbeating for
        session.timeout.ms (e.g. SIGSTOP: its lock stays held, its member file's mtime
        stops moving; it is evicted), or the group's topics changed: partitions added, a
        subscribed topic (or one matching a pattern) created or deleted."""
        with self._mutex, self._typed("checking the members of"):
            self._check_members()

    def _check_members(self):
        state = self.read_state()
        mdir = os.path.join(self.dir, "members")
        names = set(os.listdir(mdir))
        changed = names != set(state["members"])
        now = time.time()
        for name in sorted(names - {self.member_id}):
            path = os.path.join(mdir, name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                changed = True
                continue
            try:
                if hp.lock(fd, 0, 1, True, 0):
                    hp.unlock(fd, 0, 1)
                    changed = True                 # the owner died: the kernel freed its lock
                elif now - os.fstat(fd).st_mtime > self.session_timeout:
                    try:
                        _io.unlink(path)            # alive but silent: evicted, as Kafka does
                    except FileNotFoundError:
                        pass
                    changed = True
            finally:
                os.close(fd)
        metadata = False
        version = self.log.notifier.metadata_version()
        if not changed and version != self._metadata_version:
            # A topic was created, deleted, or grew somewhere: one look at the counts.
            # (The version is read before the topics, so a later change is seen next time.)
            metadata = changed = self._topics_changed(state)
        self._metadata_version = version
        if changed:
            self._group_lock(True)
            try:
                # Several members see the same metadata change: the first rebalances, the
                # others find group.json current and leave the generation alone.
                if not metadata or self._topics_changed(self.read_state()):
                    self._rebalance_locked()
            finally:
                self._group_unlock()

    def validate_commit(self, partitions):
        """Call with the group lock held shared (see commit_guard)."""
        state = self.read_state()
        me = state["members"].get(self.member_id)
        if me is None:
            raise UnknownMemberError(f"member {self.member_id} is not in group {self.group!r} any more; "
                                     "the commit was rejected")
        # A newer generation this member has not seen yet is a rebalance "being prepared"
        # for it, as Kafka's coordinator has one: its commit is accepted for what it still
        # holds there. Partitions moving away are given to nobody until it has revoked them
        # (pending_revocation), so such a commit can never overwrite a new owner's.
        owned = {tuple(tp) for tp in me["assignment"]}
        for key, owner in state.get("pending_revocation", {}).items():
            if owner == self.member_id:             # still ours until we have revoked it
                topic, _, part = key.rpartition(":")
                owned.add((topic, int(part)))
        for tp in partitions:
            if tp not in owned:
                if state["generation"] != self.generation:
                    raise CommitFailedError(
                        f"commit rejected: group {self.group!r} rebalanced (generation {state['generation']}, "
                        f"this member has {self.generation}) and {tp[0]}-{tp[1]} belongs to another member now")
                raise CommitFailedError(f"commit rejected: {tp[0]}-{tp[1]} is not assigned to this member "
                                        f"in generation {self.generation} of group {self.group!r}")

    def owes_revocation(self) -> bool:
        """Partitions this member held are waiting for it to revoke them (then
        request_rebalance hands them over)."""
        return bool(self._owed)

    def request_rebalance(self):
        """After revoking partitions that move away: hand them over (the next generation
        gives them to their new owners)."""
        with self._mutex, self._typed("rebalancing"):
            self._group_lock(True)
            try:
                owed, self._owed = self._owed, frozenset()
                self._rebalance_locked(release=owed)
            finally:
                self._group_unlock()

    def commit_guard(self):
        member = self

        class _Guard:
            def __enter__(self):
                member._group_lock(False)

            def __exit__(self, *exc):
                member._group_unlock()

        return _Guard()

    def leave(self):
        with self._mutex, self._typed("leaving"):
            self._leave()

    def _leave(self):
        if self._member_fd is None:
            return
        self._group_lock(True)
        try:
            try:
                _io.unlink(os.path.join(self.dir, "members", self.member_id))
            except FileNotFoundError:
                pass
            finally:
                # closed even when the unlink failed: the file's lock is free, so the
                # others take this member for dead and remove it
                os.close(self._member_fd)
                self._member_fd = None
            self._rebalance_locked()
        finally:
            self._group_unlock()

    def close(self):
        self._stop.set()
        try:
            self.leave()
        finally:
            self._gen_ptr = None
            self._gen_mm.close()
            os.close(self._gen_fd)
            os.close(self._lock_fd)


def describe_group(log, group: str) -> dict | None:
    path = os.path.join(log.path, GROUPS_DIR, group_dir_name(group), "group.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def delete_group(log, group: str) -> int:
    """Delete a consumer group with no live member: its committed offsets and its state, as
    Kafka's DeleteGroups does; returns how many partitions' offsets went. A group with live
    members is refused (Kafka's GROUP_NOT_EMPTY); nothing is deleted then."""
    from ..storage._offsets import OFFSETS_TOPIC, store_for
    if group not in list_groups(log) and OFFSETS_TOPIC not in log.topics():
        raise EmbedlogError(f"consumer group {group!r} does not exist in {log.path}")
    gm = GroupMember(log, group, "embedlog-admin", ["range"], log.lock_timeout) \
        if os.path.isdir(os.path.join(log.path, GROUPS_DIR, group_dir_name(group))) else None
    try:
        if gm is not None:
            gm._group_lock(True)
        try:
            if gm is not None:
                live = gm._live_members()
                if live:
                    raise EmbedlogError(f"consumer group {group!r} has {len(live)} live member(s) "
                                        f"({', '.join(sorted(live))}): stop them first (GROUP_NOT_EMPTY)")
            store = store_for(log) if OFFSETS_TOPIC in log.topics() else None
            if store is not None:
                store.refresh()
            parts = list(store.group_offsets(group)) if store is not None else []
            if gm is None and not parts:
                raise EmbedlogError(f"consumer group {group!r} does not exist in {log.path}")
            if parts:
                store.delete(group, parts)
            if gm is not None:
                try:
                    _io.unlink(os.path.join(gm.dir, "group.json"))
                except FileNotFoundError:
                    pass
            return len(parts)
        finally:
            if gm is not None:
                gm._group_unlock()
    finally:
        if gm is not None:
            gm.close()


def list_groups(log) -> list[str]:
    root = os.path.join(log.path, GROUPS_DIR)
    out = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            st = describe_group_path(os.path.join(root, name, "group.json"))
            if st is not None:
                out.append(st.get("group", name))
    return out


def describe_group_path(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None
