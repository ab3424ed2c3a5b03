"""embedlog groups list|describe|lag|reset-offsets."""
import datetime as dt

import pytest

import embedlog
from clirun import assert_error, call, run
from embedlog.storage._offsets import store_for

KAFKA_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST",
                 "CLIENT-ID"]


def commit(logdir, group, offsets):
    with embedlog.open(logdir) as log:
        store_for(log).commit(group, [(t, p, o, "") for t, p, o in offsets])


def committed(logdir, group):
    with embedlog.open(logdir) as log:
        store = store_for(log)
        store.refresh()
        return {tp: v[0] for tp, v in store.group_offsets(group).items()}


@pytest.fixture
def grouped(orders):
    """orders holds 6 records; group 'billing' committed partition 0 up to 1 and partition 1 fully."""
    with embedlog.open(orders) as log:
        ends = [log.partition("orders", p).log_end_offset for p in range(3)]
    assert min(ends[0], ends[1]) >= 1
    commit(orders, "billing", [("orders", 0, 1), ("orders", 1, ends[1])])
    return orders, ends


@pytest.fixture
def member(orders):
    """A live member of group 'live' (this process), assigned all of 'orders'."""
    c = embedlog.Consumer({"bootstrap.servers": f"file://{orders}", "group.id": "live",
                           "client.id": "billing-service", "auto.offset.reset": "earliest"})
    c.subscribe(["orders"])
    assert c.assignment()
    yield c
    c.close()


def test_describe_columns_and_values_as_kafka(grouped):
    orders, ends = grouped
    r = run("groups", "describe", "billing", dir=orders)
    assert r.code == 0 and r.err == "Consumer group 'billing' has no active members.\n", r
    rows = r.table()
    assert rows[0] == KAFKA_COLUMNS
    assert rows[1:] == [["billing", "orders", "0", "1", str(ends[0]), str(ends[0] - 1), "-", "-", "-"],
                        ["billing", "orders", "1", str(ends[1]), str(ends[1]), "0", "-", "-", "-"],
                        ["billing", "orders", "2", "-", str(ends[2]), str(ends[2]), "-", "-", "-"]]
    doc = run("groups", "describe", "billing", "--json", dir=orders).json
    assert [(d["partition"], d["current_offset"], d["lag"]) for d in doc] == [
        (0, 1, ends[0] - 1), (1, ends[1], 0), (2, None, ends[2])]
    assert [d["partition"] for d in call("groups", "describe", "billing", "--nl", dir=orders).nl] == [0, 1, 2]
    assert_error(run("groups", "describe", "nobody", dir=orders), 1, "'nobody' does not exist")


def test_describe_shows_live_members_and_their_assignment(orders, member):
    rows = call("groups", "describe", "live", dir=orders).table()
    assert rows[0] == KAFKA_COLUMNS
    assert [row[6] for row in rows[1:]] == [member.memberid()] * 3       # CONSUMER-ID from the assignment
    assert [row[3] for row in rows[1:]] == ["-", "-", "-"]               # nothing committed yet
    import os
    assert [row[7:] for row in rows[1:]] == [[f"/pid-{os.getpid()}", "billing-service"]] * 3   # HOST, CLIENT-ID
    doc = run("groups", "describe", "live", "--members", "--json", dir=orders).json
    assert doc["state"] == "Stable" and doc["generation"] >= 1 and doc["protocol"] == "range"
    (m,) = doc["members"]
    assert m["consumer_id"] == member.memberid() and m["client_id"] == "billing-service"
    assert sorted(a["partition"] for a in m["assignment"]) == [0, 1, 2]
    table = call("groups", "describe", "live", "--members", dir=orders).out.split("\n\n")
    assert "Stable" in table[0] and "orders(0,1,2)" in table[1] and member.memberid() in table[1]
    listing = run("groups", "list", "--json", dir=orders).json
    assert [(g["group"], g["state"], g["members"]) for g in listing] == [("live", "Stable", 1)]


def test_list(grouped):
    orders, _ = grouped
    commit(orders, "audit", [("orders", 2, 0)])
    r = run("groups", "list", dir=orders)
    assert r.table() == [["GROUP", "STATE", "MEMBERS"], ["audit", "Empty", "0"], ["billing", "Empty", "0"]]
    assert [g["group"] for g in call("groups", "list", "--nl", dir=orders).nl] == ["audit", "billing"]
    with embedlog.open(orders) as log:
        log.delete_topic("__consumer_offsets")
    assert call("groups", "list", "--json", dir=orders).json == []
    with embedlog.open(orders) as log:
        assert "__consumer_offsets" not in log.topics()        # listing never creates it
    assert_error(run("groups", "list", "--json", dir=orders / "missing"), 1, "does not exist")


def test_lag_and_max_lag_exit_codes(grouped):
    orders, ends = grouped
    total = (ends[0] - 1) + ends[2]
    r = run("groups", "lag", "billing", dir=orders)
    assert r.code == 0 and r.lines()[-1] == f"total lag: {total}", r
    worst = max(ends[0] - 1, ends[2])
    assert call("groups", "lag", "billing", "--max-lag", worst, dir=orders).code == 0
    r = run("groups", "lag", "billing", "--max-lag", worst - 1, dir=orders)
    assert_error(r, 1, f"above {worst - 1}")
    assert r.lines()[-1] == f"total lag: {total}"           # the table is still printed for the log
    doc = run("groups", "lag", "billing", "--max-lag", worst - 1, "--json", dir=orders).json
    assert doc["ok"] is False and doc["total_lag"] == total and doc["max_lag"] == worst - 1
    doc = call("groups", "lag", "billing", "--max-lag", 0, "--topic", "orders", "--json", dir=orders).json
    assert doc["ok"] is False
    assert_error(run("groups", "lag", "nobody", "--max-lag", "5", dir=orders), 1, "does not exist")
    assert_error(call("groups", "lag", "billing", "--max-lag", "-1", dir=orders), 2, "--max-lag")


def test_reset_is_a_dry_run_unless_execute(grouped):
    orders, ends = grouped
    before = committed(orders, "billing")
    r = run("groups", "reset-offsets", "billing", "--topic", "orders", "--to-latest", dir=orders)
    assert r.code == 0 and "Dry run" in r.err, r
    assert r.table()[1:] == [["billing", "orders", str(p), str(c), str(e)]
                             for p, c, e in [(0, 1, ends[0]), (1, ends[1], ends[1]), (2, "-", ends[2])]]
    assert committed(orders, "billing") == before
    r = run("groups", "reset-offsets", "billing", "--topic", "orders", "--to-latest", "--execute", "--json", dir=orders)
    assert r.code == 0 and r.json["executed"] is True, r
    assert committed(orders, "billing") == {("orders", p): ends[p] for p in range(3)}
    assert call("groups", "lag", "billing", "--max-lag", "0", dir=orders).code == 0


def test_reset_scenarios(grouped):
    orders, ends = grouped
    p = max(range(3), key=lambda k: ends[k])
    call("groups", "reset-offsets", "billing", "-t", f"orders:{p}", "--to-earliest", "--execute", dir=orders)
    assert committed(orders, "billing")[("orders", p)] == 0
    call("groups", "reset-offsets", "billing", "-t", f"orders:{p}", "--to-offset", "1", "--execute", dir=orders)
    assert committed(orders, "billing")[("orders", p)] == 1
    call("groups", "reset-offsets", "billing", "-t", f"orders:{p}", "--shift-by", "1", "--execute", dir=orders)
    assert committed(orders, "billing")[("orders", p)] == 2
    r = call("groups", "reset-offsets", "billing", "-t", f"orders:{p}", "--shift-by", "-5", "--execute", dir=orders)
    assert committed(orders, "billing")[("orders", p)] == 0 and "outside the log" in r.err      # clamped, said so
    r = call("groups", "reset-offsets", "billing", "-t", f"orders:{p}", "--to-offset", "99", "--json", dir=orders)
    assert r.json["partitions"][0]["new_offset"] == ends[p] and r.json["executed"] is False
    # --all-topics: every topic with commits; --topic T:P only that partition
    doc = call("groups", "reset-offsets", "billing", "--all-topics", "--to-earliest", "--json", dir=orders).json
    assert [(x["topic"], x["partition"]) for x in doc["partitions"]] == [("orders", 0), ("orders", 1), ("orders", 2)]


def test_reset_to_datetime(logdir):
    base = int(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp() * 1000)
    with embedlog.open(logdir) as log:
        log.create_topic("t", 1).append([b"a", b"b", b"c", b"d"], timestamps=[base, base + 60000, base + 120000,
                                                                              base + 180000])
    commit(logdir, "g", [("t", 0, 4)])
    for when, expected in [("2024-05-01T12:01:00Z", 1), ("2024-05-01T12:01:00.001+00:00", 2),
                           ("2024-05-01T14:02:00+02:00", 2), ("2024-05-01T11:00:00Z", 0), ("2024-06-01T00:00:00Z", 4)]:
        r = call("groups", "reset-offsets", "g", "-t", "t", "--to-datetime", when, "--json", dir=logdir)
        assert r.code == 0 and r.json["partitions"][0]["new_offset"] == expected, (when, r)
    assert_error(run("groups", "reset-offsets", "g", "-t", "t", "--to-datetime", "yesterday", dir=logdir), 2,
                 "--to-datetime")


def test_reset_bad_input(grouped, member):
    orders, _ = grouped
    assert_error(run("groups", "reset-offsets", "billing", "-t", "orders", dir=orders), 2, "exactly one")
    assert_error(call("groups", "reset-offsets", "billing", "-t", "orders", "--to-earliest", "--to-latest",
                     dir=orders), 2, "--to-earliest, --to-latest")
    assert_error(call("groups", "reset-offsets", "billing", "--to-earliest", dir=orders), 2, "--all-topics")
    assert_error(call("groups", "reset-offsets", "billing", "-t", "orders:x", "--to-earliest", dir=orders), 2,
                 "TOPIC:0,1,2")
    assert_error(call("groups", "reset-offsets", "billing", "-t", "orders:7", "--to-earliest", dir=orders), 1,
                 "no partition 7")
    assert_error(call("groups", "reset-offsets", "billing", "-t", "nope", "--to-earliest", dir=orders), 1,
                 "unknown topic 'nope'")
    assert_error(call("groups", "reset-offsets", "billing", "-t", "orders:2", "--shift-by", "1", dir=orders), 1,
                 "no committed offset")
    assert_error(call("groups", "reset-offsets", "fresh", "--all-topics", "--to-earliest", dir=orders), 1,
                 "--topic")
    # a group with a live member: the dry run works, --execute refuses (Kafka's rule)
    r = call("groups", "reset-offsets", "live", "-t", "orders", "--to-earliest", dir=orders)
    assert r.code == 0 and "active members" in r.err
    r = run("groups", "reset-offsets", "live", "-t", "orders", "--to-earliest", "--execute", dir=orders)
    assert_error(r, 1, "1 active member", member.memberid())
    assert committed(orders, "live") == {}


def test_delete_groups(grouped, member):
    orders, _ends = grouped
    r = call("groups", "delete", "billing", dir=orders)
    assert r.code == 0 and "Deleted consumer group 'billing' (2 committed offset(s))" in r.out, r
    assert committed(orders, "billing") == {}
    assert "billing" not in [g["group"] for g in call("groups", "list", "--json", dir=orders).json]
    assert_error(call("groups", "describe", "billing", dir=orders), 1, "does not exist")
    # a group with a live member is refused and keeps its offsets
    member.commit(asynchronous=False, offsets=[embedlog.TopicPartition("orders", 0, 1)])
    assert_error(call("groups", "delete", "--group", "live", dir=orders), 1, "live member", "GROUP_NOT_EMPTY")
    assert committed(orders, "live") == {("orders", 0): 1}
    assert_error(call("groups", "delete", "nobody", dir=orders), 1, "'nobody' does not exist")
    assert_error(call("groups", "delete", dir=orders), 2, "GROUP")
    # once its member left, it goes
    member.close()
    assert call("groups", "delete", "-g", "live", dir=orders).code == 0
    assert committed(orders, "live") == {}


def test_reset_by_duration_to_current_export_and_from_file(logdir, tmp_path):
    import time as _time
    now = int(_time.time() * 1000)
    hour = 3_600_000
    with embedlog.open(logdir) as log:
        log.create_topic("t", 2)
        log.partition("t", 0).append_records([b"a", b"b", b"c"], timestamps=[now - 3 * hour, now - 2 * hour,
                                                                              now - 30 * 60_000])
        log.partition("t", 1).append_records([b"x", b"y"], timestamps=[now - 5 * hour, now - 10_000])
    commit(logdir, "g", [("t", 0, 3), ("t", 1, 2)])
    # PT1H: the first record of the last hour; P1D: everything
    doc = call("groups", "reset-offsets", "--group", "g", "-t", "t", "--by-duration", "PT1H", "--json",
               dir=logdir).json
    assert [x["new_offset"] for x in doc["partitions"]] == [2, 1]
    doc = call("groups", "reset-offsets", "g", "-t", "t", "--by-duration", "P1D", "--json", dir=logdir).json
    assert [x["new_offset"] for x in doc["partitions"]] == [0, 0]
    doc = call("groups", "reset-offsets", "g", "-t", "t", "--by-duration", "PT2H30M", "--json", dir=logdir).json
    assert [x["new_offset"] for x in doc["partitions"]] == [1, 1]
    assert_error(call("groups", "reset-offsets", "g", "-t", "t", "--by-duration", "1h", dir=logdir), 2, "PT1H")
    # --export writes what --from-file reads; --to-current keeps the offsets
    r = call("groups", "reset-offsets", "g", "-t", "t", "--to-current", "--export", dir=logdir)
    assert r.lines() == ["t,0,3", "t,1,2"], r
    plan = tmp_path / "plan.csv"
    plan.write_text("t,0,1\nt,1,0\n")
    r = call("groups", "reset-offsets", "g", "--from-file", plan, "--execute", dir=logdir)
    assert r.code == 0, r
    assert committed(logdir, "g") == {("t", 0): 1, ("t", 1): 0}
    plan.write_text("t,0,1\nt,zero,0\n")
    assert_error(call("groups", "reset-offsets", "g", "--from-file", plan, "--execute", dir=logdir), 2, "line 2")
    plan.write_text("t,7,1\n")
    assert_error(call("groups", "reset-offsets", "g", "--from-file", plan, "--execute", dir=logdir), 1, "7")
    assert committed(logdir, "g") == {("t", 0): 1, ("t", 1): 0}          # nothing moved by the bad files
    assert_error(call("groups", "reset-offsets", "g", "--from-file", plan, "-t", "t", dir=logdir), 2, "--from-file")
    assert_error(call("groups", "reset-offsets", "-t", "t", "--to-current", dir=logdir), 2, "missing GROUP")
