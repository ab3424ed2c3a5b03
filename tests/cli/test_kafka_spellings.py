"""Kafka's console-tool spellings beside embedlog's own: --topic, --bootstrap-server,
--property, --producer-property/--consumer-property, consume --timeout-ms without --follow."""
import time

import embedlog
from clirun import assert_error, call, run
from test_records import records


def test_topic_option_and_bootstrap_server_as_the_directory(orders):
    url = f"file://{orders}"
    by_arg = call("consume", "orders", "-p", "0", dir=orders).lines()
    assert by_arg == ["a1", "a2", "a3"]
    assert call("consume", "--topic", "orders", "-p", "0", "--bootstrap-server", url).lines() == by_arg
    assert call("--bootstrap-server", str(orders), "consume", "--topic", "orders", "-p", "0").lines() == by_arg
    assert call("consume", "orders", "--topic", "orders", "-p", "0", dir=orders).lines() == by_arg
    assert_error(call("consume", "orders", "--topic", "other", dir=orders), 2, "two topics")
    assert_error(call("consume", dir=orders), 2, "missing TOPIC")
    r = call("produce", "--topic", "orders", "--bootstrap-server", url, "-p", "2", input="c2\n")
    assert r.code == 0, r
    assert records(orders, "orders")[2][-1] == (None, b"c2", ())
    # broker addresses are not a directory: a clear usage error, nothing created
    r = call("consume", "--topic", "orders", "--bootstrap-server", "localhost:9092")
    assert_error(r, 2, "names Kafka brokers")


def test_console_producer_properties_parse_keys(orders):
    r = call("produce", "--topic", "orders", "--property", "parse.key=true", "--property", "key.separator=:",
             "-v", input="erin:e1\nerin:e2\n", dir=orders)
    assert r.code == 0, r
    assert all(line.endswith(" key=erin") for line in r.lines()) and len(r.lines()) == 2
    got = [(k, v) for recs in records(orders, "orders").values() for k, v, _h in recs if k == b"erin"]
    assert got == [(b"erin", b"e1"), (b"erin", b"e2")]
    # parse.key alone splits at a tab, as kafka-console-producer does
    assert call("produce", "orders", "--property", "parse.key=true", input="finn\tf1\n", dir=orders).code == 0
    assert (b"finn", b"f1", ()) in [r for recs in records(orders, "orders").values() for r in recs]
    # key.separator without parse.key is ignored, as Kafka's: the whole line is the value
    assert call("produce", "orders", "-p", "0", "--property", "key.separator=:", input="x:y\n", dir=orders).code == 0
    assert records(orders, "orders")[0][-1] == (None, b"x:y", ())
    assert_error(call("produce", "orders", "--property", "parse.kee=true", input="", dir=orders), 2,
                 "unknown property 'parse.kee'", "parse.key")
    assert_error(call("produce", "orders", "--property", "parse.key=yes", input="", dir=orders), 2,
                 "true or false")
    assert_error(call("produce", "orders", "--property", "parse.key=true", "--key-separator", ";", input="",
                      dir=orders), 2, "disagree")


def test_producer_property_lifts_the_record_size_limit(logdir):
    with embedlog.open(logdir) as log:
        log.create_topic("big", 1, {"max.message.bytes": "4000000"})
    line = b"v" * 1_500_000 + b"\n"
    r = call("produce", "big", input=line, dir=logdir)
    assert r.code == 1 and "message.max.bytes" in r.err, r       # the producer's default, 1 MB
    assert records(logdir, "big")[0] == []
    r = call("produce", "big", "--producer-property", "message.max.bytes=2000000", input=line, dir=logdir)
    assert r.code == 0, r
    assert [len(v) for _k, v, _h in records(logdir, "big")[0]] == [1_500_000]
    assert_error(call("produce", "big", "--producer-property", "no.such.key=1", input="x\n", dir=logdir), 1,
                 "no.such.key")
    assert_error(call("produce", "big", "--producer-property", "novalue", input="x\n", dir=logdir), 2,
                 "KEY=VALUE")


def test_console_consumer_properties_print_fields(orders):
    r = call("consume", "orders", "-p", "1", "--property", "print.key=true", "--property", "print.offset=true",
             "--property", "key.separator=|", dir=orders)
    assert r.lines() == ["Offset:0|dave|d1", "Offset:1|dave|d2"]
    # an explicit false wins over the flag
    r = call("consume", "orders", "-p", "1", "--print-key", "--property", "print.key=false", dir=orders)
    assert r.lines() == ["d1", "d2"]
    assert_error(call("consume", "orders", "--property", "print.value=false", dir=orders), 2, "print.value")
    r = call("consume", "orders", "-p", "1", "--consumer-property", "fetch.max.bytes=1000", dir=orders)
    assert r.lines() == ["d1", "d2"]
    assert_error(call("consume", "orders", "--consumer-property", "no.such.key=1", dir=orders), 1, "no.such.key")


def test_timeout_ms_is_accepted_without_follow_and_does_not_cut_a_read(orders):
    # Kafka's tool takes --timeout-ms on any read (it was a usage error here): a read that has
    # nothing left still ends, and one that keeps finding records is not cut short
    assert call("consume", "orders", "-g", "g1", dir=orders).code == 0
    t0 = time.monotonic()
    r = run("consume", "orders", "-g", "g1", "--timeout-ms", "300", dir=orders)
    assert r.code == 0 and "a total of 0 messages" in r.err, r
    assert time.monotonic() - t0 < 20
    # and it does not cut a read that keeps finding records
    r = call("consume", "orders", "--timeout-ms", "300", dir=orders)
    assert r.code == 0 and len(r.lines()) == 6, r


def test_consume_from_a_timestamp(logdir):
    base = 1_714_564_800_000          # 2024-05-01T12:00:00Z
    with embedlog.open(logdir) as log:
        log.create_topic("t", 2)
        log.partition("t", 0).append_records([b"a", b"b", b"c"], timestamps=[base, base + 60_000, base + 120_000])
        log.partition("t", 1).append_records([b"x", b"y"], timestamps=[base - 60_000, base + 90_000])
    assert call("consume", "t", "-p", "0", "--from-time", str(base + 1), dir=logdir).lines() == ["b", "c"]
    assert sorted(call("consume", "t", "--from-time", "2024-05-01T12:01:00Z", dir=logdir).lines()) == ["b", "c", "y"]
    assert sorted(call("consume", "t", "--from-time", "2024-05-01T14:00:00+02:00", dir=logdir).lines()) == \
        ["a", "b", "c", "y"]
    r = call("consume", "t", "--from-time", "2030-01-01T00:00:00Z", dir=logdir)      # after every record
    assert r.code == 0 and r.out == "", r
    assert_error(call("consume", "t", "--from-time", "soon", dir=logdir), 2, "--from-time")
    assert_error(call("consume", "t", "--from-time", str(base), "-g", "g", dir=logdir), 2, "--from-time")
