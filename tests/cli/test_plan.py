"""embedlog plan (disk arithmetic, shown) and embedlog du (what a log directory uses, from
its files only). The expected numbers are computed here independently: from the formulas
for plan, and from the files themselves (sizes, batch headers) for du."""
import json
import math
import os
import struct
from fractions import Fraction

import pytest

import embedlog
from clirun import assert_error, call, run
from embedlog.storage._records import build_batch

GiB = 1 << 30
SEG0 = "00000000000000000000"


def expected_plan(rate, retention_s, ratio=1, partitions=1, rf=1, segment_bytes=GiB, segment_s=604800,
                  retention_bytes=-1, interval=4096, headroom=Fraction(6, 5), prealloc=0):
    """The plan's numbers, straight from the formulas (Fractions, then whole bytes up)."""
    rate, ratio = Fraction(rate), Fraction(ratio)
    data = rate * retention_s * ratio
    if retention_bytes >= 0:
        data = min(data / partitions, retention_bytes) * partitions
    data = math.ceil(data)
    segment = math.ceil(min(segment_bytes, rate * ratio / partitions * segment_s) * partitions)
    index = math.ceil(Fraction((data + segment) * 8, interval))
    timeindex = math.ceil(Fraction((data + segment) * 12, interval))
    per_replica = data + segment + index + timeindex + prealloc
    return {"data": data, "segment": segment, "index": index, "timeindex": timeindex, "per_replica": per_replica,
            "per_partition": math.ceil(Fraction(per_replica, partitions)), "total": per_replica * rf,
            "headroom": math.ceil(per_replica * rf * headroom)}


def got_plan(doc):
    r = doc["per_replica"]
    return {"data": r["data_bytes"], "segment": r["open_segment_bytes"], "index": r["index_bytes"],
            "timeindex": r["timeindex_bytes"], "per_replica": doc["per_replica_bytes"],
            "per_partition": doc["per_partition_bytes"], "total": doc["total_bytes"],
            "headroom": doc["total_with_headroom_bytes"]}


# ------------------------------------------------------------------ plan

def test_plan_10mb_per_second_for_7_days_on_3_replicas():
    r = run("plan", "--rate", "10MB/s", "--retention", "7d", "--replication-factor", "3",
            "--compression-ratio", "0.5")
    assert r.code == 0 and r.err == "", r
    steps = {line.split("  ")[1].strip(): line.strip() for line in r.lines() if line.startswith("  ")}
    # 10 MB/s × 604800 s × 0.5 = 3,024,000,000,000 B; + 1 GiB open segment; + indexes.
    assert steps["retained data"] == "retained data  10 MB/s × 604800 s × 0.5 = 3.02 TB"
    assert steps["open segments"] == "open segments  1 partition × segment.bytes 1 GiB = 1.07 GB"
    assert steps[".index"] == ".index         (3.02 TB + 1.07 GB) ÷ 4096 B × 8 B = 5.91 GB"
    assert steps[".timeindex"] == ".timeindex     (3.02 TB + 1.07 GB) ÷ 4096 B × 12 B = 8.86 GB"
    assert steps["per replica"] == "per replica    3.02 TB + 1.07 GB + 5.91 GB + 8.86 GB = 3.04 TB"
    assert steps["per partition"] == "per partition  3.04 TB ÷ 1 partition = 3.04 TB"
    assert steps["total"] == "total          3.04 TB × 3 replicas = 9.12 TB"
    assert steps["with headroom"] == "with headroom  9.12 TB × 1.2 (20% headroom) = 10.9 TB"
    assert r.lines()[0].startswith("Plan: 10 MB/s for 7d (retention.ms 604800000), 1 partition, replication "
                                   "factor 3, compression ratio 0.5")
    assert any("whole closed segments" in line for line in r.lines())       # says why the extra segment

    doc = call("plan", "--rate", "10MB/s", "--retention", "7d", "-r", "3", "--compression-ratio", "0.5",
               "--json").json
    want = expected_plan(10_000_000, 604800, ratio=Fraction(1, 2), rf=3)
    assert want["data"] == 3_024_000_000_000 and want["segment"] == 1073741824
    assert got_plan(doc) == want
    assert doc["per_replica"]["preallocated_index_bytes"] == 0


def test_plan_json_is_the_text_as_one_document():
    args = ("plan", "--rate", "1GiB/h", "--retention-ms", "86400000", "-p", "3", "-r", "2", "--kafka")
    text, doc = call(*args), call(*args, "--json").json
    assert set(doc) == {"inputs", "per_replica", "per_partition_bytes", "per_replica_bytes", "total_bytes",
                        "total_with_headroom_bytes", "steps", "notes"}
    assert doc["inputs"] == {"rate_bytes_per_second": GiB / 3600, "retention_ms": 86400000, "retention_bytes": -1,
                             "compression_ratio": 1.0, "partitions": 3, "replication_factor": 2,
                             "segment_bytes": GiB, "segment_ms": 604800000, "index_interval_bytes": 4096,
                             "segment_index_bytes": 10485760, "headroom_percent": 20.0, "kafka": True,
                             "topic": None}
    assert [s["step"] for s in doc["steps"]] == ["retained data", "open segments", ".index", ".timeindex",
                                                  "preallocated", "per replica", "per partition", "total",
                                                  "with headroom"]
    for s in doc["steps"]:                       # every line of the text, with the same numbers
        assert f"{s['step']}  " in text.out and s["formula"] in text.out, s
        assert isinstance(s["value"], int) and s["unit"] == "B"
    # --kafka: the active segment's two indexes, preallocated to segment.index.bytes each
    want = expected_plan(Fraction(GiB, 3600), 86400, partitions=3, rf=2, prealloc=3 * 2 * 10485760)
    assert got_plan(doc) == want
    assert doc["per_replica"]["preallocated_index_bytes"] == 3 * 2 * 10485760
    assert sum(doc["per_replica"][k] for k in ("data_bytes", "open_segment_bytes", "index_bytes", "timeindex_bytes",
                                               "preallocated_index_bytes")) == doc["per_replica_bytes"]


def test_plan_retention_bytes_segment_ms_and_message_rate():
    # retention.bytes caps each partition: 1 MB/s × 1 d ÷ 4 = 21.6 GB > 10 GB
    doc = call("plan", "--rate", "1MB/s", "--retention", "1d", "-p", "4", "--retention-bytes", "10GB",
               "--segment-bytes", "100MiB", "--json").json
    want = expected_plan(10**6, 86400, partitions=4, retention_bytes=10**10, segment_bytes=100 << 20)
    assert got_plan(doc) == want and want["data"] == 4 * 10**10
    assert doc["steps"][0]["formula"] == ("min(1 MB/s × 86400 s ÷ 4, retention.bytes 10 GB) × 4 partitions = "
                                          "40 GB")
    # a slow topic rolls by segment.ms long before segment.bytes: the open segment is 1 KB/s × 1 d
    doc = call("plan", "--rate", "1KB/s", "--retention", "1h", "--segment-ms", "1d", "--json").json
    assert got_plan(doc) == expected_plan(1000, 3600, segment_s=86400)
    assert doc["per_replica"]["open_segment_bytes"] == 86_400_000
    assert doc["steps"][1]["formula"] == "1 KB/s × 86400 s (segment.ms) = 86.4 MB"
    # records per second × record size; binary units are shown in binary
    r = call("plan", "--messages-per-second", "5000", "--message-size", "1KiB", "--retention", "12h",
             "--headroom", "0")
    assert r.code == 0, r
    assert "write rate     5000 records/s × 1 KiB = 4.88 MiB/s" in r.out
    assert "retained data  4.88 MiB/s × 43200 s = 206 GiB" in r.out
    doc = call("plan", "--messages-per-second", "5000", "--message-size", "1KiB", "--retention", "12h",
               "--headroom", "0", "--json").json
    assert got_plan(doc) == expected_plan(5000 * 1024, 43200, headroom=1)
    assert doc["per_replica"]["data_bytes"] == 221_184_000_000
    # no time limit, only retention.bytes
    doc = call("plan", "--rate", "1MB/s", "--retention-ms", "-1", "--retention-bytes", "1GiB", "-p", "2",
               "--json").json
    assert doc["per_replica"]["data_bytes"] == 2 * GiB


@pytest.mark.parametrize("rate, per_second", [
    ("10MB/s", 10_000_000), ("10 MB/s", 10_000_000), ("1KiB/s", 1024), ("1.5GB/h", Fraction(1_500_000_000, 3600)),
    ("2TiB/d", Fraction(2 << 40, 86400)), ("512/s", 512), ("3kB/s", 3000), ("60MB/min", 10**6),
    ("1PB/d", Fraction(10**15, 86400)),
])
def test_plan_rate_units(rate, per_second):
    doc = call("plan", "--rate", rate, "--retention-ms", "1000", "--json").json
    assert doc["inputs"]["rate_bytes_per_second"] == float(per_second)
    assert doc["per_replica"]["data_bytes"] == math.ceil(Fraction(per_second))     # × 1 s


@pytest.mark.parametrize("retention, ms", [
    ("7d", 604_800_000), ("12h", 43_200_000), ("30m", 1_800_000), ("45s", 45_000), ("500ms", 500),
    ("1h30m", 5_400_000), ("1w", 604_800_000), ("1.5h", 5_400_000), ("2min", 120_000),
])
def test_plan_durations(retention, ms):
    doc = call("plan", "--rate", "1B/s", "--retention", retention, "--json").json
    assert doc["inputs"]["retention_ms"] == ms
    assert doc["per_replica"]["data_bytes"] == math.ceil(Fraction(ms, 1000))


@pytest.mark.parametrize("args, code, fragments", [
    (["--rate", "10XB/s", "--retention", "7d"], 2, ["'--rate'", "'10XB'", "unknown unit"]),
    (["--rate", "10Mb/s", "--retention", "7d"], 2, ["'--rate'", "bits"]),
    (["--rate", "10MB", "--retention", "7d"], 2, ["'--rate'", "10MB/s"]),
    (["--rate", "10MB/fortnight", "--retention", "7d"], 2, ["'--rate'", "fortnight"]),
    (["--rate", "ten/s", "--retention", "7d"], 2, ["'--rate'", "'ten'"]),
    (["--rate", "1MB/s", "--retention", "7"], 2, ["'--retention'", "'7' has no unit"]),
    (["--rate", "1MB/s", "--retention", "7y"], 2, ["'--retention'", "'7y'"]),
    (["--rate", "1MB/s", "--retention-ms", "soon"], 2, ["'--retention-ms'", "soon"]),
    (["--rate", "1MB/s", "--retention", "1d", "--compression-ratio", "2:1"], 2,
     ["'--compression-ratio'", "0.5 for 2:1"]),
    (["--rate", "1MB/s", "--retention", "1d", "--compression-ratio", "0"], 2, ["'--compression-ratio'", "'0'"]),
    (["--rate", "1MB/s", "--retention", "1d", "-p", "0"], 2, ["'--partitions'", "0"]),
    (["--rate", "1MB/s", "--retention", "1d", "--headroom", "-5"], 2, ["'--headroom'", "'-5'"]),
    (["--retention", "1d"], 2, ["no write rate", "--rate"]),
    (["--rate", "1MB/s"], 2, ["no retention", "--retention"]),
    (["--rate", "1MB/s", "--retention", "1d", "--retention-ms", "5"], 2, ["--retention", "--retention-ms"]),
    (["--rate", "1MB/s", "--messages-per-second", "5", "--message-size", "1KB", "--retention", "1d"], 2,
     ["either --rate"]),
    (["--messages-per-second", "5", "--retention", "1d"], 2, ["--message-size is missing"]),
    (["--rate", "1MB/s", "--retention-ms", "-1"], 1, ["retention.ms is -1", "--retention-bytes"]),
    (["--rate", "1MB/s", "--retention", "1d", "--topic", "t"], 2, ["no log directory"]),
])
def test_plan_bad_input_names_the_flag_and_value(args, code, fragments):
    assert_error(call("plan", *args), code, *fragments)


def test_plan_needs_no_log_directory(tmp_path):
    r = run("plan", "--rate", "1MB/s", "--retention", "1h", "--dir", tmp_path / "nowhere")
    assert r.code == 0, r
    assert not (tmp_path / "nowhere").exists()


def test_plan_takes_an_existing_topics_config(logdir):
    with embedlog.open(logdir) as log:
        log.create_topic("orders", 3, config={"segment.bytes": 1 << 20, "retention.ms": 3_600_000,
                                              "retention.bytes": 5_000_000, "index.interval.bytes": 1024,
                                              "segment.ms": 600_000})
    doc = call("plan", "--topic", "orders", "--rate", "10KB/s", "--json", dir=logdir).json
    inputs = doc["inputs"]
    assert (inputs["partitions"], inputs["segment_bytes"], inputs["retention_ms"], inputs["retention_bytes"],
            inputs["index_interval_bytes"], inputs["segment_ms"], inputs["topic"]) == \
           (3, 1 << 20, 3_600_000, 5_000_000, 1024, 600_000, "orders")
    assert got_plan(doc) == expected_plan(10_000, 3600, partitions=3, segment_bytes=1 << 20, segment_s=600,
                                          retention_bytes=5_000_000, interval=1024)
    # flags win over the topic's config
    doc = call("plan", "-t", "orders", "--rate", "10KB/s", "--retention", "1d", "-p", "5", "--json",
               dir=logdir).json
    assert (doc["inputs"]["partitions"], doc["inputs"]["retention_ms"]) == (5, 86_400_000)
    assert_error(call("plan", "-t", "nope", "--rate", "1MB/s", dir=logdir), 1, "'nope'", "does not exist")
    with embedlog.open(logdir) as log:
        log.create_topic("forever", 1, config={"retention.ms": -1})
    assert_error(call("plan", "-t", "forever", "--rate", "1MB/s", dir=logdir), 1, "topic forever",
                 "without limit")


# ------------------------------------------------------------------ du

def batches_of(path):
    """(position, size, maxTimestamp) of each batch in a .log, parsed here from the bytes."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos + 61 <= len(data):
        size = struct.unpack_from(">i", data, pos + 8)[0] + 12
        out.append((pos, size, struct.unpack_from(">q", data, pos + 35)[0]))
        pos += size
    return out


def folder_bytes(root, topic, partitions):
    total = 0
    for p in range(partitions):
        for dirpath, _dirs, files in os.walk(root / f"{topic}-{p}"):
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def logs_of(root, topic, p):
    return sorted((root / f"{topic}-{p}").glob("*.log"))


def values(i, n=5):
    return [b"order %d for customer %d, total %d; " % (i, i % 7, i * 13) * 20 for _ in range(n)]


@pytest.fixture
def two_codecs(logdir):
    """'plain': 2 partitions, uncompressed, small segments; partition 0 holds 120 batches of 5
    records 1 s apart, partition 1 nothing. 'zipped': 1 partition, 40 lz4 batches 500 ms apart.
    Returns the uncompressed size of zipped's batches (the same batches built without lz4)."""
    with embedlog.open(logdir) as log:
        log.create_topic("plain", 2, config={"segment.bytes": 65536, "retention.bytes": 1_000_000})
        p = log.partition("plain", 0)
        for i in range(120):
            p.append_records(values(i), timestamps=[1_700_000_000_000 + i * 1000] * 5)
        z = log.create_topic("zipped", 1, config={"retention.ms": 3_600_000}).partition(0)
        raw = 0
        for i in range(40):
            ts = [1_700_000_000_000 + i * 500] * 5
            z.append_records(values(i), timestamps=ts, compression=3)
            raw += len(build_batch(values(i), timestamps=ts))
    return raw


def test_du_sizes_records_ratio_and_rate_from_the_files(logdir, two_codecs):
    r = run("du", "--partitions", "--json", dir=logdir)
    assert r.code == 0 and r.err == "", r
    doc = r.json
    topics = {t["topic"]: t for t in doc["topics"]}
    assert list(topics) == ["plain", "zipped"]
    plain, zipped = topics["plain"], topics["zipped"]
    # bytes: every file of the partition folders; log bytes: the segments
    assert plain["bytes"] == folder_bytes(logdir, "plain", 2)
    assert zipped["bytes"] == folder_bytes(logdir, "zipped", 1)
    assert doc["bytes"] == plain["bytes"] + zipped["bytes"]
    plain_logs = logs_of(logdir, "plain", 0) + logs_of(logdir, "plain", 1)
    assert plain["log_bytes"] == sum(f.stat().st_size for f in plain_logs)
    assert plain["bytes"] == plain["log_bytes"] + plain["index_bytes"] + plain["other_bytes"]
    assert plain["segments"] == len(plain_logs) and len(logs_of(logdir, "plain", 0)) >= 3
    # records: log end - log start offset
    assert (plain["records"], zipped["records"]) == (600, 200)
    details = plain["partition_details"]
    assert [(d["log_start_offset"], d["log_end_offset"], d["records"]) for d in details] == [(0, 600, 600), (0, 0, 0)]
    # compression: exactly 1 uncompressed; lz4 against the same batches built uncompressed
    assert plain["compression_ratio"] == 1.0 and plain["ratio_sampled"] is False
    zipped_log = logs_of(logdir, "zipped", 0)[0].stat().st_size
    assert zipped["compression_ratio"] == round(zipped_log / two_codecs, 4) < 0.25
    assert zipped["sampled_bytes"] == zipped_log and zipped["sampled_uncompressed_bytes"] == two_codecs
    assert details[1]["compression_ratio"] is None
    # rate: the bytes of the newest two segments after their first batch ÷ the time they span
    older, newest = (batches_of(f) for f in logs_of(logdir, "plain", 0)[-2:])
    span_ms = newest[-1][2] - older[0][2]
    written = sum(b[1] for b in older[1:] + newest)
    assert details[0]["rate_bytes_per_second"] == round(written * 1000 / span_ms, 3)
    assert plain["rate_bytes_per_second"] == details[0]["rate_bytes_per_second"]      # partition 1: no data
    assert details[1]["rate_bytes_per_second"] is None
    zb = batches_of(logs_of(logdir, "zipped", 0)[0])
    assert zipped["rate_bytes_per_second"] == round(sum(b[1] for b in zb[1:]) * 1000 / (zb[-1][2] - zb[0][2]), 3)
    # retention: the topic's config, and the time until retention.bytes × partitions
    assert (plain["retention_bytes"], plain["retention_ms"]) == (1_000_000, 604_800_000)
    assert (zipped["retention_bytes"], zipped["retention_ms"]) == (-1, 3_600_000)
    left = 1_000_000 * 2 - plain["log_bytes"]
    assert left > 0
    assert plain["seconds_to_retention_bytes"] == pytest.approx(left / plain["rate_bytes_per_second"], rel=1e-6)
    assert zipped["time_to_retention_bytes"] == "unlimited"


def test_du_table(logdir, two_codecs):
    r = call("du", "--partitions", dir=logdir)
    assert r.code == 0, r
    topic_table, partition_table = r.out.split("\n\n")
    from clirun import parse_table
    rows = parse_table(topic_table)
    assert rows[0] == ["TOPIC", "PARTITIONS", "SIZE", "SEGMENTS", "RECORDS", "RATIO", "RATE", "RETENTION.BYTES",
                       "RETENTION.MS", "TIME-TO-RETENTION.BYTES"]
    plain, zipped = rows[1], rows[2]
    assert plain[0] == "plain" and plain[4] == "600" and plain[5] == "1.00" and plain[7] == "976.6 KiB"
    assert zipped[0] == "zipped" and zipped[4] == "200" and float(zipped[5]) < 0.25
    assert (zipped[8], zipped[9]) == ("1h", "unlimited") and plain[8] == "7d"
    prow = parse_table(partition_table)
    assert [row[0] for row in prow[1:]] == ["plain-0", "plain-1", "zipped-0"]
    assert prow[2][5:8] == ["0", "n/a", "n/a"]               # an empty partition: no ratio, no rate


def test_du_samples_large_partitions(logdir, two_codecs):
    doc = call("du", "plain", "zipped", "--sample-bytes", "4KiB", "--json", dir=logdir).json
    plain, zipped = doc["topics"]
    # plain: 2 partitions share 4 KiB, so each reads a window of about 2 KiB (whole batches)
    assert plain["ratio_sampled"] is True and plain["compression_ratio"] == 1.0
    biggest = max(b[1] for f in logs_of(logdir, "plain", 0) for b in batches_of(f))
    assert 0 < plain["sampled_bytes"] <= 2048 + biggest
    assert zipped["ratio_sampled"] is True and zipped["sampled_bytes"] < logs_of(logdir, "zipped", 0)[0].stat().st_size
    exact = call("du", "zipped", "--json", dir=logdir).json["topics"][0]["compression_ratio"]
    assert zipped["compression_ratio"] == pytest.approx(exact, rel=0.1)        # similar batches throughout
    assert "(sampled)" in call("du", "zipped", "--sample-bytes", "4KiB", dir=logdir).out


def test_du_spreads_the_sample_over_the_partition(logdir):
    """2 MiB on disk of incompressible batches, then 2 MiB of batches lz4 shrinks to a
    quarter: windows taken only from the start (or the end) see one kind, an even spread
    sees both in proportion."""
    with embedlog.open(logdir) as log:
        p = log.create_topic("mixed", 1, config={"segment.bytes": 1 << 20}).partition(0)
        for i in range(32 + 128):
            value = os.urandom(64 << 10) if i < 32 else os.urandom(16 << 10) * 4
            p.append_records([value], compression=3, timestamps=[1_700_000_000_000 + i])
    exact = call("du", "--json", dir=logdir).json["topics"][0]
    assert exact["ratio_sampled"] is False and exact["compression_ratio"] == pytest.approx(0.4, abs=0.02)
    sampled = call("du", "--sample-bytes", "2MiB", "--json", dir=logdir).json["topics"][0]
    assert exact["segments"] >= 4 and sampled["ratio_sampled"] is True
    assert sampled["sampled_bytes"] <= (2 << 20) + (66 << 10)
    assert sampled["compression_ratio"] == pytest.approx(exact["compression_ratio"], abs=0.05)


def test_du_weighs_each_partitions_sample_by_its_size(logdir):
    """A large uncompressed partition read in windows and a small lz4 one read whole: the
    topic's ratio is that of its bytes (4 MiB at 1.0 + 256 KiB at 0.25), not of the samples."""
    with embedlog.open(logdir) as log:
        t = log.create_topic("uneven", 2)
        for i in range(64):
            t.partition(0).append_records([os.urandom(64 << 10)], timestamps=[1_700_000_000_000 + i])
        for i in range(16):
            t.partition(1).append_records([os.urandom(16 << 10) * 4], compression=3,
                                          timestamps=[1_700_000_000_000 + i])
    exact = call("du", "--json", dir=logdir).json["topics"][0]
    sampled = call("du", "--sample-bytes", "2MiB", "--partitions", "--json", dir=logdir).json["topics"][0]
    assert [p["ratio_sampled"] for p in sampled["partition_details"]] == [True, False]
    assert exact["compression_ratio"] == pytest.approx(0.85, abs=0.02)
    assert sampled["compression_ratio"] == pytest.approx(exact["compression_ratio"], abs=0.01)


def test_du_time_to_retention_bytes_states(logdir):
    with embedlog.open(logdir) as log:
        full = log.create_topic("full", 1, config={"retention.bytes": 1000}).partition(0)
        for i in range(3):
            full.append_records(values(i), timestamps=[1_700_000_000_000 + i * 2000] * 5)
        log.create_topic("idle", 1, config={"retention.bytes": 1 << 20}).partition(0).append_records(
            values(0), timestamps=[1_700_000_000_000] * 5)
    topics = {t["topic"]: t for t in call("du", "--json", dir=logdir).json["topics"]}
    assert topics["full"]["log_bytes"] > 1000 and topics["full"]["time_to_retention_bytes"] == "reached"
    assert topics["full"]["seconds_to_retention_bytes"] == 0
    assert topics["idle"]["rate_bytes_per_second"] is None           # one batch: too little data for a rate
    assert topics["idle"]["time_to_retention_bytes"] == "n/a"


def test_du_marks_internal_topics(logdir, orders):
    c = embedlog.Consumer({"bootstrap.servers": f"file://{logdir}", "group.id": "g",
                           "auto.offset.reset": "earliest"})
    c.subscribe(["orders"])
    msg = c.poll(5.0)
    c.commit(msg, asynchronous=False)
    c.close()
    topics = {t["topic"]: t for t in call("du", "--json", dir=logdir).json["topics"]}
    assert topics["__consumer_offsets"]["internal"] is True and topics["orders"]["internal"] is False
    assert topics["__consumer_offsets"]["records"] >= 1 and topics["__consumer_offsets"]["retention_ms"] == -1
    lines = call("du", dir=logdir).lines()
    assert lines[1].startswith("__consumer_offsets (internal)") and lines[2].startswith("orders ")
    assert [t["topic"] for t in call("du", "orders", "--json", dir=logdir).json["topics"]] == ["orders"]


def test_du_only_reads_a_torn_tail_and_the_checkpoints_log_start(logdir, two_codecs):
    seg = logdir / "zipped-0" / f"{SEG0}.log"
    with open(seg, "ab") as f:                     # half a batch: a writer that died mid-append
        f.write(build_batch([b"torn"] * 10)[:40])
    ck = logdir / "plain-0" / "partition.checkpoint"
    meta = json.loads(ck.read_text())
    ck.write_text(json.dumps({**meta, "log_start_offset": 100}) + "\n")   # as delete-records would leave it
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in logdir.rglob("*") if p.is_file()}
    topics = {t["topic"]: t for t in call("du", "--partitions", "--json", dir=logdir).json["topics"]}
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in logdir.rglob("*") if p.is_file()}
    assert before == after                         # nothing recovered, truncated or created
    assert topics["zipped"]["records"] == 200 and topics["zipped"]["log_bytes"] == seg.stat().st_size
    assert topics["zipped"]["unreadable_batches"] == 0
    assert topics["plain"]["partition_details"][0]["log_start_offset"] == 100
    assert topics["plain"]["records"] == 500


def test_du_after_retention_deleted_segments(logdir):
    with embedlog.open(logdir) as log:
        p = log.create_topic("kept", 1, config={"segment.bytes": 8192, "retention.bytes": 20000}).partition(0)
        for i in range(60):
            p.append_records([b"x" * 1000], timestamps=[1_700_000_000_000 + i * 1000])
        done = p.maintain(now=1_700_000_000_000 + 60_000)["retention"]
        start, end = p.log_start_offset, p.log_end_offset
    assert done["deleted_segments"] > 0 and start > 0
    d = call("du", "--partitions", "--json", dir=logdir).json["topics"][0]
    assert (d["partition_details"][0]["log_start_offset"], d["records"]) == (start, end - start)
    assert d["segments"] == len(logs_of(logdir, "kept", 0)) and d["bytes"] == folder_bytes(logdir, "kept", 1)
    # retention keeps up to one segment above retention.bytes (what plan's "open segments" counts)
    assert 20000 <= d["log_bytes"] < 20000 + 8192 + 1100
    assert (d["time_to_retention_bytes"], d["seconds_to_retention_bytes"]) == ("reached", 0)


def test_du_errors(tmp_path, logdir):
    assert_error(call("du", dir=tmp_path / "missing"), 1, "does not exist")
    (tmp_path / "plain").mkdir()
    assert_error(call("du", dir=tmp_path / "plain"), 1, "not an embedlog log directory")
    assert_error(run("du"), 2, "no log directory")
    assert_error(call("du", "nope", dir=logdir), 1, "'nope'", "does not exist")
    assert_error(call("du", "--sample-bytes", "lots", dir=logdir), 2, "'--sample-bytes'", "'lots'")
    r = call("du", dir=logdir)                     # a log without topics: nothing to show
    assert r.code == 0 and r.out == "" and call("du", "--json", dir=logdir).json["topics"] == []


def test_plan_and_du_have_help():
    for cmd in ("plan", "du"):
        r = call(cmd, "--help")
        assert r.code == 0 and r.out.startswith(f"Usage: embedlog {cmd}"), r
    assert "compressed size ÷ uncompressed" in call("plan", "--help").out.lower()
