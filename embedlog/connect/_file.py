"""Kafka's file connectors: FileStreamSource tails a file into a topic, one record per line;
FileStreamSink appends the values of topics' records to a file, one line each.

Source: the source partition is {"filename": <file>}, the offset {"position": N}, the byte
position after the last whole line handed on (Kafka's own key names). A last line without
its newline yet is held back until the newline arrives, so a writer caught mid-line never
splits a record. Values are the line's text (UTF-8, a trailing "\\r" dropped), schema
STRING, no key. When the file shrinks below the position (truncated in place, as
logrotate's copytruncate does) reading restarts at byte 0 and a warning is logged; when the
path names a new file (renamed away and recreated) the old file is read to its end first,
then the new one from byte 0. A file that does not exist yet is waited for; its directory
must exist. After a restart the stored position is trusted: a file replaced by another of
at least that size while the connector was down is read from that position.

Sink: every value (text; bytes decoded as UTF-8; structs and maps as JSON; a null as
"null", as Kafka's println does) is appended as one line; `flush()` fsyncs before the
runner commits the group's offsets, so after a crash lines past the last commit may be
written again (at least once).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import ClassVar

from ..storage import _io
from ._configs import Key
from ._converters import _jsonable
from ._data import STRING_SCHEMA, ConnectError, Connector, SourceRecord

log = logging.getLogger("embedlog.connect")


def _check_dir(path: str, key: str = "file"):
    if not path:
        raise ConnectError(f"{key} is required (a file path)")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ConnectError(f"{key}: the directory of {path!r} does not exist ({d})")
    if os.path.isdir(path):
        raise ConnectError(f"{key}: {path!r} is a directory, not a file")


class FileStreamSource(Connector):
    kind = "source"
    CONFIG: ClassVar[dict] = {
        "file": Key(required=True, doc="the file to tail (its directory must exist)"),
        "topic": Key(required=True, doc="the topic each line is written to"),
        "batch.max.rows": Key("2000", "int", doc="at most this many lines per poll"),
    }
    POLL_SLEEP = 0.05

    @classmethod
    def check(cls, values):
        _check_dir(values["file"])

    def start(self, values, offsets):
        self.path = os.path.abspath(values["file"])
        self.filename = values["file"]
        self.topic = values["topic"]
        self.batch = values["batch.max.rows"]
        stored = offsets({"filename": self.filename})
        self.position = int(stored["position"]) if stored and stored.get("position") is not None else 0
        self.f = None
        self.ino = None
        self.buf = b""

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")            # noqa: SIM115 - held open while tailing
        except FileNotFoundError:
            return False
        st = os.fstat(f.fileno())
        if st.st_size < self.position:
            log.warning("%s: the file is %d bytes, shorter than the stored position %d: reading it from byte 0",
                        self.path, st.st_size, self.position)
            self.position = 0
        f.seek(self.position)
        self.f, self.ino, self.buf = f, (st.st_dev, st.st_ino), b""
        return True

    def _replaced(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) != self.ino

    def _lines(self, data: bytes) -> list[SourceRecord]:
        out = []
        self.buf += data
        start = 0
        while len(out) < self.batch:
            nl = self.buf.find(b"\n", start)
            if nl < 0:
                break
            line = self.buf[start:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            self.position += nl + 1 - start
            start = nl + 1
            out.append(SourceRecord(self.topic, None, line.decode("utf-8", errors="replace"), None, STRING_SCHEMA,
                                    {"filename": self.filename}, {"position": self.position}))
        self.buf = self.buf[start:]
        return out

    def poll(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.f is None and not self._open():
                if time.monotonic() >= deadline:
                    return []
                time.sleep(self.POLL_SLEEP)
                continue
            out = self._lines(b"")
            if out:
                return out
            size = os.fstat(self.f.fileno()).st_size
            read_at = self.position + len(self.buf)
            if size < read_at:                      # truncated in place
                log.warning("%s: truncated to %d bytes below position %d: reading it from byte 0",
                            self.path, size, self.position)
                self.f.seek(0)
                self.position, self.buf = 0, b""
            data = self.f.read(1 << 20)
            if data:
                out = self._lines(data)
                if out:
                    return out
                continue
            if self._replaced():                    # renamed away and recreated: on to the new file
                if self.buf:
                    log.warning("%s: the old file ended with a line without newline (%d bytes): dropped",
                                self.path, len(self.buf))
                self.f.close()
                self.f, self.position = None, 0
                continue
            if time.monotonic() >= deadline:
                return []
            time.sleep(self.POLL_SLEEP)

    def stop(self):
        if self.f is not None:
            self.f.close()
            self.f = None


def line_of(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FileStreamSink(Connector):
    kind = "sink"
    CONFIG: ClassVar[dict] = {"file": Key(required=True, doc="the file the values are appended to (its directory must exist)")}

    @classmethod
    def check(cls, values):
        _check_dir(values["file"])

    def start(self, values, offsets=None):
        self.f = open(values["file"], "ab")      # noqa: SIM115 - open until stop()

    def put(self, records):
        self.f.write(b"".join((line_of(r.value) + "\n").encode() for r in records))

    def flush(self):
        self.f.flush()
        _io.fsync(self.f.fileno())      # through the I/O table, so fault tests reach it

    def stop(self):
        if self.f is not None:
            self.f.close()
            self.f = None
