"""kill -9 of a writer at random moments, then promotion of its mirror (issue #7): every
record acknowledged with acks=all (min.insync.replicas=2) is in the promoted mirror, at
its offset, and the promoted log is a valid gap-free prefix of what was written.

A forked child appends one-record batches with sync=True to a topic with replication
factor 2 and reports each acknowledged offset through a pipe. The parent kills it after
a random delay, copies the mirror directory as it is at that moment, promotes the copy
(without fencing the real primary, which the next round goes on writing to) and checks
it. One primary and one mirror across all rounds.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import time

import embedlog
from embedlog.storage._failover import promote

ACK = struct.Struct("<q")


def _writer(primary, gen, wfd):
    try:
        log = embedlog.Log(primary, create=False, retention_check_interval_ms=0)
        p = log.topic("t").partition(0)
        i = 0
        while True:
            r = p.append_records([b"g%d-%d" % (gen, i)], sync=i % 3 != 2)
            if i % 3 != 2:
                os.write(wfd, ACK.pack(r.base_offset) + ACK.pack(i))
            i += 1
    except BaseException:         # noqa: BLE001
        import traceback
        traceback.print_exc()
        os._exit(1)


def test_kill9_then_promote_keeps_every_acks_all_record(tmp_path, crash_iterations):
    rng = random.Random(int(os.environ.get("EMBEDLOG_SEED", "5")))
    primary, mirror = str(tmp_path / "p"), str(tmp_path / "m")
    with embedlog.Log(primary, retention_check_interval_ms=0) as log:
        log.add_replica(mirror)
        log.create_topic("t", 1, {"segment.bytes": 4000, "min.insync.replicas": 2}, replication_factor=2)
    acked: dict[int, bytes] = {}
    rounds = crash_iterations or 25
    for gen in range(rounds):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            _writer(primary, gen, wfd)
        os.close(wfd)
        time.sleep(rng.uniform(0.005, 0.08))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        copy = str(tmp_path / f"promoted-{gen}")
        shutil.copytree(mirror, copy)     # the mirror as the dead writer left it
        data = b""
        while True:
            chunk = os.read(rfd, 1 << 16)
            if not chunk:
                break
            data += chunk
        os.close(rfd)
        for k in range(0, len(data) - len(data) % 16, 16):
            off, i = ACK.unpack_from(data, k)[0], ACK.unpack_from(data, k + 8)[0]
            acked[off] = b"g%d-%d" % (gen, i)
        promote(copy, fence=False)
        with embedlog.Log(copy, create=False, retention_check_interval_ms=0) as new:
            part = new.topic("t").partition(0)
            recs = part.read(0, max_bytes=1 << 30)
            offsets = [r.offset for r in recs]
            assert offsets == list(range(len(recs))), "the promoted log must be a gap-free prefix"
            by_offset = {r.offset: r.value for r in recs}
            for off, value in acked.items():
                assert by_offset.get(off) == value, f"acks=all record at {off} missing after promotion"
        shutil.rmtree(copy)
    assert len(acked) > 20
