"""RecordBatch v2 byte for byte: vectors from vectors.json and an independent decoder
(kafka-python 3.0.12's record module, a test-only dependency)."""
import random

import pytest
from kafka.record.default_records import DefaultRecordBatch

import embedlog
from embedlog.storage import _records as R
from embedlog.storage._errors import CorruptRecordError


def _inputs(batch):
    recs = batch["inputs"]["records"]
    hx = lambda v: None if v is None else bytes.fromhex(v)  # noqa: E731
    return dict(
        values=[hx(r["value_hex"]) for r in recs],
        keys=[hx(r["key_hex"]) for r in recs],
        timestamps=[r["timestamp"] for r in recs],
        headers=[[(k, hx(v)) for k, v in r["headers"]] for r in recs],
    )


def test_every_vector_batch_decodes_to_its_inputs(vectors):
    for name, b in vectors["record_batches_generated"]["batches"].items():
        raw = bytes.fromhex(b["hex"])
        h = R.parse_header(raw)
        for field, value in b["header"].items():
            assert getattr(h, field) == value, (name, field)
        recs = R.decode_records(raw)
        if name.startswith("G_"):
            continue  # control record: key/value are the marker, checked by its header
        want = _inputs(b)
        assert [r.key for r in recs] == want["keys"], name
        assert [r.value for r in recs] == want["values"], name
        assert [r.timestamp for r in recs] == want["timestamps"], name
        assert [list(r.headers) for r in recs] == want["headers"], name
        assert [r.offset for r in recs] == [h.base_offset + r["offset_delta"] for r in b["inputs"]["records"]]


def test_broker_rewrite_of_base_offset_keeps_crc(vectors):
    for name, b in vectors["record_batches_generated"]["batches"].items():
        if "hex_base_offset_1000_ple_minus1" not in b:
            continue
        raw = bytes.fromhex(b["hex_base_offset_1000_ple_minus1"])
        h = R.parse_header(raw)
        assert h.base_offset == 1000 and h.partition_leader_epoch == -1
        assert R.decode_records(raw)[0].offset == 1000


def test_batches_from_a_real_broker_decode(vectors):
    for b in vectors["record_batches_from_real_broker"]["batches"]:
        raw = bytes.fromhex(b["hex"])
        recs = R.decode_records(raw)
        assert len(recs) == len(b["records"])
        for got, want in zip(recs, b["records"]):
            assert got.offset == want["offset"]
            assert got.timestamp == want["timestamp"]
            assert got.value == bytes.fromhex(want["value_hex"])
            assert got.key == (None if want["key_hex"] is None else bytes.fromhex(want["key_hex"]))


@pytest.mark.parametrize("name", ["A_single_none", "B_three_none", "D_idempotent_none"])
def test_encoder_is_byte_identical_to_kafka_python(vectors, name):
    b = vectors["record_batches_generated"]["batches"][name]
    hdr = b["header"]
    out = R.build_batch(**_inputs(b), partition_leader_epoch=0, producer_id=hdr["producer_id"],
                        producer_epoch=hdr["producer_epoch"], base_sequence=hdr["base_sequence"])
    assert out.hex() == b["hex"]


def test_lz4_frame_is_javas(vectors):
    out = R.build_batch([b"A" * 100] * 5, compression=3)
    assert out[61:68].hex() == vectors["lz4_frame"]["java_and_librdkafka_header_hex"]


def _random_records(rng, n):
    blob = lambda: None if rng.random() < 0.1 else rng.randbytes(rng.choice([0, 1, 5, 100, 300]))  # noqa: E731
    values = [blob() for _ in range(n)]
    keys = [blob() for _ in range(n)]
    base = 1_700_000_000_000
    timestamps = [base + rng.randint(-1000, 1000) for _ in range(n)]
    headers = [[(f"h{j}", blob()) for j in range(rng.choice([0, 0, 1, 3]))] for _ in range(n)]
    return values, keys, timestamps, headers


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_kafka_python_decodes_what_we_write(codec):
    rng = random.Random(codec)
    for trial in range(20):
        n = rng.randint(1, 60)
        values, keys, timestamps, headers = _random_records(rng, n)
        raw = R.build_batch(values, keys, timestamps, headers, compression=codec,
                            producer_id=7, producer_epoch=1, base_sequence=100, base_offset=42)
        kb = DefaultRecordBatch(bytearray(raw))
        assert kb.validate_crc()
        assert kb.base_offset == 42 and kb.producer_id == 7 and kb.base_sequence == 100
        assert kb.compression_type == codec
        got = list(kb)
        assert len(got) == n
        for i, r in enumerate(got):
            assert r.offset == 42 + i
            assert r.timestamp == timestamps[i]
            assert r.key == keys[i] and r.value == values[i]
            assert [(k, v) for k, v in r.headers] == headers[i]
        ours = R.decode_records(raw)
        assert [(r.key, r.value, r.timestamp, list(r.headers)) for r in ours] == \
               list(zip(keys, values, timestamps, headers))


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_we_decode_what_kafka_python_writes(codec):
    """kafka-python writes snappy xerial-framed as Java does, gzip at level 9, lz4 with
    python-lz4's frame flags: all must read back."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    rng = random.Random(100 + codec)
    values, keys, timestamps, headers = _random_records(rng, 40)
    values = [b"compressible " * 20 if v is None else v + b"z" * 200 for v in values]
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 22)
    for i in range(40):
        assert b.append(i, timestamp=timestamps[i], key=keys[i], value=values[i], headers=headers[i]) is not None
    raw = bytes(b.build())
    h = R.parse_header(raw)
    assert h.compression == codec                  # compressible values: kafka-python kept the codec
    recs = R.decode_records(raw)
    assert [(r.key, r.value, r.timestamp, list(r.headers)) for r in recs] == \
           list(zip(keys, values, timestamps, headers))


def test_every_codec_round_trips_where_available():
    values = [b"x" * 200, None, b""]
    for codec in (0, 1, 2, 3, 4):
        try:
            raw = R.build_batch(values, keys=[b"a", b"b", None], compression=codec)
        except embedlog.ConfigError as e:
            assert "pip install" in str(e)       # optional codec missing: says how to get it
            continue
        assert R.parse_header(raw).compression == codec
        assert [r.value for r in R.decode_records(raw)] == values


def test_single_bit_flips_are_caught_by_the_crc():
    raw = R.build_batch([b"value"] * 3, keys=[b"k"] * 3)
    for i in range(21, len(raw)):           # bytes covered by the CRC
        for bit in (0, 7):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            with pytest.raises(CorruptRecordError):
                R.parse_header(bytes(bad))
    bad = bytearray(raw)
    bad[16] = 1                               # magic
    with pytest.raises(CorruptRecordError, match="magic"):
        R.parse_header(bytes(bad))
    with pytest.raises(CorruptRecordError, match="truncated"):
        R.parse_header(raw[:-1])


def test_malformed_records_section_is_an_error_not_garbage():
    raw = bytearray(R.build_batch([b"value"], keys=[b"k"]))
    raw[61] = 0x7F                               # record length varint now overruns
    from embedlog.storage import _hotpath as hp
    raw[17:21] = hp.crc32c(bytes(raw[21:])).to_bytes(4, "big")
    h = R.parse_header(bytes(raw))
    with pytest.raises(CorruptRecordError, match="malformed"):
        R.decode_records(bytes(raw), 0, h)


def test_varints_match_vectors(vectors):
    for v in vectors["zigzag_varint"]["vectors"]:
        value, enc = v["value"], bytes.fromhex(v["zigzag_varint_hex"])
        assert R.encode_varint(value) == enc
        assert R.decode_varint(enc, 0) == (value, len(enc))


def test_bad_input_types_are_clear_errors():
    with pytest.raises(TypeError, match="record 1: value must be bytes"):
        R.build_batch([b"ok", "text"])
    with pytest.raises(TypeError, match="key must be bytes"):
        R.build_batch([b"ok"], keys=[123])
    with pytest.raises(ValueError, match="at least one record"):
        R.build_batch([])
    with pytest.raises(ValueError, match="2 keys for 1 values"):
        R.build_batch([b"v"], keys=[b"a", b"b"])
    with pytest.raises(TypeError, match="header key must be str"):
        R.build_batch([b"v"], headers=[[(1, b"x")]])


def test_wide_memoryviews_are_encoded_by_their_bytes():
    from array import array
    wide = memoryview(array("i", [1, 2, 3]))              # len() == 3 items, 12 bytes
    raw = R.build_batch([wide, b"plain"], keys=[b"k", memoryview(b"mv")])
    recs = R.decode_records(raw)
    assert recs[0].value == array("i", [1, 2, 3]).tobytes() and recs[1].value == b"plain"
    assert recs[1].key == b"mv"


@pytest.mark.parametrize("seed", range(6))
def test_fast_decode_path_matches_kafka_python(seed):
    """No null keys or values: keys and values are cut by one struct format written in C
    (including empty ones, and gaps of multi-byte varints)."""
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    values = [rng.randbytes(rng.choice([0, 1, 127, 128, 300, 20000])) for _ in range(n)]
    keys = [rng.randbytes(rng.choice([0, 16, 200])) for _ in range(n)]
    headers = [[("h", b"x")] if rng.random() < 0.2 else [] for _ in range(n)]
    raw = R.build_batch(values, keys, headers=headers, compression=rng.choice([0, 3]))
    ours = R.decode_records(raw)
    theirs = list(DefaultRecordBatch(bytearray(raw)))
    assert [(r.key, r.value) for r in ours] == [(r.key, r.value) for r in theirs] == list(zip(keys, values))
    assert [list(r.headers) for r in ours] == headers
