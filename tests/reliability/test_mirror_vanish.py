"""Vanished and replaced mirrors (issue #18): a mirror directory removed (`rm -rf`),
replaced by an empty directory, re-marked (its embedlog.json changed), or a mount whose
file system went away (tmpfs unmounted lazily) is detected on the next copy: the mirror
leaves the ISR, acks=all is refused with NOT_ENOUGH_REPLICAS below min.insync.replicas,
nothing is written to the vanished place, and only an explicit `replicas add` or
`replicas repair` rebuilds it.

The producer is another process (embedlog.Producer, acks=all, one record per flush so
"the next copy" is a well-defined record); the test drives it through stdin and reads
each delivery report back. `replicas add`/`repair`/`status` run as the real command.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import embedlog

WRITER = r"""
import json, os, sys
from embedlog import Producer
p = Producer({"bootstrap.servers": "file://" + sys.argv[1], "acks": "all", "retries": 0,
              "linger.ms": 0, "log.retention.check.interval.ms": 0})
i = 0
for line in sys.stdin:
    if line.strip() == "q":
        break
    out = []
    for _ in range(int(line)):
        got = []
        p.produce("t", value=b"v%d" % i, on_delivery=lambda err, msg: got.append(
            [err is None, msg.offset(), None if err is None else err.name()]))
        p.flush(30)
        out.append(got[0] if got else [False, -1, "NO_REPORT"])
        i += 1
    os.write(1, (json.dumps(out) + "\n").encode())
p.close()
"""

VANISH_ERRORS = {"NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND"}


class Writer:
    def __init__(self, primary):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, primary], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def write(self, n):
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        return json.loads(line)

    def close(self):
        try:
            self.proc.stdin.write("q\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        assert self.proc.wait(60) == 0, self.proc.stderr.read()


def cli(*args, primary=None):
    env = {k: v for k, v in os.environ.items() if k != "EMBEDLOG_DIR"}
    if primary:
        env["EMBEDLOG_DIR"] = primary
    return subprocess.run([sys.executable, "-m", "embedlog", *args], check=False, capture_output=True,
                          text=True, env=env, timeout=120)


def snapshot(root):
    """Every path under root with its size and SHA-256 (None: root does not exist)."""
    if not os.path.lexists(root):
        return None
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), root) + "/"] = None
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def cluster(tmp_path):
    """A primary and two mirror directories, topic t at replication factor 3 and
    min.insync.replicas=2. Mirrors are tmp_path/m1, m2 (made by the test if given)."""
    def make(pre=None):
        primary, m1, m2 = (str(tmp_path / n) for n in ("p", "m1", "m2"))
        if pre:
            pre(m1, m2)
        with embedlog.Log(primary, retention_check_interval_ms=0) as log:
            log.add_replica(m1)
            log.add_replica(m2)
            log.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=3)
        return primary, m1, m2
    return make


def status(primary):
    r = cli("replicas", "status", "--json", primary=primary)
    assert r.returncode == 0, r.stderr
    return {row["replica"]: row for row in json.loads(r.stdout)["partitions"]}


def seg(path):
    with open(os.path.join(path, "t-0", "00000000000000000000.log"), "rb") as f:
        return f.read()


def check_refused_and_untouched(w, primary, places):
    """The mirrors vanished: every acks=all send is refused with NOT_ENOUGH_REPLICAS (the
    first may be the AFTER_APPEND form: its copy found the loss), both mirrors are out
    of the ISR and marked vanished, and nothing is written to the vanished places."""
    before = {p: snapshot(p) for p in places}
    res = w.write(4)
    assert all(not ok for ok, _, _ in res), res
    assert {e for _, _, e in res} <= VANISH_ERRORS and res[-1][2] == "NOT_ENOUGH_REPLICAS", res
    rows = status(primary)
    assert [(rows[i]["in_sync"], rows[i]["vanished"]) for i in (1, 2)] == [(False, True)] * 2, rows
    assert {p: snapshot(p) for p in places} == before
    assert "vanished" in cli("replicas", "status", primary=primary).stdout


def check_rebuilt(w, primary, m1):
    """After the explicit rebuild: acks=all works again and the mirror is a full copy."""
    res = w.write(3)
    assert all(ok for ok, _, _ in res), res
    assert status(primary)[1]["in_sync"] is True
    assert seg(m1) == seg(primary)


def test_rm_rf_both_mirrors_while_the_producer_runs(cluster):
    """The issue's reproduction: both mirrors removed during a run of sends. Once a send is
    refused, every later one is (the mirrors never come back by themselves), and the
    removed directories are not recreated."""
    primary, m1, m2 = cluster()
    w = Writer(primary)
    try:
        assert all(ok for ok, _, _ in w.write(10))
        def remove_mid_run():          # once the run is under way, both mirrors go
            with embedlog.Log(primary, create=False, retention_check_interval_ms=0) as log:
                part = log.topic("t").partition(0)
                deadline = time.monotonic() + 60
                while part.log_end_offset < 60 and time.monotonic() < deadline:
                    time.sleep(0.001)
            shutil.rmtree(m1)
            shutil.rmtree(m2)
        t = threading.Thread(target=remove_mid_run)
        t.start()
        res = w.write(300)
        t.join()
        oks = [ok for ok, _, _ in res]
        assert False in oks, "the removal was never noticed"
        first_fail = oks.index(False)
        assert not any(oks[first_fail:]), res
        assert {e for _, _, e in res[first_fail:]} <= VANISH_ERRORS, res
        check_refused_and_untouched(w, primary, [m1, m2])
        assert not os.path.exists(m1) and not os.path.exists(m2)
        # A new handle (another process) sees it too: refused before writing.
        script = ("import embedlog,sys\n"
                  "log = embedlog.Log(sys.argv[1], retention_check_interval_ms=0)\n"
                  "try:\n    log.topic('t').partition(0).append_records([b'x'], sync=True)\n"
                  "except embedlog.NotEnoughReplicasError as e:\n    print('refused', e)\n")
        r = subprocess.run([sys.executable, "-c", script, primary], check=False, capture_output=True, text=True,
                           timeout=60)
        assert r.stdout.startswith("refused") and "vanished" in r.stdout, r
        assert not os.path.exists(m1)
        r = cli("replicas", "add", m1, primary=primary)
        assert r.returncode == 0, r.stderr
        check_rebuilt(w, primary, m1)
        assert not os.path.exists(m2)           # only the one explicitly added is rebuilt
    finally:
        w.close()


def test_one_mirror_removed_leaves_the_isr_but_acks_all_goes_on(cluster):
    """min.insync.replicas=2 of 3: one mirror gone is out of the ISR at once, the other
    keeps acks=all going."""
    primary, m1, m2 = cluster()
    w = Writer(primary)
    try:
        assert all(ok for ok, _, _ in w.write(5))
        shutil.rmtree(m1)
        assert all(ok for ok, _, _ in w.write(5))
        rows = status(primary)
        assert (rows[1]["in_sync"], rows[1]["vanished"], rows[2]["in_sync"]) == (False, True, True), rows
        assert not os.path.exists(m1)
        assert seg(m2) == seg(primary)
    finally:
        w.close()


def test_mirrors_replaced_by_empty_directories(cluster):
    primary, m1, m2 = cluster()
    w = Writer(primary)
    try:
        assert all(ok for ok, _, _ in w.write(5))
        for m in (m1, m2):
            shutil.rmtree(m)
            os.mkdir(m)
        check_refused_and_untouched(w, primary, [m1, m2])
        assert os.listdir(m1) == [] and os.listdir(m2) == []
        r = cli("replicas", "add", m1, primary=primary)     # an empty directory: adopted, rebuilt
        assert r.returncode == 0, r.stderr
        check_rebuilt(w, primary, m1)
        assert os.listdir(m2) == []
    finally:
        w.close()


def test_mirror_markers_changed(cluster):
    """The markers now say the directories are another log's mirrors (a promotion
    elsewhere fenced them): not ours any more. `replicas repair` refuses a foreign one and
    rebuilds it once its marker is ours again."""
    primary, m1, m2 = cluster()
    w = Writer(primary)
    try:
        assert all(ok for ok, _, _ in w.write(5))
        for m in (m1, m2):
            with open(os.path.join(m, "embedlog.json.tmp"), "w") as f:
                json.dump({"format": "embedlog", "version": 1, "mirror_of": "/somewhere/else"}, f)
            os.replace(os.path.join(m, "embedlog.json.tmp"), os.path.join(m, "embedlog.json"))
        check_refused_and_untouched(w, primary, [m1, m2])
        r = cli("replicas", "repair", primary=primary)
        assert r.returncode == 1 and "already a mirror of /somewhere/else" in r.stderr, r
        assert "Traceback" not in r.stderr
        with open(os.path.join(m1, "embedlog.json"), "w") as f:
            json.dump({"format": "embedlog", "version": 1, "mirror_of": primary}, f)
        r = cli("replicas", "repair", primary=primary)      # m1 rebuilt, m2 still foreign: refused
        assert r.returncode == 1 and r.stdout.startswith("Rebuilding mirror 1 of t-0"), r
        assert r.stderr.count("\n") == 1 and "cannot rebuild mirror 2" in r.stderr, r
        check_rebuilt(w, primary, m1)
    finally:
        w.close()


def test_a_marker_rewritten_with_the_same_owner_is_not_a_vanish(cluster):
    """`replicas add` of a live mirror rewrites its marker (a new inode, same content): the
    copies go on, acks=all too."""
    primary, m1, _ = cluster()
    w = Writer(primary)
    try:
        assert all(ok for ok, _, _ in w.write(3))
        assert cli("replicas", "add", m1, primary=primary).returncode == 0
        assert all(ok for ok, _, _ in w.write(3))
        rows = status(primary)
        assert rows[1]["in_sync"] and rows[2]["in_sync"] and not rows[1]["vanished"], rows
        assert seg(m1) == seg(primary)
    finally:
        w.close()


def _mount_tmpfs(path):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", path], check=False,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({r.stderr.strip()})")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_mirror_mounts_gone(cluster):
    """Each mirror is its own tmpfs; `umount -l` detaches them while the producer holds
    descriptors into them. The mount points' underlying directories stay empty."""
    mounted = []

    def pre(m1, m2):
        for m in (m1, m2):
            _mount_tmpfs(m)
            mounted.append(m)
    try:
        primary, m1, m2 = cluster(pre)
        w = Writer(primary)
        try:
            assert all(ok for ok, _, _ in w.write(5))
            for m in (m1, m2):
                subprocess.run(["umount", "-l", m], check=True)
                mounted.remove(m)
            assert os.listdir(m1) == [] and os.listdir(m2) == []
            check_refused_and_untouched(w, primary, [m1, m2])
            assert os.listdir(m1) == [] and os.listdir(m2) == []
            assert cli("replicas", "add", m1, primary=primary).returncode == 0
            check_rebuilt(w, primary, m1)
        finally:
            w.close()
    finally:
        for m in mounted:
            subprocess.run(["umount", "-l", m], check=False)


def test_replicas_add_makes_an_empty_directory_a_log(tmp_path):
    """`replicas add` with an existing empty log directory makes it a log (as `topics
    create` does); a non-empty directory that is no log is refused, untouched; a refused
    mirror leaves the empty directory empty."""
    log_dir, mirror = tmp_path / "log", tmp_path / "m"
    log_dir.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    r = cli("replicas", "add", str(junk), primary=str(log_dir))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not empty" in r.stderr, r
    assert os.listdir(log_dir) == [] and snapshot(str(junk)) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}
    r = cli("replicas", "add", str(mirror), primary=str(log_dir))
    assert r.returncode == 0 and r.stdout == f"Added mirror 1 at {mirror}.\n", r
    with embedlog.Log(str(log_dir), create=False) as log:
        assert [x["path"] for x in log.replicas()] == [str(mirror)]
        log.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=2)
        log.topic("t").partition(0).append_records([b"a"], sync=True)
    assert seg(str(mirror)) == seg(str(log_dir))
    before = snapshot(str(junk))
    r = cli("replicas", "add", str(mirror), primary=str(junk))
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r
    assert "not an embedlog log directory" in r.stderr and snapshot(str(junk)) == before
