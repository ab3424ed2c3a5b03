"""Fuzzing the batch decoder (issue #8): hypothesis over arbitrary bytes and over mutated
valid batches (_fuzz.py) into every decoder entry point: parse_header, peek_header,
iter_batches, decode_columns / decode_records (the C records parser, header decoding),
the decompressors of every codec, the C scan el_scan_fd through Segment.scan (and index
rebuilds and lookups on what it found), and a whole partition recovered and read from a
segment holding the bytes. Only CorruptRecordError (embedlog's errors, for the partition
target) may come out.

Each target runs in its own interpreter, so a crash in C is a failed test, not a dead
pytest. `tests/reliability/asan.sh` runs the same targets against the C extension built
with AddressSanitizer and UBSan (RELIABILITY.md has the result on this machine).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ._fuzz import TARGETS

FUZZ = os.path.join(os.path.dirname(__file__), "_fuzz.py")
DEFAULT = {"header": 1500, "records": 1500, "decompress": 1500, "scan": 800, "partition": 400}
SOAK = 25_000


def run_fuzz(target, examples, env=None, timeout=1800):
    return subprocess.run([sys.executable, FUZZ, target, str(examples)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _check(proc, target):
    assert proc.returncode == 0, (f"fuzz target {target} failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")
    assert f"{target}: " in proc.stdout and "examples ok" in proc.stdout
    print(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz(target):
    _check(run_fuzz(target, DEFAULT[target]), target)


@pytest.mark.soak
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_soak(target):
    _check(run_fuzz(target, SOAK if target != "partition" else SOAK // 5), target)


def test_the_harness_notices_a_planted_bug():
    """Not vacuous: a decompressor error left unwrapped (lz4's own exception type) fails
    the run with a falsifying example, and a crash is a non-zero, signalled exit."""
    proc = run_fuzz("decompress", 2000, env={"FUZZ_PLANT": "unwrapped"})
    assert proc.returncode == 1 and "decompress: FAILED" in proc.stderr, proc.stderr[-3000:]
    assert "Failing test case" in proc.stderr and "RuntimeError" in proc.stderr
    proc = run_fuzz("decompress", 2000, env={"FUZZ_PLANT": "segv"})
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr[-2000:])
