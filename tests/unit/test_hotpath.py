"""The C hot path against known-good vectors and slow reference implementations."""
import os
import random

import pytest

from embedlog.storage import _hotpath as hp
from embedlog.storage._partitioner import StickyPartitioner, partition_for_key, partitions_for_keys


def crc32c_reference(data: bytes) -> int:
    """Bit-at-a-time CRC-32C (Castagnoli, reflected 0x82F63B78): slow and obviously right."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_vectors(vectors):
    for v in vectors["crc32c"]["vectors"]:
        data = bytes.fromhex(v["input_hex"])
        assert hp.crc32c(data) == v["crc32c_u32"], v
        assert hp.crc32c_software(data) == v["crc32c_u32"], v


def test_crc32c_check_value():
    assert hp.crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 63, 255, 256, 257, 767, 768, 769, 8191,
                                    24575, 24576, 24577, 100_003])
def test_crc32c_hardware_and_software_agree(length):
    rng = random.Random(length)
    data = rng.randbytes(length + 3)
    for start in (0, 1, 3):  # unaligned starts exercise the byte-at-a-time prologue
        chunk = data[start:start + length]
        assert hp.crc32c(chunk) == hp.crc32c_software(chunk)
    small = data[:min(length, 300)]
    assert hp.crc32c(small) == crc32c_reference(small)


def test_crc32c_is_incremental():
    data = os.urandom(50_000)
    for cut in (0, 1, 4096, 30_000, 50_000):
        assert hp.crc32c(data[cut:], hp.crc32c(data[:cut])) == hp.crc32c(data)


def test_hardware_path_is_used_when_the_cpu_has_it():
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " sse4_2" in flags or " crc32" in flags:
        assert hp.crc32c_hardware()


def test_murmur2_vectors(vectors):
    for v in vectors["murmur2"]["vectors"]:
        assert hp.murmur2(bytes.fromhex(v["input_hex"])) == v["murmur2_i32"], v


def test_partition_for_key_vectors(vectors):
    rows = vectors["partition_for_key"]
    assert len(rows) >= 18
    for v in rows:
        key = bytes.fromhex(v["key_hex"])
        assert partition_for_key(key, v["num_partitions"]) == v["partition"], v
        assert partitions_for_keys([key], v["num_partitions"]) == [v["partition"]]


def test_partitions_for_keys_matches_single_calls_and_marks_null_keys():
    keys = [os.urandom(i % 40) for i in range(500)] + [None, b"", None]
    got = partitions_for_keys(keys, 7)
    assert got[-3] == -1 and got[-1] == -1
    assert got[:-3] == [partition_for_key(k, 7) for k in keys[:-3]]
    assert got[-2] == partition_for_key(b"", 7)


def test_sticky_partitioner_sticks_then_moves():
    s = StickyPartitioner(random.Random(1))
    first = s.partition("t", 5)
    assert all(s.partition("t", 5) == first for _ in range(10))
    seen = set()
    for _ in range(50):
        before = s.partition("t", 5)
        s.batch_complete("t", 5)
        after = s.partition("t", 5)
        assert after != before
        seen.add(after)
    assert seen == set(range(5))
    s.batch_complete("one", 1)
    assert s.partition("one", 1) == 0


def test_pwrite_pread_roundtrip_and_errors(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        hp.pwrite_all(fd, b"hello world", 0, path)
        hp.pwrite_all(fd, b"W", 6, path)
        hp.fdatasync(fd, path)
        assert os.pread(fd, 100, 0) == b"hello World"
        hp.ftruncate(fd, 5, path)
        assert os.path.getsize(path) == 5
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        hp.pwrite_all(fd, b"x", 0, path)  # closed descriptor: EBADF, naming the file
    assert str(path) in str(e.value)


def test_lock_is_exclusive_between_descriptors(tmp_path):
    path = tmp_path / "lockfile"
    a = os.open(path, os.O_RDWR | os.O_CREAT)
    b = os.open(path, os.O_RDWR)
    try:
        assert hp.lock(a, 0, 1, True, 0.0)
        assert not hp.lock(b, 0, 1, True, 0.05)      # OFD locks conflict even in one process
        assert hp.lock(b, 1, 1, True, 0.0)            # another byte is free
        hp.unlock(a, 0, 1)
        assert hp.lock(b, 0, 1, True, 0.0)
    finally:
        os.close(a)
        os.close(b)
