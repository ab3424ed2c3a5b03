"""The pytest plugin, run the way another project runs it: inner pytest sessions
(pytester) in which embedlog is only installed, never imported or configured."""
import json
import sys

import embedlog


def test_the_entry_point_registers_the_plugin():
    from importlib.metadata import entry_points
    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "embedlog"]
    assert ep.value == "embedlog.pytest_plugin"


def test_fixtures_are_listed_with_their_docs(pytester):
    r = pytester.runpytest("--fixtures")
    text = r.stdout.str()
    for name in ("embedlog_dir", "embedlog_config", "embedlog", "make_topic", "make_producer", "make_consumer",
                 "make_embedlog"):
        assert f"\n{name} -- " in text, name
    r.stdout.fnmatch_lines(["*make_topic*", "*make_topic(name=None, partitions=None, config=None)*"])


def test_a_fresh_log_per_test_and_cleanup(pytester):
    out = pytester.path / "seen.jsonl"
    pytester.makepyfile(test_inner_fresh=f"""
        import json
        OUT = {str(out)!r}

        def record(**kw):
            with open(OUT, "a") as f:
                f.write(json.dumps(kw) + "\\n")

        def test_one(embedlog, embedlog_dir, embedlog_config, make_topic):
            assert embedlog.topics() == []
            assert embedlog.path == str(embedlog_dir)
            assert embedlog_config == {{"bootstrap.servers": f"file://{{embedlog_dir}}"}}
            t = make_topic()
            assert t.num_partitions == 1 and t.name == "test_one-1"
            assert make_topic().name == "test_one-2"
            record(dir=str(embedlog_dir), topics=embedlog.topics())

        def test_two(embedlog, embedlog_dir, make_producer, make_consumer):
            assert embedlog.topics() == []          # test_one's topics are not here
            p = make_producer({{"linger.ms": 1000}})
            for i in range(5):
                p.produce("auto", value=b"v%d" % i)  # never flushed by the test itself
            c = make_consumer("auto")
            c2 = make_consumer()
            assert c.memberid() and c2 is not c
            record(dir=str(embedlog_dir), groups=[c._group, c2._group])
    """)
    r = pytester.runpytest("-p", "no:cacheprovider")
    r.assert_outcomes(passed=2)
    one, two = [json.loads(line) for line in out.read_text().splitlines()]
    assert one["dir"] != two["dir"] and one["topics"] == ["test_one-1", "test_one-2"]
    assert two["groups"] == ["test_two-group-1", "test_two-group-2"]          # unique group ids
    with embedlog.open(two["dir"]) as log:
        assert log.partition("auto", 0).log_end_offset == 5                    # flushed at teardown
        from embedlog.client._groups import describe_group
        state = describe_group(log, "test_two-group-1")
        assert state["generation"] >= 2 and state["members"] == {}            # left the group at teardown


def test_producer_and_consumer_defaults_round_trip(pytester):
    pytester.makepyfile(test_inner_round_trip="""
        from embedlog.testing import assert_topic_contains, wait_for_zero_lag

        def test_round_trip(embedlog, make_topic, make_producer, make_consumer):
            make_topic("orders", partitions=3)
            p = make_producer()
            for i in range(30):
                p.produce("orders", key=b"customer-%d" % (i % 4), value=b"order-%d" % i)
            assert p.flush(5) == 0
            c = make_consumer(["orders"], config={"enable.auto.commit": False})
            got = []
            while len(got) < 30:
                m = c.poll(5.0)
                assert m is not None and m.error() is None
                got.append(m.value())
            c.commit(asynchronous=False)
            assert sorted(got) == sorted(b"order-%d" % i for i in range(30))   # earliest: all of it
            rows = wait_for_zero_lag(embedlog, c._group, timeout=5)
            assert sum(r["log_end_offset"] for r in rows) == 30
            assert_topic_contains(embedlog, "orders", {b"customer-1": [b"order-1", b"order-5", b"order-9"]})
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_settings_precedence(pytester, monkeypatch):
    pytester.makepyfile(test_inner_settings="""
        import os

        def test_partitions(make_topic):
            assert make_topic().num_partitions == int(os.environ["WANT"])
            assert make_topic(partitions=5).num_partitions == 5          # the factory argument wins

        def test_lock_timeout(embedlog, make_producer):
            assert embedlog.lock_timeout == float(os.environ["WANT_LOCK"])
            assert make_producer()._conf["embedlog.lock.timeout.ms"] == int(float(os.environ["WANT_LOCK"]) * 1000)
    """)
    run = lambda *a: pytester.runpytest("-p", "no:cacheprovider", *a)
    monkeypatch.setenv("WANT", "1")
    monkeypatch.setenv("WANT_LOCK", "10")
    run().assert_outcomes(passed=2)                                         # defaults
    pytester.makeini("[pytest]\nembedlog_partitions = 2\nembedlog_lock_timeout = 2.5\n")
    monkeypatch.setenv("WANT", "2")
    monkeypatch.setenv("WANT_LOCK", "2.5")
    run().assert_outcomes(passed=2)                                         # ini
    monkeypatch.setenv("WANT", "3")
    monkeypatch.setenv("WANT_LOCK", "4")
    run("--embedlog-partitions=3", "--embedlog-lock-timeout=4").assert_outcomes(passed=2)   # option > ini
    pytester.makeini("[pytest]\nembedlog_partitions = many\n")
    r = run()
    assert r.ret != 0 and "embedlog_partitions" in r.stderr.str() + r.stdout.str()


def test_make_embedlog_gives_separate_logs(pytester):
    pytester.makepyfile(test_inner_make="""
        def test_two_logs(embedlog, make_embedlog):
            a = make_embedlog(topics={"t": 3}, config={"retention.ms": 1000})
            b = make_embedlog()
            assert len({a.path, b.path, embedlog.path}) == 3
            assert a.topic("t").num_partitions == 3 and a.topic("t").config["retention.ms"] == 1000
            assert b.topics() == [] and embedlog.topics() == []
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_failures_read_well_in_pytest(pytester):
    pytester.makepyfile(test_inner_failures="""
        from embedlog.testing import assert_topic_contains, wait_for_zero_lag

        def test_order(embedlog, make_topic):
            make_topic("t").append([b"b", b"a"])
            assert_topic_contains(embedlog, "t", [b"a", b"b"])

        def test_lag(embedlog, make_topic, make_consumer):
            make_topic("q", partitions=2).append([b"x"] * 3, partition=1)
            c = make_consumer(["q"], group_id="slow")
            wait_for_zero_lag(embedlog, "slow", topics=["q"], timeout=0.2)
    """)
    r = pytester.runpytest("-p", "no:cacheprovider")
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines([
        "*topic 't' does not contain the expected messages:",
        "*#1 value=b'b' is out of order: it is in partition 0 at offset 0, before #0 value=b'a' (offset 1)*",
        "*consumer group 'slow' still lags by 3 record(s) after 0.2s:",
        "*q*1*-*3*3*",
    ])
    assert "site-packages/embedlog" not in r.stdout.str() and "embedlog/testing.py" not in r.stdout.str()


def test_the_plugin_module_stays_light():
    """pytest imports the plugin in every session where embedlog is installed: it must not
    pull in the command line (click) or the test helpers before a test asks for them."""
    import subprocess
    code = "import sys, embedlog.pytest_plugin; print('click' in sys.modules, 'embedlog.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
