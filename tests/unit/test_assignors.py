"""Kafka's assignors on plain inputs (the examples of kafka-format.md §7.1 for range/roundrobin)."""
from embedlog.client._groups import assign_range, assign_roundrobin, assign_sticky


def test_range_gives_contiguous_ranges_extra_to_the_first():
    out = assign_range({"c1": ["t"], "c2": ["t"]}, {"t": 5})
    assert out == {"c1": [("t", 0), ("t", 1), ("t", 2)], "c2": [("t", 3), ("t", 4)]}


def test_roundrobin_deals_sorted_partitions():
    out = assign_roundrobin({"c1": ["t0", "t1"], "c2": ["t0", "t1"]}, {"t0": 3, "t1": 3})
    assert out["c1"] == [("t0", 0), ("t0", 2), ("t1", 1)]
    assert out["c2"] == [("t0", 1), ("t1", 0), ("t1", 2)]


def test_sticky_keeps_what_balance_allows_and_balances():
    prev = {"a": [("t", p) for p in range(6)]}
    out = assign_sticky({"a": ["t"], "b": ["t"]}, {"t": 6}, prev)
    assert len(out["a"]) == len(out["b"]) == 3
    assert set(out["a"]) <= set(prev["a"])
    # a member leaving: the survivor keeps its own and takes the rest
    out2 = assign_sticky({"b": ["t"]}, {"t": 6}, {"b": out["b"]})
    assert set(out["b"]) <= set(out2["b"]) and len(out2["b"]) == 6
    # three members from a 4/2 split: nobody loses more than balance needs
    prev3 = {"a": [("t", p) for p in range(4)], "b": [("t", 4), ("t", 5)]}
    out3 = assign_sticky({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 6}, prev3)
    assert [len(out3[m]) for m in "abc"] == [2, 2, 2]
    assert set(out3["b"]) == set(prev3["b"]) and set(out3["a"]) <= set(prev3["a"])


def test_sticky_respects_subscriptions():
    out = assign_sticky({"a": ["x"], "b": ["x", "y"]}, {"x": 2, "y": 2}, {})
    assert all(t == "x" for t, _p in out["a"])
    assert sorted(out["a"] + out["b"]) == [("x", 0), ("x", 1), ("y", 0), ("y", 1)]
