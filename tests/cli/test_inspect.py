"""embedlog dump and embedlog verify: read the files only; damage is named by file and position."""
import hashlib
import os
import shutil
import struct

import pytest
from kafka.record.default_records import DefaultRecordBatch

import embedlog
from clirun import assert_error, call, parse_table, run
from embedlog.storage._records import build_batch

SEG0 = "00000000000000000000"


def kafka_python_batches(path):
    """The batches of a .log decoded by kafka-python (an independent reader)."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos < len(data):
        size = struct.unpack_from(">i", data, pos + 8)[0] + 12
        out.append((pos, size, DefaultRecordBatch(bytearray(data[pos:pos + size]))))
        pos += size
    return out


@pytest.fixture
def three_batches(logdir):
    """t-0: plain (3 keyed records, a header), lz4 (2 records), idempotent (pid 7, epoch 1, seq 0..1)."""
    with embedlog.open(logdir) as log:
        p = log.create_topic("t", 1).partition(0)
        p.append_records([b"v0", b"v1", None], keys=[b"k0", None, b"k2"], timestamps=[1000, 1001, 999],
                         headers=[[("h", b"x")], None, None])
        p.append_records([b"lz" * 40, b"4"], compression=3, timestamps=[2000, 2001])
        p.append(build_batch([b"i0", b"i1"], producer_id=7, producer_epoch=1, base_sequence=0, timestamp=3000))
    return logdir / "t-0" / f"{SEG0}.log"


def test_dump_batches_match_an_independent_decoder(three_batches):
    doc = run("dump", three_batches, "--json").json
    expected = kafka_python_batches(three_batches)
    assert len(doc["batches"]) == len(expected) == 3 and doc["problems"] == []
    for got, (pos, size, kb) in zip(doc["batches"], expected):
        assert got["position"] == pos and got["size"] == size
        assert (got["base_offset"], got["last_offset"], got["count"]) == (kb.base_offset, kb.last_offset,
                                                                         kb.records_count)
        assert got["crc"] == kb.crc and got["crc_valid"] is kb.validate_crc() is True
        assert (got["producer_id"], got["producer_epoch"], got["base_sequence"]) == \
               (kb.producer_id, kb.producer_epoch, kb.base_sequence)
        assert (got["base_timestamp"], got["max_timestamp"]) == (kb.first_timestamp, kb.max_timestamp)
    assert [b["compression"] for b in doc["batches"]] == ["none", "lz4", "none"]
    assert [b["last_sequence"] for b in doc["batches"]] == [-1, -1, 1]
    assert doc["batches"][0]["max_timestamp"] == 1001          # the largest, not the last record's


def test_dump_records_and_table(three_batches):
    doc = call("dump", three_batches, "--records", "--json").json
    recs = [r for b in doc["batches"] for r in b["records"]]
    assert [(r["offset"], r["key"], r["value"], r["timestamp"]) for r in recs] == [
        (0, "k0", "v0", 1000), (1, None, "v1", 1001), (2, "k2", None, 999), (3, None, "lz" * 40, 2000),
        (4, None, "4", 2001), (5, None, "i0", 3000), (6, None, "i1", 3000)]
    assert recs[0]["headers"] == [{"key": "h", "value": "x"}] and recs[2]["value_size"] == -1
    r = run("dump", three_batches, "--records")
    assert r.code == 0, r
    lines = r.lines()
    assert lines[0].split() == ["POSITION", "BASE-OFFSET", "LAST-OFFSET", "COUNT", "SIZE", "CRC", "VALID",
                                "COMPRESSION", "PRODUCER-ID", "EPOCH", "SEQUENCE", "LEADER-EPOCH",
                                "BASE-TIMESTAMP", "MAX-TIMESTAMP", "ATTRIBUTES"]
    batch_rows = [line.split() for line in lines[1:] if not line.startswith("  |")]
    assert [row[1:4] for row in batch_rows] == [["0", "2", "3"], ["3", "4", "2"], ["5", "6", "2"]]
    assert [row[6] for row in batch_rows] == ["yes"] * 3 and batch_rows[2][8:11] == ["7", "1", "0"]
    assert "  | offset: 0 CreateTime: 1000 keySize: 2 valueSize: 2 headers: [h=x] key: k0 payload: v0" in lines
    assert [d["base_offset"] for d in call("dump", three_batches, "--nl").nl] == [0, 3, 5]


def test_dump_reports_damage_by_position(three_batches, tmp_path):
    data = bytearray(three_batches.read_bytes())
    second = kafka_python_batches(three_batches)[1][0]
    bad = tmp_path / "crc.log"
    data[second + 70] ^= 0x01                                   # inside the second batch's records
    bad.write_bytes(bytes(data))
    r = run("dump", bad, "--json")
    assert_error(r, 1, f"at position {second}", "CRC-32C mismatch")
    assert [b["crc_valid"] for b in r.json["batches"]] == [True, False, True]    # still shows every batch
    cut = tmp_path / "cut.log"
    cut.write_bytes(three_batches.read_bytes()[:second + 30])
    r = call("dump", cut)
    assert_error(r, 1, f"at position {second}", "truncated")
    assert len(r.lines()) == 2                                  # header + the whole first batch
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(b"\x00" * 16 + b"\x07" + b"\x00" * 60)
    assert_error(call("dump", garbage), 1, "at position 0", "magic")
    assert_error(call("dump", tmp_path / "missing.log"), 2, "missing.log")


def test_dump_index_files(logdir):
    with embedlog.open(logdir) as log:
        p = log.create_topic("i", 1, {"index.interval.bytes": 0}).partition(0)
        for k in range(4):
            p.append_records([b"x" * 50], timestamps=[5000 + k])
    starts = [pos for pos, _size, _kb in kafka_python_batches(logdir / "i-0" / f"{SEG0}.log")]
    idx = call("dump", logdir / "i-0" / f"{SEG0}.index", "--json").json
    # an entry for every batch but the first (index.interval.bytes=0): (its last offset, its position)
    assert [(e["offset"], e["position"]) for e in idx["entries"]] == list(zip([1, 2, 3], starts[1:]))
    tix = run("dump", logdir / "i-0" / f"{SEG0}.timeindex", "--json").json
    assert [(e["timestamp"], e["offset"]) for e in tix["entries"]] == [(5001, 1), (5002, 2), (5003, 3)]
    with open(logdir / "i-0" / f"{SEG0}.index", "ab") as f:
        f.write(b"\x00\x00\x00")
    assert_error(call("dump", logdir / "i-0" / f"{SEG0}.index"), 1, "not a multiple of 8")


# ------------------------------------------------------------------ verify

@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """Many segments and index entries: small segment.bytes, an entry after every
    batch, record timestamps out of order, a LogAppendTime topic and a compacted one."""
    path = tmp_path_factory.mktemp("healthy") / "log"
    with embedlog.open(path) as log:
        a = log.create_topic("a", 2, {"segment.bytes": 2000, "index.interval.bytes": 0})
        b = log.create_topic("b", 1, {"segment.bytes": 4000, "index.interval.bytes": 100,
                                      "message.timestamp.type": "LogAppendTime"})
        c = log.create_topic("c", 1, {"segment.bytes": 3000, "index.interval.bytes": 50, "cleanup.policy": "compact"})
        for i in range(120):
            n = 1 + i % 4
            ts = [1_700_000_000_000 + ((i * 7919 + j * 104729) % 100_000) for j in range(n)]
            a.append([b"v%d-%d" % (i, j) * (1 + i % 5) for j in range(n)], keys=[b"k%d" % (i % 9)] * n,
                     timestamps=ts, compression=(0, 1, 3, 4)[i % 4])
            b.partition(0).append_records([b"x" * (i % 50)] * n)
            c.partition(0).append_records([b"y" * (i % 30)] * n, keys=[b"k%d" % (i % 3)] * n, timestamps=ts)
        batches = 120 * 3
    segments = sum(1 for _r, _d, fs in os.walk(path) for f in fs if f.endswith(".log"))
    assert segments > 12                                       # the fixture really rolls
    return path, batches, segments


def _digest(path):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for f in sorted(files):
            h.update(f.encode() + open(os.path.join(root, f), "rb").read())
    return h.hexdigest()


def test_verify_a_healthy_log_and_change_nothing(healthy):
    path, batches, segments = healthy
    before = _digest(path)
    r = run("verify", path, "--json")
    assert r.code == 0 and r.err == "", r
    doc = r.json
    assert doc["ok"] is True and doc["problems"] == [] and doc["warnings"] == []
    assert doc["batches"] == batches and doc["segments"] == segments
    assert [p["partition"] for p in doc["partitions"]] == ["a-0", "a-1", "b-0", "c-0"]
    r = call("verify", "--dir", path, "--records")
    assert r.code == 0 and r.lines()[-1] == f"checked 4 partitions, {segments} segments, {batches} batches: no problems"
    assert _digest(path) == before                              # verify reads only


def _segments(pdir):
    return sorted(f for f in os.listdir(pdir) if f.endswith(".log"))


def _damage(path, kind):
    """Damage a copy; return (file relative to the log dir, position) verify must name."""
    pdir = path / "a-0"
    seg = _segments(pdir)[2]                                    # a closed segment
    log_file = pdir / seg
    data = bytearray(log_file.read_bytes())
    first = struct.unpack_from(">i", data, 8)[0] + 12           # position of the second batch
    rel = f"a-0/{seg}"
    if kind == "crc":
        data[first + 65] ^= 0x10                                 # the records section: inside the CRC
        log_file.write_bytes(bytes(data))
        return rel, first
    if kind == "base_offset":                                   # outside the CRC: continuity catches it
        struct.pack_into(">q", data, first, struct.unpack_from(">q", data, first)[0] + 3)
        log_file.write_bytes(bytes(data))
        return rel, first
    if kind == "truncated_closed_segment":
        log_file.write_bytes(bytes(data[:first + 20]))
        return rel, first
    if kind == "segment_gap":
        nxt = _segments(pdir)[3]
        base = int(nxt[:20])
        for ext in (".log", ".index", ".timeindex"):
            os.rename(pdir / (nxt[:20] + ext), pdir / (f"{base + 5:020d}" + ext))
        return f"a-0/{base + 5:020d}.log", 0
    idx = pdir / (seg[:20] + ".index")
    tix = pdir / (seg[:20] + ".timeindex")
    if kind == "index_wrong_offset":
        raw = bytearray(idx.read_bytes())
        struct.pack_into(">i", raw, 0, struct.unpack_from(">i", raw, 0)[0] + 1)
        idx.write_bytes(bytes(raw))
        return rel[:-4] + ".index", 0
    if kind == "index_not_a_batch":
        raw = bytearray(idx.read_bytes())
        struct.pack_into(">i", raw, 4, struct.unpack_from(">i", raw, 4)[0] + 1)
        idx.write_bytes(bytes(raw))
        return rel[:-4] + ".index", 0
    if kind == "index_size":
        idx.write_bytes(idx.read_bytes() + b"\x01")
        return rel[:-4] + ".index", len(idx.read_bytes()) - 1
    if kind == "index_missing":
        os.unlink(idx)
        return rel[:-4] + ".index", 0
    if kind == "timeindex_timestamp":
        raw = bytearray(tix.read_bytes())
        struct.pack_into(">q", raw, 0, struct.unpack_from(">q", raw, 0)[0] - 1)
        tix.write_bytes(bytes(raw))
        return rel[:-4] + ".timeindex", 0
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["crc", "base_offset", "truncated_closed_segment", "segment_gap",
                                  "index_wrong_offset", "index_not_a_batch", "index_size", "index_missing",
                                  "timeindex_timestamp"])
def test_verify_names_the_damaged_file_and_position(healthy, tmp_path, kind):
    path = tmp_path / "log"
    shutil.copytree(healthy[0], path)
    rel, position = _damage(path, kind)
    before = _digest(path)
    r = call("verify", path, "--json")
    assert_error(r, 1, str(path / rel), f"at position {position}")
    assert r.json["ok"] is False
    assert {"file": rel, "position": position} == {k: r.json["problems"][0][k] for k in ("file", "position")}
    assert _digest(path) == before


def test_verify_human_output_and_exit(healthy, tmp_path):
    path = tmp_path / "log"
    shutil.copytree(healthy[0], path)
    rel, position = _damage(path, "crc")
    r = run("--dir", path, "verify")
    assert_error(r, 1, f"{path / rel} at position {position}: CRC-32C mismatch")
    partitions = parse_table(r.out.split("\n\n")[0])
    assert partitions[1][0] == "a-0" and partitions[1][4] == "1 problem(s)"
    assert [row[4] for row in partitions[2:]] == ["ok", "ok", "ok"]
    assert r.out.splitlines()[-1].endswith(": 1 problem")
    problems = r.out.split("\n\n")[1].splitlines()
    assert problems[0].split() == ["FILE", "POSITION", "PROBLEM"]
    assert problems[1].split()[:3] == [rel, str(position), "CRC-32C"]


def test_verify_a_torn_tail_is_a_warning_only_on_the_active_segment(healthy, tmp_path):
    path = tmp_path / "log"
    shutil.copytree(healthy[0], path)
    active = path / "b-0" / _segments(path / "b-0")[-1]
    size = active.stat().st_size
    with open(active, "ab") as f:                              # a writer died mid-append
        f.write(build_batch([b"half"])[:40])
    r = call("verify", path, "--json")
    assert r.code == 0 and r.json["ok"] is True, r
    assert r.json["warnings"][0]["file"].startswith("b-0/") and r.json["warnings"][0]["position"] == size


def test_verify_bad_input(tmp_path):
    assert_error(run("verify", tmp_path / "nope"), 1, "does not exist")
    assert_error(call("verify"), 2, "--dir")
    assert_error(call("verify", tmp_path), 1, "not an embedlog log directory")


def _stderr_on_a_terminal(args, stdout):
    """Run `python -m embedlog ARGS` with stderr on a pseudo-terminal; (exit code, what the terminal got)."""
    import pty
    import subprocess
    import sys
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "embedlog", *map(str, args)], stdout=stdout, stderr=slave,
                           timeout=60)
        os.close(slave)
        slave = None
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:                    # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    return p.returncode, shown


def test_progress_bar_on_a_terminal_only(healthy, tmp_path):
    import subprocess
    with open(tmp_path / "out.txt", "wb") as out:                # `embedlog verify DIR > out.txt`
        code, shown = _stderr_on_a_terminal(["verify", healthy[0]], out)
    assert code == 0 and b"no problems" in (tmp_path / "out.txt").read_bytes()
    assert b"verifying" in shown and b"100%" in shown           # the bar went to the terminal
    assert b"verifying" not in (tmp_path / "out.txt").read_bytes()
    code, shown = _stderr_on_a_terminal(["verify", healthy[0]], subprocess.PIPE)   # `| less`
    assert code == 0 and shown == b""
    piped = run("verify", healthy[0])                            # nothing at all when both are pipes
    assert piped.code == 0 and piped.err == "" and "verifying" not in piped.out
    log = next(p for p in sorted(healthy[0].glob("c-0/*.log")) if p.stat().st_size)
    with open(tmp_path / "dump.txt", "wb") as out:              # `embedlog dump FILE > dump.txt`
        code, shown = _stderr_on_a_terminal(["dump", log, "--records"], out)
    assert code == 0 and b"dumping" in shown and b"| offset:" in (tmp_path / "dump.txt").read_bytes()


def test_dump_as_kafka_dump_log_spells_it(three_batches, tmp_path):
    ours = call("dump", three_batches, "--records").lines()
    theirs = call("dump", "--files", three_batches, "--print-data-log").lines()
    assert theirs == ours and any(line.startswith("  | offset: 0 ") for line in theirs)
    index = three_batches.with_suffix(".index")
    both = call("dump", "--files", f"{three_batches},{index}")
    assert both.code == 0, both
    heads = [line for line in both.lines() if line.startswith("Dumping ")]
    assert heads == [f"Dumping {three_batches}", f"Dumping {index}"]
    assert_error(call("dump", "--files", f"{three_batches},{index}", "--json"), 2, "one file")
    assert_error(call("dump"), 2, "missing FILE")
    assert_error(call("dump", "--files", tmp_path / "nope.log"), 2, "nope.log")
    # a file that is not a segment prints only the error, no table header
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a segment\n" * 4)
    r = call("dump", text)
    assert r.code == 1 and r.out == "", r
    assert "at position 0" in r.err
