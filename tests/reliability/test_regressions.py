"""One test per bug the reliability suites found (issue #8), each reduced to the damage
or the input that showed it. The sweep that found it is named in each docstring."""
from __future__ import annotations

import os
import time

import pytest

import embedlog
from embedlog import CorruptRecordError
from embedlog.storage._records import iter_batches

T0 = 1_700_000_000_000


def _batches(path):
    with open(path, "rb") as f:
        data = f.read()
    return [(pos, h) for pos, h in iter_batches(data)]


def _poke(path, position, data: bytes):
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(data)


def _reboot(part_dir):
    with open(os.path.join(part_dir, "partition.state"), "r+b") as f:
        f.write(bytes(8))


def _segments(part_dir):
    return sorted(os.path.join(part_dir, n) for n in os.listdir(part_dir) if n.endswith(".log"))


def _fill(log, name, batches=12, per=3, config=None):
    topic = log.create_topic(name, partitions=1, config={"segment.bytes": 600, "retention.ms": -1,
                                                          **(config or {})})
    part = topic.partition(0)
    for b in range(batches):
        part.append_records([b"%s-%d-%d" % (name.encode(), b, i) for i in range(per)],
                            [b"k%d" % i for i in range(per)],
                            timestamps=[T0 + b * 10 + i for i in range(per)])
    return part


def _read_all(part, start=None):
    out = []
    pos = part.log_start_offset if start is None else start
    hw = part.high_watermark
    while pos < hw:
        cols, nxt = part.fetch(pos, max_bytes=200)
        assert nxt > pos, f"no progress at {pos} below the high watermark {hw}"
        out.extend(cols.offsets)
        pos = nxt
    return out


@pytest.mark.parametrize("reboot", [True, False])
def test_base_offset_flipped_past_the_segment_is_damage_not_the_end(tmp_path, reboot):
    """Corruption sweep, closed_batch_*: a bit flipped high in the baseOffset (outside the
    CRC) of a closed segment's batch made the reader take it for the end of the data:
    it skipped silently to the next segment, losing the rest of the segment."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t")
        pdir = part.path
    first = _segments(pdir)[0]
    pos, h = _batches(first)[2]
    _poke(first, pos, (h.base_offset + 1000).to_bytes(8, "big"))
    if reboot:
        _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        with pytest.raises(CorruptRecordError) as e:
            _read_all(part)
        assert e.value.path == first and e.value.position == pos
        # what precedes the damage is still handed out
        assert part.read(0, max_bytes=1)[0].offset == 0


@pytest.mark.parametrize("topic,config", [("t", None), ("c", {"cleanup.policy": "compact"})])
def test_base_offset_flipped_past_the_log_end_is_damage(tmp_path, topic, config):
    """Corruption sweep, active_batch_last and offsets_record: the last batch of the active
    segment with its baseOffset flipped above the high watermark was hidden without an
    error (records below the high watermark never returned), in dense and compacted
    topics alike (__consumer_offsets lost a commit that way)."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, topic, config=config)
        end = part.log_end_offset
        pdir = part.path
    active = _segments(pdir)[-1]
    pos, h = _batches(active)[-1]
    _poke(active, pos, (h.base_offset + 64).to_bytes(8, "big"))
    _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition(topic, 0)
        assert part.high_watermark == end
        with pytest.raises(CorruptRecordError, match="claims offsets|has base offset"):
            _read_all(part)


@pytest.mark.parametrize("which", ["closed", "active"])
@pytest.mark.parametrize("reboot", [True, False])
def test_index_entry_pointing_inside_a_batch_is_rebuilt(tmp_path, which, reboot):
    """Corruption sweep, closed_index / active_index: an .index entry whose position was
    damaged to point inside a batch made reads by offset fail with "bad magic byte" in
    the .log (which is fine) instead of rebuilding the derived index."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t", batches=22, config={"index.interval.bytes": 50, "segment.bytes": 1400})
        pdir = part.path
        expected = {r.offset: r for r in part.read(0, max_bytes=1 << 20)}
    seg = _segments(pdir)[0 if which == "closed" else -1]
    index = seg[:-4] + ".index"
    with open(index, "rb") as f:
        entries = f.read()
    assert len(entries) >= 16, "the fixture needs index entries"
    rel = int.from_bytes(entries[8:12], "big")
    position = int.from_bytes(entries[12:16], "big")
    _poke(index, 12, (position + 5).to_bytes(4, "big"))      # inside the batch
    if reboot:
        _reboot(pdir)
    base = int(os.path.basename(seg)[:20])
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        for off in (base + rel, base + rel + 1):
            assert part.read(off, max_records=1)[0] == expected[off]
        assert sorted(expected) == [r.offset for r in part.read(0, max_bytes=1 << 20)]
    with open(index, "rb") as f:
        assert f.read() == entries          # rebuilt as it was


def _time_entries(path):
    with open(path, "rb") as f:
        data = f.read()
    return [(int.from_bytes(data[i:i + 8], "big", signed=True), int.from_bytes(data[i + 8:i + 12], "big"))
            for i in range(0, len(data), 12)]


def _expected_offset_for_time(records, ts):
    return next(((r.offset, r.timestamp) for r in records if r.timestamp >= ts), None)


@pytest.mark.parametrize("damage", ["timestamp", "offset", "final_entry_lost"])
def test_time_index_damage_never_gives_a_wrong_time_lookup(tmp_path, damage):
    """Corruption sweep, closed_timeindex / active_timeindex: a .timeindex entry damaged into
    another plausible entry (timestamps still increasing) made offset_for_time skip records
    and answer a later offset, without any error; a closed segment whose final entry was
    lost was skipped altogether. Entries are now checked against the batch they name."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t", batches=22, config={"index.interval.bytes": 50, "segment.bytes": 1400})
        records = part.read(0, max_bytes=1 << 20)
        pdir = part.path
    seg = _segments(pdir)[0]
    ti = seg[:-4] + ".timeindex"
    entries = _time_entries(ti)
    assert len(entries) >= 3
    if damage == "timestamp":        # entry 1's timestamp lowered, still above entry 0's
        _poke(ti, 12, (entries[0][0] + 1).to_bytes(8, "big"))
        probe = entries[0][0] + 2
    elif damage == "offset":         # entry 1 names a later batch
        _poke(ti, 20, (entries[2][1]).to_bytes(4, "big"))
        probe = entries[1][0]
    else:                            # the final entry (the segment's largest timestamp) cut off
        os.truncate(ti, 12 * (len(entries) - 1))
        probe = entries[-1][0]
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        assert part.offset_for_time(probe) == _expected_offset_for_time(records, probe)
        for r in records[::5]:
            assert part.offset_for_time(r.timestamp) == _expected_offset_for_time(records, r.timestamp)
    with open(ti, "rb") as f:
        assert _time_entries(ti) == entries, "the time index was rebuilt"


def test_retention_does_not_trust_a_damaged_final_time_entry(tmp_path):
    """Corruption sweep (a consequence of the time-index finding): retention.ms judges a
    closed segment by its final .timeindex entry; an entry damaged to an old timestamp
    made maintain() delete a segment of fresh records."""
    from embedlog.storage._records import now_ms
    now = now_ms()
    with embedlog.open(tmp_path / "log") as log:
        topic = log.create_topic("t", partitions=1, config={"segment.bytes": 600, "retention.ms": 86_400_000})
        part = topic.partition(0)
        for b in range(12):
            part.append_records([b"v%d-%d" % (b, i) for i in range(3)], timestamps=[now - 1000] * 3)
        pdir = part.path
        count = len(part.read(0, max_bytes=1 << 20))
    seg = _segments(pdir)[0]
    ti = seg[:-4] + ".timeindex"
    entries = _time_entries(ti)
    assert len(entries) == 1
    _poke(ti, 0, (now - 3 * 86_400_000).to_bytes(8, "big"))       # three days old, says the index
    with embedlog.open(tmp_path / "log", retention_check_interval_ms=0) as log:
        done = log.maintain(now=now)
        part = log.partition("t", 0)
        assert part.log_start_offset == 0, done
        assert len(part.read(0, max_bytes=1 << 20)) == count


def _checkpoint_field_span(path, key):
    """(position, text) of a key's value in partition.checkpoint."""
    with open(path, "rb") as f:
        data = f.read()
    i = data.index(b'"%s": ' % key.encode()) + len(key) + 4
    j = i
    while data[j:j + 1] not in (b",", b"}"):
        j += 1
    return i, data[i:j]


@pytest.mark.parametrize("key,new", [("log_start_offset", b"9"), ("fields", None)])
def test_damaged_checkpoint_values_are_detected(tmp_path, key, new):
    """Corruption sweep, partition_checkpoint: a digit flipped in partition.checkpoint was
    trusted: a larger log_start_offset hid the first records, and on the clean fast path
    the flipped `fields` (high watermark, max timestamp) hid the tail of the log or made
    time lookups answer None. The checkpoint now carries a CRC-32C; a mismatch counts as
    damage (full recovery from the first segment, the safe direction)."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t")
        records = part.read(0, max_bytes=1 << 20)
        pdir = part.path
    ck = os.path.join(pdir, "partition.checkpoint")
    if key == "fields":     # the high watermark (fields[2]) lowered, same number of digits
        import re
        with open(ck, "rb") as f:
            m = re.search(rb'"fields": \[\d+, \d+, (\d+),', f.read())
        _poke(ck, m.start(1), b"1" * len(m.group(1)))
    else:
        pos, text = _checkpoint_field_span(ck, key)
        _poke(ck, pos, new)
    _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        assert part.watermarks() == (0, records[-1].offset + 1)
        assert part.read(0, max_bytes=1 << 20) == records
        assert part.offset_for_time(records[-1].timestamp) == (records[-1].offset, records[-1].timestamp)


def test_checkpoints_without_a_crc_are_still_read(tmp_path):
    """Checkpoints written before the CRC existed (no crc32c key) are read as before."""
    import json
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t")
        part.delete_records(5)
        pdir = part.path
    ck = os.path.join(pdir, "partition.checkpoint")
    with open(ck) as f:
        doc = json.load(f)
    del doc["crc32c"]
    with open(ck, "w") as f:
        f.write(json.dumps(doc) + "\n")
    _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        assert log.partition("t", 0).log_start_offset == 5


@pytest.mark.parametrize("old,new,error", [
    (b'"partitions"', b'"partitionr"', "damaged"),          # KeyError escaped before
    (b'"retention.ms": -1', b'"retention.ms": -0', "damaged"),   # retention 0: deletes everything
    (b'"partitions": 1', b'"partitions": 3', "damaged"),    # two phantom partitions appeared
])
def test_damaged_topic_metadata_is_refused_with_its_file_name(tmp_path, old, new, error):
    """Corruption sweep, topic_json: a flipped bit in topics/<t>.json either escaped as a
    KeyError, or was applied as a valid but different config (retention.ms -1 -> 0 lets
    the next maintenance delete every closed segment; partitions 1 -> 3). The file now
    carries a CRC-32C, and its shape is checked: StorageError naming the file."""
    from embedlog import StorageError
    with embedlog.open(tmp_path / "log") as log:
        _fill(log, "t")
    path = tmp_path / "log" / "topics" / "t.json"
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    with embedlog.open(tmp_path / "log") as log:
        with pytest.raises(StorageError, match=error) as e:
            log.topic("t")
        assert e.value.path == str(path)


def test_topic_metadata_config_errors_name_the_file(tmp_path):
    """Corruption sweep, topic_json: an unknown config key in a topic file (written by
    hand, or before the CRC) was a ConfigError that did not say which file."""
    import json
    from embedlog import ConfigError
    with embedlog.open(tmp_path / "log") as log:
        _fill(log, "t")
    path = tmp_path / "log" / "topics" / "t.json"
    meta = json.loads(path.read_bytes())
    del meta["crc32c"]
    meta["config"]["retention.mss"] = 5
    path.write_text(json.dumps(meta, indent=1) + "\n")
    with embedlog.open(tmp_path / "log") as log:
        with pytest.raises(ConfigError, match=r"topics/t\.json.*retention\.mss"):
            log.topic("t")
        del meta["config"]["retention.mss"]
        path.write_text(json.dumps(meta, indent=1) + "\n")          # no CRC: read as before
        assert log.topic("t").num_partitions == 1


@pytest.mark.parametrize("reboot", [True, False])
def test_closed_segment_cut_at_a_batch_boundary_is_not_skipped(tmp_path, reboot):
    """Corruption sweep, truncations of closed_batch_lz4: a closed segment cut exactly at a
    batch boundary still holds whole, valid batches; after a clean close nothing rescans
    closed segments, and the reader went on to the next segment, skipping the lost
    offsets without an error. The reader now checks offset continuity across segments."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t")
        pdir = part.path
    first = _segments(pdir)[0]
    pos, h = _batches(first)[2]
    os.truncate(first, pos)
    if reboot:
        _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        got = part.read(0, max_bytes=1 << 20)
        assert [r.offset for r in got] == list(range(h.base_offset))
        with pytest.raises(CorruptRecordError, match="ends before offset") as e:
            part.read(h.base_offset)
        assert e.value.path == first


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_recovery_leaks_no_descriptor(tmp_path):
    """Found by tests/crash/test_kill9.py failing with "filedescriptor out of range in
    select()" after the property tests ran in the same process: every recovery that took
    the clean fast path opened the active segment's .log to read its size and never
    closed it (~1,000 descriptors leaked by tests/property/test_partition_model.py)."""
    with embedlog.open(tmp_path / "log") as log:
        pdir = _fill(log, "t").path
    before = _open_fds()
    for _ in range(50):
        _reboot(pdir)                   # the next open recovers (clean fast path)
        with embedlog.open(tmp_path / "log") as log:
            assert log.partition("t", 0).high_watermark == 36
    assert _open_fds() - before < 5


@pytest.mark.parametrize("kind", ["dir", "dangling symlink", "fifo"])
@pytest.mark.parametrize("reboot", [True, False])
def test_non_files_named_like_segments_are_not_segments(tmp_path, kind, reboot):
    """Corruption sweep, garbage files: a folder named like a segment past the end made
    every read fail (IsADirectoryError escaping, or a StorageError from recovery), and a
    dangling symlink so named failed reads with ENOENT."""
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t")
        records = part.read(0, max_bytes=1 << 20)
        size = part.size_bytes()
        pdir = part.path
    stray = os.path.join(pdir, "00000000000000099999.log")
    if kind == "dir":
        os.mkdir(stray)
    elif kind == "fifo":
        os.mkfifo(stray)
    else:
        os.symlink("/nonexistent/segment", stray)
    if reboot:
        _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        assert part.read(0, max_bytes=1 << 20) == records
        assert part.offset_for_time(records[-1].timestamp) == (records[-1].offset, records[-1].timestamp)
        assert part.size_bytes() == size
    assert os.path.lexists(stray)


def test_a_stray_segment_past_the_active_one_is_not_read(tmp_path):
    """Corruption sweep, garbage files: a copy of a real segment dropped into the folder
    under a name past the active segment was taken for a closed segment by time lookups
    (which then failed: "time index ... still damaged after a rebuild") and counted by
    size_bytes, while the partition had not published it."""
    import shutil
    with embedlog.open(tmp_path / "log") as log:
        part = _fill(log, "t")
        records = part.read(0, max_bytes=1 << 20)
        size = part.size_bytes()
        pdir = part.path
    shutil.copyfile(_segments(pdir)[0], os.path.join(pdir, "00000000000000099999.log"))
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        for r in records[::4]:
            assert part.offset_for_time(r.timestamp) == _expected_offset_for_time(records, r.timestamp)
        assert part.size_bytes() == size


@pytest.mark.parametrize("deltas,last_delta", [([1], 0), ([0, 5], 1), ([1, 0], 1), ([0, 0], 1), ([0, 1, 2], 1)])
def test_record_offsets_outside_their_batch_are_malformed(tmp_path, deltas, last_delta):
    """Fuzzing (the partition target of _fuzz.py): a CRC-valid batch whose records' offset
    deltas disagree with its lastOffsetDelta (a record at delta 1 in a batch of offsets
    0..0) was read as is: the reader returned a record at an offset past the high
    watermark, or two records at one offset. The CRC covers both fields, not their
    agreement; decode_columns now requires increasing deltas within the batch."""
    from embedlog.storage._records import decode_records, encode_batch
    batch = bytes(encode_batch([b"v%d" % i for i in range(len(deltas))], offset_deltas=deltas,
                               last_offset_delta=last_delta, timestamp=T0))
    with pytest.raises(CorruptRecordError, match="record offsets outside the batch"):
        decode_records(batch)
    with embedlog.open(tmp_path / "log") as log:
        part = log.create_topic("t", config={"retention.ms": -1}).partition(0)
        pdir = part.path
    with open(_segments(pdir)[0], "wb") as f:            # as another writer could have left it
        f.write(batch)
    _reboot(pdir)
    with embedlog.open(tmp_path / "log") as log:
        part = log.partition("t", 0)
        assert part.high_watermark == last_delta + 1
        with pytest.raises(CorruptRecordError):
            part.read(0)


def test_state_snapshots_are_whole_under_threads(tmp_path):
    """load() runs lock-free in many threads of one process (the wire server's pool): each
    must get one publish's fields, never a mix of two (cffi drops the GIL during the copy,
    so a buffer shared by the threads mixed them)."""
    import threading

    from embedlog.storage._state import N_FIELDS, SharedState
    state = SharedState(str(tmp_path / "partition.state"))
    state.publish([0] * N_FIELDS)
    stop = threading.Event()
    torn, loads = [], [0]

    def writer():
        k = 0
        while not stop.is_set():
            k += 1
            state.publish([k] * N_FIELDS)

    def reader():
        n = 0
        while not stop.is_set():
            f = state.load()
            n += 1
            if f is not None and len(set(f)) != 1:
                torn.append(f)
                return
        loads[0] += n

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    state.close()
    assert not torn, f"a snapshot mixed two publishes: {torn[0]}"
    assert loads[0] > 1000
