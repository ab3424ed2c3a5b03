"""The history checker itself: every anomaly it names is found in a hand-made history
that contains it (and only the expected ones), and a clean history reports none."""
from __future__ import annotations

import pytest

from .checker import ANOMALIES, Send, Session, check, summary


def ok(value, offset, partition=0):
    return Send(value, "ok", offset, partition)


def clean_history():
    sends = [ok(f"v{i}", i) for i in range(6)] + [
        Send("f0", "fail"), Send("u0", "unknown"), Send("u1", "unknown"),
        ok("p1-0", 0, partition=1), ok("p1-1", 1, partition=1)]
    # u0 reached the log at offset 6 (an unknown outcome may or may not be written)
    sessions = [
        Session("c1", [[(0, "v0"), (1, "v1")], [(2, "v2"), (3, "v3"), (4, "v4")], [(5, "v5"), (6, "u0")]]),
        # a second session of the same consumer after a seek back: starts again, no anomaly
        Session("c1", [[(3, "v3")], [(4, "v4"), (5, "v5")]]),
        # several partitions interleaved in one poll
        Session("c2", [[(1, 0, "p1-0"), (0, 0, "v0"), (1, 1, "p1-1"), (0, 1, "v1")]]),
    ]
    return sends, sessions


def test_clean_history_has_no_anomaly():
    sends, sessions = clean_history()
    report = check(sends, sessions)
    assert report["valid"], summary(report)
    assert report["anomalies"] == {}
    assert report["stats"]["sends"] == len(sends)
    assert report["stats"]["unknown_read"] == 1
    # and with the reader declared complete, too (every ack was read)
    assert check(sends, sessions, reads_complete=True)["valid"]


def test_accepts_plain_tuples_and_dicts():
    report = check([("a", "ok", 0), {"value": "b", "outcome": "ok", "offset": 1}],
                   [{"consumer": "c", "polls": [[(0, "a"), (1, "b")]]}])
    assert report["valid"], summary(report)


def _only(report, *names):
    assert not report["valid"]
    assert set(report["anomalies"]) == set(names), summary(report)
    return report["anomalies"]


CASES = {
    # acknowledged at 1, never read, although reads went past it
    "lost_write": (
        [ok("a", 0), ok("b", 1), ok("c", 2)],
        [Session("c", [[(0, "a")], [(2, "c")]])],
        {"lost_write", "poll_skip"}),
    # one send read at two offsets (the second copy also sits where another value was acked)
    "duplicate": (
        [ok("a", 0), ok("b", 1)],
        [Session("c", [[(0, "a"), (1, "b"), (2, "a")]])],
        {"duplicate", "inconsistent_offsets"}),
    # two values at one offset
    "inconsistent_offsets": (
        [ok("a", 0), Send("b", "unknown")],
        [Session("c1", [[(0, "a")]]), Session("c2", [[(0, "b")]])],
        {"inconsistent_offsets"}),
    # a value read at another offset than its acknowledgement
    "inconsistent_offsets_ack": (
        [ok("a", 0), ok("b", 5)],
        [Session("c", [[(0, "a"), (1, "b")]])],
        {"inconsistent_offsets"}),
    # consecutive polls jump over offset 2, which exists (another consumer read it)
    "poll_skip": (
        [ok(f"v{i}", i) for i in range(4)],
        [Session("c1", [[(0, "v0"), (1, "v1")], [(3, "v3")]]),
         Session("c2", [[(0, "v0"), (1, "v1"), (2, "v2"), (3, "v3")]])],
        {"poll_skip"}),
    # the same inside one poll
    "int_poll_skip": (
        [ok(f"v{i}", i) for i in range(4)],
        [Session("c1", [[(0, "v0"), (2, "v2"), (3, "v3")]]),
         Session("c2", [[(0, "v0"), (1, "v1"), (2, "v2"), (3, "v3")]])],
        {"int_poll_skip"}),
    # offsets go backwards between polls of one session
    "nonmonotonic_poll": (
        [ok(f"v{i}", i) for i in range(3)],
        [Session("c", [[(0, "v0"), (1, "v1"), (2, "v2")], [(1, "v1")]])],
        {"nonmonotonic_poll"}),
    # ... inside one poll
    "int_nonmonotonic_poll": (
        [ok(f"v{i}", i) for i in range(3)],
        [Session("c", [[(0, "v0"), (2, "v2"), (1, "v1")]])],
        {"int_nonmonotonic_poll", "int_poll_skip"}),
    # a send reported failed shows up in the log
    "failed_write_read": (
        [ok("a", 0), Send("x", "fail")],
        [Session("c", [[(0, "a"), (1, "x")]])],
        {"failed_write_read"}),
    # a value nobody sent
    "unexpected_value": (
        [ok("a", 0)],
        [Session("c", [[(0, "a"), (1, "garbage")]])],
        {"unexpected_value"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_anomaly_is_detected(name):
    sends, sessions, expected = CASES[name]
    found = _only(check(sends, sessions), *expected)
    base = name.removesuffix("_ack")
    assert found[base]["count"] >= 1
    assert found[base]["examples"], found


def test_every_anomaly_name_has_a_case():
    covered = set().union(*(c[2] for c in CASES.values()))
    assert covered == set(ANOMALIES)


def test_lost_write_needs_evidence_unless_reads_are_complete():
    """Jepsen's rule: an unread ack is lost only once a reader went past its offset; a
    reader that declares it read everything makes any unread ack lost."""
    sends = [ok("a", 0), ok("b", 1)]
    sessions = [Session("c", [[(0, "a")]])]
    assert check(sends, sessions)["valid"]
    report = check(sends, sessions, reads_complete=True)
    assert _only(report, "lost_write")["lost_write"]["examples"][0]["value"] == "b"


def test_skips_are_per_partition():
    """Offsets of another partition are not skipped over."""
    sends = [ok("a0", 0, 0), ok("a1", 1, 0), ok("b0", 0, 1), ok("b1", 1, 1), ok("b2", 2, 1)]
    sessions = [Session("c", [[(0, 0, "a0"), (1, 0, "b0"), (1, 1, "b1")], [(0, 1, "a1"), (1, 2, "b2")]])]
    assert check(sends, sessions)["valid"]
    sessions = [Session("c", [[(0, 0, "a0"), (1, 0, "b0")], [(0, 1, "a1"), (1, 2, "b2")]]),
                Session("d", [[(1, 1, "b1")]])]
    found = _only(check(sends, sessions), "poll_skip")
    assert found["poll_skip"]["examples"][0]["partition"] == 1
    assert found["poll_skip"]["examples"][0]["skipped"] == [1]


def test_examples_are_capped_but_counts_are_not():
    sends = [ok(f"v{i}", i) for i in range(100)]
    report = check(sends, [Session("c", [[(0, "v0")]])], reads_complete=True, max_examples=3)
    lost = report["anomalies"]["lost_write"]
    assert lost["count"] == 99 and len(lost["examples"]) == 3


def test_bad_histories_are_refused():
    with pytest.raises(ValueError, match="sent twice"):
        check([ok("a", 0), ok("a", 1)], [])
    with pytest.raises(ValueError, match="outcome"):
        Send("a", "maybe")
    with pytest.raises(ValueError, match="no offset"):
        Send("a", "ok")
