"""`embedlog serve` as a user runs it: the bootstrap line, Ctrl-C / SIGTERM stop it cleanly
(answered, files closed: the partitions are marked clean), bad flags give one Error line."""
import re
import signal
import subprocess
import sys

import pytest

import embedlog

ck = pytest.importorskip("confluent_kafka")


def _start(path):
    proc = subprocess.Popen([sys.executable, "-m", "embedlog", "serve", "--dir", str(path), "--listen", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"bootstrap\.servers=(\S+?)\)", line)
    assert m, line
    return proc, m.group(1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(tmp_path, sig):
    path = tmp_path / "d"
    proc, bs = _start(path)
    try:
        p = ck.Producer({"bootstrap.servers": bs, "log_level": 3, "acks": "all"})
        for i in range(100):
            p.produce("sig", value=b"%d" % i)
        assert p.flush(20) == 0
        proc.send_signal(sig)
        rc = proc.wait(20)
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, rest
    assert "stopped after" in rest and "Traceback" not in rest
    with embedlog.open(path) as log:
        assert log.partition("sig", 0).high_watermark == 100
        from embedlog.storage._state import read_checkpoint
        assert read_checkpoint(log.partition("sig", 0).path).get("clean") is True


def test_serve_bad_flags(tmp_path):
    r = subprocess.run([sys.executable, "-m", "embedlog", "serve", "--dir", str(tmp_path), "--listen", "x:y"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "port of 'x:y' is not a number" in r.stderr
    busy, bs = _start(tmp_path / "a")
    try:
        r = subprocess.run([sys.executable, "-m", "embedlog", "serve", "--dir", str(tmp_path / "b"), "--listen", bs],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and r.stderr.startswith("Error: cannot listen on") and "Traceback" not in r.stderr
    finally:
        busy.terminate()
        busy.wait(20)
    (tmp_path / "notalog").mkdir()
    (tmp_path / "notalog" / "x.txt").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "embedlog", "serve", "--dir", str(tmp_path / "notalog")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.startswith("Error:"), r.stderr
    assert (tmp_path / "notalog" / "x.txt").read_text() == "mine"
