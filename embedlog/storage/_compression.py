"""Codecs for the records section of a batch, with Kafka's ids (FORMAT.md §3.3).

lz4 is written exactly as Kafka's Java client and librdkafka write it: an LZ4 frame
with independent 64 KiB blocks, no checksums and no content size (header bytes
04 22 4d 18 60 40 82); any valid LZ4 frame is read. gzip is a standard gzip member
(mtime 0, so the bytes are deterministic). snappy and zstd use an optional library,
loaded on first use; without it, using that codec is a clear error.
"""
from __future__ import annotations

import gzip
import zlib

import lz4.frame

from ._errors import ConfigError, CorruptRecordError

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
CODEC_IDS = {"none": NONE, "uncompressed": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

_XERIAL_MAGIC = b"\x82SNAPPY\x00"


def codec_id(name_or_id) -> int:
    if isinstance(name_or_id, int) and name_or_id in CODEC_NAMES:
        return name_or_id
    try:
        return CODEC_IDS[str(name_or_id).lower()]
    except KeyError:
        raise ConfigError(
            f"unknown compression type {name_or_id!r}; use one of none, gzip, snappy, lz4, zstd"
        ) from None


def _snappy():
    try:
        import cramjam
        return cramjam.snappy.compress_raw, cramjam.snappy.decompress_raw
    except ImportError:
        raise ConfigError("compression.type snappy needs the cramjam package: pip install cramjam") from None


def _zstd():
    try:
        import cramjam
        return cramjam.zstd.compress, cramjam.zstd.decompress
    except ImportError:
        raise ConfigError("compression.type zstd needs the cramjam package: pip install cramjam") from None


def compress(codec: int, data) -> bytes:
    if codec == LZ4:
        return lz4.frame.compress(
            data, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
            content_checksum=False, store_size=False)
    if codec == GZIP:
        return gzip.compress(bytes(data), compresslevel=6, mtime=0)
    if codec == SNAPPY:
        return bytes(_snappy()[0](bytes(data)))
    if codec == ZSTD:
        return bytes(_zstd()[0](bytes(data)))
    if codec == NONE:
        return bytes(data)
    raise ConfigError(f"unknown compression codec id {codec}")


def _snappy_decompress(data: bytes) -> bytes:
    raw = _snappy()[1]
    if data[:8] != _XERIAL_MAGIC:
        return bytes(raw(data))
    # xerial framing (Java): magic, 2 x int32 versions, then (int32 BE length, raw block)*.
    # The versions are ignored: some writers store them little-endian.
    out, pos = [], 16
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated xerial snappy chunk header")
        n = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        if pos + n > len(data):
            raise ValueError("truncated xerial snappy chunk")
        out.append(bytes(raw(data[pos:pos + n])))
        pos += n
    return b"".join(out)


def decompress(codec: int, data, *, path=None, position=None) -> bytes:
    try:
        if codec == LZ4:
            return lz4.frame.decompress(data)
        if codec == GZIP:
            data = bytes(data)
            if data[:2] == b"\x1f\x8b":
                return gzip.decompress(data)   # every member, as Java's GZIPInputStream reads
            return zlib.decompress(data)
        if codec == SNAPPY:
            return _snappy_decompress(bytes(data))
        if codec == ZSTD:
            return bytes(_zstd()[1](bytes(data)))
    except ConfigError:
        raise
    except Exception as e:
        where = f" in {path} at position {position}" if path is not None else ""
        raise CorruptRecordError(
            f"cannot decompress {CODEC_NAMES.get(codec, codec)} records section{where}: {e}",
            path=path, position=position) from e
    where = f" in {path} at position {position}" if path is not None else ""
    raise CorruptRecordError(f"unknown compression codec id {codec}{where}", path=path, position=position)
