"""The bytes of PostgreSQL CDC records stay what they were (issue #16's speed work): a table
with every column type the connector maps (_pgtypes), NULLs, non-ASCII text, an unchanged
TOASTed value, REPLICA IDENTITY FULL and DEFAULT, a key change, deletes and tombstones, the
snapshot and the stream, with the JsonConverter (schemas on) and with schemas off plus the
unwrap transform. Each record's key and value bytes are compared with the stored output of the
connector before the speed work (cdc_bytes_expected.json), after blanking only what changes
from run to run: the wall-clock and commit times (ts_ms), txId, lsn and sequence.

    EMBEDLOG_CDC_REGEN=1 pytest tests/connect/test_postgres_bytes.py   # rewrite the stored output
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import sys

import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import pg

pytestmark = pytest.mark.skipif(pg.skip_reason() is not None, reason=pg.skip_reason() or "")

server, db = pg.fixtures("bytes")
EXPECTED = pathlib.Path(__file__).with_name("cdc_bytes_expected.json")

SETUP = r"""
CREATE TABLE public.everything (id int PRIMARY KEY, i2 smallint, i8 bigint NOT NULL DEFAULT 7, o oid,
  b bool, f4 real, f8 double precision, t text NOT NULL DEFAULT 'x', vc varchar(20), c char(3), nm name,
  dec numeric(12,3), vdec numeric, d date, tm time, ts timestamp, tz timestamptz, j json, jb jsonb,
  u uuid, raw bytea, other inet, iv interval);
CREATE TABLE public.wide (id int PRIMARY KEY, n int, body text, blob bytea);
ALTER TABLE public.wide REPLICA IDENTITY FULL;
ALTER TABLE public.wide ALTER body SET STORAGE EXTERNAL, ALTER blob SET STORAGE EXTERNAL;
CREATE TABLE public.nokey (a int, s text);
INSERT INTO public.everything VALUES (1, -32768, 9223372036854775807, 4294967295, true, 1.5, -2.25e-300,
  'snapshot "row" \ é 日本', 'vc', 'ab', 'nm', -123456789.125, 0.000001230, '1970-01-01', '23:59:59.999999',
  '2024-02-29 12:00:00.5', '1999-12-31 23:59:59.123+05:30', '{"a": [1, 2]}', '{"b": null}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10', '10.0.0.1/8', '1 day 02:03:04');
INSERT INTO public.everything (id) VALUES (2);
INSERT INTO public.wide VALUES (1, 1, repeat('z', 2100), decode(repeat('ab', 2100), 'hex'));
"""

CHANGES = r"""
INSERT INTO public.everything VALUES (3, 1, -1, 0, false, 'NaN', 'Infinity', e'tab\there\nnew "q"', '', 'x',
  'n', 0, -12345678901234567890.5, '2038-01-19', '00:00:00', '2001-01-01 00:00:00', '2026-01-01 00:00:00+00',
  '[]', '{}', '00000000-0000-0000-0000-000000000000', '\x', '::1', '-1 mon');
INSERT INTO public.everything (id, tz, dec) VALUES (4, '2026-06-30 10:11:12.000001+00', 99.9);
UPDATE public.everything SET i2 = 2, tz = '2026-01-01 00:00:00.25+00' WHERE id = 3;
UPDATE public.everything SET id = 5 WHERE id = 4;
DELETE FROM public.everything WHERE id = 2;
UPDATE public.wide SET n = 2 WHERE id = 1;
UPDATE public.wide SET body = 'short' WHERE id = 1;
DELETE FROM public.wide WHERE id = 1;
INSERT INTO public.nokey VALUES (1, 'a'), (NULL, NULL);
BEGIN; INSERT INTO public.everything (id, vdec) SELECT g, g / 7.0 FROM generate_series(10, 25) g; COMMIT;
"""
TOPICS = ["dbserver1.public.everything", "dbserver1.public.wide", "dbserver1.public.nokey"]
_VARYING = [(re.compile(rb'"(ts_ms|txId|lsn)":\d+'), rb'"\1":0'),
            (re.compile(rb'"sequence":"(?:[^"\\]|\\.)*"'), rb'"sequence":"S"')]


def _blank(data: bytes | None) -> str | None:
    if data is None:
        return None
    for rx, sub in _VARYING:
        data = rx.sub(sub, data)
    return data.decode()


def _raw(log_dir, topic):
    import embedlog as el
    out = []
    with el.open(log_dir, read_only=True) as log:
        part = log.partition(topic, 0)
        pos = 0
        while pos < part.log_end_offset:
            cols, nxt = part.fetch(pos, max_bytes=8 << 20)
            out += [[_blank(k), _blank(v)] for k, v in zip(cols.keys, cols.values)]
            if nxt <= pos:
                break
            pos = nxt
    return out


def _capture(server, db, tmp_path, **config) -> dict:
    server.execute(SETUP, db)
    d = pg.Driver(server.config(db, **config), tmp_path / "log", tmp_path / "offsets.json")
    try:
        d.drain(quiet=1.0)
        server.execute(CHANGES, db)
        d.drain(quiet=1.5)
    finally:
        d.close()
    return {topic: _raw(tmp_path / "log", topic) for topic in TOPICS}


CASES = {
    "json_schemas": {},
    "plain_unwrap": {"key.converter.schemas.enable": "false", "value.converter.schemas.enable": "false",
                     "transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
                     "transforms.unwrap.drop.tombstones": "false"},
    "decimal_string": {"decimal.handling.mode": "string"},
}


def _pack(records: list, schemas: list) -> list:
    """For the stored file: each distinct `{"schema":...` part once, records pointing at it."""
    out = []
    for rec in records:
        row = []
        for text in rec:
            head, sep, payload = (text or "").partition(',"payload":')
            if text is None or not sep or not head.startswith('{"schema":'):
                row.append(text)
                continue
            if head not in schemas:
                schemas.append(head)
            row.append([schemas.index(head), payload])
        out.append(row)
    return out


def _unpack(records: list, schemas: list) -> list:
    return [[t if not isinstance(t, list) else schemas[t[0]] + ',"payload":' + t[1] for t in rec] for rec in records]


@pytest.mark.parametrize("case", sorted(CASES))
def test_record_bytes_are_unchanged(server, db, tmp_path, case):
    got = _capture(server, db, tmp_path, **CASES[case])
    stored = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    if os.environ.get("EMBEDLOG_CDC_REGEN"):
        schemas = stored.setdefault("schemas", [])
        stored[case] = {topic: _pack(got[topic], schemas) for topic in TOPICS}
        EXPECTED.write_text(json.dumps(stored, indent=0, ensure_ascii=False, sort_keys=True) + "\n")
    want = {topic: _unpack(stored[case][topic], stored["schemas"]) for topic in TOPICS}
    assert [len(got[t]) for t in TOPICS] == [len(want[t]) for t in TOPICS]
    assert sum(len(v) for v in got.values()) > 25                 # the transaction of 16 rows came through
    for topic in TOPICS:
        for i, (g, w) in enumerate(zip(got[topic], want[topic])):
            assert g == w, f"{case}: record {i} of {topic} differs"


# The short paths of the speed work against the general ones they skip (no server needed).

def test_short_paths_equal_the_general_ones():
    import datetime
    import decimal

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from embedlog.connect import _pgoutput as pgo
    from embedlog.connect import _pgtypes as pgt

    def zoned(t):                                           # _zoned as it was: parse, then format
        d = pgt._parse_ts(t).astimezone(datetime.timezone.utc)
        frac = f".{d.microsecond:06d}".rstrip("0") if d.microsecond else ""
        return d.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"

    @settings(max_examples=300, deadline=None)
    @given(st.datetimes(min_value=datetime.datetime(1000, 1, 1)),
           st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**12, max_value=10**12),
           st.integers(0, 6), st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=8))
    def check(ts, dec, scale, cols):
        text = ts.isoformat(sep=" ")
        text = (text.rstrip("0") if ts.microsecond else text) + "+00"      # PostgreSQL's form
        assert pgt._zoned(text) == zoned(text)
        for t in (f"{dec:.{scale}f}", str(dec)):
            assert pgt._unscaled_text(t, scale) == pgt._unscaled(decimal.Decimal(t), scale)
        body = len(cols).to_bytes(2, "big") + b"".join(
            b"n" if c is None else b"t" + len(c).to_bytes(4, "big") + c for c in cols)
        assert pgo.decode(b"I" + (7).to_bytes(4, "big") + b"N" + body) == pgo.Insert(7, tuple(cols))
        if cols and cols[-1]:
            with pytest.raises(pgo.ConnectError, match="ends early"):
                pgo.decode(b"I" + (7).to_bytes(4, "big") + b"N" + body[:-1])

    check()


def test_converter_json_encoder_equals_json_dumps():
    import base64

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from embedlog.connect import _converters

    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary())
    tree = st.recursive(leaf, lambda c: st.one_of(st.lists(c), st.dictionaries(st.text(), c)), max_leaves=20)

    def b64(v):
        return base64.b64encode(v).decode()

    @settings(max_examples=300, deadline=None)
    @given(tree)
    def check(v):
        assert _converters._dumps(v) == json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=b64)

    check()
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        _converters._dumps({"a": {1}})
