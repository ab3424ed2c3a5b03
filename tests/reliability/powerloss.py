"""Simulated power loss (ALICE's idea, reliability.md §1.2 and §3.2 technique 2).

A `Recorder`, installed through the I/O table (embedlog/storage/_io.py), lets every call through
and logs it: creates, writes (with their bytes), truncates, fsyncs of files and folders,
renames, unlinks, plus marks the workload adds ("batch 7 acknowledged, durable"). The
directory as it was when recording started counts as durable.

`crash_states(trace, k, rng)` replays the first k operations into a model of the file
system that keeps, for each file, its durable bytes (as of its last fsync/fdatasync) and
the writes and truncates since; for each folder, its durable names (as of its last
fsync) and the creates, renames and unlinks since. A crash state is then drawn as a
power loss could leave it:

* each write since the file's last fsync is kept, dropped, torn (a prefix kept, cut
  anywhere or at 512 bytes), kept on a random subset of its 4 KiB pages, or kept as
  zeros (the size grew, the data did not reach the disk); each truncate kept or dropped;
* each folder operation since the folder's last fsync is kept or reverted, one by one
  or as an ordered prefix (what a journaling file system does); a rename is atomic;
* `partition.state` (a cache mapped in memory, never fsync'd) is invalidated, as the
  new boot id after a real power loss does (FORMAT.md §6).

`materialize(state, path)` writes a state into a directory; the suites then open it with
embedlog (recovery runs) and check it against what was acknowledged before point k.
"""
from __future__ import annotations

import functools
import hashlib
import os
import random
import stat

from embedlog.storage import _io
from ._workers import fan_out

PAGE = 4096
SECTOR = 512
# Files written through memory maps, never through the table: their bytes on disk are
# whatever the kernel wrote back, and they are caches that a reboot invalidates.
MAPPED = ("partition.state", ".notify", "generation")


class Recorder:
    """A hook for _io.install: performs each call and appends it to `trace`. Paths are
    kept relative to `root`; calls outside it are performed but not recorded."""

    def __init__(self, root, inner=None):
        self.root = os.path.abspath(os.fspath(root))
        self.snapshot = None
        self.trace: list[tuple] = []
        self.inner = inner        # another hook (e.g. iofault.FailAt) between the recorder and the system

    def start(self):
        """Take the durable starting point and begin recording (install the hook now)."""
        self.snapshot = take_snapshot(self.root)
        self.trace = []
        _io.install(self)

    def mark(self, obj):
        self.trace.append(("mark", obj))

    def _rel(self, path):
        p = os.path.abspath(os.fspath(path))
        if p == self.root:
            return ""
        if not p.startswith(self.root + os.sep):
            return None
        return os.path.relpath(p, self.root)

    def __call__(self, op, real, *args, **kwargs):
        t = self.trace
        if self.inner is not None:
            real = functools.partial(self.inner, op, real)
        if op == "open":
            path, flags = args[0], args[1]
            rel = self._rel(path)
            existed = os.path.lexists(path)
            fd = real(*args, **kwargs)
            if rel is not None:
                ino = os.fstat(fd).st_ino
                if not existed:
                    t.append(("create", rel, ino, False))
                elif flags & os.O_TRUNC:
                    t.append(("trunc", ino, 0))
            return fd
        if op in ("write", "pwrite", "pwrite_all", "pwrite2"):
            fd = args[0]
            if op == "pwrite2":
                data, pos = bytes(args[1]) + bytes(args[2]), args[3]
            elif op == "write":
                data, pos = bytes(args[1]), os.lseek(fd, 0, os.SEEK_CUR)
            else:
                data, pos = bytes(args[1]), args[2]
            ino = os.fstat(fd).st_ino
            result = real(*args, **kwargs)
            n = result if op in ("write", "pwrite") else len(data)
            if self._fd_inside(fd):
                t.append(("write", ino, pos, data[:n]))
            return result
        if op == "ftruncate":
            fd, length = args[0], args[1]
            result = real(*args, **kwargs)
            if self._fd_inside(fd):
                t.append(("trunc", os.fstat(fd).st_ino, length))
            return result
        if op in ("fsync", "fdatasync", "fsync_dir"):
            if op == "fsync_dir":
                inside, ino = self._rel(args[0]) is not None, os.stat(args[0]).st_ino
            else:
                inside, ino = self._fd_inside(args[0]), os.fstat(args[0]).st_ino
            try:
                result = real(*args, **kwargs)
            except OSError:
                # fsyncgate: the kernel may have marked the dirty pages clean without
                # writing them; they never reach the disk, though reads still see them.
                if inside:
                    t.append(("fsync_failed", ino))
                raise
            if inside:
                t.append(("fsync", ino))
            return result
        if op == "mkdir":
            result = real(*args, **kwargs)
            rel = self._rel(args[0])
            if rel is not None:
                t.append(("create", rel, os.stat(args[0]).st_ino, True))
            return result
        if op == "replace":
            result = real(*args, **kwargs)
            src, dst = self._rel(args[0]), self._rel(args[1])
            if src is not None and dst is not None:
                t.append(("rename", src, dst))
            return result
        if op in ("unlink", "rmdir"):
            result = real(*args, **kwargs)
            rel = self._rel(args[0])
            if rel is not None:
                t.append(("unlink", rel))
            return result
        return real(*args, **kwargs)

    def _fd_inside(self, fd) -> bool:
        try:
            return self._rel(os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")) is not None
        except OSError:
            return False


def take_snapshot(root) -> dict:
    """{relative path: bytes | None (a folder)}, with the inode numbers: the durable start."""
    files, inos = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        files[rel] = None
        inos[rel] = os.lstat(dirpath).st_ino
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            r = os.path.join(rel, name) if rel else name
            with open(p, "rb") as f:
                files[r] = f.read()
            inos[r] = st.st_ino
    return {"files": files, "inos": inos}


# ------------------------------------------------------------------ the model

class _Node:
    __slots__ = ("id", "is_dir", "durable", "current", "pending", "d_entries", "entries", "lost")

    def __init__(self, id_, is_dir, data=b""):
        self.id, self.is_dir = id_, is_dir
        self.lost = False                  # a failed fsync dropped changes the running system still sees
        self.pending = []                  # file: ("w", pos, data) | ("t", length); dir: see below
        if is_dir:
            self.d_entries, self.entries = {}, {}
        else:
            self.durable, self.current = bytes(data), bytearray(data)


def _apply_file_op(buf: bytearray, op, data=None):
    if op[0] == "w":
        pos = op[1]
        data = op[2] if data is None else data
        if len(buf) < pos:
            buf.extend(bytes(pos - len(buf)))
        buf[pos:pos + len(data)] = data
    else:
        length = op[1]
        if len(buf) > length:
            del buf[length:]
        else:
            buf.extend(bytes(length - len(buf)))


def _merge_dirty_pages(durable: bytes, current: bytearray, pending) -> bytes:
    """What an fsync writes after an earlier failed one: the pages the pending writes
    dirtied, from the page cache; every other page stays as the disk has it (the pages a
    failed fsync marked clean never get there). The size is the running system's."""
    out = bytearray(durable[:len(current)])
    out.extend(bytes(len(current) - len(out)))
    for op in pending:
        if op[0] == "w":
            lo, hi = op[1] // PAGE * PAGE, min(len(current), op[1] + len(op[2]))
            for page in range(lo, hi, PAGE):
                out[page:page + PAGE] = current[page:page + PAGE]
    return bytes(out)


def _apply_dir_op(entries: dict, op):
    kind = op[0]
    if kind == "add":
        entries[op[1]] = op[2]
    elif kind == "del":
        if entries.get(op[1]) == op[2]:
            del entries[op[1]]
    else:                                   # ("ren", src, dst, id): atomic
        if entries.get(op[1]) == op[3]:
            del entries[op[1]]
        entries[op[2]] = op[3]


class Model:
    """The files and folders after a prefix of a trace, durable and pending parts apart."""

    def __init__(self, snapshot):
        self.nodes: dict[int, _Node] = {}
        self.by_ino: dict[int, int] = {}
        self.next_id = 0
        files, inos = snapshot["files"], snapshot["inos"]
        for rel in sorted(files, key=lambda r: (r.count(os.sep), r)):
            data = files[rel]
            node = self._new(data is None, data or b"")
            self.by_ino[inos[rel]] = node.id
            if rel == "":
                self.root = node.id
                continue
            parent = self.nodes[self._resolve(os.path.dirname(rel))]
            parent.d_entries[os.path.basename(rel)] = node.id
            parent.entries[os.path.basename(rel)] = node.id

    def _new(self, is_dir, data=b""):
        node = _Node(self.next_id, is_dir, data)
        self.nodes[node.id] = node
        self.next_id += 1
        return node

    def _resolve(self, rel) -> int | None:
        nid = self.root
        for part in [p for p in rel.split(os.sep) if p]:
            node = self.nodes[nid]
            if not node.is_dir or part not in node.entries:
                return None
            nid = node.entries[part]
        return nid

    def _parent(self, rel):
        pid = self._resolve(os.path.dirname(rel))
        return None if pid is None else self.nodes[pid]

    def apply(self, op):
        kind = op[0]
        if kind == "mark":
            return
        if kind == "create":
            _kind, rel, ino, is_dir = op
            parent = self._parent(rel)
            node = self._new(is_dir)
            self.by_ino[ino] = node.id
            if parent is not None:
                d = ("add", os.path.basename(rel), node.id)
                parent.pending.append(d)
                _apply_dir_op(parent.entries, d)
        elif kind in ("write", "trunc"):
            node = self.nodes.get(self.by_ino.get(op[1]))
            if node is None or node.is_dir:
                return
            f = ("w", op[2], op[3]) if kind == "write" else ("t", op[2])
            node.pending.append(f)
            _apply_file_op(node.current, f)
        elif kind == "fsync":
            node = self.nodes.get(self.by_ino.get(op[1]))
            if node is None:
                return
            if not node.lost:
                if node.is_dir:
                    node.d_entries = dict(node.entries)
                else:
                    node.durable = bytes(node.current)
            elif node.is_dir:                   # only what changed since the failure reaches the disk
                for d in node.pending:
                    _apply_dir_op(node.d_entries, d)
            else:                               # only the pages dirtied since the failure are written
                node.durable = _merge_dirty_pages(node.durable, node.current, node.pending)
            node.pending = []
        elif kind == "fsync_failed":
            node = self.nodes.get(self.by_ino.get(op[1]))
            if node is None:
                return
            node.lost = True                    # pending changes are clean now, and not on disk
            node.pending = []
        elif kind == "rename":
            _kind, src, dst = op
            sp, dp = self._parent(src), self._parent(dst)
            if sp is None or dp is None:
                return
            nid = sp.entries.get(os.path.basename(src))
            if nid is None:
                return
            if sp is dp:
                d = ("ren", os.path.basename(src), os.path.basename(dst), nid)
                sp.pending.append(d)
                _apply_dir_op(sp.entries, d)
            else:                               # not atomic across folders: two operations
                for parent, d in ((dp, ("add", os.path.basename(dst), nid)),
                                  (sp, ("del", os.path.basename(src), nid))):
                    parent.pending.append(d)
                    _apply_dir_op(parent.entries, d)
        elif kind == "unlink":
            parent = self._parent(op[1])
            name = os.path.basename(op[1])
            if parent is None or name not in parent.entries:
                return
            d = ("del", name, parent.entries[name])
            parent.pending.append(d)
            _apply_dir_op(parent.entries, d)
        else:
            raise ValueError(f"unknown trace operation {op!r}")

    def pending_count(self) -> int:
        return sum(len(n.pending) for n in self.nodes.values())

    # -- crash states
    def crash_state(self, rng: random.Random) -> dict:
        """{relative path: bytes | None} as a power loss at this point could leave it."""
        style = rng.random()
        contents = {}
        for node in self.nodes.values():
            if not node.is_dir:
                contents[node.id] = self._file_after_crash(node, rng, style)
        out = {}

        def walk(nid, rel):
            node = self.nodes[nid]
            out[rel] = None
            entries = self._dir_after_crash(node, rng, style)
            for name, cid in sorted(entries.items()):
                child = self.nodes[cid]
                crel = os.path.join(rel, name) if rel else name
                if child.is_dir:
                    walk(cid, crel)
                else:
                    out[crel] = contents[cid]
        walk(self.root, "")
        return out

    @staticmethod
    def _file_after_crash(node, rng, style) -> bytes:
        if not node.pending:
            return node.durable
        if style < 0.1:
            return node.durable                    # nothing unsynced reached the disk
        if style < 0.2:
            return bytes(node.current)             # everything did
        buf = bytearray(node.durable)
        for op in node.pending:
            if op[0] == "t":
                if rng.random() < 0.6:
                    _apply_file_op(buf, op)
                continue
            r = rng.random()
            pos, data = op[1], op[2]
            if r < 0.35:
                _apply_file_op(buf, op)                            # kept
            elif r < 0.55:
                continue                                            # dropped
            elif r < 0.75:                                          # torn: a prefix
                cut = rng.randrange(len(data) + 1) if rng.random() < 0.5 else \
                    min(len(data), max(0, (pos + rng.randrange(len(data) + 1)) // SECTOR * SECTOR - pos))
                _apply_file_op(buf, ("w", pos, data[:cut]))
            elif r < 0.9:                                           # some of its pages
                first = pos // PAGE * PAGE
                for page in range(first, pos + len(data), PAGE):
                    if rng.random() < 0.5:
                        lo, hi = max(page, pos), min(page + PAGE, pos + len(data))
                        _apply_file_op(buf, ("w", lo, data[lo - pos:hi - pos]))
            else:                                                   # size grew, data did not
                end = pos + len(data)
                if len(buf) < end:
                    buf.extend(bytes(end - len(buf)))
        return bytes(buf)

    @staticmethod
    def _dir_after_crash(node, rng, style) -> dict:
        if not node.pending:
            return node.d_entries
        if style < 0.1:
            return node.d_entries
        if style < 0.2:
            return node.entries
        entries = dict(node.d_entries)
        if rng.random() < 0.4:                                      # an ordered prefix
            for op in node.pending[:rng.randrange(len(node.pending) + 1)]:
                _apply_dir_op(entries, op)
        else:                                                       # each on its own
            for op in node.pending:
                if rng.random() < 0.5:
                    _apply_dir_op(entries, op)
        return entries


def state_key(state: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    for rel in sorted(state):
        h.update(rel.encode() + b"\0")
        data = state[rel]
        h.update(b"D" if data is None else b"F%d:" % len(data) + data)
    return h.hexdigest()


def materialize(state: dict, path):
    """Write a crash state into `path` (which must not exist), as the disk after reboot."""
    path = os.fspath(path)
    for rel in sorted(state, key=lambda r: (r.count(os.sep), r)):
        data = state[rel]
        p = os.path.join(path, rel) if rel else path
        if data is None:
            os.mkdir(p)
            continue
        name = os.path.basename(rel)
        if name == "partition.state" and len(data) >= 8:
            data = bytes(8) + data[8:]           # rebooted: the boot id no longer matches
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def replay(snapshot, trace):
    """Yield (k, model, marks) after each prefix of the trace: k operations applied, the
    marks met so far. The same model object is updated in place."""
    model = Model(snapshot)
    marks = []
    yield 0, model, marks
    for k, op in enumerate(trace, 1):
        if op[0] == "mark":
            marks.append(op[1])
        else:
            model.apply(op)
        yield k, model, marks


def record(root, workload):
    """Run workload(recorder) on `root`; it calls recorder.start() when recording should
    begin (after opening the log, say). Returns the recorder."""
    rec = Recorder(root)
    try:
        workload(rec)
    finally:
        _io.uninstall()
    if rec.snapshot is None:
        raise RuntimeError("the workload never called recorder.start()")
    return rec


# ------------------------------------------------------------------ the loop

class PowerAppendScenario:
    """Appends where only some acknowledgements are durable: every `sync_every`-th batch
    with sync=True (acks=all), a flush() after every `flush_every`-th, the rest acks=1;
    rolls when segment_bytes is small. Notes name the batches known durable."""

    def __new__(cls, seed=0, *, segment_bytes=1024, batches=14, sync_every=3, flush_every=5):
        from .crashpoints import NOW, AppendScenario

        class _S(AppendScenario):
            def run(self, d, note, arm):
                log = open_log_(d)
                p = log.partition("t", 0)
                arm()
                for i, (keys, values) in enumerate(self.batches):
                    sync = i % sync_every == sync_every - 1
                    p.append_records(values, keys, [NOW + i] * len(values), sync=sync)
                    if not sync and i % flush_every == flush_every - 1:
                        p.flush()
                        sync = True
                    if sync:
                        note(i)
                log.close()
                note(len(self.batches) - 1)

        s = _S(seed, segment_bytes=segment_bytes, batches=batches)
        s.name = f"power-append-seg{segment_bytes}"
        return s


def open_log_(d):
    from .crashpoints import open_log
    return open_log(d)


class Stats:
    def __init__(self):
        self.states = 0
        self.points = 0
        self.trace_ops = 0
        self.anomalies: list[dict] = []

    def report(self, limit=5) -> str:
        import json
        lines = [f"{self.states} crash states at {self.points} points, {len(self.anomalies)} anomalies"]
        lines += [json.dumps(a, default=str)[:2000] for a in self.anomalies[:limit]]
        return "\n".join(lines)


def _check_states(scenario, snapshot, trace, ks, per_point, seed, ref, root, keep_failures):
    import shutil
    import traceback
    stats = Stats()
    seen = set()
    ks = set(ks)
    for k, model, marks in replay(snapshot, trace):
        if k not in ks:
            continue
        stats.points += 1
        acks = [m[1] for m in marks if m[0] == "ack"]
        tries = per_point if model.pending_count() else 1
        for j in range(tries):
            rng = random.Random(f"{seed}/{k}/{j}")
            state = model.crash_state(rng)
            key = (state_key(state), len(acks))
            if key in seen:
                continue
            seen.add(key)
            d = os.path.join(root, "s")
            materialize(state, d)
            stats.states += 1
            try:
                scenario.check(d, acks, False, ref)
            except Exception as e:
                stats.anomalies.append({"scenario": scenario.name, "seed": seed, "k": k, "j": j,
                                        "op": repr(trace[k - 1])[:200] if k else None, "acks": len(acks),
                                        "anomaly": f"{type(e).__name__}: {e}",
                                        "trace": traceback.format_exc()[-1500:]})
                if keep_failures:
                    dst = os.path.join(keep_failures, f"{scenario.name}-{seed}-{k}-{j}")
                    if not os.path.exists(dst):
                        materialize(state, dst)
            finally:
                shutil.rmtree(d, ignore_errors=True)
    return stats


def run_power_loss(scenario, *, seed=0, per_point=10, workers=2, root=None, keep_failures=None) -> Stats:
    """Record one run of the scenario, then check `per_point` random crash states (the
    distinct ones) at every point of its trace, spread over `workers` processes."""
    import shutil
    import tempfile

    from .crashpoints import work_root
    base = tempfile.mkdtemp(prefix="el-power-", dir=root or work_root())
    try:
        tpl = os.path.join(base, "template")
        scenario.build(tpl)
        refdir = os.path.join(base, "reference")
        shutil.copytree(tpl, refdir, symlinks=True)
        ref_notes = []
        scenario.run(refdir, ref_notes.append, lambda: None)
        ref = scenario.reference(refdir, ref_notes)
        work = os.path.join(base, "work")
        shutil.copytree(tpl, work, symlinks=True)
        rec = record(work, lambda r: scenario.run(work, lambda obj: r.mark(("ack", obj)), r.start))
        # Paths in a state are relative to the recorded folder: templates hold the log itself.
        trace = rec.trace
        ks = list(range(len(trace) + 1))
        stats = Stats()
        stats.trace_ops = sum(1 for op in trace if op[0] != "mark")
        def run(cases, sub):
            s = _check_states(scenario, rec.snapshot, trace, cases, per_point, seed, ref, sub, keep_failures)
            return {"states": s.states, "points": s.points, "anomalies": s.anomalies}
        for res in fan_out(base, workers, ks, run, scenario.name):
            stats.states += res.get("states", 0)
            stats.points += res.get("points", 0)
            stats.anomalies += res["anomalies"]
        return stats
    finally:
        shutil.rmtree(base, ignore_errors=True)


class FsyncgateScenario:
    """fsyncgate under power loss: an fdatasync fails (EIO) after a large batch; the
    kernel marked its pages clean without writing them. The handle refuses appends;
    the log is opened again in the same boot (the page cache still shows the batch) and
    more batches are appended with sync=True and acknowledged. Every power-loss state
    must keep those acknowledgements."""

    def __new__(cls, seed=0, *, fail="fdatasync", big=20000):
        import errno

        from embedlog import StorageError

        from .crashpoints import NOW, AppendScenario
        from .iofault import FailAt

        class _S(AppendScenario):
            def run(self, d, note, arm):
                log = open_log_(d)
                p = log.partition("t", 0)
                arm()
                rec = _io.installed()
                order = []

                def append(i, keys, values, sync):
                    p_ = p if i <= 6 else p2
                    p_.append_records(values, keys, [NOW + i] * len(values), sync=sync)
                    order.append(i)
                    if sync:
                        note(i)
                b = self.batches
                for i in range(4):
                    append(i, *b[i], True)
                append(4, *b[4], False)
                failing = FailAt(1, errno.EIO, only=(fail,))
                if isinstance(rec, Recorder):
                    rec.inner = failing
                else:
                    _io.install(failing)
                try:
                    append(5, *b[5], True)            # the failed fdatasync: not acknowledged
                    raise AssertionError("the fdatasync did not fail")
                except StorageError:
                    pass
                if isinstance(rec, Recorder):
                    rec.inner = None
                else:
                    _io.uninstall()
                try:
                    append(6, *b[6], False)           # refused: the handle is FAILED
                    raise AssertionError("a FAILED partition took an append")
                except StorageError:
                    pass
                log.close()
                log2 = open_log_(d)                   # same boot: the page cache still has batch 5
                p2 = log2.partition("t", 0)
                for i in range(7, len(b)):
                    append(i, *b[i], True)
                log2.close()

            def expected(self):
                got = super().expected()
                pre = len(self.pre)
                return got[:pre + 6] + got[pre + 7:]     # batch 6 was never written

            def check(self, d, notes, completed, ref):
                from .crashpoints import check_prefix
                acked = [n if n < 6 else n - 1 for n in notes]
                check_prefix(d, "t", self.expected(), len(self.pre) + (max(acked) + 1 if acked else 0))

        s = _S(seed, segment_bytes=1 << 20, batches=10)
        kv = s.batches[5]
        s.batches[5] = (kv[0], [kv[1][0][:7] + bytes(big)] + kv[1][1:])   # spans several pages
        s.name = f"fsyncgate-{fail}"
        return s
