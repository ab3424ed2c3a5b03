"""`embedlog maintain`: retention and compaction on demand, as a real subprocess."""
import os

import embedlog

from clirun import run

T0 = 1_700_000_000_000


def test_maintain_applies_retention_and_compaction(logdir):
    with embedlog.open(logdir) as log:
        r = log.create_topic("r", 1, {"segment.bytes": 1000, "retention.bytes": 2000, "retention.ms": -1})
        c = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 800})
        for i in range(40):
            r.partition(0).append_records([b"x" * 50], timestamps=[T0 + i])
            c.partition(0).append_records([b"v%d" % i], [b"k%d" % (i % 3)], timestamps=[T0 + i])
        segs_before = len(os.listdir(r.partition(0).path))
    res = run("maintain", "--json", dir=logdir)
    assert res.code == 0, res
    rows = {(x["topic"], x["partition"]): x for x in res.json}
    assert rows[("r", 0)]["deleted_segments"] > 0
    assert rows[("r", 0)]["reasons"] == ["retention.bytes"]
    assert rows[("c", 0)]["compaction"]["records_out"] < rows[("c", 0)]["compaction"]["records_in"]
    with embedlog.open(logdir) as log:
        assert log.partition("r", 0).log_start_offset == rows[("r", 0)]["log_start_offset"] > 0
        assert len(os.listdir(log.partition("r", 0).path)) < segs_before
    table = run("maintain", "r", dir=logdir)
    assert table.code == 0 and table.table()[0] == ["PARTITION", "DELETED-SEGMENTS", "LOG-START-OFFSET", "COMPACTED"]
    assert table.table()[1][0] == "r-0" and table.table()[1][1] == "-"      # nothing more to delete


def test_maintain_unknown_topic_is_an_error(logdir):
    res = run("maintain", "nope", dir=logdir)
    assert res.code == 1 and "nope" in res.err and "does not exist" in res.err
