"""Logs for the CLI tests, set up in-process with the library."""
import pytest

import embedlog


@pytest.fixture
def logdir(tmp_path):
    path = tmp_path / "log"
    embedlog.open(path).close()
    return path


@pytest.fixture
def orders(logdir):
    """Topic 'orders' (3 partitions) with 6 keyed records: alice x3 (all in partition 0 by
    murmur2), dave x2 (partition 1), carol x1 (partition 2)."""
    with embedlog.open(logdir) as log:
        t = log.create_topic("orders", 3)
        for key, value in [(b"alice", b"a1"), (b"dave", b"d1"), (b"alice", b"a2"), (b"carol", b"c1"),
                           (b"dave", b"d2"), (b"alice", b"a3")]:
            t.append([value], keys=[key])
        assert [log.partition("orders", p).log_end_offset for p in range(3)] == [3, 2, 1]
    return logdir
