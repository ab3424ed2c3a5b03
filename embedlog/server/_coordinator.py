"""The group coordinator on the wire: Kafka's classic rebalance protocol (JoinGroup,
SyncGroup, Heartbeat, LeaveGroup) mapped onto embedlog's cross-process groups
(client/_groups.py, FORMAT.md §13), so a member joining over the wire and an in-process
`embedlog.Consumer` in another process are members of one group.

Each wire member is a GroupMember held by this server process (its member file locked
by the server; the server's heartbeat thread keeps it alive while the client keeps
heartbeating, and leaves for it when the client has been silent for its
session.timeout.ms). The assignment is computed by embedlog, with the assignor the
members agreed on (range, roundrobin, cooperative-sticky), as for in-process members.
Wire clients are told that the coordinator is the group leader (a member id none of
them has), so each is a follower: it sends an empty SyncGroup and receives its part.

As Kafka's coordinator does, a JoinGroup is answered only once every wire member this
server knows has rejoined the new generation (or its rebalance timeout ran out), so
two wire members never hold a partition at once under the eager protocols.

Every method here may block on group locks: the server calls them off the event loop.
"""
from __future__ import annotations

import os
import threading
import time
import uuid

from ..client._groups import CommitFailedError, GroupMember, describe_group, group_dir_name
from ..storage._errors import EmbedlogError
from . import _protocol as P
from ._schema import DecodeError, message

LEADER_ID = "embedlog-coordinator"       # the leader every wire member is told of
SUPPORTED = ("range", "roundrobin", "cooperative-sticky")
MIN_SESSION_MS, MAX_SESSION_MS = 1000, 1800000     # group.min/max.session.timeout.ms (min lowered for tests)


def decode_subscription(data) -> dict:
    """ConsumerProtocolSubscription: topics, user data, owned partitions (v1+)."""
    if data is None or len(data) < 2:
        raise DecodeError("empty consumer protocol subscription")
    m = message("ConsumerProtocolSubscription")
    version = min(int.from_bytes(bytes(data[0:2]), "big", signed=True), m.valid[1])
    if version < 0:
        raise DecodeError(f"consumer protocol subscription version {version}")
    obj, _ = m.decode(memoryview(data), version, 2, whole=False)   # newer versions add fields at the end
    return obj


def encode_assignment(assignment, version: int = 0) -> bytes:
    by_topic = {}
    for t, p in assignment:
        by_topic.setdefault(t, []).append(p)
    body = {"assigned_partitions": [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(by_topic.items())],
            "user_data": None}
    return version.to_bytes(2, "big") + message("ConsumerProtocolAssignment").to_bytes(body, version)


def encode_subscription(topics, version: int = 0) -> bytes:
    return version.to_bytes(2, "big") + message("ConsumerProtocolSubscription").to_bytes(
        {"topics": list(topics), "user_data": None}, version)


class WireMember:
    __slots__ = ("gm", "group", "member_id", "client_id", "client_host", "session_timeout_ms",
                 "rebalance_timeout_ms", "protocols", "topics", "joined_generation", "synced_generation",
                 "assignment", "metadata", "instance_id", "protocol")

    def __init__(self, gm, group, member_id, client_id, client_host):
        self.gm = gm
        self.group = group
        self.member_id = member_id
        self.client_id = client_id
        self.client_host = client_host
        self.joined_generation = -1
        self.synced_generation = -1
        self.assignment = []
        self.topics = []
        self.protocols = []
        self.metadata = b""
        self.instance_id = None
        self.protocol = None

    def alive(self) -> bool:
        return self.gm._member_fd is not None

    def touch(self):
        self.gm.last_poll = time.monotonic()


class Coordinator:
    def __init__(self, log, lock_timeout: float = 10.0):
        self.log = log
        self.lock_timeout = lock_timeout
        self.members: dict[tuple[str, str], WireMember] = {}
        self.pending: dict[str, float] = {}            # member ids handed out by MEMBER_ID_REQUIRED
        self.mutex = threading.RLock()
        self._last_check: dict[str, float] = {}
        self._closed = False

    # -------------------------------------------------------------- helpers
    def _member(self, group, member_id) -> WireMember | None:
        m = self.members.get((group, member_id))
        if m is not None and not m.alive():       # left for the client (session timed out)
            self._drop(m)
            return None
        return m

    def _drop(self, m: WireMember):
        self.members.pop((m.group, m.member_id), None)
        try:
            m.gm.close()
        except (EmbedlogError, OSError):
            pass

    def _check(self, m: WireMember):
        """Let the group notice dead or silent members and topic changes (at most once a
        second per group: it lists the member files)."""
        now = time.monotonic()
        if now - self._last_check.get(m.group, 0) >= 1.0:
            self._last_check[m.group] = now
            m.gm.check_members()

    def wire_members(self, group: str) -> list[WireMember]:
        return [m for (g, _), m in self.members.items() if g == group and m.alive()]

    # -------------------------------------------------------------- JoinGroup
    def join(self, body: dict, version: int, client_id: str, client_host: str) -> tuple[dict, WireMember | None]:
        """(response fields, member to wait for) of a JoinGroup."""
        group = body["group_id"]
        member_id = body.get("member_id") or ""
        out = {"generation_id": -1, "protocol_type": "consumer", "protocol_name": "", "leader": "",
               "member_id": member_id, "members": []}
        if not group:
            return {**out, "error_code": P.INVALID_GROUP_ID}, None
        session = body["session_timeout_ms"]
        if not MIN_SESSION_MS <= session <= MAX_SESSION_MS:
            return {**out, "error_code": P.INVALID_SESSION_TIMEOUT}, None
        if body.get("protocol_type") != "consumer":
            return {**out, "error_code": P.INCONSISTENT_GROUP_PROTOCOL}, None
        protocols = [(p["name"], p["metadata"]) for p in body.get("protocols", [])]
        names = [n for n, _ in protocols if n in SUPPORTED]
        if not names:
            return {**out, "error_code": P.INCONSISTENT_GROUP_PROTOCOL}, None
        try:
            sub = decode_subscription(dict(protocols)[names[0]])
        except DecodeError:
            return {**out, "error_code": P.INCONSISTENT_GROUP_PROTOCOL}, None
        topics = sorted(set(sub.get("topics") or []))
        with self.mutex:
            m = None
            if member_id:
                m = self._member(group, member_id)
                if m is None and member_id not in self.pending:
                    return {**out, "error_code": P.UNKNOWN_MEMBER_ID}, None
            elif version >= 4:               # KIP-394: the client must come back with this id
                new_id = f"{client_id or 'client'}-{uuid.uuid4()}"
                self.pending[new_id] = time.monotonic()
                return {**out, "member_id": new_id, "error_code": P.MEMBER_ID_REQUIRED}, None
            if m is None:
                member_id = member_id or f"{client_id or 'client'}-{uuid.uuid4()}"
                self.pending.pop(member_id, None)
                gm = GroupMember(self.log, group, client_id or "client", names, self.lock_timeout,
                                 session_timeout=session / 1000.0,
                                 heartbeat_interval=max(0.1, min(3.0, session / 3000.0)),
                                 max_poll_interval=session / 1000.0)
                gm.member_id = member_id
                gm.client_host = client_host
                m = WireMember(gm, group, member_id, client_id, client_host)
                self.members[(group, member_id)] = m
                changed = True
            else:
                changed = topics != m.topics or names != m.gm.strategies
            m.touch()
            m.session_timeout_ms = session
            m.rebalance_timeout_ms = body.get("rebalance_timeout_ms", session) or session
            m.protocols = protocols
            m.metadata = dict(protocols)[names[0]]
            m.topics = topics
            m.instance_id = body.get("group_instance_id")
            m.gm.strategies = names
            gm = m.gm
            state = gm.read_state()
            # A client in JoinGroup has revoked what it was told to give up (eager: all
            # of it; KIP-429: what moves away): hand that over in the next generation.
            owed = frozenset(k for k, owner in state.get("pending_revocation", {}).items() if owner == member_id)
            if changed or not m.alive() or gm._member_fd is None:
                gm.join(topics, release=owed)
            elif owed:
                gm._owed = owed
                gm.request_rebalance()
            else:
                self._check(m)
            gm.poll_assignment()
            m.joined_generation = gm.generation
            m.protocol = gm.protocol
        return {**out, "error_code": P.NONE, "generation_id": gm.generation, "protocol_name": gm.protocol or names[0],
                "leader": LEADER_ID, "member_id": member_id}, m

    def join_complete(self, m: WireMember) -> bool:
        """True when every wire member of m's group joined m's generation (Kafka answers
        JoinGroup then): the caller waits, and gives up after the rebalance timeout."""
        with self.mutex:
            gen = m.gm.current_generation()
            if gen != m.joined_generation:
                return True          # moved on again: answer, the client rejoins at its next heartbeat
            return all(o.joined_generation == gen or not o.alive() for o in self.wire_members(m.group))

    # -------------------------------------------------------------- SyncGroup
    def sync(self, body: dict) -> dict:
        group, member_id = body["group_id"], body["member_id"]
        out = {"protocol_type": "consumer", "protocol_name": None, "assignment": b""}
        with self.mutex:
            m = self._member(group, member_id)
            if m is None:
                return {**out, "error_code": P.UNKNOWN_MEMBER_ID}
            m.touch()
            gm = m.gm
            gm.poll_assignment()
            if body["generation_id"] != gm.generation:
                code = P.REBALANCE_IN_PROGRESS if body["generation_id"] == m.joined_generation else P.ILLEGAL_GENERATION
                return {**out, "error_code": code}
            m.synced_generation = gm.generation
            m.assignment = list(gm.assignment)
            version = 1 if gm.protocol == "cooperative-sticky" else 0
            return {**out, "error_code": P.NONE, "protocol_name": gm.protocol,
                    "assignment": encode_assignment(m.assignment, version)}

    # -------------------------------------------------------------- Heartbeat
    def heartbeat(self, body: dict) -> int:
        with self.mutex:
            m = self._member(body["group_id"], body["member_id"])
            if m is None:
                return P.UNKNOWN_MEMBER_ID
            m.touch()
            self._check(m)
            gen = m.gm.current_generation()
            if body["generation_id"] != gen:
                return P.REBALANCE_IN_PROGRESS if body["generation_id"] == m.synced_generation else P.ILLEGAL_GENERATION
            return P.NONE

    # -------------------------------------------------------------- LeaveGroup
    def leave(self, group: str, member_id: str) -> int:
        with self.mutex:
            m = self.members.get((group, member_id))
            if m is None:
                return P.UNKNOWN_MEMBER_ID
            self._drop(m)
            return P.NONE

    # -------------------------------------------------------------- commits
    def check_commit(self, group: str, member_id: str, generation: int, partitions) -> int:
        """Kafka's rules for an OffsetCommit: a standalone commit (generation -1, no member)
        is accepted while the group has no live member; a member's commit must carry the
        generation it synced and name partitions assigned to it then (commits while a
        rebalance is only being prepared are accepted, as Kafka's coordinator does)."""
        if generation < 0 and not member_id:
            state = describe_group(self.log, group)
            if state and state.get("members") and self._any_live(group):
                return P.ILLEGAL_GENERATION
            return P.NONE
        with self.mutex:
            m = self._member(group, member_id)
            if m is None:
                return P.UNKNOWN_MEMBER_ID
            m.touch()
            if generation != m.synced_generation:
                return P.ILLEGAL_GENERATION
            owned = set(m.assignment)
            state = m.gm.read_state()
            for key, owner in state.get("pending_revocation", {}).items():
                if owner == member_id:
                    t, _, p = key.rpartition(":")
                    owned.add((t, int(p)))
            if any(tp not in owned for tp in partitions):
                return P.ILLEGAL_GENERATION
            return P.NONE

    def _any_live(self, group: str) -> bool:
        path = os.path.join(self.log.path, "groups", group_dir_name(group), "members")
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return False
        if not names:
            return False
        # A member file whose lock is free belongs to a dead process: a probe member cleans up.
        with self.mutex:
            wire = self.wire_members(group)
        if wire:
            return True
        probe = GroupMember(self.log, group, "probe", ["range"], self.lock_timeout)
        try:
            return bool(probe._live_members())
        finally:
            probe._stop.set()
            probe._gen_mm.close()
            os.close(probe._gen_fd)
            os.close(probe._lock_fd)

    def sweep(self):
        """Close members whose session ran out (the GroupMember left for them) and forget
        member ids handed out by MEMBER_ID_REQUIRED that never came back (after 5 min)."""
        with self.mutex:
            for m in [m for m in self.members.values() if not m.alive()]:
                self._drop(m)
            old = time.monotonic() - 300
            for mid in [k for k, t in self.pending.items() if t < old]:
                del self.pending[mid]

    def describe(self, group: str) -> dict | None:
        state = describe_group(self.log, group)
        return state

    def close(self):
        with self.mutex:
            self._closed = True
            for m in list(self.members.values()):
                self._drop(m)


__all__ = ["Coordinator", "CommitFailedError", "decode_subscription", "encode_assignment", "encode_subscription"]
