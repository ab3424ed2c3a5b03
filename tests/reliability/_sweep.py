"""Machinery of the corruption sweep (test_corruption.py): a small real log, the byte
regions to damage, and a worker that applies one damage at a time to a fresh copy,
reopens the log and reads everything back.

The worker runs as a separate process (`python _sweep.py TEMPLATE MODEL CASES`) and
prints one JSON line per case, preceded by a "start" line, so the parent sees an
interpreter crash (segfault, abort) or a hang as a failure of the case that caused it.

Each case's outcome, per partition read:

    intact      every record as written, at its offset; random reads and time lookups
                answer as the model does (an index may have been rebuilt on the way)
    truncated   a prefix of the records, each as written, and the log ends right after
                it (recovery cut a damaged tail)
    error       a typed embedlog error (EmbedlogError), after a correct prefix
    WRONG:...   anything else: a record that differs from what was written at its offset,
                a skipped or invented offset, records hidden below the high watermark,
                an answer of a time lookup the model disagrees with, or an exception that
                is not an EmbedlogError (IndexError, struct.error, ...)
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
import time
import traceback

T0 = 1_700_000_000_000
TOPIC_CONFIGS = {
    "t": {"segment.bytes": 1000, "index.interval.bytes": 100, "retention.ms": -1},
    "c": {"cleanup.policy": "compact", "segment.bytes": 700, "index.interval.bytes": 100,
          "retention.ms": -1, "min.cleanable.dirty.ratio": 0.01},
}
OFFSETS = "__consumer_offsets"
SEGMENT_NAME = re.compile(r"^\d{20}\.log$")


# ------------------------------------------------------------------ the fixture

def _t_batches():
    """(values, keys, timestamps, headers, compression) of topic t's batches."""
    off = 0
    for b in range(23):
        n = 1 + b % 4
        idx = range(off, off + n)
        values = [b"t%d-" % i + bytes([65 + i % 26]) * (20 + 7 * (i % 5)) for i in idx]
        keys = [None if i % 7 == 0 else b"k%d" % (i % 5) for i in idx]
        timestamps = [T0 + i * 1000 - (3000 if i % 4 == 3 else 0) for i in idx]   # not monotonic
        headers = None
        if b % 3 != 1:
            headers = [[("h", b"%d" % i), ("n", None)] if i % 3 == 0 else [] for i in idx]
        yield values, keys, timestamps, headers, (3 if b % 2 else 0)
        off += n


def _c_batches():
    off = 0
    for b in range(14):
        n = 1 + b % 3
        idx = range(off, off + n)
        keys = [b"ck%d" % (i % 4) for i in idx]
        values = [None if i == 9 else b"c%d-" % i + b"v" * (10 + i % 9) for i in idx]
        timestamps = [T0 + i * 1000 for i in idx]
        yield values, keys, timestamps, None, (3 if b % 3 == 2 else 0)
        off += n


def build_fixture(path) -> dict:
    """Write the fixture log at `path` and return its model (what must be read back)."""
    import embedlog
    from embedlog.storage._offsets import store_for
    written = {}
    with embedlog.open(path, retention_check_interval_ms=0) as log:
        for name, batches in (("t", _t_batches()), ("c", _c_batches())):
            part = log.create_topic(name, partitions=1, config=TOPIC_CONFIGS[name]).partition(0)
            for values, keys, timestamps, headers, codec in batches:
                res = part.append_records(values, keys, timestamps, headers, compression=codec)
                for i, off in enumerate(range(res.base_offset, res.last_offset + 1)):
                    hs = () if headers is None else tuple(tuple(h) for h in headers[i])
                    written[(name, off)] = (off, timestamps[i], keys[i], values[i], hs)
        stats = log.partition("c", 0).compact(now=T0 + 10**6)
        assert stats and stats["records_out"] < stats["records_in"], stats
        store = store_for(log)
        commits = [("g1", [("t", 0, 3, "m1")]), ("g2", [("t", 0, 10, ""), ("c", 0, 4, "x")]),
                   ("g1", [("t", 0, 7, "m2")]), ("g3", [("t", 0, 1, "")]), ("g2", [("c", 0, 12, "y")])]
        for group, offs in commits:
            store.commit(group, offs)
    model = {"partitions": {}, "files": {}, "committed": {}}
    with embedlog.open(path, retention_check_interval_ms=0) as log:
        for name in ("t", "c", OFFSETS):
            part = log.partition(name, 0)
            start, hw = part.watermarks()
            records = [tuple(r) for r in part.read(start, max_bytes=1 << 30)]
            if name != OFFSETS:
                for r in records:          # what reads back is what was written
                    assert written[(name, r[0])] == (r[0], r[1], r[2], r[3], tuple(r[4])), r
            model["partitions"][f"{name}-0"] = {"topic": name, "start": start, "end": hw,
                                                "records": [(r[0], r[1], r[2], r[3], tuple(r[4])) for r in records],
                                                "dense": name == "t"}
        store = store_for(log)
        store.refresh()
        model["committed"] = {g: store.group_offsets(g) for g in sorted(store.groups())}
    model["files"] = inventory(path)
    return model


def inventory(path) -> dict:
    """relative path -> {"size", and for .log files "batches": [(position, size, base, last, codec)]}."""
    from embedlog.storage._records import iter_batches
    out = {}
    for root, dirs, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            rel = os.path.relpath(full, path)
            info = {"size": os.path.getsize(full)}
            if f.endswith(".log"):
                with open(full, "rb") as fh:
                    data = fh.read()
                info["batches"] = [(pos, h.size, h.base_offset, h.last_offset, h.compression)
                                   for pos, h in iter_batches(data)]
            out[rel] = info
    return out


# ------------------------------------------------------------------ regions to damage

def regions(model) -> dict:
    """name -> (relative path, start, end): the byte ranges the sweep damages."""
    files = model["files"]

    def segs(pdir):
        return sorted(p for p in files if p.startswith(pdir + "/") and p.endswith(".log"))

    t_segs = segs("t-0")
    closed, active = t_segs[0], t_segs[-1]
    assert len(t_segs) >= 3, t_segs
    out = {}
    # one lz4 batch in the middle of a closed segment, one uncompressed batch with headers
    # in the middle of the active segment, and the active segment's last batch (the tail)
    cb = [b for b in files[closed]["batches"] if b[4] == 3]
    b = cb[len(cb) // 2]
    out["closed_batch_lz4"] = (closed, b[0], b[0] + b[1])
    cb = [b for b in files[closed]["batches"] if b[4] == 0]
    b = cb[len(cb) // 2]
    out["closed_batch_none"] = (closed, b[0], b[0] + b[1])
    ab = files[active]["batches"]
    assert len(ab) >= 3, ab
    b = ab[len(ab) // 2]
    out["active_batch_mid"] = (active, b[0], b[0] + b[1])
    b = ab[-1]
    out["active_batch_last"] = (active, b[0], b[0] + b[1])
    for ext in ("index", "timeindex"):
        rel = closed[:-4] + "." + ext
        assert files[rel]["size"] >= (24 if ext == "index" else 36), (rel, files[rel])
        out[f"closed_{ext}"] = (rel, 0, files[rel]["size"])
        rel = active[:-4] + "." + ext
        if files[rel]["size"]:
            out[f"active_{ext}"] = (rel, 0, files[rel]["size"])
    for rel, name in (("t-0/partition.checkpoint", "partition_checkpoint"),
                      ("c-0/cleaner.checkpoint", "cleaner_checkpoint"),
                      ("topics/t.json", "topic_json"), ("embedlog.json", "embedlog_json")):
        out[name] = (rel, 0, files[rel]["size"])
    o_segs = segs(OFFSETS + "-0")
    ob = files[o_segs[-1]]["batches"]
    b = ob[len(ob) // 2]
    out["offsets_record"] = (o_segs[-1], b[0], b[0] + b[1])
    c_segs = [p for p in segs("c-0")[:-1] if files[p]["batches"]]
    cb = files[c_segs[0]]["batches"]
    b = cb[len(cb) // 2]
    out["compacted_batch"] = (c_segs[0], b[0], b[0] + b[1])
    return out


# What a partition folder may hold after recovery besides what was copied: nothing is
# created except these (recovery may delete damaged segments and leftovers).
GARBAGE = [
    # (name, where, how): `where` is a folder relative to the log; how: bytes | "dir" |
    # "fifo" | "symlink:<target>" | "copy:<relative path>"
    ("junk.bin", "t-0", b"\x00\x01garbage\xff" * 40),
    ("notes.txt", "t-0", b"not a segment\n"),
    (".4242.tmp", "t-0", b'{"version": 1, "clean": true'),            # our own temp pattern
    ("00000000000000000000.log.cleaned", "t-0", b"\x00" * 100),        # cleaner leftover
    ("00000000000000000000.log.swap", "t-0", b"\x02" * 100),
    ("00000000000000000000.log.deleted", "t-0", b"\x02" * 100),
    ("00000000000000099999.index", "t-0", b"\x00\x00\x00\x05\x00\x00\x00\x10"),   # index without its .log
    ("00000000000000099999.log", "t-0", b""),                          # empty segment past the end
    ("00000000000000099999.log", "t-0", b"\x00" * 200),                # zeros past the end
    ("00000000000000099999.log", "t-0", b"\x01"),                      # 1 byte
    ("00000000000000099999.log", "t-0", "copy:FIRST_T_SEGMENT"),        # a real segment, misnamed
    ("00000000000000099999.log", "t-0", "dir"),                        # a folder named like a segment
    ("00000000000000099999.log", "t-0", "fifo"),
    ("00000000000000099999.log", "t-0", "symlink:/dev/zero"),
    ("00000000000000099999.log", "t-0", "symlink:/nonexistent/x"),
    ("00000000000000000005.log", "t-0", b""),                          # empty segment inside the range
    ("00000000000000000005.index", "t-0", b"\x00\x00\x00\x01\x00\x00\x00\x00"),
    ("0000000000000000000x.log", "t-0", b"\x02" * 100),
    ("\udcff\udcfe.log", "t-0", b"\x02" * 100),                         # not UTF-8
    ("partition.checkpoint.old", "t-0", b"{}"),
    ("junk.json", "topics", b"\x00\xff not json"),
    ("x.json", "topics", b'{"name": "x", "partitions": 1}\n'),         # a topic without folders
    (".7.tmp", "topics", b"{"),
    ("d.json", "topics", "dir"),
    ("\udcff.json", "topics", b"{}"),
    ("junk", ".", b"garbage"),
    ("t-7", ".", "dir"),                                               # partition folder of no partition
    ("zz-0", ".", "dir"),
    ("junk.bin", OFFSETS + "-0", b"\xff" * 64),
    ("00000000000000099999.log", "c-0", b"\x00" * 61),
]


# ------------------------------------------------------------------ applying damage

def restore(template, work):
    if os.path.lexists(work):
        shutil.rmtree(work)
    shutil.copytree(template, work, symlinks=True)


def flip(path, position, bit):
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)[0]
        f.seek(position)
        f.write(bytes([b ^ (1 << bit)]))


def forge(path, position):
    """Rewrite the first record value of the uncompressed batch at `position` in place (same
    length, a different byte) and fix the CRC: a valid batch holding what was never written.
    Only for checking that the sweep notices wrong data."""
    from embedlog.storage._hotpath import crc32c
    from embedlog.storage._records import decode_varint, parse_header
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        h = parse_header(data, position)
        assert h.compression == 0
        p = position + 61
        _length, p = decode_varint(data, p)
        p += 1                                   # attributes
        _ts, p = decode_varint(data, p)
        _od, p = decode_varint(data, p)
        kl, p = decode_varint(data, p)
        p += max(kl, 0)
        vl, p = decode_varint(data, p)
        assert vl > 0
        data[p] ^= 0x01
        end = position + h.size
        data[position + 17:position + 21] = crc32c(bytes(data[position + 21:end])).to_bytes(4, "big")
        f.seek(0)
        f.write(data)


def truncate(path, length):
    os.truncate(path, length)


def reboot(work):
    """What a reboot does to the shared state: it no longer matches (FORMAT.md §6)."""
    for root, _dirs, files in os.walk(work):
        if "partition.state" in files:
            with open(os.path.join(root, "partition.state"), "r+b") as f:
                f.write(bytes(8))


def drop_garbage(work, model, spec):
    name, where, how = spec
    folder = os.path.join(work, where)
    target = os.path.join(folder, name)
    if isinstance(how, bytes):
        with open(target, "wb") as f:
            f.write(how)
    elif how == "dir":
        os.mkdir(target)
        with open(os.path.join(target, "inside"), "wb") as f:
            f.write(b"x")
    elif how == "fifo":
        os.mkfifo(target)
    elif how.startswith("symlink:"):
        os.symlink(how[len("symlink:"):], target)
    elif how.startswith("copy:"):
        src = how[len("copy:"):]
        if src == "FIRST_T_SEGMENT":
            src = sorted(p for p in model["files"] if p.startswith("t-0/") and p.endswith(".log"))[0]
        shutil.copyfile(os.path.join(work, src), target)
    return target


# ------------------------------------------------------------------ reading everything back

class Wrong(Exception):
    """Wrong data returned without an error: the one outcome the sweep never accepts."""


def _describe(e) -> dict:
    return {"type": type(e).__name__, "message": str(e)[:300],
            "path": getattr(e, "path", None), "position": getattr(e, "position", None)}


def _check_partition(part, pm, deep: bool) -> tuple[str, dict]:
    """Read one partition every way a client can and compare with the model."""
    from embedlog import EmbedlogError
    expected = {r[0]: r for r in pm["records"]}
    order = [r[0] for r in pm["records"]]
    got = []
    info = {}
    try:
        start, hw = part.watermarks()
        info["watermarks"] = (start, hw)
        if hw > pm["end"]:
            info["hw_past_end"] = hw        # the judge decides (a stray segment file in a gapped topic)
        if start < pm["start"]:
            raise Wrong(f"log start {start} is below the model's {pm['start']}")
        pos = start
        while pos < hw:
            cols, nxt = part.fetch(pos, max_bytes=700)
            if nxt <= pos:
                if "hw_past_end" in info and pos >= pm["end"]:
                    break           # no batch past what was written: nothing more to read
                raise Wrong(f"fetch at {pos} made no progress below the high watermark {hw}")
            got.extend(zip(cols.offsets, cols.timestamps, cols.keys, cols.values, map(tuple, cols.headers)))
            pos = nxt
    except EmbedlogError as e:
        info["error"] = _describe(e)
    # every record returned is the one written at its offset, in order, none skipped
    for rec in got:
        rec = (rec[0], rec[1], rec[2], rec[3], tuple(rec[4]))
        want = expected.get(rec[0])
        if want is None:
            raise Wrong(f"offset {rec[0]} was never written (read {rec!r})")
        if rec != want:
            raise Wrong(f"offset {rec[0]}: read {rec!r}, written {want!r}")
    offs = [r[0] for r in got]
    if offs:
        i = order.index(offs[0])
        if offs != order[i:i + len(offs)]:
            raise Wrong(f"offsets read {offs[:10]}... are not the written sequence")
        if i and offs[0] > pm["start"]:
            info["head_lost"] = offs[0]
    if "error" in info:
        return "error", info
    start, hw = info["watermarks"]
    readable = [o for o in order if start <= o < hw]
    if offs != readable:
        raise Wrong(f"read {len(offs)} records without an error, the log holds {len(readable)} "
                    f"below its high watermark {hw}")
    if start > pm["start"]:
        info["head_lost"] = start
    if not deep:
        return ("intact" if readable == order else "truncated"), info
    # random access: offsets on their own (through the offset index)
    try:
        for off in readable[::2] + readable[-1:]:
            recs = part.read(off, max_records=1)
            if not recs:
                raise Wrong(f"read({off}) returned nothing below the high watermark")
            r = recs[0]
            r = (r[0], r[1], r[2], r[3], tuple(r[4]))
            if r != expected[off]:
                raise Wrong(f"read({off}) returned {r!r}, written {expected[off]!r}")
        # time lookups (through the time index): Kafka's ListOffsets answer
        if pm["dense"]:
            stamps = sorted({r[1] for r in pm["records"]})
            probes = [stamps[0] - 1] + [t + d for t in stamps[::3] for d in (0, 1)] + [stamps[-1], stamps[-1] + 10]
            for ts in probes:
                want = next(((expected[o][0], expected[o][1]) for o in readable if expected[o][1] >= ts), None)
                ans = part.offset_for_time(ts)
                if ans is not None:
                    ans = tuple(ans)
                if ans != want:
                    raise Wrong(f"offset_for_time({ts}) = {ans}, the records say {want}")
    except EmbedlogError as e:
        info["error"] = _describe(e)
        info["error"]["during"] = "random access"
        return "error", info
    return ("intact" if readable == order else "truncated"), info


def evaluate(work, model, deep=()) -> dict:
    """Open the damaged copy and read everything (random reads and time lookups too for
    the partition folders in `deep`). Returns {"outcome", "partitions", ...}."""
    import embedlog
    from embedlog import EmbedlogError
    from embedlog.storage._offsets import store_for
    result = {"partitions": {}}
    try:
        log = embedlog.open(work, create=False, lock_timeout=5, retention_check_interval_ms=0)
    except EmbedlogError as e:
        return {"outcome": "error", "error": _describe(e), "at": "open"}
    try:
        worst = "intact"
        rank = {"intact": 0, "truncated": 1, "error": 2}
        for pdir, pm in model["partitions"].items():
            try:
                part = log.partition(pm["topic"], 0)
                outcome, info = _check_partition(part, pm, pdir in deep)
            except EmbedlogError as e:
                outcome, info = "error", {"error": _describe(e), "at": "partition"}
            result["partitions"][pdir] = {"outcome": outcome, **info}
            if rank[outcome] > rank[worst]:
                worst = outcome
        try:
            store = store_for(log)
            store.refresh()
            committed = {g: store.group_offsets(g) for g in sorted(store.groups())}
            if committed != model["committed"]:
                po = result["partitions"][OFFSETS + "-0"]
                if po["outcome"] == "intact":
                    raise Wrong(f"committed offsets {committed} differ from {model['committed']} "
                                "although every offsets record read back intact")
                result["committed_differs"] = True
        except EmbedlogError as e:
            result["offsets_error"] = _describe(e)
            if rank[worst] < 2:
                worst = "error"
        try:
            log.topics()
        except EmbedlogError as e:
            result["topics_error"] = _describe(e)
        result["outcome"] = worst
    finally:
        try:
            log.close()
        except EmbedlogError as e:
            result["close_error"] = _describe(e)
    for pdir, pr in result["partitions"].items():
        if pr["outcome"] == "truncated":
            hidden = hidden_records(os.path.join(work, pdir), pr["watermarks"][1], model["partitions"][pdir])
            if hidden:
                raise Wrong(f"{pdir}: the log ends at {pr['watermarks'][1]} but whole, CRC-valid batches "
                            f"holding offsets {hidden[:5]} as written are still on disk (hidden, not truncated)")
    return result


def hidden_records(pdir, end, pm) -> list[int]:
    """Offsets >= `end` whose records, as written, are still in a whole CRC-valid batch of
    the partition's .log files: a truncation that only moved the log end is no truncation."""
    from embedlog import EmbedlogError
    from embedlog.storage._records import decode_records, iter_batches
    expected = {r[0]: r for r in pm["records"]}
    out = []
    for name in sorted(os.listdir(pdir)):
        if not (len(name) == 24 and name.endswith(".log") and name[:20].isdigit()):
            continue
        with open(os.path.join(pdir, name), "rb") as f:
            data = f.read()
        try:
            for pos, h in iter_batches(data):
                if h.last_offset < end:
                    continue
                for r in decode_records(data, pos, h):
                    if r.offset >= end and expected.get(r.offset) == (r[0], r[1], r[2], r[3], tuple(r[4])):
                        out.append(r.offset)
        except EmbedlogError:
            pass
    return sorted(out)


def run_case(template, work, model, case) -> dict:
    restore(template, work)
    kind = case["kind"]
    if kind == "flip":
        flip(os.path.join(work, case["file"]), case["pos"], case["bit"])
    elif kind == "truncate":
        truncate(os.path.join(work, case["file"]), case["len"])
    elif kind == "garbage":
        case["target"] = drop_garbage(work, model, GARBAGE[case["spec"]])
    elif kind == "forge":
        forge(os.path.join(work, case["file"]), case["pos"])
    elif kind == "segv":                       # the harness must see a dead interpreter
        import signal
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        time.sleep(3600)
    if case.get("reboot"):
        reboot(work)
    try:
        res = evaluate(work, model, deep=case.get("deep", ()))
    except Wrong as e:
        return {"outcome": "WRONG", "why": str(e)}
    except Exception as e:   # not an EmbedlogError: a failure of the case
        return {"outcome": "BAD_EXCEPTION", "error": _describe(e),
                "traceback": traceback.format_exc()[-2000:]}
    if kind == "garbage":
        res["garbage_left"] = os.path.lexists(case["target"])
    return res


def worker(template, model_path, cases_path):
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    with open(cases_path) as f:
        cases = json.load(f)
    work = os.path.join(os.path.dirname(cases_path), f"work-{os.getpid()}")
    out = sys.stdout
    for i, case in enumerate(cases):
        out.write(json.dumps({"start": i}) + "\n")
        out.flush()
        t = time.perf_counter()
        res = run_case(template, work, model, case)
        res["i"] = i
        res["ms"] = round((time.perf_counter() - t) * 1000, 2)
        out.write(json.dumps(res, default=repr) + "\n")
        out.flush()
    if os.path.lexists(work):
        shutil.rmtree(work)


if __name__ == "__main__":
    worker(*sys.argv[1:4])
