"""pytest-benchmark micro benchmarks of embedlog's hot path.

Not part of the test suite (pyproject's testpaths is ["tests"]); run them with

    python -m pytest bench --benchmark-only
    python -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-json=out.json

Each benchmark checks its result once, so a broken build fails here instead of
producing a fast number. benchmark.extra_info carries the sizes and the derived rate
(MB = 10^6 bytes; computed from the median time) so the JSON output is self-describing.
"""
from __future__ import annotations

import random

import pytest

import embedlog
from embedlog.storage import _hotpath as hp
from embedlog.storage._records import decode_columns

pytest.importorskip("pytest_benchmark")

N = 1000
MB = 1e6


@pytest.fixture(scope="module")
def records():
    rng = random.Random(42)
    keys = [rng.randbytes(16) for _ in range(N)]
    values = [rng.randbytes(100) for _ in range(N)]
    return keys, values


@pytest.fixture(scope="module")
def batch(records):
    keys, values = records
    return embedlog.build_batch(values, keys=keys)


@pytest.fixture
def partition(tmp_path):
    log = embedlog.open(tmp_path / "log")
    log.create_topic("t", partitions=1)
    yield log.partition("t", 0)
    log.close()


def _rates(benchmark, nbytes=None, records=None):
    """Sizes into extra_info, plus MB/s and records/s from the median (if timings exist)."""
    info = benchmark.extra_info
    if nbytes is not None:
        info["bytes"] = nbytes
    if records is not None:
        info["records"] = records
    stats = getattr(benchmark, "stats", None)
    median = getattr(getattr(stats, "stats", None), "median", None)
    if median:
        if nbytes is not None:
            info["MB/s"] = round(nbytes / median / MB, 1)
        if records is not None:
            info["records/s"] = round(records / median)


# ------------------------------------------------------------------ crc32c-1MiB

@pytest.fixture(scope="module")
def mib():
    return random.Random(42).randbytes(1 << 20)


@pytest.mark.benchmark(group="crc32c-1MiB")
def test_crc32c_1mib(benchmark, mib):
    benchmark.extra_info["path"] = "hardware" if hp.crc32c_hardware() else "software (no hw)"
    result = benchmark(hp.crc32c, mib)
    assert result == hp.crc32c_software(mib)
    _rates(benchmark, nbytes=len(mib))


@pytest.mark.benchmark(group="crc32c-1MiB")
def test_crc32c_software_1mib(benchmark, mib):
    benchmark.extra_info["path"] = "software"
    result = benchmark(hp.crc32c_software, mib)
    assert result == hp.crc32c(mib)
    _rates(benchmark, nbytes=len(mib))


# ------------------------------------------------------------------ murmur2-16B

@pytest.mark.benchmark(group="murmur2-16B")
def test_murmur2_16b(benchmark, records):
    key = records[0][0]
    assert hp.murmur2(b"21") == -973932308            # Kafka UtilsTest vector
    result = benchmark(hp.murmur2, key)
    assert isinstance(result, int)
    benchmark.extra_info["bytes"] = len(key)
    median = getattr(getattr(getattr(benchmark, "stats", None), "stats", None), "median", None)
    if median:
        benchmark.extra_info["calls/s"] = round(1 / median)


# ------------------------------------------------------------------ build_batch-1000

@pytest.mark.benchmark(group="build_batch-1000")
def test_build_batch_1000(benchmark, records):
    keys, values = records
    result = benchmark(embedlog.build_batch, values, keys=keys)
    h = embedlog.parse_header(result)
    assert h.records_count == N and h.size == len(result)
    _rates(benchmark, nbytes=sum(map(len, keys)) + sum(map(len, values)), records=N)
    benchmark.extra_info["batch_bytes"] = len(result)


# ------------------------------------------------------------------ append-1000

@pytest.mark.benchmark(group="append-1000")
def test_append_1000(benchmark, partition, batch, records):
    # A fixed number of rounds: every round adds ~126 kB to the log (200 rounds ~ 25 MB).
    benchmark.pedantic(partition.append, args=(batch,), rounds=200, iterations=1, warmup_rounds=5)
    leo = partition.log_end_offset          # 205 batches, or 1 with --benchmark-disable
    assert leo >= N and leo % N == 0
    keys, values = records
    _rates(benchmark, nbytes=sum(map(len, keys)) + sum(map(len, values)), records=N)
    benchmark.extra_info["batch_bytes"] = len(batch)


@pytest.mark.benchmark(group="append-1000")
def test_append_records_1000(benchmark, partition, records):
    """append_records = build_batch + append, the one-call path."""
    keys, values = records
    benchmark.pedantic(partition.append_records, args=(values,), kwargs={"keys": keys},
                       rounds=200, iterations=1, warmup_rounds=5)
    leo = partition.log_end_offset
    assert leo >= N and leo % N == 0
    assert partition.read(leo - N, max_records=1)[0].value == values[0]
    _rates(benchmark, nbytes=sum(map(len, keys)) + sum(map(len, values)), records=N)


# ------------------------------------------------------------------ read_columns-1000

@pytest.fixture
def one_batch_partition(partition, batch):
    partition.append(batch)
    return partition


@pytest.mark.benchmark(group="read_columns-1000")
def test_read_columns_1000(benchmark, one_batch_partition, records):
    keys, values = records
    cols = benchmark(one_batch_partition.read_columns, 0)
    assert cols.offsets == list(range(N)) and cols.keys == keys and cols.values == values
    _rates(benchmark, nbytes=sum(map(len, keys)) + sum(map(len, values)), records=N)


@pytest.mark.benchmark(group="read_columns-1000")
def test_read_records_1000(benchmark, one_batch_partition, records):
    """Partition.read(): the same batch as Record namedtuples."""
    keys, values = records
    recs = benchmark(one_batch_partition.read, 0)
    assert [r.offset for r in recs] == list(range(N)) and [r.value for r in recs] == values
    _rates(benchmark, nbytes=sum(map(len, keys)) + sum(map(len, values)), records=N)


@pytest.mark.benchmark(group="read_columns-1000")
def test_decode_columns_1000(benchmark, batch, records):
    """The decode step alone, on a batch already in memory (no pread, no CRC)."""
    keys, values = records
    h = embedlog.parse_header(batch)
    cols = benchmark(decode_columns, batch, 0, h)
    assert cols.keys == keys and cols.values == values
    _rates(benchmark, nbytes=sum(map(len, keys)) + sum(map(len, values)), records=N)


# ------------------------------------------------------------------ parse_header

@pytest.mark.benchmark(group="parse_header")
def test_parse_header_crc(benchmark, batch):
    """Header of a 1000-record batch, CRC-32C of its ~126 kB verified."""
    h = benchmark(embedlog.parse_header, batch)
    assert h.records_count == N
    _rates(benchmark, nbytes=len(batch))


@pytest.mark.benchmark(group="parse_header")
def test_parse_header_no_crc(benchmark, batch):
    """Header fields only (verify_crc=False): the fixed cost of the call."""
    h = benchmark(embedlog.parse_header, batch, verify_crc=False)
    assert h.records_count == N
    benchmark.extra_info["bytes"] = 61
