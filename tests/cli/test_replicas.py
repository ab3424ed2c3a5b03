"""`embedlog replicas add|remove|status|promote|repair` as real subprocesses."""
import os

import embedlog
from clirun import assert_error, run


def test_replicas_add_status_remove_promote(tmp_path, logdir):
    m1 = tmp_path / "mirror1"
    r = run("replicas", "add", str(m1), dir=logdir)
    assert r.code == 0 and r.out == f"Added mirror 1 at {m1}.\n", r
    assert run("topics", "create", "-t", "t", "-p", "2", "-r", "2", "-c", "min.insync.replicas=2",
               dir=logdir).code == 0
    assert_error(run("topics", "create", "-t", "u", "-r", "3", dir=logdir), 1,
                 "replication factor 3 needs 2 mirror directories")
    with embedlog.open(logdir) as log:
        for p in range(2):
            log.partition("t", p).append_records([b"a", b"b"], sync=True)
    st = run("replicas", "status", "--json", dir=logdir)
    assert st.code == 0, st
    rows = st.json["partitions"]
    assert {(x["partition"], x["replica"], x["log_end_offset"], x["in_sync"]) for x in rows} == \
        {(0, 0, 2, True), (0, 1, 2, True), (1, 0, 2, True), (1, 1, 2, True)}
    table = run("replicas", "status", dir=logdir).table()
    assert table[0] == ["PARTITION", "REPLICA", "ROLE", "LOG-END-OFFSET", "LAG", "IN-SYNC", "PATH"]
    assert ["t-0", "1", "mirror", "2", "0", "yes", str(m1 / "t-0")] in table
    assert run("replicas", "remove", str(m1), dir=logdir).code == 0
    rows = run("replicas", "status", "--json", dir=logdir).json["partitions"]
    assert {x["in_sync"] for x in rows if x["replica"] == 1} == {False}
    assert run("replicas", "add", str(m1), dir=logdir).code == 0          # back, same id
    with embedlog.open(logdir) as log:
        log.partition("t", 0).append_records([b"c"], sync=True)
    p = run("replicas", "promote", str(m1))
    assert p.code == 0 and "is now the primary" in p.out, p
    with embedlog.open(m1) as promoted:
        assert [r.value for r in promoted.partition("t", 0).read(0)] == [b"a", b"b", b"c"]
    assert_error(run("topics", "list", dir=logdir), 1, "is a mirror of")


def test_replicas_errors(tmp_path, logdir):
    assert_error(run("replicas", "remove", str(tmp_path / "nope"), dir=logdir), 1, "is not a mirror")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x").write_text("x")
    assert_error(run("replicas", "add", str(junk), dir=logdir), 1, "not empty")
    assert_error(run("replicas", "promote", str(logdir)), 1, "not a mirror")
    r = run("replicas", "repair", dir=logdir)
    assert r.code == 0 and r.out == "No damaged segment found.\n"
